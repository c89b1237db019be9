//! The KVM API as arm64 Linux defines it (Documentation/virt/kvm/api.rst,
//! include/uapi/linux/kvm.h, arch/arm64/include/uapi/asm/kvm.h): ioctl
//! numbers, argument layouts and the `kvm_run` fields the VMM reads.

/// `_IOC(dir, 0xAE, nr, size)`: dir in bits 31:30 (1 write, 2 read), size
/// in 29:16, the KVM type 0xAE in 15:8, the number in 7:0.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xae << 8) | nr
}
const NONE: u64 = 0;
const WRITE: u64 = 1;
const READ: u64 = 2;

pub const KVM_GET_API_VERSION: u64 = ioc(NONE, 0x00, 0);
pub const KVM_CREATE_VM: u64 = ioc(NONE, 0x01, 0);
pub const KVM_GET_VCPU_MMAP_SIZE: u64 = ioc(NONE, 0x04, 0);
pub const KVM_CREATE_VCPU: u64 = ioc(NONE, 0x41, 0);
pub const KVM_SET_USER_MEMORY_REGION: u64 =
    ioc(WRITE, 0x46, core::mem::size_of::<UserMemoryRegion>());
pub const KVM_RUN: u64 = ioc(NONE, 0x80, 0);
pub const KVM_GET_ONE_REG: u64 = ioc(WRITE, 0xab, core::mem::size_of::<OneReg>());
pub const KVM_SET_ONE_REG: u64 = ioc(WRITE, 0xac, core::mem::size_of::<OneReg>());
pub const KVM_ARM_VCPU_INIT: u64 = ioc(WRITE, 0xae, core::mem::size_of::<VcpuInit>());
pub const KVM_ARM_PREFERRED_TARGET: u64 = ioc(READ, 0xaf, core::mem::size_of::<VcpuInit>());
pub const KVM_IRQ_LINE: u64 = ioc(WRITE, 0x61, core::mem::size_of::<IrqLevel>());
pub const KVM_CREATE_DEVICE: u64 = ioc(READ | WRITE, 0xe0, core::mem::size_of::<CreateDevice>());
pub const KVM_SET_DEVICE_ATTR: u64 = ioc(WRITE, 0xe1, core::mem::size_of::<DeviceAttr>());

// The numbers the kernel's headers give (checked at every build, which
// also checks the argument structs' sizes).
const _: () = {
    assert!(KVM_CREATE_VM == 0xae01 && KVM_CREATE_VCPU == 0xae41 && KVM_RUN == 0xae80);
    assert!(KVM_SET_USER_MEMORY_REGION == 0x4020_ae46);
    assert!(KVM_GET_ONE_REG == 0x4010_aeab && KVM_SET_ONE_REG == 0x4010_aeac);
    assert!(KVM_ARM_VCPU_INIT == 0x4020_aeae && KVM_ARM_PREFERRED_TARGET == 0x8020_aeaf);
    assert!(REG_PC == 0x6030_0000_0010_0040 && REG_X0 == 0x6030_0000_0010_0000);
    assert!(REG_ID_AA64DFR0_EL1 == 0x6030_0000_0013_c028);
    assert!(REG_PSCI_VERSION == 0x6030_0000_0014_0000);
    assert!(KVM_IRQ_LINE == 0x4008_ae61 && KVM_CREATE_DEVICE == 0xc00c_aee0);
    assert!(KVM_SET_DEVICE_ATTR == 0x4018_aee1);
};

/// `KVM_DEV_TYPE_ARM_VGIC_V3` (`enum kvm_device_type`): KVM's in-kernel
/// GICv3, a distributor and a redistributor per vCPU emulated by KVM, the
/// CPU interface its guest's own (list registers).
pub const DEV_TYPE_ARM_VGIC_V3: u32 = 7;
/// The vGIC's attribute groups (arch/arm64/include/uapi/asm/kvm.h) and
/// their attributes: the frames' guest addresses (`addr` names a u64),
/// and the initialisation, after every vCPU exists.
pub const DEV_ARM_VGIC_GRP_ADDR: u32 = 0;
pub const VGIC_V3_ADDR_TYPE_DIST: u64 = 2;
pub const VGIC_V3_ADDR_TYPE_REDIST: u64 = 3;
pub const DEV_ARM_VGIC_GRP_CTRL: u32 = 4;
pub const DEV_ARM_VGIC_CTRL_INIT: u64 = 0;

/// `struct kvm_create_device`: the type in, the new device's fd out.
#[repr(C)]
#[derive(Debug, Default)]
pub struct CreateDevice {
    pub device_type: u32,
    pub fd: u32,
    pub flags: u32,
}

/// `struct kvm_device_attr`: `addr` is the address of the attribute's
/// value (0 when it has none).
#[repr(C)]
#[derive(Debug, Default)]
pub struct DeviceAttr {
    pub flags: u32,
    pub group: u32,
    pub attr: u64,
    pub addr: u64,
}

