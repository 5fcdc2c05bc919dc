//! Every reject reason, each from a real killmail made bad the way upstream
//! data goes bad; the poller-side path (prepare + store) never panics.

use bs_domain::KillmailSource;
use bs_ingestion::domain::{RejectReason, Ruleset};
use bs_ingestion::pipeline::{Pipeline, Prepared};
use bs_ingestion::store::{Batch, IngestionStore, SqlIngestionStore};
use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::killmails;

fn reason_of(p: &Pipeline, doc: &[u8]) -> Option<String> {
    match p.prepare(doc, KillmailSource::R2z2, Utc::now()) {
        Prepared::Reject(r) => Some(r.reason),
        _ => None,
    }
}

/// A real R2Z2-shaped entry built from a real EVE Ref killmail.
fn entry(k: &bs_zkb::fake::FakeKillmail) -> Value {
    json!({"killmail_id": k.killmail_id, "hash": k.hash, "esi": k.esi, "zkb": {"hash": k.hash, "totalValue": 1.0e7},
           "uploaded_at": 1_790_414_406, "sequence_id": 99_718_572})
}

#[tokio::test]
async fn every_validation_reason_with_real_looking_input() {
    let kms = killmails();
    let k = &kms[10];
    let p = Pipeline::new(Ruleset::default());
    let good = entry(k);
    assert!(matches!(
        p.prepare(
            good.to_string().as_bytes(),
            KillmailSource::R2z2,
            Utc::now()
        ),
        Prepared::Accept(_)
    ));

    let mut cases: Vec<(RejectReason, Vec<u8>)> = Vec::new();
    // A truncated body (connection cut mid-transfer).
    let text = good.to_string();
    cases.push((
        RejectReason::MalformedJson,
        text.as_bytes()[..text.len() / 2].to_vec(),
    ));
    // A Cloudflare error page that slipped through as a body.
    cases.push((
        RejectReason::MalformedJson,
        b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".to_vec(),
    ));
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string().into_bytes()
    };
    cases.push((
        RejectReason::MissingField,
        mutate(&|v| {
            v["esi"].as_object_mut().unwrap().remove("victim");
        }),
    ));
    cases.push((
        RejectReason::MissingField,
        mutate(&|v| {
            v["esi"].as_object_mut().unwrap().remove("killmail_time");
        }),
    ));
    cases.push((
        RejectReason::InvalidField,
        mutate(&|v| v["esi"]["solar_system_id"] = json!("Jita")),
    ));
    cases.push((
        RejectReason::InvalidField,
        mutate(&|v| v["esi"]["killmail_time"] = json!("yesterday")),
    ));
    cases.push((
        RejectReason::MissingHash,
        mutate(&|v| {
            v.as_object_mut().unwrap().remove("hash");
            v["zkb"].as_object_mut().unwrap().remove("hash");
        }),
    ));
    cases.push((
        RejectReason::InvalidHash,
        mutate(&|v| v["hash"] = json!("not-a-sha1")),
    ));
    cases.push((
        RejectReason::IdMismatch,
        mutate(&|v| v["killmail_id"] = json!(k.killmail_id + 1)),
    ));
    cases.push((
        RejectReason::NoAttackers,
        mutate(&|v| v["esi"]["attackers"] = json!([])),
    ));
    cases.push((
        RejectReason::NegativeDamage,
        mutate(&|v| v["esi"]["attackers"][0]["damage_done"] = json!(-500)),
    ));
    cases.push((
        RejectReason::NegativeDamage,
        mutate(&|v| v["esi"]["victim"]["damage_taken"] = json!(-1)),
    ));
    cases.push((
        RejectReason::FutureTime,
        mutate(&|v| v["esi"]["killmail_time"] = json!("2099-01-01T00:00:00Z")),
    ));
    cases.push((
        RejectReason::ImpossibleTime,
        mutate(&|v| v["esi"]["killmail_time"] = json!("1999-01-01T00:00:00Z")),
    ));
    cases.push((
        RejectReason::UnknownIdRange,
        mutate(&|v| v["esi"]["solar_system_id"] = json!(60_003_760)),
    ));
    cases.push((
        RejectReason::UnknownIdRange,
        mutate(&|v| {
            v["esi"]["killmail_id"] = json!(-5);
            v["killmail_id"] = json!(-5);
        }),
    ));
    cases.push((
        RejectReason::UnknownIdRange,
        mutate(&|v| v["esi"]["victim"]["ship_type_id"] = json!(0)),
    ));

    let dir = bs_testkit::temp_dir();
    let store = SqlIngestionStore::new(crate::helpers::sqlite_db(dir.path()).await);
    let mut batch = Batch::default();
    for (want, doc) in &cases {
        let got = reason_of(&p, doc);
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "input {}",
            String::from_utf8_lossy(&doc[..doc.len().min(200)])
        );
        if let Prepared::Reject(r) = p.prepare(doc, KillmailSource::R2z2, Utc::now()) {
            batch.rejects.push(r);
        }
    }
    store.apply(batch.clone(), Utc::now()).await.unwrap();
    store.apply(batch, Utc::now()).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.rejects_by_reason.values().sum::<i64>(),
        cases.len() as i64,
        "kept once each, replay adds nothing"
    );
    assert_eq!(stats.rejects_by_reason.get("negative_damage"), Some(&2));
}

