//! One ECLRS record in the canonical (v3) layout, and its encoding to and from one line of a snapshot.
//!
//! The generator always builds records with all 65 canonical fields; a file of an older header version simply
//! leaves the employer, school and AOE columns out (and they are blank in its records, see [`Record::blank_extras`]).

use crate::parse::columns::{HeaderVersion, RESULT_POSITIVE, V1_BASE, V2_EXTRA, V3_EXTRA, V3_LEN};
use std::fmt;

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Canonical index of a column, looked up at compile time so that a misspelt name fails the build.
const fn col(name: &str) -> usize {
    let mut i = 0;
    while i < V1_BASE.len() {
        if same(V1_BASE[i], name) {
            return i;
        }
        i += 1;
    }
    let mut j = 0;
    while j < V2_EXTRA.len() {
        if same(V2_EXTRA[j], name) {
            return V1_BASE.len() + j;
        }
        j += 1;
    }
    let mut k = 0;
    while k < V3_EXTRA.len() {
        if same(V3_EXTRA[k], name) {
            return V1_BASE.len() + V2_EXTRA.len() + k;
        }
        k += 1;
    }
    if same(RESULT_POSITIVE, name) {
        return V3_LEN - 1;
    }
    panic!("unknown ECLRS column name");
}

pub(crate) const LAST_NAME: usize = col("PIDLASTNAME");
pub(crate) const MIDDLE_NAME: usize = col("PIDMIDDLENAME");
pub(crate) const FIRST_NAME: usize = col("PIDFIRSTNAME");
pub(crate) const BIRTH_DATE: usize = col("PIDDATEOFBIRTH");
pub(crate) const SEX: usize = col("PIDSEXCODE");
pub(crate) const ADDRESS1: usize = col("PIDADDRESSLINE1");
pub(crate) const ADDRESS2: usize = col("PIDADDRESSLINE2");
pub(crate) const CITY: usize = col("PIDCITY");
pub(crate) const ZIP: usize = col("PIDZIPCODE");
pub(crate) const COUNTY: usize = col("PIDCOUNTYCODE");
pub(crate) const PHONE: usize = col("PIDHOMEPHONE");
pub(crate) const LAB_PFI: usize = col("MSHLABPFI");
pub(crate) const LAB_CLIA: usize = col("MSHSENDINGFACILITYCLIA");
pub(crate) const LAB_NAME: usize = col("MSHSENDINGFACILITYNAME");
pub(crate) const PATIENT_KEY: usize = col("PIDPATIENTKEY");
pub(crate) const FACILITY_ADDRESS1: usize = col("ZLRFACILITYADDRESSLINE1");
pub(crate) const FACILITY_ADDRESS2: usize = col("ZLRFACILITYADDRESSLINE2");
pub(crate) const FACILITY_CITY: usize = col("ZLRFACILITYCITY");
pub(crate) const FACILITY_CODE: usize = col("ZLRFACILITYCODE");
pub(crate) const FACILITY_NAME: usize = col("ZLRFACILITYNAME");
pub(crate) const FACILITY_PHONE: usize = col("ZLRFACILITYPHONE");
pub(crate) const PROVIDER_ADDRESS1: usize = col("ZLRPROVIDERADDRESSLINE1");
pub(crate) const PROVIDER_CITY: usize = col("ZLRPROVIDERCITY");
pub(crate) const PROVIDER_ID: usize = col("OBRPROVIDERID");
pub(crate) const PROVIDER_FIRST: usize = col("OBRPROVIDERFIRSTNAME");
pub(crate) const PROVIDER_LAST: usize = col("OBRPROVIDERLASTNAME");
pub(crate) const COLLECTION_DATE: usize = col("OBRCOLLECTIONDATE");
pub(crate) const CREATE_DATE: usize = col("OBRCREATEDATE");
pub(crate) const LOCAL_TEST_CODE: usize = col("OBXLOCALTESTCODE");
pub(crate) const LOCAL_TEST_DESC: usize = col("OBXLOCALTESTDESC");
pub(crate) const LOINC_CODE: usize = col("OBXLOINCCODE");
pub(crate) const LOINC_DESC: usize = col("OBXLOINCDESC");
pub(crate) const OBSERVATION_DATE: usize = col("OBXOBSERVATIONDATE");
pub(crate) const RESULT_TEXT: usize = col("OBXOBSERVATIONRESULTTEXT");
pub(crate) const RESULT_TEXT_SHORT: usize = col("OBXOBSERVATIONRESULTTEXTSHORT");
pub(crate) const RESULT_STATUS: usize = col("OBXRESULTSTATUSCODE");
pub(crate) const PRODUCER_LAB: usize = col("OBXPRODUCERLABNAME");
pub(crate) const SNOMED_CODE: usize = col("OBXSNOMEDCODE");
pub(crate) const SNOMED_DESC: usize = col("OBXSNOMEDDESC");
pub(crate) const ACCESSION: usize = col("OBRACCESSIONNUM");
pub(crate) const ANALYSIS_DATE: usize = col("OBXANALYSISDATE");
pub(crate) const SPECIMEN_SOURCE: usize = col("OBRSPECIMENSOURCENAME");
pub(crate) const MESSAGE_KEY: usize = col("MSHMESSAGEMASTERKEY");
pub(crate) const UPDATE_DATE: usize = col("PIDUPDATEDATE");
pub(crate) const EMPLOYER_NAME: usize = col("PIDEMPLOYERNAME");
pub(crate) const EMPLOYER_ADDRESS: usize = col("PIDEMPLOYERADDRESS");
pub(crate) const EMPLOYER_PHONE: usize = col("PIDEMPLOYERPHONE");
pub(crate) const EMPLOYER_PHONE_ALT: usize = col("PIDEMPLOYERPHONEALT");
pub(crate) const EMPLOYEE_NUMBER: usize = col("PIDEMPLOYEENUMBER");
pub(crate) const EMPLOYEE_JOB_TITLE: usize = col("PIDEMPLOYEEJOBTITLE");
pub(crate) const SCHOOL_NAME: usize = col("PIDSCHOOLNAME");
pub(crate) const SCHOOL_DISTRICT: usize = col("PIDSCHOOLDISTRICT");
pub(crate) const SCHOOL_CODE: usize = col("PIDSCHOOLCODE");
pub(crate) const SCHOOL_JOB_CLASS: usize = col("PIDSCHOOLJOBCLASS");
pub(crate) const SCHOOL_PRESENT: usize = col("PIDSCHOOLPRESENT");
pub(crate) const FIRST_TEST: usize = col("PIDFIRSTTESTYN");
pub(crate) const AOE_DATE: usize = col("PIDAOEDATE");
pub(crate) const HEALTH_EMPLOYED: usize = col("PIDHEALTHEMPLOYEDYN");
pub(crate) const SYMPTOMATIC: usize = col("PIDCOVIDSYMPTOMATICYN");
pub(crate) const ONSET_DATE: usize = col("PIDCOVIDDATEOFONSET");
pub(crate) const HOSPITALIZED: usize = col("PIDHOSPITALIZEDYN");
pub(crate) const ICU: usize = col("PIDICUYN");
pub(crate) const CONGREGATE_CARE: usize = col("PIDCONGREGATECAREYN");
pub(crate) const PREGNANT: usize = col("PIDPREGNANCYIND");
pub(crate) const RESULT: usize = col("RESULTPOSITIVE");

