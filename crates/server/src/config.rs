//! Configuration, in one place: defaults, then a TOML file (`--config`), then environment
//! variables `VOXTRAIL_*`, then command-line flags (applied by the binary).
//!
//! Every limit (docs/api.md, "Configuration") lives here with its default. This module knows
//! nothing of HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where `serve` listens.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (default) or `postgres://USER@HOST/DB` (several replicas; docs/operations.md).
    pub database: String,
    pub limits: Limits,
    pub compat: Compat,
    pub http: HttpConfig,
    /// Seconds a client is told to wait (`Retry-After`) while maintenance is on.
    pub maintenance_retry_after_secs: u64,
    /// How often cached tokens and the maintenance switch are re-read from the database.
    pub refresh_interval_ms: u64,
    /// How often the server's console indexer indexes newly stored rows for word search and
    /// counts them for the overview (both are exact before that too, docs/api.md, "The console").
    pub search_index_interval_ms: u64,
    pub audit: AuditConfig,
}

/// The consumer audit (docs/api.md, "Consumer audit").
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days an audit record is kept; older ones are deleted by the server's background task.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

/// The limits of docs/api.md, "Configuration": the size of answers, windows and batches,
/// concurrency and daily use.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_records: u64,
    pub max_bytes: u64,
    pub max_window_days: u32,
    /// Time allowed before an answer must start (the hosted API's consumption limit).
    pub consumption_timeout_ms: u64,
    pub concurrent_per_token: u32,
    /// Daily uses per token for each license of its operation when the token has no own limit.
    pub daily_per_license: u64,
    pub ingest_max_records: usize,
    pub ingest_max_body_bytes: usize,
    /// Time allowed to receive a whole ingestion body (slow-drip bodies are cut off).
    pub ingest_body_timeout_ms: u64,
    /// Bytes of rows after which a change-feed page ends even below its `limit` (a page holds
    /// at least one row); the answer then says `X-Voxtrail-Feed-More: true`.
    pub feed_page_max_bytes: usize,
}

/// Connection-level bounds of the HTTP server (docs/operations.md, "Connections and
/// timeouts").
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Time a connection has to send a complete request head, from its accept or from the
    /// first byte of a later request.
    pub header_read_timeout_ms: u64,
    /// Time a keep-alive connection may sit with no request in flight and no bytes moving.
    pub idle_timeout_ms: u64,
    /// Open connections at most (lowered at start to the open-file limit minus a reserve);
    /// past it new connections get a 503 and are closed.
    pub max_connections: u64,
    /// Largest request head (request line and headers); larger heads get a 431.
    pub max_header_bytes: u64,
    /// After SIGTERM, time given to answers in flight before every connection is cut.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 4096,
            max_header_bytes: 64 * 1024,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// Switches that mimic quirks of the hosted API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Compat {
    /// `"200"` (default): an empty window is a 200 with no rows. `"404"`: the hosted API's
    /// 404 "Validate dates entered".
    pub empty_window: EmptyWindow,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum EmptyWindow {
    #[default]
    #[serde(rename = "200")]
    Ok,
    #[serde(rename = "404")]
    NotFound,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: "sqlite://voxtrail.db".into(),
            limits: Limits::default(),
            compat: Compat::default(),
            http: HttpConfig::default(),
            maintenance_retry_after_secs: 300,
            refresh_interval_ms: 2000,
            audit: AuditConfig::default(),
            search_index_interval_ms: 1000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records: 60_000,
            max_bytes: 256 * 1024 * 1024,
            max_window_days: 31,
            consumption_timeout_ms: 60_000,
            concurrent_per_token: 2,
            daily_per_license: 1000,
            ingest_max_records: 10_000,
            ingest_max_body_bytes: 64 * 1024 * 1024,
            ingest_body_timeout_ms: 30_000,
            feed_page_max_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for Compat {
    fn default() -> Self {
        Self {
            empty_window: EmptyWindow::Ok,
        }
    }
}

impl Limits {
    pub fn consumption_timeout(&self) -> Duration {
        Duration::from_millis(self.consumption_timeout_ms)
    }
}

/// Environment variables read on top of the file: `VOXTRAIL_` + the dotted key in upper case
/// with `__` between sections, e.g. `VOXTRAIL_LIMITS__MAX_RECORDS=1000`.
const ENV_PREFIX: &str = "VOXTRAIL_";

impl Config {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_with_env(file, std::env::vars())
    }

    /// [`Config::load`] with the environment given (tests, embedding programs).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            table = text
                .parse::<toml::Table>()
                .with_context(|| format!("parsing config file {}", path.display()))?;
        }
        Self::from_table(table, env)
    }

    /// Merges environment overrides into a parsed file and builds the configuration.
    pub fn from_table(
        mut table: toml::Table,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // VOXTRAIL_DATABASE_URL is the documented name of the database setting.
            let path: Vec<String> = if rest == "DATABASE_URL" {
                vec!["database".into()]
            } else {
                rest.split("__").map(str::to_ascii_lowercase).collect()
            };
            let Some(default) = default_at(&path) else {
                continue;
            };
            let parsed = env_value(&default, &value);
            check_env_value(&key, &value, &path, &default, &parsed)?;
            insert_path(&mut table, &path, parsed);
        }
        let cfg: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                anyhow::anyhow!("invalid configuration: {}", e.message())
            })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        anyhow::ensure!(
            l.concurrent_per_token >= 1,
            "limits.concurrent_per_token must be at least 1"
        );
        anyhow::ensure!(
            l.max_window_days >= 1,
            "limits.max_window_days must be at least 1"
        );
        anyhow::ensure!(
            l.ingest_max_records >= 1,
            "limits.ingest_max_records must be at least 1"
        );
        anyhow::ensure!(
            l.feed_page_max_bytes >= 1,
            "limits.feed_page_max_bytes must be at least 1"
        );
        anyhow::ensure!(
            self.audit.retention_days >= 1,
            "audit.retention_days must be at least 1"
        );
        anyhow::ensure!(
            self.refresh_interval_ms >= 10,
            "refresh_interval_ms must be at least 10"
        );
        anyhow::ensure!(
            self.refresh_interval_ms <= 5000,
            "refresh_interval_ms must be at most 5000 (revocation must take effect within 5 s)"
        );
        anyhow::ensure!(
            (10..=86_400_000).contains(&self.search_index_interval_ms),
            "search_index_interval_ms must be between 10 and 86400000 (got {})",
            self.search_index_interval_ms
        );
        self.http.check()
    }
}

