//! Who may call the UI API. Reads are open on a loopback listener and need
//! a bearer token elsewhere; mutating calls always need one, and must come
//! from the UI's own origin (no cross-site form or fetch can make them).
//! Tokens follow the access keys' rules: SHA-256 digests compared in
//! constant time, a file re-read when it changes.

use crate::firehose::auth::{AccessKeys, AuthOutcome};
use axum::http::{header, HeaderMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("an API token is needed: send Authorization: Bearer <token> (STEPSTITCH_API_TOKENS)")]
    Unauthorised,
    #[error("this call needs an API token and none is configured: set STEPSTITCH_API_TOKENS")]
    NoTokens,
    #[error("cross-site request refused")]
    CrossSite,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Unauthorised | Denied::NoTokens => "unauthorised",
            Denied::CrossSite => "cross_site",
        }
    }
}

#[derive(Debug)]
pub struct Access {
    pub tokens: std::sync::Arc<AccessKeys>,
    /// The admin listener is on loopback: reads need no token.
    pub open_reads: bool,
}

fn bearer(h: &HeaderMap) -> Option<&[u8]> {
    let v = h.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = v.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

fn token_ok(a: &Access, h: &HeaderMap) -> Result<(), Denied> {
    match a.tokens.check(bearer(h)) {
        AuthOutcome::Accepted => Ok(()),
        AuthOutcome::Disabled => Err(Denied::NoTokens),
        AuthOutcome::Missing | AuthOutcome::Invalid => Err(Denied::Unauthorised),
    }
}

/// A read (GET).
pub fn read(a: &Access, h: &HeaderMap) -> Result<(), Denied> {
    if a.open_reads {
        return Ok(());
    }
    token_ok(a, h)
}

/// A call that changes something: a token, and the UI's own origin.
pub fn mutate(a: &Access, h: &HeaderMap) -> Result<(), Denied> {
    same_origin(h)?;
    token_ok(a, h)
}

/// Who made a call, for the audit log: a fingerprint of the bearer token
/// (the first 12 hex digits of its SHA-256), never the token itself.
pub fn who(h: &HeaderMap) -> String {
    use sha2::{Digest, Sha256};
    match bearer(h) {
        Some(t) => {
            let d = Sha256::digest(t);
            let hex: String = d.iter().take(6).map(|b| format!("{b:02x}")).collect();
            format!("token:{hex}")
        }
        None => "anonymous".into(),
    }
}

/// Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`);
/// scripts and curl send neither, which is fine: they hold the token.
fn same_origin(h: &HeaderMap) -> Result<(), Denied> {
    if let Some(site) = h.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(Denied::CrossSite);
        }
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let host = h.get(header::HOST).map(|v| v.as_bytes()).unwrap_or(b"");
        let o = origin.as_bytes();
        let stripped = o
            .strip_prefix(b"http://")
            .or_else(|| o.strip_prefix(b"https://"));
        if stripped != Some(host) {
            return Err(Denied::CrossSite);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn access(open: bool) -> Access {
        Access {
            tokens: Arc::new(AccessKeys::new(&["s3cret".into()], None).unwrap()),
            open_reads: open,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_and_mutations() {
        assert_eq!(read(&access(true), &headers(&[])), Ok(()));
        assert_eq!(
            read(&access(false), &headers(&[])),
            Err(Denied::Unauthorised)
        );
        let good = [("authorization", "Bearer s3cret")];
        assert_eq!(read(&access(false), &headers(&good)), Ok(()));
        assert_eq!(
            read(
                &access(false),
                &headers(&[("authorization", "Bearer s3cre")])
            ),
            Err(Denied::Unauthorised)
        );
        // Mutations need the token even on loopback.
        assert_eq!(
            mutate(&access(true), &headers(&[])),
            Err(Denied::Unauthorised)
        );
        assert_eq!(mutate(&access(true), &headers(&good)), Ok(()));
        let no_tokens = Access {
            tokens: Arc::new(AccessKeys::new(&[], None).unwrap()),
            open_reads: true,
        };
        assert_eq!(mutate(&no_tokens, &headers(&good)), Err(Denied::NoTokens));
    }

    #[test]
    fn who_is_a_fingerprint_not_the_token() {
        let w = who(&headers(&[("authorization", "Bearer s3cret")]));
        assert!(w.starts_with("token:") && w.len() == 18, "{w}");
        assert!(!w.contains("s3cret"));
        assert_eq!(w, who(&headers(&[("authorization", "bearer s3cret")])));
        assert_ne!(w, who(&headers(&[("authorization", "Bearer other")])));
        assert_eq!(who(&headers(&[])), "anonymous");
    }

    #[test]
    fn cross_site_is_refused_even_with_a_token() {
        let a = access(true);
        let with = |extra: &[(&str, &str)]| {
            let mut p = vec![
                ("authorization", "Bearer s3cret"),
                ("host", "127.0.0.1:9090"),
            ];
            p.extend_from_slice(extra);
            mutate(&a, &headers(&p))
        };
        assert_eq!(
            with(&[("sec-fetch-site", "cross-site")]),
            Err(Denied::CrossSite)
        );
        assert_eq!(
            with(&[("sec-fetch-site", "same-site")]),
            Err(Denied::CrossSite)
        );
        assert_eq!(
            with(&[("origin", "http://evil.example")]),
            Err(Denied::CrossSite)
        );
        assert_eq!(with(&[("origin", "null")]), Err(Denied::CrossSite));
        assert_eq!(
            with(&[
                ("origin", "http://127.0.0.1:9090"),
                ("sec-fetch-site", "same-origin")
            ]),
            Ok(())
        );
    }
}
