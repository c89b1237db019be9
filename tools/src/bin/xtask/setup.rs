//! Idempotent installation of what the commands need: Debian packages for the
//! aarch64 toolchain and QEMU. Each step first checks what is actually there
//! (the versions the build and the tests need), changes the machine only when
//! that falls short, and says what it does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, Mutex};

/// Debian's own rustc/cargo build with the library sources, so core and alloc
/// can be built for aarch64-unknown-none (rustup cannot fetch targets here).
/// The bare-metal target links with `rust-lld`, which is rust-web-llvm's
/// (a link to lld-22), only a recommendation of rustc-web.
const TOOLCHAIN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-llvm",
    "lld-22",
];

/// hv uses `u64::is_multiple_of` (hv/src/arch/mod.rs, hv/src/pagetable.rs),
/// stable since Rust 1.87; its dependencies need at most 1.77.
const HV_MIN_RUSTC: Version = Version::new(1, 87);

/// bookworm's own QEMU 7.2 lacks FEAT_NV2, and the boot matrix and the
/// s2walk-vs-QEMU test were validated on 10.0.
const MIN_QEMU: Version = Version::new(10, 0);

/// The suite that carries QEMU 10 for bookworm.
const BACKPORTS: &str = "bookworm-backports";

/// The file this driver adds when no source provides [`BACKPORTS`] yet.
const BACKPORTS_FILE: &str = "umbra-bookworm-backports.sources";

pub fn all() -> Result<(), String> {
    aarch64_toolchain()?;
    qemu()?;
    Ok(())
}

/// Debian's rustc, cargo, library sources and linker, new enough for hv.
pub fn aarch64_toolchain() -> Result<(), String> {
    machine().aarch64_toolchain()
}

/// `qemu-system-aarch64` 10 or newer, from bookworm-backports if need be.
pub fn qemu() -> Result<(), String> {
    machine().qemu()
}

/// Runs `apt-get update` now (for callers that changed what apt fetches,
/// e.g. a new dpkg architecture, or found the lists out of date).
pub fn refresh_apt_lists() -> Result<(), String> {
    machine().refresh_lists()
}

/// An error naming `what` when this process cannot change the machine.
pub fn require_root(what: &str) -> Result<(), String> {
    root_or_error(RealHost.is_root(), what)
}

fn root_or_error(root: bool, what: &str) -> Result<(), String> {
    if root {
        Ok(())
    } else {
        Err(format!(
            "{what} needs root (apt-get and dpkg change the machine): \
             run the command as root, or do that by hand"
        ))
    }
}

fn machine() -> std::sync::MutexGuard<'static, Setup<RealHost>> {
    static MACHINE: LazyLock<Mutex<Setup<RealHost>>> =
        LazyLock::new(|| Mutex::new(Setup::new(RealHost, AptPaths::system())));
    // A panic while holding the lock leaves nothing half-done in the state.
    MACHINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What setup asks of the machine; the tests fake it to simulate apt.
trait Host {
    /// The standard output of a command that only reads, or None when it
    /// cannot start or fails.
    fn query(&mut self, argv: &[&str]) -> Option<String>;
    /// Runs a command that changes the machine, echoing it.
    fn run(&mut self, argv: &[&str]) -> Result<(), String>;
    fn is_root(&self) -> bool;
}

struct RealHost;

impl Host for RealHost {
    fn query(&mut self, argv: &[&str]) -> Option<String> {
        let (program, args) = argv.split_first()?;
        let out = Command::new(program).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn run(&mut self, argv: &[&str]) -> Result<(), String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let mut command = Command::new(program);
        command.args(args);
        if *program == "apt-get" {
            command.env("DEBIAN_FRONTEND", "noninteractive");
        }
        crate::run_command(&mut command)
    }

    fn is_root(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the process's effective user.
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
}

/// Where apt reads its sources (tests point this into a scratch directory).
#[derive(Clone, Debug)]
struct AptPaths {
    /// The one-line-format file, /etc/apt/sources.list.
    sources_list: PathBuf,
    /// /etc/apt/sources.list.d: `*.list` (one-line) and `*.sources` (deb822).
    sources_dir: PathBuf,
}

impl AptPaths {
    fn system() -> Self {
        AptPaths {
            sources_list: "/etc/apt/sources.list".into(),
            sources_dir: "/etc/apt/sources.list.d".into(),
        }
    }

    fn backports_file(&self) -> PathBuf {
        self.sources_dir.join(BACKPORTS_FILE)
    }
}

/// apt's package lists as far as this process knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AptLists {
    /// Not fetched by this process since it last changed what apt reads
    /// (or not at all): an install could miss a new suite or 404.
    MaybeStale,
    /// `apt-get update` ran after the last change this process made to
    /// apt's sources or architectures.
    Current,
}

struct Setup<H: Host> {
    host: H,
    paths: AptPaths,
    lists: AptLists,
}

impl<H: Host> Setup<H> {
    fn new(host: H, paths: AptPaths) -> Self {
        Setup {
            host,
            paths,
            lists: AptLists::MaybeStale,
        }
    }

    fn update_lists(&mut self) -> Result<(), String> {
        self.require_root("updating apt's package lists")?;
        self.lists = AptLists::MaybeStale;
        self.host.run(&["apt-get", "update", "-q"])?;
        self.lists = AptLists::Current;
        Ok(())
    }

