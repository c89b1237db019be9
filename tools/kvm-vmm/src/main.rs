//! `kvm-vmm`: a tiny VMM for the test guest's user space. Inside a Linux
//! that runs as a guest hypervisor (hv's `hv.nested=linux`: L1 at virtual
//! EL2 with KVM in VHE mode) it opens /dev/kvm, creates a VM with one vCPU
//! and an in-kernel GICv3 (KVM's vGIC), gives it RAM from an anonymous
//! mapping of its own, and runs the payload of `payload.rs` (L2) to
//! completion: L2 checks what the VMM wrote, writes results the VMM checks
//! afterwards, reports through MMIO stores (`KVM_EXIT_MMIO`), takes its
//! virtual timer's interrupts and an SPI the VMM raises (KVM_IRQ_LINE),
//! all injected by KVM through L1's list registers, and powers off with
//! PSCI SYSTEM_OFF (`KVM_EXIT_SYSTEM_EVENT`). Then again, with the memory
//! slot moved to another mapping: L2 must see the new one.
//!
//! Progress and errors go to stderr, one line each, prefixed `kvm-vmm:`;
//! stdout gets the init script's marker words: `ok irq=ok` (both runs
//! completed, interrupts included), `absent` (no /dev/kvm: this Linux has
//! no KVM, as when it runs at EL1) or the step that failed. Exit status 0
//! for `ok irq=ok` and `absent`, 1 otherwise.

#![no_std]
#![no_main]

mod kvm;
mod payload;
mod sys;

use core::fmt::Write;
use payload::{PAGE, RAM_IPA, RAM_PAGES};
use sys::{ioctl_ref, ioctl_value, Errno, Mapping};

core::arch::global_asm!(
    r#"
.section .text._start, "ax"
.global _start
_start:
    mov     x29, #0
    mov     x30, #0
    bl      {main}
"#,
    main = sym vmm_main,
);

const STDOUT: u64 = 1;
const STDERR: u64 = 2;

/// One line for stderr, built without allocation (longer lines are cut).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn new() -> Self {
        let mut line = Line {
            buf: [0; 256],
            len: 0,
        };
        let _ = line.write_str("kvm-vmm: ");
        line
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - 1 - self.len;
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

fn say(args: core::fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    line.buf[line.len] = b'\n';
    sys::write_all(STDERR, &line.buf[..=line.len]);
}

/// Why the run stopped: the marker's word (the line that says why is
/// printed where the failure is made, [`fail`]).
struct Failure {
    word: &'static str,
}

fn fail(word: &'static str, args: core::fmt::Arguments<'_>) -> Failure {
    say(args);
    Failure { word }
}

/// A failed call's line: which call, which errno.
fn call(what: &'static str, word: &'static str) -> impl Fn(Errno) -> Failure {
    move |Errno(errno)| fail(word, format_args!("{what} failed: errno {errno}"))
}

extern "C" fn vmm_main() -> ! {
    let (word, status) = match run() {
        Ok(word) => (word, 0),
        Err(Failure { word }) => (word, 1),
    };
    sys::write_all(STDOUT, word.as_bytes());
    sys::write_all(STDOUT, b"\n");
    sys::exit_group(status)
}

