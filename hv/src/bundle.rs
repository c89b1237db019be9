//! The guest bundle: hv's initrd, holding the guest's kernel Image, its
//! initrd and its command line. Any loader that can pass Linux an initrd can
//! therefore pass hv a guest (QEMU -initrd, U-Boot booti).
//!
//! Layout, little endian: magic "UMBRAGST", u32 version (1), u32 header
//! size (64), then (offset, length) u64 pairs for kernel, initrd and command
//! line; offsets are from the start of the bundle.

use core::fmt;
use core::ops::Range;

pub const MAGIC: &[u8; 8] = b"UMBRAGST";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 64;

/// The parts of a bundle, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub kernel: &'a [u8],
    pub initrd: &'a [u8],
    pub cmdline: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    TooShort(usize),
    BadMagic,
    UnsupportedVersion(u32),
    BadHeaderSize(u32),
    PartOutOfBounds(&'static str),
    CmdlineNotUtf8,
    NoKernel,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(f, "guest bundle is {n} bytes, shorter than its header"),
            Self::BadMagic => f.write_str("the initrd is not an Umbra guest bundle (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "guest bundle version {v} is not supported"),
            Self::BadHeaderSize(n) => {
                write!(f, "guest bundle header size {n} is not {HEADER_SIZE}")
            }
            Self::PartOutOfBounds(p) => write!(f, "guest bundle's {p} lies outside the bundle"),
            Self::CmdlineNotUtf8 => f.write_str("guest bundle's command line is not UTF-8"),
            Self::NoKernel => f.write_str("guest bundle has an empty kernel"),
        }
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn part(bytes: &[u8], header_at: usize, name: &'static str) -> Result<Range<usize>, BundleError> {
    let offset = u64_at(bytes, header_at);
    let len = u64_at(bytes, header_at + 8);
    let end = offset
        .checked_add(len)
        .ok_or(BundleError::PartOutOfBounds(name))?;
    if offset < HEADER_SIZE as u64 || end > bytes.len() as u64 {
        return Err(BundleError::PartOutOfBounds(name));
    }
    Ok(offset as usize..end as usize)
}

impl<'a> Bundle<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BundleError::TooShort(bytes.len()));
        }
        if &bytes[..8] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(BundleError::UnsupportedVersion(version));
        }
        let header = u32_at(bytes, 12);
        if header as usize != HEADER_SIZE {
            return Err(BundleError::BadHeaderSize(header));
        }
        let kernel = part(bytes, 16, "kernel")?;
        let initrd = part(bytes, 32, "initrd")?;
        let cmdline = part(bytes, 48, "command line")?;
        if kernel.is_empty() {
            return Err(BundleError::NoKernel);
        }
        Ok(Self {
            kernel: &bytes[kernel],
            initrd: &bytes[initrd],
            cmdline: core::str::from_utf8(&bytes[cmdline])
                .map_err(|_| BundleError::CmdlineNotUtf8)?,
        })
    }

    /// Serialises a bundle (used by the host driver).
    pub fn to_bytes(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec::Vec::with_capacity(
            HEADER_SIZE + self.kernel.len() + self.initrd.len() + self.cmdline.len() + 16,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        // Parts follow the header in order, each 8-byte aligned.
        let mut offset = HEADER_SIZE as u64;
        let mut place = |len: usize, out: &mut alloc::vec::Vec<u8>| {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&(len as u64).to_le_bytes());
            offset = (offset + len as u64 + 7) & !7;
        };
        place(self.kernel.len(), &mut out);
        place(self.initrd.len(), &mut out);
        place(self.cmdline.len(), &mut out);
        for data in [self.kernel, self.initrd, self.cmdline.as_bytes()] {
            out.extend_from_slice(data);
            out.resize((out.len() + 7) & !7, 0);
        }
        out
    }
}

