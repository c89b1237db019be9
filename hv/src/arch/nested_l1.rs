//! The demo guest hypervisor (L1) and its guest (L2), assembled into hv's
//! read-only data and copied by `arch::nested` into L1's memory, where L1
//! runs it at virtual EL2 (position independent: every address comes from
//! `adr`). It is data to hv, never executed at EL2.
//!
//! L1 (at L1 IPA `L1_BASE`, MMU off, its stack at +1 MiB):
//! 1. checks CurrentEL reads 2, that ID_AA64MMFR2_EL1.FWB reads 0 and
//!    ID_AA64MMFR0_EL1.PARange 40 bits (what hv shows it);
//!    loads from just past its RAM and checks hv gave it a synchronous
//!    external abort at its current-EL vector (EC 0x25, DFSC 0x10, FAR);
//! 2. sets VBAR_EL2; writes three values at its pages A, B and C
//!    (+0x300000, +0x301000, +0x302000);
//! 3. builds a stage-2 table for L2 at +0x200000 (39-bit IPA from level 1,
//!    4 KiB granule, VMID 5): L2 IPA 0x80000 -> the L2 payload page of this
//!    image, 0x100000 -> A; 0x101000 left unmapped (demand-mapped);
//! 4. programs VTCR_EL2, VTTBR_EL2, HCR_EL2 (RW, DC, VM), L2's VBAR_EL1
//!    through VBAR_EL12 (a VNCR page store), VPIDR_EL2 and VMPIDR_EL2
//!    (VNCR words; read first: its own MIDR_EL1 and MPIDR_EL1, hv's
//!    reset values) and ERETs into L2 at 0x80000, EL1h;
//! 5. handles L2's exits at its lower-EL synchronous vector: `hvc #1` (L2
//!    read A through 0x100000, and its VBAR_EL1 as L1 set it, which
//!    VBAR_EL12 reads back from the VNCR page after the exit, its
//!    MIDR_EL1 and MPIDR_EL1, which must be L1's VPIDR_EL2 and VMPIDR_EL2,
//!    while L1's own MIDR_EL1 and MPIDR_EL1 still read as before L2 ran,
//!    and its ID_AA64MMFR0_EL1, which must be L1's PARange), a stage-2 translation fault on 0x101000
//!    (read from ESR_EL2, FAR_EL2, HPFAR_EL2; L1 maps it to B, TLBI
//!    IPAS2E1IS + VMALLE1IS, ERETs back to the load), `hvc #2` (L2 read
//!    B; L1 then remaps 0x100000 to C with break-before-make and TLBI
//!    IPAS2E1IS, VMALLE1IS), `hvc #3` (L2 read 0x100000 again: C passes, A
//!    is the stale translation);
//!    then turns its stage 2 off for L2 (virtual HCR_EL2.VM = 0) and ERETs
//!    to L2 at an L1 IPA, where L2 reads page C at its L1 IPA (`hvc #4`);
//! 6. prints `UMBRA-NESTED-PASS ...` and calls PSCI SYSTEM_OFF, or on any
//!    mismatch `UMBRA-NESTED-FAIL: <why>` with the value and calls PSCI
//!    SYSTEM_RESET.
//!
//! L1 prints through hv's console call: `hvc #0` with x0 =
//! [`super::nested::HVC_CONSOLE_PUTC`] and the byte in x1.

use core::arch::global_asm;

