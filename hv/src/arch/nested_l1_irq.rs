//! The `irq` guest hypervisor (L1) and its guest (L2): L1 injects
//! virtual interrupts into L2 through its virtual GIC interface
//! (ICH_LR<n>_EL2, ICH_HCR_EL2, ICH_VMCR_EL2 in the VNCR page; ICH_VTR,
//! MISR, EISR and ELRSR_EL2 trapped and answered by hv,
//! `arch::nested_vgic`) and takes its own maintenance interrupt. Copied by
//! `arch::nested` into L1's memory like `arch::nested_l1`; data to hv,
//! never executed at EL2.
//!
//! L1 (MMU off, its stack at +1 MiB, L2's stage 2 at +2 MiB mapping L2
//! IPA 0x80000 to the L2 payload page, VMID 5; virtual HCR_EL2 RW, DC, VM
//! and IMO, so its maintenance interrupt is an IRQ at its virtual EL2):
//! 1. checks CurrentEL is 2 and ICH_VTR_EL2 (nV4 set, at least one list
//!    register), enables its own interrupts (ICC_PMR_EL1 0xff,
//!    ICC_IGRPEN1_EL1 1: its ICV_* registers) and keeps PSTATE.I masked;
//!    writes ICC_AP0R0_EL1 = 1 and reads ICC_RPR_EL1 0, then 0 and 0xff:
//!    its group-0 registers are its own virtual interface's, never hv's
//!    physical one (review 33 R33-1: that write masked every interrupt of
//!    hv, the watchdog too); L2's first act is the same write, which L1
//!    then reads in its ICH_AP0R0_EL2 (`hvc #7`) and clears;
//! 2. A: ICH_LR0_EL2 = vINTID 42, group 1, priority 0xa0, pending;
//!    ICH_HCR_EL2.En; ICH_VMCR_EL2 0; ERET to L2. L2 sets its PMR to 0xf0
//!    and its group 1 enable, unmasks IRQs, takes the interrupt at its
//!    VBAR_EL1 + 0x280, reads ICC_IAR1_EL1, writes ICC_EOIR1_EL1 and
//!    reports the INTID (`hvc #1`). L1 checks 42, LR0 invalid (State
//!    0b00), ELRSR bit 0 set, EISR and MISR 0, ICH_VMCR_EL2.VPMR 0xf0 and
//!    VENG1 (what L2 wrote), ICH_AP1R0_EL2 0;
//! 3. B: LR0 = vINTID 43, priority 0x80, pending, EOI = 1. L2's EOI makes
//!    the LR an EOI maintenance request: L1's maintenance interrupt
//!    interrupts L2 (VBAR_EL2 + 0x480); L1 acknowledges it (INTID 25),
//!    checks MISR.EOI, EISR bit 0, ELRSR bit 0 clear, LR0 invalid, empties
//!    LR0, checks MISR 0, EOIs it; L2 reports 43 (`hvc #2`);
//! 4. C: LR0 = vINTID 44, priority 0x90, pending; ICH_HCR_EL2.LRENPIE.
//!    L2's handler reports from inside (`hvc #3`): L1 checks LR0 active,
//!    ICH_AP1R0_EL2 not 0, ELRSR bit 0 clear, and takes the interrupt out
//!    of LR0 (as a hypervisor short of list registers does). L2's EOI then
//!    matches no LR: ICH_HCR_EL2.EOIcount 1 and MISR.LRENP, the
//!    maintenance interrupt again; L1 checks EOIcount 1 and AP1R0 0 (the
//!    priority drop), clears EOIcount; L2 reports 44 (`hvc #4`);
//! 5. D: with PSTATE.I masked L1 writes an LR that asks for EOI
//!    maintenance at once (invalid, EOI = 1), reads MISR.EOI, checks the
//!    interrupt is not taken while masked, unmasks: it is taken at
//!    VBAR_EL2 + 0x280 and handled as in B;
//! 6. E: LR0 = vINTID 46 with HW = 1 naming pINTID 0 (an SGI L1 never
//!    made active: L2's deactivation of 46 leaves it as it is, the
//!    CONSTRAINED UNPREDICTABLE choice of `crate::nested::vgic`); L2 takes
//!    it (`hvc #5`); L1 reads back its entry with State 0b00 (HW and
//!    pINTID kept), ELRSR bit 0 set, EISR 0;
//! 7. F: with PSTATE.I masked, ICH_MISR_EL2 reads U and NP (UIE, NPIE,
//!    no valid LR), then VGrp1E (VGrp1EIE/DIE and the VENG1 L2 set), then
//!    0; unmasking then takes no interrupt (hv withdrew the one those
//!    conditions raised);
//! 8. G (R33-2): with PSTATE.I masked, ICH_HCR_EL2 = En|UIE by a store
//!    (MISR.U, nothing traps), WFI: it completes, and unmasking takes the
//!    maintenance interrupt (L1 serves U by clearing UIE);
//! 9. H (R33-3): ICH_HCR_EL2 = En|VGrp0DIE with L2's VENG0 0 and VENG1 1
//!    (MISR.VGrp0D, which QEMU 10.0's hardware does not assert); L1's
//!    ERET into L2 takes the maintenance interrupt at once (VBAR_EL2 +
//!    0x480, ELR_EL2 L2's next instruction, `hvc #6`);
//! 10. I (R33-3): L2's VMCR VENG0|VEOIM (VENG1 0), LR0 vINTID 47 active
//!    with EOI, ICH_HCR_EL2 En|VGrp0DIE (MISR 0, where QEMU's hardware
//!    asserts VGrp0D); L2 deactivates 47 (ICC_DIR_EL1) and spins: LR0's
//!    EOI maintenance interrupt must take L1 out of L2;
//! 11. prints `UMBRA-NESTED-PASS irq ...` (six maintenance interrupts,
//!    MISR EOI, U, LRENP and VGrp0D seen) and calls PSCI SYSTEM_OFF, or
//!    `UMBRA-NESTED-FAIL: <why>` with the value and SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1I", "umbra_l1i"),
    r#"
