//! Host tests of L1's AT emulation over real tables: L2's stage 1 and L1's
//! stage 2 written into a model of L1's RAM, walked by `s1walk` and the
//! `walker` crate.

extern crate std;

use super::*;
use crate::nested::idregs::{shown_to_l1, IdRegister};
// The walker's atomics (loom's under `--cfg loom`, where these tests are only
// compiled).
use crate::sync::{AtomicU64, Ordering};
use std::boxed::Box;
use std::vec::Vec;
use walker::{IdRegisters, Memslot, Memslots, SlotAccess};

/// L1's RAM: 6 MiB at L1 IPA 0x4000_0000 in a read-only memslot (the
/// walks make no hardware updates: L1 is shown no FEAT_HAFDBS).
struct L1Ram {
    words: &'static [AtomicU64],
    slots: Memslots<'static>,
}

const RAM_BASE: u64 = 0x4000_0000;
const RAM_END: u64 = 0x4060_0000;

impl Default for L1Ram {
    fn default() -> Self {
        let words: &'static [AtomicU64] = Box::leak(
            (0..(RAM_END - RAM_BASE) / 8)
                .map(|_| AtomicU64::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let slots = Box::leak(Box::new([Memslot::new(
            RAM_BASE,
            words,
            SlotAccess::ReadOnly,
        )]));
        L1Ram {
            words,
            slots: Memslots::new(slots).unwrap(),
        }
    }
}

impl L1Ram {
    fn word(&self, ipa: u64) -> &AtomicU64 {
        assert!((RAM_BASE..RAM_END).contains(&ipa), "{ipa:#x}");
        &self.words[((ipa - RAM_BASE) / 8) as usize]
    }

    fn write(&self, ipa: u64, value: u64) {
        self.word(ipa).store(value, Ordering::Relaxed);
    }

    fn read(&self, ipa: u64) -> u64 {
        self.word(ipa).load(Ordering::Relaxed)
    }
}

/// A 4 KiB, 39-bit (T0SZ 25, level 1 to 3) table tree: each `map` adds
/// the tables a VA needs (at `next` in the table address space) and a
/// page descriptor. `at` turns a table address into where it lies in
/// L1's RAM (the identity for L1's own or stage-2 tables, L1's stage 2
/// for L2's stage-1 tables).
struct Tables<'a> {
    ram: &'a L1Ram,
    root: u64,
    next: u64,
    at: fn(u64) -> u64,
}

impl Tables<'_> {
    fn entry(&mut self, va: u64, level: u32) -> u64 {
        let mut table = self.root;
        for l in 1..level {
            let slot = (self.at)(table + ((va >> (39 - 9 * l)) & 0x1ff) * 8);
            table = match self.ram.read(slot) {
                d if d & 0b11 == 0b11 => d & 0x0000_ffff_ffff_f000,
                _ => {
                    let t = self.next;
                    self.next += 0x1000;
                    self.ram.write(slot, t | 0b11);
                    t
                }
            };
        }
        (self.at)(table + ((va >> (39 - 9 * level)) & 0x1ff) * 8)
    }

    /// Maps the 4 KiB page at `va` with descriptor bits `bits` (output
    /// address included).
    fn map(&mut self, va: u64, bits: u64) {
        let slot = self.entry(va, 3);
        self.ram.write(slot, bits | 0b11);
    }

    /// Writes `descriptor` at `level`'s entry for `va` (tables above made).
    fn set(&mut self, va: u64, level: u32, descriptor: u64) {
        let slot = self.entry(va, level);
        self.ram.write(slot, descriptor);
    }
}

/// Stage-1 page bits: AF, AttrIndx, AP, SH Inner.
const AF: u64 = 1 << 10;
const ISH: u64 = 0b11 << 8;
const fn ap(ap: u64) -> u64 {
    ap << 6
}
const fn attr_index(i: u64) -> u64 {
    i << 2
}
/// Stage-2 page bits: S2AP, MemAttr (Normal WB = 0b1111), SH.
const fn s2ap(ap: u64) -> u64 {
    ap << 6
}
const S2_NORMAL_WB: u64 = 0b1111 << 2;
const S2_DEVICE_NGNRE: u64 = 0b0001 << 2;

/// MAIR: index 0 Normal WB RAWA (0xff), 1 Device-nGnRE (0x04), 2 Normal NC
/// (0x44), 3 Normal WT non-transient RA (0xaa).
const MAIR: u64 = 0xaa_44_04_ff;
/// SCTLR_EL1: M and C.
const SCTLR_MC: u64 = 0b101;
/// TCR_EL1: T0SZ 25, 4K, EPD1, IPS 40 bits, TBI0.
const TCR: u64 = 25 | (1 << 23) | (0b010 << 32) | (1 << 37);
/// VTCR_EL2: T0SZ 25, SL0 0b01 (level 1), 4K, PS 40 bits.
const VTCR: u64 = 25 | (0b01 << 6) | (0b010 << 16);

fn stage1_features() -> Stage1Features {
    Stage1Features::from_id_registers(shown_to_l1(IdRegister::Mmfr0, 0), 0)
}

fn exposed() -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: shown_to_l1(IdRegister::Mmfr0, 0),
        mmfr1: shown_to_l1(IdRegister::Mmfr1, 0),
        mmfr2: shown_to_l1(IdRegister::Mmfr2, 0),
    })
    .unwrap()
}

