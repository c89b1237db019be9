//! Single-producer single-consumer rings of [`Record`]s in shared memory.
//!
//! Layout: a read-only header line, the producer's line (published tail,
//! claim flag), the consumer's line (head, claim flag), then `N` slots of
//! one 64-byte cache line each: a 32-bit stamp and the record. The producer
//! of position `p` writes the record into slot `p mod N` and then stores the
//! stamp `p + 1` (Release); the consumer waits for exactly that stamp
//! (Acquire), so a record crosses between cores as a single cache line and
//! the consumer never reads the producer's tail on the fast path. The
//! consumer releases slots by storing its head (Release) once per drained
//! batch; the producer reloads the head (Acquire) only when its cached copy
//! says the ring is full. A full ring refuses records (backpressure); it
//! never overwrites or drops one.
//!
//! Positions are `u32` and wrap; `N` is a power of two no larger than 2^31,
//! so `position mod N` is a mask and stamps of successive laps differ.
//!
//! A ring lives either in a caller-provided region of shared memory
//! ([`Ring::init_in`] / [`Ring::attach`], zerocopy casts, no `unsafe`) or
//! in an ordinary Rust value ([`RingBuffer`]); either way it is used
//! through the [`Ring`] view. Each side claims its role
//! ([`Ring::producer`], [`Ring::consumer`]); the claim lives in the ring, so
//! at most one producer and one consumer exist at a time even across
//! address spaces, which is what makes the unsynchronised slot accesses
//! sound.

use crate::message::Record;
use crate::sync::{prefetch_for_write, spin_hint, AtomicU32, Ordering, UnsafeCell};

/// Bytes per cache line the layout pads to: 128 covers the adjacent-line
/// prefetch pairs of x86 and the 128-byte lines of some Arm cores.
pub const CACHE_LINE: usize = 128;
/// Identifies an initialised ring region ("UMRG").
pub const RING_MAGIC: u32 = 0x474d_5255;
/// Layout version of a ring region; bumped on any layout change.
pub const RING_LAYOUT_VERSION: u32 = 1;

#[cfg_attr(
    not(loom),
    derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout)
)]
#[derive(PartialEq, Eq)]
#[repr(C, align(128))]
struct HeaderLine {
    magic: u32,
    version: u32,
    capacity: u32,
    slot_size: u32,
    _pad: [u8; CACHE_LINE - 16],
}

#[cfg_attr(
    not(loom),
    derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout)
)]
#[repr(C, align(128))]
struct IndexLine {
    /// The producer's tail (published once per batch) or the consumer's head.
    position: AtomicU32,
    /// 1 while a handle for this role exists.
    claimed: AtomicU32,
    _pad: [u8; CACHE_LINE - 8],
}

#[cfg_attr(
    not(loom),
    derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout)
)]
#[repr(C, align(64))]
struct Slot {
    /// `p + 1` once the record for position `p` is in place.
    stamp: AtomicU32,
    _pad: u32,
    record: UnsafeCell<Record>,
}

// One slot, one cache line (loom's instrumented types are larger).
#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Slot>() == 64);

// SAFETY: a slot's record is only touched through a `Producer` (writes to
// free slots) or a `Consumer` (reads of published slots). The claim flags
// allow at most one of each per ring at a time, and the stamp/head protocol
// orders every write of a slot before the reads of that record and every
// read before the next write of the slot, so shared access never races.
unsafe impl Sync for Slot {}

/// Storage for a ring with `N` slots as one Rust value: a `static`, a
/// field, a heap allocation. [`RingBuffer::ring`] gives the [`Ring`] view.
#[repr(C)]
pub struct RingBuffer<const N: usize> {
    header: HeaderLine,
    producer: IndexLine,
    consumer: IndexLine,
    slots: [Slot; N],
}

impl<const N: usize> core::fmt::Debug for RingBuffer<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.ring().fmt(f)
    }
}

impl<const N: usize> RingBuffer<N> {
    const VALID_CAPACITY: () = assert!(
        N >= 2 && N.is_power_of_two() && N <= MAX_CAPACITY,
        "ring capacity must be a power of two in 2..=2^31"
    );

