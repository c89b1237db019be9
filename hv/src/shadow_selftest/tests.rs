//! The scenario on the host: the service on a thread, L2 on a software CPU
//! that runs the payload's instructions through a TLB and a stage-2 walk
//! of the very shadow tables the service builds (the walker over the
//! shadow frames), so a missing TLB invalidation shows as a stale value
//! here as it does on QEMU.

extern crate std;

use super::backend::{identity_frames, SelftestBackend, VmidTlbs};
use super::lab::{Lab, ARENA_BYTES, PAYLOAD};
use super::memory::{Arena, LeafAccess};
use super::*;
use core::sync::atomic::AtomicU64;
use ipc::HostDoorbell;
use shadow_mmu::shadow_table::{shadow_vtcr, HeapFramePool, TlbMaintenance};
use std::boxed::Box;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use std::vec::Vec;
use walker::{
    AccessKind as WalkAccess, Endianness, Stage2Registers, Stage2Walker, Translation, WalkError,
};

struct HostClock(Instant);

impl Clock for HostClock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
    fn frequency(&self) -> u64 {
        1_000_000
    }
}

/// The software CPU's TLB: what its walks found, until invalidated.
#[derive(Default)]
struct SimTlb(Mutex<Vec<Translation>>);

impl SimTlb {
    fn lookup(&self, ipa: u64) -> Option<Translation> {
        let entries = self.0.lock().unwrap();
        entries
            .iter()
            .find(|t| ipa & !(t.block_size - 1) == t.ipa_block_base())
            .copied()
    }
}

/// The service's TLB maintenance for the software CPUs' TLBs (a
/// broadcast TLBI reaches both vCPUs'); the failure modes reach fewer.
#[derive(Clone)]
struct SimTlbs {
    tlbs: Arc<[Arc<SimTlb>; 2]>,
    /// How many of `tlbs` it reaches (2: a working broadcast).
    reach: usize,
}

impl TlbMaintenance for SimTlbs {
    fn invalidate_range(&self, l2_ipa: u64, len: u64) {
        for tlb in self.tlbs.iter().take(self.reach) {
            tlb.0.lock().unwrap().retain(|t| {
                let base = t.ipa_block_base();
                base + t.block_size <= l2_ipa || base >= l2_ipa + len
            });
        }
    }
    fn invalidate_all(&self) {
        for tlb in self.tlbs.iter().take(self.reach) {
            tlb.0.lock().unwrap().clear();
        }
    }
}

impl VmidTlbs for SimTlbs {
    type Tlb = SimTlbs;
    fn for_vmid(&self, _vmid: u16) -> SimTlbs {
        self.clone()
    }
}

type HostService = Service<
    memory::L1Memory<'static>,
    &'static memory::L0Stage2<'static>,
    SelftestBackend<HeapFramePool, SimTlbs>,
>;

/// L2 on a software CPU: fetches, loads and stores go through its TLB or
/// a stage-2 walk of the shadow (shadow VTCR, the service's root).
struct SimCpu {
    lab: &'static Lab<'static>,
    service: &'static HostService,
    walker: Stage2Walker,
    tlb: Arc<SimTlb>,
}

impl SimCpu {
    /// The PA of `ipa` for `access`, or the stage-2 FSC and whether the
    /// access was a write.
    fn translate(&self, ipa: u64, access: WalkAccess) -> Result<u64, u64> {
        let allowed = |t: &Translation| match access {
            WalkAccess::Read => t.s2ap.readable(),
            WalkAccess::Write => t.s2ap.writable(),
            WalkAccess::Stage1Update => t.s2ap.readable() && t.s2ap.writable(),
            WalkAccess::ExecEl1 => t.execute.el1(),
            WalkAccess::ExecEl0 => t.execute.el0(),
            WalkAccess::CacheMaintenance(c) => match c {
                walker::CacheMaintenance::CleanEl1 => true,
                walker::CacheMaintenance::InvalidateEl1 => t.s2ap.writable(),
                walker::CacheMaintenance::El0 => t.s2ap.readable(),
            },
        };
        if let Some(t) = self.tlb.lookup(ipa) {
            return if allowed(&t) {
                Ok(t.output_block_base() + (ipa & (t.block_size - 1)))
            } else {
                // A permission fault at the leaf's level.
                Err(0b00_1100 | t.level as u64)
            };
        }
        match self.walker.walk(self.service.backend().pool(), ipa, access) {
            Ok(t) => {
                self.tlb.0.lock().unwrap().push(t);
                Ok(t.output_address)
            }
            Err(WalkError::Fault(f)) => Err(u64::from(f.fsc())),
            Err(e) => panic!("shadow walk of {ipa:#x}: {e:?}"),
        }
    }

