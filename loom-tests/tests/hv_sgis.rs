//! loom models of hv's virtual SGI protocol (`hv::vgic`). Any CPU raises a
//! virtual SGI for a target vCPU (`VirtualSgis::raise`, from the sender's
//! trapped ICC_SGI1R_EL1 write) and kicks the target's physical CPU; the
//! target's CPU takes its physical interrupts (`vgic::take_interrupts`:
//! the acknowledge loop over the kick SGI and the level-sensitive
//! maintenance PPI, the ISB, the refill, the maintenance deactivation)
//! and ends every exit with `vgic::fill_list_registers`, which moves the
//! pending and enabled SGIs and the backlog into its list registers and
//! asks for the underflow maintenance interrupt only when every list
//! register is in use; the guest's trapped GICR writes enable and disable
//! SGIs (`VirtualSgis::set_clear`). The models run hv's own code on
//! loom's atomics (hv/src/sync.rs); only the CPU interface, the list
//! registers, the guest and the kick are stand-ins. Two list registers,
//! the fewest hv runs with (`vgic::MIN_LIST_REGISTERS`).
//!
//! Whatever the interleaving, the models check:
//! - the acknowledge loop of every exit ends (a CPU acknowledging the
//!   maintenance interrupt forever was the 4-vCPU hang), and leaves the
//!   maintenance interrupt inactive;
//! - no fill leaves the maintenance line high (the underflow rule: hv
//!   would take it again at once, with nothing consumed);
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
//! ICC_SGI1R_EL1 to send hv's physical kick SGI. A system-register write
//! is no memory access, so only the DSB orders the raise before the kick:
//! here the sender's Release. The target's ICC_IAR1_EL1 read is no memory
//! access either and orders nothing by itself: here a Relaxed read of the
//! kick word. What orders the refill's loads after it is the ISB that
//! `take_interrupts` executes after its acknowledge loop
//! (`PhysicalCpuInterface::synchronize`, review 8 H1): here an Acquire
//! fence. Without that call the models lose SGIs.
#![cfg(loom)]

use hv::vgic::{self, Backlog, ListRegisters, PhysicalCpuInterface, SetClear, VirtualSgis};
use loom::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use loom::sync::Arc;
use loom::thread;

/// List-register state field (bits 63:62): pending, active, both.
const STATE_SHIFT: u32 = 62;
const PENDING: u64 = 0b01;
const ACTIVE: u64 = 0b10;
/// List-register HW bit: a physical interrupt (PPI or SPI), not an SGI.
const HW: u64 = 1 << 61;
const MAINTENANCE: u32 = vgic::DEFAULT_MAINTENANCE_INTID;
/// More acknowledgements than this in one exit: the loop does not end.
const ACKNOWLEDGE_BOUND: usize = 16;

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
}

fn state(lr: u64) -> u64 {
    lr >> STATE_SHIFT
}

fn intid(lr: u64) -> u64 {
    lr & 0xffff_ffff
}

/// The target CPU: its GIC CPU interface and list registers, driven by
/// hv's exits and by the guest taking interrupts, in turn (so no atomics
/// but the kick, which other CPUs send).
#[derive(Debug)]
struct Target {
    lrs: Vec<u64>,
    /// ICH_HCR_EL2.UIE.
    underflow: bool,
    kick: Arc<Kick>,
    kick_active: bool,
    maintenance_active: bool,
    /// Acknowledgements in the current exit.
    acknowledged: usize,
    backlog: Backlog,
    /// How often the guest acknowledged each SGI and PPI.
    delivered: [u32; 32],
    /// Senders whose kicks the target has acknowledged.
    kicked: u8,
    /// The guest's ICV_PMR_EL1: it takes only interrupts of a higher
    /// priority (a lower value).
    mask: u8,
}

