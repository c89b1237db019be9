//! The stage-2 walk: configuration decoding (AArch64.S2TTWParams and the
//! checks at the top of AArch64.S2Translate), the walk itself
//! (AArch64.S2Walk), output permissions (AArch64.S2ApplyOutputPerms,
//! AArch64.S2CheckPermissions) and hardware AF/dirty updates.

use core::fmt;

use crate::fault::{
    AccessKind, CacheMaintenance, DescriptorRead, Fault, FaultCause, NoTrail, Trail, TrailSink,
};
use crate::features::{ExposedFeatures, Granule, GranuleSupport, HardwareUpdates};
use crate::memory::{GuestMemory, MemoryError, SlotHint};
use crate::visit::LeafAttributes;

mod path_hint;
mod specialised;
mod specialised_batch;
pub use path_hint::PathHint;
use specialised::WalkKind;

/// Byte order of L1's stage-2 descriptors in memory (SCTLR_EL2.EE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endianness {
    /// SCTLR_EL2.EE = 0.
    Little,
    /// SCTLR_EL2.EE = 1.
    Big,
}

impl Endianness {
    /// From L1's SCTLR_EL2 value (EE is bit 25).
    pub const fn from_sctlr_el2(sctlr_el2: u64) -> Self {
        if sctlr_el2 & (1 << 25) != 0 {
            Endianness::Big
        } else {
            Endianness::Little
        }
    }

    /// A descriptor value from its raw memory representation.
    pub const fn descriptor_from_raw(self, raw: u64) -> u64 {
        match self {
            Endianness::Little => u64::from_le(raw),
            Endianness::Big => u64::from_be(raw),
        }
    }

    /// The raw memory representation of a descriptor value.
    pub const fn descriptor_to_raw(self, descriptor: u64) -> u64 {
        match self {
            Endianness::Little => descriptor.to_le(),
            Endianness::Big => descriptor.to_be(),
        }
    }
}

/// What L1 programmed for its stage 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage2Registers {
    /// L1's VTCR_EL2.
    pub vtcr: u64,
    /// L1's VTTBR_EL2.
    pub vttbr: u64,
    /// L1's SCTLR_EL2.EE.
    pub endianness: Endianness,
}

/// A request in a batched walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalkRequest {
    /// The IPA to translate.
    pub ipa: u64,
    /// The access being made.
    pub access: AccessKind,
}

/// Stage-2 access permissions (S2AP).
// The discriminants are the encodings, so that decoding is no jump table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum S2Ap {
    /// 0b00: no data access.
    None = 0,
    /// 0b01: read only.
    ReadOnly = 1,
    /// 0b10: write only.
    WriteOnly = 2,
    /// 0b11: read and write.
    ReadWrite = 3,
}

impl S2Ap {
    /// From the two S2AP bits.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => S2Ap::None,
            1 => S2Ap::ReadOnly,
            2 => S2Ap::WriteOnly,
            _ => S2Ap::ReadWrite,
        }
    }

    /// The two S2AP bits.
    pub const fn bits(self) -> u8 {
        match self {
            S2Ap::None => 0,
            S2Ap::ReadOnly => 1,
            S2Ap::WriteOnly => 2,
            S2Ap::ReadWrite => 3,
        }
    }

    /// Reads allowed.
    pub const fn readable(self) -> bool {
        self.bits() & 1 != 0
    }

    /// Writes allowed.
    pub const fn writable(self) -> bool {
        self.bits() & 2 != 0
    }
}

/// Stage-2 execute permission from XN\[1:0\] (FEAT_XNX semantics; without
/// FEAT_XNX exposed, XN\[0\] is ignored so only `Both` and `Neither` occur).
// The discriminants are the encodings, so that decoding is no jump table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Execute {
    /// XN = 0b00: EL0 and EL1 may execute.
    Both = 0,
    /// XN = 0b01: EL0 only.
    El0Only = 1,
    /// XN = 0b10: neither.
    Neither = 2,
    /// XN = 0b11: EL1 only.
    El1Only = 3,
}

impl Execute {
    /// From XN\[1:0\].
    pub const fn from_xn(xn: u8) -> Self {
        match xn & 3 {
            0 => Execute::Both,
            1 => Execute::El0Only,
            2 => Execute::Neither,
            _ => Execute::El1Only,
        }
    }

    /// XN\[1:0\].
    pub const fn xn(self) -> u8 {
        match self {
            Execute::Both => 0,
            Execute::El0Only => 1,
            Execute::Neither => 2,
            Execute::El1Only => 3,
        }
    }

    /// Whether EL1 may execute.
    pub const fn el1(self) -> bool {
        matches!(self, Execute::Both | Execute::El1Only)
    }

    /// Whether EL0 may execute.
    pub const fn el0(self) -> bool {
        matches!(self, Execute::Both | Execute::El0Only)
    }
}

/// Shareability of the output (descriptor SH\[1:0\], or VTCR_EL2.SH0 with DS=1).
// The discriminants are the encodings, so that decoding is no jump table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Shareability {
    /// 0b00.
    NonShareable = 0,
    /// 0b01: a reserved encoding, reported as found; what memory type it
    /// behaves as is for the consumer of the translation to decide.
    Reserved = 1,
    /// 0b10.
    OuterShareable = 2,
    /// 0b11.
    InnerShareable = 3,
}

impl Shareability {
    /// From SH\[1:0\].
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Shareability::NonShareable,
            1 => Shareability::Reserved,
            2 => Shareability::OuterShareable,
            _ => Shareability::InnerShareable,
        }
    }

    /// SH\[1:0\].
    pub const fn bits(self) -> u8 {
        match self {
            Shareability::NonShareable => 0,
            Shareability::Reserved => 1,
            Shareability::OuterShareable => 2,
            Shareability::InnerShareable => 3,
        }
    }
}

/// Hardware updates the walk made: to the leaf descriptor, and (FEAT_HAFT)
/// the number of table descriptors it set AF in (the trail holds those
/// with AF set, as written). Every one is a write to L1's memory, which
/// dirty logging of L1's tables must learn of, also from
/// [`Stage2Walker::translate_leaf`], which has no trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DescriptorUpdate {
    /// AF was set in the leaf (VTCR_EL2.HA).
    pub access_flag: bool,
    /// S2AP\[1\] was set on a write to a DBM descriptor (VTCR_EL2.HD).
    pub dirty: bool,
    /// Table descriptors the walk set AF in (FEAT_HAFT), including those of
    /// attempts restarted after a lost race (their writes stay). A fault
    /// does not report this count (see [`Fault::trail`] for a full walk).
    pub table_access_flags: u8,
}

impl DescriptorUpdate {
    /// Whether the leaf descriptor was written.
    pub const fn leaf_updated(&self) -> bool {
        self.access_flag || self.dirty
    }
}

/// A successful stage-2 translation: what a TLB may hold.
///
/// The block is the architectural one (TranslationSize). It can be larger
/// than the output size (a 512 GiB level-0 block with DS and VTCR_EL2.PS
/// 32 bits, a 4 TiB 64KB level-1 block with PS 36 bits): then only the
/// IPAs whose output address is within the output size translate, the
/// others take an Address size fault at the leaf's level. A reuse of the
/// result for another IPA of the block must re-check that IPA's output
/// address against [`Stage2Walker::output_size_bits`], as AArch64.S2Walk's
/// TLB-hit path re-checks `AArch64.OAOutOfRange`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The IPA translated.
    pub ipa: u64,
    /// The full output address of `ipa` (StageOA).
    pub output_address: u64,
    /// Level of the leaf descriptor (0..=3).
    pub level: i8,
    /// Size of the block or page the leaf maps, in bytes (possibly larger
    /// than the output size: see [`Translation`]).
    pub block_size: u64,
    /// Size of the contiguous range when the leaf has the contiguous hint
    /// (the output address already takes the hint into account, as StageOA
    /// does), else `block_size`.
    pub contiguous_size: u64,
    /// S2AP of the leaf descriptor in memory (after any dirty update).
    /// With [`Translation::dirty_bit_modifier`] and hardware dirty state a
    /// later write would still succeed, setting S2AP\[1\] first: a shadow
    /// mapping must stay read-only to see that write.
    pub s2ap: S2Ap,
    /// Execute permission (XN\[1:0\]).
    pub execute: Execute,
    /// The descriptor's DBM bit (51).
    pub dirty_bit_modifier: bool,
    /// MemAttr\[3:0\] (descriptor bits 5:2; HCR_EL2.FWB = 0 encoding).
    pub mem_attr: u8,
    /// Shareability.
    pub shareability: Shareability,
    /// The leaf descriptor value after any hardware update.
    pub descriptor: u64,
    /// Hardware updates made by this walk.
    pub update: DescriptorUpdate,
    /// Every descriptor read, start level first (the leaf as read, before
    /// its update; a table descriptor the walk set AF in (FEAT_HAFT) as
    /// written).
    pub trail: Trail,
}

