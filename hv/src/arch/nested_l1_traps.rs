//! The `traps` guest hypervisor (L1) and its guest (L2): L1's EL2 trap
//! controls CPTR_EL2 and MDCR_EL2 (`crate::nested::traps`,
//! `arch::nested::traps`). A VHE L1 (E2H = 1, CPTR_EL2 in CPACR_EL1's
//! layout; `hv.nested=traps`) when shown FEAT_VHE, else a non-VHE one
//! (E2H = 0, TFP/TZ/TSM; `hv.nested=traps-nvhe`): the steps are the same,
//! with each layout's values. Copied by `arch::nested` into L1's memory
//! like `arch::nested_l1`; data to hv, never executed at EL2.
//!
//! L1 (MMU off, its stack at +1 MiB, L2's stage 2 at +2 MiB mapping L2
//! IPA 0x80000 to the L2 payload page, VMID 5, virtual HCR_EL2 RW, DC, VM):
//! 1. reads its CPTR_EL2 at reset through CPTR_EL2 and through CPACR_EL1
//!    (the same register at EL2 with E2H = 1): FPEN, ZEN, SMEN 0b11; and
//!    MDCR_EL2.HPMN = PMCR_EL0.N (its reset value);
//! 2. writes CPTR_EL2 (E2H = 1: through CPACR_EL1) with TCPAC, TAM and FP
//!    trapped (FPEN 0b00 with ZEN, SMEN 0b11; TFP with the RES1 bits 0);
//!    reads back TCPAC kept, TAM 0 (no FEAT_AMUv1 shown), RES1 bits 1;
//! 3. its own FP instruction then traps at its own EL2 (FPEN 0b00 and TFP
//!    trap EL2 too): VBAR_EL2 + 0x200, ESR_EL2 EC 0x07; it untraps FP there
//!    and the instruction runs again;
//! 4. traps FP in CPTR_EL2 and ERETs into L2 (L2's CPACR_EL1, through
//!    CPACR_EL12 or, E2H = 0, CPACR_EL1, leaves FP untrapped at L2's EL1):
//!    L2's FP instruction traps to L1 (VBAR_EL2 + 0x400, ESR_EL2
//!    0x1fe00000: CV 1, COND 0b1110 from AArch64); L1 untraps FP, sets
//!    TCPAC and resumes L2 at the instruction, which runs;
//! 5. L2's MRS of CPACR_EL1 traps to L1 (TCPAC; its exact ESR_EL2), L1
//!    emulates it (a value of its own in L2's x2) and steps over it;
//! 6. MDCR_EL2 = HPMN 1 | TPM: L2's MRS of PMCR_EL0 traps to L1; then
//!    HPMN 1 | TDA: L2's MRS of MDSCR_EL1 traps to L1 (exact ESRs); then
//!    HPMN 1 alone: L2's PMCR_EL0.N reads 1 (HPMN passed to L2), L2 reads
//!    the MDSCR_EL1 L1 set (TDCC) and writes TDCC | MDE, which L1 reads
//!    back (both through the VNCR word hv swaps), and an EL2-only counter
//!    (HPMN 1, HPME) reads 0 across L2's exit; then
//!    HPMN 1 | TDE: L2's BRK #0x42 is taken by L1 (EC 0x3c);
//! 7. prints `UMBRA-NESTED-PASS traps ...` and calls PSCI SYSTEM_OFF, or
//!    `UMBRA-NESTED-FAIL: <why>` with the value and SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1T", "umbra_l1t"),
    r#"
