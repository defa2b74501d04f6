//! Names and tokens derived for actions, so that the same request made
//! twice (a double click, a retried HTTP call) asks AWS for the same thing
//! and AWS's own idempotence makes it happen once.

use sha2::{Digest, Sha256};

/// AWS's limit on execution names.
pub const NAME_MAX: usize = 80;

fn hex(parts: &[&str], n: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..n]
        .to_owned()
}

/// The name of a retry of `execution_arn` (whose name is `name`) asked for
/// by request `request`: `{name}-retry-{8 hex}`, the original name cut so
/// the whole stays within 80 characters. The same request gives the same
/// name: StartExecution with an existing name and input starts nothing new.
pub fn retry_name(name: &str, execution_arn: &str, request: &str) -> String {
    let suffix = format!("-retry-{}", hex(&["retry", execution_arn, request], 8));
    // Names are ASCII-only in practice (AWS allows a restricted set); cut
    // on a character boundary anyway.
    let room = NAME_MAX - suffix.len();
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

/// RedriveExecution's `clientToken`: the same for every redrive asked while
/// the execution has redriven `redrive_count` times, so two clicks on the
/// same failure redrive once (and a redrive of an execution that is
/// running again is refused by AWS anyway).
pub fn redrive_token(execution_arn: &str, redrive_count: i32) -> String {
    hex(&["redrive", execution_arn, &redrive_count.to_string()], 32)
}

/// The execution ARN a state machine's execution called `name` gets.
pub fn execution_arn_of(state_machine_arn: &str, name: &str) -> Option<String> {
    let (head, machine) = state_machine_arn.split_once(":stateMachine:")?;
    // A version or alias ARN (`...:stateMachine:Sm:3`) runs as `Sm`.
    let machine = machine.split(':').next()?;
    Some(format!("{head}:execution:{machine}:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:1:execution:Sm:order-42";

    #[test]
    fn retry_names_are_stable_short_and_distinct() {
        let a = retry_name("order-42", ARN, "click-1");
        assert!(a.starts_with("order-42-retry-") && a.len() == "order-42-retry-".len() + 8);
        assert_eq!(a, retry_name("order-42", ARN, "click-1"));
        assert_ne!(a, retry_name("order-42", ARN, "click-2"));
        let long = "x".repeat(80);
        let b = retry_name(&long, ARN, "r");
        assert_eq!(b.len(), NAME_MAX);
        assert!(b.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let c = retry_name(&"é".repeat(40), ARN, "r");
        assert!(c.len() <= NAME_MAX);
    }

    #[test]
    fn redrive_tokens_change_with_the_count() {
        let t = redrive_token(ARN, 0);
        assert_eq!(t.len(), 32);
        assert_eq!(t, redrive_token(ARN, 0));
        assert_ne!(t, redrive_token(ARN, 1));
    }

    #[test]
    fn execution_arns_of_machines_versions_and_aliases() {
        for sm in [
            "arn:aws:states:us-east-1:1:stateMachine:Sm",
            "arn:aws:states:us-east-1:1:stateMachine:Sm:3",
            "arn:aws:states:us-east-1:1:stateMachine:Sm:prod",
        ] {
            assert_eq!(
                execution_arn_of(sm, "n").as_deref(),
                Some("arn:aws:states:us-east-1:1:execution:Sm:n")
            );
        }
        assert_eq!(execution_arn_of("arn:aws:lambda:x", "n"), None);
    }
}
