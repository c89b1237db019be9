//! `hv.nested=linux`: the guest bundle's Linux kernel as L1, entered at
//! virtual EL2 as the arm64 boot protocol (Documentation/arch/arm64/
//! booting.rst) enters a kernel at EL2: MMU off, x0 = the physical
//! address of its device tree, at the image's load address.
//!
//! L1's RAM is its only memory; its device tree is the Linux guest's
//! (`guest_dt::build`: the console, GIC, timer and PMU nodes of the host,
//! L1's RAM as its memory), with PSCI through SMC: L1 runs at (virtual)
//! EL2, where HVC is its own hypervisor call (taken to its own vector),
//! and SMC reaches hv (HCR_EL2.TSC), as firmware at EL3 would be reached.
//! The console UART is emulated for L1 as for the Linux guest (its loads
//! and stores forwarded to the real PL011, `console::forward`).

use super::super::{console, fail, phase};
use super::{write_image, L1_BASE};
use crate::bundle::ImageHeader;
use crate::esr::{MmioAccess, MmioKind};
use crate::guest_dt::{self, GuestConfig, GuestCpus};
use crate::layout::GuestLayout;
use crate::platform::{Conduit, Platform, Region};
use crate::shadow_selftest::memory::Arena;

/// L1's RAM when it is Linux: the Debian cloud kernel's image (about 27
/// MiB with its bss), the busybox initramfs and the kernel's early
/// allocations fit with room to spare.
pub const LINUX_L1_RAM_BYTES: u64 = 128 << 20;

/// Where L1 starts: the kernel's first instruction and x0.
#[derive(Clone, Copy, Debug)]
pub struct LinuxEntry {
    pub pc: u64,
    pub dtb: u64,
}

/// Places the bundle's kernel, initrd and a device tree for L1 in L1's
/// RAM (`l1_ram`: its physical address, L1 IPA [`L1_BASE`]).
/// Its device tree names L1's `vcpus` vCPUs (`nested::vcpus`), which
/// Linux brings up with PSCI CPU_ON.
pub fn load(
    fdt: &fdt::Fdt<'_>,
    platform: &Platform,
    arena: &Arena<'_>,
    l1_ram: u64,
    vcpus: usize,
) -> LinuxEntry {
    let (_, bundle) = super::super::guest_bundle(platform);
    let image = match ImageHeader::parse(bundle.kernel) {
        Ok(i) => i,
        Err(e) => fail(format_args!("nested linux: {e}")),
    };
    let memory = [Region {
        base: L1_BASE,
        size: LINUX_L1_RAM_BYTES,
    }];
    let bootargs = bundle.cmdline;
    let config = |initrd| GuestConfig {
        memory: &memory,
        bootargs,
        initrd,
        psci: Conduit::Smc,
        console_clock_hz: super::super::console_clock_hz(fdt, platform),
        cpus: GuestCpus::Vcpus(vcpus),
    };
    let placeholder = (!bundle.initrd.is_empty()).then_some(Region {
        base: 0,
        size: bundle.initrd.len() as u64,
    });
    let dtb_size = match guest_dt::build(fdt, platform, &config(placeholder)) {
        Ok(blob) => blob.len() as u64,
        Err(e) => fail(format_args!("nested linux: {e}")),
    };
    // The bundle is in hv's memory, not L1's: nothing of L1's to avoid.
    let nothing = Region { base: 0, size: 0 };
    let layout = match GuestLayout::plan(
        memory[0],
        nothing,
        image,
        bundle.initrd.len() as u64,
        dtb_size,
    ) {
        Ok(l) => l,
        Err(e) => fail(format_args!("nested linux: {e}")),
    };
    let dtb = match guest_dt::build(fdt, platform, &config(layout.initrd)) {
        Ok(blob) => blob,
        Err(e) => fail(format_args!("nested linux: {e}")),
    };
    let pa = |ipa: u64| l1_ram + (ipa - L1_BASE);
    // L1's RAM reads as zero (the arena was filled), so the kernel's bss
    // beyond the file is zero.
    write_image(arena, pa(layout.kernel.base), bundle.kernel);
    if let Some(initrd) = layout.initrd {
        write_image(arena, pa(initrd.base), bundle.initrd);
    }
    write_image(arena, pa(layout.dtb.base), &dtb);
    phase(format_args!(
        "nested linux: L1 is the bundle's kernel ({} KiB) at L1 IPA {:#x}, initrd {} KiB at {:#x}, device tree {} bytes at {:#x} ({vcpus} vCPU{}), cmdline \"{bootargs}\"",
        bundle.kernel.len() >> 10,
        layout.kernel.base,
        bundle.initrd.len() >> 10,
        layout.initrd.map_or(0, |r| r.base),
        dtb.len(),
        layout.dtb.base,
        if vcpus == 1 { "" } else { "s" },
    ));
    LinuxEntry {
        pc: layout.kernel.base,
        dtb: layout.dtb.base,
    }
}

/// L1's data abort at an IPA outside its RAM that is the console UART's
/// (`uart`): forwarded to the real PL011 as for the Linux guest. None:
/// not the UART's; Some(Some(value)): a load's result; Some(None): a
/// store done.
pub fn uart_access(uart: Region, access: &MmioAccess, stored: u64) -> Option<Option<u64>> {
    if !uart.contains(access.ipa) || !access.ipa.is_multiple_of(access.size.bytes()) {
        return None;
    }
    let offset = access.ipa - uart.base;
    Some(match access.kind {
        MmioKind::Write { .. } => {
            console::forward(
                offset,
                access.size.bytes(),
                Some(stored & access.size.mask()),
            );
            None
        }
        MmioKind::Read { .. } => {
            Some(access.load_result(console::forward(offset, access.size.bytes(), None)))
        }
    })
}
