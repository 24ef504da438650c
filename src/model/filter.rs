//! LDAP search filters (RFC 4515) parsed and evaluated in memory, for
//! systems that have no server to do it: CSV and LDIF files.
//!
//! Matching follows what most directory attributes do: equality, `~=` and
//! substrings ignore case; `>=`/`<=` compare numbers when both sides are
//! integers, else case-insensitive text. GUID and SID attributes compare on
//! their canonical display strings (whether the filter gives the text form
//! or the `\XX`-escaped bytes). `(objectClass=*)` is always true (file rows
//! may have no objectClass), and `dn` names the entry's DN. An empty filter
//! matches everything; a filter without outer parentheses (`cn=x`) is read
//! as if it had them. Extensible matches (`:=`) are not supported.

use std::cmp::Ordering;
use std::fmt;

use super::codec;
use super::dn::dn_eq;
use super::entry::Entry;
use super::value::{BinaryKind, Value, binary_kind};

/// Deepest nesting accepted, so a hostile filter cannot exhaust the stack.
const MAX_DEPTH: usize = 100;

/// Characters of the filter quoted on each side of an error's position;
/// a longer filter is shown as a window with `…` where it is cut.
const QUOTE_AROUND: usize = 30;

/// A filter that could not be parsed: the text, where, and why. Its
/// message quotes the filter whole when it is short, else a window around
/// the position (see [`quote_window`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad filter '{}': at position {position}: {reason}",
    quote_window(filter, *position, QUOTE_AROUND)
)]
pub struct FilterError {
    /// The filter as given.
    pub filter: String,
    /// 1-based character position of the problem.
    pub position: usize,
    /// What is wrong there.
    pub reason: String,
}

/// The text around the 1-based character `position`: up to `around`
/// characters on each side, with `…` where the text is cut, so an error in a
/// 300 KB filter quotes one short line. Text of at most `2 * around + 1`
/// characters comes back whole.
///
/// ```
/// use idsync::model::filter::quote_window;
/// assert_eq!(quote_window("(cn=a", 6, 30), "(cn=a");
/// let long = format!("(|{}(cn=a", "(cn=x)".repeat(100));
/// assert_eq!(quote_window(&long, 603, 5), "…cn=x)(cn=a");
/// ```
pub fn quote_window(text: &str, position: usize, around: usize) -> String {
    let total = text.chars().count();
    if total <= 2 * around + 1 {
        return text.to_string();
    }
    let at = position.saturating_sub(1).min(total);
    let start = at.saturating_sub(around);
    let end = (at + around + 1).min(total);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(text.chars().skip(start).take(end - start));
    if end < total {
        out.push('…');
    }
    out
}

/// A parsed filter, ready to test entries with [`Filter::matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    source: String,
    node: Node,
}

/// A value from a filter: the raw bytes after unescaping and the
/// case-folded text used for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    raw: Vec<u8>,
    text: String,
}

impl Assertion {
    /// The value as written in the filter, after unescaping.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}

/// One node of a parsed filter (read-only; for connectors that translate
/// filters into their own query language, such as SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// All must hold (an empty `And` matches everything).
    And(Vec<Node>),
    /// One must hold.
    Or(Vec<Node>),
    /// Negation.
    Not(Box<Node>),
    /// `(attr=value)`.
    Equal(String, Assertion),
    /// `(attr~=value)`.
    Approx(String, Assertion),
    /// `(attr>=value)`.
    Greater(String, Assertion),
    /// `(attr<=value)`.
    Less(String, Assertion),
    /// `(attr=*)`.
    Present(String),
    /// `(attr=ini*any*fin)`; the pieces are case-folded.
    Substrings {
        /// Attribute.
        attr: String,
        /// Leading piece.
        initial: Option<String>,
        /// Middle pieces, in order.
        any: Vec<String>,
        /// Trailing piece.
        last: Option<String>,
    },
}

