//! `stepstitch backfill`: past executions of a state machine, read with
//! ListExecutions and GetExecutionHistory, written as the log lines Step
//! Functions would have delivered, and sent through Firehose requests to a
//! running server (`--target`) or to the same pipeline started in this
//! process (with the serve settings: exporters, store). The traces, ids
//! and metrics are those of live delivery; a server drops the events of
//! executions its store holds as ended, so re-running adds nothing.
//! Express workflows have no history API: they are refused with the reason.

pub mod firehose;
pub mod progress;
pub mod settings;

use crate::app::settings::Settings;
use crate::app::App;
use crate::aws::{AwsArgs, AwsError, Sfn};
use crate::clock::{Clock, SystemClock};
use crate::events::log_line::{events_to_log_lines, LogLineError};
use progress::{Counts, Progress};
use serde_json::Value;
pub use settings::{BackfillArgs, BackfillSettings};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Setting(#[from] crate::settings::ConfigError),
    #[error("{0}")]
    Client(#[from] crate::aws::ClientError),
    #[error("reading the state machine's executions: {0}")]
    List(AwsError),
    #[error("the pipeline in this process: {0}")]
    App(String),
    #[error("the target refused a request ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("the target did not take a request after {attempts} attempts: {last}")]
    Unreachable { attempts: u32, last: String },
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub state_machine: String,
    pub counts: Counts,
    pub seconds: f64,
    pub failures: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "backfill of {}: {} executions found, {} sent ({} events in {} requests), {} failed, in {:.1} s",
            self.state_machine, c.executions, c.done, c.events, c.requests, c.failed, self.seconds
        )?;
        for e in &self.failures {
            writeln!(f, "  failed: {e}")?;
        }
        write!(
            f,
            "executions the server's store already holds as ended are dropped there (stepstitch_backfill_skipped_events_total)"
        )
    }
}

/// Where the requests go.
struct Sink {
    url: String,
    key: Option<String>,
    client: reqwest::Client,
    attributes: String,
}

pub async fn run(mut args: BackfillArgs) -> Result<Summary, BackfillError> {
    let s = args.validate()?;
    let rate = AwsArgs {
        aws: "read".into(),
        aws_calls_per_second: args.serve.aws.aws_calls_per_second.clone(),
    }
    .validate()?
    .calls_per_second;
    let sfn = Sfn::from_env(rate).await?;
    let mut running = None;
    let (url, key) = match &s.target {
        Some(t) => (t.clone(), args.serve.firehose.access_keys.first().cloned()),
        None => {
            // The same pipeline as `serve`, on loopback ports of its own.
            if args.serve.firehose.access_keys.is_empty() {
                args.serve.firehose.access_keys = vec![firehose::fresh_id()];
            }
            let key = args.serve.firehose.access_keys.first().cloned();
            args.serve.firehose.listen = "127.0.0.1:0".into();
            args.serve.admin.admin_listen = "127.0.0.1:0".into();
            let settings = Settings::from_args(args.serve.clone())?;
            if settings.cluster.is_some() {
                // A process of its own would join the cluster and take
                // partitions away from the replicas for its few seconds.
                return Err(BackfillError::App(
                    "cluster mode is set (STEPSTITCH_CLUSTER_NATS_URL): send the backfill to a replica with --target https://<replica>/firehose".into(),
                ));
            }
            let app = App::build(settings)
                .await
                .map_err(|e| BackfillError::App(format!("{e:#}")))?;
            let addr = app
                .ingest_addr()
                .map_err(|e| BackfillError::App(e.to_string()))?;
            running = Some(
                app.spawn()
                    .await
                    .map_err(|e| BackfillError::App(format!("{e:#}")))?,
            );
            (format!("http://{addr}/firehose"), key)
        }
    };
    let sink = Sink {
        url,
        key,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()
            .map_err(|e| BackfillError::App(e.to_string()))?,
        attributes: firehose::attributes_header(&s.attributes),
    };
    let result = backfill(&sfn, &s, &sink).await;
    if let Some(r) = running {
        // Flushes every exporter and the store before the summary.
        r.drain().await;
    }
    result
}

