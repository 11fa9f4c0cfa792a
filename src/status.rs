//! `sluice status`: a summary of a running instance for a person, drawn from its admin API (docs/ADMIN.md) — the
//! supervision tree, each source's last snapshot, deliveries by state for each sink, and paused sinks.

use anyhow::Context as _;
use serde_json::Value;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// Base URL of the admin server [default: http://<admin.listen> from the configuration].
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
}

/// The admin URL for a listen address: a wildcard address is reached on loopback.
pub fn admin_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Prints the summary of the instance whose admin server is at `base`. Fails when it cannot be reached.
pub async fn run(base: &str) -> anyhow::Result<()> {
    print!("{}", report(base).await?);
    Ok(())
}

/// The summary as text.
pub async fn report(base: &str) -> anyhow::Result<String> {
    crate::tls::install_crypto_provider();
    let base = base.trim_end_matches('/');
    let admin = Admin {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?,
    };
    let ready = admin
        .http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the admin server at {base} (is sluice running? see --admin)")
        })?;
    let ready = ready.text().await.unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "sluice at {base}: {}", ready.trim());

    out.push_str("\nSupervision tree\n");
    match admin.get("/admin/actors").await {
        Ok(v) => match v.get("tree") {
            Some(tree) => tree_lines(&mut out, tree, 1),
            None => out.push_str("  (the answer holds no tree)\n"),
        },
        Err(e) if e.contains(" 404 ") => {
            out.push_str("  not served by this instance (GET /admin/actors answered 404)\n")
        }
        Err(e) => {
            let _ = writeln!(out, "  not available: {e}");
        }
    }

    out.push_str("\nSources (last snapshot)\n");
    match admin.get("/admin/files?limit=200").await {
        Ok(v) => sources(&mut out, &v, SystemTime::now()),
        Err(e) => {
            let _ = writeln!(out, "  not available: {e}");
        }
    }

    out.push_str("\nSinks (deliveries by state)\n");
    let live = admin.get("/admin/sinks").await.ok();
    match admin.get("/admin/deliveries/summary").await {
        Ok(v) => sinks(&mut out, &v, live.as_ref()),
        Err(e) => {
            let _ = writeln!(out, "  not available: {e}");
        }
    }
    Ok(out)
}

struct Admin<'a> {
    base: &'a str,
    http: reqwest::Client,
}

impl Admin<'_> {
    /// A JSON answer, or a one-line reason why there is none.
    async fn get(&self, path: &str) -> Result<Value, String> {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path} failed: {e}"))?;
        let status = answer.status();
        if !status.is_success() {
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            return Err(match body.get("error").and_then(Value::as_str) {
                Some(why) => format!("GET {path} answered {status}: {why}"),
                None => format!("GET {path} answered {status}"),
            });
        }
        answer
            .json()
            .await
            .map_err(|e| format!("GET {path}: not JSON ({e})"))
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// One line per actor, children indented under their supervisor.
fn tree_lines(out: &mut String, node: &Value, depth: usize) {
    let _ = write!(
        out,
        "{:indent$}{} ({}): {}, {} restart(s)",
        "",
        text(node, "name"),
        text(node, "kind"),
        text(node, "status"),
        int(node, "restarts"),
        indent = depth * 2
    );
    let last_exit = text(node, "last_exit");
    if !last_exit.is_empty() {
        let _ = write!(out, ", last exit: {last_exit}");
    }
    out.push('\n');
    for child in node
        .get("children")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        tree_lines(out, child, depth + 1);
    }
}

