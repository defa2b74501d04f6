//! The execution fixtures in tests/fixtures (see its README for origin and licence).

use serde_json::Value;
use std::path::PathBuf;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub meta: Value,
    pub lines: Vec<String>,
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        all()
            .into_iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no fixture {name}"))
    }

    pub fn history(&self) -> String {
        std::fs::read_to_string(dir().join(format!("executions/{}.history.json", self.name)))
            .unwrap()
    }

    pub fn execution_arn(&self) -> &str {
        self.meta["execution_arn"].as_str().unwrap()
    }

    pub fn state_machine(&self) -> &str {
        self.meta["state_machine_arn"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
    }

    /// Its log lines as events, in line (id) order.
    pub fn events(&self) -> Vec<stepstitch::events::Event> {
        let mut arns = stepstitch::events::StringCache::default();
        self.lines
            .iter()
            .map(|l| stepstitch::events::parse_log_line(l, &mut arns).unwrap())
            .collect()
    }

    /// What the builder makes of its events as a finished execution:
    /// spans and metric samples, as the server emits them.
    pub fn build(&self) -> stepstitch::stitch::builder::Build {
        let ev = self.events();
        stepstitch::stitch::builder::build(
            ev.iter().collect(),
            &stepstitch::stitch::builder::SpanConfig::default(),
            None,
            &stepstitch::stitch::held::IdSet::default(),
            &mut Default::default(),
            stepstitch::stitch::builder::Mode::Final,
        )
    }

    /// `(state machine, log line)` of `n` copies of the execution, each
    /// under a fresh execution name.
    pub fn copies(&self, n: usize) -> Vec<(String, String)> {
        let arn = self.execution_arn();
        let mut out = Vec::new();
        for i in 0..n {
            let fresh = format!("{arn}-copy{i}");
            for l in &self.lines {
                out.push((self.state_machine().to_owned(), l.replace(arn, &fresh)));
            }
        }
        out
    }

    pub fn include_execution_data(&self) -> bool {
        self.meta["logging"]["includeExecutionData"]
            .as_bool()
            .unwrap()
    }
}

/// `(state machine, log line)` of every line of the fixtures, in order.
pub fn lines_of(fs: &[Fixture]) -> Vec<(String, String)> {
    fs.iter()
        .flat_map(|f| {
            f.lines
                .iter()
                .map(|l| (f.state_machine().to_owned(), l.clone()))
        })
        .collect()
}

pub fn all() -> Vec<Fixture> {
    let index: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir().join("index.json")).unwrap()).unwrap();
    index
        .into_iter()
        .map(|meta| {
            let name = meta["name"].as_str().unwrap().to_owned();
            let text = std::fs::read_to_string(dir().join(format!("executions/{name}.logs.jsonl")))
                .unwrap();
            Fixture {
                name,
                meta,
                lines: text.lines().map(str::to_owned).collect(),
            }
        })
        .collect()
}
