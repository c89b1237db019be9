//! The `el0-tge` guest hypervisor (L1): a non-VHE L1 (E2H = 0, as for
//! `mmu`) that runs its own EL0 with its virtual HCR_EL2.TGE = 1, where DDI
//! 0487 has EL0 in the EL1&0 regime with SCTLR_EL1.M treated as 0 (stage
//! 1 off, stage 2 as HCR_EL2.VM says) and every exception that would go to
//! EL1 taken to EL2 (`crate::nested::entry::runs_el0_with_tge`). Copied
//! by `arch::nested` into L1's memory like `arch::nested_l1`; data to hv,
//! never executed at EL2.
//!
//! L1 (MMU off, its stack at +1 MiB):
//! 1. writes [`MAGIC`] at its page A (+0x300000) and builds a stage 2 (its
//!    VTCR_EL2, VMID 5): IPA 0x80000 -> its EL0 code page, 0x100000 -> A,
//!    0x90000 -> a stage-1 level-1 table (+0x303000) whose entry 0 maps VA
//!    0-1 GiB to IPA 1-2 GiB, where its stage 2 maps nothing;
//! 2. sets its EL1&0 regime (EL1 encodings, NV1: the VNCR page) to
//!    translate with that table: MAIR_EL1, TCR_EL1 (T0SZ 25, 4 KiB),
//!    TTBR0_EL1 0x90000, SCTLR_EL1.M 1; CPACR_EL1 0 (FP/SIMD traps at EL0
//!    and EL1); its virtual HCR_EL2 RW | TGE | VM (E2H RES0);
//!    Then, with TGE set, its AT S1E0R of VA 0x100000 must give the VA
//!    (PAR_EL1 0x100b00: stage 1 off, Device-nGnRnE), S12E1R of it page
//!    A's L1 IPA through its stage 2 (still Device), S1E1R of VA 1 << 40
//!    an Address size fault at level 0 (0x801), not a walk of the table;
//! 3. ERETs to EL0 (SPSR_EL2 EL0t) at VA 0x80000: with stage 1 off (TGE)
//!    that is IPA 0x80000, its code; stage 1 on would fetch from IPA
//!    0x40080000 and fault at stage 2;
//! 4. EL0 loads VA 0x100000 (stage 1 off: IPA 0x100000, page A), then its
//!    FP instruction traps (CPACR_EL1.FPEN 0b00) to L1's VBAR_EL2 + 0x400
//!    with ESR_EL2 0x02000000 (EC 0x00: an FP/SIMD trap of CPACR_EL1 that
//!    TGE routes to EL2 is reported as an Unknown reason exception, DDI
//!    0487; QEMU does the same), SPSR_EL2 EL0t, ELR_EL2 the instruction:
//!    L1 sets CPACR_EL1.FPEN 0b11 and ERETs to it;
//! 5. EL0 loads VA 1 << 40, beyond the 40 bits of PA L1 is shown: an
//!    Address size fault at level 0 of the disabled stage 1 (ESR_EL2
//!    0x92000000, FAR_EL2 the VA); L1 ERETs past it;
//! 6. EL0's `svc #0x42` (x0 = 0x5a) reaches VBAR_EL2 + 0x400: ESR_EL2
//!    0x56000042, ELR_EL2 after it, x0 as EL0 left it, x2 page A's value;
//!    L1's SCTLR_EL1 reads back as L1 wrote it (M 1), not as hv ran the
//!    EL0 (M cleared in the hardware: review 48 R48-2);
//! 7. prints `UMBRA-NESTED-PASS el0-tge at=ok stage1-off=ok fp-trap=ok
//!    address-size=ok svc=ok sctlr=ok` and calls PSCI SYSTEM_OFF, or
//!    `UMBRA-NESTED-FAIL: <why>` with the value and SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1E", "umbra_l1e"),
    r#"
.pushsection .rodata.umbra_l1_tge, "a"
.balign 4096
.global umbra_l1_tge_image
umbra_l1_tge_image:
    adr     x9, umbra_l1_tge_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1E_EXPECT x1, 8, umbra_l1e_msg_el
    adr     x1, umbra_l1e_vectors
    msr     vbar_el2, x1
    isb
    // 1. Page A, the stage-1 table (entry 0: VA 0-1 GiB -> IPA 1-2 GiB),
    // the stage 2.
    add     x12, x9, #0x300000
    UMBRA_L1E_MOV64 x1, {magic}
    str     x1, [x12]
    add     x15, x9, #0x303000
    mov     x2, #0
