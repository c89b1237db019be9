//! The shadow stage-2 table L0 builds for L2: real VMSAv8-64 stage-2
//! descriptors the hardware walks, installed by hv as VTTBR_EL2 for L2.
//!
//! # Format
//!
//! 4 KiB granule, 48-bit IPA, start level 0, whatever granule L1 uses
//! (see [`shadow_vtcr`] for the VTCR_EL2 fields). Leaves are 1 GiB blocks
//! (level 1), 2 MiB blocks (level 2) or 4 KiB pages (level 3), with AF set
//! (VTCR_EL2.HA = 0: the shadow never takes Access flag faults), DBM clear,
//! nG/contiguous clear. Descriptors are stored in the PE's little-endian
//! order (EL2 runs with SCTLR_EL2.EE = 0).
//!
//! # Concurrency
//!
//! The hardware walks the tree while vCPUs of other cores call [`ShadowTable::map`]:
//! - every descriptor is an `AtomicU64`; a new table comes zeroed from the
//!   [`FramePool`] and is published by a Release compare-and-swap, so any
//!   observer of the table descriptor sees an all-invalid table;
//! - a changed entry uses break-before-make: it is swapped to invalid,
//!   the [`TlbMaintenance`] hook invalidates every TLB and walk-cache entry
//!   for its range (and completes), then the new entry is written;
//! - a table is returned to the pool only after it has been unlinked *and*
//!   the hook has run, so no hardware walk can reach a freed frame; and only
//!   under the exclusive side of the update lock, so no software walk
//!   (`map`/`lookup`, which take the shared side) can be inside it.
//!
//! `map` and `lookup` run concurrently with each other (shared side);
//! `unmap_range` and `clear` take the exclusive side.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::compose::{
    stage2_from_permissions, MemAttr, MemShareability, ShadowMapping, BLOCK_1G, BLOCK_2M,
    PAGE_SIZE, SHADOW_IPA_BITS,
};
use walker::Execute;

/// Descriptors per table (4 KiB / 8).
pub const ENTRIES: usize = 512;

/// Output address bits \[47:12\] of a descriptor.
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const AF: u64 = 1 << 10;

/// VTCR_EL2 for the shadow stage 2:
/// - T0SZ = 16 (bits 5:0): 48-bit IPA;
/// - SL0 = 0b10 (bits 7:6): with TG0 = 4 KiB, start at level 0;
/// - IRGN0 = ORGN0 = 0b01 (bits 9:8, 11:10): table walks Write-Back
///   Read-Allocate Write-Allocate cacheable, so they snoop the stores `map`
///   makes through normal cacheable memory;
/// - SH0 = 0b11 (bits 13:12): Inner Shareable walks;
/// - TG0 = 0b00 (bits 15:14): 4 KiB granule;
/// - PS (bits 18:16): the host's physical address size, `ps` (0b101 for
///   48 bits); the shadow's output addresses are host PAs;
/// - VS (bit 19) = 1 when `vmid_16bit`;
/// - HA = HD = 0, DS = 0, NSW/NSA = 0: no hardware updates, 48-bit format.
pub const fn shadow_vtcr(ps: u8, vmid_16bit: bool) -> u64 {
    let t0sz = 64 - SHADOW_IPA_BITS as u64;
    t0sz | (0b10 << 6)
        | (0b01 << 8)
        | (0b01 << 10)
        | (0b11 << 12)
        | (((ps & 7) as u64) << 16)
        | ((vmid_16bit as u64) << 19)
}

/// One 4 KiB table frame: 512 descriptors, 4 KiB aligned.
#[repr(C, align(4096))]
pub struct Frame(pub [AtomicU64; ENTRIES]);

