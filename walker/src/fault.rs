//! Walk outcomes shared by success and failure: the access being made, the
//! trail of descriptor reads, faults with their FSC, and the ESR/FAR/HPFAR
//! that L0 injects into L1's virtual EL2 for a fault.

use core::fmt;

/// The kind of L2 access being translated at stage 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// A data read (or an L2 stage-1 table walk read).
    Read,
    /// A data write: needs write permission only (S2AP 0b10, write-only,
    /// permits it).
    Write,
    /// A hardware update of an L2 stage-1 descriptor by L2's stage-1 table
    /// walk (AccessType_TTW with `write`, reported with S1PTW = 1): by
    /// AArch64.S2CheckPermissions it needs read permission (`r == '0'`
    /// faults first) and write permission, so a write-only entry gives a
    /// permission fault. Like a data write it sets the dirty state of a
    /// DBM entry (AArch64.SetDirtyState). The request's origin is
    /// [`AbortOrigin::Stage1Walk`]: a walk that writes is this kind.
    Stage1Update,
    /// An instruction fetch at EL1.
    ExecEl1,
    /// An instruction fetch at EL0.
    ExecEl0,
    /// A data or instruction cache maintenance instruction by VA (ESR
    /// CM = 1, reported with WnR = 1), not on a stage-1 walk.
    CacheMaintenance(CacheMaintenance),
}

/// The stage-2 permission a cache maintenance instruction by VA needs, by
/// AArch64.S2CheckPermissions for AccessType_DC and AccessType_IC in an
/// AArch64 EL1&0 regime without FEAT_CMOW (HCRX_EL2.CMOW), FEAT_S2POE and
/// FEAT_S2PIE, none of which this walker models.
///
/// AArch64.DC translates DC IVAC as an invalidate and only then, with
/// stage 2 enabled, performs it as a clean and invalidate: the permission
/// check is the invalidate's.
///
/// Access flag: for DC and IC the architecture makes both the Access flag
/// fault (AF = 0 without hardware AF) and the hardware AF update
/// IMPLEMENTATION DEFINED ("Generate access flag fault on IC/DC
/// operations"); this walker answers TRUE, treating them as any other
/// access. They never make a hardware dirty-state update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheMaintenance {
    /// A clean or clean and invalidate at EL1 (DC CVAC, CVAP, CVADP, CVAU,
    /// CIVAC) or IC IVAU at EL1: no stage-2 permission needed.
    CleanEl1,
    /// DC IVAC at EL1: needs write permission.
    InvalidateEl1,
    /// Any DC or IC by VA at EL0 (DC IVAC is UNDEFINED there): needs read
    /// permission. For IC IVAU the check is IMPLEMENTATION DEFINED
    /// ("Permission fault on EL0 IC_IVAU execution"); this walker makes it.
    El0,
}

impl AccessKind {
    /// Whether the access writes (and so may set the dirty state of a DBM
    /// entry). Cache maintenance does not, whatever WnR reports.
    pub const fn is_write(self) -> bool {
        matches!(self, AccessKind::Write | AccessKind::Stage1Update)
    }

    /// Whether a data abort for the access reports WnR = 1: a write, or a
    /// cache maintenance instruction ("for faults on cache maintenance and
    /// address translation instructions, this bit always returns a value
    /// of 1"), which also reports CM = 1.
    pub const fn reports_write(self) -> bool {
        matches!(
            self,
            AccessKind::Write | AccessKind::Stage1Update | AccessKind::CacheMaintenance(_)
        )
    }

    /// Whether the access is a cache maintenance instruction (ESR CM = 1).
    pub const fn is_cache_maintenance(self) -> bool {
        matches!(self, AccessKind::CacheMaintenance(_))
    }

    /// Whether the access is an instruction fetch.
    pub const fn is_fetch(self) -> bool {
        matches!(self, AccessKind::ExecEl1 | AccessKind::ExecEl0)
    }
}

/// One descriptor the walk read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DescriptorRead {
    /// L1 IPA of the descriptor.
    pub address: u64,
    /// The descriptor as read, in L1's byte order already applied; for a
    /// table descriptor the walk set AF in (FEAT_HAFT), the value it
    /// wrote, which is what memory held when the walk went on.
    pub value: u64,
    /// Lookup level of the read (-1..=3).
    pub level: i8,
}

