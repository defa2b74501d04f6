//! The Step Functions `HistoryEventType` enum (62 values as of the 2026 API),
//! plus `Unknown` so that a type AWS adds later passes through untouched.

use serde::{Serialize, Serializer};

macro_rules! event_kinds {
    ($($variant:ident),+ $(,)?) => {
        /// One Step Functions history event type.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($variant,)+
            /// A type this build does not know; kept verbatim.
            Unknown(Box<str>),
        }

        impl EventKind {
            /// Every known type, in the API enum's order.
            pub const KNOWN: &'static [EventKind] = &[$(EventKind::$variant,)+];

            /// Parses the wire name; never fails (unknown names are kept).
            pub fn parse(name: &str) -> Self {
                match name {
                    $(stringify!($variant) => EventKind::$variant,)+
                    other => EventKind::Unknown(other.into()),
                }
            }

            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(EventKind::$variant => stringify!($variant),)+
                    EventKind::Unknown(name) => name,
                }
            }
        }
    };
}

event_kinds!(
    ActivityFailed,
    ActivityScheduled,
    ActivityScheduleFailed,
    ActivityStarted,
    ActivitySucceeded,
    ActivityTimedOut,
    ChoiceStateEntered,
    ChoiceStateExited,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionTimedOut,
    FailStateEntered,
    LambdaFunctionFailed,
    LambdaFunctionScheduled,
    LambdaFunctionScheduleFailed,
    LambdaFunctionStarted,
    LambdaFunctionStartFailed,
    LambdaFunctionSucceeded,
    LambdaFunctionTimedOut,
    MapIterationAborted,
    MapIterationFailed,
    MapIterationStarted,
    MapIterationSucceeded,
    MapStateAborted,
    MapStateEntered,
    MapStateExited,
    MapStateFailed,
    MapStateStarted,
    MapStateSucceeded,
    ParallelStateAborted,
    ParallelStateEntered,
    ParallelStateExited,
    ParallelStateFailed,
    ParallelStateStarted,
    ParallelStateSucceeded,
    PassStateEntered,
    PassStateExited,
    SucceedStateEntered,
    SucceedStateExited,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskStartFailed,
    TaskStateAborted,
    TaskStateEntered,
    TaskStateExited,
    TaskSubmitFailed,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
    WaitStateAborted,
    WaitStateEntered,
    WaitStateExited,
    MapRunAborted,
    MapRunFailed,
    MapRunStarted,
    MapRunSucceeded,
    ExecutionRedriven,
    MapRunRedriven,
    EvaluationFailed,
);

/// The shape of an event's details, which decides how the wire details are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailsShape {
    None,
    ExecutionStarted,
    Output,
    Failure,
    ExecutionRedriven,
    StateEntered,
    StateExited,
    TaskScheduled,
    TaskStarted,
    TaskOutput,
    TaskFailure,
    ActivityScheduled,
    ActivityStarted,
    LambdaScheduled,
    MapStateStarted,
    MapIteration,
    MapRunStarted,
    MapRunRedriven,
    EvaluationFailed,
    Other,
}

impl EventKind {
    /// Which `*EventDetails` structure the API defines for this type.
    pub fn details_shape(&self) -> DetailsShape {
        use EventKind::*;
        match self {
            ParallelStateStarted
            | ParallelStateSucceeded
            | ParallelStateFailed
            | ParallelStateAborted
            | MapStateSucceeded
            | MapStateFailed
            | MapStateAborted
            | MapRunSucceeded
            | MapRunAborted
            | TaskStateAborted
            | WaitStateAborted
            | LambdaFunctionStarted => DetailsShape::None,
            ExecutionStarted => DetailsShape::ExecutionStarted,
            ExecutionSucceeded | ActivitySucceeded | LambdaFunctionSucceeded => {
                DetailsShape::Output
            }
            ExecutionFailed
            | ExecutionAborted
            | ExecutionTimedOut
            | ActivityFailed
            | ActivityScheduleFailed
            | ActivityTimedOut
            | LambdaFunctionFailed
            | LambdaFunctionScheduleFailed
            | LambdaFunctionStartFailed
            | LambdaFunctionTimedOut
            | MapRunFailed => DetailsShape::Failure,
            ExecutionRedriven => DetailsShape::ExecutionRedriven,
            ChoiceStateEntered | FailStateEntered | MapStateEntered | ParallelStateEntered
            | PassStateEntered | SucceedStateEntered | TaskStateEntered | WaitStateEntered => {
                DetailsShape::StateEntered
            }
            ChoiceStateExited | MapStateExited | ParallelStateExited | PassStateExited
            | SucceedStateExited | TaskStateExited | WaitStateExited => DetailsShape::StateExited,
            TaskScheduled => DetailsShape::TaskScheduled,
            TaskStarted => DetailsShape::TaskStarted,
            TaskSubmitted | TaskSucceeded => DetailsShape::TaskOutput,
            TaskFailed | TaskStartFailed | TaskSubmitFailed | TaskTimedOut => {
                DetailsShape::TaskFailure
            }
            ActivityScheduled => DetailsShape::ActivityScheduled,
            ActivityStarted => DetailsShape::ActivityStarted,
            LambdaFunctionScheduled => DetailsShape::LambdaScheduled,
            MapStateStarted => DetailsShape::MapStateStarted,
            MapIterationStarted
            | MapIterationSucceeded
            | MapIterationFailed
            | MapIterationAborted => DetailsShape::MapIteration,
            MapRunStarted => DetailsShape::MapRunStarted,
            MapRunRedriven => DetailsShape::MapRunRedriven,
            EvaluationFailed => DetailsShape::EvaluationFailed,
            Unknown(_) => DetailsShape::Other,
        }
    }

