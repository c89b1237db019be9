//! Fixed-layout records exchanged on the rings, and their typed meaning.
//!
//! Every record is [`RECORD_SIZE`] bytes: a [`RecordHeader`] (layout
//! version, kind, vCPU, sequence number) and a kind-specific body. Bodies are
//! `#[repr(C)]` structs without padding, read and written with zerocopy;
//! both ends of a ring share one machine, so integers are in native byte
//! order. Decoding validates every field and requires every reserved byte to
//! be zero, so each accepted record has exactly one encoding (decode then
//! encode gives back the same bytes) and a malformed record becomes a
//! [`DecodeError`] that the service returns in an error reply.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::tlbi::{IpaRange, Shareability, Tlbi, TlbiOp};

/// Layout version carried by every record; bumped on any layout change.
/// Version 4: a translate request's VMID must be the one its VTTBR_EL2 and
/// VTCR_EL2 name (error field [`Field::Vmid`]); the reply
/// [`TranslateOutcome::L0Denied`]. Version 8: an [`L0Denial`] says what
/// L0 denied ([`DeniedAccess`]: L2's access to its data, or the walk's
/// read or update of L1's table) in the byte that held L2's access kind.
pub const LAYOUT_VERSION: u16 = 8;
/// Size of one record in bytes.
pub const RECORD_SIZE: usize = 56;
/// Size of the kind-specific body in bytes.
pub const BODY_SIZE: usize = 40;
/// Addresses (IPAs and PAs) are at most 52 bits wide (FEAT_LPA/FEAT_LPA2).
pub const ADDRESS_LIMIT: u64 = 1 << 52;

/// Identifies a vCPU, and so its pair of rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VcpuId(pub u32);

/// The common prefix of every record.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct RecordHeader {
    /// Must equal [`LAYOUT_VERSION`].
    pub version: u16,
    /// One of [`RecordKind`].
    pub kind: u16,
    /// The vCPU the request came from (echoed in the reply).
    pub vcpu: u32,
    /// Chosen by the requester, echoed in the reply.
    pub seq: u64,
}

/// One fixed-size message as it sits in a ring slot.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Record {
    /// Version, kind and addressing.
    pub header: RecordHeader,
    /// Kind-specific payload.
    pub body: [u8; BODY_SIZE],
}

const _: () = assert!(core::mem::size_of::<Record>() == RECORD_SIZE);

impl Record {
    /// The all-zero record (invalid: version 0).
    pub const ZERO: Record = Record {
        header: RecordHeader {
            version: 0,
            kind: 0,
            vcpu: 0,
            seq: 0,
        },
        body: [0; BODY_SIZE],
    };

    /// Copies a record out of received bytes, which must be exactly
    /// [`RECORD_SIZE`] long. The content is validated by
    /// [`decode_request`] / [`decode_reply`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Record, DecodeError> {
        Record::read_from_bytes(bytes).map_err(|_| DecodeError::Length {
            found: bytes.len() as u64,
        })
    }

    /// Writes the header and `body` over every byte of this record.
    #[inline]
    fn fill<W: FromBytes + IntoBytes + KnownLayout>(
        &mut self,
        kind: RecordKind,
        vcpu: VcpuId,
        seq: u64,
        body: W,
    ) {
        self.header = RecordHeader {
            version: LAYOUT_VERSION,
            kind: kind as u16,
            vcpu: vcpu.0,
            seq,
        };
        match W::mut_from_bytes(&mut self.body) {
            // Field-wise stores straight into the destination (a ring slot),
            // no intermediate copy.
            Ok(dst) => *dst = body,
            Err(_) => unreachable!("body structs are BODY_SIZE bytes, align <= 8"),
        }
    }
}

/// The record kinds. Requests travel vCPU -> service, replies back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RecordKind {
    /// [`TranslateRequest`].
    Translate = 0x01,
    /// [`InvalidateRequest`].
    Invalidate = 0x02,
    /// [`L0UnmapRequest`].
    L0Unmap = 0x03,
    /// [`TranslateOutcome::Mapped`].
    Mapped = 0x81,
    /// [`TranslateOutcome::Inject`].
    Inject = 0x82,
    /// [`TranslateOutcome::Retry`].
    Retry = 0x83,
    /// [`InvalidateAck`].
    InvalidateAck = 0x84,
    /// [`L0UnmapAck`].
    L0UnmapAck = 0x85,
    /// [`TranslateOutcome::Emulate`].
    Emulate = 0x86,
    /// [`TranslateOutcome::ExternalAbort`].
    ExternalAbort = 0x87,
    /// [`TranslateOutcome::Unshadowable`].
    Unshadowable = 0x88,
    /// [`TranslateOutcome::L0Denied`].
    L0Denied = 0x89,
    /// [`Reply::Error`].
    Error = 0x8f,
}

impl RecordKind {
    fn from_u16(kind: u16) -> Option<RecordKind> {
        Some(match kind {
            0x01 => RecordKind::Translate,
            0x02 => RecordKind::Invalidate,
            0x03 => RecordKind::L0Unmap,
            0x81 => RecordKind::Mapped,
            0x82 => RecordKind::Inject,
            0x83 => RecordKind::Retry,
            0x84 => RecordKind::InvalidateAck,
            0x85 => RecordKind::L0UnmapAck,
            0x86 => RecordKind::Emulate,
            0x87 => RecordKind::ExternalAbort,
            0x88 => RecordKind::Unshadowable,
            0x89 => RecordKind::L0Denied,
            0x8f => RecordKind::Error,
            _ => return None,
        })
    }

    fn is_request(self) -> bool {
        (self as u16) < 0x80
    }
}

/// A record field that held a value outside its domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Field {
    /// Reserved bytes were not zero.
    Reserved = 1,
    /// Access kind outside read / write / execute.
    Access = 2,
    /// An IPA or PA at or beyond [`ADDRESS_LIMIT`].
    Address = 3,
    /// An empty, unaligned or out-of-bounds range.
    Range = 4,
    /// A block size that no stage-2 table can map.
    BlockSize = 5,
    /// An output address not aligned to the block size.
    Alignment = 6,
    /// Unknown permission bits.
    Permissions = 7,
    /// Stage-2 MemAttr wider than 4 bits.
    MemAttr = 8,
    /// The reserved shareability encoding 0b01 or beyond.
    Shareability = 9,
    /// An injected syndrome that is not an abort from a lower EL.
    Syndrome = 10,
    /// HPFAR bits set outside FIPA (\[43:4\], IPA\[51:12\]) and NS (bit 63).
    FaultAddress = 11,
    /// Unknown retry reason.
    RetryReason = 12,
    /// Unknown TLBI operation, shareability or flags.
    TlbiForm = 13,
    /// A TLBI operand that names nothing to invalidate.
    TlbiOperand = 14,
    /// Unknown L0 change kind.
    L0Change = 15,
    /// An error reply whose error code is unknown.
    ErrorCode = 16,
    /// A translate request whose syndrome marks its FAR not valid
    /// (FnV = 1): a stage-2 fault always has a valid FAR; or an external
    /// abort with FnV = 1 and a FAR other than 0.
    Far = 17,
    /// An unknown reason why a walk result cannot be shadowed.
    UnshadowableReason = 18,
    /// A VMID that is not the one L1's VTTBR_EL2/VTCR_EL2 name (see
    /// [`crate::vmid::l1_vmid`]), or beyond the VMID width L1 has.
    Vmid = 19,
}

impl Field {
    const ALL: [Field; 19] = [
        Field::Reserved,
        Field::Access,
        Field::Address,
        Field::Range,
        Field::BlockSize,
        Field::Alignment,
        Field::Permissions,
        Field::MemAttr,
        Field::Shareability,
        Field::Syndrome,
        Field::FaultAddress,
        Field::RetryReason,
        Field::TlbiForm,
        Field::TlbiOperand,
        Field::L0Change,
        Field::ErrorCode,
        Field::Far,
        Field::UnshadowableReason,
        Field::Vmid,
    ];

    fn from_u16(value: u16) -> Option<Field> {
        Field::ALL.into_iter().find(|f| *f as u16 == value)
    }
}

/// Why a received record was rejected. Sent back in [`Reply::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The received bytes were not exactly one record long.
    Length {
        /// Number of bytes received.
        found: u64,
    },
    /// The header names another layout version.
    Version {
        /// The version found.
        found: u16,
    },
    /// The header names no known record kind.
    UnknownKind {
        /// The kind found.
        kind: u16,
    },
    /// A reply on a request ring, or a request on a reply ring.
    WrongDirection {
        /// The kind found.
        kind: u16,
    },
    /// A request on a vCPU's ring that names another vCPU.
    VcpuMismatch {
        /// The vCPU the header named.
        found: u32,
    },
    /// A body field outside its domain.
    Invalid {
        /// The record kind.
        kind: u16,
        /// The offending field.
        field: Field,
    },
}

impl DecodeError {
    fn invalid(kind: RecordKind, field: Field) -> DecodeError {
        DecodeError::Invalid {
            kind: kind as u16,
            field,
        }
    }
}

/// A decoded record with its addressing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<T> {
    /// The vCPU the exchange belongs to.
    pub vcpu: VcpuId,
    /// The requester's sequence number.
    pub seq: u64,
    /// The message itself.
    pub message: T,
}

// ---------------------------------------------------------------------------
// Typed messages.

/// What the faulting L2 access was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AccessKind {
    /// A data read.
    Read = 0,
    /// A data write.
    Write = 1,
    /// An instruction fetch at EL1 (stage-2 XN\[1:0\] is checked for EL1).
    Execute = 2,
    /// An instruction fetch at EL0: with FEAT_XNX stage 2 may allow
    /// execution at one of EL0 and EL1 only, so the two must not be merged.
    ExecuteEl0 = 3,
    /// A cache maintenance instruction by VA at EL1 (DC C*VA*, DC IVAC,
    /// IC IVAU; ESR CM = 1 with WnR = 1, not on a stage-1 walk). Stage 2
    /// checks it apart from a write: a clean needs no stage-2 permission,
    /// only DC IVAC needs write (AArch64.S2CheckPermissions, AccessType_DC).
    CacheMaintenance = 4,
    /// A cache maintenance instruction by VA at EL0, which stage 2 checks
    /// for read permission.
    CacheMaintenanceEl0 = 5,
}

/// Identifies the L1 stage-2 context a translation uses. Build it with
/// [`ContextKey::new`], which computes the VMID the way TLBIs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContextKey {
    /// L1's VMID for L2: [`crate::vmid::l1_vmid`] of `vttbr` and `vtcr`
    /// (checked on receipt: [`ContextKey::validate`]).
    pub vmid: u16,
    /// L1's virtual VTTBR_EL2.
    pub vttbr: u64,
    /// L1's virtual VTCR_EL2.
    pub vtcr: u64,
}

impl ContextKey {
    /// The key for L1's virtual VTTBR_EL2 and VTCR_EL2, `l1_width` being
    /// the VMID width L0 exposes to L1 (ID_AA64MMFR1_EL1.VMIDBits).
    pub const fn new(vttbr: u64, vtcr: u64, l1_width: crate::VmidWidth) -> ContextKey {
        ContextKey {
            vmid: crate::vmid::l1_vmid(vttbr, vtcr, l1_width),
            vttbr,
            vtcr,
        }
    }

    /// Checks that `vmid` is the VMID `vttbr` and `vtcr` name for some
    /// width L1 may have ([`crate::vmid::vmid_agrees`]): a VMID the
    /// registers do not name ([`Field::Vmid`]) would key a context that
    /// L1's TLBIs for its real VMID never reach.
    #[inline(always)]
    pub const fn validate(&self) -> Result<(), Field> {
        if crate::vmid::vmid_agrees(self.vmid, self.vttbr, self.vtcr) {
            Ok(())
        } else {
            Err(Field::Vmid)
        }
    }
}

