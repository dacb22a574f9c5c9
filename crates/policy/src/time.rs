//! RFC 3339 timestamps without a clock: the caller always passes `now`.
//!
//! A dedicated parser keeps the wasm module small and makes the supported
//! syntax explicit: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.

use std::fmt;

/// Nanoseconds since the Unix epoch (covers 1677..2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Timestamp(seconds.saturating_mul(1_000_000_000))
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 date-time; `None` for anything else.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(range)?;
            let mut value = 0i64;
            for &c in part {
                if !c.is_ascii_digit() {
                    return None;
                }
                value = value * 10 + i64::from(c - b'0');
            }
            Some(value)
        };
        let at = |i: usize| b.get(i).copied();
        if at(4)? != b'-' || at(7)? != b'-' || !matches!(at(10)?, b'T' | b't' | b' ') {
            return None;
        }
        if at(13)? != b':' || at(16)? != b':' {
            return None;
        }
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        // 60 is a leap second; it is read as the next second.
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if at(i) == Some(b'.') {
            i += 1;
            let start = i;
            while let Some(c) = at(i).filter(u8::is_ascii_digit) {
                if i - start < 9 {
                    nanos = nanos * 10 + i64::from(c - b'0');
                }
                i += 1;
            }
            let count = i - start;
            if count == 0 {
                return None;
            }
            for _ in count..9 {
                nanos *= 10;
            }
        }
        let offset_seconds = match at(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == b.len() => {
                if at(i + 3)? != b':' {
                    return None;
                }
                let (oh, om) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let offset = oh * 3600 + om * 60;
                if sign == b'+' {
                    offset
                } else {
                    -offset
                }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
        let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        // Beyond 1677..2262 a time saturates: an expiry in 2300 is, for any clock
        // this code will meet, simply later than now.
        Some(Timestamp(i64::try_from(total).unwrap_or(if total < 0 {
            i64::MIN
        } else {
            i64::MAX
        })))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        let (days, secs_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs_of_day / 3600,
            secs_of_day % 3600 / 60,
            secs_of_day % 60
        )?;
        if nanos != 0 {
            write!(f, ".{nanos:09}")?;
        }
        f.write_str("Z")
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_utc_offsets_and_fractions() {
        let t = Timestamp::parse_rfc3339("2027-01-22T00:00:00Z").unwrap();
        assert_eq!(t, Timestamp::from_unix_seconds(1_800_576_000));
        assert_eq!(t.to_string(), "2027-01-22T00:00:00Z");
        let shifted = Timestamp::parse_rfc3339("2027-01-22T02:00:00+02:00").unwrap();
        assert_eq!(shifted, t);
        let frac = Timestamp::parse_rfc3339("1970-01-01T00:00:00.5Z").unwrap();
        assert_eq!(frac, Timestamp(500_000_000));
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"),
            Some(Timestamp(-1_000_000_000))
        );
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            "",
            "2027-01-22",
            "2027-01-22T00:00:00",
            "2027-02-29T00:00:00Z",
            "2027-13-01T00:00:00Z",
            "2027-01-22T24:00:00Z",
            "2027-01-22T00:00:00+0200",
            "2027-01-22T00:00:00Zjunk",
            "2027-01-22T00:00:00.Z",
            "२०२७-01-22T00:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
        assert!(Timestamp::parse_rfc3339("2028-02-29T00:00:00Z").is_some());
        assert_eq!(
            Timestamp::parse_rfc3339("2300-01-01T00:00:00Z"),
            Some(Timestamp(i64::MAX))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1600-01-01T00:00:00Z"),
            Some(Timestamp(i64::MIN))
        );
    }
}
