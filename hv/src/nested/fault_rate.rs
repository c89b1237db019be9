//! `hv.nested=fault-rate`, the portable part: what each pass of the
//! on-target nested-fault throughput case must count, and the rate
//! arithmetic of hv's per-pass line. The guest hypervisor is
//! `arch::nested_l1_fault_rate`; hv's side (the two calls that bracket a
//! pass, the snapshots, the line) is in `arch::nested`.
//!
//! L1 maps [`PAGES`] L2 pages (4 KiB, L2 IPA [`DATA_IPA`] on, in four
//! level-3 tables of their own under level-1 entry 1, L2's code page under
//! entry 0) and runs its L2, which reads every page once per pass. Between
//! passes L1 remaps every page to the next L1 page (break-before-make) and
//! invalidates as the pass says. hv snapshots its counts at L1's BEGIN call
//! (after L2's code page is mapped, just before the timed loop) and END
//! call (after L2 reported): the *window* is the timed loop, the
//! *preparation* everything since the previous pass's END (L1's remap and
//! TLBIs, L2's code-page fault).
//!
//! The counts follow from the service's design (shadow-mmu/README.md,
//! "Walk-result cache" and "Invalidation"): a miss walks from the deepest
//! cached intermediate path (a *partial* walk) or from the start level (a
//! *full* walk); a walk caches the table descriptors of its trail, so
//! after the first fault of a 1 GiB region every later one in it is
//! partial; a whole-VMID TLBI drops leaves and paths, an any-level TLBI by
//! IPA the leaf and every path whose region holds the page, a last-level
//! TLBI only the leaf. A hit is a leaf still cached but missing from the
//! shadow: the L0-unmap pass (6) makes one of every page with an L0 change (path
//! 3 of /work/shared/DESIGN.md): at L1's BEGIN, before its snapshot, hv
//! moves L1's data pages to other PAs (`arch::nested`'s
//! `fault_rate_l0_move`), unmapping them from the shadows through the
//! service's `l0_unmap`, which removes the shadow leaves built on them
//! and keeps the cached walks of L1's table. Passes 1-5 make none (no
//! eviction, no L0 change): 0 hits. (The block pass's hits are pages of
//! a cached block: below.)
//!
//! The dirty-log pass (7) is hv's own L0 fault on L1's memory
//! (`L0Denied`, `nested::l0_denial`): at its BEGIN hv splits its 2 MiB
//! blocks of L1's data pages into 4 KiB pages, write-protected (as KVM
//! splits huge pages when dirty logging starts), and tells the service
//! (`l0_unmap` with `L0Change::WriteProtect`, which removes the shadow
//! leaves built on them). L1 changes nothing; L2 reads every page and
//! writes the second word of every [`DIRTY_WRITE_PERIOD`]th. Each read
//! faults once (a walk-cache hit, mapped read-only); each write faults
//! twice: the service answers the first `L0Denied` (L1's leaf allows the
//! write, hv's page does not), hv logs the page dirty ([`DirtyLog`]) and
//! gives write back in its own stage 2, and L2's store, run again, faults
//! and maps writable. L1 also writes some of its data pages itself
//! ([`L1_DIRTY_WRITE_PERIOD`], outside the window): each store is L1's
//! own stage-2 permission fault ([`l1_write_protection_fault`]), which
//! hv logs the same way and L1's store runs again. At END hv checks its
//! log holds exactly the L1 pages L2 and L1 wrote ([`DirtyLog::check`],
//! [`dirty_after_dirty_log_pass`]).
//!
//! The block pass comes after it: L1 remaps L2's data with 2 MiB block
//! descriptors (level-2 blocks of its stage 2, [`BLOCK_PAGES`] pages
//! each) rotated by one block ([`BLOCK_ROTATION`]), break-before-make
//! with a TLBI VMALLS12E1IS. The walk-result cache keeps one entry per
//! L1 leaf at the leaf's size, so a walk of a block serves every page in
//! it; the shadow entry is the smaller of L1's block and hv's mapping of
//! the L1 IPA, and hv maps the data with 4 KiB pages since the dirty log
//! split its blocks, so each L2 page still faults once: the first in
//! each block misses and walks, the other 511 hit ([`Pass::expected`]).
//! Before the dirty log hv's 2 MiB blocks would make 2 MiB shadow blocks
//! (one fault a block, no hit), which is why the pass runs after it.
//!
//! The last pass (9) comes after hv ended its dirty log: at its BEGIN hv
//! restores its 2 MiB blocks of L1's data, read-write, at the same PAs
//! (break-before-make: the level-3 tables invalid, TLBI, the service's
//! `l0_unmap` with `L0Change::Unmap`, which removes the shadow leaves
//! built on the 4 KiB pages and keeps the cached walks, then the blocks).
//! L1 changes nothing, so L1's cached 2 MiB blocks compose with hv's
//! 2 MiB blocks to 2 MiB shadow blocks: each block's first page faults
//! and hits, and the shadow block serves the other 511 pages without a
//! fault. L2 writes the first page of each block
//! ([`LOG_END_WRITE_PERIOD`]), through the block its read installed: a
//! block hv restored read-only would deny it.

#[cfg(not(loom))]
use crate::shadow_selftest::memory::Arena;

pub mod pressure;
pub mod smp;

/// How a count must relate to the bound its pass implies (the SMP and
/// pressure checks alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    Exactly,
    AtLeast,
    AtMost,
}

impl Relation {
    /// For hv's FAILED line: "<got> <what> where the pass implies <this>
    /// <bound>".
    pub const fn words(self) -> &'static str {
        match self {
            Relation::Exactly => "exactly",
            Relation::AtLeast => "at least",
            Relation::AtMost => "at most",
        }
    }

    pub(crate) const fn holds(self, got: u64, bound: u64) -> bool {
        match self {
            Relation::Exactly => got == bound,
            Relation::AtLeast => got >= bound,
            Relation::AtMost => got <= bound,
        }
    }
}

/// hv's watchdog for the fault-rate case (`arch::nested`'s
/// `watchdog_seconds`; the QEMU matrix gives the case this plus half a
/// minute, so that hv's own line, naming the pass that ran out, ends a
/// slow run). A run is 21,003 requests to the service CPU and back
/// (16,904 L2 faults: 2048 a pass, 2560 in the dirty-log pass, 4 after
/// its end, 4 of L2's code page; 4,099 stage-2 TLBIs of L1), each a wake-up of the other
/// CPU, so its time follows how often QEMU's two vCPU threads run at
/// once. Measured on QEMU (TCG, `-smp 2`) on the shared 2-core machine
/// (stop 29, seven passes, 18,949 requests): 1.4-15 s at load 3-6; 39 s
/// at load 8 (review 57); 59 s at load 7 and once over 45 s at load 5.6
/// (the old 45 s watchdog ended it in pass 3). The block pass (stop 30)
/// adds 2,050 requests, a ninth more, most of them walk-cache hits: at
/// load 6-10 the run took 11-18 s with it and 21-55 s without (runs
/// alternated; the load's noise hides the ninth). Pass 9 adds 4 requests.
/// With
/// QEMU held to one host core (`taskset -c 0`), where each round trip
/// waits for the scheduler to switch threads (the waiting CPU's WFE does
/// not sleep under TCG), a pass of 2048 round trips took 17-24 s at load
/// 5 (150-220 s a seven-pass run, so about 170-245 s with the block
/// pass) and 38-58 s at load 8 (the run did not end within 300 s). 300 s
/// is over twice every unpinned run and above the one-core run at load
/// 5; no bound covers a QEMU that gets one loaded core.
pub const WATCHDOG_SECONDS: u64 = 300;

/// L2 pages each pass touches (a power of two: L2 and L1 compute page
/// indexes modulo it with an AND).
pub const PAGES: u64 = 2048;
const _: () = assert!(PAGES.is_power_of_two() && PAGES.is_multiple_of(512));
/// The first L2 IPA of the touched pages: level-1 entry 1 of L1's stage 2,
/// apart from L2's code page (0x80000, entry 0).
pub const DATA_IPA: u64 = 0x4000_0000;
/// L2 writes every this-many-th page in the dirty-log pass (L2 page
/// i with i a multiple of it): a power of two, so L2 tests it with an AND.
pub const DIRTY_WRITE_PERIOD: u64 = 8;
const _: () = assert!(DIRTY_WRITE_PERIOD == 8 && PAGES.is_multiple_of(DIRTY_WRITE_PERIOD));
/// L1 writes, between hv's BEGIN of the dirty-log pass and its timed
/// loop, the third word of its own data pages j with j mod this ==
/// [`L1_DIRTY_WRITE_FIRST`] (128 pages, none of L2's, which are 4 mod 8):
/// a power of two, so L1 steps through them with an add.
pub const L1_DIRTY_WRITE_PERIOD: u64 = 16;
/// See [`L1_DIRTY_WRITE_PERIOD`].
pub const L1_DIRTY_WRITE_FIRST: u64 = 2;
const _: () = assert!(
    L1_DIRTY_WRITE_PERIOD.is_power_of_two()
        && L1_DIRTY_WRITE_FIRST < L1_DIRTY_WRITE_PERIOD
        && PAGES.is_multiple_of(L1_DIRTY_WRITE_PERIOD)
);

