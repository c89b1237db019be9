//! Composition of L1's stage-2 translation (L2 IPA -> L1 IPA, from a walk
//! of L1's tables) with L0's own mapping of L1 (L1 IPA -> PA): the shadow
//! entry L0 installs for L2 (L2 IPA -> PA).
//!
//! Rules (what the two stages would give if the hardware walked both):
//! - **Size**: the smaller of the two, then the largest 4 KiB-granule size
//!   the shadow table can hold in one descriptor (1 GiB, 2 MiB or 4 KiB),
//!   aligned around the faulting L2 IPA. Both inputs are naturally aligned
//!   powers of two, so the L2 IPA, L1 IPA and PA agree modulo that size.
//! - **Permissions**: the intersection of read, write, execute-at-EL0 and
//!   execute-at-EL1 (S2AP and XN\[1:0\] with FEAT_XNX semantics), without
//!   execute when the combined type is Device (see below), then reduced to
//!   what the host's descriptors can encode ([`HostExecute`]: without
//!   FEAT_XNX, execute at only one of EL0/EL1 becomes no execute), so the
//!   composed permissions are exactly what the installed descriptor allows.
//! - **Memory type** (stage-2 MemAttr\[3:0\], HCR_EL2.FWB = 0 encoding): the
//!   more restrictive of the two, as the Arm ARM combines stages: Device
//!   beats Normal; among Device types nGnRnE < nGnRE < nGRE < GRE (the lower
//!   wins); for Normal memory inner and outer cacheability are each the
//!   weaker of the two (Non-cacheable < Write-Through < Write-Back).
//! - **Shareability**: the wider (Non < Inner < Outer). Device and Normal
//!   Non-cacheable memory are Outer Shareable whatever the descriptors say,
//!   so the composed entry says so too.
//!
//! An L1 IPA outside L1's memory is never mapped: [`resolve`] reports it as
//! [`Composition::Mmio`] (L0 emulates a device of L1's there: it must emulate
//! the access on behalf of L2) or [`Composition::ExternalAbort`]. Neither is
//! L1 memory whose L0 mapping L0 is changing at that moment (its
//! break-before-make): [`Composition::L0Changing`], nothing to map or report.
//!
//! CONSTRAINED UNPREDICTABLE choices (each tested):
//! - MemAttr with MemAttr\[3:2\] != 0b00 and MemAttr\[1:0\] = 0b00 is reserved;
//!   it is treated as Inner Non-cacheable (the most restrictive Normal
//!   behaviour permitted), so composition never grants more caching than
//!   some permitted reading of the descriptor.
//! - SH = 0b01 (reserved) is treated as Outer Shareable, the widest domain.
//! - An instruction fetch from Device memory (Unpredictable_INSTRDEVICE:
//!   a permission fault, or the fetch treated as one from Normal
//!   Non-cacheable memory) is a permission fault: a composed Device entry
//!   never grants execute, whichever stage made it Device. (The walker makes
//!   the same choice for L1's own Device leaves.) Had the entry kept
//!   execute, what an L2 fetch did would depend on the host CPU's choice,
//!   and it could run code from memory L0 maps as Device.

pub use ipc::message::{MemShareability, Permissions};
use walker::{AccessKind, CacheMaintenance, Execute, S2Ap, Shareability, Translation};

/// 4 KiB: the shadow granule and the smallest size anything maps.
pub const PAGE_SIZE: u64 = 1 << 12;
/// 2 MiB: a level-2 block of the shadow table.
pub const BLOCK_2M: u64 = 1 << 21;
/// 1 GiB: a level-1 block of the shadow table.
pub const BLOCK_1G: u64 = 1 << 30;
/// Input (L2 IPA) size of the shadow stage 2, in bits.
pub const SHADOW_IPA_BITS: u32 = 48;

/// Permissions from a stage-2 leaf's S2AP and XN\[1:0\].
pub const fn permissions_from_stage2(s2ap: S2Ap, execute: Execute) -> Permissions {
    let mut bits = 0;
    if s2ap.readable() {
        bits |= Permissions::READ.bits();
    }
    if s2ap.writable() {
        bits |= Permissions::WRITE.bits();
    }
    if execute.el0() {
        bits |= Permissions::EXEC_EL0.bits();
    }
    if execute.el1() {
        bits |= Permissions::EXEC_EL1.bits();
    }
    // Only the four known bits are set above.
    match Permissions::from_bits(bits) {
        Some(p) => p,
        None => Permissions::none(),
    }
}

/// S2AP and XN\[1:0\] (FEAT_XNX encoding) expressing `perms` exactly.
pub const fn stage2_from_permissions(perms: Permissions) -> (S2Ap, Execute) {
    let s2ap = S2Ap::from_bits(
        (perms.contains(Permissions::READ) as u8)
            | ((perms.contains(Permissions::WRITE) as u8) << 1),
    );
    let execute = match (
        perms.contains(Permissions::EXEC_EL0),
        perms.contains(Permissions::EXEC_EL1),
    ) {
        (true, true) => Execute::Both,
        (true, false) => Execute::El0Only,
        (false, true) => Execute::El1Only,
        (false, false) => Execute::Neither,
    };
    (s2ap, execute)
}

/// Which execute permissions the host's stage-2 descriptors can express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostExecute {
    /// FEAT_XNX: XN\[1:0\] (descriptor bits \[54:53\]) controls execute at
    /// EL0 and EL1 independently.
    PerLevel,
    /// No FEAT_XNX: stage-2 execute control is XN (bit \[54\]) alone, bit
    /// \[53\] is RES0 and not XN\[0\], so a descriptor allows execute at
    /// both EL0 and EL1 or at neither.
    BothOrNeither,
}

impl HostExecute {
    /// From the host's FEAT_XNX.
    pub const fn from_xnx(xnx: bool) -> Self {
        if xnx {
            HostExecute::PerLevel
        } else {
            HostExecute::BothOrNeither
        }
    }

    /// The most of `perms` this host's descriptors can encode without
    /// granting anything `perms` does not: execute at only one of EL0/EL1
    /// has no encoding without FEAT_XNX, and "both" would let the other
    /// level execute, so it becomes no execute. Translate compares the
    /// access with these permissions: had it compared with the unreduced
    /// ones it would answer `Mapped` for a fetch the installed descriptor
    /// faults, and L2 would re-fault forever.
    pub const fn encodable(self, perms: Permissions) -> Permissions {
        let exec = Permissions::EXEC_EL0.union(Permissions::EXEC_EL1);
        match self {
            HostExecute::PerLevel => perms,
            HostExecute::BothOrNeither if perms.contains(exec) => perms,
            HostExecute::BothOrNeither => {
                perms.intersection(Permissions::READ.union(Permissions::WRITE))
            }
        }
    }
}

/// Cacheability of Normal memory, weakest first (the derived order is the
/// combining order: the minimum wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cacheability {
    /// Non-cacheable.
    NonCacheable,
    /// Write-Through cacheable.
    WriteThrough,
    /// Write-Back cacheable.
    WriteBack,
}

impl Cacheability {
    const fn bits(self) -> u8 {
        match self {
            Cacheability::NonCacheable => 0b01,
            Cacheability::WriteThrough => 0b10,
            Cacheability::WriteBack => 0b11,
        }
    }
}

/// Device memory types, most restrictive first (the minimum wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceType {
    /// Device-nGnRnE.
    NGnRnE,
    /// Device-nGnRE.
    NGnRE,
    /// Device-nGRE.
    NGRE,
    /// Device-GRE.
    GRE,
}

