//! SAS datetimes as ECLRS writes them (SPEC §3.2): `DDMONYYYY:HH:MM:SS.ffffff`, upper-case month, in
//! America/New_York local time.
//!
//! Two uses: a sortable number for ordering (conflict winners by `OBRCREATEDATE`), which needs no time zone, and
//! UTC text for sinks, which needs New York's daylight saving rules. Those rules are written out here rather than
//! taken from a tz database: they are few, fixed by US law, and this keeps the parser free of data files.

use std::fmt;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;

/// A naive (zone-less) date and time read from a SAS datetime. Fields are in chronological order, so the derived
/// ordering is chronological (in local time).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SasDateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub microsecond: u32,
}

/// Redacted: a datetime may be a date of birth (PHI).
impl fmt::Debug for SasDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SasDateTime(..)")
    }
}

/// Parses `DDMONYYYY:HH:MM:SS` with an optional fraction of 1 to 6 digits (`.ffffff`). The month is upper-case
/// (`JAN` … `DEC`). No surrounding whitespace is accepted; callers trim. Impossible dates (`30FEB2021`) and times
/// (`24:00:00`) are `None`.
pub fn parse_sas_datetime(s: &str) -> Option<SasDateTime> {
    parse_sas_datetime_bytes(s.as_bytes())
}

/// [`parse_sas_datetime`] on bytes, for the parser's hot path (no UTF-8 check needed: any non-ASCII byte fails).
pub fn parse_sas_datetime_bytes(b: &[u8]) -> Option<SasDateTime> {
    if b.len() < 18 || b[9] != b':' || b[12] != b':' || b[15] != b':' {
        return None;
    }
    let day = digits(&b[0..2])? as u8;
    let month = month_number(&b[2..5])?;
    let year = digits(&b[5..9])? as u16;
    let hour = digits(&b[10..12])? as u8;
    let minute = digits(&b[13..15])? as u8;
    let second = digits(&b[16..18])? as u8;
    let microsecond = match &b[18..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=6).contains(&fraction.len()) => {
            digits(fraction)? * 10u32.pow(6 - fraction.len() as u32)
        }
        _ => return None,
    };
    let valid = year >= 1
        && (1..=days_in_month(i64::from(year), month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then_some(SasDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        microsecond,
    })
}

impl SasDateTime {
    /// Microseconds since 0001-01-01 00:00:00 in naive local time. Monotonic in the datetime, so good for ordering
    /// (and never 0 for a datetime after that first instant); not an instant in time.
    pub fn sortable_micros(&self) -> u64 {
        (self.local_micros() - days_from_civil(1, 1, 1) * MICROS_PER_DAY) as u64
    }

    /// The instant in UTC as RFC 3339 text with microseconds, e.g. `2020-03-20T10:03:36.589000Z`, reading the
    /// value as America/New_York local time.
    ///
    /// A local time that occurs twice (the hour before the end of daylight saving time) is read as the later
    /// instant (standard time), as SPEC §3.2 requires. A local time that does not exist (the skipped hour at the
    /// start of daylight saving time) is read with the offset in force before the jump (standard time), which is
    /// also the later of the two candidate readings.
    pub fn to_utc_rfc3339(&self) -> String {
        let local = self.local_micros();
        let offset_hours = if is_new_york_daylight_time(i64::from(self.year), local) {
            4
        } else {
            5
        };
        let utc = local + offset_hours * MICROS_PER_HOUR;
        let (days, time) = (
            utc.div_euclid(MICROS_PER_DAY),
            utc.rem_euclid(MICROS_PER_DAY),
        );
        let (year, month, day) = civil_from_days(days);
        let seconds = time / MICROS_PER_SECOND;
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            time % MICROS_PER_SECOND
        )
    }

    /// The local calendar date as `YYYY-MM-DD` (for dates such as a date of birth, which have no time of day).
    pub fn date_iso(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// Microseconds since 1970-01-01 00:00:00 in naive local time.
    fn local_micros(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        let seconds =
            (i64::from(self.hour) * 60 + i64::from(self.minute)) * 60 + i64::from(self.second);
        days * MICROS_PER_DAY + seconds * MICROS_PER_SECOND + i64::from(self.microsecond)
    }
}