/// L2 IPA 0x8000_0000 + x is L1 IPA 0x4010_0000 + x for the first MiB
/// (L1's stage 2, written by [`Setup::new`]).
const L2_IPA: u64 = 0x8000_0000;
const L1_IPA_OF_L2: u64 = 0x4010_0000;
fn l2_to_l1(ipa: u64) -> u64 {
    ipa - L2_IPA + L1_IPA_OF_L2
}
fn identity(a: u64) -> u64 {
    a
}

/// L1's stage 2 (root at 0x4000_0000, tables from 0x4000_1000) mapping L2
/// IPA 0x8000_0000.. to L1 IPA 0x4010_0000.. read/write, Normal WB, Inner
/// Shareable, for 64 pages (L2's stage-1 tables from L2 IPA 0x8000_0000,
/// its data pages from 0x8002_0000); L2's stage 1 (root at L2 IPA
/// 0x8000_0000).
struct Setup {
    ram: &'static L1Ram,
    stage1: Stage1Features,
    stage2: ExposedFeatures,
}

impl Setup {
    fn new() -> Self {
        let ram: &'static L1Ram = Box::leak(Box::default());
        let mut s2 = Tables {
            ram,
            root: 0x4000_0000,
            next: 0x4000_1000,
            at: identity,
        };
        for page in 0..64 {
            let ipa = L2_IPA + page * 0x1000;
            s2.map(ipa, l2_to_l1(ipa) | AF | ISH | s2ap(0b11) | S2_NORMAL_WB);
        }
        Setup {
            ram,
            stage1: stage1_features(),
            stage2: exposed(),
        }
    }

    /// L1's stage 2 (new tables from 0x4002_0000, past `new`'s).
    fn l1_stage2(&self) -> Tables<'static> {
        Tables {
            ram: self.ram,
            root: 0x4000_0000,
            next: 0x4002_0000,
            at: identity,
        }
    }

    /// L2's stage-1 tables (in L2 IPA space, through L1's stage 2).
    fn l2_tables(&self) -> Tables<'static> {
        Tables {
            ram: self.ram,
            root: L2_IPA,
            next: L2_IPA + 0x1000,
            at: l2_to_l1,
        }
    }

    fn context(&self, vhcr: u64) -> AtContext<'_> {
        AtContext {
            vhcr,
            vttbr: 5 << 48 | 0x4000_0000,
            vtcr: VTCR,
            pstate: 0,
            l2: RegimeRegisters {
                sctlr: SCTLR_MC,
                tcr: TCR,
                ttbr0: L2_IPA,
                ttbr1: 0,
                mair: MAIR,
            },
            l1: RegimeRegisters::default(),
            l1_non_vhe: false,
            stage1: &self.stage1,
            stage2: &self.stage2,
            features: AtFeatures {
                pan2: true,
                pan3: true,
                ats1a: true,
                e0pd: true,
            },
        }
    }

    fn at(&self, op: AtOp, va: u64, context: &AtContext) -> AtOutcome {
        address_translate(op, va, context, &self.ram.slots)
    }
}

/// L1's virtual HCR_EL2 with stage 2 on (E2H as hv treats it).
const VM: u64 = hcr::VM | hcr::E2H;

const DATA_VA: u64 = 0x1234_5000;
const DATA_IPA: u64 = L2_IPA + 0x2_0000;

#[test]
fn par_encodings() {
    // Normal WB Inner Shareable: SH as given, NS and bit 11 set.
    assert_eq!(
        par_translated(0x12_3456_7000, 0xff, 0b11),
        0xff00_0012_3456_7000 | 1 << 11 | 1 << 9 | 0b11 << 7
    );
    // Device and Normal Non-cacheable report Outer Shareable.
    assert_eq!(par_translated(0x1000, 0x04, 0b00) >> 7 & 3, 0b10);
    assert_eq!(par_translated(0x1000, 0x44, 0b11) >> 7 & 3, 0b10);
    assert_eq!(par_translated(0x1000, 0x40, 0b00) >> 7 & 3, 0b10);
    // Normal WT keeps its shareability; the low 12 bits of the PA go.
    assert_eq!(
        par_translated(0x1fff, 0xaa, 0b00),
        0xaa00_0000_0000_1000 | 1 << 11 | 1 << 9
    );
    // A fault: F, FST, PTW, S, bit 11.
    assert_eq!(par_fault(0x07, false, false), 1 | 0x07 << 1 | 1 << 11);
    assert_eq!(
        par_fault(0x0f, true, false),
        1 | 0x0f << 1 | 1 << 9 | 1 << 11
    );
    assert_eq!(par_fault(0x06, true, true), 0xb0d);
}

