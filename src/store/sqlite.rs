//! The embedded backend: one SQLite file (`{data dir}/store.sqlite`) in
//! WAL mode, one connection for the writer and one for readers (WAL lets
//! them run at once). Versioned migrations in `PRAGMA user_version`.
//!
//! Executions are a WITHOUT ROWID table keyed by ARN, so every secondary
//! index carries the ARN and the newest-first pages (by start, then ARN)
//! are read straight off an index.

use super::chunks::{log_key, merge_spans, pack, unpack, StateSpans};
use super::digest::WriteBatch;
use super::model::*;
use super::stats::{Run, Started};
use super::{Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Each entry moves the schema one version up; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: executions, spans, logs, definitions.
    "CREATE TABLE state_machines(arn TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE executions(
        arn TEXT PRIMARY KEY, name TEXT NOT NULL, state_machine_arn TEXT NOT NULL,
        status TEXT NOT NULL, start_ms INTEGER NOT NULL, stop_ms INTEGER,
        redrive_count INTEGER NOT NULL DEFAULT 0, error TEXT, cause TEXT) WITHOUT ROWID;
     CREATE INDEX executions_time ON executions(start_ms, state_machine_arn, status, stop_ms);
     CREATE INDEX executions_sm ON executions(state_machine_arn, start_ms);
     CREATE INDEX executions_status ON executions(status, start_ms);
     CREATE INDEX executions_sm_status ON executions(state_machine_arn, status, start_ms);
     CREATE TABLE spans(
        execution_arn TEXT NOT NULL, span_id INTEGER NOT NULL, parent_id INTEGER NOT NULL,
        op TEXT NOT NULL, resource TEXT NOT NULL, state_type TEXT,
        start_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,
        error INTEGER NOT NULL, attempt INTEGER NOT NULL, json TEXT NOT NULL,
        PRIMARY KEY(execution_arn, span_id)) WITHOUT ROWID;
     CREATE TABLE logs(
        execution_arn TEXT NOT NULL, key INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,
        span_id INTEGER NOT NULL, error INTEGER NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY(execution_arn, key)) WITHOUT ROWID;
     CREATE TABLE definitions(
        state_machine_arn TEXT PRIMARY KEY, definition TEXT NOT NULL,
        source TEXT NOT NULL, loaded_ms INTEGER NOT NULL) WITHOUT ROWID;",
    // 2: health figures read one state machine's window off one covering
    // index, grouped already (1M executions, 7 days: 164 ms → see
    // BENCHMARKS.md); it replaces the (state machine, start) index.
    "CREATE INDEX executions_sm_health ON executions(state_machine_arn, start_ms, status, stop_ms);
     DROP INDEX executions_sm;",
    // 3: spans as one JSON array per execution and write (a row per span
    // was the store's main cost), read back and de-duplicated by span id.
    "CREATE TABLE span_chunks(id INTEGER PRIMARY KEY, execution_arn TEXT NOT NULL, json TEXT NOT NULL);
     CREATE INDEX span_chunks_execution ON span_chunks(execution_arn);
     INSERT INTO span_chunks(execution_arn, json)
       SELECT execution_arn, '[' || group_concat(json, ',') || ']' FROM spans GROUP BY execution_arn;
     DROP TABLE spans;",
];

// The `json` column of `span_chunks` holds packed chunks (blobs) since
// the chunk format changed; SQLite's column types are affinities, so the
// older text rows stay as they are and are read either way.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// u64 ids as SQLite's signed integers (the bits, not the value).
fn id_out(v: u64) -> i64 {
    v as i64
}
fn id_in(v: i64) -> u64 {
    v as u64
}

/// A stored chunk: packed (a blob) or, as version 3 wrote them, text.
/// A damaged one reads as no spans.
fn chunk_text(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Blob(b) => unpack(b).unwrap_or_default(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        _ => String::new(),
    }
}

impl SqliteStore {
    /// Opens (creating) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let writer = Connection::open(path)?;
        // Before any table exists: lets prune give pages back to the disk.
        writer.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // The outbox and ledger are the durable record; a power cut may
        // lose the last store transactions, a process crash loses none.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        // The writer's page cache: 32 MiB instead of 2, so index pages
        // stay in memory rather than being read back for every write.
        writer.pragma_update(None, "cache_size", -32768)?;
        writer.busy_timeout(Duration::from_secs(2))?;
        migrate(&writer)?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(Duration::from_secs(2))?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }
}

