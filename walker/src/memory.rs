//! Guest memory as the walker sees it: 64-bit descriptor reads and
//! compare-and-swap, through [`GuestMemory`], and a safe implementation over
//! memslots ([`Memslots`]) backed by `AtomicU64` words.
//!
//! Values cross this interface *raw*: the `u64` whose native-endian bytes are
//! the 8 bytes of guest memory at the address. The walker applies L1's
//! descriptor byte order (SCTLR_EL2.EE) itself, so an implementation never
//! needs to know it.
//!
//! The words are `core` atomics, or loom's under `--cfg loom` (see
//! `sync.rs`), so the loom models drive this very code.

use crate::sync::{fence, AtomicU64, Ordering};
use core::fmt;

/// Why a descriptor access could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The address lies outside every memslot.
    OutsideMemslots,
    /// A write (compare-and-swap) to a read-only memslot.
    ReadOnly,
    /// The address is not 8-byte aligned (the walker never produces one).
    Misaligned,
    /// The host (L0) maps the address for the guest, but its own stage 2
    /// denies this access: a read for a read, a write for a
    /// compare-and-swap (it revoked read access to the page, or
    /// write-protected it, say to log it dirty). Unlike the others this is
    /// no fault of the guest's: in the Arm ARM's two-stage model it is the
    /// host's own stage-2 permission fault on the walk's access, for the
    /// host to resolve and then retry, so the walker reports it as
    /// [`WalkError::HostDenied`](crate::WalkError::HostDenied), never as a
    /// fault for L1. [`Memslots`] never gives it (a [`SlotAccess::ReadOnly`]
    /// slot is read-only *to the guest*: a refused update there stays the
    /// architectural external abort).
    HostDenied,
    /// The host (L0) is in the middle of changing its own mapping of the
    /// address's page for the guest (a break-before-make: its old entry
    /// invalid, the new one not yet written, say while it moves the page
    /// or starts or stops logging it dirty). Like
    /// [`MemoryError::HostDenied`] no fault of the guest's: a hardware
    /// walk would take the host's own stage-2 translation fault there,
    /// which the host resolves by waiting for its change to end, so the
    /// walker reports it as
    /// [`WalkError::HostChanging`](crate::WalkError::HostChanging), for the
    /// access to be retried. [`Memslots`] never gives it.
    HostChanging,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryError::OutsideMemslots => "address outside every memslot",
            MemoryError::ReadOnly => "write to a read-only memslot",
            MemoryError::Misaligned => "descriptor address not 8-byte aligned",
            MemoryError::HostDenied => "the host maps the address but denies this access",
            MemoryError::HostChanging => "the host is changing its mapping of the address",
        })
    }
}

/// Guest-physical memory that holds L1's stage-2 tables.
///
/// Addresses are L1 IPAs of 8-byte aligned descriptors. Implementations must
/// never touch memory outside what they were given; the walker turns
/// [`MemoryError::OutsideMemslots`] (and a refused update,
/// [`MemoryError::ReadOnly`]) into a synchronous external abort on the
/// walk, [`MemoryError::HostDenied`] into
/// [`WalkError::HostDenied`](crate::WalkError::HostDenied) and
/// [`MemoryError::HostChanging`] into
/// [`WalkError::HostChanging`](crate::WalkError::HostChanging), for the
/// host.
pub trait GuestMemory {
    /// Read the raw 8 bytes at `address` (see the module docs for "raw").
    /// A read of memory L1 may be writing is an Acquire load (or
    /// stronger), here and in the other reads: the path-hinted walk
    /// (`walk/path_hint.rs`) issues a walk's reads with no address
    /// dependency between them and relies on their order alone to see a
    /// table L1 published whole.
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError>;

    /// Read many descriptors at once; `values[i]` receives `addresses[i]`.
    /// The walker passes equal-length slices with no duplicate addresses;
    /// with unequal lengths only the first `min(len)` pairs are read and
    /// every other entry of `values` is left as it was. The batched walk
    /// fills `values` with [`MemoryError::OutsideMemslots`] first, so an
    /// entry an implementation leaves unwritten is an external abort on the
    /// walk, never a stale value.
    /// Override to overlap the loads (prefetch, one slot lookup for many).
    /// The default shares one [`SlotHint`] across the batch (a batch's
    /// descriptors are usually in one memslot too).
    fn read_descriptors(&self, addresses: &[u64], values: &mut [Result<u64, MemoryError>]) {
        let mut hint = SlotHint::default();
        for (address, value) in addresses.iter().zip(values.iter_mut()) {
            *value = self.read_descriptor_hinted(*address, &mut hint);
        }
    }