    /// A data abort carries the instruction syndrome of the lab's
    /// `LDR`/`STR X<n>` (ISV, SAS 0b11, SF, SRT = the register), which the
    /// injection for L1 must keep.
    fn abort(class: u64, fsc: u64, write: bool, va: u64) -> L2Exit {
        let syndrome = if class == EC_DATA_ABORT_LOWER {
            1 << 24 | 0b11 << 22 | 9 << 16 | 1 << 15
        } else {
            0
        };
        L2Exit {
            vector: 0,
            esr: class << 26 | ESR_IL | syndrome | if write { ESR_WNR } else { 0 } | fsc,
            far: va,
            hpfar: (va >> 12) << 4,
        }
    }
}

impl L2Cpu for SimCpu {
    fn run(&mut self, regs: &mut L2Regs) -> L2Exit {
        let arena = self.lab.arena();
        for _ in 0..64 {
            let pc = regs.pc;
            let word = match self.translate(pc, WalkAccess::ExecEl1) {
                Ok(pa) => {
                    let pair = arena.read(pa & !7).unwrap();
                    (pair >> (8 * (pa & 4))) as u32
                }
                Err(fsc) => return Self::abort(EC_INSTRUCTION_ABORT_LOWER, fsc, false, pc),
            };
            match word {
                w if w == PAYLOAD[0] => regs.pc = pc + if regs.x[2] != 0 { 12 } else { 4 },
                w if w == PAYLOAD[3] => regs.pc = pc + if regs.x[2] & 2 != 0 { 12 } else { 4 },
                w if w == PAYLOAD[6] => regs.pc = regs.x[0],
                // `b .`: the PC stays.
                w if w == PAYLOAD[7] => {}
                w if w == PAYLOAD[1] => match self.translate(regs.x[0], WalkAccess::Read) {
                    Ok(pa) => {
                        regs.x[1] = arena.read(pa).unwrap();
                        regs.pc = pc + 4;
                    }
                    Err(fsc) => return Self::abort(EC_DATA_ABORT_LOWER, fsc, false, regs.x[0]),
                },
                w if w == PAYLOAD[4] => match self.translate(regs.x[0], WalkAccess::Write) {
                    Ok(pa) => {
                        arena.write(pa, regs.x[3]).unwrap();
                        regs.pc = pc + 4;
                    }
                    Err(fsc) => return Self::abort(EC_DATA_ABORT_LOWER, fsc, true, regs.x[0]),
                },
                w if w == PAYLOAD[2] || w == PAYLOAD[5] => {
                    regs.pc = pc + 4;
                    return L2Exit {
                        vector: 0,
                        esr: EC_HVC64 << 26 | ESR_IL,
                        far: 0,
                        hpfar: 0,
                    };
                }
                // Anything else: an UNDEFINED-like exit the scenario
                // rejects.
                _ => {
                    return L2Exit {
                        vector: 0,
                        esr: ESR_IL,
                        far: 0,
                        hpfar: 0,
                    }
                }
            }
        }
        // Spinning: an interrupt would end it on hardware.
        L2Exit {
            vector: 1,
            esr: 0,
            far: 0,
            hpfar: 0,
        }
    }
}

