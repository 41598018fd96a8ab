//! Working calendars: which days are working days, for business-day timers (`P5BD`).
//!
//! A calendar is a small YAML file:
//!
//! ```yaml
//! name: cn                       # how processes refer to it (`calendar: cn`)
//! timezone: Asia/Shanghai        # days are counted in this zone (default UTC)
//! weekdays: [mon, tue, wed, thu, fri]   # the normal working week (default Mon–Fri)
//! holidays:                      # days off that would be working days
//!   - 2026-10-01
//!   - 2026-10-02..2026-10-07     # an inclusive range
//! workdays:                      # make-up working days that fall on a weekend
//!   - 2026-09-20
//! ```
//!
//! A day is a working day when it is listed in `workdays`, or when its weekday is in
//! `weekdays` and it is not in `holidays`. Adding `n` business days to an instant
//! moves to the `n`th working day after the instant's local date and keeps its local
//! time of day (so "5 working days from Friday 09:00" is a 09:00 too).
//!
//! The `default` calendar (Monday to Friday, UTC, no holidays) is always present.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Most days a business-day addition looks ahead before giving up (a calendar with
/// no working day at all would otherwise loop forever).
pub const MAX_SCAN_DAYS: u64 = 3660;

/// Why a calendar file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not describe a calendar.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Two calendars have one name.
    #[error("calendar `{0}` is defined twice")]
    Duplicate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    weekdays: Option<Vec<String>>,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    workdays: Vec<String>,
}

/// A working calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// Its name.
    pub name: String,
    /// The zone days are counted in.
    pub timezone: chrono_tz::Tz,
    /// Working weekdays, Monday first.
    pub weekdays: [bool; 7],
    /// Days off.
    pub holidays: BTreeSet<NaiveDate>,
    /// Make-up working days.
    pub workdays: BTreeSet<NaiveDate>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            name: "default".into(),
            timezone: chrono_tz::UTC,
            weekdays: [true, true, true, true, true, false, false],
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
        }
    }
}

impl Calendar {
    /// Parses a calendar file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Calendar, Error> {
        let invalid = |line: usize, column: usize, message: String| Error::Invalid {
            file: file.to_owned(),
            line,
            column,
            message,
        };
        let f: File = serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            invalid(line, column, e.to_string())
        })?;
        // Values are checked after decoding; point at the line that holds them.
        let at = |needle: &str| -> (usize, usize) {
            text.lines()
                .enumerate()
                .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
                .unwrap_or((1, 1))
        };
        let timezone = match &f.timezone {
            None => chrono_tz::UTC,
            Some(tz) => tz.parse().map_err(|_| {
                let (l, c) = at(tz);
                invalid(
                    l,
                    c,
                    format!("`{tz}` is not a known IANA time zone; use a name such as `Asia/Shanghai` or `UTC`"),
                )
            })?,
        };
        let mut weekdays = Calendar::default().weekdays;
        if let Some(days) = &f.weekdays {
            weekdays = [false; 7];
            for d in days {
                let wd: Weekday = d.parse().map_err(|_| {
                    let (l, c) = at(d);
                    invalid(
                        l,
                        c,
                        format!("`{d}` is not a weekday; write `mon`, `tue`, … `sun`"),
                    )
                })?;
                weekdays[wd.num_days_from_monday() as usize] = true;
            }
        }
        let dates = |list: &[String]| -> Result<BTreeSet<NaiveDate>, Error> {
            let mut out = BTreeSet::new();
            for item in list {
                let bad = || {
                    let (l, c) = at(item);
                    invalid(
                        l,
                        c,
                        format!(
                            "`{item}` is not a date; write `2026-10-01` or a range `2026-10-01..2026-10-07`"
                        ),
                    )
                };
                let (from, to) = match item.split_once("..") {
                    Some((a, b)) => (a.trim(), b.trim()),
                    None => (item.trim(), item.trim()),
                };
                let from = NaiveDate::parse_from_str(from, "%Y-%m-%d").map_err(|_| bad())?;
                let to = NaiveDate::parse_from_str(to, "%Y-%m-%d").map_err(|_| bad())?;
                if to < from || (to - from).num_days() > 366 {
                    return Err(bad());
                }
                let mut d = from;
                while d <= to {
                    out.insert(d);
                    d = d.succ_opt().ok_or_else(bad)?;
                }
            }
            Ok(out)
        };
        Ok(Calendar {
            name: f.name,
            timezone,
            weekdays,
            holidays: dates(&f.holidays)?,
            workdays: dates(&f.workdays)?,
        })
    }

    /// Whether `day` is a working day.
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        self.workdays.contains(&day)
            || (self.weekdays[day.weekday().num_days_from_monday() as usize]
                && !self.holidays.contains(&day))
    }

    /// The instant `n` working days after `at`, at the same local time of day.
    /// `None` when no such day comes within [`MAX_SCAN_DAYS`].
    pub fn add_business_days(&self, at: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.timezone);
        let time = local.time();
        let mut day = local.date_naive();
        let mut left = n;
        let mut scanned = 0;
        while left > 0 {
            day = day.checked_add_days(Days::new(1))?;
            scanned += 1;
            if scanned > MAX_SCAN_DAYS {
                return None;
            }
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        // A local time skipped by a DST change takes the next valid instant.
        let naive = day.and_time(time);
        let mut probe = naive;
        for _ in 0..4 {
            if let Some(t) = self.timezone.from_local_datetime(&probe).earliest() {
                return Some(t.with_timezone(&Utc));
            }
            probe += chrono::Duration::minutes(30);
        }
        None
    }
}

