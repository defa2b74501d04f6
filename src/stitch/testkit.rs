//! Executions for the stitcher's unit tests.

use crate::events::{Details, DetailsShape, Event, EventKind, Payload};

pub const ARN: &str = "arn:aws:states:us-east-1:418295736021:execution:Slow:run-1";

pub fn ev(arn: &str, id: u64, prev: u64, kind: EventKind, name: Option<&str>, ms: i64) -> Event {
    let details = match (name, kind.details_shape()) {
        (Some(n), DetailsShape::StateEntered) => Details::StateEntered {
            name: n.into(),
            input: Some(Payload {
                text: "{}".into(),
                aws_truncated: false,
            }),
        },
        (Some(n), DetailsShape::StateExited) => Details::StateExited {
            name: n.into(),
            output: None,
            assigned_variables: vec![],
            assigned_variables_aws_truncated: false,
        },
        _ => Details::None,
    };
    Event {
        execution_arn: arn.into(),
        id,
        previous_event_id: prev,
        timestamp_ms: ms,
        redrive_count: 0,
        kind,
        details,
        source: None,
    }
}

/// A Standard execution with two Wait states, ten minutes apart.
pub fn slow_execution(arn: &str) -> Vec<Event> {
    let t = 1_780_000_000_000;
    let min = 60_000;
    vec![
        ev(arn, 1, 0, EventKind::ExecutionStarted, None, t),
        ev(arn, 2, 0, EventKind::WaitStateEntered, Some("W1"), t + 1),
        ev(
            arn,
            3,
            2,
            EventKind::WaitStateExited,
            Some("W1"),
            t + 10 * min,
        ),
        ev(
            arn,
            4,
            3,
            EventKind::WaitStateEntered,
            Some("W2"),
            t + 10 * min + 1,
        ),
        ev(
            arn,
            5,
            4,
            EventKind::WaitStateExited,
            Some("W2"),
            t + 20 * min,
        ),
        ev(
            arn,
            6,
            5,
            EventKind::ExecutionSucceeded,
            None,
            t + 20 * min + 1,
        ),
    ]
}
