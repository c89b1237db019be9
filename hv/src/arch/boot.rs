//! The image header, entry points, exception vectors and guest entry/exit,
//! in assembly. Everything here is position independent: the primary entry
//! applies the image's own relocations before any Rust code runs.

use super::{GuestFrame, BOOT_STACK_SIZE};
use core::arch::global_asm;

/// Bytes of `GuestFrame`: x0-x30, ELR_EL2, SPSR_EL2 and padding.
const FRAME_SIZE: usize = core::mem::size_of::<GuestFrame>();
const _: () = assert!(FRAME_SIZE == 272);

global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    // The arm64 Image header (Documentation/arch/arm64/booting.rst).
    b       primary_entry
    .long   0
    .quad   0                   // text_offset
    .quad   __image_size        // image_size, bss included
    .quad   0xa                 // little endian, 4 KiB pages, anywhere in RAM
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"
    .long   0

.section .text.boot, "ax"
primary_entry:
    mov     x19, x0             // the device tree
    mrs     x20, cntpct_el0     // when hv started, for the boot timeline
    adr     x21, _start         // where the loader put us

    // Zero .bss (hv's stacks, heap and page-table pool live there).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b

    // Apply R_AARCH64_RELATIVE relocations for the load address; the
    // driver checks at build time that the image has no other kind.
2:  adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
3:  cmp     x1, x2
    b.hs    5f
    ldp     x3, x4, [x1], #16   // r_offset, r_info
    ldr     x5, [x1], #8        // r_addend
    cmp     w4, #1027
    b.ne    4f
    add     x5, x5, x21
    str     x5, [x21, x3]
4:  b       3b

5:  adrp    x1, {boot_stack}
    add     x1, x1, :lo12:{boot_stack}
    add     x1, x1, #{boot_stack_size}
    mov     sp, x1
    mov     x0, x19
    mov     x1, x20
    mrs     x2, CurrentEL
    bl      {primary_main}
6:  wfe
    b       6b

// A secondary CPU, started by PSCI CPU_ON with x0 = its SecondaryBoot
// record (cleaned to memory by the CPU that started it): turn the MMU on
// with the shared tables, then run Rust on the CPU's own stack.
.global hv_secondary_entry
hv_secondary_entry:
    mrs     x20, cntpct_el0
    ldr     x1, [x0, #0]
    mov     sp, x1
    ldr     x1, [x0, #8]
    msr     mair_el2, x1
    ldr     x1, [x0, #16]
    msr     tcr_el2, x1
    ldr     x1, [x0, #24]
    msr     ttbr0_el2, x1
    isb
    tlbi    alle2
    dsb     nsh
    isb
    ldr     x1, [x0, #32]
    msr     sctlr_el2, x1
    isb
    ic      iallu
    dsb     nsh
    isb
    ldr     x0, [x0, #40]
    mov     x1, x20
    bl      {secondary_main}
7:  wfe
    b       7b

// Exception vectors. Each entry saves x0/x1, puts its kind in x1 and
// branches to the common code that saves the rest of the frame.
.macro VECTOR target, kind
    .balign 128
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp]
    mov     x1, #\kind
    b       \target
.endm

.section .text.vectors, "ax"
.balign 2048
.global hv_vectors
hv_vectors:
    VECTOR  hv_own_exception, 0     // current EL with SP_EL0
    VECTOR  hv_own_exception, 1
    VECTOR  hv_own_exception, 2
    VECTOR  hv_own_exception, 3
    VECTOR  hv_own_exception, 4     // current EL with SP_ELx
    VECTOR  hv_own_exception, 5
    VECTOR  hv_own_exception, 6
    VECTOR  hv_own_exception, 7
    VECTOR  hv_guest_exit, 0        // lower EL, AArch64: sync
    VECTOR  hv_guest_exit, 1        // irq
    VECTOR  hv_guest_exit, 2        // fiq
    VECTOR  hv_guest_exit, 3        // serror
    VECTOR  hv_own_exception, 12    // lower EL, AArch32
    VECTOR  hv_own_exception, 13
    VECTOR  hv_own_exception, 14
    VECTOR  hv_own_exception, 15

.macro SAVE_REST
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x30, x2, [sp, #16 * 15]
    str     x3, [sp, #16 * 16]
.endm

hv_own_exception:
    SAVE_REST
    mov     x0, sp
    bl      {hv_exception}
8:  wfe
    b       8b

hv_guest_exit:
    SAVE_REST
    mov     x0, sp
    bl      {guest_exit}
    b       hv_return_to_guest

// Restores the frame at sp and returns to the guest.
hv_return_to_guest:
    ldp     x30, x2, [sp, #16 * 15]
    ldr     x3, [sp, #16 * 16]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x0, x1, [sp, #16 * 0]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x28, x29, [sp, #16 * 14]
    add     sp, sp, #{frame_size}
    eret

// hv_enter_guest(frame: *const GuestFrame, stack_top: u64) -> !
// Resets this CPU's stack, copies the frame to its top and enters the guest.
.global hv_enter_guest
hv_enter_guest:
    mov     sp, x1
    sub     sp, sp, #{frame_size}
    mov     x2, #0
9:  ldr     x3, [x0, x2]
    str     x3, [sp, x2]
    add     x2, x2, #8
    cmp     x2, #{frame_size}
    b.lo    9b
    b       hv_return_to_guest
"#,
    boot_stack = sym super::BOOT_STACK,
    boot_stack_size = const BOOT_STACK_SIZE,
    primary_main = sym super::primary_main,
    secondary_main = sym super::secondary_main,
    hv_exception = sym super::hv_exception,
    guest_exit = sym super::guest_exit,
    frame_size = const FRAME_SIZE,
);

unsafe extern "C" {
    pub static hv_vectors: u8;
    pub fn hv_secondary_entry();
    pub fn hv_enter_guest(frame: *const GuestFrame, stack_top: u64) -> !;
    pub static __image_start: u8;
    pub static __text_end: u8;
    pub static __data_start: u8;
    pub static __image_end: u8;
}
