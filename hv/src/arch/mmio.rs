//! Volatile accesses to device registers hv has mapped (its stage 1 maps
//! the console and the GIC as Device-nGnRE).

macro_rules! access {
    ($read:ident, $write:ident, $ty:ty) => {
        pub fn $read(address: u64) -> $ty {
            // SAFETY: callers pass addresses inside a device region from
            // the device tree, which hv's stage 1 maps, aligned to the width.
            unsafe { core::ptr::read_volatile(address as *const $ty) }
        }

        pub fn $write(address: u64, value: $ty) {
            // SAFETY: as for the read: a mapped, aligned device register.
            unsafe { core::ptr::write_volatile(address as *mut $ty, value) }
        }
    };
}

access!(read8, write8, u8);
access!(read16, write16, u16);
access!(read32, write32, u32);
access!(read64, write64, u64);

/// A read of `size` bytes (1, 2, 4 or 8).
pub fn read(address: u64, size: u64) -> u64 {
    match size {
        1 => read8(address) as u64,
        2 => read16(address) as u64,
        4 => read32(address) as u64,
        _ => read64(address),
    }
}

/// A write of the low `size` bytes of `value`.
pub fn write(address: u64, size: u64, value: u64) {
    match size {
        1 => write8(address, value as u8),
        2 => write16(address, value as u16),
        4 => write32(address, value as u32),
        _ => write64(address, value),
    }
}
