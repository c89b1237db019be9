//! The service around the cache: context recycling, L0 unmaps through the
//! reverse map, the ipc adapter, and the memory budget under hostile L1
//! behaviour (touching every page, TLBI storms).
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::message::{
    decode_reply, AccessKind as IpcAccess, ContextKey as IpcKey, Emulation, InvalidateRequest,
    L0Change, L0UnmapRequest, Record, Reply, Request, TranslateOutcome, TranslateRequest,
    Unshadowable, VcpuId,
};
use ipc::tlbi::{InvalidateScope, IpaRange, Shareability, Tlbi, TlbiOp, TlbiParams};
use ipc::VmidWidth;
use shadow_mmu::service::{HostBackend, Retry, Service, ServiceError, Translated};
use shadow_mmu::shadow_table::{FramePool, ShadowConfig, TlbEvent};
use walker::{AccessKind, Granule};

#[test]
fn a_full_directory_recycles_without_failing() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000, 0x8000_1000, 3, RW);
    let s = service_with(mem, 8 << 20, 2);
    let w = s.worker();
    let keys = [l1.key(1), l1.key(2), l1.key(3)];
    let mut vmids = Vec::new();
    for key in &keys[..2] {
        assert!(pa_of(&read(&s, &w, key, 0x1000), 0x1000).is_some());
        vmids.push(s.shadow_vmid(&w, key).unwrap());
    }
    s.backend().take_tlb_log();
    // The third context recycles one of the two (round robin: the first).
    assert!(pa_of(&read(&s, &w, &keys[2], 0x1000), 0x1000).is_some());
    assert_eq!(s.contexts(), 2);
    assert_eq!(s.stats().recycled_contexts, 1);
    assert_eq!(s.shadow_vmid(&w, &keys[0]), None, "victim gone");
    let reused = s.shadow_vmid(&w, &keys[2]).unwrap();
    assert_eq!(reused, vmids[0], "the victim's shadow VMID is reused");
    // Before the reuse, the victim's VMID was invalidated in hardware.
    let log = s.backend().take_tlb_log();
    assert!(log.contains(&(reused, TlbEvent::All)), "{log:?}");
    // The successor starts clean: only what it translated.
    assert!(s.shadow_lookup(&w, &keys[2], 0x1000).is_some());
    let guard = w.pin();
    assert!(s.lookup(&keys[0], 0x1000, &guard).is_none());
    drop(guard);
    // And the victim comes back on demand, recycling another.
    assert!(pa_of(&read(&s, &w, &keys[0], 0x1000), 0x1000).is_some());
    assert_eq!(s.stats().recycled_contexts, 2);
}

#[test]
fn l0_unmap_removes_exactly_the_shadow_entries_built_on_the_range() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    // 16 pages at L2 IPA 0x1000_0000.. -> L1 IPA 0x8000_0000 + 2 pages each
    // (so the L1 side interleaves), and one 2 MiB block.
    for i in 0..16u64 {
        l1.map(0x1000_0000 + i * 0x1000, 0x8000_0000 + i * 0x2000, 3, RW);
    }
    l1.map(0x2000_0000, 0x8020_0000, 2, RW);
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    for i in 0..16u64 {
        read(&s, &w, &key, 0x1000_0000 + i * 0x1000);
    }
    read(&s, &w, &key, 0x2000_0000);
    // L0 unmaps L1 IPAs [0x8000_4000, 0x8000_a000): pages 2..=4, and a
    // 4 KiB piece of the block's L1 range.
    let range = IpaRange::new(0x8000_4000, 0x8000_a000).unwrap();
    let removed = s.l0_unmap(&w, range, L0Change::Unmap);
    assert_eq!(removed, 3);
    let block = IpaRange::new(0x8020_1000, 0x8020_2000).unwrap();
    assert_eq!(s.l0_unmap(&w, block, L0Change::WriteProtect), 1);
    for i in 0..16u64 {
        let ipa = 0x1000_0000 + i * 0x1000;
        let l1_ipa = 0x8000_0000 + i * 0x2000;
        let expect_gone = range.overlaps(l1_ipa, 0x1000);
        assert_eq!(
            s.shadow_lookup(&w, &key, ipa).is_none(),
            expect_gone,
            "page {i}"
        );
        // The walk results themselves are still valid and cached.
        let guard = w.pin();
        assert!(s.lookup(&key, ipa, &guard).is_some());
    }
    assert!(s.shadow_lookup(&w, &key, 0x2000_0000).is_none());
    // They come back on the next fault, from the cache.
    let hits = s.stats().hits;
    assert!(pa_of(&read(&s, &w, &key, 0x1000_2000), 0x1000_2000).is_some());
    assert_eq!(s.stats().hits, hits + 1);
}

