//! `hv.nested=fault-rate-tight`: the fault-rate passes on a service
//! budget smaller than their working set (shadow-mmu/README.md, Memory:
//! "under pressure entries are evicted (at worst a re-walk), never an
//! allocation failure reaching a fault handler"). L1, L2 and hv's changes
//! are the `fault-rate` case's ([`super`]); only the budget differs, and
//! with it what hv's END can check.
//!
//! Under pressure the service evicts in two ways. The walk-result cache
//! has fewer leaf places than the pass has pages: an insert into a full
//! pair of buckets and the stash evicts the oldest leaf of them, and its
//! shadow leaf with it. The shadow-leaf cap is below the pages too: an
//! install at the cap clears the shadow of the context holding the most
//! leaves (here the only one), leaves and records, and then installs.
//! Which leaves the cache evicts follows the keyed hash, whose key hv
//! draws at boot, so how many leaves go, which data faults hit in the
//! passes after an L0 change, and how often L2's code page (whose shadow
//! leaf either eviction may take) faults again differ from run to run.
//! What follows from the design alone is checked exactly; the rest is
//! bounded by what the budget and the pass imply ([`check`]).
//!
//! Exact, in every pass:
//! - the preparation: every count [`Pass::expected`] gives the normal
//!   case, evictions 0 included. The preparation installs at most L2's
//!   code page (after a whole-VMID TLBI, into an empty cache and shadow),
//!   and its invalidations are L1's TLBIs and hv's L0 change, one for
//!   one. The code page's leaf stands at every END: L2 fetched its last
//!   instructions from it after the window's last install.
//! - the faults on L1's data pages ([`Faults::data`], hv's own count of
//!   L2 faults by IPA): the normal case's window faults, every page once
//!   (and each write twice more in the dirty-log pass). An eviction never
//!   takes the leaf a fault just installed (it is the newest of every
//!   bucket, and nothing else installs before L2's access runs again), so
//!   a page faults again only if its fault was not answered: a retry
//!   (throttled, raced) or a lost install shows here.
//! - no translate answered `Retry` for the service's own reasons
//!   ([`Faults::retries`], hv's count). `Retry(L0Changing)` (hv's own
//!   break-before-make met by another L1 vCPU's fault) is counted apart
//!   ([`Faults::l0_changing`]) and reported, not bounded.
//!   The design allows one (`Retry(Throttled)` when an install finds no
//!   frame or reverse-map record even after clearing its shadow); this
//!   budget leaves no room for it with one context: the shadow uses at
//!   most 9 of the 53 frames (tables a clear detaches come back 4 a map),
//!   and the reverse map's cap + cap/16 + 64 records outlast a clear's
//!   dead ones, since every insert sweeps 4 slots for them and completes
//!   2 pending unlinks. An install at the cap clears and installs in the
//!   same request (its second attempt).
//! - hits + misses = faults (each fault is one translate), full +
//!   partial walks = misses (each miss walks once), and no TLBI or
//!   invalidation inside the window.
//! - occupancy after every L2 fault (hv reads it when the service has
//!   answered; only a fault adds entries) and at END
//!   ([`Occupancy::over`]): cached leaves and paths, shadow leaves and
//!   frames at most the budget's, and the cache and reverse-map indexes
//!   never grown past what was preallocated.
//!
//! Bounds (which evictions happen is the hash's; that they happen, and
//! at least how many, is the budget's):
//! - evictions >= pages - shadow-leaf cap: every pass installs a new
//!   shadow leaf for each of its pages (its preparation removed them all;
//!   after hv ended its dirty log, one 2 MiB leaf for each block instead:
//!   blocks - cap, so none),
//!   the shadow ends the window holding at most the cap, and each
//!   shadow leaf removed inside a window is an eviction's (one per evicted
//!   cache leaf, one per leaf a cap clear removes);
//! - evictions >= misses - cache leaf places: each miss inserts a leaf,
//!   the cache ends holding at most its places, and inside a window only
//!   an eviction removes a cached leaf;
//! - faults on L2's code page (faults - data faults - `L0Changing`
//!   retries, after checking faults >= the two: each is one of the
//!   service's faults) <= evictions: its shadow leaf stands at BEGIN and
//!   only an eviction or a cap clear removes it inside a window;
//! - misses >= data faults where the preparation removed the data pages'
//!   cached walks and L1 maps pages (passes 1-5); >= the blocks where it
//!   removed them and L1 maps 2 MiB blocks (pass 8: each block's first
//!   fault walks, its one cached leaf may serve the block's other pages);
//!   else (the L0 unmap and the dirty log's start and end keep them)
//!   misses >= pages - cache leaf places (blocks - places after the log's
//!   end, whose faults are one a block): only leaves cached at BEGIN can
//!   serve a page's first fault;
//! - hits >= data faults - pages: the dirty-log pass's two store faults
//!   of a written page both find the leaf its read just cached;
//! - full walks >= the normal case's: the first data fault after a TLBI
//!   that removed the data region's paths walks from the start level.

