//! Which level of the guest's own stage-1 walk an external abort hit.
//!
//! A guest stage-1 walk that reads a descriptor from an IPA with nothing
//! behind it reaches hv as a stage-2 fault with ESR_EL2.S1PTW = 1: FAR_EL2
//! holds the VA being translated and HPFAR_EL2 the IPA page of the
//! descriptor, but no syndrome field gives the stage-1 level. The guest
//! must see what a bus error on that read gives (AArch64.S1Walk: a
//! synchronous External abort on the translation table walk), whose fault
//! status code names the level: 0x14 + level, 0x13 for level -1
//! (FEAT_LPA2). hv finds the level by walking the guest's tables itself,
//! as AArch64.S1Walk does, until the descriptor it would read lies in the
//! faulting page.
//!
//! The walk follows the guest's registers (TTBR0/1_EL1, TCR_EL1, SCTLR_EL1
//! EE): the half of the VA space by VA bit 55, the granule (TG0/TG1), the
//! input size (T0SZ/T1SZ) and start level, the 52-bit output formats
//! (TCR_EL1.DS for 4K/16K, TCR_EL1.IPS = 52 bits for 64K), big-endian
//! tables. 128-bit descriptors (TCR2_EL1.D128) are not modelled.
//!
//! None means this walk does not reach the faulting page: the stage-1
//! MMU is off, the walk ends at a block, a page or an invalid descriptor
//! first, it reads memory that is not the guest's first, or the
//! configuration is one hv does not model. That happens when the guest
//! changed its tables after the hardware's walk; the caller then decides
//! what to inject (`arch` injects the plain external abort, FSC 0x10, and
//! reports it).

/// The guest's stage-1 translation registers (EL1&0 regime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage1Regs {
    pub sctlr: u64,
    pub tcr: u64,
    /// TCR2_EL1 (0 without FEAT_TCR2).
    pub tcr2: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    /// The PE's own ID_AA64MMFR2_EL1 (the walk being modelled is its
    /// hardware's): ST (FEAT_TTST) and VARange (FEAT_LVA) bound T0SZ/T1SZ.
    pub id_aa64mmfr2: u64,
}

const SCTLR_M: u64 = 1 << 0;
const SCTLR_EE: u64 = 1 << 25;
const TCR_EPD0: u64 = 1 << 7;
const TCR_EPD1: u64 = 1 << 23;
const TCR_DS: u64 = 1 << 59;
/// TCR2_EL1.D128: VMSAv9-128 (128-bit descriptors).
const TCR2_D128: u64 = 1 << 5;

use crate::nested::el2_regime::{Granule as S1Granule, Stage1Features};
use walker::{FaultKind, GuestMemory, MemoryError};

/// The translation granule's size as a power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Granule {
    K4 = 12,
    K16 = 14,
    K64 = 16,
}

/// The T0SZ/T1SZ value `txsz` as the hardware walk uses it
/// (AArch64.GetS1TTWParams): below the minimum it is the minimum, above
/// the maximum the maximum. AArch64.S1TxSZFaults faults such a value
/// instead: below the minimum always with FEAT_LVA, otherwise as the
/// IMPLEMENTATION DEFINED "Fault on TxSZ value below minimum" and "Fault
/// on TxSZ value above maximum" choose. An implementation that faults
/// makes no walk with that TCR, so no stage-2 fault on a walk reaches hv
/// from it: whenever one does, the walk used the clamped value (or the
/// guest changed TCR_EL1 since, which no choice here can know), so
/// clamping is the one model that matches every implementation.
///
/// - minimum (AArch64.S1MinTxSZ, 64-bit descriptors): 12 with TCR_EL1.DS
///   (4K/16K), or with the 64K granule and FEAT_LVA
///   (ID_AA64MMFR2_EL1.VARange = 1); 16 otherwise;
/// - maximum (AArch64.MaxTxSZ): with FEAT_TTST (ID_AA64MMFR2_EL1.ST = 1)
///   48 for 4K and 16K, 47 for 64K; 39 otherwise.
fn clamped_txsz(txsz: u32, granule: Granule, ds: bool, id_aa64mmfr2: u64) -> u32 {
    let lva = (id_aa64mmfr2 >> 16) & 0xf == 1;
    let ttst = (id_aa64mmfr2 >> 28) & 0xf == 1;
    let min = if ds || (granule == Granule::K64 && lva) {
        12
    } else {
        16
    };
    let max = match (ttst, granule) {
        (true, Granule::K64) => 47,
        (true, _) => 48,
        (false, _) => 39,
    };
    txsz.clamp(min, max)
}

/// The level at which the guest's walk of `va` reads a descriptor in the
/// 4 KiB IPA page `fault_page` (an IPA with the low 12 bits clear, from
/// HPFAR_EL2), reading descriptors with `read` (an IPA to the 64-bit word
/// there, in memory byte order; None when the IPA is not the guest's
/// memory). Reads at most one descriptor per level.
pub fn walk_abort_level(
    regs: &Stage1Regs,
    va: u64,
    fault_page: u64,
    mut read: impl FnMut(u64) -> Option<u64>,
) -> Option<i8> {
    if regs.sctlr & SCTLR_M == 0 || regs.tcr2 & TCR2_D128 != 0 {
        return None;
    }
    let upper = va & (1 << 55) != 0;
    let (ttbr, txsz, granule, disabled) = if upper {
        let granule = match (regs.tcr >> 30) & 3 {
            0b01 => Granule::K16,
            0b10 => Granule::K4,
            0b11 => Granule::K64,
            _ => return None,
        };
        (
            regs.ttbr1,
            (regs.tcr >> 16) & 0x3f,
            granule,
            regs.tcr & TCR_EPD1 != 0,
        )
    } else {
        let granule = match (regs.tcr >> 14) & 3 {
            0b00 => Granule::K4,
            0b01 => Granule::K64,
            0b10 => Granule::K16,
            _ => return None,
        };
        (
            regs.ttbr0,
            regs.tcr & 0x3f,
            granule,
            regs.tcr & TCR_EPD0 != 0,
        )
    };
    if disabled {
        return None;
    }
    let ds = granule != Granule::K64 && regs.tcr & TCR_DS != 0;
    // TCR_EL1.IPS = 0b110: 52-bit output, which the 64K granule encodes
    // in OA[51:48] at descriptor bits [15:12] (FEAT_LPA).
    let lpa_64k = granule == Granule::K64 && (regs.tcr >> 32) & 0b111 == 0b110;
    let txsz = clamped_txsz(txsz as u32, granule, ds, regs.id_aa64mmfr2);
    let big_endian = regs.sctlr & SCTLR_EE != 0;
    let geometry = Geometry::new(ttbr, txsz, granule, ds, lpa_64k, big_endian)?;
    let mut table = geometry.table;
    let mut level = geometry.start;
    loop {
        let address = geometry.descriptor_address(table, va, level);
        if address & !0xfff == fault_page & !0xfff {
            return Some(level);
        }
        let descriptor = geometry.descriptor(read(address)?);
        // A table descriptor (bits [1:0] = 0b11) before level 3 goes on;
        // anything else ends the walk short of the faulting page.
        if level == 3 || descriptor & 0b11 != 0b11 {
            return None;
        }
        table = next_table(descriptor, granule, ds, lpa_64k);
        level += 1;
    }
}

