//! What this machine can restore: installed PostgreSQL majors, restic, SQLite. Announced in the
//! Hello so the coordinator only assigns runs an agent can carry out.

use std::path::{Path, PathBuf};

use lifeboat_shared::protocol::Capabilities;

/// Where Debian and Ubuntu install PostgreSQL server binaries, one directory per major.
const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";

/// Detects the capabilities of this machine.
pub fn detect() -> Capabilities {
    let mut features = vec!["files".to_owned()];
    if find_in_path("pg_amcheck").is_some() || postgres_majors().iter().any(|major| *major >= 14) {
        features.push("pg_amcheck".to_owned());
    }
    Capabilities {
        postgres_majors: postgres_majors(),
        restic: find_in_path("restic").is_some(),
        sqlite: true,
        features,
    }
}

/// Installed PostgreSQL majors that have the tools a sandbox needs, ascending.
pub fn postgres_majors() -> Vec<u32> {
    let mut majors: Vec<u32> = std::fs::read_dir(POSTGRES_LIB_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_restore").exists()).then_some(major)
        })
        .collect();
    majors.sort_unstable();
    majors
}

/// Finds an executable in `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The machine's hostname.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}
