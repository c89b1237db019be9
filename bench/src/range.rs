//! The state the `shadow_invalidate_range` benchmark builds
//! (`benches/shadow_mmu.rs`), shared with `examples/range_count.rs`, which
//! counts the instructions of the same calls: one context with the first
//! GiB of L2 pages cached and shadowed ([`RANGE_DENSE`]) plus
//! [`RANGE_SPARSE`] pages in the next GiB, in Umbra's service and in the
//! KVM-style baseline, and the RIPAS2E1IS operands the benchmark issues.

use std::ops::Range;
use std::sync::Arc;

use ipc::tlbi::{Granule, InvalidateScope, RangeOperand, Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::compose::{resolve, Composition, HostExecute, L1Translation, ShadowMapping};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Translated, Worker};
use shadow_mmu::shadow_table::{HeapFramePool, NoHardwareTlb};
use walker::{AbortContext, AbortOrigin, AccessKind};

use crate::shadow_baseline::{KvmStyle, L1Fixture};
use crate::umbra::{context_key, service, service_seeded, UmbraService};

/// The KVM-style baseline on heap frames, without hardware TLB maintenance.
pub type Kvm = KvmStyle<Arc<HeapFramePool>, NoHardwareTlb>;

/// A KVM-style baseline with `frames` shadow-table frames.
pub fn kvm(frames: usize) -> Kvm {
    KvmStyle::new(
        Arc::new(HeapFramePool::new(frames, 1 << 40).expect("pool")),
        NoHardwareTlb,
    )
}

/// L1's walk and the composed shadow mapping of each of the fixture's first
/// `pages` pages in the context of `vmid`, by page number: what a baseline
/// installs.
pub fn composed(f: &L1Fixture, vmid: u16, pages: u64) -> Vec<(L1Translation, ShadowMapping)> {
    let w = f.walker(vmid);
    (0..pages)
        .map(|i| {
            let ipa = L1Fixture::l2_ipa(i);
            let t = w.walk(&f.memory, ipa, AccessKind::Read).expect("mapped");
            let leaf = L1Translation::from_translation(&t);
            let Ok(Composition::Mapped(c)) = resolve(&leaf, ipa, &f.l0, HostExecute::PerLevel)
            else {
                panic!("L1 memory")
            };
            (leaf, c.shadow)
        })
        .collect()
}

const ABORT: AbortContext = AbortContext {
    far: None,
    origin: AbortOrigin::Access,
    trapped_esr: None,
};

/// Translates `ipa` in the context of `key` (a read), which must map.
pub fn translate_ok(service: &UmbraService, worker: &Worker, key: &ContextKey, ipa: u64) {
    match service.translate(worker, key, ipa, AccessKind::Read, &ABORT) {
        Translated::Mapped(_) => {}
        other => panic!("translate {ipa:#x}: {other:?}"),
    }
}

/// Translates the fixture's `pages` (page numbers) in each context of
/// `keys`, so that each is cached and shadowed there.
pub fn fill_contexts(
    service: &UmbraService,
    worker: &Worker,
    keys: &[ContextKey],
    pages: impl Iterator<Item = u64> + Clone,
) {
    for key in keys {
        for i in pages.clone() {
            translate_ok(service, worker, key, L1Fixture::l2_ipa(i));
        }
    }
}

/// The fixture pages cached (and shadowed) in each context a benchmark
/// invalidates, as ranges of page numbers: what a restore puts back.
#[derive(Debug)]
pub struct CachedPages(pub Vec<Range<u64>>);

impl CachedPages {
    /// Pages `0..pages`.
    pub fn first(pages: u64) -> CachedPages {
        CachedPages(std::iter::once(0..pages).collect())
    }

    /// Pages `0..pages` except `left_out` (ascending).
    pub fn first_except(pages: u64, left_out: &[u64]) -> CachedPages {
        let mut ranges = Vec::new();
        let mut start = 0;
        for &page in left_out {
            ranges.push(start..page);
            start = page + 1;
        }
        ranges.push(start..pages);
        CachedPages(ranges)
    }

    /// Every cached page.
    pub fn all(&self) -> impl Iterator<Item = u64> + Clone + '_ {
        self.0.iter().flat_map(Clone::clone)
    }

    /// The cached pages with an L2 IPA in `[start, start + len)`.
    pub fn within(&self, start: u64, len: u64) -> impl Iterator<Item = u64> + Clone + '_ {
        let base = L1Fixture::l2_ipa(0);
        let first = start.saturating_sub(base) / 4096;
        let end = start
            .saturating_add(len)
            .saturating_sub(base)
            .div_ceil(4096);
        self.0
            .iter()
            .flat_map(move |r| r.start.max(first)..r.end.min(end))
    }

    /// The cached pages a TLBI of `scope` covers.
    pub fn covered_by(&self, scope: &InvalidateScope) -> impl Iterator<Item = u64> + Clone + '_ {
        let (start, len) = match scope {
            InvalidateScope::Ipa(s) => (s.range.start(), s.range.len()),
            InvalidateScope::Vmid | InvalidateScope::AllVmids => (0, u64::MAX),
        };
        self.within(start, len)
    }
}

/// Pages cached densely: the first GiB from [`L1Fixture::l2_ipa`]`(0)`.
pub const RANGE_DENSE: u64 = 1 << 18;
/// Pages cached in the second GiB, one per 64 MiB.
pub const RANGE_SPARSE: u64 = 16;

