//! Names for the offline demo, from a bundled snapshot of real ESI names
//! (`data/names/esi-names.tsv.gz`: `id<TAB>name` for alliances, corporations
//! and characters). Live modes never use it: they ask ESI.

use std::io::Read;

const SNAPSHOT: &[u8] = include_bytes!("../../../data/names/esi-names.tsv.gz");

/// Every `(id, name)` of the snapshot; malformed lines are skipped.
pub fn snapshot() -> Vec<(i64, String)> {
    let mut text = String::new();
    if flate2::read::GzDecoder::new(SNAPSHOT)
        .read_to_string(&mut text)
        .is_err()
    {
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| {
            let (id, name) = line.split_once('\t')?;
            Some((id.parse().ok()?, name.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot_has_real_names() {
        let names: std::collections::HashMap<i64, String> = super::snapshot().into_iter().collect();
        assert!(names.len() > 50_000, "{}", names.len());
        // Pandemic Horde, the largest alliance of the bundled Jorund fight.
        assert_eq!(
            names.get(&99_005_338).map(String::as_str),
            Some("Pandemic Horde")
        );
    }
}