use super::{Counts, Pass, BLOCK_PAGES, DATA_IPA, PAGES};
use ipc::RetryReason;

/// Whether L2 IPA `l2_ipa` is on one of the data pages (the others L2
/// faults on: its code page).
pub const fn on_data_page(l2_ipa: u64) -> bool {
    l2_ipa >= DATA_IPA && l2_ipa - DATA_IPA < PAGES * 4096
}

/// What the service's budget holds (from `shadow_mmu::budget::Budget`):
/// the bounds of [`Occupancy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Leaf places of the context's walk-result cache: its buckets' and
    /// its stash's (`leaves_per_context + cache::LEAF_STASH`).
    pub cache_leaves: u64,
    /// Path places of its cache (`paths_per_context`).
    pub cache_paths: u64,
    /// The shadow-leaf cap (`shadow_leaves`).
    pub shadow_leaves: u64,
    /// Shadow table frames (`frames`).
    pub frames: u64,
}

impl Limits {
    /// Whether `pages` pages and L2's code page are more than both the
    /// cache's leaf places and the shadow-leaf cap, so that every pass
    /// evicts in both ways: what `fault-rate-tight` needs its budget to be.
    pub fn below_working_set(&self, pages: u64) -> bool {
        let leaves = pages + 1;
        self.cache_leaves < leaves && self.shadow_leaves < leaves
    }
}

/// What the service holds at one moment (its occupancy calls).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Live cached leaves (`Service::cache_entries`).
    pub cache_leaves: u64,
    /// Live cached paths.
    pub cache_paths: u64,
    /// Shadow leaves (`Service::shadow_leaves`).
    pub shadow_leaves: u64,
    /// Shadow table frames in use (`Service::shadow_frames`).
    pub frames: u64,
    /// Times the reverse map or a cache index grew past what was
    /// preallocated (`Service::index_allocations`): never.
    pub index_growths: u64,
}

impl Occupancy {
    /// The larger of each count of `self` and `other`.
    pub fn max(&self, other: &Occupancy) -> Occupancy {
        Occupancy {
            cache_leaves: self.cache_leaves.max(other.cache_leaves),
            cache_paths: self.cache_paths.max(other.cache_paths),
            shadow_leaves: self.shadow_leaves.max(other.shadow_leaves),
            frames: self.frames.max(other.frames),
            index_growths: self.index_growths.max(other.index_growths),
        }
    }

    /// The first count over its limit: (what, limit, count).
    pub fn over(&self, limits: &Limits) -> Option<(&'static str, u64, u64)> {
        [
            ("cached leaves", limits.cache_leaves, self.cache_leaves),
            ("cached paths", limits.cache_paths, self.cache_paths),
            ("shadow leaves", limits.shadow_leaves, self.shadow_leaves),
            ("shadow frames", limits.frames, self.frames),
            ("index growths", 0, self.index_growths),
        ]
        .into_iter()
        .find(|&(_, limit, got)| got > limit)
    }
}

/// hv's own counts of the fault-rate L2's faults, as running totals and
/// as differences of two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// L2 faults on L1's data pages (L2 IPA from `DATA_IPA`, `PAGES`
    /// pages) not answered `Retry(L0Changing)`; the others are on L2's
    /// code page.
    pub data: u64,
    /// Translates answered `Retry` for the service's own reasons
    /// (throttled, raced, already mapped): L2 faults again.
    pub retries: u64,
    /// Translates answered `Retry(L0Changing)`: the fault met hv's own
    /// break-before-make of L1's RAM (L0's transient fault, not the
    /// service's), and L2 faults again once the change is made; that
    /// fault is the one [`Faults::data`] counts. Only another L1 vCPU can
    /// fault inside hv's change, so with one it stays 0; it is reported,
    /// not bounded.
    pub l0_changing: u64,
    /// L1's or L2's own accesses hv resumed because they met its
    /// break-before-make of L1's RAM (a translation fault on hv's map,
    /// `L0Stage2::mid_change_abort`; L1's AT, or hv's re-walk of L1's
    /// stage-1 walk abort, reading a table page mid-change): the guest
    /// runs the instruction again. Reported, not bounded (the watchdog
    /// bounds a change never made), as [`Faults::l0_changing`].
    pub hv_resumed: u64,
    /// The service's own count of the `Retry(L0Changing)` answers of the
    /// first kind: the leaf's output (the page of L1's RAM the access
    /// reaches) mid hv's change (shadow-mmu's `Stats::l0_changing_output`),
    /// as of the last [`Faults::note_service`].
    pub service_l0_changing_output: u64,
    /// The second kind: a page of L1's stage-2 table the service's walk
    /// read mid hv's change (`Stats::l0_changing_table`). The two kinds
    /// add up to [`Faults::l0_changing`] (checked).
    pub service_l0_changing_table: u64,
}