/// The calendars an engine knows, by name; `default` is always there.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendars(HashMap<String, Calendar>);

impl Default for Calendars {
    fn default() -> Self {
        Calendars(HashMap::from([("default".to_owned(), Calendar::default())]))
    }
}

impl Calendars {
    /// Adds a calendar (a file named `default` replaces the built-in one).
    pub fn add(&mut self, cal: Calendar) -> Result<(), Error> {
        if cal.name != "default" && self.0.contains_key(&cal.name) {
            return Err(Error::Duplicate(cal.name));
        }
        self.0.insert(cal.name.clone(), cal);
        Ok(())
    }

    /// Loads every `*.yaml` / `*.yml` file of a directory.
    pub fn load_dir(&mut self, dir: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            file: dir.display().to_string(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for path in files {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                file: file.clone(),
                source,
            })?;
            self.add(Calendar::parse(&file, &text)?)?;
        }
        Ok(())
    }

    /// A calendar by name.
    pub fn get(&self, name: &str) -> Option<&Calendar> {
        self.0.get(name)
    }

    /// The names, for the validator.
    pub fn names(&self) -> std::collections::HashSet<String> {
        self.0.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn default_counts_monday_to_friday() {
        let cal = Calendar::default();
        // Friday 2026-11-20 09:00 + 1 working day = Monday 23rd.
        assert_eq!(
            cal.add_business_days(utc(2026, 11, 20, 9), 1),
            Some(utc(2026, 11, 23, 9))
        );
        assert_eq!(
            cal.add_business_days(utc(2026, 11, 20, 9), 5),
            Some(utc(2026, 11, 27, 9))
        );
        assert_eq!(
            cal.add_business_days(utc(2026, 11, 20, 9), 0),
            Some(utc(2026, 11, 20, 9))
        );
    }

    #[test]
    fn holidays_are_skipped_and_make_up_days_count() {
        let text = "name: cn\ntimezone: Asia/Shanghai\nholidays: ['2026-10-01..2026-10-07']\nworkdays: [2026-09-27, 2026-10-10]\n";
        let cal = Calendar::parse("cn.yaml", text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cal.is_working_day(NaiveDate::from_ymd_opt(2026, 10, 5).unwrap_or_default()));
        assert!(cal.is_working_day(NaiveDate::from_ymd_opt(2026, 10, 10).unwrap_or_default()));
        // Friday 2026-09-25 10:00 Shanghai (02:00 UTC): Sun 27 (make-up) is day 1,
        // Mon 28 day 2, Tue 29 day 3, Wed 30 day 4, then the holiday week, then
        // Thu 8 Oct day 5, Fri 9 day 6, and Sat 10 Oct (make-up) day 7.
        assert_eq!(
            cal.add_business_days(utc(2026, 9, 25, 2), 5),
            Some(utc(2026, 10, 8, 2))
        );
        assert_eq!(
            cal.add_business_days(utc(2026, 9, 25, 2), 7),
            Some(utc(2026, 10, 10, 2))
        );
        // The default calendar would have said Friday 2 October.
        assert_eq!(
            Calendar::default().add_business_days(utc(2026, 9, 25, 2), 5),
            Some(utc(2026, 10, 2, 2))
        );
    }

    #[test]
    fn bad_files_say_where_and_what() {
        let e = Calendar::parse("c.yaml", "name: x\nholidays: [2026-13-01]\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "c.yaml:2:12: `2026-13-01` is not a date; write `2026-10-01` or a range `2026-10-01..2026-10-07`"
            )
        );
        let e = Calendar::parse("c.yaml", "name: x\nweekday: [mon]\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("c.yaml:2:1: unknown field `weekday`"), "{e}");
        let e = Calendar::parse("c.yaml", "name: x\ntimezone: Mars/Base\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("c.yaml:2:11: `Mars/Base`"), "{e}");
    }

    #[test]
    fn a_calendar_without_working_days_gives_none_not_a_hang() {
        let cal = Calendar::parse("c.yaml", "name: never\nweekdays: []\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cal.add_business_days(utc(2026, 1, 1, 0), 1), None);
    }
}
