//! The `timer` guest hypervisor (L1, VHE: E2H = 1) and its guest (L2):
//! L1 takes its own EL2 timers' interrupts at virtual EL2 and runs an L2
//! on its virtual timer with L1's CNTVOFF_EL2 (`arch::nested_timer`).
//! Copied by `arch::nested` into L1's memory like `arch::nested_l1`; data
//! to hv, never executed at EL2.
//!
//! L1 (MMU off, its stack at +1 MiB, L2's stage 2 at +2 MiB mapping L2
//! IPA 0x80000 to the L2 payload page, VMID 5; virtual HCR_EL2 RW, DC, VM
//! and IMO, so its timer PPIs are IRQs at its virtual EL2; its own
//! interface's PMR 0xff and group 1 on; TICKS = CNTFRQ_EL0 / 64, each wait
//! bounded by 64 TICKS, a second, of the physical count):
//! 1. CNTHCTL_EL2 (trapped) reads back what it wrote (E2H = 1 layout,
//!    0xf03), and its CNTKCTL_EL1 (untrapped; CNTHCTL_EL2 at E2H = 1,
//!    review 43 R43-1) the low bits, 0x303;
//! 2. A: its EL2 physical timer (CNTP_CVAL/CTL_EL0 under E2H = 1, the
//!    hardware EL1 physical timer while it runs) fires TICKS later; the
//!    trapped CNTHP_CVAL_EL2 and CNTHP_CTL_EL2 read the same timer; L1
//!    waits with PSTATE.I clear (WFI) and takes INTID 26 at VBAR_EL2 +
//!    0x280 no earlier than its CVAL;
//! 0. starts vCPU 1 with PSCI CPU_ON (MPIDR 1; hv has a CPU for it from
//!    three CPUs on, else INVALID_PARAMETERS and one vCPU), then waits, at
//!    most 512 TICKS and without exits, for vCPU 1's steps, taken by
//!    polling its ICV_IAR1_EL1 with PSTATE.I masked: its EL2 physical
//!    timer (INTID 26; hv's CPU 2, which has no watchdog, and its second
//!    `VcpuTimers`); L2's virtual timer armed in its VNCR page, expiring
//!    while it polls with no exit (INTID 27: hv's EL2 physical timer with
//!    no watchdog beside it); its EL2 physical timer expiring while its L2
//!    spins (VBAR_EL2 + 0x480, INTID 26);
//! 3. B: its EL2 virtual timer armed through the trapped CNTHV_TVAL_EL2
//!    (CNTV_CVAL_EL0 then reads the count at the write + TICKS) fires:
//!    INTID 28;
//! 3a. E: with PSTATE.I masked, L1 polls ICV_IAR1_EL1 (no trap) for its
//!    EL2 physical timer's INTID 26, re-arms that timer TICKS ahead and
//!    EOIs it (neither traps), and polls again: the next expiry must come
//!    with no exit but the one L1's deactivation causes (hv's EOI
//!    maintenance; review 40 R40-3);
//! 3b. F: CNTVOFF_EL2 (a VNCR word) = half the physical count; L2's
//!    virtual timer armed 8 TICKS ahead in the VNCR page; one exit (the
//!    trapped CNTHCTL_EL2 read), then L1 spins with PSTATE.I clear and no
//!    exit: L2's timer interrupts it (VBAR_EL2 + 0x280, INTID 27) no
//!    earlier than CVAL + CNTVOFF_EL2, with CNTV_CTL_EL02 reading ENABLE
//!    and ISTATUS (review 40 R40-4); L1 turns it off. Right after the
//!    trapped read CNTV_CTL_EL02 reads ENABLE alone (ISTATUS recomputed
//!    with CNTVOFF_EL2, which L1 makes at least 16 TICKS by first waiting
//!    for the count to pass 32 TICKS; review 43 R43-2);
//! 3c. F': L2's physical timer armed 8 TICKS ahead in the VNCR page
//!    (CNTP_CVAL/CTL_EL02), one exit, a spin without exits: INTID 30 at
//!    VBAR_EL2 + 0x280 no earlier than its CVAL, CNTP_CTL_EL02 ENABLE and
//!    ISTATUS (review 43 R43-2); L1 turns it off;
//! 4. C: CNTHCTL_EL2 with EL1PCTEN and EL1PTEN clear, L1's
//!    CNTKCTL_EL1 0x200 (untrapped), which the trapped CNTHCTL_EL2 then
//!    reads (bits 10/11 still clear); ERET to L2, which reads CNTVCT_EL0 (`hvc #1`:
//!    L1 checks it is its physical count minus its CNTVOFF_EL2), reads
//!    CNTPCT_EL0 (trapped to L1 as L1 asked: EC 0x18; L1 sets EL1PCTEN
//!    again and skips it) and again (no trap), reads CNTP_CTL_EL0
//!    (trapped likewise; L1 sets EL1PTEN again), reads it again (no
//!    trap), reads CNTKCTL_EL1 (what L1 wrote through the trapped
//!    CNTKCTL_EL12), writes 3 there (which CNTKCTL_EL12 then reads, while
//!    L1's CNTKCTL_EL1 reads 0x303, the low bits of the CNTHCTL_EL2
//!    its trap handler wrote last, not L2's 3) and calls `hvc #2`;
//!    L1 arms L2's virtual timer through CNTV_CVAL/CTL_EL02 (VNCR words)
//!    for L2's virtual count + TICKS, checks the trapped CNTV_TVAL_EL02
//!    (the physical deadline minus the count: hv applies CNTVOFF_EL2;
//!    each timing check brackets the count with reads before and after,
//!    so a slow exit cannot fail it) and resumes L2, which
//!    spins; L2's timer interrupt takes it out to L1 (VBAR_EL2 + 0x480,
//!    INTID 27) no earlier than the physical deadline CVAL + CNTVOFF_EL2,
//!    with CNTV_CTL_EL02 reading ENABLE and ISTATUS; L1 masks it;
//! 5. D: L1 arms its EL2 physical timer TICKS ahead and resumes the
//!    spinning L2: the timer expiring while L2 runs takes L2 out to L1
//!    (VBAR_EL2 + 0x480, INTID 26), no earlier than its CVAL (L2 spins at
//!    most a second of its virtual count, then reports that no
//!    timer took it out, `hvc #3`);
//! 6. prints `UMBRA-NESTED-PASS timer ...` (with ` vcpus=2` when vCPU 1
//!    ran) and calls PSCI SYSTEM_OFF, or
//!    `UMBRA-NESTED-FAIL: <why>` with the value and SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1TM", "umbra_l1tm"),
    r#"
