//! The generator's truth checked against an independent, deliberately simple re-classification of its files: a
//! pipe splitter, the validation rules of SPEC §3.2, identical-row detection, winner by `OBRCREATEDATE`, and a
//! comparison with the previous snapshot's records. None of it shares code with the generator.

use super::*;
use crate::parse::columns::canonical_columns;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

type Key = (String, String);
type State = HashMap<Key, Vec<String>>;

fn base_args(out: &Path) -> GenArgs {
    GenArgs {
        out: out.to_owned(),
        rows: 2_000,
        seed: 7,
        header: "v3".into(),
        from: None,
        changed: 0.05,
        new: 0.05,
        aged_out: 0.03,
        duplicate: 0.02,
        conflict: 0.02,
        malformed: 0.01,
        shuffle: false,
    }
}

fn run(args: &GenArgs) -> (GenSummary, GroundTruth) {
    let summary = generate(args).expect("generation succeeds");
    let truth = GroundTruth::load(&summary.truth_path).expect("truth loads");
    (summary, truth)
}

fn column(name: &str) -> usize {
    canonical_columns().iter().position(|c| *c == name).unwrap()
}

/// Splits on `|`; a field that starts with `"` runs to the next lone `"`, with `""` standing for one quote.
fn split(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated_quote"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some('|') => fields.push(std::mem::take(&mut field)),
                Some(_) => return Err("text after closing quote"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some('|') => {
                        fields.push(std::mem::take(&mut field));
                        break;
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// `DDMONYYYY:HH:MM:SS.ffffff` as a tuple that orders like the datetime.
fn sas_order(text: &str) -> (u32, usize, u32, u32, u32, u32, u32) {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    assert_eq!(text.len(), 25, "not a SAS datetime: {text:?}");
    let n = |r: std::ops::Range<usize>| text[r].parse::<u32>().unwrap();
    let month = MONTHS
        .iter()
        .position(|m| *m == &text[2..5])
        .expect("upper-case month");
    (
        n(5..9),
        month,
        n(0..2),
        n(10..12),
        n(13..15),
        n(16..18),
        n(19..25),
    )
}

/// What an ingest of one file must find, worked out from the file alone and the previous records.
#[derive(Debug, Default)]
struct Observed {
    rows: u64,
    new: BTreeSet<Key>,
    changed: BTreeSet<Key>,
    unchanged: u64,
    removed: BTreeSet<Key>,
    duplicate_lines: Vec<u64>,
    conflict_lines: Vec<u64>,
    rejected: Vec<(u64, String)>,
    /// Conflict losers placed before / after their winner in the file.
    losers_before: u64,
    losers_after: u64,
}

fn classify(path: &Path, previous: &State) -> (Observed, State) {
    let canonical = canonical_columns();
    let (patient, accession, county, result, created) = (
        column("PIDPATIENTKEY"),
        column("OBRACCESSIONNUM"),
        column("PIDCOUNTYCODE"),
        column("RESULTPOSITIVE"),
        column("OBRCREATEDATE"),
    );
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.ends_with(b"\n"));
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.pop();
    let header = std::str::from_utf8(lines[0]).unwrap();
    let width = header.split('|').count();
    assert!([45, 56, 65].contains(&width), "unknown header");
    assert_eq!(header.split('|').next_back(), Some("RESULTPOSITIVE"));

    let mut observed = Observed::default();
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut groups: HashMap<Key, Vec<(u64, Vec<String>)>> = HashMap::new();
    for (i, raw) in lines[1..].iter().enumerate() {
        let line_no = i as u64 + 2;
        observed.rows += 1;
        let mut reject = |reason: &str| observed.rejected.push((line_no, reason.to_owned()));
        let Ok(text) = std::str::from_utf8(raw) else {
            reject("invalid_utf8");
            continue;
        };
        let fields = match split(text) {
            Ok(fields) => fields,
            Err(reason) => {
                reject(reason);
                continue;
            }
        };
        if fields.len() != width {
            reject("field_count");
            continue;
        }
        let mut row: Vec<String> = fields[..width - 1].to_vec();
        row.resize(canonical.len() - 1, String::new());
        row.push(fields[width - 1].clone());
        if row[patient].is_empty() {
            reject("missing_patient_key");
        } else if !row[patient].bytes().all(|b| b.is_ascii_digit()) {
            reject("bad_patient_key");
        } else if row[accession].is_empty() {
            reject("missing_accession");
        } else if row[county].parse::<i64>().is_err() {
            reject("bad_county");
        } else if row[result].is_empty() {
            reject("missing_result");
        } else if !seen.insert(row.clone()) {
            observed.duplicate_lines.push(line_no);
        } else {
            let key = (row[patient].clone(), row[accession].clone());
            groups.entry(key).or_default().push((line_no, row));
        }
    }

    let mut state = State::new();
    for (key, mut rows) in groups {
        rows.sort_by_key(|(_, row)| sas_order(&row[created]));
        let (winner_line, winner) = rows.pop().unwrap();
        if let Some((_, runner_up)) = rows.last() {
            assert!(
                sas_order(&runner_up[created]) < sas_order(&winner[created]),
                "conflict for {key:?} is not decided by OBRCREATEDATE"
            );
        }
        observed
            .conflict_lines
            .extend(rows.iter().map(|(line, _)| *line));
        observed.losers_before +=
            rows.iter().filter(|(line, _)| *line < winner_line).count() as u64;
        observed.losers_after += rows.iter().filter(|(line, _)| *line > winner_line).count() as u64;
        match previous.get(&key) {
            None => {
                observed.new.insert(key.clone());
            }
            Some(before) if *before == winner => observed.unchanged += 1,
            Some(_) => {
                observed.changed.insert(key.clone());
            }
        }
        state.insert(key, winner);
    }
    observed.removed = previous
        .keys()
        .filter(|k| !state.contains_key(*k))
        .cloned()
        .collect();
    observed.conflict_lines.sort_unstable();
    observed.rejected.sort();
    (observed, state)
}

/// Every way the truth can disagree with what the file shows.
fn compare(truth: &GroundTruth, observed: &Observed) -> Result<(), String> {
    let keys = |list: &[[String; 2]]| -> BTreeSet<Key> {
        list.iter().map(|[p, a]| (p.clone(), a.clone())).collect()
    };
    let mut problems = Vec::new();
    let mut check = |what: &str, ok: bool| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    let c = &truth.counts;
    check("rows", truth.rows == observed.rows);
    check(
        "counts balance",
        truth.rows == c.new + c.changed + c.unchanged + c.duplicate + c.conflict + c.rejected,
    );
    check(
        "new keys",
        keys(&truth.new) == observed.new && truth.new.len() == observed.new.len(),
    );
    check(
        "changed keys",
        keys(&truth.changed) == observed.changed && truth.changed.len() == observed.changed.len(),
    );
    check(
        "removed keys",
        keys(&truth.removed) == observed.removed && truth.removed.len() == observed.removed.len(),
    );
    check("new count", c.new == observed.new.len() as u64);
    check("changed count", c.changed == observed.changed.len() as u64);
    check("unchanged count", c.unchanged == observed.unchanged);
    check("removed count", c.removed == observed.removed.len() as u64);
    check(
        "duplicate lines",
        truth.duplicate_lines == observed.duplicate_lines,
    );
    check(
        "duplicate count",
        c.duplicate == observed.duplicate_lines.len() as u64,
    );
    check(
        "conflict lines",
        truth.conflict_lines == observed.conflict_lines,
    );
    check(
        "conflict count",
        c.conflict == observed.conflict_lines.len() as u64,
    );
    check("rejected rows", truth.rejected == observed.rejected);
    check(
        "rejected count",
        c.rejected == observed.rejected.len() as u64,
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "truth disagrees with the file on: {}",
            problems.join(", ")
        ))
    }
}

