//! A strict structural check of a flattened device tree, run before the
//! `fdt` crate sees it: that crate assumes a well-formed structure block and
//! panics (unwrap, slice indexing) on some malformed ones. After this check
//! passes, every token, name and property it reads lies inside the blob.
//! FDT_NOP tokens are refused (see `check`).
//! (Devicetree Specification 0.4, chapter 5.)

use core::fmt;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_SIZE: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// The deepest nesting accepted, counting the root as 1. The `fdt` crate
/// walks the tree (`all_nodes`, which discovery and `find_compatible`
/// use) with a 64-entry parent array it indexes without a check, and its
/// node skipping recurses once per level on hv's stack; 32 levels is far
/// beyond any real board (QEMU virt and SoC trees nest 3 to 5 deep).
pub const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    TooShort,
    BadMagic,
    /// totalsize larger than the memory given, or smaller than the header.
    BadTotalSize(u32),
    UnsupportedVersion(u32),
    /// A block (structure or strings) lies outside the blob or is misaligned.
    BadBlock(&'static str),
    /// The structure block is malformed at this offset within it.
    BadStructure {
        offset: usize,
        what: &'static str,
    },
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("device tree shorter than its header"),
            Self::BadMagic => f.write_str("no device tree magic (0xd00dfeed)"),
            Self::BadTotalSize(n) => write!(f, "device tree totalsize {n} is impossible"),
            Self::UnsupportedVersion(v) => write!(f, "device tree version {v} is not 16 or 17"),
            Self::BadBlock(b) => write!(f, "device tree {b} block lies outside the tree"),
            Self::BadStructure { offset, what } => {
                write!(f, "device tree structure block, offset {offset:#x}: {what}")
            }
        }
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The total size a device tree header claims (to size the slice to check).
pub fn total_size(header: &[u8]) -> Result<usize, DtbError> {
    if header.len() < HEADER_SIZE {
        return Err(DtbError::TooShort);
    }
    if be32(header, 0) != Some(MAGIC) {
        return Err(DtbError::BadMagic);
    }
    let total = be32(header, 4).ok_or(DtbError::TooShort)?;
    if (total as usize) < HEADER_SIZE {
        return Err(DtbError::BadTotalSize(total));
    }
    Ok(total as usize)
}

