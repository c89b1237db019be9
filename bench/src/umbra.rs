//! Umbra's service as the benchmarks build it over an [`L1Fixture`].

use shadow_mmu::budget::Budget;
use shadow_mmu::compose::L0RegionMap;
use shadow_mmu::context::{ContextKey, HostVmids};
use shadow_mmu::service::{HostBackend, Service, ServiceConfig};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::{Endianness, Memslots};

use crate::shadow_baseline::{exposed_features, L1Fixture};

/// The service over a fixture's memory and L0 map, host shadow tables.
pub type UmbraService = Service<Memslots<'static>, L0RegionMap, HostBackend>;

/// A service whose budget holds `entries_per_context` 4 KiB entries in
/// each of `contexts` contexts (cache slots, shadow tables, reverse map),
/// so the budget evicts nothing a benchmark fills. With at least twice
/// as many leaf places as entries, the leaf cache's second buckets leave
/// no leaf without room in practice (none lost in 4,000 simulated runs
/// under random keys: `shadow_mmu::table`'s module documentation); the
/// nested-fault benchmarks print the evictions they see. (With one bucket
/// per leaf this was 2-4% of the leaves once review 38 keyed the hash.)
///
/// With [`HASH_SEED_VAR`] set to a number, that is the seed instead (an
/// instruction-count profile, `examples/fault_profile.rs`, then counts the
/// same probes in every run and build).
pub fn service(f: &L1Fixture, contexts: usize, entries_per_context: usize) -> UmbraService {
    let hash_seed = std::env::var(HASH_SEED_VAR)
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            // A random key per run, as a deployment has.
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u64)
        });
    service_seeded(f, contexts, entries_per_context, hash_seed)
}

/// The environment variable that fixes [`service`]'s hash seed (a decimal
/// `u64`); unset or not a number, each service draws a random one.
pub const HASH_SEED_VAR: &str = "UMBRA_BENCH_HASH_SEED";

/// [`service`] with the hash seed given: the same buckets in every run
/// (`examples/hit_count.rs` counts instructions, which must not depend on
/// where a run's seed happened to put the leaves).
pub fn service_seeded(
    f: &L1Fixture,
    contexts: usize,
    entries_per_context: usize,
    hash_seed: u64,
) -> UmbraService {
    let frames_needed = contexts * (entries_per_context.div_ceil(512) + 8);
    let mut bytes = 1 << 22;
    let budget = loop {
        if let Ok(b) = Budget::split(bytes, contexts) {
            if b.capacity.leaves_per_context >= 2 * entries_per_context
                && b.frames >= frames_needed
                && b.shadow_leaves >= contexts * entries_per_context
            {
                break b;
            }
        }
        bytes *= 2;
    };
    let config = ServiceConfig {
        features: exposed_features(),
        hash_seed,
        budget,
        first_shadow_vmid: 100,
        host_vmids: HostVmids {
            width: ipc::VmidWidth::Bits16,
            l1_vmid: 1,
        },
    };
    let backend = HostBackend::new(budget.frames, ShadowConfig::default()).expect("pool");
    Service::new(config, f.memory, f.l0.clone(), backend).expect("valid shadow VMIDs")
}

/// Umbra's key for the context the baselines know by `k`.
pub fn context_key(k: &ipc::message::ContextKey) -> ContextKey {
    ContextKey::new(k.vmid, k.vttbr, k.vtcr, Endianness::Little)
}
