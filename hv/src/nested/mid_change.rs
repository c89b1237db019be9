//! `hv.nested=mid-change`: the steps and the counts of the QEMU case
//! that drives hv's "L0 is mid break-before-make" resume paths
//! (`arch::nested_l1_mid_change` is its L1; hv/README.md, "Accesses mid
//! hv's break-before-make").
//!
//! L1 has two vCPUs. For each step vCPU 0 calls hv (`HVC_MID_CHANGE`),
//! which on vCPU 0's CPU breaks one 2 MiB block of its own map of L1's
//! RAM (the step's [`Broken`]), tells L1 so (a word of L1's memory), and
//! holds the break until the step's [`Resume`] path has resumed vCPU 1's
//! access (or its L2's), which only then starts; then hv moves the block
//! to another PA, writes the step's [`new_value`] into its data page and
//! makes the new entry. vCPU 1 checks its access read that value. (A step
//! that is [`Step::at_rewalk`] has the access first and breaks once its
//! abort reached hv's re-walk, which waits for the break.) At the
//! next call (vCPU 1 has finished the step by then, so no resume of it is
//! still under way) hv checks the step's counts ([`check`]).

/// How hv resumed a guest access that met its break-before-make of L1's
/// RAM (`arch::nested`'s resume paths), counted across vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// L1's own access to its RAM (`L0Stage2::mid_change_abort` on an
    /// exit from L1).
    L1Access,
    /// The re-walk finding the level of L1's own stage-1 walk abort
    /// (`mmu::l1_walk_abort`) read a table page mid the change.
    L1WalkAbort,
    /// L2's access with L1's stage 2 off (hv's map of L1 is L2's stage 2).
    L2Stage2Off,
    /// L2's stage-2 fault on a shadow answered `Retry(L0Changing)` by the
    /// service (its leaf's L1 page, or a page of L1's tables its walk read).
    ServiceRetry,
    /// L1's AT, whose walk of L1's stage 2 read a table page mid the
    /// change (`AtOutcome::L0Changing`).
    L1At,
}

/// The number of [`Resume`] kinds (the counters' array length).
pub const RESUME_KINDS: usize = 5;

impl Resume {
    /// Every kind, in counter order.
    pub const ALL: [Resume; RESUME_KINDS] = [
        Resume::L1Access,
        Resume::L1WalkAbort,
        Resume::L2Stage2Off,
        Resume::ServiceRetry,
        Resume::L1At,
    ];

    /// Its counter's index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// What it is, for hv's lines.
    pub const fn name(self) -> &'static str {
        match self {
            Resume::L1Access => "L1's own access resumed",
            Resume::L1WalkAbort => "L1's walk-abort re-walk resumed",
            Resume::L2Stage2Off => "L2's access with L1's stage 2 off resumed",
            Resume::ServiceRetry => "the service's Retry(L0Changing)",
            Resume::L1At => "L1's AT resumed (AtOutcome::L0Changing)",
        }
    }
}

/// The 2 MiB block of L1's RAM a step breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The block of L1's data pages (the accessed page itself).
    Data,
    /// The block of L1's stage-2 tables for its L2 (pages a walk reads).
    Tables,
}

/// One step: its number (L1's x1), the block hv breaks, the path that
/// must resume the access, and the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub number: u64,
    pub broken: Broken,
    pub resume: Resume,
    /// Another path that may resume the step's retries too (any number
    /// of times, timing's), if any.
    pub also: Option<Resume>,
    /// The external aborts hv must inject in the step (exactly).
    pub aborts: u64,
    /// The step's path resumes exactly once (else at least once).
    pub once: bool,
    /// hv breaks only once vCPU 1's exit reached its re-walk of L1's
    /// stage-1 walk (`arch::nested::mid_change::before_rewalk`), which
    /// waits for the break: the hardware walk read the table page before
    /// the break, hv's re-walk reads it after.
    pub at_rewalk: bool,
    pub access: &'static str,
}

