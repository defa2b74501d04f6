//! Which OTLP resource a span, metric point or log record belongs to: the
//! service and the state machine (its ARN gives the cloud region and
//! account), plus `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.

use super::settings::OtlpSettings;
use super::wire::{kv, string_value};
use crate::stitch::span::Span;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use smol_str::SmolStr;
use std::collections::HashMap;

/// What tells one resource from another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    pub service: SmolStr,
    pub state_machine_arn: Option<SmolStr>,
    pub region: Option<SmolStr>,
    pub account_id: Option<SmolStr>,
    pub env: Option<SmolStr>,
    pub version: Option<SmolStr>,
}

impl ResourceKey {
    /// From a span's service and its common tags (trace-model.md §3).
    pub fn of_span(s: &Span) -> Self {
        let m = |k: &str| s.meta.get(k).cloned();
        Self {
            service: s.service.clone(),
            state_machine_arn: m("step_function.state_machine_arn"),
            region: m("region"),
            account_id: m("account_id"),
            env: m("env"),
            version: m("version"),
        }
    }

    /// From `key:value` tags (metrics, logs): `service`, `statemachinearn`,
    /// `region`, `account_id`, `env`, `version`.
    pub fn of_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Self {
        let mut k = Self::default();
        for t in tags {
            let Some((name, value)) = t.split_once(':') else {
                continue;
            };
            let v = Some(SmolStr::new(value));
            match name {
                "service" => k.service = SmolStr::new(value),
                "statemachinearn" => k.state_machine_arn = v,
                "region" => k.region = v,
                "account_id" => k.account_id = v,
                "env" => k.env = v,
                "version" => k.version = v,
                _ => {}
            }
        }
        k
    }
}

/// Builds resources; knows the user's additions.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    service_name: Option<String>,
    extra: Vec<(String, String)>,
}

impl Resources {
    pub fn new(s: &OtlpSettings) -> Self {
        Self {
            service_name: s.service_name.clone(),
            extra: s.resource_attributes.clone(),
        }
    }

    /// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` (OpenTelemetry's order), else the
    /// state machine's service. The attributes that describe the data
    /// (cloud, state machine) are never overridden; other user attributes
    /// are added.
    pub fn resource(&self, key: &ResourceKey) -> Resource {
        let user_service = self.extra.iter().find(|(k, _)| k == "service.name");
        let service = self
            .service_name
            .as_deref()
            .or(user_service.map(|(_, v)| v.as_str()))
            .unwrap_or(&key.service);
        let mut attributes = vec![
            kv("service.name", string_value(service)),
            kv("cloud.provider", string_value("aws")),
        ];
        let optional = [
            ("cloud.region", &key.region),
            ("cloud.account.id", &key.account_id),
            (
                "aws.step_functions.state_machine.arn",
                &key.state_machine_arn,
            ),
            ("deployment.environment.name", &key.env),
            ("service.version", &key.version),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                attributes.push(kv(name, string_value(v)));
            }
        }
        for (k, v) in &self.extra {
            if !attributes.iter().any(|a| &a.key == k) {
                attributes.push(kv(k, string_value(v)));
            }
        }
        Resource {
            attributes,
            ..Default::default()
        }
    }
}

/// The instrumentation scope of everything stepstitch sends.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "stepstitch".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Items grouped by resource, in first-seen order.
pub fn by_resource<T>(
    items: &[T],
    key: impl Fn(&T) -> &ResourceKey,
) -> Vec<(&ResourceKey, Vec<&T>)> {
    let mut order: Vec<(&ResourceKey, Vec<&T>)> = Vec::new();
    let mut index: HashMap<&ResourceKey, usize> = HashMap::new();
    for item in items {
        let k = key(item);
        match index.get(k) {
            Some(&i) => order[i].1.push(item),
            None => {
                index.insert(k, order.len());
                order.push((k, vec![item]));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn attrs(r: &Resource) -> Vec<(String, String)> {
        r.attributes
            .iter()
            .map(|a| match &a.value.as_ref().unwrap().value {
                Some(Value::StringValue(s)) => (a.key.clone(), s.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn key() -> ResourceKey {
        ResourceKey::of_tags([
            "service:orders",
            "statemachinearn:arn:aws:states:eu-west-1:123456789012:stateMachine:Orders",
            "region:eu-west-1",
            "account_id:123456789012",
            "env:prod",
            "statename:Charge",
        ])
    }

    #[test]
    fn cloud_and_state_machine_attributes_come_from_the_data() {
        let r = Resources::default().resource(&key());
        assert_eq!(
            attrs(&r),
            [
                ("service.name", "orders"),
                ("cloud.provider", "aws"),
                ("cloud.region", "eu-west-1"),
                ("cloud.account.id", "123456789012"),
                (
                    "aws.step_functions.state_machine.arn",
                    "arn:aws:states:eu-west-1:123456789012:stateMachine:Orders"
                ),
                ("deployment.environment.name", "prod"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn user_attributes_add_and_the_service_name_follows_opentelemetry_precedence() {
        let mut r = Resources {
            service_name: None,
            extra: vec![
                ("service.name".into(), "from-attrs".into()),
                ("cloud.region".into(), "nowhere".into()),
                ("team".into(), "payments".into()),
            ],
        };
        let a = attrs(&r.resource(&key()));
        assert!(a.contains(&("service.name".into(), "from-attrs".into())));
        assert!(a.contains(&("cloud.region".into(), "eu-west-1".into())));
        assert!(!a.contains(&("cloud.region".into(), "nowhere".into())));
        assert!(a.contains(&("team".into(), "payments".into())));
        r.service_name = Some("from-env".into());
        let a = attrs(&r.resource(&key()));
        assert_eq!(a[0], ("service.name".into(), "from-env".into()));
        assert_eq!(a.iter().filter(|(k, _)| k == "service.name").count(), 1);
    }
}
