//! The guest's device tree, generated from the host's: the CPUs, timer, GIC
//! (without its ITS), the console UART (only the properties its driver
//! reads) and its fixed clocks, and the PMUs are copied
//! (they are passed through or forwarded 1:1; one below a bus such as /soc
//! is placed under the root with its `reg` translated to CPU physical
//! addresses, which are the guest's IPAs), while memory,
//! /psci and /chosen describe what hv gives the guest. Everything else on
//! the board (virtio, PCIe, flash, fw-cfg ...) stays hidden from the guest.
//!
//! The CPUs' idle states (`/cpus/idle-states`, `cpu-idle-states`) and PSCI
//! power domains (`power-domains`, whose providers live under the host's
//! /psci, which hv replaces) are left out: hv's PSCI offers no powerdown
//! state (psci.rs refuses one), so the guest idles with WFI.

use crate::platform::{self, Conduit, DiscoveryError, Located, Platform, Region};
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
    /// The console UART's reference clock as hv measured it at boot
    /// (`platform::pl011::reference_clock_hz`): given to the guest as a
    /// fixed clock when the host clocks the console from a clock
    /// controller the guest does not get. None: unknown (the UART's baud
    /// divisors were never programmed).
    pub console_clock_hz: Option<u32>,
    /// Which CPUs the guest has.
    pub cpus: GuestCpus,
}

/// The guest's CPUs (its /cpus node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestCpus {
    /// The host's, as they are (hv's guest: vCPU i on CPU i, the same
    /// MPIDR).
    Host,
    /// `n` vCPUs named by MPIDR affinity 0 to n - 1 (a nested L1,
    /// `nested::vcpus`): the host's first `n` CPU nodes, each with its
    /// `reg` (and unit address) made its vCPU's index; the host's
    /// `cpu-map` (its topology, naming CPUs L1 may not have) left out, so
    /// the guest sees a flat set of CPUs. Limits (QEMU's virt has
    /// neither): PMU nodes are copied whole, so on a board whose PMUs
    /// carry `interrupt-affinity` (one per cluster) L1 gets phandles of
    /// CPU nodes it does not have (that PMU's probe fails); vCPU k gets
    /// host CPU k's node properties (capacity, clocks) though it runs on
    /// another CPU (review 48 R48-8).
    Vcpus(usize),
}