impl PhysicalCpuInterface for Target {
    /// ICC_IAR1_EL1: the kick while it is pending and not active, else
    /// the maintenance interrupt while its line is high and it is not
    /// active (both at hv's priority; the kick first).
    fn acknowledge(&mut self) -> u32 {
        self.acknowledged += 1;
        assert!(
            self.acknowledged <= ACKNOWLEDGE_BOUND,
            "the acknowledge loop does not end (the hang): list registers {:x?}, UIE {}",
            self.lrs,
            self.underflow
        );
        if !self.kick_active {
            // A system-register read: it orders no memory access.
            let senders = self.kick.0.swap(0, Ordering::Relaxed);
            if senders != 0 {
                self.kicked |= senders;
                self.kick_active = true;
                return vgic::KICK_SGI;
            }
        }
        if !self.maintenance_active && self.maintenance_due() {
            self.maintenance_active = true;
            return MAINTENANCE;
        }
        1023
    }

    fn drop_priority(&mut self, _intid: u32) {}

    fn deactivate(&mut self, intid: u32) {
        match intid {
            vgic::KICK_SGI => assert!(std::mem::take(&mut self.kick_active)),
            MAINTENANCE => assert!(std::mem::take(&mut self.maintenance_active)),
            other => panic!("deactivated INTID {other}, which hv never acknowledged"),
        }
    }

    /// The ISB after the acknowledge loop: with the control dependency on
    /// each IAR value, later loads are ordered after the IAR reads.
    fn synchronize(&mut self) {
        fence(Ordering::Acquire);
    }
}

impl ListRegisters for Target {
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

impl Target {
    fn new(list_registers: usize, kick: &Arc<Kick>) -> Self {
        assert!(list_registers >= vgic::MIN_LIST_REGISTERS);
        Target {
            lrs: vec![0; list_registers],
            underflow: false,
            kick: kick.clone(),
            kick_active: false,
            maintenance_active: false,
            acknowledged: 0,
            backlog: Backlog::new(),
            delivered: [0; 32],
            kicked: 0,
            mask: 0xff,
        }
    }

    /// A fill that ends an exit. Every SGI it makes pending in a list
    /// register must be enabled (another vCPU may only set enables while
    /// the fill runs, so the value read after it is exact enough: an SGI
    /// enabled meanwhile may be placed), and the maintenance line must be
    /// low after it.
    fn fill(&mut self, sgis: &VirtualSgis) {
        let before = self.lrs.clone();
        let mut backlog = std::mem::take(&mut self.backlog);
        vgic::fill_list_registers(self, sgis, &mut backlog, |_| 0xa0);
        self.backlog = backlog;
        self.after_fill(sgis, &before);
    }

    fn after_fill(&self, sgis: &VirtualSgis, before: &[u64]) {
        let enabled = sgis.read(SetClear::EnableSet);
        for (&old, &new) in before.iter().zip(&self.lrs) {
            if new != old && state(new) & PENDING != 0 && new & HW == 0 {
                assert!(
                    enabled & 1 << intid(new) != 0,
                    "disabled SGI {} made pending in a list register",
                    intid(new)
                );
            }
        }
        assert!(
            !self.maintenance_due(),
            "maintenance line high right after a fill: {:x?}",
            self.lrs
        );
    }