#[test]
fn attribute_combination() {
    // Normal WB (s1) with stage-2 WB: stage 1's attributes as they are.
    assert_eq!(combine_attributes(0xff, 0b11, 0b1111, 0b11), (0xff, 0b11));
    // With stage-2 WT: WT keeping stage 1's hints (0xff -> 0xbb).
    assert_eq!(combine_attributes(0xff, 0b11, 0b1010, 0b11), (0xbb, 0b11));
    // WB transient RA (0x55... nibble 0b0110) with WT: WT transient 0b0010.
    assert_eq!(combine_attributes(0x66, 0b11, 0b1010, 0b00).0, 0x22);
    // Stage-2 NC inner only.
    assert_eq!(combine_attributes(0xff, 0b00, 0b1101, 0b00).0, 0xf4);
    // Device wins, the more restrictive type.
    assert_eq!(combine_attributes(0xff, 0b11, 0b0001, 0b11).0, 0x04);
    assert_eq!(combine_attributes(0x0c, 0b11, 0b0001, 0b11).0, 0x04);
    assert_eq!(combine_attributes(0x00, 0b11, 0b0011, 0b11).0, 0x00);
    assert_eq!(combine_attributes(0x08, 0b11, 0b1111, 0b11).0, 0x08);
    // Shareability: Outer if either, Inner if either, else Non.
    assert_eq!(combine_attributes(0xff, 0b11, 0b1111, 0b10).1, 0b10);
    assert_eq!(combine_attributes(0xff, 0b00, 0b1111, 0b11).1, 0b11);
    assert_eq!(combine_attributes(0xff, 0b00, 0b1111, 0b00).1, 0b00);
    // FEAT_XS and Tagged encodings combine as their plain counterparts.
    assert_eq!(combine_attributes(0xf0, 0b11, 0b1010, 0b11).0, 0xbb);
    assert_eq!(combine_attributes(0x40, 0b11, 0b1111, 0b11).0, 0x44);
}

#[test]
fn encodings_and_shown_forms() {
    assert_eq!(AtOp::from_encoding(0, 8, 0), Some(AtOp::S1E1R));
    assert_eq!(AtOp::from_encoding(0, 8, 3), Some(AtOp::S1E0W));
    assert_eq!(AtOp::from_encoding(0, 9, 1), Some(AtOp::S1E1WP));
    assert_eq!(AtOp::from_encoding(4, 8, 1), Some(AtOp::S1E2W));
    assert_eq!(AtOp::from_encoding(4, 8, 5), Some(AtOp::S12E1W));
    assert_eq!(AtOp::from_encoding(4, 8, 7), Some(AtOp::S12E0W));
    assert_eq!(AtOp::from_encoding(6, 8, 0), None, "AT S1E3R");
    assert_eq!(AtOp::from_encoding(4, 8, 2), None);
    assert_eq!(AtOp::from_encoding(0, 9, 3), None);
    let none = AtFeatures::default();
    assert!(!AtOp::S1E1RP.exists_for(&none));
    assert!(!AtOp::S1E2A.exists_for(&none));
    assert!(AtOp::S12E0R.exists_for(&none));
    let shown = AtFeatures::from_id_registers(3 << 20, 1 << 60, 1 << 60);
    assert!(shown.pan2 && shown.pan3 && shown.ats1a && shown.e0pd);
    assert!(AtOp::S1E1RP.exists_for(&shown));
    let pan1 = AtFeatures::from_id_registers(1 << 20, 0, 0);
    assert!(!pan1.pan2 && !pan1.ats1a && !pan1.e0pd);
}

/// AT S1E1R on L2's regime: the walk reads L2's tables through L1's stage
/// 2 and PAR_EL1 has the IPA with stage 1's attributes; AT S12E1R adds
/// stage 2 (the L1 IPA, combined attributes).
#[test]
fn s1e1r_and_s12e1r_translate() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA | AF | ISH | attr_index(0));
    let context = setup.context(VM);
    let va = DATA_VA | 0x123;
    assert_eq!(
        setup.at(AtOp::S1E1R, va, &context),
        AtOutcome::Par(par_translated(DATA_IPA, 0xff, 0b11))
    );
    assert_eq!(
        setup.at(AtOp::S12E1R, va, &context),
        AtOutcome::Par(par_translated(l2_to_l1(DATA_IPA), 0xff, 0b11))
    );
    // Stage 2 off (VM = 0): the stage-1 tables are at L1 IPAs, and
    // AT S12E1R is AT S1E1R.
    let mut direct = Tables {
        ram: setup.ram,
        root: 0x4030_0000,
        next: 0x4030_1000,
        at: identity,
    };
    direct.map(DATA_VA, 0x4040_0000 | AF | attr_index(3));
    let mut off = setup.context(hcr::E2H);
    off.l2.ttbr0 = 0x4030_0000;
    let expected = AtOutcome::Par(par_translated(0x4040_0000, 0xaa, 0b00));
    assert_eq!(setup.at(AtOp::S1E1R, va, &off), expected);
    assert_eq!(setup.at(AtOp::S12E1R, va, &off), expected);
}