/// Whether daylight saving time (EDT, UTC−4) applies to local time `local` (microseconds since 1970 in naive
/// local time) of `year` in New York.
///
/// Daylight time runs from 03:00 local on its first day (02:00–02:59 does not exist and reads as standard time)
/// to 01:00 local on its last day (01:00–01:59 occurs twice and reads as the later, standard, instant).
///
/// US rules: since 2007 (Energy Policy Act of 2005) second Sunday of March to first Sunday of November;
/// 1987–2006 first Sunday of April to last Sunday of October; 1967–1986 (Uniform Time Act) last Sunday of April to
/// last Sunday of October, except the emergency years 1974 (from January 6) and 1975 (from February 23). Before
/// 1967 local practice varied and is not modelled: standard time throughout.
fn is_new_york_daylight_time(year: i64, local: i64) -> bool {
    let (start, end) = match year {
        2007.. => (nth_sunday(year, 3, 2), nth_sunday(year, 11, 1)),
        1987..=2006 => (nth_sunday(year, 4, 1), last_sunday(year, 10)),
        1975 => (days_from_civil(1975, 2, 23), last_sunday(year, 10)),
        1974 => (days_from_civil(1974, 1, 6), last_sunday(year, 10)),
        1967..=1986 => (last_sunday(year, 4), last_sunday(year, 10)),
        _ => return false,
    };
    let start = start * MICROS_PER_DAY + 3 * MICROS_PER_HOUR;
    let end = end * MICROS_PER_DAY + MICROS_PER_HOUR;
    (start..end).contains(&local)
}

/// Days since 1970-01-01 of the `n`-th Sunday of `month`.
fn nth_sunday(year: i64, month: u8, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    first + (7 - weekday(first)) % 7 + 7 * (n - 1)
}

/// Days since 1970-01-01 of the last Sunday of `month`.
fn last_sunday(year: i64, month: u8) -> i64 {
    let last = days_from_civil(year, month, days_in_month(year, month));
    last - weekday(last)
}

