//! The service's `L0Denied` answer to an L2 fault, the portable part:
//! what hv says when it stops on one (`arch::nested`'s `l0_denied`).
//!
//! `L0Denied` means hv's own stage 2 of L1 maps an L1 IPA but denies an
//! access there that L1 did nothing wrong to make: L2's access to its
//! data, which L1's stage 2 allows, or the service walk's own read or
//! AF/dirty update (L1's VTCR_EL2.HA/HD) of a descriptor of L1's stage-2
//! tables. In the Arm ARM's terms a stage-2 fault at L0, on L1's memory,
//! for hv to resolve, never a fault to inject into L1. Resuming L2 without
//! changing hv's stage 2 would fault again, forever. hv denies L1 an
//! access to its memory only where it means to catch it (the fault-rate
//! demo's dirty log write-protects L1's data pages and resolves the
//! writes, L2's and the walk's updates alike, `nested::fault_rate`); any
//! other denial is hv's own failure, and it stops with the line built
//! here. The same goes for a read hv's software AT walk is denied
//! ([`at_failed_line`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ipc::{AccessKind, DeniedAccess, L0Denial};
use shadow_mmu::compose::{L0Mapping, MemoryType, Permissions};

/// What `access` is, for hv's line.
pub const fn access_name(access: AccessKind) -> &'static str {
    match access {
        AccessKind::Read => "read",
        AccessKind::Write => "write",
        AccessKind::Execute => "instruction fetch at EL1",
        AccessKind::ExecuteEl0 => "instruction fetch at EL0",
        AccessKind::CacheMaintenance => "cache maintenance by VA at EL1",
        AccessKind::CacheMaintenanceEl0 => "cache maintenance by VA at EL0",
    }
}

/// `permissions` in words ("read, write"; "no access").
pub fn permissions_named(permissions: Permissions) -> String {
    let names: Vec<&str> = [
        (Permissions::READ, "read"),
        (Permissions::WRITE, "write"),
        (Permissions::EXEC_EL0, "execute at EL0"),
        (Permissions::EXEC_EL1, "execute at EL1"),
    ]
    .into_iter()
    .filter(|&(p, _)| permissions.contains(p))
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "no access".into()
    } else {
        names.join(", ")
    }
}

/// A leaf's size in words (4 KiB, 2 MiB, 1 GiB; bytes otherwise).
fn size_named(size: u64) -> String {
    match size {
        0x1000 => "4 KiB".into(),
        0x20_0000 => "2 MiB".into(),
        0x4000_0000 => "1 GiB".into(),
        other => format!("{other:#x}-byte"),
    }
}

/// Why hv's stage 2 of L1 denies the access, from its leaf now (`None`:
/// it has no valid leaf there, so the leaf the service composed with
/// changed since).
pub fn reason(mapping: Option<&L0Mapping>) -> String {
    let Some(m) = mapping else {
        return "hv's stage 2 of L1 has no valid leaf there now (it changed after the service composed)".into();
    };
    let device = if matches!(m.mem_attr().memory_type(), MemoryType::Device(_)) {
        ", Device memory (never executable)"
    } else {
        ""
    };
    format!(
        "hv's stage 2 of L1 allows {} there (its {} leaf at L1 IPA {:#x}, PA {:#x}{device}), and hv resolves no such denial",
        permissions_named(m.permissions()),
        size_named(m.size()),
        m.ipa_base(),
        m.pa_base(),
    )
}

/// hv's line when it stops on `denial`, the answer to L2's fault at
/// `l2_ipa`: of L2's access there, or of the walk's access to L1's table.
pub fn failed_line(l2_ipa: u64, denial: &L0Denial, mapping: Option<&L0Mapping>) -> String {
    let table_access = match denial.denied {
        DeniedAccess::L2Data(access) => {
            return format!(
                "hv: nested: FAILED: L0 denied L2's {} at L2 IPA {l2_ipa:#x} (L1 IPA {:#x}): {}",
                access_name(access),
                denial.l1_ipa,
                reason(mapping)
            )
        }
        DeniedAccess::L1TableRead => "read",
        DeniedAccess::L1TableUpdate => "AF/dirty update",
    };
    format!(
        "hv: nested: FAILED: L0 denied the shadow walk's {table_access} of L1's stage-2 table descriptor at L1 IPA {:#x} (L2's fault at L2 IPA {l2_ipa:#x}): {}",
        denial.l1_ipa,
        reason(mapping)
    )
}

