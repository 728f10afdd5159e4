//! Where assets and backups live (`location`, `docs/agent-config.md`): what the agent can find out
//! by itself — the device and mount of a local path, the PostgreSQL data directory when the agent
//! runs beside the server, the host of a URL, the bucket of an object-store URL — merged with what
//! the config declares, and the comparison that says two of them share a fate.
//!
//! Declared fields win (a path may be an NFS mount of another host; only the operator knows);
//! detected ones fill the gaps. Two places share a **volume** when their declared volumes are
//! equal or the kernel reports the same device for both, whatever was declared.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_shared::findings::Severity;
use lifeboat_shared::protocol::Location;
use serde::Serialize;

use crate::runner::psql;

/// What the agent found out about a place by looking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Detected {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `major:minor` of the filesystem holding the path, as the kernel reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    /// The local path the device was read from (e.g. the PostgreSQL data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Why something could not be detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A place: declared, detected, and the two merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placed {
    pub declared: Location,
    pub detected: Detected,
    /// Declared fields, with detected host and volume where none was declared.
    pub effective: Location,
}

impl Placed {
    pub fn new(declared: Location, detected: Detected) -> Self {
        let mut effective = declared.clone();
        if effective.host.is_none() {
            effective.host = detected.host.clone();
        }
        if effective.volume.is_none() {
            effective.volume = detected.device.as_ref().map(|device| format!("device {device}"));
        }
        Self {
            declared,
            detected,
            effective,
        }
    }