impl Faults {
    /// Takes the service's two `L0Changing` counts now (its `Stats`), for
    /// the snapshot hv takes next.
    pub fn note_service(&mut self, l0_changing_output: u64, l0_changing_table: u64) {
        self.service_l0_changing_output = l0_changing_output;
        self.service_l0_changing_table = l0_changing_table;
    }

    /// Counts one translate of an L2 fault, on a data page or not, whose
    /// answer was `Retry(retry)` (None: any other answer).
    pub fn count(&mut self, on_data_page: bool, retry: Option<RetryReason>) {
        match retry {
            Some(RetryReason::L0Changing) => self.l0_changing += 1,
            Some(_) => self.retries += 1,
            None => {}
        }
        if on_data_page && retry != Some(RetryReason::L0Changing) {
            self.data += 1;
        }
    }

    /// What was counted from `earlier` to `self` (wrapping, as
    /// [`Counts::since`]).
    pub fn since(&self, earlier: &Faults) -> Faults {
        Faults {
            data: self.data.wrapping_sub(earlier.data),
            retries: self.retries.wrapping_sub(earlier.retries),
            l0_changing: self.l0_changing.wrapping_sub(earlier.l0_changing),
            hv_resumed: self.hv_resumed.wrapping_sub(earlier.hv_resumed),
            service_l0_changing_output: self
                .service_l0_changing_output
                .wrapping_sub(earlier.service_l0_changing_output),
            service_l0_changing_table: self
                .service_l0_changing_table
                .wrapping_sub(earlier.service_l0_changing_table),
        }
    }

    /// The service's `Retry(L0Changing)` answers of both kinds.
    pub fn service_l0_changing(&self) -> u64 {
        self.service_l0_changing_output
            .saturating_add(self.service_l0_changing_table)
    }
}

pub use super::Relation;

/// Why a pass under pressure is not what it implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PressureMismatch {
    /// In the preparation (true) or the timed window.
    pub preparation: bool,
    pub what: &'static str,
    pub relation: Relation,
    pub bound: u64,
    pub got: u64,
}

/// What the preparation of a pass left of the data pages' cached walks,
/// and so which of the window's first faults must miss. (A pass added to
/// [`Pass`] must say which.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CachedWalks {
    /// L1's TLBIs removed them and L1 maps pages: every data page's first
    /// fault misses.
    RemovedPerPage,
    /// L1's TLBI removed them and L1 maps 2 MiB blocks: each block's first
    /// fault misses and caches the block's one leaf, which the block's
    /// other pages may hit (or miss again, after an eviction).
    RemovedPerBlock,
    /// hv's L0 change removed only the shadow leaves: leaves still cached
    /// at BEGIN may serve first faults.
    Kept,
    /// The same with L1's 2 MiB blocks over hv's (the pass after hv ended
    /// its dirty log): a block's one cached leaf may serve its one fault,
    /// so only blocks beyond the cache's places must miss.
    KeptPerBlock,
}

impl CachedWalks {
    const fn after(pass: Pass) -> CachedWalks {
        match pass {
            Pass::FirstTouch
            | Pass::AfterVmalls12
            | Pass::AfterIpas2
            | Pass::AfterIpas2LastLevel
            | Pass::Scattered => CachedWalks::RemovedPerPage,
            Pass::Blocks => CachedWalks::RemovedPerBlock,
            Pass::AfterL0Unmap | Pass::DirtyLog => CachedWalks::Kept,
            Pass::AfterDirtyLogEnd => CachedWalks::KeptPerBlock,
        }
    }

    /// The least misses a window with `data_faults` faults on `pages`
    /// pages has under `limits`.
    fn misses_at_least(self, data_faults: u64, pages: u64, limits: &Limits) -> u64 {
        match self {
            CachedWalks::RemovedPerPage => data_faults,
            CachedWalks::RemovedPerBlock => pages.div_ceil(BLOCK_PAGES),
            CachedWalks::Kept => pages.saturating_sub(limits.cache_leaves),
            CachedWalks::KeptPerBlock => pages
                .div_ceil(BLOCK_PAGES)
                .saturating_sub(limits.cache_leaves),
        }
    }
}