/// Day of the week of a day count since 1970-01-01 (a Thursday), 0 = Sunday.
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The value of a run of ASCII digits (at most 9, so no overflow), or `None` if any byte is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn month_number(b: &[u8]) -> Option<u8> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV",
        b"DEC",
    ];
    MONTHS
        .iter()
        .position(|m| m.as_slice() == b)
        .map(|i| i as u8 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> String {
        parse_sas_datetime(s)
            .unwrap_or_else(|| panic!("{s} should parse"))
            .to_utc_rfc3339()
    }

    fn sortable(s: &str) -> u64 {
        parse_sas_datetime(s)
            .unwrap_or_else(|| panic!("{s} should parse"))
            .sortable_micros()
    }

    #[test]
    fn parses_the_eclrs_form_with_and_without_a_fraction() {
        let dt = parse_sas_datetime("20MAR2020:06:03:36.589000").unwrap();
        assert_eq!(
            (
                dt.year,
                dt.month,
                dt.day,
                dt.hour,
                dt.minute,
                dt.second,
                dt.microsecond
            ),
            (2020, 3, 20, 6, 3, 36, 589_000)
        );
        let dt = parse_sas_datetime("24FEB1971:00:00:00").unwrap();
        assert_eq!(
            (dt.year, dt.month, dt.day, dt.microsecond),
            (1971, 2, 24, 0)
        );
        assert_eq!(
            parse_sas_datetime("01JAN2021:00:00:00.5")
                .unwrap()
                .microsecond,
            500_000
        );
    }

    #[test]
    fn rejects_malformed_and_impossible_datetimes() {
        for bad in [
            "",
            "20MAR2020",
            "20mar2020:06:03:36.589000",
            "20MAR2020 06:03:36.589000",
            "20MAR2020:06:03:36.",
            "20MAR2020:06:03:36.5890001",
            "20MAR2020:06:03:36,589000",
            "2XMAR2020:06:03:36",
            "20MAR2020:24:00:00",
            "20MAR2020:23:60:00",
            "20MAR2020:23:59:60",
            "00MAR2020:06:03:36",
            "31APR2020:06:03:36",
            "29FEB2021:00:00:00",
            "29FEB1900:00:00:00",
            "01JAN0000:00:00:00",
            " 20MAR2020:06:03:36",
            "20MAR2020:06:03:36 ",
        ] {
            assert!(
                parse_sas_datetime(bad).is_none(),
                "{bad:?} should not parse"
            );
        }
        assert!(parse_sas_datetime("29FEB2000:00:00:00").is_some());
        assert!(parse_sas_datetime("29FEB2020:00:00:00").is_some());
    }

    #[test]
    fn sortable_micros_count_from_year_one_in_local_time() {
        assert_eq!(sortable("01JAN0001:00:00:00"), 0);
        assert_eq!(sortable("02JAN0001:00:00:00.000001"), 86_400_000_001);
        assert_eq!(
            sortable("20MAR2020:06:03:36.589000") - sortable("20MAR2020:06:03:36.588999"),
            1
        );
        assert!(sortable("01MAR2020:00:00:00") > sortable("29FEB2020:23:59:59.999999"));
        assert!(sortable("01JAN2021:00:00:00") > sortable("31DEC2020:23:59:59.999999"));
        // Local time, not instants: across the autumn overlap the order is the wall clock's.
        assert!(sortable("01NOV2020:01:30:00") > sortable("01NOV2020:01:10:00"));
    }

    #[test]
    fn converts_standard_and_daylight_time_to_utc() {
        assert_eq!(
            utc("20MAR2020:06:03:36.589000"),
            "2020-03-20T10:03:36.589000Z"
        );
        assert_eq!(utc("15JAN2021:12:00:00"), "2021-01-15T17:00:00.000000Z");
        assert_eq!(utc("31DEC2020:22:00:00"), "2021-01-01T03:00:00.000000Z");
        assert_eq!(utc("04JUL2006:12:00:00"), "2006-07-04T16:00:00.000000Z");
        assert_eq!(utc("24FEB1971:00:00:00"), "1971-02-24T05:00:00.000000Z");
    }

    #[test]
    fn spring_forward_starts_daylight_time_on_the_second_sunday_of_march() {
        // 2020-03-08 was the second Sunday of March.
        assert_eq!(utc("08MAR2020:01:59:59"), "2020-03-08T06:59:59.000000Z");
        assert_eq!(utc("08MAR2020:03:00:00"), "2020-03-08T07:00:00.000000Z");
        // 02:30 does not exist that day: read with the standard offset, i.e. the instant shown as 03:30 EDT.
        assert_eq!(utc("08MAR2020:02:30:00"), "2020-03-08T07:30:00.000000Z");
        // The first Sunday of March is still standard time.
        assert_eq!(utc("01MAR2020:12:00:00"), "2020-03-01T17:00:00.000000Z");
    }

    #[test]
    fn fall_back_ends_daylight_time_on_the_first_sunday_of_november_taking_the_later_instant() {
        // 2020-11-01 was the first Sunday of November.
        assert_eq!(utc("01NOV2020:00:59:59"), "2020-11-01T04:59:59.000000Z");
        // 01:30 occurs twice (05:30Z EDT, 06:30Z EST): the later instant wins.
        assert_eq!(utc("01NOV2020:01:30:00"), "2020-11-01T06:30:00.000000Z");
        assert_eq!(utc("01NOV2020:02:00:00"), "2020-11-01T07:00:00.000000Z");
        assert_eq!(utc("31OCT2020:12:00:00"), "2020-10-31T16:00:00.000000Z");
        // 2021: second Sunday of March is the 14th, first Sunday of November the 7th.
        assert_eq!(utc("13MAR2021:12:00:00"), "2021-03-13T17:00:00.000000Z");
        assert_eq!(utc("14MAR2021:12:00:00"), "2021-03-14T16:00:00.000000Z");
        assert_eq!(utc("06NOV2021:12:00:00"), "2021-11-06T16:00:00.000000Z");
        assert_eq!(utc("07NOV2021:12:00:00"), "2021-11-07T17:00:00.000000Z");
    }

    #[test]
    fn date_iso_keeps_the_local_calendar_date() {
        let dob = parse_sas_datetime("24FEB1971:00:00:00.000000").unwrap();
        assert_eq!(dob.date_iso(), "1971-02-24");
    }

    #[test]
    fn debug_output_does_not_show_the_value() {
        let dob = parse_sas_datetime("24FEB1971:00:00:00.000000").unwrap();
        assert!(!format!("{dob:?}").contains("1971"));
    }

    #[test]
    fn civil_day_conversions_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m as u8, d as u8), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(weekday(days_from_civil(2020, 3, 8)), 0);
    }
}
