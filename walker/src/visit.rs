//! Whole-table inspection for tools: decoding one descriptor, and visiting
//! every leaf of a table in IPA order (for `s2walk dump`), with a hook on
//! every table descriptor so a caller can expand a shared table once.

use core::ops::ControlFlow;

use crate::fault::{AccessKind, DescriptorRead, Fault, FaultCause, Trail};
use crate::memory::GuestMemory;
use crate::walk::{Execute, S2Ap, Shareability, Stage2Walker};

/// What a descriptor means at a level under a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorKind {
    /// Bit 0 clear.
    Invalid,
    /// A block encoding where this granule and level permit none.
    BlockNotPermitted,
    /// A table descriptor; `next_table` is the next level's table address.
    Table {
        /// Address of the next-level table (AArch64.NextTableBase).
        next_table: u64,
    },
    /// A block (levels 0..=2) or page (level 3) descriptor.
    Leaf(LeafAttributes),
}

/// The fields of a leaf descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafAttributes {
    /// Output address of the block/page (AArch64.LeafBase).
    pub output_base: u64,
    /// Block/page size in bytes.
    pub size: u64,
    /// Contiguous hint in effect (not RES0 at this level).
    pub contiguous: bool,
    /// Contiguous range size in bytes (`size` without the hint).
    pub contiguous_size: u64,
    /// S2AP as in the descriptor.
    pub s2ap: S2Ap,
    /// Execute permission (XN\[0\] ignored without FEAT_XNX).
    pub execute: Execute,
    /// AF.
    pub access_flag: bool,
    /// DBM.
    pub dirty_bit_modifier: bool,
    /// MemAttr\[3:0\].
    pub mem_attr: u8,
    /// Shareability (VTCR_EL2.SH0 with DS = 1).
    pub shareability: Shareability,
}

/// One leaf found by [`Stage2Walker::visit_mappings`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First IPA the leaf maps.
    pub ipa: u64,
    /// Bytes of IPA from `ipa` that translate: the leaf's size
    /// ([`LeafAttributes::size`]), or less for a block larger than the
    /// output size, of which only the first 2^[`Stage2Walker::output_size_bits`]
    /// bytes translate (the visit reports the rest as an Address size
    /// fault starting at `ipa + size`).
    pub size: u64,
    /// Level of the leaf.
    pub level: i8,
    /// Output address of `ipa` (StageOA: with the contiguous hint, IPA bits
    /// below the contiguous range replace the descriptor's).
    pub output_address: u64,
    /// The leaf descriptor as read.
    pub descriptor: DescriptorRead,
    /// Its decoded fields.
    pub attributes: LeafAttributes,
}

/// A table descriptor met by [`Stage2Walker::visit_mappings_with`], before
/// the table it points to is visited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableReference {
    /// First IPA the next table maps.
    pub ipa: u64,
    /// Bytes of IPA the next table maps (one entry at the descriptor's level).
    pub span: u64,
    /// Address of the next table (AArch64.NextTableBase).
    pub table: u64,
    /// Level of the next table (one more than the descriptor's).
    pub table_level: i8,
    /// The table descriptor as read.
    pub descriptor: DescriptorRead,
}

/// What [`MappingVisitor::table`] decides for one table descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableStep {
    /// Visit the table's entries next.
    Descend,
    /// Go on with the descriptor after this one; the table is not read.
    Skip,
    /// End the visit.
    Stop,
}

/// What [`Stage2Walker::visit_mappings_with`] reports to.
pub trait MappingVisitor {
    /// A table descriptor whose table address lies within the output size,
    /// met before its table is read. Tables may alias (several entries may
    /// point at one table), so a caller that remembers which
    /// `(table, table_level)` it has seen can skip repeats and bound its
    /// work by the memory instead of by the mappings it describes.
    fn table(&mut self, _reference: &TableReference) -> TableStep {
        TableStep::Descend
    }

    /// A leaf, or the fault that stops the walk of a region, in IPA order.
    fn mapping(&mut self, item: Result<Mapping, Fault>) -> ControlFlow<()>;
}

