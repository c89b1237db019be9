//! The shadow self-test (`hv.selftest=shadow`): the real shadow-mmu
//! [`Service`] answers L2's stage-2 faults over an ipc ring pair, and L2
//! runs on the shadow stage 2 it builds. DESIGN.md's three paths end to
//! end, without a guest hypervisor: hv itself plays L1 (it writes L1's
//! stage-2 table for L2 in L1's memory and issues L1's TLBIs) and L0 (its
//! own stage-2 map of L1, [`memory::L0Stage2`]).
//!
//! One side is the service (hv: CPU 1; host tests: a thread), [`serve`]:
//! an [`ipc::Poller`] over the ring pair answering with
//! [`Service::reply`]. The other is the vCPU (hv: the boot CPU),
//! [`run_scenario`]: it runs the payload ([`lab::PAYLOAD`]) as L2 through
//! an [`L2Cpu`] (hv: EL1 with VTTBR_EL2 the service's shadow root and
//! VMID; host tests: a software CPU that walks the shadow tables) and
//! - path 1: sends every stage-2 abort as `Request::Translate`; `Mapped`
//!   resumes L2 (the access is made again, now through the shadow), an
//!   injection is compared with what L1 must get; each value L2 reads (or
//!   stores) is compared with [`lab::Model`] (the PA the two stages name,
//!   whose pattern tells where the access really went);
//! - path 2: as L1, remaps a page with break-before-make and TLBI
//!   IPAS2E1IS (`Request::Invalidate`), then a block with VMALLS12E1IS,
//!   each after L2 has used the old translation (so a hardware TLB holds
//!   it): L2 must see the new memory;
//! - path 3: as L0, moves an L1 page to another PA (`Request::L0Unmap`):
//!   L2 must see the new backing; and write-protects a page for dirty
//!   logging: L2's store is answered `L0Denied`, which hv resolves as L0;
//! - concurrency: a second vCPU ([`reader`]) reads the changing pages on
//!   the same shadow while paths 2 and 3 change them;
//! - last (hv only, [`WithStage1`]): L2 with its own stage 1, whose
//!   table's page L1 remaps with TLBI IPAS2E1IS.
//!
//! Every wait for the service is bounded by the [`Clock`]; every L2 access
//! has a bounded number of exits. Anything unexpected is a [`Failure`]
//! saying what and where.

pub mod backend;
pub mod lab;
pub mod memory;
pub mod reader;

use alloc::boxed::Box;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ipc::tlbi::{IpaRange, Tlbi};
use ipc::{
    AccessKind, ClientError, ContextKey, DeniedAccess, Doorbell, Endpoint, ExternalAbort,
    Injection, InvalidateRequest, L0Change, L0UnmapRequest, Mapping, Poller, Reply, Request,
    RetryReason, RingBuffer, RingError, TranslateOutcome, TranslateRequest, VcpuClient, VcpuId,
    VmidWidth,
};
use shadow_mmu::budget::{Budget, BudgetError};
use shadow_mmu::compose::L0Map;
use shadow_mmu::context::HostVmids;
use shadow_mmu::service::{Service, ServiceConfig, ShadowBackend, Stats};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::{ExposedFeatures, GuestMemory, IdRegisters};

pub use crate::ipc_selftest::Clock;
use lab::{L1Entry, Lab, Model, Outcome};
use memory::LeafAccess;
pub use reader::{run_reader, ReaderReport, ReaderShare};

/// Slots per ring (the vCPU has one request outstanding at a time).
pub const RING_CAPACITY: usize = 4;
/// The vCPU's id on the rings.
const VCPU: VcpuId = VcpuId(0);
/// The second vCPU's id on its own rings ([`reader`]).
const READER_VCPU: VcpuId = VcpuId(1);
/// Bytes of the service's budget (one context; shadow frames included).
pub const BUDGET_BYTES: usize = 512 << 10;
/// The first shadow VMID (one per context).
pub const FIRST_SHADOW_VMID: u16 = 8;
/// The VMID hv would run L1 with (no shadow may take it).
pub const L1_HOST_VMID: u16 = 1;
/// Exits one L2 access may take: a fetch fault, a data fault, a retry or
/// two; more means no progress.
const MAX_EXITS: usize = 8;
/// The value L2 stores into the read/write page.
const STORED: u64 = 0x5707_ed00_c0ff_ee00;

/// EC of a trapped HVC from AArch64.
const EC_HVC64: u64 = 0x16;
const EC_DATA_ABORT_LOWER: u64 = 0x24;
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
/// ESR_ELx.IL.
const ESR_IL: u64 = 1 << 25;
/// ESR_ELx.ISS.WnR (data aborts).
const ESR_WNR: u64 = 1 << 6;

/// The ring pairs of both vCPUs, the service's run flags and what the
/// second vCPU shares with the first (a `static` in hv).
#[derive(Debug)]
pub struct ShadowExchange<B> {
    requests: RingBuffer<RING_CAPACITY>,
    replies: RingBuffer<RING_CAPACITY>,
    /// The second vCPU's ring pair (a second endpoint of the Poller).
    reader_requests: RingBuffer<RING_CAPACITY>,
    reader_replies: RingBuffer<RING_CAPACITY>,
    /// Rung by either vCPU after a request; the service sleeps on it.
    service_bell: B,
    /// Rung by the service after answering the first vCPU.
    reply_bell: B,
    /// Rung by the service after answering the second vCPU.
    reader_reply_bell: B,
    /// The first vCPU's announcements of its changes, the second's
    /// progress and verdict.
    share: ReaderShare,
    /// Cleared by the vCPU to stop the service (then it rings).
    running: AtomicBool,
    /// Set by the service when it left its loop.
    stopped: AtomicBool,
    /// Requests the service answered.
    answered: AtomicU64,
}

impl<B> ShadowExchange<B> {
    /// A fresh exchange.
    pub const fn new(service_bell: B, reply_bell: B, reader_reply_bell: B) -> Self {
        ShadowExchange {
            requests: RingBuffer::new(),
            replies: RingBuffer::new(),
            reader_requests: RingBuffer::new(),
            reader_replies: RingBuffer::new(),
            service_bell,
            reply_bell,
            reader_reply_bell,
            share: ReaderShare::new(),
            running: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            answered: AtomicU64::new(0),
        }
    }
}

/// The service side: answers every request of both vCPUs (one
/// [`Poller`] over two endpoints) with [`Service::reply`] until the vCPU
/// side stops it. `publish` runs after each answer, before its
/// reply can be seen: on hardware a DSB, since a descriptor store is
/// visible to another PE's translation table walks only after one, and
/// the vCPU resumes L2 as soon as it reads the reply (Linux ends its
/// stage-2 map with DSB ISHST for the same reason; review 22 F4).
pub fn serve<M, L, B, D>(
    ex: &ShadowExchange<D>,
    service: &Service<M, L, B>,
    publish: impl Fn(),
) -> Result<(), RingError>
where
    M: GuestMemory + Sync,
    L: L0Map,
    B: ShadowBackend,
    D: Doorbell,
{
    let worker = service.worker();
    let mut endpoints = [
        Endpoint::new(VCPU, ex.requests.ring(), ex.replies.ring(), &ex.reply_bell)?,
        Endpoint::new(
            READER_VCPU,
            ex.reader_requests.ring(),
            ex.reader_replies.ring(),
            &ex.reader_reply_bell,
        )?,
    ];
    let mut poller = Poller::new(&mut endpoints, RING_CAPACITY);
    poller.run(
        &ex.service_bell,
        |envelope| {
            let reply = service.reply(&worker, envelope);
            publish();
            ex.answered.fetch_add(1, Ordering::Relaxed);
            reply
        },
        || ex.running.load(Ordering::Acquire),
    );
    ex.stopped.store(true, Ordering::Release);
    Ok(())
}