impl Frame {
    /// An all-invalid frame.
    pub fn zeroed() -> Frame {
        Frame(core::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid = self
            .0
            .iter()
            .filter(|d| d.load(Ordering::Relaxed) & VALID != 0)
            .count();
        write!(f, "Frame {{ {valid} valid descriptors }}")
    }
}

/// Where table frames come from: the budget for shadow tables.
///
/// PAs are what the descriptors hold (what the hardware walks); the pool
/// translates them to the frames software reads and writes.
pub trait FramePool: Sync {
    /// A zeroed frame's PA, or `None` when the budget is used up.
    fn allocate(&self) -> Option<u64>;
    /// The frame at `pa`, if `pa` is a frame of this pool.
    fn frame(&self, pa: u64) -> Option<&Frame>;
    /// Returns a frame. The caller guarantees nothing (software or
    /// hardware walk) can reach it any more. The pool zeroes it again
    /// before handing it out.
    fn release(&self, pa: u64);
    /// Frames currently allocated.
    fn frames_in_use(&self) -> usize;
    /// The most frames that can be allocated at once.
    fn budget(&self) -> usize;
}

impl<P: FramePool + ?Sized> FramePool for &P {
    fn allocate(&self) -> Option<u64> {
        (**self).allocate()
    }
    fn frame(&self, pa: u64) -> Option<&Frame> {
        (**self).frame(pa)
    }
    fn release(&self, pa: u64) {
        (**self).release(pa)
    }
    fn frames_in_use(&self) -> usize {
        (**self).frames_in_use()
    }
    fn budget(&self) -> usize {
        (**self).budget()
    }
}

impl<P: FramePool + Send + ?Sized> FramePool for alloc::sync::Arc<P> {
    fn allocate(&self) -> Option<u64> {
        (**self).allocate()
    }
    fn frame(&self, pa: u64) -> Option<&Frame> {
        (**self).frame(pa)
    }
    fn release(&self, pa: u64) {
        (**self).release(pa)
    }
    fn frames_in_use(&self) -> usize {
        (**self).frames_in_use()
    }
    fn budget(&self) -> usize {
        (**self).budget()
    }
}

/// A [`FramePool`] of heap frames for hosts and tests: `budget` frames
/// allocated up front, PA = `base_pa + 4096 * index` (a fake physical
/// layout, or the frames' own addresses with [`HeapFramePool::identity`]).
/// It also reads as [`walker::GuestMemory`] so the walker can walk a
/// shadow table built in it.
pub struct HeapFramePool {
    frames: Box<[Frame]>,
    base_pa: u64,
    free: spin::Mutex<Vec<u32>>,
    in_use: AtomicUsize,
}

impl fmt::Debug for HeapFramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapFramePool")
            .field("base_pa", &self.base_pa)
            .field("budget", &self.frames.len())
            .field("in_use", &self.in_use.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why a [`HeapFramePool`] cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The PA base is not 4 KiB aligned, or the frames would not fit below
    /// 2^48 (a shadow descriptor holds 48-bit output addresses).
    BadBase(u64),
    /// More frames than a `u32` index can name.
    TooLarge(usize),
}

impl HeapFramePool {
    /// `budget` frames at fake PAs from `base_pa`.
    pub fn new(budget: usize, base_pa: u64) -> Result<HeapFramePool, PoolError> {
        let count = u32::try_from(budget).map_err(|_| PoolError::TooLarge(budget))?;
        let end = (budget as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|len| base_pa.checked_add(len));
        if !base_pa.is_multiple_of(PAGE_SIZE) || end.is_none_or(|e| e > 1 << SHADOW_IPA_BITS) {
            return Err(PoolError::BadBase(base_pa));
        }
        let frames: Box<[Frame]> = (0..budget).map(|_| Frame::zeroed()).collect();
        // Hand out low indexes first (pop from the end).
        let free = (0..count).rev().collect();
        Ok(HeapFramePool {
            frames,
            base_pa,
            free: spin::Mutex::new(free),
            in_use: AtomicUsize::new(0),
        })
    }

