//! `s2walk dump`: every valid mapping of a table as merged IPA -> OA ranges.
//!
//! The walker's visitor reads each descriptor once and reports each leaf
//! (block or page) once, so a table of large blocks dumps in time linear in
//! its descriptors, not in the pages it maps; adjacent leaves with
//! contiguous output and identical attributes merge into one range. Tables
//! may alias (many entries pointing at one next-level table), which makes the
//! number of leaves unbounded by the memory given; `--max-reads` bounds the
//! work and an over-budget dump says so and exits with status 1.

use std::cell::Cell;
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;

use clap::ArgMatches;
use walker::{
    Execute, Fault, Granule, GuestMemory, Mapping, MemoryError, Memslots, S2Ap, Shareability,
    Stage2Walker,
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
            size: a.size,
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

    fn try_extend(&mut self, fault: &Fault, region: u64) -> bool {
        let continues = self.last_ipa.checked_add(1) == Some(fault.ipa)
            && fault.level == self.first.level
            && fault.kind() == self.first.kind()
            && fault_cause_name(&fault.cause) == fault_cause_name(&self.first.cause);
        if continues {
            self.last_ipa = fault.ipa.saturating_add(region - 1);
            self.entries += 1;
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

/// Bytes of input address one entry at `level` covers.
fn entry_span(granule: Granule, level: i8) -> u64 {
    let stride = granule.stride() as i32;
    let bits = granule.bits() as i32 + (3 - i32::from(level)) * stride;
    1u64.checked_shl(bits.clamp(0, 63) as u32)
        .unwrap_or(u64::MAX)
}

/// What a dump found, written to `out` as it goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ranges: u64,
    pub leaves: u64,
    pub faulting_entries: u64,
    pub reads: u64,
    /// The read budget ran out before the table was fully visited.
    pub incomplete: bool,
    /// The configuration itself faults: nothing was visited.
    pub configuration_fault: bool,
}

/// Pending output: the range or fault run being extended.
enum Pending {
    Nothing,
    Range(Range),
    Faults(FaultRun),
}

impl Pending {
    fn take_line(&mut self) -> Option<String> {
        match std::mem::replace(self, Pending::Nothing) {
            Pending::Nothing => None,
            Pending::Range(range) => Some(range.render()),
            Pending::Faults(run) => Some(run.render()),
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
    let granule = walker.granule();
    let mut summary = Summary::default();
    let mut pending = Pending::Nothing;
    let mut io_result = Ok(());
    let visited = walker.visit_mappings(&memory, |item| {
        if memory.exhausted.get() {
            return ControlFlow::Break(());
        }
        let finished = match item {
            Ok(mapping) => {
                summary.leaves += 1;
                let next = Range::from_mapping(&mapping);
                let extended = match &mut pending {
                    Pending::Range(range) => range.try_extend(&next),
                    _ => false,
                };
                if extended {
                    None
                } else {
                    summary.ranges += 1;
                    let line = pending.take_line();
                    pending = Pending::Range(next);
                    line
                }
            }
            Err(fault) => {
                summary.faulting_entries += 1;
                let span = entry_span(granule, fault.level);
                let extended = match &mut pending {
                    Pending::Faults(run) => run.try_extend(&fault, span),
                    _ => false,
                };
                if extended {
                    None
                } else {
                    let line = pending.take_line();
                    pending = Pending::Faults(FaultRun::new(fault, span));
                    line
                }
            }
        };
        if let Some(line) = finished {
            io_result = writeln!(out, "{line}");
        }
        if io_result.is_err() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    io_result?;
    if let Some(line) = pending.take_line() {
        writeln!(out, "{line}")?;
    }
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
        "# {} ranges, {} leaves, {} faulting entries, {} descriptors read",
        summary.ranges, summary.leaves, summary.faulting_entries, summary.reads
    )?;
    Ok(summary)
}

pub fn run(args: &ArgMatches) -> Outcome {
    let machine = Machine::from_args(args)?;
    let mut storage = Vec::new();
    let memslots = machine.memslots(&mut storage)?;
    let vtcr = *args.get_one::<u64>("vtcr").expect("required by clap");
    let vttbr = *args.get_one::<u64>("vttbr").expect("required by clap");
    let max_reads = *args.get_one::<u64>("max-reads").expect("has a default");
    let walker = machine.walker(vtcr, vttbr);
    let mut out = BufWriter::new(io::stdout().lock());
    let summary = dump(&walker, memslots, max_reads, &mut out)
        .map_err(|e| format!("writing the dump: {e}"))?;
    out.flush().map_err(|e| format!("writing the dump: {e}"))?;
    if summary.incomplete {
        eprintln!(
            "s2walk: error: dump stopped after {max_reads} descriptor reads (--max-reads); \
             the table is larger than that or its tables alias each other"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(if summary.configuration_fault {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
