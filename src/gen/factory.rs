//! Makes the records of a snapshot: new patients and results, changes to carried-over records, conflict losers, and
//! the valid records that [`super::malformed`] then breaks. All randomness comes from the caller's seeded generator, so a run is reproducible.

use super::keys::{
    accession_number, push_accession, KeySpace, MALFORMED_ACCESSION_BASE, MALFORMED_PATIENT_BASE,
};
use super::record::*;
use super::sas::{SasTime, DAY, HOUR, MINUTE};
use super::tables::{self, COUNTIES, LABS};
use rand::rngs::SmallRng;
use rand::Rng;
use std::fmt::Write;

pub(crate) fn chance(rng: &mut SmallRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

pub(crate) fn pick<T: Copy>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn cumulative(weights: impl Iterator<Item = u32>) -> Vec<u32> {
    weights
        .scan(0, |sum, w| {
            *sum += w;
            Some(*sum)
        })
        .collect()
}

fn weighted(rng: &mut SmallRng, cumulative: &[u32]) -> usize {
    let x = rng.random_range(0..cumulative[cumulative.len() - 1]);
    cumulative.partition_point(|&c| c <= x)
}

static ANY_AREA_CODE: &[&str] = &[
    "212", "646", "917", "718", "347", "516", "631", "914", "845", "518", "315", "585", "716",
    "607",
];

/// Where new records of this snapshot come from, and the counters that keep their keys unique.
pub(crate) struct RecordFactory {
    generation: u32,
    keys: KeySpace,
    /// Wall-clock time of this snapshot: no record in it is created later.
    now: SasTime,
    next_patient: u64,
    next_accession: u64,
    next_malformed: u64,
    county_weights: Vec<u32>,
    lab_weights: Vec<u32>,
}

/// When a new result was created: spread over the fortnight before a first snapshot, or since the previous
/// snapshot (the last half hour) for the new records of a next one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    InWindow,
    Recently,
}

impl RecordFactory {
    pub(crate) fn new(chain_seed: u64, generation: u32) -> Self {
        // Snapshots are half an hour apart, from 25MAR2021:12:00 on.
        let now = SasTime::ymd_hms(2021, 3, 25, 12, 0, 0).plus(i64::from(generation) * 30 * MINUTE);
        RecordFactory {
            generation,
            keys: KeySpace::new(chain_seed),
            now,
            next_patient: 0,
            next_accession: 0,
            next_malformed: 0,
            county_weights: cumulative(COUNTIES.iter().map(|c| c.weight)),
            lab_weights: cumulative(LABS.iter().map(|l| l.weight)),
        }
    }

    /// Fills the patient-level columns (demographics, patient key, employer, school) of a new patient.
    pub(crate) fn new_patient(&mut self, rng: &mut SmallRng, rec: &mut Record) {
        assert!(
            self.next_patient < MALFORMED_PATIENT_BASE,
            "patient counter exhausted"
        );
        let key = self.keys.patient_key(self.generation, self.next_patient);
        self.next_patient += 1;
        self.fill_patient(rng, rec, key);
    }