impl Filter {
    /// Parses `text`; an empty or blank text is the filter that matches all.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Filter {
                source: String::new(),
                node: Node::And(Vec::new()),
            });
        }
        let wrapped;
        let (input, shift) = if trimmed.starts_with('(') {
            (text, 0)
        } else {
            wrapped = format!("({trimmed})");
            let leading = text.len() - text.trim_start().len();
            (wrapped.as_str(), 1 - leading as isize)
        };
        let mut p = Parser {
            src: input,
            bytes: input.as_bytes(),
            pos: 0,
            shift,
            original: text,
        };
        p.skip_ws();
        let node = p.filter(0)?;
        p.skip_ws();
        if p.pos < p.bytes.len() {
            let c = p.peek().map(|b| p.char_at(b)).unwrap_or_default();
            return Err(p.error(format!(
                "unexpected '{c}' after the end of the filter (unbalanced parentheses?)"
            )));
        }
        Ok(Filter {
            source: text.to_string(),
            node,
        })
    }

    /// The parsed tree.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The filter that matches every entry.
    pub fn all() -> Filter {
        Filter {
            source: String::new(),
            node: Node::And(Vec::new()),
        }
    }

    /// The text this filter was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `entry` satisfies the filter.
    pub fn matches(&self, entry: &Entry) -> bool {
        eval(&self.node, entry)
    }

    /// The attribute names the filter tests, each once.
    pub fn attributes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        collect_attrs(&self.node, &mut out);
        out
    }

    /// The same test as an OData `$filter` for the subset Microsoft Graph
    /// evaluates on its side: equality (`eq`, with `is_bool` naming the
    /// properties written without quotes), prefixes (`startswith`), `and`,
    /// `or`; `(objectClass=*)` and other presence tests are dropped from an
    /// `and`. `None` when some part has no such equivalent; the caller then
    /// filters on its side.
    pub fn to_odata(&self, is_bool: &dyn Fn(&str) -> bool) -> Option<String> {
        odata(&self.node, is_bool)
    }
}

fn collect_attrs(n: &Node, out: &mut Vec<String>) {
    let mut add = |a: &str| {
        if !out.iter().any(|x| x.eq_ignore_ascii_case(a)) {
            out.push(a.to_string());
        }
    };
    match n {
        Node::And(v) | Node::Or(v) => v.iter().for_each(|c| collect_attrs(c, out)),
        Node::Not(c) => collect_attrs(c, out),
        Node::Equal(a, _) | Node::Approx(a, _) | Node::Greater(a, _) | Node::Less(a, _) => add(a),
        Node::Present(a) => add(a),
        Node::Substrings { attr, .. } => add(attr),
    }
}

fn odata(n: &Node, is_bool: &dyn Fn(&str) -> bool) -> Option<String> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match n {
        Node::And(v) => {
            let parts: Vec<String> = v
                .iter()
                .filter(|c| !matches!(c, Node::Present(_)))
                .map(|c| odata(c, is_bool))
                .collect::<Option<_>>()?;
            match parts.len() {
                0 => None,
                1 => parts.into_iter().next(),
                _ => Some(format!("({})", parts.join(" and "))),
            }
        }
        Node::Or(v) if !v.is_empty() => {
            let parts: Vec<String> = v.iter().map(|c| odata(c, is_bool)).collect::<Option<_>>()?;
            Some(format!("({})", parts.join(" or ")))
        }
        Node::Equal(a, v) => {
            let text = std::str::from_utf8(&v.raw).ok()?;
            if is_bool(a) {
                let b = text.to_ascii_lowercase();
                (b == "true" || b == "false").then(|| format!("{a} eq {b}"))
            } else {
                Some(format!("{a} eq {}", quote(text)))
            }
        }
        Node::Substrings {
            attr,
            initial: Some(i),
            any,
            last: None,
        } if any.is_empty() && !is_bool(attr) => Some(format!("startswith({attr},{})", quote(i))),
        _ => None,
    }
}

#[cfg(test)]
mod odata_tests {
    use super::Filter;

    fn od(f: &str) -> Option<String> {
        Filter::parse(f)
            .unwrap()
            .to_odata(&|a: &str| a.eq_ignore_ascii_case("accountEnabled"))
    }