    /// An update on request: our backports source, if there, is brought up
    /// to date first (an older driver's copy without the bookworm source's
    /// Architectures makes the update fail once arm64 is added).
    fn refresh_lists(&mut self) -> Result<(), String> {
        self.require_root("updating apt's package lists")?;
        if self.paths.backports_file().exists() {
            self.ensure_backports_source()?;
        }
        self.update_lists()
    }

    fn ensure_lists_current(&mut self) -> Result<(), String> {
        match self.lists {
            AptLists::Current => Ok(()),
            AptLists::MaybeStale => self.update_lists(),
        }
    }

    fn apt_install(&mut self, packages: &[&str], suite: Option<&str>) -> Result<(), String> {
        println!("xtask: installing Debian packages: {}", packages.join(" "));
        self.ensure_lists_current()?;
        let mut argv = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
        if let Some(suite) = suite {
            argv.extend(["-t", suite]);
        }
        argv.extend_from_slice(packages);
        self.host.run(&argv)
    }

    fn require_root(&self, what: &str) -> Result<(), String> {
        root_or_error(self.host.is_root(), what)
    }

    /// What is wrong with the Debian toolchain hv is built with, or None.
    fn toolchain_shortfall(&mut self) -> Option<String> {
        let Some(rustc) = self.version_of(&["/usr/bin/rustc", "--version"], "rustc ") else {
            return Some("Debian's /usr/bin/rustc is not installed".into());
        };
        if rustc < HV_MIN_RUSTC {
            return Some(format!(
                "Debian's /usr/bin/rustc is {rustc}; hv needs {HV_MIN_RUSTC} or newer"
            ));
        }
        match self.version_of(&["/usr/bin/cargo", "--version"], "cargo ") {
            None => return Some("Debian's /usr/bin/cargo is not installed".into()),
            Some(cargo) if !cargo.same_release(rustc) => {
                return Some(format!(
                    "Debian's /usr/bin/cargo is {cargo} but its rustc is {rustc}"
                ))
            }
            Some(_) => {}
        }
        // -Zbuild-std compiles these sources with this rustc: same release.
        let library = self
            .host
            .query(&["/usr/bin/rustc", "--print", "sysroot"])
            .map(|s| PathBuf::from(s.trim()).join("lib/rustlib/src/rust/library/core"));
        let source_version = self
            .host
            .query(&["dpkg-query", "-W", "-f=${Version}", "rust-web-src"])
            .and_then(|v| Version::parse_debian(&v));
        match (library, source_version) {
            (Some(library), Some(source)) if library.is_dir() && source.same_release(rustc) => {}
            _ => {
                return Some(format!(
                    "the library sources for rustc {rustc} (rust-web-src) are not installed"
                ))
            }
        }
        if self
            .host
            .query(&["rust-lld", "-flavor", "gnu", "--version"])
            .is_none()
        {
            return Some("the linker rust-lld (rust-web-llvm) is not installed".into());
        }
        None
    }

    fn aarch64_toolchain(&mut self) -> Result<(), String> {
        let Some(why) = self.toolchain_shortfall() else {
            return Ok(());
        };
        self.require_root(&format!(
            "{why}; installing {}",
            TOOLCHAIN_PACKAGES.join(" ")
        ))?;
        println!("xtask: {why}");
        self.apt_install(TOOLCHAIN_PACKAGES, None)?;
        match self.toolchain_shortfall() {
            None => Ok(()),
            Some(still) => Err(format!(
                "after installing {}: {still} (Debian's candidate is too old? \
                 bookworm-security carries newer rustc-web)",
                TOOLCHAIN_PACKAGES.join(" ")
            )),
        }
    }

    /// What is wrong with the QEMU on PATH (the one the boots start), or None.
    fn qemu_shortfall(&mut self) -> Option<String> {
        match self.version_of(
            &["qemu-system-aarch64", "--version"],
            "QEMU emulator version ",
        ) {
            None => Some("qemu-system-aarch64 is not installed".into()),
            Some(v) if v < MIN_QEMU => Some(format!(
                "qemu-system-aarch64 is QEMU {v}; the tests need QEMU {MIN_QEMU} or newer"
            )),
            Some(_) => None,
        }
    }

    fn qemu(&mut self) -> Result<(), String> {
        let Some(why) = self.qemu_shortfall() else {
            return Ok(());
        };
        self.require_root(&format!(
            "{why}; installing qemu-system-arm from {BACKPORTS}"
        ))?;
        println!("xtask: {why}");
        self.ensure_backports_source()?;
        // -t raises the suite's priority, so this also upgrades a 7.2.
        self.apt_install(&["qemu-system-arm"], Some(BACKPORTS))?;
        match self.qemu_shortfall() {
            None => Ok(()),
            Some(still) => Err(format!(
                "after installing qemu-system-arm from {BACKPORTS}: {still} \
                 (another qemu-system-aarch64 earlier on PATH?)"
            )),
        }
    }

