//! Malformed rows: a valid record broken in exactly one way, one per reject reason of SPEC §3.2. The record's key
//! is fresh (see [`super::keys`]), so a malformed row cannot change any other row's outcome.

use super::factory::{chance, pick};
use super::record::{
    encode, push_field, Record, ACCESSION, ADDRESS2, COUNTY, LAB_NAME, PATIENT_KEY, RESULT,
};
use rand::rngs::SmallRng;
use rand::Rng;

/// The reject reasons of SPEC §3.2, in the order malformed rows cycle through them.
pub(crate) const REJECT_REASONS: [&str; 8] = [
    "field_count",
    "missing_patient_key",
    "bad_patient_key",
    "missing_accession",
    "bad_county",
    "missing_result",
    "invalid_utf8",
    "unterminated_quote",
];

/// Writes `rec` into `out` (with its LF) broken so that a parser must reject it with `reason`, one of
/// [`REJECT_REASONS`].
pub(crate) fn write_malformed(
    rng: &mut SmallRng,
    reason: &'static str,
    rec: &mut Record,
    layout: &[usize],
    out: &mut Vec<u8>,
) {
    match reason {
        "field_count" => {
            let mut wrong = layout.to_vec();
            if chance(rng, 0.5) {
                wrong.remove(ADDRESS2);
            } else {
                wrong.insert(ADDRESS2, ADDRESS2);
            }
            encode(rec, &wrong, out);
        }
        "missing_patient_key" => {
            rec.set(PATIENT_KEY, "");
            encode(rec, layout, out);
        }
        "bad_patient_key" => {
            let mut key = rec.get(PATIENT_KEY).to_owned();
            let at = rng.random_range(3..11);
            key.replace_range(at..at + 1, pick(rng, &["O", "I", "X", "A"]));
            rec.set(PATIENT_KEY, &key);
            encode(rec, layout, out);
        }
        "missing_accession" => {
            rec.set(ACCESSION, "");
            encode(rec, layout, out);
        }
        "bad_county" => {
            rec.set(
                COUNTY,
                pick(rng, &["KINGS", "N/A", "6I", "QUEENS", "47A", "UNK"]),
            );
            encode(rec, layout, out);
        }
        "missing_result" => {
            rec.set(RESULT, "");
            encode(rec, layout, out);
        }
        "invalid_utf8" => {
            encode(rec, layout, out);
            // Inside PIDLASTNAME, the first field: every last name has at least two letters.
            let bad: &[u8] = pick(rng, &[&[0xFF][..], &[0xC3, 0x28], &[0x80], &[0xFE, 0xFF]]);
            out.splice(1..1, bad.iter().copied());
        }
        "unterminated_quote" => {
            // The sending facility's name opens a quote that never closes. No later field may hold a quote, or a
            // parser could take it for the closing one.
            out.clear();
            let mut opened = false;
            for (i, &column) in layout.iter().enumerate() {
                if i > 0 {
                    out.push(b'|');
                }
                let value = rec.get(column);
                if column == LAB_NAME {
                    out.push(b'"');
                    out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
                    opened = true;
                } else if opened {
                    out.extend_from_slice(value.replace('"', "").as_bytes());
                } else {
                    push_field(out, value);
                }
            }
            out.push(b'\n');
        }
        other => unreachable!("unknown reject reason {other}"),
    }
}