    #[test]
    fn the_graph_subset_translates() {
        assert_eq!(od("(mail=a@b.c)").as_deref(), Some("mail eq 'a@b.c'"));
        assert_eq!(
            od("(&(objectClass=*)(displayName=O'Neil)(accountEnabled=TRUE))").as_deref(),
            Some("(displayName eq 'O''Neil' and accountEnabled eq true)")
        );
        assert_eq!(
            od("(|(givenName=Ann*)(sn=Lee))").as_deref(),
            Some("(startswith(givenName,'ann') or sn eq 'Lee')")
        );
        assert_eq!(od("(!(mail=x))"), None);
        assert_eq!(od("(mail=*x*)"), None);
        assert_eq!(od("(objectClass=*)"), None);
        assert_eq!(
            Filter::parse("(&(a=1)(|(B=2)(!(c>=3))))")
                .unwrap()
                .attributes(),
            vec!["a", "B", "c"]
        );
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Characters added in front of the original text (implicit parens)
    /// minus leading blanks dropped from it.
    shift: isize,
    original: &'a str,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> FilterError {
        let at = self.pos.min(self.src.len());
        let chars = self.src.get(..at).map(|s| s.chars().count()).unwrap_or(at);
        FilterError {
            filter: self.original.to_string(),
            position: (chars as isize + 1 - self.shift).max(1) as usize,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), FilterError> {
        match self.peek() {
            Some(b) if b == want => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(self.error(format!(
                "expected '{}' but found '{}'",
                want as char,
                self.char_at(b)
            ))),
            None => Err(self.error(format!(
                "expected '{}' but the filter ends (unbalanced parentheses?)",
                want as char
            ))),
        }
    }

    fn char_at(&self, b: u8) -> String {
        if b.is_ascii() {
            (b as char).to_string()
        } else {
            self.src
                .get(self.pos..)
                .and_then(|s| s.chars().next())
                .map(String::from)
                .unwrap_or_else(|| "?".into())
        }
    }

    /// `( filtercomp )`
    fn filter(&mut self, depth: usize) -> Result<Node, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.expect(b'(')?;
        self.skip_ws();
        let node = match self.peek() {
            Some(b'&') => {
                self.pos += 1;
                Node::And(self.list(depth)?)
            }
            Some(b'|') => {
                self.pos += 1;
                Node::Or(self.list(depth)?)
            }
            Some(b'!') => {
                self.pos += 1;
                self.skip_ws();
                Node::Not(Box::new(self.filter(depth + 1)?))
            }
            Some(b')') => return Err(self.error("empty filter '()'")),
            None => return Err(self.error("the filter ends after '('")),
            _ => self.item()?,
        };
        self.skip_ws();
        self.expect(b')')?;
        Ok(node)
    }

    /// The operands of `&` or `|`; `(&)` is true and `(|)` false (RFC 4526).
    fn list(&mut self, depth: usize) -> Result<Vec<Node>, FilterError> {
        let mut out = Vec::new();
        self.skip_ws();
        while self.peek() == Some(b'(') {
            out.push(self.filter(depth + 1)?);
            self.skip_ws();
        }
        Ok(out)
    }

