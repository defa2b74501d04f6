//! Cluster mode on NATS JetStream (issue 20; docs/cluster.md) — the parts
//! built so far, not yet wired into `serve`:
//!
//! - `partition`: the stable partition of an execution, subjects and
//!   message ids (pure);
//! - `assign`: which live replica should own which partition (pure,
//!   rendezvous hashing);
//! - `nats`: the stream and KV buckets, created and checked;
//! - `publish`: a request's events stored per partition, acknowledged;
//! - `lease`: leases with compare-and-set, heartbeats, and the
//!   `Coordinator` that keeps this replica's share;
//! - `runner`: an owned partition's stitcher core, fed in stream order
//!   from its checkpoint, and the checkpoints (object store).
//!
//! Still to come: the per-partition export ledger (no repeats after a
//! failover), cross-partition join hints, the Firehose handler's cluster
//! path and the replica's loop tying coordinator, runners and exporters
//! together, settings, metrics and deploy.

pub mod acks;
pub mod assign;
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