    /// A short description for messages: `volume vol-7f3a on host db-1`.
    pub fn describe(&self) -> String {
        let location = &self.effective;
        let mut parts = Vec::new();
        if let Some(provider) = &location.provider {
            parts.push(match &location.account {
                Some(account) => format!("{provider} account {account}"),
                None => provider.clone(),
            });
        }
        if let Some(region) = &location.region {
            parts.push(format!("region {region}"));
        }
        if let Some(host) = &location.host {
            parts.push(format!("host {host}"));
        }
        match (&self.detected.mount_point, &location.volume) {
            (Some(mount), Some(volume)) if self.declared.volume.is_none() => {
                parts.push(format!("{volume} (mounted at {})", mount.display()))
            }
            (_, Some(volume)) => parts.push(format!("volume {volume}")),
            _ => {}
        }
        if parts.is_empty() {
            "an unknown place".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The failure domain two places share, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shared {
    Region,
    Provider,
    Account,
    Host,
    Volume,
}

impl Shared {
    /// The severity of `backup.co_located` for this domain (`docs/findings.md`).
    pub fn severity(self) -> Severity {
        match self {
            Self::Volume | Self::Host => Severity::Critical,
            Self::Account | Self::Provider => Severity::High,
            Self::Region => Severity::Medium,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Region => "region",
            Self::Provider => "provider",
            Self::Account => "account",
            Self::Host => "host",
            Self::Volume => "volume",
        }
    }

    /// Whether losing the asset's place loses this place too, whatever credential is used.
    pub fn same_machine(self) -> bool {
        matches!(self, Self::Volume | Self::Host)
    }
}

/// The worst failure domain `a` and `b` share, if any.
pub fn shared(a: &Placed, b: &Placed) -> Option<Shared> {
    let same = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    };
    let (x, y) = (&a.effective, &b.effective);
    if same(&a.detected.device, &b.detected.device) || same(&a.declared.volume, &b.declared.volume) {
        return Some(Shared::Volume);
    }
    if same(&x.host, &y.host) {
        return Some(Shared::Host);
    }
    if same(&x.provider, &y.provider) {
        if same(&x.account, &y.account) {
            return Some(Shared::Account);
        }
        if same(&x.region, &y.region) {
            return Some(Shared::Region);
        }
        return Some(Shared::Provider);
    }
    None
}

/// Detects the device and mount of a local path (or of its nearest existing ancestor).
pub fn detect_path(path: &Path) -> Detected {
    let mut detected = Detected {
        host: Some(crate::capabilities::hostname()),
        path: Some(path.to_owned()),
        ..Detected::default()
    };
    let mut probe = path;
    let metadata = loop {
        match std::fs::metadata(probe) {
            Ok(metadata) => break Some(metadata),
            Err(_) => match probe.parent() {
                Some(parent) => probe = parent,
                None => break None,
            },
        }
    };
    let Some(metadata) = metadata else {
        detected.note = Some(format!("{} cannot be read", path.display()));
        return detected;
    };
    let dev = metadata.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    detected.device = Some(format!("{major}:{minor}"));
    if let Some((mount_point, fs_type)) = mount_of(probe, major, minor) {
        detected.mount_point = Some(mount_point);
        detected.fs_type = Some(fs_type);
    }
    detected
}

/// The mount point and filesystem type of `major:minor` that contains `path`, from
/// `/proc/self/mountinfo` (the longest mount point that is a prefix of the path).
fn mount_of(path: &Path, major: u64, minor: u64) -> Option<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let wanted = format!("{major}:{minor}");
    let mut best: Option<(PathBuf, String)> = None;
    for line in text.lines() {
        // id parent major:minor root mount-point options... - fstype source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(separator) = fields.iter().position(|field| *field == "-") else {
            continue;
        };
        if fields.len() < 5 || fields.get(2) != Some(&wanted.as_str()) {
            continue;
        }
        let mount_point = PathBuf::from(unescape_mountinfo(fields[4]));
        if !path.starts_with(&mount_point) {
            continue;
        }
        let fs_type = fields.get(separator + 1).copied().unwrap_or("").to_owned();
        if best
            .as_ref()
            .is_none_or(|(current, _)| mount_point.as_os_str().len() > current.as_os_str().len())
        {
            best = Some((mount_point, fs_type));
        }
    }
    best
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(code) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(code as char);
            i += 4;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// The host part of a PostgreSQL URL: `None` for a unix socket (which is this host).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        // libpq: `host=` in the query string, else the local socket.
        let query = url.split_once('?').map(|(_, query)| query).unwrap_or("");
        return query
            .split('&')
            .find_map(|pair| pair.strip_prefix("host="))
            .filter(|host| !host.starts_with('/') && !host.starts_with("%2F"))
            .map(str::to_owned);
    }
    Some(host.to_owned())
}

/// Whether `host` is this machine.
pub fn is_local(host: Option<&str>) -> bool {
    match host {
        None => true,
        Some(host) => matches!(host, "localhost" | "127.0.0.1" | "::1") || host == crate::capabilities::hostname(),
    }
}

/// Detects where a PostgreSQL server keeps its data. Beside the agent, the data directory is
/// asked of the server (read-only; needs `pg_read_all_settings` or superuser) and its device
/// read; elsewhere only the host is known.
pub async fn detect_postgres(url: &str) -> Detected {
    let host = url_host(url);
    if !is_local(host.as_deref()) {
        return Detected {
            host,
            note: Some("the server is on another host: declare its volume to compare it".into()),
            ..Detected::default()
        };
    }
    let connection = psql::Connection::production(url);
    match connection.scalar("show data_directory", Duration::from_secs(15)).await {
        Ok(Some(directory)) => detect_path(Path::new(&directory)),
        Ok(None) => Detected {
            host: Some(crate::capabilities::hostname()),
            note: Some("the server did not name its data directory".into()),
            ..Detected::default()
        },
        Err(err) => Detected {
            host: Some(crate::capabilities::hostname()),
            note: Some(format!(
                "cannot ask the server for its data directory (grant pg_read_all_settings to Lifeboat's role): {}",
                crate::credentials::redact::redact_passwords(&err.to_string())
            )),
            ..Detected::default()
        },
    }
}