/// The v2 and v3 columns (employer, school, ask-on-order-entry): blank in any record written under v1 or v2.
pub(crate) const EXTRAS: std::ops::Range<usize> = V1_BASE.len()..V3_LEN - 1;

/// A record's 65 canonical fields. Buffers are reused from row to row, so generating a row allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    fields: Vec<String>,
}

impl Record {
    pub(crate) fn blank() -> Self {
        Record {
            fields: vec![String::new(); V3_LEN],
        }
    }

    pub(crate) fn get(&self, column: usize) -> &str {
        &self.fields[column]
    }

    pub(crate) fn set(&mut self, column: usize, value: &str) {
        let field = &mut self.fields[column];
        field.clear();
        field.push_str(value);
    }

    /// The field emptied, to be written into.
    pub(crate) fn field(&mut self, column: usize) -> &mut String {
        let field = &mut self.fields[column];
        field.clear();
        field
    }

    pub(crate) fn copy_from(&mut self, other: &Record) {
        for (mine, theirs) in self.fields.iter_mut().zip(&other.fields) {
            mine.clear();
            mine.push_str(theirs);
        }
    }

    /// The record key: (`PIDPATIENTKEY`, `OBRACCESSIONNUM`).
    pub(crate) fn key(&self) -> (&str, &str) {
        (&self.fields[PATIENT_KEY], &self.fields[ACCESSION])
    }