    /// `budget` frames whose PA is their own (host virtual) address, as if
    /// host memory were identity mapped.
    pub fn identity(budget: usize) -> Result<HeapFramePool, PoolError> {
        let mut pool = HeapFramePool::new(budget, 0)?;
        let base = pool.frames.as_ptr() as usize as u64;
        if base
            .checked_add(budget as u64 * PAGE_SIZE)
            .is_none_or(|e| e > 1 << SHADOW_IPA_BITS)
        {
            return Err(PoolError::BadBase(base));
        }
        pool.base_pa = base;
        Ok(pool)
    }

    /// PA of the first frame.
    pub fn base_pa(&self) -> u64 {
        self.base_pa
    }

    fn index(&self, pa: u64) -> Option<usize> {
        let offset = pa.checked_sub(self.base_pa)?;
        if offset % PAGE_SIZE != 0 {
            return None;
        }
        let index = usize::try_from(offset / PAGE_SIZE).ok()?;
        (index < self.frames.len()).then_some(index)
    }
}

impl FramePool for HeapFramePool {
    fn allocate(&self) -> Option<u64> {
        let index = self.free.lock().pop()?;
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Some(self.base_pa + u64::from(index) * PAGE_SIZE)
    }

    fn frame(&self, pa: u64) -> Option<&Frame> {
        self.index(pa).map(|i| &self.frames[i])
    }

    fn release(&self, pa: u64) {
        let Some(index) = self.index(pa) else {
            return;
        };
        for d in &self.frames[index].0 {
            d.store(0, Ordering::Relaxed);
        }
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        // The index fits: it came from a u32 in `new`.
        self.free.lock().push(index as u32);
    }

    fn frames_in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    fn budget(&self) -> usize {
        self.frames.len()
    }
}

#[cfg(not(loom))]
impl walker::GuestMemory for HeapFramePool {
    fn read_descriptor(&self, address: u64) -> Result<u64, walker::MemoryError> {
        if !address.is_multiple_of(8) {
            return Err(walker::MemoryError::Misaligned);
        }
        let frame = self
            .frame(address & !(PAGE_SIZE - 1))
            .ok_or(walker::MemoryError::OutsideMemslots)?;
        let index = ((address % PAGE_SIZE) / 8) as usize;
        // The walker applies SCTLR.EE itself: raw = little-endian bytes.
        Ok(frame.0[index].load(Ordering::Acquire).to_le())
    }

    fn compare_exchange_descriptor(
        &self,
        _address: u64,
        _current: u64,
        _new: u64,
    ) -> Result<Result<u64, u64>, walker::MemoryError> {
        // The shadow runs with VTCR_EL2.HA = HD = 0: nothing updates it.
        Err(walker::MemoryError::ReadOnly)
    }
}

/// TLB maintenance for the shadow's hardware VMID. hv implements it with
/// `DSB ISHST; TLBI IPAS2E1IS` per page (or `VMALLS12E1IS` past a
/// threshold), `DSB ISH`, then `TLBI VMALLE1IS; DSB ISH` for the combined
/// stage-1+2 entries, all with VTTBR_EL2 holding the shadow's VMID. Each
/// call returns only when the invalidation is complete on every PE.
pub trait TlbMaintenance: Sync {
    /// Invalidate every TLB and walk-cache entry of the shadow VMID, from
    /// any level, that translates an L2 IPA in `[l2_ipa, l2_ipa + len)`.
    fn invalidate_range(&self, l2_ipa: u64, len: u64);
    /// Invalidate every entry of the shadow VMID.
    fn invalidate_all(&self);
}

impl<T: TlbMaintenance + ?Sized> TlbMaintenance for &T {
    fn invalidate_range(&self, l2_ipa: u64, len: u64) {
        (**self).invalidate_range(l2_ipa, len)
    }
    fn invalidate_all(&self) {
        (**self).invalidate_all()
    }
}

/// One call made to a [`RecordingTlb`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbEvent {
    /// `invalidate_range(l2_ipa, len)`.
    Range {
        /// Start.
        l2_ipa: u64,
        /// Length.
        len: u64,
    },
    /// `invalidate_all()`.
    All,
}

