//! L0's stage-2 map of L1 as the replay keeps it: the regions given on the
//! command line (or the default), changed by `l0_unmap` events.

use std::collections::BTreeMap;
use std::sync::RwLock;

use ipc::message::L0Change;
use shadow_mmu::compose::{
    L0Map, L0Mapping, L0Region, L0RegionKind, L0RegionMap, MemAttr, MemShareability, Permissions,
    Unbacked, PAGE_SIZE,
};

use crate::s2walk_setup::parse_hex;

/// Without `--l0`, each `--mem` slot is L1 memory at PA = its L1 IPA + this
/// (1 TiB): a PA no L1 IPA equals, so an output shows at a glance which
/// stage produced it.
pub const DEFAULT_PA_OFFSET: u64 = 0x100_0000_0000;

/// Every permission: what `--l0` grants without a PERMS field.
pub const ALL_PERMISSIONS: Permissions = Permissions::READ
    .union(Permissions::WRITE)
    .union(Permissions::EXEC_EL0)
    .union(Permissions::EXEC_EL1);

/// One `--l0 L1IPA:SIZE:PA[:PERMS]` or `--mmio L1IPA:SIZE` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionArg(pub L0Region);

fn hex_part(part: Option<&str>, what: &str, text: &str) -> Result<u64, String> {
    let part = part.ok_or_else(|| format!("`{text}` has no {what}"))?;
    parse_hex(part).map_err(|e| format!("{what} of `{text}`: {e}"))
}

/// PERMS letters: `r` read, `w` write, `x` execute at EL1 and EL0; `-`
/// alone for none.
pub fn parse_permissions(text: &str) -> Result<Permissions, String> {
    if text == "-" {
        return Ok(Permissions::none());
    }
    if text.is_empty() {
        return Err("empty permissions (use letters r, w, x, or - for none)".to_string());
    }
    let mut perms = Permissions::none();
    for c in text.chars() {
        let p = match c {
            'r' => Permissions::READ,
            'w' => Permissions::WRITE,
            'x' => Permissions::EXEC_EL1.union(Permissions::EXEC_EL0),
            other => {
                return Err(format!(
                    "permission letter `{other}` in `{text}` is not r, w or x"
                ))
            }
        };
        if perms.contains(p) {
            return Err(format!("permission letter `{c}` given twice in `{text}`"));
        }
        perms = perms.union(p);
    }
    Ok(perms)
}

/// Permissions as letters: `r`, `w`, then `x` (EL1 and EL0), `x1` (EL1
/// only) or `x0` (EL0 only); `-` for none.
pub fn permissions_text(perms: Permissions) -> String {
    let mut text = String::new();
    if perms.contains(Permissions::READ) {
        text.push('r');
    }
    if perms.contains(Permissions::WRITE) {
        text.push('w');
    }
    match (
        perms.contains(Permissions::EXEC_EL1),
        perms.contains(Permissions::EXEC_EL0),
    ) {
        (true, true) => text.push('x'),
        (true, false) => text.push_str("x1"),
        (false, true) => text.push_str("x0"),
        (false, false) => {}
    }
    if text.is_empty() {
        text.push('-');
    }
    text
}

fn memory_region(ipa_base: u64, size: u64, pa_base: u64, perms: Permissions) -> L0Region {
    L0Region {
        ipa_base,
        size,
        kind: L0RegionKind::Memory {
            pa_base,
            perms,
            // L0 maps L1's memory Normal write-back, inner shareable (as hv does).
            mem_attr: MemAttr::NORMAL_WB,
            shareability: MemShareability::InnerShareable,
        },
    }
}

/// Checks one region alone (page alignment, no wrap), so an argument error
/// names the argument rather than a pair of regions.
fn checked(region: L0Region, text: &str) -> Result<RegionArg, String> {
    L0RegionMap::new(vec![region])
        .map(|_| RegionArg(region))
        .map_err(|_| {
            format!(
                "`{text}`: L1 IPA, size and PA must be multiples of 4 KiB, the size non-zero, \
                 and the range must not wrap around"
            )
        })
}