/// L2's virtual address in the translate requests (FAR_EL2).
const L2_VA: u64 = 0xffff_8000_0012_3000;

/// A translate request as a vCPU handler sends it: a level-3 translation
/// fault, reported as a data abort (or an instruction abort for a fetch)
/// from a lower EL, FnV clear, WnR set for a write, with the FAR.
fn translate_request(
    key: &L1Tables,
    vmid: u16,
    ipa: u64,
    access: IpcAccess,
    far: u64,
    seq: u64,
) -> Record {
    let fetch = matches!(access, IpcAccess::Execute | IpcAccess::ExecuteEl0);
    let ec: u32 = if fetch { 0x20 } else { 0x24 };
    let wnr = u32::from(access == IpcAccess::Write) << 6;
    Request::Translate(TranslateRequest {
        context: IpcKey {
            vmid,
            vttbr: key.root | (u64::from(vmid) << 48),
            vtcr: key.vtcr(),
        },
        l2_ipa: ipa,
        access,
        esr: ec << 26 | 1 << 25 | wnr | 0x07,
        far,
    })
    .encode(VcpuId(3), seq)
}

fn translate_record(key: &L1Tables, ipa: u64, access: IpcAccess, seq: u64) -> Record {
    translate_request(key, 1, ipa, access, L2_VA | (ipa & 0xfff), seq)
}

fn reply(record: Record) -> (u64, Reply) {
    let envelope = decode_reply(&record).expect("well-formed reply");
    assert_eq!(envelope.vcpu, VcpuId(3));
    (envelope.seq, envelope.message)
}

