//! Child processes that never outlive the driver: each is killed (with
//! everything it started, for a step in its own process group) when its
//! time limit passes, when its handle is dropped (an error or a panic in the
//! driver), and when the driver is interrupted or terminated.

use crate::describe;
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::Write;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
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
///
/// Invariant: a child listed here is not reaped. Linux frees a process id
/// (and with it the process group id a leader gives its group) only when
/// the process is reaped and no group member is left, so while a child is
/// listed, its id names it (alive or a zombie) and its group, never a
/// stranger: `kill`/`killpg` on a listed id, from the driver or from the
/// signal handler's thread, cannot hit another process. Hence a child is
/// only ever reaped by [`Supervised::reap`], which first takes it off this
/// list under the lock (killing its group first), and its exit is otherwise
/// observed without reaping (`waitid` with `WNOWAIT`).
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

/// The exit status of an interrupted or terminated driver (128 + SIGINT,
/// what a shell reports for a Ctrl-C).
const INTERRUPTED: i32 = 130;

/// On SIGINT, SIGTERM or SIGHUP: kill every running child, then exit.
/// (A step's own process group is not the terminal's foreground group, so a
/// Ctrl-C reaches only this process; without this it would run on.)
pub fn stop_children_on_signals() {
    let installed = ctrlc::set_handler(|| {
        // Held until exit, so no child can start, and none be reaped,
        // after this look (see RUNNING).
        let running = running();
        let code = stop_all(&running, &mut std::io::stderr());
        std::process::exit(code);
    });
    if let Err(e) = installed {
        eprintln!(
            "xtask: warning: cannot handle signals ({e}); \
             an interrupted run may leave child processes"
        );
    }
}

/// Kills `children` and says so on `report`, whose errors are ignored: the
/// terminal or pipe that was stderr may be gone (a closed ssh session is a
/// SIGHUP), and a panic here would end the handler's thread without the
/// exit, leaving the driver running. Returns the exit status to use.
fn stop_all(children: &[(Pid, Reach)], report: &mut dyn Write) -> i32 {
    for &(id, reach) in children {
        kill_reach(id, reach);
    }
    let _ = writeln!(
        report,
        "xtask: interrupted; stopped {} running child process(es)",
        children.len()
    );
    INTERRUPTED
}