/// `L1IPA:SIZE:PA[:PERMS]`, hex numbers.
pub fn parse_l0_arg(text: &str) -> Result<RegionArg, String> {
    let mut parts = text.split(':');
    let ipa = hex_part(parts.next(), "L1 IPA", text)?;
    let size = hex_part(parts.next(), "size", text)?;
    let pa = hex_part(parts.next(), "PA", text)?;
    let perms = match parts.next() {
        None => ALL_PERMISSIONS,
        Some(p) => parse_permissions(p).map_err(|e| format!("`{text}`: {e}"))?,
    };
    if parts.next().is_some() {
        return Err(format!("`{text}` is not L1IPA:SIZE:PA[:PERMS]"));
    }
    checked(memory_region(ipa, size, pa, perms), text)
}

/// `L1IPA:SIZE`, hex numbers: a device L0 emulates for L1.
pub fn parse_mmio_arg(text: &str) -> Result<RegionArg, String> {
    let mut parts = text.split(':');
    let ipa = hex_part(parts.next(), "L1 IPA", text)?;
    let size = hex_part(parts.next(), "size", text)?;
    if parts.next().is_some() {
        return Err(format!("`{text}` is not L1IPA:SIZE"));
    }
    checked(
        L0Region {
            ipa_base: ipa,
            size,
            kind: L0RegionKind::Mmio,
        },
        text,
    )
}

/// The default map: each memory slot `(base, bytes)` as L1 memory at PA =
/// base + [`DEFAULT_PA_OFFSET`], widened to whole pages; slots sharing a
/// page become one region (the offset is the same for all).
pub fn default_regions(slots: &[(u64, u64)]) -> Result<Vec<L0Region>, String> {
    let mut pages: Vec<(u64, u64)> = Vec::new();
    for &(base, bytes) in slots {
        let start = base & !(PAGE_SIZE - 1);
        let end = base
            .checked_add(bytes)
            .and_then(|e| e.checked_add(PAGE_SIZE - 1))
            .map(|e| e & !(PAGE_SIZE - 1))
            .filter(|e| e.checked_add(DEFAULT_PA_OFFSET).is_some())
            .ok_or_else(|| {
                format!(
                    "memory at {base:#x} reaches past where the default L0 map can place it \
                     (PA = L1 IPA + {DEFAULT_PA_OFFSET:#x}): give --l0"
                )
            })?;
        pages.push((start, end));
    }
    pages.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in pages {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged
        .into_iter()
        .map(|(start, end)| {
            memory_region(
                start,
                end - start,
                start + DEFAULT_PA_OFFSET,
                ALL_PERMISSIONS,
            )
        })
        .collect())
}

/// L0's map of L1, changeable while the service reads it.
pub struct ReplayL0 {
    /// The current regions by L1 IPA base (disjoint, page aligned): a
    /// change touches only the regions it overlaps, O(log n + affected),
    /// so L0 dirty logging (one write protection per page) stays linear.
    current: RwLock<BTreeMap<u64, L0Region>>,
    /// As given at the start: the replay only ever takes away (unmap,
    /// write protection), so every PA a translation can give is one of
    /// these regions'.
    initial: L0RegionMap,
}

/// `region` cut to `[from, to)` (inside it), its PA moved along.
fn piece(region: &L0Region, from: u64, to: u64, kind: L0RegionKind) -> L0Region {
    L0Region {
        ipa_base: from,
        size: to - from,
        kind: match kind {
            L0RegionKind::Memory {
                pa_base,
                perms,
                mem_attr,
                shareability,
            } => L0RegionKind::Memory {
                pa_base: pa_base + (from - region.ipa_base),
                perms,
                mem_attr,
                shareability,
            },
            L0RegionKind::Mmio => L0RegionKind::Mmio,
        },
    }
}

