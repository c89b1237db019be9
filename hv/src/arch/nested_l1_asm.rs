//! Assembly the test guest hypervisors (`nested_l1`, `nested_l1_at`,
//! `nested_l1_fault_rate`, `nested_l1_irq`, `nested_l1_mmu`, `nested_l1_recycle`) share, as string fragments for
//! their `global_asm!` templates (`global_asm!` joins its template strings
//! with newlines, and each fragment here is a `concat!` of literals).
//!
//! Every image's `global_asm!` may end up in the same codegen unit, that
//! is the same LLVM module-level assembly, as another image's, so nothing
//! here may be defined twice: each fragment takes the image's prefixes,
//! `$macros` for assembler macro names (`"UMBRA_L1I"`) and `$labels` for
//! labels (`"umbra_l1i"`). The routines use only the numeric local labels
//! 90-99, which no image uses (an image's own `1b`/`1f` would otherwise bind
//! to a shared routine's label between the reference and its target).
//!
//! The labels a fragment reaches (`<labels>_puts`, `<labels>_fail`,
//! `<labels>_msg_nl`, ...) are the image's to define; each fragment says
//! which.

/// The assembler macros of every image, named `<macros>_<NAME>`:
/// - `MOV64 reg, val`: any 64-bit constant (movz + 3 movk);
/// - `PUTS label`: prints the string at `label` (clobbers x0, x1, x10);
/// - `HEX reg`: prints `reg` as 0x and 16 digits (clobbers x0, x1, x11, x15);
/// - `REPORT label, reg`: `PUTS label`, `HEX reg`, a newline;
/// - `EXPECT reg, val, msg`: fails with `msg` and `reg` unless `reg` equals
///   `val` (clobbers x3, x10, x11);
/// - `SAVE`/`RESTORE`: x0-x30 in a 256-byte frame on the stack (x0 at
///   `[sp]`, x`n` at `[sp, #8 * n]`);
/// - `VECTORS unexpected, cur_sync, cur_irq, low_sync, low_irq`: the 16
///   entries of a VBAR_EL2 table (to be placed 2 KiB aligned): the current
///   EL with SPx's synchronous and IRQ vectors, the lower AArch64 EL's
///   synchronous and IRQ vectors, every other one `unexpected`;
/// - `L2_STAGE2_TABLES [payload]`: zeroes the three stage-2 table pages at
///   x13 (level 1 root, level 2, level 3), links root entry 0 to level 2
///   and level-2 entry 0 to level 3, leaves x14 = the level-3 table; with
///   `payload`, maps L2 IPA 0x80000 to that label's page (leaf: OA | AF |
///   SH inner | S2AP RW | MemAttr Normal WB | page, 0x7ff) (clobbers x1,
///   x2);
/// - `L2_STAGE2_ON vtcr, vttbr_vmid, hcr`: after a `dsb ishst` (the tables
///   written), VTCR_EL2 = `vtcr`, VTTBR_EL2 = x13 | `vttbr_vmid`, HCR_EL2 =
///   `hcr` (clobbers x1, x2; no `isb`);
/// - `AT_L2_PAYLOAD`: ELR_EL2 = L2 IPA 0x80000, SPSR_EL2 = EL1h with DAIF
///   masked, for an ERET into the L2 payload (clobbers x1);
/// - `SYSTEM_OFF`: PSCI SYSTEM_OFF, never returns;
/// - `OWN_INTERFACE_ON`: L1's own interface (ICC_PMR_EL1 0xff,
///   ICC_IGRPEN1_EL1 1: its ICV_*, no trap) lets everything in, PSTATE.I
///   as it was (clobbers x1);
/// - `CPU_ON_VCPU1 entry`: PSCI CPU_ON for MPIDR 1 at `entry`, context
///   0: x0 = 0 (started) or -2 (INVALID_PARAMETERS: hv has no CPU for
///   it); any other result fails with `<labels>_msg_cpu_on` (clobbers
///   x0-x3, x10, x11);
/// - `TICKS_AHEAD shift`: x6 = the physical count 2^`shift` TICKS from
///   now, TICKS the word at `<labels>_ticks` (clobbers x4, x7);
/// - `POLL_IAR msg, shift=6`: polls L1's own ICV_IAR1_EL1 (no trap; with
///   PSTATE.I masked) until it gives an INTID, x19, at most 2^`shift`
///   TICKS (64: a second at TICKS = CNTFRQ_EL0 / 64), else fails with
///   `msg` and the last value read (clobbers x4-x7, x10, x11).
///
/// Uses `<labels>_puts`, `<labels>_hex`, `<labels>_fail`, `<labels>_msg_nl`.
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! l1_asm_macros {
    ($macros:literal, $labels:literal) => {
        concat!(
            ".macro ", $macros, r"_MOV64 reg, val
    movz    \reg, #((\val) & 0xffff)
    movk    \reg, #(((\val) >> 16) & 0xffff), lsl #16
    movk    \reg, #(((\val) >> 32) & 0xffff), lsl #32
    movk    \reg, #(((\val) >> 48) & 0xffff), lsl #48
.endm
.macro ", $macros, r"_PUTS label
    adr     x10, \label
    bl      ", $labels, r"_puts
.endm
.macro ", $macros, r"_HEX reg
    mov     x11, \reg
    bl      ", $labels, r"_hex
.endm
.macro ", $macros, r"_REPORT label, reg
    ", $macros, r"_PUTS \label
    ", $macros, r"_HEX \reg
    ", $macros, r"_PUTS ", $labels, r"_msg_nl
.endm
.macro ", $macros, r"_EXPECT reg, val, msg
    ", $macros, r"_MOV64 x3, \val
    mov     x11, \reg
    adr     x10, \msg
    cmp     \reg, x3
    b.ne    ", $labels, r"_fail
.endm
.macro ", $macros, r"_SAVE
    sub     sp, sp, #256
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
.endm
.macro ", $macros, r"_RESTORE
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #256
.endm
.macro ", $macros, r"_VECTOR target
    b       \target
    .balign 128
.endm
.macro ", $macros, r"_VECTORS unexpected, cur_sync, cur_irq, low_sync, low_irq
    // Current EL with SP0: sync, IRQ, FIQ, SError.
    .rept 4
    ", $macros, r"_VECTOR \unexpected
    .endr
    // Current EL with SPx.
    ", $macros, r"_VECTOR \cur_sync
    ", $macros, r"_VECTOR \cur_irq
    ", $macros, r"_VECTOR \unexpected
    ", $macros, r"_VECTOR \unexpected
    // Lower EL, AArch64.
    ", $macros, r"_VECTOR \low_sync
    ", $macros, r"_VECTOR \low_irq
    ", $macros, r"_VECTOR \unexpected
    ", $macros, r"_VECTOR \unexpected
    // Lower EL, AArch32.
    .rept 4
    ", $macros, r"_VECTOR \unexpected
    .endr
.endm
.macro ", $macros, r"_L2_STAGE2_TABLES payload
    mov     x2, #0
90: str     xzr, [x13, x2]
    add     x2, x2, #8
    cmp     x2, #0x3000
    b.lo    90b
    add     x1, x13, #0x1000
    orr     x1, x1, #3
    str     x1, [x13]
    add     x14, x13, #0x2000
    orr     x1, x14, #3
    str     x1, [x13, #0x1000]
.ifnb \payload
    adr     x1, \payload
    orr     x1, x1, #0x7ff
    str     x1, [x14, #0x80 * 8]
.endif
.endm
.macro ", $macros, r"_L2_STAGE2_ON vtcr, vttbr_vmid, hcr
    dsb     ishst
    ", $macros, r"_MOV64 x1, \vtcr
    msr     vtcr_el2, x1
    ", $macros, r"_MOV64 x2, \vttbr_vmid
    orr     x1, x13, x2
    msr     vttbr_el2, x1
    ", $macros, r"_MOV64 x1, \hcr
    msr     hcr_el2, x1
.endm
.macro ", $macros, r"_AT_L2_PAYLOAD
    mov     x1, #0x80000
    msr     elr_el2, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
.endm
.macro ", $macros, r"_SYSTEM_OFF
    ", $macros, r"_MOV64 x0, 0x84000008
    hvc     #0
    b       .
.endm
.macro ", $macros, r"_OWN_INTERFACE_ON
    mov     x1, #0xff
    msr     s3_0_c4_c6_0, x1
    mov     x1, #1
    msr     s3_0_c12_c12_7, x1
    isb
.endm
.macro ", $macros, r"_CPU_ON_VCPU1 entry
    ", $macros, r"_MOV64 x0, 0xc4000003
    mov     x1, #1
    adr     x2, \entry
    mov     x3, #0
    hvc     #0
    cbz     x0, 90f
    mov     x11, x0
    adr     x10, ", $labels, r"_msg_cpu_on
    cmn     x0, #2
    b.ne    ", $labels, r"_fail
90:
.endm
.macro ", $macros, r"_TICKS_AHEAD shift
    mrs     x6, cntpct_el0
    adr     x4, ", $labels, r"_ticks
    ldr     x7, [x4]
    add     x6, x6, x7, lsl #\shift
.endm
.macro ", $macros, r"_POLL_IAR msg, shift=6
    ", $macros, r"_TICKS_AHEAD \shift
90: mrs     x19, s3_0_c12_c12_0
    cmp     x19, #1020
    b.lo    91f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    90b
    mov     x11, x19
    adr     x10, \msg
    b       ", $labels, r"_fail
91:
.endm
"
        )
    };
}

/// The console routines, through hv's console call (`hvc #0` with x0 =
/// `{putc}`, the byte in x1; the image passes `putc` as a `const`
/// operand):
/// - `<labels>_puts`: prints the NUL-terminated string at x10 (clobbers
///   x0, x1, x10);
/// - `<labels>_hex`: prints x11 as 0x and 16 hex digits (clobbers x0, x1,
///   x15).
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! l1_asm_print {
    ($macros:literal, $labels:literal) => {
        concat!(
            $labels, r"_puts:
    ldrb    w1, [x10], #1
    cbz     w1, 90f
    ", $macros, r"_MOV64 x0, {putc}
    hvc     #0
    b       ", $labels, r"_puts
90: ret

", $labels, r"_hex:
    ", $macros, r"_MOV64 x0, {putc}
    mov     x1, #'0'
    hvc     #0
    ", $macros, r"_MOV64 x0, {putc}
    mov     x1, #'x'
    hvc     #0
    mov     x15, #60
91: lsr     x1, x11, x15
    and     x1, x1, #0xf
    cmp     x1, #10
    b.lo    92f
    add     x1, x1, #('a' - '0' - 10)
92: add     x1, x1, #'0'
    ", $macros, r"_MOV64 x0, {putc}
    hvc     #0
    subs    x15, x15, #4
    b.ge    91b
    ret
"
        )
    };
}

/// `<labels>_fail`: prints `<labels>_msg_fail` (the FAIL sentinel), the
/// message at x10 and the value x11, a newline, then calls PSCI
/// SYSTEM_RESET.
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! l1_asm_fail {
    ($macros:literal, $labels:literal) => {
        concat!(
            $labels, r"_fail:
    mov     x16, x10
    mov     x17, x11
    ", $macros, r"_PUTS ", $labels, r"_msg_fail
    mov     x10, x16
    bl      ", $labels, r"_puts
    ", $macros, r"_HEX x17
    ", $macros, r"_PUTS ", $labels, r"_msg_nl
    ", $macros, r"_MOV64 x0, 0x84000009
    hvc     #0
    b       .
"
        )
    };
}

/// `<labels>_dabt`: L1's handling of L2's stage-2 data abort (ESR_EL2 in
/// x19, x9 the image's L1 IPA, x14 L2's level-3 table, the exception
/// frame of `SAVE` on the stack): prints the faulting IPA (HPFAR_EL2 with
/// FAR_EL2's page offset) and ESR_EL2, accepts only the first translation
/// fault (DFSC 0b0001xx) on L2 IPA 0x101000, which it maps to page B (+0x301000)
/// with TLBI IPAS2E1IS + VMALLE1IS, counts it in `<labels>_faults` and
/// resumes L2 at `<labels>_resume` to retry the load. Messages:
/// `<labels>_msg_{fault,esr,bad_fault,bad_faults,mapped}`.
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! l1_asm_demand_fault {
    ($macros:literal, $labels:literal) => {
        concat!(
            $labels, r"_dabt:
    mrs     x22, hpfar_el2
    mrs     x23, far_el2
    ubfx    x24, x22, #4, #40
    lsl     x24, x24, #12
    and     x25, x23, #0xfff
    orr     x24, x24, x25
    ", $macros, r"_PUTS ", $labels, r"_msg_fault
    ", $macros, r"_HEX x24
    ", $macros, r"_REPORT ", $labels, r"_msg_esr, x19
    // Only L2's load from 0x101000, a translation fault (DFSC 0b0001xx).
    bic     x25, x24, #0xfff
    ", $macros, r"_MOV64 x26, 0x101000
    mov     x11, x24
    adr     x10, ", $labels, r"_msg_bad_fault
    cmp     x25, x26
    b.ne    ", $labels, r"_fail
    and     x26, x19, #0x3c
    mov     x11, x19
    cmp     x26, #0x4
    b.ne    ", $labels, r"_fail
    adr     x4, ", $labels, r"_faults
    ldr     x5, [x4]
    add     x5, x5, #1
    str     x5, [x4]
    mov     x11, x5
    adr     x10, ", $labels, r"_msg_bad_faults
    cmp     x5, #1
    b.ne    ", $labels, r"_fail
    add     x1, x9, #0x301000
    orr     x1, x1, #0x7ff
    str     x1, [x14, #0x101 * 8]
    dsb     ishst
    mov     x1, #0x101
    tlbi    ipas2e1is, x1
    dsb     ish
    tlbi    vmalle1is
    dsb     ish
    isb
    ", $macros, r"_PUTS ", $labels, r"_msg_mapped
    b       ", $labels, r"_resume
"
        )
    };
}

/// `<labels>_vectors`: the image's VBAR_EL2 table (2 KiB aligned; the
/// `VECTORS` macro's entries: `$cur_sync`, `$cur_irq`, `$low_sync`,
/// `$low_irq`, every other one `<labels>_unexpected`), then
/// `<labels>_unexpected`, which fails with `<labels>_msg_unexpected` and
/// ESR_EL2.
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! l1_asm_vectors {
    (
        $macros:literal,
        $labels:literal,
        $cur_sync:literal,
        $cur_irq:literal,
        $low_sync:literal,
        $low_irq:literal $(,)?
    ) => {
        concat!(
            r"
.balign 2048
", $labels, r"_vectors:
    ", $macros, r"_VECTORS ", $labels, r"_unexpected, ", $cur_sync, ", ", $cur_irq, ", ", $low_sync, ", ", $low_irq, r"

", $labels, r"_unexpected:
    mrs     x11, esr_el2
    adr     x10, ", $labels, r"_msg_unexpected
    b       ", $labels, r"_fail
"
        )
    };
}