/// Maximum descriptor reads in one walk: levels -1 to 3.
pub const MAX_TRAIL: usize = 5;

/// The descriptors one walk read, in order (fixed capacity, no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Trail {
    reads: [DescriptorRead; MAX_TRAIL],
    len: u8,
}

impl Trail {
    /// An empty trail.
    pub const fn new() -> Self {
        Trail {
            reads: [DescriptorRead {
                address: 0,
                value: 0,
                level: 0,
            }; MAX_TRAIL],
            len: 0,
        }
    }

    /// The reads, first (start level) to last.
    pub fn as_slice(&self) -> &[DescriptorRead] {
        &self.reads[..usize::from(self.len)]
    }

    /// Number of reads.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no descriptor was read.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a read at `address` is in the trail.
    pub fn contains(&self, address: u64) -> bool {
        self.as_slice().iter().any(|r| r.address == address)
    }

    #[inline]
    pub(crate) fn push(&mut self, read: DescriptorRead) {
        // A walk reads at most one descriptor per level (-1..=3), so the
        // capacity cannot be exceeded; the guard keeps that true by
        // construction rather than by a panic.
        if let Some(slot) = self.reads.get_mut(usize::from(self.len)) {
            *slot = read;
            self.len += 1;
        }
    }
}

/// Where a walk records the descriptors it reads: the whole [`Trail`]
/// for [`Stage2Walker::walk`](crate::Stage2Walker::walk), nothing
/// ([`NoTrail`]) for
/// [`Stage2Walker::translate_leaf`](crate::Stage2Walker::translate_leaf).
/// The walk itself is one generic implementation over this.
pub(crate) trait TrailSink: Copy {
    /// Before the first read.
    const EMPTY: Self;
    /// The `index`-th descriptor read (from 0), the trail holding the
    /// `index` reads before it: the caller counts the reads itself (a
    /// single walk's loop), which spares the reload and check of the
    /// trail's length on every level.
    fn record_at(&mut self, index: usize, read: DescriptorRead);
    /// The trail a fault reports.
    fn to_trail(&self) -> Trail;
    /// The walk wrote `value` over the descriptor it read last (FEAT_HAFT:
    /// AF set in a table descriptor by a successful compare-and-swap).
    fn rewrite_last(&mut self, value: u64);
    /// The trail of a walk that kept its reads at constant places: the
    /// first `len` of `reads`, the others as in [`Trail::new`] (the
    /// caller leaves them so).
    fn from_reads(reads: &[DescriptorRead; MAX_TRAIL], len: usize) -> Self;
}

impl TrailSink for Trail {
    const EMPTY: Self = Trail::new();

    #[inline]
    fn record_at(&mut self, index: usize, read: DescriptorRead) {
        // A walk reads at most MAX_TRAIL descriptors, so `index` is in
        // range; were it not, the read would be dropped as by `push`.
        if let Some(slot) = self.reads.get_mut(index) {
            *slot = read;
            self.len = index as u8 + 1;
        }
    }

    #[inline]
    fn to_trail(&self) -> Trail {
        *self
    }

    #[inline]
    fn rewrite_last(&mut self, value: u64) {
        if let Some(last) = self.len.checked_sub(1) {
            self.reads[usize::from(last)].value = value;
        }
    }

    #[inline(always)]
    fn from_reads(reads: &[DescriptorRead; MAX_TRAIL], len: usize) -> Self {
        // Field by field: a copy of whole `DescriptorRead`s also copies
        // their padding, which the compiler then stores (zeroed) into the
        // result, 7 bytes of every entry.
        let read = |r: &DescriptorRead| DescriptorRead {
            address: r.address,
            value: r.value,
            level: r.level,
        };
        let [r0, r1, r2, r3, r4] = reads;
        Trail {
            reads: [read(r0), read(r1), read(r2), read(r3), read(r4)],
            len: len.min(MAX_TRAIL) as u8,
        }
    }
}

/// Records nothing: a walk whose caller needs only the leaf.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NoTrail;

impl TrailSink for NoTrail {
    const EMPTY: Self = NoTrail;

    #[inline]
    fn record_at(&mut self, _: usize, _: DescriptorRead) {}

    #[inline]
    fn to_trail(&self) -> Trail {
        Trail::new()
    }

    #[inline]
    fn rewrite_last(&mut self, _: u64) {}

