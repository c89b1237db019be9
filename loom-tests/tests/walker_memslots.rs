//! Loom models of the walker's real guest-memory code: [`Memslots`] (built
//! on loom's atomics through `walker/src/sync.rs` under `--cfg loom`) read
//! and updated by the real [`Stage2Walker`], racing L1 writing its tables.
//!
//! - `published_table_is_seen_whole_by_single_and_batched_walks`: L1 fills
//!   a new level-3 table with plain stores and publishes it with a Release
//!   store of the level-2 table descriptor. A batched walk (Relaxed loads +
//!   one Acquire fence in `Memslots::read_descriptors`) and a single walk
//!   (Acquire loads) each see the old translation or the new one, never
//!   the new table pointer with stale (invalid) contents.
//!   Here the level-2 table is outside the largest memslot (the one a
//!   batch reads Relaxed), so its read is an Acquire load of its own:
//! - `published_table_is_seen_whole_by_a_batch_through_the_largest_slot`
//!   (stop 26 audit): the same race with the level-2 table in the largest
//!   memslot, as L1's tables normally are (one RAM slot), so only the
//!   batch's Acquire fence orders the new table's entries after the
//!   descriptor; the first model passes with that fence removed, this one
//!   fails ("saw a torn table").
//! - `hardware_af_update_never_clobbers_l1_rewrite`: a walk with VTCR.HA
//!   sets AF in the leaf by compare-and-swap while L1 rewrites that leaf;
//!   L1's value always survives (the lost CAS restarts the walk, which
//!   then translates through L1's new descriptor), within the retry bound.
//! - `haft_table_af_update_never_clobbers_l1_rewrite`: the same for the
//!   FEAT_HAFT AF update of a table descriptor that L1 repoints at a new
//!   level-3 table.
//! - `published_table_is_seen_whole_by_the_visitor`: the publication race
//!   again, read through `Memslots::read_descriptor` (the table visitor's
//!   and the shadow service's `PathOverlay` path) rather than the hinted
//!   read the walk uses.
//! - `haft_table_af_update_on_a_restored_descriptor_sees_the_edited_table`:
//!   L1 moves a table descriptor away, edits the table, restores the same
//!   descriptor; a walk whose FEAT_HAFT swap lands on the restored value
//!   must read the edited table (the swap's Acquire).
//! - `published_table_is_seen_whole_by_the_specialised_walk`: the
//!   publication race for a walker whose single walks take the walk
//!   specialised for 4KB / DS = 0 / no HA / little-endian / start level
//!   1 (`walker/src/walk/specialised.rs`), with its trail checked.
//! - `published_table_is_seen_whole_by_the_specialised_64k_walk`: the same
//!   race for a 64KB, start-level-2 walker, whose specialised walk is the
//!   out-of-line 16KB/64KB dispatch's.
//! - `published_table_is_seen_whole_by_the_specialised_batch_through_the_largest_slot`
//!   (stop 27): the largest-slot race for a batch of that start-level-1
//!   walker, which takes the batch specialised for it
//!   (`walker/src/walk/specialised_batch.rs`); fails with the batch's
//!   Acquire fence removed.
#![cfg(loom)]
#![allow(
    clippy::result_large_err,
    reason = "model threads hand back the walker's own Result so the checks see exactly what it returned"
)]

use core::ops::ControlFlow;

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use walker::{
    AccessKind, Endianness, ExposedFeatures, FaultCause, IdRegisters, Memslot, Memslots, PathHint,
    SlotAccess, Stage2Registers, Stage2Walker, Translation, WalkError, WalkRequest,
};

/// Level-2 table (the start level): IPA bits 24:21; only entry 0 is used.
const LEVEL2: u64 = 0x1000;
/// The level-3 table L1 starts with, and the one it builds and publishes.
const OLD_TABLE: u64 = 0x2000;
const NEW_TABLE: u64 = 0x3000;
/// Two pages, IPA 0 and 0x1000: level-3 entries 0 and 1.
const IPAS: [u64; 2] = [0x0, 0x1000];
const OLD_OUTPUT: u64 = 0x10_0000;
const NEW_OUTPUT: u64 = 0x20_0000;

const VALID_TABLE: u64 = 0b11;
const AF: u64 = 1 << 10;
const VTCR_HA: u64 = 1 << 21;
const VTCR_HAFT: u64 = 1 << 44;

