//! The `timer-hw` guest hypervisor (L1, VHE) and its guest (L2): L1
//! forwards L2's virtual timer interrupt to L2 with an HW = 1 list
//! register, as KVM maps its guest's timer, and L2's deactivation of the
//! virtual interrupt must deactivate L1's PPI 27 (review 40 R40-2;
//! `crate::nested::vgic`, "Hardware interrupts"). Copied by `arch::nested`
//! into L1's memory like `arch::nested_l1`; data to hv, never executed at
//! EL2.
//!
//! L1 (MMU off, its stack at +1 MiB, L2's stage 2 at +2 MiB mapping L2
//! IPA 0x80000 to the L2 payload page, VMID 5; virtual HCR_EL2 RW, DC, VM
//! and IMO, so its timer PPIs are IRQs at its virtual EL2; its own
//! interface's PMR 0xff, group 1 on and EOImode 1, as Linux runs at EL2;
//! CNTVOFF_EL2 0; ICH_HCR_EL2.En, ICH_VMCR_EL2 0, LR0 empty) ERETs to L2.
//! L2 sets its PMR 0xf0 and group 1 enable, arms its virtual timer
//! TICKS (CNTFRQ_EL0 / 64) ahead and spins with PSTATE.I clear. Each
//! expiry takes L2 out to L1 (VBAR_EL2 + 0x480), which acknowledges
//! INTID 27 on its own interface, checks LR0 as L2 left it (after the
//! first: the HW = 1 entry it wrote with State 0b00, ICH_ELRSR_EL2 bit 0
//! set, ICH_EISR_EL2 0), only drops its priority (ICC_EOIR1_EL1 with
//! EOImode 1: PPI 27 stays active in its view), writes LR0 = vINTID 27,
//! HW = 1, pINTID 27, group 1, priority 0xa0, pending, and ERETs. L2's
//! handler acknowledges 27, re-arms its timer TICKS ahead and EOIs it
//! (EOImode 0: priority drop and deactivation, which with HW = 1
//! deactivates L1's PPI 27, so the next expiry reaches L1 again). After
//! [`ROUNDS`] interrupts L2 turns its timer off and reports (`hvc #1`);
//! L1 checks the count and its LR0 and prints `UMBRA-NESTED-PASS
//! timer-hw ...`. L2 waits at most 64 TICKS (a second) for each
//! interrupt, else reports how many it took (`hvc #2`): hv that leaves
//! L1's PPI 27 active (`timer-hw-no-link`) stops them after the first.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1HW", "umbra_l1hw"),
    r#"
.pushsection .rodata.umbra_l1_hw_timer, "a"
.balign 4096
.global umbra_l1_hw_timer_image
umbra_l1_hw_timer_image:
    adr     x9, umbra_l1_hw_timer_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1HW_EXPECT x1, 8, umbra_l1hw_msg_el
    adr     x1, umbra_l1hw_vectors
    msr     vbar_el2, x1
    isb
    add     x13, x9, #0x200000
    UMBRA_L1HW_L2_STAGE2_TABLES umbra_l2hw_payload
    UMBRA_L1HW_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    UMBRA_L1HW_OWN_INTERFACE_ON
    // ICC_CTLR_EL1.EOImode 1 (its ICV_CTLR_EL1): EOIR drops priority,
    // the deactivation is separate.
    mov     x1, #2
    msr     s3_0_c12_c12_4, x1
    // L2's interface: LR0 empty, VMCR 0 (L2 sets its own), En.
    msr     s3_4_c12_c12_0, xzr
    msr     s3_4_c12_c11_7, xzr
    mov     x1, #1
    msr     s3_4_c12_c11_0, x1
    // CNTVOFF_EL2 0 (VNCR word): L2's virtual count is the physical one.
    msr     s3_4_c14_c0_3, xzr
    UMBRA_L1HW_MOV64 x1, {l2_vbar}
    msr     s3_5_c12_c0_0, x1
    isb
    UMBRA_L1HW_PUTS umbra_l1hw_msg_enter
    UMBRA_L1HW_AT_L2_PAYLOAD
    eret

