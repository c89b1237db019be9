//! `hv.nested=mid-change` on the machine: hv, on vCPU 0's CPU, holds a
//! break-before-make of its map of L1's RAM open while vCPU 1 (or its L2)
//! accesses it, until the path the step names has resumed that access
//! (the steps and checks: `crate::nested::mid_change`; L1:
//! `arch::nested_l1_mid_change`).
//!
//! Every resume path counts itself into [`RESUMES`] ([`resumed`]) and
//! every external abort hv gives L1 or L2 into [`ABORTS`] ([`aborted`]),
//! in every nested demo (relaxed atomics: one add on a path that exits to
//! hv anyway); only this demo reads them.

use super::{
    cpu, exit, l2_direct_vmid, leaf_descriptor, println, read_sysreg, vcpu_worker, ExitStatus,
    GuestFrame, HwTlbs, L0Change, LeafAccess, Nested, Stage2Builder, TlbDefect, Vcpu, VmidTlbs,
    L1_BASE, L1_HOST_VMID, NESTED_VCPUS,
};
use crate::arch::nested_l1_mid_change::{DATA_OFFSET, TABLES_OFFSET};
use crate::nested::mid_change::{
    self, Broken, Resume, ServiceRetries, Step, POISONED, RESUME_KINDS,
};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use ipc::tlbi::IpaRange;
use shadow_mmu::shadow_table::TlbMaintenance;

/// hv's resumes of guest accesses that met its own break-before-make of
/// L1's RAM, by [`Resume::index`], over all vCPUs.
static RESUMES: [AtomicU64; RESUME_KINDS] = [const { AtomicU64::new(0) }; RESUME_KINDS];
/// The external aborts hv gave L1 or L2 (an access outside L1's RAM, or
/// the service's `ExternalAbort` and the like), over all vCPUs.
static ABORTS: AtomicU64 = AtomicU64::new(0);

/// Counts one resume by `path`.
pub(super) fn resumed(path: Resume) {
    RESUMES[path.index()].fetch_add(1, Ordering::Relaxed);
}

/// Counts one external abort hv injected.
pub(super) fn aborted() {
    ABORTS.fetch_add(1, Ordering::Relaxed);
}

/// The order of a step that breaks at the re-walk ([`Step::at_rewalk`]):
/// hv on vCPU 0's CPU arms it, vCPU 1's exit for its walk abort arrives
/// (the hardware walk read L1's table before any break) and waits, hv
/// breaks and lets it go on to the re-walk, which reads the broken page.
static REWALK: AtomicU8 = AtomicU8::new(REWALK_IDLE);
const REWALK_IDLE: u8 = 0;
const REWALK_ARMED: u8 = 1;
const REWALK_ARRIVED: u8 = 2;
const REWALK_GO: u8 = 3;

/// Called by an exit from L1 before hv re-walks L1's stage-1 walk to find
/// an abort's level: nothing unless a `mid-change` step armed it, then it
/// announces itself and waits (bounded) until hv's break is in.
pub(super) fn before_rewalk() {
    if REWALK
        .compare_exchange(
            REWALK_ARMED,
            REWALK_ARRIVED,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return;
    }
    wait_until("vCPU 1's re-walk waited for hv's break", || {
        REWALK.load(Ordering::Acquire) == REWALK_GO
    });
    REWALK.store(REWALK_IDLE, Ordering::Release);
}

/// Spins until `done`, at most [`HOLD_SECONDS`], else fails with `what`.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = cpu::counter();
    let limit = read_sysreg!("cntfrq_el0").saturating_mul(HOLD_SECONDS);
    while !done() {
        if cpu::counter().wrapping_sub(start) > limit {
            failed(format_args!("{what} for {HOLD_SECONDS} s in vain"));
        }
        core::hint::spin_loop();
    }
}

fn snapshot(nested: &Nested) -> ([u64; RESUME_KINDS], u64, ServiceRetries) {
    let stats = nested.service.stats();
    (
        core::array::from_fn(|i| RESUMES[i].load(Ordering::Acquire)),
        ABORTS.load(Ordering::Acquire),
        ServiceRetries {
            output: stats.l0_changing_output,
            table: stats.l0_changing_table,
        },
    )
}

/// How long hv holds a break waiting for the step's resume: generous for
/// QEMU's TCG on a loaded machine; only a broken resume path reaches it.
const HOLD_SECONDS: u64 = 10;

