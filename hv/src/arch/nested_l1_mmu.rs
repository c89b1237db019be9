//! The `hv.nested=mmu` guest hypervisor (L1): a non-VHE one (HCR_EL2.E2H
//! = 0; hv shows it no FEAT_VHE) that turns its EL2 stage-1 MMU on, as
//! every real guest hypervisor does. Assembled into hv's read-only data and
//! copied by `arch::nested` into L1's memory (position independent: every
//! address comes from `adr`; data is reached at whichever VA the code runs
//! at, and an L1 IPA is found from a VA by its low 30 bits, since L1's RAM
//! is in the 1 GiB at `L1_BASE` and both of L1's mappings of it are 1 GiB
//! aligned).
//!
//! L1 (at L1 IPA `L1_BASE`, stack at +1 MiB):
//! 1. checks CurrentEL reads 2, reads whether it is shown FEAT_VHE
//!    (ID_AA64MMFR1_EL1.VH; `mmu` shows none, so E2H is RES0; `mmu-vhe`
//!    shows it, and L1 then writes SCTLR_EL2 through the SCTLR_EL1
//!    encoding, as E2H = 1 software does, for hv to refuse), sets VBAR_EL2
//!    (its IPA, MMU off);
//! 2. builds its EL2 stage-1 tables at +0x380000 (4 KiB granule, T0SZ 25:
//!    a 39-bit VA from level 1): entry 1 maps its RAM 1:1 (2 MiB blocks),
//!    entry 2 an alias of it at VA + 0x40000000 (its own level-2 table),
//!    entry 0 points back to the level-1 table (so a walk from level 0, as
//!    with T0SZ 16, still reaches the same leaves and `mmu-no-t0sz` is
//!    caught by the range check below rather than by a crash), entry 3
//!    nothing, entry 4 a level-2 table at an IPA with nothing behind it;
//! 3. programs MAIR_EL2, TCR_EL2, TTBR0_EL2, TLBI ALLE2, then SCTLR_EL2
//!    (M, C, I), and checks SCTLR_EL2 and TCR_EL2 read back as written;
//! 4. checks a value written through the identity map reads back through
//!    the alias and one written through the alias reads through the
//!    identity map (with the MMU not really on, the alias VA is an IPA
//!    outside L1's RAM: an external abort); checks PAR_EL1 after AT S1E2R
//!    and S1E2W of page A's alias (its L1 IPA) and AT S1E2R of an unmapped
//!    VA (a level 1 translation fault); moves VBAR_EL2 to the alias;
//! 5. loads from VA 0xc0000000 (unmapped): a stage-1 translation fault at
//!    level 1 must arrive at its own current-EL vector (through the alias)
//!    with ESR_EL2 EC 0x25, DFSC 0x05, WnR 0 and FAR_EL2 the VA; then from
//!    VA 0x8040000000, beyond its 39-bit range: level 0 (DFSC 0x04); then
//!    from VA 0x100000000, whose level-2 table L1's entry 4 puts at an IPA
//!    with nothing behind it: an external abort on the walk at level 2
//!    (DFSC 0x16; hv finds the level by walking L1's tables);
//! 6. reads page A through the alias's second block (so the TLB may hold
//!    it), remaps that block to another 2 MiB of its RAM with
//!    break-before-make and TLBI VAE2IS: the alias must then read the new
//!    page (the stale translation, if hv dropped L1's own TLBI, fails:
//!    `mmu-no-el2-tlbi`);
//! 7. builds a stage 2 for L2 (as the demo: 39-bit IPA, VMID 5; L2 IPA
//!    0x80000 the L2 payload, 0x100000 page A, 0x101000 unmapped), ERETs
//!    to L2 and handles its exits at the alias vector with the MMU on:
//!    `hvc #1` (L2 read page A), the stage-2 fault on 0x101000 (ESR_EL2,
//!    HPFAR_EL2; maps page B, TLBI IPAS2E1IS + VMALLE1IS, ERET to retry),
//!    `hvc #2` (L2 read B); after L2's exits it takes the unmapped-VA fault
//!    again and re-reads the alias (its regime restored after L2's);
//! 8. (shown no FEAT_VHE, or it fails) prints `UMBRA-NESTED-PASS mmu ...` and calls PSCI SYSTEM_OFF, or on
//!    any mismatch `UMBRA-NESTED-FAIL: <why>` and PSCI SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1M", "umbra_l1m"),
    r#"
