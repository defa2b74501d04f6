//! Every way a Firehose request can fail, with the status Firehose should see.
//! Only 413 is final for Firehose (it drops the batch without S3 backup), so
//! it is used only for bodies the protocol never produces.

use crate::decode::BodyError;
use axum::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum FirehoseError {
    #[error("missing X-Amz-Firehose-Request-Id header")]
    MissingRequestId,
    #[error("missing X-Amz-Firehose-Access-Key header")]
    MissingAccessKey,
    #[error("invalid access key")]
    InvalidAccessKey,
    #[error("unsupported Content-Encoding {0:?}: only gzip or none")]
    UnsupportedEncoding(String),
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("could not read request body: {0}")]
    BodyRead(String),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("overloaded: too many concurrent requests, retry later")]
    Overloaded,
    #[error("overloaded: processing queue is full, retry later")]
    QueueFull,
    #[error("shutting down, retry later")]
    ShuttingDown,
    #[error("recovering state after a restart, retry later")]
    Recovering,
    #[error("cannot make the request durable, retry later: {0}")]
    NotDurable(#[from] crate::durable::wal::WalError),
    #[error("cannot store the request in JetStream, retry later: {0}")]
    NotStored(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl FirehoseError {
    pub fn status(&self) -> StatusCode {
        use FirehoseError::*;
        match self {
            MissingRequestId | BodyRead(_) => StatusCode::BAD_REQUEST,
            Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Body(_) => StatusCode::BAD_REQUEST,
            MissingAccessKey | InvalidAccessKey => StatusCode::UNAUTHORIZED,
            UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Overloaded | QueueFull | ShuttingDown | Recovering | NotDurable(_) | NotStored(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Low-cardinality label for `stepstitch_firehose_rejections_total`.
    pub fn reason(&self) -> &'static str {
        use FirehoseError::*;
        match self {
            MissingRequestId => "missing_request_id",
            MissingAccessKey => "missing_access_key",
            InvalidAccessKey => "invalid_access_key",
            UnsupportedEncoding(_) => "unsupported_encoding",
            BodyTooLarge { .. } => "body_too_large",
            BodyRead(_) => "body_read",
            Body(BodyError::TooLarge { .. }) => "body_too_large",
            Body(BodyError::Gzip(_)) => "body_gzip",
            Body(BodyError::InvalidJson(_)) => "invalid_json",
            Body(BodyError::AllRecordsInvalid { .. }) => "all_records_invalid",
            Body(BodyError::DecodeBudget { .. }) => "decode_budget",
            Overloaded => "overloaded",
            QueueFull => "queue_full",
            ShuttingDown => "shutting_down",
            Recovering => "recovering",
            NotDurable(_) => "not_durable",
            NotStored(_) => "not_stored",
            Internal(_) => "internal",
        }
    }
}
