//! The VNCR page: where FEAT_NV2 turns L1's accesses to some EL2
//! registers, and (NV1 = 1, or through the `_EL12` encodings) to L2's EL1
//! registers, into loads and stores. VNCR_EL2.BADDR holds its address in
//! hv's EL2 translation regime. Byte offsets from DDI 0487's VNCR_EL2
//! table (the same values Linux's `vncr_mapping.h` lists); each register
//! is one little-endian 64-bit word.

use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the page.
pub const PAGE_BYTES: usize = 4096;

/// EL2 registers of L1 that live in the page.
pub const VTTBR_EL2: usize = 0x020;
pub const VTCR_EL2: usize = 0x040;
pub const VMPIDR_EL2: usize = 0x050;
pub const CNTVOFF_EL2: usize = 0x060;
pub const HCR_EL2: usize = 0x078;
pub const HSTR_EL2: usize = 0x080;
pub const VPIDR_EL2: usize = 0x088;
pub const TPIDR_EL2: usize = 0x090;
pub const HCRX_EL2: usize = 0x0a0;

/// VPIDR_EL2's fields: MIDR_EL1's layout in \[31:0\], \[63:32\] RES0.
const VPIDR_FIELDS: u64 = 0xffff_ffff;
/// VMPIDR_EL2's fields: Aff3 \[39:32\], U \[30\], MT \[24\], Aff2, Aff1,
/// Aff0 \[23:0\]; bit 31 is RES1, the rest RES0.
const VMPIDR_FIELDS: u64 = 0xff_0000_0000 | 1 << 30 | 1 << 24 | 0xff_ffff;
const VMPIDR_RES1: u64 = 1 << 31;

/// What L2's MIDR_EL1 reads return for the VPIDR_EL2 word L1 left
/// (`word`: L1 stores it without a trap, so any value): its fields.
pub const fn l2_midr(word: u64) -> u64 {
    word & VPIDR_FIELDS
}

/// What L2's MPIDR_EL1 reads return for the VMPIDR_EL2 word L1 left: its
/// fields, bit 31 (RES1) set.
pub const fn l2_mpidr(word: u64) -> u64 {
    (word & VMPIDR_FIELDS) | VMPIDR_RES1
}

/// L2's ZCR_EL1 (FEAT_SVE) and SMCR_EL1 (FEAT_SME): a VHE L1's ZCR_EL12
/// and SMCR_EL12, a non-VHE L1's ZCR_EL1 and SMCR_EL1. Swapped with the
/// hardware only where the host has the feature (an access to them is
/// UNDEFINED otherwise), by `arch::nested::vector`, not with
/// [`El1Register`].
pub const ZCR_EL1: usize = 0x1e0;
pub const SMCR_EL1: usize = 0x1f0;

/// L2's EL1 registers that hv swaps with the hardware's on every switch
/// between L1 and L2 (while L1 runs, the hardware EL1 registers hold L1's
/// virtual EL2 state and these words hold L2's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum El1Register {
    Sctlr,
    Cpacr,
    Ttbr0,
    Ttbr1,
    Tcr,
    Mair,
    Amair,
    Contextidr,
    Vbar,
    Elr,
    Spsr,
    Esr,
    Far,
    SpEl1,
    Afsr0,
    Afsr1,
    /// MDSCR_EL1 (review 39 R39-3): one register that EL2 and EL1 share,
    /// which FEAT_NV2 turns into the VNCR word for L1's accesses, so L1
    /// sets L2's (KVM's guest debugging: SS, KDE, MDE) there and hv loads
    /// it for L2; L1, whose accesses never reach the hardware, runs with
    /// the hardware value hv gave it (`start_l1`: 0, no debug exception
    /// at its virtual EL2 but BRK, as at an EL2 with TDE 0), not with one
    /// L2 left.
    Mdscr,
}

