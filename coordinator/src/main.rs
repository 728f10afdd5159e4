//! `lifeboat-coordinator`: see [`lifeboat_coordinator::cli`].

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = lifeboat_coordinator::cli::Cli::parse();
    match lifeboat_coordinator::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
