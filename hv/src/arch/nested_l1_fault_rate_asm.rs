//! Assembly the fault-rate guest hypervisors (`nested_l1_fault_rate`, its
//! single vCPU, and `nested_l1_fault_rate_smp`, every vCPU at once) share,
//! as string fragments for their `global_asm!` templates, in the manner of
//! `nested_l1_asm` (each takes the image's prefixes, `$macros` for its
//! assembler macros and `$labels` for its labels, so nothing is defined
//! twice). Each fragment names the `global_asm!` operands its image must
//! define (`{data_offset}`, `{magic}`, `{pages}`, `{l3_tables}`,
//! `{data_ipa}`: the same values in both images) and keeps the numeric
//! local labels the images had, so each image assembles to the same bytes
//! as with the code written out.

/// L1's start-up after its vectors (x9 = the image): every data page's
/// pattern, `MAGIC | j` in page j's first word (from x9 + `{data_offset}`,
/// `{pages}` pages); then L2's stage 2 at x13 = x9 + 2 MiB: the code page
/// under root entry 0 (`<macros>_L2_STAGE2_TABLES <labels>_l2`), the data
/// pages under entry 1: a level-2 table at +0x3000 and `{l3_tables}`
/// level-3 tables from +0x4000, zeroed and linked (their descriptors are
/// `<labels>_make`'s). Numeric labels 1-3; clobbers x1-x4, x12, x14.
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! fault_rate_l1_data {
    ($macros:literal, $labels:literal) => {
        concat!(
            r"    add     x12, x9, #{data_offset}
    ",
            $macros,
            r"_MOV64 x3, {magic}
    mov     x1, #0
1:  orr     x2, x3, x1
    add     x4, x12, x1, lsl #12
    str     x2, [x4]
    add     x1, x1, #1
    cmp     x1, #{pages}
    b.lo    1b
    add     x13, x9, #0x200000
    ",
            $macros,
            r"_L2_STAGE2_TABLES ",
            $labels,
            r"_l2
    add     x1, x13, #0x3000
    add     x2, x13, #(0x4000 + {l3_tables} * 0x1000)
2:  str     xzr, [x1], #8
    cmp     x1, x2
    b.lo    2b
    add     x1, x13, #0x3000
    orr     x1, x1, #3
    str     x1, [x13, #8]
    add     x4, x13, #0x3000
    mov     x2, #0
3:  add     x1, x13, #0x4000
    add     x1, x1, x2, lsl #12
    orr     x1, x1, #3
    str     x1, [x4, x2, lsl #3]
    add     x2, x2, #1
    cmp     x2, #{l3_tables}
    b.lo    3b
"
        )
    };
}

/// The routines both images call (x13: L2's root; x9: the image):
/// - `<labels>_make`: writes the data pages' level-3 descriptors, L2 page
///   i -> L1 data page (i + x21) mod `{pages}` (leaf: OA | AF | SH inner |
///   S2AP RW | MemAttr Normal WB | page), then DSB, ISB (clobbers x1, x2,
///   x4, x5);
/// - `<labels>_break`: the break of break-before-make: every data
///   descriptor 0, then the TLBIs of kind x22 (1: VMALLS12E1IS; 2:
///   IPAS2E1IS of every page from `{data_ipa}`; 3: IPAS2LE1IS of every
///   page; 2 and 3 then VMALLE1IS for L2's stage-1 and combined entries),
///   completed by DSB (clobbers x1, x2, x5).
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! fault_rate_l1_make_break {
    ($labels:literal) => {
        concat!(
            $labels,
            r"_make:
    add     x5, x13, #0x4000
    add     x4, x9, #{data_offset}
    mov     x1, #0
1:  add     x2, x1, x21
    and     x2, x2, #({pages} - 1)
    add     x2, x4, x2, lsl #12
    orr     x2, x2, #0x7ff
    str     x2, [x5, x1, lsl #3]
    add     x1, x1, #1
    cmp     x1, #{pages}
    b.lo    1b
    dsb     ishst
    isb
    ret

",
            $labels,
            r"_break:
    add     x5, x13, #0x4000
    mov     x1, #0
1:  str     xzr, [x5, x1, lsl #3]
    add     x1, x1, #1
    cmp     x1, #{pages}
    b.lo    1b
    dsb     ishst
    cmp     x22, #1
    b.ne    2f
    tlbi    vmalls12e1is
    dsb     ish
    ret
2:  mov     x1, #({data_ipa} >> 12)
    add     x2, x1, #{pages}
3:  cmp     x22, #2
    b.ne    4f
    tlbi    ipas2e1is, x1
    b       5f
4:  tlbi    ipas2le1is, x1
5:  add     x1, x1, #1
    cmp     x1, x2
    b.lo    3b
    dsb     ish
    tlbi    vmalle1is
    dsb     ish
    ret

"
        )
    };
}

/// `<labels>_blocks`, the block pass's remap (x13: L2's root; x9: the
/// image; x21: the rotation in pages, a whole number of blocks):
/// break-before-make of the level-2 entries of the data (table
/// descriptors to block descriptors): every one 0, DSB, TLBI
/// VMALLS12E1IS, DSB; then L2 block b -> L1 data block of page (b *
/// 512 + x21) mod `{pages}` (leaf: OA | AF | SH inner | S2AP RW | MemAttr
/// Normal WB | block), DSB. Needs `{block_pages_shift}` too. Clobbers x1,
/// x2, x4, x5.
#[rustfmt::skip] // one line per line of assembly, the prefixes inline
macro_rules! fault_rate_l1_blocks {
    ($labels:literal) => {
        concat!(
            $labels,
            r"_blocks:
    add     x5, x13, #0x3000
    mov     x1, #0
1:  str     xzr, [x5, x1, lsl #3]
    add     x1, x1, #1
    cmp     x1, #{l3_tables}
    b.lo    1b
    dsb     ishst
    tlbi    vmalls12e1is
    dsb     ish
    add     x4, x9, #{data_offset}
    mov     x1, #0
2:  lsl     x2, x1, #{block_pages_shift}
    add     x2, x2, x21
    and     x2, x2, #({pages} - 1)
    add     x2, x4, x2, lsl #12
    // 0x7fd in two: not a logical immediate (its ones are no run).
    orr     x2, x2, #0x7fc
    orr     x2, x2, #1
    str     x2, [x5, x1, lsl #3]
    add     x1, x1, #1
    cmp     x1, #{l3_tables}
    b.lo    2b
    dsb     ishst
    isb
    ret

"
        )
    };
}