/// hv's line when it stops because its own stage 2 of L1 denies its
/// software walk for L1's AT at `va` the read of the descriptor at L1 IPA
/// `l1_ipa` (L1's stage-1 or stage-2 table).
pub fn at_failed_line(va: u64, l1_ipa: u64, mapping: Option<&L0Mapping>) -> String {
    format!(
        "hv: nested: FAILED: L0 denied the read of L1's translation table descriptor at L1 IPA {l1_ipa:#x} (L1's AT of VA {va:#x}): {}",
        reason(mapping)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_mmu::compose::{MemAttr, MemShareability};

    fn mapping(size: u64, perms: Permissions, mem_attr: u8) -> L0Mapping {
        L0Mapping::new(
            0x4040_0000,
            0x5f00_0000,
            size,
            perms,
            MemAttr::from_bits(mem_attr),
            MemShareability::InnerShareable,
        )
        .unwrap()
    }

    #[test]
    fn the_line_names_the_access_both_addresses_and_the_leaf() {
        let denial = L0Denial {
            l1_ipa: 0x4040_1008,
            denied: DeniedAccess::L2Data(AccessKind::Read),
        };
        let leaf = mapping(0x1000, Permissions::none(), 0b1111);
        assert_eq!(
            failed_line(0x4000_1008, &denial, Some(&leaf)),
            "hv: nested: FAILED: L0 denied L2's read at L2 IPA 0x40001008 (L1 IPA 0x40401008): hv's stage 2 of L1 allows no access there (its 4 KiB leaf at L1 IPA 0x40400000, PA 0x5f000000), and hv resolves no such denial"
        );
        let write = L0Denial {
            denied: DeniedAccess::L2Data(AccessKind::Write),
            ..denial
        };
        let read_only = mapping(0x20_0000, Permissions::READ, 0b1111);
        assert!(failed_line(0x4000_1008, &write, Some(&read_only))
            .contains("L2's write at L2 IPA 0x40001008 (L1 IPA 0x40401008): hv's stage 2 of L1 allows read there (its 2 MiB leaf"));
        assert!(failed_line(0x4000_1008, &write, None)
            .ends_with("has no valid leaf there now (it changed after the service composed)"));
    }

    #[test]
    fn a_fetch_from_device_memory_says_so() {
        let denial = L0Denial {
            l1_ipa: 0x4040_0000,
            denied: DeniedAccess::L2Data(AccessKind::ExecuteEl0),
        };
        let all = Permissions::READ
            .union(Permissions::WRITE)
            .union(Permissions::EXEC_EL0)
            .union(Permissions::EXEC_EL1);
        let line = failed_line(0x8_0000, &denial, Some(&mapping(0x1000, all, 0b0000)));
        assert!(line.contains("L2's instruction fetch at EL0"), "{line}");
        assert!(
            line.contains("allows read, write, execute at EL0, execute at EL1 there"),
            "{line}"
        );
        assert!(line.contains("Device memory (never executable)"), "{line}");
    }

    #[test]
    fn a_denied_table_access_names_the_walk_the_descriptor_and_the_leaf() {
        let read = L0Denial {
            l1_ipa: 0x4080_2018,
            denied: DeniedAccess::L1TableRead,
        };
        let leaf = mapping(0x1000, Permissions::none(), 0b1111);
        assert_eq!(
            failed_line(0x10_0000, &read, Some(&leaf)),
            "hv: nested: FAILED: L0 denied the shadow walk's read of L1's stage-2 table descriptor at L1 IPA 0x40802018 (L2's fault at L2 IPA 0x100000): hv's stage 2 of L1 allows no access there (its 4 KiB leaf at L1 IPA 0x40400000, PA 0x5f000000), and hv resolves no such denial"
        );
        let update = L0Denial {
            denied: DeniedAccess::L1TableUpdate,
            ..read
        };
        let read_only = mapping(0x1000, Permissions::READ, 0b1111);
        let line = failed_line(0x10_0000, &update, Some(&read_only));
        assert!(
            line.contains("the shadow walk's AF/dirty update of L1's stage-2 table descriptor at L1 IPA 0x40802018")
                && line.contains("allows read there"),
            "{line}"
        );
        assert!(
            !line.contains("L2's read") && !line.contains("L2's write"),
            "{line}"
        );
        let at = at_failed_line(0x1234_5000, 0x4080_2018, Some(&leaf));
        assert!(
            at.starts_with("hv: nested: FAILED: L0 denied the read of L1's translation table descriptor at L1 IPA 0x40802018 (L1's AT of VA 0x12345000): hv's stage 2 of L1 allows no access there"),
            "{at}"
        );
    }

    #[test]
    fn every_access_and_size_has_a_name() {
        for access in [
            AccessKind::Read,
            AccessKind::Write,
            AccessKind::Execute,
            AccessKind::ExecuteEl0,
            AccessKind::CacheMaintenance,
            AccessKind::CacheMaintenanceEl0,
        ] {
            assert!(!access_name(access).is_empty());
        }
        assert_eq!(size_named(0x4000_0000), "1 GiB");
        assert_eq!(size_named(0x10000), "0x10000-byte");
        assert_eq!(permissions_named(Permissions::WRITE), "write");
    }
}