/// A decoded stage-2 memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Device memory.
    Device(DeviceType),
    /// Normal memory with its outer and inner cacheability.
    Normal {
        /// Outer cacheability (MemAttr\[3:2\]).
        outer: Cacheability,
        /// Inner cacheability (MemAttr\[1:0\]).
        inner: Cacheability,
    },
}

impl MemoryType {
    /// The more restrictive of two stage-2 memory types (see module docs).
    pub const fn combine(self, other: MemoryType) -> MemoryType {
        match (self, other) {
            (MemoryType::Device(a), MemoryType::Device(b)) => {
                MemoryType::Device(if (a as u8) <= (b as u8) { a } else { b })
            }
            (MemoryType::Device(d), MemoryType::Normal { .. })
            | (MemoryType::Normal { .. }, MemoryType::Device(d)) => MemoryType::Device(d),
            (
                MemoryType::Normal {
                    outer: o1,
                    inner: i1,
                },
                MemoryType::Normal {
                    outer: o2,
                    inner: i2,
                },
            ) => MemoryType::Normal {
                outer: if (o1 as u8) <= (o2 as u8) { o1 } else { o2 },
                inner: if (i1 as u8) <= (i2 as u8) { i1 } else { i2 },
            },
        }
    }

    /// Whether the architecture makes this type Outer Shareable regardless
    /// of the SH field (Device, or Normal Non-cacheable both inside and out).
    pub const fn forces_outer_shareable(self) -> bool {
        matches!(
            self,
            MemoryType::Device(_)
                | MemoryType::Normal {
                    outer: Cacheability::NonCacheable,
                    inner: Cacheability::NonCacheable,
                }
        )
    }
}

/// Stage-2 MemAttr\[3:0\] (descriptor bits 5:2, HCR_EL2.FWB = 0 encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemAttr(u8);

const fn cacheability(bits: u8) -> Cacheability {
    match bits {
        2 => Cacheability::WriteThrough,
        3 => Cacheability::WriteBack,
        // 0b01, and the reserved 0b00 (inner only).
        _ => Cacheability::NonCacheable,
    }
}

impl MemAttr {
    /// Normal, Inner and Outer Write-Back: 0b1111.
    pub const NORMAL_WB: MemAttr = MemAttr(0b1111);
    /// Device-nGnRE: 0b0001.
    pub const DEVICE_NGNRE: MemAttr = MemAttr(0b0001);

    /// From the four MemAttr bits (higher bits are ignored).
    pub const fn from_bits(bits: u8) -> MemAttr {
        MemAttr(bits & 0xf)
    }

    /// The four MemAttr bits as written in the descriptor.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The memory type these bits give (reserved inner encoding 0b00 with a
    /// Normal outer type reads as Inner Non-cacheable; see module docs).
    pub const fn memory_type(self) -> MemoryType {
        let outer = self.0 >> 2;
        let low = self.0 & 3;
        if outer == 0 {
            return MemoryType::Device(match low {
                0 => DeviceType::NGnRnE,
                1 => DeviceType::NGnRE,
                2 => DeviceType::NGRE,
                _ => DeviceType::GRE,
            });
        }
        MemoryType::Normal {
            outer: cacheability(outer),
            inner: cacheability(low),
        }
    }

    /// The canonical MemAttr bits of a memory type.
    pub const fn from_memory_type(ty: MemoryType) -> MemAttr {
        match ty {
            MemoryType::Device(d) => MemAttr(d as u8),
            MemoryType::Normal { outer, inner } => MemAttr((outer.bits() << 2) | inner.bits()),
        }
    }

    /// The more restrictive combination of two stage-2 attributes: a load
    /// from [`COMBINED`] (decoding both, combining and encoding again was
    /// about 70 instructions of every nested fault).
    pub const fn combine(self, other: MemAttr) -> MemAttr {
        MemAttr(COMBINED[((self.0 as usize) << 4 | other.0 as usize) & 0xff])
    }

    /// [`MemAttr::combine`] from the memory types, what [`COMBINED`] holds.
    const fn combine_types(self, other: MemAttr) -> MemAttr {
        MemAttr::from_memory_type(self.memory_type().combine(other.memory_type()))
    }
}

/// [`MemAttr::combine_types`] of every pair of MemAttr values, at index
/// `a << 4 | b`.
const COMBINED: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = MemAttr((i >> 4) as u8)
            .combine_types(MemAttr((i & 0xf) as u8))
            .0;
        i += 1;
    }
    table
};

/// The effective shareability L1's descriptor gives (reserved 0b01 reads as
/// Outer Shareable; see module docs).
pub const fn effective_shareability(sh: Shareability) -> MemShareability {
    match sh {
        Shareability::NonShareable => MemShareability::NonShareable,
        Shareability::InnerShareable => MemShareability::InnerShareable,
        Shareability::OuterShareable | Shareability::Reserved => MemShareability::OuterShareable,
    }
}

const fn shareability_rank(sh: MemShareability) -> u8 {
    match sh {
        MemShareability::NonShareable => 0,
        MemShareability::InnerShareable => 1,
        MemShareability::OuterShareable => 2,
    }
}

/// The wider of two shareability domains.
pub const fn wider_shareability(a: MemShareability, b: MemShareability) -> MemShareability {
    if shareability_rank(a) >= shareability_rank(b) {
        a
    } else {
        b
    }
}

/// What the walk of L1's table gave for an L2 IPA: one leaf, L2 IPA block
/// -> L1 IPA block. The compact form the cache keeps ([`Translation`]
/// carries the whole descriptor trail besides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L1Translation {
    /// L2 IPA of the start of the leaf's block or page.
    pub l2_ipa_base: u64,
    /// L1 IPA it maps to.
    pub l1_ipa_base: u64,
    /// Block or page size (a power of two, at least 4 KiB).
    pub size: u64,
    /// S2AP of L1's leaf (read/write).
    pub s2ap: S2Ap,
    /// XN\[1:0\] of L1's leaf.
    pub execute: Execute,
    /// MemAttr\[3:0\] of L1's leaf.
    pub mem_attr: MemAttr,
    /// SH\[1:0\] of L1's leaf.
    pub shareability: Shareability,
}

impl L1Translation {
    /// The leaf a walk found. The block size is used, not the contiguous
    /// range: a contiguous hint lets a TLB cache more, never requires it.
    pub const fn from_translation(t: &Translation) -> L1Translation {
        L1Translation {
            l2_ipa_base: t.ipa_block_base(),
            l1_ipa_base: t.output_block_base(),
            size: t.block_size,
            s2ap: t.s2ap,
            execute: t.execute,
            mem_attr: MemAttr::from_bits(t.mem_attr),
            shareability: t.shareability,
        }
    }

    /// Whether `l2_ipa` lies in this leaf's block.
    pub const fn contains(&self, l2_ipa: u64) -> bool {
        l2_ipa >= self.l2_ipa_base && l2_ipa - self.l2_ipa_base < self.size
    }

    /// The L1 IPA `l2_ipa` translates to (`None` outside the block).
    pub const fn l1_ipa(&self, l2_ipa: u64) -> Option<u64> {
        if self.contains(l2_ipa) {
            Some(self.l1_ipa_base + (l2_ipa - self.l2_ipa_base))
        } else {
            None
        }
    }

