//! The default guest: Debian's arm64 cloud kernel and busybox-static,
//! fetched as Debian packages, and an initramfs built here; plus the guest
//! bundle hv boots (see hv::bundle).

use crate::{describe, run_command, setup, workspace_root, write_atomically};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The line init prints once user space runs; `cpus=` follows.
pub const MARKER: &str = "UMBRA-GUEST-OK";

/// The kernel command line of the default guest.
pub const DEFAULT_CMDLINE: &str = "console=ttyAMA0 earlycon panic=-1 rdinit=/init";

const KERNEL_META_PACKAGE: &str = "linux-image-cloud-arm64:arm64";
const BUSYBOX_PACKAGE: &str = "busybox-static:arm64";

pub fn cache_dir() -> PathBuf {
    workspace_root().join("target").join("guest")
}

/// The default guest's kernel Image and initramfs, fetched and built once.
pub fn default_guest() -> Result<(PathBuf, PathBuf), String> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cache = GuestCache::new(&dir);
    if !cache.is_complete() {
        // One fetch at a time per checkout: a second driver waits and then
        // uses what the first stored (two would download twice, and their
        // `apt-get update`s would fail on each other's apt lock).
        let _fetching = lock_exclusively(&dir.join("guest.lock"))?;
        if !cache.is_complete() {
            fetch_packages(&dir, &cache)?;
        }
    }
    let initramfs = dir.join("initramfs.cpio.gz");
    let busybox_bytes = read(&cache.busybox)?;
    let vmm_bytes = read(&crate::hv::build_kvm_vmm()?)?;
    let archive = initramfs_archive(&busybox_bytes, &vmm_bytes)?;
    write_if_changed(&initramfs, &archive)?;
    Ok((cache.image, initramfs))
}

/// The fetched files. Each is written whole (see `write_atomically`), and
/// the stamp, written last, records their sizes: a fetch interrupted
/// anywhere (or a file cut short since) means fetching again, never booting
/// a truncated busybox or kernel.
struct GuestCache {
    image: PathBuf,
    busybox: PathBuf,
    stamp: PathBuf,
}

impl GuestCache {
    fn new(dir: &Path) -> Self {
        GuestCache {
            image: dir.join("Image"),
            busybox: dir.join("busybox"),
            stamp: dir.join("fetched"),
        }
    }

    /// The stamp's text for the files as they are now.
    fn sizes(&self) -> Option<String> {
        let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
        Some(format!(
            "Image {}\nbusybox {}\n",
            size(&self.image)?,
            size(&self.busybox)?
        ))
    }

    fn is_complete(&self) -> bool {
        match (std::fs::read_to_string(&self.stamp), self.sizes()) {
            (Ok(stamp), Some(sizes)) => stamp == sizes,
            _ => false,
        }
    }

    fn store(&self, image: &[u8], busybox: &[u8]) -> Result<(), String> {
        let _ = std::fs::remove_file(&self.stamp);
        write_atomically(&self.image, image)?;
        write_atomically(&self.busybox, busybox)?;
        let sizes = self
            .sizes()
            .ok_or("the guest files vanished while being stored")?;
        write_atomically(&self.stamp, sizes.as_bytes())
    }
}

/// The open `path`, locked exclusively (flock) until it is dropped; says so
/// when it has to wait for another process.
fn lock_exclusively(path: &Path) -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let lock_error = |e: std::io::Error| format!("cannot lock {}: {e}", path.display());
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
    }
    println!(
        "xtask: another xtask is fetching the guest; waiting for it ({})",
        path.display()
    );
    file.lock().map_err(lock_error)?;
    Ok(file)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Rewrites `path` only when its contents differ (so a QEMU another driver
/// started reading it is not disturbed), and then whole.
pub fn write_if_changed(path: &Path, data: &[u8]) -> Result<(), String> {
    if std::fs::read(path).ok().as_deref() == Some(data) {
        return Ok(());
    }
    write_atomically(path, data)
}

fn output(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(command)))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            describe(command),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The directory one fetch downloads and unpacks in (it holds ~130 MB),
/// removed when the fetch ends, whether it worked or not; with the lock file
/// that keeps other fetches from removing it.
///
/// Each fetch has its own directory, `fetch/<pid>-<n>`, so two drivers in
/// one checkout never share (or delete) each other's downloads. While its
/// directory exists a fetch holds a shared lock on `fetch.lock`; the
/// leftovers of fetches that were killed (SIGKILL, power loss) are removed
/// only by a fetch that gets that lock exclusively, that is while no other
/// fetch has a directory. The lock is the kernel's (flock), so a killed
/// driver's lock goes with it.
struct FetchDir(PathBuf, std::fs::File);

