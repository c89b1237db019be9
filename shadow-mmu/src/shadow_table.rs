//! The shadow stage-2 table L0 builds for L2: real VMSAv8-64 stage-2
//! descriptors the hardware walks, installed by hv as VTTBR_EL2 for L2.
//!
//! # Format
//!
//! 4 KiB granule, an input (L2 IPA) size of the host's PA size up to 48
//! bits ([`ShadowConfig::input_bits`]), whatever granule L1 uses. The
//! hardware starts at level 0 on hosts with 44 PA bits or more, and at
//! level 1 on smaller ones (AArch64.S2InvalidSL forbids level 0 there),
//! from up to 16 concatenated level-1 tables ([`ShadowConfig::root_tables`]).
//! Software walks always start at a level-0 table of their own; on a
//! level-1 host its first entries point at the concatenated tables for
//! the table's life, so every walk of this module is the same on both.
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
//!   (`map`/`lookup`, which take the shared side) can be inside it, or
//!   once it is on the detached list (unlinked under that lock, the hook
//!   run since), which no walk can reach;
//! - a level-2 table descriptor carries its level-3 table's number of
//!   leaves in bits \[11:2\], which the hardware ignores in a stage-2 table
//!   descriptor with VTCR_EL2.DS = 0 and HAFT = 0 ([`shadow_vtcr`];
//!   AArch64.NextTableBase takes bits \[47:12\] only). `unmap_range` uses it
//!   to unlink a level-3 table its range covers whole without visiting the
//!   table's 512 entries ([`ShadowTable::unmap_range`]).
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

use crate::sync::Mutex;

use crate::compose::{
    stage2_from_permissions, MemAttr, MemShareability, ShadowMapping, BLOCK_1G, BLOCK_2M,
    PAGE_SIZE, SHADOW_IPA_BITS,
};
use walker::Execute;

/// Descriptors per table (4 KiB / 8).
pub const ENTRIES: usize = 512;

/// Descriptors per 64-byte cache line (a [`Frame`] is 4 KiB aligned, so
/// its lines start at multiples of this index).
const DESCRIPTORS_PER_LINE: usize = 8;

/// Output address bits \[47:12\] of a descriptor.
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const AF: u64 = 1 << 10;

/// Where a level-2 table descriptor keeps its level-3 table's number of
/// leaves (0 to 512): bits \[11:2\], IGNORED in a VMSAv8-64 stage-2 table
/// descriptor while VTCR_EL2.DS = 0 (else bits \[9:8\] are address bits)
/// and VTCR_EL2.HAFT = 0 (else bit 10 is AF), as [`shadow_vtcr`] sets
/// them. Changing ignored bits of a live table descriptor needs no
/// break-before-make: the translation it gives does not change.
const LEAF_COUNT_SHIFT: u32 = 2;
const LEAF_COUNT_MASK: u64 = 0x3ff << LEAF_COUNT_SHIFT;

/// The leaves a level-2 table descriptor counts in its level-3 table.
const fn leaf_count(descriptor: u64) -> usize {
    ((descriptor & LEAF_COUNT_MASK) >> LEAF_COUNT_SHIFT) as usize
}

/// `descriptor` with its leaf count changed by `delta`, modulo the field's
/// 1024: racing `map`s (shared lock) may apply a removal before the
/// install it follows, so the field may pass below zero for a while, but
/// never into the address bits, and the sum is exact once they are done.
const fn with_leaf_count(descriptor: u64, delta: isize) -> u64 {
    let count = (leaf_count(descriptor) as isize).wrapping_add(delta) as u64;
    (descriptor & !LEAF_COUNT_MASK) | ((count << LEAF_COUNT_SHIFT) & LEAF_COUNT_MASK)
}

/// VTCR_EL2 for the shadow stage 2 on a host whose ID_AA64MMFR0_EL1.PARange
/// is `ps`:
/// - T0SZ (bits 5:0) = 64 - [`ShadowConfig::input_bits`]: the host's PA
///   size, at most 48 bits. A stage-2 input size may not exceed PAMax
///   (AArch64.S2MinTxSZ: below 64 - PAMax, T0SZ is IMPLEMENTATION DEFINED
///   without FEAT_LPA, a fault or a clamp), so a 44-bit host gets a 44-bit
///   shadow;
/// - SL0 (bits 7:6): 0b10, start at level 0, with 44 PA bits or more;
///   0b01, level 1, under 44 (level 0 needs PAMax >= 44,
///   AArch64.S2InvalidSL), from [`ShadowConfig::root_tables`] concatenated
///   tables (AArch64.S2InconsistentSL allows level 1 for 31 to 43 bits);
/// - IRGN0 = ORGN0 = 0b01 (bits 9:8, 11:10): table walks Write-Back
///   Read-Allocate Write-Allocate cacheable, so they snoop the stores `map`
///   makes through normal cacheable memory;
/// - SH0 = 0b11 (bits 13:12): Inner Shareable walks;
/// - TG0 = 0b00 (bits 15:14): 4 KiB granule;
/// - PS (bits 18:16): `ps`; the shadow's output addresses are host PAs;
/// - VS (bit 19) = 1 when `vmid_16bit`;
/// - HA = HD = 0, DS = 0, NSW/NSA = 0: no hardware updates, 48-bit format;
/// - bit 31: RES1.
///
/// `None` for a reserved `ps` (0b111 and above).
pub const fn shadow_vtcr(ps: u8, vmid_16bit: bool) -> Option<u64> {
    let Some(config) = ShadowConfig::for_pa_range(ps, false) else {
        return None;
    };
    let t0sz = 64 - config.input_bits() as u64;
    let sl0 = if config.start_level() == 0 {
        0b10
    } else {
        0b01
    };
    Some(
        t0sz | (sl0 << 6)
            | (0b01 << 8)
            | (0b01 << 10)
            | (0b11 << 12)
            | ((ps as u64) << 16)
            | ((vmid_16bit as u64) << 19)
            | (1 << 31),
    )
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
    /// `frames` zeroed frames at consecutive PAs, the first aligned to
    /// `frames` * 4 KiB (concatenated root tables); the first's PA, or
    /// `None` when no such run is free or `frames` is not a power of two
    /// from 1 to 16. Each frame is released on its own.
    fn allocate_contiguous(&self, frames: usize) -> Option<u64>;
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

/// The impl header's pointer to a pool (a reference, an `Arc`) is a pool:
/// every call goes to the pool it points to.
macro_rules! frame_pool_through_pointer {
    ($($header:tt)*) => {
        $($header)* {
            fn allocate(&self) -> Option<u64> {
                (**self).allocate()
            }
            fn allocate_contiguous(&self, frames: usize) -> Option<u64> {
                (**self).allocate_contiguous(frames)
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
    };
}

frame_pool_through_pointer!(impl<P: FramePool + ?Sized> FramePool for &P);
frame_pool_through_pointer!(impl<P: FramePool + Send + ?Sized> FramePool for alloc::sync::Arc<P>);

/// A [`FramePool`] of heap frames for hosts and tests: `budget` frames
/// allocated up front, PA = `base_pa + 4096 * index` (a fake physical
/// layout, or the frames' own addresses with [`HeapFramePool::identity`]).
/// It also reads as [`walker::GuestMemory`] so the walker can walk a
/// shadow table built in it.
pub struct HeapFramePool {
    frames: Box<[Frame]>,
    base_pa: u64,
    free: Mutex<Vec<u32>>,
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
            free: Mutex::new(free),
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

    /// Whether `pa` is a frame of this pool that is currently free (tests
    /// and models check that no reachable table is).
    pub fn is_free(&self, pa: u64) -> bool {
        match self.index(pa) {
            Some(index) => self.free.lock().contains(&(index as u32)),
            None => false,
        }
    }

    #[inline]
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

    fn allocate_contiguous(&self, frames: usize) -> Option<u64> {
        if !frames.is_power_of_two() || frames > MAX_ROOT_TABLES {
            return None;
        }
        let mut free = self.free.lock();
        // Descending, so `pop` still hands out low indexes first; in place,
        // so nothing is allocated. Called when a shadow is made, not per
        // fault.
        free.sort_unstable_by(|a, b| b.cmp(a));
        let first_frame = self.base_pa / PAGE_SIZE;
        // A run of `frames` consecutive indexes is a window whose first
        // entry is its last plus `frames - 1` (the list has no duplicates).
        let at = free.windows(frames).position(|run| {
            let lowest = u64::from(run[frames - 1]);
            u64::from(run[0]) == lowest + frames as u64 - 1
                && (first_frame + lowest).is_multiple_of(frames as u64)
        })?;
        let lowest = free[at + frames - 1];
        free.drain(at..at + frames);
        self.in_use.fetch_add(frames, Ordering::Relaxed);
        Some(self.base_pa + u64::from(lowest) * PAGE_SIZE)
    }

    // Inline: a shadow walk asks for a frame per level, about five calls
    // a nested fault, each a call for a subtraction and a compare.
    #[inline]
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
    events: Mutex<Vec<TlbEvent>>,
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
    /// composition allowed; the service composes with the same reduction,
    /// [`crate::compose::HostExecute`], and `Service::new` refuses an L1
    /// shown FEAT_XNX on a host without it).
    pub xnx: bool,
    /// Host physical address size in bits (<= 48): output addresses above
    /// it are refused.
    pub pa_bits: u32,
}

impl ShadowConfig {
    /// The shadow's input size, the L2 IPAs it can map: the host's PA
    /// size, at most 48 bits (the 48-bit descriptor format, and
    /// [`SHADOW_IPA_BITS`]). [`shadow_vtcr`] gives the hardware the same
    /// size; `Service::new` refuses an L1 shown a larger PA size, so every
    /// L2 IPA L1's stage 2 translates fits.
    pub const fn input_bits(&self) -> u32 {
        if self.pa_bits < SHADOW_IPA_BITS {
            self.pa_bits
        } else {
            SHADOW_IPA_BITS
        }
    }

    /// The level the hardware starts its walk of the shadow at: 0 with 44
    /// input bits or more, else 1 (a 4 KiB stage 2 may start at level 0
    /// only with PAMax >= 44, AArch64.S2InvalidSL).
    pub const fn start_level(&self) -> usize {
        if self.input_bits() >= 44 {
            0
        } else {
            1
        }
    }

    /// How many concatenated tables the hardware's walk starts from: one
    /// at level 0; at level 1, one per 39 bits of input (2 for 40 bits, 16
    /// for 43), at least one.
    pub const fn root_tables(&self) -> usize {
        let bits = self.input_bits();
        if self.start_level() == 0 || bits <= 39 {
            1
        } else {
            1 << (bits - 39)
        }
    }

    /// Frames an empty [`ShadowTable`] holds: its level-0 root, and with a
    /// level-1 start the [`ShadowConfig::root_tables`] start tables
    /// (what [`crate::budget::Budget::split_for`] sets aside per context).
    pub const fn empty_table_frames(&self) -> usize {
        if self.start_level() == 0 {
            1
        } else {
            1 + self.root_tables()
        }
    }

    /// Frames a fresh pool may have to skip to place the first run of
    /// start tables at its alignment (a run of `root_tables` frames aligned
    /// to its size, AArch64.S2TTBaseAddress; the pool's base need not be):
    /// up to `root_tables - 1`. Later runs follow at the next aligned
    /// blocks (the service makes every slot's shadow first, start tables
    /// before the root, so roots take the skipped frames). Zero with one
    /// start table.
    pub const fn alignment_frames(&self) -> usize {
        if self.start_level() == 0 {
            0
        } else {
            self.root_tables() - 1
        }
    }

    /// The configuration of a host whose ID_AA64MMFR0_EL1.PARange is `ps`
    /// (`None` for a reserved value).
    pub const fn for_pa_range(ps: u8, xnx: bool) -> Option<ShadowConfig> {
        let pa_bits = match ps {
            0b000 => 32,
            0b001 => 36,
            0b010 => 40,
            0b011 => 42,
            0b100 => 44,
            0b101 => 48,
            0b110 => 52,
            _ => return None,
        };
        Some(ShadowConfig { xnx, pa_bits })
    }
}

/// The most concatenated root tables a shadow uses (43 input bits from
/// level 1; the architecture's limit too).
pub const MAX_ROOT_TABLES: usize = 16;

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
    /// The L2 IPA is beyond the shadow's input size
    /// ([`ShadowConfig::input_bits`]).
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
            MapError::IpaOutOfRange(a) => {
                write!(f, "L2 IPA {a:#x} beyond the shadow's input size")
            }
            MapError::PaOutOfRange(a) => write!(f, "PA {a:#x} beyond the host PA size"),
            MapError::FramesExhausted { budget } => {
                write!(f, "shadow table frame budget ({budget} frames) exhausted")
            }
            MapError::ForeignTable(pa) => write!(f, "table descriptor names foreign frame {pa:#x}"),
        }
    }
}

/// Where a walk of a shadow for one IPA stopped
/// ([`ShadowTable::lookup_place_excluded`]): the deepest table it reached
/// and that table's level. [`ShadowTable::map_excluded_at`] starts its walk
/// there instead of at the root, under the same exclusion. A place that
/// went stale (a table of its shadow was unlinked since the walk: an unmap
/// that freed tables, a clear, a map that replaced a table by a block) or
/// that is another shadow's (a live one, or a dropped one whose root frame
/// a new shadow got: review 52 R52-2), or that was taken for an IPA whose
/// table region at that level is not the mapping's, is not used: the map
/// walks from the root, so a wrong place costs a walk, never a descriptor
/// written into a freed, foreign or unrelated table (review 51 R51-2).
/// [`ShadowPlace::ROOT`] always walks from the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowPlace {
    /// The table's PA; 0 for the root (not known here).
    table: u64,
    level: u8,
    /// The walked shadow's never-reused identity and [`ShadowTable`]'s
    /// `shape` at the walk.
    identity: u64,
    shape: u64,
    /// The walked IPA's region that `table` translates: its bits above
    /// the span of one entry of the level above.
    region: u64,
    /// The table holding the entry that links `table` (a level-3 table's
    /// leaf count is kept there).
    parent: u64,
}

impl ShadowPlace {
    /// No walk known: a map from the place walks from the root.
    pub const ROOT: ShadowPlace = ShadowPlace {
        table: 0,
        level: 0,
        identity: 0,
        shape: 0,
        region: 0,
        parent: 0,
    };
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
        // Uncontended (the usual case): one compare-and-swap, no reader to
        // wait for.
        if self
            .state
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return ExclusiveGuard(self);
        }
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

