//! `hv.probe=walk-abort`: a tiny EL1 guest that checks, on the machine,
//! the external abort hv injects for a stage-1 table walk that reads an
//! IPA with nothing behind it (`crate::s1walk`, `inject::external_walk_abort_syndrome`).
//! hv loads it instead of the bundle's kernel (a Linux guest cannot build
//! such a table from user space) and runs it through the ordinary guest
//! exit path.
//!
//! The probe (an arm64 Image, position independent) builds its own
//! stage 1: TTBR0 maps its RAM (a 1 GiB block around its own address) and
//! the first GiB as Device (the PL011 at 0x0900_0000 of QEMU virt, where
//! it prints); TTBR1's level-0 table points, for VA 0xffff_0000_0000_0000,
//! at a level-1 table at IPA 0x1000_0000, which nothing backs (QEMU virt's
//! PCIe window, not the guest's). Then, with its MMU on:
//! 1. a load from 0xffff_0000_0000_0000 must take a data abort with
//!    ESR_EL1 0x96000015 (EC 0x25, IL, DFSC 0x15: external abort on the
//!    walk, level 1) and FAR_EL1 that VA;
//! 2. a branch to 0xffff_0000_0000_1000 an instruction abort with ESR_EL1
//!    0x86000015 (EC 0x21, IFSC 0x15) and FAR_EL1 that VA;
//! 3. with TTBR1 itself at IPA 0x1000_0000, the load again, now 0x96000014
//!    (level 0).
//!
//! The tables are the probe's own zeroed pages (`umbra_walk_abort_probe_tables`).
//! It prints `UMBRA-WALK-ABORT-PASS` and calls PSCI SYSTEM_OFF, or
//! `UMBRA-WALK-ABORT-FAIL stage N esr X far Y` and SYSTEM_RESET. Before
//! the fix hv injected DFSC/IFSC 0x10 (and the probe fails at stage 1).

use core::arch::global_asm;

