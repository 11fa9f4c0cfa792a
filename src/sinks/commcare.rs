//! CommCare sink (SPEC §5.2): routes an event to a county's project space, builds the OpenRosa form that carries
//! it, and classifies CommCare's answer. Pure and synchronous: the delivery worker does the HTTP call.
//!
//! # The form
//! One OpenRosa form per event, posted to `<base_url>/a/<domain>/receiver/` as `text/xml`:
//!
//! ```xml
//! <?xml version="1.0" ?>
//! <data xmlns="https://sluice.dev/xforms/sluice-eclrs/v1" name="sluice ECLRS lab result" uiVersion="1" version="1">
//!   <event><source/><kind/><version/><file/></event>
//!   <case xmlns="http://commcarehq.org/case/transaction/v2" case_id="PATIENT" date_modified="…" user_id="OWNER">
//!     <create><case_type>patient</case_type><case_name/><owner_id/></create>
//!     <update>name, first_name, last_name, dob, sex, address…, patient_key</update>
//!   </case>
//!   <case … case_id="LAB_RESULT">
//!     <create><case_type>lab_result</case_type>…</create>
//!     <update>dates, LOINC, result, lab, specimen, patient_key, accession_number, external_id, event_*</update>
//!     <index><parent case_type="patient" relationship="extension">PATIENT</parent></index>
//!   </case>
//!   <meta xmlns="http://openrosa.org/jr/xforms">deviceID, timeStart, timeEnd, username, userID, instanceID</meta>
//! </data>
//! ```
//!
//! The form's `xmlns` ([`FORM_XMLNS`]) is only an identifier (CommCare groups and exports forms by it); it never
//! changes for this layout, so that every form sluice ever sent lands in one form export.
//!
//! # Identity and re-sends
//! `instanceID` is the event UUID: a re-sent form is a duplicate to CommCare, not a second submission. Case ids are
//! UUIDv5 names under [`CASE_ID_NAMESPACE`]: `<domain>/patient/<PIDPATIENTKEY>` and
//! `<domain>/lab_result/<PIDPATIENTKEY>/<OBRACCESSIONNUM>`. The same record therefore always updates the same
//! cases, every lab result of a patient hangs off one patient case, and two project spaces never share a case id.
//! Nothing in the body depends on the clock (timestamps are the event's `observed_at`), so one event always gives
//! byte-identical XML.
//!
//! # Decisions the specification leaves open
//! - **Create blocks on every new/changed event.** sluice cannot know whether a case exists, and a CommCare
//!   `create` on an existing case id updates its type, name and owner rather than failing, so always sending it is
//!   the idempotent choice. The price: a re-assignment made in CommCare is reset to the configured owner the next
//!   time the record changes.
//! - **Removed events** (`kind = "removed"`, which carry no record) update only the lab_result case, setting
//!   `event_kind=removed` and `event_version`; nothing is created and the case is not closed. A record leaving the
//!   ECLRS export usually means it aged out of the export's window, not that the result was retracted, so whether
//!   such a case leaves a worklist is the project's decision (a case-list filter or an automatic update rule on
//!   `event_kind`). A removed event is routed by its payload's county when the caller supplies the last known
//!   record as the payload; without one the county is unknown, and it goes to the statewide domain (see below).
//! - **Unknown or unparseable county** → the statewide domain with an empty owner id. With no owner the case block
//!   carries no `owner_id` and no `user_id`, and the meta `userID` is empty, so CommCare assigns the case to the
//!   submitting (API) user, which the statewide project can re-assign.
//! - **Blank or unparseable dates** become blank properties, not raw SAS text: a property holds one format.
//! - **Values are trimmed** of surrounding whitespace (ECLRS pads some fields).
//! - **A 2xx other than 201** is retried: CommCare answers 201 on success, and a 200 usually means something in
//!   between (a proxy, a login page after a redirect) accepted the request, not CommCare. The retry is harmless
//!   (the instance id makes it a duplicate) and the row ends `dead`, visible and re-drivable, if it never changes.
//! - **A 3xx** is dead at once: the request was not followed to its end, so repeating it cannot succeed; it
//!   usually means a wrong `base_url`.

use super::{Answer, EventRecord};
use crate::config::{County, SinkSettings};
use crate::parse::sas::parse_sas_datetime;
use std::fmt::Write as _;
use uuid::Uuid;

/// The form's XML namespace: an identifier of this form layout, not a reachable address.
pub const FORM_XMLNS: &str = "https://sluice.dev/xforms/sluice-eclrs/v1";

/// The namespace of the UUIDv5 case ids: UUIDv5 of the URL `urn:sluice:commcare:case` under the RFC 4122 URL
/// namespace (a test checks the derivation). Changing it would give every record new cases, so it never changes.
pub const CASE_ID_NAMESPACE: Uuid = Uuid::from_u128(0xe8b4d126_5aa4_509c_a6a7_745d6db42684);

