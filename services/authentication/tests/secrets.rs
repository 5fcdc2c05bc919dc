//! Refresh tokens never appear in plain text: not in the SQLite files (main, WAL, SHM),
//! not in the logs (captured at TRACE while logging in, linking and refreshing).

use std::io::Write;
use std::sync::Arc;

use chrono::TimeDelta;
use parking_lot::Mutex;

use crate::support::{Browser, World};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn refresh_tokens_never_appear_in_plain_text() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    w.character(1002, "Bravo", 10, None);
    let mut b = Browser::new();
    b.login_ok(&w, 1001).await;
    b.link(&w, 1002).await;
    let mut seen = vec![
        w.stored_refresh_token(1001).await.unwrap(),
        w.stored_refresh_token(1002).await.unwrap(),
    ];
    for _ in 0..2 {
        w.advance(TimeDelta::minutes(16));
        assert_eq!(w.service.refresh_due_tokens().await.unwrap().refreshed, 2);
        seen.push(w.stored_refresh_token(1001).await.unwrap());
        seen.push(w.stored_refresh_token(1002).await.unwrap());
    }
    // They are the real, live grants (the current ones), so the search below is meaningful.
    assert!(w.sso.is_grant_active(&seen[4]) && w.sso.is_grant_active(&seen[5]));
    assert_eq!(
        seen.iter().collect::<std::collections::BTreeSet<_>>().len(),
        seen.len()
    );
    // Also something that must be there, to prove the scan reads what was written.
    let cipher_text = w
        .service
        .store()
        .token(1001)
        .await
        .unwrap()
        .unwrap()
        .refresh_token_enc;

    let mut files = Vec::new();
    for entry in std::fs::read_dir(w.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    assert!(files.iter().any(|(p, _)| p.ends_with("auth.db")));
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, &cipher_text)),
        "the ciphertext is on disk"
    );
    for token in &seen {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, token),
                "a refresh token is in plain text in {path}"
            );
        }
    }
    let captured = logs.0.lock().clone();
    assert!(!captured.is_empty(), "logs were captured");
    for token in &seen {
        assert!(
            !contains(&captured, token),
            "a refresh token is in the logs"
        );
    }
    // The session id is not stored either (only its hash).
    let sid = b.session().unwrap();
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, &sid),
            "the session id is in plain text in {path}"
        );
    }
    assert!(!contains(&captured, &sid), "the session id is in the logs");
}