fn assert_truth_holds(path: &Path, truth: &GroundTruth, previous: &State) -> (Observed, State) {
    let (observed, state) = classify(path, previous);
    if let Err(problem) = compare(truth, &observed) {
        panic!("{}: {problem}", path.display());
    }
    (observed, state)
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let read = |summary: &GenSummary| {
        (
            std::fs::read(&summary.path).unwrap(),
            std::fs::read(&summary.truth_path).unwrap(),
        )
    };
    let a = generate(&base_args(&dir.path().join("a.TXT"))).unwrap();
    let b = generate(&base_args(&dir.path().join("b.TXT"))).unwrap();
    assert_eq!(read(&a), read(&b));
    let other = GenArgs {
        seed: 8,
        ..base_args(&dir.path().join("c.TXT"))
    };
    let c = generate(&other).unwrap();
    assert_ne!(read(&a).0, read(&c).0);

    let next = |name: &str| GenArgs {
        from: Some(a.path.clone()),
        shuffle: true,
        ..base_args(&dir.path().join(name))
    };
    let n1 = generate(&next("n1.TXT")).unwrap();
    let n2 = generate(&next("n2.TXT")).unwrap();
    assert_eq!(read(&n1), read(&n2));
}

#[test]
fn header_versions_have_their_column_counts_and_older_ones_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows_by_version = Vec::new();
    for (version, width) in [("v1", 45), ("v2", 56), ("v3", 65)] {
        let args = GenArgs {
            header: version.into(),
            rows: 500,
            malformed: 0.0,
            ..base_args(&dir.path().join(format!("{version}.TXT")))
        };
        let (summary, truth) = run(&args);
        assert_eq!(truth.rows, 500);
        let text = std::fs::read_to_string(&summary.path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split('|').collect();
        assert_eq!(header.len(), width);
        assert_eq!(header[..44], canonical_columns()[..44]);
        assert_eq!(header.last(), Some(&"RESULTPOSITIVE"));
        let rows: Vec<Vec<String>> = lines.map(|l| split(l).unwrap()).collect();
        assert!(
            rows.iter().all(|r| r.len() == width),
            "{version} rows have {width} fields"
        );
        rows_by_version.push(rows);
    }
    // The same seed under v1 gives v3's records without the extra columns, and v3 fills some of them.
    let (v1, v3) = (&rows_by_version[0], &rows_by_version[2]);
    for (old, new) in v1.iter().zip(v3) {
        assert_eq!(old[..44], new[..44]);
        assert_eq!(old[44], new[64]);
    }
    assert!(v3.iter().any(|r| r[44..64].iter().any(|f| !f.is_empty())));
    assert!(rows_by_version[1]
        .iter()
        .all(|r| r[44..55].iter().all(String::is_empty)));
}

