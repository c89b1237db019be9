//! `hv.probe=spi-view`: a tiny EL1 guest that checks, on the machine, how
//! one vCPU sees an SPI hv holds for another (review 41 R41-1,
//! `vgic::begin_spi_read`), the case a Linux guest's `synchronize_irq`
//! (so `disable_irq`, `free_irq`) spins on: it polls GICD_ISACTIVER<n>
//! until the SPI reads inactive, while the vCPU that has it pending runs
//! with interrupts masked, waiting. hv loads it instead of the bundle's
//! kernel and runs it through the ordinary guest exit path, with its
//! virtual GIC (QEMU virt: the distributor at 0x0800_0000, the PL011 at
//! 0x0900_0000). SPI 100 (GICD_I*R3 bit 4; no device of QEMU virt drives
//! it) is made edge-triggered, routed to vCPU 1 and enabled. With the MMU
//! off (device accesses; the two vCPUs meet through a word of the image,
//! `flag`), vCPU 0:
//! 2. starts vCPU 1 (PSCI CPU_ON) and makes SPI 100 pending
//!    (GICD_ISPENDR3); vCPU 1, interrupts masked, sees it in
//!    ICC_HPPIR1_EL1 (hv acknowledged the physical SPI on its CPU and
//!    holds it pending in a list register: physically active) and sets
//!    `flag` to 1;
//! 3. waits for that;
//! 4. polls GICD_ISACTIVER3 until SPI 100 reads inactive, as
//!    `synchronize_irq` does (before the fix it read active for good: the
//!    physical state);
//! 5. GICD_ISPENDR3 must read it pending (vCPU 1's guest has it pending);
//! 6. writes GICD_ICACTIVER3: no effect on a pending SPI, it still reads
//!    pending and not active;
//! 7. writes GICD_ICPENDR3: it reads neither (hv withdrew it from vCPU
//!    1's list register before the write completed), and vCPU 1 sees it
//!    gone from ICC_HPPIR1_EL1 (`flag` 2);
//! 8. makes it pending again; vCPU 1 acknowledges it (ICC_IAR1_EL1,
//!    `flag` 3): it reads active and not pending;
//! 9. lets vCPU 1 end it (`flag` 4; its ICC_EOIR1_EL1, EOImode 0, `flag`
//!    5): it reads neither;
//! 10. makes it pending again (vCPU 1 sees it, `flag` 6) and writes
//!    GICD_ISPENDR3 once more while vCPU 1 has it pending in its list
//!    register (review 44 R44-4: no effect; it reads pending, not
//!    active), then lets vCPU 1 acknowledge and end it (`flag` 7): vCPU 1
//!    must not see it again (`flag` 8; 9 if it did: delivered twice, the
//!    write forwarded over hv's acknowledgement), and it reads neither.
//!
//! It prints `UMBRA-SPI-VIEW-PASS` and calls PSCI SYSTEM_OFF, or
//! `UMBRA-SPI-VIEW-FAIL step N value X` (X: the register or `flag` value
//! read) and SYSTEM_RESET. With `hv.probe=spi-view-no-view` hv reads such
//! an SPI in its physical state, as before the fix, and the probe fails at
//! step 4 with value 00000010; with `hv.probe=spi-view-no-set-pending`
//! hv forwards the second GICD_ISPENDR3 as before R44-4, and the probe
//! fails at step 10 with value 00000009.

use core::arch::global_asm;

