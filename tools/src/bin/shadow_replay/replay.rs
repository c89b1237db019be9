//! The replay: each event applied to the real service, one line out each.

use std::io::{self, Read, Write};

use ipc::message::{Envelope, InvalidateRequest, L0Change, Reply, Request, VcpuId};
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, Tlbi, TlbiFeatures};
use shadow_mmu::budget::Budget;
use shadow_mmu::compose::{
    needed_permission, resolve, ComposeError, Composition, L0Map, L0Region, L1Translation,
    ShadowMapping, Unbacked,
};
use shadow_mmu::context::{ContextKey, HostVmids};
use shadow_mmu::service::{
    DeniedAccess, HostBackend, Refusal, Retry, Service, ServiceConfig, ShadowBackend, Stats,
    Translated, Worker,
};
use shadow_mmu::shadow_table::{MapError, ShadowConfig};
use walker::{
    fault_status_code, AbortContext, AbortOrigin, AccessKind, CacheMaintenance, FaultKind, Granule,
    GuestMemory, Memslots, SlotAccess, WalkError,
};

use crate::args::Options;
use crate::events::{parse_event, tlbi_name, Event};
use crate::json::{error_line, Line};
use crate::json_lines::{self, InputLine};
use crate::l0::{default_regions, permissions_text, ReplayL0};
use crate::memory::{decode, encode, OverlayMemory, RecordingMemory};
use crate::oracle::{Entry, Invalidation, Tracker, MAX_CHECKED_WALKS};
use crate::s2walk_setup::Machine;

/// The shadows' VMIDs start here, clear of VMID 0 and L1's own (hv's
/// layout: L1 runs with VMID 1).
pub const FIRST_SHADOW_VMID: u16 = 16;
/// The hash seed of the service's writer-side indexes: fixed, so a replay
/// is the same run every time (a trace is the engineer's own input, not a
/// guest choosing addresses against the hash).
pub const HASH_SEED: u64 = 0x5eed_5eed_5eed_5eed;

/// L0's map at the start: the `--l0` regions or the default, plus `--mmio`.
pub fn initial_l0(options: &Options, memslots: &Memslots<'_>) -> Result<ReplayL0, String> {
    let mut regions: Vec<L0Region> = match &options.l0 {
        Some(regions) => regions.clone(),
        None => {
            let slots: Vec<(u64, u64)> = memslots
                .slots()
                .iter()
                .map(|s| (s.base(), s.size()))
                .collect();
            default_regions(&slots)?
        }
    };
    regions.extend_from_slice(&options.mmio);
    ReplayL0::new(regions)
}

type ReplayService<'a, 'l> = Service<RecordingMemory<'a>, &'l ReplayL0, HostBackend>;

/// The answer the oracle computes from the current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Mapped(ShadowMapping),
    L0Denied {
        l1_ipa: u64,
    },
    Inject {
        esr: u64,
        hpfar: u64,
    },
    Mmio {
        l1_ipa: u64,
    },
    Outside {
        l1_ipa: u64,
    },
    /// L1 memory whose L0 mapping is mid-change (a retry), or a page of
    /// L1's table the walk read mid-change. The replay's L0 never answers
    /// it (its changes are applied whole, with their unmap), nor do its
    /// memslots; kept so another L0 map's answer is reported, not assumed
    /// away.
    L0Changing {
        l1_ipa: u64,
    },
    Unshadowable(ComposeError),
    /// The walk kept losing its hardware update (cannot happen with one
    /// thread; reported rather than assumed).
    Contended,
}

/// What `--check` concluded about an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Check {
    /// The answer is the current translation.
    Match,
    /// It differs, as a TLB may still hold it.
    Allowed { expected: Expected, note: String },
    /// No TLB could hold it.
    Stale { expected: Expected, reason: String },
    /// It differs, and the search for a walk a TLB could hold that gives
    /// it hit one of its bounds: neither allowed nor stale.
    Unchecked { expected: Expected, note: String },
    /// The oracle's walk could not finish (its hardware update kept
    /// failing: not possible with the one thread a replay runs): nothing
    /// to compare, so nothing is claimed.
    Skipped,
}

/// One replay run.
pub struct Session<'a, 'l> {
    service: ReplayService<'a, 'l>,
    worker: Worker,
    machine: &'a Machine,
    memslots: Memslots<'a>,
    l0: &'l ReplayL0,
    tlbi_features: TlbiFeatures,
    tracker: Option<Tracker>,
    /// `--ignore-tlbis`.
    ignore_tlbis: bool,
    /// The current input line (1-based): the tracker's clock.
    line: u64,
}

impl<'a, 'l> Session<'a, 'l> {
    pub fn new(
        options: &'a Options,
        memslots: Memslots<'a>,
        l0: &'l ReplayL0,
    ) -> Result<Self, String> {
        let shadow = ShadowConfig::default();
        let budget = Budget::split_for(options.budget, options.contexts, &shadow)
            .map_err(|e| format!("--budget/--contexts: {e}"))?;
        let config = ServiceConfig {
            features: options.machine.features,
            budget,
            first_shadow_vmid: FIRST_SHADOW_VMID,
            hash_seed: HASH_SEED,
            host_vmids: HostVmids {
                width: ipc::VmidWidth::Bits16,
                l1_vmid: 1,
            },
        };
        let backend = HostBackend::new(budget.frames, shadow)
            .map_err(|e| format!("shadow frame pool of {} frames: {e:?}", budget.frames))?;
        let service = Service::new(config, RecordingMemory::new(memslots), l0, backend)
            .map_err(|e| format!("the service refused the configuration: {e}"))?;
        let worker = service.worker();
        Ok(Session {
            service,
            worker,
            machine: &options.machine,
            memslots,
            l0,
            tlbi_features: options.tlbi_features,
            tracker: options.check.then(Tracker::default),
            ignore_tlbis: options.ignore_tlbis,
            line: 0,
        })
    }

    /// Applies one input line and writes its output line (no newline) to
    /// `out`; `false` if the line was malformed or a check failed.
    pub fn process(&mut self, text: &str, out: &mut String) -> bool {
        self.line += 1;
        let event = match parse_event(text, self.tlbi_features) {
            Ok(event) => event,
            Err(message) => {
                error_line(out, &message);
                return false;
            }
        };
        let good = match event {
            Event::Translate {
                vttbr,
                vtcr,
                ipa,
                access,
                far,
            } => self.translate(vttbr, vtcr, ipa, access, far, out),
            Event::Write { address, value } => self.write(address, value, out),
            Event::Tlbi {
                tlbi,
                xt,
                vttbr,
                vtcr,
            } => self.tlbi(tlbi, xt, vttbr, vtcr, out),
            Event::L0Unmap { range, change } => self.l0_unmap(range, change, out),
            Event::Stats => self.stats(out),
        };
        // Hardware AF/dirty updates the event's walks made are descriptor
        // changes like L1's (drained even without --check: bounded memory).
        self.record_hardware_updates();
        good
    }

    fn tlbi(&mut self, tlbi: Tlbi, xt: u64, vttbr: u64, vtcr: u64, out: &mut String) -> bool {
        let width = self.service.l1_vmid_width();
        let vmid = ipc::l1_vmid(vttbr, vtcr, width);
        let mut line = Line::new(out);
        line.flag("ok", true)
            .text("op", "tlbi")
            .text("tlbi", &tlbi_name(tlbi))
            .number("vmid", vmid);
        // hv's path for a trapped TLBI: the request hv builds
        // (hv/src/arch/nested.rs), answered by the service's ipc adapter,
        // which decodes the operand again with what it shows L1.
        let request = InvalidateRequest::new(vttbr, vtcr, width, tlbi, xt);
        match request.map(|r| (r, tlbi.decode(xt, self.service.tlbi_params(vtcr)))) {
            Ok((request, Ok(scope))) => {
                scope_fields(&mut line, &scope);
                if self.ignore_tlbis {
                    line.number("removed", 0)
                        .text("note", "--ignore-tlbis: not applied to the service");
                } else {
                    let envelope = Envelope {
                        vcpu: VcpuId(0),
                        seq: self.line,
                        message: Request::Invalidate(request),
                    };
                    match self.service.reply(&self.worker, envelope) {
                        Reply::InvalidateAck(ack) => {
                            line.number("removed", ack.entries_dropped);
                        }
                        other => {
                            out.clear();
                            error_line(
                                out,
                                &format!("the service answered the TLBI with {other:?}"),
                            );
                            return false;
                        }
                    }
                }
                // L1 issued it either way: a TLB that still holds what it
                // covers is the defect the check reports.
                if let Some(tracker) = &mut self.tracker {
                    let (vmid, range, leaf_only) = match scope {
                        InvalidateScope::AllVmids => (None, None, false),
                        InvalidateScope::Vmid => (Some(vmid), None, false),
                        InvalidateScope::Ipa(ipa) => (
                            Some(vmid),
                            Some((ipa.range.start(), ipa.range.end())),
                            ipa.levels == EntryLevels::LeafOnly,
                        ),
                    };
                    tracker.record_invalidation(Invalidation {
                        line: self.line,
                        vmid,
                        range,
                        leaf_only,
                    });
                }
            }
            Ok((_, Err(_))) | Err(_) => {
                line.text("scope", "none").number("removed", 0).text(
                    "note",
                    "a range TLBI with TG = 0b00 (reserved) names no entries: \
                     it completes without invalidating, as in hv",
                );
            }
        }
        line.finish();
        true
    }

