//! `s2walk dump`: every valid mapping of a table as merged IPA -> OA ranges.
//!
//! The walker's visitor reports each leaf (block or page) once, so a table
//! of large blocks dumps in time linear in its descriptors, not in the pages
//! it maps; adjacent leaves with contiguous output and identical attributes
//! merge into one range. Tables may alias (many entries pointing at one
//! next-level table, or a table pointing at itself), which would make the
//! leaves unbounded by the memory given; so each (table, level) is expanded
//! once, and a later entry pointing at it prints a back-reference to the
//! IPA range where it was listed. Its mappings there are exactly the same:
//! StageOA takes from the IPA only bits below the contiguous range, which lie
//! inside the table's span. Every descriptor is then read at most once per
//! level ([`read_bound`]); `--max-reads` can stop a dump earlier, which it
//! says, exiting with status 1.
use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;

use clap::ArgMatches;
use walker::{
    AccessKind, Execute, Fault, FaultCause, Granule, GuestMemory, Mapping, MappingVisitor,
    MemoryError, Memslots, S2Ap, Shareability, Stage2Walker, TableReference, TableStep, Trail,
};

use crate::output::{
    describe_cause, execute_name, fault_cause_name, fault_kind_name, human_size, mem_attr_name,
    s2ap_name, shareability_name,
};
use crate::setup::Machine;
use crate::trace::describe_configuration;
use crate::Outcome;

/// Memory that counts descriptor reads and refuses them past a budget.
struct BudgetedMemory<'a> {
    inner: Memslots<'a>,
    reads: Cell<u64>,
    limit: u64,
    exhausted: Cell<bool>,
}

impl GuestMemory for BudgetedMemory<'_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        if self.reads.get() >= self.limit {
            self.exhausted.set(true);
            // Any error stops the visitor's region; the dump then sees
            // `exhausted` and stops, so this value is never reported.
            return Err(MemoryError::OutsideMemslots);
        }
        self.reads.set(self.reads.get() + 1);
        self.inner.read_descriptor(address)
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.inner
            .compare_exchange_descriptor(address, current, new)
    }
}

/// What must be equal for two adjacent leaves to merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attributes {
    s2ap: S2Ap,
    execute: Execute,
    mem_attr: u8,
    shareability: Shareability,
    access_flag: bool,
    dirty_bit_modifier: bool,
}

/// A run of leaves with contiguous IPA and OA and equal attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    ipa: u64,
    oa: u64,
    /// Bytes covered (never 0).
    size: u64,
    attributes: Attributes,
    leaves: u64,
    min_level: i8,
    max_level: i8,
}

impl Range {
    fn from_mapping(m: &Mapping) -> Range {
        let a = &m.attributes;
        Range {
            ipa: m.ipa,
            oa: m.output_address,
            size: m.size,
            attributes: Attributes {
                s2ap: a.s2ap,
                execute: a.execute,
                mem_attr: a.mem_attr,
                shareability: a.shareability,
                access_flag: a.access_flag,
                dirty_bit_modifier: a.dirty_bit_modifier,
            },
            leaves: 1,
            min_level: m.level,
            max_level: m.level,
        }
    }

    /// Extend by `next` if it continues this range exactly.
    fn try_extend(&mut self, next: &Range) -> bool {
        let continues = self.ipa.checked_add(self.size) == Some(next.ipa)
            && self.oa.checked_add(self.size) == Some(next.oa)
            && self.attributes == next.attributes;
        if continues {
            self.size += next.size;
            self.leaves += next.leaves;
            self.min_level = self.min_level.min(next.min_level);
            self.max_level = self.max_level.max(next.max_level);
        }
        continues
    }

    fn render(&self) -> String {
        let a = &self.attributes;
        let levels = if self.min_level == self.max_level {
            format!("level {}", self.min_level)
        } else {
            format!("levels {}-{}", self.min_level, self.max_level)
        };
        format!(
            "IPA {:#015x}-{:#015x} -> OA {:#015x}-{:#015x}  {:>8}  S2AP {}  {}  MemAttr {:#x} ({})  SH {}  AF {}  DBM {}  [{} {}, {levels}]",
            self.ipa,
            self.ipa + (self.size - 1),
            self.oa,
            self.oa + (self.size - 1),
            human_size(self.size),
            s2ap_name(a.s2ap),
            execute_name(a.execute),
            a.mem_attr,
            mem_attr_name(a.mem_attr),
            shareability_name(a.shareability),
            u8::from(a.access_flag),
            u8::from(a.dirty_bit_modifier),
            self.leaves,
            if self.leaves == 1 { "leaf" } else { "leaves" },
        )
    }
}

