//! The admin listener's settings.

use crate::setting_id as id;
use crate::settings::{Check, ConfigError};
use std::net::SocketAddr;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Admin")]
pub struct AdminArgs {
    /// Admin listener (`/health`, `/ready`, `/metrics`).
    #[arg(
        long,
        env = "STEPSTITCH_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: String,
}

impl AdminArgs {
    pub fn validate(self) -> Result<SocketAddr, ConfigError> {
        Check::<AdminArgs>::socket_addr(id!(admin_listen), &self.admin_listen, "127.0.0.1:9090")
    }
}