/// What keeps a `map` from racing the calls that free tables.
#[derive(Clone, Copy, Debug)]
enum Exclusion {
    /// The table's update lock, shared.
    UpdateLock,
    /// A lock of the caller's that every change of the tree holds
    /// ([`ShadowTable::map_excluded`]).
    Caller,
}

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
    /// The software walks' level-0 table (also the hardware's when
    /// [`ShadowConfig::start_level`] is 0).
    root: u64,
    /// With a level-1 start, the first of the [`ShadowConfig::root_tables`]
    /// concatenated level-1 tables (VTTBR_EL2.BADDR), which `root`'s first
    /// entries point at for the table's life; else `root`.
    hardware_root: u64,
    lock: UpdateLock,
    /// Tables unlinked (and invalidated) by `map` replacing a table with a
    /// block, with their level; freed under the exclusive lock.
    retired: Mutex<Vec<(u64, usize)>>,
    /// How many tables `retired` holds, stored under its lock by `map`
    /// (shared side) and read by the exclusive side, which is ordered after
    /// every shared holder: exact there, so it may skip the lock.
    retired_count: AtomicUsize,
    /// Subtrees `clear` detached from the root: unlinked under the
    /// exclusive lock and invalidated, so no hardware or software walk can
    /// reach them; their frames go back to the pool a few at a time
    /// ([`ShadowTable::reclaim_detached`]), depth first: the list holds the
    /// detached level-1 tables and the path down to the table being freed,
    /// so it stays within its preallocated [`DETACHED_LIST_CAPACITY`]
    /// unless clears outpace reclamation.
    detached: Mutex<Vec<Detached>>,
    /// How many subtrees `detached` holds, readable without its lock: a
    /// hint that lets `map` and `unmap_range` skip the lock when nothing is
    /// detached (reclamation is best effort; a stale zero only defers it).
    detached_hint: AtomicUsize,
    /// Bit g: some entry of the hardware's start level in group g may be
    /// in use (set by `map` when it links a table there, or installs a
    /// block at level 1): `clear` visits only those groups. A group is
    /// `start_entries / 64` entries (8 for one level-0 table).
    root_groups: AtomicU64,
    /// Frames this table owns (root, live, retired and detached tables).
    frames: AtomicUsize,
    /// Leaves reachable from the root (and in retired tables not freed
    /// yet): what `clear` reports without walking the tree.
    leaves: AtomicUsize,
    /// Bumped whenever a table is unlinked from the tree (`unmap_range`
    /// freeing tables, `clear`, `map` replacing a table by a block): a
    /// [`ShadowPlace`] taken before names a table that may be gone, and is
    /// not used. Written under the exclusive lock or by a `map` (shared
    /// lock or the caller's exclusion), read under the caller's exclusion,
    /// which orders it: not modelled under loom (no model's outcome
    /// depends on it beyond what the locks order).
    shape: crate::sync::unmodelled::AtomicU64,
    /// Never shared with another table of this process, even after this one
    /// is dropped (its root frame may go to the next): what a
    /// [`ShadowPlace`] names its shadow by.
    identity: u64,
}

/// The next [`ShadowTable`]'s identity (0 is [`ShadowPlace::ROOT`]'s). An
/// identity only names, orders nothing: plain core atomic under loom too.
static NEXT_SHADOW_IDENTITY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// A detached table on its way back to the pool: its entries below `next`
/// have been handed on (their tables freed or on the list above it).
#[derive(Clone, Copy, Debug)]
struct Detached {
    pa: u64,
    level: u8,
    next: u16,
}

/// Entries the detached list is made with: one `clear`'s level-1 tables
/// (one per root entry) and the path below the table being freed. It
/// shrinks back to this when it empties, so whatever it grew to under a
/// burst of clears does not stay allocated.
pub const DETACHED_LIST_CAPACITY: usize = ENTRIES + 4;

// The budget counts a waiting frame's list entry, twice over for growth.
const _: () = assert!(
    2 * core::mem::size_of::<Detached>() <= crate::budget::FRAME_LIST_BYTES
        && 2 * core::mem::size_of::<(u64, usize)>() <= crate::budget::FRAME_LIST_BYTES
);

/// Bytes the detached list costs when made (per shadow table).
pub const DETACHED_LIST_BYTES: usize = DETACHED_LIST_CAPACITY * core::mem::size_of::<Detached>();

/// Entries the retired list is made with and keeps: tables `map` replaced
/// by blocks since the last exclusive section. A push within them
/// allocates nothing on a fault's way; beyond them the list grows (its
/// entries are counted per frame in `FRAME_LIST_BYTES`) and shrinks back
/// when drained.
pub const RETIRED_LIST_CAPACITY: usize = 16;

/// Bytes the retired list costs when made (per shadow table).
pub const RETIRED_LIST_BYTES: usize = RETIRED_LIST_CAPACITY * core::mem::size_of::<(u64, usize)>();

/// Bytes a shadow table's bookkeeping lists cost when made.
pub const SHADOW_LISTS_BYTES: usize = DETACHED_LIST_BYTES + RETIRED_LIST_BYTES;

/// Detached frames a `map` or `unmap_range` returns to the pool on its way
/// (bounded work per call; a `clear` of a million entries is reclaimed
/// over a few hundred later calls).
pub const RECLAIM_STEP: usize = 4;

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
    /// Whether a level-3 table the range covers whole is unlinked without
    /// a visit ([`UnmapWork::detach_later`]) rather than cleared entry by
    /// entry.
    detach: bool,
    leaves: usize,
    span_start: u64,
    span_end: u64,
    /// The first of the tables emptied and unlinked, which go back to the
    /// pool only after the TLB hook; see [`UnmapWork::free_later`].
    freed: Option<u64>,
    /// The first and the last of the level-3 tables unlinked whole, with
    /// their leaves, which go to the detached list after the TLB hook; see
    /// [`UnmapWork::detach_later`].
    detached: Option<(u64, u64)>,
}

/// Marks a freed-list link in a table's first entry (with the next table's
/// address). Bit 0, valid, stays clear: to a walk the entry is invalid.
const FREED_LINK: u64 = 1 << 1;

/// The table a detached level-3 table's first entry links to, if it leads
/// a chain (`UnmapWork::detach_later`): a link has bit 1 set and bit 0
/// clear, which no entry this code writes in a live table has (a page is
/// 0b11, an invalid entry 0).
fn chained_after(table: &Frame) -> Option<u64> {
    let first = table.0[0].load(Ordering::Relaxed);
    (first & (VALID | FREED_LINK) == FREED_LINK).then_some(first & OA_MASK)
}

impl UnmapWork {
    /// Queues the emptied, unlinked table at `pa` for the pool. The list is
    /// threaded through each table's first entry, so an unmap allocates
    /// nothing however many tables it empties (it runs on the TLBI path and
    /// on a fault's install). The link is an invalid descriptor (bit 0
    /// clear), so a hardware walk that still reaches the table through a
    /// walk cache before the hook runs gets the same fault an all-zero
    /// table gives; no software walk runs meanwhile (exclusive lock).
    fn free_later(&mut self, table: &Frame, pa: u64) {
        let link = self.freed.map_or(0, |next| next | FREED_LINK);
        table.0[0].store(link, Ordering::Relaxed);
        self.freed = Some(pa);
    }

    /// Queues the level-3 table at `pa`, unlinked with its leaves, for the
    /// detached list: a chain through each table's first entry, as
    /// [`UnmapWork::free_later`]'s (the same invalid link; the entry's leaf
    /// is removed with the others, so a walk that still reaches the table
    /// before the hook faults there or translates as before the unmap).
    fn detach_later(&mut self, table: &Frame, pa: u64) {
        let (link, last) = match self.detached {
            Some((first, last)) => (first | FREED_LINK, last),
            None => (0, pa),
        };
        table.0[0].store(link, Ordering::Relaxed);
        self.detached = Some((pa, last));
    }

    #[inline]
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
    /// An empty table: one root frame from `pool`, and with a level-1
    /// start its [`ShadowConfig::root_tables`] concatenated level-1 tables.
    pub fn new(pool: P, tlb: T, config: ShadowConfig) -> Result<Self, MapError> {
        let budget = pool.budget();
        let exhausted = MapError::FramesExhausted { budget };
        // The aligned run of start tables first, then the root: a root taken
        // first could sit in the only place the run fits (review 30 R30-1).
        let tables = config.root_tables();
        let start_tables = if config.start_level() == 0 {
            None
        } else {
            Some(pool.allocate_contiguous(tables).ok_or(exhausted)?)
        };
        let release_start_tables = |pool: &P| {
            if let Some(first) = start_tables {
                for i in 0..tables {
                    pool.release(first + i as u64 * PAGE_SIZE);
                }
            }
        };
        let Some(root) = pool.allocate() else {
            release_start_tables(&pool);
            return Err(exhausted);
        };
        let hardware_root = match start_tables {
            None => root,
            Some(first) => {
                let Some(software_root) = pool.frame(root) else {
                    pool.release(root);
                    release_start_tables(&pool);
                    return Err(MapError::ForeignTable(root));
                };
                for (i, slot) in software_root.0[..tables].iter().enumerate() {
                    slot.store(
                        table_descriptor(first + i as u64 * PAGE_SIZE),
                        Ordering::Relaxed,
                    );
                }
                first
            }
        };
        Ok(ShadowTable {
            pool,
            tlb,
            config,
            root,
            hardware_root,
            lock: UpdateLock::new(),
            retired: Mutex::new(Vec::with_capacity(RETIRED_LIST_CAPACITY)),
            retired_count: AtomicUsize::new(0),
            detached: Mutex::new(Vec::with_capacity(DETACHED_LIST_CAPACITY)),
            detached_hint: AtomicUsize::new(0),
            root_groups: AtomicU64::new(0),
            frames: AtomicUsize::new(config.empty_table_frames()),
            leaves: AtomicUsize::new(0),
            shape: crate::sync::unmodelled::AtomicU64::new(0),
            identity: NEXT_SHADOW_IDENTITY.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
        })
    }

    /// PA of the table(s) the hardware starts at: VTTBR_EL2.BADDR for L2
    /// (with [`shadow_vtcr`] of the same host).
    pub fn root_pa(&self) -> u64 {
        self.hardware_root
    }