    /// [`GuestMemory::read_descriptor`] for the next read of one walk:
    /// `hint` starts as [`SlotHint::default()`] for each walk and is passed
    /// to every read of that walk, so an implementation can remember where
    /// the previous read was found and try there first (a walk's tables
    /// are usually in one memslot). The result must be exactly what
    /// `read_descriptor(address)` gives; the hint only saves work.
    #[inline]
    fn read_descriptor_hinted(
        &self,
        address: u64,
        hint: &mut SlotHint,
    ) -> Result<u64, MemoryError> {
        let _ = hint;
        self.read_descriptor(address)
    }

    /// Atomically replace the raw value `current` at `address` by `new`.
    /// `Ok(Ok(current))` on success, `Ok(Err(actual))` if memory held
    /// `actual` instead, `Err(_)` if the write cannot be made at all.
    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError>;
}

impl<T: GuestMemory + ?Sized> GuestMemory for &T {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        (**self).read_descriptor(address)
    }
    fn read_descriptors(&self, addresses: &[u64], values: &mut [Result<u64, MemoryError>]) {
        (**self).read_descriptors(addresses, values)
    }
    #[inline]
    fn read_descriptor_hinted(
        &self,
        address: u64,
        hint: &mut SlotHint,
    ) -> Result<u64, MemoryError> {
        (**self).read_descriptor_hinted(address, hint)
    }
    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        (**self).compare_exchange_descriptor(address, current, new)
    }
}

/// Where one walk's previous descriptor read was found, for
/// [`GuestMemory::read_descriptor_hinted`]. Opaque: only the memory
/// implementation that set it knows what it means; a stale or foreign hint
/// costs a lookup, never a wrong result. The default is "nothing known
/// yet". [`Memslots`] tries its largest slot first whatever the hint
/// (usually the guest's RAM, where its tables are) and keeps in the hint
/// only where a read beyond it was found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotHint(usize);

/// Whether the guest (and the walker's hardware updates) may write a memslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotAccess {
    /// Reads and compare-and-swap allowed.
    ReadWrite,
    /// Reads only; a hardware AF/dirty update here is refused.
    ReadOnly,
}

/// One guest-physical region backed by 64-bit words.
#[derive(Clone, Copy, Debug)]
pub struct Memslot<'a> {
    base: u64,
    words: &'a [AtomicU64],
    access: SlotAccess,
}

impl<'a> Memslot<'a> {
    /// A memslot of `words.len() * 8` bytes at guest-physical `base`.
    /// Validation (alignment, overlap, wrap-around) happens in [`Memslots::new`].
    pub const fn new(base: u64, words: &'a [AtomicU64], access: SlotAccess) -> Self {
        Memslot {
            base,
            words,
            access,
        }
    }

    /// Guest-physical base address.
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub const fn size(&self) -> u64 {
        (self.words.len() as u64) * 8
    }

    /// Access rights.
    pub const fn access(&self) -> SlotAccess {
        self.access
    }

    /// The backing words.
    pub const fn words(&self) -> &'a [AtomicU64] {
        self.words
    }

    /// The word holding `address` if it is 8-byte aligned and this slot
    /// has it. One compare for both: the base is aligned, so the offset's
    /// low three bits are the address's, and rotated to the top they make
    /// a misaligned offset larger than any slot.
    #[inline]
    fn aligned_word_at(&self, address: u64) -> Option<&'a AtomicU64> {
        let index = address.wrapping_sub(self.base).rotate_right(3);
        usize::try_from(index).ok().and_then(|i| self.words.get(i))
    }

    /// The word holding the 8-byte aligned `address`, if this slot has it.
    #[inline]
    fn word_at(&self, address: u64) -> Option<&'a AtomicU64> {
        // Below the base, the wrapped offset is huge and misses too.
        let index = address.wrapping_sub(self.base) / 8;
        usize::try_from(index).ok().and_then(|i| self.words.get(i))
    }
}

/// A memslot set that cannot be used, with the offending slot(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemslotError {
    /// A slot's base is not 8-byte aligned.
    Misaligned {
        /// The slot's base address.
        base: u64,
    },
    /// A slot has no words.
    Empty {
        /// The slot's base address.
        base: u64,
    },
    /// A slot runs past the end of the 64-bit address space.
    WrapsAround {
        /// The slot's base address.
        base: u64,
    },
    /// Two slots overlap.
    Overlap {
        /// Base of the lower slot.
        first: u64,
        /// Base of the slot that starts inside it.
        second: u64,
    },
}

impl fmt::Display for MemslotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemslotError::Misaligned { base } => {
                write!(f, "memslot at {base:#x} is not 8-byte aligned")
            }
            MemslotError::Empty { base } => write!(f, "memslot at {base:#x} is empty"),
            MemslotError::WrapsAround { base } => {
                write!(
                    f,
                    "memslot at {base:#x} runs past the end of the address space"
                )
            }
            MemslotError::Overlap { first, second } => {
                write!(f, "memslots at {first:#x} and {second:#x} overlap")
            }
        }
    }
}