    /// An empty ring.
    #[cfg(not(loom))]
    pub const fn new() -> RingBuffer<N> {
        let () = Self::VALID_CAPACITY;
        RingBuffer {
            header: HeaderLine::new(N as u32),
            producer: IndexLine::new(),
            consumer: IndexLine::new(),
            slots: [const { Slot::new() }; N],
        }
    }

    /// An empty ring (loom build: loom's atomics are not `const`).
    #[cfg(loom)]
    pub fn new() -> RingBuffer<N> {
        let () = Self::VALID_CAPACITY;
        RingBuffer {
            header: HeaderLine::new(N as u32),
            producer: IndexLine::new(),
            consumer: IndexLine::new(),
            slots: core::array::from_fn(|_| Slot::new()),
        }
    }

    /// The ring stored here.
    pub fn ring(&self) -> Ring<'_> {
        Ring {
            producer: &self.producer,
            consumer: &self.consumer,
            slots: &self.slots,
            mask: (N - 1) as u32,
        }
    }
}

impl<const N: usize> Default for RingBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Largest ring capacity (positions are `u32`).
pub const MAX_CAPACITY: usize = 1 << 31;

/// A single-producer single-consumer ring: a view of its index lines and
/// slots, wherever they live. Cheap to copy; both sides may hold one.
#[derive(Clone, Copy)]
pub struct Ring<'a> {
    producer: &'a IndexLine,
    consumer: &'a IndexLine,
    slots: &'a [Slot],
    mask: u32,
}

impl core::fmt::Debug for Ring<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("tail", &self.producer.position.load(Ordering::Relaxed))
            .field("head", &self.consumer.position.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why a ring cannot be placed in, or attached from, a region, or a role
/// cannot be claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingError {
    /// The capacity is not a power of two in 2..=[`MAX_CAPACITY`].
    Capacity,
    /// The region is too small or not aligned to [`CACHE_LINE`].
    Region,
    /// The region holds no ring with this layout version and capacity.
    Layout,
    /// The region's head and tail are inconsistent (more than the
    /// capacity apart).
    Corrupt,
    /// Another handle already holds this role.
    Claimed,
}

/// A record was refused because the ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Full;

#[cfg(not(loom))]
fn check_capacity(capacity: usize) -> Result<(), RingError> {
    if (2..=MAX_CAPACITY).contains(&capacity) && capacity.is_power_of_two() {
        Ok(())
    } else {
        Err(RingError::Capacity)
    }
}

/// The pieces of a ring region, cast from bytes by zerocopy.
#[cfg(not(loom))]
struct RegionParts<'a> {
    header: &'a mut HeaderLine,
    producer: &'a mut IndexLine,
    consumer: &'a mut IndexLine,
    slots: &'a mut [Slot],
    rest: &'a mut [u8],
}

#[cfg(not(loom))]
fn split_region(region: &mut [u8], capacity: usize) -> Result<RegionParts<'_>, RingError> {
    use zerocopy::FromBytes;
    check_capacity(capacity)?;
    let (header, rest) = HeaderLine::mut_from_prefix(region).map_err(|_| RingError::Region)?;
    let (producer, rest) = IndexLine::mut_from_prefix(rest).map_err(|_| RingError::Region)?;
    let (consumer, rest) = IndexLine::mut_from_prefix(rest).map_err(|_| RingError::Region)?;
    let (slots, rest) =
        <[Slot]>::mut_from_prefix_with_elems(rest, capacity).map_err(|_| RingError::Region)?;
    Ok(RegionParts {
        header,
        producer,
        consumer,
        slots,
        rest,
    })
}

impl<'a> Ring<'a> {
    /// Bytes a ring of `capacity` slots occupies in a region.
    pub const fn region_size(capacity: usize) -> usize {
        3 * CACHE_LINE + capacity * core::mem::size_of::<Slot>()
    }