1:  str     xzr, [x15, x2]
    add     x2, x2, #8
    cmp     x2, #0x1000
    b.lo    1b
    UMBRA_L1E_MOV64 x1, {s1_block}
    str     x1, [x15]
    add     x13, x9, #0x200000
    UMBRA_L1E_L2_STAGE2_TABLES umbra_l1e_el0
    orr     x1, x12, #0x7ff
    str     x1, [x14, #0x100 * 8]
    orr     x1, x15, #0x7ff
    str     x1, [x14, #0x90 * 8]
    // 2. The EL1&0 regime (VNCR words: NV1), FP trapped, TGE.
    UMBRA_L1E_MOV64 x1, 0xff
    msr     mair_el1, x1
    UMBRA_L1E_MOV64 x1, {tcr}
    msr     tcr_el1, x1
    mov     x1, #0x90000
    msr     ttbr0_el1, x1
    UMBRA_L1E_MOV64 x1, {sctlr_m}
    msr     sctlr_el1, x1
    msr     cpacr_el1, xzr
    UMBRA_L1E_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    // 2a. L1's AT on that regime under TGE (stage 1 off, hv's emulation):
    // S1E0R of VA 0x100000 is the VA, Device-nGnRnE; S12E1R of it is page
    // A through L1's stage 2, still Device; S1E1R of VA 1 << 40 an
    // Address size fault at level 0 (PAR_EL1 0x801).
    mov     x1, #0x100000
    at      s1e0r, x1
    isb
    mrs     x4, par_el1
    UMBRA_L1E_EXPECT x4, {par_s1_off}, umbra_l1e_msg_at_s1e0r
    mov     x1, #0x100000
    at      s12e1r, x1
    isb
    mrs     x4, par_el1
    mov     x5, #{par_device_low}
    orr     x5, x5, x12
    adr     x10, umbra_l1e_msg_at_s12e1r
    mov     x11, x4
    cmp     x4, x5
    b.ne    umbra_l1e_fail
    UMBRA_L1E_MOV64 x1, {beyond_pa}
    at      s1e1r, x1
    isb
    mrs     x4, par_el1
    UMBRA_L1E_EXPECT x4, {par_address_size}, umbra_l1e_msg_at_s1e1r
    UMBRA_L1E_PUTS umbra_l1e_msg_at_ok
    UMBRA_L1E_PUTS umbra_l1e_msg_start
    // 3. To EL0 at VA 0x80000 (x20: the step the vector expects).
    mov     x20, #0
    mov     x1, #0x80000
    msr     elr_el2, x1
    msr     spsr_el2, xzr
    eret

"#,
    l1_asm_print!("UMBRA_L1E", "umbra_l1e"),
    l1_asm_fail!("UMBRA_L1E", "umbra_l1e"),
    l1_asm_vectors!(
        "UMBRA_L1E",
        "umbra_l1e",
        "umbra_l1e_unexpected",
        "umbra_l1e_unexpected",
        "umbra_l1e_lower_sync",
        "umbra_l1e_unexpected",
    ),
    r#"

// 4-6: an exception from L1's EL0 (x20 the step).
umbra_l1e_lower_sync:
    mov     x21, x0
    mrs     x19, esr_el2
    mrs     x11, spsr_el2
    adr     x10, umbra_l1e_msg_spsr
    and     x1, x11, #0xf
    cbnz    x1, umbra_l1e_fail
    cmp     x20, #1
    b.eq    1f
    b.hi    2f
    // 4: the FP trap, at the FP instruction (the fourth of EL0's code).
    UMBRA_L1E_EXPECT x19, {esr_fp}, umbra_l1e_msg_fp
    mrs     x11, elr_el2
    UMBRA_L1E_EXPECT x11, 0x80008, umbra_l1e_msg_fp_elr
    UMBRA_L1E_MOV64 x1, {cpacr_fp}
    msr     cpacr_el1, x1
    mov     x20, #1
    UMBRA_L1E_PUTS umbra_l1e_msg_fp_ok
    eret
    // 5: the Address size fault of the disabled stage 1.
1:  UMBRA_L1E_EXPECT x19, {esr_address_size}, umbra_l1e_msg_address_size
    mrs     x11, far_el2
    UMBRA_L1E_EXPECT x11, {beyond_pa}, umbra_l1e_msg_far
    mrs     x1, elr_el2
    add     x1, x1, #4
    msr     elr_el2, x1
    mov     x20, #2
    UMBRA_L1E_PUTS umbra_l1e_msg_address_size_ok
    eret
    // 6: the SVC, after EL0's load through its disabled stage 1.
2:  UMBRA_L1E_EXPECT x19, {esr_svc}, umbra_l1e_msg_svc
    UMBRA_L1E_EXPECT x21, 0x5a, umbra_l1e_msg_x0
    UMBRA_L1E_EXPECT x2, {magic}, umbra_l1e_msg_load
    // ELR_EL2: the VA (0x80000 + its offset in the page) after the SVC.
    mrs     x11, elr_el2
    adr     x4, umbra_l1e_after_svc
    adr     x5, umbra_l1e_el0
    sub     x4, x4, x5
    add     x4, x4, #0x80000
    adr     x10, umbra_l1e_msg_elr
    cmp     x11, x4
    b.ne    umbra_l1e_fail
    UMBRA_L1E_PUTS umbra_l1e_msg_svc_ok
    // L1's SCTLR_EL1 (its VNCR word) reads back as L1 wrote it (M 1),
    // not as hv ran its EL0 (M cleared in the hardware).
    mrs     x1, sctlr_el1
    UMBRA_L1E_EXPECT x1, {sctlr_m}, umbra_l1e_msg_sctlr
    UMBRA_L1E_PUTS umbra_l1e_msg_pass
    UMBRA_L1E_SYSTEM_OFF

umbra_l1e_msg_start:    .asciz "L1 (el0-tge, E2H = 0): virtual HCR_EL2 RW | TGE | VM, SCTLR_EL1.M 1 (its table maps VA 0 to IPA 1 GiB), CPACR_EL1 0; ERET to EL0 at 0x80000\n"
umbra_l1e_msg_fp_ok:    .asciz "L1: its EL0 ran at IPA 0x80000 (stage 1 off); its FP instruction's CPACR_EL1 trap reached VBAR_EL2 + 0x400 as EC 0x00 (ESR_EL2 0x02000000, SPSR_EL2 EL0t); CPACR_EL1.FPEN 0b11, ERET to retry\n"
umbra_l1e_msg_address_size_ok: .asciz "L1: its EL0's load from VA 1 << 40 took an Address size fault at level 0 (ESR_EL2 0x92000000, FAR_EL2 the VA)\n"
umbra_l1e_msg_svc_ok:   .asciz "L1: its EL0's SVC #0x42 reached VBAR_EL2 + 0x400 (ESR_EL2 0x56000042, ELR_EL2 after it, x0 0x5a); its load of VA 0x100000 read page A\n"
umbra_l1e_msg_at_ok:    .asciz "L1: with TGE = 1 (E2H = 0) its AT S1E0R of VA 0x100000 gave the VA (PAR_EL1 0x100b00: stage 1 off, Device-nGnRnE), S12E1R page A through its stage 2, S1E1R of VA 1 << 40 an Address size fault (0x801)\n"
umbra_l1e_msg_pass:     .asciz "UMBRA-NESTED-PASS el0-tge at=ok stage1-off=ok fp-trap=ok address-size=ok svc=ok sctlr=ok\n"
umbra_l1e_msg_nl:       .asciz "\n"
umbra_l1e_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_l1e_msg_el:       .asciz "CurrentEL is not 2: "
umbra_l1e_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1e_msg_spsr:     .asciz "the exception did not come from EL0t: SPSR_EL2 "
umbra_l1e_msg_fp:       .asciz "the first exception from L1's EL0 (TGE = 1, stage 1 off: it runs at IPA 0x80000) is not its FP trap, ESR_EL2 "
umbra_l1e_msg_fp_elr:   .asciz "ELR_EL2 of the FP trap is not EL0's FP instruction: "
umbra_l1e_msg_address_size: .asciz "L1's EL0 load beyond its 40-bit PA with stage 1 off did not take an Address size fault at level 0: ESR_EL2 "
umbra_l1e_msg_far:      .asciz "FAR_EL2 of the Address size fault is not the VA: "
umbra_l1e_msg_svc:      .asciz "L1's EL0 SVC #0x42 gave a wrong ESR_EL2: "
umbra_l1e_msg_x0:       .asciz "x0 at L1's vector is not what its EL0 left (0x5a): "
umbra_l1e_msg_elr:      .asciz "ELR_EL2 after its EL0's SVC is not the next instruction: "
umbra_l1e_msg_at_s1e0r: .asciz "AT S1E0R of VA 0x100000 with TGE = 1 (E2H = 0: stage 1 off, the VA the output) gave a wrong PAR_EL1: "
umbra_l1e_msg_at_s12e1r: .asciz "AT S12E1R of VA 0x100000 with TGE = 1 (stage 1 off, L1's stage 2 to page A) gave a wrong PAR_EL1: "
umbra_l1e_msg_at_s1e1r: .asciz "AT S1E1R of VA 1 << 40 with TGE = 1 (stage 1 off, beyond the 40-bit PA) gave a wrong PAR_EL1: "
umbra_l1e_msg_sctlr:    .asciz "L1's SCTLR_EL1 after its EL0 ran under TGE is not what L1 wrote (M 1): "
umbra_l1e_msg_load:     .asciz "L1's EL0 load of VA 0x100000 (stage 1 off: IPA 0x100000, page A) read "

// L1's EL0 (EL0t, its EL1&0 regime with stage 1 off), at VA and IPA
// 0x80000.
.balign 4096
umbra_l1e_el0:
    movz    x5, #0x10, lsl #16
    ldr     x2, [x5]
    .inst   0x9e670120                      // fmov d0, x9
    movz    x6, #0x100, lsl #32
    ldr     x3, [x6]
    mov     x0, #0x5a
    svc     #0x42
umbra_l1e_after_svc:
    b       .
.balign 4096
.global umbra_l1_tge_image_end
umbra_l1_tge_image_end:
.popsection
"#,
    putc = const super::nested::HVC_CONSOLE_PUTC,
    magic = const MAGIC,
    s1_block = const STAGE1_BLOCK,
    tcr = const EL0_TCR,
    sctlr_m = const crate::sysregs::SCTLR_EL1_MMU_OFF | 1,
    vtcr = const super::nested_l1::L1_VTCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    vhcr = const TGE_VIRTUAL_HCR,
    cpacr_fp = const 0b11 << 20,
    esr_fp = const ESR_CPACR_FP_UNDER_TGE,
    esr_address_size = const ESR_ADDRESS_SIZE_L0,
    beyond_pa = const 1u64 << 40,
    esr_svc = const super::nested_l1_host::ESR_SVC_42,
    par_s1_off = const PAR_S1_OFF,
    par_device_low = const PAR_DEVICE_LOW,
    par_address_size = const PAR_ADDRESS_SIZE_L0,
);

use crate::nested::at::{par_fault, par_translated};
use crate::nested::hcr;

/// What EL0 reads at VA 0x100000 with stage 1 off (IPA 0x100000: page A).
pub const MAGIC: u64 = 0x7e07_0000_1111_00e0;
/// L1's virtual HCR_EL2: RW, TGE, VM (E2H 0, RES0 for this L1).
pub const TGE_VIRTUAL_HCR: u64 = hcr::RW | hcr::TGE | hcr::VM;
/// The stage-1 level-1 block EL0 would use if stage 1 were on: VA 0-1 GiB
/// to IPA 0x40000000 (AF, Inner Shareable, AP EL0 read/write, AttrIndx 0),
/// where L1's stage 2 maps nothing.
pub const STAGE1_BLOCK: u64 = 0x4000_0000 | 1 << 10 | 0b11 << 8 | 1 << 6 | 0b01;
/// TCR_EL1 for that table: T0SZ 25 (39-bit VA, from level 1), 4 KiB
/// granule, write-back Inner Shareable walks, EPD1, IPS 40 bits.
pub const EL0_TCR: u64 = 25 | 1 << 8 | 1 << 10 | 0b11 << 12 | 1 << 23 | 0b010 << 32;
/// CPACR_EL1's FP/SIMD trap from EL0 routed to EL2 by TGE: reported as
/// an Unknown reason exception, EC 0x00, IL 1.
pub const ESR_CPACR_FP_UNDER_TGE: u64 = 1 << 25;
/// A level-0 Address size fault on a data load from a lower EL: EC 0x24,
/// IL 1, DFSC 0b000000, ISV 0.
pub const ESR_ADDRESS_SIZE_L0: u64 = 0x24 << 26 | 1 << 25;

/// PAR_EL1's low bits of a Device-nGnRnE translation (ATTR 0x00): SH
/// 0b10, NS, bit 11 RES1 (0xb00).
pub const PAR_DEVICE_LOW: u64 = par_translated(0, 0x00, 0b10);
/// PAR_EL1 for AT S1E0R of VA 0x100000 with TGE = 1 (E2H = 0): stage 1
/// off, the VA as the output address, Device-nGnRnE.
pub const PAR_S1_OFF: u64 = par_translated(0x10_0000, 0x00, 0b10);
/// PAR_EL1 for an Address size fault at level 0 (0x801).
pub const PAR_ADDRESS_SIZE_L0: u64 = par_fault(0x00, false, false);

assembled_image!(
    "The `el0-tge` L1 image's bytes.",
    umbra_l1_tge_image,
    umbra_l1_tge_image_end
);
