//! File import: every accepted format, summaries, and idempotence.

use std::io::Write;

use bs_ingestion::store::IngestionStore;

use crate::helpers::{config, killmails, small_fixture};

#[tokio::test]
async fn importing_twice_adds_nothing() {
    let dir = bs_testkit::temp_dir();
    let cfg = config(dir.path(), "http://127.0.0.1:9", "http://127.0.0.1:9");
    let path = small_fixture();
    let first = bs_ingestion::import_paths(&cfg, std::slice::from_ref(&path), false)
        .await
        .unwrap();
    assert_eq!(
        (first.read, first.new, first.duplicate, first.rejected),
        (200, 200, 0, 0),
        "{first}"
    );
    let second = bs_ingestion::import_paths(&cfg, &[path], false)
        .await
        .unwrap();
    assert_eq!(
        (second.read, second.new, second.duplicate),
        (200, 0, 200),
        "{second}"
    );
    let ctx = bs_ingestion::open(&cfg, std::sync::Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap();
    let stats = ctx.store.stats().await.unwrap();
    assert_eq!(stats.killmails_total, 200);
    assert_eq!(
        stats.outbox_pending, 200,
        "one killmail.ingested per new killmail"
    );
}

#[tokio::test]
async fn every_format_and_a_folder() {
    let dir = bs_testkit::temp_dir();
    let data = bs_testkit::temp_dir();
    let kms = killmails();
    let d = data.path();
    // Plain JSONL with a malformed line and a blank line.
    let mut plain = std::fs::File::create(d.join("a.jsonl")).unwrap();
    for k in &kms[0..10] {
        plain.write_all(&k.record).unwrap();
        plain.write_all(b"\n").unwrap();
    }
    plain.write_all(b"{\"killmail_id\": 12,\n\n").unwrap();
    // zstd JSONL of ESI bodies with a zkb block (zKillboard API style, no killmail_hash).
    let mut zst =
        zstd::stream::write::Encoder::new(std::fs::File::create(d.join("b.jsonl.zst")).unwrap(), 3)
            .unwrap();
    for k in &kms[10..20] {
        let mut v = k.esi.clone();
        v["zkb"] = serde_json::json!({"hash": k.hash, "totalValue": 5.0e6, "points": 3});
        zst.write_all(v.to_string().as_bytes()).unwrap();
        zst.write_all(b"\n").unwrap();
    }
    zst.finish().unwrap();
    // One R2Z2 entry file and one RedisQ package with a body (pretty-printed, as saved by hand).
    let entry = serde_json::json!({"killmail_id": kms[20].killmail_id, "hash": kms[20].hash, "esi": kms[20].esi,
        "zkb": {"hash": kms[20].hash}, "uploaded_at": 1, "sequence_id": 5});
    std::fs::write(
        d.join("entry.json"),
        serde_json::to_string_pretty(&entry).unwrap(),
    )
    .unwrap();
    let package = serde_json::json!({"package": {"killID": kms[21].killmail_id, "killmail": kms[21].esi, "zkb": {"hash": kms[21].hash}}});
    std::fs::write(
        d.join("package.json"),
        serde_json::to_string_pretty(&package).unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("empty.json"), r#"{"package":null}"#).unwrap();
    // An EVE Ref tarball in a sub-folder, overlapping the plain file by five.
    std::fs::create_dir(d.join("everef")).unwrap();
    let members: Vec<(String, Vec<u8>)> = kms[5..30]
        .iter()
        .map(|k| {
            (
                format!("killmails/{}.json", k.killmail_id),
                k.record.clone(),
            )
        })
        .collect();
    std::fs::write(
        d.join("everef/killmails-2021-11-30.tar.bz2"),
        bs_zkb::everef::build_archive(&members).unwrap(),
    )
    .unwrap();
    // A gzip JSON array (zKillboard API response shape).
    let array: Vec<serde_json::Value> = kms[30..33]
        .iter()
        .map(|k| {
            let mut v = k.esi.clone();
            v["zkb"] = serde_json::json!({"hash": k.hash});
            v
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(d.join("api.json.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(serde_json::to_string(&array).unwrap().as_bytes())
        .unwrap();
    gz.finish().unwrap();

    let cfg = config(dir.path(), "http://127.0.0.1:9", "http://127.0.0.1:9");
    let s = bs_ingestion::import_paths(&cfg, &[d.to_path_buf()], false)
        .await
        .unwrap();
    assert_eq!(s.files, 7, "{s:?}");
    assert_eq!(s.new, 33, "{s}");
    assert_eq!(
        s.duplicate,
        5 + 10 + 2,
        "the tarball overlaps the plain file, the zstd file and the two single documents: {s}"
    );
    assert_eq!(s.rejected_by_reason.get("malformed_json"), Some(&1), "{s}");
    assert_eq!(s.empty, 1);
    let again = bs_ingestion::import_paths(&cfg, &[d.to_path_buf()], false)
        .await
        .unwrap();
    assert_eq!(again.new, 0);
    assert_eq!(again.read, s.read);
    let ctx = bs_ingestion::open(&cfg, std::sync::Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap();
    let stats = ctx.store.stats().await.unwrap();
    assert_eq!(stats.killmails_total, 33);
    assert_eq!(
        stats.rejects_by_reason.values().sum::<i64>(),
        1,
        "a re-import keeps one reject row"
    );
    let zkb = ctx
        .store
        .killmail(kms[12].killmail_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(zkb.isk_value, Some(5.0e6), "the zkb block is kept");
}

#[tokio::test]
async fn redisq_packages_without_body_are_completed_from_esi() {
    let esi = bs_esi::fake::FakeEsi::start().await.unwrap();
    let dir = bs_testkit::temp_dir();
    let data = bs_testkit::temp_dir();
    let kms = killmails();
    let lines: Vec<String> = kms[40..45]
        .iter()
        .map(|k| serde_json::json!({"package": {"killID": k.killmail_id, "zkb": {"hash": k.hash, "totalValue": 1.5e8}}}).to_string())
        .collect();
    std::fs::write(data.path().join("redisq.jsonl"), lines.join("\n")).unwrap();
    let cfg = config(dir.path(), "http://127.0.0.1:9", esi.url());
    let s = bs_ingestion::import_paths(&cfg, &[data.path().join("redisq.jsonl")], false)
        .await
        .unwrap();
    assert_eq!(s.new, 5, "{s}");
    let ctx = bs_ingestion::open(&cfg, std::sync::Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap();
    let got = ctx
        .store
        .killmail(kms[42].killmail_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.isk_value,
        Some(1.5e8),
        "zkb from the package, body from ESI"
    );
    assert_eq!(
        got.killmail["solar_system_id"],
        kms[42].esi["solar_system_id"]
    );
}
