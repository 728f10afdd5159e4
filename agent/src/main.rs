//! `lifeboat-agent`: see [`lifeboat_agent::cli`].

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = lifeboat_agent::cli::Cli::parse();
    match lifeboat_agent::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
