//! Timer syntax: ISO 8601 durations, business-day durations, RFC 3339 dates, cron
//! cycles and IANA time zones. Parsed when a definition loads, so a bad timer is a
//! diagnostic with its position, never a surprise when the timer is due.

use std::str::FromStr;

/// Why a timer value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// Character offset of the problem inside the value.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to write it instead.
    pub hint: &'static str,
}

const DURATION_HINT: &str =
    "write an ISO 8601 duration such as `PT15M`, `P1DT12H` or `P2W`, or working days as `P5BD`";

/// An ISO 8601 duration. Years, months and days are calendar units (a day is not
/// always 24 hours across a daylight-saving change); the rest are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsoDuration {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Weeks (7 calendar days).
    pub weeks: u32,
    /// Calendar days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
    /// Minutes.
    pub minutes: u32,
    /// Milliseconds (seconds with up to three decimals).
    pub millis: u64,
}

/// A parsed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duration {
    /// Calendar and clock units.
    Iso(IsoDuration),
    /// Working days on a calendar (`P5BD`).
    BusinessDays(u32),
}

/// Parses `P…` durations; `PnBD` counts working days.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let err = |offset: usize, message: String| Error {
        offset,
        message,
        hint: DURATION_HINT,
    };
    let chars: Vec<char> = text.chars().collect();
    if chars.first() != Some(&'P') {
        return Err(err(
            0,
            format!("`{text}` is not a duration: it must start with `P`"),
        ));
    }
    if let Some(days) = text.strip_prefix('P').and_then(|r| r.strip_suffix("BD")) {
        return match days.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Duration::BusinessDays(n)),
            _ => Err(err(
                1,
                format!("`{text}`: working days must be a whole number above 0, as in `P5BD`"),
            )),
        };
    }
    let mut d = IsoDuration::default();
    let mut in_time = false;
    let mut any = false;
    let mut i = 1;
    let mut last_rank = 0u8;
    while i < chars.len() {
        if chars[i] == 'T' {
            if in_time {
                return Err(err(i, format!("`{text}` has two `T`s")));
            }
            in_time = true;
            i += 1;
            if i == chars.len() {
                return Err(err(
                    i,
                    format!(
                        "`{text}` has nothing after `T`; add hours, minutes or seconds, as in `PT30M`"
                    ),
                ));
            }
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
            i += 1;
        }
        if start == i {
            return Err(err(
                i,
                format!("`{text}`: expected a number at character {}", i + 1),
            ));
        }
        let number: String = chars[start..i].iter().collect();
        let Some(&unit) = chars.get(i) else {
            return Err(err(
                start,
                format!("`{text}`: the number `{number}` has no unit (Y, M, W, D, H, S)"),
            ));
        };
        let (rank, ok_in_time) = match (unit, in_time) {
            ('Y', false) => (1, true),
            ('M', false) => (2, true),
            ('W', false) => (3, true),
            ('D', false) => (4, true),
            ('H', true) => (5, true),
            ('M', true) => (6, true),
            ('S', true) => (7, true),
            ('H' | 'S', false) => (0, false),
            ('Y' | 'W' | 'D', true) => (0, false),
            _ => {
                return Err(err(i, format!("`{text}`: `{unit}` is not a duration unit")));
            }
        };
        if !ok_in_time {
            let fix = if in_time {
                "before the `T`"
            } else {
                "after a `T`"
            };
            return Err(err(i, format!("`{text}`: `{unit}` belongs {fix}")));
        }
        if rank <= last_rank {
            return Err(err(
                i,
                format!("`{text}`: units must come in the order Y M W D T H M S, each once"),
            ));
        }
        last_rank = rank;
        if number.contains('.') && unit != 'S' {
            return Err(err(
                start,
                format!("`{text}`: only seconds may have decimals"),
            ));
        }
        let whole = |n: &str| -> Result<u32, Error> {
            n.parse::<u32>().map_err(|_| {
                err(
                    start,
                    format!("`{text}`: `{n}` is not a whole number in range"),
                )
            })
        };
        match rank {
            1 => d.years = whole(&number)?,
            2 => d.months = whole(&number)?,
            3 => d.weeks = whole(&number)?,
            4 => d.days = whole(&number)?,
            5 => d.hours = whole(&number)?,
            6 => d.minutes = whole(&number)?,
            _ => {
                let secs: f64 = number
                    .parse()
                    .map_err(|_| err(start, format!("`{text}`: `{number}` is not a number")))?;
                if !(0.0..=1.0e12).contains(&secs) {
                    return Err(err(
                        start,
                        format!("`{text}`: `{number}` seconds is out of range"),
                    ));
                }
                d.millis = (secs * 1000.0).round() as u64;
            }
        }
        any = true;
        i += 1;
    }
    if !any {
        return Err(err(
            1,
            format!("`{text}` has no amount; write at least one, as in `PT1H`"),
        ));
    }
    Ok(Duration::Iso(d))
}

