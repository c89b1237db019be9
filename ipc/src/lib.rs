//! Typed rings between per-vCPU fault handlers and the shadow-MMU service.
#![no_std]
