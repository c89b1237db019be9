//! Links the VMM as a static Linux executable at a user-space address
//! with its own linker script (the bare-metal target has no Linux layout).

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rustc-link-arg-bins=-static");
}