/// A run of adjacent entries that fault the same way (for example the 512
/// entries of a table that lies outside every memslot).
#[derive(Clone, Copy, Debug)]
struct FaultRun {
    first: Fault,
    /// Last IPA covered (inclusive).
    last_ipa: u64,
    entries: u64,
}

impl FaultRun {
    fn new(fault: Fault, region: u64) -> FaultRun {
        FaultRun {
            first: fault,
            last_ipa: fault.ipa.saturating_add(region - 1),
            entries: 1,
        }
    }

    fn try_extend(&mut self, next: &FaultRun) -> bool {
        let fault = &next.first;
        let continues = self.last_ipa.checked_add(1) == Some(fault.ipa)
            && fault.level == self.first.level
            && fault.kind() == self.first.kind()
            && fault_cause_name(&fault.cause) == fault_cause_name(&self.first.cause);
        if continues {
            self.last_ipa = next.last_ipa;
            self.entries += next.entries;
        }
        continues
    }

    fn render(&self) -> String {
        let f = &self.first;
        format!(
            "! IPA {:#015x}-{:#015x}: {} at level {} (FSC {:#04x}), {} {}: {}",
            f.ipa,
            self.last_ipa,
            fault_kind_name(f.kind()).replace('_', " "),
            f.level,
            f.fsc(),
            self.entries,
            if self.entries == 1 {
                "entry"
            } else {
                "entries"
            },
            describe_cause(&f.cause)
        )
    }
}

/// Where a table was first listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listed {
    ipa: u64,
    last_ipa: u64,
    /// Its listing had a line of its own (a leaf, a faulting entry or a
    /// back-reference): an empty table is not worth referring back to.
    maps_something: bool,
}

/// A run of adjacent entries pointing at one table already listed.
#[derive(Clone, Copy, Debug)]
struct AliasRun {
    ipa: u64,
    last_ipa: u64,
    entries: u64,
    /// IPA bytes each entry maps.
    span: u64,
    table: u64,
    level: i8,
    listed: Listed,
}

impl AliasRun {
    fn try_extend(&mut self, next: &AliasRun) -> bool {
        let continues = self.last_ipa.checked_add(1) == Some(next.ipa)
            && (self.table, self.level, self.span) == (next.table, next.level, next.span);
        if continues {
            self.last_ipa = next.last_ipa;
            self.entries += next.entries;
        }
        continues
    }

    fn render(&self) -> String {
        format!(
            "= IPA {:#015x}-{:#015x}: {} {} of {}, {} the mappings of IPA {:#015x}-{:#015x} (the table at {:#x}, level {}, listed there)",
            self.ipa,
            self.last_ipa,
            self.entries,
            if self.entries == 1 { "entry" } else { "entries" },
            human_size(self.span),
            if self.entries == 1 { "with" } else { "each with" },
            self.listed.ipa,
            self.listed.last_ipa,
            self.table,
            self.level,
        )
    }
}

/// What a dump found, written to `out` as it goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ranges: u64,
    pub leaves: u64,
    pub faulting_entries: u64,
    /// Entries pointing at a table listed earlier (printed as references).
    pub aliased_entries: u64,
    pub reads: u64,
    /// The read budget ran out before the table was fully visited.
    pub incomplete: bool,
    /// The configuration itself faults: nothing was visited.
    pub configuration_fault: bool,
}

/// Pending output: the range or run being extended.
enum Pending {
    Nothing,
    Range(Range),
    Faults(FaultRun),
    Aliases(AliasRun),
}

impl Pending {
    /// Extend by `next` if it continues the pending line.
    fn absorb(&mut self, next: &Pending) -> bool {
        match (self, next) {
            (Pending::Range(range), Pending::Range(next)) => range.try_extend(next),
            (Pending::Faults(run), Pending::Faults(next)) => run.try_extend(next),
            (Pending::Aliases(run), Pending::Aliases(next)) => run.try_extend(next),
            _ => false,
        }
    }

