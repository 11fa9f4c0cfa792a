//! SAS datetimes as ECLRS writes them: `DDMONYYYY:HH:MM:SS.ffffff`, upper-case month, local wall-clock time.
//!
//! The generator only needs wall-clock arithmetic (no time zones): every value it writes is a local time, and the
//! gaps it keeps between datetimes that must compare in order (conflict losers) are hours wide, far more than a
//! DST shift.

use std::fmt::Write;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

pub(crate) const MINUTE: i64 = 60;
pub(crate) const HOUR: i64 = 3600;
pub(crate) const DAY: i64 = 86_400;

/// A wall-clock datetime: seconds since 01JAN1970:00:00:00 (local) and microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SasTime {
    pub secs: i64,
    pub micros: u32,
}

impl SasTime {
    pub(crate) fn ymd_hms(
        year: i64,
        month: u32,
        day: u32,
        hour: i64,
        minute: i64,
        second: i64,
    ) -> Self {
        SasTime {
            secs: days_from_civil(year, month, day) * DAY + hour * HOUR + minute * MINUTE + second,
            micros: 0,
        }
    }

    pub(crate) fn plus(self, secs: i64) -> Self {
        SasTime {
            secs: self.secs + secs,
            micros: self.micros,
        }
    }

    pub(crate) fn with_micros(self, micros: u32) -> Self {
        SasTime {
            secs: self.secs,
            micros,
        }
    }

    /// Truncated to the minute (collection and observation times carry minutes only).
    pub(crate) fn to_minute(self) -> Self {
        SasTime {
            secs: self.secs.div_euclid(MINUTE) * MINUTE,
            micros: 0,
        }
    }

    /// Truncated to midnight (dates of birth and onset dates).
    pub(crate) fn to_midnight(self) -> Self {
        SasTime {
            secs: self.secs.div_euclid(DAY) * DAY,
            micros: 0,
        }
    }

    pub(crate) fn year(self) -> i64 {
        civil_from_days(self.secs.div_euclid(DAY)).0
    }

    /// Appends `DDMONYYYY:HH:MM:SS.ffffff`.
    pub(crate) fn push_to(self, out: &mut String) {
        let (year, month, day) = civil_from_days(self.secs.div_euclid(DAY));
        let in_day = self.secs.rem_euclid(DAY);
        push2(out, day as i64);
        out.push_str(MONTHS[month as usize - 1]);
        let _ = write!(out, "{year:04}");
        out.push(':');
        push2(out, in_day / HOUR);
        out.push(':');
        push2(out, in_day % HOUR / MINUTE);
        out.push(':');
        push2(out, in_day % MINUTE);
        out.push('.');
        let _ = write!(out, "{:06}", self.micros);
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 25 || b[9] != b':' || b[12] != b':' || b[15] != b':' || b[18] != b'.' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let s = text.get(range)?;
            if s.bytes().all(|c| c.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        let day = num(0..2)?;
        let month = MONTHS.iter().position(|m| m.as_bytes() == &b[2..5])? as u32 + 1;
        let year = num(5..9)?;
        let (hour, minute, second) = (num(10..12)?, num(13..15)?, num(16..18)?);
        let micros = num(19..25)? as u32;
        if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        Some(SasTime::ymd_hms(year, month, day as u32, hour, minute, second).with_micros(micros))
    }
}

fn push2(out: &mut String, n: i64) {
    out.push((b'0' + (n / 10) as u8) as char);
    out.push((b'0' + (n % 10) as u8) as char);
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_the_sas_form() {
        let t = SasTime::ymd_hms(2020, 3, 20, 6, 3, 36).with_micros(589_000);
        let mut s = String::new();
        t.push_to(&mut s);
        assert_eq!(s, "20MAR2020:06:03:36.589000");
        assert_eq!(SasTime::parse(&s), Some(t));
        let mut dob = String::new();
        SasTime::ymd_hms(1971, 2, 24, 0, 0, 0).push_to(&mut dob);
        assert_eq!(dob, "24FEB1971:00:00:00.000000");
        assert_eq!(SasTime::parse("24Feb1971:00:00:00.000000"), None);
    }

    #[test]
    fn day_counts_round_trip() {
        for days in (-40_000..40_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