/// Non-overlapping memslots, sorted by base; lookup is a binary search.
#[derive(Clone, Copy, Debug)]
pub struct Memslots<'a> {
    slots: &'a [Memslot<'a>],
    /// A copy of the largest slot, tried first by every read (an empty
    /// one if there are no slots), at a fixed place in `self` rather than
    /// at an index: a walk's loop can then keep its base, length and
    /// words in registers across levels, and each level's read is a
    /// subtract, a rotate, a compare and an indexed load.
    primary: Memslot<'a>,
}

impl<'a> Memslots<'a> {
    /// Validate `slots` and sort them in place by base address.
    pub fn new(slots: &'a mut [Memslot<'a>]) -> Result<Self, MemslotError> {
        for slot in slots.iter() {
            if !slot.base.is_multiple_of(8) {
                return Err(MemslotError::Misaligned { base: slot.base });
            }
            if slot.words.is_empty() {
                return Err(MemslotError::Empty { base: slot.base });
            }
            // The last byte must be addressable: base + size - 1 <= u64::MAX.
            let last_word = (slot.words.len() as u64 - 1).checked_mul(8);
            if last_word
                .and_then(|w| slot.base.checked_add(w))
                .and_then(|a| a.checked_add(7))
                .is_none()
            {
                return Err(MemslotError::WrapsAround { base: slot.base });
            }
        }
        slots.sort_unstable_by_key(|s| s.base);
        for pair in slots.windows(2) {
            let first_last = pair[0].base + (pair[0].size() - 1);
            if pair[1].base <= first_last {
                return Err(MemslotError::Overlap {
                    first: pair[0].base,
                    second: pair[1].base,
                });
            }
        }
        let largest = (0..slots.len())
            .max_by_key(|&i| slots[i].words.len())
            .unwrap_or(0);
        let primary =
            slots
                .get(largest)
                .copied()
                .unwrap_or(Memslot::new(0, &[], SlotAccess::ReadOnly));
        Ok(Memslots { slots, primary })
    }

    /// The slots, sorted by base.
    pub const fn slots(&self) -> &'a [Memslot<'a>] {
        self.slots
    }

    /// The slot containing `address`, in O(log n).
    #[inline]
    pub fn find(&self, address: u64) -> Option<&'a Memslot<'a>> {
        let (_, slot) = self.candidate(address).ok()?;
        (address - slot.base < slot.size()).then_some(slot)
    }

    /// The word at `address` and its slot's access: the largest slot
    /// first (its copy at a fixed place in `self`, as in
    /// [`GuestMemory::read_descriptor_hinted`]), then the O(log n) search.
    #[inline]
    fn word(&self, address: u64) -> Result<(SlotAccess, &'a AtomicU64), MemoryError> {
        if let Some(word) = self.primary.aligned_word_at(address) {
            return Ok((self.primary.access, word));
        }
        if !address.is_multiple_of(8) {
            return Err(MemoryError::Misaligned);
        }
        let (_, slot) = self.candidate(address)?;
        slot.word_at(address)
            .ok_or(MemoryError::OutsideMemslots)
            .map(|word| (slot.access, word))
    }

    /// The slot with the greatest base <= `address` (which may not reach
    /// it), with its index.
    #[inline]
    fn candidate(&self, address: u64) -> Result<(usize, &'a Memslot<'a>), MemoryError> {
        // A branching binary search rather than partition_point's
        // branch-free one: a walk's reads keep landing in the same slot, so
        // the branches predict and the probes' loads overlap instead of
        // forming a chain of dependent loads on the walk's critical path.
        let (mut low, mut high) = (0, self.slots.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.slots.get(middle) {
                Some(slot) if slot.base <= address => low = middle + 1,
                _ => high = middle,
            }
        }
        let index = low.checked_sub(1).ok_or(MemoryError::OutsideMemslots)?;
        let slot = self.slots.get(index).ok_or(MemoryError::OutsideMemslots)?;
        Ok((index, slot))
    }

    /// [`GuestMemory::read_descriptor_hinted`] (and a batched read) once
    /// the largest slot missed.
    #[cold]
    #[inline(never)]
    fn read_beyond_primary(&self, address: u64, hint: &mut SlotHint) -> Result<u64, MemoryError> {
        self.word_hinted_beyond_primary(address, hint)
            .map(|word| word.load(Ordering::Acquire))
    }

    /// The word at `address` once the largest slot missed: the slot
    /// `hint` names, then the search, which records where it found the
    /// word in `hint`. Out of line, so a walk's loop stays small.
    #[cold]
    #[inline(never)]
    fn word_hinted_beyond_primary(
        &self,
        address: u64,
        hint: &mut SlotHint,
    ) -> Result<&'a AtomicU64, MemoryError> {
        if !address.is_multiple_of(8) {
            return Err(MemoryError::Misaligned);
        }
        if let Some(word) = hint
            .0
            .checked_sub(1)
            .and_then(|index| self.slots.get(index))
            .and_then(|slot| slot.word_at(address))
        {
            return Ok(word);
        }
        let (index, slot) = self.candidate(address)?;
        let word = slot.word_at(address).ok_or(MemoryError::OutsideMemslots)?;
        hint.0 = index + 1;
        Ok(word)
    }

    /// Store a raw value (host-side setup and tests; the walker never calls it).
    pub fn store_raw(&self, address: u64, raw: u64) -> Result<(), MemoryError> {
        let (_, word) = self.word(address)?;
        word.store(raw, Ordering::Release);
        Ok(())
    }
}

