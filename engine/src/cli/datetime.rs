//! Parsing the ISO 8601 times (`--to-datetime`, `--from-timestamp`) and durations
//! (`--by-duration`) that the CLI takes.

/// Milliseconds since the Unix epoch for `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM|±HHMM]`.
/// A time without a zone is UTC.
pub fn parse_iso8601_ms(text: &str) -> Result<i64, String> {
    let invalid = || {
        format!("expected an ISO 8601 time like 2024-05-01T12:00:00Z or 2024-05-01T12:00:00.000+02:00, got {text:?}")
    };
    let split = text.len().min(10);
    if !text.is_char_boundary(split) {
        return Err(invalid());
    }
    let (date, rest) = text.split_at(split);
    let fields: Vec<&str> = date.split('-').collect();
    let [year, month, day] = fields.as_slice() else {
        return Err(invalid());
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(invalid());
    }
    let year: i64 = number(year).ok_or_else(invalid)?;
    let month: i64 = number(month).ok_or_else(invalid)?;
    let day: i64 = number(day).ok_or_else(invalid)?;
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return Err(invalid());
    }
    let (time, zone) = match rest.strip_prefix(['T', 't', ' ']) {
        None if rest.is_empty() => ("", ""),
        None => return Err(invalid()),
        Some(rest) => match rest.find(['Z', 'z', '+', '-']) {
            Some(position) => rest.split_at(position),
            None => (rest, ""),
        },
    };
    let time_ms = parse_time_of_day(time).ok_or_else(invalid)?;
    let offset_ms = parse_zone(zone).ok_or_else(invalid)?;
    Ok(days_from_civil(year, month, day) * 86_400_000 + time_ms - offset_ms)
}

fn number(digits: &str) -> Option<i64> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `HH:MM[:SS[.fff]]` (or empty, midnight) as milliseconds into the day.
fn parse_time_of_day(time: &str) -> Option<i64> {
    if time.is_empty() {
        return Some(0);
    }
    let (clock, fraction) = match time.split_once(['.', ',']) {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|part| part.len() != 2) {
        return None;
    }
    let hours = number(parts[0])?;
    let minutes = number(parts[1])?;
    let seconds = parts.get(2).map_or(Some(0), |part| number(part))?;
    if hours > 23 || minutes > 59 || seconds > 59 || (fraction.is_some() && parts.len() != 3) {
        return None;
    }
    let millis = match fraction {
        None => 0,
        Some(fraction) => {
            number(fraction)?;
            // Milliseconds are the first three digits; finer digits are dropped.
            let padded = format!("{fraction:0<3}");
            padded[..3].parse::<i64>().ok()?
        }
    };
    Some(((hours * 60 + minutes) * 60 + seconds) * 1000 + millis)
}

/// `Z`, `±HH:MM`, `±HHMM`, `±HH` or empty (UTC) as milliseconds east of UTC.
fn parse_zone(zone: &str) -> Option<i64> {
    if zone.is_empty() || zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match zone.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if ![2, 4].contains(&digits.len()) {
        return None;
    }
    let hours = number(&digits[..2])?;
    let minutes = if digits.len() == 4 {
        number(&digits[2..])?
    } else {
        0
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 60 + minutes) * 60_000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A time: ISO 8601, or milliseconds since the epoch.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(ms) if ms >= 0 => Ok(ms),
        Ok(_) => Err(format!("a time cannot be negative: {text}")),
        Err(_) => parse_iso8601_ms(text),
    }
}

/// Milliseconds in an ISO 8601 duration as Java's `Duration.parse` reads it (what Kafka's
/// `--by-duration` takes): `PnDTnHnMn.nS`, each part optional but at least one, fractions
/// only on seconds, e.g. `PT30M`, `P1DT12H`, `PT0.5S`.
pub fn parse_iso8601_duration_ms(text: &str) -> Result<i64, String> {
    let invalid =
        || format!("expected an ISO 8601 duration like PT30M, P1DT12H or PT0.5S, got {text:?}");
    let rest = text.strip_prefix(['P', 'p']).ok_or_else(invalid)?;
    let (days, time) = match rest.split_once(['T', 't']) {
        Some((days, time)) if !time.is_empty() => (days, time),
        Some(_) => return Err(invalid()),
        None => (rest, ""),
    };
    let mut total_ms: i64 = 0;
    let mut parts = 0;
    if !days.is_empty() {
        let count = days
            .strip_suffix(['D', 'd'])
            .and_then(number)
            .ok_or_else(invalid)?;
        total_ms = count.checked_mul(86_400_000).ok_or_else(invalid)?;
        parts += 1;
    }
    let mut time = time;
    for (unit, unit_ms) in [('H', 3_600_000i64), ('M', 60_000)] {
        if let Some(at) = time.find([unit, unit.to_ascii_lowercase()]) {
            let count = number(&time[..at]).ok_or_else(invalid)?;
            total_ms = count
                .checked_mul(unit_ms)
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(invalid)?;
            time = &time[at + 1..];
            parts += 1;
        }
    }
    if !time.is_empty() {
        let seconds = time.strip_suffix(['S', 's']).ok_or_else(invalid)?;
        let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
        if fraction.len() > 9 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid());
        }
        let whole_ms = number(whole)
            .and_then(|count| count.checked_mul(1000))
            .ok_or_else(invalid)?;
        let fraction_ms = format!("{fraction:0<3}")[..3]
            .parse::<i64>()
            .map_err(|_| invalid())?;
        total_ms = total_ms
            .checked_add(whole_ms + fraction_ms)
            .ok_or_else(invalid)?;
        parts += 1;
    }
    if parts == 0 {
        return Err(invalid());
    }
    Ok(total_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_operators_type() {
        assert_eq!(parse_iso8601_ms("1970-01-01"), Ok(0));
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_iso8601_ms("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_iso8601_ms("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_iso8601_ms("2023-11-14T22:13:20.5"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_iso8601_ms("2023-11-15T00:13:20+02:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_iso8601_ms("2023-11-14T20:13:20-0200"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(parse_iso8601_ms("2023-11-14T22:13"), Ok(1_699_999_980_000));
        assert_eq!(
            parse_iso8601_ms("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
    }

    #[test]
    fn rejects_nonsense() {
        for text in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T25:00",
            "2024-01-01T10:00+5",
            "2024-1-01",
        ] {
            assert!(parse_iso8601_ms(text).is_err(), "{text}");
        }
    }

    #[test]
    fn durations_read_as_java_reads_them() {
        assert_eq!(parse_iso8601_duration_ms("PT30M"), Ok(1_800_000));
        assert_eq!(parse_iso8601_duration_ms("P1DT12H"), Ok(129_600_000));
        assert_eq!(parse_iso8601_duration_ms("P2D"), Ok(172_800_000));
        assert_eq!(parse_iso8601_duration_ms("PT0.5S"), Ok(500));
        assert_eq!(parse_iso8601_duration_ms("PT1H2M3.004S"), Ok(3_723_004));
        for bad in [
            "", "P", "PT", "30M", "PT5X", "P1H", "PT-5M", "PT1.5M", "PT1.S5",
        ] {
            assert!(parse_iso8601_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
