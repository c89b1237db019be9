//! Stage-2 translation table walker, following the Arm ARM pseudocode
//! (AArch64.S2Walk and the functions it calls).
#![no_std]
#![forbid(unsafe_code)]