fn migrate(c: &Connection) -> Result<(), StoreError> {
    let found: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::Newer { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = c.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionSummary> {
    let status: String = r.get(3)?;
    Ok(ExecutionSummary {
        arn: r.get(0)?,
        name: r.get(1)?,
        state_machine_arn: r.get(2)?,
        status: Status::parse(&status).unwrap_or(Status::Running),
        start_ms: r.get(4)?,
        stop_ms: r.get(5)?,
        redrive_count: r.get(6)?,
        error: r.get(7)?,
        cause: r.get(8)?,
    })
}

const SUMMARY: &str =
    "arn, name, state_machine_arn, status, start_ms, stop_ms, redrive_count, error, cause";

impl Store for SqliteStore {
    fn write(&self, b: &WriteBatch) -> Result<(), StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction()?;
        {
            let mut sm = tx.prepare_cached(
                "INSERT INTO state_machines(arn, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            let mut seen = tx.prepare_cached(
                "INSERT INTO executions(arn, name, state_machine_arn, status, start_ms)
                 VALUES (?1, ?2, ?3, 'RUNNING', ?4)
                 ON CONFLICT(arn) DO UPDATE SET start_ms = MIN(start_ms, excluded.start_ms)",
            )?;
            let mut end = tx.prepare_cached(
                "UPDATE executions SET status = ?2, stop_ms = ?3, redrive_count = ?4,
                 error = ?5, cause = ?6 WHERE arn = ?1 AND redrive_count <= ?4",
            )?;
            for e in &b.executions {
                sm.execute(params![e.state_machine_arn, e.state_machine_name])?;
                seen.execute(params![e.arn, e.name, e.state_machine_arn, e.start_ms])?;
                if let Some(x) = &e.end {
                    end.execute(params![
                        e.arn,
                        x.status.as_str(),
                        x.stop_ms,
                        x.redrive_count,
                        x.error,
                        x.cause
                    ])?;
                }
            }
            let mut chunk =
                tx.prepare_cached("INSERT INTO span_chunks(execution_arn, json) VALUES (?1, ?2)")?;
            for e in b.executions.iter().filter(|e| !e.spans.is_empty()) {
                chunk.execute(params![e.arn, pack(&e.spans.finish())])?;
            }
            let mut log = tx.prepare_cached(
                "INSERT OR IGNORE INTO logs(execution_arn, key, timestamp_ms, span_id, error, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for l in &b.logs {
                log.execute(params![
                    l.execution_arn,
                    log_key(&l.log.message),
                    l.log.timestamp_ms,
                    id_out(l.log.span_id),
                    l.log.error,
                    l.log.message
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn state_machines(&self, w: Window) -> Result<Vec<Started>, StoreError> {
        let c = lock(&self.reader);
        let machines: Vec<(String, String)> = c
            .prepare_cached("SELECT arn, name FROM state_machines")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut q = c.prepare_cached(
            "SELECT status, start_ms, stop_ms FROM executions INDEXED BY executions_sm_health
             WHERE state_machine_arn = ?1 AND start_ms >= ?2 AND start_ms < ?3",
        )?;
        let mut out = Vec::new();
        for (arn, name) in machines {
            let mut rows = q.query(params![arn, w.from_ms, w.to_ms])?;
            let mut runs = Vec::new();
            while let Some(r) = rows.next()? {
                let status = match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(t) => Status::parse_bytes(t),
                    _ => None,
                };
                runs.push(Run {
                    status: status.unwrap_or(Status::Running),
                    start_ms: r.get(1)?,
                    stop_ms: r.get(2)?,
                });
            }
            if !runs.is_empty() {
                out.push(Started { arn, name, runs });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.arn.cmp(&b.arn)));
        Ok(out)
    }

    fn executions(&self, q: &ExecutionQuery) -> Result<Page, StoreError> {
        use rusqlite::types::Value;
        let c = lock(&self.reader);
        let mut sql =
            format!("SELECT {SUMMARY} FROM executions WHERE start_ms >= ? AND start_ms < ?");
        let mut args: Vec<Value> = vec![q.window.from_ms.into(), q.window.to_ms.into()];
        if let Some(sm) = &q.state_machine {
            sql.push_str(" AND state_machine_arn = ?");
            args.push(sm.clone().into());
        }
        if let Some(s) = q.status {
            sql.push_str(" AND status = ?");
            args.push(s.as_str().to_owned().into());
        }
        if let Some(cur) = &q.cursor {
            sql.push_str(" AND (start_ms < ? OR (start_ms = ? AND arn < ?))");
            args.extend([
                cur.start_ms.into(),
                cur.start_ms.into(),
                cur.arn.clone().into(),
            ]);
        }
        let limit = q.limit.max(1);
        sql.push_str(" ORDER BY start_ms DESC, arn DESC LIMIT ?");
        args.push((limit as i64 + 1).into());
        let mut stmt = c.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), summary)?;
        Ok(Page::from_rows(rows.collect::<Result<_, _>>()?, limit))
    }

    fn execution(&self, arn: &str) -> Result<Option<ExecutionSummary>, StoreError> {
        let c = lock(&self.reader);
        let mut q =
            c.prepare_cached(&format!("SELECT {SUMMARY} FROM executions WHERE arn = ?1"))?;
        Ok(q.query_row([arn], summary).optional()?)
    }

    fn spans(&self, arn: &str) -> Result<Vec<String>, StoreError> {
        let c = lock(&self.reader);
        let mut q = c.prepare_cached("SELECT json FROM span_chunks WHERE execution_arn = ?1")?;
        let chunks = q
            .query_map([arn], |r| Ok(chunk_text(r.get_ref(0)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(merge_spans(chunks))
    }

    fn state_spans(
        &self,
        state_machine_arn: &str,
        w: Window,
        limit: usize,
    ) -> Result<Vec<StateSpan>, StoreError> {
        let c = lock(&self.reader);
        let mut q = c.prepare_cached(
            "SELECT c.execution_arn, c.json
             FROM (SELECT arn FROM executions INDEXED BY executions_sm_health
                   WHERE state_machine_arn = ?1 AND start_ms >= ?2 AND start_ms < ?3
                   ORDER BY start_ms DESC LIMIT ?4) e
             JOIN span_chunks c ON c.execution_arn = e.arn",
        )?;
        let rows = q.query_map(
            params![state_machine_arn, w.from_ms, w.to_ms, limit as i64],
            |r| Ok((r.get::<_, String>(0)?, chunk_text(r.get_ref(1)?))),
        )?;
        let mut spans = StateSpans::default();
        for row in rows {
            let (arn, chunk) = row?;
            spans.add(&arn, &chunk);
        }
        Ok(spans.out)
    }

    fn logs(&self, arn: &str, limit: usize) -> Result<Vec<StoredLog>, StoreError> {
        let c = lock(&self.reader);
        let mut q = c.prepare_cached(
            "SELECT timestamp_ms, span_id, error, message FROM logs
             WHERE execution_arn = ?1 ORDER BY timestamp_ms, key LIMIT ?2",
        )?;
        let rows = q.query_map(params![arn, limit as i64], |r| {
            Ok(StoredLog {
                timestamp_ms: r.get(0)?,
                span_id: id_in(r.get(1)?),
                error: r.get(2)?,
                message: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn definition(&self, state_machine_arn: &str) -> Result<Option<Definition>, StoreError> {
        let c = lock(&self.reader);
        let mut q = c.prepare_cached(
            "SELECT definition, source, loaded_ms FROM definitions WHERE state_machine_arn = ?1",
        )?;
        Ok(q.query_row([state_machine_arn], |r| {
            Ok(Definition {
                state_machine_arn: state_machine_arn.to_owned(),
                definition: r.get(0)?,
                source: r.get(1)?,
                loaded_ms: r.get(2)?,
            })
        })
        .optional()?)
    }

    fn put_definition(&self, d: &Definition) -> Result<(), StoreError> {
        let c = lock(&self.writer);
        c.execute(
            "INSERT OR REPLACE INTO definitions(state_machine_arn, definition, source, loaded_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![d.state_machine_arn, d.definition, d.source, d.loaded_ms],
        )?;
        Ok(())
    }

    fn prune(&self, before_ms: i64, max_bytes: u64) -> Result<usize, StoreError> {
        let c = lock(&self.writer);
        // In slices, oldest first, so a large backlog never holds the
        // writer for long: each deletes up to 5,000 executions started
        // before `before` with their spans and logs.
        let slice = |c: &Connection, before: i64| -> Result<usize, StoreError> {
            let tx = c.unchecked_transaction()?;
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS doomed(arn TEXT PRIMARY KEY) WITHOUT ROWID;
                 DELETE FROM temp.doomed;",
            )?;
            let n = tx.execute(
                "INSERT INTO temp.doomed SELECT arn FROM executions INDEXED BY executions_time
                 WHERE start_ms < ?1 ORDER BY start_ms LIMIT 5000",
                [before],
            )?;
            tx.execute_batch(
                "DELETE FROM span_chunks WHERE execution_arn IN (SELECT arn FROM temp.doomed);
                 DELETE FROM logs WHERE execution_arn IN (SELECT arn FROM temp.doomed);
                 DELETE FROM executions WHERE arn IN (SELECT arn FROM temp.doomed);",
            )?;
            tx.commit()?;
            Ok(n)
        };
        let mut gone = 0;
        loop {
            let n = slice(&c, before_ms)?;
            gone += n;
            if n == 0 {
                break;
            }
        }
        let used = |c: &Connection| -> Result<u64, StoreError> {
            let pages: i64 = c.pragma_query_value(None, "page_count", |r| r.get(0))?;
            let free: i64 = c.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
            let size: i64 = c.pragma_query_value(None, "page_size", |r| r.get(0))?;
            Ok(((pages - free) * size) as u64)
        };
        // Over the size bound: the oldest go first, a slice at a time.
        for _ in 0..10_000 {
            if used(&c)? <= max_bytes {
                break;
            }
            let n = slice(&c, i64::MAX)?;
            gone += n;
            if n == 0 {
                break;
            }
        }
        if gone > 0 {
            c.execute_batch("PRAGMA incremental_vacuum;")?;
        }
        Ok(gone)
    }

    fn count(&self) -> Result<u64, StoreError> {
        let c = lock(&self.reader);
        Ok(c.query_row("SELECT count(*) FROM executions", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self as c, exec, span_json, write};

    fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let st = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
        (dir, st)
    }

    #[test]
    fn reopening_keeps_everything_and_writes_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/store.sqlite");
        c::reopening_keeps_everything_and_writes_are_idempotent(&|| {
            Box::new(SqliteStore::open(&path).unwrap())
        });
    }

    #[test]
    fn retention_deletes_the_old_and_nothing_else() {
        c::retention_deletes_the_old_and_nothing_else(&fresh().1);
    }

    #[test]
    fn logs_definitions_and_awkward_text() {
        c::logs_definitions_and_awkward_text(&fresh().1);
    }

    #[test]
    fn a_version_1_database_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            // A span stored one row per span, as version 1 did.
            c.execute(
                "INSERT INTO spans VALUES ('old', 7, 0, 'op', 'r', NULL, 0, 1, 0, 0, ?1)",
                [span_json(7)],
            )
            .unwrap();
        }
        let st = SqliteStore::open(&path).unwrap();
        assert_eq!(st.spans("old").unwrap(), vec![span_json(7)]);
        write(&st, vec![exec("a", 100, Some((Status::Failed, 0)))], vec![]);
        let w = Window {
            from_ms: 0,
            to_ms: 1000,
        };
        assert_eq!(st.state_machines(w).unwrap()[0].runs.len(), 1);
        drop(st);
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Newer { found: 99, .. })
        ));
    }

    #[test]
    fn pages_are_newest_first_and_filters_use_the_indexes() {
        let (_dir, st) = fresh();
        c::pages_are_newest_first_and_filter(&st);
        let c = st.reader.lock().unwrap();
        let plan: String = c
            .query_row(
                "EXPLAIN QUERY PLAN SELECT arn FROM executions WHERE state_machine_arn = 'sm' AND status = 'FAILED' AND start_ms >= 0 AND start_ms < 10 ORDER BY start_ms DESC, arn DESC LIMIT 3",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("executions_sm_status"), "{plan}");
    }
}