/// L1's rotation in the passes after the scattered one (5) that remap
/// nothing (6 and 7): L2 page i is L1 data page (i + this) mod [`PAGES`].
pub const LAST_ROTATION: u64 = 4;
/// 4 KiB pages in one of the block pass's 2 MiB blocks (a level-2 block
/// of L1's 4 KiB-granule stage 2).
pub const BLOCK_PAGES: u64 = 512;
/// L1's rotation in the block pass, in pages: one block, so L2 block b is
/// L1 data block (b + 1) mod [`PAGES`] / [`BLOCK_PAGES`], and L2 page i
/// L1 data page (i + this) mod [`PAGES`] (the pattern L2 checks). Pass 7
/// left the pages rotated by [`LAST_ROTATION`], not a whole block, so a
/// translation left from it reads another page's pattern, as does one
/// left from an unrotated block.
pub const BLOCK_ROTATION: u64 = BLOCK_PAGES;
const _: () = assert!(
    PAGES.is_multiple_of(BLOCK_PAGES)
        && PAGES / BLOCK_PAGES > 1
        && BLOCK_ROTATION.is_multiple_of(BLOCK_PAGES)
        && !BLOCK_ROTATION.is_multiple_of(PAGES)
        && !LAST_ROTATION.is_multiple_of(BLOCK_PAGES)
);
/// L2 writes, in the pass after hv ended its dirty log, the second word
/// of every this-many-th page: the first page of each block, through the
/// 2 MiB shadow block its read fault installed, which hv's block must
/// allow (a block restored read-only stops hv with an unresolved
/// `L0Denied`).
pub const LOG_END_WRITE_PERIOD: u64 = BLOCK_PAGES;
const _: () = assert!(LOG_END_WRITE_PERIOD.is_power_of_two());
/// Step of the scattered pass (pass 5) through the pages: odd, so
/// coprime with [`PAGES`], and far from 1 so consecutive faults land in
/// different level-3 tables most of the time.
pub const SCATTER_STRIDE: u64 = 1031;
const _: () = assert!(SCATTER_STRIDE % 2 == 1 && SCATTER_STRIDE < PAGES);

/// The passes, in the order L1 runs them (L1 passes the number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// 1: every page's first touch.
    FirstTouch,
    /// 2: after L1's remap and one TLBI VMALLS12E1IS.
    AfterVmalls12,
    /// 3: after L1's remap, a TLBI IPAS2E1IS of every page, and one
    /// VMALLE1IS (L2's stage-1 and combined entries).
    AfterIpas2,
    /// 4: the same with IPAS2LE1IS (last level): the walk cache stays.
    AfterIpas2LastLevel,
    /// 5: after a remap and a TLBI VMALLS12E1IS, the pages in scattered
    /// order (page k * [`SCATTER_STRIDE`] mod [`PAGES`]).
    Scattered,
    /// 6: L1 changes nothing (no remap, no TLBI); hv moves L1's data
    /// pages (at BEGIN), its L0 unmap removes their shadow leaves, and
    /// every fault is a walk-cache hit.
    AfterL0Unmap,
    /// 7: L1 changes nothing; hv write-protects L1's data pages for its
    /// dirty log (at BEGIN), L2 reads every page and writes every
    /// [`DIRTY_WRITE_PERIOD`]th, and hv logs the pages written.
    DirtyLog,
    /// 8: after L1's remap of the data to 2 MiB blocks, rotated by one
    /// block ([`BLOCK_ROTATION`]), and one TLBI VMALLS12E1IS: one walk a
    /// block, every other page of it a walk-cache hit.
    Blocks,
    /// 9: L1 changes nothing (the block pass's blocks, no TLBI); hv ends
    /// its dirty log (at BEGIN): its 4 KiB pages of L1's data back to
    /// 2 MiB blocks, read-write, and its L0 unmap removes the shadow
    /// leaves built on the pages. L1's blocks over hv's blocks compose to
    /// 2 MiB shadow blocks: one fault a block, a walk-cache hit. L2 also
    /// writes the first page of each block ([`LOG_END_WRITE_PERIOD`]).
    AfterDirtyLogEnd,
}

impl Pass {
    /// The pass L1 numbers `number`, if any.
    pub fn from_number(number: u64) -> Option<Pass> {
        Some(match number {
            1 => Pass::FirstTouch,
            2 => Pass::AfterVmalls12,
            3 => Pass::AfterIpas2,
            4 => Pass::AfterIpas2LastLevel,
            5 => Pass::Scattered,
            6 => Pass::AfterL0Unmap,
            7 => Pass::DirtyLog,
            8 => Pass::Blocks,
            9 => Pass::AfterDirtyLogEnd,
            _ => return None,
        })
    }

    /// The number L1 gives it.
    pub const fn number(self) -> u64 {
        match self {
            Pass::FirstTouch => 1,
            Pass::AfterVmalls12 => 2,
            Pass::AfterIpas2 => 3,
            Pass::AfterIpas2LastLevel => 4,
            Pass::Scattered => 5,
            Pass::AfterL0Unmap => 6,
            Pass::DirtyLog => 7,
            Pass::Blocks => 8,
            Pass::AfterDirtyLogEnd => 9,
        }
    }

    /// The last pass: L1 powers off after it.
    pub const LAST: u64 = 9;

    /// Whether hv moves L1's data pages (unmapping them from the shadows
    /// through the service's `l0_unmap`) at this pass's BEGIN, before
    /// its snapshot.
    pub fn l0_unmap_first(self) -> bool {
        self == Pass::AfterL0Unmap
    }

    /// Whether hv write-protects L1's data pages for its dirty log at
    /// this pass's BEGIN, before its snapshot.
    pub fn dirty_log_first(self) -> bool {
        self == Pass::DirtyLog
    }

    /// Whether hv ends its dirty log of L1's data pages at this pass's
    /// BEGIN, before its snapshot: its 4 KiB pages back to the 2 MiB
    /// blocks they were split from, read-write.
    pub fn dirty_log_end_first(self) -> bool {
        self == Pass::AfterDirtyLogEnd
    }

    /// Whether L1 maps L2's data with 2 MiB blocks in this pass (else
    /// with 4 KiB pages).
    pub fn l1_blocks(self) -> bool {
        matches!(self, Pass::Blocks | Pass::AfterDirtyLogEnd)
    }

    /// The shadow leaves this pass's window installs for L2's data: one
    /// a page, but one a block where both L1 and hv map the data with
    /// 2 MiB blocks (the shadow entry is the smaller of the two).
    pub fn data_shadow_leaves(self, pages: u64) -> u64 {
        if self == Pass::AfterDirtyLogEnd {
            pages.div_ceil(BLOCK_PAGES)
        } else {
            pages
        }
    }

