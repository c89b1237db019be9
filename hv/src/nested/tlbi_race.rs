//! `hv.nested=tlbi-race`: L1's stage-2 TLBIs racing its L2's accesses on
//! another vCPU (`arch::nested_l1_tlbi_race` is its L1; hv/README.md,
//! "L1's TLBIs racing L2 on another vCPU").
//!
//! L1's vCPU 0 remaps two L2 pages ([`X_PAGES`]) once a generation, g = 1
//! to [`GENERATIONS`], each time to fresh L1 pages holding
//! [`value`]`(g, page)` (never reused, so a translation of generation h
//! reads h whatever the interleaving), with break-before-make and the
//! generation's TLBI form ([`TlbiForm::of_generation`]), then publishes g
//! (a store-release). vCPU 1's L2 loops: load-acquire of the published g0,
//! then both pages; a value below generation g0 is a translation the TLBI
//! should have removed (a stale read). vCPU 0 starts the next generation
//! only once L2 has read both pages after the publication. This module
//! has the forms, the values and hv's verdict at the end ([`check`]).

use core::fmt;
use ipc::tlbi::TlbiOp;

/// The generations L1 remaps the pages through (generation 0 is the
/// initial mapping): 13 of each [`TlbiForm`]. Each costs QEMU about ten
/// broadcast TLB flushes (L1's TLBIs and hv's for them, its VMALLE1IS
/// of every vCPU's direct VMID among them), each of which stops every
/// vCPU thread: 100 generations took 12-13 s at load 9.
pub const GENERATIONS: u64 = 65;
/// The L2 pages L1 remaps each generation (adjacent, so one range TLBI
/// of two pages covers both).
pub const X_PAGES: u64 = 2;
/// L2's IPA of the first of them.
pub const X_IPA: u64 = 0x10_0000;
/// The top 16 bits of every value in a data page.
pub const VALUE_MAGIC: u64 = 0x7b1a;
/// What L1 publishes after the last generation: L2 stops.
pub const STOP: u64 = GENERATIONS + 1;

/// The value of L2 page `page`'s word 0 in generation `generation`.
pub const fn value(generation: u64, page: u64) -> u64 {
    (VALUE_MAGIC << 48) | (generation << 8) | page
}

/// Whether `read`, L2's read of page `page` in a read that began after L1
/// published `published`, is a translation L1's TLBIs before that
/// publication removed (or no value of that page at all).
pub const fn stale(read: u64, page: u64, published: u64) -> bool {
    read >> 48 != VALUE_MAGIC || read & 0xff != page || (read >> 8) & 0xffff_ffff < published
}

/// The stage-2 TLBI L1 issues in a generation's break, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbiForm {
    /// TLBI IPAS2E1IS of each page.
    Ipas2e1is,
    /// TLBI IPAS2LE1IS of each page (last level only).
    Ipas2le1is,
    /// One TLBI RIPAS2E1IS of both pages, with the range operand's TTL
    /// hint (level 3). (IPAS2's own TTL field needs FEAT_TTL, which hv
    /// hides from L1: its bits are RES0 there.)
    Ripas2e1isTtl,
    /// One TLBI RIPAS2LE1IS of both pages, no hint.
    Ripas2le1is,
    /// TLBI VMALLS12E1IS (the whole VMID).
    Vmalls12e1is,
}

/// The number of forms.
pub const FORMS: usize = 5;

impl TlbiForm {
    /// Every form, in L1's turn (generation g uses `ALL[g % FORMS]`).
    pub const ALL: [TlbiForm; FORMS] = [
        TlbiForm::Vmalls12e1is,
        TlbiForm::Ipas2e1is,
        TlbiForm::Ipas2le1is,
        TlbiForm::Ripas2e1isTtl,
        TlbiForm::Ripas2le1is,
    ];

    /// The form of generation `generation`'s break.
    pub const fn of_generation(generation: u64) -> TlbiForm {
        Self::ALL[(generation % FORMS as u64) as usize]
    }

    /// The TLBIs of this form one generation issues.
    pub const fn tlbis(self) -> u64 {
        match self {
            TlbiForm::Ipas2e1is | TlbiForm::Ipas2le1is => X_PAGES,
            TlbiForm::Ripas2e1isTtl | TlbiForm::Ripas2le1is | TlbiForm::Vmalls12e1is => 1,
        }
    }

