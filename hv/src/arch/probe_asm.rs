//! Assembly the EL1 probes (`gic_active_probe`, `spi_view_probe`) share,
//! as a string fragment for their `global_asm!` templates, the way
//! `nested_l1_asm` serves the test guest hypervisors: it takes the
//! image's label prefix, so nothing is defined twice in one module-level
//! assembly, and uses only the numeric local labels 90-99, which no probe
//! uses.

/// The failure report and the console routines of a probe whose labels
/// start with `$labels` (QEMU virt's PL011 data register, 0x0900_0000):
/// - `<labels>_fail`: prints `<labels>_fail_msg`, the step in x20 (in
///   decimal, up to 19), `<labels>_value_msg`, w9 as 8 hex digits and a newline, then
///   calls PSCI SYSTEM_RESET;
/// - `<labels>_puts`: prints the NUL-terminated string at x1 (clobbers
///   x1-x3);
/// - `<labels>_putc`: prints the byte in x11 (clobbers x3).
///
/// The image defines `<labels>_fail_msg` and `<labels>_value_msg`.
#[rustfmt::skip] // one line per line of assembly, the prefix inline
macro_rules! probe_asm_report {
    ($labels:literal) => {
        concat!(
            $labels, r"_fail:
    adr     x1, ", $labels, r"_fail_msg
    bl      ", $labels, r"_puts
    cmp     x20, #10
    b.lo    91f
    mov     x11, #0x31
    bl      ", $labels, r"_putc
    sub     x20, x20, #10
91: add     x11, x20, #0x30
    bl      ", $labels, r"_putc
    adr     x1, ", $labels, r"_value_msg
    bl      ", $labels, r"_puts
    mov     x15, #28
90: lsr     x14, x9, x15
    and     x14, x14, #0xf
    cmp     x14, #10
    add     x11, x14, #0x30
    add     x14, x14, #0x57
    csel    x11, x14, x11, hs
    bl      ", $labels, r"_putc
    subs    x15, x15, #4
    b.ge    90b
    mov     x11, #10
    bl      ", $labels, r"_putc
    movz    x0, #0x8400, lsl #16
    movk    x0, #9                      // PSCI SYSTEM_RESET
    hvc     #0
    b       .

", $labels, r"_puts:
    movz    x3, #0x0900, lsl #16
91: ldrb    w2, [x1], #1
    cbz     w2, 92f
    strb    w2, [x3]
    b       91b
92: ret

", $labels, r"_putc:
    movz    x3, #0x0900, lsl #16
    strb    w11, [x3]
    ret
"
        )
    };
}

/// Turns this CPU's (virtual) GIC CPU interface on for a probe: the
/// system-register interface (ICC_SRE_EL1 SRE, DFB, DIB), every priority
/// unmasked (ICC_PMR_EL1 0xff), Group 1 enabled (ICC_IGRPEN1_EL1).
/// Clobbers x4.
macro_rules! probe_asm_cpu_interface_on {
    () => {
        r"
    mov     x4, #7                      // ICC_SRE_EL1: SRE, DFB, DIB
    msr     s3_0_c12_c12_5, x4
    isb
    mov     x4, #0xff                   // ICC_PMR_EL1
    msr     s3_0_c4_c6_0, x4
    mov     x4, #1                      // ICC_IGRPEN1_EL1
    msr     s3_0_c12_c12_7, x4
    isb
"
    };
}
