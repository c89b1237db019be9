//! The multi-vCPU fault-rate guest hypervisor (`hv.nested=fault-rate-smp`)
//! and its L2, assembled into hv's read-only data and copied into L1's
//! memory as the others are (`arch::nested_l1`):
//! `crate::nested::fault_rate::smp` has the passes and what hv checks.
//!
//! L1's RAM, its data pages and L2's stage 2 are the single-vCPU case's
//! (`arch::nested_l1_fault_rate`: image at `L1_BASE`, L2's tables at +2
//! MiB, [`PAGES`] data pages from +4 MiB with `MAGIC | j` in page j's
//! first word, one L2 of VMID 5). vCPU k's stack is the 64 KiB below
//! +1 MiB - k * 64 KiB, whose last word holds k (its handlers find their
//! vCPU from SP) and the word below it the last pass it ran.
//!
//! vCPU 0 builds the pages and the table (rotation 0), starts vCPU 1, 2,
//! ... with PSCI CPU_ON (context id k) until hv answers
//! INVALID_PARAMETERS (no CPU left: n vCPUs; fewer than two fails), and
//! ERETs into L2. Each pass p:
//! 1. vCPU 0's L2 runs `hvc #1` (its code page faults first, before
//!    BEGIN); vCPU 0 calls hv's BEGIN (x1 = p), reads CNTVCT_EL0, and
//!    publishes p in `go` (store-release), then returns to its L2;
//! 2. every other vCPU waits for `go` to reach p, then ERETs into the same
//!    L2 (its `hvc #1` only returns);
//! 3. vCPU k's L2 reads the pages of the order's positions j = k, k + n,
//!    ... (with the pass's operands, which vCPU 0 wrote before `go`:
//!    rotation p - 1 up to pass 5, 4 in passes 6 and 7, one block's in 8
//!    and 9; page j in order, j * SCATTER_STRIDE mod PAGES in pass 5;
//!    in pass 7 it writes the first of every `smp::DIRTY_WRITE_READS`
//!    pages it reads (vCPU k > 0 first also vCPU 0's page at the same
//!    step, position j - k: `smp::written_by_every_vcpu`; vCPU 1 at its
//!    odd write steps asks its L1 with `hvc #3`, which writes that page
//!    itself, `smp::written_by_l1`: L1's own write racing vCPU 0's L2's
//!    on the write-protected page), in pass 9
//!    the first of every `smp::LOG_END_WRITE_READS`), checks each one's
//!    pattern, and reports with `hvc #2`; its L1 checks
//!    it read its share and found no wrong value (else
//!    `UMBRA-NESTED-FAIL` naming the vCPU) and stores p in its `reported`
//!    word (store-release; plain words, no atomic read-modify-write, which
//!    L1's memory, Device with its MMU off, need not support); vCPU k > 0 then waits for the next pass (or, after the
//!    last, turns itself off with CPU_OFF);
//! 4. vCPU 0 waits for every other vCPU's `reported` to reach p (at most
//!    200 s), reads CNTVCT_EL0 and calls hv's END (x1 = p, x2 the ticks, x3 the pages
//!    read, x4 = n), where hv prints the pass's line and checks it (after
//!    pass 7 L1 checks each page its vCPU 1 wrote holds both its write
//!    and vCPU 0's L2's, whose words it cleared before the pass); then
//!    for the next pass q (p + 1, but 5 after 2: `smp::PASSES`) it
//!    prepares as the single-vCPU L1 does: up to pass 5 it remaps
//!    (rotation q - 1, break, the pass's TLBIs: passes 2 and 5
//!    VMALLS12E1IS; with 3 and 4 in `smp::PASSES`, 3 IPAS2E1IS of every
//!    page, then VMALLE1IS, and 4 the same with IPAS2LE1IS; make); 6 and 7
//!    change nothing (hv's move and dirty log come at their BEGIN); 8
//!    remaps to 2 MiB blocks rotated by one block (`fault_rate_l1_blocks`,
//!    with its TLBI VMALLS12E1IS); 9 changes nothing (hv ends its dirty
//!    log at BEGIN); it writes the pass's L2 operands for the others and
//!    ERETs into L2 again; after the last it prints `UMBRA-NESTED-PASS
//!    fault-rate-smp ...` and calls SYSTEM_OFF.