// Unmasks IRQs for a moment (an interrupt pending at L1's virtual EL2 is
// taken there) and masks them again. Its IRQ overwrites ELR_EL2 and
// SPSR_EL2 (L2's return): kept aside (clobbers x24, x25).
.macro UMBRA_L1I_IRQ_WINDOW
    mrs     x24, elr_el2
    mrs     x25, spsr_el2
    msr     daifclr, #2
    isb
    nop
    nop
    msr     daifset, #2
    msr     elr_el2, x24
    msr     spsr_el2, x25
.endm

.pushsection .rodata.umbra_l1_irq, "a"
.balign 4096
.global umbra_l1_irq_image
umbra_l1_irq_image:
    adr     x9, umbra_l1_irq_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1I_EXPECT x1, 8, umbra_l1i_msg_el
    adr     x1, umbra_l1i_vectors
    msr     vbar_el2, x1
    isb
    // ICH_VTR_EL2 (trapped): no direct injection (nV4), some LRs.
    mrs     x19, s3_4_c12_c11_1
    UMBRA_L1I_REPORT umbra_l1i_msg_vtr, x19
    ubfx    x1, x19, #20, #1
    UMBRA_L1I_EXPECT x1, 1, umbra_l1i_msg_bad_vtr
    // L1's own interface: everything in, group 1 on (PSTATE.I masked).
    mov     x1, #0xff
    msr     s3_0_c4_c6_0, x1
    mov     x1, #1
    msr     s3_0_c12_c12_7, x1
    isb
    // ICC_AP0R0_EL1 (group 0, HCR_EL2.FMO): its own running priority.
    mov     x1, #1
    msr     s3_0_c12_c8_4, x1
    isb
    mrs     x21, s3_0_c12_c11_3
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_rpr_ap0r
    msr     s3_0_c12_c8_4, xzr
    isb
    mrs     x21, s3_0_c12_c11_3
    UMBRA_L1I_EXPECT x21, 0xff, umbra_l1i_msg_rpr_idle
    UMBRA_L1I_PUTS umbra_l1i_msg_group0
    // L2's stage 2: root (level 1), level 2, level 3, zeroed; L2 IPA
    // 0x80000 -> the payload page.
    add     x13, x9, #0x200000
    UMBRA_L1I_L2_STAGE2_TABLES umbra_l2i_payload
    UMBRA_L1I_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    UMBRA_L1I_MOV64 x1, {l2_vbar}
    msr     s3_5_c12_c0_0, x1
    // A: vINTID 42 pending in LR0, the interface on, L2's VMCR 0.
    UMBRA_L1I_MOV64 x1, {lr_a}
    msr     s3_4_c12_c12_0, x1
    msr     s3_4_c12_c11_7, xzr
    mov     x1, #1
    msr     s3_4_c12_c11_0, x1
    isb
    UMBRA_L1I_PUTS umbra_l1i_msg_enter
    UMBRA_L1I_AT_L2_PAYLOAD
    eret

