//! The Linux system calls the VMM makes (aarch64: number in x8, arguments
//! in x0-x5, `svc #0`, result or -errno in x0), each behind a safe wrapper
//! whose arguments cannot name memory the call must not touch.

use core::arch::global_asm;

const SYS_OPENAT: u64 = 56;
const SYS_IOCTL: u64 = 29;
const SYS_WRITE: u64 = 64;
const SYS_EXIT_GROUP: u64 = 94;
const SYS_MMAP: u64 = 222;

const AT_FDCWD: i64 = -100;
const O_RDWR: u64 = 2;
const O_CLOEXEC: u64 = 0o2000000;

const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const MAP_SHARED: u64 = 1;
const MAP_PRIVATE: u64 = 2;
const MAP_ANONYMOUS: u64 = 0x20;

pub const ENOENT: i64 = 2;

/// A failed call's errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i64);

// The call itself, as a function of the C calling convention: the
// arguments arrive in x0-x5 where the kernel wants them, the number in x6.
// Assembly the compiler does not check (so the VMM's Rust also lints on
// the host, `cargo xtask test`).
global_asm!(
    r#"
.section .text.kvm_vmm_syscall, "ax"
.global kvm_vmm_syscall
kvm_vmm_syscall:
    mov     x8, x6
    svc     #0
    ret
"#
);

extern "C" {
    /// Clobbers nothing the C calling convention keeps: `svc` returns with
    /// every register but x0 as it was (the Linux arm64 ABI).
    fn kvm_vmm_syscall(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, nr: u64) -> i64;
}

/// # Safety
/// The call must touch only memory its arguments name that the caller
/// owns for the call's duration.
unsafe fn syscall(nr: u64, args: [u64; 6]) -> i64 {
    // SAFETY: the caller vouches for the memory the call touches.
    unsafe { kvm_vmm_syscall(args[0], args[1], args[2], args[3], args[4], args[5], nr) }
}

fn result(ret: i64) -> Result<u64, Errno> {
    // Linux returns -4095..-1 for errors.
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret))
    } else {
        Ok(ret as u64)
    }
}

/// Opens `path` (NUL-terminated) read-write.
pub fn open_rdwr(path: &core::ffi::CStr) -> Result<u64, Errno> {
    // SAFETY: the kernel reads the NUL-terminated path and nothing else.
    result(unsafe {
        syscall(
            SYS_OPENAT,
            [
                AT_FDCWD as u64,
                path.as_ptr() as u64,
                O_RDWR | O_CLOEXEC,
                0,
                0,
                0,
            ],
        )
    })
}

/// An ioctl whose argument is a plain value (no memory).
pub fn ioctl_value(fd: u64, request: u64, value: u64) -> Result<u64, Errno> {
    // SAFETY: the requests passed here take their argument by value
    // (KVM_CREATE_VM, KVM_CREATE_VCPU, KVM_RUN, ...): no memory is named.
    result(unsafe { syscall(SYS_IOCTL, [fd, request, value, 0, 0, 0]) })
}

/// An ioctl that reads or writes `*arg`, whose size the request encodes
/// (checked here against `T`).
pub fn ioctl_ref<T>(fd: u64, request: u64, arg: &mut T) -> Result<u64, Errno> {
    let encoded_size = (request >> 16) & 0x3fff;
    assert_eq!(encoded_size, core::mem::size_of::<T>() as u64);
    // SAFETY: the kernel touches exactly the request's encoded size at
    // `arg`, which is `T`'s size (checked above) and exclusively borrowed.
    result(unsafe { syscall(SYS_IOCTL, [fd, request, arg as *mut T as u64, 0, 0, 0]) })
}

/// Writes all of `bytes` to `fd` (best effort: a console write that fails
/// has nowhere to be reported).
pub fn write_all(fd: u64, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the kernel reads `bytes.len()` bytes at `bytes`.
        let ret = unsafe {
            syscall(
                SYS_WRITE,
                [fd, bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0],
            )
        };
        match result(ret) {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes = &bytes[(n as usize).min(bytes.len())..],
        }
    }
}

pub fn exit_group(status: i32) -> ! {
    // SAFETY: exit_group touches no memory of ours and does not return.
    unsafe {
        syscall(SYS_EXIT_GROUP, [status as u64, 0, 0, 0, 0, 0]);
    }
    unreachable!("exit_group returned")
}

/// A read-write mapping that lives as long as the process (never unmapped).
#[derive(Debug)]
pub struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    /// `len` bytes of fresh anonymous memory (zero-filled, private).
    pub fn anonymous(len: usize) -> Result<Self, Errno> {
        Self::map(len, MAP_PRIVATE | MAP_ANONYMOUS, u64::MAX)
    }

    /// `len` bytes of `fd` from offset 0, shared with the kernel.
    pub fn shared(fd: u64, len: usize) -> Result<Self, Errno> {
        Self::map(len, MAP_SHARED, fd)
    }

    fn map(len: usize, flags: u64, fd: u64) -> Result<Self, Errno> {
        // SAFETY: a new mapping at an address the kernel picks: no
        // memory of ours is touched.
        let base = result(unsafe {
            syscall(
                SYS_MMAP,
                [0, len as u64, PROT_READ | PROT_WRITE, flags, fd, 0],
            )
        })?;
        Ok(Mapping {
            base: base as *mut u8,
            len,
        })
    }

    pub fn address(&self) -> u64 {
        self.base as u64
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        let size = core::mem::size_of::<T>();
        assert!(
            offset.is_multiple_of(size) && offset + size <= self.len,
            "offset {offset:#x} outside the mapping"
        );
        self.base.wrapping_add(offset).cast()
    }

    /// Volatile: the other side (KVM, the guest) writes this memory too.
    pub fn read<T: Copy>(&self, offset: usize) -> T {
        // SAFETY: in bounds and aligned (checked by `at`), the mapping is
        // live for the process's life, and every bit pattern of the plain
        // integer types this is used with is valid.
        unsafe { self.at::<T>(offset).read_volatile() }
    }

    pub fn write<T: Copy>(&self, offset: usize, value: T) {
        // SAFETY: in bounds and aligned (checked by `at`), writable, live
        // for the process's life.
        unsafe { self.at::<T>(offset).write_volatile(value) }
    }
}
