//! The shared backend: one PostgreSQL database that several replicas write
//! and read (`STEPSTITCH_STORE=postgres://...`). Same rows as the SQLite
//! backend; every write is one transaction of a handful of statements
//! whatever the batch size (arrays through `UNNEST`), because a statement
//! per row costs a network round trip each.
//!
//! Connections are made on first use and again after one breaks (at most
//! every `RETRY`), so a database that is down at start or restarts later
//! only pauses the store: writes fail and are counted meanwhile, Firehose
//! data is never refused for it. The sync `postgres` client runs its own
//! small runtime: calls come from the store writer's thread and from
//! `spawn_blocking`, never from async code.

use super::chunks::{log_key, merge_spans, pack, unpack, StateSpans};
use super::digest::WriteBatch;
use super::model::*;
use super::stats::{Run, Started};
use super::{Store, StoreError};
use postgres::types::ToSql;
use postgres::{Client, Row};
use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Each entry moves the schema one version up; never edit a released one.
/// Indexes end in the ARN so newest-first pages (start, then ARN) are
/// read straight off them; the health index covers what the figures read.
const MIGRATIONS: &[&str] = &[
    // 1: executions, span chunks, logs, definitions.
    "CREATE TABLE state_machines(arn TEXT PRIMARY KEY, name TEXT NOT NULL);
     CREATE TABLE executions(
        arn TEXT PRIMARY KEY, name TEXT NOT NULL, state_machine_arn TEXT NOT NULL,
        status TEXT NOT NULL, start_ms BIGINT NOT NULL, stop_ms BIGINT,
        redrive_count BIGINT NOT NULL DEFAULT 0, error TEXT, cause TEXT,
        bytes BIGINT NOT NULL DEFAULT 0);
     CREATE INDEX executions_time ON executions(start_ms, arn);
     CREATE INDEX executions_sm_health ON executions(state_machine_arn, start_ms, arn)
        INCLUDE (status, stop_ms);
     CREATE INDEX executions_status ON executions(status, start_ms, arn);
     CREATE INDEX executions_sm_status ON executions(state_machine_arn, status, start_ms, arn);
     CREATE TABLE span_chunks(
        id BIGSERIAL PRIMARY KEY, execution_arn TEXT NOT NULL, json TEXT NOT NULL);
     CREATE INDEX span_chunks_execution ON span_chunks(execution_arn);
     CREATE TABLE logs(
        execution_arn TEXT NOT NULL, key BIGINT NOT NULL, timestamp_ms BIGINT NOT NULL,
        span_id BIGINT NOT NULL, error BOOLEAN NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY(execution_arn, key));
     CREATE TABLE definitions(
        state_machine_arn TEXT PRIMARY KEY, definition TEXT NOT NULL,
        source TEXT NOT NULL, loaded_ms BIGINT NOT NULL);",
    // 2: chunks packed (`chunks::pack`); rows written as text stay.
    "ALTER TABLE span_chunks ADD COLUMN packed BYTEA;
     ALTER TABLE span_chunks ALTER COLUMN json DROP NOT NULL;",
];

/// Replicas starting together migrate one at a time (any constant works;
/// this one is "stepstitch" in ASCII, cut to 63 bits).
const MIGRATION_LOCK: i64 = 0x7374_6570_7374_6974;
/// How long a connection attempt may take, and how often one is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(2);
/// Executions deleted per retention transaction.
const SLICE: i64 = 5_000;

/// Where and how to connect: the URL as given (libpq's URL form) less the
/// two things `tokio-postgres` does not take (`sslrootcert`, the
/// `verify-*` modes), which are ours: TLS always verifies the server's
/// certificate, against the system's roots or the `sslrootcert` bundle.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// For logs: host and database, never the password.
    pub shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Target {
    /// Parses a `postgres://` URL; the error never repeats the password.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut root_cert = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslrootcert", path)) => root_cert = Some(path.to_owned()),
                Some(("sslmode", "verify-full" | "verify-ca")) => kept.push("sslmode=require"),
                _ => kept.push(pair),
            }
        }
        let cleaned = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = postgres::Config::from_str(&cleaned)
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("stepstitch");
        }
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => None,
            _ => Some(tls(root_cert.as_deref())?),
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let shown = format!(
            "postgres://{}/{}",
            hosts.join(","),
            config.get_dbname().unwrap_or("")
        );
        Ok(Target { config, tls, shown })
    }

    fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
    }
}