    /// Number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Builds an empty ring of `capacity` slots at the start of `region`
    /// (shared memory the caller owns, aligned to [`CACHE_LINE`]) and
    /// returns it with the rest of the region.
    #[cfg(not(loom))]
    pub fn init_in(
        region: &'a mut [u8],
        capacity: usize,
    ) -> Result<(Ring<'a>, &'a mut [u8]), RingError> {
        use zerocopy::FromZeros;
        let parts = split_region(region, capacity)?;
        parts.producer.zero();
        parts.consumer.zero();
        parts.slots.zero();
        *parts.header = HeaderLine::new(capacity as u32);
        Ok((
            Ring::from_parts(parts.producer, parts.consumer, parts.slots),
            parts.rest,
        ))
    }

    /// Uses a ring that the other side already built in `region` with
    /// [`Ring::init_in`] (the same memory, possibly mapped at another
    /// address), after checking its header and indices.
    #[cfg(not(loom))]
    pub fn attach(
        region: &'a mut [u8],
        capacity: usize,
    ) -> Result<(Ring<'a>, &'a mut [u8]), RingError> {
        let parts = split_region(region, capacity)?;
        if *parts.header != HeaderLine::new(capacity as u32) {
            return Err(RingError::Layout);
        }
        let tail = parts.producer.position.load(Ordering::Acquire);
        let head = parts.consumer.position.load(Ordering::Acquire);
        if tail.wrapping_sub(head) as usize > capacity {
            return Err(RingError::Corrupt);
        }
        Ok((
            Ring::from_parts(parts.producer, parts.consumer, parts.slots),
            parts.rest,
        ))
    }

    #[cfg(not(loom))]
    fn from_parts(producer: &'a IndexLine, consumer: &'a IndexLine, slots: &'a [Slot]) -> Ring<'a> {
        Ring {
            producer,
            consumer,
            mask: (slots.len() - 1) as u32,
            slots,
        }
    }

    /// Claims the producer role.
    pub fn producer(&self) -> Result<Producer<'a>, RingError> {
        claim(&self.producer.claimed)?;
        // The tail's Acquire is stronger than needed: the claim's Acquire
        // already orders this after the previous producer's last tail store
        // (its drop releases the claim after it). The head's is needed: it
        // orders the consumer's reads of the slots it freed before our
        // writes to them (loom: new_producer_reuses_a_slot_only_after_...).
        let tail = self.producer.position.load(Ordering::Acquire);
        let head = self.consumer.position.load(Ordering::Acquire);
        Ok(Producer {
            ring: *self,
            tail,
            published: tail,
            head_cache: head,
        })
    }

    /// Claims the consumer role.
    pub fn consumer(&self) -> Result<Consumer<'a>, RingError> {
        claim(&self.consumer.claimed)?;
        // Stronger than needed: the claim's Acquire already orders this
        // after the previous consumer's last head store (see `producer`).
        let head = self.consumer.position.load(Ordering::Acquire);
        Ok(Consumer {
            ring: *self,
            head,
            released: head,
        })
    }

    #[inline]
    fn slot(&self, position: u32) -> &'a Slot {
        &self.slots[(position & self.mask) as usize]
    }
}

fn claim(flag: &AtomicU32) -> Result<(), RingError> {
    flag.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .map(|_| ())
        .map_err(|_| RingError::Claimed)
}

impl HeaderLine {
    const fn new(capacity: u32) -> HeaderLine {
        HeaderLine {
            magic: RING_MAGIC,
            version: RING_LAYOUT_VERSION,
            capacity,
            slot_size: core::mem::size_of::<Slot>() as u32,
            _pad: [0; CACHE_LINE - 16],
        }
    }
}

impl IndexLine {
    #[cfg(not(loom))]
    const fn new() -> IndexLine {
        IndexLine {
            position: AtomicU32::new(0),
            claimed: AtomicU32::new(0),
            _pad: [0; CACHE_LINE - 8],
        }
    }

    #[cfg(loom)]
    fn new() -> IndexLine {
        IndexLine {
            position: AtomicU32::new(0),
            claimed: AtomicU32::new(0),
            _pad: [0; CACHE_LINE - 8],
        }
    }
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Slot {
        Slot {
            stamp: AtomicU32::new(0),
            _pad: 0,
            record: UnsafeCell::new(Record::ZERO),
        }
    }