impl TlbEvent {
    /// Whether this invalidation covers every IPA in `[start, start + len)`.
    pub fn covers(&self, start: u64, len: u64) -> bool {
        match *self {
            TlbEvent::All => true,
            TlbEvent::Range { l2_ipa, len: l } => {
                start >= l2_ipa && start.saturating_add(len) <= l2_ipa.saturating_add(l)
            }
        }
    }
}

/// Host fake of [`TlbMaintenance`]: records every call, in order.
#[derive(Debug, Default)]
pub struct RecordingTlb {
    events: spin::Mutex<Vec<TlbEvent>>,
}

impl RecordingTlb {
    /// An empty record.
    pub fn new() -> RecordingTlb {
        RecordingTlb::default()
    }
    /// Every call so far, and forget them.
    pub fn take(&self) -> Vec<TlbEvent> {
        core::mem::take(&mut *self.events.lock())
    }
    /// Number of calls so far.
    pub fn len(&self) -> usize {
        self.events.lock().len()
    }
    /// Whether no call was made.
    pub fn is_empty(&self) -> bool {
        self.events.lock().is_empty()
    }
}

impl TlbMaintenance for RecordingTlb {
    fn invalidate_range(&self, l2_ipa: u64, len: u64) {
        self.events.lock().push(TlbEvent::Range { l2_ipa, len });
    }
    fn invalidate_all(&self) {
        self.events.lock().push(TlbEvent::All);
    }
}

/// A [`TlbMaintenance`] that does nothing: for tables no hardware walks
/// (benchmarks of the software paths).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHardwareTlb;

impl TlbMaintenance for NoHardwareTlb {
    fn invalidate_range(&self, _l2_ipa: u64, _len: u64) {}
    fn invalidate_all(&self) {}
}

/// Host features the descriptor encoding depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShadowConfig {
    /// The host implements FEAT_XNX (XN\[0\] distinguishes EL0 and EL1).
    /// Without it XN\[0\] is ignored by the hardware, so execute permission
    /// for only one of EL0/EL1 is encoded as no execute (never more than
    /// composition allowed; L0 must not expose FEAT_XNX to L1 without it).
    pub xnx: bool,
    /// Host physical address size in bits (<= 48): output addresses above
    /// it are refused.
    pub pa_bits: u32,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            xnx: true,
            pa_bits: 48,
        }
    }
}

/// Why [`ShadowTable::map`] did not install an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapError {
    /// The size is not 4 KiB, 2 MiB or 1 GiB.
    UnsupportedSize(u64),
    /// The L2 IPA or PA is not aligned to the size.
    Misaligned {
        /// L2 IPA base given.
        l2_ipa_base: u64,
        /// PA base given.
        pa_base: u64,
    },
    /// The L2 IPA needs more than 48 bits.
    IpaOutOfRange(u64),
    /// The PA exceeds the host physical address size.
    PaOutOfRange(u64),
    /// The frame pool is exhausted: evict and retry.
    FramesExhausted {
        /// The pool's budget, in frames.
        budget: usize,
    },
    /// A table descriptor names a frame the pool does not own (memory
    /// corruption of the shadow; never produced by this code's writes).
    ForeignTable(u64),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::UnsupportedSize(s) => write!(f, "shadow block size {s:#x} unsupported"),
            MapError::Misaligned {
                l2_ipa_base,
                pa_base,
            } => write!(
                f,
                "L2 IPA {l2_ipa_base:#x} / PA {pa_base:#x} not aligned to the size"
            ),
            MapError::IpaOutOfRange(a) => write!(f, "L2 IPA {a:#x} beyond 48 bits"),
            MapError::PaOutOfRange(a) => write!(f, "PA {a:#x} beyond the host PA size"),
            MapError::FramesExhausted { budget } => {
                write!(f, "shadow table frame budget ({budget} frames) exhausted")
            }
            MapError::ForeignTable(pa) => write!(f, "table descriptor names foreign frame {pa:#x}"),
        }
    }
}