fn run() -> Result<&'static str, Failure> {
    let kvm = match sys::open_rdwr(c"/dev/kvm") {
        Ok(fd) => fd,
        Err(Errno(sys::ENOENT)) => {
            say(format_args!("no /dev/kvm: this kernel runs no KVM"));
            return Ok("absent");
        }
        Err(e) => return Err(call("open /dev/kvm", "open")(e)),
    };
    let version = ioctl_value(kvm, kvm::KVM_GET_API_VERSION, 0)
        .map_err(call("KVM_GET_API_VERSION", "api"))?;
    if version != kvm::API_VERSION {
        return Err(fail(
            "api",
            format_args!("KVM API version {version}, not {}", kvm::API_VERSION),
        ));
    }
    // Type 0: the default 40-bit IPA space.
    let vm = ioctl_value(kvm, kvm::KVM_CREATE_VM, 0).map_err(call("KVM_CREATE_VM", "create-vm"))?;
    let first = GuestRam::new(vm, 1)?;
    let vcpu =
        ioctl_value(vm, kvm::KVM_CREATE_VCPU, 0).map_err(call("KVM_CREATE_VCPU", "create-vcpu"))?;
    let mut init = kvm::VcpuInit::default();
    ioctl_ref(vm, kvm::KVM_ARM_PREFERRED_TARGET, &mut init)
        .map_err(call("KVM_ARM_PREFERRED_TARGET", "target"))?;
    init.features[0] |= kvm::VCPU_FEATURE_PSCI_0_2;
    // The vGIC is initialised once its vCPUs exist and are initialised.
    ioctl_ref(vcpu, kvm::KVM_ARM_VCPU_INIT, &mut init)
        .map_err(call("KVM_ARM_VCPU_INIT", "vcpu-init"))?;
    create_vgic(vm)?;
    let run_bytes = ioctl_value(kvm, kvm::KVM_GET_VCPU_MMAP_SIZE, 0)
        .map_err(call("KVM_GET_VCPU_MMAP_SIZE", "mmap-size"))?;
    let run = Mapping::shared(vcpu, run_bytes as usize).map_err(call("mmap of kvm_run", "mmap"))?;
    say(format_args!(
        "VM created: {RAM_PAGES} pages of RAM at L2 IPA {RAM_IPA:#x} (this process's {:#x}), vCPU target {}, {} payload words",
        first.ram.address(),
        init.target,
        payload::words().len()
    ));
    run_l2(vm, vcpu, &run, &mut init, &first)?;

    // Run 2 on another mapping: deleting the slot makes KVM unmap L2's
    // pages from its stage 2 (with TLBIs hv must apply to the shadow: a
    // stale entry would show L2 run 1's pages).
    ioctl_ref(vm, kvm::KVM_SET_USER_MEMORY_REGION, &mut first.region(0))
        .map_err(call("KVM_SET_USER_MEMORY_REGION (delete)", "memory-region"))?;
    let second = GuestRam::new(vm, 2)?;
    say(format_args!(
        "memory slot moved to this process's {:#x}",
        second.ram.address()
    ));
    run_l2(vm, vcpu, &run, &mut init, &second)?;
    // Run 2 wrote nothing into run 1's memory.
    first.check_results()?;
    Ok("ok irq=ok")
}

/// KVM's in-kernel GICv3 for the VM: its distributor and the vCPU's
/// redistributor where L2 looks for them, then initialised
/// (Documentation/virt/kvm/devices/arm-vgic-v3.rst).
fn create_vgic(vm: u64) -> Result<(), Failure> {
    let mut device = kvm::CreateDevice {
        device_type: kvm::DEV_TYPE_ARM_VGIC_V3,
        ..Default::default()
    };
    ioctl_ref(vm, kvm::KVM_CREATE_DEVICE, &mut device)
        .map_err(call("KVM_CREATE_DEVICE (vGICv3)", "vgic"))?;
    let gic = u64::from(device.fd);
    let set = |group, attr, value: Option<u64>, what: &'static str| {
        let mut value = value.unwrap_or(0);
        let mut attribute = kvm::DeviceAttr {
            flags: 0,
            group,
            attr,
            addr: if group == kvm::DEV_ARM_VGIC_GRP_ADDR {
                core::ptr::addr_of_mut!(value) as u64
            } else {
                0
            },
        };
        ioctl_ref(gic, kvm::KVM_SET_DEVICE_ATTR, &mut attribute)
            .map(drop)
            .map_err(call(what, "vgic"))
    };
    set(
        kvm::DEV_ARM_VGIC_GRP_ADDR,
        kvm::VGIC_V3_ADDR_TYPE_DIST,
        Some(payload::GICD_IPA),
        "KVM_SET_DEVICE_ATTR (distributor address)",
    )?;
    set(
        kvm::DEV_ARM_VGIC_GRP_ADDR,
        kvm::VGIC_V3_ADDR_TYPE_REDIST,
        Some(payload::GICR_IPA),
        "KVM_SET_DEVICE_ATTR (redistributor address)",
    )?;
    set(
        kvm::DEV_ARM_VGIC_GRP_CTRL,
        kvm::DEV_ARM_VGIC_CTRL_INIT,
        None,
        "KVM_SET_DEVICE_ATTR (CTRL_INIT)",
    )?;
    say(format_args!(
        "vGICv3 created: distributor at L2 IPA {:#x}, redistributor at {:#x}",
        payload::GICD_IPA,
        payload::GICR_IPA
    ));
    Ok(())
}

