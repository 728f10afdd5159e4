//! Processes seen through `/proc`: who owns a sandbox, which processes serve a sandbox's data
//! directory, the process tree under a jail, and stopping them.
//!
//! A process is identified by its pid *and* its start time (`/proc/<pid>/stat` field 22, in clock
//! ticks after boot), so a pid the kernel recycled for an unrelated process is not mistaken for a
//! sandbox's owner. A zombie counts as gone: it runs no code and holds no files.
//!
//! Servers are found by their command line mentioning the sandbox's data directory (`pg_ctl`
//! passes it as `-D <dir>`, and its intermediate shell as part of one `exec …` argument), never
//! by a process name or a pid file alone: the path is unique to one sandbox, so a pid read from a
//! `postmaster.pid` that some restored backup carried can never lead to signalling a production
//! server.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often a stopping process is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a process gets to disappear after SIGKILL before we report it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A process, identified so that a recycled pid does not pass for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pub pid: u32,
    /// Clock ticks after boot at which the process started (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

impl ProcessIdentity {
    /// Returns the identity of the calling process.
    pub fn current() -> io::Result<Self> {
        Self::of(std::process::id())
    }

    /// Returns the identity of a running process.
    pub fn of(pid: u32) -> io::Result<Self> {
        let stat = read_stat(pid)?;
        Ok(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process (same pid, same start time) still runs.
    pub fn is_running(&self) -> bool {
        read_stat(self.pid).is_ok_and(|stat| stat.is_running() && stat.start_time == self.start_time)
    }
}

/// The fields of `/proc/<pid>/stat` we need.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 2: the command name (the executable's file name, at most 15 bytes).
    pub name: String,
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Field 4: the parent's pid.
    pub parent: u32,
    /// Field 22.
    pub start_time: u64,
}

impl Stat {
    pub(crate) fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub(crate) fn read_stat(pid: u32) -> io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/<pid>/stat format"))
}

/// Parses `/proc/<pid>/stat`. Field 2 is the command name in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (before_name, after_name) = text.rsplit_once(')')?;
    let (_, name) = before_name.split_once('(')?;
    let mut fields = after_name.split_whitespace();
    // Field 3 is the first after the name, field 4 the next; field 22 is 18 further on.
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    let start_time = fields.nth(17)?.parse().ok()?;
    Some(Stat {
        name: name.to_owned(),
        state,
        parent,
        start_time,
    })
}

/// Every running process as (pid, stat); processes that vanish while being read are skipped.
pub(crate) fn all_processes() -> Vec<(u32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid).ok()?)))
        .filter(|(_, stat)| stat.is_running())
        .collect()
}

/// The descendants of `root` (not `root` itself), parents before children.
pub(crate) fn descendants(root: u32, processes: &[(u32, Stat)]) -> Vec<(u32, &Stat)> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, stat) in processes {
            if stat.parent == parent && *pid != root && !found.iter().any(|(known, _)| known == pid) {
                found.push((*pid, stat));
                frontier.push(*pid);
            }
        }
    }
    found
}

/// The command line of `pid`, arguments separated by spaces (empty once it is gone).
pub(crate) fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .split('\0')
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Whether the command line of `pid` mentions `path` (in any argument, or part of one).
pub(crate) fn mentions(pid: u32, path: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = path.as_os_str().as_bytes();
    !wanted.is_empty() && cmdline.windows(wanted.len()).any(|window| window == wanted)
}

/// Running processes whose command line mentions `path`.
pub(crate) fn processes_mentioning(path: &Path) -> Vec<ProcessIdentity> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id() && mentions(*pid, path))
        .filter_map(|pid| ProcessIdentity::of(pid).ok())
        .filter(ProcessIdentity::is_running)
        .collect()
}

/// Stops every process whose command line mentions `data_dir` (a sandbox server and the jail
/// around it: the `postmaster.pid` in a jailed data directory holds a pid of the jail's own PID
/// namespace, so it is never read): `polite` first when given, SIGKILL after `grace`.
///
/// Scans again until two scans in a row find nothing, so that a server still being started (a
/// `pg_ctl` killed midway leaves its shell to exec the postmaster) is caught too. Returns the first
/// error signalling a process (e.g. `EPERM`), or `EBUSY` if some survive SIGKILL for a while.
pub(crate) fn stop_servers_of(data_dir: &Path, polite: Option<Signal>, grace: Duration) -> Result<(), Errno> {
    let find = || processes_mentioning(data_dir);
    if let Some(signal) = polite {
        let targets = find();
        for target in &targets {
            send(*target, signal)?;
        }
        wait_for_exit(&targets, grace);
    }
    let deadline = Instant::now() + KILL_WAIT;
    let mut quiet_scans = 0;
    loop {
        let targets = find();
        if targets.is_empty() {
            quiet_scans += 1;
            if quiet_scans >= 2 {
                return Ok(());
            }
        } else {
            quiet_scans = 0;
            for target in &targets {
                send(*target, Signal::SIGKILL)?;
            }
        }
        if Instant::now() >= deadline {
            return Err(Errno::EBUSY);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Sends `signal` to `target` if it is still that process; a process that is already gone is fine.
fn send(target: ProcessIdentity, signal: Signal) -> Result<(), Errno> {
    if !target.is_running() {
        return Ok(());
    }
    let pid = i32::try_from(target.pid).map_err(|_| Errno::ESRCH)?;
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Waits until none of `targets` runs, or `timeout` has passed.
fn wait_for_exit(targets: &[ProcessIdentity], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while targets.iter().any(ProcessIdentity::is_running) && Instant::now() < deadline {
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                name: "a (weird) name".to_owned(),
                state: 'S',
                parent: 1,
                start_time: 987_654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) Z 1 2"), None);
    }

    #[test]
    fn the_current_process_runs_and_a_recycled_pid_does_not_pass_for_it() {
        let me = ProcessIdentity::current().unwrap();
        assert!(me.is_running());
        let impostor = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_running());
    }

    #[test]
    fn children_are_found_under_their_parent() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id();
        let processes = all_processes();
        let mine = descendants(me, &processes);
        assert!(
            mine.iter()
                .any(|(pid, stat)| *pid == child.id() && stat.name == "sleep"),
            "{mine:?}"
        );
        assert!(command_line(child.id()).starts_with("sleep 5"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_reaped_child_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(read_stat(pid).is_err() || !read_stat(pid).unwrap().is_running());
    }

    /// Waits until a freshly spawned child shows its new command line: right after `execve`
    /// the kernel briefly reports an empty one.
    fn wait_until_mentioned(path: &Path, pid: u32) -> Vec<ProcessIdentity> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = processes_mentioning(path);
            if found.iter().any(|process| process.pid == pid) || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    #[test]
    fn processes_are_found_by_their_command_line_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("followed");
        std::fs::write(&file, "").unwrap();
        let sibling = dir.path().join("other");
        let mut child = std::process::Command::new("tail").arg("-f").arg(&file).spawn().unwrap();
        let found = wait_until_mentioned(&file, child.id());
        assert_eq!(found.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![child.id()]);
        assert!(processes_mentioning(&sibling).is_empty());

        stop_servers_of(&file, Some(Signal::SIGTERM), Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        assert!(processes_mentioning(&file).is_empty());
    }
}