    /// Makes apt see [`BACKPORTS`]: another source of it is enough;
    /// otherwise ours is (re)written on the mirror, key and other options of
    /// the machine's bookworm source, unless it already says exactly that (an
    /// older driver's file without those options is brought up to date).
    fn ensure_backports_source(&mut self) -> Result<(), String> {
        let ours = self.paths.backports_file();
        let entries = read_sources(&self.paths, Some(&ours))?;
        if entries
            .iter()
            .any(|e| e.suites.iter().any(|s| s == BACKPORTS))
        {
            return Ok(());
        }
        let ours_text = std::fs::read_to_string(&ours).ok();
        let Some(bookworm) = entries
            .iter()
            .find(|e| e.suites.iter().any(|s| s == "bookworm"))
        else {
            // Nothing to derive it from: ours, if valid, is what there is.
            let ours_valid = ours_text.as_deref().is_some_and(|text| {
                parse_deb822(text)
                    .iter()
                    .any(|e| e.suites.iter().any(|s| s == BACKPORTS))
            });
            if ours_valid {
                return Ok(());
            }
            return Err(format!(
                "no Debian bookworm source found in {} or {}; \
                 add {BACKPORTS} by hand and run again",
                self.paths.sources_list.display(),
                self.paths.sources_dir.display()
            ));
        };
        let stanza = backports_stanza(bookworm);
        if ours_text.as_deref() == Some(stanza.as_str()) {
            return Ok(());
        }
        if ours_text.is_some() {
            println!(
                "xtask: {} is not the {BACKPORTS} source for the machine's bookworm \
                 source (half-written, or without its options); rewriting it",
                ours.display()
            );
        } else {
            println!(
                "xtask: adding the {BACKPORTS} suite for QEMU {MIN_QEMU} ({})",
                ours.display()
            );
        }
        // Atomically: a half-written sources file breaks every apt command.
        crate::write_atomically(&ours, stanza.as_bytes())?;
        self.lists = AptLists::MaybeStale;
        Ok(())
    }

    /// The version a `--version` command prints after `prefix` on its first line.
    fn version_of(&mut self, argv: &[&str], prefix: &str) -> Option<Version> {
        let text = self.host.query(argv)?;
        let rest = text.lines().next()?.trim().strip_prefix(prefix)?;
        Version::parse(rest)
    }
}

/// A release number: major.minor.patch (missing parts are 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    major: u32,
    minor: u32,
    patch: u32,
}

impl Version {
    const fn new(major: u32, minor: u32) -> Self {
        Version {
            major,
            minor,
            patch: 0,
        }
    }

    /// The leading `N[.N[.N]]` of `text` (`1.96.0 (ac68...)`, `10.0.2 (Debian ...)`).
    fn parse(text: &str) -> Option<Self> {
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let mut parts = text[..end].split('.');
        let mut next = |required: bool| match parts.next() {
            Some(p) => p.parse::<u32>().ok(),
            None if !required => Some(0),
            None => None,
        };
        Some(Version {
            major: next(true)?,
            minor: next(false)?,
            patch: next(false)?,
        })
    }

    /// The upstream part of a Debian version: `1:10.0.2+ds-2` -> 10.0.2.
    fn parse_debian(text: &str) -> Option<Self> {
        let text = text.trim();
        let upstream = text.split_once(':').map_or(text, |(_, rest)| rest);
        Version::parse(upstream)
    }

