//! The `host-el0` guest hypervisor (L1): a VHE L1 in host mode (virtual
//! HCR_EL2.{E2H, TGE} = {1, 1}, as a Linux kernel at EL2 runs) runs its
//! own EL0, as Linux runs its user space (`arch::nested`,
//! `EretTarget::L1HostEl0`). Copied by `arch::nested` into L1's memory
//! like `arch::nested_l1`; data to hv, never executed at EL2.
//!
//! L1 (MMU off, its stack at +1 MiB):
//! 0. writes HACR_EL2 all ones and reads 0 (RES0 on hv);
//! 1. writes its SCTLR_EL2 with SPAN 0 (PAN set on exceptions taken to
//!    EL2 in host mode), then sets its virtual HCR_EL2 to E2H | TGE | RW
//!    (a VNCR word, no exit: hv's conversion at the next exit makes SPAN
//!    0 the hardware's) and its CPTR_EL2 (through CPACR_EL1, E2H = 1) with FPEN 0b01:
//!    FP/SIMD traps at EL0 with TGE = 1 only; its own FP instruction at
//!    EL2 then runs without a trap;
//! 2. ERETs to EL0 (SPSR_EL2 EL0t, PAN 0) at `umbra_l1h_el0`, in its own
//!    EL2&0 regime;
//! 3. EL0's FP instruction traps to L1's VBAR_EL2 + 0x400 (a lower EL):
//!    ESR_EL2 0x1fe00000 (EC 0x07, CV 1, COND 0b1110), SPSR_EL2 EL0t,
//!    PSTATE.PAN 1 on entry; L1 sets FPEN 0b11 and ERETs to the
//!    instruction, which runs;
//! 4. EL0's `svc #0x42` (x0 = 0x5a) is taken by L1 at VBAR_EL2 + 0x400:
//!    ESR_EL2 0x56000042, ELR_EL2 the instruction after it, x0 as EL0 left
//!    it;
//! 5. still in host mode, writes SCTLR_EL2 (SPAN 0) again and takes
//!    `svc #0x43` at its own EL2 with PAN 0: VBAR_EL2 + 0x200, PAN set;
//! 6. clears TGE (a VNCR word, no exit), reads SCTLR_EL2 (a trapped read:
//!    hv's exit converts again) and takes `svc #0x44` at EL2 with PAN 0:
//!    PAN still 0 (AArch64.TakeException sets it at EL2 only in host
//!    mode);
//! 7. prints `UMBRA-NESTED-PASS host-el0 el0-fp-trap=ok svc=ok pan=ok
//!    pan-own-el2=ok` and calls PSCI SYSTEM_OFF, or `UMBRA-NESTED-FAIL:
//!    <why>` with the value and SYSTEM_RESET.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1H", "umbra_l1h"),
    r#"
.pushsection .rodata.umbra_l1_host, "a"
.balign 4096
.global umbra_l1_host_image
umbra_l1_host_image:
    adr     x9, umbra_l1_host_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    UMBRA_L1H_EXPECT x1, 8, umbra_l1h_msg_el
    adr     x1, umbra_l1h_vectors
    msr     vbar_el2, x1
    isb
    // HACR_EL2: no IMPLEMENTATION DEFINED trap on hv, RES0 (RAZ/WI).
    mov     x1, #-1
    msr     hacr_el2, x1
    mrs     x11, hacr_el2
    adr     x10, umbra_l1h_msg_hacr
    cbnz    x11, umbra_l1h_fail
    // 1. SPAN 0 (written before TGE: only hv's conversion at the next
    // exit can make it the hardware's), host mode, FPEN 0b01.
    UMBRA_L1H_MOV64 x1, {sctlr_no_span}
    msr     sctlr_el1, x1
    UMBRA_L1H_MOV64 x1, {vhcr_host}
    msr     hcr_el2, x1
    UMBRA_L1H_MOV64 x1, {cpacr_el0_fp}
    msr     cpacr_el1, x1
    isb
    .inst   0x9e670120                      // fmov d0, x9
    UMBRA_L1H_PUTS umbra_l1h_msg_host
    // 2. To its EL0, PAN 0 (x20: the step the vector expects).
    mov     x20, #0
    adr     x1, umbra_l1h_el0
    msr     elr_el2, x1
    msr     spsr_el2, xzr
    msr     s3_0_c4_c2_3, xzr               // PAN = 0
    eret

// L1's host EL0 (EL0t, its EL2&0 regime, stage 1 off).
umbra_l1h_el0:
    .inst   0x9e670121                      // fmov d1, x9
    mov     x0, #0x5a
    svc     #0x42
umbra_l1h_after_svc:
    b       .