    fn fill_patient(&mut self, rng: &mut SmallRng, rec: &mut Record, key: u64) {
        rec.set(LAST_NAME, pick(rng, tables::LAST_NAMES));
        match rng.random_range(0..100) {
            0..70 => rec.set(MIDDLE_NAME, ""),
            70..95 => {
                let letter = (b'A' + rng.random_range(0..26u8)) as char;
                rec.field(MIDDLE_NAME).push(letter);
            }
            _ => rec.set(MIDDLE_NAME, pick(rng, tables::FIRST_NAMES)),
        }
        if chance(rng, 0.004) {
            let (name, nick) = pick(rng, tables::NICKNAMES);
            let _ = write!(rec.field(FIRST_NAME), "{name} \"{nick}\"");
        } else {
            rec.set(FIRST_NAME, pick(rng, tables::FIRST_NAMES));
        }
        let first_day = super::sas::days_from_civil(1925, 1, 1);
        let last_day = super::sas::days_from_civil(2020, 12, 31);
        let dob = SasTime {
            secs: rng.random_range(first_day..=last_day) * DAY,
            micros: 0,
        };
        dob.push_to(rec.field(BIRTH_DATE));
        rec.set(
            SEX,
            match rng.random_range(0..100) {
                0..51 => "F",
                51..98 => "M",
                _ => "U",
            },
        );
        let county = &COUNTIES[weighted(rng, &self.county_weights)];
        let place = &county.places[rng.random_range(0..county.places.len())];
        push_street_address(rng, rec.field(ADDRESS1));
        if chance(rng, 0.3) {
            let unit = rec.field(ADDRESS2);
            let _ = write!(
                unit,
                "{} {}",
                pick(rng, tables::UNIT_PREFIXES),
                rng.random_range(1..40)
            );
            if chance(rng, 0.5) {
                unit.push((b'A' + rng.random_range(0..8u8)) as char);
            }
        } else {
            rec.set(ADDRESS2, "");
        }
        if chance(rng, 0.02) {
            rec.set(CITY, "");
        } else {
            rec.set(CITY, place.city);
        }
        let zip = rec.field(ZIP);
        if chance(rng, 0.005) {
            zip.push_str("00000");
        } else {
            let _ = write!(zip, "{:05}", rng.random_range(place.zip_lo..=place.zip_hi));
            if chance(rng, 0.02) {
                let _ = write!(zip, "-{:04}", rng.random_range(0..10_000));
            }
        }
        let _ = write!(rec.field(COUNTY), "{}", county.fips);
        if chance(rng, 0.04) {
            rec.set(PHONE, "");
        } else {
            let area = if chance(rng, 0.85) {
                pick(rng, county.area_codes)
            } else {
                pick(rng, ANY_AREA_CODE)
            };
            push_phone(rng, area, rec.field(PHONE));
        }
        let _ = write!(rec.field(PATIENT_KEY), "{key}");
        let updated = self.now.plus(-rng.random_range(DAY..90 * DAY));
        updated.push_to(rec.field(UPDATE_DATE));

        if chance(rng, 0.05) {
            rec.set(EMPLOYER_NAME, pick(rng, tables::EMPLOYERS));
            push_street_address(rng, rec.field(EMPLOYER_ADDRESS));
            push_any_phone(rng, rec.field(EMPLOYER_PHONE));
            if chance(rng, 0.3) {
                let _ = write!(
                    rec.field(EMPLOYEE_NUMBER),
                    "{:06}",
                    rng.random_range(0..1_000_000)
                );
            } else {
                rec.set(EMPLOYEE_NUMBER, "");
            }
            rec.set(EMPLOYEE_JOB_TITLE, pick(rng, tables::JOB_TITLES));
        } else {
            for column in [
                EMPLOYER_NAME,
                EMPLOYER_ADDRESS,
                EMPLOYER_PHONE,
                EMPLOYEE_NUMBER,
                EMPLOYEE_JOB_TITLE,
            ] {
                rec.set(column, "");
            }
        }
        rec.set(EMPLOYER_PHONE_ALT, "");
        if chance(rng, 0.03) {
            let (name, district, code) = pick(rng, tables::SCHOOLS);
            rec.set(SCHOOL_NAME, name);
            rec.set(SCHOOL_DISTRICT, district);
            rec.set(SCHOOL_CODE, code);
            rec.set(SCHOOL_JOB_CLASS, pick(rng, tables::SCHOOL_JOB_CLASSES));
            rec.set(SCHOOL_PRESENT, if chance(rng, 0.6) { "Y" } else { "N" });
        } else {
            for column in [
                SCHOOL_NAME,
                SCHOOL_DISTRICT,
                SCHOOL_CODE,
                SCHOOL_JOB_CLASS,
                SCHOOL_PRESENT,
            ] {
                rec.set(column, "");
            }
        }
    }

