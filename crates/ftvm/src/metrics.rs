//! `--metrics ADDR` (issue 13 item 5): every node, the switch and the arbiter serve
//! their figures as Prometheus text (exposition format 0.0.4) over HTTP, `GET /metrics`.
//!
//! The endpoint only reads: it serves what the process already reports (a node's
//! [`Status`], the switch's and the arbiter's counters), in clear, to whoever can reach
//! `ADDR` — bind it to an address only the monitoring network sees. Connections are
//! bounded like every other listener (issue 12 item 4): [`MAX_SCRAPERS`] at once, each
//! with [`DEADLINE`] to send its request and take the answer; a newcomer evicts the
//! oldest when all are taken.

use crate::ft::status::Status;
use anyhow::{Context, Result};
use ftvm_world::{SlotLimits, Slots};
use std::fmt::{Display, Write as _};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Scrapes served at once.
pub const MAX_SCRAPERS: usize = 4;
/// From accept to the last byte of the answer.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// The longest request head taken.
const MAX_REQUEST: usize = 8 * 1024;

/// What an endpoint serves: the text of the current figures.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `render` on `addr` until the process ends; returns the bound address.
pub fn serve(addr: SocketAddr, what: &str, render: Render) -> Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("cannot serve metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let slots = Slots::new(SlotLimits {
        max: MAX_SCRAPERS,
        handshake: DEADLINE,
    })?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(Ok(slot)) = slots.admit(&stream) else {
                    continue;
                };
                let render = render.clone();
                let _ = std::thread::Builder::new()
                    .name("metrics-scrape".into())
                    .spawn(move || {
                        let _ = answer(stream, &render);
                        drop(slot);
                    });
            }
        })?;
    eprintln!("ftvm: {what}: metrics on http://{bound}/metrics");
    Ok(bound)
}

/// One request: `GET /metrics` (or `/`) gets the figures, anything else 404 or 405.
fn answer(mut s: TcpStream, render: &Render) -> std::io::Result<()> {
    s.set_read_timeout(Some(DEADLINE))?;
    s.set_write_timeout(Some(DEADLINE))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, ctype, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        ),
        (Some(b"GET"), _) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

/// Prometheus text with the same labels on every sample.
pub struct Text {
    out: String,
    labels: String,
}

/// A label value as the exposition format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn label_list(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl Text {
    /// Samples labelled `labels` (e.g. the VM and the node).
    pub fn new(labels: &[(&str, &str)]) -> Text {
        Text {
            out: String::new(),
            labels: label_list(labels),
        }
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, extra: &[(&str, &str)], value: impl Display) {
        let extra = label_list(extra);
        let sep = if self.labels.is_empty() || extra.is_empty() {
            ""
        } else {
            ","
        };
        let _ = writeln!(self.out, "{name}{{{}{sep}{extra}}} {value}", self.labels);
    }

    /// A value that goes up and down.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A count that only grows (`name` ends in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        debug_assert!(name.ends_with("_total"), "{name}");
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// A gauge with one sample per extra label set.
    pub fn gauges(&mut self, name: &str, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        self.family(name, "gauge", help);
        for (extra, v) in samples {
            self.sample(name, extra, v);
        }
    }

    /// Text rendered elsewhere (the switch's counters), appended as it is.
    pub fn raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The states a node reports (see [`Status::state`]).
const STATES: [&str; 11] = [
    "starting",
    "transferring",
    "receiving",
    "waiting",
    "replaying",
    "protected",
    "unprotected",
    "failing over",
    "stopping",
    "halted",
    "stopped",
];

/// A node's latest report, shared between its status file and its endpoint.
#[derive(Default)]
pub struct NodeMetrics {
    latest: Mutex<Option<Status>>,
}

