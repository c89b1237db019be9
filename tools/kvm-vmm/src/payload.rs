//! L2: the guest the VMM runs, assembled into the VMM's read-only data and
//! copied to the start of L2's RAM, where it runs at EL1 with its MMU off
//! (KVM's vCPU reset state), position-independent.
//!
//! The VMM runs it twice, each time on RAM from a new mapping of its own
//! (the memory slot deleted and created again between the runs), with the
//! run's number in x0. It first reads ID_AA64DFR0_EL1 (a trap to L1's
//! KVM, which emulates it) and asks PSCI_VERSION by HVC (answered by L1's
//! KVM in its kernel), and reports both by MMIO stores
//! ([`MMIO_ID_OFFSET`], [`MMIO_PSCI_OFFSET`]). Then it reads the word the
//! VMM wrote at the start of each data page (1 to [`DATA_PAGES`]), checks
//! it is the page's [`pattern`] for this run and writes the word's
//! complement 8 bytes further on; reads the fresh page [`FRESH_PAGE`] (the
//! VMM never touched it: it must read 0) and writes its pattern 8 bytes
//! in. Each first touch of a page is a stage-2 fault for L1's KVM, which
//! maps the page of the VMM's mapping behind it. Then it stores a 32-bit
//! word at [`MMIO_IPA`] (outside every memory slot: a `KVM_EXIT_MMIO` for
//! the VMM): [`PASS_WORD`], or [`FAIL_WORD`] plus the page whose word was
//! wrong, and calls PSCI SYSTEM_OFF with HVC (a `KVM_EXIT_SYSTEM_EVENT`).
//! Should SYSTEM_OFF return, it stores [`OFF_RETURNED_WORD`] at
//! [`MMIO_IPA`] and spins.

use core::arch::global_asm;

/// L2's RAM: its IPA and size (the payload's page, the data pages, the
/// fresh page, and one page never touched by anyone).
pub const RAM_IPA: u64 = 0x4000_0000;
pub const RAM_PAGES: usize = 8;
pub const PAGE: usize = 4096;
pub const DATA_PAGES: u64 = 4;
pub const FRESH_PAGE: u64 = 6;
/// Where L2's report goes: no memory slot covers it.
pub const MMIO_IPA: u64 = 0x0a00_0000;
/// L2's first two reports, before its pages: the ID_AA64DFR0_EL1 it read
/// (8 bytes) and the PSCI version its HVC got (4 bytes), at these offsets.
pub const MMIO_ID_OFFSET: u64 = 8;
pub const MMIO_PSCI_OFFSET: u64 = 4;
pub const PASS_WORD: u32 = 0x600d_0000 | FRESH_PAGE as u32;
pub const FAIL_WORD: u32 = 0xbad0_0000;
pub const OFF_RETURNED_WORD: u32 = 0xdead_0000;

/// The word the VMM writes at the start of data page `page` before run
/// `run` (and the one L2 writes into the fresh page): "KVML" above the
/// run's number (bits 31:16) and the page number.
pub const fn pattern(page: u64, run: u64) -> u64 {
    0x4b56_4d4c_0000_0000 | run << 16 | page
}

global_asm!(
    r#"
.pushsection .rodata.kvm_vmm_l2, "a"
.balign 4
.global kvm_vmm_l2_payload
kvm_vmm_l2_payload:
    movz    x6, #0x4b56, lsl #48            // x6: the pattern without its page number:
    movk    x6, #0x4d4c, lsl #32            //   "KVML" in bits 63:32,
    orr     x6, x6, x0, lsl #16             //   the run's number (x0, set by the VMM) in 31:16
    movz    x8, #({mmio} >> 16), lsl #16    // x8: the MMIO report address
    mrs     x10, s3_0_c0_c5_0               // ID_AA64DFR0_EL1: traps to L1's KVM (its HCR_EL2.TID3)
    str     x10, [x8, #{id_offset}]         // KVM_EXIT_MMIO, 8 bytes: what KVM's emulation returned
    movz    x0, #0x0000                     // PSCI_VERSION (0x84000000), an HVC L1's KVM
    movk    x0, #0x8400, lsl #16            //   answers in its kernel (no exit to the VMM); SMCCC
    hvc     #0                              //   results are x0-x3 (KVM zeroes x1-x3), x4-x17 kept
    str     w0, [x8, #{psci_offset}]        // KVM_EXIT_MMIO, 4 bytes: the version it answered
    adr     x1, kvm_vmm_l2_payload          // x1: L2's RAM base (page 0 holds this code)
    mov     x2, #1                          // x2: the page, from 1
1:  add     x3, x1, x2, lsl #12             // x3: the page's address
    ldr     x4, [x3]                        // the VMM's word (a stage-2 fault for KVM at first)
    orr     x5, x6, x2                      // the word it must be
    cmp     x4, x5
    b.ne    8f                              // not it: report the page
    mvn     x4, x4
    str     x4, [x3, #8]                    // its complement, for the VMM to check
    add     x2, x2, #1                      // the next page,
    cmp     x2, #({data_pages} + 1)         //   up to the last data page
    b.ne    1b
    mov     x2, #{fresh}                    // the fresh page
    add     x3, x1, x2, lsl #12
    ldr     x4, [x3]                        // nobody wrote it: zero
    cbnz    x4, 8f
    orr     x5, x6, x2
    str     x5, [x3, #8]                    // its pattern, for the VMM to check
    movz    w7, #({pass} >> 16), lsl #16
    add     w7, w7, w2                      // PASS_WORD: 0x600d0000 + the fresh page
    str     w7, [x8]                        // KVM_EXIT_MMIO, 4 bytes
    b       9f
8:  movz    w7, #({fail} >> 16), lsl #16
    add     w7, w7, w2                      // FAIL_WORD + the page that was wrong
    str     w7, [x8]                        // KVM_EXIT_MMIO, 4 bytes
9:  movz    x0, #0x0008                     // PSCI SYSTEM_OFF (0x84000008):
    movk    x0, #0x8400, lsl #16            //   KVM_EXIT_SYSTEM_EVENT
    hvc     #0
    movz    w7, #({off_returned} >> 16), lsl #16
    str     w7, [x8]                        // SYSTEM_OFF returned: OFF_RETURNED_WORD
    b       .
.global kvm_vmm_l2_payload_end
kvm_vmm_l2_payload_end:
.popsection
"#,
    mmio = const MMIO_IPA,
    id_offset = const MMIO_ID_OFFSET,
    psci_offset = const MMIO_PSCI_OFFSET,
    data_pages = const DATA_PAGES,
    fresh = const FRESH_PAGE,
    pass = const PASS_WORD,
    fail = const FAIL_WORD,
    off_returned = const OFF_RETURNED_WORD,
);

extern "C" {
    static kvm_vmm_l2_payload: [u32; 0];
    static kvm_vmm_l2_payload_end: [u32; 0];
}

/// The payload's instruction words.
pub fn words() -> &'static [u32] {
    // SAFETY: both symbols are defined above in one read-only section,
    // the end after the start, 4-byte aligned; only their addresses are
    // taken, and the words between them are never written.
    unsafe {
        let start = core::ptr::addr_of!(kvm_vmm_l2_payload).cast::<u32>();
        let end = core::ptr::addr_of!(kvm_vmm_l2_payload_end).cast::<u32>();
        core::slice::from_raw_parts(start, end.offset_from(start) as usize)
    }
}