    /// What the pass is, for hv's line (the dirty-log pass's names
    /// [`DIRTY_WRITE_PERIOD`]).
    pub fn describe(self) -> &'static str {
        match self {
            Pass::FirstTouch => "first touch, in order",
            Pass::AfterVmalls12 => "after remap + TLBI VMALLS12E1IS, in order",
            Pass::AfterIpas2 => "after remap + TLBI IPAS2E1IS of every page, in order",
            Pass::AfterIpas2LastLevel => {
                "after remap + TLBI IPAS2LE1IS of every page (walk cache kept), in order"
            }
            Pass::Scattered => "after remap + TLBI VMALLS12E1IS, scattered (stride 1031)",
            Pass::AfterL0Unmap => {
                "after hv moved L1's data pages (L0 unmap, walk cache kept), in order"
            }
            Pass::DirtyLog => {
                "after hv write-protected L1's data pages for its dirty log, every 8th page written, in order"
            }
            Pass::Blocks => {
                "after remap to 2 MiB blocks rotated by one block + TLBI VMALLS12E1IS, in order"
            }
            Pass::AfterDirtyLogEnd => {
                "after hv ended its dirty log (its 2 MiB blocks back, read-write; L1's blocks kept), each block's first page written, in order"
            }
        }
    }

    /// What the preparation and the window of this pass must count, with
    /// `pages` pages.
    pub fn expected(self, pages: u64) -> (Counts, Counts) {
        // L2's code page faults again after a whole-VMID TLBI: one fault,
        // a full walk (nothing of the VMID is cached), before BEGIN.
        let code_fault = Counts {
            faults: 1,
            misses: 1,
            walks: 1,
            ..Counts::ZERO
        };
        let prep = match self {
            // Since hv started: the code page's first fault.
            Pass::FirstTouch => code_fault,
            // hv's L0 unmap (or write protection), one invalidation; L1
            // changed nothing, and the code page (outside the range) kept
            // its shadow leaf.
            Pass::AfterL0Unmap | Pass::DirtyLog | Pass::AfterDirtyLogEnd => Counts {
                invalidations: 1,
                ..Counts::ZERO
            },
            Pass::AfterVmalls12 | Pass::Scattered | Pass::Blocks => Counts {
                stage2_tlbis: 1,
                invalidations: 1,
                ..code_fault
            },
            // The code page is outside every TLBI by IPA: no fault.
            Pass::AfterIpas2 | Pass::AfterIpas2LastLevel => Counts {
                stage2_tlbis: pages,
                invalidations: pages,
                ..Counts::ZERO
            },
        };
        // Every walk of L1's table since pass 5's is cached (the cache
        // holds twice the pages: no eviction), and only the shadow leaves
        // went: every page faults once and hits.
        if self == Pass::AfterL0Unmap {
            return (
                prep,
                Counts {
                    faults: pages,
                    hits: pages,
                    ..Counts::ZERO
                },
            );
        }
        // As after the L0 unmap, every read hits; every write faults
        // twice more (denied by hv's write protection, then mapped
        // writable), both hits: L1's cached leaf allows the write.
        if self == Pass::DirtyLog {
            let faults = pages + 2 * (pages / DIRTY_WRITE_PERIOD);
            return (
                prep,
                Counts {
                    faults,
                    hits: faults,
                    ..Counts::ZERO
                },
            );
        }
        // L1's blocks (cached since the block pass: L1 changed nothing)
        // over hv's blocks again: a 2 MiB shadow block each, so each
        // block's first page faults, hits, and maps the whole block; no
        // other page faults.
        if self == Pass::AfterDirtyLogEnd {
            let blocks = self.data_shadow_leaves(pages);
            return (
                prep,
                Counts {
                    faults: blocks,
                    hits: blocks,
                    ..Counts::ZERO
                },
            );
        }
        // L1's blocks, hv's 4 KiB pages (the dirty log split its blocks):
        // every page faults once (a 4 KiB shadow leaf each); the first
        // page of each block misses and caches the block, whose entry
        // serves the other pages of it: hits. The first walk starts at
        // the start level (the TLBI dropped every path; the code page's
        // fault cached entry 0's), and caches entry 1's level-1
        // descriptor, from which the other blocks' walks start.
        if self == Pass::Blocks {
            let blocks = pages / BLOCK_PAGES;
            return (
                prep,
                Counts {
                    faults: pages,
                    hits: pages.saturating_sub(blocks),
                    misses: blocks,
                    walks: 1,
                    partial_walks: blocks.saturating_sub(1),
                    ..Counts::ZERO
                },
            );
        }
        // The window: every page faults once and misses. The first data
        // fault walks from the start level unless a path of level-1 entry
        // 1 survived the preparation (only the last-level TLBIs keep it;
        // pass 1 starts with the code page's paths alone, under entry 0).
        let full = match self {
            Pass::AfterIpas2LastLevel => 0,
            _ => 1,
        };
        let window = Counts {
            faults: pages,
            misses: pages,
            walks: full,
            partial_walks: pages.saturating_sub(full),
            ..Counts::ZERO
        };
        (prep, window)
    }
}

/// hv's counts, as snapshots and as differences of two. The first two
/// are hv's, the rest the service's `Stats` of the same names. [`check`]
/// compares every one but `invalidated_entries` with what the pass
/// implies ([`Counts::mismatch`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// L2 stage-2 faults hv sent to the service. Checked.
    pub faults: u64,
    /// L1's stage-2 TLBIs. Checked.
    pub stage2_tlbis: u64,
    /// Translations served from the walk-result cache. Checked.
    pub hits: u64,
    /// Translations that had to walk. Checked.
    pub misses: u64,
    /// Full walks (from the start level). Checked.
    pub walks: u64,
    /// Partial walks (from below a cached intermediate path). Checked.
    pub partial_walks: u64,
    /// Invalidation requests applied (L1's TLBIs, hv's L0 unmaps).
    /// Checked.
    pub invalidations: u64,
    /// Entries the invalidations removed (cache entries and shadow
    /// leaves). Not checked here, only reported (the QEMU matrix's
    /// expected lines match them): the number follows the service's
    /// bookkeeping (4105 for a VMALLS12E1IS: 2049 cached leaves, 2049
    /// shadow leaves, 7 paths), not the architecture, and would change
    /// with it.
    pub invalidated_entries: u64,
    /// Entries evicted under memory pressure. Checked: 0 in every pass
    /// (hv gives the service room for every entry of the case).
    pub evictions: u64,
}

impl Counts {
    pub const ZERO: Counts = Counts {
        faults: 0,
        stage2_tlbis: 0,
        hits: 0,
        misses: 0,
        walks: 0,
        partial_walks: 0,
        invalidations: 0,
        invalidated_entries: 0,
        evictions: 0,
    };

    /// What was counted from `earlier` to `self` (wrapping: counters only
    /// grow, and a wrap would need 2^64 events).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            faults: self.faults.wrapping_sub(earlier.faults),
            stage2_tlbis: self.stage2_tlbis.wrapping_sub(earlier.stage2_tlbis),
            hits: self.hits.wrapping_sub(earlier.hits),
            misses: self.misses.wrapping_sub(earlier.misses),
            walks: self.walks.wrapping_sub(earlier.walks),
            partial_walks: self.partial_walks.wrapping_sub(earlier.partial_walks),
            invalidations: self.invalidations.wrapping_sub(earlier.invalidations),
            invalidated_entries: self
                .invalidated_entries
                .wrapping_sub(earlier.invalidated_entries),
            evictions: self.evictions.wrapping_sub(earlier.evictions),
        }
    }

    /// The first checked count that differs from `expected`: its name,
    /// the expected value and this one.
    pub fn mismatch(&self, expected: &Counts) -> Option<(&'static str, u64, u64)> {
        [
            ("L2 faults", expected.faults, self.faults),
            (
                "stage-2 TLBIs from L1",
                expected.stage2_tlbis,
                self.stage2_tlbis,
            ),
            ("hits", expected.hits, self.hits),
            ("misses", expected.misses, self.misses),
            ("full walks", expected.walks, self.walks),
            ("partial walks", expected.partial_walks, self.partial_walks),
            ("invalidations", expected.invalidations, self.invalidations),
            ("evictions", expected.evictions, self.evictions),
        ]
        .into_iter()
        .find(|&(_, want, got)| want != got)
    }
}

/// Why a pass's counts are not what it implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountMismatch {
    /// In the preparation (true) or the timed window.
    pub preparation: bool,
    pub what: &'static str,
    pub expected: u64,
    pub got: u64,
}

/// Checks a pass's preparation and window against [`Pass::expected`].
pub fn check(pass: Pass, pages: u64, prep: &Counts, window: &Counts) -> Result<(), CountMismatch> {
    let (want_prep, want_window) = pass.expected(pages);
    let found = |preparation, (what, expected, got)| CountMismatch {
        preparation,
        what,
        expected,
        got,
    };
    if let Some(m) = prep.mismatch(&want_prep) {
        return Err(found(true, m));
    }
    if let Some(m) = window.mismatch(&want_window) {
        return Err(found(false, m));
    }
    Ok(())
}

/// The single-vCPU case's data faults in pass `pass` that came on the
/// page its order puts next ([`smp::page_step`] with one vCPU: 1 in order,
/// [`SCATTER_STRIDE`] in pass 5; `smp::VcpuCounters` counts them, a
/// written page's repeated faults in pass 7 neither way): every data page
/// but the first, [`PAGES`] - 1, in every pass but 9 (a fault a 2 MiB
/// block, [`smp::follows_page_order`]). Review 63 R63-1: no other count
/// tells pass 5 from an in-order pass. `Err` with the count and what the
/// pass implies.
pub fn check_page_order(pass: Pass, in_order: u64) -> Result<(), CountMismatch> {
    let want = PAGES - 1;
    if !smp::follows_page_order(pass) || in_order == want {
        return Ok(());
    }
    Err(CountMismatch {
        preparation: false,
        what: "data faults in the pass's order",
        expected: want,
        got: in_order,
    })
}

/// Whether L2 writes L1 data page `l1_page` in the dirty-log pass: L2
/// page i is L1 page (i + [`LAST_ROTATION`]) mod [`PAGES`], and L2 writes
/// the pages i that are multiples of [`DIRTY_WRITE_PERIOD`].
pub const fn written_by_l2_in_dirty_log_pass(l1_page: u64) -> bool {
    let l2_page = (l1_page + PAGES - LAST_ROTATION) % PAGES;
    l2_page.is_multiple_of(DIRTY_WRITE_PERIOD)
}