    fn l0_unmap(&mut self, range: IpaRange, change: L0Change, out: &mut String) -> bool {
        // L0's map changes first, then the service drops what was
        // built on the old one (hv's order).
        self.l0.change(range.start(), range.end(), change);
        let removed = self.service.l0_unmap(&self.worker, range, change);
        Line::new(out)
            .flag("ok", true)
            .text("op", "l0_unmap")
            .text(
                "change",
                match change {
                    L0Change::Unmap => "unmap",
                    L0Change::WriteProtect => "write_protect",
                },
            )
            .hex("start", range.start())
            .hex("end", range.end())
            .number("removed", removed)
            .finish();
        true
    }

    fn stats(&mut self, out: &mut String) -> bool {
        let s = self.service.stats();
        let (leaves, paths) = self.service.cache_entries(&self.worker);
        Line::new(out)
            .flag("ok", true)
            .text("op", "stats")
            .number("hits", s.hits)
            .number("misses", s.misses)
            .number("walks", s.walks)
            .number("partial_walks", s.partial_walks)
            .number("invalidations", s.invalidations)
            .number("invalidated_entries", s.invalidated_entries)
            .number("evictions", s.evictions)
            .number("recycled_contexts", s.recycled_contexts)
            .number("raced", s.raced)
            .number("l0_changing_output", s.l0_changing_output)
            .number("l0_changing_table", s.l0_changing_table)
            .number("contexts", self.service.contexts() as u64)
            .number("cached_leaves", leaves as u64)
            .number("cached_paths", paths as u64)
            .number("shadow_leaves", self.service.shadow_leaves() as u64)
            .number("shadow_frames", self.service.shadow_frames() as u64)
            .finish();
        true
    }

    fn write(&mut self, address: u64, value: u64, out: &mut String) -> bool {
        let endianness = self.machine.endianness;
        let slot = match self.memslots.find(address) {
            Some(slot) if address.is_multiple_of(8) => slot,
            Some(_) => {
                error_line(
                    out,
                    &format!("write to {address:#x}: descriptors are 8 bytes, 8-byte aligned"),
                );
                return false;
            }
            None => {
                error_line(
                    out,
                    &format!("write to {address:#x}: outside every --mem slot (L1's memory)"),
                );
                return false;
            }
        };
        if slot.access() == SlotAccess::ReadOnly {
            error_line(
                out,
                &format!(
                    "write to {address:#x}: the slot at {:#x} is read-only (--mem-ro)",
                    slot.base()
                ),
            );
            return false;
        }
        let old = match self.memslots.read_descriptor(address) {
            Ok(raw) => decode(raw, endianness),
            Err(e) => {
                error_line(out, &format!("write to {address:#x}: {e}"));
                return false;
            }
        };
        if let Err(e) = self.memslots.store_raw(address, encode(value, endianness)) {
            error_line(out, &format!("write to {address:#x}: {e}"));
            return false;
        }
        if let Some(tracker) = &mut self.tracker {
            tracker.record_write(address, old, value, self.line);
        }
        Line::new(out)
            .flag("ok", true)
            .text("op", "write")
            .hex("addr", address)
            .hex("old", old)
            .hex("value", value)
            .finish();
        true
    }

    fn translate(
        &mut self,
        vttbr: u64,
        vtcr: u64,
        ipa: u64,
        access: AccessKind,
        far: Option<u64>,
        out: &mut String,
    ) -> bool {
        let vmid = ipc::l1_vmid(vttbr, vtcr, self.service.l1_vmid_width());
        let key = ContextKey::new(vmid, vttbr, vtcr, self.machine.endianness);
        let abort = AbortContext {
            far,
            origin: AbortOrigin::Access,
            trapped_esr: None,
        };
        let before = self.service.stats();
        let answer = self
            .service
            .translate(&self.worker, &key, ipa, access, &abort);
        let served = served(&before, &self.service.stats());
        let mut line = Line::new(out);
        line.flag("ok", true).text("op", "translate");
        answer_fields(&mut line, &answer, served);
        match self.check_answer(vttbr, vtcr, ipa, access, &abort, &answer) {
            None => {
                line.finish();
                true
            }
            Some(Check::Match) => {
                line.text("check", "match").finish();
                true
            }
            Some(Check::Skipped) => {
                line.text("check", "skipped")
                    .text("note", "the check's own walk was contended: not compared")
                    .finish();
                true
            }
            Some(Check::Allowed { expected, note }) => {
                line.text("check", "stale_allowed")
                    .object("expected", |o| expected_fields(o, &expected))
                    .text("note", &note)
                    .finish();
                true
            }
            Some(Check::Unchecked { expected, note }) => {
                line.text("check", "unchecked")
                    .object("expected", |o| expected_fields(o, &expected))
                    .text("note", &note)
                    .finish();
                true
            }
            Some(Check::Stale { expected, reason }) => {
                // The line is written again: `ok` goes false.
                out.clear();
                let mut line = Line::new(out);
                line.flag("ok", false)
                    .text("op", "translate")
                    .text("check", "stale");
                answer_fields(&mut line, &answer, served);
                line.object("expected", |o| expected_fields(o, &expected))
                    .text("reason", &reason)
                    .finish();
                false
            }
        }
    }

    /// With `--check`: the service's `answer` for `ipa` against the
    /// oracle (a fresh walk composed with L0's map now) and, where they
    /// differ, L0's current map and the tracker's judgement. `None`
    /// without `--check`, and for answers that claim nothing about the
    /// tables (retry, unshadowable).
    fn check_answer(
        &mut self,
        vttbr: u64,
        vtcr: u64,
        ipa: u64,
        access: AccessKind,
        abort: &AbortContext,
        answer: &Translated,
    ) -> Option<Check> {
        let claimed = claim(answer)?;
        self.tracker.as_ref()?;
        // The service's own hardware updates are changes before the check.
        self.record_hardware_updates();
        let expected = self.oracle(vttbr, vtcr, ipa, access, abort);
        if expected == claimed {
            return Some(Check::Match);
        }
        if expected == Expected::Contended {
            return Some(Check::Skipped);
        }
        // L0's part: its changes are applied with their invalidation, so
        // the answer must be what L0's map gives now.
        if let Err(reason) = self.l0_agrees(answer) {
            return Some(Check::Stale { expected, reason });
        }
        // L1's part may be one a TLB still holds.
        let vmid = ipc::l1_vmid(vttbr, vtcr, self.service.l1_vmid_width());
        let question = Question {
            vttbr,
            vtcr,
            ipa,
            access,
            abort: *abort,
            claimed,
        };
        Some(self.judge(&question, vmid, expected))
    }