"#,
    l1_asm_print!("UMBRA_L1I", "umbra_l1i"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1I", "umbra_l1i"),
    // The current EL's IRQ: D, L1's own maintenance interrupt once it
    // unmasks; the lower EL's: B, C, the maintenance interrupt taking L1
    // out of L2 (whose HVCs are the lower EL's synchronous exceptions).
    l1_asm_vectors!(
        "UMBRA_L1I",
        "umbra_l1i",
        "umbra_l1i_unexpected",
        "umbra_l1i_irq",
        "umbra_l1i_lower_sync",
        "umbra_l1i_irq",
    ),
    r#"

// L1's maintenance interrupt: acknowledged through its own ICV_IAR1,
// served as ICH_MISR_EL2 says (EOI: the EOI-maintenance LR emptied;
// LRENP: EOIcount cleared), checked gone (MISR 0), EOId.
umbra_l1i_irq:
    UMBRA_L1I_SAVE
    adr     x9, umbra_l1_irq_image
    mrs     x19, s3_0_c12_c12_0
    UMBRA_L1I_EXPECT x19, {maintenance_intid}, umbra_l1i_msg_irq_intid
    mrs     x20, s3_4_c12_c11_2
    tbnz    x20, #0, 6f
    tbnz    x20, #2, 7f
    // G (U) and H (VGrp0D): served by turning their enable off.
    cmp     x20, #2
    b.eq    10f
    cmp     x20, #0x20
    b.eq    10f
    mov     x11, x20
    adr     x10, umbra_l1i_msg_irq_misr
    b       umbra_l1i_fail
10: mov     x21, #1
    msr     s3_4_c12_c11_0, x21
    b       8f
6:  UMBRA_L1I_EXPECT x20, 1, umbra_l1i_msg_irq_misr
    mrs     x21, s3_4_c12_c11_3
    UMBRA_L1I_EXPECT x21, 1, umbra_l1i_msg_eisr
    mrs     x21, s3_4_c12_c11_5
    and     x21, x21, #1
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_elrsr_eoi
    mrs     x21, s3_4_c12_c12_0
    lsr     x22, x21, #62
    UMBRA_L1I_EXPECT x22, 0, umbra_l1i_msg_lr_eoi_state
    msr     s3_4_c12_c12_0, xzr
    b       8f
7:  UMBRA_L1I_EXPECT x20, 4, umbra_l1i_msg_irq_misr
    mrs     x21, s3_4_c12_c11_0
    ubfx    x22, x21, #27, #5
    UMBRA_L1I_EXPECT x22, 1, umbra_l1i_msg_eoicount
    mrs     x22, s3_4_c12_c9_0
    UMBRA_L1I_EXPECT x22, 0, umbra_l1i_msg_ap1r_dropped
    and     x21, x21, #0x7ffffff
    msr     s3_4_c12_c11_0, x21
8:  mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_misr_after
    msr     s3_0_c12_c12_1, x19
    adr     x4, umbra_l1i_irqs
    ldr     x5, [x4]
    add     x5, x5, #1
    str     x5, [x4]
    adr     x4, umbra_l1i_misr_seen
    ldr     x5, [x4]
    orr     x5, x5, x20
    str     x5, [x4]
    adr     x4, umbra_l1i_last_step
    ldr     x5, [x4]
    cbnz    x5, umbra_l1i_done
    UMBRA_L1I_RESTORE
    eret

umbra_l1i_lower_sync:
    UMBRA_L1I_SAVE
    adr     x9, umbra_l1_irq_image
    mrs     x19, esr_el2
    ubfx    x20, x19, #26, #6
    mov     x11, x19
    adr     x10, umbra_l1i_msg_unexpected
    cmp     x20, #0x16
    b.ne    umbra_l1i_fail
    and     x21, x19, #0xffff
    ldr     x22, [sp, #16]
    cmp     x21, #1
    b.eq    umbra_l1i_hvc1
    cmp     x21, #2
    b.eq    umbra_l1i_hvc2
    cmp     x21, #3
    b.eq    umbra_l1i_hvc3
    cmp     x21, #4
    b.eq    umbra_l1i_hvc4
    cmp     x21, #5
    b.eq    umbra_l1i_hvc5
    cmp     x21, #6
    b.eq    umbra_l1i_hvc6
    cmp     x21, #7
    b.eq    umbra_l1i_hvc7
    b       umbra_l1i_fail

umbra_l1i_resume:
    UMBRA_L1I_RESTORE
    eret

// Before A: L2 wrote ICC_AP0R0_EL1 = 1, which is L1's ICH_AP0R0_EL2
// (hv runs L2 with HCR_EL2.FMO); L1 clears it, as a hypervisor may.
umbra_l1i_hvc7:
    mrs     x21, s3_4_c12_c8_0
    UMBRA_L1I_EXPECT x21, 1, umbra_l1i_msg_l2_ap0r
    msr     s3_4_c12_c8_0, xzr
    UMBRA_L1I_PUTS umbra_l1i_msg_l2_group0
    b       umbra_l1i_resume

// A: L2 acknowledged and EOId vINTID 42.
umbra_l1i_hvc1:
    UMBRA_L1I_EXPECT x22, 42, umbra_l1i_msg_bad_intid
    mrs     x21, s3_4_c12_c12_0
    lsr     x23, x21, #62
    mov     x11, x21
    adr     x10, umbra_l1i_msg_lr_not_written_back
    cbnz    x23, umbra_l1i_fail
    mrs     x21, s3_4_c12_c11_5
    and     x21, x21, #1
    UMBRA_L1I_EXPECT x21, 1, umbra_l1i_msg_elrsr
    mrs     x21, s3_4_c12_c11_3
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_eisr_a
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_misr_a
    mrs     x21, s3_4_c12_c11_7
    lsr     x23, x21, #24
    UMBRA_L1I_EXPECT x23, 0xf0, umbra_l1i_msg_vmcr
    ubfx    x23, x21, #1, #1
    UMBRA_L1I_EXPECT x23, 1, umbra_l1i_msg_vmcr
    mrs     x21, s3_4_c12_c9_0
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_ap1r_a
    UMBRA_L1I_PUTS umbra_l1i_msg_a
    // B: vINTID 43 with EOI maintenance.
    UMBRA_L1I_MOV64 x1, {lr_b}
    msr     s3_4_c12_c12_0, x1
    isb
    b       umbra_l1i_resume

// B: L2 acknowledged and EOId vINTID 43; the maintenance interrupt came.
umbra_l1i_hvc2:
    UMBRA_L1I_EXPECT x22, 43, umbra_l1i_msg_bad_intid
    adr     x4, umbra_l1i_irqs
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 1, umbra_l1i_msg_irq_count
    UMBRA_L1I_PUTS umbra_l1i_msg_b
    // C: vINTID 44; EOIcount maintenance.
    UMBRA_L1I_MOV64 x1, {lr_c}
    msr     s3_4_c12_c12_0, x1
    mov     x1, #5
    msr     s3_4_c12_c11_0, x1
    isb
    b       umbra_l1i_resume

// C, inside L2's handler: vINTID 44 active; L1 takes it out of LR0.
umbra_l1i_hvc3:
    UMBRA_L1I_EXPECT x22, 44, umbra_l1i_msg_bad_intid
    mrs     x21, s3_4_c12_c12_0
    lsr     x23, x21, #62
    UMBRA_L1I_EXPECT x23, 2, umbra_l1i_msg_lr_active
    mrs     x21, s3_4_c12_c11_5
    and     x21, x21, #1
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_elrsr_active
    mrs     x21, s3_4_c12_c9_0
    mov     x11, x21
    adr     x10, umbra_l1i_msg_ap1r_active
    cbz     x21, umbra_l1i_fail
    UMBRA_L1I_REPORT umbra_l1i_msg_c_active, x21
    msr     s3_4_c12_c12_0, xzr
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_misr_c
    isb
    b       umbra_l1i_resume

// C done (L2 reports 44), then D with PSTATE.I masked (exception entry).
umbra_l1i_hvc4:
    UMBRA_L1I_EXPECT x22, 44, umbra_l1i_msg_bad_intid
    adr     x4, umbra_l1i_irqs
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 2, umbra_l1i_msg_irq_count
    mrs     x21, s3_4_c12_c11_0
    UMBRA_L1I_EXPECT x21, 5, umbra_l1i_msg_hcr_c
    UMBRA_L1I_PUTS umbra_l1i_msg_c
    // D: an LR asking for EOI maintenance at once; the interface on,
    // without LRENPIE.
    mov     x1, #1
    msr     s3_4_c12_c11_0, x1
    UMBRA_L1I_MOV64 x1, {lr_d}
    msr     s3_4_c12_c12_0, x1
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 1, umbra_l1i_msg_misr_d
    // Masked: a trapped read more (hv samples the level at L1's exits),
    // and still no interrupt.
    mrs     x21, s3_4_c12_c11_3
    isb
    adr     x4, umbra_l1i_irqs
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 2, umbra_l1i_msg_masked
    UMBRA_L1I_IRQ_WINDOW
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 3, umbra_l1i_msg_unmasked
    adr     x4, umbra_l1i_misr_seen
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 5, umbra_l1i_msg_misr_seen
    UMBRA_L1I_PUTS umbra_l1i_msg_d
    // E: a HW = 1 entry naming pINTID 0 (hv's own kick SGI on this
    // machine; not active in L1's view).
    msr     s3_4_c12_c12_0, xzr
    UMBRA_L1I_MOV64 x1, {lr_e}
    msr     s3_4_c12_c12_0, x1
    isb
    b       umbra_l1i_resume

// E: L2 acknowledged and EOId the HW = 1 vINTID 46; L1 reads its entry
// back (HW, pINTID) with State 0b00, shown empty.
umbra_l1i_hvc5:
    UMBRA_L1I_EXPECT x22, 46, umbra_l1i_msg_bad_intid
    mrs     x21, s3_4_c12_c12_0
    UMBRA_L1I_EXPECT x21, ({lr_e} & ~(3 << 62)), umbra_l1i_msg_lr_hw
    mrs     x21, s3_4_c12_c11_5
    and     x21, x21, #1
    UMBRA_L1I_EXPECT x21, 1, umbra_l1i_msg_elrsr
    mrs     x21, s3_4_c12_c11_3
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_eisr_a
    UMBRA_L1I_PUTS umbra_l1i_msg_e
    // F (PSTATE.I masked): the other conditions, each read from
    // ICH_MISR_EL2: U and NP (no valid, no pending LR), then VGrp1E (L2's
    // VMCR.VENG1), then none; the maintenance interrupt they raised is
    // withdrawn once they are gone, so unmasking takes nothing.
    UMBRA_L1I_MOV64 x1, 0xb
    msr     s3_4_c12_c11_0, x1
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0xa, umbra_l1i_msg_misr_u_np
    UMBRA_L1I_MOV64 x1, 0xc1
    msr     s3_4_c12_c11_0, x1
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0x40, umbra_l1i_msg_misr_vgrp1
    mov     x1, #1
    msr     s3_4_c12_c11_0, x1
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_misr_after
    UMBRA_L1I_IRQ_WINDOW
    adr     x4, umbra_l1i_irqs
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 3, umbra_l1i_msg_withdrawn
    UMBRA_L1I_PUTS umbra_l1i_msg_f
    // G (masked): MISR.U raised by a store, then WFI.
    mov     x1, #3
    msr     s3_4_c12_c11_0, x1
    isb
    wfi
    mrs     x24, elr_el2
    mrs     x25, spsr_el2
    msr     daifclr, #2
    isb
    nop
    nop
    msr     daifset, #2
    msr     elr_el2, x24
    msr     spsr_el2, x25
    adr     x4, umbra_l1i_irqs
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 4, umbra_l1i_msg_wfi
    UMBRA_L1I_PUTS umbra_l1i_msg_g
    // H: MISR.VGrp0D (L2's VMCR: VENG1 1, VENG0 0), then ERET into L2.
    mov     x1, #0x21
    msr     s3_4_c12_c11_0, x1
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0x20, umbra_l1i_msg_misr_vgrp0d
    b       umbra_l1i_resume

// H: the maintenance interrupt came at the ERET (before L2's `hvc #6`);
// then I: an EOI maintenance request with VGrp0DIE and VENG0 set.
umbra_l1i_hvc6:
    adr     x4, umbra_l1i_irqs
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 5, umbra_l1i_msg_eret
    UMBRA_L1I_PUTS umbra_l1i_msg_h
    adr     x4, umbra_l1i_last_step
    mov     x5, #1
    str     x5, [x4]
    UMBRA_L1I_MOV64 x1, 0xf0000201
    msr     s3_4_c12_c11_7, x1
    UMBRA_L1I_MOV64 x1, {lr_i}
    msr     s3_4_c12_c12_0, x1
    mov     x1, #0x21
    msr     s3_4_c12_c11_0, x1
    mrs     x21, s3_4_c12_c11_2
    UMBRA_L1I_EXPECT x21, 0, umbra_l1i_msg_misr_i
    b       umbra_l1i_resume

// I: L2's ICC_DIR_EL1 raised the EOI maintenance interrupt (the sixth).
umbra_l1i_done:
    adr     x4, umbra_l1i_irqs
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 6, umbra_l1i_msg_irq_count
    adr     x4, umbra_l1i_misr_seen
    ldr     x21, [x4]
    UMBRA_L1I_EXPECT x21, 0x27, umbra_l1i_msg_misr_seen
    UMBRA_L1I_PUTS umbra_l1i_msg_i
    UMBRA_L1I_PUTS umbra_l1i_msg_pass
    UMBRA_L1I_SYSTEM_OFF

.balign 8
umbra_l1i_irqs:
    .quad   0
umbra_l1i_misr_seen:
    .quad   0
umbra_l1i_last_step:
    .quad   0
umbra_l1i_msg_vtr:      .asciz "L1 (irq): at virtual EL2; ICH_VTR_EL2 (trapped, as hv shows it) "
umbra_l1i_msg_enter:    .asciz "L1: vINTID 42 (group 1, priority 0xa0) pending in ICH_LR0_EL2, ICH_HCR_EL2.En; ERET to L2\n"
umbra_l1i_msg_a:        .asciz "L1: L2 took vINTID 42 (IAR1, EOIR1): LR0 invalid, ELRSR bit 0 set, EISR/MISR 0, AP1R0 0, VMCR.VPMR 0xf0 and VENG1 as L2 wrote them\n"
umbra_l1i_msg_b:        .asciz "L1: L2 took vINTID 43 (LR0.EOI): its EOI raised L1's maintenance IRQ (VBAR_EL2 + 0x480, INTID 25; MISR.EOI, EISR 1, ELRSR bit 0 clear)\n"
umbra_l1i_msg_c_active: .asciz "L1: L2 is handling vINTID 44: ICH_LR0_EL2 active, ICH_AP1R0_EL2 "
umbra_l1i_msg_c:        .asciz "L1: L2 EOId vINTID 44 after L1 took it out of LR0: ICH_HCR_EL2.EOIcount 1, AP1R0 0, MISR.LRENP raised the maintenance IRQ\n"
umbra_l1i_msg_d:        .asciz "L1: with PSTATE.I masked its maintenance IRQ waited (MISR.EOI); unmasked, it was taken at VBAR_EL2 + 0x280\n"
umbra_l1i_msg_e:        .asciz "L1: L2 took vINTID 46 from a HW = 1 entry (pINTID 0): LR0 reads back HW and pINTID with State 0b00, ELRSR bit 0 set, EISR 0\n"
umbra_l1i_msg_f:        .asciz "L1: ICH_MISR_EL2 U and NP (UIE, NPIE), then VGrp1E (VENG1 as L2 set it), then 0; their maintenance IRQ was withdrawn\n"
umbra_l1i_msg_misr_u_np: .asciz "ICH_MISR_EL2 is not U and NP with no valid LR, UIE and NPIE: "
umbra_l1i_msg_misr_vgrp1: .asciz "ICH_MISR_EL2 is not VGrp1E with VGrp1EIE, VGrp1DIE and VENG1: "
umbra_l1i_msg_withdrawn: .asciz "L1 took a maintenance interrupt whose conditions were gone: "
umbra_l1i_msg_lr_hw:    .asciz "the HW = 1 ICH_LR0_EL2 is not what L1 wrote with State 0b00 after L2's EOI: "
umbra_l1i_msg_pass:     .asciz "UMBRA-NESTED-PASS irq vintids=42,43,44,46,47 lr-writeback=ok eoi-maintenance=ok eoicount=ok hw-entry=ok misr=ok group0=ok wfi=ok eret=ok maintenance-irqs=6\n"
umbra_l1i_msg_group0:   .asciz "L1: ICC_AP0R0_EL1 = 1 made its own ICC_RPR_EL1 0 (its virtual interface, not hv's physical one); 0 made it 0xff\n"
umbra_l1i_msg_g:        .asciz "L1: G: ICH_HCR_EL2 = En|UIE by a store (MISR.U), WFI completed, the maintenance IRQ was taken once unmasked\n"
umbra_l1i_msg_h:        .asciz "L1: H: ICH_HCR_EL2 = En|VGrp0DIE with L2's VENG0 0 (MISR.VGrp0D): the ERET into L2 took the maintenance IRQ at once\n"
umbra_l1i_msg_i:        .asciz "L1: I: L2's ICC_DIR_EL1 of vINTID 47 (LR0 active with EOI; VENG0, VEOIM, VGrp0DIE; MISR 0) raised the EOI maintenance IRQ\n"
umbra_l1i_msg_rpr_ap0r: .asciz "ICC_RPR_EL1 is not 0 after L1's ICC_AP0R0_EL1 = 1 (its group-0 registers are not its virtual interface's): "
umbra_l1i_msg_l2_group0: .asciz "L1: L2's ICC_AP0R0_EL1 = 1 reached L1's ICH_AP0R0_EL2 (L1's interface for L2, not hv's); L1 cleared it\n"
umbra_l1i_msg_l2_ap0r:  .asciz "L2's ICC_AP0R0_EL1 = 1 did not reach L1's ICH_AP0R0_EL2: "
umbra_l1i_msg_rpr_idle: .asciz "ICC_RPR_EL1 is not idle (0xff) after L1's ICC_AP0R0_EL1 = 0: "
umbra_l1i_msg_wfi:      .asciz "G: the maintenance interrupt L1 raised by a store (MISR.U) was not taken after its WFI: count "
umbra_l1i_msg_misr_vgrp0d: .asciz "H: ICH_MISR_EL2 is not VGrp0D with VGrp0DIE and L2's VENG0 0: "
umbra_l1i_msg_eret:     .asciz "H: the maintenance interrupt asserted at L1's ERET into L2 was not taken there: count "
umbra_l1i_msg_misr_i:   .asciz "I: ICH_MISR_EL2 not 0 with VENG0 set and LR0 active: "
umbra_l1i_msg_nl:       .asciz "\n"
umbra_l1i_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_l1i_msg_el:       .asciz "CurrentEL is not 2: "
umbra_l1i_msg_bad_vtr:  .asciz "ICH_VTR_EL2.nV4 is not set: "
umbra_l1i_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1i_msg_bad_intid: .asciz "L2 acknowledged another INTID: "
umbra_l1i_msg_lr_not_written_back: .asciz "ICH_LR0_EL2 still holds the interrupt after L2 acknowledged and EOId it: "
umbra_l1i_msg_elrsr:    .asciz "ICH_ELRSR_EL2 does not show LR0 empty after L2's EOI: "
umbra_l1i_msg_eisr_a:   .asciz "ICH_EISR_EL2 not 0 without an EOI request: "
umbra_l1i_msg_misr_a:   .asciz "ICH_MISR_EL2 not 0 without a maintenance condition: "
umbra_l1i_msg_vmcr:     .asciz "ICH_VMCR_EL2 is not what L2 wrote (VPMR 0xf0, VENG1): "
umbra_l1i_msg_ap1r_a:   .asciz "ICH_AP1R0_EL2 not 0 after L2's EOI: "
umbra_l1i_msg_irq_intid: .asciz "L1's IRQ is not its maintenance interrupt: "
umbra_l1i_msg_irq_misr: .asciz "L1's maintenance interrupt with an unexpected ICH_MISR_EL2: "
umbra_l1i_msg_eisr:     .asciz "ICH_EISR_EL2 does not show LR0's EOI request: "
umbra_l1i_msg_elrsr_eoi: .asciz "ICH_ELRSR_EL2 shows an LR with an EOI request empty: "
umbra_l1i_msg_lr_eoi_state: .asciz "ICH_LR0_EL2 not invalid after L2's EOI: "
umbra_l1i_msg_eoicount: .asciz "ICH_HCR_EL2.EOIcount is not 1 after L2's EOI of an unlisted interrupt: "
umbra_l1i_msg_ap1r_dropped: .asciz "ICH_AP1R0_EL2 not 0 after L2's priority drop: "
umbra_l1i_msg_misr_after: .asciz "ICH_MISR_EL2 not 0 after L1 served its maintenance condition: "
umbra_l1i_msg_irq_count: .asciz "wrong number of L1 maintenance interrupts: "
umbra_l1i_msg_lr_active: .asciz "ICH_LR0_EL2 is not active while L2 handles it: "
umbra_l1i_msg_elrsr_active: .asciz "ICH_ELRSR_EL2 shows an active LR empty: "
umbra_l1i_msg_ap1r_active: .asciz "ICH_AP1R0_EL2 is 0 while L2 handles a group 1 interrupt: "
umbra_l1i_msg_misr_c:   .asciz "ICH_MISR_EL2 not 0 before L2's EOI: "
umbra_l1i_msg_hcr_c:    .asciz "ICH_HCR_EL2 not as L1 left it after serving EOIcount: "
umbra_l1i_msg_misr_d:   .asciz "ICH_MISR_EL2.EOI not set by an invalid LR with EOI: "
umbra_l1i_msg_masked:   .asciz "L1's maintenance interrupt was taken with PSTATE.I masked: "
umbra_l1i_msg_unmasked: .asciz "L1's maintenance interrupt was not taken once PSTATE.I was clear: "
umbra_l1i_msg_misr_seen: .asciz "the maintenance interrupts did not show MISR.EOI and MISR.LRENP: "

// L2 (at 0x80000, EL1h, stage 1 off): its PMR 0xf0, group 1 on, IRQs
// unmasked; waits for each interrupt its handler records in x20 and
// reports it (x2) by HVC.
.balign 4096
umbra_l2i_payload:
    mov     x20, #0
    // ICC_AP0R0_EL1 = 1: L1's ICH_AP0R0_EL2 (hvc #7), never hv's.
    mov     x1, #1
    msr     s3_0_c12_c8_4, x1
    isb
    hvc     #7
    mov     x1, #0xf0
    msr     s3_0_c4_c6_0, x1
    mov     x1, #1
    msr     s3_0_c12_c12_7, x1
    isb
    msr     daifclr, #2
1:  cbz     x20, 1b
    mov     x2, x20
    mov     x20, #0
    hvc     #1
2:  cbz     x20, 2b
    mov     x2, x20
    mov     x20, #0
    hvc     #2
3:  cbz     x20, 3b
    mov     x2, x20
    mov     x20, #0
    hvc     #4
4:  cbz     x20, 4b
    mov     x2, x20
    mov     x20, #0
    hvc     #5
    hvc     #6
    mov     x1, #47
    msr     s3_0_c12_c11_1, x1
    isb
6:  b       6b
// L2's vectors (VBAR_EL1 = 0x80800): the current-EL SPx IRQ acknowledges
// (ICC_IAR1_EL1: the hardware's ICV_IAR1_EL1 on L1's list registers),
// reports vINTID 44 from inside (hvc #3), EOIs, records; anything else
// hangs L2 (hv's watchdog ends the run).
.balign 2048
umbra_l2i_vectors:
    .rept 5
    b       .
    .balign 128
    .endr
    mrs     x21, s3_0_c12_c12_0
    cmp     x21, #44
    b.ne    5f
    mov     x2, x21
    hvc     #3
5:  msr     s3_0_c12_c12_1, x21
    mov     x20, x21
    eret
    .balign 128
    .rept 10
    b       .
    .balign 128
    .endr
.balign 4096
.global umbra_l1_irq_image_end
umbra_l1_irq_image_end:
.popsection
"#,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const L1_IRQ_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    l2_vbar = const super::nested_l1::L2_VBAR,
    maintenance_intid = const crate::vgic::DEFAULT_MAINTENANCE_INTID,
    lr_a = const LR_A,
    lr_b = const LR_B,
    lr_c = const LR_C,
    lr_d = const LR_D,
    lr_e = const LR_E,
    lr_i = const LR_I,
);

/// L1's HCR_EL2 for L2: RW, DC, VM and IMO (IRQs, its maintenance
/// interrupt among them, to its virtual EL2).
pub const L1_IRQ_VIRTUAL_HCR: u64 = super::nested_l1::L1_VIRTUAL_HCR | 1 << 4;

const PENDING: u64 = 1 << 62;
const GROUP1: u64 = 1 << 60;
const EOI: u64 = 1 << 41;
/// A: vINTID 42, group 1, priority 0xa0, pending.
pub const LR_A: u64 = PENDING | GROUP1 | 0xa0 << 48 | 42;
/// B: vINTID 43, priority 0x80, pending, EOI maintenance.
pub const LR_B: u64 = PENDING | GROUP1 | 0x80 << 48 | EOI | 43;
/// C: vINTID 44, priority 0x90, pending.
pub const LR_C: u64 = PENDING | GROUP1 | 0x90 << 48 | 44;
/// D: vINTID 45, invalid with EOI: an EOI maintenance request at once.
pub const LR_D: u64 = GROUP1 | 0x90 << 48 | EOI | 45;

/// E: vINTID 46, group 1, priority 0xa0, pending, HW = 1 with pINTID 0.
pub const LR_E: u64 = PENDING | 1 << 61 | GROUP1 | 0xa0 << 48 | 46;
/// I: vINTID 47, group 1, priority 0x90, active, EOI maintenance.
pub const LR_I: u64 = 2 << 62 | GROUP1 | 0x90 << 48 | EOI | 47;

assembled_image!(
    "The `irq` L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_irq_image,
    umbra_l1_irq_image_end
);
