//! Review 18: `Service::install` keeps an existing shadow leaf only when
//! it equals the new composition (`unmap_other_shapes`, review 17 R17-1),
//! so the common re-install (a hit, a second vCPU on the same page) stays
//! one lookup only if every leaf `map` can write reads back through
//! `lookup` as exactly the `ShadowMapping` it was made from. A field lost
//! or altered on the way would make every re-install an unmap (break,
//! TLB invalidation, record removal) and a remap, with no test failing.
#![cfg(not(loom))]

use ipc::message::{MemShareability, Permissions};
use shadow_mmu::compose::{HostExecute, MemAttr, ShadowMapping, BLOCK_1G, BLOCK_2M, PAGE_SIZE};
use shadow_mmu::shadow_table::{
    HeapFramePool, MapOutcome, NoHardwareTlb, ShadowConfig, ShadowTable,
};

#[test]
fn every_encodable_leaf_reads_back_as_itself_and_reinstalls_as_already_present() {
    for xnx in [true, false] {
        let config = ShadowConfig { xnx, pa_bits: 48 };
        let host = HostExecute::from_xnx(xnx);
        let table = ShadowTable::new(
            HeapFramePool::new(64, 1 << 40).unwrap(),
            NoHardwareTlb,
            config,
        )
        .unwrap();
        let mut n = 0u64;
        for size in [PAGE_SIZE, BLOCK_2M, BLOCK_1G] {
            for perms in 0..16u8 {
                for attr in 0..16u8 {
                    for shareability in [
                        MemShareability::NonShareable,
                        MemShareability::OuterShareable,
                        MemShareability::InnerShareable,
                    ] {
                        // Each leaf on its own 1 GiB of L2 IPA.
                        n += 1;
                        let m = ShadowMapping {
                            l2_ipa_base: n << 30,
                            pa_base: 0x80_0000_0000 + (n << 30),
                            size,
                            perms: host.encodable(Permissions::from_bits(perms).unwrap()),
                            mem_attr: MemAttr::from_bits(attr),
                            shareability,
                        };
                        assert_eq!(table.map(&m), Ok(MapOutcome::Installed), "{m:?}");
                        assert_eq!(table.lookup(m.l2_ipa_base), Some(m), "xnx {xnx}");
                        assert_eq!(table.map(&m), Ok(MapOutcome::AlreadyPresent), "{m:?}");
                        assert_eq!(table.unmap_range(m.l2_ipa_base, m.size), 1);
                    }
                }
            }
        }
    }
}