    /// `attr op value`
    fn item(&mut self) -> Result<Node, FilterError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(
                b,
                b'=' | b'~' | b'<' | b'>' | b':' | b'(' | b')' | b'*' | b'\\'
            ) {
                break;
            }
            self.pos += 1;
        }
        let attr = self
            .src
            .get(start..self.pos)
            .unwrap_or("")
            .trim()
            .to_string();
        if attr.is_empty() {
            return Err(self.error("missing attribute name"));
        }
        let op = match self.peek() {
            Some(b'=') => {
                self.pos += 1;
                "="
            }
            Some(c @ (b'~' | b'<' | b'>')) => {
                if self.bytes.get(self.pos + 1) != Some(&b'=') {
                    return Err(self.error(format!("'{}' must be followed by '='", c as char)));
                }
                self.pos += 2;
                match c {
                    b'~' => "~=",
                    b'<' => "<=",
                    _ => ">=",
                }
            }
            Some(b':') => {
                return Err(self.error("extensible matches (attr:rule:=value) are not supported"));
            }
            Some(b) => {
                return Err(self.error(format!(
                    "'{}' after attribute '{attr}'; expected =, ~=, >= or <=",
                    self.char_at(b)
                )));
            }
            None => return Err(self.error(format!("attribute '{attr}' has no operator"))),
        };
        let pieces = self.value()?;
        if op != "=" {
            if pieces.len() > 1 {
                return Err(self.error(format!(
                    "'*' is only allowed with '=' (write \\2a for a literal asterisk after {op})"
                )));
            }
            let a = assertion(&attr, pieces.into_iter().next().unwrap_or_default());
            return Ok(match op {
                "~=" => Node::Approx(attr, a),
                ">=" => Node::Greater(attr, a),
                _ => Node::Less(attr, a),
            });
        }
        Ok(match pieces.len() {
            0 | 1 => {
                let a = assertion(&attr, pieces.into_iter().next().unwrap_or_default());
                Node::Equal(attr, a)
            }
            2 if pieces.iter().all(Vec::is_empty) => Node::Present(attr),
            n => {
                let fold = |b: &Vec<u8>| String::from_utf8_lossy(b).to_lowercase();
                let initial = pieces.first().filter(|p| !p.is_empty()).map(fold);
                let last = pieces.last().filter(|p| !p.is_empty()).map(fold);
                let any = pieces[1..n - 1]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(fold)
                    .collect();
                Node::Substrings {
                    attr,
                    initial,
                    any,
                    last,
                }
            }
        })
    }

    /// The value up to `)`, unescaped, split at unescaped `*`.
    fn value(&mut self) -> Result<Vec<Vec<u8>>, FilterError> {
        let mut pieces = vec![Vec::new()];
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("the value is not closed with ')'"));
            };
            match b {
                b')' => break,
                b'(' => {
                    return Err(self.error("unescaped '(' in a value (write \\28)"));
                }
                b'*' => {
                    pieces.push(Vec::new());
                    self.pos += 1;
                }
                b'\\' => {
                    let hex = self.bytes.get(self.pos + 1..self.pos + 3);
                    let byte = hex
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    let Some(byte) = byte else {
                        return Err(self.error(
                            "a backslash must be followed by two hex digits (\\2a, \\28, \\29, \\5c)",
                        ));
                    };
                    if let Some(p) = pieces.last_mut() {
                        p.push(byte);
                    }
                    self.pos += 3;
                }
                _ => {
                    if let Some(p) = pieces.last_mut() {
                        p.push(b);
                    }
                    self.pos += 1;
                }
            }
        }
        if pieces.len() == 1 && pieces[0].is_empty() {
            return Ok(Vec::new());
        }
        Ok(pieces)
    }
}

/// Builds the comparison form of a filter value for `attr`.
fn assertion(attr: &str, raw: Vec<u8>) -> Assertion {
    let text = match binary_kind(attr) {
        Some(BinaryKind::Guid) => std::str::from_utf8(&raw)
            .ok()
            .and_then(codec::guid_from_string)
            .and_then(|g| codec::guid_to_string(&g))
            .or_else(|| codec::guid_to_string(&raw)),
        Some(BinaryKind::Sid) => std::str::from_utf8(&raw)
            .ok()
            .and_then(codec::sid_from_string)
            .and_then(|s| codec::sid_to_string(&s))
            .or_else(|| codec::sid_to_string(&raw)),
        _ => None,
    };
    let text = text
        .unwrap_or_else(|| String::from_utf8_lossy(&raw).into_owned())
        .to_lowercase();
    Assertion { raw, text }
}

/// An entry value in comparison form: case-folded display text, or `None`
/// for opaque binary (compared on bytes only).
fn folded(attr: &str, v: &Value) -> Option<String> {
    let shown = v.display(attr)?;
    let canonical = match binary_kind(attr) {
        Some(BinaryKind::Guid) => codec::guid_from_string(&shown)
            .and_then(|g| codec::guid_to_string(&g))
            .unwrap_or(shown),
        Some(BinaryKind::Sid) => codec::sid_from_string(&shown)
            .and_then(|s| codec::sid_to_string(&s))
            .unwrap_or(shown),
        _ => shown,
    };
    Some(canonical.to_lowercase())
}

fn is_dn(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("dn")
}

/// True when some value of `attr` satisfies `test` (the DN counts as a
/// value of `dn`).
fn any_value(
    entry: &Entry,
    attr: &str,
    mut test: impl FnMut(Option<String>, &Value) -> bool,
) -> bool {
    if is_dn(attr) {
        let v = Value::Text(entry.dn.clone());
        if test(Some(entry.dn.to_lowercase()), &v) {
            return true;
        }
    }
    entry.values(attr).iter().any(|v| test(folded(attr, v), v))
}

fn equal(entry: &Entry, attr: &str, a: &Assertion) -> bool {
    if is_dn(attr) && dn_eq(&entry.dn, &String::from_utf8_lossy(&a.raw)) {
        return true;
    }
    any_value(entry, attr, |t, v| match t {
        Some(t) => t == a.text,
        None => v.as_bytes() == a.raw.as_slice(),
    })
}

