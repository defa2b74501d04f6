//! Access keys (`X-Amz-Firehose-Access-Key`).
//!
//! - Several keys can be active at once: Firehose may switch keys between
//!   retries of one batch after a stream update, so rotation needs overlap.
//! - Only SHA-256 digests are kept, and a presented key is compared with
//!   every digest in constant time, so neither the key nor its length leaks
//!   through timing, and no key sits in memory in clear.
//! - Keys come from flags/env and from a file re-read when its content
//!   changes. Once a file is configured, auth stays on even if the file is
//!   emptied (deny all) — an empty file must never mean "open".

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// Firehose sends at most 4096 bytes.
pub const MAX_KEY_BYTES: usize = 4096;

type KeyDigest = [u8; 32];

fn digest(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No keys configured at all: every request is accepted.
    Disabled,
    Accepted,
    Missing,
    Invalid,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("access key {index} is empty")]
    Empty { index: usize },
    #[error("access key {index} is longer than {MAX_KEY_BYTES} bytes")]
    TooLong { index: usize },
    #[error("cannot read access keys file {path}: {reason}")]
    File { path: String, reason: String },
}

#[derive(Debug)]
pub struct AccessKeys {
    static_keys: Vec<KeyDigest>,
    file: Option<PathBuf>,
    /// `static_keys` plus the file's keys, swapped whole on reload.
    active: RwLock<Arc<Vec<KeyDigest>>>,
    /// Digest of the file content last loaded, to skip unchanged re-reads.
    file_digest: RwLock<Option<KeyDigest>>,
}

fn validate(keys: &[String], offset: usize) -> Result<Vec<KeyDigest>, KeyError> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let index = i + offset;
            if k.is_empty() {
                Err(KeyError::Empty { index })
            } else if k.len() > MAX_KEY_BYTES {
                Err(KeyError::TooLong { index })
            } else {
                Ok(digest(k.as_bytes()))
            }
        })
        .collect()
}

/// One key per line; blank lines and `#` comments are skipped.
pub fn parse_keys_file(content: &str) -> Vec<String> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

impl AccessKeys {
    /// Static keys (flags/env) plus an optional keys file, read now.
    pub fn new(static_keys: &[String], file: Option<PathBuf>) -> Result<Self, KeyError> {
        let static_keys = validate(static_keys, 0)?;
        let me = Self {
            active: RwLock::new(Arc::new(static_keys.clone())),
            static_keys,
            file,
            file_digest: RwLock::new(None),
        };
        me.reload()?;
        Ok(me)
    }

    /// Whether any key source is configured (auth on).
    pub fn enabled(&self) -> bool {
        !self.static_keys.is_empty() || self.file.is_some()
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// How many keys are active now.
    pub fn active_count(&self) -> usize {
        self.active.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Re-reads the keys file. Returns `Ok(true)` when the key set changed.
    /// On error the previous keys stay active.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let content = std::fs::read(path).map_err(|e| KeyError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let content_digest = digest(&content);
        if *self.file_digest.read().unwrap_or_else(|e| e.into_inner()) == Some(content_digest) {
            return Ok(false);
        }
        let text = String::from_utf8(content).map_err(|_| KeyError::File {
            path: path.display().to_string(),
            reason: "not UTF-8".into(),
        })?;
        let file_keys = validate(&parse_keys_file(&text), self.static_keys.len())?;
        let mut all = self.static_keys.clone();
        all.extend(file_keys);
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(all);
        *self.file_digest.write().unwrap_or_else(|e| e.into_inner()) = Some(content_digest);
        Ok(true)
    }

    /// Checks a presented header value against every active key.
    pub fn check(&self, presented: Option<&[u8]>) -> AuthOutcome {
        if !self.enabled() {
            return AuthOutcome::Disabled;
        }
        let presented = match presented {
            None | Some([]) => return AuthOutcome::Missing,
            Some(p) => digest(p),
        };
        let active = self
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // No early exit: the time taken does not depend on which key matched.
        let mut matched = subtle::Choice::from(0u8);
        for key in active.iter() {
            matched |= key.ct_eq(&presented);
        }
        if bool::from(matched) {
            AuthOutcome::Accepted
        } else {
            AuthOutcome::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> AccessKeys {
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        AccessKeys::new(&v, None).unwrap()
    }

    #[test]
    fn disabled_without_keys() {
        assert_eq!(keys(&[]).check(None), AuthOutcome::Disabled);
        assert_eq!(keys(&[]).check(Some(b"x")), AuthOutcome::Disabled);
    }

    #[test]
    fn any_active_key_is_accepted() {
        let k = keys(&["old", "new"]);
        assert_eq!(k.check(Some(b"old")), AuthOutcome::Accepted);
        assert_eq!(k.check(Some(b"new")), AuthOutcome::Accepted);
        assert_eq!(k.check(Some(b"ne")), AuthOutcome::Invalid);
        assert_eq!(k.check(Some(b"new ")), AuthOutcome::Invalid);
        assert_eq!(k.check(Some(b"")), AuthOutcome::Missing);
        assert_eq!(k.check(None), AuthOutcome::Missing);
    }

    #[test]
    fn rejects_bad_configured_keys() {
        assert_eq!(
            AccessKeys::new(&["a".into(), "".into()], None).unwrap_err(),
            KeyError::Empty { index: 1 }
        );
        assert_eq!(
            AccessKeys::new(&["k".repeat(MAX_KEY_BYTES + 1)], None).unwrap_err(),
            KeyError::TooLong { index: 0 }
        );
    }

    #[test]
    fn file_reload_and_empty_file_denies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# rotated 2026-11\nfirst\n\n  second  \n").unwrap();
        let k = AccessKeys::new(&[], Some(path.clone())).unwrap();
        assert_eq!(k.active_count(), 2);
        assert_eq!(k.check(Some(b"second")), AuthOutcome::Accepted);
        assert!(!k.reload().unwrap(), "unchanged content is not a change");
        std::fs::write(&path, "third\n").unwrap();
        assert!(k.reload().unwrap());
        assert_eq!(k.check(Some(b"first")), AuthOutcome::Invalid);
        assert_eq!(k.check(Some(b"third")), AuthOutcome::Accepted);
        std::fs::write(&path, "").unwrap();
        assert!(k.reload().unwrap());
        assert_eq!(k.check(Some(b"third")), AuthOutcome::Invalid);
        assert_eq!(k.check(None), AuthOutcome::Missing);
        // A vanished file keeps the last good keys.
        std::fs::write(&path, "fourth\n").unwrap();
        k.reload().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(k.reload().is_err());
        assert_eq!(k.check(Some(b"fourth")), AuthOutcome::Accepted);
    }
}
