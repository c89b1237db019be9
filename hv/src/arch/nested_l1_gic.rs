//! The `gic` guest hypervisor (L1, VHE: E2H = 1) and its guest (L2): L1
//! programs its GICv3 distributor and redistributors (`nested::gic`,
//! `arch::nested_gic`) and takes SGIs and SPIs through them, at its own
//! EL2 and out of L2. Copied by `arch::nested` into L1's memory like
//! `arch::nested_l1`; data to hv, never executed at EL2.
//!
//! L1 (MMU off, its stack at +1 MiB, vCPU 1's at +960 KiB, L2's stage 2
//! at +2 MiB mapping L2 IPA 0x80000 to the L2 payload page, VMID 5;
//! virtual HCR_EL2 RW, DC, VM and IMO; its own interface's PMR 0xff and
//! group 1 on, PSTATE.I masked throughout: interrupts at its own EL2 are
//! taken by polling ICV_IAR1_EL1; TICKS = CNTFRQ_EL0 / 64) hard-codes QEMU
//! virt's GIC addresses ([`QEMU_VIRT_GICD`], [`QEMU_VIRT_GICR`]), which hv
//! gives L1 (the platform's):
//! 1. GICD_PIDR2.ArchRev is 3; GICD_CTLR = ARE | EnableGrp1 reads back
//!    with DS; GICD_TYPER.ITLinesNumber 4; its redistributor's GICR_TYPER
//!    has affinity 0; it clears GICR_WAKER.ProcessorSleep and
//!    ChildrenAsleep reads 0; GICR_IGROUPR0 reads all group 1; SGIs 1 and
//!    2 get priority 0x80 and are enabled (GICR_ISENABLER0 reads them);
//! 2. it sends itself SGI 1 (ICC_SGI1R_EL1, trapped) and takes INTID 1,
//!    EOIs it, and after an exit (a trapped GICD_CTLR load) ICV_IAR1_EL1
//!    reads 1023: delivered once;
//!    2b. with EOImode 1 it sends itself SGIs 4 to 4 + n (n the list
//!    registers hv lists its GIC in, ICH_VTR_EL2.ListRegs, LR 0 being
//!    hv's), takes and drops the first n (active: every LR in use; the
//!    last waits in the distributor) and deactivates one (ICV_DIR_EL1, no
//!    trap): the waiting SGI comes at hv's EOI maintenance exit, taken by
//!    polling without exits (`gic-no-eoi-maintenance` fails here);
//!    2c. SGI 3 sent to itself is listed (ICV_HPPIR1_EL1 reads 3) and reads
//!    pending in GICR_ISPENDR0 and ICPENDR0; cleared through
//!    GICR_ICPENDR0 it reads 0 and is never taken (`gic-no-withdraw`
//!    fails here); SPI 52 listed, then disabled (GICD_ICENABLER1,
//!    GICD_CTLR.RWP polled to 0): not in its interface, still pending,
//!    taken once when enabled again (review 47 R47-2);
//!    2d. SGI 3 sent again is listed at priority 0; given 0xc0 through
//!    GICR_IPRIORITYR, it is masked by priority mask 0x80 and taken at
//!    running priority 0xc0 (`gic-no-reprioritize` fails here);
//!    2e. with every LR hv lists in holding one of its SGIs active (as in
//!    2b), PPI 20 set active through GICR_ISACTIVER0 reads active; after
//!    L1 deactivates one SGI, PPI 20 takes that LR: ICV_DIR_EL1 20 makes
//!    it read inactive (`gic-no-ppi-active-wait` fails here);
//!    2f. with its priority mask at 0x80, SGIs 4 to 3 + n at 0xf0 sent to
//!    itself fill the n LRs (masked: ICV_IAR1_EL1 reads 1023); SGI 15 at
//!    0x10 sent then comes (hv hands the lowest masked one back for it:
//!    `gic-no-displace` fails here), and unmasked each of the n comes
//!    once (review 49 R49-1);
//!    2g. SGI 1 taken (active in its LR) and set active through
//!    GICR_ISACTIVER0 (no change: already active) comes again after its
//!    EOI and a new send (`gic-no-listed-active` fails here), reading
//!    active in GICR_ISACTIVER0 while taken and inactive once EOId; with
//!    EOImode 1, SPI 57 taken and dropped reads active in GICD_ISACTIVER1,
//!    and cleared there (GICD_ICACTIVER1) reads inactive and made pending
//!    again comes without ICV_DIR_EL1 (review 49 R49-3);
//! 3. SPI 48 (priority 0x80, GICD_IROUTER affinity 0, enabled) made
//!    pending through GICD_ISPENDR1: taken, EOId, GICD_ISPENDR1 then
//!    reads 0, and after an exit nothing more;
//!    3a. with its virtual HCR_EL2 without IMO and FMO (and ICH_HCR_EL2.TC
//!    0), it runs L2, which sends SGI 1 to vCPU 0 (a write L1 does not
//!    trap: it reaches L1's GIC) and calls `hvc #4`; L1 takes INTID 1
//!    once;
//! 4. starts vCPU 1 with PSCI CPU_ON (MPIDR 1; hv has a CPU for it from
//!    three CPUs on, else INVALID_PARAMETERS and one vCPU);
//! 5. SPI 49 made pending (routed to itself), then an ERET into L2: the IRQ
//!    is taken before L2's first instruction (VBAR_EL2 + 0x480, INTID 49,
//!    ELR_EL2 L2's entry 0x80000); with one vCPU L1 then checks nothing
//!    more is pending and passes;
//! 6. with two: L1 resumes L2, which sets a flag in its page and spins at
//!    most two seconds; vCPU 1 (its redistributor: GICR_TYPER affinity 1,
//!    Processor_Number 1, Last; woken) waits for the flag and sends SGI 2
//!    to vCPU 0, which is inside L2: L2 is taken out to VBAR_EL2 + 0x480,
//!    INTID 2, ELR_EL2 inside L2's payload page, and the pending vINTID
//!    42 L1 left for L2 in ICH_LR0_EL2 (VNCR page, L2's group 1 off) is
//!    still there;
//! 7. vCPU 0 then routes SPI 50 to vCPU 1 (GICD_IROUTER affinity 1) and
//!    makes it pending: vCPU 1, polling ICV_IAR1_EL1 without exits, takes
//!    INTID 50 (hv's kick SGI took it to hv, which listed it); vCPU 0
//!    checks vCPU 1 got it, and that nothing more is pending for itself;
//!    7a. SPIs 53-55 routed to vCPU 1 (parked, PSTATE.I masked,
//!    publishing its ICV_HPPIR1_EL1) made pending: once vCPU 1 shows 53,
//!    GICD_ISPENDR1 reads all three; 53 disabled (RWP polled to 0) still
//!    reads pending; 53 and 54 cleared pending read 0; 55 re-routed to
//!    vCPU 0 comes there once; vCPU 1 then polls ICV_IAR1_EL1 for 1/16 s
//!    and takes none of them (review 47 R47-2);
//!    7c. SPI 56 routed to vCPU 1, which takes it by polling and then
//!    spins without exits: GICD_ISPENDR1 read from vCPU 0 after vCPU 1
//!    published the INTID reads 0 (the load synced vCPU 1;
//!    `gic-no-read-sync` fails here);
//!    7d. PPI 20 set active at vCPU 1's redistributor from vCPU 0
//!    (GICR_ISACTIVER0) reads active from both vCPUs; vCPU 1 deactivates
//!    it (EOImode 1, ICV_DIR_EL1, no trap: the set reached its list
//!    registers) and it reads inactive from both
//!    (`gic-no-remote-ppi-active` fails here);
//!    7e. SPI 58 routed to vCPU 1, taken there with EOImode 1 and its
//!    priority dropped (active in vCPU 1's LR, no exit), reads active in
//!    GICD_ISACTIVER1 from vCPU 0; cleared there (GICD_ICACTIVER1) it
//!    reads inactive, and made pending again it comes to vCPU 1 again
//!    without ICV_DIR_EL1 there (review 49 R49-3);
//!    7f. SPI 59 routed to vCPU 1, taken there with EOImode 1 and its
//!    priority dropped (active in vCPU 1's LR, no exit); vCPU 0 gives its
//!    L2 an HW = 1 entry (ICH_LR0_EL2: vINTID 59, pINTID 59, pending; L2's
//!    VMCR VENG1, VPMR 0xff, EOImode 0) and runs L2, which takes vINTID 59
//!    by polling and EOIs it (`hvc #5`): L1 reads the entry back with
//!    State 0b00, makes SPI 59 pending again, and it comes to vCPU 1
//!    again without ICV_DIR_EL1 there: L2's deactivation reached vCPU 1's
//!    list register (review 48 R48-3; `gic-no-remote-hw-deactivate`, where
//!    it stays active there, fails here);
//!    7b. SPI 51 routed to vCPU 1 (parked in WFE with PSTATE.I masked,
//!    kicked: hv lists it there) made pending; vCPU 1 calls PSCI CPU_OFF;
//!    once AFFINITY_INFO(1) says OFF, vCPU 0 routes SPI 51 to itself and
//!    takes it once: it was never acknowledged, so it is still pending
//!    (`gic-no-power-off`, whose CPU_OFF loses it, fails here);
//! 8. prints `UMBRA-NESTED-PASS gic ...` (with ` vcpus=2` when vCPU 1
//!    ran; at most 160 characters, hv's console line) and calls PSCI
//!    SYSTEM_OFF (with two vCPUs, vCPU 1 being off, CPU_OFF instead: hv ends the run at L1's last running vCPU's
//!    CPU_OFF), or `UMBRA-NESTED-FAIL: <why>` with the value and
//!    SYSTEM_RESET.

use core::arch::global_asm;

/// QEMU virt's GICv3 distributor, which hv gives L1 (the platform's).
pub const QEMU_VIRT_GICD: u64 = 0x0800_0000;
/// QEMU virt's first redistributor: vCPU k's at `+ k * 0x20000`.
pub const QEMU_VIRT_GICR: u64 = 0x080a_0000;
/// Step 7f's ICH_LR0_EL2 for L2: pending, HW = 1, group 1, priority 0x80,
/// pINTID 59 (the SPI vCPU 1 holds active), vINTID 59.
const L2_HW_LR: u64 = 1 << 62 | 1 << 61 | 1 << 60 | 0x80 << 48 | 59 << 32 | 59;
/// Step 7f's ICH_VMCR_EL2 for L2: VPMR 0xff, VENG1, EOImode 0.
const L2_HW_VMCR: u64 = 0xff << 24 | 1 << 1;