/// An L2 stage-2 fault the vCPU handler wants resolved.
///
/// Validated on receipt, by the same checks as
/// [`TranslateRequest::validate`]. Encoding does not validate (the fault
/// path stays plain stores into the ring slot, and the fields are public):
/// a sender that wants the error before sending calls `validate`;
/// otherwise the service answers a malformed request with an error reply,
/// which [`crate::VcpuClient::translate`] returns as
/// `ClientError::Rejected`. The checks:
/// - the syndrome is an instruction or data abort from a lower EL (EC 0x20
///   / 0x24) whose IFSC/DFSC is a stage-2 fault code (see
///   [`is_stage2_fault_code`]); anything else (an external abort, an
///   alignment fault, a TLB conflict...) is not the service's to resolve;
/// - FnV (ISS bit 10) is 0: the Arm ARM defines FnV only for a synchronous
///   external abort and makes it RES0 otherwise, so for a stage-2 fault
///   FAR_EL2 is always valid and is carried in [`TranslateRequest::far`];
/// - the syndrome agrees with `access`: an instruction fetch is EC 0x20,
///   a data access EC 0x24; for a data abort not on a stage-1 walk, CM
///   (ISS bit 8, which comes with WnR = 1) is 1 exactly for the cache
///   maintenance kinds, and otherwise WnR (ISS bit 6) is 1 exactly for
///   [`AccessKind::Write`] (an atomic reports WnR = 0 when a read of the
///   location would have caused the fault, as it always would for a
///   translation fault, so it is a read then: the permission stage 2
///   checks first); a fault on L2's stage-1 walk, ESR S1PTW = 1, is the
///   walk's own read or write whatever EC says the walk was for (a write
///   there is a stage-1 descriptor update, which stage 2 checks for read
///   and write permission: AccessType_TTW);
/// - the context's VMID is the one its VTTBR_EL2/VTCR_EL2 name
///   ([`ContextKey::validate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TranslateRequest {
    /// The stage-2 context.
    pub context: ContextKey,
    /// The faulting L2 IPA (below [`ADDRESS_LIMIT`]).
    pub l2_ipa: u64,
    /// The kind of access.
    pub access: AccessKind,
    /// ESR_EL2\[31:0\] of the L2 fault as trapped: EC, IL and ISS. A fault
    /// injected into L1 keeps its instruction syndrome (ISV, SAS, SSE,
    /// SRT, SF, AR, FnP, LST, CM: `walker::merge_trapped_syndrome`).
    ///
    /// ISS2 (bits \[55:32\]) is not carried, so an [`Injection`] has
    /// ISS2 = 0. Its walk fields (HDBSSF, TagAccess, AssuredOnly, Overlay,
    /// DirtyBit) are 0 for every fault the walker reports anyway; its
    /// instruction fields (Xs, GCS; TnD is a stage-1 field, 0 here) the vCPU handler adds from the
    /// full ESR it trapped before it injects (hv merges the injection with
    /// it once more: `walker::merge_trapped_syndrome` is idempotent, so
    /// only ISS2 changes). They matter to L1: hv enables FEAT_GCS for its
    /// guests where the host has it (HCRX_EL2.GCSEn) and shows it to L1.
    pub esr: u32,
    /// FAR_EL2 of the L2 fault (L2's virtual address). Always valid for a
    /// stage-2 fault (FnV = 0), so always carried; the injected fault
    /// reports it with FnV = 0.
    pub far: u64,
}

/// A trapped stage-2 TLBI, to be applied for L1's VMID: the VMID of L1's
/// VTTBR_EL2 when it issued the TLBI, computed from L1's VTTBR_EL2 and
/// VTCR_EL2 with [`crate::vmid::l1_vmid`] (as [`ContextKey::new`] does),
/// so that it names the same contexts as the translate requests. The
/// registers travel with it, so the receiver checks the VMID as it checks
/// a translate's (review 21 F3: a VMID taken from the raw VTTBR field was
/// acked and invalidated nothing).
///
/// Built only through [`InvalidateRequest::new`], so the operand names
/// entries ([`Tlbi::names_entries`]). The raw form and operand travel, not
/// a decoded scope: which entries they name depends on what the receiver
/// shows L1 (FEAT_LPA2) and on L1's VTCR_EL2.DS, so the service decodes
/// them once, with its own parameters (review 32 R32-2: a scope decoded by
/// the sender disagreed with the one applied for an L1 using LPA2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalidateRequest {
    vmid: u16,
    vttbr: u64,
    vtcr: u64,
    tlbi: Tlbi,
    operand: u64,
}

impl InvalidateRequest {
    /// The TLBI L1 issued with `vttbr` and `vtcr` as its VTTBR_EL2 and
    /// VTCR_EL2, `l1_width` being the VMID width L0 exposes to L1
    /// (ID_AA64MMFR1_EL1.VMIDBits). Fails exactly when the operand names
    /// no entries ([`Tlbi::names_entries`]: then there is nothing to send,
    /// the TLBI completes at once).
    pub fn new(
        vttbr: u64,
        vtcr: u64,
        l1_width: crate::VmidWidth,
        tlbi: Tlbi,
        operand: u64,
    ) -> Result<InvalidateRequest, crate::tlbi::TlbiDecodeError> {
        let vmid = crate::vmid::l1_vmid(vttbr, vtcr, l1_width);
        Self::with_vmid(vmid, vttbr, vtcr, tlbi, operand)
    }

    fn with_vmid(
        vmid: u16,
        vttbr: u64,
        vtcr: u64,
        tlbi: Tlbi,
        operand: u64,
    ) -> Result<InvalidateRequest, crate::tlbi::TlbiDecodeError> {
        tlbi.names_entries(operand)?;
        Ok(InvalidateRequest {
            vmid,
            vttbr,
            vtcr,
            tlbi,
            operand,
        })
    }

    /// The VMID in L1's VTTBR_EL2 when it issued the TLBI.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    /// L1's VTTBR_EL2 when it issued the TLBI.
    pub fn vttbr(&self) -> u64 {
        self.vttbr
    }

    /// L1's VTCR_EL2 when it issued the TLBI.
    pub fn vtcr(&self) -> u64 {
        self.vtcr
    }

    /// The architectural form.
    pub fn tlbi(&self) -> Tlbi {
        self.tlbi
    }

    /// The raw `Xt` operand.
    pub fn operand(&self) -> u64 {
        self.operand
    }
}

/// How L0 changed its mapping of L1 memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum L0Change {
    /// The L1 IPA range is no longer mapped (memslot removed).
    Unmap = 0,
    /// The L1 IPA range became read-only (dirty logging, write protection).
    WriteProtect = 1,
}

/// L0 changed its own mapping of an L1 IPA range: drop every shadow entry
/// built on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L0UnmapRequest {
    /// 4 KiB-aligned L1 IPA range.
    pub range: IpaRange,
    /// What changed.
    pub change: L0Change,
}

/// A request from a vCPU to the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// Resolve an L2 stage-2 fault.
    Translate(TranslateRequest),
    /// Apply a trapped TLBI.
    Invalidate(InvalidateRequest),
    /// L0 changed its mapping of L1.
    L0Unmap(L0UnmapRequest),
}

/// Stage-2 access permissions of a shadow mapping (bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// Readable.
    pub const READ: Permissions = Permissions(1 << 0);
    /// Writable.
    pub const WRITE: Permissions = Permissions(1 << 1);
    /// Executable at EL0.
    pub const EXEC_EL0: Permissions = Permissions(1 << 2);
    /// Executable at EL1.
    pub const EXEC_EL1: Permissions = Permissions(1 << 3);
    const ALL_BITS: u8 = 0b1111;

    /// No access.
    pub const fn none() -> Permissions {
        Permissions(0)
    }

    /// Builds from bits; `None` if an unknown bit is set.
    pub const fn from_bits(bits: u8) -> Option<Permissions> {
        if bits & !Permissions::ALL_BITS == 0 {
            Some(Permissions(bits))
        } else {
            None
        }
    }

    /// The bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Union.
    pub const fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// Intersection (composition of two stages).
    pub const fn intersection(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    /// Whether every permission in `other` is present.
    pub const fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Shareability of a mapping (the stage-2 SH\[1:0\] encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemShareability {
    /// Non-shareable.
    NonShareable = 0b00,
    /// Outer Shareable.
    OuterShareable = 0b10,
    /// Inner Shareable.
    InnerShareable = 0b11,
}

/// The shadow entry the service installed for the faulting IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// Output address of the block that contains the faulting L2 IPA,
    /// aligned to its size.
    pub pa: u64,
    /// log2 of the block size, 12..=42.
    pub size_log2: u8,
    /// Permissions (intersection of L1's and L0's).
    pub permissions: Permissions,
    /// Combined stage-2 MemAttr\[3:0\].
    pub mem_attr: u8,
    /// Combined shareability.
    pub shareability: MemShareability,
}

/// A fault to inject into L1's virtual EL2, as the walker reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Injection {
    /// ESR_EL2 value: an instruction (EC 0x20) or data (EC 0x24) abort.
    pub esr: u64,
    /// FAR_EL2 value.
    pub far: u64,
    /// HPFAR_EL2 value.
    pub hpfar: u64,
}

/// Why the vCPU should simply resume L2 and let it fault again if needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RetryReason {
    /// An invalidation overlapped the walk; its result was not installed.
    InvalidationRaced = 0,
    /// Another vCPU installed the entry first.
    AlreadyMapped = 1,
    /// The service is over its memory budget and evicting.
    Throttled = 2,
    /// L1 (or another walker) kept changing the descriptor the walk had to
    /// update (hardware AF/dirty), so the walk gave up for now.
    Contended = 3,
}

/// The L1 IPA is a device L0 emulates for L1: the vCPU handler emulates
/// L2's access to it. What the access does (direction, size, register,
/// sign extension) is in the syndrome the handler trapped (ISV, SAS, SSE,
/// SRT, SF, WnR), which it keeps; the service adds where the access lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Emulation {
    /// The L1 IPA L2's access reaches (page offset included), below
    /// [`ADDRESS_LIMIT`].
    pub l1_ipa: u64,
}

/// Nothing backs the L1 IPA L2's access reaches: the synchronous external
/// abort a bus would give.
///
/// The syndrome is formatted as taken to L1's virtual EL2 (EC 0x20 / 0x24,
/// from a lower EL) with FSC 0b010000 (external abort, not on a walk);
/// where it is delivered follows L1's virtual HCR_EL2 (TEA = 1: L1's EL2;
/// otherwise L2's EL1, with the EC for the EL L2 was in), which the vCPU
/// handler knows and the service does not. HPFAR_EL2 is UNKNOWN for such
/// an abort; the service gives the faulting L2 IPA's page in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExternalAbort {
    /// ESR, FAR (L2's VA, when the request carried one) and HPFAR.
    pub injection: Injection,
    /// The L1 IPA that has nothing behind it, below [`ADDRESS_LIMIT`].
    pub l1_ipa: u64,
}

/// L0's own stage 2 for L1 maps the L1 IPA but denies an access there
/// that L1 did nothing wrong to make: L2's access to its data, which L1's
/// stage 2 allows (L0 write-protects the page for dirty logging, makes it
/// execute-never, or maps it as Device, which is never executable: see
/// shadow-mmu's `compose`), or the walk's own read or hardware update
/// (VTCR_EL2.HA/HD) of a descriptor of L1's stage-2 tables (L0 revoked
/// read access to the table page, or write-protects it). The fault is
/// L0's, not L1's (in the Arm ARM's two-stage model, a stage-2 permission
/// fault at L0): the vCPU handler resolves it as it would a fault of L1's
/// own on that L1 IPA (log the page dirty and give write permission back,
/// ...) and resumes L2, whose access then faults again and is translated
/// afresh. Resuming L2 without that would fault forever: nothing the
/// service installed (at most, for L2's data, the entry for the accesses
/// both stages allow) allows this access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L0Denial {
    /// The L1 IPA L0 denies the access at, below [`ADDRESS_LIMIT`]: L2's
    /// access's (page offset included) or the table descriptor's.
    pub l1_ipa: u64,
    /// What L0's mapping denies.
    pub denied: DeniedAccess,
}