    /// The group bit of `root_groups` for the start-level entry of `ipa`.
    fn root_group(&self, ipa: u64) -> u64 {
        let start = self.config.start_level();
        let entries = self.config.root_tables() * ENTRIES;
        let index = (ipa >> level_shift(start)) as usize & (entries - 1);
        1 << (index / (entries / 64))
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

    /// Leaves installed (including those in replaced tables not freed
    /// yet): what a `clear` now would report.
    pub fn leaves(&self) -> usize {
        self.leaves.load(Ordering::Relaxed)
    }

    fn frame(&self, pa: u64) -> Result<&Frame, MapError> {
        self.pool.frame(pa).ok_or(MapError::ForeignTable(pa))
    }

    fn leaf_descriptor(&self, m: &ShadowMapping, level: usize) -> u64 {
        // The service composes with this reduction already
        // (`HostExecute::encodable`, so what translate answers is what is
        // installed); it is repeated here so that no caller of `map` can
        // get a descriptor granting more than it asked for. Without
        // FEAT_XNX, bit [53] is RES0 rather than XN[0]: XN = 0b01 or 0b11
        // would read as 0b00 or 0b10 (execute at both levels, or neither),
        // so one-level execute has no encoding and becomes no execute.
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
        if m.l2_ipa_base >> self.config.input_bits() != 0 {
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
    ///
    /// When the pool is exhausted, tables unlinked by earlier `map`s are
    /// freed (briefly taking the exclusive lock, which also waits for
    /// another thread's reclaim to finish) and the map retried once; [`MapError::FramesExhausted`] then
    /// means the budget really is used up: evict (unmap) and retry.
    /// Intermediate tables built before the failure stay for the retry
    /// (`unmap_range` and `clear` free empty tables).
    pub fn map(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.map_with(m, Exclusion::UpdateLock, ShadowPlace::ROOT)
    }

    /// [`ShadowTable::map`] without the table's update lock, for a caller
    /// that already excludes every call that changes the tree (`map`,
    /// `unmap_range`, `clear`, `reclaim`) by a lock of its own, as
    /// [`ShadowTable::lookup_excluded`]: the service, under the lock of the
    /// context that owns the table. Lock-free `lookup`s may run beside it
    /// (they only wait out the tables `unmap_range` frees, which cannot
    /// run now). A new leaf then costs no locked read-modify-write (`map`
    /// pays four: the lock's two, the entry's exchange, the leaf count's
    /// increment): the entry and the count are stored. Called
    /// without that exclusion it is not safe: `unmap_range` could free a
    /// table under its walk, and a racing `map`'s entry or count be lost.
    pub fn map_excluded(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.map_with(m, Exclusion::Caller, ShadowPlace::ROOT)
    }

    /// [`ShadowTable::map_excluded`] whose walk starts at `place`, where a
    /// [`ShadowTable::lookup_place_excluded`] of `m`'s base under the same
    /// exclusion stopped: the upper levels are not read a second time. A
    /// place below `m`'s level (a page's table, for a block), one another
    /// shadow's lookup returned, or one a table unlink made stale since (an
    /// unmap that freed tables, a clear, a block replacing a table) is not
    /// used: the walk starts at the root (see [`ShadowPlace`]).
    pub fn map_excluded_at(
        &self,
        m: &ShadowMapping,
        place: ShadowPlace,
    ) -> Result<MapOutcome, MapError> {
        self.map_with(m, Exclusion::Caller, place)
    }

    /// [`ShadowTable::lookup_excluded`], and where its walk stopped (for
    /// [`ShadowTable::map_excluded_at`]), under the same exclusion.
    pub fn lookup_place_excluded(&self, l2_ipa: u64) -> (Option<ShadowMapping>, ShadowPlace) {
        if l2_ipa >> self.config.input_bits() != 0 {
            return (None, ShadowPlace::ROOT);
        }
        let Some(mut table) = self.pool.frame(self.root) else {
            return (None, ShadowPlace::ROOT);
        };
        let mut place = ShadowPlace::ROOT;
        let mut table_pa = self.root;
        let shape = self.shape.load(Ordering::Relaxed);
        for level in 0..=3 {
            let d = table.0[index_at(l2_ipa, level)].load(Ordering::Acquire);
            match classify(d, level) {
                Entry::Invalid => return (None, place),
                Entry::Leaf(d) => return (Some(Self::decode_leaf(d, level, l2_ipa)), place),
                Entry::Table(pa) => {
                    let Some(next) = self.pool.frame(pa) else {
                        return (None, place);
                    };
                    table = next;
                    place = ShadowPlace {
                        table: pa,
                        level: level as u8 + 1,
                        identity: self.identity,
                        shape,
                        region: l2_ipa >> level_shift(level),
                        parent: table_pa,
                    };
                    table_pa = pa;
                }
            }
        }
        (None, place)
    }

    fn map_with(
        &self,
        m: &ShadowMapping,
        exclusion: Exclusion,
        place: ShadowPlace,
    ) -> Result<MapOutcome, MapError> {
        let level = self.validate(m)?;
        let descriptor = self.leaf_descriptor(m, level);
        self.reclaim_detached(RECLAIM_STEP);
        // Only the first attempt starts at `place`: the retries follow a
        // reclaim, and start at the root.
        let mut result = self.map_shared_from(m, level, descriptor, exclusion, place);
        if matches!(result, Err(MapError::FramesExhausted { .. })) {
            // Tables retired by maps come back under the exclusive lock,
            // which also waits out another thread's reclaim that has taken
            // the retired list and is still returning its frames (the list
            // looks empty then, yet the frames are on their way).
            self.reclaim();
            result = self.map_shared(m, level, descriptor, exclusion);
        }
        // Pool pressure: return detached frames (a map needs at most three
        // new tables) until the map fits or nothing detached is left.
        while matches!(result, Err(MapError::FramesExhausted { .. }))
            && self.reclaim_detached(RECLAIM_STEP) > 0
        {
            result = self.map_shared(m, level, descriptor, exclusion);
        }
        result
    }

    /// Returns up to `max_frames` frames of subtrees `clear` detached to
    /// the pool; the number returned. Each frame costs one pass over its
    /// entries for child tables (above level 3, spread over the calls that
    /// free its children) and the pool's zeroing; nothing is allocated. No
    /// lock is needed against walkers: nothing can reach a detached frame
    /// any more.
    #[inline]
    pub fn reclaim_detached(&self, max_frames: usize) -> usize {
        // Nearly always nothing is detached: checked without a call.
        if self.detached_hint.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.reclaim_some_detached(max_frames)
    }

    fn reclaim_some_detached(&self, max_frames: usize) -> usize {
        let mut freed = 0;
        while freed < max_frames {
            let Some(pa) = self.next_detached_leaf_table() else {
                break;
            };
            // Outside the list's lock: the pool zeroes the frame.
            self.pool.release(pa);
            self.frames.fetch_sub(1, Ordering::Relaxed);
            freed += 1;
        }
        freed
    }

    /// Takes the next detached table with no child table left off the list
    /// (descending into the first child table it finds, depth first).
    fn next_detached_leaf_table(&self) -> Option<u64> {
        let mut detached = self.detached.lock();
        let pa = loop {
            let Some(top) = detached.last_mut() else {
                break None;
            };
            let mut child = None;
            if top.level < 3 {
                if let Some(frame) = self.pool.frame(top.pa) {
                    while child.is_none() && usize::from(top.next) < ENTRIES {
                        let slot = &frame.0[usize::from(top.next)];
                        top.next += 1;
                        if let Entry::Table(pa) =
                            classify(slot.load(Ordering::Relaxed), usize::from(top.level))
                        {
                            child = Some(pa);
                        }
                    }
                }
            }
            match child {
                Some(pa) => {
                    let level = top.level + 1;
                    detached.push(Detached { pa, level, next: 0 });
                }
                // A level-3 table `unmap_range` detached may lead a chain
                // (`UnmapWork::detach_later`): the next one takes its place.
                None if top.level == 3 => {
                    let pa = top.pa;
                    match self.pool.frame(pa).and_then(chained_after) {
                        Some(next) => top.pa = next,
                        None => {
                            detached.pop();
                        }
                    }
                    break Some(pa);
                }
                None => break detached.pop().map(|d| d.pa),
            }
        };
        if detached.is_empty() && detached.capacity() > DETACHED_LIST_CAPACITY {
            detached.shrink_to(DETACHED_LIST_CAPACITY);
        }
        self.detached_hint.store(detached.len(), Ordering::Relaxed);
        pa
    }

    /// Hands the chain of level-3 tables `unmap_range` unlinked whole
    /// (first, last) to the detached list, once the TLB hook has run. A
    /// level-3 table on top of the list (a chain, or one of a cleared
    /// subtree) is linked after the chain's last, so a run of range unmaps
    /// keeps one list entry.
    fn detach_chain(&self, (first, last): (u64, u64)) {
        let mut detached = self.detached.lock();
        match detached.last_mut() {
            Some(top) if top.level == 3 => {
                if let Some(frame) = self.pool.frame(last) {
                    frame.0[0].store(top.pa | FREED_LINK, Ordering::Relaxed);
                    top.pa = first;
                } else {
                    detached.push(Detached {
                        pa: first,
                        level: 3,
                        next: 0,
                    });
                }
            }
            _ => detached.push(Detached {
                pa: first,
                level: 3,
                next: 0,
            }),
        }
        self.detached_hint.store(detached.len(), Ordering::Relaxed);
    }

    /// Whether detached frames are waiting to be reclaimed.
    pub fn has_detached(&self) -> bool {
        !self.detached.lock().is_empty()
    }

    /// Frees the tables `map` unlinked when it replaced a table by a block
    /// (already unreachable and invalidated), waiting for in-flight `map`s
    /// and `lookup`s to leave them.
    pub fn reclaim(&self) {
        let _exclusive = self.lock.exclusive();
        self.reclaim_retired();
    }

    fn map_shared(
        &self,
        m: &ShadowMapping,
        level: usize,
        descriptor: u64,
        exclusion: Exclusion,
    ) -> Result<MapOutcome, MapError> {
        self.map_shared_from(m, level, descriptor, exclusion, ShadowPlace::ROOT)
    }

    /// `map_shared` whose walk starts at `place` (see
    /// [`ShadowTable::map_excluded_at`]) if that is at or above `level`.
    fn map_shared_from(
        &self,
        m: &ShadowMapping,
        level: usize,
        descriptor: u64,
        exclusion: Exclusion,
        place: ShadowPlace,
    ) -> Result<MapOutcome, MapError> {
        let ipa = m.l2_ipa_base;
        let _shared = match exclusion {
            Exclusion::UpdateLock => Some(self.lock.shared()),
            Exclusion::Caller => None,
        };
        let mut replaced = false;
        // For a page: the level-2 entry linking its table, which counts the
        // table's leaves, and the table's PA.
        let mut parent: Option<(&AtomicU64, u64)> = None;
        let (mut table, first) = match place {
            ShadowPlace {
                table,
                level: at,
                identity,
                shape,
                region,
                parent: parent_table,
            } if at != 0
                && usize::from(at) <= level
                && identity == self.identity
                && shape == self.shape.load(Ordering::Relaxed)
                && region == ipa >> level_shift(usize::from(at) - 1) =>
            {
                debug_assert!(matches!(exclusion, Exclusion::Caller));
                if at == 3 {
                    let slot = &self.frame(parent_table)?.0[index_at(ipa, 2)];
                    parent = Some((slot, table));
                }
                (self.frame(table)?, usize::from(at))
            }
            _ => (self.frame(self.root)?, 0),
        };
        for lvl in first..level {
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
                                if lvl == self.config.start_level() {
                                    // Seen by `clear` under the exclusive
                                    // lock (after this map's shared unlock).
                                    self.root_groups
                                        .fetch_or(self.root_group(ipa), Ordering::Relaxed);
                                }
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
                            self.leaves.fetch_sub(1, Ordering::Relaxed);
                            let size = entry_size(lvl);
                            self.tlb.invalidate_range(ipa & !(size - 1), size);
                            replaced = true;
                        }
                    }
                }
            };
            if lvl == 2 {
                parent = Some((slot, next));
            }
            table = self.frame(next)?;
        }
        let slot = &table.0[index_at(ipa, level)];
        // `parent` is known exactly for a page: its table's leaf count
        // follows each leaf this map installs or breaks.
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
                    let installed = match exclusion {
                        Exclusion::UpdateLock => slot
                            .compare_exchange(
                                current,
                                descriptor,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok(),
                        // No other writer of the entry or of the leaf count
                        // can run (the caller's lock; the hardware never
                        // writes the shadow, VTCR_EL2.HA = HD = 0): a store
                        // each, no locked read-modify-write. Release, as
                        // the exchange: lock-free lookups read the entry.
                        Exclusion::Caller => {
                            slot.store(descriptor, Ordering::Release);
                            true
                        }
                    };
                    if installed {
                        if level == self.config.start_level() {
                            // A 1 GiB block in a level-1 start table.
                            self.root_groups
                                .fetch_or(self.root_group(ipa), Ordering::Relaxed);
                        }
                        match exclusion {
                            Exclusion::UpdateLock => {
                                self.leaves.fetch_add(1, Ordering::Relaxed);
                            }
                            Exclusion::Caller => {
                                let now = self.leaves.load(Ordering::Relaxed);
                                self.leaves.store(now + 1, Ordering::Relaxed);
                            }
                        }
                        if let Some((parent, leaf_table)) = parent {
                            Self::count_leaves(parent, leaf_table, 1, exclusion);
                        }
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
                        if let Entry::Leaf(_) = old {
                            self.leaves.fetch_sub(1, Ordering::Relaxed);
                            if let Some((parent, leaf_table)) = parent {
                                Self::count_leaves(parent, leaf_table, -1, exclusion);
                            }
                        }
                        if let Entry::Table(pa) = old {
                            // Unreachable now for hardware and for new
                            // software walks; freed under the exclusive lock.
                            self.shape.fetch_add(1, Ordering::Relaxed);
                            let mut retired = self.retired.lock();
                            retired.push((pa, level + 1));
                            self.retired_count.store(retired.len(), Ordering::Relaxed);
                        }
                    }
                    // ... make (next iteration).
                }
            }
        }
    }

    /// Adds `delta` to the leaf count the level-2 entry `parent` keeps for
    /// the level-3 table at `leaf_table`, if it still links that table: a
    /// racing `map` may have replaced it by a block meanwhile (shared
    /// lock), and a retired table's leaves are counted when it is freed.
    /// Release, as the publication of the table: a lock-free walk that
    /// reads the new value still sees the table as published.
    #[inline]
    fn count_leaves(parent: &AtomicU64, leaf_table: u64, delta: isize, exclusion: Exclusion) {
        let mut current = parent.load(Ordering::Relaxed);
        match exclusion {
            // Nothing else changes the entry (the caller's lock): a store.
            Exclusion::Caller => {
                debug_assert_eq!(classify(current, 2), Entry::Table(leaf_table));
                parent.store(with_leaf_count(current, delta), Ordering::Release);
            }
            // Other `map`s count into the same entry, or replace it.
            Exclusion::UpdateLock => {
                while classify(current, 2) == Entry::Table(leaf_table) {
                    match parent.compare_exchange_weak(
                        current,
                        with_leaf_count(current, delta),
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(now) => current = now,
                    }
                }
            }
        }
    }

    /// The shadow entry translating `l2_ipa`, if any.
    pub fn lookup(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        if l2_ipa >> self.config.input_bits() != 0 {
            return None;
        }
        let _shared = self.lock.shared();
        self.walk_to_leaf(l2_ipa)
    }

    /// [`ShadowTable::lookup`] without the table's update lock, for a
    /// caller that already excludes every call that changes the tree
    /// (`map`, `unmap_range`, `clear`, `reclaim`) by a lock of its own:
    /// the service, under the lock of the context that owns the table.
    /// Nothing then unlinks or frees a table under the walk, so it reads
    /// what `lookup` would, two atomic read-modify-writes cheaper. Called
    /// without that exclusion it is still memory-safe (pool frames stay
    /// allocated while the pool lives, and every descriptor is read
    /// atomically) but may answer from a table being freed.
    pub fn lookup_excluded(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        if l2_ipa >> self.config.input_bits() != 0 {
            return None;
        }
        self.walk_to_leaf(l2_ipa)
    }

    fn walk_to_leaf(&self, l2_ipa: u64) -> Option<ShadowMapping> {
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

    /// Asks for the cache lines an `unmap_range` around `l2_ipa` will
    /// touch below the tables already in the CPU's caches: the entry for
    /// `l2_ipa` in each table on its path (the emptiness check of a table
    /// in use usually stops on that line: `unmap_in`). A hint only:
    /// it takes no lock, so it may follow a table being replaced, which is
    /// harmless (pool frames stay allocated while the pool lives, and a
    /// prefetch of any address has no effect but on timing). Under loom it
    /// does nothing, so the models explore no extra loads.
    pub fn prefetch_leaf(&self, l2_ipa: u64) {
        #[cfg(not(loom))]
        {
            if l2_ipa >> self.config.input_bits() != 0 {
                return;
            }
            let Some(mut table) = self.pool.frame(self.root) else {
                return;
            };
            for level in 0..3 {
                let d = table.0[index_at(l2_ipa, level)].load(Ordering::Relaxed);
                let Entry::Table(pa) = classify(d, level) else {
                    return;
                };
                let Some(next) = self.pool.frame(pa) else {
                    return;
                };
                crate::prefetch::prefetch(&next.0[index_at(l2_ipa, level + 1)]);
                table = next;
            }
        }
        #[cfg(loom)]
        let _ = l2_ipa;
    }

    /// Removes every leaf that translates an L2 IPA in
    /// `[l2_ipa_start, l2_ipa_start + len)` (a block that only partly
    /// overlaps goes whole) and frees tables left empty, after the TLB hook.
    /// Returns the number of leaves removed. Addresses beyond the input
    /// size hold no entries; `len` is taken up to there.
    ///
    /// A level-3 table whose whole 2 MiB the range covers is not visited:
    /// its level-2 entry is made invalid (break), the leaves it counts are
    /// taken as removed, and after the TLB hook for the range (before-make:
    /// nothing new is linked there until a later `map`) the table goes to
    /// the detached list with its leaves still in it, from where later
    /// calls return it to the pool a few frames at a time, or all under
    /// pool pressure, as after a [`ShadowTable::clear`]. So a range costs
    /// O(level-3 tables) where it covers whole 2 MiB regions, not O(pages).
    pub fn unmap_range(&self, l2_ipa_start: u64, len: u64) -> usize {
        self.unmap_range_with(l2_ipa_start, len, true)
    }

    /// [`ShadowTable::unmap_range`] visiting every leaf, as KVM's stage-2
    /// unmap walker does (`stage2_unmap_walker`): every removed leaf is
    /// written, and emptied tables go back to the pool within the call.
    /// The same entries are removed and the same number returned. For the
    /// KVM-style baseline, and as the reference of the tests.
    pub fn unmap_range_leaf_by_leaf(&self, l2_ipa_start: u64, len: u64) -> usize {
        self.unmap_range_with(l2_ipa_start, len, false)
    }

    fn unmap_range_with(&self, l2_ipa_start: u64, len: u64, detach: bool) -> usize {
        let end = l2_ipa_start
            .saturating_add(len)
            .min(1 << self.config.input_bits());
        if l2_ipa_start >= end {
            return 0;
        }
        let _exclusive = self.lock.exclusive();
        let mut work = UnmapWork {
            // Only a range of 2 MiB or more can cover a level-3 table: a
            // page's unmap skips the check at every level.
            detach: detach && end - l2_ipa_start >= BLOCK_2M,
            ..UnmapWork::default()
        };
        if let Some(root) = self.pool.frame(self.root) {
            // A range within one level-3 table's 2 MiB (a page TLBI, a
            // short range) meets one entry at each level above 3: descended
            // by index. Not for the KVM-style baseline's per-leaf unmap,
            // which keeps the general walk as KVM's `kvm_pgtable_walk` is.
            if detach
                && end - l2_ipa_start < BLOCK_2M
                && l2_ipa_start >> level_shift(2) == (end - 1) >> level_shift(2)
            {
                self.unmap_within_one_table(root, l2_ipa_start, end, &mut work);
            } else {
                self.unmap_in(root, 0, 0, l2_ipa_start, end, &mut work);
            }
        }
        if work.span_end > work.span_start {
            self.tlb
                .invalidate_range(work.span_start, work.span_end - work.span_start);
        }
        if work.freed.is_some() || work.detached.is_some() {
            // Places taken before name tables that are going.
            self.shape.fetch_add(1, Ordering::Relaxed);
        }
        let mut next = work.freed;
        while let Some(pa) = next {
            // Zero again before the pool hands the frame out: new tables
            // start empty.
            next = self.pool.frame(pa).and_then(|table| {
                let link = table.0[0].swap(0, Ordering::Relaxed);
                (link != 0).then_some(link & OA_MASK)
            });
            self.pool.release(pa);
            self.frames.fetch_sub(1, Ordering::Relaxed);
        }
        self.reclaim_retired();
        self.forget_leaves_exclusive(work.leaves, &_exclusive);
        drop(_exclusive);
        // Frames detached before this call first: this call's own wait for
        // later calls (the pool zeroes each frame it takes back, 4 KiB of
        // stores that need not delay the invalidation).
        self.reclaim_detached(RECLAIM_STEP);
        if let Some(chain) = work.detached {
            self.detach_chain(chain);
        }
        work.leaves
    }

    fn forget_leaves(&self, n: usize) {
        if n != 0 {
            self.leaves.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// [`ShadowTable::forget_leaves`] under the exclusive lock: every other
    /// writer of the count (`map` under the shared lock, `clear` and the
    /// reclaims under the exclusive one) is excluded, so a load and a
    /// store do, without a locked read-modify-write on the unmap path.
    fn forget_leaves_exclusive(&self, n: usize, _held: &ExclusiveGuard<'_>) {
        if n != 0 {
            let now = self.leaves.load(Ordering::Relaxed);
            self.leaves.store(now.saturating_sub(n), Ordering::Relaxed);
        }
    }

    /// Clears `[start, end)` within the table at `level` whose first IPA is
    /// `base`, or with `work.detach` unlinks a level-3 table the range
    /// covers whole without a visit. Returns whether the table is now
    /// empty.
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
        // Whether every entry in `first..=last` is zero once cleared: then
        // only the entries outside the range decide whether the table is
        // empty, so each descriptor is read once (a table the range covers
        // whole is known empty without a second pass over it).
        let mut cleared = true;
        // Indexed, not `iter().enumerate().take().skip()`: a page's unmap
        // visits one entry per level, and the adapters' setup cost more
        // than the visit.
        for (i, slot) in (first..=last).zip(&table.0[first..=last]) {
            let entry_base = base + i as u64 * size;
            let descriptor = slot.load(Ordering::Relaxed);
            match classify(descriptor, level) {
                // Never written by this code unless zero; kept as found.
                Entry::Invalid => cleared &= descriptor == 0,
                Entry::Leaf(_) => {
                    slot.store(0, Ordering::Release);
                    work.leaves += 1;
                    work.touch(entry_base, size);
                }
                Entry::Table(pa) => {
                    let Some(child) = self.pool.frame(pa) else {
                        cleared = false;
                        continue;
                    };
                    if work.detach && level == 2 && entry_base >= start && entry_base + size <= end
                    {
                        #[cfg(all(debug_assertions, not(loom)))]
                        debug_assert_eq!(
                            leaf_count(descriptor),
                            child
                                .0
                                .iter()
                                .filter(|d| d.load(Ordering::Relaxed) & (VALID | TABLE_OR_PAGE)
                                    == VALID | TABLE_OR_PAGE)
                                .count(),
                            "leaf count of the level-3 table at {pa:#x}"
                        );
                        slot.store(0, Ordering::Release);
                        work.leaves += leaf_count(descriptor);
                        work.touch(entry_base, size);
                        work.detach_later(child, pa);
                        continue;
                    }
                    let before = work.leaves;
                    let emptied = self.unmap_in(child, level + 1, entry_base, start, end, work);
                    // The hardware's concatenated level-1 tables stay
                    // linked from the software root however empty.
                    if emptied && level >= self.config.start_level() {
                        slot.store(0, Ordering::Release);
                        work.touch(entry_base, size);
                        work.free_later(child, pa);
                    } else {
                        cleared = false;
                        if level == 2 && work.leaves != before {
                            let removed = (work.leaves - before) as isize;
                            slot.store(with_leaf_count(descriptor, -removed), Ordering::Release);
                        }
                    }
                }
            }
        }
        // Empty tables go even when this call removed nothing from them
        // (a `map` that ran out of frames may have left them).
        Self::emptied(table, first, last, cleared)
    }

    /// Whether `table` is empty once its entries `first..=last` were
    /// visited (`cleared`: each of them is zero now). The entries sharing
    /// the visited entries' cache lines first: those lines are read
    /// already, and in a table in use one of their entries is usually
    /// valid, so the table's other lines (in a large shadow a second line
    /// fill per page unmap) are not read at all.
    #[inline(always)]
    fn emptied(table: &Frame, first: usize, last: usize, cleared: bool) -> bool {
        let zero = |slots: &[AtomicU64]| slots.iter().all(|d| d.load(Ordering::Relaxed) == 0);
        let (line_first, line_last) = (
            first & !(DESCRIPTORS_PER_LINE - 1),
            last | (DESCRIPTORS_PER_LINE - 1),
        );
        cleared
            && zero(&table.0[line_first..first])
            && zero(&table.0[last + 1..=line_last])
            && zero(&table.0[..line_first])
            && zero(&table.0[line_last + 1..])
    }

    /// [`ShadowTable::unmap_in`] from `root` for `[start, end)` within one
    /// level-3 table's 2 MiB and shorter than it (so nothing is detached):
    /// the range meets one entry at each level above 3, so the tree is
    /// descended by index and the tables the unmap empties are unlinked on
    /// the way back up, without the recursion's per-level range set-up (a
    /// page TLBI's unmap spent ~550 instructions there). Removes, counts,
    /// touches and frees exactly what `unmap_in` does, in the same order,
    /// with the same break-before-make (each entry invalid before the TLB
    /// hook, each table freed after it) and the same leaf count kept in the
    /// level-2 descriptor (tests: `a_short_unmap_changes_the_tree_as_the_
    /// general_walk_does`).
    fn unmap_within_one_table(&self, root: &Frame, start: u64, end: u64, work: &mut UnmapWork) {
        let before = work.leaves;
        // The tables of the path from the root, and the descriptors linking
        // each to the next (levels 0 to 2).
        let mut tables = [root; 4];
        let mut links = [0u64; 3];
        let mut level = 0;
        let mut emptied = loop {
            let table = tables[level];
            if level == 3 {
                let (first, last) = (index_at(start, 3), index_at(end - 1, 3));
                let mut cleared = true;
                // The first and last leaves removed: their span is what
                // touching each would make it.
                let mut removed: Option<(usize, usize)> = None;
                for (i, slot) in (first..=last).zip(&table.0[first..=last]) {
                    let descriptor = slot.load(Ordering::Relaxed);
                    if let Entry::Leaf(_) = classify(descriptor, 3) {
                        slot.store(0, Ordering::Release);
                        work.leaves += 1;
                        removed = Some((removed.map_or(i, |(from, _)| from), i));
                    } else {
                        // Never written by this code unless zero; kept as
                        // found.
                        cleared &= descriptor == 0;
                    }
                }
                if let Some((from, to)) = removed {
                    let base = start & !(BLOCK_2M - 1);
                    work.touch(
                        base + from as u64 * PAGE_SIZE,
                        (to - from + 1) as u64 * PAGE_SIZE,
                    );
                }
                break Self::emptied(table, first, last, cleared);
            }
            let i = index_at(start, level);
            let slot = &table.0[i];
            let descriptor = slot.load(Ordering::Relaxed);
            match classify(descriptor, level) {
                Entry::Invalid => break Self::emptied(table, i, i, descriptor == 0),
                Entry::Leaf(_) => {
                    slot.store(0, Ordering::Release);
                    work.leaves += 1;
                    let size = entry_size(level);
                    work.touch(start & !(size - 1), size);
                    break Self::emptied(table, i, i, true);
                }
                Entry::Table(pa) => {
                    let Some(child) = self.pool.frame(pa) else {
                        break false;
                    };
                    links[level] = descriptor;
                    level += 1;
                    tables[level] = child;
                }
            }
        };
        // Back up the path: a table emptied goes (the entry linking it
        // invalid now, its frame after the hook), which may empty its
        // parent; the first one left decides for the rest above it.
        while level > 0 {
            level -= 1;
            let (table, i, link) = (tables[level], index_at(start, level), links[level]);
            // The hardware's concatenated level-1 tables stay linked from
            // the software root however empty.
            if emptied && level >= self.config.start_level() {
                table.0[i].store(0, Ordering::Release);
                let size = entry_size(level);
                work.touch(start & !(size - 1), size);
                work.free_later(tables[level + 1], link & OA_MASK);
                emptied = Self::emptied(table, i, i, true);
            } else {
                if level == 2 && work.leaves != before {
                    let removed = (work.leaves - before) as isize;
                    table.0[i].store(with_leaf_count(link, -removed), Ordering::Release);
                }
                break;
            }
        }
    }

    /// Frees tables `map` unlinked. Caller holds the exclusive lock.
    #[inline]
    fn reclaim_retired(&self) {
        // Nearly always none: checked without a call.
        if self.retired_count.load(Ordering::Relaxed) != 0 {
            self.reclaim_some_retired();
        }
    }

    #[inline(never)]
    fn reclaim_some_retired(&self) {
        // Drained in place (no map can push meanwhile: the caller holds the
        // exclusive lock), so the list keeps what it was made with.
        let mut retired = self.retired.lock();
        for (pa, level) in retired.drain(..) {
            let leaves = self.free_subtree(pa, level);
            self.forget_leaves(leaves);
        }
        retired.shrink_to(RETIRED_LIST_CAPACITY);
        self.retired_count.store(0, Ordering::Relaxed);
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

    /// Removes every entry: detaches every subtree below the root, runs one
    /// whole-VMID invalidation, and hands the detached frames to
    /// [`ShadowTable::reclaim_detached`] (later `map`s and `unmap_range`s
    /// return a few each, and all that is needed under pool pressure).
    /// Costs O(root entries in use), not O(tables). Returns the number of
    /// leaves removed.
    ///
    /// Once it returns nothing it removed is reachable: the root's entries
    /// are invalid, the hardware TLB hook has completed, and no software
    /// walk is inside a detached table (taken under the exclusive lock, so
    /// walks that began before have left). A detached frame therefore goes
    /// back to the pool only after it is unlinked and the hook has run.
    pub fn clear(&self) -> usize {
        let _exclusive = self.lock.exclusive();
        self.detach_locked()
    }

    fn detach_locked(&self) -> usize {
        // Places taken before name tables that are going.
        self.shape.fetch_add(1, Ordering::Relaxed);
        // Tables `map` retired are rare: free them now so the leaf count
        // stays exact.
        self.reclaim_retired();
        // The detached list stays locked until the invalidation below has
        // completed: no reclaimer can free a frame before it.
        let mut detached = self.detached.lock();
        let mut groups = self.root_groups.swap(0, Ordering::Relaxed);
        let start = self.config.start_level();
        let entries = self.config.root_tables() * ENTRIES;
        let group_entries = entries / 64;
        while groups != 0 {
            let group = groups.trailing_zeros() as usize;
            groups &= groups - 1;
            for index in group * group_entries..(group + 1) * group_entries {
                let table = self.hardware_root + (index / ENTRIES) as u64 * PAGE_SIZE;
                let Some(frame) = self.pool.frame(table) else {
                    continue;
                };
                let slot = &frame.0[index % ENTRIES];
                if slot.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                // A block (level 1) just goes; the leaf count is reset below.
                if let Entry::Table(pa) = classify(slot.swap(0, Ordering::AcqRel), start) {
                    detached.push(Detached {
                        pa,
                        level: start as u8 + 1,
                        next: 0,
                    });
                }
            }
        }
        self.tlb.invalidate_all();
        self.detached_hint.store(detached.len(), Ordering::Relaxed);
        drop(detached);
        self.leaves.swap(0, Ordering::Relaxed)
    }
}

impl<P: FramePool, T: TlbMaintenance> Drop for ShadowTable<P, T> {
    fn drop(&mut self) {
        self.detach_locked();
        self.reclaim_detached(usize::MAX);
        if self.hardware_root != self.root {
            for i in 0..self.config.root_tables() {
                self.pool.release(self.hardware_root + i as u64 * PAGE_SIZE);
            }
        }
        self.pool.release(self.root);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use crate::compose::Permissions;
    use alloc::collections::BTreeMap;
    use alloc::sync::Arc;
    use alloc::vec;
    use proptest::prelude::*;
    use std::sync::{Mutex, OnceLock};
    use walker::{
        AccessKind, Endianness, ExposedFeatures, FaultKind, IdRegisters, Stage2Registers,
        Stage2Walker, WalkError,
    };

    const RW: Permissions = Permissions::READ.union(Permissions::WRITE);
    const FAKE_PA: u64 = 0x80_0000_0000;

    fn mapping(l2: u64, pa: u64, size: u64, perms: Permissions, attr: u8) -> ShadowMapping {
        ShadowMapping {
            l2_ipa_base: l2,
            pa_base: pa,
            size,
            perms,
            mem_attr: MemAttr::from_bits(attr),
            shareability: MemShareability::InnerShareable,
        }
    }

    /// The walker configured exactly as hv configures the hardware for L2.
    fn shadow_walker(root: u64) -> Stage2Walker {
        shadow_walker_for(0b101, root)
    }

    /// The same on a host whose PARange is `ps`.
    fn shadow_walker_for(ps: u8, root: u64) -> Stage2Walker {
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            // PARange `ps`, 4K stage-2 granule supported; FEAT_XNX.
            mmfr0: u64::from(ps) | (0b0010 << 40),
            mmfr1: 1 << 28,
            mmfr2: 0,
        })
        .unwrap();
        Stage2Walker::new(
            Stage2Registers {
                vtcr: shadow_vtcr(ps, true).expect("a PARange"),
                vttbr: root | (7 << 48),
                endianness: Endianness::Little,
            },
            &features,
        )
    }

    /// Walks `ipa` with the walker and compares with the expected entry.
    fn check_ipa(pool: &HeapFramePool, root: u64, ipa: u64, expected: Option<&ShadowMapping>) {
        check_walk(&shadow_walker(root), pool, ipa, expected)
    }

    /// [`check_ipa`] with a given walker.
    fn check_walk(
        walker: &Stage2Walker,
        pool: &HeapFramePool,
        ipa: u64,
        expected: Option<&ShadowMapping>,
    ) {
        let Some(m) = expected else {
            let e = walker.walk(pool, ipa, AccessKind::Read).unwrap_err();
            let WalkError::Fault(f) = e else {
                panic!("{e:?}")
            };
            assert_eq!(f.kind(), FaultKind::Translation, "{ipa:#x}: {f:?}");
            return;
        };
        let device = matches!(
            m.mem_attr.memory_type(),
            crate::compose::MemoryType::Device(_)
        );
        let access = if m.perms.contains(Permissions::READ) {
            AccessKind::Read
        } else if m.perms.contains(Permissions::WRITE) {
            AccessKind::Write
        } else if m.perms.contains(Permissions::EXEC_EL1) && !device {
            AccessKind::ExecEl1
        } else if m.perms.contains(Permissions::EXEC_EL0) && !device {
            AccessKind::ExecEl0
        } else {
            let f = walker.walk(pool, ipa, AccessKind::Read).unwrap_err();
            assert_eq!(f.fault().unwrap().kind(), FaultKind::Permission);
            return;
        };
        let t = walker
            .walk(pool, ipa, access)
            .unwrap_or_else(|e| panic!("{ipa:#x} {access:?}: {e:?}"));
        assert_eq!(
            t.output_address,
            m.pa_base + (ipa - m.l2_ipa_base),
            "{ipa:#x}"
        );
        assert_eq!(t.block_size, m.size);
        assert_eq!(
            crate::compose::permissions_from_stage2(t.s2ap, t.execute),
            m.perms
        );
        assert_eq!(t.mem_attr, m.mem_attr.bits());
        assert_eq!(t.shareability.bits(), m.shareability as u8);
        assert!(!t.dirty_bit_modifier);
    }

    fn table(budget: usize) -> ShadowTable<Arc<HeapFramePool>, RecordingTlb> {
        let pool = Arc::new(HeapFramePool::new(budget, FAKE_PA).unwrap());
        ShadowTable::new(pool, RecordingTlb::new(), ShadowConfig::default()).unwrap()
    }

    /// Frames for hosts of any PA size (below 2^32), one frame past a 64
    /// KiB boundary so concatenated roots must be placed by alignment.
    const SMALL_HOST_PA: u64 = 0x1001_0000 + PAGE_SIZE;

    /// A table for the host whose PARange is `ps`, and that host's config.
    fn table_for(
        ps: u8,
        budget: usize,
    ) -> (ShadowTable<Arc<HeapFramePool>, RecordingTlb>, ShadowConfig) {
        let config = ShadowConfig::for_pa_range(ps, true).expect("a PARange");
        let pool = Arc::new(HeapFramePool::new(budget, SMALL_HOST_PA).unwrap());
        let t = ShadowTable::new(pool, RecordingTlb::new(), config).unwrap();
        (t, config)
    }

    /// A map from where a lookup of its base stopped installs what a map
    /// from the root does, wherever the walk stopped: at a missing table
    /// (which the map then makes), at the leaf table of a page, at a block
    /// around the new page, or below the level of a new block (a place
    /// the map must not use).
    #[test]
    fn a_map_from_a_lookups_place_matches_a_map_from_the_root() {
        let base = 0x4020_0000;
        let page = |i: u64| mapping(base + (i << 12), FAKE_PA + (i << 12), 4096, RW, 0xff);
        let block = mapping(base, FAKE_PA, 2 << 20, RW, 0xff);
        // (what is mapped first, what is then mapped from the place)
        let cases = [
            (None, page(3)),
            (Some(page(1)), page(3)),
            (Some(page(3)), page(3)),
            (Some(block), page(3)),
            (Some(page(1)), block),
        ];
        for (first, then) in cases {
            let (from_place, from_root) = (table(64), table(64));
            for t in [&from_place, &from_root] {
                if let Some(first) = first {
                    t.map(&first).unwrap();
                }
            }
            let (found, place) = from_place.lookup_place_excluded(then.l2_ipa_base);
            assert_eq!(found, from_root.lookup(then.l2_ipa_base));
            assert_eq!(
                from_place.map_excluded_at(&then, place),
                from_root.map(&then),
                "{first:?} then {then:?} from {place:?}"
            );
            for i in 0..512 {
                let ipa = base + (i << 12);
                assert_eq!(from_place.lookup(ipa), from_root.lookup(ipa), "{ipa:#x}");
            }
            assert_eq!(from_place.frames_used(), from_root.frames_used());
            assert_eq!(from_place.leaves(), from_root.leaves());
        }
    }

    /// A place that went stale (its table freed by an unmap, detached by a
    /// clear, or replaced by a block) or that is another shadow's is not
    /// used: the map walks from the root and installs what a map from the
    /// root does, however the shared pool reused the frames since (review
    /// 51 R51-2: a map from such a place wrote into a freed or foreign frame).
    #[test]
    fn a_stale_or_foreign_place_maps_from_the_root() {
        type Shadow = ShadowTable<Arc<HeapFramePool>, RecordingTlb>;
        type Change = (&'static str, fn(&Shadow));
        let base = 0x4020_0000;
        let ipa = base + (3 << 12);
        let page = |i: u64| mapping(base + (i << 12), FAKE_PA + (i << 12), 4096, RW, 0xff);
        let pair = || {
            let pool = Arc::new(HeapFramePool::new(64, FAKE_PA).unwrap());
            let new =
                || ShadowTable::new(pool.clone(), RecordingTlb::new(), ShadowConfig::default());
            (new().unwrap(), new().unwrap())
        };
        let changes: [Change; 3] = [
            ("an unmap that frees the table", |t| {
                t.unmap_range(0x4020_0000, 2 << 20);
            }),
            ("a clear", |t| {
                t.clear();
                t.reclaim_detached(usize::MAX);
            }),
            ("a block over the table", |t| {
                t.map(&mapping(0x4020_0000, FAKE_PA, 2 << 20, RW, 0xff))
                    .unwrap();
                t.reclaim();
            }),
        ];
        for (what, change) in changes {
            let (t, other) = pair();
            t.map(&page(1)).unwrap();
            let (_, place) = t.lookup_place_excluded(ipa);
            assert_ne!(place, ShadowPlace::ROOT);
            change(&t);
            // The freed frames go to the other shadow's new tables.
            other.map(&page(7)).unwrap();
            assert!(t.map_excluded_at(&page(3), place).is_ok(), "{what}");
            assert_eq!(t.lookup(ipa), Some(page(3)), "{what}");
            assert_eq!(other.lookup(ipa), None, "{what}");
        }
        // A place of another shadow.
        let (t, other) = pair();
        other.map(&page(1)).unwrap();
        let (_, foreign) = other.lookup_place_excluded(ipa);
        assert!(t.map_excluded_at(&page(3), foreign).is_ok());
        assert_eq!(t.lookup(ipa), Some(page(3)));
        assert_eq!(other.lookup(ipa), None);
        // A place of a dropped shadow, whose root frame (and shape 0) a new
        // shadow of the same pool got (review 52 R52-2).
        let pool = Arc::new(HeapFramePool::new(64, FAKE_PA).unwrap());
        let new = || ShadowTable::new(pool.clone(), RecordingTlb::new(), ShadowConfig::default());
        let dropped = new().unwrap();
        dropped.map(&page(1)).unwrap();
        let (_, place) = dropped.lookup_place_excluded(ipa);
        assert_ne!(place, ShadowPlace::ROOT);
        drop(dropped);
        let (t, other) = (new().unwrap(), new().unwrap());
        other.map(&page(7)).unwrap();
        assert!(t.map_excluded_at(&page(3), place).is_ok());
        assert_eq!(t.lookup(ipa), Some(page(3)));
        assert_eq!(other.lookup(ipa), None);
        assert_eq!(other.lookup(base + (7 << 12)), Some(page(7)));
        // A place taken for an IPA of another table region (another 2 MiB
        // at level 3, another 1 GiB at level 2) of the same shadow.
        for elsewhere in [0x4040_0000, 0x8020_0000] {
            let (t, _) = pair();
            t.map(&page(1)).unwrap();
            let (_, place) = t.lookup_place_excluded(ipa);
            let m = mapping(elsewhere, FAKE_PA + 0x9000, 4096, RW, 0xff);
            assert!(t.map_excluded_at(&m, place).is_ok());
            assert_eq!(t.lookup(elsewhere), Some(m), "{elsewhere:#x}");
            assert_eq!(t.lookup(base), None, "{elsewhere:#x}");
            assert_eq!(t.lookup(base + (1 << 12)), Some(page(1)), "{elsewhere:#x}");
        }
    }

    /// `unmap_range` reads each descriptor once: a table goes as soon as
    /// the range empties it, whether the range covers it whole or only the
    /// entries it still had (the rest were cleared by earlier unmaps), and
    /// stays while an entry outside the range is left.
    #[test]
    fn tables_emptied_by_an_unmap_go_whatever_part_it_covers() {
        let t = table(64);
        let base = 0x4020_0000;
        for page in [0u64, 1, 5, 511] {
            let m = mapping(base + (page << 12), FAKE_PA + (page << 12), 4096, RW, 0xff);
            t.map(&m).unwrap();
        }
        assert_eq!(t.frames_used(), 4, "root, level 1, 2 and 3");
        assert_eq!(t.unmap_range(base + 0x1000, 0x5000), 2);
        assert_eq!(t.unmap_range(base + 0x1ff000, 0x1000), 1);
        assert_eq!(t.frames_used(), 4, "page 0 is left");
        assert_eq!(t.unmap_range(base, 0x1000), 1);
        assert_eq!(t.frames_used(), 1, "every table below the root went");
        // A table the range covers whole.
        for page in 0..512u64 {
            let m = mapping(base + (page << 12), FAKE_PA + (page << 12), 4096, RW, 0xff);
            t.map(&m).unwrap();
        }
        assert_eq!(t.unmap_range(base, 2 << 20), 512);
        assert_eq!(t.lookup(base), None);
        // Unlinked whole, it waits on the detached list for a later call.
        assert_eq!(t.frames_used(), 2);
        assert_eq!(t.reclaim_detached(usize::MAX), 1);
        assert_eq!(t.frames_used(), 1);
    }

    /// The emptiness check reads the unmapped entries' own cache lines
    /// first, then the rest: a table stays while any entry is left,
    /// wherever it is (an earlier line, the same line before or after the
    /// range, a later line), and goes with its last one.
    #[test]
    fn a_table_stays_while_an_entry_is_left_in_any_line() {
        let t = table(64);
        let base = 0x4020_0000;
        let page = |n: u64| mapping(base + (n << 12), FAKE_PA + (n << 12), 4096, RW, 0xff);
        // Unmapped: page 21 alone (line 16..=23), pages 21..=24 (lines
        // 16..=23 and 24..=31), or the table's last line's last four.
        for (unmapped, keepers) in [
            (21..=21u64, [2u64, 16, 17, 20, 22, 23, 24, 200]),
            (21..=24, [2, 15, 16, 20, 25, 31, 32, 511]),
            (508..=511, [0, 7, 8, 500, 503, 504, 507, 256]),
        ] {
            for keeper in keepers {
                t.map(&page(keeper)).unwrap();
                for n in unmapped.clone() {
                    t.map(&page(n)).unwrap();
                }
                let len = (unmapped.end() - unmapped.start() + 1) << 12;
                let removed = t.unmap_range(base + (unmapped.start() << 12), len);
                assert_eq!(removed, unmapped.clone().count(), "keeper {keeper}");
                assert_eq!(t.frames_used(), 4, "keeper {keeper}: its table stays");
                assert_eq!(t.lookup(base + (keeper << 12)), Some(page(keeper)));
                assert_eq!(t.unmap_range(base + (keeper << 12), 0x1000), 1);
                assert_eq!(t.frames_used(), 1, "keeper {keeper}: the empty tables go");
            }
        }
    }

    /// Reclaiming a cleared tree walks it depth first: the detached list
    /// holds the level-1 tables and the path being freed, never a table's
    /// children all at once, so it never grows past what it was made with
    /// (nothing is allocated on a fault's way), and every frame comes back.
    #[test]
    fn reclaiming_a_cleared_tree_allocates_nothing() {
        let t = table(2048);
        // 40 level-1 tables (one per root entry), each with two level-2
        // tables holding 3 level-3 tables: 40 * 9 tables below the root.
        for i in 0..40u64 {
            for j in 0..2u64 {
                for k in 0..3u64 {
                    let ipa = i << 39 | j << 30 | k << 21;
                    t.map(&mapping(ipa, 0, PAGE_SIZE, RW, 0xf)).unwrap();
                }
            }
        }
        assert_eq!(t.frames_used(), 1 + 40 * 9);
        assert_eq!(t.clear(), 240);
        let mut freed = 0;
        while t.reclaim_detached(1) == 1 {
            freed += 1;
            let detached = t.detached.lock();
            assert!(detached.len() <= 40 + 2, "{}", detached.len());
            assert_eq!(detached.capacity(), DETACHED_LIST_CAPACITY);
        }
        assert_eq!(freed, 40 * 9);
        assert_eq!(t.frames_used(), 1);
        assert_eq!(t.pool().frames_in_use(), 1);
    }

    /// A range that covers a level-3 table's whole 2 MiB unlinks the table
    /// without visiting its entries: when the TLB hook runs the level-2
    /// entry is already invalid (`CheckingTlb` walks the range), the hook
    /// covers the region, and the frame goes back to the pool only after
    /// it, in a later call (the detached list); the count is the table's
    /// leaves, and the table next to it (same level-2 table) is untouched.
    #[test]
    fn a_covered_level_3_table_is_freed_only_after_the_invalidation() {
        let (t, log) = checking_table();
        let (a, b) = (0x4020_0000u64, 0x4040_0000u64);
        let page = |at: u64, n: u64| mapping(at + (n << 12), 0x10_0000 + (n << 12), 4096, RW, 0xf);
        for n in [0u64, 7, 300, 511] {
            t.map(&page(a, n)).unwrap();
        }
        t.map(&page(b, 1)).unwrap();
        let (_, place) = t.lookup_place_excluded(a);
        let level_3_table = place.table;
        assert_eq!((place.level, t.frames_used()), (3, 5));
        log.lock().unwrap().clear();
        assert_eq!(t.unmap_range(a, BLOCK_2M), 4);
        // Taken out of the lock first: a failed assertion must not poison
        // it for the drop of the table, which logs its releases.
        let events: Vec<_> = log.lock().unwrap().drain(..).collect();
        assert!(
            matches!(events[..], [Event::Tlb(e)] if e.covers(a, BLOCK_2M)),
            "one invalidation of the region, nothing released yet: {events:?}"
        );
        for n in [0u64, 7, 300, 511] {
            check_ipa(&t.pool().inner, t.root_pa(), a + (n << 12), None);
            assert_eq!(t.lookup(a + (n << 12)), None);
        }
        check_ipa(&t.pool().inner, t.root_pa(), b + 0x1000, Some(&page(b, 1)));
        assert_eq!((t.frames_used(), t.leaves()), (5, 1));
        assert!(t.has_detached());
        // The next call returns it (before anything of its own).
        assert_eq!(t.unmap_range(b + 0x1000, 0x1000), 1);
        let events: Vec<_> = log.lock().unwrap().drain(..).collect();
        let released: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Release(pa) => Some(*pa),
                Event::Tlb(_) => None,
            })
            .collect();
        assert!(released.contains(&level_3_table), "{events:?}");
        assert_eq!(t.frames_used(), 1);
        assert!(!t.has_detached());
    }

    /// The leaf count a level-2 entry keeps follows every change of its
    /// level-3 table: installs from the root and from a lookup's place,
    /// replacements (break, then make), pages unmapped one by one (the
    /// table stays), a block over the table and a page in a block. The
    /// debug build checks the count against the table when it is detached;
    /// the count returned is the leaves left.
    #[test]
    fn the_leaf_count_follows_every_change_of_its_table() {
        let t = table(64);
        let base = 0x4020_0000u64;
        let page = |n: u64, pa: u64| mapping(base + (n << 12), pa << 12, 4096, RW, 0xf);
        let count = |t: &ShadowTable<Arc<HeapFramePool>, RecordingTlb>| {
            let l1 = t.pool().frame(t.root).unwrap().0[0].load(Ordering::Relaxed);
            let l2 = t.pool().frame(l1 & OA_MASK).unwrap().0[1].load(Ordering::Relaxed);
            let l2 = t.pool().frame(l2 & OA_MASK).unwrap().0[1].load(Ordering::Relaxed);
            leaf_count(l2)
        };
        for n in 0..10 {
            t.map(&page(n, n)).unwrap();
        }
        for n in 10..20 {
            let (_, place) = t.lookup_place_excluded(base + (n << 12));
            t.map_excluded_at(&page(n, n), place).unwrap();
        }
        assert_eq!(count(&t), 20);
        // Replaced, and the same again: no change.
        assert_eq!(t.map(&page(3, 99)), Ok(MapOutcome::Replaced));
        let (_, place) = t.lookup_place_excluded(base + (4 << 12));
        assert_eq!(
            t.map_excluded_at(&page(4, 98), place),
            Ok(MapOutcome::Replaced)
        );
        assert_eq!(t.map(&page(5, 5)), Ok(MapOutcome::AlreadyPresent));
        assert_eq!(count(&t), 20);
        // Unmapped page by page, and a short range.
        assert_eq!(t.unmap_range(base, 0x1000), 1);
        assert_eq!(t.unmap_range(base + (8 << 12), 4 << 12), 4);
        assert_eq!(count(&t), 15);
        assert_eq!(t.unmap_range(base, BLOCK_2M), 15);
        assert_eq!(t.leaves(), 0);
        // A block over the table (retired, counted when freed), then pages
        // in the block: a new table, counted from zero.
        for n in 0..3 {
            t.map(&page(n, n)).unwrap();
        }
        t.map(&mapping(base, 0x4000_0000, BLOCK_2M, RW, 0xf))
            .unwrap();
        assert_eq!(t.map(&page(9, 9)), Ok(MapOutcome::Replaced));
        t.map(&page(10, 10)).unwrap();
        assert_eq!(count(&t), 2);
        assert_eq!(t.unmap_range(base, BLOCK_2M), 2);
        assert_eq!(t.leaves(), 0);
        t.reclaim_detached(usize::MAX);
        assert_eq!(t.frames_used(), 1);
    }

    /// A long run of range unmaps that detach their level-3 tables, each
    /// followed by the faults that map the range again, fits a pool of
    /// exactly the tree's frames: the detached frames come back a few per
    /// later call, and all that a map needs under pool pressure; the
    /// counts stay exact and the detached list keeps its size.
    #[test]
    fn range_unmaps_and_refaults_never_exhaust_the_pool() {
        // Root, level 1, level 2 and 8 level-3 tables.
        let t = table(11);
        let base = 0x4000_0000u64;
        let mut mapped = alloc::collections::BTreeSet::new();
        for round in 0..300u64 {
            for region in 0..8u64 {
                for k in 0..4u64 {
                    let ipa = base + (region << 21) + ((k * 128 + round % 128) << 12);
                    let m = mapping(ipa, ipa, PAGE_SIZE, RW, 0xf);
                    assert!(t.map(&m).is_ok(), "round {round}: {:?}", t.map(&m));
                    mapped.insert(ipa);
                }
            }
            // Whole regions, or from inside one region to inside another.
            let (start, end) = match round % 3 {
                0 => (base, base + (8 << 21)),
                1 => (base + (1 << 21) + 0x5000, base + (6 << 21) + 0x3000),
                _ => (base + (2 << 21), base + (5 << 21)),
            };
            let gone: Vec<u64> = mapped.range(start..end).copied().collect();
            assert_eq!(
                t.unmap_range(start, end - start),
                gone.len(),
                "round {round}"
            );
            for ipa in gone {
                mapped.remove(&ipa);
            }
            assert_eq!(t.leaves(), mapped.len());
            let detached = t.detached.lock();
            assert!(detached.len() <= 1, "round {round}: {}", detached.len());
            assert_eq!(detached.capacity(), DETACHED_LIST_CAPACITY);
        }
        assert_eq!(t.unmap_range(base, 1 << 30), mapped.len());
        t.reclaim_detached(usize::MAX);
        assert_eq!((t.frames_used(), t.pool().frames_in_use()), (1, 1));
    }

    #[derive(Clone, Debug)]
    enum RangeOp {
        /// Mapped from the root, or (true) from a lookup's place.
        Map(ShadowMapping, bool),
        Unmap(u64, u64),
        /// Detached frames back to the pool, at most this many.
        Reclaim(usize),
    }

    /// Pages (mostly) and blocks in 8 regions of 2 MiB over two GiB, and
    /// ranges from a page to 3 GiB from region or page boundaries, so that
    /// ranges cover whole level-3 tables (and level-2 tables) often.
    fn arb_range_op() -> impl Strategy<Value = RangeOp> {
        let mapping = (0u64..2, 0u64..4, 0u64..512, 0u64..20, any::<bool>()).prop_map(
            |(gig, region, page, kind, place)| {
                let size = match kind {
                    0 => BLOCK_1G,
                    1 | 2 => BLOCK_2M,
                    _ => PAGE_SIZE,
                };
                let l2 = (gig << 30 | region << 21 | page << 12) & !(size - 1);
                RangeOp::Map(
                    mapping(l2, l2 ^ (7 << 12) & !(size - 1), size, RW, 0xf),
                    place,
                )
            },
        );
        let range = (
            0u64..2,
            0u64..5,
            0u64..512,
            any::<bool>(),
            0u64..8,
            0u64..1536,
        )
            .prop_map(|(gig, region, page, aligned, kind, pages)| {
                let page = if aligned { 0 } else { page };
                let start = gig << 30 | region << 21 | page << 12;
                let len = match kind {
                    0 => BLOCK_1G,
                    1 => 3 * BLOCK_1G,
                    2..=4 => (kind - 1) * BLOCK_2M,
                    _ => (pages + 1) << 12,
                };
                RangeOp::Unmap(start, len)
            });
        prop_oneof![
            12 => mapping,
            5 => range,
            1 => (1usize..6).prop_map(RangeOp::Reclaim),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// `unmap_range`, which detaches the level-3 tables a range covers
        /// whole, and `unmap_range_leaf_by_leaf`, which visits every leaf,
        /// applied to two tables given the same maps: each returns what the
        /// model loses, the walker sees exactly the model in both, and once
        /// the detached frames are back both hold the same frames.
        #[test]
        fn unmap_range_removes_what_unmapping_leaf_by_leaf_does(
            ops in prop::collection::vec(arb_range_op(), 1..80),
        ) {
            let (fast, slow) = (table(256), table(256));
            let mut model: BTreeMap<u64, ShadowMapping> = BTreeMap::new();
            let overlapping = |model: &BTreeMap<u64, ShadowMapping>, start: u64, end: u64| -> Vec<u64> {
                model.values().filter(|m| m.l2_ipa_base < end && m.l2_ipa_base + m.size > start).map(|m| m.l2_ipa_base).collect()
            };
            for op in &ops {
                match *op {
                    RangeOp::Map(m, from_place) => {
                        let outcome = if from_place {
                            let (_, place) = fast.lookup_place_excluded(m.l2_ipa_base);
                            fast.map_excluded_at(&m, place)
                        } else {
                            fast.map(&m)
                        };
                        prop_assert_eq!(outcome, slow.map(&m));
                        for k in overlapping(&model, m.l2_ipa_base, m.l2_ipa_base + m.size) {
                            model.remove(&k);
                        }
                        model.insert(m.l2_ipa_base, m);
                    }
                    RangeOp::Unmap(start, len) => {
                        let gone = overlapping(&model, start, start + len);
                        prop_assert_eq!(fast.unmap_range(start, len), gone.len());
                        prop_assert_eq!(slow.unmap_range_leaf_by_leaf(start, len), gone.len());
                        for k in gone {
                            model.remove(&k);
                        }
                    }
                    RangeOp::Reclaim(frames) => {
                        fast.reclaim_detached(frames);
                    }
                }
                // Leaves of tables a block replaced count until freed.
                prop_assert_eq!(fast.leaves(), slow.leaves());
            }
            let mut probes: Vec<u64> = vec![0, (1 << 31) - 1];
            for m in model.values() {
                probes.extend([m.l2_ipa_base, m.l2_ipa_base + m.size - 1, m.l2_ipa_base.wrapping_sub(1), m.l2_ipa_base + m.size]);
            }
            for op in &ops {
                match *op {
                    RangeOp::Unmap(s, l) => probes.extend([s, s + l - 1, s + l, s + l / 2]),
                    RangeOp::Map(m, _) => probes.extend([m.l2_ipa_base, m.l2_ipa_base + m.size - 1]),
                    RangeOp::Reclaim(_) => {}
                }
            }
            for t in [&fast, &slow] {
                let walker = shadow_walker(t.root_pa());
                for &ipa in probes.iter().filter(|a| **a < 1 << 48) {
                    let expected = model.range(..=ipa).next_back().map(|(_, m)| m).filter(|m| m.contains(ipa));
                    check_walk(&walker, t.pool(), ipa, expected);
                    prop_assert_eq!(t.lookup(ipa), expected.copied());
                }
            }
            fast.reclaim_detached(usize::MAX);
            for t in [&fast, &slow] {
                t.reclaim();
                prop_assert_eq!(t.leaves(), model.len());
            }
            prop_assert_eq!(fast.frames_used(), slow.frames_used());
            prop_assert_eq!(fast.pool().frames_in_use(), slow.pool().frames_in_use());
        }
    }

    /// Every frame of a table's pool, word by word (descriptors, leaf
    /// counts, freed frames' zeros): two tables given the same calls from
    /// identical pools hold identical words exactly when every call made
    /// the same changes, allocations and frees.
    fn pool_words(t: &ShadowTable<Arc<HeapFramePool>, RecordingTlb>) -> Vec<u64> {
        let pool = t.pool();
        (0..pool.budget() as u64)
            .flat_map(|i| {
                let frame = pool
                    .frame(pool.base_pa() + i * PAGE_SIZE)
                    .expect("a pool frame");
                frame
                    .0
                    .iter()
                    .map(|d| d.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Maps (pages, some blocks) and unmaps in a few 2 MiB regions, most
    /// unmaps a few pages, some crossing a 2 MiB boundary or longer.
    fn arb_short_op() -> impl Strategy<Value = (bool, u64, u64, u8)> {
        (
            any::<bool>(),
            0u64..3,
            0u64..512,
            prop_oneof![6 => 1u64..17, 1 => 17u64..520, 1 => 512u64..700],
            0u8..24,
        )
            .prop_map(|(map, region, page, pages, kind)| {
                // Regions 0 and 1 share a level-2 table, region 2 is in the
                // next GiB.
                let base = [0u64, BLOCK_2M, BLOCK_1G][region as usize];
                (map, base + (page << 12), pages << 12, kind)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// `unmap_range` of a range within one level-3 table's 2 MiB
        /// descends by index (`unmap_within_one_table`); the per-leaf walk
        /// (`unmap_range_leaf_by_leaf`) does not. Given the same calls, two
        /// tables from identical pools (small, so maps run out of frames
        /// and leave empty tables behind) return the same counts, make the
        /// same TLB hook calls and end every step with the same words in
        /// every frame (descriptors, level-2 leaf counts, freed tables),
        /// on a level-0 and a level-1 start.
        #[test]
        fn a_short_unmap_changes_the_tree_as_the_general_walk_does(
            ops in prop::collection::vec(arb_short_op(), 1..120),
            level_1_start in any::<bool>(),
            budget in 6usize..24,
        ) {
            let ps = if level_1_start { 0b010 } else { 0b101 };
            let ((fast, _), (slow, _)) = (table_for(ps, budget), table_for(ps, budget));
            for &(map, start, len, kind) in &ops {
                if map {
                    let size = match kind {
                        0 => BLOCK_1G,
                        1 | 2 => BLOCK_2M,
                        _ => PAGE_SIZE,
                    };
                    let l2 = start & !(size - 1);
                    let m = mapping(l2, (l2 ^ (5 << 12)) & !(size - 1), size, RW, 0xf);
                    prop_assert_eq!(fast.map(&m), slow.map(&m));
                } else if len < BLOCK_2M {
                    prop_assert_eq!(fast.unmap_range(start, len), slow.unmap_range_leaf_by_leaf(start, len));
                } else {
                    // A range that may cover a level-3 table whole detaches
                    // it in `unmap_range` (frames back later): the per-leaf
                    // walk on both keeps the pools comparable.
                    prop_assert_eq!(fast.unmap_range_leaf_by_leaf(start, len), slow.unmap_range_leaf_by_leaf(start, len));
                }
                prop_assert_eq!(fast.tlb().take(), slow.tlb().take());
                prop_assert_eq!(fast.leaves(), slow.leaves());
                prop_assert_eq!(fast.frames_used(), slow.frames_used());
                prop_assert!(pool_words(&fast) == pool_words(&slow), "frames differ after {:?}", (map, start, len, kind));
            }
        }
    }

    #[test]
    fn vtcr_fields() {
        let v = shadow_vtcr(0b101, true).expect("48-bit host");
        assert_eq!(v >> 31 & 1, 1, "RES1");
        // PAMax 40 and 42: a level-0 start is invalid (S2InvalidSL), so
        // level 1 (SL0 0b01) with the input size the host's PA size.
        let v40 = shadow_vtcr(0b010, true).expect("40-bit host");
        assert_eq!(
            (v40 & 0x3f, (v40 >> 6) & 3, (v40 >> 16) & 7),
            (24, 0b01, 0b010)
        );
        let v42 = shadow_vtcr(0b011, false).expect("42-bit host");
        assert_eq!((v42 & 0x3f, (v42 >> 6) & 3), (22, 0b01));
        assert_eq!(shadow_vtcr(0b111, false), None, "reserved PARange");
        assert_eq!(v & 0x3f, 16);
        assert_eq!((v >> 6) & 3, 0b10);
        assert_eq!((v >> 14) & 3, 0);
        assert_eq!((v >> 16) & 7, 0b101);
        assert_eq!((v >> 19) & 1, 1);
        assert_eq!((v >> 12) & 3, 0b11);
        // The input size is the host's PA size up to 48 bits: T0SZ 20 on
        // a 44-bit host, 16 on a 52-bit one (48-bit descriptor format).
        let v44 = shadow_vtcr(0b100, false).expect("44-bit host");
        assert_eq!(
            (v44 & 0x3f, (v44 >> 16) & 7, (v44 >> 6) & 3),
            (20, 0b100, 0b10)
        );
        let v52 = shadow_vtcr(0b110, false).expect("52-bit host");
        assert_eq!((v52 & 0x3f, (v52 >> 16) & 7), (16, 0b110));
        for (ps, pa_bits) in [(0b100u8, 44), (0b101, 48), (0b110, 52)] {
            let config = ShadowConfig { xnx: true, pa_bits };
            let t0sz = shadow_vtcr(ps, false).unwrap() & 0x3f;
            assert_eq!(64 - t0sz, u64::from(config.input_bits()), "PS {ps:#b}");
        }
    }

    /// On a 44-bit host the shadow is a 44-bit stage 2: what the
    /// architecture's walker (this crate's walker, AArch64.S2Translate with
    /// PAMax 44) accepts. The 48-bit shadow it replaced programs T0SZ below
    /// 64 - PAMax, IMPLEMENTATION DEFINED without FEAT_LPA (a fault or a
    /// clamp; the walker faults): on such hardware nothing it maps might
    /// translate.
    #[test]
    fn a_44_bit_host_gets_a_44_bit_shadow() {
        let pool = HeapFramePool::new(16, FAKE_PA).unwrap();
        let config = ShadowConfig {
            xnx: true,
            pa_bits: 44,
        };
        assert_eq!(config.input_bits(), 44);
        let t = ShadowTable::new(&pool, NoHardwareTlb, config).unwrap();
        let top = (1u64 << 44) - PAGE_SIZE;
        let m = mapping(top, 0x4000_0000, PAGE_SIZE, RW, 0xf);
        assert_eq!(t.map(&m), Ok(MapOutcome::Installed));
        assert_eq!(
            t.map(&mapping(1 << 44, 0, PAGE_SIZE, RW, 0xf)),
            Err(MapError::IpaOutOfRange(1 << 44))
        );
        assert_eq!(t.lookup(1 << 44), None);
        assert_eq!(t.unmap_range(1 << 44, 1 << 40), 0);

        let features = ExposedFeatures::from_id_registers(IdRegisters {
            // PARange 44 bits, 4K stage-2 granule supported; FEAT_XNX.
            mmfr0: 0b100 | (0b0010 << 40),
            mmfr1: 1 << 28,
            mmfr2: 0,
        })
        .unwrap();
        let walker_with = |vtcr| {
            Stage2Walker::new(
                Stage2Registers {
                    vtcr,
                    vttbr: t.root_pa(),
                    endianness: Endianness::Little,
                },
                &features,
            )
        };
        let walker = walker_with(shadow_vtcr(0b100, false).unwrap());
        let walked = walker.walk(&pool, top + 8, AccessKind::Read).unwrap();
        assert_eq!(walked.output_address, 0x4000_0008);
        let fortyeight_bit =
            walker_with(shadow_vtcr(0b101, false).unwrap() & !(7 << 16) | 0b100 << 16);
        let WalkError::Fault(f) = walker.walk(&pool, 1 << 44, AccessKind::Read).unwrap_err() else {
            panic!("a fault")
        };
        assert_eq!(f.kind(), FaultKind::Translation);
        let WalkError::Fault(f) = fortyeight_bit
            .walk(&pool, top, AccessKind::Read)
            .unwrap_err()
        else {
            panic!("a fault")
        };
        assert_eq!(
            f.kind(),
            FaultKind::Translation,
            "T0SZ 16 under PAMax 44: {f:?}"
        );
        assert_eq!(t.unmap_range(0, 1 << 48), 1);
    }

    /// Concatenated root tables come as an aligned run of free frames,
    /// each released on its own; what cannot be served is `None`.
    #[test]
    fn the_pool_hands_out_aligned_runs() {
        let pool = HeapFramePool::new(40, SMALL_HOST_PA).unwrap();
        let single = pool.allocate().unwrap();
        let run = pool.allocate_contiguous(16).unwrap();
        assert_eq!(run % (16 * PAGE_SIZE), 0, "{run:#x}");
        assert!((SMALL_HOST_PA..SMALL_HOST_PA + 40 * PAGE_SIZE).contains(&run));
        assert_ne!(run, single);
        assert_eq!(pool.frames_in_use(), 17);
        for i in 0..16 {
            assert!(!pool.is_free(run + i * PAGE_SIZE));
        }
        // The rest of the pool never hands out a frame of the run.
        let mut others = vec![single];
        while let Some(pa) = pool.allocate() {
            assert!(!(run..run + 16 * PAGE_SIZE).contains(&pa), "{pa:#x}");
            others.push(pa);
        }
        assert_eq!(others.len(), 40 - 16);
        assert_eq!(pool.allocate_contiguous(1), None, "exhausted");
        for i in 0..16 {
            pool.release(run + i * PAGE_SIZE);
        }
        assert_eq!(pool.allocate_contiguous(3), None, "not a power of two");
        assert_eq!(pool.allocate_contiguous(32), None, "more than 16");
        assert_eq!(pool.allocate_contiguous(16), Some(run));
        // One frame of an aligned run taken: no run of 16 is left.
        pool.release(run + 5 * PAGE_SIZE);
        pool.release(others[3]);
        assert_eq!(pool.allocate_contiguous(16), None);
        assert!(pool.allocate_contiguous(1).is_some());
    }

    /// Hosts under 44 PA bits: the hardware starts at level 1, from
    /// concatenated tables on 40 and 42 bits, with the host's PA size as
    /// the input size. The walker, set up as hv sets up the hardware
    /// (`shadow_vtcr`, PAMax = the host's), reads back every entry across
    /// the whole input space, including 1 GiB blocks in the start tables;
    /// nothing beyond it is accepted; unmaps, clears and the drop give
    /// back every frame but the start tables, which stay linked.
    #[test]
    fn small_hosts_start_at_level_1_from_concatenated_tables() {
        for (ps, bits, tables) in [
            (0b000u8, 32u32, 1usize),
            (0b001, 36, 1),
            (0b010, 40, 2),
            (0b011, 42, 8),
        ] {
            let (t, config) = table_for(ps, 64);
            assert_eq!(
                (
                    config.input_bits(),
                    config.start_level(),
                    config.root_tables()
                ),
                (bits, 1, tables)
            );
            let vtcr = shadow_vtcr(ps, true).unwrap();
            assert_eq!(
                (vtcr & 0x3f, (vtcr >> 6) & 3),
                (64 - u64::from(bits), 0b01),
                "PS {ps:#b}"
            );
            assert_eq!(t.root_pa() % (tables as u64 * PAGE_SIZE), 0);
            assert_eq!(t.frames_used(), 1 + tables);
            let top = 1u64 << bits;
            let maps = [
                mapping(0, 0x1000, PAGE_SIZE, RW, 0xf),
                mapping(top - PAGE_SIZE, 0x2000, PAGE_SIZE, RW, 0xf),
                mapping(top / 2 - BLOCK_1G, 0x4000_0000, BLOCK_1G, RW, 0xf),
                mapping(
                    top / 2 + BLOCK_2M,
                    0x20_0000,
                    BLOCK_2M,
                    Permissions::READ,
                    0x4,
                ),
            ];
            for m in &maps {
                assert_eq!(t.map(m), Ok(MapOutcome::Installed), "{m:?}");
            }
            assert_eq!(
                t.map(&mapping(top, 0, PAGE_SIZE, RW, 0xf)),
                Err(MapError::IpaOutOfRange(top))
            );
            let walker = shadow_walker_for(ps, t.root_pa());
            for m in &maps {
                for ipa in [m.l2_ipa_base, m.l2_ipa_base + m.size - 8] {
                    check_walk(&walker, t.pool(), ipa, Some(m));
                    assert_eq!(t.lookup(ipa), Some(*m));
                }
            }
            check_walk(&walker, t.pool(), top / 2 + BLOCK_1G / 2, None);
            assert_eq!(t.lookup(top), None);
            // The block in a start table goes by unmap and its group is
            // found by clear; the start tables stay.
            assert_eq!(t.unmap_range(top / 2 - BLOCK_1G, PAGE_SIZE), 1);
            check_walk(&walker, t.pool(), top / 2 - BLOCK_1G, None);
            assert_eq!(t.unmap_range(0, PAGE_SIZE), 1);
            assert_eq!(t.map(&maps[2]), Ok(MapOutcome::Installed));
            assert_eq!(t.clear(), 3);
            assert_eq!(t.tlb().take().last(), Some(&TlbEvent::All));
            for m in &maps {
                check_walk(&walker, t.pool(), m.l2_ipa_base, None);
            }
            t.reclaim_detached(usize::MAX);
            assert_eq!(t.frames_used(), 1 + tables);
            assert_eq!(t.pool().frames_in_use(), 1 + tables);
            assert_eq!(t.map(&maps[1]), Ok(MapOutcome::Installed));
            check_walk(&walker, t.pool(), top - 8, Some(&maps[1]));
            let pool = t.pool().clone();
            drop(t);
            assert_eq!(pool.frames_in_use(), 0, "PS {ps:#b}: every frame back");
        }
    }

    /// A pool with no aligned run for the start tables: a precise error,
    /// and the root frame taken first goes back.
    #[test]
    fn no_room_for_the_start_tables_is_an_error() {
        let pool = HeapFramePool::new(3, SMALL_HOST_PA).unwrap();
        let config = ShadowConfig::for_pa_range(0b011, true).unwrap();
        assert_eq!(
            ShadowTable::new(&pool, NoHardwareTlb, config).err(),
            Some(MapError::FramesExhausted { budget: 3 })
        );
        assert_eq!(pool.frames_in_use(), 0);
    }

    #[test]
    fn pages_and_blocks_walk_back_as_mapped() {
        let t = table(64);
        let entries = [
            mapping(0x4000_0000, 0x1_0000_0000, BLOCK_1G, RW, 0b1111),
            mapping(
                0x8020_0000,
                0x2_0020_0000,
                BLOCK_2M,
                Permissions::READ,
                0b0001,
            ),
            mapping(
                0x8040_3000,
                0x3_0000_5000,
                PAGE_SIZE,
                Permissions::EXEC_EL0,
                0b1010,
            ),
            mapping(
                0xffff_ffff_f000,
                0x0000_1000,
                PAGE_SIZE,
                RW.union(Permissions::EXEC_EL1),
                0b0101,
            ),
        ];
        for m in &entries {
            assert_eq!(t.map(m), Ok(MapOutcome::Installed));
            assert_eq!(t.map(m), Ok(MapOutcome::AlreadyPresent));
        }
        for m in &entries {
            for ipa in [
                m.l2_ipa_base,
                m.l2_ipa_base + m.size / 2 + 8,
                m.l2_ipa_base + m.size - 1,
            ] {
                check_ipa(t.pool(), t.root_pa(), ipa, Some(m));
                assert_eq!(t.lookup(ipa), Some(*m));
            }
        }
        for ipa in [
            0u64,
            0x3fff_ffff,
            0x8000_0000,
            0x8040_2fff,
            0x8040_4000,
            0x1_0000_0000,
        ] {
            check_ipa(t.pool(), t.root_pa(), ipa, None);
            assert_eq!(t.lookup(ipa), None);
        }
        assert_eq!(t.lookup(1 << 48), None);
        assert!(
            t.tlb().is_empty(),
            "installing into invalid slots needs no TLBI"
        );
    }

    #[test]
    fn invalid_mappings_are_refused() {
        let t = table(8);
        assert_eq!(
            t.map(&mapping(0, 0, 1 << 16, RW, 0xf)),
            Err(MapError::UnsupportedSize(1 << 16))
        );
        assert_eq!(
            t.map(&mapping(0x1000, 0, BLOCK_2M, RW, 0xf)),
            Err(MapError::Misaligned {
                l2_ipa_base: 0x1000,
                pa_base: 0
            })
        );
        assert_eq!(
            t.map(&mapping(0, 0x1000, BLOCK_2M, RW, 0xf)),
            Err(MapError::Misaligned {
                l2_ipa_base: 0,
                pa_base: 0x1000
            })
        );
        assert_eq!(
            t.map(&mapping(1 << 48, 0, PAGE_SIZE, RW, 0xf)),
            Err(MapError::IpaOutOfRange(1 << 48))
        );
        assert_eq!(
            t.map(&mapping(0, 1 << 48, PAGE_SIZE, RW, 0xf)),
            Err(MapError::PaOutOfRange(1 << 48))
        );
        let small = ShadowTable::new(
            HeapFramePool::new(8, 0).unwrap(),
            NoHardwareTlb,
            ShadowConfig {
                xnx: true,
                pa_bits: 40,
            },
        )
        .unwrap();
        assert_eq!(
            small.map(&mapping(0, 1 << 40, PAGE_SIZE, RW, 0xf)),
            Err(MapError::PaOutOfRange(1 << 40))
        );
        assert_eq!(t.frames_used(), 1);
        assert!(HeapFramePool::new(4, 0x123).is_err());
        assert!(HeapFramePool::new(4, (1 << 48) - 0x1000).is_err());
    }

    #[test]
    fn without_xnx_partial_execute_becomes_no_execute() {
        let t = ShadowTable::new(
            HeapFramePool::new(8, 0).unwrap(),
            NoHardwareTlb,
            ShadowConfig {
                xnx: false,
                pa_bits: 48,
            },
        )
        .unwrap();
        let m = mapping(
            0x1000,
            0x2000,
            PAGE_SIZE,
            Permissions::READ.union(Permissions::EXEC_EL0),
            0xf,
        );
        t.map(&m).unwrap();
        assert_eq!(t.lookup(0x1000).unwrap().perms, Permissions::READ);
        let both = Permissions::EXEC_EL0.union(Permissions::EXEC_EL1);
        let m = mapping(0x3000, 0x2000, PAGE_SIZE, both, 0xf);
        t.map(&m).unwrap();
        assert_eq!(t.lookup(0x3000).unwrap().perms, both);
    }

    #[test]
    fn exhausted_pool_is_a_precise_error_and_recovers_after_unmap() {
        // Root + level-1 + level-2 tables: a 2 MiB block fits, a page does not.
        let t = table(3);
        let block = mapping(0x20_0000, 0x20_0000, BLOCK_2M, RW, 0xf);
        assert_eq!(t.map(&block), Ok(MapOutcome::Installed));
        let page = mapping(0x4000_0000, 0x1000, PAGE_SIZE, RW, 0xf);
        assert_eq!(t.map(&page), Err(MapError::FramesExhausted { budget: 3 }));
        assert_eq!(t.pool().frames_in_use(), 3);
        assert_eq!(t.unmap_range(0, 1 << 48), 1);
        assert_eq!(t.frames_used(), 1);
        assert_eq!(t.pool().frames_in_use(), 1);
        assert_eq!(t.map(&page), Err(MapError::FramesExhausted { budget: 3 }));
        assert_eq!(
            t.frames_used(),
            3,
            "tables built before the failure stay for a retry"
        );
        assert_eq!(t.map(&block), Err(MapError::FramesExhausted { budget: 3 }));
        // Unmapping frees the empty tables the failed map left.
        assert_eq!(t.unmap_range(0x4000_0000, BLOCK_1G), 0);
        assert_eq!(t.frames_used(), 1);
        assert_eq!(t.map(&block), Ok(MapOutcome::Installed));
    }

    /// Shared log of TLB invalidations and frame releases, in order.
    #[derive(Debug)]
    enum Event {
        Tlb(TlbEvent),
        /// The frame at this PA went back to the pool.
        Release(u64),
    }

    #[derive(Debug)]
    struct LoggingPool {
        inner: HeapFramePool,
        log: Arc<Mutex<Vec<Event>>>,
    }

    impl FramePool for LoggingPool {
        fn allocate(&self) -> Option<u64> {
            self.inner.allocate()
        }
        fn allocate_contiguous(&self, frames: usize) -> Option<u64> {
            self.inner.allocate_contiguous(frames)
        }
        fn frame(&self, pa: u64) -> Option<&Frame> {
            self.inner.frame(pa)
        }
        fn release(&self, pa: u64) {
            self.log.lock().unwrap().push(Event::Release(pa));
            self.inner.release(pa)
        }
        fn frames_in_use(&self) -> usize {
            self.inner.frames_in_use()
        }
        fn budget(&self) -> usize {
            self.inner.budget()
        }
    }

    /// A TLB hook that checks break-before-make: when it runs, the range it
    /// invalidates must already be unmapped in the tree the hardware walks.
    #[derive(Debug)]
    struct CheckingTlb {
        pool: Arc<LoggingPool>,
        root: OnceLock<u64>,
        log: Arc<Mutex<Vec<Event>>>,
    }

    impl TlbMaintenance for CheckingTlb {
        fn invalidate_range(&self, l2_ipa: u64, len: u64) {
            let root = *self.root.get().unwrap();
            for ipa in [l2_ipa, l2_ipa + len / 2, l2_ipa + len - 1] {
                check_ipa(&self.pool.inner, root, ipa, None);
            }
            self.log
                .lock()
                .unwrap()
                .push(Event::Tlb(TlbEvent::Range { l2_ipa, len }));
        }
        fn invalidate_all(&self) {
            self.log.lock().unwrap().push(Event::Tlb(TlbEvent::All));
        }
    }

    type Log = Arc<Mutex<Vec<Event>>>;

    fn checking_table() -> (ShadowTable<Arc<LoggingPool>, Arc<CheckingTlb>>, Log) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let pool = Arc::new(LoggingPool {
            inner: HeapFramePool::new(64, FAKE_PA).unwrap(),
            log: log.clone(),
        });
        let tlb = Arc::new(CheckingTlb {
            pool: pool.clone(),
            root: OnceLock::new(),
            log: log.clone(),
        });
        let t = ShadowTable::new(pool, tlb.clone(), ShadowConfig::default()).unwrap();
        tlb.root.set(t.root_pa()).unwrap();
        (t, log)
    }

    impl TlbMaintenance for Arc<CheckingTlb> {
        fn invalidate_range(&self, l2_ipa: u64, len: u64) {
            (**self).invalidate_range(l2_ipa, len)
        }
        fn invalidate_all(&self) {
            (**self).invalidate_all()
        }
    }

    #[test]
    fn changed_entries_use_break_before_make() {
        let (t, log) = checking_table();
        let a = mapping(0x20_0000, 0x100_0000, BLOCK_2M, RW, 0xf);
        let b = mapping(0x20_0000, 0x200_0000, BLOCK_2M, Permissions::READ, 0xf);
        assert_eq!(t.map(&a), Ok(MapOutcome::Installed));
        assert_eq!(t.map(&b), Ok(MapOutcome::Replaced));
        check_ipa(&t.pool().inner, t.root_pa(), 0x20_1000, Some(&b));
        // A page inside the block: the block is broken first.
        let p = mapping(0x20_3000, 0x5000, PAGE_SIZE, RW, 0xf);
        assert_eq!(t.map(&p), Ok(MapOutcome::Replaced));
        check_ipa(&t.pool().inner, t.root_pa(), 0x20_3000, Some(&p));
        check_ipa(&t.pool().inner, t.root_pa(), 0x20_4000, None);
        // A block over the page table: the table is unlinked, then freed
        // under the exclusive lock (at the next unmap).
        let c = mapping(0x20_0000, 0x300_0000, BLOCK_2M, RW, 0xf);
        let frames = t.frames_used();
        assert_eq!(t.map(&c), Ok(MapOutcome::Replaced));
        check_ipa(&t.pool().inner, t.root_pa(), 0x20_3000, Some(&c));
        assert_eq!(
            t.frames_used(),
            frames,
            "retired table held until reclaimed"
        );
        let events: Vec<_> = log.lock().unwrap().drain(..).collect();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events.iter().all(|e| matches!(
            e,
            Event::Tlb(TlbEvent::Range {
                l2_ipa: 0x20_0000,
                len: BLOCK_2M
            })
        )));
        assert_eq!(t.unmap_range(0x4000_0000, PAGE_SIZE), 0);
        assert_eq!(t.frames_used(), frames - 1);
        assert!(matches!(
            log.lock().unwrap().last(),
            Some(Event::Release(_))
        ));
    }

    #[test]
    fn unmap_invalidates_before_freeing_tables() {
        let (t, log) = checking_table();
        let p = mapping(0x4020_3000, 0x5000, PAGE_SIZE, RW, 0xf);
        let q = mapping(0x4020_5000, 0x6000, PAGE_SIZE, RW, 0xf);
        t.map(&p).unwrap();
        t.map(&q).unwrap();
        assert_eq!(t.frames_used(), 4);
        // One page: the level-3 table still holds q; only the page goes.
        assert_eq!(t.unmap_range(0x4020_3000, PAGE_SIZE), 1);
        {
            let events = log.lock().unwrap();
            assert!(
                matches!(
                    events[..],
                    [Event::Tlb(TlbEvent::Range {
                        l2_ipa: 0x4020_3000,
                        len: PAGE_SIZE
                    })]
                ),
                "{events:?}"
            );
        }
        log.lock().unwrap().clear();
        check_ipa(&t.pool().inner, t.root_pa(), 0x4020_5000, Some(&q));
        // The last page: every table below the root empties and is freed,
        // after one invalidation covering every range they translated.
        assert_eq!(t.unmap_range(0x4020_5000, PAGE_SIZE), 1);
        let events: Vec<_> = log.lock().unwrap().drain(..).collect();
        let Event::Tlb(first) = events[0] else {
            panic!("{events:?}")
        };
        assert!(
            first.covers(0, 1 << 39),
            "{first:?}: the level-1 table's whole range"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Release(_)))
                .count(),
            3
        );
        assert!(events[1..].iter().all(|e| matches!(e, Event::Release(_))));
        assert_eq!(t.frames_used(), 1);
        assert_eq!(t.pool().frames_in_use(), 1);
        // Partial overlap with a block removes the whole block.
        let b = mapping(0x20_0000, 0x20_0000, BLOCK_2M, RW, 0xf);
        t.map(&b).unwrap();
        assert_eq!(t.unmap_range(0x20_1000, PAGE_SIZE), 1);
        assert_eq!(t.lookup(0x20_0000), None);
        // Empty and out-of-range requests do nothing.
        assert_eq!(t.unmap_range(0x1000, 0), 0);
        assert_eq!(t.unmap_range(1 << 48, 1 << 20), 0);
        assert_eq!(t.unmap_range(u64::MAX - 5, 100), 0);
    }

    #[test]
    fn clear_detaches_everything_after_one_whole_vmid_invalidation() {
        let t = table(64);
        for i in 0..20u64 {
            t.map(&mapping(
                i << 30 | i << 21 | i << 12,
                i << 12,
                PAGE_SIZE,
                RW,
                0xf,
            ))
            .unwrap();
        }
        t.map(&mapping(0x7f_c000_0000, 0, BLOCK_1G, RW, 0xf))
            .unwrap();
        // Root, one level-1 table, 20 level-2 and 20 level-3 tables.
        assert_eq!(t.frames_used(), 42);
        assert_eq!(t.clear(), 21);
        assert_eq!(t.tlb().take(), vec![TlbEvent::All]);
        for i in 0..20u64 {
            assert_eq!(t.lookup(i << 30 | i << 21 | i << 12), None);
        }
        assert_eq!(t.lookup(0x7f_c000_0000), None);
        // Detached, not freed yet: still counted against the pool.
        assert_eq!(t.frames_used(), 42);
        assert_eq!(t.pool().frames_in_use(), 42);
        assert!(t.has_detached());
        assert_eq!(t.reclaim_detached(5), 5);
        assert_eq!(t.frames_used(), 37);
        // Each map returns a few more on its way.
        t.map(&mapping(0x1000, 0x1000, PAGE_SIZE, RW, 0xf)).unwrap();
        assert_eq!(t.frames_used(), 37 - RECLAIM_STEP + 3);
        assert_eq!(t.clear(), 1);
        t.reclaim_detached(usize::MAX);
        assert!(!t.has_detached());
        assert_eq!(t.frames_used(), 1);
        assert_eq!(t.pool().frames_in_use(), 1);
        let pool = t.pool().clone();
        drop(t);
        assert_eq!(pool.frames_in_use(), 0);
    }

    #[test]
    fn detached_frames_are_released_only_after_the_invalidation() {
        let (t, log) = checking_table();
        for i in 0..8u64 {
            t.map(&mapping(i << 30 | i << 12, i << 12, PAGE_SIZE, RW, 0xf))
                .unwrap();
        }
        log.lock().unwrap().clear();
        assert_eq!(t.clear(), 8);
        {
            let events = log.lock().unwrap();
            assert!(
                matches!(events[..], [Event::Tlb(TlbEvent::All)]),
                "nothing released by clear itself: {events:?}"
            );
        }
        // A dropped table frees whatever is still detached.
        let before = t.pool().inner.frames_in_use();
        assert_eq!(before, 1 + 1 + 8 + 8);
        let pool = t.pool().clone();
        drop(t);
        assert_eq!(pool.inner.frames_in_use(), 0);
        let events = log.lock().unwrap();
        assert!(matches!(events[0], Event::Tlb(TlbEvent::All)));
        assert_eq!(
            events[1..]
                .iter()
                .filter(|e| matches!(e, Event::Release(_)))
                .count(),
            before
        );
    }

    #[test]
    fn pool_pressure_reclaims_detached_frames() {
        // Room for the root and one path of three tables.
        let t = table(4);
        t.map(&mapping(0x1000, 0x1000, PAGE_SIZE, RW, 0xf)).unwrap();
        assert_eq!(t.pool().frames_in_use(), 4);
        assert_eq!(t.clear(), 1);
        // A map elsewhere needs three new tables: it takes them back from
        // the detached subtree rather than failing.
        let far = mapping(0x80_4020_3000, 0x5000, PAGE_SIZE, RW, 0xf);
        assert_eq!(t.map(&far), Ok(MapOutcome::Installed));
        assert_eq!(t.lookup(0x80_4020_3000), Some(far));
        assert_eq!(t.pool().frames_in_use(), 4);
        assert!(!t.has_detached());
    }

    #[test]
    fn identity_pool_uses_host_addresses() {
        let pool = HeapFramePool::identity(4).unwrap();
        let pa = pool.allocate().unwrap();
        let frame = pool.frame(pa).unwrap();
        assert_eq!(frame as *const Frame as usize as u64, pa);
        assert_eq!(pa % PAGE_SIZE, 0);
        assert!(pool.frame(pa + 8).is_none());
        assert!(pool.frame(pa + 4 * PAGE_SIZE).is_none());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Map(ShadowMapping),
        Unmap(u64, u64),
        Clear,
    }

    /// IPAs confined to a few regions so operations collide often.
    fn arb_mapping() -> impl Strategy<Value = ShadowMapping> {
        (
            0usize..3,
            0u64..4,
            0u64..3,
            0u64..4,
            0u64..(1 << 20),
            0u8..16,
            0u8..16,
            prop::sample::select(vec![0u8, 2, 3]),
        )
            .prop_map(|(class, gig, two_m, page, pa, perms, attr, sh)| {
                let size = [PAGE_SIZE, BLOCK_2M, BLOCK_1G][class];
                let l2 = ((gig * 97) << 30 | two_m << 21 | page << 12) & !(size - 1);
                ShadowMapping {
                    l2_ipa_base: l2,
                    pa_base: (pa << 12) & !(size - 1),
                    size,
                    perms: Permissions::from_bits(perms).unwrap(),
                    mem_attr: MemAttr::from_bits(attr),
                    shareability: match sh {
                        0 => MemShareability::NonShareable,
                        2 => MemShareability::OuterShareable,
                        _ => MemShareability::InnerShareable,
                    },
                }
            })
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => arb_mapping().prop_map(Op::Map),
            3 => (arb_mapping(), 1u64..(1 << 22)).prop_map(|(m, len)| Op::Unmap(m.l2_ipa_base + (len & 0x1ff000), len)),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// After any sequence of map/unmap/clear, the walker sees exactly
        /// the model's mappings, and no frame leaks.
        #[test]
        fn walker_sees_exactly_the_model(
            ops in prop::collection::vec(arb_op(), 1..40),
            ps in prop::sample::select(vec![0b101u8, 0b100, 0b011, 0b010, 0b001]),
        ) {
            // On hosts under 48 bits the IPAs are folded into the input
            // size, spread over the concatenated start tables.
            let (t, config) = table_for(ps, 256);
            let bits = config.input_bits();
            let fold = |ipa: u64| (ipa | ((ipa >> 30) % 8) << 39) & ((1u64 << bits) - 1);
            let ops: Vec<Op> = ops
                .into_iter()
                .map(|op| match op {
                    Op::Map(m) => Op::Map(ShadowMapping { l2_ipa_base: fold(m.l2_ipa_base), ..m }),
                    Op::Unmap(start, len) => Op::Unmap(fold(start), len),
                    Op::Clear => Op::Clear,
                })
                .collect();
            let walker = shadow_walker_for(ps, t.root_pa());
            let mut model: BTreeMap<u64, ShadowMapping> = BTreeMap::new();
            let overlapping = |model: &BTreeMap<u64, ShadowMapping>, start: u64, end: u64| -> Vec<u64> {
                model.values().filter(|m| m.l2_ipa_base < end && m.l2_ipa_base + m.size > start).map(|m| m.l2_ipa_base).collect()
            };
            for op in &ops {
                match op {
                    Op::Map(m) => {
                        t.map(m).unwrap();
                        for k in overlapping(&model, m.l2_ipa_base, m.l2_ipa_base + m.size) {
                            model.remove(&k);
                        }
                        model.insert(m.l2_ipa_base, *m);
                    }
                    Op::Unmap(start, len) => {
                        let gone = overlapping(&model, *start, start + len);
                        prop_assert_eq!(t.unmap_range(*start, *len), gone.len());
                        for k in gone {
                            model.remove(&k);
                        }
                    }
                    Op::Clear => {
                        prop_assert_eq!(t.clear(), model.len());
                        model.clear();
                    }
                }
            }
            let mut probes: Vec<u64> = vec![0, 1 << (bits - 1), (1 << bits) - 1];
            for m in model.values() {
                probes.extend([m.l2_ipa_base, m.l2_ipa_base + m.size - 1, (m.l2_ipa_base + m.size / 3) & !7]);
                probes.extend([m.l2_ipa_base.wrapping_sub(1), m.l2_ipa_base + m.size]);
            }
            for op in &ops {
                if let Op::Unmap(s, l) = op { probes.extend([*s, s + l - 1, s + l]); }
                if let Op::Map(m) = op { probes.extend([m.l2_ipa_base, m.l2_ipa_base + m.size - 1]); }
            }
            for ipa in probes.into_iter().filter(|a| *a < 1 << bits) {
                let expected = model.range(..=ipa).next_back().map(|(_, m)| m).filter(|m| m.contains(ipa));
                check_walk(&walker, t.pool(), ipa, expected);
                prop_assert_eq!(t.lookup(ipa), expected.copied());
            }
            t.clear();
            t.reclaim_detached(usize::MAX);
            prop_assert_eq!(t.pool().frames_in_use(), config.empty_table_frames());
        }
    }

    /// vCPU threads map while another unmaps and clears: every entry left
    /// is one that was mapped, and no frame leaks.
    #[test]
    fn concurrent_maps_and_unmaps_stay_consistent() {
        let t = Arc::new(table(512));
        let candidates: Vec<ShadowMapping> = (0..64u64)
            .flat_map(|i| {
                let l2 = (i % 4) << 30 | (i % 8) << 21 | (i % 16) << 12;
                [
                    mapping(l2, i << 12, PAGE_SIZE, RW, 0xf),
                    mapping(
                        l2 & !(BLOCK_2M - 1),
                        i << 21,
                        BLOCK_2M,
                        Permissions::READ,
                        0xf,
                    ),
                    mapping(l2, (i + 1) << 12, PAGE_SIZE, Permissions::READ, 0x1),
                ]
            })
            .collect();
        let candidates = Arc::new(candidates);
        let mut handles = vec![];
        for thread in 0..3u64 {
            let t = t.clone();
            let candidates = candidates.clone();
            handles.push(std::thread::spawn(move || {
                let mut x = thread + 1;
                for _ in 0..3000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let m = candidates[(x >> 33) as usize % candidates.len()];
                    t.map(&m).unwrap();
                }
            }));
        }
        {
            let t = t.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..600u64 {
                    if i % 100 == 99 {
                        t.clear();
                    } else {
                        t.unmap_range((i % 4) << 30 | (i % 8) << 21, BLOCK_2M);
                    }
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        for i in 0..(4 << 9) {
            let ipa = (i >> 9) << 30 | (i & 511) << 21;
            for page in 0..16u64 {
                if let Some(m) = t.lookup(ipa | page << 12) {
                    assert!(candidates.contains(&m), "{m:?}");
                    check_ipa(t.pool(), t.root_pa(), ipa | page << 12, Some(&m));
                }
            }
        }
        t.unmap_range(0, 1 << 48);
        t.reclaim_detached(usize::MAX);
        assert_eq!(t.frames_used(), 1);
        assert_eq!(t.pool().frames_in_use(), 1);
    }
}