/// What the host is, for the service's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// The host's VMID width (hv's VTCR_EL2.VS).
    pub vmids: VmidWidth,
    /// The host has FEAT_XNX (shown to L1 only then).
    pub xnx: bool,
    /// The host's PA size in bits (at most 48 for the shadow).
    pub pa_bits: u32,
}

impl Host {
    /// The shadow tables' configuration on this host.
    pub const fn shadow_config(&self) -> ShadowConfig {
        ShadowConfig {
            xnx: self.xnx,
            pa_bits: self.pa_bits,
        }
    }
}

/// The ID registers L0 shows L1: 40-bit PA, 4 KiB stage-2 granule, 8-bit
/// VMIDs, FEAT_XNX as the host has it, nothing else.
pub fn l1_features(host: &Host) -> ExposedFeatures {
    match ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 0b0010 | (0b0010 << 40),
        mmfr1: u64::from(host.xnx) << 28,
        mmfr2: 0,
    }) {
        Ok(features) => features,
        // Fixed values, decoded by the host tests.
        Err(_) => unreachable!("fixed ID register values decode"),
    }
}

/// The service's configuration: one context, [`BUDGET_BYTES`].
pub fn service_config(host: &Host, hash_seed: u64) -> Result<ServiceConfig, BudgetError> {
    Ok(ServiceConfig {
        features: l1_features(host),
        budget: Budget::split_for(BUDGET_BYTES, 1, &host.shadow_config())?,
        hash_seed,
        first_shadow_vmid: FIRST_SHADOW_VMID,
        host_vmids: HostVmids {
            width: host.vmids,
            l1_vmid: L1_HOST_VMID,
        },
    })
}

/// L2's general-purpose registers the payload uses, and its PC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Regs {
    /// x0-x3.
    pub x: [u64; 4],
    /// Where L2 runs from (ELR_EL2 on entry and exit).
    pub pc: u64,
}

/// How L2 came back to EL2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Exit {
    /// The vector: 0 synchronous, 1 IRQ, 2 FIQ, 3 SError.
    pub vector: u64,
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// HPFAR_EL2.
    pub hpfar: u64,
}

impl L2Exit {
    fn class(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }
}

/// L2's own stage 1 (EL1's translation registers), for the run with its
/// MMU on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1Regs {
    /// TTBR0_EL1: the L2 IPA of its level-1 table.
    pub ttbr0: u64,
    /// TCR_EL1.
    pub tcr: u64,
    /// MAIR_EL1.
    pub mair: u64,
}

/// This CPU cannot run L2 with its own stage 1 (the host's software CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoStage1;

/// Runs L2 on the shadow stage 2 of the one context.
pub trait L2Cpu {
    /// Enters L2 with `regs` until its next exit to EL2; `regs` then holds
    /// L2's registers and the PC it would resume at.
    fn run(&mut self, regs: &mut L2Regs) -> L2Exit;

    /// Runs L2 from now on with its MMU on and this stage 1 (None: off,
    /// as at first). Err if this CPU cannot (the host's software CPU has
    /// no stage 1).
    fn set_stage1(&mut self, stage1: Option<Stage1Regs>) -> Result<(), NoStage1> {
        match stage1 {
            None => Ok(()),
            Some(_) => Err(NoStage1),
        }
    }
}

/// What the vCPU side counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// L2 accesses checked (values read, stores, faults).
    pub accesses: u64,
    /// Stage-2 aborts L2 took and the service was asked about.
    pub faults: u64,
    /// ... of them fetches from the payload's own page.
    pub fetch_faults: u64,
    /// Answered `Mapped`.
    pub mapped: u64,
    /// Answered with a fault for L1 (a walk fault or an external abort).
    pub injected: u64,
    /// Answered `Retry`.
    pub retried: u64,
    /// TLBIs sent and the entries their acks said were dropped.
    pub invalidations: u64,
    /// Entries dropped by them.
    pub entries_invalidated: u64,
    /// L0 unmaps sent.
    pub l0_unmaps: u64,
    /// Entries removed by them.
    pub entries_unmapped: u64,
    /// `L0Denied` answers hv resolved as L0 (a write to a page it logs,
    /// the walk's read of L1's table page it made unreadable).
    pub l0_denied: u64,
    /// ... of them for the walk's read of L1's table.
    pub l0_denied_table_reads: u64,
    /// `Retry(L0Changing)` answers for the walk's read of L1's table page
    /// mid hv's break-before-make of it (counted in `retried` too).
    pub l0_changing_table_reads: u64,
    /// What the second vCPU did while the first changed the shadow.
    pub reader: ReaderReport,
    /// Reads checked through L2's own stage 1 (0: not run).
    pub stage1_reads: u64,
    /// Stage-2 faults of those, on its table walks included.
    pub stage1_faults: u64,
}

