//! The JetStream resources cluster mode uses, created on first start and
//! checked on every start: the events stream (a subject per partition,
//! file storage, de-duplication by `Nats-Msg-Id`), two KV buckets whose
//! entries expire unless renewed (replicas' heartbeats and partition
//! leases), the acknowledgements stream (what each partition's exporters
//! delivered since its checkpoint), a KV bucket of join hints, and the
//! object store of partition checkpoints.

use async_nats::jetstream::{self, kv, object_store, stream};
use std::collections::HashMap;
use std::time::Duration;

/// The stream's metadata key for its partition count (fixed at creation).
const PARTITIONS_KEY: &str = "stepstitch.partitions";

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `nats://host:4222`, comma-separated seeds.
    pub urls: String,
    /// Names of the stream and buckets, and the subjects' prefix.
    pub name: String,
    pub partitions: u32,
    /// JetStream replicas of the stream and buckets (1 for a single server).
    pub replicas: usize,
    /// How long a lease or heartbeat lives without renewal.
    pub lease_ttl: Duration,
    /// How long JetStream remembers message ids (Firehose retries inside
    /// it are stored once; later ones are caught by the stitcher's own
    /// duplicate check while it holds the execution).
    pub duplicate_window: Duration,
    pub node: String,
}

impl ClusterConfig {
    pub fn subjects_prefix(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// The acknowledgements stream's name.
    pub fn acks_stream(&self) -> String {
        format!("{}-ACKS", self.name)
    }

    /// The acknowledgements subject of a partition.
    pub fn acks_subject(&self, partition: u32) -> String {
        format!("{}.acks.{partition}", self.subjects_prefix())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {urls}: {error}")]
    Connect { urls: String, error: String },
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("the stream {stream} was created with {existing} partitions; this replica is set to {configured} (the count is fixed when the stream is created: docs/cluster.md)")]
    Partitions {
        stream: String,
        existing: String,
        configured: u32,
    },
}

pub fn js_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::JetStream(e.to_string())
}

/// A connection with its stream and buckets in place.
#[derive(Clone)]
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub leases: kv::Store,
    pub members: kv::Store,
    /// Join hints (child execution or map run → the parent's context).
    pub joins: kv::Store,
    pub checkpoints: object_store::ObjectStore,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("cfg", &self.cfg).finish()
    }
}

impl Cluster {
    pub async fn connect(cfg: ClusterConfig) -> Result<Cluster, ClusterError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("stepstitch-{}", cfg.node))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(cfg.urls.as_str())
            .await
            .map_err(|e| ClusterError::Connect {
                urls: cfg.urls.clone(),
                error: e.to_string(),
            })?;
        // The client keeps trying in the background; a server that does
        // not answer within the connection timeout is an error to report.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while client.connection_state() != async_nats::connection::State::Connected {
            if std::time::Instant::now() > deadline {
                return Err(ClusterError::Connect {
                    urls: cfg.urls.clone(),
                    error: "no server answered within 5 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let js = jetstream::new(client.clone());
        let prefix = cfg.subjects_prefix();
        let mut metadata = HashMap::new();
        metadata.insert(PARTITIONS_KEY.to_owned(), cfg.partitions.to_string());
        let mut s = js
            .get_or_create_stream(stream::Config {
                name: cfg.name.clone(),
                subjects: vec![format!("{prefix}.p.*")],
                storage: stream::StorageType::File,
                num_replicas: cfg.replicas,
                duplicate_window: cfg.duplicate_window,
                metadata,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                ClusterError::JetStream(format!(
                    "{e} (is JetStream enabled on the server: `-js`, or `jetstream {{}}` in its configuration?)"
                ))
            })?;
        let info = s.info().await.map_err(js_error)?;
        let existing = info
            .config
            .metadata
            .get(PARTITIONS_KEY)
            .cloned()
            .unwrap_or_default();
        if existing != cfg.partitions.to_string() {
            return Err(ClusterError::Partitions {
                stream: cfg.name.clone(),
                existing,
                configured: cfg.partitions,
            });
        }
        if info.config.duplicate_window != cfg.duplicate_window {
            // The setting changed since the stream was created.
            let mut updated = info.config.clone();
            updated.duplicate_window = cfg.duplicate_window;
            js.update_stream(updated).await.map_err(js_error)?;
            tracing::info!(window = ?cfg.duplicate_window, "stream duplicate window updated");
        }
        let bucket = |suffix: &str| kv::Config {
            bucket: format!("{}-{suffix}", cfg.name),
            history: 1,
            max_age: cfg.lease_ttl,
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        };
        let leases = js
            .create_or_update_key_value(bucket("leases"))
            .await
            .map_err(js_error)?;
        let members = js
            .create_or_update_key_value(bucket("members"))
            .await
            .map_err(js_error)?;
        js.get_or_create_stream(stream::Config {
            name: cfg.acks_stream(),
            subjects: vec![format!("{prefix}.acks.*")],
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        })
        .await
        .map_err(js_error)?;
        // Hints live as long as a parent may wait for its children (a day).
        let joins = js
            .create_or_update_key_value(kv::Config {
                bucket: format!("{}-joins", cfg.name),
                history: 1,
                max_age: Duration::from_secs(24 * 3600),
                storage: stream::StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(js_error)?;
        let name = format!("{}-checkpoints", cfg.name);
        let checkpoints = match js.get_object_store(&name).await {
            Ok(s) => s,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: name,
                    num_replicas: cfg.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(js_error)?,
        };
        Ok(Cluster {
            cfg,
            client,
            js,
            leases,
            members,
            joins,
            checkpoints,
        })
    }
}
