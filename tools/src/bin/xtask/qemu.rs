//! Booting hv on QEMU: the command line, streaming the console, the
//! timeout, and the verdict. QEMU never outlives a run: it exits when hv
//! ends the run (semihosting SYS_EXIT) and is killed on timeout, or when
//! the driver stops early (see `supervise`).

use crate::supervise::{Reach, Supervised};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How many console lines a failure report shows.
pub const TAIL_LINES: usize = 30;

/// One QEMU boot of hv.
#[derive(Clone, Debug)]
pub struct Machine {
    /// QEMU's -M: the board and its options.
    pub machine: String,
    pub cpu: String,
    pub smp: u32,
    /// QEMU's -m syntax: 512M, 2G ...
    pub memory: String,
    pub hv_image: PathBuf,
    pub bundle: PathBuf,
    pub timeout: Duration,
    /// Extra words for hv's own command line (after `hv.exit=semihosting`).
    pub hv_args: String,
}

/// How a boot ended.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status; None when it was killed on timeout.
    pub status: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// The last console lines.
    pub tail: VecDeque<String>,
    /// Every console line that contained one of the watched strings.
    pub matches: Vec<String>,
}

impl Machine {
    pub fn command(&self) -> Command {
        let mut command = Command::new("qemu-system-aarch64");
        command
            .arg("-M")
            .arg(&self.machine)
            .arg("-cpu")
            .arg(&self.cpu)
            .arg("-smp")
            .arg(self.smp.to_string())
            .arg("-m")
            .arg(&self.memory)
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
            // No network: the board's default NIC needs a boot ROM
            // (efi-virtio.rom, Debian's ipxe-qemu, a package QEMU only
            // recommends), and neither hv nor its guests use one.
            .args(["-nic", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(&self.hv_image)
            .arg("-initrd")
            .arg(&self.bundle)
            .arg("-append")
            .arg(format!("hv.exit=semihosting {}", self.hv_args).trim_end());
        command
    }

    /// Boots, echoing the console when `echo`, and collects the lines that
    /// contain any of `watch`.
    pub fn boot(&self, echo: bool, watch: &[&str]) -> Result<Outcome, String> {
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if echo {
            println!("xtask: $ {}", crate::describe(&command));
        }
        let started = Instant::now();
        let deadline = deadline(started, self.timeout)?;
        // Killed however this function is left (see `supervise`).
        let mut qemu = Supervised::spawn(&mut command, Reach::Process)
            .map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
        let (stdout, stderr) = qemu.take_output();
        let (sender, lines) = mpsc::channel::<String>();
        let stdout = stdout.expect("stdout is piped");
        let stderr = stderr.expect("stderr is piped");
        let err_sender = sender.clone();
        let readers = [
            std::thread::spawn(move || forward_lines(stdout, sender, "")),
            std::thread::spawn(move || forward_lines(stderr, err_sender, "qemu: ")),
        ];
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let mut matches = Vec::new();
        let mut timed_out = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                break;
            }
            match lines.recv_timeout(deadline - now) {
                Ok(line) => {
                    if echo {
                        println!("{line}");
                    }
                    if watch.iter().any(|w| line.contains(w)) {
                        matches.push(line.clone());
                    }
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = if timed_out {
            qemu.kill();
            None
        } else {
            qemu.wait()
                .map_err(|e| format!("waiting for QEMU: {e}"))?
                .code()
        };
        for reader in readers {
            let _ = reader.join();
        }
        Ok(Outcome {
            status,
            timed_out,
            elapsed: started.elapsed(),
            tail,
            matches,
        })
    }
}

/// When a run that starts at `started` must end; an error (not the panic of
/// `Instant + Duration`) when that is past what an `Instant` can hold.
fn deadline(started: Instant, timeout: Duration) -> Result<Instant, String> {
    started
        .checked_add(timeout)
        .ok_or_else(|| format!("a timeout of {} s is too long", timeout.as_secs()))
}

/// Sends each line (lossy UTF-8, CR dropped) until the stream closes.
fn forward_lines(stream: impl Read, sender: mpsc::Sender<String>, prefix: &str) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buffer);
                let line = text.trim_end_matches(['\n', '\r']).replace('\r', "");
                if sender.send(format!("{prefix}{line}")).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(60)),
            Ok(now + Duration::from_secs(60))
        );
        assert_eq!(
            deadline(now, Duration::MAX),
            Err(format!("a timeout of {} s is too long", u64::MAX))
        );
    }
}
