//! `hv.nested=fault-rate-smp`: the fault-rate passes with every vCPU of
//! one guest hypervisor faulting at once. The guest hypervisor is
//! `arch::nested_l1_fault_rate_smp`; hv's side (the per-vCPU counts, the
//! END line and the check) is in `arch::nested`.
//!
//! L1 has the single-vCPU case's layout and table ([`PAGES`] pages from
//! [`super::DATA_IPA`], one L2, one shadow context). vCPU 0 starts the
//! others (PSCI CPU_ON, every CPU but the service's: two vCPUs at three
//! CPUs on QEMU), and all of them run the same L2, which reads its share
//! of the pages: vCPU k of n the pages i with i mod n = k (interleaved,
//! so the vCPUs fault into the same level-3 tables of L1, the same
//! shadow tables and the same walk-cache region at the same time). The
//! passes are seven of the single-vCPU case's ([`PASSES`], which says why
//! not 3 and 4): first touch, after L1's remap and a TLBI VMALLS12E1IS,
//! and the same in scattered order (pass 5: vCPU k reads the order's
//! positions j with j mod n = k, page j * 1031 mod [`PAGES`], a
//! permutation, so the shares stay as they are); then hv's L0 changes
//! with L1's table kept: hv's move of L1's data (6), hv's dirty log with
//! L2's writes (7: vCPU k's L2 writes the first of every
//! [`DIRTY_WRITE_READS`] pages it reads, [`written_by_l2`], so every
//! vCPU writes; vCPU k > 0 also vCPU 0's page at the same step,
//! [`written_by_every_vcpu`], vCPU 1 every other one from its L1 itself,
//! [`written_by_l1`]), L1's 2 MiB blocks rotated by one block (8), and
//! the end of hv's dirty log, hv's blocks back (9: vCPU k's L2 writes
//! every [`LOG_END_WRITE_READS`]th page it reads, through the blocks).
//! vCPU 0 alone prepares a pass and calls hv's BEGIN and END; the other
//! vCPUs sit in L1 from their last report to the next pass's start, so
//! the preparation's counts are the single-vCPU case's, exactly.
//!
//! The window's counts that hold whatever the interleaving ([`check`],
//! [`Expected::of`]):
//! - every data page faults (answered, not retried) exactly once but in
//!   pass 7, where a written page faults three times (the read, the write
//!   hv's write protection denies, the write again once logged), and in
//!   pass 9 (2 MiB shadow blocks: a block's first touch on each vCPU, so
//!   1 to n pages a block); every 2 MiB block faults in every pass; each
//!   vCPU's faults are its share ([`share`], plus two a written page in
//!   7; at most one a block in 9): each L2 reads each of its pages once,
//!   and a page no other vCPU touches faults once on a shadow nothing
//!   removes within the pass;
//! - hits: none in passes 1, 2 and 5 (each page's leaf is its own, and
//!   the preparation dropped every one), every fault in 6, 7 and 9 (the
//!   preparation removed shadow leaves only, every walk of L1's table is
//!   cached); in 8 one to n misses a block (a vCPU's second fault in a
//!   block comes after its first cached the block: each vCPU misses at
//!   most once a block, and the first fault of a block misses), the rest
//!   hits;
//! - full walks from 1 to n where the preparation dropped the data
//!   region's paths (passes 1, 2, 5 and 8), 0 where nothing walks (6, 7,
//!   9): a walk starts at the start level only while no walk of the data
//!   region has cached its level-1 path, so only the first walk of the
//!   region and the walks served with it before its path was cached; the
//!   service serves requests one at a time today (1), but which vCPU's
//!   fault comes first, and whether a batched service took one from each
//!   ring before caching a path, is timing's (each vCPU has one request
//!   outstanding: at most n);
//! - full + partial walks = misses; no invalidation, no eviction;
//! - no retry of any kind, but in pass 9: there two vCPUs may fault into
//!   one block before either's fault installed it, and the second's
//!   install finds the block there (the service answers it `Mapped`
//!   today, `Retry(AlreadyMapped)` were it to refuse); a block's first
//!   install is never retried, so retries (of that reason alone) at most
//!   faults - blocks, and no vCPU faults twice in one block (after its
//!   fault, answered or retried, the block is mapped: a per-vCPU tally of
//!   the blocks it faulted in, `VcpuFaults::block_refaults`); elsewhere no vCPU faults on a page another touches,
//!   no invalidation runs in the window (`InvalidationRaced`), the budget
//!   holds every leaf (`Throttled`), hv changes nothing of L1's RAM in the
//!   window (`L0Changing`), and no descriptor update contends
//!   (`Contended`);
//! - the dirty log (7): hv's log (one for all vCPUs) holds exactly the L1
//!   pages the vCPUs wrote ([`dirty_after_dirty_log_pass`]), each
//!   logged once (the logs from L2's writes and L1's own summed), and
//!   each vCPU logged as many as its L2 wrote alone ([`written_share`]),
//!   a shared page on whichever vCPU's write came first;
//! - L1's own writes (7): vCPU 1's L1 writes every other page vCPU 0's
//!   L2 writes ([`written_by_l1`], [`l1_written`]), in place of its L2's
//!   write at that step, so L1's own stage-2 permission fault races vCPU
//!   0's L2's on one write-protected page (hv holds both denials, as two
//!   L2s'); its logged plus found-logged-by-another writes at most those
//!   pages (each store denied at most once: then the page is writable;
//!   none if vCPU 0's L2 logged it first), no other vCPU's L1 writes a
//!   data page, and after the pass vCPU 0's L1 checks each such page
//!   holds both writes (L2's index, L1's [`L1_WRITE_MARK`]);
//! - nothing given to L1 but its L2's HVCs (no fault forwarded or
//!   injected, no abort for L2, on any vCPU);
//! - each vCPU's data faults follow the pass's order where each of its
//!   pages faults (all passes but 9, whose faults are a block's first
//!   touch): each data fault on a new page after the vCPU's first is
//!   [`page_step`] pages (mod [`PAGES`]) past its previous one, n in order
//!   and n * 1031 scattered, a written page's repeated faults in pass 7
//!   counting neither way (review 63 R63-1: nothing told pass 5 from
//!   pass 2, so an L1 or L2 that read its pages in order passed as
//!   scattered).

use super::{
    Counts, DirtyLog, DirtyMismatch, DirtyWrite, Pass, BLOCK_PAGES, LAST_ROTATION, PAGES,
    SCATTER_STRIDE,
};
use core::sync::atomic::{AtomicU64, Ordering};
use ipc::RetryReason;

/// The passes, numbered as the single-vCPU case's: 1 first touch, 2
/// after L1's remap and TLBI VMALLS12E1IS, 5 the same in scattered order
/// (L1's rotation 4, as there: the remaps before 3 and 4 are folded into
/// its remap before 5, which rotates by the pass's number less one), 6
/// after hv's move of L1's data, 7 hv's dirty log with L2's writes, 8
/// L1's 2 MiB blocks, 9 after the dirty log's end (6 and 7 keep pass 5's
/// rotation, [`LAST_ROTATION`], as in the single-vCPU case; 8 and 9 one
/// block's).
///
/// Not 3 and 4 (after IPAS2E1IS, then IPAS2LE1IS, of every page): L1 and
/// [`check`] also run and check them with this list 1 to 4, green on
/// QEMU, but their 4,096 TLBIs, each a round trip to the service and a
/// broadcast that stops all three of QEMU's vCPU threads, took the run
/// from 2.6-3.1 s to 16.5-22.5 s on the shared 2-core machine at load
/// 2-3 and to 57 s at load 7.5, past the QEMU matrix's budget for the
/// case (well under 60 s); on hardware they would cost little. Pass 5's
/// preparation is pass 2's (one TLBI, one invalidation of the 4105
/// entries every pass of every page leaves), so skipping 3-4 changes none
/// of its counts, nor of 6-9 (each begins from pass 5's table or L1's
/// blocks, as in the single-vCPU case).
pub const PASSES: [u64; 7] = [1, 2, 5, 6, 7, 8, 9];
/// The last of [`PASSES`].
pub const LAST: u64 = PASSES[PASSES.len() - 1];
/// The passes L1 skips: after pass [`SKIP_FROM`] - 1 comes [`SKIP_TO`].
pub const SKIP_FROM: u64 = 3;
pub const SKIP_TO: u64 = 5;
const _: () = assert!(
    PASSES[0] == 1
        && PASSES[1] == Pass::AfterVmalls12.number()
        && PASSES[1] + 1 == SKIP_FROM
        && PASSES[2] == SKIP_TO
        && SKIP_TO == Pass::Scattered.number()
        && PASSES[3] == Pass::AfterL0Unmap.number()
        && PASSES[4] == Pass::DirtyLog.number()
        && PASSES[5] == Pass::Blocks.number()
        && PASSES[6] == Pass::AfterDirtyLogEnd.number()
        && LAST == Pass::LAST
);

/// In pass 9 vCPU k's L2 writes the second word of every this-many-th
/// page it reads (its reads 0, this, twice this, ...: L2 page k + t * n
/// for t a multiple of it), through the 2 MiB shadow block its read
/// installed, which hv's restored block must allow. With at most 8 vCPUs
/// (`arch::nested_l1_fault_rate_smp::MAX_VCPUS`) each vCPU's writes are at
/// most 64 * 8 = [`BLOCK_PAGES`] pages apart: every vCPU writes every
/// block. A power of two (L2 tests it with an AND).
pub const LOG_END_WRITE_READS: u64 = BLOCK_PAGES / 8;
const _: () = assert!(LOG_END_WRITE_READS.is_power_of_two());

/// In the dirty-log pass (7) vCPU k's L2 writes the second word of the
/// first of every this-many pages it reads ([`written_by_l2`]): 32 a
/// vCPU at two vCPUs, 64 in all, a quarter of the single-vCPU case's 256
/// (its [`super::DIRTY_WRITE_PERIOD`] 8). Each write is an `L0Denied`
/// round trip and a TLBI of hv's (its page made writable), which under
/// QEMU's TCG stops every vCPU thread: with 256 the pass alone took 3-8 s
/// on the shared 2-core machine at load 4-5, the whole run 12-28 s where
/// passes 1, 2 and 5 took 2-10 s. 64 still has both vCPUs' writes fall
/// among each other's in every level-3 table of L1. A power of two (L2
/// tests it with an AND).
pub const DIRTY_WRITE_READS: u64 = 32;
const _: () = assert!(DIRTY_WRITE_READS.is_power_of_two());

/// Pass `number` of this case, if it has one.
pub fn pass(number: u64) -> Option<Pass> {
    if PASSES.contains(&number) {
        Pass::from_number(number)
    } else {
        None
    }
}

/// The data pages vCPU `index` of `vcpus` reads in a pass: pages i < PAGES
/// with i mod `vcpus` = `index` (0 for an index past the vCPUs).
pub const fn share(index: u64, vcpus: u64) -> u64 {
    if index >= vcpus {
        0
    } else {
        (PAGES - index).div_ceil(vcpus)
    }
}