impl GuestMemory for Memslots<'_> {
    #[inline]
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        // Acquire: a table descriptor published after its next-level table
        // (L1 writes the table, barrier, then the descriptor) must not let a
        // later read of that table see older contents. `word` tries the
        // largest slot first, as a hinted read does (callers without a
        // hint, such as a walk through shadow-mmu's cached-path overlay,
        // read mostly there).
        self.word(address).map(|(_, w)| w.load(Ordering::Acquire))
    }

    /// The largest slot is tried first, then the slot the hint names (1 +
    /// the index of the slot an earlier read found beyond the largest; 0:
    /// none), then the O(log n) search, which updates the hint.
    #[inline]
    fn read_descriptor_hinted(
        &self,
        address: u64,
        hint: &mut SlotHint,
    ) -> Result<u64, MemoryError> {
        // The largest slot's read inline; the rest (a call that returns
        // the value, not the word, so the result stays in registers).
        match self.primary.aligned_word_at(address) {
            Some(word) => Ok(word.load(Ordering::Acquire)),
            None => self.read_beyond_primary(address, hint),
        }
    }

    /// One pass: each address is tried against the largest slot inline
    /// (subtract, rotate, compare) and its word loaded at once; an address
    /// beyond it goes out of line (the hint, then the search). A batch's
    /// tables are normally all in the largest slot, so the loop is a few
    /// instructions a load, the loads independent of each other: the core
    /// has the whole batch's cache misses in flight at once. They are
    /// Relaxed, followed by one Acquire fence: each is then an acquire
    /// read as in [`GuestMemory::read_descriptor`], without a per-load
    /// barrier serialising them (LDAR on arm64).
    fn read_descriptors(&self, addresses: &[u64], values: &mut [Result<u64, MemoryError>]) {
        let mut hint = SlotHint::default();
        // `zip`: values without an address are left alone.
        for (address, value) in addresses.iter().zip(values.iter_mut()) {
            // A store in each arm: one store of the merged arms went
            // through a stack temporary, byte by byte.
            match self.primary.aligned_word_at(*address) {
                Some(word) => *value = Ok(word.load(Ordering::Relaxed)),
                None => *value = self.read_beyond_primary(*address, &mut hint),
            }
        }
        fence(Ordering::Acquire);
    }

    #[inline]
    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        let (access, word) = self.word(address)?;
        if access == SlotAccess::ReadOnly {
            return Err(MemoryError::ReadOnly);
        }
        // Success Acquire: the swap may succeed on a later, equal store than
        // the one the walk read (L1 moved a table descriptor away and back),
        // and the walk goes on into that table (loom: haft_table_af_update_
        // on_a_restored_descriptor_...). Success Release pairs with L1
        // reading the AF/dirty bits on hardware. The failure Acquire is
        // stronger than needed: a lost swap restarts the walk, which
        // rereads every level with Acquire loads.
        Ok(word.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }
}

/// Fill `words` from `bytes` (8 bytes per word, in memory order) for loading
/// an image into a memslot. The lengths must match exactly: no silent
/// truncation or padding.
pub fn fill_words_from_bytes(words: &[AtomicU64], bytes: &[u8]) -> Result<(), LengthMismatch> {
    if bytes.len() != words.len() * 8 {
        return Err(LengthMismatch {
            bytes: bytes.len(),
            words: words.len(),
        });
    }
    for (word, chunk) in words.iter().zip(bytes.chunks_exact(8)) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(raw), Ordering::Relaxed);
    }
    Ok(())
}

/// [`fill_words_from_bytes`] was given a byte slice that is not 8 x the words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthMismatch {
    /// Bytes given.
    pub bytes: usize,
    /// Words given.
    pub words: usize,
}

impl fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes cannot fill {} 8-byte words exactly",
            self.bytes, self.words
        )
    }
}