#[test]
fn first_snapshot_truth_matches_an_independent_classification() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, truth) = run(&base_args(&dir.path().join("first.TXT")));
    assert_eq!(
        summary.rows, 2_000,
        "a first snapshot has exactly --rows rows"
    );
    assert_eq!(summary.counts, truth.counts);
    let (observed, _) = assert_truth_holds(&summary.path, &truth, &State::new());
    assert!(
        truth.counts.duplicate > 10 && truth.counts.conflict > 10 && truth.counts.rejected >= 8
    );
    assert_eq!(
        truth.counts.changed + truth.counts.unchanged + truth.counts.removed,
        0
    );
    let reasons: BTreeSet<&str> = observed.rejected.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        reasons,
        malformed::REJECT_REASONS.into_iter().collect(),
        "every reject reason appears"
    );
}

#[test]
fn next_snapshots_truth_matches_an_independent_classification() {
    let dir = tempfile::tempdir().unwrap();
    let (first, truth0) = run(&base_args(&dir.path().join("s0.TXT")));
    let (_, state0) = assert_truth_holds(&first.path, &truth0, &State::new());

    let (second, truth1) = run(&GenArgs {
        from: Some(first.path.clone()),
        ..base_args(&dir.path().join("s1.TXT"))
    });
    assert_eq!(truth1.generation, 1);
    let (observed1, state1) = assert_truth_holds(&second.path, &truth1, &state0);
    let c = truth1.counts;
    assert!(c.new > 30 && c.changed > 30 && c.removed > 20 && c.unchanged > 1_000);
    assert!(c.duplicate > 10 && c.conflict > 10 && c.rejected > 5);
    assert!(
        observed1.losers_before > 0 && observed1.losers_after > 0,
        "losers sit before and after winners"
    );

    let third_args = GenArgs {
        from: Some(second.path.clone()),
        shuffle: true,
        seed: 9,
        ..base_args(&dir.path().join("s2.TXT"))
    };
    let (third, truth2) = run(&third_args);
    assert_eq!(truth2.generation, 2);
    let (observed2, _) = assert_truth_holds(&third.path, &truth2, &state1);
    let all_earlier: HashSet<&String> = state0
        .keys()
        .chain(state1.keys())
        .map(|(patient, _)| patient)
        .collect();
    let known_patients_reused = observed2
        .new
        .iter()
        .filter(|(p, _)| all_earlier.contains(p))
        .count();
    assert!(
        known_patients_reused > 0,
        "some new results belong to known patients"
    );
    for key in &observed2.new {
        assert!(
            !state0.contains_key(key),
            "new key {key:?} was already in the first snapshot"
        );
    }
}