impl HttpConfig {
    fn check(&self) -> anyhow::Result<()> {
        let within = |name: &str, v: u64, lo: u64, hi: u64| {
            anyhow::ensure!(
                (lo..=hi).contains(&v),
                "http.{name} must be between {lo} and {hi} (got {v})"
            );
            Ok(())
        };
        within(
            "header_read_timeout_ms",
            self.header_read_timeout_ms,
            100,
            30_000,
        )?;
        within("idle_timeout_ms", self.idle_timeout_ms, 100, 75_000)?;
        within("max_connections", self.max_connections, 1, 1_000_000)?;
        // hyper's read buffer cannot be smaller than 8 KiB.
        within("max_header_bytes", self.max_header_bytes, 8192, 1024 * 1024)?;
        within("shutdown_grace_ms", self.shutdown_grace_ms, 100, 600_000)?;
        Ok(())
    }
}

/// The default value of a setting, `None` for names the configuration does not have: only
/// known keys are taken from the environment, so unrelated variables such as `VOXTRAIL_LOG`
/// never make the configuration invalid.
fn default_at(path: &[String]) -> Option<toml::Value> {
    let mut cur = toml::Value::try_from(Config::default()).ok()?;
    for part in path {
        cur = cur.get(part)?.clone();
    }
    Some(cur)
}

/// Reads an environment value for a setting whose default is `default`. A text setting takes
/// a bare word (`404`) or a TOML string (`"404"`, `'404'`) alike, so the number-looking values
/// of `compat.empty_window` need no quoting; other settings parse as TOML values (numbers,
/// booleans) and stay typed.
fn env_value(default: &toml::Value, value: &str) -> toml::Value {
    let as_toml = value
        .trim()
        .parse::<toml::Value>()
        .ok()
        .filter(|v| !matches!(v, toml::Value::Table(_) | toml::Value::Array(_)));
    match (default, as_toml) {
        (toml::Value::String(_), Some(toml::Value::String(s))) => toml::Value::String(s),
        (toml::Value::String(_), _) => toml::Value::String(value.to_owned()),
        (_, Some(v)) => v,
        (_, None) => toml::Value::String(value.to_owned()),
    }
}