#[test]
fn the_adapter_answers_ipc_records() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x5000, 0x8000_9000, 3, RO);
    l1.map(0x6000, MMIO_BASE, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let (seq, r) = reply(s.answer(&w, &translate_record(&l1, 0x5008, IpcAccess::Read, 10)));
    assert_eq!(seq, 10);
    let Reply::Translate(TranslateOutcome::Mapped(m)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.pa, PA_OFFSET + 0x8000_9000);
    assert_eq!(m.size_log2, 12);
    // A write to the read-only page: the permission fault to inject.
    let (_, r) = reply(s.answer(&w, &translate_record(&l1, 0x5008, IpcAccess::Write, 11)));
    let Reply::Translate(TranslateOutcome::Inject(i)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(i.esr & 0x3f, 0x0f);
    assert_eq!(i.hpfar, 0x5 << 4);
    // MMIO on behalf of L2: where to emulate the access.
    let (seq, r) = reply(s.answer(&w, &translate_record(&l1, 0x6000, IpcAccess::Read, 12)));
    assert_eq!(seq, 12);
    assert_eq!(
        r,
        Reply::Translate(TranslateOutcome::Emulate(Emulation { l1_ipa: MMIO_BASE }))
    );
    // An invalidation, acknowledged with what it dropped.
    let tlbi = Tlbi {
        op: TlbiOp::Vmalls12e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    let request =
        InvalidateRequest::new(l1.root | (1 << 48), l1.vtcr(), VmidWidth::Bits16, tlbi, 0).unwrap();
    let record = Request::Invalidate(request).encode(VcpuId(3), 13);
    let (_, r) = reply(s.answer(&w, &record));
    assert!(
        matches!(r, Reply::InvalidateAck(a) if a.entries_dropped >= 2),
        "{r:?}"
    );
    assert!(s.shadow_lookup(&w, &l1.key(1), 0x5000).is_none());
    // An L0 unmap.
    let record = Request::L0Unmap(L0UnmapRequest {
        range: IpaRange::new(0x8000_9000, 0x8000_a000).unwrap(),
        change: L0Change::Unmap,
    })
    .encode(VcpuId(3), 14);
    let (_, r) = reply(s.answer(&w, &record));
    assert!(matches!(r, Reply::L0UnmapAck(_)), "{r:?}");
    // A malformed record: an error reply, nothing else happens.
    let mut bad = translate_record(&l1, 0x5000, IpcAccess::Read, 15);
    bad.header.version = 999;
    let (seq, r) = reply(s.answer(&w, &bad));
    assert_eq!(seq, 15);
    assert!(matches!(r, Reply::Error(_)), "{r:?}");
}

/// The service loop as hv and the bench harness run it: an ipc `Poller`
/// (which decodes records itself) answering with `Service::reply`, a vCPU
/// on another thread calling through its rings.
#[test]
fn a_poller_service_loop_answers_with_reply() {
    // A loop that panics leaves the vCPU waiting for its reply with no
    // deadline: bounded, so that fails the test (review 20 R20-3).
    within(std::time::Duration::from_secs(60), poller_loop);
}

fn poller_loop() {
    use ipc::{ClientError, Endpoint, Poller, RingBuffer, SpinDoorbell, VcpuClient};
    use std::sync::atomic::{AtomicBool, Ordering};

    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x5000, 0x8000_9000, 3, RW);
    let s = service(mem);
    let requests = RingBuffer::<8>::new();
    let replies = RingBuffer::<8>::new();
    let bell = SpinDoorbell;
    let stop = AtomicBool::new(false);
    let context = IpcKey {
        vmid: 1,
        vttbr: l1.root | (1 << 48),
        vtcr: l1.vtcr(),
    };
    let fault = |context, ipa| TranslateRequest {
        context,
        l2_ipa: ipa,
        access: IpcAccess::Read,
        esr: 0x24 << 26 | 1 << 25 | 0x07,
        far: L2_VA | (ipa & 0xfff),
    };
    /// Stops the loop however the scope is left: a failed assertion below
    /// unwinds through the scope, which joins the loop's thread.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            let w = s.worker();
            let mut endpoints =
                [Endpoint::new(VcpuId(3), requests.ring(), replies.ring(), &bell).unwrap()];
            let mut poller = Poller::new(&mut endpoints, 4);
            poller.run(
                &bell,
                |envelope| s.reply(&w, envelope),
                || !stop.load(Ordering::Acquire),
            );
        });
        let mut vcpu =
            VcpuClient::new(VcpuId(3), requests.ring(), replies.ring(), &bell, &bell).unwrap();
        let Ok(TranslateOutcome::Mapped(m)) = vcpu.translate(fault(context, 0x5008)) else {
            panic!("not mapped")
        };
        assert_eq!(m.pa, PA_OFFSET + 0x8000_9000);
        let tlbi = Tlbi {
            op: TlbiOp::Vmalls12e1,
            shareability: Shareability::InnerShareable,
            nxs: false,
        };
        let ack = vcpu
            .invalidate(
                InvalidateRequest::new(context.vttbr, context.vtcr, VmidWidth::Bits16, tlbi, 0)
                    .unwrap(),
            )
            .unwrap();
        assert!(ack.entries_dropped >= 2, "{ack:?}");
        // A VMID that is not the one VTTBR_EL2 names: refused, as `answer`
        // refuses it.
        let wrong = IpcKey { vmid: 2, ..context };
        assert!(
            matches!(
                vcpu.translate(fault(wrong, 0x5008)),
                Err(ClientError::Rejected(_))
            ),
            "a wrong VMID must be rejected"
        );
    });
    // The loop really translated (one walk, cached again after the flush
    // only if asked): the shadow entry went with the flush.
    let w = s.worker();
    assert!(s.shadow_lookup(&w, &l1.key(1), 0x5000).is_none());
    assert_eq!(s.stats().walks, 1);
}