// \reg = the L1 IPA of the image (from a VA through either mapping).
.macro UMBRA_L1M_BASE_IPA reg
    adr     \reg, umbra_l1m_image
    and     \reg, \reg, #0x3fffffff
    orr     \reg, \reg, #{l1_base}
.endm
// Expect a stage-1 data abort with DFSC \dfsc on a load from \va (x1):
// the current-EL vector checks and clears the flag.
.macro UMBRA_L1M_ATTRS reg, scratch
    UMBRA_L1M_MOV64 \reg, {block_attrs}
    adr     \scratch, umbra_l1m_vhe
    ldr     \scratch, [\scratch]
    cbz     \scratch, 1f
    // E2H = 1 (EL2&0, two privilege levels): AP[1] 0, EL2-only (an
    // EL0-writable page would never be executable at EL2).
    bic     \reg, \reg, #(1 << 6)
1:
.endm
.macro UMBRA_L1M_PROBE va, dfsc
    adr     x4, umbra_l1m_expect
    mov     x5, #(0x100 | \dfsc)
    str     x5, [x4]
    UMBRA_L1M_MOV64 x1, \va
    ldr     x2, [x1]
    adr     x4, umbra_l1m_expect
    ldr     x11, [x4]
    adr     x10, umbra_l1m_msg_no_fault
    cbnz    x11, umbra_l1m_fail
.endm

.pushsection .rodata.umbra_l1_mmu, "a"
.balign 4096
.global umbra_l1_mmu_image
umbra_l1_mmu_image:
umbra_l1m_image:
    adr     x9, umbra_l1m_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    mov     x11, x1
    adr     x10, umbra_l1m_msg_fail_el
    cmp     x1, #8
    b.ne    umbra_l1m_fail
    // ID_AA64MMFR1_EL1.VH: hv shows this L1 no FEAT_VHE (E2H RES0), or
    // (`mmu-vhe`) FEAT_VHE: then L1 is a VHE guest hypervisor and reaches
    // its EL2&0 registers through the EL1 encodings, as E2H = 1 software
    // does.
    mrs     x11, s3_0_c0_c7_1
    ubfx    x1, x11, #8, #4
    adr     x4, umbra_l1m_vhe
    str     x1, [x4]
    cbz     x1, 11f
    UMBRA_L1M_PUTS umbra_l1m_msg_vhe
    b       12f
11: UMBRA_L1M_PUTS umbra_l1m_msg_el2
12:
    adr     x1, umbra_l1m_vectors
    msr     vbar_el2, x1
    isb
    // A non-VHE L1 uses FP/SIMD at its virtual EL2 (its CPTR_EL2.TFP is
    // 0, as hv gives it: review 34 R34-1): fmov d0, xzr. (A VHE L1's FP
    // trap control is its own CPACR/CPTR_EL2, which this L1 leaves alone.)
    adr     x4, umbra_l1m_vhe
    ldr     x4, [x4]
    cbnz    x4, 88f
    .inst   0x9e6703e0 // fmov d0, xzr (hv is built soft-float)
