//! The fault-rate guest hypervisor (`hv.nested=fault-rate`) and its L2,
//! assembled into hv's read-only data and copied into L1's memory as the
//! demo's are (`arch::nested_l1`). It measures nested stage-2 faults on
//! the target: `crate::nested::fault_rate` has the passes and the counts
//! they imply.
//!
//! L1 (at L1 IPA `L1_BASE`, MMU off, its stack at +1 MiB):
//! 1. writes `MAGIC | j` into the first word of each of its
//!    [`PAGES`] data pages j (from +4 MiB);
//! 2. builds L2's stage 2 at +2 MiB (39-bit IPA from level 1, 4 KiB,
//!    VMID 5): L2 IPA 0x80000 -> the L2 payload page (level-1 entry 0), L2
//!    page i at [`DATA_IPA`] + i * 4 KiB -> data page (i + rotation) mod
//!    PAGES (level-1 entry 1, four level-3 tables of its own), rotation 0;
//! 3. ERETs into L2 for pass 1. L2's first instruction is `hvc #1` (its
//!    code page is mapped by then): L1 calls hv's BEGIN (x0 =
//!    [`HVC_FAULT_RATE_BEGIN`], x1 the pass), reads CNTVCT_EL0 and returns
//!    to L2, which reads every page once (in order, or with the stride L1
//!    passes), checks each value against the page the pass maps it to, and
//!    reports with `hvc #2`; L1 reads CNTVCT_EL0, checks L2 read every page
//!    and found no wrong value, and calls hv's END (x1 the pass, x2 the
//!    ticks, x3 the pages), where hv prints the pass's line and checks its
//!    counts;
//! 4. prepares the next pass: rotation + 1, break (every data descriptor
//!    0, DSB), the pass's TLBIs (pass 2 and 5: VMALLS12E1IS; 3: IPAS2E1IS
//!    of every page, then VMALLE1IS; 4: the same with IPAS2LE1IS), make
//!    (the rotated descriptors, DSB), and ERETs into L2's entry again; pass
//!    5 walks the pages with stride 1031; passes 6 and 7 change nothing
//!    (pass 5's rotation, no TLBI): at pass 6's BEGIN hv moves L1's data
//!    pages to other PAs, unmapping them from the shadows; at pass 7's it
//!    write-protects them for its dirty log, and L1 writes the third word
//!    of every [`L1_DIRTY_WRITE_PERIOD`]th of its data pages from page
//!    [`L1_DIRTY_WRITE_FIRST`] itself (after BEGIN, before its counter
//!    read) and passes L2 a write period (x13, 0 in the other passes): L2
//!    also writes the second word of every [`DIRTY_WRITE_PERIOD`]th page;
//!    hv logs both writers' pages dirty; pass 8 maps L2's data with
//!    2 MiB blocks instead (level-2 entries 0-3 under entry 1, L2 block b
//!    -> L1 data block (b + 1) mod 4, [`BLOCK_ROTATION`] in pages):
//!    break (the four table descriptors 0, DSB, TLBI VMALLS12E1IS, DSB),
//!    make (the block descriptors, DSB); pass 9 changes nothing (pass 8's
//!    blocks, no TLBI): at its BEGIN hv ends its dirty log (its 2 MiB
//!    blocks back, read-write), and L2 also writes the second word of
//!    every [`LOG_END_WRITE_PERIOD`]th page (the first of each block);
//! 5. after pass 9 prints `UMBRA-NESTED-PASS fault-rate ...` and calls PSCI
//!    SYSTEM_OFF; on any wrong value (another page's: a stale or wrong
//!    translation) `UMBRA-NESTED-FAIL: ...` and PSCI SYSTEM_RESET.

use crate::nested::fault_rate::{
    Pass, BLOCK_PAGES, BLOCK_ROTATION, DATA_IPA, DIRTY_WRITE_PERIOD, L1_DIRTY_WRITE_FIRST,
    L1_DIRTY_WRITE_PERIOD, LAST_ROTATION, LOG_END_WRITE_PERIOD, PAGES, SCATTER_STRIDE,
};
use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_LFR", "umbra_lfr"),
    r#"
.pushsection .rodata.umbra_lfr, "a"
.balign 4096
.global umbra_lfr_image
umbra_lfr_image:
    adr     x9, umbra_lfr_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x11, CurrentEL
    adr     x10, umbra_lfr_msg_fail_el
    cmp     x11, #8
    b.ne    umbra_lfr_fail
    adr     x1, umbra_lfr_vectors
    msr     vbar_el2, x1
    isb