    fn take_line(&mut self) -> Option<String> {
        match std::mem::replace(self, Pending::Nothing) {
            Pending::Nothing => None,
            Pending::Range(range) => Some(range.render()),
            Pending::Faults(run) => Some(run.render()),
            Pending::Aliases(run) => Some(run.render()),
        }
    }
}

/// A table being listed for the first time.
struct Listing {
    key: (u64, i8),
    last_ipa: u64,
    /// `Dumper::items_reported` when it started.
    items_before: u64,
}

/// Bytes of input address one entry at `level` covers.
fn entry_span(granule: Granule, level: i8) -> u64 {
    let stride = granule.stride() as i32;
    let bits = granule.bits() as i32 + (3 - i32::from(level)) * stride;
    1u64.checked_shl(bits.clamp(0, 63) as u32)
        .unwrap_or(u64::MAX)
}

/// Whether any memslot holds a byte of `[start, start + len)` (`len` > 0).
fn holds_any(memslots: &Memslots<'_>, start: u64, len: u64) -> bool {
    let last = start.saturating_add(len - 1);
    let slots = memslots.slots();
    // Slots are sorted and disjoint: the last one starting at or below
    // `last` reaches furthest.
    let starting_below = slots.partition_point(|slot| slot.base() <= last);
    starting_below
        .checked_sub(1)
        .is_some_and(|i| slots[i].base() + (slots[i].size() - 1) >= start)
}

/// Most descriptor reads a dump of `walker`'s table in `memslots` can make.
///
/// The root holds at most 16 concatenated tables. Below it every (table,
/// level) is expanded once and tables are granule-aligned, so at each of at
/// most four further levels the tables read lie wholly inside the memslots
/// (at most one read per word) or overlap a slot's edge (at most two per
/// slot); tables outside every slot are not read at all.
pub fn read_bound(walker: &Stage2Walker, memslots: &Memslots<'_>) -> u64 {
    let entries = 1u64 << walker.granule().stride();
    let slots = memslots.slots();
    let words = slots.iter().map(|slot| slot.size() / 8).sum::<u64>();
    let per_level = words.saturating_add((slots.len() as u64 * 2).saturating_mul(entries));
    (16 * entries).saturating_add(per_level.saturating_mul(4))
}

/// The visitor behind a dump: merges lines, expands each table once.
struct Dumper<'d, W: Write> {
    memory: &'d BudgetedMemory<'d>,
    granule: Granule,
    out: &'d mut W,
    summary: Summary,
    pending: Pending,
    io_result: io::Result<()>,
    listed: HashMap<(u64, i8), Listed>,
    /// Tables being listed, outermost first (at most one per level).
    listing: Vec<Listing>,
    /// Leaves, faulting entries and references reported so far.
    items_reported: u64,
}

impl<W: Write> Dumper<'_, W> {
    /// Record which tables listed before `ipa` (visits come in IPA order)
    /// turned out to map something.
    fn finish_listings_before(&mut self, ipa: u64) {
        while let Some(top) = self.listing.last() {
            if top.last_ipa >= ipa {
                break;
            }
            let maps_something = self.items_reported > top.items_before;
            if let Some(listed) = self.listed.get_mut(&top.key) {
                listed.maps_something = maps_something;
            }
            self.listing.pop();
        }
    }

    /// Extend the pending line by `next`, or write it and make `next`
    /// pending.
    fn emit(&mut self, next: Pending) -> ControlFlow<()> {
        if !self.pending.absorb(&next) {
            if let Pending::Range(_) = next {
                self.summary.ranges += 1;
            }
            if let Some(line) = self.pending.take_line() {
                self.io_result = writeln!(self.out, "{line}");
            }
            self.pending = next;
        }
        if self.io_result.is_err() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn stopped(&self) -> bool {
        self.memory.exhausted.get() || self.io_result.is_err()
    }
}