/// Checks a pass run under pressure: `prep` and `window` as in
/// [`super::check`], `prep_faults` and `window_faults` hv's own counts of
/// the same spans, `limits` the budget's. The module documentation says
/// which counts are exact and why the others are bounds. Occupancy is
/// checked apart ([`Occupancy::over`]), after every fault and at END.
pub fn check(
    pass: Pass,
    pages: u64,
    limits: &Limits,
    prep: &Counts,
    prep_faults: &Faults,
    window: &Counts,
    window_faults: &Faults,
) -> Result<(), PressureMismatch> {
    use Relation::{AtLeast, AtMost, Exactly};
    let (want_prep, want_window) = pass.expected(pages);
    if let Some((what, bound, got)) = prep.mismatch(&want_prep) {
        return Err(PressureMismatch {
            preparation: true,
            what,
            relation: Exactly,
            bound,
            got,
        });
    }
    // A translate answered `Retry(L0Changing)` is neither a data fault
    // (the page faults again) nor one on the code page. Every one hv
    // counted is one of the service's L2 faults (the "L2 faults" rule
    // below, checked first), so the difference does not underflow where
    // it is used (review 60 R60-1: it did, and was read as 0).
    let counted = window_faults.data.saturating_add(window_faults.l0_changing);
    let code_faults = window.faults.saturating_sub(counted);
    let evictions_at_least =
        evictions_at_least(pass.data_shadow_leaves(pages), limits, window.misses);
    let misses_at_least =
        CachedWalks::after(pass).misses_at_least(window_faults.data, pages, limits);
    let rules = [
        (
            true,
            "L2 faults on data pages",
            Exactly,
            0,
            prep_faults.data,
        ),
        (true, "retried translates", Exactly, 0, prep_faults.retries),
        // Each `Retry(L0Changing)` hv got is one the service counted, of
        // one kind or the other.
        (
            true,
            "Retry(L0Changing) answers the service counted",
            Exactly,
            prep_faults.l0_changing,
            prep_faults.service_l0_changing(),
        ),
        (
            false,
            "Retry(L0Changing) answers the service counted",
            Exactly,
            window_faults.l0_changing,
            window_faults.service_l0_changing(),
        ),
        (
            false,
            "L2 faults on data pages",
            Exactly,
            want_window.faults,
            window_faults.data,
        ),
        (
            false,
            "retried translates",
            Exactly,
            0,
            window_faults.retries,
        ),
        (
            false,
            "stage-2 TLBIs from L1",
            Exactly,
            want_window.stage2_tlbis,
            window.stage2_tlbis,
        ),
        (
            false,
            "invalidations",
            Exactly,
            want_window.invalidations,
            window.invalidations,
        ),
        (
            false,
            "hits + misses",
            Exactly,
            window.faults,
            window.hits.saturating_add(window.misses),
        ),
        (
            false,
            "full + partial walks",
            Exactly,
            window.misses,
            window.walks.saturating_add(window.partial_walks),
        ),
        // Every data fault and L0Changing retry is an L2 fault: checked
        // before the code page's count below is taken from the difference.
        (false, "L2 faults", AtLeast, counted, window.faults),
        (
            false,
            "evictions",
            AtLeast,
            evictions_at_least,
            window.evictions,
        ),
        (
            false,
            "faults on L2's code page",
            AtMost,
            window.evictions,
            code_faults,
        ),
        (false, "misses", AtLeast, misses_at_least, window.misses),
        (
            false,
            "hits",
            AtLeast,
            window_faults.data.saturating_sub(pages),
            window.hits,
        ),
        (
            false,
            "full walks",
            AtLeast,
            want_window.walks,
            window.walks,
        ),
    ];
    match rules
        .into_iter()
        .find(|&(_, _, relation, bound, got)| !relation.holds(got, bound))
    {
        Some((preparation, what, relation, bound, got)) => Err(PressureMismatch {
            preparation,
            what,
            relation,
            bound,
            got,
        }),
        None => Ok(()),
    }
}

/// The least evictions [`check`] accepts in a window that installs
/// `shadow_leaves` shadow leaves for the data ([`Pass::data_shadow_leaves`])
/// with `misses` misses (the module documentation says why).
pub fn evictions_at_least(shadow_leaves: u64, limits: &Limits, misses: u64) -> u64 {
    shadow_leaves
        .saturating_sub(limits.shadow_leaves)
        .max(misses.saturating_sub(limits.cache_leaves))
}

#[cfg(test)]
mod tests {
    use super::super::DIRTY_WRITE_PERIOD;
    use super::*;

    #[test]
    fn data_pages_are_the_passes_pages_alone() {
        assert!(on_data_page(DATA_IPA));
        assert!(on_data_page(DATA_IPA + PAGES * 4096 - 1));
        assert!(!on_data_page(DATA_IPA + PAGES * 4096));
        assert!(!on_data_page(DATA_IPA - 1));
        // L2's code page.
        assert!(!on_data_page(0x80000));
        assert!(!on_data_page(u64::MAX));
    }

