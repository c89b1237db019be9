//! Where the guest's kernel, initrd and device tree go in its memory. The
//! bundle they come from already sits somewhere in that memory, so every
//! destination avoids it (the copies would otherwise overwrite their source).

use crate::bundle::ImageHeader;
use crate::platform::Region;
use core::fmt;

const MIB_2: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// The guest's boot images, as placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestLayout {
    /// Where the kernel Image is copied (2 MiB aligned base + text_offset).
    pub kernel: Region,
    pub initrd: Option<Region>,
    pub dtb: Region,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutError {
    pub what: &'static str,
    pub size: u64,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest memory has no room for the {} ({:#x} bytes)",
            self.what, self.size
        )
    }
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// The first `size` bytes at or after `from` (aligned to `align`, plus
/// `offset`) inside `memory` that do not overlap `avoid`.
fn place(
    memory: Region,
    from: u64,
    align: u64,
    offset: u64,
    size: u64,
    avoid: Region,
) -> Option<Region> {
    let mut base = align_up(from.max(memory.base), align)?;
    loop {
        let candidate = Region {
            base: base.checked_add(offset)?,
            size,
        };
        if candidate.end() > memory.end() || candidate.base.checked_add(size).is_none() {
            return None;
        }
        if avoid.size == 0 || !candidate.overlaps(&avoid) {
            return Some(candidate);
        }
        base = align_up(avoid.end(), align)?;
    }
}

impl GuestLayout {
    /// Places the kernel low in `memory` (as close to its base as the 2 MiB
    /// rule allows), then the initrd, then the device tree, avoiding `bundle`.
    pub fn plan(
        memory: Region,
        bundle: Region,
        image: ImageHeader,
        initrd_size: u64,
        dtb_size: u64,
    ) -> Result<Self, LayoutError> {
        let kernel = place(
            memory,
            memory.base,
            MIB_2,
            image.text_offset,
            image.image_size,
            bundle,
        )
        .ok_or(LayoutError {
            what: "kernel",
            size: image.image_size,
        })?;
        let initrd = if initrd_size > 0 {
            Some(
                place(memory, kernel.end(), PAGE, 0, initrd_size, bundle).ok_or(LayoutError {
                    what: "initrd",
                    size: initrd_size,
                })?,
            )
        } else {
            None
        };
        let after = initrd.map_or(kernel.end(), |r| r.end());
        // The DTB must not share a 2 MiB block with anything needing other
        // attributes; on its own 2 MiB boundary it cannot.
        let dtb = place(memory, after, MIB_2, 0, dtb_size, bundle).ok_or(LayoutError {
            what: "device tree",
            size: dtb_size,
        })?;
        Ok(Self {
            kernel,
            initrd,
            dtb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: Region = Region {
        base: 0x4060_0000,
        size: 0x1fa0_0000,
    };
    const IMAGE: ImageHeader = ImageHeader {
        text_offset: 0,
        image_size: 0x1ab_0000,
    };

    #[test]
    fn packed_from_the_base_when_the_bundle_is_high() {
        let bundle = Region {
            base: 0x4800_0000,
            size: 0x200_0000,
        };
        let l = GuestLayout::plan(RAM, bundle, IMAGE, 0x10_0000, 0x2000).unwrap();
        assert_eq!(
            l.kernel,
            Region {
                base: 0x4060_0000,
                size: 0x1ab_0000
            }
        );
        assert_eq!(
            l.initrd,
            Some(Region {
                base: 0x420b_0000,
                size: 0x10_0000
            })
        );
        assert_eq!(l.dtb.base, 0x4220_0000);
        for r in [l.kernel, l.initrd.unwrap(), l.dtb] {
            assert!(!r.overlaps(&bundle));
            assert!(r.base >= RAM.base && r.end() <= RAM.end());
        }
    }

    #[test]
    fn skips_over_a_low_bundle() {
        let bundle = Region {
            base: 0x4060_0000,
            size: 0x1c0_1000,
        };
        let l = GuestLayout::plan(
            RAM,
            bundle,
            ImageHeader {
                text_offset: 0x8_0000,
                ..IMAGE
            },
            0x1000,
            0x1000,
        )
        .unwrap();
        assert_eq!(l.kernel.base, 0x4240_0000 + 0x8_0000);
        assert!(!l.initrd.unwrap().overlaps(&bundle));
        assert!(l.initrd.unwrap().base >= l.kernel.end());
    }

    #[test]
    fn too_small() {
        let small = Region {
            base: 0x4000_0000,
            size: 0x100_0000,
        };
        let none = Region { base: 0, size: 0 };
        assert_eq!(
            GuestLayout::plan(small, none, IMAGE, 0, 0x1000),
            Err(LayoutError {
                what: "kernel",
                size: IMAGE.image_size
            })
        );
        let tight = Region {
            base: 0x4000_0000,
            size: 0x1ac_0000,
        };
        assert_eq!(
            GuestLayout::plan(tight, none, IMAGE, 0x2_0000, 0x1000),
            Err(LayoutError {
                what: "initrd",
                size: 0x2_0000
            })
        );
    }
}