    #[inline(always)]
    fn from_reads(_: &[DescriptorRead; MAX_TRAIL], _: usize) -> Self {
        NoTrail
    }
}

impl fmt::Debug for Trail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The architectural fault kinds a stage-2 walk can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Translation fault.
    Translation,
    /// Address size fault.
    AddressSize,
    /// Access flag fault.
    AccessFlag,
    /// Permission fault.
    Permission,
    /// Synchronous external abort on translation table walk or update.
    ExternalAbortOnWalk,
}

/// Why the walk faulted: the precise architectural reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCause {
    /// AArch64.S2TxSZFaults: VTCR_EL2.T0SZ below the minimum for the exposed
    /// PAMax or above the maximum (39, or 48/47 with FEAT_TTST).
    InputSizeOutOfRange {
        /// VTCR_EL2.T0SZ as programmed.
        t0sz: u8,
        /// Smallest permitted T0SZ.
        min: u8,
        /// Largest permitted T0SZ.
        max: u8,
    },
    /// AArch64.S2InvalidSL: SL0/SL2 reserved or needs a larger exposed PAMax.
    InvalidStartLevel,
    /// AArch64.S2InconsistentSL: the start level cannot resolve T0SZ with at
    /// most 16 concatenated tables.
    InconsistentStartLevel,
    /// AArch64.IPAIsOutOfRange: IPA bits at or above the input size are set.
    IpaOutOfRange,
    /// Descriptor bit 0 is clear.
    InvalidDescriptor,
    /// A block descriptor where this granule and level allow none
    /// (including bits\[1:0\] = 0b01 at level 3).
    BlockNotPermitted,
    /// The start-level descriptor address (from VTTBR_EL2.BADDR) lies beyond
    /// the output size.
    BaseAddressOutOfRange,
    /// A table descriptor's next-level address lies beyond the output size.
    TableAddressOutOfRange,
    /// The leaf's output address lies beyond the output size.
    OutputAddressOutOfRange,
    /// AF = 0 and hardware AF management is off.
    AccessFlagClear,
    /// S2AP forbids the read.
    ReadDenied,
    /// S2AP (after DBM with hardware dirty state) forbids the write.
    WriteDenied,
    /// XN forbids execution at the access's EL.
    ExecuteDenied,
    /// Instruction fetch from stage-2 Device memory (S2CheckPermissions).
    ExecuteFromDevice,
    /// A descriptor address lies outside every memslot.
    DescriptorOutsideMemslots {
        /// The descriptor's L1 IPA.
        address: u64,
    },
    /// A hardware AF/dirty update could not be written (read-only memslot).
    UpdateRefused {
        /// The descriptor's L1 IPA.
        address: u64,
    },
}

impl FaultCause {
    /// The architectural fault kind.
    pub const fn kind(&self) -> FaultKind {
        match self {
            FaultCause::InputSizeOutOfRange { .. }
            | FaultCause::InvalidStartLevel
            | FaultCause::InconsistentStartLevel
            | FaultCause::IpaOutOfRange
            | FaultCause::InvalidDescriptor
            | FaultCause::BlockNotPermitted => FaultKind::Translation,
            FaultCause::BaseAddressOutOfRange
            | FaultCause::TableAddressOutOfRange
            | FaultCause::OutputAddressOutOfRange => FaultKind::AddressSize,
            FaultCause::AccessFlagClear => FaultKind::AccessFlag,
            FaultCause::ReadDenied
            | FaultCause::WriteDenied
            | FaultCause::ExecuteDenied
            | FaultCause::ExecuteFromDevice => FaultKind::Permission,
            FaultCause::DescriptorOutsideMemslots { .. } | FaultCause::UpdateRefused { .. } => {
                FaultKind::ExternalAbortOnWalk
            }
        }
    }
}

/// A stage-2 fault, as the architecture reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The precise reason.
    pub cause: FaultCause,
    /// The lookup level reported (-1..=3).
    pub level: i8,
    /// The IPA being translated.
    pub ipa: u64,
    /// The access being translated.
    pub access: AccessKind,
    /// The descriptors read before the fault.
    pub trail: Trail,
}

