//! loom models of hv's virtual SGI protocol (`hv::vgic`). Any CPU raises a
//! virtual SGI for a target vCPU (`VirtualSgis::raise`, from the sender's
//! trapped ICC_SGI1R_EL1 write) and kicks the target's physical CPU; the
//! target's CPU, on the kick or on any other exit, moves the pending and
//! enabled SGIs into its list registers (`vgic::fill_list_registers`, with
//! `take`, `put_back` and `has_ready`), asking for the underflow maintenance
//! interrupt when some do not fit; the guest's trapped GICR writes enable
//! and disable SGIs (`VirtualSgis::set_clear`). The models run hv's own
//! code on loom's atomics (hv/src/sync.rs); only the list registers, the
//! guest and the kick are stand-ins.
//!
//! Whatever the interleaving, the models check:
//! - no raise is lost: once the target has filled after acknowledging the
//!   kick that followed a raise, that SGI has been delivered to the guest,
//!   is pending in a list register, or is still pending with the underflow
//!   interrupt requested or with the SGI disabled;
//! - no SGI is delivered more often than it was raised, and every raise the
//!   GIC may not coalesce (one made after the guest took the previous one)
//!   is delivered again;
//! - an INTID is never in two list registers (checked at every write), and
//!   no fill makes a disabled SGI pending in one.
//!
//! The kick: `arch::gic::Gic::send_sgi` raises, executes a DSB, then writes
//! ICC_SGI1R_EL1 to send hv's physical kick SGI, which the target
//! acknowledges (ICC_IAR1_EL1) before it fills. A system-register write is
//! no memory access, so only the DSB orders the raise before the kick. Here
//! the kick is a word of flags: the sender's Release and the target's
//! Acquire stand for that DSB and the acknowledgement.
#![cfg(loom)]

use hv::vgic::{self, Backlog, ListRegisters, SetClear, VirtualSgis};
use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use loom::sync::Arc;
use loom::thread;

/// List-register state field (bits 63:62): pending, active, both.
const STATE_SHIFT: u32 = 62;
const PENDING: u64 = 0b01;
const ACTIVE: u64 = 0b10;
/// List-register HW bit: a physical interrupt (PPI or SPI), not an SGI.
const HW: u64 = 1 << 61;

/// hv's physical kick SGI, pending at the target's CPU. The GIC keeps one
/// pending bit for it, so kicks from several senders coalesce into one
/// acknowledgement and one fill; the model keeps a bit per sender only to
/// know whose raises that fill must have seen.
#[derive(Debug, Default)]
struct Kick(AtomicU8);

impl Kick {
    /// The DSB and ICC_SGI1R_EL1 write after the sender's raises.
    fn send(&self, sender: usize) {
        self.0.fetch_or(1 << sender, Ordering::Release);
    }

    /// ICC_IAR1_EL1 on the target: the senders whose kicks it took.
    fn acknowledge(&self) -> u8 {
        self.0.swap(0, Ordering::Acquire)
    }
}

/// One CPU's list registers, which hv and the guest running on that CPU
/// use in turn (so no atomics). Every write checks that no INTID is in two
/// valid list registers.
#[derive(Debug)]
struct FakeLrs {
    lrs: Vec<u64>,
    underflow: bool,
}

fn state(lr: u64) -> u64 {
    lr >> STATE_SHIFT
}

fn intid(lr: u64) -> u64 {
    lr & 0xffff_ffff
}

impl ListRegisters for FakeLrs {
    fn count(&self) -> usize {
        self.lrs.len()
    }

    fn empty(&mut self) -> u32 {
        (0..self.lrs.len())
            .filter(|&n| state(self.lrs[n]) == 0)
            .map(|n| 1 << n)
            .sum()
    }

    fn read(&mut self, n: usize) -> u64 {
        self.lrs[n]
    }

    fn write(&mut self, n: usize, value: u64) {
        if state(value) != 0 {
            for (m, &other) in self.lrs.iter().enumerate() {
                assert!(
                    m == n || state(other) == 0 || intid(other) != intid(value),
                    "INTID {} in list registers {m} and {n}: {:x?}",
                    intid(value),
                    self.lrs
                );
            }
        }
        self.lrs[n] = value;
    }

    fn set_underflow_interrupt(&mut self, on: bool) {
        self.underflow = on;
    }
}

/// The target CPU: hv's fills and the guest taking interrupts, in turn.
#[derive(Debug)]
struct Target {
    lrs: FakeLrs,
    backlog: Backlog,
    /// How often the guest acknowledged each SGI and PPI.
    delivered: [u32; 32],
    /// Senders whose kicks the target has acknowledged.
    kicked: u8,
}