// \reg = entry \index of this L1's CPTR_EL2 values (clobbers x4).
.macro UMBRA_L1T_CPTR reg, index
    adr     x4, umbra_l1t_values
    ldr     x4, [x4]
    ldr     \reg, [x4, #(8 * \index)]
.endm

.pushsection .rodata.umbra_l1_traps, "a"
.balign 4096
.global umbra_l1_traps_image
umbra_l1_traps_image:
    adr     x9, umbra_l1_traps_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1T_EXPECT x1, 8, umbra_l1t_msg_el
    adr     x1, umbra_l1t_vectors
    msr     vbar_el2, x1
    isb
    // VHE (E2H = 1) if shown FEAT_VHE (ID_AA64MMFR1_EL1.VH), else
    // non-VHE (E2H = 0): its CPTR_EL2 values' table.
    mrs     x1, id_aa64mmfr1_el1
    ubfx    x1, x1, #8, #4
    adr     x2, umbra_l1t_e2h
    str     x1, [x2]
    adr     x3, umbra_l1t_nvhe_values
    cbz     x1, 1f
    adr     x3, umbra_l1t_vhe_values
1:  adr     x2, umbra_l1t_values
    str     x3, [x2]
    // 1. CPTR_EL2 at reset (and through CPACR_EL1 with E2H = 1);
    // MDCR_EL2.HPMN = N.
    UMBRA_L1T_CPTR x20, 0
    mrs     x19, s3_4_c1_c1_2
    mov     x11, x19
    adr     x10, umbra_l1t_msg_cptr_reset
    cmp     x19, x20
    b.ne    umbra_l1t_fail
    adr     x2, umbra_l1t_e2h
    ldr     x2, [x2]
    cbz     x2, 2f
    mrs     x19, cpacr_el1
    UMBRA_L1T_EXPECT x19, {cptr_reset}, umbra_l1t_msg_cpacr_reset
2:
    mrs     x19, s3_4_c1_c1_1
    mrs     x20, pmcr_el0
    ubfx    x20, x20, #11, #5
    and     x21, x19, #0x1f
    mov     x11, x19
    adr     x10, umbra_l1t_msg_mdcr_reset
    cmp     x21, x20
    b.ne    umbra_l1t_fail
    UMBRA_L1T_REPORT umbra_l1t_msg_reset, x19
    // 2. CPTR_EL2 through CPACR_EL1 (E2H = 1) or CPTR_EL2 (E2H = 0):
    // TCPAC kept, TAM RES0 (and RES1 bits set with E2H = 0).
    UMBRA_L1T_CPTR x1, 1
    adr     x2, umbra_l1t_e2h
    ldr     x2, [x2]
    cbz     x2, 3f
    msr     cpacr_el1, x1
    b       4f
3:  msr     s3_4_c1_c1_2, x1
4:  isb
    UMBRA_L1T_CPTR x20, 2
    mrs     x19, s3_4_c1_c1_2
    mov     x11, x19
    adr     x10, umbra_l1t_msg_cptr_kept
    cmp     x19, x20
    b.ne    umbra_l1t_fail
    UMBRA_L1T_PUTS umbra_l1t_msg_kept
    // 3. FPEN 0b00 or TFP traps L1's own FP at EL2 (its handler untraps
    // it).
    mov     x1, #0x55
    .inst   0x9e670020 // fmov d0, x1
    .inst   0x9e660002 // fmov x2, d0
    UMBRA_L1T_EXPECT x2, 0x55, umbra_l1t_msg_own_fp_value
    adr     x4, umbra_l1t_own_fp
    ldr     x2, [x4]
    UMBRA_L1T_EXPECT x2, 1, umbra_l1t_msg_own_fp_count
    UMBRA_L1T_PUTS umbra_l1t_msg_own_fp
    // 4. L2: its stage 2, its CPACR_EL1 (FP untrapped at its EL1: through
    // CPACR_EL12 with E2H = 1, CPACR_EL1 with E2H = 0, both its VNCR
    // word), and L1's CPTR_EL2 trapping FP (L2's, and L1's own).
    add     x13, x9, #0x200000
    UMBRA_L1T_L2_STAGE2_TABLES umbra_l2t_payload
    UMBRA_L1T_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    UMBRA_L1T_MOV64 x1, {cpacr_fp_on}
    adr     x2, umbra_l1t_e2h
    ldr     x2, [x2]
    cbz     x2, 5f
    msr     s3_5_c1_c0_2, x1
    b       6f
5:  msr     cpacr_el1, x1
6:  UMBRA_L1T_CPTR x1, 4
    msr     s3_4_c1_c1_2, x1
    isb
    UMBRA_L1T_PUTS umbra_l1t_msg_enter
    UMBRA_L1T_AT_L2_PAYLOAD
    eret

"#,
    l1_asm_print!("UMBRA_L1T", "umbra_l1t"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1T", "umbra_l1t"),
    l1_asm_vectors!(
        "UMBRA_L1T",
        "umbra_l1t",
        "umbra_l1t_own_sync",
        "umbra_l1t_unexpected",
        "umbra_l1t_lower_sync",
        "umbra_l1t_unexpected",
    ),
    r#"

// 3: L1's own FP instruction at EL2 (EC 0x07): counted, FP untrapped,
// the instruction runs again.
umbra_l1t_own_sync:
    UMBRA_L1T_SAVE
    mrs     x19, esr_el2
    mov     x11, x19
    adr     x10, umbra_l1t_msg_unexpected
    UMBRA_L1T_MOV64 x3, {esr_fp}
    cmp     x19, x3
    b.ne    umbra_l1t_fail
    adr     x4, umbra_l1t_own_fp
    ldr     x5, [x4]
    add     x5, x5, #1
    str     x5, [x4]
    UMBRA_L1T_CPTR x1, 3
    msr     s3_4_c1_c1_2, x1
    isb
    UMBRA_L1T_RESTORE
    eret

umbra_l1t_lower_sync:
    UMBRA_L1T_SAVE
    adr     x9, umbra_l1_traps_image
    mrs     x19, esr_el2
    ubfx    x20, x19, #26, #6
    ldr     x22, [sp, #16]
    cmp     x20, #0x16
    b.eq    umbra_l1t_hvc
    cmp     x20, #0x07
    b.eq    umbra_l1t_l2_fp
    cmp     x20, #0x18
    b.eq    umbra_l1t_l2_sysreg
    cmp     x20, #0x3c
    b.eq    umbra_l1t_l2_brk
    mov     x11, x19
    adr     x10, umbra_l1t_msg_unexpected
    b       umbra_l1t_fail

umbra_l1t_resume:
    UMBRA_L1T_RESTORE
    eret

// Steps over L2's trapped instruction.
umbra_l1t_skip:
    mrs     x1, elr_el2
    add     x1, x1, #4
    msr     elr_el2, x1
    b       umbra_l1t_resume

// 4: L2's FP instruction (FPEN 0b00): its exact ESR_EL2, counted; FP
// untrapped with TCPAC set; the instruction runs again.
umbra_l1t_l2_fp:
    UMBRA_L1T_EXPECT x19, {esr_fp}, umbra_l1t_msg_l2_fp_esr
    adr     x4, umbra_l1t_l2_fp_count
    ldr     x5, [x4]
    add     x5, x5, #1
    str     x5, [x4]
    UMBRA_L1T_CPTR x1, 5
    msr     s3_4_c1_c1_2, x1
    isb
    b       umbra_l1t_resume

// 5, 6: L2's trapped MRS (CPACR_EL1 by TCPAC, PMCR_EL0 by TPM, MDSCR_EL1
// by TDA), each exactly once, in that order: L1 gives L2's x2 a value of
// its own and steps over it.
umbra_l1t_l2_sysreg:
    adr     x4, umbra_l1t_sysreg_count
    ldr     x5, [x4]
    add     x6, x5, #1
    str     x6, [x4]
    mov     x11, x19
    adr     x10, umbra_l1t_msg_sysreg_esr
    cmp     x5, #0
    b.eq    1f
    cmp     x5, #1
    b.eq    2f
    cmp     x5, #2
    b.eq    3f
    b       umbra_l1t_fail
1:  UMBRA_L1T_MOV64 x3, {esr_cpacr}
    UMBRA_L1T_MOV64 x2, {magic_cpacr}
    b       4f
2:  UMBRA_L1T_MOV64 x3, {esr_pmcr}
    UMBRA_L1T_MOV64 x2, {magic_pmcr}
    b       4f
3:  UMBRA_L1T_MOV64 x3, {esr_mdscr}
    UMBRA_L1T_MOV64 x2, {magic_mdscr}
4:  cmp     x19, x3
    b.ne    umbra_l1t_fail
    str     x2, [sp, #16]
    b       umbra_l1t_skip

// 6: L2's BRK #0x42 with TDE: a Breakpoint Instruction exception taken
// to L1 (EC 0x3c, the immediate in the ISS), counted, stepped over.
umbra_l1t_l2_brk:
    UMBRA_L1T_EXPECT x19, {esr_brk}, umbra_l1t_msg_brk_esr
    adr     x4, umbra_l1t_brk_count
    ldr     x5, [x4]
    add     x5, x5, #1
    str     x5, [x4]
    b       umbra_l1t_skip

umbra_l1t_hvc:
    and     x21, x19, #0xffff
    cmp     x21, #1
    b.eq    umbra_l1t_hvc1
    cmp     x21, #2
    b.eq    umbra_l1t_hvc2
    cmp     x21, #3
    b.eq    umbra_l1t_hvc3
    cmp     x21, #4
    b.eq    umbra_l1t_hvc4
    cmp     x21, #5
    b.eq    umbra_l1t_hvc5
    cmp     x21, #6
    b.eq    umbra_l1t_hvc6
    mov     x11, x19
    adr     x10, umbra_l1t_msg_unexpected
    b       umbra_l1t_fail

// After 4: L2's FP instruction trapped once, then ran.
umbra_l1t_hvc1:
    adr     x4, umbra_l1t_l2_fp_count
    ldr     x21, [x4]
    UMBRA_L1T_EXPECT x21, 1, umbra_l1t_msg_l2_fp_count
    UMBRA_L1T_EXPECT x22, 0x77, umbra_l1t_msg_l2_fp_value
    UMBRA_L1T_PUTS umbra_l1t_msg_l2_fp
    b       umbra_l1t_resume

// After 5: TCPAC off; MDCR_EL2 = HPMN 1 | TPM.
umbra_l1t_hvc2:
    UMBRA_L1T_EXPECT x22, {magic_cpacr}, umbra_l1t_msg_tcpac
    UMBRA_L1T_PUTS umbra_l1t_msg_tcpac_ok
    UMBRA_L1T_CPTR x1, 3
    msr     s3_4_c1_c1_2, x1
    mov     x1, #(1 | {tpm})
    msr     s3_4_c1_c1_1, x1
    b       umbra_l1t_resume

// After the TPM trap: HPMN 1 | TDA.
umbra_l1t_hvc3:
    UMBRA_L1T_EXPECT x22, {magic_pmcr}, umbra_l1t_msg_tpm
    UMBRA_L1T_PUTS umbra_l1t_msg_tpm_ok
    mov     x1, #(1 | {tda})
    msr     s3_4_c1_c1_1, x1
    b       umbra_l1t_resume

// After the TDA trap: HPMN 1 alone, read back as written.
umbra_l1t_hvc4:
    UMBRA_L1T_EXPECT x22, {magic_mdscr}, umbra_l1t_msg_tda
    UMBRA_L1T_PUTS umbra_l1t_msg_tda_ok
    mov     x1, #1
    msr     s3_4_c1_c1_1, x1
    mrs     x21, s3_4_c1_c1_1
    UMBRA_L1T_EXPECT x21, 1, umbra_l1t_msg_mdcr_kept
    // HPME, and counter 5 (an EL2 counter with HPMN 1) counting
    // CPU_CYCLES at EL2 only (P, U set: not EL1/EL0; NSH set): nothing of
    // L2's run may count, hv's handling of L2's exits included (R39-1).
    mov     x1, #(1 | {hpme})
    msr     s3_4_c1_c1_1, x1
    UMBRA_L1T_MOV64 x1, 0xc8000011
    msr     pmevtyper5_el0, x1
    msr     pmevcntr5_el0, xzr
    mov     x1, #(1 << 5)
    msr     pmcntenset_el0, x1
    // L2's MDSCR_EL1 (the VNCR word; hv loads it for L2, R39-3): TDCC.
    mov     x1, #{mdscr_for_l2}
    msr     mdscr_el1, x1
    isb
    b       umbra_l1t_resume

// L2's untrapped PMCR_EL0: N is L1's HPMN. Then HPMN 1 | TDE.
umbra_l1t_hvc5:
    mrs     x23, pmevcntr5_el0
    UMBRA_L1T_EXPECT x23, 0, umbra_l1t_msg_r39
    // L2 read the MDSCR_EL1 L1 set, and L1 reads back the one L2 wrote.
    UMBRA_L1T_EXPECT x24, {mdscr_for_l2}, umbra_l1t_msg_mdscr_l2
    mrs     x21, mdscr_el1
    UMBRA_L1T_EXPECT x21, {mdscr_by_l2}, umbra_l1t_msg_mdscr_back
    UMBRA_L1T_PUTS umbra_l1t_msg_mdscr_ok
    ubfx    x21, x22, #11, #5
    mov     x11, x22
    adr     x10, umbra_l1t_msg_hpmn
    cmp     x21, #1
    b.ne    umbra_l1t_fail
    UMBRA_L1T_PUTS umbra_l1t_msg_hpmn_ok
    mov     x1, #(1 | {tde})
    msr     s3_4_c1_c1_1, x1
    b       umbra_l1t_resume

// After L2's BRK: each trap once; PASS.
umbra_l1t_hvc6:
    adr     x4, umbra_l1t_brk_count
    ldr     x21, [x4]
    UMBRA_L1T_EXPECT x21, 1, umbra_l1t_msg_brk_count
    adr     x4, umbra_l1t_sysreg_count
    ldr     x21, [x4]
    UMBRA_L1T_EXPECT x21, 3, umbra_l1t_msg_sysreg_count
    UMBRA_L1T_PUTS umbra_l1t_msg_tde_ok
    adr     x2, umbra_l1t_e2h
    ldr     x2, [x2]
    adr     x10, umbra_l1t_msg_pass_nvhe
    cbz     x2, 1f
    adr     x10, umbra_l1t_msg_pass
1:  bl      umbra_l1t_puts
    UMBRA_L1T_SYSTEM_OFF

// Each kind of L1's CPTR_EL2 values: reset, written at step 2, read back
// then, untrapped, trapping FP, untrapped with TCPAC.
.balign 8
umbra_l1t_vhe_values:
    .quad   {cptr_reset}, {cptr_write}, {cptr_kept}, {cptr_reset}, {cptr_fp_trap}, {cptr_tcpac}
umbra_l1t_nvhe_values:
    .quad   {nvhe_reset}, {nvhe_write}, {nvhe_kept}, {nvhe_reset}, {nvhe_fp_trap}, {nvhe_tcpac}
umbra_l1t_values:
    .quad   0
umbra_l1t_e2h:
    .quad   0

.balign 8
umbra_l1t_own_fp:
    .quad   0
umbra_l1t_l2_fp_count:
    .quad   0
umbra_l1t_sysreg_count:
    .quad   0
umbra_l1t_brk_count:
    .quad   0
umbra_l1t_msg_reset:    .asciz "L1 (traps): at virtual EL2; CPTR_EL2 at reset traps nothing (E2H = 1: also through CPACR_EL1), MDCR_EL2 (HPMN = PMCR_EL0.N) "
umbra_l1t_msg_kept:     .asciz "L1: CPTR_EL2 (written through CPACR_EL1 with E2H = 1) keeps TCPAC, TAM reads 0 (no AMU shown)\n"
umbra_l1t_msg_own_fp:   .asciz "L1: with CPTR_EL2 trapping FP (FPEN 0b00 or TFP) its own FP instruction trapped at its EL2 (VBAR_EL2 + 0x200, EC 0x07) and ran once untrapped\n"
umbra_l1t_msg_enter:    .asciz "L1: CPTR_EL2 traps FP (L2's CPACR_EL1 leaves FP on at its EL1); ERET to L2\n"
umbra_l1t_msg_l2_fp:    .asciz "L1: L2's FP instruction trapped to L1 (ESR_EL2 0x1fe00000), ran after L1 untrapped it\n"
umbra_l1t_msg_tcpac_ok: .asciz "L1: L2's MRS CPACR_EL1 trapped to L1 (CPTR_EL2.TCPAC) with its ESR_EL2; L1 emulated it\n"
umbra_l1t_msg_tpm_ok:   .asciz "L1: L2's MRS PMCR_EL0 trapped to L1 (MDCR_EL2.TPM) with its ESR_EL2\n"
umbra_l1t_msg_tda_ok:   .asciz "L1: L2's MRS MDSCR_EL1 trapped to L1 (MDCR_EL2.TDA) with its ESR_EL2\n"
umbra_l1t_msg_hpmn_ok:  .asciz "L1: L2's untrapped PMCR_EL0.N reads L1's MDCR_EL2.HPMN, 1\n"
umbra_l1t_msg_tde_ok:   .asciz "L1: L2's BRK #0x42 was taken by L1 (MDCR_EL2.TDE, EC 0x3c)\n"
umbra_l1t_msg_pass:     .asciz "UMBRA-NESTED-PASS traps e2h=1 cptr=ok own-fp=ok l2-fp=ok tcpac=ok tpm=ok tda=ok hpmn=ok tde=ok\n"
umbra_l1t_msg_pass_nvhe: .asciz "UMBRA-NESTED-PASS traps e2h=0 cptr=ok own-fp=ok l2-fp=ok tcpac=ok tpm=ok tda=ok hpmn=ok tde=ok\n"
umbra_l1t_msg_mdscr_ok: .asciz "L1: L2 read the MDSCR_EL1 L1 set (TDCC) and L1 read back the one L2 wrote (TDCC, MDE)\n"
umbra_l1t_msg_mdscr_l2: .asciz "L2's MDSCR_EL1 is not the one L1 set (TDCC): "
umbra_l1t_msg_mdscr_back: .asciz "L1's MDSCR_EL1 after L2 ran is not the one L2 wrote (TDCC, MDE): "
umbra_l1t_msg_r39:      .asciz "L1's EL2-only counter 5 (HPMN 1, HPME, NSH) counted hv's EL2 cycles while hv handled L2's exit: "
umbra_l1t_msg_nl:       .asciz "\n"
umbra_l1t_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_l1t_msg_el:       .asciz "CurrentEL is not 2: "
umbra_l1t_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1t_msg_cptr_reset: .asciz "CPTR_EL2 at reset does not trap nothing: "
umbra_l1t_msg_cpacr_reset: .asciz "CPACR_EL1 (CPTR_EL2 with E2H = 1) at reset is not FPEN/ZEN/SMEN 0b11: "
umbra_l1t_msg_mdcr_reset: .asciz "MDCR_EL2.HPMN at reset is not PMCR_EL0.N: "
umbra_l1t_msg_cptr_kept: .asciz "CPTR_EL2 does not read back what CPACR_EL1 wrote (TCPAC kept, TAM 0): "
umbra_l1t_msg_own_fp_value: .asciz "L1's FP instruction did not run after its trap: "
umbra_l1t_msg_own_fp_count: .asciz "L1's own FP instruction did not trap once at its EL2 with its CPTR_EL2 trapping FP: "
umbra_l1t_msg_l2_fp_esr: .asciz "L2's FP trap reached L1 with a wrong ESR_EL2: "
umbra_l1t_msg_l2_fp_count: .asciz "L2's FP instruction did not trap to L1 once with L1's CPTR_EL2 trapping FP: "
umbra_l1t_msg_l2_fp_value: .asciz "L2's FP instruction did not run after L1 untrapped it: "
umbra_l1t_msg_sysreg_esr: .asciz "L2's trapped system register access reached L1 with a wrong ESR_EL2: "
umbra_l1t_msg_tcpac:    .asciz "L2's MRS CPACR_EL1 did not trap to L1 (TCPAC): L2 read "
umbra_l1t_msg_tpm:      .asciz "L2's MRS PMCR_EL0 did not trap to L1 (MDCR_EL2.TPM): L2 read "
umbra_l1t_msg_tda:      .asciz "L2's MRS MDSCR_EL1 did not trap to L1 (MDCR_EL2.TDA): L2 read "
umbra_l1t_msg_mdcr_kept: .asciz "MDCR_EL2 does not read back as written: "
umbra_l1t_msg_hpmn:     .asciz "L2's PMCR_EL0.N is not L1's MDCR_EL2.HPMN 1: PMCR_EL0 "
umbra_l1t_msg_brk_esr:  .asciz "L2's BRK reached L1 with a wrong ESR_EL2: "
umbra_l1t_msg_brk_count: .asciz "L2's BRK with MDCR_EL2.TDE did not reach L1 once: "
umbra_l1t_msg_sysreg_count: .asciz "L2's trapped system register accesses did not reach L1 three times: "

// L2 (at 0x80000, EL1h, stage 1 off): each step's instruction, then an
// HVC for L1 to check it.
.balign 4096
umbra_l2t_payload:
    mov     x3, #0x77
    .inst   0x9e670061 // fmov d1, x3
    .inst   0x9e660022 // fmov x2, d1
    hvc     #1
    mrs     x2, cpacr_el1
    hvc     #2
    mrs     x2, pmcr_el0
    hvc     #3
    mrs     x2, mdscr_el1
    hvc     #4
    mrs     x24, mdscr_el1
    mov     x25, #{mdscr_by_l2}
    msr     mdscr_el1, x25
    mrs     x2, pmcr_el0
    hvc     #5
    brk     #0x42
    hvc     #6
    b       .
.balign 4096
.global umbra_l1_traps_image_end
umbra_l1_traps_image_end:
.popsection
"#,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    cptr_reset = const CPTR_RESET,
    cptr_write = const CPTR_WRITE,
    cptr_kept = const CPTR_KEPT,
    cptr_fp_trap = const CPTR_FP_TRAP,
    cptr_tcpac = const CPTR_RESET | TCPAC,
    nvhe_reset = const NVHE_RESET,
    nvhe_write = const NVHE_WRITE,
    nvhe_kept = const NVHE_KEPT,
    nvhe_fp_trap = const NVHE_RESET | NVHE_TFP,
    nvhe_tcpac = const NVHE_RESET | TCPAC,
    cpacr_fp_on = const FPEN,
    esr_fp = const ESR_FP,
    esr_cpacr = const ESR_MRS_CPACR_X2,
    esr_pmcr = const ESR_MRS_PMCR_X2,
    esr_mdscr = const ESR_MRS_MDSCR_X2,
    esr_brk = const ESR_BRK_42,
    magic_cpacr = const MAGIC_CPACR,
    magic_pmcr = const MAGIC_PMCR,
    magic_mdscr = const MAGIC_MDSCR,
    tpm = const crate::nested::traps::mdcr::TPM,
    tda = const crate::nested::traps::mdcr::TDA,
    tde = const crate::nested::traps::mdcr::TDE,
    hpme = const crate::nested::traps::mdcr::HPME,
    mdscr_for_l2 = const MDSCR_TDCC,
    mdscr_by_l2 = const MDSCR_TDCC | MDSCR_MDE,
);

use crate::nested::traps::cptr::{
    NVHE_RES1, NVHE_TFP, TAM, TCPAC, VHE_FPEN as FPEN, VHE_SMEN, VHE_ZEN,
};

/// CPTR_EL2 (E2H = 1) at reset: FPEN, ZEN, SMEN 0b11 (QEMU `-cpu max` has
/// SVE and SME).
pub const CPTR_RESET: u64 = FPEN | VHE_ZEN | VHE_SMEN;
/// L1's write through CPACR_EL1: FPEN 0b00, TCPAC, TAM, ZEN, SMEN.
pub const CPTR_WRITE: u64 = TCPAC | TAM | VHE_ZEN | VHE_SMEN;
/// What it reads back: TAM is RES0 (no FEAT_AMUv1 shown).
pub const CPTR_KEPT: u64 = TCPAC | VHE_ZEN | VHE_SMEN;
/// FPEN 0b00: FP traps at EL2, EL1 and EL0.
pub const CPTR_FP_TRAP: u64 = VHE_ZEN | VHE_SMEN;

/// CPTR_EL2 (E2H = 0) at reset: its RES1 bits (SVE and SME shown: TZ,
/// TSM 0), nothing trapped.
pub const NVHE_RESET: u64 = NVHE_RES1;
/// L1's write: TFP, TCPAC, TAM, RES1 bits 0.
pub const NVHE_WRITE: u64 = TCPAC | TAM | NVHE_TFP;
/// What it reads back: RES1 bits 1, TAM 0.
pub const NVHE_KEPT: u64 = TCPAC | NVHE_TFP | NVHE_RES1;

/// An ESR_EL2 with EC `ec`, IL 1 and `iss`.
const fn esr(ec: u64, iss: u64) -> u64 {
    ec << 26 | 1 << 25 | iss
}

/// MRS X2 of (op0, op1, CRn, CRm, op2): EC 0x18.
const fn esr_mrs_x2(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> u64 {
    crate::exit::SysRegAccess::mrs(op0, op1, crn, crm, op2, 2).esr()
}

/// An FP/SIMD trap (EC 0x07) from AArch64: ISS CV 1 and COND 0b1110, as
/// the ISS encoding asks for an exception taken from AArch64 state.
pub const ESR_FP: u64 = esr(0x07, 1 << 24 | 0xe << 20);
pub const ESR_MRS_CPACR_X2: u64 = esr_mrs_x2(3, 0, 1, 0, 2);
pub const ESR_MRS_PMCR_X2: u64 = esr_mrs_x2(3, 3, 9, 12, 0);
pub const ESR_MRS_MDSCR_X2: u64 = esr_mrs_x2(2, 0, 0, 2, 2);
/// BRK #0x42: EC 0x3c, the immediate in ISS.
pub const ESR_BRK_42: u64 = esr(0x3c, 0x42);
/// What L1 gives L2's trapped reads.
pub const MAGIC_CPACR: u64 = 0xc0ff_ee00_0000_0001;
pub const MAGIC_PMCR: u64 = 0xc0ff_ee00_0000_0002;
pub const MAGIC_MDSCR: u64 = 0xc0ff_ee00_0000_0003;
/// MDSCR_EL1.TDCC and MDE: values L1 and L2 pass each other through the
/// register (harmless: no breakpoint or watchpoint is programmed).
pub const MDSCR_TDCC: u64 = 1 << 12;
pub const MDSCR_MDE: u64 = 1 << 15;

assembled_image!(
    "The `traps` L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_traps_image,
    umbra_l1_traps_image_end
);