    /// hv's tight budget on QEMU's `max` CPU (48-bit PA, 512 KiB):
    /// 512 + 16 leaf places, 128 path places, 245 shadow leaves, 53
    /// frames.
    const TIGHT: Limits = Limits {
        cache_leaves: 528,
        cache_paths: 128,
        shadow_leaves: 245,
        frames: 53,
    };

    /// A window of `pass` as a run under `TIGHT` may count it: the data
    /// faults of the normal case, `code` more on L2's code page (each
    /// after an eviction), `hits` of the data faults served from the cache
    /// (the normal case's hits when none is given).
    fn window(pass: Pass, code: u64, hits: Option<u64>, evictions: u64) -> (Counts, Faults) {
        let (_, normal) = pass.expected(PAGES);
        let data = normal.faults;
        let hits = hits.unwrap_or(normal.hits) + code;
        let faults = data + code;
        let misses = faults - hits;
        let walks = normal.walks;
        (
            Counts {
                faults,
                hits,
                misses,
                walks,
                partial_walks: misses - walks,
                evictions,
                ..Counts::ZERO
            },
            Faults {
                data,
                ..Faults::default()
            },
        )
    }

    fn check_window(pass: Pass, w: &(Counts, Faults)) -> Result<(), PressureMismatch> {
        let (prep, _) = pass.expected(PAGES);
        check(pass, PAGES, &TIGHT, &prep, &Faults::default(), &w.0, &w.1)
    }

    fn failed(pass: Pass, w: &(Counts, Faults)) -> (bool, &'static str, Relation, u64) {
        let m = check_window(pass, w).unwrap_err();
        (m.preparation, m.what, m.relation, m.bound)
    }

    #[test]
    fn the_tight_budget_is_below_the_working_set_and_the_normal_one_is_not() {
        assert!(TIGHT.below_working_set(PAGES));
        // The normal case's (4608 KiB): 8192 + 16 places, 2293 leaves.
        let normal = Limits {
            cache_leaves: 8208,
            cache_paths: 1024,
            shadow_leaves: 2293,
            frames: 286,
        };
        assert!(!normal.below_working_set(PAGES));
        // Either part holding the pages is not tight.
        assert!(!Limits {
            shadow_leaves: 2049,
            ..TIGHT
        }
        .below_working_set(PAGES));
        assert!(!Limits {
            cache_leaves: 2049,
            ..TIGHT
        }
        .below_working_set(PAGES));
        assert!(Limits {
            cache_leaves: 2048,
            shadow_leaves: 2048,
            ..TIGHT
        }
        .below_working_set(PAGES));
    }

    #[test]
    fn passes_with_evictions_and_code_page_refaults_pass() {
        // Pass 1: every data fault misses; 9 cap clears and a few cache
        // evictions of the code page's leaf: 12 code faults, all hits.
        let w = window(Pass::FirstTouch, 12, None, 2_500);
        assert_eq!(check_window(Pass::FirstTouch, &w), Ok(()));
        // The pass after the L0 unmap: 400 of the data faults hit.
        let w = window(Pass::AfterL0Unmap, 10, Some(400), 2_000);
        assert_eq!(check_window(Pass::AfterL0Unmap, &w), Ok(()));
        // The dirty-log pass: every write's two store faults hit.
        let w = window(Pass::DirtyLog, 9, Some(512 + 300), 2_000);
        assert_eq!(check_window(Pass::DirtyLog, &w), Ok(()));
        // Every pass, with its normal preparation.
        for n in 1..=Pass::LAST {
            let pass = Pass::from_number(n).unwrap();
            let hits = (CachedWalks::after(pass) == CachedWalks::Kept).then_some(520);
            assert_eq!(check_window(pass, &window(pass, 3, hits, 1_900)), Ok(()));
        }
    }

    #[test]
    fn a_data_page_faulting_twice_or_a_retry_fails_exactly() {
        // A fault answered Retry (throttled at the cap): the page faults
        // again.
        let (mut c, mut f) = window(Pass::FirstTouch, 5, None, 2_000);
        f.data += 1;
        c.faults += 1;
        c.misses += 1;
        c.partial_walks += 1;
        assert_eq!(
            failed(Pass::FirstTouch, &(c, f)),
            (false, "L2 faults on data pages", Relation::Exactly, PAGES)
        );
        let (c, mut f) = window(Pass::FirstTouch, 5, None, 2_000);
        f.retries = 1;
        assert_eq!(
            failed(Pass::FirstTouch, &(c, f)),
            (false, "retried translates", Relation::Exactly, 0)
        );
        // A dirty-log write whose second store fault was lost.
        let (c, mut f) = window(Pass::DirtyLog, 5, Some(700), 2_000);
        f.data -= 1;
        assert_eq!(failed(Pass::DirtyLog, &(c, f)).1, "L2 faults on data pages");
    }

