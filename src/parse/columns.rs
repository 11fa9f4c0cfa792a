//! ECLRS column layouts (SPEC §3.2). The canonical layout is v3; v1 and v2 rows are padded with empty fields
//! before `RESULTPOSITIVE` so that a header upgrade does not make every row look changed.

/// The 44 v1 columns that come before `RESULTPOSITIVE`, in file order.
pub const V1_BASE: [&str; 44] = [
    "PIDLASTNAME",
    "PIDMIDDLENAME",
    "PIDFIRSTNAME",
    "PIDDATEOFBIRTH",
    "PIDSEXCODE",
    "PIDADDRESSLINE1",
    "PIDADDRESSLINE2",
    "PIDCITY",
    "PIDZIPCODE",
    "PIDCOUNTYCODE",
    "PIDHOMEPHONE",
    "MSHLABPFI",
    "MSHSENDINGFACILITYCLIA",
    "MSHSENDINGFACILITYNAME",
    "PIDPATIENTKEY",
    "ZLRFACILITYADDRESSLINE1",
    "ZLRFACILITYADDRESSLINE2",
    "ZLRFACILITYCITY",
    "ZLRFACILITYCODE",
    "ZLRFACILITYNAME",
    "ZLRFACILITYPHONE",
    "ZLRPROVIDERADDRESSLINE1",
    "ZLRPROVIDERCITY",
    "OBRPROVIDERID",
    "OBRPROVIDERFIRSTNAME",
    "OBRPROVIDERLASTNAME",
    "OBRCOLLECTIONDATE",
    "OBRCREATEDATE",
    "OBXLOCALTESTCODE",
    "OBXLOCALTESTDESC",
    "OBXLOINCCODE",
    "OBXLOINCDESC",
    "OBXOBSERVATIONDATE",
    "OBXOBSERVATIONRESULTTEXT",
    "OBXOBSERVATIONRESULTTEXTSHORT",
    "OBXRESULTSTATUSCODE",
    "OBXPRODUCERLABNAME",
    "OBXSNOMEDCODE",
    "OBXSNOMEDDESC",
    "OBRACCESSIONNUM",
    "OBXANALYSISDATE",
    "OBRSPECIMENSOURCENAME",
    "MSHMESSAGEMASTERKEY",
    "PIDUPDATEDATE",
];

/// The 11 employer and school columns v2 inserts before `RESULTPOSITIVE`.
pub const V2_EXTRA: [&str; 11] = [
    "PIDEMPLOYERNAME",
    "PIDEMPLOYERADDRESS",
    "PIDEMPLOYERPHONE",
    "PIDEMPLOYERPHONEALT",
    "PIDEMPLOYEENUMBER",
    "PIDEMPLOYEEJOBTITLE",
    "PIDSCHOOLNAME",
    "PIDSCHOOLDISTRICT",
    "PIDSCHOOLCODE",
    "PIDSCHOOLJOBCLASS",
    "PIDSCHOOLPRESENT",
];

/// The 9 "ask on order entry" columns v3 inserts before `RESULTPOSITIVE`.
pub const V3_EXTRA: [&str; 9] = [
    "PIDFIRSTTESTYN",
    "PIDAOEDATE",
    "PIDHEALTHEMPLOYEDYN",
    "PIDCOVIDSYMPTOMATICYN",
    "PIDCOVIDDATEOFONSET",
    "PIDHOSPITALIZEDYN",
    "PIDICUYN",
    "PIDCONGREGATECAREYN",
    "PIDPREGNANCYIND",
];

/// Always the last column of every version.
pub const RESULT_POSITIVE: &str = "RESULTPOSITIVE";

/// Column counts of the three header versions.
pub const V1_LEN: usize = V1_BASE.len() + 1;
pub const V2_LEN: usize = V1_BASE.len() + V2_EXTRA.len() + 1;
pub const V3_LEN: usize = V1_BASE.len() + V2_EXTRA.len() + V3_EXTRA.len() + 1;

/// The ECLRS record key (SPEC §1).
pub const KEY_COLUMNS: [&str; 2] = ["PIDPATIENTKEY", "OBRACCESSIONNUM"];

/// Header versions of the ECLRS export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderVersion {
    V1,
    V2,
    V3,
}

impl HeaderVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderVersion::V1 => "v1",
            HeaderVersion::V2 => "v2",
            HeaderVersion::V3 => "v3",
        }
    }

    /// Number of columns in a file of this version.
    #[allow(clippy::len_without_is_empty)] // a column count, not a collection: never empty
    pub fn len(self) -> usize {
        match self {
            HeaderVersion::V1 => V1_LEN,
            HeaderVersion::V2 => V2_LEN,
            HeaderVersion::V3 => V3_LEN,
        }
    }

    /// Column names of this version, in file order.
    pub fn columns(self) -> Vec<&'static str> {
        let mut cols: Vec<&'static str> = V1_BASE.to_vec();
        if matches!(self, HeaderVersion::V2 | HeaderVersion::V3) {
            cols.extend_from_slice(&V2_EXTRA);
        }
        if self == HeaderVersion::V3 {
            cols.extend_from_slice(&V3_EXTRA);
        }
        cols.push(RESULT_POSITIVE);
        cols
    }
}

/// The canonical (v3) column list.
pub fn canonical_columns() -> Vec<&'static str> {
    HeaderVersion::V3.columns()
}