    pub(crate) fn blank_extras(&mut self) {
        for field in &mut self.fields[EXTRAS] {
            field.clear();
        }
    }
}

/// For each column of a file of version `header`, its canonical index. Older versions lack the extras only, and
/// `RESULTPOSITIVE` is always last, so the mapping is the identity up to the last column.
pub(crate) fn layout(header: HeaderVersion) -> Vec<usize> {
    let mut columns: Vec<usize> = (0..header.len() - 1).collect();
    columns.push(RESULT);
    columns
}

/// The header line of a file of version `header`, with its LF.
pub(crate) fn header_line(header: HeaderVersion) -> Vec<u8> {
    let mut line = header.columns().join("|").into_bytes();
    line.push(b'\n');
    line
}

/// Recognises a header line (trimmed, BOM tolerated), as the ECLRS profile does.
pub(crate) fn header_version(line: &[u8]) -> Option<HeaderVersion> {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?.trim();
    [HeaderVersion::V1, HeaderVersion::V2, HeaderVersion::V3]
        .into_iter()
        .find(|v| v.columns().join("|") == line)
}

/// Writes `record` as one line (with its LF) into `out`, which is cleared first.
pub(crate) fn encode(record: &Record, layout: &[usize], out: &mut Vec<u8>) {
    out.clear();
    for (i, &column) in layout.iter().enumerate() {
        if i > 0 {
            out.push(b'|');
        }
        push_field(out, record.get(column));
    }
    out.push(b'\n');
}

/// Appends one field, quoted when it holds the delimiter or a quote (inner quotes doubled).
pub(crate) fn push_field(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    if memchr::memchr2(b'|', b'"', bytes).is_none() {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'"');
    for &b in bytes {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Why a line of a previous snapshot could not be read back as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    InvalidUtf8,
    UnterminatedQuote,
    /// A closing quote followed by something other than the delimiter.
    StrayQuote,
    FieldCount,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::InvalidUtf8 => "invalid UTF-8",
            DecodeError::UnterminatedQuote => "unterminated quote",
            DecodeError::StrayQuote => "text after a closing quote",
            DecodeError::FieldCount => "wrong number of fields",
        })
    }
}

/// Reads one line (without its line ending) of a file with the given layout into `record`, unquoting fields.
/// Columns the layout lacks are left blank, which pads v1 and v2 rows to the canonical layout.
pub(crate) fn decode(
    line: &[u8],
    layout: &[usize],
    record: &mut Record,
) -> Result<(), DecodeError> {
    let line = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidUtf8)?;
    let bytes = line.as_bytes();
    record.blank_extras();
    let mut pos = 0;
    let mut index = 0;
    loop {
        let Some(&column) = layout.get(index) else {
            return Err(DecodeError::FieldCount);
        };
        let field = record.field(column);
        if bytes.get(pos) == Some(&b'"') {
            pos += 1;
            loop {
                let quote =
                    memchr::memchr(b'"', &bytes[pos..]).ok_or(DecodeError::UnterminatedQuote)?;
                field.push_str(&line[pos..pos + quote]);
                pos += quote + 1;
                if bytes.get(pos) == Some(&b'"') {
                    field.push('"');
                    pos += 1;
                } else {
                    break;
                }
            }
        } else {
            let end = memchr::memchr(b'|', &bytes[pos..]).map_or(bytes.len(), |e| pos + e);
            field.push_str(&line[pos..end]);
            pos = end;
        }
        index += 1;
        if pos == bytes.len() {
            break;
        }
        if bytes[pos] != b'|' {
            return Err(DecodeError::StrayQuote);
        }
        pos += 1;
    }
    if index == layout.len() {
        Ok(())
    } else {
        Err(DecodeError::FieldCount)
    }
}
