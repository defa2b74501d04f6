//! What every store backend must do, as tests each backend runs on itself
//! (`sqlite::tests`, `postgres::tests`): the API reads the same rows from
//! either.

use super::digest::{ExecutionUpdate, LogRow, RunEnd, WriteBatch};
use super::model::*;
use super::Store;

pub fn exec(arn: &str, start_ms: i64, end: Option<(Status, u32)>) -> ExecutionUpdate {
    ExecutionUpdate {
        arn: arn.into(),
        name: arn.into(),
        state_machine_arn: "sm".into(),
        state_machine_name: "SM".into(),
        start_ms,
        end: end.map(|(status, redrive_count)| RunEnd {
            redrive_count,
            status,
            stop_ms: start_ms + 10,
            error: None,
            cause: None,
        }),
        spans: Default::default(),
    }
}

pub fn span(arn: &str, id: u64) -> (String, String) {
    (arn.into(), span_json(id))
}

pub fn span_json(id: u64) -> String {
    format!("{{\"span_id\":{id},\"start\":0}}")
}

/// Writes the executions with these spans (by ARN) in one batch.
pub fn write(st: &dyn Store, mut execs: Vec<ExecutionUpdate>, spans: Vec<(String, String)>) {
    for (arn, json) in spans {
        let e = execs.iter_mut().find(|e| e.arn == arn).unwrap();
        e.spans.push_raw(&json);
    }
    let mut b = WriteBatch::default();
    b.executions = execs;
    st.write(&b).unwrap();
}

/// `open` opens the same database again each time it is called.
pub fn reopening_keeps_everything_and_writes_are_idempotent(open: &dyn Fn() -> Box<dyn Store>) {
    {
        let st = open();
        write(&*st, vec![exec("a", 100, None)], vec![span("a", u64::MAX)]);
        write(
            &*st,
            vec![exec("a", 50, Some((Status::Failed, 0)))],
            vec![span("a", u64::MAX)],
        );
    }
    let st = open();
    let e = st.execution("a").unwrap().unwrap();
    assert_eq!(
        (e.start_ms, e.status, e.stop_ms),
        (50, Status::Failed, Some(60))
    );
    assert_eq!(st.spans("a").unwrap(), vec![span_json(u64::MAX)]);
    // A redrive's end wins over a late copy of the first run's.
    write(
        &*st,
        vec![exec("a", 50, Some((Status::Succeeded, 1)))],
        vec![],
    );
    write(&*st, vec![exec("a", 50, Some((Status::Failed, 0)))], vec![]);
    let e = st.execution("a").unwrap().unwrap();
    assert_eq!((e.status, e.redrive_count), (Status::Succeeded, 1));
}

pub fn retention_deletes_the_old_and_nothing_else(st: &dyn Store) {
    let execs: Vec<_> = (0..20)
        .map(|i| exec(&format!("e{i:02}"), i * 100, None))
        .collect();
    let spans: Vec<_> = (0..20)
        .map(|i| span(&format!("e{i:02}"), i as u64))
        .collect();
    write(st, execs, spans);
    assert_eq!(st.prune(1000, u64::MAX).unwrap(), 10);
    assert_eq!(st.count().unwrap(), 10);
    assert!(st.execution("e09").unwrap().is_none() && st.spans("e09").unwrap().is_empty());
    assert!(st.execution("e10").unwrap().is_some() && !st.spans("e10").unwrap().is_empty());
    // Over the size bound: the oldest go until it fits (here: all).
    st.prune(0, 1).unwrap();
    assert_eq!(st.count().unwrap(), 0);
}

pub fn pages_are_newest_first_and_filter(st: &dyn Store) {
    let execs: Vec<_> = (0..7)
        .map(|i| {
            exec(
                &format!("e{i}"),
                1000 - (i % 3) * 100,
                (i % 2 == 0).then_some((Status::Failed, 0)),
            )
        })
        .collect();
    write(st, execs, vec![]);
    let q = |status, cursor| ExecutionQuery {
        state_machine: Some("sm".into()),
        status,
        window: Window {
            from_ms: 0,
            to_ms: 2000,
        },
        limit: 3,
        cursor,
    };
    let mut seen = vec![];
    let mut cursor = None;
    loop {
        let p = st.executions(&q(None, cursor)).unwrap();
        seen.extend(p.executions.iter().map(|e| (e.start_ms, e.arn.clone())));
        match p.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 7);
    let failed = st.executions(&q(Some(Status::Failed), None)).unwrap();
    assert_eq!(failed.executions.len(), 3);
    assert!(failed.executions.iter().all(|e| e.status == Status::Failed));
    let w = Window {
        from_ms: 0,
        to_ms: 950,
    };
    let sms = st.state_machines(w).unwrap();
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].runs.len(), 4, "the 3 started at 1000 are outside");
}

/// Logs are kept once, by content; text the database may balk at (a NUL
/// in PostgreSQL) is stored, not a reason to lose the batch.
pub fn logs_definitions_and_awkward_text(st: &dyn Store) {
    let mut e = exec("x", 10, Some((Status::Failed, 0)));
    if let Some(end) = e.end.as_mut() {
        end.error = Some("States.TaskFailed".into());
        end.cause = Some("nul \0 inside".into());
    }
    e.spans.push_raw(&span_json(2));
    e.spans.push_raw(&span_json(1));
    let log = |ts, msg: &str| LogRow {
        execution_arn: "x".into(),
        log: StoredLog {
            timestamp_ms: ts,
            span_id: u64::MAX - 1,
            error: ts == 2,
            message: msg.into(),
        },
    };
    let mut b = WriteBatch::default();
    b.executions = vec![e];
    b.logs = vec![
        log(2, "{\"b\":\"\0\"}"),
        log(1, "{\"a\":1}"),
        log(1, "{\"a\":1}"),
    ];
    st.write(&b).unwrap();
    st.write(&b).unwrap();
    let logs = st.logs("x", 10).unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0].message, "{\"a\":1}");
    assert_eq!(logs[1].span_id, u64::MAX - 1);
    assert!(logs[1].error && logs[1].message.starts_with("{\"b\":"));
    let got = st.execution("x").unwrap().unwrap();
    assert_eq!(got.error.as_deref(), Some("States.TaskFailed"));
    assert!(got.cause.unwrap().starts_with("nul "));
    assert_eq!(st.spans("x").unwrap(), vec![span_json(1), span_json(2)]);
    assert_eq!(
        st.state_spans(
            "sm",
            Window {
                from_ms: 0,
                to_ms: 100
            },
            5
        )
        .unwrap()
        .len(),
        0,
        "these spans lack what a state span has"
    );

    assert!(st.definition("sm").unwrap().is_none());
    for source in ["file", "aws"] {
        st.put_definition(&Definition {
            state_machine_arn: "sm".into(),
            definition: "{\"StartAt\":\"A\"}".into(),
            source: source.into(),
            loaded_ms: 5,
        })
        .unwrap();
    }
    let d = st.definition("sm").unwrap().unwrap();
    assert_eq!((d.source.as_str(), d.loaded_ms), ("aws", 5));
}