    #[test]
    fn l0_changing_retries_are_counted_apart_and_pass_the_exact_rules() {
        let mut f = Faults::default();
        f.count(true, None);
        f.count(false, None);
        f.count(true, Some(RetryReason::L0Changing));
        f.count(false, Some(RetryReason::L0Changing));
        assert_eq!(
            f,
            Faults {
                data: 1,
                retries: 0,
                l0_changing: 2,
                ..Faults::default()
            }
        );
        for other in [
            RetryReason::InvalidationRaced,
            RetryReason::Throttled,
            RetryReason::AlreadyMapped,
        ] {
            let mut f = Faults::default();
            f.count(true, Some(other));
            assert_eq!(
                f,
                Faults {
                    data: 1,
                    retries: 1,
                    ..Faults::default()
                },
                "{other:?}"
            );
        }
        // Two data faults and one code-page fault met hv's change (another
        // L1 vCPU's fault in its break-before-make) and faulted again:
        // the service counted three more faults (misses), hv three
        // L0Changing retries, and the window is still the normal one,
        // its code-page faults (as many as the evictions) included.
        for pass in [Pass::FirstTouch, Pass::AfterL0Unmap] {
            let (mut c, mut f) = window(pass, 2_000, Some(0), 2_000);
            c.faults += 3;
            c.misses += 3;
            c.partial_walks += 3;
            f.l0_changing = 3;
            // The service's count of them: two of L1's RAM, one of its
            // table.
            f.note_service(2, 1);
            // hv's own resumes mid its change are not L2 faults the
            // service saw: reported, never a miss.
            f.hv_resumed = 5;
            assert_eq!(check_window(pass, &(c, f)), Ok(()), "{pass:?}");
            // The same with one a retry of the service's own: exact 0.
            f.retries = 1;
            assert_eq!(
                failed(pass, &(c, f)),
                (false, "retried translates", Relation::Exactly, 0)
            );
        }
        // In the preparation too.
        let pass = Pass::FirstTouch;
        let (prep, _) = pass.expected(PAGES);
        let w = window(pass, 5, None, 2_000);
        let met = Faults {
            l0_changing: 1,
            service_l0_changing_table: 1,
            ..Faults::default()
        };
        assert_eq!(check(pass, PAGES, &TIGHT, &prep, &met, &w.0, &w.1), Ok(()));
        // A retry hv got that the service did not count (or counted twice)
        // fails, in either part of the pass.
        let uncounted = Faults {
            service_l0_changing_table: 0,
            ..met
        };
        assert_eq!(
            check(pass, PAGES, &TIGHT, &prep, &uncounted, &w.0, &w.1).map_err(|m| (
                m.preparation,
                m.what,
                m.bound,
                m.got
            )),
            Err((true, "Retry(L0Changing) answers the service counted", 1, 0))
        );
        let (c, mut f) = window(pass, 0, None, 2_000);
        f.l0_changing = 1;
        f.note_service(1, 1);
        assert_eq!(
            failed(pass, &(c, f)),
            (
                false,
                "Retry(L0Changing) answers the service counted",
                Relation::Exactly,
                1
            )
        );
    }

    /// Review 60 R60-1: every translate hv counted (data faults and
    /// `L0Changing` retries alike) is one of the service's L2 faults. A
    /// window whose faults fall short of that sum is refused by the "L2
    /// faults" rule, not passed because the code page's count, their
    /// difference, underflowed and was read as 0.
    #[test]
    fn l2_faults_short_of_data_faults_and_l0_changing_retries_fail() {
        for code in [0, 2] {
            let (c, mut f) = window(Pass::FirstTouch, code, None, 2_000);
            // Three more L0Changing retries than the service counted
            // faults for.
            f.l0_changing = code + 3;
            f.note_service(code + 3, 0);
            assert_eq!(
                failed(Pass::FirstTouch, &(c, f)),
                (false, "L2 faults", Relation::AtLeast, PAGES + code + 3),
                "{code} code-page faults"
            );
        }
    }