/// The steps, in the order L1 runs them.
pub const STEPS: [Step; 6] = [
    Step {
        number: 1,
        broken: Broken::Data,
        resume: Resume::L1Access,
        also: None,
        aborts: 0,
        once: false,
        at_rewalk: false,
        access: "vCPU 1's L1 loads from its data page",
    },
    Step {
        number: 2,
        broken: Broken::Data,
        resume: Resume::ServiceRetry,
        also: None,
        aborts: 0,
        once: false,
        at_rewalk: false,
        access: "vCPU 1's L2 loads from its data page through the shadow (the leaf's page mid the change)",
    },
    Step {
        number: 3,
        broken: Broken::Tables,
        resume: Resume::ServiceRetry,
        also: None,
        aborts: 0,
        once: false,
        at_rewalk: false,
        access: "vCPU 1's L2 loads from a page it never touched (the walk reads L1's table mid the change)",
    },
    Step {
        number: 4,
        broken: Broken::Tables,
        resume: Resume::L1At,
        also: None,
        aborts: 0,
        once: false,
        at_rewalk: false,
        access: "vCPU 1's L1 runs AT S12E1R on its L2's page (hv's walk reads L1's table mid the change)",
    },
    Step {
        number: 5,
        broken: Broken::Data,
        resume: Resume::L2Stage2Off,
        also: None,
        aborts: 0,
        once: false,
        at_rewalk: false,
        access: "vCPU 1's L2 loads from L1's data page with L1's stage 2 off",
    },
    // L1's stage-1 walk reads its table (in the tables block) and then
    // an IPA outside its RAM: hv re-walks to find the level, meets the
    // break (resumed); L1's retries then fault on the broken table page
    // itself (L1's own access path) until the make; after it the re-walk
    // completes and L1 gets its external abort on the walk, at level 2.
    Step {
        number: 6,
        broken: Broken::Tables,
        resume: Resume::L1WalkAbort,
        also: Some(Resume::L1Access),
        aborts: 1,
        once: true,
        at_rewalk: true,
        access: "vCPU 1's L1, its stage 1 on, loads from a VA whose level-2 table is outside its RAM (hv's re-walk reads L1's table mid the change)",
    },
];

/// L1's x1 for "no more steps" (hv checks the last step's counts).
pub const END: u64 = 0;

/// Step `number`, if it is one.
pub fn step(number: u64) -> Option<&'static Step> {
    STEPS.iter().find(|s| s.number == number)
}

/// The first word of step n's data page before hv's change (L1 writes
/// it): a load that ran before the change, or on the old place, gives it.
pub const OLD_MAGIC: u64 = 0x01d0_0000_0000_0000;
/// The word hv writes there during the change (in the new place for the
/// data block): what the resumed access must read.
pub const NEW_MAGIC: u64 = 0x7e30_0000_0000_0000;
/// What hv leaves in the old place of a block it moved: a load through a
/// stale translation reads it (and a walk through stale tables finds
/// invalid descriptors).
pub const POISONED: u64 = 0;

/// Step `n`'s old value.
pub const fn old_value(n: u64) -> u64 {
    OLD_MAGIC | n
}

/// Step `n`'s new value.
pub const fn new_value(n: u64) -> u64 {
    NEW_MAGIC | n
}

/// A call of L1's out of the protocol's order (review 63 R63-2: hv ran
/// whatever step L1 named, and its END line said every step resumed
/// whichever had run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderError {
    /// L1 named `asked`, where the next step is `next` (or [`END`] after
    /// the last: `next` is None).
    OutOfOrder { asked: u64, next: Option<u64> },
    /// L1 called [`END`] after only `ran` of the steps.
    EndEarly { ran: usize },
}

impl core::fmt::Display for OrderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OrderError::OutOfOrder {
                asked,
                next: Some(next),
            } => write!(f, "L1 asked for step {asked}; the next step is {next}"),
            OrderError::OutOfOrder { asked, next: None } => write!(
                f,
                "L1 asked for step {asked} after the last step; only END is left"
            ),
            OrderError::EndEarly { ran } => {
                write!(f, "L1 called END after {ran} of the {} steps", STEPS.len())
            }
        }
    }
}

/// What L1's call with x1 = `number` asks for after `ran` steps have run:
/// the next step in [`STEPS`]' order (`Some`), or [`END`] once every
/// step ran (`None`); anything else is out of order.
pub fn next_step(ran: usize, number: u64) -> Result<Option<&'static Step>, OrderError> {
    match (STEPS.get(ran), number) {
        (None, END) => Ok(None),
        (Some(_), END) => Err(OrderError::EndEarly { ran }),
        (Some(next), asked) if asked == next.number => Ok(Some(next)),
        (next, asked) => Err(OrderError::OutOfOrder {
            asked,
            next: next.map(|s| s.number),
        }),
    }
}

/// The service's `Retry(L0Changing)` answers during a step, by what hv
/// (L0 to the service) was changing: shadow-mmu's
/// `Stats::l0_changing_output` and `Stats::l0_changing_table`, from the
/// step's start to the next call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceRetries {
    /// The leaf's output: the page of L1's RAM L2's access reaches (a
    /// [`Broken::Data`] step).
    pub output: u64,
    /// A page of L1's stage-2 table the service's walk read (a
    /// [`Broken::Tables`] step).
    pub table: u64,
}

