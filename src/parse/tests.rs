//! Tests of the parse module as its callers use it: the shared ECLRS samples, constructed rows for every reject
//! reason and layout rule, and a few thousand synthetic rows.

use std::collections::HashMap;
use std::path::Path;

use super::columns::{self, HeaderVersion};
use super::*;

// ---------------------------------------------------------------------------------------------------------------
// Helpers

fn sample(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/samples")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A whole file split the way the parser pool splits it: header line, then the rest as one chunk starting at
/// line 2.
struct File {
    bytes: Vec<u8>,
    layout: Layout,
    body_offset: usize,
}

impl File {
    fn open(profile: &Profile, bytes: Vec<u8>) -> File {
        let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
        let layout = profile.layout(&bytes[..newline]).unwrap();
        File {
            bytes,
            layout,
            body_offset: newline + 1,
        }
    }

    fn parse(&self) -> ParsedChunk {
        self.layout
            .parse_chunk(&self.bytes[self.body_offset..], 2, self.body_offset as u64)
    }

    fn row_bytes(&self, row: &ParsedRow) -> &[u8] {
        &self.bytes[row.offset as usize..row.offset as usize + row.len as usize]
    }
}

fn header(version: HeaderVersion) -> String {
    version.columns().join("|")
}

fn eclrs(version: HeaderVersion) -> Layout {
    Profile::Eclrs.layout(header(version).as_bytes()).unwrap()
}

fn canonical_index(name: &str) -> usize {
    columns::canonical_columns()
        .iter()
        .position(|c| *c == name)
        .unwrap()
}

/// A valid record in canonical (v3) order with invented values; v2 and v3 extra columns blank.
fn record_fields(i: usize) -> Vec<String> {
    let mut fields: Vec<String> = columns::canonical_columns()
        .iter()
        .map(|c| format!("{}-{i}", c.to_lowercase()))
        .collect();
    let mut set = |name: &str, value: String| fields[canonical_index(name)] = value;
    set(
        "PIDPATIENTKEY",
        format!("{:014}", 15_000_000_000_000u64 + i as u64),
    );
    set("OBRACCESSIONNUM", format!("ACC{i:07}"));
    set("PIDCOUNTYCODE", format!("{}", 1 + i % 120));
    set(
        "OBRCREATEDATE",
        format!("{:02}MAR2021:{:02}:34:09.283000", 1 + i % 28, i % 24),
    );
    set("MSHSENDINGFACILITYNAME", "ACME LABORATORIES | INC".into());
    set(
        "OBXOBSERVATIONRESULTTEXT",
        r#"Detected (quoted "P")"#.into(),
    );
    set("RESULTPOSITIVE", "POSITIVE".into());
    for c in columns::V2_EXTRA.iter().chain(&columns::V3_EXTRA) {
        set(c, String::new());
    }
    fields
}

/// One file line of `version` holding the canonical `fields` (the v2/v3 extras dropped as the version requires),
/// quoted where a value holds `|` or `"`.
fn line(version: HeaderVersion, fields: &[String]) -> String {
    let names = columns::canonical_columns();
    let present = version.columns();
    fields
        .iter()
        .zip(&names)
        .filter(|(_, name)| present.contains(name))
        .map(|(v, _)| quote(v))
        .collect::<Vec<_>>()
        .join("|")
}

fn quote(value: &str) -> String {
    if value.contains(['|', '"']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn with(mut fields: Vec<String>, name: &str, value: &str) -> Vec<String> {
    fields[canonical_index(name)] = value.to_string();
    fields
}

fn reason_of(layout: &Layout, row: &[u8]) -> RejectReason {
    let chunk = layout.parse_chunk(row, 2, 0);
    assert!(chunk.rows.is_empty());
    assert_eq!(chunk.rejects.len(), 1);
    let reason = chunk.rejects[0].reason.clone();
    assert_eq!(layout.parse_record(row), Err(reason.clone()));
    reason
}

fn only_row(layout: &Layout, row: &[u8]) -> ParsedRow {
    let chunk = layout.parse_chunk(row, 2, 0);
    assert!(chunk.rejects.is_empty(), "{:?}", chunk.rejects[0].reason);
    assert_eq!(chunk.rows.len(), 1);
    chunk.rows[0]
}

// ---------------------------------------------------------------------------------------------------------------
// The shared samples

#[test]
fn every_row_of_the_shared_samples_parses_under_its_header_version() {
    for (name, version, rows) in [
        ("eclrs_v1_sample.TXT", "v1", 6),
        ("eclrs_v2_crlf_sample.TXT", "v2", 6),
        ("eclrs_v3_sample.TXT", "v3", 12),
    ] {
        let file = File::open(&Profile::Eclrs, sample(name));
        assert_eq!(file.layout.version(), version, "{name}");
        assert_eq!(file.layout.columns().len(), columns::V3_LEN);
        assert_eq!(
            file.layout.key_columns(),
            ["PIDPATIENTKEY", "OBRACCESSIONNUM"]
        );
        let chunk = file.parse();
        assert!(
            chunk.rejects.is_empty(),
            "{name}: {:?}",
            chunk
                .rejects
                .iter()
                .map(|r| (r.line, &r.reason))
                .collect::<Vec<_>>()
        );
        assert_eq!(chunk.rows.len(), rows, "{name}");
        let lines: Vec<u64> = chunk.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, (2..2 + rows as u64).collect::<Vec<_>>(), "{name}");
        assert!(chunk.rows.iter().all(|r| r.order_key > 0), "{name}");
    }
}

#[test]
fn sample_rows_found_again_by_offset_parse_to_the_same_hashes_and_payloads() {
    let (mut scratch, mut payload) = (EventScratch::default(), String::new());
    for name in [
        "eclrs_v1_sample.TXT",
        "eclrs_v2_crlf_sample.TXT",
        "eclrs_v3_sample.TXT",
    ] {
        let file = File::open(&Profile::Eclrs, sample(name));
        for row in file.parse().rows {
            let bytes = file.row_bytes(&row);
            assert!(!bytes.contains(&b'\n') && !bytes.ends_with(b"\r"), "{name}");
            let record = file.layout.parse_record(bytes).unwrap();
            assert_eq!(record.fields.len(), columns::V3_LEN);
            assert_eq!(key_hash(&record.key), row.key_hash, "{name}");
            assert_eq!(file.layout.row_hash(&record), row.row_hash, "{name}");
            // What an event is written from: the same key, hashes and values (as a JSON array).
            let event = file
                .layout
                .parse_event(bytes, &mut scratch, &mut payload)
                .unwrap();
            assert_eq!(event.key, record.key, "{name}");
            assert_eq!(
                (event.key_hash, event.row_hash),
                (row.key_hash, row.row_hash)
            );
            let values: Vec<String> = serde_json::from_str(&payload).unwrap();
            assert_eq!(values, record.fields, "{name}");
        }
    }
}

#[test]
fn event_payloads_escape_quotes_backslashes_and_control_characters() {
    let (mut scratch, mut payload) = (EventScratch::default(), String::new());
    // Quotes, backslashes and control characters are escaped; other text is kept as it is.
    let layout = csv_profile()
        .layout(b"case_id,test_id,result,reported,exported_at")
        .unwrap();
    let row = "a,1,'say \"hi\"\\ \t\u{1} é',x,y";
    let event = layout
        .parse_event(row.as_bytes(), &mut scratch, &mut payload)
        .unwrap();
    let values: Vec<String> = serde_json::from_str(&payload).unwrap();
    assert_eq!(values, layout.parse_record(row.as_bytes()).unwrap().fields);
    assert_eq!(values[2], "say \"hi\"\\ \t\u{1} é");
    assert_eq!(event.key, vec!["a".to_string(), "1".to_string()]);
}

#[test]
fn quoted_sample_fields_are_unquoted_in_records() {
    let file = File::open(&Profile::Eclrs, sample("eclrs_v3_sample.TXT"));
    let facility = canonical_index("MSHSENDINGFACILITYNAME");
    let names: Vec<String> = file
        .parse()
        .rows
        .iter()
        .map(|row| {
            let record = file.layout.parse_record(file.row_bytes(row)).unwrap();
            record.fields[facility].clone()
        })
        .collect();
    assert!(names.iter().any(|n| n == "ACME LABORATORIES | INC"));
    assert!(names
        .iter()
        .any(|n| n == "SHERLOCK BIOSCIENCES | CUE HEALTH"));
    assert!(names.iter().all(|n| !n.contains('"')));
}

#[test]
fn doubled_quotes_and_delimiters_inside_quotes_are_unquoted() {
    let layout = eclrs(HeaderVersion::V3);
    let fields = with(
        record_fields(1),
        "OBXOBSERVATIONRESULTTEXT",
        r#"say "x" | "y""#,
    );
    let row = line(HeaderVersion::V3, &fields);
    assert!(row.contains(r#""say ""x"" | ""y""""#));
    let record = layout.parse_record(row.as_bytes()).unwrap();
    assert_eq!(record.fields, fields);
    assert_eq!(
        record.fields[canonical_index("OBXOBSERVATIONRESULTTEXT")],
        r#"say "x" | "y""#
    );
    assert_eq!(record.key, ["15000000000001", "ACC0000001"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Headers

#[test]
fn each_eclrs_header_version_is_recognised_and_maps_to_v3_columns() {
    for version in [HeaderVersion::V1, HeaderVersion::V2, HeaderVersion::V3] {
        let layout = eclrs(version);
        assert_eq!(layout.version(), version.as_str());
        assert_eq!(layout.columns(), columns::canonical_columns());
    }
}

#[test]
fn a_bom_and_surrounding_whitespace_are_stripped_from_the_header() {
    let text = format!("\u{feff}  {}\r", header(HeaderVersion::V2));
    let layout = Profile::Eclrs.layout(text.as_bytes()).unwrap();
    assert_eq!(layout.version(), "v2");
}

#[test]
fn an_unknown_header_fails_without_echoing_its_text() {
    let headerless = line(
        HeaderVersion::V3,
        &with(record_fields(7), "PIDLASTNAME", "SECRETNAME"),
    );
    let renamed = header(HeaderVersion::V1).replace("PIDCITY", "PIDTOWN");
    for text in [
        headerless.as_str(),
        renamed.as_str(),
        "SECRETNAME|PIDFIRSTNAME",
    ] {
        let err = Profile::Eclrs.layout(text.as_bytes()).unwrap_err();
        assert!(matches!(err, HeaderError::Unknown(_)));
        assert_eq!(err.reason(), "unknown_header");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("SECRETNAME") && !shown.contains("PIDTOWN"),
            "{shown}"
        );
    }
    let err = Profile::Eclrs.layout(renamed.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("column 8 is not `PIDCITY`"),
        "{err}"
    );
    // Lower-case or quoted column names are not the ECLRS header.
    let lower = header(HeaderVersion::V3).to_lowercase();
    assert!(Profile::Eclrs.layout(lower.as_bytes()).is_err());
}

#[test]
fn a_blank_header_means_an_empty_file() {
    for text in ["", "  \r", "\u{feff}"] {
        let err = Profile::Eclrs.layout(text.as_bytes()).unwrap_err();
        assert_eq!(err, HeaderError::Empty);
        assert_eq!(err.reason(), "empty_file");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Lines, line numbers and offsets

#[test]
fn crlf_empty_lines_and_a_missing_final_newline_keep_line_numbers_and_offsets() {
    let layout = eclrs(HeaderVersion::V3);
    let a = line(HeaderVersion::V3, &record_fields(1));
    let b = line(HeaderVersion::V3, &record_fields(2));
    let c = line(HeaderVersion::V3, &record_fields(3));
    let chunk = format!("{a}\r\n\r\n{b}\n\n\n{c}");
    let parsed = layout.parse_chunk(chunk.as_bytes(), 10, 1000);
    assert!(parsed.rejects.is_empty());
    let lines: Vec<u64> = parsed.rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [10, 12, 15]);
    for (row, text) in parsed.rows.iter().zip([&a, &b, &c]) {
        let start = (row.offset - 1000) as usize;
        assert_eq!(&chunk[start..start + row.len as usize], text.as_str());
    }
}

#[test]
fn a_trailing_newline_or_crlf_is_not_a_row() {
    let layout = eclrs(HeaderVersion::V1);
    let a = line(HeaderVersion::V1, &record_fields(1));
    for chunk in [format!("{a}\n"), format!("{a}\r\n"), a.clone()] {
        let parsed = layout.parse_chunk(chunk.as_bytes(), 2, 0);
        assert_eq!(parsed.rows.len(), 1);
        assert!(parsed.rejects.is_empty());
        assert_eq!(parsed.rows[0].len as usize, a.len());
    }
    assert!(layout.parse_chunk(b"", 2, 0).rows.is_empty());
    assert!(layout.parse_chunk(b"\n\r\n", 2, 0).rejects.is_empty());
}

#[test]
fn rejects_carry_their_line_and_raw_row_without_terminator() {
    let layout = eclrs(HeaderVersion::V3);
    let good = line(HeaderVersion::V3, &record_fields(1));
    let chunk = format!("{good}\r\na|b|c\r\n{good}\n");
    let parsed = layout.parse_chunk(chunk.as_bytes(), 5, 0);
    assert_eq!(parsed.rows.len(), 2);
    assert_eq!(
        parsed.rejects,
        [Reject {
            line: 6,
            reason: RejectReason::FieldCount,
            raw: b"a|b|c".to_vec()
        }]
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Reject reasons

#[test]
fn each_validation_failure_rejects_with_its_named_reason() {
    let layout = eclrs(HeaderVersion::V3);
    let row =
        |name: &str, value: &str| line(HeaderVersion::V3, &with(record_fields(3), name, value));
    let cases = [
        (row("PIDPATIENTKEY", ""), "missing_patient_key"),
        (row("PIDPATIENTKEY", " \t "), "missing_patient_key"),
        (row("PIDPATIENTKEY", "1504A778245809"), "bad_patient_key"),
        (row("PIDPATIENTKEY", "-15040778245809"), "bad_patient_key"),
        (row("OBRACCESSIONNUM", "  "), "missing_accession"),
        (row("PIDCOUNTYCODE", ""), "bad_county"),
        (row("PIDCOUNTYCODE", "Kings"), "bad_county"),
        (row("PIDCOUNTYCODE", "6.1"), "bad_county"),
        (row("PIDCOUNTYCODE", "99999999999999999999"), "bad_county"),
        (row("RESULTPOSITIVE", " "), "missing_result"),
        (format!("{}|extra", row("PIDLASTNAME", "X")), "field_count"),
        (line(HeaderVersion::V2, &record_fields(3)), "field_count"),
        (
            // The record's quoted fields would close this quote, so they are made plain first.
            line(
                HeaderVersion::V3,
                &with(
                    with(record_fields(3), "MSHSENDINGFACILITYNAME", "ACME"),
                    "OBXOBSERVATIONRESULTTEXT",
                    "Detected",
                ),
            )
            .replacen("pidlastname", "\"SMITH", 1),
            "unterminated_quote",
        ),
        (
            row("PIDLASTNAME", "SMITH").replacen("|POSITIVE", "|\"POSITIVE", 1),
            "unterminated_quote",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            reason_of(&layout, text.as_bytes()).as_str(),
            expected,
            "{expected}"
        );
    }

    let mut invalid = row("PIDLASTNAME", "SMITH").into_bytes();
    invalid[2] = 0xFF;
    assert_eq!(reason_of(&layout, &invalid), RejectReason::InvalidUtf8);
}

#[test]
fn reasons_take_precedence_in_the_specified_order() {
    let layout = eclrs(HeaderVersion::V3);
    // Invalid UTF-8 before field count.
    let mut bytes = b"\xC3(|a".to_vec();
    assert_eq!(reason_of(&layout, &bytes), RejectReason::InvalidUtf8);
    // Unterminated quote before field count.
    bytes = b"a|\"b".to_vec();
    assert_eq!(reason_of(&layout, &bytes), RejectReason::UnterminatedQuote);
    // Then the field checks in order: patient key, accession, county, result.
    let all_bad = {
        let f = with(record_fields(1), "PIDPATIENTKEY", "X");
        let f = with(f, "OBRACCESSIONNUM", "");
        let f = with(f, "PIDCOUNTYCODE", "");
        with(f, "RESULTPOSITIVE", "")
    };
    let mut fields = all_bad;
    for (name, fixed, expected) in [
        ("PIDPATIENTKEY", "123", RejectReason::BadPatientKey),
        ("OBRACCESSIONNUM", "A1", RejectReason::MissingAccession),
        ("PIDCOUNTYCODE", "61", RejectReason::BadCounty),
        ("RESULTPOSITIVE", "POSITIVE", RejectReason::MissingResult),
    ] {
        let text = line(HeaderVersion::V3, &fields);
        assert_eq!(reason_of(&layout, text.as_bytes()), expected);
        fields = with(fields, name, fixed);
    }
    only_row(&layout, line(HeaderVersion::V3, &fields).as_bytes());
}

#[test]
fn valid_non_ascii_text_is_accepted() {
    let layout = eclrs(HeaderVersion::V3);
    let fields = with(record_fields(4), "PIDLASTNAME", "MÜLLER-NÚÑEZ 李");
    let text = line(HeaderVersion::V3, &fields);
    only_row(&layout, text.as_bytes());
    assert_eq!(layout.parse_record(text.as_bytes()).unwrap().fields, fields);
}

#[test]
fn a_nul_byte_in_any_field_is_invalid_text() {
    // PostgreSQL's text cannot hold NUL: such a row is rejected here instead of failing its batch's COPY.
    let layout = eclrs(HeaderVersion::V3);
    let fields = with(record_fields(4), "PIDADDRESSLINE2", "APT\u{0}4");
    let text = line(HeaderVersion::V3, &fields);
    assert_eq!(
        reason_of(&layout, text.as_bytes()),
        RejectReason::InvalidUtf8
    );
}

#[test]
fn county_codes_accept_any_integer_with_surrounding_spaces() {
    let layout = eclrs(HeaderVersion::V3);
    for county in ["0", "61", " 47 ", "-1", "+5", "007"] {
        let text = line(
            HeaderVersion::V3,
            &with(record_fields(5), "PIDCOUNTYCODE", county),
        );
        only_row(&layout, text.as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Hashes and order keys

#[test]
fn the_same_record_under_a_v1_v2_or_v3_header_has_the_same_hashes() {
    let fields = record_fields(42);
    let rows: Vec<ParsedRow> = [HeaderVersion::V1, HeaderVersion::V2, HeaderVersion::V3]
        .into_iter()
        .map(|v| only_row(&eclrs(v), line(v, &fields).as_bytes()))
        .collect();
    for row in &rows[1..] {
        assert_eq!(row.key_hash, rows[0].key_hash);
        assert_eq!(row.row_hash, rows[0].row_hash);
        assert_eq!(row.order_key, rows[0].order_key);
    }
    let records: Vec<Record> = [HeaderVersion::V1, HeaderVersion::V2, HeaderVersion::V3]
        .into_iter()
        .map(|v| eclrs(v).parse_record(line(v, &fields).as_bytes()).unwrap())
        .collect();
    assert!(records.iter().all(|r| r.fields == fields));
}

#[test]
fn a_value_in_a_v3_only_column_changes_the_row_hash() {
    let layout = eclrs(HeaderVersion::V3);
    let plain = only_row(
        &layout,
        line(HeaderVersion::V3, &record_fields(1)).as_bytes(),
    );
    let asked = with(record_fields(1), "PIDFIRSTTESTYN", "Y");
    let asked = only_row(&layout, line(HeaderVersion::V3, &asked).as_bytes());
    assert_eq!(plain.key_hash, asked.key_hash);
    assert_ne!(plain.row_hash, asked.row_hash);
}

#[test]
fn keys_are_trimmed_but_other_values_are_hashed_as_read() {
    let layout = eclrs(HeaderVersion::V3);
    let base = record_fields(9);
    let plain = only_row(&layout, line(HeaderVersion::V3, &base).as_bytes());
    let padded_key = with(base.clone(), "PIDPATIENTKEY", " 15000000000009 ");
    let padded_key = only_row(&layout, line(HeaderVersion::V3, &padded_key).as_bytes());
    assert_eq!(padded_key.key_hash, plain.key_hash);
    assert_ne!(padded_key.row_hash, plain.row_hash);
    let padded_name = with(base, "PIDLASTNAME", "pidlastname-9 ");
    let padded_name = only_row(&layout, line(HeaderVersion::V3, &padded_name).as_bytes());
    assert_ne!(padded_name.row_hash, plain.row_hash);
}

#[test]
fn quoting_a_value_does_not_change_the_hashes() {
    let layout = eclrs(HeaderVersion::V3);
    let text = line(HeaderVersion::V3, &record_fields(6));
    let quoted = text.replacen("|POSITIVE", "|\"POSITIVE\"", 1);
    assert_ne!(text, quoted);
    let (plain, quoted) = (
        only_row(&layout, text.as_bytes()),
        only_row(&layout, quoted.as_bytes()),
    );
    assert_eq!(
        (plain.key_hash, plain.row_hash, plain.order_key),
        (quoted.key_hash, quoted.row_hash, quoted.order_key)
    );
}

#[test]
fn hashes_do_not_depend_on_row_order_or_position() {
    let layout = eclrs(HeaderVersion::V3);
    let lines: Vec<String> = (0..50)
        .map(|i| line(HeaderVersion::V3, &record_fields(i)))
        .collect();
    let by_key = |chunk: ParsedChunk| -> HashMap<KeyHash, (RowHash, u64)> {
        chunk
            .rows
            .iter()
            .map(|r| (r.key_hash, (r.row_hash, r.order_key)))
            .collect()
    };
    let forward = by_key(layout.parse_chunk(lines.join("\n").as_bytes(), 2, 0));
    let mut reversed_lines = lines.clone();
    reversed_lines.reverse();
    let reversed = by_key(layout.parse_chunk(reversed_lines.join("\r\n").as_bytes(), 900, 77));
    assert_eq!(forward.len(), 50);
    assert_eq!(forward, reversed);
}

#[test]
fn order_key_is_obrcreatedate_in_sortable_microseconds() {
    let layout = eclrs(HeaderVersion::V3);
    let at = |value: &str| {
        let text = line(
            HeaderVersion::V3,
            &with(record_fields(2), "OBRCREATEDATE", value),
        );
        only_row(&layout, text.as_bytes()).order_key
    };
    let expected = sas::parse_sas_datetime("13MAR2021:06:34:09.283000")
        .unwrap()
        .sortable_micros();
    assert_eq!(at("13MAR2021:06:34:09.283000"), expected);
    assert_eq!(at(" 13MAR2021:06:34:09.283000 "), expected);
    assert!(at("14MAR2021:00:00:00.000000") > expected);
    assert_eq!(at(""), 0);
    assert_eq!(at("2021-03-13 06:34"), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// The delimited profile

fn csv_profile() -> Profile {
    Profile::Delimited(DelimitedProfile {
        delimiter: b',',
        quote: b'\'',
        key_columns: vec!["case_id".into(), "test_id".into()],
        required_columns: vec!["result".into()],
        hash_exclude: vec!["exported_at".into()],
        order_column: Some("reported".into()),
    })
}

#[test]
fn a_delimited_header_names_the_columns() {
    let layout = csv_profile()
        .layout(b"\xEF\xBB\xBFcase_id,'test_id' , result ,reported,exported_at,note")
        .unwrap();
    assert_eq!(layout.version(), "delimited");
    assert_eq!(
        layout.columns(),
        [
            "case_id",
            "test_id",
            "result",
            "reported",
            "exported_at",
            "note"
        ]
    );
    assert_eq!(layout.key_columns(), ["case_id", "test_id"]);
}

#[test]
fn a_delimited_header_must_hold_the_configured_columns() {
    let err = csv_profile()
        .layout(b"case_id,result,reported")
        .unwrap_err();
    assert_eq!(err, HeaderError::MissingColumn("test_id".into()));
    assert_eq!(err.reason(), "unknown_header");
    let err = csv_profile()
        .layout(b"case_id,test_id,reported")
        .unwrap_err();
    assert_eq!(err, HeaderError::MissingColumn("result".into()));
    let err = csv_profile().layout(b"case_id,test_id,result").unwrap_err();
    assert_eq!(err, HeaderError::MissingColumn("reported".into()));
    // A hash_exclude column need not be there.
    assert!(csv_profile()
        .layout(b"case_id,test_id,result,reported")
        .is_ok());
}

#[test]
fn delimited_rows_validate_hash_and_order() {
    let layout = csv_profile()
        .layout(b"case_id,test_id,result,reported,exported_at,note")
        .unwrap();
    let row = only_row(
        &layout,
        b"C1, T1 ,pos,2021-03-02,2021-03-05T10:00,'a, ''b'''",
    );
    let record = layout
        .parse_record(b"C1, T1 ,pos,2021-03-02,2021-03-05T10:00,'a, ''b'''")
        .unwrap();
    assert_eq!(record.key, ["C1", "T1"]);
    assert_eq!(
        record.fields,
        [
            "C1",
            " T1 ",
            "pos",
            "2021-03-02",
            "2021-03-05T10:00",
            "a, 'b'"
        ]
    );
    assert_eq!(key_hash(&["C1", "T1"]), row.key_hash);
    assert_eq!(layout.row_hash(&record), row.row_hash);
    assert_eq!(row.order_key, u64::from_be_bytes(*b"2021-03-"));

    // The excluded column does not change the row hash; any other column does.
    let re_exported = only_row(
        &layout,
        b"C1, T1 ,pos,2021-03-02,2099-01-01T00:00,'a, ''b'''",
    );
    assert_eq!(re_exported.row_hash, row.row_hash);
    let changed = only_row(
        &layout,
        b"C1, T1 ,neg,2021-03-02,2021-03-05T10:00,'a, ''b'''",
    );
    assert_ne!(changed.row_hash, row.row_hash);
    assert_eq!(changed.key_hash, row.key_hash);

    let later = only_row(&layout, b"C1,T1,pos,2021-04-01,x,");
    assert!(later.order_key > row.order_key);

    for (text, reason) in [
        (
            &b" ,T1,pos,2021-03-02,x,n"[..],
            RejectReason::MissingRequired,
        ),
        (b"C1,T1,,2021-03-02,x,n", RejectReason::MissingRequired),
        (b"C1,T1,pos,2021-03-02,x", RejectReason::FieldCount),
        (
            b"C1,T1,pos,2021-03-02,x,'n",
            RejectReason::UnterminatedQuote,
        ),
        (b"C1,T1,p\xFFs,2021-03-02,x,n", RejectReason::InvalidUtf8),
    ] {
        assert_eq!(reason_of(&layout, text), reason);
    }
    assert_eq!(RejectReason::MissingRequired.as_str(), "missing_required");
}

#[test]
fn without_an_order_column_the_order_key_is_zero() {
    let profile = Profile::Delimited(DelimitedProfile {
        delimiter: b'\t',
        quote: b'"',
        key_columns: vec!["id".into()],
        required_columns: vec![],
        hash_exclude: vec![],
        order_column: None,
    });
    let layout = profile.layout(b"id\tvalue").unwrap();
    let row = only_row(&layout, b"7\tseven");
    assert_eq!(row.order_key, 0);
    assert_eq!(row.key_hash, key_hash(&["7"]));
}

// ---------------------------------------------------------------------------------------------------------------
// Volume

/// `n` synthetic v3 rows built from the shared v3 sample (so with quoted fields), each with its own key.
fn synthetic_v3_rows(n: usize) -> Vec<u8> {
    let file = File::open(&Profile::Eclrs, sample("eclrs_v3_sample.TXT"));
    let templates: Vec<Record> = file
        .parse()
        .rows
        .iter()
        .map(|row| file.layout.parse_record(file.row_bytes(row)).unwrap())
        .collect();
    let patient_key = canonical_index("PIDPATIENTKEY");
    let accession = canonical_index("OBRACCESSIONNUM");
    let mut out = Vec::with_capacity(n * 720);
    for i in 0..n {
        let mut fields = templates[i % templates.len()].fields.clone();
        fields[patient_key] = format!("{:014}", 16_000_000_000_000u64 + i as u64);
        fields[accession] = format!("ACC{i:09}");
        out.extend_from_slice(line(HeaderVersion::V3, &fields).as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn thousands_of_synthetic_rows_yield_one_outcome_each() {
    let layout = eclrs(HeaderVersion::V3);
    let rows = synthetic_v3_rows(3000);
    // Break every 100th line's patient key.
    let mut chunk = Vec::new();
    for (i, text) in rows.split(|&b| b == b'\n').enumerate() {
        if text.is_empty() {
            continue;
        }
        if i % 100 == 0 {
            let text = String::from_utf8(text.to_vec()).unwrap();
            let key = format!("|{:014}|", 16_000_000_000_000u64 + i as u64);
            assert!(text.contains(&key));
            chunk.extend_from_slice(text.replacen(&key, "|X|", 1).as_bytes());
        } else {
            chunk.extend_from_slice(text);
        }
        chunk.push(b'\n');
    }
    let parsed = layout.parse_chunk(&chunk, 2, 0);
    assert_eq!(parsed.rows.len(), 2970);
    assert_eq!(parsed.rejects.len(), 30);
    assert!(parsed
        .rejects
        .iter()
        .all(|r| r.reason == RejectReason::BadPatientKey && (r.line - 2) % 100 == 0));
    let keys: std::collections::HashSet<KeyHash> = parsed.rows.iter().map(|r| r.key_hash).collect();
    assert_eq!(keys.len(), 2970);
    for row in parsed.rows.iter().step_by(97) {
        let bytes = &chunk[row.offset as usize..][..row.len as usize];
        let record = layout.parse_record(bytes).unwrap();
        assert_eq!(layout.row_hash(&record), row.row_hash);
    }
}

/// Throughput on a snapshot the size of SPEC §9's (500k v3 rows). Prints, asserts nothing. Run with
/// `cargo test --release --lib parse::tests::parse_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a test"]
fn parse_throughput() {
    let layout = eclrs(HeaderVersion::V3);
    let data = synthetic_v3_rows(500_000);
    // Chunks of whole lines, ~2k rows each, as the parser pool cuts them.
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let mut end = (start + 2_000 * 700).min(data.len());
        if end < data.len() {
            end += data[end..].iter().position(|&b| b == b'\n').unwrap() + 1;
        }
        chunks.push(&data[start..end]);
        start = end;
    }
    for threads in [1, 2] {
        let started = std::time::Instant::now();
        let per_thread = chunks.len().div_ceil(threads);
        let rows: usize = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .chunks(per_thread)
                .map(|part| {
                    let layout = layout.clone();
                    s.spawn(move || {
                        part.iter()
                            .map(|c| layout.parse_chunk(c, 2, 0).rows.len())
                            .sum::<usize>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let elapsed = started.elapsed();
        println!(
            "{threads} thread(s): {rows} rows, {:.0} MB in {:.3} s = {:.0} MB/s",
            data.len() as f64 / 1e6,
            elapsed.as_secs_f64(),
            data.len() as f64 / 1e6 / elapsed.as_secs_f64()
        );
    }
}
