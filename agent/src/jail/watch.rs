//! Watching a jail's process tree for programs the step did not start.
//!
//! Every process of a jail descends from its `bwrap` process: a process inside a PID namespace
//! cannot be reparented outside it (orphans go to the namespace's init, bubblewrap's own), so the
//! tree seen from outside, through `/proc`, holds the whole jail. A [`Watcher`] samples that tree
//! every [`SAMPLE_INTERVAL`] on a thread of its own and records each process whose name is not one
//! the step runs (`pg_restore` and its workers, `postgres` and its backends, …) as a [`Stray`].
//! A program that lives for less than one interval can slip between samples; it is contained all
//! the same, and the shells it would need are tripwires that live longer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::StrayLog;
use crate::procfs;

/// How often a jail's process tree is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// The name of bubblewrap's own processes (its monitor and the namespace's init).
const BWRAP_NAME: &str = "bwrap";

/// A process found in a jail that the step did not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stray {
    /// Its pid as seen from outside the jail.
    pub pid: u32,
    /// Its process name (`sh`, `sleep`, …).
    pub name: String,
    /// Its command line, arguments separated by spaces.
    pub command_line: String,
}

/// Samples one jail's process tree until stopped or dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching the processes under `root` (the jail's `bwrap` pid); processes named in
    /// `allowed` are the step's own. With nothing allowed, nothing is watched.
    pub fn start(root: u32, allowed: Vec<&'static str>, log: StrayLog) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if allowed.is_empty() {
            return Self { stop, thread: None };
        }
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("jail-watch".to_owned())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    log.extend(sample(root, &allowed));
                    std::thread::sleep(SAMPLE_INTERVAL);
                }
            })
            .map_err(|err| tracing::warn!(error = %err, "cannot start the jail watcher"))
            .ok();
        Self { stop, thread }
    }

    /// Takes one last sample, then stops watching.
    pub fn finish(mut self, root: u32, allowed: &[&'static str], log: &StrayLog) {
        if self.thread.is_some() {
            log.extend(sample(root, allowed));
        }
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _joined = thread.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The processes under `root` whose names are not in `allowed` (bubblewrap's own excepted).
pub fn sample(root: u32, allowed: &[&str]) -> Vec<Stray> {
    let processes = procfs::all_processes();
    procfs::descendants(root, &processes)
        .into_iter()
        .filter(|(_, stat)| stat.name != BWRAP_NAME && !allowed.contains(&stat.name.as_str()))
        .map(|(pid, stat)| Stray {
            pid,
            name: stat.name.clone(),
            command_line: procfs::command_line(pid),
        })
        .collect()
}

/// The pid (outside the jail) of the step's own program: the first descendant of `root` that is
/// not bubblewrap.
pub fn main_process(root: u32) -> Option<u32> {
    let processes = procfs::all_processes();
    procfs::descendants(root, &processes)
        .into_iter()
        .find(|(_, stat)| stat.name != BWRAP_NAME)
        .map(|(pid, _)| pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_not_allowed_are_strays() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .unwrap();
        let me = std::process::id();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let strays = loop {
            let strays = sample(me, &["sh", "lifeboat_agent"]);
            if !strays.is_empty() || std::time::Instant::now() > deadline {
                break strays;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(strays.iter().any(|stray| stray.name == "sleep"), "{strays:?}");
        assert!(strays.iter().all(|stray| stray.name != "sh"), "{strays:?}");
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