    /// The operation hv decodes from it.
    pub const fn op(self) -> TlbiOp {
        match self {
            TlbiForm::Ipas2e1is => TlbiOp::Ipas2e1,
            TlbiForm::Ipas2le1is => TlbiOp::Ipas2le1,
            TlbiForm::Ripas2e1isTtl => TlbiOp::Ripas2e1,
            TlbiForm::Ripas2le1is => TlbiOp::Ripas2le1,
            TlbiForm::Vmalls12e1is => TlbiOp::Vmalls12e1,
        }
    }

    /// Its counter's index (hv counts L1's TLBIs by operation).
    pub const fn index(self) -> usize {
        match self {
            TlbiForm::Vmalls12e1is => 0,
            TlbiForm::Ipas2e1is => 1,
            TlbiForm::Ipas2le1is => 2,
            TlbiForm::Ripas2e1isTtl => 3,
            TlbiForm::Ripas2le1is => 4,
        }
    }

    /// The counter index of a trapped operation, `None` for ALLE1 (which
    /// L1 never issues: counted apart).
    pub const fn index_of_op(op: TlbiOp) -> Option<usize> {
        match op {
            TlbiOp::Vmalls12e1 => Some(0),
            TlbiOp::Ipas2e1 => Some(1),
            TlbiOp::Ipas2le1 => Some(2),
            TlbiOp::Ripas2e1 => Some(3),
            TlbiOp::Ripas2le1 => Some(4),
            TlbiOp::Alle1 => None,
        }
    }

    /// Its name in hv's lines.
    pub const fn name(self) -> &'static str {
        match self {
            TlbiForm::Ipas2e1is => "IPAS2E1IS",
            TlbiForm::Ipas2le1is => "IPAS2LE1IS",
            TlbiForm::Ripas2e1isTtl => "RIPAS2E1IS (TTL level 3)",
            TlbiForm::Ripas2le1is => "RIPAS2LE1IS",
            TlbiForm::Vmalls12e1is => "VMALLS12E1IS",
        }
    }
}

/// The stage-2 TLBIs of each form (by [`TlbiForm::index`]) L1 issues
/// over `generations` generations.
pub const fn expected_tlbis(generations: u64) -> [u64; FORMS] {
    let mut counts = [0; FORMS];
    let mut g = 1;
    while g <= generations {
        let form = TlbiForm::of_generation(g);
        counts[form.index()] += form.tlbis();
        g += 1;
    }
    counts
}

/// What L1 reports at its END call (its registers x1-x7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1Report {
    /// The generations vCPU 0 ran.
    pub generations: u64,
    /// L2's reads of the pages (two an iteration).
    pub reads: u64,
    /// Those [`stale`].
    pub stale: u64,
    /// The generations (0 included) L2 read both pages in after their
    /// publication (a new published value seen).
    pub generations_read: u64,
    /// The stage-2 faults vCPU 1's L1 took from its L2 (each a
    /// translation fault on one of the pages, in a break) and resumed.
    pub resumed: u64,
    /// The stage-2 TLBIs vCPU 0 issued.
    pub tlbis: u64,
    /// L2's first stale read (its value and the published generation), or
    /// 0 and 0.
    pub first_stale: (u64, u64),
}

/// What hv counted from BEGIN to END.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvCounts {
    /// L1's stage-2 TLBIs trapped on vCPU 0, by [`TlbiForm::index`].
    pub tlbis: [u64; FORMS],
    /// Stage-2 TLBIs trapped from vCPU 1 or of another operation (ALLE1).
    pub other_tlbis: u64,
    /// The service's invalidations (`Stats::invalidations`).
    pub invalidations: u64,
    /// Stage-2 faults of vCPU 1's L2 the service answered with a fault for
    /// L1 (`Inject`), which hv gave L1.
    pub injected: u64,
    /// Every other exception hv gave L1 on any vCPU (but L2's HVCs) and
    /// every abort it gave an L2.
    pub other_to_l1: u64,
    /// Translations the service refused because an invalidation raced
    /// them (`Stats::raced`): shown, not checked (timing's).
    pub raced: u64,
}