    /// Whether some walk a TLB with walk caches could hold gives the
    /// claimed answer (the model: `oracle.rs`). Walks are enumerated depth
    /// first: the first k levels (k >= 0) use a valid table descriptor
    /// the address held at some moment since the last TLBI covering
    /// walk-cache entries for the IPA (the current value counts),
    /// the level after them either memory's value or a valid leaf held
    /// since the last TLBI covering leaf entries of the IPAs the
    /// descriptor spans at its level, and every level below memory's
    /// values. A fault counts only if it comes from a descriptor read from
    /// memory (no TLB holds one). At most [`MAX_CHECKED_WALKS`] walks.
    fn judge(&self, question: &Question, vmid: u16, expected: Expected) -> Check {
        let Some(tracker) = self.tracker.as_ref() else {
            return Check::Skipped;
        };
        let granule = self.machine.walker(question.vtcr, question.vttbr).granule();
        let mut search = Search {
            question,
            tracker,
            vmid,
            granule,
            levels: Vec::new(),
            walks: 0,
            incomplete: None,
        };
        let mut prefix = Vec::new();
        let found = self.explore(&mut search, &mut prefix);
        let tlbis = search.coverage_text();
        match (found, search.incomplete) {
            (Some(path), _) => {
                let cached: Vec<String> = path
                    .iter()
                    .filter(|c| !c.current)
                    .map(|c| {
                        format!(
                            "level {} descriptor at {:#x} = {:#x} (held from line {})",
                            c.level, c.address, c.value, c.since
                        )
                    })
                    .collect();
                Check::Allowed {
                    expected,
                    note: format!(
                        "differs from the current translation, as a TLB may: the walk \
                         through {} gives it, each held since the last covering TLBI ({tlbis})",
                        cached.join(", ")
                    ),
                }
            }
            (None, Some(why)) => Check::Unchecked {
                expected,
                note: format!("differs from the current translation; {why} ({tlbis})"),
            },
            (None, None) => Check::Stale {
                expected,
                reason: format!(
                    "no TLB or walk cache could hold it: none of the {} walks through valid \
                     descriptors held since the last covering TLBI gives it ({tlbis}; no TLB \
                     holds a translation, access flag or address size fault)",
                    search.walks
                ),
            },
        }
    }

    /// One step of [`Session::judge`]'s search: the walk with `prefix`
    /// (cached table descriptors for the first levels), then the choices
    /// at the level after it. The path that gives the claimed answer, if
    /// one does.
    fn explore(&self, search: &mut Search<'_>, prefix: &mut Vec<Cached>) -> Option<Vec<Cached>> {
        let walked = self.walk_cached(search, prefix)?;
        if walked.holdable(prefix) && walked.expected == search.question.claimed {
            return Some(prefix.clone());
        }
        let &(address, level, current) = walked.trail.get(prefix.len())?;
        if prefix.iter().any(|c| c.address == address) {
            // A table that points back at itself: one override would stand
            // for two levels; not modelled.
            search.incomplete = Some(format!(
                "the walk reads the descriptor at {address:#x} at two levels: not checked"
            ));
            return None;
        }
        let coverage = search.coverage(level);
        let tables = search.tracker.held_after(address, coverage.table_after);
        let leaves = search.tracker.held_after(address, coverage.leaf_after);
        if !tables.complete || !leaves.complete {
            search.incomplete = Some(format!(
                "older values of the descriptor at {address:#x} were forgotten (more than {} \
                 changes): not checked",
                crate::oracle::MAX_VALUES_PER_DESCRIPTOR
            ));
        }
        let mut candidates: Vec<(u64, u64)> = tables.values.clone();
        // Memory's value last: a walk-cache entry that still agrees with
        // it lets the levels below use older values too.
        candidates.push((u64::MAX, current));
        let mut tried = Vec::new();
        for (since, value) in candidates {
            if value & 1 == 0 || tried.contains(&value) {
                continue;
            }
            tried.push(value);
            if search.walks >= MAX_CHECKED_WALKS {
                search.incomplete = Some(format!(
                    "more than {MAX_CHECKED_WALKS} walks a TLB could hold: not checked"
                ));
                return None;
            }
            let is_table = level < 3 && value & 0b11 == 0b11;
            let cached = Cached {
                address,
                level,
                value,
                since,
                current: value == current,
            };
            prefix.push(cached);
            let found = if is_table {
                self.explore(search, prefix)
            } else if value != current && leaves.values.iter().any(|&(_, v)| v == value) {
                // A whole cached leaf: the walk ends here.
                self.walk_cached(search, prefix)
                    .filter(|w| w.holdable(prefix) && w.expected == search.question.claimed)
                    .map(|_| prefix.clone())
            } else {
                None
            };
            prefix.pop();
            if found.is_some() {
                return found;
            }
            if search.incomplete.is_some() && search.walks >= MAX_CHECKED_WALKS {
                // Out of walks: the rest is not tried (already noted).
                return None;
            }
        }
        None
    }

    /// The walk of the question's IPA reading `cached` values instead of
    /// memory's at their addresses; `None` (and the search marked
    /// incomplete) past [`MAX_CHECKED_WALKS`].
    fn walk_cached(&self, search: &mut Search<'_>, cached: &[Cached]) -> Option<Walked> {
        if search.walks >= MAX_CHECKED_WALKS {
            search.incomplete = Some(format!(
                "more than {MAX_CHECKED_WALKS} walks a TLB could hold: not checked"
            ));
            return None;
        }
        search.walks += 1;
        let endianness = self.machine.endianness;
        let overrides: Vec<(u64, u64)> = cached
            .iter()
            .map(|c| (c.address, encode(c.value, endianness)))
            .collect();
        let q = search.question;
        let walked = self.oracle_with(q.vttbr, q.vtcr, q.ipa, q.access, &q.abort, &overrides);
        if walked.expected == Expected::Contended {
            search.incomplete = Some("a walk was contended: not checked".to_string());
        }
        Some(walked)
    }

    /// Whether L0's current map agrees with L0's part of an answer.
    fn l0_agrees(&self, answer: &Translated) -> Result<(), String> {
        let unbacked = |l1_ipa: u64| match self.l0.lookup(l1_ipa) {
            Some(_) => None,
            None => Some(self.l0.unbacked(l1_ipa)),
        };
        match *answer {
            Translated::Mapped(m) => self.l0_backs(&m),
            Translated::Mmio { l1_ipa } if unbacked(l1_ipa) != Some(Unbacked::Mmio) => {
                Err(format!(
                    "L0 emulates no device at L1 IPA {l1_ipa:#x} now (L0 changes are applied \
                 with their invalidation)"
                ))
            }
            Translated::OutsideL1 { l1_ipa } if unbacked(l1_ipa) != Some(Unbacked::Nothing) => {
                Err(format!(
                    "L1 IPA {l1_ipa:#x} is L1 memory or a device in L0's map, and L0's map \
                     only loses what it had"
                ))
            }
            // Conservative: the denial may come from L0's permissions or
            // from the composition; only "not L1 memory" is certain.
            Translated::L0Denied { l1_ipa, .. } if unbacked(l1_ipa).is_some() => Err(format!(
                "L1 IPA {l1_ipa:#x} is not L1 memory in L0's map now, so L0 cannot be the \
                 one denying the access"
            )),
            _ => Ok(()),
        }
    }

    /// Whether L0's current map backs a mapped answer: some L1 block its
    /// PA can come from (L0's map as given at the start, which the trace
    /// only takes away from) is still L1 memory at that PA, with at least
    /// the answer's permissions.
    fn l0_backs(&self, m: &ShadowMapping) -> Result<(), String> {
        let blocks = self.l0.initial_l1_blocks(m.pa_base, m.size);
        let Some(&(first, _)) = blocks.first() else {
            return Err(format!(
                "PA {:#x} is not L1 memory in L0's map as given at the start: no \
                 translation ever gave it",
                m.pa_base
            ));
        };
        if blocks
            .iter()
            .any(|&(l1_ipa, size)| self.l0.backs(l1_ipa, size, m.pa_base, m.perms))
        {
            return Ok(());
        }
        Err(format!(
            "L0's map no longer backs PA {:#x}-{:#x} as {} for the L1 IPAs it came from \
             (from {first:#x}): the answer is built on L0's map before a change, and each \
             L0 change is applied with its invalidation",
            m.pa_base,
            m.pa_base + (m.size - 1),
            permissions_text(m.perms),
        ))
    }

    fn record_hardware_updates(&mut self) {
        let endianness = self.machine.endianness;
        for (address, old, new) in self.service.memory().take_updates() {
            if let Some(tracker) = &mut self.tracker {
                tracker.record_write(
                    address,
                    decode(old, endianness),
                    decode(new, endianness),
                    self.line,
                );
            }
        }
    }

    /// A fresh walk of L1's current memory (through a private overlay, so
    /// its hardware updates change nothing) composed with L0's current
    /// map, and the walk's descriptor addresses.
    fn oracle(
        &self,
        vttbr: u64,
        vtcr: u64,
        ipa: u64,
        access: AccessKind,
        abort: &AbortContext,
    ) -> Expected {
        self.oracle_with(vttbr, vtcr, ipa, access, abort, &[])
            .expected
    }

