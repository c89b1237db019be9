//! The ipc adapter: one request record from a vCPU ring in, the reply
//! record out. hv's service loop and the bench harness drive a [`Service`]
//! through it. Every outcome of [`Service::translate`] has a reply kind, so
//! nothing is left for the caller to handle on the side.

use ipc::l1_vmid;
use ipc::message::{
    decode_request, DecodeError, Emulation, Envelope, ExternalAbort, Field, Injection,
    InvalidateAck, L0Denial, L0UnmapAck, Record, RecordKind, Reply, Request, RetryReason,
    TranslateOutcome, TranslateRequest, Unshadowable, VcpuId, FSC_EXTERNAL_ABORT,
};
use walker::{
    AbortContext, AbortOrigin, AccessKind, CacheMaintenance, GuestMemory, EC_DATA_ABORT_LOWER,
    EC_INSTRUCTION_ABORT_LOWER,
};

use crate::compose::{ComposeError, L0Map};
use crate::context::ContextKey;
use crate::service::{DeniedAccess, Refusal, Retry, Service, ShadowBackend, Translated, Worker};
use crate::shadow_table::MapError;

impl<M, L, B> Service<M, L, B>
where
    M: GuestMemory + Sync,
    L: L0Map,
    B: ShadowBackend,
{
    /// Answers one request record from a vCPU ring with the record to send
    /// back on that vCPU's reply ring. A malformed request gets an error
    /// reply naming the field; it never reaches the service. So does a
    /// VMID that is not the one L1's registers name with the VMID width
    /// this service was told L1 has ([`Service::l1_vmid_width`]): the
    /// sender computed it differently, and its TLBIs would miss contexts.
    pub fn answer(&self, worker: &Worker, record: &Record) -> Record {
        match decode_request(record) {
            Ok(envelope) => {
                let (vcpu, seq) = (envelope.vcpu, envelope.seq);
                self.reply(worker, envelope).encode(vcpu, seq)
            }
            Err(error) => Reply::Error(error).encode(VcpuId(record.header.vcpu), record.header.seq),
        }
    }

    /// The reply to one decoded request: what a service loop built on
    /// [`ipc::Poller`] (which decodes the records itself) hands back. A
    /// VMID that disagrees with L1's registers is refused as in
    /// [`Service::answer`].
    pub fn reply(&self, worker: &Worker, envelope: Envelope<Request>) -> Reply {
        let message = match self.check_vmid(envelope) {
            Ok(envelope) => envelope.message,
            Err(error) => return Reply::Error(error),
        };
        match message {
            Request::Translate(t) => Reply::Translate(self.translate_request(worker, &t)),
            Request::Invalidate(i) => {
                // The scope is decoded here, once, from L1's operand with
                // what this service shows L1 (FEAT_LPA2) and the request's
                // VTCR_EL2 (DS) (reviews 25 R25-1, 32 R32-2). A request
                // exists only for an operand that names entries, whatever
                // the parameters, so the error arm (a reserved range
                // granule, which invalidates nothing) is never taken.
                let dropped = match i.tlbi().decode(i.operand(), self.tlbi_params(i.vtcr())) {
                    Ok(scope) => self.invalidate(worker, i.vmid(), &scope),
                    Err(_) => 0,
                };
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
        }
    }

    /// How the operands of TLBIs L1 issues with `l1_vtcr` as its VTCR_EL2
    /// decode: FEAT_LPA2 as this service shows it to L1 (a 52-bit stage-2
    /// granule), VTCR_EL2.DS from L1's register where it is not RES0 (its
    /// granule shows FEAT_LPA2 at stage 2: the walker's DS). FEAT_TTL only
    /// decides whether IPAS2's bits \[47:44\] are a level hint, and
    /// `Service::invalidate` never narrows a scope by a hint, so it is taken
    /// as absent (hv does not show it to L1).
    pub fn tlbi_params(&self, l1_vtcr: u64) -> ipc::tlbi::TlbiParams {
        let features = &self.config().features;
        let feat_lpa2 = [walker::Granule::K4, walker::Granule::K16]
            .into_iter()
            .any(|g| features.stage2_granule(g) == walker::GranuleSupport::Supported52Bit);
        ipc::tlbi::TlbiParams {
            feat_ttl: false,
            feat_lpa2,
            // The walker's DS: RES0 for a granule whose stage-2 field does
            // not show FEAT_LPA2, even where another granule's does (review
            // 53 R53-2).
            vtcr_ds: walker::Stage2Walker::vtcr_ds(l1_vtcr, features),
        }
    }

    /// A decoded request whose VMID is the one L1's registers name for
    /// L1's VMID width (a translate), or fits that width (an invalidate).
    fn check_vmid(&self, envelope: Envelope<Request>) -> Result<Envelope<Request>, DecodeError> {
        let width = self.l1_vmid_width();
        let (kind, agrees) = match &envelope.message {
            Request::Translate(t) => (
                RecordKind::Translate,
                t.context.vmid == l1_vmid(t.context.vttbr, t.context.vtcr, width),
            ),
            Request::Invalidate(i) => (
                RecordKind::Invalidate,
                i.vmid() == l1_vmid(i.vttbr(), i.vtcr(), width),
            ),
            Request::L0Unmap(_) => return Ok(envelope),
        };
        if agrees {
            Ok(envelope)
        } else {
            Err(DecodeError::Invalid {
                kind: kind as u16,
                field: Field::Vmid,
            })
        }
    }

    /// Resolves a (validated) translate request into its reply. The
    /// context's VMID is read from its registers ([`ContextKey::from_ipc`]).
    pub fn translate_request(&self, worker: &Worker, t: &TranslateRequest) -> TranslateOutcome {
        let key = ContextKey::from_ipc(&t.context, self.l1_vmid_width());
        let (access, abort) = access_from_ipc(t);
        match self.translate(worker, &key, t.l2_ipa, access, &abort) {
            Translated::Mapped(m) => TranslateOutcome::Mapped(m.to_message()),
            Translated::Inject(i) => TranslateOutcome::Inject(Injection {
                esr: i.esr_el2,
                far: i.far_el2,
                hpfar: i.hpfar_el2,
            }),
            Translated::Retry(r) => TranslateOutcome::Retry(retry_reason(r)),
            Translated::Mmio { l1_ipa } => TranslateOutcome::Emulate(Emulation { l1_ipa }),
            Translated::OutsideL1 { l1_ipa } => TranslateOutcome::ExternalAbort(ExternalAbort {
                injection: external_abort(access, &abort, t.l2_ipa),
                l1_ipa,
            }),
            Translated::Unshadowable(refusal) => {
                TranslateOutcome::Unshadowable(unshadowable(refusal))
            }
            Translated::L0Denied { l1_ipa, denied } => TranslateOutcome::L0Denied(L0Denial {
                l1_ipa,
                denied: ipc_denied(denied),
            }),
        }
    }
}

/// The ipc form of what L0 denies.
const fn ipc_denied(denied: DeniedAccess) -> ipc::message::DeniedAccess {
    match denied {
        DeniedAccess::L2Data(access) => ipc::message::DeniedAccess::L2Data(ipc_access(access)),
        DeniedAccess::L1TableRead => ipc::message::DeniedAccess::L1TableRead,
        DeniedAccess::L1TableUpdate => ipc::message::DeniedAccess::L1TableUpdate,
    }
}

/// The ipc form of an access kind.
const fn ipc_access(access: AccessKind) -> ipc::message::AccessKind {
    match access {
        AccessKind::Read => ipc::message::AccessKind::Read,
        AccessKind::Write | AccessKind::Stage1Update => ipc::message::AccessKind::Write,
        AccessKind::ExecEl1 => ipc::message::AccessKind::Execute,
        AccessKind::ExecEl0 => ipc::message::AccessKind::ExecuteEl0,
        AccessKind::CacheMaintenance(
            CacheMaintenance::CleanEl1 | CacheMaintenance::InvalidateEl1,
        ) => ipc::message::AccessKind::CacheMaintenance,
        AccessKind::CacheMaintenance(CacheMaintenance::El0) => {
            ipc::message::AccessKind::CacheMaintenanceEl0
        }
    }
}

/// The walker's access and abort context from a validated translate
/// request: its FAR (always valid for a stage-2 fault, so an injected
/// fault reports FnV = 0 with it), the stage-1-walk origin from ESR S1PTW
/// (with EC telling whether the walk was for a fetch), and the trapped
/// ESR itself, whose instruction syndrome (ISV, SAS, SRT, CM...) a fault
/// injected into L1 keeps (`walker::merge_trapped_syndrome`: a KVM L1
/// needs ISV/SRT to emulate its L2's MMIO). The request carries ESR\[31:0\]
/// only, so the injected ISS2 is 0; the vCPU handler adds ISS2's
/// instruction fields (see `TranslateRequest::esr`).
///
/// A cache maintenance instruction at EL1 is walked as a clean (no
/// stage-2 permission needed) unless the trapped fault is a permission
/// fault: the ESR does not say which instruction it was, but at EL1 only
/// DC IVAC needs a permission (write; HCRX_EL2.CMOW, which would add DC
/// CIVAC, is clear: hv shows L1 no FEAT_HCX and sets no CMOW for L2), so a
/// shadow entry that denied a cache maintenance
/// instruction denied a DC IVAC. So a DC IVAC to a page L1 maps read-only
/// first installs the read-only entry (as a clean would) and faults on it
/// again, and the second walk reports L1's permission fault.
fn access_from_ipc(t: &TranslateRequest) -> (AccessKind, AbortContext) {
    let esr = u64::from(t.esr);
    let permission_fault = esr & 0x3c == 0x0c;
    let on_stage1_walk = esr & (1 << 7) != 0;
    let access = match t.access {
        ipc::message::AccessKind::Read => AccessKind::Read,
        // L2's stage-1 walk writing a descriptor needs R and W
        // (AccessType_TTW), unlike a data write (review 36 R36-1).
        ipc::message::AccessKind::Write if on_stage1_walk => AccessKind::Stage1Update,
        ipc::message::AccessKind::Write => AccessKind::Write,
        ipc::message::AccessKind::Execute => AccessKind::ExecEl1,
        ipc::message::AccessKind::ExecuteEl0 => AccessKind::ExecEl0,
        ipc::message::AccessKind::CacheMaintenance if permission_fault => {
            AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1)
        }
        ipc::message::AccessKind::CacheMaintenance => {
            AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1)
        }
        ipc::message::AccessKind::CacheMaintenanceEl0 => {
            AccessKind::CacheMaintenance(CacheMaintenance::El0)
        }
    };
    let origin = if on_stage1_walk {
        AbortOrigin::Stage1Walk {
            for_instruction_fetch: (esr >> 26) & 0x3f == EC_INSTRUCTION_ABORT_LOWER,
        }
    } else {
        AbortOrigin::Access
    };
    (
        access,
        AbortContext {
            far: Some(t.far),
            origin,
            trapped_esr: Some(esr),
        },
    )
}

