//! Enhanced-metric tag sets, built once per state machine (and per state)
//! and shared by every execution's samples.
//!
//! An execution's metric tags depend only on its state machine and its
//! span settings, a state's only on those plus the state's name and type.
//! Formatting, sorting and allocating them per execution and per state was
//! ~7 % of the stitcher's thread, and a fresh `Arc` per state also cost the
//! metric aggregator a content hash per state; shared sets cost a lookup
//! here and let the aggregator intern them by address.

use crate::hashing::FastMap;
use std::fmt::Write;
use std::sync::Arc;

/// Sets kept before the cache starts over: far more than the state machines
/// and states of one account, small enough never to matter for memory (a
/// set is ~10 short strings).
pub const MAX_SETS: usize = 65_536;

pub type TagSet = Arc<[String]>;

/// One stitcher shard's cache. Keys are written into a reused buffer, so a
/// hit allocates nothing.
#[derive(Debug, Default)]
pub struct TagSets {
    /// Keyed by everything the base set is made of (`BaseParts`).
    base: FastMap<Box<str>, Entry>,
    sets: usize,
    key: String,
}

#[derive(Debug)]
struct Entry {
    set: TagSet,
    /// Keyed by state name and type.
    states: FastMap<Box<str>, TagSet>,
}

/// What an execution's base set is made of (see `signals::base_tags`).
pub struct BaseParts<'a> {
    /// The execution ARN's parts, when it parses (the execution's own name
    /// is not among the tags).
    pub arn: Option<&'a crate::events::ExecutionArn<'a>>,
    pub service: &'a str,
    pub env: Option<&'a str>,
    pub version: Option<&'a str>,
    pub tags: &'a [(String, String)],
}

/// One execution's sets.
pub struct ExecTags<'a> {
    entry: &'a mut Entry,
    sets: &'a mut usize,
    key: &'a mut String,
}

impl TagSets {
    /// The execution's sets; `build` makes the base set on a miss.
    pub fn execution(
        &mut self,
        parts: &BaseParts<'_>,
        build: impl FnOnce() -> Vec<String>,
    ) -> ExecTags<'_> {
        self.key.clear();
        // Each part length-prefixed ("-" when unset): no two different
        // settings write the same key, whatever bytes they hold.
        let key = &mut self.key;
        let mut part = |s: Option<&str>| {
            let _ = match s {
                Some(s) => write!(key, "{}:{s}", s.len()),
                None => write!(key, "-"),
            };
        };
        let arn = parts.arn;
        part(arn.map(|a| a.partition));
        part(arn.map(|a| a.region));
        part(arn.map(|a| a.account_id));
        part(arn.map(|a| a.state_machine_name));
        part(Some(parts.service));
        part(parts.env);
        part(parts.version);
        for (k, v) in parts.tags {
            part(Some(k));
            part(Some(v));
        }
        if !self.base.contains_key(self.key.as_str()) {
            if self.sets >= MAX_SETS {
                self.base.clear();
                self.sets = 0;
            }
            let set: TagSet = build().into();
            self.sets += 1;
            let states = FastMap::default();
            self.base
                .insert(self.key.as_str().into(), Entry { set, states });
        }
        let Self { base, sets, key } = self;
        let entry = base
            .get_mut(key.as_str())
            .expect("inserted above when missing");
        ExecTags { entry, sets, key }
    }

    /// Sets held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sets
    }
}