#[derive(Debug)]
pub enum GuestDtError {
    Writer(vm_fdt::Error),
    MissingNode(&'static str),
    /// Locating a node the guest needs failed (e.g. its bus's `ranges`).
    Discovery(&'static str, DiscoveryError),
}

impl core::fmt::Display for GuestDtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Writer(e) => write!(f, "writing the guest device tree: {e}"),
            Self::MissingNode(n) => write!(f, "host device tree lost its {n} node"),
            Self::Discovery(what, e) => write!(f, "the guest's {what}: {e}"),
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

    for child in root_node.children() {
        if child.name == "cpus" {
            match config.cpus {
                GuestCpus::Host => copy_node_except(&mut w, child, &CPUS_LEFT_OUT)?,
                GuestCpus::Vcpus(n) => write_vcpus(&mut w, child, n)?,
            }
        }
    }
    // The devices hv shares with or emulates for the guest, wherever they
    // sit in the host's tree: children of the root are copied as they are,
    // deeper ones are placed under the root with their `reg` translated to
    // CPU physical addresses (the guest's IPAs are the same).
    let located = |what: &'static str, compatible: &'static str| {
        platform::find_located(host, |node| compatible_with(node, &[compatible]))
            .map_err(|e| GuestDtError::Discovery(what, e))
    };
    let mut uart = None;
    platform::for_each_located(
        host,
        |node, _| compatible_with(node, &["arm,pl011"]),
        |found| {
            if uart.is_none() && found.regions.first() == Some(&platform.uart) {
                uart = Some(found);
            }
            Ok(())
        },
    )
    .map_err(|e| GuestDtError::Discovery("console UART", e))?;
    let uart = uart.ok_or(GuestDtError::MissingNode("console UART"))?;
    // The console's clock providers: only fixed clocks are given to the
    // guest (a clock controller is the host's hardware, and its own
    // parents, resets and power domains would follow). A console with any
    // other provider reaches the guest without `clocks` (see CONSOLE).
    let mut fixed_clocks = Vec::new();
    let mut clocks_all_fixed = true;
    if let Some(clocks) = uart.node.property("clocks") {
        let cells: Vec<u32> = be_u32s(clocks.value).collect();
        let mut seen: Vec<u32> = Vec::new();
        let mut at = 0;
        while let Some(&phandle) = cells.get(at) {
            // By phandle, not located: a fixed clock is copied without its
            // `reg` (FIXED_CLOCK), which may only name it inside a container
            // without `ranges` (DT spec 2.3.8: not memory-mapped, as in the
            // older bcm283x `clocks { clock@3 { reg = <3>; } }`).
            let provider = host
                .find_phandle(phandle)
                .ok_or(GuestDtError::MissingNode("console clock"))?;
            at += 1 + cells_of(&provider, "#clock-cells", 0);
            if !compatible_with(&provider, &["fixed-clock"]) {
                clocks_all_fixed = false;
            } else if !seen.contains(&phandle) {
                seen.push(phandle);
                fixed_clocks.push(provider);
            }
        }
    }
    // A console clocked by a controller gets a fixed clock of its own at
    // the rate hv measured (`CONSOLE_CLOCK`), under a phandle no host node
    // uses; without a measured rate it gets no `clocks`.
    let own_clock = match config.console_clock_hz {
        Some(hz) if !clocks_all_fixed => Some((hz, unused_phandle(host))),
        _ => None,
    };
    let console_shape = if clocks_all_fixed {
        CONSOLE
    } else {
        CONSOLE_WITHOUT_CLOCKS
    };
    let uart_path = alloc::format!(
        "/{}",
        emit_at_root(
            &mut w,
            &uart,
            &console_shape,
            address_cells,
            size_cells,
            |w| {
                if let Some((_, phandle)) = own_clock {
                    w.property_array_u32("clocks", &[phandle, phandle])?;
                    w.property_string_list(
                        "clock-names",
                        ["uartclk".to_string(), "apb_pclk".to_string()].into(),
                    )?;
                }
                Ok(())
            }
        )?
    );
    if clocks_all_fixed {
        for provider in &fixed_clocks {
            copy_node(&mut w, *provider, &FIXED_CLOCK)?;
        }
    }
    if let Some((hz, phandle)) = own_clock {
        let clock = w.begin_node(CONSOLE_CLOCK)?;
        w.property_string("compatible", "fixed-clock")?;
        w.property_u32("#clock-cells", 0)?;
        w.property_u32("clock-frequency", hz)?;
        w.property_string("clock-output-names", "umbra-console-clock")?;
        w.property_u32("phandle", phandle)?;
        w.end_node(clock)?;
    }
    if let Some(gic) = located("GIC", "arm,gic-v3")? {
        emit_at_root(&mut w, &gic, &GIC, address_cells, size_cells, |_| Ok(()))?;
    }
    // Every timer and PMU node (a big.LITTLE board has one PMU per
    // cluster).
    let mut timers_and_pmus = Vec::new();
    platform::for_each_located(
        host,
        |node, _| compatible_with(node, &["arm,armv8-timer"]) || is_cpu_pmu(node),
        |found| {
            timers_and_pmus.push(found);
            Ok(())
        },
    )
    .map_err(|e| GuestDtError::Discovery("timer or PMU", e))?;
    for found in &timers_and_pmus {
        emit_at_root(&mut w, found, &WHOLE, address_cells, size_cells, |_| Ok(()))?;
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
    w.property_string("serial0", &uart_path)?;
    w.end_node(aliases)?;

    let chosen = w.begin_node("chosen")?;
    w.property_string("bootargs", config.bootargs)?;
    w.property_string("stdout-path", &uart_path)?;
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

fn cells_of(node: &FdtNode<'_, '_>, name: &str, default: usize) -> usize {
    cells(*node, name, default)
}

/// What of a host node the guest gets.
struct Shape {
    /// None: every property; else only these.
    properties: Option<&'static [&'static str]>,
    /// None: no children; else every child except those compatible with
    /// one of these.
    children_except: Option<&'static [&'static str]>,
}

/// Timers and PMUs: as they are.
const WHOLE: Shape = Shape {
    properties: None,
    children_except: Some(&[]),
};

/// The GIC without its ITS (no MSIs without PCIe), but with every other
/// child: `ppi-partitions`, whose partitions the 4-cell interrupt
/// specifiers of big.LITTLE PMUs name.
const GIC: Shape = Shape {
    properties: None,
    children_except: Some(&["arm,gic-v3-its"]),
};

/// The console PL011: only what its driver and the AMBA bus read, so that
/// no property names a node the guest's tree does not have (the host's
/// `pinctrl-0`, `resets`, `dmas`, `power-domains`, `iommus` ... would make
/// Linux's probe fail at pinctrl_bind_pins or defer forever).
/// `interrupt-parent` is kept: hv's only interrupt controllers are the GIC's.
const CONSOLE: Shape = Shape {
    properties: Some(&[
        "compatible",
        "reg",
        "interrupts",
        "interrupt-parent",
        "interrupt-names",
        "clocks",
        "clock-names",
        "arm,primecell-periphid",
        "current-speed",
        "status",
        "phandle",
    ]),
    children_except: None,
};

/// The console when one of its clock providers is not a fixed clock: hv
/// does not give the guest the host's clock controller (its parents,
/// resets and power domains would follow), so the host's `clocks` and
/// `clock-names` stay behind. hv adds `clocks` naming its own fixed clock
/// (`CONSOLE_CLOCK`) for both `uartclk` (the rate Linux's PL011 driver
/// divides for a baud rate) and `apb_pclk` (which the AMBA bus enables
/// before probing) when it measured the rate; else the guest gets no
/// `clocks`, its PL011 driver does not bind, and it prints through
/// earlycon only.
const CONSOLE_WITHOUT_CLOCKS: Shape = Shape {
    properties: Some(&[
        "compatible",
        "reg",
        "interrupts",
        "interrupt-parent",
        "interrupt-names",
        "arm,primecell-periphid",
        "current-speed",
        "status",
        "phandle",
    ]),
    children_except: None,
};

/// The node name of the fixed clock hv gives a console the host clocks
/// from a clock controller.
pub const CONSOLE_CLOCK: &str = "umbra-console-clock";

/// A phandle no node of `host` has (one above the largest; phandles are
/// 32-bit and 0 and 0xffffffff are not valid, so a tree using the largest
/// valid one gets the smallest free one instead).
fn unused_phandle(host: &Fdt<'_>) -> u32 {
    let used: Vec<u32> = host
        .all_nodes()
        .filter_map(|n| {
            n.property("phandle")
                .or_else(|| n.property("linux,phandle"))
        })
        .filter_map(|p| p.as_usize())
        .map(|p| p as u32)
        .collect();
    match used.iter().max() {
        Some(&max) if max < u32::MAX - 1 => max + 1,
        None => 1,
        Some(_) => (1..u32::MAX).find(|p| !used.contains(p)).unwrap_or(1),
    }
}

/// A console's fixed clock (the fixed-clock binding's properties; a
/// gated fixed clock's `clocks`/`enable-gpios` etc. are left out).
const FIXED_CLOCK: Shape = Shape {
    properties: Some(&[
        "compatible",
        "#clock-cells",
        "clock-frequency",
        "clock-accuracy",
        "clock-output-names",
        "phandle",
    ]),
    children_except: None,
};

impl Shape {
    fn keeps_property(&self, name: &str) -> bool {
        self.properties.is_none_or(|only| only.contains(&name))
    }

