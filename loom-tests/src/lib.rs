//! loom models of Umbra's concurrent protocols. They live in `tests/` and
//! are compiled only with `--cfg loom` (`cargo xtask test` sets it and bounds
//! the preemption count); without it this crate is empty.
#![forbid(unsafe_code)]

#[cfg(loom)]
pub mod hv_gic;
#[cfg(loom)]
pub mod ipc_channel;