/// The synchronous external abort for an L2 access whose L1 IPA has
/// nothing behind it, formatted as taken to L1's virtual EL2 (see
/// [`ExternalAbort`] for where the handler delivers it).
///
/// FSC is 0b010000 (external abort, not on a walk) whatever the access was
/// for.
///
/// Deviation, when the access was L2's own stage-1 walk (ESR S1PTW = 1 in
/// the request): the architecture reports a synchronous external abort on
/// that walk, FSC 0b0101LL with the stage-1 level, which the service cannot
/// know (it sees only the stage-2 side of the walk's access). It reports
/// the abort as not on a walk instead, with S1PTW clear (S1PTW is RES0 for
/// anything but a stage-2 fault) and WnR = 0: the request's access kind is
/// then the walk's descriptor read or hardware update, not the direction
/// of L2's instruction, which the service does not know either.
///
/// WnR is set for a data write not on a walk, and with CM for a cache
/// maintenance instruction (hv's `external_abort_syndrome` agrees); FnV when the abort context
/// has no FAR (a translate request always carries one). HPFAR is UNKNOWN
/// for this abort; the faulting L2 IPA's page is given in it (FIPA in bits
/// \[43:4\]).
fn external_abort(access: AccessKind, abort: &AbortContext, l2_ipa: u64) -> Injection {
    let (fetch, write) = match abort.origin {
        AbortOrigin::Access => (access.is_fetch(), access.is_write()),
        AbortOrigin::Stage1Walk {
            for_instruction_fetch,
        } => (for_instruction_fetch, false),
    };
    let ec = if fetch {
        EC_INSTRUCTION_ABORT_LOWER
    } else {
        EC_DATA_ABORT_LOWER
    };
    let mut iss = FSC_EXTERNAL_ABORT;
    if !fetch && write {
        iss |= 1 << 6;
    }
    // A cache maintenance instruction reports CM = 1 with WnR = 1.
    if matches!(abort.origin, AbortOrigin::Access) && access.is_cache_maintenance() {
        iss |= 1 << 8 | 1 << 6;
    }
    if abort.far.is_none() {
        iss |= 1 << 10;
    }
    Injection {
        esr: (ec << 26) | (1 << 25) | iss,
        far: abort.far.unwrap_or(0),
        hpfar: ((l2_ipa >> 12) << 4) & 0x0000_0fff_ffff_fff0,
    }
}

