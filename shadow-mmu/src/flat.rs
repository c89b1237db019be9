//! A flat hash map for the writer-side indexes (the reverse map and the
//! block indexes): open addressing with linear probing in one array of
//! `(key, value)` slots, so the slot a key lives in (almost always its home
//! slot or the next) is an address known from the key alone. That is what
//! lets an invalidation ask for every line it will read before it reads
//! any ([`FlatMap::prefetch`]); a general-purpose map keeps its control
//! bytes and its entries apart and does not expose where either lies.
//!
//! - A vacant slot holds a key no entry ever has ([`FlatKey::vacant`]), so a
//!   slot is exactly its key and value (no occupancy flag to pad it).
//! - Removal shifts the following entries of the run back (no tombstones),
//!   so probe runs never grow with churn.
//! - Its owners size it when they are made ([`FlatMap::with_capacity`],
//!   from the memory budget) for the most entries they can ever hold, so it
//!   never allocates on a fault's way. Growth (doubling when it would be
//!   more than 3/4 full) remains only as a fallback no owner reaches:
//!   [`FlatMap::growths`] counts it, and the tests check it stays zero.
//!   Used only under its owner's lock.
//! - Keys are L2 and L1 addresses, which the guest chooses. A fixed hash
//!   lets it pick thousands of pages that share one home slot (a few lines
//!   of lattice reduction for a multiplicative hash), and every operation
//!   on that map then scans one long run under a lock the service shares.
//!   So each map mixes its keys with its own secret key ([`HashKey`]),
//!   drawn from the entropy the embedder gives [`mix_in_entropy`] (hv:
//!   FEAT_RNG's RNDR, or the boot-time counter without it).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// A key of a [`FlatMap`].
pub(crate) trait FlatKey: Copy + Eq {
    /// The key of a vacant slot: no stored entry ever has it.
    fn vacant() -> Self;
    /// Whether this is the vacant key.
    fn is_vacant(&self) -> bool;
    /// The key as one word: different keys give different words (two keys
    /// with the same word share their home slot in every map). The stamp
    /// is not part of it.
    fn flat_word(&self) -> u64;
    /// Whether the key carries a clear stamp in spare bits, so that
    /// [`FlatMap::clear`] costs O(1): a slot whose stamp is not the map's
    /// current one is vacant.
    const STAMPED: bool = false;
    /// The key's stamp (keys that are not [`FlatKey::STAMPED`]: 0).
    fn stamp(&self) -> u32 {
        0
    }
    /// The key with `stamp` (keys that are not stamped: itself).
    fn with_stamp(self, stamp: u32) -> Self {
        let _ = stamp;
        self
    }
}

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser: a bijection that spreads every input bit.
const fn splitmix64(state: u64) -> u64 {
    let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where every map draws its key from. Not a modelled protocol (a draw
/// only needs to differ from the others), so the plain atomic, also under
/// loom. The initial value only keeps maps of a process that never mixes
/// in entropy (unit tests) apart from each other.
static KEY_STATE: AtomicU64 = AtomicU64::new(0x243f_6a88_85a3_08d3);

/// Mixes `entropy` into the source of the maps' hash keys; maps that
/// allocate afterwards use keys the guest cannot predict from its own
/// observations as long as `entropy` is secret. `Service::new` calls it
/// with [`crate::service::ServiceConfig::hash_seed`].
pub(crate) fn mix_in_entropy(entropy: u64) {
    KEY_STATE.fetch_xor(splitmix64(entropy), Ordering::Relaxed);
}

/// A map's secret hashing key: the home slot of a key word `w` is the top
/// bits of the folded 128-bit product `(w ^ xor) * mul` (the mixing step of
/// foldhash): one multiplication, as cheap as the Fibonacci hash it
/// replaces, but where the slots of two words depend on the key.
#[derive(Clone, Copy, Debug)]
struct HashKey {
    xor: u64,
    mul: u64,
}

impl HashKey {
    /// Before a map's first allocation (no slot is ever taken from it).
    const UNDRAWN: HashKey = HashKey { xor: 0, mul: 0 };

    fn draw() -> HashKey {
        let state = KEY_STATE.fetch_add(GOLDEN, Ordering::Relaxed);
        HashKey {
            xor: splitmix64(state),
            // Odd, so no input bit is multiplied away.
            mul: splitmix64(state ^ 0x1319_8a2e_0370_7344) | 1,
        }
    }

    fn hash(self, word: u64) -> u64 {
        let product = u128::from(word ^ self.xor) * u128::from(self.mul);
        (product as u64) ^ ((product >> 64) as u64)
    }
}

/// Where a [`FlatMap`]'s home slots lay when the hint was taken
/// ([`FlatMap::slot_hint`]): its slot array's address, length and hashing
/// key, as plain numbers. A thread that does not hold the lock guarding the
/// map asks with it for the line a later probe (under the lock) will read
/// first, so that the memory round trip overlaps other work. A map sized
/// when made never moves its slots; should it grow, the hint names the old
/// array, and its prefetches are wasted (a prefetch of any address has no
/// effect but on timing, see `crate::prefetch`). It reads nothing.
pub(crate) struct SlotHint<K> {
    base: usize,
    slots: usize,
    shift: u32,
    key: HashKey,
    keys: core::marker::PhantomData<fn(K)>,
}

impl<K> Clone for SlotHint<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for SlotHint<K> {}

/// Hints are equal when they name the same slot array, hashed alike.
impl<K> PartialEq for SlotHint<K> {
    fn eq(&self, other: &Self) -> bool {
        (
            self.base,
            self.slots,
            self.shift,
            self.key.xor,
            self.key.mul,
        ) == (
            other.base,
            other.slots,
            other.shift,
            other.key.xor,
            other.key.mul,
        )
    }
}

impl<K> core::fmt::Debug for SlotHint<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlotHint")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl<K: FlatKey> SlotHint<K> {
    /// The address of `key`'s home slot (of a map with `V` values), if the
    /// map had slots.
    fn home_address<V>(&self, key: &K) -> Option<usize> {
        if self.slots == 0 {
            return None;
        }
        let home = (self.key.hash(key.flat_word()) >> self.shift) as usize;
        Some(
            self.base
                .wrapping_add(home.wrapping_mul(core::mem::size_of::<(K, V)>())),
        )
    }

    /// Asks for the line of `key`'s home slot (of a map with `V` values).
    pub(crate) fn prefetch<V>(&self, key: &K) {
        if let Some(at) = self.home_address::<V>(key) {
            crate::prefetch::prefetch(at as *const u8);
        }
    }

    /// Asks for the lines [`FlatMap::prefetch`] asks for: the home slot's
    /// and the next one's (a slot may straddle the two, and a removal reads
    /// on to the end of the run).
    pub(crate) fn prefetch_run<V>(&self, key: &K) {
        if let Some(at) = self.home_address::<V>(key) {
            crate::prefetch::prefetch(at as *const u8);
            crate::prefetch::prefetch(at.wrapping_add(64) as *const u8);
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct FlatMap<K, V> {
    /// A power of two of them, or none before the first insert.
    slots: Vec<(K, V)>,
    len: usize,
    /// 64 - log2(slots): the home slot is the hash's top bits.
    shift: u32,
    /// Drawn at the first allocation.
    key: HashKey,
    /// Times the table grew after it was sized (see [`FlatMap::growths`]).
    growths: u32,
    /// The stamp of the entries since the last [`FlatMap::clear`] (stamped
    /// keys only; always 0 otherwise).
    stamp: u32,
    /// Moves on (wrapping) whenever an entry is placed or removed, or the
    /// map is cleared or reallocated: a [`Vacancy`] taken before any of
    /// these is stale.
    edits: u32,
}

/// Where a probe for an absent key ended ([`FlatMap::get_mut_or_vacancy`]):
/// the vacant slot the key would be placed in, valid while the map is not
/// edited ([`FlatMap::insert_absent_at`] checks).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vacancy {
    slot: usize,
    edits: u32,
}

impl<K: FlatKey, V: Copy + Default> Default for FlatMap<K, V> {
    fn default() -> Self {
        FlatMap::new()
    }
}

/// Slots of the first allocation.
const MIN_SLOTS: usize = 16;

impl<K: FlatKey, V: Copy + Default> FlatMap<K, V> {
    /// An empty map (allocates on the first insert).
    pub(crate) const fn new() -> Self {
        FlatMap {
            slots: Vec::new(),
            len: 0,
            shift: 64,
            key: HashKey::UNDRAWN,
            growths: 0,
            stamp: 0,
            edits: 0,
        }
    }

    /// Whether slot key `k` holds an entry: not the vacant key and, for
    /// stamped keys, stamped since the last clear.
    fn occupied(&self, k: &K) -> bool {
        !k.is_vacant() && (!K::STAMPED || k.stamp() == self.stamp)
    }

    /// Slots a map needs to hold `entries` at load <= 3/4: the least power
    /// of two that does (at least the first allocation's size).
    pub(crate) const fn slots_for(entries: usize) -> usize {
        let least = (entries * 4).div_ceil(3).next_power_of_two();
        if least < MIN_SLOTS {
            MIN_SLOTS
        } else {
            least
        }
    }

    /// Bytes of one slot (what [`FlatMap::slots_for`] slots cost).
    pub(crate) const fn slot_bytes() -> usize {
        core::mem::size_of::<(K, V)>()
    }

    /// A map with room for `entries` entries: it allocates
    /// [`FlatMap::slots_for`]`(entries)` slots now (none for 0) and never
    /// again while it holds at most `entries`.
    pub(crate) fn with_capacity(entries: usize) -> Self {
        let mut map = FlatMap::new();
        if entries > 0 {
            map.allocate(Self::slots_for(entries));
        }
        map
    }

    /// Entries the map holds without allocating.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    /// How many times the map allocated after it was made (the first
    /// insert into an unsized map, or growth past the size it was made
    /// with): each an allocation on its owner's fault path, growth also a
    /// moment holding both arrays. Owners that size it from the budget keep
    /// this at zero.
    pub(crate) fn growths(&self) -> u32 {
        self.growths
    }

    /// Bytes of the slot array.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * Self::slot_bytes()
    }

    /// Removes every entry and keeps the slots. For stamped keys O(1): the
    /// map's stamp moves on, so every slot stamped before reads as vacant
    /// (one pass over the slots only once in 2^32 clears, when the stamp
    /// would wrap); otherwise one pass over the slots.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.edits = self.edits.wrapping_add(1);
        match self.stamp.checked_add(1) {
            Some(next) if K::STAMPED => self.stamp = next,
            _ => {
                self.slots.fill((K::vacant(), V::default()));
                self.stamp = 0;
            }
        }
    }

    /// Entries held.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn home(&self, key: &K) -> usize {
        // checked_shr: no slots yet (shift 64) gives slot 0, which `find`
        // and `prefetch` never index then.
        self.key
            .hash(key.flat_word())
            .checked_shr(self.shift)
            .unwrap_or(0) as usize
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: &K) -> Option<usize> {
        if self.len == 0 || key.is_vacant() {
            return None;
        }
        // A stored entry carries the current stamp.
        let key = key.with_stamp(self.stamp);
        let mut i = self.home(&key);
        loop {
            let k = &self.slots[i].0;
            if *k == key {
                return Some(i);
            }
            if !self.occupied(k) {
                return None;
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Asks for the cache lines of `key`'s home slot and of the line after
    /// it, ahead of a lookup, insert or removal of `key`: the key may sit a
    /// slot or two further on, and a removal reads on to the end of the run.
    pub(crate) fn prefetch(&self, key: &K) {
        if let Some(slot) = self.slots.get(self.home(key)) {
            let at: *const (K, V) = slot;
            crate::prefetch::prefetch(at);
            // The next line (past the end of the array it is a harmless
            // prefetch of whatever follows; the run wraps to slot 0 then,
            // which the caller rarely needs).
            crate::prefetch::prefetch(at.cast::<u8>().wrapping_add(64));
        }
    }

    /// Where this map's home slots lie now, for prefetches by a thread
    /// that does not hold the map's owner's lock (see [`SlotHint`]).
    pub(crate) fn slot_hint(&self) -> SlotHint<K> {
        SlotHint {
            base: self.slots.as_ptr() as usize,
            slots: self.slots.len(),
            shift: self.shift,
            key: self.key,
            keys: core::marker::PhantomData,
        }
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.find(key).map(|i| &self.slots[i].1)
    }

    /// The value of `key`, trying slot `last` first, where the caller
    /// found it before (see [`FlatMap::get_or_insert_at`]: checked, not
    /// trusted).
    #[inline]
    pub(crate) fn get_at(&self, last: usize, key: &K) -> Option<&V> {
        match self.slots.get(last) {
            Some((k, v)) if !key.is_vacant() && *k == key.with_stamp(self.stamp) => Some(v),
            _ => self.get(key),
        }
    }

    /// The value of `key`, to change.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key).map(move |i| &mut self.slots[i].1)
    }

    /// The value of `key`, to change; or, when absent, where the probe for
    /// it ended, for [`FlatMap::insert_absent_at`]: an absent key found and
    /// then inserted costs one hash and one walk of its run, not two.
    /// `key` must not be the vacant key.
    #[inline]
    pub(crate) fn get_mut_or_vacancy(&mut self, key: &K) -> Result<&mut V, Vacancy> {
        let i = self.probe(key)?;
        Ok(&mut self.slots[i].1)
    }

    /// The slot holding `key`, or where its probe ended (see
    /// [`FlatMap::get_mut_or_vacancy`]). `key` must not be the vacant key.
    #[inline]
    fn probe(&self, key: &K) -> Result<usize, Vacancy> {
        debug_assert!(!key.is_vacant());
        if self.slots.is_empty() {
            // No slot to name: `insert_absent_at` finds this one stale
            // (a slot index past the end) and places as usual.
            return Err(Vacancy {
                slot: usize::MAX,
                edits: self.edits,
            });
        }
        let stamped = key.with_stamp(self.stamp);
        let mut i = self.home(&stamped);
        loop {
            let k = &self.slots[i].0;
            if *k == stamped {
                return Ok(i);
            }
            if !self.occupied(k) {
                return Err(Vacancy {
                    slot: i,
                    edits: self.edits,
                });
            }
            i = (i + 1) & self.mask();
        }
    }

    /// [`FlatMap::insert_absent`] at `vacancy`, the end of the probe for
    /// `key` that found it absent, if the map was not edited since (then
    /// the slot is still vacant and every slot from `key`'s home to it
    /// still occupied, so lookups reach it) and needs no growth; placed
    /// as usual otherwise.
    pub(crate) fn insert_absent_at(&mut self, vacancy: Vacancy, key: K, value: V) {
        debug_assert!(
            self.find(&key).is_none(),
            "insert_absent_at of a present key"
        );
        self.place_at(vacancy, key, value);
    }

    /// Places absent `key` at `vacancy` if that is still where it goes
    /// (see [`FlatMap::insert_absent_at`]), else as [`FlatMap::place`];
    /// its index.
    #[inline]
    fn place_at(&mut self, vacancy: Vacancy, key: K, value: V) -> usize {
        debug_assert!(!key.is_vacant());
        if vacancy.edits == self.edits
            && vacancy.slot < self.slots.len()
            && (self.len + 1) * 4 <= self.slots.len() * 3
        {
            debug_assert!(!self.occupied(&self.slots[vacancy.slot].0));
            self.slots[vacancy.slot] = (key.with_stamp(self.stamp), value);
            self.len += 1;
            self.edits = self.edits.wrapping_add(1);
            vacancy.slot
        } else {
            self.place(key, value)
        }
    }

    /// Whether `key` has an entry.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_some()
    }

    /// The value of `key`, inserting `make()` first if absent. `key` must
    /// not be the vacant key.
    #[inline]
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        // One probe: an absent key goes where it ended.
        let i = match self.probe(&key) {
            Ok(i) => i,
            Err(vacancy) => {
                let value = make();
                self.place_at(vacancy, key, value)
            }
        };
        &mut self.slots[i].1
    }

    /// [`FlatMap::get_or_insert_with`] that first tries slot `*last`,
    /// where the caller found a key before, and leaves there the slot of
    /// `key`: a run of calls with one key (neighbouring blocks of one
    /// chunk, the usual run of faults) then hashes and probes once. The
    /// slot is checked, not trusted: one that moved on (a removal's shift,
    /// a clear's new stamp, a growth) holds another key, or is out of
    /// range, and the call probes as usual. `key` must not be the vacant
    /// key.
    #[inline]
    pub(crate) fn get_or_insert_at(
        &mut self,
        last: &mut usize,
        key: K,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let i = match self.slot_holding(*last, &key) {
            Some(i) => i,
            None => {
                let i = self.probe_or_place(key, make);
                *last = i;
                i
            }
        };
        &mut self.slots[i].1
    }

    /// Slot `last` if it holds `key` (the check of
    /// [`FlatMap::get_or_insert_at`], for a caller that handles a miss
    /// itself, out of line: with [`FlatMap::slot_or_place`], then
    /// [`FlatMap::value_mut`]).
    /// `key` must not be the vacant key.
    #[inline]
    pub(crate) fn slot_holding(&self, last: usize, key: &K) -> Option<usize> {
        debug_assert!(!key.is_vacant());
        let stamped = key.with_stamp(self.stamp);
        match self.slots.get(last) {
            Some((k, _)) if *k == stamped => Some(last),
            _ => None,
        }
    }

    /// The value in slot `i`, one [`FlatMap::slot_holding`] or
    /// [`FlatMap::slot_or_place`] just returned (the map unchanged since).
    #[inline]
    pub(crate) fn value_mut(&mut self, i: usize) -> &mut V {
        &mut self.slots[i].1
    }

    /// The slot of `key`, placing `make()` there first if absent: out of
    /// line, so that the slot check of [`FlatMap::get_or_insert_at`],
    /// which a run of calls nearly always passes, inlines without it.
    #[inline(never)]
    fn probe_or_place(&mut self, key: K, make: impl FnOnce() -> V) -> usize {
        self.slot_or_place(key, make)
    }

    /// [`FlatMap::probe_or_place`] inline, for a caller that is itself the
    /// out-of-line part of its fast path. `key` must not be the vacant
    /// key.
    #[inline]
    pub(crate) fn slot_or_place(&mut self, key: K, make: impl FnOnce() -> V) -> usize {
        match self.probe(&key) {
            Ok(i) => i,
            Err(vacancy) => {
                let value = make();
                self.place_at(vacancy, key, value)
            }
        }
    }

    /// Sets `key` to `value`; the old value if there was one. `key` must
    /// not be the vacant key.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        debug_assert!(!key.is_vacant());
        match self.find(&key) {
            Some(i) => Some(core::mem::replace(&mut self.slots[i].1, value)),
            None => {
                self.place(key, value);
                None
            }
        }
    }

    /// Sets `key`, which the caller knows is absent (it just probed for it
    /// or removed it, with no insert since), to `value`: one walk of the
    /// run instead of `insert`'s two. `key` must not be the vacant key.
    pub(crate) fn insert_absent(&mut self, key: K, value: V) {
        debug_assert!(!key.is_vacant());
        debug_assert!(self.find(&key).is_none(), "insert_absent of a present key");
        self.place(key, value);
    }

    /// Puts an absent key in the first vacant slot of its run; its index.
    fn place(&mut self, key: K, value: V) -> usize {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mut i = self.home(&key);
        while self.occupied(&self.slots[i].0) {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = (key.with_stamp(self.stamp), value);
        self.len += 1;
        self.edits = self.edits.wrapping_add(1);
        i
    }

    /// The fallback for a map that was not sized (or whose owner's bound
    /// was wrong): doubles the table.
    fn grow(&mut self) {
        self.growths = self.growths.saturating_add(1);
        self.allocate((self.slots.len() * 2).max(MIN_SLOTS));
    }

    /// Moves the entries into a new table of `size` slots (a power of two
    /// with room for them).
    fn allocate(&mut self, size: usize) {
        debug_assert!(size.is_power_of_two() && self.len * 4 <= size * 3);
        if self.slots.is_empty() {
            self.key = HashKey::draw();
        }
        let mut slots = Vec::with_capacity(size);
        slots.resize(size, (K::vacant(), V::default()));
        let old = core::mem::replace(&mut self.slots, slots);
        self.shift = 64 - size.trailing_zeros();
        self.edits = self.edits.wrapping_add(1);
        for (key, value) in old {
            if self.occupied(&key) {
                let mut i = self.home(&key);
                while self.occupied(&self.slots[i].0) {
                    i = (i + 1) & self.mask();
                }
                self.slots[i] = (key, value);
            }
        }
    }

    /// Removes `key`'s entry; its value if there was one.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let mut hole = self.find(key)?;
        let value = self.slots[hole].1;
        self.len -= 1;
        self.edits = self.edits.wrapping_add(1);
        // Shift back every later entry of the run that may move into the
        // hole: one whose home is not cyclically inside (hole, j].
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].0;
            if !self.occupied(&k) {
                break;
            }
            let home = self.home(&k);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole] = (K::vacant(), V::default());
        Some(value)
    }

    /// The largest distance of an entry from its home slot (how far the
    /// longest probe goes).
    #[cfg(all(test, not(loom)))]
    fn max_displacement(&self) -> usize {
        let mask = self.mask();
        (0..self.slots.len())
            .filter(|&i| self.occupied(&self.slots[i].0))
            .map(|i| i.wrapping_sub(self.home(&self.slots[i].0)) & mask)
            .max()
            .unwrap_or(0)
    }

    /// Every entry (in slot order).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots
            .iter()
            .filter(|(k, _)| self.occupied(k))
            .map(|(k, v)| (k, v))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Key(u64);

    impl FlatKey for Key {
        fn vacant() -> Self {
            Key(u64::MAX)
        }
        fn is_vacant(&self) -> bool {
            self.0 == u64::MAX
        }
        fn flat_word(&self) -> u64 {
            self.0
        }
    }

    /// Keys that all share a home slot (a worst case for runs).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Colliding(u64);

    impl FlatKey for Colliding {
        fn vacant() -> Self {
            Colliding(u64::MAX)
        }
        fn is_vacant(&self) -> bool {
            self.0 == u64::MAX
        }
        fn flat_word(&self) -> u64 {
            self.0 % 3
        }
    }

    /// A key with a clear stamp (as the block indexes' chunk keys have).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Stamped(u64, u32);

    impl FlatKey for Stamped {
        fn vacant() -> Self {
            Stamped(u64::MAX, 0)
        }
        fn is_vacant(&self) -> bool {
            self.0 == u64::MAX
        }
        fn flat_word(&self) -> u64 {
            // Few homes: long runs across clears.
            self.0 % 7
        }
        const STAMPED: bool = true;
        fn stamp(&self) -> u32 {
            self.1
        }
        fn with_stamp(self, stamp: u32) -> Self {
            Stamped(self.0, stamp)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// A stamped map cleared in O(1) answers as std's map cleared:
        /// entries stamped before a clear are vacant for every operation
        /// (lookups, the runs inserts and removals walk), also when the
        /// stamp wraps.
        #[test]
        fn clearing_a_stamped_map_matches_std_hashmap(
            ops in prop::collection::vec((0u8..5, 0u64..100, any::<u32>()), 1..600),
            wrap in any::<bool>(),
        ) {
            let mut map: FlatMap<Stamped, u32> = FlatMap::with_capacity(100);
            if wrap {
                map.stamp = u32::MAX - 2;
            }
            let mut model = HashMap::new();
            for (op, k, v) in ops {
                match op {
                    0 | 1 => prop_assert_eq!(map.insert(Stamped(k, 0), v), model.insert(k, v)),
                    2 => prop_assert_eq!(map.remove(&Stamped(k, 0)), model.remove(&k)),
                    3 if v % 8 == 0 => {
                        map.clear();
                        model.clear();
                    }
                    _ => prop_assert_eq!(map.get(&Stamped(k, 0)), model.get(&k)),
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.iter().count(), model.len());
            }
            for k in 0..100u64 {
                prop_assert_eq!(map.get(&Stamped(k, 0)), model.get(&k));
            }
            prop_assert_eq!(map.growths(), 0);
        }

        /// `get_or_insert_at` answers as std's `entry().or_insert` whatever
        /// its remembered slot has become since (removals shift runs,
        /// clears change the stamp, growth moves everything), and leaves
        /// the slot of the key it was given; `get_at` from that slot
        /// answers as `get`.
        #[test]
        fn get_or_insert_at_matches_std_hashmap(
            ops in prop::collection::vec((0u8..6, 0u64..100, any::<u32>()), 1..600),
            sized in any::<bool>(),
        ) {
            let mut map: FlatMap<Stamped, u32> =
                if sized { FlatMap::with_capacity(100) } else { FlatMap::new() };
            let mut model = HashMap::new();
            let mut last = 0usize;
            for (op, k, v) in ops {
                match op {
                    0..=2 => {
                        let got = *map.get_or_insert_at(&mut last, Stamped(k, 0), || v);
                        prop_assert_eq!(got, *model.entry(k).or_insert(v));
                        prop_assert_eq!(map.find(&Stamped(k, 0)), Some(last));
                    }
                    3 => prop_assert_eq!(map.remove(&Stamped(k, 0)), model.remove(&k)),
                    4 if v % 8 == 0 => {
                        map.clear();
                        model.clear();
                    }
                    _ => {
                        prop_assert_eq!(map.get(&Stamped(k, 0)), model.get(&k));
                        // The remembered slot holds another key, or one
                        // cleared or shifted away, as often as not.
                        prop_assert_eq!(map.get_at(last, &Stamped(k, 0)), model.get(&k));
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            for k in 0..100u64 {
                prop_assert_eq!(map.get(&Stamped(k, 0)), model.get(&k));
                prop_assert_eq!(map.get_at(last, &Stamped(k, 0)), model.get(&k));
            }
        }

        /// A key found absent and inserted later at its probe's
        /// `Vacancy` is found, and every other entry too, whatever the map
        /// did in between (inserts that took the slot, removals that
        /// shifted the run, clears, growth): a vacancy the map moved past
        /// is not used.
        #[test]
        fn a_vacancy_places_its_key_whatever_the_map_did_since(
            rounds in prop::collection::vec(
                (0u64..60, prop::collection::vec((0u8..4, 0u64..60, any::<u32>()), 0..4)),
                1..200,
            ),
            sized in any::<bool>(),
        ) {
            let mut map: FlatMap<Stamped, u32> =
                if sized { FlatMap::with_capacity(40) } else { FlatMap::new() };
            let mut model = HashMap::new();
            for (n, (k, between)) in rounds.into_iter().enumerate() {
                let vacancy = match map.get_mut_or_vacancy(&Stamped(k, 0)) {
                    Ok(v) => {
                        prop_assert_eq!(Some(&*v), model.get(&k));
                        continue;
                    }
                    Err(vacancy) => vacancy,
                };
                prop_assert!(!model.contains_key(&k));
                for (op, other, v) in between {
                    if other == k {
                        continue;
                    }
                    match op {
                        0 | 1 => prop_assert_eq!(map.insert(Stamped(other, 0), v), model.insert(other, v)),
                        2 => prop_assert_eq!(map.remove(&Stamped(other, 0)), model.remove(&other)),
                        _ if v % 4 == 0 => {
                            map.clear();
                            model.clear();
                        }
                        _ => {}
                    }
                }
                map.insert_absent_at(vacancy, Stamped(k, 0), n as u32);
                model.insert(k, n as u32);
                prop_assert_eq!(map.len(), model.len());
                for j in 0..60u64 {
                    prop_assert_eq!(map.get(&Stamped(j, 0)), model.get(&j));
                }
            }
        }

        /// Against std's map: every operation answers the same, with keys
        /// from a small range (long runs, many collisions and removals).
        #[test]
        fn matches_std_hashmap(ops in prop::collection::vec((0u8..4, 0u64..200, any::<u32>()), 1..600)) {
            let mut map: FlatMap<Key, u32> = FlatMap::new();
            let mut colliding: FlatMap<Colliding, u32> = FlatMap::new();
            let mut model = HashMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => {
                        prop_assert_eq!(map.insert(Key(k), v), model.insert(k, v));
                        colliding.insert(Colliding(k), v);
                    }
                    1 => {
                        prop_assert_eq!(map.remove(&Key(k)), model.remove(&k));
                        colliding.remove(&Colliding(k));
                    }
                    2 => {
                        *map.get_or_insert_with(Key(k), || v) += 1;
                        *colliding.get_or_insert_with(Colliding(k), || v) += 1;
                        let e = model.entry(k).or_insert(v);
                        *e += 1;
                    }
                    _ => {
                        prop_assert_eq!(map.get(&Key(k)), model.get(&k));
                        prop_assert_eq!(map.contains_key(&Key(k)), model.contains_key(&k));
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(colliding.len(), model.len());
            }
            for k in 0..200u64 {
                prop_assert_eq!(map.get(&Key(k)), model.get(&k));
                prop_assert_eq!(colliding.get(&Colliding(k)), model.get(&k));
            }
            let mut all: std::vec::Vec<(u64, u32)> = map.iter().map(|(k, v)| (k.0, *v)).collect();
            all.sort();
            let mut want: std::vec::Vec<(u64, u32)> = model.into_iter().collect();
            want.sort();
            prop_assert_eq!(all, want);
        }
    }

    /// Words a guest can choose so that an unkeyed multiplicative hash
    /// sends them all to one home slot at every table size: `i * φ^-1`
    /// times φ is `i`, whose top bits are zero. Under each map's secret key
    /// they spread like any other words.
    #[test]
    fn words_that_share_a_home_under_a_fixed_hash_spread_under_the_maps_key() {
        // φ^-1 mod 2^64 by Newton's iteration (each step doubles the bits).
        let mut inverse = GOLDEN;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(GOLDEN.wrapping_mul(inverse)));
        }
        assert_eq!(GOLDEN.wrapping_mul(inverse), 1);
        let hostile = (1..=4096u64).map(|i| Key(i.wrapping_mul(inverse)));
        assert!(hostile.clone().all(|k| k.0.wrapping_mul(GOLDEN) >> 50 == 0));
        let mut map: FlatMap<Key, u64> = FlatMap::new();
        for (n, k) in hostile.enumerate() {
            map.insert(k, n as u64);
        }
        // Unkeyed, the last key would probe 4095 slots; keyed, a run at
        // load <= 3/4 stays short.
        assert!(
            map.max_displacement() < 64,
            "longest probe {}",
            map.max_displacement()
        );
    }

    /// A hint names the home slot a lookup under the lock reads first (and
    /// nothing for a map without slots); a stale hint of a map that grew
    /// is only a wasted prefetch.
    #[test]
    fn a_slot_hint_names_each_keys_home_slot() {
        let mut map: FlatMap<Key, u64> = FlatMap::with_capacity(1000);
        let hint = map.slot_hint();
        for k in 0..2000u64 {
            let key = Key(k << 12);
            let home = &map.slots[map.home(&key)] as *const (Key, u64) as usize;
            assert_eq!(hint.home_address::<u64>(&key), Some(home));
            hint.prefetch::<u64>(&key);
        }
        for k in 0..5000u64 {
            map.insert(Key(k << 12), k);
        }
        assert!(map.growths() > 0);
        hint.prefetch::<u64>(&Key(7 << 12));
        assert_eq!(map.get(&Key(7 << 12)), Some(&7));
        let empty: FlatMap<Key, u64> = FlatMap::new();
        assert_eq!(empty.slot_hint().home_address::<u64>(&Key(0)), None);
        empty.slot_hint().prefetch::<u64>(&Key(0));
    }

    #[test]
    fn every_map_draws_its_own_key() {
        let mut a: FlatMap<Key, u64> = FlatMap::new();
        let mut b: FlatMap<Key, u64> = FlatMap::new();
        a.insert(Key(1), 1);
        b.insert(Key(1), 1);
        assert_ne!((a.key.xor, a.key.mul), (b.key.xor, b.key.mul));
        assert_eq!(a.key.mul & 1, 1);
    }

    /// A sized map holds its capacity without allocating, at the least
    /// power of two of slots that keeps the load <= 3/4; `clear` keeps the
    /// slots, by either path.
    #[test]
    fn a_sized_map_never_allocates_up_to_its_capacity() {
        for entries in [1usize, 2, 11, 12, 13, 96, 97, 1000, 3 << 10, (3 << 10) + 1] {
            let mut map: FlatMap<Key, u64> = FlatMap::with_capacity(entries);
            let slots = map.slots.len();
            assert_eq!(slots, FlatMap::<Key, u64>::slots_for(entries));
            assert!(slots.is_power_of_two() && slots * 3 >= entries * 4);
            assert!(
                slots == MIN_SLOTS || (slots / 2) * 3 < entries * 4,
                "{entries}: {slots}"
            );
            assert!(map.capacity() >= entries);
            let bytes = map.allocated_bytes();
            for k in 0..map.capacity() as u64 {
                map.insert(Key(k << 12), k);
            }
            assert_eq!((map.growths(), map.allocated_bytes()), (0, bytes));
            map.insert(Key(u64::MAX - 1), 0);
            assert_eq!(map.growths(), 1, "one past capacity grows");
            map.clear();
            assert_eq!(map.len(), 0);
            assert!(map.iter().next().is_none());
            assert_eq!(map.get(&Key(7 << 12)), None);
            assert_eq!(map.growths(), 1);
        }
        let mut unsized_map: FlatMap<Key, u64> = FlatMap::with_capacity(0);
        assert_eq!(unsized_map.allocated_bytes(), 0);
        unsized_map.insert(Key(0), 0);
        assert_eq!(unsized_map.growths(), 1, "a first allocation counts");
    }

    #[test]
    fn the_vacant_key_is_never_found_and_growth_keeps_entries() {
        let mut map: FlatMap<Key, u64> = FlatMap::new();
        assert_eq!(map.get(&Key::vacant()), None);
        for k in 0..10_000u64 {
            assert_eq!(map.insert(Key(k * 4096), k), None);
        }
        assert_eq!(map.len(), 10_000);
        assert!(map.slots.len() * 3 >= map.len() * 4);
        assert_eq!(map.get(&Key::vacant()), None);
        assert_eq!(map.remove(&Key::vacant()), None);
        for k in (0..10_000u64).step_by(2) {
            assert_eq!(map.remove(&Key(k * 4096)), Some(k));
        }
        for k in 0..10_000u64 {
            assert_eq!(map.get(&Key(k * 4096)).copied(), (k % 2 == 1).then_some(k));
        }
        map.prefetch(&Key(5));
        FlatMap::<Key, u64>::new().prefetch(&Key(5));
    }
}
