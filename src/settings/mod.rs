//! Settings plumbing every component shares. Each component declares its
//! own settings as a clap `Args` struct (flag, environment variable,
//! default and help in one attribute: the only place a name is written)
//! and validates it into typed values; a bad value becomes one
//! [`ConfigError`] line naming the setting by the names clap holds, the
//! problem, and an example of a good value — never the value of a secret.

pub mod parse;

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

/// A setting's names, read from its component's clap definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub env: String,
    pub flag: String,
    /// Declared with `hide_env_values`: its value is never echoed.
    pub secret: bool,
}

impl Setting {
    /// The names of field `id` of the `Args` struct `A`.
    pub fn of<A: clap::Args>(id: &str) -> Setting {
        let cmd = A::augment_args(clap::Command::new("stepstitch"));
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == id)
            .unwrap_or_else(|| panic!("no setting {id} in {}", std::any::type_name::<A>()));
        Setting {
            env: arg
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default(),
            flag: arg.get_long().map(|l| format!("--{l}")).unwrap_or_default(),
            secret: arg.is_hide_env_values_set(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {} ({}): {problem}{}; example of a good value: {example}", .setting.env, .setting.flag, value_part(.setting, .value))]
pub struct ConfigError {
    pub setting: Setting,
    pub value: String,
    pub problem: String,
    pub example: &'static str,
}

fn value_part(s: &Setting, v: &str) -> String {
    if s.secret || v.is_empty() {
        String::new()
    } else {
        format!(" (got {v:?})")
    }
}

/// Validation helpers for the settings of `A`, each naming a field by its
/// clap id (`checks!` passes `stringify!(field)`, so a typo does not compile).
pub struct Check<A>(PhantomData<A>);

impl<A: clap::Args> Check<A> {
    pub fn error(
        id: &str,
        value: &str,
        problem: impl Into<String>,
        example: &'static str,
    ) -> ConfigError {
        ConfigError {
            setting: Setting::of::<A>(id),
            value: value.to_owned(),
            problem: problem.into(),
            example,
        }
    }

    pub fn parsed<T>(
        id: &str,
        value: &str,
        r: Result<T, String>,
        example: &'static str,
    ) -> Result<T, ConfigError> {
        r.map_err(|problem| Self::error(id, value, problem, example))
    }

    pub fn duration(id: &str, v: &str, example: &'static str) -> Result<Duration, ConfigError> {
        Self::parsed(id, v, parse::duration(v), example)
    }

    /// A duration above zero.
    pub fn positive_duration(
        id: &str,
        v: &str,
        example: &'static str,
    ) -> Result<Duration, ConfigError> {
        let d = Self::duration(id, v, example)?;
        if d.is_zero() {
            return Err(Self::error(id, v, "must be above 0s", example));
        }
        Ok(d)
    }

    pub fn size(id: &str, v: &str, example: &'static str) -> Result<usize, ConfigError> {
        let n = Self::parsed(id, v, parse::byte_size(v), example)?;
        usize::try_from(n).map_err(|_| Self::error(id, v, "too large", example))
    }

    /// A size of at least `min` bytes.
    pub fn size_at_least(
        id: &str,
        v: &str,
        min: usize,
        problem: &str,
        example: &'static str,
    ) -> Result<usize, ConfigError> {
        let n = Self::size(id, v, example)?;
        if n < min {
            return Err(Self::error(id, v, problem, example));
        }
        Ok(n)
    }

    /// A whole number of at least 1.
    pub fn count(id: &str, v: &str, example: &'static str) -> Result<usize, ConfigError> {
        let n = Self::parsed(id, v, parse::positive_int(v), example)?;
        usize::try_from(n).map_err(|_| Self::error(id, v, "too large", example))
    }

    pub fn socket_addr(
        id: &str,
        v: &str,
        example: &'static str,
    ) -> Result<SocketAddr, ConfigError> {
        Self::parsed(id, v, parse::socket_addr(v), example)
    }

    /// An optional URL with one of `schemes`.
    pub fn opt_url(
        id: &str,
        v: Option<String>,
        schemes: &[&str],
        example: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        non_empty(v)
            .map(|v| Self::parsed(id, &v, parse::url(&v, schemes), example))
            .transpose()
    }

    /// `true`/`1`/`yes` or `false`/`0`/`no`.
    pub fn bool(id: &str, v: &str, example: &'static str) -> Result<bool, ConfigError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(Self::error(id, v, "must be true or false", example)),
        }
    }

    /// One of `choices` (case-insensitive), as its index.
    pub fn one_of(
        id: &str,
        v: &str,
        choices: &[&str],
        example: &'static str,
    ) -> Result<usize, ConfigError> {
        let lower = v.trim().to_ascii_lowercase();
        choices.iter().position(|c| *c == lower).ok_or_else(|| {
            let problem = match choices {
                [a, b] => format!("must be {a} or {b}"),
                _ => format!(
                    "must be {} or {}",
                    choices[..choices.len() - 1].join(", "),
                    choices[choices.len() - 1]
                ),
            };
            Self::error(id, v, problem, example)
        })
    }
}

/// Names a field of the current `Args` struct for [`Check`]: `id!(listen)`.
#[macro_export]
macro_rules! setting_id {
    ($field:ident) => {{
        // Fails to compile when the field does not exist.
        let _ = |a: &Self| {
            let _ = &a.$field;
        };
        stringify!($field)
    }};
}

/// The environment variable of field `id` of `A`, for messages that name
/// a setting outside its own validation.
pub fn env_of<A: clap::Args>(id: &str) -> String {
    Setting::of::<A>(id).env
}

/// Trimmed, `None` when empty.
pub fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Trimmed items, empty ones dropped (comma-separated lists).
pub fn list(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args)]
    struct Demo {
        /// A wait.
        #[arg(long, env = "DEMO_WAIT", default_value = "5s")]
        wait: String,
        /// A key.
        #[arg(long = "demo-key", env = "DEMO_KEY", hide_env_values = true)]
        key: Option<String>,
    }

    #[test]
    fn errors_name_the_setting_as_clap_declares_it() {
        let e = Check::<Demo>::duration("wait", "soon", "5s").unwrap_err();
        assert_eq!(e.setting.env, "DEMO_WAIT");
        assert_eq!(e.setting.flag, "--wait");
        let line = e.to_string();
        assert!(
            line.starts_with("invalid DEMO_WAIT (--wait): not a duration"),
            "{line}"
        );
        assert!(line.contains("(got \"soon\")") && line.ends_with("example of a good value: 5s"));
    }

    #[test]
    fn secrets_are_not_echoed() {
        let e = Check::<Demo>::error("key", "hunter2", "too short", "<32 hex>");
        assert!(e.setting.secret);
        assert_eq!(e.setting.flag, "--demo-key");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn choices_and_lists() {
        assert_eq!(
            Check::<Demo>::one_of("wait", "ERRORS", &["none", "errors", "all"], "x").unwrap(),
            1
        );
        let e = Check::<Demo>::one_of("wait", "some", &["none", "errors", "all"], "x").unwrap_err();
        assert_eq!(e.problem, "must be none, errors or all");
        assert_eq!(list(&[" a ".into(), "".into(), "b".into()]), ["a", "b"]);
        assert_eq!(non_empty(Some("  ".into())), None);
    }
}