/// A rustls client that trusts the system's roots, or only the bundle
/// named (RDS and Cloud SQL sign with their own CAs).
fn tls(root_cert: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert {path}: no certificate in it"));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A connection made on demand and dropped when it breaks.
struct Conn {
    client: Option<Client>,
    next_try: Option<Instant>,
    /// Why the last attempt failed (repeated until the next one).
    last_error: String,
}

pub struct PostgresStore {
    target: Target,
    writer: Mutex<Conn>,
    reader: Mutex<Conn>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing a client runs its runtime, which panics inside async
        // code (where the last handle to the store may be dropped).
        let clients: Vec<Client> = [&mut self.writer, &mut self.reader]
            .into_iter()
            .filter_map(|m| m.get_mut().unwrap_or_else(|e| e.into_inner()).client.take())
            .collect();
        if !clients.is_empty() {
            let _ = std::thread::spawn(move || drop(clients)).join();
        }
    }
}

/// PostgreSQL's text cannot hold NUL: one in a log line or an error
/// would fail the whole batch, so it becomes U+FFFD.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: &Option<String>) -> Option<String> {
    s.as_deref().map(|s| text(s).into_owned())
}

/// A chunk from columns `at` (text, as version 1 wrote) and `at + 1`
/// (packed); a damaged one reads as no spans.
fn chunk_text(r: &Row, at: usize) -> String {
    match (
        r.get::<_, Option<String>>(at),
        r.get::<_, Option<&[u8]>>(at + 1),
    ) {
        (_, Some(packed)) => unpack(packed).unwrap_or_default(),
        (Some(text), None) => text,
        (None, None) => String::new(),
    }
}

fn summary(r: &Row) -> ExecutionSummary {
    let status: &str = r.get(3);
    ExecutionSummary {
        arn: r.get(0),
        name: r.get(1),
        state_machine_arn: r.get(2),
        status: Status::parse(status).unwrap_or(Status::Running),
        start_ms: r.get(4),
        stop_ms: r.get(5),
        redrive_count: r.get::<_, i64>(6).clamp(0, u32::MAX as i64) as u32,
        error: r.get(7),
        cause: r.get(8),
    }
}

const SUMMARY: &str =
    "arn, name, state_machine_arn, status, start_ms, stop_ms, redrive_count, error, cause";

fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS stepstitch_schema(version INTEGER NOT NULL)")?;
    let found: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0)::bigint FROM stepstitch_schema",
            &[],
        )?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::Newer { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO stepstitch_schema(version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl PostgresStore {
    /// Nothing is connected yet: the first call connects (and migrates).
    pub fn new(target: Target) -> PostgresStore {
        let conn = || {
            Mutex::new(Conn {
                client: None,
                next_try: None,
                last_error: String::new(),
            })
        };
        PostgresStore {
            target,
            writer: conn(),
            reader: conn(),
        }
    }

    /// Connects now (and migrates): for tests and for a clear first log.
    pub fn connect(&self) -> Result<(), StoreError> {
        self.with(&self.writer, |_| Ok(()))
    }

    /// Runs `f` on a live connection, connecting first when there is none
    /// (not more often than every `RETRY`); a connection found broken
    /// after `f` is dropped so the next call makes a new one.
    fn with<T>(
        &self,
        m: &Mutex<Conn>,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn: MutexGuard<'_, Conn> = m.lock().unwrap_or_else(|e| e.into_inner());
        if conn.client.as_ref().is_none_or(|c| c.is_closed()) {
            conn.client = None;
            if conn.next_try.is_some_and(|t| Instant::now() < t) {
                return Err(StoreError::Unavailable(format!(
                    "{}: {}; retrying",
                    self.target.shown, conn.last_error
                )));
            }
            conn.next_try = Some(Instant::now() + RETRY);
            let connected = self.target.connect().map_err(StoreError::from);
            let client = match connected.and_then(|mut c| migrate(&mut c).map(|()| c)) {
                Ok(c) => c,
                Err(e) => {
                    conn.last_error = e.to_string();
                    return Err(e);
                }
            };
            tracing::info!(store = %self.target.shown, "execution store connected");
            conn.client = Some(client);
        }
        let Some(client) = conn.client.as_mut() else {
            unreachable!("connected above")
        };
        let out = f(client);
        if client.is_closed() {
            conn.client = None;
        }
        out
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(&self.reader, f)
    }
}

impl Store for PostgresStore {
    fn write(&self, b: &WriteBatch) -> Result<(), StoreError> {
        // Columns, one array each (UNNEST zips them back into rows).
        let mut machines: Vec<(&str, &str)> = b
            .executions
            .iter()
            .map(|e| (e.state_machine_arn.as_str(), e.state_machine_name.as_str()))
            .collect();
        machines.sort_unstable();
        machines.dedup_by(|a, b| a.0 == b.0);
        let sm_arns: Vec<Cow<str>> = machines.iter().map(|m| text(m.0)).collect();
        let sm_names: Vec<Cow<str>> = machines.iter().map(|m| text(m.1)).collect();

        let mut log_bytes: HashMap<&str, i64> = HashMap::new();
        for l in &b.logs {
            *log_bytes.entry(l.execution_arn.as_str()).or_default() += l.log.message.len() as i64;
        }
        let arns: Vec<Cow<str>> = b.executions.iter().map(|e| text(&e.arn)).collect();
        let names: Vec<Cow<str>> = b.executions.iter().map(|e| text(&e.name)).collect();
        let sms: Vec<Cow<str>> = b
            .executions
            .iter()
            .map(|e| text(&e.state_machine_arn))
            .collect();
        let starts: Vec<i64> = b.executions.iter().map(|e| e.start_ms).collect();
        // Chunks as stored; their sizes are what the size bound counts.
        let packed: Vec<Option<Vec<u8>>> = b
            .executions
            .iter()
            .map(|e| (!e.spans.is_empty()).then(|| pack(&e.spans.finish())))
            .collect();
        let bytes: Vec<i64> = packed
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.len() as i64))
            .collect();

        let ended: Vec<_> = b
            .executions
            .iter()
            .filter_map(|e| e.end.as_ref().map(|x| (e, x)))
            .collect();
        let end_arns: Vec<Cow<str>> = ended.iter().map(|(e, _)| text(&e.arn)).collect();
        let end_status: Vec<&str> = ended.iter().map(|(_, x)| x.status.as_str()).collect();
        let end_stop: Vec<i64> = ended.iter().map(|(_, x)| x.stop_ms).collect();
        let end_redrives: Vec<i64> = ended.iter().map(|(_, x)| x.redrive_count as i64).collect();
        let end_errors: Vec<Option<String>> =
            ended.iter().map(|(_, x)| opt_text(&x.error)).collect();
        let end_causes: Vec<Option<String>> =
            ended.iter().map(|(_, x)| opt_text(&x.cause)).collect();

        let (chunk_arns, chunk_packed): (Vec<Cow<str>>, Vec<&[u8]>) = b
            .executions
            .iter()
            .zip(&packed)
            .filter_map(|(e, p)| Some((text(&e.arn), p.as_deref()?)))
            .unzip();

        let log_arns: Vec<Cow<str>> = b.logs.iter().map(|l| text(&l.execution_arn)).collect();
        let log_keys: Vec<i64> = b.logs.iter().map(|l| log_key(&l.log.message)).collect();
        let log_times: Vec<i64> = b.logs.iter().map(|l| l.log.timestamp_ms).collect();
        let log_spans: Vec<i64> = b.logs.iter().map(|l| l.log.span_id as i64).collect();
        let log_errors: Vec<bool> = b.logs.iter().map(|l| l.log.error).collect();
        let log_messages: Vec<Cow<str>> = b.logs.iter().map(|l| text(&l.log.message)).collect();
        let (grown_arns, grown_bytes): (Vec<&str>, Vec<i64>) = log_bytes.into_iter().unzip();

        self.with(&self.writer, |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO state_machines(arn, name)
                 SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                &[&sm_arns, &sm_names],
            )?;
            tx.execute(
                "INSERT INTO executions(arn, name, state_machine_arn, status, start_ms, bytes)
                 SELECT a, n, s, 'RUNNING', t, b
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) AS x(a, n, s, t, b)
                 ON CONFLICT (arn) DO UPDATE SET
                   start_ms = LEAST(executions.start_ms, excluded.start_ms),
                   bytes = executions.bytes + excluded.bytes",
                &[&arns, &names, &sms, &starts, &bytes],
            )?;
            if !ended.is_empty() {
                // A redrive's end wins over a late copy of an earlier run's.
                tx.execute(
                    "UPDATE executions e SET status = x.st, stop_ms = x.stop, redrive_count = x.rc,
                       error = x.err, cause = x.cause
                     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[])
                       AS x(a, st, stop, rc, err, cause)
                     WHERE e.arn = x.a AND e.redrive_count <= x.rc",
                    &[&end_arns, &end_status, &end_stop, &end_redrives, &end_errors, &end_causes],
                )?;
            }
            if !chunk_arns.is_empty() {
                tx.execute(
                    "INSERT INTO span_chunks(execution_arn, packed)
                     SELECT * FROM UNNEST($1::text[], $2::bytea[])",
                    &[&chunk_arns, &chunk_packed],
                )?;
            }
            if !b.logs.is_empty() {
                tx.execute(
                    "INSERT INTO logs(execution_arn, key, timestamp_ms, span_id, error, message)
                     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::bool[], $6::text[])
                     ON CONFLICT DO NOTHING",
                    &[&log_arns, &log_keys, &log_times, &log_spans, &log_errors, &log_messages],
                )?;
                tx.execute(
                    "UPDATE executions e SET bytes = e.bytes + x.n
                     FROM UNNEST($1::text[], $2::int8[]) AS x(a, n) WHERE e.arn = x.a",
                    &[&grown_arns, &grown_bytes],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn state_machines(&self, w: Window) -> Result<Vec<Started>, StoreError> {
        self.read(|c| {
            let machines: Vec<(String, String)> = c
                .query("SELECT arn, name FROM state_machines", &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let q = c.prepare(
                "SELECT status, start_ms, stop_ms FROM executions
                 WHERE state_machine_arn = $1 AND start_ms >= $2 AND start_ms < $3",
            )?;
            let mut out = Vec::new();
            for (arn, name) in machines {
                let runs: Vec<Run> = c
                    .query(&q, &[&arn, &w.from_ms, &w.to_ms])?
                    .iter()
                    .map(|r| Run {
                        status: Status::parse(r.get(0)).unwrap_or(Status::Running),
                        start_ms: r.get(1),
                        stop_ms: r.get(2),
                    })
                    .collect();
                if !runs.is_empty() {
                    out.push(Started { arn, name, runs });
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name).then(a.arn.cmp(&b.arn)));
            Ok(out)
        })
    }

    fn executions(&self, q: &ExecutionQuery) -> Result<Page, StoreError> {
        let limit = q.limit.max(1);
        let fetch = limit as i64 + 1;
        let status = q.status.map(|s| s.as_str());
        let mut sql =
            format!("SELECT {SUMMARY} FROM executions WHERE start_ms >= $1 AND start_ms < $2");
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&q.window.from_ms, &q.window.to_ms];
        if let Some(sm) = &q.state_machine {
            args.push(sm);
            sql.push_str(&format!(" AND state_machine_arn = ${}", args.len()));
        }
        if let Some(s) = &status {
            args.push(s);
            sql.push_str(&format!(" AND status = ${}", args.len()));
        }
        if let Some(cur) = &q.cursor {
            args.push(&cur.start_ms);
            args.push(&cur.arn);
            let n = args.len();
            sql.push_str(&format!(" AND (start_ms, arn) < (${}, ${n})", n - 1));
        }
        args.push(&fetch);
        sql.push_str(&format!(
            " ORDER BY start_ms DESC, arn DESC LIMIT ${}",
            args.len()
        ));
        self.read(|c| {
            let rows = c.query(&sql, &args)?.iter().map(summary).collect();
            Ok(Page::from_rows(rows, limit))
        })
    }

    fn execution(&self, arn: &str) -> Result<Option<ExecutionSummary>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                &format!("SELECT {SUMMARY} FROM executions WHERE arn = $1"),
                &[&arn],
            )?
            .as_ref()
            .map(summary))
        })
    }

    fn spans(&self, arn: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let rows = c.query(
                "SELECT json, packed FROM span_chunks WHERE execution_arn = $1",
                &[&arn],
            )?;
            Ok(merge_spans(rows.iter().map(|r| chunk_text(r, 0))))
        })
    }

    fn state_spans(
        &self,
        state_machine_arn: &str,
        w: Window,
        limit: usize,
    ) -> Result<Vec<StateSpan>, StoreError> {
        self.read(|c| {
            let rows = c.query(
                "SELECT c.execution_arn, c.json, c.packed
                 FROM (SELECT arn FROM executions
                       WHERE state_machine_arn = $1 AND start_ms >= $2 AND start_ms < $3
                       ORDER BY start_ms DESC LIMIT $4) e
                 JOIN span_chunks c ON c.execution_arn = e.arn",
                &[&state_machine_arn, &w.from_ms, &w.to_ms, &(limit as i64)],
            )?;
            let mut spans = StateSpans::default();
            for r in &rows {
                spans.add(r.get(0), &chunk_text(r, 1));
            }
            Ok(spans.out)
        })
    }

    fn logs(&self, arn: &str, limit: usize) -> Result<Vec<StoredLog>, StoreError> {
        self.read(|c| {
            let rows = c.query(
                "SELECT timestamp_ms, span_id, error, message FROM logs
                 WHERE execution_arn = $1 ORDER BY timestamp_ms, key LIMIT $2",
                &[&arn, &(limit as i64)],
            )?;
            Ok(rows
                .iter()
                .map(|r| StoredLog {
                    timestamp_ms: r.get(0),
                    span_id: r.get::<_, i64>(1) as u64,
                    error: r.get(2),
                    message: r.get(3),
                })
                .collect())
        })
    }

    fn definition(&self, state_machine_arn: &str) -> Result<Option<Definition>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT definition, source, loaded_ms FROM definitions WHERE state_machine_arn = $1",
                &[&state_machine_arn],
            )?
            .map(|r| Definition {
                state_machine_arn: state_machine_arn.to_owned(),
                definition: r.get(0),
                source: r.get(1),
                loaded_ms: r.get(2),
            }))
        })
    }

    fn put_definition(&self, d: &Definition) -> Result<(), StoreError> {
        self.with(&self.writer, |c| {
            c.execute(
                "INSERT INTO definitions(state_machine_arn, definition, source, loaded_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (state_machine_arn) DO UPDATE SET definition = excluded.definition,
                   source = excluded.source, loaded_ms = excluded.loaded_ms",
                &[
                    &text(&d.state_machine_arn),
                    &text(&d.definition),
                    &d.source,
                    &d.loaded_ms,
                ],
            )?;
            Ok(())
        })
    }

    /// Retention by start time, then the size bound. PostgreSQL does not
    /// give deleted space back to the disk (autovacuum makes it reusable),
    /// so the bound is checked first against the tables' size on disk and,
    /// past it, against the bytes held (packed spans and log lines counted
    /// per execution as written): the oldest go until those fit.
    fn prune(&self, before_ms: i64, max_bytes: u64) -> Result<usize, StoreError> {
        self.with(&self.writer, |c| {
            // Replicas pruning at once take different rows (SKIP LOCKED).
            let slice = |c: &mut Client, before: i64| -> Result<(usize, i64), StoreError> {
                let r = c.query_one(
                    "WITH doomed AS (
                       SELECT arn, bytes FROM executions WHERE start_ms < $1
                       ORDER BY start_ms, arn LIMIT $2 FOR UPDATE SKIP LOCKED),
                     s AS (DELETE FROM span_chunks WHERE execution_arn IN (SELECT arn FROM doomed)),
                     l AS (DELETE FROM logs WHERE execution_arn IN (SELECT arn FROM doomed)),
                     e AS (DELETE FROM executions WHERE arn IN (SELECT arn FROM doomed) RETURNING bytes)
                     SELECT count(*), coalesce(sum(bytes), 0)::bigint FROM e",
                    &[&before, &SLICE],
                )?;
                Ok((r.get::<_, i64>(0) as usize, r.get(1)))
            };
            let mut gone = 0;
            loop {
                let (n, _) = slice(c, before_ms)?;
                gone += n;
                if n == 0 {
                    break;
                }
            }
            let on_disk: i64 = c
                .query_one(
                    "SELECT (pg_total_relation_size('executions') + pg_total_relation_size('span_chunks')
                       + pg_total_relation_size('logs'))::bigint",
                    &[],
                )?
                .get(0);
            if on_disk as u64 > max_bytes {
                let mut held: i64 = c
                    .query_one("SELECT coalesce(sum(bytes), 0)::bigint FROM executions", &[])?
                    .get(0);
                while held as u64 > max_bytes {
                    let (n, freed) = slice(c, i64::MAX)?;
                    gone += n;
                    held -= freed;
                    if n == 0 {
                        break;
                    }
                }
            }
            Ok(gone)
        })
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_one("SELECT count(*) FROM executions", &[])?.get(0);
            Ok(n as u64)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::conformance::{self as c, exec, write};

    /// A new, empty database on the test server (`scripts/postgres.sh`,
    /// started by `scripts/test.sh`): its URL. None, and the test skipped,
    /// without one; under CI (`CI` set) a missing server fails the test.
    pub fn fresh_database() -> Option<String> {
        let Ok(admin) = std::env::var("STEPSTITCH_TEST_POSTGRES") else {
            let msg = "STEPSTITCH_TEST_POSTGRES unset: run scripts/test.sh";
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "unit_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        // From a plain thread: the sync client must not run inside async code.
        let admin2 = admin.clone();
        let name2 = name.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&admin2, postgres::NoTls).unwrap();
            // Two statements: a multi-statement string is one transaction.
            c.batch_execute(&format!("DROP DATABASE IF EXISTS {name2}"))
                .unwrap();
            c.batch_execute(&format!("CREATE DATABASE {name2}"))
                .unwrap();
        })
        .join()
        .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        Some(format!("{base}/{name}"))
    }

    fn open(url: &str) -> PostgresStore {
        let st = PostgresStore::new(Target::parse(url).unwrap());
        st.connect().unwrap();
        st
    }

    #[test]
    fn reopening_keeps_everything_and_writes_are_idempotent() {
        let Some(url) = fresh_database() else { return };
        c::reopening_keeps_everything_and_writes_are_idempotent(&|| Box::new(open(&url)));
    }

    #[test]
    fn retention_deletes_the_old_and_nothing_else() {
        let Some(url) = fresh_database() else { return };
        c::retention_deletes_the_old_and_nothing_else(&open(&url));
    }

    #[test]
    fn pages_are_newest_first_and_filter() {
        let Some(url) = fresh_database() else { return };
        c::pages_are_newest_first_and_filter(&open(&url));
    }

    #[test]
    fn logs_definitions_and_awkward_text() {
        let Some(url) = fresh_database() else { return };
        c::logs_definitions_and_awkward_text(&open(&url));
    }

    #[test]
    fn replicas_share_one_schema_and_a_newer_one_is_refused() {
        let Some(url) = fresh_database() else { return };
        // Several replicas starting at once migrate once.
        let stores: Vec<PostgresStore> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(|| open(&url))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        write(&stores[0], vec![exec("a", 1, None)], vec![]);
        assert!(stores[3].execution("a").unwrap().is_some());
        // A chunk as schema version 1 wrote it (text) still reads.
        stores[0]
            .with(&stores[0].writer, |c| {
                c.batch_execute(
                    "INSERT INTO span_chunks(execution_arn, json) VALUES ('a', '[{\"span_id\":9,\"start\":0}]')",
                )?;
                Ok(())
            })
            .unwrap();
        assert_eq!(stores[2].spans("a").unwrap(), vec![c::span_json(9)]);
        stores[1]
            .with(&stores[1].writer, |c| {
                c.batch_execute("INSERT INTO stepstitch_schema VALUES (99)")?;
                Ok(())
            })
            .unwrap();
        let late = PostgresStore::new(Target::parse(&url).unwrap());
        assert!(matches!(
            late.connect(),
            Err(StoreError::Newer { found: 99, .. })
        ));
    }

    #[test]
    fn a_lost_connection_is_made_again() {
        let Some(url) = fresh_database() else { return };
        let st = open(&url);
        write(&st, vec![exec("a", 1, None)], vec![]);
        // The server ends the writer's session (as a restart or a proxy would).
        let pid: i32 = st
            .with(&st.writer, |c| {
                Ok(c.query_one("SELECT pg_backend_pid()", &[])?.get(0))
            })
            .unwrap();
        st.with(&st.reader, |c| {
            c.execute("SELECT pg_terminate_backend($1)", &[&pid])?;
            Ok(())
        })
        .unwrap();
        // The first write after it may fail (counted by the writer); one
        // after the retry interval succeeds on a new connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut b = WriteBatch::default();
            b.executions = vec![exec("b", 2, None)];
            match st.write(&b) {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("while reconnecting: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("never reconnected: {e}"),
            }
        }
        assert_eq!(st.count().unwrap(), 2);
    }

    #[test]
    fn urls_are_checked_and_never_shown_with_their_password() {
        let t =
            Target::parse("postgres://u:secret@db.example:5433/store?sslmode=verify-full").unwrap();
        assert_eq!(t.shown, "postgres://db.example/store");
        assert!(t.tls.is_some());
        assert!(!format!("{t:?}").contains("secret"));
        let t = Target::parse("postgresql://u@h/d?sslmode=disable").unwrap();
        assert!(t.tls.is_none());
        let e = Target::parse("postgres://u:secret@h/d?sslmode=bogus").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        let e = Target::parse("postgres://h/d?sslrootcert=/nonexistent.pem").unwrap_err();
        assert!(e.contains("sslrootcert /nonexistent.pem"), "{e}");
    }
}
