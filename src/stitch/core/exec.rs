//! One execution as the stitcher holds it, and the phase of its life
//! (trace-model.md §5).

use crate::events::StreamParams;
use crate::hashing::FastSet;
use crate::stitch::context::TraceContext;
use crate::stitch::held::{HeldEvents, IdSet};
use std::sync::Arc;
use std::time::Instant;

/// Where an execution is in its life. Emission happens at the end of
/// `Closing` and `Reopened`; `Finalized` only remembers what was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Events arriving, no terminal event yet (or a redrive runs on).
    Open,
    /// A terminal event arrived: emitted at `at` (the terminal plus the grace).
    Closing { at: Instant },
    /// Emitted at `at`; kept for the retention window so late events yield
    /// only new spans, in the right trace.
    Finalized { at: Instant },
    /// Emitted at `finalized`, then a straggler arrived: what it adds is
    /// emitted at `at`.
    Reopened { finalized: Instant, at: Instant },
}

impl Phase {
    /// Not emitted yet: counts against the open-execution bound.
    pub fn is_open(self) -> bool {
        matches!(self, Phase::Open | Phase::Closing { .. })
    }

    /// When its spans are due, if they are waiting for a time.
    pub fn due_at(self) -> Option<Instant> {
        match self {
            Phase::Closing { at } | Phase::Reopened { at, .. } => Some(at),
            Phase::Open | Phase::Finalized { .. } => None,
        }
    }

    /// When it was last emitted.
    pub fn finalized_at(self) -> Option<Instant> {
        match self {
            Phase::Finalized { at } | Phase::Reopened { finalized: at, .. } => Some(at),
            Phase::Open | Phase::Closing { .. } => None,
        }
    }

    /// The phase a snapshot's two flags describe, clocks restarted at
    /// `now`; what was waiting is due at `due`.
    pub fn restored(finalized: bool, final_pending: bool, now: Instant, due: Instant) -> Self {
        match (finalized, final_pending) {
            (false, false) => Phase::Open,
            (false, true) => Phase::Closing { at: due },
            (true, false) => Phase::Finalized { at: now },
            (true, true) => Phase::Reopened {
                finalized: now,
                at: due,
            },
        }
    }
}

#[derive(Debug)]
pub struct Exec {
    pub events: HeldEvents,
    pub phase: Phase,
    pub last_seen: Instant,
    pub first_seen: Instant,
    /// Span ids emitted so far.
    pub emitted: FastSet<u64>,
    /// Every event id ever taken, kept past finalization (8 bytes each) so a
    /// redelivered event is recognised as a duplicate, not a late event.
    pub seen: IdSet,
    /// Ids of events dropped after incremental emission.
    pub pruned: IdSet,
    pub context: Option<TraceContext>,
    /// The delivery stream's parameters (service, env, tags).
    pub params: Arc<StreamParams>,
    /// Children named by this execution's events are not registered yet.
    pub pending_joins: bool,
    /// Events arrived since the last incremental emission.
    pub dirty: bool,
    /// Queued to be flushed for the open-execution bound.
    pub evicting: bool,
    pub last_partial: Option<Instant>,
}

impl Exec {
    pub fn new(now: Instant, params: Arc<StreamParams>) -> Self {
        Self {
            events: HeldEvents::default(),
            phase: Phase::Open,
            last_seen: now,
            first_seen: now,
            emitted: FastSet::default(),
            seen: IdSet::default(),
            pruned: IdSet::default(),
            context: None,
            params,
            pending_joins: false,
            dirty: false,
            evicting: false,
            last_partial: None,
        }
    }

    /// Takes one new event's effect on the phase: a terminal event starts
    /// the grace; any event after emission reopens it for another grace.
    /// Returns whether the event is late (arrived after emission).
    pub fn on_new_event(&mut self, terminal: bool, grace_end: Instant) -> bool {
        match self.phase {
            Phase::Finalized { at } | Phase::Reopened { finalized: at, .. } => {
                self.phase = Phase::Reopened {
                    finalized: at,
                    at: grace_end,
                };
                true
            }
            Phase::Open if terminal => {
                self.phase = Phase::Closing { at: grace_end };
                false
            }
            Phase::Open | Phase::Closing { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_move_the_phase() {
        let t0 = Instant::now();
        let g = |s| t0 + Duration::from_secs(s);
        let mut e = Exec::new(t0, Arc::default());
        assert!(!e.on_new_event(false, g(5)));
        assert_eq!(e.phase, Phase::Open);
        assert!(!e.on_new_event(true, g(5)));
        assert_eq!(e.phase, Phase::Closing { at: g(5) });
        // A second terminal event (a redrive's) does not push the grace.
        assert!(!e.on_new_event(true, g(9)));
        assert_eq!(e.phase.due_at(), Some(g(5)));
        e.phase = Phase::Finalized { at: g(6) };
        assert!(!e.phase.is_open());
        assert!(e.on_new_event(false, g(20)));
        assert_eq!(
            e.phase,
            Phase::Reopened {
                finalized: g(6),
                at: g(20)
            }
        );
        // Every straggler pushes the re-emission.
        assert!(e.on_new_event(false, g(30)));
        assert_eq!(e.phase.due_at(), Some(g(30)));
        assert_eq!(e.phase.finalized_at(), Some(g(6)));
    }

    #[test]
    fn snapshot_flags_round_trip() {
        let now = Instant::now();
        let grace = now + Duration::from_secs(5);
        for (fin, pending) in [(false, false), (false, true), (true, false), (true, true)] {
            let p = Phase::restored(fin, pending, now, grace);
            assert_eq!(p.finalized_at().is_some(), fin);
            assert_eq!(p.due_at().is_some(), pending);
        }
    }
}
