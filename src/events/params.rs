//! A delivery stream's parameters (Firehose "common attributes"): `service`,
//! `env`, `version`, `DD_*` switches and free tags for the executions it
//! carries. The domain type the stitcher reads; the endpoint parses the
//! header into it (`firehose::attributes`), recovery reads it back from the
//! log. Keys that name facts derived from the events themselves (region,
//! account, ARNs, `step_function.*`) are not usable as tags: a stream
//! parameter must not contradict what AWS logged.

use std::collections::BTreeMap;

/// Keys whose values come from the events and cannot be overridden.
const RESERVED: &[&str] = &[
    "region",
    "account_id",
    "aws_account",
    "execution_arn",
    "execution_name",
    "state_machine_arn",
    "state_machine_name",
    "statemachinearn",
    "statemachinename",
    "trace_type",
];

pub fn is_reserved(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    RESERVED.contains(&k.as_str())
        || k.starts_with("step_function.")
        || k.starts_with("aws.")
        // Our own switches (the backfill's mark), never tags.
        || k.starts_with("stepstitch.")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamParams {
    map: BTreeMap<String, String>,
}

impl StreamParams {
    /// From pairs already checked (the header parser, snapshots, the log).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            map: pairs.into_iter().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// A parameter by exact name (e.g. `service`, `env`, `DD_ENHANCED_METRICS`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Every pair, reserved keys included (snapshots, the log).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Parameters usable as static tags: everything but the reserved keys.
    pub fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map
            .iter()
            .filter(|(k, _)| !is_reserved(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
