//! Layered configuration: built-in defaults, then a TOML file, then `HUILIU_*`
//! environment variables, then command-line flags; the last one to set a value wins.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Environment variables huiliu reads. Any other `HUILIU_*` variable is probably a
/// typo that would silently fall back to a default, so it is warned about.
pub const KNOWN_ENV: &[&str] = &[
    "HUILIU_CONFIG",
    "HUILIU_DATABASE_URL",
    "HUILIU_LISTEN",
    "HUILIU_METRICS_LISTEN",
    "HUILIU_LOG",
    "HUILIU_LOG_FORMAT",
    "HUILIU_MASTER_KEY",
    "HUILIU_MASTER_KEY_FILE",
    "HUILIU_WECHAT_API_BASE",
    "HUILIU_WECHAT_TOKEN_API",
    "HUILIU_NODE_ID",
    "HUILIU_DISPATCH",
    "HUILIU_DISPATCH_LEASE_SECONDS",
    "HUILIU_DISPATCH_RECONCILE_SECONDS",
    "HUILIU_POINTS_SWEEP_SECONDS",
    // read by the test suite, not by the server
    "HUILIU_TEST_POSTGRES_URL",
    "HUILIU_REQUIRE_POSTGRES",
    "HUILIU_POSTGRES_SKIP_MARKER",
];

/// The settings every command shares.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// `sqlite://PATH` (embedded, created if missing) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// The API's listen address.
    pub listen: String,
    /// The metrics listen address; port 0 picks a free port, `off` disables.
    pub metrics_listen: String,
    /// Log filter, e.g. `info` or `huiliu_server=debug,info`.
    pub log: String,
    /// `text` for people, `json` for log collectors.
    pub log_format: String,
    /// 64 hex characters sealing the apps' WeChat secrets; without it, a key file is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    /// Where the master key is kept when `master_key` is not set (default: beside a
    /// SQLite database, `PATH.key`; otherwise `./huiliu.key`), created if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<String>,
    /// WeChat's API base; a fake WeChat in development, e.g. `http://127.0.0.1:9000`.
    pub wechat_api_base: String,
    /// `stable` (`/cgi-bin/stable_token`, recommended) or `classic` (`/cgi-bin/token`).
    pub wechat_token_api: String,
    /// This node's name in message leases and the token lease; unique per node.
    /// Default: generated per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// `on`: this node sends queued messages; `off`: it only accepts them.
    pub dispatch: String,
    /// Seconds a node holds a claimed message; a send not recorded by then has an
    /// unknown outcome and is never resent.
    pub dispatch_lease_seconds: u64,
    /// Seconds an unknown outcome waits for WeChat's sent event before it fails.
    pub dispatch_reconcile_seconds: u64,
    /// Seconds between the points sweeps that write expiry entries and release
    /// holds that timed out (balances are exact at any instant regardless).
    pub points_sweep_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://huiliu.db".into(),
            listen: "127.0.0.1:8080".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            log: "info,sqlx=warn".into(),
            log_format: "text".into(),
            master_key: None,
            master_key_file: None,
            wechat_api_base: "https://api.weixin.qq.com".into(),
            wechat_token_api: "stable".into(),
            node_id: None,
            dispatch: "on".into(),
            dispatch_lease_seconds: 60,
            dispatch_reconcile_seconds: 600,
            points_sweep_seconds: 30,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
}