/// Why the run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The vCPU's ring ends could not be claimed.
    Ring(RingError),
    /// L1's or L0's table could not be changed.
    Table(memory::BuildError),
    /// No answer within the timeout.
    Timeout {
        /// What was sent.
        request: &'static str,
        /// Requests the service had answered.
        answered: u64,
    },
    /// The client refused the reply (malformed, for another vCPU or
    /// request) or the call (a request still outstanding).
    Client {
        /// The step.
        step: &'static str,
        /// Why.
        error: ClientError,
    },
    /// A reply of the wrong kind, or an error reply.
    Reply {
        /// The step.
        step: &'static str,
        /// The reply.
        reply: Reply,
    },
    /// A translate answer other than the one the model calls for.
    Outcome {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// What the model expects.
        expected: Outcome,
        /// The answer.
        got: TranslateOutcome,
    },
    /// A read gave the wrong value.
    Value {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// The value the model's PA holds.
        expected: u64,
        /// What L2 read.
        got: u64,
    },
    /// A store did not land where the model says.
    Store {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// The PA.
        pa: u64,
        /// What that PA holds.
        found: Option<u64>,
    },
    /// L2 reached its HVC where the model expects a fault.
    NoFault {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// The fault expected.
        expected: Outcome,
    },
    /// An exit that is neither the HVC nor a stage-2 abort of this access.
    Exit {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// The exit.
        exit: L2Exit,
        /// L2's PC.
        pc: u64,
    },
    /// An interrupt took L2 out before it exited by itself: under hv, the
    /// watchdog timer (L2 ran the whole timeout without exiting).
    Stuck {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// L2's PC.
        pc: u64,
    },
    /// L2 faulted on an access the shadow already translates (the entry
    /// was installed, then not used by the hardware walk).
    WarmFault {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// The exit.
        exit: L2Exit,
    },
    /// More than [`MAX_EXITS`] exits for one access.
    NoProgress {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// The last exit.
        last_exit: L2Exit,
        /// The service's answer to it (None: not a fault it was asked
        /// about).
        last_answer: Option<TranslateOutcome>,
    },
    /// ESR_EL2 has ISS2 bits (\[55:32\]) the request's 32-bit ESR cannot
    /// carry; none of the payload's accesses (a plain LDR, STR or branch,
    /// no FEAT_LS64, GCS, MTE tag or permission-overlay access) sets them,
    /// so one that does is an exit this run does not understand.
    Iss2 {
        /// The step.
        step: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// ESR_EL2.
        esr: u64,
    },
    /// The second vCPU read a value that is neither the old nor the new
    /// one of the change under way, or the old one in a read that began
    /// after it saw the change acknowledged.
    ConcurrentValue {
        /// The change.
        change: &'static str,
        /// L2's address.
        l2_ipa: u64,
        /// What it read.
        got: u64,
        /// The value before the change.
        old: u64,
        /// The value after it.
        new: u64,
        /// The read began after the acknowledgement.
        after_ack: bool,
    },
    /// The second vCPU failed.
    Reader(Box<Failure>),
    /// A request the scenario makes could not be encoded (a TLBI that does
    /// not decode, an empty range).
    Encoding {
        /// The request.
        request: &'static str,
    },
    /// An ack that dropped nothing where the scenario made sure something
    /// was cached.
    NothingDropped {
        /// The request.
        request: &'static str,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Ring(e) => write!(f, "ring set-up: {e:?}"),
            Failure::Table(e) => write!(f, "changing a table: {e}"),
            Failure::Timeout { request, answered } => write!(
                f,
                "timeout waiting for the answer to {request} (the service answered {answered} requests)"
            ),
            Failure::Client { step, error } => write!(f, "{step}: the ipc client refused: {error:?}"),
            Failure::Reply { step, reply } => {
                write!(f, "{step}: unexpected reply {reply:?}")
            }
            Failure::Outcome {
                step,
                l2_ipa,
                expected,
                got,
            } => write!(
                f,
                "{step}: L2 IPA {l2_ipa:#x}: the service answered {got:?}, expected {expected:?}"
            ),
            Failure::Value {
                step,
                l2_ipa,
                expected,
                got,
            } => write!(
                f,
                "{step}: L2 IPA {l2_ipa:#x} read {got:#x}, expected {expected:#x} (a stale or wrong translation: {got:#x} is the pattern of PA {:#x})",
                lab::pattern(*got)
            ),
            Failure::Store {
                step,
                l2_ipa,
                pa,
                found,
            } => write!(
                f,
                "{step}: L2's store to {l2_ipa:#x} is not at PA {pa:#x} (it holds {found:x?})"
            ),
            Failure::NoFault {
                step,
                l2_ipa,
                expected,
            } => write!(
                f,
                "{step}: L2's access to {l2_ipa:#x} completed; expected {expected:?}"
            ),
            Failure::Exit {
                step,
                l2_ipa,
                exit,
                pc,
            } => write!(
                f,
                "{step}: unexpected exit at L2 PC {pc:#x} (access to {l2_ipa:#x}): vector {}, ESR_EL2 {:#x}, FAR_EL2 {:#x}, HPFAR_EL2 {:#x}",
                exit.vector, exit.esr, exit.far, exit.hpfar
            ),
            Failure::Stuck { step, l2_ipa, pc } => write!(
                f,
                "{step}: L2 (access to {l2_ipa:#x}) ran until an interrupt took it out, at PC {pc:#x}: it never exited by itself"
            ),
            Failure::WarmFault { step, l2_ipa, exit } => write!(
                f,
                "{step}: L2 faulted again on {l2_ipa:#x} (ESR_EL2 {:#x}) where the shadow already translates it",
                exit.esr
            ),
            Failure::NoProgress {
                step,
                l2_ipa,
                last_exit,
                last_answer,
            } => write!(
                f,
                "{step}: no progress on {l2_ipa:#x} after {MAX_EXITS} exits; the last: vector {}, ESR_EL2 {:#x}, FAR_EL2 {:#x}, HPFAR_EL2 {:#x}, answered {last_answer:?}",
                last_exit.vector, last_exit.esr, last_exit.far, last_exit.hpfar
            ),
            Failure::Iss2 { step, l2_ipa, esr } => write!(
                f,
                "{step}: L2's access to {l2_ipa:#x} exited with ESR_EL2 {esr:#x}, whose ISS2 a translate request cannot carry"
            ),
            Failure::ConcurrentValue {
                change,
                l2_ipa,
                got,
                old,
                new,
                after_ack,
            } => write!(
                f,
                "during {change}: the second vCPU read {got:#x} at L2 IPA {l2_ipa:#x} ({}), where the old value is {old:#x} and the new {new:#x} (the pattern of PA {:#x})",
                if *after_ack { "in a read that began after the acknowledgement" } else { "while the change was under way" },
                lab::pattern(*got)
            ),
            Failure::Reader(inner) => write!(f, "second vCPU: {inner}"),
            Failure::Encoding { request } => write!(f, "{request} could not be encoded"),
            Failure::NothingDropped { request } => {
                write!(f, "{request} was acknowledged having dropped nothing")
            }
        }
    }
}

/// One L2 access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write(u64),
    /// A branch to the address: an instruction fetch from it.
    Exec,
}

/// Whether an access may fault on its way (first touch) or must not (the
/// shadow already translates it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Touch {
    Cold,
    Warm,
}

/// Addresses whose reads the scenario checks again after each change.
const READS: [u64; 10] = [
    lab::RW_L2 + 0x8,
    lab::RO_L2 + 0x100,
    lab::TLBI_L2 + 0x10,
    lab::MOVED_L2 + 0x18,
    lab::IN_BLOCK_L2 + 0x20,
    lab::BLOCK_L2 + 0x8,
    lab::BLOCK_L2 + 0x10_0000,
    lab::BLOCK_L2 + 0x1f_fff8,
    lab::CODE_L2 + 0x10,
    lab::LOGGED_L2 + 0x48,
];
/// Where L2 stores [`STORED`].
const STORE_AT: u64 = lab::RW_L2 + 0x40;

/// The vCPU side's state.
struct Vcpu<'a, 'l, C, B: Doorbell, K> {
    lab: &'l Lab<'l>,
    cpu: &'a mut C,
    ex: &'a ShadowExchange<B>,
    client: VcpuClient<'a, B>,
    clock: &'a K,
    timeout: u64,
    key: ContextKey,
    model: Model,
    report: Report,
    /// Whether to end with the run with L2's own stage 1.
    stage1: WithStage1,
    /// The page of L1's table hv (as L0) maps without read access now.
    unreadable_table: Option<u64>,
    /// The page of L1's table whose leaf hv (as L0) has broken, its make
    /// not yet done.
    changing_table: Option<u64>,
}

/// Whether the scenario ends with a run of L2 with its own stage 1 (its
/// MMU on), whose table's page L1 remaps: the step that needs TLBI
/// IPAS2E1IS itself (an MMU-off L2 uses only combined entries, which the
/// VMALLE1IS after it removes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithStage1 {
    /// No (the host's software CPU has no stage 1).
    No,
    /// Yes.
    Yes,
}