/// Whether L1 itself writes its data page `l1_page` in the dirty-log
/// pass ([`L1_DIRTY_WRITE_PERIOD`]).
pub const fn written_by_l1_in_dirty_log_pass(l1_page: u64) -> bool {
    l1_page < PAGES && l1_page % L1_DIRTY_WRITE_PERIOD == L1_DIRTY_WRITE_FIRST
}

/// Whether L1 data page `l1_page` is dirty after the dirty-log pass:
/// written by L2 (through the shadow) or by L1 itself.
pub const fn dirty_after_dirty_log_pass(l1_page: u64) -> bool {
    written_by_l2_in_dirty_log_pass(l1_page) || written_by_l1_in_dirty_log_pass(l1_page)
}

/// Where the L1 address of a write [`l1_write_protection_fault`] accepts
/// comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1WriteAddress {
    /// L1's stage 1 is off (SCTLR_EL1.M = 0 or HCR_EL2.DC = 1, as this L1
    /// runs): FAR_EL2, its VA, is the L1 IPA.
    Ipa(u64),
    /// L1's stage 1 is on: FAR_EL2 is a VA, for hv to translate with L1's
    /// own stage 1 (`AT S1E1R`), as for L2's permission faults
    /// (`nested::entry::FaultIpaSource::Stage1Walk`).
    Stage1Va(u64),
}

/// Where the L1 address of the page an abort of L1 writes comes from,
/// when the abort is one hv's write protection causes: a data abort
/// (`esr`, EC 0x24 checked by the caller) with a stage-2 permission fault
/// (DFSC 0b0011xx) of a write (WnR), not on a stage-1 table walk (S1PTW:
/// L1's walks only read). A cache maintenance instruction (CM, which
/// reports WnR 1) is one too: the one at EL1 a stage-2 permission fault
/// can stop on a readable page is DC IVAC, which "requires write access
/// permission to the VA" (Arm ARM, DC IVAC; HCRX_EL2.CMOW, which would add
/// DC CIVAC, is clear), and an invalidate may discard the page's lines, a
/// change of its contents: logged as a write, as KVM's
/// `kvm_is_write_fault` takes WnR (review 60 R60-4: it was an external
/// abort for L1). `far` is FAR_EL2 (valid: FnV is 0 for any fault but an
/// external abort), `l1_stage1_on` whether L1's stage 1 is on.
/// HPFAR_EL2 is no source: the Arm ARM leaves it UNKNOWN for a stage-2
/// permission fault that is not on a stage-1 walk (ESR_EL2 ISS, the list
/// of aborts for which "HPFAR_EL2 is valid"; QEMU fills it anyway, so the
/// QEMU case cannot tell; review 59 R59-1). None for any other abort.
pub fn l1_write_protection_fault(esr: u64, far: u64, l1_stage1_on: bool) -> Option<L1WriteAddress> {
    use crate::esr::{DataAbort, FaultStatus};
    use crate::nested::entry::{fault_ipa_source, FaultIpaSource};
    let abort = DataAbort::from_esr(esr);
    let permission = matches!(abort.status, FaultStatus::Permission { .. });
    if !permission || !abort.write || abort.stage1_walk {
        return None;
    }
    Some(match fault_ipa_source(esr, l1_stage1_on) {
        FaultIpaSource::Far => L1WriteAddress::Ipa(far),
        // A permission fault not on a walk with stage 1 on is always
        // `Stage1Walk`; `Hpfar` would need S1PTW, refused above.
        FaultIpaSource::Stage1Walk | FaultIpaSource::Hpfar => L1WriteAddress::Stage1Va(far),
    })
}

/// Whether an `L0Denied` answer is a write the dirty log's write
/// protection causes, so hv may log and resolve it (if the L1 IPA is an
/// unlogged data page it write-protects): L2's store, or the service
/// walk's AF/dirty update of a descriptor of L1's stage-2 table there (a
/// write to the page as the hardware's compare-and-swap would be), or
/// L2's cache maintenance at EL1: the service denies one only for want of
/// write permission, a DC IVAC (`AccessKind::CacheMaintenance` needs none
/// as a clean), which may discard the page's lines and is logged as a
/// write (as L1's own, [`l1_write_protection_fault`]; review 60 R60-4: hv
/// stopped on it). Never a read (write protection leaves reads alone) nor
/// another L2 access (an EL0 cache maintenance instruction needs read
/// permission only).
pub const fn dirty_log_write(denied: ipc::DeniedAccess) -> bool {
    matches!(
        denied,
        ipc::DeniedAccess::L2Data(ipc::AccessKind::Write | ipc::AccessKind::CacheMaintenance)
            | ipc::DeniedAccess::L1TableUpdate
    )
}

/// hv's dirty log of L1's [`PAGES`] data pages: the pages it saw a write
/// to (through its write protection) since logging began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirtyLog {
    dirty: [u64; (PAGES / 64) as usize],
    logged: u64,
    /// The page of each vCPU's last denied write the log resolved
    /// ([`NOT_RESOLVED`] before its first), by vCPU index
    /// ([`dirty_write_outcome`]; review 65 R65-1).
    last_resolved: [u64; crate::platform::MAX_CPUS],
}

/// [`DirtyLog`]'s `last_resolved` of a vCPU none of whose writes it
/// resolved (no data page).
const NOT_RESOLVED: u64 = u64::MAX;

/// Why a dirty log is not the set of pages written (by L2 or L1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirtyMismatch {
    /// The page was written and hv did not log it.
    Missing(u64),
    /// hv logged a page no one wrote.
    Extra(u64),
}

impl Default for DirtyLog {
    fn default() -> Self {
        Self::new()
    }
}

impl DirtyLog {
    /// Nothing dirty.
    pub const fn new() -> Self {
        DirtyLog {
            dirty: [0; (PAGES / 64) as usize],
            logged: 0,
            last_resolved: [NOT_RESOLVED; crate::platform::MAX_CPUS],
        }
    }

    /// Logs data page `page` dirty. False (nothing logged) for a page
    /// outside the data or one already dirty: hv gave it write access
    /// when it logged it, so a second denial of a write is not the dirty
    /// log's.
    pub fn log(&mut self, page: u64) -> bool {
        let Some(word) = self.dirty.get_mut((page / 64) as usize) else {
            return false;
        };
        let bit = 1 << (page % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.logged += 1;
        true
    }

    /// Whether page `page` is logged dirty.
    pub fn is_dirty(&self, page: u64) -> bool {
        self.dirty
            .get((page / 64) as usize)
            .is_some_and(|word| word & (1 << (page % 64)) != 0)
    }

    /// The pages logged dirty.
    pub const fn logged(&self) -> u64 {
        self.logged
    }

    /// The first page where the log and `written` (the pages written)
    /// differ; `Ok` with the number of pages logged when they agree.
    pub fn check(&self, written: impl Fn(u64) -> bool) -> Result<u64, DirtyMismatch> {
        for page in 0..PAGES {
            match (written(page), self.is_dirty(page)) {
                (true, false) => return Err(DirtyMismatch::Missing(page)),
                (false, true) => return Err(DirtyMismatch::Extra(page)),
                _ => {}
            }
        }
        Ok(self.logged)
    }
}

/// hv's own stage-2 leaf of the L1 page a dirty-log write was denied on,
/// as hv reads it under the log's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvPage {
    /// A 4 KiB page without write permission: the log's protection.
    WriteProtected,
    /// A 4 KiB page with write permission.
    Writable,
    /// No leaf, or one of another size: not the log's page.
    Other,
}

/// What hv's dirty log makes of a denied write ([`dirty_write_outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirtyWrite {
    /// The page is write-protected and not logged: this vCPU logs it and
    /// makes it writable (its leaf rewritten, then a TLBI of it, both
    /// under the log's lock), and the write runs again.
    Logged,
    /// The page is logged and writable already: another vCPU's write to
    /// it was denied at the same time and logged it first (its rewrite
    /// and TLBI done under the lock this vCPU took after it). The write
    /// runs again; nothing is logged.
    LoggedByAnother,
    /// Not the dirty log's denial (a read, a page outside the log, a
    /// leaf the log does not explain): hv does not resolve it.
    Unresolved,
}

impl DirtyWrite {
    /// Whether the denied access runs again.
    pub const fn resolved(self) -> bool {
        !matches!(self, DirtyWrite::Unresolved)
    }
}

