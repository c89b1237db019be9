//! The page size of the benchmark process's heap.
//!
//! hv maps all of RAM in its own stage 1 with the largest blocks (1 GiB and
//! 2 MiB; `hv/src/pagetable.rs`), so the service under hv never takes a
//! 4 KiB-page TLB miss on its heap. A host process on glibc's default 4 KiB
//! pages does, and in a VM each of those misses is a two-dimensional page
//! walk: a 1M-entry cache spread over ~4 GB pays TLB misses hv would not.
//! [`select`] therefore puts the whole process on transparent huge pages
//! (every row of a benchmark binary alike, Umbra and its baselines, which
//! share the process) unless `UMBRA_BENCH_PAGES=4k` asks for base pages, so
//! both can be measured. [`summary`] says what the kernel actually gave, for
//! the setup lines of every run.
//!
//! How: glibc's `glibc.malloc.hugetlb=1` tunable makes malloc align its heap
//! to 2 MiB and `madvise(MADV_HUGEPAGE)` its heap and its mmapped chunks
//! (THP is `madvise` on the benchmark machine). The tunable is read when
//! the process starts, so [`select`] sets it and re-executes the binary.
//! glibc 2.36 (Debian 12) then decides whether THP is in `madvise` mode by
//! comparing the 23 bytes it reads from
//! `/sys/kernel/mm/transparent_hugepage/enabled` with a 24-byte buffer whose
//! last byte it never writes (later glibc terminates the read), so about
//! half of the starts ignore the tunable. [`select`] checks glibc's decision
//! on a fresh allocation (its mapping carries the `hg` flag) and starts
//! again until it holds, at most [`MAX_STARTS`] times.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Selects base pages instead of huge pages: `UMBRA_BENCH_PAGES=4k`.
pub const PAGES_VAR: &str = "UMBRA_BENCH_PAGES";
/// How many times this process was started to get glibc's huge pages.
const STARTS_VAR: &str = "UMBRA_BENCH_PAGES_STARTS";
const TUNABLES_VAR: &str = "GLIBC_TUNABLES";
const HUGETLB_TUNABLE: &str = "glibc.malloc.hugetlb=1";
/// Starts before giving up on glibc taking the tunable (each start takes it
/// with a probability of about one half with glibc 2.36).
pub const MAX_STARTS: u32 = 32;

/// The page size the process's heap is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapPages {
    /// Transparent huge pages (2 MiB) wherever the kernel can give them.
    Huge,
    /// The 4 KiB base pages (`UMBRA_BENCH_PAGES=4k`).
    Base,
}

/// Why the heap cannot be put on the pages asked for.
#[derive(Debug)]
pub enum PagesError {
    /// `UMBRA_BENCH_PAGES` holds something other than `4k` or `2m`.
    UnknownMode(String),
    /// The kernel's THP setting (`/sys/kernel/mm/transparent_hugepage/enabled`)
    /// is `never`, or unreadable.
    NoTransparentHugePages(String),
    /// glibc ignored the tunable in [`MAX_STARTS`] starts.
    TunableIgnored,
    /// Re-executing the binary failed.
    Exec(io::Error),
    /// `/proc/self` could not be read.
    Proc(io::Error),
}

impl core::fmt::Display for PagesError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PagesError::UnknownMode(m) => {
                write!(f, "{PAGES_VAR}={m:?}: expected `4k` or `2m`")
            }
            PagesError::NoTransparentHugePages(s) => write!(
                f,
                "transparent huge pages are off ({s:?}); run with {PAGES_VAR}=4k"
            ),
            PagesError::TunableIgnored => write!(
                f,
                "glibc ignored {HUGETLB_TUNABLE} in {MAX_STARTS} starts; run with {PAGES_VAR}=4k"
            ),
            PagesError::Exec(e) => write!(f, "re-executing the benchmark: {e}"),
            PagesError::Proc(e) => write!(f, "reading /proc/self: {e}"),
        }
    }
}

impl std::error::Error for PagesError {}

/// The pages `UMBRA_BENCH_PAGES` asks for (huge unless `4k`).
pub fn requested() -> Result<HeapPages, PagesError> {
    match std::env::var(PAGES_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(HeapPages::Huge),
        Ok(m) if m.eq_ignore_ascii_case("2m") || m.eq_ignore_ascii_case("huge") => {
            Ok(HeapPages::Huge)
        }
        Ok(m) if m.eq_ignore_ascii_case("4k") => Ok(HeapPages::Base),
        Ok(m) => Err(PagesError::UnknownMode(m)),
        Err(std::env::VarError::NotUnicode(m)) => {
            Err(PagesError::UnknownMode(m.to_string_lossy().into_owned()))
        }
    }
}

/// Any setting of glibc's hugetlb tunable (`=1` transparent huge pages,
/// `=2` hugetlbfs pages): with 4 KiB pages asked for, none may stay
/// (review 20 R20-6).
fn is_hugetlb_setting(tunable: &str) -> bool {
    tunable.starts_with("glibc.malloc.hugetlb=")
}