    #[test]
    fn after_the_dirty_logs_end_a_fault_a_block_needs_no_eviction() {
        let pass = Pass::AfterDirtyLogEnd;
        assert_eq!(CachedWalks::after(pass), CachedWalks::KeptPerBlock);
        // Four 2 MiB shadow leaves, far below the cap: no eviction is
        // needed (pages - cap would ask for 1803), and the four blocks'
        // leaves fit the cache, so no miss is either.
        assert_eq!(
            evictions_at_least(pass.data_shadow_leaves(PAGES), &TIGHT, 0),
            0
        );
        let w = window(pass, 0, None, 0);
        assert_eq!(w.0.faults, 4);
        assert_eq!(check_window(pass, &w), Ok(()));
        // A block's leaf evicted since the block pass: it walks again.
        let w = window(pass, 0, Some(3), 0);
        assert_eq!(check_window(pass, &w), Ok(()));
        // hv's pages still 4 KiB (its log not ended): every page faults.
        let (mut c, mut f) = window(pass, 0, None, 0);
        f.data = PAGES;
        c.faults = PAGES;
        c.hits = PAGES;
        assert_eq!(
            failed(pass, &(c, f)),
            (false, "L2 faults on data pages", Relation::Exactly, 4)
        );
    }

    #[test]
    fn the_block_pass_needs_a_miss_a_block_and_no_more() {
        // Pass 8: L1 maps its data with 2 MiB blocks after a TLBI, so each
        // block's first fault walks: 4 misses at least. Evictions may add
        // misses (a block's leaf evicted and walked again).
        let w = window(Pass::Blocks, 2, None, 1_900);
        assert_eq!(check_window(Pass::Blocks, &w), Ok(()));
        let w = window(Pass::Blocks, 2, Some(1_500), 1_900);
        assert_eq!(check_window(Pass::Blocks, &w), Ok(()));
        // A block served without a walk (a leaf that outlived the TLBI).
        let (mut c, f) = window(Pass::Blocks, 0, None, 1_900);
        c.hits += 1;
        c.misses -= 1;
        c.partial_walks -= 1;
        assert_eq!(
            failed(Pass::Blocks, &(c, f)),
            (false, "misses", Relation::AtLeast, PAGES / BLOCK_PAGES)
        );
    }

    #[test]
    fn too_few_evictions_fail_with_the_bound() {
        // No eviction at all (a service that let the cache or the shadow
        // pass its budget).
        let w = window(Pass::AfterVmalls12, 0, None, 0);
        assert_eq!(
            failed(Pass::AfterVmalls12, &w),
            (false, "evictions", Relation::AtLeast, PAGES - 245)
        );
        // Fewer than the cap implies: the shadow held more than 245.
        let w = window(Pass::AfterVmalls12, 0, None, PAGES - 246);
        assert_eq!(failed(Pass::AfterVmalls12, &w).1, "evictions");
        // With more misses than the cap bound, the cache's bound rules.
        let (c, f) = window(Pass::AfterVmalls12, 0, None, 2_000);
        let many_misses = Counts {
            faults: 2 * PAGES + 600,
            misses: 2 * PAGES + 600,
            partial_walks: 2 * PAGES + 599,
            ..c
        };
        let f = Faults { data: PAGES, ..f };
        assert_eq!(
            evictions_at_least(PAGES, &TIGHT, many_misses.misses),
            2 * PAGES + 600 - 528
        );
        assert_eq!(
            failed(Pass::AfterVmalls12, &(many_misses, f)),
            (false, "evictions", Relation::AtLeast, 2 * PAGES + 72)
        );
    }

    #[test]
    fn code_page_faults_need_evictions_and_counts_must_add_up() {
        // More refaults of the code page than entries evicted.
        let w = window(Pass::Scattered, 1_900, None, 1_850);
        assert_eq!(
            failed(Pass::Scattered, &w),
            (false, "faults on L2's code page", Relation::AtMost, 1_850)
        );
        // A fault the service neither hit nor missed.
        let (mut c, f) = window(Pass::Scattered, 4, None, 2_000);
        c.hits -= 1;
        assert_eq!(failed(Pass::Scattered, &(c, f)).1, "hits + misses");
        // A miss that did not walk.
        let (mut c, f) = window(Pass::Scattered, 4, None, 2_000);
        c.partial_walks -= 1;
        assert_eq!(failed(Pass::Scattered, &(c, f)).1, "full + partial walks");
        // hv counted more data faults than L2 faults.
        let (mut c, f) = window(Pass::Scattered, 0, None, 2_000);
        c.faults -= 1;
        c.misses -= 1;
        c.partial_walks -= 1;
        assert_eq!(failed(Pass::Scattered, &(c, f)).1, "L2 faults");
    }

