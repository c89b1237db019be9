//! The ID registers L1 reads (HCR_EL2.TID3 traps them): the host's, less
//! what the shadow-mmu service cannot give L1 (shadow-mmu/README.md,
//! "Contract with hv: what L1 may be shown") and what hv does not
//! virtualize for it.

/// An AArch64 ID register of the group-3 space (op0 3, op1 0, CRn 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdRegister {
    Pfr0,
    Pfr1,
    Pfr2,
    Zfr0,
    Smfr0,
    Dfr0,
    Dfr1,
    Afr0,
    Afr1,
    Isar0,
    Isar1,
    Isar2,
    Isar3,
    Mmfr0,
    Mmfr1,
    Mmfr2,
    Mmfr3,
    Mmfr4,
}

impl IdRegister {
    /// The register an MRS with these fields reads; `None` for the rest of
    /// the ID space (AArch32 registers, reserved encodings), which read 0
    /// for L1 (an AArch64-only L1 sees no AArch32 support).
    pub const fn from_encoding(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Option<Self> {
        if op0 != 3 || op1 != 0 || crn != 0 {
            return None;
        }
        Some(match (crm, op2) {
            (4, 0) => IdRegister::Pfr0,
            (4, 1) => IdRegister::Pfr1,
            (4, 2) => IdRegister::Pfr2,
            (4, 4) => IdRegister::Zfr0,
            (4, 5) => IdRegister::Smfr0,
            (5, 0) => IdRegister::Dfr0,
            (5, 1) => IdRegister::Dfr1,
            (5, 4) => IdRegister::Afr0,
            (5, 5) => IdRegister::Afr1,
            (6, 0) => IdRegister::Isar0,
            (6, 1) => IdRegister::Isar1,
            (6, 2) => IdRegister::Isar2,
            (6, 3) => IdRegister::Isar3,
            (7, 0) => IdRegister::Mmfr0,
            (7, 1) => IdRegister::Mmfr1,
            (7, 2) => IdRegister::Mmfr2,
            (7, 3) => IdRegister::Mmfr3,
            (7, 4) => IdRegister::Mmfr4,
            _ => return None,
        })
    }

    /// Whether `(op0, op1, crn)` is the ID group-3 space TID3 traps.
    pub const fn in_id_space(op0: u8, op1: u8, crn: u8, crm: u8) -> bool {
        op0 == 3 && op1 == 0 && crn == 0 && crm >= 1 && crm <= 7
    }
}

const fn field(value: u64, shift: u32) -> u64 {
    value & (0xf << shift)
}

const fn with_field(value: u64, shift: u32, field: u64) -> u64 {
    (value & !(0xf << shift)) | (field << shift)
}

/// ID_AA64MMFR0_EL1.PARange shown to L1: 40 bits (0b0010).
pub const L1_PA_RANGE: u64 = 0b0010;

/// The value L1 reads for `register` whose host value is `host`:
/// - MMFR0: PARange 40 bits; stage 2 with the 4 KiB granule only
///   (TGran4_2 0b0010, TGran16_2 and TGran64_2 0b0001); BigEnd 0
///   (FEAT_MixedEnd hidden: L1's tables are little-endian, as the ipc keys
///   assume); FGT and ECV 0 (not virtualized for L1);
/// - MMFR1: 8-bit VMIDs; HAFDBS 0 (no hardware AF/dirty in L1's tables);
///   FEAT_HCX 0; XNX as the host has it (the service refuses it without);
///   VH 1 (FEAT_VHE: L1's E2H is RES1);
/// - MMFR2: FWB 0 (FEAT_S2FWB hidden), TTL 0, NV 0 (no deeper nesting),
///   EVT 0;
/// - ISAR2: SYSREG_128 and SYSINSTR_128 0 (FEAT_SYSREG128,
///   FEAT_SYSINSTR128: the 128-bit `TLBIP` forms are not decoded);
/// - ISAR3 0: hides FEAT_TLBIW (`TLBI VMALLWS2E1` is not decoded);
/// - MMFR3 \[39:0\] 0: TCRX, SCTLRX, S1PIE, S2PIE, S1POE, S2POE, AIE, MEC,
///   D128, D128_2 (TCR2/SCTLR2, permission indirection and overlays,
///   MAIR2, memory encryption contexts, 128-bit descriptors): neither the
///   walker nor hv's switch of L1's EL2 regime models them, so an L1 that
///   used them would be translated wrongly; the RAS fields above as the
///   host's;
/// - MMFR4: NV_frac 0; E2H0 0b1110 (HCR_EL2.E2H is RES1 for L1, which
///   runs as a VHE guest hypervisor);
/// - PFR0: EL0 and EL1 AArch64 only (0b0001: hv runs no AArch32 L2 and
///   treats L1's HCR_EL2.RW as 1), EL2 and EL3 as the host's (L1 sees
///   EL2), AMU 0, MPAM 0, RAS as the host's; the rest as the host's;
/// - PFR1: GCS 0 (FEAT_GCS hidden: hv switches no GCS register between L1
///   and L2 and runs both with HCRX_EL2.GCSEn 0, review 39 R39-2);
/// - DFR0: PMSVer, TraceFilt, TraceBuffer and BRBE 0 (FEAT_SPE, FEAT_TRF,
///   FEAT_TRBE, FEAT_BRBE hidden): hv emulates none of their EL2 registers
///   (PMSCR_EL2, TRFCR_EL2, BRBCR_EL2 are UNDEFINED for L1) and switches
///   none of their EL1 ones between L1 and L2 (the buffers' EL1 registers
///   trap for both and are UNDEFINED: `traps::hidden_buffer_traps`; so do
///   TRFCR_EL1 and the BRBE registers where the CPU has them:
///   `traps::hidden_trace_filter_trap`, `traps::nested_fine_grained_traps`), and
///   Linux's EL2 set-up writes PMSCR_EL2 and TRFCR_EL2 where they are
///   shown.
pub const fn shown_to_l1(register: IdRegister, host: u64) -> u64 {
    match register {
        IdRegister::Mmfr0 => {
            let v = with_field(host, 0, L1_PA_RANGE);
            let v = with_field(v, 8, 0); // BigEnd
            let v = with_field(v, 32, 0b0001); // TGran16_2
            let v = with_field(v, 36, 0b0001); // TGran64_2
            let v = with_field(v, 40, 0b0010); // TGran4_2
            let v = with_field(v, 56, 0); // FGT
            with_field(v, 60, 0) // ECV
        }
        IdRegister::Mmfr1 => {
            let v = with_field(host, 0, 0); // HAFDBS
            let v = with_field(v, 4, 0); // VMIDBits: 8
            let v = with_field(v, 40, 0); // HCX
            let v = with_field(v, 8, 1); // VH: FEAT_VHE (E2H = 1 is L1's mode)
                                         // XNX [31:28] as the host's.
            with_field(v, 28, field(host, 28) >> 28)
        }
        IdRegister::Mmfr2 => {
            let v = with_field(host, 24, 0); // NV
            let v = with_field(v, 40, 0); // FWB
            let v = with_field(v, 48, 0); // TTL
            with_field(v, 56, 0) // EVT
        }
        IdRegister::Isar2 => with_field(with_field(host, 32, 0), 36, 0),
        IdRegister::Isar3 => 0,
        IdRegister::Mmfr3 => host & !((1 << 40) - 1),
        // NV_frac [23:20]: no FEAT_NV2p1 (L1 is shown no FEAT_NV at all).
        // E2H0 [27:24] 0b1110: FEAT_E2H0 not implemented, HCR_EL2.E2H is
        // RES1 (hv runs this, VHE, L1 with NV1 = 0, the layout of an E2H =
        // 1 guest hypervisor: review 23 H2; a non-VHE L1 is shown
        // `shown_to_non_vhe_l1` and runs with NV1 = 1).
        IdRegister::Mmfr4 => with_field(with_field(host, 20, 0), 24, 0b1110),
        IdRegister::Pfr0 => {
            let v = with_field(host, 44, 0); // AMU
            let v = with_field(v, 0, 0b0001); // EL0: AArch64 only
            let v = with_field(v, 4, 0b0001); // EL1: AArch64 only
            with_field(v, 40, 0) // MPAM
        }
        IdRegister::Pfr1 => with_field(host, 44, 0), // GCS
        IdRegister::Dfr0 => {
            let v = with_field(host, 32, 0); // PMSVer: FEAT_SPE
            let v = with_field(v, 40, 0); // TraceFilt: FEAT_TRF
            let v = with_field(v, 44, 0); // TraceBuffer: FEAT_TRBE
            with_field(v, 52, 0) // BRBE: FEAT_BRBE
        }
        _ => host,
    }
}

/// The value a non-VHE L1 (`el2_regime::L1Vel2Mode::NonVhe`) reads:
/// [`shown_to_l1`] without FEAT_VHE (MMFR1.VH 0, so HCR_EL2.E2H is RES0,
/// and TTBR1_EL2, CONTEXTIDR_EL2 and the `_EL12`/`_EL02` encodings are
/// UNDEFINED) and with MMFR4.E2H0 0b0000 (FEAT_E2H0: HCR_EL2.NV1 is
/// meaningful, as an E2H = 0 guest hypervisor needs).
pub const fn shown_to_non_vhe_l1(register: IdRegister, host: u64) -> u64 {
    let vhe = shown_to_l1(register, host);
    match register {
        IdRegister::Mmfr1 => with_field(vhe, 8, 0),
        IdRegister::Mmfr4 => with_field(vhe, 24, 0),
        _ => vhe,
    }
}

/// `shown` (what L1 would read for `register`) without FEAT_SVE and
/// FEAT_SME: PFR0.SVE and PFR1.SME 0, ZFR0 and SMFR0 0 (so ZCR_EL2,
/// SMCR_EL2 and their EL1 twins are UNDEFINED for L1, `nested::vector`).
/// For a Linux L1 (`hv.nested=linux`): Linux 6.1's EL2 set-up on a CPU
/// whose HCR_EL2.E2H is RES1 (as L1's is, [`shown_to_l1`]'s MMFR4.E2H0)
/// writes CPTR_EL2 0x33ff in its E2H = 0 layout and then clears only that
/// layout's TZ bit before writing ZCR_EL2; with E2H = 1 that value has
/// ZEN 0b00, so the architecture traps its ZCR_EL2 write at its own EL2
/// (an SVE trap it has no handler for yet: its EL2 stub vector takes it
/// as a hypervisor call). Without SVE and SME shown it skips both.
pub const fn without_sve_sme(register: IdRegister, shown: u64) -> u64 {
    match register {
        IdRegister::Pfr0 => with_field(shown, 32, 0), // SVE
        IdRegister::Pfr1 => with_field(shown, 24, 0), // SME
        IdRegister::Zfr0 | IdRegister::Smfr0 => 0,
        _ => shown,
    }
}

/// What hv does with L2's trapped system register access (HCR_EL2.TID3 is
/// always set for L2, [`super::l2_hcr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2IdRead {
    /// An ID group-3 read L1 does not trap itself: hv answers with what L1
    /// is shown ([`shown_to_l1`] of the register; None: an encoding that
    /// reads 0).
    Answer(Option<IdRegister>),
    /// L1's (L1 set TID3, or a trap L1 set in its HCR_EL2): forwarded.
    ForwardToL1,
}

/// L2's trapped MRS/MSR with these fields, L1's virtual HCR_EL2 being
/// `l1_virtual_hcr`.
pub const fn l2_id_read(
    l1_virtual_hcr: u64,
    read: bool,
    op0: u8,
    op1: u8,
    crn: u8,
    crm: u8,
    op2: u8,
) -> L2IdRead {
    if read && l1_virtual_hcr & super::hcr::TID3 == 0 && IdRegister::in_id_space(op0, op1, crn, crm)
    {
        L2IdRead::Answer(IdRegister::from_encoding(op0, op1, crn, crm, op2))
    } else {
        L2IdRead::ForwardToL1
    }
}