/// Permissions: AT S1E1W on a read-only page, AT S1E0R on a privileged
/// page, APTable, PAN (RP/WP with PSTATE.PAN) and EPAN.
#[test]
fn stage1_permission_faults() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    let read_only = DATA_VA;
    let user = DATA_VA + 0x1000;
    let user_exec = DATA_VA + 0x2000;
    l2.map(read_only, DATA_IPA | AF | ap(0b10));
    l2.map(user, (DATA_IPA + 0x1000) | AF | ap(0b01) | 1 << 54);
    // EL0 no data access but executable (UXN 0): PAN3's case.
    l2.map(user_exec, (DATA_IPA + 0x2000) | AF | ap(0b00));
    let mut context = setup.context(VM);
    let permission = AtOutcome::Par(par_fault(0x0f, false, false));
    assert!(matches!(setup.at(AtOp::S1E1R, read_only, &context), AtOutcome::Par(p) if p & 1 == 0));
    assert_eq!(setup.at(AtOp::S1E1W, read_only, &context), permission);
    assert_eq!(setup.at(AtOp::S1E0R, read_only, &context), permission);
    assert!(matches!(setup.at(AtOp::S1E0W, user, &context), AtOutcome::Par(p) if p & 1 == 0));
    // PAN: only the P forms, only with PSTATE.PAN.
    assert!(matches!(setup.at(AtOp::S1E1RP, user, &context), AtOutcome::Par(p) if p & 1 == 0));
    context.pstate = PSTATE_PAN;
    assert_eq!(setup.at(AtOp::S1E1RP, user, &context), permission);
    assert_eq!(setup.at(AtOp::S1E1WP, user, &context), permission);
    assert!(matches!(setup.at(AtOp::S1E1R, user, &context), AtOutcome::Par(p) if p & 1 == 0));
    // EPAN (SCTLR_EL1 bit 57): an EL0-executable page is PAN-protected.
    assert!(matches!(setup.at(AtOp::S1E1RP, user_exec, &context), AtOutcome::Par(p) if p & 1 == 0));
    context.l2.sctlr |= 1 << 57;
    assert_eq!(setup.at(AtOp::S1E1RP, user_exec, &context), permission);
    // FEAT_ATS1A: no permission check at all.
    assert!(matches!(setup.at(AtOp::S1E1A, user, &context), AtOutcome::Par(p) if p & 1 == 0));
    // APTable[1] on the level-2 table descriptor: read-only below.
    let table = DATA_VA + 0x20_0000;
    l2.map(table, (DATA_IPA + 0x3000) | AF | ap(0b01));
    let level1 = l2_to_l1(L2_IPA + ((table >> 30) & 0x1ff) * 8);
    let descriptor = setup.ram.read(level1);
    setup.ram.write(level1, descriptor | 0b10 << 61);
    context.pstate = 0;
    assert_eq!(
        setup.at(AtOp::S1E1W, table, &context),
        AtOutcome::Par(par_fault(0x0f, false, false))
    );
    // TCR_EL1.HPD0 (bit 41) disables it.
    context.l2.tcr |= 1 << 41;
    assert!(matches!(setup.at(AtOp::S1E1W, table, &context), AtOutcome::Par(p) if p & 1 == 0));
}

/// Stage-1 faults: translation at the level of the invalid descriptor,
/// access flag, address size (an output beyond the 40-bit IPS), a VA
/// outside T0SZ's range (level 0), EPD1, E0PD0 for EL0.
#[test]
fn stage1_faults_with_their_levels() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA);
    l2.set(DATA_VA + 0x20_0000, 2, 0);
    l2.map(DATA_VA + 0x1000, (1 << 40) | AF);
    let context = setup.context(VM);
    let par = |fst| AtOutcome::Par(par_fault(fst, false, false));
    assert_eq!(
        setup.at(AtOp::S1E1R, DATA_VA, &context),
        par(0x0b),
        "AF 0 at level 3"
    );
    assert_eq!(
        setup.at(AtOp::S1E1R, DATA_VA + 0x20_0000, &context),
        par(0x06)
    );
    assert_eq!(setup.at(AtOp::S1E1R, 0x40_0000_0000, &context), par(0x05));
    assert_eq!(setup.at(AtOp::S1E1R, DATA_VA + 0x1000, &context), par(0x03));
    // Bit 39 set, below bit 55: outside the lower range.
    assert_eq!(setup.at(AtOp::S1E1R, 1 << 39, &context), par(0x04));
    // The top byte is ignored with TBI0, not without.
    let tagged = 0x5a00_0000_0000_0000 | DATA_VA;
    let mut mapped = Setup::new();
    mapped.stage1 = stage1_features();
    let mut t = mapped.l2_tables();
    t.map(DATA_VA, DATA_IPA | AF);
    let mut ctx = mapped.context(VM);
    assert!(matches!(mapped.at(AtOp::S1E1R, tagged, &ctx), AtOutcome::Par(p) if p & 1 == 0));
    ctx.l2.tcr &= !(1 << 37);
    assert_eq!(mapped.at(AtOp::S1E1R, tagged, &ctx), par(0x04));
    // The upper range is disabled (EPD1).
    assert_eq!(
        mapped.at(AtOp::S1E1R, 0xffff_ffff_ffff_f000, &ctx),
        par(0x04)
    );
    // E0PD0 (bit 55) faults EL0 at level 0, not EL1.
    ctx.l2.tcr |= 1 << 55 | 1 << 37;
    assert_eq!(mapped.at(AtOp::S1E0R, DATA_VA, &ctx), par(0x04));
    assert!(matches!(mapped.at(AtOp::S1E1R, DATA_VA, &ctx), AtOutcome::Par(p) if p & 1 == 0));
}

