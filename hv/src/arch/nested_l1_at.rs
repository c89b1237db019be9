//! The `hv.nested=at` guest hypervisor (L1): a VHE one with its MMU off
//! that executes address translation instructions on its L2's regime and
//! its own, and checks PAR_EL1 (hv emulates them: `arch::nested::at`,
//! `crate::nested::at`). Copied by `arch::nested` into L1's memory like
//! `arch::nested_l1`; data to hv, never executed at EL2. L1's own AT
//! instructions only read L2's registers and tables; L2 runs once at the
//! end for an AT of its own.
//!
//! L1 (at L1 IPA `L1_BASE`, stack at +1 MiB):
//! 1. checks CurrentEL reads 2, sets VBAR_EL2;
//! 2. builds L2's stage 2 (VMID 5, 39-bit IPA from level 1, its tables at
//!    +0x200000) mapping L2 IPA 0x80000-0x82000 and 0x85000 to L2's
//!    stage-1 tables (+0x210000..+0x213000), 0x84000 to an L1 IPA with
//!    nothing behind it, 0x90000 to page D (+0x220000) read/write Normal
//!    Write-Through and 0x91000 to page E (+0x221000) read-only, 0xa0000
//!    to L2's code page, the others Normal write-back, all Inner
//!    Shareable; 0x83000 unmapped;
//! 3. builds L2's stage 1 (4 KiB, T0SZ 25: level 1 at L2 IPA 0x80000):
//!    VA 0x10000 is L2 IPA 0x90000 (EL1 only, AttrIndx 0 = Normal WB, Inner
//!    Shareable), VA 0x11000 is 0x91000 (read/write at stage 1), VA
//!    0x12000 is invalid at level 3, VA 0x200000's level-3 table is at the
//!    unmapped L2 IPA 0x83000, VA 0x400000's at 0x84000, VA 0x600000 is
//!    L2's code (IPA 0xa0000, its level-3 table at 0x85000); writes L2's
//!    SCTLR (M, C), TCR, TTBR0, MAIR through the `_EL12` encodings (its
//!    VNCR page) and its own VTCR/VTTBR/HCR_EL2 (RW, VM: stage 2 on);
//! 4. checks PAR_EL1 after: AT S1E1R of VA 0x10123 (IPA 0x90000, ATTR 0xff,
//!    SH 0b11), AT S12E1R of it (L1 IPA of page D, ATTR 0xbb: stage 1's
//!    Write-Back with stage 2's Write-Through), AT S1E1R of 0x12000
//!    (stage-1 translation fault, level 3), AT S1E1R of 0x200000 (a
//!    stage-2 translation fault at level 3 on the stage-1 walk: S = 1,
//!    PTW = 1), AT S12E1W of 0x11000 (a stage-2 permission fault: S = 1,
//!    PTW = 0) and AT S12E1R of it (page E), AT S1E0R of 0x10000 (EL0 has
//!    no access: a permission fault), AT S1E2R of its own address (its
//!    MMU off: PA = VA, Device-nGnRnE); then AT S1E1R of 0x400000, whose
//!    level-3 table is behind the L1 IPA with nothing: a synchronous
//!    external abort on the walk (level 3), taken at its own vector as a
//!    Data Abort (EC 0x25, CM, WnR, DFSC 0x17, FAR_EL2 the VA);
//! 5. enters L2 at VA 0x600000 (its MMU on), which executes AT S1E1R of
//!    0x10123 itself, in hardware on hv's shadow stage 2, where its
//!    level-3 table (L2 IPA 0x82000) is not filled yet (L1's own ATs read
//!    memory in hv's software, L2's fetches walk only the other tables):
//!    the stage-2 fault on the walk is a Data Abort to hv (an AT at EL1,
//!    not a PAR_EL1 value), which fills the page from L1's stage 2, and
//!    L2's AT again gives the IPA (the PAR of step 4's first AT); L2
//!    reports it with hvc #1;
//! 6. prints `UMBRA-NESTED-PASS at ...` and calls PSCI SYSTEM_OFF, or on any
//!    mismatch `UMBRA-NESTED-FAIL: <why>` and PSCI SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1A", "umbra_l1a"),
    r#"
// PAR_EL1 after `at \op, \va` must be \par.
.macro UMBRA_L1A_AT op, va, par, msg
    UMBRA_L1A_MOV64 x1, \va
    at      \op, x1
    isb
    mrs     x11, par_el1
    UMBRA_L1A_EXPECT x11, \par, \msg
