//! The stdlib helpers written in Rust, registered globally: what Rhai lacks
//! the primitives for (Unicode decomposition for `ascii_fold`, calendar
//! arithmetic for dates, FILETIMEs and generalizedTime). The recipes built
//! on them are Rhai modules in `stdlib/` (see [`super::stdlib`]).
//!
//! Dates in scripts are ISO 8601 strings in UTC: `"2026-11-22"` for a day,
//! `"2026-11-22T04:30:00Z"` for an instant; they compare correctly as
//! strings.

use rhai::plugin::*;
use unicode_normalization::UnicodeNormalization;

use crate::sync::clock;

/// `s` in ASCII where Latin letters allow: German umlauts as ae/oe/ue,
/// ß as ss, other accents and marks dropped, ligatures and stroked letters
/// spelled out (æ → ae, ø → o, ł → l). Characters with no Latin base are
/// kept as they are.
pub fn fold(s: &str) -> String {
    let chars: Vec<char> = s.nfd().collect();
    let mut out = String::with_capacity(s.len());
    let is_mark = |c: char| ('\u{0300}'..='\u{036f}').contains(&c);
    for (i, &c) in chars.iter().enumerate() {
        if is_mark(c) {
            continue;
        }
        // a diaeresis among the marks that follow this base character
        let umlaut = matches!(c, 'a' | 'o' | 'u' | 'A' | 'O' | 'U')
            && chars[i + 1..]
                .iter()
                .take_while(|&&m| is_mark(m))
                .any(|&m| m == '\u{0308}');
        if umlaut {
            out.push(c);
            // "MÜLLER" → "MUELLER", "Müller" → "Mueller"
            let next_upper = chars[i + 1..]
                .iter()
                .find(|&&n| !is_mark(n))
                .is_some_and(|n| n.is_uppercase());
            out.push(if c.is_uppercase() && next_upper {
                'E'
            } else {
                'e'
            });
            continue;
        }
        match c {
            'ß' => out.push_str("ss"),
            'ẞ' => out.push_str("SS"),
            'æ' => out.push_str("ae"),
            'Æ' => out.push_str("AE"),
            'œ' => out.push_str("oe"),
            'Œ' => out.push_str("OE"),
            'ø' => out.push('o'),
            'Ø' => out.push('O'),
            'ł' => out.push('l'),
            'Ł' => out.push('L'),
            'đ' | 'ð' => out.push('d'),
            'Đ' | 'Ð' => out.push('D'),
            'þ' => out.push_str("th"),
            'Þ' => out.push_str("TH"),
            'ı' => out.push('i'),
            '\u{2019}' | '\u{2018}' | '\u{02bc}' => out.push('\''),
            '\u{2010}'..='\u{2015}' => out.push('-'),
            other => out.push(other),
        }
    }
    out
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A parsed point in time: the date, and the time of day when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    y: i64,
    mo: u32,
    d: u32,
    time: Option<(u32, u32, u32)>,
}

impl When {
    fn new(y: i64, mo: u32, d: u32, time: Option<(u32, u32, u32)>) -> Result<When, String> {
        if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || !(1..=9999).contains(&y)
        {
            return Err(format!("{y:04}-{mo:02}-{d:02} is not a calendar date"));
        }
        if let Some((h, mi, s)) = time
            && (h > 23 || mi > 59 || s > 60)
        {
            return Err(format!("{h:02}:{mi:02}:{s:02} is not a time of day"));
        }
        Ok(When { y, mo, d, time })
    }

    fn from_ms(ms: i64) -> When {
        let (y, mo, d, h, mi, s, _) = clock::parts(ms);
        When {
            y,
            mo,
            d,
            time: Some((h, mi, s)),
        }
    }

    /// Milliseconds since the Unix epoch (midnight UTC for a day).
    pub fn ms(&self) -> i64 {
        let (h, mi, s) = self.time.unwrap_or((0, 0, 0));
        (days_from_civil(self.y, self.mo, self.d) * 86_400
            + i64::from(h) * 3600
            + i64::from(mi) * 60
            + i64::from(s))
            * 1000
    }