/// L1's guest memory, as three small memslots of loom atomics; the
/// level-2 slot has `LEVEL2_WORDS` words (4 in [`Guest::largest_slot`]).
struct Guest<const LEVEL2_WORDS: usize = 2> {
    level2: [AtomicU64; LEVEL2_WORDS],
    old: [AtomicU64; 2],
    new: [AtomicU64; 2],
}

impl Guest {
    fn new(level2: u64, old: [u64; 2], new: [u64; 2]) -> Self {
        Guest {
            level2: [AtomicU64::new(level2), AtomicU64::new(0)],
            old: old.map(AtomicU64::new),
            new: new.map(AtomicU64::new),
        }
    }
}

impl Guest<4> {
    /// The level-2 table in the largest memslot (four words to the
    /// level-3 tables' two), pointing to the old table, so a walk reads
    /// its descriptor through `Memslots`' primary-slot paths: a batch's
    /// Relaxed loads and fence, a single walk's inline Acquire load.
    fn largest_slot() -> Self {
        Guest {
            level2: [table(OLD_TABLE), 0, 0, 0].map(AtomicU64::new),
            old: IPAS.map(|ipa| AtomicU64::new(page(OLD_OUTPUT + ipa, AF))),
            new: [0, 0].map(AtomicU64::new),
        }
    }
}

impl<const LEVEL2_WORDS: usize> Guest<LEVEL2_WORDS> {
    /// Run `f` on the real [`Memslots`] over this memory.
    fn with_memslots<R>(&self, f: impl FnOnce(&Memslots<'_>) -> R) -> R {
        let mut slots = [
            Memslot::new(LEVEL2, &self.level2, SlotAccess::ReadWrite),
            Memslot::new(OLD_TABLE, &self.old, SlotAccess::ReadWrite),
            Memslot::new(NEW_TABLE, &self.new, SlotAccess::ReadWrite),
        ];
        let memslots = Memslots::new(&mut slots).expect("the memslots are valid");
        f(&memslots)
    }

    /// L1 builds the new table with plain stores, then publishes it in
    /// the level-2 descriptor (its DSB before the descriptor write makes
    /// this a Release store).
    fn publish_new_table(&self) {
        for (entry, ipa) in self.new.iter().zip(IPAS) {
            entry.store(page(NEW_OUTPUT + ipa, AF), Ordering::Relaxed);
        }
        self.level2[0].store(table(NEW_TABLE), Ordering::Release);
    }
}

/// A thread walking [`IPAS`] as one batch on `guest`'s memslots.
fn spawn_batch<const LEVEL2_WORDS: usize>(
    guest: &Arc<Guest<LEVEL2_WORDS>>,
    walker: &Arc<Stage2Walker>,
) -> thread::JoinHandle<[Result<Translation, WalkError>; 2]> {
    let (guest, walker) = (guest.clone(), walker.clone());
    thread::spawn(move || guest.with_memslots(|memslots| batch_of_ipas(&walker, memslots)))
}

/// A thread making one single walk of `ipa` on `guest`'s memslots.
fn spawn_single<const LEVEL2_WORDS: usize>(
    guest: &Arc<Guest<LEVEL2_WORDS>>,
    walker: &Arc<Stage2Walker>,
    ipa: u64,
) -> thread::JoinHandle<Result<Translation, WalkError>> {
    let (guest, walker) = (guest.clone(), walker.clone());
    thread::spawn(move || {
        guest.with_memslots(|memslots| walker.walk(memslots, ipa, AccessKind::Read))
    })
}

/// 4KB granule, T0SZ 39 (25-bit IPA), SL0 0 (start at level 2), PS 48,
/// plus `extra` (HA, HAFT).
fn walker(hafdbs: u64, extra: u64) -> Stage2Walker {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20), // PARange 48, all granules
        mmfr1: hafdbs,
        mmfr2: 0,
    })
    .expect("valid ID registers");
    let vtcr = 39 | (5 << 16) | extra;
    Stage2Walker::new(
        Stage2Registers {
            vtcr,
            vttbr: LEVEL2,
            endianness: Endianness::Little,
        },
        &features,
    )
}

/// The level-1 table of [`walker_from_level1`] (IPA bit 30), below the
/// other slots so the largest-slot choice of the other models' memslots
/// stays as it was: entry 0 points to [`LEVEL2`].
const LEVEL1: u64 = 0x0;