/// What hv's dirty log `log` makes of vCPU `vcpu`'s write to data page
/// `page` (None: outside the data) that was denied, with hv's leaf of the
/// page now `hv_page`; `log` and `hv_page` read under the log's lock. A
/// resolved write is noted in `log` as the vCPU's last.
///
/// A page is logged exactly when it is writable (the log's writer rewrites
/// the leaf and TLBIs it before it logs, under the lock), so a
/// write-protected logged page or a writable unlogged one is not the
/// log's (Unresolved). A writable logged page is a race on SMP, as on
/// hardware: two vCPUs' writes (or L1's and L2's) reach the protected
/// page, both are denied, one logs it first. The later one is resolved
/// without a loop: it saw the page writable only after the first writer's
/// TLBI (broadcast, completed by its DSB ISH before the lock's release,
/// which this vCPU's acquire follows), so no TLB entry of the read-only
/// leaf is left on any PE and the service, which walks hv's table afresh
/// on each fault, reads the writable leaf: the retried write cannot be
/// denied for the same protection again (only a new dirty log's start
/// write-protects the page again, and that log has it unlogged).
///
/// That argument is checked, not only made (review 65 R65-1): a vCPU's
/// write denied again on the page the log last resolved for that vCPU
/// (its own `Logged` or a `LoggedByAnother`, both of which leave the page
/// writable for the rest of the log) is `Unresolved`, so hv stops on its
/// `L0Denied` line at once, as before the race's fix, rather than resume
/// the vCPU into the same fault until the watchdog. A write-protected
/// leaf's cache that outlived the TLBI, or a service reading a stale L0
/// leaf, would be such a loop; without the check the retry was answered
/// `LoggedByAnother` (the page looks logged by someone) for ever.
pub fn dirty_write_outcome(
    log: &mut DirtyLog,
    vcpu: usize,
    page: Option<u64>,
    hv_page: HvPage,
) -> DirtyWrite {
    let Some(page) = page.filter(|&p| p < PAGES) else {
        return DirtyWrite::Unresolved;
    };
    let outcome = match (hv_page, log.is_dirty(page)) {
        (HvPage::WriteProtected, false) => DirtyWrite::Logged,
        (HvPage::Writable, true) => DirtyWrite::LoggedByAnother,
        (HvPage::WriteProtected, true) | (HvPage::Writable, false) | (HvPage::Other, _) => {
            return DirtyWrite::Unresolved
        }
    };
    // A vCPU index past the log's (none hv has) is not resolved either.
    match log.last_resolved.get_mut(vcpu) {
        Some(last) if *last != page => {
            *last = page;
            outcome
        }
        _ => DirtyWrite::Unresolved,
    }
}

/// Where hv keeps L1's data pages for its L0 moves: at `home` (their
/// place in L1's RAM when L1 starts) or at `spare` (as many bytes hv keeps
/// free for the move). Each move takes them from where they are now to the
/// other place, so a second move (L1 begins the L0-unmap pass again) is
/// as correct as the first: like a host migrating a guest's memory, hv
/// may move it any number of times, and the guest's pages are the same
/// after each. A move from a fixed place to a fixed place copied the old,
/// stale pages over the live ones the second time (review 57 R57-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPlaces {
    home: u64,
    spare: u64,
    at_spare: bool,
}

/// One move of L1's data pages: their PA before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataMove {
    pub from: u64,
    pub to: u64,
}

impl DataPlaces {
    /// The pages at `home`, `spare` free.
    pub const fn new(home: u64, spare: u64) -> Self {
        DataPlaces {
            home,
            spare,
            at_spare: false,
        }
    }

    /// The PA of the pages now.
    pub const fn current(&self) -> u64 {
        if self.at_spare {
            self.spare
        } else {
            self.home
        }
    }

    /// The move [`DataPlaces::make_move`] makes next: from where the
    /// pages are now to the other place.
    pub const fn next_move(&self) -> DataMove {
        if self.at_spare {
            DataMove {
                from: self.spare,
                to: self.home,
            }
        } else {
            DataMove {
                from: self.home,
                to: self.spare,
            }
        }
    }

    /// Makes the next move in `arena`: copies `bytes` (whole 4 KiB pages)
    /// from its `from` to its `to`, then inverts the first word (the
    /// pattern L2 checks) of every old page, so that a translation left
    /// on them shows L2 a value no page holds; the pages are at `to` from
    /// then on. `None`, nothing copied, inverted or recorded, if either
    /// range is not inside `arena`.
    #[cfg(not(loom))]
    pub fn make_move(&mut self, arena: &Arena<'_>, bytes: u64) -> Option<DataMove> {
        const PAGE: u64 = 4096;
        let next = self.next_move();
        // Both ranges are checked before a word is copied.
        arena.copy(next.from, next.to, bytes)?;
        // Inside the arena: the copy read every word of `from`.
        for page in (0..bytes).step_by(PAGE as usize) {
            let old = next.from + page;
            arena.write(old, !arena.read(old)?)?;
        }
        self.at_spare = !self.at_spare;
        Some(next)
    }
}

/// `ticks` of a counter at `frequency` Hz in nanoseconds; None when the
/// frequency is 0 (CNTFRQ_EL0 unset) or the result passes u64.
pub fn nanoseconds(ticks: u64, frequency: u64) -> Option<u64> {
    if frequency == 0 {
        return None;
    }
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(frequency)).ok()
}