    /// [`Session::oracle`] with `overrides` (address, raw word) read
    /// instead of memory.
    fn oracle_with(
        &self,
        vttbr: u64,
        vtcr: u64,
        ipa: u64,
        access: AccessKind,
        abort: &AbortContext,
        overrides: &[(u64, u64)],
    ) -> Walked {
        let walker = self.machine.walker(vtcr, vttbr);
        let overlay = OverlayMemory::with_overrides(&self.memslots, overrides);
        let trail_of = |reads: &[walker::DescriptorRead]| -> Vec<(u64, i8, u64)> {
            reads
                .iter()
                .map(|r| (r.address, r.level, r.value))
                .collect()
        };
        match walker.walk(&overlay, ipa, access) {
            Ok(t) => {
                let trail = trail_of(t.trail.as_slice());
                let leaf = L1Translation::from_translation(&t);
                let host = self.service.backend().host_execute();
                let expected = match resolve(&leaf, ipa, self.l0, host) {
                    Ok(Composition::Mapped(entry)) => {
                        if entry.shadow.perms.contains(needed_permission(access)) {
                            Expected::Mapped(entry.shadow)
                        } else {
                            Expected::L0Denied {
                                l1_ipa: entry.l1_ipa_base + (ipa - entry.shadow.l2_ipa_base),
                            }
                        }
                    }
                    Ok(Composition::Mmio { l1_ipa }) => Expected::Mmio { l1_ipa },
                    Ok(Composition::ExternalAbort { l1_ipa }) => Expected::Outside { l1_ipa },
                    Ok(Composition::L0Changing { l1_ipa }) => Expected::L0Changing { l1_ipa },
                    Err(e) => Expected::Unshadowable(e),
                };
                Walked {
                    expected,
                    trail,
                    fault: None,
                }
            }
            Err(WalkError::Fault(fault)) => {
                let injected = fault.syndrome(abort);
                Walked {
                    expected: Expected::Inject {
                        esr: injected.esr_el2,
                        hpfar: injected.hpfar_el2,
                    },
                    trail: trail_of(fault.trail.as_slice()),
                    fault: Some(fault.kind()),
                }
            }
            Err(WalkError::Contended { .. }) => Walked {
                expected: Expected::Contended,
                trail: Vec::new(),
                fault: None,
            },
            // The host denies the walk a descriptor access (the replay's
            // memslots never do): the service's L0Denied at the
            // descriptor.
            Err(WalkError::HostDenied(denial)) => Walked {
                expected: Expected::L0Denied {
                    l1_ipa: denial.descriptor_address,
                },
                trail: Vec::new(),
                fault: None,
            },
            // The host is mid its change of a table page (the replay's
            // memslots never are): the service's Retry(L0Changing).
            Err(WalkError::HostChanging(change)) => Walked {
                expected: Expected::L0Changing {
                    l1_ipa: change.descriptor_address,
                },
                trail: Vec::new(),
                fault: None,
            },
        }
    }
}

/// A checked translate: what was asked, and the answer given.
struct Question {
    vttbr: u64,
    vtcr: u64,
    ipa: u64,
    access: AccessKind,
    abort: AbortContext,
    claimed: Expected,
}

/// The state of one [`Session::judge`] search.
struct Search<'s> {
    question: &'s Question,
    tracker: &'s Tracker,
    vmid: u16,
    granule: Granule,
    /// Per level the walk reached, the last TLBIs covering its descriptor
    /// (see [`Search::coverage`]), for the search and its report.
    levels: Vec<LevelCoverage>,
    /// Walks made so far.
    walks: usize,
    /// Why the search could not try every walk, if it could not.
    incomplete: Option<String>,
}

/// The last TLBIs covering the entries a descriptor at `level` of the
/// question's walk gives (`oracle.rs`: a leaf entry by the IPAs it spans,
/// a walk-cache entry by the question's IPA).
#[derive(Clone, Copy, Debug)]
struct LevelCoverage {
    level: i8,
    /// `[start, end)`: the level's region holding the question's IPA.
    span: (u64, u64),
    /// The last TLBI covering walk-cache entries for the question's IPA.
    table_after: Option<u64>,
    /// The last TLBI covering leaf entries of the span.
    leaf_after: Option<u64>,
}

impl Search<'_> {
    /// The coverage of the question's descriptor at `level`, found once.
    fn coverage(&mut self, level: i8) -> LevelCoverage {
        if let Some(&known) = self.levels.iter().find(|c| c.level == level) {
            return known;
        }
        // A level-L entry spans granule * (entries per table)^(3 - L)
        // bytes; at least the whole input space above 63 bits.
        let shift = self.granule.bits() + self.granule.stride() * (3 - level).max(0) as u32;
        let span = match 1u64.checked_shl(shift).filter(|_| shift < 64) {
            Some(size) => {
                let start = self.question.ipa & !(size - 1);
                (start, start.saturating_add(size))
            }
            None => (0, u64::MAX),
        };
        let found = LevelCoverage {
            level,
            span,
            table_after: self.tracker.last_covering(
                self.vmid,
                (self.question.ipa, self.question.ipa.saturating_add(1)),
                Entry::Table,
            ),
            leaf_after: self.tracker.last_covering(self.vmid, span, Entry::Leaf),
        };
        self.levels.push(found);
        found
    }

    /// The TLBIs the search counted, for a report.
    fn coverage_text(&self) -> String {
        let since = |after: Option<u64>| match after {
            Some(line) => format!("line {line}"),
            None => "none remembered".to_string(),
        };
        let levels: Vec<String> = self
            .levels
            .iter()
            .map(|c| {
                format!(
                    "level {}: {} for leaf entries of {:#x}-{:#x}, {} for walk-cache entries",
                    c.level,
                    since(c.leaf_after),
                    c.span.0,
                    c.span.1.wrapping_sub(1),
                    since(c.table_after)
                )
            })
            .collect();
        format!(
            "for IPA {:#x}, VMID {}: {}",
            self.question.ipa,
            self.vmid,
            levels.join("; ")
        )
    }
}

/// A descriptor value a TLB or walk cache may hold, used by a walk.
#[derive(Clone, Copy, Debug)]
struct Cached {
    address: u64,
    level: i8,
    value: u64,
    /// The first line it held the value (0: from the start).
    since: u64,
    /// It is memory's value now (a walk-cache entry that still agrees).
    current: bool,
}

/// One walk of the oracle.
struct Walked {
    expected: Expected,
    /// (address, level, decoded value) of each descriptor read.
    trail: Vec<(u64, i8, u64)>,
    fault: Option<FaultKind>,
}

impl Walked {
    /// Whether a TLB could give this walk's result with `cached` values:
    /// a translation, access flag or address size fault raised by a
    /// cached descriptor is one no TLB holds (the fault comes from the
    /// last descriptor read).
    fn holdable(&self, cached: &[Cached]) -> bool {
        match self.fault {
            Some(FaultKind::Translation | FaultKind::AddressSize | FaultKind::AccessFlag) => self
                .trail
                .last()
                .is_none_or(|&(address, _, _)| cached.iter().all(|c| c.address != address)),
            _ => true,
        }
    }
}

/// What an answer claims, in the oracle's terms (`None`: nothing about
/// the tables).
fn claim(answer: &Translated) -> Option<Expected> {
    match *answer {
        Translated::Mapped(m) => Some(Expected::Mapped(m)),
        Translated::Inject(i) => Some(Expected::Inject {
            esr: i.esr_el2,
            hpfar: i.hpfar_el2,
        }),
        Translated::Mmio { l1_ipa } => Some(Expected::Mmio { l1_ipa }),
        Translated::OutsideL1 { l1_ipa } => Some(Expected::Outside { l1_ipa }),
        Translated::L0Denied { l1_ipa, .. } => Some(Expected::L0Denied { l1_ipa }),
        Translated::Retry(_) | Translated::Unshadowable(_) => None,
    }
}

/// How the service served a translate, from its counters.
fn served(before: &Stats, after: &Stats) -> &'static str {
    if after.hits > before.hits {
        "hit"
    } else if after.partial_walks > before.partial_walks {
        "partial_walk"
    } else if after.walks > before.walks {
        "walk"
    } else {
        "none"
    }
}

