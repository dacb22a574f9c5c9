//! RFC 3339 timestamps without a clock: the caller always passes `now`.
//!
//! A dedicated parser rather than a date crate: the crates that parse RFC
//! 3339 with offsets (chrono, time, jiff) bring calendars and formatting the
//! core never uses, and the supported syntax stays explicit here:
//! `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.

use std::fmt;

/// Nanoseconds since the Unix epoch (covers 1677..2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// From nanoseconds since the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// From seconds since the Unix epoch (saturating).
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Timestamp(seconds.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 date-time; `None` for anything else.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let (days, seconds_of_day) = date_and_time(b)?;
        let (nanos, end) = fraction(b, 19)?;
        let offset_seconds = offset(b, end)?;
        let seconds = days * 86_400 + seconds_of_day - offset_seconds;
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

/// The decimal number in `b[range]`.
fn digits(b: &[u8], range: std::ops::Range<usize>) -> Option<i64> {
    let mut value = 0i64;
    for &c in b.get(range)? {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(c - b'0');
    }
    Some(value)
}

/// `YYYY-MM-DDTHH:MM:SS`: days since the epoch and seconds into the day.
fn date_and_time(b: &[u8]) -> Option<(i64, i64)> {
    let at = |i: usize| b.get(i).copied();
    if at(4)? != b'-' || at(7)? != b'-' || !matches!(at(10)?, b'T' | b't' | b' ') {
        return None;
    }
    if at(13)? != b':' || at(16)? != b':' {
        return None;
    }
    let (year, month, day) = (digits(b, 0..4)?, digits(b, 5..7)?, digits(b, 8..10)?);
    let (hour, minute, second) = (digits(b, 11..13)?, digits(b, 14..16)?, digits(b, 17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; it is read as the next second.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some((
        days_from_civil(year, month, day),
        hour * 3600 + minute * 60 + second,
    ))
}

/// An optional `.fraction` at `i`: nanoseconds (digits past the ninth
/// ignored), and where the offset starts.
fn fraction(b: &[u8], mut i: usize) -> Option<(i64, usize)> {
    if b.get(i) != Some(&b'.') {
        return Some((0, i));
    }
    i += 1;
    let start = i;
    let mut nanos = 0i64;
    while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
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
    Some((nanos, i))
}

/// `Z` or `±HH:MM` at `i`, ending the text: the offset in seconds.
fn offset(b: &[u8], i: usize) -> Option<i64> {
    match *b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => Some(0),
        sign @ (b'+' | b'-') if i + 6 == b.len() => {
            if *b.get(i + 3)? != b':' {
                return None;
            }
            let (hours, minutes) = (digits(b, i + 1..i + 3)?, digits(b, i + 4..i + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            Some(if sign == b'+' { offset } else { -offset })
        }
        _ => None,
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