/// The 6-bit fault status code (ESR_ELx.{D,I}FSC) for a kind and level.
///
/// Level -1 uses its own encodings (FEAT_LPA2): translation 0x2B, address
/// size 0x29, external abort on walk 0x13. Access flag and permission faults
/// cannot occur at level -1 (no block descriptors there); were one asked for
/// it is encoded as level 0, the lowest level the encoding has.
pub const fn fault_status_code(kind: FaultKind, level: i8) -> u8 {
    let lvl = if level < 0 { 0 } else { (level & 3) as u8 };
    match (kind, level < 0) {
        (FaultKind::AddressSize, true) => 0b10_1001,
        (FaultKind::Translation, true) => 0b10_1011,
        (FaultKind::ExternalAbortOnWalk, true) => 0b01_0011,
        (FaultKind::AddressSize, false) => lvl,
        (FaultKind::Translation, false) => 0b00_0100 | lvl,
        (FaultKind::AccessFlag, _) => 0b00_1000 | lvl,
        (FaultKind::Permission, _) => 0b00_1100 | lvl,
        (FaultKind::ExternalAbortOnWalk, false) => 0b01_0100 | lvl,
    }
}

/// ESR_ELx.EC for an instruction abort from a lower EL.
pub const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
/// ESR_ELx.EC for a data abort from a lower EL.
pub const EC_DATA_ABORT_LOWER: u64 = 0x24;

/// What the faulting stage-2 access was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortOrigin {
    /// L2's own access (the [`Fault::access`] kind says which).
    Access,
    /// A stage-2 access made by L2's stage-1 table walk (ESR S1PTW = 1): a
    /// descriptor read ([`AccessKind::Read`]) or a hardware update of an L2
    /// stage-1 descriptor ([`AccessKind::Stage1Update`], which needs read
    /// and write permission) on behalf of an instruction fetch or a data
    /// access.
    Stage1Walk {
        /// The access that needed the stage-1 walk was an instruction fetch.
        for_instruction_fetch: bool,
    },
}

/// Inputs to [`Fault::syndrome`] that the walk cannot know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortContext {
    /// The L2 virtual address (FAR_EL2), or `None` when the caller does not
    /// have it. FnV cannot say so: it is valid only for a synchronous
    /// external abort not on a walk (DFSC 0b010000) and RES0 for every fault
    /// the walker reports, so `None` gives FAR_EL2 = 0 with FnV = 0. The ipc
    /// path always carries the trapped FAR.
    pub far: Option<u64>,
    /// What the access was for.
    pub origin: AbortOrigin,
    /// The ESR_EL2 L0 took for the stage-2 fault of the same L2 access on
    /// its shadow, or `None` when there is none (a walk made for a tool or
    /// a test). With it the injected ESR carries the instruction's
    /// syndrome ([`merge_trapped_syndrome`](crate::merge_trapped_syndrome)).
    pub trapped_esr: Option<u64>,
}

/// The register values L0 writes into L1's virtual EL2 to inject a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedAbort {
    /// ESR_EL2.
    pub esr_el2: u64,
    /// FAR_EL2 (0 when the caller gave no FAR).
    pub far_el2: u64,
    /// HPFAR_EL2 (FIPA = IPA\[51:12\] in bits \[43:4\]; NS = 0).
    pub hpfar_el2: u64,
}

impl Fault {
    /// The architectural fault kind.
    pub const fn kind(&self) -> FaultKind {
        self.cause.kind()
    }

    /// The 6-bit fault status code.
    pub const fn fsc(&self) -> u8 {
        fault_status_code(self.kind(), self.level)
    }

