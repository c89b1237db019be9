//! `hv.nested=tlbi-race` on the machine: hv's counts of what L1's vCPU 0
//! issues and what hv gives L1 between L1's BEGIN and END calls, and the
//! verdict at END (`crate::nested::tlbi_race::check`; L1:
//! `arch::nested_l1_tlbi_race`).
//!
//! The counters are shared by the vCPUs (relaxed atomics, read by vCPU 0
//! at END, after vCPU 1 reported: its last exit to hv is behind it).

use super::{exit, println, ExitStatus, GuestFrame, Nested, Vcpu};
use crate::nested::tlbi_race::{self, HvCounts, L1Report, TlbiForm, FORMS};
use core::sync::atomic::{AtomicU64, Ordering};
use ipc::tlbi::TlbiOp;

/// L1's stage-2 TLBIs trapped on vCPU 0, by [`TlbiForm::index`].
static TLBIS: [AtomicU64; FORMS] = [const { AtomicU64::new(0) }; FORMS];
/// Stage-2 TLBIs trapped on another vCPU or of an operation L1 never
/// issues (ALLE1).
static OTHER_TLBIS: AtomicU64 = AtomicU64::new(0);
/// L2 stage-2 faults the service answered with a fault for L1, given to
/// L1.
static INJECTED: AtomicU64 = AtomicU64::new(0);
/// Every exception hv gave L1 but its L2's HVCs (the injected faults
/// included) and every abort it gave an L2.
static TO_L1: AtomicU64 = AtomicU64::new(0);

/// The counts at BEGIN.
static BEGIN: spin::Mutex<Option<Snapshot>> = spin::Mutex::new(None);

#[derive(Clone, Copy, Debug)]
struct Snapshot {
    tlbis: [u64; FORMS],
    other_tlbis: u64,
    injected: u64,
    to_l1: u64,
    invalidations: u64,
    raced: u64,
}

fn snapshot(nested: &Nested) -> Snapshot {
    let stats = nested.service.stats();
    Snapshot {
        tlbis: core::array::from_fn(|i| TLBIS[i].load(Ordering::Acquire)),
        other_tlbis: OTHER_TLBIS.load(Ordering::Acquire),
        injected: INJECTED.load(Ordering::Acquire),
        to_l1: TO_L1.load(Ordering::Acquire),
        invalidations: stats.invalidations,
        raced: stats.raced,
    }
}

/// Counts L1's trapped stage-2 TLBI `op` on vCPU `vcpu_index`.
pub(super) fn tlbi(vcpu_index: usize, op: TlbiOp) {
    match TlbiForm::index_of_op(op) {
        Some(i) if vcpu_index == 0 => TLBIS[i].fetch_add(1, Ordering::Relaxed),
        _ => OTHER_TLBIS.fetch_add(1, Ordering::Relaxed),
    };
}

/// Counts a stage-2 fault of L2 given to L1 (the service's `Inject`).
pub(super) fn injected() {
    INJECTED.fetch_add(1, Ordering::Relaxed);
}

/// Counts an exception given to L1 (not an L2 HVC) or an abort to L2.
pub(super) fn to_l1() {
    TO_L1.fetch_add(1, Ordering::Relaxed);
}

fn failed(what: core::fmt::Arguments) -> ! {
    println!("hv: nested: tlbi-race: FAILED: {what}");
    exit(ExitStatus::Failure)
}

/// L1's BEGIN (vCPU 0, before its first generation): hv's counts now.
/// x0 returns 0.
pub(super) fn begin(nested: &Nested, vcpu: &Vcpu, frame: &mut GuestFrame) {
    if vcpu.index != 0 {
        failed(format_args!(
            "vCPU {} called BEGIN (only vCPU 0 drives the generations)",
            vcpu.index
        ));
    }
    let mut begin = BEGIN.lock();
    if begin.is_some() {
        failed(format_args!("L1 called BEGIN twice"));
    }
    *begin = Some(snapshot(nested));
    frame.x[0] = 0;
}

/// L1's END (vCPU 0, after vCPU 1's report; x1 the generations, x2 L2's
/// reads, x3 the stale ones, x4 the generations L2 read, x5 the faults
/// vCPU 1's L1 resumed, x6 L1's stage-2 TLBIs, x7 and x8 the first stale
/// read's value and generation): hv's verdict; a failure ends the run.
/// x0 returns 0.
pub(super) fn end(nested: &Nested, vcpu: &Vcpu, frame: &mut GuestFrame) {
    if vcpu.index != 0 {
        failed(format_args!(
            "vCPU {} called END (only vCPU 0 drives the generations)",
            vcpu.index
        ));
    }
    let Some(begin) = BEGIN.lock().take() else {
        failed(format_args!("L1 called END without BEGIN"));
    };
    let now = snapshot(nested);
    let l1 = L1Report {
        generations: frame.x[1],
        reads: frame.x[2],
        stale: frame.x[3],
        generations_read: frame.x[4],
        resumed: frame.x[5],
        tlbis: frame.x[6],
        first_stale: (frame.x[7], frame.x[8]),
    };
    let injected = now.injected.wrapping_sub(begin.injected);
    let hv = HvCounts {
        tlbis: core::array::from_fn(|i| now.tlbis[i].wrapping_sub(begin.tlbis[i])),
        other_tlbis: now.other_tlbis.wrapping_sub(begin.other_tlbis),
        invalidations: now.invalidations.wrapping_sub(begin.invalidations),
        injected,
        other_to_l1: now.to_l1.wrapping_sub(begin.to_l1).wrapping_sub(injected),
        raced: now.raced.wrapping_sub(begin.raced),
    };
    if let Err(failure) = tlbi_race::check(&l1, &hv) {
        failed(format_args!("{failure}"));
    }
    let total: u64 = hv.tlbis.iter().sum();
    println!(
        "hv: nested: tlbi-race: PASS: 0 stale reads: every read vCPU 1's L2 began after L1 published a generation saw that generation's mapping or a later one; {} generations, each read by L2 after its publication; {total} stage-2 TLBIs from L1's vCPU 0 ({}), each one invalidation of the service; nothing given to L1 but its L2's stage-2 faults in a break, each resumed; L2 reads {}, faults in a break given to L1 and resumed {}, translations the service refused for a racing invalidation {}",
        l1.generations,
        FormCounts(&hv.tlbis),
        l1.reads,
        hv.injected,
        hv.raced,
    );
    frame.x[0] = 0;
}

/// "IPAS2E1IS 40, ..." for hv's line.
struct FormCounts<'a>(&'a [u64; FORMS]);

impl core::fmt::Display for FormCounts<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (n, form) in TlbiForm::ALL.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", form.name(), self.0[form.index()])?;
        }
        Ok(())
    }
}
