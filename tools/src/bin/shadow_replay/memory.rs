//! L1's memory as the service and the checker read it.

use std::cell::RefCell;
use std::sync::Mutex;

use walker::{Endianness, GuestMemory, MemoryError, Memslots, SlotAccess, SlotHint};

/// Decodes a raw memory word as a descriptor in `endianness`.
pub fn decode(raw: u64, endianness: Endianness) -> u64 {
    match endianness {
        Endianness::Little => u64::from_le(raw),
        Endianness::Big => u64::from_be(raw),
    }
}

/// Encodes a descriptor as the raw memory word L1 stores.
pub fn encode(descriptor: u64, endianness: Endianness) -> u64 {
    match endianness {
        Endianness::Little => descriptor.to_le(),
        Endianness::Big => descriptor.to_be(),
    }
}

/// The `--mem` slots, recording each hardware AF/dirty update the
/// service's walks make (the checker counts them as descriptor changes:
/// a TLB may keep the entry read before the update).
pub struct RecordingMemory<'a> {
    slots: Memslots<'a>,
    /// (address, old raw word, new raw word), drained after each event.
    updates: Mutex<Vec<(u64, u64, u64)>>,
}

impl<'a> RecordingMemory<'a> {
    pub fn new(slots: Memslots<'a>) -> Self {
        RecordingMemory {
            slots,
            updates: Mutex::new(Vec::new()),
        }
    }

    /// The updates since the last call, oldest first.
    pub fn take_updates(&self) -> Vec<(u64, u64, u64)> {
        std::mem::take(&mut *self.updates.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl GuestMemory for RecordingMemory<'_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        self.slots.read_descriptor(address)
    }

    fn read_descriptor_hinted(
        &self,
        address: u64,
        hint: &mut SlotHint,
    ) -> Result<u64, MemoryError> {
        self.slots.read_descriptor_hinted(address, hint)
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        let result = self
            .slots
            .compare_exchange_descriptor(address, current, new);
        if let Ok(Ok(_)) = result {
            self.updates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((address, current, new));
        }
        result
    }
}

/// The `--mem` slots seen through a private overlay: the checker's walk
/// makes its hardware updates here, so checking never changes what the
/// service sees next.
pub struct OverlayMemory<'m, 'a> {
    slots: &'m Memslots<'a>,
    /// (address, raw word) read instead of memory: the values a TLB or
    /// walk cache may still hold (`--check` walks with them).
    overrides: &'m [(u64, u64)],
    /// (address, raw word) written by this walk; a walk writes a few.
    written: RefCell<Vec<(u64, u64)>>,
}

impl<'m, 'a> OverlayMemory<'m, 'a> {
    /// An overlay whose reads of each override's address give its raw
    /// word instead of memory's (until this walk updates it).
    pub fn with_overrides(slots: &'m Memslots<'a>, overrides: &'m [(u64, u64)]) -> Self {
        OverlayMemory {
            slots,
            overrides,
            written: RefCell::new(Vec::new()),
        }
    }
}

impl GuestMemory for OverlayMemory<'_, '_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        if let Some(&(_, raw)) = self.written.borrow().iter().find(|(a, _)| *a == address) {
            return Ok(raw);
        }
        if let Some(&(_, raw)) = self.overrides.iter().find(|(a, _)| *a == address) {
            return Ok(raw);
        }
        self.slots.read_descriptor(address)
    }

    /// As [`Memslots`] does it: the address must be readable, then the slot
    /// writable, then the value must match.
    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        let actual = self.read_descriptor(address)?;
        match self.slots.find(address) {
            Some(slot) if slot.access() == SlotAccess::ReadWrite => {}
            Some(_) => return Err(MemoryError::ReadOnly),
            None => return Err(MemoryError::OutsideMemslots),
        }
        if actual != current {
            return Ok(Err(actual));
        }
        let mut written = self.written.borrow_mut();
        match written.iter_mut().find(|(a, _)| *a == address) {
            Some(entry) => entry.1 = new,
            None => written.push((address, new)),
        }
        Ok(Ok(actual))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use walker::Memslot;

    #[test]
    fn the_overlay_keeps_its_writes_and_the_recorder_records_them() {
        let words: Vec<AtomicU64> = (0..4).map(AtomicU64::new).collect();
        let ro: Vec<AtomicU64> = (0..1).map(AtomicU64::new).collect();
        let mut storage = vec![
            Memslot::new(0x1000, &words, SlotAccess::ReadWrite),
            Memslot::new(0x2000, &ro, SlotAccess::ReadOnly),
        ];
        let slots = Memslots::new(&mut storage).unwrap();
        let overlay = OverlayMemory::with_overrides(&slots, &[]);
        assert_eq!(overlay.compare_exchange_descriptor(0x1008, 1, 9), Ok(Ok(1)));
        assert_eq!(overlay.read_descriptor(0x1008), Ok(9));
        assert_eq!(
            overlay.compare_exchange_descriptor(0x1008, 1, 10),
            Ok(Err(9))
        );
        assert_eq!(
            overlay.compare_exchange_descriptor(0x2000, 0, 1),
            Err(MemoryError::ReadOnly)
        );
        assert_eq!(
            overlay.compare_exchange_descriptor(0x3000, 0, 1),
            Err(MemoryError::OutsideMemslots)
        );
        // The slots themselves are untouched.
        assert_eq!(words[1].load(Ordering::Relaxed), 1);
        // Overrides are read instead of memory, and updated privately.
        let overrides = [(0x1010, 77)];
        let overlay = OverlayMemory::with_overrides(&slots, &overrides);
        assert_eq!(overlay.read_descriptor(0x1010), Ok(77));
        assert_eq!(overlay.read_descriptor(0x1018), Ok(3));
        assert_eq!(
            overlay.compare_exchange_descriptor(0x1010, 2, 5),
            Ok(Err(77))
        );
        assert_eq!(
            overlay.compare_exchange_descriptor(0x1010, 77, 78),
            Ok(Ok(77))
        );
        assert_eq!(overlay.read_descriptor(0x1010), Ok(78));
        assert_eq!(words[2].load(Ordering::Relaxed), 2);

        let recording = RecordingMemory::new(slots);
        assert_eq!(
            recording.compare_exchange_descriptor(0x1010, 2, 7),
            Ok(Ok(2))
        );
        assert_eq!(
            recording.compare_exchange_descriptor(0x1010, 2, 8),
            Ok(Err(7))
        );
        assert_eq!(recording.take_updates(), vec![(0x1010, 2, 7)]);
        assert!(recording.take_updates().is_empty());
        assert_eq!(
            encode(decode(0x1234, Endianness::Big), Endianness::Big),
            0x1234
        );
    }
}