/// A child process that is killed when this handle goes.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    id: Pid,
    reach: Reach,
    /// Set once reaped: from then on the id may be another process's.
    status: Option<ExitStatus>,
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
        Ok(Supervised {
            child,
            id,
            reach,
            status: None,
        })
    }

    /// The child's piped standard output and error (each once). The child
    /// itself is not handed out: waiting on it would reap it behind
    /// RUNNING's back.
    pub fn take_output(&mut self) -> (Option<ChildStdout>, Option<ChildStderr>) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// Whether the child has exited, seen without reaping it, so that its
    /// id (and group) stay reserved until [`Supervised::reap`].
    fn has_exited(&self, block: bool) -> std::io::Result<bool> {
        if self.status.is_some() {
            return Ok(true);
        }
        let mut flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        if !block {
            flags |= WaitPidFlag::WNOHANG;
        }
        loop {
            return match waitid(Id::Pid(self.id), flags) {
                Ok(WaitStatus::StillAlive) => Ok(false),
                Ok(_) => Ok(true),
                Err(Errno::EINTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Ends the supervision: kills the group (a [`Reach::Group`] child's
    /// leftovers, or all of it), and with `kill_child` the child itself,
    /// takes the child off RUNNING, and only then reaps it. The order is
    /// what keeps the ids right: each signal is sent while the child is
    /// unreaped (its id still its own), and the signal handler cannot
    /// signal it once reaped (it is no longer listed).
    fn reap(&mut self, kill_child: bool) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        {
            let mut running = running();
            match self.reach {
                // Also after the leader exited: what it left in its group
                // goes too.
                Reach::Group => kill_reach(self.id, Reach::Group),
                Reach::Process if kill_child => kill_reach(self.id, Reach::Process),
                Reach::Process => {}
            }
            running.retain(|&(id, _)| id != self.id);
        }
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// Kills the child (and its group, for [`Reach::Group`]) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.reap(true);
    }

    /// Waits for the child to exit and reaps it (killing what a
    /// [`Reach::Group`] child left in its group).
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.has_exited(true)?;
        self.reap(false)
    }

    /// The child's exit status, or None if it is still running at `deadline`.
    pub fn wait_until(&mut self, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
        loop {
            if self.has_exited(false)? {
                return self.reap(false).map(Some);
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
                "`{line}` still ran after its time limit of {:.0} s (hung?): \
                 stopped it and every process it started",
                limit.as_secs_f64()
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

    /// The state letter of `pid` in /proc (R, S, Z, ...), None when gone.
    fn state(pid: i32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        rest.trim_start().chars().next()
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

    /// T4: the exit of a group leader is seen without reaping it, so its id
    /// (and its group's) stay reserved while it is listed for the signal
    /// handler; its group is killed before it is reaped and unlisted.
    #[test]
    fn a_leader_stays_unreaped_until_its_group_is_killed() {
        let pid_file = std::env::temp_dir().join(format!("xtask-leader-{}", std::process::id()));
        let _ = std::fs::remove_file(&pid_file);
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(format!(
            "sleep 30 & echo $! > {0}.part; mv {0}.part {0}; exit 3",
            pid_file.display()
        ));
        let mut leader = Supervised::spawn(&mut sh, Reach::Group).unwrap();
        let id = leader.id;
        // The leader exits; polling for that must not reap it.
        let exited = (0..500).any(|_| {
            let exited = leader.has_exited(false).unwrap();
            if !exited {
                std::thread::sleep(Duration::from_millis(20));
            }
            exited
        });
        assert!(exited, "the leader did not exit");
        for _ in 0..3 {
            assert!(leader.has_exited(false).unwrap());
        }
        assert_eq!(state(id.as_raw()), Some('Z'), "the leader was reaped");
        assert!(running().contains(&(id, Reach::Group)));
        let sleep: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        assert!(!is_dead(sleep));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = leader.wait_until(deadline).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(eventually_dead(sleep), "the leader's group was not killed");
        assert!(running().iter().all(|&(i, _)| i != id));
        // Reaped once: a drop (or a second kill) sends nothing more.
        leader.kill();
        assert_eq!(leader.status, Some(status));
    }

    /// A writer whose every write fails, as stderr does once the terminal
    /// or pipe behind it is gone.
    struct Gone;

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    /// T4: stopping the children on a signal kills them and picks 130,
    /// with nowhere to report it.
    #[test]
    fn stopping_on_a_signal_needs_no_stderr() {
        let mut sleep = Command::new("sleep").arg("30").spawn().unwrap();
        let id = Pid::from_raw(sleep.id().try_into().unwrap());
        assert_eq!(stop_all(&[(id, Reach::Process)], &mut Gone), 130);
        let status = sleep.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    /// T4, the real handler in a process of its own (this test binary run
    /// again for this test alone): SIGTERM with stderr a closed pipe kills
    /// the driver's child and exits 130 (a panic writing to stderr would
    /// end the handler's thread and leave the driver running).
    #[test]
    fn a_signal_with_stderr_gone_stops_the_children_and_exits_130() {
        const NAME: &str =
            "supervise::tests::a_signal_with_stderr_gone_stops_the_children_and_exits_130";
        const AS_DRIVER: &str = "XTASK_SUPERVISE_TEST_AS_DRIVER";
        if std::env::var_os(AS_DRIVER).is_some() {
            stop_children_on_signals();
            let mut sleep = Command::new("sleep");
            let child = Supervised::spawn(sleep.arg("30"), Reach::Group).unwrap();
            let mut out = std::io::stdout();
            // After libtest's "test NAME ... " on the same line.
            writeln!(out, "\nsupervised-child {}", child.id).unwrap();
            out.flush().unwrap();
            std::thread::sleep(Duration::from_secs(30));
            std::process::exit(1);
        }
        let mut driver = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(AS_DRIVER, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(driver.stderr.take());
        let stdout = driver.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let child: i32 = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the driver did not start its child");
            if let Some(pid) = line.strip_prefix("supervised-child ") {
                break pid.parse().unwrap();
            }
        };
        let driver_id = Pid::from_raw(driver.id().try_into().unwrap());
        kill(driver_id, Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = driver.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
                panic!("the driver still ran 10 s after SIGTERM (its handler panicked?)");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(130), "{status}");
        assert!(
            eventually_dead(child),
            "the driver's child {child} survived"
        );
    }
}
