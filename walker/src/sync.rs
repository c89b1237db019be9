//! The one place that chooses between the real atomics and loom's.
//!
//! With `--cfg loom` the words [`crate::Memslots`] reads and updates guest
//! memory through, and the fence that closes a batched read, come from loom,
//! so the models in `loom-tests/tests/walker_memslots.rs` check this crate's
//! own memory code rather than a copy of it. Host and hv builds are
//! unchanged (`core` atomics, no_std).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU64, Ordering};
