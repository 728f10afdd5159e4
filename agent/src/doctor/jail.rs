//! The restore jail's prerequisites: bubblewrap, user namespaces, the sandbox user, the right to
//! start jails as that user, and one trivial jailed command actually started.
//!
//! The trivial jail is prepared exactly as a restore's is ([`SandboxRoot::jail_context`]), in a
//! private directory inside `work_dir` (so the sandbox user's way to it is checked too), which
//! [`JailProbe`] removes when dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::User;

use super::Check;
use crate::config::AgentConfig;
use crate::jail::user::JAIL_USER;
use crate::jail::{BWRAP, BWRAP_PACKAGE, JailContext, JailError, JailUser, StrayLog};
use crate::sandbox::SandboxRoot;

const GROUP: &str = "jail";
/// How long the trivial jailed command may take.
const JAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Kernel settings that can forbid the user namespaces bubblewrap needs, with the value that
/// forbids them and how to allow them.
const USERNS_SETTINGS: [(&str, &str, &str); 3] = [
    (
        "/proc/sys/user/max_user_namespaces",
        "0",
        "sysctl -w user.max_user_namespaces=15000",
    ),
    (
        "/proc/sys/kernel/unprivileged_userns_clone",
        "0",
        "sysctl -w kernel.unprivileged_userns_clone=1",
    ),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "an AppArmor profile for /usr/bin/bwrap that allows userns, or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
    ),
];

/// What the jail checks found, and what the later checks may use.
pub struct JailProbe {
    pub checks: Vec<Check>,
    /// The sandbox user, when it exists.
    pub user: Option<JailUser>,
    /// A working jail context, when a jail could be started.
    pub context: Option<JailContext>,
    /// The private directory the trivial jail's files live in; removed on drop.
    scratch: Option<PathBuf>,
}

impl Drop for JailProbe {
    fn drop(&mut self) {
        if let Some(dir) = self.scratch.take()
            && let Err(err) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot remove the doctor's scratch directory");
        }
    }
}

/// Runs the jail checks.
pub async fn check(config: &AgentConfig) -> JailProbe {
    let mut probe = JailProbe {
        checks: Vec::new(),
        user: None,
        context: None,
        scratch: None,
    };
    let bwrap = bubblewrap().await;
    let has_bwrap = bwrap.status != super::Status::Fail;
    probe.checks.push(bwrap);
    probe.checks.extend(user_namespaces());
    let Some(user) = sandbox_user(&mut probe.checks) else {
        return probe;
    };
    probe.user = Some(user.clone());
    match crate::jail::privilege::check(&user) {
        Ok(()) => probe.checks.push(Check::ok(GROUP, "privileges", privileges_text())),
        Err(err) => {
            probe.checks.push(Check::fail(GROUP, "privileges", err.to_string()));
            return probe;
        }
    }
    if !has_bwrap {
        return probe;
    }
    let scratch = scratch_dir(&config.agent.work_dir);
    probe.scratch = Some(scratch.clone());
    match start_trivial_jail(&scratch, &user).await {
        Ok((context, detail)) => {
            probe.checks.push(Check::ok(GROUP, "jailed command", detail));
            probe.context = Some(context);
        }
        Err(detail) => probe.checks.push(Check::fail(GROUP, "jailed command", detail)),
    }
    probe
}

async fn bubblewrap() -> Check {
    match crate::capabilities::find_in_path(BWRAP) {
        None => Check::fail(GROUP, "bubblewrap", JailError::NoBubblewrap.to_string()),
        Some(program) => match super::tools::version_of(&program).await {
            Ok(version) => Check::ok(GROUP, "bubblewrap", format!("{version} ({})", program.display())),
            Err(err) => Check::fail(
                GROUP,
                "bubblewrap",
                format!(
                    "{} does not run: {err}; reinstall the Debian package {BWRAP_PACKAGE}",
                    program.display()
                ),
            ),
        },
    }
}

/// Reads the kernel settings that decide whether the sandbox user may create user namespaces.
fn user_namespaces() -> Vec<Check> {
    let mut checks = Vec::new();
    for (path, forbidding, fix) in USERNS_SETTINGS {
        let Ok(value) = std::fs::read_to_string(path) else {
            continue;
        };
        let value = value.trim();
        let name = Path::new(path).file_name().map_or(path, |n| n.to_str().unwrap_or(path));
        if value == forbidding {
            checks.push(Check::fail(
                GROUP,
                "user namespaces",
                format!("{name} = {value}: bubblewrap cannot create the jail's user namespace as {JAIL_USER}; allow it with {fix}"),
            ));
        } else {
            checks.push(Check::ok(GROUP, "user namespaces", format!("{name} = {value}")));
        }
    }
    checks
}

/// Finds the sandbox user without creating it (the agent creates it at start when it runs as
/// root; the packages create it at install).
fn sandbox_user(checks: &mut Vec<Check>) -> Option<JailUser> {
    if !matches!(User::from_name(JAIL_USER), Ok(Some(_))) {
        checks.push(Check::fail(
            GROUP,
            "sandbox user",
            JailError::NoUser(JAIL_USER.to_owned()).to_string(),
        ));
        return None;
    }
    match JailUser::resolve() {
        Ok(user) => {
            checks.push(Check::ok(
                GROUP,
                "sandbox user",
                format!("{} (uid {}, gid {})", user.name(), user.uid(), user.gid()),
            ));
            Some(user)
        }
        Err(err) => {
            checks.push(Check::fail(GROUP, "sandbox user", err.to_string()));
            None
        }
    }
}

fn privileges_text() -> String {
    if nix::unistd::geteuid().is_root() {
        "running as root: may start jails as the sandbox user".to_owned()
    } else {
        format!(
            "uid {} holds the capabilities to start jails as the sandbox user",
            nix::unistd::geteuid()
        )
    }
}

/// A private directory for the trivial jail: inside `work_dir` when it exists (so the sandbox
/// user's way through it is checked), else in the temporary directory.
fn scratch_dir(work_dir: &Path) -> PathBuf {
    let name = format!(".doctor-{}", std::process::id());
    if work_dir.is_dir() {
        work_dir.join(name)
    } else {
        std::env::temp_dir().join(format!("lifeboat{name}"))
    }
}

/// Prepares jails as a restore does and runs `id -u` in one; it must print the sandbox user's uid.
async fn start_trivial_jail(scratch: &Path, user: &JailUser) -> Result<(JailContext, String), String> {
    let root = SandboxRoot::open(&scratch.join(crate::sandbox::SANDBOXES_DIR)).map_err(|err| err.to_string())?;
    let context = root.jail_context().map_err(|err| err.to_string())?;
    let started = Instant::now();
    let output = context
        .jail(&StrayLog::default())
        .allow(&["id"])
        .command("/usr/bin/id")
        .arg("-u")
        .output(JAIL_TIMEOUT)
        .await
        .map_err(|err| err.to_string())?;
    let elapsed = started.elapsed();
    if !output.success() {
        return Err(format!(
            "`id -u` in a jail failed ({}): {}",
            output.status,
            output.stderr.trim()
        ));
    }
    let uid = output.stdout.trim();
    if uid != user.uid().to_string() {
        return Err(format!(
            "a jailed `id -u` printed {uid:?}, not the sandbox user's uid {}",
            user.uid()
        ));
    }
    Ok((
        context,
        format!(
            "`id -u` ran in a jail as {} (uid {uid}) in {} ms",
            user.name(),
            elapsed.as_millis()
        ),
    ))
}