/// The 2 MiB blocks hv breaks and moves, and the step under way.
#[derive(Debug)]
pub(super) struct MidChange {
    l0_tables: Stage2Builder,
    state: spin::Mutex<Places>,
}

#[derive(Debug)]
struct Places {
    /// The PAs of the tables block and the data block, and of the free
    /// 2 MiB each move takes (the moved block's old place is the next).
    tables: u64,
    data: u64,
    spare: u64,
    /// The step whose counts the next call checks, and the counts at its
    /// start.
    open: Option<(&'static Step, [u64; RESUME_KINDS], u64, ServiceRetries)>,
    /// The steps run so far (`mid_change::next_step`'s order).
    ran: usize,
}

impl MidChange {
    /// `l1_ram`: the PA of L1's RAM (its three blocks in order); `spare`:
    /// 2 MiB of the arena nothing else uses.
    pub(super) fn new(l0_tables: Stage2Builder, l1_ram: u64, spare: u64) -> MidChange {
        MidChange {
            l0_tables,
            state: spin::Mutex::new(Places {
                tables: l1_ram + TABLES_OFFSET,
                data: l1_ram + DATA_OFFSET,
                spare,
                open: None,
                ran: 0,
            }),
        }
    }
}

const BLOCK: u64 = 2 << 20;

fn failed(what: core::fmt::Arguments) -> ! {
    println!("hv: nested: mid-change: FAILED: {what}");
    exit(ExitStatus::Failure)
}

/// L1's `HVC_MID_CHANGE` (x1 the step, or `END`; x2 the L1 IPA of the
/// word hv writes the step into once its break is in): checks the step
/// before (vCPU 1 has finished it: L1 calls after its ack), then runs
/// step x1. x0 returns 0.
pub(super) fn call(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame) {
    let Some(mid) = &nested.mid_change else {
        frame.x[0] = super::status::NOT_SUPPORTED as u64;
        return;
    };
    // The protocol has vCPU 0 alone ask for steps: vCPU 1 is the one
    // whose access each step waits for (review 63 R63-2: its call ran a
    // step that then waited 10 s in vain).
    if vcpu.index != 0 {
        failed(format_args!(
            "vCPU {} asked for step {:#x} (only vCPU 0 drives the steps)",
            vcpu.index, frame.x[1]
        ))
    }
    // One step at a time: a step holds the lock through its bounded
    // waits, so a second caller would spin with no bound and no line
    // saying why.
    let Some(mut places) = mid.state.try_lock() else {
        failed(format_args!(
            "vCPU {} asked for step {:#x} while another vCPU's step was under way (only vCPU 0 drives the steps)",
            vcpu.index,
            frame.x[1]
        ))
    };
    if let Some((step, resumes, aborts, service)) = places.open.take() {
        let (now, aborts_now, service_now) = snapshot(nested);
        let delta: [u64; RESUME_KINDS] = core::array::from_fn(|i| now[i].wrapping_sub(resumes[i]));
        let service_delta = ServiceRetries {
            output: service_now.output.wrapping_sub(service.output),
            table: service_now.table.wrapping_sub(service.table),
        };
        match mid_change::check(step, &delta, aborts_now.wrapping_sub(aborts), service_delta) {
            Ok(count) => {
                let also = step.also.map_or("", |_| " (and ");
                let also_path = step.also.map_or("", Resume::name);
                let also_end = if step.also.is_some() {
                    " for the retries until the make)"
                } else {
                    " only"
                };
                let times = if step.once { " exactly once" } else { "" };
                let aborts = match step.aborts {
                    0 => "no abort injected",
                    _ => "its one external abort injected after the make",
                };
                println!(
                    "hv: nested: mid-change: step {} ({}): ok: {}{times}{also}{also_path}{also_end}, {aborts} ({count} resumes; the service's retries: {} mid the change of L1's RAM, {} of L1's table)",
                    step.number,
                    step.access,
                    step.resume.name(),
                    service_delta.output,
                    service_delta.table,
                );
            }
            Err(e) => failed(format_args!("step {} ({}): {e}", step.number, step.access)),
        }
    }
    let number = frame.x[1];
    frame.x[0] = 0;
    let step = match mid_change::next_step(places.ran, number) {
        Ok(Some(step)) => step,
        Ok(None) => {
            println!(
                "hv: nested: mid-change: all {} steps resumed mid hv's break-before-make",
                mid_change::STEPS.len()
            );
            return;
        }
        Err(e) => failed(format_args!("{e}")),
    };
    places.ran += 1;
    let arena = nested.arena;
    let signal = nested.l0_map.pa_of(frame.x[2]).unwrap_or_else(|| {
        failed(format_args!(
            "L1's signal word {:#x} is not in its RAM",
            frame.x[2]
        ))
    });
    let (first, from) = match step.broken {
        Broken::Tables => (L1_BASE + TABLES_OFFSET, places.tables),
        Broken::Data => (L1_BASE + DATA_OFFSET, places.data),
    };
    let to = places.spare;
    let (resumes, aborts, service) = snapshot(nested);
    let signal_access = || {
        // vCPU 1 may make its access now.
        if arena.write(signal, number).is_none() {
            failed(format_args!(
                "step {number}: the signal word's PA {signal:#x}"
            ));
        }
        cpu::clean_invalidate_dcache(signal, 8);
        cpu::dsb_ish();
    };
    if step.at_rewalk {
        // The access first, to hv's re-walk, which waits for the break.
        REWALK.store(REWALK_ARMED, Ordering::Release);
        signal_access();
        wait_until(
            "hv waited for vCPU 1's walk abort to reach its re-walk",
            || REWALK.load(Ordering::Acquire) == REWALK_ARRIVED,
        );
    }
    // Break: the block invalid, then no TLB entry of it for L1 (its
    // VMID) or an L2 running on hv's map (each vCPU's direct VMID), then
    // no shadow leaf built on it.
    if let Err(e) = mid.l0_tables.rewrite(arena, first, 2, 0) {
        failed(format_args!("step {number}: {e}"));
    }
    HwTlbs::new(TlbDefect::None)
        .for_vmid(L1_HOST_VMID)
        .invalidate_all();
    for index in 0..NESTED_VCPUS {
        HwTlbs::new(TlbDefect::None)
            .for_vmid(l2_direct_vmid(index))
            .invalidate_all();
    }
    if let Some(range) = IpaRange::new(first, first + BLOCK) {
        let worker = vcpu_worker(nested, &mut vcpu.worker);
        nested.service.l0_unmap(worker, range, L0Change::Unmap);
    }
    // The break is in: vCPU 1 may make its access now (and only now),
    // or go on to its re-walk.
    if step.at_rewalk {
        REWALK.store(REWALK_GO, Ordering::Release);
    } else {
        signal_access();
    }
    // Held until the step's path resumed that access at least once.
    let start = cpu::counter();
    let limit = read_sysreg!("cntfrq_el0").saturating_mul(HOLD_SECONDS);
    while RESUMES[step.resume.index()].load(Ordering::Acquire) == resumes[step.resume.index()] {
        if cpu::counter().wrapping_sub(start) > limit {
            failed(format_args!(
                "step {number} ({}): hv held its break of L1 IPA {first:#x} + 2 MiB for {HOLD_SECONDS} s and nothing was counted as {}",
                step.access,
                step.resume.name()
            ));
        }
        core::hint::spin_loop();
    }
    // The move: the block copied to its new place, the old one poisoned
    // (a stale translation reads it, a stale walk finds no table), the
    // step's new value into its data page (in the new place for the data
    // block), then the make.
    cpu::clean_invalidate_dcache(from, BLOCK);
    let moved = arena
        .copy(from, to, BLOCK)
        .and_then(|()| arena.fill(from, BLOCK, |_| POISONED));
    if moved.is_none() {
        failed(format_args!("step {number}: moving {from:#x} to {to:#x}"));
    }
    let data = match step.broken {
        Broken::Tables => places.data,
        Broken::Data => to,
    };
    let page = data + (number << 12);
    if arena.write(page, mid_change::new_value(number)).is_none() {
        failed(format_args!("step {number}: data page {page:#x}"));
    }
    cpu::clean_invalidate_dcache(from, BLOCK);
    cpu::clean_invalidate_dcache(to, BLOCK);
    cpu::clean_invalidate_dcache(data, BLOCK);
    if let Err(e) = mid
        .l0_tables
        .rewrite(arena, first, 2, leaf_descriptor(2, to, LeafAccess::ALL))
    {
        failed(format_args!("step {number}: {e}"));
    }
    cpu::dsb_ish();
    cpu::isb();
    match step.broken {
        Broken::Tables => places.tables = to,
        Broken::Data => places.data = to,
    }
    places.spare = from;
    places.open = Some((step, resumes, aborts, service));
}