    #[cfg(loom)]
    fn new() -> Slot {
        Slot {
            stamp: AtomicU32::new(0),
            _pad: 0,
            record: UnsafeCell::new(Record::ZERO),
        }
    }
}

/// The writing end of a ring. At most one exists per ring.
pub struct Producer<'a> {
    ring: Ring<'a>,
    /// Next position to write.
    tail: u32,
    /// Tail last stored to the shared line.
    published: u32,
    /// Last head read from the consumer's line.
    head_cache: u32,
}

impl core::fmt::Debug for Producer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .field("head_cache", &self.head_cache)
            .finish()
    }
}

impl Producer<'_> {
    /// Free slots: a lower bound from the cached head, which is reread from
    /// the consumer's line only when the cached copy shows none (so the
    /// result is 0 only when the ring is really full).
    #[inline]
    pub fn free_slots(&mut self) -> usize {
        let capacity = self.ring.capacity();
        let used = self.tail.wrapping_sub(self.head_cache) as usize;
        if used < capacity {
            return capacity - used;
        }
        self.head_cache = self.ring.consumer.position.load(Ordering::Acquire);
        // A head beyond the tail, or more than the capacity behind it, can
        // only come from corrupted shared memory: treat the ring as full.
        capacity.saturating_sub(self.tail.wrapping_sub(self.head_cache) as usize)
    }

    /// Appends one record, visible to the consumer at once. A full ring
    /// refuses it; the caller keeps it and retries (backpressure).
    #[inline]
    pub fn push(&mut self, record: &Record) -> Result<(), Full> {
        self.push_in_place(|slot| *slot = *record)
    }

    /// Appends one record that `fill` writes straight into the slot (it
    /// must write every byte: the slot holds an old record). Saves a copy
    /// on the hot path. A full ring refuses it without calling `fill`.
    #[inline]
    pub fn push_in_place(&mut self, fill: impl FnOnce(&mut Record)) -> Result<(), Full> {
        if self.free_slots() == 0 {
            return Err(Full);
        }
        self.write(fill);
        self.publish_tail();
        Ok(())
    }

    /// Appends as many of `records` as fit, in order, and returns how many;
    /// the caller keeps the rest. The tail line is written once per batch.
    pub fn push_batch(&mut self, records: &[Record]) -> usize {
        self.push_with(records.len(), |i, slot| *slot = records[i])
    }

    /// Appends up to `max` records, as many as fit, written in order
    /// straight into their slots by `fill(0, slot)`, `fill(1, slot)`, ...
    /// (every byte, as for [`Producer::push_in_place`]), and returns how
    /// many were appended. The tail line is written once per batch.
    pub fn push_with(&mut self, max: usize, mut fill: impl FnMut(usize, &mut Record)) -> usize {
        let mut free = self.free_slots();
        // Ask for every line of the batch at once: the consumer read them
        // last, and one store miss at a time would serialise the batch.
        // (The first line is asked for by its own stores right away.)
        for i in 1..max.min(free) {
            prefetch_for_write(self.ring.slot(self.tail.wrapping_add(i as u32)));
        }
        let mut sent = 0;
        while sent < max {
            if free == 0 {
                free = self.free_slots();
                if free == 0 {
                    break;
                }
            }
            self.write(|slot| fill(sent, slot));
            free -= 1;
            sent += 1;
        }
        self.publish_tail();
        sent
    }

    /// Appends one record, spinning while the ring is full (the consumer
    /// frees slots without needing anything from this side).
    #[inline]
    pub fn push_blocking(&mut self, record: &Record) {
        self.push_blocking_in_place(|slot| *slot = *record)
    }

    /// [`Producer::push_in_place`], spinning while the ring is full.
    #[inline]
    pub fn push_blocking_in_place(&mut self, fill: impl FnOnce(&mut Record)) {
        while self.free_slots() == 0 {
            spin_hint();
        }
        self.write(fill);
        self.publish_tail();
    }

    /// Lets `fill` write the record at the tail, then stamps it. Caller
    /// checked space.
    #[inline]
    fn write(&mut self, fill: impl FnOnce(&mut Record)) {
        let slot = self.ring.slot(self.tail);
        slot.record.with_mut(|ptr| {
            // SAFETY: `free_slots` saw the consumer's head (Acquire) past
            // this slot's previous position, so the consumer has finished
            // reading it and will not read it again until the stamp below;
            // this handle is the only producer (claim flag). `fill` cannot
            // keep the reference beyond this call.
            fill(unsafe { &mut *ptr })
        });
        self.tail = self.tail.wrapping_add(1);
        slot.stamp.store(self.tail, Ordering::Release);
    }

    /// Makes the tail visible to observers (not needed by the consumer,
    /// which follows the stamps; it lets a new handle resume here). The
    /// Release matters only to `Ring::attach`'s check: a new handle in this
    /// address space is ordered after it by the claim flag.
    #[inline]
    fn publish_tail(&mut self) {
        if self.published != self.tail {
            self.ring
                .producer
                .position
                .store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
    }
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        self.publish_tail();
        self.ring.producer.claimed.store(0, Ordering::Release);
    }
}

