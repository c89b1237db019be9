//! walker's integration tests as one test crate: each `tests/<file>.rs` is
//! the module `<file>` here (its tests are `<file>::<test>`), so the crate's
//! code is instantiated and linked once, not once per file. One file's tests:
//! `cargo test -p walker --test integration properties::`. Cargo.toml sets
//! `autotests = false`: a new file in tests/ must be named below (or be a
//! `[[test]]` of its own); xtask's `every_test_file_is_built` checks that.
#![cfg(not(loom))]

mod common;

mod batch;
mod batch_aliasing;
mod block_beyond_output_size;
mod config;
mod faults;
mod formats;
mod geometry;
mod haft;
mod host_changing;
mod host_denied;
mod leaf;
mod memslots;
mod path_hint;
mod properties;
mod review53;
mod review55;
mod trapped_syndrome_merge;
mod updates;
mod visit;
