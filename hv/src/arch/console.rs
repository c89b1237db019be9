//! hv's console: the PL011 found in the device tree, written by polling.
//! The guest's accesses to the same UART are forwarded through here too, so
//! hv lines and guest output never interleave inside a character write.
//!
//! hv never waits forever for the UART (it polls with IRQs masked, maybe
//! holding the console lock): guest writes to UARTCR keep the transmitter
//! enabled (`platform::pl011::guest_write`), and should the FIFO still not
//! drain (a stalled or misconfigured device), a byte waits at most
//! `TX_TIMEOUT_MS`. After such a timeout the console is wedged: output is
//! dropped without waiting until the FIFO has room again, and then one line
//! says how many bytes were lost.

use crate::platform::pl011::{self, FR_TXFF, UARTDR, UARTFR};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

/// How long one byte may wait for room in the transmit FIFO (a 16-byte
/// FIFO drains in under 20 ms even at 9600 baud).
const TX_TIMEOUT_MS: u64 = 50;

/// The UART's base address; 0 until discovery found it.
static BASE: AtomicU64 = AtomicU64::new(0);
static LOCK: Mutex<()> = Mutex::new(());
/// A wait for the FIFO timed out and it has not drained since.
static WEDGED: AtomicBool = AtomicBool::new(false);
/// Bytes dropped while wedged.
static DROPPED: AtomicU64 = AtomicU64::new(0);

pub fn init(base: u64) {
    BASE.store(base, Ordering::Release);
}

pub fn base() -> u64 {
    BASE.load(Ordering::Acquire)
}

/// UARTFR.TXFF of the PL011 at `base`.
fn tx_fifo_full(base: u64) -> bool {
    // SAFETY: `base` is the PL011 from the device tree, identity-mapped as
    // device memory (or accessed with the MMU off); UARTFR is its 32-bit
    // flag register, and reading it has no side effects.
    let flags = unsafe { core::ptr::read_volatile((base + UARTFR) as *const u32) };
    flags as u64 & FR_TXFF != 0
}

fn put_byte(base: u64, byte: u8) {
    let fifo_full = || tx_fifo_full(base);
    let timeout = super::cpu::counter_frequency() * TX_TIMEOUT_MS / 1000;
    let wedged = WEDGED.load(Ordering::Relaxed);
    if !pl011::wait_for_room(wedged, fifo_full, super::cpu::counter, timeout) {
        WEDGED.store(true, Ordering::Relaxed);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if wedged && WEDGED.swap(false, Ordering::Relaxed) {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        let _ = write!(
            Writer(base),
            "\nhv: (the console UART did not drain for {TX_TIMEOUT_MS} ms: {dropped} bytes of output were dropped)\n"
        );
    }
    // SAFETY: UARTDR is the PL011's 32-bit data register; the FIFO has room.
    unsafe { core::ptr::write_volatile((base + UARTDR) as *mut u32, byte as u32) };
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
            super::mmio::write(address, size, pl011::guest_write(offset, size, value));
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
