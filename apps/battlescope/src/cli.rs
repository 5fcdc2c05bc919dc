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
    /// Static data (SDE) maintenance.
    Sde {
        #[command(subcommand)]
        command: SdeCommand,
    },
    /// Print the annotated default configuration (or the effective one, secrets masked).
    Config {
        /// Print the effective configuration after file and environment instead.
        #[arg(long)]
        effective: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SdeCommand {
    /// Refresh the static data from CCP's official SDE download (the JSONL zip or its extracted folder).
    /// The result is written to `<data_dir>/sde`, which the enrichment service prefers over the bundled copy.
    Import {
        #[arg(value_name = "PATH")]
        path: PathBuf,
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
        Command::Sde { command: SdeCommand::Import { path } } => sde_import(&config()?, &path),
        Command::Migrate { service } => crate::topology::migrate(config()?, service).await,
    }
}

fn sde_import(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    let bundle = bs_sde::import_official_sde(path).with_context(|| format!("reading the SDE at {}", path.display()))?;
    let out = config.data_dir.join("sde");
    bundle.write_dir(&out).with_context(|| format!("writing {}", out.display()))?;
    // Load it back: what was written must be usable.
    let data = bs_sde::StaticData::load_dir(&out).context("loading the imported static data")?;
    println!("static data {} written to {}", data.version(), out.display());
    Ok(())
}
