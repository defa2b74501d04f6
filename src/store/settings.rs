//! The store's settings.

use crate::setting_id as id;
use crate::settings::{Check, ConfigError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Execution store")]
pub struct StoreArgs {
    /// Execution store for the web UI: sqlite (in the data directory), sqlite:PATH, a postgres:// URL (shared by replicas), or off.
    #[arg(long, env = "STEPSTITCH_STORE", default_value = "sqlite")]
    pub store: String,
    /// How long stored executions are kept (by start time).
    #[arg(long, env = "STEPSTITCH_STORE_RETENTION", default_value = "14d")]
    pub store_retention: String,
    /// Disk the store may use; past it the oldest executions are deleted.
    #[arg(long, env = "STEPSTITCH_STORE_MAX_BYTES", default_value = "4GiB")]
    pub store_max_bytes: String,
    /// How often retention and the size bound are enforced.
    #[arg(long, env = "STEPSTITCH_STORE_PRUNE_INTERVAL", default_value = "1m")]
    pub store_prune_interval: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Off,
    /// `None`: `{data dir}/store.sqlite`.
    Sqlite(Option<PathBuf>),
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL, checked; it may hold a password, so it never prints.
#[derive(Clone, PartialEq)]
pub struct PostgresUrl(pub String);

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresUrl(..)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    pub backend: Backend,
    pub retention: Duration,
    pub max_bytes: u64,
    pub prune_interval: Duration,
}

impl StoreArgs {
    pub fn validate(self) -> Result<StoreSettings, ConfigError> {
        type C = Check<StoreArgs>;
        let v = self.store.trim();
        let backend = match v {
            "off" | "none" => Backend::Off,
            "sqlite" => Backend::Sqlite(None),
            _ if v.starts_with("sqlite:") && v.len() > 7 => {
                Backend::Sqlite(Some(PathBuf::from(&v[7..])))
            }
            _ if v.starts_with("postgres://") || v.starts_with("postgresql://") => {
                match crate::store::postgres::Target::parse(v) {
                    Ok(_) => Backend::Postgres(PostgresUrl(v.to_owned())),
                    Err(problem) => {
                        return Err(C::error(
                            id!(store),
                            "(a PostgreSQL URL, not repeated: it may hold a password)",
                            problem,
                            "postgres://stepstitch@db.internal:5432/stepstitch?sslmode=require",
                        ))
                    }
                }
            }
            _ => {
                return Err(C::error(
                    id!(store),
                    v,
                    "must be sqlite, sqlite:PATH, a postgres:// URL or off",
                    "sqlite",
                ))
            }
        };
        Ok(StoreSettings {
            backend,
            retention: C::positive_duration(id!(store_retention), &self.store_retention, "14d")?,
            max_bytes: C::size_at_least(
                id!(store_max_bytes),
                &self.store_max_bytes,
                1 << 20,
                "must be at least 1MiB",
                "4GiB",
            )? as u64,
            prune_interval: C::positive_duration(
                id!(store_prune_interval),
                &self.store_prune_interval,
                "1m",
            )?,
        })
    }
}