/// What [`ShadowTable::map`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapOutcome {
    /// The slot was invalid; the entry is now installed.
    Installed,
    /// The same descriptor was already there (another vCPU won the race).
    AlreadyPresent,
    /// A different entry (or a table, or a block around the new entry) was
    /// replaced by break-before-make.
    Replaced,
}

/// Exclusive/shared lock for the software walkers of the tree: writer
/// preferring, so a stream of `map`s cannot starve `unmap_range`.
#[derive(Debug)]
struct UpdateLock {
    /// Bit 0: a writer holds or waits; bits 1..: shared holders.
    state: AtomicUsize,
}

const WRITER: usize = 1;
const READER: usize = 2;

fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

impl UpdateLock {
    fn new() -> UpdateLock {
        UpdateLock {
            state: AtomicUsize::new(0),
        }
    }

    fn shared(&self) -> SharedGuard<'_> {
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & WRITER == 0
                && self
                    .state
                    .compare_exchange_weak(s, s + READER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return SharedGuard(self);
            }
            spin_hint();
        }
    }

    fn exclusive(&self) -> ExclusiveGuard<'_> {
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & WRITER == 0
                && self
                    .state
                    .compare_exchange_weak(s, s | WRITER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            spin_hint();
        }
        while self.state.load(Ordering::Acquire) != WRITER {
            spin_hint();
        }
        ExclusiveGuard(self)
    }
}

struct SharedGuard<'a>(&'a UpdateLock);

impl Drop for SharedGuard<'_> {
    fn drop(&mut self) {
        self.0.state.fetch_sub(READER, Ordering::Release);
    }
}

struct ExclusiveGuard<'a>(&'a UpdateLock);

impl Drop for ExclusiveGuard<'_> {
    fn drop(&mut self) {
        self.0.state.store(0, Ordering::Release);
    }
}

/// Shift of the IPA bits that index a table at `level` (0..=3).
const fn level_shift(level: usize) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Bytes one entry at `level` maps.
const fn entry_size(level: usize) -> u64 {
    1 << level_shift(level)
}

const fn index_at(ipa: u64, level: usize) -> usize {
    ((ipa >> level_shift(level)) & (ENTRIES as u64 - 1)) as usize
}

/// What a descriptor at a level is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Invalid,
    Table(u64),
    Leaf(u64),
}

const fn classify(descriptor: u64, level: usize) -> Entry {
    if descriptor & VALID == 0 {
        Entry::Invalid
    } else if level == 3 {
        // Level 3: 0b11 is a page; 0b01 is reserved (invalid to hardware),
        // never written here.
        if descriptor & TABLE_OR_PAGE != 0 {
            Entry::Leaf(descriptor)
        } else {
            Entry::Invalid
        }
    } else if descriptor & TABLE_OR_PAGE != 0 {
        Entry::Table(descriptor & OA_MASK)
    } else {
        Entry::Leaf(descriptor)
    }
}

const fn table_descriptor(pa: u64) -> u64 {
    (pa & OA_MASK) | TABLE_OR_PAGE | VALID
}

/// The shadow stage-2 table of one context (one hardware VMID).
pub struct ShadowTable<P: FramePool, T: TlbMaintenance> {
    pool: P,
    tlb: T,
    config: ShadowConfig,
    root: u64,
    lock: UpdateLock,
    /// Tables unlinked (and invalidated) by `map` replacing a table with a
    /// block, with their level; freed under the exclusive lock.
    retired: spin::Mutex<Vec<(u64, usize)>>,
    /// Frames this table owns (root, live and retired tables).
    frames: AtomicUsize,
}

impl<P: FramePool, T: TlbMaintenance> fmt::Debug for ShadowTable<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShadowTable")
            .field("root", &self.root)
            .field("frames", &self.frames.load(Ordering::Relaxed))
            .field("config", &self.config)
            .finish()
    }
}

/// What `unmap` collected on its way down.
#[derive(Default)]
struct UnmapWork {
    leaves: usize,
    span_start: u64,
    span_end: u64,
    freed: Vec<u64>,
}