use crate::nested::fault_rate::{smp::LAST, DATA_IPA, PAGES};
use core::arch::global_asm;

use super::nested_l1_fault_rate::{DATA_OFFSET, MAGIC};
use crate::nested::fault_rate::smp::{
    DIRTY_WRITE_READS, L1_WRITER, L1_WRITE_MARK, LOG_END_WRITE_READS, SHARED_WRITE_BIT, SKIP_FROM,
    SKIP_TO,
};
use crate::nested::fault_rate::{Pass, BLOCK_PAGES, BLOCK_ROTATION, LAST_ROTATION, SCATTER_STRIDE};

global_asm!(
    l1_asm_macros!("UMBRA_LFS", "umbra_lfs"),
    r#"
// The pages vCPU 1's L1 writes in pass 7 (`smp::written_by_l1`: L2 pages
// n * 32 * t, t odd): x2 the first, x3 the step to the next, x5 the data
// pages' first address (clobbers x4).
.macro UMBRA_LFS_L1_WRITTEN
    adr     x4, umbra_lfs_vcpus
    ldr     x4, [x4]
    lsl     x2, x4, #{dirty_reads_shift}
    lsl     x3, x4, #({dirty_reads_shift} + 1)
    adr     x5, umbra_lfs_image
    add     x5, x5, #{data_offset}
.endm
// x6 = the address of L2 page x2's L1 page in pass 7 (rotation
// `LAST_ROTATION`), from x5.
.macro UMBRA_LFS_L1_WRITTEN_PAGE
    add     x6, x2, #{last_rotation}
    and     x6, x6, #({pages} - 1)
    add     x6, x5, x6, lsl #12
.endm
"#,
    r#"
.pushsection .rodata.umbra_lfs, "a"
.balign 4096
.global umbra_lfs_image
umbra_lfs_image:
    adr     x9, umbra_lfs_image
    add     x10, x9, #0x100000
    str     xzr, [x10, #-8]
    str     xzr, [x10, #-16]
    sub     sp, x10, #64
    mrs     x11, CurrentEL
    adr     x10, umbra_lfs_msg_fail_el
    cmp     x11, #8
    b.ne    umbra_lfs_fail
    adr     x1, umbra_lfs_vectors
    msr     vbar_el2, x1
    isb
"#,
    fault_rate_l1_data!("UMBRA_LFS", "umbra_lfs"),
    r#"
    mov     x21, #0
    bl      umbra_lfs_make
    UMBRA_LFS_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    // The other vCPUs: MPIDR k, context id k, until hv has no CPU left.
    mov     x20, #1
4:  UMBRA_LFS_MOV64 x0, 0xc4000003
    mov     x1, x20
    adr     x2, umbra_lfs_secondary
    mov     x3, x20
    hvc     #0
    cmn     x0, #2
    b.eq    5f
    mov     x11, x0
    adr     x10, umbra_lfs_msg_cpu_on
    cbnz    x0, umbra_lfs_fail
    add     x20, x20, #1
    cmp     x20, #{max_vcpus}
    b.lo    4b
5:  mov     x11, x20
    adr     x10, umbra_lfs_msg_one_vcpu
    cmp     x20, #2
    b.lo    umbra_lfs_fail
    adr     x4, umbra_lfs_vcpus
    str     x20, [x4]
    adr     x4, umbra_lfs_pass
    mov     x1, #1
    str     x1, [x4]
    // Pass 1's operands for every vCPU: rotation 0, in order, no write.
    adr     x4, umbra_lfs_operands
    stp     xzr, x1, [x4]
    str     xzr, [x4, #16]
    UMBRA_LFS_PUTS umbra_lfs_msg_enter
    UMBRA_LFS_AT_L2_PAYLOAD
    // L2's operands: rotation, pages, first IPA, MAGIC, stride (the
    // vCPUs), first position (the vCPU), the order's multiplier (pass 1:
    // in order), the write period (pass 1: none).
    mov     x0, #0
    mov     x1, #{pages}
    UMBRA_LFS_MOV64 x2, {data_ipa}
    UMBRA_LFS_MOV64 x3, {magic}
    adr     x4, umbra_lfs_vcpus
    ldr     x4, [x4]
    mov     x6, #0
    mov     x13, #1
    mov     x15, #0
    eret

// vCPU k (x0 = k, from CPU_ON's context id): its stack, its index and
// last pass in the stack's top words, its vectors, L2's stage 2 (the
// same table and VMID: one shadow context for all vCPUs).
umbra_lfs_secondary:
    adr     x9, umbra_lfs_image
    mov     x10, #0x100000
    sub     x10, x10, x0, lsl #16
    add     x10, x9, x10
    str     x0, [x10, #-8]
    str     xzr, [x10, #-16]
    sub     sp, x10, #64
    adr     x1, umbra_lfs_vectors
    msr     vbar_el2, x1
    isb
    add     x13, x9, #0x200000
    UMBRA_LFS_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
// vCPU k's next pass (also from its `hvc #2`, its frame dropped): wait
// for vCPU 0's `go`, then ERET into L2 for its share.
umbra_lfs_secondary_next:
    mov     x4, sp
    orr     x4, x4, #0xffff
    ldur    x19, [x4, #-7]
    ldur    x20, [x4, #-15]
    add     x20, x20, #1
    cmp     x20, #{skip_from}
    mov     x5, #{skip_to}
    csel    x20, x5, x20, eq
    cmp     x20, #{last}
    b.hi    umbra_lfs_secondary_off
    stur    x20, [x4, #-15]
    adr     x5, umbra_lfs_go
6:  ldar    x6, [x5]
    cmp     x6, x20
    b.lo    6b
    UMBRA_LFS_AT_L2_PAYLOAD
    // The pass's operands vCPU 0 wrote before its `go` (read after it).
    adr     x7, umbra_lfs_operands
    ldp     x0, x13, [x7]
    ldr     x15, [x7, #16]
    mov     x1, #{pages}
    UMBRA_LFS_MOV64 x2, {data_ipa}
    UMBRA_LFS_MOV64 x3, {magic}
    adr     x4, umbra_lfs_vcpus
    ldr     x4, [x4]
    mov     x6, x19
    eret
umbra_lfs_secondary_off:
    UMBRA_LFS_MOV64 x0, 0x84000002
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lfs_msg_cpu_off_returned
    b       umbra_lfs_fail

"#,
    fault_rate_l1_make_break!("umbra_lfs"),
    r#"

"#,
    fault_rate_l1_blocks!("umbra_lfs"),
    r#"
"#,
    l1_asm_print!("UMBRA_LFS", "umbra_lfs"),
    l1_asm_fail!("UMBRA_LFS", "umbra_lfs"),
    l1_asm_vectors!(
        "UMBRA_LFS",
        "umbra_lfs",
        "umbra_lfs_unexpected",
        "umbra_lfs_unexpected",
        "umbra_lfs_lower_sync",
        "umbra_lfs_unexpected",
    ),
    r#"

// L2's exits on any vCPU: only its two HVCs. x19 = the vCPU (from SP).
umbra_lfs_lower_sync:
    UMBRA_LFS_SAVE
    adr     x9, umbra_lfs_image
    add     x13, x9, #0x200000
    mov     x4, sp
    orr     x4, x4, #0xffff
    ldur    x19, [x4, #-7]
    mrs     x20, esr_el2
    ubfx    x21, x20, #26, #6
    mov     x11, x20
    adr     x10, umbra_lfs_msg_unexpected
    cmp     x21, #0x16
    b.ne    umbra_lfs_fail
    and     x21, x20, #0xffff
    cmp     x21, #1
    b.eq    umbra_lfs_ready
    cmp     x21, #2
    b.eq    umbra_lfs_done
    cmp     x21, #3
    b.eq    umbra_lfs_l1_write
    b       umbra_lfs_fail

// hvc #3 (pass 7, vCPU 1's L2 at its odd write steps, in place of its
// store: `smp::written_by_l1`): L1 itself writes the page, L2 page x17
// (L1 page (x17 + x0) mod PAGES, x0 L2's rotation), through its own
// mapping (MMU off: the address is the L1 IPA), `smp::L1_WRITE_MARK` |
// x17 into its third word, at about the moment vCPU 0's L2 writes the
// page's second word. hv write-protected the page for its dirty log: the
// store is L1's own stage-2 permission fault at L0, and runs again once
// hv logged the page (or found it logged by vCPU 0's write). Then L2
// again, after its `hvc #3`.
umbra_lfs_l1_write:
    mov     x11, x19
    adr     x10, umbra_lfs_msg_l1_write_vcpu
    cmp     x19, #{l1_writer}
    b.ne    umbra_lfs_fail
    ldr     x1, [sp, #136]
    ldr     x2, [sp, #0]
    add     x3, x1, x2
    and     x3, x3, #({pages} - 1)
    add     x4, x9, #{data_offset}
    add     x4, x4, x3, lsl #12
    UMBRA_LFS_MOV64 x5, {l1_mark}
    orr     x5, x5, x1
    str     x5, [x4, #16]
    UMBRA_LFS_RESTORE
    eret

// hvc #1: L2 is about to read. On vCPU 0: hv's BEGIN, the count, `go`;
// on the others: nothing (they ERET'd into L2 after `go`).
umbra_lfs_ready:
    cbnz    x19, 1f
    adr     x4, umbra_lfs_pass
    ldr     x1, [x4]
    UMBRA_LFS_MOV64 x0, {begin}
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lfs_msg_refused
    cbnz    x0, umbra_lfs_fail
    adr     x4, umbra_lfs_pass
    ldr     x1, [x4]
    isb
    mrs     x2, cntvct_el0
    adr     x4, umbra_lfs_start
    str     x2, [x4]
    adr     x4, umbra_lfs_go
    stlr    x1, [x4]
1:  UMBRA_LFS_RESTORE
    eret

// hvc #2: this vCPU's L2 read its share: x5 the pages read, x9 the wrong
// values, x10 the first wrong one's page index, x11 its value.
umbra_lfs_done:
    adr     x4, umbra_lfs_pass
    ldr     x23, [x4]
    // Its share: the pages i < PAGES with i mod n = k.
    adr     x4, umbra_lfs_vcpus
    ldr     x4, [x4]
    mov     x1, #{pages}
    sub     x1, x1, x19
    add     x1, x1, x4
    sub     x1, x1, #1
    udiv    x1, x1, x4
    ldr     x11, [sp, #40]
    cmp     x11, x1
    b.eq    1f
    UMBRA_LFS_REPORT umbra_lfs_msg_vcpu, x19
    ldr     x11, [sp, #40]
    adr     x10, umbra_lfs_msg_bad_count
    b       umbra_lfs_fail
1:  ldr     x24, [sp, #72]
    cbz     x24, 2f
    UMBRA_LFS_REPORT umbra_lfs_msg_vcpu, x19
    UMBRA_LFS_REPORT umbra_lfs_msg_wrong_pass, x23
    UMBRA_LFS_REPORT umbra_lfs_msg_wrong_count, x24
    ldr     x1, [sp, #80]
    UMBRA_LFS_MOV64 x2, {data_ipa}
    add     x25, x2, x1, lsl #12
    UMBRA_LFS_REPORT umbra_lfs_msg_wrong_ipa, x25
    ldr     x11, [sp, #88]
    adr     x10, umbra_lfs_msg_wrong
    b       umbra_lfs_fail
2:  adr     x4, umbra_lfs_reported
    add     x4, x4, x19, lsl #3
    stlr    x23, [x4]
    cbz     x19, 3f
    // vCPU k > 0: its frame dropped, to its next pass.
    add     sp, sp, #256
    b       umbra_lfs_secondary_next
    // vCPU 0: every other vCPU's report of this pass, within 200 s.
3:  adr     x4, umbra_lfs_vcpus
    ldr     x26, [x4]
    mrs     x6, cntpct_el0
    mrs     x7, cntfrq_el0
    mov     x8, #200
    madd    x6, x7, x8, x6
    mov     x27, #1
4:  cmp     x27, x26
    b.hs    5f
    adr     x4, umbra_lfs_reported
    add     x4, x4, x27, lsl #3
6:  ldar    x5, [x4]
    cmp     x5, x23
    b.hs    7f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    6b
    mov     x11, x27
    adr     x10, umbra_lfs_msg_no_report
    b       umbra_lfs_fail
7:  add     x27, x27, #1
    b       4b
5:  isb
    mrs     x22, cntvct_el0
    adr     x4, umbra_lfs_start
    ldr     x1, [x4]
    sub     x22, x22, x1
    // hv's END: its line and its check of the pass's counts.
    UMBRA_LFS_MOV64 x0, {end}
    mov     x1, x23
    mov     x2, x22
    mov     x3, #{pages}
    adr     x4, umbra_lfs_vcpus
    ldr     x4, [x4]
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lfs_msg_refused
    cbnz    x0, umbra_lfs_fail
    // After pass 7: each page vCPU 1's L1 wrote (`smp::written_by_l1`:
    // L2 pages n * 32 * t, t odd) holds both writes, vCPU 0's L2's (its
    // index, second word) and L1's own (`smp::L1_WRITE_MARK` | index,
    // third word), whichever of them hv logged.
    cmp     x23, #{dirty_log_pass}
    b.ne    16f
    UMBRA_LFS_L1_WRITTEN
    UMBRA_LFS_MOV64 x7, {l1_mark}
17: cmp     x2, #{pages}
    b.hs    16f
    UMBRA_LFS_L1_WRITTEN_PAGE
    ldp     x8, x24, [x6, #8]
    orr     x25, x7, x2
    cmp     x24, x25
    ccmp    x8, x2, #0, eq
    b.ne    18f
    add     x2, x2, x3
    b       17b
18: mov     x25, x2
    UMBRA_LFS_REPORT umbra_lfs_msg_both_page, x25
    UMBRA_LFS_REPORT umbra_lfs_msg_both_l2, x8
    mov     x11, x24
    adr     x10, umbra_lfs_msg_both_l1
    b       umbra_lfs_fail
16: cmp     x23, #{last}
    b.eq    umbra_lfs_all_passed
    // The next pass (5 after 2: `smp::PASSES`) and its operands: x21
    // the rotation, x26 the order's multiplier, x27 the write period.
    add     x23, x23, #1
    cmp     x23, #{skip_from}
    mov     x1, #{skip_to}
    csel    x23, x1, x23, eq
    adr     x4, umbra_lfs_pass
    str     x23, [x4]
    mov     x26, #1
    mov     x27, #0
    cmp     x23, #{l0_unmap_pass}
    b.hs    10f
    // Passes 2-5, L1's remap: rotation (pass - 1), break, the pass's
    // TLBIs (pass - 1: VMALLS12E1IS, IPAS2E1IS or IPAS2LE1IS; pass 5's
    // VMALLS12E1IS), make; pass 5 in scattered order.
    sub     x21, x23, #1
    sub     x22, x23, #1
    cmp     x23, #{scattered}
    mov     x1, #1
    csel    x22, x1, x22, eq
    mov     x1, #{stride}
    csel    x26, x1, x26, eq
    bl      umbra_lfs_break
    bl      umbra_lfs_make
    b       14f
    // Passes 6 and 7: hv's change at BEGIN (moving the data pages, then
    // write-protecting them for its dirty log); L1's table and rotation
    // stay as pass 5 left them. In the dirty-log pass L2 also writes.
10: cmp     x23, #{block_pass}
    b.hs    12f
    mov     x21, #{last_rotation}
    // In the dirty-log pass the period carries `smp::SHARED_WRITE_BIT`:
    // every vCPU but 0 also writes vCPU 0's page at each write position.
    cmp     x23, #{dirty_log_pass}
    UMBRA_LFS_MOV64 x1, {dirty_period_shared}
    csel    x27, x1, x27, eq
    b.ne    14f
    // Pass 7: the words vCPU 0's L2 and vCPU 1's L1 write in the pages
    // L1 writes (`smp::written_by_l1`) cleared while hv's blocks are
    // still writable (it write-protects them at BEGIN), so the check
    // after the pass sees this pass's writes.
    UMBRA_LFS_L1_WRITTEN
15: cmp     x2, #{pages}
    b.hs    14f
    UMBRA_LFS_L1_WRITTEN_PAGE
    stp     xzr, xzr, [x6, #8]
    add     x2, x2, x3
    b       15b
    // The block pass: L1's own remap again, now to 2 MiB blocks; after
    // it (hv ended its dirty log at BEGIN) the blocks kept, and L2
    // writes through them.
12: mov     x21, #{block_rotation}
    b.ne    13f
    bl      umbra_lfs_blocks
    b       14f
13: mov     x27, #{log_end_reads}
    // The operands for the other vCPUs (read after `go`), then L2 again
    // from its entry (SPSR_EL2 still its EL1h), its operands in the frame
    // RESTORE loads.
14: adr     x4, umbra_lfs_operands
    stp     x21, x26, [x4]
    str     x27, [x4, #16]
    mov     x1, #0x80000
    msr     elr_el2, x1
    str     x21, [sp, #0]
    mov     x1, #{pages}
    str     x1, [sp, #8]
    UMBRA_LFS_MOV64 x1, {data_ipa}
    str     x1, [sp, #16]
    UMBRA_LFS_MOV64 x1, {magic}
    str     x1, [sp, #24]
    adr     x4, umbra_lfs_vcpus
    ldr     x1, [x4]
    str     x1, [sp, #32]
    str     xzr, [sp, #48]
    str     x26, [sp, #104]
    str     x27, [sp, #120]
    UMBRA_LFS_RESTORE
    eret

umbra_lfs_all_passed:
    UMBRA_LFS_PUTS umbra_lfs_msg_pass
    UMBRA_LFS_SYSTEM_OFF

.balign 8
umbra_lfs_pass:
    .quad   0
umbra_lfs_start:
    .quad   0
umbra_lfs_vcpus:
    .quad   0
umbra_lfs_go:
    .quad   0
// The pass's L2 operands: rotation, the order's multiplier, the write
// period (vCPU 0's, for every vCPU).
umbra_lfs_operands:
    .quad   0, 0, 0
umbra_lfs_reported:
    .fill   {max_vcpus}, 8, 0
umbra_lfs_msg_enter:    .asciz "L1 (fault-rate-smp): stage 2 for L2 built ({pages} 4 KiB pages from L2 IPA 0x40000000, VMID 5), its other vCPUs started; ERET to L2 for pass 1\n"
umbra_lfs_msg_pass:     .asciz "UMBRA-NESTED-PASS fault-rate-smp pages={pages} passes=1,2,{skip_to},{l0_unmap_pass},{dirty_log_pass},{block_pass},{last} values=ok\n"
umbra_lfs_msg_vcpu:     .asciz "L1 (fault-rate-smp): on vCPU "
umbra_lfs_msg_wrong_pass: .asciz "L1 (fault-rate-smp): wrong values in pass "
umbra_lfs_msg_wrong_count: .asciz "L1 (fault-rate-smp): pages with a wrong value: "
umbra_lfs_msg_wrong_ipa: .asciz "L1 (fault-rate-smp): the first at L2 IPA "
umbra_lfs_msg_wrong:    .asciz "L2 read another page's value (a stale or wrong translation); the first: "
umbra_lfs_msg_bad_count: .asciz "L2 did not read its share of the pages; it read: "
umbra_lfs_msg_no_report: .asciz "a vCPU did not report its share of the pass within 200 s: vCPU "
umbra_lfs_msg_one_vcpu: .asciz "L1 (fault-rate-smp) needs a second vCPU (three CPUs); vCPUs: "
umbra_lfs_msg_cpu_on:   .asciz "PSCI CPU_ON for another vCPU failed: "
umbra_lfs_msg_cpu_off_returned: .asciz "PSCI CPU_OFF returned: "
umbra_lfs_msg_l1_write_vcpu: .asciz "L2 asked its L1 to write a page (hvc #3) on a vCPU other than 1: "
umbra_lfs_msg_both_page: .asciz "L1 (fault-rate-smp): after pass 7, a page L1 and vCPU 0's L2 both wrote lost a write: L2 page "
umbra_lfs_msg_both_l2:  .asciz "L1 (fault-rate-smp): its second word (vCPU 0's L2's write, the page): "
umbra_lfs_msg_both_l1:  .asciz "a write to a page L1 and L2 both wrote in the dirty-log pass was lost; its third word (L1's write): "
umbra_lfs_msg_refused:  .asciz "hv refused the fault-rate call: "
umbra_lfs_msg_nl:       .asciz "\n"
umbra_lfs_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_lfs_msg_fail_el:  .asciz "CurrentEL is not 2: "
umbra_lfs_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "

// L2 (one page, MMU off): after `hvc #1`, for the positions j = x6, x6 +
// x4, ... below x1 reads page i = j * x13 mod x1 (x13 1 in order, odd
// to scatter: a permutation) at x2 + i * 4 KiB and compares it with x3 |
// ((i + x0) mod x1), the pattern of the L1 page the pass maps it to;
// with x15 not 0 (a power of two, but for bit {shared_bit}) it also
// writes i into the page's second word when the pages it read before are
// a multiple of x15 (its 1st, (x15 + 1)th, ... read: passes 7 and 9; x5
// never reaches bit {shared_bit}, so x15 - 1 tests the period alone); with
// bit {shared_bit} set (pass 7, in order: page = position) and k = x6 mod
// x4 not 0, first writes i - k into the second word of page i - k, the
// page vCPU 0 writes at the same step, but for vCPU {l1_writer} at its odd
// write steps (x5 / x15 odd): there `hvc #3` with x17 = i - k, and its L1
// writes the page itself; counts the pages (x5) and wrong
// values (x9, the first's page x10 and value x11), then `hvc #2`.
.balign 4096
umbra_lfs_l2:
    hvc     #1
    sub     x12, x1, #1
    mov     x5, #0
    mov     x9, #0
    mov     x10, #0
    mov     x11, #0
    cmp     x6, x1
    b.hs    5f
1:  mul     x14, x6, x13
    and     x14, x14, x12
    add     x8, x2, x14, lsl #12
    ldr     x7, [x8]
    cbz     x15, 6f
    sub     x16, x15, #1
    tst     x5, x16
    b.ne    6f
    tbz     x15, #{shared_bit}, 7f
    udiv    x16, x6, x4
    msub    x16, x16, x4, x6
    cbz     x16, 7f
    sub     x17, x14, x16
    cmp     x16, #{l1_writer}
    b.ne    8f
    tbz     x5, #{dirty_reads_shift}, 8f
    hvc     #3
    b       7f
8:  sub     x16, x8, x16, lsl #12
    str     x17, [x16, #8]
7:  str     x14, [x8, #8]
6:  add     x8, x14, x0
    and     x8, x8, x12
    orr     x8, x8, x3
    cmp     x7, x8
    b.ne    3f
2:  add     x5, x5, #1
    add     x6, x6, x4
    cmp     x6, x1
    b.lo    1b
5:  hvc     #2
    b       .
3:  cbnz    x9, 4f
    mov     x10, x14
    mov     x11, x7
4:  add     x9, x9, #1
    b       2b
.balign 4096
.global umbra_lfs_image_end
umbra_lfs_image_end:
.popsection
"#,
    magic = const MAGIC,
    pages = const PAGES,
    data_ipa = const DATA_IPA,
    data_offset = const DATA_OFFSET,
    l3_tables = const PAGES / 512,
    last = const LAST,
    skip_from = const SKIP_FROM,
    skip_to = const SKIP_TO,
    scattered = const Pass::Scattered.number(),
    stride = const SCATTER_STRIDE,
    l0_unmap_pass = const Pass::AfterL0Unmap.number(),
    dirty_log_pass = const Pass::DirtyLog.number(),
    block_pass = const Pass::Blocks.number(),
    last_rotation = const LAST_ROTATION,
    block_rotation = const BLOCK_ROTATION,
    block_pages_shift = const BLOCK_PAGES.trailing_zeros(),
    dirty_period_shared = const DIRTY_WRITE_READS | (1 << SHARED_WRITE_BIT),
    shared_bit = const SHARED_WRITE_BIT,
    l1_writer = const L1_WRITER,
    l1_mark = const L1_WRITE_MARK,
    dirty_reads_shift = const DIRTY_WRITE_READS.trailing_zeros(),
    log_end_reads = const LOG_END_WRITE_READS,
    max_vcpus = const MAX_VCPUS,
    begin = const super::nested::HVC_FAULT_RATE_BEGIN,
    end = const super::nested::HVC_FAULT_RATE_END,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
);

/// The most vCPUs L1 starts (its stacks, 64 KiB each below +1 MiB, stay
/// above its image): hv's most (`platform::MAX_CPUS`, one CPU the
/// service's).
pub const MAX_VCPUS: u64 = crate::platform::MAX_CPUS as u64 - 1;
const _: () = assert!(MAX_VCPUS >= 2 && MAX_VCPUS <= 8);

assembled_image!(
    "The fault-rate-smp L1 image's bytes (code, data and the L2 payload).",
    umbra_lfs_image,
    umbra_lfs_image_end
);