    /// An IRQ exit as `arch::guest_exit` runs it: `take_interrupts`, then
    /// the closing fill.
    fn irq_exit(&mut self, sgis: &VirtualSgis) {
        self.acknowledged = 0;
        let before = self.lrs.clone();
        let mut backlog = std::mem::take(&mut self.backlog);
        vgic::take_interrupts(
            self,
            MAINTENANCE,
            sgis,
            &vgic::SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert!(!self.maintenance_active, "maintenance left active");
        assert!(!self.kick_active, "kick left active");
        self.after_fill(sgis, &before);
        let before = self.lrs.clone();
        vgic::fill_list_registers(self, sgis, &mut backlog, |_| 0xa0);
        self.backlog = backlog;
        self.after_fill(sgis, &before);
    }

    /// The guest runs: it first deactivates what it took last time (so an
    /// SGI stays active across one fill, and a raise meanwhile must mark
    /// that list register pending again), then acknowledges every pending
    /// interrupt a list register holds that its priority mask lets in (one
    /// that is also active cannot be taken until deactivated).
    fn guest_runs(&mut self) {
        for lr in &mut self.lrs {
            *lr &= !(ACTIVE << STATE_SHIFT);
        }
        for lr in &mut self.lrs {
            if state(*lr) == PENDING && ((*lr >> 48) as u8) < self.mask {
                self.delivered[intid(*lr) as usize] += 1;
                *lr = (*lr & !(0b11 << STATE_SHIFT)) | ACTIVE << STATE_SHIFT;
            }
        }
    }

    /// ICH_MISR_EL2.U with ICH_HCR_EL2.UIE: the maintenance line is high
    /// while at most one list register is valid.
    fn maintenance_due(&self) -> bool {
        self.underflow && self.lrs.iter().filter(|&&lr| state(lr) != 0).count() <= 1
    }

    /// Whether a physical IRQ is pending at the CPU: it takes an exit.
    /// The GIC signals the latest kick state (a read-modify-write reads
    /// the latest value), ordering nothing.
    fn irq_pending(&self) -> bool {
        (!self.kick_active && self.kick.0.fetch_or(0, Ordering::Relaxed) != 0)
            || (!self.maintenance_active && self.maintenance_due())
    }

    fn holds_pending(&self, sgi: u8) -> bool {
        self.lrs
            .iter()
            .any(|&lr| intid(lr) == sgi as u64 && state(lr) & PENDING != 0)
    }

    /// One turn of the guest and, if an IRQ is pending, one exit (else
    /// nothing happens). After the exit, the raise of `raised[k]` by each
    /// sender `k` whose kick has been acknowledged must not be lost;
    /// `raised` has one raise per SGI, so "delivered" means delivered after
    /// that raise.
    fn step(&mut self, sgis: &VirtualSgis, raised: &[u8]) {
        self.guest_runs();
        if !self.irq_pending() {
            thread::yield_now();
            return;
        }
        self.irq_exit(sgis);
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
                || pending && (self.underflow || !enabled),
            "SGI {sgi} lost: not delivered, not in a list register, pending {pending}, \
             enabled {enabled}, underflow {}; list registers {:x?}",
            self.underflow,
            self.lrs
        );
    }