impl<const LEVEL2_WORDS: usize> Guest<LEVEL2_WORDS> {
    /// [`Guest::with_memslots`] with `level1` as one more slot at [`LEVEL1`].
    fn with_level1_memslots<R>(
        &self,
        level1: &[AtomicU64],
        f: impl FnOnce(&Memslots<'_>) -> R,
    ) -> R {
        let mut slots = [
            Memslot::new(LEVEL1, level1, SlotAccess::ReadWrite),
            Memslot::new(LEVEL2, &self.level2, SlotAccess::ReadWrite),
            Memslot::new(OLD_TABLE, &self.old, SlotAccess::ReadWrite),
            Memslot::new(NEW_TABLE, &self.new, SlotAccess::ReadWrite),
        ];
        let memslots = Memslots::new(&mut slots).expect("the memslots are valid");
        f(&memslots)
    }
}

/// 4KB granule, T0SZ 33 (31-bit IPA), SL0 1 (start at level 1), PS 48,
/// no HA, little-endian: a configuration whose single walks take the
/// walk specialised for it (`walker/src/walk/specialised.rs`).
fn walker_from_level1() -> Stage2Walker {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20), // PARange 48, all granules
        mmfr1: 0,
        mmfr2: 0,
    })
    .expect("valid ID registers");
    Stage2Walker::new(
        Stage2Registers {
            vtcr: 33 | (1 << 6) | (5 << 16),
            vttbr: LEVEL1,
            endianness: Endianness::Little,
        },
        &features,
    )
}

fn table(address: u64) -> u64 {
    address | VALID_TABLE
}

/// A read-only Normal page at `output`, AF as given.
fn page(output: u64, af: u64) -> u64 {
    output | af | (1 << 6) | (0xf << 2) | 0b11
}

/// Which mapping (`OLD_OUTPUT` or `NEW_OUTPUT`, the output of IPA 0) a
/// walk of `ipa` went through. Anything else, such as a translation fault
/// from a stale, invalid entry of the new table, is a torn read.
fn output_of(ipa: u64, result: Result<Translation, WalkError>) -> u64 {
    let translation = match result {
        Ok(translation) => translation,
        Err(error) => panic!("walk of {ipa:#x} saw a torn table: {error:?}"),
    };
    let base = translation.output_address.wrapping_sub(ipa);
    assert!(
        base == OLD_OUTPUT || base == NEW_OUTPUT,
        "walk of {ipa:#x} translated to {:#x}",
        translation.output_address
    );
    base
}

/// Which mapping a batch of [`IPAS`] went through: the batch reads the
/// shared level-2 descriptor once, so both walks went through the same
/// table.
fn batch_output(batch: [Result<Translation, WalkError>; 2]) -> u64 {
    let outputs = [output_of(IPAS[0], batch[0]), output_of(IPAS[1], batch[1])];
    assert_eq!(outputs[0], outputs[1]);
    outputs[0]
}

/// One `walk_batch` of reads of [`IPAS`].
fn batch_of_ipas(
    walker: &Stage2Walker,
    memslots: &Memslots<'_>,
) -> [Result<Translation, WalkError>; 2] {
    let requests = IPAS.map(|ipa| WalkRequest {
        ipa,
        access: AccessKind::Read,
    });
    let mut results = [Err(WalkError::Contended {
        ipa: 0,
        descriptor_address: 0,
    }); 2];
    walker
        .walk_batch(memslots, &requests, &mut results)
        .expect("equal lengths");
    results
}

#[test]
fn published_table_is_seen_whole_by_single_and_batched_walks() {
    loom::model(|| {
        let guest = Arc::new(Guest::new(
            table(OLD_TABLE),
            IPAS.map(|ipa| page(OLD_OUTPUT + ipa, AF)),
            [0, 0],
        ));
        let walker = Arc::new(walker(0, 0));

        let batched = spawn_batch(&guest, &walker);
        let single = spawn_single(&guest, &walker, IPAS[1]);

        guest.publish_new_table();

        let batch = batched.join().unwrap();
        batch_output(batch);
        output_of(IPAS[1], single.join().unwrap());
    });
}

