//! hv on the machine: boot, EL2 set-up, the guest's exits. Built only for
//! aarch64-unknown-none; the decisions it applies live in the portable
//! modules and are tested on the host.

/// `pub fn image() -> &'static [u8]`: the bytes of a program assembled
/// into hv's read-only data between the symbols `$start` and `$end` (an L1
/// for the nested demos, a probe guest), documented by `$doc`.
macro_rules! assembled_image {
    ($doc:literal, $start:ident, $end:ident) => {
        unsafe extern "C" {
            static $start: u8;
            static $end: u8;
        }

        #[doc = $doc]
        pub fn image() -> &'static [u8] {
            let start = &raw const $start;
            let end = &raw const $end;
            // SAFETY: both symbols bound the assembled image, in hv's
            // read-only data, start before end.
            unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
        }
    };
}

// The assembly fragments the test guest hypervisors share (macros, so
// declared before the `nested_l1*` modules that use them).
#[macro_use]
mod nested_l1_asm;
// The fault-rate guests' shared assembly (macros, as above).
#[macro_use]
mod nested_l1_fault_rate_asm;
// The failure report the EL1 probes share (a macro, so declared before
// them).
#[macro_use]
mod probe_asm;

pub mod boot;
pub mod console;
pub mod cpu;
pub mod gic;
pub mod gic_active_probe;
pub mod mmio;
pub mod nested;
mod nested_gic;
pub mod nested_l1;
pub mod nested_l1_at;
pub mod nested_l1_fault_rate;
pub mod nested_l1_fault_rate_smp;
pub mod nested_l1_gic;
pub mod nested_l1_host;
pub mod nested_l1_hw_timer;
pub mod nested_l1_irq;
pub mod nested_l1_mid_change;
pub mod nested_l1_mmu;
pub mod nested_l1_recycle;
pub mod nested_l1_sve;
pub mod nested_l1_tge;
pub mod nested_l1_timer;
pub mod nested_l1_tlbi_race;
pub mod nested_l1_traps;
pub mod nested_timer;
pub mod nested_vgic;
pub mod selftest;
pub mod shadow_selftest;
pub mod shadow_tlb;
pub mod spi_view_probe;
pub mod walk_abort_probe;

use crate::bundle::{Bundle, ImageHeader};
use crate::esr::{instruction_length, ExceptionClass, MmioAccess, MmioKind, NotEmulable};
use crate::exit::GuestExit;
use crate::fdt_check;
use crate::guest_dt::{self, GuestConfig, GuestCpus};
use crate::inject::{self, EntryFeatures, ReturnState, TargetEl1};
use crate::layout::GuestLayout;
use crate::pagetable::{self, MemoryKind, Regime, Table, TableTree, MAIR_EL2};
use crate::platform::{
    self, Conduit, DeliberateFailure, GicMode, Options, Platform, Region, MAX_CPUS,
};
use crate::println;
use crate::psci::{self, PsciHost, PsciOutcome, VcpuPower};
use crate::s1walk;
use crate::smccc_arch::{self, ArchOutcome, FirmwareArch};
use crate::sysregs::{self, CpuFeatures};
use alloc::boxed::Box;
use alloc::vec;
use arrayvec::ArrayVec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use cpu::{read_sysreg, write_sysreg};
use smccc::Call;

pub const BOOT_STACK_SIZE: usize = 64 * 1024;
const STACK_SIZE: usize = 64 * 1024;
const HEAP_SIZE: usize = 8 << 20;
const STAGE1_TABLES: usize = 32;
const STAGE2_TABLES: usize = 64;
/// The guest's VMID (there is one guest).
const GUEST_VMID: u64 = 1;
/// The arm64 boot protocol's limit on the device tree's size.
const MAX_DTB_SIZE: usize = 2 << 20;

/// A guest's general-purpose state as the exception vectors save it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct GuestFrame {
    pub x: [u64; 31],
    /// ELR_EL2: where the guest resumes.
    pub elr: u64,
    /// SPSR_EL2: the guest's PSTATE.
    pub spsr: u64,
    _pad: u64,
}

impl GuestFrame {
    const ZERO: Self = Self {
        x: [0; 31],
        elr: 0,
        spsr: 0,
        _pad: 0,
    };

    /// Register `n` as an instruction sees it (31 is the zero register).
    fn reg(&self, n: u8) -> u64 {
        self.x.get(n as usize).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(r) = self.x.get_mut(n as usize) {
            *r = value;
        }
    }
}

#[derive(Debug)]
#[repr(C, align(16))]
pub struct Stack<const N: usize>([u8; N]);

// The stacks, heap and stage-1 tables are in .bss, zeroed by the entry code.
// They are only ever reached through raw pointers (`&raw mut`).
pub static mut BOOT_STACK: Stack<BOOT_STACK_SIZE> = Stack([0; BOOT_STACK_SIZE]);
static mut STACKS: [Stack<STACK_SIZE>; MAX_CPUS] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS];
#[derive(Debug)]
#[repr(C, align(4096))]
struct Heap([u8; HEAP_SIZE]);
static mut HEAP: Heap = Heap([0; HEAP_SIZE]);
static mut STAGE1: [Table; STAGE1_TABLES] = [const { Table::EMPTY }; STAGE1_TABLES];

#[global_allocator]
static ALLOCATOR: buddy_system_allocator::LockedHeap<32> =
    buddy_system_allocator::LockedHeap::empty();

/// What a secondary CPU needs before its MMU is on (read by boot.rs at the
/// offsets below; cleaned to memory before the CPU is started).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct SecondaryBoot {
    stack_top: u64,
    mair: u64,
    tcr: u64,
    ttbr: u64,
    sctlr: u64,
    index: u64,
}

/// Per-vCPU slots written by one CPU and read by another after a PSCI call.
struct VcpuSlots {
    entry: [AtomicU64; MAX_CPUS],
    context: [AtomicU64; MAX_CPUS],
    frames: [UnsafeCell<GuestFrame>; MAX_CPUS],
}

// SAFETY: `frames[i]` is only touched by the CPU running vCPU i (to build
// its entry frame); the atomics are Sync on their own.
unsafe impl Sync for VcpuSlots {}

static SLOTS: VcpuSlots = VcpuSlots {
    entry: [const { AtomicU64::new(0) }; MAX_CPUS],
    context: [const { AtomicU64::new(0) }; MAX_CPUS],
    frames: [const { UnsafeCell::new(GuestFrame::ZERO) }; MAX_CPUS],
};

/// Everything fixed once the boot CPU has set the machine up.
#[derive(Debug)]
struct Hv {
    platform: Platform,
    /// hv's physical GIC when the guest gets a virtual one.
    gic: Option<gic::Gic>,
    features: CpuFeatures,
    guest_memory: ArrayVec<Region, 16>,
    vttbr: u64,
    vtcr: u64,
    secondary_boot: [SecondaryBoot; MAX_CPUS],
}

static HV: spin::Once<Hv> = spin::Once::new();
static POWER: VcpuPower = VcpuPower::new();
/// The firmware's PSCI is 1.0 or later (PSCI_FEATURES exists), set before
/// any secondary CPU starts.
static FIRMWARE_PSCI_1_0: AtomicBool = AtomicBool::new(false);
/// What each CPU's firmware reported for the SMCCC Arm Architecture
/// Service, asked by that CPU at its first bring-up (`smccc_arch::query`).
static FIRMWARE_ARCH: [spin::Once<FirmwareArch>; MAX_CPUS] =
    [const { spin::Once::new() }; MAX_CPUS];
static SEMIHOSTING_EXIT: AtomicBool = AtomicBool::new(false);
/// 0 = unknown (no PSCI), 1 = SMC.
static PSCI_SMC: AtomicU8 = AtomicU8::new(0);
static MMU_ON: AtomicBool = AtomicBool::new(false);
static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);
static LAST_PHASE: AtomicU64 = AtomicU64::new(0);
static GUEST_FAULT_REPORTS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// hv's exit status, as the emulator reports it with `hv.exit=semihosting`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitStatus {
    /// The guest called PSCI SYSTEM_OFF.
    GuestPoweredOff = 0,
    /// hv could not run (missing hardware, bad input), panicked, or the
    /// guest did something hv cannot continue from.
    Failure = 1,
    /// The guest called PSCI SYSTEM_RESET (Linux does on panic with panic=-1).
    GuestReset = 2,
}

