//! Builds the bundled static data and price snapshot from the shared SDE and ESI files.
//!
//! ```text
//! cargo run -p bs-sde --example build_bundle -- /work/shared/data/sde data/sde \
//!     [/work/shared/data/esi/markets-prices-2025-05-13.json.gz data/prices]
//! ```
//! If `data/sde` is missing (so the crate cannot embed it), add `--no-default-features`.
//! The SDE path may be any layout `import_official_sde` accepts (CSV layout with an
//! `eveshipfit-build*/` overlay, official JSONL zip or directory).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 && args.len() != 4 {
        eprintln!("usage: build_bundle SDE_PATH OUT_DIR [ESI_PRICES_JSON[.gz] PRICES_OUT_DIR]");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("build_bundle: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let bundle = bs_sde::import_official_sde(&PathBuf::from(&args[0]))?;
    let out = PathBuf::from(&args[1]);
    bundle.write_dir(&out)?;
    let manifest = bundle.manifest();
    println!("wrote {} from {}", out.display(), manifest.source);
    for (table, n) in &manifest.counts {
        println!("  {table:<17} {n:>7}");
    }
    println!("  rejected rows     {:>7}", manifest.rejected_rows);
    if args.len() == 4 {
        let raw = std::fs::read(&args[2])?;
        let body = if args[2].ends_with(".gz") {
            let mut s = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut s)?;
            s
        } else {
            raw
        };
        let prices = bs_sde::MarketPrices::from_esi_json(&body)?;
        let dir = PathBuf::from(&args[3]);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("esi-markets-prices-2025-05-13.tsv.gz");
        prices.write_tsv_gz(&path)?;
        println!("wrote {} ({} prices)", path.display(), prices.len());
    }
    Ok(())
}