/// One request on `client`'s rings, its reply within `timeout`.
fn call<B: Doorbell, K: Clock>(
    client: &mut VcpuClient<'_, B>,
    clock: &K,
    timeout: u64,
    answered: &AtomicU64,
    request: Request,
    what: &'static str,
) -> Result<Reply, Failure> {
    let start = clock.now();
    match client.call_within(&request, || clock.now().wrapping_sub(start) > timeout) {
        Ok(reply) => Ok(reply),
        // The service's answer to a request it found malformed.
        Err(ClientError::Rejected(error)) => Ok(Reply::Error(error)),
        Err(ClientError::TimedOut) => Err(Failure::Timeout {
            request: what,
            answered: answered.load(Ordering::Relaxed),
        }),
        Err(error) => Err(Failure::Client { step: what, error }),
    }
}

/// ESR_EL2 as a translate request carries it (32 bits): ISS2 (\[55:32\])
/// must be 0, see [`Failure::Iss2`].
fn request_esr(step: &'static str, l2_ipa: u64, esr: u64) -> Result<u32, Failure> {
    u32::try_from(esr).map_err(|_| Failure::Iss2 { step, l2_ipa, esr })
}

impl<C: L2Cpu, B: Doorbell, K: Clock> Vcpu<'_, '_, C, B, K> {
    /// One request, its reply within the timeout.
    fn call(&mut self, request: Request, what: &'static str) -> Result<Reply, Failure> {
        call(
            &mut self.client,
            self.clock,
            self.timeout,
            &self.ex.answered,
            request,
            what,
        )
    }

    /// What `l2_ipa` reads under `model` (a PA of the arena).
    fn value_under(&self, model: Model, l2_ipa: u64) -> Result<u64, Failure> {
        let expected = model.outcome(l2_ipa, self.lab.arena().base());
        match expected {
            Outcome::Pa { pa, .. } => self.lab.arena().read(pa).ok_or(Failure::Store {
                step: "the second vCPU's target",
                l2_ipa,
                pa,
                found: None,
            }),
            _ => Err(Failure::NoFault {
                step: "the second vCPU's target",
                l2_ipa,
                expected,
            }),
        }
    }

    /// Waits (bounded) until `ready` holds of the second vCPU's progress;
    /// its failure is this run's.
    fn wait_reader(
        &self,
        what: &'static str,
        ready: impl Fn(&ReaderShare) -> bool,
    ) -> Result<(), Failure> {
        let share = &self.ex.share;
        let start = self.clock.now();
        loop {
            if let Some(failure) = share.failure() {
                return Err(Failure::Reader(Box::new(failure)));
            }
            if ready(share) {
                return Ok(());
            }
            if self.clock.now().wrapping_sub(start) > self.timeout {
                return Err(Failure::Timeout {
                    request: what,
                    answered: self.ex.answered.load(Ordering::Relaxed),
                });
            }
            core::hint::spin_loop();
        }
    }

    /// Announces `change` (the model after it is `after`) to the second vCPU and waits until it has read the old
    /// value twice through the old translation, so its TLB holds it when
    /// the change begins.
    fn change_begins(&mut self, change: reader::Change, after: Model) -> Result<(), Failure> {
        let l2_ipa = change.l2_ipa();
        let old = self.value_under(self.model, l2_ipa)?;
        let new = self.value_under(after, l2_ipa)?;
        let phase = self.ex.share.announce(change, l2_ipa, old, new);
        self.wait_reader("the second vCPU's reads before the change", |s| {
            s.reads_in(phase) >= 2
        })
    }

    /// The change is acknowledged: from now on the second vCPU must read
    /// the new value.
    fn change_acked(&mut self, change: reader::Change) {
        self.ex.share.acknowledged(change);
    }

    /// Waits until the second vCPU has read the new value in a read that
    /// began after it saw the acknowledgement, then until it idles (no
    /// read of this change still running when the scenario goes on: the
    /// next step may change the value, as the store after the write
    /// protection does).
    fn change_ends(&mut self, change: reader::Change) -> Result<(), Failure> {
        let phase = reader::Phase::Acked(change).code();
        self.wait_reader("the second vCPU's read after the acknowledgement", |s| {
            s.reads_in(phase) >= 1
        })?;
        self.ex.share.idle();
        self.wait_reader("the second vCPU to idle", ReaderShare::is_idle)
    }

