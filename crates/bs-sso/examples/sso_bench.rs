//! Throughput of the hot security paths, printed as numbers (not a test: no assertions on
//! time). Run: `cargo run -p bs-sso --example sso_bench [--release]`.

use std::time::Instant;

use bs_sso::cipher::token_aad;
use bs_sso::fake::{FakeClient, FakeSso};
use bs_sso::jwt::ValidatorConfig;
use bs_sso::{CsrfKey, JwtValidator, Secret, TokenCipher, generate_session_id, safe_return_to};

fn report(name: &str, n: u32, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<28} {n:>8} ops  {:>10.0} ops/s  {:>8.2} µs/op",
        f64::from(n) / secs,
        secs * 1e6 / f64::from(n)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = FakeClient {
        client_id: "bench-client".into(),
        client_secret: "bench-secret".into(),
        callback_url: "http://127.0.0.1/auth/callback".parse()?,
    };
    let sso = FakeSso::start(client).await?;
    sso.add_character(2112625428, "Bench Pilot")?;
    let jwks = sso.base_url().join("/oauth/jwks")?;
    let validator = JwtValidator::new(
        ValidatorConfig::new("bench-client", jwks),
        reqwest::Client::new(),
    );
    let token = sso.mint_access_token(2112625428, &["publicData"])?;
    let now = chrono::Utc::now();
    validator.validate(&token, now).await?;

    let n = 5_000;
    let t = Instant::now();
    for _ in 0..n {
        validator.validate(&token, now).await?;
    }
    report("jwt validate (cached key)", n, t);

    let cipher = TokenCipher::from_spec(&TokenCipher::generate_key_spec(&bs_sso::KeyId::parse(
        "k1",
    )?)?)?;
    let aad = token_aad("account-1", 2112625428);
    let n = 100_000;
    let t = Instant::now();
    let mut stored = String::new();
    for _ in 0..n {
        stored = cipher.encrypt("fJ3kQ9zX1mW8vB2nL5pR7tY0", &aad)?;
    }
    report("aes-gcm encrypt (24 B)", n, t);
    let t = Instant::now();
    for _ in 0..n {
        let _plain: Secret<String> = cipher.decrypt(&stored, &aad)?;
    }
    report("aes-gcm decrypt (24 B)", n, t);

    let key = CsrfKey::generate()?;
    let session = generate_session_id()?;
    let csrf = key.issue(&session)?;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(key.verify(&session, &csrf));
    }
    report("csrf verify", n, t);

    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(generate_session_id()?);
    }
    report("session id (OS random)", n, t);

    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(safe_return_to("/battles/123456?tab=timeline#kills"));
    }
    report("safe_return_to", n, t);
    Ok(())
}