impl Translation {
    /// Output address of the start of the block/page.
    pub const fn output_block_base(&self) -> u64 {
        self.output_address & !(self.block_size - 1)
    }

    /// IPA of the start of the block/page.
    pub const fn ipa_block_base(&self) -> u64 {
        self.ipa & !(self.block_size - 1)
    }

    /// L1 IPA of the leaf descriptor.
    pub fn leaf_address(&self) -> u64 {
        self.trail.as_slice().last().map_or(0, |r| r.address)
    }
}

/// What [`Stage2Walker::translate_leaf`] returns: the leaf of a successful
/// walk in 32 bytes, for callers that need no descriptor trail. Every
/// value is the one the full [`Translation`] has
/// ([`LeafTranslation::from`] a `Translation` gives it exactly), and so is
/// the caveat: the block may extend beyond the output size, and a reuse
/// for another IPA must re-check that IPA's output address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeafTranslation {
    /// The full output address of the IPA (StageOA).
    pub output_address: u64,
    /// The leaf descriptor value after any hardware update.
    pub descriptor: u64,
    /// Level of the leaf descriptor (0..=3).
    pub level: i8,
    /// log2 of the size of the block or page the leaf maps.
    pub block_bits: u8,
    /// log2 of the contiguous range's size (`block_bits` without the hint).
    pub contiguous_bits: u8,
    /// S2AP of the leaf descriptor in memory (see [`Translation::s2ap`]).
    pub s2ap: S2Ap,
    /// Execute permission (XN\[1:0\]).
    pub execute: Execute,
    /// Shareability.
    pub shareability: Shareability,
    /// Hardware updates made by this walk.
    pub update: DescriptorUpdate,
}

impl LeafTranslation {
    /// Size of the block or page, in bytes.
    pub const fn block_size(&self) -> u64 {
        1 << self.block_bits
    }

    /// Size of the contiguous range, in bytes (`block_size` without the hint).
    pub const fn contiguous_size(&self) -> u64 {
        1 << self.contiguous_bits
    }

    /// Output address of the start of the block/page.
    pub const fn output_block_base(&self) -> u64 {
        self.output_address & !(self.block_size() - 1)
    }

    /// MemAttr\[3:0\] (descriptor bits 5:2; HCR_EL2.FWB = 0 encoding).
    pub const fn mem_attr(&self) -> u8 {
        ((self.descriptor >> 2) & 0xf) as u8
    }

    /// The descriptor's DBM bit (51).
    pub const fn dirty_bit_modifier(&self) -> bool {
        self.descriptor & (1 << 51) != 0
    }
}

impl From<&Translation> for LeafTranslation {
    fn from(t: &Translation) -> Self {
        LeafTranslation {
            output_address: t.output_address,
            descriptor: t.descriptor,
            level: t.level,
            block_bits: t.block_size.trailing_zeros() as u8,
            contiguous_bits: t.contiguous_size.trailing_zeros() as u8,
            s2ap: t.s2ap,
            execute: t.execute,
            shareability: t.shareability,
            update: t.update,
        }
    }
}

/// Why a walk produced no translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// An architectural stage-2 fault, to be injected into L1.
    Fault(Fault),
    /// Another agent kept changing the leaf descriptor while the walk tried
    /// to update it ([`MAX_UPDATE_ATTEMPTS`] compare-and-swaps lost). Not a
    /// fault: nothing is injected; let L2 retry the access.
    Contended {
        /// The IPA being translated.
        ipa: u64,
        /// L1 IPA of the descriptor being updated.
        descriptor_address: u64,
    },
    /// The host (L0) maps a descriptor's address for L1 but denies the
    /// walk's access to it ([`MemoryError::HostDenied`]): L0's own
    /// stage-2 permission fault on L1's table, not L1's. Not a fault:
    /// nothing is injected into L1; the host resolves its own fault
    /// (restores the permission, logs the page dirty) and the access is
    /// retried.
    HostDenied(HostDenial),
    /// The host (L0) is in the middle of changing its own mapping of the
    /// page holding a descriptor (a break-before-make: its old entry
    /// invalid, the new one not yet written; [`MemoryError::HostChanging`]):
    /// by the Arm ARM's two-stage model a hardware walk would take L0's
    /// stage-2 translation fault there, which L0 resolves by waiting for
    /// its change to end. Not a fault: nothing is injected into L1 and
    /// nothing read is kept; the access is retried once the change ends.
    HostChanging(HostChange),
}

/// A walk stopped by the host's denial of one of its descriptor
/// accesses ([`WalkError::HostDenied`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostDenial {
    /// The IPA being translated.
    pub ipa: u64,
    /// The access the walk was made for.
    pub access: AccessKind,
    /// L1 IPA of the descriptor the host denied the walk.
    pub descriptor_address: u64,
    /// The level of that descriptor.
    pub level: i8,
    /// What the walk was denied: reading the descriptor, or writing it.
    pub denied: DescriptorAccess,
}

/// A walk stopped because the host was changing its mapping of a
/// descriptor's page ([`WalkError::HostChanging`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostChange {
    /// The IPA being translated.
    pub ipa: u64,
    /// The access the walk was made for.
    pub access: AccessKind,
    /// L1 IPA of the descriptor whose page the host was changing.
    pub descriptor_address: u64,
    /// The level of that descriptor.
    pub level: i8,
    /// What the walk was doing to it: reading it, or writing it.
    pub during: DescriptorAccess,
}

/// A walk's own access to a descriptor of L1's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorAccess {
    /// Reading it.
    Read,
    /// The hardware update (AF, dirty state, FEAT_HAFT table AF): a
    /// compare-and-swap, which needs write permission (and read).
    Update,
}

impl WalkError {
    /// The fault, if this is one.
    pub const fn fault(&self) -> Option<&Fault> {
        match self {
            WalkError::Fault(f) => Some(f),
            WalkError::Contended { .. } | WalkError::HostDenied(_) | WalkError::HostChanging(_) => {
                None
            }
        }
    }
}

/// Which of the host's own answers stopped a walk ([`HostStop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostAnswer {
    /// [`MemoryError::HostDenied`].
    Denied,
    /// [`MemoryError::HostChanging`].
    Changing,
}

/// Where the host's own answer (its denial, or its mapping mid-change)
/// stopped a walk, before the walk's IPA and access are added
/// ([`Descent::Host`], [`Finish::Host`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostStop {
    pub(crate) address: u64,
    pub(crate) level: i8,
    pub(crate) during: DescriptorAccess,
    pub(crate) answer: HostAnswer,
}

impl HostStop {
    /// The walk error of `ipa`'s walk for `access` stopped here.
    pub(crate) const fn error(self, ipa: u64, access: AccessKind) -> WalkError {
        match self.answer {
            HostAnswer::Denied => WalkError::HostDenied(HostDenial {
                ipa,
                access,
                descriptor_address: self.address,
                level: self.level,
                denied: self.during,
            }),
            HostAnswer::Changing => WalkError::HostChanging(HostChange {
                ipa,
                access,
                descriptor_address: self.address,
                level: self.level,
                during: self.during,
            }),
        }
    }
}

/// What a descriptor access memory refused means for the walk: the
/// host's own answer (its denial, its mapping mid-change), or the
/// architectural external abort on the walk (outside every memslot for a
/// read, the update refused for a compare-and-swap). Out of line: only
/// the failing walk pays for it.
#[cold]
#[inline(never)]
pub(crate) fn refused_access(
    error: MemoryError,
    address: u64,
    level: i8,
    during: DescriptorAccess,
) -> Result<Stop, HostStop> {
    let host = |answer| {
        Err(HostStop {
            address,
            level,
            during,
            answer,
        })
    };
    match error {
        MemoryError::HostDenied => host(HostAnswer::Denied),
        MemoryError::HostChanging => host(HostAnswer::Changing),
        _ => Ok(Stop {
            cause: match during {
                DescriptorAccess::Read => FaultCause::DescriptorOutsideMemslots { address },
                DescriptorAccess::Update => FaultCause::UpdateRefused { address },
            },
            level,
        }),
    }
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Fault(fault) => fault.fmt(f),
            WalkError::Contended {
                ipa,
                descriptor_address,
            } => write!(
                f,
                "IPA {ipa:#x}: descriptor at {descriptor_address:#x} kept changing during its update"
            ),
            WalkError::HostDenied(d) => write!(
                f,
                "IPA {:#x}: the host denies the walk's {} of the level-{} descriptor at {:#x}",
                d.ipa,
                match d.denied {
                    DescriptorAccess::Read => "read",
                    DescriptorAccess::Update => "update",
                },
                d.level,
                d.descriptor_address
            ),
            WalkError::HostChanging(c) => write!(
                f,
                "IPA {:#x}: the host was changing its mapping of the level-{} descriptor at {:#x} during the walk's {}",
                c.ipa,
                c.level,
                c.descriptor_address,
                match c.during {
                    DescriptorAccess::Read => "read",
                    DescriptorAccess::Update => "update",
                },
            ),
        }
    }
}

