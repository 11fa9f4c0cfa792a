//! Back-pressure: a slow stage makes the stages before it wait; nothing piles up in memory (SPEC §2).

use crate::app::{gen_args, spawn_app, Options};
use std::time::Duration;

#[actix_rt::test]
async fn a_slow_writer_never_has_more_batches_in_flight_than_the_bounds() {
    let _faults = crate::app::FAULTS.lock().await;
    let t = spawn_app(Options {
        writer_batch: 1000,
        shards: 2,
        extra: String::new(),
        ..Options::default()
    })
    .await;
    let (s0, truth) = t.generate(gen_args(&t.path("big.TXT"), 200_000, 61, None));
    sluice::faults::set_writer_delay(Duration::from_millis(10));
    let f = t.ingest(&s0, "BIG_0000.TXT").await;
    sluice::faults::set_writer_delay(Duration::ZERO);
    assert_eq!(f.new, truth.counts.new as i64);

    let app = t.app.as_ref().unwrap();
    let capacity = app.settings.pipeline.edges.clone();
    let shards = app.settings.pipeline.shards;
    let writers = app.settings.pipeline.writers;
    let mut checked = 0;
    for edge in &app.edges {
        let e = edge.snapshot();
        // Alive = queued or handled (≤ capacity) + at most one built and waiting for room per producer.
        let bound = match e.name {
            "dedupe_to_writer" => capacity.dedupe_to_writer + shards + 1,
            "parser_to_dedupe" => capacity.parser_to_dedupe + 1,
            _ => continue,
        };
        assert!(e.sent > 0, "{e:?}");
        assert!(e.max_alive <= bound, "{e:?} exceeds its bound {bound}");
        assert!(e.max_depth <= e.capacity, "{e:?}");
        checked += 1;
    }
    assert_eq!(checked, writers + shards);
    // The writer was the bottleneck: its producers spent time waiting for room.
    let writer_edge = app
        .edges
        .iter()
        .find(|e| e.name == "dedupe_to_writer")
        .unwrap()
        .snapshot();
    assert!(writer_edge.backpressure_seconds > 0.0, "{writer_edge:?}");
}
