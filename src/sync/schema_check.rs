//! Checks of planned writes against the target's schema, so that a preview
//! shows what a run would be refused, and a run fails those objects without
//! sending writes that cannot succeed: object classes and attributes the
//! schema does not know, attributes the entry's classes do not allow,
//! required attributes missing, server-maintained attributes, several values
//! for a single-valued attribute, and values that do not fit the attribute's
//! syntax (IA5String, PrintableString, Integer, Boolean, GeneralizedTime,
//! DN, Numeric String, Directory String). Pure functions over a
//! [`Schema`] read once per run; the planner calls them for every write.

use std::collections::HashMap;
use std::sync::Arc;

use crate::connector::ldap::schema::{Allowed, Schema};
use crate::model::dn::Dn;

use super::plan::AttrChange;

/// One reason the target would refuse a planned write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What it is about, in words: "attribute mail", "parent ou=x,dc=y",
    /// "object class foo".
    pub subject: String,
    /// The attribute concerned, if any.
    pub attr: Option<String>,
    /// The rule that produced the write, if any.
    pub rule: Option<String>,
    /// Why the write cannot succeed.
    pub reason: String,
}

impl Problem {
    /// A problem with the value(s) `rule` gives attribute `attr`.
    pub fn attr(attr: &str, rule: Option<&str>, reason: impl Into<String>) -> Problem {
        Problem {
            subject: format!("attribute {attr}"),
            attr: Some(attr.to_string()),
            rule: rule.map(str::to_string),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule {
            Some(r) if !r.is_empty() => write!(f, "{} (rule {r}): {}", self.subject, self.reason),
            _ => write!(f, "{}: {}", self.subject, self.reason),
        }
    }
}

/// Syntax OIDs (RFC 4517) this module checks values against.
mod syntax {
    pub const BOOLEAN: &str = "1.3.6.1.4.1.1466.115.121.1.7";
    pub const DN: &str = "1.3.6.1.4.1.1466.115.121.1.12";
    pub const DIRECTORY_STRING: &str = "1.3.6.1.4.1.1466.115.121.1.15";
    pub const GENERALIZED_TIME: &str = "1.3.6.1.4.1.1466.115.121.1.24";
    pub const IA5_STRING: &str = "1.3.6.1.4.1.1466.115.121.1.26";
    pub const INTEGER: &str = "1.3.6.1.4.1.1466.115.121.1.27";
    pub const NUMERIC_STRING: &str = "1.3.6.1.4.1.1466.115.121.1.36";
    pub const PRINTABLE_STRING: &str = "1.3.6.1.4.1.1466.115.121.1.44";
    /// AD's Large Integer (INTEGER8).
    pub const AD_LARGE_INTEGER: &str = "1.2.840.113556.1.4.906";
}

/// Why `v` does not fit the syntax `oid`; `None` when it fits or the syntax
/// is not one this module checks.
pub fn value_problem(oid: &str, v: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(v).ok();
    let shown = || {
        let s = String::from_utf8_lossy(v);
        let mut t: String = s.chars().take(60).collect();
        if s.chars().count() > 60 {
            t.push('…');
        }
        format!("'{t}'")
    };
    let bad = |what: &str| {
        Some(format!(
            "{} does not fit the attribute's syntax, {what}",
            shown()
        ))
    };
    match oid {
        syntax::IA5_STRING if !v.is_ascii() => bad("IA5String: only ASCII characters are allowed"),
        syntax::PRINTABLE_STRING
            if v.is_empty()
                || !v
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b" '()+,-./:?=".contains(&b)) =>
        {
            bad("PrintableString: letters, digits, space and ' ( ) + , - . / : ? = only")
        }
        syntax::INTEGER | syntax::AD_LARGE_INTEGER if !text.is_some_and(is_integer) => {
            bad("INTEGER: a whole number")
        }
        syntax::BOOLEAN if !matches!(v, b"TRUE" | b"FALSE") => bad("Boolean: TRUE or FALSE"),
        syntax::GENERALIZED_TIME if !text.is_some_and(is_generalized_time) => {
            bad("GeneralizedTime: YYYYMMDDHHMMSSZ")
        }
        syntax::DN if text.is_none_or(|t| Dn::parse(t).is_err()) => bad("DN: a distinguished name"),
        syntax::NUMERIC_STRING
            if v.is_empty() || !v.iter().all(|&b| b.is_ascii_digit() || b == b' ') =>
        {
            bad("Numeric String: digits and spaces only")
        }
        syntax::DIRECTORY_STRING if text.is_none() => bad("Directory String: UTF-8 text"),
        syntax::DIRECTORY_STRING if v.is_empty() => {
            Some("an empty value does not fit the attribute's syntax, Directory String".into())
        }
        _ => None,
    }
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0"
}

