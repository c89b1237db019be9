//! loom-tests' models as one test crate: each `tests/<file>.rs` is
//! the module `<file>` here (its tests are `<file>::<test>`), so the crate's
//! code is instantiated and linked once, not once per file. One file's tests:
//! `cargo test --release -p loom-tests --test models shadow_l0::`
//! (with the loom RUSTFLAGS: README.md). Cargo.toml sets
//! `autotests = false`: a new file in tests/ must be named below (or be a
//! `[[test]]` of its own); xtask's `every_test_file_is_built` checks that.
//! The models run on the harness's parallel test threads, each `loom::model`
//! on its own thread with its own execution state, as the tests of one file
//! always did.
#![cfg(loom)]

mod shadow_support;

mod hv_private_view;
mod hv_psci;
mod hv_remote_clear;
mod hv_sgis;
mod hv_spi_active;
mod hv_spi_place_two_words;
mod hv_spi_view;
mod hv_spi_view_answers;
mod ipc_channel;
mod ipc_doorbell;
mod ipc_poller;
mod ipc_ring;
mod shadow_generation_memory;
mod shadow_hv_handshake;
mod shadow_l0;
mod shadow_l0_concurrent;
mod shadow_leaf_move;
mod shadow_race;
mod shadow_range_reclaim;
mod shadow_reclaim;
mod shadow_reclaim_recycle;
mod shadow_recycle;
mod shadow_retired_insert;
mod shadow_stash;
mod shadow_worker_counters;
mod stage2_shadow_table;
mod walker_memslots;
mod walker_update;
