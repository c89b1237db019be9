//! The second vCPU: L2 on the SAME shadow stage 2 (same VMID, same root)
//! as the first, reading the pages the first changes in paths 2 and 3
//! while it changes them (DESIGN.md's "updated safely while other vCPUs
//! run on the same tree").
//!
//! The first vCPU announces each [`Change`] (the L2 IPA, its value before
//! and after) in [`ReaderShare`], waits until this vCPU has read the old
//! value twice (its translation now in this PE's TLB), makes the change
//! (break-before-make of L1's entry with a TLBI, or L0's unmap or write
//! protection), and after the service's acknowledgement publishes
//! [`Phase::Acked`]. Meanwhile this vCPU reads the page again and again,
//! each read a run of the payload's `ldr`; every stage-2 fault goes to the
//! service on this vCPU's own ring pair (the Poller's second endpoint).
//! Checked, for every read:
//! - it gives the old or the new value, never another one;
//! - a read that began after this vCPU saw the acknowledgement gives the
//!   new value: the TLBI (or unmap) completed before the ack, so no
//!   access after it may use the old translation;
//! - a fault answered with a fault for L1 (`Inject`: L1's entry is absent
//!   for a moment, L1's break-before-make) is accepted only while the
//!   change is under way, in a read that began before the ack;
//! - a fault is never answered with an external abort: every page read is
//!   L1's RAM, and while L0's mapping of it is absent (L0's own
//!   break-before-make, path 3) the answer is `Retry(L0Changing)`, as a
//!   hardware walk of L0's table would fault to L0, never to L1 or L2
//!   (review 59 R59-7).
//!
//! Every wait for the service is bounded by the clock, every run of L2 by
//! the L2Cpu's own bound (hv: the EL2 watchdog).

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use ipc::{
    AccessKind, ContextKey, Request, RetryReason, TranslateOutcome, TranslateRequest, VcpuClient,
};

use super::lab::{self, CODE_L2};
use super::{
    call, request_esr, Clock, Doorbell, Failure, L2Cpu, L2Exit, L2Regs, Reply, ShadowExchange,
    EC_DATA_ABORT_LOWER, EC_HVC64, EC_INSTRUCTION_ABORT_LOWER, MAX_EXITS, READER_VCPU,
};

/// A change of paths 2 and 3 the second vCPU reads through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// L1 remaps [`lab::TLBI_L2`] (break-before-make, TLBI IPAS2E1IS).
    TlbiPage,
    /// L1 moves its block [`lab::BLOCK_L2`] (TLBI VMALLS12E1IS).
    Block,
    /// L0 moves L1's page under [`lab::MOVED_L2`] (`L0Unmap`).
    L0Move,
    /// L0 write-protects L1's page under [`lab::LOGGED_L2`] (its value
    /// stays: old and new are the same).
    L0WriteProtect,
}

impl Change {
    const ALL: [Change; 4] = [
        Change::TlbiPage,
        Change::Block,
        Change::L0Move,
        Change::L0WriteProtect,
    ];

    /// The L2 IPA the second vCPU reads (not the word the first vCPU
    /// reads, on the same page or block).
    pub fn l2_ipa(self) -> u64 {
        match self {
            Change::TlbiPage => lab::TLBI_L2 + 0x18,
            Change::Block => lab::BLOCK_L2 + 0x1000,
            Change::L0Move => lab::MOVED_L2 + 0x20,
            Change::L0WriteProtect => lab::LOGGED_L2 + 0x48,
        }
    }

    fn code(self) -> u64 {
        match self {
            Change::TlbiPage => 1,
            Change::Block => 2,
            Change::L0Move => 3,
            Change::L0WriteProtect => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Change::TlbiPage => "L1's remap with TLBI IPAS2E1IS",
            Change::Block => "L1's block move with TLBI VMALLS12E1IS",
            Change::L0Move => "L0's unmap and move",
            Change::L0WriteProtect => "L0's write protection",
        }
    }
}

/// What the first vCPU says the second should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing to read.
    Idle,
    /// The change is under way: old or new.
    Changing(Change),
    /// The change is acknowledged: a read that begins now gives the new.
    Acked(Change),
    /// The run is over.
    Stop,
}