/// RFC 4517 GeneralizedTime: `YYYYMMDDHH[MM[SS]][(.|,)fraction](Z|(+|-)HH[MM])`.
fn is_generalized_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if !matches!(digits, 10 | 12 | 14) {
        return false;
    }
    let num = |i: usize| (b[i] - b'0') as u32 * 10 + (b[i + 1] - b'0') as u32;
    let (month, day, hour) = (num(4), num(6), num(8));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 {
        return false;
    }
    if digits >= 12 && num(10) > 59 || digits == 14 && num(12) > 60 {
        return false;
    }
    let mut rest = &s[digits..];
    if let Some(r) = rest.strip_prefix(['.', ',']) {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &r[n..];
    }
    match rest.as_bytes() {
        b"Z" => true,
        [b'+' | b'-', h @ ..] if matches!(h.len(), 2 | 4) => h.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The problems of writing `values` to `attr` (index `i`) under `rule`.
fn value_problems(schema: &Schema, i: usize, c: &AttrChange, out: &mut Vec<Problem>) {
    let a = schema.attr(i);
    let at = |why: String| Problem::attr(&c.attr, Some(&c.rule), why);
    if a.single_value && c.new.len() > 1 {
        out.push(at(format!(
            "{} values for a single-valued attribute",
            c.new.len()
        )));
    }
    if let Some(oid) = schema.syntax(i) {
        for v in &c.new {
            if let Some(why) = value_problem(oid, v.as_bytes()) {
                out.push(at(why));
                break;
            }
        }
    }
}

/// The class names an attribute list gives (its `objectClass` values).
fn classes_of(attrs: &[AttrChange]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.attr.eq_ignore_ascii_case("objectClass"))
        .flat_map(|a| a.new.iter())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// What the classes of an entry allow, or the class names the schema lacks.
type AllowedOrUnknown = Arc<Result<Allowed, Vec<String>>>;

/// The checks of one plan: the target's schema, and what each combination
/// of object classes allows, worked out once (a run of 100,000 creates of
/// one class follows the class chain once).
pub struct Checker {
    schema: Arc<Schema>,
    ad: bool,
    allowed: HashMap<String, AllowedOrUnknown>,
}

impl Checker {
    /// Checks against `schema`. On AD (`ad`), attributes the server fills in
    /// itself (`instanceType`, `objectCategory`, `nTSecurityDescriptor`, a
    /// generated `sAMAccountName`) are required by the schema but need not
    /// be sent, so required attributes are not checked there.
    pub fn new(schema: Arc<Schema>, ad: bool) -> Checker {
        Checker {
            schema,
            ad,
            allowed: HashMap::new(),
        }
    }

    /// The problems of a new entry with `attrs` (`objectClass` among them).
    pub fn create(&mut self, attrs: &[AttrChange]) -> Vec<Problem> {
        let classes = classes_of(attrs);
        self.check(&classes, attrs, true)
    }

    /// The problems of `changes` to an existing entry of `classes`.
    pub fn update(&mut self, classes: &[String], changes: &[AttrChange]) -> Vec<Problem> {
        self.check(classes, changes, false)
    }

    fn allowed_for(&mut self, classes: &[String]) -> AllowedOrUnknown {
        let mut key: Vec<String> = classes.iter().map(|c| c.to_ascii_lowercase()).collect();
        key.sort();
        let key = key.join("\0");
        let schema = &self.schema;
        self.allowed
            .entry(key)
            .or_insert_with(|| Arc::new(schema.allowed(classes)))
            .clone()
    }

    fn check(&mut self, classes: &[String], attrs: &[AttrChange], creating: bool) -> Vec<Problem> {
        let found = (!classes.is_empty()).then(|| self.allowed_for(classes));
        check(
            &self.schema,
            self.ad,
            found.as_deref(),
            classes,
            attrs,
            creating,
        )
    }
}

/// Checks `attrs` against `schema`, given what the entry's `classes` allow.
fn check(
    schema: &Schema,
    ad: bool,
    found: Option<&Result<Allowed, Vec<String>>>,
    classes: &[String],
    attrs: &[AttrChange],
    creating: bool,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let allowed = match found {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(unknown)) => {
            for c in unknown {
                out.push(Problem {
                    subject: format!("object class {c}"),
                    attr: Some("objectClass".into()),
                    rule: Some("create class".into()),
                    reason: "the target's schema has no such class".into(),
                });
            }
            None
        }
    };
    for c in attrs {
        if c.attr.eq_ignore_ascii_case("objectClass") {
            continue;
        }
        let Some(i) = schema.attr_index(&c.attr) else {
            out.push(Problem::attr(
                &c.attr,
                Some(&c.rule),
                "the target's schema has no such attribute",
            ));
            continue;
        };
        let def = schema.attr(i);
        if def.no_user_modification {
            out.push(Problem::attr(
                &c.attr,
                Some(&c.rule),
                "is maintained by the server and cannot be written",
            ));
            continue;
        }
        if let Some(a) = &allowed
            && !a.any
            && !def.operational
            && !a.may.contains(&i)
        {
            out.push(Problem::attr(
                &c.attr,
                Some(&c.rule),
                format!("not allowed by the object classes {}", classes.join(", ")),
            ));
            continue;
        }
        if !creating && c.new.is_empty() {
            if let Some(a) = &allowed
                && !ad
                && let Some((_, class)) = a.must.iter().find(|(m, _)| *m == i)
            {
                out.push(Problem::attr(
                    &c.attr,
                    Some(&c.rule),
                    format!("the update would remove it, but class {class} requires it"),
                ));
            }
            continue;
        }
        value_problems(schema, i, c, &mut out);
    }
    if creating
        && !ad
        && let Some(a) = &allowed
    {
        for (i, class) in &a.must {
            let name = schema.attr(*i).name();
            if name.eq_ignore_ascii_case("objectClass") {
                continue;
            }
            let present = attrs
                .iter()
                .any(|c| !c.new.is_empty() && schema.attr_index(&c.attr) == Some(*i));
            if !present {
                out.push(Problem::attr(
                    name,
                    None,
                    format!("required by class {class}, but no flow gives it a value"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    proptest::proptest! {
        /// Any value, checked against any of the syntaxes, never panics.
        #[test]
        fn any_value_is_checked_without_panic(v in proptest::collection::vec(proptest::num::u8::ANY, 0..40), t in ".{0,40}") {
            for oid in [
                syntax::BOOLEAN, syntax::DN, syntax::DIRECTORY_STRING, syntax::GENERALIZED_TIME,
                syntax::IA5_STRING, syntax::INTEGER, syntax::NUMERIC_STRING,
                syntax::PRINTABLE_STRING, syntax::AD_LARGE_INTEGER,
            ] {
                let _ = value_problem(oid, &v);
                let _ = value_problem(oid, t.as_bytes());
            }
        }
    }

    #[test]
    fn values_are_checked_against_their_syntax() {
        let ok = |oid: &str, v: &str| assert_eq!(value_problem(oid, v.as_bytes()), None, "{v}");
        let bad = |oid: &str, v: &str| assert!(value_problem(oid, v.as_bytes()).is_some(), "{v}");
        ok(syntax::IA5_STRING, "ann@example.com");
        bad(syntax::IA5_STRING, "søren@example.com");
        ok(syntax::PRINTABLE_STRING, "Ann Lee (Sales), 2/3");
        bad(syntax::PRINTABLE_STRING, "ann@x");
        bad(syntax::PRINTABLE_STRING, "Zoë");
        for v in ["0", "-12", "42"] {
            ok(syntax::INTEGER, v);
        }
        for v in ["", "-", "007", "1.5", "12a", "-0"] {
            bad(syntax::INTEGER, v);
        }
        ok(syntax::BOOLEAN, "TRUE");
        bad(syntax::BOOLEAN, "true");
        for v in [
            "20261122103000Z",
            "2026112210Z",
            "20261122103000.5+0100",
            "202611221030-05",
        ] {
            ok(syntax::GENERALIZED_TIME, v);
        }
        for v in [
            "2026-11-22",
            "20261322103000Z",
            "20261122103000",
            "20261122103000.Z",
        ] {
            bad(syntax::GENERALIZED_TIME, v);
        }
        ok(syntax::DN, "cn=Ann,dc=example,dc=com");
        bad(syntax::DN, "not a dn");
        ok(syntax::NUMERIC_STRING, "12 34");
        bad(syntax::NUMERIC_STRING, "12-34");
        bad(syntax::DIRECTORY_STRING, "");
        ok(syntax::DIRECTORY_STRING, "山田");
        ok("1.3.6.1.4.1.1466.115.121.1.40", "");
        assert!(value_problem(syntax::DIRECTORY_STRING, &[0xff, 0xfe]).is_some());
    }

    fn schema() -> Schema {
        Schema::parse(
            &[
                "( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )".into(),
                "( 2.5.6.6 NAME 'person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY description )"
                    .into(),
                "( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' SUP person STRUCTURAL MAY ( mail $ employeeNumber $ uid ) )".into(),
            ],
            &[
                "( 2.5.4.0 NAME 'objectClass' SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )".into(),
                "( 2.5.4.41 NAME 'name' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )".into(),
                "( 2.5.4.4 NAME ( 'sn' 'surname' ) SUP name )".into(),
                "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )".into(),
                "( 2.5.4.13 NAME 'description' SUP name )".into(),
                "( 0.9.2342.19200300.100.1.1 NAME 'uid' SUP name )".into(),
                "( 0.9.2342.19200300.100.1.3 NAME 'mail' SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )"
                    .into(),
                "( 2.16.840.1.113730.3.1.3 NAME 'employeeNumber' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )".into(),
                "( 2.5.4.20 NAME 'telephoneNumber' SYNTAX 1.3.6.1.4.1.1466.115.121.1.50 )".into(),
                "( 1.3.6.1.1.16.4 NAME 'entryUUID' SYNTAX 1.3.6.1.1.16.1 SINGLE-VALUE NO-USER-MODIFICATION )".into(),
            ],
            &[],
        )
    }

    fn w(attr: &str, vals: &[&str]) -> AttrChange {
        AttrChange {
            attr: attr.into(),
            old: vec![],
            new: vals.iter().map(|v| Value::Text(v.to_string())).collect(),
            rule: format!("{attr} <- x").into(),
        }
    }

    #[test]
    fn a_create_is_checked_for_classes_attributes_required_and_values() {
        let s = schema();
        let good = [
            w("objectClass", &["inetOrgPerson"]),
            w("CN", &["Ann"]),
            w("surname", &["Lee"]),
            w("mail", &["ann@example.com"]),
        ];
        assert!(
            Checker::new(Arc::new(s.clone()), false)
                .create(&good)
                .is_empty()
        );
        let mut one_checker = Checker::new(Arc::new(s.clone()), false);
        let p = one_checker.create(&[
            w("objectClass", &["INETORGPERSON"]),
            w("cn", &["Søren"]),
            w("mail", &["søren@example.com"]),
            w("telephoneNumber", &["1"]),
            w("nosuchAttr", &["x"]),
            w("employeeNumber", &["1", "2"]),
            w("entryUUID", &["x"]),
        ]);
        // A second entry of the same classes reuses what they allow.
        assert_eq!(one_checker.create(&good), Vec::<Problem>::new());
        assert_eq!(one_checker.allowed.len(), 1);
        let all = p
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("attribute mail (rule mail <- x): 'søren@example.com' does not fit the attribute's syntax, IA5String"), "{all}");
        assert!(all.contains("attribute telephoneNumber (rule telephoneNumber <- x): not allowed by the object classes INETORGPERSON"), "{all}");
        assert!(all.contains("attribute nosuchAttr (rule nosuchAttr <- x): the target's schema has no such attribute"), "{all}");
        assert!(
            all.contains("2 values for a single-valued attribute"),
            "{all}"
        );
        assert!(
            all.contains("attribute entryUUID (rule entryUUID <- x): is maintained by the server"),
            "{all}"
        );
        assert!(
            all.contains("attribute sn: required by class person, but no flow gives it a value"),
            "{all}"
        );
        assert_eq!(p.len(), 6, "{all}");
        // AD: required attributes are the server's business.
        assert!(
            !Checker::new(Arc::new(s.clone()), true)
                .create(&good[..2])
                .iter()
                .any(|x| x.reason.contains("required"))
        );
        let p = Checker::new(Arc::new(s.clone()), false)
            .create(&[w("objectClass", &["person", "nosuchClass"])]);
        assert_eq!(
            p.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            ["object class nosuchClass (rule create class): the target's schema has no such class"]
        );
    }

    #[test]
    fn an_update_is_checked_against_the_entrys_classes() {
        let s = schema();
        let classes = ["top".to_string(), "person".into(), "inetOrgPerson".into()];
        assert!(
            Checker::new(Arc::new(s.clone()), false)
                .update(&classes, &[w("mail", &["a@b"]), w("description", &[])])
                .is_empty()
        );
        let p = Checker::new(Arc::new(s.clone()), false)
            .update(&classes, &[w("sn", &[]), w("mail", &["ü@b"])]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].reason
                .contains("would remove it, but class person requires it"),
            "{p:?}"
        );
        let p = Checker::new(Arc::new(s.clone()), false)
            .update(&["person".into()], &[w("mail", &["a@b"])]);
        assert!(
            p[0].reason
                .contains("not allowed by the object classes person"),
            "{p:?}"
        );
    }
}