const CASE_XMLNS: &str = "http://commcarehq.org/case/transaction/v2";
const META_XMLNS: &str = "http://openrosa.org/jr/xforms";
const DEVICE_ID: &str = "sluice";
const PATIENT_KEY: &str = "PIDPATIENTKEY";
const ACCESSION: &str = "OBRACCESSIONNUM";
const COUNTY: &str = "PIDCOUNTYCODE";

/// Builds CommCare requests for one configured sink.
#[derive(Debug, Clone)]
pub struct CommCare {
    /// `base_url` without a trailing slash, so the receiver URL has exactly one slash at each join.
    base_url: String,
    /// Sent as `<username>` in the form's meta block and in the `Authorization` header.
    api_user: String,
    /// The `Authorization` header value, built once; redacted in Debug output because it holds the API key.
    authorization: Authorization,
    /// Where events whose county is not in the map go.
    statewide_domain: String,
    /// The county map, read once: integer codes compare as integers ("01" = "1"); keys that are not integers
    /// compare as trimmed text.
    counties: Vec<(CountyCode, County)>,
}

/// The `Authorization` header value; its Debug output is redacted because it holds the API key.
#[derive(Clone)]
struct Authorization(String);

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"ApiKey ***\"")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CountyCode {
    Number(u64),
    Text(String),
}

impl CountyCode {
    fn read(s: &str) -> CountyCode {
        let s = s.trim();
        match s.parse::<u64>() {
            Ok(n) => CountyCode::Number(n),
            Err(_) => CountyCode::Text(s.to_string()),
        }
    }
}

/// Where one event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The county is configured with `participating = false`: record the delivery `ignored`, send nothing.
    /// `county` is the trimmed county code (not PHI: one of ~60 codes).
    Ignored {
        county: String,
    },
    Send(Routed),
}

/// The project space (domain) an event is sent to and the owner of the cases it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub domain: String,
    /// CommCare id of the user, group or location that owns the cases; empty for the statewide fallback.
    pub owner_id: String,
}

/// One HTTP request: `POST url` with `Content-Type: text/xml` ([`CommCare::CONTENT_TYPE`]).
#[derive(Clone, PartialEq, Eq)]
pub struct CommCareRequest {
    pub url: String,
    pub body: String,
}

/// Redacted: the body is full of PHI.
impl std::fmt::Debug for CommCareRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommCareRequest")
            .field("url", &self.url)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

impl CommCare {
    /// The request's `Content-Type`.
    pub const CONTENT_TYPE: &'static str = "text/xml";

    pub fn new(sink: &SinkSettings) -> Self {
        CommCare {
            base_url: sink.base_url.trim_end_matches('/').to_string(),
            api_user: sink.api_user.clone(),
            authorization: Authorization(format!(
                "ApiKey {}:{}",
                sink.api_user,
                sink.api_key.expose()
            )),
            statewide_domain: sink.statewide_domain.clone(),
            counties: sink
                .counties
                .iter()
                .map(|(code, county)| (CountyCode::read(code), county.clone()))
                .collect(),
        }
    }

    /// Where this event goes, or that it is ignored (county marked `participating = false`). An event without a
    /// payload (a removed event), or whose county is blank, unparseable or not in the map, goes to the statewide
    /// domain with no owner.
    pub fn route(&self, e: &EventRecord) -> Route {
        let Some(code) = Record::new(e).get(COUNTY).map(str::trim) else {
            return self.statewide();
        };
        let wanted = CountyCode::read(code);
        match self.counties.iter().find(|(c, _)| *c == wanted) {
            Some((_, county)) if !county.participating => Route::Ignored {
                county: code.to_string(),
            },
            Some((_, county)) => Route::Send(Routed {
                domain: county.domain.clone(),
                owner_id: county.owner_id.clone(),
            }),
            None => self.statewide(),
        }
    }

    fn statewide(&self) -> Route {
        Route::Send(Routed {
            domain: self.statewide_domain.clone(),
            owner_id: String::new(),
        })
    }

    /// The request for an event routed to `route.domain`: URL `<base_url>/a/<domain>/receiver/`, body the
    /// OpenRosa form described in the module documentation.
    pub fn request(&self, e: &EventRecord, route: &Routed) -> CommCareRequest {
        CommCareRequest {
            url: format!(
                "{}/a/{}/receiver/",
                self.base_url,
                path_segment(&route.domain)
            ),
            body: self.form(e, route),
        }
    }

    /// Value of the `Authorization` header: `ApiKey <user>:<key>`.
    pub fn authorization(&self) -> String {
        self.authorization.0.clone()
    }

