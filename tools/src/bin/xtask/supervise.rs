//! Child processes that never outlive the driver: each is killed (with
//! everything it started, for a step in its own process group) when its
//! time limit passes, when its handle is dropped (an error or a panic in the
//! driver), and when the driver is interrupted or terminated.

use crate::describe;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What killing a child reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The child alone (QEMU): it stays in the driver's process group, so
    /// whoever stops that group (a parent `cargo xtask test`, a Ctrl-C)
    /// stops it too.
    Process,
    /// The child leads a new process group, and killing it kills the group:
    /// a `cargo test` with the test binaries (and their QEMUs) it started.
    Group,
}

/// The children started here that may still run.
static RUNNING: Mutex<Vec<(Pid, Reach)>> = Mutex::new(Vec::new());

fn running() -> MutexGuard<'static, Vec<(Pid, Reach)>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn kill_reach(id: Pid, reach: Reach) {
    let _ = match reach {
        Reach::Process => kill(id, Signal::SIGKILL),
        Reach::Group => killpg(id, Signal::SIGKILL),
    };
}

/// On SIGINT, SIGTERM or SIGHUP: kill every running child, then exit.
/// (A step's own process group is not the terminal's foreground group, so a
/// Ctrl-C reaches only this process; without this it would run on.)
pub fn stop_children_on_signals() {
    let installed = ctrlc::set_handler(|| {
        // Held until exit, so no child can start after this look.
        let running = running();
        for &(id, reach) in running.iter() {
            kill_reach(id, reach);
        }
        eprintln!(
            "xtask: interrupted; stopped {} running child process(es)",
            running.len()
        );
        std::process::exit(130);
    });
    if let Err(e) = installed {
        eprintln!(
            "xtask: warning: cannot handle signals ({e}); \
             an interrupted run may leave child processes"
        );
    }
}

/// A child process that is killed when this handle goes.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    id: Pid,
    reach: Reach,
}

impl Supervised {
    pub fn spawn(command: &mut Command, reach: Reach) -> std::io::Result<Supervised> {
        use std::os::unix::process::CommandExt;
        if reach == Reach::Group {
            command.process_group(0);
        }
        // Registered under the lock the signal handler takes, so a signal
        // either sees this child or comes before it exists.
        let mut running = running();
        let child = command.spawn()?;
        let id = Pid::from_raw(i32::try_from(child.id()).expect("Linux pids fit in i32"));
        running.push((id, reach));
        Ok(Supervised { child, id, reach })
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kills the child (and its group, for [`Reach::Group`]) and reaps it.
    pub fn kill(&mut self) {
        match self.reach {
            // Only while unreaped: until then the pid is still the child's.
            Reach::Process => {
                if let Ok(None) = self.child.try_wait() {
                    kill_reach(self.id, self.reach);
                }
            }
            // Also after the leader exited: what it left in its group goes
            // too. The group id is not reused while any member lives.
            Reach::Group => kill_reach(self.id, self.reach),
        }
        let _ = self.child.wait();
    }

    /// The child's exit status, or None if it is still running at `deadline`.
    pub fn wait_until(&mut self, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
        running().retain(|&(id, _)| id != self.id);
    }
}

/// Runs `command` (echoed, stdin closed) to completion within `limit`; past
/// it, the command and every process it started are killed.
pub fn run_within(command: &mut Command, limit: Duration) -> Result<(), String> {
    let line = describe(command);
    println!("xtask: $ {line}");
    let deadline = Instant::now()
        .checked_add(limit)
        .ok_or_else(|| format!("time limit {} s is too long", limit.as_secs()))?;
    let mut step = Supervised::spawn(command.stdin(Stdio::null()), Reach::Group)
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    let status = step
        .wait_until(deadline)
        .map_err(|e| format!("waiting for `{line}`: {e}"))?;
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("`{line}` failed ({status})")),
        None => {
            step.kill();
            Err(format!(
                "`{line}` still ran after its time limit of {} s (hung?): \
                 stopped it and every process it started",
                limit.as_secs()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is gone (or a zombie: no longer running).
    fn is_dead(pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        stat.map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
    }

    fn eventually_dead(pid: i32) -> bool {
        (0..100).any(|_| {
            let dead = is_dead(pid);
            if !dead {
                std::thread::sleep(Duration::from_millis(20));
            }
            dead
        })
    }

    /// X7: a step past its limit is killed with what it started (here a
    /// background `sleep`, as a test binary's QEMU would be), promptly.
    #[test]
    fn a_hung_command_is_killed_with_its_children() {
        let pid_file = std::env::temp_dir().join(format!("xtask-supervise-{}", std::process::id()));
        let started = Instant::now();
        let error = run_within(
            Command::new("sh")
                .arg("-c")
                .arg(format!("sleep 30 & echo $! > {}; wait", pid_file.display())),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            error.ends_with(
                "still ran after its time limit of 1 s (hung?): \
                 stopped it and every process it started"
            ),
            "{error}"
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        assert!(eventually_dead(pid), "the background sleep {pid} survived");
    }

    #[test]
    fn exit_statuses_are_reported() {
        run_within(&mut Command::new("true"), Duration::from_secs(30)).unwrap();
        let error = run_within(&mut Command::new("false"), Duration::from_secs(30)).unwrap_err();
        assert_eq!(error, "`false` failed (exit status: 1)");
        let error = run_within(
            &mut Command::new("/nonexistent/program"),
            Duration::from_secs(30),
        )
        .unwrap_err();
        assert!(
            error.starts_with("cannot start `/nonexistent/program`"),
            "{error}"
        );
    }

    /// X7: a child is killed when the driver lets go of it early (an error
    /// returned through the code that started it).
    #[test]
    fn dropping_a_child_kills_it() {
        for reach in [Reach::Process, Reach::Group] {
            let mut sleep = Command::new("sleep");
            let child = Supervised::spawn(sleep.arg("30"), reach).unwrap();
            let id = child.id;
            assert!(!is_dead(id.as_raw()));
            assert!(running().contains(&(id, reach)));
            drop(child);
            assert!(eventually_dead(id.as_raw()), "{reach:?}");
            assert!(running().iter().all(|&(i, _)| i != id));
        }
    }

    /// X7: so does a panic unwinding through it (e.g. a console echo into a
    /// closed stdout while QEMU runs).
    #[test]
    fn a_panic_kills_the_child() {
        let (sender, receiver) = std::sync::mpsc::channel();
        let result = std::thread::spawn(move || {
            let mut sleep = Command::new("sleep");
            let child = Supervised::spawn(sleep.arg("30"), Reach::Process).unwrap();
            sender.send(child.id).unwrap();
            panic!("the driver fails while QEMU runs");
        })
        .join();
        assert!(result.is_err());
        assert!(eventually_dead(receiver.recv().unwrap().as_raw()));
    }
}