const HOST: Host = Host {
    vmids: VmidWidth::Bits16,
    xnx: true,
    pa_bits: 48,
};

fn lab() -> &'static Lab<'static> {
    let words: Vec<AtomicU64> = (0..ARENA_BYTES / 8).map(|_| AtomicU64::new(0)).collect();
    let arena = Box::leak(Box::new(
        Arena::new(Box::leak(words.into_boxed_slice()), 0x4800_0000).unwrap(),
    ));
    Box::leak(Box::new(Lab::build(arena).unwrap()))
}

fn service(lab: &'static Lab<'static>, tlbs: SimTlbs) -> &'static HostService {
    let config = service_config(&HOST, 0x1234_5678).unwrap();
    let pool = identity_frames(config.budget.frames, Some).unwrap();
    let backend = SelftestBackend::new(pool, tlbs, HOST.shadow_config());
    Box::leak(Box::new(
        Service::new(config, lab.l1_memory(), lab.l0_map(), backend).unwrap(),
    ))
}

/// How a host run goes wrong, if at all.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The TLB maintenance does nothing.
    NoTlbi,
    /// No service answers.
    SilentService,
    /// From L2's fourth run on, it starts at the payload's `b .`.
    SpinningL2,
    /// The TLB maintenance misses the second vCPU's TLB (a TLBI that is
    /// not broadcast).
    LocalTlbi,
}

/// L2 that, after `after` runs, starts every run at the payload's `b .`.
struct Spinning {
    cpu: SimCpu,
    runs: usize,
    after: usize,
}

impl L2Cpu for Spinning {
    fn run(&mut self, regs: &mut L2Regs) -> L2Exit {
        self.runs += 1;
        if self.runs > self.after {
            regs.pc = lab::CODE_L2 + 28;
        }
        self.cpu.run(regs)
    }
}

/// Runs the scenario with the service on a thread; returns its result and
/// the service.
fn run(fault: Fault) -> (Result<Report, Failure>, &'static HostService) {
    let reach = match fault {
        Fault::NoTlbi => 0,
        Fault::LocalTlbi => 1,
        Fault::None | Fault::SilentService | Fault::SpinningL2 => 2,
    };
    let serve_requests = fault != Fault::SilentService;
    let lab = lab();
    let tlbs = Arc::new([Arc::new(SimTlb::default()), Arc::new(SimTlb::default())]);
    let service = service(
        lab,
        SimTlbs {
            tlbs: tlbs.clone(),
            reach,
        },
    );
    let worker = service.worker();
    let (vmid, root) = service
        .shadow_root(&worker, &{
            let key = context_key(lab);
            shadow_mmu::context::ContextKey::from_ipc(&key, service.l1_vmid_width())
        })
        .unwrap();
    assert!(vmid >= FIRST_SHADOW_VMID);
    // Both vCPUs on the same shadow (VMID and root), each with its TLB.
    let sim_cpu = |tlb: &Arc<SimTlb>| SimCpu {
        lab,
        service,
        walker: Stage2Walker::new(
            Stage2Registers {
                vtcr: shadow_vtcr(0b101, false).expect("48-bit host"),
                vttbr: root,
                endianness: Endianness::Little,
            },
            &memory::host_walk_features(),
        ),
        tlb: tlb.clone(),
    };
    let cpu = sim_cpu(&tlbs[0]);
    let mut reader_cpu = sim_cpu(&tlbs[1]);
    let ex: &'static ShadowExchange<HostDoorbell> = Box::leak(Box::new(ShadowExchange::new(
        HostDoorbell::new(64),
        HostDoorbell::new(64),
        HostDoorbell::new(64),
    )));
    let thread = serve_requests.then(|| std::thread::spawn(move || serve(ex, service, || {})));
    let key = context_key(lab);
    let reader = std::thread::spawn(move || {
        let clock = HostClock(Instant::now());
        run_reader(ex, &mut reader_cpu, key, &clock, 2_000_000);
    });
    let clock = HostClock(Instant::now());
    let result = if fault == Fault::SpinningL2 {
        let mut l2 = Spinning {
            cpu,
            runs: 0,
            after: 3,
        };
        run_scenario(lab, &mut l2, ex, &clock, 2_000_000, WithStage1::No)
    } else {
        let mut l2 = cpu;
        run_scenario(lab, &mut l2, ex, &clock, 2_000_000, WithStage1::No)
    };
    reader.join().unwrap();
    if let Some(thread) = thread {
        thread.join().unwrap().unwrap();
    }
    (result, service)
}