/// Whether L2 page `l2_page` is written in the dirty-log pass (7) with
/// `vcpus` vCPUs: vCPU k reads the pages k + t * n in order (t = 0, 1,
/// ...) and writes those with t a multiple of [`DIRTY_WRITE_READS`] (the
/// first of every 32 it reads), so t = i div n. Not the single-vCPU
/// case's rule (L2 page i a multiple of 8), under which vCPU k of 2 would
/// write only if k = 0.
pub const fn written_by_l2(l2_page: u64, vcpus: u64) -> bool {
    vcpus != 0 && l2_page < PAGES && (l2_page / vcpus).is_multiple_of(DIRTY_WRITE_READS)
}

/// In the dirty-log pass (7) every vCPU but 0 also writes the pages
/// vCPU 0 writes ([`written_by_every_vcpu`]): at each of its write
/// positions j (its L2 page j), first L2 page j - k (vCPU 0's page at the
/// same step of its order), then its own. L1 sets this bit of L2's write
/// period in pass 7 (L2 tests the period's low bits alone: its count of
/// pages read never reaches the bit).
pub const SHARED_WRITE_BIT: u32 = 62;

/// Whether L2 page `l2_page` is written by every one of `vcpus` vCPUs in
/// the dirty-log pass: vCPU 0's written pages, with two vCPUs or more.
pub const fn written_by_every_vcpu(l2_page: u64, vcpus: u64) -> bool {
    vcpus > 1 && l2_page.is_multiple_of(vcpus) && written_by_l2(l2_page, vcpus)
}

/// The pages every vCPU writes in the dirty-log pass: vCPU 0's written
/// ones, with two vCPUs or more.
pub const fn shared_written(vcpus: u64) -> u64 {
    if vcpus > 1 {
        written_share(0, vcpus)
    } else {
        0
    }
}

/// The vCPU whose L1 itself writes some of the pages every vCPU writes
/// in the dirty-log pass ([`written_by_l1`]): vCPU 1, the first but 0.
pub const L1_WRITER: u64 = 1;

/// Whether L2 page `l2_page`, one every vCPU writes in the dirty-log pass
/// ([`written_by_every_vcpu`]), is written at vCPU [`L1_WRITER`]'s step by
/// its L1 itself rather than its L2: every other such page, those of
/// vCPU 0's odd write steps (t = i div n div [`DIRTY_WRITE_READS`] odd),
/// so L2 page 0, the first race (`fault-rate-smp-race-unresolved`'s), is
/// still two L2s'. There vCPU 1's L2 makes `hvc #3` instead of its store
/// and its L1 stores [`L1_WRITE_MARK`] | i into the page's third word
/// through its own mapping of the L1 page (a write from L1, denied by
/// hv's write protection as L1's own stage-2 permission fault) at about
/// the moment vCPU 0's L2 writes the page's second word: L1's own write
/// racing another vCPU's L2's on one write-protected page.
pub const fn written_by_l1(l2_page: u64, vcpus: u64) -> bool {
    vcpus > L1_WRITER
        && written_by_every_vcpu(l2_page, vcpus)
        && (l2_page / vcpus / DIRTY_WRITE_READS) % 2 == 1
}

/// The pages [`written_by_l1`]: vCPU 0's odd write steps.
pub const fn l1_written(vcpus: u64) -> u64 {
    if vcpus > L1_WRITER {
        written_share(0, vcpus) / 2
    } else {
        0
    }
}

/// What L1 stores in the third word of each page it writes in the
/// dirty-log pass, with the page's L2 index in the low bits; L1 checks it
/// and L2's store (the index, second word) after the pass: both writes
/// to the page survived hv's log, whichever was logged.
pub const L1_WRITE_MARK: u64 = 0x1111_0000_0000_0000;
const _: () = assert!(L1_WRITE_MARK & (PAGES - 1) == 0);

/// Whether L1 data page `l1_page` is one every vCPU writes in the
/// dirty-log pass (L2 page i is L1 page (i + [`LAST_ROTATION`]) mod
/// [`PAGES`]).
pub const fn l1_page_written_by_every_vcpu(l1_page: u64, vcpus: u64) -> bool {
    l1_page < PAGES && written_by_every_vcpu((l1_page + PAGES - LAST_ROTATION) % PAGES, vcpus)
}

/// Which vCPUs' writes hv's write protection denied, of the pages every
/// vCPU writes in the dirty-log pass ([`written_by_every_vcpu`]): hv holds
/// each such denial (for a bounded time) until every vCPU's write to the
/// page was denied, so that on every shared page several vCPUs are denied
/// before any logs it, the race hv's log must resolve
/// (`DirtyWrite::LoggedByAnother`), not only when timing falls so. One
/// bit a page in one array a vCPU, cleared at each pass's BEGIN.
#[derive(Debug)]
pub struct SharedDenials<const VCPUS: usize> {
    denied: [[AtomicU64; (PAGES / 64) as usize]; VCPUS],
}

impl<const VCPUS: usize> Default for SharedDenials<VCPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const VCPUS: usize> SharedDenials<VCPUS> {
    pub const fn new() -> Self {
        SharedDenials {
            denied: [const { [const { AtomicU64::new(0) }; (PAGES / 64) as usize] }; VCPUS],
        }
    }

    /// vCPU `vcpu`'s write to data page `page` was denied (nothing for a
    /// vCPU or page past the arrays).
    pub fn deny(&self, vcpu: usize, page: u64) {
        if let Some(word) = self
            .denied
            .get(vcpu)
            .and_then(|words| words.get((page / 64) as usize))
        {
            word.fetch_or(1 << (page % 64), Ordering::AcqRel);
        }
    }

    /// Whether the writes of vCPUs 0 to `vcpus` - 1 to data page `page`
    /// were all denied.
    pub fn all_denied(&self, page: u64, vcpus: usize) -> bool {
        page < PAGES
            && vcpus <= VCPUS
            && self.denied[..vcpus].iter().all(|words| {
                words[(page / 64) as usize].load(Ordering::Acquire) & (1 << (page % 64)) != 0
            })
    }

    /// Forgets every denial (a pass's BEGIN, while the other vCPUs sit in
    /// L1).
    pub fn clear(&self) {
        for word in self.denied.iter().flatten() {
            word.store(0, Ordering::Relaxed);
        }
    }
}

/// The pages vCPU `index` of `vcpus` writes in the dirty-log pass: the
/// first of every [`DIRTY_WRITE_READS`] of its [`share`].
pub const fn written_share(index: u64, vcpus: u64) -> u64 {
    share(index, vcpus).div_ceil(DIRTY_WRITE_READS)
}

/// Whether L1 data page `l1_page` is dirty after the dirty-log pass with
/// `vcpus` vCPUs: L2 page i is L1 page (i + [`LAST_ROTATION`]) mod
/// [`PAGES`], written as [`written_by_l2`] says (the pages vCPU 1's L1
/// writes itself, [`written_by_l1`], are among vCPU 0's L2's).
pub const fn dirty_after_dirty_log_pass(l1_page: u64, vcpus: u64) -> bool {
    l1_page < PAGES && written_by_l2((l1_page + PAGES - LAST_ROTATION) % PAGES, vcpus)
}

/// Checks hv's dirty log after the dirty-log pass with `vcpus` vCPUs:
/// exactly the L1 pages the vCPUs' L2s wrote (each logged once: a page is
/// in the log once, and [`DirtyLog::logged`] counts each log of a new
/// page); `Ok` with the number of pages logged.
pub fn check_dirty_log(log: &DirtyLog, vcpus: u64) -> Result<u64, DirtyMismatch> {
    log.check(|page| dirty_after_dirty_log_pass(page, vcpus))
}

/// The pages between one vCPU's consecutive data pages in pass `pass`
/// with `vcpus` vCPUs: its positions in the pass's order are `vcpus`
/// apart, and position j is page j (in order) or j * [`SCATTER_STRIDE`]
/// mod [`PAGES`] (pass 5), so consecutive pages differ by `vcpus` times
/// the stride, mod [`PAGES`].
pub const fn page_step(pass: Pass, vcpus: u64) -> u64 {
    let stride = match pass {
        Pass::Scattered => SCATTER_STRIDE,
        _ => 1,
    };
    stride.wrapping_mul(vcpus) % PAGES
}

/// Whether each vCPU's data faults in pass `pass` visit its pages in the
/// pass's order, one after another ([`page_step`]): every pass but 9,
/// where a vCPU faults only on its first touch of a 2 MiB block.
pub const fn follows_page_order(pass: Pass) -> bool {
    !matches!(pass, Pass::AfterDirtyLogEnd)
}

/// [`VcpuCounters`]' last data page before the vCPU's first data fault of
/// a pass.
const NO_PAGE: u64 = u64::MAX;

/// One vCPU's running counts of L2 faults, shared so that vCPU 0's END
/// reads the others' (each adds only to its own; vCPU 0 reads them after
/// L1 saw each vCPU's report, which its own store-release published).
#[derive(Debug)]
pub struct VcpuCounters {
    faults: AtomicU64,
    data: AtomicU64,
    retries: AtomicU64,
    already_mapped: AtomicU64,
    logged: AtomicU64,
    logged_by_another: AtomicU64,
    l1_logged: AtomicU64,
    l1_logged_by_another: AtomicU64,
    to_l1: AtomicU64,
    /// The 2 MiB blocks ([`BLOCK_PAGES`] data pages) this vCPU faulted in
    /// since BEGIN, a bit a block (cleared by
    /// [`VcpuCounters::begin_pass`]), and the faults (answered or retried)
    /// in a block whose bit was set: pass 9's tally of each vCPU's faults
    /// a block.
    blocks_faulted: AtomicU64,
    block_refaults: AtomicU64,
    /// Data faults [`page_step`] past the vCPU's previous one in the pass.
    in_order: AtomicU64,
    /// The page of the vCPU's last data fault in the pass ([`NO_PAGE`]
    /// before its first), and the step the pass's order puts between two:
    /// set by vCPU 0's BEGIN ([`VcpuCounters::begin_pass`]), while this
    /// vCPU sits in L1 waiting for the pass's start.
    last_page: AtomicU64,
    step: AtomicU64,
}

