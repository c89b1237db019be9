//! Discovery: everything hv needs to know about the machine, read from the
//! device tree the loader passed in x0. Nothing about the board is assumed.

use arrayvec::ArrayVec;
use core::fmt;
use fdt::node::FdtNode;
use fdt::Fdt;

/// The most CPUs hv manages (per-CPU stacks and state are static).
pub const MAX_CPUS: usize = 8;
const MAX_MEMORY_REGIONS: usize = 8;
const MAX_REDIST_REGIONS: usize = 4;
/// The most firmware reservations (/memreserve/ entries and
/// /reserved-memory regions) hv keeps track of.
pub const MAX_RESERVED: usize = 16;
/// The most pieces guest memory may come in.
pub const MAX_GUEST_REGIONS: usize = 16;

/// A physical address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub fn contains(&self, address: u64) -> bool {
        address >= self.base && address < self.end()
    }

    pub fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// How PSCI calls reach the firmware (the /psci node's `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

/// The generic timer's PPIs as interrupt ids (16 + PPI number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrqs {
    pub secure_physical: u32,
    pub physical: u32,
    pub virtual_: u32,
    pub hypervisor: u32,
    /// The EL2 virtual timer's (FEAT_VHE), when the node lists a fifth
    /// interrupt.
    pub hypervisor_virtual: Option<u32>,
}

/// What hv found in the device tree.
#[derive(Clone, Debug)]
pub struct Platform {
    pub memory: ArrayVec<Region, MAX_MEMORY_REGIONS>,
    /// The PL011 used as console, with its device-tree path.
    pub uart: Region,
    pub uart_path: ArrayString,
    pub gic_distributor: Region,
    pub gic_redistributors: ArrayVec<Region, MAX_REDIST_REGIONS>,
    /// The GIC's maintenance interrupt (a PPI, as an INTID), if listed.
    pub gic_maintenance: Option<u32>,
    pub psci: Conduit,
    /// MPIDR affinity values (the `reg` of each /cpus/cpu node), in tree order.
    pub cpus: ArrayVec<u64, MAX_CPUS>,
    pub timer: TimerIrqs,
    /// The initrd the loader placed (hv's guest bundle), if any.
    pub initrd: Option<Region>,
    /// Memory the firmware or the loader keeps for itself.
    pub reserved: ArrayVec<Reserved, MAX_RESERVED>,
}

/// A piece of RAM the device tree reserves: a /memreserve/ entry of the
/// header's memory-reservation block, or a /reserved-memory child with a
/// `reg` (TF-A's BL31, OP-TEE, spin tables, carve-outs). None of it is
/// given to the guest; hv itself also leaves `no_map` regions unmapped,
/// since the firmware may protect them (TZASC) and even speculative
/// accesses through a cacheable mapping could fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub region: Region,
    /// The node has `no-map`: the OS must not map the region at all.
    pub no_map: bool,
}

/// Too many pieces: `memory` minus holes needs more than the capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyPieces;

/// `memory` without any byte of `holes`, each remaining piece shrunk
/// inward to `align` boundaries (pieces that vanish are left out).
/// `align` is a power of two.
pub fn subtract_regions<const N: usize>(
    memory: &[Region],
    holes: &[Region],
    align: u64,
) -> Result<ArrayVec<Region, N>, TooManyPieces> {
    let mut pieces: ArrayVec<Region, N> = ArrayVec::new();
    for region in memory {
        pieces.try_push(*region).map_err(|_| TooManyPieces)?;
    }
    for hole in holes.iter().filter(|h| h.size > 0) {
        let mut next: ArrayVec<Region, N> = ArrayVec::new();
        for piece in &pieces {
            if !piece.overlaps(hole) {
                next.try_push(*piece).map_err(|_| TooManyPieces)?;
                continue;
            }
            if hole.base > piece.base {
                next.try_push(Region {
                    base: piece.base,
                    size: hole.base - piece.base,
                })
                .map_err(|_| TooManyPieces)?;
            }
            if hole.end() < piece.end() {
                next.try_push(Region {
                    base: hole.end(),
                    size: piece.end() - hole.end(),
                })
                .map_err(|_| TooManyPieces)?;
            }
        }
        pieces = next;
    }
    let mask = align - 1;
    Ok(pieces
        .into_iter()
        .filter_map(|piece| {
            let start = piece.base.checked_add(mask)? & !mask;
            let end = piece.end() & !mask;
            (end > start).then_some(Region {
                base: start,
                size: end - start,
            })
        })
        .collect())
}

/// A small owned path string (device-tree paths of console nodes are short).
pub type ArrayString = arrayvec::ArrayString<64>;

/// A required thing missing or malformed: one clear line for the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryError {
    BadDeviceTree,
    NoMemory,
    NoConsole,
    GicV2Only,
    NoGicV3,
    NoPsci,
    UnknownPsciMethod,
    NoCpus,
    TooManyCpus(usize),
    NoTimer,
    /// An interrupt that must be a PPI is not one (type cell 1, number
    /// 0-15 in the GIC binding's three-cell form).
    NotAPpi {
        what: &'static str,
        kind: u32,
        number: u32,
    },
    Malformed(&'static str),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadDeviceTree => {
                f.write_str("x0 does not point to a valid flattened device tree")
            }
            Self::NoMemory => f.write_str("the device tree describes no memory"),
            Self::NoConsole => f.write_str("no PL011 UART (arm,pl011) in the device tree"),
            Self::GicV2Only => f.write_str("hv needs a GICv3; the device tree has only a GICv2"),
            Self::NoGicV3 => f.write_str("hv needs a GICv3 (arm,gic-v3); none in the device tree"),
            Self::NoPsci => f.write_str("no /psci node: hv needs PSCI to start and stop CPUs"),
            Self::UnknownPsciMethod => {
                f.write_str("the /psci node's method is neither smc nor hvc")
            }
            Self::NoCpus => f.write_str("no CPUs under /cpus"),
            Self::TooManyCpus(n) => write!(
                f,
                "{n} CPUs in the device tree; hv supports at most {MAX_CPUS}"
            ),
            Self::NoTimer => f.write_str("no arm,armv8-timer node with its four interrupts"),
            Self::NotAPpi { what, kind, number } => write!(
                f,
                "the {what} interrupt <{kind} {number:#x} ...> is not a PPI (type 1, number 0 to 15)"
            ),
            Self::Malformed(what) => write!(f, "malformed device tree: {what}"),
        }
    }
}

/// The INTID of a PPI given by its binding cells (type, number): type 1
/// and a number below 16, else an error naming `what` (an unchecked number
/// would overflow `16 + number` or reach past the PPI range, where hv uses
/// INTIDs as bit positions in 32-bit registers).
pub fn ppi_intid(what: &'static str, kind: u32, number: u32) -> Result<u32, DiscoveryError> {
    if kind == 1 && number < 16 {
        Ok(16 + number)
    } else {
        Err(DiscoveryError::NotAPpi { what, kind, number })
    }
}

/// The most `reg` entries hv reads from one node (a GICv3 lists its
/// distributor, up to four redistributor regions and the GICv2-compatible
/// CPU, hypervisor and virtual CPU interfaces).
pub const MAX_REG_ENTRIES: usize = 8;
/// The deepest node the walk visits (`fdt_check` refuses deeper trees).
const MAX_WALK_DEPTH: usize = crate::fdt_check::MAX_DEPTH;

/// A node found by walking the tree from the root, with what its position
/// means: its full path, its `reg` translated to CPU physical addresses
/// through every ancestor's `ranges` (Devicetree Specification 2.3.8), and
/// the interrupt parent it inherits from an ancestor below the root.
#[derive(Clone, Debug)]
pub struct Located<'b, 'a> {
    pub node: FdtNode<'b, 'a>,
    /// The full path; None if longer than an `ArrayString` holds.
    pub path: Option<ArrayString>,
    /// 1 for a child of the root.
    pub depth: usize,
    pub regions: ArrayVec<Region, MAX_REG_ENTRIES>,
    /// `interrupt-parent` of the nearest ancestor below the root that has
    /// one, when the node has none itself: what a copy of the node placed
    /// under the root must state explicitly.
    pub inherited_interrupt_parent: Option<u32>,
}

/// The first node, in tree order, for which `wanted` holds, located.
pub fn find_located<'b, 'a>(
    fdt: &'b Fdt<'a>,
    wanted: impl Fn(&FdtNode<'b, 'a>) -> bool,
) -> Result<Option<Located<'b, 'a>>, DiscoveryError> {
    let mut found = None;
    walk(fdt, |node, ancestors, path| {
        if !wanted(node) {
            return Ok(false);
        }
        found = Some(locate(*node, ancestors, path)?);
        Ok(true)
    })?;
    Ok(found)
}

/// Every node for which `wanted` holds, located, in tree order.
pub fn for_each_located<'b, 'a>(
    fdt: &'b Fdt<'a>,
    wanted: impl Fn(&FdtNode<'b, 'a>, &[FdtNode<'b, 'a>]) -> bool,
    mut visit: impl FnMut(Located<'b, 'a>) -> Result<(), DiscoveryError>,
) -> Result<(), DiscoveryError> {
    walk(fdt, |node, ancestors, path| {
        if wanted(node, ancestors) {
            visit(locate(*node, ancestors, path)?)?;
        }
        Ok(false)
    })
}

/// Calls `visit(node, ancestors (root first), path)` for every node below
/// the root, depth first in tree order, until it returns true.
fn walk<'b, 'a>(
    fdt: &'b Fdt<'a>,
    mut visit: impl FnMut(
        &FdtNode<'b, 'a>,
        &[FdtNode<'b, 'a>],
        Option<&str>,
    ) -> Result<bool, DiscoveryError>,
) -> Result<(), DiscoveryError> {
    let root = fdt.find_node("/").ok_or(DiscoveryError::BadDeviceTree)?;
    let mut ancestors: ArrayVec<FdtNode<'b, 'a>, MAX_WALK_DEPTH> = ArrayVec::new();
    ancestors.push(root);
    let mut path: arrayvec::ArrayString<256> = arrayvec::ArrayString::new();
    walk_below(root, &mut ancestors, &mut path, true, &mut visit)?;
    Ok(())
}

type Visit<'v, 'b, 'a> = dyn FnMut(&FdtNode<'b, 'a>, &[FdtNode<'b, 'a>], Option<&str>) -> Result<bool, DiscoveryError>
    + 'v;

fn walk_below<'b, 'a>(
    parent: FdtNode<'b, 'a>,
    ancestors: &mut ArrayVec<FdtNode<'b, 'a>, MAX_WALK_DEPTH>,
    path: &mut arrayvec::ArrayString<256>,
    path_ok: bool,
    visit: &mut Visit<'_, 'b, 'a>,
) -> Result<bool, DiscoveryError> {
    for child in parent.children() {
        let parent_len = path.len();
        let child_ok =
            path_ok && path.try_push('/').is_ok() && path.try_push_str(child.name).is_ok();
        if visit(&child, ancestors, child_ok.then_some(path.as_str()))? {
            return Ok(true);
        }
        if ancestors.try_push(child).is_err() {
            return Err(DiscoveryError::Malformed("nodes nested too deep"));
        }
        let stop = walk_below(child, ancestors, path, child_ok, visit)?;
        ancestors.pop();
        path.truncate(parent_len);
        if stop {
            return Ok(true);
        }
    }
    Ok(false)
}

fn cells_of(node: &FdtNode<'_, '_>, name: &str, default: usize) -> usize {
    node.property(name)
        .and_then(|p| p.as_usize())
        .unwrap_or(default)
}

/// A 1- or 2-cell number (0 cells: 0).
fn number(cells: &[u32]) -> Option<u64> {
    match cells {
        [] => Some(0),
        [one] => Some(*one as u64),
        [high, low] => Some((*high as u64) << 32 | *low as u64),
        _ => None,
    }
}

/// `address` (in `bus`'s child address space) in its parent's space,
/// through `bus`'s `ranges`: empty means identity, absent means the
/// children are not memory-mapped.
fn through_ranges(
    bus: &FdtNode<'_, '_>,
    parent_address_cells: usize,
    address: u64,
    size: u64,
) -> Result<u64, DiscoveryError> {
    let Some(ranges) = bus.property("ranges") else {
        return Err(DiscoveryError::Malformed(
            "a device sits on a bus without ranges (not memory-mapped)",
        ));
    };
    if ranges.value.is_empty() {
        return Ok(address);
    }
    let child_cells = cells_of(bus, "#address-cells", 2);
    let size_cells = cells_of(bus, "#size-cells", 1);
    let entry_cells = child_cells + parent_address_cells + size_cells;
    if child_cells > 2 || parent_address_cells > 2 || size_cells > 2 {
        return Err(DiscoveryError::Malformed(
            "a bus's ranges has addresses wider than two cells",
        ));
    }
    if entry_cells == 0 || !ranges.value.len().is_multiple_of(entry_cells * 4) {
        return Err(DiscoveryError::Malformed(
            "a bus's ranges is not a whole number of (child, parent, size) entries",
        ));
    }
    for entry in ranges.value.chunks_exact(entry_cells * 4) {
        let words: ArrayVec<u32, 6> = be_u32s(entry).collect();
        let child = number(&words[..child_cells]);
        let parent = number(&words[child_cells..child_cells + parent_address_cells]);
        let length = number(&words[child_cells + parent_address_cells..]);
        let (Some(child), Some(parent), Some(length)) = (child, parent, length) else {
            continue;
        };
        let inside = address >= child
            && address
                .checked_add(size)
                .is_some_and(|end| end <= child.saturating_add(length));
        if inside {
            return (address - child)
                .checked_add(parent)
                .ok_or(DiscoveryError::Malformed("a bus's ranges overflow"));
        }
    }
    Err(DiscoveryError::Malformed(
        "a device's reg lies outside its bus's ranges",
    ))
}

/// `node`'s `reg` entries in CPU physical addresses, given its ancestors
/// (root first).
fn translated_regions(
    node: &FdtNode<'_, '_>,
    ancestors: &[FdtNode<'_, '_>],
) -> Result<ArrayVec<Region, MAX_REG_ENTRIES>, DiscoveryError> {
    let mut out = ArrayVec::new();
    let Some(reg) = node.property("reg") else {
        return Ok(out);
    };
    let Some(parent) = ancestors.last() else {
        return Ok(out);
    };
    let address_cells = cells_of(parent, "#address-cells", 2);
    let size_cells = cells_of(parent, "#size-cells", 1);
    if address_cells > 2 || size_cells > 2 {
        return Err(DiscoveryError::Malformed(
            "a reg with addresses or sizes wider than two cells",
        ));
    }
    let entry_cells = address_cells + size_cells;
    if reg.value.is_empty() {
        return Ok(out);
    }
    if entry_cells == 0 || !reg.value.len().is_multiple_of(entry_cells * 4) {
        return Err(DiscoveryError::Malformed(
            "a reg is not a whole number of (address, size) entries",
        ));
    }
    for entry in reg.value.chunks_exact(entry_cells * 4) {
        let words: ArrayVec<u32, 4> = be_u32s(entry).collect();
        let (Some(mut base), Some(size)) = (
            number(&words[..address_cells]),
            number(&words[address_cells..]),
        ) else {
            continue;
        };
        // Up through every bus below the root: ancestors[i] is the bus
        // whose child space `base` is in, ancestors[i - 1] its parent.
        for i in (1..ancestors.len()).rev() {
            let parent_cells = cells_of(&ancestors[i - 1], "#address-cells", 2);
            base = through_ranges(&ancestors[i], parent_cells, base, size)?;
        }
        out.try_push(Region { base, size })
            .map_err(|_| DiscoveryError::Malformed("a node with more than 8 reg entries"))?;
    }
    Ok(out)
}