impl El1Register {
    /// Every register hv swaps, in the order it saves and restores them.
    pub const ALL: [El1Register; 17] = [
        El1Register::Sctlr,
        El1Register::Cpacr,
        El1Register::Ttbr0,
        El1Register::Ttbr1,
        El1Register::Tcr,
        El1Register::Mair,
        El1Register::Amair,
        El1Register::Contextidr,
        El1Register::Vbar,
        El1Register::Elr,
        El1Register::Spsr,
        El1Register::Esr,
        El1Register::Far,
        El1Register::SpEl1,
        El1Register::Afsr0,
        El1Register::Afsr1,
        El1Register::Mdscr,
    ];

    /// The register's byte offset in the VNCR page.
    pub const fn vncr_offset(self) -> usize {
        match self {
            El1Register::Cpacr => 0x100,
            El1Register::Contextidr => 0x108,
            El1Register::Sctlr => 0x110,
            El1Register::Tcr => 0x120,
            El1Register::Afsr0 => 0x128,
            El1Register::Afsr1 => 0x130,
            El1Register::Esr => 0x138,
            El1Register::Mair => 0x140,
            El1Register::Amair => 0x148,
            El1Register::Mdscr => 0x158,
            El1Register::Spsr => 0x160,
            El1Register::Ttbr0 => 0x200,
            El1Register::Ttbr1 => 0x210,
            El1Register::Far => 0x220,
            El1Register::Elr => 0x230,
            El1Register::SpEl1 => 0x240,
            El1Register::Vbar => 0x250,
        }
    }
}

/// One set of the swapped EL1 registers (L1's virtual EL2 state while L2
/// runs), in [`El1Register::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1State(pub [u64; El1Register::ALL.len()]);

impl El1State {
    /// The value of `register`.
    pub fn get(&self, register: El1Register) -> u64 {
        self.0[register as usize]
    }

    /// Sets `register`.
    pub fn set(&mut self, register: El1Register, value: u64) {
        self.0[register as usize] = value;
    }
}

/// A VNCR page: 4 KiB aligned, as VNCR_EL2.BADDR requires. The hardware
/// reads and writes it through NV2 while L1 runs, outside the Rust
/// abstract machine, so hv never holds a `&mut` to it (review 23 L1): its
/// words are `AtomicU64`s, whose relaxed loads and stores are single-copy
/// atomic 64-bit LDR/STR on AArch64, and the page is only ever shared.
/// Ordering against the hardware's accesses comes from the exception
/// entry and ERET (context synchronization) around every L1 run, not from
/// these accesses.
#[derive(Debug)]
#[repr(C, align(4096))]
pub struct VncrPage([AtomicU64; PAGE_BYTES / 8]);

impl Default for VncrPage {
    fn default() -> Self {
        VncrPage([const { AtomicU64::new(0) }; PAGE_BYTES / 8])
    }
}

impl VncrPage {
    /// The word at byte `offset` (8-byte aligned, inside the page; hv's
    /// offsets are the constants above, checked by the tests).
    pub fn get(&self, offset: usize) -> u64 {
        self.0[offset / 8].load(Ordering::Relaxed)
    }

    /// Writes the word at byte `offset`.
    pub fn set(&self, offset: usize, value: u64) {
        self.0[offset / 8].store(value, Ordering::Relaxed)
    }

    /// L2's EL1 registers as L1 left them.
    pub fn el1(&self, register: El1Register) -> u64 {
        self.get(register.vncr_offset())
    }

    /// Stores L2's `register`.
    pub fn set_el1(&self, register: El1Register, value: u64) {
        self.set(register.vncr_offset(), value)
    }

    /// L1's virtual VTTBR_EL2.
    pub fn vttbr(&self) -> u64 {
        self.get(VTTBR_EL2)
    }

    /// L1's virtual VTCR_EL2.
    pub fn vtcr(&self) -> u64 {
        self.get(VTCR_EL2)
    }

    /// L1's virtual HCR_EL2.
    pub fn hcr(&self) -> u64 {
        self.get(HCR_EL2)
    }
}