/// A stage-2 fault on L2's stage-1 walk: PAR_EL1 S = 1, PTW = 1 and the
/// stage-2 FST (a translation fault at stage-2 level 3 for a level-2
/// stage-1 table L1 did not map).
#[test]
fn stage2_fault_on_the_stage1_walk() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA | AF);
    // A level-1 entry whose level-2 table is at an L2 IPA L1's stage 2
    // leaves unmapped (but inside its level-3 table: fault at level 3).
    let unmapped_table = L2_IPA + 0x4_0000 + 0x1000 * 100;
    let va = DATA_VA + (1 << 30);
    let slot = l2_to_l1(L2_IPA + ((va >> 30) & 0x1ff) * 8);
    setup.ram.write(slot, unmapped_table | 0b11);
    let context = setup.context(VM);
    assert_eq!(
        setup.at(AtOp::S1E1R, va, &context),
        AtOutcome::Par(par_fault(0x07, true, true))
    );
    assert_eq!(setup.at(AtOp::S1E1R, va, &context), AtOutcome::Par(0xb0f));
    // The same for AT S12E1W.
    assert_eq!(
        setup.at(AtOp::S12E1W, va, &context),
        AtOutcome::Par(par_fault(0x07, true, true))
    );
    // A stage-2 permission fault on the final IPA: S = 1, PTW = 0.
    let read_only_ipa = L2_IPA + 0x100_0000;
    let mut s2 = setup.l1_stage2();
    s2.map(
        read_only_ipa,
        0x4050_0000 | AF | s2ap(0b01) | S2_DEVICE_NGNRE,
    );
    l2.map(DATA_VA + 0x1000, read_only_ipa | AF | ISH);
    assert_eq!(
        setup.at(AtOp::S12E1W, DATA_VA + 0x1000, &context),
        AtOutcome::Par(par_fault(0x0f, true, false))
    );
    // Read: allowed, Device from stage 2 wins over stage 1's WB.
    assert_eq!(
        setup.at(AtOp::S12E1R, DATA_VA + 0x1000, &context),
        AtOutcome::Par(par_translated(0x4050_0000, 0x04, 0b11))
    );
    // AT S1E1W does not look at stage 2's permission on the output.
    assert_eq!(
        setup.at(AtOp::S1E1W, DATA_VA + 0x1000, &context),
        AtOutcome::Par(par_translated(read_only_ipa, 0xff, 0b11))
    );
}

/// A descriptor outside L1's RAM: an external abort on the walk (an
/// exception, not a PAR_EL1 value), at stage 1's level, or at stage 2's
/// with S1PTW when L1's stage-2 table is the one outside.
#[test]
fn descriptors_outside_l1_ram_are_external_aborts() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA | AF);
    // Stage 2 off: L2's level-2 table at an L1 IPA outside RAM.
    let mut off = setup.context(hcr::E2H);
    let mut direct = Tables {
        ram: setup.ram,
        root: 0x4030_0000,
        next: 0x4030_1000,
        at: identity,
    };
    direct.map(DATA_VA, 0x4040_0000 | AF);
    off.l2.ttbr0 = 0x4030_0000;
    let slot = 0x4030_0000 + ((DATA_VA >> 30) & 0x1ff) * 8;
    setup.ram.write(slot, 0x9000_0000 | 0b11);
    assert_eq!(
        setup.at(AtOp::S1E1R, DATA_VA, &off),
        AtOutcome::ExternalAbort {
            level: 2,
            s1ptw: false
        }
    );
    // Stage 2 on: L1's stage-2 level-2 table outside RAM, reached by the
    // stage-1 walk's first read.
    let s2_slot = 0x4000_0000 + ((L2_IPA >> 30) & 0x1ff) * 8;
    setup.ram.write(s2_slot, 0x9000_0000 | 0b11);
    let on = setup.context(VM);
    assert_eq!(
        setup.at(AtOp::S1E1R, DATA_VA, &on),
        AtOutcome::ExternalAbort {
            level: 2,
            s1ptw: true
        }
    );
    // Its syndrome: data abort at the current EL (L1 at virtual EL2:
    // PSTATE EL2h as L1's SPSR shows it), CM, WnR, S1PTW, FSC 0x16.
    let esr = external_abort_syndrome(0b1001, 2, true);
    assert_eq!(esr >> 26, 0x25);
    assert_eq!(esr & 0x1ff, 1 << 8 | 1 << 7 | 1 << 6 | 0x16);
}

/// AT S1E2R/W: L1's own regime. E2H = 0 (one range, EL2 permissions:
/// AP[1] plays no part), stage 1 off (PA = VA, Device-nGnRnE), and the
/// VHE host regime ({E2H, TGE} = {1, 1}) that AT S1E1R then uses too.
#[test]
fn s1e2_and_the_host_regime() {
    let setup = Setup::new();
    let mut own = Tables {
        ram: setup.ram,
        root: 0x4030_0000,
        next: 0x4030_1000,
        at: identity,
    };
    // AP 0b01 (EL0 read/write in a two-range regime), AP 0b11 (read-only).
    own.map(0x1000, 0x4040_0000 | AF | ap(0b01));
    own.map(0x2000, 0x4041_0000 | AF | ap(0b11) | attr_index(2));
    let mut context = setup.context(0);
    context.l1_non_vhe = true;
    context.l1 = RegimeRegisters {
        sctlr: SCTLR_MC,
        tcr: TCR,
        ttbr0: 0x4030_0000,
        ttbr1: 0,
        mair: MAIR,
    };
    assert!(matches!(setup.at(AtOp::S1E2W, 0x1000, &context), AtOutcome::Par(p) if p & 1 == 0));
    assert_eq!(
        setup.at(AtOp::S1E2W, 0x2000, &context),
        AtOutcome::Par(par_fault(0x0f, false, false))
    );
    assert_eq!(
        setup.at(AtOp::S1E2R, 0x2000, &context),
        AtOutcome::Par(par_translated(0x4041_0000, 0x44, 0b00))
    );
    // One range: bit 55 set is out of range.
    assert_eq!(
        setup.at(AtOp::S1E2R, 0xffff_ff80_0000_1000, &context),
        AtOutcome::Par(par_fault(0x04, false, false))
    );
    // Stage 1 off: the VA, Device-nGnRnE; beyond 40 bits an address size
    // fault at level 0.
    context.l1.sctlr = 0;
    assert_eq!(
        setup.at(AtOp::S1E2R, 0x4012_3456, &context),
        AtOutcome::Par(par_translated(0x4012_3000, 0x00, 0b10))
    );
    assert_eq!(
        setup.at(AtOp::S1E2R, 1 << 40, &context),
        AtOutcome::Par(par_fault(0x00, false, false))
    );
    // A VHE L1 with TGE: AT S1E1R and S12E1R translate its own EL2&0
    // regime (two ranges: AP[1] counts), not L2's; AT S1E0W its EL0 view.
    let mut host = setup.context(hcr::E2H | hcr::TGE | hcr::VM);
    host.l1 = context.l1;
    host.l1.sctlr = SCTLR_MC;
    let own_page = AtOutcome::Par(par_translated(0x4040_0000, 0xff, 0b00));
    assert_eq!(setup.at(AtOp::S1E1R, 0x1000, &host), own_page);
    assert_eq!(setup.at(AtOp::S12E1R, 0x1000, &host), own_page);
    assert!(matches!(setup.at(AtOp::S1E0W, 0x1000, &host), AtOutcome::Par(p) if p & 1 == 0));
    assert_eq!(
        setup.at(AtOp::S1E0W, 0x2000, &host),
        AtOutcome::Par(par_fault(0x0f, false, false))
    );
}

