//! `battlescope`: every BattleScope service in one binary.
//!
//! `demo` and `run` start all services in one process behind one listener;
//! `serve <service>…` starts the chosen ones, each on its own port. The same
//! service code runs either way — the topology lives here, in [`topology`].

mod bench;
mod cli;
mod malloc;
mod sample;
mod services;
mod topology;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // First, before any thread or allocation worth keeping: may replace this process.
    malloc::tune();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