    #[test]
    fn hits_and_misses_follow_what_the_preparation_kept() {
        // After TLBIs every data fault misses: a hit is a stale walk.
        let w = window(Pass::AfterIpas2, 0, Some(1), 2_000);
        assert_eq!(
            failed(Pass::AfterIpas2, &w),
            (false, "misses", Relation::AtLeast, PAGES)
        );
        // After the L0 unmap at most the cache's places hit.
        let w = window(Pass::AfterL0Unmap, 0, Some(529), 2_000);
        assert_eq!(
            failed(Pass::AfterL0Unmap, &w),
            (false, "misses", Relation::AtLeast, PAGES - 528)
        );
        assert_eq!(
            check_window(
                Pass::AfterL0Unmap,
                &window(Pass::AfterL0Unmap, 0, Some(528), 2_000)
            ),
            Ok(())
        );
        // In the dirty-log pass each write's two store faults hit.
        let writes = PAGES / DIRTY_WRITE_PERIOD;
        let w = window(Pass::DirtyLog, 0, Some(2 * writes - 1), 2_000);
        assert_eq!(
            failed(Pass::DirtyLog, &w),
            (false, "hits", Relation::AtLeast, 2 * writes)
        );
        // The first data fault after a whole-VMID TLBI walks from the start.
        let (mut c, f) = window(Pass::FirstTouch, 0, None, 2_000);
        c.walks = 0;
        c.partial_walks += 1;
        assert_eq!(
            failed(Pass::FirstTouch, &(c, f)),
            (false, "full walks", Relation::AtLeast, 1)
        );
    }

    #[test]
    fn the_preparation_is_the_normal_cases_exactly() {
        let pass = Pass::AfterVmalls12;
        let w = window(pass, 0, None, 2_000);
        let (prep, _) = pass.expected(PAGES);
        // An eviction before the window (the code page's fault evicted).
        let evicted = Counts {
            evictions: 1,
            ..prep
        };
        let m = check(
            pass,
            PAGES,
            &TIGHT,
            &evicted,
            &Faults::default(),
            &w.0,
            &w.1,
        );
        assert_eq!(
            m.map_err(|m| (m.preparation, m.what, m.relation)),
            Err((true, "evictions", Relation::Exactly))
        );
        // L2 touching a data page outside the window.
        let stray = Faults {
            data: 1,
            ..Faults::default()
        };
        let m = check(pass, PAGES, &TIGHT, &prep, &stray, &w.0, &w.1);
        assert_eq!(
            m.map_err(|m| (m.preparation, m.what)),
            Err((true, "L2 faults on data pages"))
        );
    }

    #[test]
    fn occupancy_over_the_budget_is_named() {
        let full = Occupancy {
            cache_leaves: 528,
            cache_paths: 7,
            shadow_leaves: 245,
            frames: 12,
            index_growths: 0,
        };
        assert_eq!(full.over(&TIGHT), None);
        assert_eq!(
            Occupancy {
                shadow_leaves: 246,
                ..full
            }
            .over(&TIGHT),
            Some(("shadow leaves", 245, 246))
        );
        assert_eq!(
            Occupancy {
                cache_leaves: 529,
                ..full
            }
            .over(&TIGHT),
            Some(("cached leaves", 528, 529))
        );
        assert_eq!(
            Occupancy {
                index_growths: 1,
                ..full
            }
            .over(&TIGHT),
            Some(("index growths", 0, 1))
        );
        assert_eq!(
            Occupancy { frames: 54, ..full }.over(&TIGHT),
            Some(("shadow frames", 53, 54))
        );
    }

    #[test]
    fn the_peak_keeps_each_parts_most() {
        let a = Occupancy {
            cache_leaves: 528,
            cache_paths: 3,
            shadow_leaves: 10,
            frames: 9,
            index_growths: 0,
        };
        let b = Occupancy {
            cache_leaves: 100,
            cache_paths: 7,
            shadow_leaves: 245,
            frames: 6,
            index_growths: 1,
        };
        let peak = Occupancy::default().max(&a).max(&b);
        assert_eq!(
            peak,
            Occupancy {
                cache_leaves: 528,
                cache_paths: 7,
                shadow_leaves: 245,
                frames: 9,
                index_growths: 1,
            }
        );
        assert_eq!(b.max(&a), peak);
        // A peak over the budget fails though both samples' ends are
        // within it.
        assert_eq!(
            Occupancy {
                shadow_leaves: 246,
                ..a
            }
            .max(&b)
            .over(&TIGHT),
            Some(("shadow leaves", 245, 246))
        );
    }

    #[test]
    fn faults_since_subtracts_and_wraps() {
        let a = Faults {
            data: 10,
            retries: 1,
            l0_changing: 2,
            hv_resumed: 4,
            service_l0_changing_output: 1,
            service_l0_changing_table: 1,
        };
        let b = Faults {
            data: 15,
            retries: 1,
            l0_changing: 5,
            hv_resumed: 11,
            service_l0_changing_output: 3,
            service_l0_changing_table: 2,
        };
        assert_eq!(
            b.since(&a),
            Faults {
                data: 5,
                retries: 0,
                l0_changing: 3,
                hv_resumed: 7,
                service_l0_changing_output: 2,
                service_l0_changing_table: 1,
            }
        );
        assert_eq!(a.since(&b).data, u64::MAX - 4);
    }
}
