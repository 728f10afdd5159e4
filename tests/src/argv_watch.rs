//! Watching the command lines of everything the agent starts, for secrets: any local user can
//! read `/proc/<pid>/cmdline` (`ps`), so no password may ever be there.
//!
//! [`ArgvWatch`] samples `/proc` every few milliseconds on a thread of its own and keeps the
//! command lines of processes descending from a `lifeboat-agent` process that contain one of the
//! given secrets, a URL with a password, or a `password=` option. The test's own tools (which do
//! pass URLs on their command lines) are not descendants of the agent and are not looked at.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often `/proc` is sampled.
const INTERVAL: Duration = Duration::from_millis(10);

/// A running watch; [`finish`](Self::finish) returns what it saw.
pub struct ArgvWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<BTreeSet<String>>>,
}

impl ArgvWatch {
    /// Starts watching for `secrets` (and for any password-shaped argument).
    pub fn start(secrets: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let url_password = regex::Regex::new(r"://[^/\s:@]+:[^/\s@]+@").expect("regex");
        let option_password = regex::Regex::new(r"(?i)password\s*=").expect("regex");
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !stopping.load(Ordering::Relaxed) {
                for line in agent_descendant_command_lines() {
                    let leaks = secrets
                        .iter()
                        .any(|secret| !secret.is_empty() && line.contains(secret.as_str()))
                        || url_password.is_match(&line)
                        || option_password.is_match(&line);
                    if leaks {
                        seen.insert(line);
                    }
                }
                std::thread::sleep(INTERVAL);
            }
            seen
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching; returns every offending command line seen.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .map(|seen| seen.into_iter().collect())
            .unwrap_or_default()
    }
}

impl Drop for ArgvWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Command lines of processes below a `lifeboat-agent` process (not the agent itself) that this
/// test process started.
fn agent_descendant_command_lines() -> Vec<String> {
    let mut parents = HashMap::new();
    let mut names = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for pid in entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((before, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = before
            .split_once('(')
            .map(|(_, name)| name.to_owned())
            .unwrap_or_default();
        let parent = after
            .split_whitespace()
            .nth(1)
            .and_then(|ppid| ppid.parse::<u32>().ok());
        names.insert(pid, name);
        if let Some(parent) = parent {
            parents.insert(pid, parent);
        }
    }
    let me = std::process::id();
    let below_agent = |pid: u32| {
        let mut current = parents.get(&pid).copied();
        let mut agent_seen = false;
        for _ in 0..64 {
            let Some(ancestor) = current else { return false };
            if ancestor == me {
                return agent_seen;
            }
            agent_seen |= names.get(&ancestor).is_some_and(|name| name == "lifeboat-agent");
            current = parents.get(&ancestor).copied();
        }
        false
    };
    names
        .keys()
        .copied()
        .filter(|pid| below_agent(*pid))
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .collect()
}
