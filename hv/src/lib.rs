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
pub mod ipc_selftest;
pub mod layout;
pub mod pagetable;
pub mod platform;
pub mod psci;
pub mod sysregs;
pub mod vgic;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod arch;
