//! Jittered exponential backoff for retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const BASE: Duration = Duration::from_millis(100);

/// A cheap process-wide random source: jitter only has to spread retries
/// apart, not be unpredictable, so a time-seeded splitmix64 is enough.
fn next_random() -> u64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32)
    });
    let mut z = seed.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The wait before retry number `attempt` (0-based): "equal jitter", half of
/// the exponential step fixed and half random, so a sink that is down is
/// not hammered and many lanes do not retry in lockstep. `retry_after`
/// (from the intake's `Retry-After`) wins when larger, within `max`.
pub fn delay(attempt: u32, max: Duration, retry_after: Option<Duration>) -> Duration {
    let step = BASE
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    let half = step / 2;
    let jitter_ms = half.as_millis() as u64;
    let jitter = if jitter_ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(next_random() % (jitter_ms + 1))
    };
    let d = half + jitter;
    match retry_after {
        Some(r) if r > d => r.min(max),
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_the_cap_with_jitter() {
        let max = Duration::from_secs(10);
        for attempt in 0..30 {
            let step = (100u64 << attempt.min(20)).min(10_000);
            for _ in 0..50 {
                let d = delay(attempt, max, None).as_millis() as u64;
                assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d}ms");
            }
        }
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| delay(6, max, None).as_millis()).collect();
        assert!(spread.len() > 5, "jitter varies: {spread:?}");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let max = Duration::from_secs(5);
        assert_eq!(
            delay(0, max, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(delay(0, max, Some(Duration::from_secs(60))), max);
    }
}