impl ReplayL0 {
    /// Validates the regions (no overlap).
    pub fn new(regions: Vec<L0Region>) -> Result<ReplayL0, String> {
        let map = L0RegionMap::new(regions).map_err(|e| match e {
            shadow_mmu::compose::L0RegionError::Overlap { first, second } => {
                format!("L0 regions at L1 IPA {first:#x} and {second:#x} overlap")
            }
            shadow_mmu::compose::L0RegionError::Misaligned { ipa_base } => {
                format!("L0 region at L1 IPA {ipa_base:#x} is not whole pages")
            }
        })?;
        Ok(ReplayL0 {
            current: RwLock::new(map.regions().iter().map(|r| (r.ipa_base, *r)).collect()),
            initial: map,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, L0Region>> {
        // A poisoned lock only means a panic elsewhere; the map is whole.
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The current region holding `l1_ipa`.
    fn region(&self, l1_ipa: u64) -> Option<L0Region> {
        let map = self.read();
        let (_, region) = map.range(..=l1_ipa).next_back()?;
        (l1_ipa - region.ipa_base < region.size).then_some(*region)
    }

    /// How many regions the current map has (split by changes).
    #[cfg(test)]
    pub fn regions(&self) -> usize {
        self.read().len()
    }

    /// Applies L0's change to `[start, end)` (page aligned, checked by the
    /// event parser): unmapped pages are no longer L1 memory (nor devices);
    /// write-protected memory loses write permission (devices are left as
    /// they are).
    pub fn change(&self, start: u64, end: u64, change: L0Change) {
        if start >= end {
            return;
        }
        let mut map = self.current.write().unwrap_or_else(|e| e.into_inner());
        // The regions overlapping [start, end): those based below `end`
        // whose end lies above `start` (disjoint and sorted, so they are
        // the last ones of that range).
        let affected: Vec<L0Region> = map
            .range(..end)
            .rev()
            .take_while(|(_, r)| r.ipa_base + r.size > start)
            .map(|(_, r)| *r)
            .collect();
        for region in affected {
            map.remove(&region.ipa_base);
            let r_end = region.ipa_base + region.size;
            let (cut_start, cut_end) = (region.ipa_base.max(start), r_end.min(end));
            let mut keep = |r: L0Region| {
                map.insert(r.ipa_base, r);
            };
            if region.ipa_base < cut_start {
                keep(piece(&region, region.ipa_base, cut_start, region.kind));
            }
            match (change, region.kind) {
                (L0Change::Unmap, _) => {}
                (
                    L0Change::WriteProtect,
                    L0RegionKind::Memory {
                        pa_base,
                        perms,
                        mem_attr,
                        shareability,
                    },
                ) => {
                    let read_only =
                        Permissions::from_bits(perms.bits() & !Permissions::WRITE.bits())
                            .unwrap_or(Permissions::none());
                    keep(piece(
                        &region,
                        cut_start,
                        cut_end,
                        L0RegionKind::Memory {
                            pa_base,
                            perms: read_only,
                            mem_attr,
                            shareability,
                        },
                    ));
                }
                (L0Change::WriteProtect, L0RegionKind::Mmio) => {
                    keep(piece(&region, cut_start, cut_end, region.kind));
                }
            }
            if cut_end < r_end {
                keep(piece(&region, cut_end, r_end, region.kind));
            }
        }
    }

    /// Whether L0's current map backs all of `[l1_ipa, l1_ipa + size)` as
    /// memory at `pa` onwards, granting at least `perms`.
    pub fn backs(&self, l1_ipa: u64, size: u64, pa: u64, perms: Permissions) -> bool {
        let Some(end) = l1_ipa.checked_add(size) else {
            return false;
        };
        let mut at = l1_ipa;
        while at < end {
            let Some(region) = self.region(at) else {
                return false;
            };
            let L0RegionKind::Memory {
                pa_base, perms: p, ..
            } = region.kind
            else {
                return false;
            };
            if pa_base + (at - region.ipa_base) != pa + (at - l1_ipa) || !p.contains(perms) {
                return false;
            }
            at = region.ipa_base + region.size;
        }
        size > 0
    }

    /// The L1 IPA blocks `[base, base + size)` whose memory L0 placed at
    /// PA `pa_base` in the map as given at the start (several when
    /// regions alias one PA).
    pub fn initial_l1_blocks(&self, pa_base: u64, size: u64) -> Vec<(u64, u64)> {
        self.initial
            .regions()
            .iter()
            .filter_map(|r| match r.kind {
                L0RegionKind::Memory { pa_base: base, .. }
                    if pa_base >= base && pa_base - base < r.size =>
                {
                    Some((r.ipa_base + (pa_base - base), size))
                }
                _ => None,
            })
            .collect()
    }
}

impl L0Map for ReplayL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        // The block sizing of one region is `L0RegionMap`'s; it needs only
        // the region holding the address.
        let region = self.region(l1_ipa)?;
        L0RegionMap::new(vec![region]).ok()?.lookup(l1_ipa)
    }
    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        self.region(l1_ipa)
            .as_ref()
            .map_or(Unbacked::Nothing, L0Region::unbacked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l0_arguments_parse_and_refuse_what_they_should() {
        let RegionArg(r) = parse_l0_arg("0x0:0x1_0000_0000:0x10_0000_0000").unwrap();
        assert_eq!((r.ipa_base, r.size), (0, 1 << 32));
        assert!(matches!(r.kind, L0RegionKind::Memory { pa_base, perms, .. }
            if pa_base == 1 << 36 && perms == ALL_PERMISSIONS));
        let RegionArg(r) = parse_l0_arg("0x1000:0x1000:0x2000:r").unwrap();
        assert!(matches!(r.kind, L0RegionKind::Memory { perms, .. } if perms == Permissions::READ));
        for bad in [
            "0x1000:0x1000",
            "0x1000:0x1000:0x2000:q",
            "0x1000:0x1000:0x2000:rr",
            "0x1000:0x1000:0x2000:r:x",
            "0x1800:0x1000:0x2000",
            "0x1000:0:0x2000",
            "0xfffffffffffff000:0x2000:0x0",
            "zz:0x1000:0x0",
        ] {
            assert!(parse_l0_arg(bad).is_err(), "{bad}");
        }
        assert!(parse_mmio_arg("0x9000000:0x1000").is_ok());
        assert!(parse_mmio_arg("0x9000000:0x1000:0x0").is_err());
        assert_eq!(permissions_text(ALL_PERMISSIONS), "rwx");
        assert_eq!(permissions_text(Permissions::EXEC_EL1), "x1");
        assert_eq!(
            permissions_text(Permissions::READ.union(Permissions::EXEC_EL0)),
            "rx0"
        );
        assert_eq!(permissions_text(Permissions::none()), "-");
        assert_eq!(parse_permissions("-"), Ok(Permissions::none()));
    }

    #[test]
    fn default_regions_cover_each_slot_in_whole_pages_at_the_offset() {
        let regions =
            default_regions(&[(0x4000_0008, 0x10), (0x4000_0800, 0x1000), (0x8000, 8)]).unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!((regions[0].ipa_base, regions[0].size), (0x8000, 0x1000));
        assert_eq!(
            (regions[1].ipa_base, regions[1].size),
            (0x4000_0000, 0x2000)
        );
        assert!(
            matches!(regions[1].kind, L0RegionKind::Memory { pa_base, .. }
            if pa_base == 0x4000_0000 + DEFAULT_PA_OFFSET)
        );
        assert!(default_regions(&[(u64::MAX - 0xfff, 0x1000)]).is_err());
    }

    #[test]
    fn changes_split_regions_and_later_lookups_see_them() {
        let l0 = ReplayL0::new(vec![
            memory_region(0, 0x10_0000, 0x100_0000, ALL_PERMISSIONS),
            L0Region {
                ipa_base: 0x20_0000,
                size: 0x1000,
                kind: L0RegionKind::Mmio,
            },
        ])
        .unwrap();
        l0.change(0x3000, 0x5000, L0Change::WriteProtect);
        l0.change(0x8000, 0x9000, L0Change::Unmap);
        l0.change(0x20_0000, 0x20_1000, L0Change::WriteProtect);
        let write = |ipa| {
            l0.lookup(ipa)
                .map(|m| m.permissions().contains(Permissions::WRITE))
        };
        assert_eq!(write(0x2fff), Some(true));
        assert_eq!(write(0x3000), Some(false));
        assert_eq!(write(0x4fff), Some(false));
        assert_eq!(write(0x5000), Some(true));
        assert_eq!(l0.lookup(0x8000), None);
        assert_eq!(l0.unbacked(0x8000), Unbacked::Nothing);
        assert_eq!(l0.lookup(0x9000).map(|m| m.pa_base()), Some(0x100_9000));
        assert_eq!(
            l0.lookup(0x4123)
                .map(|m| m.pa_base() + (0x4123 - m.ipa_base())),
            Some(0x100_4123)
        );
        assert_eq!(l0.unbacked(0x20_0000), Unbacked::Mmio);
        l0.change(0x20_0000, 0x20_1000, L0Change::Unmap);
        assert_eq!(l0.unbacked(0x20_0000), Unbacked::Nothing);
        // What backs a block now.
        assert!(l0.backs(0x5000, 0x3000, 0x100_5000, ALL_PERMISSIONS));
        assert!(l0.backs(0x3000, 0x2000, 0x100_3000, Permissions::READ));
        assert!(!l0.backs(0x2000, 0x2000, 0x100_2000, Permissions::WRITE));
        assert!(!l0.backs(0x7000, 0x2000, 0x100_7000, Permissions::READ));
        assert!(!l0.backs(0x9000, 0x1000, 0x100_a000, Permissions::READ));
        assert!(!l0.backs(0xf_f000, 0x2000, 0x10f_f000, Permissions::READ));
        assert!(!l0.backs(0x20_0000, 0x1000, 0, Permissions::none()));
        // The initial map still names where a PA came from.
        assert_eq!(
            l0.initial_l1_blocks(0x100_8000, 0x1000),
            vec![(0x8000, 0x1000)]
        );
        assert!(l0.initial_l1_blocks(0x200_0000, 0x1000).is_empty());
    }

    /// R28-5: write-protecting every other page (L0 dirty logging) splits
    /// the map into one region per change; each change must cost only
    /// the regions it touches. 100,000 of them took minutes when every
    /// change rebuilt and re-sorted the whole map (quadratic); the bound
    /// leaves a wide margin for a loaded machine and a debug build.
    #[test]
    fn splitting_changes_cost_only_what_they_touch() {
        let l0 = ReplayL0::new(vec![memory_region(0, 1 << 32, 1 << 36, ALL_PERMISSIONS)]).unwrap();
        let started = std::time::Instant::now();
        for page in 0..100_000u64 {
            let at = page * 0x2000;
            l0.change(at, at + 0x1000, L0Change::WriteProtect);
        }
        let took = started.elapsed();
        assert_eq!(l0.regions(), 200_000);
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
        let write = |ipa: u64| {
            l0.lookup(ipa)
                .map(|m| m.permissions().contains(Permissions::WRITE))
        };
        assert_eq!(write(0x2_0000), Some(false));
        assert_eq!(write(0x2_1000), Some(true));
        assert_eq!(write(0x1_0000_0000 - 0x1000), Some(true));
        // One unmap across many pieces removes them all.
        l0.change(0x1000, 0x9000, L0Change::Unmap);
        assert_eq!(l0.regions(), 200_000 - 8);
        assert_eq!(l0.lookup(0x1000), None);
        assert_eq!(l0.lookup(0x8fff), None);
        assert_eq!(write(0), Some(false));
        assert_eq!(write(0x9000), Some(true));
    }

    /// The map after random changes against a page-by-page model.
    #[test]
    fn random_changes_agree_with_a_page_model() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        const PAGES: u64 = 64;
        let mut runner = TestRunner::new(Config {
            cases: 256,
            ..Config::default()
        });
        let change = (0..PAGES, 1..8u64, prop::bool::ANY);
        runner
            .run(&prop::collection::vec(change, 1..24), |changes| {
                let l0 = ReplayL0::new(vec![
                    memory_region(0x1000, 0x1000 * (PAGES / 2), 0x100_0000, ALL_PERMISSIONS),
                    L0Region {
                        ipa_base: 0x1000 * (PAGES / 2 + 2),
                        size: 0x1000 * 8,
                        kind: L0RegionKind::Mmio,
                    },
                ])
                .unwrap();
                // Per page: None (nothing), Some(None) device, Some(Some(w)) memory.
                let mut model: Vec<Option<Option<bool>>> = (0..PAGES)
                    .map(|p| {
                        if (1..=PAGES / 2).contains(&p) {
                            Some(Some(true))
                        } else if (PAGES / 2 + 2..PAGES / 2 + 10).contains(&p) {
                            Some(None)
                        } else {
                            None
                        }
                    })
                    .collect();
                for (first, count, unmap) in changes {
                    let last = (first + count).min(PAGES);
                    let kind = if unmap {
                        L0Change::Unmap
                    } else {
                        L0Change::WriteProtect
                    };
                    l0.change(first * 0x1000, last * 0x1000, kind);
                    for page in &mut model[first as usize..last as usize] {
                        *page = match (unmap, *page) {
                            (true, _) => None,
                            (false, Some(Some(_))) => Some(Some(false)),
                            (false, other) => other,
                        };
                    }
                }
                for (page, want) in model.iter().enumerate() {
                    let ipa = page as u64 * 0x1000;
                    let got = match l0.lookup(ipa) {
                        Some(m) => {
                            prop_assert_eq!(m.pa_base() + (ipa - m.ipa_base()), 0xff_f000 + ipa);
                            Some(Some(m.permissions().contains(Permissions::WRITE)))
                        }
                        None if l0.unbacked(ipa) == Unbacked::Mmio => Some(None),
                        None => None,
                    };
                    prop_assert_eq!(got, *want, "page {}", page);
                }
                Ok(())
            })
            .unwrap();
    }
}
