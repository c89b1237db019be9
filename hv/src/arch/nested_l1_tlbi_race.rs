//! The tlbi-race guest hypervisor (`hv.nested=tlbi-race`, three CPUs:
//! L1's two vCPUs and the service) and its L2, assembled into hv's
//! read-only data and copied into L1's memory as the demo's are
//! (`arch::nested_l1`). L1's vCPU 0 remaps two L2 pages generation after
//! generation with break-before-make and a TLBI of each stage-2 form in
//! turn while vCPU 1's L2 reads them (`crate::nested::tlbi_race` has the
//! forms, the values and hv's verdict).
//!
//! L1's RAM (6 MiB from `L1_BASE`, MMU off): its image (code, the L2
//! payload page with the `published`/`seen` words), then at
//! [`TABLES_OFFSET`] L2's stage 2 (root, level 2, level 3), then at
//! [`DATA_OFFSET`] the data pages: generation g's page i at
//! `DATA_OFFSET + (g * X_PAGES + i) * 4 KiB`, word 0 `value(g, i)`,
//! never reused (so a read tells which generation's mapping it used).
//!
//! vCPU 0: writes generation 0's pages and L2's stage 2 (payload page at
//! L2 IPA 0x80000, L2 page `X_IPA + i * 4 KiB` to generation 0's page i),
//! sets its own VTTBR_EL2 to L2's VMID and root (its TLBIs act on the VMID
//! there), starts vCPU 1 (PSCI CPU_ON; without a CPU for it L1 fails), waits for
//! L2's first read of both pages, calls hv's BEGIN, then for g = 1 to
//! `GENERATIONS`: writes `value(g, i)` into generation g's pages (DC
//! CIVAC, DSB), breaks both leaves (invalid, DSB ISH), TLBI of the
//! generation's form (`TlbiForm::of_generation`), DSB ISH, TLBI
//! VMALLE1IS, DSB ISH (the Arm ARM's sequence for a stage-2 change: the
//! combined entries too; VMALLS12E1IS covers them itself), makes the new leaves, DSB ISH, publishes g
//! (STLR), and waits (5 s at most) until L2 has read both pages in an
//! iteration that began after it saw g. Then it publishes `STOP`, waits
//! for vCPU 1's report and calls hv's END with the counts; hv checks them
//! and L1 prints its PASS line.
//!
//! vCPU 1 runs L2. A stage-2 fault of L2's (a read inside a break: L1's
//! leaf invalid) comes to its vector: it must be a level-3 translation
//! fault on one of the pages; L1 counts it and resumes L2, which runs the
//! load again. L2's `hvc #1` at `STOP` carries its counts; L1 stores them
//! for vCPU 0 and turns itself off (CPU_OFF).
//!
//! Registers: L2 uses x0-x8 and x18-x24 (and x30 for its check routine);
//! vCPU 1's fault handler only x25-x28, so L2's state survives it.

use crate::nested::tlbi_race::{GENERATIONS, STOP, VALUE_MAGIC, X_IPA, X_PAGES};
use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_LTR", "umbra_ltr"),
    r#"