global_asm!(
    l1_asm_macros!("UMBRA_L1G", "umbra_l1g"),
    r#"
// Nothing more pending for this vCPU: after an exit (a trapped load of
// GICD_CTLR, at whose end hv lists what is pending), ICV_IAR1_EL1 reads
// 1023 (clobbers x1, x3, x10, x11, x19).
.macro UMBRA_L1G_NOTHING_MORE msg
    UMBRA_L1G_MOV64 x1, {gicd}
    ldr     w1, [x1]
    isb
    mrs     x19, s3_0_c12_c12_0
    UMBRA_L1G_EXPECT x19, 1023, \msg
.endm

// x22 = the LRs hv lists L1's GIC in (ICH_VTR_EL2.ListRegs: LR 0 carries
// hv's maintenance interrupt; at most 11, so SGIs 4 to 4 + x22 exist),
// x26 = 4 + x22 (clobbers x1).
.macro UMBRA_L1G_LIST_REGISTERS
    mrs     x22, s3_4_c12_c11_1
    and     x22, x22, #0x1f
    mov     x1, #11
    cmp     x22, x1
    csel    x22, x22, x1, ls
    add     x26, x22, #4
.endm

// SGIs 4 to x26 - 1 sent to itself, one each (clobbers x1, x24).
.macro UMBRA_L1G_SEND_SGIS
    mov     x24, #4
95: lsl     x1, x24, #24
    orr     x1, x1, #1
    msr     s3_0_c12_c11_5, x1
    isb
    add     x24, x24, #1
    cmp     x24, x26
    b.lo    95b
.endm

// Polls GICD_CTLR (x20 the distributor) until RWP reads 0, at most 64
// TICKS, 1 s: RWP waits for another vCPU's exit after its kick, which a
// loaded host can delay (clobbers x3, x4, x6, x7, x10, x11, x21).
.macro UMBRA_L1G_WAIT_RWP msg
    UMBRA_L1G_TICKS_AHEAD 6
92: ldr     w21, [x20]
    tbz     w21, #31, 93f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    92b
    mov     x11, x21
    adr     x10, \msg
    b       umbra_l1g_fail
93:
.endm

// GICD_ISPENDR1 (x20 the distributor) reads `pending`; the SPIs of
// `bits` disabled (GICD_ICENABLER1) and GICD_CTLR.RWP polled to 0: it
// still reads `pending` (clobbers x1, x3, x4, x6, x7, x10, x11, x21).
.macro UMBRA_L1G_DISABLE_PENDING bits, pending, msg_before, msg_rwp, msg_after
    ldr     w21, [x20, #0x204]
    UMBRA_L1G_EXPECT x21, \pending, \msg_before
    UMBRA_L1G_MOV64 x1, \bits
    str     w1, [x20, #0x184]
    UMBRA_L1G_WAIT_RWP \msg_rwp
    ldr     w21, [x20, #0x204]
    UMBRA_L1G_EXPECT x21, \pending, \msg_after
.endm

// The SPIs of `bits` (32-63; x20 the distributor) cleared active
// (GICD_ICACTIVER1): GICD_ISACTIVER1 then reads 0; then made pending
// again (GICD_ISPENDR1) (clobbers x1, x3, x10, x11, x21).
.macro UMBRA_L1G_CLEAR_ACTIVE_PEND bits, msg
    UMBRA_L1G_MOV64 x1, \bits
    str     w1, [x20, #0x384]
    ldr     w21, [x20, #0x304]
    UMBRA_L1G_EXPECT x21, 0, \msg
    str     w1, [x20, #0x204]
.endm

// With EOImode 1: `intid` taken by polling ICV_IAR1_EL1 (else fails with
// `msg`), dropped and deactivated (ICV_DIR_EL1); then EOImode 0 again
// (clobbers x1, x3-x7, x10, x11, x19).
.macro UMBRA_L1G_TAKE_DEACTIVATE intid, msg
    UMBRA_L1G_POLL_IAR \msg
    UMBRA_L1G_EXPECT x19, \intid, \msg
    msr     s3_0_c12_c12_1, x19
    msr     s3_0_c12_c11_1, x19
    mrs     x1, s3_0_c12_c12_4
    bic     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
.endm

// ELR_EL2 and SPSR_EL2 for an ERET into L2 (EL1h, DAIF masked) at
// `label`, in its payload page at IPA 0x80000 (clobbers x1, x2).
.macro UMBRA_L1G_L2_AT label
    adr     x1, \label
    adr     x2, umbra_l2g_payload
    sub     x1, x1, x2
    add     x1, x1, #0x80000
    msr     elr_el2, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
.endm

// SPI `n` (below 64) routed to affinity `aff`, priority 0x80, enabled
// and made pending through GICD_ISPENDR1 (clobbers x1, x2).
.macro UMBRA_L1G_SPI n, aff
    UMBRA_L1G_MOV64 x1, {gicd}
    mov     w2, #0x80
    strb    w2, [x1, #(0x400 + \n)]
    mov     x2, #\aff
    str     x2, [x1, #(0x6000 + 8 * \n)]
    mov     w2, #(1 << (\n - 32))
    str     w2, [x1, #0x104]
    str     w2, [x1, #0x204]
.endm

.pushsection .rodata.umbra_l1_gic, "a"
.balign 4096
.global umbra_l1_gic_image
umbra_l1_gic_image:
    adr     x9, umbra_l1_gic_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1G_EXPECT x1, 8, umbra_l1g_msg_el
    adr     x1, umbra_l1g_vectors
    msr     vbar_el2, x1
    isb
    mrs     x1, cntfrq_el0
    lsr     x1, x1, #6
    adr     x4, umbra_l1g_ticks
    str     x1, [x4]
    // L2's stage 2 and L1's virtual HCR_EL2 (IMO: IRQs to virtual EL2).
    add     x13, x9, #0x200000
    UMBRA_L1G_L2_STAGE2_TABLES umbra_l2g_payload
    UMBRA_L1G_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    UMBRA_L1G_OWN_INTERFACE_ON
    // 1: the distributor.
    UMBRA_L1G_MOV64 x20, {gicd}
    add     x1, x20, #0xf000
    ldr     w21, [x1, #0xfe8]
    and     x21, x21, #0xf0
    UMBRA_L1G_EXPECT x21, 0x30, umbra_l1g_msg_pidr2
    mov     w1, #0x12
    str     w1, [x20]
    ldr     w21, [x20]
    UMBRA_L1G_EXPECT x21, 0x52, umbra_l1g_msg_ctlr
    ldr     w21, [x20, #4]
    and     x21, x21, #0x1f
    UMBRA_L1G_EXPECT x21, 4, umbra_l1g_msg_typer
    // Its redistributor: affinity 0, woken, group 1, SGIs 1 and 2.
    UMBRA_L1G_MOV64 x20, {gicr}
    ldr     x21, [x20, #8]
    lsr     x21, x21, #32
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_gicr_typer0
    str     wzr, [x20, #0x14]
    ldr     w21, [x20, #0x14]
    and     x21, x21, #4
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_waker
    add     x20, x20, #0x10, lsl #12
    ldr     w21, [x20, #0x80]
    UMBRA_L1G_EXPECT x21, 0xffffffff, umbra_l1g_msg_igroupr0
    UMBRA_L1G_MOV64 x1, 0x808000
    str     w1, [x20, #0x400]
    mov     w1, #6
    str     w1, [x20, #0x100]
    ldr     w21, [x20, #0x100]
    UMBRA_L1G_EXPECT x21, 6, umbra_l1g_msg_isenabler0
    UMBRA_L1G_PUTS umbra_l1g_msg_enabled
    // 2: SGI 1 to itself (target list Aff0 0).
    UMBRA_L1G_MOV64 x1, 0x1000001
    msr     s3_0_c12_c11_5, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_no_own_sgi
    UMBRA_L1G_EXPECT x19, 1, umbra_l1g_msg_own_sgi_intid
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_own_sgi_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_own_sgi
    // 2b: EOImode 1 (ICC_CTLR_EL1.EOImode: ICV_EOIR1_EL1 only drops the
    // priority). x22 = the LRs hv lists L1's GIC in (ICH_VTR_EL2.ListRegs:
    // LR 0 carries hv's maintenance interrupt; at most 11); SGIs 4 to
    // 4 + x22 at priority 0x80, all sent to itself (each write traps, and
    // hv lists at each exit): x22 fill the LRs, SGI x26 = 4 + x22 waits in
    // the distributor. L1 takes and drops the x22 (active), then
    // deactivates the first (ICV_DIR_EL1, no trap): hv's EOI maintenance
    // exit must list SGI x26, which L1 takes polling without exits.
    mrs     x1, s3_0_c12_c12_4
    orr     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    UMBRA_L1G_LIST_REGISTERS
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x10, lsl #12
    UMBRA_L1G_MOV64 x1, 0x80808080
    str     w1, [x20, #0x404]
    str     w1, [x20, #0x408]
    str     w1, [x20, #0x40c]
    mov     w1, #0xfff0
    str     w1, [x20, #0x100]
    mov     x24, #4
20: lsl     x1, x24, #24
    orr     x1, x1, #1
    msr     s3_0_c12_c11_5, x1
    isb
    add     x24, x24, #1
    cmp     x24, x26
    b.ls    20b
    mov     x24, #0
21:
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_no_fill
    cbnz    x24, 22f
    mov     x23, x19
22: msr     s3_0_c12_c12_1, x19
    isb
    add     x24, x24, #1
    cmp     x24, x22
    b.lo    21b
    msr     s3_0_c12_c11_1, x23
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_no_waiting
    mov     x11, x19
    adr     x10, umbra_l1g_msg_waiting_intid
    cmp     x19, x26
    b.ne    umbra_l1g_fail
    msr     s3_0_c12_c12_1, x19
    msr     s3_0_c12_c11_1, x19
    mov     x24, #4
23: cmp     x24, x23
    b.eq    24f
    msr     s3_0_c12_c11_1, x24
24: add     x24, x24, #1
    cmp     x24, x26
    b.lo    23b
    mrs     x1, s3_0_c12_c12_4
    bic     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_waiting_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_waiting
    // 2c: SGI 3 (priority 0) enabled and sent to itself: listed at that
    // exit (ICV_HPPIR1_EL1 reads it; PSTATE.I masked, so not taken). It
    // reads pending in GICR_ISPENDR0 and ICPENDR0; cleared through
    // GICR_ICPENDR0 it reads 0, and hv withdrew it from the LR: never
    // taken. SPI 52 likewise listed, then disabled (GICD_ICENABLER1):
    // withdrawn once GICD_CTLR.RWP reads 0, still pending, and taken once
    // enabled again.
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x10, lsl #12
    mov     w1, #8
    str     w1, [x20, #0x100]
    UMBRA_L1G_MOV64 x1, 0x3000001
    msr     s3_0_c12_c11_5, x1
    isb
    mrs     x19, s3_0_c12_c12_2
    UMBRA_L1G_EXPECT x19, 3, umbra_l1g_msg_sgi3_not_listed
    ldr     w21, [x20, #0x200]
    UMBRA_L1G_EXPECT x21, 8, umbra_l1g_msg_sgi3_ispendr
    ldr     w21, [x20, #0x280]
    UMBRA_L1G_EXPECT x21, 8, umbra_l1g_msg_sgi3_icpendr
    mov     w1, #8
    str     w1, [x20, #0x280]
    ldr     w21, [x20, #0x200]
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_sgi3_cleared_reads
    mrs     x19, s3_0_c12_c12_2
    UMBRA_L1G_EXPECT x19, 1023, umbra_l1g_msg_sgi3_not_withdrawn
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_sgi3_taken
    UMBRA_L1G_SPI 52, 0
    mrs     x19, s3_0_c12_c12_2
    UMBRA_L1G_EXPECT x19, 52, umbra_l1g_msg_spi52_not_listed
    UMBRA_L1G_MOV64 x20, {gicd}
    UMBRA_L1G_DISABLE_PENDING 0x100000, 0x100000, umbra_l1g_msg_spi52_ispendr, umbra_l1g_msg_spi52_rwp, umbra_l1g_msg_spi52_disabled_reads
    mrs     x19, s3_0_c12_c12_2
    UMBRA_L1G_EXPECT x19, 1023, umbra_l1g_msg_spi52_not_withdrawn
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_spi52_taken_disabled
    mov     w1, #0x100000
    str     w1, [x20, #0x104]
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_spi52_lost
    UMBRA_L1G_EXPECT x19, 52, umbra_l1g_msg_spi52_lost
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_MOV64 x20, {gicd}
    ldr     w21, [x20, #0x204]
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_spi52_still_pending
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_spi52_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_withdrawn
    // 2d: SGI 3 (priority 0) sent to itself again is listed; L1 gives it
    // priority 0xc0 (GICR_IPRIORITYR3, a byte store): with its priority
    // mask at 0x80 it is not signalled (ICV_IAR1_EL1 1023), with 0xff it
    // is taken at running priority 0xc0 (ICV_RPR_EL1).
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x10, lsl #12
    UMBRA_L1G_MOV64 x1, 0x3000001
    msr     s3_0_c12_c11_5, x1
    isb
    mrs     x19, s3_0_c12_c12_2
    UMBRA_L1G_EXPECT x19, 3, umbra_l1g_msg_sgi3_not_listed
    mov     w1, #0xc0
    strb    w1, [x20, #0x403]
    mov     x1, #0x80
    msr     s3_0_c4_c6_0, x1
    isb
    mrs     x19, s3_0_c12_c12_0
    UMBRA_L1G_EXPECT x19, 1023, umbra_l1g_msg_reprio_masked
    mov     x1, #0xff
    msr     s3_0_c4_c6_0, x1
    isb
    mrs     x19, s3_0_c12_c12_0
    UMBRA_L1G_EXPECT x19, 3, umbra_l1g_msg_reprio_lost
    mrs     x21, s3_0_c12_c11_3
    UMBRA_L1G_EXPECT x21, 0xc0, umbra_l1g_msg_reprio_rpr
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_reprio_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_reprio
    // 2e: EOImode 1; SGIs 4 to 3 + x22 sent to itself, taken and dropped:
    // every LR hv lists in holds one active (their GICR_ISACTIVER0 bits,
    // read too, are step 2g's). PPI 20 set active
    // (GICR_ISACTIVER0) reads active though no LR is free; once SGI 4 is
    // deactivated (ICV_DIR_EL1, no trap) it still reads active, and
    // deactivated itself (ICV_DIR_EL1 20: it took the freed LR) it reads
    // inactive. Then the other SGIs are deactivated.
    mrs     x1, s3_0_c12_c12_4
    orr     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    UMBRA_L1G_LIST_REGISTERS
    UMBRA_L1G_SEND_SGIS
    mov     x24, #0
26: UMBRA_L1G_POLL_IAR umbra_l1g_msg_no_fill
    msr     s3_0_c12_c12_1, x19
    isb
    add     x24, x24, #1
    cmp     x24, x22
    b.lo    26b
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x10, lsl #12
    mov     w1, #0x100000
    str     w1, [x20, #0x300]
    ldr     w21, [x20, #0x300]
    and     x21, x21, #0xffff0000
    UMBRA_L1G_EXPECT x21, 0x100000, umbra_l1g_msg_ppi_wait_set
    mov     x1, #4
    msr     s3_0_c12_c11_1, x1
    isb
    ldr     w21, [x20, #0x300]
    and     x21, x21, #0xffff0000
    UMBRA_L1G_EXPECT x21, 0x100000, umbra_l1g_msg_ppi_wait_freed
    mov     x1, #20
    msr     s3_0_c12_c11_1, x1
    isb
    ldr     w21, [x20, #0x300]
    and     x21, x21, #0xffff0000
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_ppi_wait_not_placed
    mov     x24, #5
27: msr     s3_0_c12_c11_1, x24
    add     x24, x24, #1
    cmp     x24, x26
    b.lo    27b
    mrs     x1, s3_0_c12_c12_4
    bic     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_ppi_wait_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_ppi_wait
    // 2f: priority mask 0x80 (ICV_PMR_EL1); SGIs 4 to 3 + x22 at
    // priority 0xf0 sent to itself fill every LR hv lists in, masked
    // (ICV_IAR1_EL1 reads 1023); SGI 15 at 0x10 sent then must come: hv
    // hands the lowest-ranked masked SGI back to the redistributor for it
    // (review 49 R49-1; `gic-no-displace` fails here). Unmasked, the
    // x22 SGIs each come once (the handed-back one at SGI 15's EOI
    // maintenance exit), and nothing more.
    mov     x1, #0x80
    msr     s3_0_c4_c6_0, x1
    isb
    UMBRA_L1G_LIST_REGISTERS
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x10, lsl #12
    UMBRA_L1G_MOV64 x1, 0xf0f0f0f0
    str     w1, [x20, #0x404]
    str     w1, [x20, #0x408]
    UMBRA_L1G_MOV64 x1, 0x10f0f0f0
    str     w1, [x20, #0x40c]
    UMBRA_L1G_SEND_SGIS
    mrs     x19, s3_0_c12_c12_0
    UMBRA_L1G_EXPECT x19, 1023, umbra_l1g_msg_masked_taken
    UMBRA_L1G_MOV64 x1, 0xf000001
    msr     s3_0_c12_c11_5, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_not_displaced
    UMBRA_L1G_EXPECT x19, 15, umbra_l1g_msg_not_displaced
    msr     s3_0_c12_c12_1, x19
    isb
    mov     x1, #0xff
    msr     s3_0_c4_c6_0, x1
    isb
    mov     x27, #0
    mov     x24, #0
26: UMBRA_L1G_POLL_IAR umbra_l1g_msg_displaced_lost
    mov     x1, #1
    lsl     x1, x1, x19
    orr     x27, x27, x1
    msr     s3_0_c12_c12_1, x19
    isb
    add     x24, x24, #1
    cmp     x24, x22
    b.lo    26b
    mov     x1, #1
    lsl     x1, x1, x26
    sub     x1, x1, #16
    mov     x11, x27
    adr     x10, umbra_l1g_msg_displaced_lost
    cmp     x27, x1
    b.ne    umbra_l1g_fail
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_displaced_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_displaced
    // 2g: one active state per interrupt (review 49 R49-3). SGI 1 sent to
    // itself and taken (active in its LR); GICR_ISACTIVER0 set for it
    // changes nothing (already active), so its EOI deactivates it and,
    // sent again, it comes (`gic-no-listed-active`, whose set outlives
    // the EOI, fails here); taken, GICR_ISACTIVER0 reads it active, EOId
    // inactive. With EOImode 1, SPI 57 taken and dropped reads active in
    // GICD_ISACTIVER1; cleared there (GICD_ICACTIVER1) it reads inactive,
    // and made pending again it comes without an ICV_DIR_EL1 (the clear
    // deactivated it).
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x10, lsl #12
    UMBRA_L1G_MOV64 x1, 0x1000001
    msr     s3_0_c12_c11_5, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_active_sgi_lost
    UMBRA_L1G_EXPECT x19, 1, umbra_l1g_msg_active_sgi_lost
    mov     w1, #2
    str     w1, [x20, #0x300]
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_MOV64 x1, 0x1000001
    msr     s3_0_c12_c11_5, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_active_sgi_again
    UMBRA_L1G_EXPECT x19, 1, umbra_l1g_msg_active_sgi_again
    ldr     w21, [x20, #0x300]
    and     x21, x21, #0xffff
    UMBRA_L1G_EXPECT x21, 2, umbra_l1g_msg_active_sgi_reads
    msr     s3_0_c12_c12_1, x19
    isb
    ldr     w21, [x20, #0x300]
    and     x21, x21, #0xffff
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_active_sgi_eoi_reads
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_active_sgi_twice
    mrs     x1, s3_0_c12_c12_4
    orr     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
    UMBRA_L1G_SPI 57, 0
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_active_spi_lost
    UMBRA_L1G_EXPECT x19, 57, umbra_l1g_msg_active_spi_lost
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_MOV64 x20, {gicd}
    ldr     w21, [x20, #0x304]
    UMBRA_L1G_EXPECT x21, 0x2000000, umbra_l1g_msg_active_spi_reads
    UMBRA_L1G_CLEAR_ACTIVE_PEND 0x2000000, umbra_l1g_msg_active_spi_cleared_reads
    UMBRA_L1G_TAKE_DEACTIVATE 57, umbra_l1g_msg_active_spi_again
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_active_spi_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_one_active
    // 3: SPI 48 to itself through GICD_ISPENDR1.
    UMBRA_L1G_SPI 48, 0
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_no_spi
    UMBRA_L1G_EXPECT x19, 48, umbra_l1g_msg_spi_intid
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_MOV64 x1, {gicd}
    ldr     w21, [x1, #0x204]
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_spi_still_pending
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_spi_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_spi
    // 3a: L2's SGI 1 to vCPU 0 with L1 trapping none of its SGI writes
    // (virtual HCR_EL2 without IMO and FMO, ICH_HCR_EL2.TC 0): it reaches
    // L1's GIC; L2 then calls `hvc #4`.
    UMBRA_L1G_MOV64 x1, {vhcr_no_imo}
    msr     hcr_el2, x1
    UMBRA_L1G_L2_AT umbra_l2g_sgi
    eret
umbra_l1g_after_l2_sgi:
    // 4: vCPU 1 (PSCI CPU_ON for MPIDR 1); hv may have no CPU for it
    // (INVALID_PARAMETERS).
    UMBRA_L1G_CPU_ON_VCPU1 umbra_l1g_secondary
    cbz     x0, 10f
    UMBRA_L1G_PUTS umbra_l1g_msg_one_vcpu
    b       11f
10: adr     x4, umbra_l1g_two_vcpus
    mov     x1, #1
    str     x1, [x4]
11:
    // 5: SPI 49 pending for L1 at its ERET into L2: taken at once.
    UMBRA_L1G_SPI 49, 0
    UMBRA_L1G_AT_L2_PAYLOAD
    eret

"#,
    l1_asm_print!("UMBRA_L1G", "umbra_l1g"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1G", "umbra_l1g"),
    // Lower EL: L2's `hvc #3` (its spin ended) and IRQs taking L2 out.
    l1_asm_vectors!(
        "UMBRA_L1G",
        "umbra_l1g",
        "umbra_l1g_unexpected",
        "umbra_l1g_unexpected",
        "umbra_l1g_lower_sync",
        "umbra_l1g_l2_irq",
    ),
    r#"

// L2 taken out by an IRQ: step 5 (SPI 49 before L2's first instruction),
// then step 6 (SGI 2 from vCPU 1 while L2 spins); any other is extra.
umbra_l1g_l2_irq:
    adr     x9, umbra_l1_gic_image
    mrs     x19, s3_0_c12_c12_0
    mrs     x20, elr_el2
    adr     x4, umbra_l1g_irqs
    ldr     x22, [x4]
    add     x1, x22, #1
    str     x1, [x4]
    cbz     x22, 1f
    cmp     x22, #1
    b.eq    2f
    mov     x11, x19
    adr     x10, umbra_l1g_msg_extra_irq
    b       umbra_l1g_fail
    // 5: SPI 49, L2 not yet run.
1:  UMBRA_L1G_EXPECT x19, 49, umbra_l1g_msg_eret_intid
    UMBRA_L1G_EXPECT x20, 0x80000, umbra_l1g_msg_eret_elr
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_PUTS umbra_l1g_msg_eret
    adr     x4, umbra_l1g_two_vcpus
    ldr     x1, [x4]
    cbnz    x1, 3f
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_eret_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_pass
    UMBRA_L1G_SYSTEM_OFF
    // 6: L2 resumed where it was (its entry) to spin, with a pending
    // vINTID 42 for it in ICH_LR0_EL2 and ICH_HCR_EL2.En (VNCR words: its
    // group 1 is off, so L2 never takes it).
3:  UMBRA_L1G_MOV64 x1, {l2_lr}
    msr     s3_4_c12_c12_0, x1
    mov     x1, #1
    msr     s3_4_c12_c11_0, x1
    isb
    UMBRA_L1G_PUTS umbra_l1g_msg_enter
    eret
    // 6: SGI 2 from vCPU 1, L2 inside its payload page.
2:  UMBRA_L1G_EXPECT x19, 2, umbra_l1g_msg_l2_sgi_intid
    mov     x11, x20
    adr     x10, umbra_l1g_msg_l2_sgi_elr
    cmp     x20, #0x80000
    b.lo    umbra_l1g_fail
    cmp     x20, #0x81000
    b.hs    umbra_l1g_fail
    msr     s3_0_c12_c12_1, x19
    isb
    // L2's interrupt state survived the exit: its LR as L1 wrote it.
    mrs     x21, s3_4_c12_c12_0
    UMBRA_L1G_EXPECT x21, {l2_lr}, umbra_l1g_msg_l2_lr
    UMBRA_L1G_PUTS umbra_l1g_msg_l2_sgi
    // 7: SPI 50 to vCPU 1, which polls without exits.
    UMBRA_L1G_SPI 50, 1
    UMBRA_L1G_TICKS_AHEAD 9
4:  adr     x4, umbra_l1g_v1_done
    ldr     x5, [x4]
    cbnz    x5, 5f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    4b
    adr     x4, umbra_l1g_v1_intid
    ldr     x11, [x4]
    adr     x10, umbra_l1g_msg_v1_timeout
    b       umbra_l1g_fail
5:  adr     x4, umbra_l1g_v1_intid
    ldr     x21, [x4]
    UMBRA_L1G_EXPECT x21, 50, umbra_l1g_msg_v1_spi
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_routed_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_routed
    // 7a: SPIs 53-55 routed to vCPU 1 (parked, PSTATE.I masked: never
    // acknowledged) made pending: its kicks list them there (vCPU 1
    // publishes its ICV_HPPIR1_EL1: 53). GICD_ISPENDR1 reads all three;
    // 53 disabled: once GICD_CTLR.RWP reads 0 (vCPU 1 withdrew it) it
    // still reads pending; 53 and 54 cleared pending read 0; 55 re-routed
    // to vCPU 0 comes there once. vCPU 1 then polls ICV_IAR1_EL1 for a
    // while: none of them comes.
    UMBRA_L1G_SPI 53, 1
    UMBRA_L1G_SPI 54, 1
    UMBRA_L1G_SPI 55, 1
    UMBRA_L1G_TICKS_AHEAD 6
30: adr     x4, umbra_l1g_v1_hppir
    ldr     x21, [x4]
    cmp     x21, #53
    b.eq    31f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    30b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_not_listed
    b       umbra_l1g_fail
31: UMBRA_L1G_MOV64 x20, {gicd}
    UMBRA_L1G_DISABLE_PENDING 0x200000, 0xe00000, umbra_l1g_msg_v1_listed_ispendr, umbra_l1g_msg_v1_rwp, umbra_l1g_msg_v1_disabled_ispendr
    mov     w1, #0x600000
    str     w1, [x20, #0x284]
    ldr     w21, [x20, #0x204]
    UMBRA_L1G_EXPECT x21, 0x800000, umbra_l1g_msg_v1_cleared_ispendr
    mov     w1, #0x200000
    str     w1, [x20, #0x104]
    str     xzr, [x20, #(0x6000 + 8 * 55)]
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_v1_rerouted_lost
    UMBRA_L1G_EXPECT x19, 55, umbra_l1g_msg_v1_rerouted_lost
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_v1_rerouted_twice
    UMBRA_L1G_MOV64 x20, {gicd}
    ldr     w21, [x20, #0x204]
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_v1_rerouted_ispendr
    adr     x4, umbra_l1g_v1_check
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 6
32: adr     x4, umbra_l1g_v1_checked
    ldr     x5, [x4]
    cbnz    x5, 33f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    32b
    mov     x11, x5
    adr     x10, umbra_l1g_msg_v1_no_check
    b       umbra_l1g_fail
33: adr     x4, umbra_l1g_v1_checked_intid
    ldr     x21, [x4]
    UMBRA_L1G_EXPECT x21, 1023, umbra_l1g_msg_v1_took_withdrawn
    UMBRA_L1G_PUTS umbra_l1g_msg_v1_withdrawn
    // 7c: SPI 56 routed to vCPU 1, which polls ICV_IAR1_EL1 for it (no
    // exits), publishes the INTID and spins, still without exits, until
    // vCPU 0 is done: GICD_ISPENDR1, read from vCPU 0 after it saw the
    // INTID, must not read SPI 56 pending (the load syncs vCPU 1, waiting
    // at most 10 ms for its exit; read again for at most 128 TICKS, 2 s:
    // 16 failed once in 20 runs on a host with load 14). vCPU 1 then EOIs it and publishes 0.
    adr     x4, umbra_l1g_v1_ack
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_SPI 56, 1
    UMBRA_L1G_TICKS_AHEAD 6
34: adr     x4, umbra_l1g_v1_acked
    ldr     x21, [x4]
    cbnz    x21, 35f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    34b
    adr     x10, umbra_l1g_msg_v1_no_ack
    mov     x11, x21
    b       umbra_l1g_fail
35: UMBRA_L1G_EXPECT x21, 56, umbra_l1g_msg_v1_ack_intid
    UMBRA_L1G_MOV64 x20, {gicd}
    UMBRA_L1G_TICKS_AHEAD 7
36: ldr     w21, [x20, #0x204]
    cbz     w21, 37f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    36b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_acked_pending
    b       umbra_l1g_fail
37: adr     x4, umbra_l1g_v1_ack
    str     xzr, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 6
38: adr     x4, umbra_l1g_v1_acked
    ldr     x21, [x4]
    cbz     x21, 39f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    38b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_no_ack_eoi
    b       umbra_l1g_fail
39: UMBRA_L1G_PUTS umbra_l1g_msg_v1_ack_read
    // 7d: vCPU 0 sets PPI 20 active at vCPU 1's redistributor
    // (GICR_ISACTIVER0) and reads it back; vCPU 1, asked, reads it active
    // at its own, deactivates it (EOImode 1, ICV_DIR_EL1: no trap) and
    // reads it inactive; then vCPU 0 reads it inactive too.
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x30, lsl #12
    mov     w1, #0x100000
    str     w1, [x20, #0x300]
    ldr     w21, [x20, #0x300]
    UMBRA_L1G_EXPECT x21, 0x100000, umbra_l1g_msg_v1_ppi_set_reads
    adr     x4, umbra_l1g_v1_ppi
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 6
40: adr     x4, umbra_l1g_v1_ppi
    ldr     x21, [x4]
    cbz     x21, 41f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    40b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_ppi_no_report
    b       umbra_l1g_fail
41: UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x30, lsl #12
    ldr     w21, [x20, #0x300]
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_v1_ppi_deactivated_reads
    UMBRA_L1G_PUTS umbra_l1g_msg_v1_ppi
    // 7e: SPI 58 routed to vCPU 1, which (asked) takes it with EOImode 1,
    // drops its priority (active in its LR, no exit), publishes the INTID
    // and spins without exits. vCPU 0 reads it active in GICD_ISACTIVER1
    // (the load syncs vCPU 1, waiting at most 10 ms for its exit: read
    // again for at most 128 TICKS, 2 s, as in 7c), clears it active (GICD_ICACTIVER1: the
    // store syncs vCPU 1 first, and vCPU 1's kicked exit deactivates its
    // LR), reads it inactive and makes it pending again: vCPU 1 takes it
    // again without ICV_DIR_EL1 (review 49 R49-3), deactivates it and
    // publishes 0.
    UMBRA_L1G_SPI 58, 1
    adr     x4, umbra_l1g_v1_active
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 6
42: adr     x4, umbra_l1g_v1_active_intid
    ldr     x21, [x4]
    cbnz    x21, 43f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    42b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_active_no_ack
    b       umbra_l1g_fail
43: UMBRA_L1G_EXPECT x21, 58, umbra_l1g_msg_v1_active_no_ack
    UMBRA_L1G_MOV64 x20, {gicd}
    mov     w1, #0x4000000
    UMBRA_L1G_TICKS_AHEAD 7
46: ldr     w21, [x20, #0x304]
    cmp     w21, w1
    b.eq    47f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    46b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_active_reads
    b       umbra_l1g_fail
47: UMBRA_L1G_CLEAR_ACTIVE_PEND 0x4000000, umbra_l1g_msg_v1_active_cleared_reads
    adr     x4, umbra_l1g_v1_active
    mov     x1, #2
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 7
44: adr     x4, umbra_l1g_v1_active_intid
    ldr     x21, [x4]
    cbz     x21, 45f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    44b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_active_not_again
    b       umbra_l1g_fail
45: UMBRA_L1G_PUTS umbra_l1g_msg_v1_active
    // 7f: SPI 59 routed to vCPU 1, which (asked) takes it with EOImode 1,
    // drops its priority (active in its LR, no exit), publishes the INTID
    // and spins without exits. vCPU 0 gives its L2 an HW = 1 entry naming
    // it (ICH_LR0_EL2: vINTID 59, pINTID 59, pending; L2's VMCR VENG1 and
    // VPMR 0xff) and runs L2, which takes vINTID 59 and EOIs it (EOImode
    // 0: deactivated, so is pINTID 59, which vCPU 1 holds active; review
    // 48 R48-3) and calls `hvc #5` (`umbra_l1g_l2_hw_back`).
    UMBRA_L1G_SPI 59, 1
    adr     x4, umbra_l1g_v1_hw
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 6
50: adr     x4, umbra_l1g_v1_hw_intid
    ldr     x21, [x4]
    cbnz    x21, 51f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    50b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_hw_no_ack
    b       umbra_l1g_fail
51: UMBRA_L1G_EXPECT x21, 59, umbra_l1g_msg_v1_hw_no_ack
    UMBRA_L1G_MOV64 x1, {l2_hw_lr}
    msr     s3_4_c12_c12_0, x1
    UMBRA_L1G_MOV64 x1, {l2_hw_vmcr}
    msr     s3_4_c12_c11_7, x1
    mov     x1, #1
    msr     s3_4_c12_c11_0, x1
    UMBRA_L1G_L2_AT umbra_l2g_hw
    isb
    eret
umbra_l1g_step_7b:
    // 7b: SPI 51 routed to vCPU 1 (parked in WFE, PSTATE.I masked: never
    // acknowledged) made pending: the kick lists it there. vCPU 1 then
    // turns off (PSCI CPU_OFF); once AFFINITY_INFO(1) says OFF, vCPU 0
    // routes SPI 51 to itself: it must come (it was never acknowledged,
    // so it is still pending in the distributor).
    UMBRA_L1G_SPI 51, 1
    UMBRA_L1G_TICKS_AHEAD 3
8:  mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    8b
    adr     x4, umbra_l1g_v1_off
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 7
9:  UMBRA_L1G_MOV64 x0, 0xc4000004
    mov     x1, #1
    mov     x2, #0
    hvc     #0
    cmp     x0, #1
    b.eq    10f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    9b
    mov     x11, x0
    adr     x10, umbra_l1g_msg_v1_not_off
    b       umbra_l1g_fail
10: UMBRA_L1G_MOV64 x1, {gicd}
    str     xzr, [x1, #(0x6000 + 8 * 51)]
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_spi_lost
    UMBRA_L1G_EXPECT x19, 51, umbra_l1g_msg_spi_lost
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_spi_lost_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_spi_handed_back
    UMBRA_L1G_PUTS umbra_l1g_msg_pass2
    // vCPU 1 is off: vCPU 0 turns itself off too (PSCI CPU_OFF), and hv
    // ends the run as at SYSTEM_OFF (L1's last running vCPU).
    UMBRA_L1G_MOV64 x0, 0x84000002
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_l1g_msg_last_cpu_off
    b       umbra_l1g_fail

// L2's `hvc #4` (step 3a), `hvc #5` (step 7f: it took and EOId vINTID
// 59, in x2), `hvc #6` (step 7f: vINTID 59 did not come) or `hvc #3`
// (its spin ended without SPI 49, step 5, or vCPU 1's SGI, step 6,
// taking it out).
umbra_l1g_lower_sync:
    mrs     x19, esr_el2
    mov     x11, x19
    UMBRA_L1G_MOV64 x1, 0x5a000004
    cmp     x19, x1
    b.eq    umbra_l1g_l2_sgi_back
    UMBRA_L1G_MOV64 x1, 0x5a000005
    cmp     x19, x1
    b.eq    umbra_l1g_l2_hw_back
    mov     x11, x2
    adr     x10, umbra_l1g_msg_l2_hw_intid
    UMBRA_L1G_MOV64 x1, 0x5a000006
    cmp     x19, x1
    b.eq    umbra_l1g_fail
    mov     x11, x19
    adr     x10, umbra_l1g_msg_unexpected
    UMBRA_L1G_MOV64 x1, 0x5a000003
    cmp     x19, x1
    b.ne    umbra_l1g_fail
    adr     x4, umbra_l1g_irqs
    ldr     x11, [x4]
    adr     x10, umbra_l1g_msg_eret_not_interrupted
    cbz     x11, umbra_l1g_fail
    adr     x10, umbra_l1g_msg_l2_not_interrupted
    b       umbra_l1g_fail

// 3a: L2's SGI 1 reached L1's GIC, which forwards it to vCPU 0: taken
// once; L1's virtual HCR_EL2 gets IMO again.
umbra_l1g_l2_sgi_back:
    UMBRA_L1G_MOV64 x1, {vhcr}
    msr     hcr_el2, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_no_l2_own_sgi
    UMBRA_L1G_EXPECT x19, 1, umbra_l1g_msg_l2_own_sgi_intid
    msr     s3_0_c12_c12_1, x19
    isb
    UMBRA_L1G_NOTHING_MORE umbra_l1g_msg_l2_own_sgi_twice
    UMBRA_L1G_PUTS umbra_l1g_msg_l2_own_sgi
    b       umbra_l1g_after_l2_sgi

// 7f: L2 took vINTID 59 (x2) of its HW = 1 entry and EOId it; L1 reads
// the entry back (HW, pINTID) with State 0b00, makes SPI 59 pending
// again and asks vCPU 1 for it: vCPU 1 takes it without ICV_DIR_EL1 (the
// deactivation reached its list register), deactivates it and publishes
// 0 (`gic-no-remote-hw-deactivate` fails there: its entry stays active).
umbra_l1g_l2_hw_back:
    adr     x9, umbra_l1_gic_image
    UMBRA_L1G_EXPECT x2, 59, umbra_l1g_msg_l2_hw_intid
    mrs     x21, s3_4_c12_c12_0
    UMBRA_L1G_EXPECT x21, ({l2_hw_lr} & ~(3 << 62)), umbra_l1g_msg_l2_hw_lr
    UMBRA_L1G_MOV64 x20, {gicd}
    mov     w1, #0x8000000
    str     w1, [x20, #0x204]
    adr     x4, umbra_l1g_v1_hw
    mov     x1, #2
    str     x1, [x4]
    dsb     sy
    sev
    UMBRA_L1G_TICKS_AHEAD 7
52: adr     x4, umbra_l1g_v1_hw_intid
    ldr     x21, [x4]
    cbz     x21, 53f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    52b
    mov     x11, x21
    adr     x10, umbra_l1g_msg_v1_hw_timeout
    b       umbra_l1g_fail
53: UMBRA_L1G_PUTS umbra_l1g_msg_v1_hw
    b       umbra_l1g_step_7b

// vCPU 1 (PSCI CPU_ON, x0 its context id): its own stack and interface,
// its redistributor checked and woken; waits for L2 to run on vCPU 0,
// sends it SGI 2, then takes SPI 50 by polling, parks, and turns
// off (PSCI CPU_OFF) when vCPU 0 says so (step 7b).
umbra_l1g_secondary:
    adr     x9, umbra_l1_gic_image
    add     x10, x9, #0xf0000
    mov     sp, x10
    adr     x1, umbra_l1g_vectors
    msr     vbar_el2, x1
    UMBRA_L1G_MOV64 x1, {vhcr}
    msr     hcr_el2, x1
    UMBRA_L1G_OWN_INTERFACE_ON
    UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x20, lsl #12
    ldr     x21, [x20, #8]
    UMBRA_L1G_EXPECT x21, 0x100000110, umbra_l1g_msg_gicr_typer1
    str     wzr, [x20, #0x14]
    ldr     w21, [x20, #0x14]
    and     x21, x21, #4
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_waker
    UMBRA_L1G_TICKS_AHEAD 9
1:  adr     x4, umbra_l2g_running
    ldr     x5, [x4]
    cbnz    x5, 2f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    1b
    mov     x11, x5
    adr     x10, umbra_l1g_msg_v1_no_l2
    b       umbra_l1g_fail
2:  UMBRA_L1G_MOV64 x1, 0x2000001
    msr     s3_0_c12_c11_5, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_v1_no_spi, 9
    msr     s3_0_c12_c12_1, x19
    isb
    adr     x4, umbra_l1g_v1_intid
    str     x19, [x4]
    adr     x4, umbra_l1g_v1_done
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
3:  wfe
    mrs     x1, s3_0_c12_c12_2
    adr     x4, umbra_l1g_v1_hppir
    str     x1, [x4]
    adr     x4, umbra_l1g_v1_check
    ldr     x5, [x4]
    cbnz    x5, 6f
    adr     x4, umbra_l1g_v1_ack
    ldr     x5, [x4]
    cbnz    x5, 12f
    adr     x4, umbra_l1g_v1_ppi
    ldr     x5, [x4]
    cbnz    x5, 14f
    adr     x4, umbra_l1g_v1_active
    ldr     x5, [x4]
    cmp     x5, #1
    b.eq    15f
    adr     x4, umbra_l1g_v1_hw
    ldr     x5, [x4]
    cmp     x5, #1
    b.eq    17f
    adr     x4, umbra_l1g_v1_off
    ldr     x5, [x4]
    cbz     x5, 3b
    UMBRA_L1G_MOV64 x0, 0x84000002
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_l1g_msg_v1_cpu_off
    b       umbra_l1g_fail
    // Step 7a's check: ICV_IAR1_EL1 polled for 1/16 s (after 1/64 s for
    // the kicks vCPU 0's stores sent to arrive): the first INTID it
    // returns, or 1023.
6:  str     xzr, [x4]
    UMBRA_L1G_TICKS_AHEAD 0
7:  mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    7b
    UMBRA_L1G_TICKS_AHEAD 2
8:  mrs     x19, s3_0_c12_c12_0
    cmp     x19, #1020
    b.lo    9f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    8b
9:  adr     x4, umbra_l1g_v1_checked_intid
    str     x19, [x4]
    adr     x4, umbra_l1g_v1_checked
    mov     x1, #1
    str     x1, [x4]
    dsb     sy
    b       3b
    // Step 7c: ICV_IAR1_EL1 polled (no exits) until SPI 56 comes; its
    // INTID published, then a spin without exits until vCPU 0 clears the
    // request; EOI (an exit: the EOI maintenance interrupt), 0 published.
12: UMBRA_L1G_POLL_IAR umbra_l1g_msg_v1_no_ack
    adr     x4, umbra_l1g_v1_acked
    str     x19, [x4]
    dsb     sy
13: adr     x4, umbra_l1g_v1_ack
    ldr     x5, [x4]
    cbnz    x5, 13b
    msr     s3_0_c12_c12_1, x19
    isb
    adr     x4, umbra_l1g_v1_acked
    str     xzr, [x4]
    dsb     sy
    b       3b
    // Step 7d: PPI 20, which vCPU 0 set active at this redistributor,
    // reads active here; deactivated (EOImode 1, ICV_DIR_EL1) it reads
    // inactive; the request cleared.
14: UMBRA_L1G_MOV64 x20, {gicr}
    add     x20, x20, #0x30, lsl #12
    ldr     w21, [x20, #0x300]
    UMBRA_L1G_EXPECT x21, 0x100000, umbra_l1g_msg_v1_ppi_own_reads
    mrs     x1, s3_0_c12_c12_4
    orr     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
    mov     x1, #20
    msr     s3_0_c12_c11_1, x1
    isb
    mrs     x1, s3_0_c12_c12_4
    bic     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
    ldr     w21, [x20, #0x300]
    UMBRA_L1G_EXPECT x21, 0, umbra_l1g_msg_v1_ppi_own_deactivated
    adr     x4, umbra_l1g_v1_ppi
    str     xzr, [x4]
    dsb     sy
    b       3b
    // Step 7e: with EOImode 1, SPI 58 taken and its priority dropped
    // (active in the LR), its INTID published; a spin without exits until
    // vCPU 0 cleared it active and made it pending again (request 2);
    // then it must come again (no ICV_DIR_EL1 here: the clear deactivated
    // it), dropped and deactivated, and 0 published.
15: mrs     x1, s3_0_c12_c12_4
    orr     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_v1_active_lost
    msr     s3_0_c12_c12_1, x19
    isb
    adr     x4, umbra_l1g_v1_active_intid
    str     x19, [x4]
    dsb     sy
16: adr     x4, umbra_l1g_v1_active
    ldr     x5, [x4]
    cmp     x5, #2
    b.ne    16b
    UMBRA_L1G_TAKE_DEACTIVATE 58, umbra_l1g_msg_v1_active_not_again
    adr     x4, umbra_l1g_v1_active
    str     xzr, [x4]
    adr     x4, umbra_l1g_v1_active_intid
    str     xzr, [x4]
    dsb     sy
    b       3b
    // Step 7f: with EOImode 1, SPI 59 taken and its priority dropped
    // (active in the LR), its INTID published; a spin without exits until
    // L2 on vCPU 0 deactivated it through an HW = 1 entry and vCPU 0 made
    // it pending again (request 2); then it must come again (no
    // ICV_DIR_EL1 here), dropped and deactivated, and 0 published.
17: mrs     x1, s3_0_c12_c12_4
    orr     x1, x1, #2
    msr     s3_0_c12_c12_4, x1
    isb
    UMBRA_L1G_POLL_IAR umbra_l1g_msg_v1_hw_lost
    msr     s3_0_c12_c12_1, x19
    isb
    adr     x4, umbra_l1g_v1_hw_intid
    str     x19, [x4]
    dsb     sy
18: adr     x4, umbra_l1g_v1_hw
    ldr     x5, [x4]
    cmp     x5, #2
    b.ne    18b
    UMBRA_L1G_TAKE_DEACTIVATE 59, umbra_l1g_msg_v1_hw_not_again
    adr     x4, umbra_l1g_v1_hw
    str     xzr, [x4]
    adr     x4, umbra_l1g_v1_hw_intid
    str     xzr, [x4]
    dsb     sy
    b       3b

.balign 8
umbra_l1g_two_vcpus:
    .quad   0
umbra_l1g_v1_done:
    .quad   0
umbra_l1g_v1_off:
    .quad   0
umbra_l1g_v1_intid:
    .quad   0
umbra_l1g_v1_hppir:
    .quad   0
umbra_l1g_v1_check:
    .quad   0
umbra_l1g_v1_checked:
    .quad   0
umbra_l1g_v1_checked_intid:
    .quad   0
umbra_l1g_v1_ack:
    .quad   0
umbra_l1g_v1_acked:
    .quad   0
umbra_l1g_v1_ppi:
    .quad   0
umbra_l1g_v1_active:
    .quad   0
umbra_l1g_v1_active_intid:
    .quad   0
umbra_l1g_v1_hw:
    .quad   0
umbra_l1g_v1_hw_intid:
    .quad   0
umbra_l1g_irqs:
    .quad   0
umbra_l1g_ticks:
    .quad   0
umbra_l1g_msg_enabled:   .asciz "L1 (gic): distributor on (GICD_CTLR ARE|EnableGrp1, DS), GICv3 (PIDR2), 160 INTIDs; redistributor 0 woken (GICR_WAKER), SGIs 1 and 2 enabled at priority 0x80\n"
umbra_l1g_msg_own_sgi:   .asciz "L1: the SGI it sent itself (ICC_SGI1R_EL1) came once: INTID 1\n"
umbra_l1g_msg_spi:       .asciz "L1: SPI 48 made pending through GICD_ISPENDR1 and routed to it (GICD_IROUTER) came once; GICD_ISPENDR1 then reads 0\n"
umbra_l1g_msg_l2_own_sgi: .asciz "L1: L2's SGI 1 to vCPU 0, a write L1 does not trap (no IMO, FMO or ICH_HCR_EL2.TC), reached L1's GIC and came once\n"
umbra_l1g_msg_no_l2_own_sgi: .asciz "L2's SGI write L1 does not trap did not reach L1's GIC: ICV_IAR1_EL1 "
umbra_l1g_msg_l2_own_sgi_intid: .asciz "L2's SGI 1 came to L1 as another INTID: "
umbra_l1g_msg_l2_own_sgi_twice: .asciz "an interrupt is pending after L1 took and EOId L2's SGI 1 (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_one_vcpu:  .asciz "L1 (gic): one vCPU (PSCI CPU_ON: hv has no CPU for a second)\n"
umbra_l1g_msg_eret:      .asciz "L1: SPI 49 pending at its ERET into L2 was taken before L2's first instruction: INTID 49 at VBAR_EL2 + 0x480, ELR_EL2 0x80000\n"
umbra_l1g_msg_enter:     .asciz "L1: L2 resumed; it spins while vCPU 1 sends vCPU 0 SGI 2\n"
umbra_l1g_msg_l2_sgi:    .asciz "L1: the SGI vCPU 1 sent while vCPU 0 ran L2 took L2 out: INTID 2 at VBAR_EL2 + 0x480; L2's pending vINTID 42 is still in ICH_LR0_EL2\n"
umbra_l1g_msg_l2_lr:     .asciz "L2's list register (ICH_LR0_EL2, VNCR page) changed when L1's SGI took L2 out: "
umbra_l1g_msg_routed:    .asciz "L1: SPI 50 routed to vCPU 1 (GICD_IROUTER affinity 1) reached vCPU 1 while it polled without exits, and not vCPU 0\n"
umbra_l1g_msg_pass:      .asciz "UMBRA-NESTED-PASS gic own-sgi=ok spi=ok l2-sgi=ok spi-at-eret=ok once=ok eoi-wait=ok withdraw=ok\n"
umbra_l1g_msg_pass2:     .asciz "UMBRA-NESTED-PASS gic own-sgi=ok spi=ok l2-sgi=ok spi-at-eret=ok once=ok eoi-wait=ok withdraw=ok sgi-into-l2=ok spi-route=ok recall=ok off-handback=ok vcpus=2\n"
umbra_l1g_msg_withdrawn: .asciz "L1: SGI 3 and SPI 52, listed and not acknowledged, read pending; SGI 3 cleared pending (GICR_ICPENDR0) was never taken; SPI 52 disabled (GICD_ICENABLER1, RWP) stayed pending and came once enabled again\n"
umbra_l1g_msg_sgi3_not_listed: .asciz "SGI 3 sent to itself is not pending in L1's interface (ICV_HPPIR1_EL1): "
umbra_l1g_msg_sgi3_ispendr: .asciz "GICR_ISPENDR0 does not read SGI 3, listed and not acknowledged, pending (only it): "
umbra_l1g_msg_sgi3_icpendr: .asciz "GICR_ICPENDR0 does not read SGI 3, listed and not acknowledged, pending (only it): "
umbra_l1g_msg_sgi3_cleared_reads: .asciz "GICR_ISPENDR0 still reads SGI 3 pending after GICR_ICPENDR0 cleared it: "
umbra_l1g_msg_sgi3_not_withdrawn: .asciz "SGI 3, cleared pending (GICR_ICPENDR0) while listed, not acknowledged, is still in L1's LRs: ICV_HPPIR1_EL1 "
umbra_l1g_msg_sgi3_taken: .asciz "an interrupt came after L1 cleared SGI 3 pending (GICR_ICPENDR0): ICV_IAR1_EL1 "
umbra_l1g_msg_spi52_not_listed: .asciz "SPI 52 made pending is not pending in L1's interface (ICV_HPPIR1_EL1): "
umbra_l1g_msg_spi52_ispendr: .asciz "GICD_ISPENDR1 does not read SPI 52, listed and not acknowledged, pending (only it): "
umbra_l1g_msg_spi52_rwp: .asciz "GICD_CTLR.RWP still reads 1 a while after L1 disabled SPI 52 (GICD_ICENABLER1): GICD_CTLR "
umbra_l1g_msg_spi52_disabled_reads: .asciz "GICD_ISPENDR1 does not read SPI 52 pending after L1 disabled it (a disabled interrupt stays pending): "
umbra_l1g_msg_spi52_not_withdrawn: .asciz "SPI 52, disabled (GICD_ICENABLER1, RWP 0) while listed, not acknowledged, is still in L1's LRs: ICV_HPPIR1_EL1 "
umbra_l1g_msg_spi52_taken_disabled: .asciz "an interrupt came while SPI 52 was disabled: ICV_IAR1_EL1 "
umbra_l1g_msg_spi52_lost: .asciz "SPI 52, disabled while listed and enabled again, did not come: ICV_IAR1_EL1 "
umbra_l1g_msg_spi52_still_pending: .asciz "GICD_ISPENDR1 still reads pending after L1 took SPI 52: "
umbra_l1g_msg_spi52_twice: .asciz "an interrupt is pending after L1 took and EOId SPI 52 (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_v1_withdrawn: .asciz "L1: SPIs 53-55 listed for vCPU 1 and not acknowledged read pending; 53 disabled (RWP) stayed pending, 53 and 54 cleared pending and 55 re-routed to vCPU 0 (taken there once) never came to vCPU 1\n"
umbra_l1g_msg_v1_not_listed: .asciz "vCPU 1's interface did not show SPI 53 pending (ICV_HPPIR1_EL1) within 64 TICKS: "
umbra_l1g_msg_v1_listed_ispendr: .asciz "GICD_ISPENDR1 does not read SPIs 53-55, listed for vCPU 1 and not acknowledged, pending (only them): "
umbra_l1g_msg_v1_rwp: .asciz "GICD_CTLR.RWP still reads 1 a while after L1 disabled SPI 53, listed for vCPU 1: GICD_CTLR "
umbra_l1g_msg_v1_disabled_ispendr: .asciz "GICD_ISPENDR1 does not read SPIs 53-55 pending after L1 disabled SPI 53: "
umbra_l1g_msg_v1_cleared_ispendr: .asciz "GICD_ISPENDR1 does not read only SPI 55 pending after L1 cleared 53 and 54 (GICD_ICPENDR1): "
umbra_l1g_msg_v1_rerouted_lost: .asciz "SPI 55, listed for vCPU 1 and not acknowledged, did not come to vCPU 0 after re-routing: ICV_IAR1_EL1 "
umbra_l1g_msg_v1_rerouted_twice: .asciz "an interrupt is pending after vCPU 0 took SPI 55 (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_v1_rerouted_ispendr: .asciz "GICD_ISPENDR1 does not read 0 after vCPU 0 took SPI 55: "
umbra_l1g_msg_v1_no_check: .asciz "vCPU 1 did not report its poll of ICV_IAR1_EL1 within 64 TICKS: "
umbra_l1g_msg_v1_took_withdrawn: .asciz "vCPU 1 took an interrupt after SPIs 53-55 were cleared pending or re-routed: ICV_IAR1_EL1 "
umbra_l1g_msg_reprio: .asciz "L1: SGI 3, listed at priority 0 and given 0xc0 (GICR_IPRIORITYR), was masked by priority mask 0x80 and taken at running priority 0xc0\n"
umbra_l1g_msg_reprio_masked: .asciz "SGI 3, listed at priority 0 and given 0xc0 (GICR_IPRIORITYR), was signalled above priority mask 0x80: ICV_IAR1_EL1 "
umbra_l1g_msg_reprio_lost: .asciz "SGI 3, given priority 0xc0 while listed, did not come with priority mask 0xff: ICV_IAR1_EL1 "
umbra_l1g_msg_reprio_rpr: .asciz "SGI 3, given priority 0xc0 while listed, was taken at another running priority: ICV_RPR_EL1 "
umbra_l1g_msg_reprio_twice: .asciz "an interrupt is pending after L1 took and EOId SGI 3 (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_v1_ack_read: .asciz "L1: SPI 56, acknowledged by vCPU 1 with no exit since, read not pending in GICD_ISPENDR1 from vCPU 0 (the load synced vCPU 1)\n"
umbra_l1g_msg_v1_no_ack: .asciz "vCPU 1 did not take SPI 56 routed to it within 64 TICKS: "
umbra_l1g_msg_v1_ack_intid: .asciz "vCPU 1 took another INTID than SPI 56 routed to it: "
umbra_l1g_msg_v1_acked_pending: .asciz "GICD_ISPENDR1 still reads SPI 56 pending after vCPU 1 acknowledged it (no exit of vCPU 1 since): "
umbra_l1g_msg_v1_no_ack_eoi: .asciz "vCPU 1 did not report its EOI of SPI 56 within 64 TICKS: "
umbra_l1g_msg_v1_active: .asciz "L1: SPI 58, taken by vCPU 1 (priority dropped), read active from vCPU 0 (GICD_ISACTIVER1); cleared there, vCPU 1 took it again without ICV_DIR_EL1\n"
umbra_l1g_msg_v1_active_no_ack: .asciz "vCPU 1 did not take SPI 58 routed to it (step 7e): its published INTID "
umbra_l1g_msg_v1_active_lost: .asciz "SPI 58 routed to vCPU 1 did not come there (step 7e): ICV_IAR1_EL1 "
umbra_l1g_msg_v1_active_reads: .asciz "GICD_ISACTIVER1, read from vCPU 0, does not read SPI 58, taken by vCPU 1 and not deactivated, active (only it): "
umbra_l1g_msg_v1_active_cleared_reads: .asciz "GICD_ISACTIVER1 still reads SPIs active after vCPU 0 cleared SPI 58 active (GICD_ICACTIVER1): "
umbra_l1g_msg_v1_hw: .asciz "L1: SPI 59, taken by vCPU 1 (priority dropped), deactivated by L2 on vCPU 0 through an HW = 1 LR, came to vCPU 1 again without ICV_DIR_EL1\n"
umbra_l1g_msg_v1_hw_no_ack: .asciz "vCPU 1 did not take SPI 59 routed to it (step 7f): its published INTID "
umbra_l1g_msg_v1_hw_lost: .asciz "SPI 59 routed to vCPU 1 did not come there (step 7f): ICV_IAR1_EL1 "
umbra_l1g_msg_v1_hw_not_again: .asciz "SPI 59, taken on vCPU 1 and deactivated by L2 on vCPU 0 (HW = 1 LR), did not come to vCPU 1 again: ICV_IAR1_EL1 "
umbra_l1g_msg_v1_hw_timeout: .asciz "vCPU 1 did not take SPI 59 again within 128 TICKS (step 7f): its published INTID "
umbra_l1g_msg_l2_hw_intid: .asciz "L2 did not take vINTID 59 of its HW = 1 list register (pINTID 59): ICV_IAR1_EL1 "
umbra_l1g_msg_l2_hw_lr: .asciz "the HW = 1 ICH_LR0_EL2 is not what L1 wrote with State 0b00 after L2's EOI: "
umbra_l1g_msg_v1_active_not_again: .asciz "SPI 58, cleared active by vCPU 0 (GICD_ICACTIVER1) while vCPU 1 held it active, made pending again, did not come again to vCPU 1: "
umbra_l1g_msg_v1_ppi: .asciz "L1: PPI 20 set active at vCPU 1's redistributor from vCPU 0 read active on both, reached vCPU 1's interface (ICV_DIR_EL1 there deactivated it) and then read inactive on both\n"
umbra_l1g_msg_v1_ppi_set_reads: .asciz "vCPU 1's GICR_ISACTIVER0 does not read PPI 20 active after vCPU 0 set it: "
umbra_l1g_msg_v1_ppi_no_report: .asciz "vCPU 1 did not report its check of PPI 20 within 64 TICKS: "
umbra_l1g_msg_v1_ppi_deactivated_reads: .asciz "vCPU 1's GICR_ISACTIVER0, read from vCPU 0, does not read PPI 20 inactive after vCPU 1 deactivated it: "
umbra_l1g_msg_v1_ppi_own_reads: .asciz "vCPU 1: its GICR_ISACTIVER0 does not read PPI 20 active after vCPU 0 set it there: "
umbra_l1g_msg_v1_ppi_own_deactivated: .asciz "vCPU 1: its GICR_ISACTIVER0 reads PPI 20 active after ICV_DIR_EL1 (the set did not reach its list registers): "
umbra_l1g_msg_ppi_wait: .asciz "L1: PPI 20 set active (GICR_ISACTIVER0) with every LR in use read active, took the LR its deactivation of SGI 4 freed, and read inactive after ICV_DIR_EL1\n"
umbra_l1g_msg_ppi_wait_set: .asciz "GICR_ISACTIVER0 does not read PPI 20 active, set while every list register was in use: "
umbra_l1g_msg_ppi_wait_freed: .asciz "GICR_ISACTIVER0 does not read PPI 20 active after an LR freed: "
umbra_l1g_msg_ppi_wait_not_placed: .asciz "GICR_ISACTIVER0 reads PPI 20 active after ICV_DIR_EL1 (it never got the freed LR): "
umbra_l1g_msg_ppi_wait_twice: .asciz "an interrupt is pending after L1 deactivated the SGIs of step 2e: ICV_IAR1_EL1 "
umbra_l1g_msg_nl:        .asciz "\n"
umbra_l1g_msg_fail:      .asciz "UMBRA-NESTED-FAIL: "
umbra_l1g_msg_el:        .asciz "CurrentEL is not 2: "
umbra_l1g_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1g_msg_pidr2:     .asciz "GICD_PIDR2.ArchRev is not 3 (GICv3): "
umbra_l1g_msg_ctlr:      .asciz "GICD_CTLR does not read ARE|EnableGrp1|DS after ARE|EnableGrp1: "
umbra_l1g_msg_typer:     .asciz "GICD_TYPER.ITLinesNumber is not 4: "
umbra_l1g_msg_gicr_typer0: .asciz "redistributor 0's GICR_TYPER affinity is not 0: "
umbra_l1g_msg_gicr_typer1: .asciz "vCPU 1: redistributor 1's GICR_TYPER is not affinity 1, Processor_Number 1, Last: "
umbra_l1g_msg_waker:     .asciz "GICR_WAKER.ChildrenAsleep is not 0 after ProcessorSleep = 0: "
umbra_l1g_msg_igroupr0:  .asciz "GICR_IGROUPR0 does not read all group 1: "
umbra_l1g_msg_isenabler0: .asciz "GICR_ISENABLER0 does not read SGIs 1 and 2 enabled: "
umbra_l1g_msg_no_own_sgi: .asciz "the SGI L1 sent itself did not come: ICV_IAR1_EL1 "
umbra_l1g_msg_own_sgi_intid: .asciz "the SGI L1 sent itself came as another INTID: "
umbra_l1g_msg_own_sgi_twice: .asciz "an interrupt is pending after L1 took and EOId its own SGI (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_waiting:   .asciz "L1: with EOImode 1 and every LR hv lists in active, the SGI waiting for a free LR came after L1 deactivated one (hv's EOI maintenance exit)\n"
umbra_l1g_msg_no_fill:   .asciz "one of the SGIs filling L1's list registers (EOImode 1) did not come: ICV_IAR1_EL1 "
umbra_l1g_msg_no_waiting: .asciz "the SGI waiting for a free list register did not come after L1 deactivated one (EOI maintenance exit): ICV_IAR1_EL1 "
umbra_l1g_msg_waiting_intid: .asciz "the SGI waiting for a free list register came as another INTID: "
umbra_l1g_msg_waiting_twice: .asciz "an interrupt is pending after L1 took and deactivated the SGIs of step 2b (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_masked_taken: .asciz "an SGI at priority 0xf0 came with L1's priority mask at 0x80: ICV_IAR1_EL1 "
umbra_l1g_msg_not_displaced: .asciz "SGI 15 (priority 0x10) did not come while SGIs L1 masks (0xf0) held every list register: ICV_IAR1_EL1 "
umbra_l1g_msg_displaced_lost: .asciz "the masked SGIs (bits 4 on) did not each come once L1 unmasked them: "
umbra_l1g_msg_displaced_twice: .asciz "an interrupt is pending after L1 took the masked SGIs of step 2f (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_active_sgi_lost: .asciz "SGI 1 sent to itself for step 2g did not come: ICV_IAR1_EL1 "
umbra_l1g_msg_active_sgi_again: .asciz "SGI 1, set active (GICR_ISACTIVER0) while L1 held it active and then EOId, did not come when sent again: ICV_IAR1_EL1 "
umbra_l1g_msg_active_sgi_reads: .asciz "GICR_ISACTIVER0 does not read SGI 1, taken and not EOId, active (only it, of the SGIs): "
umbra_l1g_msg_active_sgi_eoi_reads: .asciz "GICR_ISACTIVER0 still reads SGIs active after L1 EOId SGI 1: "
umbra_l1g_msg_active_sgi_twice: .asciz "an interrupt is pending after L1 took and EOId SGI 1 in step 2g: ICV_IAR1_EL1 "
umbra_l1g_msg_active_spi_lost: .asciz "SPI 57 made pending for step 2g did not come: ICV_IAR1_EL1 "
umbra_l1g_msg_active_spi_reads: .asciz "GICD_ISACTIVER1 does not read SPI 57, taken and not deactivated, active (only it): "
umbra_l1g_msg_active_spi_cleared_reads: .asciz "GICD_ISACTIVER1 still reads SPIs active after L1 cleared SPI 57 active (GICD_ICACTIVER1): "
umbra_l1g_msg_active_spi_again: .asciz "SPI 57, cleared active (GICD_ICACTIVER1) after L1 took it and made pending again, did not come: ICV_IAR1_EL1 "
umbra_l1g_msg_active_spi_twice: .asciz "an interrupt is pending after L1 took SPI 57 again and deactivated it: ICV_IAR1_EL1 "
umbra_l1g_msg_one_active: .asciz "L1: SGI 1 set active while active came again after its EOI; SPI 57 taken read active (GICD_ISACTIVER1), cleared there it came again without ICV_DIR_EL1\n"
umbra_l1g_msg_displaced: .asciz "L1: SGI 15 (0x10) came while SGIs it masks (0xf0) held every list register; each masked one came once unmasked\n"
umbra_l1g_msg_last_cpu_off: .asciz "vCPU 0's PSCI CPU_OFF, with vCPU 1 off, returned: "
umbra_l1g_msg_v1_cpu_off: .asciz "vCPU 1: PSCI CPU_OFF returned: "
umbra_l1g_msg_v1_not_off: .asciz "AFFINITY_INFO(1) did not say OFF after vCPU 1's CPU_OFF: "
umbra_l1g_msg_spi_lost:  .asciz "SPI 51, listed for vCPU 1 and not acknowledged before its CPU_OFF, did not come to vCPU 0 after re-routing: ICV_IAR1_EL1 "
umbra_l1g_msg_spi_lost_twice: .asciz "an interrupt is pending after L1 took SPI 51 (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_spi_handed_back: .asciz "L1: SPI 51, listed for vCPU 1 and not acknowledged before its CPU_OFF, came to vCPU 0 once re-routed\n"
umbra_l1g_msg_no_spi:    .asciz "SPI 48 made pending through GICD_ISPENDR1 did not come: ICV_IAR1_EL1 "
umbra_l1g_msg_spi_intid: .asciz "SPI 48 came as another INTID: "
umbra_l1g_msg_spi_still_pending: .asciz "GICD_ISPENDR1 still reads SPI 48 pending after L1 took it: "
umbra_l1g_msg_spi_twice: .asciz "an interrupt is pending after L1 took and EOId SPI 48 (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_cpu_on:    .asciz "PSCI CPU_ON for vCPU 1 failed: "
umbra_l1g_msg_eret_intid: .asciz "the IRQ at L1's ERET into L2 is not SPI 49: "
umbra_l1g_msg_eret_elr:  .asciz "SPI 49 pending at L1's ERET into L2 was not taken before L2's first instruction: ELR_EL2 "
umbra_l1g_msg_eret_twice: .asciz "an interrupt is pending after L1 took and EOId SPI 49 (delivered twice?): ICV_IAR1_EL1 "
umbra_l1g_msg_l2_sgi_intid: .asciz "the IRQ taking L2 out is not vCPU 1's SGI 2: "
umbra_l1g_msg_l2_sgi_elr: .asciz "the IRQ taking L2 out did not come from L2's payload page: ELR_EL2 "
umbra_l1g_msg_eret_not_interrupted: .asciz "SPI 49, pending at L1's ERET into L2, did not take L2 out before L2 spun two seconds: IRQs from L2 "
umbra_l1g_msg_l2_not_interrupted: .asciz "L2 spun two seconds without the SGI vCPU 1 sent taking it out to L1: IRQs from L2 "
umbra_l1g_msg_extra_irq: .asciz "an IRQ from L2 after the last step: INTID "
umbra_l1g_msg_v1_no_l2:  .asciz "vCPU 1: L2 on vCPU 0 did not start within 512 TICKS: flag "
umbra_l1g_msg_v1_no_spi: .asciz "vCPU 1: SPI 50 routed to it did not come while it polled: ICV_IAR1_EL1 "
umbra_l1g_msg_v1_timeout: .asciz "vCPU 1 did not take SPI 50 within 512 TICKS: its INTID "
umbra_l1g_msg_v1_spi:    .asciz "vCPU 1 took another INTID than SPI 50 routed to it: "
umbra_l1g_msg_routed_twice: .asciz "an interrupt is pending for vCPU 0 after SPI 50 went to vCPU 1 (routed wrong, or delivered twice?): ICV_IAR1_EL1 "

// L2 (at 0x80000, EL1h, stage 1 off, DAIF masked): at `umbra_l2g_sgi`
// (step 3a) sends SGI 1 to Aff0 0 and calls `hvc #4`; at `umbra_l2g_hw`
// (step 7f) takes and EOIs vINTID 59; from its start, sets a flag in its
// page (L1's `umbra_l2g_running`: vCPU 1 waits for it), then spins at
// most two seconds of its virtual count (then `hvc #3`: no IRQ took it
// out).
.balign 4096
umbra_l2g_payload:
    adr     x1, umbra_l2g_running
    mov     x2, #1
    str     x2, [x1]
    dsb     sy
    mrs     x6, cntvct_el0
    mrs     x7, cntfrq_el0
    add     x6, x6, x7, lsl #1
1:  mrs     x7, cntvct_el0
    cmp     x7, x6
    b.lo    1b
    hvc     #3
2:  b       2b
umbra_l2g_sgi:
    UMBRA_L1G_MOV64 x1, 0x1000001
    msr     s3_0_c12_c11_5, x1
    isb
    hvc     #4
3:  b       3b
// Step 7f: ICV_IAR1_EL1 polled for at most a second of its virtual count
// (PSTATE.I masked) for vINTID 59 of its HW = 1 entry, EOId (EOImode 0:
// deactivated), then `hvc #5` with the INTID in x2 (`hvc #6` if none
// came).
umbra_l2g_hw:
    mrs     x6, cntvct_el0
    mrs     x7, cntfrq_el0
    add     x6, x6, x7
4:  mrs     x2, s3_0_c12_c12_0
    cmp     x2, #1020
    b.lo    5f
    mrs     x7, cntvct_el0
    cmp     x7, x6
    b.lo    4b
    hvc     #6
5:  msr     s3_0_c12_c12_1, x2
    isb
    hvc     #5
6:  b       6b
.balign 8
umbra_l2g_running:
    .quad   0
.balign 4096
.global umbra_l1_gic_image_end
umbra_l1_gic_image_end:
.popsection
"#,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1_irq::L1_IRQ_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    gicd = const QEMU_VIRT_GICD,
    gicr = const QEMU_VIRT_GICR,
    l2_lr = const super::nested_l1_irq::LR_A,
    l2_hw_lr = const L2_HW_LR,
    l2_hw_vmcr = const L2_HW_VMCR,
    vhcr_no_imo = const super::nested_l1::L1_VIRTUAL_HCR,
);

assembled_image!(
    "The `gic` L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_gic_image,
    umbra_l1_gic_image_end
);
