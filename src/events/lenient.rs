//! Lenient scalar readers. AWS logs ids, timestamps and counts as strings
//! (`"id":"3"`) while the API returns numbers; neither typing is normative,
//! so both are accepted everywhere.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// An unsigned integer given as a JSON number or a string of digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LenientU64(pub u64);

impl<'de> serde::Deserialize<'de> for LenientU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientU64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer or a string of digits")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientU64, E> {
                Ok(LenientU64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientU64, E> {
                u64::try_from(v)
                    .map(LenientU64)
                    .map_err(|_| E::custom("negative integer"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientU64, E> {
                if v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 {
                    Ok(LenientU64(v as u64))
                } else {
                    Err(E::custom("not a non-negative integer"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientU64, E> {
                v.trim()
                    .parse::<u64>()
                    .map(LenientU64)
                    .map_err(|_| E::custom(format!("not an integer: {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// An event time in epoch milliseconds. Accepted forms:
/// - a string or integer of epoch milliseconds (CloudWatch log lines);
/// - a float of epoch seconds with a millisecond fraction (API history);
/// - an ISO-8601 UTC string (LocalStack's log lines, boto3 dumps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochMillis(pub i64);

/// How a bare number is read: log lines carry milliseconds, the API seconds.
pub(crate) fn millis_from_number(v: f64, seconds: bool) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let ms = if seconds { (v * 1000.0).round() } else { v };
    (ms.abs() < 1e17).then_some(ms as i64)
}

/// Parses an ISO-8601 UTC timestamp (`2024-12-04T19:38:04.118Z`,
/// `2026-01-01 10:00:00.5+00:00`) into epoch milliseconds.
pub fn parse_iso8601_millis(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s
        .strip_suffix("+00:00")
        .or_else(|| s.strip_suffix('Z'))
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok(),
        Err(e) => i64::try_from(e.duration().as_millis()).ok().map(|v| -v),
    }
}

/// Formats epoch milliseconds as ISO-8601 UTC with exactly three fractional
/// digits, the form Datadog's libraries hash into span ids.
pub fn format_iso8601_millis(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_iso8601_millis(&mut s, ms);
    s
}

/// `format_iso8601_millis` appended to `out` (span id keys are built in
/// one buffer).
pub fn write_iso8601_millis(out: &mut String, ms: i64) {
    use std::fmt::Write;
    let _ = write!(out, "{}", humantime::format_rfc3339_millis(system_time(ms)));
}

/// The `SystemTime` of epoch milliseconds (before the epoch too).
fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + std::time::Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - std::time::Duration::from_millis(ms.unsigned_abs())
    }
}

/// Epoch milliseconds of a `SystemTime` (0 before the epoch).
pub fn system_time_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct MillisVisitor {
    numbers_are_seconds: bool,
}

impl Visitor<'_> for MillisVisitor {
    type Value = EpochMillis;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("epoch milliseconds, epoch seconds, or an ISO-8601 time")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<EpochMillis, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<EpochMillis, E> {
        self.visit_f64(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<EpochMillis, E> {
        millis_from_number(v, self.numbers_are_seconds)
            .map(EpochMillis)
            .ok_or_else(|| E::custom("timestamp out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<EpochMillis, E> {
        let t = v.trim();
        if let Ok(ms) = t.parse::<i64>() {
            return Ok(EpochMillis(ms));
        }
        if let Ok(f) = t.parse::<f64>() {
            return self.visit_f64(f);
        }
        parse_iso8601_millis(t)
            .map(EpochMillis)
            .ok_or_else(|| E::custom(format!("not a timestamp: {v:?}")))
    }
}

/// Log-line flavour: bare numbers are milliseconds.
impl<'de> serde::Deserialize<'de> for EpochMillis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MillisVisitor {
            numbers_are_seconds: false,
        })
    }
}

/// History flavour: bare numbers are seconds with a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSecondsOrIso(pub i64);

impl<'de> serde::Deserialize<'de> for EpochSecondsOrIso {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MillisVisitor {
            numbers_are_seconds: true,
        })
        .map(|m| EpochSecondsOrIso(m.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_from_string_or_number() {
        let v: Vec<LenientU64> = serde_json::from_str(r#"["3", 4, " 5 ", 6.0]"#).unwrap();
        assert_eq!(
            v,
            vec![LenientU64(3), LenientU64(4), LenientU64(5), LenientU64(6)]
        );
        assert!(serde_json::from_str::<LenientU64>("-1").is_err());
        assert!(serde_json::from_str::<LenientU64>(r#""x""#).is_err());
        assert!(serde_json::from_str::<LenientU64>("1.5").is_err());
    }

    #[test]
    fn millis_forms() {
        let v: Vec<EpochMillis> =
            serde_json::from_str(r#"["1773613269268", 1773613269268, "2024-12-04T19:38:04.118Z"]"#)
                .unwrap();
        assert_eq!(v[0].0, 1773613269268);
        assert_eq!(v[1].0, 1773613269268);
        assert_eq!(format_iso8601_millis(v[2].0), "2024-12-04T19:38:04.118Z");
    }

    #[test]
    fn history_seconds_with_fraction() {
        let v: Vec<EpochSecondsOrIso> = serde_json::from_str(
            r#"[1773613269.267, 1773613269.22, "2026-03-15 22:21:09.267000+00:00"]"#,
        )
        .unwrap();
        assert_eq!(v[0].0, 1773613269267);
        assert_eq!(v[1].0, 1773613269220);
        assert_eq!(v[2].0, 1773613269267);
    }

    #[test]
    fn iso_format_has_three_digits() {
        assert_eq!(
            format_iso8601_millis(1722369353018),
            "2024-07-30T19:55:53.018Z"
        );
        assert_eq!(
            format_iso8601_millis(1722369353000),
            "2024-07-30T19:55:53.000Z"
        );
        assert_eq!(
            parse_iso8601_millis("2024-07-30T19:55:53.018Z"),
            Some(1722369353018)
        );
    }
}