"#,
    l1_asm_print!("UMBRA_L1HW", "umbra_l1hw"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1HW", "umbra_l1hw"),
    // L1 runs with PSTATE.I masked: only the lower EL's IRQ (L2 taken out
    // by L1's PPI 27) and synchronous exceptions (L2's HVCs) are expected.
    l1_asm_vectors!(
        "UMBRA_L1HW",
        "umbra_l1hw",
        "umbra_l1hw_unexpected",
        "umbra_l1hw_unexpected",
        "umbra_l1hw_lower_sync",
        "umbra_l1hw_irq",
    ),
    r#"

// L2's virtual timer (L1's PPI 27) took L2 out: acknowledged, LR0 checked
// as L2 left it, priority dropped only, forwarded with HW = 1.
umbra_l1hw_irq:
    UMBRA_L1HW_SAVE
    adr     x9, umbra_l1_hw_timer_image
    mrs     x19, s3_0_c12_c12_0
    UMBRA_L1HW_EXPECT x19, {virtual_intid}, umbra_l1hw_msg_intid
    adr     x4, umbra_l1hw_irqs
    ldr     x22, [x4]
    mrs     x21, s3_4_c12_c12_0
    cbz     x22, 1f
    UMBRA_L1HW_EXPECT x21, ({lr_timer} & ~(3 << 62)), umbra_l1hw_msg_lr_back
    mrs     x21, s3_4_c12_c11_5
    and     x21, x21, #1
    UMBRA_L1HW_EXPECT x21, 1, umbra_l1hw_msg_elrsr
    mrs     x21, s3_4_c12_c11_3
    UMBRA_L1HW_EXPECT x21, 0, umbra_l1hw_msg_eisr
    b       2f
1:  UMBRA_L1HW_EXPECT x21, 0, umbra_l1hw_msg_lr_first
2:  add     x22, x22, #1
    str     x22, [x4]
    msr     s3_0_c12_c12_1, x19
    UMBRA_L1HW_MOV64 x1, {lr_timer}
    msr     s3_4_c12_c12_0, x1
    isb
    UMBRA_L1HW_RESTORE
    eret

umbra_l1hw_lower_sync:
    UMBRA_L1HW_SAVE
    adr     x9, umbra_l1_hw_timer_image
    mrs     x19, esr_el2
    ubfx    x20, x19, #26, #6
    mov     x11, x19
    adr     x10, umbra_l1hw_msg_unexpected
    cmp     x20, #0x16
    b.ne    umbra_l1hw_fail
    and     x21, x19, #0xffff
    ldr     x22, [sp, #16]
    cmp     x21, #1
    b.eq    3f
    mov     x11, x22
    adr     x10, umbra_l1hw_msg_waited
    cmp     x21, #2
    b.eq    umbra_l1hw_fail
    adr     x10, umbra_l1hw_msg_l2_intid
    cmp     x21, #3
    b.eq    umbra_l1hw_fail
    mov     x11, x19
    adr     x10, umbra_l1hw_msg_unexpected
    b       umbra_l1hw_fail
    // L2 took ROUNDS interrupts, each forwarded by L1, the last
    // deactivated too.
3:  UMBRA_L1HW_EXPECT x22, {rounds}, umbra_l1hw_msg_l2_count
    adr     x4, umbra_l1hw_irqs
    ldr     x21, [x4]
    UMBRA_L1HW_EXPECT x21, {rounds}, umbra_l1hw_msg_l1_count
    mrs     x21, s3_4_c12_c12_0
    UMBRA_L1HW_EXPECT x21, ({lr_timer} & ~(3 << 62)), umbra_l1hw_msg_lr_back
    UMBRA_L1HW_PUTS umbra_l1hw_msg_done
    UMBRA_L1HW_PUTS umbra_l1hw_msg_pass
    UMBRA_L1HW_SYSTEM_OFF

.balign 8
umbra_l1hw_irqs:
    .quad   0
umbra_l1hw_msg_enter:   .asciz "L1 (timer-hw): ICC_CTLR_EL1.EOImode 1, ICH_HCR_EL2.En; ERET to L2, which arms its virtual timer\n"
umbra_l1hw_msg_done:    .asciz "L1: L2's virtual timer (L1's PPI 27, acknowledged and priority-dropped only) forwarded each time in ICH_LR0_EL2 with HW = 1, pINTID 27; L2's EOI deactivated it and the next expiry came; LR0 read back HW and pINTID with State 0b00, ELRSR bit 0, EISR 0\n"
umbra_l1hw_msg_pass:    .asciz "UMBRA-NESTED-PASS timer-hw l2-timer-irqs=4 hw-deactivation=ok lr-writeback=ok\n"
umbra_l1hw_msg_nl:      .asciz "\n"
umbra_l1hw_msg_fail:    .asciz "UMBRA-NESTED-FAIL: "
umbra_l1hw_msg_el:      .asciz "CurrentEL is not 2: "
umbra_l1hw_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1hw_msg_intid:   .asciz "L1's IRQ is not L2's virtual timer (INTID 27): "
umbra_l1hw_msg_lr_first: .asciz "ICH_LR0_EL2 is not empty before L1 first forwarded the timer: "
umbra_l1hw_msg_lr_back: .asciz "the HW = 1 ICH_LR0_EL2 is not what L1 wrote with State 0b00 after L2's EOI: "
umbra_l1hw_msg_elrsr:   .asciz "ICH_ELRSR_EL2 does not show the deactivated HW = 1 LR0 empty: "
umbra_l1hw_msg_eisr:    .asciz "ICH_EISR_EL2 shows an EOI request for a HW = 1 LR: "
umbra_l1hw_msg_waited:  .asciz "L2 waited a second for its next timer interrupt (L1's PPI 27 still active?): interrupts taken "
umbra_l1hw_msg_l2_intid: .asciz "L2 acknowledged another INTID: "
umbra_l1hw_msg_l2_count: .asciz "L2 reports a wrong number of timer interrupts: "
umbra_l1hw_msg_l1_count: .asciz "L1 did not forward each of L2's timer interrupts: "

// L2 (at 0x80000, EL1h, stage 1 off): x22 = TICKS, x20 = interrupts its
// handler took; each waited for at most 64 TICKS of its virtual count.
.balign 4096
umbra_l2hw_payload:
    mov     x20, #0
    mrs     x22, cntfrq_el0
    lsr     x22, x22, #6
    mov     x1, #0xf0
    msr     s3_0_c4_c6_0, x1
    mov     x1, #1
    msr     s3_0_c12_c12_7, x1
    mrs     x1, cntvct_el0
    add     x1, x1, x22
    msr     cntv_cval_el0, x1
    mov     x1, #1
    msr     cntv_ctl_el0, x1
    isb
    msr     daifclr, #2
1:  mov     x23, x20
    mrs     x6, cntvct_el0
    add     x6, x6, x22, lsl #6
2:  cmp     x20, #{rounds}
    b.hs    3f
    cmp     x20, x23
    b.ne    1b
    mrs     x7, cntvct_el0
    cmp     x7, x6
    b.lo    2b
    msr     daifset, #2
    mov     x2, x20
    hvc     #2
    b       .
3:  msr     daifset, #2
    msr     cntv_ctl_el0, xzr
    isb
    mov     x2, x20
    hvc     #1
    b       .
// L2's vectors (VBAR_EL1 = 0x80800): the current-EL SPx IRQ acknowledges
// (ICC_IAR1_EL1), re-arms the timer TICKS ahead (its level falls), EOIs
// (EOImode 0: priority drop and deactivation) and counts; anything else
// hangs L2 (hv's watchdog ends the run).
.balign 2048
umbra_l2hw_vectors:
    .rept 5
    b       .
    .balign 128
    .endr
    mrs     x21, s3_0_c12_c12_0
    cmp     x21, #{virtual_intid}
    b.eq    4f
    mov     x2, x21
    hvc     #3
    b       .
4:  mrs     x1, cntvct_el0
    add     x1, x1, x22
    msr     cntv_cval_el0, x1
    isb
    msr     s3_0_c12_c12_1, x21
    add     x20, x20, #1
    eret
    .balign 128
    .rept 10
    b       .
    .balign 128
    .endr
.balign 4096
.global umbra_l1_hw_timer_image_end
umbra_l1_hw_timer_image_end:
.popsection
"#,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1_irq::L1_IRQ_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    l2_vbar = const super::nested_l1::L2_VBAR,
    virtual_intid = const 27,
    lr_timer = const LR_TIMER,
    rounds = const ROUNDS,
);

/// How many timer interrupts L2 takes in a row.
pub const ROUNDS: u64 = 4;

/// L2's virtual timer as L1 forwards it: vINTID 27, pending, HW = 1 with
/// pINTID 27 (L1's own PPI for that timer), group 1, priority 0xa0.
pub const LR_TIMER: u64 = 1 << 62 | 1 << 61 | 1 << 60 | 0xa0 << 48 | 27 << 32 | 27;

assembled_image!(
    "The `timer-hw` L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_hw_timer_image,
    umbra_l1_hw_timer_image_end
);
