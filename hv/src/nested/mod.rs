//! FEAT_NV2 guest-hypervisor support, the portable part: the VNCR page
//! layout ([`vncr`]), the state changes of a trapped ERET from virtual EL2
//! and of an exception taken to virtual EL2 ([`entry`]), the HCR_EL2
//! values L1 and L2 run with, L1's CPTR_EL2, MDCR_EL2 and HCRX_EL2 and
//! the hardware trap controls hv derives from them ([`traps`]), and the
//! syndromes hv builds for L1. The hardware side is `arch::nested`; the demo guest hypervisor is
//! `arch::nested_l1`.
//!
//! How L1 runs: at hardware EL1 with HCR_EL2.{NV, NV2} set and NV1 clear,
//! the FEAT_NV2 layout of a VHE guest hypervisor: L1 is one with
//! HCR_EL2.E2H = 1, shown as RES1 (ID_AA64MMFR4_EL1.E2H0 0b1110,
//! MMFR1.VH 1; [`idregs::shown_to_l1`]). hv treats L1's virtual E2H as 1
//! whatever L1 wrote in its HCR_EL2 (a VNCR page word L1 reads back
//! without a trap: hv sets E2H in it at each of L1's exits) and TGE as
//! written; an ERET to EL0 with TGE = 1 runs L1's own EL0: its host
//! userspace in its EL2&0 regime (E2H = 1, `hv.nested=host-el0`), or, for
//! a non-VHE L1 (E2H = 0), EL0 in the EL1&0 regime with stage 1 off and
//! its exceptions to EL2 ([`entry::runs_el0_with_tge`],
//! `hv.nested=el0-tge`). Checked on QEMU 10 (`-cpu max`), and what the
//! demo relies on: CurrentEL reads 2; L1's MSR/MRS of ELR_EL2, SPSR_EL2,
//! ESR_EL2 and FAR_EL2 reach the hardware ELR_EL1, SPSR_EL1, ESR_EL1 and
//! FAR_EL1 without a trap (so those hold L1's virtual EL2 state while it
//! runs, and hv reads L1's ERET target there); VTTBR_EL2, VTCR_EL2 and
//! HCR_EL2 are loads and stores to the VNCR page; VBAR_EL2 and HPFAR_EL2
//! trap (EC 0x18: hv keeps VBAR_EL2 in the hardware VBAR_EL1, where the
//! hardware's own exception entry for L1 needs it, and HPFAR_EL2 itself);
//! ERET traps (EC 0x1A), the EL2 TLBIs trap (EC 0x18). With NV1 clear,
//! L1's EL1 register encodings reach the hardware EL1 registers (its own
//! state): L1 reaches L2's EL1 registers through the `_EL12` encodings,
//! which NV2 turns into VNCR page accesses. HCR_EL2.TTLB traps L1's EL1
//! TLBIs too: at virtual EL2 they mean L2's EL1&0 regime, which runs on
//! shadow VMIDs.
//!
//! An L1 may turn its EL2 stage 1 on ([`el2_regime`]): a VHE L1's EL2&0
//! registers are the hardware EL1 ones in the same format, their accesses
//! trapped by HCR_EL2.{TVM, TRVM} so hv sees SCTLR.M (HCR_EL2.DC follows
//! it) and converts SCTLR and TCR (`hv.nested=mmu-vhe`). `hv.nested=mmu`
//! runs the other kind: a non-VHE L1 (FEAT_VHE hidden, so E2H is RES0) at
//! hardware EL1 with NV1 set, whose EL1 register accesses go to the VNCR
//! page (they are L2's) and whose EL2 stage-1 registers trap and are
//! converted onto the hardware EL1 regime.

pub mod at;
pub mod el2_regime;
pub mod entry;
pub mod fault_rate;
pub mod gic;
pub mod handshake;
pub mod idregs;
pub mod l0_denial;
pub mod mid_change;
pub mod timer;
pub mod tlbi_race;
pub mod traps;
pub mod vcpus;
pub mod vector;
pub mod vgic;
pub mod vncr;

#[cfg(test)]
mod tests;