impl ExecTags<'_> {
    /// The execution's tags, sorted.
    pub fn base(&self) -> &TagSet {
        &self.entry.set
    }

    /// The base tags plus `statename:` and `statetype:`, sorted.
    pub fn state(&mut self, name: &str, state_type: &str) -> TagSet {
        self.key.clear();
        let _ = write!(self.key, "{}:{name}{state_type}", name.len());
        if let Some(t) = self.entry.states.get(self.key.as_str()) {
            return t.clone();
        }
        let base = &self.entry.set;
        let mut v = Vec::with_capacity(base.len() + 2);
        v.extend_from_slice(base);
        v.push(format!("statename:{name}"));
        v.push(format!("statetype:{state_type}"));
        v.sort();
        let t: TagSet = v.into();
        // Past the bound (only reachable with tens of thousands of states)
        // sets are made per use rather than evicting under a borrow.
        if *self.sets < MAX_SETS {
            *self.sets += 1;
            self.entry
                .states
                .insert(self.key.as_str().into(), t.clone());
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ExecutionArn;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1";

    fn parts<'a>(arn: &'a ExecutionArn<'a>, service: &'a str) -> BaseParts<'a> {
        BaseParts {
            arn: Some(arn),
            service,
            env: Some("prod"),
            version: None,
            tags: &[],
        }
    }

    #[test]
    fn sets_are_built_once_and_shared() {
        let arn = ExecutionArn::parse(ARN).unwrap();
        let other_run = ARN.replace("run-1", "run-2");
        let other_run = ExecutionArn::parse(&other_run).unwrap();
        let mut sets = TagSets::default();
        let mut builds = 0;
        let mut build = || {
            builds += 1;
            vec!["a:1".to_string(), "service:orders".to_string()]
        };
        let (first, s1) = {
            let mut e = sets.execution(&parts(&arn, "orders"), &mut build);
            let s = e.state("Charge", "Task");
            (e.base().clone(), s)
        };
        let mut e = sets.execution(&parts(&other_run, "orders"), &mut build);
        assert!(
            Arc::ptr_eq(e.base(), &first),
            "same state machine, other execution"
        );
        let s2 = e.state("Charge", "Task");
        assert!(Arc::ptr_eq(&s1, &s2));
        assert_eq!(
            &*s1,
            [
                "a:1",
                "service:orders",
                "statename:Charge",
                "statetype:Task"
            ]
        );
        let s3 = e.state("Charge", "Pass");
        assert!(!Arc::ptr_eq(&s1, &s3));
        assert_eq!(builds, 1);
        assert_eq!(sets.len(), 3);
    }

    #[test]
    fn every_part_of_the_key_tells_sets_apart() {
        let arn = ExecutionArn::parse(ARN).unwrap();
        let (other_sm, other_region) = (
            ARN.replace("orders", "refunds"),
            ARN.replace("us-east-1", "eu-west-1"),
        );
        let other_sm = ExecutionArn::parse(&other_sm).unwrap();
        let other_region = ExecutionArn::parse(&other_region).unwrap();
        let tags = [("team".to_string(), "a".to_string())];
        let variants = [
            parts(&arn, "orders"),
            parts(&other_sm, "orders"),
            parts(&other_region, "orders"),
            parts(&arn, "billing"),
            BaseParts {
                env: None,
                ..parts(&arn, "orders")
            },
            BaseParts {
                env: Some("\x02"),
                ..parts(&arn, "orders")
            },
            BaseParts {
                version: Some("1"),
                ..parts(&arn, "orders")
            },
            BaseParts {
                tags: &tags,
                ..parts(&arn, "orders")
            },
            BaseParts {
                arn: None,
                ..parts(&arn, "orders")
            },
        ];
        let mut sets = TagSets::default();
        let mut n = 0;
        for p in &variants {
            sets.execution(p, || {
                n += 1;
                vec![n.to_string()]
            });
        }
        assert_eq!(n, variants.len());
        assert_eq!(sets.len(), variants.len());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut sets = TagSets::default();
        let names: Vec<String> = (0..MAX_SETS + 10).map(|i| format!("sm{i}")).collect();
        for name in &names {
            let arn = format!("arn:aws:states:us-east-1:123456789012:execution:{name}:x");
            let arn = ExecutionArn::parse(&arn).unwrap();
            sets.execution(&parts(&arn, name), || vec![name.clone()]);
        }
        assert!(sets.len() <= MAX_SETS);
        // Past the bound, states are still answered (made per use).
        let arn = ExecutionArn::parse(ARN).unwrap();
        let mut e = sets.execution(&parts(&arn, "orders"), || vec!["x:1".into()]);
        for i in 0..MAX_SETS {
            assert_eq!(e.state(&format!("s{i}"), "Task").len(), 3);
        }
        assert!(sets.len() <= MAX_SETS);
    }
}