impl Default for VcpuCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds a dirty-log outcome to `logged` or `logged_by_another`
/// (nothing for an unresolved write).
fn count_dirty_write(outcome: DirtyWrite, logged: &AtomicU64, logged_by_another: &AtomicU64) {
    let counter = match outcome {
        DirtyWrite::Logged => logged,
        DirtyWrite::LoggedByAnother => logged_by_another,
        DirtyWrite::Unresolved => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of [`VcpuCounters`], or the difference of two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuFaults {
    /// L2 stage-2 faults hv sent to the service.
    pub faults: u64,
    /// Those on a data page not answered `Retry`.
    pub data: u64,
    /// Those answered `Retry` (any reason).
    pub retries: u64,
    /// Those answered `Retry(AlreadyMapped)`.
    pub already_mapped: u64,
    /// Pages hv's dirty log logged from this vCPU's L2's writes.
    pub logged: u64,
    /// This vCPU's L2's denied writes to a page another vCPU's write
    /// logged meanwhile (resolved, not logged again).
    pub logged_by_another: u64,
    /// Pages hv's dirty log logged from this vCPU's L1's own writes.
    pub l1_logged: u64,
    /// This vCPU's L1's own denied writes to a page another vCPU's write
    /// logged meanwhile.
    pub l1_logged_by_another: u64,
    /// Faults (answered or retried) on a data page of a 2 MiB block the
    /// vCPU had already faulted in since the pass's BEGIN.
    pub block_refaults: u64,
    /// Exceptions hv gave L1 on this vCPU (L2's exits forwarded but its
    /// HVCs, faults injected, L1's own) and aborts it gave L2.
    pub to_l1: u64,
    /// Data faults on the page the pass's order puts next after the
    /// vCPU's previous data fault's ([`page_step`] past it).
    pub in_order: u64,
}

impl VcpuCounters {
    pub const fn new() -> Self {
        VcpuCounters {
            faults: AtomicU64::new(0),
            data: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            already_mapped: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            logged_by_another: AtomicU64::new(0),
            l1_logged: AtomicU64::new(0),
            l1_logged_by_another: AtomicU64::new(0),
            to_l1: AtomicU64::new(0),
            blocks_faulted: AtomicU64::new(0),
            block_refaults: AtomicU64::new(0),
            in_order: AtomicU64::new(0),
            last_page: AtomicU64::new(NO_PAGE),
            step: AtomicU64::new(0),
        }
    }

    /// vCPU 0's BEGIN of a pass whose order puts `step` pages
    /// ([`page_step`]) between this vCPU's data pages: its next data
    /// fault is its first of the pass.
    pub fn begin_pass(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
        self.last_page.store(NO_PAGE, Ordering::Relaxed);
        self.blocks_faulted.store(0, Ordering::Relaxed);
    }

    /// One L2 fault's translate, on data page `data_page` (below
    /// [`PAGES`]) or not, answered `Retry` (`retry` the reason) or not.
    pub fn fault(&self, data_page: Option<u64>, retry: Option<RetryReason>) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        if let Some(page) = data_page.filter(|&page| page < PAGES) {
            let block = 1 << (page / BLOCK_PAGES);
            if self.blocks_faulted.fetch_or(block, Ordering::Relaxed) & block != 0 {
                self.block_refaults.fetch_add(1, Ordering::Relaxed);
            }
        }
        match retry {
            Some(reason) => {
                self.retries.fetch_add(1, Ordering::Relaxed);
                if reason == RetryReason::AlreadyMapped {
                    self.already_mapped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                if let Some(page) = data_page {
                    self.data.fetch_add(1, Ordering::Relaxed);
                    self.in_order_fault(page);
                }
            }
        }
    }

    /// Counts data fault `page` as in order if it is the step past the
    /// vCPU's previous one (only this vCPU writes `last_page` between
    /// BEGINs); a fault on the same page again moves nothing.
    fn in_order_fault(&self, page: u64) {
        let last = self.last_page.load(Ordering::Relaxed);
        if last == page {
            return;
        }
        self.last_page.store(page, Ordering::Relaxed);
        let step = self.step.load(Ordering::Relaxed);
        if last < PAGES && page < PAGES && (page + PAGES - last) % PAGES == step {
            self.in_order.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What hv's dirty log made of this vCPU's L2's denied write: a page
    /// it logged, or one another vCPU logged since the denial (counted
    /// apart); nothing for one it did not resolve.
    pub fn dirty_write(&self, outcome: DirtyWrite) {
        count_dirty_write(outcome, &self.logged, &self.logged_by_another);
    }

    /// What hv's dirty log made of this vCPU's L1's own denied write, as
    /// [`VcpuCounters::dirty_write`] for its L2's.
    pub fn l1_dirty_write(&self, outcome: DirtyWrite) {
        count_dirty_write(outcome, &self.l1_logged, &self.l1_logged_by_another);
    }

    /// One exception hv gave L1.
    pub fn to_l1(&self) {
        self.to_l1.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> VcpuFaults {
        VcpuFaults {
            faults: self.faults.load(Ordering::Relaxed),
            data: self.data.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            already_mapped: self.already_mapped.load(Ordering::Relaxed),
            logged: self.logged.load(Ordering::Relaxed),
            logged_by_another: self.logged_by_another.load(Ordering::Relaxed),
            l1_logged: self.l1_logged.load(Ordering::Relaxed),
            l1_logged_by_another: self.l1_logged_by_another.load(Ordering::Relaxed),
            block_refaults: self.block_refaults.load(Ordering::Relaxed),
            to_l1: self.to_l1.load(Ordering::Relaxed),
            in_order: self.in_order.load(Ordering::Relaxed),
        }
    }
}

impl VcpuFaults {
    /// What was counted from `earlier` to `self` (wrapping, as
    /// [`Counts::since`]).
    pub fn since(&self, earlier: &VcpuFaults) -> VcpuFaults {
        VcpuFaults {
            faults: self.faults.wrapping_sub(earlier.faults),
            data: self.data.wrapping_sub(earlier.data),
            retries: self.retries.wrapping_sub(earlier.retries),
            already_mapped: self.already_mapped.wrapping_sub(earlier.already_mapped),
            logged: self.logged.wrapping_sub(earlier.logged),
            logged_by_another: self
                .logged_by_another
                .wrapping_sub(earlier.logged_by_another),
            l1_logged: self.l1_logged.wrapping_sub(earlier.l1_logged),
            l1_logged_by_another: self
                .l1_logged_by_another
                .wrapping_sub(earlier.l1_logged_by_another),
            block_refaults: self.block_refaults.wrapping_sub(earlier.block_refaults),
            to_l1: self.to_l1.wrapping_sub(earlier.to_l1),
            in_order: self.in_order.wrapping_sub(earlier.in_order),
        }
    }
}

/// Which data pages faulted (answered, not retried) since the last
/// [`PageTally::take`], and how many faults found their page already
/// faulted: any vCPU records, vCPU 0's BEGIN and END take.
#[derive(Debug)]
pub struct PageTally {
    faulted: [AtomicU64; (PAGES / 64) as usize],
    again: AtomicU64,
}

/// What [`PageTally::take`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Data pages faulted at least once.
    pub pages: u64,
    /// Faults on a data page already faulted.
    pub again: u64,
    /// 2 MiB blocks ([`BLOCK_PAGES`] pages) with a page faulted.
    pub blocks: u64,
}

/// The tally's words a block spans.
const BLOCK_WORDS: usize = (BLOCK_PAGES / 64) as usize;
const _: () = assert!(
    BLOCK_PAGES.is_multiple_of(64)
        && PAGES.is_multiple_of(BLOCK_PAGES)
        && PAGES / BLOCK_PAGES <= 64
);

impl Default for PageTally {
    fn default() -> Self {
        Self::new()
    }
}

impl PageTally {
    pub const fn new() -> Self {
        PageTally {
            faulted: [const { AtomicU64::new(0) }; (PAGES / 64) as usize],
            again: AtomicU64::new(0),
        }
    }

    /// Data page `page` faulted (a page past the data is not one).
    pub fn record(&self, page: u64) {
        let Some(word) = self.faulted.get((page / 64) as usize) else {
            return;
        };
        let bit = 1 << (page % 64);
        if word.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            self.again.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The pages and blocks faulted and the faults on a page already
    /// faulted since the last take; clears them.
    pub fn take(&self) -> Tally {
        let mut words = [0u64; (PAGES / 64) as usize];
        for (taken, word) in words.iter_mut().zip(&self.faulted) {
            *taken = word.swap(0, Ordering::Relaxed);
        }
        Tally {
            pages: words.iter().map(|w| u64::from(w.count_ones())).sum(),
            again: self.again.swap(0, Ordering::Relaxed),
            blocks: words
                .chunks(BLOCK_WORDS)
                .filter(|block| block.iter().any(|&w| w != 0))
                .count() as u64,
        }
    }
}

pub use super::Relation;

/// The first count [`check`] found out of its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// In the preparation (true) or the window.
    pub preparation: bool,
    /// The vCPU the count is of; None for the aggregate.
    pub vcpu: Option<usize>,
    pub what: &'static str,
    pub relation: Relation,
    pub bound: u64,
    pub got: u64,
}

/// The fewest and most full walks pass `pass`'s window may count with
/// `vcpus` vCPUs faulting: the single-vCPU case's one is the first of up
/// to one a vCPU (the module's list); its none stays none.
pub fn full_walks(pass: Pass, vcpus: u64) -> (u64, u64) {
    let (_, want) = pass.expected(PAGES);
    if want.walks == 0 {
        (0, 0)
    } else {
        (want.walks, vcpus.max(want.walks))
    }
}

/// A pass's window as hv counted it.
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    /// hv's aggregate (faults summed over the vCPUs) and the service's.
    pub counts: &'a Counts,
    /// Each vCPU's, index order.
    pub vcpus: &'a [VcpuFaults],
    /// [`PageTally::take`]'s.
    pub pages: Tally,
}

/// The fewest and most of a count (equal: exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub least: u64,
    pub most: u64,
}

impl Bound {
    pub const fn exactly(n: u64) -> Self {
        Bound { least: n, most: n }
    }

    pub const fn within(least: u64, most: u64) -> Self {
        Bound { least, most }
    }

    /// `got`'s relation to this bound where it breaks it.
    const fn broken(self, got: u64) -> Option<(Relation, u64)> {
        if self.least == self.most && got != self.least {
            Some((Relation::Exactly, self.least))
        } else if got < self.least {
            Some((Relation::AtLeast, self.least))
        } else if got > self.most {
            Some((Relation::AtMost, self.most))
        } else {
            None
        }
    }
}

/// The fewest and most L2 faults on one page every one of `vcpus` vCPUs
/// writes in the dirty-log pass (vCPU 0 reads it first; no fault on it is
/// retried). Fewest 2: the first write to reach it is denied (hv's page
/// write-protected, unlogged), and after the log a fault maps it writable
/// (a write's again, or vCPU 0's read if it came after the log); every
/// other access may find the page mapped writable. Most 2n + 1: vCPU 0's
/// read, then every vCPU's write denied before the page is logged (hv
/// holds such denials for the others', `SharedDenials`) and each faulting
/// again once (the first retry maps it writable; a later one faults if it
/// was taken before that).
pub const fn shared_page_faults(vcpus: u64) -> (u64, u64) {
    (2, 2 * vcpus + 1)
}

/// The fewest and most L2 faults on one page [`written_by_l1`] with
/// `vcpus` vCPUs (vCPU [`L1_WRITER`]'s L1 writes it, its L2 does not
/// touch it). Fewest 1: L1's write may be the first and log it, then the
/// page's one L2 fault needed (vCPU 0's read, or another L2's write
/// before it: the preparation removed its shadow leaf) maps it writable.
/// Most 2n - 1: [`shared_page_faults`]' 2n + 1 less vCPU 1's L2's two.
pub const fn l1_page_faults(vcpus: u64) -> (u64, u64) {
    (1, (2 * vcpus).saturating_sub(1))
}

/// What pass `pass`'s window must count with `vcpus` vCPUs whatever the
/// interleaving (the module's list): the bounds not relative to another
/// count. [`check`] adds those that are (misses and hits of each other
/// and of the faults, walks of the misses, retries of the faults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    /// L2 faults, all vCPUs.
    pub faults: Bound,
    /// Data pages faulted ([`Tally::pages`]).
    pub pages: Bound,
    /// Faults on a data page already faulted: the faults less the pages.
    pub again: Bound,
    /// Walk misses.
    pub misses: Bound,
    /// Full walks ([`full_walks`]).
    pub full_walks: Bound,
    /// Whether some faults may be retried (`AlreadyMapped`, pass 9).
    pub retries: bool,
}

impl Expected {
    pub fn of(pass: Pass, vcpus: u64) -> Expected {
        let blocks = PAGES / BLOCK_PAGES;
        let (least_full, most_full) = full_walks(pass, vcpus);
        // Pass 7: the pages one vCPU writes fault three times (its read,
        // its denied write, the write again once logged); those every
        // vCPU's L2 writes ([`shared_written`] but [`l1_written`]) 2 to
        // 2n + 1 times ([`shared_page_faults`]), those vCPU 1's L1 writes
        // for its L2 1 to 2n - 1 times ([`l1_page_faults`]).
        let (written, shared, by_l1) = if pass == Pass::DirtyLog {
            (
                (0..vcpus).map(|k| written_share(k, vcpus)).sum(),
                shared_written(vcpus),
                l1_written(vcpus),
            )
        } else {
            (0, 0, 0)
        };
        let (least_shared, most_shared) = shared_page_faults(vcpus);
        let (least_by_l1, most_by_l1) = l1_page_faults(vcpus);
        let once = PAGES + 2 * (written - shared);
        let dirty_log_faults = Bound::within(
            once + (least_shared - 1) * (shared - by_l1) + (least_by_l1 - 1) * by_l1,
            once + (most_shared - 1) * (shared - by_l1) + (most_by_l1 - 1) * by_l1,
        );
        let every_page = Bound::exactly(PAGES);
        let one_to_n_a_block = Bound::within(blocks, vcpus.saturating_mul(blocks));
        let (faults, pages, misses) = match pass {
            Pass::AfterL0Unmap => (every_page, every_page, Bound::exactly(0)),
            Pass::DirtyLog => (dirty_log_faults, every_page, Bound::exactly(0)),
            Pass::Blocks => (every_page, every_page, one_to_n_a_block),
            Pass::AfterDirtyLogEnd => (one_to_n_a_block, one_to_n_a_block, Bound::exactly(0)),
            // Passes 1-5: every fault walks.
            _ => (every_page, every_page, every_page),
        };
        Expected {
            faults,
            pages,
            again: Bound::within(
                faults.least.saturating_sub(PAGES),
                faults.most.saturating_sub(PAGES),
            ),
            misses,
            full_walks: Bound::within(least_full, most_full),
            retries: pass == Pass::AfterDirtyLogEnd,
        }
    }

    /// What vCPU `index` of `vcpus` faults in pass `pass` (the faults
    /// answered and the retried alike).
    pub fn vcpu_faults(pass: Pass, index: u64, vcpus: u64) -> Bound {
        let own = share(index, vcpus);
        match pass {
            // vCPU 0: its shared pages fault 0 to 3 times on it (its read
            // and write find the page mapped writable if another vCPU's
            // write came first); the others: 0 to 2 more a shared page
            // their L2 writes (their write denied, then again; or none,
            // the page mapped writable before it), none on one vCPU 1's L1
            // writes for its L2 ([`written_by_l1`]).
            Pass::DirtyLog => {
                let written = own + 2 * written_share(index, vcpus);
                let shared = shared_written(vcpus);
                if index == 0 {
                    Bound::within(written - 3 * shared, written)
                } else {
                    Bound::within(written, written + 2 * l2_shared(index, vcpus))
                }
            }
            // A block's first touch on this vCPU, if no other vCPU's
            // fault mapped the block first.
            Pass::AfterDirtyLogEnd => Bound::within(0, PAGES / BLOCK_PAGES),
            _ => Bound::exactly(own),
        }
    }
}

/// The pages the vCPUs' L2s write in pass `pass` with `vcpus` vCPUs,
/// each counted once: pass 7's (none elsewhere is logged).
fn written_pages(pass: Pass, vcpus: u64) -> u64 {
    if pass == Pass::DirtyLog {
        (0..vcpus).map(|k| written_share(k, vcpus)).sum()
    } else {
        0
    }
}

/// The pages vCPU `index` (not 0) of `vcpus` writes from its L2 of those
/// every vCPU writes in the dirty-log pass: [`shared_written`], but for
/// vCPU [`L1_WRITER`] less those its L1 writes ([`l1_written`]).
const fn l2_shared(index: u64, vcpus: u64) -> u64 {
    if index == L1_WRITER {
        shared_written(vcpus) - l1_written(vcpus)
    } else {
        shared_written(vcpus)
    }
}

/// [`l2_shared`] in pass `pass` (7; none elsewhere).
const fn l2_shared_in(pass: Pass, index: u64, vcpus: u64) -> u64 {
    if matches!(pass, Pass::DirtyLog) {
        l2_shared(index, vcpus)
    } else {
        0
    }
}

/// The pages every vCPU writes in pass `pass` ([`shared_written`] in
/// pass 7, none elsewhere).
const fn shared_written_in(pass: Pass, vcpus: u64) -> u64 {
    if matches!(pass, Pass::DirtyLog) {
        shared_written(vcpus)
    } else {
        0
    }
}

/// Checks pass `pass`'s preparation (exact: vCPU 0's alone, as in the
/// single-vCPU case) and its window (the module's list: exact where the
/// interleaving cannot change it, bounded by the vCPUs where it can).
pub fn check(pass: Pass, prep: &Counts, window: &Window<'_>) -> Result<(), Mismatch> {
    let (want_prep, _) = pass.expected(PAGES);
    if let Some((what, bound, got)) = prep.mismatch(&want_prep) {
        return Err(Mismatch {
            preparation: true,
            vcpu: None,
            what,
            relation: Relation::Exactly,
            bound,
            got,
        });
    }
    let n = window.vcpus.len() as u64;
    let want = Expected::of(pass, n);
    let c = window.counts;
    let tally = window.pages;
    let exactly = Bound::exactly;
    let blocks = PAGES / BLOCK_PAGES;
    let retries: u64 = window.vcpus.iter().map(|v| v.retries).sum();
    // A block's first install is never retried.
    let most_retries = if want.retries {
        c.faults.saturating_sub(blocks)
    } else {
        0
    };
    let exact_misses = if want.misses.least == want.misses.most {
        want.misses.least
    } else {
        c.misses
    };
    let aggregate = [
        ("L2 faults", want.faults, c.faults),
        ("data pages faulted", want.pages, tally.pages),
        ("2 MiB blocks faulted", exactly(blocks), tally.blocks),
        (
            "faults on a data page already faulted",
            want.again,
            tally.again,
        ),
        // Each written page logged once, from an L2's write or from vCPU
        // 1's L1's own (on the pages it writes, whichever reached the log
        // first).
        (
            "pages logged dirty (from L2's writes and L1's own)",
            exactly(written_pages(pass, n)),
            window
                .vcpus
                .iter()
                .map(|v| v.logged.wrapping_add(v.l1_logged))
                .sum(),
        ),
        // A shared page's writers but the one that logged it: n - 1 (on
        // a page vCPU 1's L1 writes, its L1 one of the n).
        (
            "denied writes (L2's and L1's own) to a page another vCPU logged",
            Bound::within(0, n.saturating_sub(1) * shared_written_in(pass, n)),
            window
                .vcpus
                .iter()
                .map(|v| v.logged_by_another.wrapping_add(v.l1_logged_by_another))
                .sum(),
        ),
        ("stage-2 TLBIs from L1", exactly(0), c.stage2_tlbis),
        // Where the misses are exact, the hits are the faults less them,
        // checked first (a hit where none may be is named a hit); where
        // they are bounded (pass 8), the faults less those counted.
        ("hits", exactly(c.faults.wrapping_sub(exact_misses)), c.hits),
        ("misses", want.misses, c.misses),
        ("full walks", want.full_walks, c.walks),
        (
            "full + partial walks",
            exactly(c.misses),
            c.walks.wrapping_add(c.partial_walks),
        ),
        ("invalidations", exactly(0), c.invalidations),
        ("evictions", exactly(0), c.evictions),
        ("retried faults", Bound::within(0, most_retries), retries),
        // Each data fault (none retried but in pass 9) is the first on its
        // page or one again.
        (
            "data faults less those on a page already faulted",
            exactly(tally.pages),
            c.faults.wrapping_sub(retries).wrapping_sub(tally.again),
        ),
    ];
    let found = |vcpu, (what, bound, got): (&'static str, Bound, u64)| {
        bound.broken(got).map(|(relation, bound)| Mismatch {
            preparation: false,
            vcpu,
            what,
            relation,
            bound,
            got,
        })
    };
    if let Some(m) = aggregate.into_iter().find_map(|a| found(None, a)) {
        return Err(m);
    }
    let dirty_log = pass == Pass::DirtyLog;
    let shared = shared_written_in(pass, n);
    for (index, v) in window.vcpus.iter().enumerate() {
        let k = index as u64;
        // Pass 7: each vCPU its own written pages; a shared page on
        // whichever vCPU's write reached hv's log first, once; a vCPU's
        // write denied on a shared page another vCPU logged meanwhile is
        // counted apart, at most once a shared page its L2 writes. vCPU
        // 1's L1 writes some shared pages for its L2 ([`written_by_l1`]):
        // each of its stores denied at most once (then the page is
        // writable), logged or found logged by another vCPU's L2, none
        // if vCPU 0's L2 logged the page before it; no other vCPU's L1
        // writes a data page.
        let own_written = if dirty_log { written_share(k, n) } else { 0 };
        let l2_shared = if k == 0 {
            shared
        } else {
            l2_shared_in(pass, k, n)
        };
        let logged = if k == 0 {
            Bound::within(own_written - shared, own_written)
        } else {
            Bound::within(own_written, own_written + l2_shared)
        };
        let by_l1 = if k == L1_WRITER && dirty_log {
            l1_written(n)
        } else {
            0
        };
        // Every data page of the vCPU's but its first of the pass; in
        // pass 7 vCPU 0 may not fault on a shared page at all (another
        // vCPU's write mapped it writable first): that page is not
        // counted, nor the page after it, then two steps past vCPU 0's
        // previous (two a shared page skipped). The others' faults on a
        // shared page come between their read and their write of their
        // own page, which was counted at its read: they count neither way.
        let in_order = if follows_page_order(pass) {
            let all = share(k, n).saturating_sub(1);
            let skipped = if k == 0 { 2 * shared } else { 0 };
            Bound::within(all.saturating_sub(skipped), all)
        } else {
            Bound::within(0, u64::MAX)
        };
        // Pass 9: a vCPU's fault in a block is its first touch of it, and
        // after it (answered, or retried because another vCPU's install
        // came first) the block is mapped for the rest of the pass (no
        // invalidation runs in the window): no second fault in the block,
        // so a block's first install retried and mapped at the vCPU's
        // retry fails here (review 64; the aggregate `faults - blocks`
        // bound let it pass with the vCPUs each first in half the blocks).
        let block_refaults = if pass == Pass::AfterDirtyLogEnd {
            exactly(0)
        } else {
            Bound::within(0, u64::MAX)
        };
        let per_vcpu = [
            ("L2 faults", Expected::vcpu_faults(pass, k, n), v.faults),
            (
                "faults in a 2 MiB block the vCPU had faulted in",
                block_refaults,
                v.block_refaults,
            ),
            (
                "data faults",
                exactly(v.faults.wrapping_sub(v.retries)),
                v.data,
            ),
            (
                "retried faults other than AlreadyMapped",
                exactly(0),
                v.retries.wrapping_sub(v.already_mapped),
            ),
            ("pages logged dirty", logged, v.logged),
            (
                "denied writes to a page another vCPU logged",
                Bound::within(0, l2_shared),
                v.logged_by_another,
            ),
            // Each of its L2's stores denied at most once (then the page
            // is writable): logged or found logged, at most the pages its
            // L2 writes (vCPU 0's own are the shared ones).
            (
                "L2's denied writes, logged or to a page another vCPU logged",
                Bound::within(0, own_written + if k == 0 { 0 } else { l2_shared }),
                v.logged.wrapping_add(v.logged_by_another),
            ),
            (
                "pages logged from L1's own writes",
                Bound::within(0, by_l1),
                v.l1_logged,
            ),
            (
                "L1's own denied writes, logged or to a page another vCPU logged",
                Bound::within(0, by_l1),
                v.l1_logged.wrapping_add(v.l1_logged_by_another),
            ),
            ("exceptions given to L1", exactly(0), v.to_l1),
            ("data faults in the pass's order", in_order, v.in_order),
        ];
        if let Some(m) = per_vcpu.into_iter().find_map(|a| found(Some(index), a)) {
            return Err(m);
        }
    }
    Ok(())
}

/// What pass `pass` is, for hv's line: [`Pass::describe`], but for the
/// passes whose writes are this case's ([`written_by_l2`],
/// [`LOG_END_WRITE_READS`]).
pub fn describe(pass: Pass) -> &'static str {
    match pass {
        Pass::DirtyLog => {
            "after hv write-protected L1's data pages for its dirty log, each vCPU writing the first of every 32 pages it reads, in order, and every vCPU but 0 also vCPU 0's page at the same step (vCPU 1 every other one from its L1 itself)"
        }
        Pass::AfterDirtyLogEnd => {
            "after hv ended its dirty log (its 2 MiB blocks back, read-write; L1's blocks kept), each vCPU writing the first of every 64 pages it reads, in order"
        }
        _ => pass.describe(),
    }
}
const _: () = assert!(DIRTY_WRITE_READS == 32 && LOG_END_WRITE_READS == 64);