/// [`Stage2Walker::visit_mappings`]'s visitor: every table descended.
struct EveryTable<F>(F);

impl<F: FnMut(Result<Mapping, Fault>) -> ControlFlow<()>> MappingVisitor for EveryTable<F> {
    fn mapping(&mut self, item: Result<Mapping, Fault>) -> ControlFlow<()> {
        (self.0)(item)
    }
}

/// Tables deeper than this many levels cannot exist (-1..=3).
const MAX_DEPTH: usize = 5;

#[derive(Clone, Copy, Default)]
struct Frame {
    table: u64,
    level: i8,
    next_index: u64,
    entries: u64,
    ipa_base: u64,
}

impl Stage2Walker {
    /// Decode a descriptor at `level` under this configuration.
    pub fn decode_descriptor(&self, level: i8, descriptor: u64) -> DescriptorKind {
        match descriptor & 3 {
            0 | 2 => DescriptorKind::Invalid,
            3 if level < 3 => DescriptorKind::Table {
                next_table: self.next_table_address(descriptor),
            },
            1 if !self.block_permitted_at(level) => DescriptorKind::BlockNotPermitted,
            _ => DescriptorKind::Leaf(self.leaf_attributes(level, descriptor)),
        }
    }

    /// Visit every leaf of the table in IPA order, calling `visit` with the
    /// leaf or with the fault that stops the walk of a region (external
    /// abort on a table read, table or output address beyond the output
    /// size, a block where none is permitted). A fault's region runs from
    /// its IPA to the end of the entry at its level; a block larger than
    /// the output size is reported as the [`Mapping`] of the part that
    /// translates, then an Address size fault for the rest of it. Invalid descriptors are
    /// unmapped regions and are skipped. `visit` may stop early with
    /// [`ControlFlow::Break`]. Descriptors are read one at a time; the only
    /// bound on the work is the table itself (at most 5 levels deep), so a
    /// caller walking an untrusted table should stop after as many entries
    /// as it is willing to read, or use [`Stage2Walker::visit_mappings_with`]
    /// to expand each shared table once. (A tool's view of a table, not a
    /// walk for L1: any read `memory` refuses, the host's denial
    /// [`MemoryError::HostDenied`](crate::MemoryError::HostDenied) and
    /// its mapping mid-change
    /// [`MemoryError::HostChanging`](crate::MemoryError::HostChanging)
    /// included, is reported as that region's external abort.)
    ///
    /// Returns the configuration fault, if the configuration has one.
    pub fn visit_mappings<M, F>(&self, memory: &M, visit: F) -> Result<(), Fault>
    where
        M: GuestMemory + ?Sized,
        F: FnMut(Result<Mapping, Fault>) -> ControlFlow<()>,
    {
        self.visit_mappings_with(memory, &mut EveryTable(visit))
    }