"#,
    l1_asm_print!("UMBRA_L1H", "umbra_l1h"),
    l1_asm_fail!("UMBRA_L1H", "umbra_l1h"),
    l1_asm_vectors!(
        "UMBRA_L1H",
        "umbra_l1h",
        "umbra_l1h_own_sync",
        "umbra_l1h_unexpected",
        "umbra_l1h_lower_sync",
        "umbra_l1h_unexpected",
    ),
    r#"

// 3 and 4: an exception from L1's host EL0.
umbra_l1h_lower_sync:
    mov     x21, x0
    mrs     x19, esr_el2
    mrs     x22, spsr_el2
    mrs     x11, s3_0_c4_c2_3               // PAN
    adr     x10, umbra_l1h_msg_pan
    cbz     x11, umbra_l1h_fail
    mov     x11, x22
    adr     x10, umbra_l1h_msg_spsr
    and     x1, x22, #0xf
    cbnz    x1, umbra_l1h_fail
    cbnz    x20, 1f
    // 3: the FP trap.
    UMBRA_L1H_EXPECT x19, {esr_fp}, umbra_l1h_msg_fp
    UMBRA_L1H_MOV64 x1, {cpacr_all}
    msr     cpacr_el1, x1
    isb
    mov     x20, #1
    UMBRA_L1H_PUTS umbra_l1h_msg_fp_ok
    eret
    // 4: the SVC.
1:  UMBRA_L1H_EXPECT x19, {esr_svc}, umbra_l1h_msg_svc
    UMBRA_L1H_EXPECT x21, 0x5a, umbra_l1h_msg_x0
    mrs     x11, elr_el2
    adr     x2, umbra_l1h_after_svc
    adr     x10, umbra_l1h_msg_elr
    cmp     x11, x2
    b.ne    umbra_l1h_fail
    UMBRA_L1H_PUTS umbra_l1h_msg_svc_ok
    // 5. SCTLR_EL2 written again in host mode, then an SVC at its own EL2
    // with PAN 0: taken with PAN set (SPAN 0, E2H = TGE = 1).
    UMBRA_L1H_MOV64 x1, {sctlr_no_span}
    msr     sctlr_el1, x1
    isb
    mov     x20, #2
    msr     s3_0_c4_c2_3, xzr               // PAN = 0
    svc     #0x43
    b       .

// 5 and 6: an exception L1 takes at its own EL2 (x20 the step).
umbra_l1h_own_sync:
    mrs     x19, esr_el2
    mrs     x23, s3_0_c4_c2_3               // PAN
    cmp     x20, #2
    b.ne    1f
    UMBRA_L1H_EXPECT x19, {esr_svc_host}, umbra_l1h_msg_own_svc
    mov     x11, x23
    adr     x10, umbra_l1h_msg_own_pan_host
    cbz     x11, umbra_l1h_fail
    UMBRA_L1H_PUTS umbra_l1h_msg_own_host_ok
    // 6. Out of host mode (TGE 0, a VNCR store), then a trapped read of
    // SCTLR_EL2 (as written, SPAN 0) and an SVC at EL2 with PAN 0: taken
    // with PAN unchanged (AArch64.TakeException sets it for EL2 only in
    // host mode).
    UMBRA_L1H_MOV64 x1, {vhcr_not_host}
    msr     hcr_el2, x1
    isb
    mrs     x11, sctlr_el1
    UMBRA_L1H_EXPECT x11, {sctlr_no_span}, umbra_l1h_msg_sctlr
    mov     x20, #3
    msr     s3_0_c4_c2_3, xzr               // PAN = 0
    svc     #0x44
    b       .
1:  UMBRA_L1H_EXPECT x19, {esr_svc_not_host}, umbra_l1h_msg_own_svc
    mov     x11, x23
    adr     x10, umbra_l1h_msg_own_pan_not_host
    cbnz    x11, umbra_l1h_fail
    UMBRA_L1H_PUTS umbra_l1h_msg_own_not_host_ok
    UMBRA_L1H_PUTS umbra_l1h_msg_pass
    UMBRA_L1H_SYSTEM_OFF