impl NodeMetrics {
    /// The node reported `st`.
    pub fn observe(&self, st: &Status) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(st.clone());
    }

    /// The figures of the latest report (nothing before the first).
    pub fn render(&self) -> String {
        let guard = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let Some(st) = guard.as_ref() else {
            return String::new();
        };
        let mut t = Text::new(&[("vm", &st.vm), ("node", &st.node)]);
        let role = st.role.as_str();
        let samples: Vec<[(&str, &str); 2]> = STATES
            .iter()
            .chain((!STATES.contains(&st.state.as_str())).then_some(&st.state.as_str()))
            .map(|s| [("role", role), ("state", *s)])
            .collect();
        let samples: Vec<(&[(&str, &str)], f64)> = samples
            .iter()
            .map(|l| (&l[..], f64::from(u8::from(l[1].1 == st.state))))
            .collect();
        t.gauges(
            "ftvm_node_state",
            "1 for the state the node is in (role: primary or backup)",
            &samples,
        );
        t.gauge(
            "ftvm_protected",
            "1 while this node is a primary whose backup holds the log",
            u8::from(role == "primary" && st.state == "protected"),
        );
        t.gauge(
            "ftvm_generation",
            "the pair's generation at the arbiter",
            st.generation,
        );
        t.counter(
            "ftvm_instructions_total",
            "guest instructions executed (or replayed)",
            st.icount,
        );
        t.gauge(
            "ftvm_backup_lag_instructions",
            "how far the backup's replay is behind the primary, in instructions",
            st.lag_insns,
        );
        t.gauge(
            "ftvm_backup_lag_seconds",
            "the same lag in host time at the primary's current speed",
            st.lag_ms / 1e3,
        );
        t.counter(
            "ftvm_log_bytes_total",
            "bytes of log sent to backups",
            st.log_bytes,
        );
        t.gauge(
            "ftvm_log_bytes_per_second",
            "log bandwidth over the last report interval",
            st.log_bytes_per_s,
        );
        t.gauge(
            "ftvm_outputs_held",
            "outputs held by the Output Rule until the backup acknowledges them",
            st.outputs_waiting,
        );
        t.counter(
            "ftvm_acks_total",
            "acknowledgments received from backups (a backup: sent)",
            st.acks,
        );
        t.counter(
            "ftvm_failovers_total",
            "times this node went live after losing its peer",
            st.failovers,
        );
        t.counter(
            "ftvm_throttled_total",
            "times the primary slowed the guest down for a lagging backup",
            st.throttled,
        );
        t.counter(
            "ftvm_transfers_total",
            "state transfers to new backups completed",
            st.transfers,
        );
        t.counter(
            "ftvm_transfer_bytes_total",
            "bytes of guest state sent in transfers, including one in progress",
            st.transfer_bytes,
        );
        t.gauge(
            "ftvm_transfer_round",
            "the pre-copy round of a transfer in progress (0: none or the first)",
            st.transfer_round,
        );
        t.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_renders_its_latest_report_with_escaped_labels() {
        let m = NodeMetrics::default();
        assert_eq!(m.render(), "");
        m.observe(&Status {
            vm: "vm0".into(),
            node: "a\"b".into(),
            role: "primary".into(),
            state: "protected".into(),
            generation: 3,
            acks: 17,
            ..Status::default()
        });
        let t = m.render();
        assert!(
            t.contains("ftvm_generation{vm=\"vm0\",node=\"a\\\"b\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("ftvm_acks_total{vm=\"vm0\",node=\"a\\\"b\"} 17\n"),
            "{t}"
        );
        assert!(
            t.contains("ftvm_protected{vm=\"vm0\",node=\"a\\\"b\"} 1\n"),
            "{t}"
        );
        assert!(t.contains(
            "ftvm_node_state{vm=\"vm0\",node=\"a\\\"b\",role=\"primary\",state=\"protected\"} 1\n"
        ));
        assert!(t.contains(
            "ftvm_node_state{vm=\"vm0\",node=\"a\\\"b\",role=\"primary\",state=\"halted\"} 0\n"
        ));
        assert!(t.contains("# TYPE ftvm_acks_total counter\n"));
    }
}