/// A rule the run broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// L2 read a stale translation (the property itself).
    Stale {
        stale: u64,
        reads: u64,
        value: u64,
        published: u64,
    },
    /// L1 ran another number of generations.
    Generations { got: u64 },
    /// A generation L2 did not read after its publication.
    GenerationsRead { got: u64 },
    /// Fewer reads than one pair a generation.
    Reads { got: u64 },
    /// L1's own count of its TLBIs is not what the generations imply.
    L1Tlbis { got: u64, expected: u64 },
    /// hv trapped another number of TLBIs of a form.
    Trapped {
        form: TlbiForm,
        got: u64,
        expected: u64,
    },
    /// A stage-2 TLBI of another vCPU or operation.
    OtherTlbis { got: u64 },
    /// The service applied another number of invalidations.
    Invalidations { got: u64, expected: u64 },
    /// hv gave vCPU 1's L1 another number of stage-2 faults than it
    /// resumed.
    Injected { injected: u64, resumed: u64 },
    /// Something else given to L1 (or an abort to L2).
    OtherToL1 { got: u64 },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::Stale { stale, reads, value, published } => write!(
                f,
                "{stale} stale reads of {reads}: vCPU 1's L2 read values of a mapping L1's TLBI had removed; the first: {value:#x} in a read begun after generation {published} was published (a stale translation survived L1's completed TLBI)"
            ),
            Failure::Generations { got } => {
                write!(f, "L1 ran {got} generations, not {GENERATIONS}")
            }
            Failure::GenerationsRead { got } => write!(
                f,
                "vCPU 1's L2 read the pages after the publication of {got} generations, not all {}",
                GENERATIONS + 1
            ),
            Failure::Reads { got } => write!(
                f,
                "vCPU 1's L2 made {got} reads, fewer than two a generation"
            ),
            Failure::L1Tlbis { got, expected } => write!(
                f,
                "L1 counted {got} stage-2 TLBIs of its own where its generations issue {expected}"
            ),
            Failure::Trapped { form, got, expected } => write!(
                f,
                "hv trapped {got} TLBI {} from L1's vCPU 0 where the generations issue {expected}",
                form.name()
            ),
            Failure::OtherTlbis { got } => write!(
                f,
                "hv trapped {got} stage-2 TLBIs from vCPU 1 or of a form L1 never issues"
            ),
            Failure::Invalidations { got, expected } => write!(
                f,
                "the service applied {got} invalidations where L1 issued {expected} stage-2 TLBIs (one each)"
            ),
            Failure::Injected { injected, resumed } => write!(
                f,
                "hv gave vCPU 1's L1 {injected} stage-2 faults of its L2 and L1 resumed {resumed}"
            ),
            Failure::OtherToL1 { got } => write!(
                f,
                "hv gave L1 {got} exceptions other than its L2's stage-2 faults in a break and HVCs (or an L2 an abort)"
            ),
        }
    }
}