fn locate<'b, 'a>(
    node: FdtNode<'b, 'a>,
    ancestors: &[FdtNode<'b, 'a>],
    path: Option<&str>,
) -> Result<Located<'b, 'a>, DiscoveryError> {
    let inherited_interrupt_parent = if node.property("interrupt-parent").is_some() {
        None
    } else {
        ancestors
            .iter()
            .skip(1)
            .rev()
            .find_map(|a| a.property("interrupt-parent"))
            .and_then(|p| be_u32s(p.value).next())
    };
    Ok(Located {
        node,
        path: path.and_then(|p| ArrayString::from(p).ok()),
        depth: ancestors.len(),
        regions: translated_regions(&node, ancestors)?,
        inherited_interrupt_parent,
    })
}

/// How many cells one of `node`'s interrupt specifiers has: its interrupt
/// parent's `#interrupt-cells` (the parent named by the node's own
/// `interrupt-parent`, else the nearest ancestor's, the root's included;
/// with none anywhere, the GIC). hv reads only GIC specifiers, which the
/// arm,gic-v3 binding makes 3 cells (type, number, flags) or 4 (plus a PPI
/// partition phandle, 0 for none); anything else is refused.
fn interrupt_cells(
    fdt: &Fdt<'_>,
    node: &Located<'_, '_>,
    gic: &Located<'_, '_>,
) -> Result<usize, DiscoveryError> {
    let parent = node
        .node
        .property("interrupt-parent")
        .and_then(|p| be_u32s(p.value).next())
        .or(node.inherited_interrupt_parent)
        .or_else(|| {
            fdt.find_node("/")
                .and_then(|root| root.property("interrupt-parent"))
                .and_then(|p| be_u32s(p.value).next())
        });
    let controller = match parent {
        Some(phandle) => fdt.find_phandle(phandle).ok_or(DiscoveryError::Malformed(
            "an interrupt-parent names no node",
        ))?,
        None => gic.node,
    };
    // Node names are slices of the blob: the same node, the same slice.
    if !core::ptr::eq(controller.name.as_ptr(), gic.node.name.as_ptr()) {
        return Err(DiscoveryError::Malformed(
            "the timer's or GIC's interrupt parent is not the GICv3",
        ));
    }
    match cells_of(&controller, "#interrupt-cells", 3) {
        n @ (3 | 4) => Ok(n),
        _ => Err(DiscoveryError::Malformed(
            "the GICv3's #interrupt-cells is neither 3 nor 4",
        )),
    }
}

fn is_compatible(node: &FdtNode<'_, '_>, with: &str) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| s == with))
}

fn be_u32s(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// Reads a big-endian number of 1 or 2 cells.
pub fn be_number(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u32::from_be_bytes(bytes.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

impl Platform {
    pub fn discover(fdt: &Fdt<'_>) -> Result<Self, DiscoveryError> {
        let mut memory = ArrayVec::new();
        let is_memory = |node: &FdtNode<'_, '_>, _: &[FdtNode<'_, '_>]| {
            node.property("device_type")
                .and_then(|p| p.as_str())
                .is_some_and(|t| t == "memory")
        };
        for_each_located(fdt, is_memory, |found| {
            for region in found.regions.into_iter().filter(|r| r.size > 0) {
                memory
                    .try_push(region)
                    .map_err(|_| DiscoveryError::Malformed("more than 8 memory regions"))?;
            }
            Ok(())
        })?;
        if memory.is_empty() {
            return Err(DiscoveryError::NoMemory);
        }

        let (uart, uart_path) = find_console(fdt)?;

        let gic = find_located(fdt, |node| is_compatible(node, "arm,gic-v3"))?;
        let Some(gic) = gic else {
            let v2 = ["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic"];
            return Err(if fdt.find_compatible(&v2).is_some() {
                DiscoveryError::GicV2Only
            } else {
                DiscoveryError::NoGicV3
            });
        };
        let mut gic_regions = gic.regions.iter().copied();
        let gic_distributor = gic_regions
            .next()
            .ok_or(DiscoveryError::Malformed("GICv3 node has no reg"))?;
        let redist_count = gic
            .node
            .property("#redistributor-regions")
            .and_then(|p| p.as_usize())
            .unwrap_or(1);
        let mut gic_redistributors = ArrayVec::new();
        for region in gic_regions.take(redist_count) {
            gic_redistributors
                .try_push(region)
                .map_err(|_| DiscoveryError::Malformed("more than 4 redistributor regions"))?;
        }
        if gic_redistributors.is_empty() {
            return Err(DiscoveryError::Malformed(
                "GICv3 node has no redistributor region",
            ));
        }

        // (type 1 = PPI, number, flags[, PPI partition]): a listed
        // maintenance interrupt must be a PPI.
        let gic_maintenance = match gic.node.property("interrupts") {
            None => None,
            Some(p) => {
                let step = interrupt_cells(fdt, &gic, &gic)?;
                let cells: ArrayVec<u32, 4> = be_u32s(p.value).take(step).collect();
                if cells.len() < step || !p.value.len().is_multiple_of(step * 4) {
                    return Err(DiscoveryError::Malformed(
                        "the GIC's interrupts property is not a whole number of specifiers",
                    ));
                }
                Some(ppi_intid("GIC maintenance", cells[0], cells[1])?)
            }
        };

        let psci_node = fdt
            .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
            .ok_or(DiscoveryError::NoPsci)?;
        let psci = match psci_node.property("method").and_then(|p| p.as_str()) {
            Some("smc") => Conduit::Smc,
            Some("hvc") => Conduit::Hvc,
            _ => return Err(DiscoveryError::UnknownPsciMethod),
        };

        let cpus = find_cpus(fdt)?;

        let timer = find_located(fdt, |node| is_compatible(node, "arm,armv8-timer"))?
            .ok_or(DiscoveryError::NoTimer)?;
        // `step` cells per interrupt (type, number, flags[, PPI partition]);
        // PPIs are type 1.
        let step = interrupt_cells(fdt, &timer, &gic)?;
        let cells: ArrayVec<u32, 16> = timer
            .node
            .property("interrupts")
            .map(|p| be_u32s(p.value).take(5 * step).collect())
            .unwrap_or_default();
        if cells.len() < 4 * step {
            return Err(DiscoveryError::NoTimer);
        }
        let ppi = |what, i: usize| ppi_intid(what, cells[i * step], cells[i * step + 1]);
        let timer = TimerIrqs {
            secure_physical: ppi("secure physical timer", 0)?,
            physical: ppi("physical timer", 1)?,
            virtual_: ppi("virtual timer", 2)?,
            hypervisor: ppi("hypervisor timer", 3)?,
            hypervisor_virtual: if cells.len() >= 5 * step {
                Some(ppi("hypervisor virtual timer", 4)?)
            } else {
                None
            },
        };

        let initrd = initrd_region(fdt)?;
        let reserved = find_reservations(fdt)?;
        Ok(Self {
            memory,
            uart,
            uart_path,
            gic_distributor,
            gic_redistributors,
            gic_maintenance,
            psci,
            cpus,
            timer,
            initrd,
            reserved,
        })
    }

    /// What the guest gets as RAM: every memory region except `hv_image`
    /// and everything the firmware reserved, in 2 MiB-aligned pieces (the
    /// stage-2 block size, and the arm64 kernel's alignment).
    pub fn guest_memory(
        &self,
        hv_image: Region,
    ) -> Result<ArrayVec<Region, MAX_GUEST_REGIONS>, TooManyPieces> {
        let mut holes: ArrayVec<Region, { MAX_RESERVED + 1 }> = ArrayVec::new();
        holes.push(hv_image);
        holes.extend(self.reserved.iter().map(|r| r.region));
        subtract_regions(&self.memory, &holes, 2 << 20)
    }

    /// The RAM hv maps for itself (4 KiB pages): everything but the
    /// `no-map` reservations.
    pub fn hv_mappable_memory(&self) -> Result<ArrayVec<Region, MAX_GUEST_REGIONS>, TooManyPieces> {
        let holes: ArrayVec<Region, MAX_RESERVED> = self
            .reserved
            .iter()
            .filter(|r| r.no_map)
            .map(|r| r.region)
            .collect();
        subtract_regions(&self.memory, &holes, 4096)
    }

    /// The device-tree index of the CPU with this MPIDR affinity.
    pub fn cpu_index(&self, mpidr: u64) -> Option<usize> {
        let affinity = mpidr & 0xff_00ff_ffff;
        self.cpus.iter().position(|&id| id == affinity)
    }
}

/// The console UART, found on its own so that later discovery errors can
/// be printed.
pub fn find_console(fdt: &Fdt<'_>) -> Result<(Region, ArrayString), DiscoveryError> {
    // Prefer the PL011 that /chosen/stdout-path names (a path, or an alias
    // of one), else the first one.
    let chosen = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("stdout-path"))
        .and_then(|p| p.as_str())
        .map(|s| s.split(':').next().unwrap_or(s));
    let chosen_path = match chosen {
        Some(alias) if !alias.starts_with('/') => fdt.aliases().and_then(|a| a.resolve(alias)),
        other => other,
    };
    let mut first = None;
    let mut named = None;
    for_each_located(
        fdt,
        |node, _| is_compatible(node, "arm,pl011") && node.property("reg").is_some(),
        |found| {
            let Some(region) = found.regions.first().copied() else {
                return Ok(());
            };
            let path = found
                .path
                .ok_or(DiscoveryError::Malformed("console node path too long"))?;
            if named.is_none() && chosen_path.is_some_and(|p| p == path.as_str()) {
                named = Some((region, path));
            }
            first.get_or_insert((region, path));
            Ok(())
        },
    )?;
    named.or(first).ok_or(DiscoveryError::NoConsole)
}

fn find_cpus(fdt: &Fdt<'_>) -> Result<ArrayVec<u64, MAX_CPUS>, DiscoveryError> {
    let node = fdt.find_node("/cpus").ok_or(DiscoveryError::NoCpus)?;
    let mut cpus = ArrayVec::new();
    let mut count = 0;
    for child in node.children() {
        let is_cpu = child
            .property("device_type")
            .and_then(|p| p.as_str())
            .is_some_and(|t| t == "cpu");
        if !is_cpu {
            continue;
        }
        let reg = child
            .property("reg")
            .and_then(|p| be_number(p.value))
            .ok_or(DiscoveryError::Malformed(
                "cpu node without a 1- or 2-cell reg",
            ))?;
        count += 1;
        if cpus.try_push(reg).is_err() {
            continue;
        }
    }
    match count {
        0 => Err(DiscoveryError::NoCpus),
        n if n > MAX_CPUS => Err(DiscoveryError::TooManyCpus(n)),
        _ => Ok(cpus),
    }
}

/// The header's /memreserve/ entries and the /reserved-memory children with
/// a `reg` (dynamically placed ones, `size` without `reg`, are the OS's to
/// allocate and do not concern hv).
fn find_reservations(fdt: &Fdt<'_>) -> Result<ArrayVec<Reserved, MAX_RESERVED>, DiscoveryError> {
    let too_many = DiscoveryError::Malformed("more than 16 reserved memory regions");
    let mut reserved = ArrayVec::new();
    for entry in fdt.memory_reservations() {
        let region = Region {
            base: entry.address() as usize as u64,
            size: entry.size() as u64,
        };
        if region.size > 0 {
            reserved
                .try_push(Reserved {
                    region,
                    no_map: false,
                })
                .map_err(|_| too_many)?;
        }
    }
    let in_reserved_memory = |_: &FdtNode<'_, '_>, ancestors: &[FdtNode<'_, '_>]| {
        ancestors.len() == 2 && ancestors[1].name == "reserved-memory"
    };
    for_each_located(fdt, in_reserved_memory, |found| {
        let no_map = found.node.property("no-map").is_some();
        for region in found.regions.into_iter().filter(|r| r.size > 0) {
            reserved
                .try_push(Reserved { region, no_map })
                .map_err(|_| too_many)?;
        }
        Ok(())
    })?;
    Ok(reserved)
}

fn initrd_region(fdt: &Fdt<'_>) -> Result<Option<Region>, DiscoveryError> {
    let Some(chosen) = fdt.find_node("/chosen") else {
        return Ok(None);
    };
    let start = chosen
        .property("linux,initrd-start")
        .map(|p| be_number(p.value));
    let end = chosen
        .property("linux,initrd-end")
        .map(|p| be_number(p.value));
    match (start, end) {
        (None, None) => Ok(None),
        (Some(Some(start)), Some(Some(end))) if end >= start => Ok(Some(Region {
            base: start,
            size: end - start,
        })),
        _ => Err(DiscoveryError::Malformed("/chosen linux,initrd-start/end")),
    }
}

/// hv's own options from /chosen/bootargs (words starting with `hv.`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `hv.exit=semihosting`: report the exit status to the emulator through
    /// semihosting SYS_EXIT (QEMU -semihosting); otherwise PSCI SYSTEM_OFF.
    pub semihosting_exit: bool,
    /// `hv.gic=virtual|passthrough`: how the guest gets interrupts.
    pub gic: GicMode,
    /// `hv.fail=panic|fault|write-code`: fail on purpose once the heap is up, so tests
    /// can prove that a panic, or an exception inside hv, ends the run.
    pub deliberate_failure: Option<DeliberateFailure>,
    /// `hv.selftest=ipc|ipc-stall|ipc-sgi|ipc-sgi-lost|shadow|shadow-no-tlbi|shadow-no-vmalle1|shadow-stuck|shadow-no-ipas2e1is`: run a self-test instead of a guest and
    /// end the run with its verdict (see `SelfTest`).
    pub self_test: Option<SelfTest>,
    /// `hv.nested=demo|demo-no-tlbi|recycle|recycle-stale-root|recycle-no-off-state|recycle-no-kick-all|irq|irq-no-writeback|irq-no-maintenance|timer-hw|timer-hw-no-link|timer|timer-no-cntvoff|timer-no-cntvoff-levels|timer-no-l1-irq|timer-no-l1-deadline|timer-no-l2-deadline|timer-no-eoi-maintenance|timer-no-istatus-refresh|timer-no-cntvoff-istatus|timer-no-l2-physical-deadline|timer-no-cnthctl|timer-no-cnthctl-counter|timer-no-cntkctl-restore|gic|gic-no-l2-exit|gic-no-kick|gic-no-list|gic-no-eoi-maintenance|gic-no-power-off|gic-no-withdraw|gic-no-read-sync|gic-no-reprioritize|gic-no-remote-ppi-active|gic-no-ppi-active-wait|gic-no-displace|gic-no-listed-active|gic-no-remote-hw-deactivate|mmu|...`: run the nested demo instead of a
    /// guest bundle: a guest hypervisor (L1) at virtual EL2 with FEAT_NV2
    /// running its own L2, served by the shadow-mmu service (`hv::nested`).
    pub nested: Option<NestedDemo>,
    /// `hv.probe=walk-abort|gic-active|spi-view|spi-view-no-view|spi-view-no-set-pending`: run one of hv's built-in EL1
    /// probes instead of the bundle's kernel (see `Probe`).
    pub probe: Option<Probe>,
    /// `hv.list-registers=N` (N from 2 to 16): use at most N of the GIC's
    /// list registers, so that a test boot overflows them often and the
    /// refill path (the underflow maintenance interrupt) is exercised.
    pub list_register_limit: Option<usize>,
    /// `hv.wfxt=off`: hv does not use FEAT_WFxT (WFIT), as on a CPU
    /// without it, so QEMU's `max` CPU tests that path (the nested demo's
    /// WFI wait, `arch::nested`).
    pub without_wfxt: bool,
}

/// A tiny EL1 guest built into hv that checks, on the machine, what hv
/// shows a guest (`hv.probe=`); it runs instead of the bundle's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// External aborts on its own stage-1 table walks
    /// (`arch::walk_abort_probe`).
    WalkAbort,
    /// The active state of its SGIs and PPIs through the redistributor
    /// (`arch::gic_active_probe`).
    GicActive,
    /// `spi-view`: one vCPU's view of an SPI another vCPU holds, through
    /// the distributor (`arch::spi_view_probe`, review 41 R41-1).
    SpiView,
    /// `spi-view-no-view`: the same with hv reading such an SPI in its
    /// physical state (it asks no holder): the probe must fail.
    SpiViewNoView,
    /// `spi-view-no-set-pending`: the same with hv forwarding a
    /// GICD_ISPENDR<n> write of an SPI another vCPU holds pending (review
    /// 44 R44-4): the probe must fail (delivered twice).
    SpiViewNoSetPending,
}

