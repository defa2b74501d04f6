//! Log output settings.

use super::LogFormat;
use crate::setting_id as id;
use crate::settings::{Check, ConfigError};

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Logs")]
pub struct LogArgs {
    /// Log format: json or text.
    #[arg(long, env = "STEPSTITCH_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// Log filter (tracing EnvFilter syntax), e.g. info or stepstitch=debug.
    #[arg(long, env = "STEPSTITCH_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

impl LogArgs {
    pub fn validate(self) -> Result<LogSettings, ConfigError> {
        type C = Check<LogArgs>;
        let format = match C::one_of(id!(log_format), &self.log_format, &["json", "text"], "json")?
        {
            0 => LogFormat::Json,
            _ => LogFormat::Text,
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(C::error(
                id!(log),
                &self.log,
                format!("not a log filter ({e})"),
                "info,stepstitch=debug",
            ));
        }
        Ok(LogSettings {
            format,
            filter: self.log,
        })
    }
}