umbra_l1h_msg_host:     .asciz "L1 (host-el0): virtual HCR_EL2 E2H | TGE, SCTLR_EL2.SPAN 0, CPTR_EL2.FPEN 0b01; its own FP at EL2 ran untrapped; ERET to its EL0\n"
umbra_l1h_msg_fp_ok:    .asciz "L1: its EL0's FP instruction trapped to VBAR_EL2 + 0x400 (ESR_EL2 0x1fe00000, SPSR_EL2 EL0t, PAN set on entry); FPEN 0b11, ERET to retry\n"
umbra_l1h_msg_svc_ok:   .asciz "L1: its EL0's SVC #0x42 reached VBAR_EL2 + 0x400 (ESR_EL2 0x56000042, ELR_EL2 after it, x0 0x5a)\n"
umbra_l1h_msg_own_host_ok: .asciz "L1: SCTLR_EL2 (SPAN 0) written again in host mode; its own SVC #0x43 at EL2 was taken with PAN set\n"
umbra_l1h_msg_own_not_host_ok: .asciz "L1: TGE 0; its own SVC #0x44 at EL2 was taken with PAN left 0\n"
umbra_l1h_msg_pass:     .asciz "UMBRA-NESTED-PASS host-el0 el0-fp-trap=ok svc=ok pan=ok pan-own-el2=ok\n"
umbra_l1h_msg_nl:       .asciz "\n"
umbra_l1h_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_l1h_msg_el:       .asciz "CurrentEL is not 2: "
umbra_l1h_msg_unexpected: .asciz "unexpected exception at virtual EL2 (from itself: its own FP instruction, or its EL0's FP instruction ran without the trap FPEN 0b01 asks for), ESR_EL2 "
umbra_l1h_msg_hacr:     .asciz "HACR_EL2 does not read 0 (RES0: hv has no IMPLEMENTATION DEFINED traps) after L1 wrote all ones: "
umbra_l1h_msg_pan:      .asciz "PSTATE.PAN is not set on entry from EL0 (SCTLR_EL2.SPAN 0 in host mode): "
umbra_l1h_msg_spsr:     .asciz "the exception did not come from EL0t: SPSR_EL2 "
umbra_l1h_msg_fp:       .asciz "L1's host EL0 FP/SIMD instruction did not trap to L1 as FPEN 0b01 asks (the first exception from EL0 has ESR_EL2) "
umbra_l1h_msg_svc:      .asciz "L1's host EL0 SVC #0x42 gave a wrong ESR_EL2: "
umbra_l1h_msg_x0:       .asciz "x0 at L1's vector is not what its EL0 left (0x5a): "
umbra_l1h_msg_own_svc:  .asciz "L1's own SVC at EL2 gave a wrong ESR_EL2 (or the wrong step took it): "
umbra_l1h_msg_own_pan_host: .asciz "PSTATE.PAN is not set on L1's own SVC at EL2 in host mode (SCTLR_EL2.SPAN 0 written in host mode): "
umbra_l1h_msg_own_pan_not_host: .asciz "PSTATE.PAN is set on L1's own SVC at EL2 with TGE 0 (PAN must be left alone): "
umbra_l1h_msg_sctlr:    .asciz "SCTLR_EL2 does not read as L1 wrote it: "
umbra_l1h_msg_elr:      .asciz "ELR_EL2 after its EL0's SVC is not the next instruction: "
.balign 4096
.global umbra_l1_host_image_end
umbra_l1_host_image_end:
.popsection
"#,
    putc = const super::nested::HVC_CONSOLE_PUTC,
    vhcr_host = const HOST_VIRTUAL_HCR,
    sctlr_no_span = const SCTLR_EL2_NO_SPAN,
    cpacr_el0_fp = const (1 << 20) | ZEN | SMEN,
    cpacr_all = const FPEN | ZEN | SMEN,
    esr_fp = const ESR_FP_FROM_AARCH64,
    esr_svc = const ESR_SVC_42,
    vhcr_not_host = const HOST_VIRTUAL_HCR & !hcr::TGE,
    esr_svc_host = const ESR_SVC_42 + 1,
    esr_svc_not_host = const ESR_SVC_42 + 2,
);

use crate::nested::hcr;
use crate::nested::traps::cptr::{VHE_FPEN as FPEN, VHE_SMEN as SMEN, VHE_ZEN as ZEN};

/// L1's virtual HCR_EL2 in host mode: E2H, TGE, RW.
pub const HOST_VIRTUAL_HCR: u64 = hcr::E2H | hcr::TGE | hcr::RW;
/// SCTLR_EL2 (E2H = 1, SCTLR_EL1's layout) with its RES1 bits (11, 20,
/// 22, 28, 29), the MMU off and SPAN (23) 0.
pub const SCTLR_EL2_NO_SPAN: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 28) | (1 << 29);
/// An FP/SIMD trap from AArch64: EC 0x07, IL 1, CV 1, COND 0b1110.
pub const ESR_FP_FROM_AARCH64: u64 = 0x07 << 26 | 1 << 25 | 1 << 24 | 0xe << 20;
/// SVC #0x42 from AArch64: EC 0x15, IL 1, the immediate in ISS.
pub const ESR_SVC_42: u64 = 0x15 << 26 | 1 << 25 | 0x42;

assembled_image!(
    "The `host-el0` L1 image's bytes.",
    umbra_l1_host_image,
    umbra_l1_host_image_end
);
