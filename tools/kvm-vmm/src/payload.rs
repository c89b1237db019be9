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
//!
//! Between its pass word and SYSTEM_OFF it takes interrupts through the
//! VMM's in-kernel vGICv3 (distributor at [`GICD_IPA`], its
//! redistributor at [`GICR_IPA`]), which KVM injects through the list
//! registers of L1's virtual CPU interface: it points VBAR_EL1 at its
//! vector table, enables its CPU interface (ICC_SRE_EL1, ICC_PMR_EL1,
//! ICC_IGRPEN1_EL1), its distributor's group 1 (which gates PPIs too)
//! and PPI 27 at its redistributor, arms its virtual
//! timer [`TIMER_IRQS`] times, 1/256 s each (the handler acknowledges
//! INTID 27 with ICC_IAR1_EL1, re-arms the timer or turns it off, and
//! EOIs), waiting at most 2 s, and reports by an 8-byte store at
//! [`MMIO_TIMER_OFFSET`] ([`irq_report`]). Then it enables edge-triggered
//! SPI [`SPI`] at its distributor, routed to itself; its report store is
//! the VMM's cue to raise the SPI (KVM_IRQ_LINE); it waits at most 1 s
//! for it and reports at [`MMIO_SPI_OFFSET`]. Last, it arms its timer to
//! expire at once with IRQs masked and waits (at most 1 s) until the
//! virtual IRQ KVM lists for it is pending (ISR_EL1.I), reports ISR_EL1
//! at [`MMIO_PENDING_OFFSET`] and powers off with it pending (L1's KVM
//! took its PPI 27 for it and keeps that active: KVM's next vCPU load
//! sets it active through L1's GICR_ISACTIVER0). An exception it does
//! not expect stores ESR_EL1 at [`MMIO_UNEXPECTED_OFFSET`] and powers
//! off.

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
/// L2's interrupt reports (8 bytes each, [`irq_report`]), after its pass
/// word: the timer's, then the SPI's; an unexpected exception's ESR_EL1.
pub const MMIO_TIMER_OFFSET: u64 = 0x10;
pub const MMIO_SPI_OFFSET: u64 = 0x18;
pub const MMIO_UNEXPECTED_OFFSET: u64 = 0x20;
/// L2's last report: ISR_EL1 once its timer, left expired with IRQs
/// masked, shows as a pending virtual IRQ (bit [`ISR_I`]), or after 1 s.
pub const MMIO_PENDING_OFFSET: u64 = 0x28;
pub const ISR_I: u64 = 1 << 7;
/// The in-kernel vGIC's frames in L2's IPA space (QEMU virt's places,
/// outside every memory slot): the distributor's 64 KiB and the vCPU's
/// redistributor's 128 KiB (RD and SGI frames).
pub const GICD_IPA: u64 = 0x0800_0000;
pub const GICR_IPA: u64 = 0x080a_0000;
/// The virtual timer's PPI (KVM's default for its vCPUs' CNTV).
pub const TIMER_PPI: u64 = 27;
/// How many timer interrupts L2 takes in a row.
pub const TIMER_IRQS: u64 = 3;
/// The SPI the VMM raises with KVM_IRQ_LINE.
pub const SPI: u64 = 40;
/// The INTID ICC_IAR1_EL1 reads when nothing is pending.
pub const SPURIOUS: u64 = 1023;

/// What L2 reports after each wait: the interrupts of the kind it waited
/// for that it took (bits 31:0) and the last other INTID it acknowledged
/// ([`SPURIOUS`] when none, bits 63:32).
pub const fn irq_report(taken: u64, other: u64) -> u64 {
    other << 32 | taken
}

/// The word the VMM writes at the start of data page `page` before run
/// `run` (and the one L2 writes into the fresh page): "KVML" above the
/// run's number (bits 31:16) and the page number.
pub const fn pattern(page: u64, run: u64) -> u64 {
    0x4b56_4d4c_0000_0000 | run << 16 | page
}

