//! Umbra's EL2 hypervisor: portable parts (tested on the host) and the
//! aarch64 parts, built only for aarch64-unknown-none.
#![no_std]