    /// L2 makes one access; faults go to the service until the access
    /// completes or gives L1 a fault, which is checked against the model.
    fn access(
        &mut self,
        step: &'static str,
        l2_ipa: u64,
        access: Access,
        touch: Touch,
    ) -> Result<(), Failure> {
        self.report.accesses += 1;
        let base = self.lab.arena().base();
        let (op, value) = match access {
            Access::Read => (0, 0),
            Access::Write(v) => (1, v),
            Access::Exec => (2, 0),
        };
        let mut regs = L2Regs {
            x: [l2_ipa, 0, op, value],
            pc: lab::CODE_L2,
        };
        // (Every exit that does not end the loop is answered.)
        let mut last: (L2Exit, Option<TranslateOutcome>) = Default::default();
        for _ in 0..MAX_EXITS {
            // (Resolving an L0 denial changes the model.)
            let expected = self.model.outcome(l2_ipa, base);
            let exit = self.cpu.run(&mut regs);
            let class = exit.class();
            if exit.vector == 0 && class == EC_HVC64 && regs.pc == lab::CODE_L2 + 12 {
                return self.completed(step, l2_ipa, regs.x[1], expected);
            }
            if exit.vector == 0 && class == EC_HVC64 && regs.pc == lab::CODE_L2 + 24 {
                return self.stored(step, l2_ipa, value, expected);
            }
            if exit.vector == 1 {
                return Err(Failure::Stuck {
                    step,
                    l2_ipa,
                    pc: regs.pc,
                });
            }
            // A fetch from the payload's own page (which must be mapped),
            // or the access itself: a load, a store, or the branch's fetch.
            let fetch = class == EC_INSTRUCTION_ABORT_LOWER
                && exit.far & !(memory::PAGE - 1) == lab::CODE_L2;
            let own = exit.far == l2_ipa
                && match access {
                    Access::Exec => class == EC_INSTRUCTION_ABORT_LOWER,
                    Access::Read | Access::Write(_) => class == EC_DATA_ABORT_LOWER,
                };
            if exit.vector != 0 || !(fetch || own) {
                return Err(Failure::Exit {
                    step,
                    l2_ipa,
                    exit,
                    pc: regs.pc,
                });
            }
            if touch == Touch::Warm {
                return Err(Failure::WarmFault { step, l2_ipa, exit });
            }
            self.report.faults += 1;
            self.report.fetch_faults += u64::from(fetch);
            let write = class == EC_DATA_ABORT_LOWER && exit.esr & ESR_WNR != 0;
            let request = TranslateRequest {
                context: self.key,
                l2_ipa: fault_ipa(&exit),
                access: match (class == EC_INSTRUCTION_ABORT_LOWER, write) {
                    (true, _) => AccessKind::Execute,
                    (false, true) => AccessKind::Write,
                    (false, false) => AccessKind::Read,
                },
                esr: request_esr(step, l2_ipa, exit.esr)?,
                far: exit.far,
            };
            let outcome = match self.call(Request::Translate(request), step)? {
                Reply::Translate(outcome) => outcome,
                reply => return Err(Failure::Reply { step, reply }),
            };
            last = (exit, Some(outcome));
            let faulting = if fetch { exit.far } else { l2_ipa };
            let wanted = if fetch {
                self.model.outcome(faulting, base)
            } else {
                expected
            };
            match (outcome, wanted) {
                (TranslateOutcome::Mapped(m), Outcome::Pa { .. })
                    if fetch || allowed(expected, access) =>
                {
                    check_mapping(&m, faulting, wanted).map_err(|()| Failure::Outcome {
                        step,
                        l2_ipa: faulting,
                        expected: wanted,
                        got: outcome,
                    })?;
                    self.report.mapped += 1;
                }
                // The walk read L1's table page mid hv's change of it (L0's
                // own transient fault): hv makes its new leaf (the page at
                // its own PA again) and L2's access runs again, walked
                // afresh.
                (TranslateOutcome::Retry(RetryReason::L0Changing), _)
                    if !fetch && self.changing_table.is_some() =>
                {
                    self.report.retried += 1;
                    self.report.l0_changing_table_reads += 1;
                    if let Some(page) = self.changing_table.take() {
                        self.lab
                            .set_l0_page_access(page, LeafAccess::ALL)
                            .map_err(Failure::Table)?;
                    }
                }
                (TranslateOutcome::Retry(_), _) => self.report.retried += 1,
                // L0's own fault: it logs the page dirty and gives write
                // back (no invalidation: a stale read-only entry only
                // faults again), then L2's store runs again.
                (
                    TranslateOutcome::L0Denied(denial),
                    Outcome::Pa {
                        writable: true,
                        l0_writable: false,
                        ..
                    },
                ) if write
                    && denial.denied == DeniedAccess::L2Data(AccessKind::Write)
                    && denial.l1_ipa == lab::LOGGED_L1 + (l2_ipa & (memory::PAGE - 1)) =>
                {
                    self.report.l0_denied += 1;
                    self.lab.set_l0_logging(false).map_err(Failure::Table)?;
                    self.model.l0_logging = false;
                }
                // L0's own fault on the walk: the page of L1's table hv
                // made unreadable. hv gives read access back (nothing was
                // built on the page: no invalidation) and L2's access
                // runs again, walked afresh.
                (TranslateOutcome::L0Denied(denial), _)
                    if !fetch
                        && denial.denied == DeniedAccess::L1TableRead
                        && self.unreadable_table == Some(denial.l1_ipa & !(memory::PAGE - 1)) =>
                {
                    self.report.l0_denied += 1;
                    self.report.l0_denied_table_reads += 1;
                    self.lab
                        .set_l0_page_access(denial.l1_ipa & !(memory::PAGE - 1), LeafAccess::ALL)
                        .map_err(Failure::Table)?;
                    self.unreadable_table = None;
                }
                _ if !fetch => {
                    self.report.injected += 1;
                    return check_injection(outcome, l2_ipa, access, expected, exit.esr).map_err(
                        |()| Failure::Outcome {
                            step,
                            l2_ipa,
                            expected,
                            got: outcome,
                        },
                    );
                }
                _ => {
                    return Err(Failure::Outcome {
                        step,
                        l2_ipa: faulting,
                        expected: wanted,
                        got: outcome,
                    })
                }
            }
        }
        let (last_exit, last_answer) = last;
        Err(Failure::NoProgress {
            step,
            l2_ipa,
            last_exit,
            last_answer,
        })
    }

    /// L2 read `got` from `l2_ipa`.
    fn completed(
        &self,
        step: &'static str,
        l2_ipa: u64,
        got: u64,
        expected: Outcome,
    ) -> Result<(), Failure> {
        let Outcome::Pa { pa, .. } = expected else {
            return Err(Failure::NoFault {
                step,
                l2_ipa,
                expected,
            });
        };
        // What the PA holds now (the pattern, or what L2 stored there). The
        // model's PAs are all in the arena.
        let Some(value) = self.lab.arena().read(pa) else {
            return Err(Failure::Store {
                step,
                l2_ipa,
                pa,
                found: None,
            });
        };
        if got == value {
            Ok(())
        } else {
            Err(Failure::Value {
                step,
                l2_ipa,
                expected: value,
                got,
            })
        }
    }

    /// L2 stored `value` at `l2_ipa`.
    fn stored(
        &self,
        step: &'static str,
        l2_ipa: u64,
        value: u64,
        expected: Outcome,
    ) -> Result<(), Failure> {
        let Outcome::Pa {
            pa,
            writable,
            l0_writable,
            ..
        } = expected
        else {
            return Err(Failure::NoFault {
                step,
                l2_ipa,
                expected,
            });
        };
        let found = self.lab.arena().read(pa);
        if writable && l0_writable && found == Some(value) {
            Ok(())
        } else {
            Err(Failure::Store {
                step,
                l2_ipa,
                pa,
                found,
            })
        }
    }

    fn invalidate(
        &mut self,
        what: &'static str,
        crm_op2: (u8, u8),
        xt: u64,
    ) -> Result<(), Failure> {
        // TLBI <op>, Xt is SYS #4, C8, C<crm>, #<op2>, Xt.
        let (crm, op2) = crm_op2;
        let request = Tlbi::from_sys_encoding(1, 4, 8, crm, op2)
            .and_then(|tlbi| {
                // L1's registers when it issues the TLBI, as its
                // translate requests name them (`context_key`).
                InvalidateRequest::new(self.key.vttbr, self.key.vtcr, VmidWidth::Bits8, tlbi, xt)
                    .ok()
            })
            .ok_or(Failure::Encoding { request: what })?;
        match self.call(Request::Invalidate(request), what)? {
            Reply::InvalidateAck(ack) if ack.entries_dropped > 0 => {
                self.report.invalidations += 1;
                self.report.entries_invalidated += ack.entries_dropped;
                Ok(())
            }
            Reply::InvalidateAck(_) => Err(Failure::NothingDropped { request: what }),
            reply => Err(Failure::Reply { step: what, reply }),
        }
    }

    fn l0_unmap(
        &mut self,
        what: &'static str,
        start: u64,
        len: u64,
        change: L0Change,
    ) -> Result<(), Failure> {
        let range =
            IpaRange::new(start, start + len).ok_or(Failure::NothingDropped { request: what })?;
        let request = L0UnmapRequest { range, change };
        match self.call(Request::L0Unmap(request), what)? {
            Reply::L0UnmapAck(ack) if ack.entries_removed > 0 => {
                self.report.l0_unmaps += 1;
                self.report.entries_unmapped += ack.entries_removed;
                Ok(())
            }
            Reply::L0UnmapAck(_) => Err(Failure::NothingDropped { request: what }),
            reply => Err(Failure::Reply { step: what, reply }),
        }
    }

    fn read_all(&mut self, step: &'static str, touch: Touch) -> Result<(), Failure> {
        for l2_ipa in READS {
            self.access(step, l2_ipa, Access::Read, touch)?;
        }
        self.access(step, STORE_AT, Access::Read, touch)
    }