impl From<Fault> for WalkError {
    fn from(fault: Fault) -> Self {
        WalkError::Fault(fault)
    }
}

/// A batched walk was given result storage of the wrong length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLengthMismatch {
    /// Number of requests.
    pub requests: usize,
    /// Number of result slots.
    pub results: usize,
}

impl fmt::Display for BatchLengthMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} walk requests but {} result slots",
            self.requests, self.results
        )
    }
}

/// The access flag (AF), descriptor bit 10.
const ACCESS_FLAG: u64 = 1 << 10;

/// How many times a walk restarts after losing a compare-and-swap race
/// on its leaf descriptor before giving up with [`WalkError::Contended`].
pub const MAX_UPDATE_ATTEMPTS: usize = 16;

/// Start level, input size and start table, once the configuration checks pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    start_level: i8,
    /// The highest IPA in range, `2^ia_bits - 1` (one compare per walk).
    ipa_max: u64,
    table_base: u64,
    /// Lowest IPA bit the start level resolves: an IPA in range shifted
    /// right by it is its start-table index (up to 16 concatenated
    /// tables' worth), with no mask needed.
    start_shift: u32,
}

/// A decoded stage-2 configuration, ready to walk. Construction never fails:
/// a bad configuration L1 programmed becomes the architectural fault on
/// every walk (see [`Stage2Walker::configuration_fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Walker {
    registers: Stage2Registers,
    granule: Granule,
    /// Effective VTCR_EL2.DS (FEAT_LPA2 52-bit format).
    ds: bool,
    /// Where the output address bits sit in descriptors, decoded once
    /// into masks so that a descriptor's address is the same three
    /// operations in every format (no branch on the format per level).
    address_bits: AddressBits,
    /// Decoded once: the index mask of a full table.
    stride_mask: u64,
    ha: bool,
    hd: bool,
    /// FEAT_HAFT in effect: AF in table descriptors is set by hardware.
    haft: bool,
    /// [`ACCESS_FLAG`] with FEAT_HAFT in effect, else 0: a table
    /// descriptor needs an AF update if its AF is clear in here.
    table_access_flag_update: u64,
    xnx: bool,
    sh0: u8,
    oa_bits: u32,
    /// The highest output address, `2^oa_bits - 1`: an address is out of
    /// range above it (one compare, where a shift by `oa_bits` needs
    /// several instructions on x86).
    oa_max: u64,
    t0sz: u8,
    setup: Result<Geometry, FaultCause>,
    /// Per level, at [`level_slot`]: the lowest IPA bit the level resolves
    /// (AArch64.S2Walk's per-level shift), decoded once.
    level_lsbs: [u8; 8],
    /// Per level, at [`level_slot`]: log2 of the entries a contiguous hint
    /// spans (AArch64.ContiguousSize), 0 where bit 52 is RES0.
    contiguous_log2s: [u8; 8],
    /// Bit [`level_slot`] set where a block descriptor is permitted.
    block_levels: u8,
    /// The single walk this configuration takes (see `walk/specialised.rs`).
    walk_kind: WalkKind,
}

/// Index of `level` (-1..=3) in the walker's per-level tables. The mask
/// keeps any i8 inside the 8-entry tables (no bounds check on the hot path);
/// levels outside -1..=3 never occur.
#[inline]
const fn level_slot(level: i8) -> usize {
    ((level as isize + 1) & 7) as usize
}

/// Bits below `bits`, for `bits` < 64 (every block and level shift is).
#[inline]
const fn low_mask(bits: u32) -> u64 {
    (1u64 << (bits & 63)).wrapping_sub(1)
}

/// Where a configuration keeps the output address in descriptors: the
/// bits in place (`in_place`: 47:0, or 49:0 with DS) and OA\[51:48\] or
/// OA\[51:50\] moved elsewhere, which `descriptor << moved_shift` puts in
/// place and `moved` selects. A descriptor's full address (its table or
/// block base once the bits below the granule or block are cleared) is
/// `(descriptor & in_place) | ((descriptor << moved_shift) & moved)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct AddressBits {
    in_place: u64,
    /// `in_place` without the bits below the granule: a table address.
    table: u64,
    moved_shift: u32,
    moved: u64,
}

impl AddressBits {
    const fn new(granule: Granule, ds: bool, pa_max: u32) -> Self {
        let (in_place, moved_shift, moved) = if matches!(granule, Granule::K64) && pa_max >= 52 {
            // 64KB granule with PAMax >= 52 (FEAT_LPA): OA[51:48] in
            // bits 15:12.
            (mask(48), 36, 0xf << 48)
        } else if ds {
            // DS = 1 (FEAT_LPA2): OA[49:48] in place, OA[51:50] in bits 9:8.
            (mask(50), 42, 3 << 50)
        } else {
            // 48-bit output addresses.
            (mask(48), 0, 0)
        };
        AddressBits {
            in_place,
            table: in_place & !mask(granule.bits()),
            moved_shift,
            moved,
        }
    }
}

const fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Why a walk stopped, kept small on the hot path; the full [`Fault`]
/// (with the trail) is built once, from the cursor, at the API boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stop {
    pub(crate) cause: FaultCause,
    pub(crate) level: i8,
}

/// What one descriptor read means for a batched walk
/// ([`Stage2Walker::advance`]).
pub(crate) enum Step {
    /// A table descriptor: read the descriptor at this address next.
    Continue(u64),
    /// The descriptor is the walk's leaf.
    Leaf,
    /// The walk faulted.
    Stop(Stop),
    /// FEAT_HAFT: the table descriptor just read has AF clear and must
    /// have it set, by compare-and-swap, before the walk goes on (a batch
    /// walks such a request singly).
    TableAccessFlag,
}

/// What one descriptor means for a walk ([`Stage2Walker::decode`]).
enum Decoded {
    /// A table descriptor: read `next` at the next level, after setting
    /// AF in this one (FEAT_HAFT) if `set_access_flag`.
    Table { next: u64, set_access_flag: bool },
    /// The walk's leaf.
    Leaf,
    /// A fault at this descriptor's level.
    Stop(FaultCause),
}

/// How a single walk's descent through the levels ended.
enum Descent {
    /// At a leaf descriptor with this value.
    Leaf(u64),
    /// Faulted.
    Stop(Stop),
    /// A table descriptor's AF update lost a race: the walk restarts.
    Lost { descriptor_address: u64 },
    /// The host denied a read or a table AF update, or was changing
    /// its mapping of the descriptor's page.
    Host(HostStop),
}

/// A walk in progress: where the next descriptor read goes. The
/// descriptors read so far are kept apart (a [`Trail`], or [`NoTrail`]
/// for a lean walk; per round for a batch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    pub(crate) ipa: u64,
    pub(crate) access: AccessKind,
    pub(crate) level: i8,
    pub(crate) address: u64,
    /// Table descriptors this walk set AF in so far (FEAT_HAFT).
    pub(crate) table_access_flags: u8,
}

impl Cursor {
    pub(crate) const fn new(ipa: u64, access: AccessKind) -> Self {
        Cursor {
            ipa,
            access,
            level: 0,
            address: 0,
            table_access_flags: 0,
        }
    }
}

/// A single walk's result for `stop`, the walk of `ipa` for `access`
/// having read `trail`. Out of line and cold, writing the whole result
/// itself, and given copies of the cursor's fields rather than a
/// reference: inlined, or given a reference into the cursor (which then
/// had to live in memory rather than in registers), it made the success
/// path of every walk slower.
#[cold]
#[inline(never)]
fn failed<T: TrailSink, R>(
    ipa: u64,
    access: AccessKind,
    trail: T,
    stop: Stop,
) -> Result<R, WalkError> {
    Err(WalkError::Fault(Fault {
        cause: stop.cause,
        level: stop.level,
        ipa,
        access,
        trail: trail.to_trail(),
    }))
}

/// The outcome of the leaf checks, ready for a hardware update.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Leaf {
    descriptor: u64,
    /// The descriptor after the hardware update the walk must make.
    new_descriptor: u64,
    output_address: u64,
    block_bits: u32,
    contiguous_bits: u32,
    execute: Execute,
    /// SH\[1:0\] of the result (the descriptor's, or VTCR_EL2.SH0 with DS).
    shareability: u8,
}

/// What the leaf checks depend on besides the descriptor: the level's
/// block size and contiguous span, where the output address sits, and
/// the hardware updates and format in effect.
#[derive(Clone, Copy, Debug)]
struct LeafRules {
    block_bits: u32,
    /// log2 of the entries a contiguous hint spans here (0: bit 52 RES0).
    contiguous_log2: u32,
    address_bits: AddressBits,
    ha: bool,
    hd: bool,
    ds: bool,
}

/// What trying to finish a walk (update included) gave.
pub(crate) enum Finish {
    Done(Result<Leaf, Stop>),
    /// The compare-and-swap lost a race: the walk must restart.
    Lost {
        descriptor_address: u64,
    },
    /// The host denied the update, or was changing its mapping of the
    /// descriptor's page.
    Host(HostStop),
}

