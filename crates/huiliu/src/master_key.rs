//! The master key that seals the apps' WeChat secrets: from `HUILIU_MASTER_KEY`,
//! or from a key file, generated on first use. It is never stored in the database,
//! so a copy of the database alone does not reveal the secrets.

use crate::config::Config;
use anyhow::Context;
use huiliu_domain::secrets::MasterKey;
use std::io::Write;
use std::path::PathBuf;

/// Where the key file goes when none is configured.
pub fn default_path(database_url: &str) -> PathBuf {
    database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|path| PathBuf::from(format!("{}.key", path.split('?').next().unwrap_or(path))))
        .unwrap_or_else(|| PathBuf::from("huiliu.key"))
}

pub fn load(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(text) = &config.master_key {
        return MasterKey::parse(text)
            .map_err(|e| anyhow::anyhow!("master_key (HUILIU_MASTER_KEY): {e}"));
    }
    let path = config
        .master_key_file
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| default_path(&config.database_url));
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::parse(&text)
            .map_err(|e| anyhow::anyhow!("master key file {}: {e}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::from_bytes(rand::random());
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&path)
                .with_context(|| format!("creating the master key file {}", path.display()))?;
            writeln!(file, "{}", key.to_hex())?;
            tracing::warn!(
                path = %path.display(),
                "created a new master key file; keep it with the database: without it the stored WeChat secrets cannot be read"
            );
            Ok(key)
        }
        Err(error) => {
            Err(error).with_context(|| format!("reading the master key file {}", path.display()))
        }
    }
}
