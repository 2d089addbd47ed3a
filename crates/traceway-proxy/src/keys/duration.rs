//! LiteLLM's durations (`30s`, `30m`, `30h`, `30d`, `2w`, `1mo`) and the timestamps the
//! management API answers with (ISO 8601, UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "\"{0}\" is not a duration: write a whole number and a unit, e.g. 30s, 30m, 12h, 30d, 2w or 1mo"
)]
pub struct DurationError(pub String);

/// Seconds in one `mo`: LiteLLM's months are calendar months; here a month is 30 days.
const MONTH_SECS: u64 = 30 * 86_400;

/// Parses `<n><unit>`; units `s`, `m`, `h`, `d`, `w`, `mo` and their spelled-out forms
/// (`30min`, `2hours`, `7days` …, which LiteLLM's docs also use). The number must be above 0.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || DurationError(text.to_owned());
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    let unit_secs: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        "mo" | "month" | "months" => MONTH_SECS,
        _ => return Err(bad()),
    };
    // Above a century is a typo, and keeps the millisecond arithmetic far from overflow.
    n.checked_mul(unit_secs)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `ms` (Unix milliseconds) as `2024-05-01T12:00:00.123Z`.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn litellm_durations() {
        for (text, secs) in [
            ("30s", 30),
            ("30m", 1800),
            ("30min", 1800),
            ("12h", 43_200),
            ("30d", 2_592_000),
            ("2w", 1_209_600),
            ("1mo", 2_592_000),
            (" 7days ", 604_800),
        ] {
            assert_eq!(parse(text).unwrap(), Duration::from_secs(secs), "{text}");
        }
        for bad in [
            "",
            "30",
            "d",
            "-5d",
            "0s",
            "30x",
            "1.5h",
            "thirty days",
            "9999999999y",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("30x").unwrap_err().to_string().contains("30d"));
    }

    #[test]
    fn timestamps_are_iso8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }
}