/// L1's single-copy-atomic store of a descriptor the walker may update.
///
/// A swap rather than a store: loom orders writes by vector clocks, so it
/// treats a plain store and a concurrent compare-and-swap as unordered and
/// lets the CAS both read the value before the store and land after it (a
/// lost update the C++/Rust memory model, and the hardware's coherence
/// order, forbid). An RMW is always placed after the newest write, as a
/// store is on hardware; its read is Relaxed and adds no ordering.
fn l1_write(descriptor: &AtomicU64, value: u64) {
    descriptor.swap(value, Ordering::Release);
}

#[test]
fn hardware_af_update_never_clobbers_l1_rewrite() {
    loom::model(|| {
        let old_leaf = page(OLD_OUTPUT, 0);
        let new_leaf = page(NEW_OUTPUT, 0);
        let guest = Arc::new(Guest::new(table(OLD_TABLE), [old_leaf, 0], [0, 0]));
        let walker = Arc::new(walker(1, VTCR_HA));

        let walk = {
            let (guest, walker) = (guest.clone(), walker.clone());
            thread::spawn(move || {
                guest.with_memslots(|memslots| walker.walk(memslots, IPAS[0], AccessKind::Read))
            })
        };
        // L1 remaps the page (break-before-make elided: a single-copy
        // atomic replacement of one valid leaf by another).
        l1_write(&guest.old[0], new_leaf);

        let result = walk.join().unwrap();
        let finally = guest.old[0].load(Ordering::Acquire);
        assert_eq!(
            finally & !AF,
            new_leaf,
            "the AF update clobbered L1's write"
        );
        match output_of(IPAS[0], result) {
            // Updated the old leaf before L1 overwrote it.
            OLD_OUTPUT => assert_eq!(finally, new_leaf),
            // Read (or restarted onto) L1's new leaf and set AF in it.
            _ => assert_eq!(finally, new_leaf | AF),
        }
    });
}

#[test]
fn haft_table_af_update_never_clobbers_l1_rewrite() {
    loom::model(|| {
        let guest = Arc::new(Guest::new(
            table(OLD_TABLE),
            [page(OLD_OUTPUT, AF), 0],
            [page(NEW_OUTPUT, AF), 0],
        ));
        // HAFDBS 0b0011: FEAT_HAFT; VTCR.HA and VTCR.HAFT.
        let walker = Arc::new(walker(3, VTCR_HA | VTCR_HAFT));

        let walk = {
            let (guest, walker) = (guest.clone(), walker.clone());
            thread::spawn(move || {
                guest.with_memslots(|memslots| walker.walk(memslots, IPAS[0], AccessKind::Read))
            })
        };
        // L1 repoints the level-2 table descriptor at the other table (as
        // `l1_write`, keeping what it replaced).
        let replaced = guest.level2[0].swap(table(NEW_TABLE), Ordering::Release);

        let result = walk.join().unwrap();
        let finally = guest.level2[0].load(Ordering::Acquire);
        assert_eq!(
            finally & !AF,
            table(NEW_TABLE),
            "the table AF update clobbered L1's write"
        );
        match output_of(IPAS[0], result) {
            OLD_OUTPUT => {
                assert_eq!(finally, table(NEW_TABLE));
                // A walk through the old table set its AF before L1's
                // write (stop 26 audit: a lost swap taken as done walked
                // on through a descriptor whose AF it never set).
                assert_eq!(
                    replaced,
                    table(OLD_TABLE) | AF,
                    "a walk through the old table left its AF clear"
                );
            }
            _ => assert_eq!(finally, table(NEW_TABLE) | AF),
        }
    });
}

