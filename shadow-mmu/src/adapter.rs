//! The ipc adapter: one request record from a vCPU ring in, the reply
//! record (or an outcome for the caller) out. hv's service loop and the
//! bench harness drive a [`Service`] through it.

use ipc::message::{
    decode_request, Envelope, InvalidateAck, L0UnmapAck, Record, Reply, Request, RetryReason,
    TranslateOutcome, VcpuId,
};
use walker::{AbortContext, AbortOrigin, AccessKind, GuestMemory};

use crate::compose::L0Map;
use crate::context::ContextKey;
use crate::service::{Retry, Service, ShadowBackend, Translated, Worker};

impl<M, L, B> Service<M, L, B>
where
    M: GuestMemory + Sync,
    L: L0Map,
    B: ShadowBackend,
{
    /// Answers one request record from a vCPU ring (the adapter hv and the
    /// bench harness use). Outcomes the ipc layout cannot carry yet come
    /// back as [`Answer::Local`] for the caller to act on.
    pub fn answer(&self, worker: &Worker, record: &Record) -> Answer {
        let envelope = match decode_request(record) {
            Ok(e) => e,
            Err(error) => {
                let vcpu = VcpuId(record.header.vcpu);
                return Answer::Reply(Reply::Error(error).encode(vcpu, record.header.seq));
            }
        };
        let Envelope { vcpu, seq, message } = envelope;
        let reply = match message {
            Request::Translate(t) => {
                let key = ContextKey::from_ipc(&t.context);
                let (access, abort) = access_from_ipc(t.access, t.esr);
                match self.translate(worker, &key, t.l2_ipa, access, &abort) {
                    Translated::Mapped(m) => {
                        Reply::Translate(TranslateOutcome::Mapped(m.to_message()))
                    }
                    Translated::Inject(i) => {
                        Reply::Translate(TranslateOutcome::Inject(ipc::message::Injection {
                            esr: i.esr_el2,
                            far: i.far_el2,
                            hpfar: i.hpfar_el2,
                        }))
                    }
                    Translated::Retry(r) => Reply::Translate(TranslateOutcome::Retry(match r {
                        Retry::InvalidationRaced => RetryReason::InvalidationRaced,
                        Retry::Throttled | Retry::Contended => RetryReason::Throttled,
                    })),
                    other => {
                        return Answer::Local {
                            vcpu,
                            seq,
                            outcome: other,
                        }
                    }
                }
            }
            Request::Invalidate(i) => {
                let dropped = self.invalidate(worker, i.vmid(), &i.scope());
                Reply::InvalidateAck(InvalidateAck {
                    entries_dropped: dropped,
                })
            }
            Request::L0Unmap(u) => {
                let removed = self.l0_unmap(worker, u.range, u.change);
                Reply::L0UnmapAck(L0UnmapAck {
                    entries_removed: removed,
                })
            }
        };
        Answer::Reply(reply.encode(vcpu, seq))
    }
}

/// What [`Service::answer`] gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send this record on the vCPU's reply ring.
    Reply(Record),
    /// A translate outcome with no ipc encoding yet (MMIO on behalf of L2,
    /// an access outside L1 memory, an unshadowable IPA): the caller acts on
    /// it directly.
    Local {
        /// The requesting vCPU.
        vcpu: VcpuId,
        /// The request's sequence number.
        seq: u64,
        /// The outcome.
        outcome: Translated,
    },
}

/// The walker's access and abort context from an ipc request. The record
/// carries no FAR (FnV = 1 in the injected syndrome) and no EL for an
/// instruction fetch: fetches are taken as EL1 fetches (L2's kernel).
fn access_from_ipc(access: ipc::message::AccessKind, esr: u64) -> (AccessKind, AbortContext) {
    let access = match access {
        ipc::message::AccessKind::Read => AccessKind::Read,
        ipc::message::AccessKind::Write => AccessKind::Write,
        ipc::message::AccessKind::Execute => AccessKind::ExecEl1,
        ipc::message::AccessKind::ExecuteEl0 => AccessKind::ExecEl0,
    };
    let ec = (esr >> 26) & 0x3f;
    let origin = if esr & (1 << 7) != 0 {
        AbortOrigin::Stage1Walk {
            for_instruction_fetch: ec == walker::EC_INSTRUCTION_ABORT_LOWER,
        }
    } else {
        AbortOrigin::Access
    };
    (access, AbortContext { far: None, origin })
}
