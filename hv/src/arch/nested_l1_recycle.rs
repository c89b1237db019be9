//! The recycling demo's guest hypervisor (`hv.nested=recycle`): an L1 that
//! runs three L2 guests in turn, round after round (and one more on each
//! other vCPU hv gives it), on a service bounded to
//! [`super::nested::RECYCLE_CONTEXTS`] contexts (one per vCPU from three
//! vCPUs on), so the service recycles context slots (and hv runs its
//! recycling handshake, `crate::nested::handshake`) while it runs.
//! Assembled into hv's read-only data and copied into L1's memory like
//! `nested_l1`'s demo; it is data to hv, never executed at EL2.
//!
//! L1 (at L1 IPA `L1_BASE`, MMU off):
//! 1. checks CurrentEL reads 2 and sets VBAR_EL2;
//! 2. for each L2 g (0 to 4) builds a stage 2 of its own (4 KiB granule,
//!    39-bit IPA from level 1, tables at +0x200000 + g * 0x3000, VMID 5 + g:
//!    distinct VTTBR_EL2 values, distinct contexts): L2 IPA 0x80000 ->
//!    the L2 payload page of this image (L2s 3 and 4: the reading loop's
//!    page), 0x100000 -> its page P(g) at +0x300000 + g * 0x2000, 0x101000
//!    -> its page Q(g) = P(g) + 0x1000; P(g) holds [`MAGIC_P`] + g, Q(g)
//!    [`MAGIC_Q`] + g;
//! 3. starts vCPU 1 with PSCI CPU_ON (MPIDR 1, context 1). If hv gives it
//!    one (three CPUs or more: vCPU 0, the service, vCPU 1), vCPU k runs
//!    L2 2 + k in one long run: it writes the run's number to its P + 8,
//!    then reads its page (adding one to its heartbeat P + 16 each time
//!    round) until vCPU 0 sets its stop word Q + 8, and
//!    reports with `hvc #1` (`hvc #2` with the first value not its own,
//!    which fails the run); the L2 is in L2 all the time and never
//!    re-enters on its own, so its context's used bit stays clear and the
//!    recycles vCPU 0's switches cause take its context under it (hv's
//!    kick SGI, its exit and re-entry through the handshake). hv
//!    answering INVALID_PARAMETERS (no CPU for it) leaves one vCPU;
//! 4. then starts vCPU 2 (MPIDR 2) for a short life (context 0x102: its
//!    stop word set, one run of L2 4, then PSCI CPU_OFF). If hv gives it
//!    one (four CPUs), L1 checks that CPU_ON again answers ON_PENDING or
//!    ALREADY_ON, that CPU_ON and AFFINITY_INFO of MPIDR 3 answer
//!    INVALID_PARAMETERS and CPU_ON of itself ALREADY_ON, and polls
//!    AFFINITY_INFO(2) (ON or ON_PENDING) until it says OFF, at most 2 s;
//!    vCPU 2 stays off through rounds 1 to [`RESTART_ROUND`] - 1 and is
//!    started again (context 2, a long life) before round
//!    [`RESTART_ROUND`];
//!    each started vCPU first checks that its VMPIDR_EL2 and VPIDR_EL2
//!    (VNCR words) read its own MPIDR_EL1 and MIDR_EL1, hv's reset at
//!    every CPU_ON (vCPU 2's restart too), then writes other values, which
//!    its next life must not see, and that VTTBR_EL2 (a VNCR word its
//!    earlier life set) reads 0: the restart's cleared page;
//! 5. for rounds 1 to [`ROUNDS`], for each g of 0-2 (with other vCPUs
//!    running, once each one's L2 is inside its run and its heartbeat
//!    moved twice, so this entry's recycle finds it there): programs VTTBR_EL2 and ERETs into L2 g at
//!    0x80000 (EL1h) with the round in x1. L2 reads P and Q through
//!    0x100000 and 0x101000, writes the round to 0x100008, reads it back
//!    and reports with `hvc #1`;
//! 6. at its lower-EL vector checks everything L2 g reported (its own P and
//!    Q values: another L2's means one L2 reached another's memory), that
//!    the round landed in P(g) + 8, and that every other L2's P + 8 still
//!    holds the round that L2 last wrote (a write through another L2's
//!    shadow would change it);
//! 7. with other vCPUs, asks them to stop, waits until each has turned
//!    itself off (CPU_OFF: AFFINITY_INFO OFF within 2 s) and checks its
//!    L2 completed runs;
//! 8. prints `UMBRA-NESTED-PASS recycle ...` (`... vcpus=2` with two vCPUs,
//!    `... vcpus=3 cpu-off-on=ok` with three) and calls PSCI SYSTEM_OFF, or
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
    // L2s 3 and 4 (vCPUs 1 and 2) run the reading loop.
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
    cmp     x20, #{l2s}
    b.lo    1b
    dsb     ishst
    UMBRA_L1R_MOV64 x1, {vtcr}
    msr     vtcr_el2, x1
    UMBRA_L1R_MOV64 x1, {vhcr}
    msr     hcr_el2, x1
    isb
    UMBRA_L1R_PUTS umbra_l1r_msg_built
    // vCPU 1 (PSCI CPU_ON for MPIDR 1, context 1) runs L2 3 while this
    // one runs L2s 0-2; hv may have no CPU for it (INVALID_PARAMETERS).
    UMBRA_L1R_MOV64 x0, 0xc4000003
    mov     x1, #1
    adr     x2, umbra_l1r_secondary
    mov     x3, #1
    hvc     #0
    cbz     x0, 14f
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_on
    cmn     x0, #2
    b.ne    umbra_l1r_fail
    UMBRA_L1R_PUTS umbra_l1r_msg_one_vcpu
    b       15f