    /// Runs until every sender has kicked, then until the guest has taken
    /// everything (maintenance interrupts included) and the list registers
    /// are empty.
    fn serve_and_drain(&mut self, sgis: &VirtualSgis, raised: &[u8]) {
        let everyone = (1u8 << raised.len()) - 1;
        while self.kicked & everyone != everyone {
            self.step(sgis, raised);
        }
        for _ in 0..32 {
            self.guest_runs();
            if self.irq_pending() {
                self.irq_exit(sgis);
            } else if self.lrs.iter().all(|&lr| state(lr) == 0) {
                break;
            }
        }
        assert!(
            self.lrs.iter().all(|&lr| state(lr) == 0),
            "the guest never drained its list registers: {:x?}",
            self.lrs
        );
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
/// for an unrelated exit that also queued two PPIs (its timer and another);
/// two list registers only, so two of the four must wait (SGIs put back,
/// PPIs in the backlog, with the underflow interrupt requested, and the
/// maintenance interrupt taken through `take_interrupts` once the guest
/// has consumed all but one). Each is delivered exactly once.
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
        let mut target = Target::new(2, &kick);
        // An exit unrelated to the kicks: the guest's timer PPI and another
        // fired.
        target.backlog.extend([TIMER_PPI, TIMER_PPI + 1]);
        target.fill(&sgis);
        target.serve_and_drain(&sgis, &RAISED);
        for sender in senders {
            sender.join().unwrap();
        }
        let mut expected = [0; 32];
        for sgi in RAISED {
            expected[sgi as usize] = 1;
        }
        expected[TIMER_PPI as usize] = 1;
        expected[TIMER_PPI as usize + 1] = 1;
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
        let mut target = Target::new(2, &kick);
        // Kicks 0 and 1 are vCPU 0's raises, kick 2 vCPU 1's.
        let raised = [SGI; 3];
        while target.delivered[SGI as usize] == 0 {
            target.step(&sgis, &raised);
        }
        // The guest's handler runs (the SGI is active): vCPU 0 sees it.
        taken.store(true, Ordering::Release);
        target.fill(&sgis);
        target.serve_and_drain(&sgis, &raised);
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
        let mut target = Target::new(2, &kick);
        let raised = [SGI];
        // An unrelated exit first: the SGI may be in a list register when
        // the guest disables it (it then still reaches the guest, as an
        // interrupt the redistributor had already forwarded would).
        target.fill(&sgis);
        // GICR_ICENABLER0, then one turn of the guest (a kick may come).
        sgis.set_clear(SetClear::EnableClear, 1 << SGI);
        target.fill(&sgis);
        target.step(&sgis, &raised);
        // GICR_ISENABLER0.
        sgis.set_clear(SetClear::EnableSet, 1 << SGI);
        target.fill(&sgis);
        target.serve_and_drain(&sgis, &raised);
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
        let mut target = Target::new(2, &kick);
        // Gic::init_cpu: a kick that came before is gone (the CPU set-up
        // ends in an ISB, as the acknowledge loop does).
        kick.0.swap(0, Ordering::Relaxed);
        fence(Ordering::Acquire);
        // enter_guest_on_this_cpu.
        target.fill(&sgis);
        // The guest runs and hv serves its exits until the sender is done
        // and no kick is pending any more.
        loop {
            target.guest_runs();
            let finished = sent.load(Ordering::Acquire);
            if target.irq_pending() {
                target.irq_exit(&sgis);
            } else if finished {
                break;
            } else {
                thread::yield_now();
            }
        }
        // Nothing will make this CPU fill again: the SGI must be on its way.
        target.assert_not_lost(&sgis, SGI);
        target.serve_and_drain(&sgis, &[]);
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
            let mut target = Target::new(2, &kick);
            target.fill(&sgis);
            target.serve_and_drain(&sgis, &[SGI]);
            writer.join().unwrap();
            assert_eq!(target.delivered[SGI as usize], 1, "{op:?}");
        });
    }
}

/// The target's guest masks priority 0xa0 (Linux with pseudo-NMIs masks
/// IRQs by ICV_PMR_EL1) while both list registers hold pending PPIs of
/// that priority; another vCPU sends it an SGI of priority 0x40 (a
/// pseudo-NMI IPI). The kick's exit must put the SGI in a list register
/// (displacing a masked PPI back to the backlog), not leave it waiting
/// behind interrupts the guest will not take, with an underflow request
/// that nothing consumed can satisfy. Once the guest unmasks, everything
/// is delivered exactly once.
#[test]
fn a_higher_priority_sgi_is_not_kept_out_by_masked_interrupts() {
    const SGI: u8 = 1;
    loom::model(|| {
        let (sgis, kick) = (enabled_sgis(), Arc::new(Kick::default()));
        sgis.set_priority(SGI, 0x40);
        let sender = {
            let (sgis, kick) = (sgis.clone(), kick.clone());
            thread::spawn(move || {
                sgis.raise(SGI);
                kick.send(0);
            })
        };
        let mut target = Target::new(2, &kick);
        target.mask = 0x80;
        target.backlog.extend([TIMER_PPI, TIMER_PPI + 1]);
        target.fill(&sgis);
        while target.kicked == 0 {
            target.step(&sgis, &[SGI]);
        }
        assert!(
            target.delivered[SGI as usize] == 1 || target.holds_pending(SGI),
            "SGI {SGI} kept out by masked interrupts: list registers {:x?}, backlog {:?}",
            target.lrs,
            target.backlog
        );
        target.guest_runs();
        assert_eq!(target.delivered[SGI as usize], 1);
        target.mask = 0xff;
        target.serve_and_drain(&sgis, &[SGI]);
        sender.join().unwrap();
        let mut expected = [0; 32];
        expected[SGI as usize] = 1;
        expected[TIMER_PPI as usize] = 1;
        expected[TIMER_PPI as usize + 1] = 1;
        assert_eq!(target.delivered, expected);
    });
}