impl UnmapWork {
    fn touch(&mut self, start: u64, size: u64) {
        if self.span_end == self.span_start {
            self.span_start = start;
            self.span_end = start + size;
        } else {
            self.span_start = self.span_start.min(start);
            self.span_end = self.span_end.max(start + size);
        }
    }
}

impl<P: FramePool, T: TlbMaintenance> ShadowTable<P, T> {
    /// An empty table (one root frame from `pool`).
    pub fn new(pool: P, tlb: T, config: ShadowConfig) -> Result<Self, MapError> {
        let budget = pool.budget();
        let root = pool
            .allocate()
            .ok_or(MapError::FramesExhausted { budget })?;
        Ok(ShadowTable {
            pool,
            tlb,
            config,
            root,
            lock: UpdateLock::new(),
            retired: spin::Mutex::new(Vec::new()),
            frames: AtomicUsize::new(1),
        })
    }

    /// PA of the level-0 table: VTTBR_EL2.BADDR for L2.
    pub fn root_pa(&self) -> u64 {
        self.root
    }

    /// The frame pool.
    pub fn pool(&self) -> &P {
        &self.pool
    }

    /// The TLB maintenance hook.
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// Frames this table holds (root and tables, including tables unlinked
    /// but not yet returned to the pool).
    pub fn frames_used(&self) -> usize {
        self.frames.load(Ordering::Relaxed)
    }

    fn frame(&self, pa: u64) -> Result<&Frame, MapError> {
        self.pool.frame(pa).ok_or(MapError::ForeignTable(pa))
    }

    fn leaf_descriptor(&self, m: &ShadowMapping, level: usize) -> u64 {
        let (s2ap, mut execute) = stage2_from_permissions(m.perms);
        if !self.config.xnx && matches!(execute, Execute::El0Only | Execute::El1Only) {
            execute = Execute::Neither;
        }
        let kind = if level == 3 {
            TABLE_OR_PAGE | VALID
        } else {
            VALID
        };
        (m.pa_base & OA_MASK)
            | kind
            | (u64::from(m.mem_attr.bits()) << 2)
            | (u64::from(s2ap.bits()) << 6)
            | ((m.shareability as u64) << 8)
            | AF
            | (u64::from(execute.xn()) << 53)
    }

    fn decode_leaf(descriptor: u64, level: usize, ipa: u64) -> ShadowMapping {
        let size = entry_size(level);
        let s2ap = walker::S2Ap::from_bits(((descriptor >> 6) & 3) as u8);
        let execute = Execute::from_xn(((descriptor >> 53) & 3) as u8);
        let shareability = match (descriptor >> 8) & 3 {
            0 => MemShareability::NonShareable,
            2 => MemShareability::OuterShareable,
            // Only 0b11 and (never written) 0b01 remain.
            _ => MemShareability::InnerShareable,
        };
        ShadowMapping {
            l2_ipa_base: ipa & !(size - 1),
            pa_base: descriptor & OA_MASK & !(size - 1),
            size,
            perms: crate::compose::permissions_from_stage2(s2ap, execute),
            mem_attr: MemAttr::from_bits(((descriptor >> 2) & 0xf) as u8),
            shareability,
        }
    }

    fn validate(&self, m: &ShadowMapping) -> Result<usize, MapError> {
        let level = match m.size {
            BLOCK_1G => 1,
            BLOCK_2M => 2,
            PAGE_SIZE => 3,
            other => return Err(MapError::UnsupportedSize(other)),
        };
        if (m.l2_ipa_base | m.pa_base) & (m.size - 1) != 0 {
            return Err(MapError::Misaligned {
                l2_ipa_base: m.l2_ipa_base,
                pa_base: m.pa_base,
            });
        }
        if m.l2_ipa_base >> SHADOW_IPA_BITS != 0 {
            return Err(MapError::IpaOutOfRange(m.l2_ipa_base));
        }
        if m.pa_base >> self.config.pa_bits.min(SHADOW_IPA_BITS) != 0 {
            return Err(MapError::PaOutOfRange(m.pa_base));
        }
        Ok(level)
    }

