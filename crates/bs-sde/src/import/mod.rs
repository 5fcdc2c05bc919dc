//! Importers: CCP's official SDE (JSONL zip or directory) and the CSV layout of `shared/data/sde`.
//!
//! [`import_official_sde`] picks the importer from what it finds at the path; the result is a
//! [`Bundle`] to write with [`Bundle::write_dir`] and load with `StaticData::load_dir`.

mod csv;
mod jsonl;
mod zip;

use std::path::Path;

pub use self::csv::build_from_csv;
use crate::bundle::Bundle;
use crate::error::{Error, Result};

/// Reads static data from `path`, which may be:
///
/// * CCP's official JSONL download, as the `.zip` or extracted into a directory
///   (recognised by `types.jsonl` and `mapSolarSystems.jsonl`);
/// * the CSV layout (`invTypes.csv[.gz]` ...), with a newer type list merged over it when the
///   directory has an `eveshipfit-build*/` subdirectory holding `types.csv[.gz]`;
/// * an existing bundle directory (`manifest.json`), read as is.
///
/// The official YAML variant is not supported: download the JSONL variant.
pub fn import_official_sde(path: &Path) -> Result<Bundle> {
    let label = path
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("sde")
        .to_string();
    if path.is_file() {
        let zip = zip::ZipArchive::open(path)?;
        return jsonl::import(
            jsonl::Source::Zip(Box::new(zip)),
            format!("official-jsonl-zip:{label}"),
        );
    }
    if !path.is_dir() {
        return Err(Error::MissingFile(path.display().to_string()));
    }
    if jsonl::is_jsonl_dir(path) {
        return jsonl::import(
            jsonl::Source::Dir(path.to_path_buf()),
            format!("official-jsonl:{label}"),
        );
    }
    if path.join("invTypes.csv.gz").is_file() || path.join("invTypes.csv").is_file() {
        return build_from_csv(path, find_overlay(path).as_deref());
    }
    if path.join(crate::bundle::MANIFEST).is_file() {
        return Bundle::read_dir(path);
    }
    Err(Error::UnknownLayout(path.to_path_buf()))
}

/// The newest `eveshipfit-build*` subdirectory with a type list, if any.
fn find_overlay(dir: &Path) -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("eveshipfit-build"))
                && (p.join("types.csv.gz").is_file() || p.join("types.csv").is_file())
        })
        .collect();
    found.sort();
    found.pop()
}