    fn form(&self, e: &EventRecord, route: &Routed) -> String {
        let record = Record::new(e);
        let patient_key = key_value(e, PATIENT_KEY, 0);
        let accession = key_value(e, ACCESSION, 1);
        let observed_at = humantime::format_rfc3339_millis(e.observed_at).to_string();
        let patient_id = case_id(&route.domain, &format!("patient/{patient_key}"));
        let lab_id = case_id(
            &route.domain,
            &format!("lab_result/{patient_key}/{accession}"),
        );
        let removed = e.kind == "removed" || e.payload.is_none();
        let case = CaseHeader {
            date_modified: &observed_at,
            user_id: &route.owner_id,
        };

        let mut x = Xml(String::with_capacity(4096));
        x.raw(r#"<?xml version="1.0" ?>"#);
        x.open(
            "data",
            &[
                ("xmlns", FORM_XMLNS),
                ("name", "sluice ECLRS lab result"),
                ("uiVersion", "1"),
                ("version", "1"),
            ],
        );
        x.open("event", &[]);
        x.leaf("source", &e.source);
        x.leaf("kind", &e.kind);
        x.leaf("version", &e.version.to_string());
        x.leaf("file", &e.file);
        x.close("event");

        let lab_properties = |x: &mut Xml| {
            x.leaf("patient_key", patient_key);
            x.leaf("accession_number", accession);
            x.leaf("external_id", &format!("{patient_key}#{accession}"));
            x.leaf("event_version", &e.version.to_string());
            x.leaf("event_kind", &e.kind);
        };

        if removed {
            case.open(&mut x, &lab_id);
            x.open("update", &[]);
            lab_properties(&mut x);
            x.close("update");
            x.close("case");
        } else {
            let text = |column: &str| record.get(column).map(str::trim).unwrap_or("");
            let datetime = |column: &str| {
                parse_sas_datetime(text(column))
                    .map(|d| d.to_utc_rfc3339())
                    .unwrap_or_default()
            };
            let first = text("PIDFIRSTNAME");
            let last = text("PIDLASTNAME");
            let name = [first, last]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let case_name = if name.is_empty() { patient_key } else { &name };

            case.open(&mut x, &patient_id);
            create(&mut x, "patient", case_name, &route.owner_id);
            x.open("update", &[]);
            x.leaf("name", &name);
            x.leaf("first_name", first);
            x.leaf("middle_name", text("PIDMIDDLENAME"));
            x.leaf("last_name", last);
            let dob = parse_sas_datetime(text("PIDDATEOFBIRTH"))
                .map(|d| d.date_iso())
                .unwrap_or_default();
            x.leaf("dob", &dob);
            x.leaf("sex", text("PIDSEXCODE"));
            x.leaf("address_line_1", text("PIDADDRESSLINE1"));
            x.leaf("address_line_2", text("PIDADDRESSLINE2"));
            x.leaf("city", text("PIDCITY"));
            x.leaf("zip", text("PIDZIPCODE"));
            x.leaf("phone", text("PIDHOMEPHONE"));
            x.leaf("county", text(COUNTY));
            x.leaf("patient_key", patient_key);
            x.close("update");
            x.close("case");

            case.open(&mut x, &lab_id);
            create(&mut x, "lab_result", accession, &route.owner_id);
            x.open("update", &[]);
            x.leaf("collection_date", &datetime("OBRCOLLECTIONDATE"));
            x.leaf("create_date", &datetime("OBRCREATEDATE"));
            x.leaf("observation_date", &datetime("OBXOBSERVATIONDATE"));
            x.leaf("analysis_date", &datetime("OBXANALYSISDATE"));
            x.leaf("loinc_code", text("OBXLOINCCODE"));
            x.leaf("loinc_desc", text("OBXLOINCDESC"));
            x.leaf("result", text("OBXOBSERVATIONRESULTTEXT"));
            x.leaf("result_short", text("OBXOBSERVATIONRESULTTEXTSHORT"));
            x.leaf("result_status", text("OBXRESULTSTATUSCODE"));
            x.leaf("result_positive", text("RESULTPOSITIVE"));
            x.leaf("lab_name", text("MSHSENDINGFACILITYNAME"));
            x.leaf("lab_clia", text("MSHSENDINGFACILITYCLIA"));
            x.leaf("producer_lab_name", text("OBXPRODUCERLABNAME"));
            x.leaf("specimen_source", text("OBRSPECIMENSOURCENAME"));
            lab_properties(&mut x);
            x.close("update");
            x.open("index", &[]);
            x.open(
                "parent",
                &[("case_type", "patient"), ("relationship", "extension")],
            );
            x.text(&patient_id);
            x.close("parent");
            x.close("index");
            x.close("case");
        }

        x.open("meta", &[("xmlns", META_XMLNS)]);
        x.leaf("deviceID", DEVICE_ID);
        x.leaf("timeStart", &observed_at);
        x.leaf("timeEnd", &observed_at);
        x.leaf("username", &self.api_user);
        x.leaf("userID", &route.owner_id);
        x.leaf("instanceID", &e.event_id.to_string());
        x.close("meta");
        x.close("data");
        x.0
    }
}

/// The attributes every case block of one form shares.
struct CaseHeader<'a> {
    date_modified: &'a str,
    /// Omitted when empty: CommCare then attributes the change to the submitting user.
    user_id: &'a str,
}