    fn keeps_child(&self, child: &FdtNode<'_, '_>) -> bool {
        self.children_except
            .is_some_and(|except| !compatible_with(child, except))
    }
}

/// A CPU PMU node: the generic PMUv3 compatible (QEMU) or the core-specific
/// ones real boards use ("arm,cortex-a76-pmu", "arm,neoverse-n1-pmu" ...).
fn is_cpu_pmu(node: &FdtNode<'_, '_>) -> bool {
    node.compatible().is_some_and(|c| {
        c.all().any(|s| {
            s == "arm,armv8-pmuv3"
                || (s.ends_with("-pmu")
                    && ["arm,cortex-a", "arm,cortex-x", "arm,neoverse-"]
                        .iter()
                        .any(|family| s.starts_with(family)))
        })
    })
}

/// Writes `found` as a child of the guest's root, as `shape` says; returns
/// its name there. A child of the host's root keeps its name and `reg`. A
/// deeper node (under a bus) gets its `reg` in CPU physical addresses, with
/// the root's cells, a unit address to match, and the interrupt parent it
/// inherited from its bus written out. `extra` writes properties hv adds.
fn emit_at_root(
    w: &mut FdtWriter,
    found: &Located<'_, '_>,
    shape: &Shape,
    address_cells: usize,
    size_cells: usize,
    extra: impl FnOnce(&mut FdtWriter) -> Result<(), GuestDtError>,
) -> Result<String, GuestDtError> {
    let node = found.node;
    if found.depth == 1 {
        copy_node_with(w, node, shape, extra)?;
        return Ok(node.name.into());
    }
    let base_name = node.name.split('@').next().unwrap_or(node.name);
    let name = match found.regions.first() {
        Some(first) => alloc::format!("{base_name}@{:x}", first.base),
        None => node.name.into(),
    };
    let handle = w.begin_node(&name)?;
    for prop in node.properties() {
        if prop.name != "reg" && shape.keeps_property(prop.name) {
            w.property(prop.name, prop.value)?;
        }
    }
    if !found.regions.is_empty() {
        let mut reg = Vec::new();
        for region in &found.regions {
            push_cells(&mut reg, region.base, address_cells);
            push_cells(&mut reg, region.size, size_cells);
        }
        w.property("reg", &reg)?;
    }
    if let Some(parent) = found.inherited_interrupt_parent {
        if shape.keeps_property("interrupt-parent") {
            w.property_u32("interrupt-parent", parent)?;
        }
    }
    extra(w)?;
    for child in node.children().filter(|c| shape.keeps_child(c)) {
        copy_node(w, child, &WHOLE)?;
    }
    w.end_node(handle)?;
    Ok(name)
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

/// The guest's /cpus for [`GuestCpus::Vcpus`]`(n)` from the host's `cpus`:
/// its properties, its first `n` CPU nodes as vCPUs 0 to n - 1, its other
/// children but `cpu-map` (caches stay: CPU nodes name them), each without
/// what [`CPUS_LEFT_OUT`] names.
fn write_vcpus(w: &mut FdtWriter, cpus: FdtNode<'_, '_>, n: usize) -> Result<(), GuestDtError> {
    let handle = w.begin_node(cpus.name)?;
    for prop in cpus.properties() {
        w.property(prop.name, prop.value)?;
    }
    let address_cells = cells(cpus, "#address-cells", 1);
    let is_cpu = |node: &FdtNode<'_, '_>| {
        node.property("device_type")
            .and_then(|p| p.as_str())
            .is_some_and(|t| t == "cpu")
    };
    let mut vcpu = 0u64;
    for child in cpus.children() {
        if is_cpu(&child) {
            if vcpu < n as u64 {
                let node = w.begin_node(&alloc::format!("cpu@{vcpu:x}"))?;
                for prop in child.properties() {
                    if prop.name != "reg" && !CPUS_LEFT_OUT.properties.contains(&prop.name) {
                        w.property(prop.name, prop.value)?;
                    }
                }
                let mut reg = Vec::new();
                push_cells(&mut reg, vcpu, address_cells);
                w.property("reg", &reg)?;
                for grandchild in child.children() {
                    copy_node_except(w, grandchild, &CPUS_LEFT_OUT)?;
                }
                w.end_node(node)?;
            }
            vcpu += 1;
        } else if child.name != "cpu-map" && !CPUS_LEFT_OUT.nodes.contains(&child.name) {
            copy_node_except(w, child, &CPUS_LEFT_OUT)?;
        }
    }
    w.end_node(handle)?;
    Ok(())
}

fn copy_node(w: &mut FdtWriter, node: FdtNode<'_, '_>, shape: &Shape) -> Result<(), GuestDtError> {
    copy_node_with(w, node, shape, |_| Ok(()))
}

/// `copy_node`, with the properties `extra` writes added.
fn copy_node_with(
    w: &mut FdtWriter,
    node: FdtNode<'_, '_>,
    shape: &Shape,
    extra: impl FnOnce(&mut FdtWriter) -> Result<(), GuestDtError>,
) -> Result<(), GuestDtError> {
    let name: String = node.name.into();
    let handle = w.begin_node(&name)?;
    for prop in node.properties().filter(|p| shape.keeps_property(p.name)) {
        w.property(prop.name, prop.value)?;
    }
    extra(w)?;
    for child in node.children().filter(|c| shape.keeps_child(c)) {
        copy_node(w, child, &WHOLE)?;
    }
    w.end_node(handle)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &[u8] = include_bytes!("../tests/data/virt-gicv3-smp4.dtb");

    /// A small board's tree up to its CPUs: the root, memory, a PL011 and
    /// a GICv3; the caller adds /psci and /cpus.
    fn small_board() -> (FdtWriter, vm_fdt::FdtWriterNode) {
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
        (w, root)
    }

    /// [`small_board`]'s tree finished with a timer: its blob.
    fn small_board_end(mut w: FdtWriter, root: vm_fdt::FdtWriterNode) -> Vec<u8> {
        let n = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
            .unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    /// R7-10: a host whose CPUs have PSCI idle states (powerdown
    /// `arm,psci-suspend-param`s, as on most boards) and PSCI power domains:
    /// the guest gets the CPUs without them, since hv implements no
    /// powerdown CPU_SUSPEND.
    #[test]
    fn cpu_idle_states_and_power_domains_stay_with_the_host() {
        let (mut w, root) = small_board();
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
        let blob = small_board_end(w, root);

        let host = Fdt::new(&blob).unwrap();
        assert!(host.find_node("/cpus/idle-states").is_some());
        let guest_blob = guest_of(&blob);
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

    /// R7-14: a GIC and PL011 below /soc reach the guest, placed under its
    /// root at their CPU addresses, with the interrupt parent they
    /// inherited from the bus; the console path names the guest's node.
    #[test]
    fn devices_below_a_bus_reach_the_guest() {
        let blob = crate::platform::tests::soc_board(Some(0xf000_0000), "serial0");
        let platform = Platform::discover(&Fdt::new(&blob).unwrap()).unwrap();
        let guest_blob = guest_of(&blob);
        crate::fdt_check::check(&guest_blob).unwrap();
        let guest = Fdt::new(&guest_blob).unwrap();
        let uart = guest.find_node("/serial@f9000000").expect("the console");
        assert_eq!(
            uart.reg().unwrap().next().unwrap().starting_address as u64,
            0xf900_0000
        );
        assert_eq!(
            uart.property("interrupt-parent").and_then(|p| p.as_usize()),
            Some(1)
        );
        let gic = guest
            .find_node("/interrupt-controller@f8000000")
            .expect("the GIC");
        assert_eq!(gic.property("phandle").and_then(|p| p.as_usize()), Some(1));
        let stdout = guest.find_node("/chosen").unwrap().property("stdout-path");
        assert_eq!(stdout.and_then(|p| p.as_str()), Some("/serial@f9000000"));
        // The guest, discovering its own tree, sees the host's devices.
        let seen = Platform::discover(&guest).unwrap();
        assert_eq!(seen.uart, platform.uart);
        assert_eq!(seen.gic_distributor, platform.gic_distributor);
        assert_eq!(seen.gic_redistributors, platform.gic_redistributors);
        assert_eq!(seen.gic_maintenance, platform.gic_maintenance);
        assert_eq!(seen.timer, platform.timer);
    }

    /// The guest tree hv builds from the host tree `blob` (checked first)
    /// for 256 MiB of RAM at 1 GiB and the host's CPUs.
    fn guest_of(blob: &[u8]) -> Vec<u8> {
        guest_with_console_clock(blob, None)
    }

    fn guest_with_console_clock(blob: &[u8], console_clock_hz: Option<u32>) -> Vec<u8> {
        crate::fdt_check::check(blob).unwrap();
        let host = Fdt::new(blob).unwrap();
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
            console_clock_hz,
            cpus: GuestCpus::Host,
        };
        build(&host, &platform, &config).unwrap()
    }

    fn phandles(tree: &Fdt<'_>) -> Vec<u32> {
        tree.all_nodes()
            .filter_map(|n| n.property("phandle").and_then(|p| p.as_usize()))
            .map(|p| p as u32)
            .collect()
    }

    /// A board's console with the properties real SoCs give it (pin
    /// control, resets, DMA, a power domain) and `clocks` naming the
    /// providers `clock_compatibles`; a big.LITTLE-style PMU whose 4-cell
    /// interrupt names a PPI partition.
    fn soc_console_board(clock_compatibles: &'static [&'static str]) -> Vec<u8> {
        crate::platform::tests::gic_cells_board(
            |w| {
                let p = w.begin_node("pinctrl@10005000").unwrap();
                w.property_string("compatible", "vendor,pinctrl").unwrap();
                w.property_array_u64("reg", &[0x1000_5000, 0x1000]).unwrap();
                let pins = w.begin_node("uart0-pins").unwrap();
                w.property_u32("phandle", 7).unwrap();
                w.end_node(pins).unwrap();
                w.end_node(p).unwrap();
                let mut clocks = Vec::new();
                for (i, compatible) in clock_compatibles.iter().enumerate() {
                    let phandle = 20 + i as u32;
                    let c = w.begin_node(&alloc::format!("clock-{i}")).unwrap();
                    w.property_string("compatible", compatible).unwrap();
                    w.property_u32("#clock-cells", 0).unwrap();
                    w.property_u32("clock-frequency", 24_000_000).unwrap();
                    w.property_u32("phandle", phandle).unwrap();
                    // A gate's own parent, which the guest does not get.
                    w.property_u32("clocks", 99).unwrap();
                    w.end_node(c).unwrap();
                    clocks.push(phandle);
                }
                let s = w.begin_node("serial@11002000").unwrap();
                w.property_string("compatible", "arm,pl011").unwrap();
                w.property_array_u64("reg", &[0x1100_2000, 0x1000]).unwrap();
                w.property_array_u32("interrupts", &[0, 91, 4, 0]).unwrap();
                w.property_string("pinctrl-names", "default").unwrap();
                w.property_u32("pinctrl-0", 7).unwrap();
                w.property_array_u32("resets", &[8, 1]).unwrap();
                w.property_array_u32("dmas", &[9, 1, 9, 2]).unwrap();
                w.property_u32("power-domains", 10).unwrap();
                w.property_array_u32("clocks", &clocks).unwrap();
                w.property_string("clock-names", "uartclk").unwrap();
                w.end_node(s).unwrap();
                let pmu = w.begin_node("pmu-a76").unwrap();
                w.property_string("compatible", "arm,cortex-a76-pmu")
                    .unwrap();
                w.property_array_u32("interrupts", &[1, 7, 4, 3]).unwrap();
                w.end_node(pmu).unwrap();
            },
            4,
            &[1, 13, 8, 0, 1, 14, 8, 0, 1, 11, 8, 0, 1, 10, 8, 0],
        )
    }

    /// R9-4: the console reaches the guest with an allow-list of
    /// properties, so none names a node the guest lacks (pinctrl-0 made
    /// Linux's PL011 probe fail); its fixed clocks come without their own
    /// references. R9-2: the GIC keeps `ppi-partitions` (which the PMU's
    /// 4-cell interrupt names) but not its ITS, and core-specific PMUs
    /// reach the guest.
    #[test]
    fn guest_nodes_name_only_nodes_the_guest_has() {
        let blob = guest_of(&soc_console_board(&["fixed-clock"]));
        crate::fdt_check::check(&blob).unwrap();
        let guest = Fdt::new(&blob).unwrap();
        let known = phandles(&guest);
        let uart = guest.find_node("/serial@11002000").expect("the console");
        for gone in [
            "pinctrl-names",
            "pinctrl-0",
            "resets",
            "dmas",
            "power-domains",
        ] {
            assert!(uart.property(gone).is_none(), "{gone} reached the guest");
        }
        let clock = uart.property("clocks").and_then(|p| p.as_usize()).unwrap() as u32;
        assert!(
            known.contains(&clock),
            "the console's clock is in the guest"
        );
        let fixed = guest.find_compatible(&["fixed-clock"]).unwrap();
        assert!(fixed.property("clocks").is_none());
        assert_eq!(
            fixed.property("clock-frequency").and_then(|p| p.as_usize()),
            Some(24_000_000)
        );
        for node in guest.all_nodes() {
            if let Some(parent) = node.property("interrupt-parent") {
                let parent = parent.as_usize().unwrap() as u32;
                assert!(known.contains(&parent), "{}: interrupt-parent", node.name);
            }
        }
        assert!(guest.find_compatible(&["vendor,pinctrl"]).is_none());
        assert!(guest.find_compatible(&["arm,gic-v3-its"]).is_none());
        let pmu = guest
            .find_compatible(&["arm,cortex-a76-pmu"])
            .expect("the core-specific PMU");
        let cells: Vec<u32> = be_u32s(pmu.property("interrupts").unwrap().value).collect();
        assert!(known.contains(&cells[3]), "the PMU's PPI partition");
        assert!(guest
            .find_node("/interrupt-controller@c000000/ppi-partitions/interrupt-partition-0")
            .is_some());
        // The guest's own discovery reads its 4-cell GIC.
        assert_eq!(Platform::discover(&guest).unwrap().timer.virtual_, 27);
    }

    /// A console clocked by a clock controller (not a fixed clock): the
    /// guest gets neither the controller nor the host's `clocks`, but a
    /// fixed clock of hv's own at the rate hv measured, named for both
    /// `uartclk` and `apb_pclk` under a phandle no host node has (the
    /// host's fixed clock 20 and controller 21 are not reused). Without a
    /// measured rate (an unprogrammed UART) it gets no `clocks`, and no
    /// made-up rate.
    #[test]
    fn a_console_clocked_by_a_controller_gets_a_fixed_clock_of_its_own() {
        let host = soc_console_board(&["fixed-clock", "vendor,cru"]);
        let blob = guest_with_console_clock(&host, Some(48_000_000));
        crate::fdt_check::check(&blob).unwrap();
        let guest = Fdt::new(&blob).unwrap();
        let uart = guest.find_node("/serial@11002000").expect("the console");
        let cells: Vec<u32> = be_u32s(uart.property("clocks").unwrap().value).collect();
        let names: Vec<&str> = uart
            .property("clock-names")
            .unwrap()
            .value
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| core::str::from_utf8(n).unwrap())
            .collect();
        assert_eq!(names, ["uartclk", "apb_pclk"]);
        let host_phandles = phandles(&Fdt::new(&host).unwrap());
        assert_eq!(cells[0], cells[1]);
        assert!(!host_phandles.contains(&cells[0]), "a fresh phandle");
        let clock = guest.find_phandle(cells[0]).expect("the clock it names");
        assert_eq!(clock.name, CONSOLE_CLOCK);
        assert!(compatible_with(&clock, &["fixed-clock"]));
        assert_eq!(
            clock.property("clock-frequency").and_then(|p| p.as_usize()),
            Some(48_000_000)
        );
        assert_eq!(
            clock.property("#clock-cells").and_then(|p| p.as_usize()),
            Some(0)
        );
        assert!(guest.find_compatible(&["vendor,cru"]).is_none());
        assert_eq!(
            guest
                .all_nodes()
                .filter(|n| compatible_with(n, &["fixed-clock"]))
                .count(),
            1,
            "only hv's clock: the host's fixed clock is not named"
        );

        let blob = guest_with_console_clock(&host, None);
        let guest = Fdt::new(&blob).unwrap();
        let uart = guest.find_node("/serial@11002000").expect("the console");
        assert!(uart.property("clocks").is_none());
        assert!(uart.property("clock-names").is_none());
        assert!(guest.find_compatible(&["vendor,cru"]).is_none());
        assert!(guest.find_compatible(&["fixed-clock"]).is_none());
        assert!(uart.property("compatible").is_some());
        assert!(uart.property("interrupts").is_some());
    }

    /// A console whose clocks are all fixed keeps them; hv's measured rate
    /// is not used (the host's tree knows better).
    #[test]
    fn a_measured_rate_does_not_replace_fixed_clocks() {
        let blob = guest_with_console_clock(&soc_console_board(&["fixed-clock"]), Some(1));
        let guest = Fdt::new(&blob).unwrap();
        assert!(guest
            .find_node(&alloc::format!("/{CONSOLE_CLOCK}"))
            .is_none());
        let fixed = guest.find_compatible(&["fixed-clock"]).unwrap();
        assert_eq!(
            fixed.property("clock-frequency").and_then(|p| p.as_usize()),
            Some(24_000_000)
        );
    }

    /// Review 10 D2: a fixed clock with a `reg` under a container without
    /// `ranges` (the older bcm283x.dtsi `clocks { #address-cells = <1>;
    /// #size-cells = <0>; clk_osc: clock@3 { reg = <3>; ... } }`; DT spec
    /// 2.3.8: not memory-mapped, `reg` only names it) is copied to the
    /// guest without `reg`; locating it failed the whole guest tree.
    #[test]
    fn a_fixed_clock_with_a_reg_under_a_container_without_ranges_is_copied() {
        let host = crate::platform::tests::gic_cells_board(
            |w| {
                let c = w.begin_node("clocks").unwrap();
                w.property_u32("#address-cells", 1).unwrap();
                w.property_u32("#size-cells", 0).unwrap();
                let k = w.begin_node("clock@3").unwrap();
                w.property_string("compatible", "fixed-clock").unwrap();
                w.property_u32("reg", 3).unwrap();
                w.property_u32("#clock-cells", 0).unwrap();
                w.property_u32("clock-frequency", 19_200_000).unwrap();
                w.property_u32("phandle", 20).unwrap();
                w.end_node(k).unwrap();
                w.end_node(c).unwrap();
                let s = w.begin_node("serial@11002000").unwrap();
                w.property_string("compatible", "arm,pl011").unwrap();
                w.property_array_u64("reg", &[0x1100_2000, 0x1000]).unwrap();
                w.property_array_u32("clocks", &[20, 20]).unwrap();
                w.property_string_list(
                    "clock-names",
                    alloc::vec!["uartclk".into(), "apb_pclk".into()],
                )
                .unwrap();
                w.end_node(s).unwrap();
            },
            3,
            &[1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8],
        );
        let blob = guest_of(&host);
        let guest = Fdt::new(&blob).unwrap();
        let uart = guest.find_node("/serial@11002000").expect("the console");
        let cells: Vec<u32> = be_u32s(uart.property("clocks").unwrap().value).collect();
        assert_eq!(cells, [20, 20]);
        let clock = guest.find_node("/clock@3").expect("the clock, at the root");
        assert_eq!(
            clock.property("phandle").and_then(|p| p.as_usize()),
            Some(20)
        );
        assert_eq!(
            clock.property("clock-frequency").and_then(|p| p.as_usize()),
            Some(19_200_000)
        );
        assert!(clock.property("reg").is_none());
        assert_eq!(
            guest
                .all_nodes()
                .filter(|n| compatible_with(n, &["fixed-clock"]))
                .count(),
            1,
            "a clock named twice is copied once"
        );
        assert!(guest.find_node("/clocks").is_none());
    }

    #[test]
    fn cpu_pmus_are_recognised() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        for (i, compatible) in [
            "arm,armv8-pmuv3",
            "arm,cortex-a53-pmu",
            "arm,cortex-x2-pmu",
            "arm,neoverse-n1-pmu",
            "arm,cortex-a15-gic",
            "arm,neoverse-n1",
            "vendor,pmu",
        ]
        .iter()
        .enumerate()
        {
            let n = w.begin_node(&alloc::format!("n{i}")).unwrap();
            w.property_string("compatible", compatible).unwrap();
            w.end_node(n).unwrap();
        }
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let tree = Fdt::new(&blob).unwrap();
        let pmus: Vec<bool> = (0..7)
            .map(|i| is_cpu_pmu(&tree.find_node(&alloc::format!("/n{i}")).unwrap()))
            .collect();
        assert_eq!(pmus, [true, true, true, true, false, false, false]);
    }

