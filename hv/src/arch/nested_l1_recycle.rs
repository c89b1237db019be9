//! The recycling demo's guest hypervisor (`hv.nested=recycle`): an L1 that
//! runs three L2 guests in turn, round after round, on a service bounded
//! to [`super::nested::RECYCLE_CONTEXTS`] contexts, so the service
//! recycles context slots (and hv runs its recycling handshake,
//! `crate::nested::handshake`) while it runs. Assembled into hv's
//! read-only data and copied into L1's memory like `nested_l1`'s demo; it
//! is data to hv, never executed at EL2.
//!
//! L1 (at L1 IPA `L1_BASE`, MMU off):
//! 1. checks CurrentEL reads 2 and sets VBAR_EL2;
//! 2. for each L2 g (0, 1, 2) builds a stage 2 of its own (4 KiB granule,
//!    39-bit IPA from level 1, tables at +0x200000 + g * 0x3000, VMID 5 + g:
//!    three distinct VTTBR_EL2 values, three contexts): L2 IPA 0x80000 ->
//!    the L2 payload page of this image, 0x100000 -> its page P(g) at
//!    +0x300000 + g * 0x2000, 0x101000 -> its page Q(g) = P(g) + 0x1000;
//!    P(g) holds [`MAGIC_P`] + g, Q(g) [`MAGIC_Q`] + g;
//! 3. for rounds 1 to [`ROUNDS`], for each g: programs VTTBR_EL2 and ERETs
//!    into L2 g at 0x80000 (EL1h) with the round in x1. L2 reads P and Q
//!    through 0x100000 and 0x101000, writes the round to 0x100008, reads it
//!    back and reports with `hvc #1`;
//! 4. at its lower-EL vector checks everything L2 g reported (its own P and
//!    Q values: another L2's means one L2 reached another's memory), that
//!    the round landed in P(g) + 8, and that every other L2's P + 8 still
//!    holds the round that L2 last wrote (a write through another L2's
//!    shadow would change it);
//! 5. prints `UMBRA-NESTED-PASS recycle ...` and calls PSCI SYSTEM_OFF, or
//!    `UMBRA-NESTED-FAIL: <why>` with the value and PSCI SYSTEM_RESET.
//!
//! L2 faults on each page the first time it runs on a (re)made context;
//! hv serves those with the service and never shows them to L1 (any
//! exception other than L2's `hvc #1` fails the run).

use core::arch::global_asm;

