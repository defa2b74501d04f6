//! The admin listener's settings: its address and the UI API's tokens.

use crate::setting_id as id;
use crate::settings::{list, non_empty, Check, ConfigError};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Admin and web UI")]
pub struct AdminArgs {
    /// Admin listener (`/health`, `/ready`, `/metrics`, the web UI and its API).
    #[arg(
        long,
        env = "STEPSTITCH_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: String,
    /// Bearer tokens for the UI API, comma-separated: mutating routes always need one, reads when the admin listener is not on loopback.
    #[arg(
        long,
        env = "STEPSTITCH_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<String>,
    /// File of API tokens, one per line (re-read when it changes).
    #[arg(long, env = "STEPSTITCH_API_TOKENS_FILE")]
    pub api_tokens_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub api_tokens: Vec<String>,
    pub api_tokens_file: Option<PathBuf>,
}

impl AdminArgs {
    pub fn validate(self) -> Result<AdminSettings, ConfigError> {
        Ok(AdminSettings {
            listen: Check::<AdminArgs>::socket_addr(
                id!(admin_listen),
                &self.admin_listen,
                "127.0.0.1:9090",
            )?,
            api_tokens: list(&self.api_tokens),
            api_tokens_file: non_empty(self.api_tokens_file).map(PathBuf::from),
        })
    }
}