fn access_name(access: AccessKind) -> &'static str {
    match access {
        AccessKind::Read => "read",
        AccessKind::Write => "write",
        AccessKind::ExecEl1 => "exec",
        AccessKind::ExecEl0 => "exec_el0",
        // Not among the accesses a trace holds; named for completeness.
        AccessKind::Stage1Update => "stage1_update",
        AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1) => "cache_clean",
        AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1) => "cache_invalidate",
        AccessKind::CacheMaintenance(CacheMaintenance::El0) => "cache_maintenance_el0",
    }
}

fn mapping_fields(line: &mut Line<'_>, m: &ShadowMapping) {
    line.hex("l2_ipa", m.l2_ipa_base)
        .hex("pa", m.pa_base)
        .hex("size", m.size)
        .text("perms", &permissions_text(m.perms))
        .hex("memattr", u64::from(m.mem_attr.bits()))
        .number("sh", m.shareability as u8);
}

/// The walker's fault kind and level behind an injected FSC.
fn fault_of_fsc(fsc: u8) -> Option<(&'static str, i8)> {
    const KINDS: [(FaultKind, &str); 5] = [
        (FaultKind::Translation, "translation"),
        (FaultKind::AddressSize, "address_size"),
        (FaultKind::AccessFlag, "access_flag"),
        (FaultKind::Permission, "permission"),
        (FaultKind::ExternalAbortOnWalk, "external_abort"),
    ];
    KINDS.iter().find_map(|&(kind, name)| {
        (-1..=3)
            .find(|&level| fault_status_code(kind, level) == fsc)
            .map(|level| (name, level))
    })
}

fn answer_fields(line: &mut Line<'_>, answer: &Translated, served: &str) {
    match *answer {
        Translated::Mapped(m) => {
            line.text("result", "mapped");
            mapping_fields(line, &m);
            line.text("served", served);
        }
        Translated::Inject(i) => {
            let fsc = (i.esr_el2 & 0x3f) as u8;
            line.text("result", "inject");
            if let Some((kind, level)) = fault_of_fsc(fsc) {
                line.text("fault", kind).number("level", level);
            }
            // Two digits, as s2walk prints it.
            line.text("fsc", &format!("{fsc:#04x}"))
                .hex("esr", i.esr_el2)
                .hex("far", i.far_el2)
                .hex("hpfar", i.hpfar_el2)
                .text("served", served);
        }
        Translated::Mmio { l1_ipa } => {
            line.text("result", "mmio")
                .hex("l1_ipa", l1_ipa)
                .text("served", served);
        }
        Translated::OutsideL1 { l1_ipa } => {
            line.text("result", "outside")
                .hex("l1_ipa", l1_ipa)
                .text("served", served);
        }
        Translated::L0Denied { l1_ipa, denied } => {
            line.text("result", "l0_denied").hex("l1_ipa", l1_ipa);
            match denied {
                DeniedAccess::L2Data(access) => line.text("access", access_name(access)),
                // (The replay's memslots deny L0 nothing: kept for a
                // complete printer.)
                DeniedAccess::L1TableRead => line.text("denied", "l1_table_read"),
                DeniedAccess::L1TableUpdate => line.text("denied", "l1_table_update"),
            };
            line.text("served", served);
        }
        Translated::Unshadowable(refusal) => {
            line.text("result", "unshadowable")
                .text("reason", &refusal_text(refusal))
                .text("served", served);
        }
        Translated::Retry(retry) => {
            line.text("result", "retry").text(
                "reason",
                match retry {
                    Retry::InvalidationRaced => "invalidation_raced",
                    Retry::Throttled => "throttled",
                    Retry::Contended => "contended",
                    Retry::L0Changing => "l0_changing",
                },
            );
        }
    }
}

fn compose_error_text(e: ComposeError) -> String {
    match e {
        ComposeError::MalformedWalk => "the walk result is not an aligned block".to_string(),
        ComposeError::L2IpaOutsideWalk { l2_ipa } => {
            format!("the walk result does not translate L2 IPA {l2_ipa:#x}")
        }
        ComposeError::L0MappingMismatch { l1_ipa } => {
            format!("L0's mapping does not hold L1 IPA {l1_ipa:#x}")
        }
        ComposeError::L2IpaBeyondShadow { l2_ipa } => {
            format!("L2 IPA {l2_ipa:#x} needs more than the shadow's 48 input bits")
        }
    }
}

fn refusal_text(refusal: Refusal) -> String {
    match refusal {
        Refusal::Compose(e) => compose_error_text(e),
        Refusal::Map(MapError::FramesExhausted { .. }) => {
            "no shadow table frame left (raise --budget)".to_string()
        }
        Refusal::Map(e) => format!("the shadow table refused the entry: {e:?}"),
    }
}

fn expected_fields(o: &mut Line<'_>, expected: &Expected) {
    match *expected {
        Expected::Mapped(m) => {
            o.text("result", "mapped");
            mapping_fields(o, &m);
        }
        Expected::L0Denied { l1_ipa } => {
            o.text("result", "l0_denied").hex("l1_ipa", l1_ipa);
        }
        Expected::Inject { esr, hpfar } => {
            o.text("result", "inject")
                .hex("esr", esr)
                .hex("hpfar", hpfar);
        }
        Expected::Mmio { l1_ipa } => {
            o.text("result", "mmio").hex("l1_ipa", l1_ipa);
        }
        Expected::Outside { l1_ipa } => {
            o.text("result", "outside").hex("l1_ipa", l1_ipa);
        }
        Expected::L0Changing { l1_ipa } => {
            o.text("result", "l0_changing").hex("l1_ipa", l1_ipa);
        }
        Expected::Unshadowable(e) => {
            o.text("result", "unshadowable")
                .text("reason", &compose_error_text(e));
        }
        Expected::Contended => {
            o.text("result", "contended");
        }
    }
}

fn scope_fields(line: &mut Line<'_>, scope: &InvalidateScope) {
    match scope {
        InvalidateScope::Vmid => {
            line.text("scope", "vmid");
        }
        InvalidateScope::AllVmids => {
            line.text("scope", "all_vmids");
        }
        InvalidateScope::Ipa(ipa) => {
            line.text("scope", "ipa")
                .hex("start", ipa.range.start())
                .hex("end", ipa.range.end())
                .text(
                    "levels",
                    match ipa.levels {
                        EntryLevels::AnyLevel => "any",
                        EntryLevels::LeafOnly => "leaf",
                    },
                );
        }
    }
}