/// The table visitor (`s2walk dump`) reads through
/// `Memslots::read_descriptor`, the path the shadow service's cached-path
/// walks (`PathOverlay`) also take: racing the same publication as above,
/// it must find both pages of the old table or both of the new one, never
/// the new table pointer with its entries still invalid (skipped as
/// unmapped).
#[test]
fn published_table_is_seen_whole_by_the_visitor() {
    loom::model(|| {
        let guest = Arc::new(Guest::new(
            table(OLD_TABLE),
            IPAS.map(|ipa| page(OLD_OUTPUT + ipa, AF)),
            [0, 0],
        ));
        let walker = Arc::new(walker(0, 0));

        let visit = {
            let (guest, walker) = (guest.clone(), walker.clone());
            thread::spawn(move || {
                let mut outputs = Vec::new();
                guest
                    .with_memslots(|memslots| {
                        walker.visit_mappings(memslots, |mapping| match mapping {
                            Ok(mapping) => {
                                outputs.push((mapping.ipa, mapping.output_address));
                                ControlFlow::Continue(())
                            }
                            // The model's tables hold two entries: the
                            // visit ends at the first one past them.
                            Err(fault) => {
                                assert!(
                                    matches!(
                                        fault.cause,
                                        FaultCause::DescriptorOutsideMemslots { .. }
                                    ) && fault.ipa == 0x2000,
                                    "{fault:?}"
                                );
                                ControlFlow::Break(())
                            }
                        })
                    })
                    .expect("a valid configuration");
                outputs
            })
        };

        guest.publish_new_table();

        let outputs = visit.join().unwrap();
        assert_eq!(outputs.len(), 2, "the visit saw a torn table: {outputs:x?}");
        let base = outputs[0].1;
        assert!(base == OLD_OUTPUT || base == NEW_OUTPUT, "{outputs:x?}");
        assert_eq!(outputs, IPAS.map(|ipa| (ipa, base + ipa)));
    });
}

/// FEAT_HAFT's table AF update when L1 moves a table descriptor away, edits
/// the table it pointed to, and points the descriptor back (the same value:
/// the walker's compare-and-swap succeeds on L1's second store). The walk
/// goes on from the descriptor it wrote (AArch64.S2Walk), so its next-level
/// read comes after that store and must see L1's edit: the swap's Acquire
/// is what orders it. A walk through the unedited table is correct only if
/// its AF update landed on the first value (which L1 then overwrote, so the
/// descriptor ends without AF).
#[test]
fn haft_table_af_update_on_a_restored_descriptor_sees_the_edited_table() {
    loom::model(|| {
        let guest = Arc::new(Guest::new(
            table(OLD_TABLE),
            [page(OLD_OUTPUT, AF), 0],
            [page(NEW_OUTPUT, AF), 0],
        ));
        let walker = Arc::new(walker(3, VTCR_HA | VTCR_HAFT));

        let walk = {
            let (guest, walker) = (guest.clone(), walker.clone());
            thread::spawn(move || {
                guest.with_memslots(|memslots| walker.walk(memslots, IPAS[0], AccessKind::Read))
            })
        };
        // L1: away to the other table, edit the old one (unreachable now,
        // so plain stores), then back (the same table descriptor as before).
        l1_write(&guest.level2[0], table(NEW_TABLE));
        guest.old[0].store(page(NEW_OUTPUT, AF), Ordering::Relaxed);
        l1_write(&guest.level2[0], table(OLD_TABLE));

        let result = walk.join().unwrap();
        let finally = guest.level2[0].load(Ordering::Acquire);
        assert_eq!(finally & !AF, table(OLD_TABLE));
        if output_of(IPAS[0], result) == OLD_OUTPUT {
            assert_eq!(
                finally,
                table(OLD_TABLE),
                "AF set on L1's restored descriptor by a walk that read the table from before it"
            );
        }
    });
}

/// The specialised single walk (start level 1) reads a table L1
/// publishes with a Release store whole, as the general walk does: its
/// reads are the same Acquire loads. (Fails with `Memslots`' hinted
/// read beyond the largest slot, which reads the level-2 descriptor
/// here, weakened to Relaxed.)
#[test]
fn published_table_is_seen_whole_by_the_specialised_walk() {
    loom::model(|| {
        let guest = Arc::new(Guest::new(
            table(OLD_TABLE),
            IPAS.map(|ipa| page(OLD_OUTPUT + ipa, AF)),
            [0, 0],
        ));
        let level1 = Arc::new([AtomicU64::new(table(LEVEL2)), AtomicU64::new(0)]);
        let walker = Arc::new(walker_from_level1());
        assert!(walker.takes_specialised_walk());

        let single = {
            let (guest, level1, walker) = (guest.clone(), level1.clone(), walker.clone());
            thread::spawn(move || {
                guest.with_level1_memslots(&level1[..], |memslots| {
                    walker.walk(memslots, IPAS[1], AccessKind::Read)
                })
            })
        };

        guest.publish_new_table();

        let translation = single.join().unwrap();
        output_of(IPAS[1], translation);
        // The trail the specialised walk built: the three reads, in order.
        let trail = translation.unwrap().trail;
        let levels: Vec<i8> = trail.as_slice().iter().map(|r| r.level).collect();
        assert_eq!(levels, [1, 2, 3]);
    });
}