    /// A complete, valid record with a key no real record can have, to be made malformed. Returns its index
    /// among this snapshot's malformed rows.
    pub(crate) fn malformed_record(&mut self, rng: &mut SmallRng, rec: &mut Record) -> u64 {
        let m = self.next_malformed;
        self.next_malformed += 1;
        let key = self
            .keys
            .patient_key(self.generation, MALFORMED_PATIENT_BASE + m);
        self.fill_patient(rng, rec, key);
        self.fill_result(rng, rec, Created::Recently, MALFORMED_ACCESSION_BASE + m);
        m
    }

    /// Fills the result-level columns (lab, facility, provider, dates, test, result, accession, AOE answers) of a
    /// new result for the patient already in `rec`.
    pub(crate) fn new_result(&mut self, rng: &mut SmallRng, rec: &mut Record, created: Created) {
        assert!(
            self.next_accession < MALFORMED_ACCESSION_BASE,
            "accession counter exhausted"
        );
        let n = self.next_accession;
        self.next_accession += 1;
        self.fill_result(rng, rec, created, n);
    }

    fn fill_result(&mut self, rng: &mut SmallRng, rec: &mut Record, created: Created, n: u64) {
        let lab = &LABS[weighted(rng, &self.lab_weights)];
        rec.set(LAB_PFI, lab.pfi);
        rec.set(LAB_CLIA, lab.clia);
        rec.set(LAB_NAME, lab.name);

        let (facility, facility_city) = pick(rng, tables::FACILITIES);
        push_street_address(rng, rec.field(FACILITY_ADDRESS1));
        if chance(rng, 0.25) {
            let _ = write!(
                rec.field(FACILITY_ADDRESS2),
                "SUITE {}",
                rng.random_range(100..1000)
            );
        } else {
            rec.set(FACILITY_ADDRESS2, "");
        }
        rec.set(FACILITY_CITY, facility_city);
        if chance(rng, 0.2) {
            let _ = write!(
                rec.field(FACILITY_CODE),
                "33D{:07}",
                rng.random_range(0..10_000_000)
            );
        } else {
            rec.set(FACILITY_CODE, "");
        }
        rec.set(FACILITY_NAME, facility);
        if chance(rng, 0.85) {
            push_any_phone(rng, rec.field(FACILITY_PHONE));
        } else {
            rec.set(FACILITY_PHONE, "");
        }
        if chance(rng, 0.85) {
            let same = rec.get(FACILITY_ADDRESS1).to_owned();
            rec.set(PROVIDER_ADDRESS1, &same);
        } else {
            push_street_address(rng, rec.field(PROVIDER_ADDRESS1));
        }
        rec.set(
            PROVIDER_CITY,
            if chance(rng, 0.9) { facility_city } else { "" },
        );
        match rng.random_range(0..4) {
            0 | 1 => rec.set(PROVIDER_ID, ""),
            2 => {
                let _ = write!(rec.field(PROVIDER_ID), "PFI{}-LABDIR", lab.pfi);
            }
            _ => {
                let _ = write!(
                    rec.field(PROVIDER_ID),
                    "1{:09}",
                    rng.random_range(0..1_000_000_000)
                );
            }
        }
        rec.set(PROVIDER_FIRST, pick(rng, tables::PROVIDER_FIRST_NAMES));
        rec.set(PROVIDER_LAST, pick(rng, tables::PROVIDER_LAST_NAMES));

        let create = match created {
            Created::InWindow => self.now.plus(-rng.random_range(0..14 * DAY)),
            Created::Recently => self.now.plus(-rng.random_range(0..30 * MINUTE)),
        }
        .with_micros(rng.random_range(0..1000) * 1000);
        let collection = create
            .plus(-rng.random_range(2 * HOUR..72 * HOUR))
            .to_minute();
        let observation = collection
            .plus(rng.random_range(0..=create.secs - collection.secs))
            .to_minute();
        let analysis = if chance(rng, 0.6) {
            observation
        } else {
            observation
                .plus(rng.random_range(0..=create.secs - observation.secs))
                .to_minute()
        };
        collection.push_to(rec.field(COLLECTION_DATE));
        create.push_to(rec.field(CREATE_DATE));
        observation.push_to(rec.field(OBSERVATION_DATE));
        analysis.push_to(rec.field(ANALYSIS_DATE));

        let (code, desc) = pick(rng, tables::LOCAL_TESTS);
        rec.set(LOCAL_TEST_CODE, code);
        rec.set(LOCAL_TEST_DESC, desc);
        let (loinc, loinc_desc) = pick(rng, tables::LOINCS);
        rec.set(LOINC_CODE, loinc);
        rec.set(LOINC_DESC, loinc_desc);
        set_result_text(rng, rec);
        rec.set(
            RESULT_STATUS,
            match rng.random_range(0..100) {
                0..80 => "F",
                80..95 => "P",
                _ => "C",
            },
        );
        rec.set(PRODUCER_LAB, pick(rng, lab.producers));
        push_accession(
            lab.accession,
            accession_number(self.generation, n),
            collection.year() % 100,
            rec.field(ACCESSION),
        );
        rec.set(SPECIMEN_SOURCE, pick(rng, tables::SPECIMENS));
        let _ = write!(
            rec.field(MESSAGE_KEY),
            "15{:012}",
            rng.random_range(0..1_000_000_000_000u64)
        );

        if chance(rng, 0.25) {
            const YNU: &[&str] = &["Y", "N", "N", "U", ""];
            rec.set(FIRST_TEST, pick(rng, YNU));
            let asked = collection
                .plus(-rng.random_range(0..3 * DAY))
                .with_micros(0);
            asked.push_to(rec.field(AOE_DATE));
            rec.set(HEALTH_EMPLOYED, pick(rng, YNU));
            let symptomatic = pick(rng, YNU);
            rec.set(SYMPTOMATIC, symptomatic);
            if symptomatic == "Y" {
                let onset = collection
                    .plus(-rng.random_range(DAY..10 * DAY))
                    .to_midnight();
                onset.push_to(rec.field(ONSET_DATE));
            } else {
                rec.set(ONSET_DATE, "");
            }
            rec.set(HOSPITALIZED, pick(rng, YNU));
            rec.set(ICU, pick(rng, YNU));
            rec.set(CONGREGATE_CARE, pick(rng, YNU));
            let pregnant = if rec.get(SEX) == "F" {
                pick(rng, YNU)
            } else {
                ""
            };
            rec.set(PREGNANT, pregnant);
        } else {
            for column in [
                FIRST_TEST,
                AOE_DATE,
                HEALTH_EMPLOYED,
                SYMPTOMATIC,
                ONSET_DATE,
                HOSPITALIZED,
                ICU,
                CONGREGATE_CARE,
                PREGNANT,
            ] {
                rec.set(column, "");
            }
        }
        rec.set(
            RESULT,
            if chance(rng, 0.9) {
                "POSITIVE"
            } else {
                "Positive"
            },
        );
    }