// Waits until the IRQ handler has counted `n` interrupts, at most 64
// TICKS, a second: with `wfi` 1 in trapped WFIs (PSTATE.I clear between
// them), with `wfi` 0 spinning with PSTATE.I clear and no exit (clobbers
// x4-x7).
.macro UMBRA_L1TM_WAIT_IRQS n, msg, wfi=1
    UMBRA_L1TM_TICKS_AHEAD 6
.if \wfi == 0
    msr     daifclr, #2
    isb
.endif
1:
.if \wfi
    msr     daifclr, #2
    isb
    wfi
    msr     daifset, #2
.endif
    adr     x4, umbra_l1tm_irqs
    ldr     x5, [x4]
    cmp     x5, #\n
    b.hs    2f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    1b
    msr     daifset, #2
    mov     x11, x5
    adr     x10, \msg
    b       umbra_l1tm_fail
2:  msr     daifset, #2
.endm

// The INTID in x19 is `intid`, acknowledged no earlier than the physical
// count `deadline` (clobbers x3, x10, x11).
.macro UMBRA_L1TM_TAKEN intid, deadline, msg
    UMBRA_L1TM_EXPECT x19, \intid, \msg
    mrs     x11, cntpct_el0
    adr     x10, umbra_l1tm_msg_early
    cmp     x11, \deadline
    b.lo    umbra_l1tm_fail
.endm

// x20 = the physical count 8 TICKS from now, stored as the deadline the
// IRQ handler checks (clobbers x1, x4).
.macro UMBRA_L1TM_DEADLINE_8_TICKS
    adr     x4, umbra_l1tm_ticks
    ldr     x1, [x4]
    lsl     x1, x1, #3
    mrs     x20, cntpct_el0
    add     x20, x20, x1
    adr     x4, umbra_l1tm_deadline
    str     x20, [x4]
.endm

// Arms L2's virtual timer (CNTV_CVAL/CTL_EL02: VNCR words, no trap) 8
// TICKS ahead of the physical count with L1's CNTVOFF_EL2 in x21 (a
// margin for the exit that follows: a deadline passing before hv reads
// the words is delivered as a level, so a slow exit would hide a missing
// deadline): x20 = the physical deadline, also the one the IRQ handler
// checks (clobbers x1, x4).
.macro UMBRA_L1TM_ARM_L2_VIRTUAL
    UMBRA_L1TM_DEADLINE_8_TICKS
    sub     x1, x20, x21
    msr     s3_5_c14_c3_2, x1
    mov     x1, #1
    msr     s3_5_c14_c3_1, x1
    isb
.endm

// Arms L1's EL2 physical timer (CNTP_*_EL0 with E2H = 1) TICKS ahead:
// x20 = its CVAL, also the deadline the IRQ handler checks (clobbers x1,
// x4).
.macro UMBRA_L1TM_ARM_EL2_PHYSICAL
    adr     x4, umbra_l1tm_ticks
    ldr     x1, [x4]
    mrs     x20, cntpct_el0
    add     x20, x20, x1
    adr     x4, umbra_l1tm_deadline
    str     x20, [x4]
    msr     cntp_cval_el0, x20
    mov     x1, #1
    msr     cntp_ctl_el0, x1
    isb
.endm

.pushsection .rodata.umbra_l1_timer, "a"
.balign 4096
.global umbra_l1_timer_image
umbra_l1_timer_image:
    adr     x9, umbra_l1_timer_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1TM_EXPECT x1, 8, umbra_l1tm_msg_el
    adr     x1, umbra_l1tm_vectors
    msr     vbar_el2, x1
    isb
    mrs     x1, cntfrq_el0
    lsr     x1, x1, #6
    adr     x4, umbra_l1tm_ticks
    str     x1, [x4]
    // L2's stage 2 and L1's virtual HCR_EL2 (IMO: IRQs to virtual EL2).
    add     x13, x9, #0x200000
    UMBRA_L1TM_L2_STAGE2_TABLES umbra_l2tm_payload
    UMBRA_L1TM_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    UMBRA_L1TM_OWN_INTERFACE_ON
    // 0: vCPU 1 (PSCI CPU_ON for MPIDR 1) runs its steps while this one
    // waits without exits; hv may have no CPU for it (INVALID_PARAMETERS).
    UMBRA_L1TM_CPU_ON_VCPU1 umbra_l1tm_secondary
    cbz     x0, 10f
    UMBRA_L1TM_PUTS umbra_l1tm_msg_one_vcpu
    b       11f
10: adr     x4, umbra_l1tm_two_vcpus
    mov     x1, #1
    str     x1, [x4]
    mrs     x6, cntpct_el0
    adr     x4, umbra_l1tm_ticks
    ldr     x7, [x4]
    add     x6, x6, x7, lsl #9
12: adr     x4, umbra_l1tm_v1_done
    ldr     x5, [x4]
    cbnz    x5, 13f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    12b
    mov     x11, x5
    adr     x10, umbra_l1tm_msg_v1_timeout
    b       umbra_l1tm_fail
