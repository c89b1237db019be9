//! Idempotent installation of what the commands need: Debian packages for the
//! aarch64 toolchain and QEMU. Each step checks first and says what it installs.

use crate::run_command;
use std::path::Path;
use std::process::Command;

/// Debian's own rustc/cargo build with the library sources, so core and alloc
/// can be built for aarch64-unknown-none (rustup cannot fetch targets here).
const TOOLCHAIN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-22"];

/// The backports suite carries QEMU 10 (bookworm's 7.2 lacks FEAT_NV2).
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/umbra-bookworm-backports.sources";

pub fn all() -> Result<(), String> {
    aarch64_toolchain()?;
    qemu()?;
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

static APT_UPDATED: std::sync::Once = std::sync::Once::new();

fn apt_update() -> Result<(), String> {
    let mut result = Ok(());
    APT_UPDATED.call_once(|| {
        result = run_command(Command::new("apt-get").args(["update", "-q"]));
    });
    result
}

/// Installs the packages not yet installed, from `suite` when given.
pub fn apt_install(packages: &[&str], suite: Option<&str>) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Debian packages: {}", missing.join(" "));
    apt_update()?;
    let mut command = Command::new("apt-get");
    command.env("DEBIAN_FRONTEND", "noninteractive").args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
    ]);
    if let Some(suite) = suite {
        command.args(["-t", suite]);
    }
    command.args(&missing);
    run_command(&mut command)
}

pub fn aarch64_toolchain() -> Result<(), String> {
    apt_install(TOOLCHAIN_PACKAGES, None)
}

pub fn qemu() -> Result<(), String> {
    if !Path::new(BACKPORTS_SOURCE).exists() {
        let stanza = backports_stanza()?;
        println!("xtask: adding the bookworm-backports suite for QEMU 10 ({BACKPORTS_SOURCE})");
        std::fs::write(BACKPORTS_SOURCE, stanza)
            .map_err(|e| format!("cannot write {BACKPORTS_SOURCE}: {e}"))?;
    }
    apt_install(&["qemu-system-arm"], Some("bookworm-backports"))
}

/// A deb822 stanza for bookworm-backports that uses the same mirror and key
/// as the machine's existing bookworm source, so no archive is named here.
fn backports_stanza() -> Result<String, String> {
    const DEB822: &str = "/etc/apt/sources.list.d/debian.sources";
    const ONE_LINE: &str = "/etc/apt/sources.list";
    if let Ok(text) = std::fs::read_to_string(DEB822) {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let suites = field("Suites:").unwrap_or_default();
            if suites.split_whitespace().any(|s| s == "bookworm") {
                let uris =
                    field("URIs:").ok_or(format!("{DEB822}: bookworm stanza has no URIs"))?;
                let mut out = format!(
                    "Types: deb\nURIs: {uris}\nSuites: bookworm-backports\nComponents: main\n"
                );
                if let Some(key) = field("Signed-By:") {
                    out.push_str(&format!("Signed-By: {key}\n"));
                }
                return Ok(out);
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(ONE_LINE) {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() >= 3 && words[0] == "deb" && words[2] == "bookworm" {
                return Ok(format!(
                    "Types: deb\nURIs: {}\nSuites: bookworm-backports\nComponents: main\n",
                    words[1]
                ));
            }
        }
    }
    Err(format!(
        "no Debian bookworm source found in {DEB822} or {ONE_LINE}; \
         add bookworm-backports by hand and run again"
    ))
}
