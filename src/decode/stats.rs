//! Per-request decode counters. Kept in plain arrays and published to the
//! metrics registry once per request, never per record.

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const COUNT: usize = [$($label),+].len();
            /// The metric label value.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }
    };
}

label_enum!(
    /// What a record turned out to hold (by its first JSON value); `other`
    /// is well-formed JSON that is neither an envelope nor a Step Functions line.
    RecordKind {
        DataMessage => "data_message",
        ControlMessage => "control_message",
        ExtractedLines => "extracted_lines",
        Empty => "empty",
        Other => "other",
        Invalid => "invalid",
    }
);

label_enum!(
    /// Why a record, or one log message inside it, was skipped.
    FailureReason {
        Base64 => "base64",
        Gzip => "gzip",
        TooLarge => "too_large",
        RequestBudget => "request_budget",
        Json => "json",
        UnknownMessageType => "unknown_message_type",
        NotStepFunctions => "not_step_functions",
        InvalidEvent => "invalid_event",
    }
);

impl FailureReason {
    /// A structural failure makes its record unreadable; the other reasons
    /// concern well-formed content that is not a usable Step Functions event.
    pub fn is_structural(self) -> bool {
        !matches!(
            self,
            FailureReason::NotStepFunctions | FailureReason::InvalidEvent
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct DecodeStats {
    pub records: u64,
    pub by_kind: [u64; RecordKind::COUNT],
    pub failures: [u64; FailureReason::COUNT],
    /// Records that could not be read at all (a structural failure, no events).
    pub bad_records: u64,
    pub gzip_records: u64,
    pub log_events: u64,
    pub control_messages: u64,
    pub events: u64,
    /// Bytes after base64 and gunzip, summed over records.
    pub decoded_bytes: u64,
    /// The first failure, for the log line and the Firehose errorMessage.
    pub first_failure: Option<(usize, FailureReason, String)>,
}

impl DecodeStats {
    pub fn kind(&self, k: RecordKind) -> u64 {
        self.by_kind[k as usize]
    }

    pub fn failure(&self, r: FailureReason) -> u64 {
        self.failures[r as usize]
    }

    pub fn total_failures(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// Every record failed: see the policy in `docs/firehose.md`.
    pub fn all_records_bad(&self) -> bool {
        self.records > 0 && self.bad_records == self.records
    }
}

/// A request fully decoded: its counters published, the request counted,
/// and its skipped records logged once (the decode worker and, in cluster
/// mode, the Firehose handler both end a request this way).
pub fn finish(stats: &DecodeStats) {
    publish(stats);
    metrics::counter!(crate::telemetry::names::REQUESTS_DECODED).increment(1);
    if let Some((index, reason, message)) = &stats.first_failure {
        tracing::warn!(
            skipped = stats.total_failures(),
            first_record = index,
            first_reason = reason.label(),
            first_error = %message,
            "skipped undecodable records or log messages"
        );
    }
}

/// Publishes one request's decode counters (once per request, not per record).
pub fn publish(stats: &DecodeStats) {
    use crate::telemetry::names;
    use metrics::counter;
    for kind in RecordKind::ALL {
        let n = stats.kind(*kind);
        if n > 0 {
            counter!(names::FIREHOSE_RECORDS, "kind" => kind.label()).increment(n);
        }
    }
    for reason in FailureReason::ALL {
        let n = stats.failure(*reason);
        if n > 0 {
            counter!(names::DECODE_FAILURES, "reason" => reason.label()).increment(n);
        }
    }
    counter!(names::FIREHOSE_CONTROL_MESSAGES).increment(stats.control_messages);
    counter!(names::FIREHOSE_LOG_EVENTS).increment(stats.log_events);
    counter!(names::EVENTS_DECODED).increment(stats.events);
    counter!(names::FIREHOSE_BYTES_DECODED).increment(stats.decoded_bytes);
}
