//! A driver for instruction-count profiles of the nested-fault path
//! (valgrind's callgrind or cachegrind): `fault_profile <hit|walk|kvm>
//! [pages] [passes]` runs `passes` passes of `pages` faults through
//! `bench::nested_fault`'s harness, one vCPU, after an L0 unmap (`hit`:
//! every Umbra fault a walk-cache hit), after a VMID flush (`walk`: every
//! fault walks), or KVM-style's fault path (`kvm`, after a flush).
//! Collect only the faults with
//! `valgrind --tool=callgrind --toggle-collect='*fault_pass*' target/release/examples/fault_profile hit`
//! and divide the instructions by `pages x passes`.

use bench::nested_fault::{Design, Emptied, Harness};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "hit".into());
    let pages: u64 = args.next().map_or(1024, |a| a.parse().expect("pages"));
    let passes: u32 = args.next().map_or(8, |a| a.parse().expect("passes"));
    let (design, how) = match mode.as_str() {
        "hit" => (Design::UmbraInline, Emptied::L0Unmap),
        "walk" => (Design::UmbraInline, Emptied::VmidFlush),
        "kvm" => (Design::KvmStyle, Emptied::VmidFlush),
        other => panic!("mode {other}: hit, walk or kvm"),
    };
    let harness = Harness::new(pages);
    for _ in 0..passes {
        harness.empty(design, how);
        fault_pass(&harness, design);
    }
    println!(
        "{mode}: {} faults, {:?}",
        pages * u64::from(passes),
        harness.umbra_stats()
    );
}

/// The faults alone, for `--toggle-collect`.
#[inline(never)]
fn fault_pass(harness: &Harness, design: Design) {
    harness.pass(design, 1);
}