/// A descriptor read of [`walk_abort_level_in`] met the host's
/// break-before-make of the page holding it
/// ([`walker::MemoryError::HostChanging`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePageChanging {
    /// The IPA of the descriptor.
    pub ipa: u64,
}

/// [`walk_abort_level`] reading the guest's tables from `memory` (L1's
/// RAM as the host maps it; descriptors raw, as [`GuestMemory`] gives
/// them). A read the host answers "changing" (its break-before-make of
/// that table page under way) ends the re-walk with
/// [`TablePageChanging`]: the level the hardware's walk aborted at cannot
/// be told now, and the page is not outside the guest's RAM, so the
/// caller resumes the guest, whose walk runs again (a translation fault
/// mid the change, which the host waits out, or the same abort after
/// it), rather than give it an external abort of unknown level. Any other
/// refused read is unbacked, as for [`walk_abort_level`].
pub fn walk_abort_level_in<M: GuestMemory + ?Sized>(
    regs: &Stage1Regs,
    va: u64,
    fault_page: u64,
    memory: &M,
) -> Result<Option<i8>, TablePageChanging> {
    let mut changing = None;
    let level = walk_abort_level(regs, va, fault_page, |ipa| {
        match memory.read_descriptor(ipa) {
            Ok(raw) => Some(u64::from_le(raw)),
            Err(error) => {
                if error == MemoryError::HostChanging {
                    changing = Some(TablePageChanging { ipa });
                }
                None
            }
        }
    });
    match changing {
        Some(changing) => Err(changing),
        None => Ok(level),
    }
}

/// The shape of one VA range's walk (AArch64.S1Walk's start level and
/// table base, from the range's TTBR, TxSZ and granule), shared by
/// [`walk_abort_level`] and [`translate`].
#[derive(Clone, Copy, Debug)]
struct Geometry {
    granule: Granule,
    /// TCR.DS in effect (FEAT_LPA2: 52-bit tables with 4K/16K).
    ds: bool,
    /// The 64K granule with a 52-bit output (FEAT_LPA).
    lpa_64k: bool,
    start: i8,
    /// Index bits at the start level (fewer than a full table's).
    top_index_bits: u32,
    /// The start-level table: BADDR aligned to the table's size.
    table: u64,
    big_endian: bool,
}

impl Geometry {
    /// None when `txsz` leaves no level to walk or needs a start level
    /// below -1 (or -1 without DS): not a walk the hardware makes.
    fn new(
        ttbr: u64,
        txsz: u32,
        granule: Granule,
        ds: bool,
        lpa_64k: bool,
        big_endian: bool,
    ) -> Option<Geometry> {
        let page_bits = granule as u32;
        let stride = page_bits - 3;
        let input_bits = 64u32.checked_sub(txsz)?;
        if input_bits <= page_bits {
            return None;
        }
        let levels = (input_bits - page_bits).div_ceil(stride);
        let start = 4 - levels as i8;
        if start < -1 || (start == -1 && !ds) {
            return None;
        }
        // TTBR BADDR: bits [47:1], with [51:48] in TTBR bits [5:2] for a
        // 52-bit output; the table is aligned to its own size (at least 64
        // bytes), the bits below being RES0.
        let table = if ds || lpa_64k {
            (ttbr & 0x0000_ffff_ffff_ffc0) | ((ttbr >> 2) & 0xf) << 48
        } else {
            ttbr & 0x0000_ffff_ffff_fffe
        };
        let top_index_bits = input_bits - page_bits - (levels - 1) * stride;
        let table_size = (1u64 << top_index_bits) * 8;
        Some(Geometry {
            granule,
            ds,
            lpa_64k,
            start,
            top_index_bits,
            table: table & !(table_size.max(64) - 1),
            big_endian,
        })
    }

    fn page_bits(&self) -> u32 {
        self.granule as u32
    }

    fn stride(&self) -> u32 {
        self.page_bits() - 3
    }

    /// The lowest VA bit `level` resolves.
    fn level_shift(&self, level: i8) -> u32 {
        self.page_bits() + (3 - level) as u32 * self.stride()
    }

    /// Where the descriptor for `va` lies in the `level` table at `table`.
    fn descriptor_address(&self, table: u64, va: u64, level: i8) -> u64 {
        let index_bits = if level == self.start {
            self.top_index_bits
        } else {
            self.stride()
        };
        let index = (va >> self.level_shift(level)) & ((1u64 << index_bits) - 1);
        table + index * 8
    }

    /// A descriptor's value from the word read in memory byte order.
    fn descriptor(&self, raw: u64) -> u64 {
        if self.big_endian {
            raw.swap_bytes()
        } else {
            raw
        }
    }

    /// Whether a block descriptor is allowed at `level`
    /// (AArch64.BlockDescSupported): 4K at levels 1 and 2 (0 with DS),
    /// 16K at 2 (1 with DS), 64K at 2 (1 with a 52-bit PA).
    fn block_allowed(&self, level: i8, pa_max_52: bool) -> bool {
        match self.granule {
            Granule::K4 => level == 1 || level == 2 || (level == 0 && self.ds),
            Granule::K16 => level == 2 || (level == 1 && self.ds),
            Granule::K64 => level == 2 || (level == 1 && pa_max_52),
        }
    }

