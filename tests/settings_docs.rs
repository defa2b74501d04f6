//! docs/settings.md and the command line agree: every setting `stepstitch
//! --help` lists (from the components' clap definitions) has a row with its
//! environment variable, its flag and its default, and the table names no
//! setting the binary lacks.

use clap::CommandFactory;
use std::collections::BTreeMap;
use stepstitch::cli::Cli;

#[derive(Debug)]
struct Row {
    flags: Vec<String>,
    default: String,
}

/// The backticked words of a table cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// `env name → row` from the settings table (a row may name several).
fn documented(md: &str) -> BTreeMap<String, Row> {
    let mut out = BTreeMap::new();
    let mut in_table = false;
    for line in md.lines() {
        if line.starts_with("| env | flag | default |") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        if !line.starts_with('|') {
            if !out.is_empty() {
                break;
            }
            continue;
        }
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches('|').trim())
            .collect();
        assert!(cells.len() >= 4, "settings row with too few cells: {line}");
        for env in ticked(cells[0]) {
            let row = Row {
                flags: ticked(cells[1]),
                default: cells[2].to_owned(),
            };
            assert!(
                out.insert(env.clone(), row).is_none(),
                "{env} documented twice"
            );
        }
    }
    out
}

struct Declared {
    flag: String,
    default: Option<String>,
}

/// `env name → flag and default` as the binary declares them.
fn declared() -> BTreeMap<String, Declared> {
    let cmd = Cli::command();
    cmd.get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            let default = a
                .get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned());
            Some((
                env,
                Declared {
                    flag: format!("--{}", a.get_long().unwrap_or_default()),
                    default,
                },
            ))
        })
        .collect()
}

#[test]
fn the_settings_table_matches_the_command_line() {
    let md =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md")).unwrap();
    let docs = documented(&md);
    let cli = declared();
    assert!(cli.len() > 40, "the command line was read: {}", cli.len());
    let missing: Vec<&String> = cli.keys().filter(|k| !docs.contains_key(*k)).collect();
    let extra: Vec<&String> = docs.keys().filter(|k| !cli.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "in --help, not in docs/settings.md: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "in docs/settings.md, not in --help: {extra:?}"
    );
    for (env, d) in &cli {
        let row = &docs[env];
        assert!(
            row.flags
                .iter()
                .any(|f| f == &d.flag || f.starts_with(&format!("{} ", d.flag))),
            "{env}: flag {} not in its row {:?}",
            d.flag,
            row.flags
        );
        match &d.default {
            Some(v) => assert_eq!(row.default, format!("`{v}`"), "{env}: default"),
            // No default in the binary: the table may describe one ("none",
            // "state machine name", "from `DD_SITE`") but not state a value.
            None => assert!(
                !(row.default.starts_with('`')
                    && row.default.ends_with('`')
                    && !row.default.contains('<')),
                "{env}: the docs give the default {} the binary does not have",
                row.default
            ),
        }
    }
}

#[test]
fn the_check_reads_rows_and_their_defaults() {
    let md = "intro\n\n| env | flag | default | meaning |\n|---|---|---|---|\n| `A`, `B` | `--a`, `--b` | none | x |\n| `C` | `--c` (repeatable) | `5s` | y |\n\nafter\n| `D` | `--d` | `1` | not in the table |\n";
    let docs = documented(md);
    assert_eq!(docs.keys().collect::<Vec<_>>(), ["A", "B", "C"]);
    assert_eq!(docs["B"].flags, ["--a", "--b"]);
    assert_eq!(docs["C"].default, "`5s`");
}