#[tokio::test]
async fn ruleset_reasons_and_default_accepts_all() {
    let kms = killmails();
    // Jorund (Curse, nullsec) fight killmail with many pilots, and a small one.
    let big = kms
        .iter()
        .max_by_key(|k| k.esi["attackers"].as_array().map_or(0, Vec::len))
        .unwrap();
    let doc = entry(big).to_string();
    let p = Pipeline::new(Ruleset::default());
    assert!(
        kms.iter().all(|k| matches!(
            p.prepare(&k.record, KillmailSource::File, Utc::now()),
            Prepared::Accept(_)
        )),
        "default accepts every real killmail"
    );

    let system = big.esi["solar_system_id"].as_i64().unwrap();
    let set = |r: Ruleset| {
        p.set_ruleset(r);
        reason_of(&p, doc.as_bytes())
    };
    assert_eq!(
        set(Ruleset {
            min_pilots: 5000,
            ..Ruleset::default()
        })
        .as_deref(),
        Some("min_pilots")
    );
    assert_eq!(
        set(Ruleset {
            min_pilots: 2,
            ..Ruleset::default()
        }),
        None
    );
    assert_eq!(
        set(Ruleset {
            tracked_system_ids: vec![30_000_142],
            ..Ruleset::default()
        })
        .as_deref(),
        Some("untracked_system")
    );
    assert_eq!(
        set(Ruleset {
            tracked_system_ids: vec![system],
            ..Ruleset::default()
        }),
        None
    );
    let sec = bs_sde::StaticData::bundled()
        .system(system)
        .unwrap()
        .security_type;
    let other = if sec == bs_sde::SecurityType::Highsec {
        bs_sde::SecurityType::Wormhole
    } else {
        bs_sde::SecurityType::Highsec
    };
    assert_eq!(
        set(Ruleset {
            tracked_security_types: vec![other],
            ..Ruleset::default()
        })
        .as_deref(),
        Some("untracked_security")
    );
    assert_eq!(
        set(Ruleset {
            tracked_security_types: vec![sec],
            ..Ruleset::default()
        }),
        None
    );
    let alliance = big.esi["attackers"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a["alliance_id"].as_i64())
        .unwrap();
    assert_eq!(
        set(Ruleset {
            tracked_alliance_ids: vec![1],
            only_tracked_entities: true,
            ..Ruleset::default()
        })
        .as_deref(),
        Some("untracked_entity")
    );
    assert_eq!(
        set(Ruleset {
            tracked_alliance_ids: vec![alliance],
            only_tracked_entities: true,
            ..Ruleset::default()
        }),
        None
    );
    assert!(
        Ruleset {
            only_tracked_entities: true,
            ..Ruleset::default()
        }
        .check()
        .is_err()
    );
}

#[test]
fn random_bytes_never_panic_the_pipeline() {
    let p = Pipeline::new(Ruleset::default());
    let seed = killmails()[3].record.clone();
    // Deterministic corruption of a real record: truncations, flipped bytes, inserted quotes.
    for i in 0..seed.len().min(3000) {
        let mut doc = seed.clone();
        doc[i] = doc[i].wrapping_add((i % 251) as u8);
        let _ = p.prepare(&doc, KillmailSource::File, Utc::now());
        let _ = p.prepare(&seed[..i], KillmailSource::File, Utc::now());
    }
}
