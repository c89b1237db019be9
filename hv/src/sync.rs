//! The one place that chooses between the real atomics and loom's.
//!
//! With `--cfg loom` the atomics of hv's cross-CPU protocols (the virtual
//! SGI state in `vgic`, the vCPU power states in `psci`, the nested
//! recycling handshake in `nested::handshake`) come from loom, so
//! the models in `loom-tests/tests/hv_*.rs` run this crate's own code. loom's
//! atomics have no `const fn new`, so those types' constructors are `const`
//! only outside loom; the statics that need them live in `arch`, which is
//! built only for aarch64-unknown-none and never under loom.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering,
};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering,
};

/// A spin-wait's pause. Under loom it yields, so a model whose thread
/// waits for another (`vgic::SpiHolders`'s gate) lets that thread run.
#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;

/// Atomics no protocol depends on (the virtual SGI priorities: a value
/// read whole, with no ordering to anything else), so loom need not
/// interleave them.
pub(crate) mod unmodelled {
    pub(crate) use core::sync::atomic::AtomicU8;
}
