//! Value parsers for settings. Each returns a short problem description;
//! `ConfigError` adds the setting's names and an example.

use std::time::Duration;

/// `500ms`, `20s`, `2m`, `1h`, `0s` (and combinations such as `1h 30m`).
pub fn duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    if v == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(v).map_err(|e| format!("not a duration ({e})"))
}

/// A byte size: `16384`, `512KiB`, `16MiB`, `1GiB`, `5MB` (SI), `64M` (binary).
pub fn byte_size(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    if num.is_empty() {
        return Err("not a byte size".into());
    }
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "KB" => 1_000,
        "M" | "MiB" => 1 << 20,
        "MB" => 1_000_000,
        "G" | "GiB" => 1 << 30,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "number too large".to_string())
}

pub fn positive_int(v: &str) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}

pub fn socket_addr(v: &str) -> Result<std::net::SocketAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| "not an IP address and port".to_string())
}

/// A URL with one of the given schemes.
pub fn url(v: &str, schemes: &[&str]) -> Result<String, String> {
    let v = v.trim();
    let Some((scheme, rest)) = v.split_once("://") else {
        return Err("not a URL".into());
    };
    if !schemes.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(format!("scheme must be one of {}", schemes.join(", ")));
    }
    if rest.is_empty() {
        return Err("URL without a host or path".into());
    }
    Ok(v.trim_end_matches('/').to_owned())
}

/// A Datadog site: a host name such as `datadoghq.com` or `us5.datadoghq.com`.
pub fn site(v: &str) -> Result<String, String> {
    let v = v.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.contains('.')
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if ok {
        Ok(v)
    } else {
        Err("not a host name".into())
    }
}

/// `DD_TAGS`: tags separated by commas or spaces (`team:core,tier:1`).
pub fn tags(v: &str) -> Result<Vec<String>, String> {
    let tags: Vec<String> = v
        .split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = tags.iter().find(|t| t.starts_with(':') || t.len() > 200) {
        return Err(format!("bad tag {bad:?}"));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(duration("0s").unwrap(), Duration::ZERO);
        assert!(duration("5").is_err());
        assert!(duration("soon").is_err());
        assert!(duration("-1s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(byte_size("16384").unwrap(), 16384);
        assert_eq!(byte_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(byte_size("5MB").unwrap(), 5_000_000);
        assert_eq!(byte_size("1G").unwrap(), 1 << 30);
        assert!(byte_size("MiB").is_err());
        assert!(byte_size("12 parsecs").is_err());
        assert!(byte_size("99999999999999999999").is_err());
    }

    #[test]
    fn urls_sites_tags() {
        assert_eq!(
            url("http://127.0.0.1:8126/", &["http", "https"]).unwrap(),
            "http://127.0.0.1:8126"
        );
        assert!(url("127.0.0.1:8126", &["http"]).is_err());
        assert!(url("ftp://x", &["http"]).is_err());
        assert_eq!(site("US5.datadoghq.com").unwrap(), "us5.datadoghq.com");
        assert!(site("datadog hq").is_err());
        assert!(site("localhost").is_err());
        assert_eq!(
            tags("team:core, tier:1 x").unwrap(),
            vec!["team:core", "tier:1", "x"]
        );
    }
}
