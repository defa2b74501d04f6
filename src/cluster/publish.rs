//! Ingest in cluster mode: a Firehose request's events, grouped by
//! partition, each group stored as one JetStream message on its
//! partition's subject with a `Nats-Msg-Id` from the request id and the
//! partition. The request may be answered 200 only once every group is
//! acknowledged (PubAck): then it is stored on the stream's replicas.

use super::nats::{js_error, Cluster, ClusterError};
use super::partition::{message_id, partition_of, subject};
use crate::events::{Event, StreamParams};
use crate::stitch::output::event_line;
use std::collections::BTreeMap;

/// The header carrying the stream's parameters (JSON pairs).
pub const PARAMS_HEADER: &str = "Stepstitch-Params";

/// What publishing a request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Messages stored (one per partition the request touched).
    pub messages: usize,
    /// Of those, how many JetStream already had (a retried request).
    pub duplicates: usize,
}

/// Events grouped by partition, each group as the message body: one
/// event per line, as a log line (`stitch::output::event_line`).
pub fn groups(events: &[Event], partitions: u32) -> BTreeMap<u32, String> {
    let mut out: BTreeMap<u32, String> = BTreeMap::new();
    for e in events {
        let body = out
            .entry(partition_of(&e.execution_arn, partitions))
            .or_default();
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&event_line(e));
    }
    out
}

impl Cluster {
    pub async fn publish(
        &self,
        request_id: &str,
        params: &StreamParams,
        events: &[Event],
    ) -> Result<Published, ClusterError> {
        let prefix = self.cfg.subjects_prefix();
        let params_json = serde_json::to_string(&params.pairs().collect::<Vec<_>>())
            .map_err(|e| ClusterError::JetStream(e.to_string()))?;
        let mut pending = Vec::new();
        for (p, body) in groups(events, self.cfg.partitions) {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", message_id(request_id, p).as_str());
            headers.insert(PARAMS_HEADER, params_json.as_str());
            let ack = self
                .js
                .publish_with_headers(subject(&prefix, p), headers, body.into())
                .await
                .map_err(js_error)?;
            pending.push(ack);
        }
        // All sent before waiting: the acknowledgements come back together.
        let mut done = Published::default();
        for ack in pending {
            let a = ack.await.map_err(js_error)?;
            done.messages += 1;
            done.duplicates += usize::from(a.duplicate);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{parse_log_line, StringCache};

    #[test]
    fn groups_hold_every_event_once_as_lines_that_read_back() {
        let mut cache = StringCache::default();
        let events: Vec<Event> = (0..40)
            .map(|i| {
                let line = format!(
                    r#"{{"details":{{}},"redrive_count":"0","id":"{}","type":"PassStateExited","previous_event_id":"0","event_timestamp":"1","execution_arn":"arn:aws:states:us-east-1:1:execution:Sm:e{}"}}"#,
                    i % 5 + 1,
                    i / 5
                );
                parse_log_line(&line, &mut cache).unwrap()
            })
            .collect();
        let g = groups(&events, 4);
        let mut back = Vec::new();
        for (p, body) in &g {
            for line in body.lines() {
                let e = parse_log_line(line, &mut cache).unwrap();
                assert_eq!(partition_of(&e.execution_arn, 4), *p);
                back.push(e);
            }
        }
        assert_eq!(back.len(), events.len());
        for e in &events {
            assert!(back.contains(e));
        }
    }
}