/// The reading end of a ring. At most one exists per ring.
pub struct Consumer<'a> {
    ring: Ring<'a>,
    /// Next position to read.
    head: u32,
    /// Head last stored to the shared line.
    released: u32,
}

impl core::fmt::Debug for Consumer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .finish()
    }
}

impl Consumer<'_> {
    /// Whether a record is waiting (one Acquire load of the next slot's
    /// stamp). Usable as a doorbell's readiness check.
    #[inline]
    pub fn has_record(&self) -> bool {
        self.ring.slot(self.head).stamp.load(Ordering::Acquire) == self.head.wrapping_add(1)
    }

    /// Calls `f` on up to `max` waiting records, in order, in place, then
    /// releases their slots to the producer with one store. Returns how
    /// many were drained.
    #[inline]
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&Record)) -> usize {
        let mut drained = 0;
        while drained < max && self.has_record() {
            self.read_head(&mut f);
            self.head = self.head.wrapping_add(1);
            drained += 1;
        }
        self.release();
        drained
    }

    /// Hands the next waiting record, in place, to `f` and returns what `f`
    /// made of it, releasing the slot; `None` (without calling `f`) if no
    /// record is waiting. The single-record [`Consumer::drain`], with a
    /// result instead of a side effect.
    #[inline]
    pub fn take_with<R>(&mut self, f: impl FnOnce(&Record) -> R) -> Option<R> {
        if !self.has_record() {
            return None;
        }
        let result = self.read_head(f);
        self.head = self.head.wrapping_add(1);
        self.release();
        Some(result)
    }

    /// Runs `f` on the record at the head. Caller checked `has_record`.
    #[inline(always)]
    fn read_head<R>(&self, f: impl FnOnce(&Record) -> R) -> R {
        self.ring.slot(self.head).record.with(|ptr| {
            // SAFETY: the caller saw the stamp (Acquire), so the producer
            // finished writing this slot; it will not write it again until
            // the head released after this read passes it; this handle is
            // the only consumer (claim flag). `f` cannot keep the reference.
            f(unsafe { &*ptr })
        })
    }

    /// Takes the next record, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<Record> {
        self.take_with(|record| *record)
    }

    #[inline]
    fn release(&mut self) {
        if self.released != self.head {
            self.ring
                .consumer
                .position
                .store(self.head, Ordering::Release);
            self.released = self.head;
        }
    }
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        self.release();
        self.ring.consumer.claimed.store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::message::{RecordHeader, BODY_SIZE};

    fn record(n: u64) -> Record {
        Record {
            header: RecordHeader {
                version: 1,
                kind: 1,
                vcpu: 0,
                seq: n,
            },
            body: [n as u8; BODY_SIZE],
        }
    }

    #[test]
    fn fifo_across_many_wraps_and_backpressure() {
        let buffer = RingBuffer::<4>::new();
        let ring = buffer.ring();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        for round in 0..1000u64 {
            let batch: Vec<Record> = (0..(round % 7)).map(|i| record(next_in + i)).collect();
            let sent = tx.push_batch(&batch);
            assert!(sent <= 4);
            next_in += sent as u64;
            if round % 3 == 0 {
                // A lower bound from the cached head, exact when it is zero.
                let exact = 4 - (next_in - next_out) as usize;
                let free = tx.free_slots();
                assert!(free <= exact && (free == 0) == (exact == 0));
            }
            rx.drain((round % 5) as usize, |r| {
                assert_eq!(r.header.seq, next_out);
                next_out += 1;
            });
        }
        while let Some(r) = rx.pop() {
            assert_eq!(r.header.seq, next_out);
            next_out += 1;
        }
        assert_eq!(next_in, next_out);
    }

    #[test]
    fn take_with_hands_over_one_record_and_frees_its_slot() {
        let buffer = RingBuffer::<2>::new();
        let mut tx = buffer.ring().producer().unwrap();
        let mut rx = buffer.ring().consumer().unwrap();
        let mut calls = 0;
        assert_eq!(
            rx.take_with(|r| {
                calls += 1;
                r.header.seq
            }),
            None
        );
        assert_eq!(calls, 0, "nothing waiting: f is not called");
        tx.push(&record(3)).unwrap();
        tx.push(&record(4)).unwrap();
        assert_eq!(tx.push(&record(5)), Err(Full));
        assert_eq!(rx.take_with(|r| r.header.seq), Some(3));
        assert_eq!(tx.push(&record(5)), Ok(()), "the taken slot is free");
        assert_eq!(rx.take_with(|r| r.header.seq), Some(4));
        assert_eq!(rx.take_with(|r| r.header.seq), Some(5));
        assert_eq!(rx.take_with(|r| r.header.seq), None);
    }

    #[test]
    fn full_ring_refuses_and_keeps_everything() {
        let buffer = RingBuffer::<2>::new();
        let mut tx = buffer.ring().producer().unwrap();
        let mut rx = buffer.ring().consumer().unwrap();
        assert_eq!(tx.push(&record(0)), Ok(()));
        assert_eq!(tx.push(&record(1)), Ok(()));
        assert_eq!(tx.push(&record(2)), Err(Full));
        assert_eq!(tx.push_batch(&[record(2), record(3)]), 0);
        assert_eq!(rx.pop().map(|r| r.header.seq), Some(0));
        assert_eq!(tx.push_batch(&[record(2), record(3)]), 1);
        assert_eq!(rx.pop().map(|r| r.header.seq), Some(1));
        assert_eq!(rx.pop().map(|r| r.header.seq), Some(2));
        assert_eq!(rx.pop(), None);
    }

    #[test]
    fn roles_are_exclusive_and_handles_resume() {
        let buffer = RingBuffer::<8>::new();
        let ring = buffer.ring();
        let mut tx = ring.producer().unwrap();
        assert_eq!(ring.producer().err(), Some(RingError::Claimed));
        tx.push(&record(5)).unwrap();
        drop(tx);
        let mut tx = ring.producer().unwrap();
        tx.push(&record(6)).unwrap();
        let mut rx = ring.consumer().unwrap();
        assert_eq!(ring.consumer().err(), Some(RingError::Claimed));
        assert_eq!(rx.pop().unwrap().header.seq, 5);
        drop(rx);
        let mut rx = ring.consumer().unwrap();
        assert_eq!(rx.pop().unwrap().header.seq, 6);
        assert_eq!(rx.pop(), None);
    }

    const REGION: usize = 2 * Ring::region_size(4) + 64;

    #[repr(C, align(128))]
    struct Region([u8; REGION]);

    #[test]
    fn rings_placed_in_a_region_work_and_tile_it() {
        let mut region = Region([0xa5; REGION]);
        let (first, rest) = Ring::init_in(&mut region.0, 4).unwrap();
        assert_eq!(rest.len(), Ring::region_size(4) + 64);
        let (second, tail) = Ring::init_in(rest, 4).unwrap();
        assert_eq!(tail.len(), 64);
        assert_eq!(Ring::init_in(tail, 4).err(), Some(RingError::Region));
        let mut tx = first.producer().unwrap();
        tx.push(&record(1)).unwrap();
        let mut rx = second.consumer().unwrap();
        assert_eq!(rx.pop(), None);
        drop(rx);
        let mut rx = first.consumer().unwrap();
        assert_eq!(rx.pop().unwrap().header.seq, 1);
    }

    #[test]
    fn attach_sees_what_the_other_side_published() {
        let mut region = Region([0; REGION]);
        assert_eq!(
            Ring::attach(&mut region.0, 4).err(),
            Some(RingError::Layout)
        );
        {
            let (ring, _) = Ring::init_in(&mut region.0, 4).unwrap();
            let mut tx = ring.producer().unwrap();
            tx.push_batch(&[record(7), record(8)]);
        }
        {
            let (ring, _) = Ring::attach(&mut region.0, 4).unwrap();
            // The producer handle was dropped with the region borrow; the
            // attachment resumes at the published tail.
            let mut rx = ring.consumer().unwrap();
            assert_eq!(rx.pop().unwrap().header.seq, 7);
            assert_eq!(rx.pop().unwrap().header.seq, 8);
            assert_eq!(rx.pop(), None);
            let mut tx = ring.producer().unwrap();
            tx.push(&record(9)).unwrap();
            assert_eq!(rx.pop().unwrap().header.seq, 9);
        }
        assert_eq!(
            Ring::attach(&mut region.0, 8).err(),
            Some(RingError::Layout)
        );
        assert_eq!(
            Ring::attach(&mut region.0, 3).err(),
            Some(RingError::Capacity)
        );
        assert_eq!(
            Ring::attach(&mut region.0[8..], 4).err(),
            Some(RingError::Region)
        );
        // Head and tail more than the capacity apart.
        region.0[CACHE_LINE..CACHE_LINE + 4].copy_from_slice(&20u32.to_ne_bytes());
        assert_eq!(
            Ring::attach(&mut region.0, 4).err(),
            Some(RingError::Corrupt)
        );
    }

    #[test]
    fn positions_wrap_past_u32_max() {
        let mut region = Region([0; REGION]);
        Ring::init_in(&mut region.0, 4).unwrap();
        // Start both indices just below the u32 wrap.
        let start = (u32::MAX - 2).to_ne_bytes();
        region.0[CACHE_LINE..CACHE_LINE + 4].copy_from_slice(&start);
        region.0[2 * CACHE_LINE..2 * CACHE_LINE + 4].copy_from_slice(&start);
        let (ring, _) = Ring::attach(&mut region.0, 4).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        assert!(!rx.has_record(), "stale zero stamps are not records");
        let mut next = 0;
        for seq in 0..20 {
            tx.push(&record(seq)).unwrap();
            if seq % 3 == 2 {
                while let Some(r) = rx.pop() {
                    assert_eq!(r.header.seq, next);
                    next += 1;
                }
            }
        }
        while let Some(r) = rx.pop() {
            assert_eq!(r.header.seq, next);
            next += 1;
        }
        assert_eq!(next, 20);
    }

    #[test]
    fn two_threads_transfer_in_order() {
        let buffer = RingBuffer::<16>::new();
        let ring = buffer.ring();
        const COUNT: u64 = 200_000;
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut tx = ring.producer().unwrap();
                let mut n = 0;
                while n < COUNT {
                    n += tx.push_with(5.min((COUNT - n) as usize), |i, slot| {
                        *slot = record(n + i as u64)
                    }) as u64;
                }
            });
            let mut rx = ring.consumer().unwrap();
            let mut expected = 0;
            while expected < COUNT {
                rx.drain(8, |r| {
                    assert_eq!(r.header.seq, expected);
                    assert_eq!(r.body, [expected as u8; BODY_SIZE]);
                    expected += 1;
                });
            }
        });
    }
}
