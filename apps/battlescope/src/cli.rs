//! Command-line interface.

use std::path::PathBuf;

use anyhow::Context as _;
use bs_config::{Config, ServiceName};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "battlescope",
    version,
    about = "A self-hostable battle monitor for EVE Online"
)]
pub struct Cli {
    /// A TOML configuration file (also BATTLESCOPE_CONFIG). See `battlescope config`.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// All services in one process on embedded storage, with bundled real sample data, offline.
    Demo,
    /// All services in one process, following the live feed.
    Run,
    /// Only the named services, each on its own port (split deployment).
    Serve {
        /// Services to run: ingestion enrichment battle search notification bff authentication web.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<ServiceName>,
    },
    /// Run database migrations and exit (for init containers).
    Migrate {
        /// Only this service's database (default: every service that has one).
        service: Option<ServiceName>,
    },
    /// Print the annotated default configuration (or the effective one, secrets masked).
    Config {
        /// Print the effective configuration after file and environment instead.
        #[arg(long)]
        effective: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = || Config::from_env(cli.config.as_deref()).context("loading configuration");
    match cli.command {
        Command::Config { effective: false } => {
            print!("{}", bs_config::ANNOTATED_DEFAULT);
            Ok(())
        }
        Command::Config { effective: true } => {
            print!("{}", config()?.redacted_toml());
            Ok(())
        }
        Command::Demo => crate::topology::all_in_one(config()?, crate::topology::Mode::Demo).await,
        Command::Run => crate::topology::all_in_one(config()?, crate::topology::Mode::Live).await,
        Command::Serve { services } => crate::topology::split(config()?, services).await,
        Command::Migrate { service } => crate::topology::migrate(config()?, service).await,
    }
}