global_asm!(
    r#"
.macro UMBRA_L1R_MOV64 reg, val
    movz    \reg, #((\val) & 0xffff)
    movk    \reg, #(((\val) >> 16) & 0xffff), lsl #16
    movk    \reg, #(((\val) >> 32) & 0xffff), lsl #32
    movk    \reg, #(((\val) >> 48) & 0xffff), lsl #48
.endm
.macro UMBRA_L1R_PUTS label
    adr     x10, \label
    bl      umbra_l1r_puts
.endm
.macro UMBRA_L1R_HEX reg
    mov     x11, \reg
    bl      umbra_l1r_hex
.endm
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
    mov     x2, #0
2:  str     xzr, [x13, x2]
    add     x2, x2, #8
    cmp     x2, #0x3000
    b.lo    2b
    add     x1, x13, #0x1000
    orr     x1, x1, #3
    str     x1, [x13]
    add     x14, x13, #0x2000
    orr     x1, x14, #3
    str     x1, [x13, #0x1000]
    // Leaves: OA | AF | SH inner | S2AP RW | MemAttr Normal WB | page.
    adr     x1, umbra_l1r_l2_payload
    orr     x1, x1, #0x7ff
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
    add     x20, x20, #1
    cmp     x20, #3
    b.lo    1b
    dsb     ishst
    UMBRA_L1R_MOV64 x1, {vtcr}
    msr     vtcr_el2, x1
    UMBRA_L1R_MOV64 x1, {vhcr}
    msr     hcr_el2, x1
    isb
    UMBRA_L1R_PUTS umbra_l1r_msg_built
    adr     x4, umbra_l1r_state
    mov     x1, #1
    str     x1, [x4]
    str     xzr, [x4, #8]

// Enters L2 g (state: round, g) with the round in x1.
umbra_l1r_enter:
    adr     x9, umbra_l1r_image
    adr     x4, umbra_l1r_state
    ldr     x21, [x4]
    ldr     x20, [x4, #8]
    UMBRA_L1R_TABLES x20
    add     x2, x20, #{first_vmid}
    lsl     x2, x2, #48
    orr     x1, x13, x2
    msr     vttbr_el2, x1
    isb
    mov     x1, #0x80000
    msr     elr_el2, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    mov     x1, x21
    mov     x2, #0
    mov     x3, #0
    mov     x4, #0
    eret

// Prints the NUL-terminated string at x10 (clobbers x0, x1, x10).
umbra_l1r_puts:
    ldrb    w1, [x10], #1
    cbz     w1, 3f
    UMBRA_L1R_MOV64 x0, {putc}
    hvc     #0
    b       umbra_l1r_puts
3:  ret

// Prints x11 as 0x and 16 hex digits (clobbers x0, x1, x15).
umbra_l1r_hex:
    UMBRA_L1R_MOV64 x0, {putc}
    mov     x1, #'0'
    hvc     #0
    UMBRA_L1R_MOV64 x0, {putc}
    mov     x1, #'x'
    hvc     #0
    mov     x15, #60
4:  lsr     x1, x11, x15
    and     x1, x1, #0xf
    cmp     x1, #10
    b.lo    5f
    add     x1, x1, #('a' - '0' - 10)
5:  add     x1, x1, #'0'
    UMBRA_L1R_MOV64 x0, {putc}
    hvc     #0
    subs    x15, x15, #4
    b.ge    4b
    ret

// Prints the FAIL sentinel, the message at x10 and the value x11, then
// PSCI SYSTEM_RESET.
umbra_l1r_fail:
    mov     x16, x10
    mov     x17, x11
    UMBRA_L1R_PUTS umbra_l1r_msg_fail
    mov     x10, x16
    bl      umbra_l1r_puts
    UMBRA_L1R_HEX x17
    UMBRA_L1R_PUTS umbra_l1r_msg_nl
    UMBRA_L1R_MOV64 x0, 0x84000009
    hvc     #0
6:  b       6b

.balign 2048
umbra_l1r_vectors:
    .rept 8
    b       umbra_l1r_unexpected
    .balign 128
    .endr
    b       umbra_l1r_lower_sync
    .balign 128
    .rept 7
    b       umbra_l1r_unexpected
    .balign 128
    .endr

umbra_l1r_unexpected:
    mrs     x11, esr_el2
    adr     x10, umbra_l1r_msg_unexpected
    b       umbra_l1r_fail

// L2 g's report: x2 = its P, x3 = its Q, x4 = the round read back.
umbra_l1r_lower_sync:
    adr     x9, umbra_l1r_image
    mrs     x19, esr_el2
    ubfx    x22, x19, #26, #6
    cmp     x22, #0x16
    b.ne    umbra_l1r_unexpected
    and     x22, x19, #0xffff
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
    UMBRA_L1R_PUTS umbra_l1r_msg_pass
    UMBRA_L1R_MOV64 x0, 0x84000008
    hvc     #0
11: b       11b

.balign 8
// The round (from 1) and the L2 (0 to 2) now running.
umbra_l1r_state:
    .quad   0
    .quad   0
umbra_l1r_msg_start:    .asciz "L1 (recycle): running at virtual EL2; three L2s, each with its own stage 2 (VMIDs 5, 6, 7), pages and values\n"
umbra_l1r_msg_built:    .asciz "L1 (recycle): stage 2 built for L2s 0, 1, 2; running them in turn\n"
umbra_l1r_msg_round:    .asciz "L1 (recycle): round "
umbra_l1r_msg_round_end: .asciz ": L2s 0, 1, 2 each read their own two pages and wrote only their own\n"
umbra_l1r_msg_pass:     .asciz "UMBRA-NESTED-PASS recycle l2s=3 rounds={rounds} own-pages=ok\n"
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
    putc = const super::nested::HVC_CONSOLE_PUTC,
);

/// The value of L2 g's page P is this plus g (of its page Q: [`MAGIC_Q`]
/// plus g).
pub const MAGIC_P: u64 = 0x5050_0000_1111_0000;
pub const MAGIC_Q: u64 = 0x5151_0000_2222_0000;
/// L2 g runs under L1's VMID 5 + g.
pub const FIRST_L2_VMID: u64 = 5;
/// Rounds of the three L2s.
pub const ROUNDS: u64 = 4;

unsafe extern "C" {
    static umbra_l1r_image: u8;
    static umbra_l1r_image_end: u8;
}

/// The recycling L1's bytes (code, data and the L2 payload).
pub fn image() -> &'static [u8] {
    let start = &raw const umbra_l1r_image;
    let end = &raw const umbra_l1r_image_end;
    // SAFETY: both symbols bound the assembled image above, in hv's
    // read-only data, start before end.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}