impl CaseHeader<'_> {
    fn open(&self, x: &mut Xml, case_id: &str) {
        let mut attrs = vec![
            ("xmlns", CASE_XMLNS),
            ("case_id", case_id),
            ("date_modified", self.date_modified),
        ];
        if !self.user_id.is_empty() {
            attrs.push(("user_id", self.user_id));
        }
        x.open("case", &attrs);
    }
}

/// A case XML v2 `create` block; `owner_id` is left out when empty so that CommCare's default owner applies.
fn create(x: &mut Xml, case_type: &str, case_name: &str, owner_id: &str) {
    x.open("create", &[]);
    x.leaf("case_type", case_type);
    x.leaf("case_name", case_name);
    if !owner_id.is_empty() {
        x.leaf("owner_id", owner_id);
    }
    x.close("create");
}

/// The deterministic case id of `name` (`patient/…` or `lab_result/…`) within `domain`.
fn case_id(domain: &str, name: &str) -> String {
    Uuid::new_v5(&CASE_ID_NAMESPACE, format!("{domain}/{name}").as_bytes()).to_string()
}

/// A record key column's value: from the event's key (present on every event, removed ones too), by column name,
/// else by position in the ECLRS key (`PIDPATIENTKEY`, `OBRACCESSIONNUM`).
fn key_value<'a>(e: &'a EventRecord, column: &str, position: usize) -> &'a str {
    e.key_columns
        .iter()
        .position(|c| c == column)
        .or(Some(position))
        .and_then(|i| e.key.get(i))
        .map(|s| s.trim())
        .unwrap_or("")
}

/// The event's payload looked up by column name.
struct Record<'a> {
    columns: &'a [String],
    values: Option<&'a [String]>,
}

impl<'a> Record<'a> {
    fn new(e: &'a EventRecord) -> Self {
        Record {
            columns: &e.columns,
            values: e.payload.as_deref(),
        }
    }

    fn get(&self, column: &str) -> Option<&'a str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.values?.get(i).map(String::as_str)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (CommCare domains are `[a-z0-9-]` anyway).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A tiny XML writer: every text and attribute value goes through [`escape`].
struct Xml(String);

impl Xml {
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.0.push('<');
        self.0.push_str(name);
        for (k, v) in attrs {
            self.0.push(' ');
            self.0.push_str(k);
            self.0.push_str("=\"");
            escape(&mut self.0, v);
            self.0.push('"');
        }
        self.0.push('>');
    }

    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }

    fn text(&mut self, s: &str) {
        escape(&mut self.0, s);
    }

    fn leaf(&mut self, name: &str, value: &str) {
        self.open(name, &[]);
        self.text(value);
        self.close(name);
    }
}

/// Appends `s` escaped for XML 1.0 text or a double-quoted attribute: the five markup characters become entity
/// references; tab, newline and carriage return become character references (so that neither attribute-value nor
/// line-end normalisation changes them); characters XML 1.0 forbids (other C0 controls, U+FFFE, U+FFFF) are
/// dropped.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
}

/// Classifies CommCare's answer (SPEC §5, §5.2). Errors are short and never quote the body beyond the OpenRosa
/// response `nature` token (a fixed vocabulary such as `submit_error`, `processing_failure`), so they hold no PHI.
///
/// | status | answer |
/// |---|---|
/// | 201 with `submit_success` in the body | completed |
/// | 201 without it | retry |
/// | other 2xx | retry (CommCare answers 201; see the module documentation) |
/// | 409 | completed (already applied) |
/// | 408, 429, 5xx except 501 | retry |
/// | 3xx, 501, other 4xx | dead |
/// | anything else | retry |
pub fn classify(status: u16, body: &str) -> Answer {
    let code = Some(i32::from(status));
    let because = |what: &str| match nature(body) {
        Some(n) => format!("{what} ({n})"),
        None => what.to_string(),
    };
    match status {
        201 if body.contains("submit_success") => Answer::Completed { status: code },
        201 => Answer::Retry {
            status: code,
            error: because("201 without submit_success"),
        },
        409 => Answer::Completed { status: code },
        200..=299 => Answer::Retry {
            status: code,
            error: format!("unexpected status {status} (CommCare answers 201)"),
        },
        408 | 429 => Answer::Retry {
            status: code,
            error: because(&format!("status {status}")),
        },
        501 => Answer::Dead {
            status: code,
            error: because("status 501"),
        },
        500..=599 => Answer::Retry {
            status: code,
            error: because(&format!("status {status}")),
        },
        300..=399 => Answer::Dead {
            status: code,
            error: format!("redirect {status}: check base_url"),
        },
        400..=499 => Answer::Dead {
            status: code,
            error: because(&format!("status {status}")),
        },
        _ => Answer::Retry {
            status: code,
            error: format!("unexpected status {status}"),
        },
    }
}

