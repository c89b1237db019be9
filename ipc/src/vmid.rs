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