/// Parses an RFC 3339 date-time with an offset.
pub fn parse_date(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, Error> {
    chrono::DateTime::parse_from_rfc3339(text).map_err(|e| Error {
        offset: 0,
        message: format!("`{text}` is not an RFC 3339 date-time: {e}"),
        hint: "write a date, a time and an offset, as in `2027-01-04T09:00:00+08:00` or `2027-01-04T01:00:00Z`",
    })
}

/// Parses a cron expression: 5 fields (minute precision) or 6–7 (seconds, year).
pub fn parse_cron(text: &str) -> Result<cron::Schedule, Error> {
    let fields = text.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {text}"),
        6 | 7 => text.to_owned(),
        n => {
            return Err(Error {
                offset: 0,
                message: format!("`{text}` has {n} fields; a cron expression has 5, 6 or 7"),
                hint: "write `min hour day month weekday` (`0 9 * * Mon`), or add seconds first and a year last",
            });
        }
    };
    cron::Schedule::from_str(&full).map_err(|e| Error {
        offset: 0,
        message: format!("`{text}` is not a valid cron expression: {e}"),
        hint: "fields are `min hour day month weekday`; each takes `*`, a number, a range `1-5`, a list `1,3`, a step `*/15`, or a name (`Mon`, `Jan`)",
    })
}

/// Parses an IANA time-zone name.
pub fn parse_timezone(text: &str) -> Result<chrono_tz::Tz, Error> {
    text.parse::<chrono_tz::Tz>().map_err(|_| Error {
        offset: 0,
        message: format!("`{text}` is not a known IANA time zone"),
        hint: "use a name from the tz database, such as `UTC`, `Asia/Shanghai` or `Europe/Berlin`",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        let d = |s| parse_duration(s).map_err(|e| e.message);
        assert_eq!(
            d("P1Y2M3W4DT5H6M7.5S"),
            Ok(Duration::Iso(IsoDuration {
                years: 1,
                months: 2,
                weeks: 3,
                days: 4,
                hours: 5,
                minutes: 6,
                millis: 7500
            }))
        );
        assert_eq!(
            d("PT15M"),
            Ok(Duration::Iso(IsoDuration {
                minutes: 15,
                ..Default::default()
            }))
        );
        assert_eq!(d("P5BD"), Ok(Duration::BusinessDays(5)));
    }

    #[test]
    fn bad_durations_say_where() {
        let e = |s| parse_duration(s).err().map(|e| e.offset);
        assert_eq!(e("5D"), Some(0));
        assert_eq!(e("P"), Some(1));
        assert_eq!(e("PT"), Some(2));
        assert_eq!(e("P1H"), Some(2));
        assert_eq!(e("PT1D"), Some(3));
        assert_eq!(e("P1D2Y"), Some(4));
        assert_eq!(e("P1.5D"), Some(1));
        assert_eq!(e("P0BD"), Some(1));
        assert_eq!(e("P2.5BD"), Some(1));
        assert_eq!(e("P99999999999D"), Some(1));
    }

    #[test]
    fn cron_dates_and_zones() {
        assert!(parse_cron("0 9 * * Mon").is_ok());
        assert!(parse_cron("0 0 9 * * Mon-Fri").is_ok());
        assert!(parse_cron("0 9 * *").is_err());
        assert!(parse_cron("0 99 * * *").is_err());
        assert!(parse_date("2027-01-04T09:00:00+08:00").is_ok());
        assert!(parse_date("2027-01-04").is_err());
        assert!(parse_timezone("Asia/Shanghai").is_ok());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