/// A self-test hv runs instead of a guest (`hv.selftest=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// `ipc`: two physical CPUs exchange records over an ipc ring pair, the
    /// service CPU sleeping on the WFE/SEV doorbell (`hv::ipc_selftest`).
    Ipc,
    /// `ipc-stall`: the same with a service that stops answering after
    /// 1000 requests: the client's timeout must end the run with a failure
    /// (proof that a lost wakeup cannot hang the test).
    IpcStall,
    /// `ipc-sgi`: the exchange of `ipc` with SGI doorbells: ringing sends
    /// an SGI to the waiting CPU, which sleeps in WFI (a sleep QEMU models,
    /// unlike WFE's), so a lost wakeup shows as a timeout.
    IpcSgi,
    /// `ipc-sgi-lost`: `ipc-sgi` with a service bell that rings without
    /// sending the SGI: the run must fail by the client's timeout (proof
    /// that the `ipc-sgi` run can detect a lost wakeup).
    IpcSgiLost,
    /// `shadow`: the shadow-mmu service on CPU 1 answers the stage-2
    /// faults of an L2 payload the boot CPU runs on the service's shadow
    /// stage 2, hv playing L1 (its table for L2, its TLBIs) and L0 (its
    /// map of L1): DESIGN.md's three paths (`hv::shadow_selftest`).
    Shadow,
    /// `shadow-no-tlbi`: `shadow` with TLB maintenance that skips the
    /// hardware TLBIs: the run must fail on the stale value L2 reads after
    /// L1's TLBI (proof that `shadow` checks the hardware invalidation).
    ShadowNoTlbi,
    /// `shadow-no-vmalle1`: `shadow` whose TLB maintenance leaves out the
    /// TLBI VMALLE1IS after the IPAS2E1ISs; it must fail at L1's TLBI
    /// IPAS2E1IS step.
    ShadowNoVmalle1,
    /// `shadow-stuck`: `shadow` with L2 entered at the payload's `b .`;
    /// the EL2 watchdog must end it with a failure.
    ShadowStuck,
    /// `shadow-no-ipas2e1is`: `shadow` whose TLB maintenance leaves out
    /// the TLBI IPAS2E1ISs (VMALLE1IS kept); it must fail where L2 walks
    /// its own stage-1 table after L1 remapped the table's page.
    ShadowNoIpas2e1is,
}

impl SelfTest {
    /// Whether this is one of the shadow self-tests (`hv::shadow_selftest`).
    pub fn is_shadow(self) -> bool {
        matches!(
            self,
            SelfTest::Shadow
                | SelfTest::ShadowNoTlbi
                | SelfTest::ShadowNoVmalle1
                | SelfTest::ShadowStuck
                | SelfTest::ShadowNoIpas2e1is
        )
    }
}

/// Which nested demo `hv.nested=` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedDemo {
    /// `demo`: L1 must end with its PASS sentinel.
    Demo,
    /// `demo-no-tlbi`: hv acknowledges L1's stage-2 TLBIs without
    /// invalidating anything: L1 must then see the stale page and fail
    /// (proof that the demo checks the TLBI path).
    DemoNoTlbi,
    /// `fault-rate`: L1 (`arch::nested_l1_fault_rate`) maps
    /// `nested::fault_rate::PAGES` pages for its L2, which touches each
    /// once per pass, after L1's remaps and TLBIs of several kinds; hv
    /// prints each pass's faults, time and service counts and checks the
    /// counts the pass implies (`nested::fault_rate`).
    FaultRate,
    /// `fault-rate-no-tlbi`: the same, but hv acknowledges L1's stage-2
    /// TLBIs without applying them (`demo-no-tlbi`'s defect): after the
    /// first remap L2 reads the pages' old values (this run must fail).
    FaultRateNoTlbi,
    /// `fault-rate-tight`: the same passes on a service budget smaller
    /// than their working set (`nested::fault_rate::pressure`): every pass
    /// evicts cached walks and shadow leaves, L1 still checks every value,
    /// and hv checks what the pass implies under pressure.
    FaultRateTight,
    /// `fault-rate-smp`: the fault-rate passes but 3 and 4 with every vCPU
    /// of L1 (`arch::nested_l1_fault_rate_smp`; two at three CPUs) running
    /// the same L2 and faulting interleaved pages at once; hv prints each
    /// pass's aggregate and per-vCPU counts and checks what holds whatever
    /// the interleaving (`nested::fault_rate::smp`).
    FaultRateSmp,
    /// `fault-rate-smp-no-tlbi`: the same, but hv acknowledges L1's
    /// stage-2 TLBIs without applying them (`fault-rate-no-tlbi`'s
    /// defect): in pass 2 every vCPU's L2 reads its pages' old values
    /// (this run must fail).
    FaultRateSmpNoTlbi,
    /// `fault-rate-smp-one-vcpu-log`: the same, but hv's dirty log
    /// resolves the writes of the vCPU that started it (vCPU 0) alone, as
    /// a log kept in that vCPU's state did: in the dirty-log pass vCPU 1's
    /// first write is an `L0Denied` hv does not resolve (this run must
    /// fail).
    FaultRateSmpOneVcpuLog,
    /// `fault-rate-smp-race-unresolved`: the same, but hv's dirty log
    /// leaves a denied write unresolved when another vCPU's write logged
    /// the page since the denial (the code before `DirtyWrite::LoggedByAnother`):
    /// in the dirty-log pass the race on the first page both vCPUs write
    /// stops hv (this run must fail).
    FaultRateSmpRaceUnresolved,
    /// `recycle`: L1 runs three L2s in turn, round after round, on a
    /// service bounded to two contexts, so contexts are recycled while it
    /// runs (hv's recycling handshake, `nested::handshake`); L1 checks
    /// every value each L2 reads and writes.
    Recycle,
    /// `recycle-stale-root`: the same, but hv reuses the shadow root it got
    /// at a key's first entry instead of asking at every entry (an hv
    /// without the handshake's re-read): after a recycle an L2 runs on
    /// another L2's shadow and L1 must catch it (this run must fail).
    RecycleStaleRoot,
    /// `recycle-no-off-state`: L1's PSCI CPU_OFF stops its vCPU, but hv
    /// keeps the vCPU ON, so AFFINITY_INFO never reports it OFF and L1
    /// (which waits for OFF before starting it again) must fail.
    RecycleNoOffState,
    /// `recycle-no-kick-all`: the recycles' kick pass sees vCPUs 0 and 1
    /// only (the old two-vCPU PE set), so a live vCPU 2 in the victim's L2
    /// is neither interrupted nor waited for; hv must fail the run.
    RecycleNoKickAll,
    /// `recycle-no-id-reset`: hv does not reset a restarted vCPU's
    /// VPIDR_EL2 and VMPIDR_EL2 (VNCR words) to its own MIDR and MPIDR
    /// at CPU_ON after CPU_OFF: L1 must catch the cleared page's 0 (this
    /// run must fail).
    RecycleNoIdReset,
    /// `irq`: L1 injects virtual interrupts into its L2 through its
    /// virtual GIC interface (ICH_LR<n>_EL2 in the VNCR page) and checks
    /// what L2's acknowledge and EOI left there (`arch::nested_vgic`).
    Irq,
    /// `irq-no-writeback`: the same, but hv does not write the list
    /// registers' State back to L1 after L2 ran: L1 must catch it (this
    /// run must fail).
    IrqNoWriteback,
    /// `irq-no-maintenance`: the same, but hv never delivers L1's
    /// maintenance interrupt: L1 must catch it (this run must fail).
    IrqNoMaintenance,
    /// `timer-hw`: L1 forwards L2's virtual timer interrupt (its PPI 27)
    /// to L2 with an HW = 1 list register, as KVM does, and L2 takes it
    /// several times, deactivating each by EOI (`arch::nested_vgic`,
    /// `arch::nested_l1_hw_timer`).
    TimerHw,
    /// `timer-hw-no-link`: the same, but L2's deactivation of the HW = 1
    /// entry leaves L1's PPI active: L1 must catch it (this run must
    /// fail).
    TimerHwNoLink,
    /// `timer`: L1 takes its own EL2 timers' interrupts at virtual EL2
    /// and runs an L2 whose virtual timer runs with L1's CNTVOFF_EL2
    /// (`arch::nested_timer`, `arch::nested_l1_timer`).
    Timer,
    /// `timer-no-cntvoff`: the same, but L2 runs with CNTVOFF_EL2 0: L1
    /// must catch it (this run must fail).
    TimerNoCntvoff,
    /// `timer-no-l1-irq`: the same, but hv never delivers L1's timer
    /// PPIs: L1 must catch it (this run must fail).
    TimerNoL1Irq,
    /// `timer-no-l1-deadline`: the same, but while L2 runs hv does not
    /// arm a timer for L1's EL2 timers' deadlines: L1 must catch it (this
    /// run must fail).
    TimerNoL1Deadline,
    /// `timer-no-cnthctl`: the same, but L2 runs with hv's own
    /// CNTHCTL_EL2, not the traps L1's asks for: L1 must catch it (this
    /// run must fail).
    TimerNoCnthctl,
    /// `timer-no-cntvoff-levels`: the same, but while L1 runs hv computes
    /// L2's virtual timer without L1's CNTVOFF_EL2: L1 must catch it (this
    /// run must fail).
    TimerNoCntvoffLevels,
    /// `timer-no-l2-deadline`: the same, but while L1 runs hv does not arm
    /// a timer for L2's EL1 timers' deadlines: L1 must catch it (this run
    /// must fail).
    TimerNoL2Deadline,
    /// `timer-no-eoi-maintenance`: the same, but the timer PPIs hv lists
    /// for L1 have no EOI maintenance: L1 must catch it (this run must
    /// fail).
    TimerNoEoiMaintenance,
    /// `timer-no-istatus-refresh`: the same, but hv does not recompute
    /// ISTATUS of L2's timers in the VNCR page at returns to L1: L1 must
    /// catch it (this run must fail).
    TimerNoIstatusRefresh,
    /// `timer-no-cntvoff-istatus`: the same, but the ISTATUS hv recomputes
    /// for L2's virtual timer at returns to L1 ignores L1's CNTVOFF_EL2:
    /// L1 must catch it (this run must fail).
    TimerNoCntvoffIstatus,
    /// `timer-no-l2-physical-deadline`: the same, but while L1 runs hv's
    /// EL2 physical timer backs L2's virtual timer only, not its physical
    /// one: L1 must catch it (this run must fail).
    TimerNoL2PhysicalDeadline,
    /// `timer-no-cnthctl-counter`: the same, but L2's physical counter
    /// never traps, whatever L1's CNTHCTL_EL2 asks: L1 must catch it (this
    /// run must fail).
    TimerNoCnthctlCounter,
    /// `timer-no-cntkctl-restore`: the same, but L1's CNTKCTL_EL1 (its
    /// CNTHCTL_EL2's low bits) is not put back after L2 ran: L1 must catch
    /// it (this run must fail).
    TimerNoCntkctlRestore,
    /// `mmu`: a non-VHE guest hypervisor (E2H = 0, `arch::nested_l1_mmu`)
    /// runs with its EL2 stage 1 on (hv converts its EL2 regime onto the
    /// hardware EL1 one, `nested::el2_regime`), runs L2 and takes a
    /// stage-1 fault of its own.
    Mmu,
    /// `mmu-no-t0sz`: the same, but hv ignores TCR_EL2.T0SZ (the hardware
    /// gets 16): L1 must catch it (this run must fail).
    MmuNoT0sz,
    /// `mmu-vhe`: the `mmu` L1 shown FEAT_VHE: a VHE guest hypervisor
    /// (E2H = 1) with its EL2&0 stage 1 on (its SCTLR/TCR/TTBR0/MAIR_EL2
    /// through the EL1 encodings, trapped by HCR_EL2.{TVM, TRVM}).
    MmuVhe,
    /// `mmu-vhe-keep-dc`: the same, but hv keeps HCR_EL2.DC set whatever
    /// L1's SCTLR_EL2.M says (a VHE L1's MMU silently off): L1 must catch
    /// it (this run must fail).
    MmuVheKeepDc,
    /// `mmu-no-el2-tlbi`: `mmu`, but hv acknowledges L1's own EL2 stage-1
    /// TLBIs without applying them: L1 must catch the stale translation of
    /// its remapped alias (this run must fail).
    MmuNoEl2Tlbi,
    /// `traps`: L1 (`arch::nested_l1_traps`) sets CPTR_EL2 and MDCR_EL2 to
    /// trap L2's FP/SIMD, CPACR_EL1, PMU and debug accesses, takes each at
    /// its vector with its syndrome, and checks its own FP trap at EL2
    /// (`nested::traps`).
    Traps,
    /// `traps-no-cptr`: the same, but hv never adds L1's CPTR_EL2 traps to
    /// L2's hardware: L2's FP use does not trap (this run must fail).
    TrapsNoCptr,
    /// `traps-no-mdcr`: the same, but hv never adds L1's MDCR_EL2 traps to
    /// L2's hardware: L2's PMU access does not trap (this run must fail).
    TrapsNoMdcr,
    /// `traps-no-el2-cptr`: the same, but hv never applies L1's CPTR_EL2
    /// to L1 itself at EL2: L1's own FP use does not trap (this run must
    /// fail).
    TrapsNoEl2Cptr,
    /// `traps-no-hpme-guard`: the same, but hv gives L1's MDCR_EL2.HPME to
    /// L2's hardware: L1's EL2 counters count hv's handling of L2's exits
    /// (this run must fail).
    TrapsNoHpmeGuard,
    /// `traps-nvhe`: the `traps` L1 as a non-VHE guest hypervisor (E2H =
    /// 0, FEAT_VHE hidden as for `mmu`): CPTR_EL2 in its TFP/TZ/TSM layout.
    TrapsNvhe,
    /// `at`: L1 executes address translation instructions (AT S1E1R,
    /// S12E1R/W, S1E2R, S1E0R...) on L2's regime through its stage 2 and
    /// checks PAR_EL1 (`arch::nested::at`).
    At,
    /// `at-no-s12`: the same, but hv answers AT S12E* with stage 1 only:
    /// L1 must catch it (this run must fail).
    AtNoS12,
    /// `at-no-l2-fill`: the same, but hv answers the stage-2 abort of L2's
    /// own AT on its stage-1 walk with a PAR_EL1 fault value instead of
    /// filling the shadow: L1 must catch it (this run must fail).
    AtNoL2Fill,
    /// `mid-change`: with two vCPUs of L1 (three CPUs), hv on vCPU 0's CPU
    /// holds a break-before-make of L1's RAM open while vCPU 1 (or its L2)
    /// accesses it, until hv has resumed that access (each of hv's
    /// mid-change resume paths in turn), then makes the new mapping; L1
    /// checks the access reads the new mapping's data
    /// (`arch::nested_l1_mid_change`).
    MidChange,
    /// `mid-change-no-retry`: the same, but hv gives L2 an external abort
    /// where the service answers `Retry(L0Changing)` (as when the service
    /// answered hv's break with `OutsideL1`, review 59 R59-7): L1 must
    /// catch it (this run must fail).
    MidChangeNoRetry,
    /// `tlbi-race`: with two vCPUs of L1 (three CPUs), L1's vCPU 0 remaps
    /// two L2 pages generation after generation with break-before-make and
    /// each stage-2 TLBI form in turn while vCPU 1's L2 reads them; every
    /// read that begins after L1 published a generation must see its
    /// mapping, and hv checks the counts at the end
    /// (`arch::nested_l1_tlbi_race`, `nested::tlbi_race`).
    TlbiRace,
    /// `tlbi-race-no-range-tlbi`: the same, but hv acknowledges L1's range
    /// TLBIs (RIPAS2E1IS, RIPAS2LE1IS) without the service's invalidation:
    /// vCPU 1's L2 keeps the old shadow leaves and reads an earlier
    /// generation (this run must fail on its stale count).
    TlbiRaceNoRangeTlbi,
    /// `sve`: L1 (`arch::nested_l1_sve`) sets its ZCR_EL2 and SMCR_EL2 to
    /// short lengths, checks its own vector lengths at virtual EL2 (RDVL,
    /// RDSVL) and L2's, limited by them (`nested::vector`).
    Sve,
    /// `sve-no-l2-limit`: the same, but hv runs L2 under its own ZCR_EL2
    /// and SMCR_EL2, not limited by L1's: L2's lengths are too long (this
    /// run must fail).
    SveNoL2Limit,
    /// `sve-nvhe`: the `sve` L1 as a non-VHE guest hypervisor (E2H = 0,
    /// NV1 = 1): its ZCR_EL1 and SMCR_EL1 are L2's (the VNCR words).
    SveNvhe,
    /// `sve-no-l2-fa64`: the same, but L2 runs with hv's own SMCR_EL2.FA64
    /// and EZT0, not L1's: L2's Advanced SIMD instruction in Streaming SVE
    /// mode does not trap (this run must fail).
    SveNoL2Fa64,
    /// `gic`: L1 (`arch::nested_l1_gic`) programs its GICv3 distributor
    /// and redistributors (`nested::gic`), takes an SGI it sends itself,
    /// an SGI its second vCPU sends while it runs L2 (L2 taken out to
    /// L1's IRQ vector) and SPIs made pending through GICD_ISPENDR and
    /// routed with GICD_IROUTER.
    Gic,
    /// `gic-no-l2-exit`: the same, but an interrupt pending for L1 while
    /// its vCPU runs L2 does not take L2 out (this run must fail).
    GicNoL2Exit,
    /// `gic-no-kick`: the same, but an SGI or SPI for another vCPU does not
    /// kick that vCPU out of L2 (this run must fail).
    GicNoKick,
    /// `gic-no-list`: the same, but nothing L1's GIC forwards is listed in
    /// L1's own virtual interface (this run must fail).
    GicNoList,
    /// `gic-no-eoi-maintenance`: the same, but hv lists L1's SGIs and
    /// SPIs without the EOI bit: L1's deactivation raises no maintenance
    /// interrupt, and what waits for a free list register waits for an
    /// unrelated exit (this run must fail).
    GicNoEoiMaintenance,
    /// `gic-no-power-off`: the same, but L1's CPU_OFF leaves what hv
    /// listed in that vCPU's list registers (lost) and its redistributor
    /// awake (this run must fail).
    GicNoPowerOff,
    /// `gic-no-withdraw`: the same, but an interrupt hv listed and L1 has
    /// not acknowledged stays pending in that vCPU's list registers after
    /// L1 clears it pending, disables or re-routes it (this run must
    /// fail).
    GicNoWithdraw,
    /// `gic-no-read-sync`: the same, but a pending read (GICD_ISPENDR,
    /// GICR_ISPENDR0) does not sync the vCPUs holding what it reads: an
    /// interrupt another vCPU acknowledged reads pending until that
    /// vCPU's next exit (this run must fail).
    GicNoReadSync,
    /// `gic-no-reprioritize`: the same, but a new priority L1 writes
    /// does not reach an interrupt already listed (this run must fail).
    GicNoReprioritize,
    /// `gic-no-remote-ppi-active`: the same, but the PPI bits of another
    /// vCPU's GICR_ISACTIVER0/ICACTIVER0 are RAZ/WI (this run must fail).
    GicNoRemotePpiActive,
    /// `gic-no-ppi-active-wait`: the same, but a PPI set active
    /// (GICR_ISACTIVER0) while every list register from 1 on is in use is
    /// lost (this run must fail).
    GicNoPpiActiveWait,
    /// `gic-no-displace`: the same, but an interrupt with no empty list
    /// register waits behind lower-priority entries L1 masks (this run
    /// must fail).
    GicNoDisplace,
    /// `gic-no-listed-active`: the same, but I{S,C}ACTIVER stores and
    /// loads act on the model's active bits only, not on the SGIs and SPIs
    /// L1 acknowledged in its list registers (this run must fail).
    GicNoListedActive,
    /// `gic-no-remote-hw-deactivate`: the same, but L2's deactivation of
    /// an HW = 1 list register naming an SPI L1 acknowledged on another
    /// vCPU leaves it active there (review 48 R48-3's limit; this run
    /// must fail).
    GicNoRemoteHwDeactivate,
    /// `linux`: the guest bundle's Linux kernel is L1, entered at virtual
    /// EL2 as the arm64 boot protocol enters a kernel at EL2 (x0 = its
    /// device tree, MMU off), on every vCPU hv has for L1 (its secondaries
    /// started with PSCI CPU_ON, its IPIs SGIs of L1's GIC).
    Linux,
    /// `linux-no-ipi`: the same, but an SGI L1 sends to another vCPU is
    /// dropped (only one to the sender itself arrives): Linux's IPIs are
    /// lost (this run must fail).
    LinuxNoIpi,
    /// `linux-no-sve-hiding`: the same, but L1 is shown FEAT_SVE and
    /// FEAT_SME as the other L1s are: Linux 6.1's EL2 set-up traps its own
    /// ZCR_EL2 write at its EL2 and never reaches its console (this run
    /// must fail).
    LinuxNoSveHiding,
    /// `linux-no-l2-syndrome`: `linux`, but hv hands L2's stage-2 data
    /// aborts to L1 without their instruction syndrome (ISV = 0): L1's
    /// KVM cannot emulate its L2's MMIO store, and the test guest's VMM
    /// reports its KVM_RUN failing (this run must fail).
    LinuxNoL2Syndrome,
    /// `linux-no-l2-tlbi`: `linux`, but L1's stage-2 TLBIs are
    /// acknowledged, not applied (`demo-no-tlbi`'s defect): after the test
    /// guest's VMM moves its L2's memory slot to another mapping, L2 still
    /// reads the first one's pages through the stale shadow (this run must
    /// fail).
    LinuxNoL2Tlbi,
    /// `linux-no-l2-tid3`: `linux`, but hv answers L2's ID register reads
    /// itself with what L1 is shown, as if L1 had not set HCR_EL2.TID3:
    /// L2 reads L1's view, not the one L1's KVM gives its vCPU (this run
    /// must fail).
    LinuxNoL2Tid3,
    /// `linux-no-l2-lr`: `linux`, but hv ignores the list registers L1
    /// writes for L2 (loaded invalid, L1's words kept as written): L1's
    /// KVM injects its L2's timer interrupts and the VMM's SPI in vain,
    /// and the test guest's VMM reports L2 took none (this run must fail).
    LinuxNoL2Lr,
    /// `host-el0`: a VHE L1 in host mode (virtual HCR_EL2.{E2H, TGE} =
    /// {1, 1}) runs its own EL0 (`arch::nested_l1_host`): its CPTR_EL2's
    /// EL0-only FP trap and SCTLR_EL2.SPAN apply there, its SVC reaches
    /// its vector.
    HostEl0,
    /// `demo-no-vpidr`: the demo, but L2 runs with L1's own VPIDR_EL2 and
    /// VMPIDR_EL2, not those L1 set for it: L2's MIDR_EL1 and MPIDR_EL1
    /// are not what L1 set (this run must fail).
    DemoNoVpidr,
    /// `demo-no-l1-ids`: the demo, but hv does not restore L1's own
    /// VPIDR_EL2 and VMPIDR_EL2 when an L2 exits to it: L1's MIDR_EL1 and
    /// MPIDR_EL1 then read what it set for L2 (this run must fail).
    DemoNoL1Ids,
    /// `host-el0-no-el0-fp-trap`: the same, but L1's FPEN 0b01 reaches the
    /// hardware as 0b11: its EL0's FP instruction does not trap (this run
    /// must fail).
    HostEl0NoEl0FpTrap,
    /// `host-el0-no-span`: the same, but the hardware SCTLR_EL1.SPAN stays
    /// 1 in host mode: PAN is not set on entry from L1's EL0 (this run
    /// must fail).
    HostEl0NoSpan,
    /// `host-el0-no-span-back`: the same, but the hardware SCTLR_EL1.SPAN
    /// stays L1's 0 when it leaves host mode: PAN is set on an exception
    /// L1 takes at its own EL2 with TGE 0 (this run must fail).
    HostEl0NoSpanBack,
    /// `el0-tge`: a non-VHE L1 (E2H = 0) runs its own EL0 with its
    /// virtual HCR_EL2.TGE = 1 (`arch::nested_l1_tge`): EL0 in the EL1&0
    /// regime with stage 1 off (SCTLR_EL1.M treated as 0) through L1's
    /// stage 2, its exceptions taken to L1's virtual EL2.
    El0Tge,
    /// `el0-tge-no-tge`: the same, but hv runs that EL0 without the
    /// hardware's TGE, as an L2's EL0: its stage 1 translates (this run
    /// must fail).
    El0TgeNoTge,
    /// `el0-tge-no-at`: the same, but hv's AT emulation ignores L1's TGE
    /// and walks the EL1&0 regime's stage 1 (this run must fail).
    El0TgeNoAt,
}

