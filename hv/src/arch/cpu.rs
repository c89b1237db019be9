//! System-register access and the few instructions hv needs, by name.

use crate::inject::{El1Reg, El1Regs};

/// Reads a system register by its assembler name or S3_... encoding.
macro_rules! read_sysreg {
    ($name:tt) => {{
        let value: u64;
        // SAFETY: reading this system register has no side effects at EL2.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) };
        value
    }};
}

/// Writes a system register by name; an ISB is the caller's business.
macro_rules! write_sysreg {
    ($name:tt, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: hv owns EL2; each caller documents why the value is right
        // for the register (they are composed and tested in crate::sysregs).
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nostack, preserves_flags)) };
    }};
}

pub(crate) use {read_sysreg, write_sysreg};

pub fn isb() {
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

pub fn dsb_ish() {
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

pub fn counter() -> u64 {
    read_sysreg!("cntpct_el0")
}

/// Whether the CPU has FEAT_RNG (ID_AA64ISAR0_EL1.RNDR, bits [63:60]).
pub fn has_rng() -> bool {
    read_sysreg!("s3_0_c0_c6_0") >> 60 != 0
}

/// 64 random bits from FEAT_RNG's RNDR, or `None` when the CPU has no
/// FEAT_RNG (ID_AA64ISAR0_EL1.RNDR, bits [63:60], is 0) or RNDR reported
/// no entropy (NZCV.Z set) at each of a few reads.
pub fn random() -> Option<u64> {
    if !has_rng() {
        return None;
    }
    for _ in 0..8 {
        let (value, failed): (u64, u64);
        // SAFETY: reads RNDR (S3_3_C2_C4_0), which the CPU implements
        // (checked above), and sets NZCV; nothing else changes.
        unsafe {
            core::arch::asm!(
                "mrs {value}, s3_3_c2_c4_0",
                "cset {failed}, eq",
                value = out(reg) value,
                failed = out(reg) failed,
                options(nomem, nostack)
            )
        };
        if failed == 0 {
            return Some(value);
        }
    }
    None
}

pub fn counter_frequency() -> u64 {
    read_sysreg!("cntfrq_el0").max(1)
}

/// Microseconds between two counter values.
pub fn micros(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from).saturating_mul(1_000_000) / counter_frequency()
}

fn cache_line() -> u64 {
    // CTR_EL0.DminLine: log2 of words in the smallest data cache line.
    4 << (read_sysreg!("ctr_el0") >> 16 & 0xf)
}

/// Cleans and invalidates [start, start+len) to the point of coherency, so
/// a CPU running with its MMU or caches off sees what was written.
pub fn clean_invalidate_dcache(start: u64, len: u64) {
    let line = cache_line();
    let mut address = start & !(line - 1);
    while address < start + len {
        // SAFETY: cache maintenance by VA on memory hv has mapped.
        unsafe {
            core::arch::asm!("dc civac, {}", in(reg) address, options(nostack, preserves_flags))
        };
        address += line;
    }
    dsb_ish();
}

/// Discards cached copies of [start, start+len) (for memory written while
/// the MMU was off, before turning it on).
pub fn invalidate_dcache(start: u64, len: u64) {
    let line = cache_line();
    let mut address = start & !(line - 1);
    while address < start + len {
        // SAFETY: invalidation of lines holding nothing newer than memory:
        // everything here was written with the data cache off.
        unsafe {
            core::arch::asm!("dc ivac, {}", in(reg) address, options(nostack, preserves_flags))
        };
        address += line;
    }
    dsb_ish();
}

pub fn invalidate_icache() {
    // SAFETY: instruction cache maintenance.
    unsafe {
        core::arch::asm!(
            "ic iallu",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// The hardware's EL1 registers, for exception injection.
#[derive(Debug)]
pub struct HardwareEl1;

impl El1Regs for HardwareEl1 {
    fn read(&self, reg: El1Reg) -> u64 {
        match reg {
            El1Reg::Vbar => read_sysreg!("vbar_el1"),
            El1Reg::Esr => read_sysreg!("esr_el1"),
            El1Reg::Far => read_sysreg!("far_el1"),
            El1Reg::Elr => read_sysreg!("elr_el1"),
            El1Reg::Spsr => read_sysreg!("spsr_el1"),
        }
    }

    fn write(&mut self, reg: El1Reg, value: u64) {
        match reg {
            El1Reg::Vbar => write_sysreg!("vbar_el1", value),
            El1Reg::Esr => write_sysreg!("esr_el1", value),
            El1Reg::Far => write_sysreg!("far_el1", value),
            El1Reg::Elr => write_sysreg!("elr_el1", value),
            El1Reg::Spsr => write_sysreg!("spsr_el1", value),
        }
    }
}