13: UMBRA_L1TM_PUTS umbra_l1tm_msg_v1
11:
    // 1: CNTHCTL_EL2 (trapped) as written.
    UMBRA_L1TM_MOV64 x1, {cnthctl_all}
    msr     s3_4_c14_c1_0, x1
    mrs     x21, s3_4_c14_c1_0
    UMBRA_L1TM_EXPECT x21, {cnthctl_all}, umbra_l1tm_msg_cnthctl
    // At E2H = 1 its CNTKCTL_EL1 encoding (untrapped) is CNTHCTL_EL2:
    // the low bits just written.
    mrs     x21, cntkctl_el1
    UMBRA_L1TM_EXPECT x21, {cnthctl_all_low}, umbra_l1tm_msg_cntkctl_alias
    // A: the EL2 physical timer (CNTP_*_EL0 with E2H = 1), TICKS ahead.
    UMBRA_L1TM_ARM_EL2_PHYSICAL
    // The trapped CNTHP_CVAL_EL2 / CNTHP_CTL_EL2 name the same timer.
    mrs     x21, s3_4_c14_c2_2
    mov     x11, x21
    adr     x10, umbra_l1tm_msg_cnthp_cval
    cmp     x21, x20
    b.ne    umbra_l1tm_fail
    mrs     x21, s3_4_c14_c2_1
    and     x21, x21, #3
    UMBRA_L1TM_EXPECT x21, 1, umbra_l1tm_msg_cnthp_ctl
    UMBRA_L1TM_WAIT_IRQS 1, umbra_l1tm_msg_no_irq_a
    UMBRA_L1TM_PUTS umbra_l1tm_msg_a
    // B: the EL2 virtual timer through the trapped CNTHV_TVAL_EL2.
    adr     x4, umbra_l1tm_ticks
    ldr     x1, [x4]
    // CVAL - TICKS is the count at the write: between the counts read
    // just before and just after it (however long the trap took).
    mrs     x20, cntpct_el0
    msr     s3_4_c14_c3_0, x1
    mrs     x23, cntpct_el0
    mov     x2, #1
    msr     cntv_ctl_el0, x2
    isb
    mrs     x21, cntv_cval_el0
    adr     x4, umbra_l1tm_deadline
    str     x21, [x4]
    sub     x22, x21, x1
    mov     x11, x21
    adr     x10, umbra_l1tm_msg_cnthv_tval
    cmp     x22, x20
    b.lo    umbra_l1tm_fail
    cmp     x22, x23
    b.hi    umbra_l1tm_fail
    UMBRA_L1TM_WAIT_IRQS 2, umbra_l1tm_msg_no_irq_b
    UMBRA_L1TM_PUTS umbra_l1tm_msg_b
    // E: the EL2 physical timer taken by polling; re-armed and EOId
    // without a trap, its next expiry taken by polling again with no exit
    // of L1's own in between.
    UMBRA_L1TM_ARM_EL2_PHYSICAL
    UMBRA_L1TM_POLL_IAR umbra_l1tm_msg_no_irq_e1
    UMBRA_L1TM_TAKEN {hyp_physical_intid}, x20, umbra_l1tm_msg_intid_e
    UMBRA_L1TM_ARM_EL2_PHYSICAL
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1TM_POLL_IAR umbra_l1tm_msg_no_irq_e2
    UMBRA_L1TM_TAKEN {hyp_physical_intid}, x20, umbra_l1tm_msg_intid_e
    msr     cntp_ctl_el0, xzr
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1TM_PUTS umbra_l1tm_msg_e
    // F needs CNTVOFF_EL2 above the 8 TICKS margin (an ISTATUS computed
    // without it then differs): first the count passes 32 TICKS.
    adr     x4, umbra_l1tm_ticks
    ldr     x1, [x4]
    lsl     x1, x1, #5
14: mrs     x21, cntpct_el0
    cmp     x21, x1
    b.lo    14b
    // F: CNTVOFF_EL2 (VNCR) = half the physical count; L2's virtual timer
    // armed in the VNCR page, one exit (the trapped CNTHCTL_EL2 read, where
    // hv reads the VNCR words), then a spin without exits.
    mrs     x21, cntpct_el0
    lsr     x21, x21, #1
    adr     x4, umbra_l1tm_offset
    str     x21, [x4]
    msr     s3_4_c14_c0_3, x21
    UMBRA_L1TM_ARM_L2_VIRTUAL
    mrs     x1, s3_4_c14_c1_0
    // hv recomputed ISTATUS at that exit with L1's CNTVOFF_EL2: L2's
    // virtual count is 8 TICKS short of CVAL, so ENABLE only.
    mrs     x21, s3_5_c14_c3_1
    UMBRA_L1TM_EXPECT x21, 1, umbra_l1tm_msg_l2_ctl_f_early
    UMBRA_L1TM_WAIT_IRQS 3, umbra_l1tm_msg_no_irq_f, 0
    UMBRA_L1TM_PUTS umbra_l1tm_msg_f
    // F': L2's physical timer (CNTP_CVAL/CTL_EL02, VNCR words, no
    // offset) 8 TICKS ahead, one exit, a spin without exits: INTID 30.
    UMBRA_L1TM_DEADLINE_8_TICKS
    msr     s3_5_c14_c2_2, x20
    mov     x1, #1
    msr     s3_5_c14_c2_1, x1
    isb
    mrs     x1, s3_4_c14_c1_0
    mrs     x21, s3_5_c14_c2_1
    UMBRA_L1TM_EXPECT x21, 1, umbra_l1tm_msg_l2_ptl_early
    UMBRA_L1TM_WAIT_IRQS 4, umbra_l1tm_msg_no_irq_fp, 0
    UMBRA_L1TM_PUTS umbra_l1tm_msg_fp
    // C: L2's physical counter and timer trapped (CNTHCTL_EL2.EL1PCTEN
    // and EL1PTEN clear); ERET to L2 (CNTVOFF_EL2 as F set it).
    UMBRA_L1TM_MOV64 x1, {cnthctl_trap_l2_counter_timer}
    msr     s3_4_c14_c1_0, x1
    // Its CNTKCTL_EL1 (no trap) is CNTHCTL_EL2's low bits at E2H = 1:
    // the trapped CNTHCTL_EL2 reads them (EL1PCTEN/EL1PTEN still clear).
    mov     x1, #{l1_cntkctl}
    msr     cntkctl_el1, x1
    isb
    mrs     x21, s3_4_c14_c1_0
    UMBRA_L1TM_EXPECT x21, {l1_cntkctl}, umbra_l1tm_msg_cnthctl_alias
    // L2's CNTKCTL_EL1 through CNTKCTL_EL12 (trapped): reads back.
    mov     x1, #{l2_cntkctl}
    msr     s3_5_c14_c1_0, x1
    mrs     x21, s3_5_c14_c1_0
    UMBRA_L1TM_EXPECT x21, {l2_cntkctl}, umbra_l1tm_msg_cntkctl12
    isb
    UMBRA_L1TM_PUTS umbra_l1tm_msg_enter
    UMBRA_L1TM_AT_L2_PAYLOAD
    mrs     x1, cntpct_el0
    adr     x4, umbra_l1tm_before_l2
    str     x1, [x4]
    eret

