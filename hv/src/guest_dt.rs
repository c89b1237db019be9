//! The guest's device tree, generated from the host's: the CPUs, timer, GIC
//! (without its ITS), the console UART and its clocks, and the PMU are copied
//! as they are (they are passed through or forwarded 1:1), while memory,
//! /psci and /chosen describe what hv gives the guest. Everything else on
//! the board (virtio, PCIe, flash, fw-cfg ...) stays hidden from the guest.

use crate::platform::{Conduit, Platform, Region};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;
use vm_fdt::FdtWriter;

/// What hv tells the guest about its world.
#[derive(Clone, Copy, Debug)]
pub struct GuestConfig<'a> {
    pub memory: &'a [Region],
    pub bootargs: &'a str,
    pub initrd: Option<Region>,
    /// How the guest calls hv's PSCI.
    pub psci: Conduit,
}

#[derive(Debug)]
pub enum GuestDtError {
    Writer(vm_fdt::Error),
    MissingNode(&'static str),
}

impl core::fmt::Display for GuestDtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Writer(e) => write!(f, "writing the guest device tree: {e}"),
            Self::MissingNode(n) => write!(f, "host device tree lost its {n} node"),
        }
    }
}

impl From<vm_fdt::Error> for GuestDtError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Writer(e)
    }
}

/// Builds the guest's flattened device tree.
pub fn build(
    host: &Fdt<'_>,
    platform: &Platform,
    config: &GuestConfig<'_>,
) -> Result<Vec<u8>, GuestDtError> {
    let mut w = FdtWriter::new()?;
    let root_node = host
        .find_node("/")
        .ok_or(GuestDtError::MissingNode("root"))?;
    let root = w.begin_node("")?;
    for prop in root_node.properties() {
        w.property(prop.name, prop.value)?;
    }
    let address_cells = cells(root_node, "#address-cells", 2);
    let size_cells = cells(root_node, "#size-cells", 1);

    let uart_name = platform.uart_path.trim_start_matches('/');
    let mut clock_phandles: Vec<u32> = Vec::new();
    for child in root_node.children() {
        let keep_whole = child.name == "cpus"
            || child.name == uart_name
            || compatible_with(&child, &["arm,armv8-timer", "arm,armv8-pmuv3"]);
        if keep_whole {
            if child.name == uart_name {
                if let Some(clocks) = child.property("clocks") {
                    clock_phandles.extend(be_u32s(clocks.value));
                }
            }
            copy_node(&mut w, child, true)?;
        } else if compatible_with(&child, &["arm,gic-v3"]) {
            // The ITS is not given to the guest: no MSIs without PCIe.
            copy_node(&mut w, child, false)?;
        }
    }
    // The console's clock providers (fixed clocks) are needed by its driver.
    for child in root_node.children() {
        let phandle = child.property("phandle").and_then(|p| p.as_usize());
        if phandle.is_some_and(|p| clock_phandles.contains(&(p as u32))) && child.name != uart_name
        {
            copy_node(&mut w, child, true)?;
        }
    }

    let psci = w.begin_node("psci")?;
    w.property_string_list(
        "compatible",
        ["arm,psci-1.0".to_string(), "arm,psci-0.2".to_string()].into(),
    )?;
    w.property_string(
        "method",
        match config.psci {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        },
    )?;
    w.end_node(psci)?;

    for region in config.memory {
        let name = alloc::format!("memory@{:x}", region.base);
        let node = w.begin_node(&name)?;
        w.property_string("device_type", "memory")?;
        let mut reg = Vec::new();
        push_cells(&mut reg, region.base, address_cells);
        push_cells(&mut reg, region.size, size_cells);
        w.property("reg", &reg)?;
        w.end_node(node)?;
    }

    let aliases = w.begin_node("aliases")?;
    w.property_string("serial0", &platform.uart_path)?;
    w.end_node(aliases)?;

    let chosen = w.begin_node("chosen")?;
    w.property_string("bootargs", config.bootargs)?;
    w.property_string("stdout-path", &platform.uart_path)?;
    if let Some(initrd) = config.initrd {
        w.property_u64("linux,initrd-start", initrd.base)?;
        w.property_u64("linux,initrd-end", initrd.end())?;
    }
    if let Some(host_chosen) = host.find_node("/chosen") {
        for name in ["rng-seed", "kaslr-seed"] {
            if let Some(prop) = host_chosen.property(name) {
                w.property(name, prop.value)?;
            }
        }
    }
    w.end_node(chosen)?;
    w.end_node(root)?;
    Ok(w.finish()?)
}