    /// The member name of the details object in `GetExecutionHistory` output.
    pub fn history_details_key(&self) -> Option<&'static str> {
        use EventKind::*;
        Some(match self.details_shape() {
            DetailsShape::None | DetailsShape::Other => return None,
            DetailsShape::StateEntered => "stateEnteredEventDetails",
            DetailsShape::StateExited => "stateExitedEventDetails",
            _ => match self {
                ActivityFailed => "activityFailedEventDetails",
                ActivityScheduleFailed => "activityScheduleFailedEventDetails",
                ActivityScheduled => "activityScheduledEventDetails",
                ActivityStarted => "activityStartedEventDetails",
                ActivitySucceeded => "activitySucceededEventDetails",
                ActivityTimedOut => "activityTimedOutEventDetails",
                TaskFailed => "taskFailedEventDetails",
                TaskScheduled => "taskScheduledEventDetails",
                TaskStartFailed => "taskStartFailedEventDetails",
                TaskStarted => "taskStartedEventDetails",
                TaskSubmitFailed => "taskSubmitFailedEventDetails",
                TaskSubmitted => "taskSubmittedEventDetails",
                TaskSucceeded => "taskSucceededEventDetails",
                TaskTimedOut => "taskTimedOutEventDetails",
                ExecutionFailed => "executionFailedEventDetails",
                ExecutionStarted => "executionStartedEventDetails",
                ExecutionSucceeded => "executionSucceededEventDetails",
                ExecutionAborted => "executionAbortedEventDetails",
                ExecutionTimedOut => "executionTimedOutEventDetails",
                ExecutionRedriven => "executionRedrivenEventDetails",
                MapStateStarted => "mapStateStartedEventDetails",
                MapIterationStarted => "mapIterationStartedEventDetails",
                MapIterationSucceeded => "mapIterationSucceededEventDetails",
                MapIterationFailed => "mapIterationFailedEventDetails",
                MapIterationAborted => "mapIterationAbortedEventDetails",
                LambdaFunctionFailed => "lambdaFunctionFailedEventDetails",
                LambdaFunctionScheduleFailed => "lambdaFunctionScheduleFailedEventDetails",
                LambdaFunctionScheduled => "lambdaFunctionScheduledEventDetails",
                LambdaFunctionStartFailed => "lambdaFunctionStartFailedEventDetails",
                LambdaFunctionSucceeded => "lambdaFunctionSucceededEventDetails",
                LambdaFunctionTimedOut => "lambdaFunctionTimedOutEventDetails",
                MapRunStarted => "mapRunStartedEventDetails",
                MapRunFailed => "mapRunFailedEventDetails",
                MapRunRedriven => "mapRunRedrivenEventDetails",
                EvaluationFailed => "evaluationFailedEventDetails",
                _ => return None,
            },
        })
    }

    /// `ExecutionSucceeded`, `ExecutionFailed`, `ExecutionTimedOut` or `ExecutionAborted`.
    pub fn is_execution_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::ExecutionSucceeded
                | EventKind::ExecutionFailed
                | EventKind::ExecutionTimedOut
                | EventKind::ExecutionAborted
        )
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_62_api_types_round_trip() {
        assert_eq!(EventKind::KNOWN.len(), 62);
        for kind in EventKind::KNOWN {
            assert_eq!(&EventKind::parse(kind.as_str()), kind);
            assert!(!matches!(kind, EventKind::Unknown(_)));
            // Every type with details has a history member name, and only those.
            assert_eq!(
                kind.history_details_key().is_some(),
                kind.details_shape() != DetailsShape::None,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn unknown_types_are_kept() {
        let k = EventKind::parse("QuantumStateEntangled");
        assert_eq!(k, EventKind::Unknown("QuantumStateEntangled".into()));
        assert_eq!(k.as_str(), "QuantumStateEntangled");
        assert_eq!(k.details_shape(), DetailsShape::Other);
    }

    #[test]
    fn twelve_types_have_no_details() {
        let none = EventKind::KNOWN
            .iter()
            .filter(|k| k.details_shape() == DetailsShape::None)
            .count();
        assert_eq!(none, 12);
    }
}