/// Every VTCR_EL2 bit [`Stage2Walker::new`] reads: T0SZ \[5:0\], SL0
/// \[7:6\], SH0 \[13:12\], TG0 \[15:14\], PS \[18:16\], HA (21), HD (22),
/// DS (32), SL2 (33), HAFT (44). Flipping any other bit gives the same
/// walker (unit-tested), so a cache keyed by the VTCR masked to these bits
/// (shadow-mmu's context key) never shares results between walks that
/// differ. A field the walker starts to read must be added here.
pub const VTCR_WALK_FIELDS: u64 = 0x3f
    | (0x3 << 6)
    | (0x3 << 12)
    | (0x3 << 14)
    | (0x7 << 16)
    | (1 << 21)
    | (1 << 22)
    | (1 << 32)
    | (1 << 33)
    | (1 << 44);

impl Stage2Walker {
    /// Decode L1's stage-2 registers against the features L0 exposes.
    pub fn new(registers: Stage2Registers, features: &ExposedFeatures) -> Self {
        let vtcr = registers.vtcr;
        let granule = decode_granule(((vtcr >> 14) & 3) as u8, features);
        let granule_52 = features.stage2_granule(granule) == GranuleSupport::Supported52Bit;
        let ds = effective_ds(vtcr, granule, granule_52);
        let sl2 = granule == Granule::K4 && ds && vtcr & (1 << 33) != 0;
        let ha =
            features.hardware_updates() >= HardwareUpdates::AccessFlag && vtcr & (1 << 21) != 0;
        let hd = ha
            && features.hardware_updates() >= HardwareUpdates::AccessFlagAndDirty
            && vtcr & (1 << 22) != 0;
        // AArch64.GetS2TTWParams: walkparams.haft = VTCR_EL2.HAFT (bit 44)
        // with FEAT_HAFT, and only where walkparams.ha is set.
        let haft = ha
            && features.hardware_updates() >= HardwareUpdates::AccessFlagDirtyAndTables
            && vtcr & (1 << 44) != 0;
        let pa_max = features.pa_max_bits();
        let ps = ((vtcr >> 16) & 7) as u8;
        // AArch64.PhysicalAddressSize: VTCR.PS limited by the exposed PAMax
        // and by 48 bits unless the granule can express 52-bit addresses.
        let ps_bits = match ps {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            6 => 52,
            _ => 56,
        };
        let max_ps = if features.lpa() && (granule == Granule::K64 || granule_52) {
            pa_max.min(52)
        } else {
            pa_max.min(48)
        };
        let oa_bits = ps_bits.min(max_ps);
        let t0sz = (vtcr & 0x3f) as u8;
        let sl0 = ((vtcr >> 6) & 3) as u8;
        let setup = geometry(GeometryInputs {
            granule,
            ds,
            sl0,
            sl2,
            t0sz,
            pa_max,
            ttst: features.ttst(),
            ps,
            lpa: features.lpa(),
            vttbr: registers.vttbr,
        });
        // The per-level tables are the granule's, worked out at compile
        // time; only the block levels depend on more (DS, PAMax).
        let tables = match granule {
            Granule::K4 => &GRANULE_TABLES[0],
            Granule::K16 => &GRANULE_TABLES[1],
            Granule::K64 => &GRANULE_TABLES[2],
        };
        let optional_block_level = if granule == Granule::K64 {
            pa_max >= 52
        } else {
            ds
        };
        let block_levels = tables.block_levels
            | if optional_block_level {
                tables.optional_block_levels
            } else {
                0
            };
        let (level_lsbs, contiguous_log2s) = (tables.level_lsbs, tables.contiguous_log2s);
        let walk_kind = WalkKind::choose(granule, ds, ha, registers.endianness, sl0, pa_max);
        Stage2Walker {
            walk_kind,
            level_lsbs,
            contiguous_log2s,
            block_levels,
            registers,
            granule,
            ds,
            address_bits: AddressBits::new(granule, ds, pa_max),
            stride_mask: mask(granule.stride()),
            ha,
            hd,
            haft,
            table_access_flag_update: if haft { ACCESS_FLAG } else { 0 },
            xnx: features.xnx(),
            sh0: ((vtcr >> 12) & 3) as u8,
            oa_bits,
            oa_max: mask(oa_bits),
            t0sz,
            setup,
        }
    }

    /// The registers this walker was built from.
    pub const fn registers(&self) -> Stage2Registers {
        self.registers
    }

    /// The granule in effect (after the choice for a reserved or
    /// unsupported VTCR_EL2.TG0, see the crate docs).
    pub const fn granule(&self) -> Granule {
        self.granule
    }

    /// The start level, or `None` if the configuration faults.
    pub fn start_level(&self) -> Option<i8> {
        self.setup.ok().map(|g| g.start_level)
    }

    /// Input (IPA) size in bits, 64 - VTCR_EL2.T0SZ.
    pub const fn input_size_bits(&self) -> u32 {
        64 - self.t0sz as u32
    }

    /// Output size in bits: min(VTCR_EL2.PS, PAMax, granule/LPA limits).
    pub const fn output_size_bits(&self) -> u32 {
        self.oa_bits
    }

    /// Base address of the start-level table (from VTTBR_EL2.BADDR,
    /// aligned as AArch64.S2TTBaseAddress does), or `None` if the
    /// configuration faults.
    pub fn table_base(&self) -> Option<u64> {
        self.setup.ok().map(|g| g.table_base)
    }

    /// The translation fault (at level 0) every walk reports because of the
    /// configuration itself, if any.
    pub fn configuration_fault(&self) -> Option<FaultCause> {
        self.setup.err()
    }

    /// Effective FEAT_LPA2 52-bit format (VTCR_EL2.DS).
    pub const fn lpa2(&self) -> bool {
        self.ds
    }

    /// VTCR_EL2.DS as a walker of `vtcr` takes it, without the rest of the
    /// decoding (for TLBI operands, whose BaseADDR units follow it): RES0,
    /// read as 0, unless the granule TG0 selects shows FEAT_LPA2 at stage 2
    /// (not from another granule's field, nor from stage 1's).
    pub fn vtcr_ds(vtcr: u64, features: &ExposedFeatures) -> bool {
        let granule = decode_granule(((vtcr >> 14) & 3) as u8, features);
        effective_ds(
            vtcr,
            granule,
            features.stage2_granule(granule) == GranuleSupport::Supported52Bit,
        )
    }

    /// Hardware access flag management in effect.
    pub const fn hardware_access_flag(&self) -> bool {
        self.ha
    }

    /// Hardware dirty state management in effect.
    pub const fn hardware_dirty_state(&self) -> bool {
        self.hd
    }

    /// Hardware access flag management for table descriptors in effect
    /// (FEAT_HAFT: VTCR_EL2.HAFT with VTCR_EL2.HA, HAFDBS = 3 exposed).
    pub const fn hardware_table_access_flag(&self) -> bool {
        self.haft
    }

