//! The `sve` guest hypervisor (L1) and its guest (L2): L1's ZCR_EL2 and
//! SMCR_EL2, the SVE and SME vector lengths of its own code at virtual EL2
//! and the limits of L2's (`crate::nested::vector`,
//! `arch::nested::vector`). A VHE L1 (E2H = 1; `hv.nested=sve`) when
//! shown FEAT_VHE, else a non-VHE one (E2H = 0, NV1 = 1;
//! `hv.nested=sve-nvhe`), with its MMU off, shown FEAT_SVE and FEAT_SME
//! (QEMU `-cpu max`, whose lengths are every power of two from 128 to
//! 2048 bits). Copied by `arch::nested` into L1's
//! memory like `arch::nested_l1`; data to hv, never executed at EL2.
//!
//! L1 (its stack at +1 MiB, L2's stage 2 at +2 MiB mapping L2 IPA 0x80000
//! to the L2 payload page, VMID 5, virtual HCR_EL2 RW, DC, VM):
//! 1. checks it is shown SVE, SME and FEAT_SME_FA64; reads ZCR_EL2 at
//!    reset (LEN 0xf, hv's choice) and its own vector length there (RDVL,
//!    the longest);
//! 2. writes ZCR_EL2 with LEN 1 and every other bit set: reads back 1
//!    (\[8:4\] RAZ/WI, the rest RES0) and RDVL gives 32 bytes; with E2H
//!    = 1 ZCR_EL1 is the same register (reads 1; a write of LEN 3 through
//!    it reads back through ZCR_EL2; then LEN 1 again), with E2H = 0 it is
//!    L2's (a write of 3 reads back there, ZCR_EL2 and RDVL unchanged);
//! 3. the same for SMCR_EL2 (LEN 0xf at reset, LEN 1 written with the
//!    RAZ/WI bits set, FA64 clear): reads back 1, RDSVL gives 32 bytes;
//! 4. with its CPTR_EL2 (E2H = 1: written through CPACR_EL1) trapping
//!    SVE (ZEN 0b00, TZ), its MRS ZCR_EL2 takes an SVE trap at its own EL2 (VBAR_EL2 +
//!    0x200, ESR_EL2 0x66000000); with SMEN 0b00, MRS SMCR_EL2 an SME trap
//!    (SMEN 0b00, TSM: 0x76000000); its handler re-enables both and steps
//!    over;
//! 5. sets L2's CPACR_EL1 (FP, SVE, SME on), ZCR_EL1 and SMCR_EL1 (LEN
//!    0xf) and VBAR_EL1 (its VNCR page: the `_EL12` encodings with E2H =
//!    1, the `_EL1` ones with E2H = 0) and
//!    ERETs into L2, which reads its lengths (RDVL, RDSVL: 32 bytes,
//!    limited by L1's EL2 LEN 1), its ZCR_EL1 and SMCR_EL1 (0xf, as L1 set
//!    them), writes both 0 and reads its lengths again (16 bytes), sets
//!    its SMCR_EL1.FA64 and runs an Advanced SIMD vector instruction in
//!    Streaming SVE mode, which takes an SME trap at its own EL1 (L1's
//!    FA64 is clear), then `hvc #1`;
//! 6. L1 checks those, that ZCR_EL12 and SMCR_EL12 read what L2 wrote, and
//!    that its own ZCR_EL2, SMCR_EL2 and lengths are still LEN 1, 32 bytes;
//! 7. prints `UMBRA-NESTED-PASS sve ...` and calls PSCI SYSTEM_OFF, or
//!    `UMBRA-NESTED-FAIL: <why>` with the value and SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1V", "umbra_l1v"),
    r#"
// x\d = this EL's SVE vector length in bytes (RDVL x\d, #1).
.macro UMBRA_L1V_RDVL d
    .inst   0x04bf5020 | \d
.endm
// x\d = the Streaming SVE vector length in bytes (RDSVL x\d, #1).
.macro UMBRA_L1V_RDSVL d
    .inst   0x04bf5820 | \d
.endm
// Branches to \label when L1 runs with E2H = 1 (clobbers x4).
.macro UMBRA_L1V_IF_VHE label
    adr     x4, umbra_l1v_e2h
    ldr     x4, [x4]
    cbnz    x4, \label