fn order(entry: &Entry, attr: &str, a: &Assertion, want: Ordering) -> bool {
    any_value(entry, attr, |t, _| {
        let Some(t) = t else { return false };
        let ord = match (t.trim().parse::<i128>(), a.text.trim().parse::<i128>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => t.as_str().cmp(a.text.as_str()),
        };
        ord == want || ord == Ordering::Equal
    })
}

fn substrings(text: &str, initial: Option<&str>, any: &[String], last: Option<&str>) -> bool {
    let mut rest = text;
    if let Some(i) = initial {
        match rest.strip_prefix(i) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for piece in any {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    match last {
        Some(l) => rest.ends_with(l),
        None => true,
    }
}

fn eval(node: &Node, e: &Entry) -> bool {
    match node {
        Node::And(list) => list.iter().all(|n| eval(n, e)),
        Node::Or(list) => list.iter().any(|n| eval(n, e)),
        Node::Not(n) => !eval(n, e),
        Node::Present(attr) => {
            attr.eq_ignore_ascii_case("objectClass")
                || (is_dn(attr) && !e.dn.is_empty())
                || e.has(attr)
        }
        Node::Equal(attr, a) | Node::Approx(attr, a) => equal(e, attr, a),
        Node::Greater(attr, a) => order(e, attr, a, Ordering::Greater),
        Node::Less(attr, a) => order(e, attr, a, Ordering::Less),
        Node::Substrings {
            attr,
            initial,
            any,
            last,
        } => any_value(e, attr, |t, _| {
            t.is_some_and(|t| substrings(&t, initial.as_deref(), any, last.as_deref()))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Entry {
        let mut e = Entry::new("CN=Ann Lee,OU=Staff,DC=corp,DC=example");
        e.push("cn", [Value::Text("Ann Lee".into())]);
        e.push("mail", [Value::Text("Ann.Lee@Corp.Example".into())]);
        e.push(
            "memberOf",
            [
                Value::Text("CN=Sales,OU=Groups,DC=corp".into()),
                Value::Text("CN=All,OU=Groups,DC=corp".into()),
            ],
        );
        e.push("employeeNumber", [Value::Text("120".into())]);
        e.push("sn", [Value::Text("Müller".into())]);
        e.push("description", [Value::Text("a*b(c)".into())]);
        e.push("objectGUID", [Value::Binary(b"ABCDEFGHIJKLMNOP".to_vec())]);
        e.push(
            "objectSid",
            [Value::Binary(
                codec::sid_from_string("S-1-5-21-1-2-3-1104").unwrap_or_default(),
            )],
        );
        e.push("jpegPhoto", [Value::Binary(vec![0xff, 0xd8, 0x00])]);
        e
    }

    fn m(f: &str) -> bool {
        Filter::parse(f)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .matches(&person())
    }

    #[test]
    fn equality_presence_and_boolean() {
        assert!(m("(cn=ann lee)"));
        assert!(m("(CN=ANN LEE)"));
        assert!(!m("(cn=ann)"));
        assert!(m("(mail=*)"));
        assert!(!m("(telephoneNumber=*)"));
        assert!(m("(objectClass=*)"));
        assert!(!m("(objectClass=user)"));
        assert!(m("(&(cn=Ann Lee)(mail=*))"));
        assert!(m("(|(cn=nobody)(sn=MÜLLER))"));
        assert!(m("(!(cn=nobody))"));
        assert!(m("(&)"));
        assert!(!m("(|)"));
        assert!(m("(memberOf=cn=all,ou=groups,dc=corp)"));
        assert!(m("(cn~=ANN LEE)"));
        assert!(m(" ( & (cn=Ann Lee) (mail=*) ) "));
        assert!(m("cn=Ann Lee"));
        assert!(m(""));
    }

    #[test]
    fn substrings_and_escapes() {
        assert!(m("(cn=Ann*)"));
        assert!(m("(cn=*lee)"));
        assert!(m("(cn=a*n*e*)"));
        assert!(m("(mail=*@corp.example)"));
        assert!(!m("(cn=*x*)"));
        assert!(!m("(cn=Lee*)"));
        // "nn" and "n " must not overlap.
        assert!(!m("(cn=*nn*nn*)"));
        assert!(m("(description=a\\2ab\\28c\\29)"));
        assert!(m("(description=a\\2a*)"));
        assert!(!m("(description=a\\2ac*)"));
        assert!(m("(sn=m\\c3\\bcller)"));
    }

    #[test]
    fn ordering_is_numeric_when_both_are_integers() {
        assert!(m("(employeeNumber>=100)"));
        assert!(m("(employeeNumber>=120)"));
        assert!(!m("(employeeNumber>=1000)"));
        assert!(m("(employeeNumber<=1000)"));
        assert!(m("(cn>=ann)"));
        assert!(!m("(cn<=aaa)"));
    }

    #[test]
    fn dn_guid_sid_and_binary() {
        assert!(m("(dn=cn=ann lee, ou=staff,dc=corp,dc=example)"));
        assert!(m("(dn=*ou=staff*)"));
        assert!(m("(dn=*)"));
        assert!(m("(objectGUID=44434241-4645-4847-494A-4B4C4D4E4F50)"));
        assert!(m("(objectGUID={44434241-4645-4847-494a-4b4c4d4e4f50})"));
        let escaped = crate::model::dn::ldap_escape_bytes(b"ABCDEFGHIJKLMNOP");
        assert!(m(&format!("(objectGUID={escaped})")));
        assert!(m("(objectSid=S-1-5-21-1-2-3-1104)"));
        assert!(!m("(objectSid=S-1-5-21-1-2-3-1105)"));
        assert!(m("(jpegPhoto=\\ff\\d8\\00)"));
        assert!(!m("(jpegPhoto=\\ff*)"));
    }

    #[test]
    fn errors_name_filter_and_position() {
        let cases = [
            ("(cn=a", 6, "not closed"),
            ("(cn=a))", 7, "after the end"),
            ("(&(cn=a)", 9, "expected ')'"),
            ("(=a)", 2, "missing attribute"),
            ("(cn=a\\zz)", 6, "two hex digits"),
            ("(cn=a\\2)", 6, "two hex digits"),
            ("(cn:dn:=a)", 4, "extensible"),
            ("(cn>=a*)", 8, "only allowed"),
            ("(cn=(a))", 5, "unescaped '('"),
            ("()", 2, "empty filter"),
            ("(cn<a)", 4, "followed by '='"),
            ("cn=a)", 6, "after the end"),
            ("  cn=a\\", 7, "two hex digits"),
        ];
        for (f, pos, why) in cases {
            let e = Filter::parse(f).expect_err(f);
            assert_eq!(e.position, pos, "{f}: {e}");
            assert!(e.to_string().contains(why), "{f}: {e}");
            assert!(e.to_string().contains(f), "{f}: {e}");
        }
    }

    #[test]
    fn long_filter_errors_quote_a_window() {
        // 300 KB of valid terms, then an unclosed one.
        let long = format!("(|{}(cn=a", "(cn=x)".repeat(50_000));
        let e = Filter::parse(&long).unwrap_err();
        assert_eq!(e.position, long.chars().count() + 1);
        let msg = e.to_string();
        assert!(msg.len() < 200, "{} bytes: {msg}", msg.len());
        assert!(msg.contains(&format!("position {}", e.position)), "{msg}");
        assert!(msg.contains("'…") && msg.contains("(cn=a'"), "{msg}");
        // An error in the middle is cut on both sides.
        let mid = format!(
            "(|{}(cn=a(b){})",
            "(cn=x)".repeat(100),
            "(cn=y)".repeat(100)
        );
        let msg = Filter::parse(&mid).unwrap_err().to_string();
        assert!(msg.contains("'…") && msg.contains("…'"), "{msg}");
        assert!(msg.contains("(cn=a(b)"), "{msg}");
        // Multi-byte characters are counted as characters, never cut.
        let wide = format!("(|{}(cn=ø", "(cn=山田)".repeat(100));
        let msg = Filter::parse(&wide).unwrap_err().to_string();
        assert!(msg.contains("(cn=ø'") && msg.chars().count() < 160, "{msg}");
    }

    #[test]
    fn no_panic_on_hostile_input() {
        let deep = format!("{}(a=b){}", "(!".repeat(5000), ")".repeat(5000));
        assert!(Filter::parse(&deep).is_err());
        for f in [
            "(", ")", "(\\", "(a=\\", "(a=\\f", "(é=ü*", "((", "(a~", "(&(|(!",
        ] {
            let _ = Filter::parse(f);
        }
        assert!(Filter::parse("(é=ü*)").is_ok());
    }
}
