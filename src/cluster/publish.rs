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

/// A message's body at most: NATS refuses messages past the server's
/// `max_payload` (1 MiB by default), and one Firehose request's share of a
/// partition can be larger, so a group goes out in chunks of whole lines.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// What publishing a request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Messages stored (one per partition the request touched, more when
    /// a partition's share is past `CHUNK_BYTES`).
    pub messages: usize,
    /// Of those, how many JetStream already had (a retried request).
    pub duplicates: usize,
}

/// Events grouped by partition, each group as message bodies of at most
/// `limit` bytes (a single larger line goes alone): one event per line,
/// as a log line (`stitch::output::event_line`), in arrival order.
pub fn groups(events: &[Event], partitions: u32, limit: usize) -> BTreeMap<u32, Vec<String>> {
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for e in events {
        let line = event_line(e);
        let bodies = out
            .entry(partition_of(&e.execution_arn, partitions))
            .or_default();
        match bodies.last_mut() {
            Some(b) if b.len() + 1 + line.len() <= limit => {
                b.push('\n');
                b.push_str(&line);
            }
            _ => bodies.push(line),
        }
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
        for (p, bodies) in groups(events, self.cfg.partitions, CHUNK_BYTES) {
            for (k, body) in bodies.into_iter().enumerate() {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", message_id(request_id, p, k).as_str());
                headers.insert(PARAMS_HEADER, params_json.as_str());
                let ack = self
                    .js
                    .publish_with_headers(subject(&prefix, p), headers, body.into())
                    .await
                    .map_err(js_error)?;
                pending.push(ack);
            }
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
        // A small limit: groups split into several bodies, none past it.
        let g = groups(&events, 4, 600);
        assert!(g.values().any(|b| b.len() > 1));
        let mut back = Vec::new();
        for (p, body) in g.iter().flat_map(|(p, bs)| bs.iter().map(move |b| (p, b))) {
            assert!(body.len() <= 600 || !body.contains('\n'));
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