    /// A creation time for something that happened since the previous snapshot.
    fn recent(&self, rng: &mut SmallRng) -> SasTime {
        self.now
            .plus(-rng.random_range(0..30 * MINUTE))
            .with_micros(rng.random_range(0..1000) * 1000)
    }

    /// Changes a carried-over record the way labs amend results: a corrected status, reworded result, new address
    /// or phone, corrected specimen or provider; sometimes with a new `OBRCREATEDATE`. Only v1 columns change, so
    /// the change shows under every header version. The content always ends up different.
    pub(crate) fn change(&mut self, rng: &mut SmallRng, rec: &mut Record) {
        let before = rec.clone();
        while *rec == before {
            let kinds = if chance(rng, 0.25) { 2 } else { 1 };
            for _ in 0..kinds {
                match rng.random_range(0..6) {
                    0 => {
                        let status = match rec.get(RESULT_STATUS) {
                            "P" => "F",
                            _ => "C",
                        };
                        rec.set(RESULT_STATUS, status);
                        self.recent(rng).push_to(rec.field(CREATE_DATE));
                    }
                    1 => set_result_text(rng, rec),
                    2 => {
                        push_street_address(rng, rec.field(ADDRESS1));
                        self.recent(rng)
                            .with_micros(0)
                            .push_to(rec.field(UPDATE_DATE));
                    }
                    3 => {
                        push_any_phone(rng, rec.field(PHONE));
                        self.recent(rng)
                            .with_micros(0)
                            .push_to(rec.field(UPDATE_DATE));
                    }
                    4 => rec.set(SPECIMEN_SOURCE, pick(rng, tables::SPECIMENS)),
                    _ => {
                        rec.set(PROVIDER_FIRST, pick(rng, tables::PROVIDER_FIRST_NAMES));
                        rec.set(PROVIDER_LAST, pick(rng, tables::PROVIDER_LAST_NAMES));
                        self.recent(rng).push_to(rec.field(CREATE_DATE));
                    }
                }
            }
        }
    }