    /// Read/write/execute permissions L1 grants.
    pub const fn permissions(&self) -> Permissions {
        permissions_from_stage2(self.s2ap, self.execute)
    }
}

impl From<&Translation> for L1Translation {
    fn from(t: &Translation) -> Self {
        L1Translation::from_translation(t)
    }
}

/// L0's mapping of one naturally aligned block of L1 memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L0Mapping {
    ipa_base: u64,
    pa_base: u64,
    size: u64,
    perms: Permissions,
    mem_attr: MemAttr,
    shareability: MemShareability,
}

/// Why an [`L0Mapping`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L0MappingError {
    /// The size is not a power of two of at least 4 KiB.
    BadSize(u64),
    /// The L1 IPA or PA base is not aligned to the size.
    Misaligned {
        /// L1 IPA base given.
        ipa_base: u64,
        /// PA base given.
        pa_base: u64,
        /// Size given.
        size: u64,
    },
}

impl L0Mapping {
    /// `[ipa_base, ipa_base + size)` of L1 memory at `pa_base`.
    pub const fn new(
        ipa_base: u64,
        pa_base: u64,
        size: u64,
        perms: Permissions,
        mem_attr: MemAttr,
        shareability: MemShareability,
    ) -> Result<L0Mapping, L0MappingError> {
        if !size.is_power_of_two() || size < PAGE_SIZE {
            return Err(L0MappingError::BadSize(size));
        }
        if ipa_base & (size - 1) != 0 || pa_base & (size - 1) != 0 {
            return Err(L0MappingError::Misaligned {
                ipa_base,
                pa_base,
                size,
            });
        }
        if ipa_base.checked_add(size - 1).is_none() || pa_base.checked_add(size - 1).is_none() {
            return Err(L0MappingError::Misaligned {
                ipa_base,
                pa_base,
                size,
            });
        }
        Ok(L0Mapping {
            ipa_base,
            pa_base,
            size,
            perms,
            mem_attr,
            shareability,
        })
    }

    /// L1 IPA of the block start.
    pub const fn ipa_base(&self) -> u64 {
        self.ipa_base
    }
    /// PA of the block start.
    pub const fn pa_base(&self) -> u64 {
        self.pa_base
    }
    /// Block size (power of two, >= 4 KiB).
    pub const fn size(&self) -> u64 {
        self.size
    }
    /// Permissions L0 grants L1.
    pub const fn permissions(&self) -> Permissions {
        self.perms
    }
    /// L0's stage-2 MemAttr for L1.
    pub const fn mem_attr(&self) -> MemAttr {
        self.mem_attr
    }
    /// L0's shareability for L1.
    pub const fn shareability(&self) -> MemShareability {
        self.shareability
    }
    /// Whether the block holds `l1_ipa`.
    pub const fn contains(&self, l1_ipa: u64) -> bool {
        l1_ipa >= self.ipa_base && l1_ipa - self.ipa_base < self.size
    }
}

/// What L0 has at an L1 IPA that is not ordinary L1 memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unbacked {
    /// A device L0 emulates for L1: the L2 access is emulated on L2's behalf.
    Mmio,
    /// Nothing: the access gets an external abort.
    Nothing,
    /// L1 memory whose L0 mapping L0 is changing (its break-before-make is
    /// under way: the old entry invalid, the new one not yet written). A
    /// hardware walk of L0's table now takes a stage-2 translation fault to
    /// L0, which waits for its own change and resumes the guest: L1 and L2
    /// never see it. So the access is tried again, never faulted: not
    /// `Nothing` (an external abort for memory L1 owns) and never mapped or
    /// cached (there is no mapping to compose with yet).
    L0Changing,
}

/// L0's own stage-2 mapping of L1 (L1 IPA -> PA). Implemented by hv over
/// its memslots and by hosts/tests over [`L0RegionMap`].
pub trait L0Map: Sync {
    /// The naturally aligned block of L1 memory holding `l1_ipa`, or `None`
    /// when `l1_ipa` is not L1 memory.
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping>;

    /// What lies at an `l1_ipa` for which [`L0Map::lookup`] gave `None`
    /// (an implementation whose map changes in place answers
    /// [`Unbacked::L0Changing`] for L1 memory mid-change).
    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        let _ = l1_ipa;
        Unbacked::Nothing
    }
}

impl<T: L0Map + ?Sized> L0Map for &T {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        (**self).lookup(l1_ipa)
    }
    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        (**self).unbacked(l1_ipa)
    }
}

/// A composed shadow entry: what one shadow descriptor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShadowMapping {
    /// L2 IPA of the block start (aligned to `size`).
    pub l2_ipa_base: u64,
    /// PA of the block start (aligned to `size`).
    pub pa_base: u64,
    /// 4 KiB, 2 MiB or 1 GiB.
    pub size: u64,
    /// Combined permissions.
    pub perms: Permissions,
    /// Combined MemAttr.
    pub mem_attr: MemAttr,
    /// Combined shareability.
    pub shareability: MemShareability,
}

impl ShadowMapping {
    /// The answer the service sends to the vCPU ([`ipc::message::Mapping`]).
    pub const fn to_message(&self) -> ipc::message::Mapping {
        ipc::message::Mapping {
            pa: self.pa_base,
            size_log2: self.size.trailing_zeros() as u8,
            permissions: self.perms,
            mem_attr: self.mem_attr.bits(),
            shareability: self.shareability,
        }
    }

    /// Whether the entry translates `l2_ipa`.
    pub const fn contains(&self, l2_ipa: u64) -> bool {
        l2_ipa >= self.l2_ipa_base && l2_ipa - self.l2_ipa_base < self.size
    }
}

/// A shadow entry and the L1 IPA block it was built on (what the reverse
/// map records: `[l1_ipa_base, l1_ipa_base + shadow.size)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ComposedEntry {
    /// The shadow descriptor contents.
    pub shadow: ShadowMapping,
    /// L1 IPA of the block the entry translates through.
    pub l1_ipa_base: u64,
}

/// Why [`compose`] refused its inputs (a caller's mistake, reported, never
/// a panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComposeError {
    /// The walk result is not a naturally aligned block of >= 4 KiB.
    MalformedWalk,
    /// The walk result does not translate this L2 IPA.
    L2IpaOutsideWalk {
        /// The L2 IPA given.
        l2_ipa: u64,
    },
    /// L0's mapping does not hold the L1 IPA the walk gave.
    L0MappingMismatch {
        /// The L1 IPA the walk gave.
        l1_ipa: u64,
    },
    /// The L2 IPA needs more than the shadow's 48 input bits (an L1 using
    /// 52-bit IPAs for L2): no shadow descriptor can express it.
    L2IpaBeyondShadow {
        /// The L2 IPA given.
        l2_ipa: u64,
    },
}

/// The largest size a 4 KiB-granule shadow descriptor can map that does not
/// exceed `size` (at least 4 KiB).
pub const fn shadow_block_size(size: u64) -> u64 {
    if size >= BLOCK_1G {
        BLOCK_1G
    } else if size >= BLOCK_2M {
        BLOCK_2M
    } else {
        PAGE_SIZE
    }
}

