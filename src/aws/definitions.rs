//! Definitions for the map, fetched at most once per execution and kept
//! by state machine ARN + revision (the describe calls' throttling quotas
//! are low and shared with the whole account). A failure is remembered
//! for a minute so a denied role is not asked again on every page view.

use super::client::{DefinitionInfo, Sfn};
use super::errors::AwsError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAILURE_FOR: Duration = Duration::from_secs(60);
/// A state machine's current definition (its map page) is asked again
/// after this long: it may have been updated.
const CURRENT_FOR: Duration = Duration::from_secs(600);
const EXECUTIONS_MAX: usize = 20_000;

type Revision = (String, String);
/// A fetch's answer kept, or its failure and when it happened.
type Known = Result<Revision, (Instant, AwsError)>;
/// When a state machine's definition was asked, and the answer.
type Asked = (Instant, Result<Arc<DefinitionInfo>, AwsError>);

#[derive(Debug, Default)]
pub struct Definitions {
    /// Execution ARN → the revision it ran, or the failure and its time.
    by_execution: Mutex<HashMap<String, Known>>,
    by_revision: Mutex<HashMap<Revision, Arc<DefinitionInfo>>>,
    /// State machine ARN → its current definition, and when it was asked.
    current: Mutex<HashMap<String, Asked>>,
}

impl Definitions {
    /// The definition `execution_arn` ran.
    pub async fn for_execution(
        &self,
        sfn: &Sfn,
        execution_arn: &str,
    ) -> Result<Arc<DefinitionInfo>, AwsError> {
        let known = self
            .by_execution
            .lock()
            .unwrap()
            .get(execution_arn)
            .cloned();
        match known {
            Some(Ok(rev)) => {
                if let Some(d) = self.by_revision.lock().unwrap().get(&rev) {
                    return Ok(d.clone());
                }
            }
            Some(Err((at, e))) if at.elapsed() < FAILURE_FOR => return Err(e),
            _ => {}
        }
        let fetched = sfn.definition_for_execution(execution_arn).await;
        let mut by_execution = self.by_execution.lock().unwrap();
        if by_execution.len() >= EXECUTIONS_MAX {
            by_execution.clear();
        }
        match fetched {
            Ok(d) => {
                let rev = (d.state_machine_arn.clone(), d.revision.clone());
                by_execution.insert(execution_arn.to_owned(), Ok(rev.clone()));
                let d = Arc::new(d);
                self.by_revision
                    .lock()
                    .unwrap()
                    .entry(rev)
                    .or_insert_with(|| d.clone());
                Ok(d)
            }
            Err(e) => {
                by_execution.insert(execution_arn.to_owned(), Err((Instant::now(), e.clone())));
                Err(e)
            }
        }
    }

    /// A state machine's current definition, asked at most every 10 minutes.
    pub async fn current(
        &self,
        sfn: &Sfn,
        state_machine_arn: &str,
    ) -> Result<Arc<DefinitionInfo>, AwsError> {
        if let Some((at, r)) = self.current.lock().unwrap().get(state_machine_arn) {
            let fresh = match r {
                Ok(_) => at.elapsed() < CURRENT_FOR,
                Err(_) => at.elapsed() < FAILURE_FOR,
            };
            if fresh {
                return r.clone();
            }
        }
        let r = sfn.definition_of(state_machine_arn).await.map(Arc::new);
        let mut current = self.current.lock().unwrap();
        if current.len() >= EXECUTIONS_MAX {
            current.clear();
        }
        current.insert(state_machine_arn.to_owned(), (Instant::now(), r.clone()));
        r
    }
}