impl ServiceRetries {
    /// What a step that breaks `broken` implies when hv resumed L2
    /// `resumed` times on the service's `Retry(L0Changing)`: every one of
    /// them of the broken block's kind, none of the other.
    pub const fn implied(broken: Broken, resumed: u64) -> ServiceRetries {
        match broken {
            Broken::Data => ServiceRetries {
                output: resumed,
                table: 0,
            },
            Broken::Tables => ServiceRetries {
                output: 0,
                table: resumed,
            },
        }
    }
}

/// What a step's counts broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The step's own path never resumed the access.
    NotResumed(Resume),
    /// The step's own path resumed `count` times where the step implies
    /// once.
    NotOnce { path: Resume, count: u64 },
    /// Another path resumed something (`count` times).
    OtherPath { path: Resume, count: u64 },
    /// hv injected `count` external aborts where the step implies
    /// `expected`.
    Aborts { count: u64, expected: u64 },
    /// The service counted its `Retry(L0Changing)` answers as `got` where
    /// the step's broken block and hv's resumes imply `expected`.
    ServiceRetries {
        got: ServiceRetries,
        expected: ServiceRetries,
    },
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CheckError::NotResumed(path) => {
                write!(
                    f,
                    "no access was counted as {} during the step",
                    path.name()
                )
            }
            CheckError::NotOnce { path, count } => write!(
                f,
                "{count} accesses were counted as {} during the step, not exactly 1",
                path.name()
            ),
            CheckError::OtherPath { path, count } => write!(
                f,
                "{count} accesses were counted as {}, not the step's path",
                path.name()
            ),
            CheckError::Aborts { count, expected } => write!(
                f,
                "hv injected {count} external aborts during the step, not {expected}"
            ),
            CheckError::ServiceRetries { got, expected } => write!(
                f,
                "the service counted {} Retry(L0Changing) mid the change of L1's RAM and {} mid the change of L1's table during the step, not {} and {}",
                got.output, got.table, expected.output, expected.table
            ),
        }
    }
}