/// The fields of an arm64 Linux Image header (Documentation/arch/arm64/booting.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    /// Bytes the image needs from its load address, including its bss.
    pub image_size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    TooShort,
    NoArm64Magic,
    BigEndian,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("guest kernel is shorter than an arm64 Image header"),
            Self::NoArm64Magic => f.write_str(
                "guest kernel is not an uncompressed arm64 Image (no ARM\\x64 magic; decompress vmlinuz first)",
            ),
            Self::BigEndian => f.write_str("guest kernel is big-endian; hv runs little-endian guests"),
        }
    }
}

impl ImageHeader {
    pub fn parse(kernel: &[u8]) -> Result<Self, ImageError> {
        if kernel.len() < 64 {
            return Err(ImageError::TooShort);
        }
        if &kernel[0x38..0x3c] != b"ARM\x64" {
            return Err(ImageError::NoArm64Magic);
        }
        let text_offset = u64_at(kernel, 8);
        let image_size = u64_at(kernel, 16);
        let flags = u64_at(kernel, 24);
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        // image_size 0 means a pre-3.17 kernel: offset 0x80000, size unknown,
        // so assume the file plus a generous bss.
        if image_size == 0 {
            return Ok(Self {
                text_offset: 0x8_0000,
                image_size: kernel.len() as u64 + (16 << 20),
            });
        }
        Ok(Self {
            text_offset,
            image_size: image_size.max(kernel.len() as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn image(text_offset: u64, size: u64) -> Vec<u8> {
        let mut k = std::vec![0u8; 4096];
        k[8..16].copy_from_slice(&text_offset.to_le_bytes());
        k[16..24].copy_from_slice(&size.to_le_bytes());
        k[24..32].copy_from_slice(&0xau64.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"ARM\x64");
        k
    }

    #[test]
    fn round_trip() {
        let kernel = image(0, 0x10000);
        let bundle = Bundle {
            kernel: &kernel,
            initrd: b"initrd!",
            cmdline: "console=ttyAMA0 panic=-1",
        };
        let bytes = bundle.to_bytes();
        assert_eq!(Bundle::parse(&bytes), Ok(bundle));
    }

    #[test]
    fn bad_bundles() {
        let kernel = image(0, 0x10000);
        let good = Bundle {
            kernel: &kernel,
            initrd: b"",
            cmdline: "",
        }
        .to_bytes();
        assert_eq!(Bundle::parse(&good[..10]), Err(BundleError::TooShort(10)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Bundle::parse(&bad), Err(BundleError::BadMagic));
        let mut bad = good.clone();
        bad[8] = 2;
        assert_eq!(Bundle::parse(&bad), Err(BundleError::UnsupportedVersion(2)));
        // Kernel length running past the end, and an overflowing offset.
        let mut bad = good.clone();
        bad[24..32].copy_from_slice(&(good.len() as u64).to_le_bytes());
        assert_eq!(
            Bundle::parse(&bad),
            Err(BundleError::PartOutOfBounds("kernel"))
        );
        let mut bad = good.clone();
        bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        bad[40..48].copy_from_slice(&2u64.to_le_bytes());
        assert_eq!(
            Bundle::parse(&bad),
            Err(BundleError::PartOutOfBounds("initrd"))
        );
        let empty = Bundle {
            kernel: b"",
            initrd: b"",
            cmdline: "",
        }
        .to_bytes();
        assert_eq!(Bundle::parse(&empty), Err(BundleError::NoKernel));
    }

    #[test]
    fn image_header() {
        assert_eq!(
            ImageHeader::parse(&image(0, 0x200_0000)),
            Ok(ImageHeader {
                text_offset: 0,
                image_size: 0x200_0000
            })
        );
        assert_eq!(ImageHeader::parse(&[0u8; 10]), Err(ImageError::TooShort));
        let mut gz = image(0, 1);
        gz[0x38] = 0;
        assert_eq!(ImageHeader::parse(&gz), Err(ImageError::NoArm64Magic));
        let mut be = image(0, 1);
        be[24] = 1;
        assert_eq!(ImageHeader::parse(&be), Err(ImageError::BigEndian));
        // image_size smaller than the file is raised to the file size.
        assert_eq!(ImageHeader::parse(&image(0, 16)).unwrap().image_size, 4096);
    }
}
