//! `hv.probe=gic-active`: a tiny EL1 guest that checks, on the machine,
//! the guest's view of the active state of its own SGIs and PPIs through
//! the trapped redistributor (`crate::vgic`: GICR_ISACTIVER0 places them
//! in list registers, PPIs with the HW bit). hv loads it instead of the
//! bundle's kernel and runs it through the ordinary guest exit path, with
//! its virtual GIC (QEMU virt: this vCPU's SGI frame at 0x080b_0000, the
//! PL011 at 0x0900_0000). With the MMU off (device accesses) it:
//! 1. enables its virtual CPU interface (ICC_SRE_EL1, EOImode 1, PMR,
//!    group 1);
//! 2. writes GICR_ISACTIVER0 with SGI 3 and PPI 23 (disabled, never
//!    signalled); GICR_ISACTIVER0 must read both active;
//! 3. deactivates both with ICC_DIR_EL1: GICR_ISACTIVER0 must read both
//!    inactive (PPI 23 physically too: its list register had the HW bit);
//! 4. makes them active again and clears them with GICR_ICACTIVER0: both
//!    inactive;
//! 5. writes GICD_ISACTIVER1 with SPI 33 (the PL011's, disabled: the probe
//!    polls the UART), routed to this vCPU: GICD_ISACTIVER1 must read it
//!    active (distributor at 0x0800_0000);
//! 6. deactivates it with ICC_DIR_EL1: GICD_ISACTIVER1 must read it
//!    inactive (its list register had the HW bit);
//! 7. makes it active again and clears it with GICD_ICACTIVER1: inactive;
//! 8. starts vCPU 1 (PSCI CPU_ON; it runs with interrupts masked, enables
//!    its timer PPI 27 and lets it expire, then spins: hv acknowledges
//!    the physical PPI and holds it pending in a list register of vCPU 1)
//!    and reads vCPU 1's GICR_ISPENDR0 (SGI frame at 0x080d_0000) until
//!    PPI 27 is pending;
//! 9. a moment later reads vCPU 1's GICR_ISACTIVER0: PPI 27 must be
//!    inactive, and still pending (vCPU 1's own view, which its CPU
//!    publishes: `vgic::PrivateView`; physically it is active, hv's
//!    acknowledgement, and pending, its level).
//!
//! It prints `UMBRA-GIC-ACTIVE-PASS` and calls PSCI SYSTEM_OFF, or
//! `UMBRA-GIC-ACTIVE-FAIL step N isactiver X` (X: the GICR_ISACTIVER0 or
//! GICD_ISACTIVER1 value read) and SYSTEM_RESET. Before the fixes SGI 3
//! never read active (step 2), a PPI made active stayed active for good
//! after the guest's ICC_DIR_EL1 (step 3), and so did an SPI (step 6,
//! review 27 R27-7: the set-active was only forwarded, no list register
//! held the SPI, and the guest's ICC_DIR_EL1 only counted in EOIcount),
//! and another vCPU's PPI read active while that vCPU's guest had it only
//! pending (step 9: the physical state).

use core::arch::global_asm;

