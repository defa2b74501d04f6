//! An ASL definition's graph (pure): every state (nested in its Map or in
//! its Parallel's branch), and every transition a state can take — `Next`,
//! a Choice's rules and `Default`, a `Catch`'s `Next`.

use super::graph::{branch_id, Skeleton, SkeletonNode};
use serde_json::Value;

/// Reads the graph of an ASL definition (JSON text).
pub fn parse(definition: &str) -> Result<Skeleton, String> {
    let v: Value = serde_json::from_str(definition).map_err(|e| format!("not JSON: {e}"))?;
    let mut g = Skeleton::default();
    scope(&v, None, &mut g)?;
    if g.nodes.is_empty() {
        return Err("no States".into());
    }
    Ok(g)
}

fn scope(v: &Value, parent: Option<&str>, g: &mut Skeleton) -> Result<(), String> {
    let states = v
        .get("States")
        .and_then(Value::as_object)
        .ok_or("a States object is missing")?;
    let start = v
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or("a StartAt is missing")?;
    // Breadth-first from StartAt, so the layout follows the flow; states
    // nothing reaches come last, in name order.
    let mut order: Vec<&str> = vec![start];
    let mut i = 0;
    while i < order.len() {
        if let Some(s) = states.get(order[i]) {
            for n in targets(s) {
                if states.contains_key(n) && !order.contains(&n) {
                    order.push(n);
                }
            }
        }
        i += 1;
    }
    for name in states.keys() {
        if !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    for name in order {
        let Some(s) = states.get(name) else {
            return Err(format!("StartAt names a missing state {name:?}"));
        };
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or("Unknown");
        g.nodes.push(SkeletonNode {
            id: name.to_owned(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            parent: parent.map(str::to_owned),
            start: name == start,
        });
        for t in targets(s) {
            g.add_edge(name, t);
        }
        match kind {
            "Parallel" => {
                for b in s
                    .get("Branches")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let first = b.get("StartAt").and_then(Value::as_str).unwrap_or("?");
                    let id = branch_id(name, first);
                    g.nodes.push(SkeletonNode {
                        id: id.clone(),
                        name: first.to_owned(),
                        kind: "Branch".into(),
                        parent: Some(name.to_owned()),
                        start: false,
                    });
                    scope(b, Some(&id), g)?;
                }
            }
            "Map" => {
                if let Some(p) = s.get("ItemProcessor").or_else(|| s.get("Iterator")) {
                    scope(p, Some(name), g)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every state a state can go to next.
fn targets(s: &Value) -> Vec<&str> {
    fn next(v: &Value) -> Option<&str> {
        v.get("Next").and_then(Value::as_str)
    }
    let rules = |key: &str| -> Vec<&str> {
        let list = s.get(key).and_then(Value::as_array);
        list.into_iter().flatten().filter_map(next).collect()
    };
    let mut out = rules("Choices");
    out.extend(s.get("Default").and_then(Value::as_str));
    out.extend(next(s));
    out.extend(rules("Catch"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_states_and_every_transition() {
        let g = parse(
            r#"{"StartAt":"Pick","States":{
              "Pick":{"Type":"Choice","Choices":[{"Variable":"$.x","IsPresent":true,"Next":"Fan"}],"Default":"Done"},
              "Fan":{"Type":"Parallel","Next":"Each","Catch":[{"ErrorEquals":["States.ALL"],"Next":"Done"}],
                "Branches":[{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}},
                            {"StartAt":"B","States":{"B":{"Type":"Wait","Seconds":1,"Next":"B2"},"B2":{"Type":"Pass","End":true}}}]},
              "Each":{"Type":"Map","Next":"Done","ItemProcessor":{"StartAt":"Work","States":{"Work":{"Type":"Task","Resource":"x","End":true}}}},
              "Done":{"Type":"Succeed"}}}"#,
        )
        .unwrap();
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            ["Pick", "Fan", "Fan/A", "A", "Fan/B", "B", "B2", "Done", "Each", "Work"]
        );
        let parent = |id: &str| g.nodes.iter().find(|n| n.id == id).unwrap().parent.clone();
        assert_eq!(parent("B2").as_deref(), Some("Fan/B"));
        assert_eq!(parent("Fan/B").as_deref(), Some("Fan"));
        assert_eq!(parent("Work").as_deref(), Some("Each"));
        let mut edges: Vec<String> = g.edges.iter().map(|(a, b)| format!("{a}>{b}")).collect();
        edges.sort();
        assert_eq!(
            edges,
            [
                "B>B2",
                "Each>Done",
                "Fan>Done",
                "Fan>Each",
                "Pick>Done",
                "Pick>Fan"
            ]
        );
        assert!(g.nodes[0].start);
    }

    #[test]
    fn bad_definitions_say_why() {
        assert!(parse("nope").unwrap_err().contains("not JSON"));
        assert!(parse("{}").unwrap_err().contains("States"));
        assert!(parse(r#"{"StartAt":"X","States":{}}"#)
            .unwrap_err()
            .contains("missing state"));
    }
}