/// Whether a stage-1 TLBI form with these CRn/CRm (op0 1; op1 0 for L2's
/// EL1&0 regime, op1 4 for L1's own EL2 regime, the forms
/// `ipc::tlbi::Tlbi` does not decode) exists for an L1 shown `features`:
/// the Outer Shareable forms (CRm 1, 5) need FEAT_TLBIOS, the range forms
/// (CRm 2, 5, 6) FEAT_TLBIRANGE, the nXS forms (CRn 9) FEAT_XS; a form L1
/// was not shown is UNDEFINED (review 23 L3).
pub const fn stage1_tlbi_form_shown(crn: u8, crm: u8, features: ipc::tlbi::TlbiFeatures) -> bool {
    let outer = crm == 1 || crm == 5;
    let range = crm == 2 || crm == 5 || crm == 6;
    (features.outer_shareable || !outer) && (features.range || !range) && (features.nxs || crn != 9)
}

/// Whether a TLBI with op0 1, op1 4 and these CRm/op2 that is not a
/// stage-2 form (`ipc::Tlbi::from_sys_encoding` decodes those) is one of
/// the EL2 regime's stage-1 forms (DDI 0487, C5.5): ALLE2 (op2 0) and VAE2,
/// VALE2 (op2 1, 5) with CRm 7 (non-shareable), 3 (IS), 1 (OS); RVAE2,
/// RVALE2 (op2 1, 5) with CRm 6, 2 (IS), 5 (OS). Any other encoding is
/// unallocated, UNDEFINED for L1 (review 34 R34-8); FEAT_TLBIW's VMALLWS2E1
/// (op2 2) is hidden, and so is not one.
pub const fn el2_stage1_tlbi_form(crm: u8, op2: u8) -> bool {
    match op2 {
        0 => matches!(crm, 1 | 3 | 7),
        1 | 5 => matches!(crm, 1 | 2 | 3 | 5 | 6 | 7),
        _ => false,
    }
}

/// Which translation regime an EL1-encoded stage-1 TLBI (op1 0: VAE1,
/// ASIDE1, VMALLE1, VAALE1, ...) that L1 executes at virtual EL2 acts on,
/// from L1's virtual HCR_EL2: with {E2H, TGE} = {1, 1} the EL2&0 regime,
/// L1's own (a VHE host kernel flushing its own mappings), otherwise the
/// EL1&0 regime of L1's current VMID, i.e. L2's (review 24 N2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage1TlbiTarget {
    /// L1's own EL2&0 regime: hv's VMID for L1.
    L1Own,
    /// L2's EL1&0 regime: every shadow VMID of L1's VMID (and hv's VMID
    /// for an L2 run with L1's stage 2 off).
    L2,
}

/// See [`Stage1TlbiTarget`].
pub const fn stage1_tlbi_target(l1_virtual_hcr: u64) -> Stage1TlbiTarget {
    if l1_virtual_hcr & (hcr::E2H | hcr::TGE) == hcr::E2H | hcr::TGE {
        Stage1TlbiTarget::L1Own
    } else {
        Stage1TlbiTarget::L2
    }
}

/// What a [`FirstSeen`] says about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// The first time: report it.
    First,
    /// Seen before, or beyond the capacity after [`Sighting::Overflow`]:
    /// stay silent.
    Again,
    /// The first key beyond the capacity: report once that further ones
    /// are not reported.
    Overflow,
}

/// Remembers up to `N` keys (trapped register encodings), so hv reports
/// each guest action once, not once per trap: a hostile L1 cannot flood
/// the console (review 23 F8).
#[derive(Clone, Debug, Default)]
pub struct FirstSeen<const N: usize> {
    seen: arrayvec::ArrayVec<u32, N>,
    overflowed: bool,
}

impl<const N: usize> FirstSeen<N> {
    /// Records `key`.
    pub fn sight(&mut self, key: u32) -> Sighting {
        if self.seen.contains(&key) {
            Sighting::Again
        } else if self.seen.try_push(key).is_ok() {
            Sighting::First
        } else if !self.overflowed {
            self.overflowed = true;
            Sighting::Overflow
        } else {
            Sighting::Again
        }
    }
}

