//! The recycling demo's guest hypervisor (`hv.nested=recycle`): an L1 that
//! runs three L2 guests in turn, round after round (and a fourth on a
//! second vCPU when hv gives it one), on a service bounded
//! to [`super::nested::RECYCLE_CONTEXTS`] contexts, so the service
//! recycles context slots (and hv runs its recycling handshake,
//! `crate::nested::handshake`) while it runs. Assembled into hv's
//! read-only data and copied into L1's memory like `nested_l1`'s demo; it
//! is data to hv, never executed at EL2.
//!
//! L1 (at L1 IPA `L1_BASE`, MMU off):
//! 1. checks CurrentEL reads 2 and sets VBAR_EL2;
//! 2. for each L2 g (0 to 3) builds a stage 2 of its own (4 KiB granule,
//!    39-bit IPA from level 1, tables at +0x200000 + g * 0x3000, VMID 5 + g:
//!    distinct VTTBR_EL2 values, distinct contexts): L2 IPA 0x80000 ->
//!    the L2 payload page of this image (L2 3: the reading loop's page),
//!    0x100000 -> its page P(g) at +0x300000 + g * 0x2000, 0x101000 -> its
//!    page Q(g) = P(g) + 0x1000; P(g) holds [`MAGIC_P`] + g, Q(g)
//!    [`MAGIC_Q`] + g;
//! 3. starts a second vCPU with PSCI CPU_ON (MPIDR 1). If hv gives it one
//!    (three CPUs: vCPU 0, the service, vCPU 1), that vCPU runs L2 3 again
//!    in one long run: it writes the run's number to P(3) + 8, then reads
//!    its page until vCPU 0 sets the stop word Q(3) + 8, and reports with
//!    `hvc #1` (`hvc #2` with the first value not its own, which fails the
//!    run); L2 3 is in L2 all the time and never re-enters on its own, so
//!    its context's used bit stays clear and the recycles vCPU 0's
//!    switches cause take its context under it (hv's kick SGI, its exit
//!    and re-entry through the handshake). hv answering INVALID_PARAMETERS (no CPU for it) leaves
//!    one vCPU;
//! 4. for rounds 1 to [`ROUNDS`], for each g of 0-2 (with a second vCPU,
//!    once its L2 3 is inside its run, so this entry's recycle finds it
//!    there): programs VTTBR_EL2 and ERETs
//!    into L2 g at 0x80000 (EL1h) with the round in x1. L2 reads P and Q
//!    through 0x100000 and 0x101000, writes the round to 0x100008, reads it
//!    back and reports with `hvc #1`;
//! 5. at its lower-EL vector checks everything L2 g reported (its own P and
//!    Q values: another L2's means one L2 reached another's memory), that
//!    the round landed in P(g) + 8, and that every other L2's P + 8 still
//!    holds the round that L2 last wrote (a write through another L2's
//!    shadow would change it);
//! 6. with a second vCPU, asks it to stop, waits until it has, and checks
//!    its L2 completed runs;
//! 7. prints `UMBRA-NESTED-PASS recycle ...` (`... vcpus=2` with the second
//!    vCPU) and calls PSCI SYSTEM_OFF, or
//!    `UMBRA-NESTED-FAIL: <why>` with the value and PSCI SYSTEM_RESET.
//!
//! L2 faults on each page the first time it runs on a (re)made context;
//! hv serves those with the service and never shows them to L1 (any
//! exception other than L2's `hvc #1` fails the run).

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1R", "umbra_l1r"),
    r#"
// x13 = L2 g's root table (g in \g): x9 + 0x200000 + g * 0x3000.
.macro UMBRA_L1R_TABLES g
    mov     x1, #0x3000
    mul     x2, \g, x1
    add     x13, x9, #0x200000
    add     x13, x13, x2
.endm
// x12 = L2 g's page P (g in \g): x9 + 0x300000 + g * 0x2000.
.macro UMBRA_L1R_PAGE_P g
    lsl     x2, \g, #13
    add     x12, x9, #0x300000
    add     x12, x12, x2