async fn backfill(sfn: &Sfn, s: &BackfillSettings, sink: &Sink) -> Result<Summary, BackfillError> {
    let mut progress = Progress::new();
    let since_ms = SystemClock.now_ms() - s.since.as_millis() as i64;
    progress.say(&format!(
        "listing executions of {} started in the last {}{}",
        s.state_machine,
        humantime::format_duration(s.since),
        s.status
            .as_deref()
            .map(|st| format!(" with status {st}"))
            .unwrap_or_default()
    ));
    let machine_info = sfn
        .definition_of(&s.state_machine)
        .await
        .map_err(BackfillError::List)?;
    if machine_info.workflow_type.as_deref() == Some("EXPRESS") {
        return Err(BackfillError::List(AwsError::Express(
            s.state_machine.clone(),
        )));
    }
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = sfn
            .list_executions(&s.state_machine, s.status.as_deref(), token)
            .await
            .map_err(BackfillError::List)?;
        let past_window = page.iter().any(|e| e.start_ms < since_ms);
        arns.extend(
            page.into_iter()
                .filter(|e| e.start_ms >= since_ms)
                .map(|e| e.execution_arn),
        );
        // Newest first: once one is older than the window, all next are.
        if past_window || next.is_none() {
            break;
        }
        token = next;
    }
    // Oldest first, as they happened.
    arns.reverse();
    let account = s
        .state_machine
        .split(':')
        .nth(4)
        .unwrap_or_default()
        .to_owned();
    let machine = s
        .state_machine
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut counts = Counts {
        executions: arns.len(),
        ..Counts::default()
    };
    let mut failures = Vec::new();
    progress.show(&counts);
    for arn in &arns {
        let lines = match history_lines(sfn, arn).await {
            Ok(l) => l,
            Err(e) => {
                counts.failed += 1;
                failures.push(format!("{arn}: {e}"));
                progress.show(&counts);
                continue;
            }
        };
        let records: Vec<(String, usize)> = firehose::records(&lines, &account, &machine)
            .into_iter()
            .zip(lines.chunks(500).map(<[String]>::len))
            .collect();
        for r in firehose::requests(records, SystemClock.now_ms(), firehose::fresh_id) {
            send(sink, &r).await?;
            counts.requests += 1;
            counts.events += r.lines;
        }
        counts.done += 1;
        progress.show(&counts);
    }
    Ok(Summary {
        state_machine: s.state_machine.clone(),
        counts,
        seconds: progress.elapsed().as_secs_f64(),
        failures,
    })
}

#[derive(Debug, thiserror::Error)]
enum HistoryError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Lines(#[from] LogLineError),
}

/// Every page of an execution's history, as one document's log lines.
async fn history_lines(sfn: &Sfn, arn: &str) -> Result<Vec<String>, HistoryError> {
    let mut events: Vec<Value> = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = sfn.history_page(arn, token).await?;
        let mut doc: Value = serde_json::from_str(&page).map_err(LogLineError::from)?;
        if let Some(Value::Array(a)) = doc.get_mut("events").map(Value::take) {
            events.extend(a);
        }
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(events_to_log_lines(events, arn)?)
}

/// One request, retried like Firehose (backoff, 8 attempts) when the
/// server is busy or away; a refusal (bad key, bad body) stops the run.
async fn send(sink: &Sink, r: &firehose::Request) -> Result<(), BackfillError> {
    let mut wait = Duration::from_millis(500);
    let mut last = String::new();
    const ATTEMPTS: u32 = 8;
    for _ in 0..ATTEMPTS {
        let mut req = sink
            .client
            .post(&sink.url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", &r.id)
            .header("X-Amz-Firehose-Common-Attributes", &sink.attributes)
            .body(r.body.clone());
        if let Some(k) = &sink.key {
            req = req.header("X-Amz-Firehose-Access-Key", k);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if resp.status().is_server_error() || resp.status() == 429 => {
                last = format!("HTTP {}", resp.status());
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                return Err(BackfillError::Refused { status, body });
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
    Err(BackfillError::Unreachable {
        attempts: ATTEMPTS,
        last,
    })
}
