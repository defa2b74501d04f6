//! Stage 2 output: typed Step Functions history events.
//!
//! `model` holds the domain types, `wire` the serde shapes of log lines and
//! detail objects, `history` the `GetExecutionHistory` loader, `arn` the
//! execution ARN parser and `lenient` the string-or-number readers.

pub mod arn;
pub mod history;
pub mod kind;
pub mod lenient;
pub mod log_line;
pub mod model;
pub mod params;
pub mod wire;

pub use arn::{ArnError, ExecutionArn, WorkflowType};
pub use history::{load_history, HistoryError};
pub use kind::{DetailsShape, EventKind};
pub use model::{
    Details, Event, Failure, LogSource, OtherDetails, Payload, TaskResource, TaskScheduled,
};
pub use params::StreamParams;
pub use wire::{parse_log_line, EventError, LineError, StringCache};