"#,
    fault_rate_l1_data!("UMBRA_LFR", "umbra_lfr"),
    r#"
    mov     x21, #0
    bl      umbra_lfr_make
    UMBRA_LFR_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    adr     x4, umbra_lfr_pass
    mov     x1, #1
    str     x1, [x4]
    UMBRA_LFR_PUTS umbra_lfr_msg_enter
    UMBRA_LFR_AT_L2_PAYLOAD
    // L2's operands: rotation, pages, first IPA, MAGIC, stride.
    mov     x0, #0
    mov     x1, #{pages}
    UMBRA_LFR_MOV64 x2, {data_ipa}
    UMBRA_LFR_MOV64 x3, {magic}
    mov     x4, #1
    mov     x13, #0
    eret

"#,
    fault_rate_l1_make_break!("umbra_lfr"),
    r#"

"#,
    fault_rate_l1_blocks!("umbra_lfr"),
    r#"
"#,
    l1_asm_print!("UMBRA_LFR", "umbra_lfr"),
    l1_asm_fail!("UMBRA_LFR", "umbra_lfr"),
    l1_asm_vectors!(
        "UMBRA_LFR",
        "umbra_lfr",
        "umbra_lfr_unexpected",
        "umbra_lfr_unexpected",
        "umbra_lfr_lower_sync",
        "umbra_lfr_unexpected",
    ),
    r#"

// L2's exits: only its two HVCs.
umbra_lfr_lower_sync:
    UMBRA_LFR_SAVE
    adr     x9, umbra_lfr_image
    add     x13, x9, #0x200000
    mrs     x19, esr_el2
    ubfx    x20, x19, #26, #6
    mov     x11, x19
    adr     x10, umbra_lfr_msg_unexpected
    cmp     x20, #0x16
    b.ne    umbra_lfr_fail
    and     x20, x19, #0xffff
    cmp     x20, #1
    b.eq    umbra_lfr_ready
    cmp     x20, #2
    b.eq    umbra_lfr_done
    b       umbra_lfr_fail

// hvc #1: L2 is about to read the pages. hv's BEGIN, then the count.
umbra_lfr_ready:
    adr     x4, umbra_lfr_pass
    ldr     x1, [x4]
    UMBRA_LFR_MOV64 x0, {begin}
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lfr_msg_refused
    cbnz    x0, umbra_lfr_fail
    // In the dirty-log pass L1 also writes the third word of some of its
    // data pages itself (j = first, first + period, ...), outside the
    // timed loop: each store is its own stage-2 permission fault at L0,
    // which hv logs as it logs L2's writes.
    adr     x4, umbra_lfr_pass
    ldr     x1, [x4]
    cmp     x1, #{dirty_log_pass}
    b.ne    31f
    add     x2, x9, #{data_offset}
    mov     x3, #{l1_write_first}