/// Puts this process's heap on the pages `UMBRA_BENCH_PAGES` asks for,
/// re-executing the binary (same arguments, same scheduling policy) when
/// glibc must read a tunable at start; call it first in `main`, before
/// anything is allocated that matters. Returns only once the heap is on
/// them.
pub fn select() -> Result<HeapPages, PagesError> {
    let pages = requested()?;
    if pages == HeapPages::Base {
        // A tunable inherited from a caller would put the heap on huge
        // pages after all: start again without it.
        return match std::env::var(TUNABLES_VAR) {
            Ok(t) if t.split(':').any(is_hugetlb_setting) => {
                let rest: Vec<&str> = t.split(':').filter(|s| !is_hugetlb_setting(s)).collect();
                let mut command = this_binary_again();
                if rest.is_empty() {
                    command.env_remove(TUNABLES_VAR);
                } else {
                    command.env(TUNABLES_VAR, rest.join(":"));
                }
                Err(PagesError::Exec(command.exec()))
            }
            _ => Ok(pages),
        };
    }
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map_err(|e| PagesError::NoTransparentHugePages(e.to_string()))?;
    if thp.contains("[always]") {
        // Every anonymous mapping is eligible already.
        return Ok(pages);
    }
    if !thp.contains("[madvise]") {
        return Err(PagesError::NoTransparentHugePages(thp.trim().to_owned()));
    }
    if malloc_advises_huge_pages()? {
        return Ok(pages);
    }
    let starts = starts();
    if starts >= MAX_STARTS {
        return Err(PagesError::TunableIgnored);
    }
    let tunables = match std::env::var(TUNABLES_VAR) {
        Ok(t) if t.split(':').any(|s| s == HUGETLB_TUNABLE) => t,
        Ok(t) if !t.is_empty() => format!("{t}:{HUGETLB_TUNABLE}"),
        _ => HUGETLB_TUNABLE.to_owned(),
    };
    let error = this_binary_again()
        .env(TUNABLES_VAR, tunables)
        .env(STARTS_VAR, (starts + 1).to_string())
        .exec();
    Err(PagesError::Exec(error))
}

/// This binary with this process's arguments (`exec` keeps the pid, so
/// `cargo bench` and `chrt` see one process).
fn this_binary_again() -> Command {
    let mut args = std::env::args_os();
    let arg0 = args.next();
    let mut command = Command::new("/proc/self/exe");
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    command.args(args);
    command
}

/// Whether glibc's malloc advised huge pages for a fresh 4 MiB allocation
/// (an mmapped chunk, or the heap if the mmap threshold has risen): the
/// `hg` flag of the mapping holding it.
fn malloc_advises_huge_pages() -> Result<bool, PagesError> {
    let probe = vec![0u8; 4 << 20];
    let at = probe.as_ptr() as usize + probe.len() / 2;
    let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(PagesError::Proc)?;
    let advised = mapping_flags(&smaps, at).is_some_and(|flags| flags.contains(&"hg"));
    drop(probe);
    Ok(advised)
}

/// The `VmFlags` of the mapping of `smaps` (the text of `/proc/<pid>/smaps`)
/// that holds address `at`.
fn mapping_flags(smaps: &str, at: usize) -> Option<Vec<&str>> {
    let mut holds = false;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if holds {
                return Some(flags.split_whitespace().collect());
            }
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, end)) = range.split_once('-') {
                if let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                ) {
                    holds = (start..end).contains(&at);
                }
            }
        }
    }
    None
}

/// [`select`] for a benchmark's `main`, saying on stderr, after `program: `,
/// which pages the heap is on; a failure to put it there ends the run
/// (numbers on the wrong pages would be reported as the right ones).
pub fn select_for(program: &str) {
    match select() {
        Ok(pages) => eprintln!(
            "{program}: heap on {pages:?} pages (re-executions: {}; {})",
            starts(),
            summary()
        ),
        Err(e) => panic!("{program}: {e}"),
    }
}

/// How many times the process was started before glibc took the tunable
/// (1: at once; 0: no re-execution was needed).
pub fn starts() -> u32 {
    std::env::var(STARTS_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The process's resident memory and how much of it is on huge pages, from
/// `/proc/self/smaps_rollup`: e.g. `pages huge: AnonHugePages 3800 of Rss
/// 3925 MiB`, for the setup lines of every run.
pub fn summary() -> String {
    let mode = match requested() {
        Ok(HeapPages::Huge) => "huge",
        Ok(HeapPages::Base) => "4k",
        Err(_) => "?",
    };
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let kib = |field: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    match (kib("AnonHugePages:"), kib("Rss:")) {
        (Some(huge), Some(rss)) => format!(
            "pages {mode}: AnonHugePages {} of Rss {} MiB",
            huge / 1024,
            rss / 1024
        ),
        _ => format!("pages {mode}: /proc/self/smaps_rollup unreadable"),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_hugetlb_setting, mapping_flags};

    #[test]
    fn every_hugetlb_setting_is_one_base_pages_drop() {
        assert!(is_hugetlb_setting("glibc.malloc.hugetlb=1"));
        assert!(is_hugetlb_setting("glibc.malloc.hugetlb=2"));
        assert!(!is_hugetlb_setting("glibc.malloc.tcache_count=0"));
    }

    const SMAPS: &str = "\
55e871361000-55e871382000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
VmFlags: rd wr mr mw me ac
7fde1fde6000-7fde9f610000 rw-p 00000000 00:00 0
Size:            1679492 kB
AnonHugePages:   1677312 kB
VmFlags: rd wr mr mw me ac hg
";

    #[test]
    fn finds_the_flags_of_the_mapping_holding_an_address() {
        let heap = mapping_flags(SMAPS, 0x55e871370000).expect("in the heap");
        assert!(!heap.contains(&"hg"));
        let chunk = mapping_flags(SMAPS, 0x7fde1fde6000).expect("first byte of the chunk");
        assert!(chunk.contains(&"hg"));
        assert_eq!(
            mapping_flags(SMAPS, 0x7fde9f610000),
            None,
            "end is exclusive"
        );
        assert_eq!(mapping_flags(SMAPS, 0x1000), None);
    }
}