    /// A host whose CPUs are not named 0 to n - 1 (MPIDR Aff1 = 1, as a
    /// second cluster's): an L1's vCPUs are still 0 to n - 1, what
    /// `nested::vcpus` gives its MPIDR_EL1; its cache nodes stay, its
    /// idle states and cpu-map go.
    #[test]
    fn an_l1_s_vcpus_are_renamed_from_the_host_s_cpus() {
        let (mut w, root) = small_board();
        let n = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci-1.0").unwrap();
        w.property_string("method", "smc").unwrap();
        w.end_node(n).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for k in 0..3u64 {
            let c = w
                .begin_node(&alloc::format!("cpu@{:x}", 0x100 + k))
                .unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_string("enable-method", "psci").unwrap();
            w.property_u64("reg", 0x100 + k).unwrap();
            w.property_u32("next-level-cache", 9).unwrap();
            w.property_u32("cpu-idle-states", 5).unwrap();
            w.property_u32("phandle", 10 + k as u32).unwrap();
            w.end_node(c).unwrap();
        }
        let cache = w.begin_node("l2-cache0").unwrap();
        w.property_string("compatible", "cache").unwrap();
        w.property_u32("phandle", 9).unwrap();
        w.end_node(cache).unwrap();
        let map = w.begin_node("cpu-map").unwrap();
        let cluster = w.begin_node("cluster0").unwrap();
        for k in 0..3u32 {
            let core = w.begin_node(&alloc::format!("core{k}")).unwrap();
            w.property_u32("cpu", 10 + k).unwrap();
            w.end_node(core).unwrap();
        }
        w.end_node(cluster).unwrap();
        w.end_node(map).unwrap();
        w.end_node(cpus).unwrap();
        let blob = small_board_end(w, root);

        let host = Fdt::new(&blob).unwrap();
        let platform = Platform::discover(&host).unwrap();
        assert_eq!(platform.cpus.as_slice(), &[0x100, 0x101, 0x102]);
        let memory = [Region {
            base: 0x4000_0000,
            size: 0x800_0000,
        }];
        let config = GuestConfig {
            memory: &memory,
            bootargs: "",
            initrd: None,
            psci: Conduit::Smc,
            console_clock_hz: None,
            cpus: GuestCpus::Vcpus(2),
        };
        let guest_blob = build(&host, &platform, &config).unwrap();
        let guest = Fdt::new(&guest_blob).unwrap();
        assert_eq!(Platform::discover(&guest).unwrap().cpus.as_slice(), &[0, 1]);
        let names: Vec<&str> = guest
            .find_node("/cpus")
            .unwrap()
            .children()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["cpu@0", "cpu@1", "l2-cache0"]);
        let cpu = guest.find_node("/cpus/cpu@1").unwrap();
        assert_eq!(
            cpu.property("reg").unwrap().value,
            &[0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            cpu.property("next-level-cache").and_then(|p| p.as_usize()),
            Some(9)
        );
        assert!(cpu.property("cpu-idle-states").is_none());
    }