/// L1's stage-2 TLBIs a failure mode acknowledges without the service's
/// invalidation ([`NestedDemo::skipped_stage2_tlbis`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkippedStage2Tlbis {
    /// None: every TLBI is applied.
    None,
    /// Every stage-2 TLBI (`demo-no-tlbi`, `linux-no-l2-tlbi`,
    /// `fault-rate-no-tlbi`, `fault-rate-smp-no-tlbi`).
    All,
    /// The range forms, RIPAS2E1(IS/OS) and RIPAS2LE1(IS/OS)
    /// (`tlbi-race-no-range-tlbi`).
    Ranges,
}

impl SkippedStage2Tlbis {
    /// Whether L1's TLBI `op` is acknowledged without its invalidation.
    pub fn skips(self, op: ipc::tlbi::TlbiOp) -> bool {
        use ipc::tlbi::TlbiOp;
        match self {
            Self::None => false,
            Self::All => true,
            Self::Ranges => matches!(op, TlbiOp::Ripas2e1 | TlbiOp::Ripas2le1),
        }
    }
}

impl NestedDemo {
    /// Whether this is the recycling L1 (`recycle` and its failure modes),
    /// whose run must recycle contexts.
    pub fn is_recycle(self) -> bool {
        matches!(
            self,
            Self::Recycle
                | Self::RecycleStaleRoot
                | Self::RecycleNoOffState
                | Self::RecycleNoKickAll
                | Self::RecycleNoIdReset
        )
    }

    /// Whether this is the fault-rate L1 (`fault-rate`, its failure mode
    /// and its run under memory pressure, `fault-rate-tight`).
    pub fn is_fault_rate(self) -> bool {
        matches!(
            self,
            Self::FaultRate
                | Self::FaultRateNoTlbi
                | Self::FaultRateTight
                | Self::FaultRateSmp
                | Self::FaultRateSmpNoTlbi
                | Self::FaultRateSmpOneVcpuLog
                | Self::FaultRateSmpRaceUnresolved
        )
    }

    /// Whether this is the multi-vCPU fault-rate L1 (`fault-rate-smp` and
    /// its failure mode).
    pub fn is_fault_rate_smp(self) -> bool {
        matches!(
            self,
            Self::FaultRateSmp
                | Self::FaultRateSmpNoTlbi
                | Self::FaultRateSmpOneVcpuLog
                | Self::FaultRateSmpRaceUnresolved
        )
    }

    /// Whether this is the tlbi-race L1 (`tlbi-race` and its failure
    /// mode).
    pub fn is_tlbi_race(self) -> bool {
        matches!(self, Self::TlbiRace | Self::TlbiRaceNoRangeTlbi)
    }

    /// Which of L1's stage-2 TLBIs hv acknowledges without the service's
    /// invalidation: the failure modes that show a case catches a TLBI
    /// left undone.
    pub fn skipped_stage2_tlbis(self) -> SkippedStage2Tlbis {
        match self {
            Self::DemoNoTlbi
            | Self::LinuxNoL2Tlbi
            | Self::FaultRateNoTlbi
            | Self::FaultRateSmpNoTlbi => SkippedStage2Tlbis::All,
            Self::TlbiRaceNoRangeTlbi => SkippedStage2Tlbis::Ranges,
            _ => SkippedStage2Tlbis::None,
        }
    }

    /// Whether L1 is the guest bundle's Linux kernel (`linux` and its
    /// failure modes).
    pub fn linux_l1(self) -> bool {
        matches!(
            self,
            Self::Linux
                | Self::LinuxNoSveHiding
                | Self::LinuxNoL2Syndrome
                | Self::LinuxNoL2Tlbi
                | Self::LinuxNoL2Tid3
                | Self::LinuxNoL2Lr
                | Self::LinuxNoIpi
        )
    }
}

/// How the guest gets its interrupts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GicMode {
    /// hv owns the GIC; the guest has a virtual CPU interface fed through
    /// list registers, and its distributor accesses are trapped.
    #[default]
    Virtual,
    /// The guest owns the physical GIC outright (one guest, 1:1 vCPUs).
    Passthrough,
}

/// A failure hv causes on request (see `Options::deliberate_failure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliberateFailure {
    /// A Rust panic.
    Panic,
    /// A load from an unmapped address: a data abort taken at EL2.
    Fault,
    /// A store into hv's own code, which W^X maps read-only: a permission
    /// fault taken at EL2.
    WriteCode,
}

/// What each word after `hv.fail=` names.
const DELIBERATE_FAILURE_WORDS: &[(&str, DeliberateFailure)] = &[
    ("panic", DeliberateFailure::Panic),
    ("fault", DeliberateFailure::Fault),
    ("write-code", DeliberateFailure::WriteCode),
];

/// What each word after `hv.gic=` names.
const GIC_MODE_WORDS: &[(&str, GicMode)] = &[
    ("virtual", GicMode::Virtual),
    ("passthrough", GicMode::Passthrough),
];

/// What each word after `hv.selftest=` names.
const SELF_TEST_WORDS: &[(&str, SelfTest)] = &[
    ("ipc", SelfTest::Ipc),
    ("ipc-stall", SelfTest::IpcStall),
    ("ipc-sgi", SelfTest::IpcSgi),
    ("ipc-sgi-lost", SelfTest::IpcSgiLost),
    ("shadow", SelfTest::Shadow),
    ("shadow-no-tlbi", SelfTest::ShadowNoTlbi),
    ("shadow-no-vmalle1", SelfTest::ShadowNoVmalle1),
    ("shadow-stuck", SelfTest::ShadowStuck),
    ("shadow-no-ipas2e1is", SelfTest::ShadowNoIpas2e1is),
];

/// What each word after `hv.probe=` names.
const PROBE_WORDS: &[(&str, Probe)] = &[
    ("walk-abort", Probe::WalkAbort),
    ("gic-active", Probe::GicActive),
    ("spi-view", Probe::SpiView),
    ("spi-view-no-view", Probe::SpiViewNoView),
    ("spi-view-no-set-pending", Probe::SpiViewNoSetPending),
];