impl<W: Write> MappingVisitor for Dumper<'_, W> {
    fn table(&mut self, reference: &TableReference) -> TableStep {
        if self.stopped() {
            return TableStep::Stop;
        }
        self.finish_listings_before(reference.ipa);
        let last_ipa = reference.ipa.saturating_add(reference.span - 1);
        let entries = 1u64 << self.granule.stride();
        let step = if !holds_any(&self.memory.inner, reference.table, entries * 8) {
            // Every entry's read would be an external abort: report them
            // as the walker would, without reading.
            let first = Fault {
                cause: FaultCause::DescriptorOutsideMemslots {
                    address: reference.table,
                },
                level: reference.table_level,
                ipa: reference.ipa,
                access: AccessKind::Read,
                trail: Trail::default(),
            };
            self.summary.faulting_entries += entries;
            self.items_reported += entries;
            self.emit(Pending::Faults(FaultRun {
                first,
                last_ipa,
                entries,
            }))
        } else {
            let key = (reference.table, reference.table_level);
            match self.listed.get(&key) {
                None => {
                    self.listed.insert(
                        key,
                        Listed {
                            ipa: reference.ipa,
                            last_ipa,
                            maps_something: false,
                        },
                    );
                    self.listing.push(Listing {
                        key,
                        last_ipa,
                        items_before: self.items_reported,
                    });
                    return TableStep::Descend;
                }
                // Listed before and mapped nothing: it maps nothing here.
                Some(listed) if !listed.maps_something => ControlFlow::Continue(()),
                Some(&listed) => {
                    self.summary.aliased_entries += 1;
                    self.items_reported += 1;
                    self.emit(Pending::Aliases(AliasRun {
                        ipa: reference.ipa,
                        last_ipa,
                        entries: 1,
                        span: reference.span,
                        table: reference.table,
                        level: reference.table_level,
                        listed,
                    }))
                }
            }
        };
        match step {
            ControlFlow::Continue(()) => TableStep::Skip,
            ControlFlow::Break(()) => TableStep::Stop,
        }
    }

    fn mapping(&mut self, item: Result<Mapping, Fault>) -> ControlFlow<()> {
        if self.stopped() {
            return ControlFlow::Break(());
        }
        self.items_reported += 1;
        match item {
            Ok(mapping) => {
                self.finish_listings_before(mapping.ipa);
                self.summary.leaves += 1;
                self.emit(Pending::Range(Range::from_mapping(&mapping)))
            }
            Err(fault) => {
                self.finish_listings_before(fault.ipa);
                self.summary.faulting_entries += 1;
                // To the end of the entry: a block larger than the output
                // size faults from the first IPA beyond it (its first part
                // was listed as a mapping).
                let entry = entry_span(self.granule, fault.level);
                let span = entry - (fault.ipa & (entry - 1));
                self.emit(Pending::Faults(FaultRun::new(fault, span)))
            }
        }
    }
}

pub fn dump(
    walker: &Stage2Walker,
    memory: Memslots<'_>,
    max_reads: u64,
    out: &mut impl Write,
) -> io::Result<Summary> {
    let memory = BudgetedMemory {
        inner: memory,
        reads: Cell::new(0),
        limit: max_reads,
        exhausted: Cell::new(false),
    };
    writeln!(out, "# {}", describe_configuration(walker))?;
    let mut dumper = Dumper {
        memory: &memory,
        granule: walker.granule(),
        out,
        summary: Summary::default(),
        pending: Pending::Nothing,
        io_result: Ok(()),
        listed: HashMap::new(),
        listing: Vec::new(),
        items_reported: 0,
    };
    let visited = walker.visit_mappings_with(&memory, &mut dumper);
    dumper.io_result?;
    if let Some(line) = dumper.pending.take_line() {
        writeln!(dumper.out, "{line}")?;
    }
    let mut summary = dumper.summary;
    let out = dumper.out;
    summary.reads = memory.reads.get();
    summary.incomplete = memory.exhausted.get();
    if let Err(fault) = visited {
        summary.configuration_fault = true;
        writeln!(
            out,
            "! the configuration faults: {} at level {} (FSC {:#04x}): {}",
            fault_kind_name(fault.kind()).replace('_', " "),
            fault.level,
            fault.fsc(),
            describe_cause(&fault.cause)
        )?;
    }
    writeln!(
        out,
        "# {} ranges, {} leaves, {} faulting entries, {} entries referring back, {} descriptors read",
        summary.ranges,
        summary.leaves,
        summary.faulting_entries,
        summary.aliased_entries,
        summary.reads
    )?;
    Ok(summary)
}