14: adr     x4, umbra_l1r_vcpus
    mov     x1, #2
    str     x1, [x4]
    adr     x4, umbra_l1r_live
    mov     x1, #1
    str     x1, [x4, #8]
    UMBRA_L1R_PUTS umbra_l1r_msg_two_vcpus
    // vCPU 2 (MPIDR 2), first for a short life (context 0x102): L2 4 runs
    // once, then the vCPU turns itself off (PSCI CPU_OFF). With three
    // CPUs hv has no CPU for it (INVALID_PARAMETERS).
    UMBRA_L1R_MOV64 x0, 0xc4000003
    mov     x1, #2
    adr     x2, umbra_l1r_secondary
    mov     x3, #0x102
    hvc     #0
    cbz     x0, 30f
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_on3
    cmn     x0, #2
    b.ne    umbra_l1r_fail
    b       31f
30: adr     x4, umbra_l1r_vcpus
    mov     x1, #3
    str     x1, [x4]
    // Started, maybe not yet running: ON_PENDING until its CPU enters it,
    // then ALREADY_ON (which one is timing).
    UMBRA_L1R_MOV64 x0, 0xc4000003
    mov     x1, #2
    adr     x2, umbra_l1r_secondary
    mov     x3, #0x102
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_on_twice
    cmn     x0, #5
    b.eq    32f
    cmn     x0, #4
    b.ne    umbra_l1r_fail
    // No vCPU 3 (INVALID_PARAMETERS, for CPU_ON and AFFINITY_INFO); vCPU
    // 0, this one, is on (ALREADY_ON).
32: UMBRA_L1R_MOV64 x0, 0xc4000003
    mov     x1, #3
    adr     x2, umbra_l1r_secondary
    mov     x3, #3
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_on_absent
    cmn     x0, #2
    b.ne    umbra_l1r_fail
    UMBRA_L1R_MOV64 x0, 0xc4000004
    mov     x1, #3
    mov     x2, #0
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_l1r_msg_affinity_absent
    cmn     x0, #2
    b.ne    umbra_l1r_fail
    UMBRA_L1R_MOV64 x0, 0xc4000003
    mov     x1, #0
    adr     x2, umbra_l1r_secondary
    mov     x3, #0
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_on_self
    cmn     x0, #4
    b.ne    umbra_l1r_fail
    // Its short life ends in CPU_OFF: AFFINITY_INFO goes OFF, after its
    // one L2 run.
    mov     x24, #2
    bl      umbra_l1r_wait_off
    adr     x4, umbra_l1r_sec_runs
    ldr     x11, [x4, #16]
    adr     x10, umbra_l1r_msg_short_life
    cmp     x11, #1
    b.ne    umbra_l1r_fail
    UMBRA_L1R_PUTS umbra_l1r_msg_third_off
    // The rounds start once vCPU 1 is about to enter L2 3, so their
    // recycles find it there.
31: adr     x4, umbra_l1r_sec_started
    UMBRA_L1R_MOV64 x2, {stop_spins}
24: ldr     x1, [x4, #8]
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

// Enters L2 g (state: round, g) with the round in x1. With other vCPUs
// running (live), first waits until each one's L2 (3 on vCPU 1, 4 on vCPU
// 2) is inside its run (it wrote the run's number to its P + 8 and L1 has
// not counted the run complete) and its loop's heartbeat moved twice
// since, where the recycle this entry may cause finds it. Such an L2
// stays in that run until its stop word, so it never re-enters on its
// own: its context's used bit stays clear and the service's clock picks
// it as a victim within two entries. (Short runs, one completed before
// each entry, caught L2 3 between runs or just re-entered, its context
// given a second chance: in ~5% of runs under load no recycle interrupted
// it. Without the heartbeat wait, vCPU 0's entries came while vCPU 1 was
// still re-entering after the previous recycle of its context, kicked
// at its kick check rather than interrupted in L2: in ~10% of runs no
// recycle interrupted it.)
umbra_l1r_enter:
    adr     x9, umbra_l1r_image
    mov     x26, #1
27: adr     x4, umbra_l1r_live
    ldr     x1, [x4, x26, lsl #3]
    cbz     x1, 28f
    add     x1, x26, #2
    UMBRA_L1R_PAGE_P x1
    adr     x5, umbra_l1r_sec_runs
    add     x5, x5, x26, lsl #3
    UMBRA_L1R_MOV64 x2, {stop_spins}
25: ldr     x6, [x5]
    ldr     x1, [x12, #8]
    cmp     x1, x6
    b.hi    44f
    subs    x2, x2, #1
    b.ne    25b
    mov     x11, x26
    adr     x10, umbra_l1r_msg_no_progress
    b       umbra_l1r_fail
    // Inside its run, and then its loop's heartbeat (P + 16) goes round
    // twice more: it is running in L2 now, past the faults and re-entry
    // an earlier recycle of its context caused, with nothing left to
    // recycle under it but this entry.
44: ldr     x7, [x12, #16]
    add     x7, x7, #2
    UMBRA_L1R_MOV64 x2, {stop_spins}
45: ldr     x1, [x12, #16]
    cmp     x1, x7
    b.hs    28f
    subs    x2, x2, #1
    b.ne    45b
    mov     x11, x26
    adr     x10, umbra_l1r_msg_no_heartbeat
    b       umbra_l1r_fail
28: add     x26, x26, #1
    cmp     x26, #3
    b.lo    27b
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
    // With three vCPUs, vCPU 2 (off through the first rounds, whose
    // recycles must not wait for it) starts again before round
    // {restart_round}, for a long life (context 2) like vCPU 1's.
    cbnz    x20, 40f
    cmp     x21, #{restart_round}
    b.ne    40f
    adr     x4, umbra_l1r_vcpus
    ldr     x1, [x4]
    cmp     x1, #3
    b.ne    40f
    UMBRA_L1R_MOV64 x0, 0xc4000003
    mov     x1, #2
    adr     x2, umbra_l1r_secondary
    mov     x3, #2
    hvc     #0
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_on_again
    cbnz    x0, umbra_l1r_fail
    adr     x4, umbra_l1r_live
    mov     x1, #1
    str     x1, [x4, #16]
    UMBRA_L1R_PUTS umbra_l1r_msg_third_again
40: cmp     x21, #{rounds}
    b.ls    umbra_l1r_enter
    adr     x4, umbra_l1r_vcpus
    ldr     x1, [x4]
    cmp     x1, #1
    b.ne    16f
    UMBRA_L1R_PUTS umbra_l1r_msg_pass
    UMBRA_L1R_MOV64 x0, 0x84000008
    hvc     #0
11: b       11b
    // Other vCPUs: stop their L2 runs (the stop flag, and each live one's
    // stop word, Q(2 + k) + 8) and wait until each has turned itself off
    // (PSCI CPU_OFF: AFFINITY_INFO OFF).
16: adr     x4, umbra_l1r_stop
    mov     x1, #1
    str     x1, [x4]
    mov     x26, #1
41: adr     x4, umbra_l1r_live
    ldr     x1, [x4, x26, lsl #3]
    cbz     x1, 42f
    add     x1, x26, #2
    UMBRA_L1R_PAGE_P x1
    mov     x1, #1
    str     x1, [x12, #0x1008]
42: add     x26, x26, #1
    cmp     x26, #3
    b.lo    41b
    dsb     sy
    mov     x26, #1
43: adr     x4, umbra_l1r_live
    ldr     x1, [x4, x26, lsl #3]
    cbz     x1, 44f
    mov     x24, x26
    bl      umbra_l1r_wait_off
    adr     x4, umbra_l1r_done
    ldr     x11, [x4, x26, lsl #3]
    adr     x10, umbra_l1r_msg_no_stop
    cbz     x11, umbra_l1r_fail
    adr     x4, umbra_l1r_sec_runs
    ldr     x22, [x4, x26, lsl #3]
    mov     x11, x22
    adr     x10, umbra_l1r_msg_no_runs
    cbz     x22, umbra_l1r_fail
    UMBRA_L1R_PUTS umbra_l1r_msg_sec_runs
    mov     x11, x26
    UMBRA_L1R_HEX x11
    UMBRA_L1R_PUTS umbra_l1r_msg_sec_runs_mid
    add     x11, x26, #2
    UMBRA_L1R_HEX x11
    UMBRA_L1R_PUTS umbra_l1r_msg_sec_runs_in
    mov     x11, x22
    UMBRA_L1R_HEX x11
    UMBRA_L1R_PUTS umbra_l1r_msg_sec_runs_end
44: add     x26, x26, #1
    cmp     x26, #3
    b.lo    43b
    adr     x4, umbra_l1r_vcpus
    ldr     x1, [x4]
    cmp     x1, #3
    b.eq    45f
    UMBRA_L1R_PUTS umbra_l1r_msg_pass2
    UMBRA_L1R_MOV64 x0, 0x84000008
    hvc     #0
19: b       19b
45: UMBRA_L1R_PUTS umbra_l1r_msg_pass3
    UMBRA_L1R_MOV64 x0, 0x84000008
    hvc     #0
46: b       46b

// Polls AFFINITY_INFO(x24, level 0) until it answers OFF (1); every answer
// before must be ON (0) or ON_PENDING (2). Fails after 2 s of the virtual
// count (a vCPU's CPU_OFF takes milliseconds). Clobbers x0-x3, x6, x7,
// x10, x11.
umbra_l1r_wait_off:
    mrs     x6, cntvct_el0
    mrs     x7, cntfrq_el0
    lsl     x7, x7, #1
50: UMBRA_L1R_MOV64 x0, 0xc4000004
    mov     x1, x24
    mov     x2, #0
    hvc     #0
    cmp     x0, #1
    b.eq    52f
    mov     x11, x0
    adr     x10, umbra_l1r_msg_affinity_bad
    cbz     x0, 51f
    cmp     x0, #2
    b.ne    umbra_l1r_fail
51: mrs     x3, cntvct_el0
    sub     x3, x3, x6
    cmp     x3, x7
    b.lo    50b
    mov     x11, x24
    adr     x10, umbra_l1r_msg_never_off
    b       umbra_l1r_fail
52: ret

// vCPU k (1 or 2; PSCI CPU_ON, context k, plus 0x100 for a short life)
// runs its L2 2 + k (VMID 7 + k) again and again until vCPU 0 sets the
// stop flag; each run reads its page until vCPU 0 sets its stop word
// and must see only its own value. Then it turns itself off (CPU_OFF). A
// short life (its stop word set first) runs once and turns off.
umbra_l1r_secondary:
    adr     x9, umbra_l1r_image
    mov     x25, x0
    // It is the vCPU CPU_ON named: MPIDR_EL1 affinity k, 1 or 2.
    mrs     x11, mpidr_el1
    and     x26, x11, #0xffffff
    and     x1, x25, #0xff
    adr     x10, umbra_l1r_msg_bad_mpidr
    cmp     x26, x1
    b.ne    umbra_l1r_fail
    cmp     x26, #1
    b.lo    umbra_l1r_fail
    cmp     x26, #2
    b.hi    umbra_l1r_fail
    // VMPIDR_EL2 and VPIDR_EL2 (VNCR words) read its own MPIDR_EL1 and
    // MIDR_EL1 at every start, a restart after CPU_OFF too (hv resets them
    // at CPU_ON, `reset_virtual_ids`), whatever an earlier life wrote;
    // then it writes others, which a restart must not see.
    mov     x2, x11
    mrs     x11, vmpidr_el2
    adr     x10, umbra_l1r_msg_vmpidr_reset
    cmp     x11, x2
    b.ne    umbra_l1r_fail
    mrs     x3, midr_el1
    mrs     x11, vpidr_el2
    adr     x10, umbra_l1r_msg_vpidr_reset
    cmp     x11, x3
    b.ne    umbra_l1r_fail
    // Its VNCR page is cleared at every start (a restart's too: a fresh
    // `Vcpu` on it): VTTBR_EL2, which the earlier life set, reads 0.
    mrs     x11, vttbr_el2
    adr     x10, umbra_l1r_msg_vttbr_reset
    cbnz    x11, umbra_l1r_fail
    orr     x2, x2, #0xff00
    msr     vmpidr_el2, x2
    eor     x3, x3, #0xf0
    msr     vpidr_el2, x3
    adr     x1, umbra_l1r_vectors2
    msr     vbar_el2, x1
    isb
    UMBRA_L1R_MOV64 x1, {vtcr}
    msr     vtcr_el2, x1
    UMBRA_L1R_MOV64 x1, {vhcr}
    msr     hcr_el2, x1
    add     x20, x26, #2
    UMBRA_L1R_TABLES x20
    add     x2, x20, #{first_vmid}
    lsl     x2, x2, #48
    orr     x1, x13, x2
    msr     vttbr_el2, x1
    isb
    // A short life: its stop word set, so its run ends after one read.
    ubfx    x1, x25, #8, #1
    adr     x7, umbra_l1r_sec_short
    str     x1, [x7, x26, lsl #3]
    cbz     x1, 47f
    UMBRA_L1R_PAGE_P x20
    mov     x1, #1
    str     x1, [x12, #0x1008]
    dsb     sy
47: adr     x7, umbra_l1r_sec_started
    mov     x1, #1
    str     x1, [x7, x26, lsl #3]
umbra_l1r_sec_enter:
    mrs     x26, mpidr_el1
    and     x26, x26, #0xff
    adr     x7, umbra_l1r_stop
    ldr     x1, [x7]
    cbnz    x1, umbra_l1r_sec_done
    UMBRA_L1R_AT_L2_PAYLOAD
    UMBRA_L1R_MOV64 x1, {magic_p}
    add     x1, x1, x26
    add     x1, x1, #2
    mov     x2, #0
    adr     x3, umbra_l1r_sec_runs
    ldr     x3, [x3, x26, lsl #3]
    add     x3, x3, #1
    eret
umbra_l1r_sec_done:
    adr     x7, umbra_l1r_done
    mov     x1, #1
    str     x1, [x7, x26, lsl #3]
    dsb     sy
umbra_l1r_sec_off:
    UMBRA_L1R_MOV64 x0, 0x84000002
    hvc     #0
    // CPU_OFF returns only when refused.
    mov     x11, x0
    adr     x10, umbra_l1r_msg_cpu_off_returned
    b       umbra_l1r_fail

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
21: mrs     x26, mpidr_el1
    and     x26, x26, #0xff
    adr     x7, umbra_l1r_sec_runs
    ldr     x1, [x7, x26, lsl #3]
    add     x1, x1, #1
    str     x1, [x7, x26, lsl #3]
    // A short life ends after its one run: its stop word cleared for the
    // next life, then CPU_OFF.
    adr     x7, umbra_l1r_sec_short
    ldr     x1, [x7, x26, lsl #3]
    cbz     x1, umbra_l1r_sec_enter
    add     x1, x26, #2
    UMBRA_L1R_PAGE_P x1
    str     xzr, [x12, #0x1008]
    dsb     sy
    b       umbra_l1r_sec_off

.balign 8
// The round (from 1) and the L2 (0 to 2) now running.
umbra_l1r_state:
    .quad   0
    .quad   0
// How many vCPUs run (1 to 3); by vCPU k (entry 0 unused): whether it
// runs a long life now (vCPU 0 waits for its L2 before each entry), its
// answer to vCPU 0's stop request, its L2 runs, whether it started, and
// whether its life is short.
umbra_l1r_vcpus:
    .quad   1
umbra_l1r_stop:
    .quad   0
umbra_l1r_live:
    .quad   0, 0, 0
umbra_l1r_done:
    .quad   0, 0, 0
umbra_l1r_sec_runs:
    .quad   0, 0, 0
umbra_l1r_sec_started:
    .quad   0, 0, 0
umbra_l1r_sec_short:
    .quad   0, 0, 0
umbra_l1r_msg_start:    .asciz "L1 (recycle): running at virtual EL2; L2s 0-2 (VMIDs 5-7) in turn, L2s 3 and 4 (VMIDs 8, 9) for vCPUs 1 and 2, each with its own stage 2, pages and values\n"
umbra_l1r_msg_built:    .asciz "L1 (recycle): stage 2 built for L2s 0-4 (3 and 4 for vCPUs 1 and 2); running 0-2 in turn\n"
umbra_l1r_msg_round:    .asciz "L1 (recycle): round "
umbra_l1r_msg_round_end: .asciz ": L2s 0, 1, 2 each read their own two pages and wrote only their own\n"
umbra_l1r_msg_pass:     .asciz "UMBRA-NESTED-PASS recycle l2s=3 rounds={rounds} own-pages=ok\n"
umbra_l1r_msg_pass2:    .asciz "UMBRA-NESTED-PASS recycle l2s=3 rounds={rounds} own-pages=ok vcpus=2\n"
umbra_l1r_msg_pass3:    .asciz "UMBRA-NESTED-PASS recycle l2s=3 rounds={rounds} own-pages=ok vcpus=3 cpu-off-on=ok\n"
umbra_l1r_msg_one_vcpu: .asciz "L1 (recycle): one vCPU (PSCI CPU_ON: hv has no CPU for a second)\n"
umbra_l1r_msg_two_vcpus: .asciz "L1 (recycle): vCPU 1 started (PSCI CPU_ON); it runs L2 3 (VMID 8) in a reading loop while L2s 0-2 take turns here\n"
umbra_l1r_msg_sec_runs: .asciz "L1 (recycle): vCPU "
umbra_l1r_msg_sec_runs_mid: .asciz " turned itself off (AFFINITY_INFO OFF); its L2 "
umbra_l1r_msg_sec_runs_in: .asciz " read only its own page in "
umbra_l1r_msg_sec_runs_end: .asciz " runs\n"
umbra_l1r_msg_vttbr_reset: .asciz "a started vCPU's VTTBR_EL2 (VNCR page) is not 0 at its start (a restart after CPU_OFF keeps its earlier life's): "
umbra_l1r_msg_cpu_on3:  .asciz "PSCI CPU_ON for vCPU 2 failed: "
umbra_l1r_msg_cpu_on_twice: .asciz "PSCI CPU_ON for vCPU 2, just started, answered neither ON_PENDING nor ALREADY_ON: "
umbra_l1r_msg_cpu_on_absent: .asciz "PSCI CPU_ON for MPIDR 3, which L1 does not have, answered other than INVALID_PARAMETERS: "
umbra_l1r_msg_affinity_absent: .asciz "PSCI AFFINITY_INFO for MPIDR 3, which L1 does not have, answered other than INVALID_PARAMETERS: "
umbra_l1r_msg_cpu_on_self: .asciz "PSCI CPU_ON for MPIDR 0, the caller, answered other than ALREADY_ON: "
umbra_l1r_msg_affinity_bad: .asciz "PSCI AFFINITY_INFO answered neither ON, OFF nor ON_PENDING for a started vCPU: "
umbra_l1r_msg_never_off: .asciz "AFFINITY_INFO did not report OFF within 2 s of the vCPU's CPU_OFF; vCPU "
umbra_l1r_msg_short_life: .asciz "vCPU 2 turned off without exactly its one L2 run: runs "
umbra_l1r_msg_third_off: .asciz "L1 (recycle): vCPU 2 started (CPU_ON), ran L2 4 once and turned itself off (CPU_OFF): AFFINITY_INFO went OFF\n"
umbra_l1r_msg_third_again: .asciz "L1 (recycle): vCPU 2 started again (PSCI CPU_ON after AFFINITY_INFO said OFF); it runs L2 4 (VMID 9) in a reading loop\n"
umbra_l1r_msg_cpu_on_again: .asciz "PSCI CPU_ON for vCPU 2 after its CPU_OFF failed: "
umbra_l1r_msg_cpu_off_returned: .asciz "PSCI CPU_OFF returned: "
umbra_l1r_msg_cpu_on:   .asciz "PSCI CPU_ON for vCPU 1 failed: "
umbra_l1r_msg_no_progress: .asciz "a vCPU's L2 was not inside a run when vCPU 0 entered its L2, vCPU "
umbra_l1r_msg_no_heartbeat: .asciz "a vCPU's L2, inside its run, stopped going round its loop (its heartbeat at P + 16 did not move), vCPU "
umbra_l1r_msg_vmpidr_reset: .asciz "a started vCPU's VMPIDR_EL2 before it wrote it is not its own MPIDR_EL1 (hv's reset at every CPU_ON): "
umbra_l1r_msg_vpidr_reset: .asciz "a started vCPU's VPIDR_EL2 before it wrote it is not its own MIDR_EL1 (hv's reset at every CPU_ON): "
umbra_l1r_msg_bad_mpidr: .asciz "a started vCPU's MPIDR_EL1 is not its CPU_ON target (1 or 2): "
umbra_l1r_msg_no_start: .asciz "vCPU 1 did not start its L2 runs: "
umbra_l1r_msg_no_stop:  .asciz "a vCPU turned off without stopping its L2 runs: "
umbra_l1r_msg_no_runs:  .asciz "a vCPU's L2 never completed a run: "
umbra_l1r_msg_sec_bad:  .asciz "an L2 (L2 3 or 4, on vCPU 1 or 2) read a value not its own through 0x100000: "
umbra_l1r_msg_foreign_code: .asciz "an L2 ran another L2's code (L2 3's reading loop, hvc #2), x2 "
umbra_l1r_msg_unexpected2: .asciz "unexpected exception at vCPU 1's or 2's virtual EL2, ESR_EL2 "
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
    ldr     x6, [x5, #16]
    add     x6, x6, #1
    str     x6, [x5, #16]
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
    l2s = const L2S,
    restart_round = const RESTART_ROUND,
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
/// L2s with a stage 2: 0-2 on vCPU 0, 2 + k on vCPU k (1, 2).
pub const L2S: u64 = 5;
/// vCPU 2, off since its short life, starts again before this round.
pub const RESTART_ROUND: u64 = 5;
/// How long vCPU 0 waits for vCPU 1 to start and for a vCPU's L2 to enter
/// its run (load iterations; hv's watchdog bounds the run anyway).
pub const STOP_SPINS: u64 = 1 << 28;

assembled_image!(
    "The recycling L1's bytes (code, data and the L2 payload).",
    umbra_l1r_image,
    umbra_l1r_image_end
);
