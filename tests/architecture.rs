//! The shape of `src/`: stages import only stages below them, and no two
//! modules import each other in a circle (docs/architecture.md). Reads the
//! source as text; test code (`#[cfg(test)] mod … { }`, `tests.rs`,
//! `testkit.rs`) is left out, it may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The declared order, lowest first. A module may import modules of lower
/// rows only (and its own submodules). A new top-level module must be
/// placed here.
const STAGES: &[&[&str]] = &[
    // Foundations: no imports of ours.
    &["clock", "hashing", "lifecycle", "settings"],
    // Self-observability (its log settings use `settings`).
    &["telemetry"],
    &["events"],
    &["decode"],
    &["stitch"],
    &["durable"],
    &["store"],
    // The AWS side: a client used by the UI API and the backfill.
    &["aws"],
    &["export"],
    // Cluster mode on NATS JetStream: partitions, leases, publishing, and
    // the replica loop feeding owned partitions' cores into the hub.
    &["cluster"],
    &["pipeline"],
    &["firehose"],
    &["admin"],
    &["app"],
    &["loadgen"],
    &["backfill"],
    &["cli"],
];

/// The crate root files, which declare the modules and may name any.
const ROOTS: &[&str] = &["lib", "main"];

fn layer(top: &str) -> Option<usize> {
    STAGES.iter().position(|row| row.contains(&top))
}

/// A source file's module path below `src/`, e.g. `stitch/core/exec.rs` →
/// `["stitch", "core", "exec"]`, `stitch/mod.rs` → `["stitch"]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code outside inline test modules (`#[cfg(test)] mod … { … }`,
/// skipped to their closing brace).
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let opens_test_mod = line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|n| {
                let n = n.trim();
                n.starts_with("mod ") && n.ends_with('{')
            });
        if !opens_test_mod {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut depth = 0i64;
        for body in lines.by_ref() {
            depth += body.matches('{').count() as i64 - body.matches('}').count() as i64;
            if depth <= 0 {
                break;
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path named after `crate::` or `super::`, as segments from the
/// crate root (groups `{a, b::c}` expanded one level).
fn referenced_paths(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent_of(here))] {
        let mut from = 0;
        while let Some(found) = code[from..].find(prefix) {
            let i = from + found;
            from = i + prefix.len();
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[from..];
            let mut segs = base.clone();
            let mut s = rest;
            while let Some(more) = s.strip_prefix("super::") {
                segs.pop();
                s = more;
            }
            loop {
                if let Some(group) = s.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for item in group[..end].split(',') {
                        let mut p = segs.clone();
                        p.extend(
                            item.trim()
                                .split("::")
                                .map(ident_at)
                                .take_while(|x| !x.is_empty())
                                .map(str::to_owned),
                        );
                        out.push(p);
                    }
                    break;
                }
                let id = ident_at(s);
                if id.is_empty() {
                    out.push(segs);
                    break;
                }
                segs.push(id.to_owned());
                s = &s[id.len()..];
                match s.strip_prefix("::") {
                    Some(more) => s = more,
                    None => {
                        out.push(segs);
                        break;
                    }
                }
            }
        }
    }
    out
}

/// `super` of a module: its parent module.
fn parent_of(here: &[String]) -> Vec<String> {
    here[..here.len().saturating_sub(1)].to_vec()
}

/// The graph's node for a path: its top-level module and, when that is a
/// folder with a file or folder of that name, the second level.
fn node_of(src: &Path, path: &[String]) -> Option<String> {
    let top = path.first()?;
    // Items of the crate root (functions), or `super` out of an inline
    // module: not a module of ours.
    if !src.join(format!("{top}.rs")).exists() && !src.join(top).is_dir() {
        return None;
    }
    if path.len() >= 2 {
        let dir = src.join(top);
        if dir.join(format!("{}.rs", path[1])).exists() || dir.join(&path[1]).is_dir() {
            return Some(format!("{top}::{}", path[1]));
        }
    }
    Some(top.clone())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Edges between nodes (`from` → `to`), read from the source under `src`.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy();
        if stem == "tests" || stem == "testkit" {
            continue;
        }
        let here = module_path(f.strip_prefix(src).unwrap());
        let Some(from) = node_of(src, &here) else {
            continue;
        };
        let code = non_test_code(&std::fs::read_to_string(&f).unwrap());
        for path in referenced_paths(&code, &here) {
            if let Some(to) = node_of(src, &path) {
                if to != from {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    edges
}

fn top(node: &str) -> &str {
    node.split("::").next().unwrap()
}

/// Imports that go up (or sideways) in the declared order, and top-level
/// modules not in it.
fn order_violations(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, tos) in edges {
        let f = top(from);
        if ROOTS.contains(&f) {
            continue;
        }
        let Some(lf) = layer(f) else {
            bad.push(format!("{f} is not in STAGES (tests/architecture.rs)"));
            continue;
        };
        for to in tos {
            let t = top(to);
            if t == f {
                continue;
            }
            match layer(t) {
                None => bad.push(format!("{t} is not in STAGES (tests/architecture.rs)")),
                Some(lt) if lt >= lf => {
                    bad.push(format!("{from} imports {to}, which is not below it"))
                }
                Some(_) => {}
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn stages_import_only_stages_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = import_graph(&src);
    assert!(
        edges.contains_key("firehose::handler"),
        "the graph was read"
    );
    let bad = order_violations(&edges);
    assert!(
        bad.is_empty(),
        "imports against the stage order:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = cycles(&import_graph(&src));
    assert!(found.is_empty(), "import cycles: {found:?}");
}

#[test]
fn the_checks_catch_an_upward_import_and_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |p: &str, text: &str| {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod cli;\npub mod events;\npub mod stitch;\n");
    write("cli.rs", "");
    write("events/mod.rs", "pub mod model;\n");
    // Upward: events names stitch (in a group, and through `super`).
    write(
        "events/model.rs",
        "use crate::{hashing::X, stitch::span::Span};\nfn f() { super::super::stitch::x(); }\n#[cfg(test)]\nmod tests {\n use crate::app::App;\n fn g() { if true { } }\n}\nuse crate::cli::Cli;\n",
    );
    write("stitch/mod.rs", "pub mod a;\npub mod span;\n");
    write("stitch/a.rs", "use super::span::Span;\n");
    write(
        "stitch/span.rs",
        "use crate::stitch::a::A;\nuse crate::events::model::E;\n",
    );
    let edges = import_graph(src);
    let bad = order_violations(&edges);
    assert!(
        bad.iter()
            .any(|b| b == "events::model imports stitch::span, which is not below it"),
        "{bad:?}"
    );
    assert!(
        !bad.iter().any(|b| b.contains("app")),
        "test modules are left out: {bad:?}"
    );
    assert!(
        bad.iter()
            .any(|b| b == "events::model imports cli, which is not below it"),
        "code after a test module is read: {bad:?}"
    );
    // One circle through both stages: events::model → stitch::span →
    // events::model, and stitch::a ↔ stitch::span.
    assert_eq!(
        cycles(&edges),
        vec![vec![
            "events::model".to_owned(),
            "stitch::a".to_owned(),
            "stitch::span".to_owned()
        ]]
    );
}
