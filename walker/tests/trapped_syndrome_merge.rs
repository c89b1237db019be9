//! `merge_trapped_syndrome` against the ESR_EL2 rules for an LS64
//! instruction (review 36, R36-3), plus a bounded sweep of its invariants
//! over random ESR values.
#![cfg(not(loom))]

use walker::merge_trapped_syndrome;

const DATA: u64 = 0x24 << 26 | 1 << 25;
const INSTRUCTION: u64 = 0x20 << 26 | 1 << 25;
const ISV: u64 = 1 << 24;
const WNR: u64 = 1 << 6;
const S1PTW: u64 = 1 << 7;
const CM: u64 = 1 << 8;

/// Review 36, R36-3. ST64BV X5 (FEAT_LS64_V) trapped on a translation fault of
/// the shadow: ISV = 1, SAS 0b11, SF = 1, LST 0b01, ISS2.Xs = the status
/// register. L1's walk gives an Address size fault. By
/// AArch64.InstructionSyndromeValid an LS64 access has ISV = 1 only for a
/// Translation, Access flag or Permission fault (ESR_EL2.ISV: "ISV is 1
/// when ... ST64BV ... generates a Data Abort for a Translation fault,
/// Access flag fault, or Permission fault"; LS64 is not a single-register
/// load/store, so otherwise ISV is 0), and Xs is RES0 otherwise ("Otherwise,
/// this field is RES0"): the merge drops ISV, SAS, SF, LST and Xs there.
#[test]
fn an_ls64_address_size_fault_has_no_instruction_syndrome() {
    let st64bv = ISV | 0b11 << 22 | 1 << 15 | 0b01 << 11 | WNR;
    let xs = 5u64 << 32;
    let trapped = DATA | st64bv | xs | 0x07;
    for fsc in [0x00u64, 0x01, 0x02, 0x03, 0x29] {
        let merged = merge_trapped_syndrome(DATA | WNR | fsc, trapped);
        assert_eq!(
            merged,
            DATA | WNR | fsc,
            "FSC {fsc:#x}: merged {merged:#x} keeps ISV/SAS/SF or Xs of an LS64 instruction"
        );
    }
}

/// Invariants, over 400k random (walk, trapped) pairs shaped like real
/// ones: never panics (debug build), EC/IL/DFSC/S1PTW/FnV/EA are the
/// walk's, ISV only where L1's fault can have one, ISS2.TnD is 0, CM
/// implies WnR, the
/// merge is idempotent, and hv's two-step merge (service with ESR[31:0],
/// hv again with the full ESR) equals one merge with the full ESR.
#[test]
fn merge_invariants_on_random_syndromes() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400_000u32 {
        let r = next();
        let fsc = [
            0x00, 0x03, 0x04, 0x07, 0x0b, 0x0f, 0x10, 0x13, 0x15, 0x29, 0x2b,
        ][(r % 11) as usize];
        let class = if r & (1 << 8) != 0 { INSTRUCTION } else { DATA };
        let walk = if class == INSTRUCTION {
            class | fsc | (r & S1PTW)
        } else if r & (1 << 40) != 0 && r & S1PTW == 0 {
            class | fsc | CM | WNR
        } else {
            class | fsc | (r & (S1PTW | WNR))
        };
        let trapped = if i % 4 == 0 {
            next()
        } else {
            DATA | (next() & 0x00ff_ffff_01ff_ffff)
        };
        let merged = merge_trapped_syndrome(walk, trapped);
        let walk_owned = 0xfc00_0000 | 1 << 25 | 0x3f | S1PTW | 1 << 10 | 1 << 9;
        assert_eq!(
            merged & walk_owned,
            walk & walk_owned,
            "{walk:#x} {trapped:#x}"
        );
        if merged & ISV != 0 {
            assert_eq!(merged & S1PTW, 0, "{walk:#x} {trapped:#x}");
            // IsExternalSyncAbort: no instruction syndrome (R36-4).
            assert!(
                fsc != 0x10 && !(0x13..=0x17).contains(&fsc),
                "{walk:#x} {trapped:#x}"
            );
            // An LS64 instruction: only translation, access flag and
            // permission faults (R36-3).
            if trapped & (0b11 << 11) != 0 {
                assert!(![0x00, 0x03, 0x29].contains(&fsc), "{walk:#x} {trapped:#x}");
            }
        }
        // ISS2.TnD is a stage-1 permission-fault field: 0 here (R36-4).
        assert_eq!(merged & (1 << 42), 0, "{walk:#x} {trapped:#x}");
        if merged & CM != 0 {
            assert_ne!(merged & WNR, 0);
        }
        assert_eq!(
            merge_trapped_syndrome(merged, trapped),
            merged,
            "{walk:#x} {trapped:#x}"
        );
        let two_step =
            merge_trapped_syndrome(merge_trapped_syndrome(walk, trapped & 0xffff_ffff), trapped);
        assert_eq!(two_step, merged, "{walk:#x} {trapped:#x}");
    }
}
