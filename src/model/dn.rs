//! Distinguished names: parsing into RDNs (RFC 4514), escaping values, and
//! the small operations sync and shell need (parent, rdn, rebase).

use std::fmt;

/// A DN that could not be parsed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad DN '{dn}': {reason}")]
pub struct DnError {
    /// The text given.
    pub dn: String,
    /// Why it is not a DN.
    pub reason: String,
}

/// A parsed DN: RDN strings as written (escapes kept), most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    rdns: Vec<String>,
}

impl Dn {
    /// Parses `s` strictly: every RDN needs `attr=value`, escapes must be
    /// complete, the attribute type must be a name or an OID.
    pub fn parse(s: &str) -> Result<Dn, DnError> {
        let err = |reason: &str| DnError {
            dn: s.to_string(),
            reason: reason.to_string(),
        };
        if s.trim().is_empty() {
            return Ok(Dn { rdns: Vec::new() });
        }
        let mut rdns = Vec::new();
        let mut cur = String::new();
        let mut chars = s.chars().peekable();
        let mut in_quotes = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let Some(n) = chars.next() else {
                        return Err(err("it ends with a lone backslash"));
                    };
                    cur.push('\\');
                    cur.push(n);
                    if n.is_ascii_hexdigit() {
                        match chars.next() {
                            Some(m) if m.is_ascii_hexdigit() => cur.push(m),
                            _ => return Err(err("a \\XX escape needs two hex digits")),
                        }
                    }
                }
                '"' => {
                    in_quotes = !in_quotes;
                    cur.push(c);
                }
                ',' | ';' if !in_quotes => {
                    rdns.push(std::mem::take(&mut cur));
                }
                _ => cur.push(c),
            }
        }
        if in_quotes {
            return Err(err("a quoted value is not closed"));
        }
        rdns.push(cur);
        let mut out = Vec::with_capacity(rdns.len());
        for rdn in rdns {
            let rdn = trim_unescaped(&rdn).to_string();
            if rdn.is_empty() {
                return Err(err(
                    "it has an empty RDN (two commas in a row, or a comma at an end)",
                ));
            }
            for ava in split_unescaped(&rdn, '+') {
                let Some((attr, value)) = ava.split_once('=') else {
                    return Err(err(&format!(
                        "'{rdn}' has no '=' (expected attribute=value)"
                    )));
                };
                let attr = attr.trim();
                let ok_name = attr.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                let ok_oid = !attr.is_empty()
                    && attr.chars().all(|c| c.is_ascii_digit() || c == '.')
                    && !attr.starts_with('.');
                if !ok_name && !ok_oid {
                    return Err(err(&format!("'{attr}' is not an attribute name")));
                }
                if value.trim().is_empty() {
                    return Err(err(&format!("'{rdn}' has an empty value")));
                }
            }
            out.push(rdn);
        }
        Ok(Dn { rdns: out })
    }

    /// The RDNs, most specific first.
    pub fn rdns(&self) -> &[String] {
        &self.rdns
    }

    /// The first RDN, or `None` for the root DSE.
    pub fn rdn(&self) -> Option<&str> {
        self.rdns.first().map(String::as_str)
    }

    /// The parent DN (empty for a single-RDN DN).
    pub fn parent(&self) -> Dn {
        Dn {
            rdns: self.rdns.iter().skip(1).cloned().collect(),
        }
    }

    /// True when `self` equals `base` or lies beneath it (case-insensitive).
    pub fn is_under(&self, base: &Dn) -> bool {
        if base.rdns.len() > self.rdns.len() {
            return false;
        }
        let off = self.rdns.len() - base.rdns.len();
        self.rdns[off..]
            .iter()
            .zip(&base.rdns)
            .all(|(a, b)| norm(a) == norm(b))
    }

    /// True for the empty DN.
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// The comparison key of this DN (see [`dn_key`]): two DNs name the
    /// same entry when their keys are equal.
    pub fn key(&self) -> String {
        self.rdns
            .iter()
            .map(|r| norm(r))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rdns.join(","))
    }
}