/// `events` in `ticks` at `frequency` Hz, per second; None for 0 ticks
/// (the counter did not move), a frequency of 0 (CNTFRQ_EL0 unset: the
/// time is unknown, as in [`nanoseconds`], not infinite) or a result past
/// u64.
pub fn per_second(events: u64, ticks: u64, frequency: u64) -> Option<u64> {
    if ticks == 0 || frequency == 0 {
        return None;
    }
    u64::try_from(u128::from(events) * u128::from(frequency) / u128::from(ticks)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(loom))]
    use alloc::vec::Vec;

    /// The dirty log resolves writes only: L2's store and the walk's
    /// update of L1's table; a read of L1's table or any other L2 access
    /// stops hv (`l0_denied`).
    #[test]
    fn the_dirty_log_resolves_l2_stores_and_table_updates_only() {
        use ipc::{AccessKind, DeniedAccess};
        assert!(dirty_log_write(DeniedAccess::L2Data(AccessKind::Write)));
        assert!(dirty_log_write(DeniedAccess::L1TableUpdate));
        // Review 60 R60-4: L2's DC IVAC at EL1, denied for want of write
        // permission (the service denies EL1 cache maintenance for nothing
        // else), is a write to the page.
        assert!(dirty_log_write(DeniedAccess::L2Data(
            AccessKind::CacheMaintenance
        )));
        assert!(!dirty_log_write(DeniedAccess::L1TableRead));
        for access in [
            AccessKind::Read,
            AccessKind::Execute,
            AccessKind::ExecuteEl0,
            AccessKind::CacheMaintenanceEl0,
        ] {
            assert!(!dirty_log_write(DeniedAccess::L2Data(access)), "{access:?}");
        }
    }

    /// Each pass's data faults in its order; pass 5's scattered: in-order
    /// reads counted as pass 5 fail (review 63 R63-1), as scattered reads
    /// counted as an in-order pass do.
    #[test]
    fn the_single_vcpu_passes_fault_in_their_order() {
        let in_order = |pass: Pass, pages: &mut dyn Iterator<Item = u64>| {
            let counters = smp::VcpuCounters::new();
            counters.begin_pass(smp::page_step(pass, 1));
            for page in pages {
                counters.fault(Some(page), None);
            }
            counters.snapshot().in_order
        };
        let scattered = |pass| in_order(pass, &mut (0..PAGES).map(|j| j * SCATTER_STRIDE % PAGES));
        let ordered = |pass| in_order(pass, &mut (0..PAGES));
        assert_eq!(
            check_page_order(Pass::Scattered, scattered(Pass::Scattered)),
            Ok(())
        );
        assert_eq!(
            check_page_order(Pass::FirstTouch, ordered(Pass::FirstTouch)),
            Ok(())
        );
        assert_eq!(
            check_page_order(Pass::Scattered, ordered(Pass::Scattered)),
            Err(CountMismatch {
                preparation: false,
                what: "data faults in the pass's order",
                expected: PAGES - 1,
                got: 0,
            })
        );
        assert!(check_page_order(Pass::AfterVmalls12, scattered(Pass::AfterVmalls12)).is_err());
        // Pass 7: a written page's three faults count once.
        let written = &mut (0..PAGES).flat_map(|i| {
            let times = if i % DIRTY_WRITE_PERIOD == 0 { 3 } else { 1 };
            core::iter::repeat_n(i, times)
        });
        assert_eq!(in_order(Pass::DirtyLog, written), PAGES - 1);
        // Pass 9 (a fault a block) is not checked.
        assert_eq!(check_page_order(Pass::AfterDirtyLogEnd, 3), Ok(()));
    }

    /// A write denied on a page another vCPU logged meanwhile runs again
    /// (the race two vCPUs' writes to one protected page make); a page
    /// this vCPU logs is told from it; a page outside the log, or a leaf
    /// the log does not explain, is not resolved.
    #[test]
    fn a_denied_write_on_a_page_logged_meanwhile_is_resolved_apart() {
        let mut log = DirtyLog::new();
        let outcome =
            |log: &mut DirtyLog, page, hv_page| dirty_write_outcome(log, 0, page, hv_page);
        assert_eq!(
            outcome(&mut log, Some(7), HvPage::WriteProtected),
            DirtyWrite::Logged
        );
        assert!(log.log(7));
        // The second vCPU, denied at the same time, finds it logged and
        // writable: resolved, not logged again.
        let second = dirty_write_outcome(&mut log, 1, Some(7), HvPage::Writable);
        assert_eq!(second, DirtyWrite::LoggedByAnother);
        assert!(second.resolved() && DirtyWrite::Logged.resolved());
        assert_eq!(log.logged(), 1);
        // Not the log's: outside the data, a leaf of another size, a
        // writable page never logged, a logged page protected again.
        for (page, hv_page) in [
            (None, HvPage::WriteProtected),
            (Some(PAGES), HvPage::WriteProtected),
            (Some(PAGES), HvPage::Writable),
            (Some(7), HvPage::Other),
            (Some(8), HvPage::Other),
            (Some(8), HvPage::Writable),
            (Some(7), HvPage::WriteProtected),
        ] {
            let got = outcome(&mut log, page, hv_page);
            assert_eq!(got, DirtyWrite::Unresolved, "{page:?} {hv_page:?}");
            assert!(!got.resolved());
        }
    }

    /// Review 65 R65-1: a vCPU's write denied again on the page the log
    /// last resolved for it, which the no-loop argument excludes (the
    /// page stays writable for the rest of the log), is not resolved
    /// again: hv stops rather than resume the vCPU into the same fault
    /// for ever. Its own `Logged` page, and a `LoggedByAnother` one, alike;
    /// another vCPU's first resolution of the page, and the vCPU's next
    /// page, are resolved as before; a new log forgets.
    #[test]
    fn a_vcpus_write_denied_again_on_the_page_resolved_for_it_is_not_resolved() {
        use DirtyWrite::{Logged, LoggedByAnother, Unresolved};
        let mut log = DirtyLog::new();
        let deny = |log: &mut DirtyLog, vcpu, page, hv_page| {
            dirty_write_outcome(log, vcpu, Some(page), hv_page)
        };
        assert_eq!(deny(&mut log, 0, 7, HvPage::WriteProtected), Logged);
        // hv makes it writable and logs it.
        assert!(log.log(7));
        assert_eq!(deny(&mut log, 1, 7, HvPage::Writable), LoggedByAnother);
        // vCPU 0's retry denied again on its own logged page, vCPU 1's on
        // the page it found logged: each a loop, neither resolved.
        assert_eq!(deny(&mut log, 0, 7, HvPage::Writable), Unresolved);
        assert_eq!(deny(&mut log, 1, 7, HvPage::Writable), Unresolved);
        // A third vCPU's first denial of page 7, and vCPU 0's next page.
        assert_eq!(deny(&mut log, 2, 7, HvPage::Writable), LoggedByAnother);
        assert_eq!(deny(&mut log, 0, 8, HvPage::WriteProtected), Logged);
        // No vCPU hv has.
        let past = crate::platform::MAX_CPUS;
        assert_eq!(deny(&mut log, past, 9, HvPage::WriteProtected), Unresolved);
        // A new log (the next dirty-log pass) resolves page 7 for vCPU 1.
        let mut next = DirtyLog::new();
        assert_eq!(
            dirty_write_outcome(&mut next, 1, Some(7), HvPage::WriteProtected),
            Logged
        );
    }
    #[cfg(not(loom))]
    use core::sync::atomic::AtomicU64;

    #[test]
    fn passes_round_trip_and_end_at_the_last() {
        for n in 1..=Pass::LAST {
            assert_eq!(Pass::from_number(n).map(Pass::number), Some(n));
        }
        assert_eq!(Pass::from_number(0), None);
        assert_eq!(Pass::from_number(Pass::LAST + 1), None);
        assert_eq!(Pass::from_number(u64::MAX), None);
    }

    #[test]
    fn every_window_faults_once_a_page_and_walks_each_fault() {
        for n in 1..Pass::AfterL0Unmap.number() {
            let pass = Pass::from_number(n).unwrap();
            assert!(!pass.l0_unmap_first() && !pass.dirty_log_first());
            let (_, w) = pass.expected(PAGES);
            assert_eq!(w.faults, PAGES);
            assert_eq!(w.misses, PAGES);
            assert_eq!(w.walks + w.partial_walks, PAGES, "{pass:?}");
            assert_eq!(w.hits, 0);
            assert_eq!(w.invalidations, 0);
        }
        // Only the last-level TLBIs keep the data region's paths.
        assert_eq!(Pass::AfterIpas2LastLevel.expected(PAGES).1.walks, 0);
        assert_eq!(Pass::AfterIpas2.expected(PAGES).1.walks, 1);
        assert_eq!(Pass::AfterIpas2.expected(PAGES).0.invalidations, PAGES);
        assert_eq!(Pass::AfterVmalls12.expected(PAGES).0.faults, 1);
    }

    #[test]
    fn after_the_l0_unmap_every_fault_hits() {
        let pass = Pass::from_number(6).unwrap();
        assert_eq!(pass, Pass::AfterL0Unmap);
        assert!(pass.l0_unmap_first() && !pass.dirty_log_first());
        let (prep, window) = pass.expected(PAGES);
        assert_eq!(
            window,
            Counts {
                faults: PAGES,
                hits: PAGES,
                ..Counts::ZERO
            }
        );
        assert_eq!(
            prep,
            Counts {
                invalidations: 1,
                ..Counts::ZERO
            }
        );
        assert_eq!(check(pass, PAGES, &prep, &window), Ok(()));
        // An L0 unmap that dropped the cached walks too: partial walks
        // (the paths kept) instead of hits.
        let dropped_walks = Counts {
            hits: 0,
            misses: PAGES,
            partial_walks: PAGES,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &dropped_walks).map_err(|m| (m.preparation, m.what)),
            Err((false, "hits"))
        );
        // One that removed nothing: no fault at all.
        assert_eq!(
            check(pass, PAGES, &prep, &Counts::ZERO),
            Err(CountMismatch {
                preparation: false,
                what: "L2 faults",
                expected: PAGES,
                got: 0
            })
        );
        // One hv never sent: no invalidation before the pass.
        assert_eq!(
            check(pass, PAGES, &Counts::ZERO, &window).map_err(|m| (m.preparation, m.what)),
            Err((true, "invalidations"))
        );
    }

    #[test]
    fn the_dirty_log_pass_is_seventh_and_each_write_faults_twice() {
        let pass = Pass::from_number(7).unwrap();
        assert_eq!(pass, Pass::DirtyLog);
        assert!(pass.dirty_log_first() && !pass.l0_unmap_first());
        let (prep, window) = pass.expected(PAGES);
        assert_eq!(
            prep,
            Counts {
                invalidations: 1,
                ..Counts::ZERO
            }
        );
        // 2048 reads and 256 writes, each write denied once.
        assert_eq!(window.faults, 2560);
        assert_eq!(window.hits, 2560);
        assert_eq!(window.misses + window.walks + window.partial_walks, 0);
        // A write hv resolved without the service seeing it again (no
        // second fault) fails the count.
        let once = Counts {
            faults: 2304,
            hits: 2304,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &once).map_err(|m| (m.preparation, m.what)),
            Err((false, "L2 faults"))
        );
    }

    #[test]
    fn in_the_block_pass_one_walk_serves_each_block() {
        let pass = Pass::from_number(8).unwrap();
        assert_eq!(pass, Pass::Blocks);
        assert!(pass.l1_blocks() && !pass.l0_unmap_first() && !pass.dirty_log_first());
        assert!(!pass.dirty_log_end_first());
        assert!((1..8).all(|n| !Pass::from_number(n).unwrap().l1_blocks()));
        assert_eq!(pass.data_shadow_leaves(PAGES), PAGES);
        let (prep, window) = pass.expected(PAGES);
        // L1's break: one whole-VMID TLBI (one invalidation), after which
        // L2's code page faults again (a full walk), as before pass 2.
        assert_eq!(prep, Pass::AfterVmalls12.expected(PAGES).0);
        // Four blocks: four walks (the first from the start level), the
        // other 2044 pages hits on their block's entry.
        assert_eq!(
            window,
            Counts {
                faults: 2048,
                hits: 2044,
                misses: 4,
                walks: 1,
                partial_walks: 3,
                ..Counts::ZERO
            }
        );
        assert_eq!(check(pass, PAGES, &prep, &window), Ok(()));
        // A cache that keeps a walk at 4 KiB (the block's size lost):
        // every page walks, below the level-1 path.
        let per_page = Counts {
            hits: 0,
            misses: PAGES,
            partial_walks: PAGES - 1,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &per_page).map_err(|m| (m.preparation, m.what)),
            Err((false, "hits"))
        );
        // A composition that ignores hv's 4 KiB pages and installs L1's
        // 2 MiB block: one fault a block, each a miss.
        let shadow_blocks = Counts {
            faults: 4,
            hits: 0,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &shadow_blocks),
            Err(CountMismatch {
                preparation: false,
                what: "L2 faults",
                expected: 2048,
                got: 4
            })
        );
        // Walks that keep no path: each block's from the start level.
        let no_path = Counts {
            walks: 4,
            partial_walks: 0,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &no_path).map_err(|m| (m.preparation, m.what)),
            Err((false, "full walks"))
        );
    }

    #[test]
    fn after_the_dirty_log_ends_each_block_faults_once_and_hits() {
        let pass = Pass::from_number(Pass::LAST).unwrap();
        assert_eq!(pass, Pass::AfterDirtyLogEnd);
        assert!(pass.l1_blocks() && pass.dirty_log_end_first());
        assert!(!pass.l0_unmap_first() && !pass.dirty_log_first());
        assert!((1..Pass::LAST).all(|n| !Pass::from_number(n).unwrap().dirty_log_end_first()));
        assert_eq!(pass.data_shadow_leaves(PAGES), 4);
        let (prep, window) = pass.expected(PAGES);
        // hv's L0 unmap alone: L1 changed nothing, L2's code page kept its
        // shadow leaf.
        assert_eq!(prep, Pass::DirtyLog.expected(PAGES).0);
        assert_eq!(
            prep,
            Counts {
                invalidations: 1,
                ..Counts::ZERO
            }
        );
        // Four 2 MiB shadow blocks: one fault each, on the block's entry
        // the block pass cached.
        assert_eq!(
            window,
            Counts {
                faults: 4,
                hits: 4,
                ..Counts::ZERO
            }
        );
        assert_eq!(check(pass, PAGES, &prep, &window), Ok(()));
        // hv's pages left 4 KiB (its log not ended, or its unmap skipped
        // with the pages' shadow leaves then kept, or a composition that
        // took 4 KiB): every page faults, as in the block pass but hits.
        let pages_kept = Counts {
            faults: PAGES,
            hits: PAGES,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &pages_kept),
            Err(CountMismatch {
                preparation: false,
                what: "L2 faults",
                expected: 4,
                got: PAGES
            })
        );
        // No fault at all: the old 4 KiB shadow leaves survived (hv's
        // `l0_unmap` skipped): its invalidation is missing first.
        let no_unmap = Counts {
            invalidations: 0,
            ..prep
        };
        assert_eq!(
            check(pass, PAGES, &no_unmap, &Counts::ZERO).map_err(|m| (m.preparation, m.what)),
            Err((true, "invalidations"))
        );
        // An unmap that dropped the cached walks too: each block walks
        // (from the level-1 path kept).
        let walked = Counts {
            hits: 0,
            misses: 4,
            partial_walks: 4,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &walked).map_err(|m| (m.preparation, m.what)),
            Err((false, "hits"))
        );
        // Blocks restored read-only: each block's first write would fault
        // again; L2 only reads, so that shows as L1's failure, not here.
    }

    #[test]
    fn the_block_rotation_moves_each_page_to_the_next_block() {
        let blocks = PAGES / BLOCK_PAGES;
        assert_eq!(blocks, 4);
        for l2_page in 0..PAGES {
            let l1_page = (l2_page + BLOCK_ROTATION) % PAGES;
            // The same page of the next block (the last to the first).
            assert_eq!(l1_page % BLOCK_PAGES, l2_page % BLOCK_PAGES);
            assert_eq!(l1_page / BLOCK_PAGES, (l2_page / BLOCK_PAGES + 1) % blocks);
            // Not the page pass 7 mapped it to, nor its own: a stale
            // translation from pass 7 (or an unrotated block) shows L2
            // another page's pattern.
            assert_ne!(l1_page, (l2_page + LAST_ROTATION) % PAGES);
            assert_ne!(l1_page, l2_page);
        }
    }

    #[test]
    fn l1_writes_128_pages_none_of_l2s() {
        let l1 = (0..PAGES)
            .filter(|&p| written_by_l1_in_dirty_log_pass(p))
            .count() as u64;
        assert_eq!(l1, 128);
        assert!(written_by_l1_in_dirty_log_pass(2) && written_by_l1_in_dirty_log_pass(18));
        assert!(!written_by_l1_in_dirty_log_pass(3) && !written_by_l1_in_dirty_log_pass(PAGES + 2));
        assert!((0..PAGES)
            .all(|p| !(written_by_l1_in_dirty_log_pass(p) && written_by_l2_in_dirty_log_pass(p))));
        let dirty = (0..PAGES)
            .filter(|&p| dirty_after_dirty_log_pass(p))
            .count();
        assert_eq!(dirty, 384);
    }

    #[test]
    fn only_a_write_denied_by_stage_2_permissions_is_the_dirty_logs() {
        // EC 0x24, IL, ISV, SAS 64-bit, WnR, DFSC permission level 3; L1's
        // store to 0x40402010 with its stage 1 off (FAR_EL2 is the IPA).
        const STORE: u64 = 0x24 << 26 | 1 << 25 | 1 << 24 | 3 << 22 | 1 << 6 | 0b00_1111;
        let far = 0x4040_2010;
        let at = Some(L1WriteAddress::Ipa(far));
        assert_eq!(l1_write_protection_fault(STORE, far, false), at);
        // Level 2 too.
        assert_eq!(
            l1_write_protection_fault(STORE & !0b11 | 0b10, far, false),
            at
        );
        // A read, a translation fault, a fault on a walk.
        for esr in [STORE & !(1 << 6), STORE & !0x3f | 0b00_0111, STORE | 1 << 7] {
            assert_eq!(l1_write_protection_fault(esr, far, false), None, "{esr:#x}");
        }
    }

    /// Review 60 R60-4: L1's DC IVAC to a page hv write-protected is a
    /// stage-2 permission fault (DC IVAC requires write permission) with
    /// CM = 1 and WnR = 1, and no instruction syndrome (ISV = 0): a write
    /// to the page for the dirty log, its page from FAR_EL2 as a store's
    /// (AT S1E1R with L1's stage 1 on), never an external abort for L1.
    #[test]
    fn an_l1_dc_ivac_denied_by_write_protection_is_the_dirty_logs() {
        // EC 0x24, IL, CM, WnR, DFSC permission level 3.
        const DC_IVAC: u64 = 0x24 << 26 | 1 << 25 | 1 << 8 | 1 << 6 | 0b00_1111;
        let far = 0x4040_2fc0;
        assert_eq!(
            l1_write_protection_fault(DC_IVAC, far, false),
            Some(L1WriteAddress::Ipa(far))
        );
        let va = 0xffff_0000_0012_3fc0;
        assert_eq!(
            l1_write_protection_fault(DC_IVAC, va, true),
            Some(L1WriteAddress::Stage1Va(va))
        );
        // On L1's own stage-1 walk, or a translation fault: not the log's.
        assert_eq!(
            l1_write_protection_fault(DC_IVAC | 1 << 7, far, false),
            None
        );
        assert_eq!(
            l1_write_protection_fault(DC_IVAC & !0x3f | 0b00_0111, far, false),
            None
        );
    }

    /// Review 59 R59-1: HPFAR_EL2 is UNKNOWN for a stage-2 permission
    /// fault not on a stage-1 walk, so the page comes from FAR_EL2: the
    /// IPA itself with L1's stage 1 off, else a VA for hv to translate
    /// with L1's stage 1. Taking HPFAR_EL2's page (right on QEMU, which
    /// fills it) named some other page, or none, on hardware that does not.
    #[test]
    fn an_l1_write_fault_takes_its_page_from_far_not_hpfar() {
        const STORE: u64 = 0x24 << 26 | 1 << 25 | 1 << 24 | 3 << 22 | 1 << 6 | 0b00_1111;
        let far = 0x4040_2010;
        assert_eq!(
            l1_write_protection_fault(STORE, far, false),
            Some(L1WriteAddress::Ipa(far))
        );
        let va = 0xffff_0000_0012_3010;
        assert_eq!(
            l1_write_protection_fault(STORE, va, true),
            Some(L1WriteAddress::Stage1Va(va))
        );
    }

    #[test]
    fn l2_writes_every_8th_of_its_pages_rotated_onto_l1s() {
        // L1 page 4 is L2 page 0 (written), L1 page 0 is L2 page 2044
        // (not), L1 page 2044 is L2 page 2040 (written).
        assert!(written_by_l2_in_dirty_log_pass(4));
        assert!(!written_by_l2_in_dirty_log_pass(0));
        assert!(written_by_l2_in_dirty_log_pass(12));
        assert!(!written_by_l2_in_dirty_log_pass(8));
        assert!(written_by_l2_in_dirty_log_pass(2044));
        let written = (0..PAGES)
            .filter(|&p| written_by_l2_in_dirty_log_pass(p))
            .count() as u64;
        assert_eq!(written, PAGES / DIRTY_WRITE_PERIOD);
    }

    #[test]
    fn the_dirty_log_check_finds_missing_and_extra_pages() {
        let mut log = DirtyLog::new();
        assert_eq!(log.check(|_| false), Ok(0));
        for page in (0..PAGES).filter(|&p| written_by_l2_in_dirty_log_pass(p)) {
            assert!(log.log(page));
        }
        assert_eq!(log.check(written_by_l2_in_dirty_log_pass), Ok(256));
        // Without L1's own pages it is not the dirty-log pass's set.
        assert_eq!(
            log.check(dirty_after_dirty_log_pass),
            Err(DirtyMismatch::Missing(2))
        );
        // Logging a page twice, or one outside the data, logs nothing.
        assert!(!log.log(4));
        assert!(!log.log(PAGES));
        assert!(!log.log(u64::MAX));
        assert!(!log.is_dirty(PAGES));
        assert_eq!(log.logged(), 256);
        // The unrotated set (L2 page i as L1 page i) is not it.
        assert_eq!(
            log.check(|p| p % DIRTY_WRITE_PERIOD == 0),
            Err(DirtyMismatch::Missing(0))
        );
        let mut extra = log;
        assert!(extra.log(5));
        assert_eq!(
            extra.check(written_by_l2_in_dirty_log_pass),
            Err(DirtyMismatch::Extra(5))
        );
        let mut missing = DirtyLog::new();
        assert!(missing.log(4));
        assert_eq!(
            missing.check(written_by_l2_in_dirty_log_pass),
            Err(DirtyMismatch::Missing(12))
        );
    }

    /// Two places of two pages each in a four-page arena.
    #[cfg(not(loom))]
    const HOME: u64 = 0x4000_0000;
    #[cfg(not(loom))]
    const SPARE: u64 = HOME + 2 * 4096;
    #[cfg(not(loom))]
    const TWO_PAGES: u64 = 2 * 4096;

    /// The first two words of each of the two pages at `place`.
    #[cfg(not(loom))]
    fn words_at(arena: &Arena<'_>, place: u64) -> [u64; 4] {
        [0, 8, 4096, 4096 + 8].map(|offset| arena.read(place + offset).unwrap())
    }

    #[cfg(not(loom))]
    #[test]
    fn every_move_takes_the_live_pages_to_the_other_place() {
        let words: Vec<AtomicU64> = (0..4 * 512).map(|_| AtomicU64::new(0)).collect();
        let arena = Arena::new(&words, HOME).unwrap();
        // L1's patterns at home: page j's first word MAGIC | j.
        const MAGIC: u64 = 0xfa57_0000_0000_0000;
        arena.write(HOME, MAGIC).unwrap();
        arena.write(HOME + 4096, MAGIC | 1).unwrap();
        let mut places = DataPlaces::new(HOME, SPARE);
        assert_eq!(places.current(), HOME);
        let first = places.make_move(&arena, TWO_PAGES).unwrap();
        assert_eq!(words_at(&arena, places.current()), [MAGIC, 0, MAGIC | 1, 0]);
        assert_eq!(
            first,
            DataMove {
                from: HOME,
                to: SPARE
            }
        );
        assert_eq!(places.current(), SPARE);
        // The old pages' patterns inverted: a stale translation reads
        // neither.
        assert_eq!(words_at(&arena, HOME), [!MAGIC, 0, !(MAGIC | 1), 0]);
        // L2 writes the live pages (the dirty-log pass's second words),
        // then L1 begins the L0-unmap pass again: the second move takes
        // what was written with the pages, and never copies the stale
        // place over the live one (a move from home to spare again would
        // leave the inverted patterns, and lose the writes).
        arena.write(SPARE + 8, 0x11).unwrap();
        arena.write(SPARE + 4096 + 8, 0x22).unwrap();
        let second = places.make_move(&arena, TWO_PAGES).unwrap();
        assert_eq!(
            words_at(&arena, places.current()),
            [MAGIC, 0x11, MAGIC | 1, 0x22]
        );
        assert_eq!(
            second,
            DataMove {
                from: SPARE,
                to: HOME
            }
        );
        assert_eq!(places.current(), HOME);
        assert_eq!(words_at(&arena, SPARE), [!MAGIC, 0x11, !(MAGIC | 1), 0x22]);
        // And a third: out again, the same values.
        assert_eq!(places.make_move(&arena, TWO_PAGES), Some(first));
        assert_eq!(words_at(&arena, SPARE), [MAGIC, 0x11, MAGIC | 1, 0x22]);
    }

    #[cfg(not(loom))]
    #[test]
    fn a_move_outside_the_arena_changes_nothing() {
        let words: Vec<AtomicU64> = (0..4 * 512).map(|_| AtomicU64::new(0)).collect();
        let arena = Arena::new(&words, HOME).unwrap();
        arena.write(HOME, 7).unwrap();
        // The spare place's second page is past the arena's end.
        let mut places = DataPlaces::new(HOME, SPARE + 4096);
        assert_eq!(places.make_move(&arena, TWO_PAGES), None);
        assert_eq!(places.current(), HOME);
        assert_eq!(words_at(&arena, HOME), [7, 0, 0, 0]);
        assert_eq!(arena.read(SPARE + 4096), Some(0));
        // Pages at no place in it at all.
        let mut nowhere = DataPlaces::new(0, u64::MAX - 4095);
        assert_eq!(nowhere.make_move(&arena, TWO_PAGES), None);
        assert_eq!(nowhere.current(), 0);
    }

    #[test]
    fn check_names_the_first_wrong_count() {
        let pass = Pass::AfterVmalls12;
        let (prep, window) = pass.expected(PAGES);
        assert_eq!(check(pass, PAGES, &prep, &window), Ok(()));
        // A service that kept the data region's path over VMALLS12E1IS.
        let stale_path = Counts {
            walks: 0,
            partial_walks: PAGES,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &stale_path),
            Err(CountMismatch {
                preparation: false,
                what: "full walks",
                expected: 1,
                got: 0
            })
        );
        // A TLBI hv did not send to the service.
        let skipped = Counts {
            invalidations: 0,
            ..prep
        };
        assert_eq!(
            check(pass, PAGES, &skipped, &window).map_err(|m| (m.preparation, m.what)),
            Err((true, "invalidations"))
        );
        // An access that faulted twice.
        let twice = Counts {
            faults: PAGES + 1,
            ..window
        };
        assert!(check(pass, PAGES, &prep, &twice).is_err());
        // A service that evicted under memory pressure: named, in the
        // window and in the preparation.
        let evicted = Counts {
            evictions: 1,
            ..window
        };
        assert_eq!(
            check(pass, PAGES, &prep, &evicted),
            Err(CountMismatch {
                preparation: false,
                what: "evictions",
                expected: 0,
                got: 1
            })
        );
        let evicted = Counts {
            evictions: 3,
            ..prep
        };
        assert_eq!(
            check(pass, PAGES, &evicted, &window).map_err(|m| (m.preparation, m.what)),
            Err((true, "evictions"))
        );
        // The entries an invalidation removed are reported, not checked.
        let removed = Counts {
            invalidated_entries: 4105,
            ..prep
        };
        assert_eq!(check(pass, PAGES, &removed, &window), Ok(()));
    }

    #[test]
    fn since_subtracts_each_count() {
        let a = Counts {
            faults: 5,
            walks: 7,
            invalidated_entries: 9,
            ..Counts::ZERO
        };
        let b = Counts {
            faults: 8,
            walks: 7,
            invalidated_entries: 20,
            ..Counts::ZERO
        };
        let d = b.since(&a);
        assert_eq!((d.faults, d.walks, d.invalidated_entries), (3, 0, 11));
        // A counter that went backwards (never) wraps instead of panicking.
        assert_eq!(a.since(&b).faults, u64::MAX - 2);
    }

    #[test]
    fn rates_never_divide_by_zero_or_overflow() {
        // QEMU virt's 62.5 MHz counter.
        assert_eq!(nanoseconds(62_500_000, 62_500_000), Some(1_000_000_000));
        assert_eq!(nanoseconds(1, 62_500_000), Some(16));
        assert_eq!(nanoseconds(5, 0), None);
        assert_eq!(nanoseconds(u64::MAX, 1), None);
        assert_eq!(per_second(2048, 62_500_000, 62_500_000), Some(2048));
        assert_eq!(per_second(2048, 0, 62_500_000), None);
        assert_eq!(per_second(u64::MAX, 1, u64::MAX), None);
        assert_eq!(per_second(0, 7, 62_500_000), Some(0));
        // CNTFRQ_EL0 unset (its reset value is UNKNOWN; firmware writes
        // it): no rate, as no time, never "0 faults/s".
        assert_eq!(per_second(2048, 7, 0), None);
        assert_eq!(per_second(0, 7, 0), None);
    }
}