impl Phase {
    /// The phase as the word [`ReaderShare`] holds (0 is `Idle`).
    pub fn code(self) -> u64 {
        match self {
            Phase::Idle => 0,
            Phase::Changing(c) => c.code() << 2 | 1,
            Phase::Acked(c) => c.code() << 2 | 2,
            Phase::Stop => 3,
        }
    }

    fn from_code(code: u64) -> Phase {
        let change = Change::ALL.into_iter().find(|c| c.code() == code >> 2);
        match (code & 3, change) {
            (1, Some(c)) => Phase::Changing(c),
            (2, Some(c)) => Phase::Acked(c),
            (3, _) => Phase::Stop,
            _ => Phase::Idle,
        }
    }
}

/// What the second vCPU counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderReport {
    /// Reads that completed (each checked).
    pub reads: u64,
    /// ... of them giving the old value (all while a change was under way).
    pub old: u64,
    /// ... giving the new value.
    pub new: u64,
    /// ... that began after the acknowledgement (all new).
    pub after_ack: u64,
    /// Stage-2 faults sent to the service.
    pub faults: u64,
    /// ... answered with a fault for L1 while L1's entry was absent (L1's
    /// break-before-make), the read then made again.
    pub mid_change: u64,
}

impl fmt::Display for ReaderReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a second vCPU on the same shadow read the changing pages {} times during {} changes ({} old values, {} new, {} of them in reads begun after the ack), {} stage-2 faults served ({} answered as L1's fault mid-change)",
            self.reads,
            Change::ALL.len(),
            self.old,
            self.new,
            self.after_ack,
            self.faults,
            self.mid_change
        )
    }
}

/// What the two vCPUs share (in [`ShadowExchange`]).
#[derive(Debug)]
pub struct ReaderShare {
    /// [`Phase::code`]; stored last (Release) by the first vCPU.
    phase: AtomicU64,
    /// The change's L2 IPA, old and new value.
    target: AtomicU64,
    old: AtomicU64,
    new: AtomicU64,
    /// The phase of the second vCPU's last checked read (<< 32) and how
    /// many reads it checked in that phase.
    progress: AtomicU64,
    /// The phase the second vCPU loaded at the top of its latest
    /// iteration (each read is one iteration: once this is `Idle` after the
    /// first vCPU stored `Idle`, no read of the change is still running).
    seen: AtomicU64,
    /// Set when the second vCPU is up and reading.
    started: AtomicU64,
    /// Set when the second vCPU left (1 passed, 2 failed).
    done: AtomicU64,
    failure: spin::Mutex<Option<Failure>>,
    reads: AtomicU64,
    old_seen: AtomicU64,
    new_seen: AtomicU64,
    after_ack: AtomicU64,
    faults: AtomicU64,
    mid_change: AtomicU64,
}

impl Default for ReaderShare {
    fn default() -> Self {
        Self::new()
    }
}

impl ReaderShare {
    /// Idle, nothing counted.
    pub const fn new() -> Self {
        ReaderShare {
            phase: AtomicU64::new(0),
            target: AtomicU64::new(0),
            old: AtomicU64::new(0),
            new: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            started: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failure: spin::Mutex::new(None),
            reads: AtomicU64::new(0),
            old_seen: AtomicU64::new(0),
            new_seen: AtomicU64::new(0),
            after_ack: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            mid_change: AtomicU64::new(0),
        }
    }

    /// Announces `change` of `l2_ipa` from `old` to `new`; returns the
    /// phase code.
    pub(super) fn announce(&self, change: Change, l2_ipa: u64, old: u64, new: u64) -> u64 {
        self.target.store(l2_ipa, Ordering::Relaxed);
        self.old.store(old, Ordering::Relaxed);
        self.new.store(new, Ordering::Relaxed);
        let phase = Phase::Changing(change).code();
        self.phase.store(phase, Ordering::Release);
        phase
    }

    /// The change is acknowledged by the service.
    pub(super) fn acknowledged(&self, change: Change) {
        self.phase
            .store(Phase::Acked(change).code(), Ordering::Release);
    }

