//! The AWS side (docs/aws.md): a Step Functions client on the standard
//! credential chain (`client`), our call budget (`budget`), errors a person
//! can act on (`errors`), the actions retry, redrive and stop (`actions`),
//! the names and tokens that make them idempotent (`names`), and the
//! definitions cache for the map (`definitions`). The UI API and the
//! backfill command use it; nothing here knows about HTTP routes or stores.

pub mod actions;
pub mod budget;
pub mod client;
pub mod definitions;
pub mod errors;
pub mod names;
pub mod settings;

pub use actions::{Action, Outcome, Request};
pub use client::{ClientError, DefinitionInfo, ExecutionInfo, Sfn};
pub use errors::{AwsError, Call};
pub use settings::{AwsArgs, AwsMode, AwsSettings};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer to an action is replayed to the same request.
const REPLAY_FOR: Duration = Duration::from_secs(600);
/// Without a request id, a repeat within this time is taken as a double click.
const DOUBLE_CLICK: Duration = Duration::from_secs(10);
const REPLAY_MAX: usize = 4096;

type Key = (Action, String, String);
/// An answer and when it was given.
type Answered = (Instant, Result<Outcome, AwsError>);

/// What the service may do in AWS, and what it has done lately.
#[derive(Debug)]
pub struct Aws {
    pub mode: AwsMode,
    pub sfn: Sfn,
    pub definitions: definitions::Definitions,
    recent: Mutex<HashMap<Key, Answered>>,
}

impl Aws {
    /// `None` when AWS calls are off.
    pub async fn from_settings(s: &AwsSettings) -> Result<Option<Arc<Aws>>, ClientError> {
        if s.mode == AwsMode::Off {
            return Ok(None);
        }
        let sfn = Sfn::from_env(s.calls_per_second).await?;
        Ok(Some(Arc::new(Aws {
            mode: s.mode,
            sfn,
            definitions: definitions::Definitions::default(),
            recent: Mutex::new(HashMap::new()),
        })))
    }

    /// Runs an action once per request: a repeat of the same request (the
    /// same id, or none within a few seconds) gets the first answer again
    /// (`true`: replayed, AWS was not asked).
    pub async fn act(
        &self,
        action: Action,
        arn: &str,
        mut req: Request,
    ) -> (Result<Outcome, AwsError>, bool) {
        if self.mode < AwsMode::Actions {
            let off = AwsError::Off {
                call: action.name(),
                needed: "actions",
            };
            return (Err(off), false);
        }
        let now = Instant::now();
        let anonymous = req.request_id.is_empty();
        let key = (action, arn.to_owned(), req.request_id.clone());
        let window = if anonymous { DOUBLE_CLICK } else { REPLAY_FOR };
        if let Some((at, answer)) = self.recent.lock().unwrap().get(&key) {
            if now.duration_since(*at) < window {
                return (answer.clone(), true);
            }
        }
        if anonymous {
            // The retry's name still has to be stable within the window.
            req.request_id = format!(
                "t{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
                    / DOUBLE_CLICK.as_secs()
            );
        }
        let answer = actions::run(&self.sfn, action, arn, &req).await;
        // Transient failures are not replayed: trying again should try.
        let transient = matches!(
            answer,
            Err(AwsError::Throttled { .. } | AwsError::Budget(_) | AwsError::Unavailable(_))
        );
        if !transient {
            let mut recent = self.recent.lock().unwrap();
            if recent.len() >= REPLAY_MAX {
                recent.retain(|_, (at, _)| now.duration_since(*at) < REPLAY_FOR);
            }
            if recent.len() < REPLAY_MAX {
                recent.insert(key, (now, answer.clone()));
            }
        }
        (answer, false)
    }
}
