//! The clients against the fake: the fake must behave like the documented
//! R2Z2/history/EVE Ref (eve-platform.md §1.4), and the clients must classify
//! what it does.

use bs_zkb::fake::{FakeZkb, FakeZkbOptions};
use bs_zkb::history::HistoryClient;
use bs_zkb::r2z2::{EntryFetch, R2z2Client};
use bs_zkb::{Document, FetchError, parse_document};

#[tokio::test]
async fn r2z2_walk_sees_holes_republications_and_the_head() {
    let fake = FakeZkb::start(FakeZkbOptions {
        hole_every: 17,
        duplicate_every: 23,
        republish_every: 29,
        initially_published: 80,
        ..FakeZkbOptions::default()
    })
    .await
    .unwrap();
    // Paced under the fake's 20 requests per rolling second.
    let client = R2z2Client::new(fake.url(), "tests@example.invalid", 15).unwrap();
    let seq = client.sequence().await.unwrap();
    assert!(
        seq < fake.head() && seq >= fake.head() - 52,
        "sequence.json lags the head by at most 51"
    );

    let mut found = 0;
    let mut holes = Vec::new();
    let mut updated = Vec::new();
    for n in fake.first_sequence()..fake.head() {
        match client.entry(n).await.unwrap() {
            EntryFetch::Found(body) => {
                let Document::Killmail(k) = parse_document(&body).unwrap() else {
                    panic!("entry is a killmail")
                };
                assert_eq!(k.sequence_id, Some(n));
                assert_eq!(k.wrapper_id, Some(k.killmail.killmail_id));
                if let Some(m) = k.sequence_updated {
                    updated.push((n, m));
                }
                found += 1;
            }
            EntryFetch::NotFound => holes.push(n),
        }
    }
    assert_eq!(holes, fake.holes());
    assert_eq!(updated, fake.republications());
    assert!(!updated.is_empty());
    assert_eq!(
        found + holes.len() as i64,
        fake.head() - fake.first_sequence()
    );
    assert_eq!(
        client.entry(fake.head()).await.unwrap(),
        EntryFetch::NotFound,
        "the head is a 404"
    );
    fake.advance(1);
    assert!(matches!(
        client.entry(fake.head() - 1).await.unwrap(),
        EntryFetch::Found(_) | EntryFetch::NotFound
    ));
}

#[tokio::test]
async fn the_fake_enforces_user_agent_rate_limit_and_injects_faults() {
    let fake = FakeZkb::start(FakeZkbOptions {
        fault_every: 4,
        ..FakeZkbOptions::default()
    })
    .await
    .unwrap();
    // No User-Agent: 403.
    let bare = reqwest::Client::new();
    let resp = bare
        .get(format!("{}/ephemeral/sequence.json", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    let client = R2z2Client::new(fake.url(), "tests@example.invalid", 0).unwrap();
    let mut errors = Vec::new();
    for _ in 0..30 {
        if let Err(e) = client.entry(fake.first_sequence()).await {
            errors.push(e);
        }
    }
    assert!(
        errors.iter().any(|e| matches!(
            e,
            FetchError::RateLimited {
                retry_after: Some(_)
            }
        )),
        "{errors:?}"
    );
    assert!(errors.contains(&FetchError::Html), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, FetchError::Server(500 | 503))),
        "{errors:?}"
    );
    assert!(fake.stats().rate_limited > 0);
}

#[tokio::test]
async fn history_and_everef_describe_the_same_killmails() {
    let fake = FakeZkb::start(FakeZkbOptions::default()).await.unwrap();
    let history = HistoryClient::new(fake.url(), "tests@example.invalid", 0).unwrap();
    let totals = history.totals().await.unwrap();
    let expected = fake.expected();
    assert_eq!(totals.values().sum::<u64>(), expected.len() as u64);
    let (day, count) = totals.iter().next().map(|(d, c)| (*d, *c)).unwrap();
    let pairs = history.day(day).await.unwrap().unwrap();
    assert_eq!(pairs.len() as u64, count);
    for (id, hash) in &pairs {
        assert_eq!(&expected[id].hash, hash);
    }

    let everef = bs_zkb::everef::EverefClient::new(fake.url(), "tests@example.invalid").unwrap();
    let archive = everef.day_archive(day).await.unwrap().unwrap();
    let mut ids = Vec::new();
    bs_zkb::everef::for_each_json::<_, std::io::Error>(archive.as_ref(), true, |_, body| {
        let Document::Killmail(k) = parse_document(&body).unwrap() else {
            panic!()
        };
        assert!(k.hash.is_some(), "EVE Ref records carry killmail_hash");
        ids.push(k.killmail.killmail_id);
        Ok(())
    })
    .unwrap();
    ids.sort_unstable();
    assert_eq!(ids, pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let far = chrono::NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
    assert_eq!(everef.day_archive(far).await.unwrap(), None);
}