    fn same_release(self, other: Version) -> bool {
        self == other
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One enabled `deb` source entry, from either file format.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SourceEntry {
    uris: Vec<String>,
    suites: Vec<String>,
    /// The entry's [`CARRIED_OPTIONS`], by deb822 field name, in the order
    /// written. Values as deb822 writes them: a one-line comma list becomes
    /// words; a multi-line value (an inline Signed-By key) keeps its
    /// continuation lines with their leading space.
    options: Vec<(&'static str, String)>,
}

/// An apt source option, by its deb822 field name and its one-line name
/// (sources.list(5)).
struct AptOption {
    field: &'static str,
    one_line: &'static str,
    /// A list: commas in the one-line form, words in deb822.
    list: bool,
}

const fn option(field: &'static str, one_line: &'static str, list: bool) -> AptOption {
    AptOption {
        field,
        one_line,
        list,
    }
}

/// The options of the machine's bookworm source that the bookworm-backports
/// source on the same mirror needs too: which architectures (and languages,
/// index targets) the mirror is asked for (an amd64-only mirror must not be
/// asked for the arm64 indexes once guest.rs adds that architecture), how it
/// is trusted (Signed-By; Trusted or Allow-Insecure for an unsigned local
/// mirror), how its Release dates are checked (a snapshot archive's
/// backports Release has an expired Valid-Until), and how indexes are
/// fetched (PDiffs, By-Hash). Not carried: Enabled (only enabled entries
/// are used), InRelease-Path (names the bookworm suite's own file), and
/// options bookworm's apt 2.6 does not know (Snapshot, Include, Exclude).
const CARRIED_OPTIONS: &[AptOption] = &[
    option("Architectures", "arch", true),
    option("Architectures-Add", "arch+", true),
    option("Architectures-Remove", "arch-", true),
    option("Languages", "lang", true),
    option("Languages-Add", "lang+", true),
    option("Languages-Remove", "lang-", true),
    option("Targets", "target", true),
    option("Targets-Add", "target+", true),
    option("Targets-Remove", "target-", true),
    option("PDiffs", "pdiffs", false),
    option("By-Hash", "by-hash", false),
    option("Allow-Insecure", "allow-insecure", false),
    option("Allow-Weak", "allow-weak", false),
    option(
        "Allow-Downgrade-To-Insecure",
        "allow-downgrade-to-insecure",
        false,
    ),
    option("Trusted", "trusted", false),
    option("Signed-By", "signed-by", false),
    option("Check-Valid-Until", "check-valid-until", false),
    option("Valid-Until-Min", "valid-until-min", false),
    option("Valid-Until-Max", "valid-until-max", false),
    option("Check-Date", "check-date", false),
    option("Date-Max-Future", "date-max-future", false),
];

/// Adds `field: value` unless the entry already has that option (apt takes
/// one value per option; the first one written is kept).
fn add_option(options: &mut Vec<(&'static str, String)>, field: &'static str, value: String) {
    if options.iter().all(|(f, _)| *f != field) {
        options.push((field, value));
    }
}

/// Every enabled `deb` entry apt reads (sources.list, then sources.list.d),
/// except those of the file `skip`.
fn read_sources(paths: &AptPaths, skip: Option<&Path>) -> Result<Vec<SourceEntry>, String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut entries = Vec::new();
    if paths.sources_list.exists() {
        entries.extend(parse_one_line(&read(&paths.sources_list)?));
    }
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&paths.sources_dir) {
        Ok(dir) => dir.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for file in files {
        if Some(file.as_path()) == skip {
            continue;
        }
        match file.extension().and_then(|e| e.to_str()) {
            Some("list") => entries.extend(parse_one_line(&read(&file)?)),
            // A broken file (ours, half-written by an older driver) adds
            // no entry, so it is rewritten rather than trusted.
            Some("sources") => entries.extend(parse_deb822(&read(&file)?)),
            _ => {}
        }
    }
    Ok(entries)
}

/// `deb [option=value ...] URI SUITE [COMPONENT ...]` lines; `#` comments.
fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        if !rest.starts_with([' ', '\t', '[']) {
            continue; // deb-src, or not an entry
        }
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(inner) => match inner.split_once(']') {
                Some((options, rest)) => (options, rest),
                None => continue, // malformed: apt rejects it too
            },
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let mut carried = Vec::new();
        for word in options.split_whitespace() {
            let Some((name, value)) = word.split_once('=') else {
                continue;
            };
            if let Some(known) = CARRIED_OPTIONS
                .iter()
                .find(|o| o.one_line.eq_ignore_ascii_case(name))
            {
                let value = if known.list {
                    value.replace(',', " ")
                } else {
                    value.to_string()
                };
                add_option(&mut carried, known.field, value);
            }
        }
        entries.push(SourceEntry {
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            options: carried,
        });
    }
    entries
}

/// deb822 stanzas (blank-line separated; `#` comment lines; a line starting
/// with a space or tab continues the field before it). Stanzas without
/// `Types: deb`, URIs or Suites, with `Enabled: no`, or with a line that is
/// no field (apt calls those malformed) give no entry.
fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    #[derive(Default)]
    struct Stanza {
        fields: Vec<(String, String)>,
        malformed: bool,
    }
    impl Stanza {
        fn field(&self, name: &str) -> Option<&str> {
            self.fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn words(&self, name: &str) -> Vec<String> {
            let value = self.field(name).unwrap_or("");
            value.split_whitespace().map(str::to_string).collect()
        }
        fn entry(&self) -> Option<SourceEntry> {
            let enabled = self
                .field("Enabled")
                .is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
            let is_deb = self.words("Types").iter().any(|t| t == "deb");
            let (uris, suites) = (self.words("URIs"), self.words("Suites"));
            let usable = !self.malformed && enabled && is_deb;
            let mut options = Vec::new();
            for (name, value) in &self.fields {
                if let Some(known) = CARRIED_OPTIONS
                    .iter()
                    .find(|o| o.field.eq_ignore_ascii_case(name))
                {
                    add_option(&mut options, known.field, value.trim_end().to_string());
                }
            }
            (usable && !uris.is_empty() && !suites.is_empty()).then_some(SourceEntry {
                uris,
                suites,
                options,
            })
        }
    }
    let mut entries = Vec::new();
    let mut stanza = Stanza::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            entries.extend(std::mem::take(&mut stanza).entry());
        } else if line.starts_with([' ', '\t']) {
            // A continuation: kept with its leading space, so a multi-line
            // value (an inline key) can be written back as it was.
            match stanza.fields.last_mut() {
                Some((_, value)) => {
                    value.push('\n');
                    value.push_str(line);
                }
                None => stanza.malformed = true,
            }
        } else if let Some((name, value)) = line.split_once(':') {
            stanza
                .fields
                .push((name.trim().to_string(), value.trim().to_string()));
        } else {
            stanza.malformed = true;
        }
    }
    entries.extend(stanza.entry());
    entries
}