global_asm!(
    r#"
.pushsection .rodata.umbra_walk_abort_probe, "a"
.balign 4096
.global umbra_walk_abort_probe
umbra_walk_abort_probe:
    // arm64 Image header: code0, code1, text_offset, image_size, flags
    // (little-endian, 4 KiB pages, anywhere), res2-4, magic, res5.
    b       1f
    .word   0
    .quad   0
    .quad   umbra_walk_abort_probe_end - umbra_walk_abort_probe
    .quad   0xa
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .word   0
1:
    adr     x19, umbra_walk_abort_probe
    adr     x1, umbra_walk_abort_probe_tables           // TTBR0 level 0
    add     x2, x1, #0x1000                             // TTBR0 level 1
    add     x3, x1, #0x2000                             // TTBR1 level 0
    orr     x4, x2, #3
    str     x4, [x1]                    // L0[0]: the level-1 table
    mov     x4, #0x401                  // AF, block; AttrIndx 0 (Device)
    str     x4, [x2]                    // L1[0]: the first GiB, Device
    lsr     x5, x19, #30
    and     x5, x5, #0x1ff
    lsl     x6, x5, #30
    mov     x4, #0x705                  // AF, inner shareable, AttrIndx 1, block
    orr     x4, x4, x6
    str     x4, [x2, x5, lsl #3]        // the GiB holding the probe, Normal
    movz    x4, #0x1000, lsl #16
    orr     x4, x4, #3
    str     x4, [x3]                    // TTBR1 L0[0]: a table at IPA 0x1000_0000
    dsb     sy
    mov     x4, #0xff00                 // MAIR: attr0 Device-nGnRnE, attr1 Normal WB
    msr     mair_el1, x4
    // TCR_EL1: T0SZ = T1SZ = 16, TG0 4K, TG1 4K, IPS 48 bits, walks
    // non-cacheable.
    movz    x4, #0x0010
    movk    x4, #0x8010, lsl #16
    movk    x4, #0x5, lsl #32
    msr     tcr_el1, x4
    msr     ttbr0_el1, x1
    msr     ttbr1_el1, x3
    adr     x4, umbra_walk_abort_probe_vectors
    msr     vbar_el1, x4
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    movz    x4, #0x0801                 // SCTLR_EL1: RES1 bits and M
    movk    x4, #0x30d0, lsl #16
    msr     sctlr_el1, x4
    isb
    movz    x21, #0xffff, lsl #48
    add     x22, x21, #0x1000
    mov     x20, #1
    ldr     x0, [x21]
    b       umbra_walk_abort_probe_fail
umbra_walk_abort_probe_stage2:
    mov     x20, #2
    br      x22
umbra_walk_abort_probe_stage3:
    mov     x20, #3
    movz    x4, #0x1000, lsl #16
    msr     ttbr1_el1, x4
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x0, [x21]
    b       umbra_walk_abort_probe_fail

umbra_walk_abort_probe_pass:
    adr     x1, umbra_walk_abort_probe_pass_msg
    bl      umbra_walk_abort_probe_puts
    movz    x0, #0x8400, lsl #16
    movk    x0, #8                      // PSCI SYSTEM_OFF
    hvc     #0
    b       .

umbra_walk_abort_probe_fail:
    mrs     x9, esr_el1
    mrs     x10, far_el1
umbra_walk_abort_probe_fail_with:
    adr     x1, umbra_walk_abort_probe_fail_msg
    bl      umbra_walk_abort_probe_puts
    add     x11, x20, #0x30
    bl      umbra_walk_abort_probe_putc
    adr     x1, umbra_walk_abort_probe_esr_msg
    bl      umbra_walk_abort_probe_puts
    mov     x12, x9
    bl      umbra_walk_abort_probe_hex
    adr     x1, umbra_walk_abort_probe_far_msg
    bl      umbra_walk_abort_probe_puts
    mov     x12, x10
    bl      umbra_walk_abort_probe_hex
    mov     x11, #10
    bl      umbra_walk_abort_probe_putc
    movz    x0, #0x8400, lsl #16
    movk    x0, #9                      // PSCI SYSTEM_RESET
    hvc     #0
    b       .

// The synchronous exception of each stage: ESR_EL1 and FAR_EL1 checked.
umbra_walk_abort_probe_sync:
    mrs     x9, esr_el1
    mrs     x10, far_el1
    cmp     x20, #2
    b.eq    2f
    b.hi    3f
    movz    x11, #0x0015
    movk    x11, #0x9600, lsl #16
    cmp     x9, x11
    b.ne    umbra_walk_abort_probe_fail_with
    cmp     x10, x21
    b.ne    umbra_walk_abort_probe_fail_with
    adr     x11, umbra_walk_abort_probe_stage2
    msr     elr_el1, x11
    eret
2:  movz    x11, #0x0015
    movk    x11, #0x8600, lsl #16
    cmp     x9, x11
    b.ne    umbra_walk_abort_probe_fail_with
    cmp     x10, x22
    b.ne    umbra_walk_abort_probe_fail_with
    adr     x11, umbra_walk_abort_probe_stage3
    msr     elr_el1, x11
    eret
3:  movz    x11, #0x0014
    movk    x11, #0x9600, lsl #16
    cmp     x9, x11
    b.ne    umbra_walk_abort_probe_fail_with
    cmp     x10, x21
    b.ne    umbra_walk_abort_probe_fail_with
    b       umbra_walk_abort_probe_pass

// x1: a NUL-terminated string to the PL011 data register.
umbra_walk_abort_probe_puts:
    movz    x3, #0x0900, lsl #16
4:  ldrb    w2, [x1], #1
    cbz     w2, 5f
    strb    w2, [x3]
    b       4b
5:  ret

// x11: one byte.
umbra_walk_abort_probe_putc:
    movz    x3, #0x0900, lsl #16
    strb    w11, [x3]
    ret

// x12 in hex, 16 digits (uses x11, x13, x14; returns through x15).
umbra_walk_abort_probe_hex:
    mov     x15, x30
    mov     x13, #60
6:  lsr     x14, x12, x13
    and     x14, x14, #0xf
    cmp     x14, #10
    add     x11, x14, #0x30
    add     x14, x14, #0x57
    csel    x11, x14, x11, hs
    bl      umbra_walk_abort_probe_putc
    subs    x13, x13, #4
    b.ge    6b
    mov     x30, x15
    ret

umbra_walk_abort_probe_pass_msg:
    .asciz  "UMBRA-WALK-ABORT-PASS data level 1, fetch level 1, data level 0\n"
umbra_walk_abort_probe_fail_msg:
    .asciz  "UMBRA-WALK-ABORT-FAIL stage "
umbra_walk_abort_probe_esr_msg:
    .asciz  " esr "
umbra_walk_abort_probe_far_msg:
    .asciz  " far "

// EL1 vectors: only the current-EL SPx synchronous entry (0x200) is
// expected.
.balign 2048
umbra_walk_abort_probe_vectors:
    .rept 4
    b       umbra_walk_abort_probe_fail
    .balign 0x80
    .endr
    b       umbra_walk_abort_probe_sync
    .balign 0x80
    .rept 11
    b       umbra_walk_abort_probe_fail
    .balign 0x80
    .endr
// The three translation tables, zero until the probe fills them.
.balign 4096
umbra_walk_abort_probe_tables:
    .zero   3 * 4096
.global umbra_walk_abort_probe_end
umbra_walk_abort_probe_end:
.popsection
"#
);

assembled_image!(
    "The probe's arm64 Image (header, code, its zeroed tables).",
    umbra_walk_abort_probe,
    umbra_walk_abort_probe_end
);