/// `struct kvm_irq_level` for KVM_IRQ_LINE on arm64: `irq` is the type in
/// bits 27:24 ([`IRQ_TYPE_SPI`]: the INTID in bits 15:0), `level` the line.
#[repr(C)]
#[derive(Debug, Default)]
pub struct IrqLevel {
    pub irq: u32,
    pub level: u32,
}

/// `KVM_ARM_IRQ_TYPE_SPI`, shifted to its place in [`IrqLevel::irq`].
pub const IRQ_TYPE_SPI: u32 = 1 << 24;

/// The one API version there is.
pub const API_VERSION: u64 = 12;

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct UserMemoryRegion {
    pub slot: u32,
    pub flags: u32,
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
}

/// `struct kvm_one_reg`: the register's id and the address of its value.
#[repr(C)]
#[derive(Debug, Default)]
pub struct OneReg {
    pub id: u64,
    pub addr: u64,
}

/// `struct kvm_vcpu_init`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct VcpuInit {
    pub target: u32,
    pub features: [u32; 7],
}

/// `KVM_ARM_VCPU_PSCI_0_2`: PSCI 0.2+ (SYSTEM_OFF becomes a system event).
pub const VCPU_FEATURE_PSCI_0_2: u32 = 1 << 2;

/// The core register id of PC: KVM_REG_ARM64 | KVM_REG_SIZE_U64 |
/// KVM_REG_ARM_CORE | its offset in `struct kvm_regs` in 32-bit words
/// (regs.pc follows x0-x30 and sp: byte 256, word 64).
pub const REG_PC: u64 = CORE_REG_U64 | 64;
/// x0 (word 0 of `struct kvm_regs`).
pub const REG_X0: u64 = CORE_REG_U64;
/// KVM_REG_ARM64 | KVM_REG_SIZE_U64, then the register group in bits
/// 31:16: KVM_REG_ARM_CORE (0x10), KVM_REG_ARM64_SYSREG (0x13),
/// KVM_REG_ARM_FW (0x14).
const U64_REG: u64 = 0x6000_0000_0000_0000 | 0x0030_0000_0000_0000;
const CORE_REG_U64: u64 = U64_REG | (0x0010 << 16);
/// A system register: op0, op1, CRn, CRm, op2 in bits 15:0.
const fn sysreg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    U64_REG | (0x0013 << 16) | op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
}
/// ID_AA64DFR0_EL1 (3, 0, c0, c5, 0) as KVM shows it to the vCPU.
pub const REG_ID_AA64DFR0_EL1: u64 = sysreg(3, 0, 0, 5, 0);
/// KVM_REG_ARM_PSCI_VERSION: the PSCI version KVM's PSCI_VERSION answers.
pub const REG_PSCI_VERSION: u64 = U64_REG | (0x0014 << 16);

/// `kvm_run.exit_reason`'s values the VMM names.
pub const EXIT_MMIO: u32 = 6;
pub const EXIT_SYSTEM_EVENT: u32 = 24;

/// `kvm_run.system_event.type` of a PSCI SYSTEM_OFF.
pub const SYSTEM_EVENT_SHUTDOWN: u32 = 1;

/// Byte offsets in `struct kvm_run`: the exit reason, then the exit's
/// union at 32.
pub const RUN_EXIT_REASON: usize = 8;
const RUN_UNION: usize = 32;
/// `mmio`: u64 phys_addr, u8 data[8], u32 len, u8 is_write.
pub const RUN_MMIO_PHYS_ADDR: usize = RUN_UNION;
pub const RUN_MMIO_DATA: usize = RUN_UNION + 8;
pub const RUN_MMIO_LEN: usize = RUN_UNION + 16;
pub const RUN_MMIO_IS_WRITE: usize = RUN_UNION + 20;
/// `system_event`: u32 type, u32 ndata, u64 data[16].
pub const RUN_SYSTEM_EVENT_TYPE: usize = RUN_UNION;
/// The first 8 bytes of the union: the raw detail of any other exit
/// (`fail_entry.hardware_entry_failure_reason`, `internal.suberror`, ...).
pub const RUN_DETAIL: usize = RUN_UNION;

/// `exit_reason`'s name, for the error lines.
pub fn exit_name(reason: u32) -> &'static str {
    match reason {
        0 => "KVM_EXIT_UNKNOWN",
        1 => "KVM_EXIT_EXCEPTION",
        2 => "KVM_EXIT_IO",
        3 => "KVM_EXIT_HYPERCALL",
        4 => "KVM_EXIT_DEBUG",
        5 => "KVM_EXIT_HLT",
        EXIT_MMIO => "KVM_EXIT_MMIO",
        8 => "KVM_EXIT_SHUTDOWN",
        9 => "KVM_EXIT_FAIL_ENTRY",
        10 => "KVM_EXIT_INTR",
        17 => "KVM_EXIT_INTERNAL_ERROR",
        EXIT_SYSTEM_EVENT => "KVM_EXIT_SYSTEM_EVENT",
        28 => "KVM_EXIT_ARM_NISV",
        _ => "(another exit)",
    }
}
