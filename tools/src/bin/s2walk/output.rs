//! Names and renderings of walk results shared by `batch`, `walk` and `dump`.

use std::fmt::Write as _;

use walker::{
    AbortContext, AbortOrigin, DescriptorRead, Execute, Fault, FaultCause, FaultKind, S2Ap,
    Shareability, Translation,
};

/// The contract's name for a fault kind.
pub fn fault_kind_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Translation => "translation",
        FaultKind::AddressSize => "address_size",
        FaultKind::AccessFlag => "access_flag",
        FaultKind::Permission => "permission",
        FaultKind::ExternalAbortOnWalk => "external_abort",
    }
}

/// A stable snake_case name for the precise cause.
pub fn fault_cause_name(cause: &FaultCause) -> &'static str {
    match cause {
        FaultCause::InputSizeOutOfRange { .. } => "input_size_out_of_range",
        FaultCause::InvalidStartLevel => "invalid_start_level",
        FaultCause::InconsistentStartLevel => "inconsistent_start_level",
        FaultCause::IpaOutOfRange => "ipa_out_of_range",
        FaultCause::InvalidDescriptor => "invalid_descriptor",
        FaultCause::BlockNotPermitted => "block_not_permitted",
        FaultCause::BaseAddressOutOfRange => "base_address_out_of_range",
        FaultCause::TableAddressOutOfRange => "table_address_out_of_range",
        FaultCause::OutputAddressOutOfRange => "output_address_out_of_range",
        FaultCause::AccessFlagClear => "access_flag_clear",
        FaultCause::ReadDenied => "read_denied",
        FaultCause::WriteDenied => "write_denied",
        FaultCause::ExecuteDenied => "execute_denied",
        FaultCause::ExecuteFromDevice => "execute_from_device",
        FaultCause::DescriptorOutsideMemslots { .. } => "descriptor_outside_memslots",
        FaultCause::UpdateRefused { .. } => "update_refused",
    }
}

/// A human sentence for the precise cause.
pub fn describe_cause(cause: &FaultCause) -> String {
    match *cause {
        FaultCause::InputSizeOutOfRange { t0sz, min, max } => {
            format!("VTCR_EL2.T0SZ {t0sz} outside {min}..={max} for the exposed PAMax/features")
        }
        FaultCause::InvalidStartLevel => {
            "VTCR_EL2.SL0/SL2 reserved, or needs a larger exposed PAMax".to_string()
        }
        FaultCause::InconsistentStartLevel => {
            "start level cannot resolve T0SZ with at most 16 concatenated tables".to_string()
        }
        FaultCause::IpaOutOfRange => "IPA has bits set at or above the input size".to_string(),
        FaultCause::InvalidDescriptor => "invalid descriptor (bit 0 clear)".to_string(),
        FaultCause::BlockNotPermitted => {
            "block descriptor where this granule and level permit none".to_string()
        }
        FaultCause::BaseAddressOutOfRange => "VTTBR_EL2.BADDR beyond the output size".to_string(),
        FaultCause::TableAddressOutOfRange => {
            "next-level table address beyond the output size".to_string()
        }
        FaultCause::OutputAddressOutOfRange => "output address beyond the output size".to_string(),
        FaultCause::AccessFlagClear => "AF = 0 and hardware AF management is off".to_string(),
        FaultCause::ReadDenied => "S2AP forbids reads".to_string(),
        FaultCause::WriteDenied => "S2AP forbids writes".to_string(),
        FaultCause::ExecuteDenied => "XN forbids execution at this EL".to_string(),
        FaultCause::ExecuteFromDevice => "instruction fetch from Device memory".to_string(),
        FaultCause::DescriptorOutsideMemslots { address } => {
            format!("descriptor at {address:#x} is outside every memslot")
        }
        FaultCause::UpdateRefused { address } => {
            format!("hardware update of the descriptor at {address:#x} refused (read-only memory)")
        }
    }
}

pub fn s2ap_name(s2ap: S2Ap) -> &'static str {
    match s2ap {
        S2Ap::None => "none",
        S2Ap::ReadOnly => "ro",
        S2Ap::WriteOnly => "wo",
        S2Ap::ReadWrite => "rw",
    }
}

