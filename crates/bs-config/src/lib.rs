//! BattleScope's configuration.
//!
//! Layers, later wins: built-in defaults → a TOML file (`--config PATH` or
//! `BATTLESCOPE_CONFIG`) → environment variables. Environment variables are
//! either one of the fixed operator-facing names in [`ENV_ALIASES`]
//! (`BATTLESCOPE_DATA_DIR`, `BATTLESCOPE_LISTEN`, `BATTLESCOPE_R2Z2_URL`, …) or
//! the generic form `BATTLESCOPE_<SECTION>__<KEY>` (`BATTLESCOPE_BUS__KIND=kafka`).
//! Secrets are [`Secret`]s: redacted in `Debug`, and masked by
//! [`Config::redacted_toml`].
//!
//! [`ANNOTATED_DEFAULT`] is the commented default file printed by
//! `battlescope config`; a test keeps it equal to [`Config::default`].

mod secret;
mod sections;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use secret::Secret;
pub use sections::*;

/// The commented default configuration (`battlescope config`).
pub const ANNOTATED_DEFAULT: &str = include_str!("default.toml");

/// Fixed environment names → TOML paths. Operators and tests rely on these.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("BATTLESCOPE_DATA_DIR", "data_dir"),
    ("BATTLESCOPE_LISTEN", "listen"),
    ("BATTLESCOPE_PUBLIC_URL", "public_url"),
    ("BATTLESCOPE_LOG", "log.level"),
    ("BATTLESCOPE_LOG_FORMAT", "log.format"),
    ("BATTLESCOPE_DATABASE_URL", "store.url"),
    ("BATTLESCOPE_BUS", "bus.kind"),
    ("BATTLESCOPE_KAFKA_BROKERS", "bus.brokers"),
    ("BATTLESCOPE_CACHE", "cache.kind"),
    ("BATTLESCOPE_REDIS_URL", "cache.redis_url"),
    ("BATTLESCOPE_SEARCH", "search.kind"),
    ("BATTLESCOPE_TYPESENSE_URL", "search.typesense_url"),
    ("BATTLESCOPE_TYPESENSE_API_KEY", "search.typesense_api_key"),
    ("BATTLESCOPE_R2Z2_URL", "ingestion.r2z2_url"),
    ("BATTLESCOPE_ZKB_URL", "ingestion.zkb_url"),
    ("BATTLESCOPE_EVEREF_URL", "ingestion.everef_url"),
    ("BATTLESCOPE_REDISQ_URL", "ingestion.redisq_url"),
    ("BATTLESCOPE_CONTACT", "contact"),
    ("BATTLESCOPE_ESI_URL", "esi.url"),
    ("BATTLESCOPE_SSO_URL", "sso.url"),
    ("BATTLESCOPE_SSO_CLIENT_ID", "sso.client_id"),
    ("BATTLESCOPE_SSO_CLIENT_SECRET", "sso.client_secret"),
    ("BATTLESCOPE_TOKEN_KEYS", "auth.token_keys"),
    (
        "BATTLESCOPE_SUPERADMIN_CHARACTER_ID",
        "auth.superadmin_character_id",
    ),
    ("BATTLESCOPE_DEV_LOGIN", "auth.dev_login"),
    ("BATTLESCOPE_NOTIFY_MAX_AGE", "notification.max_age"),
    (
        "BATTLESCOPE_WEBHOOK_ALLOWED_HOSTS",
        "notification.webhook_allowed_hosts",
    ),
    ("BATTLESCOPE_IMAGE_URL", "web.image_url"),
];

/// TOML paths whose values are masked when a configuration is printed.
const SECRET_PATHS: &[&str] = &[
    "search.typesense_api_key",
    "sso.client_secret",
    "auth.token_keys",
    "store.url",
    "cache.redis_url",
];

/// The whole configuration. Every section has defaults, so an empty file is valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root of embedded storage: one SQLite file per service, the event log, the search index.
    pub data_dir: PathBuf,
    /// Address of the web UI + BFF (and, in all-in-one mode, of every API).
    pub listen: String,
    /// External base URL users reach BattleScope at (SSO callback, links in notifications).
    pub public_url: String,
    /// Contact put in the `User-Agent` of every upstream request (e-mail or URL).
    pub contact: String,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub bus: BusConfig,
    pub cache: CacheConfig,
    pub search: SearchConfig,
    pub ports: PortsConfig,
    pub services: ServiceUrlsConfig,
    pub ingestion: IngestionConfig,
    pub esi: EsiConfig,
    pub enrichment: EnrichmentConfig,
    pub battle: BattleConfig,
    pub notification: NotificationConfig,
    pub sso: SsoConfig,
    pub auth: AuthConfig,
    pub web: WebConfig,
    pub lifecycle: LifecycleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./battlescope-data"),
            listen: "127.0.0.1:3000".into(),
            public_url: "http://127.0.0.1:3000".into(),
            contact: "admin@example.invalid".into(),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            bus: BusConfig::default(),
            cache: CacheConfig::default(),
            search: SearchConfig::default(),
            ports: PortsConfig::default(),
            services: ServiceUrlsConfig::default(),
            ingestion: IngestionConfig::default(),
            esi: EsiConfig::default(),
            enrichment: EnrichmentConfig::default(),
            battle: BattleConfig::default(),
            notification: NotificationConfig::default(),
            sso: SsoConfig::default(),
            auth: AuthConfig::default(),
            web: WebConfig::default(),
            lifecycle: LifecycleConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TOML in {origin}: {message}")]
    Toml { origin: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (if any), then the given environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let layer: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::Toml {
                origin: path.display().to_string(),
                message: e.to_string(),
            })?;
            merge(&mut tree, layer);
        }
        for (name, value) in env {
            if let Some(path) = env_path(&name) {
                set_path(&mut tree, &path, parse_scalar(&value))?;
            }
        }
        let config: Config = tree
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// Loads from the process environment (and `BATTLESCOPE_CONFIG` when `file` is `None`).
    pub fn from_env(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env_file = std::env::var_os("BATTLESCOPE_CONFIG").map(PathBuf::from);
        Self::load(file.or(env_file.as_deref()), std::env::vars())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "listen: `{}` is not an address like 127.0.0.1:3000",
                self.listen
            )));
        }
        self.notification.max_age().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The effective configuration as TOML with secrets masked.
    pub fn redacted_toml(&self) -> String {
        let mut tree =
            toml::Value::try_from(self).unwrap_or(toml::Value::Table(Default::default()));
        for path in SECRET_PATHS {
            if let Some(toml::Value::String(s)) = get_path_mut(&mut tree, path)
                && !s.is_empty()
            {
                *s = "[redacted]".into();
            }
        }
        toml::to_string_pretty(&tree).unwrap_or_default()
    }

    /// The embedded SQLite file of a service.
    pub fn sqlite_path(&self, service: &str) -> PathBuf {
        self.data_dir.join(format!("{service}.db"))
    }
}

