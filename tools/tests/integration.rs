//! tools's integration tests as one test crate: each `tests/<file>.rs` is
//! the module `<file>` here (its tests are `<file>::<test>`), so the crate's
//! code is instantiated and linked once, not once per file. One file's tests:
//! `cargo test -p tools --test integration conformance::`. Cargo.toml sets
//! `autotests = false`: a new file in tests/ must be named below (or be a
//! `[[test]]` of its own); xtask's `every_test_file_is_built` checks that.

mod conformance;
mod reference_model;
mod s2walk;
mod s2walk_qemu;
mod shadow_replay;