"#,
    l1_asm_print!("UMBRA_L1TM", "umbra_l1tm"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1TM", "umbra_l1tm"),
    // The current EL's IRQ: A and B; the lower EL's: C and D, taking L1
    // out of L2 (whose HVCs and trapped timer read are the lower EL's
    // synchronous exceptions).
    l1_asm_vectors!(
        "UMBRA_L1TM",
        "umbra_l1tm",
        "umbra_l1tm_unexpected",
        "umbra_l1tm_irq",
        "umbra_l1tm_lower_sync",
        "umbra_l1tm_irq",
    ),
    r#"

// A timer PPI: acknowledged through L1's own ICV_IAR1, checked against
// the step (INTID, not before the deadline), its timer quietened, EOId.
umbra_l1tm_irq:
    UMBRA_L1TM_SAVE
    adr     x9, umbra_l1_timer_image
    mrs     x19, s3_0_c12_c12_0
    mrs     x20, cntpct_el0
    adr     x4, umbra_l1tm_deadline
    ldr     x21, [x4]
    mov     x11, x20
    adr     x10, umbra_l1tm_msg_early
    cmp     x20, x21
    b.lo    umbra_l1tm_fail
    adr     x4, umbra_l1tm_irqs
    ldr     x22, [x4]
    cmp     x22, #0
    b.eq    1f
    cmp     x22, #1
    b.eq    2f
    cmp     x22, #2
    b.eq    5f
    cmp     x22, #3
    b.eq    6f
    cmp     x22, #4
    b.eq    3f
    cmp     x22, #5
    b.eq    4f
    mov     x11, x19
    adr     x10, umbra_l1tm_msg_extra_irq
    b       umbra_l1tm_fail
    // A: the EL2 physical timer, off.
1:  UMBRA_L1TM_EXPECT x19, {hyp_physical_intid}, umbra_l1tm_msg_intid_a
    msr     cntp_ctl_el0, xzr
    b       8f
    // B: the EL2 virtual timer, off.
2:  UMBRA_L1TM_EXPECT x19, {hyp_virtual_intid}, umbra_l1tm_msg_intid_b
    msr     cntv_ctl_el0, xzr
    b       8f
    // F: L2's virtual timer while L1 ran, ENABLE and ISTATUS in
    // CNTV_CTL_EL02 (recomputed at the exit that delivered it); off.
5:  UMBRA_L1TM_EXPECT x19, {virtual_intid}, umbra_l1tm_msg_intid_f
    mrs     x21, s3_5_c14_c3_1
    UMBRA_L1TM_EXPECT x21, 5, umbra_l1tm_msg_l2_ctl_f
    msr     s3_5_c14_c3_1, xzr
    b       8f
    // F': L2's physical timer while L1 ran, ENABLE and ISTATUS in
    // CNTP_CTL_EL02; off.
6:  UMBRA_L1TM_EXPECT x19, {physical_intid}, umbra_l1tm_msg_intid_fp
    mrs     x21, s3_5_c14_c2_1
    UMBRA_L1TM_EXPECT x21, 5, umbra_l1tm_msg_l2_ptl_fp
    msr     s3_5_c14_c2_1, xzr
    b       8f
    // C: L2's virtual timer, ENABLE and ISTATUS in CNTV_CTL_EL02; masked.
3:  UMBRA_L1TM_EXPECT x19, {virtual_intid}, umbra_l1tm_msg_intid_c
    mrs     x21, s3_5_c14_c3_1
    UMBRA_L1TM_EXPECT x21, 5, umbra_l1tm_msg_l2_ctl
    mov     x1, #3
    msr     s3_5_c14_c3_1, x1
    msr     s3_0_c12_c12_1, x19
    add     x22, x22, #1
    str     x22, [x4]
    UMBRA_L1TM_PUTS umbra_l1tm_msg_c
    // D: the EL2 physical timer TICKS ahead, L2 resumed.
    UMBRA_L1TM_ARM_EL2_PHYSICAL
    UMBRA_L1TM_RESTORE
    eret
    // D: the EL2 physical timer expired while L2 ran.
4:  UMBRA_L1TM_EXPECT x19, {hyp_physical_intid}, umbra_l1tm_msg_intid_d
    msr     cntp_ctl_el0, xzr
    msr     s3_0_c12_c12_1, x19
    UMBRA_L1TM_PUTS umbra_l1tm_msg_d
    adr     x4, umbra_l1tm_traps
    ldr     x21, [x4]
    UMBRA_L1TM_EXPECT x21, 1, umbra_l1tm_msg_traps
    adr     x4, umbra_l1tm_two_vcpus
    ldr     x1, [x4]
    cbnz    x1, 7f
    UMBRA_L1TM_PUTS umbra_l1tm_msg_pass
    UMBRA_L1TM_SYSTEM_OFF
7:  UMBRA_L1TM_PUTS umbra_l1tm_msg_pass2
    UMBRA_L1TM_SYSTEM_OFF
8:  msr     s3_0_c12_c12_1, x19
    add     x22, x22, #1
    str     x22, [x4]
    UMBRA_L1TM_RESTORE
    eret

umbra_l1tm_lower_sync:
    UMBRA_L1TM_SAVE
    adr     x9, umbra_l1_timer_image
    mrs     x19, esr_el2
    ubfx    x20, x19, #26, #6
    cmp     x20, #0x18
    b.eq    umbra_l1tm_l2_timer_trap
    mov     x11, x19
    adr     x10, umbra_l1tm_msg_unexpected
    cmp     x20, #0x16
    b.ne    umbra_l1tm_fail
    and     x21, x19, #0xffff
    cmp     x21, #1
    b.eq    umbra_l1tm_hvc1
    cmp     x21, #2
    b.eq    umbra_l1tm_hvc2
    cmp     x21, #3
    b.ne    umbra_l1tm_fail
    // L2's spin ended: a timer interrupt did not take it out.
    adr     x4, umbra_l1tm_irqs
    ldr     x11, [x4]
    adr     x10, umbra_l1tm_msg_l2_not_interrupted
    b       umbra_l1tm_fail

umbra_l1tm_resume:
    UMBRA_L1TM_RESTORE
    eret

// C: L2's CNTVCT_EL0 (x2) is L1's physical count minus its CNTVOFF_EL2
// at its read: between the counts before L1's ERET and now, less the
// offset (however long the exits took).
umbra_l1tm_hvc1:
    ldr     x22, [sp, #16]
    mrs     x20, cntpct_el0
    adr     x4, umbra_l1tm_offset
    ldr     x21, [x4]
    sub     x20, x20, x21
    adr     x4, umbra_l1tm_before_l2
    ldr     x23, [x4]
    sub     x23, x23, x21
    mov     x11, x22
    adr     x10, umbra_l1tm_msg_l2_count
    cmp     x22, x23
    b.lo    umbra_l1tm_fail
    cmp     x22, x20
    b.hi    umbra_l1tm_fail
    UMBRA_L1TM_REPORT umbra_l1tm_msg_l2_cntvct, x22
    b       umbra_l1tm_resume

// C: L2's CNTPCT_EL0 read, then its CNTP_CTL_EL0 read, trapped as
// CNTHCTL_EL2.EL1PCTEN and EL1PTEN = 0 ask: each counted and skipped,
// EL1PCTEN set again after the first (EL1PTEN still clear), EL1PTEN too
// after the second.
umbra_l1tm_l2_timer_trap:
    UMBRA_L1TM_MOV64 x21, {l2_cntpct_read_esr}
    adr     x4, umbra_l1tm_counter_traps
    UMBRA_L1TM_MOV64 x1, {cnthctl_trap_l2_timer}
    cmp     x19, x21
    b.eq    1f
    UMBRA_L1TM_EXPECT x19, {l2_cntp_ctl_read_esr}, umbra_l1tm_msg_trap_esr
    adr     x4, umbra_l1tm_traps
    UMBRA_L1TM_MOV64 x1, {cnthctl_all}
1:  ldr     x5, [x4]
    add     x5, x5, #1
    str     x5, [x4]
    msr     s3_4_c14_c1_0, x1
    mrs     x1, elr_el2
    add     x1, x1, #4
    msr     elr_el2, x1
    b       umbra_l1tm_resume

// C: L2's second CNTP_CTL_EL0 read did not trap (x4: 0, L2's physical
// timer off); L2's virtual timer armed for its virtual count + TICKS.
umbra_l1tm_hvc2:
    adr     x4, umbra_l1tm_traps
    ldr     x21, [x4]
    UMBRA_L1TM_EXPECT x21, 1, umbra_l1tm_msg_traps
    adr     x4, umbra_l1tm_counter_traps
    ldr     x21, [x4]
    UMBRA_L1TM_EXPECT x21, 1, umbra_l1tm_msg_counter_traps
    // L1's CNTKCTL_EL1 (untrapped; its CNTHCTL_EL2 at E2H = 1) is the
    // low bits of the CNTHCTL_EL2 it wrote last (the trap handler's), not
    // what L2 wrote to its own.
    mrs     x21, cntkctl_el1
    UMBRA_L1TM_EXPECT x21, {cnthctl_all_low}, umbra_l1tm_msg_l1_cntkctl
    ldr     x21, [sp, #32]
    UMBRA_L1TM_EXPECT x21, 0, umbra_l1tm_msg_l2_cntp
    // L2 read the CNTKCTL_EL1 L1 wrote (x5) and wrote 3, which
    // CNTKCTL_EL12 now reads.
    ldr     x21, [sp, #40]
    UMBRA_L1TM_EXPECT x21, {l2_cntkctl}, umbra_l1tm_msg_l2_cntkctl
    mrs     x21, s3_5_c14_c1_0
    UMBRA_L1TM_EXPECT x21, 3, umbra_l1tm_msg_cntkctl12_after
    UMBRA_L1TM_PUTS umbra_l1tm_msg_trapped
    adr     x4, umbra_l1tm_ticks
    ldr     x24, [x4]
    adr     x4, umbra_l1tm_offset
    ldr     x21, [x4]
    mrs     x20, cntpct_el0
    add     x22, x20, x24
    adr     x4, umbra_l1tm_deadline
    str     x22, [x4]
    sub     x22, x22, x21
    msr     s3_5_c14_c3_2, x22
    mov     x1, #1
    msr     s3_5_c14_c3_1, x1
    // CNTV_TVAL_EL02 (trapped), signed: the physical deadline minus the
    // count at the read (hv applies CNTVOFF_EL2), so between the deadline
    // minus the counts read just after and just before it.
    ldr     x27, [x4]
    mrs     x25, cntpct_el0
    mrs     x23, s3_5_c14_c3_0
    mrs     x26, cntpct_el0
    sxtw    x23, w23
    sub     x28, x27, x26
    sub     x29, x27, x25
    mov     x11, x23
    adr     x10, umbra_l1tm_msg_l2_tval
    cmp     x23, x28
    b.lt    umbra_l1tm_fail
    cmp     x23, x29
    b.gt    umbra_l1tm_fail
    isb
    b       umbra_l1tm_resume

// vCPU 1 (PSCI CPU_ON, x0 its context id): its own stack, vector table
// and interface, L2's stage 2 as vCPU 0 built it (VMID 5), then its steps
// (the module's comment, step 0), each interrupt taken by polling with
// PSTATE.I masked but the last, which takes its L2 out.
umbra_l1tm_secondary:
    adr     x9, umbra_l1_timer_image
    add     x10, x9, #0xf0000
    mov     sp, x10
    adr     x1, umbra_l1tm_vectors1
    msr     vbar_el2, x1
    add     x13, x9, #0x200000
    UMBRA_L1TM_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    UMBRA_L1TM_OWN_INTERFACE_ON
    // Its EL2 physical timer.
    UMBRA_L1TM_ARM_EL2_PHYSICAL
    UMBRA_L1TM_POLL_IAR umbra_l1tm_msg_v1_no_a
    UMBRA_L1TM_TAKEN {hyp_physical_intid}, x20, umbra_l1tm_msg_v1_intid_a
    msr     cntp_ctl_el0, xzr
    msr     s3_0_c12_c12_1, x19
    isb
    // L2's virtual timer (its CNTVOFF_EL2 a quarter of the count) while
    // it polls without exits after one (the trapped CNTHCTL_EL2 read).
    mrs     x21, cntpct_el0
    lsr     x21, x21, #2
    msr     s3_4_c14_c0_3, x21
    UMBRA_L1TM_ARM_L2_VIRTUAL
    mrs     x1, s3_4_c14_c1_0
    UMBRA_L1TM_POLL_IAR umbra_l1tm_msg_v1_no_f
    UMBRA_L1TM_TAKEN {virtual_intid}, x20, umbra_l1tm_msg_v1_intid_f
    msr     s3_5_c14_c3_1, xzr
    msr     s3_0_c12_c12_1, x19
    isb
    // Its EL2 physical timer while its L2 spins (`umbra_l2tm_spin`).
    UMBRA_L1TM_ARM_EL2_PHYSICAL
    adr     x4, umbra_l1tm_v1_deadline
    str     x20, [x4]
    adr     x1, umbra_l2tm_spin
    adr     x2, umbra_l2tm_payload
    sub     x1, x1, x2
    add     x1, x1, #0x80000
    msr     elr_el2, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    eret

// vCPU 1's L2 taken out by an IRQ: its EL2 physical timer, no earlier
// than its CVAL; off, EOId; vCPU 1 is done and parks.
umbra_l1tm_v1_irq:
    mrs     x19, s3_0_c12_c12_0
    adr     x4, umbra_l1tm_v1_deadline
    ldr     x20, [x4]
    UMBRA_L1TM_TAKEN {hyp_physical_intid}, x20, umbra_l1tm_msg_v1_intid_d
    msr     cntp_ctl_el0, xzr
    msr     s3_0_c12_c12_1, x19
    isb
    adr     x4, umbra_l1tm_v1_done
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
1:  wfe
    b       1b

// vCPU 1's L2 ended its spin (`hvc #3`): no timer took it out.
umbra_l1tm_v1_lower_sync:
    mrs     x11, esr_el2
    adr     x10, umbra_l1tm_msg_v1_l2_spun
    b       umbra_l1tm_fail

.balign 2048
umbra_l1tm_vectors1:
    UMBRA_L1TM_VECTORS umbra_l1tm_unexpected, umbra_l1tm_unexpected, umbra_l1tm_unexpected, umbra_l1tm_v1_lower_sync, umbra_l1tm_v1_irq

.balign 8
umbra_l1tm_two_vcpus:
    .quad   0
umbra_l1tm_v1_done:
    .quad   0
umbra_l1tm_v1_deadline:
    .quad   0
umbra_l1tm_irqs:
    .quad   0
umbra_l1tm_traps:
    .quad   0
umbra_l1tm_counter_traps:
    .quad   0
umbra_l1tm_ticks:
    .quad   0
umbra_l1tm_deadline:
    .quad   0
umbra_l1tm_offset:
    .quad   0
umbra_l1tm_before_l2:
    .quad   0
umbra_l1tm_msg_a:        .asciz "L1 (timer): A: its EL2 physical timer (CNTP_*_EL0 at E2H = 1; CNTHP_CVAL/CTL_EL2 read the same) fired: INTID 26 at VBAR_EL2 + 0x280\n"
umbra_l1tm_msg_b:        .asciz "L1: B: its EL2 virtual timer, armed through CNTHV_TVAL_EL2, fired: INTID 28\n"
umbra_l1tm_msg_e:        .asciz "L1: E: its EL2 physical timer re-armed and its PPI EOId without a trap: the next expiry came with no exit of its own between (INTID 26, polled)\n"
umbra_l1tm_msg_f:        .asciz "L1: F: L2's virtual timer (CNTV_CVAL/CTL_EL02, CNTVOFF_EL2 = half the physical count) expiring while L1 spun without exits interrupted L1 at its deadline: INTID 27 at VBAR_EL2 + 0x280, CNTV_CTL_EL02 ENABLE|ISTATUS\n"
umbra_l1tm_msg_one_vcpu: .asciz "L1 (timer): one vCPU (PSCI CPU_ON: hv has no CPU for a second)\n"
umbra_l1tm_msg_v1:       .asciz "L1 (timer): vCPU 1 (PSCI CPU_ON; hv's CPU 2, no watchdog): its EL2 physical timer, L2's virtual timer while it polled without exits, its EL2 physical timer while its L2 spun: INTIDs 26, 27, 26\n"
umbra_l1tm_msg_enter:    .asciz "L1: C: CNTHCTL_EL2.EL1PTEN clear; ERET to L2\n"
umbra_l1tm_msg_l2_cntvct: .asciz "L1: L2's CNTVCT_EL0 is L1's physical count minus CNTVOFF_EL2: "
umbra_l1tm_msg_trapped:  .asciz "L1: L2's CNTPCT_EL0 and CNTP_CTL_EL0 reads trapped to L1 once each (EL1PCTEN, EL1PTEN clear), not again; L2's CNTKCTL_EL1 is L1's CNTKCTL_EL12 both ways; L1's CNTKCTL_EL1 is its CNTHCTL_EL2's low bits\n"
umbra_l1tm_msg_fp:       .asciz "L1: F': L2's physical timer (CNTP_CVAL/CTL_EL02) expiring while L1 spun without exits interrupted L1 at its deadline: INTID 30 at VBAR_EL2 + 0x280, CNTP_CTL_EL02 ENABLE|ISTATUS\n"
umbra_l1tm_msg_c:        .asciz "L1: C: L2's virtual timer (CNTV_CVAL/CTL_EL02) took L2 out at its deadline with L1's CNTVOFF_EL2: INTID 27 at VBAR_EL2 + 0x480, CNTV_CTL_EL02 ENABLE|ISTATUS\n"
umbra_l1tm_msg_d:        .asciz "L1: D: its EL2 physical timer expiring while L2 ran took L2 out: INTID 26 at VBAR_EL2 + 0x480\n"
umbra_l1tm_msg_pass:     .asciz "UMBRA-NESTED-PASS timer el2-physical=ok el2-virtual=ok rearm=ok l2-timer-in-l1=ok l2-virtual-cntvoff=ok l2-trap=ok cntkctl12=ok el2-timer-in-l2=ok\n"
umbra_l1tm_msg_pass2:    .asciz "UMBRA-NESTED-PASS timer el2-physical=ok el2-virtual=ok rearm=ok l2-timer-in-l1=ok l2-virtual-cntvoff=ok l2-trap=ok cntkctl12=ok el2-timer-in-l2=ok vcpus=2\n"
umbra_l1tm_msg_nl:       .asciz "\n"
umbra_l1tm_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_l1tm_msg_el:       .asciz "CurrentEL is not 2: "
umbra_l1tm_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1tm_msg_cnthctl:  .asciz "CNTHCTL_EL2 does not read back as written: "
umbra_l1tm_msg_cnthp_cval: .asciz "CNTHP_CVAL_EL2 is not the CNTP_CVAL_EL0 L1 wrote: "
umbra_l1tm_msg_cnthp_ctl: .asciz "CNTHP_CTL_EL2 is not enabled, unmasked after CNTP_CTL_EL0 = 1: "
umbra_l1tm_msg_cnthv_tval: .asciz "CNTV_CVAL_EL0 after CNTHV_TVAL_EL2 = TICKS is not the count at the write + TICKS: "
umbra_l1tm_msg_no_irq_a: .asciz "A: L1's EL2 physical timer interrupt did not come: interrupts "
umbra_l1tm_msg_no_irq_b: .asciz "B: L1's EL2 virtual timer interrupt did not come: interrupts "
umbra_l1tm_msg_early:    .asciz "a timer interrupt came before its deadline (physical count): "
umbra_l1tm_msg_extra_irq: .asciz "an interrupt after the last step: INTID "
umbra_l1tm_msg_intid_a:  .asciz "A: the interrupt is not the EL2 physical timer's PPI: "
umbra_l1tm_msg_intid_b:  .asciz "B: the interrupt is not the EL2 virtual timer's PPI: "
umbra_l1tm_msg_intid_c:  .asciz "C: the interrupt is not the EL1 virtual timer's PPI: "
umbra_l1tm_msg_intid_d:  .asciz "D: the interrupt is not the EL2 physical timer's PPI: "
umbra_l1tm_msg_l2_ctl:   .asciz "C: CNTV_CTL_EL02 does not read ENABLE and ISTATUS: "
umbra_l1tm_msg_l2_count: .asciz "L2's CNTVCT_EL0 is not L1's physical count minus its CNTVOFF_EL2: "
umbra_l1tm_msg_trap_esr: .asciz "L2's trapped access is not its CNTP_CTL_EL0 read: ESR_EL2 "
umbra_l1tm_msg_counter_traps: .asciz "L2's CNTPCT_EL0 reads did not trap exactly once: "
umbra_l1tm_msg_l1_cntkctl: .asciz "L1's CNTKCTL_EL1 (its CNTHCTL_EL2 at E2H = 1) is not the low bits of the CNTHCTL_EL2 it wrote last: "
umbra_l1tm_msg_cntkctl_alias: .asciz "CNTKCTL_EL1 (CNTHCTL_EL2 at E2H = 1) does not read the low bits of the CNTHCTL_EL2 written: "
umbra_l1tm_msg_cnthctl_alias: .asciz "CNTHCTL_EL2 does not read the CNTKCTL_EL1 L1 wrote (the same register at E2H = 1): "
umbra_l1tm_msg_l2_ctl_f_early: .asciz "F: CNTV_CTL_EL02 is not ENABLE alone 8 TICKS before L2's deadline (ISTATUS without CNTVOFF_EL2?): "
umbra_l1tm_msg_l2_ptl_early: .asciz "F': CNTP_CTL_EL02 is not ENABLE alone 8 TICKS before L2's deadline: "
umbra_l1tm_msg_no_irq_fp: .asciz "F': L2's physical timer did not interrupt L1 while L1 spun without exits: interrupts "
umbra_l1tm_msg_intid_fp: .asciz "F': the interrupt is not the EL1 physical timer's PPI: "
umbra_l1tm_msg_l2_ptl_fp: .asciz "F': CNTP_CTL_EL02 does not read ENABLE and ISTATUS: "
umbra_l1tm_msg_traps:    .asciz "L2's CNTP_CTL_EL0 reads did not trap exactly once: "
umbra_l1tm_msg_l2_cntp:  .asciz "L2's untrapped CNTP_CTL_EL0 is not its (off) timer's: "
umbra_l1tm_msg_l2_not_interrupted: .asciz "L2 spun a second without a timer taking it out to L1: interrupts "
umbra_l1tm_msg_cntkctl12: .asciz "CNTKCTL_EL12 does not read back as written: "
umbra_l1tm_msg_l2_cntkctl: .asciz "L2's CNTKCTL_EL1 is not what L1 wrote through CNTKCTL_EL12: "
umbra_l1tm_msg_cntkctl12_after: .asciz "CNTKCTL_EL12 does not read what L2 wrote to its CNTKCTL_EL1: "
umbra_l1tm_msg_cpu_on:   .asciz "PSCI CPU_ON for vCPU 1 failed: "
umbra_l1tm_msg_v1_timeout: .asciz "vCPU 1 did not finish its timer steps within 512 TICKS: done "
umbra_l1tm_msg_v1_no_a:  .asciz "vCPU 1: its EL2 physical timer interrupt did not come: ICV_IAR1_EL1 "
umbra_l1tm_msg_v1_intid_a: .asciz "vCPU 1: the interrupt is not its EL2 physical timer's PPI: "
umbra_l1tm_msg_v1_no_f:  .asciz "vCPU 1: L2's virtual timer interrupt did not come while L1 polled without exits: ICV_IAR1_EL1 "
umbra_l1tm_msg_v1_intid_f: .asciz "vCPU 1: the interrupt is not L2's virtual timer's PPI: "
umbra_l1tm_msg_v1_intid_d: .asciz "vCPU 1: the interrupt taking its L2 out is not its EL2 physical timer's PPI: "
umbra_l1tm_msg_v1_l2_spun: .asciz "vCPU 1: its L2 spun a second without its EL2 physical timer taking it out: ESR_EL2 "
umbra_l1tm_msg_no_irq_e1: .asciz "E: L1's EL2 physical timer interrupt did not come (polled): ICV_IAR1_EL1 "
umbra_l1tm_msg_no_irq_e2: .asciz "E: the re-armed EL2 physical timer's next expiry did not come after L1's EOI without a trap: ICV_IAR1_EL1 "
umbra_l1tm_msg_intid_e:  .asciz "E: the interrupt is not the EL2 physical timer's PPI: "
umbra_l1tm_msg_no_irq_f: .asciz "F: L2's virtual timer did not interrupt L1 while L1 spun without exits: interrupts "
umbra_l1tm_msg_intid_f:  .asciz "F: the interrupt is not the EL1 virtual timer's PPI: "
umbra_l1tm_msg_l2_ctl_f: .asciz "F: CNTV_CTL_EL02 does not read ENABLE and ISTATUS: "
umbra_l1tm_msg_l2_tval:  .asciz "CNTV_TVAL_EL02 is not the physical deadline minus the count (CNTVOFF_EL2 not applied): "

// L2 (at 0x80000, EL1h, stage 1 off, DAIF masked): reports its virtual
// count, reads CNTP_CTL_EL0 twice (the first traps to L1), then spins
// while its virtual timer and L1's EL2 timer take it out, at most a second
// of its virtual count (then `hvc #3`: they did not).
.balign 4096
umbra_l2tm_payload:
    mrs     x2, cntvct_el0
    hvc     #1
    mrs     x9, cntpct_el0
    mrs     x9, cntpct_el0
    mrs     x3, cntp_ctl_el0
    mrs     x4, cntp_ctl_el0
    mrs     x5, cntkctl_el1
    mov     x8, #3
    msr     cntkctl_el1, x8
    hvc     #2
// vCPU 1's L2 starts here.
umbra_l2tm_spin:
    mrs     x6, cntvct_el0
    mrs     x7, cntfrq_el0
    add     x6, x6, x7
1:  mrs     x7, cntvct_el0
    cmp     x7, x6
    b.lo    1b
    hvc     #3
2:  b       2b
.balign 4096
.global umbra_l1_timer_image_end
umbra_l1_timer_image_end:
.popsection
"#,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1_irq::L1_IRQ_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    cnthctl_all = const CNTHCTL_ALL,
    cnthctl_trap_l2_timer = const CNTHCTL_TRAP_L2_TIMER,
    cnthctl_trap_l2_counter_timer = const CNTHCTL_TRAP_L2_COUNTER_TIMER,
    l1_cntkctl = const L1_CNTKCTL,
    l2_cntkctl = const L2_CNTKCTL,
    cnthctl_all_low = const CNTHCTL_ALL & crate::nested::timer::CNTKCTL_WRITABLE,
    physical_intid = const 30,
    l2_cntpct_read_esr = const L2_CNTPCT_READ_ESR,
    hyp_physical_intid = const 26,
    hyp_virtual_intid = const crate::nested::timer::DEFAULT_HYP_VIRTUAL_PPI,
    virtual_intid = const 27,
    l2_cntp_ctl_read_esr = const L2_CNTP_CTL_READ_ESR,
);

/// CNTHCTL_EL2 (E2H = 1 layout): EL0PCTEN, EL0VCTEN, EL0VTEN, EL0PTEN,
/// EL1PCTEN, EL1PTEN (its low bits, 0x303, are its CNTKCTL_EL1 and differ
/// from L2's 3: a CNTKCTL_EL1 left as L2's shows).
pub const CNTHCTL_ALL: u64 = 0b11 | 0b11 << 8 | 0b11 << 10;
/// The same with EL1PTEN clear: L2's physical timer accesses trap to L1.
pub const CNTHCTL_TRAP_L2_TIMER: u64 = CNTHCTL_ALL & !(1 << 11);
/// The same with EL1PCTEN clear too: L2's physical counter reads trap.
pub const CNTHCTL_TRAP_L2_COUNTER_TIMER: u64 = CNTHCTL_TRAP_L2_TIMER & !(1 << 10);
/// L1's CNTKCTL_EL1 (its CNTHCTL_EL2's low bits) in step C: EL0PTEN
/// (nothing L1 runs at EL0 depends on it).
pub const L1_CNTKCTL: u64 = 0x200;
/// L2's CNTKCTL_EL1 as L1 first writes it (CNTKCTL_EL12): EL0VTEN,
/// EL0VCTEN.
pub const L2_CNTKCTL: u64 = 0x102;
/// ESR_EL2 of L2's `mrs x9, cntpct_el0` trapped (EC 0x18, IL, ISS: op0 3,
/// op2 1, op1 3, CRn 14, Rt 9, CRm 0, a read).
pub const L2_CNTPCT_READ_ESR: u64 =
    0x18 << 26 | 1 << 25 | 3 << 20 | 1 << 17 | 3 << 14 | 14 << 10 | 9 << 5 | 1;
/// ESR_EL2 of L2's `mrs x3, cntp_ctl_el0` trapped (EC 0x18, IL, ISS:
/// op0 3, op2 1, op1 3, CRn 14, Rt 3, CRm 2, a read).
pub const L2_CNTP_CTL_READ_ESR: u64 =
    0x18 << 26 | 1 << 25 | 3 << 20 | 1 << 17 | 3 << 14 | 14 << 10 | 3 << 5 | 2 << 1 | 1;

assembled_image!(
    "The `timer` L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_timer_image,
    umbra_l1_timer_image_end
);