#[test]
fn the_check_fails_on_a_wrong_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (first, truth0) = run(&base_args(&dir.path().join("s0.TXT")));
    let (_, state0) = classify(&first.path, &State::new());
    let (second, truth) = run(&GenArgs {
        from: Some(first.path.clone()),
        ..base_args(&dir.path().join("s1.TXT"))
    });
    let (observed, _) = classify(&second.path, &state0);
    assert!(compare(&truth, &observed).is_ok());
    assert!(compare(&truth0, &observed).is_err());

    let mut wrong = truth.clone();
    let key = wrong.changed.pop().unwrap();
    wrong.new.push(key);
    assert!(
        compare(&wrong, &observed).is_err(),
        "a changed key reported as new"
    );

    let mut wrong = truth.clone();
    wrong.conflict_lines[0] += 1;
    assert!(
        compare(&wrong, &observed).is_err(),
        "a conflict loser on the wrong line"
    );

    let mut wrong = truth.clone();
    wrong.rejected[0].1 = "bad_county".into();
    wrong.rejected[1].1 = "bad_county".into();
    assert!(compare(&wrong, &observed).is_err(), "a wrong reject reason");

    let mut wrong = truth.clone();
    wrong.removed.pop();
    assert!(compare(&wrong, &observed).is_err(), "a removed key missing");

    let mut wrong = truth;
    wrong.counts.unchanged -= 1;
    wrong.counts.duplicate += 1;
    assert!(
        compare(&wrong, &observed).is_err(),
        "counts shifted between outcomes"
    );
}

#[test]
fn shuffling_keeps_the_rows_and_outcomes_and_renumbers_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = run(&base_args(&dir.path().join("s0.TXT")));
    let next = |name: &str, shuffle: bool| GenArgs {
        from: Some(first.path.clone()),
        shuffle,
        ..base_args(&dir.path().join(name))
    };
    let (plain, plain_truth) = run(&next("plain.TXT", false));
    let (shuffled, shuffled_truth) = run(&next("shuffled.TXT", true));
    let sorted_lines = |path: &Path| {
        let text = std::fs::read(path).unwrap();
        let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        lines.sort();
        lines
    };
    let plain_bytes = std::fs::read(&plain.path).unwrap();
    let shuffled_bytes = std::fs::read(&shuffled.path).unwrap();
    assert_ne!(plain_bytes, shuffled_bytes);
    assert_eq!(sorted_lines(&plain.path), sorted_lines(&shuffled.path));
    assert_eq!(plain_truth.counts, shuffled_truth.counts);
    let set = |list: &[[String; 2]]| list.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(set(&plain_truth.new), set(&shuffled_truth.new));
    assert_eq!(set(&plain_truth.changed), set(&shuffled_truth.changed));
    assert_ne!(plain_truth.conflict_lines, shuffled_truth.conflict_lines);
    let (_, state0) = classify(&first.path, &State::new());
    assert_truth_holds(&shuffled.path, &shuffled_truth, &state0);
}