/// Composes L1's leaf for `l2_ipa` with L0's block holding the L1 IPA.
pub fn compose(
    walk: &L1Translation,
    l2_ipa: u64,
    l0: &L0Mapping,
) -> Result<ComposedEntry, ComposeError> {
    if !walk.size.is_power_of_two()
        || walk.size < PAGE_SIZE
        || walk.l2_ipa_base & (walk.size - 1) != 0
        || walk.l1_ipa_base & (walk.size - 1) != 0
    {
        return Err(ComposeError::MalformedWalk);
    }
    let l1_ipa = walk
        .l1_ipa(l2_ipa)
        .ok_or(ComposeError::L2IpaOutsideWalk { l2_ipa })?;
    if l2_ipa >> SHADOW_IPA_BITS != 0 {
        return Err(ComposeError::L2IpaBeyondShadow { l2_ipa });
    }
    if !l0.contains(l1_ipa) {
        return Err(ComposeError::L0MappingMismatch { l1_ipa });
    }
    let size = shadow_block_size(walk.size.min(l0.size));
    let mask = !(size - 1);
    let pa = l0.pa_base + (l1_ipa - l0.ipa_base);
    let mem_attr = walk.mem_attr.combine(l0.mem_attr);
    let mut perms = walk.permissions().intersection(l0.perms);
    let memory_type = mem_attr.memory_type();
    if let MemoryType::Device(_) = memory_type {
        // CONSTRAINED UNPREDICTABLE (Unpredictable_INSTRDEVICE): a fetch
        // from Device memory is a permission fault here (module docs).
        perms = perms.intersection(Permissions::READ.union(Permissions::WRITE));
    }
    let shareability = if memory_type.forces_outer_shareable() {
        MemShareability::OuterShareable
    } else {
        wider_shareability(effective_shareability(walk.shareability), l0.shareability)
    };
    Ok(ComposedEntry {
        shadow: ShadowMapping {
            l2_ipa_base: l2_ipa & mask,
            pa_base: pa & mask,
            size,
            perms,
            mem_attr,
            shareability,
        },
        l1_ipa_base: l1_ipa & mask,
    })
}

/// The result of looking up L0's mapping for a walk result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Composition {
    /// Install this entry.
    Mapped(ComposedEntry),
    /// The L1 IPA is a device L0 emulates for L1: emulate the L2 access.
    Mmio {
        /// The L1 IPA accessed.
        l1_ipa: u64,
    },
    /// Nothing is at the L1 IPA: an external abort.
    ExternalAbort {
        /// The L1 IPA accessed.
        l1_ipa: u64,
    },
    /// L1 memory whose L0 mapping is being changed ([`Unbacked::L0Changing`]):
    /// nothing to install or report; the access is tried again.
    L0Changing {
        /// The L1 IPA accessed.
        l1_ipa: u64,
    },
}

/// Looks up L0's mapping of the L1 IPA the walk gives for `l2_ipa` and
/// composes, with the permissions reduced to what `host` can encode
/// ([`HostExecute::encodable`]): the entry's permissions are exactly what
/// its shadow descriptor allows. Unbacked L1 IPAs are reported, never
/// mapped.
pub fn resolve(
    walk: &L1Translation,
    l2_ipa: u64,
    l0: &(impl L0Map + ?Sized),
    host: HostExecute,
) -> Result<Composition, ComposeError> {
    let l1_ipa = walk
        .l1_ipa(l2_ipa)
        .ok_or(ComposeError::L2IpaOutsideWalk { l2_ipa })?;
    match l0.lookup(l1_ipa) {
        Some(mapping) => compose(walk, l2_ipa, &mapping).map(|mut entry| {
            entry.shadow.perms = host.encodable(entry.shadow.perms);
            Composition::Mapped(entry)
        }),
        None => Ok(match l0.unbacked(l1_ipa) {
            Unbacked::Mmio => Composition::Mmio { l1_ipa },
            Unbacked::Nothing => Composition::ExternalAbort { l1_ipa },
            Unbacked::L0Changing => Composition::L0Changing { l1_ipa },
        }),
    }
}

/// One region of L1's address space as L0 sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L0RegionKind {
    /// L1 memory at a PA.
    Memory {
        /// PA of the region start.
        pa_base: u64,
        /// What L0 lets L1 do there.
        perms: Permissions,
        /// L0's MemAttr.
        mem_attr: MemAttr,
        /// L0's shareability.
        shareability: MemShareability,
    },
    /// A device L0 emulates for L1.
    Mmio,
}

/// A region `[ipa_base, ipa_base + size)` of L1's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L0Region {
    /// L1 IPA of the start (4 KiB aligned).
    pub ipa_base: u64,
    /// Length in bytes (a multiple of 4 KiB, non-zero).
    pub size: u64,
    /// Memory or emulated device.
    pub kind: L0RegionKind,
}

impl L0Region {
    /// What [`L0Map::unbacked`] reports for an L1 IPA in this region that
    /// has no mapping: the device L0 emulates, or (memory) nothing.
    pub fn unbacked(&self) -> Unbacked {
        match self.kind {
            L0RegionKind::Mmio => Unbacked::Mmio,
            L0RegionKind::Memory { .. } => Unbacked::Nothing,
        }
    }
}

/// Why an [`L0RegionMap`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L0RegionError {
    /// A base, PA or size is not a multiple of 4 KiB, or the size is zero
    /// or wraps the address space.
    Misaligned {
        /// The region's L1 IPA base.
        ipa_base: u64,
    },
    /// Two regions overlap.
    Overlap {
        /// Base of the first.
        first: u64,
        /// Base of the second.
        second: u64,
    },
}

/// [`L0Map`] over a sorted set of regions (binary search), giving for each
/// L1 IPA the largest naturally aligned block (up to 1 GiB) that lies inside
/// its region and has the same alignment in L1 IPA and PA.
#[derive(Clone, Debug, Default)]
pub struct L0RegionMap {
    regions: alloc::vec::Vec<L0Region>,
}

impl L0RegionMap {
    /// Validates and sorts the regions.
    pub fn new(mut regions: alloc::vec::Vec<L0Region>) -> Result<L0RegionMap, L0RegionError> {
        for r in &regions {
            let pa_ok = match r.kind {
                L0RegionKind::Memory { pa_base, .. } => {
                    pa_base % PAGE_SIZE == 0 && pa_base.checked_add(r.size).is_some()
                }
                L0RegionKind::Mmio => true,
            };
            if r.ipa_base % PAGE_SIZE != 0
                || r.size % PAGE_SIZE != 0
                || r.size == 0
                || r.ipa_base.checked_add(r.size).is_none()
                || !pa_ok
            {
                return Err(L0RegionError::Misaligned {
                    ipa_base: r.ipa_base,
                });
            }
        }
        regions.sort_unstable_by_key(|r| r.ipa_base);
        for pair in regions.windows(2) {
            if pair[0].ipa_base + pair[0].size > pair[1].ipa_base {
                return Err(L0RegionError::Overlap {
                    first: pair[0].ipa_base,
                    second: pair[1].ipa_base,
                });
            }
        }
        Ok(L0RegionMap { regions })
    }

    /// The regions, sorted.
    pub fn regions(&self) -> &[L0Region] {
        &self.regions
    }

    fn region(&self, l1_ipa: u64) -> Option<&L0Region> {
        let after = self.regions.partition_point(|r| r.ipa_base <= l1_ipa);
        let r = self.regions.get(after.checked_sub(1)?)?;
        (l1_ipa - r.ipa_base < r.size).then_some(r)
    }
}