/// What each word after `hv.nested=` names.
const NESTED_DEMO_WORDS: &[(&str, NestedDemo)] = &[
    ("demo", NestedDemo::Demo),
    ("demo-no-tlbi", NestedDemo::DemoNoTlbi),
    ("fault-rate", NestedDemo::FaultRate),
    ("fault-rate-no-tlbi", NestedDemo::FaultRateNoTlbi),
    ("fault-rate-tight", NestedDemo::FaultRateTight),
    ("fault-rate-smp", NestedDemo::FaultRateSmp),
    ("fault-rate-smp-no-tlbi", NestedDemo::FaultRateSmpNoTlbi),
    (
        "fault-rate-smp-one-vcpu-log",
        NestedDemo::FaultRateSmpOneVcpuLog,
    ),
    (
        "fault-rate-smp-race-unresolved",
        NestedDemo::FaultRateSmpRaceUnresolved,
    ),
    ("recycle", NestedDemo::Recycle),
    ("recycle-stale-root", NestedDemo::RecycleStaleRoot),
    ("recycle-no-off-state", NestedDemo::RecycleNoOffState),
    ("recycle-no-kick-all", NestedDemo::RecycleNoKickAll),
    ("recycle-no-id-reset", NestedDemo::RecycleNoIdReset),
    ("irq", NestedDemo::Irq),
    ("irq-no-writeback", NestedDemo::IrqNoWriteback),
    ("irq-no-maintenance", NestedDemo::IrqNoMaintenance),
    ("timer-hw", NestedDemo::TimerHw),
    ("timer-hw-no-link", NestedDemo::TimerHwNoLink),
    ("timer", NestedDemo::Timer),
    ("timer-no-cntvoff", NestedDemo::TimerNoCntvoff),
    ("timer-no-l1-irq", NestedDemo::TimerNoL1Irq),
    ("timer-no-l1-deadline", NestedDemo::TimerNoL1Deadline),
    ("timer-no-cnthctl", NestedDemo::TimerNoCnthctl),
    ("timer-no-cntvoff-levels", NestedDemo::TimerNoCntvoffLevels),
    ("timer-no-l2-deadline", NestedDemo::TimerNoL2Deadline),
    (
        "timer-no-eoi-maintenance",
        NestedDemo::TimerNoEoiMaintenance,
    ),
    (
        "timer-no-istatus-refresh",
        NestedDemo::TimerNoIstatusRefresh,
    ),
    (
        "timer-no-cntvoff-istatus",
        NestedDemo::TimerNoCntvoffIstatus,
    ),
    (
        "timer-no-l2-physical-deadline",
        NestedDemo::TimerNoL2PhysicalDeadline,
    ),
    (
        "timer-no-cnthctl-counter",
        NestedDemo::TimerNoCnthctlCounter,
    ),
    (
        "timer-no-cntkctl-restore",
        NestedDemo::TimerNoCntkctlRestore,
    ),
    ("mmu", NestedDemo::Mmu),
    ("mmu-no-t0sz", NestedDemo::MmuNoT0sz),
    ("mmu-vhe", NestedDemo::MmuVhe),
    ("mmu-vhe-keep-dc", NestedDemo::MmuVheKeepDc),
    ("mmu-no-el2-tlbi", NestedDemo::MmuNoEl2Tlbi),
    ("traps", NestedDemo::Traps),
    ("traps-no-cptr", NestedDemo::TrapsNoCptr),
    ("traps-no-mdcr", NestedDemo::TrapsNoMdcr),
    ("traps-no-el2-cptr", NestedDemo::TrapsNoEl2Cptr),
    ("traps-no-hpme-guard", NestedDemo::TrapsNoHpmeGuard),
    ("traps-nvhe", NestedDemo::TrapsNvhe),
    ("at", NestedDemo::At),
    ("at-no-s12", NestedDemo::AtNoS12),
    ("at-no-l2-fill", NestedDemo::AtNoL2Fill),
    ("mid-change", NestedDemo::MidChange),
    ("mid-change-no-retry", NestedDemo::MidChangeNoRetry),
    ("tlbi-race", NestedDemo::TlbiRace),
    ("tlbi-race-no-range-tlbi", NestedDemo::TlbiRaceNoRangeTlbi),
    ("sve", NestedDemo::Sve),
    ("sve-no-l2-limit", NestedDemo::SveNoL2Limit),
    ("sve-nvhe", NestedDemo::SveNvhe),
    ("sve-no-l2-fa64", NestedDemo::SveNoL2Fa64),
    ("gic", NestedDemo::Gic),
    ("gic-no-l2-exit", NestedDemo::GicNoL2Exit),
    ("gic-no-kick", NestedDemo::GicNoKick),
    ("gic-no-list", NestedDemo::GicNoList),
    ("gic-no-eoi-maintenance", NestedDemo::GicNoEoiMaintenance),
    ("gic-no-power-off", NestedDemo::GicNoPowerOff),
    ("gic-no-withdraw", NestedDemo::GicNoWithdraw),
    ("gic-no-read-sync", NestedDemo::GicNoReadSync),
    ("gic-no-reprioritize", NestedDemo::GicNoReprioritize),
    ("gic-no-remote-ppi-active", NestedDemo::GicNoRemotePpiActive),
    ("gic-no-ppi-active-wait", NestedDemo::GicNoPpiActiveWait),
    ("gic-no-displace", NestedDemo::GicNoDisplace),
    ("gic-no-listed-active", NestedDemo::GicNoListedActive),
    (
        "gic-no-remote-hw-deactivate",
        NestedDemo::GicNoRemoteHwDeactivate,
    ),
    ("linux", NestedDemo::Linux),
    ("linux-no-ipi", NestedDemo::LinuxNoIpi),
    ("linux-no-sve-hiding", NestedDemo::LinuxNoSveHiding),
    ("linux-no-l2-syndrome", NestedDemo::LinuxNoL2Syndrome),
    ("linux-no-l2-tlbi", NestedDemo::LinuxNoL2Tlbi),
    ("linux-no-l2-tid3", NestedDemo::LinuxNoL2Tid3),
    ("linux-no-l2-lr", NestedDemo::LinuxNoL2Lr),
    ("host-el0", NestedDemo::HostEl0),
    ("demo-no-vpidr", NestedDemo::DemoNoVpidr),
    ("demo-no-l1-ids", NestedDemo::DemoNoL1Ids),
    ("host-el0-no-el0-fp-trap", NestedDemo::HostEl0NoEl0FpTrap),
    ("host-el0-no-span", NestedDemo::HostEl0NoSpan),
    ("host-el0-no-span-back", NestedDemo::HostEl0NoSpanBack),
    ("el0-tge", NestedDemo::El0Tge),
    ("el0-tge-no-tge", NestedDemo::El0TgeNoTge),
    ("el0-tge-no-at", NestedDemo::El0TgeNoAt),
];

/// The value `words` gives `word`, if it names one.
fn named<T: Copy>(words: &[(&str, T)], word: &str) -> Option<T> {
    words
        .iter()
        .find(|&&(name, _)| name == word)
        .map(|&(_, value)| value)
}

impl Options {
    /// The options `bootargs` asks for; the first `hv.*` word hv does not
    /// know, or whose value is bad, is the error. Other words are the
    /// guest's.
    pub fn parse(bootargs: &str) -> Result<Self, &str> {
        let mut options = Self::default();
        for word in bootargs.split_ascii_whitespace() {
            let Some(option) = word.strip_prefix("hv.") else {
                continue;
            };
            let (key, value) = option.split_once('=').ok_or(word)?;
            match key {
                "exit" => {
                    options.semihosting_exit = match value {
                        "semihosting" => true,
                        "psci" => false,
                        _ => return Err(word),
                    }
                }
                "wfxt" if value == "off" => options.without_wfxt = true,
                "gic" => options.gic = named(GIC_MODE_WORDS, value).ok_or(word)?,
                "fail" => {
                    options.deliberate_failure =
                        Some(named(DELIBERATE_FAILURE_WORDS, value).ok_or(word)?)
                }
                "selftest" => options.self_test = Some(named(SELF_TEST_WORDS, value).ok_or(word)?),
                "probe" => options.probe = Some(named(PROBE_WORDS, value).ok_or(word)?),
                "nested" => options.nested = Some(named(NESTED_DEMO_WORDS, value).ok_or(word)?),
                "list-registers" => match value.parse::<usize>() {
                    Ok(n @ 2..=16) => options.list_register_limit = Some(n),
                    _ => return Err(word),
                },
                _ => return Err(word),
            }
        }
        Ok(options)
    }

    pub fn from_fdt<'a>(fdt: &Fdt<'a>) -> Result<Self, BadOption<'a>> {
        let bootargs = fdt
            .find_node("/chosen")
            .and_then(|c| c.property("bootargs"))
            .and_then(|p| p.as_str())
            .unwrap_or("");
        Self::parse(bootargs).map_err(|word| BadOption {
            word,
            semihosting_exit: bootargs
                .split_ascii_whitespace()
                .any(|w| w == "hv.exit=semihosting"),
        })
    }
}

/// An `hv.*` word of the bootargs hv does not know, or whose value is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadOption<'a> {
    /// The word as given.
    pub word: &'a str,
    /// The bootargs also ask for `hv.exit=semihosting`: the failure can
    /// still end the run that way (review 22 F6: it used to fall into a
    /// WFE loop, so an emulator never exited).
    pub semihosting_exit: bool,
}

impl core::fmt::Display for BadOption<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "bootargs option `{}` is unknown or has a bad value",
            self.word
        )
    }
}

/// The PL011 rules hv's console follows (arch/console.rs applies them):
/// hv shares the UART with its guest, and hv's own output must never wait
/// forever for a transmitter the guest switched off or stalled.
pub mod pl011 {
    pub const UARTDR: u64 = 0x00;
    pub const UARTFR: u64 = 0x18;
    pub const UARTCR: u64 = 0x30;
    pub const UARTIBRD: u64 = 0x24;
    pub const UARTFBRD: u64 = 0x28;
    /// The baud rate assumed when the device tree names none: what Linux's
    /// PL011 console and most firmware use.
    pub const DEFAULT_BAUD: u32 = 115_200;
    /// UARTFR.TXFF: the transmit FIFO is full.
    pub const FR_TXFF: u64 = 1 << 5;
    pub const CR_UARTEN: u64 = 1 << 0;
    pub const CR_TXE: u64 = 1 << 8;
    /// UARTCR.CTSEn: transmit only while the peer asserts CTS.
    pub const CR_CTSEN: u64 = 1 << 15;

    /// What hv writes to the UART for a guest's write of `value` (`size`
    /// bytes, naturally aligned) at `offset`. Writes that reach UARTCR keep
    /// the UART and its transmitter enabled (UARTEN, TXE) and hardware
    /// flow control off (CTSEn): a disabled transmitter never drains its
    /// FIFO, and hv's console would stop for good. Everything else (line
    /// control, baud divisors, interrupts, RXE, loopback) is the guest's:
    /// it can garble output but not stop it. A guest that reads UARTCR back
    /// sees these bits set (Linux's PL011 driver saves and restores UARTCR
    /// around its console writes and copes).
    pub fn guest_write(offset: u64, size: u64, value: u64) -> u64 {
        if !(UARTCR..UARTCR + 4).contains(&offset) {
            return value;
        }
        let shift = (offset - UARTCR) * 8;
        let width = crate::vgic::access_mask(size);
        let on = ((CR_UARTEN | CR_TXE) >> shift) & width;
        let off = (CR_CTSEN >> shift) & width;
        (value | on) & !off
    }

    /// The UART's reference clock (UARTCLK) in Hz, from the baud divisors
    /// firmware programmed for `baud`: the PL011 divides UARTCLK by 16 x
    /// (IBRD + FBRD / 64) (PL011 TRM 3.3.6), so UARTCLK = baud x (64 x
    /// IBRD + FBRD) / 4. None when IBRD is 0 (never programmed: not a
    /// valid divisor), the rate does not fit 32 bits (the fixed-clock
    /// binding's `clock-frequency`), or `baud` is 0.
    pub fn reference_clock_hz(ibrd: u64, fbrd: u64, baud: u32) -> Option<u32> {
        let ibrd = ibrd & 0xffff;
        let fbrd = fbrd & 0x3f;
        if ibrd == 0 || baud == 0 {
            return None;
        }
        u32::try_from(baud as u64 * (64 * ibrd + fbrd) / 4).ok()
    }

    /// The console's baud rate: the UART node's `current-speed`, else the
    /// options of /chosen `stdout-path` ("/serial@0:115200n8"), else
    /// `DEFAULT_BAUD`.
    pub fn console_baud(current_speed: Option<u32>, stdout_path: Option<&str>) -> u32 {
        let from_options = || {
            let options = stdout_path?.split_once(':')?.1;
            let digits = options
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(options.len());
            options[..digits].parse::<u32>().ok()
        };
        current_speed
            .or_else(from_options)
            .filter(|&baud| baud != 0)
            .unwrap_or(DEFAULT_BAUD)
    }