    /// The output address bits of a block or page descriptor mapping
    /// `block_bits` of VA.
    fn output_base(&self, descriptor: u64, block_bits: u32) -> u64 {
        let address = if self.ds {
            (descriptor & 0x0003_ffff_ffff_f000) | ((descriptor >> 8) & 0b11) << 50
        } else if self.lpa_64k {
            (descriptor & 0x0000_ffff_ffff_0000) | ((descriptor >> 12) & 0xf) << 48
        } else {
            descriptor & 0x0000_ffff_ffff_f000
        };
        address & !((1u64 << block_bits) - 1)
    }
}

/// The next-level table address in a table descriptor.
fn next_table(descriptor: u64, granule: Granule, ds: bool, lpa_64k: bool) -> u64 {
    let page_mask = !((1u64 << granule as u32) - 1);
    if ds {
        // FEAT_LPA2: OA[49:page] in place, OA[51:50] at bits [9:8].
        (descriptor & 0x0003_ffff_ffff_f000 & page_mask) | ((descriptor >> 8) & 0b11) << 50
    } else if lpa_64k {
        (descriptor & 0x0000_ffff_ffff_0000) | ((descriptor >> 12) & 0xf) << 48
    } else {
        descriptor & 0x0000_ffff_ffff_f000 & page_mask
    }
}

/// The fault status code of a synchronous External abort on a
/// translation table walk at `level` (DFSC/IFSC 0x13 for level -1, 0x14 +
/// level for 0 to 3).
pub fn walk_abort_fsc(level: i8) -> u64 {
    match level {
        -1 => 0x13,
        0..=3 => 0x14 + level as u64,
        // Not a level a walk has; the plain external abort.
        _ => 0x10,
    }
}

/// Which stage-1 translation regime [`translate`] walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage1Regime {
    /// EL1&0, or EL2&0 (E2H = 1): two VA ranges (TTBR0/TTBR1 by VA bit
    /// 55) and EL0 permissions (AP\[1\], APTable\[0\], UXN).
    TwoRanges,
    /// EL2 with E2H = 0: one VA range (TTBR0; a VA with bit 55 set is out
    /// of range) and no EL0: AP\[1\] and APTable\[0\] play no part
    /// (AArch64.S1DirectBasePermissions for a regime without EL0).
    El2,
}

/// A stage-1 regime as [`translate`] reads it: the registers in the
/// TCR_EL1 layout (an E2H = 0 EL2 regime converted, as hv runs it on the
/// hardware EL1 regime, `nested::el2_regime`) and what the PE is shown.
#[derive(Clone, Copy, Debug)]
pub struct Stage1Config<'a> {
    pub sctlr: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub mair: u64,
    pub regime: Stage1Regime,
    /// The granules, TxSZ limits, FEAT_LPA2 and PA size the regime's
    /// owner is shown: a reserved or unimplemented TGx is the first
    /// implemented granule, a TxSZ out of range the limit
    /// (`Stage1Features::granule`, `clamp_txsz`: hv's one choice for these
    /// CONSTRAINED UNPREDICTABLE values, as it runs L1's own regime).
    pub features: &'a Stage1Features,
    /// HCR_EL2.DC for an EL1&0 regime: stage 1 off is Normal write-back
    /// (and SCTLR.M is then treated as 0); otherwise stage 1 off is
    /// Device-nGnRnE.
    pub default_cacheable: bool,
    /// FEAT_E0PD shown: TCR.E0PDx fault EL0 accesses at level 0.
    pub e0pd: bool,
    /// FEAT_PAN3 shown: SCTLR.EPAN makes PAN cover EL0-executable pages.
    pub pan3: bool,
}

/// The access an address translation instruction checks (AArch64.AT's
/// ATAccess and EL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage1Access {
    pub write: bool,
    /// Unprivileged (AT S1E0*, S12E0*): EL0 permissions.
    pub el0: bool,
    /// PAN applies (AT S1E1RP/WP with PSTATE.PAN set).
    pub pan: bool,
    /// No permission check (AT S1E1A, S1E2A: FEAT_ATS1A).
    pub unchecked: bool,
}

/// A successful stage-1 translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1Output {
    /// The output address of the VA (an IPA where a stage 2 follows).
    pub address: u64,
    /// The memory attributes as a MAIR_ELx Attr<n> byte: the descriptor's
    /// (Normal made Non-cacheable by SCTLR.C = 0), or stage 1 off's.
    pub attr: u8,
    /// SH\[1:0\] (the descriptor's, or TCR.SHx with DS; the reserved
    /// 0b01 as Non-shareable, hv's one choice).
    pub shareability: u8,
}

/// Why [`translate`] gave no output address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage1Error<E> {
    /// A stage-1 fault of this kind at this level.
    Fault { kind: FaultKind, level: i8 },
    /// The read of the descriptor at `level` failed with `error` (the
    /// reader's: a stage-2 fault on the walk, an external abort).
    Read { level: i8, error: E },
}

const SCTLR_C: u64 = 1 << 2;
const SCTLR_EPAN: u64 = 1 << 57;
const TCR_TBI0: u64 = 1 << 37;
const TCR_TBI1: u64 = 1 << 38;
const TCR_HPD0: u64 = 1 << 41;
const TCR_HPD1: u64 = 1 << 42;
const TCR_E0PD0: u64 = 1 << 55;
const TCR_E0PD1: u64 = 1 << 56;
/// Descriptor bits.
const DESC_AF: u64 = 1 << 10;
const DESC_UXN: u64 = 1 << 54;
const DESC_UXN_TABLE: u64 = 1 << 60;
/// MAIR Attr<n> of Normal Inner and Outer Non-cacheable.
pub const ATTR_NORMAL_NC: u8 = 0x44;
/// Normal Inner and Outer Write-Back, Read/Write-Allocate, Non-transient.
pub const ATTR_NORMAL_WB: u8 = 0xff;
/// Device-nGnRnE.
pub const ATTR_DEVICE_NGNRNE: u8 = 0x00;

