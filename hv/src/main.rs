//! The hv image. On aarch64-unknown-none the entry point is `_start` in
//! `hv::arch::boot` (an arm64 Image header); anywhere else this binary only
//! says where hv runs.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
use hv as _;

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("hv runs only on aarch64-unknown-none: build it with `cargo xtask build-hv`, boot it with `cargo xtask run`");
    std::process::exit(2);
}