/// The ipc form of a retry (one reason per variant, nothing merged).
fn retry_reason(retry: Retry) -> RetryReason {
    match retry {
        Retry::InvalidationRaced => RetryReason::InvalidationRaced,
        Retry::Throttled => RetryReason::Throttled,
        Retry::Contended => RetryReason::Contended,
    }
}

/// The ipc form of a refusal (one reason per variant, nothing merged).
fn unshadowable(refusal: Refusal) -> Unshadowable {
    match refusal {
        Refusal::Compose(ComposeError::MalformedWalk) => Unshadowable::MalformedWalk,
        Refusal::Compose(ComposeError::L2IpaOutsideWalk { l2_ipa }) => {
            Unshadowable::L2IpaOutsideWalk { l2_ipa }
        }
        Refusal::Compose(ComposeError::L0MappingMismatch { l1_ipa }) => {
            Unshadowable::L0MappingMismatch { l1_ipa }
        }
        Refusal::Compose(ComposeError::L2IpaBeyondShadow { l2_ipa }) => {
            Unshadowable::L2IpaBeyondShadow { l2_ipa }
        }
        Refusal::Map(MapError::UnsupportedSize(size)) => Unshadowable::UnsupportedSize { size },
        Refusal::Map(MapError::Misaligned {
            l2_ipa_base,
            pa_base,
        }) => Unshadowable::Misaligned {
            l2_ipa_base,
            pa_base,
        },
        Refusal::Map(MapError::IpaOutOfRange(l2_ipa)) => Unshadowable::IpaOutOfRange { l2_ipa },
        Refusal::Map(MapError::PaOutOfRange(pa)) => Unshadowable::PaOutOfRange { pa },
        Refusal::Map(MapError::FramesExhausted { budget }) => Unshadowable::FramesExhausted {
            budget: budget as u64,
        },
        Refusal::Map(MapError::ForeignTable(table)) => Unshadowable::ForeignTable { table },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::message::decode_reply;

    /// Every retry and refusal the service can give survives the trip
    /// through a reply record, and distinct ones stay distinct. (The
    /// integration tests in tests/service.rs reach the other outcomes
    /// through a real service; races and memory pressure are hard to
    /// provoke on demand there.)
    #[test]
    fn retries_and_refusals_keep_their_reason_on_the_ring() {
        let outcomes = [
            TranslateOutcome::Retry(retry_reason(Retry::InvalidationRaced)),
            TranslateOutcome::Retry(retry_reason(Retry::Throttled)),
            TranslateOutcome::Retry(retry_reason(Retry::Contended)),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Compose(
                ComposeError::MalformedWalk,
            ))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Compose(
                ComposeError::L2IpaOutsideWalk { l2_ipa: 0x1000 },
            ))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Compose(
                ComposeError::L0MappingMismatch { l1_ipa: 0x2000 },
            ))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Compose(
                ComposeError::L2IpaBeyondShadow { l2_ipa: 1 << 50 },
            ))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Map(MapError::UnsupportedSize(
                1 << 13,
            )))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Map(MapError::Misaligned {
                l2_ipa_base: 0x1000,
                pa_base: 0x20_1000,
            }))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Map(MapError::IpaOutOfRange(
                1 << 49,
            )))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Map(MapError::PaOutOfRange(
                1 << 48,
            )))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Map(MapError::FramesExhausted {
                budget: 3,
            }))),
            TranslateOutcome::Unshadowable(unshadowable(Refusal::Map(MapError::ForeignTable(
                0x4000,
            )))),
        ];
        for (i, outcome) in outcomes.iter().enumerate() {
            let record = Reply::Translate(*outcome).encode(VcpuId(1), i as u64);
            let decoded = decode_reply(&record).expect("valid reply");
            assert_eq!(decoded.message, Reply::Translate(*outcome));
            for other in &outcomes[..i] {
                assert_ne!(other, outcome);
            }
        }
        assert_eq!(
            outcomes[8],
            TranslateOutcome::Unshadowable(Unshadowable::Misaligned {
                l2_ipa_base: 0x1000,
                pa_base: 0x20_1000
            })
        );
    }

    /// The external abort's syndrome for each access and origin.
    #[test]
    fn external_abort_syndromes() {
        let with_far = AbortContext {
            far: Some(0xffff_0000_0000_1234),
            origin: AbortOrigin::Access,
            trapped_esr: None,
        };
        let read = external_abort(AccessKind::Read, &with_far, 0x1234_5678);
        assert_eq!(read.esr, 0x24 << 26 | 1 << 25 | 0x10);
        assert_eq!(
            (read.far, read.hpfar),
            (0xffff_0000_0000_1234, 0x12345 << 4)
        );
        let write = external_abort(AccessKind::Write, &with_far, 0);
        assert_eq!(write.esr, 0x24 << 26 | 1 << 25 | 1 << 6 | 0x10);
        let fetch = external_abort(AccessKind::ExecEl0, &with_far, 0);
        assert_eq!(fetch.esr, 0x20 << 26 | 1 << 25 | 0x10);
        // Cache maintenance: CM = 1 with WnR = 1, as hv's own syndrome.
        for cm in [
            CacheMaintenance::CleanEl1,
            CacheMaintenance::InvalidateEl1,
            CacheMaintenance::El0,
        ] {
            let abort = external_abort(AccessKind::CacheMaintenance(cm), &with_far, 0);
            assert_eq!(abort.esr, 0x24 << 26 | 1 << 25 | 1 << 8 | 1 << 6 | 0x10);
        }
        // L2's stage-1 walk for a fetch: an instruction abort, WnR and
        // S1PTW clear; without a FAR, FnV set.
        let walk = AbortContext {
            far: None,
            origin: AbortOrigin::Stage1Walk {
                for_instruction_fetch: true,
            },
            trapped_esr: None,
        };
        let on_walk = external_abort(AccessKind::Write, &walk, 0);
        assert_eq!(on_walk.esr, 0x20 << 26 | 1 << 25 | 1 << 10 | 0x10);
        assert_eq!(on_walk.far, 0);
        // L2's stage-1 walk for a data access whose descriptor update (a
        // write) hit nothing: a data abort with WnR = 0 (the direction of
        // L2's own access is not known).
        let data_walk = AbortContext {
            far: Some(0x8000),
            origin: AbortOrigin::Stage1Walk {
                for_instruction_fetch: false,
            },
            trapped_esr: None,
        };
        let update = external_abort(AccessKind::Write, &data_walk, 0);
        assert_eq!(update.esr, 0x24 << 26 | 1 << 25 | 0x10);
        assert_eq!(update.far, 0x8000);
        for injection in [read, write, fetch, on_walk, update] {
            let abort = ExternalAbort {
                injection,
                l1_ipa: 0x2_0000_0000,
            };
            assert_eq!(abort.validate(), Ok(()));
        }
    }
}
