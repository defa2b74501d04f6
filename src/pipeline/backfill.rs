//! Backfill requests (`stepstitch backfill --target`, marked by the common
//! attribute `stepstitch.backfill`) must add nothing for an execution the
//! store already holds as ended: a second run, or one over executions
//! live delivery brought first. Their events are dropped (counted) before
//! the stitcher; live requests never go through this. Without a store
//! there is nothing to ask: the stitcher's own duplicate check (events it
//! still holds) is all there is (docs/aws.md).

use crate::events::{Event, StreamParams};
use crate::store::{Status, Store};
use crate::telemetry::names;
use std::collections::HashMap;

/// The common attribute the backfill sets on its requests.
pub const MARK: &str = "stepstitch.backfill";

pub fn is_backfill(params: &StreamParams) -> bool {
    params.get(MARK).is_some()
}

/// Drops the events of executions `stored` says have ended with at least
/// the redrive count the events carry; returns how many went. `stored`
/// answers an execution's stored redrive count when it has ended, `None`
/// when it is not stored or still running (a store error counts as not
/// stored: a duplicate is better than a loss).
pub fn drop_known(events: &mut Vec<Event>, mut stored: impl FnMut(&str) -> Option<u32>) -> usize {
    let mut newest: HashMap<&str, u32> = HashMap::new();
    for e in events.iter() {
        let n = newest.entry(&e.execution_arn).or_default();
        *n = (*n).max(e.redrive_count);
    }
    let known: Vec<String> = newest
        .into_iter()
        .filter(|(arn, redrives)| stored(arn).is_some_and(|s| s >= *redrives))
        .map(|(arn, _)| arn.to_owned())
        .collect();
    if known.is_empty() {
        return 0;
    }
    let before = events.len();
    events.retain(|e| !known.iter().any(|k| **k == *e.execution_arn));
    before - events.len()
}

/// `drop_known` against a store, counted.
pub fn drop_stored(events: &mut Vec<Event>, store: &dyn Store) -> usize {
    let n = drop_known(events, |arn| match store.execution(arn) {
        Ok(Some(s)) if !matches!(s.status, Status::Running) => Some(s.redrive_count),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "backfill: store unreadable, events kept");
            None
        }
    });
    metrics::counter!(names::BACKFILL_SKIPPED_EVENTS).increment(n as u64);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(spec: &[(&str, u32)]) -> Vec<Event> {
        let mut cache = crate::events::StringCache::default();
        spec.iter()
            .enumerate()
            .map(|(i, (arn, redrive))| {
                let line = format!(
                    r#"{{"details":{{}},"redrive_count":"{redrive}","id":"{}","type":"PassStateExited","previous_event_id":"0","event_timestamp":"1","execution_arn":"arn:aws:states:us-east-1:1:execution:Sm:{arn}"}}"#,
                    i + 1
                );
                crate::events::parse_log_line(&line, &mut cache).unwrap()
            })
            .collect()
    }

    #[test]
    fn stored_and_ended_executions_are_dropped_others_kept() {
        let mut ev = events(&[("a", 0), ("b", 0), ("a", 0), ("c", 1), ("d", 0)]);
        let stored = |arn: &str| match arn.rsplit(':').next() {
            Some("a") => Some(0),
            // Stored before its redrive: the redrive's events are new.
            Some("c") => Some(0),
            Some("d") => Some(2),
            _ => None,
        };
        assert_eq!(drop_known(&mut ev, stored), 3);
        let left: Vec<&str> = ev
            .iter()
            .map(|e| e.execution_arn.rsplit(':').next().unwrap())
            .collect();
        assert_eq!(left, ["b", "c"]);
        assert_eq!(drop_known(&mut ev, |_| None), 0);
    }
}