/// Refuses an environment value that does not fit its setting, naming the variable and the
/// expected form (the file's own errors name the key).
fn check_env_value(
    key: &str,
    raw: &str,
    path: &[String],
    default: &toml::Value,
    parsed: &toml::Value,
) -> anyhow::Result<()> {
    let Ok(mut whole) = toml::Value::try_from(Config::default()) else {
        return Ok(());
    };
    let Some(table) = whole.as_table_mut() else {
        return Ok(());
    };
    insert_path(table, path, parsed.clone());
    let Err(e) = whole.try_into::<Config>() else {
        return Ok(());
    };
    let expected = match default {
        toml::Value::Integer(d) => format!("a whole number, e.g. {key}={d}"),
        toml::Value::Float(d) => format!("a number, e.g. {key}={d}"),
        toml::Value::Boolean(_) => format!("true or false, e.g. {key}=true"),
        toml::Value::String(d) => {
            format!("text, bare or quoted, e.g. {key}={d} or {key}='\"{d}\"'")
        }
        _ => "a TOML value".to_owned(),
    };
    anyhow::bail!(
        "invalid configuration: environment variable {key}={raw:?} does not fit; expected {expected} ({})",
        e.message().trim()
    )
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for p in parents {
        cur = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("config sections are tables");
    }
    cur.insert(last.clone(), value);
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
    fn defaults_match_the_contract() {
        let c = Config::from_table(toml::Table::new(), env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.limits.max_bytes, 268_435_456);
    }

    #[test]
    fn file_then_env() {
        let t: toml::Table = "[limits]\nmax_records = 10\n".parse().unwrap();
        let c = Config::from_table(
            t,
            env(&[
                ("VOXTRAIL_LIMITS__CONCURRENT_PER_TOKEN", "3"),
                ("VOXTRAIL_DATABASE_URL", "sqlite://x.db"),
                ("VOXTRAIL_LOG", "debug"),
                ("VOXTRAIL_COMPAT__EMPTY_WINDOW", "404"),
            ]),
        )
        .unwrap();
        assert_eq!(c.limits.max_records, 10);
        assert_eq!(c.limits.concurrent_per_token, 3);
        assert_eq!(c.compat.empty_window, EmptyWindow::NotFound);
        assert_eq!(c.database, "sqlite://x.db");
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let t: toml::Table = "[limits]\nmax_recordz = 10\n".parse().unwrap();
        let e = Config::from_table(t, env(&[])).unwrap_err().to_string();
        assert!(e.contains("max_recordz"), "{e}");
        let e = Config::from_table(
            toml::Table::new(),
            env(&[("VOXTRAIL_LIMITS__MAX_RECORDS", "lots")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid configuration"), "{e}");
        let t: toml::Table = "[limits]\nconcurrent_per_token = 0\n".parse().unwrap();
        assert!(Config::from_table(t, env(&[])).is_err());
        let t: toml::Table = "[limits]\nfeed_page_max_bytes = 0\n".parse().unwrap();
        let e = Config::from_table(t, env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("limits.feed_page_max_bytes must be at least 1"),
            "{e}"
        );
        for bad in ["0", "9", "86400001", "-1"] {
            let e = Config::from_table(
                toml::Table::new(),
                env(&[("VOXTRAIL_SEARCH_INDEX_INTERVAL_MS", bad)]),
            );
            assert!(e.is_err(), "{bad}");
        }
        let ok = Config::from_table(
            toml::Table::new(),
            env(&[("VOXTRAIL_SEARCH_INDEX_INTERVAL_MS", "86400000")]),
        )
        .unwrap();
        assert_eq!(ok.search_index_interval_ms, 86_400_000);
    }

    #[test]
    fn text_settings_take_bare_and_quoted_values_alike() {
        for v in ["404", "\"404\"", "'404'", " \"404\" "] {
            let c = Config::from_table(
                toml::Table::new(),
                env(&[("VOXTRAIL_COMPAT__EMPTY_WINDOW", v)]),
            )
            .unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(c.compat.empty_window, EmptyWindow::NotFound, "{v}");
        }
        for v in ["0.0.0.0:9090", "\"0.0.0.0:9090\""] {
            let c = Config::from_table(toml::Table::new(), env(&[("VOXTRAIL_LISTEN", v)])).unwrap();
            assert_eq!(c.listen, "0.0.0.0:9090".parse().unwrap(), "{v}");
        }
        // A quoted value keeps its inside whole; a bare one is taken as it is.
        let c = Config::from_table(
            toml::Table::new(),
            env(&[("VOXTRAIL_DATABASE_URL", "'sqlite://a b.db'")]),
        )
        .unwrap();
        assert_eq!(c.database, "sqlite://a b.db");
        let c = Config::from_table(
            toml::Table::new(),
            env(&[("VOXTRAIL_DATABASE_URL", "sqlite://\"odd\".db")]),
        )
        .unwrap();
        assert_eq!(c.database, "sqlite://\"odd\".db");
    }

    #[test]
    fn numbers_stay_typed() {
        let c = Config::from_table(
            toml::Table::new(),
            env(&[("VOXTRAIL_LIMITS__MAX_RECORDS", "1000")]),
        )
        .unwrap();
        assert_eq!(c.limits.max_records, 1000);
        for bad in [
            "\"1000\"",
            "1e3",
            "-1",
            "true",
            "[1]",
            "{a=1}",
            "",
            "1000 rows",
        ] {
            let e = Config::from_table(
                toml::Table::new(),
                env(&[("VOXTRAIL_LIMITS__MAX_RECORDS", bad)]),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("VOXTRAIL_LIMITS__MAX_RECORDS"), "{bad}: {e}");
            assert!(e.contains("a whole number"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_env_value_names_the_variable_and_the_expected_form() {
        let e = Config::from_table(
            toml::Table::new(),
            env(&[("VOXTRAIL_COMPAT__EMPTY_WINDOW", "500")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("VOXTRAIL_COMPAT__EMPTY_WINDOW=\"500\""), "{e}");
        assert!(e.contains("`200`") && e.contains("`404`"), "{e}");
        assert!(e.contains("bare or quoted"), "{e}");
        let e = Config::from_table(toml::Table::new(), env(&[("VOXTRAIL_LISTEN", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("VOXTRAIL_LISTEN"), "{e}");
        let e = Config::from_table(
            toml::Table::new(),
            env(&[("VOXTRAIL_REFRESH_INTERVAL_MS", "ten")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("VOXTRAIL_REFRESH_INTERVAL_MS=\"ten\"")
                && e.contains("e.g. VOXTRAIL_REFRESH_INTERVAL_MS=2000"),
            "{e}"
        );
    }

    #[test]
    fn http_settings_from_file_and_env_and_their_bounds() {
        let t: toml::Table = "[http]\nidle_timeout_ms = 5000\n".parse().unwrap();
        let c = Config::from_table(
            t,
            env(&[
                ("VOXTRAIL_HTTP__SHUTDOWN_GRACE_MS", "2000"),
                ("VOXTRAIL_HTTP__MAX_CONNECTIONS", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.idle_timeout_ms, 5000);
        assert_eq!(c.http.shutdown_grace_ms, 2000);
        assert_eq!(c.http.max_connections, 10);
        assert_eq!(c.http.header_read_timeout_ms, 10_000);
        for (key, bad) in [
            ("HEADER_READ_TIMEOUT_MS", "0"),
            ("HEADER_READ_TIMEOUT_MS", "60000"),
            ("IDLE_TIMEOUT_MS", "0"),
            ("IDLE_TIMEOUT_MS", "3600000"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "99999999999"),
            ("MAX_HEADER_BYTES", "100"),
            ("MAX_HEADER_BYTES", "1073741824"),
            ("SHUTDOWN_GRACE_MS", "0"),
            ("SHUTDOWN_GRACE_MS", "-5"),
            ("SHUTDOWN_GRACE_MS", "soon"),
        ] {
            let var = format!("VOXTRAIL_HTTP__{key}");
            let e = Config::from_table(toml::Table::new(), env(&[(&var, bad)]))
                .expect_err(&var)
                .to_string();
            let name = key.to_ascii_lowercase();
            assert!(
                e.contains(&name) || e.contains("invalid configuration"),
                "{var}={bad}: {e}"
            );
        }
        let t: toml::Table = "[http]\nmax_conections = 5\n".parse().unwrap();
        let e = Config::from_table(t, env(&[])).unwrap_err().to_string();
        assert!(e.contains("max_conections"), "{e}");
    }
}