impl FetchDir {
    fn create(dir: &Path) -> Result<Self, String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let all = dir.join("fetch");
        let lock_path = dir.join("fetch.lock");
        let lock_error = |e: std::io::Error| format!("cannot lock {}: {e}", lock_path.display());
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {
                // No other fetch runs: whatever is here was left behind.
                let _ = std::fs::remove_dir_all(&all);
                lock.unlock().map_err(lock_error)?;
            }
            // Another fetch runs: its directory stays, and so do leftovers.
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
        }
        // Waits only while another fetch removes leftovers; nothing of ours
        // exists yet, so that removal cannot hit it.
        lock.lock_shared().map_err(lock_error)?;
        let work = all.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Only a dead driver that had this process id can have left this.
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("debs"))
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        Ok(FetchDir(work, lock))
    }
}

impl Drop for FetchDir {
    fn drop(&mut self) {
        // Then the lock: while it is held no other fetch removes this.
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = self.1.unlock();
    }
}

/// The kernel package the meta-package names in apt's current lists.
fn resolve_kernel_package() -> Result<String, String> {
    let depends = output(Command::new("apt-cache").args(["depends", KERNEL_META_PACKAGE]))?;
    kernel_package(&depends)
        .ok_or_else(|| format!("{KERNEL_META_PACKAGE} names no linux-image package:\n{depends}"))
}

fn download(debs: &Path, kernel_package: &str) -> Result<(), String> {
    run_command(
        Command::new("apt-get")
            .current_dir(debs)
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(kernel_package)
            .arg(BUSYBOX_PACKAGE),
    )
}