#[test]
fn hostile_l1_stays_within_the_budget() {
    // A small budget: 4 contexts in 2 MiB.
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let pages = 4096u64;
    for i in 0..pages {
        l1.map(i << 12, 0x8000_0000 + (i << 12), 3, RW);
    }
    let s = service_with(mem, 2 << 20, 4);
    let budget = s.config().budget;
    assert!(budget.worst_case_bytes() <= budget.bytes);
    let w = s.worker();
    let within = |what: &str| {
        let (leaves, paths) = s.cache_entries(&w);
        let c = budget.capacity;
        assert!(
            // Each cache's buckets and its stash (review 38 R38-1).
            leaves <= c.contexts * (c.leaves_per_context + shadow_mmu::cache::LEAF_STASH),
            "{what}: {leaves} leaves"
        );
        assert!(
            paths <= c.contexts * c.paths_per_context,
            "{what}: {paths} paths"
        );
        assert!(s.shadow_frames() <= budget.frames, "{what}: frames");
        assert!(
            s.shadow_leaves() <= budget.shadow_leaves,
            "{what}: shadow leaves"
        );
    };
    // Touch every page, in six VMIDs (more contexts than allowed).
    let mut rng = Rng(42);
    for round in 0..3 {
        for vmid in 1..=6u16 {
            for i in 0..pages {
                let ipa = (i << 12) | rng.below(4096);
                match read(&s, &w, &l1.key(vmid), ipa) {
                    Translated::Mapped(m) => {
                        assert_eq!(m.pa_base, PA_OFFSET + 0x8000_0000 + (i << 12))
                    }
                    Translated::Retry(Retry::Throttled) => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            within("touching every page");
        }
    }
    // A TLBI storm: thousands of single-page and whole-VMID TLBIs mixed
    // with translations.
    let ipas2 = Tlbi {
        op: TlbiOp::Ipas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    for n in 0..20_000u64 {
        let vmid = 1 + (n % 6) as u16;
        let page = rng.below(pages);
        if n % 1000 == 999 {
            s.invalidate(&w, vmid, &InvalidateScope::Vmid);
        } else {
            let scope = ipas2.decode(page, TlbiParams::default()).unwrap();
            s.invalidate(&w, vmid, &scope);
        }
        let t = s.translate(&w, &l1.key(vmid), page << 12, AccessKind::Write, &ABORT);
        assert!(
            matches!(
                t,
                Translated::Mapped(_) | Translated::Retry(Retry::Throttled)
            ),
            "{t:?}"
        );
    }
    within("after the TLBI storm");
    let stats = s.stats();
    assert!(
        stats.evictions > 0 && stats.recycled_contexts > 0,
        "{stats:?}"
    );
    assert_eq!(stats.invalidations, 20_000);
}

/// The injected fault carries the request's FAR (FnV = 0); a request whose
/// syndrome sets FnV (RES0 for a stage-2 fault) gets an error reply, so no
/// fault with FnV = 1 and FAR 0 is ever injected for a stage-2 fault.
#[test]
fn injected_faults_carry_the_far_of_the_request() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x5000, 0x8000_9000, 3, RO);
    let s = service(mem);
    let w = s.worker();
    let far = L2_VA | 0x8;
    let record = translate_request(&l1, 1, 0x5008, IpcAccess::Write, far, 1);
    let (_, r) = reply(s.answer(&w, &record));
    let Reply::Translate(TranslateOutcome::Inject(i)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(i.far, far);
    assert_eq!(i.esr & (1 << 10), 0, "FnV clear: the FAR is valid");
    assert_eq!(i.esr >> 26, 0x24);
    assert_ne!(i.esr & (1 << 6), 0, "WnR");
    // FnV set in the request: malformed, answered with an error reply.
    let mut record = translate_request(&l1, 1, 0x5008, IpcAccess::Write, far, 2);
    let esr = u32::from_ne_bytes(record.body[32..36].try_into().unwrap()) | 1 << 10;
    record.body[32..36].copy_from_slice(&esr.to_ne_bytes());
    let (seq, r) = reply(s.answer(&w, &record));
    assert_eq!(seq, 2);
    assert!(
        matches!(
            r,
            Reply::Error(ipc::DecodeError::Invalid {
                field: ipc::Field::Far,
                ..
            })
        ),
        "{r:?}"
    );
    // A translation fault (nothing mapped) on an instruction fetch.
    let record = translate_request(&l1, 1, 0x9000, IpcAccess::Execute, far, 3);
    let (_, r) = reply(s.answer(&w, &record));
    let Reply::Translate(TranslateOutcome::Inject(i)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(i.esr >> 26, 0x20);
    assert_eq!(i.esr & 0x3c, 0x04, "translation fault");
    assert_eq!((i.far, i.hpfar), (far, 0x9 << 4));
}

/// An L1 IPA with nothing behind it (neither L1 memory nor a device L0
/// emulates): the external abort to deliver, with the FAR of the request.
#[test]
fn an_access_outside_l1_memory_gets_an_external_abort() {
    let outside = 0x2_0000_0000; // beyond L1 memory [0, 4 GiB) and MMIO [4, 5 GiB)
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x7000, outside, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let far = L2_VA | 0x10;
    for (access, ec, wnr, seq) in [
        (IpcAccess::Read, 0x24, 0, 1),
        (IpcAccess::Write, 0x24, 1 << 6, 2),
        (IpcAccess::Execute, 0x20, 0, 3),
    ] {
        let record = translate_request(&l1, 1, 0x7010, access, far, seq);
        let (got_seq, r) = reply(s.answer(&w, &record));
        assert_eq!(got_seq, seq);
        let Reply::Translate(TranslateOutcome::ExternalAbort(a)) = r else {
            panic!("{access:?}: {r:?}")
        };
        assert_eq!(a.l1_ipa, outside + 0x10, "{access:?}");
        assert_eq!(
            a.injection.esr,
            ec << 26 | 1 << 25 | wnr | 0x10,
            "{access:?}: external abort, not on a walk, FnV clear"
        );
        assert_eq!(a.injection.far, far);
        assert_eq!(a.injection.hpfar, 0x7 << 4);
    }
    // Nothing was installed for it.
    assert!(s.shadow_lookup(&w, &l1.key(1), 0x7000).is_none());
}

/// A walk result the shadow cannot hold: here L0 places L1's memory beyond
/// the host's 44-bit PA space (no real L0 can; the shadow still refuses
/// rather than truncate the address).
#[test]
fn an_unshadowable_result_says_why() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x5000, 0x8000_9000, 3, RW);
    let mut config = config(16 << 20, 8);
    config.features = features_with_pa_range(0b100);
    let beyond_host = 1 << 44;
    let backend = HostBackend::recording(
        config.budget.frames,
        ShadowConfig {
            xnx: true,
            pa_bits: 44,
        },
    )
    .expect("pool");
    let s = Service::new(config, mem, l0_map_at(beyond_host), backend).unwrap();
    let w = s.worker();
    let (_, r) = reply(s.answer(&w, &translate_record(&l1, 0x5008, IpcAccess::Read, 1)));
    assert_eq!(
        r,
        Reply::Translate(TranslateOutcome::Unshadowable(Unshadowable::PaOutOfRange {
            pa: beyond_host + 0x8000_9000
        }))
    );
}

/// The shadow's input size is the host's PA size (a 44-bit host gets a
/// 44-bit shadow, `ShadowConfig::input_bits`): an L1 shown more than that
/// could translate L2 IPAs no shadow can map, so the service refuses it
/// at once, naming both sizes; shown as much, it runs, and its L2 IPAs up
/// to the top of the 44-bit space are shadowed.
#[test]
fn l1_is_shown_no_more_pa_than_the_shadow_takes() {
    let host = ShadowConfig {
        xnx: true,
        pa_bits: 44,
    };
    let shown_48 = config(16 << 20, 8);
    let backend = HostBackend::new(shown_48.budget.frames, host).expect("pool");
    let Err(e) = Service::new(shown_48, L1Memory::new(), l0_map(), backend) else {
        panic!("an L1 shown 48 bits on a 44-bit host is refused")
    };
    assert_eq!(
        e,
        ServiceError::ShadowSmallerThanL1 {
            l1_pa_bits: 48,
            shadow_bits: 44
        }
    );
    assert!(e.to_string().contains("show L1 at most 44 bits"), "{e}");

    // Shown 44 bits, L1's 16K-granule stage 2 (40-bit IA) maps its top
    // page: translated and shadowed.
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K16);
    let top = (1u64 << 40) - 0x4000;
    l1.map(top, 0x8000_8000, 3, RW);
    let mut shown_44 = config(16 << 20, 8);
    shown_44.features = features_with_pa_range(0b100);
    let backend = HostBackend::new(shown_44.budget.frames, host).expect("pool");
    let s = Service::new(shown_44, mem, l0_map(), backend).expect("L1 shown 44 bits");
    let w = s.worker();
    let t = read(&s, &w, &l1.key(1), top + 0x18);
    assert_eq!(pa_of(&t, top + 0x18), Some(PA_OFFSET + 0x8000_8018));
    assert!(s.shadow_lookup(&w, &l1.key(1), top).is_some());
}

