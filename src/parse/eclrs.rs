//! The ECLRS profile (SPEC §3.2): `|`-separated, three header versions, mapped onto the v3 layout.

use super::columns::{self, HeaderVersion, V1_BASE};
use super::hash::{push_prefixed, HashBufs};
use super::rows::{text, Rules};
use super::sas::parse_sas_datetime_bytes;
use super::split::Fields;
use super::{HeaderError, RejectReason};

const DELIMITER: u8 = b'|';
const QUOTE: u8 = b'"';

/// How rows of one ECLRS file are read. Every column the rules look at is a v1 column, and v2 and v3 insert
/// their columns before `RESULTPOSITIVE` only, so these positions are the same in every version's file order.
#[derive(Debug)]
pub(crate) struct EclrsRules {
    pub(crate) version: HeaderVersion,
    /// Fields in a row of this version.
    field_count: usize,
    /// Empty fields inserted before `RESULTPOSITIVE` to reach the v3 layout (20 for v1, 9 for v2, 0 for v3).
    padding: usize,
    patient_key: usize,
    accession: usize,
    county: usize,
    create_date: usize,
}

impl EclrsRules {
    /// Recognises a header line (BOM already stripped, whitespace trimmed). The error names only the expected
    /// column, never the header's text: a file without a header would otherwise put a data row in the ledger.
    pub(crate) fn from_header(header: &[u8]) -> Result<Self, HeaderError> {
        let names: Vec<&[u8]> = header.split(|&b| b == DELIMITER).collect();
        let version = [HeaderVersion::V1, HeaderVersion::V2, HeaderVersion::V3]
            .into_iter()
            .find(|v| v.len() == names.len())
            .ok_or_else(|| {
                HeaderError::Unknown(format!(
                    "{} columns; ECLRS headers have {} (v1), {} (v2) or {} (v3)",
                    names.len(),
                    columns::V1_LEN,
                    columns::V2_LEN,
                    columns::V3_LEN
                ))
            })?;
        let expected = version.columns();
        if let Some(i) = (0..names.len()).find(|&i| names[i] != expected[i].as_bytes()) {
            return Err(HeaderError::Unknown(format!(
                "{} columns as in ECLRS {}, but column {} is not `{}`",
                names.len(),
                version.as_str(),
                i + 1,
                expected[i]
            )));
        }
        Ok(EclrsRules {
            version,
            field_count: version.len(),
            padding: columns::V3_LEN - version.len(),
            patient_key: v1_position("PIDPATIENTKEY"),
            accession: v1_position("OBRACCESSIONNUM"),
            county: v1_position("PIDCOUNTYCODE"),
            create_date: v1_position("OBRCREATEDATE"),
        })
    }

    fn result(&self) -> usize {
        self.field_count - 1
    }
}

fn v1_position(name: &str) -> usize {
    V1_BASE
        .iter()
        .position(|c| *c == name)
        .expect("the ECLRS rules read v1 columns only")
}

/// Integer = what `i64::from_str` accepts (optional sign, ASCII digits, in range), so later readers of the county
/// code can parse it without a failure path.
fn is_integer(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|s| s.parse::<i64>().is_ok())
}

impl Rules for EclrsRules {
    fn delimiter(&self) -> u8 {
        DELIMITER
    }

    fn quote(&self) -> u8 {
        QUOTE
    }

    fn field_count(&self) -> usize {
        self.field_count
    }

    fn validate(&self, fields: &Fields<'_>) -> Result<(), RejectReason> {
        let patient_key = fields.get(self.patient_key).trim_ascii();
        if patient_key.is_empty() {
            return Err(RejectReason::MissingPatientKey);
        }
        if !patient_key.iter().all(u8::is_ascii_digit) {
            return Err(RejectReason::BadPatientKey);
        }
        if fields.get(self.accession).trim_ascii().is_empty() {
            return Err(RejectReason::MissingAccession);
        }
        if !is_integer(fields.get(self.county).trim_ascii()) {
            return Err(RejectReason::BadCounty);
        }
        if fields.get(self.result()).trim_ascii().is_empty() {
            return Err(RejectReason::MissingResult);
        }
        Ok(())
    }

    fn encode(&self, fields: &Fields<'_>, bufs: &mut HashBufs) -> u64 {
        bufs.key.clear();
        push_prefixed(&mut bufs.key, fields.get(self.patient_key).trim_ascii());
        push_prefixed(&mut bufs.key, fields.get(self.accession).trim_ascii());

        let result = self.result();
        let src = fields.src();
        bufs.begin_row(columns::V3_LEN, src.len());
        for i in 0..result {
            bufs.push_row_value(src, fields.span(i));
        }
        bufs.push_row_empty(self.padding);
        bufs.push_row_value(src, fields.span(result));

        parse_sas_datetime_bytes(fields.get(self.create_date).trim_ascii())
            .map_or(0, |dt| dt.sortable_micros())
    }

    fn key(&self, fields: &Fields<'_>) -> Vec<String> {
        vec![
            text(fields.get(self.patient_key).trim_ascii()),
            text(fields.get(self.accession).trim_ascii()),
        ]
    }

    fn canonical(&self, fields: &Fields<'_>, f: &mut dyn FnMut(&[u8])) {
        let result = self.result();
        for i in 0..result {
            f(fields.get(i));
        }
        for _ in 0..self.padding {
            f(b"");
        }
        f(fields.get(result));
    }
}

/// The canonical (v3) columns and the key columns, as the layout exposes them.
pub(crate) fn canonical_columns() -> (Vec<String>, Vec<String>) {
    (
        columns::canonical_columns()
            .into_iter()
            .map(String::from)
            .collect(),
        columns::KEY_COLUMNS.into_iter().map(String::from).collect(),
    )
}
