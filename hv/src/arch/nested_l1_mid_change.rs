//! The mid-change guest hypervisor (`hv.nested=mid-change`, three CPUs:
//! L1's two vCPUs and the service) and its L2, assembled into hv's
//! read-only data and copied into L1's memory as the demo's are
//! (`arch::nested_l1`). It drives hv's resume paths for a guest access
//! that meets hv's own break-before-make of L1's RAM
//! (`crate::nested::mid_change` has the steps and the counts).
//!
//! L1's RAM (6 MiB from `L1_BASE`, MMU off) is three 2 MiB blocks of hv's
//! map: its image (code, the words below, L2's payload page), then
//! [`TABLES_OFFSET`] L2's stage 2 (root, level 2, level 3), then
//! [`DATA_OFFSET`] its data pages (page s, s = 1-5, first word
//! `OLD_MAGIC | s`, mapped for L2 at L2 IPA 0x100000 + s * 4 KiB).
//!
//! vCPU 0: writes the data pages and L2's stage 2, starts vCPU 1 (PSCI
//! CPU_ON; without a CPU for it, INVALID_PARAMETERS, L1 fails), then for
//! each step s calls hv's `HVC_MID_CHANGE` (x1 = s, x2 = the L1 IPA of
//! the `broken` word in L2's payload page): hv breaks the step's block,
//! writes s into `broken`, waits until the step's path resumed vCPU 1's
//! access, writes `NEW_MAGIC | s` into data page s, moves the block and
//! makes it; then vCPU 0 waits (at most 30 s) for vCPU 1's ack of s. At
//! the end a last call (x1 = `END`) has hv check the last step, and L1
//! prints its PASS line and calls SYSTEM_OFF.
//!
//! vCPU 1, for each step, waits until `broken` says s, makes the one
//! access of the step (so it starts inside hv's break), checks it read
//! `NEW_MAGIC | s` and acks: 1, L1 loads data page 1 itself; 2, L2
//! loads its page 2 through the shadow; 3, L2 loads its page 3, never
//! touched, so the service walks L1's (broken) table; 4, L1 runs AT
//! S12E1R on L2 IPA of page 4 (hv walks L1's broken table), checks
//! PAR_EL1 names data page 4, and loads it; 5, L2 with L1's stage 2 off
//! (virtual HCR_EL2.VM = 0) loads data page 5 at its L1 IPA; 6, L1 turns
//! its EL2&0 stage 1 on (root table in the tables block at
//! [`S1_ROOT_OFFSET`]) and loads from [`WALK_VA`], whose level-2 table is
//! at an L1 IPA outside its RAM: hv, which breaks the tables block only
//! once that load's abort reached its re-walk, resumes L1 from the
//! re-walk, and after the make L1 must take the external abort on its
//! walk at level 2, then load data page 6. Then it turns itself off
//! (CPU_OFF).

use crate::nested::mid_change::{END, NEW_MAGIC, OLD_MAGIC, STEPS};
use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_LMC", "umbra_lmc"),
    r#"
.pushsection .rodata.umbra_lmc, "a"
.balign 4096
.global umbra_lmc_image
umbra_lmc_image:
    adr     x9, umbra_lmc_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x11, CurrentEL
    adr     x10, umbra_lmc_msg_fail_el
    cmp     x11, #8
    b.ne    umbra_lmc_fail
    adr     x1, umbra_lmc_vectors
    msr     vbar_el2, x1
    isb
    // Data page s: OLD_MAGIC | s.
    add     x12, x9, #{data_offset}
    UMBRA_LMC_MOV64 x3, {old_magic}
    mov     x1, #1
1:  orr     x2, x3, x1
    add     x4, x12, x1, lsl #12
    str     x2, [x4]
    add     x1, x1, #1
    cmp     x1, #{steps}
    b.ls    1b
    // L2's stage 2 in the tables block: its payload page at L2 IPA
    // 0x80000, data page s at L2 IPA 0x100000 + s * 4 KiB.
    add     x13, x9, #{tables_offset}
    UMBRA_LMC_L2_STAGE2_TABLES umbra_lmc_l2
    mov     x1, #1