/// Checks a step's counts (`resumes` by [`Resume::index`], `aborts` the
/// external aborts hv injected, both from the step's start to the next
/// call): exactly what the step implies is that its own path resumed at
/// least once (as often as the guest ran the access mid the break: timing
/// decides; exactly once for a step whose design fixes it), every other
/// path never (but the step's `also`, any number of times), the step's
/// aborts exactly, and the service's retries (`service`) exactly one per
/// resume on them, each of the broken block's kind.
pub fn check(
    step: &Step,
    resumes: &[u64; RESUME_KINDS],
    aborts: u64,
    service: ServiceRetries,
) -> Result<u64, CheckError> {
    if aborts != step.aborts {
        return Err(CheckError::Aborts {
            count: aborts,
            expected: step.aborts,
        });
    }
    for path in Resume::ALL {
        let count = resumes[path.index()];
        if path != step.resume && Some(path) != step.also && count != 0 {
            return Err(CheckError::OtherPath { path, count });
        }
    }
    let expected = ServiceRetries::implied(step.broken, resumes[Resume::ServiceRetry.index()]);
    if service != expected {
        return Err(CheckError::ServiceRetries {
            got: service,
            expected,
        });
    }
    match resumes[step.resume.index()] {
        0 => Err(CheckError::NotResumed(step.resume)),
        n if step.once && n != 1 => Err(CheckError::NotOnce {
            path: step.resume,
            count: n,
        }),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No service retry: steps 1, 4, 5 and 6 (and step 2 or 3 before its
    /// resumes are counted).
    const NONE: ServiceRetries = ServiceRetries {
        output: 0,
        table: 0,
    };

    /// Review 63 R63-2: L1 must run every step once, in order, then
    /// END; a skipped, repeated or unknown step, or an early END, is out
    /// of order.
    #[test]
    fn steps_run_in_order_then_end() {
        for (ran, s) in STEPS.iter().enumerate() {
            assert_eq!(next_step(ran, s.number), Ok(Some(s)));
            assert_eq!(next_step(ran, END), Err(OrderError::EndEarly { ran }));
            assert_eq!(
                next_step(ran, s.number + 1),
                Err(OrderError::OutOfOrder {
                    asked: s.number + 1,
                    next: Some(s.number)
                })
            );
        }
        assert_eq!(next_step(STEPS.len(), END), Ok(None));
        assert_eq!(
            next_step(STEPS.len(), 1),
            Err(OrderError::OutOfOrder {
                asked: 1,
                next: None
            })
        );
        assert_eq!(
            next_step(1, 1),
            Err(OrderError::OutOfOrder {
                asked: 1,
                next: Some(2)
            })
        );
        assert_eq!(
            next_step(0, u64::MAX),
            Err(OrderError::OutOfOrder {
                asked: u64::MAX,
                next: Some(1)
            })
        );
    }

    #[test]
    fn steps_are_numbered_in_order_and_found() {
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(s.number, i as u64 + 1);
            assert_eq!(step(s.number), Some(s));
        }
        assert_eq!(step(END), None);
        assert_eq!(step(7), None);
        for (i, r) in Resume::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn a_step_passes_only_with_its_own_path_and_no_abort() {
        let s = &STEPS[1];
        let mut counts = [0; RESUME_KINDS];
        assert_eq!(
            check(s, &counts, 0, NONE),
            Err(CheckError::NotResumed(Resume::ServiceRetry))
        );
        counts[Resume::ServiceRetry.index()] = 7;
        let seven = ServiceRetries::implied(Broken::Data, 7);
        assert_eq!(check(s, &counts, 0, seven), Ok(7));
        assert_eq!(
            check(s, &counts, 1, seven),
            Err(CheckError::Aborts {
                count: 1,
                expected: 0
            })
        );
        counts[Resume::L1Access.index()] = 1;
        assert_eq!(
            check(s, &counts, 0, seven),
            Err(CheckError::OtherPath {
                path: Resume::L1Access,
                count: 1
            })
        );
    }

    #[test]
    fn the_rewalk_step_tolerates_l1s_own_retries_and_needs_its_one_abort() {
        let s = step(6).unwrap();
        let mut counts = [0; RESUME_KINDS];
        counts[Resume::L1WalkAbort.index()] = 1;
        counts[Resume::L1Access.index()] = 40;
        assert_eq!(check(s, &counts, 1, NONE), Ok(1));
        assert_eq!(
            check(s, &counts, 0, NONE),
            Err(CheckError::Aborts {
                count: 0,
                expected: 1
            })
        );
        counts[Resume::L1WalkAbort.index()] = 0;
        assert_eq!(
            check(s, &counts, 1, NONE),
            Err(CheckError::NotResumed(Resume::L1WalkAbort))
        );
        counts[Resume::L1WalkAbort.index()] = 2;
        assert_eq!(
            check(s, &counts, 1, NONE),
            Err(CheckError::NotOnce {
                path: Resume::L1WalkAbort,
                count: 2
            })
        );
        counts[Resume::L1WalkAbort.index()] = 1;
        counts[Resume::L1At.index()] = 1;
        assert!(check(s, &counts, 1, NONE).is_err());
    }

    /// The service's retries must be one per resume on them, all of the
    /// broken block's kind: step 2 (L1's RAM) counts the leaf's output,
    /// step 3 (L1's tables) the table page; a retry of the other kind, or
    /// one more or fewer than hv resumed, fails; so does any in a step
    /// that is not the service's.
    #[test]
    fn the_services_retries_match_the_broken_block_and_the_resumes() {
        let mut counts = [0; RESUME_KINDS];
        counts[Resume::ServiceRetry.index()] = 3;
        let output = ServiceRetries {
            output: 3,
            table: 0,
        };
        let table = ServiceRetries {
            output: 0,
            table: 3,
        };
        let data_step = step(2).unwrap();
        let tables_step = step(3).unwrap();
        assert_eq!(check(data_step, &counts, 0, output), Ok(3));
        assert_eq!(check(tables_step, &counts, 0, table), Ok(3));
        assert_eq!(
            check(data_step, &counts, 0, table),
            Err(CheckError::ServiceRetries {
                got: table,
                expected: output
            })
        );
        assert_eq!(
            check(tables_step, &counts, 0, output),
            Err(CheckError::ServiceRetries {
                got: output,
                expected: table
            })
        );
        let one_short = ServiceRetries {
            output: 0,
            table: 2,
        };
        assert!(check(tables_step, &counts, 0, one_short).is_err());
        // Step 4, L1's AT: hv's own walk, never the service's.
        let mut at = [0; RESUME_KINDS];
        at[Resume::L1At.index()] = 1;
        assert_eq!(check(step(4).unwrap(), &at, 0, NONE), Ok(1));
        assert_eq!(
            check(step(4).unwrap(), &at, 0, table),
            Err(CheckError::ServiceRetries {
                got: table,
                expected: NONE
            })
        );
    }

    #[test]
    fn old_and_new_values_differ_from_each_other_and_the_poison() {
        for s in STEPS {
            assert_ne!(old_value(s.number), new_value(s.number));
            assert_ne!(new_value(s.number), POISONED);
            assert_ne!(old_value(s.number), POISONED);
        }
    }
}