/// The publication race for a walk with a path hint
/// (`walker/src/walk/path_hint.rs`) that predicts the new table: the hint
/// was recorded while the level-2 descriptor pointed to it, and the new
/// table's entries hold a stale page (neither the old nor the new
/// mapping) until L1 writes them and publishes the table again. The walk
/// reads the level-2 descriptor and the predicted entry without waiting
/// for one to decode the other; if it sees the new descriptor (the
/// recorded value: the path holds), its read of the entry, made after in
/// level order with Acquire loads, must see L1's write. (Fails with the
/// predicted walk's leaf read moved before its table reads.)
#[test]
fn published_table_is_seen_whole_by_the_path_hinted_walk() {
    const STALE_OUTPUT: u64 = 0x30_0000;
    loom::model(|| {
        let new_entries = IPAS.map(|ipa| page(NEW_OUTPUT + ipa, AF));
        let guest = Arc::new(Guest::new(
            table(NEW_TABLE),
            IPAS.map(|ipa| page(OLD_OUTPUT + ipa, AF)),
            new_entries,
        ));
        let level1 = Arc::new([AtomicU64::new(table(LEVEL2)), AtomicU64::new(0)]);
        let walker = Arc::new(walker_from_level1());
        // The path through the new table, recorded before L1 moved away
        // from it (untimed: before the threads).
        let mut hint = PathHint::default();
        guest
            .with_level1_memslots(&level1[..], |memslots| {
                walker.walk_path_hinted(memslots, IPAS[0], AccessKind::Read, &mut hint)
            })
            .expect("the new table maps IPA 0");
        assert!(walker.path_hint_predicts(&hint, IPAS[1]));
        guest.level2[0].store(table(OLD_TABLE), Ordering::Relaxed);
        for entry in &guest.new {
            entry.store(page(STALE_OUTPUT, AF), Ordering::Relaxed);
        }

        let single = {
            let (guest, level1, walker) = (guest.clone(), level1.clone(), walker.clone());
            thread::spawn(move || {
                guest.with_level1_memslots(&level1[..], |memslots| {
                    walker.walk_path_hinted(memslots, IPAS[1], AccessKind::Read, &mut hint)
                })
            })
        };

        guest.publish_new_table();

        let translation = single.join().unwrap();
        let base = output_of(IPAS[1], translation);
        // The mapping the level-2 descriptor it read gives.
        let trail = translation.unwrap().trail;
        let levels: Vec<i8> = trail.as_slice().iter().map(|r| r.level).collect();
        assert_eq!(levels, [1, 2, 3]);
        let expected = if trail.as_slice()[1].value == table(NEW_TABLE) {
            NEW_OUTPUT
        } else {
            OLD_OUTPUT
        };
        assert_eq!(base, expected);
    });
}

#[test]
fn published_table_is_seen_whole_by_a_batch_through_the_largest_slot() {
    loom::model(|| {
        let guest = Arc::new(Guest::largest_slot());
        let walker = Arc::new(walker(0, 0));
        let batched = spawn_batch(&guest, &walker);
        guest.publish_new_table();
        let batch = batched.join().unwrap();
        batch_output(batch);
    });
}

/// The largest-slot publication race for a batch of the start-level-1
/// walker, whose batches take the specialised batch
/// (`walker/src/walk/specialised_batch.rs`): its level-2 reads go through
/// the same `read_descriptors` (Relaxed loads from the largest slot, one
/// Acquire fence), the level-1 table in a slot of its own.
#[test]
fn published_table_is_seen_whole_by_the_specialised_batch_through_the_largest_slot() {
    loom::model(|| {
        let guest = Arc::new(Guest::largest_slot());
        let level1 = Arc::new([AtomicU64::new(table(LEVEL2)), AtomicU64::new(0)]);
        let walker = Arc::new(walker_from_level1());
        assert!(walker.takes_specialised_walk());
        let batched = {
            let (guest, level1, walker) = (guest.clone(), level1.clone(), walker.clone());
            thread::spawn(move || {
                guest.with_level1_memslots(&level1[..], |memslots| batch_of_ipas(&walker, memslots))
            })
        };
        guest.publish_new_table();
        let batch = batched.join().unwrap();
        batch_output(batch);
        // The trail the specialised batch built: the three reads, in order.
        let trail = batch[1].unwrap().trail;
        let levels: Vec<i8> = trail.as_slice().iter().map(|r| r.level).collect();
        assert_eq!(levels, [1, 2, 3]);
    });
}