/// HCR_EL2 bits hv uses.
pub mod hcr {
    /// Stage 2 on.
    pub const VM: u64 = 1 << 0;
    /// Protected table walk: a stage-1 walk's read that stage 2 maps as
    /// Device is a stage-2 permission fault.
    pub const PTW: u64 = 1 << 2;
    /// Physical FIQs to EL2; with IMO, EL1's group-0 ICC_* registers are
    /// the virtual interface's (ICV_*) and ICH_HCR_EL2.TALL0 traps them.
    pub const FMO: u64 = 1 << 3;
    /// Physical IRQs to EL2; EL1's group-1 and common ICC_* registers are
    /// the virtual interface's.
    pub const IMO: u64 = 1 << 4;
    /// EL1&0 stage 1 off is Normal write-back (what an L1 or L2 running
    /// with its MMU off is given: coherent with hv's cacheable view of
    /// L1's memory, from which the service reads L1's tables).
    pub const DC: u64 = 1 << 12;
    /// Trap WFI / WFE.
    pub const TWI: u64 = 1 << 13;
    pub const TWE: u64 = 1 << 14;
    /// Trap ID group 1, 2, 3 registers.
    pub const TID1: u64 = 1 << 16;
    pub const TID2: u64 = 1 << 17;
    pub const TID3: u64 = 1 << 18;
    /// Trap SMC.
    pub const TSC: u64 = 1 << 19;
    pub const TIDCP: u64 = 1 << 20;
    pub const TACR: u64 = 1 << 21;
    pub const TSW: u64 = 1 << 22;
    pub const TPCP: u64 = 1 << 23;
    pub const TPU: u64 = 1 << 24;
    /// Trap EL1 TLB maintenance.
    pub const TTLB: u64 = 1 << 25;
    pub const TVM: u64 = 1 << 26;
    /// EL2 host: EL1&0 runs as EL2&0 (never for hv's guests).
    pub const TGE: u64 = 1 << 27;
    /// Route synchronous external aborts to EL2.
    pub const TEA: u64 = 1 << 37;
    /// Pointer authentication key registers at EL1 not trapped.
    pub const APK: u64 = 1 << 40;
    /// Pointer authentication instructions at EL0/EL1 not trapped.
    pub const API: u64 = 1 << 41;
    pub const TRVM: u64 = 1 << 30;
    /// EL1 is AArch64.
    pub const RW: u64 = 1 << 31;
    /// E2H (L1's own view only, RES1 there: hv itself runs with E2H = 0).
    pub const E2H: u64 = 1 << 34;
    /// FEAT_NV: EL1 runs as virtual EL2 (ERET, EL2 registers trap).
    pub const NV: u64 = 1 << 42;
    /// NV1: L1's EL1 register accesses go to the VNCR page (NV2) or trap.
    pub const NV1: u64 = 1 << 43;
    /// Trap AT S1E0*/S1E1* (at virtual EL2 they translate for L2).
    pub const AT: u64 = 1 << 44;
    /// FEAT_NV2: EL2 registers with a VNCR slot are memory accesses.
    pub const NV2: u64 = 1 << 45;
}

/// L1's hardware HCR_EL2 (see the module docs): AArch64 EL1 as virtual EL2
/// with NV2, stage 2 on (L0's map of L1), L1's EL1 TLBIs and AT trapped,
/// SMC trapped (it would reach the firmware), ID group 3 trapped (hv shows
/// L1 what the service supports, [`idregs::shown_to_l1`]).
/// DC: stage 1 off is Normal write-back, coherent with hv's view of L1's
/// RAM; an L1 that turns its EL2 stage 1 on runs with DC clear
/// (`el2_regime::L1Vel2Mode::hardware_hcr`, which also adds NV1 for a
/// non-VHE L1 and TVM/TRVM for a VHE one).
/// API, APK: L1's pointer authentication runs untrapped with the EL1 key
/// registers, which a VHE EL2 shares with EL1 on hardware too (an L1
/// switches L2's keys itself, as KVM does); trapped, L1's first PACIA
/// ended hv (review 23 F3).
pub const L1_HCR: u64 = hcr::RW
    | hcr::VM
    | hcr::DC
    | hcr::NV
    | hcr::NV2
    | hcr::TTLB
    | hcr::AT
    | hcr::TSC
    | hcr::TID3
    | hcr::API
    | hcr::APK;