    /// ESR_EL2, FAR_EL2 and HPFAR_EL2 to inject into L1 for this fault.
    ///
    /// - EC: instruction abort from a lower EL (0x20) for an instruction
    ///   fetch (or a stage-1 walk on behalf of one), else data abort (0x24).
    /// - IL = 1.
    /// - With [`AbortContext::trapped_esr`], the fields that describe the
    ///   instruction (ISV with SAS/SSE/SRT/SF/AR where L1's fault can have
    ///   an instruction syndrome, FnP, VNCR, LST, CM, ISS2 Xs/GCS) are
    ///   the trapped ESR's, by [`merge_trapped_syndrome`](crate::merge_trapped_syndrome);
    ///   without it ISV = 0, and CM = 1 only for
    ///   [`AccessKind::CacheMaintenance`].
    /// - FnV = 0 (RES0 for every stage-2 fault and for an external abort on
    ///   a walk); EA = 0.
    /// - S1PTW = 1 for [`AbortOrigin::Stage1Walk`].
    /// - WnR (data aborts only) = the stage-2 access was a write (for a
    ///   stage-1 walk: a hardware update of the L2 stage-1 descriptor) or
    ///   cache maintenance (which reports CM = 1 and WnR = 1).
    /// - HPFAR_EL2 carries the faulting IPA for every stage-2 fault. Where
    ///   the architecture leaves HPFAR_EL2 UNKNOWN (permission faults not on
    ///   a stage-1 walk, external aborts on the walk) the IPA is a permitted
    ///   UNKNOWN value and the most useful one to L1. FIPA holds IPA\[51:12\];
    ///   higher IPA bits (only possible for an IPA-out-of-range fault on a
    ///   malformed input) do not fit the register and are not reported.
    pub fn syndrome(&self, context: &AbortContext) -> InjectedAbort {
        let (fetch, s1ptw) = match context.origin {
            AbortOrigin::Access => (self.access.is_fetch(), false),
            AbortOrigin::Stage1Walk {
                for_instruction_fetch,
            } => (for_instruction_fetch, true),
        };
        let ec = if fetch {
            EC_INSTRUCTION_ABORT_LOWER
        } else {
            EC_DATA_ABORT_LOWER
        };
        let mut iss = u64::from(self.fsc());
        if s1ptw {
            iss |= 1 << 7;
        }
        if !fetch && self.access.reports_write() {
            iss |= 1 << 6;
        }
        if !fetch && !s1ptw && self.access.is_cache_maintenance() {
            iss |= 1 << 8;
        }
        let walk_esr = (ec << 26) | (1 << 25) | iss;
        let esr_el2 = match context.trapped_esr {
            Some(trapped) => crate::merge_trapped_syndrome(walk_esr, trapped),
            None => walk_esr,
        };
        let hpfar_el2 = ((self.ipa >> 12) << 4) & 0x0000_0fff_ffff_fff0;
        InjectedAbort {
            esr_el2,
            far_el2: context.far.unwrap_or(0),
            hpfar_el2,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Translation => "translation fault",
            FaultKind::AddressSize => "address size fault",
            FaultKind::AccessFlag => "access flag fault",
            FaultKind::Permission => "permission fault",
            FaultKind::ExternalAbortOnWalk => "synchronous external abort on walk",
        })
    }
}

impl fmt::Display for FaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FaultCause::InputSizeOutOfRange { t0sz, min, max } => {
                write!(f, "VTCR_EL2.T0SZ {t0sz} outside {min}..={max}")
            }
            FaultCause::InvalidStartLevel => f.write_str("invalid start level (SL0/SL2)"),
            FaultCause::InconsistentStartLevel => f.write_str("start level inconsistent with T0SZ"),
            FaultCause::IpaOutOfRange => f.write_str("IPA beyond the input size"),
            FaultCause::InvalidDescriptor => f.write_str("invalid descriptor"),
            FaultCause::BlockNotPermitted => f.write_str("block descriptor not permitted here"),
            FaultCause::BaseAddressOutOfRange => {
                f.write_str("VTTBR_EL2.BADDR beyond the output size")
            }
            FaultCause::TableAddressOutOfRange => {
                f.write_str("next-level table beyond the output size")
            }
            FaultCause::OutputAddressOutOfRange => {
                f.write_str("output address beyond the output size")
            }
            FaultCause::AccessFlagClear => f.write_str("access flag clear"),
            FaultCause::ReadDenied => f.write_str("read not permitted by S2AP"),
            FaultCause::WriteDenied => f.write_str("write not permitted by S2AP"),
            FaultCause::ExecuteDenied => f.write_str("execution not permitted by XN"),
            FaultCause::ExecuteFromDevice => f.write_str("instruction fetch from Device memory"),
            FaultCause::DescriptorOutsideMemslots { address } => {
                write!(f, "descriptor at {address:#x} outside every memslot")
            }
            FaultCause::UpdateRefused { address } => {
                write!(f, "hardware update of descriptor at {address:#x} refused")
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at level {} (FSC {:#04x}) for IPA {:#x}: {}",
            self.kind(),
            self.level,
            self.fsc(),
            self.ipa,
            self.cause
        )
    }
}