/// A non-VHE L1 (E2H = 0) with its virtual HCR_EL2.TGE = 1: the EL1&0
/// regime's stage 1 is off whatever SCTLR_EL1.M (AArch64.S1Enabled), so
/// AT S1E1*/S1E0* give the VA (Device-nGnRnE, or Normal WB Non-shareable
/// with DC), an Address size fault at level 0 beyond the 40 bits of PA
/// L1 is shown; S12E* put L1's stage 2 (VM, or DC) on that VA; AT S1E2*
/// stays on L1's own regime. Before, every form walked L2's stage 1.
#[test]
fn non_vhe_tge_turns_the_el1_stage1_off() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA | AF | ISH | attr_index(0));
    // L2's stage 1 would map DATA_VA; with TGE the VA is the output.
    let mut context = setup.context(hcr::TGE | hcr::VM);
    context.l1_non_vhe = true;
    let va = L2_IPA + 0x3456;
    let s1_off = AtOutcome::Par(par_translated(L2_IPA + 0x3000, 0x00, 0b10));
    for op in [AtOp::S1E1R, AtOp::S1E1W, AtOp::S1E0R, AtOp::S1E0W] {
        assert_eq!(setup.at(op, va, &context), s1_off, "{op:?}");
    }
    // No EL0 permission check either: the EL1-only page is EL0's too.
    assert_eq!(
        setup.at(AtOp::S1E0R, DATA_VA, &context),
        AtOutcome::Par(par_translated(DATA_VA, 0x00, 0b10))
    );
    // S12: stage 2 on the VA; Device from stage 1 wins.
    assert_eq!(
        setup.at(AtOp::S12E1R, va, &context),
        AtOutcome::Par(par_translated(l2_to_l1(L2_IPA + 0x3000), 0x00, 0b10))
    );
    assert_eq!(
        setup.at(AtOp::S12E0W, 0x7000_0000, &context),
        AtOutcome::Par(par_fault(0x05, true, false))
    );
    // Beyond PAMax (40 bits): an Address size fault at level 0.
    assert_eq!(
        setup.at(AtOp::S1E1R, 1 << 40, &context),
        AtOutcome::Par(par_fault(0x00, false, false))
    );
    // TGE with DC: Normal WB Non-shareable at stage 1, stage 2 on (DC).
    context.vhcr = hcr::TGE | hcr::DC;
    assert_eq!(
        setup.at(AtOp::S1E1R, va, &context),
        AtOutcome::Par(par_translated(L2_IPA + 0x3000, 0xff, 0b00))
    );
    assert_eq!(
        setup.at(AtOp::S12E1R, va, &context),
        AtOutcome::Par(par_translated(l2_to_l1(L2_IPA + 0x3000), 0xff, 0b11))
    );
    // TGE without VM or DC: S12 is the stage-1 form.
    context.vhcr = hcr::TGE;
    assert_eq!(setup.at(AtOp::S12E1R, va, &context), s1_off);
    // Without TGE the same registers walk L2's stage 1.
    context.vhcr = hcr::VM;
    assert_eq!(
        setup.at(AtOp::S1E1R, DATA_VA, &context),
        AtOutcome::Par(par_translated(DATA_IPA, 0xff, 0b11))
    );
    // AT S1E2R under TGE: L1's own EL2 regime (here its stage 1 off).
    context.vhcr = hcr::TGE | hcr::VM;
    assert_eq!(
        setup.at(AtOp::S1E2R, 0x4012_3456, &context),
        AtOutcome::Par(par_translated(0x4012_3000, 0x00, 0b10))
    );
}

/// L2's stage 1 off: with L1's HCR_EL2.DC, Normal WB Non-shareable and
/// stage 2 on the VA; without, Device-nGnRnE.
#[test]
fn l2_stage1_off() {
    let setup = Setup::new();
    let mut context = setup.context(hcr::E2H | hcr::DC);
    context.l2.sctlr = 0;
    assert_eq!(
        setup.at(AtOp::S12E1R, L2_IPA + 0x3456, &context),
        AtOutcome::Par(par_translated(l2_to_l1(L2_IPA + 0x3000), 0xff, 0b11))
    );
    assert_eq!(
        setup.at(AtOp::S1E1R, L2_IPA + 0x3456, &context),
        AtOutcome::Par(par_translated(L2_IPA + 0x3000, 0xff, 0b00))
    );
    context.vhcr = VM;
    assert_eq!(
        setup.at(AtOp::S1E1R, L2_IPA + 0x3456, &context),
        AtOutcome::Par(par_translated(L2_IPA + 0x3000, 0x00, 0b10))
    );
    // Stage 2 fault on the final IPA of AT S12E0R: an L2 IPA whose
    // stage-2 level-1 entry is invalid.
    assert_eq!(
        setup.at(AtOp::S12E0R, 0x7000_0000, &context),
        AtOutcome::Par(par_fault(0x05, true, false))
    );
}