/// What L0 denies in an [`L0Denial`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeniedAccess {
    /// L2's access of this kind to its data at the L1 IPA.
    L2Data(AccessKind),
    /// The walk's read of the descriptor of L1's stage-2 tables at the L1
    /// IPA (L0 maps the table page without read permission).
    L1TableRead,
    /// The walk's hardware update of the descriptor of L1's stage-2 tables
    /// at the L1 IPA: setting AF or the dirty state (L1's VTCR_EL2.HA/HD),
    /// a compare-and-swap, which needs write permission L0 withholds.
    L1TableUpdate,
}

/// [`DeniedAccess::L1TableRead`] on the wire (the byte holds an
/// [`AccessKind`] for [`DeniedAccess::L2Data`]).
const DENIED_L1_TABLE_READ: u8 = 0x80;
/// [`DeniedAccess::L1TableUpdate`] on the wire.
const DENIED_L1_TABLE_UPDATE: u8 = 0x81;

impl DeniedAccess {
    /// The wire byte: an [`AccessKind`]'s code, or a table code.
    const fn code(self) -> u8 {
        match self {
            DeniedAccess::L2Data(access) => access as u8,
            DeniedAccess::L1TableRead => DENIED_L1_TABLE_READ,
            DeniedAccess::L1TableUpdate => DENIED_L1_TABLE_UPDATE,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            DENIED_L1_TABLE_READ => Some(DeniedAccess::L1TableRead),
            DENIED_L1_TABLE_UPDATE => Some(DeniedAccess::L1TableUpdate),
            code => access_from_code(code).map(DeniedAccess::L2Data),
        }
    }
}

/// Why a valid walk result cannot become a shadow entry (the service's
/// `Refusal`). The values are diagnostics: what the service saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unshadowable {
    /// The walk result is not a naturally aligned block of >= 4 KiB.
    MalformedWalk,
    /// The walk result does not translate the L2 IPA.
    L2IpaOutsideWalk {
        /// The L2 IPA.
        l2_ipa: u64,
    },
    /// L0's mapping does not hold the L1 IPA the walk gave.
    L0MappingMismatch {
        /// The L1 IPA.
        l1_ipa: u64,
    },
    /// The L2 IPA needs more input bits than the shadow stage 2 has.
    L2IpaBeyondShadow {
        /// The L2 IPA.
        l2_ipa: u64,
    },
    /// The shadow table cannot map a block of this size.
    UnsupportedSize {
        /// The block size in bytes.
        size: u64,
    },
    /// The L2 IPA or PA base is not aligned to the block size.
    Misaligned {
        /// The L2 IPA base.
        l2_ipa_base: u64,
        /// The PA base.
        pa_base: u64,
    },
    /// The L2 IPA is beyond the shadow table's input size.
    IpaOutOfRange {
        /// The L2 IPA.
        l2_ipa: u64,
    },
    /// The PA is beyond the host's physical address size.
    PaOutOfRange {
        /// The PA.
        pa: u64,
    },
    /// The shadow frame pool is exhausted.
    FramesExhausted {
        /// The pool's budget in frames.
        budget: u64,
    },
    /// A shadow table descriptor names a frame the pool does not own.
    ForeignTable {
        /// The frame's address.
        table: u64,
    },
}

/// The answer to a [`TranslateRequest`]: one variant per outcome of the
/// service's translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TranslateOutcome {
    /// A shadow entry was installed.
    Mapped(Mapping),
    /// L1's tables fault: inject this into L1.
    Inject(Injection),
    /// Resume L2 without change.
    Retry(RetryReason),
    /// MMIO on behalf of L2: emulate the access at this L1 IPA.
    Emulate(Emulation),
    /// The access reaches nothing: deliver this external abort.
    ExternalAbort(ExternalAbort),
    /// The walk result cannot be shadowed.
    Unshadowable(Unshadowable),
    /// L0's mapping of L1 denies an access L1 allows (L2's to its data)
    /// or made no mistake in (the walk's to L1's tables): L0's fault to
    /// resolve before L2 is resumed.
    L0Denied(L0Denial),
}

/// The service finished an [`InvalidateRequest`]; no later L2 access can
/// use a removed entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalidateAck {
    /// Cached results and shadow entries removed (statistics).
    pub entries_dropped: u64,
}

/// The service finished an [`L0UnmapRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L0UnmapAck {
    /// Shadow entries removed (statistics).
    pub entries_removed: u64,
}

/// A reply from the service to a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// Answer to a translate request.
    Translate(TranslateOutcome),
    /// Answer to an invalidate request.
    InvalidateAck(InvalidateAck),
    /// Answer to an L0 unmap request.
    L0UnmapAck(L0UnmapAck),
    /// The request with this sequence number was malformed.
    Error(DecodeError),
}