/// A comparison form of an RDN: lower case, spaces around `=` removed.
fn norm(rdn: &str) -> String {
    rdn.split('+')
        .map(|ava| match ava.split_once('=') {
            Some((a, v)) => format!("{}={}", a.trim(), v.trim()).to_lowercase(),
            None => ava.to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// The first RDN of `dn` as written (escapes kept), found without parsing
/// the rest: for a caller that needs only the naming attribute of a DN the
/// planner has already checked. `None` for an empty DN.
pub fn first_rdn(dn: &str) -> Option<&str> {
    let mut escaped = false;
    let mut quoted = false;
    let mut end = dn.len();
    for (i, c) in dn.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' | ';' if !quoted => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let rdn = trim_unescaped(&dn[..end]);
    (!rdn.is_empty()).then_some(rdn)
}

/// True when two DNs name the same entry (case-insensitive, RDN-wise).
pub fn dn_eq(a: &str, b: &str) -> bool {
    match (Dn::parse(a), Dn::parse(b)) {
        (Ok(x), Ok(y)) => {
            x.rdns.len() == y.rdns.len()
                && x.rdns.iter().zip(&y.rdns).all(|(p, q)| norm(p) == norm(q))
        }
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// A comparison key for a DN (lower case, spaces around `=` and `,`
/// removed): two DNs are equal in the sense of [`dn_eq`] when their keys are.
pub fn dn_key(s: &str) -> String {
    match Dn::parse(s) {
        Ok(d) => d.key(),
        Err(_) => s.to_lowercase(),
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Removes surrounding blanks that are not escaped (`cn=a\ ` keeps its
/// escaped space).
fn trim_unescaped(s: &str) -> &str {
    let s = s.trim_start();
    let mut end = s.len();
    while end > 0 && s.as_bytes()[end - 1].is_ascii_whitespace() {
        let backslashes = s.as_bytes()[..end - 1]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &s[..end]
}

/// An RDN value with its escapes (`\,`, `\2C`, `\ `) and surrounding
/// quotes removed, as the directory stores it.
pub fn unescape_value(v: &str) -> String {
    let v = trim_unescaped(v);
    if let Some(q) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return q.to_string();
    }
    let mut bytes = Vec::with_capacity(v.len());
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(x) => {
                    bytes.push(x);
                    i += 3;
                }
                None => {
                    bytes.push(b[i + 1]);
                    i += 2;
                }
            }
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The attribute/value pairs of an RDN (`cn=a+sn=b`), values unescaped
/// ([`unescape_value`]); an escaped `+` (`cn=a\+b`) stays in its value.
pub fn rdn_values(rdn: &str) -> Vec<(String, String)> {
    split_unescaped(rdn, '+')
        .into_iter()
        .filter_map(|ava| ava.split_once('='))
        .map(|(a, v)| (a.trim().to_string(), unescape_value(v)))
        .collect()
}

/// Escapes a value for use inside an RDN (RFC 4514 §2.4).
///
/// ```
/// use idsync::model::dn::{dn_escape, Dn};
/// let dn = format!("CN={},OU=Staff,DC=corp,DC=example", dn_escape("Lee, Ann"));
/// assert_eq!(dn, "CN=Lee\\, Ann,OU=Staff,DC=corp,DC=example");
/// assert_eq!(Dn::parse(&dn).unwrap().rdns().len(), 4);
/// ```
pub fn dn_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\{:02x}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes a value for use inside an LDAP search filter (RFC 4515).
///
/// ```
/// assert_eq!(idsync::model::dn::ldap_escape("a*(b)"), "a\\2a\\28b\\29");
/// ```
pub fn ldap_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes raw bytes for a filter (every byte as `\XX`), as binary
/// attributes such as objectGUID need.
pub fn ldap_escape_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_walks() {
        let d = Dn::parse("CN=Lee\\, Ann,OU=Staff,DC=corp,DC=example").unwrap();
        assert_eq!(d.rdns().len(), 4);
        assert_eq!(d.rdn(), Some("CN=Lee\\, Ann"));
        assert_eq!(d.parent().to_string(), "OU=Staff,DC=corp,DC=example");
        assert!(d.is_under(&Dn::parse("dc=CORP, dc=example").unwrap()));
        assert!(!d.is_under(&Dn::parse("dc=other,dc=example").unwrap()));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "cn=a,,dc=x",
            "cn",
            "cn=a,dc=x,",
            "=a",
            "cn=a\\",
            "cn=a\\4",
            "c n=a",
        ] {
            assert!(Dn::parse(bad).is_err(), "{bad} should be rejected");
        }
        let e = Dn::parse("cn=a,,dc=x").unwrap_err();
        assert!(e.to_string().contains("empty RDN"), "{e}");
    }

    #[test]
    fn escapes() {
        assert_eq!(dn_escape("Lee, Ann"), "Lee\\, Ann");
        assert_eq!(dn_escape(" #x "), "\\ #x\\ ");
        assert_eq!(dn_escape("#x"), "\\#x");
        assert_eq!(ldap_escape("a*(b)\\"), "a\\2a\\28b\\29\\5c");
        assert!(dn_eq("CN=A, DC=x", "cn=a,dc=X"));
        // Escaped output parses back as one RDN.
        let dn = format!("cn={},dc=x", dn_escape("a,b+c=d"));
        assert_eq!(Dn::parse(&dn).unwrap().rdns().len(), 2);
    }

    #[test]
    fn rdn_values_keep_escaped_plus_and_spaces() {
        for value in ["a+b=c", " lead", "trail ", "Lee, Ann", "Zoë", "x\\ "] {
            let dn = Dn::parse(&format!(" cn={} ,dc=x", dn_escape(value))).unwrap();
            let rdn = dn.rdn().unwrap();
            assert_eq!(
                rdn_values(rdn),
                [("cn".to_string(), value.to_string())],
                "{rdn}"
            );
        }
        assert_eq!(
            rdn_values("cn=a+sn=b"),
            [("cn".into(), "a".into()), ("sn".into(), "b".into())]
        );
        assert_eq!(unescape_value("Zo\\c3\\ab"), "Zoë");
        assert_eq!(unescape_value(" \"quoted, value\" "), "quoted, value");
    }

    #[test]
    fn the_first_rdn_is_cut_at_the_first_unescaped_comma() {
        for dn in [
            "uid=a,ou=p,dc=x",
            "cn=Lee\\, Ann,ou=p",
            "cn=\"Lee, Ann\",ou=p",
            " cn=a\\ ,dc=x",
            "cn=a",
        ] {
            let parsed = Dn::parse(dn).unwrap();
            assert_eq!(first_rdn(dn), parsed.rdn(), "{dn}");
        }
        assert_eq!(first_rdn(""), None);
    }
}
