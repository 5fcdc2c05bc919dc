//! The real sample data `demo` imports: four fights of 2021 from EVE Ref's
//! archives (Jorund, O-IVNH, LXQ2-T, UW9B-F), compiled into the binary so the
//! demo needs nothing but the executable.

use std::path::{Path, PathBuf};

const FIGHTS: &[(&str, &[u8])] = &[
    (
        "fight-jorund-2021-11-28.jsonl.gz",
        include_bytes!("../../../data/killmails/fight-jorund-2021-11-28.jsonl.gz"),
    ),
    (
        "fight-o-ivnh-2021-11-28.jsonl.gz",
        include_bytes!("../../../data/killmails/fight-o-ivnh-2021-11-28.jsonl.gz"),
    ),
    (
        "fight-lxq2-t-2021-11-27.jsonl.gz",
        include_bytes!("../../../data/killmails/fight-lxq2-t-2021-11-27.jsonl.gz"),
    ),
    (
        "fight-uw9b-f-2021-11-30.jsonl.gz",
        include_bytes!("../../../data/killmails/fight-uw9b-f-2021-11-30.jsonl.gz"),
    ),
];

/// Writes the sample files under `<data_dir>/sample` (once) and returns their paths.
pub fn materialise(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = data_dir.join("sample");
    std::fs::create_dir_all(&dir)?;
    FIGHTS
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(bytes.len() as u64) {
                std::fs::write(&path, bytes)?;
            }
            Ok(path)
        })
        .collect()
}