    fn scenario(&mut self) -> Result<(), Failure> {
        use Access::{Exec, Read, Write};
        use Touch::{Cold, Warm};
        // Path 1: first touches fault (the payload's own page through the
        // fetch path), then everything translates in hardware.
        for l2_ipa in READS {
            self.access("first touch", l2_ipa, Read, Cold)?;
        }
        self.access("store", STORE_AT, Write(STORED), Warm)?;
        self.read_all("second pass (shadow in use)", Warm)?;
        self.access("invalid level-3 entry", lab::INVALID_L2 + 0x30, Read, Cold)?;
        self.access("invalid level-1 entry", lab::UNMAPPED_L2 + 8, Read, Cold)?;
        self.access(
            "store to a read-only page",
            lab::RO_L2 + 0x100,
            Write(1),
            Cold,
        )?;
        self.access("L1 IPA outside L1", lab::OUTSIDE_L2 + 0x28, Read, Cold)?;
        // L2 branches to a data page (mapped, never executable) and to the
        // invalid entry: instruction aborts for L1.
        self.access("fetch from a data page", lab::RW_L2 + 0x80, Exec, Cold)?;
        self.access(
            "fetch from an invalid entry",
            lab::INVALID_L2 + 0x40,
            Exec,
            Cold,
        )?;
        // The refused store left the read-only page alone.
        self.access(
            "read-only page after the store",
            lab::RO_L2 + 0x100,
            Read,
            Warm,
        )?;

        // Path 2: L1 remaps a page L2 has just used (the old translation is
        // in the TLB), break-before-make with TLBI IPAS2E1IS.
        // Each change of paths 2 and 3 happens while the second vCPU
        // reads the page on the same shadow ([`reader`]): it must read the
        // old or the new value throughout, and the new one once it saw the
        // acknowledgement. This vCPU checks its own read first, so a stale
        // translation fails the run at its step whatever the other sees.
        use reader::Change;
        self.access("before TLBI IPAS2E1IS", lab::TLBI_L2 + 0x10, Read, Warm)?;
        let after = Model {
            tlbi_page_moved: true,
            ..self.model
        };
        self.change_begins(Change::TlbiPage, after)?;
        self.lab
            .set_l1_entry(L1Entry::TlbiPage, None)
            .map_err(Failure::Table)?;
        self.invalidate("TLBI IPAS2E1IS", (0, 1), lab::TLBI_L2 >> 12)?;
        self.lab
            .set_l1_entry(L1Entry::TlbiPage, Some(lab::TLBI_NEW_L1))
            .map_err(Failure::Table)?;
        self.model = after;
        self.change_acked(Change::TlbiPage);
        self.access("after TLBI IPAS2E1IS", lab::TLBI_L2 + 0x10, Read, Cold)?;
        self.change_ends(Change::TlbiPage)?;
        // L1 moves its 2 MiB block, with VMALLS12E1IS: every entry goes.
        self.access("before TLBI VMALLS12E1IS", lab::BLOCK_L2 + 0x8, Read, Warm)?;
        let after = Model {
            block_moved: true,
            ..self.model
        };
        self.change_begins(Change::Block, after)?;
        self.lab
            .set_l1_entry(L1Entry::Block, None)
            .map_err(Failure::Table)?;
        self.invalidate("TLBI VMALLS12E1IS", (3, 6), 0)?;
        self.lab
            .set_l1_entry(L1Entry::Block, Some(lab::BLOCK_NEW_L1))
            .map_err(Failure::Table)?;
        self.model = after;
        self.change_acked(Change::Block);
        let faults = self.report.faults;
        self.read_all("after TLBI VMALLS12E1IS", Cold)?;
        self.change_ends(Change::Block)?;
        if self.report.faults == faults {
            // Every entry was dropped: L2 must have faulted again.
            return Err(Failure::NothingDropped {
                request: "TLBI VMALLS12E1IS (no fault after it)",
            });
        }

        // Path 3: L0 moves L1 page MOVED_L1 to another PA, which holds
        // another pattern.
        self.access("before L0 unmap", lab::MOVED_L2 + 0x18, Read, Warm)?;
        let after = Model {
            l0_page_moved: true,
            ..self.model
        };
        self.change_begins(Change::L0Move, after)?;
        self.lab.set_l0_page(None).map_err(Failure::Table)?;
        self.l0_unmap("L0 unmap", lab::MOVED_L1, memory::PAGE, L0Change::Unmap)?;
        self.lab
            .set_l0_page(Some(self.lab.alt_pa()))
            .map_err(Failure::Table)?;
        self.model = after;
        self.change_acked(Change::L0Move);
        self.access("after L0 unmap", lab::MOVED_L2 + 0x18, Read, Cold)?;
        self.change_ends(Change::L0Move)?;
        // Path 3 for write protection (dirty logging): L2 has the page
        // writable (it stores into it), L0 write-protects it; L2 reads it
        // through the reduced (read-only) entry, and its next store is
        // L0's own fault, which hv resolves as L0 before the store lands.
        let logged = lab::LOGGED_L2 + 0x48;
        self.access(
            "store before write protection",
            logged,
            Write(!STORED),
            Warm,
        )?;
        let after = Model {
            l0_logging: true,
            ..self.model
        };
        self.change_begins(Change::L0WriteProtect, after)?;
        self.lab.set_l0_logging(true).map_err(Failure::Table)?;
        self.l0_unmap(
            "L0 write protection",
            lab::LOGGED_L1,
            memory::PAGE,
            L0Change::WriteProtect,
        )?;
        self.model = after;
        self.change_acked(Change::L0WriteProtect);
        self.access("read under write protection", logged, Read, Cold)?;
        // (The second vCPU stops reading the page before this vCPU's
        // store changes its value.)
        self.change_ends(Change::L0WriteProtect)?;
        self.access("store under write protection", logged, Write(STORED), Cold)?;
        if self.report.l0_denied != 1 {
            return Err(Failure::NothingDropped {
                request: "L0 write protection (no L0Denied for the store under it)",
            });
        }
        // Path 3 for L1's own table: hv (as L0) maps the page of L1's
        // level-3 table without read access. L2's load from an address
        // whose walk reads it (L1's invalid level-3 entry: never cached)
        // is L0's own stage-2 fault on the walk, not L1's: `L0Denied` for
        // the walk's read, which hv resolves as L0 (read access back),
        // and the load runs again, to L1's translation fault.
        let descriptor = self
            .lab
            .l1_descriptor(lab::INVALID_L2, 3)
            .map_err(Failure::Table)?;
        let table_page = descriptor & !(memory::PAGE - 1);
        let unreadable = LeafAccess {
            s2ap: walker::S2Ap::None,
            execute: walker::Execute::Neither,
        };
        self.lab
            .set_l0_page_access(table_page, unreadable)
            .map_err(Failure::Table)?;
        self.unreadable_table = Some(table_page);
        self.access(
            "load walking L1's table page L0 made unreadable",
            lab::INVALID_L2 + 0x8,
            Read,
            Cold,
        )?;
        if self.report.l0_denied_table_reads != 1 || self.unreadable_table.is_some() {
            return Err(Failure::NothingDropped {
                request: "L0 read revocation of L1's table page (no L0Denied for the walk's read)",
            });
        }
        // The same page mid hv's own break-before-make (its leaf invalid,
        // the make not yet done; nothing is built on a table page, so no
        // `l0_unmap` drops anything): the walk's read of it is L0's
        // transient translation fault, not an abort for L1 (which
        // treating the page as outside L1's memory gave): answered
        // `Retry(L0Changing)`; hv makes its new leaf, and the load runs
        // again, to L1's translation fault.
        self.lab.break_l0_page(table_page).map_err(Failure::Table)?;
        self.changing_table = Some(table_page);
        self.access(
            "load walking L1's table page mid L0's change",
            lab::INVALID_L2 + 0x10,
            Read,
            Cold,
        )?;
        if self.report.l0_changing_table_reads != 1 || self.changing_table.is_some() {
            return Err(Failure::NothingDropped {
                request: "L0's break of L1's table page (no Retry(L0Changing) for the walk's read)",
            });
        }
        self.read_all("last pass", Warm)?;
        if self.stage1 == WithStage1::Yes {
            self.stage1_remap()?;
        }
        Ok(())
    }

