//! hv's console: the PL011 found in the device tree, written by polling.
//! The guest's accesses to the same UART are forwarded through here too, so
//! hv lines and guest output never interleave inside a character write.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

const UARTDR: u64 = 0x00;
const UARTFR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// The UART's base address; 0 until discovery found it.
static BASE: AtomicU64 = AtomicU64::new(0);
static LOCK: Mutex<()> = Mutex::new(());

pub fn init(base: u64) {
    BASE.store(base, Ordering::Release);
}

pub fn base() -> u64 {
    BASE.load(Ordering::Acquire)
}

fn put_byte(base: u64, byte: u8) {
    // SAFETY: `base` is the PL011 from the device tree, identity-mapped as
    // device memory (or accessed with the MMU off); UARTFR and UARTDR are
    // its flag and data registers, 32 bits wide.
    unsafe {
        while core::ptr::read_volatile((base + UARTFR) as *const u32) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        core::ptr::write_volatile((base + UARTDR) as *mut u32, byte as u32);
    }
}

struct Writer(u64);

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                put_byte(self.0, b'\r');
            }
            put_byte(self.0, byte);
        }
        Ok(())
    }
}

/// Writes formatted text under the console lock (no output before `init`).
pub fn print(args: fmt::Arguments<'_>) {
    let base = base();
    if base == 0 {
        return;
    }
    let _guard = LOCK.lock();
    let _ = Writer(base).write_fmt(args);
}

/// Writes without the lock: only for a CPU that is about to stop the
/// machine while another may hold the lock (panic), or before the MMU is on
/// (exclusive accesses to Device memory are not reliable there).
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let base = base();
    if base != 0 {
        let _ = Writer(base).write_fmt(args);
    }
}

/// Performs a guest's access to the UART at `offset` on the real device,
/// under the console lock so it never splits an hv line.
pub fn forward(offset: u64, size: u64, write: Option<u64>) -> u64 {
    let address = base() + offset;
    let _guard = LOCK.lock();
    match write {
        Some(value) => {
            super::mmio::write(address, size, value);
            0
        }
        None => super::mmio::read(address, size),
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::arch::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
