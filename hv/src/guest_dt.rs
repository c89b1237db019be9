//! The guest's device tree, generated from the host's: the CPUs, timer, GIC
//! (without its ITS), the console UART and its clocks, and the PMU are copied
//! as they are (they are passed through or forwarded 1:1), while memory,
//! /psci and /chosen describe what hv gives the guest. Everything else on
//! the board (virtio, PCIe, flash, fw-cfg ...) stays hidden from the guest.
//!
//! The CPUs' idle states (`/cpus/idle-states`, `cpu-idle-states`) and PSCI
//! power domains (`power-domains`, whose providers live under the host's
//! /psci, which hv replaces) are left out: hv's PSCI offers no powerdown
//! state (psci.rs refuses one), so the guest idles with WFI.

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
            if child.name == "cpus" {
                copy_node_except(&mut w, child, &CPUS_LEFT_OUT)?;
            } else {
                copy_node(&mut w, child, true)?;
            }
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

/// Nodes and properties of /cpus the guest does not get.
struct LeftOut {
    nodes: &'static [&'static str],
    properties: &'static [&'static str],
}

/// Idle states and power domains (see the module comment).
const CPUS_LEFT_OUT: LeftOut = LeftOut {
    nodes: &["idle-states"],
    properties: &["cpu-idle-states", "power-domains", "power-domain-names"],
};

/// Copies `node` and its subtree without the nodes and properties named in
/// `left_out` (at any depth).
fn copy_node_except(
    w: &mut FdtWriter,
    node: FdtNode<'_, '_>,
    left_out: &LeftOut,
) -> Result<(), GuestDtError> {
    let name: String = node.name.into();
    let handle = w.begin_node(&name)?;
    for prop in node.properties() {
        if !left_out.properties.contains(&prop.name) {
            w.property(prop.name, prop.value)?;
        }
    }
    for child in node.children() {
        if !left_out.nodes.contains(&child.name) {
            copy_node_except(w, child, left_out)?;
        }
    }
    w.end_node(handle)?;
    Ok(())
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

    /// R7-10: a host whose CPUs have PSCI idle states (powerdown
    /// `arm,psci-suspend-param`s, as on most boards) and PSCI power domains:
    /// the guest gets the CPUs without them, since hv implements no
    /// powerdown CPU_SUSPEND.
    #[test]
    fn cpu_idle_states_and_power_domains_stay_with_the_host() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let n = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x2000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("pl011@9000000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.property_array_u64("reg", &[0x0900_0000, 0x1000]).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("intc@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_array_u64("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci-1.0").unwrap();
        w.property_string("method", "smc").unwrap();
        let pd = w.begin_node("power-domain-cpu0").unwrap();
        w.property_u32("#power-domain-cells", 0).unwrap();
        w.property_u32("phandle", 7).unwrap();
        w.end_node(pd).unwrap();
        w.end_node(n).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let c = w.begin_node("cpu@0").unwrap();
        w.property_string("device_type", "cpu").unwrap();
        w.property_string("enable-method", "psci").unwrap();
        w.property_u32("reg", 0).unwrap();
        w.property_u32("cpu-idle-states", 5).unwrap();
        w.property_u32("power-domains", 7).unwrap();
        w.property_string("power-domain-names", "psci").unwrap();
        w.end_node(c).unwrap();
        let idle = w.begin_node("idle-states").unwrap();
        w.property_string("entry-method", "psci").unwrap();
        let state = w.begin_node("cpu-sleep-0").unwrap();
        w.property_string("compatible", "arm,idle-state").unwrap();
        w.property_u32("arm,psci-suspend-param", 0x0001_0000)
            .unwrap();
        w.property_u32("phandle", 5).unwrap();
        w.end_node(state).unwrap();
        w.end_node(idle).unwrap();
        w.end_node(cpus).unwrap();
        let n = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
            .unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();

        let host = Fdt::new(&blob).unwrap();
        assert!(host.find_node("/cpus/idle-states").is_some());
        let platform = Platform::discover(&host).unwrap();
        let memory = [Region {
            base: 0x4000_0000,
            size: 0x1000_0000,
        }];
        let config = GuestConfig {
            memory: &memory,
            bootargs: "",
            initrd: None,
            psci: Conduit::Hvc,
        };
        let guest_blob = build(&host, &platform, &config).unwrap();
        let guest = Fdt::new(&guest_blob).unwrap();
        assert!(guest.find_node("/cpus/idle-states").is_none());
        assert!(guest.find_compatible(&["arm,idle-state"]).is_none());
        let cpu = guest.find_node("/cpus/cpu@0").unwrap();
        for gone in ["cpu-idle-states", "power-domains", "power-domain-names"] {
            assert!(cpu.property(gone).is_none(), "{gone} reached the guest");
        }
        for kept in ["device_type", "enable-method", "reg"] {
            assert!(cpu.property(kept).is_some(), "{kept} was lost");
        }
        assert!(guest.find_node("/psci/power-domain-cpu0").is_none());
        assert_eq!(Platform::discover(&guest).unwrap().cpus.as_slice(), &[0]);
    }

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