#[test]
fn the_three_paths_hold_on_the_software_cpu() {
    let (result, service) = run(Fault::None);
    let report = result.unwrap_or_else(|f| panic!("{f}"));
    std::println!("{report}; {}", ServiceSummary(service.stats()));
    // Eight faults the model calls L1's (four translation faults on
    // loads, a permission fault on a store, an external abort, a
    // permission and a translation fault on fetches), two L0's own (the
    // store to the page L0 logs, the walk's read of L1's table page L0
    // made unreadable), one retried (the walk's read of that page mid
    // L0's change), everything else mapped.
    assert_eq!(report.injected, 8, "{report}");
    assert_eq!(report.l0_denied, 2, "{report}");
    assert_eq!(report.l0_denied_table_reads, 1, "{report}");
    // One retried: the walk's read of L1's table page mid hv's change.
    assert_eq!(report.l0_changing_table_reads, 1, "{report}");
    // The service counts it as the table kind (the second vCPU's reads
    // of the pages hv moves are the other kind, as many as timing gives).
    assert_eq!(service.stats().l0_changing_table, 1, "{report}");
    assert!(report.retried >= 1, "{report}");
    // (The first touch; after VMALLS12E1IS the second vCPU may fetch the
    // payload's page first.)
    assert!(report.fetch_faults >= 1, "{report}");
    assert_eq!(
        report.faults,
        report.mapped + report.injected + report.l0_denied + report.retried
    );
    assert_eq!((report.invalidations, report.l0_unmaps), (2, 2), "{report}");
    // The second vCPU read through every change: before it (old, except
    // the write protection, which keeps the value) and after each ack.
    let reader = report.reader;
    assert!(reader.old >= 2 * 3 && reader.after_ack >= 4, "{report}");
    assert_eq!(reader.reads, reader.old + reader.new, "{report}");
    // (Its faults may be none: the first vCPU may fault first and install
    // what it needs.)
    assert!(report.entries_invalidated >= 2 && report.entries_unmapped >= 1);
    let stats = service.stats();
    assert_eq!(stats.recycled_contexts, 0);
    assert!(stats.walks > 0);
}

/// The failure mode of `hv.selftest=shadow-no-tlbi`: without the TLB
/// maintenance the service asks for, L2 reads the remapped page through
/// its stale TLB entry, and the run fails on that value.
#[test]
fn without_tlb_maintenance_the_stale_value_fails_the_run() {
    let (result, _) = run(Fault::NoTlbi);
    match result {
        Err(Failure::Value {
            step: "after TLBI IPAS2E1IS",
            l2_ipa,
            got,
            ..
        }) => {
            assert_eq!(l2_ipa, lab::TLBI_L2 + 0x10);
            // The old page's pattern: the stale translation.
            assert_eq!(lab::pattern(got) & 0xfff, 0x10);
        }
        other => panic!("{other:?}"),
    }
}