/// How long ago an RFC 3339 time was, to the second.
fn age(at: &str, now: SystemTime) -> Option<String> {
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    let d = now.duration_since(t).unwrap_or_default();
    Some(humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
}

/// For each source: its newest file, and its last done one when the newest is something else.
fn sources(out: &mut String, v: &Value, now: SystemTime) {
    let files = v
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if files.is_empty() {
        out.push_str("  no file seen yet\n");
        return;
    }
    let mut names: Vec<String> = files.iter().map(|f| text(f, "source")).collect();
    names.sort();
    names.dedup();
    for source in names {
        let of_source: Vec<&Value> = files
            .iter()
            .filter(|f| text(f, "source") == source)
            .collect();
        let newest = of_source[0];
        let _ = writeln!(out, "  {source}");
        file_line(out, newest, now);
        if text(newest, "status") != "done" {
            match of_source.iter().find(|f| text(f, "status") == "done") {
                Some(done) => file_line(out, done, now),
                None => out.push_str("    no snapshot done among the recent files\n"),
            }
        }
    }
}

fn file_line(out: &mut String, f: &Value, now: SystemTime) {
    let status = text(f, "status");
    let when = ["finished_at", "started_at"]
        .iter()
        .map(|k| text(f, k))
        .find(|t| !t.is_empty())
        .and_then(|t| age(&t, now))
        .map_or_else(String::new, |a| format!(", {a} ago"));
    let _ = write!(
        out,
        "    {} #{}: {status}{when}",
        text(f, "name"),
        int(f, "id")
    );
    match status.as_str() {
        "done" => {
            let _ = write!(out, "; rows {}:", int(f, "rows"));
            for k in crate::metrics::OUTCOMES.iter().chain(&["removed"]) {
                let _ = write!(out, " {k} {}", int(f, k));
            }
        }
        "processing" => {
            if let Some(p) = f.get("progress").and_then(Value::as_f64) {
                let _ = write!(out, "; {:.0}% read", p * 100.0);
            }
        }
        _ => {
            let reason = text(f, "reason");
            if !reason.is_empty() {
                let _ = write!(out, "; {reason}");
            }
        }
    }
    out.push('\n');
}

/// For each sink: its non-zero states, its oldest waiting delivery, and whether it is paused.
fn sinks(out: &mut String, summary: &Value, live: Option<&Value>) {
    let all = summary
        .get("sinks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if all.is_empty() {
        out.push_str("  no sink configured\n");
    }
    let live_of = |name: &str| {
        live.and_then(|l| l.get("sinks"))
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|s| text(s, "sink") == name))
            .cloned()
    };
    let mut paused = Vec::new();
    for s in &all {
        let name = text(s, "sink");
        let _ = write!(out, "  {name}:");
        let states = s.get("states").and_then(Value::as_object);
        let mut any = false;
        for (state, n) in states.into_iter().flatten() {
            let n = n.as_i64().unwrap_or(0);
            if n > 0 {
                let _ = write!(out, " {state} {n}");
                any = true;
            }
        }
        if !any {
            out.push_str(" no deliveries");
        }
        if let Some(age) = s.get("oldest_waiting_seconds").and_then(Value::as_f64) {
            let _ = write!(
                out,
                "; oldest waiting {}",
                humantime::format_duration(Duration::from_secs(age as u64))
            );
        }
        if let Some(l) = live_of(&name) {
            let _ = write!(out, "; concurrency {}", int(&l, "concurrency"));
            if l.get("circuit_open").and_then(Value::as_bool) == Some(true) {
                out.push_str("; circuit open");
            }
            if l.get("paused").and_then(Value::as_bool) == Some(true) {
                out.push_str("; PAUSED");
                paused.push(name.clone());
            }
        }
        out.push('\n');
    }
    match (live, paused.is_empty()) {
        (None, _) => out.push_str("  (live sink settings not available)\n"),
        (Some(_), true) => out.push_str("  paused sinks: none\n"),
        (Some(_), false) => {
            let _ = writeln!(out, "  paused sinks: {}", paused.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        assert_eq!(
            admin_url("0.0.0.0:9187".parse().unwrap()),
            "http://127.0.0.1:9187"
        );
        assert_eq!(admin_url("[::]:9187".parse().unwrap()), "http://[::1]:9187");
        assert_eq!(
            admin_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
    }

    #[test]
    fn the_tree_is_rendered_whatever_its_depth() {
        let tree = json!({"name": "sluice", "kind": "supervisor", "status": "running", "restarts": 0,
            "children": [{"name": "writer", "kind": "EventLogWriter", "status": "running", "restarts": 2,
                          "last_exit": "panicked", "children": []}]});
        let mut out = String::new();
        tree_lines(&mut out, &tree, 1);
        assert_eq!(
            out,
            "  sluice (supervisor): running, 0 restart(s)\n    writer (EventLogWriter): running, 2 restart(s), last exit: panicked\n"
        );
    }

    #[test]
    fn a_source_whose_newest_file_failed_also_shows_its_last_done_snapshot() {
        let files = json!({"files": [
            {"id": 3, "source": "eclrs", "name": "c.TXT", "status": "failed", "reason": "unreadable header"},
            {"id": 2, "source": "eclrs", "name": "b.TXT", "status": "done", "rows": 10, "new": 4, "changed": 1,
             "unchanged": 5, "duplicate": 0, "conflict": 0, "rejected": 0, "removed": 0,
             "finished_at": "2026-01-01T00:00:00.000Z"},
        ]});
        let now = humantime::parse_rfc3339("2026-01-01T00:01:30Z").unwrap();
        let mut out = String::new();
        sources(&mut out, &files, now);
        assert!(out.contains("c.TXT #3: failed; unreadable header"), "{out}");
        assert!(
            out.contains("b.TXT #2: done, 1m 30s ago; rows 10: new 4 changed 1 unchanged 5"),
            "{out}"
        );
    }
}