    /// The change is over.
    pub(super) fn idle(&self) {
        self.phase.store(Phase::Idle.code(), Ordering::Release);
    }

    /// Whether the second vCPU has seen `Idle` since the last change (its
    /// read of the change, if any, has ended).
    pub(super) fn is_idle(&self) -> bool {
        self.seen.load(Ordering::Acquire) == Phase::Idle.code()
    }

    /// The run is over: the second vCPU leaves.
    pub(super) fn stop(&self) {
        self.phase.store(Phase::Stop.code(), Ordering::Release);
    }

    /// Reads the second vCPU checked that began in phase `phase`.
    pub(super) fn reads_in(&self, phase: u64) -> u64 {
        let progress = self.progress.load(Ordering::Acquire);
        if progress >> 32 == phase {
            progress & 0xffff_ffff
        } else {
            0
        }
    }

    /// Whether the second vCPU has left its loop.
    pub(super) fn done(&self) -> bool {
        self.done.load(Ordering::Acquire) != 0
    }

    /// Whether it has started.
    pub(super) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire) != 0
    }

    /// Its failure, if it failed.
    pub(super) fn failure(&self) -> Option<Failure> {
        if self.done.load(Ordering::Acquire) == 2 {
            self.failure.lock().clone()
        } else {
            None
        }
    }

    /// What it counted.
    pub fn report(&self) -> ReaderReport {
        ReaderReport {
            reads: self.reads.load(Ordering::Relaxed),
            old: self.old_seen.load(Ordering::Relaxed),
            new: self.new_seen.load(Ordering::Relaxed),
            after_ack: self.after_ack.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            mid_change: self.mid_change.load(Ordering::Relaxed),
        }
    }
}

/// The second vCPU: reads what the first vCPU announces until it says
/// stop; a failure is recorded in the share (the first vCPU reports it).
pub fn run_reader<C: L2Cpu, B: Doorbell, K: Clock>(
    ex: &ShadowExchange<B>,
    cpu: &mut C,
    key: ContextKey,
    clock: &K,
    timeout: u64,
) {
    let share = &ex.share;
    let result = VcpuClient::new(
        READER_VCPU,
        ex.reader_requests.ring(),
        ex.reader_replies.ring(),
        &ex.service_bell,
        &ex.reader_reply_bell,
    )
    .map_err(Failure::Ring)
    .and_then(|client| {
        share.started.store(1, Ordering::Release);
        let mut reader = Reader {
            ex,
            cpu,
            client,
            key,
            clock,
            timeout,
        };
        reader.run()
    });
    match result {
        Ok(()) => share.done.store(1, Ordering::Release),
        Err(failure) => {
            *share.failure.lock() = Some(failure);
            share.done.store(2, Ordering::Release);
        }
    }
}

struct Reader<'a, C, B: Doorbell, K> {
    ex: &'a ShadowExchange<B>,
    cpu: &'a mut C,
    client: VcpuClient<'a, B>,
    key: ContextKey,
    clock: &'a K,
    timeout: u64,
}

/// How one read of the second vCPU ended.
enum Read {
    Value(u64),
    /// Answered with a fault for L1 (the read is made again).
    L1Fault,
}