global_asm!(
    l1_asm_macros!("UMBRA_L1", "umbra_l1"),
    r#"
.pushsection .rodata.umbra_l1, "a"
.balign 4096
.global umbra_l1_image
umbra_l1_image:
    adr     x9, umbra_l1_image
    add     x10, x9, #0x100000
    mov     sp, x10
    mrs     x1, CurrentEL
    cmp     x1, #8
    b.ne    umbra_l1_fail_el
    UMBRA_L1_PUTS umbra_l1_msg_el2
    adr     x1, umbra_l1_vectors
    msr     vbar_el2, x1
    isb
    // ID_AA64MMFR2_EL1.FWB and ID_AA64MMFR0_EL1.PARange as hv shows them.
    mrs     x1, s3_0_c0_c7_2
    ubfx    x1, x1, #40, #4
    cbnz    x1, umbra_l1_fail_fwb
    mrs     x1, s3_0_c0_c7_0
    and     x1, x1, #0xf
    cmp     x1, #2
    b.ne    umbra_l1_fail_parange
    // A load just past L1's RAM: hv gives L1 a synchronous external abort
    // at its current-EL vector (review 23 F4), which clears the flag.
    adr     x4, umbra_l1_sea_expected
    mov     x1, #1
    str     x1, [x4]
    add     x1, x9, #{l1_ram_bytes}
    ldr     x2, [x1]
    ldr     x11, [x4]
    adr     x10, umbra_l1_msg_no_sea
    cbnz    x11, umbra_l1_fail
    UMBRA_L1_PUTS umbra_l1_msg_sea
    // The values of pages A, B, C.
    add     x12, x9, #0x300000
    UMBRA_L1_MOV64 x1, {magic_a}
    str     x1, [x12]
    UMBRA_L1_MOV64 x1, {magic_b}
    str     x1, [x12, #0x1000]
    UMBRA_L1_MOV64 x1, {magic_c}
    str     x1, [x12, #0x2000]
    // L2's stage 2: root (level 1), level 2, level 3, zeroed.
    add     x13, x9, #0x200000
    UMBRA_L1_L2_STAGE2_TABLES umbra_l2_payload
    // Leaves: OA | AF | SH inner | S2AP RW | MemAttr Normal WB | page.
    orr     x1, x12, #0x7ff
    str     x1, [x14, #0x100 * 8]
    // L2 0x102000 -> an L1 IPA with nothing behind it (L0 maps only L1's
    // RAM): L2's load there takes a synchronous external abort at its EL1.
    UMBRA_L1_MOV64 x1, ({l1_hole} | 0x7ff)
    str     x1, [x14, #0x102 * 8]
    UMBRA_L1_L2_STAGE2_ON {vtcr}, {vmid_shifted}, {vhcr}
    isb
    // L2's VBAR_EL1 through VBAR_EL12 (S3_5_C12_C0_0), which NV2 turns
    // into a store to the VNCR page; L2 reports what it reads.
    UMBRA_L1_MOV64 x1, {l2_vbar}
    msr     s3_5_c12_c0_0, x1
    // Its own MIDR_EL1 and MPIDR_EL1 (kept to compare after L2 ran), and
    // VPIDR_EL2 and VMPIDR_EL2 before it writes them: hv resets them to
    // L1's own (`reset_virtual_ids`).
    adr     x4, umbra_l1_own_ids
    mrs     x1, midr_el1
    mrs     x2, mpidr_el1
    stp     x1, x2, [x4]
    mrs     x11, vpidr_el2
    adr     x10, umbra_l1_msg_bad_vpidr_reset
    cmp     x11, x1
    b.ne    umbra_l1_fail
    mrs     x11, vmpidr_el2
    adr     x10, umbra_l1_msg_bad_vmpidr_reset
    cmp     x11, x2
    b.ne    umbra_l1_fail
    // What L2's MIDR_EL1 and MPIDR_EL1 read (VNCR words; L2 reports them).
    UMBRA_L1_MOV64 x1, {l2_midr}
    msr     vpidr_el2, x1
    UMBRA_L1_MOV64 x1, {l2_mpidr}
    msr     vmpidr_el2, x1
    UMBRA_L1_PUTS umbra_l1_msg_enter
    UMBRA_L1_AT_L2_PAYLOAD
    mov     x1, #0
    mov     x2, #0
    eret

"#,
    l1_asm_print!("UMBRA_L1", "umbra_l1"),
    r#"

umbra_l1_fail_el:
    mov     x11, x1
    adr     x10, umbra_l1_msg_fail_el
    b       umbra_l1_fail
umbra_l1_fail_fwb:
    mov     x11, x1
    adr     x10, umbra_l1_msg_fail_fwb
    b       umbra_l1_fail
umbra_l1_fail_parange:
    mov     x11, x1
    adr     x10, umbra_l1_msg_fail_parange
    b       umbra_l1_fail

"#,
    l1_asm_fail!("UMBRA_L1", "umbra_l1"),
    l1_asm_vectors!(
        "UMBRA_L1",
        "umbra_l1",
        "umbra_l1_current_sync",
        "umbra_l1_unexpected",
        "umbra_l1_lower_sync",
        "umbra_l1_unexpected",
    ),
    r#"

// The expected external abort of L1's own load past its RAM (x1 holds
// the address): EC 0x25 (data abort, same EL), DFSC 0x10, FAR_EL2 = x1;
// clears the flag and returns past the load.
umbra_l1_current_sync:
    adr     x4, umbra_l1_sea_expected
    ldr     x5, [x4]
    cbz     x5, umbra_l1_unexpected
    mrs     x11, esr_el2
    adr     x10, umbra_l1_msg_bad_sea
    ubfx    x6, x11, #26, #6
    cmp     x6, #0x25
    b.ne    umbra_l1_fail
    and     x6, x11, #0x3f
    cmp     x6, #0x10
    b.ne    umbra_l1_fail
    mrs     x11, far_el2
    adr     x10, umbra_l1_msg_bad_sea_far
    cmp     x11, x1
    b.ne    umbra_l1_fail
    str     xzr, [x4]
    mrs     x6, elr_el2
    add     x6, x6, #4
    msr     elr_el2, x6
    eret

umbra_l1_lower_sync:
    UMBRA_L1_SAVE
    adr     x9, umbra_l1_image
    add     x14, x9, #0x202000
    mrs     x19, esr_el2
    ubfx    x20, x19, #26, #6
    cmp     x20, #0x16
    b.eq    umbra_l1_hvc
    cmp     x20, #0x24
    b.eq    umbra_l1_dabt
    mov     x11, x19
    adr     x10, umbra_l1_msg_unexpected
    b       umbra_l1_fail

umbra_l1_resume:
    UMBRA_L1_RESTORE
    eret

umbra_l1_hvc:
    and     x21, x19, #0xffff
    ldr     x22, [sp, #16]
    cmp     x21, #1
    b.eq    umbra_l1_hvc1
    cmp     x21, #2
    b.eq    umbra_l1_hvc2
    cmp     x21, #3
    b.eq    umbra_l1_hvc3
    cmp     x21, #4
    b.eq    umbra_l1_hvc4
    mov     x11, x19
    adr     x10, umbra_l1_msg_unexpected
    b       umbra_l1_fail

umbra_l1_hvc1:
    UMBRA_L1_EXPECT x22, {magic_a}, umbra_l1_msg_bad_a
    // L2's x3: its VBAR_EL1 as L1 set it; and VBAR_EL12 reads it back from
    // the VNCR page, where hv saved L2's EL1 state on this exit.
    UMBRA_L1_MOV64 x3, {l2_vbar}
    ldr     x11, [sp, #24]
    adr     x10, umbra_l1_msg_bad_vbar
    cmp     x11, x3
    b.ne    umbra_l1_fail
    mrs     x11, s3_5_c12_c0_0
    adr     x10, umbra_l1_msg_bad_vbar12
    cmp     x11, x3
    b.ne    umbra_l1_fail
    UMBRA_L1_PUTS umbra_l1_msg_vbar
    // L2's x7 and x8: its MIDR_EL1 and MPIDR_EL1, L1's VPIDR_EL2 and
    // VMPIDR_EL2 (x6 is its vector's).
    ldr     x11, [sp, #56]
    UMBRA_L1_MOV64 x3, {l2_midr}
    adr     x10, umbra_l1_msg_bad_midr
    cmp     x11, x3
    b.ne    umbra_l1_fail
    ldr     x11, [sp, #64]
    UMBRA_L1_MOV64 x3, {l2_mpidr}
    adr     x10, umbra_l1_msg_bad_mpidr
    cmp     x11, x3
    b.ne    umbra_l1_fail
    // Its own MIDR_EL1 and MPIDR_EL1 again, after L2 ran: its own, not
    // what it set for L2.
    adr     x4, umbra_l1_own_ids
    ldp     x1, x2, [x4]
    mrs     x11, midr_el1
    adr     x10, umbra_l1_msg_bad_own_midr
    cmp     x11, x1
    b.ne    umbra_l1_fail
    mrs     x11, mpidr_el1
    adr     x10, umbra_l1_msg_bad_own_mpidr
    cmp     x11, x2
    b.ne    umbra_l1_fail
    UMBRA_L1_PUTS umbra_l1_msg_ids
    // L2's x4: its ID_AA64MMFR0_EL1, which hv answers with what L1 is
    // shown (PARange 40 bits), not the host's.
    ldr     x11, [sp, #32]
    and     x3, x11, #0xf
    adr     x10, umbra_l1_msg_bad_l2_id
    cmp     x3, #2
    b.ne    umbra_l1_fail
    UMBRA_L1_PUTS umbra_l1_msg_l2_id
    // L2's x5: the ESR_EL1 of its load from 0x102000, which must be a
    // synchronous external abort taken at its EL1 (EC 0x25, DFSC 0x10).
    ldr     x11, [sp, #40]
    adr     x10, umbra_l1_msg_bad_l2_sea
    ubfx    x3, x11, #26, #6
    cmp     x3, #0x25
    b.ne    umbra_l1_fail
    and     x3, x11, #0x3f
    cmp     x3, #0x10
    b.ne    umbra_l1_fail
    UMBRA_L1_PUTS umbra_l1_msg_l2_sea
    UMBRA_L1_REPORT umbra_l1_msg_read_a, x22
    b       umbra_l1_resume

umbra_l1_hvc2:
    UMBRA_L1_EXPECT x22, {magic_b}, umbra_l1_msg_bad_b
    adr     x4, umbra_l1_faults
    ldr     x11, [x4]
    adr     x10, umbra_l1_msg_bad_faults
    cmp     x11, #1
    b.ne    umbra_l1_fail
    UMBRA_L1_REPORT umbra_l1_msg_read_b, x22
    // Remap L2 0x100000 from A to C: break, TLBI, make, TLBI.
    str     xzr, [x14, #0x100 * 8]
    dsb     ishst
    mov     x1, #0x100
    tlbi    ipas2e1is, x1
    dsb     ish
    add     x1, x9, #0x302000
    orr     x1, x1, #0x7ff
    str     x1, [x14, #0x100 * 8]
    dsb     ishst
    tlbi    vmalle1is
    dsb     ish
    isb
    UMBRA_L1_PUTS umbra_l1_msg_remapped
    b       umbra_l1_resume

umbra_l1_hvc3:
    UMBRA_L1_MOV64 x3, {magic_c}
    cmp     x22, x3
    b.eq    6f
    UMBRA_L1_MOV64 x3, {magic_a}
    mov     x11, x22
    adr     x10, umbra_l1_msg_stale
    cmp     x22, x3
    b.eq    umbra_l1_fail
    adr     x10, umbra_l1_msg_bad_c
    b       umbra_l1_fail
6:  UMBRA_L1_REPORT umbra_l1_msg_read_c, x22
    // L2 again with L1's stage 2 off (virtual HCR_EL2.VM = 0): L2's IPA
    // is L1's, so L2 (MMU off) runs at umbra_l2_direct's L1 IPA and reads
    // page C at its L1 IPA (L2's x1).
    UMBRA_L1_MOV64 x1, {vhcr_no_vm}
    msr     hcr_el2, x1
    isb
    adr     x1, umbra_l2_direct
    msr     elr_el2, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    add     x1, x9, #0x302000
    str     x1, [sp, #8]
    UMBRA_L1_PUTS umbra_l1_msg_direct
    b       umbra_l1_resume

umbra_l1_hvc4:
    UMBRA_L1_EXPECT x22, {magic_c}, umbra_l1_msg_bad_direct
    UMBRA_L1_REPORT umbra_l1_msg_read_direct, x22
    UMBRA_L1_PUTS umbra_l1_msg_pass
    UMBRA_L1_SYSTEM_OFF

"#,
    l1_asm_demand_fault!("UMBRA_L1", "umbra_l1"),
    r#"

.balign 8
umbra_l1_faults:
    .quad   0
umbra_l1_sea_expected:
    .quad   0
umbra_l1_own_ids:
    .quad   0, 0
umbra_l1_msg_direct:    .asciz "L1: stage 2 off for L2 (virtual HCR_EL2.VM = 0); ERET to L2 at its L1 IPA\n"
umbra_l1_msg_read_direct: .asciz "L1: L2 hvc #4: L2 (stage 2 off) read page C at its L1 IPA: "
umbra_l1_msg_bad_direct: .asciz "L2 with stage 2 off read a wrong value at page C's L1 IPA: "
umbra_l1_msg_l2_id:     .asciz "L1: L2 read ID_AA64MMFR0_EL1.PARange 40 bits, as L1 is shown\n"
umbra_l1_msg_bad_l2_id: .asciz "L2 read an ID_AA64MMFR0_EL1 other than L1's: "
umbra_l1_msg_l2_sea:    .asciz "L1: L2's load from an L1 IPA with nothing behind it took a synchronous external abort at its EL1 (EC 0x25, DFSC 0x10)\n"
umbra_l1_msg_bad_l2_sea: .asciz "L2's load from an L1 IPA with nothing behind it did not take an external abort at its EL1, ESR_EL1 "
umbra_l1_msg_sea:       .asciz "L1: a load past its RAM took a synchronous external abort at virtual EL2 (EC 0x25, DFSC 0x10)\n"
umbra_l1_msg_no_sea:    .asciz "a load past L1's RAM took no external abort: "
umbra_l1_msg_bad_sea:   .asciz "a load past L1's RAM took a wrong exception, ESR_EL2 "
umbra_l1_msg_bad_sea_far: .asciz "a load past L1's RAM reported a wrong FAR_EL2: "

umbra_l1_msg_el2:       .asciz "L1 running at virtual EL2 (CurrentEL reads 2); ID_AA64MMFR2_EL1.FWB 0, PARange 40 bits\n"
umbra_l1_msg_enter:     .asciz "L1: stage 2 for L2 built (VMID 5, 0x101000 left unmapped); ERET to L2 at 0x80000\n"
umbra_l1_msg_read_a:    .asciz "L1: L2 hvc #1: L2 read page A through 0x100000: "
umbra_l1_msg_read_b:    .asciz "L1: L2 hvc #2: L2 read page B through the demand-mapped 0x101000: "
umbra_l1_msg_read_c:    .asciz "L1: L2 hvc #3: L2 read page C through the remapped 0x100000: "
umbra_l1_msg_remapped:  .asciz "L1: remapped L2 0x100000 from page A to page C (break-before-make, TLBI IPAS2E1IS, VMALLE1IS)\n"
umbra_l1_msg_fault:     .asciz "L1: stage-2 fault from L2 at IPA "
umbra_l1_msg_esr:       .asciz ", ESR_EL2 "
umbra_l1_msg_mapped:    .asciz "L1: mapped L2 0x101000 to page B, TLBI IPAS2E1IS + VMALLE1IS, ERET to retry\n"
umbra_l1_msg_ids:       .asciz "L1: L2 read its MIDR_EL1 and MPIDR_EL1 as L1's VPIDR_EL2 and VMPIDR_EL2 (the VNCR page); L1's own read back as before\n"
umbra_l1_msg_bad_vpidr_reset: .asciz "L1's VPIDR_EL2 before it wrote it is not its own MIDR_EL1 (the reset value): "
umbra_l1_msg_bad_vmpidr_reset: .asciz "L1's VMPIDR_EL2 before it wrote it is not its own MPIDR_EL1 (the reset value): "
umbra_l1_msg_bad_own_midr: .asciz "L1's own MIDR_EL1 after L2 ran is not what it read before: "
umbra_l1_msg_bad_own_mpidr: .asciz "L1's own MPIDR_EL1 after L2 ran is not what it read before: "
umbra_l1_msg_bad_midr:  .asciz "L2's MIDR_EL1 is not L1's VPIDR_EL2: "
umbra_l1_msg_bad_mpidr: .asciz "L2's MPIDR_EL1 is not L1's VMPIDR_EL2: "
umbra_l1_msg_vbar:      .asciz "L1: L2 read its VBAR_EL1 as L1 set it through VBAR_EL12 (the VNCR page), and VBAR_EL12 reads it back after the exit\n"
umbra_l1_msg_bad_vbar:  .asciz "L2's VBAR_EL1 is not what L1 wrote through VBAR_EL12: "
umbra_l1_msg_bad_vbar12: .asciz "VBAR_EL12 does not read back L2's VBAR_EL1 after the exit: "
umbra_l1_msg_pass:      .asciz "UMBRA-NESTED-PASS l2-values=3 demand-faults=1 tlbi-remap=ok\n"
umbra_l1_msg_nl:        .asciz "\n"
umbra_l1_msg_fail:      .asciz "UMBRA-NESTED-FAIL: "
umbra_l1_msg_fail_el:   .asciz "CurrentEL is not 2: "
umbra_l1_msg_fail_fwb:  .asciz "ID_AA64MMFR2_EL1.FWB is shown: "
umbra_l1_msg_fail_parange: .asciz "ID_AA64MMFR0_EL1.PARange is not 40 bits: "
umbra_l1_msg_unexpected: .asciz "unexpected exception at virtual EL2, ESR_EL2 "
umbra_l1_msg_bad_a:     .asciz "L2 read a wrong value through 0x100000: "
umbra_l1_msg_bad_b:     .asciz "L2 read a wrong value through 0x101000: "
umbra_l1_msg_bad_c:     .asciz "L2 read a wrong value after the remap: "
umbra_l1_msg_stale:     .asciz "L2 read the stale page A after the remap and TLBI: "
umbra_l1_msg_bad_faults: .asciz "wrong number of demand faults: "
umbra_l1_msg_bad_fault: .asciz "unexpected stage-2 fault: "

// L2: loads from 0x102000 (an external abort at its EL1, ESR_EL1 in x5),
// reads A, B (demand-mapped), then A's IPA again (remapped to C),
// reporting each with an HVC (the value in x2).
.balign 4096
umbra_l2_payload:
    mrs     x7, midr_el1
    mrs     x8, mpidr_el1
    mrs     x3, vbar_el1
    mrs     x4, s3_0_c0_c7_0
    mov     x5, #0
    movz    x1, #0x10, lsl #16
    movk    x1, #0x2000
    ldr     x2, [x1]
    mov     x1, #0x100000
    ldr     x2, [x1]
    hvc     #1
    add     x1, x1, #0x1000
    ldr     x2, [x1]
    hvc     #2
    sub     x1, x1, #0x1000
    ldr     x2, [x1]
    hvc     #3
8:  b       8b
// L2 with L1's stage 2 off (MMU off: its VA is L1's IPA): reads x1.
umbra_l2_direct:
    ldr     x2, [x1]
    hvc     #4
9:  b       9b
// L2's vectors (VBAR_EL1 = L2_VBAR, in the payload page): the current-EL
// synchronous one records ESR_EL1 in x5 and returns past the access; any
// other exception hangs L2 (hv's watchdog ends the run).
.balign 2048
umbra_l2_vectors:
    .rept 4
    b       .
    .balign 128
    .endr
    mrs     x5, esr_el1
    mrs     x6, elr_el1
    add     x6, x6, #4
    msr     elr_el1, x6
    eret
    .balign 128
    .rept 11
    b       .
    .balign 128
    .endr
.balign 4096
.global umbra_l1_image_end
umbra_l1_image_end:
.popsection
"#,
    magic_a = const MAGIC_A,
    magic_b = const MAGIC_B,
    magic_c = const MAGIC_C,
    vtcr = const L1_VTCR,
    vhcr = const L1_VIRTUAL_HCR,
    vmid_shifted = const (L1_VMID_FOR_L2 << 48),
    putc = const super::nested::HVC_CONSOLE_PUTC,
    l2_vbar = const L2_VBAR,
    l2_midr = const L2_MIDR,
    l2_mpidr = const L2_MPIDR,
    l1_ram_bytes = const super::nested::L1_RAM_BYTES,
    vhcr_no_vm = const (L1_VIRTUAL_HCR & !1),
    l1_hole = const L1_HOLE,
);

/// The value L1 writes at page A (pages B, C: the next two).
pub const MAGIC_A: u64 = 0xa1a1_0000_1111_0001;
pub const MAGIC_B: u64 = 0xb2b2_0000_2222_0002;
pub const MAGIC_C: u64 = 0xc3c3_0000_3333_0003;
/// L1's VTCR_EL2 for L2: RES1 bit 31, PS 40 bits, 4 KiB granule, Inner
/// Shareable write-back walks, start level 1, T0SZ 25 (39-bit IPA).
pub const L1_VTCR: u64 =
    (1 << 31) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | (1 << 6) | 25;
/// L1's HCR_EL2 for L2: RW, DC, VM.
pub const L1_VIRTUAL_HCR: u64 = (1 << 31) | (1 << 12) | 1;
/// L2's VBAR_EL1 as L1 sets it: `umbra_l2_vectors`, 2 KiB into the payload
/// page at L2 IPA 0x80000 (L2 reads it back, and takes the external abort
/// of its load from 0x102000 there).
pub const L2_VBAR: u64 = 0x8_0800;
/// L1's VPIDR_EL2 for L2 (not the host's MIDR_EL1 on any board hv runs on
/// in the tests).
pub const L2_MIDR: u64 = 0x411f_d401;
/// L1's VMPIDR_EL2 for L2: Aff2 1, Aff1 2, Aff0 3, bit 31 (RES1).
pub const L2_MPIDR: u64 = 0x8001_0203;
/// An L1 IPA with nothing behind it (outside L1's RAM, below its 40-bit
/// PARange), which L1 maps L2's IPA 0x102000 to.
pub const L1_HOLE: u64 = 0x80_0000_0000 - 0x1000;
/// The VMID L1 gives L2.
pub const L1_VMID_FOR_L2: u64 = 5;

assembled_image!(
    "The L1 image's bytes (code, data and the L2 payload).",
    umbra_l1_image,
    umbra_l1_image_end
);