/// The `nature` attribute of an OpenRosa response, when it is a plain token (so it cannot carry data).
fn nature(body: &str) -> Option<&str> {
    let start = body.find("nature=\"")? + "nature=\"".len();
    let len = body[start..].find('"')?;
    let token = &body[start..start + len];
    let plain = (1..=40).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    plain.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SinkKind};
    use crate::parse::columns::V1_BASE;
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    fn settings() -> SinkSettings {
        let mut s = SinkSettings::file_default(std::path::Path::new("/tmp"));
        s.name = "commcare".into();
        s.kind = SinkKind::Commcare;
        s.base_url = "https://cc.example/".into();
        s.api_user = "api@example.org".into();
        s.api_key = Secret::new("k3y");
        s.statewide_domain = "ny-state".into();
        let county = |domain: &str, owner: &str, participating| County {
            domain: domain.into(),
            owner_id: owner.into(),
            participating,
        };
        s.counties = BTreeMap::from([
            ("1".to_string(), county("ny-albany", "owner-albany", true)),
            ("61".to_string(), county("ny-nyc", "owner-nyc", true)),
            ("55".to_string(), county("ny-monroe", "", false)),
        ]);
        s
    }

    fn columns() -> Vec<String> {
        let mut c: Vec<String> = V1_BASE.iter().map(|s| s.to_string()).collect();
        c.push("RESULTPOSITIVE".into());
        c
    }

    /// A synthetic (invented) ECLRS record, with `(column, value)` overrides.
    fn event(overrides: &[(&str, &str)]) -> EventRecord {
        let columns = columns();
        let mut values: Vec<String> = vec![String::new(); columns.len()];
        let mut set = |col: &str, v: &str| {
            let i = columns.iter().position(|c| c == col).unwrap();
            values[i] = v.to_string();
        };
        for (c, v) in [
            ("PIDLASTNAME", "PARK"),
            ("PIDFIRSTNAME", "PATRICIA"),
            ("PIDDATEOFBIRTH", "24FEB1971:00:00:00.000000"),
            ("PIDSEXCODE", "F"),
            ("PIDADDRESSLINE1", "3989 PLEASANT CT"),
            ("PIDCITY", "NEW YORK"),
            ("PIDZIPCODE", "10241"),
            ("PIDCOUNTYCODE", "61"),
            ("PIDHOMEPHONE", "9172723264"),
            ("MSHSENDINGFACILITYCLIA", "33D2155473"),
            ("MSHSENDINGFACILITYNAME", "BIOREFERENCE LABORATORIES"),
            ("PIDPATIENTKEY", "15040778245809"),
            ("OBRCOLLECTIONDATE", "10MAR2021:22:58:00.000000"),
            ("OBRCREATEDATE", "13MAR2021:06:34:09.283000"),
            ("OBXLOINCCODE", "94534-5"),
            ("OBXLOINCDESC", "SARS-CoV-2 RdRp Resp Ql NAA+probe"),
            ("OBXOBSERVATIONDATE", "12MAR2021:22:49:00.000000"),
            ("OBXOBSERVATIONRESULTTEXT", "POSITIVE"),
            ("OBXOBSERVATIONRESULTTEXTSHORT", "POS"),
            ("OBRACCESSIONNUM", "B001600000"),
            ("OBXANALYSISDATE", "not a date"),
            ("OBRSPECIMENSOURCENAME", "NASOPHARYNX"),
            ("RESULTPOSITIVE", "POSITIVE"),
        ] {
            set(c, v);
        }
        for (c, v) in overrides {
            set(c, v);
        }
        let key = vec![values[14].clone(), values[39].clone()];
        EventRecord {
            event_id: Uuid::parse_str("7d7f3c6e-2f7a-4d0e-9a4b-2d1f5b8e6c01").unwrap(),
            source: "eclrs".into(),
            kind: "new".into(),
            key_columns: vec![PATIENT_KEY.into(), ACCESSION.into()],
            key,
            version: 1,
            file: "ECLRS_20210314.TXT".into(),
            observed_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_615_700_000_123),
            columns,
            payload: Some(values),
        }
    }

    fn removed(e: &EventRecord) -> EventRecord {
        EventRecord {
            event_id: Uuid::parse_str("0b9e3c1a-5f6d-4e2b-8c7a-9d0e1f2a3b4c").unwrap(),
            kind: "removed".into(),
            version: e.version + 1,
            payload: None,
            ..e.clone()
        }
    }

    fn routed(cc: &CommCare, e: &EventRecord) -> Routed {
        match cc.route(e) {
            Route::Send(r) => r,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    fn build(e: &EventRecord) -> CommCareRequest {
        let cc = CommCare::new(&settings());
        cc.request(e, &routed(&cc, e))
    }

    fn case<'a, 'i>(doc: &'a roxmltree::Document<'i>, case_type: &str) -> roxmltree::Node<'a, 'i> {
        let id = lab_or_patient_id(doc, case_type);
        doc.descendants()
            .find(|n| n.has_tag_name((CASE_XMLNS, "case")) && n.attribute("case_id") == Some(&id))
            .unwrap()
    }

    /// The case id of the case whose create block (or, for a removed form, whose only block) has `case_type`.
    fn lab_or_patient_id(doc: &roxmltree::Document, case_type: &str) -> String {
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name((CASE_XMLNS, "case")))
            .collect();
        cases
            .iter()
            .find(|c| child_text(c, &["create", "case_type"]).as_deref() == Some(case_type))
            .or_else(|| (cases.len() == 1 && case_type == "lab_result").then(|| &cases[0]))
            .and_then(|c| c.attribute("case_id"))
            .unwrap_or_else(|| panic!("no {case_type} case"))
            .to_string()
    }

    /// The text at a path of child element names (any namespace), `""` for an empty element.
    fn child_text(node: &roxmltree::Node, path: &[&str]) -> Option<String> {
        let mut n = *node;
        for name in path {
            n = n.children().find(|c| c.tag_name().name() == *name)?;
        }
        Some(n.text().unwrap_or("").to_string())
    }

    fn property(doc: &roxmltree::Document, case_type: &str, name: &str) -> Option<String> {
        child_text(&case(doc, case_type), &["update", name])
    }

    fn meta(doc: &roxmltree::Document, name: &str) -> String {
        let meta = doc
            .descendants()
            .find(|n| n.has_tag_name((META_XMLNS, "meta")))
            .expect("meta block");
        child_text(&meta, &[name]).unwrap_or_else(|| panic!("meta has no {name}"))
    }

    #[test]
    fn the_case_id_namespace_is_derived_as_documented() {
        assert_eq!(
            CASE_ID_NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:sluice:commcare:case")
        );
    }

    #[test]
    fn a_form_is_well_formed_openrosa_with_both_cases() {
        let e = event(&[]);
        let req = build(&e);
        assert_eq!(req.url, "https://cc.example/a/ny-nyc/receiver/");
        let doc = roxmltree::Document::parse(&req.body).unwrap();
        let root = doc.root_element();
        assert!(root.has_tag_name((FORM_XMLNS, "data")));
        assert_eq!(meta(&doc, "instanceID"), e.event_id.to_string());
        assert_eq!(meta(&doc, "deviceID"), "sluice");
        assert_eq!(meta(&doc, "timeStart"), "2021-03-14T05:33:20.123Z");
        assert_eq!(meta(&doc, "timeEnd"), "2021-03-14T05:33:20.123Z");
        assert_eq!(meta(&doc, "username"), "api@example.org");
        assert_eq!(meta(&doc, "userID"), "owner-nyc");

        let patient = case(&doc, "patient");
        let lab = case(&doc, "lab_result");
        for c in [patient, lab] {
            Uuid::parse_str(c.attribute("case_id").unwrap()).expect("case id is a UUID");
            assert_eq!(c.attribute("user_id"), Some("owner-nyc"));
            assert_eq!(
                c.attribute("date_modified"),
                Some("2021-03-14T05:33:20.123Z")
            );
            assert_eq!(
                child_text(&c, &["create", "owner_id"]).as_deref(),
                Some("owner-nyc")
            );
        }
        assert_eq!(
            child_text(&patient, &["create", "case_name"]).as_deref(),
            Some("PATRICIA PARK")
        );
        let parent = lab
            .descendants()
            .find(|n| n.has_tag_name((CASE_XMLNS, "parent")))
            .expect("lab_result has an index");
        assert_eq!(parent.attribute("case_type"), Some("patient"));
        assert_eq!(parent.attribute("relationship"), Some("extension"));
        assert_eq!(parent.text(), patient.attribute("case_id"));

        let p = |name| property(&doc, "patient", name);
        let l = |name| property(&doc, "lab_result", name);
        assert_eq!(p("patient_key").as_deref(), Some("15040778245809"));
        assert_eq!(p("name").as_deref(), Some("PATRICIA PARK"));
        assert_eq!(p("dob").as_deref(), Some("1971-02-24"));
        assert_eq!(p("county").as_deref(), Some("61"));
        assert_eq!(l("patient_key").as_deref(), Some("15040778245809"));
        assert_eq!(l("accession_number").as_deref(), Some("B001600000"));
        assert_eq!(
            l("external_id").as_deref(),
            Some("15040778245809#B001600000")
        );
        assert_eq!(
            l("collection_date").as_deref(),
            Some("2021-03-11T03:58:00.000000Z")
        );
        assert_eq!(
            l("create_date").as_deref(),
            Some("2021-03-13T11:34:09.283000Z")
        );
        assert_eq!(
            l("analysis_date").as_deref(),
            Some(""),
            "unparseable → blank"
        );
        assert_eq!(l("result").as_deref(), Some("POSITIVE"));
        assert_eq!(l("lab_clia").as_deref(), Some("33D2155473"));
        assert_eq!(l("event_kind").as_deref(), Some("new"));
        assert_eq!(l("event_version").as_deref(), Some("1"));
    }

    #[test]
    fn the_same_event_gives_byte_identical_forms_and_a_resend_keeps_its_case_ids() {
        let e = event(&[]);
        assert_eq!(build(&e).body, build(&e).body);

        let ids = |body: &str| {
            let doc = roxmltree::Document::parse(body).unwrap();
            (
                lab_or_patient_id(&doc, "patient"),
                lab_or_patient_id(&doc, "lab_result"),
            )
        };
        let changed = EventRecord {
            event_id: Uuid::new_v4(),
            kind: "changed".into(),
            version: 2,
            ..event(&[("OBXOBSERVATIONRESULTTEXT", "DETECTED")])
        };
        assert_eq!(ids(&build(&e).body), ids(&build(&changed).body));
    }

    #[test]
    fn case_ids_differ_across_domains_and_lab_results_share_their_patient() {
        let cc = CommCare::new(&settings());
        let e = event(&[]);
        let ids = |domain: &str, e: &EventRecord| {
            let r = Routed {
                domain: domain.into(),
                owner_id: String::new(),
            };
            let doc_body = cc.request(e, &r).body;
            let doc = roxmltree::Document::parse(&doc_body).unwrap();
            (
                lab_or_patient_id(&doc, "patient"),
                lab_or_patient_id(&doc, "lab_result"),
            )
        };
        let (p1, l1) = ids("ny-nyc", &e);
        let (p2, l2) = ids("ny-albany", &e);
        assert_ne!(p1, p2);
        assert_ne!(l1, l2);
        let (p3, l3) = ids("ny-nyc", &event(&[("OBRACCESSIONNUM", "B001600001")]));
        assert_eq!(p1, p3, "one patient case per patient key");
        assert_ne!(l1, l3);
    }

    #[test]
    fn markup_characters_are_escaped_and_invalid_characters_dropped() {
        let e = event(&[
            ("PIDFIRSTNAME", "A&B <C> \"D\" 'E'"),
            ("PIDLASTNAME", "O\u{1}\u{1b}BRIEN\u{ffff}"),
            ("PIDADDRESSLINE1", "LINE\tONE\r\nTWO"),
        ]);
        let body = build(&e).body;
        assert!(!body.contains('\u{1}') && !body.contains('\u{1b}') && !body.contains('\u{ffff}'));
        let doc = roxmltree::Document::parse(&body).unwrap();
        assert_eq!(
            property(&doc, "patient", "first_name").as_deref(),
            Some("A&B <C> \"D\" 'E'")
        );
        assert_eq!(
            property(&doc, "patient", "last_name").as_deref(),
            Some("OBRIEN")
        );
        assert_eq!(
            property(&doc, "patient", "address_line_1").as_deref(),
            Some("LINE\tONE\r\nTWO")
        );

        // Attribute values too: a domain and an owner id full of markup still give a well-formed form.
        let cc = CommCare::new(&settings());
        let r = Routed {
            domain: "a&b".into(),
            owner_id: "o\"w<n>e'r&".into(),
        };
        let req = cc.request(&e, &r);
        assert_eq!(req.url, "https://cc.example/a/a%26b/receiver/");
        let doc = roxmltree::Document::parse(&req.body).unwrap();
        assert_eq!(
            case(&doc, "patient").attribute("user_id"),
            Some("o\"w<n>e'r&")
        );
    }

    #[test]
    fn a_removed_event_updates_only_the_lab_result_case() {
        let e = event(&[]);
        let gone = removed(&e);
        let cc = CommCare::new(&settings());
        // Without a payload the county is unknown.
        let r = routed(&cc, &gone);
        assert_eq!(r.domain, "ny-state");
        // Sent to the county's domain (as when the caller supplies the last known record), it hits the same case.
        let nyc = routed(&cc, &e);
        let body = cc.request(&gone, &nyc).body;
        let doc = roxmltree::Document::parse(&body).unwrap();
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name((CASE_XMLNS, "case")))
            .collect();
        assert_eq!(cases.len(), 1);
        assert!(cases[0].children().all(|c| c.tag_name().name() == "update"));
        let full = roxmltree::Document::parse(&cc.request(&e, &nyc).body)
            .unwrap()
            .descendants()
            .find(|n| child_text(n, &["create", "case_type"]).as_deref() == Some("lab_result"))
            .and_then(|n| n.attribute("case_id").map(str::to_string))
            .unwrap();
        assert_eq!(cases[0].attribute("case_id"), Some(full.as_str()));
        assert_eq!(meta(&doc, "instanceID"), gone.event_id.to_string());
        let l = |name| property(&doc, "lab_result", name);
        assert_eq!(l("event_kind").as_deref(), Some("removed"));
        assert_eq!(l("event_version").as_deref(), Some("2"));
        assert_eq!(
            l("external_id").as_deref(),
            Some("15040778245809#B001600000")
        );
        assert!(!body.contains("PATRICIA") && !body.contains("PARK"));
    }

    #[test]
    fn counties_route_to_their_domain_compared_as_integers() {
        let cc = CommCare::new(&settings());
        let send = |code: &str| cc.route(&event(&[("PIDCOUNTYCODE", code)]));
        let to = |domain: &str, owner: &str| {
            Route::Send(Routed {
                domain: domain.into(),
                owner_id: owner.into(),
            })
        };
        assert_eq!(send("61"), to("ny-nyc", "owner-nyc"));
        assert_eq!(send("1"), to("ny-albany", "owner-albany"));
        assert_eq!(send("01"), to("ny-albany", "owner-albany"));
        assert_eq!(send(" 001 "), to("ny-albany", "owner-albany"));
        assert_eq!(send("999"), to("ny-state", ""));
        assert_eq!(send("ALBANY"), to("ny-state", ""));
        assert_eq!(send(""), to("ny-state", ""));
        assert_eq!(
            send("055"),
            Route::Ignored {
                county: "055".into()
            }
        );
    }

    #[test]
    fn the_statewide_fallback_leaves_ownership_to_commcare() {
        let e = event(&[("PIDCOUNTYCODE", "999")]);
        let doc_body = build(&e).body;
        let doc = roxmltree::Document::parse(&doc_body).unwrap();
        for t in ["patient", "lab_result"] {
            let c = case(&doc, t);
            assert_eq!(c.attribute("user_id"), None);
            assert_eq!(child_text(&c, &["create", "owner_id"]), None);
        }
        assert_eq!(meta(&doc, "userID"), "");
    }

    #[test]
    fn authorization_is_an_api_key_header_and_never_debug_printed() {
        let cc = CommCare::new(&settings());
        assert_eq!(cc.authorization(), "ApiKey api@example.org:k3y");
        assert!(!format!("{cc:?}").contains("k3y"));
        let req = build(&event(&[]));
        assert!(!format!("{req:?}").contains("PATRICIA"));
    }

    #[test]
    fn answers_are_classified_per_the_spec() {
        const OK: &str = r#"<OpenRosaResponse xmlns="http://openrosa.org/http/response"><message nature="submit_success">   √   </message></OpenRosaResponse>"#;
        const ERR: &str = r#"<OpenRosaResponse xmlns="http://openrosa.org/http/response"><message nature="submit_error">PARK, PATRICIA</message></OpenRosaResponse>"#;
        #[derive(Debug, PartialEq)]
        enum K {
            Completed,
            Retry,
            Dead,
        }
        for (status, body, want) in [
            (201, OK, K::Completed),
            (201, ERR, K::Retry),
            (201, "", K::Retry),
            (200, OK, K::Retry),
            (202, "", K::Retry),
            (301, "", K::Dead),
            (409, "", K::Completed),
            (400, ERR, K::Dead),
            (401, "", K::Dead),
            (403, "", K::Dead),
            (404, "", K::Dead),
            (408, "", K::Retry),
            (422, ERR, K::Dead),
            (429, "", K::Retry),
            (500, ERR, K::Retry),
            (501, "", K::Dead),
            (502, "", K::Retry),
            (503, "", K::Retry),
            (504, "", K::Retry),
            (100, "", K::Retry),
        ] {
            let answer = classify(status, body);
            let (kind, got_status, error) = match &answer {
                Answer::Completed { status } => (K::Completed, *status, None),
                Answer::Retry { status, error } => (K::Retry, *status, Some(error)),
                Answer::Dead { status, error } => (K::Dead, *status, Some(error)),
            };
            assert_eq!(kind, want, "status {status}: {answer:?}");
            assert_eq!(got_status, Some(i32::from(status)));
            if let Some(error) = error {
                assert!(!error.is_empty() && error.len() < 80, "{error}");
                assert!(!error.contains("PARK"), "no PHI in errors: {error}");
            }
        }
        assert_eq!(
            classify(201, ERR),
            Answer::Retry {
                status: Some(201),
                error: "201 without submit_success (submit_error)".into()
            }
        );
    }
}