// ---------------------------------------------------------------------------
// Wire bodies.

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct TranslateWire {
    vttbr: u64,
    vtcr: u64,
    l2_ipa: u64,
    /// FAR_EL2.
    far: u64,
    /// ESR_EL2\[31:0\].
    esr: u32,
    vmid: u16,
    access: u8,
    /// Must be zero (layout 2 carried a FAR option tag here).
    reserved: u8,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct InvalidateWire {
    operand: u64,
    vttbr: u64,
    vtcr: u64,
    vmid: u16,
    op: u8,
    shareability: u8,
    /// Bit 0: nXS.
    flags: u8,
    reserved: [u8; 11],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct L0UnmapWire {
    start: u64,
    end: u64,
    change: u8,
    reserved: [u8; 23],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct MappedWire {
    pa: u64,
    size_log2: u8,
    permissions: u8,
    mem_attr: u8,
    shareability: u8,
    reserved: [u8; 28],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct InjectWire {
    esr: u64,
    far: u64,
    hpfar: u64,
    reserved: [u8; 16],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct EmulateWire {
    l1_ipa: u64,
    reserved: [u8; 32],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct ExternalAbortWire {
    esr: u64,
    far: u64,
    hpfar: u64,
    l1_ipa: u64,
    reserved: [u8; 8],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct UnshadowableWire {
    /// The reason's first value (0 when it has none).
    first: u64,
    /// The reason's second value (0 when it has none).
    second: u64,
    reason: u8,
    reserved: [u8; 23],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct L0DeniedWire {
    l1_ipa: u64,
    /// [`DeniedAccess::code`].
    denied: u8,
    reserved: [u8; 31],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RetryWire {
    reason: u8,
    reserved: [u8; 39],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct CountWire {
    count: u64,
    reserved: [u8; 32],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct ErrorWire {
    detail: u64,
    code: u16,
    kind: u16,
    field: u16,
    reserved: [u8; 26],
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<TranslateWire>() == BODY_SIZE);
    assert!(size_of::<InvalidateWire>() == BODY_SIZE);
    assert!(size_of::<L0UnmapWire>() == BODY_SIZE);
    assert!(size_of::<MappedWire>() == BODY_SIZE);
    assert!(size_of::<InjectWire>() == BODY_SIZE);
    assert!(size_of::<RetryWire>() == BODY_SIZE);
    assert!(size_of::<EmulateWire>() == BODY_SIZE);
    assert!(size_of::<ExternalAbortWire>() == BODY_SIZE);
    assert!(size_of::<UnshadowableWire>() == BODY_SIZE);
    assert!(size_of::<L0DeniedWire>() == BODY_SIZE);
    assert!(size_of::<CountWire>() == BODY_SIZE);
    assert!(size_of::<ErrorWire>() == BODY_SIZE);
    // `body()` views bodies in place at offset 16 of the record.
    assert!(core::mem::align_of::<Record>() == 8);
    assert!(core::mem::offset_of!(Record, body) == 16);
};

/// Views the body as `W` in place (no copy): the body sits at offset 16 of
/// an 8-aligned record, so any body struct (alignment <= 8) fits exactly.
fn body<W: FromBytes + KnownLayout + Immutable>(record: &Record) -> &W {
    match W::ref_from_bytes(&record.body) {
        Ok(wire) => wire,
        // Every body struct is exactly BODY_SIZE bytes with alignment <= 8
        // (asserted above), and the body is 8-aligned.
        Err(_) => unreachable!("body structs are BODY_SIZE bytes, align <= 8"),
    }
}

#[inline]
fn check_reserved<const N: usize>(kind: RecordKind, reserved: &[u8; N]) -> Result<(), DecodeError> {
    if *reserved == [0; N] {
        Ok(())
    } else {
        Err(DecodeError::invalid(kind, Field::Reserved))
    }
}

fn ensure(cond: bool, kind: RecordKind, field: Field) -> Result<(), DecodeError> {
    if cond {
        Ok(())
    } else {
        Err(DecodeError::invalid(kind, field))
    }
}

#[inline]
fn check_header(record: &Record) -> Result<RecordKind, DecodeError> {
    let header = record.header;
    if header.version != LAYOUT_VERSION {
        return Err(DecodeError::Version {
            found: header.version,
        });
    }
    RecordKind::from_u16(header.kind).ok_or(DecodeError::UnknownKind { kind: header.kind })
}

/// Version and kind as one word (one compare on the hot path): what the
/// first four bytes of a valid record of `kind` hold.
const fn header_word(kind: RecordKind) -> u32 {
    LAYOUT_VERSION as u32 | (kind as u32) << 16
}

#[inline(always)]
fn header_word_of(record: &Record) -> u32 {
    u32::from(record.header.version) | u32::from(record.header.kind) << 16
}

#[inline]
fn envelope<T>(record: &Record, message: T) -> Envelope<T> {
    Envelope {
        vcpu: VcpuId(record.header.vcpu),
        seq: record.header.seq,
        message,
    }
}

fn tlbi_op_code(op: TlbiOp) -> u8 {
    match op {
        TlbiOp::Vmalls12e1 => 0,
        TlbiOp::Alle1 => 1,
        TlbiOp::Ipas2e1 => 2,
        TlbiOp::Ipas2le1 => 3,
        TlbiOp::Ripas2e1 => 4,
        TlbiOp::Ripas2le1 => 5,
    }
}

fn tlbi_op_from_code(code: u8) -> Option<TlbiOp> {
    Some(match code {
        0 => TlbiOp::Vmalls12e1,
        1 => TlbiOp::Alle1,
        2 => TlbiOp::Ipas2e1,
        3 => TlbiOp::Ipas2le1,
        4 => TlbiOp::Ripas2e1,
        5 => TlbiOp::Ripas2le1,
        _ => return None,
    })
}

fn shareability_code(sh: Shareability) -> u8 {
    match sh {
        Shareability::NonShareable => 0,
        Shareability::InnerShareable => 1,
        Shareability::OuterShareable => 2,
    }
}

fn shareability_from_code(code: u8) -> Option<Shareability> {
    Some(match code {
        0 => Shareability::NonShareable,
        1 => Shareability::InnerShareable,
        2 => Shareability::OuterShareable,
        _ => return None,
    })
}

fn range_is_valid(start: u64, end: u64) -> bool {
    start < end && start.is_multiple_of(4096) && end.is_multiple_of(4096) && end <= ADDRESS_LIMIT
}

impl TranslateRequest {
    /// Encodes this translate request over every byte of `out`, as
    /// [`Request::encode_into`] does (the fault path, without the dispatch
    /// on the request kind).
    #[inline]
    pub fn encode_into(&self, vcpu: VcpuId, seq: u64, out: &mut Record) {
        out.fill(
            RecordKind::Translate,
            vcpu,
            seq,
            TranslateWire {
                vttbr: self.context.vttbr,
                vtcr: self.context.vtcr,
                l2_ipa: self.l2_ipa,
                far: self.far,
                esr: self.esr,
                vmid: self.context.vmid,
                access: self.access as u8,
                reserved: 0,
            },
        )
    }
}

impl Request {
    /// The record kind this request encodes to.
    pub fn kind(&self) -> RecordKind {
        match self {
            Request::Translate(_) => RecordKind::Translate,
            Request::Invalidate(_) => RecordKind::Invalidate,
            Request::L0Unmap(_) => RecordKind::L0Unmap,
        }
    }

    /// Encodes the request as a record from `vcpu` with sequence `seq`.
    #[inline]
    pub fn encode(&self, vcpu: VcpuId, seq: u64) -> Record {
        let mut record = Record::ZERO;
        self.encode_into(vcpu, seq, &mut record);
        record
    }

    /// Encodes the request over every byte of `out` (typically a ring
    /// slot, through [`crate::Producer::push_in_place`]).
    #[inline]
    pub fn encode_into(&self, vcpu: VcpuId, seq: u64, out: &mut Record) {
        match self {
            Request::Translate(t) => t.encode_into(vcpu, seq, out),
            Request::Invalidate(inv) => out.fill(
                RecordKind::Invalidate,
                vcpu,
                seq,
                InvalidateWire {
                    operand: inv.operand,
                    vttbr: inv.vttbr,
                    vtcr: inv.vtcr,
                    vmid: inv.vmid,
                    op: tlbi_op_code(inv.tlbi.op),
                    shareability: shareability_code(inv.tlbi.shareability),
                    flags: u8::from(inv.tlbi.nxs),
                    reserved: [0; 11],
                },
            ),
            Request::L0Unmap(unmap) => out.fill(
                RecordKind::L0Unmap,
                vcpu,
                seq,
                L0UnmapWire {
                    start: unmap.range.start(),
                    end: unmap.range.end(),
                    change: unmap.change as u8,
                    reserved: [0; 23],
                },
            ),
        }
    }
}

/// Validates a record received on a request ring.
///
/// The translate request (the fault path) is recognised by one compare of
/// its version and kind; every other record goes through the general
/// header check. Both paths validate the same fields.
#[inline]
pub fn decode_request(record: &Record) -> Result<Envelope<Request>, DecodeError> {
    if header_word_of(record) == header_word(RecordKind::Translate) {
        let request = decode_translate_body(record)?;
        return Ok(envelope(record, Request::Translate(request)));
    }
    decode_request_general(record)
}

/// ESR EC of an instruction abort from a lower EL.
const EC_INSTRUCTION_ABORT_LOWER: u32 = 0x20;
/// ESR EC of a data abort from a lower EL.
const EC_DATA_ABORT_LOWER: u32 = 0x24;
/// ESR ISS bit 7: the stage-2 fault was on L2's stage-1 walk.
const ESR_S1PTW: u32 = 1 << 7;
/// ESR ISS bit 10: FAR is not valid.
const ESR_FNV: u32 = 1 << 10;
/// ESR ISS bit 6 of a data abort: the access was a write.
const ESR_WNR: u32 = 1 << 6;
/// ESR ISS.CM: a cache maintenance or address translation instruction.
const ESR_CM: u32 = 1 << 8;

/// Whether `fsc`, an IFSC/DFSC (ESR ISS\[5:0\]), reports a fault a
/// stage-2 walk can give (Arm ARM, ESR_ELx ISS encoding for an instruction
/// or data abort):
/// - 0b0000LL address size fault, level 0-3;
/// - 0b0001LL translation fault, level 0-3;
/// - 0b0010LL access flag fault, level 0-3 (level 0 with FEAT_LPA2);
/// - 0b0011LL permission fault, level 0-3 (level 0 with FEAT_LPA2);
/// - 0b101001 address size fault, level -1 (FEAT_LPA2);
/// - 0b101011 translation fault, level -1 (FEAT_LPA2).
///
/// The FEAT_D128 level -2 codes (0b101010, 0b101100) are not accepted: the
/// faulting stage 2 is the service's shadow table, which uses 64-bit
/// descriptors. External aborts, tag check, alignment, granule protection,
/// TLB conflict and IMPLEMENTATION DEFINED codes are not stage-2 walk
/// faults.
pub const fn is_stage2_fault_code(fsc: u32) -> bool {
    matches!(fsc, 0b00_0000..=0b00_1111 | 0b10_1001 | 0b10_1011)
}

/// Checks that a translate request's syndrome is a stage-2 fault from a
/// lower EL with a valid FAR (see [`TranslateRequest`]).
#[inline(always)]
fn check_stage2_syndrome(esr: u32) -> Result<(), Field> {
    let ec = esr >> 26;
    if !(ec == EC_INSTRUCTION_ABORT_LOWER || ec == EC_DATA_ABORT_LOWER)
        || !is_stage2_fault_code(esr & 0x3f)
    {
        return Err(Field::Syndrome);
    }
    if esr & ESR_FNV != 0 {
        return Err(Field::Far);
    }
    Ok(())
}

/// Whether a stage-2 fault syndrome agrees with the access kind (see
/// [`TranslateRequest`]).
#[inline(always)]
fn syndrome_agrees_with_access(esr: u32, access: AccessKind) -> bool {
    let fetch = matches!(access, AccessKind::Execute | AccessKind::ExecuteEl0);
    let cache_maintenance = matches!(
        access,
        AccessKind::CacheMaintenance | AccessKind::CacheMaintenanceEl0
    );
    if esr & ESR_S1PTW != 0 {
        !fetch && !cache_maintenance
    } else if esr >> 26 == EC_DATA_ABORT_LOWER {
        if esr & ESR_CM != 0 {
            cache_maintenance && esr & ESR_WNR != 0
        } else {
            !fetch && !cache_maintenance && (esr & ESR_WNR != 0) == (access == AccessKind::Write)
        }
    } else {
        fetch
    }
}

impl TranslateRequest {
    /// Checks the invariants [`decode_request`] enforces, so a sender can
    /// refuse to put a request on the ring that the service would answer
    /// with an error.
    pub fn validate(&self) -> Result<(), Field> {
        check_stage2_syndrome(self.esr)?;
        if !syndrome_agrees_with_access(self.esr, self.access) {
            return Err(Field::Access);
        }
        if self.l2_ipa >= ADDRESS_LIMIT {
            return Err(Field::Address);
        }
        self.context.validate()
    }
}

/// The access kind of a wire code.
#[inline(always)]
fn access_from_code(code: u8) -> Option<AccessKind> {
    Some(match code {
        0 => AccessKind::Read,
        1 => AccessKind::Write,
        2 => AccessKind::Execute,
        3 => AccessKind::ExecuteEl0,
        4 => AccessKind::CacheMaintenance,
        5 => AccessKind::CacheMaintenanceEl0,
        _ => return None,
    })
}

/// The body of a translate request: an IPA below [`ADDRESS_LIMIT`], a
/// known access kind that agrees with a stage-2 fault syndrome with
/// FnV = 0 (see [`TranslateRequest`]), a zero reserved byte.
#[inline(always)]
fn decode_translate_body(record: &Record) -> Result<TranslateRequest, DecodeError> {
    let kind = RecordKind::Translate;
    let w: &TranslateWire = body(record);
    check_stage2_syndrome(w.esr).map_err(|field| DecodeError::invalid(kind, field))?;
    let access = access_from_code(w.access).ok_or(DecodeError::invalid(kind, Field::Access))?;
    ensure(
        syndrome_agrees_with_access(w.esr, access),
        kind,
        Field::Access,
    )?;
    ensure(w.l2_ipa < ADDRESS_LIMIT, kind, Field::Address)?;
    let context = ContextKey {
        vmid: w.vmid,
        vttbr: w.vttbr,
        vtcr: w.vtcr,
    };
    context
        .validate()
        .map_err(|field| DecodeError::invalid(kind, field))?;
    ensure(w.reserved == 0, kind, Field::Reserved)?;
    Ok(TranslateRequest {
        context,
        l2_ipa: w.l2_ipa,
        access,
        esr: w.esr,
        far: w.far,
    })
}

#[inline(never)]
fn decode_request_general(record: &Record) -> Result<Envelope<Request>, DecodeError> {
    let kind = check_header(record)?;
    if !kind.is_request() {
        return Err(DecodeError::WrongDirection { kind: kind as u16 });
    }
    let request = match kind {
        RecordKind::Translate => Request::Translate(decode_translate_body(record)?),
        RecordKind::Invalidate => {
            let w: &InvalidateWire = body(record);
            check_reserved(kind, &w.reserved)?;
            let op = tlbi_op_from_code(w.op).ok_or(DecodeError::invalid(kind, Field::TlbiForm))?;
            let shareability = shareability_from_code(w.shareability)
                .ok_or(DecodeError::invalid(kind, Field::TlbiForm))?;
            ensure(w.flags <= 1, kind, Field::TlbiForm)?;
            let tlbi = Tlbi {
                op,
                shareability,
                nxs: w.flags & 1 != 0,
            };
            // As a translate's context: a VMID the registers do not name
            // for any width would invalidate contexts it should not.
            ensure(
                crate::vmid::vmid_agrees(w.vmid, w.vttbr, w.vtcr),
                kind,
                Field::Vmid,
            )?;
            let inv = InvalidateRequest::with_vmid(w.vmid, w.vttbr, w.vtcr, tlbi, w.operand)
                .map_err(|_| DecodeError::invalid(kind, Field::TlbiOperand))?;
            Request::Invalidate(inv)
        }
        RecordKind::L0Unmap => {
            let w: &L0UnmapWire = body(record);
            check_reserved(kind, &w.reserved)?;
            let change = match w.change {
                0 => L0Change::Unmap,
                1 => L0Change::WriteProtect,
                _ => return Err(DecodeError::invalid(kind, Field::L0Change)),
            };
            ensure(range_is_valid(w.start, w.end), kind, Field::Range)?;
            let range =
                IpaRange::new(w.start, w.end).ok_or(DecodeError::invalid(kind, Field::Range))?;
            Request::L0Unmap(L0UnmapRequest { range, change })
        }
        _ => return Err(DecodeError::WrongDirection { kind: kind as u16 }),
    };
    Ok(envelope(record, request))
}

impl Mapping {
    /// Checks the invariants [`decode_reply`] enforces.
    #[inline]
    pub fn validate(&self) -> Result<(), Field> {
        if !(12..=42).contains(&self.size_log2) {
            return Err(Field::BlockSize);
        }
        if self.pa >= ADDRESS_LIMIT {
            return Err(Field::Address);
        }
        if self.pa & ((1u64 << self.size_log2) - 1) != 0 {
            return Err(Field::Alignment);
        }
        if self.mem_attr > 0xf {
            return Err(Field::MemAttr);
        }
        Ok(())
    }
}

impl L0Denial {
    /// Checks the invariants [`decode_reply`] enforces: an L1 IPA below
    /// [`ADDRESS_LIMIT`].
    pub fn validate(&self) -> Result<(), Field> {
        if self.l1_ipa >= ADDRESS_LIMIT {
            return Err(Field::Address);
        }
        Ok(())
    }
}

/// HPFAR_EL2.FIPA: IPA\[51:12\] in bits \[43:4\] (addresses are below
/// [`ADDRESS_LIMIT`]).
pub const HPFAR_FIPA: u64 = 0x0000_0fff_ffff_fff0;
/// HPFAR_EL2.NS (FEAT_SEL2): the faulting IPA is in the Non-secure space.
pub const HPFAR_NS: u64 = 1 << 63;

impl Injection {
    /// Checks the invariants [`decode_reply`] enforces: an instruction or
    /// data abort from a lower EL (EC 0x20 / 0x24), ESR_EL2\[63:56\] RES0,
    /// and HPFAR_EL2 with nothing set outside FIPA (\[43:4\]: an IPA below
    /// [`ADDRESS_LIMIT`]) and NS (bit 63).
    #[inline]
    pub fn validate(&self) -> Result<(), Field> {
        let ec = (self.esr >> 26) & 0x3f;
        if !(ec == 0x20 || ec == 0x24) || self.esr >> 56 != 0 {
            return Err(Field::Syndrome);
        }
        if self.hpfar & !(HPFAR_FIPA | HPFAR_NS) != 0 {
            return Err(Field::FaultAddress);
        }
        Ok(())
    }
}

/// FSC (IFSC/DFSC) of a synchronous external abort not on a walk.
pub const FSC_EXTERNAL_ABORT: u64 = 0b01_0000;

impl ExternalAbort {
    /// Checks the invariants [`decode_reply`] enforces: a valid
    /// [`Injection`] whose FSC is [`FSC_EXTERNAL_ABORT`] with IL = 1 and
    /// S1PTW = 0 (RES0 for anything but a stage-2 fault), a FAR of 0 when
    /// FnV = 1 (its value is UNKNOWN then; 0 keeps one encoding), and an
    /// L1 IPA below [`ADDRESS_LIMIT`].
    pub fn validate(&self) -> Result<(), Field> {
        self.injection.validate()?;
        let esr = self.injection.esr;
        if esr & 0x3f != FSC_EXTERNAL_ABORT || esr & (1 << 25) == 0 || esr & (1 << 7) != 0 {
            return Err(Field::Syndrome);
        }
        if esr & (1 << 10) != 0 && self.injection.far != 0 {
            return Err(Field::Far);
        }
        if self.l1_ipa >= ADDRESS_LIMIT {
            return Err(Field::Address);
        }
        Ok(())
    }
}

impl Unshadowable {
    /// The wire code and the two values (zero where unused).
    fn to_wire(self) -> (u8, u64, u64) {
        match self {
            Unshadowable::MalformedWalk => (0, 0, 0),
            Unshadowable::L2IpaOutsideWalk { l2_ipa } => (1, l2_ipa, 0),
            Unshadowable::L0MappingMismatch { l1_ipa } => (2, l1_ipa, 0),
            Unshadowable::L2IpaBeyondShadow { l2_ipa } => (3, l2_ipa, 0),
            Unshadowable::UnsupportedSize { size } => (4, size, 0),
            Unshadowable::Misaligned {
                l2_ipa_base,
                pa_base,
            } => (5, l2_ipa_base, pa_base),
            Unshadowable::IpaOutOfRange { l2_ipa } => (6, l2_ipa, 0),
            Unshadowable::PaOutOfRange { pa } => (7, pa, 0),
            Unshadowable::FramesExhausted { budget } => (8, budget, 0),
            Unshadowable::ForeignTable { table } => (9, table, 0),
        }
    }

    /// The reason for a wire code and values: `UnshadowableReason` for an
    /// unknown code, `Reserved` for a value the reason does not use that is
    /// not zero (so each reason has one encoding).
    fn from_wire(code: u8, first: u64, second: u64) -> Result<Unshadowable, Field> {
        let one = |make: fn(u64) -> Unshadowable| {
            if second == 0 {
                Ok(make(first))
            } else {
                Err(Field::Reserved)
            }
        };
        match code {
            0 if first == 0 && second == 0 => Ok(Unshadowable::MalformedWalk),
            0 => Err(Field::Reserved),
            1 => one(|l2_ipa| Unshadowable::L2IpaOutsideWalk { l2_ipa }),
            2 => one(|l1_ipa| Unshadowable::L0MappingMismatch { l1_ipa }),
            3 => one(|l2_ipa| Unshadowable::L2IpaBeyondShadow { l2_ipa }),
            4 => one(|size| Unshadowable::UnsupportedSize { size }),
            5 => Ok(Unshadowable::Misaligned {
                l2_ipa_base: first,
                pa_base: second,
            }),
            6 => one(|l2_ipa| Unshadowable::IpaOutOfRange { l2_ipa }),
            7 => one(|pa| Unshadowable::PaOutOfRange { pa }),
            8 => one(|budget| Unshadowable::FramesExhausted { budget }),
            9 => one(|table| Unshadowable::ForeignTable { table }),
            _ => Err(Field::UnshadowableReason),
        }
    }
}

// Error reply codes.
const ERR_LENGTH: u16 = 1;
const ERR_VERSION: u16 = 2;
const ERR_UNKNOWN_KIND: u16 = 3;
const ERR_WRONG_DIRECTION: u16 = 4;
const ERR_VCPU_MISMATCH: u16 = 5;
const ERR_INVALID: u16 = 6;

fn error_wire(error: &DecodeError) -> ErrorWire {
    let (code, kind, field, detail) = match *error {
        DecodeError::Length { found } => (ERR_LENGTH, 0, 0, found),
        DecodeError::Version { found } => (ERR_VERSION, 0, 0, u64::from(found)),
        DecodeError::UnknownKind { kind } => (ERR_UNKNOWN_KIND, kind, 0, 0),
        DecodeError::WrongDirection { kind } => (ERR_WRONG_DIRECTION, kind, 0, 0),
        DecodeError::VcpuMismatch { found } => (ERR_VCPU_MISMATCH, 0, 0, u64::from(found)),
        DecodeError::Invalid { kind, field } => (ERR_INVALID, kind, field as u16, 0),
    };
    ErrorWire {
        detail,
        code,
        kind,
        field,
        reserved: [0; 26],
    }
}

fn error_from_wire(w: &ErrorWire) -> Result<DecodeError, DecodeError> {
    let bad = DecodeError::invalid(RecordKind::Error, Field::ErrorCode);
    // Fields a code does not use must be zero, so the encoding is unique.
    let only = |kind_used: bool, field_used: bool, detail_used: bool| {
        (kind_used || w.kind == 0) && (field_used || w.field == 0) && (detail_used || w.detail == 0)
    };
    let error = match w.code {
        ERR_LENGTH if only(false, false, true) => DecodeError::Length { found: w.detail },
        ERR_VERSION if only(false, false, true) => DecodeError::Version {
            found: u16::try_from(w.detail).map_err(|_| bad)?,
        },
        ERR_UNKNOWN_KIND if only(true, false, false) => DecodeError::UnknownKind { kind: w.kind },
        ERR_WRONG_DIRECTION if only(true, false, false) => {
            DecodeError::WrongDirection { kind: w.kind }
        }
        ERR_VCPU_MISMATCH if only(false, false, true) => DecodeError::VcpuMismatch {
            found: u32::try_from(w.detail).map_err(|_| bad)?,
        },
        ERR_INVALID if only(true, true, false) => DecodeError::Invalid {
            kind: w.kind,
            field: Field::from_u16(w.field).ok_or(bad)?,
        },
        _ => return Err(bad),
    };
    Ok(error)
}

impl Reply {
    /// The record kind this reply encodes to.
    pub fn kind(&self) -> RecordKind {
        match self {
            Reply::Translate(TranslateOutcome::Mapped(_)) => RecordKind::Mapped,
            Reply::Translate(TranslateOutcome::Inject(_)) => RecordKind::Inject,
            Reply::Translate(TranslateOutcome::Retry(_)) => RecordKind::Retry,
            Reply::Translate(TranslateOutcome::Emulate(_)) => RecordKind::Emulate,
            Reply::Translate(TranslateOutcome::ExternalAbort(_)) => RecordKind::ExternalAbort,
            Reply::Translate(TranslateOutcome::Unshadowable(_)) => RecordKind::Unshadowable,
            Reply::Translate(TranslateOutcome::L0Denied(_)) => RecordKind::L0Denied,
            Reply::InvalidateAck(_) => RecordKind::InvalidateAck,
            Reply::L0UnmapAck(_) => RecordKind::L0UnmapAck,
            Reply::Error(_) => RecordKind::Error,
        }
    }

    /// Encodes the reply to request `seq` of `vcpu`.
    #[inline]
    pub fn encode(&self, vcpu: VcpuId, seq: u64) -> Record {
        let mut record = Record::ZERO;
        self.encode_into(vcpu, seq, &mut record);
        record
    }

    /// Encodes the reply over every byte of `out` (typically a ring slot).
    #[inline]
    pub fn encode_into(&self, vcpu: VcpuId, seq: u64, out: &mut Record) {
        let kind = self.kind();
        match self {
            Reply::Translate(TranslateOutcome::Mapped(m)) => out.fill(
                kind,
                vcpu,
                seq,
                MappedWire {
                    pa: m.pa,
                    size_log2: m.size_log2,
                    permissions: m.permissions.bits(),
                    mem_attr: m.mem_attr,
                    shareability: m.shareability as u8,
                    reserved: [0; 28],
                },
            ),
            Reply::Translate(TranslateOutcome::Inject(i)) => out.fill(
                kind,
                vcpu,
                seq,
                InjectWire {
                    esr: i.esr,
                    far: i.far,
                    hpfar: i.hpfar,
                    reserved: [0; 16],
                },
            ),
            Reply::Translate(TranslateOutcome::Retry(reason)) => out.fill(
                kind,
                vcpu,
                seq,
                RetryWire {
                    reason: *reason as u8,
                    reserved: [0; 39],
                },
            ),
            Reply::Translate(TranslateOutcome::Emulate(e)) => out.fill(
                kind,
                vcpu,
                seq,
                EmulateWire {
                    l1_ipa: e.l1_ipa,
                    reserved: [0; 32],
                },
            ),
            Reply::Translate(TranslateOutcome::ExternalAbort(a)) => out.fill(
                kind,
                vcpu,
                seq,
                ExternalAbortWire {
                    esr: a.injection.esr,
                    far: a.injection.far,
                    hpfar: a.injection.hpfar,
                    l1_ipa: a.l1_ipa,
                    reserved: [0; 8],
                },
            ),
            Reply::Translate(TranslateOutcome::Unshadowable(u)) => {
                let (reason, first, second) = u.to_wire();
                out.fill(
                    kind,
                    vcpu,
                    seq,
                    UnshadowableWire {
                        first,
                        second,
                        reason,
                        reserved: [0; 23],
                    },
                )
            }
            Reply::Translate(TranslateOutcome::L0Denied(d)) => out.fill(
                kind,
                vcpu,
                seq,
                L0DeniedWire {
                    l1_ipa: d.l1_ipa,
                    denied: d.denied.code(),
                    reserved: [0; 31],
                },
            ),
            Reply::InvalidateAck(ack) => out.fill(
                kind,
                vcpu,
                seq,
                CountWire {
                    count: ack.entries_dropped,
                    reserved: [0; 32],
                },
            ),
            Reply::L0UnmapAck(ack) => out.fill(
                kind,
                vcpu,
                seq,
                CountWire {
                    count: ack.entries_removed,
                    reserved: [0; 32],
                },
            ),
            Reply::Error(error) => out.fill(kind, vcpu, seq, error_wire(error)),
        }
    }
}

/// Validates a record received on a reply ring.
///
/// A mapping (the common answer to a fault) is recognised by one compare
/// of its version and kind; every other record goes through the general
/// header check. Both paths validate the same fields.
#[inline]
pub fn decode_reply(record: &Record) -> Result<Envelope<Reply>, DecodeError> {
    if header_word_of(record) == header_word(RecordKind::Mapped) {
        let mapping = decode_mapped_body(record)?;
        return Ok(envelope(
            record,
            Reply::Translate(TranslateOutcome::Mapped(mapping)),
        ));
    }
    decode_reply_general(record)
}

/// The body of a mapping: reserved bytes zero, known permission bits, a
/// valid shareability encoding, and [`Mapping::validate`].
#[inline(always)]
fn decode_mapped_body(record: &Record) -> Result<Mapping, DecodeError> {
    let kind = RecordKind::Mapped;
    let w: &MappedWire = body(record);
    check_reserved(kind, &w.reserved)?;
    let permissions = Permissions::from_bits(w.permissions)
        .ok_or(DecodeError::invalid(kind, Field::Permissions))?;
    let shareability = match w.shareability {
        0b00 => MemShareability::NonShareable,
        0b10 => MemShareability::OuterShareable,
        0b11 => MemShareability::InnerShareable,
        _ => return Err(DecodeError::invalid(kind, Field::Shareability)),
    };
    let mapping = Mapping {
        pa: w.pa,
        size_log2: w.size_log2,
        permissions,
        mem_attr: w.mem_attr,
        shareability,
    };
    mapping
        .validate()
        .map_err(|field| DecodeError::invalid(kind, field))?;
    Ok(mapping)
}

#[inline(never)]
fn decode_reply_general(record: &Record) -> Result<Envelope<Reply>, DecodeError> {
    let kind = check_header(record)?;
    if kind.is_request() {
        return Err(DecodeError::WrongDirection { kind: kind as u16 });
    }
    let reply = match kind {
        RecordKind::Mapped => {
            Reply::Translate(TranslateOutcome::Mapped(decode_mapped_body(record)?))
        }
        RecordKind::Inject => {
            let w: &InjectWire = body(record);
            check_reserved(kind, &w.reserved)?;
            let injection = Injection {
                esr: w.esr,
                far: w.far,
                hpfar: w.hpfar,
            };
            injection
                .validate()
                .map_err(|field| DecodeError::invalid(kind, field))?;
            Reply::Translate(TranslateOutcome::Inject(injection))
        }
        RecordKind::Retry => {
            let w: &RetryWire = body(record);
            check_reserved(kind, &w.reserved)?;
            let reason = match w.reason {
                0 => RetryReason::InvalidationRaced,
                1 => RetryReason::AlreadyMapped,
                2 => RetryReason::Throttled,
                3 => RetryReason::Contended,
                _ => return Err(DecodeError::invalid(kind, Field::RetryReason)),
            };
            Reply::Translate(TranslateOutcome::Retry(reason))
        }
        RecordKind::Emulate => {
            let w: &EmulateWire = body(record);
            check_reserved(kind, &w.reserved)?;
            ensure(w.l1_ipa < ADDRESS_LIMIT, kind, Field::Address)?;
            Reply::Translate(TranslateOutcome::Emulate(Emulation { l1_ipa: w.l1_ipa }))
        }
        RecordKind::ExternalAbort => {
            let w: &ExternalAbortWire = body(record);
            check_reserved(kind, &w.reserved)?;
            let abort = ExternalAbort {
                injection: Injection {
                    esr: w.esr,
                    far: w.far,
                    hpfar: w.hpfar,
                },
                l1_ipa: w.l1_ipa,
            };
            abort
                .validate()
                .map_err(|field| DecodeError::invalid(kind, field))?;
            Reply::Translate(TranslateOutcome::ExternalAbort(abort))
        }
        RecordKind::Unshadowable => {
            let w: &UnshadowableWire = body(record);
            check_reserved(kind, &w.reserved)?;
            let reason = Unshadowable::from_wire(w.reason, w.first, w.second)
                .map_err(|field| DecodeError::invalid(kind, field))?;
            Reply::Translate(TranslateOutcome::Unshadowable(reason))
        }
        RecordKind::L0Denied => {
            let w: &L0DeniedWire = body(record);
            check_reserved(kind, &w.reserved)?;
            let denied = DeniedAccess::from_code(w.denied)
                .ok_or(DecodeError::invalid(kind, Field::Access))?;
            let denial = L0Denial {
                l1_ipa: w.l1_ipa,
                denied,
            };
            denial
                .validate()
                .map_err(|field| DecodeError::invalid(kind, field))?;
            Reply::Translate(TranslateOutcome::L0Denied(denial))
        }
        RecordKind::InvalidateAck => {
            let w: &CountWire = body(record);
            check_reserved(kind, &w.reserved)?;
            Reply::InvalidateAck(InvalidateAck {
                entries_dropped: w.count,
            })
        }
        RecordKind::L0UnmapAck => {
            let w: &CountWire = body(record);
            check_reserved(kind, &w.reserved)?;
            Reply::L0UnmapAck(L0UnmapAck {
                entries_removed: w.count,
            })
        }
        RecordKind::Error => {
            let w: &ErrorWire = body(record);
            check_reserved(kind, &w.reserved)?;
            Reply::Error(error_from_wire(w)?)
        }
        _ => return Err(DecodeError::WrongDirection { kind: kind as u16 }),
    };
    Ok(envelope(record, reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlbi::{Granule, RangeOperand};
    use proptest::prelude::*;

    fn access() -> impl Strategy<Value = AccessKind> {
        prop_oneof![
            Just(AccessKind::Read),
            Just(AccessKind::Write),
            Just(AccessKind::Execute),
            Just(AccessKind::ExecuteEl0),
            Just(AccessKind::CacheMaintenance),
            Just(AccessKind::CacheMaintenanceEl0)
        ]
    }

    fn tlbi_form() -> impl Strategy<Value = Tlbi> {
        let op = prop_oneof![
            Just(TlbiOp::Vmalls12e1),
            Just(TlbiOp::Alle1),
            Just(TlbiOp::Ipas2e1),
            Just(TlbiOp::Ipas2le1),
            Just(TlbiOp::Ripas2e1),
            Just(TlbiOp::Ripas2le1)
        ];
        let sh = prop_oneof![
            Just(Shareability::NonShareable),
            Just(Shareability::InnerShareable),
            Just(Shareability::OuterShareable)
        ];
        (op, sh, any::<bool>()).prop_map(|(op, shareability, nxs)| Tlbi {
            op,
            shareability,
            nxs,
        })
    }

    /// The stage-2 fault codes [`is_stage2_fault_code`] accepts.
    fn stage2_fsc() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..=0x0f, Just(0x29), Just(0x2b)]
    }

    /// A valid translate request: a stage-2 fault code, FnV clear, the
    /// syndrome agrees with the access (a stage-1 walk fault is a read or
    /// write, for a fetch or data access; WnR gives a data access's
    /// direction).
    fn translate_request() -> impl Strategy<Value = TranslateRequest> {
        (
            (any::<bool>(), any::<u64>(), any::<u64>(), 0..ADDRESS_LIMIT),
            access(),
            (any::<bool>(), any::<bool>(), 0u32..(1 << 25), stage2_fsc()),
            any::<u64>(),
        )
            .prop_map(
                |(
                    (vmid16, vttbr, vtcr, l2_ipa),
                    access,
                    (s1ptw, walk_for_fetch, iss, fsc),
                    far,
                )| {
                    let width = if vmid16 {
                        crate::VmidWidth::Bits16
                    } else {
                        crate::VmidWidth::Bits8
                    };
                    let fetch = matches!(access, AccessKind::Execute | AccessKind::ExecuteEl0);
                    let cache_maintenance = matches!(
                        access,
                        AccessKind::CacheMaintenance | AccessKind::CacheMaintenanceEl0
                    );
                    let (access, ec) = if s1ptw {
                        let walk_access = if fetch || cache_maintenance {
                            AccessKind::Read
                        } else {
                            access
                        };
                        (walk_access, if walk_for_fetch { 0x20 } else { 0x24 })
                    } else {
                        (access, if fetch { 0x20 } else { 0x24 })
                    };
                    let mut iss = iss & !(ESR_S1PTW | ESR_FNV | 0x3f) | fsc;
                    if s1ptw {
                        iss |= ESR_S1PTW;
                    } else if ec == 0x24 {
                        iss &= !(ESR_WNR | ESR_CM);
                        if access == AccessKind::Write {
                            iss |= ESR_WNR;
                        }
                        if cache_maintenance {
                            iss |= ESR_CM | ESR_WNR;
                        }
                    }
                    TranslateRequest {
                        context: ContextKey::new(vttbr, vtcr, width),
                        l2_ipa,
                        access,
                        esr: ec << 26 | iss,
                        far,
                    }
                },
            )
    }

    fn unshadowable() -> impl Strategy<Value = Unshadowable> {
        (0u8..10, any::<u64>(), any::<u64>()).prop_map(|(code, a, b)| match code {
            0 => Unshadowable::MalformedWalk,
            1 => Unshadowable::L2IpaOutsideWalk { l2_ipa: a },
            2 => Unshadowable::L0MappingMismatch { l1_ipa: a },
            3 => Unshadowable::L2IpaBeyondShadow { l2_ipa: a },
            4 => Unshadowable::UnsupportedSize { size: a },
            5 => Unshadowable::Misaligned {
                l2_ipa_base: a,
                pa_base: b,
            },
            6 => Unshadowable::IpaOutOfRange { l2_ipa: a },
            7 => Unshadowable::PaOutOfRange { pa: a },
            8 => Unshadowable::FramesExhausted { budget: a },
            _ => Unshadowable::ForeignTable { table: a },
        })
    }

    fn request() -> impl Strategy<Value = Request> {
        let translate = translate_request().prop_map(Request::Translate);
        let invalidate = (any::<(u64, u64, bool)>(), tlbi_form(), any::<u64>()).prop_filter_map(
            "operand names nothing",
            |((vttbr, vtcr, wide), tlbi, xt)| {
                let width = if wide {
                    crate::VmidWidth::Bits16
                } else {
                    crate::VmidWidth::Bits8
                };
                InvalidateRequest::new(vttbr, vtcr, width, tlbi, xt)
                    .ok()
                    .map(Request::Invalidate)
            },
        );
        let unmap = (0..(ADDRESS_LIMIT >> 12), 1..(1u64 << 20), any::<bool>()).prop_map(
            |(start_page, pages, wp)| {
                let start = start_page << 12;
                let end = (start + (pages << 12)).min(ADDRESS_LIMIT);
                Request::L0Unmap(L0UnmapRequest {
                    range: IpaRange::new(start, end.max(start + 4096)).unwrap(),
                    change: if wp {
                        L0Change::WriteProtect
                    } else {
                        L0Change::Unmap
                    },
                })
            },
        );
        prop_oneof![translate, invalidate, unmap]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let mapped = (12u8..=42, any::<u64>(), 0u8..16, 0u8..16, 0usize..3).prop_map(
            |(size_log2, pa, perms, mem_attr, sh)| {
                let pa = (pa % ADDRESS_LIMIT) & !((1u64 << size_log2) - 1);
                Reply::Translate(TranslateOutcome::Mapped(Mapping {
                    pa,
                    size_log2,
                    permissions: Permissions::from_bits(perms).unwrap(),
                    mem_attr,
                    shareability: [
                        MemShareability::NonShareable,
                        MemShareability::OuterShareable,
                        MemShareability::InnerShareable,
                    ][sh],
                }))
            },
        );
        let inject = (any::<bool>(), 0u64..(1 << 25), any::<u64>(), any::<u64>()).prop_map(
            |(data, iss, far, hpfar)| {
                let ec: u64 = if data { 0x24 } else { 0x20 };
                Reply::Translate(TranslateOutcome::Inject(Injection {
                    esr: ec << 26 | 1 << 25 | iss,
                    far,
                    hpfar: hpfar & (HPFAR_FIPA | HPFAR_NS),
                }))
            },
        );
        let retry = prop_oneof![
            Just(RetryReason::InvalidationRaced),
            Just(RetryReason::AlreadyMapped),
            Just(RetryReason::Throttled),
            Just(RetryReason::Contended)
        ]
        .prop_map(|r| Reply::Translate(TranslateOutcome::Retry(r)));
        let emulate = (0..ADDRESS_LIMIT)
            .prop_map(|l1_ipa| Reply::Translate(TranslateOutcome::Emulate(Emulation { l1_ipa })));
        let external = (
            any::<bool>(),
            0u64..(1 << 19),
            any::<u64>(),
            any::<u64>(),
            0..ADDRESS_LIMIT,
        )
            .prop_map(|(data, iss_high, far, hpfar, l1_ipa)| {
                let ec: u64 = if data { 0x24 } else { 0x20 };
                let iss = (iss_high << 6) & !(1 << 7);
                let far = if iss & (1 << 10) != 0 { 0 } else { far };
                Reply::Translate(TranslateOutcome::ExternalAbort(ExternalAbort {
                    injection: Injection {
                        esr: ec << 26 | 1 << 25 | iss | FSC_EXTERNAL_ABORT,
                        far,
                        hpfar: hpfar & (HPFAR_FIPA | HPFAR_NS),
                    },
                    l1_ipa,
                }))
            });
        let unshadowable =
            unshadowable().prop_map(|u| Reply::Translate(TranslateOutcome::Unshadowable(u)));
        let denied = prop_oneof![
            access().prop_map(DeniedAccess::L2Data),
            Just(DeniedAccess::L1TableRead),
            Just(DeniedAccess::L1TableUpdate),
        ];
        let l0_denied = (0..ADDRESS_LIMIT, denied).prop_map(|(l1_ipa, denied)| {
            Reply::Translate(TranslateOutcome::L0Denied(L0Denial { l1_ipa, denied }))
        });
        let acks = (any::<bool>(), any::<u64>()).prop_map(|(inv, n)| {
            if inv {
                Reply::InvalidateAck(InvalidateAck { entries_dropped: n })
            } else {
                Reply::L0UnmapAck(L0UnmapAck { entries_removed: n })
            }
        });
        let errors = prop_oneof![
            any::<u64>().prop_map(|found| DecodeError::Length { found }),
            any::<u16>().prop_map(|found| DecodeError::Version { found }),
            any::<u16>().prop_map(|kind| DecodeError::UnknownKind { kind }),
            any::<u16>().prop_map(|kind| DecodeError::WrongDirection { kind }),
            any::<u32>().prop_map(|found| DecodeError::VcpuMismatch { found }),
            (any::<u16>(), 0usize..Field::ALL.len()).prop_map(|(kind, f)| DecodeError::Invalid {
                kind,
                field: Field::ALL[f]
            }),
        ]
        .prop_map(Reply::Error);
        prop_oneof![
            mapped,
            inject,
            retry,
            emulate,
            external,
            unshadowable,
            l0_denied,
            acks,
            errors
        ]
    }

    /// A valid request or reply record with up to three bytes overwritten:
    /// near-misses reach every field check, not just the header's.
    fn mutated_record() -> impl Strategy<Value = Vec<u8>> {
        let valid = prop_oneof![
            (request(), any::<u32>(), any::<u64>()).prop_map(|(r, v, s)| r.encode(VcpuId(v), s)),
            (reply(), any::<u32>(), any::<u64>()).prop_map(|(r, v, s)| r.encode(VcpuId(v), s)),
        ];
        (
            valid,
            prop::collection::vec((0..RECORD_SIZE, any::<u8>()), 0..4),
        )
            .prop_map(|(record, edits)| {
                let mut bytes = record.as_bytes().to_vec();
                for (at, value) in edits {
                    bytes[at] = value;
                }
                bytes
            })
    }

    /// Translate requests and mappings (the kinds with a one-compare fast
    /// path), with up to three bytes of the body changed.
    fn fast_path_record() -> impl Strategy<Value = Record> {
        let valid = prop_oneof![
            (request(), any::<u64>()).prop_map(|(r, s)| r.encode(VcpuId(1), s)),
            (reply(), any::<u64>()).prop_map(|(r, s)| r.encode(VcpuId(1), s)),
        ];
        (
            valid,
            prop::collection::vec((16..RECORD_SIZE, any::<u8>()), 0..4),
        )
            .prop_map(|(mut record, edits)| {
                for (at, value) in edits {
                    record.body[at - 16] = value;
                }
                record
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The one-compare header paths accept and reject exactly what the
        /// general header check does, with the same errors.
        #[test]
        fn fast_paths_agree_with_the_general_check(record in fast_path_record()) {
            prop_assert_eq!(decode_request(&record), decode_request_general(&record));
            prop_assert_eq!(decode_reply(&record), decode_reply_general(&record));
        }

        #[test]
        fn requests_round_trip(req in request(), vcpu in any::<u32>(), seq in any::<u64>(),
                               stale in prop::collection::vec(any::<u8>(), RECORD_SIZE)) {
            let record = req.encode(VcpuId(vcpu), seq);
            // Encoding in place over an old record writes every byte.
            let mut reused = Record::from_bytes(&stale).unwrap();
            req.encode_into(VcpuId(vcpu), seq, &mut reused);
            prop_assert_eq!(reused, record);
            let decoded = decode_request(&record).unwrap();
            prop_assert_eq!(decoded, Envelope { vcpu: VcpuId(vcpu), seq, message: req });
            prop_assert_eq!(decode_reply(&record), Err(DecodeError::WrongDirection { kind: req.kind() as u16 }));
            prop_assert_eq!(Record::from_bytes(record.as_bytes()), Ok(record));
        }

        /// A sender's `validate` accepts exactly the translate requests the
        /// receiver decodes, with the same field named on rejection.
        #[test]
        fn translate_validate_agrees_with_decode(esr in any::<u32>(), access in access(),
                                                 l2_ipa in any::<u64>(), far in any::<u64>(),
                                                 vmid in prop_oneof![Just(2u16), any::<u16>()],
                                                 vmid_field in prop_oneof![Just(2u64), Just(0x102), any::<u64>()],
                                                 vs in any::<bool>()) {
            let t = TranslateRequest {
                context: ContextKey {
                    vmid,
                    vttbr: vmid_field << 48 | 0x1000,
                    vtcr: 0x3559 | u64::from(vs) << 19,
                },
                l2_ipa,
                access,
                esr,
                far,
            };
            let decoded = decode_request(&Request::Translate(t).encode(VcpuId(0), 0));
            match t.validate() {
                Ok(()) => prop_assert_eq!(decoded.map(|e| e.message), Ok(Request::Translate(t))),
                Err(field) => prop_assert_eq!(decoded, Err(DecodeError::invalid(RecordKind::Translate, field))),
            }
        }

        #[test]
        fn replies_round_trip(rep in reply(), vcpu in any::<u32>(), seq in any::<u64>(),
                              stale in prop::collection::vec(any::<u8>(), RECORD_SIZE)) {
            let record = rep.encode(VcpuId(vcpu), seq);
            let mut reused = Record::from_bytes(&stale).unwrap();
            rep.encode_into(VcpuId(vcpu), seq, &mut reused);
            prop_assert_eq!(reused, record);
            let decoded = decode_reply(&record).unwrap();
            prop_assert_eq!(decoded, Envelope { vcpu: VcpuId(vcpu), seq, message: rep });
            prop_assert!(decode_request(&record).is_err());
        }

        /// Any byte sequence is either a valid message, whose re-encoding is
        /// byte-for-byte the input, or a clean error.
        #[test]
        fn any_bytes_decode_cleanly(bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..(2 * RECORD_SIZE)),
            mutated_record(),
        ]) {
            match Record::from_bytes(&bytes) {
                Err(e) => {
                    prop_assert_ne!(bytes.len(), RECORD_SIZE);
                    prop_assert_eq!(e, DecodeError::Length { found: bytes.len() as u64 });
                }
                Ok(record) => {
                    match decode_request(&record) {
                        Ok(env) => {
                            let again = env.message.encode(env.vcpu, env.seq);
                            prop_assert_eq!(again.as_bytes(), &bytes[..]);
                        }
                        Err(e) => {
                            // The error itself travels in a valid error reply.
                            let reply = Reply::Error(e).encode(VcpuId(record.header.vcpu), record.header.seq);
                            prop_assert_eq!(decode_reply(&reply).unwrap().message, Reply::Error(e));
                        }
                    }
                    if let Ok(env) = decode_reply(&record) {
                        let again = env.message.encode(env.vcpu, env.seq);
                        prop_assert_eq!(again.as_bytes(), &bytes[..]);
                    }
                }
            }
        }
    }

    #[test]
    fn header_errors_are_precise() {
        let good = Request::Translate(TranslateRequest {
            context: ContextKey {
                vmid: 1,
                vttbr: 1 << 48 | 0x8000_0000,
                vtcr: 0x8002_3559,
            },
            l2_ipa: 0x4000_1000,
            access: AccessKind::Write,
            esr: 0x9200_0046,
            far: 0xffff_0000_1234_5678,
        })
        .encode(VcpuId(3), 9);
        assert!(decode_request(&good).is_ok());
        let mut bad = good;
        bad.header.version = 1;
        assert_eq!(decode_request(&bad), Err(DecodeError::Version { found: 1 }));
        let mut bad = good;
        bad.header.kind = 0x42;
        assert_eq!(
            decode_request(&bad),
            Err(DecodeError::UnknownKind { kind: 0x42 })
        );
        let translate_field = |edit: &dyn Fn(&mut Record)| {
            let mut bad = good;
            edit(&mut bad);
            match decode_request(&bad) {
                Err(DecodeError::Invalid { kind: 1, field }) => Some(field),
                other => panic!("{other:?}"),
            }
        };
        // Access kind (0..=5 are valid).
        assert_eq!(translate_field(&|r| r.body[38] = 6), Some(Field::Access));
        assert_eq!(translate_field(&|r| r.body[38] = 0xff), Some(Field::Access));
        // A fetch with a data-abort syndrome.
        assert_eq!(translate_field(&|r| r.body[38] = 2), Some(Field::Access));
        // A fault on the stage-1 walk is the walk's read or write, never a
        // fetch, even when the walk was for a fetch (EC 0x20).
        let set_esr = |r: &mut Record, esr: u32| r.body[32..36].copy_from_slice(&esr.to_ne_bytes());
        assert_eq!(
            translate_field(&|r| {
                set_esr(r, 0x8200_0086);
                r.body[38] = 2;
            }),
            Some(Field::Access)
        );
        let mut walk = good;
        set_esr(&mut walk, 0x8200_0086); // EC 0x20, S1PTW, write
        assert!(decode_request(&walk).is_ok());
        // Not an abort from a lower EL (an SVC).
        assert_eq!(
            translate_field(&|r| set_esr(r, 0x5600_0000)),
            Some(Field::Syndrome)
        );
        // A stage-2 fault always has a valid FAR: FnV set is rejected.
        assert_eq!(
            translate_field(&|r| set_esr(r, 0x9200_0446)),
            Some(Field::Far)
        );
        // The byte that was layout 2's FAR option tag is reserved.
        assert_eq!(translate_field(&|r| r.body[39] = 1), Some(Field::Reserved));
        // Fault codes that are not stage-2 walk faults: external abort
        // (not on a walk, on a walk), tag check, alignment, TLB conflict,
        // granule protection, the FEAT_D128 level -2 codes.
        for fsc in [0x10, 0x14, 0x13, 0x11, 0x21, 0x30, 0x28, 0x2a, 0x2c] {
            assert_eq!(
                translate_field(&|r| set_esr(r, 0x9200_0040 | fsc)),
                Some(Field::Syndrome),
                "FSC {fsc:#x}"
            );
        }
        // Every stage-2 fault code is accepted: address size, translation,
        // access flag, permission at levels 0-3 and the FEAT_LPA2 level -1
        // address size and translation faults.
        for fsc in (0x00..=0x0f).chain([0x29, 0x2b]) {
            let mut ok = good;
            set_esr(&mut ok, 0x9200_0040 | fsc);
            assert!(decode_request(&ok).is_ok(), "FSC {fsc:#x}");
        }
        // WnR gives a data access's direction.
        assert_eq!(
            translate_field(&|r| set_esr(r, 0x9200_0006)),
            Some(Field::Access)
        );
        // CM = 1 (with WnR = 1) is a cache maintenance instruction, never a
        // plain write; the cache maintenance kinds need CM = 1 and WnR = 1
        // and are never on a stage-1 walk.
        assert_eq!(
            translate_field(&|r| set_esr(r, 0x9200_0146)),
            Some(Field::Access)
        );
        for code in [4, 5] {
            let mut cm = good;
            cm.body[38] = code;
            set_esr(&mut cm, 0x9200_0146);
            assert!(decode_request(&cm).is_ok(), "{code}");
            for esr in [0x9200_0046, 0x9200_0106, 0x9200_01c6, 0x8200_0006] {
                let mut bad = cm;
                set_esr(&mut bad, esr);
                assert_eq!(
                    decode_request(&bad),
                    Err(DecodeError::Invalid {
                        kind: 1,
                        field: Field::Access
                    }),
                    "{code} {esr:#x}"
                );
            }
        }

        let mut bad = good;
        bad.body[16..24].copy_from_slice(&ADDRESS_LIMIT.to_ne_bytes());
        assert_eq!(
            decode_request(&bad),
            Err(DecodeError::Invalid {
                kind: 1,
                field: Field::Address
            })
        );
        assert_eq!(
            Record::from_bytes(&[0; RECORD_SIZE - 1]),
            Err(DecodeError::Length {
                found: RECORD_SIZE as u64 - 1
            })
        );
    }

    fn review_translate(access: AccessKind, esr: u32, far: u64) -> Record {
        Request::Translate(TranslateRequest {
            context: ContextKey {
                vmid: 1,
                vttbr: 1 << 48 | 0x8000_0000,
                vtcr: 0x8002_3559,
            },
            l2_ipa: 0x4000_1000,
            access,
            esr,
            far,
        })
        .encode(VcpuId(0), 1)
    }

    /// Review 3 F3: the VMID of a translate request is the one its
    /// VTTBR_EL2/VTCR_EL2 name. With VS = 0, VTTBR_EL2[63:56] is ignored,
    /// so VTTBR VMID field 0x0105 is VMID 5, and a request claiming 0x105
    /// (which a VMALLS12E1 for VMID 5 would miss) is refused, naming the
    /// field, by the sender's `validate` and on receipt alike.
    #[test]
    fn a_vmid_the_registers_do_not_name_is_rejected() {
        let vttbr = 0x0105u64 << 48 | 0x4000_0000;
        let request = |vmid, vtcr| TranslateRequest {
            context: ContextKey { vmid, vttbr, vtcr },
            l2_ipa: 0x1000,
            access: AccessKind::Read,
            esr: 0x9200_0007,
            far: 0x1000,
        };
        let vs = crate::vmid::VTCR_VS;
        for (vmid, vtcr, ok) in [
            (0x105, 0x3559, false),
            (5, 0x3559, true),
            (0x105, 0x3559 | vs, true),
            (5, 0x3559 | vs, true),
            (6, 0x3559 | vs, false),
        ] {
            let t = request(vmid, vtcr);
            let decoded = decode_request(&Request::Translate(t).encode(VcpuId(0), 0));
            if ok {
                assert_eq!(t.validate(), Ok(()));
                assert_eq!(decoded.map(|e| e.message), Ok(Request::Translate(t)));
            } else {
                assert_eq!(t.validate(), Err(Field::Vmid), "{vmid:#x} {vtcr:#x}");
                assert_eq!(
                    decoded,
                    Err(DecodeError::Invalid {
                        kind: 1,
                        field: Field::Vmid
                    })
                );
            }
        }
        // ContextKey::new computes the VMID, so its keys always pass.
        for width in [crate::VmidWidth::Bits8, crate::VmidWidth::Bits16] {
            for vtcr in [0x3559, 0x3559 | vs] {
                assert_eq!(ContextKey::new(vttbr, vtcr, width).validate(), Ok(()));
            }
        }
        assert_eq!(
            ContextKey::new(vttbr, 0x3559, crate::VmidWidth::Bits16).vmid,
            5
        );
    }

    /// FnV is RES0 for a stage-2 fault (the FAR is valid): a translate
    /// request that sets it is malformed.
    #[test]
    fn fnv_with_translation_fault_is_rejected() {
        let record = review_translate(AccessKind::Read, 0x9200_0407, 0);
        assert_eq!(
            decode_request(&record),
            Err(DecodeError::Invalid {
                kind: 1,
                field: Field::Far
            })
        );
        assert!(decode_request(&review_translate(AccessKind::Read, 0x9200_0007, 0)).is_ok());
    }

    /// A data abort not on a stage-1 walk is a write exactly when WnR = 1.
    #[test]
    fn wnr_disagreeing_with_access_is_rejected() {
        let invalid = DecodeError::Invalid {
            kind: 1,
            field: Field::Access,
        };
        for (access, esr) in [
            (AccessKind::Read, 0x9200_0047),
            (AccessKind::Write, 0x9200_0007),
        ] {
            assert_eq!(
                decode_request(&review_translate(access, esr, 0x1000)),
                Err(invalid)
            );
            let request = TranslateRequest {
                context: ContextKey {
                    vmid: 1,
                    vttbr: 1 << 48,
                    vtcr: 0,
                },
                l2_ipa: 0,
                access,
                esr,
                far: 0,
            };
            assert_eq!(request.validate(), Err(Field::Access));
        }
        for (access, esr) in [
            (AccessKind::Read, 0x9200_0007),
            (AccessKind::Write, 0x9200_0047),
            // On a stage-1 walk WnR is the walk's write (hardware update).
            (AccessKind::Read, 0x9200_0087),
            (AccessKind::Write, 0x9200_00c7),
        ] {
            assert!(decode_request(&review_translate(access, esr, 0x1000)).is_ok());
        }
    }

    #[test]
    fn invalidate_with_reserved_granule_is_rejected_on_receipt() {
        let form = Tlbi {
            op: TlbiOp::Ripas2e1,
            shareability: Shareability::InnerShareable,
            nxs: false,
        };
        let xt = RangeOperand {
            granule: Some(Granule::K4),
            scale: 0,
            num: 1,
            ttl: 0,
            base_addr: 4,
        }
        .to_bits();
        let req = InvalidateRequest::new(7 << 48, 0, crate::VmidWidth::Bits8, form, xt).unwrap();
        let mut record = Request::Invalidate(req).encode(VcpuId(0), 1);
        let decoded = decode_request(&record).unwrap().message;
        assert_eq!(decoded, Request::Invalidate(req));
        // Clear TG in the operand: the record now names nothing.
        let bad_xt = xt & !(0b11 << 46);
        record.body[0..8].copy_from_slice(&bad_xt.to_ne_bytes());
        assert_eq!(
            decode_request(&record),
            Err(DecodeError::Invalid {
                kind: 2,
                field: Field::TlbiOperand
            })
        );
    }

    #[test]
    fn invalid_replies_are_rejected() {
        let mapped = |pa, size_log2| {
            Reply::Translate(TranslateOutcome::Mapped(Mapping {
                pa,
                size_log2,
                permissions: Permissions::READ,
                mem_attr: 0xf,
                shareability: MemShareability::InnerShareable,
            }))
            .encode(VcpuId(0), 0)
        };
        assert!(decode_reply(&mapped(0x20_0000, 21)).is_ok());
        let field = |r: &Record| match decode_reply(r) {
            Err(DecodeError::Invalid { field, .. }) => Some(field),
            _ => None,
        };
        assert_eq!(field(&mapped(0x20_1000, 21)), Some(Field::Alignment));
        assert_eq!(field(&mapped(0, 11)), Some(Field::BlockSize));
        assert_eq!(field(&mapped(ADDRESS_LIMIT, 12)), Some(Field::Address));
        let inject = Reply::Translate(TranslateOutcome::Inject(Injection {
            esr: 0x15 << 26, // an SVC, not an abort
            far: 0,
            hpfar: 0,
        }))
        .encode(VcpuId(0), 0);
        assert_eq!(field(&inject), Some(Field::Syndrome));
        let external = |esr, l1_ipa| {
            Reply::Translate(TranslateOutcome::ExternalAbort(ExternalAbort {
                injection: Injection {
                    esr,
                    far: 0x1000,
                    hpfar: 0x10,
                },
                l1_ipa,
            }))
            .encode(VcpuId(0), 0)
        };
        assert!(decode_reply(&external(0x9200_0010, 0x1_0000_0000)).is_ok());
        // A translation fault is not an external abort.
        assert_eq!(
            field(&external(0x9200_0007, 0x1_0000_0000)),
            Some(Field::Syndrome)
        );
        assert_eq!(
            field(&external(0x9200_0010, ADDRESS_LIMIT)),
            Some(Field::Address)
        );
        // IL = 0, S1PTW = 1: not an external abort the service reports.
        assert_eq!(
            field(&external(0x9000_0010, 0x1_0000_0000)),
            Some(Field::Syndrome)
        );
        assert_eq!(
            field(&external(0x9200_0090, 0x1_0000_0000)),
            Some(Field::Syndrome)
        );
        // FnV = 1 with a FAR (0x1000): the FAR must be 0 then.
        assert_eq!(
            field(&external(0x9200_0410, 0x1_0000_0000)),
            Some(Field::Far)
        );
        // HPFAR: bits [62:44] (an IPA beyond 52 bits) are rejected, NS is
        // allowed.
        for (hpfar, ok) in [(1 << 44, false), (1 << 62, false), (HPFAR_NS | 0x10, true)] {
            let inject = Reply::Translate(TranslateOutcome::Inject(Injection {
                esr: 0x9200_0007,
                far: 0,
                hpfar,
            }))
            .encode(VcpuId(0), 0);
            let expected = if ok { None } else { Some(Field::FaultAddress) };
            assert_eq!(field(&inject), expected, "{hpfar:#x}");
        }
        let emulate = Reply::Translate(TranslateOutcome::Emulate(Emulation {
            l1_ipa: ADDRESS_LIMIT,
        }))
        .encode(VcpuId(0), 0);
        assert_eq!(field(&emulate), Some(Field::Address));
        // Unshadowable: an unknown reason, an unused value that is not zero.
        let mut unshadowable =
            Reply::Translate(TranslateOutcome::Unshadowable(Unshadowable::PaOutOfRange {
                pa: 1 << 52,
            }))
            .encode(VcpuId(0), 0);
        assert!(decode_reply(&unshadowable).is_ok());
        unshadowable.body[8] = 1; // the second value, unused by PaOutOfRange
        assert_eq!(field(&unshadowable), Some(Field::Reserved));
        unshadowable.body[8] = 0;
        unshadowable.body[16] = 10;
        assert_eq!(field(&unshadowable), Some(Field::UnshadowableReason));
        let mut retry =
            Reply::Translate(TranslateOutcome::Retry(RetryReason::Contended)).encode(VcpuId(0), 0);
        assert!(decode_reply(&retry).is_ok());
        retry.body[0] = 4;
        assert_eq!(field(&retry), Some(Field::RetryReason));
        // L0Denied: the L1 IPA below ADDRESS_LIMIT, a known access kind
        // or table code, reserved bytes zero.
        let denied = |l1_ipa| {
            Reply::Translate(TranslateOutcome::L0Denied(L0Denial {
                l1_ipa,
                denied: DeniedAccess::L2Data(AccessKind::Write),
            }))
            .encode(VcpuId(0), 0)
        };
        assert!(decode_reply(&denied(0x8000_1234)).is_ok());
        assert_eq!(field(&denied(ADDRESS_LIMIT)), Some(Field::Address));
        for bad in [6, 0x7f, 0x82, 0xff] {
            let mut bad_access = denied(0x8000_1234);
            bad_access.body[8] = bad;
            assert_eq!(field(&bad_access), Some(Field::Access), "{bad:#x}");
        }
        let mut reserved = denied(0x8000_1234);
        reserved.body[9] = 1;
        assert_eq!(field(&reserved), Some(Field::Reserved));
    }

    /// What L0 denied travels whole: L2's access (each kind), the walk's
    /// read of L1's table, its update, each with the descriptor's L1 IPA,
    /// in the byte that held L2's access kind (an L2 denial's bytes are
    /// those of layout version 7).
    #[test]
    fn l0_denials_of_l1_tables_and_of_l2_data_round_trip() {
        let table_read = L0Denial {
            l1_ipa: 0x4040_2ff8,
            denied: DeniedAccess::L1TableRead,
        };
        let table_update = L0Denial {
            denied: DeniedAccess::L1TableUpdate,
            ..table_read
        };
        let l2_write = L0Denial {
            l1_ipa: 0x4040_2ff8,
            denied: DeniedAccess::L2Data(AccessKind::Write),
        };
        for (denial, byte) in [(table_read, 0x80), (table_update, 0x81), (l2_write, 1)] {
            let reply = Reply::Translate(TranslateOutcome::L0Denied(denial));
            let record = reply.encode(VcpuId(3), 9);
            assert_eq!(record.body[..8], 0x4040_2ff8u64.to_ne_bytes());
            assert_eq!(record.body[8], byte);
            assert!(record.body[9..].iter().all(|&b| b == 0));
            assert_eq!(decode_reply(&record).map(|e| e.message), Ok(reply));
        }
        for access in [
            AccessKind::Read,
            AccessKind::Write,
            AccessKind::Execute,
            AccessKind::ExecuteEl0,
            AccessKind::CacheMaintenance,
            AccessKind::CacheMaintenanceEl0,
        ] {
            let reply = Reply::Translate(TranslateOutcome::L0Denied(L0Denial {
                l1_ipa: 0x1000,
                denied: DeniedAccess::L2Data(access),
            }));
            let record = reply.encode(VcpuId(0), 0);
            assert_eq!(record.body[8], access as u8);
            assert_eq!(decode_reply(&record).map(|e| e.message), Ok(reply));
        }
    }
}