global_asm!(
    r#"
.pushsection .rodata.umbra_gic_active_probe, "a"
.balign 4096
.global umbra_gic_active_probe
umbra_gic_active_probe:
    b       1f
    .word   0
    .quad   0
    .quad   umbra_gic_active_probe_end - umbra_gic_active_probe
    .quad   0xa
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .word   0
1:
    mov     x4, #7                      // ICC_SRE_EL1: SRE, DFB, DIB
    msr     s3_0_c12_c12_5, x4
    isb
    mov     x4, #2                      // ICC_CTLR_EL1.EOImode
    msr     s3_0_c12_c12_4, x4
    mov     x4, #0xff                   // ICC_PMR_EL1
    msr     s3_0_c4_c6_0, x4
    mov     x4, #1                      // ICC_IGRPEN1_EL1
    msr     s3_0_c12_c12_7, x4
    isb
    movz    x19, #0x080b, lsl #16       // this vCPU's SGI frame
    movz    w21, #0x0080, lsl #16
    orr     w21, w21, #8                // SGI 3 and PPI 23
    // 2. Made active.
    mov     x20, #2
    str     w21, [x19, #0x300]          // GICR_ISACTIVER0
    ldr     w9, [x19, #0x300]
    and     w10, w9, w21
    cmp     w10, w21
    b.ne    umbra_gic_active_probe_fail
    // 3. Deactivated by the guest's own ICC_DIR_EL1.
    mov     x20, #3
    mov     x4, #3
    msr     s3_0_c12_c11_1, x4          // ICC_DIR_EL1
    mov     x4, #23
    msr     s3_0_c12_c11_1, x4
    isb
    ldr     w9, [x19, #0x300]
    tst     w9, w21
    b.ne    umbra_gic_active_probe_fail
    // 4. Made active again, cleared by GICR_ICACTIVER0.
    mov     x20, #4
    str     w21, [x19, #0x300]
    ldr     w9, [x19, #0x300]
    and     w10, w9, w21
    cmp     w10, w21
    b.ne    umbra_gic_active_probe_fail
    str     w21, [x19, #0x380]          // GICR_ICACTIVER0
    ldr     w9, [x19, #0x300]
    tst     w9, w21
    b.ne    umbra_gic_active_probe_fail
    // 5. SPI 33 made active through the distributor.
    movz    x22, #0x0800, lsl #16       // the distributor
    mov     w23, #2                     // GICD_ISACTIVER1 bit 1: SPI 33
    mov     x20, #5
    str     w23, [x22, #0x304]          // GICD_ISACTIVER1
    ldr     w9, [x22, #0x304]
    tst     w9, w23
    b.eq    umbra_gic_active_probe_fail
    // 6. Deactivated by the guest's own ICC_DIR_EL1.
    mov     x20, #6
    mov     x4, #33
    msr     s3_0_c12_c11_1, x4          // ICC_DIR_EL1
    isb
    ldr     w9, [x22, #0x304]
    tst     w9, w23
    b.ne    umbra_gic_active_probe_fail
    // 7. Made active again, cleared by GICD_ICACTIVER1.
    mov     x20, #7
    str     w23, [x22, #0x304]
    ldr     w9, [x22, #0x304]
    tst     w9, w23
    b.eq    umbra_gic_active_probe_fail
    str     w23, [x22, #0x384]          // GICD_ICACTIVER1
    ldr     w9, [x22, #0x304]
    tst     w9, w23
    b.ne    umbra_gic_active_probe_fail
    // 8. vCPU 1 started; its timer PPI 27 fires (hv acknowledges it and
    // holds it pending in a list register; vCPU 1 never takes it), and
    // vCPU 0 reads vCPU 1's GICR_ISPENDR0 until it shows it pending.
    mov     x20, #8
    movz    x0, #0xc400, lsl #16
    movk    x0, #3                      // PSCI CPU_ON (SMC64)
    mov     x1, #1                      // MPIDR of vCPU 1
    adr     x2, umbra_gic_active_probe_secondary
    mov     x3, #0
    hvc     #0
    mov     x9, x0
    cbnz    x0, umbra_gic_active_probe_fail
    movz    x24, #0x080d, lsl #16       // vCPU 1's SGI frame
    mov     w25, #1 << 27
    movz    x26, #0x0100, lsl #16       // polls
5:  ldr     w9, [x24, #0x200]           // its GICR_ISPENDR0
    tst     w9, w25
    b.ne    6f
    subs    x26, x26, #1
    b.ne    5b
    b       umbra_gic_active_probe_fail
    // 9. Some time for hv to take it, then vCPU 1's GICR_ISACTIVER0:
    // inactive for vCPU 1's guest (hv's acknowledgement made it active
    // physically, which is what another vCPU's read showed before).
6:  mov     x20, #9
    movz    x26, #0x0010, lsl #16
7:  subs    x26, x26, #1
    b.ne    7b
    ldr     w9, [x24, #0x300]           // its GICR_ISACTIVER0
    tst     w9, w25
    b.ne    umbra_gic_active_probe_fail
    ldr     w9, [x24, #0x200]
    tst     w9, w25
    b.eq    umbra_gic_active_probe_fail
    adr     x1, umbra_gic_active_probe_pass_msg
    bl      umbra_gic_active_probe_puts
    movz    x0, #0x8400, lsl #16
    movk    x0, #8                      // PSCI SYSTEM_OFF
    hvc     #0
    b       .

// vCPU 1 (PSCI CPU_ON; interrupts masked, as PSCI enters): its virtual
// CPU interface on, its timer PPI 27 enabled and expired, then it spins
// (hv takes the physical PPI on its behalf; it never takes the virtual
// one).
umbra_gic_active_probe_secondary:
"#,
    probe_asm_cpu_interface_on!(),
    r#"
    movz    x5, #0x080d, lsl #16        // its SGI frame
    mov     w4, #1 << 27
    str     w4, [x5, #0x100]            // GICR_ISENABLER0
    msr     cntv_cval_el0, xzr
    mov     x4, #1                      // CNTV_CTL_EL0.ENABLE
    msr     cntv_ctl_el0, x4
    isb
8:  b       8b

"#,
    probe_asm_report!("umbra_gic_active_probe"),
    r#"
umbra_gic_active_probe_pass_msg:
    .asciz  "UMBRA-GIC-ACTIVE-PASS SGI 3 and PPI 23 made active, deactivated by ICC_DIR_EL1 and by GICR_ICACTIVER0; SPI 33 by ICC_DIR_EL1 and by GICD_ICACTIVER1; vCPU 1's PPI 27 read from vCPU 0 pending, not active\n"
umbra_gic_active_probe_fail_msg:
    .asciz  "UMBRA-GIC-ACTIVE-FAIL step "
umbra_gic_active_probe_value_msg:
    .asciz  " isactiver "
.balign 4096
.global umbra_gic_active_probe_end
umbra_gic_active_probe_end:
.popsection
"#
);

assembled_image!(
    "The probe's arm64 Image.",
    umbra_gic_active_probe,
    umbra_gic_active_probe_end
);
