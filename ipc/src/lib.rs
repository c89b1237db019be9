//! Typed rings between per-vCPU fault handlers and the shadow-MMU service.
//!
//! * [`message`]: fixed-layout records (zerocopy, versioned) and their
//!   validated, typed meaning: translate request / reply (mapped, inject,
//!   retry, emulate, external abort, unshadowable, L0 denied), invalidate /
//!   ack, L0 unmap / ack, error replies.
//! * [`tlbi`]: the stage-2 TLBI forms and the decoding of their operand
//!   into an IPA range and level hint, shared by the hypervisor (which traps
//!   the TLBI) and the service (which applies it).
//! * [`vmid`]: VMID widths, and the VMID L1's registers name.
//! * [`ring`]: single-producer single-consumer rings in shared memory.
//! * [`doorbell`]: how an idle consumer sleeps without losing a wakeup.
//! * [`channel`]: the vCPU side (synchronous calls, batches with credits)
//!   and the service side (a fair poller over many vCPUs).
//!
//! `no_std`, and nothing on the message path allocates. The `std` feature
//! adds `HostDoorbell` (spin, then sleep on a condition variable).
#![cfg_attr(not(any(test, feature = "std", loom)), no_std)]

#[cfg(any(test, feature = "std", loom))]
extern crate std;

pub mod channel;
pub mod doorbell;
pub mod message;
pub mod ring;
mod sync;
pub mod tlbi;
pub mod vmid;

pub use channel::{ClientError, Endpoint, Poller, VcpuClient};
#[cfg(any(feature = "std", test, loom))]
pub use doorbell::HostDoorbell;
#[cfg(all(target_arch = "aarch64", not(loom)))]
pub use doorbell::WfeDoorbell;
pub use doorbell::{Doorbell, SpinDoorbell};
pub use message::{
    decode_reply, decode_request, is_stage2_fault_code, AccessKind, ContextKey, DecodeError,
    DeniedAccess, Emulation, Envelope, ExternalAbort, Field, Injection, InvalidateAck,
    InvalidateRequest, L0Change, L0Denial, L0UnmapAck, L0UnmapRequest, Mapping, MemShareability,
    Permissions, Record, RecordHeader, RecordKind, Reply, Request, RetryReason, TranslateOutcome,
    TranslateRequest, Unshadowable, VcpuId, FSC_EXTERNAL_ABORT, HPFAR_FIPA, HPFAR_NS,
    LAYOUT_VERSION, RECORD_SIZE,
};
pub use ring::{Consumer, Full, Producer, Ring, RingBuffer, RingError};
pub use tlbi::{
    EntryLevels, Granule, InvalidateScope, IpaRange, IpaScope, RangeOperand, Shareability, Tlbi,
    TlbiDecodeError, TlbiFeatures, TlbiOp, TlbiParams, TtlHint,
};
pub use vmid::{l1_vmid, VmidWidth};