    /// Waits for room in the transmit FIFO (`fifo_full` reads UARTFR.TXFF)
    /// for at most `timeout` ticks of `now`, or checks once when the
    /// console is already `wedged` (an earlier wait timed out), so that a
    /// UART that does not drain costs one timeout, not one per byte.
    /// Whether there is room.
    pub fn wait_for_room(
        wedged: bool,
        mut fifo_full: impl FnMut() -> bool,
        mut now: impl FnMut() -> u64,
        timeout: u64,
    ) -> bool {
        if !fifo_full() {
            return true;
        }
        if wedged {
            return false;
        }
        let start = now();
        while now().wrapping_sub(start) < timeout {
            if !fifo_full() {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The console clock from the divisors: 24 MHz at 115200 baud is IBRD
    /// 13, FBRD 1 (24e6 / (16 x 115200) = 13.02); 48 MHz at 1500000 is
    /// exactly 2.0. An unprogrammed UART and an overflowing rate give
    /// nothing.
    #[test]
    fn console_reference_clock_from_the_baud_divisors() {
        assert_eq!(pl011::reference_clock_hz(13, 1, 115_200), Some(23_990_400));
        assert_eq!(pl011::reference_clock_hz(2, 0, 1_500_000), Some(48_000_000));
        assert_eq!(pl011::reference_clock_hz(0, 5, 115_200), None);
        assert_eq!(pl011::reference_clock_hz(13, 1, 0), None);
        assert_eq!(pl011::reference_clock_hz(0xffff, 0x3f, 4_000_000), None);
        assert_eq!(
            pl011::console_baud(Some(9600), Some("serial0:1500000n8")),
            9600
        );
        assert_eq!(
            pl011::console_baud(None, Some("serial0:1500000n8")),
            1_500_000
        );
        assert_eq!(pl011::console_baud(None, Some("/pl011@9000000")), 115_200);
        assert_eq!(pl011::console_baud(None, Some("serial0:n8")), 115_200);
        assert_eq!(pl011::console_baud(Some(0), None), 115_200);
    }

    pub(crate) const GICV3_SMP4: &[u8] = include_bytes!("../tests/data/virt-gicv3-smp4.dtb");
    const GICV2_SMP1: &[u8] = include_bytes!("../tests/data/virt-gicv2-smp1.dtb");

    #[test]
    fn qemu_virt_gicv3() {
        let fdt = Fdt::new(GICV3_SMP4).unwrap();
        let p = Platform::discover(&fdt).unwrap();
        assert_eq!(
            p.memory.as_slice(),
            &[Region {
                base: 0x4000_0000,
                size: 0x2000_0000
            }]
        );
        assert_eq!(
            p.uart,
            Region {
                base: 0x0900_0000,
                size: 0x1000
            }
        );
        assert_eq!(p.uart_path.as_str(), "/pl011@9000000");
        assert_eq!(
            p.gic_distributor,
            Region {
                base: 0x0800_0000,
                size: 0x1_0000
            }
        );
        assert_eq!(
            p.gic_redistributors.as_slice(),
            &[Region {
                base: 0x080a_0000,
                size: 0xf6_0000
            }]
        );
        assert_eq!(p.psci, Conduit::Smc);
        assert_eq!(p.cpus.as_slice(), &[0, 1, 2, 3]);
        assert_eq!(p.timer.virtual_, 27);
        assert_eq!(p.gic_maintenance, Some(25));
        assert_eq!(p.timer.physical, 30);
        assert_eq!(p.timer.hypervisor, 26);
        // QEMU's fifth timer interrupt: the EL2 virtual timer, PPI 12.
        assert_eq!(p.timer.hypervisor_virtual, Some(28));
        assert_eq!(p.initrd, None);
        assert_eq!(p.cpu_index(0x8000_0002), Some(2));
        assert_eq!(p.cpu_index(0x100), None);
    }

    #[test]
    fn gicv2_is_refused_with_a_clear_reason() {
        let fdt = Fdt::new(GICV2_SMP1).unwrap();
        assert_eq!(
            Platform::discover(&fdt).unwrap_err(),
            DiscoveryError::GicV2Only
        );
        assert_eq!(
            DiscoveryError::GicV2Only.to_string_lossy(),
            "hv needs a GICv3; the device tree has only a GICv2"
        );
    }

    #[test]
    fn garbage_is_not_a_device_tree() {
        assert!(Fdt::new(&[0u8; 64]).is_err());
        assert!(Fdt::new(&GICV3_SMP4[..100]).is_err());
    }

    #[test]
    fn options() {
        assert_eq!(
            Options::parse("console=x hv.exit=semihosting"),
            Ok(Options {
                semihosting_exit: true,
                gic: GicMode::Virtual,
                deliberate_failure: None,
                self_test: None,
                nested: None,
                probe: None,
                list_register_limit: None,
                without_wfxt: false,
            })
        );
        assert_eq!(
            Options::parse("hv.probe=walk-abort").map(|o| o.probe),
            Ok(Some(Probe::WalkAbort))
        );
        assert_eq!(
            Options::parse("hv.probe=gic-active").map(|o| o.probe),
            Ok(Some(Probe::GicActive))
        );
        assert_eq!(
            Options::parse("hv.probe=spi-view").map(|o| o.probe),
            Ok(Some(Probe::SpiView))
        );
        assert_eq!(
            Options::parse("hv.probe=spi-view-no-view").map(|o| o.probe),
            Ok(Some(Probe::SpiViewNoView))
        );
        assert_eq!(
            Options::parse("hv.probe=spi-view-no-set-pending").map(|o| o.probe),
            Ok(Some(Probe::SpiViewNoSetPending))
        );
        assert_eq!(Options::parse("hv.probe=other"), Err("hv.probe=other"));
        assert_eq!(
            Options::parse("hv.nested=demo").map(|o| o.nested),
            Ok(Some(NestedDemo::Demo))
        );
        assert_eq!(
            Options::parse("hv.nested=demo-no-tlbi").map(|o| o.nested),
            Ok(Some(NestedDemo::DemoNoTlbi))
        );
        assert_eq!(
            Options::parse("hv.nested=recycle").map(|o| o.nested),
            Ok(Some(NestedDemo::Recycle))
        );
        assert_eq!(
            Options::parse("hv.nested=fault-rate").map(|o| o.nested),
            Ok(Some(NestedDemo::FaultRate))
        );
        assert_eq!(
            Options::parse("hv.nested=fault-rate-no-tlbi").map(|o| o.nested),
            Ok(Some(NestedDemo::FaultRateNoTlbi))
        );
        assert_eq!(
            Options::parse("hv.nested=fault-rate-tight").map(|o| o.nested),
            Ok(Some(NestedDemo::FaultRateTight))
        );
        assert!(NestedDemo::FaultRateTight.is_fault_rate());
        assert_eq!(
            Options::parse("hv.nested=fault-rate-smp").map(|o| o.nested),
            Ok(Some(NestedDemo::FaultRateSmp))
        );
        assert!(NestedDemo::FaultRateSmp.is_fault_rate());
        assert_eq!(
            Options::parse("hv.nested=fault-rate-smp-no-tlbi").map(|o| o.nested),
            Ok(Some(NestedDemo::FaultRateSmpNoTlbi))
        );
        assert!(NestedDemo::FaultRateSmpNoTlbi.is_fault_rate_smp());
        assert_eq!(
            Options::parse("hv.nested=fault-rate-smp-one-vcpu-log").map(|o| o.nested),
            Ok(Some(NestedDemo::FaultRateSmpOneVcpuLog))
        );
        assert!(NestedDemo::FaultRateSmpOneVcpuLog.is_fault_rate_smp());
        assert_eq!(
            Options::parse("hv.nested=fault-rate-smp-race-unresolved").map(|o| o.nested),
            Ok(Some(NestedDemo::FaultRateSmpRaceUnresolved))
        );
        assert!(NestedDemo::FaultRateSmpRaceUnresolved.is_fault_rate_smp());
        assert!(!NestedDemo::FaultRate.is_fault_rate_smp());
        assert_eq!(
            Options::parse("hv.nested=mid-change").map(|o| o.nested),
            Ok(Some(NestedDemo::MidChange))
        );
        assert_eq!(
            Options::parse("hv.nested=mid-change-no-retry").map(|o| o.nested),
            Ok(Some(NestedDemo::MidChangeNoRetry))
        );
        assert_eq!(
            Options::parse("hv.nested=tlbi-race").map(|o| o.nested),
            Ok(Some(NestedDemo::TlbiRace))
        );
        assert_eq!(
            Options::parse("hv.nested=tlbi-race-no-range-tlbi").map(|o| o.nested),
            Ok(Some(NestedDemo::TlbiRaceNoRangeTlbi))
        );
        assert!(NestedDemo::TlbiRaceNoRangeTlbi.is_tlbi_race());
        {
            use ipc::tlbi::TlbiOp;
            let ranges = NestedDemo::TlbiRaceNoRangeTlbi.skipped_stage2_tlbis();
            assert!(ranges.skips(TlbiOp::Ripas2e1) && ranges.skips(TlbiOp::Ripas2le1));
            assert!(!ranges.skips(TlbiOp::Ipas2e1) && !ranges.skips(TlbiOp::Vmalls12e1));
            assert!(NestedDemo::DemoNoTlbi
                .skipped_stage2_tlbis()
                .skips(TlbiOp::Ipas2e1));
            assert!(!NestedDemo::TlbiRace
                .skipped_stage2_tlbis()
                .skips(TlbiOp::Ripas2e1));
        }
        assert!(!NestedDemo::MidChange.is_tlbi_race());
        // A budget of its own is not a value hv takes: the word is unknown.
        assert_eq!(
            Options::parse("hv.nested=fault-rate-tight=512").map(|o| o.nested),
            Err("hv.nested=fault-rate-tight=512")
        );
        assert_eq!(
            Options::parse("hv.nested=recycle-stale-root").map(|o| o.nested),
            Ok(Some(NestedDemo::RecycleStaleRoot))
        );
        assert_eq!(
            Options::parse("hv.nested=recycle-no-off-state").map(|o| o.nested),
            Ok(Some(NestedDemo::RecycleNoOffState))
        );
        assert_eq!(
            Options::parse("hv.nested=recycle-no-kick-all").map(|o| o.nested),
            Ok(Some(NestedDemo::RecycleNoKickAll))
        );
        assert_eq!(
            Options::parse("hv.nested=irq").map(|o| o.nested),
            Ok(Some(NestedDemo::Irq))
        );
        assert_eq!(
            Options::parse("hv.nested=irq-no-writeback").map(|o| o.nested),
            Ok(Some(NestedDemo::IrqNoWriteback))
        );
        assert_eq!(
            Options::parse("hv.nested=irq-no-maintenance").map(|o| o.nested),
            Ok(Some(NestedDemo::IrqNoMaintenance))
        );
        assert_eq!(
            Options::parse("hv.nested=mmu").map(|o| o.nested),
            Ok(Some(NestedDemo::Mmu))
        );
        assert_eq!(
            Options::parse("hv.nested=timer").map(|o| o.nested),
            Ok(Some(NestedDemo::Timer))
        );
        assert_eq!(
            Options::parse("hv.nested=timer-hw").map(|o| o.nested),
            Ok(Some(NestedDemo::TimerHw))
        );
        assert_eq!(
            Options::parse("hv.nested=timer-hw-no-link").map(|o| o.nested),
            Ok(Some(NestedDemo::TimerHwNoLink))
        );
        assert_eq!(
            Options::parse("hv.nested=gic").map(|o| o.nested),
            Ok(Some(NestedDemo::Gic))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-l2-exit").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoL2Exit))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-kick").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoKick))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-list").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoList))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-eoi-maintenance").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoEoiMaintenance))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-power-off").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoPowerOff))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-withdraw").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoWithdraw))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-read-sync").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoReadSync))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-reprioritize").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoReprioritize))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-remote-ppi-active").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoRemotePpiActive))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-ppi-active-wait").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoPpiActiveWait))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-displace").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoDisplace))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-listed-active").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoListedActive))
        );
        assert_eq!(
            Options::parse("hv.nested=gic-no-remote-hw-deactivate").map(|o| o.nested),
            Ok(Some(NestedDemo::GicNoRemoteHwDeactivate))
        );
        assert_eq!(
            Options::parse("hv.nested=timer-no-cntvoff").map(|o| o.nested),
            Ok(Some(NestedDemo::TimerNoCntvoff))
        );
        assert_eq!(
            Options::parse("hv.nested=timer-no-l1-irq").map(|o| o.nested),
            Ok(Some(NestedDemo::TimerNoL1Irq))
        );
        assert_eq!(
            Options::parse("hv.nested=timer-no-l1-deadline").map(|o| o.nested),
            Ok(Some(NestedDemo::TimerNoL1Deadline))
        );
        assert_eq!(
            Options::parse("hv.nested=timer-no-cnthctl").map(|o| o.nested),
            Ok(Some(NestedDemo::TimerNoCnthctl))
        );
        for (arg, demo) in [
            ("timer-no-cntvoff-levels", NestedDemo::TimerNoCntvoffLevels),
            ("timer-no-l2-deadline", NestedDemo::TimerNoL2Deadline),
            (
                "timer-no-eoi-maintenance",
                NestedDemo::TimerNoEoiMaintenance,
            ),
            (
                "timer-no-istatus-refresh",
                NestedDemo::TimerNoIstatusRefresh,
            ),
            (
                "timer-no-cntvoff-istatus",
                NestedDemo::TimerNoCntvoffIstatus,
            ),
            (
                "timer-no-l2-physical-deadline",
                NestedDemo::TimerNoL2PhysicalDeadline,
            ),
            (
                "timer-no-cnthctl-counter",
                NestedDemo::TimerNoCnthctlCounter,
            ),
            (
                "timer-no-cntkctl-restore",
                NestedDemo::TimerNoCntkctlRestore,
            ),
        ] {
            assert_eq!(
                Options::parse(&alloc::format!("hv.nested={arg}")).map(|o| o.nested),
                Ok(Some(demo))
            );
        }
        assert_eq!(
            Options::parse("hv.nested=mmu-no-t0sz").map(|o| o.nested),
            Ok(Some(NestedDemo::MmuNoT0sz))
        );
        assert_eq!(
            Options::parse("hv.nested=mmu-vhe").map(|o| o.nested),
            Ok(Some(NestedDemo::MmuVhe))
        );
        assert_eq!(
            Options::parse("hv.nested=mmu-vhe-keep-dc").map(|o| o.nested),
            Ok(Some(NestedDemo::MmuVheKeepDc))
        );
        assert_eq!(
            Options::parse("hv.nested=mmu-no-el2-tlbi").map(|o| o.nested),
            Ok(Some(NestedDemo::MmuNoEl2Tlbi))
        );
        assert_eq!(
            Options::parse("hv.nested=traps").map(|o| o.nested),
            Ok(Some(NestedDemo::Traps))
        );
        assert_eq!(
            Options::parse("hv.nested=traps-no-cptr").map(|o| o.nested),
            Ok(Some(NestedDemo::TrapsNoCptr))
        );
        assert_eq!(
            Options::parse("hv.nested=traps-no-mdcr").map(|o| o.nested),
            Ok(Some(NestedDemo::TrapsNoMdcr))
        );
        assert_eq!(
            Options::parse("hv.nested=traps-no-el2-cptr").map(|o| o.nested),
            Ok(Some(NestedDemo::TrapsNoEl2Cptr))
        );
        assert_eq!(
            Options::parse("hv.nested=traps-no-hpme-guard").map(|o| o.nested),
            Ok(Some(NestedDemo::TrapsNoHpmeGuard))
        );
        assert_eq!(
            Options::parse("hv.nested=traps-nvhe").map(|o| o.nested),
            Ok(Some(NestedDemo::TrapsNvhe))
        );
        assert_eq!(
            Options::parse("hv.nested=at").map(|o| o.nested),
            Ok(Some(NestedDemo::At))
        );
        assert_eq!(
            Options::parse("hv.nested=sve").map(|o| o.nested),
            Ok(Some(NestedDemo::Sve))
        );
        assert_eq!(
            Options::parse("hv.nested=sve-no-l2-limit").map(|o| o.nested),
            Ok(Some(NestedDemo::SveNoL2Limit))
        );
        assert_eq!(
            Options::parse("hv.nested=sve-nvhe").map(|o| o.nested),
            Ok(Some(NestedDemo::SveNvhe))
        );
        assert_eq!(
            Options::parse("hv.nested=sve-no-l2-fa64").map(|o| o.nested),
            Ok(Some(NestedDemo::SveNoL2Fa64))
        );
        assert_eq!(
            Options::parse("hv.nested=linux").map(|o| o.nested),
            Ok(Some(NestedDemo::Linux))
        );
        for (arg, demo) in [
            ("hv.nested=host-el0", NestedDemo::HostEl0),
            ("hv.nested=demo-no-vpidr", NestedDemo::DemoNoVpidr),
            ("hv.nested=demo-no-l1-ids", NestedDemo::DemoNoL1Ids),
            (
                "hv.nested=host-el0-no-el0-fp-trap",
                NestedDemo::HostEl0NoEl0FpTrap,
            ),
            ("hv.nested=host-el0-no-span", NestedDemo::HostEl0NoSpan),
            (
                "hv.nested=host-el0-no-span-back",
                NestedDemo::HostEl0NoSpanBack,
            ),
            (
                "hv.nested=recycle-no-id-reset",
                NestedDemo::RecycleNoIdReset,
            ),
            ("hv.nested=el0-tge", NestedDemo::El0Tge),
            ("hv.nested=el0-tge-no-tge", NestedDemo::El0TgeNoTge),
            ("hv.nested=el0-tge-no-at", NestedDemo::El0TgeNoAt),
        ] {
            assert_eq!(Options::parse(arg).map(|o| o.nested), Ok(Some(demo)));
        }
        assert_eq!(
            Options::parse("hv.nested=linux-no-sve-hiding").map(|o| o.nested),
            Ok(Some(NestedDemo::LinuxNoSveHiding))
        );
        assert_eq!(
            Options::parse("hv.nested=linux-no-l2-syndrome").map(|o| o.nested),
            Ok(Some(NestedDemo::LinuxNoL2Syndrome))
        );
        assert_eq!(
            Options::parse("hv.nested=linux-no-l2-tlbi").map(|o| o.nested),
            Ok(Some(NestedDemo::LinuxNoL2Tlbi))
        );
        assert_eq!(
            Options::parse("hv.nested=linux-no-l2-tid3").map(|o| o.nested),
            Ok(Some(NestedDemo::LinuxNoL2Tid3))
        );
        assert_eq!(
            Options::parse("hv.nested=linux-no-l2-lr").map(|o| o.nested),
            Ok(Some(NestedDemo::LinuxNoL2Lr))
        );
        let linux_l1s = [
            NestedDemo::Linux,
            NestedDemo::LinuxNoSveHiding,
            NestedDemo::LinuxNoL2Syndrome,
            NestedDemo::LinuxNoL2Tlbi,
            NestedDemo::LinuxNoL2Tid3,
            NestedDemo::LinuxNoL2Lr,
            NestedDemo::LinuxNoIpi,
        ];
        assert!(linux_l1s.iter().all(|demo| demo.linux_l1()));
        assert!(!NestedDemo::Demo.linux_l1() && !NestedDemo::HostEl0.linux_l1());
        assert_eq!(
            Options::parse("hv.nested=linux-no-ipi").map(|o| o.nested),
            Ok(Some(NestedDemo::LinuxNoIpi))
        );
        assert_eq!(
            Options::parse("hv.nested=at-no-s12").map(|o| o.nested),
            Ok(Some(NestedDemo::AtNoS12))
        );
        assert_eq!(
            Options::parse("hv.nested=at-no-l2-fill").map(|o| o.nested),
            Ok(Some(NestedDemo::AtNoL2Fill))
        );
        assert_eq!(Options::parse("hv.nested=bogus"), Err("hv.nested=bogus"));
        assert_eq!(
            Options::parse("hv.list-registers=2").map(|o| o.list_register_limit),
            Ok(Some(2))
        );
        assert_eq!(
            Options::parse("hv.wfxt=off").map(|o| o.without_wfxt),
            Ok(true)
        );
        assert_eq!(Options::parse("").map(|o| o.without_wfxt), Ok(false));
        assert_eq!(
            Options::parse("hv.list-registers=16").map(|o| o.list_register_limit),
            Ok(Some(16))
        );
        for bad in [
            "hv.list-registers=1",
            "hv.list-registers=17",
            "hv.list-registers=",
            "hv.list-registers=x",
        ] {
            assert_eq!(Options::parse(bad), Err(bad), "{bad}");
        }
        assert_eq!(
            Options::parse("hv.selftest=ipc").map(|o| o.self_test),
            Ok(Some(SelfTest::Ipc))
        );
        assert_eq!(
            Options::parse("hv.selftest=ipc-stall").map(|o| o.self_test),
            Ok(Some(SelfTest::IpcStall))
        );
        assert_eq!(
            Options::parse("hv.selftest=ipc-sgi").map(|o| o.self_test),
            Ok(Some(SelfTest::IpcSgi))
        );
        assert_eq!(
            Options::parse("hv.selftest=ipc-sgi-lost").map(|o| o.self_test),
            Ok(Some(SelfTest::IpcSgiLost))
        );
        assert_eq!(
            Options::parse("hv.selftest=shadow").map(|o| o.self_test),
            Ok(Some(SelfTest::Shadow))
        );
        assert_eq!(
            Options::parse("hv.selftest=shadow-no-tlbi").map(|o| o.self_test),
            Ok(Some(SelfTest::ShadowNoTlbi))
        );
        assert_eq!(
            Options::parse("hv.selftest=shadow-no-vmalle1").map(|o| o.self_test),
            Ok(Some(SelfTest::ShadowNoVmalle1))
        );
        assert_eq!(
            Options::parse("hv.selftest=shadow-stuck").map(|o| o.self_test),
            Ok(Some(SelfTest::ShadowStuck))
        );
        assert_eq!(
            Options::parse("hv.selftest=shadow-no-ipas2e1is").map(|o| o.self_test),
            Ok(Some(SelfTest::ShadowNoIpas2e1is))
        );
        assert_eq!(
            Options::parse("hv.selftest=bogus"),
            Err("hv.selftest=bogus")
        );
        assert_eq!(
            Options::parse("hv.gic=passthrough").map(|o| o.gic),
            Ok(GicMode::Passthrough)
        );
        assert_eq!(
            Options::parse("hv.fail=fault").map(|o| o.deliberate_failure),
            Ok(Some(DeliberateFailure::Fault))
        );
        assert_eq!(Options::parse(""), Ok(Options::default()));
        assert_eq!(Options::parse("hv.bogus=1"), Err("hv.bogus=1"));
    }

    /// Each word of an option's table names one value: a word written twice
    /// would leave its second value unreachable (`named` takes the first).
    #[test]
    fn option_words_are_distinct() {
        fn assert_distinct<T>(option: &str, words: &[(&str, T)]) {
            for (i, (word, _)) in words.iter().enumerate() {
                assert!(
                    words[..i].iter().all(|(earlier, _)| earlier != word),
                    "hv.{option}={word} is in the table twice"
                );
            }
        }
        assert_distinct("gic", GIC_MODE_WORDS);
        assert_distinct("fail", DELIBERATE_FAILURE_WORDS);
        assert_distinct("selftest", SELF_TEST_WORDS);
        assert_distinct("probe", PROBE_WORDS);
        assert_distinct("nested", NESTED_DEMO_WORDS);
    }

    /// A minimal arm64 tree, built with the same writer hv uses for guests;
    /// `leave_out` names a node or property to omit.
    fn tree(leave_out: &str, cpus: usize) -> alloc::vec::Vec<u8> {
        tree_with_interrupts(
            leave_out,
            cpus,
            &[1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8],
            None,
        )
    }

    /// A bad `hv.*` word is named in the error, which also says whether the
    /// run can still end by semihosting (review 22 F6).
    #[test]
    fn a_bad_option_is_named_and_keeps_the_semihosting_exit() {
        let tree = |bootargs: &str| {
            use vm_fdt::FdtWriter;
            let mut w = FdtWriter::new().unwrap();
            let root = w.begin_node("").unwrap();
            let chosen = w.begin_node("chosen").unwrap();
            w.property_string("bootargs", bootargs).unwrap();
            w.end_node(chosen).unwrap();
            w.end_node(root).unwrap();
            w.finish().unwrap()
        };
        let blob = tree("console=ttyAMA0 hv.selftest=Shadow hv.exit=semihosting");
        let fdt = Fdt::new(&blob).unwrap();
        let bad = Options::from_fdt(&fdt).unwrap_err();
        assert_eq!(
            bad,
            BadOption {
                word: "hv.selftest=Shadow",
                semihosting_exit: true
            }
        );
        assert!(alloc::format!("{bad}").contains("`hv.selftest=Shadow`"));
        let blob = tree("hv.selftest=");
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(
            Options::from_fdt(&fdt),
            Err(BadOption {
                word: "hv.selftest=",
                semihosting_exit: false
            })
        );
    }

    /// `tree`, with these timer interrupt cells and GIC maintenance cells.
    fn tree_with_interrupts(
        leave_out: &str,
        cpus: usize,
        timer: &[u32; 12],
        maintenance: Option<&[u32; 3]>,
    ) -> alloc::vec::Vec<u8> {
        use vm_fdt::FdtWriter;
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        if leave_out != "memory" {
            let n = w.begin_node("memory@80000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64(
                "reg",
                &[0x8000_0000, 0x4000_0000, 0x1_0000_0000, 0x1000_0000],
            )
            .unwrap();
            w.end_node(n).unwrap();
        }
        if leave_out != "uart" {
            let n = w.begin_node("serial@1c090000").unwrap();
            w.property_string_list(
                "compatible",
                alloc::vec!["arm,pl011".into(), "arm,primecell".into()],
            )
            .unwrap();
            w.property_array_u64("reg", &[0x1c09_0000, 0x1000]).unwrap();
            w.end_node(n).unwrap();
        }
        if leave_out != "gic" {
            let n = w.begin_node("interrupt-controller@2f000000").unwrap();
            w.property_string("compatible", "arm,gic-v3").unwrap();
            w.property_u32("#redistributor-regions", 2).unwrap();
            w.property_array_u64(
                "reg",
                &[
                    0x2f00_0000,
                    0x1_0000,
                    0x2f10_0000,
                    0x4_0000,
                    0x3000_0000,
                    0x4_0000,
                ],
            )
            .unwrap();
            if let Some(cells) = maintenance {
                w.property_array_u32("interrupts", cells).unwrap();
            }
            w.end_node(n).unwrap();
        }
        if leave_out != "psci" {
            let n = w.begin_node("psci").unwrap();
            w.property_string("compatible", "arm,psci-1.0").unwrap();
            w.property_string(
                "method",
                if leave_out == "method" {
                    "magic"
                } else {
                    "smc"
                },
            )
            .unwrap();
            w.end_node(n).unwrap();
        }
        let n = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..cpus {
            let c = w.begin_node(&alloc::format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u64("reg", 0x100 * (i as u64 / 2) + (i as u64 % 2))
                .unwrap();
            w.end_node(c).unwrap();
        }
        w.end_node(n).unwrap();
        if leave_out != "timer" {
            let n = w.begin_node("timer").unwrap();
            w.property_string("compatible", "arm,armv8-timer").unwrap();
            w.property_array_u32("interrupts", timer).unwrap();
            w.end_node(n).unwrap();
        }
        let n = w.begin_node("chosen").unwrap();
        if leave_out != "initrd" {
            w.property_u64("linux,initrd-start", 0x8800_0000).unwrap();
            w.property_u64(
                "linux,initrd-end",
                if leave_out == "initrd-end" {
                    0x8000_0000
                } else {
                    0x8810_0000
                },
            )
            .unwrap();
        }
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn discover(blob: &[u8]) -> Result<Platform, DiscoveryError> {
        Platform::discover(&Fdt::new(blob).unwrap())
    }

    /// The root's 512 MiB of RAM at 0x4000_0000, PSCI over SMC and one
    /// CPU: what every test board has before its devices.
    fn write_ram_psci_cpu0(w: &mut vm_fdt::FdtWriter) {
        let n = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x2000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci-1.0").unwrap();
        w.property_string("method", "smc").unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let c = w.begin_node("cpu@0").unwrap();
        w.property_string("device_type", "cpu").unwrap();
        w.property_u32("reg", 0).unwrap();
        w.end_node(c).unwrap();
        w.end_node(n).unwrap();
    }

    /// A board whose GIC and console sit under a `/soc` simple-bus (one
    /// address and size cell) as on most SoCs; the bus adds `soc_offset`
    /// to its children's addresses (`ranges`), or has no `ranges` at all,
    /// and gives its children their interrupt parent. `stdout` is
    /// /chosen/stdout-path.
    pub(crate) fn soc_board(soc_offset: Option<u64>, stdout: &str) -> alloc::vec::Vec<u8> {
        use vm_fdt::FdtWriter;
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        write_ram_psci_cpu0(&mut w);
        let n = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("aliases").unwrap();
        w.property_string("serial0", "/soc/serial@9000000").unwrap();
        w.end_node(n).unwrap();
        let soc = w.begin_node("soc").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_u32("interrupt-parent", 1).unwrap();
        if let Some(offset) = soc_offset {
            // <child address, parent address (2 cells), size>
            w.property_array_u32(
                "ranges",
                &[0, (offset >> 32) as u32, offset as u32, 0x4000_0000],
            )
            .unwrap();
        }
        let n = w.begin_node("interrupt-controller@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_u32("phandle", 1).unwrap();
        w.property_array_u32("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000])
            .unwrap();
        w.property_array_u32("interrupts", &[1, 9, 4]).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("serial@9000000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.property_array_u32("reg", &[0x0900_0000, 0x1000]).unwrap();
        w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
        w.end_node(n).unwrap();
        w.end_node(soc).unwrap();
        let n = w.begin_node("chosen").unwrap();
        w.property_string("stdout-path", stdout).unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    /// A board whose GICv3 (phandle 1, the root's interrupt parent) sits
    /// under an identity-mapped /soc with `gic_cells` #interrupt-cells,
    /// the timer's interrupts `timer`, and `extra` adding nodes under the
    /// root (review 9's board).
    pub(crate) fn gic_cells_board(
        extra: impl FnOnce(&mut vm_fdt::FdtWriter),
        gic_cells: u32,
        timer: &[u32],
    ) -> alloc::vec::Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_u32("interrupt-parent", 1).unwrap();
        write_ram_psci_cpu0(&mut w);
        let n = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32("interrupts", timer).unwrap();
        w.end_node(n).unwrap();
        let soc = w.begin_node("soc").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_null("ranges").unwrap();
        let n = w.begin_node("interrupt-controller@c000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_u32("#interrupt-cells", gic_cells).unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_u32("phandle", 1).unwrap();
        w.property_array_u64("reg", &[0x0c00_0000, 0x4_0000, 0x0c10_0000, 0x20_0000])
            .unwrap();
        let maintenance = [1, 9, 4, 0];
        w.property_array_u32("interrupts", &maintenance[..gic_cells.min(4) as usize])
            .unwrap();
        let its = w.begin_node("msi-controller@c040000").unwrap();
        w.property_string("compatible", "arm,gic-v3-its").unwrap();
        w.end_node(its).unwrap();
        let partitions = w.begin_node("ppi-partitions").unwrap();
        let cluster = w.begin_node("interrupt-partition-0").unwrap();
        w.property_u32("affinity", 2).unwrap();
        w.property_u32("phandle", 3).unwrap();
        w.end_node(cluster).unwrap();
        w.end_node(partitions).unwrap();
        w.end_node(n).unwrap();
        w.end_node(soc).unwrap();
        extra(&mut w);
        let n = w.begin_node("chosen").unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    pub(crate) fn a_pl011(w: &mut vm_fdt::FdtWriter) {
        let s = w.begin_node("serial@11002000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.property_array_u64("reg", &[0x1100_2000, 0x1000]).unwrap();
        w.end_node(s).unwrap();
    }

    /// R9-2: interrupt specifiers are as long as the interrupt parent's
    /// #interrupt-cells: the arm,gic-v3 binding's 4-cell form (MT8183,
    /// RK3399, Qualcomm) was read 3 cells at a time, and a valid board
    /// refused. Other counts, and specifiers cut short, are errors.
    #[test]
    fn interrupt_specifiers_follow_the_gics_interrupt_cells() {
        let timer_3 = [1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8];
        let timer_4 = [1, 13, 8, 0, 1, 14, 8, 0, 1, 11, 8, 0, 1, 10, 8, 0];
        for (cells, timer) in [(3, &timer_3[..]), (4, &timer_4[..])] {
            let blob = gic_cells_board(a_pl011, cells, timer);
            crate::fdt_check::check(&blob).unwrap();
            let p = discover(&blob).unwrap();
            assert_eq!(
                (
                    p.timer.secure_physical,
                    p.timer.physical,
                    p.timer.virtual_,
                    p.timer.hypervisor
                ),
                (29, 30, 27, 26),
                "{cells} cells"
            );
            assert_eq!(p.gic_maintenance, Some(25));
        }
        // A 4-cell GIC with a 3-cell timer list is too short (12 of 16).
        assert_eq!(
            discover(&gic_cells_board(a_pl011, 4, &timer_3)).unwrap_err(),
            DiscoveryError::NoTimer
        );
        assert_eq!(
            discover(&gic_cells_board(a_pl011, 2, &timer_3)).unwrap_err(),
            DiscoveryError::Malformed("the GICv3's #interrupt-cells is neither 3 nor 4")
        );
    }

    /// R9-1: a bus `ranges` whose entries have no cells at all, or that is
    /// not a whole number of entries, is a precise error (it panicked in
    /// `chunks_exact(0)`, or a trailing partial entry was ignored); a
    /// `reg` cut short likewise.
    #[test]
    fn ranges_and_reg_must_be_whole_entries() {
        let zero_cell_buses = |w: &mut vm_fdt::FdtWriter| {
            let a = w.begin_node("a").unwrap();
            w.property_u32("#address-cells", 0).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            w.property_array_u32("ranges", &[0]).unwrap();
            let b = w.begin_node("b").unwrap();
            w.property_u32("#address-cells", 0).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            w.property_array_u32("ranges", &[0]).unwrap();
            let c = w.begin_node("c").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            w.property_null("ranges").unwrap();
            let s = w.begin_node("serial@1000").unwrap();
            w.property_string("compatible", "arm,pl011").unwrap();
            w.property_array_u32("reg", &[0x1000, 0x100]).unwrap();
            w.end_node(s).unwrap();
            w.end_node(c).unwrap();
            w.end_node(b).unwrap();
            w.end_node(a).unwrap();
        };
        let blob = gic_cells_board(
            zero_cell_buses,
            3,
            &[1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8],
        );
        crate::fdt_check::check(&blob).unwrap();
        assert_eq!(
            discover(&blob).unwrap_err(),
            DiscoveryError::Malformed(
                "a bus's ranges is not a whole number of (child, parent, size) entries"
            )
        );
        // /soc's ranges (1 + 2 + 1 cells) with one cell too many.
        let blob = soc_board(Some(0), "/soc/serial@9000000");
        let fdt = Fdt::new(&blob).unwrap();
        let soc = fdt.find_node("/soc").unwrap();
        let ranges = soc.property("ranges").unwrap().value;
        let mut longer = alloc::vec::Vec::from(ranges);
        longer.extend_from_slice(&[0, 0, 0, 1]);
        assert!(through_ranges(&soc, 2, 0x0900_0000, 0x1000).is_ok());
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        let bus = w.begin_node("bus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property("ranges", &longer).unwrap();
        w.end_node(bus).unwrap();
        w.end_node(root).unwrap();
        let odd = w.finish().unwrap();
        let odd = Fdt::new(&odd).unwrap();
        assert_eq!(
            through_ranges(&odd.find_node("/bus").unwrap(), 2, 0x0900_0000, 0x1000),
            Err(DiscoveryError::Malformed(
                "a bus's ranges is not a whole number of (child, parent, size) entries"
            ))
        );
        // A console reg of three cells where entries are four.
        let short_reg = |w: &mut vm_fdt::FdtWriter| {
            let s = w.begin_node("serial@11002000").unwrap();
            w.property_string("compatible", "arm,pl011").unwrap();
            w.property_array_u32("reg", &[0, 0x1100_2000, 0]).unwrap();
            w.end_node(s).unwrap();
        };
        assert_eq!(
            discover(&gic_cells_board(
                short_reg,
                3,
                &[1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8]
            ))
            .unwrap_err(),
            DiscoveryError::Malformed("a reg is not a whole number of (address, size) entries")
        );
    }

    /// R7-14: `reg` below a bus is a bus address; hv translates it through
    /// the bus's `ranges` (an identity `ranges`, an offset, or none at all,
    /// which is an error), finds the console by its full path or an alias.
    #[test]
    fn devices_below_a_bus_are_found_at_their_cpu_addresses() {
        for (offset, stdout) in [
            (0, "/soc/serial@9000000"),
            (0xf000_0000, "serial0:115200n8"),
        ] {
            let blob = soc_board(Some(offset), stdout);
            crate::fdt_check::check(&blob).unwrap();
            let p = discover(&blob).unwrap();
            assert_eq!(
                p.uart,
                Region {
                    base: offset + 0x0900_0000,
                    size: 0x1000
                }
            );
            assert_eq!(p.uart_path.as_str(), "/soc/serial@9000000");
            assert_eq!(p.gic_distributor.base, offset + 0x0800_0000);
            assert_eq!(
                p.gic_redistributors.as_slice(),
                &[Region {
                    base: offset + 0x080a_0000,
                    size: 0xf6_0000
                }]
            );
            assert_eq!(p.gic_maintenance, Some(25));
        }
        assert_eq!(
            discover(&soc_board(None, "/soc/serial@9000000")).unwrap_err(),
            DiscoveryError::Malformed("a device sits on a bus without ranges (not memory-mapped)")
        );
        // A bus window too small for the device.
        let mut blob = soc_board(Some(0), "/soc/serial@9000000");
        let window = 0x4000_0000u32.to_be_bytes();
        let at = blob.windows(4).rposition(|w| w == window).unwrap();
        blob[at..at + 4].copy_from_slice(&0x0100_0000u32.to_be_bytes());
        assert_eq!(
            discover(&blob).unwrap_err(),
            DiscoveryError::Malformed("a device's reg lies outside its bus's ranges")
        );
    }

    #[test]
    fn subtracting_regions() {
        let r = |base, size| Region { base, size };
        let mib = 1 << 20;
        let memory = [r(0x4000_0000, 512 * mib), r(0x1_0000_0000, 64 * mib)];
        // A hole in the middle splits; unaligned edges shrink inward.
        let pieces: ArrayVec<Region, 4> =
            subtract_regions(&memory, &[r(0x4e00_0000 + 4096, 4096)], 2 * mib).unwrap();
        assert_eq!(
            pieces.as_slice(),
            &[
                r(0x4000_0000, 0x0e00_0000),
                r(0x4e20_0000, 0x6000_0000 - 0x4e20_0000),
                r(0x1_0000_0000, 64 * mib),
            ]
        );
        // Holes covering a region's edges, a whole region, or nothing.
        let pieces: ArrayVec<Region, 4> = subtract_regions(
            &memory,
            &[
                r(0x3000_0000, 0x1000_1000),
                r(0x1_0000_0000, 64 * mib),
                r(0x9000_0000, 4096),
                r(0x5fff_f000, 0x1000),
            ],
            4096,
        )
        .unwrap();
        assert_eq!(pieces.as_slice(), &[r(0x4000_1000, 512 * mib - 0x2000)]);
        // More pieces than the capacity is an error, not a truncation.
        let holes: ArrayVec<Region, 8> = (1..8)
            .map(|i| r(0x4000_0000 + i * 0x100_0000, 4096))
            .collect();
        assert_eq!(
            subtract_regions::<4>(&memory, &holes, 4096),
            Err(TooManyPieces)
        );
    }

    /// R7-7: memory the firmware keeps (a /reserved-memory `no-map` child,
    /// a mapped one, a /memreserve/ entry) is never the guest's, and hv
    /// does not map the `no-map` one for itself.
    #[test]
    fn firmware_reservations_are_kept_from_the_guest() {
        use vm_fdt::{FdtReserveEntry, FdtWriter};
        let mut w =
            FdtWriter::new_with_mem_reserv(&[FdtReserveEntry::new(0x8800_0000, 0x1000).unwrap()])
                .unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let n = w.begin_node("memory@80000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x8000_0000, 0x4000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("reserved-memory").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_null("ranges").unwrap();
        let fw = w.begin_node("secure-firmware@8e000000").unwrap();
        w.property_array_u64("reg", &[0x8e00_0000, 0x20_0000])
            .unwrap();
        w.property_null("no-map").unwrap();
        w.end_node(fw).unwrap();
        let shared = w.begin_node("shared@a0000000").unwrap();
        w.property_array_u64("reg", &[0xa000_0000, 0x40_0000])
            .unwrap();
        w.end_node(shared).unwrap();
        let dynamic = w.begin_node("cma").unwrap();
        w.property_u64("size", 0x400_0000).unwrap();
        w.end_node(dynamic).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("serial@1c090000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.property_array_u64("reg", &[0x1c09_0000, 0x1000]).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("interrupt-controller@2f000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_array_u64("reg", &[0x2f00_0000, 0x1_0000, 0x2f10_0000, 0x4_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci-1.0").unwrap();
        w.property_string("method", "smc").unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let c = w.begin_node("cpu@0").unwrap();
        w.property_string("device_type", "cpu").unwrap();
        w.property_u32("reg", 0).unwrap();
        w.end_node(c).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32("interrupts", &[1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8])
            .unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        crate::fdt_check::check(&blob).unwrap();

        let p = discover(&blob).unwrap();
        let r = |base, size| Region { base, size };
        assert_eq!(
            p.reserved.as_slice(),
            &[
                Reserved {
                    region: r(0x8800_0000, 0x1000),
                    no_map: false
                },
                Reserved {
                    region: r(0x8e00_0000, 0x20_0000),
                    no_map: true
                },
                Reserved {
                    region: r(0xa000_0000, 0x40_0000),
                    no_map: false
                },
            ]
        );
        let hv_image = r(0x8020_0000, 0x20_0000);
        let guest = p.guest_memory(hv_image).unwrap();
        assert_eq!(
            guest.as_slice(),
            &[
                r(0x8000_0000, 0x20_0000),
                r(0x8040_0000, 0x8800_0000 - 0x8040_0000),
                r(0x8820_0000, 0x8e00_0000 - 0x8820_0000),
                r(0x8e20_0000, 0xa000_0000 - 0x8e20_0000),
                r(0xa040_0000, 0xc000_0000 - 0xa040_0000),
            ]
        );
        for reservation in &p.reserved {
            assert!(guest.iter().all(|g| !g.overlaps(&reservation.region)));
        }
        assert!(guest.iter().all(|g| !g.overlaps(&hv_image)));
        assert_eq!(
            p.hv_mappable_memory().unwrap().as_slice(),
            &[
                r(0x8000_0000, 0x0e00_0000),
                r(0x8e20_0000, 0xc000_0000 - 0x8e20_0000),
            ]
        );
    }

    /// R7-6: PPI numbers from the tree are checked before `16 + number`
    /// (which overflowed on 0xffff_fff0) and before hv uses the INTID as a
    /// bit position: a timer or maintenance interrupt that is not a PPI
    /// (type 1, number 0-15) is a precise error, not a panic or a wrong
    /// INTID.
    #[test]
    fn interrupts_that_must_be_ppis_are_checked() {
        let timer = [1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8];
        let p = discover(&tree_with_interrupts("", 1, &timer, Some(&[1, 9, 4]))).unwrap();
        assert_eq!(p.gic_maintenance, Some(25));
        assert_eq!(p.timer.virtual_, 27);
        assert_eq!(p.timer.hypervisor, 26);
        // Four interrupts: no EL2 virtual timer named.
        assert_eq!(p.timer.hypervisor_virtual, None);
        let p = discover(&tree_with_interrupts("", 1, &timer, Some(&[1, 15, 4]))).unwrap();
        assert_eq!(p.gic_maintenance, Some(31), "the last PPI");
        for (number, kind) in [(0xffff_fff0, 1), (16, 1), (9, 0), (9, 3)] {
            let mut bad_timer = timer;
            bad_timer[6] = kind;
            bad_timer[7] = number;
            assert_eq!(
                discover(&tree_with_interrupts("", 1, &bad_timer, None)).unwrap_err(),
                DiscoveryError::NotAPpi {
                    what: "virtual timer",
                    kind,
                    number
                }
            );
            assert_eq!(
                discover(&tree_with_interrupts(
                    "",
                    1,
                    &timer,
                    Some(&[kind, number, 4])
                ))
                .unwrap_err(),
                DiscoveryError::NotAPpi {
                    what: "GIC maintenance",
                    kind,
                    number
                }
            );
        }
        let message = alloc::string::ToString::to_string(&DiscoveryError::NotAPpi {
            what: "GIC maintenance",
            kind: 1,
            number: 20,
        });
        assert_eq!(
            message,
            "the GIC maintenance interrupt <1 0x14 ...> is not a PPI (type 1, number 0 to 15)"
        );
    }

    /// R7-13: a guest write to UARTCR cannot switch the transmitter off or
    /// make it wait for CTS, whatever its width; other registers pass.
    #[test]
    fn guest_uart_control_writes_keep_the_transmitter_on() {
        use pl011::*;
        assert_eq!(guest_write(UARTCR, 4, 0), CR_UARTEN | CR_TXE);
        assert_eq!(guest_write(UARTCR, 4, 0xffff), 0x7fff);
        assert_eq!(guest_write(UARTCR, 8, 0x12_0000_0000), 0x12_0000_0101);
        assert_eq!(guest_write(UARTCR, 2, 0x0300), 0x0301);
        assert_eq!(
            guest_write(UARTCR, 1, 0x80),
            0x81,
            "loopback is the guest's"
        );
        assert_eq!(guest_write(UARTCR + 1, 1, 0x80), 0x01, "TXE on, CTSEn off");
        assert_eq!(guest_write(UARTCR + 2, 2, 0xffff), 0xffff);
        assert_eq!(guest_write(UARTDR, 4, 0x41), 0x41);
        assert_eq!(guest_write(0x2c, 4, 0), 0, "UARTLCR_H");
        assert_eq!(guest_write(0x38, 4, 0), 0, "UARTIMSC");
    }

    /// R7-13: hv's console waits a bounded time for room in the FIFO, and
    /// once it timed out only checks (the UART is wedged) until it drains.
    #[test]
    fn console_waits_for_the_uart_a_bounded_time() {
        use core::cell::Cell;
        let clock = Cell::new(0u64);
        let polls = Cell::new(0u32);
        let tick = || {
            clock.set(clock.get() + 1);
            clock.get()
        };
        // Never drains: gives up after the timeout.
        let full = || {
            polls.set(polls.get() + 1);
            true
        };
        assert!(!pl011::wait_for_room(false, full, tick, 1000));
        assert!(clock.get() >= 1000 && clock.get() < 1010);
        // Wedged: one look, no waiting.
        let (before_clock, before_polls) = (clock.get(), polls.get());
        assert!(!pl011::wait_for_room(true, full, tick, 1000));
        assert_eq!((clock.get(), polls.get()), (before_clock, before_polls + 1));
        // Drains after a few polls: room, within the timeout.
        let left = Cell::new(3);
        let draining = || {
            left.set(left.get() - 1);
            left.get() > 0
        };
        assert!(pl011::wait_for_room(false, draining, tick, 1000));
        // Room at once, even when wedged before.
        assert!(pl011::wait_for_room(true, || false, tick, 1000));
    }

    #[test]
    fn a_board_that_is_not_qemu() {
        let p = discover(&tree("", 4)).unwrap();
        assert_eq!(p.memory.len(), 2);
        assert_eq!(
            p.memory[1],
            Region {
                base: 0x1_0000_0000,
                size: 0x1000_0000
            }
        );
        assert_eq!(p.uart.base, 0x1c09_0000);
        assert_eq!(p.uart_path.as_str(), "/serial@1c090000");
        assert_eq!(p.gic_redistributors.len(), 2);
        assert_eq!(
            p.gic_redistributors[1],
            Region {
                base: 0x3000_0000,
                size: 0x4_0000
            }
        );
        assert_eq!(p.cpus.as_slice(), &[0, 1, 0x100, 0x101]);
        assert_eq!(p.cpu_index(0x8000_0101), Some(3));
        assert_eq!(
            p.initrd,
            Some(Region {
                base: 0x8800_0000,
                size: 0x10_0000
            })
        );
    }

    #[test]
    fn each_missing_requirement_is_named() {
        let cases = [
            ("memory", DiscoveryError::NoMemory),
            ("uart", DiscoveryError::NoConsole),
            ("gic", DiscoveryError::NoGicV3),
            ("psci", DiscoveryError::NoPsci),
            ("method", DiscoveryError::UnknownPsciMethod),
            ("timer", DiscoveryError::NoTimer),
            (
                "initrd-end",
                DiscoveryError::Malformed("/chosen linux,initrd-start/end"),
            ),
        ];
        for (leave_out, error) in cases {
            assert_eq!(
                discover(&tree(leave_out, 1)).unwrap_err(),
                error,
                "{leave_out}"
            );
        }
        assert_eq!(discover(&tree("", 0)).unwrap_err(), DiscoveryError::NoCpus);
        assert_eq!(
            discover(&tree("", 9)).unwrap_err(),
            DiscoveryError::TooManyCpus(9)
        );
        assert_eq!(discover(&tree("initrd", 1)).unwrap().initrd, None);
    }

    trait ToStringLossy {
        fn to_string_lossy(&self) -> alloc::string::String;
    }
    impl<T: fmt::Display> ToStringLossy for T {
        fn to_string_lossy(&self) -> alloc::string::String {
            alloc::format!("{self}")
        }
    }
}
