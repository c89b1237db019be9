//! Links the bare-metal hv binary as a position-independent image with its
//! own linker script; host builds need nothing.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("aarch64-unknown-none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=-pie");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-znotext");
        println!("cargo:rustc-link-arg-bins=--pack-dyn-relocs=none");
    }
}