    /// `2026-11-22` or `2026-11-22T04:30:00Z`.
    pub fn iso(&self) -> String {
        match self.time {
            None => format!("{:04}-{:02}-{:02}", self.y, self.mo, self.d),
            Some((h, mi, s)) => format!(
                "{:04}-{:02}-{:02}T{h:02}:{mi:02}:{s:02}Z",
                self.y, self.mo, self.d
            ),
        }
    }
}

/// Splits `s` into runs of digits; other characters separate them.
fn numbers(s: &str) -> Vec<&str> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .collect()
}

fn num(s: &str) -> u32 {
    s.parse().unwrap_or(u32::MAX)
}

/// Parses the date formats HR systems write: ISO (`2026-11-22`,
/// `2026-11-22T09:30:00Z`, `2026-11-22 09:30`), generalizedTime
/// (`20261122093000Z`, `20261122093000.0Z`), `YYYYMMDD`, day-first with dots
/// (`22.11.2026`), slashes when unambiguous (`22/11/2026`, `11/22/2026`;
/// `03/04/2026` needs a format), and Excel serial day numbers (`46348`).
/// `format` (`"DD/MM/YYYY"`, `"MM/DD/YYYY"`, `"YYYY-MM-DD"`, with `hh`,
/// `mm`, `ss` after the date) decides the order of the numbers instead.
pub fn parse_when(s: &str, format: Option<&str>) -> Result<When, String> {
    let t = s.trim();
    let bad = |why: &str| format!("cannot read '{t}' as a date: {why}");
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    let parts = numbers(t);
    let time_of = |rest: &[&str]| -> Option<(u32, u32, u32)> {
        if rest.is_empty() {
            None
        } else {
            Some((
                num(rest[0]),
                rest.get(1).map_or(0, |x| num(x)),
                rest.get(2).map_or(0, |x| num(x)),
            ))
        }
    };
    if let Some(f) = format {
        let order: Vec<char> = numbers_fmt(f);
        if order.len() < 3 || parts.len() < 3 {
            return Err(bad(&format!("it does not match the format '{f}'")));
        }
        let mut y = 0;
        let mut mo = 0;
        let mut d = 0;
        for (k, p) in order.iter().take(3).zip(&parts) {
            match k {
                'Y' => y = i64::from(num(p)),
                'M' => mo = num(p),
                _ => d = num(p),
            }
        }
        if (1..100).contains(&y) {
            y += 2000;
        }
        return When::new(y, mo, d, time_of(&parts[3..parts.len().min(6)])).map_err(|e| bad(&e));
    }
    // generalizedTime / YYYYMMDD[hhmmss]
    if let Some(first) = parts.first()
        && (first.len() == 8 || first.len() == 14)
        && t.starts_with(first)
        && t[first.len()..]
            .trim_start_matches(['.', ',', '0', 'Z', 'z'])
            .is_empty()
    {
        let n = |a: usize, b: usize| first[a..b].parse::<u32>().unwrap_or(u32::MAX);
        let time = (first.len() == 14).then(|| (n(8, 10), n(10, 12), n(12, 14)));
        return When::new(i64::from(n(0, 4)), n(4, 6), n(6, 8), time).map_err(|e| bad(&e));
    }
    // Excel's serial day number (days since 1899-12-30)
    if parts.len() == 1 && parts[0].len() <= 6 && t.chars().all(|c| c.is_ascii_digit()) {
        let n = i64::from(num(parts[0]));
        if n > 0 {
            return Ok(When::from_ms((n - 25_569) * 86_400_000)).map(|w| When { time: None, ..w });
        }
    }
    if parts.len() < 3 {
        return Err(bad("expected a day, a month and a year"));
    }
    let rest = &parts[3..parts.len().min(6)];
    if parts[0].len() == 4 {
        return When::new(
            i64::from(num(parts[0])),
            num(parts[1]),
            num(parts[2]),
            time_of(rest),
        )
        .map_err(|e| bad(&e));
    }
    let year = |p: &str| {
        let y = i64::from(num(p));
        if p.len() == 2 { 2000 + y } else { y }
    };
    if t.contains('.') || t.contains('-') {
        // 22.11.2026 (German, day first), 22-11-2026
        return When::new(year(parts[2]), num(parts[1]), num(parts[0]), time_of(rest))
            .map_err(|e| bad(&e));
    }
    let (a, b) = (num(parts[0]), num(parts[1]));
    let (d, mo) = if a > 12 && b <= 12 {
        (a, b)
    } else if b > 12 && a <= 12 {
        (b, a)
    } else if a == b {
        (a, b)
    } else {
        return Err(bad(
            "day and month could be either way round: give the format, e.g. parse_date(s, \"DD/MM/YYYY\")",
        ));
    };
    When::new(year(parts[2]), mo, d, time_of(rest)).map_err(|e| bad(&e))
}