/// Detects the place of a backup source path: an object-store URL names its provider and
/// bucket; anything else is a local path.
pub fn detect_source(path: &str) -> Detected {
    if let Some(rest) = path.strip_prefix("s3:") {
        // restic's s3:host/bucket/prefix or s3://bucket/prefix.
        let rest = rest.trim_start_matches('/');
        let mut parts = rest.split('/');
        let first = parts.next().unwrap_or("");
        let (endpoint, bucket) = if first.contains('.') {
            (Some(first.to_owned()), parts.next().map(str::to_owned))
        } else {
            (None, Some(first.to_owned()))
        };
        return Detected {
            host: endpoint,
            device: bucket.map(|bucket| format!("bucket {bucket}")),
            note: Some("object store: declare provider and account to compare them".into()),
            ..Detected::default()
        };
    }
    for scheme in ["sftp:", "rest:", "https://", "http://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            let rest = rest.trim_start_matches('/');
            let authority = rest.split('/').next().unwrap_or("");
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            let host = host.split(':').next().unwrap_or("").to_owned();
            return Detected {
                host: Some(host),
                ..Detected::default()
            };
        }
    }
    detect_path(Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(declared: Location, device: Option<&str>, host: Option<&str>) -> Placed {
        Placed::new(
            declared,
            Detected {
                device: device.map(str::to_owned),
                host: host.map(str::to_owned),
                ..Detected::default()
            },
        )
    }

    #[test]
    fn the_worst_shared_domain_wins() {
        let railway = Location {
            provider: Some("railway".into()),
            account: Some("pocketos".into()),
            ..Location::default()
        };
        let asset = placed(railway.clone(), Some("254:0"), Some("db-1"));
        assert_eq!(
            shared(&asset, &placed(railway.clone(), Some("254:0"), Some("db-1"))),
            Some(Shared::Volume)
        );
        assert_eq!(
            shared(&asset, &placed(railway.clone(), Some("0:39"), Some("db-1"))),
            Some(Shared::Host)
        );
        assert_eq!(
            shared(&asset, &placed(railway, Some("0:39"), Some("db-2"))),
            Some(Shared::Account)
        );
        let offsite = Location {
            provider: Some("hetzner".into()),
            host: Some("nas".into()),
            ..Location::default()
        };
        assert_eq!(shared(&asset, &placed(offsite, Some("0:39"), Some("db-1"))), None);
        assert_eq!(Shared::Volume.severity(), Severity::Critical);
        assert_eq!(Shared::Account.severity(), Severity::High);
    }

    #[test]
    fn a_declared_host_beats_the_detected_one() {
        let nfs = placed(
            Location {
                host: Some("nas".into()),
                ..Location::default()
            },
            Some("0:50"),
            Some("db-1"),
        );
        assert_eq!(nfs.effective.host.as_deref(), Some("nas"));
        assert_eq!(nfs.effective.volume.as_deref(), Some("device 0:50"));
    }

    #[test]
    fn paths_have_a_device_and_a_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let detected = detect_path(&dir.path().join("not/yet/there"));
        assert!(detected.device.is_some(), "{detected:?}");
        assert!(detected.mount_point.is_some(), "{detected:?}");
        assert_eq!(detect_path(dir.path()).device, detected.device);
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("postgres://u:p@db.internal:5432/x").as_deref(),
            Some("db.internal")
        );
        assert_eq!(url_host("postgresql:///rentals?host=/var/run/postgresql"), None);
        assert_eq!(url_host("postgres://u@[::1]:5432/x").as_deref(), Some("::1"));
        assert_eq!(
            url_host("postgresql://u@/db?host=10.0.0.5").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            detect_source("s3:s3.amazonaws.com/rentals-backups/restic")
                .device
                .as_deref(),
            Some("bucket rentals-backups")
        );
        assert_eq!(unescape_mountinfo("/mnt/with\\040space"), "/mnt/with space");
    }
}
