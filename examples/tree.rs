//! Prints the span tree stepstitch builds for a fixture execution:
//! `cargo run --example tree -- <fixture name>`.
use stepstitch::stitch::builder::{build_spans, SpanConfig};

fn main() {
    let name = std::env::args().nth(1).expect("fixture name");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/index.json")).unwrap())
            .unwrap();
    let meta = index
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name.as_str())
        .expect("no such fixture");
    let arn = meta["execution_arn"].as_str().unwrap();
    let history = std::fs::read_to_string(format!("{dir}/executions/{name}.history.json")).unwrap();
    let events = stepstitch::events::load_history(&history, arn).unwrap();
    let spans = build_spans(
        &events,
        &SpanConfig {
            max_payload_bytes: 0,
            ..SpanConfig::default()
        },
        None,
    );
    print!("{}", stepstitch::stitch::render_tree(&spans));
}