fn fetch_packages(dir: &Path, cache: &GuestCache) -> Result<(), String> {
    // Older drivers unpacked here and never cleaned up.
    for leftover in ["debs", "extract"] {
        let _ = std::fs::remove_dir_all(dir.join(leftover));
    }
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if !foreign.split_whitespace().any(|a| a == "arm64") {
        setup::require_root(
            "the guest kernel and busybox are Debian arm64 packages, and dpkg does not \
             know the arm64 architecture yet; adding it",
        )?;
        println!("xtask: enabling Debian's arm64 architecture (dpkg --add-architecture arm64)");
        run_command(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        setup::refresh_apt_lists()?;
    }
    let kernel_package = match resolve_kernel_package() {
        Ok(package) => package,
        Err(_) => {
            setup::refresh_apt_lists()?;
            resolve_kernel_package()?
        }
    };
    let work = FetchDir::create(dir)?;
    let debs = work.0.join("debs");
    println!(
        "xtask: fetching the guest: {kernel_package} and {BUSYBOX_PACKAGE} (Debian arm64 packages)"
    );
    if let Err(first) = download(&debs, &kernel_package) {
        // Lists older than the archive name a kernel it no longer has
        // (each kernel update replaces the ABI package): update, resolve
        // the meta-package again, and retry once.
        println!("xtask: download failed ({first}); updating apt's lists and retrying once");
        setup::refresh_apt_lists()?;
        let kernel_package = resolve_kernel_package()?;
        download(&debs, &kernel_package).map_err(|second| {
            format!("could not download the guest packages (network or mirror?): {second}")
        })?;
    }
    let extract = work.0.join("extract");
    for entry in
        std::fs::read_dir(&debs).map_err(|e| format!("cannot list {}: {e}", debs.display()))?
    {
        let path = entry.map_err(|e| e.to_string())?.path();
        run_command(Command::new("dpkg-deb").arg("-x").arg(&path).arg(&extract))?;
    }
    let boot = extract.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(|e| format!("the kernel package has no /boot: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("the kernel package has no /boot/vmlinuz-*")?;
    let raw = raw_image(&read(&vmlinuz)?)?;
    let busybox = std::fs::read(extract.join("bin/busybox"))
        .map_err(|e| format!("busybox-static has no /bin/busybox: {e}"))?;
    cache.store(&raw, &busybox)?;
    println!(
        "xtask: guest kernel Image and busybox are in {}",
        dir.display()
    );
    Ok(())
}

/// The real package a meta-package depends on ("Depends: linux-image-...").
fn kernel_package(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends:")?.trim();
        let name = name.trim_start_matches('|').trim();
        name.starts_with("linux-image-").then(|| name.to_string())
    })
}

/// An uncompressed arm64 Image from a vmlinuz: already raw, gzip, or an
/// EFI zboot image (gzip payload).
pub fn raw_image(vmlinuz: &[u8]) -> Result<Vec<u8>, String> {
    const ARM64_MAGIC: &[u8] = b"ARM\x64";
    if vmlinuz.len() >= 0x40 && &vmlinuz[0x38..0x3c] == ARM64_MAGIC {
        return Ok(vmlinuz.to_vec());
    }
    if vmlinuz.starts_with(&[0x1f, 0x8b]) {
        return gunzip(vmlinuz);
    }
    if vmlinuz.len() >= 0x40 && &vmlinuz[0..2] == b"MZ" && &vmlinuz[4..8] == b"zimg" {
        let word = |at: usize| {
            u32::from_le_bytes(vmlinuz[at..at + 4].try_into().expect("4 bytes")) as usize
        };
        let (offset, size) = (word(8), word(12));
        let kind = String::from_utf8_lossy(&vmlinuz[24..32])
            .trim_end_matches('\0')
            .to_string();
        let payload = vmlinuz
            .get(offset..offset.saturating_add(size))
            .ok_or("EFI zboot payload lies outside the file")?;
        if kind != "gzip" {
            return Err(format!(
                "EFI zboot kernel compressed with {kind}; only gzip is supported"
            ));
        }
        return gunzip(payload);
    }
    Err("the kernel is neither an arm64 Image, gzip, nor EFI zboot".into())
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress the kernel: {e}"))?;
    Ok(out)
}

/// The init script: report the CPUs user space sees, take CPU 1 offline
/// and back (PSCI CPU_OFF, AFFINITY_INFO, CPU_ON again), run a guest with
/// KVM (`tools/kvm-vmm`: `ok irq=ok` when its L2 ran to completion and
/// took its interrupts, `absent` in a kernel without KVM, as at EL1; else
/// the step that failed), read an address no device backs (hv must inject
/// an external abort: the reader dies of SIGBUS and the kernel lives on),
/// then power off.
const INIT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
cpus=$($bb grep -c ^processor /proc/cpuinfo)
online=$($bb cat /sys/devices/system/cpu/online)
hotplug=none
if [ "$cpus" -gt 1 ]; then
    hotplug=failed
    if echo 0 > /sys/devices/system/cpu/cpu1/online &&
       [ "$($bb cat /sys/devices/system/cpu/online)" != "$online" ] &&
       echo 1 > /sys/devices/system/cpu/cpu1/online &&
       [ "$($bb cat /sys/devices/system/cpu/online)" = "$online" ]; then
        hotplug=ok
    fi
fi
kvm=$(/bin/kvm-vmm)
vmm_status=$?
[ -n "$kvm" ] || kvm="died-$vmm_status"
$bb devmem 0x0a000000 32 > /dev/null 2>&1
status=$?
abort=missed
[ "$status" -eq 135 ] && abort=sigbus
# Through printk, so the line is on the console before the power goes;
# at KERN_CRIT (<2>) so that `quiet` does not hide it.
echo "<2>UMBRA-GUEST-OK cpus=$cpus online=$online hotplug=$hotplug unbacked-read=$abort kvm=$kvm" > /dev/kmsg
$bb poweroff -f
"#;

/// A gzip-compressed newc cpio archive: busybox, the KVM VMM, /init,
/// /dev/console.
pub fn initramfs_archive(busybox: &[u8], kvm_vmm: &[u8]) -> Result<Vec<u8>, String> {
    let mut cpio = Cpio::default();
    for dir in ["dev", "proc", "sys", "bin", "sbin", "tmp"] {
        cpio.entry(dir, 0o040755, &[], 0);
    }
    cpio.entry("dev/console", 0o020600, &[], (5 << 8) | 1);
    cpio.entry("bin/busybox", 0o100755, busybox, 0);
    cpio.entry("bin/sh", 0o120777, b"busybox", 0);
    cpio.entry("bin/kvm-vmm", 0o100755, kvm_vmm, 0);
    cpio.entry("init", 0o100755, INIT.as_bytes(), 0);
    let raw = cpio.finish();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// A newc ("070701") cpio writer.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

impl Cpio {
    /// `device` is major << 8 | minor for device nodes.
    fn entry(&mut self, name: &str, mode: u32, contents: &[u8], device: u32) {
        self.inode += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.inode,
            mode,
            0,
            0,
            1,
            0,
            contents.len(),
            0,
            0,
            device >> 8,
            device & 0xff,
            name.len() + 1,
            0
        );
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(contents);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.inode = 0;
        self.entry("TRAILER!!!", 0, &[], 0);
        self.data
    }
}

/// Writes the bundle hv takes as its initrd.
pub fn write_bundle(kernel: &Path, initrd: &Path, cmdline: &str, out: &Path) -> Result<(), String> {
    let kernel_bytes =
        raw_image(&read(kernel)?).map_err(|e| format!("{}: {e}", kernel.display()))?;
    let initrd_bytes = read(initrd)?;
    let bundle = hv::bundle::Bundle {
        kernel: &kernel_bytes,
        initrd: &initrd_bytes,
        cmdline,
    };
    hv::bundle::ImageHeader::parse(&kernel_bytes)
        .map_err(|e| format!("{}: {e}", kernel.display()))?;
    write_if_changed(out, &bundle.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_real_kernel_package() {
        let depends =
            "linux-image-cloud-arm64:arm64\n  Depends: linux-image-6.1.0-56-cloud-arm64:arm64\n";
        assert_eq!(
            kernel_package(depends).as_deref(),
            Some("linux-image-6.1.0-56-cloud-arm64:arm64")
        );
        assert_eq!(kernel_package("x\n  Depends: libc6\n"), None);
    }

    #[test]
    fn kernels_are_unwrapped() {
        let mut image = vec![0u8; 0x100];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(raw_image(&image).unwrap(), image);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&image).unwrap();
        assert_eq!(raw_image(&gz.finish().unwrap()).unwrap(), image);
        assert!(raw_image(b"not a kernel at all, clearly not").is_err());
    }

    /// X3/X4: a stored guest is complete; one cut short (or without its
    /// stamp, as older drivers left it) is not, and nothing temporary stays.
    #[test]
    fn the_guest_cache_trusts_only_complete_files() {
        let dir = std::env::temp_dir().join(format!("xtask-guest-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cache = GuestCache::new(&dir);
        assert!(!cache.is_complete());
        cache.store(b"kernel image", b"busybox binary").unwrap();
        assert!(cache.is_complete());
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["Image", "busybox", "fetched"]);
        std::fs::write(&cache.busybox, b"busybox").unwrap();
        assert!(!cache.is_complete(), "a truncated busybox was trusted");
        cache.store(b"kernel image", b"busybox binary").unwrap();
        std::fs::remove_file(&cache.stamp).unwrap();
        assert!(!cache.is_complete(), "files without a stamp were trusted");

        let work = FetchDir::create(&dir).unwrap();
        std::fs::write(work.0.join("debs/x.deb"), b"deb").unwrap();
        let path = work.0.clone();
        drop(work);
        assert!(!path.exists(), "the fetch directory was left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// T2: what a killed fetch left is removed by the next fetch that runs
    /// alone, and kept while another fetch runs (it could be that one's).
    #[test]
    fn leftovers_are_removed_only_when_no_other_fetch_runs() {
        let dir = std::env::temp_dir().join(format!("xtask-fetch-left-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let leftover = dir.join("fetch/1-0/debs");
        std::fs::create_dir_all(&leftover).unwrap();
        let running = FetchDir::create(&dir).unwrap();
        assert!(!leftover.exists(), "a killed fetch's directory stayed");
        std::fs::create_dir_all(&leftover).unwrap();
        let second = FetchDir::create(&dir).unwrap();
        assert!(leftover.exists(), "removed while another fetch ran");
        assert_ne!(running.0, second.0);
        drop(second);
        assert!(running.0.join("debs").is_dir());
        drop(running);
        let alone = FetchDir::create(&dir).unwrap();
        assert!(!leftover.exists());
        drop(alone);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// T2: a second fetch of the guest waits for the first one's lock.
    #[test]
    fn the_guest_lock_makes_a_second_fetch_wait() {
        let dir = std::env::temp_dir().join(format!("xtask-guest-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("guest.lock");
        let first = lock_exclusively(&path).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let second = lock_exclusively(&path).unwrap();
                sender.send(()).unwrap();
                drop(second);
            })
        };
        let early = receiver.recv_timeout(std::time::Duration::from_millis(300));
        assert!(early.is_err(), "the second lock did not wait");
        drop(first);
        receiver
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second lock was not granted after the first went");
        waiter.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cpio_is_newc() {
        let archive = initramfs_archive(b"\x7fELF-busybox", b"\x7fELF-kvm-vmm").unwrap();
        let mut raw = Vec::new();
        GzDecoder::new(&archive[..]).read_to_end(&mut raw).unwrap();
        assert!(raw.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&raw);
        for name in [
            "init\0",
            "bin/busybox\0",
            "bin/kvm-vmm\0",
            "dev/console\0",
            "TRAILER!!!\0",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
        assert_eq!(raw.len() % 4, 0);
    }

    /// review8 T2: the fetch directory is one per checkout, not per process
    /// (unlike `write_atomically`'s temporary files): a second driver that
    /// starts fetching while the first is between its download and its
    /// `dpkg-deb -x` deletes the first one's packages (and the first one's
    /// drop deletes the second's).
    #[test]
    fn review8_two_fetches_do_not_delete_each_others_files() {
        let dir = std::env::temp_dir().join(format!("review8-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = FetchDir::create(&dir).unwrap();
        let deb = first.0.join("debs").join("linux-image.deb");
        std::fs::write(&deb, b"downloaded").unwrap();
        let second = FetchDir::create(&dir).unwrap();
        let survived = deb.exists();
        drop(second);
        drop(first);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            survived,
            "another driver's fetch deleted this one's download"
        );
    }
}