pub fn run(args: &ArgMatches) -> Outcome {
    let machine = Machine::from_args(args)?;
    let mut storage = Vec::new();
    let memslots = machine.memslots(&mut storage)?;
    let vtcr = *args.get_one::<u64>("vtcr").expect("required by clap");
    let vttbr = *args.get_one::<u64>("vttbr").expect("required by clap");
    let walker = machine.walker(vtcr, vttbr);
    let max_reads = match args.get_one::<u64>("max-reads") {
        Some(&limit) => limit,
        None => read_bound(&walker, &memslots),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let summary = dump(&walker, memslots, max_reads, &mut out)
        .map_err(|e| format!("writing the dump: {e}"))?;
    out.flush().map_err(|e| format!("writing the dump: {e}"))?;
    if summary.incomplete {
        eprintln!(
            "s2walk: error: dump stopped after {max_reads} descriptor reads (--max-reads); \
             the tables hold more descriptors than that"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(if summary.configuration_fault {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicU64;

    use walker::{Endianness, ExposedFeatures, IdRegisters, Memslot, SlotAccess, Stage2Registers};

    use super::*;
    use crate::setup::{DEFAULT_MMFR0, DEFAULT_MMFR1, DEFAULT_MMFR2};

    const BASE: u64 = 0x4000_0000;
    const PAGE: u64 = 0x1000;

    /// SplitMix64: reproducible pseudo-random words from a seed.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// A random descriptor: invalid, a table somewhere around the memory
    /// (inside, across a slot edge, outside), or a block/page with random
    /// output address, attributes and contiguous hint.
    fn random_descriptor(rng: &mut SplitMix) -> u64 {
        let r = rng.next();
        match r % 8 {
            0 | 1 => 0,
            2..=4 => (BASE - PAGE + (r >> 8) % 14 * PAGE) | 3,
            _ => {
                let oa = (r >> 20) & 0xff_ffff_f000;
                let attributes = (r >> 4) & ((1 << 10) | (3 << 6) | (0xf << 2));
                let contiguous = (r >> 3) & 1;
                oa | attributes | (contiguous << 52) | if r & 4 == 0 { 1 } else { 3 }
            }
        }
    }

    fn number(text: &str) -> u64 {
        u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap()
    }

    /// The 4 KiB pages a dump's text says are mapped, IPA -> OA, with each
    /// back-reference resolved through the range it names.
    fn pages_of_dump(text: &str) -> BTreeMap<u64, u64> {
        let mut pages = BTreeMap::new();
        for line in text.lines() {
            if let Some(range) = line.strip_prefix("IPA ") {
                let (ipa, rest) = range.split_once('-').unwrap();
                let (_, oa) = rest.split_once("-> OA ").unwrap();
                let (ipa, oa) = (number(ipa), number(oa.split_once('-').unwrap().0));
                let last = number(rest.split_once(" ->").unwrap().0);
                for page in (ipa..=last).step_by(PAGE as usize) {
                    pages.insert(page, oa + (page - ipa));
                }
            } else if let Some(reference) = line.strip_prefix("= IPA ") {
                let (ipa, rest) = reference.split_once('-').unwrap();
                let (last, rest) = rest.split_once(':').unwrap();
                let entries: u64 = rest.trim().split(' ').next().unwrap().parse().unwrap();
                let (_, listed) = rest.split_once("mappings of IPA ").unwrap();
                let (first, listed_last) = listed.split_once('-').unwrap();
                let (first, listed_last) = (
                    number(first),
                    number(listed_last.split_once(' ').unwrap().0),
                );
                let (ipa, last) = (number(ipa), number(last));
                let span = (last - ipa + 1) / entries;
                assert_eq!(span, listed_last - first + 1, "{line}");
                let listed: Vec<(u64, u64)> = pages
                    .range(first..=listed_last)
                    .map(|(p, o)| (*p, *o))
                    .collect();
                for entry in 0..entries {
                    for (page, oa) in &listed {
                        pages.insert(ipa + entry * span + (page - first), *oa);
                    }
                }
            }
        }
        pages
    }

    /// Review 31 R31-1: 64KB granule, PAMax 52, VTCR_EL2.PS 32 bits, one
    /// level-1 block of 4 TiB at OA 0. Its first 4 GiB translate (a walk
    /// of IPA 0x1234 does): the dump lists them as a mapping and the rest
    /// of the block as the Address size fault (it listed the whole block
    /// as a fault).
    #[test]
    fn a_block_larger_than_the_output_size_is_split_where_its_output_ends() {
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: 0x0222_0010_0006,
            mmfr1: 0,
            mmfr2: 0,
        })
        .unwrap();
        let walker = Stage2Walker::new(
            Stage2Registers {
                vtcr: 0x4094,
                vttbr: 0x10000,
                endianness: Endianness::Little,
            },
            &features,
        );
        let table: Vec<AtomicU64> = (0..0x10000 / 8)
            .map(|i| AtomicU64::new(if i == 0 { 0x4fd } else { 0 }))
            .collect();
        let mut storage = vec![Memslot::new(0x10000, &table, SlotAccess::ReadOnly)];
        let memslots = Memslots::new(&mut storage).unwrap();
        assert!(walker
            .walk(&memslots, 0x1234, walker::AccessKind::Read)
            .is_ok());
        let bound = read_bound(&walker, &memslots);
        let mut out = Vec::new();
        let summary = dump(&walker, memslots, bound, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!summary.incomplete, "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with(
                "IPA 0x0000000000000-0x00000ffffffff -> OA 0x0000000000000-0x00000ffffffff"
            ),
            "{text}"
        );
        assert!(
            lines[1].starts_with("! IPA 0x0000100000000-0x003ffffffffff: address size at level 1"),
            "{text}"
        );
    }

    #[test]
    fn dumps_of_random_aliasing_tables_stay_within_the_bound_and_lose_no_mapping() {
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: DEFAULT_MMFR0,
            mmfr1: DEFAULT_MMFR1,
            mmfr2: DEFAULT_MMFR2,
        })
        .unwrap();
        // 4K, T0SZ 34 (30-bit IPA), start level 2, PS 48 bits: at most
        // 2^18 pages, so the blind expansion can be compared page by page.
        let walker = Stage2Walker::new(
            Stage2Registers {
                vtcr: 34 | (0b101 << 16) | (1 << 31),
                vttbr: BASE,
                endianness: Endianness::Little,
            },
            &features,
        );
        for seed in 0..48 {
            let mut rng = SplitMix(seed);
            // Eight pages from BASE, and a slot that starts and ends
            // inside pages 10 and 11 (tables across its edges are read
            // in part).
            let ram: Vec<AtomicU64> = (0..8 * PAGE / 8)
                .map(|_| AtomicU64::new(random_descriptor(&mut rng).to_le()))
                .collect();
            let edge: Vec<AtomicU64> = (0..PAGE / 8)
                .map(|_| AtomicU64::new(random_descriptor(&mut rng).to_le()))
                .collect();
            let mut storage = vec![
                Memslot::new(BASE, &ram, SlotAccess::ReadOnly),
                Memslot::new(BASE + 10 * PAGE + 0x808, &edge, SlotAccess::ReadOnly),
            ];
            let memslots = Memslots::new(&mut storage).unwrap();
            let bound = read_bound(&walker, &memslots);
            let mut out = Vec::new();
            let summary = dump(&walker, memslots, bound, &mut out).unwrap();
            assert!(!summary.incomplete, "seed {seed}: {summary:?}");
            assert!(summary.reads <= bound, "seed {seed}: {summary:?}");
            // Expanding every table blindly maps exactly the same pages.
            let mut expected = BTreeMap::new();
            walker
                .visit_mappings(&memslots, |item| {
                    if let Ok(leaf) = item {
                        for offset in (0..leaf.size).step_by(PAGE as usize) {
                            expected.insert(leaf.ipa + offset, leaf.output_address + offset);
                        }
                    }
                    ControlFlow::Continue(())
                })
                .unwrap();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(pages_of_dump(&text), expected, "seed {seed}:\n{text}");
        }
    }
}