pub fn execute_name(execute: Execute) -> &'static str {
    match execute {
        Execute::Both => "x(EL1+EL0)",
        Execute::El0Only => "x(EL0)",
        Execute::Neither => "nx",
        Execute::El1Only => "x(EL1)",
    }
}

pub fn shareability_name(sh: Shareability) -> &'static str {
    match sh {
        Shareability::NonShareable => "non-shareable",
        Shareability::Reserved => "reserved(0b01)",
        Shareability::OuterShareable => "outer",
        Shareability::InnerShareable => "inner",
    }
}

/// MemAttr[3:0] with HCR_EL2.FWB = 0, briefly.
pub fn mem_attr_name(mem_attr: u8) -> &'static str {
    match mem_attr & 0xf {
        0b0000 => "Device-nGnRnE",
        0b0001 => "Device-nGnRE",
        0b0010 => "Device-nGRE",
        0b0011 => "Device-GRE",
        0b0101 => "Normal NC",
        0b1111 => "Normal WB",
        0b1010 => "Normal WT",
        _ => "Normal (mixed)",
    }
}

/// Power-of-two sizes as KiB/MiB/GiB/TiB/PiB, anything else in hex.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 5] = [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes:#x} bytes")
}

fn push_trail(out: &mut String, reads: &[DescriptorRead]) {
    out.push_str(",\"descriptors\":[");
    for (i, read) in reads.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"level\":{},\"address\":\"{:#x}\",\"value\":\"{:#x}\"}}",
            read.level, read.address, read.value
        );
    }
    out.push(']');
}

/// The batch success line (without the newline).
pub fn translation_json(out: &mut String, t: &Translation) {
    let _ = write!(
        out,
        "{{\"ok\":true,\"oa\":\"{:#x}\",\"level\":{},\"size\":\"{:#x}\",\"contiguous_size\":\"{:#x}\",\
         \"s2ap\":{},\"xn\":{},\"memattr\":\"{:#x}\",\"sh\":{},\"dbm\":{},\"descriptor\":\"{:#x}\",\
         \"af_updated\":{},\"dirty_updated\":{}",
        t.output_address,
        t.level,
        t.block_size,
        t.contiguous_size,
        t.s2ap.bits(),
        t.execute.xn(),
        t.mem_attr,
        t.shareability.bits(),
        t.dirty_bit_modifier,
        t.descriptor,
        t.update.access_flag,
        t.update.dirty,
    );
    push_trail(out, t.trail.as_slice());
    out.push('}');
}

/// The batch fault line (without the newline).
pub fn fault_json(out: &mut String, fault: &Fault, far: Option<u64>) {
    let injected = fault.syndrome(&AbortContext {
        far,
        origin: AbortOrigin::Access,
        trapped_esr: None,
    });
    let _ = write!(
        out,
        "{{\"ok\":false,\"fault\":\"{}\",\"level\":{},\"fsc\":\"{:#04x}\",\"cause\":\"{}\",\
         \"esr\":\"{:#x}\",\"hpfar\":\"{:#x}\"",
        fault_kind_name(fault.kind()),
        fault.level,
        fault.fsc(),
        fault_cause_name(&fault.cause),
        injected.esr_el2,
        injected.hpfar_el2,
    );
    if let Some(far) = far {
        let _ = write!(out, ",\"far\":\"{far:#x}\"");
    }
    push_trail(out, fault.trail.as_slice());
    out.push('}');
}

/// The batch line for a line that could not be processed.
pub fn error_json(out: &mut String, message: &str) {
    out.push_str("{\"ok\":false,\"error\":");
    // serde_json escapes quotes, control characters and invalid text.
    out.push_str(&serde_json::Value::String(message.to_string()).to_string());
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(2 << 20), "2 MiB");
        assert_eq!(human_size(3 << 30), "3 GiB");
        assert_eq!(human_size(1 << 52), "4 PiB");
        assert_eq!(human_size(0x1800), "6 KiB");
        assert_eq!(human_size(8), "0x8 bytes");
    }

    #[test]
    fn error_lines_are_valid_json_whatever_the_message() {
        let mut out = String::new();
        error_json(&mut out, "bad \"quote\" and \\ and \n newline");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], "bad \"quote\" and \\ and \n newline");
    }
}