2:  add     x2, x12, x1, lsl #12
    orr     x2, x2, #0x7ff
    add     x3, x1, #0x100
    str     x2, [x14, x3, lsl #3]
    add     x1, x1, #1
    cmp     x1, #{steps}
    b.ls    2b
    dsb     ish
    UMBRA_LMC_PUTS umbra_lmc_msg_start
    UMBRA_LMC_CPU_ON_VCPU1 umbra_lmc_secondary
    mov     x11, x0
    adr     x10, umbra_lmc_msg_one_vcpu
    cbnz    x0, umbra_lmc_fail
    mov     x20, #1
3:  UMBRA_LMC_MOV64 x0, {mid_change}
    mov     x1, x20
    adr     x2, umbra_lmc_broken
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lmc_msg_refused
    cbnz    x0, umbra_lmc_fail
    // vCPU 1's ack of step x20, within 30 s.
    mrs     x6, cntpct_el0
    mrs     x7, cntfrq_el0
    mov     x8, #30
    madd    x6, x7, x8, x6
4:  adr     x4, umbra_lmc_ack
    ldr     x5, [x4]
    cmp     x5, x20
    b.eq    5f
    mrs     x7, cntpct_el0
    cmp     x7, x6
    b.lo    4b
    mov     x11, x20
    adr     x10, umbra_lmc_msg_no_ack
    b       umbra_lmc_fail
5:  add     x20, x20, #1
    cmp     x20, #{steps}
    b.ls    3b
    // The last call: hv checks the last step's counts.
    UMBRA_LMC_MOV64 x0, {mid_change}
    mov     x1, #{end}
    mov     x2, #0
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lmc_msg_refused
    cbnz    x0, umbra_lmc_fail
    UMBRA_LMC_PUTS umbra_lmc_msg_pass
    UMBRA_LMC_SYSTEM_OFF

// vCPU 1 (x9 the image, x12 the data pages, x13 L2's root, x20 the step,
// x21 where L2's `hvc #1` returns to, x22 the value read; L2 touches
// none of them).
umbra_lmc_secondary:
    adr     x9, umbra_lmc_image
    adr     x1, umbra_lmc_vectors1
    msr     vbar_el2, x1
    isb
    add     x12, x9, #{data_offset}
    add     x13, x9, #{tables_offset}
    UMBRA_LMC_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    // Step 1: L1's own load of data page 1.
    mov     x20, #1
    bl      umbra_lmc_wait_broken
    ldr     x22, [x12, #0x1000]
    bl      umbra_lmc_expect_new
    // Steps 2 and 3: L2's load of its page 2, then of page 3 (never
    // touched: the service walks L1's table for it).
    mov     x20, #2
    UMBRA_LMC_AT_L2_PAYLOAD
    mov     x1, x20
    UMBRA_LMC_MOV64 x2, 0x102000
    adr     x21, 6f
    eret
6:  mov     x22, x6
    bl      umbra_lmc_expect_new
    mov     x20, #3
    UMBRA_LMC_AT_L2_PAYLOAD
    mov     x1, x20
    UMBRA_LMC_MOV64 x2, 0x103000
    adr     x21, 7f
    eret
7:  mov     x22, x6
    bl      umbra_lmc_expect_new
    // Step 4: AT S12E1R of L2's page 4 (hv walks L1's stage 2), PAR_EL1
    // must name data page 4; then L1 loads that page.
    mov     x20, #4
    bl      umbra_lmc_wait_broken
    UMBRA_LMC_MOV64 x1, 0x104000
    at      s12e1r, x1
    isb
    mrs     x22, par_el1
    mov     x11, x22
    adr     x10, umbra_lmc_msg_par
    tbnz    x22, #0, umbra_lmc_fail
    ubfx    x1, x22, #12, #36
    add     x2, x12, #0x4000
    cmp     x2, x1, lsl #12
    b.ne    umbra_lmc_fail
    ldr     x22, [x12, #0x4000]
    bl      umbra_lmc_expect_new
    // Step 5: L2 with L1's stage 2 off loads data page 5 at its L1 IPA
    // (running at the L1 IPA of its payload).
    mov     x20, #5
    UMBRA_LMC_MOV64 x1, {vhcr_no_vm}
    msr     hcr_el2, x1
    isb
    adr     x1, umbra_lmc_l2
    msr     elr_el2, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    mov     x1, x20
    add     x2, x12, #0x5000
    adr     x21, 8f
    eret
8:  mov     x22, x6
    bl      umbra_lmc_expect_new
    // Step 6: its EL2&0 stage 1 on (E2H = 1: the EL1 encodings name its
    // EL2 registers), the root table (x24) in the tables block: entry 1
    // maps its RAM's GiB 1:1 with a block, entry 2 (the walk VA) a
    // level-2 table at an L1 IPA with nothing behind it.
    mov     x20, #6
    UMBRA_LMC_MOV64 x24, {s1_root_offset}
    add     x24, x9, x24
    mov     x2, #0
1:  str     xzr, [x24, x2]
    add     x2, x2, #8
    cmp     x2, #0x1000
    b.lo    1b
    UMBRA_LMC_MOV64 x1, {s1_block}
    str     x1, [x24, #8]
    UMBRA_LMC_MOV64 x1, {s1_hole_table}
    str     x1, [x24, #16]
    dsb     ish
    UMBRA_LMC_MOV64 x1, {mair}
    msr     mair_el1, x1
    UMBRA_LMC_MOV64 x1, {tcr_vhe}
    msr     tcr_el1, x1
    msr     ttbr0_el1, x24
    isb
    tlbi    alle2
    dsb     ish
    isb
    UMBRA_LMC_MOV64 x1, {sctlr_vhe}
    msr     sctlr_el1, x1
    isb
    // hv writes 6 once it waits for this load's walk abort at its
    // re-walk; it breaks the tables block only then.
    bl      umbra_lmc_wait_broken
    UMBRA_LMC_MOV64 x1, {walk_va}
    adr     x21, 9f
    ldr     x22, [x1]
    mov     x11, x22
    adr     x10, umbra_lmc_msg_walk_load
    b       umbra_lmc_fail
9:  ldr     x22, [x12, #0x6000]
    bl      umbra_lmc_expect_new
    UMBRA_LMC_PUTS umbra_lmc_msg_vcpu1_done
    UMBRA_LMC_MOV64 x0, 0x84000002
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_lmc_msg_cpu_off_returned
    b       umbra_lmc_fail

// Waits until hv says step x20's break is in (`broken` >= x20; hv's own
// wait bounds the step). Clobbers x4, x5.
umbra_lmc_wait_broken:
    adr     x4, umbra_lmc_broken
1:  ldr     x5, [x4]
    cmp     x5, x20
    b.lo    1b
    ret

// Fails unless x22 is step x20's new value; then acks step x20.
// Clobbers x3, x4, x10, x11.
umbra_lmc_expect_new:
    UMBRA_LMC_MOV64 x3, {new_magic}
    orr     x3, x3, x20
    mov     x11, x22
    adr     x10, umbra_lmc_msg_wrong
    cmp     x22, x3
    b.ne    umbra_lmc_fail
    adr     x4, umbra_lmc_ack
    str     x20, [x4]
    dsb     ish
    ret

"#,
    l1_asm_print!("UMBRA_LMC", "umbra_lmc"),
    l1_asm_fail!("UMBRA_LMC", "umbra_lmc"),
    l1_asm_vectors!(
        "UMBRA_LMC",
        "umbra_lmc",
        "umbra_lmc_unexpected",
        "umbra_lmc_unexpected",
        "umbra_lmc_unexpected",
        "umbra_lmc_unexpected",
    ),
    r#"

// vCPU 1's vectors: only L2's `hvc #1` (its load done, the value in x6)
// is expected; L1 goes on at x21.
.balign 2048
umbra_lmc_vectors1:
    UMBRA_LMC_VECTORS umbra_lmc_unexpected, umbra_lmc_walk_abort, umbra_lmc_unexpected, umbra_lmc_l2_hvc, umbra_lmc_unexpected

// Step 6's load: a data abort at its own EL (EC 0x25), an external abort
// on the walk at level 2 (DFSC 0x16), FAR_EL2 the walk VA; L1 goes on at
// x21.
umbra_lmc_walk_abort:
    mrs     x11, esr_el2
    adr     x10, umbra_lmc_msg_walk_esr
    ubfx    x4, x11, #26, #6
    cmp     x4, #0x25
    b.ne    umbra_lmc_fail
    and     x4, x11, #0x3f
    cmp     x4, #0x16
    b.ne    umbra_lmc_fail
    mrs     x11, far_el2
    UMBRA_LMC_MOV64 x3, {walk_va}
    adr     x10, umbra_lmc_msg_walk_far
    cmp     x11, x3
    b.ne    umbra_lmc_fail
    br      x21

umbra_lmc_l2_hvc:
    mrs     x11, esr_el2
    adr     x10, umbra_lmc_msg_unexpected
    ubfx    x4, x11, #26, #6
    cmp     x4, #0x16
    b.ne    umbra_lmc_fail
    and     x4, x11, #0xffff
    cmp     x4, #1
    b.ne    umbra_lmc_fail
    br      x21

.balign 8
umbra_lmc_ack:
    .quad   0
umbra_lmc_msg_start:    .asciz "L1 (mid-change): data pages and L2's stage 2 (VMID 5) written; starting vCPU 1 for the steps\n"
umbra_lmc_msg_vcpu1_done: .asciz "L1 (mid-change): vCPU 1 read every step's new value\n"
umbra_lmc_msg_pass:     .asciz "UMBRA-NESTED-PASS mid-change steps={steps} values=ok\n"
umbra_lmc_msg_one_vcpu: .asciz "L1 (mid-change) needs a second vCPU (three CPUs); PSCI CPU_ON answered "
umbra_lmc_msg_refused:  .asciz "hv refused the mid-change call: "
umbra_lmc_msg_no_ack:   .asciz "vCPU 1 did not finish within 30 s the step "
umbra_lmc_msg_wrong:    .asciz "vCPU 1's access mid hv's change read a value other than the step's new one: "
umbra_lmc_msg_par:      .asciz "vCPU 1's AT S12E1R mid hv's change gave a PAR_EL1 other than data page 4: "
umbra_lmc_msg_walk_load: .asciz "vCPU 1's load from the VA whose level-2 table is outside its RAM returned: "
umbra_lmc_msg_walk_esr: .asciz "vCPU 1's load from the VA whose level-2 table is outside its RAM did not take an external abort on the walk at level 2: ESR_EL2 "
umbra_lmc_msg_walk_far: .asciz "vCPU 1's abort on its walk names another VA: FAR_EL2 "
umbra_lmc_msg_cpu_on:   .asciz "PSCI CPU_ON for vCPU 1 failed: "
umbra_lmc_msg_cpu_off_returned: .asciz "PSCI CPU_OFF returned: "
umbra_lmc_msg_nl:       .asciz "\n"
umbra_lmc_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_lmc_msg_fail_el:  .asciz "CurrentEL is not 2: "
umbra_lmc_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "

// L2 (one page, MMU off, at L2 IPA 0x80000 or, with L1's stage 2 off, at
// its L1 IPA): waits until `broken` >= x1, loads x6 from x2 (the access
// that starts mid hv's change), then `hvc #1`.
.balign 4096
umbra_lmc_l2:
    adr     x4, umbra_lmc_broken
1:  ldr     x5, [x4]
    cmp     x5, x1
    b.lo    1b
    ldr     x6, [x2]
    hvc     #1
    b       .
.balign 8
umbra_lmc_broken:
    .quad   0
.balign 4096
.global umbra_lmc_image_end
umbra_lmc_image_end:
.popsection
"#,
    old_magic = const OLD_MAGIC,
    new_magic = const NEW_MAGIC,
    steps = const STEPS.len(),
    end = const END,
    data_offset = const DATA_OFFSET,
    tables_offset = const TABLES_OFFSET,
    mid_change = const super::nested::HVC_MID_CHANGE,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    vhcr_no_vm = const (super::nested_l1::L1_VIRTUAL_HCR & !1),
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    s1_root_offset = const S1_ROOT_OFFSET,
    s1_block = const (super::nested::L1_BASE | (super::nested_l1_mmu::BLOCK_ATTRS & !(1 << 6))),
    s1_hole_table = const (super::nested_l1::L1_HOLE | 3),
    mair = const super::nested_l1_mmu::MAIR,
    tcr_vhe = const super::nested_l1_mmu::TCR_VHE,
    sctlr_vhe = const super::nested_l1_mmu::SCTLR_VHE,
    walk_va = const WALK_VA,
);

/// vCPU 1's EL2&0 stage-1 root table (step 6): in the tables block, after
/// L2's stage 2.
pub const S1_ROOT_OFFSET: u64 = TABLES_OFFSET + 0x10000;
/// Step 6's VA: level-1 entry 2, whose level-2 table is at `L1_HOLE`.
pub const WALK_VA: u64 = 0x8000_0000;

/// Where L2's stage-2 tables are in L1's RAM: the second 2 MiB block of
/// hv's map (steps 3 and 4 break it).
pub const TABLES_OFFSET: u64 = 2 << 20;
/// Where L1's data pages are: the third block (steps 1, 2 and 5 break
/// it); page s is step s's.
pub const DATA_OFFSET: u64 = 4 << 20;
/// L1's RAM for this image: the three blocks.
pub const L1_RAM_BYTES: u64 = 6 << 20;
// The layout: three blocks of hv's map, the data pages fit the block and
// the `lsl #12` and `add` immediates above, L2's page IPAs the level-3
// table's entries 0x101-0x105 (`mov` immediates), the step loop's `mov`
// immediate the end word.
const _: () = assert!(
    L1_RAM_BYTES == super::nested::L1_RAM_BYTES
        && TABLES_OFFSET.is_multiple_of(2 << 20)
        && DATA_OFFSET == TABLES_OFFSET + (2 << 20)
        && L1_RAM_BYTES == DATA_OFFSET + (2 << 20)
        && STEPS.len() == 6
        && super::nested::L1_BASE == 1 << 30
        && WALK_VA == 2 << 30
        && END < 1 << 16
);

assembled_image!(
    "The mid-change L1 image's bytes (code, data and the L2 payload).",
    umbra_lmc_image,
    umbra_lmc_image_end
);