.pushsection .rodata.umbra_ltr, "a"
.balign 4096
.global umbra_ltr_image
umbra_ltr_image:
    adr     x9, umbra_ltr_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x11, CurrentEL
    adr     x10, umbra_ltr_msg_fail_el
    cmp     x11, #8
    b.ne    umbra_ltr_fail
    adr     x1, umbra_ltr_vectors
    msr     vbar_el2, x1
    isb
    // The range forms need FEAT_TLBIRANGE (ID_AA64ISAR0_EL1.TLB 0b0010).
    mrs     x11, id_aa64isar0_el1
    ubfx    x11, x11, #56, #4
    adr     x10, umbra_ltr_msg_no_range
    cmp     x11, #2
    b.lo    umbra_ltr_fail
    // Generation 0's pages.
    add     x12, x9, #{data_offset}
    UMBRA_LTR_MOV64 x3, ({magic} << 48)
    str     x3, [x12]
    orr     x2, x3, #1
    str     x2, [x12, #0x1000]
    // L2's stage 2: its payload page at 0x80000, the pages at X_IPA.
    add     x13, x9, #{tables_offset}
    UMBRA_LTR_L2_STAGE2_TABLES umbra_ltr_l2
    orr     x1, x12, #0x7ff
    str     x1, [x14, #{x_entry}]
    add     x1, x12, #0x1000
    orr     x1, x1, #0x7ff
    str     x1, [x14, #({x_entry} + 8)]
    dsb     ish
    // A stage-2 TLBI acts on the VMID in the issuing PE's VTTBR_EL2: vCPU
    // 0 must name L2's (VMID 5) and its stage 2, as vCPU 1 does to run it
    // (without this, hv rightly invalidates VMID 0's entries and L2 keeps
    // reading generation 0).
    UMBRA_LTR_MOV64 x1, {vtcr}
    msr     vtcr_el2, x1
    UMBRA_LTR_MOV64 x2, {vmid_shifted}
    orr     x1, x13, x2
    msr     vttbr_el2, x1
    isb
    UMBRA_LTR_PUTS umbra_ltr_msg_start
    UMBRA_LTR_CPU_ON_VCPU1 umbra_ltr_secondary
    mov     x11, x0
    adr     x10, umbra_ltr_msg_one_vcpu
    cbnz    x0, umbra_ltr_fail
    mov     x20, #0
    bl      umbra_ltr_wait_seen
    UMBRA_LTR_MOV64 x0, {begin}
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_ltr_msg_refused
    cbnz    x0, umbra_ltr_fail
    // x20 the generation, x27 the stage-2 TLBIs issued, x15 the
    // generation's first page.
    mov     x27, #0
    mov     x20, #1
1:  add     x15, x12, x20, lsl #13
    UMBRA_LTR_MOV64 x3, ({magic} << 48)
    orr     x3, x3, x20, lsl #8
    str     x3, [x15]
    orr     x2, x3, #1
    str     x2, [x15, #0x1000]
    // L2 reads the pages cacheable (its HCR_EL2.DC), L1 wrote them with
    // its MMU off: no line of theirs may be left in a cache.
    dc      civac, x15
    add     x1, x15, #0x1000
    dc      civac, x1
    dsb     ish
    // Break.
    str     xzr, [x14, #{x_entry}]
    str     xzr, [x14, #({x_entry} + 8)]
    dsb     ish
    // The generation's form: ALL[g % 5].
    mov     x1, #{forms}
    udiv    x2, x20, x1
    msub    x2, x2, x1, x20
    cbz     x2, 2f
    cmp     x2, #1
    b.eq    3f
    cmp     x2, #2
    b.eq    4f
    cmp     x2, #3
    b.eq    5f
    // RIPAS2LE1IS of both pages: TG 4 KiB, SCALE 0, NUM 0 (2 pages), TTL
    // 0 (no hint), BaseADDR the first page.
    UMBRA_LTR_MOV64 x1, ((1 << 46) | ({x_ipa} >> 12))
    sys     #4, c8, c0, #6, x1
    add     x27, x27, #1
    b       6f
    // VMALLS12E1IS: the VMID's stage-1 and combined entries too, so no
    // VMALLE1IS after it.
2:  tlbi    vmalls12e1is
    add     x27, x27, #1
    dsb     ish
    b       9f
    // IPAS2E1IS of each page.
3:  mov     x1, #({x_ipa} >> 12)
    tlbi    ipas2e1is, x1
    add     x1, x1, #1
    tlbi    ipas2e1is, x1
    add     x27, x27, #2
    b       6f
    // IPAS2LE1IS of each page.
4:  mov     x1, #({x_ipa} >> 12)
    tlbi    ipas2le1is, x1
    add     x1, x1, #1
    tlbi    ipas2le1is, x1
    add     x27, x27, #2
    b       6f
    // RIPAS2E1IS of both pages with the range's TTL hint: level 3.
5:  UMBRA_LTR_MOV64 x1, ((1 << 46) | (3 << 37) | ({x_ipa} >> 12))
    sys     #4, c8, c0, #2, x1
    add     x27, x27, #1
6:  dsb     ish
    tlbi    vmalle1is
    dsb     ish
    // Make: generation g's pages.
9:  orr     x1, x15, #0x7ff
    str     x1, [x14, #{x_entry}]
    add     x1, x15, #0x1000
    orr     x1, x1, #0x7ff
    str     x1, [x14, #({x_entry} + 8)]
    dsb     ish
    // Publish g: every access L2 begins after it reads g must use the
    // new leaves (the TLBI completed at the DSB before the make).
    adr     x4, umbra_ltr_published
    stlr    x20, [x4]
    bl      umbra_ltr_wait_seen
    add     x20, x20, #1
    cmp     x20, #{generations}
    b.ls    1b
    // Stop L2; vCPU 1 reports within 5 s.
    mov     x1, #{stop}
    adr     x4, umbra_ltr_published
    stlr    x1, [x4]
    bl      umbra_ltr_deadline
    adr     x4, umbra_ltr_done
7:  ldar    x5, [x4]
    cbnz    x5, 8f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    7b
    adr     x10, umbra_ltr_msg_no_report
    mov     x11, x20
    b       umbra_ltr_fail
8:  UMBRA_LTR_MOV64 x0, {end}
    sub     x1, x20, #1
    adr     x9, umbra_ltr_report
    ldp     x2, x3, [x9]
    ldp     x4, x5, [x9, #16]
    mov     x6, x27
    ldp     x7, x8, [x9, #32]
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_ltr_msg_refused
    cbnz    x0, umbra_ltr_fail
    UMBRA_LTR_PUTS umbra_ltr_msg_pass
    UMBRA_LTR_SYSTEM_OFF

// x6 = the physical count 5 s from now. Clobbers x7, x8.
umbra_ltr_deadline:
    mrs     x6, cntpct_el0
    mrs     x7, cntfrq_el0
    mov     x8, #5
    madd    x6, x7, x8, x6
    ret

// Waits (5 s at most) until L2 has read both pages in an iteration that
// began after it saw generation x20 (`seen` > x20). Clobbers x4-x8,
// x10, x11, x29.
umbra_ltr_wait_seen:
    mov     x29, x30
    bl      umbra_ltr_deadline
    adr     x4, umbra_ltr_seen
1:  ldar    x5, [x4]
    cmp     x5, x20
    b.hi    2f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    1b
    adr     x10, umbra_ltr_msg_no_read
    mov     x11, x20
    b       umbra_ltr_fail
2:  mov     x30, x29
    ret

// vCPU 1: L2's stage 2 on, then L2 (it comes back through the vectors).
umbra_ltr_secondary:
    adr     x9, umbra_ltr_image
    adr     x1, umbra_ltr_vectors1
    msr     vbar_el2, x1
    isb
    add     x13, x9, #{tables_offset}
    UMBRA_LTR_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    UMBRA_LTR_AT_L2_PAYLOAD
    eret

"#,
    l1_asm_print!("UMBRA_LTR", "umbra_ltr"),
    l1_asm_fail!("UMBRA_LTR", "umbra_ltr"),
    l1_asm_vectors!(
        "UMBRA_LTR",
        "umbra_ltr",
        "umbra_ltr_unexpected",
        "umbra_ltr_unexpected",
        "umbra_ltr_unexpected",
        "umbra_ltr_unexpected",
    ),
    r#"

// vCPU 1's vectors: L2's stage-2 faults in a break and its final
// `hvc #1`.
.balign 2048
umbra_ltr_vectors1:
    UMBRA_LTR_VECTORS umbra_ltr_unexpected, umbra_ltr_unexpected, umbra_ltr_unexpected, umbra_ltr_l2_exit, umbra_ltr_unexpected

// From L2 (x25-x28 only: L2's registers stay). A data abort from a lower
// EL (EC 0x24), a level-3 translation fault (DFSC 0x07: L1's leaf
// invalid, a break) on one of the pages: counted, L2 runs the load again.
umbra_ltr_l2_exit:
    mrs     x25, esr_el2
    ubfx    x26, x25, #26, #6
    cmp     x26, #0x16
    b.eq    umbra_ltr_l2_done
    mov     x11, x25
    adr     x10, umbra_ltr_msg_bad_fault
    cmp     x26, #0x24
    b.ne    umbra_ltr_fail
    and     x26, x25, #0x3f
    cmp     x26, #0x07
    b.ne    umbra_ltr_fail
    mrs     x25, far_el2
    mov     x11, x25
    adr     x10, umbra_ltr_msg_bad_far
    bic     x25, x25, #0xfff
    UMBRA_LTR_MOV64 x26, {x_ipa}
    sub     x25, x25, x26
    cmp     x25, #({x_pages} << 12)
    b.hs    umbra_ltr_fail
    adr     x25, umbra_ltr_report
    ldr     x26, [x25, #24]
    add     x26, x26, #1
    str     x26, [x25, #24]
    eret

// L2's `hvc #1` (x20 its reads, x21 the stale ones, x23 the generations
// it read, x18/x19 the first stale value and the generation published
// before it): the report for vCPU 0, then CPU_OFF.
umbra_ltr_l2_done:
    mov     x11, x25
    adr     x10, umbra_ltr_msg_bad_fault
    and     x26, x25, #0xffff
    cmp     x26, #1
    b.ne    umbra_ltr_fail
    adr     x25, umbra_ltr_report
    stp     x20, x21, [x25]
    str     x23, [x25, #16]
    stp     x18, x19, [x25, #32]
    mov     x26, #1
    adr     x25, umbra_ltr_done
    stlr    x26, [x25]
    UMBRA_LTR_MOV64 x0, 0x84000002
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_ltr_msg_cpu_off_returned
    b       umbra_ltr_fail

// L2's reads, stale reads, generations read, faults resumed, first
// stale value and its published generation (vCPU 1 writes, vCPU 0 reads
// after `done`).
.balign 8
umbra_ltr_report:
    .quad   0, 0, 0, 0, 0, 0
umbra_ltr_done:
    .quad   0
umbra_ltr_msg_start:    .asciz "L1 (tlbi-race): pages and L2's stage 2 (VMID 5) written; starting vCPU 1 for L2's reads\n"
umbra_ltr_msg_pass:     .asciz "UMBRA-NESTED-PASS tlbi-race generations={generations} values=ok\n"
umbra_ltr_msg_one_vcpu: .asciz "L1 (tlbi-race) needs a second vCPU (three CPUs); PSCI CPU_ON answered "
umbra_ltr_msg_no_range: .asciz "L1 (tlbi-race) needs FEAT_TLBIRANGE for its range TLBIs; ID_AA64ISAR0_EL1.TLB is "
umbra_ltr_msg_refused:  .asciz "hv refused the tlbi-race call: "
umbra_ltr_msg_no_read:  .asciz "vCPU 1's L2 did not read the pages within 5 s of the publication of generation "
umbra_ltr_msg_no_report: .asciz "vCPU 1 did not report within 5 s of the stop; generation "
umbra_ltr_msg_bad_fault: .asciz "vCPU 1's L2 exited with other than a level-3 translation fault or its hvc #1: ESR_EL2 "
umbra_ltr_msg_bad_far:  .asciz "vCPU 1's L2 took a stage-2 fault outside the remapped pages: FAR_EL2 "
umbra_ltr_msg_cpu_on:   .asciz "PSCI CPU_ON for vCPU 1 failed: "
umbra_ltr_msg_cpu_off_returned: .asciz "PSCI CPU_OFF returned: "
umbra_ltr_msg_nl:       .asciz "\n"
umbra_ltr_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_ltr_msg_fail_el:  .asciz "CurrentEL is not 2: "
umbra_ltr_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "

// L2 (one page at L2 IPA 0x80000, MMU off): until L1 publishes STOP,
// reads the published generation (LDAR), then both pages, checks each
// value, and tells L1 (STLR `seen` = the generation + 1) that an
// iteration begun after it saw that generation is done. x20 reads, x21
// stale reads, x22 the last generation seen, x23 generations seen,
// x18/x19 the first stale value and its generation.
.balign 4096
umbra_ltr_l2:
    mov     x20, #0
    mov     x21, #0
    mvn     x22, xzr
    mov     x23, #0
    mov     x18, #0
    mov     x19, #0
    adr     x4, umbra_ltr_published
    adr     x5, umbra_ltr_seen
    UMBRA_LTR_MOV64 x6, {x_ipa}
1:  ldar    x1, [x4]
    cmp     x1, #{stop}
    b.hs    3f
    ldr     x2, [x6]
    mov     x3, #0
    bl      umbra_ltr_l2_check
    ldr     x2, [x6, #0x1000]
    mov     x3, #1
    bl      umbra_ltr_l2_check
    cmp     x1, x22
    b.eq    2f
    mov     x22, x1
    add     x23, x23, #1
2:  add     x8, x1, #1
    stlr    x8, [x5]
    b       1b
3:  hvc     #1
    b       .

// x2 the value read from page x3 after generation x1 was published: a
// stale read unless it is that page's value of generation x1 or later.
// Clobbers x7, x8.
umbra_ltr_l2_check:
    add     x20, x20, #1
    lsr     x8, x2, #48
    mov     x7, #{magic}
    cmp     x8, x7
    b.ne    1f
    and     x8, x2, #0xff
    cmp     x8, x3
    b.ne    1f
    ubfx    x8, x2, #8, #32
    cmp     x8, x1
    b.lo    1f
    ret
1:  cbnz    x21, 2f
    mov     x18, x2
    mov     x19, x1
2:  add     x21, x21, #1
    ret

.balign 8
umbra_ltr_published:
    .quad   0
umbra_ltr_seen:
    .quad   0
.balign 4096
.global umbra_ltr_image_end
umbra_ltr_image_end:
.popsection
"#,
    magic = const VALUE_MAGIC,
    generations = const GENERATIONS,
    stop = const STOP,
    forms = const crate::nested::tlbi_race::FORMS,
    x_ipa = const X_IPA,
    x_pages = const X_PAGES,
    x_entry = const ((X_IPA >> 12) * 8),
    data_offset = const DATA_OFFSET,
    tables_offset = const TABLES_OFFSET,
    begin = const super::nested::HVC_TLBI_RACE_BEGIN,
    end = const super::nested::HVC_TLBI_RACE_END,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
);

/// Where L2's stage-2 tables are in L1's RAM: the second 2 MiB.
pub const TABLES_OFFSET: u64 = 2 << 20;
/// Where L1's data pages are: the third 2 MiB.
pub const DATA_OFFSET: u64 = 4 << 20;
// The layout: the data pages of every generation fit their 2 MiB; the
// pages are two adjacent entries of the level-3 table under L2 IPA 0
// (the one range TLBI of two pages, NUM 0 SCALE 0, covers exactly
// them); the immediates above (`mov` of the generations, STOP, the page
// number; `cmp` of the form) fit.
const _: () = assert!(
    DATA_OFFSET + ((GENERATIONS + 1) * X_PAGES << 12) <= super::nested::L1_RAM_BYTES
        && TABLES_OFFSET + (2 << 20) == DATA_OFFSET
        && X_PAGES == 2
        && X_IPA.is_multiple_of(0x1000)
        && X_IPA + (X_PAGES << 12) <= 2 << 20
        && X_IPA >= 0x81000
        && STOP < 1 << 12
        && (X_IPA >> 12) < 1 << 16
);

assembled_image!(
    "The tlbi-race L1 image's bytes (code, data and the L2 payload).",
    umbra_ltr_image,
    umbra_ltr_image_end
);