/// Sets SPI `intid`'s line (KVM_IRQ_LINE on the VM).
fn spi_line(vm: u64, intid: u64, level: bool) -> Result<(), Failure> {
    let mut line = kvm::IrqLevel {
        irq: kvm::IRQ_TYPE_SPI | intid as u32,
        level: u32::from(level),
    };
    ioctl_ref(vm, kvm::KVM_IRQ_LINE, &mut line)
        .map(drop)
        .map_err(call("KVM_IRQ_LINE", "irq-line"))
}

/// L2's interrupts after its pass word: its report of the timer's
/// interrupts, then the SPI the VMM raises at L2's cue (an edge: the line
/// up and down again before L2 runs on) and L2's report of it, then its
/// ISR_EL1 with the timer's interrupt left pending (it powers off so).
fn l2_takes_interrupts(vm: u64, vcpu: u64, run: &Mapping, number: u64) -> Result<(), Failure> {
    let timer = next_mmio_store(vcpu, run, number, payload::MMIO_TIMER_OFFSET, 8)?;
    check_irq_report(
        timer,
        number,
        payload::TIMER_IRQS,
        "irq-timer",
        "virtual timer interrupts (PPI 27) in 2 s",
    )?;
    next_mmio_store(vcpu, run, number, payload::MMIO_SPI_OFFSET, 8)?;
    spi_line(vm, payload::SPI, true)?;
    spi_line(vm, payload::SPI, false)?;
    let spi = next_mmio_store(vcpu, run, number, payload::MMIO_SPI_OFFSET, 8)?;
    check_irq_report(
        spi,
        number,
        1,
        "irq-spi",
        "SPIs (INTID 40, raised with KVM_IRQ_LINE) in 1 s",
    )?;
    let isr = next_mmio_store(vcpu, run, number, payload::MMIO_PENDING_OFFSET, 8)?;
    if isr & payload::ISR_I == 0 {
        return Err(fail(
            "irq-pending",
            format_args!(
                "run {number}: L2's timer, expired with its IRQs masked, was not a pending virtual IRQ within 1 s: ISR_EL1 {isr:#x}"
            ),
        ));
    }
    Ok(())
}

/// One of L2's interrupt reports must say it took `expected` of the
/// interrupts it waited for and acknowledged no other.
fn check_irq_report(
    report: u64,
    number: u64,
    expected: u64,
    word: &'static str,
    what: &str,
) -> Result<(), Failure> {
    if report == payload::irq_report(expected, payload::SPURIOUS) {
        return Ok(());
    }
    Err(fail(
        word,
        format_args!(
            "run {number}: L2 took {} of {expected} {what}, the last other INTID it acknowledged {} (report {report:#x})",
            report & 0xffff_ffff,
            report >> 32
        ),
    ))
}

/// L2's RAM for one run: a fresh anonymous mapping with the payload and
/// the run's data words, registered as memory slot 0.
struct GuestRam {
    ram: Mapping,
    run: u64,
}

impl GuestRam {
    const BYTES: usize = RAM_PAGES * PAGE;

    fn new(vm: u64, run: u64) -> Result<Self, Failure> {
        let ram = Mapping::anonymous(Self::BYTES).map_err(call("mmap of L2's RAM", "mmap"))?;
        for (i, &word) in payload::words().iter().enumerate() {
            ram.write::<u32>(4 * i, word);
        }
        for page in 1..=payload::DATA_PAGES {
            ram.write::<u64>(page as usize * PAGE, payload::pattern(page, run));
        }
        let guest = GuestRam { ram, run };
        ioctl_ref(
            vm,
            kvm::KVM_SET_USER_MEMORY_REGION,
            &mut guest.region(Self::BYTES as u64),
        )
        .map_err(call("KVM_SET_USER_MEMORY_REGION", "memory-region"))?;
        Ok(guest)
    }

    /// Slot 0 on this mapping (`size` 0 deletes the slot).
    fn region(&self, size: u64) -> kvm::UserMemoryRegion {
        kvm::UserMemoryRegion {
            slot: 0,
            flags: 0,
            guest_phys_addr: RAM_IPA,
            memory_size: size,
            userspace_addr: self.ram.address(),
        }
    }