/// A deb822 stanza for bookworm-backports on the same mirror, with the
/// same key and other [`CARRIED_OPTIONS`] as the machine's bookworm source,
/// so no archive is named here and apt reaches it the way it reaches bookworm.
fn backports_stanza(bookworm: &SourceEntry) -> String {
    let mut out = format!(
        "Types: deb\nURIs: {}\nSuites: {BACKPORTS}\nComponents: main\n",
        bookworm.uris.join(" ")
    );
    for (field, value) in &bookworm.options {
        out.push_str(&format!("{field}: {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch directory, removed at the end of the test.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xtask-setup-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("sources.list.d")).unwrap();
            Scratch(dir)
        }

        fn paths(&self) -> AptPaths {
            AptPaths {
                sources_list: self.0.join("sources.list"),
                sources_dir: self.0.join("sources.list.d"),
            }
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.0.join(name), text).unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const DEBIAN_SOURCES: &str = "Types: deb\n\
        # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
        URIs: http://mirror.invalid/debian\n\
        Suites: bookworm bookworm-updates\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
        \n\
        Types: deb\n\
        URIs: http://mirror.invalid/debian-security\n\
        Suites: bookworm-security\n\
        Components: main\n";

    /// A machine with apt simulated as far as setup cares: `update` indexes
    /// the suites the sources name at that moment, and an install from
    /// `-t SUITE` fails (with apt's message) unless SUITE was indexed.
    struct FakeMachine {
        root: bool,
        sources: AptPaths,
        sysroot: PathBuf,
        /// Installed versions; None = not installed.
        rustc: Option<&'static str>,
        rust_src: Option<&'static str>,
        rust_lld: bool,
        qemu: Option<&'static str>,
        /// What `apt-get install` of the toolchain brings.
        rustc_candidate: &'static str,
        indexed_backports: bool,
        log: Vec<String>,
    }

    impl FakeMachine {
        fn fresh(scratch: &Scratch) -> Self {
            FakeMachine {
                root: true,
                sources: scratch.paths(),
                sysroot: scratch.0.join("sysroot"),
                rustc: None,
                rust_src: None,
                rust_lld: false,
                qemu: None,
                rustc_candidate: "1.96.0",
                indexed_backports: false,
                log: Vec::new(),
            }
        }

        fn provisioned(scratch: &Scratch) -> Self {
            let mut machine = FakeMachine::fresh(scratch);
            machine.install_toolchain();
            machine.qemu = Some("10.0.2");
            machine
        }

        fn install_toolchain(&mut self) {
            self.rustc = Some(self.rustc_candidate);
            self.rust_src = Some(self.rustc_candidate);
            self.rust_lld = true;
            std::fs::create_dir_all(self.sysroot.join("lib/rustlib/src/rust/library/core"))
                .unwrap();
        }

        fn names_backports(&self) -> bool {
            let mut files = vec![self.sources.sources_list.clone()];
            for entry in std::fs::read_dir(&self.sources.sources_dir).unwrap() {
                files.push(entry.unwrap().path());
            }
            files
                .iter()
                .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("bookworm-backports")))
        }
    }

    impl Host for FakeMachine {
        fn query(&mut self, argv: &[&str]) -> Option<String> {
            match argv {
                ["/usr/bin/rustc", "--version"] => self
                    .rustc
                    .map(|v| format!("rustc {v} (ac68faa20 2026-05-25)\n")),
                ["/usr/bin/cargo", "--version"] => self
                    .rustc
                    .map(|v| format!("cargo {v} (30a34c682 2026-05-25)\n")),
                ["/usr/bin/rustc", "--print", "sysroot"] => {
                    self.rustc.map(|_| format!("{}\n", self.sysroot.display()))
                }
                ["dpkg-query", "-W", "-f=${Version}", "rust-web-src"] => {
                    self.rust_src.map(|v| format!("{v}+dfsg1-1~deb12u2"))
                }
                ["rust-lld", ..] => self.rust_lld.then(|| "Debian LLD 22.1.8\n".into()),
                ["qemu-system-aarch64", "--version"] => self
                    .qemu
                    .map(|v| format!("QEMU emulator version {v} (Debian 1:{v}+ds-2)\nCopyright\n")),
                other => panic!("unexpected query {other:?}"),
            }
        }

        fn run(&mut self, argv: &[&str]) -> Result<(), String> {
            self.log.push(argv.join(" "));
            assert!(self.root, "changed the machine without root: {argv:?}");
            match argv {
                ["apt-get", "update", "-q"] => {
                    self.indexed_backports = self.names_backports();
                    Ok(())
                }
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", rest @ ..] => {
                    match rest {
                        ["-t", "bookworm-backports", "qemu-system-arm"] => {
                            if !self.indexed_backports {
                                return Err("E: The value 'bookworm-backports' is invalid for \
                                     APT::Default-Release as such a release is not available \
                                     in the sources"
                                    .into());
                            }
                            self.qemu = Some("10.0.2");
                        }
                        packages if packages == TOOLCHAIN_PACKAGES => self.install_toolchain(),
                        other => panic!("unexpected install {other:?}"),
                    }
                    Ok(())
                }
                other => panic!("unexpected command {other:?}"),
            }
        }

        fn is_root(&self) -> bool {
            self.root
        }
    }

    fn setup(scratch: &Scratch, machine: FakeMachine) -> Setup<FakeMachine> {
        Setup::new(machine, scratch.paths())
    }

    /// X1: every order the commands call setup in (`run`/`hv-test`: the
    /// toolchain, then QEMU; `setup`: the same; `test`: QEMU first, then
    /// the toolchain) works in one process on a fresh machine, and the
    /// backports install follows an update made after its source appeared.
    #[test]
    fn a_fresh_machine_is_set_up_in_one_process_in_any_order() {
        for qemu_first in [false, true] {
            let scratch = Scratch::new();
            scratch.write("sources.list.d/debian.sources", DEBIAN_SOURCES);
            let mut setup = setup(&scratch, FakeMachine::fresh(&scratch));
            if qemu_first {
                setup.qemu().unwrap();
                setup.aarch64_toolchain().unwrap();
            } else {
                setup.aarch64_toolchain().unwrap();
                setup.qemu().unwrap();
            }
            let log = &setup.host.log;
            let install = log
                .iter()
                .position(|c| c.contains("-t bookworm-backports"))
                .unwrap();
            assert_eq!(log[install - 1], "apt-get update -q", "{log:#?}");
            assert_eq!(setup.host.qemu, Some("10.0.2"));
            assert_eq!(setup.host.rustc, Some("1.96.0"));
            // Nothing left to do: a second round runs nothing.
            let commands = log.len();
            setup.aarch64_toolchain().unwrap();
            setup.qemu().unwrap();
            assert_eq!(setup.host.log.len(), commands);
        }
    }

    /// X1: the update-after-source-change rule itself.
    #[test]
    fn writing_a_source_makes_the_lists_stale() {
        let scratch = Scratch::new();
        scratch.write("sources.list.d/debian.sources", DEBIAN_SOURCES);
        let mut setup = setup(&scratch, FakeMachine::fresh(&scratch));
        setup.update_lists().unwrap();
        assert_eq!(setup.lists, AptLists::Current);
        setup.ensure_backports_source().unwrap();
        assert_eq!(setup.lists, AptLists::MaybeStale);
        setup.ensure_lists_current().unwrap();
        setup.ensure_lists_current().unwrap();
        let updates = setup
            .host
            .log
            .iter()
            .filter(|c| c.contains("update"))
            .count();
        assert_eq!(updates, 2);
    }

    /// X2: a machine with QEMU 10 and a new enough rustc needs nothing,
    /// writes nothing, and does not need root.
    #[test]
    fn a_provisioned_machine_is_left_alone_even_without_root() {
        let scratch = Scratch::new();
        scratch.write("sources.list.d/debian.sources", DEBIAN_SOURCES);
        let mut machine = FakeMachine::provisioned(&scratch);
        machine.root = false;
        let mut setup = setup(&scratch, machine);
        setup.aarch64_toolchain().unwrap();
        setup.qemu().unwrap();
        assert!(setup.host.log.is_empty());
        assert!(!scratch.paths().backports_file().exists());
    }

    /// X2: bookworm's QEMU 7.2 is upgraded from backports, saying why.
    #[test]
    fn qemu_7_2_is_upgraded() {
        let scratch = Scratch::new();
        scratch.write("sources.list.d/debian.sources", DEBIAN_SOURCES);
        let mut machine = FakeMachine::provisioned(&scratch);
        machine.qemu = Some("7.2.0");
        let mut setup = setup(&scratch, machine);
        assert_eq!(
            setup.qemu_shortfall().unwrap(),
            "qemu-system-aarch64 is QEMU 7.2.0; the tests need QEMU 10.0.0 or newer"
        );
        setup.qemu().unwrap();
        assert_eq!(setup.host.qemu, Some("10.0.2"));
    }

    /// X2: without root, what is missing is named, not "Permission denied",
    /// and nothing is written.
    #[test]
    fn without_root_the_error_says_what_is_missing() {
        let scratch = Scratch::new();
        scratch.write("sources.list.d/debian.sources", DEBIAN_SOURCES);
        let mut machine = FakeMachine::provisioned(&scratch);
        machine.root = false;
        machine.qemu = Some("7.2.0");
        machine.rustc = Some("1.85.0");
        let mut setup = setup(&scratch, machine);
        let error = setup.qemu().unwrap_err();
        assert!(
            error.contains("QEMU 7.2.0") && error.contains("needs root"),
            "{error}"
        );
        let error = setup.aarch64_toolchain().unwrap_err();
        assert!(
            error.contains("rustc is 1.85.0; hv needs 1.87.0"),
            "{error}"
        );
        assert!(error.contains("needs root"), "{error}");
        assert!(!scratch.paths().backports_file().exists());
    }

    /// X2: an old rustc-web is upgraded; one that stays too old is an error
    /// naming both versions.
    #[test]
    fn an_old_rustc_is_upgraded_or_reported() {
        let scratch = Scratch::new();
        let mut machine = FakeMachine::provisioned(&scratch);
        machine.rustc = Some("1.85.0");
        let mut setup = setup(&scratch, machine);
        setup.aarch64_toolchain().unwrap();
        assert_eq!(setup.host.rustc, Some("1.96.0"));

        let mut machine = FakeMachine::fresh(&scratch);
        machine.rustc_candidate = "1.85.0";
        let mut setup = Setup::new(machine, scratch.paths());
        let error = setup.aarch64_toolchain().unwrap_err();
        assert!(error.contains("1.85.0; hv needs 1.87.0"), "{error}");

        // Sources of another release than the compiler are not enough.
        let mut machine = FakeMachine::provisioned(&scratch);
        machine.rust_src = Some("1.85.0");
        let mut setup = Setup::new(machine, scratch.paths());
        assert!(setup
            .toolchain_shortfall()
            .unwrap()
            .contains("rust-web-src"));
        let mut machine = FakeMachine::provisioned(&scratch);
        machine.rust_lld = false;
        let mut setup = Setup::new(machine, scratch.paths());
        assert!(setup.toolchain_shortfall().unwrap().contains("rust-lld"));
    }

    /// X6: an existing bookworm-backports entry (Debian cloud images list
    /// it) is used as it is: no second source.
    #[test]
    fn an_existing_backports_source_is_not_duplicated() {
        let scratch = Scratch::new();
        scratch.write(
            "sources.list.d/debian.sources",
            &DEBIAN_SOURCES.replace("bookworm-updates", "bookworm-updates bookworm-backports"),
        );
        let mut machine = FakeMachine::provisioned(&scratch);
        machine.qemu = None;
        let mut setup = setup(&scratch, machine);
        setup.qemu().unwrap();
        assert!(!scratch.paths().backports_file().exists());
        assert_eq!(setup.host.qemu, Some("10.0.2"));
    }

    /// X6: a half-written source of ours is replaced, in one rename.
    #[test]
    fn a_broken_source_of_ours_is_rewritten() {
        let scratch = Scratch::new();
        scratch.write("sources.list.d/debian.sources", DEBIAN_SOURCES);
        let ours = scratch.paths().backports_file();
        std::fs::write(
            &ours,
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuit",
        )
        .unwrap();
        let mut setup = setup(&scratch, FakeMachine::fresh(&scratch));
        setup.ensure_backports_source().unwrap();
        assert_eq!(
            std::fs::read_to_string(&ours).unwrap(),
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        let names: Vec<_> = std::fs::read_dir(scratch.0.join("sources.list.d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "a temporary file was left: {names:?}");
        // Valid now: a second call leaves it alone.
        setup.lists = AptLists::Current;
        setup.ensure_backports_source().unwrap();
        assert_eq!(setup.lists, AptLists::Current);
    }

    /// T1: a backports source an older driver wrote without the bookworm
    /// source's options is rewritten with them (once); ours is kept as it is
    /// when there is no bookworm source to derive it from.
    #[test]
    fn an_older_source_of_ours_gains_the_options() {
        let scratch = Scratch::new();
        scratch.write(
            "sources.list",
            "deb [arch=amd64] http://mirror.invalid/debian bookworm main\n",
        );
        let ours = scratch.paths().backports_file();
        let older = "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\n\
            Components: main\n";
        std::fs::write(&ours, older).unwrap();
        let mut setup = setup(&scratch, FakeMachine::fresh(&scratch));
        setup.lists = AptLists::Current;
        setup.ensure_backports_source().unwrap();
        assert_eq!(setup.lists, AptLists::MaybeStale);
        assert_eq!(
            std::fs::read_to_string(&ours).unwrap(),
            format!("{older}Architectures: amd64\n")
        );
        setup.lists = AptLists::Current;
        setup.ensure_backports_source().unwrap();
        assert_eq!(setup.lists, AptLists::Current, "rewritten again");

        // Also before an update asked for by the guest fetch (QEMU was
        // installed with the older file).
        std::fs::write(&ours, older).unwrap();
        setup.refresh_lists().unwrap();
        assert_eq!(
            std::fs::read_to_string(&ours).unwrap(),
            format!("{older}Architectures: amd64\n")
        );
        assert_eq!(setup.host.log, ["apt-get update -q"]);

        std::fs::remove_file(scratch.0.join("sources.list")).unwrap();
        std::fs::write(&ours, older).unwrap();
        setup.ensure_backports_source().unwrap();
        assert_eq!(std::fs::read_to_string(&ours).unwrap(), older);
    }

    #[test]
    fn one_line_sources_with_options() {
        let text = "# comment\n\
            deb-src http://mirror.invalid/debian bookworm main\n\
            deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.invalid/debian bookworm main\n\
            deb [ trusted=yes ] http://other.invalid/debian bookworm-updates main # tail\n\
            deb http://plain.invalid/debian bookworm main contrib\n\
            deb [broken http://x.invalid bookworm main\n\
            debx http://x.invalid bookworm main\n";
        let entries = parse_one_line(text);
        assert_eq!(
            entries,
            vec![
                SourceEntry {
                    uris: vec!["http://mirror.invalid/debian".into()],
                    suites: vec!["bookworm".into()],
                    options: vec![
                        ("Architectures", "amd64".into()),
                        ("Signed-By", "/usr/share/keyrings/x.gpg".into()),
                    ],
                },
                SourceEntry {
                    uris: vec!["http://other.invalid/debian".into()],
                    suites: vec!["bookworm-updates".into()],
                    options: vec![("Trusted", "yes".into())],
                },
                SourceEntry {
                    uris: vec!["http://plain.invalid/debian".into()],
                    suites: vec!["bookworm".into()],
                    options: Vec::new(),
                },
            ]
        );
        assert_eq!(
            backports_stanza(&entries[0]),
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\n\
             Components: main\nArchitectures: amd64\nSigned-By: /usr/share/keyrings/x.gpg\n"
        );
    }

    #[test]
    fn deb822_fields_span_lines_and_stanzas_can_be_off() {
        let text = "Types: deb deb-src\n\
            URIs: http://mirror.invalid/debian\n\
            Suites: bookworm\n\
            Components: main\n\
            Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n -----END PGP PUBLIC KEY BLOCK-----\n\
            \n\
            Types: deb\n\
            URIs: http://off.invalid/debian\n\
            Suites: bookworm-backports\n\
            Enabled: no\n\
            \n\
            types: deb\n\
            uris: http://lower.invalid/debian\n\
            suites: trixie\n\
            \n\
            Types: deb\n\
            URIs: http://broken.invalid/debian\n\
            Suites: bookworm-backports\n\
            this line is not a field\n";
        let entries = parse_deb822(text);
        assert_eq!(entries.len(), 2, "{entries:#?}");
        assert_eq!(entries[1].suites, vec!["trixie".to_string()]);
        let stanza = backports_stanza(&entries[0]);
        assert_eq!(
            stanza,
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: \n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n \
             mQINBF\n -----END PGP PUBLIC KEY BLOCK-----\n"
        );
        // What we write reads back as the entry we meant.
        assert_eq!(
            parse_deb822(&stanza),
            vec![SourceEntry {
                uris: vec!["http://mirror.invalid/debian".into()],
                suites: vec!["bookworm-backports".into()],
                options: entries[0].options.clone(),
            }]
        );
    }

    /// T1: one-line options are carried under their deb822 names (lists
    /// as words, `+`/`-` forms as -Add/-Remove), suite-specific and unknown
    /// ones are not, and the written stanza reads back with the same options.
    #[test]
    fn backports_carries_the_bookworm_options_in_deb822_form() {
        let one_line = parse_one_line(
            "deb [arch=amd64,arm64 lang-=de target+=Contents-deb check-valid-until=no \
             inrelease-path=InRelease.bookworm snapshot=yes signed-by=/k.gpg \
             valid-until-max=7d by-hash=force] http://mirror.invalid/debian bookworm main\n",
        );
        let stanza = backports_stanza(&one_line[0]);
        assert_eq!(
            stanza,
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\n\
             Components: main\nArchitectures: amd64 arm64\nLanguages-Remove: de\n\
             Targets-Add: Contents-deb\nCheck-Valid-Until: no\nSigned-By: /k.gpg\n\
             Valid-Until-Max: 7d\nBy-Hash: force\n"
        );
        let read_back = parse_deb822(&stanza);
        assert_eq!(read_back.len(), 1);
        assert_eq!(read_back[0].suites, ["bookworm-backports"]);
        assert_eq!(read_back[0].options, one_line[0].options);

        // deb822: field names in any case, multi-line values as written.
        let entries = parse_deb822(
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\n\
             architectures: amd64\n i386\nInRelease-Path: x\nX-Repolib-Name: Debian\n\
             allow-insecure: yes\n",
        );
        assert_eq!(
            backports_stanza(&entries[0]),
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\n\
             Components: main\nArchitectures: amd64\n i386\nAllow-Insecure: yes\n"
        );
    }

    /// T1 through setup: the file written for a snapshot mirror with an
    /// architecture list keeps both.
    #[test]
    fn the_written_backports_source_keeps_the_mirror_options() {
        let scratch = Scratch::new();
        scratch.write(
            "sources.list",
            "deb [arch=amd64 check-valid-until=no] http://snapshot.invalid/debian bookworm main\n",
        );
        let mut setup = setup(&scratch, FakeMachine::fresh(&scratch));
        setup.ensure_backports_source().unwrap();
        let written = std::fs::read_to_string(scratch.paths().backports_file()).unwrap();
        assert_eq!(
            written,
            "Types: deb\nURIs: http://snapshot.invalid/debian\nSuites: bookworm-backports\n\
             Components: main\nArchitectures: amd64\nCheck-Valid-Until: no\n"
        );
    }

    #[test]
    fn no_bookworm_source_is_a_clear_error() {
        let scratch = Scratch::new();
        scratch.write(
            "sources.list",
            "deb http://mirror.invalid/debian trixie main\n",
        );
        let mut setup = setup(&scratch, FakeMachine::fresh(&scratch));
        let error = setup.qemu().unwrap_err();
        assert!(error.contains("no Debian bookworm source found"), "{error}");
        assert!(setup.host.log.is_empty());
    }

    #[test]
    fn versions() {
        assert_eq!(
            Version::parse("1.96.0 (ac68faa20 2026-05-25)"),
            Some(Version {
                major: 1,
                minor: 96,
                patch: 0
            })
        );
        assert_eq!(
            Version::parse("10.0.2 (Debian 1:10.0.2+ds-2)")
                .unwrap()
                .major,
            10
        );
        assert_eq!(Version::parse("7.2").unwrap(), Version::new(7, 2));
        assert_eq!(
            Version::parse("1.87.0-beta.3").unwrap(),
            Version::new(1, 87)
        );
        assert_eq!(Version::parse("x1.2"), None);
        assert_eq!(Version::parse("99999999999.1"), None);
        assert_eq!(
            Version::parse_debian("1:10.0.2+ds-2+deb13u1~bpo12+1").unwrap(),
            Version::parse("10.0.2").unwrap()
        );
        assert_eq!(
            Version::parse_debian("1.96.0+dfsg1-1~deb12u2").unwrap(),
            Version::parse("1.96.0").unwrap()
        );
        assert!(Version::parse("1.86.9").unwrap() < HV_MIN_RUSTC);
        assert!(Version::parse("1.87.0").unwrap() >= HV_MIN_RUSTC);
        assert!(Version::parse("9.2.4").unwrap() < MIN_QEMU);
        assert!(Version::parse("11.0.0").unwrap() >= MIN_QEMU);
    }

    /// review8 T1: the stanza written for bookworm-backports keeps only the
    /// URIs and Signed-By of the machine's bookworm source. Options that
    /// source needs to work are dropped: Architectures (with the arm64
    /// foreign architecture guest.rs adds, apt then asks an amd64-only mirror
    /// for arm64 indexes), Trusted (an unsigned local mirror) and
    /// Check-Valid-Until (a snapshot archive, whose backports Release has an
    /// expired Valid-Until). `apt-get update` then fails and QEMU is never
    /// installed.
    #[test]
    fn review8_backports_keeps_the_options_its_mirror_needs() {
        let text = "Types: deb\n\
            URIs: http://mirror.invalid/debian\n\
            Suites: bookworm\n\
            Components: main\n\
            Architectures: amd64\n\
            Trusted: yes\n\
            Check-Valid-Until: no\n";
        let entries = parse_deb822(text);
        let stanza = backports_stanza(&entries[0]);
        for option in [
            "Architectures: amd64",
            "Trusted: yes",
            "Check-Valid-Until: no",
        ] {
            assert!(stanza.contains(option), "{option} dropped:\n{stanza}");
        }
        let one_line = parse_one_line(
            "deb [arch=amd64 trusted=yes] http://mirror.invalid/debian bookworm main\n",
        );
        let stanza = backports_stanza(&one_line[0]);
        assert!(
            stanza.contains("Architectures: amd64"),
            "arch= dropped:\n{stanza}"
        );
    }
}