.endm

.pushsection .rodata.umbra_l1r, "a"
.balign 4096
.global umbra_l1r_image
umbra_l1r_image:
    adr     x9, umbra_l1r_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    mov     x11, x1
    adr     x10, umbra_l1r_msg_fail_el
    cmp     x1, #8
    b.ne    umbra_l1r_fail
    adr     x1, umbra_l1r_vectors
    msr     vbar_el2, x1
    isb
    UMBRA_L1R_PUTS umbra_l1r_msg_start
    // Each L2's stage 2 and pages.
    mov     x20, #0
1:  UMBRA_L1R_TABLES x20
    UMBRA_L1R_L2_STAGE2_TABLES
    // Leaves: OA | AF | SH inner | S2AP RW | MemAttr Normal WB | page.
    // L2 3 (the second vCPU's) runs the reading loop.
    adr     x1, umbra_l1r_l2_payload
    cmp     x20, #3
    b.lo    13f
    adr     x1, umbra_l1r_l2_loop
13: orr     x1, x1, #0x7ff
    str     x1, [x14, #0x80 * 8]
    UMBRA_L1R_PAGE_P x20
    orr     x1, x12, #0x7ff
    str     x1, [x14, #0x100 * 8]
    add     x1, x12, #0x1000
    orr     x1, x1, #0x7ff
    str     x1, [x14, #0x101 * 8]
    UMBRA_L1R_MOV64 x1, {magic_p}
    add     x1, x1, x20
    str     x1, [x12]
    str     xzr, [x12, #8]
    UMBRA_L1R_MOV64 x1, {magic_q}
    add     x1, x1, x20
    str     x1, [x12, #0x1000]
    str     xzr, [x12, #0x1008]
    add     x20, x20, #1
    cmp     x20, #4
    b.lo    1b
    dsb     ishst
    UMBRA_L1R_MOV64 x1, {vtcr}
    msr     vtcr_el2, x1
    UMBRA_L1R_MOV64 x1, {vhcr}
    msr     hcr_el2, x1
    isb
    UMBRA_L1R_PUTS umbra_l1r_msg_built
    // A second vCPU (PSCI CPU_ON for MPIDR 1) runs L2 3 while this one
    // runs L2s 0-2; hv may have no CPU for it (INVALID_PARAMETERS).
    UMBRA_L1R_MOV64 x0, 0xc4000003
    mov     x1, #1
    adr     x2, umbra_l1r_secondary
    mov     x3, #0
    hvc     #0
    cbz     x0, 14f
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_on
    cmn     x0, #2
    b.ne    umbra_l1r_fail
    UMBRA_L1R_PUTS umbra_l1r_msg_one_vcpu
    b       15f
14: adr     x4, umbra_l1r_two_vcpus
    mov     x1, #1
    str     x1, [x4]
    UMBRA_L1R_PUTS umbra_l1r_msg_two_vcpus
    // The rounds start once the second vCPU is about to enter L2 3, so
    // their recycles find it there.
    adr     x4, umbra_l1r_sec_started
    UMBRA_L1R_MOV64 x2, {stop_spins}
24: ldr     x1, [x4]
    cbnz    x1, 15f
    subs    x2, x2, #1
    b.ne    24b
    mov     x11, #0
    adr     x10, umbra_l1r_msg_no_start
    b       umbra_l1r_fail
15: adr     x4, umbra_l1r_state
    mov     x1, #1
    str     x1, [x4]
    str     xzr, [x4, #8]

// Enters L2 g (state: round, g) with the round in x1. With a second
// vCPU, first waits until its L2 3 is inside its run (it wrote the run's
// number to P(3) + 8 and L1 has not counted the run complete), where the
// recycle this entry may cause finds it. L2 3 stays in that run until the
// stop word, so it never re-enters on its own: its context's used bit
// stays clear and the service's clock picks it as a victim. (Short runs,
// one completed before each entry, caught L2 3 between runs or just
// re-entered, its context given a second chance: in ~5% of runs under
// load no recycle interrupted it.)
umbra_l1r_enter:
    adr     x9, umbra_l1r_image
    adr     x4, umbra_l1r_two_vcpus
    ldr     x1, [x4]
    cbz     x1, 26f
    mov     x1, #3
    UMBRA_L1R_PAGE_P x1
    adr     x5, umbra_l1r_sec_runs
    UMBRA_L1R_MOV64 x2, {stop_spins}
25: ldr     x6, [x5]
    ldr     x1, [x12, #8]
    cmp     x1, x6
    b.hi    26f
    subs    x2, x2, #1
    b.ne    25b
    mov     x11, x6
    adr     x10, umbra_l1r_msg_no_progress
    b       umbra_l1r_fail
26: adr     x4, umbra_l1r_state
    ldr     x21, [x4]
    ldr     x20, [x4, #8]
    UMBRA_L1R_TABLES x20
    add     x2, x20, #{first_vmid}
    lsl     x2, x2, #48
    orr     x1, x13, x2
    msr     vttbr_el2, x1
    isb
    UMBRA_L1R_AT_L2_PAYLOAD
    mov     x1, x21
    mov     x2, #0
    mov     x3, #0
    mov     x4, #0
    eret

"#,
    l1_asm_print!("UMBRA_L1R", "umbra_l1r"),
    r#"

"#,
    l1_asm_fail!("UMBRA_L1R", "umbra_l1r"),
    l1_asm_vectors!(
        "UMBRA_L1R",
        "umbra_l1r",
        "umbra_l1r_unexpected",
        "umbra_l1r_unexpected",
        "umbra_l1r_lower_sync",
        "umbra_l1r_unexpected",
    ),
    r#"

// L2 g's report: x2 = its P, x3 = its Q, x4 = the round read back.
umbra_l1r_lower_sync:
    adr     x9, umbra_l1r_image
    mrs     x19, esr_el2
    ubfx    x22, x19, #26, #6
    cmp     x22, #0x16
    b.ne    umbra_l1r_unexpected
    and     x22, x19, #0xffff
    // hvc #2 is only in L2 3's reading loop: an L2 of this vCPU ran L2 3's
    // code (its own stage 2 maps 0x80000 to its own payload).
    mov     x11, x2
    adr     x10, umbra_l1r_msg_foreign_code
    cmp     x22, #2
    b.eq    umbra_l1r_fail
    cmp     x22, #1
    b.ne    umbra_l1r_unexpected
    adr     x7, umbra_l1r_state
    ldr     x21, [x7]
    ldr     x20, [x7, #8]
    UMBRA_L1R_MOV64 x5, {magic_p}
    add     x5, x5, x20
    mov     x11, x2
    adr     x10, umbra_l1r_msg_bad_p
    cmp     x2, x5
    b.ne    umbra_l1r_fail
    UMBRA_L1R_MOV64 x5, {magic_q}
    add     x5, x5, x20
    mov     x11, x3
    adr     x10, umbra_l1r_msg_bad_q
    cmp     x3, x5
    b.ne    umbra_l1r_fail
    mov     x11, x4
    adr     x10, umbra_l1r_msg_bad_round
    cmp     x4, x21
    b.ne    umbra_l1r_fail
    // The round landed in L2 g's own page...
    UMBRA_L1R_PAGE_P x20
    ldr     x11, [x12, #8]
    adr     x10, umbra_l1r_msg_lost_write
    cmp     x11, x21
    b.ne    umbra_l1r_fail
    // ... and in no other L2's: L2 h < g wrote this round, h > g the last.
    mov     x23, #0
7:  cmp     x23, x20
    b.eq    9f
    sub     x24, x21, #1
    b.hi    8f
    mov     x24, x21
8:  UMBRA_L1R_PAGE_P x23
    ldr     x11, [x12, #8]
    adr     x10, umbra_l1r_msg_foreign_write
    cmp     x11, x24
    b.ne    umbra_l1r_fail
9:  add     x23, x23, #1
    cmp     x23, #3
    b.lo    7b
    // Next L2; after L2 2, the next round.
    add     x20, x20, #1
    cmp     x20, #3
    b.lo    10f
    UMBRA_L1R_PUTS umbra_l1r_msg_round
    UMBRA_L1R_HEX x21
    UMBRA_L1R_PUTS umbra_l1r_msg_round_end
    mov     x20, #0
    add     x21, x21, #1
10: adr     x7, umbra_l1r_state
    str     x21, [x7]
    str     x20, [x7, #8]
    cmp     x21, #{rounds}
    b.ls    umbra_l1r_enter
    adr     x4, umbra_l1r_two_vcpus
    ldr     x1, [x4]
    cbnz    x1, 16f
    UMBRA_L1R_PUTS umbra_l1r_msg_pass
    UMBRA_L1R_MOV64 x0, 0x84000008
    hvc     #0
11: b       11b
    // Two vCPUs: stop the second one's L2 run (its stop word, Q(3) + 8)
    // and its runs, and wait until it has.
16: adr     x4, umbra_l1r_stop
    mov     x1, #1
    str     x1, [x4]
    mov     x1, #3
    UMBRA_L1R_PAGE_P x1
    mov     x1, #1
    str     x1, [x12, #0x1008]
    dsb     sy
    adr     x4, umbra_l1r_done
    UMBRA_L1R_MOV64 x2, {stop_spins}
17: ldr     x1, [x4]
    cbnz    x1, 18f
    subs    x2, x2, #1
    b.ne    17b
    mov     x11, #0
    adr     x10, umbra_l1r_msg_no_stop
    b       umbra_l1r_fail
18: adr     x4, umbra_l1r_sec_runs
    ldr     x22, [x4]
    mov     x11, x22
    adr     x10, umbra_l1r_msg_no_runs
    cbz     x22, umbra_l1r_fail
    UMBRA_L1R_PUTS umbra_l1r_msg_sec_runs
    UMBRA_L1R_HEX x22
    UMBRA_L1R_PUTS umbra_l1r_msg_sec_runs_end
    UMBRA_L1R_PUTS umbra_l1r_msg_pass2
    UMBRA_L1R_MOV64 x0, 0x84000008
    hvc     #0
19: b       19b

// The second vCPU (PSCI CPU_ON): runs L2 3 (VMID 8) again and again until
// vCPU 0 sets the stop flag; each run reads L2 3's page until vCPU 0 sets
// the stop word
// and must see only L2 3's value.
umbra_l1r_secondary:
    adr     x9, umbra_l1r_image
    add     x10, x9, #0xf0000
    mov     sp, x10
    // It is the vCPU CPU_ON named: MPIDR_EL1 affinity 1.
    mrs     x11, mpidr_el1
    and     x1, x11, #0xffffff
    adr     x10, umbra_l1r_msg_bad_mpidr
    cmp     x1, #1
    b.ne    umbra_l1r_fail
    adr     x1, umbra_l1r_vectors2
    msr     vbar_el2, x1
    isb
    UMBRA_L1R_MOV64 x1, {vtcr}
    msr     vtcr_el2, x1
    UMBRA_L1R_MOV64 x1, {vhcr}
    msr     hcr_el2, x1
    mov     x20, #3
    UMBRA_L1R_TABLES x20
    add     x2, x20, #{first_vmid}
    lsl     x2, x2, #48
    orr     x1, x13, x2
    msr     vttbr_el2, x1
    isb
    adr     x7, umbra_l1r_sec_started
    mov     x1, #1
    str     x1, [x7]
umbra_l1r_sec_enter:
    adr     x7, umbra_l1r_stop
    ldr     x1, [x7]
    cbnz    x1, umbra_l1r_sec_done
    UMBRA_L1R_AT_L2_PAYLOAD
    UMBRA_L1R_MOV64 x1, {magic_p}
    add     x1, x1, #3
    mov     x2, #0
    adr     x3, umbra_l1r_sec_runs
    ldr     x3, [x3]
    add     x3, x3, #1
    eret
umbra_l1r_sec_done:
    adr     x7, umbra_l1r_done
    mov     x1, #1
    str     x1, [x7]
    dsb     sy
20: wfe
    b       20b

.balign 2048
umbra_l1r_vectors2:
    UMBRA_L1R_VECTORS umbra_l1r_unexpected2, umbra_l1r_unexpected2, umbra_l1r_unexpected2, umbra_l1r_lower_sync2, umbra_l1r_unexpected2

umbra_l1r_unexpected2:
    mrs     x11, esr_el2
    adr     x10, umbra_l1r_msg_unexpected2
    b       umbra_l1r_fail

// L2 3's report: hvc #1, all its reads saw its own value; hvc #2, x2 is a
// value not its own.
umbra_l1r_lower_sync2:
    mrs     x19, esr_el2
    ubfx    x22, x19, #26, #6
    cmp     x22, #0x16
    b.ne    umbra_l1r_unexpected2
    and     x22, x19, #0xffff
    cmp     x22, #1
    b.eq    21f
    cmp     x22, #2
    b.ne    umbra_l1r_unexpected2
    mov     x11, x2
    adr     x10, umbra_l1r_msg_sec_bad
    b       umbra_l1r_fail
21: adr     x7, umbra_l1r_sec_runs
    ldr     x1, [x7]
    add     x1, x1, #1
    str     x1, [x7]
    b       umbra_l1r_sec_enter

.balign 8
// The round (from 1) and the L2 (0 to 2) now running.
umbra_l1r_state:
    .quad   0
    .quad   0
// Set when the second vCPU started; vCPU 0's stop request, the second
// vCPU's answer, and its L2 runs.
umbra_l1r_two_vcpus:
    .quad   0
umbra_l1r_stop:
    .quad   0
umbra_l1r_done:
    .quad   0
umbra_l1r_sec_runs:
    .quad   0
umbra_l1r_sec_started:
    .quad   0
umbra_l1r_msg_start:    .asciz "L1 (recycle): running at virtual EL2; L2s 0-2 (VMIDs 5-7) in turn, L2 3 (VMID 8) for a second vCPU, each with its own stage 2, pages and values\n"
umbra_l1r_msg_built:    .asciz "L1 (recycle): stage 2 built for L2s 0, 1, 2 (and 3, for a second vCPU); running 0-2 in turn\n"
umbra_l1r_msg_round:    .asciz "L1 (recycle): round "
umbra_l1r_msg_round_end: .asciz ": L2s 0, 1, 2 each read their own two pages and wrote only their own\n"
umbra_l1r_msg_pass:     .asciz "UMBRA-NESTED-PASS recycle l2s=3 rounds={rounds} own-pages=ok\n"
umbra_l1r_msg_pass2:    .asciz "UMBRA-NESTED-PASS recycle l2s=3 rounds={rounds} own-pages=ok vcpus=2\n"
umbra_l1r_msg_one_vcpu: .asciz "L1 (recycle): one vCPU (PSCI CPU_ON: hv has no CPU for a second)\n"
umbra_l1r_msg_two_vcpus: .asciz "L1 (recycle): second vCPU started (PSCI CPU_ON); it runs L2 3 (VMID 8) in a reading loop while L2s 0-2 take turns here\n"
umbra_l1r_msg_sec_runs: .asciz "L1 (recycle): the second vCPU's L2 3 read only its own page in "
umbra_l1r_msg_sec_runs_end: .asciz " runs\n"
umbra_l1r_msg_cpu_on:   .asciz "PSCI CPU_ON for the second vCPU failed: "
umbra_l1r_msg_no_progress: .asciz "the second vCPU's L2 was not inside a run when vCPU 0 entered its L2, runs completed "
umbra_l1r_msg_bad_mpidr: .asciz "the second vCPU's MPIDR_EL1 is not the CPU_ON target 1: "
umbra_l1r_msg_no_start: .asciz "the second vCPU did not start its L2 runs: "
umbra_l1r_msg_no_stop:  .asciz "the second vCPU did not stop its L2 runs: "
umbra_l1r_msg_no_runs:  .asciz "the second vCPU's L2 never completed a run: "
umbra_l1r_msg_sec_bad:  .asciz "an L2 (L2 3, on the second vCPU) read a value not its own through 0x100000: "
umbra_l1r_msg_foreign_code: .asciz "an L2 ran another L2's code (L2 3's reading loop, hvc #2), x2 "
umbra_l1r_msg_unexpected2: .asciz "unexpected exception at the second vCPU's virtual EL2, ESR_EL2 "
umbra_l1r_msg_nl:       .asciz "\n"
umbra_l1r_msg_fail:     .asciz "UMBRA-NESTED-FAIL: "
umbra_l1r_msg_fail_el:  .asciz "CurrentEL is not 2: "
umbra_l1r_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1r_msg_bad_p:    .asciz "an L2 read a value not its own through 0x100000: "
umbra_l1r_msg_bad_q:    .asciz "an L2 read a value not its own through 0x101000: "
umbra_l1r_msg_bad_round: .asciz "an L2 read back a wrong round through 0x100008: "
umbra_l1r_msg_lost_write: .asciz "an L2's write did not reach its own page: "
umbra_l1r_msg_foreign_write: .asciz "an L2's write reached another L2's page: "

// L2 (MMU off, x1 = the round): reads P and Q, writes the round to P + 8
// and reads it back, reports with hvc #1.
.balign 4096
umbra_l1r_l2_payload:
    movz    x5, #0x10, lsl #16
    ldr     x2, [x5]
    ldr     x3, [x5, #0x1000]
    str     x1, [x5, #8]
    ldr     x4, [x5, #8]
    hvc     #1
12: b       12b

// L2 3 (MMU off, x1 = its page's value, x3 = the run's number): writes x3
// to its page + 8 (vCPU 0 waits for it), then reads its page until the
// stop word (0x101008) is set; hvc #1 when every read saw x1, hvc #2 with
// the first other value.
.balign 4096
umbra_l1r_l2_loop:
    movz    x5, #0x10, lsl #16
    str     x3, [x5, #8]
22: ldr     x2, [x5]
    cmp     x2, x1
    b.ne    23f
    ldr     x2, [x5, #0x1008]
    cbz     x2, 22b
    hvc     #1
    b       .
23: hvc     #2
    b       .
.balign 4096
.global umbra_l1r_image_end
umbra_l1r_image_end:
.popsection
"#,
    magic_p = const MAGIC_P,
    magic_q = const MAGIC_Q,
    vtcr = const super::nested_l1::L1_VTCR,
    vhcr = const super::nested_l1::L1_VIRTUAL_HCR,
    first_vmid = const FIRST_L2_VMID,
    rounds = const ROUNDS,
    stop_spins = const STOP_SPINS,
    putc = const super::nested::HVC_CONSOLE_PUTC,
);

/// The value of L2 g's page P is this plus g (of its page Q: [`MAGIC_Q`]
/// plus g).
pub const MAGIC_P: u64 = 0x5050_0000_1111_0000;
pub const MAGIC_Q: u64 = 0x5151_0000_2222_0000;
/// L2 g runs under L1's VMID 5 + g.
pub const FIRST_L2_VMID: u64 = 5;
/// Rounds of the three L2s.
pub const ROUNDS: u64 = 8;
/// How long vCPU 0 waits for the second vCPU to stop (load iterations;
/// hv's watchdog bounds the run anyway).
pub const STOP_SPINS: u64 = 1 << 28;

assembled_image!(
    "The recycling L1's bytes (code, data and the L2 payload).",
    umbra_l1r_image,
    umbra_l1r_image_end
);