/// hv's verdict at END: the stale count first (the property the case
/// exists for, so its failure mode fails on it), then that the run was
/// the one the case describes.
pub fn check(l1: &L1Report, hv: &HvCounts) -> Result<(), Failure> {
    if l1.stale != 0 {
        return Err(Failure::Stale {
            stale: l1.stale,
            reads: l1.reads,
            value: l1.first_stale.0,
            published: l1.first_stale.1,
        });
    }
    if l1.generations != GENERATIONS {
        return Err(Failure::Generations {
            got: l1.generations,
        });
    }
    // vCPU 0 waits for a read of both pages after each publication, and
    // the published value only grows: exactly one new value a generation.
    if l1.generations_read != GENERATIONS + 1 {
        return Err(Failure::GenerationsRead {
            got: l1.generations_read,
        });
    }
    if l1.reads < X_PAGES * (GENERATIONS + 1) {
        return Err(Failure::Reads { got: l1.reads });
    }
    let expected = expected_tlbis(GENERATIONS);
    let total: u64 = expected.iter().sum();
    if l1.tlbis != total {
        return Err(Failure::L1Tlbis {
            got: l1.tlbis,
            expected: total,
        });
    }
    for form in TlbiForm::ALL {
        let (got, expected) = (hv.tlbis[form.index()], expected[form.index()]);
        if got != expected {
            return Err(Failure::Trapped {
                form,
                got,
                expected,
            });
        }
    }
    if hv.other_tlbis != 0 {
        return Err(Failure::OtherTlbis {
            got: hv.other_tlbis,
        });
    }
    if hv.invalidations != total {
        return Err(Failure::Invalidations {
            got: hv.invalidations,
            expected: total,
        });
    }
    if hv.injected != l1.resumed {
        return Err(Failure::Injected {
            injected: hv.injected,
            resumed: l1.resumed,
        });
    }
    if hv.other_to_l1 != 0 {
        return Err(Failure::OtherToL1 {
            got: hv.other_to_l1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn good() -> (L1Report, HvCounts) {
        let expected = expected_tlbis(GENERATIONS);
        let total = expected.iter().sum();
        (
            L1Report {
                generations: GENERATIONS,
                reads: 2 * 347,
                stale: 0,
                generations_read: GENERATIONS + 1,
                resumed: 12,
                tlbis: total,
                first_stale: (0, 0),
            },
            HvCounts {
                tlbis: expected,
                other_tlbis: 0,
                invalidations: total,
                injected: 12,
                other_to_l1: 0,
                raced: 3,
            },
        )
    }

    #[test]
    fn thirteen_generations_of_each_form() {
        assert_eq!(expected_tlbis(GENERATIONS), [13, 26, 26, 13, 13]);
        assert_eq!(expected_tlbis(7), [1, 4, 4, 1, 1]);
        for form in TlbiForm::ALL {
            assert_eq!(TlbiForm::index_of_op(form.op()), Some(form.index()));
            assert_eq!(TlbiForm::ALL[form.index()], form);
        }
        assert_eq!(TlbiForm::index_of_op(TlbiOp::Alle1), None);
    }

    #[test]
    fn a_value_of_an_earlier_generation_or_another_page_is_stale() {
        assert!(!stale(value(5, 1), 1, 5));
        // A later generation's mapping (L1 ran on since the publication).
        assert!(!stale(value(6, 1), 1, 5));
        assert!(stale(value(4, 1), 1, 5));
        assert!(stale(value(5, 0), 1, 5));
        assert!(stale(0, 0, 0));
        assert!(!stale(value(0, 0), 0, 0));
    }

    #[test]
    fn a_clean_run_passes() {
        let (l1, hv) = good();
        assert_eq!(check(&l1, &hv), Ok(()));
        // No fault in a break at all is timing's, not a failure.
        let l1 = L1Report { resumed: 0, ..l1 };
        let hv = HvCounts { injected: 0, ..hv };
        assert_eq!(check(&l1, &hv), Ok(()));
    }

    #[test]
    fn a_stale_read_fails_first() {
        let (l1, hv) = good();
        let l1 = L1Report {
            stale: 2,
            first_stale: (value(2, 0), 3),
            ..l1
        };
        // Even with the invalidations short (the failure mode's hv).
        let hv = HvCounts {
            invalidations: hv.invalidations - 13,
            ..hv
        };
        let failure = check(&l1, &hv).unwrap_err();
        assert!(matches!(
            failure,
            Failure::Stale {
                stale: 2,
                published: 3,
                ..
            }
        ));
        assert!(failure.to_string().starts_with(
            "2 stale reads of 694: vCPU 1's L2 read values of a mapping L1's TLBI had removed; the first: 0x7b1a000000000200 in a read begun after generation 3"
        ));
    }

    #[test]
    fn every_other_rule_fails_alone() {
        let (l1, hv) = good();
        let mut range_short = hv.tlbis;
        range_short[TlbiForm::Ripas2e1isTtl.index()] -= 1;
        let mut one_more = hv.tlbis;
        one_more[TlbiForm::Ripas2le1is.index()] += 1;
        let cases: [(L1Report, HvCounts); 10] = [
            (
                L1Report {
                    generations: GENERATIONS - 1,
                    ..l1
                },
                hv,
            ),
            (
                L1Report {
                    generations_read: GENERATIONS,
                    ..l1
                },
                hv,
            ),
            (
                L1Report {
                    reads: X_PAGES * (GENERATIONS + 1) - 1,
                    ..l1
                },
                hv,
            ),
            (
                L1Report {
                    tlbis: l1.tlbis - 1,
                    ..l1
                },
                hv,
            ),
            (
                l1,
                HvCounts {
                    tlbis: range_short,
                    ..hv
                },
            ),
            (
                l1,
                HvCounts {
                    tlbis: one_more,
                    ..hv
                },
            ),
            (
                l1,
                HvCounts {
                    other_tlbis: 1,
                    ..hv
                },
            ),
            (
                l1,
                HvCounts {
                    invalidations: hv.invalidations - 1,
                    ..hv
                },
            ),
            (l1, HvCounts { injected: 13, ..hv }),
            (
                l1,
                HvCounts {
                    other_to_l1: 1,
                    ..hv
                },
            ),
        ];
        for (l1, hv) in cases {
            assert!(check(&l1, &hv).is_err(), "{l1:?} {hv:?}");
        }
    }
}