impl ExitStatus {
    /// A self-test (`hv.selftest=`) passed: status 0, as for a clean guest
    /// power-off.
    pub const SELF_TEST_PASSED: ExitStatus = ExitStatus::GuestPoweredOff;
}

/// Ends the run: semihosting SYS_EXIT with `status` when enabled, otherwise
/// PSCI SYSTEM_OFF (SYSTEM_RESET for a guest reset), else stop this CPU.
pub fn exit(status: ExitStatus) -> ! {
    if SEMIHOSTING_EXIT.load(Ordering::Relaxed) {
        // ADP_Stopped_ApplicationExit with the status as subcode.
        let block: [u64; 2] = [0x2_0026, status as u64];
        // SAFETY: semihosting SYS_EXIT (0x18) reads the two-word block at x1
        // and does not return; `hv.exit=semihosting` says it is available.
        unsafe {
            core::arch::asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") block.as_ptr(), options(nostack));
        }
    }
    if PSCI_SMC.load(Ordering::Relaxed) == 1 {
        let _ = match status {
            ExitStatus::GuestReset => smccc::psci::system_reset::<smccc::Smc>(),
            _ => smccc::psci::system_off::<smccc::Smc>(),
        };
    }
    loop {
        // SAFETY: parks this CPU.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}

/// One clear line, then a failure exit.
fn fail(args: fmt::Arguments<'_>) -> ! {
    if MMU_ON.load(Ordering::Relaxed) {
        console::print(format_args!("hv: error: {args}\n"));
    } else {
        console::print_unlocked(format_args!("hv: error: {args}\n"));
    }
    exit(ExitStatus::Failure)
}

/// Prints a boot phase: time since the counter started, time since the
/// previous phase.
fn phase(args: fmt::Arguments<'_>) {
    let now = cpu::counter();
    let last = LAST_PHASE.swap(now, Ordering::Relaxed);
    let since_start = cpu::micros(0, now);
    let took = cpu::micros(last, now);
    let line = format_args!(
        "hv: [{:>5}.{:06} s] {:>7} us  {}\n",
        since_start / 1_000_000,
        since_start % 1_000_000,
        took,
        args
    );
    if MMU_ON.load(Ordering::Relaxed) {
        console::print(line);
    } else {
        console::print_unlocked(line);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::print_unlocked(format_args!("\nhv: PANIC: {info}\n"));
    exit(ExitStatus::Failure)
}

fn read_features() -> CpuFeatures {
    let mut features = CpuFeatures {
        id_aa64pfr0: read_sysreg!("id_aa64pfr0_el1"),
        id_aa64pfr1: read_sysreg!("id_aa64pfr1_el1"),
        id_aa64pfr2: read_sysreg!("s3_0_c0_c4_2"), // ID_AA64PFR2_EL1
        id_aa64mmfr0: read_sysreg!("id_aa64mmfr0_el1"),
        id_aa64mmfr1: read_sysreg!("id_aa64mmfr1_el1"),
        id_aa64mmfr2: read_sysreg!("id_aa64mmfr2_el1"),
        id_aa64mmfr3: read_sysreg!("s3_0_c0_c7_3"),
        id_aa64mmfr4: read_sysreg!("s3_0_c0_c7_4"),
        id_aa64dfr0: read_sysreg!("id_aa64dfr0_el1"),
        id_aa64dfr1: read_sysreg!("s3_0_c0_c5_1"), // ID_AA64DFR1_EL1
        id_aa64isar2: read_sysreg!("s3_0_c0_c6_2"),
        id_aa64smfr0: 0,
    };
    if features.has_sme() {
        features.id_aa64smfr0 = read_sysreg!("s3_0_c0_c4_5"); // ID_AA64SMFR0_EL1
    }
    features
}

fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

/// The boot CPU's Rust entry: x0 from the loader (the device tree), the
/// counter at entry, and CurrentEL.
extern "C" fn primary_main(dtb: u64, entry_counter: u64, current_el: u64) -> ! {
    BOOT_COUNTER.store(entry_counter, Ordering::Relaxed);
    LAST_PHASE.store(entry_counter, Ordering::Relaxed);
    // Vectors first, so that even a fault while reading the device tree
    // ends in hv's exception handler rather than at an unknown address
    // (only at EL2: the EL2 registers are UNDEFINED below it, and the
    // missing EL2 is reported once the console is known).
    if (current_el >> 2) & 3 == 2 {
        write_sysreg!("vbar_el2", &raw const boot::hv_vectors as u64);
        cpu::isb();
    }
    // Without a usable device tree there is no console to say so, and no
    // way to know how to power off: this CPU stops (the driver's timeout
    // ends QEMU).
    if dtb == 0 || !dtb.is_multiple_of(8) {
        exit(ExitStatus::Failure);
    }
    // SAFETY: the boot protocol puts a device tree at x0, in memory; the
    // header is 40 bytes.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    let total = match fdt_check::total_size(header) {
        Ok(total) if total <= MAX_DTB_SIZE => total,
        _ => exit(ExitStatus::Failure),
    };
    // SAFETY: `total` bytes at x0, bounded by the protocol's 2 MiB limit.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, total) };
    // The `fdt` crate panics on some malformed trees: check first.
    if fdt_check::check(blob).is_err() {
        exit(ExitStatus::Failure);
    }
    let fdt = match fdt::Fdt::new(blob) {
        Ok(fdt) => fdt,
        Err(_) => exit(ExitStatus::Failure),
    };
    match platform::find_console(&fdt) {
        Ok((uart, _)) => console::init(uart.base),
        Err(_) => exit(ExitStatus::Failure),
    }
    let options = match Options::from_fdt(&fdt) {
        Ok(options) => options,
        Err(bad) => {
            SEMIHOSTING_EXIT.store(bad.semihosting_exit, Ordering::Relaxed);
            fail(format_args!("{bad}"))
        }
    };
    SEMIHOSTING_EXIT.store(options.semihosting_exit, Ordering::Relaxed);
    phase(format_args!(
        "hv entered at EL{} (image at {:#x}, device tree at {dtb:#x})",
        (current_el >> 2) & 3,
        &raw const boot::__image_start as u64
    ));
    let platform = match Platform::discover(&fdt) {
        Ok(p) => p,
        Err(e) => fail(format_args!("{e}")),
    };
    if platform.psci == Conduit::Smc {
        PSCI_SMC.store(1, Ordering::Relaxed);
    }
    if (current_el >> 2) & 3 != 2 {
        fail(format_args!(
            "hv must be entered at EL2 but was entered at EL{}; boot it with virtualization enabled",
            (current_el >> 2) & 3
        ));
    }
    if platform.psci == Conduit::Hvc {
        fail(format_args!(
            "the device tree says PSCI is reached by HVC, which cannot reach firmware from EL2"
        ));
    }
    // Before any secondary starts: a vCPU's CPU_OFF settles only through the
    // firmware's AFFINITY_INFO (`HostPsci::is_physically_off`).
    match psci::firmware_is_usable(smccc::psci::version::<smccc::Smc>(), || {
        smccc::psci::psci_features::<smccc::Smc>(smccc::psci::PSCI_AFFINITY_INFO_64)
    }) {
        Ok(version) => FIRMWARE_PSCI_1_0.store(version.major >= 1, Ordering::Relaxed),
        Err(e) => fail(format_args!("{e}")),
    }
    let features = read_features();
    if !features.has_e2h0() {
        fail(format_args!(
            "this CPU has no FEAT_E2H0 (ID_AA64MMFR4_EL1.E2H0 is negative): HCR_EL2.E2H is RES1, and hv runs only with E2H = 0"
        ));
    }
    if !features.has_gic_sysregs() {
        fail(format_args!(
            "this CPU has no GICv3 system-register interface (ID_AA64PFR0_EL1.GIC is 0)"
        ));
    }
    let mpidr = read_sysreg!("mpidr_el1");
    let Some(boot_cpu) = platform.cpu_index(mpidr) else {
        fail(format_args!(
            "the boot CPU (MPIDR {mpidr:#x}) is not under /cpus"
        ));
    };
    let memory_mib: u64 = platform.memory.iter().map(|r| r.size >> 20).sum();
    phase(format_args!(
        "device tree: {} CPUs, {} MiB in {} region(s), GICv3 at {:#x}, PL011 at {:#x}, PSCI via SMC, timer PPIs {}/{}/{}",
        platform.cpus.len(),
        memory_mib,
        platform.memory.len(),
        platform.gic_distributor.base,
        platform.uart.base,
        platform.timer.physical,
        platform.timer.virtual_,
        platform.timer.hypervisor,
    ));

    if !platform.reserved.is_empty() {
        phase(format_args!(
            "device tree: {} firmware reservation(s) kept from the guest ({} no-map, left unmapped by hv)",
            platform.reserved.len(),
            platform.reserved.iter().filter(|r| r.no_map).count()
        ));
    }
    let Some(pa_bits) = pagetable::pa_range_bits(features.pa_range()) else {
        fail(format_args!("reserved PARange {:#x}", features.pa_range()));
    };
    phase(format_args!(
        "cpu: MIDR {:#x}, {pa_bits}-bit PA, nested virtualization {:?}, SVE {}, SME {}, FGT {}",
        read_sysreg!("midr_el1"),
        features.nested_virtualization(),
        features.has_sve(),
        features.has_sme(),
        features.has_fgt()
    ));
    if features.has_ebep() {
        // Documented at sysregs::CpuFeatures::has_ebep.
        println!("hv: note: this CPU has FEAT_EBEP; exceptions hv injects do not model PSTATE.PM (left 0)");
    }
    let (ttbr, tcr) = enable_stage1(&platform, pa_bits);
    phase(format_args!(
        "stage 1 on: identity map, hv code read-only, everything else never executable (W^X), MMU and caches enabled"
    ));
    // The boot CPU's firmware mitigations for the guest's SMCCC (after the
    // MMU: `Once` needs atomics on Normal memory); each other CPU asks its
    // own at bring-up (`configure_el2`).
    let firmware_arch = *FIRMWARE_ARCH[boot_cpu]
        .call_once(|| smccc_arch::query::<smccc::Smc>(FIRMWARE_PSCI_1_0.load(Ordering::Relaxed)));
    println!("hv: firmware's SMCCC Arm Architecture Service on cpu {boot_cpu}: {firmware_arch} (what the guest's SMCCC_ARCH_FEATURES is told)");

    // SAFETY: the heap is hv's own .bss array, handed to the allocator once.
    unsafe { ALLOCATOR.lock().init(&raw mut HEAP as usize, HEAP_SIZE) };
    write_sysreg!("vbar_el2", &raw const boot::hv_vectors as u64);
    cpu::isb();
    phase(format_args!(
        "heap ({} MiB) and exception vectors ready",
        HEAP_SIZE >> 20
    ));
    match options.deliberate_failure {
        Some(DeliberateFailure::Panic) => panic!("hv.fail=panic asked for a panic"),
        Some(DeliberateFailure::Fault) => {
            // Past the end of the 48-bit space, which is never mapped.
            let unmapped = 0xffff_0000_0000_0000usize as *const u64;
            // SAFETY: not safe by design: this access must fault, and the
            // exception vectors end the run before it could return.
            let value = unsafe { core::ptr::read_volatile(unmapped) };
            fail(format_args!(
                "hv.fail=fault: the load returned {value:#x} instead of faulting"
            ));
        }
        Some(DeliberateFailure::WriteCode) => {
            let code = primary_main as *const () as *mut u32;
            // SAFETY: not safe by design: hv's code is mapped read-only, so
            // this store must fault before it changes anything.
            unsafe { core::ptr::write_volatile(code, 0) };
            fail(format_args!("hv.fail=write-code: hv's code is writable"));
        }
        None => {}
    }
    if let Some(test) = options.self_test {
        let device_tree = Region {
            base: dtb,
            size: total as u64,
        };
        selftest::run(&platform, test, ttbr, tcr, device_tree);
    }

    if let Some(demo) = options.nested {
        let features = if options.without_wfxt {
            features.without_wfxt()
        } else {
            features
        };
        nested::run(
            &platform,
            &fdt,
            &features,
            demo,
            Region {
                base: dtb,
                size: total as u64,
            },
            ttbr,
            tcr,
        );
    }

    let gic = match options.gic {
        GicMode::Passthrough => None,
        GicMode::Virtual => {
            let maintenance = platform
                .gic_maintenance
                .unwrap_or(crate::vgic::DEFAULT_MAINTENANCE_INTID);
            // Only the broken twins of the SPI view probe read the SPIs
            // other vCPUs hold in their physical state, or forward a
            // GICD_ISPENDR<n> write of them.
            let spi_views = options.probe != Some(platform::Probe::SpiViewNoView);
            match gic::Gic::init(
                &platform,
                maintenance,
                options.list_register_limit,
                spi_views,
            ) {
                Ok(gic) if options.probe == Some(platform::Probe::SpiViewNoSetPending) => {
                    Some(gic.forwarding_every_set_pending())
                }
                Ok(gic) => Some(gic),
                Err(e) => fail(format_args!("GIC: {e}")),
            }
        }
    };
    match &gic {
        Some(gic) => phase(format_args!(
            "GIC: virtual CPU interface for the guest, {} list registers, maintenance INTID {}",
            gic.list_registers(),
            platform
                .gic_maintenance
                .unwrap_or(crate::vgic::DEFAULT_MAINTENANCE_INTID)
        )),
        None => phase(format_args!("GIC: passed through to the guest")),
    }
    let hv = load_guest(
        &fdt,
        platform,
        gic,
        features,
        pa_bits,
        boot_cpu,
        (ttbr, tcr),
        options.probe,
    );
    enter_guest_on_this_cpu(
        hv,
        boot_cpu,
        (&raw const BOOT_STACK) as u64 + BOOT_STACK_SIZE as u64,
    )
}

/// Builds hv's stage-1 identity map (memory, hv's image, the console and
/// GIC) and turns the MMU and caches on. Returns TTBR0_EL2 and TCR_EL2.
fn enable_stage1(platform: &Platform, pa_bits: u8) -> (u64, u64) {
    // SAFETY: called once, on the boot CPU, before anything else uses the
    // stage-1 pool; the tables live for the rest of the run.
    let pool: &'static mut [Table] = unsafe { &mut *(&raw mut STAGE1) };
    let input_bits = pa_bits.min(48);
    let start = pagetable::stage1_start_level(pa_bits);
    let Some(mut tree) = TableTree::new(pool, Regime::El2Stage1, start, input_bits) else {
        fail(format_args!("no stage-1 geometry for a {pa_bits}-bit PA"));
    };
    let image_start = align_down(&raw const boot::__image_start as u64, 4096);
    let image_end = align_up(&raw const boot::__image_end as u64, 4096);
    let image = Region {
        base: image_start,
        size: image_end - image_start,
    };
    if !platform
        .memory
        .iter()
        .any(|m| m.base <= image.base && image.end() <= m.end())
    {
        fail(format_args!("hv's image {image_start:#x}..{image_end:#x} is not inside the memory the device tree lists"));
    }
    let mut map = |region: Region, kind| {
        let base = align_down(region.base, 4096);
        let size = align_up(region.end(), 4096) - base;
        if let Err(e) = tree.map(base, base, size, kind) {
            fail(format_args!("stage 1: {e}"));
        }
    };
    // RAM read/write and never executable, except hv's own image: code
    // read-only and executable, constants (and the relocated tables,
    // finished before the MMU is on) read-only, data read/write. The
    // firmware's `no-map` reservations are not mapped at all.
    let Ok(mappable) = platform.hv_mappable_memory() else {
        fail(format_args!(
            "RAM without the firmware's no-map reservations comes in more than {} pieces",
            platform::MAX_GUEST_REGIONS
        ));
    };
    if platform
        .reserved
        .iter()
        .any(|r| r.no_map && r.region.overlaps(&image))
    {
        fail(format_args!(
            "hv's image {image_start:#x}..{image_end:#x} overlaps a no-map reserved-memory region"
        ));
    }
    for region in &mappable {
        for (start, end) in [
            (region.base, region.end().min(image.base)),
            (region.base.max(image.end()), region.end()),
        ] {
            if end > start {
                map(
                    Region {
                        base: start,
                        size: end - start,
                    },
                    MemoryKind::Normal,
                );
            }
        }
    }
    let text_end = &raw const boot::__text_end as u64;
    let data_start = &raw const boot::__data_start as u64;
    map(
        Region {
            base: image.base,
            size: text_end - image.base,
        },
        MemoryKind::Code,
    );
    map(
        Region {
            base: text_end,
            size: data_start - text_end,
        },
        MemoryKind::ReadOnly,
    );
    map(
        Region {
            base: data_start,
            size: image.end() - data_start,
        },
        MemoryKind::Normal,
    );
    map(platform.uart, MemoryKind::Device);
    map(platform.gic_distributor, MemoryKind::Device);
    for region in &platform.gic_redistributors {
        map(*region, MemoryKind::Device);
    }
    let ttbr = tree.root_address();
    let tcr = pagetable::tcr_el2(pa_bits);
    // The tables and everything else written so far went to memory with the
    // data cache off: drop any stale lines before the cache is used.
    cpu::invalidate_dcache(image.base, image.size);
    write_sysreg!("mair_el2", MAIR_EL2);
    write_sysreg!("tcr_el2", tcr);
    write_sysreg!("ttbr0_el2", ttbr);
    cpu::isb();
    // SAFETY: invalidates this CPU's EL2 TLB before the MMU is enabled.
    unsafe { core::arch::asm!("tlbi alle2", "dsb nsh", "isb", options(nostack)) };
    write_sysreg!("sctlr_el2", sysregs::SCTLR_EL2_MMU_ON);
    cpu::isb();
    cpu::invalidate_icache();
    MMU_ON.store(true, Ordering::Release);
    (ttbr, tcr)
}

/// The console's reference clock, measured from the divisors firmware
/// left: the guest's fixed clock when the host's is a controller.
fn console_clock_hz(fdt: &fdt::Fdt<'_>, platform: &Platform) -> Option<u32> {
    let console_baud = platform::pl011::console_baud(
        fdt.find_node(platform.uart_path.as_str())
            .and_then(|n| n.property("current-speed"))
            .and_then(|p| p.as_usize())
            .and_then(|b| u32::try_from(b).ok()),
        fdt.find_node("/chosen")
            .and_then(|n| n.property("stdout-path"))
            .and_then(|p| p.as_str()),
    );
    platform::pl011::reference_clock_hz(
        mmio::read(platform.uart.base + platform::pl011::UARTIBRD, 4),
        mmio::read(platform.uart.base + platform::pl011::UARTFBRD, 4),
        console_baud,
    )
}

/// The guest bundle hv was given as its initrd (checked to lie in RAM)
/// and where it is; a missing or malformed one ends the run with one
/// line.
fn guest_bundle(platform: &Platform) -> (Region, Bundle<'static>) {
    let Some(bundle_region) = platform.initrd else {
        fail(format_args!(
            "no guest: hv expects an Umbra guest bundle as its initrd (see `cargo xtask run`)"
        ));
    };
    if !platform
        .memory
        .iter()
        .any(|m| m.base <= bundle_region.base && bundle_region.end() <= m.end())
    {
        fail(format_args!(
            "the initrd {:#x}+{:#x} is not inside memory",
            bundle_region.base, bundle_region.size
        ));
    }
    // SAFETY: the region was checked to lie in RAM, which is mapped; nothing
    // of hv's writes it (the guest's copies and the nested arena avoid
    // it), so it may be borrowed for the rest of the run.
    let bytes = unsafe {
        core::slice::from_raw_parts(bundle_region.base as *const u8, bundle_region.size as usize)
    };
    match Bundle::parse(bytes) {
        Ok(b) => (bundle_region, b),
        Err(e) => fail(format_args!("{e}")),
    }
}

/// Unpacks the guest bundle into guest memory, writes the guest's device
/// tree, and builds its stage 2.
fn load_guest(
    fdt: &fdt::Fdt<'_>,
    platform: Platform,
    gic: Option<gic::Gic>,
    features: CpuFeatures,
    pa_bits: u8,
    boot_cpu: usize,
    (ttbr, tcr): (u64, u64),
    probe: Option<platform::Probe>,
) -> &'static Hv {
    let (bundle_region, mut bundle) = guest_bundle(&platform);
    // hv's own EL1 probe instead of the bundle's kernel.
    match probe {
        Some(platform::Probe::WalkAbort) => bundle.kernel = walk_abort_probe::image(),
        Some(platform::Probe::GicActive) => bundle.kernel = gic_active_probe::image(),
        Some(
            platform::Probe::SpiView
            | platform::Probe::SpiViewNoView
            | platform::Probe::SpiViewNoSetPending,
        ) => bundle.kernel = spi_view_probe::image(),
        None => {}
    }
    let image = match ImageHeader::parse(bundle.kernel) {
        Ok(i) => i,
        Err(e) => fail(format_args!("{e}")),
    };

    // Guest memory: all RAM except hv's own 2 MiB-aligned image and what
    // the firmware reserved.
    let hv_start = align_down(&raw const boot::__image_start as u64, 2 << 20);
    let hv_end = align_up(&raw const boot::__image_end as u64, 2 << 20);
    let hv_image = Region {
        base: hv_start,
        size: hv_end - hv_start,
    };
    let Ok(guest_memory) = platform.guest_memory(hv_image) else {
        fail(format_args!(
            "guest memory (RAM without hv and the firmware's reservations) comes in more than {} pieces",
            platform::MAX_GUEST_REGIONS
        ));
    };
    let Some(main_region) = guest_memory.iter().copied().max_by_key(|r| r.size) else {
        fail(format_args!(
            "no memory left for the guest after hv's own {:#x}..{:#x}",
            hv_start, hv_end
        ));
    };

    let console_clock_hz = console_clock_hz(fdt, &platform);
    let dt_config = |initrd| GuestConfig {
        memory: &guest_memory,
        bootargs: bundle.cmdline,
        initrd,
        psci: Conduit::Hvc,
        console_clock_hz,
        cpus: GuestCpus::Host,
    };
    let placeholder = (!bundle.initrd.is_empty()).then_some(Region {
        base: 0,
        size: bundle.initrd.len() as u64,
    });
    let dtb_size = match guest_dt::build(fdt, &platform, &dt_config(placeholder)) {
        Ok(blob) => blob.len() as u64,
        Err(e) => fail(format_args!("{e}")),
    };
    let layout = match GuestLayout::plan(
        main_region,
        bundle_region,
        image,
        bundle.initrd.len() as u64,
        dtb_size,
    ) {
        Ok(l) => l,
        Err(e) => fail(format_args!("{e}")),
    };
    let dtb = match guest_dt::build(fdt, &platform, &dt_config(layout.initrd)) {
        Ok(blob) => blob,
        Err(e) => fail(format_args!("{e}")),
    };
    phase(format_args!(
        "guest bundle: kernel {} KiB, initrd {} KiB, device tree {} bytes, cmdline \"{}\"",
        bundle.kernel.len() >> 10,
        bundle.initrd.len() >> 10,
        dtb.len(),
        bundle.cmdline
    ));

    // Copy (memmove: the host device tree may lie under a destination, but
    // the bundle never does).
    let copy = |to: Region, data: &[u8]| {
        // SAFETY: `to` lies in guest memory (planned inside `main_region`),
        // which is mapped and not hv's; `data` is readable and at least
        // `to.size` long only up to data.len(), which is what is copied.
        unsafe { core::ptr::copy(data.as_ptr(), to.base as *mut u8, data.len()) };
        cpu::clean_invalidate_dcache(to.base, to.size.max(data.len() as u64));
    };
    // The kernel's bss (image_size beyond the file) must read as zero.
    // SAFETY: the whole `layout.kernel` region is guest memory.
    unsafe {
        core::ptr::write_bytes(
            (layout.kernel.base + bundle.kernel.len() as u64) as *mut u8,
            0,
            (layout.kernel.size - bundle.kernel.len() as u64) as usize,
        )
    };
    copy(layout.kernel, bundle.kernel);
    if let Some(initrd) = layout.initrd {
        copy(initrd, bundle.initrd);
    }
    copy(layout.dtb, &dtb);
    cpu::invalidate_icache();
    phase(format_args!(
        "guest images placed: kernel at {:#x}, initrd at {:#x}, device tree at {:#x}",
        layout.kernel.base,
        layout.initrd.map_or(0, |r| r.base),
        layout.dtb.base
    ));

    let (ipa_bits, start_level) = pagetable::stage2_geometry(pa_bits);
    let pool: &'static mut [Table] =
        Box::leak(vec![Table::EMPTY; STAGE2_TABLES].into_boxed_slice());
    let Some(mut stage2) = TableTree::new(pool, Regime::Stage2, start_level, ipa_bits) else {
        fail(format_args!("no stage-2 geometry for a {pa_bits}-bit PA"));
    };
    let mut map = |region: Region, kind| {
        let base = align_down(region.base, 4096);
        let size = align_up(region.end(), 4096) - base;
        if let Err(e) = stage2.map(base, base, size, kind) {
            fail(format_args!("stage 2: {e}"));
        }
    };
    for region in &guest_memory {
        map(*region, MemoryKind::Normal);
    }
    // A passed-through GIC is mapped; a virtual one and the UART are not,
    // so their accesses trap and are emulated (see `emulate_mmio`).
    if gic.is_none() {
        map(platform.gic_distributor, MemoryKind::Device);
        for region in &platform.gic_redistributors {
            map(*region, MemoryKind::Device);
        }
    }
    let tables = stage2.tables();
    cpu::clean_invalidate_dcache(
        tables.as_ptr() as u64,
        core::mem::size_of_val(tables) as u64,
    );
    let vttbr = GUEST_VMID << 48 | stage2.root_address();
    let vtcr = pagetable::vtcr_el2(pa_bits, ipa_bits, start_level);
    phase(format_args!(
        "stage 2: {} MiB of guest memory, {}-bit IPA from level {}, {} tables",
        guest_memory.iter().map(|r| r.size >> 20).sum::<u64>(),
        ipa_bits,
        start_level,
        stage2.tables_used()
    ));

    let mut secondary_boot = [SecondaryBoot::default(); MAX_CPUS];
    for (index, record) in secondary_boot.iter_mut().enumerate() {
        *record = SecondaryBoot {
            stack_top: (&raw const STACKS) as u64 + ((index + 1) * STACK_SIZE) as u64,
            mair: MAIR_EL2,
            tcr,
            ttbr,
            sctlr: sysregs::SCTLR_EL2_MMU_ON,
            index: index as u64,
        };
    }
    let hv = HV.call_once(|| Hv {
        platform,
        gic,
        features,
        guest_memory,
        vttbr,
        vtcr,
        secondary_boot,
    });
    let records = &hv.secondary_boot;
    cpu::clean_invalidate_dcache(
        records.as_ptr() as u64,
        core::mem::size_of_val(records) as u64,
    );

    let frame = GuestFrame {
        x: {
            let mut x = [0; 31];
            x[0] = layout.dtb.base;
            x
        },
        elr: layout.kernel.base,
        spsr: sysregs::GUEST_ENTRY_PSTATE,
        _pad: 0,
    };
    // SAFETY: slot `boot_cpu` belongs to this CPU, which is not in a guest.
    unsafe { *SLOTS.frames[boot_cpu].get() = frame };
    phase(format_args!(
        "entering the guest on cpu {boot_cpu} at {:#x} (EL1h, MMU off, x0 = device tree); {}",
        frame.elr,
        if hv.gic.is_some() {
            "interrupts reach it through list registers"
        } else {
            "the guest owns the GIC and timers from here"
        }
    ));
    hv
}

/// Programs this CPU's EL2 for running the guest.
fn configure_el2(hv: &Hv, vcpu: usize) {
    let f = &hv.features;
    // The mitigations this PE's firmware offers, for the guest's
    // SMCCC_ARCH_FEATURES (vCPU `vcpu` runs only on this PE).
    FIRMWARE_ARCH[vcpu]
        .call_once(|| smccc_arch::query::<smccc::Smc>(FIRMWARE_PSCI_1_0.load(Ordering::Relaxed)));
    write_sysreg!("hcr_el2", sysregs::hcr_el2(f, hv.gic.is_some()));
    configure_el2_traps(f);
    write_sysreg!("s3_4_c12_c9_5", sysregs::ICC_SRE_EL2);
    cpu::isb();
    match &hv.gic {
        Some(gic) => {
            if let Err(e) = gic.init_cpu(vcpu) {
                fail(format_args!("GIC on cpu {vcpu}: {e}"));
            }
        }
        None => write_sysreg!("s3_4_c12_c11_0", 0), // ICH_HCR_EL2: no virtual interface
    }
    write_sysreg!("vtcr_el2", hv.vtcr);
    write_sysreg!("vttbr_el2", hv.vttbr);
    write_sysreg!("tpidr_el2", vcpu as u64);
    cpu::isb();
    // SAFETY: drops this CPU's stale stage-1+2 TLB entries for the VMID.
    unsafe { core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

/// The EL2 controls every guest (a Linux guest, or the nested demo's L1)
/// runs under: traps, timers, identification, EL1's reset SCTLR, the
/// fine-grained traps and extension controls.
fn configure_el2_traps(f: &CpuFeatures) {
    write_sysreg!("cptr_el2", sysregs::cptr_el2(f));
    write_sysreg!("mdcr_el2", sysregs::mdcr_el2(f, read_sysreg!("pmcr_el0")));
    write_sysreg!("cnthctl_el2", sysregs::CNTHCTL_EL2);
    write_sysreg!("cntvoff_el2", 0);
    write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
    write_sysreg!("vmpidr_el2", read_sysreg!("mpidr_el1"));
    write_sysreg!("sctlr_el1", sysregs::SCTLR_EL1_MMU_OFF);
    if f.has_fgt() {
        let untrapped = sysregs::hfgxtr_el2(f);
        write_sysreg!("s3_4_c1_c1_4", untrapped); // HFGRTR_EL2
        write_sysreg!("s3_4_c1_c1_5", untrapped); // HFGWTR_EL2
        write_sysreg!("s3_4_c1_c1_6", sysregs::hfgitr_el2(f)); // HFGITR_EL2
        write_sysreg!("s3_4_c3_c1_4", sysregs::hdfgrtr_el2(f)); // HDFGRTR_EL2
        write_sysreg!("s3_4_c3_c1_5", sysregs::hdfgwtr_el2(f)); // HDFGWTR_EL2
    }
    if f.has_hafgrtr() {
        write_sysreg!("s3_4_c3_c1_6", 0); // HAFGRTR_EL2: AMU counters untrapped
    }
    if f.has_fgt2() {
        // Their reset values are UNKNOWN: a defined value (sysregs).
        write_sysreg!("s3_4_c3_c1_2", sysregs::FGT2_UNTRAPPED); // HFGRTR2_EL2
        write_sysreg!("s3_4_c3_c1_3", sysregs::FGT2_UNTRAPPED); // HFGWTR2_EL2
        write_sysreg!("s3_4_c3_c1_7", sysregs::FGT2_UNTRAPPED); // HFGITR2_EL2
        write_sysreg!("s3_4_c3_c1_0", sysregs::hdfgrtr2_el2(f)); // HDFGRTR2_EL2
        write_sysreg!("s3_4_c3_c1_1", sysregs::hdfgwtr2_el2(f)); // HDFGWTR2_EL2
    }
    if f.has_hcx() {
        write_sysreg!("s3_4_c1_c2_2", sysregs::hcrx_el2(f)); // HCRX_EL2
    }
    if f.has_sve() {
        write_sysreg!("s3_4_c1_c2_0", sysregs::ZCR_EL2_LONGEST); // ZCR_EL2
    }
    if f.has_sme() {
        write_sysreg!("s3_4_c1_c2_6", sysregs::smcr_el2(f)); // SMCR_EL2
    }
    cpu::isb();
}

fn enter_guest_on_this_cpu(hv: &Hv, vcpu: usize, stack_top: u64) -> ! {
    configure_el2(hv, vcpu);
    POWER.set_on(vcpu);
    if let Some(gic) = &hv.gic {
        // SGIs sent while this vCPU was off.
        gic.fill_list_registers(vcpu);
    }
    // SAFETY: the frame slot of this vCPU was filled for this entry; the
    // stack top is this CPU's own, and nothing on the current stack is
    // needed after the jump.
    unsafe { boot::hv_enter_guest(SLOTS.frames[vcpu].get(), stack_top) }
}

/// A secondary CPU's Rust entry, MMU already on (boot.rs).
extern "C" fn secondary_main(index: u64, entry_counter: u64) -> ! {
    write_sysreg!("vbar_el2", &raw const boot::hv_vectors as u64);
    cpu::isb();
    if selftest::active() {
        selftest::service_main();
    }
    nested::secondary(index as usize);
    let Some(hv) = HV.get() else {
        fail(format_args!("secondary CPU started before hv was ready"));
    };
    let vcpu = index as usize;
    let frame = GuestFrame {
        x: {
            let mut x = [0; 31];
            x[0] = SLOTS.context[vcpu].load(Ordering::Acquire);
            x
        },
        elr: SLOTS.entry[vcpu].load(Ordering::Acquire),
        spsr: sysregs::GUEST_ENTRY_PSTATE,
        _pad: 0,
    };
    // SAFETY: slot `vcpu` belongs to this CPU, which is not in a guest.
    unsafe { *SLOTS.frames[vcpu].get() = frame };
    println!(
        "hv: cpu {vcpu} (MPIDR {:#x}) up in {} us, entering the guest at {:#x}",
        read_sysreg!("mpidr_el1") & 0xff_00ff_ffff,
        cpu::micros(entry_counter, cpu::counter()),
        frame.elr
    );
    enter_guest_on_this_cpu(hv, vcpu, hv.secondary_boot[vcpu].stack_top)
}

/// An exception taken from hv itself: a bug in hv. Report and stop.
extern "C" fn hv_exception(frame: &GuestFrame, kind: u64) -> ! {
    let esr = read_sysreg!("esr_el2");
    let far = read_sysreg!("far_el2");
    console::print_unlocked(format_args!(
        "\nhv: PANIC: exception in hv (vector {kind}): ESR_EL2 {esr:#x} ({:?}) ELR_EL2 {:#x} FAR_EL2 {far:#x}\n",
        ExceptionClass::from_esr(esr),
        frame.elr
    ));
    for (i, pair) in frame.x.chunks(4).enumerate() {
        console::print_unlocked(format_args!("hv:   x{:<2} {:x?}\n", i * 4, pair));
    }
    exit(ExitStatus::Failure)
}

struct HostPsci<'a>(&'a Hv);

impl PsciHost for HostPsci<'_> {
    fn vcpu_index(&self, mpidr: u64) -> Option<usize> {
        self.0.platform.cpu_index(mpidr)
    }

    fn entry_is_valid(&self, entry: u64) -> bool {
        self.0.guest_memory.iter().any(|r| r.contains(entry))
    }

    fn power_on(&self, vcpu: usize, entry: u64, context: u64) -> Result<(), i64> {
        SLOTS.entry[vcpu].store(entry, Ordering::Release);
        SLOTS.context[vcpu].store(context, Ordering::Release);
        cpu::dsb_ish();
        let record = &self.0.secondary_boot[vcpu] as *const SecondaryBoot as u64;
        let entry_point = boot::hv_secondary_entry as *const () as u64;
        // `psci` calls this only for a vCPU whose physical CPU the
        // firmware's AFFINITY_INFO reported OFF (or that never ran), and
        // PSCI has a CPU_ON for an OFF core accepted: no retry. An
        // ALREADY_ON or ON_PENDING here (firmware contradicting itself)
        // reaches the guest as INTERNAL_FAILURE (`psci::cpu_on`).
        smccc::psci::cpu_on::<smccc::Smc>(self.0.platform.cpus[vcpu], entry_point, record)
            .map_err(i64::from)
    }

    fn is_physically_off(&self, vcpu: usize) -> bool {
        firmware_reports_off(self.0.platform.cpus[vcpu])
    }

    fn trusted_os(&self) -> psci::FirmwareTrustedOs {
        firmware_trusted_os()
    }
}

/// The firmware's AFFINITY_INFO for the CPU with MPIDR `mpidr` at its own
/// level (Aff0). TF-A and QEMU report OFF once the CPU has finished its
/// CPU_OFF, from the same state their CPU_ON checks.
fn firmware_reports_off(mpidr: u64) -> bool {
    matches!(
        smccc::psci::affinity_info::<smccc::Smc>(mpidr, smccc::psci::LowestAffinityLevel::All),
        Ok(smccc::psci::AffinityState::Off)
    )
}

/// The firmware's MIGRATE_INFO_TYPE, and MIGRATE_INFO_UP_CPU (SMC64)
/// only for a uniprocessor Trusted OS, where DEN0022 gives it a meaning.
fn firmware_trusted_os() -> psci::FirmwareTrustedOs {
    use smccc::psci::MigrateType;
    match smccc::psci::migrate_info_type::<smccc::Smc>() {
        Ok(MigrateType::MigrateCapable | MigrateType::NotMigrateCapable) => {
            psci::FirmwareTrustedOs::Uniprocessor {
                resident_mpidr: smccc::psci::migrate_info_up_cpu::<smccc::Smc>(),
            }
        }
        Ok(MigrateType::MigrationNotRequired) | Err(_) => {
            psci::FirmwareTrustedOs::NoMigrationNeeded
        }
    }
}

/// This CPU's firmware CPU_OFF for vCPU `vcpu` (`power`: its guest's power
/// states, in which it is `OffPending`), everything hv wrote on the way
/// complete first. Returns only when the firmware refused (DENIED: a
/// uniprocessor Trusted OS lives on this core, which MIGRATE_INFO_TYPE/
/// UP_CPU told the guest): the vCPU is ON again, and the value is the
/// guest's x0.
fn firmware_cpu_off(power: &VcpuPower, vcpu: usize) -> u64 {
    cpu::dsb_ish();
    let status = match smccc::psci::cpu_off::<smccc::Smc>() {
        Err(error) => i64::from(error),
        Ok(()) => fail(format_args!(
            "PSCI CPU_OFF for vCPU {vcpu} returned SUCCESS, and the CPU is still running"
        )),
    };
    match psci::cpu_off_returned(power, vcpu, status) {
        Ok(value) => value,
        Err(state) => fail(format_args!(
            "PSCI CPU_OFF for vCPU {vcpu} returned {status} after the firmware's AFFINITY_INFO had reported it off (vCPU {state:?})"
        )),
    }
}

/// A guest exit: `kind` is 0 for a synchronous exception, 1 IRQ, 2 FIQ,
/// 3 SError. Returns to resume the guest with `frame`.
extern "C" fn guest_exit(frame: &mut GuestFrame, kind: u64) {
    if shadow_selftest::in_l2() {
        shadow_selftest::leave_l2(frame, kind);
    }
    if nested::active() {
        return nested::guest_exit(frame, kind);
    }
    let vcpu = read_sysreg!("tpidr_el2") as usize;
    let Some(hv) = HV.get() else {
        fail(format_args!("guest exit before hv was ready"));
    };
    match (kind, &hv.gic) {
        (0, _) => handle_sync(hv, frame, vcpu),
        (1, Some(gic)) => gic.take_interrupts(vcpu),
        (3, _) => guest_crash(frame, "an SError (asynchronous external abort) reached hv"),
        _ => guest_crash(
            frame,
            "a physical FIQ, or an IRQ while the guest owns the GIC",
        ),
    }
    if let Some(gic) = &hv.gic {
        gic.fill_list_registers(vcpu);
    }
}

/// ICC_SGI1R_EL1 (op0=3, op1=0, C12, C11, op2 5).
fn is_sgi1r(access: &crate::exit::SysRegAccess) -> bool {
    (access.op0, access.op1, access.crn, access.crm) == (3, 0, 12, 11)
        && crate::vgic::sgi_write_sends(access.op2)
}

/// ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 (op2 6, 7): SGIs of a group or
/// Security state the guest's interrupts are not in
/// (`vgic::sgi_write_sends`).
fn is_sgi0r(access: &crate::exit::SysRegAccess) -> bool {
    (access.op0, access.op1, access.crn, access.crm) == (3, 0, 12, 11)
        && matches!(access.op2, 6 | 7)
}

fn handle_sync(hv: &Hv, frame: &mut GuestFrame, vcpu: usize) {
    let esr = read_sysreg!("esr_el2");
    match GuestExit::from_esr(esr) {
        GuestExit::Hvc { .. } | GuestExit::Smc { .. } => {
            if matches!(GuestExit::from_esr(esr), GuestExit::Smc { .. }) {
                // A trapped SMC returns to the SMC itself (HVC returns
                // after it).
                frame.elr += instruction_length(esr);
            }
            smccc_call(hv, frame, vcpu);
        }
        GuestExit::DataAbort => emulate_mmio(hv, frame, esr, vcpu),
        GuestExit::InstructionAbort => {
            let far = read_sysreg!("far_el2");
            let esr = if esr & ESR_S1PTW != 0 {
                walk_abort(hv, far, inject::WalkedFor::Fetch, frame.spsr)
            } else {
                if should_report() {
                    println!("hv: guest instruction fetch from unbacked address {far:#x}: injecting an external abort");
                }
                inject::external_instruction_abort_syndrome(frame.spsr)
            };
            inject(hv, frame, esr, Some(far));
        }
        // WFI/WFE are not trapped (HCR_EL2.TWI/TWE clear); should one trap,
        // completing it at once is a permitted spurious wake-up.
        GuestExit::Wfx { .. } => frame.elr += instruction_length(esr),
        GuestExit::SysReg(access) if !access.read && is_sgi1r(&access) && hv.gic.is_some() => {
            if let Some(gic) = &hv.gic {
                gic.send_sgi(vcpu, frame.reg(access.rt));
            }
            frame.elr += instruction_length(esr);
        }
        // Group-0 and other-Security-state SGIs are ignored, as a GIC with
        // two security states ignores them from the non-secure side.
        GuestExit::SysReg(access) if !access.read && is_sgi0r(&access) => {
            frame.elr += instruction_length(esr)
        }
        GuestExit::SysReg(access) => {
            if should_report() {
                println!(
                    "hv: guest {access} trapped at {:#x}: injecting UNDEFINED",
                    frame.elr
                );
            }
            inject(hv, frame, inject::undefined_syndrome(), None);
        }
        GuestExit::Unknown | GuestExit::Eret => {
            if should_report() {
                println!(
                    "hv: guest instruction trapped (ESR_EL2 {esr:#x}) at {:#x}: injecting UNDEFINED",
                    frame.elr
                );
            }
            inject(hv, frame, inject::undefined_syndrome(), None);
        }
        // A trap hv does not expect (a feature's trap hv left enabled):
        // the guest gets what a CPU without the feature gives, UNDEFINED,
        // rather than the whole machine stopping.
        GuestExit::Other(class) => {
            if should_report() {
                println!(
                    "hv: guest exception class {class:#x} trapped at {:#x} (ESR_EL2 {esr:#x}), which hv does not handle: injecting UNDEFINED",
                    frame.elr
                );
            }
            inject(hv, frame, inject::undefined_syndrome(), None);
        }
    }
}

/// An SMCCC call (HVC or trapped SMC): PSCI is the only service.
fn smccc_call(hv: &Hv, frame: &mut GuestFrame, vcpu: usize) {
    let function = frame.x[0] as u32;
    let args = [frame.x[1], frame.x[2], frame.x[3]];
    let firmware = FIRMWARE_ARCH[vcpu]
        .get()
        .copied()
        .unwrap_or(FirmwareArch::NONE);
    match smccc_arch::handle(function, args[0], &firmware) {
        Some(ArchOutcome::Return(value)) => {
            frame.x[0] = value;
            return;
        }
        // The same call on this PE's firmware (which reported it
        // implemented here); its w0, sign-extended, is the guest's.
        Some(ArchOutcome::Forward { function, argument }) => {
            let w0 = smccc::Smc::call32(function, [argument, 0, 0, 0, 0, 0, 0])[0];
            frame.x[0] = w0 as i32 as i64 as u64;
            return;
        }
        None => {}
    }
    match psci::handle(function, args, vcpu, &POWER, &HostPsci(hv)) {
        PsciOutcome::Return(value) => frame.x[0] = value,
        PsciOutcome::CpuOff => {
            if let Some(gic) = &hv.gic {
                gic.release_cpu(vcpu);
            }
            // The vCPU is OFF_PENDING: it becomes OFF for the guest once the
            // firmware reports this CPU off. If the firmware refuses, the
            // vCPU is ON again and the guest gets the status. Its vGIC
            // interface needs no re-init: the release left
            // the list registers empty and ICH_VMCR_EL2 (the guest's
            // own state) untouched, and the refill on the way back
            // (`guest_exit`) sets ICH_HCR_EL2.En again. Virtual interrupts
            // that sat in the list registers were dropped by the release
            // (their physical ones deactivated: a level-triggered one fires
            // again); a guest offlining a CPU has moved its interrupts away.
            frame.x[0] = firmware_cpu_off(&POWER, vcpu);
        }
        PsciOutcome::SystemOff => {
            println!(
                "hv: the guest called PSCI SYSTEM_OFF; powering off ({} ms after hv started)",
                cpu::micros(BOOT_COUNTER.load(Ordering::Relaxed), cpu::counter()) / 1000
            );
            exit(ExitStatus::GuestPoweredOff);
        }
        PsciOutcome::SystemReset => {
            println!(
                "hv: the guest called PSCI SYSTEM_RESET; ending the run with status {}",
                ExitStatus::GuestReset as u32
            );
            exit(ExitStatus::GuestReset);
        }
    }
}

/// Reports of guest faults are capped so that a guest that keeps faulting
/// cannot slow everything down by flooding the console through hv.
fn should_report() -> bool {
    const MAX_REPORTS: u32 = 20;
    let n = GUEST_FAULT_REPORTS.fetch_add(1, Ordering::Relaxed);
    if n == MAX_REPORTS {
        println!("hv: (further guest faults are injected without a report)");
    }
    n < MAX_REPORTS
}

/// The EL1 now in the hardware as an exception's target: the PSTATE
/// features of `features`, and the hardware SCTLR_EL1 and GCSCR_EL1.
fn hardware_el1_target(features: &CpuFeatures) -> TargetEl1 {
    TargetEl1 {
        features: EntryFeatures::from(features),
        sctlr: read_sysreg!("sctlr_el1"),
        // GCSCR_EL1 exists only with FEAT_GCS.
        gcscr: if features.has_gcs() {
            read_sysreg!("s3_0_c2_c5_0")
        } else {
            0
        },
    }
}

/// Takes a synchronous exception with syndrome `esr` (and `far`) to the
/// EL1 now in the hardware (`target`), from the guest state in `frame`.
fn inject_into_el1(frame: &mut GuestFrame, target: TargetEl1, esr: u64, far: Option<u64>) {
    let next = inject::take_sync_exception(
        &mut cpu::HardwareEl1,
        target,
        ReturnState {
            pc: frame.elr,
            pstate: frame.spsr,
        },
        esr,
        far,
    );
    frame.elr = next.pc;
    frame.spsr = next.pstate;
}

fn inject(hv: &Hv, frame: &mut GuestFrame, esr: u64, far: Option<u64>) {
    inject_into_el1(frame, hardware_el1_target(&hv.features), esr, far)
}

fn guest_crash(frame: &GuestFrame, why: &str) -> ! {
    console::print_unlocked(format_args!(
        "\nhv: guest crash: {why} (ESR_EL2 {:#x}, PC {:#x}, PSTATE {:#x})\n",
        read_sysreg!("esr_el2"),
        frame.elr,
        frame.spsr
    ));
    exit(ExitStatus::Failure)
}

/// ESR_EL2 ISS bits of a stage-2 abort.
const ESR_S1PTW: u64 = 1 << 7;
const ESR_CM: u64 = 1 << 8;
const ESR_WNR: u64 = 1 << 6;

/// The ESR_EL1 for the guest's stage-1 walk of `va` that read a
/// descriptor at an IPA with nothing behind it (a stage-2 fault with
/// S1PTW; HPFAR_EL2 names the descriptor's page): the external abort on
/// the walk at the level `s1walk` finds by walking the guest's tables. If
/// its walk does not reach that page (the guest changed its tables since,
/// or a configuration `s1walk` does not model), the level is unknown and
/// the guest gets the plain synchronous external abort (FSC 0x10), with a
/// report.
fn walk_abort(hv: &Hv, va: u64, walked_for: inject::WalkedFor, pstate: u64) -> u64 {
    let fault_page = crate::esr::hpfar_ipa_page(read_sysreg!("hpfar_el2"));
    let regs = s1walk::Stage1Regs {
        sctlr: read_sysreg!("sctlr_el1"),
        tcr: read_sysreg!("tcr_el1"),
        tcr2: if hv.features.has_tcr2() {
            read_sysreg!("s3_0_c2_c0_3") // TCR2_EL1
        } else {
            0
        },
        ttbr0: read_sysreg!("ttbr0_el1"),
        ttbr1: read_sysreg!("ttbr1_el1"),
        // The PE's own (hv runs at EL2: no ID register traps apply): the
        // hardware walk being modelled bounds TxSZ by it.
        id_aa64mmfr2: read_sysreg!("id_aa64mmfr2_el1"),
    };
    let guest_word = |ipa: u64| {
        let inside = ipa.is_multiple_of(8)
            && hv.guest_memory.iter().any(|r| {
                r.contains(ipa) && ipa.checked_add(7).is_some_and(|last| r.contains(last))
            });
        if !inside {
            return None;
        }
        // hv's alias of guest RAM is Normal Write-Back, but the guest's
        // walks may be Non-cacheable (TCR_EL1.IRGN/ORGN = 0b00) and its
        // writes to its tables too: a line hv's earlier read allocated
        // would then be stale (DDI 0487, mismatched memory attributes;
        // R27-6). DC CIVAC to the point of coherency first drops any copy
        // hv holds (hv never writes guest RAM, so its copies are clean)
        // and writes back a dirty one the guest's cacheable writes left,
        // so the read below gets what the hardware's walk read.
        cpu::clean_invalidate_dcache(ipa, 8);
        // SAFETY: `ipa` and the 7 bytes after it are guest RAM, which hv's
        // stage 1 maps identically (Normal, cacheable; made coherent with
        // memory just above), and 8-byte alignment holds (descriptor
        // addresses are table base plus index times 8, checked). A
        // volatile read: the guest may change it at any time.
        Some(unsafe { core::ptr::read_volatile(ipa as *const u64) })
    };
    match s1walk::walk_abort_level(&regs, va, fault_page, guest_word) {
        Some(level) => {
            if should_report() {
                println!("hv: guest stage-1 walk of {va:#x} read a level-{level} descriptor at IPA page {fault_page:#x}, which has nothing behind it: injecting an external abort on the walk");
            }
            inject::external_walk_abort_syndrome(pstate, walked_for, level)
        }
        None => {
            if should_report() {
                println!("hv: guest stage-1 walk of {va:#x} faulted at IPA page {fault_page:#x}, which its tables no longer lead to: injecting an external abort (level unknown)");
            }
            match walked_for {
                inject::WalkedFor::Fetch => inject::external_instruction_abort_syndrome(pstate),
                inject::WalkedFor::Data {
                    cache_maintenance: true,
                    ..
                } => inject::external_cache_maintenance_abort_syndrome(pstate),
                inject::WalkedFor::Data { write, .. } => {
                    inject::external_data_abort_syndrome(pstate, write)
                }
            }
        }
    }
}

/// A guest data abort at an unmapped IPA: the UART's register page is
/// emulated by forwarding to the real UART; anything else gets the
/// synchronous external abort a bus would give.
fn emulate_mmio(hv: &Hv, frame: &mut GuestFrame, esr: u64, vcpu: usize) {
    let far = read_sysreg!("far_el2");
    let hpfar = read_sysreg!("hpfar_el2");
    let access = MmioAccess::decode(esr, far, hpfar);
    let uart = hv.platform.uart;
    if let (Ok(access), Some(gic)) = (&access, &hv.gic) {
        if access.ipa.is_multiple_of(access.size.bytes()) {
            let value = match access.kind {
                MmioKind::Write { register } => frame.reg(register) & access.size.mask(),
                MmioKind::Read { .. } => 0,
            };
            if let Some(result) = gic.emulate(vcpu, access, value) {
                if let MmioKind::Read { register, .. } = access.kind {
                    frame.set_reg(register, access.load_result(result));
                }
                frame.elr += instruction_length(esr);
                return;
            }
        }
    }
    match access {
        Ok(access)
            if uart.contains(access.ipa) && access.ipa.is_multiple_of(access.size.bytes()) =>
        {
            let offset = access.ipa - uart.base;
            match access.kind {
                MmioKind::Write { register } => {
                    console::forward(
                        offset,
                        access.size.bytes(),
                        Some(frame.reg(register) & access.size.mask()),
                    );
                }
                MmioKind::Read { register, .. } => {
                    let raw = console::forward(offset, access.size.bytes(), None);
                    frame.set_reg(register, access.load_result(raw));
                }
            }
            frame.elr += instruction_length(esr);
        }
        Ok(access) => {
            if should_report() {
                println!("hv: guest access to {:#x} ({:?}) has no device behind it: injecting an external abort", access.ipa, access.kind);
            }
            let write = matches!(access.kind, MmioKind::Write { .. });
            inject(
                hv,
                frame,
                inject::external_data_abort_syndrome(frame.spsr, write),
                Some(far),
            );
        }
        // The guest's own stage-1 walk read a descriptor from an IPA with
        // nothing behind it: the external abort on that walk, at its level.
        // WnR is the syndrome's, passed on: for a stage-2 abort on a
        // stage-1 walk it says whether the instruction whose translation
        // walked was a write or a read (Arm ARM, ESR_ELx.WnR; the only
        // permitted relaxation makes it 0 for atomic instructions, which
        // the guest's own walk abort may show as well); a cache
        // maintenance instruction's is 1.
        Err(NotEmulable::Stage1Walk) => {
            let walked_for = inject::WalkedFor::Data {
                write: esr & ESR_WNR != 0,
                cache_maintenance: esr & ESR_CM != 0,
            };
            let esr = walk_abort(hv, far, walked_for, frame.spsr);
            inject(hv, frame, esr, Some(far));
        }
        Err(NotEmulable::CacheMaintenance) => {
            if should_report() {
                println!("hv: guest cache maintenance at {far:#x} has no memory behind it: injecting an external abort");
            }
            inject(
                hv,
                frame,
                inject::external_cache_maintenance_abort_syndrome(frame.spsr),
                Some(far),
            );
        }
        Err(reason) => {
            let why: &dyn fmt::Display = &reason;
            if should_report() {
                println!("hv: guest data abort at {far:#x} cannot be emulated ({why}): injecting an external abort");
            }
            inject(
                hv,
                frame,
                inject::external_data_abort_syndrome(frame.spsr, esr & ESR_WNR != 0),
                Some(far),
            );
        }
    }
}