impl Target {
    fn new(list_registers: usize) -> Self {
        Target {
            lrs: FakeLrs {
                lrs: vec![0; list_registers],
                underflow: false,
            },
            backlog: Backlog::new(),
            delivered: [0; 32],
            kicked: 0,
        }
    }

    /// hv's fill at the end of an exit. Every SGI it makes pending in a
    /// list register must be enabled (another vCPU may only set enables
    /// while the fill runs, so the value read after it is exact enough:
    /// an SGI enabled meanwhile may be placed).
    fn fill(&mut self, sgis: &VirtualSgis) {
        let before = self.lrs.lrs.clone();
        vgic::fill_list_registers(&mut self.lrs, sgis, &mut self.backlog, |_| 0xa0);
        let enabled = sgis.read(SetClear::EnableSet);
        for (&old, &new) in before.iter().zip(&self.lrs.lrs) {
            if new != old && state(new) & PENDING != 0 && new & HW == 0 {
                assert!(
                    enabled & 1 << intid(new) != 0,
                    "disabled SGI {} made pending in a list register",
                    intid(new)
                );
            }
        }
    }

    /// The guest runs: it first deactivates what it took last time (so an
    /// SGI stays active across one fill, and a raise meanwhile must mark
    /// that list register pending again), then acknowledges every pending
    /// interrupt a list register holds (one that is also active cannot be
    /// taken until deactivated).
    fn guest_runs(&mut self) {
        for lr in &mut self.lrs.lrs {
            *lr &= !(ACTIVE << STATE_SHIFT);
        }
        for lr in &mut self.lrs.lrs {
            if state(*lr) == PENDING {
                self.delivered[intid(*lr) as usize] += 1;
                *lr = (*lr & !(0b11 << STATE_SHIFT)) | ACTIVE << STATE_SHIFT;
            }
        }
    }

    /// ICH_HCR_EL2.UIE: a maintenance interrupt while at most one list
    /// register is valid.
    fn maintenance_due(&self) -> bool {
        self.lrs.underflow && self.lrs.lrs.iter().filter(|&&lr| state(lr) != 0).count() <= 1
    }

    fn holds_pending(&self, sgi: u8) -> bool {
        self.lrs
            .lrs
            .iter()
            .any(|&lr| intid(lr) == sgi as u64 && state(lr) & PENDING != 0)
    }

    /// One turn of the guest and one exit: the maintenance interrupt if it
    /// is due, else the kick if one is pending (else nothing happens).
    /// After a kick's fill, the raise of `raised[k]` by each sender `k`
    /// whose kick has been acknowledged must not be lost; `raised` has one
    /// raise per SGI, so "delivered" means delivered after that raise.
    fn step(&mut self, sgis: &VirtualSgis, kick: &Kick, raised: &[u8]) {
        self.guest_runs();
        if self.maintenance_due() {
            self.fill(sgis);
            return;
        }
        let taken = kick.acknowledge();
        if taken == 0 {
            thread::yield_now();
            return;
        }
        self.kicked |= taken;
        self.fill(sgis);
        for (sender, &sgi) in raised.iter().enumerate() {
            if self.kicked & (1 << sender) != 0 {
                self.assert_not_lost(sgis, sgi);
            }
        }
    }

    fn assert_not_lost(&self, sgis: &VirtualSgis, sgi: u8) {
        let bit = 1u16 << sgi;
        let pending = sgis.read(SetClear::PendingSet) & bit != 0;
        let enabled = sgis.read(SetClear::EnableSet) & bit != 0;
        assert!(
            self.delivered[sgi as usize] > 0
                || self.holds_pending(sgi)
                || pending && (self.lrs.underflow || !enabled),
            "SGI {sgi} lost: not delivered, not in a list register, pending {pending}, \
             enabled {enabled}, underflow {}; list registers {:x?}",
            self.lrs.underflow,
            self.lrs.lrs
        );
    }

