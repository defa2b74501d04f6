//! Cluster mode on NATS JetStream (docs/cluster.md): many replicas behind
//! one Firehose stream.
//!
//! - `partition`: the stable partition of an execution, subjects and
//!   message ids (pure);
//! - `assign`: which live replica should own which partition (pure,
//!   rendezvous hashing);
//! - `nats`: the stream, KV buckets and object store, created and checked;
//! - `publish`: a request's events stored per partition, acknowledged;
//! - `lease`: leases with compare-and-set, heartbeats, and the
//!   `Coordinator` that keeps this replica's share;
//! - `runner`: an owned partition's stitcher core, fed in stream order
//!   from its checkpoint, and the checkpoints (object store);
//! - `acks`, `journal`: the per-partition export ledger on JetStream, and
//!   the local journal that covers a killed process's last records;
//! - `replica`: the loop tying coordinator, runners and exporters;
//! - `settings`: the `STEPSTITCH_CLUSTER_*` settings.

pub mod acks;
pub mod assign;
pub mod journal;
pub mod lease;
pub mod nats;
pub mod partition;
pub mod publish;
pub mod replica;
pub mod runner;
pub mod settings;

pub use lease::{Change, Coordinator};
pub use nats::{Cluster, ClusterConfig, ClusterError};
pub use publish::Published;
pub use settings::{ClusterArgs, ClusterSettings};