/// The concurrent check can fail: when the TLB maintenance misses the
/// second vCPU's TLB, it reads the old value after the acknowledgement.
#[test]
fn a_tlbi_that_misses_the_second_vcpu_fails_the_run() {
    let (result, _) = run(Fault::LocalTlbi);
    match result {
        Err(Failure::Reader(failure)) => match *failure {
            Failure::ConcurrentValue {
                l2_ipa,
                got,
                old,
                after_ack: true,
                ..
            } => {
                assert_eq!(l2_ipa, reader::Change::TlbiPage.l2_ipa());
                assert_eq!(got, old);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_silent_service_is_a_timeout() {
    let (result, _) = run(Fault::SilentService);
    assert!(
        matches!(result, Err(Failure::Timeout { answered: 0, .. })),
        "{result:?}"
    );
}

#[test]
fn injections_are_the_architectural_syndromes() {
    let l2 = lab::INVALID_L2 + 0x30;
    let read = expected_injection(l2, Access::Read, 0b00_0111, 0x9200_0007);
    assert_eq!(read.esr, 0x9200_0007);
    assert_eq!(read.hpfar, (l2 >> 12) << 4);
    let write = expected_injection(l2, Access::Write(0), 0b00_1111, 0x9200_0047);
    assert_eq!(write.esr, 0x9200_004f);
    let fetch = expected_injection(l2, Access::Exec, 0b00_1111, 0x8200_000f);
    assert_eq!(fetch.esr, 0x8200_000f);
    // `STR X5` (ISV, SAS 0b11, SRT 5, SF) trapped with a level-3
    // translation fault on the shadow: L1's permission fault keeps the
    // instruction syndrome; an instruction abort has none to keep.
    let str_x5 = 0x9200_0047 | 1 << 24 | 0b11 << 22 | 5 << 16 | 1 << 15;
    let stored = expected_injection(l2, Access::Write(0), 0b00_1111, str_x5);
    assert_eq!(stored.esr, str_x5 & !0x3f | 0x0f);
    let fetched = expected_injection(l2, Access::Exec, 0b00_0111, str_x5);
    assert_eq!(fetched.esr, 0x8200_0007);
    assert_eq!(
        check_injection(
            TranslateOutcome::Inject(read),
            l2,
            Access::Read,
            Outcome::Translation { level: 3 },
            0x9200_0007
        ),
        Ok(())
    );
    assert_eq!(
        check_injection(
            TranslateOutcome::Inject(read),
            l2,
            Access::Read,
            Outcome::Translation { level: 2 },
            0x9200_0007
        ),
        Err(())
    );
    // The answer without the trapped instruction syndrome is wrong.
    assert_eq!(
        check_injection(
            TranslateOutcome::Inject(read),
            l2,
            Access::Read,
            Outcome::Translation { level: 3 },
            0x9200_0007 | 1 << 24 | 0b10 << 22 | 3 << 16
        ),
        Err(())
    );
}

#[test]
fn an_l2_that_never_exits_is_stuck_not_a_hang() {
    let (result, _) = run(Fault::SpinningL2);
    match result {
        Err(Failure::Stuck { pc, .. }) => assert_eq!(pc, lab::CODE_L2 + 28),
        other => panic!("{other:?}"),
    }
}

/// HPFAR_EL2 names the IPA of a translation fault; for a permission fault
/// (where it is UNKNOWN) FAR_EL2 does, L2's MMU being off.
#[test]
fn the_fault_ipa_comes_from_hpfar_or_far() {
    let translation = L2Exit {
        vector: 0,
        esr: 0x9200_0007,
        far: 0x1234_5678,
        hpfar: 0x12345 << 4,
    };
    assert_eq!(fault_ipa(&translation), 0x1234_5678);
    let permission = L2Exit {
        esr: 0x9200_004f,
        hpfar: 0xdead << 4,
        ..translation
    };
    assert_eq!(fault_ipa(&permission), 0x1234_5678);
    let on_walk = L2Exit {
        esr: 0x9200_008f,
        ..permission
    };
    assert_eq!(fault_ipa(&on_walk), 0xdead << 12 | 0x678);
}

/// An L0 leaf that denies L2's access, down to no access at all (S2AP
/// 0b00) or no reads (write-only S2AP 0b10), is still L1 memory: L2's
/// access through it is L0's own fault (a stage-2 permission fault at L0
/// in the Arm ARM's terms), answered `L0Denied` with the L1 IPA, never an
/// external abort for L2. Before the fix hv's L0 map walked its table for
/// a read, found nothing where reads are denied, and the service answered
/// "outside L1's memory" (`ExternalAbort`): under the fault-rate demo, an
/// external abort taken at L2's EL1, whose vector fetch L1's stage 2 does
/// not map (L1 then saw ESR 0x82000007).
#[test]
fn an_l0_leaf_denying_the_access_is_l0_denied_not_outside_l1() {
    use ipc::L0Denial;
    use shadow_mmu::compose::Permissions;
    use walker::{Execute, S2Ap};
    let lab = lab();
    let tlbs = Arc::new([Arc::new(SimTlb::default()), Arc::new(SimTlb::default())]);
    let service = service(lab, SimTlbs { tlbs, reach: 2 });
    let worker = service.worker();
    let offset = 0x48;
    let request = |access: AccessKind| {
        let wnr = u32::from(access == AccessKind::Write) << 6;
        TranslateRequest {
            context: context_key(lab),
            l2_ipa: lab::LOGGED_L2 + offset,
            access,
            // A data abort from a lower EL, translation fault level 3.
            esr: (EC_DATA_ABORT_LOWER as u32) << 26 | 1 << 25 | wnr | 0b00_0111,
            far: lab::LOGGED_L2 + offset,
        }
    };
    let denied = |access| {
        TranslateOutcome::L0Denied(L0Denial {
            l1_ipa: lab::LOGGED_L1 + offset,
            denied: ipc::DeniedAccess::L2Data(access),
        })
    };
    let cases = [
        (S2Ap::None, AccessKind::Read, false),
        (S2Ap::None, AccessKind::Write, false),
        (S2Ap::WriteOnly, AccessKind::Read, false),
        (S2Ap::WriteOnly, AccessKind::Write, true),
        (S2Ap::ReadOnly, AccessKind::Write, false),
    ];
    for (s2ap, access, allowed) in cases {
        lab.set_l0_logged_access(LeafAccess {
            s2ap,
            execute: Execute::Neither,
        })
        .unwrap();
        // The previous case's entry goes as hv's L0 change would take it.
        let page = IpaRange::new(lab::LOGGED_L1, lab::LOGGED_L1 + memory::PAGE).unwrap();
        service.l0_unmap(&worker, page, L0Change::Unmap);
        let outcome = service.translate_request(&worker, &request(access));
        if allowed {
            assert!(
                matches!(outcome, TranslateOutcome::Mapped(_)),
                "{s2ap:?} {access:?}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome, denied(access), "{s2ap:?} {access:?}");
        }
    }
    // What L0 maps readable is what hv reads on L1's behalf: not a page
    // that denies reads.
    lab.set_l0_logged_access(LeafAccess {
        s2ap: S2Ap::WriteOnly,
        execute: Execute::Neither,
    })
    .unwrap();
    assert_eq!(lab.l0_map().pa_of(lab::LOGGED_L1), None);
    let m = lab.l0_map().lookup(lab::LOGGED_L1).unwrap();
    assert_eq!(m.permissions(), Permissions::WRITE);
}

/// The service's walk of L1's table reads L1's table pages through hv's
/// own stage 2 of L1 (`L1Memory`). A page of L1's table that hv maps with
/// a valid leaf denying the walk's access (no read: S2AP 0b00 or
/// write-only; no write while L1's VTCR_EL2.HA asks for the AF update of
/// an AF = 0 leaf there) is L0's own fault, answered `L0Denied` naming
/// L1's table and the descriptor's L1 IPA, never `Inject` (the external
/// abort on the walk, or the architectural "read-only memslot" abort,
/// that `L1Memory` gave before). hv gives the permission back (and its
/// `l0_unmap` drops what was built on the page): the fault maps, and the
/// AF update is made in L1's table.
#[test]
fn a_walk_hv_denies_l1s_table_is_l0_denied_not_injected() {
    use ipc::{DeniedAccess, L0Denial};
    use walker::{Execute, S2Ap};
    const HA: u64 = 1 << 21;
    const AF: u64 = 1 << 10;
    let lab = lab();
    let tlbs = Arc::new([Arc::new(SimTlb::default()), Arc::new(SimTlb::default())]);
    // L1 is shown HAFDBS = 1 (hardware AF), as it would be on a host
    // with it.
    let mut config = service_config(&HOST, 0x1234_5678).unwrap();
    config.features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 0b0010 | (0b0010 << 40),
        mmfr1: 1 | (1 << 28),
        mmfr2: 0,
    })
    .unwrap();
    let pool = identity_frames(config.budget.frames, Some).unwrap();
    let backend = SelftestBackend::new(pool, SimTlbs { tlbs, reach: 2 }, HOST.shadow_config());
    let service: &'static HostService = Box::leak(Box::new(
        Service::new(config, lab.l1_memory(), lab.l0_map(), backend).unwrap(),
    ));
    let worker = service.worker();
    let request = |vtcr: u64, access: AccessKind| TranslateRequest {
        context: ContextKey::new(lab.l1_vttbr(), vtcr, VmidWidth::Bits8),
        l2_ipa: lab::RW_L2 + 0x10,
        access,
        // A data abort from a lower EL, translation fault level 3.
        esr: (EC_DATA_ABORT_LOWER as u32) << 26
            | 1 << 25
            | u32::from(access == AccessKind::Write) << 6
            | 0b00_0111,
        far: lab::RW_L2 + 0x10,
    };
    let page_of = |l1_ipa: u64| l1_ipa & !(memory::PAGE - 1);
    let range =
        |l1_ipa: u64| IpaRange::new(page_of(l1_ipa), page_of(l1_ipa) + memory::PAGE).unwrap();
    let leaf = lab.l1_descriptor(lab::RW_L2, 3).unwrap();
    let level2 = lab.l1_descriptor(lab::RW_L2, 2).unwrap();
    assert_ne!(page_of(leaf), page_of(level2));
    // Reads denied, at the level-3 table's page and at the level-2's.
    for (descriptor, s2ap) in [
        (leaf, S2Ap::None),
        (leaf, S2Ap::WriteOnly),
        (level2, S2Ap::None),
    ] {
        let access = LeafAccess {
            s2ap,
            execute: Execute::Neither,
        };
        lab.set_l0_page_access(page_of(descriptor), access).unwrap();
        service.l0_unmap(&worker, range(descriptor), L0Change::Unmap);
        for access in [AccessKind::Read, AccessKind::Write] {
            assert_eq!(
                service.translate_request(&worker, &request(lab::L1_VTCR, access)),
                TranslateOutcome::L0Denied(L0Denial {
                    l1_ipa: descriptor,
                    denied: DeniedAccess::L1TableRead,
                }),
                "{s2ap:?} {access:?}"
            );
        }
        lab.set_l0_page_access(page_of(descriptor), LeafAccess::ALL)
            .unwrap();
        service.l0_unmap(&worker, range(descriptor), L0Change::Unmap);
    }
    assert!(matches!(
        service.translate_request(&worker, &request(lab::L1_VTCR, AccessKind::Read)),
        TranslateOutcome::Mapped(_)
    ));
    // HA, L1's leaf with AF = 0 (L1 cleared it), its page read-only in
    // hv's stage 2 (a dirty log): the update is denied.
    let l1 = lab.l1_memory();
    let descriptor = memory::TableSpace::read(&l1, leaf).unwrap();
    memory::TableSpace::write(&l1, leaf, descriptor & !AF).unwrap();
    lab.set_l0_page_access(page_of(leaf), LeafAccess::READ_ONLY)
        .unwrap();
    service.l0_unmap(&worker, range(leaf), L0Change::WriteProtect);
    for round in 0..2 {
        assert_eq!(
            service.translate_request(&worker, &request(lab::L1_VTCR | HA, AccessKind::Read)),
            TranslateOutcome::L0Denied(L0Denial {
                l1_ipa: leaf,
                denied: DeniedAccess::L1TableUpdate,
            }),
            "round {round}"
        );
    }
    assert_eq!(memory::TableSpace::read(&l1, leaf), Some(descriptor & !AF));
    // hv resolves it (write permission back, its l0_unmap): the fault
    // maps and AF is set in L1's table.
    lab.set_l0_page_access(page_of(leaf), LeafAccess::ALL)
        .unwrap();
    service.l0_unmap(&worker, range(leaf), L0Change::Unmap);
    assert!(matches!(
        service.translate_request(&worker, &request(lab::L1_VTCR | HA, AccessKind::Read)),
        TranslateOutcome::Mapped(_)
    ));
    assert_eq!(memory::TableSpace::read(&l1, leaf), Some(descriptor));
}

/// Review 59 R59-7: while hv changes its own map of L1's RAM with
/// break-before-make (the old leaf invalid, the service's `l0_unmap`, the
/// new leaf), an L2 fault on that memory is answered `Retry(L0Changing)`
/// (L2 resumed; a hardware walk of hv's table would fault to hv, which
/// waits for its change), not `ExternalAbort` (L1's own memory would abort
/// for L2). Nothing is installed meanwhile; once the new leaf is in, the
/// fault maps through it. Outside L1's RAM the answer stays an external
/// abort.
#[test]
fn l1_ram_mid_l0_change_is_retried_not_an_external_abort() {
    use ipc::RetryReason;
    let lab = lab();
    let tlbs = Arc::new([Arc::new(SimTlb::default()), Arc::new(SimTlb::default())]);
    let service = service(lab, SimTlbs { tlbs, reach: 2 });
    let worker = service.worker();
    let key = context_key(lab);
    let read = |l2_ipa: u64| {
        service.translate_request(
            &worker,
            &TranslateRequest {
                context: key,
                l2_ipa,
                access: AccessKind::Read,
                // A data abort from a lower EL, translation fault level 3.
                esr: (EC_DATA_ABORT_LOWER as u32) << 26 | 1 << 25 | 0b00_0111,
                far: l2_ipa,
            },
        )
    };
    let moved = lab::MOVED_L2 + 0x18;
    assert!(matches!(read(moved), TranslateOutcome::Mapped(_)));
    // hv's break: its leaf of L1's page invalid, then the service's unmap.
    lab.set_l0_page(None).unwrap();
    let page = IpaRange::new(lab::MOVED_L1, lab::MOVED_L1 + memory::PAGE).unwrap();
    service.l0_unmap(&worker, page, L0Change::Unmap);
    let before = service.stats();
    assert_eq!(
        read(moved),
        TranslateOutcome::Retry(RetryReason::L0Changing)
    );
    // The leaf's output (L1's RAM) mid hv's change, no table page.
    let after = service.stats();
    assert_eq!(after.l0_changing_output, before.l0_changing_output + 1);
    assert_eq!(after.l0_changing_table, before.l0_changing_table);
    let shadow_key = shadow_mmu::context::ContextKey::from_ipc(&key, service.l1_vmid_width());
    assert_eq!(
        service.shadow_lookup(&worker, &shadow_key, lab::MOVED_L2),
        None
    );
    // Outside L1's RAM: nothing, as before.
    assert!(
        matches!(read(lab::OUTSIDE_L2), TranslateOutcome::ExternalAbort(_)),
        "{:?}",
        read(lab::OUTSIDE_L2)
    );
    // hv's make: the page at its new PA, mapped through it.
    lab.set_l0_page(Some(lab.alt_pa())).unwrap();
    match read(moved) {
        TranslateOutcome::Mapped(m) => assert_eq!(m.pa, lab.alt_pa()),
        other => panic!("after the make: {other:?}"),
    }
}