    /// L2 turns its MMU on (its stage-1 tables in L1's memory, at L2 IPA
    /// [`lab::S1_TABLE_L2`]) and reads [`lab::S1_ALIAS_VA`] until its walk
    /// of its own table is cached; L1 remaps that table's page to a table
    /// that translates the VA elsewhere, with break-before-make and TLBI
    /// IPAS2E1IS; L2 must then read through the new table. (A hardware
    /// walk may cache the stage-2 translation of its table's address in a
    /// stage-2-only entry, which only IPAS2E1IS removes.)
    fn stage1_remap(&mut self) -> Result<(), Failure> {
        let stage1 = Stage1Regs {
            ttbr0: lab::S1_TABLE_L2,
            tcr: lab::S1_TCR,
            mair: lab::S1_MAIR,
        };
        self.cpu
            .set_stage1(Some(stage1))
            .map_err(|NoStage1| Failure::Encoding {
                request: "L2's own stage 1 on this CPU",
            })?;
        let offset = lab::S1_ALIAS_VA - 0x4000_0000;
        let old = self.value_under(self.model, offset)?;
        let new = self.value_under(self.model, lab::BLOCK_L2 + offset)?;
        self.stage1_read("stage 1: first read", old, Touch::Cold)?;
        self.stage1_read("stage 1: before TLBI IPAS2E1IS", old, Touch::Warm)?;
        self.lab
            .set_l1_entry(L1Entry::S1Table, None)
            .map_err(Failure::Table)?;
        self.invalidate(
            "stage 1: TLBI IPAS2E1IS of L2's table page",
            (0, 1),
            lab::S1_TABLE_L2 >> 12,
        )?;
        self.lab
            .set_l1_entry(L1Entry::S1Table, Some(lab::S1_NEW_L1))
            .map_err(Failure::Table)?;
        self.stage1_read("stage 1: after TLBI IPAS2E1IS", new, Touch::Cold)?;
        self.cpu
            .set_stage1(None)
            .map_err(|NoStage1| Failure::Encoding {
                request: "L2's MMU off again",
            })
    }

    /// One read of [`lab::S1_ALIAS_VA`] through L2's own stage 1: every
    /// stage-2 fault (of its table walk, its fetch or its load) must be
    /// answered `Mapped` (or `Retry`), and the value must be `expected`.
    fn stage1_read(
        &mut self,
        step: &'static str,
        expected: u64,
        touch: Touch,
    ) -> Result<(), Failure> {
        let va = lab::S1_ALIAS_VA;
        self.report.stage1_reads += 1;
        let mut regs = L2Regs {
            x: [va, 0, 0, 0],
            pc: lab::CODE_L2,
        };
        // (Every exit that does not end the loop is answered.)
        let mut last: (L2Exit, Option<TranslateOutcome>) = Default::default();
        for _ in 0..MAX_EXITS {
            let exit = self.cpu.run(&mut regs);
            let class = exit.class();
            if exit.vector == 0 && class == EC_HVC64 && regs.pc == lab::CODE_L2 + 12 {
                return if regs.x[1] == expected {
                    Ok(())
                } else {
                    Err(Failure::Value {
                        step,
                        l2_ipa: va,
                        expected,
                        got: regs.x[1],
                    })
                };
            }
            if exit.vector == 1 {
                return Err(Failure::Stuck {
                    step,
                    l2_ipa: va,
                    pc: regs.pc,
                });
            }
            if exit.vector != 0
                || !(class == EC_DATA_ABORT_LOWER || class == EC_INSTRUCTION_ABORT_LOWER)
            {
                return Err(Failure::Exit {
                    step,
                    l2_ipa: va,
                    exit,
                    pc: regs.pc,
                });
            }
            if touch == Touch::Warm {
                return Err(Failure::WarmFault {
                    step,
                    l2_ipa: va,
                    exit,
                });
            }
            self.report.stage1_faults += 1;
            // A walk of L2's table (S1PTW) reads it; HPFAR_EL2 names the
            // table's IPA then, and the IPA of a translation fault.
            let s1ptw = exit.esr & (1 << 7) != 0;
            let request = TranslateRequest {
                context: self.key,
                l2_ipa: fault_ipa(&exit),
                access: if class == EC_INSTRUCTION_ABORT_LOWER && !s1ptw {
                    AccessKind::Execute
                } else {
                    AccessKind::Read
                },
                esr: request_esr(step, va, exit.esr)?,
                far: exit.far,
            };
            let outcome = match self.call(Request::Translate(request), step)? {
                Reply::Translate(outcome) => outcome,
                reply => return Err(Failure::Reply { step, reply }),
            };
            last = (exit, Some(outcome));
            match outcome {
                TranslateOutcome::Mapped(_) | TranslateOutcome::Retry(_) => {}
                other => {
                    return Err(Failure::Reply {
                        step,
                        reply: Reply::Translate(other),
                    })
                }
            }
        }
        let (last_exit, last_answer) = last;
        Err(Failure::NoProgress {
            step,
            l2_ipa: va,
            last_exit,
            last_answer,
        })
    }
}

/// The faulting L2 IPA of a stage-2 abort: HPFAR_EL2.FIPA (bits \[43:4\],
/// IPA\[51:12\]) with FAR_EL2's page offset; but HPFAR_EL2 is UNKNOWN for
/// a permission fault not on a stage-1 walk (Linux's `__get_fault_info`
/// translates FAR_EL2 with `AT S1E1R` then), and L2 runs with its MMU
/// off, so its VA, FAR_EL2, is the IPA.
fn fault_ipa(exit: &L2Exit) -> u64 {
    let fsc = exit.esr & 0x3f;
    let s1ptw = exit.esr & (1 << 7) != 0;
    if fsc & 0b11_1100 == 0b00_1100 && !s1ptw {
        exit.far
    } else {
        crate::esr::hpfar_ipa_page(exit.hpfar) | (exit.far & 0xfff)
    }
}

/// Whether both stages allow `access` (a `Mapped` answer is right).
fn allowed(expected: Outcome, access: Access) -> bool {
    match expected {
        Outcome::Pa {
            writable,
            l0_writable,
            executable,
            ..
        } => match access {
            Access::Read => true,
            Access::Write(_) => writable && l0_writable,
            Access::Exec => executable,
        },
        Outcome::Translation { .. } | Outcome::OutsideL1 { .. } => false,
    }
}