/// Review 42 R42-1: with L1's virtual HCR_EL2.PTW, a stage-1 table that
/// L1's stage 2 maps as Device is a stage-2 permission fault on the walk
/// (PAR_EL1 S = 1, PTW = 1, FST a level-3 permission fault: 0xb1f);
/// without PTW, or with the table Normal (even Non-cacheable), the walk
/// reads it. PTW concerns the walk only: AT S12E1R's output on Device
/// stays a translation.
#[test]
fn hcr_ptw_device_table_is_a_stage2_permission_fault() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA | AF | ISH);
    // L2's level-3 table page (the third stage-1 table, L2 IPA + 0x2000).
    let table_ipa = L2_IPA + 0x2000;
    let mut s2 = setup.l1_stage2();
    let table_leaf = |mem_attr: u64| l2_to_l1(table_ipa) | AF | ISH | s2ap(0b11) | mem_attr;
    s2.map(table_ipa, table_leaf(S2_DEVICE_NGNRE));
    let translated = AtOutcome::Par(0xff00_0000_8002_0b80);
    let ptw = setup.context(VM | hcr::PTW);
    assert_eq!(setup.at(AtOp::S1E1R, DATA_VA, &ptw), AtOutcome::Par(0xb1f));
    assert_eq!(setup.at(AtOp::S12E1W, DATA_VA, &ptw), AtOutcome::Par(0xb1f));
    assert_eq!(
        setup.at(AtOp::S1E1R, DATA_VA, &setup.context(VM)),
        translated
    );
    // Every Device type (MemAttr 0b00xx) is protected; Normal NC is not.
    s2.map(table_ipa, table_leaf(0b0011 << 2));
    assert_eq!(setup.at(AtOp::S1E0R, DATA_VA, &ptw), AtOutcome::Par(0xb1f));
    s2.map(table_ipa, table_leaf(0b0101 << 2));
    assert_eq!(setup.at(AtOp::S1E1R, DATA_VA, &ptw), translated);
    // A level-2 block of stage 2 reports its own level (FST 0x0e).
    let block_ipa = L2_IPA + 0x20_0000;
    let s2_level2 = s2.entry(block_ipa, 2);
    setup.ram.write(
        s2_level2,
        0x4020_0000 | AF | ISH | s2ap(0b11) | S2_DEVICE_NGNRE | 0b01,
    );
    let va = DATA_VA + (1 << 30);
    let slot = l2_to_l1(L2_IPA + ((va >> 30) & 0x1ff) * 8);
    setup.ram.write(slot, block_ipa | 0b11);
    assert_eq!(setup.at(AtOp::S1E1R, va, &ptw), AtOutcome::Par(0xb1d));
    // The output of AT S12E1R on Device at stage 2: no fault.
    s2.map(table_ipa, table_leaf(S2_NORMAL_WB));
    s2.map(
        DATA_IPA,
        l2_to_l1(DATA_IPA) | AF | ISH | s2ap(0b11) | S2_DEVICE_NGNRE,
    );
    assert_eq!(
        setup.at(AtOp::S12E1R, DATA_VA, &ptw),
        AtOutcome::Par(0x0400_0000_4012_0b00)
    );
}

/// Review 42 R42-4: APTable\[0\] (no EL0 access below the table
/// descriptor, EL1 unaffected), SCTLR_EL1.C = 0 (Normal reported as
/// Non-cacheable, SH 0b10; Device unchanged), and TCR_EL1.DS, which
/// without FEAT_LPA2 for the granule is ignored (the descriptor's SH
/// counts, bits \[9:8\] are not OA\[51:50\]) and with it is not.
#[test]
fn aptable0_sctlr_c_and_ds_without_lpa2() {
    let mut setup = Setup::new();
    let mut l2 = setup.l2_tables();
    let user = DATA_VA;
    let device = DATA_VA + 0x1000;
    l2.map(user, DATA_IPA | AF | ISH | ap(0b01));
    l2.map(device, (DATA_IPA + 0x1000) | AF | ISH | attr_index(1));
    let context = setup.context(VM);
    let user_page = AtOutcome::Par(0xff00_0000_8002_0b80);
    assert_eq!(setup.at(AtOp::S1E0R, user, &context), user_page);
    assert_eq!(setup.at(AtOp::S1E0W, user, &context), user_page);
    // APTable[0] on the level-2 entry above the page's level-3 table.
    let level2 = l2.entry(user, 2);
    setup.ram.write(level2, setup.ram.read(level2) | 0b01 << 61);
    let permission = AtOutcome::Par(0x81f);
    assert_eq!(setup.at(AtOp::S1E0R, user, &context), permission);
    assert_eq!(setup.at(AtOp::S1E0W, user, &context), permission);
    assert_eq!(setup.at(AtOp::S1E1W, user, &context), user_page);
    // SCTLR_EL1.C = 0.
    let mut uncached = setup.context(VM);
    uncached.l2.sctlr = 0b001;
    assert_eq!(
        setup.at(AtOp::S1E1R, user, &uncached),
        AtOutcome::Par(0x4400_0000_8002_0b00)
    );
    assert_eq!(
        setup.at(AtOp::S1E1R, device, &uncached),
        AtOutcome::Par(0x0400_0000_8002_1b00)
    );
    // TCR_EL1.DS (bit 59) with SH0 Non-shareable, 4K without FEAT_LPA2.
    let mut ds = setup.context(VM);
    ds.l2.tcr |= 1 << 59;
    assert!(!setup.stage1.lpa2_4k);
    assert_eq!(setup.at(AtOp::S1E1W, user, &ds), user_page);
    // With FEAT_LPA2 for 4K, DS counts: Inner Shareable's bits [9:8] are
    // OA[51:50], beyond the 40-bit IPS (a level-3 address size fault).
    setup.stage1.lpa2_4k = true;
    let ds = {
        let mut c = setup.context(VM);
        c.l2.tcr |= 1 << 59;
        c
    };
    assert_eq!(setup.at(AtOp::S1E1W, user, &ds), AtOutcome::Par(0x807));
}