    /// A nested L1's CPUs: the host's first n CPU nodes as vCPUs 0 to
    /// n - 1 (`reg` the vCPU's MPIDR affinity), no `cpu-map`.
    #[test]
    fn an_l1_gets_its_vcpus_as_cpus() {
        let host = Fdt::new(HOST).unwrap();
        assert!(
            host.find_node("/cpus/cpu-map").is_some(),
            "QEMU virt has a cpu-map"
        );
        let platform = Platform::discover(&host).unwrap();
        let memory = [Region {
            base: 0x4000_0000,
            size: 0x800_0000,
        }];
        let config = |cpus| GuestConfig {
            memory: &memory,
            bootargs: "",
            initrd: None,
            psci: Conduit::Smc,
            console_clock_hz: None,
            cpus,
        };
        for n in [1, 3] {
            let blob = build(&host, &platform, &config(GuestCpus::Vcpus(n))).unwrap();
            let guest = Fdt::new(&blob).unwrap();
            let seen = Platform::discover(&guest).unwrap();
            assert_eq!(seen.cpus.as_slice(), &(0..n as u64).collect::<Vec<_>>());
            let cpus = guest.find_node("/cpus").unwrap();
            assert!(cpus.children().all(|c| c.name != "cpu-map"));
            for (k, cpu) in cpus
                .children()
                .filter(|c| c.name.starts_with("cpu@"))
                .enumerate()
            {
                assert_eq!(cpu.name, alloc::format!("cpu@{k:x}"));
                assert_eq!(
                    cpu.property("enable-method").and_then(|p| p.as_str()),
                    Some("psci")
                );
            }
        }
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
            console_clock_hz: None,
            cpus: GuestCpus::Host,
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
        let pmus = |tree: &Fdt<'_>| {
            tree.all_nodes()
                .filter(|n| compatible_with(n, &["arm,armv8-pmuv3"]))
                .count()
        };
        assert_eq!(pmus(&guest), pmus(&host));
        assert!(pmus(&guest) > 0, "QEMU virt has a PMU node");
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
