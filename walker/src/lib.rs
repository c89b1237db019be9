//! Stage-2 translation table walker, following the Arm ARM pseudocode
//! (AArch64.S2Translate, AArch64.S2Walk and the functions they call).
//!
//! L0 walks the stage-2 tables L1 (a guest hypervisor) wrote for its guest
//! L2, exactly as the hardware would if it ran L1's VTTBR_EL2/VTCR_EL2, and
//! either gets a translation (what a TLB may hold) or the precise fault to
//! inject into L1.
//!
//! # API summary
//!
//! - [`ExposedFeatures::from_id_registers`]`(`[`IdRegisters`]`)` decodes the
//!   ID_AA64MMFR0/1/2_EL1 values **L0 exposes to L1** (PARange → PAMax,
//!   TGran*_2, HAFDBS, XNX, ST). Reserved values are a precise
//!   [`IdRegisterError`] (L0's own mistake, not a guest fault).
//! - [`Stage2Walker::new`]`(`[`Stage2Registers`]` { vtcr, vttbr, endianness }, &features)`
//!   decodes what L1 programmed. It never fails: a bad configuration is the
//!   architectural fault every walk then reports
//!   ([`Stage2Walker::configuration_fault`]).
//! - [`Stage2Walker::walk`]`(&memory, ipa, `[`AccessKind`]`) -> Result<`[`Translation`]`, `[`WalkError`]`>`
//!   walks one IPA; [`Stage2Walker::walk_batch`]`(&memory, &[`[`WalkRequest`]`], &mut results)`
//!   walks many level by level (one memory batch per level, duplicates read
//!   once) with results identical to single walks in request order.
//!   [`Stage2Walker::translate_leaf`] is the same walk for callers that need
//!   only the leaf: no descriptor trail, a 32-byte [`LeafTranslation`].
//! - Guest memory is anything implementing [`GuestMemory`] (raw 8-byte
//!   descriptor reads, batched reads, compare-and-swap). [`Memslots`] is the
//!   safe implementation: non-overlapping [`Memslot`]s over `&[AtomicU64]`,
//!   read-write or read-only, looked up by binary search.
//! - A [`Translation`] has the full output address, level, block and
//!   contiguous sizes, [`S2Ap`], [`Execute`] (XN\[1:0\]), DBM, MemAttr,
//!   [`Shareability`], the hardware update made, and the [`Trail`] of every
//!   descriptor read (address, value, level).
//! - A [`Fault`] has its [`FaultCause`] (hence [`FaultKind`]), level
//!   (-1..=3), [`Fault::fsc`] and [`Fault::syndrome`] which, given the L2 VA,
//!   whether the access was a stage-1 walk and the ESR L0 trapped
//!   ([`AbortContext`]), gives the ESR_EL2/FAR_EL2/HPFAR_EL2 values to
//!   inject ([`InjectedAbort`]); [`merge_trapped_syndrome`] is the rule for
//!   which ESR fields are the instruction's and which the walk's.
//! - For tools: [`Stage2Walker::decode_descriptor`] ([`DescriptorKind`]) and
//!   [`Stage2Walker::visit_mappings`] (every leaf in IPA order, [`Mapping`]);
//!   [`Stage2Walker::visit_mappings_with`] also asks a [`MappingVisitor`] at
//!   each table descriptor ([`TableReference`]) whether to read its table.
//!
//! # Architectural choices
//!
//! Where the architecture leaves a choice, this walker makes one, always
//! the same (each is tested):
//! - VTCR_EL2.TG0 reserved (0b11) or a granule the ID registers say stage 2
//!   lacks (IMPLEMENTATION DEFINED "TG0 encoded granule size"): the smallest
//!   supported stage-2 granule (4KB, else 16KB, else 64KB).
//! - T0SZ below the minimum for the exposed PAMax, or above the maximum
//!   (39; 48/47 with FEAT_TTST): a level-0 translation fault, never a clamp
//!   (required with FEAT_LPA, IMPLEMENTATION DEFINED otherwise).
//! - Descriptor bits 15:12 with the 64KB granule when PAMax < 52 are not
//!   OA\[51:48\] (IMPLEMENTATION DEFINED); they are ignored.
//! - A contiguous hint spanning more than the input size does not fault
//!   (IMPLEMENTATION DEFINED "Translation fault on misprogrammed contiguous
//!   bit"); the output address is StageOA's: descriptor bits above the
//!   contiguous range, IPA bits below it.
//! - AF is not set by hardware on an access that takes a permission fault
//!   (SettingAccessFlagPermitted is CONSTRAINED UNPREDICTABLE there).
//! - A hardware AF/dirty update that memory refuses (read-only memslot) is
//!   a synchronous external abort on the walk at the level of the
//!   descriptor being updated (AArch64.MemSwapTableDesc reports the failed
//!   write as an external abort), FSC 0x14 + level.
//! - A descriptor read or update that the host (L0) denies although it
//!   maps the address for L1 ([`MemoryError::HostDenied`]: L0 revoked read
//!   access to L1's table page, or write-protected it) is no fault of
//!   L1's: by the Arm ARM's two-stage model it is L0's own stage-2
//!   permission fault, so the walk ends in [`WalkError::HostDenied`] (the
//!   descriptor's address and level, read or update), for L0 to resolve
//!   and retry, never an external abort for L1.
//! - A descriptor read or update while the host is changing its own
//!   mapping of the descriptor's page ([`MemoryError::HostChanging`]: its
//!   break-before-make, old entry invalid, new one not yet written) is no
//!   fault of L1's either: a hardware walk would take L0's own stage-2
//!   translation fault, which L0 resolves by waiting, so the walk ends in
//!   [`WalkError::HostChanging`], to be retried, never an external abort
//!   for L1.
//! - An instruction fetch from stage-2 Device memory (MemAttr\[3:2\] = 0b00)
//!   is a permission fault, as AArch64.S2CheckPermissions has it
//!   (HCR_EL2.FWB = 0 encoding of MemAttr).
//! - Cache maintenance by VA ([`CacheMaintenance`]): an Access flag fault
//!   (and, with hardware AF, the AF update) as for any access
//!   (IMPLEMENTATION DEFINED "Generate access flag fault on IC/DC
//!   operations": TRUE); IC IVAU at EL0 needs read permission
//!   (IMPLEMENTATION DEFINED "Permission fault on EL0 IC_IVAU execution":
//!   TRUE). Once a shadow entry exists the host CPU's own choice decides:
//!   on a host whose choice is FALSE, EL0 IC IVAU to a page L1 maps
//!   execute-only faults into L1 on first touch and runs afterwards.
//! - An injected synchronous external abort on L1's walk has ISV = 0
//!   (IMPLEMENTATION DEFINED without FEAT_RAS, required with it):
//!   [`merge_trapped_syndrome`].
//! - A lost compare-and-swap restarts the whole walk, as S2Translate's
//!   `repeat ... until` does, at most [`MAX_UPDATE_ATTEMPTS`] times; then
//!   [`WalkError::Contended`] (no fault: L0 lets L2 retry). For a table
//!   descriptor's AF (FEAT_HAFT) AArch64.S2Walk decodes the value it found
//!   again at that level; restarting from the top does that too and only
//!   re-reads the levels above, as a walk started a little later would.
//!
//! FEAT_HAFT (HAFDBS = 0b0011 exposed, VTCR_EL2.HAFT = bit 44, with
//! VTCR_EL2.HA): every table descriptor the walk goes through gets AF set
//! by compare-and-swap after its next-level address is checked and before
//! the next lookup, so it stays set when the walk faults further down. A
//! trail holds the leaf as read, before its update, and a table descriptor
//! the walk set AF in with AF set, as written and as AArch64.S2Walk goes on
//! with it: a path cached from the trail then matches memory (and, as the
//! Arm ARM lets a TLB cache only table descriptors with AF set under
//! FEAT_HAFT, is one a TLB could hold).
//!
//! Not modelled: FEAT_D128 (PARange 56 is rejected), FEAT_S2PIE/S2POE,
//! FEAT_HDBSS (HAFDBS 0b0100 is rejected), HCR_EL2.PTW / FWB, AArch32 L2
//! EL1, the Secure and Realm stage 2.
#![no_std]
#![forbid(unsafe_code)]
// Faults carry their descriptor trail by value: there is no allocator to box
// them into, and a walk result is as large as the translation anyway.
#![allow(clippy::result_large_err)]

