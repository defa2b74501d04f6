//! Cluster mode's settings (docs/cluster.md). `STEPSTITCH_CLUSTER_NATS_URL`
//! turns it on; without it the single-process mode with the local
//! write-ahead log is unchanged.

use super::nats::ClusterConfig;
use crate::setting_id as id;
use crate::settings::{non_empty, Check, ConfigError};
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Cluster mode (NATS JetStream)")]
pub struct ClusterArgs {
    /// NATS servers (`nats://host:4222`, comma-separated seeds); set, it turns cluster mode on.
    #[arg(long, env = "STEPSTITCH_CLUSTER_NATS_URL")]
    pub cluster_nats_url: Option<String>,
    /// Partitions executions are spread over (fixed when the stream is first created).
    #[arg(long, env = "STEPSTITCH_CLUSTER_PARTITIONS", default_value = "16")]
    pub cluster_partitions: String,
    /// This replica's name in the cluster (default: the host name, which is the pod name on Kubernetes).
    #[arg(long, env = "STEPSTITCH_NODE_ID")]
    pub node_id: Option<String>,
    /// The JetStream stream's name (its buckets and subjects are named after it).
    #[arg(long, env = "STEPSTITCH_CLUSTER_STREAM", default_value = "STEPSTITCH")]
    pub cluster_stream: String,
    /// Copies JetStream keeps of the stream and buckets (1 for a single server, 3 for a 3-node NATS).
    #[arg(long, env = "STEPSTITCH_CLUSTER_REPLICAS", default_value = "1")]
    pub cluster_replicas: String,
    /// How long a replica's partitions stay its own without renewal (failover takes about this long).
    #[arg(long, env = "STEPSTITCH_CLUSTER_LEASE_TTL", default_value = "10s")]
    pub cluster_lease_ttl: String,
    /// How often an owned partition's state is checkpointed (what a new owner replays is at most this much).
    #[arg(
        long,
        env = "STEPSTITCH_CLUSTER_CHECKPOINT_INTERVAL",
        default_value = "10s"
    )]
    pub cluster_checkpoint_interval: String,
    /// How long JetStream remembers request ids: a Firehose retry within it is stored once (set it to the stream's retry duration).
    #[arg(
        long,
        env = "STEPSTITCH_CLUSTER_DUPLICATE_WINDOW",
        default_value = "2h"
    )]
    pub cluster_duplicate_window: String,
}

/// Cluster mode, on.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub config: ClusterConfig,
    pub checkpoint_interval: Duration,
}

fn host_name() -> Option<String> {
    non_empty(std::env::var("HOSTNAME").ok()).or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
}

impl ClusterArgs {
    /// `None` when cluster mode is off.
    pub fn validate(self) -> Result<Option<ClusterSettings>, ConfigError> {
        type C = Check<ClusterArgs>;
        let Some(urls) = non_empty(self.cluster_nats_url.clone()) else {
            return Ok(None);
        };
        for u in urls.split(',').map(str::trim) {
            let ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|s| u.starts_with(s) && u.len() > s.len());
            if !ok {
                return Err(C::error(
                    id!(cluster_nats_url),
                    &urls,
                    format!("{u:?} is not a NATS URL (nats://, tls://, ws:// or wss://)"),
                    "nats://nats:4222",
                ));
            }
        }
        let partitions = C::count(id!(cluster_partitions), &self.cluster_partitions, "16")?;
        if partitions > 4096 {
            return Err(C::error(
                id!(cluster_partitions),
                &self.cluster_partitions,
                "at most 4096",
                "16",
            ));
        }
        let replicas = C::count(id!(cluster_replicas), &self.cluster_replicas, "3")?;
        if replicas > 5 {
            return Err(C::error(
                id!(cluster_replicas),
                &self.cluster_replicas,
                "JetStream keeps at most 5 copies",
                "3",
            ));
        }
        let name = self.cluster_stream.trim().to_owned();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(C::error(
                id!(cluster_stream),
                &self.cluster_stream,
                "letters, digits, '-' and '_' only",
                "STEPSTITCH",
            ));
        }
        let lease_ttl =
            C::positive_duration(id!(cluster_lease_ttl), &self.cluster_lease_ttl, "10s")?;
        if lease_ttl < Duration::from_secs(1) {
            return Err(C::error(
                id!(cluster_lease_ttl),
                &self.cluster_lease_ttl,
                "at least 1s (leases are renewed every third of it)",
                "10s",
            ));
        }
        let checkpoint_interval = C::positive_duration(
            id!(cluster_checkpoint_interval),
            &self.cluster_checkpoint_interval,
            "10s",
        )?;
        let duplicate_window = C::positive_duration(
            id!(cluster_duplicate_window),
            &self.cluster_duplicate_window,
            "2h",
        )?;
        let node = match non_empty(self.node_id.clone()).or_else(host_name) {
            Some(n) => n,
            None => {
                return Err(C::error(
                    id!(node_id),
                    "",
                    "no host name to default to: set it",
                    "stepstitch-0",
                ))
            }
        };
        // A KV key: no dots, spaces or wildcards.
        if !node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='))
        {
            return Err(C::error(
                id!(node_id),
                &node,
                "letters, digits, '-', '_' and '=' only",
                "stepstitch-0",
            ));
        }
        Ok(Some(ClusterSettings {
            config: ClusterConfig {
                urls,
                name,
                partitions: partitions as u32,
                replicas,
                lease_ttl,
                duplicate_window,
                node,
            },
            checkpoint_interval,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>) -> ClusterArgs {
        ClusterArgs {
            cluster_nats_url: url.map(Into::into),
            cluster_partitions: "16".into(),
            node_id: Some("replica-1".into()),
            cluster_stream: "STEPSTITCH".into(),
            cluster_replicas: "1".into(),
            cluster_lease_ttl: "10s".into(),
            cluster_checkpoint_interval: "10s".into(),
            cluster_duplicate_window: "2h".into(),
        }
    }

    #[test]
    fn off_without_a_url_on_with_one() {
        assert!(args(None).validate().unwrap().is_none());
        assert!(args(Some(" ")).validate().unwrap().is_none());
        let s = args(Some("nats://a:4222,nats://b:4222"))
            .validate()
            .unwrap()
            .unwrap();
        assert_eq!(s.config.partitions, 16);
        assert_eq!(s.config.node, "replica-1");
        assert_eq!(s.config.lease_ttl, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = args(Some("http://a")).validate().unwrap_err().to_string();
        assert!(e.contains("STEPSTITCH_CLUSTER_NATS_URL"), "{e}");
        let mut a = args(Some("nats://a:4222"));
        a.cluster_partitions = "0".into();
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("STEPSTITCH_CLUSTER_PARTITIONS"), "{e}");
        let mut a = args(Some("nats://a:4222"));
        a.node_id = Some("a.b".into());
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("STEPSTITCH_NODE_ID"), "{e}");
        let mut a = args(Some("nats://a:4222"));
        a.cluster_lease_ttl = "200ms".into();
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("STEPSTITCH_CLUSTER_LEASE_TTL"), "{e}");
    }
}