    /// Runs until every sender has kicked, then until the guest has taken
    /// everything (maintenance interrupts included) and the list registers
    /// are empty.
    fn serve_and_drain(&mut self, sgis: &VirtualSgis, kick: &Kick, raised: &[u8]) {
        let everyone = (1u8 << raised.len()) - 1;
        while self.kicked != everyone {
            self.step(sgis, kick, raised);
        }
        loop {
            self.guest_runs();
            if self.maintenance_due() {
                self.fill(sgis);
            } else if self.lrs.lrs.iter().all(|&lr| state(lr) == 0) {
                break;
            }
        }
        assert_eq!(
            sgis.read(SetClear::PendingSet) & sgis.read(SetClear::EnableSet),
            0,
            "an enabled SGI is still pending with the list registers empty"
        );
        assert!(
            self.backlog.is_empty(),
            "physical interrupts {:?} never reached a list register",
            self.backlog
        );
    }
}

/// The EL1 virtual timer's PPI, a physical interrupt hv forwards.
const TIMER_PPI: u16 = 27;

fn enabled_sgis() -> Arc<VirtualSgis> {
    let sgis = VirtualSgis::new();
    // The guest's GICR_ISENABLER0 write at boot.
    sgis.set_clear(SetClear::EnableSet, 0xffff);
    Arc::new(sgis)
}

/// Two senders raise different SGIs for the target at once while it fills
/// for an unrelated exit that also queued its timer PPI; one list register
/// only, so two of the three must wait (SGIs put back, the PPI in the
/// backlog, with the underflow interrupt requested). Each is delivered
/// exactly once.
#[test]
fn concurrent_raises_are_neither_lost_nor_doubled() {
    const RAISED: [u8; 2] = [1, 2];
    loom::model(|| {
        let (sgis, kick) = (enabled_sgis(), Arc::new(Kick::default()));
        let senders: Vec<_> = RAISED
            .iter()
            .enumerate()
            .map(|(sender, &sgi)| {
                let (sgis, kick) = (sgis.clone(), kick.clone());
                thread::spawn(move || {
                    sgis.raise(sgi);
                    kick.send(sender);
                })
            })
            .collect();
        let mut target = Target::new(1);
        // An exit unrelated to the kicks: the guest's timer PPI fired.
        target.backlog.push(TIMER_PPI);
        target.fill(&sgis);
        target.serve_and_drain(&sgis, &kick, &RAISED);
        for sender in senders {
            sender.join().unwrap();
        }
        let mut expected = [0; 32];
        for sgi in RAISED {
            expected[sgi as usize] = 1;
        }
        expected[TIMER_PPI as usize] = 1;
        assert_eq!(target.delivered, expected);
    });
}

/// vCPU 0 raises an SGI, and raises it again once the guest has taken it
/// (and possibly not yet deactivated it); vCPU 1 raises the same SGI at any
/// moment; the target fills on each kick and on unrelated exits. vCPU 0's
/// second raise cannot coalesce with its first (that one was already
/// taken), so the guest gets the SGI at least twice, and three times at
/// most (vCPU 1's raise may coalesce with either). The fill must mark an
/// active list register pending again rather than use a second one (two
/// list registers, so a second one is free).
#[test]
fn raise_of_a_taken_sgi_is_delivered_again() {
    const SGI: u8 = 3;
    loom::model(|| {
        let (sgis, kick) = (enabled_sgis(), Arc::new(Kick::default()));
        let taken = Arc::new(AtomicBool::new(false));
        let twice = {
            let (sgis, kick, taken) = (sgis.clone(), kick.clone(), taken.clone());
            thread::spawn(move || {
                sgis.raise(SGI);
                kick.send(0);
                while !taken.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                sgis.raise(SGI);
                kick.send(1);
            })
        };
        let once = {
            let (sgis, kick) = (sgis.clone(), kick.clone());
            thread::spawn(move || {
                sgis.raise(SGI);
                kick.send(2);
            })
        };
        let mut target = Target::new(2);
        // Kicks 0 and 1 are vCPU 0's raises, kick 2 vCPU 1's.
        let raised = [SGI; 3];
        while target.delivered[SGI as usize] == 0 {
            target.step(&sgis, &kick, &raised);
        }
        // The guest's handler runs (the SGI is active): vCPU 0 sees it.
        taken.store(true, Ordering::Release);
        target.fill(&sgis);
        target.serve_and_drain(&sgis, &kick, &raised);
        twice.join().unwrap();
        once.join().unwrap();
        let delivered = target.delivered[SGI as usize];
        assert!(
            (2..=3).contains(&delivered),
            "three raises, one after the first was taken: delivered {delivered} times"
        );
    });
}