/// The order of Y, M, D in a format such as `DD/MM/YYYY`.
fn numbers_fmt(f: &str) -> Vec<char> {
    let mut order: Vec<char> = Vec::new();
    for c in f.chars() {
        let c = c.to_ascii_uppercase();
        if matches!(c, 'Y' | 'M' | 'D') && order.last() != Some(&c) && order.len() < 3 {
            order.push(c);
        }
    }
    order
}

/// 100-ns intervals between 1601-01-01 and 1970-01-01.
const FILETIME_EPOCH: i64 = 116_444_736_000_000_000;

/// Script-facing errors.
fn err(msg: String) -> Box<EvalAltResult> {
    msg.into()
}

/// The stdlib's Rust helpers.
#[export_module]
pub mod stdlib_fns {
    use rhai::{Dynamic, EvalAltResult};

    /// Folds a name to ASCII: German umlauts become ae/oe/ue, ß becomes
    /// ss, other accents are dropped (for account names and mail addresses).
    ///
    /// Example:
    /// ```rhai
    /// ascii_fold("Zoë Müller-Núñez")   // "Zoe Mueller-Nunez"
    /// ```
    pub fn ascii_fold(s: &str) -> String {
        super::fold(s)
    }

    /// Reads a date in the formats HR files use (ISO, `22.11.2026`,
    /// `22/11/2026`, generalizedTime, `YYYYMMDD`, Excel day numbers) and
    /// returns it as ISO 8601 (`"2026-11-22"`, or with the time,
    /// `"2026-11-22T09:30:00Z"`). An ambiguous `03/04/2026` is an error
    /// asking for the format.
    ///
    /// Example:
    /// ```rhai
    /// parse_date("22.11.2026")   // "2026-11-22"
    /// ```
    #[rhai_fn(name = "parse_date", return_raw)]
    pub fn parse_date(s: &str) -> Result<String, Box<EvalAltResult>> {
        super::parse_when(s, None)
            .map(|w| w.iso())
            .map_err(super::err)
    }

    /// Reads a date with a given order of its numbers: `"DD/MM/YYYY"`,
    /// `"MM/DD/YYYY"`, `"YYYY-MM-DD"` (a time may follow the date).
    ///
    /// Example:
    /// ```rhai
    /// parse_date("03/04/2026", "MM/DD/YYYY")   // "2026-03-04"
    /// ```
    #[rhai_fn(name = "parse_date", return_raw)]
    pub fn parse_date_fmt(s: &str, format: &str) -> Result<String, Box<EvalAltResult>> {
        super::parse_when(s, Some(format))
            .map(|w| w.iso())
            .map_err(super::err)
    }

    /// Today's date in UTC, as `"YYYY-MM-DD"`.
    ///
    /// Example:
    /// ```rhai
    /// let leavers = hr.search("").filter(|e| e.end_date != () && parse_date(e.end_date) < today());
    /// ```
    pub fn today() -> String {
        crate::sync::clock::iso(crate::sync::clock::now_ms())[..10].to_string()
    }

    /// An AD FILETIME (accountExpires, pwdLastSet, lastLogonTimestamp:
    /// 100-ns intervals since 1601) as an ISO 8601 instant; `()` for 0 and
    /// for 9223372036854775807 ("never").
    ///
    /// Example:
    /// ```rhai
    /// filetime_to_date(134082000000000000)   // "2025-11-21T12:00:00Z"
    /// ```
    pub fn filetime_to_date(n: i64) -> Dynamic {
        if n <= 0 || n == i64::MAX {
            return Dynamic::UNIT;
        }
        let ms = (n - super::FILETIME_EPOCH).div_euclid(10_000);
        Dynamic::from(super::When::from_ms(ms).iso())
    }

