//! ipc's integration tests as one test crate: each `tests/<file>.rs` is
//! the module `<file>` here (its tests are `<file>::<test>`), so the crate's
//! code is instantiated and linked once, not once per file. One file's tests:
//! `cargo test -p ipc --test integration tlbi_reference::`. Cargo.toml sets
//! `autotests = false`: a new file in tests/ must be named below (or be a
//! `[[test]]` of its own); xtask's `every_test_file_is_built` checks that.
#![cfg(not(loom))]

mod client_replies;
mod tlbi_reference;
