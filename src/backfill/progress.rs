//! The backfill's progress: a bar redrawn in place on a terminal, a plain
//! line every few seconds otherwise (logs, CI), and the summary at the end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Counts {
    pub executions: usize,
    pub done: usize,
    pub failed: usize,
    pub events: usize,
    pub requests: usize,
}

/// One progress line (pure).
pub fn line(c: &Counts, elapsed: Duration, width: usize) -> String {
    let total = c.executions.max(1);
    let filled = (c.done + c.failed) * width / total;
    format!(
        "[{}{}] {}/{} executions, {} events, {} requests, {} failed, {:.0}s",
        "#".repeat(filled),
        "-".repeat(width - filled),
        c.done + c.failed,
        c.executions,
        c.events,
        c.requests,
        c.failed,
        elapsed.as_secs_f64()
    )
}

pub struct Progress {
    tty: bool,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn show(&mut self, c: &Counts) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        let finished = c.done + c.failed == c.executions;
        if !finished && self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let text = line(c, self.started.elapsed(), 30);
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{text}{}", if finished { "\n" } else { "" })
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
    }

    pub fn say(&self, msg: &str) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}{msg}",
            if self.tty { "\r" } else { "" }
        );
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_finished_executions() {
        let c = Counts {
            executions: 4,
            done: 1,
            failed: 1,
            events: 120,
            requests: 2,
        };
        assert_eq!(
            line(&c, Duration::from_secs(3), 8),
            "[####----] 2/4 executions, 120 events, 2 requests, 1 failed, 3s"
        );
        let none = Counts::default();
        assert!(line(&none, Duration::ZERO, 8).starts_with("[--------] 0/0"));
    }
}
