//! Due times: when a timer fires.

use super::*;

/// When a timer set at `now` fires: its `date`, `now` plus its `duration` (ISO 8601,
/// or business days on its working calendar), or the next occurrence of its `cycle`
/// after `now` in its time zone. `eval` evaluates `=expression` values.
pub fn next_due(
    t: &raw::TimerDef,
    now: DateTime<Utc>,
    def: &raw::ProcessDef,
    calendars: &Calendars,
    eval: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<DateTime<Utc>, String> {
    let resolve = |s: &str| -> Result<String, String> {
        match ordo_model::expr::as_expression(s) {
            Some((e, _)) => match eval(e)? {
                Value::String(s) => Ok(s),
                other => Err(format!("a timer expression gave {other}, not text")),
            },
            None => Ok(s.to_owned()),
        }
    };
    if let Some(d) = &t.date {
        let text = resolve(d)?;
        return timer::parse_date(&text)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| e.message);
    }
    if let Some(c) = &t.cycle {
        let schedule = timer::parse_cron(c).map_err(|e| e.message)?;
        let tz = match &t.timezone {
            Some(z) => timer::parse_timezone(z).map_err(|e| e.message)?,
            None => chrono_tz::UTC,
        };
        return schedule
            .after(&now.with_timezone(&tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("the cycle `{c}` has no occurrence after {now}"));
    }
    let text = resolve(t.duration.as_deref().unwrap_or("PT0S"))?;
    match timer::parse_duration(&text).map_err(|e| e.message)? {
        timer::Duration::Iso(d) => Ok(add_iso(now, &d)),
        timer::Duration::BusinessDays(n) => {
            let name = t
                .calendar
                .as_deref()
                .or(def.calendar.as_deref())
                .unwrap_or("default");
            let cal = calendars
                .get(name)
                .ok_or_else(|| format!("there is no working calendar `{name}` in this engine"))?;
            cal.add_business_days(now, n).ok_or_else(|| {
                format!("calendar `{name}` has no {n} working days within ten years")
            })
        }
    }
}

/// Adds an ISO duration: calendar units on the calendar, the rest exactly.
pub fn add_iso(at: DateTime<Utc>, d: &timer::IsoDuration) -> DateTime<Utc> {
    let months = d.years.saturating_mul(12).saturating_add(d.months);
    let at = at
        .checked_add_months(chrono::Months::new(months))
        .unwrap_or(at);
    let days = u64::from(d.weeks) * 7 + u64::from(d.days);
    let at = at.checked_add_days(chrono::Days::new(days)).unwrap_or(at);
    let exact = chrono::Duration::hours(i64::from(d.hours))
        + chrono::Duration::minutes(i64::from(d.minutes))
        + chrono::Duration::milliseconds(i64::try_from(d.millis).unwrap_or(i64::MAX / 2));
    at.checked_add_signed(exact).unwrap_or(at)
}