global_asm!(
    r#"
.pushsection .rodata.kvm_vmm_l2, "a"
.balign 2048
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
    // Interrupts. x20: timer IRQs taken, x21: SPIs taken, x22: the last
    // other INTID acknowledged; x12: the timer's interval. The handler
    // uses x14 and these only.
    adr     x9, 20f
    msr     vbar_el1, x9
    mov     x20, #0
    mov     x21, #0
    mov     x22, #{spurious}
    mov     x9, #1
    msr     icc_sre_el1, x9                 // system register interface (RES1 under KVM's vGICv3)
    isb
    mov     x9, #0xff
    msr     icc_pmr_el1, x9                 // every priority unmasked
    mov     x9, #1
    msr     icc_igrpen1_el1, x9             // group 1 on
    isb
    movz    x10, #({gicd} >> 16), lsl #16   // the distributor:
    mov     w9, #2
    str     w9, [x10]                       // GICD_CTLR: EnableGrp1 (ARE and DS fixed by KVM),
                                            //   which gates PPIs too (affinity routing)
    movz    x10, #({gicr} >> 16), lsl #16   // x10: the redistributor's RD frame
    str     wzr, [x10, #0x14]               // GICR_WAKER: ProcessorSleep 0
    add     x10, x10, #0x10, lsl #12        // its SGI frame
    mov     w9, #-1
    str     w9, [x10, #0x80]                // GICR_IGROUPR0: SGIs and PPIs group 1
    mov     w9, #(1 << {timer_ppi})
    str     w9, [x10, #0x100]               // GICR_ISENABLER0: the timer's PPI
    mrs     x9, cntfrq_el0
    lsr     x12, x9, #8                     // the interval: 1/256 s
    mrs     x13, cntvct_el0
    add     x13, x13, x9, lsl #1            // x13: the deadline, 2 s on
    msr     cntv_tval_el0, x12
    mov     x9, #1
    msr     cntv_ctl_el0, x9                // ENABLE, IMASK 0
    isb
    msr     daifclr, #2                     // IRQs unmasked
1:  cmp     x20, #{timer_irqs}
    b.hs    2f
    mrs     x9, cntvct_el0
    cmp     x9, x13
    b.lo    1b
2:  msr     daifset, #2
    msr     cntv_ctl_el0, xzr               // the timer off (the handler's last one did)
    isb
    orr     x9, x20, x22, lsl #32
    str     x9, [x8, #{timer_offset}]       // KVM_EXIT_MMIO, 8 bytes: the timer's report
    mov     x22, #{spurious}
    movz    x10, #({gicd} >> 16), lsl #16   // x10: the distributor
    mov     w9, #(1 << ({spi} - 32))
    str     w9, [x10, #0x84]                // GICD_IGROUPR1: the SPI in group 1
    mov     w9, #(2 << (({spi} % 16) * 2))
    str     w9, [x10, #0xc08]               // GICD_ICFGR2: edge-triggered
    add     x11, x10, #0x6000
    str     xzr, [x11, #({spi} * 8)]        // GICD_IROUTER: affinity 0 (this vCPU)
    mov     w9, #(1 << ({spi} - 32))
    str     w9, [x10, #0x104]               // GICD_ISENABLER1: enabled
    str     x9, [x8, #{spi_offset}]         // KVM_EXIT_MMIO: the VMM's cue to raise the SPI
    mrs     x13, cntvct_el0
    mrs     x9, cntfrq_el0
    add     x13, x13, x9                    // the deadline, 1 s on
    msr     daifclr, #2
3:  cbnz    x21, 4f
    mrs     x9, cntvct_el0
    cmp     x9, x13
    b.lo    3b
4:  msr     daifset, #2
    orr     x9, x21, x22, lsl #32
    str     x9, [x8, #{spi_offset}]         // KVM_EXIT_MMIO, 8 bytes: the SPI's report
    msr     cntv_tval_el0, xzr              // Its timer left expired with IRQs masked: KVM
    mov     x9, #1                          //   takes L1's PPI 27, keeps it active and lists
    msr     cntv_ctl_el0, x9                //   vINTID 27, which L2 never takes
    isb
    mrs     x13, cntvct_el0
    mrs     x9, cntfrq_el0
    add     x13, x13, x9                    // the deadline, 1 s on
10: mrs     x9, isr_el1
    tbnz    x9, #7, 11f                     // ISR_EL1.I: the virtual IRQ is pending
    mrs     x9, cntvct_el0
    cmp     x9, x13
    b.lo    10b
11: mrs     x9, isr_el1
    str     x9, [x8, #{pending_offset}]     // KVM_EXIT_MMIO, 8 bytes: ISR_EL1
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
7:  mrs     x14, esr_el1                    // an exception L2 does not expect:
    str     x14, [x8, #{unexpected_offset}] //   its syndrome for the VMM,
    b       9b                              //   and off
    // The vector table (2 KiB-aligned in L2's RAM as in this section):
    // IRQs from the current EL with SP_EL1 (L2 runs at EL1h) at 0x280,
    // every other entry unexpected.
    .balign 2048
20: b       7b                              // current EL, SP_EL0: synchronous
    .balign 0x80
    b       7b                              //   IRQ
    .balign 0x80
    b       7b                              //   FIQ
    .balign 0x80
    b       7b                              //   SError
    .balign 0x80
    b       7b                              // current EL, SP_EL1: synchronous
    .balign 0x80
    mrs     x14, icc_iar1_el1               //   IRQ: acknowledge
    cmp     x14, #{timer_ppi}
    b.ne    5f
    add     x20, x20, #1                    // the timer's:
    cmp     x20, #{timer_irqs}
    b.hs    6f
    msr     cntv_tval_el0, x12              //   re-armed (its level drops)
    b       21f
6:  msr     cntv_ctl_el0, xzr               //   or, the last one, turned off
    b       21f
5:  cmp     x14, #{spi}
    b.ne    22f
    add     x21, x21, #1                    // the SPI
    b       21f
22: cmp     x14, #1020                      // a special INTID: nothing to EOI
    b.hs    23f
    mov     x22, x14                        // another one, EOId and reported
21: isb
    msr     icc_eoir1_el1, x14              // EOI (EOImode 0: drop and deactivate)
23: eret
    .balign 0x80
    b       7b                              //   FIQ
    .balign 0x80
    b       7b                              //   SError
    .rept 8                                 // lower ELs: none
    .balign 0x80
    b       7b
    .endr
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
    spurious = const SPURIOUS,
    gicd = const GICD_IPA,
    gicr = const GICR_IPA,
    timer_ppi = const TIMER_PPI,
    timer_irqs = const TIMER_IRQS,
    timer_offset = const MMIO_TIMER_OFFSET,
    spi = const SPI,
    spi_offset = const MMIO_SPI_OFFSET,
    unexpected_offset = const MMIO_UNEXPECTED_OFFSET,
    pending_offset = const MMIO_PENDING_OFFSET,
);

extern "C" {
    static kvm_vmm_l2_payload: [u32; 0];
    static kvm_vmm_l2_payload_end: [u32; 0];
}

/// The payload's instruction words (page 0 of L2's RAM holds them all:
/// the data pages follow).
pub fn words() -> &'static [u32] {
    // SAFETY: both symbols are defined above in one read-only section,
    // the end after the start, 4-byte aligned; only their addresses are
    // taken, and the words between them are never written.
    unsafe {
        let start = core::ptr::addr_of!(kvm_vmm_l2_payload).cast::<u32>();
        let end = core::ptr::addr_of!(kvm_vmm_l2_payload_end).cast::<u32>();
        let words = core::slice::from_raw_parts(start, end.offset_from(start) as usize);
        assert!(4 * words.len() <= PAGE, "the payload outgrew page 0");
        words
    }
}