/// Lines from `input` until end of file, one line each to `output` (the
/// shared loop, `json_lines::serve`). Whether every line was good.
pub fn serve(
    session: &mut Session<'_, '_>,
    input: impl Read,
    output: impl Write,
) -> io::Result<bool> {
    json_lines::serve(input, output, |line, out| match line {
        InputLine::Text(text) => session.process(text, out),
        InputLine::Refused(why) => {
            // Still a line of the trace: the clock moves.
            session.line += 1;
            error_line(out, &why);
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::command;
    use proptest::test_runner::{Config, TestRunner};
    use shadow_mmu::compose::Permissions;

    const BASE: u64 = 0x4000_0000;
    const VTCR: u64 = 0x8005_3590;
    const VTTBR: u64 = (1 << 48) | BASE;
    const IPA: u64 = 0x1000_0000;
    const RW_PAGE: u64 = (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0xf << 2) | 0b11;

    /// A 4K table from level 0 at BASE mapping IPA -> L1 IPA 0x8000_0000;
    /// returns the file argument and the leaf's address.
    fn table_file(name: &str) -> (std::path::PathBuf, u64) {
        let mut bytes = vec![0u8; 4 * 4096];
        let mut put = |address: u64, value: u64| {
            let at = (address - BASE) as usize;
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        put(BASE, (BASE + 0x1000) | 3);
        put(BASE + 0x1000, (BASE + 0x2000) | 3);
        put(BASE + 0x2000 + 8 * ((IPA >> 21) & 511), (BASE + 0x3000) | 3);
        let leaf = BASE + 0x3000 + 8 * ((IPA >> 12) & 511);
        put(leaf, 0x8000_0000 | RW_PAGE);
        let path = std::env::temp_dir().join(format!(
            "shadow-replay-unit-{name}-{}.bin",
            std::process::id()
        ));
        std::fs::write(&path, &bytes).unwrap();
        (path, leaf)
    }

    fn options(path: &std::path::Path, check: bool) -> Options {
        let mem = format!("{}@{BASE:#x}", path.display());
        let mut args = vec![
            "shadow-replay",
            "--mem",
            &mem,
            "--l0",
            "0x0:0x100000000:0x1000000000",
        ];
        if check {
            args.push("--check");
        }
        let matches = command().try_get_matches_from(args).unwrap();
        Options::from_matches(&matches).unwrap()
    }

    fn run_line(session: &mut Session<'_, '_>, line: &str) -> (bool, Value) {
        let mut out = String::new();
        let good = session.process(line, &mut out);
        (good, serde_json::from_str(&out).unwrap())
    }

    use serde_json::Value;

    /// The checker on a crafted state: the real service applied L1's
    /// rewrite and TLBI (so it answers the new page), and the check is
    /// handed the answer a buggy service that kept its entry would give.
    /// It must call that stale; handed before the TLBI, the same answer is
    /// allowed; the right answer matches.
    #[test]
    fn the_check_catches_an_entry_kept_past_its_tlbi() {
        let (path, leaf) = table_file("stale");
        let options = options(&path, true);
        std::fs::remove_file(&path).unwrap();
        let mut storage = Vec::new();
        let memslots = options.machine.memslots(&mut storage).unwrap();
        let l0 = initial_l0(&options, &memslots).unwrap();
        let mut session = Session::new(&options, memslots, &l0).unwrap();
        let translate = format!(
            r#"{{"op":"translate","vttbr":"{VTTBR:#x}","vtcr":"{VTCR:#x}","ipa":"{IPA:#x}","access":"read"}}"#
        );
        let (good, first) = run_line(&mut session, &translate);
        assert!(good, "{first}");
        assert_eq!(first["pa"], "0x1080000000");
        let Translated::Mapped(old) = session.service.translate(
            &session.worker,
            &key(&session),
            IPA,
            AccessKind::Read,
            &ABORT,
        ) else {
            panic!("mapped")
        };
        let write = format!(
            r#"{{"op":"write","addr":"{leaf:#x}","value":"{:#x}"}}"#,
            0x8123_4000 | RW_PAGE
        );
        assert!(run_line(&mut session, &write).0);
        // Before the TLBI, the old entry is one a TLB may hold.
        let check = session.check_answer(
            VTTBR,
            VTCR,
            IPA,
            AccessKind::Read,
            &ABORT,
            &Translated::Mapped(old),
        );
        assert!(matches!(check, Some(Check::Allowed { .. })), "{check:?}");
        let tlbi = format!(
            r#"{{"op":"tlbi","op_name":"IPAS2E1IS","xt":"{:#x}","vttbr":"{VTTBR:#x}","vtcr":"{VTCR:#x}"}}"#,
            IPA >> 12
        );
        assert!(run_line(&mut session, &tlbi).0);
        let check = session.check_answer(
            VTTBR,
            VTCR,
            IPA,
            AccessKind::Read,
            &ABORT,
            &Translated::Mapped(old),
        );
        let Some(Check::Stale { expected, reason }) = check else {
            panic!("{check:?}")
        };
        let Expected::Mapped(new) = expected else {
            panic!("{expected:?}")
        };
        assert_eq!(new.pa_base, 0x10_8123_4000);
        assert!(
            reason.contains("line 3 for leaf entries") && reason.contains("none of the"),
            "{reason}"
        );
        // The real service answers the new page, which matches.
        let (good, after) = run_line(&mut session, &translate);
        assert!(good, "{after}");
        assert_eq!(
            (&after["pa"], &after["check"]),
            (&Value::from("0x1081234000"), &Value::from("match"))
        );
        // An answer with another PA than any L1 memory is never allowed.
        let forged = ShadowMapping {
            pa_base: 0x7_0000_0000_0000 & !0xfff,
            ..new
        };
        let check = session.check_answer(
            VTTBR,
            VTCR,
            IPA,
            AccessKind::Read,
            &ABORT,
            &Translated::Mapped(forged),
        );
        assert!(matches!(check, Some(Check::Stale { .. })), "{check:?}");
        // Nor one that keeps a permission L0 has taken away since.
        let protect =
            r#"{"op":"l0_unmap","ipa":"0x81234000","size":"0x1000","change":"write_protect"}"#;
        assert!(run_line(&mut session, protect).0);
        let check = session.check_answer(
            VTTBR,
            VTCR,
            IPA,
            AccessKind::Read,
            &ABORT,
            &Translated::Mapped(new),
        );
        let Some(Check::Stale { reason, .. }) = check else {
            panic!("{check:?}")
        };
        assert!(
            reason.contains("no longer backs PA 0x1081234000-0x1081234fff as rwx"),
            "{reason}"
        );
        let (good, after) = run_line(&mut session, &translate);
        assert!(good, "{after}");
        assert_eq!(
            (&after["perms"], &after["check"]),
            (&Value::from("rx"), &Value::from("match"))
        );
        let new = ShadowMapping {
            perms: Permissions::READ
                .union(Permissions::EXEC_EL0)
                .union(Permissions::EXEC_EL1),
            ..new
        };
        // L0's part of the other answers: a device answer where L0 has
        // none, an "outside" answer for L1 memory.
        for forged in [
            Translated::Mmio {
                l1_ipa: 0x8123_4000,
            },
            Translated::OutsideL1 {
                l1_ipa: 0x8123_4000,
            },
        ] {
            let check = session.check_answer(VTTBR, VTCR, IPA, AccessKind::Read, &ABORT, &forged);
            let Some(Check::Stale { reason, .. }) = check else {
                panic!("{forged:?}: {check:?}")
            };
            assert!(reason.contains("L1 IPA 0x81234000"), "{reason}");
        }
        // Nor one whose permissions differ when nothing changed.
        let wider = ShadowMapping {
            perms: Permissions::READ,
            ..new
        };
        let check = session.check_answer(
            VTTBR,
            VTCR,
            IPA,
            AccessKind::Read,
            &ABORT,
            &Translated::Mapped(wider),
        );
        assert!(matches!(check, Some(Check::Stale { .. })), "{check:?}");
    }

    /// R28-2 (review 28's reproducer): a Translation fault is never cached
    /// (DDI 0487: entries that generate Translation, Address size or Access
    /// flag faults are not held in a TLB), so after the leaf went invalid ->
    /// valid a fault answer is stale.
    #[test]
    fn r28_2_a_fault_after_the_leaf_became_valid_is_stale() {
        let (path, leaf) = table_file("r28-2");
        let options = options(&path, true);
        std::fs::remove_file(&path).unwrap();
        let mut storage = Vec::new();
        let memslots = options.machine.memslots(&mut storage).unwrap();
        let l0 = initial_l0(&options, &memslots).unwrap();
        let mut session = Session::new(&options, memslots, &l0).unwrap();
        let valid = 0x8000_0000 | RW_PAGE;
        // L1 starts with the leaf invalid: write 0 and invalidate (BBM's first half).
        assert!(
            run_line(
                &mut session,
                &format!(r#"{{"op":"write","addr":"{leaf:#x}","value":"0x0"}}"#)
            )
            .0
        );
        let tlbi = format!(
            r#"{{"op":"tlbi","op_name":"IPAS2E1IS","xt":"{:#x}","vttbr":"{VTTBR:#x}","vtcr":"{VTCR:#x}"}}"#,
            IPA >> 12
        );
        assert!(run_line(&mut session, &tlbi).0);
        // The real service's answer now: a Translation fault at level 3.
        let fault = session.service.translate(
            &session.worker,
            &key(&session),
            IPA,
            AccessKind::Read,
            &ABORT,
        );
        assert!(matches!(fault, Translated::Inject(_)), "{fault:?}");
        // L1 makes the leaf valid: no TLBI is needed for that.
        assert!(
            run_line(
                &mut session,
                &format!(r#"{{"op":"write","addr":"{leaf:#x}","value":"{valid:#x}"}}"#)
            )
            .0
        );
        // A service that still answered the fault (a cached negative entry)
        // is wrong; the check must say so.
        let check = session.check_answer(VTTBR, VTCR, IPA, AccessKind::Read, &ABORT, &fault);
        assert!(matches!(check, Some(Check::Stale { .. })), "{check:?}");
    }

    /// R28-3 (review 28's reproducer): the service's own AF update (HA) is a
    /// value the leaf held, with the same translation: it cannot allow an
    /// answer with another PA.
    #[test]
    fn r28_3_a_hardware_af_update_does_not_allow_another_pa() {
        const HA: u64 = 1 << 21;
        const AF: u64 = 1 << 10;
        for hardware_af in [false, true] {
            let (path, leaf) = table_file(if hardware_af { "r28-3-ha" } else { "r28-3" });
            let mem = format!("{}@{BASE:#x}", path.display());
            let args = [
                "shadow-replay",
                "--mem",
                &mem,
                "--l0",
                "0x0:0x100000000:0x1000000000",
                "--mmfr1",
                "0x1",
                "--check",
            ];
            let matches = command().try_get_matches_from(args).unwrap();
            let options = Options::from_matches(&matches).unwrap();
            std::fs::remove_file(&path).unwrap();
            let mut storage = Vec::new();
            let memslots = options.machine.memslots(&mut storage).unwrap();
            let l0 = initial_l0(&options, &memslots).unwrap();
            let mut session = Session::new(&options, memslots, &l0).unwrap();
            let vtcr = VTCR | HA;
            // Line 1: the leaf with AF clear (or set), line 2: its TLBI.
            let value = if hardware_af {
                0x8000_0000 | (RW_PAGE & !AF)
            } else {
                0x8000_0000 | RW_PAGE
            };
            assert!(
                run_line(
                    &mut session,
                    &format!(r#"{{"op":"write","addr":"{leaf:#x}","value":"{value:#x}"}}"#)
                )
                .0
            );
            assert!(run_line(&mut session, &format!(
            r#"{{"op":"tlbi","op_name":"IPAS2E1IS","xt":"{:#x}","vttbr":"{VTTBR:#x}","vtcr":"{vtcr:#x}"}}"#,
            IPA >> 12
        )).0);
            // Line 3: the service walks (and sets AF when it was clear).
            let translate = format!(
                r#"{{"op":"translate","vttbr":"{VTTBR:#x}","vtcr":"{vtcr:#x}","ipa":"{IPA:#x}","access":"read"}}"#
            );
            let (good, answer) = run_line(&mut session, &translate);
            assert!(good && answer["check"] == "match", "{answer}");
            let forged = forged_mapping(&session, vtcr);
            let check = check_read(&mut session, vtcr, forged);
            assert!(
                matches!(check, Some(Check::Stale { .. })),
                "hardware AF {hardware_af}: {check:?}"
            );
        }
    }

    /// A walk search past [`MAX_CHECKED_WALKS`] says "unchecked", never
    /// "stale": each of levels 0-2 held 30 table descriptors (all
    /// pointing at the same next table; they differ in ignored bits) with
    /// no TLBI, so 30^3 walks a TLB could hold exist.
    #[test]
    fn a_search_past_its_bound_is_unchecked_not_stale() {
        let (path, leaf) = table_file("bound");
        let options = options(&path, true);
        std::fs::remove_file(&path).unwrap();
        let mut storage = Vec::new();
        let memslots = options.machine.memslots(&mut storage).unwrap();
        let l0 = initial_l0(&options, &memslots).unwrap();
        let mut session = Session::new(&options, memslots, &l0).unwrap();
        let tables = [
            (BASE, BASE + 0x1000),
            (BASE + 0x1000, BASE + 0x2000),
            (BASE + 0x2000 + 8 * ((IPA >> 21) & 511), BASE + 0x3000),
        ];
        for (address, next) in tables {
            for ignored in (1..=30u64).rev() {
                let value = next | 3 | (ignored << 52);
                let write =
                    format!(r#"{{"op":"write","addr":"{address:#x}","value":"{value:#x}"}}"#);
                assert!(run_line(&mut session, &write).0);
            }
            let write = format!(
                r#"{{"op":"write","addr":"{address:#x}","value":"{:#x}"}}"#,
                next | 3
            );
            assert!(run_line(&mut session, &write).0);
        }
        let forged = forged_mapping(&session, VTCR);
        let check = check_read(&mut session, VTCR, forged);
        let Some(Check::Unchecked { note, .. }) = check else {
            panic!("{check:?}")
        };
        assert!(note.contains("more than 512 walks"), "{note}");
        // With a covering TLBI, only memory's values remain: stale.
        let tlbi = format!(
            r#"{{"op":"tlbi","op_name":"VMALLS12E1IS","xt":"0x0","vttbr":"{VTTBR:#x}","vtcr":"{VTCR:#x}"}}"#
        );
        assert!(run_line(&mut session, &tlbi).0);
        let check = check_read(&mut session, VTCR, forged);
        assert!(matches!(check, Some(Check::Stale { .. })), "{check:?}");
        let _ = leaf;
    }

    const ABORT: AbortContext = AbortContext {
        far: None,
        origin: AbortOrigin::Access,
        trapped_esr: None,
    };

    fn key(session: &Session<'_, '_>) -> ContextKey {
        key_for(session, VTCR)
    }

    fn key_for(session: &Session<'_, '_>, vtcr: u64) -> ContextKey {
        let vmid = ipc::l1_vmid(VTTBR, vtcr, session.service.l1_vmid_width());
        ContextKey::new(vmid, VTTBR, vtcr, session.machine.endianness)
    }

    /// A wrong answer to a read of IPA under `vtcr` that a buggy walk or
    /// composition could give: the service's own mapping moved 5 pages
    /// along, to another L1 page L0 backs, which no TLB ever held.
    fn forged_mapping(session: &Session<'_, '_>, vtcr: u64) -> ShadowMapping {
        let key = key_for(session, vtcr);
        let Translated::Mapped(right) =
            session
                .service
                .translate(&session.worker, &key, IPA, AccessKind::Read, &ABORT)
        else {
            panic!("mapped")
        };
        ShadowMapping {
            pa_base: right.pa_base + 0x5000,
            ..right
        }
    }

    /// What the check says of `answer` to a read of IPA under `vtcr`.
    fn check_read(
        session: &mut Session<'_, '_>,
        vtcr: u64,
        answer: ShadowMapping,
    ) -> Option<Check> {
        session.check_answer(
            VTTBR,
            vtcr,
            IPA,
            AccessKind::Read,
            &ABORT,
            &Translated::Mapped(answer),
        )
    }

    /// Any line, through a real session with --check: never a panic, and
    /// exactly one JSON object out (modest case count).
    #[test]
    fn any_line_gives_one_json_answer() {
        let (path, leaf) = table_file("fuzz");
        let options = options(&path, true);
        std::fs::remove_file(&path).unwrap();
        let mut storage = Vec::new();
        let memslots = options.machine.memslots(&mut storage).unwrap();
        let l0 = initial_l0(&options, &memslots).unwrap();
        // `TestRunner::run` takes an `Fn`: the session is borrowed per case.
        let session = std::cell::RefCell::new(Session::new(&options, memslots, &l0).unwrap());
        let hexes = [
            format!("{BASE:#x}"),
            format!("{VTTBR:#x}"),
            format!("{VTCR:#x}"),
            format!("{IPA:#x}"),
            format!("{leaf:#x}"),
            "0x8000_0000".to_string(),
            "0x0".to_string(),
            "0xffffffffffffffff".to_string(),
        ];
        let ops = ["translate", "write", "tlbi", "l0_unmap", "stats"];
        let keys = [
            "vttbr", "vtcr", "ipa", "access", "far", "addr", "value", "op_name", "xt", "size",
            "change",
        ];
        let texts = [
            "read",
            "write",
            "exec",
            "IPAS2E1IS",
            "VMALLS12E1",
            "ALLE1OS",
            "unmap",
            "write_protect",
        ];
        let strategy = (
            0..ops.len(),
            proptest::collection::vec(
                (0..keys.len(), 0..hexes.len(), 0..texts.len(), 0..3u8),
                0..7,
            ),
        );
        let mut runner = TestRunner::new(Config {
            cases: 400,
            ..Config::default()
        });
        runner
            .run(&strategy, |(op, fields)| {
                let mut body = vec![format!("\"op\":\"{}\"", ops[op])];
                for (k, h, t, kind) in fields {
                    let value = match kind {
                        0 => format!("\"{}\"", hexes[h]),
                        1 => format!("\"{}\"", texts[t]),
                        _ => format!("{}", h * 4096),
                    };
                    body.push(format!("\"{}\":{value}", keys[k]));
                }
                let line = format!("{{{}}}", body.join(","));
                let mut out = String::new();
                let good = session.borrow_mut().process(&line, &mut out);
                let value: Value = serde_json::from_str(&out).expect("one JSON object");
                assert_eq!(value["ok"].as_bool(), Some(good), "{line} -> {out}");
                Ok(())
            })
            .unwrap();
    }
}

/// The checker against the real service on random traces: the service is
/// correct as far as its own tests go, so a checker that reports "stale"
/// on any of these traces reports something a TLB could hold (or found a
/// service bug): both are worth a failure.
#[cfg(test)]
mod random_traces {
    use super::*;
    use crate::args::command;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    const BASE: u64 = 0x4000_0000;
    /// 4K from level 0, 48 bits, with hardware AF and dirty management
    /// (HA, HD: L1 is shown HAFDBS 2).
    const VTCR: u64 = 0x8005_3590 | (1 << 21) | (1 << 22);
    const IPA: u64 = 0x1000_0000;
    const DBM: u64 = 1 << 51;
    const AF: u64 = 1 << 10;
    /// AF, inner shareable, Normal write-back.
    const ATTRS: u64 = (1 << 10) | (0b11 << 8) | (0xf << 2);
    const RW: u64 = ATTRS | (0b11 << 6);
    const RO: u64 = ATTRS | (0b01 << 6);
    /// Root, level 1, level 2, and two level-3 tables (T1, T2).
    const LEVEL2: u64 = BASE + 0x2000;
    const T1: u64 = BASE + 0x3000;
    const T2: u64 = BASE + 0x4000;

    fn level2_slot() -> u64 {
        LEVEL2 + 8 * ((IPA >> 21) & 511)
    }

    fn leaf_slot(table: u64, page: u64) -> u64 {
        table + 8 * (((IPA >> 12) + page) & 511)
    }

    fn image() -> Vec<u8> {
        let mut bytes = vec![0u8; 5 * 4096];
        let mut put = |address: u64, value: u64| {
            let at = (address - BASE) as usize;
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        put(BASE, (BASE + 0x1000) | 3);
        put(BASE + 0x1000, LEVEL2 | 3);
        put(level2_slot(), T1 | 3);
        for page in 0..4 {
            put(leaf_slot(T1, page), (0x8000_0000 + page * 0x1000) | RW | 3);
        }
        bytes
    }

    /// One event of a random trace.
    fn event() -> impl Strategy<Value = String> {
        // L1 runs its L2s with VMID 1 or 2 on the same tables: two
        // contexts, each TLBI reaching one of them.
        let translate = (1..3u64, 0..4u64, prop::bool::ANY).prop_map(|(vmid, page, write)| {
            format!(
                r#"{{"op":"translate","vttbr":"{:#x}","vtcr":"{VTCR:#x}","ipa":"{:#x}","access":"{}"}}"#,
                (vmid << 48) | BASE,
                IPA + page * 0x1000,
                if write { "write" } else { "read" }
            )
        });
        let leaf_write = (
            prop::sample::select(vec![T1, T2]),
            0..4u64,
            prop::sample::select(vec![
                0x8000_0000 | RW | 3,
                0x8000_1000 | RO | 3,
                0x8123_4000 | RW | 3,
                0x8123_5000 | RO | 3,
                // Clean (read-only, DBM) and without AF: the service's
                // walks set AF and dirty in memory.
                0x8000_2000 | (RO & !AF) | DBM | 3,
                0,
            ]),
        )
            .prop_map(|(table, page, value)| {
                format!(
                    r#"{{"op":"write","addr":"{:#x}","value":"{value:#x}"}}"#,
                    leaf_slot(table, page)
                )
            });
        let table_write = prop::sample::select(vec![
            T1 | 3,
            T2 | 3,
            0x8020_0000 | RW | 1,
            0x8040_0000 | RO | 1,
            0,
        ])
        .prop_map(|value| {
            format!(
                r#"{{"op":"write","addr":"{:#x}","value":"{value:#x}"}}"#,
                level2_slot()
            )
        });
        let tlbi = (
            1..3u64,
            prop::sample::select(vec!["IPAS2E1IS", "IPAS2LE1IS", "RIPAS2E1IS", "RIPAS2LE1IS", "VMALLS12E1IS", "ALLE1IS"]),
            0..5u64,
        )
            .prop_map(|(vmid, name, page)| {
                let page_number = (IPA >> 12) + page;
                // Range forms: 4K granule, SCALE 0, NUM 0: two pages.
                let xt = if name.starts_with('R') {
                    (0b01 << 46) | page_number
                } else {
                    page_number
                };
                format!(
                    r#"{{"op":"tlbi","op_name":"{name}","xt":"{xt:#x}","vttbr":"{:#x}","vtcr":"{VTCR:#x}"}}"#,
                    (vmid << 48) | BASE
                )
            });
        let l0 = (
            prop::sample::select(vec![
                0x8000_0000u64,
                0x8000_1000,
                0x8123_4000,
                0x8020_0000,
                0x8040_1000,
            ]),
            prop::bool::ANY,
        )
            .prop_map(|(ipa, unmap)| {
                format!(
                    r#"{{"op":"l0_unmap","ipa":"{ipa:#x}","size":"0x1000","change":"{}"}}"#,
                    if unmap { "unmap" } else { "write_protect" }
                )
            });
        prop_oneof![
            4 => translate,
            2 => leaf_write,
            1 => table_write,
            2 => tlbi,
            1 => l0,
        ]
    }

    /// What a batch of random traces gave.
    #[derive(Debug, Default)]
    struct Tally {
        compared: usize,
        allowed: usize,
        stale: usize,
        unchecked: usize,
    }

    /// Runs `cases` random traces, each on a fresh L1 memory and service
    /// with `--check` and `extra` arguments; `judge` sees every output
    /// line (and may fail the case).
    fn random_traces(
        name: &str,
        extra: &[&str],
        cases: u32,
        judge: impl Fn(&str, bool, &str) -> Result<(), TestCaseError>,
    ) -> Tally {
        let path = std::env::temp_dir().join(format!(
            "shadow-replay-random-{name}-{}.bin",
            std::process::id()
        ));
        std::fs::write(&path, image()).unwrap();
        let mem = format!("{}@{BASE:#x}", path.display());
        let mut args = vec![
            "shadow-replay",
            "--mem",
            &mem,
            "--l0",
            "0x0:0x100000000:0x1000000000",
            "--mmfr1",
            "0x2",
            "--check",
        ];
        args.extend_from_slice(extra);
        let matches = command().try_get_matches_from(args).unwrap();
        let options = Options::from_matches(&matches).unwrap();
        let mut runner = TestRunner::new(Config {
            cases,
            ..Config::default()
        });
        let tally = std::cell::RefCell::new(Tally::default());
        let result = runner.run(&prop::collection::vec(event(), 1..48), |trace| {
            // A fresh L1 memory (the file, loaded again) and service per
            // trace.
            let mut storage = Vec::new();
            let machine = Machine::from_args(&matches).unwrap();
            let memslots = machine.memslots(&mut storage).unwrap();
            let l0 = initial_l0(&options, &memslots).unwrap();
            let mut session = Session::new(&options, memslots, &l0).unwrap();
            for line in &trace {
                let mut out = String::new();
                let good = session.process(line, &mut out);
                let mut t = tally.borrow_mut();
                t.compared += usize::from(out.contains("\"check\""));
                t.allowed += usize::from(out.contains("\"stale_allowed\""));
                t.stale += usize::from(out.contains("\"check\":\"stale\""));
                t.unchecked += usize::from(out.contains("\"check\":\"unchecked\""));
                drop(t);
                judge(line, good, &out)?;
            }
            Ok(())
        });
        std::fs::remove_file(&path).unwrap();
        result.unwrap();
        tally.into_inner()
    }

    #[test]
    fn the_real_service_never_gives_a_stale_answer() {
        let tally = random_traces("service", &[], 96, |line, good, out| {
            prop_assert!(good, "{line}\n -> {out}");
            Ok(())
        });
        // The traces do exercise the checker's judgement.
        assert!(
            tally.compared > 500 && tally.allowed > 20 && tally.stale == 0 && tally.unchecked == 0,
            "{tally:?}"
        );
    }

    /// The same traces with TLBIs acknowledged but not applied: the check
    /// finds stale answers, and every failed line is one.
    #[test]
    fn ignored_tlbis_give_stale_answers_the_check_reports() {
        let tally = random_traces("ignored", &["--ignore-tlbis"], 96, |line, good, out| {
            prop_assert!(
                good || out.contains("\"check\":\"stale\""),
                "{line}\n -> {out}"
            );
            Ok(())
        });
        // The precise oracle calls far more of them stale than the "some
        // uncovered write on the walk" rule did (about 150 of 900 compared
        // answers in these traces), and never gives up on one.
        assert!(tally.stale > 40 && tally.unchecked == 0, "{tally:?}");
    }
}
