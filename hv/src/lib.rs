//! Umbra's EL2 hypervisor: portable parts (tested on the host) and the
//! aarch64 parts, built only for aarch64-unknown-none.
#![no_std]

extern crate alloc;

pub mod bundle;
pub mod esr;
pub mod exit;
pub mod fdt_check;
pub mod guest_dt;
pub mod inject;
// The self-test's exchange is a `const` static built from ipc's rings,
// whose loom constructors are not `const`; ipc's own loom models cover the
// rings and doorbells it runs on.
#[cfg(not(loom))]
pub mod ipc_selftest;
pub mod layout;
pub mod nested;
pub mod pagetable;
pub mod platform;
pub mod psci;
pub mod s1walk;
// Built on shadow-mmu's service, whose loom build swaps its atomics and
// epochs for loom's; its protocols have their own loom models.
#[cfg(not(loom))]
pub mod shadow_selftest;
pub mod smccc_arch;
mod sync;
pub mod sysregs;
pub mod vgic;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod arch;