fn cells(node: FdtNode<'_, '_>, name: &str, default: usize) -> usize {
    node.property(name)
        .and_then(|p| p.as_usize())
        .unwrap_or(default)
}

fn push_cells(out: &mut Vec<u8>, value: u64, cells: usize) {
    if cells >= 2 {
        out.extend_from_slice(&value.to_be_bytes());
    } else {
        out.extend_from_slice(&(value as u32).to_be_bytes());
    }
}

fn compatible_with(node: &FdtNode<'_, '_>, any_of: &[&str]) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| any_of.contains(&s)))
}

fn be_u32s(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

fn copy_node(
    w: &mut FdtWriter,
    node: FdtNode<'_, '_>,
    with_children: bool,
) -> Result<(), GuestDtError> {
    let name: String = node.name.into();
    let handle = w.begin_node(&name)?;
    for prop in node.properties() {
        w.property(prop.name, prop.value)?;
    }
    if with_children {
        for child in node.children() {
            copy_node(w, child, true)?;
        }
    }
    w.end_node(handle)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &[u8] = include_bytes!("../tests/data/virt-gicv3-smp4.dtb");

    #[test]
    fn guest_tree_describes_the_guest() {
        let host = Fdt::new(HOST).unwrap();
        let platform = Platform::discover(&host).unwrap();
        let memory = [Region {
            base: 0x4060_0000,
            size: 0x1fa0_0000,
        }];
        let config = GuestConfig {
            memory: &memory,
            bootargs: "console=ttyAMA0",
            initrd: Some(Region {
                base: 0x4800_0000,
                size: 0x1234,
            }),
            psci: Conduit::Hvc,
        };
        let blob = build(&host, &platform, &config).unwrap();
        let guest = Fdt::new(&blob).unwrap();

        // The guest sees its own memory and PSCI through HVC...
        let mut seen = Platform::discover(&guest).unwrap();
        assert_eq!(seen.memory.as_slice(), &memory);
        assert_eq!(seen.psci, Conduit::Hvc);
        assert_eq!(seen.initrd, config.initrd);
        // ... and the same CPUs, GIC, timer and console as the host.
        seen.memory = platform.memory.clone();
        seen.psci = platform.psci;
        seen.initrd = platform.initrd;
        assert_eq!(alloc::format!("{seen:?}"), alloc::format!("{platform:?}"));
        assert_eq!(guest.chosen().bootargs(), Some("console=ttyAMA0"));
        assert!(guest
            .find_node("/chosen")
            .unwrap()
            .property("stdout-path")
            .is_some());

        // Hidden: the ITS, virtio, PCIe, flash; kept: the UART's clock.
        assert!(guest.find_compatible(&["arm,gic-v3-its"]).is_none());
        assert!(guest.find_compatible(&["virtio,mmio"]).is_none());
        assert!(guest.find_compatible(&["pci-host-ecam-generic"]).is_none());
        assert!(guest.find_compatible(&["cfi-flash"]).is_none());
        assert!(guest.find_compatible(&["fixed-clock"]).is_some());
        assert_eq!(
            guest
                .find_node("/cpus")
                .unwrap()
                .children()
                .filter(|c| c.name.starts_with("cpu@"))
                .count(),
            4
        );
    }
}