    /// Translate one IPA.
    #[inline(always)]
    pub fn walk<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
    ) -> Result<Translation, WalkError> {
        self.walk_hinted(memory, ipa, access, &mut SlotHint::default())
    }

    /// [`Stage2Walker::walk`] with a memslot hint the caller keeps between
    /// walks (per vCPU, say, as KVM keeps `last_used_slot`): the first read
    /// tries where the previous walk's last read was found before
    /// searching. Same result as `walk`; the hint only saves lookups.
    #[inline(always)]
    pub fn walk_hinted<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut SlotHint,
    ) -> Result<Translation, WalkError> {
        let done =
            |cursor: &Cursor, trail: &Trail, leaf: &Leaf| self.translation_of(cursor, *trail, leaf);
        self.run_kind::<M, Trail, _>(memory, ipa, access, hint, done)
    }

    /// Translate one IPA for a caller that needs only the leaf: the same
    /// walk as [`Stage2Walker::walk`] (same reads, checks, hardware
    /// updates and faults) without recording the descriptor trail, and a
    /// 32-byte [`LeafTranslation`] instead of a [`Translation`]. A fault is
    /// exactly the one `walk` reports except that its
    /// [`trail`](Fault::trail) is empty.
    #[inline(always)]
    pub fn translate_leaf<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
    ) -> Result<LeafTranslation, WalkError> {
        self.translate_leaf_hinted(memory, ipa, access, &mut SlotHint::default())
    }

    /// [`Stage2Walker::translate_leaf`] with a memslot hint kept between
    /// walks, as [`Stage2Walker::walk_hinted`].
    #[inline(always)]
    pub fn translate_leaf_hinted<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut SlotHint,
    ) -> Result<LeafTranslation, WalkError> {
        let done = |cursor: &Cursor, _: &NoTrail, leaf: &Leaf| self.leaf_translation(cursor, leaf);
        self.run_kind::<M, NoTrail, _>(memory, ipa, access, hint, done)
    }

    /// [`Stage2Walker::walk_hinted`] with a [`PathHint`] the caller keeps
    /// between walks (per vCPU): where the hint predicts this walk's
    /// tables (an IPA near the previous one: 4KB, the same 2 MiB for all
    /// four levels), every level's descriptor is read at once instead of
    /// one after another. The same result as [`Stage2Walker::walk`] for
    /// every hint (`walk/path_hint.rs` says why); the walk updates the
    /// hint for the next one. Configurations the specialised walk does
    /// not cover take the general walk.
    #[inline(always)]
    pub fn walk_path_hinted<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut PathHint,
    ) -> Result<Translation, WalkError> {
        let done =
            |cursor: &Cursor, trail: &Trail, leaf: &Leaf| self.translation_of(cursor, *trail, leaf);
        self.run_kind_path::<M, Trail, _>(memory, ipa, access, hint, done)
    }

    /// [`Stage2Walker::translate_leaf`] with a [`PathHint`], as
    /// [`Stage2Walker::walk_path_hinted`].
    #[inline(always)]
    pub fn translate_leaf_path_hinted<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut PathHint,
    ) -> Result<LeafTranslation, WalkError> {
        let done = |cursor: &Cursor, _: &NoTrail, leaf: &Leaf| self.leaf_translation(cursor, leaf);
        self.run_kind_path::<M, NoTrail, _>(memory, ipa, access, hint, done)
    }

    /// Whether this walker's single walks take the walk specialised for
    /// its configuration (DS = 0, VTCR_EL2.HA = 0, little-endian
    /// descriptors, start level 0 or 1 with 4KB, 1 to 3 with 16KB and
    /// 64KB) rather than the general one. The results are the same; for
    /// tests (`tests/properties.rs`, loom-tests' `walker_memslots`).
    #[doc(hidden)]
    pub const fn takes_specialised_walk(&self) -> bool {
        !matches!(self.walk_kind, WalkKind::General)
    }

    /// This walker with its single walks forced onto the general walk:
    /// for tests that compare the specialised walk with it (no benchmark
    /// uses it: the general walk was timed on 16KB/64KB configurations and
    /// on a build whose dispatch always took it). Not part of the API
    /// proper.
    #[doc(hidden)]
    pub const fn with_general_walk(mut self) -> Self {
        self.walk_kind = WalkKind::General;
        self
    }

    /// The single walk every entry point shares (AArch64.S2Translate's
    /// `repeat ... until` around the walk and the update): `T` decides
    /// what is recorded of the reads, `done` what a success returns. The
    /// trail is kept apart from the cursor: a cursor holding it (an array
    /// indexed by the read count) stayed in memory, with every field the
    /// walk reads on every level.
    #[inline(always)]
    fn run<M: GuestMemory + ?Sized, T: TrailSink, R>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut SlotHint,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        let mut lost_at = 0;
        // Table AF updates of attempts that lost a race were made all the
        // same: the count carries over to the restarted walk.
        let mut table_access_flags = 0;
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let mut cursor = Cursor::new(ipa, access);
            let mut trail = T::EMPTY;
            cursor.table_access_flags = table_access_flags;
            if let Err(stop) = self.begin(&mut cursor) {
                return failed(ipa, access, trail, stop);
            }
            let descriptor = match self.descend(memory, &mut cursor, &mut trail, hint) {
                Descent::Leaf(descriptor) => descriptor,
                Descent::Stop(stop) => return failed(ipa, access, trail, stop),
                Descent::Host(stop) => return Err(stop.error(ipa, access)),
                Descent::Lost { descriptor_address } => {
                    lost_at = descriptor_address;
                    table_access_flags = cursor.table_access_flags;
                    continue;
                }
            };
            match self.finish(memory, &cursor, descriptor) {
                Finish::Done(Ok(leaf)) => return Ok(done(&cursor, &trail, &leaf)),
                Finish::Done(Err(stop)) => return failed(ipa, access, trail, stop),
                Finish::Host(stop) => return Err(stop.error(ipa, access)),
                Finish::Lost { descriptor_address } => {
                    lost_at = descriptor_address;
                    table_access_flags = cursor.table_access_flags;
                }
            }
        }
        Err(WalkError::Contended {
            ipa,
            descriptor_address: lost_at,
        })
    }

    /// Read descriptors one at a time until a leaf or a fault.
    #[inline]
    fn descend<M: GuestMemory + ?Sized, T: TrailSink>(
        &self,
        memory: &M,
        cursor: &mut Cursor,
        trail: &mut T,
        hint: &mut SlotHint,
    ) -> Descent {
        // One copy of the loop per byte order, each with its order fixed:
        // the byte swap (or not) is then no select on the chain of
        // dependent reads.
        match self.registers.endianness {
            Endianness::Little => self.descend_in(memory, cursor, trail, hint, Endianness::Little),
            Endianness::Big => self.descend_in(memory, cursor, trail, hint, Endianness::Big),
        }
    }

    /// The descent for one byte order: the walk's address and level kept
    /// in locals (registers) across levels, the cursor written once at
    /// the end; the FEAT_HAFT table update out of line.
    #[inline(always)]
    fn descend_in<M: GuestMemory + ?Sized, T: TrailSink>(
        &self,
        memory: &M,
        cursor: &mut Cursor,
        trail: &mut T,
        hint: &mut SlotHint,
        endianness: Endianness,
    ) -> Descent {
        let ipa = cursor.ipa;
        let mut address = cursor.address;
        let mut level = cursor.level;
        // The next level's index shift, one stride less at every level
        // down (wrapping below 0 after level 3, where it is not used).
        let stride = self.level_lsb(2) - self.level_lsb(3);
        let mut next_lsb = self.level_lsb(level + 1);
        // Unreachable by construction (levels only increase, up to 3, so
        // the walk ends within MAX_TRAIL reads); kept as a fault rather
        // than a panic.
        let mut outcome = Descent::Stop(Stop {
            cause: FaultCause::InvalidDescriptor,
            level,
        });
        // A walk's tables are usually in one memslot: each read tries
        // the largest slot, then where the previous one was found.
        // The trail is empty here (each attempt starts a new one), so
        // `reads` counts what it holds.
        for reads in 0..crate::fault::MAX_TRAIL {
            let raw = match memory.read_descriptor_hinted(address, hint) {
                Ok(raw) => raw,
                Err(error) => {
                    outcome = match refused_access(error, address, level, DescriptorAccess::Read) {
                        Ok(stop) => Descent::Stop(stop),
                        Err(host) => Descent::Host(host),
                    };
                    break;
                }
            };
            let descriptor = endianness.descriptor_from_raw(raw);
            trail.record_at(
                reads,
                DescriptorRead {
                    address,
                    value: descriptor,
                    level,
                },
            );
            match self.decode(ipa, level, descriptor, next_lsb) {
                Decoded::Table {
                    next,
                    set_access_flag,
                } => {
                    if set_access_flag {
                        match self
                            .set_table_access_flag(memory, address, descriptor, level, endianness)
                        {
                            // AArch64.S2Walk goes on with the descriptor
                            // it wrote (AF set): the trail records that,
                            // so a path cached from it matches memory
                            // and, as a TLB may hold only table
                            // descriptors with AF set (FEAT_HAFT), is one
                            // a TLB could hold.
                            Ok(()) => {
                                trail.rewrite_last(descriptor | ACCESS_FLAG);
                                cursor.table_access_flags =
                                    cursor.table_access_flags.saturating_add(1);
                            }
                            Err(stopped) => {
                                outcome = stopped;
                                break;
                            }
                        }
                    }
                    address = next;
                    level += 1;
                    next_lsb = next_lsb.wrapping_sub(stride);
                }
                Decoded::Leaf => {
                    outcome = Descent::Leaf(descriptor);
                    break;
                }
                Decoded::Stop(cause) => {
                    outcome = Descent::Stop(Stop { cause, level });
                    break;
                }
            }
        }
        cursor.address = address;
        cursor.level = level;
        outcome
    }

    /// FEAT_HAFT: set AF in the table descriptor `descriptor` just read at
    /// `address`, `level`, by compare-and-swap. Out of line (L1's tables
    /// have AF set once any walk went through them) and given no reference
    /// into the walk's cursor, which would then live in memory on every
    /// walk: the caller records the update.
    #[cold]
    #[inline(never)]
    fn set_table_access_flag<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        address: u64,
        descriptor: u64,
        level: i8,
        endianness: Endianness,
    ) -> Result<(), Descent> {
        let current = endianness.descriptor_to_raw(descriptor);
        let new = endianness.descriptor_to_raw(descriptor | ACCESS_FLAG);
        match memory.compare_exchange_descriptor(address, current, new) {
            Ok(Ok(_)) => Ok(()),
            // AArch64.S2Walk decodes the value it found again; restarting
            // the walk (bounded, as for the leaf) does that and re-reads
            // the levels above, which only makes it a walk made a little
            // later.
            Ok(Err(_)) => Err(Descent::Lost {
                descriptor_address: address,
            }),
            // AArch64.MemSwapTableDesc: a refused write is a synchronous
            // external abort on the walk, at the level of the descriptor
            // being updated; the host's denial is the host's to resolve.
            Err(error) => Err(
                match refused_access(error, address, level, DescriptorAccess::Update) {
                    Ok(stop) => Descent::Stop(stop),
                    Err(host) => Descent::Host(host),
                },
            ),
        }
    }

    #[inline]
    fn oa_out_of_range(&self, address: u64) -> bool {
        address > self.oa_max
    }

    /// Configuration and input checks (top of AArch64.S2Translate) and the
    /// start-level descriptor address (AArch64.S2SLTTEntryAddress).
    #[inline]
    pub(crate) fn begin(&self, cursor: &mut Cursor) -> Result<(), Stop> {
        let stop0 = |cause| Stop { cause, level: 0 };
        let geometry = self.setup.map_err(stop0)?;
        // AArch64.IPAIsOutOfRange. An IPA is at most 56 bits; bits 63:56 of
        // the u64 given are checked too rather than silently dropped.
        if cursor.ipa > geometry.ipa_max {
            return Err(stop0(FaultCause::IpaOutOfRange));
        }
        // Below 2^(ia_bits - start_shift): the start table's entries.
        let index = cursor.ipa >> geometry.start_shift;
        let address = geometry.table_base | (index << 3);
        if self.oa_out_of_range(address) {
            return Err(stop0(FaultCause::BaseAddressOutOfRange));
        }
        cursor.level = geometry.start_level;
        cursor.address = address;
        Ok(())
    }

    /// Lowest IPA bit a level's index resolves.
    #[inline]
    fn level_lsb(&self, level: i8) -> u32 {
        u32::from(self.level_lsbs[level_slot(level)])
    }

    #[inline]
    fn block_permitted(&self, level: i8) -> bool {
        self.block_levels & (1 << level_slot(level)) != 0
    }

    /// OA\[51:48\] or OA\[51:50\] where a 52-bit format moves them
    /// (64KB with FEAT_LPA: bits 15:12; DS: bits 9:8), in place.
    #[inline]
    fn moved_address_bits(&self, descriptor: u64) -> u64 {
        let bits = &self.address_bits;
        (descriptor << bits.moved_shift) & bits.moved
    }

    /// AArch64.NextTableBase.
    #[inline]
    fn next_table_base(&self, descriptor: u64) -> u64 {
        (descriptor & self.address_bits.table) | self.moved_address_bits(descriptor)
    }

    /// AArch64.LeafBase.
    #[inline]
    fn leaf_base(&self, descriptor: u64, level: i8) -> u64 {
        let low = descriptor & self.address_bits.in_place & !low_mask(self.level_lsb(level));
        low | self.moved_address_bits(descriptor)
    }

    /// log2 of the number of entries a contiguous hint spans
    /// (AArch64.ContiguousSize), or 0 where the bit is RES0.
    #[inline]
    fn contiguous_log2(&self, level: i8, descriptor: u64) -> u32 {
        if descriptor & (1 << 52) == 0 {
            return 0;
        }
        u32::from(self.contiguous_log2s[level_slot(level)])
    }

    #[inline]
    pub(crate) fn next_table_address(&self, descriptor: u64) -> u64 {
        self.next_table_base(descriptor)
    }

    #[inline]
    pub(crate) fn block_permitted_at(&self, level: i8) -> bool {
        self.block_permitted(level)
    }

    #[inline]
    pub(crate) fn index_lsb(&self, level: i8) -> u32 {
        self.level_lsb(level)
    }

    /// StageOA for `ipa` through the leaf `descriptor` at `level`.
    #[inline]
    pub(crate) fn stage_output_address(&self, level: i8, descriptor: u64, ipa: u64) -> u64 {
        let bits = self.level_lsb(level) + self.contiguous_log2(level, descriptor);
        (self.leaf_base(descriptor, level) & !low_mask(bits)) | (ipa & low_mask(bits))
    }

    pub(crate) fn leaf_attributes(&self, level: i8, descriptor: u64) -> LeafAttributes {
        let block_bits = self.level_lsb(level);
        let contiguous_log2 = self.contiguous_log2(level, descriptor);
        let xn = ((descriptor >> 53) & 3) as u8;
        LeafAttributes {
            output_base: self.leaf_base(descriptor, level),
            size: 1 << block_bits,
            contiguous: contiguous_log2 != 0,
            contiguous_size: 1 << (block_bits + contiguous_log2),
            s2ap: S2Ap::from_bits(((descriptor >> 6) & 3) as u8),
            execute: Execute::from_xn(if self.xnx { xn } else { xn & 2 }),
            access_flag: descriptor & (1 << 10) != 0,
            dirty_bit_modifier: descriptor & (1 << 51) != 0,
            mem_attr: ((descriptor >> 2) & 0xf) as u8,
            shareability: Shareability::from_bits(if self.ds {
                self.sh0
            } else {
                ((descriptor >> 8) & 3) as u8
            }),
        }
    }

    /// One read of a batched walk of `ipa`: the descriptor `raw` read at
    /// `level` (L1's byte order applied), and what it means. `next_lsb` is
    /// [`Stage2Walker::index_lsb`] of `level + 1`, the same for every walk
    /// of a batch's round.
    #[inline(always)]
    pub(crate) fn advance(&self, ipa: u64, level: i8, raw: u64, next_lsb: u32) -> (u64, Step) {
        let descriptor = self.registers.endianness.descriptor_from_raw(raw);
        let step = match self.decode(ipa, level, descriptor, next_lsb) {
            Decoded::Table {
                next,
                set_access_flag: false,
            } => Step::Continue(next),
            Decoded::Table {
                set_access_flag: true,
                ..
            } => Step::TableAccessFlag,
            Decoded::Leaf => Step::Leaf,
            Decoded::Stop(cause) => Step::Stop(Stop { cause, level }),
        };
        (descriptor, step)
    }

    /// What the descriptor read at `level` means for the walk of `ipa`
    /// (AArch64.S2Walk at one level): a table (the next level's
    /// descriptor address, checked against the output size), a leaf, or
    /// a fault at this level. `next_lsb` is `level_lsb(level + 1)`, which
    /// a single walk keeps in a register.
    #[inline(always)]
    fn decode(&self, ipa: u64, level: i8, descriptor: u64, next_lsb: u32) -> Decoded {
        match descriptor & 3 {
            0 | 2 => Decoded::Stop(FaultCause::InvalidDescriptor),
            1 if self.block_permitted(level) => Decoded::Leaf,
            1 => Decoded::Stop(FaultCause::BlockNotPermitted),
            _ if level >= 3 => Decoded::Leaf,
            _ => {
                let base = self.next_table_base(descriptor);
                let index = (ipa >> next_lsb) & self.stride_mask;
                let next = base | (index << 3);
                if self.oa_out_of_range(next) {
                    // Reported at the level of the table descriptor.
                    return Decoded::Stop(FaultCause::TableAddressOutOfRange);
                }
                Decoded::Table {
                    next,
                    // AArch64.S2Walk: with walkparams.haft a table
                    // descriptor gets AF set (after the next-level
                    // address check).
                    set_access_flag: !descriptor & self.table_access_flag_update != 0,
                }
            }
        }
    }

    /// The checks after the leaf (output address size, access flag,
    /// permissions) and the update the walk must make, if any.
    #[inline(always)]
    pub(crate) fn check_leaf(&self, cursor: &Cursor, descriptor: u64) -> Result<Leaf, Stop> {
        self.check_leaf_by(cursor, descriptor, self.leaf_rules(cursor.level))
    }

    /// What the leaf checks at `level` depend on, from this walker's
    /// configuration.
    #[inline(always)]
    fn leaf_rules(&self, level: i8) -> LeafRules {
        LeafRules {
            block_bits: self.level_lsb(level),
            contiguous_log2: u32::from(self.contiguous_log2s[level_slot(level)]),
            address_bits: self.address_bits,
            ha: self.ha,
            hd: self.hd,
            ds: self.ds,
        }
    }

    /// [`Stage2Walker::check_leaf`] under `rules`: the walker's own, or
    /// constants a specialised walk knows (which the compiler then folds).
    #[inline(always)]
    fn check_leaf_by(
        &self,
        cursor: &Cursor,
        descriptor: u64,
        rules: LeafRules,
    ) -> Result<Leaf, Stop> {
        let level = cursor.level;
        let stop = |cause| Stop { cause, level };
        let block_bits = rules.block_bits;
        // AArch64.ContiguousSize: 0 where bit 52 is RES0.
        let contiguous_bits = if descriptor & (1 << 52) != 0 {
            block_bits + rules.contiguous_log2
        } else {
            block_bits
        };
        // StageOA (AArch64.LeafBase, then the IA supplies every bit below
        // the (contiguous) block).
        let bits = &rules.address_bits;
        let base = (descriptor & bits.in_place & !low_mask(block_bits))
            | ((descriptor << bits.moved_shift) & bits.moved);
        let output_address =
            (base & !low_mask(contiguous_bits)) | (cursor.ipa & low_mask(contiguous_bits));
        if self.oa_out_of_range(output_address) {
            return Err(stop(FaultCause::OutputAddressOutOfRange));
        }
        let af = descriptor & (1 << 10) != 0;
        if !af && !rules.ha {
            return Err(stop(FaultCause::AccessFlagClear));
        }
        let dbm = descriptor & (1 << 51) != 0;
        // AArch64.S2ApplyOutputPerms: with hardware dirty state a DBM
        // descriptor is effectively writable.
        let mut s2ap = ((descriptor >> 6) & 3) as u8;
        if rules.hd && dbm {
            s2ap |= 2;
        }
        let xn = ((descriptor >> 53) & 3) as u8;
        let execute = Execute::from_xn(if self.xnx { xn } else { xn & 2 });
        let device = (descriptor >> 2) & 0b1100 == 0;
        let denied = match cursor.access {
            AccessKind::ExecEl1 | AccessKind::ExecEl0 if device => {
                Some(FaultCause::ExecuteFromDevice)
            }
            AccessKind::ExecEl1 if !execute.el1() => Some(FaultCause::ExecuteDenied),
            AccessKind::ExecEl0 if !execute.el0() => Some(FaultCause::ExecuteDenied),
            AccessKind::Read if s2ap & 1 == 0 => Some(FaultCause::ReadDenied),
            AccessKind::Write if s2ap & 2 == 0 => Some(FaultCause::WriteDenied),
            // AccessType_TTW: `r == '0'` faults before `write && w == '0'`.
            AccessKind::Stage1Update if s2ap & 1 == 0 => Some(FaultCause::ReadDenied),
            AccessKind::Stage1Update if s2ap & 2 == 0 => Some(FaultCause::WriteDenied),
            AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1) if s2ap & 2 == 0 => {
                Some(FaultCause::WriteDenied)
            }
            AccessKind::CacheMaintenance(CacheMaintenance::El0) if s2ap & 1 == 0 => {
                Some(FaultCause::ReadDenied)
            }
            _ => None,
        };
        if let Some(cause) = denied {
            // AF is not set on a faulting access: SettingAccessFlagPermitted
            // is CONSTRAINED UNPREDICTABLE for permission faults and this
            // walker chooses FALSE.
            return Err(stop(cause));
        }
        let mut new_descriptor = descriptor;
        if rules.ha {
            new_descriptor |= 1 << 10;
        }
        if rules.hd && cursor.access.is_write() && dbm {
            new_descriptor |= 1 << 7;
        }
        let shareability = if rules.ds {
            self.sh0
        } else {
            ((new_descriptor >> 8) & 3) as u8
        };
        Ok(Leaf {
            descriptor,
            new_descriptor,
            output_address,
            block_bits,
            contiguous_bits,
            execute,
            shareability,
        })
    }

    /// The translation a finished walk reports: the leaf's values and the
    /// trail (kept apart from the cursor, by single and batched walks).
    #[inline(always)]
    pub(crate) fn translation_of(&self, cursor: &Cursor, trail: Trail, leaf: &Leaf) -> Translation {
        let l = self.leaf_translation(cursor, leaf);
        Translation {
            ipa: cursor.ipa,
            output_address: l.output_address,
            level: l.level,
            block_size: l.block_size(),
            contiguous_size: l.contiguous_size(),
            s2ap: l.s2ap,
            execute: l.execute,
            dirty_bit_modifier: l.dirty_bit_modifier(),
            mem_attr: l.mem_attr(),
            shareability: l.shareability,
            descriptor: l.descriptor,
            update: l.update,
            trail,
        }
    }

    /// The leaf of a finished walk, decoded (what a lean walk reports;
    /// [`Stage2Walker::translation_of`] adds the trail).
    #[inline(always)]
    pub(crate) fn leaf_translation(&self, cursor: &Cursor, leaf: &Leaf) -> LeafTranslation {
        let new = leaf.new_descriptor;
        let changed = new ^ leaf.descriptor;
        LeafTranslation {
            output_address: leaf.output_address,
            descriptor: new,
            level: cursor.level,
            block_bits: leaf.block_bits as u8,
            contiguous_bits: leaf.contiguous_bits as u8,
            s2ap: S2Ap::from_bits(((new >> 6) & 3) as u8),
            execute: leaf.execute,
            shareability: Shareability::from_bits(leaf.shareability),
            update: DescriptorUpdate {
                access_flag: changed & (1 << 10) != 0,
                dirty: changed & (1 << 7) != 0,
                table_access_flags: cursor.table_access_flags,
            },
        }
    }

    /// Check the leaf and make the hardware update by compare-and-swap.
    /// Always inlined, as are `check_leaf` and `leaf_translation`: out of
    /// line, the walk's cursor and the `Leaf` went through memory on every
    /// walk (a 4-level `translate_leaf` took ~4.5 ns longer).
    #[inline(always)]
    pub(crate) fn finish<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        cursor: &Cursor,
        descriptor: u64,
    ) -> Finish {
        let leaf = match self.check_leaf(cursor, descriptor) {
            Ok(leaf) => leaf,
            Err(stop) => return Finish::Done(Err(stop)),
        };
        if leaf.new_descriptor == descriptor {
            return Finish::Done(Ok(leaf));
        }
        let endianness = self.registers.endianness;
        let current = endianness.descriptor_to_raw(descriptor);
        let replacement = endianness.descriptor_to_raw(leaf.new_descriptor);
        match memory.compare_exchange_descriptor(cursor.address, current, replacement) {
            Ok(Ok(_)) => Finish::Done(Ok(leaf)),
            Ok(Err(_)) => Finish::Lost {
                descriptor_address: cursor.address,
            },
            // The update write is part of the walk (AArch64.MemSwapTableDesc):
            // a write that memory refuses is a synchronous external abort on
            // the walk, at the leaf's level; one the host denies is the
            // host's to resolve.
            Err(error) => match refused_access(
                error,
                cursor.address,
                cursor.level,
                DescriptorAccess::Update,
            ) {
                Ok(stop) => Finish::Done(Err(stop)),
                Err(host) => Finish::Host(host),
            },
        }
    }

    /// Walk many IPAs level by level: each round issues every pending
    /// descriptor read of the batch (duplicates once) as one
    /// [`GuestMemory::read_descriptors`] call. Results are identical to
    /// calling [`Stage2Walker::walk`] on each request in order.
    pub fn walk_batch<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        requests: &[WalkRequest],
        results: &mut [Result<Translation, WalkError>],
    ) -> Result<(), BatchLengthMismatch> {
        crate::batch::walk_batch(self, memory, requests, results)
    }
}