/// Builds the effective configuration. `file` is `--config`; without it,
/// `HUILIU_CONFIG`, then `huiliu.toml` in the working directory if it exists.
pub fn load(
    file: Option<PathBuf>,
    overrides: Overrides,
) -> Result<(Config, Vec<String>), Box<figment::Error>> {
    let file = file
        .or_else(|| std::env::var_os("HUILIU_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("huiliu.toml")).filter(|p| p.exists()));
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = &file {
        if !file.exists() {
            return Err(Box::new(figment::Error::from(format!(
                "config file {} does not exist",
                file.display()
            ))));
        }
        figment = figment.merge(Toml::file(file));
    }
    let known: Vec<String> = KNOWN_ENV.iter().map(|k| k.to_string()).collect();
    figment = figment
        .merge(Env::prefixed("HUILIU_").only(&[
            "database_url",
            "listen",
            "metrics_listen",
            "log",
            "log_format",
            "master_key",
            "master_key_file",
            "wechat_api_base",
            "wechat_token_api",
            "node_id",
            "dispatch",
            "dispatch_lease_seconds",
            "dispatch_reconcile_seconds",
            "points_sweep_seconds",
        ]))
        .merge(Serialized::defaults(overrides));
    let config: Config = figment.extract().map_err(Box::new)?;
    let warnings = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("HUILIU_") && !known.contains(name))
        .map(|name| {
            format!(
                "unknown environment variable {name} is ignored (known: {})",
                KNOWN_ENV.join(", ")
            )
        })
        .collect();
    Ok((config, warnings))
}

/// The configuration as TOML with the database password hidden.
pub fn redacted_toml(config: &Config) -> String {
    let mut shown = config.clone();
    shown.database_url = redact_url_password(&config.database_url);
    if shown.master_key.is_some() {
        shown.master_key = Some("***".into());
    }
    toml_string(&shown)
}

fn toml_string(config: &Config) -> String {
    // A flat struct of strings and numbers: writing it by hand keeps the toml crate out of the build.
    let line = |key: &str, value: &str| format!("{key} = {}\n", serde_json::Value::from(value));
    [
        line("database_url", &config.database_url),
        line("listen", &config.listen),
        line("metrics_listen", &config.metrics_listen),
        line("log", &config.log),
        line("log_format", &config.log_format),
        config
            .master_key
            .as_deref()
            .map_or(String::new(), |k| line("master_key", k)),
        config
            .master_key_file
            .as_deref()
            .map_or(String::new(), |f| line("master_key_file", f)),
        line("wechat_api_base", &config.wechat_api_base),
        line("wechat_token_api", &config.wechat_token_api),
        config
            .node_id
            .as_deref()
            .map_or(String::new(), |n| line("node_id", n)),
        line("dispatch", &config.dispatch),
        format!(
            "dispatch_lease_seconds = {}\n",
            config.dispatch_lease_seconds
        ),
        format!(
            "dispatch_reconcile_seconds = {}\n",
            config.dispatch_reconcile_seconds
        ),
        format!("points_sweep_seconds = {}\n", config.points_sweep_seconds),
    ]
    .concat()
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_other_urls_kept() {
        assert_eq!(
            redact_url_password("postgres://huiliu:s3cret@db:5432/huiliu"),
            "postgres://huiliu:***@db:5432/huiliu"
        );
        assert_eq!(
            redact_url_password("postgres://huiliu@db/huiliu"),
            "postgres://huiliu@db/huiliu"
        );
        assert_eq!(
            redact_url_password("sqlite://huiliu.db"),
            "sqlite://huiliu.db"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail fixes the closure's error type
    fn layers_apply_in_order_and_unknown_variables_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "listen = \"0.0.0.0:9000\"\nlog = \"debug\"\n",
            )?;
            jail.set_env("HUILIU_LOG", "warn");
            jail.set_env("HUILIU_DATABSE_URL", "typo");
            let (config, warnings) = load(
                Some("custom.toml".into()),
                Overrides {
                    database_url: Some("sqlite://flag.db".into()),
                    ..Default::default()
                },
            )
            .map_err(|e| *e)?;
            assert_eq!(
                config.listen, "0.0.0.0:9000",
                "the file overrides the default"
            );
            assert_eq!(config.log, "warn", "the environment overrides the file");
            assert_eq!(
                config.database_url, "sqlite://flag.db",
                "flags override everything"
            );
            assert_eq!(
                config.metrics_listen, "127.0.0.1:9464",
                "untouched values keep their default"
            );
            assert!(
                warnings.iter().any(|w| w.contains("HUILIU_DATABSE_URL")),
                "{warnings:?}"
            );
            Ok(())
        });
    }
}
