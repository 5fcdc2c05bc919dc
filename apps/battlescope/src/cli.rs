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
    /// Import killmails from local files: JSONL (plain, .gz, .zst) of ESI killmails with or without
    /// a zkb block, R2Z2 entries, RedisQ packages, EVE Ref tarballs, or folders of them.
    /// Importing the same file twice adds nothing.
    Import {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Backfill a range of days from zKillboard history or EVE Ref archives (resumable per day).
    Backfill {
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day, YYYY-MM-DD (UTC), inclusive.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// `everef` (daily archives) or `zkb_history` (id/hash lists + ESI bodies).
        #[arg(long, default_value = "everef")]
        source: String,
        #[arg(long)]
        quiet: bool,
    },
    /// Authentication maintenance.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Battle maintenance.
    Battles {
        #[command(subcommand)]
        command: BattlesCommand,
    },
    /// Search index maintenance.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
    /// Static data (SDE) maintenance.
    Sde {
        #[command(subcommand)]
        command: SdeCommand,
    },
    /// Measure the whole pipeline against its own floor on a dataset (see docs/BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Print the annotated default configuration (or the effective one, secrets masked).
    Config {
        /// Print the effective configuration after file and environment instead.
        #[arg(long)]
        effective: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Re-encrypt every stored ESI token under the first key of `auth.token_keys`
    /// (put the new key first, keep the old ones after it, run this, then drop the old ones).
    RotateKey {
        /// Print a fresh key entry to put first in `auth.token_keys`, and change nothing.
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BattlesCommand {
    /// Rebuild the battles of a time range from the stored killmails with the current settings:
    /// unchanged battles keep their ids, merged ones redirect, manual side overrides stay.
    Recluster {
        /// Start: YYYY-MM-DD (UTC) or RFC 3339.
        #[arg(long)]
        from: String,
        /// End: YYYY-MM-DD (UTC, the whole day) or RFC 3339.
        #[arg(long)]
        to: String,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Rebuild every collection from the owning services' data.
    Reindex,
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
        Command::Import { paths, quiet } => {
            let summary = bs_ingestion::import_paths(&config()?, &paths, !quiet).await?;
            println!("{summary}");
            Ok(())
        }
        Command::Backfill {
            from,
            to,
            source,
            quiet,
        } => {
            let job = bs_ingestion::backfill(&config()?, from, to, &source, !quiet).await?;
            println!("{job:?}");
            Ok(())
        }
        Command::Auth {
            command: AuthCommand::RotateKey { generate: true },
        } => {
            // Key ids are dated so an operator can tell old from new at a glance.
            let kid = bs_sso::KeyId::parse(&chrono::Utc::now().format("k%Y%m%d%H%M%S").to_string())
                .map_err(|e| anyhow::anyhow!("key id: {e}"))?;
            let spec = bs_sso::TokenCipher::generate_key_spec(&kid)
                .map_err(|e| anyhow::anyhow!("generating a key: {e}"))?;
            println!("{}", spec.expose());
            Ok(())
        }
        Command::Auth {
            command: AuthCommand::RotateKey { generate: false },
        } => {
            let (moved, undecryptable) = bs_authentication::reencrypt_tokens(&config()?).await?;
            println!(
                "re-encrypted {moved} tokens; {undecryptable} could not be decrypted with the configured keys"
            );
            Ok(())
        }
        Command::Battles {
            command: BattlesCommand::Recluster { from, to, dry_run },
        } => {
            let parse = |s: &str, end| {
                bs_battle::lifecycle::parse_bound(s, end).map_err(anyhow::Error::msg)
            };
            let (from, to) = (parse(&from, false)?, parse(&to, true)?);
            let report = bs_battle::recluster_range(&config()?, from, to, dry_run).await?;
            print!("{}", recluster_summary(&report));
            Ok(())
        }
        Command::Search {
            command: SearchCommand::Reindex,
        } => {
            let summary = bs_search::reindex(&config()?).await?;
            println!("{summary:?}");
            Ok(())
        }
        Command::Sde {
            command: SdeCommand::Import { path },
        } => sde_import(&config()?, &path),
        Command::Bench(args) => crate::bench::run(config()?, args).await,
        Command::Migrate { service } => crate::topology::migrate(config()?, service).await,
    }
}

/// The human summary of a re-clustering (what changed, or would with `--dry-run`).
fn recluster_summary(r: &bs_battle::recluster::Report) -> String {
    use std::fmt::Write as _;
    let p = &r.plan;
    let mut out = String::new();
    let verb = if r.dry_run { "would change" } else { "changed" };
    let _ = writeln!(
        out,
        "{} .. {}: {} killmails, {} battles kept; {verb}: {} changed, {} created, {} merged, {} deleted",
        r.from,
        r.to,
        p.kills,
        p.kept.len(),
        p.changed.len(),
        p.created.len(),
        p.merged.len(),
        p.deleted.len()
    );
    for c in &p.changed {
        let _ = writeln!(
            out,
            "  changed {}: {} -> {} kills (+{} -{})",
            c.battle_id, c.kills_before, c.kills_after, c.added, c.removed
        );
    }
    for c in &p.created {
        let _ = writeln!(out, "  created {}: {} kills", c.battle_id, c.kills_after);
    }
    for (absorbed, survivor) in &p.merged {
        let _ = writeln!(out, "  merged {absorbed} into {survivor} (redirects)");
    }
    for b in &p.deleted {
        let _ = writeln!(out, "  deleted {b}");
    }
    out
}

fn sde_import(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    let bundle = bs_sde::import_official_sde(path)
        .with_context(|| format!("reading the SDE at {}", path.display()))?;
    let out = config.data_dir.join("sde");
    bundle
        .write_dir(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    // Load it back: what was written must be usable.
    let data = bs_sde::StaticData::load_dir(&out).context("loading the imported static data")?;
    println!(
        "static data {} written to {}",
        data.version(),
        out.display()
    );
    Ok(())
}