/// Whether `m` is the shadow leaf the model calls for at `l2_ipa`.
fn check_mapping(m: &Mapping, l2_ipa: u64, wanted: Outcome) -> Result<(), ()> {
    let Outcome::Pa { pa, leaf_size, .. } = wanted else {
        return Err(());
    };
    let size = 1u64.checked_shl(u32::from(m.size_log2)).ok_or(())?;
    if size == leaf_size && m.pa == pa & !(size - 1) && m.pa + (l2_ipa & (size - 1)) == pa {
        Ok(())
    } else {
        Err(())
    }
}

/// The syndrome L1 must get for L2's access to `l2_ipa`: ESR_EL2 of a
/// data or instruction abort from a lower EL (IL = 1, WnR for a store;
/// for a data abort, the instruction syndrome `instruction` holds: ISV
/// with SAS/SSE/SRT/SF/AR as L2's exit had them, which hardware running
/// L1's stage 2 would report for L1's fault too), FAR_EL2 the VA (= the
/// L2 IPA, L2's MMU is off), HPFAR_EL2 the L2 IPA's page in FIPA.
fn expected_injection(l2_ipa: u64, access: Access, fsc: u64, instruction: u64) -> Injection {
    let (class, wnr) = match access {
        Access::Read => (EC_DATA_ABORT_LOWER, 0),
        Access::Write(_) => (EC_DATA_ABORT_LOWER, ESR_WNR),
        Access::Exec => (EC_INSTRUCTION_ABORT_LOWER, 0),
    };
    let syndrome = if class == EC_DATA_ABORT_LOWER {
        instruction & ESR_INSTRUCTION_SYNDROME
    } else {
        0
    };
    Injection {
        esr: class << 26 | ESR_IL | syndrome | wnr | fsc,
        far: l2_ipa,
        hpfar: (l2_ipa >> 12) << 4,
    }
}

/// ESR ISV (bit 24) with ISS\[23:14\] (SAS, SSE, SRT, SF, AR).
const ESR_INSTRUCTION_SYNDROME: u64 = 0x7ff << 14;

/// Whether a fault answer is the one the model calls for, L2's exit for
/// the access having had syndrome `trapped_esr`.
fn check_injection(
    outcome: TranslateOutcome,
    l2_ipa: u64,
    access: Access,
    expected: Outcome,
    trapped_esr: u64,
) -> Result<(), ()> {
    // FSC: translation fault 0b0001LL, permission fault 0b0011LL,
    // synchronous external abort not on a walk 0b010000.
    let wanted = match expected {
        Outcome::Translation { level } => TranslateOutcome::Inject(expected_injection(
            l2_ipa,
            access,
            0b00_0100 | u64::from(level),
            trapped_esr,
        )),
        Outcome::Pa { leaf_size, .. } if !allowed(expected, access) => {
            let level = if leaf_size == memory::PAGE { 3 } else { 2 };
            TranslateOutcome::Inject(expected_injection(
                l2_ipa,
                access,
                0b00_1100 | level,
                trapped_esr,
            ))
        }
        // With FEAT_RAS, ISV is 0 for any synchronous External abort.
        Outcome::OutsideL1 { l1_ipa } => TranslateOutcome::ExternalAbort(ExternalAbort {
            injection: expected_injection(l2_ipa, access, 0b01_0000, 0),
            l1_ipa,
        }),
        Outcome::Pa { .. } => return Err(()),
    };
    if outcome == wanted {
        Ok(())
    } else {
        Err(())
    }
}

/// The vCPU side: the whole scenario, then the service stopped. `timeout`
/// (clock counts) bounds every wait for the service.
pub fn run_scenario<C: L2Cpu, B: Doorbell, K: Clock>(
    lab: &Lab<'_>,
    cpu: &mut C,
    ex: &ShadowExchange<B>,
    clock: &K,
    timeout: u64,
    stage1: WithStage1,
) -> Result<Report, Failure> {
    let result = VcpuClient::new(
        VCPU,
        ex.requests.ring(),
        ex.replies.ring(),
        &ex.service_bell,
        &ex.reply_bell,
    )
    .map_err(Failure::Ring)
    .and_then(|client| {
        let mut vcpu = Vcpu {
            lab,
            cpu,
            ex,
            client,
            clock,
            timeout,
            key: context_key(lab),
            model: Model::default(),
            report: Report::default(),
            stage1,
            unreadable_table: None,
            changing_table: None,
        };
        vcpu.scenario().map(|()| vcpu.report)
    });
    // Stop the second vCPU, then the service, whatever happened (the
    // second vCPU may be waiting for an answer: its waits are bounded).
    ex.share.stop();
    let start = clock.now();
    while ex.share.started() && !ex.share.done() {
        if clock.now().wrapping_sub(start) > timeout {
            break;
        }
        core::hint::spin_loop();
    }
    ex.running.store(false, Ordering::Release);
    ex.service_bell.ring();
    let mut report = result?;
    if !ex.share.done() {
        return Err(Failure::Timeout {
            request: "the second vCPU to stop",
            answered: ex.answered.load(Ordering::Relaxed),
        });
    }
    if let Some(failure) = ex.share.failure() {
        return Err(Failure::Reader(Box::new(failure)));
    }
    report.reader = ex.share.report();
    let start = clock.now();
    while !ex.stopped.load(Ordering::Acquire) {
        if clock.now().wrapping_sub(start) > timeout {
            return Err(Failure::Timeout {
                request: "the service to stop",
                answered: ex.answered.load(Ordering::Relaxed),
            });
        }
        core::hint::spin_loop();
    }
    Ok(report)
}

/// L1's context for L2, as its translate requests name it.
pub fn context_key(lab: &Lab<'_>) -> ContextKey {
    ContextKey::new(lab.l1_vttbr(), lab::L1_VTCR, VmidWidth::Bits8)
}

/// The summary line's service part.
#[derive(Clone, Copy, Debug)]
pub struct ServiceSummary(pub Stats);

impl fmt::Display for ServiceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        write!(
            f,
            "service: {} cache misses ({} full and {} partial walks of L1's table), {} hits, {} invalidations, {} recycled contexts, {} retried mid L0's change of L1's RAM, {} mid its change of L1's table",
            s.misses,
            s.walks,
            s.partial_walks,
            s.hits,
            s.invalidations,
            s.recycled_contexts,
            s.l0_changing_output,
            s.l0_changing_table
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} L2 accesses checked; {} stage-2 faults served ({} fetches from the payload's page): {} mapped, {} injected into L1, {} denied by L0 and resolved ({} of them the walk's read of L1's table), {} retried ({} of them the walk's read of L1's table page mid L0's change); {} TLBIs dropped {} entries; {} L0 unmaps removed {} entries",
            self.accesses,
            self.faults,
            self.fetch_faults,
            self.mapped,
            self.injected,
            self.l0_denied,
            self.l0_denied_table_reads,
            self.retried,
            self.l0_changing_table_reads,
            self.invalidations,
            self.entries_invalidated,
            self.l0_unmaps,
            self.entries_unmapped
        )?;
        write!(f, "; {}", self.reader)?;
        if self.stage1_reads > 0 {
            write!(
                f,
                "; with L2's own stage 1 (its table's page remapped by L1 with TLBI IPAS2E1IS): {} reads checked, {} stage-2 faults served (table walks included)",
                self.stage1_reads, self.stage1_faults
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