/// A granule's per-level tables, at [`level_slot`]: what
/// [`Stage2Walker`] keeps of them.
struct GranuleTables {
    level_lsbs: [u8; 8],
    contiguous_log2s: [u8; 8],
    /// Levels with block descriptors whatever the configuration.
    block_levels: u8,
    /// The level with block descriptors only with DS = 1 (4KB level 0,
    /// 16KB level 1) or PAMax >= 52 (64KB level 1).
    optional_block_levels: u8,
}

impl GranuleTables {
    const fn new(granule: Granule) -> Self {
        let mut level_lsbs = [0u8; 8];
        let mut contiguous_log2s = [0u8; 8];
        let mut level = -1i8;
        while level <= 3 {
            let slot = level_slot(level);
            let levels_below = (3 - level) as u32;
            level_lsbs[slot] = (granule.bits() + levels_below * granule.stride()) as u8;
            contiguous_log2s[slot] = match (granule, level) {
                // RES0: 4KB level 0 (DS) and 16KB/64KB level 1 blocks.
                (Granule::K4, 0) | (Granule::K16, 1) | (Granule::K64, 1) => 0,
                (Granule::K4, _) => 4,
                (Granule::K16, 2) => 5,
                (Granule::K16, _) => 7,
                (Granule::K64, _) => 5,
            };
            level += 1;
        }
        let (block_levels, optional_block_levels) = match granule {
            // Levels 1 and 2; level 0 with DS.
            Granule::K4 => (
                (1 << level_slot(1)) | (1 << level_slot(2)),
                1 << level_slot(0),
            ),
            // Level 2; level 1 with DS.
            Granule::K16 => (1 << level_slot(2), 1 << level_slot(1)),
            // Level 2; level 1 with PAMax >= 52.
            Granule::K64 => (1 << level_slot(2), 1 << level_slot(1)),
        };
        GranuleTables {
            level_lsbs,
            contiguous_log2s,
            block_levels,
            optional_block_levels,
        }
    }
}