impl<C: L2Cpu, B: Doorbell, K: Clock> Reader<'_, C, B, K> {
    fn run(&mut self) -> Result<(), Failure> {
        let share = &self.ex.share;
        loop {
            let code = share.phase.load(Ordering::Acquire);
            share.seen.store(code, Ordering::Release);
            let (change, acked) = match Phase::from_code(code) {
                Phase::Stop => return Ok(()),
                Phase::Idle => {
                    core::hint::spin_loop();
                    continue;
                }
                Phase::Changing(change) => (change, false),
                Phase::Acked(change) => (change, true),
            };
            // (Stored before the phase, read after it: Acquire above.)
            let l2_ipa = share.target.load(Ordering::Relaxed);
            let old = share.old.load(Ordering::Relaxed);
            let new = share.new.load(Ordering::Relaxed);
            let got = match self.read(l2_ipa, acked)? {
                Read::Value(v) => v,
                Read::L1Fault => {
                    share.mid_change.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            if got == new {
                share.new_seen.fetch_add(1, Ordering::Relaxed);
            } else if got == old && !acked {
                share.old_seen.fetch_add(1, Ordering::Relaxed);
            } else {
                return Err(Failure::ConcurrentValue {
                    change: change.name(),
                    l2_ipa,
                    got,
                    old,
                    new,
                    after_ack: acked,
                });
            }
            share.reads.fetch_add(1, Ordering::Relaxed);
            share
                .after_ack
                .fetch_add(u64::from(acked), Ordering::Relaxed);
            let progress = share.progress.load(Ordering::Relaxed);
            let count = if progress >> 32 == code {
                (progress & 0xffff_ffff) + 1
            } else {
                1
            };
            share
                .progress
                .store(code << 32 | count.min(0xffff_ffff), Ordering::Release);
        }
    }

    /// One run of the payload's `ldr` from `l2_ipa`, its faults served.
    fn read(&mut self, l2_ipa: u64, acked: bool) -> Result<Read, Failure> {
        const STEP: &str = "concurrent read";
        let mut regs = L2Regs {
            x: [l2_ipa, 0, 0, 0],
            pc: CODE_L2,
        };
        // (Every exit that does not end the loop is answered.)
        let mut last: (L2Exit, Option<TranslateOutcome>) = Default::default();
        // Exits that made no progress. A `Retry(L0Changing)` is not one:
        // the primary is inside its break-before-make of L1's RAM, and the
        // fault is retried until the primary's make; that wait is bounded
        // by the clock instead (`changing_since`), as the service's
        // answers are.
        let mut exits = 0;
        let mut changing_since: Option<u64> = None;
        while exits < MAX_EXITS {
            exits += 1;
            let exit = self.cpu.run(&mut regs);
            let class = exit.class();
            if exit.vector == 0 && class == EC_HVC64 && regs.pc == CODE_L2 + 12 {
                return Ok(Read::Value(regs.x[1]));
            }
            if exit.vector == 1 {
                return Err(Failure::Stuck {
                    step: STEP,
                    l2_ipa,
                    pc: regs.pc,
                });
            }
            let fetch = class == EC_INSTRUCTION_ABORT_LOWER
                && exit.far & !(super::memory::PAGE - 1) == CODE_L2;
            let own = class == EC_DATA_ABORT_LOWER && exit.far == l2_ipa;
            if exit.vector != 0 || !(fetch || own) {
                return Err(Failure::Exit {
                    step: STEP,
                    l2_ipa,
                    exit,
                    pc: regs.pc,
                });
            }
            self.ex.share.faults.fetch_add(1, Ordering::Relaxed);
            let request = TranslateRequest {
                context: self.key,
                l2_ipa: super::fault_ipa(&exit),
                access: if fetch {
                    AccessKind::Execute
                } else {
                    AccessKind::Read
                },
                esr: request_esr(STEP, l2_ipa, exit.esr)?,
                far: exit.far,
            };
            let outcome = match call(
                &mut self.client,
                self.clock,
                self.timeout,
                &self.ex.answered,
                Request::Translate(request),
                STEP,
            )? {
                Reply::Translate(outcome) => outcome,
                reply => return Err(Failure::Reply { step: STEP, reply }),
            };
            last = (exit, Some(outcome));
            if outcome == TranslateOutcome::Retry(RetryReason::L0Changing) {
                let now = self.clock.now();
                let since = *changing_since.get_or_insert(now);
                if now.wrapping_sub(since) <= self.timeout {
                    exits -= 1;
                }
            } else {
                changing_since = None;
            }
            match outcome {
                TranslateOutcome::Mapped(_) | TranslateOutcome::Retry(_) => {}
                // (Not `ExternalAbort`: L0's break-before-make of L1's RAM
                // is a retry, module docs.)
                TranslateOutcome::Inject(_) if !acked && !fetch => return Ok(Read::L1Fault),
                other => {
                    return Err(Failure::Reply {
                        step: STEP,
                        reply: Reply::Translate(other),
                    })
                }
            }
        }
        let (last_exit, last_answer) = last;
        Err(Failure::NoProgress {
            step: STEP,
            l2_ipa,
            last_exit,
            last_answer,
        })
    }
}
