//! `s2walk walk`: one IPA with a human-readable trace of every level.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::ArgMatches;
use walker::{
    AbortContext, AbortOrigin, AccessKind, CacheMaintenance, DescriptorKind, DescriptorRead, Fault,
    Granule, LeafAttributes, Stage2Walker, WalkError,
};

use crate::output::{
    describe_cause, execute_name, fault_kind_name, human_size, mem_attr_name, s2ap_name,
    shareability_name,
};
use crate::setup::Machine;
use crate::Outcome;

pub fn granule_name(granule: Granule) -> &'static str {
    match granule {
        Granule::K4 => "4K",
        Granule::K16 => "16K",
        Granule::K64 => "64K",
    }
}

/// One line describing the decoded configuration.
pub fn describe_configuration(walker: &Stage2Walker) -> String {
    let mut line = format!(
        "stage 2: {} granule, IPA {} bits, OA {} bits",
        granule_name(walker.granule()),
        walker.input_size_bits(),
        walker.output_size_bits()
    );
    match (walker.start_level(), walker.table_base()) {
        (Some(level), Some(base)) => {
            let _ = write!(line, ", start level {level}, table at {base:#x}");
        }
        _ => line.push_str(", configuration faults"),
    }
    let _ = write!(
        line,
        ", DS {}, HA {}, HD {}, HAFT {}",
        u8::from(walker.lpa2()),
        u8::from(walker.hardware_access_flag()),
        u8::from(walker.hardware_dirty_state()),
        u8::from(walker.hardware_table_access_flag())
    );
    line
}

pub fn describe_leaf(a: &LeafAttributes) -> String {
    let mut text = format!(
        "OA {:#x} ({}), S2AP {}, {}, MemAttr {:#x} ({}), SH {}, AF {}, DBM {}",
        a.output_base,
        human_size(a.size),
        s2ap_name(a.s2ap),
        execute_name(a.execute),
        a.mem_attr,
        mem_attr_name(a.mem_attr),
        shareability_name(a.shareability),
        u8::from(a.access_flag),
        u8::from(a.dirty_bit_modifier),
    );
    if a.contiguous {
        let _ = write!(text, ", contiguous ({})", human_size(a.contiguous_size));
    }
    text
}

fn describe_read(walker: &Stage2Walker, read: &DescriptorRead) -> String {
    let decoded = match walker.decode_descriptor(read.level, read.value) {
        DescriptorKind::Invalid => "invalid".to_string(),
        DescriptorKind::BlockNotPermitted => "block not permitted at this level".to_string(),
        DescriptorKind::Table { next_table } => format!("table -> {next_table:#x}"),
        DescriptorKind::Leaf(attributes) => {
            let kind = if read.level == 3 { "page" } else { "block" };
            format!("{kind}: {}", describe_leaf(&attributes))
        }
    };
    format!(
        "  level {:>2}: [{:#x}] = {:#018x}  {decoded}",
        read.level, read.address, read.value
    )
}

fn access_name(access: AccessKind) -> &'static str {
    match access {
        AccessKind::Read => "read",
        AccessKind::Write => "write",
        AccessKind::ExecEl1 => "EL1 instruction fetch",
        AccessKind::ExecEl0 => "EL0 instruction fetch",
        // Not among the accesses s2walk reads (its contract is
        // read|write|exec|exec_el0); named for completeness.
        AccessKind::Stage1Update => "stage-1 descriptor update",
        AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1) => "EL1 cache clean",
        AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1) => "EL1 cache invalidate",
        AccessKind::CacheMaintenance(CacheMaintenance::El0) => "EL0 cache maintenance",
    }
}