/// [`GranuleTables`] for 4KB, 16KB and 64KB.
const GRANULE_TABLES: [GranuleTables; 3] = [
    GranuleTables::new(Granule::K4),
    GranuleTables::new(Granule::K16),
    GranuleTables::new(Granule::K64),
];

struct GeometryInputs {
    granule: Granule,
    ds: bool,
    sl0: u8,
    sl2: bool,
    t0sz: u8,
    pa_max: u32,
    ttst: bool,
    ps: u8,
    lpa: bool,
    vttbr: u64,
}

/// VTCR_EL2.DS in effect for `granule` (`granule_52`: its stage-2 field
/// shows FEAT_LPA2): the one rule `Stage2Walker::new` and `vtcr_ds` share.
fn effective_ds(vtcr: u64, granule: Granule, granule_52: bool) -> bool {
    granule != Granule::K64 && granule_52 && vtcr & (1 << 32) != 0
}

/// AArch64.S2DecodeTG0 with this walker's IMPLEMENTATION DEFINED choice for
/// a reserved (0b11) or unsupported TG0: the smallest granule stage 2
/// supports (4KB, else 16KB, else 64KB).
fn decode_granule(tg0: u8, features: &ExposedFeatures) -> Granule {
    let programmed = match tg0 {
        0 => Some(Granule::K4),
        1 => Some(Granule::K64),
        2 => Some(Granule::K16),
        _ => None,
    };
    let supported = |g: Granule| features.stage2_granule(g) != GranuleSupport::Unsupported;
    match programmed {
        Some(g) if supported(g) => g,
        _ if supported(Granule::K4) => Granule::K4,
        _ if supported(Granule::K16) => Granule::K16,
        _ if supported(Granule::K64) => Granule::K64,
        // ExposedFeatures guarantees one supported granule.
        _ => Granule::K4,
    }
}

