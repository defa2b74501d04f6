//! Stage 4: spans out. This build has the vendor-neutral `jsonl` exporter;
//! the Datadog exporters are their own work item.

pub mod jsonl;

pub use jsonl::spawn_jsonl_exporter;