/// A string at the start of `bytes`: NUL-terminated UTF-8; its length.
fn c_string(bytes: &[u8]) -> Option<usize> {
    let len = bytes.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&bytes[..len]).ok()?;
    Some(len)
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// Checks `blob` (exactly the device tree, or longer) from header to the
/// last token.
pub fn check(blob: &[u8]) -> Result<(), DtbError> {
    let total = total_size(blob)?;
    if total > blob.len() {
        return Err(DtbError::BadTotalSize(total as u32));
    }
    let blob = &blob[..total];
    let field = |at| be32(blob, at).ok_or(DtbError::TooShort);
    let (off_struct, off_strings) = (field(8)? as usize, field(12)? as usize);
    let (version, last_compatible) = (field(20)?, field(24)?);
    let (size_strings, size_struct) = (field(32)? as usize, field(36)? as usize);
    if version < 16 || last_compatible > 17 {
        return Err(DtbError::UnsupportedVersion(version));
    }
    let block = |offset: usize, size: usize, name| {
        let end = offset.checked_add(size).ok_or(DtbError::BadBlock(name))?;
        if offset < HEADER_SIZE || end > total {
            return Err(DtbError::BadBlock(name));
        }
        Ok(&blob[offset..end])
    };
    // The memory reservation block: 16-byte (address, size) entries up
    // to an all-zero one, 8-byte aligned, inside the tree (the `fdt` crate
    // slices the blob at its offset without a check).
    let off_rsvmap = field(16)? as usize;
    if off_rsvmap < HEADER_SIZE || !off_rsvmap.is_multiple_of(8) {
        return Err(DtbError::BadBlock("memory reservation"));
    }
    let mut entry = off_rsvmap;
    loop {
        let bytes = blob
            .get(entry..entry + 16)
            .ok_or(DtbError::BadBlock("memory reservation"))?;
        if bytes.iter().all(|&b| b == 0) {
            break;
        }
        entry += 16;
    }
    let structure = block(off_struct, size_struct, "structure")?;
    let strings = block(off_strings, size_strings, "strings")?;
    if off_struct % 4 != 0 {
        return Err(DtbError::BadBlock("structure"));
    }

    let bad = |offset, what| DtbError::BadStructure { offset, what };
    let mut at = 0usize;
    let mut depth = 0usize;
    // Properties must come before a node's children.
    let mut children_started = false;
    let mut seen_root = false;
    loop {
        let token = be32(structure, at).ok_or(bad(at, "runs past the end without FDT_END"))?;
        let token_at = at;
        at += 4;
        match token {
            BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(bad(token_at, "a second root node"));
                }
                let name = structure.get(at..).ok_or(bad(at, "truncated node"))?;
                let len = c_string(name).ok_or(bad(at, "node name not NUL-terminated UTF-8"))?;
                at = align4(at + len + 1).ok_or(bad(at, "overflow"))?;
                if depth == MAX_DEPTH {
                    return Err(bad(token_at, "nodes nested deeper than 32 levels"));
                }
                depth += 1;
                seen_root = true;
                children_started = false;
            }
            END_NODE => {
                if depth == 0 {
                    return Err(bad(token_at, "FDT_END_NODE without a node"));
                }
                depth -= 1;
                children_started = true;
            }
            PROP => {
                if depth == 0 {
                    return Err(bad(token_at, "property outside every node"));
                }
                if children_started {
                    return Err(bad(token_at, "property after a child node"));
                }
                let len = be32(structure, at).ok_or(bad(at, "truncated property"))? as usize;
                let name_offset =
                    be32(structure, at + 4).ok_or(bad(at, "truncated property"))? as usize;
                at += 8;
                let value_end = at
                    .checked_add(len)
                    .ok_or(bad(at, "property length overflows"))?;
                if value_end > structure.len() {
                    return Err(bad(at, "property value runs past the structure block"));
                }
                let name = strings
                    .get(name_offset..)
                    .ok_or(bad(token_at, "property name outside the strings"))?;
                let name_len = c_string(name)
                    .ok_or(bad(token_at, "property name not NUL-terminated UTF-8"))?;
                let cells = matches!(
                    &name[..name_len],
                    b"#address-cells" | b"#size-cells" | b"#interrupt-cells"
                );
                if cells && len != 4 {
                    return Err(bad(token_at, "a #...-cells property is not one cell"));
                }
                at = align4(value_end).ok_or(bad(at, "overflow"))?;
            }
            // The `fdt` crate stops at a NOP between properties or nodes and
            // then asserts; libfdt writers (QEMU, U-Boot) do not emit them.
            NOP => return Err(bad(token_at, "FDT_NOP tokens are not supported")),
            END => {
                if depth != 0 || !seen_root {
                    return Err(bad(token_at, "FDT_END inside a node or before the root"));
                }
                return Ok(());
            }
            _ => return Err(bad(token_at, "unknown token")),
        }
        if depth == 0 && token == END_NODE {
            // After the root closes only NOPs and FDT_END may follow.
            children_started = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_dt::{self, GuestConfig};
    use crate::platform::{Conduit, Platform, Region};
    extern crate std;

    const QEMU: &[u8] = include_bytes!("../tests/data/virt-gicv3-smp4.dtb");

    /// Everything hv does with a device tree, as the boot CPU would.
    fn use_tree(blob: &[u8]) {
        let Ok(fdt) = fdt::Fdt::new(blob) else { return };
        let _ = crate::platform::Options::from_fdt(&fdt);
        let _ = crate::platform::find_console(&fdt);
        if let Ok(platform) = Platform::discover(&fdt) {
            let memory = [Region {
                base: 0x4000_0000,
                size: 0x1000_0000,
            }];
            let config = GuestConfig {
                memory: &memory,
                bootargs: "x",
                initrd: None,
                psci: Conduit::Hvc,
                console_clock_hz: None,
                cpus: guest_dt::GuestCpus::Host,
            };
            let _ = guest_dt::build(&fdt, &platform, &config);
        }
    }

    #[test]
    fn real_trees_pass() {
        check(QEMU).unwrap();
        check(include_bytes!("../tests/data/virt-gicv2-smp1.dtb")).unwrap();
        assert_eq!(total_size(QEMU), Ok(QEMU.len()));
    }

    /// The memory reservation block must end (an all-zero entry) inside
    /// the tree: the `fdt` crate would otherwise slice past it.
    #[test]
    fn memory_reservation_block_is_checked() {
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&[vm_fdt::FdtReserveEntry::new(
            0x4800_0000,
            0x1000,
        )
        .unwrap()])
        .unwrap();
        let root = w.begin_node("").unwrap();
        w.end_node(root).unwrap();
        let good = w.finish().unwrap();
        check(&good).unwrap();
        let fdt = fdt::Fdt::new(&good).unwrap();
        assert_eq!(fdt.memory_reservations().count(), 1);
        for offset in [0u32, 41, good.len() as u32, !7] {
            let mut bad = good.clone();
            bad[16..20].copy_from_slice(&offset.to_be_bytes());
            assert_eq!(
                check(&bad),
                Err(DtbError::BadBlock("memory reservation")),
                "offset {offset:#x}"
            );
        }
        // No terminating entry before the end of the tree.
        let mut unterminated = good.clone();
        let rsv = u32::from_be_bytes(good[16..20].try_into().unwrap()) as usize;
        let struct_at = u32::from_be_bytes(good[8..12].try_into().unwrap()) as usize;
        for byte in &mut unterminated[rsv..struct_at] {
            *byte = 0xff;
        }
        unterminated[16..20].copy_from_slice(&((good.len() - 8) as u32 & !7).to_be_bytes());
        assert_eq!(
            check(&unterminated),
            Err(DtbError::BadBlock("memory reservation"))
        );
    }

    #[test]
    fn header_errors() {
        assert_eq!(check(&QEMU[..39]), Err(DtbError::TooShort));
        let mut bad = QEMU.to_vec();
        bad[0] = 0;
        assert_eq!(check(&bad), Err(DtbError::BadMagic));
        assert_eq!(
            check(&QEMU[..QEMU.len() - 1]),
            Err(DtbError::BadTotalSize(QEMU.len() as u32))
        );
        let mut bad = QEMU.to_vec();
        bad[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(check(&bad), Err(DtbError::BadBlock("structure")));
    }

    /// A tree whose root holds `extra` nested nodes (a QEMU-like board).
    fn nested_tree(extra: usize) -> std::vec::Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let mut open = std::vec::Vec::new();
        for level in 0..extra {
            open.push(w.begin_node(&std::format!("nest{level}")).unwrap());
        }
        for node in open.into_iter().rev() {
            w.end_node(node).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    /// R7-5: the `fdt` crate panics (index out of bounds in `all_nodes`)
    /// on a tree 64 levels deep, so the check bounds the depth: 32 levels
    /// pass and are walked without a panic, 33 and 64 are refused.
    #[test]
    fn deep_trees_are_refused_before_the_fdt_crate_sees_them() {
        let deepest = nested_tree(MAX_DEPTH - 1);
        check(&deepest).unwrap();
        let fdt = fdt::Fdt::new(&deepest).unwrap();
        assert_eq!(fdt.all_nodes().count(), MAX_DEPTH);
        use_tree(&deepest);
        for extra in [MAX_DEPTH, 63] {
            let error = check(&nested_tree(extra)).unwrap_err();
            assert!(
                matches!(
                    error,
                    DtbError::BadStructure {
                        what: "nodes nested deeper than 32 levels",
                        ..
                    }
                ),
                "{extra} nested nodes: {error}"
            );
        }
        let panicked = std::panic::catch_unwind(|| {
            let blob = nested_tree(63);
            fdt::Fdt::new(&blob).unwrap().all_nodes().count()
        });
        assert!(
            panicked.is_err(),
            "the fdt crate no longer panics at 64 levels: MAX_DEPTH may be revisited"
        );
    }

    /// Every single-byte corruption of a real tree (three patterns per
    /// byte) is either refused by the check or used by hv without a panic.
    #[test]
    fn corrupted_trees_never_panic() {
        let mut accepted = 0;
        for at in 0..QEMU.len() {
            for pattern in [0x00u8, 0xff, 0x03] {
                let mut blob = QEMU.to_vec();
                if blob[at] == pattern {
                    continue;
                }
                blob[at] = pattern;
                if check(&blob).is_ok() {
                    accepted += 1;
                    let result = std::panic::catch_unwind(|| use_tree(&blob));
                    assert!(
                        result.is_ok(),
                        "panic on a checked tree (byte {at:#x} = {pattern:#x})"
                    );
                }
            }
        }
        assert!(
            accepted > 0,
            "some corruptions (of values) are still valid trees"
        );
    }

    /// Random multi-byte corruptions (a fixed xorshift sequence).
    #[test]
    fn randomly_corrupted_trees_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for case in 0..4000 {
            let mut blob = QEMU.to_vec();
            for _ in 0..1 + next() % 8 {
                let at = (next() % blob.len() as u64) as usize;
                blob[at] = next() as u8;
            }
            if check(&blob).is_ok() {
                accepted += 1;
                let result = std::panic::catch_unwind(|| use_tree(&blob));
                assert!(result.is_ok(), "panic on a checked tree, case {case}");
            }
        }
        assert!(accepted > 0);
    }
}
