//! End-to-end tests of the `battlescope` binary: it is started as a real
//! process, exactly as an operator would start it.
mod bench;
mod lifecycle;
mod split;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_battlescope");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str], data_dir: &std::path::Path) -> Running {
    let port = free_port();
    // Logs go to a file: a pipe nobody reads would fill up and stall the server.
    let log = std::fs::File::create(data_dir.join("battlescope.log")).expect("create log file");
    let child = Command::new(BIN)
        .args(args)
        .env("BATTLESCOPE_DATA_DIR", data_dir)
        .env("BATTLESCOPE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn battlescope");
    let running = Running {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::blocking::get(format!("{}/health", running.base))
            && r.status().is_success()
        {
            return running;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("battlescope did not become healthy within 60s");
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn demo_serves_health_ready_metrics_and_stops_on_sigterm() {
    let dir = bs_testkit::temp_dir();
    let mut app = start(&["demo"], dir.path());
    let ready = reqwest::blocking::get(format!("{}/ready", app.base)).unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().unwrap();
    assert_eq!(body["ready"], true, "{body}");

    let metrics = reqwest::blocking::get(format!("{}/metrics", app.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("battlescope_http_requests_total"),
        "{metrics}"
    );
    check_with_promtool(&metrics);

    // Embedded storage lands under BATTLESCOPE_DATA_DIR.
    assert!(dir.path().join("bus.db").exists());

    sigterm(&app.child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = app.child.try_wait().unwrap() {
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 30s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `promtool check metrics` must accept our exposition (mandatory in CI).
fn check_with_promtool(metrics: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(!bs_testkit::in_ci(), "promtool is required in CI");
        eprintln!("skipped: promtool not installed");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lint warnings (e.g. about help text) are not errors; a malformed exposition is.
    assert!(!text.contains("error while linting"), "{text}");
}

#[test]
fn config_prints_the_annotated_defaults_and_masks_secrets() {
    let out = Command::new(BIN).arg("config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("BATTLESCOPE_DATA_DIR") && text.contains("listen = \"127.0.0.1:3000\""));

    let out = Command::new(BIN)
        .args(["config", "--effective"])
        .env("BATTLESCOPE_SSO_CLIENT_SECRET", "very-secret-value")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("very-secret-value") && text.contains("[redacted]"));
}

#[test]
fn bad_configuration_is_a_clear_error_not_a_crash() {
    let out = Command::new(BIN)
        .arg("demo")
        .env("BATTLESCOPE_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn migrate_creates_every_schema_on_empty_postgres_and_a_second_run_does_nothing() {
    let Some(url) = bs_testkit::engine(bs_testkit::POSTGRES) else {
        return;
    };
    let prefix = bs_testkit::unique_name("bsmig");
    let run = || {
        let out = Command::new(BIN)
            .arg("migrate")
            .env("BATTLESCOPE_DATABASE_URL", &url)
            .env("BATTLESCOPE_STORE__DATABASE_PREFIX", &prefix)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    let second = run();
    for line in first.lines() {
        assert!(
            !line.contains(": 0 applied") || line.contains("no database"),
            "first run applies: {first}"
        );
    }
    for line in second.lines() {
        assert!(
            line.contains(": 0 applied") || line.contains("no database"),
            "second run does nothing: {second}"
        );
    }
    assert!(
        first.contains("ingestion") && first.contains("authentication"),
        "{first}"
    );
}
