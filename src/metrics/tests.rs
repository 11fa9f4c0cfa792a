//! The metrics module against its contract, docs/METRICS.md.

use super::*;

/// The naming contract of docs/METRICS.md, checked on every name.
#[test]
fn every_name_follows_the_naming_contract() {
    for m in METRICS {
        let n = m.name;
        assert!(n.starts_with("sluice_"), "{n}: prefix");
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{n}: snake_case"
        );
        match m.kind {
            Type::Counter => assert!(n.ends_with("_total"), "{n}: a counter ends in _total"),
            Type::Histogram => {
                assert!(n.ends_with("_seconds"), "{n}: a histogram names its unit");
                assert!(
                    HISTOGRAMS.iter().any(|(h, _)| *h == n),
                    "{n}: a histogram has explicit buckets"
                );
            }
            // Cumulative seconds are a gauge (the facade's counters are integers); see METRICS.md.
            Type::Gauge if n.ends_with("_total") => {
                assert!(n.ends_with("_seconds_total"), "{n}")
            }
            Type::Gauge => {}
        }
        for l in m.labels {
            assert!(
                [SOURCE, SINK, ACTOR, EDGE, OUTCOME, REASON, KIND, STATUS, STATE, CLASS]
                    .contains(l),
                "{n}: label {l}"
            );
        }
    }
    let mut names: Vec<_> = METRICS.iter().map(|m| m.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), METRICS.len(), "no name twice");
}

#[test]
fn histogram_buckets_ascend() {
    for (name, buckets) in HISTOGRAMS {
        assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}");
    }
}

#[test]
fn docs_list_every_metric_and_label() {
    let doc = include_str!("../../docs/METRICS.md");
    for m in METRICS {
        assert!(
            doc.contains(&format!("`{}`", m.name)),
            "docs/METRICS.md lacks {}",
            m.name
        );
    }
    for value in ACTORS
        .iter()
        .chain(OUTCOMES)
        .chain(FILE_STATUSES)
        .chain(DELIVERY_STATES)
        .chain(ATTEMPT_CLASSES)
        .chain(EDGES.iter().map(|(e, ..)| e))
    {
        assert!(
            doc.contains(&format!("`{value}`")),
            "docs/METRICS.md lacks {value}"
        );
    }
}

#[test]
fn attempt_classes_are_closed() {
    use crate::delivery::{ERROR_CONNECT, ERROR_TIMEOUT};
    let cases = [
        (Some(201), true, None, "2xx"),
        (Some(409), true, None, "4xx"),
        (Some(503), false, Some("HTTP 503"), "5xx"),
        (None, true, None, "ok"),
        (None, false, Some(ERROR_TIMEOUT), "timeout"),
        (None, false, Some(ERROR_CONNECT), "connect"),
        (None, false, Some("cannot write the file"), "io"),
    ];
    for (status, completed, error, class) in cases {
        assert_eq!(attempt_class(status, completed, error), class);
        assert!(ATTEMPT_CLASSES.contains(&class));
    }
}

/// The alert rules and the dashboard name only metrics that exist.
#[test]
fn ops_files_use_only_exported_metrics() {
    for (file, text) in [
        ("ops/alerts.yml", include_str!("../../ops/alerts.yml")),
        (
            "ops/alerts_test.yml",
            include_str!("../../ops/alerts_test.yml"),
        ),
        (
            "ops/grafana/sluice.json",
            include_str!("../../ops/grafana/sluice.json"),
        ),
    ] {
        let mut found = 0;
        for (i, _) in text.match_indices("sluice_") {
            // Words containing `sluice_` but not starting with it (none today) are not metric names.
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| HISTOGRAMS.iter().any(|(h, _)| h == b))
                .unwrap_or(&name);
            assert!(
                METRICS.iter().any(|m| m.name == base),
                "{file} names {name}, which sluice does not export"
            );
            found += 1;
        }
        assert!(found > 5, "{file}: metrics found");
    }
}