/// The stage-1 translation of `va` for `access` in `config`'s regime, as
/// AArch64.S1Translate and AArch64.S1Walk make it, reading each
/// descriptor's word (memory byte order, at its output-address-space
/// address) with `read`. Checks, in the architecture's order: stage 1 off
/// (the VA must fit the PA size: an Address size fault at level 0), the
/// VA range (bits above the input size as VA bit 55, the top byte
/// ignored with TBIx: a level-0 Translation fault), EPDx and E0PDx (level
/// 0), the TTBR base and every table and output address against the
/// output size (min(IPS, PAMax); Address size faults), invalid and
/// reserved descriptors (Translation), AF = 0 (Access flag: no hardware AF
/// update, FEAT_HAFDBS is not shown), then the permissions (AP, APTable
/// unless HPD, PAN with EPAN). 128-bit descriptors, permission indirection
/// and overlays are not modelled (hidden from L1).
pub fn translate<E>(
    config: &Stage1Config,
    va: u64,
    access: Stage1Access,
    mut read: impl FnMut(u64) -> Result<u64, E>,
) -> Result<Stage1Output, Stage1Error<E>> {
    let fault = |kind, level| Err(Stage1Error::Fault { kind, level });
    let tcr = config.tcr;
    let features = config.features;
    let pa_max = crate::pagetable::pa_range_bits(features.pa_range).map_or(48, u32::from);
    let upper = va & (1 << 55) != 0;
    let tbi = tcr & if upper { TCR_TBI1 } else { TCR_TBI0 } != 0;
    // AArch64.AddrTop: the top byte is not translated with TBIx.
    let top = if tbi { 55 } else { 63 };
    let above = |bits: u32| va & bit_range(top, bits);
    if config.sctlr & SCTLR_M == 0 || config.default_cacheable {
        // AArch64.S1DisabledOutput: the VA is the output address.
        if above(pa_max) != 0 {
            return fault(FaultKind::AddressSize, 0);
        }
        let (attr, shareability) = if config.default_cacheable {
            (ATTR_NORMAL_WB, 0b00)
        } else {
            (ATTR_DEVICE_NGNRNE, 0b10)
        };
        return Ok(Stage1Output {
            address: va & ((1u64 << pa_max) - 1),
            attr,
            shareability,
        });
    }
    if upper && config.regime == Stage1Regime::El2 {
        return fault(FaultKind::Translation, 0);
    }
    let (ttbr, txsz, tg0, disabled, e0pd, hpd, sh) = if upper {
        // TG1 has its own encoding; 0b00 is reserved.
        let tg0 = match (tcr >> 30) & 3 {
            0b01 => S1Granule::K16.tg0(),
            0b10 => S1Granule::K4.tg0(),
            0b11 => S1Granule::K64.tg0(),
            _ => 0b11,
        };
        (
            config.ttbr1,
            (tcr >> 16) & 0x3f,
            tg0,
            tcr & TCR_EPD1,
            tcr & TCR_E0PD1,
            tcr & TCR_HPD1,
            (tcr >> 28) & 3,
        )
    } else {
        (
            config.ttbr0,
            tcr & 0x3f,
            (tcr >> 14) & 3,
            tcr & TCR_EPD0,
            tcr & TCR_E0PD0,
            tcr & TCR_HPD0,
            (tcr >> 12) & 3,
        )
    };
    let shown = features.granule(tg0);
    let granule = match shown {
        S1Granule::K4 => Granule::K4,
        S1Granule::K16 => Granule::K16,
        S1Granule::K64 => Granule::K64,
    };
    let ds = tcr & TCR_DS != 0 && features.ds_allowed(shown);
    let txsz = features.clamp_txsz(txsz, shown, ds) as u32;
    // AArch64.VAIsOutOfRange: every bit from the top to the input size
    // is VA bit 55.
    let range = bit_range(top, 64 - txsz);
    if va & range != if upper { range } else { 0 } {
        return fault(FaultKind::Translation, 0);
    }
    if disabled != 0 || (access.el0 && config.e0pd && e0pd != 0) {
        return fault(FaultKind::Translation, 0);
    }
    // AArch64.PhysicalAddressSize: IPS limited by PAMax, and to 48 bits
    // unless the descriptors can hold 52 (DS, or 64K with FEAT_LPA); a
    // reserved IPS as PAMax.
    let ips = (tcr >> 32) & 0b111;
    let lpa_64k = granule == Granule::K64 && ips == 0b110 && pa_max >= 52;
    let mut oa_bits =
        crate::pagetable::pa_range_bits(ips).map_or(pa_max, |b| u32::from(b).min(pa_max));
    if oa_bits > 48 && !(ds || lpa_64k) {
        oa_bits = 48;
    }
    let out_of_range = |address: u64| address >> oa_bits != 0;
    let big_endian = config.sctlr & SCTLR_EE != 0;
    let Some(geometry) = Geometry::new(ttbr, txsz, granule, ds, lpa_64k, big_endian) else {
        return fault(FaultKind::Translation, 0);
    };
    if out_of_range(geometry.table) {
        return fault(FaultKind::AddressSize, 0);
    }
    let (mut table, mut level) = (geometry.table, geometry.start);
    let (mut ap_table, mut uxn_table) = (0u64, false);
    let descriptor = loop {
        let address = geometry.descriptor_address(table, va, level);
        let raw = read(address).map_err(|error| Stage1Error::Read { level, error })?;
        let descriptor = geometry.descriptor(raw);
        if descriptor & 1 == 0 {
            return fault(FaultKind::Translation, level);
        }
        if descriptor & 0b10 == 0 || level == 3 {
            // A block (0b01) where this granule allows one, or a page
            // (0b11 at level 3); 0b01 at level 3 is reserved.
            let block = descriptor & 0b10 == 0;
            if block && (level == 3 || !geometry.block_allowed(level, pa_max >= 52)) {
                return fault(FaultKind::Translation, level);
            }
            break descriptor;
        }
        let next = next_table(descriptor, granule, ds, lpa_64k);
        if out_of_range(next) {
            return fault(FaultKind::AddressSize, level);
        }
        // Hierarchical permissions, unless TCR.HPDx disables them.
        if hpd == 0 {
            ap_table |= (descriptor >> 61) & 0b11;
            uxn_table |= descriptor & DESC_UXN_TABLE != 0;
        }
        table = next;
        level += 1;
    };
    let block_bits = geometry.level_shift(level);
    let address = geometry.output_base(descriptor, block_bits) | (va & ((1u64 << block_bits) - 1));
    if out_of_range(address) {
        return fault(FaultKind::AddressSize, level);
    }
    if descriptor & DESC_AF == 0 {
        return fault(FaultKind::AccessFlag, level);
    }
    if !access.unchecked && !permitted(config, descriptor, ap_table, uxn_table, access) {
        return fault(FaultKind::Permission, level);
    }
    let index = (descriptor >> 2) & 0b111;
    let mut attr = (config.mair >> (8 * index)) as u8;
    // SCTLR.C = 0: data accesses to Normal memory are Non-cacheable.
    if config.sctlr & SCTLR_C == 0 && attr & 0xf0 != 0 {
        attr = ATTR_NORMAL_NC;
    }
    let shareability = match if ds { sh } else { (descriptor >> 8) & 0b11 } {
        0b01 => 0b00,
        sh => sh as u8,
    };
    Ok(Stage1Output {
        address,
        attr,
        shareability,
    })
}