/// Maps an environment variable name to a TOML path, or `None` if it is not ours.
fn env_path(name: &str) -> Option<Vec<String>> {
    if let Some((_, path)) = ENV_ALIASES.iter().find(|(alias, _)| *alias == name) {
        return Some(path.split('.').map(str::to_owned).collect());
    }
    let rest = name.strip_prefix("BATTLESCOPE_")?;
    // Only the sectioned form is generic, so unrelated BATTLESCOPE_TEST_* variables are ignored.
    if !rest.contains("__") {
        return None;
    }
    Some(rest.split("__").map(str::to_ascii_lowercase).collect())
}

/// Environment values are strings; numbers and booleans are recognised so
/// `BATTLESCOPE_PORTS__BFF=4006` sets an integer.
fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_owned()),
    }
}

fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(base), toml::Value::Table(layer)) => {
            for (k, v) in layer {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

fn set_path(
    tree: &mut toml::Value,
    path: &[String],
    value: toml::Value,
) -> Result<(), ConfigError> {
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| ConfigError::Invalid("empty path".into()))?;
    let mut node = tree;
    for key in parents {
        let table = node
            .as_table_mut()
            .ok_or_else(|| ConfigError::Invalid(format!("{key} is not a section")))?;
        node = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    let table = node
        .as_table_mut()
        .ok_or_else(|| ConfigError::Invalid(format!("{} is not a section", path.join("."))))?;
    // Keep the declared type where the default is a string but the value looks numeric.
    let value = match (table.get(last), value) {
        (Some(toml::Value::String(_)), toml::Value::Integer(i)) => {
            toml::Value::String(i.to_string())
        }
        (Some(toml::Value::String(_)), toml::Value::Boolean(b)) => {
            toml::Value::String(b.to_string())
        }
        (_, v) => v,
    };
    table.insert(last.clone(), value);
    Ok(())
}

fn get_path_mut<'a>(tree: &'a mut toml::Value, path: &str) -> Option<&'a mut toml::Value> {
    path.split('.')
        .try_fold(tree, |node, key| node.as_table_mut()?.get_mut(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotated_default_equals_built_in_defaults() {
        let parsed: Config = toml::from_str(ANNOTATED_DEFAULT).expect("default.toml parses");
        assert_eq!(
            parsed,
            Config::default(),
            "update src/default.toml when a default changes"
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("bs-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:4000\"\n[bus]\nkind = \"kafka\"\n[ports]\nbff = 4006\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("BATTLESCOPE_LISTEN", "127.0.0.1:5000"),
                ("BATTLESCOPE_DATA_DIR", "/tmp/x"),
                ("BATTLESCOPE_PORTS__SEARCH", "4004"),
                ("BATTLESCOPE_R2Z2_URL", "http://127.0.0.1:9"),
                ("BATTLESCOPE_SSO_CLIENT_ID", "12345"),
                ("BATTLESCOPE_TEST_SOMETHING", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:5000"); // env beats file
        assert_eq!(c.bus.kind, BusKind::Kafka); // file beats default
        assert_eq!(c.ports.bff, 4006);
        assert_eq!(c.ports.search, 4004);
        assert_eq!(c.ports.battle, 3003); // default kept
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.ingestion.r2z2_url, "http://127.0.0.1:9");
        assert_eq!(c.sso.client_id, "12345"); // numeric-looking value stays a string
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err = Config::load(None, env(&[("BATTLESCOPE_LISTEN", "nonsense")])).unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        let err = Config::load(None, env(&[("BATTLESCOPE_NOTIFY_MAX_AGE", "soon")])).unwrap_err();
        assert!(err.to_string().contains("max_age"), "{err}");
        let err =
            Config::load(None, env(&[("BATTLESCOPE_BUS__KIND", "carrier-pigeon")])).unwrap_err();
        assert!(err.to_string().contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let c = Config::load(
            None,
            env(&[
                ("BATTLESCOPE_SSO_CLIENT_SECRET", "s3cr3t"),
                ("BATTLESCOPE_NOTIFY_MAX_AGE", "90d"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sso.client_secret.expose(), "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let printed = c.redacted_toml();
        assert!(!printed.contains("s3cr3t"));
        assert!(printed.contains("[redacted]"));
        assert_eq!(
            c.notification.max_age().unwrap(),
            std::time::Duration::from_secs(90 * 86400)
        );
    }
}