/// A 42-bit host: each context's shadow starts at level 1 from 8
/// concatenated tables (an aligned run of the pool), which the budget
/// sets aside for every slot (`Budget::split_for`): four contexts of an L1
/// shown 40 bits each get their own aligned start tables, and every page
/// translates.
#[test]
fn a_42_bit_host_gives_every_context_its_start_tables() {
    let host = ShadowConfig::for_pa_range(0b011, true).unwrap();
    assert_eq!(host.empty_table_frames(), 9);
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for i in 0..4u64 {
        l1.map(0x10_0000 + i * 0x1000, 0x8000_0000 + i * 0x1000, 3, RW);
    }
    let mut config = config(16 << 20, 4);
    config.budget = shadow_mmu::budget::Budget::split_for(16 << 20, 4, &host).expect("budget");
    config.features = features_with_pa_range(0b010);
    let backend = HostBackend::new(config.budget.frames, host).expect("pool");
    let s = Service::new(config, mem, l0_map(), backend).expect("L1 shown 40 bits");
    assert!(
        s.backend().pool().frames_in_use() >= 4 * 9,
        "every slot's shadow made"
    );
    let w = s.worker();
    let mut roots = Vec::new();
    for vmid in 1..=4u16 {
        let ipa = 0x10_0000 + u64::from(vmid - 1) * 0x1000;
        let t = read(&s, &w, &l1.key(vmid), ipa + 8);
        assert_eq!(
            pa_of(&t, ipa + 8),
            Some(PA_OFFSET + 0x8000_0008 + ipa - 0x10_0000)
        );
        let (_, root) = s.shadow_root(&w, &l1.key(vmid)).expect("a shadow");
        assert_eq!(root % (8 * 4096), 0, "{root:#x}: aligned to its 8 tables");
        roots.push(root);
    }
    roots.sort_unstable();
    roots.dedup();
    assert_eq!(roots.len(), 4);
    assert_eq!(s.stats().recycled_contexts, 0);
}

/// A request that breaks the new field rules is answered with an error
/// naming the field, and never reaches the service.
#[test]
fn malformed_translate_fields_get_error_replies() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x5000, 0x8000_9000, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let mut fnv_with_far = translate_record(&l1, 0x5008, IpcAccess::Read, 1);
    fnv_with_far.body[33] |= 1 << 2; // ESR bit 10 (FnV)
    let mut write_as_read = translate_record(&l1, 0x5008, IpcAccess::Read, 2);
    write_as_read.body[32] |= 1 << 6; // ESR WnR
    let mut external_abort = translate_record(&l1, 0x5008, IpcAccess::Read, 3);
    external_abort.body[32] = external_abort.body[32] & !0x3f | 0x10; // DFSC
    for (record, field) in [
        (fnv_with_far, ipc::Field::Far),
        (write_as_read, ipc::Field::Access),
        (external_abort, ipc::Field::Syndrome),
    ] {
        let (_, r) = reply(s.answer(&w, &record));
        assert_eq!(
            r,
            Reply::Error(ipc::DecodeError::Invalid {
                kind: ipc::RecordKind::Translate as u16,
                field
            })
        );
    }
    assert_eq!(
        s.stats().misses + s.stats().hits,
        0,
        "nothing was translated"
    );
}
