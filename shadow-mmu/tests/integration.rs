//! shadow-mmu's integration tests as one test crate: each `tests/<file>.rs` is
//! the module `<file>` here (its tests are `<file>::<test>`), so the crate's
//! code is instantiated and linked once, not once per file. One file's tests:
//! `cargo test -p shadow-mmu --test integration translate::`. Cargo.toml sets
//! `autotests = false`: a new file in tests/ must be named below (or be a
//! `[[test]]` of its own); xtask's `every_test_file_is_built` checks that.
//! The counting-allocator tests (`budget_bytes`, `l0_unmap_allocates_nothing`,
//! `retired_nodes_freed`, `review38_alloc`, `unmap_allocates_nothing`) are not
//! here: their `#[global_allocator]` counts every thread of the process, so
//! each stays a binary with its one test (Cargo.toml).
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

mod common;

mod aliased_rewrite_l0_unmap;
mod block_beyond_output_size;
mod burst;
mod cache_maintenance_walks;
mod context_key;
mod dense_ranges_model;
mod evicted_hit_install;
mod haft_paths;
mod injected_syndrome;
mod invalidate;
mod invalidate_params_from_registers;
mod l0_changing;
mod l0_changing_tables;
mod l0_denied;
mod l0_denied_tables;
mod l0_unmap_batch_bound;
mod l0_unmap_progress;
mod l0_unmap_spares_later_installs;
mod leaf_records;
mod leaf_round_trip;
mod model_leaf_accounting;
mod preallocated_indexes;
mod race;
mod range_detach;
mod range_differential;
mod range_invalidate;
mod reclaim;
mod reshaped_leaves;
mod review11;
mod review12;
mod review38_bucket;
mod review38_floor;
mod review38_leaf_cap;
mod review51_block_over_a_waiting_page;
mod review51_clear_own_place;
mod review51_pages_kept_in_any_order;
mod review53;
mod rewritten_entry_l0_unmap;
mod rmap_ranges;
mod service;
mod shadow_vmids;
mod shadow_vmids_of_vmid;
mod stale_device_answer;
mod start_tables_fit_the_budget;
mod stress;
mod strided_leaves;
mod tlbi_model;
mod translate;
mod unusable_budget_refused;
mod worker_counters;
