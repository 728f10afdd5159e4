//! Whether this agent may start jails, and keeping its privileges out of every other process.
//!
//! Starting a process as the sandbox user, giving it its sandbox directory, stopping it and
//! removing what it left need root, or these capabilities: `CAP_SETUID` and `CAP_SETGID` (start
//! the jail as the sandbox user), `CAP_CHOWN` (give it its sandbox), `CAP_KILL` (stop it) and
//! `CAP_DAC_OVERRIDE` (remove what it wrote). The shipped systemd unit grants them to the
//! unprivileged `lifeboat-agent` user as ambient capabilities; [`drop_inherited`] then removes
//! them from the ambient and inheritable sets, so that no program the agent starts (a jail, `psql`
//! against production) inherits any: the agent alone holds them.

use super::{JailError, JailUser};

/// The capabilities an agent that is not root needs, as (bit, name).
const NEEDED: [(u32, &str); 5] = [
    (7, "CAP_SETUID"),
    (6, "CAP_SETGID"),
    (0, "CAP_CHOWN"),
    (5, "CAP_KILL"),
    (1, "CAP_DAC_OVERRIDE"),
];

/// Checks that this process may start, feed and stop jails as `user`.
pub fn check(user: &JailUser) -> Result<(), JailError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let effective = effective_capabilities().unwrap_or(0);
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(JailError::NotPermitted {
        user: user.name().to_owned(),
        reason: format!(
            "it runs as uid {} without {}; run it as root, or grant its user AmbientCapabilities={} (the shipped systemd unit does)",
            nix::unistd::getuid(),
            missing.join(", "),
            NEEDED.iter().map(|(_, name)| *name).collect::<Vec<_>>().join(" ")
        ),
    })
}

/// Removes every capability from the ambient and inheritable sets of this process, so programs
/// it starts get none. The effective and permitted sets (what the agent itself may do) stay.
pub fn drop_inherited() {
    if let Err(err) = caps::clear(None, caps::CapSet::Ambient) {
        tracing::debug!(error = %err, "cannot clear the ambient capabilities");
    }
    if let Err(err) = caps::clear(None, caps::CapSet::Inheritable) {
        tracing::debug!(error = %err, "cannot clear the inheritable capabilities");
    }
}

/// The effective capability set of this process (`CapEff` in `/proc/self/status`).
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_capabilities(&status, "CapEff:")
}

fn parse_capabilities(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    u64::from_str_radix(line[field.len()..].trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_masks_are_read_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t00000000000000e3\n";
        let effective = parse_capabilities(status, "CapEff:").unwrap();
        assert_eq!(effective, 0xe3);
        assert!(NEEDED.iter().all(|(bit, _)| effective & (1 << bit) != 0));
        assert_eq!(parse_capabilities("Name:\tx\n", "CapEff:"), None);
    }

    #[test]
    fn dropping_inherited_capabilities_keeps_the_effective_ones() {
        let before = effective_capabilities();
        drop_inherited();
        assert_eq!(effective_capabilities(), before);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(parse_capabilities(&status, "CapAmb:"), Some(0));
    }
}