30: add     x5, x2, x3, lsl #12
    str     x3, [x5, #16]
    add     x3, x3, #{l1_write_period}
    cmp     x3, #{pages}
    b.lo    30b
31: isb
    mrs     x1, cntvct_el0
    adr     x4, umbra_lfr_start
    str     x1, [x4]
    UMBRA_LFR_RESTORE
    eret

// hvc #2: L2 read every page: its x5 the pages read, x9 the wrong values,
// x10 the first wrong one's page index, x11 its value.
umbra_lfr_done:
    isb
    mrs     x22, cntvct_el0
    adr     x4, umbra_lfr_start
    ldr     x1, [x4]
    sub     x22, x22, x1
    adr     x4, umbra_lfr_pass
    ldr     x23, [x4]
    ldr     x11, [sp, #40]
    adr     x10, umbra_lfr_msg_bad_count
    cmp     x11, #{pages}
    b.ne    umbra_lfr_fail
    ldr     x24, [sp, #72]
    cbz     x24, 6f
    UMBRA_LFR_REPORT umbra_lfr_msg_wrong_pass, x23
    UMBRA_LFR_REPORT umbra_lfr_msg_wrong_count, x24
    ldr     x1, [sp, #80]
    UMBRA_LFR_MOV64 x2, {data_ipa}
    add     x25, x2, x1, lsl #12
    UMBRA_LFR_REPORT umbra_lfr_msg_wrong_ipa, x25
    ldr     x11, [sp, #88]
    adr     x10, umbra_lfr_msg_wrong
    b       umbra_lfr_fail
    // hv's END: its line and its check of the pass's counts.
6:  UMBRA_LFR_MOV64 x0, {end}
    mov     x1, x23
    mov     x2, x22
    mov     x3, #{pages}
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lfr_msg_refused
    cbnz    x0, umbra_lfr_fail
    cmp     x23, #{last}
    b.eq    umbra_lfr_all_passed
    // The next pass: rotation (pass - 1), its TLBIs, its stride.
    add     x23, x23, #1
    adr     x4, umbra_lfr_pass
    str     x23, [x4]
    sub     x21, x23, #1
    mov     x22, #1
    mov     x26, #1
    cmp     x23, #3
    b.ne    7f
    mov     x22, #2
7:  cmp     x23, #4
    b.ne    8f
    mov     x22, #3
8:  cmp     x23, #{scattered}
    b.ne    9f
    mov     x26, #{stride}
9:  mov     x27, #0
    cmp     x23, #{block_pass}
    b.eq    12f
    cmp     x23, #{log_end_pass}
    b.eq    13f
    cmp     x23, #{l0_unmap_pass}
    b.lo    10f
    // hv's change at BEGIN (moving the data pages, then write-protecting
    // them for its dirty log) is this pass's: L1's table and its rotation
    // stay as pass 5 left them. In the dirty-log pass L2 also writes.
    mov     x21, #{last_rotation}
    cmp     x23, #{dirty_log_pass}
    b.ne    11f
    mov     x27, #{dirty_period}
    b       11f
    // The block pass: L1's own remap again, now to 2 MiB blocks.
12: mov     x21, #{block_rotation}
    bl      umbra_lfr_blocks
    b       11f
    // After hv ended its dirty log: L1 keeps the block pass's blocks (no
    // remap, no TLBI); L2 writes the first page of each block, which
    // hv's blocks must allow again.
13: mov     x21, #{block_rotation}
    mov     x27, #{log_end_write_period}
    b       11f
10: bl      umbra_lfr_break
    bl      umbra_lfr_make
11:
    // L2 again from its entry (SPSR_EL2 still its EL1h), its operands in
    // the frame RESTORE loads.
    mov     x1, #0x80000
    msr     elr_el2, x1
    str     x21, [sp, #0]
    mov     x1, #{pages}
    str     x1, [sp, #8]
    UMBRA_LFR_MOV64 x1, {data_ipa}
    str     x1, [sp, #16]
    UMBRA_LFR_MOV64 x1, {magic}
    str     x1, [sp, #24]
    str     x26, [sp, #32]
    str     x27, [sp, #104]
    UMBRA_LFR_RESTORE
    eret

umbra_lfr_all_passed:
    UMBRA_LFR_PUTS umbra_lfr_msg_pass
    UMBRA_LFR_SYSTEM_OFF

.balign 8
umbra_lfr_pass:
    .quad   0
umbra_lfr_start:
    .quad   0
umbra_lfr_msg_enter:    .asciz "L1 (fault-rate): stage 2 for L2 built ({pages} 4 KiB pages from L2 IPA 0x40000000, VMID 5); ERET to L2 for pass 1\n"
umbra_lfr_msg_pass:     .asciz "UMBRA-NESTED-PASS fault-rate pages={pages} passes={last} values=ok\n"
umbra_lfr_msg_wrong_pass: .asciz "L1 (fault-rate): wrong values in pass "
umbra_lfr_msg_wrong_count: .asciz "L1 (fault-rate): pages with a wrong value: "
umbra_lfr_msg_wrong_ipa: .asciz "L1 (fault-rate): the first at L2 IPA "
umbra_lfr_msg_wrong:    .asciz "L2 read another page's value (a stale or wrong translation); the first: "
umbra_lfr_msg_bad_count: .asciz "L2 did not read every page; it read: "
umbra_lfr_msg_refused:  .asciz "hv refused the fault-rate call: "
umbra_lfr_msg_nl:       .asciz "\n"
umbra_lfr_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_lfr_msg_fail_el:  .asciz "CurrentEL is not 2: "
umbra_lfr_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "

// L2 (one page, MMU off): after `hvc #1`, reads page i = k * x4 mod x1
// for k = 0 .. x1 - 1 at x2 + i * 4 KiB and compares it with x3 | ((i +
// x0) mod x1), the pattern of the L1 page the pass maps it to; with x13
// not 0 (a power of two) it also writes i into the page's second word
// when i is a multiple of x13 (the dirty-log pass); counts the pages (x5)
// and wrong values (x9, the first's page x10 and value x11), then
// `hvc #2`.
.balign 4096
umbra_lfr_l2:
    hvc     #1
    sub     x12, x1, #1
    mov     x5, #0
    mov     x6, #0
    mov     x9, #0
    mov     x10, #0
    mov     x11, #0
1:  add     x8, x2, x6, lsl #12
    ldr     x7, [x8]
    cbz     x13, 5f
    sub     x14, x13, #1
    tst     x6, x14
    b.ne    5f
    str     x6, [x8, #8]
5:  add     x8, x6, x0
    and     x8, x8, x12
    orr     x8, x8, x3
    cmp     x7, x8
    b.ne    3f
2:  add     x6, x6, x4
    and     x6, x6, x12
    add     x5, x5, #1
    cmp     x5, x1
    b.lo    1b
    hvc     #2
    b       .
3:  cbnz    x9, 4f
    mov     x10, x6
    mov     x11, x7
4:  add     x9, x9, #1
    b       2b
.balign 4096
.global umbra_lfr_image_end
umbra_lfr_image_end:
.popsection
"#,
    magic = const MAGIC,
    pages = const PAGES,
    data_ipa = const DATA_IPA,
    data_offset = const DATA_OFFSET,
    l3_tables = const PAGES / 512,
    stride = const SCATTER_STRIDE,
    scattered = const Pass::Scattered.number(),
    l0_unmap_pass = const Pass::AfterL0Unmap.number(),
    dirty_log_pass = const Pass::DirtyLog.number(),
    block_pass = const Pass::Blocks.number(),
    log_end_pass = const Pass::AfterDirtyLogEnd.number(),
    log_end_write_period = const LOG_END_WRITE_PERIOD,
    block_rotation = const BLOCK_ROTATION,
    block_pages_shift = const BLOCK_PAGES.trailing_zeros(),
    dirty_period = const DIRTY_WRITE_PERIOD,
    l1_write_first = const L1_DIRTY_WRITE_FIRST,
    l1_write_period = const L1_DIRTY_WRITE_PERIOD,
    last_rotation = const LAST_ROTATION,
    last = const Pass::LAST,
    begin = const super::nested::HVC_FAULT_RATE_BEGIN,
    end = const super::nested::HVC_FAULT_RATE_END,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
);

/// The pattern's high bits: L1 data page j holds `MAGIC | j`.
pub const MAGIC: u64 = 0xfa57_0000_0000_0000;
/// Where L1's data pages start in its RAM (after its image, stack and
/// L2's tables).
pub const DATA_OFFSET: u64 = 4 << 20;
/// The bytes of L1's data pages, from [`DATA_OFFSET`] to the end of its
/// RAM (what hv moves before the L0-unmap pass).
pub const DATA_BYTES: u64 = PAGES * 4096;
/// L1's RAM for this image: its data pages end it.
pub const L1_RAM_BYTES: u64 = DATA_OFFSET + DATA_BYTES;
// The pattern leaves the page number its low 16 bits; the message above
// names the data's IPA.
const _: () = assert!(PAGES < 1 << 16 && DATA_IPA == 0x4000_0000);
// Pass n (up to the scattered one) runs with rotation n - 1; the
// L0-unmap and dirty-log passes keep the scattered one's.
const _: () = assert!(LAST_ROTATION == Pass::Scattered.number() - 1);
// The block pass: its L2 IPA blocks are the four level-2 entries the
// level-3 tables hang from, and L1's data blocks are 2 MiB blocks of its
// IPA space (L1 runs with its MMU off: its addresses are its IPAs), its
// rotation a whole number of them (fits the `mov` above). It and the
// pass after the dirty log's end, the last, are the passes that map
// blocks (the branches above take them before the `b.lo`); the latter's
// write period fits its `mov`.
const _: () = assert!(
    BLOCK_PAGES * 4096 == 2 << 20
        && DATA_IPA.is_multiple_of(2 << 20)
        && (super::nested::L1_BASE + DATA_OFFSET).is_multiple_of(2 << 20)
        && BLOCK_ROTATION.is_multiple_of(BLOCK_PAGES)
        && BLOCK_ROTATION < 1 << 16
        && Pass::Blocks.number() + 1 == Pass::LAST
        && Pass::AfterDirtyLogEnd.number() == Pass::LAST
        && Pass::Blocks.number() > Pass::DirtyLog.number()
        && LOG_END_WRITE_PERIOD < 1 << 16
);

assembled_image!(
    "The fault-rate L1 image's bytes (code, data and the L2 payload).",
    umbra_lfr_image,
    umbra_lfr_image_end
);