/// The log2 of the largest naturally aligned block (4 KiB to 1 GiB) that
/// holds `l1_ipa`, lies inside `[start, end)` (`start <= l1_ipa < end`) and
/// has the same alignment at `l1_ipa` and at its PA `pa`. Computed from the
/// addresses' bits, not by trying each size from 1 GiB down (up to 19
/// tries a fault for a region mapped with pages: about 150 instructions of
/// every nested fault, L0 lookups being one per fault). Each bound below
/// only lowers the size that a smaller block also meets (a block inside
/// the region, co-aligned, still is when halved), so their minimum is the
/// largest block meeting all of them.
fn largest_block_log2(l1_ipa: u64, pa: u64, start: u64, end: u64) -> u32 {
    let top_bit = |word: u64| 63 - word.leading_zeros();
    // Co-aligned: the block may not reach the lowest bit where the L1 IPA
    // and the PA differ.
    let aligned = (l1_ipa ^ pa).trailing_zeros();
    // base >= start: clearing the block's bits keeps the IPA above
    // `start - 1` while the highest bit where the two differ (set in the
    // IPA, which is larger) stays.
    let from_start = if start == 0 {
        64
    } else {
        top_bit(l1_ipa ^ (start - 1))
    };
    // base + size <= end: setting the block's bits keeps the IPA at most
    // `end - 1` while they stay below the highest bit where the two
    // differ (clear in the IPA), or while `end - 1` has every one of them
    // set (`end` aligned to the block).
    let last = end - 1;
    let below_end = if l1_ipa == last {
        end.trailing_zeros()
    } else {
        top_bit(l1_ipa ^ last).max(end.trailing_zeros())
    };
    let block = BLOCK_1G.trailing_zeros();
    aligned
        .min(from_start)
        .min(below_end)
        .min(block)
        .max(PAGE_SIZE.trailing_zeros())
}

impl L0Map for L0RegionMap {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        let r = self.region(l1_ipa)?;
        let L0RegionKind::Memory {
            pa_base,
            perms,
            mem_attr,
            shareability,
        } = r.kind
        else {
            return None;
        };
        let pa = pa_base + (l1_ipa - r.ipa_base);
        let size = 1u64 << largest_block_log2(l1_ipa, pa, r.ipa_base, r.ipa_base + r.size);
        let base = l1_ipa & !(size - 1);
        L0Mapping::new(base, pa & !(size - 1), size, perms, mem_attr, shareability).ok()
    }

    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        self.region(l1_ipa)
            .map_or(Unbacked::Nothing, L0Region::unbacked)
    }
}