/// L1's RAM where hv's own stage 2 of L1 refuses reads of one page with
/// `error`: `HostDenied` (its leaf valid, without read permission) or
/// `HostChanging` (its leaf broken, hv's break-before-make under way).
struct ReadDenied {
    ram: &'static Memslots<'static>,
    page: u64,
    error: walker::MemoryError,
}

impl walker::GuestMemory for ReadDenied {
    fn read_descriptor(&self, address: u64) -> Result<u64, walker::MemoryError> {
        if address & !0xfff == self.page {
            return Err(self.error);
        }
        self.ram.read_descriptor(address)
    }
    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, walker::MemoryError> {
        self.ram.compare_exchange_descriptor(address, current, new)
    }
}

/// A descriptor in a page hv's stage 2 of L1 maps without read
/// permission (L1's stage-1 table, L1's stage-2 table on the stage-1
/// walk, L1's stage-2 table for the output): hv's own fault, `L0Denied`
/// with the descriptor's L1 IPA, never an external abort for L1 (which
/// treating it as outside L1's RAM gave).
#[test]
fn descriptors_hv_denies_reading_are_hvs_denial_not_aborts() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA | AF);
    let on = setup.context(VM);
    let at = |page: u64, op: AtOp| {
        let memory = ReadDenied {
            ram: &setup.ram.slots,
            page,
            error: walker::MemoryError::HostDenied,
        };
        address_translate(op, DATA_VA, &on, &memory)
    };
    // L2's stage-1 level-1 table (root at L2 IPA L2_IPA): its entry.
    let s1_root = l2_to_l1(L2_IPA);
    let s1_entry = s1_root + ((DATA_VA >> 30) & 0x1ff) * 8;
    assert_eq!(
        at(s1_root, AtOp::S1E1R),
        AtOutcome::L0Denied { l1_ipa: s1_entry }
    );
    // L1's stage-2 root, read by the stage-1 walk's first stage-2 walk.
    let s2_entry = 0x4000_0000 + ((L2_IPA >> 30) & 0x1ff) * 8;
    assert_eq!(
        at(0x4000_0000, AtOp::S1E1R),
        AtOutcome::L0Denied { l1_ipa: s2_entry }
    );
    // Without a denial the same AT completes with a PAR_EL1 value.
    assert!(matches!(
        setup.at(AtOp::S12E1R, DATA_VA, &on),
        AtOutcome::Par(par) if par & 1 == 0
    ));
}

/// A descriptor in a page mid hv's break-before-make of its stage 2 of L1
/// (L2's stage-1 table, L1's stage-2 table on the stage-1 walk): hv's
/// own transient fault, `L0Changing` with the descriptor's L1 IPA (L1
/// executes the AT again), never an external abort for L1 (which treating
/// the page as outside L1's RAM gave) nor a PAR_EL1 fault.
#[test]
fn descriptors_mid_hvs_change_are_retried_not_aborts() {
    let setup = Setup::new();
    let mut l2 = setup.l2_tables();
    l2.map(DATA_VA, DATA_IPA | AF);
    let on = setup.context(VM);
    let at = |page: u64, op: AtOp| {
        let memory = ReadDenied {
            ram: &setup.ram.slots,
            page,
            error: walker::MemoryError::HostChanging,
        };
        address_translate(op, DATA_VA, &on, &memory)
    };
    let s1_root = l2_to_l1(L2_IPA);
    let s1_entry = s1_root + ((DATA_VA >> 30) & 0x1ff) * 8;
    let s2_entry = 0x4000_0000 + ((L2_IPA >> 30) & 0x1ff) * 8;
    for op in [AtOp::S1E1R, AtOp::S12E1R, AtOp::S12E1W] {
        assert_eq!(
            at(s1_root, op),
            AtOutcome::L0Changing { l1_ipa: s1_entry },
            "{op:?}"
        );
        assert_eq!(
            at(0x4000_0000, op),
            AtOutcome::L0Changing { l1_ipa: s2_entry },
            "{op:?}"
        );
    }
    // Its change made, the same AT completes with a PAR_EL1 value.
    assert!(matches!(
        setup.at(AtOp::S12E1R, DATA_VA, &on),
        AtOutcome::Par(par) if par & 1 == 0
    ));
}