/// The configuration checks of AArch64.S2Translate (S2TxSZFaults,
/// S2InvalidSL, S2InconsistentSL), all against the exposed PAMax, and the
/// start table base (AArch64.S2TTBaseAddress).
fn geometry(inputs: GeometryInputs) -> Result<Geometry, FaultCause> {
    let GeometryInputs {
        granule,
        ds,
        sl0,
        sl2,
        t0sz,
        pa_max,
        ttst,
        ps,
        lpa,
        vttbr,
    } = inputs;
    // AArch64.S2MinTxSZ (EL1 of L2 is AArch64).
    let ips = if pa_max >= 52 {
        if granule == Granule::K64 || ds {
            52
        } else {
            48
        }
    } else {
        pa_max
    };
    let min_t0sz = (64 - ips) as u8;
    // AArch64.MaxTxSZ.
    let max_t0sz = match (ttst, granule) {
        (true, Granule::K64) => 47,
        (true, _) => 48,
        (false, _) => 39,
    };
    // AArch64.S2TxSZFaults. Below the minimum must fault with FEAT_LPA
    // (PAMax 52) and is IMPLEMENTATION DEFINED otherwise; above the maximum
    // is IMPLEMENTATION DEFINED. This walker faults in every case rather
    // than clamping T0SZ.
    if t0sz < min_t0sz || t0sz > max_t0sz {
        return Err(FaultCause::InputSizeOutOfRange {
            t0sz,
            min: min_t0sz,
            max: max_t0sz,
        });
    }
    // AArch64.S2InvalidSL and AArch64.S2StartLevel.
    let start_level: i8 = match granule {
        Granule::K4 => match (sl2, sl0) {
            (true, 0) if pa_max < 52 => return Err(FaultCause::InvalidStartLevel),
            (true, 0) => -1,
            (true, _) => return Err(FaultCause::InvalidStartLevel),
            (false, 0) => 2,
            (false, 1) => 1,
            (false, 2) if pa_max < 44 => return Err(FaultCause::InvalidStartLevel),
            (false, 2) => 0,
            (false, _) if !ttst => return Err(FaultCause::InvalidStartLevel),
            (false, _) => 3,
        },
        Granule::K16 => match sl0 {
            // SL0 0b11 is level 0 only with DS = 1 and an exposed PAMax of
            // 52 bits (DDI 0487 M.a.a S2InvalidSL, as for 4KB level -1; the
            // v9.4 pseudocode had no PAMax term): a 48-bit input that could
            // start at level 0 with PAMax 48 must start at level 1.
            3 if !ds || pa_max < 52 => return Err(FaultCause::InvalidStartLevel),
            2 if pa_max < 42 => return Err(FaultCause::InvalidStartLevel),
            sl0 => 3 - sl0 as i8,
        },
        Granule::K64 => match sl0 {
            3 => return Err(FaultCause::InvalidStartLevel),
            2 if pa_max < 44 => return Err(FaultCause::InvalidStartLevel),
            sl0 => 3 - sl0 as i8,
        },
    };
    // AArch64.S2InconsistentSL.
    let ia_bits = 64 - u32::from(t0sz);
    let stride = granule.stride();
    let levels = (3 - i32::from(start_level)) as u32;
    let sl_min = levels * stride + granule.bits() + 1;
    let sl_max = sl_min + (stride - 1) + 4;
    if ia_bits < sl_min || ia_bits > sl_max {
        return Err(FaultCause::InconsistentStartLevel);
    }
    // AArch64.S2TTBaseAddress: aligned to the start table(s) size, at
    // least 64 bytes in the 52-bit formats whose BADDR[51:48] sits in
    // VTTBR_EL2[5:2].
    let mut table_size_log2 = ia_bits - (sl_min - 1) + 3;
    let base = if ds || (granule == Granule::K64 && ps == 0b110 && lpa) {
        table_size_log2 = table_size_log2.max(6);
        (((vttbr >> 2) & 0xf) << 48) | (vttbr & mask(48) & !mask(6))
    } else {
        vttbr & mask(48) & !1
    };
    let start_shift = sl_min - 1;
    let table_base = base & !mask(table_size_log2);
    Ok(Geometry {
        start_level,
        ipa_max: mask(ia_bits),
        table_base,
        start_shift,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::IdRegisters;
    extern crate std;
    use std::vec::Vec;

    /// Every feature a walk can depend on, so that bits read only under a
    /// feature are read: PARange 52 bits, TGran4/TGran16 with 52-bit
    /// support, HAFDBS 0b0011 (FEAT_HAFT), XNX, ST (FEAT_TTST).
    fn every_feature() -> ExposedFeatures {
        ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: 6 | (2 << 20) | (1 << 28),
            mmfr1: 3 | (1 << 28),
            mmfr2: 1 << 28,
        })
        .unwrap()
    }

    /// VTCR_EL2 values covering every granule, start level, output size
    /// and enable the walker decodes.
    fn vtcr_cases() -> Vec<u64> {
        let mut cases = Vec::new();
        for tg0 in 0..4u64 {
            for (t0sz, sl0) in [(16u64, 2u64), (25, 1), (39, 0), (12, 2)] {
                for enables in [0u64, 1 << 21, (1 << 21) | (1 << 22) | (1 << 44)] {
                    for ds_sl2 in [0u64, 1 << 32, 3 << 32] {
                        for ps in [4u64, 6] {
                            cases.push(t0sz | sl0 << 6 | tg0 << 14 | ps << 16 | enables | ds_sl2);
                        }
                    }
                }
            }
        }
        cases
    }

    /// The walkers for `vtcr` and for `vtcr` with `bit` flipped, the raw
    /// registers (which a walker keeps) made equal.
    fn with_bit_flipped(vtcr: u64, bit: u32) -> (Stage2Walker, Stage2Walker) {
        let features = every_feature();
        let registers = Stage2Registers {
            vtcr,
            vttbr: 0x8000_0000,
            endianness: Endianness::Little,
        };
        let walker = Stage2Walker::new(registers, &features);
        let flipped = Stage2Registers {
            vtcr: vtcr ^ (1 << bit),
            ..registers
        };
        let mut other = Stage2Walker::new(flipped, &features);
        other.registers = registers;
        (walker, other)
    }

    /// Every VTCR_EL2 bit outside [`VTCR_WALK_FIELDS`] is ignored by
    /// [`Stage2Walker::new`]: flipping it gives an identical walker.
    /// (Fails with HAFT, bit 44, left out of the mask.)
    #[test]
    fn the_walker_reads_no_vtcr_bit_outside_vtcr_walk_fields() {
        for vtcr in vtcr_cases() {
            for bit in (0..64).filter(|b| VTCR_WALK_FIELDS & (1 << b) == 0) {
                let (walker, other) = with_bit_flipped(vtcr, bit);
                assert_eq!(other, walker, "VTCR_EL2 bit {bit} of {vtcr:#x}");
            }
        }
    }

    /// The mask is no wider than needed: each of its bits changes the
    /// walker in some configuration (a key bit no walk reads would only
    /// split contexts).
    #[test]
    fn every_bit_of_vtcr_walk_fields_is_read() {
        let mut read = 0u64;
        for vtcr in vtcr_cases() {
            for bit in (0..64).filter(|b| VTCR_WALK_FIELDS & (1 << b) != 0) {
                let (walker, other) = with_bit_flipped(vtcr, bit);
                if other != walker {
                    read |= 1 << bit;
                }
            }
        }
        assert_eq!(
            read,
            VTCR_WALK_FIELDS,
            "bits never read: {:#x}",
            VTCR_WALK_FIELDS & !read
        );
    }
}