/// The permission an access needs in a stage-2 entry (the service's check
/// of a shadow entry against L0's map, and shadow-replay's oracle).
/// Inline: the service checks it on every translate.
#[inline]
pub const fn needed_permission(access: AccessKind) -> Permissions {
    match access {
        AccessKind::Read => Permissions::READ,
        AccessKind::Write => Permissions::WRITE,
        AccessKind::Stage1Update => Permissions::READ.union(Permissions::WRITE),
        AccessKind::ExecEl1 => Permissions::EXEC_EL1,
        AccessKind::ExecEl0 => Permissions::EXEC_EL0,
        AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1) => Permissions::none(),
        AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1) => Permissions::WRITE,
        AccessKind::CacheMaintenance(CacheMaintenance::El0) => Permissions::READ,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::sync::AtomicU64;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use walker::{
        AccessKind, Endianness, ExposedFeatures, IdRegisters, Memslot, Memslots, SlotAccess,
        Stage2Registers, Stage2Walker,
    };

    const RW: Permissions = Permissions::READ.union(Permissions::WRITE);
    const ALL: Permissions = RW.union(Permissions::EXEC_EL0).union(Permissions::EXEC_EL1);

    fn walk(l2: u64, l1: u64, size: u64, s2ap: S2Ap, execute: Execute, attr: u8) -> L1Translation {
        L1Translation {
            l2_ipa_base: l2,
            l1_ipa_base: l1,
            size,
            s2ap,
            execute,
            mem_attr: MemAttr::from_bits(attr),
            shareability: Shareability::InnerShareable,
        }
    }

    fn l0(ipa: u64, pa: u64, size: u64, perms: Permissions, attr: u8) -> L0Mapping {
        L0Mapping::new(
            ipa,
            pa,
            size,
            perms,
            MemAttr::from_bits(attr),
            MemShareability::InnerShareable,
        )
        .unwrap()
    }

    #[test]
    fn device_beats_normal_and_the_stricter_device_type_wins() {
        let dev = |d: u8| MemAttr::from_bits(d);
        assert_eq!(dev(0b0001).combine(MemAttr::NORMAL_WB), dev(0b0001));
        assert_eq!(MemAttr::NORMAL_WB.combine(dev(0b0011)), dev(0b0011));
        assert_eq!(dev(0b0010).combine(dev(0b0000)), dev(0b0000));
        assert_eq!(dev(0b0011).combine(dev(0b0001)), dev(0b0001));
        assert_eq!(dev(0b0011).combine(dev(0b0010)), dev(0b0010));
        assert_eq!(
            dev(0b0000).memory_type(),
            MemoryType::Device(DeviceType::NGnRnE)
        );
    }

    #[test]
    fn normal_cacheability_is_the_weaker_inner_and_outer_separately() {
        // Outer WB / inner WT  with  outer NC / inner WB -> outer NC / inner WT.
        let a = MemAttr::from_bits(0b1110);
        let b = MemAttr::from_bits(0b0111);
        assert_eq!(a.combine(b).bits(), 0b0110);
        assert_eq!(
            a.combine(b).memory_type(),
            MemoryType::Normal {
                outer: Cacheability::NonCacheable,
                inner: Cacheability::WriteThrough
            }
        );
        assert_eq!(
            MemAttr::NORMAL_WB.combine(MemAttr::NORMAL_WB),
            MemAttr::NORMAL_WB
        );
        assert_eq!(
            MemAttr::from_bits(0b1011)
                .combine(MemAttr::NORMAL_WB)
                .bits(),
            0b1011
        );
    }

    #[test]
    fn reserved_inner_encoding_reads_as_inner_non_cacheable() {
        // CONSTRAINED UNPREDICTABLE choice documented in the module docs.
        assert_eq!(
            MemAttr::from_bits(0b1100).memory_type(),
            MemoryType::Normal {
                outer: Cacheability::WriteBack,
                inner: Cacheability::NonCacheable
            }
        );
        assert_eq!(
            MemAttr::from_bits(0b1100)
                .combine(MemAttr::NORMAL_WB)
                .bits(),
            0b1101
        );
    }

    #[test]
    fn shareability_is_the_wider_and_reserved_reads_as_outer() {
        use MemShareability::*;
        assert_eq!(
            wider_shareability(NonShareable, InnerShareable),
            InnerShareable
        );
        assert_eq!(
            wider_shareability(OuterShareable, InnerShareable),
            OuterShareable
        );
        assert_eq!(wider_shareability(NonShareable, NonShareable), NonShareable);
        assert_eq!(
            effective_shareability(Shareability::Reserved),
            OuterShareable
        );

        let mut w = walk(0, 0, PAGE_SIZE, S2Ap::ReadWrite, Execute::Both, 0b1111);
        w.shareability = Shareability::NonShareable;
        let m = L0Mapping::new(0, 0, PAGE_SIZE, ALL, MemAttr::NORMAL_WB, NonShareable).unwrap();
        assert_eq!(
            compose(&w, 0, &m).unwrap().shadow.shareability,
            NonShareable
        );
        w.shareability = Shareability::Reserved;
        assert_eq!(
            compose(&w, 0, &m).unwrap().shadow.shareability,
            OuterShareable
        );
        // Device and Normal NC/NC are Outer Shareable whatever SH says.
        w.shareability = Shareability::NonShareable;
        w.mem_attr = MemAttr::DEVICE_NGNRE;
        assert_eq!(
            compose(&w, 0, &m).unwrap().shadow.shareability,
            OuterShareable
        );
        w.mem_attr = MemAttr::from_bits(0b0101);
        assert_eq!(
            compose(&w, 0, &m).unwrap().shadow.shareability,
            OuterShareable
        );
        // Outer NC but inner WB is not forced.
        w.mem_attr = MemAttr::from_bits(0b0111);
        assert_eq!(
            compose(&w, 0, &m).unwrap().shadow.shareability,
            NonShareable
        );
    }

    #[test]
    fn a_composed_device_entry_never_grants_execute() {
        // L1 Normal and executable; L0 Device (and executable), and the
        // other way round: Device either way, so no execute, read and
        // write kept.
        for (l1_attr, l0_attr) in [(0b1111u8, 0b0001u8), (0b0000, 0b1111), (0b0011, 0b0010)] {
            let w = walk(
                0,
                0x4000_0000,
                BLOCK_2M,
                S2Ap::from_bits(0b11),
                Execute::from_xn(0b00),
                l1_attr,
            );
            let c = compose(
                &w,
                0x1000,
                &l0(0x4000_0000, 0x8000_0000, BLOCK_2M, ALL, l0_attr),
            )
            .unwrap();
            assert!(matches!(
                c.shadow.mem_attr.memory_type(),
                MemoryType::Device(_)
            ));
            assert_eq!(c.shadow.perms, RW, "L1 {l1_attr:#06b} L0 {l0_attr:#06b}");
        }
        // Normal both: execute kept.
        let w = walk(
            0,
            0x4000_0000,
            BLOCK_2M,
            S2Ap::from_bits(0b11),
            Execute::from_xn(0b00),
            0b1111,
        );
        let c = compose(
            &w,
            0x1000,
            &l0(0x4000_0000, 0x8000_0000, BLOCK_2M, ALL, 0b1111),
        )
        .unwrap();
        assert_eq!(c.shadow.perms, ALL);
    }

    /// Without FEAT_XNX only "both levels" or "neither" is encodable: a
    /// one-level execute becomes none, nothing else changes, and the
    /// result is always what the descriptor the shadow table writes
    /// allows (never more than asked).
    #[test]
    fn host_execute_keeps_only_encodable_execute() {
        for bits in 0..16u8 {
            let perms = Permissions::from_bits(bits).unwrap();
            assert_eq!(HostExecute::PerLevel.encodable(perms), perms);
            let reduced = HostExecute::BothOrNeither.encodable(perms);
            let (_, execute) = stage2_from_permissions(perms);
            let expected = match execute {
                Execute::Both | Execute::Neither => perms,
                Execute::El0Only | Execute::El1Only => {
                    perms.intersection(Permissions::READ.union(Permissions::WRITE))
                }
            };
            assert_eq!(reduced, expected, "{perms:?}");
            assert_eq!(reduced.intersection(perms), reduced);
        }
    }

    #[test]
    fn permissions_intersect_with_xnx_semantics() {
        let m = l0(0, 0, BLOCK_2M, RW.union(Permissions::EXEC_EL1), 0b1111);
        let p = |s2ap, x| {
            compose(&walk(0, 0, BLOCK_2M, s2ap, x, 0b1111), 0x1000, &m)
                .unwrap()
                .shadow
                .perms
        };
        assert_eq!(
            p(S2Ap::ReadWrite, Execute::Both),
            RW.union(Permissions::EXEC_EL1)
        );
        assert_eq!(p(S2Ap::ReadOnly, Execute::El0Only), Permissions::READ);
        assert_eq!(
            p(S2Ap::WriteOnly, Execute::El1Only),
            Permissions::WRITE.union(Permissions::EXEC_EL1)
        );
        assert_eq!(p(S2Ap::None, Execute::Neither), Permissions::none());
        for xn in 0..4 {
            let x = Execute::from_xn(xn);
            for ap in 0..4 {
                let s = S2Ap::from_bits(ap);
                let perms = permissions_from_stage2(s, x);
                assert_eq!(stage2_from_permissions(perms), (s, x));
            }
        }
    }

    #[test]
    fn size_is_the_smaller_in_a_shadow_expressible_block_around_the_ipa() {
        let cases = [
            // (walk size, L0 size, shadow size)
            (BLOCK_2M, PAGE_SIZE, PAGE_SIZE),
            (PAGE_SIZE, BLOCK_1G, PAGE_SIZE),
            (BLOCK_1G, BLOCK_2M, BLOCK_2M),
            (BLOCK_1G, BLOCK_1G, BLOCK_1G),
            (1 << 14, BLOCK_1G, PAGE_SIZE), // 16K page
            (1 << 16, BLOCK_1G, PAGE_SIZE), // 64K page
            (1 << 25, BLOCK_1G, BLOCK_2M),  // 16K-granule level-2 block
            (1 << 29, BLOCK_1G, BLOCK_2M),  // 64K-granule level-2 block
            (1 << 36, BLOCK_1G, BLOCK_1G),  // 16K-granule level-1 block
            (1 << 42, 1 << 42, BLOCK_1G),   // 64K-granule level-1 (LPA)
        ];
        for (ws, ls, expect) in cases {
            let l2_base = 1 << 43;
            let l1_base = 1 << 44;
            let pa_base = 1u64 << 42;
            let w = walk(l2_base, l1_base, ws, S2Ap::ReadWrite, Execute::Both, 0b1111);
            let off = (ws / 2 + 0x3000) % ws;
            let l2_ipa = l2_base + off;
            let l1_ipa = l1_base + off;
            let l0m = l0(l1_ipa & !(ls - 1), pa_base, ls, ALL, 0b1111);
            let c = compose(&w, l2_ipa, &l0m).unwrap();
            assert_eq!(c.shadow.size, expect, "walk {ws:#x} l0 {ls:#x}");
            assert_eq!(c.shadow.l2_ipa_base, l2_ipa & !(expect - 1));
            assert_eq!(c.l1_ipa_base, l1_ipa & !(expect - 1));
            let pa = pa_base + (l1_ipa & (ls - 1));
            assert_eq!(c.shadow.pa_base, pa & !(expect - 1));
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let w = walk(
            BLOCK_2M,
            0,
            BLOCK_2M,
            S2Ap::ReadWrite,
            Execute::Both,
            0b1111,
        );
        let m = l0(0, 0, BLOCK_2M, ALL, 0b1111);
        assert_eq!(
            compose(&w, 0, &m),
            Err(ComposeError::L2IpaOutsideWalk { l2_ipa: 0 })
        );
        let far = l0(BLOCK_1G, 0, BLOCK_2M, ALL, 0b1111);
        assert_eq!(
            compose(&w, BLOCK_2M + 8, &far),
            Err(ComposeError::L0MappingMismatch { l1_ipa: 8 })
        );
        let mut bad = w;
        bad.size = 3 << 12;
        assert_eq!(
            compose(&bad, BLOCK_2M, &m),
            Err(ComposeError::MalformedWalk)
        );
        bad = w;
        bad.l1_ipa_base = 0x1000;
        assert_eq!(
            compose(&bad, BLOCK_2M, &m),
            Err(ComposeError::MalformedWalk)
        );
        let high = walk(1 << 48, 0, BLOCK_2M, S2Ap::ReadWrite, Execute::Both, 0b1111);
        assert_eq!(
            compose(&high, (1 << 48) + 4, &m),
            Err(ComposeError::L2IpaBeyondShadow {
                l2_ipa: (1 << 48) + 4
            })
        );
        assert_eq!(
            L0Mapping::new(
                0,
                0,
                3 << 12,
                ALL,
                MemAttr::NORMAL_WB,
                MemShareability::InnerShareable
            ),
            Err(L0MappingError::BadSize(3 << 12))
        );
        assert!(L0Mapping::new(
            0,
            0x1000,
            BLOCK_2M,
            ALL,
            MemAttr::NORMAL_WB,
            MemShareability::InnerShareable
        )
        .is_err());
        assert!(L0Mapping::new(
            !(BLOCK_2M - 1),
            0,
            BLOCK_2M,
            ALL,
            MemAttr::NORMAL_WB,
            MemShareability::InnerShareable
        )
        .is_ok());
    }

    /// The table holds, for every pair, what the memory types give.
    #[test]
    fn combined_table_is_the_types_combination() {
        for a in 0..16 {
            for b in 0..16 {
                let (a, b) = (MemAttr::from_bits(a), MemAttr::from_bits(b));
                assert_eq!(a.combine(b), a.combine_types(b), "{a:?} {b:?}");
            }
        }
    }

    fn region_map() -> L0RegionMap {
        let mem = |ipa_base, size, pa_base| L0Region {
            ipa_base,
            size,
            kind: L0RegionKind::Memory {
                pa_base,
                perms: ALL,
                mem_attr: MemAttr::NORMAL_WB,
                shareability: MemShareability::InnerShareable,
            },
        };
        L0RegionMap::new(vec![
            mem(0x4000_0000, 0x4000_0000, 0x8_0000_0000),
            L0Region {
                ipa_base: 0x0900_0000,
                size: 0x1000,
                kind: L0RegionKind::Mmio,
            },
            // PA only 4K-aligned relative to IPA: pages only.
            mem(0x1_0000_0000, 0x40_0000, 0x9_0000_1000),
        ])
        .unwrap()
    }

    #[test]
    fn unbacked_l1_ipas_are_reported_not_mapped() {
        let map = region_map();
        let w = walk(
            0,
            0x0900_0000,
            PAGE_SIZE,
            S2Ap::ReadWrite,
            Execute::Neither,
            0b0001,
        );
        assert_eq!(
            resolve(&w, 0x10, &map, HostExecute::PerLevel),
            Ok(Composition::Mmio {
                l1_ipa: 0x0900_0010
            })
        );
        let w = walk(
            0,
            0x2000_0000,
            BLOCK_2M,
            S2Ap::ReadWrite,
            Execute::Both,
            0b1111,
        );
        assert_eq!(
            resolve(&w, 0x1234, &map, HostExecute::PerLevel),
            Ok(Composition::ExternalAbort {
                l1_ipa: 0x2000_1234
            })
        );
        let w = walk(
            0,
            0x4000_0000,
            BLOCK_1G,
            S2Ap::ReadWrite,
            Execute::Both,
            0b1111,
        );
        let Ok(Composition::Mapped(c)) = resolve(&w, 0x1234_5678, &map, HostExecute::PerLevel)
        else {
            panic!("memory must map");
        };
        assert_eq!(c.shadow.size, BLOCK_1G);
        assert_eq!(c.shadow.pa_base, 0x8_0000_0000);
        let w = walk(
            0,
            0x1_0000_0000,
            BLOCK_2M,
            S2Ap::ReadWrite,
            Execute::Both,
            0b1111,
        );
        let Ok(Composition::Mapped(c)) = resolve(&w, 0x5678, &map, HostExecute::PerLevel) else {
            panic!("memory must map");
        };
        assert_eq!(c.shadow.size, PAGE_SIZE);
        assert_eq!(c.shadow.pa_base, 0x9_0000_6000);
    }

    #[test]
    fn region_map_rejects_overlap_and_misalignment() {
        let r = |ipa_base, size| L0Region {
            ipa_base,
            size,
            kind: L0RegionKind::Mmio,
        };
        assert_eq!(
            L0RegionMap::new(vec![r(0x2000, 0x2000), r(0x3000, 0x1000)]).unwrap_err(),
            L0RegionError::Overlap {
                first: 0x2000,
                second: 0x3000
            }
        );
        assert!(L0RegionMap::new(vec![r(0x2001, 0x1000)]).is_err());
        assert!(L0RegionMap::new(vec![r(0x2000, 0)]).is_err());
        assert!(L0RegionMap::new(vec![r(!0xfff, 0x2000)]).is_err());
    }

    /// L1's real table, walked by the walker, composed with L0's map.
    #[test]
    fn composes_a_real_walk_of_l1_tables() {
        const BASE: u64 = 0x4000_0000;
        let words: Vec<AtomicU64> = (0..4 * 512).map(|_| AtomicU64::new(0)).collect();
        let mut slots = [Memslot::new(BASE, &words, SlotAccess::ReadWrite)];
        let mem = Memslots::new(&mut slots).unwrap();
        // Level-1 root at BASE; IPA 0x8020_0000: L1[2] -> table, L2[1] -> block.
        mem.store_raw(BASE + 2 * 8, (BASE + 0x1000) | 0b11).unwrap();
        let block = 0x6000_0000u64
            | 0b01
            | (0b1111 << 2)
            | (0b11 << 6)
            | (0b11 << 8)
            | (1 << 10)
            | (0b01 << 53); // XN = 0b01: EL0 only (FEAT_XNX)
        mem.store_raw(BASE + 0x1000 + 8, block).unwrap();
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: 2 | (0b0010 << 40),
            mmfr1: 1 << 28,
            mmfr2: 0,
        })
        .unwrap();
        // T0SZ 25 (39 bits), SL0 = 1 (level 1), TG0 4K, PS 40 bits.
        let vtcr = 25 | (1 << 6) | (2 << 16);
        let walker = Stage2Walker::new(
            Stage2Registers {
                vtcr,
                vttbr: BASE,
                endianness: Endianness::Little,
            },
            &features,
        );
        let l2_ipa = 0x8021_2345;
        let t = walker.walk(&mem, l2_ipa, AccessKind::Read).unwrap();
        let w = L1Translation::from(&t);
        assert_eq!(
            (w.l2_ipa_base, w.l1_ipa_base, w.size),
            (0x8020_0000, 0x6000_0000, BLOCK_2M)
        );
        let map = L0RegionMap::new(vec![L0Region {
            ipa_base: 0x6000_0000,
            size: 0x40_0000,
            kind: L0RegionKind::Memory {
                pa_base: 0x1_2340_0000,
                perms: ALL,
                mem_attr: MemAttr::from_bits(0b1010),
                shareability: MemShareability::OuterShareable,
            },
        }])
        .unwrap();
        let Ok(Composition::Mapped(c)) = resolve(&w, l2_ipa, &map, HostExecute::PerLevel) else {
            panic!("must map");
        };
        assert_eq!(
            c.shadow,
            ShadowMapping {
                l2_ipa_base: 0x8020_0000,
                pa_base: 0x1_2340_0000,
                size: BLOCK_2M,
                perms: RW.union(Permissions::EXEC_EL0),
                mem_attr: MemAttr::from_bits(0b1010),
                shareability: MemShareability::OuterShareable,
            }
        );
        assert_eq!(c.l1_ipa_base, 0x6000_0000);
        let msg = c.shadow.to_message();
        assert_eq!(
            (msg.pa, msg.size_log2, msg.mem_attr),
            (0x1_2340_0000, 21, 0b1010)
        );
    }

    fn type_rank(t: MemoryType) -> (u8, u8, u8) {
        // Smaller is more restrictive, per component.
        match t {
            MemoryType::Device(d) => (0, d as u8, 0),
            MemoryType::Normal { outer, inner } => (1, outer as u8, inner as u8),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn combine_is_commutative_and_never_weaker(a in 0u8..16, b in 0u8..16) {
            let (a, b) = (MemAttr::from_bits(a), MemAttr::from_bits(b));
            let c = a.combine(b);
            prop_assert_eq!(c, b.combine(a));
            let (rc, ra, rb) = (type_rank(c.memory_type()), type_rank(a.memory_type()), type_rank(b.memory_type()));
            // Device if either is; never more cacheable than either.
            prop_assert_eq!(rc.0, ra.0.min(rb.0));
            if rc.0 == 0 {
                let devs = [ra, rb].iter().filter(|r| r.0 == 0).map(|r| r.1).min().unwrap();
                prop_assert_eq!(rc.1, devs);
            } else {
                prop_assert_eq!(rc.1, ra.1.min(rb.1));
                prop_assert_eq!(rc.2, ra.2.min(rb.2));
            }
            // Canonical encodings are fixed points.
            prop_assert_eq!(c.combine(c), c);
        }

        #[test]
        fn composed_block_is_the_two_stage_translation(
            walk_log in prop::sample::select(vec![12u32, 14, 16, 21, 25, 29, 30, 36]),
            l0_log in prop::sample::select(vec![12u32, 13, 16, 21, 24, 30]),
            l2_page in 0u64..(1 << 36),
            l1_page in 0u64..(1 << 36),
            pa_page in 0u64..(1 << 30),
            offset in 0u64..(1 << 36),
            ap in 0u8..4, xn in 0u8..4, l0_perm_bits in 0u8..16,
            attr1 in 0u8..16, attr0 in 0u8..16,
        ) {
            let ws = 1u64 << walk_log;
            let ls = 1u64 << l0_log;
            let w = walk((l2_page << 12) & !(ws - 1), (l1_page << 12) & !(ws - 1), ws,
                S2Ap::from_bits(ap), Execute::from_xn(xn), attr1);
            let l2_ipa = w.l2_ipa_base + offset % ws;
            let l1_ipa = w.l1_ipa(l2_ipa).unwrap();
            let perms0 = Permissions::from_bits(l0_perm_bits).unwrap();
            let m = l0(l1_ipa & !(ls - 1), (pa_page << 12) & !(ls - 1), ls, perms0, attr0);
            let c = compose(&w, l2_ipa, &m).unwrap();
            let s = c.shadow;
            prop_assert!(s.contains(l2_ipa));
            prop_assert!([PAGE_SIZE, BLOCK_2M, BLOCK_1G].contains(&s.size));
            prop_assert!(s.size <= ws.min(ls));
            prop_assert_eq!(s.size, shadow_block_size(ws.min(ls)));
            prop_assert_eq!(s.l2_ipa_base % s.size, 0);
            prop_assert_eq!(s.pa_base % s.size, 0);
            // Every address of the shadow block translates as the two
            // stages do, and stays inside both stages' blocks.
            for probe in [0, (s.size / 3) & !7, s.size - 8] {
                let a = s.l2_ipa_base + probe;
                let l1 = w.l1_ipa(a);
                prop_assert!(l1.is_some());
                let l1 = l1.unwrap();
                prop_assert!(m.contains(l1));
                prop_assert_eq!(l1, c.l1_ipa_base + probe);
                prop_assert_eq!(s.pa_base + probe, m.pa_base() + (l1 - m.ipa_base()));
            }
            prop_assert_eq!(s.mem_attr, MemAttr::from_bits(attr1).combine(MemAttr::from_bits(attr0)));
            // The intersection, without execute for Device memory.
            let both = w.permissions().intersection(perms0);
            let exec = Permissions::EXEC_EL0.union(Permissions::EXEC_EL1);
            match s.mem_attr.memory_type() {
                MemoryType::Device(_) => {
                    prop_assert_eq!(s.perms.union(exec), both.union(exec));
                    prop_assert_eq!(s.perms.intersection(exec), Permissions::none());
                }
                MemoryType::Normal { .. } => prop_assert_eq!(s.perms, both),
            }
        }

        /// The block size from the addresses' bits is the one trying each
        /// size from 1 GiB down finds (regions anywhere below 2^52, of any
        /// size and alignment, PAs of any alignment).
        #[test]
        fn largest_block_is_the_first_size_that_fits(
            start_pages in 0u64..(1 << 40), size_shift in 0u32..36, size_low in 1u64..(1 << 12),
            pa_bits in 0u64..(1 << 40), pa_shift in 0u32..20, probe in any::<u64>(),
        ) {
            // A quarter of the regions start at 0 (no lower bound).
            let start = if start_pages % 4 == 0 { 0 } else { start_pages << 12 };
            let size = (size_low << 12) << size_shift;
            let end = start + size;
            // Anywhere in the region, and its last byte.
            for l1_ipa in [start + (probe % size), end - 1] {
                let pa = (pa_bits << (12 + pa_shift)) + (l1_ipa & 0xfff);
                let mut tried = BLOCK_1G;
                while tried > PAGE_SIZE {
                    let base = l1_ipa & !(tried - 1);
                    if base >= start && base + tried <= end && (l1_ipa ^ pa) & (tried - 1) == 0 {
                        break;
                    }
                    tried >>= 1;
                }
                prop_assert_eq!(1u64 << largest_block_log2(l1_ipa, pa, start, end), tried);
            }
        }

        #[test]
        fn region_map_blocks_lie_inside_their_region(
            ipa_pages in 1u64..(1 << 20), size_pages in 1u64..(1 << 19),
            pa_pages in 0u64..(1 << 24), probe in 0u64..(1 << 19),
        ) {
            let ipa_base = ipa_pages << 12;
            let size = size_pages << 12;
            let pa_base = pa_pages << 12;
            let map = L0RegionMap::new(vec![L0Region { ipa_base, size, kind: L0RegionKind::Memory {
                pa_base, perms: ALL, mem_attr: MemAttr::NORMAL_WB, shareability: MemShareability::InnerShareable } }]).unwrap();
            let ipa = ipa_base + (probe << 12) % size + 0x10;
            let m = map.lookup(ipa).unwrap();
            prop_assert!(m.contains(ipa));
            prop_assert!(m.ipa_base() >= ipa_base && m.ipa_base() + m.size() <= ipa_base + size);
            prop_assert_eq!(m.pa_base() + (ipa - m.ipa_base()), pa_base + (ipa - ipa_base));
            // Maximal: the next size up would not fit or not be co-aligned.
            let up = m.size() * 2;
            if up <= BLOCK_1G {
                let b = ipa & !(up - 1);
                let pa = pa_base + (ipa - ipa_base);
                prop_assert!(b < ipa_base || b + up > ipa_base + size || (ipa ^ pa) & (up - 1) != 0);
            }
            prop_assert_eq!(map.lookup(ipa_base - 1), None);
            prop_assert_eq!(map.lookup(ipa_base + size), None);
        }
    }
}