mod batch;
mod fault;
mod features;
mod memory;
mod sync;
mod syndrome;
mod visit;
mod walk;

pub use batch::BATCH_CHUNK;
pub use fault::{
    fault_status_code, AbortContext, AbortOrigin, AccessKind, CacheMaintenance, DescriptorRead,
    Fault, FaultCause, FaultKind, InjectedAbort, Trail, EC_DATA_ABORT_LOWER,
    EC_INSTRUCTION_ABORT_LOWER, MAX_TRAIL,
};
pub use features::{
    ExposedFeatures, Granule, GranuleSupport, HardwareUpdates, IdRegisterError, IdRegisters,
};
pub use memory::{
    fill_words_from_bytes, GuestMemory, LengthMismatch, MemoryError, Memslot, MemslotError,
    Memslots, SlotAccess, SlotHint,
};
pub use syndrome::merge_trapped_syndrome;
pub use visit::{
    DescriptorKind, LeafAttributes, Mapping, MappingVisitor, TableReference, TableStep,
};
pub use walk::{
    BatchLengthMismatch, DescriptorAccess, DescriptorUpdate, Endianness, Execute, HostChange,
    HostDenial, LeafTranslation, PathHint, S2Ap, Shareability, Stage2Registers, Stage2Walker,
    Translation, WalkError, WalkRequest, MAX_UPDATE_ATTEMPTS, VTCR_WALK_FIELDS,
};