    /// Installs `m` (concurrent callers allowed). An overlapping entry is
    /// replaced by break-before-make: a larger block around `m` is removed
    /// whole, a table where `m` is a block is unlinked with everything
    /// below it (those L2 IPAs fault again and are re-composed).
    pub fn map(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        let level = self.validate(m)?;
        let descriptor = self.leaf_descriptor(m, level);
        let ipa = m.l2_ipa_base;
        let _shared = self.lock.shared();
        let mut replaced = false;
        let mut table = self.frame(self.root)?;
        for lvl in 0..level {
            let slot = &table.0[index_at(ipa, lvl)];
            let next = loop {
                let current = slot.load(Ordering::Acquire);
                match classify(current, lvl) {
                    Entry::Table(pa) => break pa,
                    Entry::Invalid => {
                        let budget = self.pool.budget();
                        let new = self
                            .pool
                            .allocate()
                            .ok_or(MapError::FramesExhausted { budget })?;
                        // Release: the zeroed frame is visible before the
                        // descriptor that points to it.
                        match slot.compare_exchange(
                            current,
                            table_descriptor(new),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                self.frames.fetch_add(1, Ordering::Relaxed);
                                break new;
                            }
                            // Never published: nobody else can see it.
                            Err(_) => self.pool.release(new),
                        }
                    }
                    Entry::Leaf(_) => {
                        // A block covers `m`: break it, then install a table.
                        if slot
                            .compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            let size = entry_size(lvl);
                            self.tlb.invalidate_range(ipa & !(size - 1), size);
                            replaced = true;
                        }
                    }
                }
            };
            table = self.frame(next)?;
        }
        let slot = &table.0[index_at(ipa, level)];
        loop {
            let current = slot.load(Ordering::Acquire);
            if current == descriptor {
                return Ok(if replaced {
                    MapOutcome::Replaced
                } else {
                    MapOutcome::AlreadyPresent
                });
            }
            match classify(current, level) {
                Entry::Invalid => {
                    if slot
                        .compare_exchange(current, descriptor, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(if replaced {
                            MapOutcome::Replaced
                        } else {
                            MapOutcome::Installed
                        });
                    }
                }
                old => {
                    // Break ...
                    if slot
                        .compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        // ... invalidate (leaf and walk caches) ...
                        self.tlb.invalidate_range(ipa, m.size);
                        replaced = true;
                        if let Entry::Table(pa) = old {
                            // Unreachable now for hardware and for new
                            // software walks; freed under the exclusive lock.
                            self.retired.lock().push((pa, level + 1));
                        }
                    }
                    // ... make (next iteration).
                }
            }
        }
    }

    /// The shadow entry translating `l2_ipa`, if any.
    pub fn lookup(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        if l2_ipa >> SHADOW_IPA_BITS != 0 {
            return None;
        }
        let _shared = self.lock.shared();
        let mut table = self.pool.frame(self.root)?;
        for level in 0..=3 {
            let d = table.0[index_at(l2_ipa, level)].load(Ordering::Acquire);
            match classify(d, level) {
                Entry::Invalid => return None,
                Entry::Leaf(d) => return Some(Self::decode_leaf(d, level, l2_ipa)),
                Entry::Table(pa) => table = self.pool.frame(pa)?,
            }
        }
        None
    }

    /// Removes every leaf that translates an L2 IPA in
    /// `[l2_ipa_start, l2_ipa_start + len)` (a block that only partly
    /// overlaps goes whole) and frees tables left empty, after the TLB hook.
    /// Returns the number of leaves removed. Addresses beyond the 48-bit
    /// input range hold no entries; `len` is taken up to there.
    pub fn unmap_range(&self, l2_ipa_start: u64, len: u64) -> usize {
        let end = l2_ipa_start.saturating_add(len).min(1 << SHADOW_IPA_BITS);
        if l2_ipa_start >= end {
            return 0;
        }
        let _exclusive = self.lock.exclusive();
        let mut work = UnmapWork::default();
        if let Some(root) = self.pool.frame(self.root) {
            self.unmap_in(root, 0, 0, l2_ipa_start, end, &mut work);
        }
        if work.span_end > work.span_start {
            self.tlb
                .invalidate_range(work.span_start, work.span_end - work.span_start);
        }
        for pa in work.freed.drain(..) {
            self.pool.release(pa);
            self.frames.fetch_sub(1, Ordering::Relaxed);
        }
        self.reclaim_retired();
        work.leaves
    }

    /// Clears `[start, end)` within the table at `level` whose first IPA is
    /// `base`. Returns whether the table is now empty.
    fn unmap_in(
        &self,
        table: &Frame,
        level: usize,
        base: u64,
        start: u64,
        end: u64,
        work: &mut UnmapWork,
    ) -> bool {
        let size = entry_size(level);
        let first = index_at(start.max(base), level);
        let last_ipa = (end - 1).min(base + size * ENTRIES as u64 - 1);
        let last = index_at(last_ipa, level);
        let mut changed = false;
        for (i, slot) in table.0.iter().enumerate().take(last + 1).skip(first) {
            let entry_base = base + i as u64 * size;
            match classify(slot.load(Ordering::Relaxed), level) {
                Entry::Invalid => {}
                Entry::Leaf(_) => {
                    slot.store(0, Ordering::Release);
                    work.leaves += 1;
                    work.touch(entry_base, size);
                    changed = true;
                }
                Entry::Table(pa) => {
                    let Some(child) = self.pool.frame(pa) else {
                        continue;
                    };
                    if self.unmap_in(child, level + 1, entry_base, start, end, work) {
                        slot.store(0, Ordering::Release);
                        work.touch(entry_base, size);
                        work.freed.push(pa);
                        changed = true;
                    }
                }
            }
        }
        changed && table.0.iter().all(|d| d.load(Ordering::Relaxed) == 0)
    }

    /// Frees tables `map` unlinked. Caller holds the exclusive lock.
    fn reclaim_retired(&self) {
        let retired = core::mem::take(&mut *self.retired.lock());
        for (pa, level) in retired {
            self.free_subtree(pa, level);
        }
    }

    /// Returns the table at `pa` and every table below it to the pool
    /// (already unreachable and invalidated). Returns leaves dropped.
    fn free_subtree(&self, pa: u64, level: usize) -> usize {
        let mut leaves = 0;
        if let Some(frame) = self.pool.frame(pa) {
            for slot in &frame.0 {
                match classify(slot.load(Ordering::Relaxed), level) {
                    Entry::Invalid => {}
                    Entry::Leaf(_) => leaves += 1,
                    Entry::Table(child) => leaves += self.free_subtree(child, level + 1),
                }
            }
        }
        self.pool.release(pa);
        self.frames.fetch_sub(1, Ordering::Relaxed);
        leaves
    }

    /// Removes every entry (one whole-VMID invalidation) and frees every
    /// table but the root. Returns the number of leaves removed.
    pub fn clear(&self) -> usize {
        let _exclusive = self.lock.exclusive();
        self.clear_locked()
    }

    fn clear_locked(&self) -> usize {
        let mut unlinked = Vec::new();
        let mut leaves = 0;
        if let Some(root) = self.pool.frame(self.root) {
            for slot in &root.0 {
                match classify(slot.swap(0, Ordering::AcqRel), 0) {
                    Entry::Invalid => {}
                    Entry::Leaf(_) => leaves += 1,
                    Entry::Table(pa) => unlinked.push(pa),
                }
            }
        }
        self.tlb.invalidate_all();
        for pa in unlinked {
            leaves += self.free_subtree(pa, 1);
        }
        self.reclaim_retired();
        leaves
    }
}

impl<P: FramePool, T: TlbMaintenance> Drop for ShadowTable<P, T> {
    fn drop(&mut self) {
        self.clear_locked();
        self.pool.release(self.root);
    }
}
