//! VMIDs: how wide they are, and which VMID L1's registers name.
//!
//! The service keys L2's contexts by L1's VMID and applies L1's TLBIs to
//! the contexts of a VMID, so the two halves of the protocol (translate
//! requests and invalidate requests) must compute that VMID the same way:
//! [`l1_vmid`].

/// How many bits a VMID has: 8, or 16 with FEAT_VMID16 and VTCR_EL2.VS = 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmidWidth {
    /// 8-bit VMIDs (VTTBR_EL2\[55:48\]).
    Bits8,
    /// 16-bit VMIDs (VTTBR_EL2\[63:48\]).
    Bits16,
}

impl VmidWidth {
    /// Bits in a VMID.
    pub const fn bits(self) -> u32 {
        match self {
            VmidWidth::Bits8 => 8,
            VmidWidth::Bits16 => 16,
        }
    }

    /// How many VMIDs there are (256 or 65536).
    pub const fn count(self) -> u32 {
        1 << self.bits()
    }
}

/// VTCR_EL2.VS (bit 19): 16-bit VMIDs, where FEAT_VMID16 is implemented.
pub const VTCR_VS: u64 = 1 << 19;

/// The VMID L1's stage-2 registers name, as hardware allocates and matches
/// TLB entries with it: VTTBR_EL2\[63:48\] when L1 has 16-bit VMIDs
/// (`l1_width` is [`VmidWidth::Bits16`], i.e. L0 exposes FEAT_VMID16 to L1
/// in ID_AA64MMFR1_EL1.VMIDBits, and VTCR_EL2.VS = 1); otherwise
/// VTTBR_EL2\[55:48\]: with VS = 0 the upper 8 bits are ignored and treated
/// as zero for TLB matching (and VS is RES0 without FEAT_VMID16).
///
/// The one place the VMID is computed: [`crate::ContextKey::new`] and the
/// VMID of an [`crate::InvalidateRequest`] both come from it, so a TLBI
/// for a VMID reaches every context L1 runs with that VMID.
pub const fn l1_vmid(vttbr: u64, vtcr: u64, l1_width: VmidWidth) -> u16 {
    let vmid = (vttbr >> 48) as u16;
    match l1_width {
        VmidWidth::Bits16 if vtcr & VTCR_VS != 0 => vmid,
        _ => vmid & 0xff,
    }
}

/// Whether `vmid` is the VMID `vttbr`/`vtcr` name for some width L1 may
/// have been given: VTTBR_EL2\[55:48\] always, VTTBR_EL2\[63:48\] too when
/// VTCR_EL2.VS = 1. (A message does not say which width L0 exposes; the
/// service, which knows, recomputes the VMID with [`l1_vmid`].)
pub const fn vmid_agrees(vmid: u16, vttbr: u64, vtcr: u64) -> bool {
    vmid == l1_vmid(vttbr, vtcr, VmidWidth::Bits8)
        || vmid == l1_vmid(vttbr, vtcr, VmidWidth::Bits16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VS = 0: VTTBR_EL2[63:56] is ignored (the review's case: VTTBR VMID
    /// field 0x0105 is VMID 5); VS = 1 with 16-bit VMIDs exposed: all 16
    /// bits; VS = 1 without FEAT_VMID16 (VS is RES0 then): 8 bits.
    #[test]
    fn the_vmid_follows_vs_and_the_exposed_width() {
        let vttbr = 0x0105u64 << 48 | 0x4000_0000;
        assert_eq!(l1_vmid(vttbr, 0, VmidWidth::Bits8), 5);
        assert_eq!(l1_vmid(vttbr, 0, VmidWidth::Bits16), 5);
        assert_eq!(l1_vmid(vttbr, VTCR_VS, VmidWidth::Bits16), 0x105);
        assert_eq!(l1_vmid(vttbr, VTCR_VS, VmidWidth::Bits8), 5);
        assert!(vmid_agrees(5, vttbr, 0));
        assert!(!vmid_agrees(0x105, vttbr, 0));
        assert!(vmid_agrees(0x105, vttbr, VTCR_VS));
        assert!(vmid_agrees(5, vttbr, VTCR_VS));
        assert!(!vmid_agrees(6, vttbr, VTCR_VS));
        assert_eq!(
            (VmidWidth::Bits8.count(), VmidWidth::Bits16.count()),
            (256, 65536)
        );
    }
}