    /// What L2 wrote must be in this mapping: the complement of each data
    /// page's word, the fresh page's pattern.
    fn check_results(&self) -> Result<(), Failure> {
        let expected = |page: u64| {
            if page == payload::FRESH_PAGE {
                payload::pattern(page, self.run)
            } else {
                !payload::pattern(page, self.run)
            }
        };
        for page in (1..=payload::DATA_PAGES).chain([payload::FRESH_PAGE]) {
            let found = self.ram.read::<u64>(page as usize * PAGE + 8);
            if found != expected(page) {
                return Err(fail(
                    "l2-writes",
                    format_args!(
                        "run {}: L2's result in page {page} reads {found:#x} in the VMM's mapping, not {:#x}",
                        self.run,
                        expected(page)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// KVM_SET_ONE_REG (`set`) or KVM_GET_ONE_REG of the vCPU's 64-bit
/// register `id` (`name` in the error line) from or into `value`.
fn one_reg(
    vcpu: u64,
    set: bool,
    (id, name): (u64, &'static str),
    value: &mut u64,
) -> Result<(), Failure> {
    let (request, request_name) = if set {
        (kvm::KVM_SET_ONE_REG, "KVM_SET_ONE_REG")
    } else {
        (kvm::KVM_GET_ONE_REG, "KVM_GET_ONE_REG")
    };
    let mut reg = kvm::OneReg {
        id,
        addr: core::ptr::addr_of_mut!(*value) as u64,
    };
    ioctl_ref(vcpu, request, &mut reg)
        .map(drop)
        .map_err(|Errno(errno)| {
            fail(
                "one-reg",
                format_args!("{request_name} ({name}) failed: errno {errno}"),
            )
        })
}

/// One run of L2 on `guest`'s RAM from a reset vCPU (KVM_ARM_VCPU_INIT
/// again: run 1's SYSTEM_OFF left it stopped): its MMIO reports and
/// interrupts, its SYSTEM_OFF, then its results in the VMM's memory.
fn run_l2(
    vm: u64,
    vcpu: u64,
    run: &Mapping,
    init: &mut kvm::VcpuInit,
    guest: &GuestRam,
) -> Result<(), Failure> {
    let number = guest.run;
    ioctl_ref(vcpu, kvm::KVM_ARM_VCPU_INIT, init)
        .map_err(call("KVM_ARM_VCPU_INIT", "vcpu-init"))?;
    let (mut pc, mut x0) = (RAM_IPA, number);
    one_reg(vcpu, true, (kvm::REG_PC, "PC"), &mut pc)?;
    one_reg(vcpu, true, (kvm::REG_X0, "x0"), &mut x0)?;

    // L2's MRS of ID_AA64DFR0_EL1 reads what KVM shows its vCPU, and its
    // PSCI_VERSION gets KVM's.
    let id = l2_reads_kvm_register(
        vcpu,
        run,
        number,
        (payload::MMIO_ID_OFFSET, 8),
        (kvm::REG_ID_AA64DFR0_EL1, "ID_AA64DFR0_EL1"),
        "id-register",
    )?;
    let psci = l2_reads_kvm_register(
        vcpu,
        run,
        number,
        (payload::MMIO_PSCI_OFFSET, 4),
        (kvm::REG_PSCI_VERSION, "PSCI version"),
        "psci",
    )?;
    let report = next_mmio_store(vcpu, run, number, 0, 4)?;
    check_report(report, number)?;
    l2_takes_interrupts(vm, vcpu, run, number)?;
    run_until_exit(vcpu, run, kvm::EXIT_SYSTEM_EVENT, number)?;
    let event = run.read::<u32>(kvm::RUN_SYSTEM_EVENT_TYPE);
    if event != kvm::SYSTEM_EVENT_SHUTDOWN {
        return Err(fail(
            "system-event",
            format_args!(
                "run {number}: L2's system event is type {event}, not SHUTDOWN (PSCI SYSTEM_OFF)"
            ),
        ));
    }
    guest.check_results()?;
    say(format_args!(
        "run {number}: L2 ran to SYSTEM_OFF: ID_AA64DFR0_EL1 {id:#x} and PSCI {}.{} from KVM, read the VMM's {} pages, wrote {} results into this process's memory, MMIO report {report:#x}, took {} timer interrupts and SPI {}",
        psci >> 16,
        psci & 0xffff,
        payload::DATA_PAGES,
        payload::DATA_PAGES + 1,
        payload::TIMER_IRQS,
        payload::SPI,
    ));
    Ok(())
}

/// L2's next report, its `len`-byte MMIO store at the report address plus
/// `offset`, must be KVM's value of the vCPU's register `id` (KVM_GET_ONE_REG):
/// that value.
fn l2_reads_kvm_register(
    vcpu: u64,
    run: &Mapping,
    number: u64,
    (offset, len): (u64, u32),
    (id, name): (u64, &'static str),
    word: &'static str,
) -> Result<u64, Failure> {
    let reported = next_mmio_store(vcpu, run, number, offset, len)?;
    let mut value = 0;
    one_reg(vcpu, false, (id, name), &mut value)?;
    if reported != value {
        return Err(fail(
            word,
            format_args!(
                "run {number}: L2 read {name} {reported:#x}; KVM shows its vCPU {value:#x}"
            ),
        ));
    }
    Ok(reported)
}

/// KVM_RUN until an exit; anything but `expected` is a failure.
fn run_until_exit(vcpu: u64, run: &Mapping, expected: u32, number: u64) -> Result<(), Failure> {
    if let Err(Errno(errno)) = ioctl_value(vcpu, kvm::KVM_RUN, 0) {
        let reason = run.read::<u32>(kvm::RUN_EXIT_REASON);
        return Err(fail(
            "run",
            format_args!(
                "run {number}: KVM_RUN failed: errno {errno} (exit reason {reason} {})",
                kvm::exit_name(reason)
            ),
        ));
    }
    let reason = run.read::<u32>(kvm::RUN_EXIT_REASON);
    if reason != expected {
        return Err(fail(
            "exit",
            format_args!(
                "run {number}: L2 exited with {reason} {} (detail {:#x}), not {}",
                kvm::exit_name(reason),
                run.read::<u64>(kvm::RUN_DETAIL),
                kvm::exit_name(expected)
            ),
        ));
    }
    Ok(())
}

/// KVM_RUN to L2's next exit, which must be its `len`-byte MMIO store at
/// the report address plus `offset`: the data it stored.
fn next_mmio_store(
    vcpu: u64,
    run: &Mapping,
    number: u64,
    offset: u64,
    len: u32,
) -> Result<u64, Failure> {
    run_until_exit(vcpu, run, kvm::EXIT_MMIO, number)?;
    let expected = payload::MMIO_IPA + offset;
    let address = run.read::<u64>(kvm::RUN_MMIO_PHYS_ADDR);
    let found_len = run.read::<u32>(kvm::RUN_MMIO_LEN);
    let is_write = run.read::<u8>(kvm::RUN_MMIO_IS_WRITE);
    if address != expected || found_len != len || is_write != 1 {
        let data = u64::from_le_bytes(run.read::<[u8; 8]>(kvm::RUN_MMIO_DATA));
        return Err(fail(
            "mmio",
            format_args!(
                "run {number}: L2's MMIO exit: address {address:#x} length {found_len} write {is_write} data {data:#x}, not a {len}-byte store at {expected:#x}{}",
                if address == payload::MMIO_IPA + payload::MMIO_UNEXPECTED_OFFSET {
                    " (an exception L2 did not expect, data its ESR_EL1)"
                } else {
                    ""
                }
            ),
        ));
    }
    let data = u64::from_le_bytes(run.read::<[u8; 8]>(kvm::RUN_MMIO_DATA));
    Ok(if len == 8 {
        data
    } else {
        data & ((1 << (8 * len)) - 1)
    })
}

/// L2's last report must be its pass word.
fn check_report(data: u64, number: u64) -> Result<(), Failure> {
    if data == u64::from(payload::PASS_WORD) {
        return Ok(());
    }
    let page = data & 0xffff;
    Err(if data & 0xffff_0000 == u64::from(payload::FAIL_WORD) {
        fail(
            "l2-check",
            format_args!(
                "run {number}: L2's MMIO report {data:#x}: L2 read a wrong word in page {page} (not {:#x})",
                if page == payload::FRESH_PAGE {
                    0
                } else {
                    payload::pattern(page, number)
                }
            ),
        )
    } else {
        fail(
            "l2-check",
            format_args!(
                "run {number}: L2's MMIO report {data:#x} is not its pass word {:#x}",
                payload::PASS_WORD
            ),
        )
    })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say(format_args!("panic: {info}"));
    sys::write_all(STDOUT, b"panic\n");
    sys::exit_group(2)
}