global_asm!(
    r#"
// Fails the step unless SPI 100 reads `pending` (1 or 0) in GICD_ISPENDR3
// and `active` in GICD_ISACTIVER3 (w9: the register that did not).
.macro UMBRA_SPI_VIEW_EXPECT pending, active
    ldr     w9, [x22, #0x20c]           // GICD_ISPENDR3
    tst     w9, w23
    .if \pending
    b.eq    umbra_spi_view_probe_fail
    .else
    b.ne    umbra_spi_view_probe_fail
    .endif
    ldr     w9, [x22, #0x30c]           // GICD_ISACTIVER3
    tst     w9, w23
    .if \active
    b.eq    umbra_spi_view_probe_fail
    .else
    b.ne    umbra_spi_view_probe_fail
    .endif
.endm

.pushsection .rodata.umbra_spi_view_probe, "a"
.balign 4096
.global umbra_spi_view_probe
umbra_spi_view_probe:
    b       1f
    .word   0
    .quad   0
    .quad   umbra_spi_view_probe_end - umbra_spi_view_probe
    .quad   0xa
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .word   0
1:
"#,
    probe_asm_cpu_interface_on!(),
    r#"
    adr     x19, umbra_spi_view_probe_flag
    movz    x22, #0x0800, lsl #16       // the distributor
    mov     w23, #0x10                  // bit 4 of GICD_I*R3: SPI 100
    // SPI 100 edge-triggered (GICD_ICFGR6 bit 9), routed to vCPU 1
    // (GICD_IROUTER100, Aff0 1), enabled (GICD_ISENABLER3).
    mov     w4, #0x200
    str     w4, [x22, #0xc18]
    mov     x4, #1
    movz    x5, #0x6320
    str     x4, [x22, x5]
    str     w23, [x22, #0x10c]
    // 2. vCPU 1 started, SPI 100 pending.
    mov     x20, #2
    movz    x0, #0xc400, lsl #16
    movk    x0, #3                      // PSCI CPU_ON (SMC64)
    mov     x1, #1                      // MPIDR of vCPU 1
    adr     x2, umbra_spi_view_probe_secondary
    mov     x3, #0
    hvc     #0
    mov     x9, x0
    cbnz    x0, umbra_spi_view_probe_fail
    str     w23, [x22, #0x20c]          // GICD_ISPENDR3
    // 3. vCPU 1 has it pending in a list register.
    mov     x20, #3
    mov     x10, #1
    bl      umbra_spi_view_probe_wait_flag
    // 4. As synchronize_irq: GICD_ISACTIVER3 until it reads inactive.
    mov     x20, #4
    movz    x26, #0x0001, lsl #16       // polls
2:  ldr     w9, [x22, #0x30c]           // GICD_ISACTIVER3
    tst     w9, w23
    b.eq    3f
    subs    x26, x26, #1
    b.ne    2b
    b       umbra_spi_view_probe_fail
    // 5. Pending.
3:  mov     x20, #5
    UMBRA_SPI_VIEW_EXPECT 1, 0
    // 6. GICD_ICACTIVER3: still pending, not active.
    mov     x20, #6
    str     w23, [x22, #0x38c]          // GICD_ICACTIVER3
    UMBRA_SPI_VIEW_EXPECT 1, 0
    // 7. GICD_ICPENDR3: neither, and gone from vCPU 1's list register.
    mov     x20, #7
    str     w23, [x22, #0x28c]          // GICD_ICPENDR3
    UMBRA_SPI_VIEW_EXPECT 0, 0
    mov     x10, #2
    bl      umbra_spi_view_probe_wait_flag
    // 8. Pending again, acknowledged by vCPU 1: active, not pending.
    mov     x20, #8
    str     w23, [x22, #0x20c]          // GICD_ISPENDR3
    mov     x10, #3
    bl      umbra_spi_view_probe_wait_flag
    UMBRA_SPI_VIEW_EXPECT 0, 1
    // 9. Ended by vCPU 1's EOI: neither.
    mov     x20, #9
    mov     w4, #4
    str     w4, [x19]
    mov     x10, #5
    bl      umbra_spi_view_probe_wait_flag
    UMBRA_SPI_VIEW_EXPECT 0, 0
    // 10. Pending in vCPU 1's list register, GICD_ISPENDR3 again: no
    // effect, delivered once.
    mov     x20, #10
    str     w23, [x22, #0x20c]          // GICD_ISPENDR3
    mov     x10, #6
    bl      umbra_spi_view_probe_wait_flag
    str     w23, [x22, #0x20c]          // GICD_ISPENDR3, pending already
    UMBRA_SPI_VIEW_EXPECT 1, 0
    mov     w4, #7
    str     w4, [x19]
    movz    x26, #0x1000, lsl #16       // polls
12: ldr     w9, [x19]
    cmp     w9, #8
    b.eq    13f
    cmp     w9, #9
    b.eq    umbra_spi_view_probe_fail   // delivered twice
    subs    x26, x26, #1
    b.ne    12b
    b       umbra_spi_view_probe_fail
13: UMBRA_SPI_VIEW_EXPECT 0, 0
    adr     x1, umbra_spi_view_probe_pass_msg
    bl      umbra_spi_view_probe_puts
    movz    x0, #0x8400, lsl #16
    movk    x0, #8                      // PSCI SYSTEM_OFF
    hvc     #0
    b       .

// Waits (bounded) for `flag` to read x10; fails the step otherwise.
umbra_spi_view_probe_wait_flag:
    movz    x26, #0x1000, lsl #16       // polls
4:  ldr     w9, [x19]
    cmp     w9, w10
    b.eq    5f
    subs    x26, x26, #1
    b.ne    4b
    b       umbra_spi_view_probe_fail
5:  ret

// vCPU 1 (PSCI CPU_ON; interrupts masked, as PSCI enters, and never
// unmasked): its virtual CPU interface on (EOImode 0), then it follows
// SPI 100 in its list registers through ICC_HPPIR1_EL1 and reports each
// change in `flag`.
umbra_spi_view_probe_secondary:
"#,
    probe_asm_cpu_interface_on!(),
    r#"
    adr     x5, umbra_spi_view_probe_flag
    mov     x6, #100
    // Pending in a list register.
7:  mrs     x4, s3_0_c12_c12_2          // ICC_HPPIR1_EL1
    cmp     x4, x6
    b.ne    7b
    mov     w4, #1
    str     w4, [x5]
    // Withdrawn by vCPU 0's GICD_ICPENDR3.
8:  mrs     x4, s3_0_c12_c12_2
    cmp     x4, x6
    b.eq    8b
    mov     w4, #2
    str     w4, [x5]
    // Pending again: acknowledged.
9:  mrs     x4, s3_0_c12_c12_2
    cmp     x4, x6
    b.ne    9b
    mrs     x4, s3_0_c12_c12_0          // ICC_IAR1_EL1
    cmp     x4, x6
    b.ne    .
    mov     w4, #3
    str     w4, [x5]
    // Ended once vCPU 0 has seen it active.
10: ldr     w4, [x5]
    cmp     w4, #4
    b.ne    10b
    msr     s3_0_c12_c12_1, x6          // ICC_EOIR1_EL1
    isb
    mov     w4, #5
    str     w4, [x5]
    // Pending again.
14: mrs     x4, s3_0_c12_c12_2
    cmp     x4, x6
    b.ne    14b
    mov     w4, #6
    str     w4, [x5]
    // Once vCPU 0 wrote GICD_ISPENDR3 again: acknowledged and ended, then
    // watched for a second delivery (hv would take the physical SPI again
    // at once and list it).
15: ldr     w4, [x5]
    cmp     w4, #7
    b.ne    15b
    mrs     x4, s3_0_c12_c12_0          // ICC_IAR1_EL1
    cmp     x4, x6
    b.ne    .
    msr     s3_0_c12_c12_1, x6          // ICC_EOIR1_EL1
    isb
    movz    x7, #0x40, lsl #16          // polls
16: mrs     x4, s3_0_c12_c12_2
    cmp     x4, x6
    b.eq    17f
    subs    x7, x7, #1
    b.ne    16b
    mov     w4, #8
    str     w4, [x5]
11: b       11b
17: mov     w4, #9
    str     w4, [x5]
    b       11b

"#,
    probe_asm_report!("umbra_spi_view_probe"),
    r#"
umbra_spi_view_probe_pass_msg:
    .asciz  "UMBRA-SPI-VIEW-PASS SPI 100 held for vCPU 1 read from vCPU 0: pending, not active; after GICD_ICACTIVER3 the same; after GICD_ICPENDR3 neither, withdrawn; acknowledged, active; after its EOI, neither; GICD_ISPENDR3 while pending there: no effect, delivered once\n"
umbra_spi_view_probe_fail_msg:
    .asciz  "UMBRA-SPI-VIEW-FAIL step "
umbra_spi_view_probe_value_msg:
    .asciz  " value "
.balign 8
umbra_spi_view_probe_flag:
    .quad   0
.balign 4096
.global umbra_spi_view_probe_end
umbra_spi_view_probe_end:
.popsection
"#
);

assembled_image!(
    "The probe's arm64 Image.",
    umbra_spi_view_probe,
    umbra_spi_view_probe_end
);