/// What hv adds to L1's and L2's hardware HCR_EL2 whatever L1 asks: hv's
/// physical interrupts stay hv's (IMO: the watchdog, the kick SGI, the
/// maintenance PPI), and EL1's ICC_* accesses of both interrupt groups
/// reach a virtual interface (FMO: without it a guest's
/// `msr ICC_AP0R0_EL1` would be hv's physical group-0 active priority,
/// masking every interrupt of hv; review 33 R33-1), as
/// `sysregs::hcr_el2` does for ordinary guests. hv has no group-0
/// interrupts, so no physical FIQ ever reaches it.
pub const HV_INTERRUPT_ROUTING: u64 = hcr::IMO | hcr::FMO;

/// The traps L1 may ask for in its virtual HCR_EL2 that hv passes into
/// L2's hardware HCR_EL2: each such exit is forwarded to L1 unchanged.
pub const L1_FORWARDED_TRAPS: u64 = hcr::TWI
    | hcr::TWE
    | hcr::TID1
    | hcr::TID2
    | hcr::TID3
    | hcr::TIDCP
    | hcr::TACR
    | hcr::TSW
    | hcr::TPCP
    | hcr::TPU
    | hcr::TTLB
    | hcr::TVM
    | hcr::TRVM;

/// L2's hardware HCR_EL2 from L1's virtual one: AArch64, stage 2 on (the
/// shadow), SMC trapped (L2 never reaches the firmware; hv forwards it to
/// L1), ID group 3 trapped (L2 reads the values L1 is shown, not the
/// host's: [`idregs::l2_id_read`]), L1's traps ([`L1_FORWARDED_TRAPS`])
/// and DC as L1 set them, and L1's API/APK: where L1 leaves L2's pointer
/// authentication trapped, the trap is forwarded to L1, as L1 asked.
/// Never AT: L2's AT S1E1*/S1E0* run in hardware on the shadow, where a
/// stage-2 fault on their stage-1 walk is a Data Abort to hv (an AT at
/// EL1, DDI 0487 AArch64.AT), resolved as any other L2 fault (review 42
/// R42-3); L1's own HCR_EL2.AT is RES0 (it is shown no FEAT_NV).
/// Never NV, E2H; TGE only with L1's virtual {E2H, TGE} = {0, 1}, where
/// the ERET that uses this runs L1's own EL0 in the EL1&0 regime
/// ([`entry::runs_el0_with_tge`]: an ERET to EL1 under TGE is illegal,
/// and one to EL0 with E2H = 1 is L1's host EL0, entered otherwise).
pub const fn l2_hcr(l1_virtual_hcr: u64) -> u64 {
    let tge = if entry::runs_el0_with_tge(l1_virtual_hcr) {
        hcr::TGE
    } else {
        0
    };
    hcr::RW
        | hcr::VM
        | hcr::TSC
        | hcr::TID3
        | (l1_virtual_hcr & (L1_FORWARDED_TRAPS | hcr::DC | hcr::API | hcr::APK))
        | tge
}

/// What the nested demo counted, for hv's last line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// ERETs of L1 into L2.
    pub l2_entries: u64,
    /// L2 stage-2 aborts sent to the service.
    pub translates: u64,
    /// ... answered with a fault (injected into L1, or an external abort
    /// for L2).
    pub injected: u64,
    /// L1's stage-2 TLBIs (sent to the service unless skipped).
    pub stage2_tlbis: u64,
    /// L1's stage-1 TLBIs for L2 (applied to every shadow VMID).
    pub stage1_tlbis: u64,
    /// L2 exits forwarded to L1 as they came (HVC, SMC, L1's traps).
    pub forwarded: u64,
    /// The service's walks of L1's tables (full: from the start level;
    /// partial: from a cached intermediate path), cache hits,
    /// invalidations and recycled contexts.
    pub walks: u64,
    pub partial_walks: u64,
    pub hits: u64,
    pub invalidations: u64,
    pub recycled: u64,
    /// Requests the service CPU answered over the ipc rings (0: inline).
    pub ring_requests: u64,
    /// hv's side of the recycling handshake ([`handshake`]): the kick
    /// passes recycles ran (one per recycle), the PEs they kicked and the
    /// ones they interrupted and waited for, the entries into L2 a kick
    /// sent back to `shadow_root`, and hv's kick SGIs taken.
    pub kick_passes: u64,
    pub kicked: u64,
    pub waited: u64,
    pub entry_retries: u64,
    pub kick_irqs: u64,
    /// Service `Worker`s hv made (`Service::workers_made`).
    pub workers: u64,
}

