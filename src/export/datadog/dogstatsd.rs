//! Metric points → DogStatsD datagrams (agent mode), over UDP or a Unix
//! datagram socket. Counts send what was added since the last flush (the
//! Agent sums them), gauges their value, distributions each new value. The
//! Agent stamps them on arrival and adds its host tags. DogStatsD is
//! fire-and-forget by design: a datagram the socket refuses is counted.

use super::super::item::MetricPoint;
use super::settings::DatadogArgs;
use crate::settings::env_of;
use crate::stitch::output::MetricKind;
use crate::telemetry::names;

/// Safe under a 1500-byte MTU for UDP; Unix sockets take the Agent's 8 KiB.
const MAX_UDP_PACKET: usize = 1432;
const MAX_UDS_PACKET: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum DogStatsdError {
    #[error("{} {:?}: expected udp://host:port or unix:///path", env_of::<DatadogArgs>("dd_dogstatsd_url"), .0)]
    BadUrl(String),
    #[error("{}: cannot open the socket: {}", env_of::<DatadogArgs>("dd_dogstatsd_url"), .0)]
    Io(#[from] std::io::Error),
}

enum Socket {
    Udp(tokio::net::UdpSocket),
    #[cfg(unix)]
    Unix(tokio::net::UnixDatagram),
}

pub struct DogStatsd {
    socket: Socket,
    max_packet: usize,
}

/// A tag value may not contain the protocol's separators.
fn clean(s: &str) -> String {
    s.replace(['|', ',', '#', '\n', '@'], "_")
}

/// The lines for a batch of points (`name:value|type|#tags`).
pub fn lines(points: &[MetricPoint]) -> Vec<String> {
    let mut out = Vec::new();
    for p in points {
        let tags = if p.tags.is_empty() {
            String::new()
        } else {
            let t: Vec<String> = p.tags.iter().map(|t| clean(t)).collect();
            format!("|#{}", t.join(","))
        };
        match p.kind {
            MetricKind::Count if p.delta != 0.0 => {
                out.push(format!("{}:{}|c{}", p.name, p.delta, tags))
            }
            MetricKind::Count => {}
            MetricKind::Gauge => out.push(format!("{}:{}|g{}", p.name, p.value, tags)),
            MetricKind::Distribution => {
                for v in &p.values {
                    out.push(format!("{}:{}|d{}", p.name, v, tags));
                }
            }
        }
    }
    out
}

/// `udp://{host}:8125` for a trace agent URL `http(s)://{host}[:port][/...]`.
pub fn default_url(trace_agent_url: &str) -> String {
    let rest = trace_agent_url
        .split_once("://")
        .map_or(trace_agent_url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(end) = authority.find(']') {
        &authority[..=end]
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    format!("udp://{host}:8125")
}

impl DogStatsd {
    pub async fn connect(url: &str) -> Result<Self, DogStatsdError> {
        if let Some(addr) = url.strip_prefix("udp://") {
            let addr = addr.trim_end_matches('/');
            let bind = if addr.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let sock = tokio::net::UdpSocket::bind(bind).await?;
            sock.connect(addr).await?;
            return Ok(Self {
                socket: Socket::Udp(sock),
                max_packet: MAX_UDP_PACKET,
            });
        }
        #[cfg(unix)]
        if let Some(path) = url
            .strip_prefix("unix://")
            .or_else(|| url.strip_prefix("unixgram://"))
        {
            let sock = tokio::net::UnixDatagram::unbound()?;
            sock.connect(path)?;
            return Ok(Self {
                socket: Socket::Unix(sock),
                max_packet: MAX_UDS_PACKET,
            });
        }
        Err(DogStatsdError::BadUrl(url.to_owned()))
    }

    async fn send_packet(&self, packet: &[u8]) -> std::io::Result<usize> {
        match &self.socket {
            Socket::Udp(s) => s.send(packet).await,
            #[cfg(unix)]
            Socket::Unix(s) => s.send(packet).await,
        }
    }

    /// Sends the points, packing lines into datagrams.
    pub async fn send(&self, points: &[MetricPoint]) {
        let mut packet = String::new();
        let mut in_packet = 0usize;
        for line in lines(points) {
            if !packet.is_empty() && packet.len() + 1 + line.len() > self.max_packet {
                self.flush(&packet, in_packet).await;
                packet.clear();
                in_packet = 0;
            }
            if !packet.is_empty() {
                packet.push('\n');
            }
            packet.push_str(&line);
            in_packet += 1;
        }
        if !packet.is_empty() {
            self.flush(&packet, in_packet).await;
        }
    }

    async fn flush(&self, packet: &str, n: usize) {
        match self.send_packet(packet.as_bytes()).await {
            Ok(_) => metrics::counter!(names::EXPORT_ITEMS_SENT, "exporter" => "datadog-agent", "signal" => "dogstatsd")
                .increment(n as u64),
            Err(e) => {
                metrics::counter!(names::EXPORT_ITEMS_DROPPED, "exporter" => "datadog-agent", "signal" => "dogstatsd", "reason" => "network")
                    .increment(n as u64);
                tracing::warn!(error = %e, lines = n, "DogStatsD datagram not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn point(kind: MetricKind, value: f64, delta: f64, values: Vec<f64>) -> MetricPoint {
        MetricPoint {
            name: "aws.states.enhanced.x",
            kind,
            timestamp: 0,
            tags: Arc::from(vec!["env:prod".to_string(), "statename:a|b".to_string()]),
            value,
            delta,
            values,
        }
    }

    #[test]
    fn default_url_is_the_agent_host_on_8125() {
        assert_eq!(
            default_url("http://datadog-agent:8126"),
            "udp://datadog-agent:8125"
        );
        assert_eq!(
            default_url("https://10.0.0.7/some/path"),
            "udp://10.0.0.7:8125"
        );
        assert_eq!(default_url("http://[fd00::1]:8126"), "udp://[fd00::1]:8125");
        assert_eq!(default_url("http://u:p@agent:8126"), "udp://agent:8125");
    }

    #[test]
    fn lines_follow_the_protocol() {
        let l = lines(&[
            point(MetricKind::Count, 5.0, 2.0, vec![]),
            point(MetricKind::Count, 5.0, 0.0, vec![]),
            point(MetricKind::Gauge, 1.5, 1.5, vec![]),
            point(MetricKind::Distribution, 0.0, 0.0, vec![3.0, 4.0]),
        ]);
        assert_eq!(
            l,
            vec![
                "aws.states.enhanced.x:2|c|#env:prod,statename:a_b",
                "aws.states.enhanced.x:1.5|g|#env:prod,statename:a_b",
                "aws.states.enhanced.x:3|d|#env:prod,statename:a_b",
                "aws.states.enhanced.x:4|d|#env:prod,statename:a_b",
            ]
        );
    }

    #[tokio::test]
    async fn datagrams_reach_a_udp_listener_packed_under_the_mtu() {
        let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let d = DogStatsd::connect(&format!("udp://{}", rx.local_addr().unwrap()))
            .await
            .unwrap();
        let points: Vec<MetricPoint> = (0..100)
            .map(|i| point(MetricKind::Gauge, i as f64, 0.0, vec![]))
            .collect();
        d.send(&points).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while got.len() < 100 {
            let n = rx.recv(&mut buf).await.unwrap();
            assert!(n <= MAX_UDP_PACKET);
            got.extend(
                std::str::from_utf8(&buf[..n])
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
        }
        assert_eq!(got.len(), 100);
        assert_eq!(
            got[99],
            "aws.states.enhanced.x:99|g|#env:prod,statename:a_b"
        );
    }
}