    /// [`Stage2Walker::visit_mappings`], asking `visitor` at every table
    /// descriptor whether to read the table it points to.
    ///
    /// Returns the configuration fault, if the configuration has one.
    pub fn visit_mappings_with<M, V>(&self, memory: &M, visitor: &mut V) -> Result<(), Fault>
    where
        M: GuestMemory + ?Sized,
        V: MappingVisitor + ?Sized,
    {
        let region_fault = |cause, level, ipa, trail| Fault {
            cause,
            level,
            ipa,
            access: AccessKind::Read,
            trail,
        };
        let (start_level, table, ia_bits) = match (self.start_level(), self.table_base()) {
            (Some(level), Some(table)) => (level, table, self.input_size_bits()),
            _ => {
                let cause = self
                    .configuration_fault()
                    .unwrap_or(FaultCause::InvalidStartLevel);
                return Err(region_fault(cause, 0, 0, Trail::default()));
            }
        };
        if table >> self.output_size_bits() != 0 {
            return Err(region_fault(
                FaultCause::BaseAddressOutOfRange,
                0,
                0,
                Trail::default(),
            ));
        }
        let mut stack = [Frame::default(); MAX_DEPTH];
        stack[0] = Frame {
            table,
            level: start_level,
            next_index: 0,
            entries: 1 << (ia_bits - self.index_lsb(start_level)),
            ipa_base: 0,
        };
        let mut depth = 1;
        while depth > 0 {
            let frame = &mut stack[depth - 1];
            if frame.next_index >= frame.entries {
                depth -= 1;
                continue;
            }
            let index = frame.next_index;
            frame.next_index += 1;
            let frame = *frame;
            let ipa = frame.ipa_base | (index << self.index_lsb(frame.level));
            let address = frame.table | (index << 3);
            let raw = match memory.read_descriptor(address) {
                Ok(raw) => raw,
                Err(_) => {
                    let cause = FaultCause::DescriptorOutsideMemslots { address };
                    if visitor
                        .mapping(Err(region_fault(cause, frame.level, ipa, Trail::default())))
                        .is_break()
                    {
                        return Ok(());
                    }
                    continue;
                }
            };
            let value = self.registers().endianness.descriptor_from_raw(raw);
            let read = DescriptorRead {
                address,
                value,
                level: frame.level,
            };
            let mut trail = Trail::default();
            trail.push(read);
            let outcome = match self.decode_descriptor(frame.level, value) {
                DescriptorKind::Invalid => continue,
                DescriptorKind::BlockNotPermitted => Err(region_fault(
                    FaultCause::BlockNotPermitted,
                    frame.level,
                    ipa,
                    trail,
                )),
                DescriptorKind::Table { next_table } => {
                    if next_table >> self.output_size_bits() != 0 {
                        Err(region_fault(
                            FaultCause::TableAddressOutOfRange,
                            frame.level,
                            ipa,
                            trail,
                        ))
                    } else if depth < MAX_DEPTH {
                        let reference = TableReference {
                            ipa,
                            span: 1 << self.index_lsb(frame.level),
                            table: next_table,
                            table_level: frame.level + 1,
                            descriptor: read,
                        };
                        match visitor.table(&reference) {
                            TableStep::Descend => {}
                            TableStep::Skip => continue,
                            TableStep::Stop => return Ok(()),
                        }
                        stack[depth] = Frame {
                            table: next_table,
                            level: frame.level + 1,
                            next_index: 0,
                            entries: 1 << self.granule().stride(),
                            ipa_base: ipa,
                        };
                        depth += 1;
                        continue;
                    } else {
                        // Levels only increase, so depth never exceeds 5.
                        continue;
                    }
                }
                DescriptorKind::Leaf(attributes) => {
                    let output_address = self.stage_output_address(frame.level, value, ipa);
                    let oa_bits = self.output_size_bits();
                    let beyond = |oa: u64| oa >> oa_bits != 0;
                    if beyond(output_address) {
                        Err(region_fault(
                            FaultCause::OutputAddressOutOfRange,
                            frame.level,
                            ipa,
                            trail,
                        ))
                    } else if beyond(output_address | (attributes.size - 1)) {
                        // A block larger than the output size (so its
                        // output base is 0: it is aligned to its size):
                        // AArch64.S2Walk checks OAOutOfRange(StageOA(ipa))
                        // per IPA, so its first part translates and the
                        // rest takes an Address size fault.
                        let size = (1u64 << oa_bits) - output_address;
                        let first = Mapping {
                            ipa,
                            size,
                            level: frame.level,
                            output_address,
                            descriptor: read,
                            attributes,
                        };
                        if visitor.mapping(Ok(first)).is_break() {
                            return Ok(());
                        }
                        Err(region_fault(
                            FaultCause::OutputAddressOutOfRange,
                            frame.level,
                            ipa + size,
                            trail,
                        ))
                    } else {
                        Ok(Mapping {
                            ipa,
                            size: attributes.size,
                            level: frame.level,
                            output_address,
                            descriptor: read,
                            attributes,
                        })
                    }
                }
            };
            if visitor.mapping(outcome).is_break() {
                return Ok(());
            }
        }
        Ok(())
    }
}