    /// A FILETIME read as text (as LDAP returns accountExpires).
    ///
    /// Example:
    /// ```rhai
    /// filetime_to_date("134082000000000000")
    /// ```
    #[rhai_fn(name = "filetime_to_date", return_raw)]
    pub fn filetime_text_to_date(n: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let v: i64 = n
            .trim()
            .parse()
            .map_err(|_| super::err(format!("filetime_to_date: '{n}' is not a FILETIME number")))?;
        Ok(filetime_to_date(v))
    }

    /// A date (any format `parse_date` reads) as an AD FILETIME, e.g. for
    /// accountExpires; a day means its midnight UTC.
    ///
    /// Example:
    /// ```rhai
    /// date_to_filetime("2025-11-21T12:00:00Z")   // 134082000000000000
    /// ```
    #[rhai_fn(return_raw)]
    pub fn date_to_filetime(d: &str) -> Result<i64, Box<EvalAltResult>> {
        let w = super::parse_when(d, None).map_err(super::err)?;
        Ok(w.ms() * 10_000 + super::FILETIME_EPOCH)
    }

    /// A date as LDAP generalizedTime (`"20261122093000Z"`), for
    /// attributes such as OpenLDAP's pwdChangedTime or a custom expiry.
    ///
    /// Example:
    /// ```rhai
    /// generalized_time("2026-11-22T09:30:00Z")   // "20261122093000Z"
    /// ```
    #[rhai_fn(return_raw)]
    pub fn generalized_time(d: &str) -> Result<String, Box<EvalAltResult>> {
        let w = super::parse_when(d, None).map_err(super::err)?;
        let (h, mi, s) = w.time.unwrap_or((0, 0, 0));
        Ok(format!(
            "{:04}{:02}{:02}{h:02}{mi:02}{s:02}Z",
            w.y, w.mo, w.d
        ))
    }

    /// Reads LDAP generalizedTime (`20261122093000Z`, AD's
    /// `20261122093000.0Z`) as an ISO 8601 instant.
    ///
    /// Example:
    /// ```rhai
    /// parse_generalized_time("20261122093000.0Z")   // "2026-11-22T09:30:00Z"
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parse_generalized_time(s: &str) -> Result<String, Box<EvalAltResult>> {
        let t = s.trim();
        if t.len() < 14 || !t[..14].bytes().all(|b| b.is_ascii_digit()) {
            return Err(super::err(format!(
                "parse_generalized_time: '{t}' is not generalizedTime (YYYYMMDDhhmmssZ)"
            )));
        }
        let w = super::parse_when(&t[..14], None).map_err(super::err)?;
        Ok(w.iso())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_names() {
        assert_eq!(fold("Zoë Müller-Núñez"), "Zoe Mueller-Nunez");
        assert_eq!(fold("MÜLLER Ärger Öl"), "MUELLER Aerger Oel");
        assert_eq!(
            fold("Weiß Søren Łukasz Æsir François"),
            "Weiss Soren Lukasz AEsir Francois"
        );
    }

    #[test]
    fn dates_and_filetimes() {
        let p = |s: &str| parse_when(s, None).map(|w| w.iso());
        assert_eq!(p("22.11.2026").unwrap(), "2026-11-22");
        assert_eq!(p("2026-11-22").unwrap(), "2026-11-22");
        assert_eq!(p("2026-11-22T09:30:00Z").unwrap(), "2026-11-22T09:30:00Z");
        assert_eq!(p("22/11/2026").unwrap(), "2026-11-22");
        assert_eq!(p("11/22/2026").unwrap(), "2026-11-22");
        assert_eq!(p("20261122093000.0Z").unwrap(), "2026-11-22T09:30:00Z");
        assert_eq!(p("20261122").unwrap(), "2026-11-22");
        assert_eq!(p("46348").unwrap(), "2026-11-22");
        assert!(p("03/04/2026").unwrap_err().contains("DD/MM/YYYY"));
        assert!(p("31.02.2026").is_err());
        assert_eq!(
            parse_when("03/04/2026", Some("MM/DD/YYYY")).unwrap().iso(),
            "2026-03-04"
        );
        let w = parse_when("2025-11-21T12:00:00Z", None).unwrap();
        assert_eq!(w.ms() * 10_000 + FILETIME_EPOCH, 134_082_000_000_000_000);
    }
}