/// Bits `high` down to `low` set (none when `low` > `high`).
fn bit_range(high: u32, low: u32) -> u64 {
    if low > high {
        0
    } else {
        (u64::MAX >> (63 - high)) & !((1u64 << low) - 1)
    }
}

/// AArch64.S1DirectBasePermissions for a data access (no permission
/// indirection): AP\[2:1\] with APTable applied, PAN.
fn permitted(
    config: &Stage1Config,
    descriptor: u64,
    ap_table: u64,
    uxn_table: bool,
    access: Stage1Access,
) -> bool {
    let ap = (descriptor >> 6) & 0b11;
    let (mut pr, mut pw, mut ur, mut uw) = match config.regime {
        Stage1Regime::El2 => (true, ap & 0b10 == 0, false, false),
        Stage1Regime::TwoRanges => match ap {
            0b00 => (true, true, false, false),
            0b01 => (true, true, true, true),
            0b10 => (true, false, false, false),
            _ => (true, false, true, false),
        },
    };
    // APTable[0]: no EL0 access below (RES0 without EL0); APTable[1]:
    // read-only below.
    if ap_table & 0b01 != 0 {
        ur = false;
        uw = false;
    }
    if ap_table & 0b10 != 0 {
        pw = false;
        uw = false;
    }
    if access.pan && config.regime == Stage1Regime::TwoRanges {
        let ux = descriptor & DESC_UXN == 0 && !uxn_table;
        let epan = config.pan3 && config.sctlr & SCTLR_EPAN != 0;
        if ur || uw || (epan && ux) {
            pr = false;
            pw = false;
        }
    }
    match (access.el0, access.write) {
        (false, false) => pr,
        (false, true) => pw,
        (true, false) => ur,
        (true, true) => uw,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;

    /// Guest memory as a map of 8-byte words.
    #[derive(Default)]
    struct Memory(BTreeMap<u64, u64>);

    impl Memory {
        fn reader(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
            |ipa| {
                (0x4000_0000..0x8000_0000)
                    .contains(&ipa)
                    .then(|| self.0.get(&ipa).copied().unwrap_or(0))
            }
        }
    }

    /// 4K granule, 48-bit VA (T0SZ = T1SZ = 16: start at level 0), IPS 48.
    const TCR_4K_48: u64 = 16 | 16 << 16 | 0b10 << 30 | 0b101 << 32;

    fn regs(tcr: u64) -> Stage1Regs {
        Stage1Regs {
            sctlr: SCTLR_M,
            tcr,
            tcr2: 0,
            ttbr0: 0x4000_0000,
            ttbr1: 0x4010_0000,
            id_aa64mmfr2: 0,
        }
    }

    /// ID_AA64MMFR2_EL1 with ST = 1 (FEAT_TTST).
    const MMFR2_TTST: u64 = 1 << 28;
    /// ID_AA64MMFR2_EL1 with VARange = 1 (FEAT_LVA).
    const MMFR2_LVA: u64 = 1 << 16;

    /// Each level's table in guest memory at 0x4000_0000 + level pages,
    /// the last one pointing at `unbacked` for the next level.
    fn chain(memory: &mut Memory, root: u64, va: u64, levels: &[u32], unbacked: u64) -> Vec<u64> {
        let mut tables = std::vec![root];
        for (i, &shift) in levels.iter().enumerate() {
            let index = (va >> shift) & 0x1ff;
            let next = if i + 1 == levels.len() {
                unbacked
            } else {
                root + (i as u64 + 1) * 0x1000
            };
            memory.0.insert(tables[i] + index * 8, next | 0b11);
            tables.push(next);
        }
        tables
    }

    use std::vec::Vec;

    /// [`Memory`] as L1's RAM the host maps: words outside
    /// 0x4000_0000..0x8000_0000 are outside it, and the page `changing`
    /// is mid the host's break-before-make.
    struct HostMapped<'a> {
        memory: &'a Memory,
        changing: u64,
    }

    impl GuestMemory for HostMapped<'_> {
        fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
            if address & !0xfff == self.changing {
                return Err(MemoryError::HostChanging);
            }
            let mut read = self.memory.reader();
            read(address)
                .map(u64::to_le)
                .ok_or(MemoryError::OutsideMemslots)
        }
        fn compare_exchange_descriptor(
            &self,
            _: u64,
            _: u64,
            _: u64,
        ) -> Result<Result<u64, u64>, MemoryError> {
            Err(MemoryError::ReadOnly)
        }
    }

    /// L1's stage-1 walk aborted on an unbacked level-3 table; hv's re-walk
    /// to find the level reads a table page mid its own change: not the
    /// level, not "unknown" (a plain external abort), but the change, for
    /// hv to resume L1. With no page changing it gives `walk_abort_level`'s
    /// answer, the level; outside L1's RAM, unknown.
    #[test]
    fn a_rewalk_reading_a_table_page_mid_change_is_the_change() {
        let va = 0x0000_1234_5678_9abc_u64;
        let mut memory = Memory::default();
        let tables = chain(&mut memory, 0x4000_0000, va, &[39, 30, 21], 0x1000_0000);
        let r = regs(TCR_4K_48);
        for (level, &table) in tables[..3].iter().enumerate() {
            let host = HostMapped {
                memory: &memory,
                changing: table,
            };
            let index = (va >> [39, 30, 21][level]) & 0x1ff;
            assert_eq!(
                walk_abort_level_in(&r, va, 0x1000_0000, &host),
                Err(TablePageChanging {
                    ipa: table + index * 8
                }),
                "level {level}"
            );
        }
        let host = HostMapped {
            memory: &memory,
            changing: 0x7000_0000,
        };
        assert_eq!(walk_abort_level_in(&r, va, 0x1000_0000, &host), Ok(Some(3)));
        assert_eq!(
            walk_abort_level_in(&r, va, 0x1000_0000, &host),
            Ok(walk_abort_level(&r, va, 0x1000_0000, memory.reader()))
        );
        // The root outside L1's RAM (and not the faulting page): unknown.
        let mut outside = r;
        outside.ttbr0 = 0x2000_0000;
        assert_eq!(
            walk_abort_level_in(&outside, va, 0x1000_0000, &host),
            Ok(None)
        );
    }

    /// The faulting descriptor's level, for a table of each level placed
    /// at an unbacked IPA (0x1000_0000, HPFAR's page), in both halves of
    /// the VA space: 0x14 + level.
    #[test]
    fn the_level_whose_descriptor_lies_in_the_faulting_page() {
        for (va, root) in [
            (0x0000_1234_5678_9abc_u64, 0x4000_0000),
            (0xffff_8123_4567_8abc, 0x4010_0000),
        ] {
            for depth in 0..4usize {
                let mut memory = Memory::default();
                let shifts = [39, 30, 21, 12];
                chain(&mut memory, root, va, &shifts[..depth], 0x1000_0000);
                let r = regs(TCR_4K_48);
                let page = if depth == 0 {
                    // The root table itself is unbacked.
                    let mut r = r;
                    r.ttbr0 = 0x1000_0000;
                    r.ttbr1 = 0x1000_0000;
                    assert_eq!(
                        walk_abort_level(&r, va, 0x1000_0000, memory.reader()),
                        Some(0)
                    );
                    continue;
                } else {
                    0x1000_0000
                };
                let level = walk_abort_level(&r, va, page, memory.reader());
                assert_eq!(level, Some(depth as i8), "va {va:#x} depth {depth}");
                assert_eq!(walk_abort_fsc(depth as i8), 0x14 + depth as u64);
            }
        }
    }

    /// A 39-bit VA (T0SZ 25) starts at level 1; a 64K granule with 42 bits
    /// at level 2; big-endian tables are read as such.
    #[test]
    fn start_levels_granules_and_endianness() {
        let va = 0x0000_0012_3456_7abc_u64;
        let mut memory = Memory::default();
        chain(&mut memory, 0x4000_0000, va, &[30], 0x1000_0000);
        let tcr = 25 | 0b101 << 32 | TCR_EPD1;
        assert_eq!(
            walk_abort_level(&regs(tcr), va, 0x1000_0000, memory.reader()),
            Some(2),
            "the level-1 table points at the unbacked level-2 table"
        );
        // 64K, T0SZ 22: 42 bits = 16 + 13 + 13, start at level 2.
        let mut memory = Memory::default();
        let index = (va >> 29) & 0x1fff;
        memory.0.insert(0x4000_0000 + index * 8, 0x1000_0000 | 0b11);
        let tcr = 22 | 0b01 << 14 | 0b101 << 32;
        // HPFAR names the 4 KiB page of the descriptor inside the 64 KiB
        // table: index (va >> 16) & 0x1fff = 0x1456, at offset 0xa2b0.
        assert_eq!(
            walk_abort_level(&regs(tcr), va, 0x1000_a000, memory.reader()),
            Some(3)
        );
        assert_eq!(
            walk_abort_level(&regs(tcr), va, 0x1000_0000, memory.reader()),
            None
        );
        // The same tables big-endian.
        let mut memory = Memory::default();
        chain(&mut memory, 0x4000_0000, va, &[30], 0x1000_0000);
        for word in memory.0.values_mut() {
            *word = word.swap_bytes();
        }
        let mut r = regs(25 | 0b101 << 32);
        assert_eq!(walk_abort_level(&r, va, 0x1000_0000, memory.reader()), None);
        r.sctlr |= SCTLR_EE;
        assert_eq!(
            walk_abort_level(&r, va, 0x1000_0000, memory.reader()),
            Some(2)
        );
    }

    /// FEAT_LPA2 (DS = 1, 4K, T0SZ 12: 52-bit VA) starts at level -1: an
    /// unbacked root gives FSC 0x13, and the next-table address takes
    /// OA[51:50] from descriptor bits [9:8].
    #[test]
    fn lpa2_level_minus_one_and_52_bit_tables() {
        let va = 0x000f_1234_5678_9abc_u64;
        let tcr = 12 | TCR_DS | 0b110 << 32 | TCR_EPD1;
        let mut r = regs(tcr);
        r.ttbr0 = 0x1000_0000;
        let memory = Memory::default();
        assert_eq!(
            walk_abort_level(&r, va, 0x1000_0000, memory.reader()),
            Some(-1)
        );
        assert_eq!(walk_abort_fsc(-1), 0x13);
        // Root at 0x4000_0000 pointing at a level-0 table above 4 PiB:
        // OA[51:50] = 0b01.
        let mut memory = Memory::default();
        let index = (va >> 48) & 0xf;
        memory
            .0
            .insert(0x4000_0000 + index * 8, 0x2000_0000 | 1 << 8 | 0b11);
        r.ttbr0 = 0x4000_0000;
        let level0_page = 1 << 50 | 0x2000_0000;
        assert_eq!(
            walk_abort_level(&r, va, level0_page, memory.reader()),
            Some(0)
        );
        assert_eq!(
            walk_abort_level(&r, va, 0x2000_0000, memory.reader()),
            None,
            "without OA[51:50] it would be this page"
        );
    }

    /// A walk that cannot reach the faulting page says so: MMU off, the
    /// walk disabled (EPD0), a block or invalid descriptor first, a read
    /// outside guest memory first, 128-bit descriptors, a reserved
    /// granule.
    #[test]
    fn walks_that_do_not_reach_the_page() {
        let va = 0x0000_1234_5678_9abc_u64;
        let mut memory = Memory::default();
        chain(&mut memory, 0x4000_0000, va, &[39, 30], 0x1000_0000);
        let page = 0x1000_0000;
        let ok = regs(TCR_4K_48);
        assert_eq!(walk_abort_level(&ok, va, page, memory.reader()), Some(2));
        let mut off = ok;
        off.sctlr = 0;
        assert_eq!(walk_abort_level(&off, va, page, memory.reader()), None);
        let epd = regs(TCR_4K_48 | TCR_EPD0);
        assert_eq!(walk_abort_level(&epd, va, page, memory.reader()), None);
        let mut d128 = ok;
        d128.tcr2 = TCR2_D128;
        assert_eq!(walk_abort_level(&d128, va, page, memory.reader()), None);
        let reserved = regs(TCR_4K_48 | 0b11 << 14);
        assert_eq!(walk_abort_level(&reserved, va, page, memory.reader()), None);
        assert_eq!(
            walk_abort_level(&ok, va, 0x3000_0000, memory.reader()),
            None,
            "another unbacked page: the guest's tables changed"
        );
        // A level-1 block instead of the table.
        let mut block = Memory::default();
        chain(&mut block, 0x4000_0000, va, &[39], 0x4000_1000);
        block
            .0
            .insert(0x4000_1000 + ((va >> 30) & 0x1ff) * 8, 0x4000_0000 | 0b01);
        assert_eq!(walk_abort_level(&ok, va, page, block.reader()), None);
        // A table descriptor pointing outside guest memory, not at the page.
        let mut outside = Memory::default();
        chain(&mut outside, 0x4000_0000, va, &[39], 0x9000_0000);
        assert_eq!(walk_abort_level(&ok, va, page, outside.reader()), None);
    }

    /// R27-3: a T0SZ above the granule's maximum (4K: 48 with FEAT_TTST, 39
    /// without) is, on an implementation that does not fault it
    /// (AArch64.S1TxSZFaults: IMPLEMENTATION DEFINED "Fault on TxSZ value
    /// above maximum"), used as the maximum (AArch64.GetS1TTWParams). Such a
    /// hardware walk of VA 0x1000 with T0SZ = 60 starts at level 3 (16-bit
    /// input, 4K, TTST): an unbacked root gives FSC 0x17. Before the fix
    /// s1walk used 60 (a 4-bit input, not more than the 12-bit page) and
    /// returned None: FSC 0x10. (Adapted: the PE's ID_AA64MMFR2_EL1 shows
    /// FEAT_TTST.)
    #[test]
    fn r27_txsz_above_the_maximum_is_clamped_as_the_walk_does() {
        let memory = Memory::default();
        let mut r = regs(60 | 0b101 << 32 | TCR_EPD1);
        r.ttbr0 = 0x1000_0000;
        r.id_aa64mmfr2 = MMFR2_TTST;
        assert_eq!(
            walk_abort_level(&r, 0x1000, 0x1000_0000, memory.reader()),
            Some(3)
        );
    }

    /// The start level a walk with T0SZ `t0sz` (TG0 `tg0`, TCR_EL1.DS
    /// `ds`) uses on a PE with ID_AA64MMFR2_EL1 `mmfr2`: the root table's
    /// page is the faulting one.
    fn start_level(t0sz: u64, tg0: u64, ds: bool, mmfr2: u64) -> Option<i8> {
        let memory = Memory::default();
        let mut r = regs(t0sz | tg0 << 14 | 0b101 << 32 | TCR_EPD1 | if ds { TCR_DS } else { 0 });
        r.ttbr0 = 0x1000_0000;
        r.id_aa64mmfr2 = mmfr2;
        walk_abort_level(&r, 0, 0x1000_0000, memory.reader())
    }

    /// R27-3, each bound (AArch64.MaxTxSZ, AArch64.S1MinTxSZ): without
    /// FEAT_TTST the maximum is 39 for every granule (4K: T0SZ 40-63 walk
    /// as 39, from level 2; 64K: as 39, from level 3), with it 48 (4K,
    /// 16K) or 47 (64K); the minimum is 16 (T0SZ 0-15 walk as 16: 4K from
    /// level 0), 12 with DS (4K from level -1) or with 64K and FEAT_LVA
    /// (from level 1). In range, nothing changes.
    #[test]
    fn r27_txsz_bounds_per_granule_and_feature() {
        const K4: u64 = 0b00;
        const K64: u64 = 0b01;
        const K16: u64 = 0b10;
        assert_eq!(start_level(45, K4, false, 0), Some(2), "as 39");
        assert_eq!(start_level(63, K4, false, 0), Some(2), "as 39");
        assert_eq!(start_level(39, K4, false, 0), Some(2));
        assert_eq!(start_level(45, K4, false, MMFR2_TTST), Some(3), "in range");
        assert_eq!(start_level(63, K16, false, MMFR2_TTST), Some(3), "as 48");
        assert_eq!(start_level(63, K64, false, 0), Some(3), "as 39");
        assert_eq!(start_level(63, K64, false, MMFR2_TTST), Some(3), "as 47");
        assert_eq!(start_level(0, K4, false, 0), Some(0), "as 16");
        assert_eq!(start_level(0, K4, true, 0), Some(-1), "as 12 with DS");
        assert_eq!(start_level(16, K4, false, MMFR2_LVA), Some(0));
        // 64K starts at level 1 for 48 and 52 bits alike; the root index
        // tells them apart: VA bit 51 is root index 512 (the root's second
        // 4K page) with a 52-bit input, and outside a 48-bit one (index 0).
        let memory = Memory::default();
        let mut r = regs(K64 << 14 | 0b110 << 32 | TCR_EPD1);
        r.ttbr0 = 0x1000_0000;
        let second_page = 0x1000_1000;
        r.id_aa64mmfr2 = MMFR2_LVA;
        assert_eq!(
            walk_abort_level(&r, 1 << 51, second_page, memory.reader()),
            Some(1),
            "T0SZ 0 as 12 with FEAT_LVA"
        );
        r.id_aa64mmfr2 = 0;
        assert_eq!(
            walk_abort_level(&r, 1 << 51, second_page, memory.reader()),
            None,
            "T0SZ 0 as 16 without: the root's first page is read instead"
        );
    }

    /// The features `translate` is given: what `idregs::shown_to_l1` makes
    /// of a host with 4K, 16K (with FEAT_LPA2) and 64K stage-1 granules.
    fn shown() -> Stage1Features {
        // TGran4 0b0001 (4K with LPA2), TGran16 0b0010, TGran64 0b0000.
        let host = 0b0001 << 28 | 0b0010 << 20;
        Stage1Features::from_id_registers(
            crate::nested::idregs::shown_to_l1(crate::nested::idregs::IdRegister::Mmfr0, host),
            0,
        )
    }

    fn config(features: &Stage1Features, tcr: u64) -> Stage1Config<'_> {
        Stage1Config {
            sctlr: SCTLR_M | SCTLR_C,
            tcr,
            ttbr0: 0x4000_0000,
            ttbr1: 0x4010_0000,
            mair: 0x04ff,
            regime: Stage1Regime::TwoRanges,
            features,
            default_cacheable: false,
            e0pd: false,
            pan3: false,
        }
    }

    fn read_in(memory: &Memory) -> impl FnMut(u64) -> Result<u64, ()> + '_ {
        let mut reader = memory.reader();
        move |ipa| reader(ipa).ok_or(())
    }

    const AF: u64 = 1 << 10;

    /// `translate` of `va` for an EL1 read in `memory`.
    fn translate_in(
        config: &Stage1Config,
        va: u64,
        memory: &Memory,
    ) -> Result<Stage1Output, Stage1Error<()>> {
        translate(config, va, Stage1Access::default(), read_in(memory))
    }

    fn fault(kind: FaultKind, level: i8) -> Result<Stage1Output, Stage1Error<()>> {
        Err(Stage1Error::Fault { kind, level })
    }

    /// A 2 MiB block at level 2 of the upper range (TTBR1, TG1's own
    /// encoding): the output is the block's base with the VA's low 21
    /// bits; a block at level 3 (0b01) is a translation fault there.
    #[test]
    fn translate_blocks_and_the_upper_range() {
        let features = shown();
        // T0SZ = T1SZ = 25 (39 bits, level 1), TG0 4K, TG1 4K (0b10), IPS
        // 40 bits.
        let tcr = 25 | 25 << 16 | 0b10 << 30 | 0b010 << 32;
        let va = 0xffff_ffc0_1234_5678_u64;
        let mut memory = Memory::default();
        chain(&mut memory, 0x4010_0000, va, &[30], 0x4010_1000);
        memory.0.insert(
            0x4010_1000 + ((va >> 21) & 0x1ff) * 8,
            0x4060_0000 | AF | 0b01,
        );
        let out = translate_in(&config(&features, tcr), va, &memory);
        assert_eq!(
            out,
            Ok(Stage1Output {
                address: 0x4060_0000 | (va & 0x1f_ffff),
                attr: 0xff,
                shareability: 0,
            })
        );
        // The same slot as a level-3 "block": a table leading to 0b01.
        memory
            .0
            .insert(0x4010_1000 + ((va >> 21) & 0x1ff) * 8, 0x4010_2000 | 0b11);
        memory.0.insert(
            0x4010_2000 + ((va >> 12) & 0x1ff) * 8,
            0x4060_0000 | AF | 0b01,
        );
        assert_eq!(
            translate_in(&config(&features, tcr), va, &memory),
            fault(FaultKind::Translation, 3)
        );
        // A level-1 block with 16K (DS 0) is not allowed: translation
        // fault at that level (16K, T0SZ 16: levels 0-3, level-0 index
        // bit 47, level-1 index bits [46:36]).
        let tcr16 = 16 | 0b10 << 14 | 0b101 << 32 | TCR_EPD1;
        let va16 = 0x0000_1234_5678_9abc_u64;
        let mut memory = Memory::default();
        memory
            .0
            .insert(0x4000_0000 + ((va16 >> 47) & 1) * 8, 0x4000_4000 | 0b11);
        memory.0.insert(
            0x4000_4000 + ((va16 >> 36) & 0x7ff) * 8,
            0x40_0000_0000 | AF | 0b01,
        );
        assert_eq!(
            translate_in(&config(&features, tcr16), va16, &memory),
            fault(FaultKind::Translation, 1)
        );
    }

    /// The 64K granule (T0SZ 22: 42 bits from level 2), big-endian tables,
    /// and the output size: a page beyond IPS (40 bits) is an address size
    /// fault at its level, a TTBR beyond it one at level 0.
    #[test]
    fn translate_64k_big_endian_and_output_size() {
        let features = shown();
        let tcr = 22 | 0b01 << 14 | 0b010 << 32 | TCR_EPD1;
        let va = 0x0000_0012_3456_7abc_u64;
        let mut memory = Memory::default();
        let l2 = 0x4000_0000 + ((va >> 29) & 0x1fff) * 8;
        let l3 = 0x4001_0000 + ((va >> 16) & 0x1fff) * 8;
        memory.0.insert(l2, (0x4001_0000_u64 | 0b11).swap_bytes());
        memory
            .0
            .insert(l3, (0x4070_0000_u64 | AF | 0b11 | 1 << 2).swap_bytes());
        let mut big = config(&features, tcr);
        big.sctlr |= SCTLR_EE;
        assert_eq!(
            translate_in(&big, va, &memory),
            Ok(Stage1Output {
                address: 0x4070_0000 | (va & 0xffff),
                attr: 0x04,
                shareability: 0,
            })
        );
        memory
            .0
            .insert(l3, (0x100_0000_0000_u64 | AF | 0b11).swap_bytes());
        assert_eq!(
            translate_in(&big, va, &memory),
            fault(FaultKind::AddressSize, 3)
        );
        big.ttbr0 = 0x100_0000_0000;
        assert_eq!(
            translate_in(&big, va, &memory),
            fault(FaultKind::AddressSize, 0)
        );
    }

    /// FEAT_LPA2 (DS, 4K, shown): SH comes from TCR.SH0, the output's
    /// bits [51:50] from descriptor bits [9:8] (beyond IPS 40 here, so an
    /// address size fault), and a failed read is reported with its level.
    #[test]
    fn translate_lpa2_shareability_and_read_errors() {
        let features = shown();
        // T0SZ 25, DS, SH0 Inner (0b11), IPS 40.
        let tcr = 25 | TCR_DS | 0b11 << 12 | 0b010 << 32 | TCR_EPD1;
        let va = 0x0000_0000_1234_5000_u64;
        let mut memory = Memory::default();
        chain(&mut memory, 0x4000_0000, va, &[30, 21], 0x4000_2000);
        let leaf = 0x4000_2000 + ((va >> 12) & 0x1ff) * 8;
        memory.0.insert(leaf, 0x4080_0000 | AF | 0b11);
        let ok = translate_in(&config(&features, tcr), va, &memory);
        assert_eq!(
            ok.map(|o| (o.address, o.shareability)),
            Ok((0x4080_0000, 0b11))
        );
        memory.0.insert(leaf, 0x4080_0000 | 1 << 8 | AF | 0b11);
        assert_eq!(
            translate_in(&config(&features, tcr), va, &memory),
            fault(FaultKind::AddressSize, 3)
        );
        // The level-2 table outside memory: the reader's error at level 2.
        let mut memory = Memory::default();
        chain(&mut memory, 0x4000_0000, va, &[30], 0x9000_0000);
        assert_eq!(
            translate_in(&config(&features, tcr), va, &memory),
            Err(Stage1Error::Read {
                level: 2,
                error: ()
            })
        );
    }
}
