//! `lifeboat-agent`: see [`lifeboat_agent::cli`].
//!
//! Started under a shell's name, the executable is the restore jail's tripwire instead (see
//! [`lifeboat_agent::jail::tripwire`]).

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    if lifeboat_agent::jail::tripwire::invoked_as_shell() {
        return lifeboat_agent::jail::tripwire::run();
    }
    // Capabilities granted to the agent (see the systemd unit) stay with the agent: no program it
    // starts inherits them.
    lifeboat_agent::jail::privilege::drop_inherited();
    let cli = lifeboat_agent::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(lifeboat_agent::cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