pub fn describe_fault(fault: &Fault, far: Option<u64>) -> Vec<String> {
    let injected = fault.syndrome(&AbortContext {
        far,
        origin: AbortOrigin::Access,
        trapped_esr: None,
    });
    let far_text = match far {
        Some(far) => format!("{far:#x}"),
        None => "not given (reported as 0; FnV is RES0 for stage-2 faults)".to_string(),
    };
    vec![
        format!(
            "fault: {} at level {}, FSC {:#04x}: {}",
            fault_kind_name(fault.kind()).replace('_', " "),
            fault.level,
            fault.fsc(),
            describe_cause(&fault.cause)
        ),
        format!(
            "inject into L1: ESR_EL2 {:#x}, FAR_EL2 {far_text}, HPFAR_EL2 {:#x}",
            injected.esr_el2, injected.hpfar_el2
        ),
    ]
}

/// The full trace of one walk; `true` if it translated.
pub fn trace(
    memory: &walker::Memslots<'_>,
    walker: &Stage2Walker,
    ipa: u64,
    access: AccessKind,
    far: Option<u64>,
) -> (Vec<String>, bool) {
    let mut lines = vec![
        describe_configuration(walker),
        format!("IPA {ipa:#x}, {}", access_name(access)),
    ];
    match walker.walk(memory, ipa, access) {
        Ok(t) => {
            lines.extend(t.trail.as_slice().iter().map(|r| describe_read(walker, r)));
            let mut result = format!(
                "result: IPA {ipa:#x} -> OA {:#x} (level {}, {}",
                t.output_address,
                t.level,
                human_size(t.block_size)
            );
            if t.contiguous_size != t.block_size {
                let _ = write!(result, ", contiguous {}", human_size(t.contiguous_size));
            }
            let _ = write!(
                result,
                "), S2AP {}, {}, MemAttr {:#x}, SH {}",
                s2ap_name(t.s2ap),
                execute_name(t.execute),
                t.mem_attr,
                shareability_name(t.shareability)
            );
            lines.push(result);
            if t.update.access_flag || t.update.dirty {
                lines.push(format!(
                    "hardware update (in memory only): descriptor at {:#x} is now {:#x}{}{}",
                    t.leaf_address(),
                    t.descriptor,
                    if t.update.access_flag { ", AF set" } else { "" },
                    if t.update.dirty {
                        ", made writable (dirty)"
                    } else {
                        ""
                    },
                ));
            }
            (lines, true)
        }
        Err(WalkError::Fault(fault)) => {
            lines.extend(
                fault
                    .trail
                    .as_slice()
                    .iter()
                    .map(|r| describe_read(walker, r)),
            );
            lines.extend(describe_fault(&fault, far));
            (lines, false)
        }
        Err(WalkError::Contended {
            descriptor_address, ..
        }) => {
            lines.push(format!(
                "walk contended on the descriptor at {descriptor_address:#x}"
            ));
            (lines, false)
        }
        // Memslots deny no access (a read-only slot gives the
        // architectural fault) and are never mid a host's change: kept
        // for a complete answer.
        Err(denied @ (WalkError::HostDenied(_) | WalkError::HostChanging(_))) => {
            lines.push(denied.to_string());
            (lines, false)
        }
    }
}

pub fn run(args: &ArgMatches) -> Outcome {
    let machine = Machine::from_args(args)?;
    let mut storage = Vec::new();
    let memslots = machine.memslots(&mut storage)?;
    let vtcr = *args.get_one::<u64>("vtcr").expect("required by clap");
    let vttbr = *args.get_one::<u64>("vttbr").expect("required by clap");
    let ipa = *args.get_one::<u64>("ipa").expect("required by clap");
    let access = *args.get_one::<AccessKind>("access").expect("has a default");
    let far = args.get_one::<u64>("far").copied();
    let walker = machine.walker(vtcr, vttbr);
    let (lines, translated) = trace(&memslots, &walker, ipa, access, far);
    // A closed stdout (`s2walk walk ... | head -1`) is an error line, not a
    // panic in println!.
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").map_err(|e| format!("writing the trace: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing the trace: {e}"))?;
    Ok(if translated {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