#[test]
fn header_downgrade_and_upgrade_are_classified_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let (v3, truth3) = run(&GenArgs {
        malformed: 0.0,
        ..base_args(&dir.path().join("v3.TXT"))
    });
    let (_, state3) = assert_truth_holds(&v3.path, &truth3, &State::new());
    // v3 → v1 drops the filled extra columns: those records change.
    let quiet = |from: &Path, header: &str, name: &str| GenArgs {
        from: Some(from.to_owned()),
        header: header.into(),
        changed: 0.0,
        new: 0.0,
        aged_out: 0.0,
        duplicate: 0.0,
        conflict: 0.0,
        malformed: 0.0,
        ..base_args(&dir.path().join(name))
    };
    let (v1, truth1) = run(&quiet(&v3.path, "v1", "v1.TXT"));
    let (_, state1) = assert_truth_holds(&v1.path, &truth1, &state3);
    assert!(truth1.counts.changed > 100 && truth1.counts.unchanged > 100);
    // v1 → v3 with nothing else changing: every record is unchanged.
    let (back, truth_back) = run(&quiet(&v1.path, "v3", "back.TXT"));
    assert_truth_holds(&back.path, &truth_back, &state1);
    assert_eq!(truth_back.counts.unchanged, truth_back.rows);
}

#[test]
fn rows_look_like_eclrs_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, _) = run(&GenArgs {
        rows: 4_000,
        malformed: 0.0,
        ..base_args(&dir.path().join("look.TXT"))
    });
    let text = std::fs::read_to_string(&summary.path).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let average = rows.iter().map(|r| r.len() + 1).sum::<usize>() / rows.len();
    assert!(
        (550..=800).contains(&average),
        "average row is {average} bytes"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("\"ACME LABORATORIES | INC\"")),
        "quoted fields holding the delimiter"
    );
    assert!(
        rows.iter().any(|r| r.contains("\"\"")),
        "doubled inner quotes"
    );
    let fields: Vec<Vec<String>> = rows.iter().map(|r| split(r).unwrap()).collect();
    let (county, patient, dob, created) = (
        column("PIDCOUNTYCODE"),
        column("PIDPATIENTKEY"),
        column("PIDDATEOFBIRTH"),
        column("OBRCREATEDATE"),
    );
    let nyc = fields
        .iter()
        .filter(|f| ["5", "47", "61", "81", "85"].contains(&f[county].as_str()))
        .count();
    let share = nyc as f64 / fields.len() as f64;
    assert!((0.34..0.46).contains(&share), "NYC share {share}");
    for f in &fields {
        assert_eq!(f[patient].len(), 14);
        assert!(f[dob].ends_with(":00:00:00.000000"));
        sas_order(&f[dob]);
        sas_order(&f[created]);
    }
    let patients: HashSet<&str> = fields.iter().map(|f| f[patient].as_str()).collect();
    assert!(
        patients.len() < fields.len(),
        "some patients have several results"
    );
}

#[test]
fn a_next_snapshot_needs_its_previous_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = run(&GenArgs {
        rows: 50,
        ..base_args(&dir.path().join("s0.TXT"))
    });
    std::fs::remove_file(GroundTruth::path_for(&first.path)).unwrap();
    let out = dir.path().join("s1.TXT");
    let err = generate(&GenArgs {
        from: Some(first.path.clone()),
        ..base_args(&out)
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("ground truth"), "{err:#}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn truth_paths_sit_beside_the_snapshot() {
    assert_eq!(
        GroundTruth::path_for(Path::new("/x/ECLRS_20210325.TXT")),
        Path::new("/x/ECLRS_20210325.TXT.truth.json")
    );
}