.endm
// L1's CPTR_EL2 = entry \index of its layout's table: through CPACR_EL1
// with E2H = 1, CPTR_EL2 with E2H = 0 (clobbers x1, x4).
.macro UMBRA_L1V_SET_CPTR index
    adr     x4, umbra_l1v_e2h
    ldr     x4, [x4]
    cbz     x4, 81f
    adr     x1, umbra_l1v_vhe_cptr
    ldr     x1, [x1, #(8 * \index)]
    msr     cpacr_el1, x1
    b       82f
81: adr     x1, umbra_l1v_nvhe_cptr
    ldr     x1, [x1, #(8 * \index)]
    msr     s3_4_c1_c1_2, x1
82: isb
.endm

.pushsection .rodata.umbra_l1_sve, "a"
.balign 4096
.global umbra_l1_sve_image
umbra_l1_sve_image:
    adr     x9, umbra_l1_sve_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1V_EXPECT x1, 8, umbra_l1v_msg_el
    adr     x1, umbra_l1v_vectors
    msr     vbar_el2, x1
    isb
    // VHE (E2H = 1) if shown FEAT_VHE (ID_AA64MMFR1_EL1.VH), else
    // non-VHE (E2H = 0).
    mrs     x1, id_aa64mmfr1_el1
    ubfx    x1, x1, #8, #4
    adr     x2, umbra_l1v_e2h
    str     x1, [x2]
    // 1. Shown SVE (ID_AA64PFR0_EL1 [35:32]) and SME (PFR1 [27:24]).
    mrs     x1, id_aa64pfr0_el1
    ubfx    x1, x1, #32, #4
    adr     x10, umbra_l1v_msg_no_sve
    mov     x11, x1
    cbz     x1, umbra_l1v_fail
    mrs     x1, id_aa64pfr1_el1
    ubfx    x1, x1, #24, #4
    adr     x10, umbra_l1v_msg_no_sme
    mov     x11, x1
    cbz     x1, umbra_l1v_fail
    mrs     x1, s3_0_c0_c4_5                // ID_AA64SMFR0_EL1
    lsr     x1, x1, #63
    adr     x10, umbra_l1v_msg_no_fa64
    mov     x11, x1
    cbz     x1, umbra_l1v_fail
    mrs     x19, s3_4_c1_c2_0               // ZCR_EL2
    UMBRA_L1V_EXPECT x19, 0xf, umbra_l1v_msg_zcr_reset
    UMBRA_L1V_RDVL 20
    UMBRA_L1V_REPORT umbra_l1v_msg_reset, x20
    // 2. ZCR_EL2: LEN 1 with every other bit set.
    mov     x1, #-15                        // 0xffff_ffff_ffff_fff1
    msr     s3_4_c1_c2_0, x1
    mrs     x19, s3_4_c1_c2_0
    UMBRA_L1V_EXPECT x19, 1, umbra_l1v_msg_zcr_kept
    UMBRA_L1V_RDVL 19
    UMBRA_L1V_EXPECT x19, {l1_bytes}, umbra_l1v_msg_own_vl
    UMBRA_L1V_IF_VHE 1f
    // E2H = 0: ZCR_EL1 is L2's (the VNCR word, NV1 = 1), not L1's own.
    mov     x1, #3
    msr     s3_0_c1_c2_0, x1
    mrs     x19, s3_4_c1_c2_0
    UMBRA_L1V_EXPECT x19, 1, umbra_l1v_msg_zcr_el1_nvhe
    mrs     x19, s3_0_c1_c2_0
    UMBRA_L1V_EXPECT x19, 3, umbra_l1v_msg_zcr_el1_l2
    UMBRA_L1V_RDVL 19
    UMBRA_L1V_EXPECT x19, {l1_bytes}, umbra_l1v_msg_own_vl
    UMBRA_L1V_PUTS umbra_l1v_msg_zcr_ok_nvhe
    b       2f
    // E2H = 1: ZCR_EL1 is ZCR_EL2.
1:  mrs     x19, s3_0_c1_c2_0
    UMBRA_L1V_EXPECT x19, 1, umbra_l1v_msg_zcr_el1
    mov     x1, #3
    msr     s3_0_c1_c2_0, x1
    mrs     x19, s3_4_c1_c2_0
    UMBRA_L1V_EXPECT x19, 3, umbra_l1v_msg_zcr_el1_write
    mov     x1, #1
    msr     s3_4_c1_c2_0, x1
    UMBRA_L1V_PUTS umbra_l1v_msg_zcr_ok
2:
    // 3. SMCR_EL2: LEN 0xf at reset; LEN 1 with the RAZ/WI bits set.
    mrs     x20, s3_4_c1_c2_6               // SMCR_EL2
    UMBRA_L1V_REPORT umbra_l1v_msg_smcr_reset_value, x20
    and     x19, x20, #0xf
    UMBRA_L1V_EXPECT x19, 0xf, umbra_l1v_msg_smcr_reset
    mov     x1, #0x1f1
    msr     s3_4_c1_c2_6, x1
    mrs     x19, s3_4_c1_c2_6
    UMBRA_L1V_EXPECT x19, 1, umbra_l1v_msg_smcr_kept
    UMBRA_L1V_RDSVL 19
    UMBRA_L1V_EXPECT x19, {l1_bytes}, umbra_l1v_msg_own_svl
    UMBRA_L1V_PUTS umbra_l1v_msg_smcr_ok
    // 4. CPTR_EL2 trapping SVE, then SME: the access traps at its own
    // EL2 with the exact syndrome.
    UMBRA_L1V_MOV64 x1, {esr_sve}
    adr     x2, umbra_l1v_own_expect
    str     x1, [x2]
    UMBRA_L1V_SET_CPTR 1
    mrs     x2, s3_4_c1_c2_0
    UMBRA_L1V_MOV64 x1, {esr_sme}
    adr     x2, umbra_l1v_own_expect
    str     x1, [x2]
    UMBRA_L1V_SET_CPTR 2
    mrs     x2, s3_4_c1_c2_6
    adr     x4, umbra_l1v_own_traps
    ldr     x19, [x4]
    UMBRA_L1V_EXPECT x19, 2, umbra_l1v_msg_own_traps
    UMBRA_L1V_PUTS umbra_l1v_msg_own_traps_ok
    // 5. L2: its stage 2; CPACR_EL1, ZCR_EL1, SMCR_EL1, VBAR_EL1 (the
    // VNCR page) through the _EL12 encodings with E2H = 1, the _EL1 ones
    // with E2H = 0.
    add     x13, x9, #0x200000
    UMBRA_L1V_L2_STAGE2_TABLES umbra_l2v_payload
    UMBRA_L1V_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    UMBRA_L1V_MOV64 x5, {cpacr_all}
    mov     x6, #0xf
    UMBRA_L1V_MOV64 x7, {l2_vectors}
    UMBRA_L1V_IF_VHE 3f
    msr     cpacr_el1, x5
    msr     s3_0_c1_c2_0, x6                // ZCR_EL1
    msr     s3_0_c1_c2_6, x6                // SMCR_EL1
    msr     vbar_el1, x7
    b       4f
3:  msr     s3_5_c1_c0_2, x5                // CPACR_EL12
    msr     s3_5_c1_c2_0, x6                // ZCR_EL12
    msr     s3_5_c1_c2_6, x6                // SMCR_EL12
    msr     s3_5_c12_c0_0, x7               // VBAR_EL12
4:  isb
    UMBRA_L1V_PUTS umbra_l1v_msg_enter
    UMBRA_L1V_AT_L2_PAYLOAD
    eret

"#,
    l1_asm_print!("UMBRA_L1V", "umbra_l1v"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1V", "umbra_l1v"),
    l1_asm_vectors!(
        "UMBRA_L1V",
        "umbra_l1v",
        "umbra_l1v_own_sync",
        "umbra_l1v_unexpected",
        "umbra_l1v_lower_sync",
        "umbra_l1v_unexpected",
    ),
    r#"

// 4: L1's own trapped ZCR_EL2/SMCR_EL2 access: the expected syndrome,
// counted; SVE and SME untrapped again, the access stepped over.
umbra_l1v_own_sync:
    UMBRA_L1V_SAVE
    mrs     x19, esr_el2
    adr     x4, umbra_l1v_own_expect
    ldr     x3, [x4]
    mov     x11, x19
    adr     x10, umbra_l1v_msg_own_esr
    cmp     x19, x3
    b.ne    umbra_l1v_fail
    adr     x4, umbra_l1v_own_traps
    ldr     x5, [x4]
    add     x5, x5, #1
    str     x5, [x4]
    UMBRA_L1V_SET_CPTR 0
    mrs     x1, elr_el2
    add     x1, x1, #4
    msr     elr_el2, x1
    isb
    UMBRA_L1V_RESTORE
    eret

// 6: L2's `hvc #1` with its readings in x2-x8 (the frame: x<n> at
// [sp, #8 * n]).
umbra_l1v_lower_sync:
    UMBRA_L1V_SAVE
    mrs     x19, esr_el2
    UMBRA_L1V_EXPECT x19, {esr_hvc1}, umbra_l1v_msg_unexpected
    ldr     x19, [sp, #16]
    UMBRA_L1V_EXPECT x19, {l1_bytes}, umbra_l1v_msg_l2_vl
    ldr     x19, [sp, #24]
    UMBRA_L1V_EXPECT x19, {l1_bytes}, umbra_l1v_msg_l2_svl
    ldr     x19, [sp, #32]
    UMBRA_L1V_EXPECT x19, 0xf, umbra_l1v_msg_l2_zcr
    ldr     x19, [sp, #40]
    UMBRA_L1V_EXPECT x19, 0xf, umbra_l1v_msg_l2_smcr
    ldr     x19, [sp, #56]
    UMBRA_L1V_EXPECT x19, 16, umbra_l1v_msg_l2_vl_short
    ldr     x19, [sp, #64]
    UMBRA_L1V_EXPECT x19, 16, umbra_l1v_msg_l2_svl_short
    UMBRA_L1V_PUTS umbra_l1v_msg_l2_ok
    ldr     x19, [sp, #72]
    UMBRA_L1V_EXPECT x19, {esr_streaming}, umbra_l1v_msg_fa64
    UMBRA_L1V_PUTS umbra_l1v_msg_fa64_ok
    // L2's writes reached its VNCR words (ZCR/SMCR_EL12 with E2H = 1,
    // ZCR/SMCR_EL1 with E2H = 0); L1's own state is back.
    UMBRA_L1V_IF_VHE 1f
    mrs     x19, s3_0_c1_c2_0
    mrs     x20, s3_0_c1_c2_6
    b       2f
1:  mrs     x19, s3_5_c1_c2_0
    mrs     x20, s3_5_c1_c2_6
2:  UMBRA_L1V_EXPECT x19, 0, umbra_l1v_msg_zcr12
    UMBRA_L1V_EXPECT x20, {fa64}, umbra_l1v_msg_smcr12
    mrs     x19, s3_4_c1_c2_0
    UMBRA_L1V_EXPECT x19, 1, umbra_l1v_msg_zcr_after
    mrs     x19, s3_4_c1_c2_6
    UMBRA_L1V_EXPECT x19, 1, umbra_l1v_msg_smcr_after
    UMBRA_L1V_RDVL 19
    UMBRA_L1V_EXPECT x19, {l1_bytes}, umbra_l1v_msg_own_vl_after
    UMBRA_L1V_RDSVL 19
    UMBRA_L1V_EXPECT x19, {l1_bytes}, umbra_l1v_msg_own_svl_after
    // review45: its own lengths follow a longer ZCR_EL2/SMCR_EL2 again
    // (hv's own EL2 limits must be back once L2 has run).
    mov     x1, #3
    msr     s3_4_c1_c2_0, x1
    UMBRA_L1V_MOV64 x1, (3 | {fa64})
    msr     s3_4_c1_c2_6, x1
    isb
    mrs     x19, s3_4_c1_c2_6
    UMBRA_L1V_EXPECT x19, (3 | {fa64}), umbra_l1v_msg_smcr_fa64_kept
    UMBRA_L1V_RDVL 19
    UMBRA_L1V_EXPECT x19, 64, umbra_l1v_msg_own_vl_raised
    UMBRA_L1V_RDSVL 19
    UMBRA_L1V_EXPECT x19, 64, umbra_l1v_msg_own_svl_raised
    // With its FA64 set, its own Advanced SIMD instruction in Streaming
    // SVE mode is legal at its EL2 (a trap fails at umbra_l1v_own_sync).
    .inst   0xd503437f                      // smstart sm
    .inst   0x4ea08400                      // add v0.4s, v0.4s, v0.4s
    .inst   0xd503427f                      // smstop sm
    UMBRA_L1V_PUTS umbra_l1v_msg_after_ok
    adr     x10, umbra_l1v_msg_pass_nvhe
    UMBRA_L1V_IF_VHE 1f
    b       2f
1:  adr     x10, umbra_l1v_msg_pass
2:  bl      umbra_l1v_puts
    UMBRA_L1V_SYSTEM_OFF

// L1's CPTR_EL2 for each layout: nothing trapped, SVE trapped, SME
// trapped.
.balign 8
umbra_l1v_vhe_cptr:
    .quad   {cpacr_all}, {cpacr_all} & ~{zen}, {cpacr_all} & ~{smen}
umbra_l1v_nvhe_cptr:
    .quad   {nvhe_res1}, {nvhe_res1} | {tz}, {nvhe_res1} | {tsm}
umbra_l1v_e2h:
    .quad   0

.balign 8
umbra_l1v_own_expect:
    .quad   0
umbra_l1v_own_traps:
    .quad   0
umbra_l1v_msg_reset:    .asciz "L1 (sve): at virtual EL2, shown SVE and SME; ZCR_EL2 at reset LEN 0xf, its RDVL (bytes) "
umbra_l1v_msg_smcr_reset_value: .asciz "L1: SMCR_EL2 at reset (LEN 0xf, FA64 and EZT0 where shown) "
umbra_l1v_msg_zcr_ok:   .asciz "L1: ZCR_EL2 = LEN 1 (RAZ/WI and RES0 bits dropped), the same register as ZCR_EL1 with E2H = 1; its own RDVL at virtual EL2: 32 bytes\n"
umbra_l1v_msg_smcr_ok:  .asciz "L1: SMCR_EL2 = LEN 1; its own RDSVL at virtual EL2: 32 bytes\n"
umbra_l1v_msg_own_traps_ok: .asciz "L1: with its CPTR_EL2 trapping SVE (SME) its MRS ZCR_EL2 (SMCR_EL2) trapped at its own EL2 (EC 0x19, 0x1d)\n"
umbra_l1v_msg_enter:    .asciz "L1: L2's ZCR_EL1 and SMCR_EL1 = LEN 0xf in its VNCR page (ZCR/SMCR_EL12, or _EL1 with E2H = 0); ERET to L2\n"
umbra_l1v_msg_l2_ok:    .asciz "L1: L2's RDVL and RDSVL gave 32 bytes (limited by L1's LEN 1), its ZCR_EL1/SMCR_EL1 read 0xf, 16 bytes after it wrote LEN 0\n"
umbra_l1v_msg_fa64_ok:  .asciz "L1: with L1's SMCR_EL2.FA64 0, L2's Advanced SIMD instruction in Streaming SVE mode took the SME trap at L2's EL1 (ESR_EL1 0x76000001) though L2's own FA64 is 1\n"
umbra_l1v_msg_after_ok: .asciz "L1: L2's ZCR_EL1/SMCR_EL1 in its VNCR page read what L2 wrote (0, FA64); L1's own ZCR_EL2/SMCR_EL2 and lengths unchanged after L2 ran\n"
umbra_l1v_msg_pass_nvhe: .asciz "UMBRA-NESTED-PASS sve e2h=0 zcr-el2=ok smcr-el2=ok own-vl=ok own-traps=ok l2-vl=ok l2-el1=ok fa64=ok restored=ok\n"
umbra_l1v_msg_zcr_ok_nvhe: .asciz "L1: ZCR_EL2 = LEN 1 (RAZ/WI and RES0 bits dropped); ZCR_EL1 (E2H = 0) is L2's, not its own; its own RDVL at virtual EL2: 32 bytes\n"
umbra_l1v_msg_zcr_el1_nvhe: .asciz "L1's ZCR_EL2 changed when it wrote ZCR_EL1 (L2's with E2H = 0): "
umbra_l1v_msg_zcr_el1_l2: .asciz "ZCR_EL1 (L2's with E2H = 0) does not read back what L1 wrote: "
umbra_l1v_msg_pass:     .asciz "UMBRA-NESTED-PASS sve e2h=1 zcr-el2=ok smcr-el2=ok own-vl=ok own-traps=ok l2-vl=ok l2-el1=ok fa64=ok restored=ok\n"
umbra_l1v_msg_nl:       .asciz "\n"
umbra_l1v_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_l1v_msg_el:       .asciz "CurrentEL is not 2: "
umbra_l1v_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1v_msg_no_sve:   .asciz "L1 is not shown FEAT_SVE: ID_AA64PFR0_EL1.SVE "
umbra_l1v_msg_no_sme:   .asciz "L1 is not shown FEAT_SME: ID_AA64PFR1_EL1.SME "
umbra_l1v_msg_no_fa64:  .asciz "L1 is not shown FEAT_SME_FA64: ID_AA64SMFR0_EL1.FA64 "
umbra_l1v_msg_fa64:     .asciz "L2's Advanced SIMD instruction in streaming mode did not trap at its EL1 (L1's SMCR_EL2.FA64 0): ESR_EL1 "
umbra_l1v_msg_zcr_reset: .asciz "ZCR_EL2 at reset is not LEN 0xf: "
umbra_l1v_msg_zcr_kept: .asciz "ZCR_EL2 does not read back LEN 1 alone: "
umbra_l1v_msg_zcr_el1:  .asciz "ZCR_EL1 (ZCR_EL2 with E2H = 1) does not read L1's ZCR_EL2: "
umbra_l1v_msg_zcr_el1_write: .asciz "ZCR_EL2 does not read what L1 wrote through ZCR_EL1: "
umbra_l1v_msg_own_vl:   .asciz "L1's own SVE vector length at virtual EL2 is not what its ZCR_EL2.LEN 1 asks (32 bytes): "
umbra_l1v_msg_smcr_reset: .asciz "SMCR_EL2.LEN at reset is not 0xf: "
umbra_l1v_msg_smcr_kept: .asciz "SMCR_EL2 does not read back LEN 1 alone: "
umbra_l1v_msg_own_svl:  .asciz "L1's own streaming vector length at virtual EL2 is not what its SMCR_EL2.LEN 1 asks (32 bytes): "
umbra_l1v_msg_own_esr:  .asciz "L1's own trap at its EL2 has a wrong ESR_EL2: "
umbra_l1v_msg_own_traps: .asciz "L1's ZCR_EL2 and SMCR_EL2 accesses did not trap once each at its EL2 with its CPTR_EL2 trapping SVE, SME: "
umbra_l1v_msg_l2_vl:    .asciz "L2's SVE vector length is not limited by L1's ZCR_EL2.LEN 1 (32 bytes): "
umbra_l1v_msg_l2_svl:   .asciz "L2's streaming vector length is not limited by L1's SMCR_EL2.LEN 1 (32 bytes): "
umbra_l1v_msg_l2_zcr:   .asciz "L2's ZCR_EL1 is not what L1 set through ZCR_EL12: "
umbra_l1v_msg_l2_smcr:  .asciz "L2's SMCR_EL1 is not what L1 set through SMCR_EL12: "
umbra_l1v_msg_l2_vl_short: .asciz "L2's SVE vector length after its ZCR_EL1 = 0 is not 16 bytes: "
umbra_l1v_msg_l2_svl_short: .asciz "L2's streaming vector length after its SMCR_EL1 = 0 is not 16 bytes: "
umbra_l1v_msg_zcr12:    .asciz "L2's ZCR_EL1 in L1's VNCR page is not the 0 L2 wrote: "
umbra_l1v_msg_smcr12:   .asciz "L2's SMCR_EL1 in L1's VNCR page is not the FA64 L2 wrote: "
umbra_l1v_msg_zcr_after: .asciz "L1's ZCR_EL2 changed while L2 ran: "
umbra_l1v_msg_smcr_after: .asciz "L1's SMCR_EL2 changed while L2 ran: "
umbra_l1v_msg_own_vl_after: .asciz "L1's own SVE vector length changed while L2 ran: "
umbra_l1v_msg_smcr_fa64_kept: .asciz "review45: L1's SMCR_EL2 does not read back LEN 3 with FA64: "
umbra_l1v_msg_own_vl_raised: .asciz "review45: L1's own SVE vector length after L2 ran and ZCR_EL2 = LEN 3 is not 64 bytes: "
umbra_l1v_msg_own_svl_raised: .asciz "review45: L1's own streaming vector length after L2 ran and SMCR_EL2 = LEN 3 is not 64 bytes: "
umbra_l1v_msg_own_svl_after: .asciz "L1's own streaming vector length changed while L2 ran: "

// L2 (at 0x80000, EL1h, stage 1 off): its lengths and registers in x2-x8,
// then an HVC for L1 to check them.
.balign 4096
umbra_l2v_payload:
    UMBRA_L1V_RDVL 2
    UMBRA_L1V_RDSVL 3
    mrs     x4, s3_0_c1_c2_0                // ZCR_EL1
    mrs     x5, s3_0_c1_c2_6                // SMCR_EL1
    msr     s3_0_c1_c2_0, xzr
    msr     s3_0_c1_c2_6, xzr
    isb
    UMBRA_L1V_RDVL 7
    UMBRA_L1V_RDSVL 8
    // Its own FA64 set, L1's clear: an Advanced SIMD vector instruction
    // in Streaming SVE mode is illegal, an SME trap at L2's EL1 (x9 its
    // ESR_EL1; 0 if none).
    mov     x1, #{fa64}
    msr     s3_0_c1_c2_6, x1
    mov     x9, #0
    .inst   0xd503437f                      // smstart sm
    .inst   0x4ea08400                      // add v0.4s, v0.4s, v0.4s
    .inst   0xd503427f                      // smstop sm
    hvc     #1
    b       .

// L2's vector table (at L2 IPA 0x80800): its synchronous exception at
// EL1 with SP_EL1 records ESR_EL1 in x9 and steps over the instruction.
.balign 2048
umbra_l2v_vectors:
    .skip   0x200
    mrs     x9, esr_el1
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
.balign 4096
.global umbra_l1_sve_image_end
umbra_l1_sve_image_end:
.popsection
"#,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    vmid_shifted = const (super::nested_l1::L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    l1_bytes = const L1_VECTOR_BYTES,
    esr_sve = const crate::nested::vector::ESR_SVE_ACCESS,
    esr_sme = const crate::nested::vector::ESR_SME_ACCESS,
    esr_hvc1 = const ESR_HVC_1,
    cpacr_all = const FPEN | ZEN | SMEN,
    zen = const ZEN,
    smen = const SMEN,
    nvhe_res1 = const NVHE_RES1,
    tz = const NVHE_TZ,
    tsm = const NVHE_TSM,
    fa64 = const crate::nested::vector::bits::SMCR_FA64,
    esr_streaming = const ESR_STREAMING_ILLEGAL,
    l2_vectors = const L2_VECTORS,
);

use crate::nested::traps::cptr::{
    NVHE_RES1, NVHE_TSM, NVHE_TZ, VHE_FPEN as FPEN, VHE_SMEN as SMEN, VHE_ZEN as ZEN,
};

/// The vector length L1's LEN 1 asks for, in bytes: (1 + 1) * 128 bits.
pub const L1_VECTOR_BYTES: u64 = 32;
/// An SME trap for an instruction illegal in Streaming SVE mode: EC
/// 0x1D, IL 1, SMTC 0b001.
pub const ESR_STREAMING_ILLEGAL: u64 = 0x1d << 26 | 1 << 25 | 1;
/// L2's VBAR_EL1: its vector table, 2 KiB into its payload page at L2
/// IPA 0x80000.
pub const L2_VECTORS: u64 = 0x80800;
/// HVC #1 from AArch64: EC 0x16, IL 1, the immediate in ISS.
pub const ESR_HVC_1: u64 = 0x16 << 26 | 1 << 25 | 1;

assembled_image!(
    "The `sve` L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_sve_image,
    umbra_l1_sve_image_end
);