/// The (SCALE, NUM) of a range TLBI's operand naming `pages` 4 KiB pages
/// (`pages` = (NUM + 1) << (5 * SCALE + 1), NUM below 32, SCALE below 4),
/// the smallest SCALE that does; None for a count no range TLBI names.
pub fn range_tlbi_encoding(pages: u64) -> Option<(u8, u8)> {
    (0u8..4).find_map(|scale| {
        let unit = 1u64 << (5 * u32::from(scale) + 1);
        let units = pages / unit;
        (pages.is_multiple_of(unit) && (1..=32).contains(&units)).then(|| (scale, units as u8 - 1))
    })
}

/// RIPAS2E1IS of `pages` 4 KiB pages from `ipa`, no TTL hint, encoded as
/// L1 writes the operand ([`range_tlbi_encoding`]; panics for a count no
/// range TLBI names).
pub fn ripas2e1(ipa: u64, pages: u64) -> InvalidateScope {
    let (scale, num) = range_tlbi_encoding(pages).expect("a page count a range TLBI encodes");
    let operand = RangeOperand {
        granule: Some(Granule::K4),
        scale,
        num,
        ttl: 0,
        base_addr: ipa >> 12,
    };
    let tlbi = Tlbi {
        op: TlbiOp::Ripas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    let scope = tlbi
        .decode(operand.to_bits(), TlbiParams::default())
        .expect("a 4 KiB range decodes");
    match scope {
        InvalidateScope::Ipa(s) => assert_eq!((s.range.start(), s.range.len()), (ipa, pages << 12)),
        _ => unreachable!("RIPAS2E1 decodes to an IPA range"),
    }
    scope
}

/// IPAS2E1IS of the 4 KiB page holding `ipa`, no TTL hint: what L1 issues
/// page by page for a range when it does not use the range TLBIs.
pub fn ipas2e1(ipa: u64) -> InvalidateScope {
    let tlbi = Tlbi {
        op: TlbiOp::Ipas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    tlbi.decode(ipa >> 12, TlbiParams::default())
        .expect("IPAS2 operands always decode")
}

/// The range benchmark's L1 tables, cached pages and composed entries.
#[derive(Debug)]
pub struct RangeFixture {
    /// L1's tables for the two GiB.
    pub f: L1Fixture,
    /// The dense GiB and the sparse pages of the next.
    pub cached: CachedPages,
    /// Every page's composed entry (VMID 1), by page number.
    pub entries: Vec<(L1Translation, ShadowMapping)>,
}

impl RangeFixture {
    /// L1's tables mapping both GiB, and the pages cached in them.
    pub fn new() -> RangeFixture {
        let stride = (1 << 18) / RANGE_SPARSE;
        let sparse = (0..RANGE_SPARSE).map(|i| {
            let page = RANGE_DENSE + i * stride + (i * 677) % stride;
            page..page + 1
        });
        let cached = CachedPages(std::iter::once(0..RANGE_DENSE).chain(sparse).collect());
        let f = L1Fixture::new(2 * RANGE_DENSE);
        let entries = composed(&f, 1, 2 * RANGE_DENSE);
        RangeFixture { f, cached, entries }
    }

    /// Umbra's service with room for two contexts, VMID 1's context (the
    /// returned key) holding every cached page; with `hash_seed`, hashed
    /// with that seed (a deterministic run), else a random one.
    pub fn umbra(&self, hash_seed: Option<u64>) -> (UmbraService, ContextKey) {
        let entries = (RANGE_DENSE + RANGE_SPARSE) as usize;
        let service = match hash_seed {
            Some(seed) => service_seeded(&self.f, 2, entries, seed),
            None => service(&self.f, 2, entries),
        };
        let key = context_key(&self.f.key(1));
        fill_contexts(&service, &service.worker(), &[key], self.cached.all());
        (service, key)
    }

    /// The KVM-style baseline with VMID 1's context (the returned key)
    /// holding every cached page.
    pub fn kvm(&self) -> (Kvm, ipc::message::ContextKey) {
        let kvm = kvm(2 * RANGE_DENSE.div_ceil(512) as usize + 64);
        let key = self.f.key(1);
        for page in self.cached.all() {
            let (leaf, shadow) = &self.entries[page as usize];
            kvm.install(&key, leaf, shadow).expect("frames");
        }
        (kvm, key)
    }
}

impl Default for RangeFixture {
    fn default() -> RangeFixture {
        RangeFixture::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts the benchmark's cases use, and counts no range TLBI
    /// names (odd, past 32 units of every scale), which `range_count`
    /// refuses with its usage line instead of panicking (review 59).
    #[test]
    fn range_tlbi_encodings() {
        assert_eq!(range_tlbi_encoding(2), Some((0, 0)));
        assert_eq!(range_tlbi_encoding(16), Some((0, 7)));
        assert_eq!(range_tlbi_encoding(256), Some((1, 3)));
        assert_eq!(range_tlbi_encoding(4096), Some((2, 1)));
        assert_eq!(range_tlbi_encoding(RANGE_DENSE), Some((3, 3)));
        assert_eq!(range_tlbi_encoding(64), Some((0, 31)));
        for pages in [0, 1, 3, 66, 4097, 33 << 16, 1 << 22, u64::MAX] {
            assert_eq!(range_tlbi_encoding(pages), None, "{pages}");
        }
    }
}