88:
    // Values: page A (+0x300000), B (+0x301000) and the remap target D
    // (+0x500000); the alias check word is at +0x180000 (the alias's
    // first block, which the remap leaves alone).
    add     x12, x9, #0x300000
    UMBRA_L1M_MOV64 x1, {magic_a}
    str     x1, [x12]
    UMBRA_L1M_MOV64 x1, {magic_b}
    str     x1, [x12, #0x1000]
    add     x2, x9, #0x500000
    UMBRA_L1M_MOV64 x1, {magic_d}
    str     x1, [x2]
    // EL2 stage 1: level 1 at +0x380000, identity level 2 at +0x381000,
    // alias level 2 at +0x382000.
    add     x13, x9, #0x380000
    mov     x2, #0
1:  str     xzr, [x13, x2]
    add     x2, x2, #8
    cmp     x2, #0x3000
    b.lo    1b
    orr     x1, x13, #3
    str     x1, [x13]
    add     x1, x13, #0x1000
    orr     x1, x1, #3
    str     x1, [x13, #8]
    add     x1, x13, #0x2000
    orr     x1, x1, #3
    str     x1, [x13, #16]
    // Entry 4 (VA 4 GiB): a level-2 table at an L1 IPA with nothing
    // behind it (L0 maps only L1's RAM).
    UMBRA_L1M_MOV64 x1, ({l1_hole} | 3)
    str     x1, [x13, #32]
    // Blocks: OA | AF | SH inner | AP[1] | AttrIndx 0 | block.
    mov     x2, #0
    UMBRA_L1M_ATTRS x3, x5
2:  lsl     x1, x2, #21
    add     x1, x1, x9
    orr     x1, x1, x3
    add     x4, x13, #0x1000
    str     x1, [x4, x2, lsl #3]
    add     x4, x13, #0x2000
    str     x1, [x4, x2, lsl #3]
    add     x2, x2, #1
    cmp     x2, #3
    b.lo    2b
    dsb     ish
    adr     x4, umbra_l1m_vhe
    ldr     x4, [x4]
    cbnz    x4, 13f
    // E2H = 0: the EL2 encodings (each traps; hv converts the regime).
    UMBRA_L1M_MOV64 x1, {mair}
    msr     mair_el2, x1
    UMBRA_L1M_MOV64 x1, {tcr}
    msr     tcr_el2, x1
    msr     ttbr0_el2, x13
    isb
    tlbi    alle2
    dsb     ish
    isb
    UMBRA_L1M_MOV64 x1, {sctlr}
    msr     sctlr_el2, x1
    isb
    // Read back what was written (RES1 bits included).
    mrs     x11, sctlr_el2
    adr     x10, umbra_l1m_msg_bad_sctlr
    cmp     x11, x1
    b.ne    umbra_l1m_fail
    mrs     x11, tcr_el2
    UMBRA_L1M_MOV64 x1, {tcr}
    adr     x10, umbra_l1m_msg_bad_tcr
    cmp     x11, x1
    b.ne    umbra_l1m_fail
    UMBRA_L1M_PUTS umbra_l1m_msg_mmu_on
    b       14f
    // E2H = 1: the EL1 encodings name its EL2 registers (TVM/TRVM trap
    // them for hv); TCR_EL2 in TCR_EL1's format, TTBR1 never walked.
13: UMBRA_L1M_MOV64 x1, {mair}
    msr     mair_el1, x1
    UMBRA_L1M_MOV64 x1, {tcr_vhe}
    msr     tcr_el1, x1
    msr     ttbr0_el1, x13
    isb
    tlbi    alle2
    dsb     ish
    isb
    UMBRA_L1M_MOV64 x1, {sctlr_vhe}
    msr     sctlr_el1, x1
    isb
    mrs     x11, sctlr_el1
    adr     x10, umbra_l1m_msg_bad_sctlr
    cmp     x11, x1
    b.ne    umbra_l1m_fail
    mrs     x11, tcr_el1
    UMBRA_L1M_MOV64 x1, {tcr_vhe}
    adr     x10, umbra_l1m_msg_bad_tcr
    cmp     x11, x1
    b.ne    umbra_l1m_fail
    UMBRA_L1M_PUTS umbra_l1m_msg_mmu_on_vhe
14:
    bl      umbra_l1m_check_alias
    // AT S1E2R and S1E2W of page A's alias, and AT S1E2R of an unmapped
    // VA, through its own regime (hv emulates them, `arch::nested::at`).
    UMBRA_L1M_MOV64 x5, {alias_offset}
    add     x1, x12, x5
    at      s1e2r, x1
    isb
    mrs     x11, par_el1
    UMBRA_L1M_EXPECT x11, {par_alias}, umbra_l1m_msg_bad_at
    at      s1e2w, x1
    isb
    mrs     x11, par_el1
    UMBRA_L1M_EXPECT x11, {par_alias}, umbra_l1m_msg_bad_at
    UMBRA_L1M_MOV64 x1, {unmapped_va}
    at      s1e2r, x1
    isb
    mrs     x11, par_el1
    UMBRA_L1M_EXPECT x11, {par_unmapped}, umbra_l1m_msg_bad_at_fault
    UMBRA_L1M_PUTS umbra_l1m_msg_at
    // VBAR_EL2 through the alias: only this regime makes it an address.
    adr     x1, umbra_l1m_vectors
    UMBRA_L1M_MOV64 x2, {alias_offset}
    add     x1, x1, x2
    msr     vbar_el2, x1
    isb
    UMBRA_L1M_PROBE {unmapped_va}, 0x05
    UMBRA_L1M_PUTS umbra_l1m_msg_fault_l1
    UMBRA_L1M_PROBE {beyond_va}, 0x04
    UMBRA_L1M_PUTS umbra_l1m_msg_fault_l0
    UMBRA_L1M_PROBE {walk_va}, 0x16
    UMBRA_L1M_PUTS umbra_l1m_msg_fault_walk
    // Remap the alias's block 1 (VA +0x40200000) to RAM +0x400000, so
    // alias page A (VA +0x40300000) becomes RAM +0x500000 (D): read A
    // through it first (the TLB may now hold that translation), then
    // break, TLBI VAE2IS, make.
    UMBRA_L1M_MOV64 x5, {alias_offset}
    add     x5, x12, x5
    ldr     x11, [x5]
    UMBRA_L1M_MOV64 x3, {magic_a}
    adr     x10, umbra_l1m_msg_bad_alias
    cmp     x11, x3
    b.ne    umbra_l1m_fail
    add     x4, x13, #0x2000
    str     xzr, [x4, #8]
    dsb     ishst
    lsr     x6, x5, #12
    tlbi    vae2is, x6
    dsb     ish
    add     x1, x9, #0x400000
    UMBRA_L1M_ATTRS x3, x7
    orr     x1, x1, x3
    str     x1, [x4, #8]
    dsb     ish
    isb
    ldr     x11, [x5]
    UMBRA_L1M_MOV64 x3, {magic_d}
    cmp     x11, x3
    b.eq    3f
    UMBRA_L1M_MOV64 x3, {magic_a}
    adr     x10, umbra_l1m_msg_stale_s1
    cmp     x11, x3
    b.eq    umbra_l1m_fail
    adr     x10, umbra_l1m_msg_bad_remap
    b       umbra_l1m_fail
3:  UMBRA_L1M_PUTS umbra_l1m_msg_remapped
    // L2's stage 2 at +0x200000: root (level 1), level 2, level 3.
    add     x13, x9, #0x200000
    UMBRA_L1M_L2_STAGE2_TABLES umbra_l2m_payload
    orr     x1, x12, #0x7ff
    str     x1, [x14, #0x100 * 8]
    UMBRA_L1M_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    UMBRA_L1M_PUTS umbra_l1m_msg_enter
    UMBRA_L1M_AT_L2_PAYLOAD
    eret

// Checks the alias against the identity map both ways (clobbers x0-x7,
// x10, x11, x15; x9 is the image's identity VA).
umbra_l1m_check_alias:
    mov     x7, x30
    UMBRA_L1M_BASE_IPA x3
    add     x3, x3, #0x180000
    UMBRA_L1M_MOV64 x4, {alias_offset}
    add     x4, x3, x4
    UMBRA_L1M_MOV64 x5, {magic_alias}
    str     x5, [x3]
    ldr     x11, [x4]
    adr     x10, umbra_l1m_msg_bad_alias
    cmp     x11, x5
    b.ne    umbra_l1m_fail
    add     x5, x5, #1
    str     x5, [x4]
    ldr     x11, [x3]
    adr     x10, umbra_l1m_msg_bad_alias_back
    cmp     x11, x5
    b.ne    umbra_l1m_fail
    UMBRA_L1M_PUTS umbra_l1m_msg_alias
    mov     x30, x7
    ret

"#,
    l1_asm_print!("UMBRA_L1M", "umbra_l1m"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1M", "umbra_l1m"),
    l1_asm_vectors!(
        "UMBRA_L1M",
        "umbra_l1m",
        "umbra_l1m_current_sync",
        "umbra_l1m_unexpected",
        "umbra_l1m_lower_sync",
        "umbra_l1m_unexpected",
    ),
    r#"

// An expected stage-1 data abort of L1's own load from x1 (the flag holds
// 0x100 | the DFSC): EC 0x25 (data abort, same EL), WnR 0, that DFSC,
// FAR_EL2 = x1; clears the flag and returns past the load.
umbra_l1m_current_sync:
    adr     x4, umbra_l1m_expect
    ldr     x5, [x4]
    cbz     x5, umbra_l1m_unexpected
    mrs     x11, esr_el2
    adr     x10, umbra_l1m_msg_bad_esr
    ubfx    x6, x11, #26, #6
    cmp     x6, #0x25
    b.ne    umbra_l1m_fail
    tbnz    x11, #6, umbra_l1m_fail
    and     x6, x11, #0x3f
    and     x7, x5, #0x3f
    cmp     x6, x7
    b.ne    umbra_l1m_fail
    mrs     x11, far_el2
    adr     x10, umbra_l1m_msg_bad_far
    cmp     x11, x1
    b.ne    umbra_l1m_fail
    adr     x10, umbra_l1m_msg_own_fault
    bl      umbra_l1m_puts
    mrs     x11, esr_el2
    bl      umbra_l1m_hex
    adr     x10, umbra_l1m_msg_far
    bl      umbra_l1m_puts
    mrs     x11, far_el2
    bl      umbra_l1m_hex
    adr     x10, umbra_l1m_msg_nl
    bl      umbra_l1m_puts
    adr     x4, umbra_l1m_expect
    str     xzr, [x4]
    mrs     x6, elr_el2
    add     x6, x6, #4
    msr     elr_el2, x6
    eret

umbra_l1m_lower_sync:
    UMBRA_L1M_SAVE
    UMBRA_L1M_BASE_IPA x9
    add     x14, x9, #0x202000
    // The vector runs through the alias: the PC must be an alias VA.
    adr     x11, umbra_l1m_lower_sync
    lsr     x1, x11, #30
    adr     x10, umbra_l1m_msg_not_alias
    cmp     x1, #2
    b.ne    umbra_l1m_fail
    mrs     x19, esr_el2
    ubfx    x20, x19, #26, #6
    cmp     x20, #0x16
    b.eq    umbra_l1m_hvc
    cmp     x20, #0x24
    b.eq    umbra_l1m_dabt
    mov     x11, x19
    adr     x10, umbra_l1m_msg_unexpected
    b       umbra_l1m_fail

umbra_l1m_resume:
    UMBRA_L1M_RESTORE
    eret

umbra_l1m_hvc:
    and     x21, x19, #0xffff
    ldr     x22, [sp, #16]
    cmp     x21, #1
    b.eq    umbra_l1m_hvc1
    cmp     x21, #2
    b.eq    umbra_l1m_hvc2
    mov     x11, x19
    adr     x10, umbra_l1m_msg_unexpected
    b       umbra_l1m_fail

umbra_l1m_hvc1:
    UMBRA_L1M_EXPECT x22, {magic_a}, umbra_l1m_msg_bad_a
    UMBRA_L1M_REPORT umbra_l1m_msg_read_a, x22
    b       umbra_l1m_resume

umbra_l1m_hvc2:
    UMBRA_L1M_EXPECT x22, {magic_b}, umbra_l1m_msg_bad_b
    adr     x4, umbra_l1m_faults
    ldr     x11, [x4]
    adr     x10, umbra_l1m_msg_bad_faults
    cmp     x11, #1
    b.ne    umbra_l1m_fail
    UMBRA_L1M_REPORT umbra_l1m_msg_read_b, x22
    // L1's regime after L2 ran: its own fault again, and the alias.
    UMBRA_L1M_PROBE {unmapped_va}, 0x05
    bl      umbra_l1m_check_alias
    UMBRA_L1M_PUTS umbra_l1m_msg_after_l2
    adr     x4, umbra_l1m_vhe
    ldr     x11, [x4]
    cbnz    x11, 15f
    UMBRA_L1M_PUTS umbra_l1m_msg_pass
    b       16f
15: UMBRA_L1M_PUTS umbra_l1m_msg_pass_vhe
16:
    UMBRA_L1M_SYSTEM_OFF

"#,
    l1_asm_demand_fault!("UMBRA_L1M", "umbra_l1m"),
    r#"

.balign 8
umbra_l1m_faults:
    .quad   0
umbra_l1m_expect:
    .quad   0
umbra_l1m_vhe:
    .quad   0
umbra_l1m_msg_vhe:       .asciz "L1 (mmu): running at virtual EL2 (CurrentEL reads 2), shown FEAT_VHE: a VHE guest hypervisor (E2H = 1)\n"
umbra_l1m_msg_mmu_on_vhe: .asciz "L1 (mmu, E2H = 1): EL2&0 stage 1 on (MAIR, TCR T0SZ 25 EPD1, TTBR0, SCTLR M C I through the EL1 encodings), SCTLR and TCR read back\n"
umbra_l1m_msg_pass_vhe:  .asciz "UMBRA-NESTED-PASS mmu e2h=1 alias=ok own-faults=4 tlbi-vae2=ok l2-values=2 demand-faults=1\n"
umbra_l1m_msg_el2:       .asciz "L1 (mmu): running at virtual EL2 (CurrentEL reads 2), shown no FEAT_VHE (E2H = 0)\n"
umbra_l1m_msg_mmu_on:    .asciz "L1 (mmu): EL2 stage 1 on (MAIR_EL2, TCR_EL2 T0SZ 25, TTBR0_EL2, SCTLR_EL2 M C I), SCTLR_EL2 and TCR_EL2 read back\n"
umbra_l1m_msg_alias:     .asciz "L1 (mmu): identity map and alias (VA + 0x40000000) agree both ways\n"
umbra_l1m_msg_at:        .asciz "L1 (mmu): AT S1E2R/W of page A's alias: PAR_EL1 its L1 IPA (Normal WB, Inner Shareable); AT S1E2R of VA 0xc0000000: a level 1 translation fault\n"
umbra_l1m_msg_bad_at:    .asciz "AT S1E2R/W of page A's alias gave a wrong PAR_EL1: "
umbra_l1m_msg_bad_at_fault: .asciz "AT S1E2R of the unmapped VA 0xc0000000 gave a wrong PAR_EL1: "
umbra_l1m_msg_fault_l1:  .asciz "L1 (mmu): its load from unmapped VA 0xc0000000 took a level 1 translation fault at its own vector (through the alias)\n"
umbra_l1m_msg_fault_l0:  .asciz "L1 (mmu): its load from VA 0x8040000000, beyond its 39-bit range, took a level 0 translation fault\n"
umbra_l1m_msg_esr:       .asciz ", ESR_EL2 "
umbra_l1m_msg_fault_walk: .asciz "L1 (mmu): its load from VA 0x100000000, whose level-2 table is at an IPA with nothing behind it, took an external abort on its walk at level 2\n"
umbra_l1m_msg_own_fault: .asciz "L1 (mmu): its own stage-1 data abort at its current-EL vector: ESR_EL2 "
umbra_l1m_msg_far:       .asciz ", FAR_EL2 "
umbra_l1m_msg_remapped:  .asciz "L1 (mmu): remapped its alias block (break-before-make, TLBI VAE2IS): the alias reads the new page\n"
umbra_l1m_msg_enter:     .asciz "L1 (mmu): stage 2 for L2 built (VMID 5, 0x101000 left unmapped); ERET to L2 at 0x80000 with the MMU on\n"
umbra_l1m_msg_read_a:    .asciz "L1 (mmu): L2 hvc #1 at the alias vector: L2 read page A through 0x100000: "
umbra_l1m_msg_read_b:    .asciz "L1 (mmu): L2 hvc #2: L2 read page B through the demand-mapped 0x101000: "
umbra_l1m_msg_fault:     .asciz "L1 (mmu): stage-2 fault from L2 at IPA "
umbra_l1m_msg_mapped:    .asciz "L1 (mmu): mapped L2 0x101000 to page B, TLBI IPAS2E1IS + VMALLE1IS, ERET to retry\n"
umbra_l1m_msg_after_l2:  .asciz "L1 (mmu): after L2's exits its own stage-1 fault and alias still hold\n"
umbra_l1m_msg_pass:      .asciz "UMBRA-NESTED-PASS mmu e2h=0 alias=ok own-faults=4 tlbi-vae2=ok l2-values=2 demand-faults=1\n"
umbra_l1m_msg_nl:        .asciz "\n"
umbra_l1m_msg_fail:      .asciz "UMBRA-NESTED-FAIL: "
umbra_l1m_msg_fail_el:   .asciz "CurrentEL is not 2: "
umbra_l1m_msg_bad_sctlr: .asciz "SCTLR_EL2 does not read back as written: "
umbra_l1m_msg_bad_tcr:   .asciz "TCR_EL2 does not read back as written: "
umbra_l1m_msg_bad_alias: .asciz "the alias does not read what the identity map wrote: "
umbra_l1m_msg_bad_alias_back: .asciz "the identity map does not read what the alias wrote: "
umbra_l1m_msg_no_fault:  .asciz "L1's own load that must take a stage-1 fault did not; 0x100 | the DFSC it expected: "
umbra_l1m_msg_bad_esr:   .asciz "L1's own stage-1 fault has a wrong ESR_EL2: "
umbra_l1m_msg_bad_far:   .asciz "L1's own stage-1 fault has a wrong FAR_EL2: "
umbra_l1m_msg_stale_s1:  .asciz "the alias read the stale block after L1's TLBI VAE2IS: "
umbra_l1m_msg_bad_remap: .asciz "the alias read a wrong value after the remap: "
umbra_l1m_msg_not_alias: .asciz "L1's lower-EL vector did not run at its alias VA: "
umbra_l1m_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1m_msg_bad_a:     .asciz "L2 read a wrong value through 0x100000: "
umbra_l1m_msg_bad_b:     .asciz "L2 read a wrong value through 0x101000: "
umbra_l1m_msg_bad_faults: .asciz "wrong number of demand faults: "
umbra_l1m_msg_bad_fault: .asciz "unexpected stage-2 fault: "

// L2 (EL1, MMU off, at L2 IPA 0x80000): reads A, then B (demand-mapped).
.balign 4096
umbra_l2m_payload:
    mov     x1, #0x100000
    ldr     x2, [x1]
    hvc     #1
    add     x1, x1, #0x1000
    ldr     x2, [x1]
    hvc     #2
10: b       10b
.balign 4096
.global umbra_l1_mmu_image_end
umbra_l1_mmu_image_end:
.popsection
"#,
    magic_a = const MAGIC_A,
    magic_b = const MAGIC_B,
    magic_d = const MAGIC_D,
    magic_alias = const MAGIC_ALIAS,
    l1_base = const super::nested::L1_BASE,
    alias_offset = const ALIAS_OFFSET,
    block_attrs = const BLOCK_ATTRS,
    mair = const MAIR,
    tcr = const TCR,
    tcr_vhe = const TCR_VHE,
    sctlr_vhe = const SCTLR_VHE,
    sctlr = const SCTLR,
    unmapped_va = const UNMAPPED_VA,
    par_alias = const PAR_ALIAS_A,
    par_unmapped = const PAR_UNMAPPED,
    beyond_va = const BEYOND_VA,
    walk_va = const WALK_VA,
    l1_hole = const super::nested_l1::L1_HOLE,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
);

/// Page A's and B's values (L2 reads them), the remap target's, and the
/// alias check's.
pub const MAGIC_A: u64 = 0xa1a1_0000_1111_00a1;
pub const MAGIC_B: u64 = 0xb2b2_0000_2222_00b2;
pub const MAGIC_D: u64 = 0xd4d4_0000_4444_00d4;
pub const MAGIC_ALIAS: u64 = 0xa5a5_0000_5555_0000;
/// The alias: L1's RAM again at VA + 1 GiB (level-1 entry 2).
pub const ALIAS_OFFSET: u64 = 0x4000_0000;
/// An EL2-format block descriptor's attributes: AF, Inner Shareable,
/// AP\[1\] (RES1 in a one-privilege-level regime), AttrIndx 0, block.
pub const BLOCK_ATTRS: u64 = (1 << 10) | (0b11 << 8) | (1 << 6) | 0b01;
/// MAIR_EL2: attribute 0 Normal write-back (read/write-allocate), 1
/// Device-nGnRnE.
pub const MAIR: u64 = 0xff;
/// TCR_EL2 (E2H = 0): RES1 bits 31 and 23, PS 40 bits, 4 KiB granule,
/// Inner Shareable write-back walks, T0SZ 25 (39-bit VA, level 1 start).
pub const TCR: u64 =
    (1 << 31) | (1 << 23) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | 25;
/// SCTLR_EL2 (E2H = 0): its RES1 bits (EOS, EIS included) with M, C, I.
pub const SCTLR: u64 = crate::nested::el2_regime::SCTLR_EL2_RESET | 1 | (1 << 2) | (1 << 12);
/// TCR_EL2 for E2H = 1 (TCR_EL1's layout): T0SZ 25 with the walk
/// attributes of [`TCR`], TTBR1 unused (EPD1; T1SZ 25, TG1 4 KiB), IPS 40
/// bits.
pub const TCR_VHE: u64 = 25
    | (1 << 8)
    | (1 << 10)
    | (0b11 << 12)
    | (25 << 16)
    | (1 << 23)
    | (0b10 << 30)
    | (0b010 << 32);
/// SCTLR_EL2 for E2H = 1: its RES1 bits with M, C, I.
pub const SCTLR_VHE: u64 =
    crate::nested::el2_regime::VheRegime::RESET.sctlr | 1 | (1 << 2) | (1 << 12);
/// PAR_EL1 of AT S1E2R/W of page A's alias (DDI 0487 PAR_EL1, written out
/// rather than computed by hv's encoder): ATTR 0xff, page A's L1 IPA
/// (`L1_BASE` + 0x300000), bit 11 RES1, NS (hv reports 1), SH Inner.
pub const PAR_ALIAS_A: u64 = 0xff00_0000_4030_0b80;
/// PAR_EL1 of AT S1E2R of [`UNMAPPED_VA`]: F, FST 0x05 (translation fault,
/// level 1), bit 11 RES1.
pub const PAR_UNMAPPED: u64 = 0x80b;
/// A VA in L1's 39-bit range that nothing maps (level-1 entry 3).
pub const UNMAPPED_VA: u64 = 0xc000_0000;
/// A VA whose level-2 table (level-1 entry 4) is at an L1 IPA with
/// nothing behind it: L1's walk of it takes an external abort at level 2.
pub const WALK_VA: u64 = 0x1_0000_0000;
/// A VA beyond the 39-bit range T0SZ 25 gives (with T0SZ 16 it would be
/// level-0 entry 1, which the recursive level-1 table makes valid).
pub const BEYOND_VA: u64 = 0x80_4000_0000;

assembled_image!(
    "The `mmu` L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_mmu_image,
    umbra_l1_mmu_image_end
);