.endm
// A stage-2 leaf for L2 IPA \ipa: L1 IPA x9 + \offset | \attrs.
.macro UMBRA_L1A_S2 ipa, offset, attrs
    UMBRA_L1A_MOV64 x1, \offset
    add     x1, x1, x9
    UMBRA_L1A_MOV64 x2, \attrs
    orr     x1, x1, x2
    str     x1, [x14, #((\ipa >> 12) * 8)]
.endm

.pushsection .rodata.umbra_l1_at, "a"
.balign 4096
.global umbra_l1_at_image
umbra_l1_at_image:
    adr     x9, umbra_l1_at_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    mov     x11, x1
    adr     x10, umbra_l1a_msg_fail_el
    cmp     x1, #8
    b.ne    umbra_l1a_fail
    adr     x1, umbra_l1a_vectors
    msr     vbar_el2, x1
    isb
    // L2's stage 2 at +0x200000 (root, level 2, level 3 in x14).
    add     x13, x9, #0x200000
    UMBRA_L1A_L2_STAGE2_TABLES
    UMBRA_L1A_S2 0x80000, 0x210000, 0x7ff
    UMBRA_L1A_S2 0x81000, 0x211000, 0x7ff
    UMBRA_L1A_S2 0x82000, 0x212000, 0x7ff
    UMBRA_L1A_S2 0x85000, 0x213000, 0x7ff
    // Page D Normal Write-Through at stage 2 (MemAttr 0b1010): AT
    // S12E1R's ATTR is the combination, not stage 1's.
    UMBRA_L1A_S2 0x90000, 0x220000, 0x7eb
    // Read-only at stage 2 (S2AP 0b01).
    UMBRA_L1A_S2 0x91000, 0x221000, 0x77f
    UMBRA_L1A_MOV64 x1, ({l1_hole} | 0x7ff)
    str     x1, [x14, #(0x84 * 8)]
    // L2's code page (L2 IPA 0xa0000).
    adr     x1, umbra_l2a_payload
    orr     x1, x1, #0x7ff
    str     x1, [x14, #(0xa0 * 8)]
    // L2's stage-1 tables at +0x210000 (level 1, 2, 3, and the level 3
    // of L2's code), zeroed.
    add     x12, x9, #0x210000
    mov     x2, #0
1:  str     xzr, [x12, x2]
    add     x2, x2, #8
    cmp     x2, #0x4000
    b.lo    1b
    UMBRA_L1A_MOV64 x1, (0x81000 | 3)
    str     x1, [x12]
    add     x4, x12, #0x1000
    UMBRA_L1A_MOV64 x1, (0x82000 | 3)
    str     x1, [x4]
    UMBRA_L1A_MOV64 x1, (0x83000 | 3)
    str     x1, [x4, #8]
    UMBRA_L1A_MOV64 x1, (0x84000 | 3)
    str     x1, [x4, #16]
    UMBRA_L1A_MOV64 x1, (0x85000 | 3)
    str     x1, [x4, #24]
    add     x4, x12, #0x3000
    UMBRA_L1A_MOV64 x1, (0xa0000 | {page})
    str     x1, [x4]
    add     x4, x12, #0x2000
    UMBRA_L1A_MOV64 x1, (0x90000 | {page})
    str     x1, [x4, #(0x10 * 8)]
    UMBRA_L1A_MOV64 x1, (0x91000 | {page})
    str     x1, [x4, #(0x11 * 8)]
    dsb     ish
    // L2's EL1 registers (the VNCR page): MAIR, TCR, TTBR0, SCTLR.
    UMBRA_L1A_MOV64 x1, {mair}
    msr     s3_5_c10_c2_0, x1
    UMBRA_L1A_MOV64 x1, {tcr}
    msr     s3_5_c2_c0_2, x1
    mov     x1, #0x80000
    msr     s3_5_c2_c0_0, x1
    UMBRA_L1A_MOV64 x1, {sctlr}
    msr     s3_5_c1_c0_0, x1
    UMBRA_L1A_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    UMBRA_L1A_PUTS umbra_l1a_msg_built
    UMBRA_L1A_AT s1e1r, 0x10123, {par_s1}, umbra_l1a_msg_bad_s1e1r
    UMBRA_L1A_REPORT umbra_l1a_msg_s1e1r, x11
    UMBRA_L1A_AT s12e1r, 0x10123, {par_s12}, umbra_l1a_msg_bad_s12e1r
    UMBRA_L1A_REPORT umbra_l1a_msg_s12e1r, x11
    UMBRA_L1A_AT s1e1r, 0x12000, {par_s1_fault}, umbra_l1a_msg_bad_s1_fault
    UMBRA_L1A_REPORT umbra_l1a_msg_s1_fault, x11
    UMBRA_L1A_AT s1e1r, 0x200000, {par_s2_walk}, umbra_l1a_msg_bad_s2_walk
    UMBRA_L1A_REPORT umbra_l1a_msg_s2_walk, x11
    UMBRA_L1A_AT s12e1w, 0x11000, {par_s2_perm}, umbra_l1a_msg_bad_s2_perm
    UMBRA_L1A_REPORT umbra_l1a_msg_s2_perm, x11
    UMBRA_L1A_AT s12e1r, 0x11000, {par_s12_ro}, umbra_l1a_msg_bad_s12_ro
    UMBRA_L1A_AT s1e0r, 0x10000, {par_s1_perm}, umbra_l1a_msg_bad_s1e0r
    UMBRA_L1A_REPORT umbra_l1a_msg_s1e0r, x11
    UMBRA_L1A_AT s1e2r, {l1_base}, {par_s1e2}, umbra_l1a_msg_bad_s1e2r
    UMBRA_L1A_REPORT umbra_l1a_msg_s1e2r, x11
    // The external abort: the current-EL vector checks ESR_EL2 and
    // FAR_EL2, clears the flag and returns past the AT.
    adr     x4, umbra_l1a_expect
    mov     x5, #1
    str     x5, [x4]
    mov     x1, #0x400000
    at      s1e1r, x1
    isb
    adr     x4, umbra_l1a_expect
    ldr     x11, [x4]
    adr     x10, umbra_l1a_msg_no_abort
    cbnz    x11, umbra_l1a_fail
    // L2 runs its own AT S1E1R of 0x10123 (in hardware: L1 sets no
    // HCR_EL2.AT), whose level-3 table (L2 IPA 0x82000) nothing touched
    // through the shadow yet; it reports PAR_EL1 with hvc #1.
    UMBRA_L1A_MOV64 x1, {l2_vbar}
    msr     s3_5_c12_c0_0, x1
    UMBRA_L1A_MOV64 x1, {l2_entry}
    msr     elr_el2, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    eret

// L2's exit: hvc #1 with its PAR_EL1 in x2, or hvc #2 from its vector
// with its ESR_EL1 in x2.
umbra_l1a_lower_sync:
    mrs     x11, esr_el2
    UMBRA_L1A_MOV64 x3, 0x5a000002
    adr     x10, umbra_l1a_msg_l2_exception
    cmp     x11, x3
    b.ne    1f
    mov     x11, x2
    b       umbra_l1a_fail
1:  UMBRA_L1A_EXPECT x11, 0x5a000001, umbra_l1a_msg_bad_l2_exit
    UMBRA_L1A_EXPECT x2, {par_s1}, umbra_l1a_msg_bad_l2_at
    UMBRA_L1A_REPORT umbra_l1a_msg_l2_at, x2
    UMBRA_L1A_PUTS umbra_l1a_msg_pass
    UMBRA_L1A_SYSTEM_OFF

// The expected external abort of AT S1E1R of x1 (= 0x400000).
umbra_l1a_current_sync:
    adr     x4, umbra_l1a_expect
    ldr     x5, [x4]
    cbz     x5, umbra_l1a_unexpected
    mrs     x11, esr_el2
    UMBRA_L1A_EXPECT x11, {abort_esr}, umbra_l1a_msg_bad_esr
    mrs     x11, far_el2
    adr     x10, umbra_l1a_msg_bad_far
    cmp     x11, x1
    b.ne    umbra_l1a_fail
    mrs     x11, esr_el2
    UMBRA_L1A_REPORT umbra_l1a_msg_abort, x11
    adr     x4, umbra_l1a_expect
    str     xzr, [x4]
    mrs     x6, elr_el2
    add     x6, x6, #4
    msr     elr_el2, x6
    eret

"#,
    l1_asm_print!("UMBRA_L1A", "umbra_l1a"),
    l1_asm_fail!("UMBRA_L1A", "umbra_l1a"),
    l1_asm_vectors!(
        "UMBRA_L1A",
        "umbra_l1a",
        "umbra_l1a_current_sync",
        "umbra_l1a_unexpected",
        "umbra_l1a_lower_sync",
        "umbra_l1a_unexpected",
    ),
    r#"

.balign 8
umbra_l1a_expect:
    .quad   0
umbra_l1a_msg_built:     .asciz "L1 (at): L2's stage 1 (L2 IPA 0x80000) and stage 2 (VMID 5) built, L2's SCTLR/TCR/TTBR0/MAIR_EL1 through the _EL12 encodings\n"
umbra_l1a_msg_s1e1r:     .asciz "L1 (at): AT S1E1R of L2's VA 0x10123 (through L1's stage 2): PAR_EL1 "
umbra_l1a_msg_s12e1r:    .asciz "L1 (at): AT S12E1R of it: PAR_EL1 "
umbra_l1a_msg_s1_fault:  .asciz "L1 (at): AT S1E1R of 0x12000 (invalid at level 3): PAR_EL1 "
umbra_l1a_msg_s2_walk:   .asciz "L1 (at): AT S1E1R of 0x200000 (its level-3 table at an L2 IPA L1 left unmapped: S = 1, PTW = 1): PAR_EL1 "
umbra_l1a_msg_s2_perm:   .asciz "L1 (at): AT S12E1W of 0x11000 (read-only at stage 2): PAR_EL1 "
umbra_l1a_msg_s1e0r:     .asciz "L1 (at): AT S1E0R of 0x10000 (EL1 only): PAR_EL1 "
umbra_l1a_msg_s1e2r:     .asciz "L1 (at): AT S1E2R of its own base (its MMU off): PAR_EL1 "
umbra_l1a_msg_abort:     .asciz "L1 (at): AT S1E1R of 0x400000 (its level-3 table behind an L1 IPA with nothing): external abort on the walk, ESR_EL2 "
umbra_l1a_msg_l2_at:     .asciz "L1 (at): L2's own AT S1E1R of 0x10123 (its level-3 table untouched through the shadow): PAR_EL1 "
umbra_l1a_msg_pass:      .asciz "UMBRA-NESTED-PASS at s1e1r=ok s12e1r=ok s1-fault=ok s2-walk-fault=ok s12e1w-s2-perm=ok s1e0r=ok s1e2r=ok walk-abort=ok l2-at=ok\n"
umbra_l1a_msg_nl:        .asciz "\n"
umbra_l1a_msg_fail:      .asciz "UMBRA-NESTED-FAIL: "
umbra_l1a_msg_fail_el:   .asciz "CurrentEL is not 2: "
umbra_l1a_msg_bad_s1e1r: .asciz "AT S1E1R of L2's VA 0x10123 gave a wrong PAR_EL1: "
umbra_l1a_msg_bad_s12e1r: .asciz "AT S12E1R of L2's VA 0x10123 gave a wrong PAR_EL1: "
umbra_l1a_msg_bad_s1_fault: .asciz "AT S1E1R of L2's invalid VA 0x12000 gave a wrong PAR_EL1: "
umbra_l1a_msg_bad_s2_walk: .asciz "AT S1E1R of 0x200000 (stage-2 fault on the walk) gave a wrong PAR_EL1: "
umbra_l1a_msg_bad_s2_perm: .asciz "AT S12E1W of 0x11000 (stage-2 read-only) gave a wrong PAR_EL1: "
umbra_l1a_msg_bad_s12_ro: .asciz "AT S12E1R of 0x11000 gave a wrong PAR_EL1: "
umbra_l1a_msg_bad_s1e0r: .asciz "AT S1E0R of the EL1-only 0x10000 gave a wrong PAR_EL1: "
umbra_l1a_msg_bad_s1e2r: .asciz "AT S1E2R of L1's own base gave a wrong PAR_EL1: "
umbra_l1a_msg_no_abort:  .asciz "AT S1E1R of 0x400000 took no external abort: "
umbra_l1a_msg_bad_esr:   .asciz "the AT's external abort has a wrong ESR_EL2: "
umbra_l1a_msg_bad_far:   .asciz "the AT's external abort has a wrong FAR_EL2: "
umbra_l1a_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1a_msg_l2_exception: .asciz "L2 took an exception at its EL1, ESR_EL1 "
umbra_l1a_msg_bad_l2_exit: .asciz "L2 exited other than by hvc #1, ESR_EL2 "
umbra_l1a_msg_bad_l2_at: .asciz "L2's own AT S1E1R of 0x10123 gave a wrong PAR_EL1: "

// L2's code (L2 IPA 0xa0000, its VA 0x600000): AT S1E1R, PAR_EL1 to L1.
.balign 4096
umbra_l2a_payload:
    UMBRA_L1A_MOV64 x1, 0x10123
    at      s1e1r, x1
    isb
    mrs     x2, par_el1
    hvc     #1
    b       .
// L2's VBAR_EL1 (VA 0x600800): every exception reports ESR_EL1 to L1.
.balign 2048
umbra_l2a_vectors:
    .rept 16
    mrs     x2, esr_el1
    hvc     #2
    b       .
    .balign 128
    .endr
.balign 4096
.global umbra_l1_at_image_end
umbra_l1_at_image_end:
.popsection
"#,
    l1_base = const super::nested::L1_BASE,
    l1_hole = const super::nested_l1::L1_HOLE,
    page = const PAGE_ATTRS,
    mair = const 0xff,
    tcr = const super::nested_l1_mmu::TCR_VHE,
    sctlr = const crate::sysregs::SCTLR_EL1_MMU_OFF | 1 | (1 << 2),
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const AT_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    par_s1 = const PAR_S1E1R,
    par_s12 = const PAR_S12E1R,
    par_s1_fault = const PAR_S1_FAULT,
    par_s2_walk = const PAR_S2_WALK_FAULT,
    par_s2_perm = const PAR_S2_PERMISSION,
    par_s12_ro = const PAR_S12E1R_READ_ONLY,
    par_s1_perm = const PAR_S1_PERMISSION,
    par_s1e2 = const PAR_S1E2R,
    abort_esr = const ABORT_ESR,
    l2_entry = const L2_CODE_VA,
    l2_vbar = const (L2_CODE_VA + 0x800),
    putc = const super::nested::HVC_CONSOLE_PUTC,
);

/// L2's stage-1 page attributes: AF, Inner Shareable, AP 0b00 (EL1
/// read/write, no EL0 access), AttrIndx 0, page.
pub const PAGE_ATTRS: u64 = (1 << 10) | (0b11 << 8) | 0b11;
/// L2's code page at its VA (L2 IPA 0xa0000, through the level-3 table at
/// L2 IPA 0x85000, apart from the one of VA 0x10000).
pub const L2_CODE_VA: u64 = 0x60_0000;
/// L1's HCR_EL2 for L2: RW, VM (no DC: L2's stage 1 counts).
pub const AT_VIRTUAL_HCR: u64 = (1 << 31) | 1;

// The PAR_EL1 values the architecture gives (DDI 0487 PAR_EL1, 64-bit
// format), written out here rather than computed by hv's own encoder.
// Success: ATTR [63:56], PA [51:12], bit 11 RES1, NS (bit 9: hv reports
// 1), SH [8:7] (0b10 for Device). Fault: F, FST [6:1], PTW (8), S (9),
// bit 11 RES1.

/// AT S1E1R of 0x10123: L2 IPA 0x90000, Normal WB (0xff), Inner
/// Shareable.
pub const PAR_S1E1R: u64 = 0xff00_0000_0009_0b80;
/// AT S12E1R of 0x10123: page D's L1 IPA (+0x220000), stage 1's Normal
/// WB RAWA (0xff) with stage 2's Write-Through: Write-Through keeping
/// stage 1's allocation hints, non-transient (0xbb; S2CombineS1AttrHints).
pub const PAR_S12E1R: u64 = 0xbb00_0000_4022_0b80;
/// A level-3 translation fault at stage 1 (FST 0x07).
pub const PAR_S1_FAULT: u64 = 0x80f;
/// A level-3 translation fault at stage 2 on the stage-1 walk (S, PTW).
pub const PAR_S2_WALK_FAULT: u64 = 0xb0f;
/// A level-3 permission fault at stage 2 on the output (S; FST 0x0f).
pub const PAR_S2_PERMISSION: u64 = 0xa1f;
/// AT S12E1R of 0x11000: page E (+0x221000).
pub const PAR_S12E1R_READ_ONLY: u64 = 0xff00_0000_4022_1b80;
/// A level-3 permission fault at stage 1.
pub const PAR_S1_PERMISSION: u64 = 0x81f;
/// AT S1E2R of L1's base with its MMU off: the address, Device-nGnRnE
/// (ATTR 0), SH 0b10.
pub const PAR_S1E2R: u64 = 0x4000_0b00;
/// The AT's external abort at its own EL: EC 0x25, IL, CM, WnR, DFSC
/// 0x17 (synchronous external abort on the walk, level 3).
pub const ABORT_ESR: u64 = 0x9600_0157;

assembled_image!(
    "The `at` L1 image's bytes.",
    umbra_l1_at_image,
    umbra_l1_at_image_end
);