/// The guest disables an SGI and enables it again (trapped GICR writes on
/// its own vCPU, each exit ending in a fill) while another vCPU raises it:
/// a disabled SGI stays pending, and once enabled it is delivered exactly
/// once.
#[test]
fn raise_while_disabled_stays_pending_until_enabled() {
    const SGI: u8 = 5;
    loom::model(|| {
        let (sgis, kick) = (enabled_sgis(), Arc::new(Kick::default()));
        let sender = {
            let (sgis, kick) = (sgis.clone(), kick.clone());
            thread::spawn(move || {
                sgis.raise(SGI);
                kick.send(0);
            })
        };
        let mut target = Target::new(1);
        let raised = [SGI];
        // An unrelated exit first: the SGI may be in a list register when
        // the guest disables it (it then still reaches the guest, as an
        // interrupt the redistributor had already forwarded would).
        target.fill(&sgis);
        // GICR_ICENABLER0, then one turn of the guest (a kick may come).
        sgis.set_clear(SetClear::EnableClear, 1 << SGI);
        target.fill(&sgis);
        target.step(&sgis, &kick, &raised);
        // GICR_ISENABLER0.
        sgis.set_clear(SetClear::EnableSet, 1 << SGI);
        target.fill(&sgis);
        target.serve_and_drain(&sgis, &kick, &raised);
        sender.join().unwrap();
        assert_eq!(target.delivered[SGI as usize], 1);
    });
}

/// vCPU 0 raises an SGI for vCPU 1 while vCPU 1's CPU is starting (PSCI
/// CPU_ON): a kick that reaches the CPU before its GIC is set up may be
/// lost (here the set-up swallows any kick already sent), and
/// `enter_guest_on_this_cpu` fills once before the guest first runs. The
/// raise must not be lost either way: a swallowed kick was sent after the
/// raise, so the entry fill sees the raise; a later kick is served.
#[test]
fn raise_while_the_target_starts_is_taken_at_entry() {
    const SGI: u8 = 2;
    loom::model(|| {
        let (sgis, kick) = (enabled_sgis(), Arc::new(Kick::default()));
        let sent = Arc::new(AtomicBool::new(false));
        let sender = {
            let (sgis, kick, sent) = (sgis.clone(), kick.clone(), sent.clone());
            thread::spawn(move || {
                sgis.raise(SGI);
                kick.send(0);
                sent.store(true, Ordering::Release);
            })
        };
        let mut target = Target::new(1);
        // Gic::init_cpu: a kick that came before is gone.
        kick.acknowledge();
        // enter_guest_on_this_cpu.
        target.fill(&sgis);
        // The guest runs and hv serves its exits until the sender is done
        // and no kick is pending any more.
        loop {
            target.guest_runs();
            if target.maintenance_due() {
                target.fill(&sgis);
                continue;
            }
            let finished = sent.load(Ordering::Acquire);
            if kick.acknowledge() != 0 {
                target.fill(&sgis);
            } else if finished {
                break;
            } else {
                thread::yield_now();
            }
        }
        // Nothing will make this CPU fill again: the SGI must be on its way.
        target.assert_not_lost(&sgis, SGI);
        target.serve_and_drain(&sgis, &kick, &[]);
        sender.join().unwrap();
        assert_eq!(target.delivered[SGI as usize], 1);
    });
}

/// Another vCPU writes the target's redistributor: GICR_ISENABLER0 for an
/// SGI that is pending but disabled, or GICR_ISPENDR0 for an enabled one,
/// then kicks the target (`Gic::emulate`, as `send_sgi` after a raise),
/// racing an unrelated exit of the target. The target has no other reason
/// to refill, so without the kick the SGI would wait for any later exit;
/// with it, the SGI is delivered once.
#[test]
fn another_vcpus_enable_or_pending_write_is_followed_by_a_kick() {
    const SGI: u8 = 4;
    for op in [SetClear::EnableSet, SetClear::PendingSet] {
        loom::model(move || {
            let sgis = Arc::new(VirtualSgis::new());
            let kick = Arc::new(Kick::default());
            match op {
                // Raised while the target's guest had it disabled.
                SetClear::EnableSet => sgis.raise(SGI),
                _ => sgis.set_clear(SetClear::EnableSet, 1 << SGI),
            }
            let writer = {
                let (sgis, kick) = (sgis.clone(), kick.clone());
                thread::spawn(move || {
                    sgis.set_clear(op, 1 << SGI);
                    kick.send(0);
                })
            };
            let mut target = Target::new(2);
            target.fill(&sgis);
            target.serve_and_drain(&sgis, &kick, &[SGI]);
            writer.join().unwrap();
            assert_eq!(target.delivered[SGI as usize], 1, "{op:?}");
        });
    }
}