/// The same publication read by a single walk, whose level-2 read is
/// `Memslots::read_descriptor_hinted`'s inline largest-slot load (an
/// Acquire load of its own, not the batch's fence). (Fails with that
/// load weakened to Relaxed.)
#[test]
fn published_table_is_seen_whole_by_a_single_walk_through_the_largest_slot() {
    loom::model(|| {
        let guest = Arc::new(Guest::largest_slot());
        let walker = Arc::new(walker(0, 0));
        let single = spawn_single(&guest, &walker, IPAS[1]);
        guest.publish_new_table();
        output_of(IPAS[1], single.join().unwrap());
    });
}

/// The 64KB layout of [`published_table_is_seen_whole_by_the_specialised_64k_walk`]:
/// the level-2 start table (IPA bit 29: two entries) and the level-3
/// tables, each in a memslot of its own at a 64KB-aligned address.
const LEVEL2_64K: u64 = 0x0;
const OLD_TABLE_64K: u64 = 0x1_0000;
const NEW_TABLE_64K: u64 = 0x2_0000;
/// Two 64KB pages: level-3 entries 0 and 1.
const IPAS_64K: [u64; 2] = [0x0, 0x1_0000];

/// 64KB granule, T0SZ 34 (30-bit IPA), SL0 1 (start at level 2), PS 48,
/// no HA, little-endian, PARange 48 (the 48-bit format): a configuration
/// whose single walks take the 64KB specialised walk.
fn walker_64k_from_level2() -> Stage2Walker {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20), // PARange 48, all granules
        mmfr1: 0,
        mmfr2: 0,
    })
    .expect("valid ID registers");
    Stage2Walker::new(
        Stage2Registers {
            vtcr: 34 | (1 << 6) | (1 << 14) | (5 << 16),
            vttbr: LEVEL2_64K,
            endianness: Endianness::Little,
        },
        &features,
    )
}

/// The 64KB specialised walk (start level 2, out of line behind the
/// 4KB walks' dispatch) reads a table L1 publishes with a Release store
/// whole. (Fails with `Memslots`' hinted read beyond the largest slot,
/// which reads the level-2 descriptor here, weakened to Relaxed.)
#[test]
fn published_table_is_seen_whole_by_the_specialised_64k_walk() {
    loom::model(|| {
        let level2 = Arc::new([AtomicU64::new(table(OLD_TABLE_64K)), AtomicU64::new(0)]);
        let old = Arc::new(IPAS_64K.map(|ipa| AtomicU64::new(page(OLD_OUTPUT + ipa, AF))));
        let new = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let walker = Arc::new(walker_64k_from_level2());
        assert!(walker.takes_specialised_walk());

        let single = {
            let (level2, old, new, walker) =
                (level2.clone(), old.clone(), new.clone(), walker.clone());
            thread::spawn(move || {
                let mut slots = [
                    Memslot::new(LEVEL2_64K, &level2[..], SlotAccess::ReadWrite),
                    Memslot::new(OLD_TABLE_64K, &old[..], SlotAccess::ReadWrite),
                    Memslot::new(NEW_TABLE_64K, &new[..], SlotAccess::ReadWrite),
                ];
                let memslots = Memslots::new(&mut slots).expect("the memslots are valid");
                walker.walk(&memslots, IPAS_64K[1], AccessKind::Read)
            })
        };

        for (entry, ipa) in new.iter().zip(IPAS_64K) {
            entry.store(page(NEW_OUTPUT + ipa, AF), Ordering::Relaxed);
        }
        level2[0].store(table(NEW_TABLE_64K), Ordering::Release);

        let translation = single.join().unwrap();
        output_of(IPAS_64K[1], translation);
        let trail = translation.unwrap().trail;
        let levels: Vec<i8> = trail.as_slice().iter().map(|r| r.level).collect();
        assert_eq!(levels, [2, 3]);
    });
}