/// hv's verdict line's words for what pass `pass`'s check held, after
/// "ok: preparation exact, ".
pub fn held(pass: Pass) -> &'static str {
    match pass {
        Pass::AfterL0Unmap => {
            "each data page faulted exactly once, each vCPU its share, every fault a hit (misses 0, no walk)"
        }
        Pass::DirtyLog => {
            "each data page faulted, a page one vCPU wrote twice more (denied, then mapped writable), one every vCPU's L2 wrote 2 to 2n + 1 times in all, one vCPU 1's L1 wrote 1 to 2n - 1, each vCPU its share and two a page it alone wrote (vCPU 0 down to none on a shared page, the others up to two more on each their L2 wrote), every fault a hit (misses 0, no walk), a page one vCPU wrote logged on it, a shared page once on either (L2's write or L1's own), L1's own writes denied at most once a page it wrote"
        }
        Pass::Blocks => {
            "each data page faulted exactly once, each vCPU its share, misses 1 to n a block (a vCPU's first fault in it), hits the rest, full + partial walks = misses"
        }
        Pass::AfterDirtyLogEnd => {
            "every 2 MiB block faulted, 1 to n pages each (a vCPU's first touch of it, at most one a block each), every fault a hit (misses 0, no walk)"
        }
        _ => {
            "each data page faulted exactly once, each vCPU its share, hits 0, misses = faults, full + partial walks = misses"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCKS: u64 = PAGES / BLOCK_PAGES;

    /// Every page once, every block.
    const EVERY_PAGE: Tally = Tally {
        pages: PAGES,
        again: 0,
        blocks: BLOCKS,
    };

    fn halves() -> [VcpuFaults; 2] {
        [VcpuFaults {
            faults: PAGES / 2,
            data: PAGES / 2,
            in_order: PAGES / 2 - 1,
            // Every fault in a block after the vCPU's first there: many
            // a block outside pass 9.
            block_refaults: PAGES / 2 - BLOCKS,
            ..VcpuFaults::default()
        }; 2]
    }

    fn window_counts(full: u64) -> Counts {
        Counts {
            faults: PAGES,
            misses: PAGES,
            walks: full,
            partial_walks: PAGES - full,
            ..Counts::ZERO
        }
    }

    /// `check`'s mismatch as (vCPU, what, relation, bound, got).
    fn named(
        r: Result<(), Mismatch>,
    ) -> Result<(), (Option<usize>, &'static str, Relation, u64, u64)> {
        r.map_err(|m| (m.vcpu, m.what, m.relation, m.bound, m.got))
    }

    /// [`check`] of pass `pass` with its exact preparation, on a window of
    /// two vCPUs, its mismatch [`named`].
    fn on_two_vcpus(
        pass: Pass,
        (counts, vcpus, tally): (Counts, [VcpuFaults; 2], Tally),
    ) -> Result<(), (Option<usize>, &'static str, Relation, u64, u64)> {
        let (prep, _) = pass.expected(PAGES);
        let window = Window {
            counts: &counts,
            vcpus: &vcpus,
            pages: tally,
        };
        named(check(pass, &prep, &window))
    }

    #[test]
    fn shares_cover_every_page_once() {
        for n in 1..=7 {
            assert_eq!((0..n).map(|k| share(k, n)).sum::<u64>(), PAGES, "{n}");
        }
        assert_eq!(share(0, 2), 1024);
        assert_eq!(share(1, 3), 683);
        assert_eq!(share(2, 3), 682);
        assert_eq!(share(2, 2), 0);
        assert_eq!(pass(1), Some(Pass::FirstTouch));
        assert_eq!(pass(2), Some(Pass::AfterVmalls12));
        assert_eq!(pass(3), None);
        assert_eq!(pass(4), None);
        assert_eq!(pass(5), Some(Pass::Scattered));
        assert_eq!(pass(6), Some(Pass::AfterL0Unmap));
        assert_eq!(pass(7), Some(Pass::DirtyLog));
        assert_eq!(pass(8), Some(Pass::Blocks));
        assert_eq!(pass(9), Some(Pass::AfterDirtyLogEnd));
        assert_eq!(LAST, 9);
        assert_eq!(pass(LAST + 1), None);
        assert_eq!(full_walks(Pass::Scattered, 2), (1, 2));
        assert_eq!(full_walks(Pass::FirstTouch, 2), (1, 2));
        assert_eq!(full_walks(Pass::Blocks, 2), (1, 2));
        assert_eq!(full_walks(Pass::AfterIpas2LastLevel, 2), (0, 0));
        assert_eq!(full_walks(Pass::AfterL0Unmap, 2), (0, 0));
        assert_eq!(full_walks(Pass::DirtyLog, 2), (0, 0));
        assert_eq!(full_walks(Pass::AfterDirtyLogEnd, 2), (0, 0));
        assert_eq!(pass(0), None);
    }

    #[test]
    fn either_vcpu_may_walk_first() {
        let vcpus = halves();
        for pass in [
            Pass::FirstTouch,
            Pass::AfterVmalls12,
            Pass::AfterIpas2,
            Pass::Scattered,
        ] {
            let (prep, _) = pass.expected(PAGES);
            // One full walk (served one at a time) or one per vCPU (two
            // first faults served before a path was cached).
            for full in [1, 2] {
                let counts = window_counts(full);
                let w = Window {
                    counts: &counts,
                    vcpus: &vcpus,
                    pages: EVERY_PAGE,
                };
                assert_eq!(check(pass, &prep, &w), Ok(()), "{pass:?} {full}");
            }
            // Three full walks with two vCPUs: a path lost mid the pass.
            let counts = window_counts(3);
            let w = Window {
                counts: &counts,
                vcpus: &vcpus,
                pages: EVERY_PAGE,
            };
            assert_eq!(
                check(pass, &prep, &w).map_err(|m| (m.what, m.relation, m.bound, m.got)),
                Err(("full walks", Relation::AtMost, 2, 3))
            );
        }
    }

    /// `check` of `pass` on two vCPUs, each its share, every page once.
    fn on_halves(pass: Pass, prep: &Counts, counts: &Counts) -> Result<(), Mismatch> {
        let vcpus = halves();
        let window = Window {
            counts,
            vcpus: &vcpus,
            pages: EVERY_PAGE,
        };
        check(pass, prep, &window)
    }

    #[test]
    fn scattered_pass_needs_a_full_walk_and_no_hit() {
        let pass = Pass::Scattered;
        let (prep, _) = pass.expected(PAGES);
        // VMALLS12E1IS dropped the data region's paths: the first walk is
        // full (one too few: a path survived the TLBI).
        assert_eq!(
            on_halves(pass, &prep, &window_counts(0))
                .map_err(|m| (m.what, m.relation, m.bound, m.got)),
            Err(("full walks", Relation::AtLeast, 1, 0))
        );
        assert_eq!(on_halves(pass, &prep, &window_counts(1)), Ok(()));
        // A leaf that survived the TLBI: a hit, one miss fewer.
        let mut hit = window_counts(1);
        hit.hits += 1;
        hit.misses -= 1;
        hit.partial_walks -= 1;
        assert_eq!(
            on_halves(pass, &prep, &hit).map_err(|m| m.what),
            Err("hits")
        );
        // L1's VMALLS12E1IS never reached hv (the remap without its TLBI).
        let untrapped = Counts {
            stage2_tlbis: 0,
            ..prep
        };
        assert_eq!(
            on_halves(pass, &untrapped, &window_counts(1)).map_err(|m| (m.preparation, m.what)),
            Err((true, "stage-2 TLBIs from L1"))
        );
    }

    #[test]
    fn after_last_level_tlbis_no_walk_is_full() {
        let pass = Pass::AfterIpas2LastLevel;
        let (prep, _) = pass.expected(PAGES);
        let vcpus = halves();
        let w = |counts| Window {
            counts,
            vcpus: &vcpus,
            pages: EVERY_PAGE,
        };
        let (none, one) = (window_counts(0), window_counts(1));
        assert_eq!(check(pass, &prep, &w(&none)), Ok(()));
        // A path dropped by a last-level TLBI: a full walk.
        assert_eq!(
            check(pass, &prep, &w(&one)).map_err(|m| (m.what, m.relation, m.bound)),
            Err(("full walks", Relation::Exactly, 0))
        );
    }

    #[test]
    fn a_page_faulted_twice_or_a_vcpu_short_of_its_share_fails() {
        let pass = Pass::FirstTouch;
        let (prep, _) = pass.expected(PAGES);
        let counts = window_counts(1);
        let vcpus = halves();
        // One page faulted twice, another never (the sums still right).
        let w = Window {
            counts: &counts,
            vcpus: &vcpus,
            pages: Tally {
                pages: PAGES - 1,
                again: 1,
                blocks: BLOCKS,
            },
        };
        assert_eq!(
            check(pass, &prep, &w).map(|_| ()).map_err(|m| m.what),
            Err("data pages faulted")
        );
        // vCPU 1 faulted vCPU 0's page (its share one short, 0's one over).
        let mut skewed = halves();
        skewed[0].faults += 1;
        skewed[0].data += 1;
        skewed[1].faults -= 1;
        skewed[1].data -= 1;
        let w = Window {
            counts: &counts,
            vcpus: &skewed,
            pages: EVERY_PAGE,
        };
        assert_eq!(
            check(pass, &prep, &w).map_err(|m| (m.vcpu, m.what)),
            Err((Some(0), "L2 faults"))
        );
        // A retried fault on vCPU 1 (its fault again counted as data).
        let mut retried = halves();
        retried[1].faults += 1;
        retried[1].retries = 1;
        let w = Window {
            counts: &counts,
            vcpus: &retried,
            pages: EVERY_PAGE,
        };
        assert_eq!(
            named(check(pass, &prep, &w)),
            Err((None, "retried faults", Relation::Exactly, 0, 1))
        );
        // An exception given to L1.
        let mut injected = halves();
        injected[1].to_l1 = 1;
        let w = Window {
            counts: &counts,
            vcpus: &injected,
            pages: EVERY_PAGE,
        };
        assert_eq!(
            check(pass, &prep, &w).map_err(|m| (m.vcpu, m.what)),
            Err((Some(1), "exceptions given to L1"))
        );
    }

    #[test]
    fn hits_and_preparation_are_exact() {
        let pass = Pass::AfterVmalls12;
        let (prep, _) = pass.expected(PAGES);
        let vcpus = halves();
        // A hit: a leaf survived the VMALLS12E1IS.
        let hit = Counts {
            hits: 1,
            misses: PAGES - 1,
            partial_walks: PAGES - 2,
            ..window_counts(1)
        };
        let w = Window {
            counts: &hit,
            vcpus: &vcpus,
            pages: EVERY_PAGE,
        };
        assert_eq!(check(pass, &prep, &w).map_err(|m| m.what), Err("hits"));
        // The TLBI never reached the service.
        let skipped = Counts {
            invalidations: 0,
            ..prep
        };
        let counts = window_counts(1);
        let w = Window {
            counts: &counts,
            vcpus: &vcpus,
            pages: EVERY_PAGE,
        };
        assert_eq!(
            check(pass, &skipped, &w).map_err(|m| (m.preparation, m.what)),
            Err((true, "invalidations"))
        );
    }

    #[test]
    fn the_tally_counts_each_page_once_and_repeats() {
        let t = PageTally::new();
        for page in [0, 1, 2047, 1, PAGES, u64::MAX] {
            t.record(page);
        }
        assert_eq!(
            t.take(),
            Tally {
                pages: 3,
                again: 1,
                blocks: 2
            }
        );
        assert_eq!(t.take(), Tally::default());
        // A block is any page of its 512.
        for page in [511, 512, 1023, 1024, 1536] {
            t.record(page);
        }
        assert_eq!(t.take().blocks, 4);
        let c = VcpuCounters::new();
        c.begin_pass(2);
        c.fault(Some(0), None);
        c.fault(None, None);
        c.fault(Some(2), Some(RetryReason::InvalidationRaced));
        c.fault(Some(2), Some(RetryReason::AlreadyMapped));
        c.fault(Some(2), None);
        c.fault(Some(2), None);
        c.fault(Some(3), None);
        c.dirty_write(DirtyWrite::Logged);
        c.dirty_write(DirtyWrite::LoggedByAnother);
        c.dirty_write(DirtyWrite::Unresolved);
        c.l1_dirty_write(DirtyWrite::Logged);
        c.l1_dirty_write(DirtyWrite::Logged);
        c.l1_dirty_write(DirtyWrite::LoggedByAnother);
        c.l1_dirty_write(DirtyWrite::Unresolved);
        c.to_l1();
        let s = c.snapshot();
        assert_eq!(
            s,
            VcpuFaults {
                faults: 7,
                data: 4,
                retries: 2,
                already_mapped: 1,
                logged: 1,
                logged_by_another: 1,
                l1_logged: 2,
                l1_logged_by_another: 1,
                // Pages 0-3 are all block 0: every data fault after the
                // first, answered or retried, is one in a block faulted.
                block_refaults: 5,
                to_l1: 1,
                // 0 -> 2 (the step), 2 again (neither way), 2 -> 3 (not).
                in_order: 1,
            }
        );
        assert_eq!(s.since(&VcpuFaults::default()), s);
        // BEGIN forgets the blocks (not the count); a page past the data
        // is in no block.
        c.begin_pass(2);
        c.fault(Some(3), None);
        c.fault(Some(PAGES), None);
        c.fault(Some(BLOCK_PAGES), None);
        c.fault(Some(2 * BLOCK_PAGES - 1), Some(RetryReason::AlreadyMapped));
        assert_eq!(c.snapshot().since(&s).block_refaults, 1);
    }

    /// Pass 6: every fault a hit, on every interleaving.
    #[test]
    fn after_the_l0_move_every_fault_hits() {
        let pass = Pass::AfterL0Unmap;
        let (prep, window) = pass.expected(PAGES);
        assert_eq!(on_halves(pass, &prep, &window), Ok(()));
        // An L0 unmap that dropped the cached walks too: partial walks
        // (the paths kept) instead of hits.
        let walked = Counts {
            hits: 0,
            misses: PAGES,
            partial_walks: PAGES,
            ..window
        };
        assert_eq!(
            named(on_halves(pass, &prep, &walked)),
            Err((None, "hits", Relation::Exactly, PAGES, 0))
        );
        // A move hv never told the service: no invalidation before it.
        assert_eq!(
            on_halves(pass, &Counts::ZERO, &window).map_err(|m| (m.preparation, m.what)),
            Err((true, "invalidations"))
        );
    }

    /// Pass 7's window on two vCPUs as a right hv counts it.
    fn dirty_log_window() -> (Counts, [VcpuFaults; 2], Tally) {
        let written = [written_share(0, 2), written_share(1, 2)];
        let vcpus = written.map(|w| VcpuFaults {
            faults: PAGES / 2 + 2 * w,
            data: PAGES / 2 + 2 * w,
            in_order: PAGES / 2 - 1,
            logged: w,
            ..VcpuFaults::default()
        });
        let faults = PAGES + 2 * (written[0] + written[1]);
        let counts = Counts {
            faults,
            hits: faults,
            ..Counts::ZERO
        };
        let tally = Tally {
            again: 2 * (written[0] + written[1]),
            ..EVERY_PAGE
        };
        (counts, vcpus, tally)
    }

    #[test]
    fn every_vcpu_writes_and_each_write_faults_twice_more() {
        // 32 pages each of two vCPUs: 2048 reads and 64 writes, each
        // write two faults more, all hits.
        assert_eq!((written_share(0, 2), written_share(1, 2)), (32, 32));
        assert_eq!(written_share(2, 3), 22);
        assert!(written_by_l2(0, 2) && written_by_l2(1, 2) && written_by_l2(64, 2));
        assert!(written_by_l2(65, 2) && !written_by_l2(2, 2) && !written_by_l2(63, 2));
        assert!(!written_by_l2(PAGES, 2) && !written_by_l2(0, 0));
        for n in 1..=7 {
            let by_page = (0..PAGES).filter(|&i| written_by_l2(i, n)).count() as u64;
            let by_share: u64 = (0..n).map(|k| written_share(k, n)).sum();
            assert_eq!(by_page, by_share, "{n}");
            // vCPU k's written pages are its own.
            for k in 0..n {
                let own = (0..PAGES)
                    .filter(|&i| i % n == k && written_by_l2(i, n))
                    .count() as u64;
                assert_eq!(own, written_share(k, n), "{n} {k}");
            }
        }
        let (counts, vcpus, tally) = dirty_log_window();
        assert_eq!((counts.faults, counts.hits), (2176, 2176));
        let pass = Pass::DirtyLog;
        let (prep, _) = pass.expected(PAGES);
        let w = Window {
            counts: &counts,
            vcpus: &vcpus,
            pages: tally,
        };
        assert_eq!(check(pass, &prep, &w), Ok(()));
        // vCPU 1's writes never logged on vCPU 1 (hv's log the other
        // vCPU's alone): its count is short, whatever the aggregate.
        let mut unlogged = vcpus;
        unlogged[1].logged = 0;
        unlogged[0].logged += 32;
        let w = Window {
            counts: &counts,
            vcpus: &unlogged,
            pages: tally,
        };
        assert_eq!(
            named(check(pass, &prep, &w)),
            Err((Some(0), "pages logged dirty", Relation::AtMost, 32, 64))
        );
        // A write hv resolved without L2's store faulting again (two
        // faults, not three): one fault fewer on vCPU 1 and its page.
        let once = Counts {
            faults: counts.faults - 1,
            hits: counts.hits - 1,
            ..counts
        };
        let mut short = vcpus;
        short[1].faults -= 1;
        short[1].data -= 1;
        let w = Window {
            counts: &once,
            vcpus: &short,
            pages: Tally {
                again: tally.again - 1,
                ..tally
            },
        };
        assert_eq!(
            named(check(pass, &prep, &w)),
            Err((Some(1), "L2 faults", Relation::AtLeast, 1088, 1087))
        );
    }

    /// Pass 7's window on two vCPUs when vCPU 1's write to each of the 32
    /// pages both write (vCPU 0's) races vCPU 0's: vCPU 0 faults
    /// `vcpu0_on_shared` times on each of the 16 vCPU 1's L2 writes and
    /// `vcpu0_on_l1s` on each of the 16 vCPU 1's L1 writes
    /// ([`written_by_l1`]), vCPU 1 `vcpu1_on_shared` times on each of the
    /// 16 its L2 writes.
    fn raced_window(
        vcpu0_on_shared: u64,
        vcpu0_on_l1s: u64,
        vcpu1_on_shared: u64,
    ) -> (Counts, [VcpuFaults; 2], Tally) {
        let (counts, mut vcpus, tally) = dirty_log_window();
        let shared = shared_written(2);
        let by_l1 = l1_written(2);
        // dirty_log_window's vCPU 0 faults 3 times on each, vCPU 1 none.
        vcpus[0].faults = vcpus[0].faults - 3 * shared
            + vcpu0_on_shared * (shared - by_l1)
            + vcpu0_on_l1s * by_l1;
        vcpus[0].data = vcpus[0].faults;
        vcpus[1].faults += vcpu1_on_shared * (shared - by_l1);
        vcpus[1].data = vcpus[1].faults;
        let faults = vcpus[0].faults + vcpus[1].faults;
        let counts = Counts {
            faults,
            hits: faults,
            ..counts
        };
        let tally = Tally {
            again: faults - PAGES,
            ..tally
        };
        (counts, vcpus, tally)
    }

    /// hv holds a denial of a shared page until every vCPU's is in.
    #[test]
    fn shared_denials_are_all_in_once_every_vcpu_was_denied() {
        let denials = SharedDenials::<3>::new();
        assert!(!denials.all_denied(4, 2));
        denials.deny(0, 4);
        assert!(!denials.all_denied(4, 2));
        denials.deny(1, 5);
        assert!(!denials.all_denied(4, 2));
        denials.deny(1, 4);
        assert!(denials.all_denied(4, 2) && !denials.all_denied(4, 3));
        // Past the arrays: nothing recorded, never all in.
        denials.deny(3, 4);
        denials.deny(0, PAGES);
        assert!(!denials.all_denied(PAGES, 1) && !denials.all_denied(4, 4));
        denials.clear();
        assert!(!denials.all_denied(4, 1));
    }

    /// Every vCPU but 0 also writes vCPU 0's written pages (vCPU 1 every
    /// other one from its L1); a shared page's faults are bounded as the
    /// interleavings allow, and its log is on either vCPU, once.
    #[test]
    fn a_page_both_vcpus_write_is_logged_once_on_either() {
        assert_eq!(shared_written(2), 32);
        assert_eq!(shared_written(1), 0);
        assert_eq!(shared_page_faults(2), (2, 5));
        assert_eq!(l1_page_faults(2), (1, 3));
        assert!(written_by_every_vcpu(0, 2) && written_by_every_vcpu(64, 2));
        assert!(!written_by_every_vcpu(1, 2) && !written_by_every_vcpu(2, 2));
        assert!(!written_by_every_vcpu(0, 1));
        // L2 page 0 is L1 page 4.
        assert!(l1_page_written_by_every_vcpu(4, 2) && !l1_page_written_by_every_vcpu(5, 2));
        for n in 2..=4 {
            let every = (0..PAGES).filter(|&i| written_by_every_vcpu(i, n)).count() as u64;
            assert_eq!(every, shared_written(n), "{n}");
        }
        let check_window = |window| on_two_vcpus(Pass::DirtyLog, window);
        // Both denied before either logged: vCPU 0 logs, vCPU 1's denial
        // (its L2's or its L1's) finds the page logged (counted apart)
        // and its L2's write faults again: 5 faults a page vCPU 1's L2
        // writes, 3 one its L1 writes.
        let (counts, mut vcpus, tally) = raced_window(3, 3, 2);
        vcpus[1].logged_by_another = 16;
        vcpus[1].l1_logged_by_another = 16;
        assert_eq!(counts.faults, 2208);
        assert_eq!(check_window((counts, vcpus, tally)), Ok(()));
        // vCPU 1's write first on every shared page (denied, logged on
        // vCPU 1, its L2's or its L1's, mapped writable): vCPU 0's read
        // and write find a page its L2 wrote so, no fault, and its next
        // page is two steps past its previous (page 0 skipped makes page
        // 2 its first: one fewer; each other such page two); on a page
        // vCPU 1's L1 wrote its read is the page's one fault, mapping it
        // writable.
        let (counts, mut vcpus, tally) = raced_window(0, 1, 2);
        vcpus[1].logged += 16;
        vcpus[1].l1_logged = 16;
        vcpus[0].logged = 0;
        vcpus[0].in_order -= 1 + 2 * 15;
        assert_eq!(counts.faults, 2128);
        assert_eq!(check_window((counts, vcpus, tally)), Ok(()));
        // A shared page logged on both vCPUs (twice): the sum is more than
        // the pages written.
        let (counts, mut vcpus, tally) = raced_window(0, 1, 2);
        vcpus[1].logged += 16;
        vcpus[1].l1_logged = 16;
        assert_eq!(
            check_window((counts, vcpus, tally)),
            Err((
                None,
                "pages logged dirty (from L2's writes and L1's own)",
                Relation::Exactly,
                64,
                96
            ))
        );
        // L1's logs counted on its L2's counters (or L1's writes logged
        // and not counted): the sum is short of the pages written.
        let (counts, mut vcpus, tally) = raced_window(0, 1, 2);
        vcpus[1].logged += 16;
        vcpus[0].logged = 0;
        vcpus[0].in_order -= 1 + 2 * 15;
        assert_eq!(
            check_window((counts, vcpus, tally)),
            Err((
                None,
                "pages logged dirty (from L2's writes and L1's own)",
                Relation::Exactly,
                64,
                48
            ))
        );
        // Miscounted logs on the window of both vCPUs denied on every
        // shared page, each with the first count it breaks.
        type Miscount = fn(&mut [VcpuFaults; 2]);
        let miscounts: [(Miscount, _); 5] = [
            // A denial found logged counted as one more log neither way:
            // more of them than the shared pages' other writers.
            (
                |v| {
                    v[1].logged_by_another = 16;
                    v[1].l1_logged_by_another = 17;
                },
                (
                    None,
                    "denied writes (L2's and L1's own) to a page another vCPU logged",
                    Relation::AtMost,
                    32,
                    33,
                ),
            ),
            // vCPU 1's L2 found logged by another on more pages than it
            // writes of the shared ones (an L1 write counted as its L2's).
            (
                |v| {
                    v[1].logged_by_another = 17;
                    v[1].l1_logged_by_another = 15;
                },
                (
                    Some(1),
                    "denied writes to a page another vCPU logged",
                    Relation::AtMost,
                    16,
                    17,
                ),
            ),
            // L1's outcomes counted on its L2's counters (a QEMU run's:
            // L2's logs vCPU 0 17, vCPU 1 41, L1's 6; found logged L2's 3,
            // L1's 5): vCPU 1's L2 logged or found logged more writes than
            // it made, each bound apart holding.
            (
                |v| {
                    v[0].logged = 17;
                    v[1].logged = 41 + 6;
                    v[1].logged_by_another = 3 + 5;
                },
                (
                    Some(1),
                    "L2's denied writes, logged or to a page another vCPU logged",
                    Relation::AtMost,
                    48,
                    55,
                ),
            ),
            // L1's stores denied more often than it wrote pages (one
            // denied again after its page was resolved).
            (
                |v| {
                    v[1].l1_logged = 1;
                    v[1].l1_logged_by_another = 16;
                    v[0].logged -= 1;
                },
                (
                    Some(1),
                    "L1's own denied writes, logged or to a page another vCPU logged",
                    Relation::AtMost,
                    16,
                    17,
                ),
            ),
            // An L1 write logged on vCPU 0, whose L1 writes no data page.
            (
                |v| {
                    v[0].logged -= 1;
                    v[0].l1_logged = 1;
                },
                (
                    Some(0),
                    "pages logged from L1's own writes",
                    Relation::Exactly,
                    0,
                    1,
                ),
            ),
        ];
        for (miscount, (vcpu, what, relation, bound, got)) in miscounts {
            let (counts, mut vcpus, tally) = raced_window(3, 3, 2);
            vcpus[1].logged_by_another = 16;
            vcpus[1].l1_logged_by_another = 16;
            miscount(&mut vcpus);
            assert_eq!(
                check_window((counts, vcpus, tally)),
                Err((vcpu, what, relation, bound, got))
            );
        }
        // Six faults on a shared page (a resolved write denied again): past
        // the most.
        let (counts, vcpus, tally) = raced_window(3, 3, 3);
        assert_eq!(
            check_window((counts, vcpus, tally)),
            Err((None, "L2 faults", Relation::AtMost, 2208, 2224))
        );
        // vCPU 1's L2 faulting on a page its L1 writes (its L2 wrote it
        // too): within the aggregate, past vCPU 1's most.
        let (mut counts, mut vcpus, mut tally) = raced_window(3, 1, 2);
        vcpus[1].faults += 1;
        vcpus[1].data += 1;
        counts.faults += 1;
        counts.hits += 1;
        tally.again += 1;
        assert_eq!(
            check_window((counts, vcpus, tally)),
            Err((Some(1), "L2 faults", Relation::AtMost, 1120, 1121))
        );
        // No L2 fault on a page vCPU 1's L1 wrote (its shadow leaf kept
        // through the preparation): short of the fewest.
        let (counts, mut vcpus, tally) = raced_window(0, 0, 2);
        vcpus[1].logged += 16;
        vcpus[1].l1_logged = 16;
        vcpus[0].logged = 0;
        assert_eq!(
            check_window((counts, vcpus, tally)),
            Err((None, "L2 faults", Relation::AtLeast, 2128, 2112))
        );
        // vCPU 0 skipping more pages in its order than the shared ones.
        let (counts, mut vcpus, tally) = raced_window(0, 1, 2);
        vcpus[1].logged += 16;
        vcpus[1].l1_logged = 16;
        vcpus[0].logged = 0;
        vcpus[0].in_order -= 65;
        assert_eq!(
            check_window((counts, vcpus, tally)),
            Err((
                Some(0),
                "data faults in the pass's order",
                Relation::AtLeast,
                959,
                958
            ))
        );
    }

    /// vCPU 1's L1 writes every other page of vCPU 0's written ones (its
    /// odd write steps) for its L2, never the first (L2 page 0, the
    /// race-unresolved twin's): half of them, and none with one vCPU.
    #[test]
    fn l1_writes_every_other_shared_page_on_vcpu_1() {
        assert_eq!(l1_written(2), 16);
        assert_eq!(l1_written(1), 0);
        assert!(!written_by_l1(0, 2) && written_by_l1(64, 2));
        assert!(!written_by_l1(128, 2) && written_by_l1(192, 2));
        assert!(!written_by_l1(65, 2) && !written_by_l1(64, 1));
        for n in 2..=7 {
            let by_l1 = (0..PAGES).filter(|&i| written_by_l1(i, n)).count() as u64;
            assert_eq!(by_l1, l1_written(n), "{n}");
            assert!(
                (0..PAGES).all(|i| !written_by_l1(i, n) || written_by_every_vcpu(i, n)),
                "{n}"
            );
        }
        // vCPU 1's L2 writes the others: its bound of faults and of
        // writes found logged counts those alone.
        assert_eq!(l2_shared(1, 2), 16);
        assert_eq!(l2_shared(2, 3), shared_written(3));
        assert_eq!(
            Expected::vcpu_faults(Pass::DirtyLog, 1, 2),
            Bound::within(1088, 1120)
        );
        // At three vCPUs: vCPU 0's 683 pages, 22 written, 11 of them by
        // vCPU 1's L1; a page it writes faults 1 to 5 times.
        assert_eq!((shared_written(3), l1_written(3)), (22, 11));
        assert_eq!(l1_page_faults(3), (1, 5));
        assert_eq!(L1_WRITE_MARK & (PAGES - 1), 0);
    }

    #[test]
    fn the_dirty_log_must_hold_every_vcpus_pages_and_nothing_else() {
        let mut log = DirtyLog::new();
        let pages = |n| (0..PAGES).filter(move |&p| dirty_after_dirty_log_pass(p, n));
        for page in pages(2) {
            assert!(log.log(page));
        }
        assert_eq!(check_dirty_log(&log, 2), Ok(64));
        // L2 page 0 is L1 page 4, L2 page 1 (vCPU 1's first) L1 page 5.
        assert!(dirty_after_dirty_log_pass(4, 2) && dirty_after_dirty_log_pass(5, 2));
        assert!(!dirty_after_dirty_log_pass(0, 2) && !dirty_after_dirty_log_pass(PAGES, 2));
        // Another vCPU count's set is not this one (L2 page 2 is vCPU 2's
        // first of three).
        assert_eq!(check_dirty_log(&log, 3), Err(DirtyMismatch::Missing(6)));
        // A log without vCPU 1's pages (a log that took one vCPU's writes
        // only): the first page vCPU 1 wrote is missing.
        let mut vcpu0_only = DirtyLog::new();
        for page in pages(2).filter(|p| (p + PAGES - LAST_ROTATION).is_multiple_of(2)) {
            assert!(vcpu0_only.log(page));
        }
        assert_eq!(
            check_dirty_log(&vcpu0_only, 2),
            Err(DirtyMismatch::Missing(5))
        );
        // The single-vCPU rule's set (every 8th L2 page) is not it.
        let mut single = DirtyLog::new();
        for page in (0..PAGES).filter(|&p| super::super::written_by_l2_in_dirty_log_pass(p)) {
            assert!(single.log(page));
        }
        assert_eq!(check_dirty_log(&single, 2), Err(DirtyMismatch::Missing(5)));
    }

    #[test]
    fn in_the_block_pass_each_vcpu_misses_at_most_once_a_block() {
        let pass = Pass::Blocks;
        let (prep, one_each) = pass.expected(PAGES);
        // One miss a block (the single-vCPU case's), or one a block for
        // each vCPU (both vCPUs' first faults in it walked before either
        // cached it), the first walk full or two.
        assert_eq!(on_halves(pass, &prep, &one_each), Ok(()));
        let two_each = Counts {
            hits: PAGES - 2 * BLOCKS,
            misses: 2 * BLOCKS,
            walks: 2,
            partial_walks: 2 * BLOCKS - 2,
            ..one_each
        };
        assert_eq!(on_halves(pass, &prep, &two_each), Ok(()));
        // A third miss in a block (a cached block lost, or walked at
        // 4 KiB): out of the bound.
        let three = Counts {
            hits: PAGES - 2 * BLOCKS - 1,
            misses: 2 * BLOCKS + 1,
            partial_walks: 2 * BLOCKS - 1,
            ..two_each
        };
        assert_eq!(
            named(on_halves(pass, &prep, &three)),
            Err((None, "misses", Relation::AtMost, 8, 9))
        );
        // A cache that keeps walks at 4 KiB: every page misses.
        let per_page = Counts {
            hits: 0,
            misses: PAGES,
            partial_walks: PAGES - 1,
            ..one_each
        };
        assert_eq!(
            named(on_halves(pass, &prep, &per_page)),
            Err((None, "misses", Relation::AtMost, 8, PAGES))
        );
        // Hits and misses that do not add up to the faults.
        let lost = Counts {
            hits: one_each.hits - 1,
            ..one_each
        };
        assert_eq!(
            on_halves(pass, &prep, &lost).map_err(|m| m.what),
            Err("hits")
        );
    }

    /// Pass 9's window on two vCPUs: `faults[k]` vCPU k's faults, of
    /// which `retried[k]` answered `Retry(AlreadyMapped)`, every block
    /// faulted.
    fn log_end(faults: [u64; 2], retried: [u64; 2]) -> (Counts, [VcpuFaults; 2], Tally) {
        let vcpus = [0, 1].map(|k| VcpuFaults {
            faults: faults[k],
            data: faults[k] - retried[k],
            retries: retried[k],
            already_mapped: retried[k],
            ..VcpuFaults::default()
        });
        let total = faults[0] + faults[1];
        let counts = Counts {
            faults: total,
            hits: total,
            ..Counts::ZERO
        };
        let answered = total - retried[0] - retried[1];
        let tally = Tally {
            pages: answered,
            again: 0,
            blocks: BLOCKS,
        };
        (counts, vcpus, tally)
    }

    #[test]
    fn after_the_log_ends_two_vcpus_may_fault_into_one_block() {
        let run = |window| on_two_vcpus(Pass::AfterDirtyLogEnd, window);
        // vCPU 0 first into every block (vCPU 1 then finds them mapped),
        // the other way round, both into every block (the second install
        // finding the block there: a hit answered `Mapped`), or with some
        // of the second faults retried as `AlreadyMapped`.
        assert_eq!(run(log_end([4, 0], [0, 0])), Ok(()));
        assert_eq!(run(log_end([0, 4], [0, 0])), Ok(()));
        assert_eq!(run(log_end([4, 4], [0, 0])), Ok(()));
        assert_eq!(run(log_end([3, 2], [0, 1])), Ok(()));
        assert_eq!(run(log_end([4, 4], [2, 2])), Ok(()));
        // A vCPU faulting twice into a block (its block lost): five.
        assert_eq!(
            run(log_end([5, 0], [0, 0])),
            Err((Some(0), "L2 faults", Relation::AtMost, 4, 5))
        );
        // A block's first install retried too: more retries than faults
        // past one a block.
        let (counts, vcpus, tally) = log_end([4, 4], [4, 1]);
        assert_eq!(
            run((counts, vcpus, Tally { pages: 4, ..tally })),
            Err((None, "retried faults", Relation::AtMost, 4, 5))
        );
        // Review 64: each vCPU first into two of the blocks, its first
        // install there answered `Retry(AlreadyMapped)` (nothing mapped)
        // and mapped at its retry: each vCPU's four faults are two blocks'
        // two, which the aggregate bound (retries 4 at most faults 8 -
        // blocks 4) and each vCPU's (at most 4) let pass; the per-block
        // tally does not.
        let (counts, mut vcpus, tally) = log_end([4, 4], [2, 2]);
        for v in &mut vcpus {
            v.block_refaults = 2;
        }
        assert_eq!(
            run((counts, vcpus, Tally { pages: 4, ..tally })),
            Err((
                Some(0),
                "faults in a 2 MiB block the vCPU had faulted in",
                Relation::Exactly,
                0,
                2
            ))
        );
        // L1's own write logged, or denied on a page another vCPU logged:
        // L1 writes its data pages in the dirty-log pass alone.
        for (l1_logged, l1_logged_by_another, what) in [
            (1, 0, "pages logged dirty (from L2's writes and L1's own)"),
            (
                0,
                1,
                "denied writes (L2's and L1's own) to a page another vCPU logged",
            ),
        ] {
            let (counts, mut vcpus, tally) = log_end([4, 0], [0, 0]);
            vcpus[1].l1_logged = l1_logged;
            vcpus[1].l1_logged_by_another = l1_logged_by_another;
            assert_eq!(
                run((counts, vcpus, tally)),
                Err((None, what, Relation::Exactly, 0, 1))
            );
        }
        // A retry of another reason (an invalidation raced the install).
        let (counts, mut vcpus, tally) = log_end([4, 4], [0, 1]);
        vcpus[1].already_mapped = 0;
        assert_eq!(
            run((counts, vcpus, tally)),
            Err((
                Some(1),
                "retried faults other than AlreadyMapped",
                Relation::Exactly,
                0,
                1
            ))
        );
        // A block that never faulted (a shadow leaf of it kept).
        let (counts, vcpus, tally) = log_end([3, 0], [0, 0]);
        assert_eq!(
            run((counts, vcpus, Tally { blocks: 3, ..tally })),
            Err((None, "L2 faults", Relation::AtLeast, 4, 3))
        );
        // A fault that walked (the cached blocks lost with the unmap).
        let (mut counts, vcpus, tally) = log_end([4, 0], [0, 0]);
        counts.hits -= 1;
        counts.misses = 1;
        counts.partial_walks = 1;
        assert_eq!(
            run((counts, vcpus, tally)),
            Err((None, "hits", Relation::Exactly, 4, 3))
        );
        // hv's pages left 4 KiB (no 2 MiB shadow blocks): every page
        // faults.
        let (counts, vcpus, _) = log_end([PAGES / 2, PAGES / 2], [0, 0]);
        assert_eq!(
            run((counts, vcpus, EVERY_PAGE)),
            Err((None, "L2 faults", Relation::AtMost, 8, PAGES))
        );
    }

    /// The pages one vCPU of `vcpus` reads in pass `pass` (its positions
    /// k, k + n, ... of the order), as L2 computes them.
    fn l2_pages(pass: Pass, k: u64, vcpus: u64) -> impl Iterator<Item = u64> {
        let stride = if pass == Pass::Scattered {
            SCATTER_STRIDE
        } else {
            1
        };
        (k..PAGES)
            .step_by(vcpus as usize)
            .map(move |j| j * stride % PAGES)
    }

    /// Review 63 R63-1: each vCPU's data faults must follow its pass's
    /// order. L2's own reads, counted as hv counts them, give every data
    /// fault but the first in order; the in-order reads counted against
    /// pass 5's scattered step (an L2 or L1 that ignored the stride), or
    /// the scattered ones against an in-order pass's, give almost none,
    /// and `check` names the vCPU.
    #[test]
    fn each_vcpus_faults_follow_the_pass_order() {
        assert_eq!(page_step(Pass::AfterVmalls12, 2), 2);
        assert_eq!(page_step(Pass::Scattered, 2), 14);
        assert_eq!(page_step(Pass::Scattered, 1), SCATTER_STRIDE);
        assert!(follows_page_order(Pass::DirtyLog) && !follows_page_order(Pass::AfterDirtyLogEnd));
        let counted = |pass: Pass, read_as: Pass, vcpus: u64| -> alloc::vec::Vec<VcpuFaults> {
            (0..vcpus)
                .map(|k| {
                    let c = VcpuCounters::new();
                    // Another pass's pages first: BEGIN forgets them.
                    c.begin_pass(page_step(Pass::FirstTouch, vcpus));
                    l2_pages(Pass::FirstTouch, k, vcpus).for_each(|p| c.fault(Some(p), None));
                    let before = c.snapshot();
                    c.begin_pass(page_step(pass, vcpus));
                    l2_pages(read_as, k, vcpus).for_each(|p| c.fault(Some(p), None));
                    c.snapshot().since(&before)
                })
                .collect()
        };
        for vcpus in [2, 3] {
            for pass in [Pass::FirstTouch, Pass::AfterVmalls12, Pass::Scattered] {
                let v = counted(pass, pass, vcpus);
                for (k, f) in v.iter().enumerate() {
                    assert_eq!(f.data, share(k as u64, vcpus), "{pass:?} {vcpus}");
                    assert_eq!(f.in_order, f.data - 1, "{pass:?} {vcpus} vCPU {k}");
                }
            }
        }
        let prep = Pass::Scattered.expected(PAGES).0;
        let counts = window_counts(1);
        let in_order = counted(Pass::Scattered, Pass::AfterVmalls12, 2);
        assert!(in_order.iter().all(|f| f.in_order == 0), "{in_order:?}");
        let w = Window {
            counts: &counts,
            vcpus: &in_order,
            pages: EVERY_PAGE,
        };
        assert_eq!(
            named(check(Pass::Scattered, &prep, &w)),
            Err((
                Some(0),
                "data faults in the pass's order",
                Relation::Exactly,
                PAGES / 2 - 1,
                0
            ))
        );
        let prep = Pass::AfterVmalls12.expected(PAGES).0;
        let scattered = counted(Pass::AfterVmalls12, Pass::Scattered, 2);
        let w = Window {
            counts: &counts,
            vcpus: &scattered,
            pages: EVERY_PAGE,
        };
        assert_eq!(
            check(Pass::AfterVmalls12, &prep, &w).map_err(|m| (m.vcpu, m.what)),
            Err((Some(0), "data faults in the pass's order"))
        );
    }
}
