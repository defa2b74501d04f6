//! Health figures per state machine over a window (pure): counts by
//! status, duration percentiles, last execution and failure, and the
//! sparkline's buckets.

use super::model::{Status, Window};

/// One execution started in the window, as the figures need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub status: Status,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
}

/// A state machine's executions started in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub arn: String,
    pub name: String,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub arn: String,
    pub name: String,
    pub executions: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub aborted: u64,
    pub running: u64,
    pub pending_redrive: u64,
    /// Over finished executions; `None` when none finished.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub last_execution_ms: Option<i64>,
    /// The latest start of a failed, timed-out or aborted execution.
    pub last_failure_ms: Option<i64>,
    /// Executions and failures per equal slice of the window (sparkline).
    pub buckets: Vec<(u64, u64)>,
}

impl Health {
    pub fn failures(&self) -> u64 {
        self.failed + self.timed_out + self.aborted
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at
/// least `p` % of the values at or below it.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn health(s: &Started, w: Window, buckets: usize) -> Health {
    let mut h = Health {
        arn: s.arn.clone(),
        name: s.name.clone(),
        executions: s.runs.len() as u64,
        succeeded: 0,
        failed: 0,
        timed_out: 0,
        aborted: 0,
        running: 0,
        pending_redrive: 0,
        p50_ms: None,
        p95_ms: None,
        p99_ms: None,
        last_execution_ms: None,
        last_failure_ms: None,
        buckets: vec![(0, 0); buckets],
    };
    let span = (w.to_ms - w.from_ms).max(1);
    let mut durations = Vec::with_capacity(s.runs.len());
    for r in &s.runs {
        *match r.status {
            Status::Running => &mut h.running,
            Status::Succeeded => &mut h.succeeded,
            Status::Failed => &mut h.failed,
            Status::TimedOut => &mut h.timed_out,
            Status::Aborted => &mut h.aborted,
            Status::PendingRedrive => &mut h.pending_redrive,
        } += 1;
        if let Some(stop) = r.stop_ms {
            durations.push((stop - r.start_ms).max(0));
        }
        h.last_execution_ms = h.last_execution_ms.max(Some(r.start_ms));
        if r.status.is_failure() {
            h.last_failure_ms = h.last_failure_ms.max(Some(r.start_ms));
        }
        if buckets > 0 {
            let i = (((r.start_ms - w.from_ms).clamp(0, span - 1) as i128 * buckets as i128)
                / span as i128) as usize;
            h.buckets[i].0 += 1;
            h.buckets[i].1 += r.status.is_failure() as u64;
        }
    }
    durations.sort_unstable();
    h.p50_ms = percentile(&durations, 50.0);
    h.p95_ms = percentile(&durations, 95.0);
    h.p99_ms = percentile(&durations, 99.0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn counts_buckets_and_lasts() {
        let run = |status, start_ms, stop: Option<i64>| Run {
            status,
            start_ms,
            stop_ms: stop,
        };
        let s = Started {
            arn: "a".into(),
            name: "n".into(),
            runs: vec![
                run(Status::Succeeded, 0, Some(10)),
                run(Status::Failed, 50, Some(80)),
                run(Status::Running, 99, None),
                run(Status::TimedOut, 60, Some(61)),
            ],
        };
        let h = health(
            &s,
            Window {
                from_ms: 0,
                to_ms: 100,
            },
            2,
        );
        assert_eq!(
            (h.executions, h.succeeded, h.failed, h.timed_out, h.running),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(h.failures(), 2);
        assert_eq!(h.buckets, vec![(1, 0), (3, 2)]);
        assert_eq!(h.last_execution_ms, Some(99));
        assert_eq!(h.last_failure_ms, Some(60));
        // Durations 1, 10, 30: the running one has none.
        assert_eq!((h.p50_ms, h.p99_ms), (Some(10), Some(30)));
    }
}