/// A nested run made more service `Worker`s than one per vCPU and one for
/// the service CPU (review 38 R38-4: one per L2 entry and inline call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyWorkers {
    pub workers: u64,
    pub most: u64,
}

impl core::fmt::Display for TooManyWorkers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "hv made {} service workers, more than the {} of one per vCPU and one for the service CPU",
            self.workers, self.most
        )
    }
}

/// Why a nested run's end shows the recycling handshake did not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFault {
    /// The service recycled more (or fewer) contexts than hv's kick pass
    /// ran: a recycle without hv's side of the handshake.
    UnkickedRecycles { recycled: u64, kick_passes: u64 },
    /// A run that must recycle (more L2 contexts than the bound) did not.
    NoRecycle,
    /// A run with a second vCPU in L2 while the first recycles never
    /// interrupted a PE in a victim's L2 (or never saw the interrupt
    /// taken): the kick SGI path was not exercised.
    NoInterrupt { waited: u64, kick_irqs: u64 },
}

impl core::fmt::Display for HandshakeFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            HandshakeFault::UnkickedRecycles {
                recycled,
                kick_passes,
            } => write!(
                f,
                "the service recycled {recycled} contexts but hv's recycling handshake ran {kick_passes} kick passes"
            ),
            HandshakeFault::NoRecycle => f.write_str(
                "no context was recycled, though L1 ran more L2 contexts than the service's bound",
            ),
            HandshakeFault::NoInterrupt { waited, kick_irqs } => write!(
                f,
                "with several vCPUs no recycle both interrupted a PE in the victim's L2 and saw hv's kick SGI taken ({waited} PEs waited for, {kick_irqs} kick SGIs taken)"
            ),
        }
    }
}

impl Summary {
    /// Whether the run's counts show hv's handshake held: every recycle
    /// ran hv's kick pass (the service calls it as `reassigned`), a run
    /// with more contexts than the bound (`must_recycle`) recycled, and one
    /// whose second vCPU sits in L2 while the first recycles
    /// (`must_interrupt`) interrupted it out of a victim's L2.
    pub fn handshake_verdict(
        &self,
        must_recycle: bool,
        must_interrupt: bool,
    ) -> Result<(), HandshakeFault> {
        if self.recycled != self.kick_passes {
            return Err(HandshakeFault::UnkickedRecycles {
                recycled: self.recycled,
                kick_passes: self.kick_passes,
            });
        }
        if must_recycle && self.recycled == 0 {
            return Err(HandshakeFault::NoRecycle);
        }
        if must_interrupt && (self.waited == 0 || self.kick_irqs == 0) {
            return Err(HandshakeFault::NoInterrupt {
                waited: self.waited,
                kick_irqs: self.kick_irqs,
            });
        }
        Ok(())
    }
}

impl Summary {
    /// Whether hv kept one service `Worker` per vCPU: at most one for
    /// each of the run's `vcpus` and one for the service CPU.
    pub fn workers_verdict(&self, vcpus: u64) -> Result<(), TooManyWorkers> {
        let most = vcpus + 1;
        if self.workers > most {
            return Err(TooManyWorkers {
                workers: self.workers,
                most,
            });
        }
        Ok(())
    }
}

impl core::fmt::Display for Summary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} entries into L2, {} L2 stage-2 faults sent to the service ({} answered with a fault for L1 or L2), {} L2 exits forwarded to L1, {} stage-2 and {} stage-1 TLBIs from L1; service ({}): {} walks of L1's table ({} full, {} partial), {} hits, {} invalidations, {} recycled contexts; recycling handshake: {} kick passes ({} PEs kicked, {} interrupted and waited for), {} entries retried after a kick, {} kick SGIs taken; {} service workers",
            self.l2_entries,
            self.translates,
            self.injected,
            self.forwarded,
            self.stage2_tlbis,
            self.stage1_tlbis,
            Served(self.ring_requests),
            self.walks.wrapping_add(self.partial_walks),
            self.walks,
            self.partial_walks,
            self.hits,
            self.invalidations,
            self.recycled,
            self.kick_passes,
            self.kicked,
            self.waited,
            self.entry_retries,
            self.kick_irqs,
            self.workers
        )
    }
}

/// Where the service answered.
struct Served(u64);

impl core::fmt::Display for Served {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => f.write_str("inline"),
            n => write!(f, "{n} requests answered over the ipc rings"),
        }
    }
}