    /// Writes into `loser` an older version of `winner` (same key, different content) whose `OBRCREATEDATE` is
    /// strictly earlier, so the winner is unambiguous. Loser `k` (0 or 1) is 2–48 h or 50–96 h older, so two
    /// losers of one winner never coincide either.
    pub(crate) fn conflict_loser(
        &self,
        rng: &mut SmallRng,
        winner: &Record,
        k: u32,
        loser: &mut Record,
    ) {
        loser.copy_from(winner);
        let created = SasTime::parse(winner.get(CREATE_DATE)).unwrap_or(self.now);
        let back = 2 * HOUR + i64::from(k) * 48 * HOUR + rng.random_range(0..46 * HOUR);
        created
            .plus(-back)
            .with_micros(rng.random_range(0..1000) * 1000)
            .push_to(loser.field(CREATE_DATE));
        if chance(rng, 0.5) {
            loser.set(RESULT_STATUS, "P");
        }
        if chance(rng, 0.3) {
            set_result_text(rng, loser);
        }
        if chance(rng, 0.2) {
            loser.set(SPECIMEN_SOURCE, pick(rng, tables::SPECIMENS));
        }
    }
}

fn set_result_text(rng: &mut SmallRng, rec: &mut Record) {
    let (text, short, snomed, snomed_desc) = pick(rng, tables::RESULTS);
    rec.set(RESULT_TEXT, text);
    rec.set(RESULT_TEXT_SHORT, short);
    rec.set(SNOMED_CODE, snomed);
    rec.set(SNOMED_DESC, snomed_desc);
}

fn push_street_address(rng: &mut SmallRng, out: &mut String) {
    out.clear();
    let _ = write!(
        out,
        "{} {} {}",
        rng.random_range(1..10_000),
        pick(rng, tables::STREETS),
        pick(rng, tables::STREET_TYPES)
    );
}

fn push_any_phone(rng: &mut SmallRng, out: &mut String) {
    let area = pick(rng, ANY_AREA_CODE);
    push_phone(rng, area, out);
}

/// A phone number in one of the several ways labs write them.
fn push_phone(rng: &mut SmallRng, area: &str, out: &mut String) {
    out.clear();
    let exchange = rng.random_range(200..1000);
    let line = rng.random_range(0..10_000);
    let _ = match rng.random_range(0..10) {
        0..4 => write!(out, "{area}{exchange}{line:04}"),
        4 | 5 => write!(out, "({area}) {exchange}-{line:04}"),
        6 | 7 => write!(out, "{area}-{exchange}-{line:04}"),
        8 => write!(out, "1{area}{exchange}{line:04}"),
        _ => write!(out, "{area}.{exchange}.{line:04}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counties_put_about_forty_percent_in_new_york_city() {
        let total: u32 = COUNTIES.iter().map(|c| c.weight).sum();
        let nyc: u32 = COUNTIES
            .iter()
            .filter(|c| tables::NYC_FIPS.contains(&c.fips))
            .map(|c| c.weight)
            .sum();
        let share = f64::from(nyc) / f64::from(total);
        assert!((0.38..0.42).contains(&share), "NYC share {share}");
    }
}
