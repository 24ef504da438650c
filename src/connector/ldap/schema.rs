//! The directory's schema as the server publishes it (RFC 4512 subschema
//! subentry, named by the rootDSE's `subschemaSubentry`; AD's
//! `CN=Aggregate`): object classes with their superclasses, required and
//! allowed attributes, DIT content rules (AD's auxiliary classes), and
//! attribute types with their syntax, equality rule and single-value flag,
//! inherited through `SUP`. Names and OIDs are matched case-insensitively.
//! Read once per sync run so that a plan can be checked before any write.

use std::collections::{HashMap, HashSet};

use crate::connector::{Result, Scope, SearchQuery};
use crate::model::Value;

use super::LdapConnector;
use super::read::search_all;

/// The OID of `extensibleObject`: an entry of this class may hold any attribute.
pub const EXTENSIBLE_OBJECT: &str = "1.3.6.1.4.1.1466.101.120.111";

/// One attribute type.
#[derive(Clone, Debug, Default)]
pub struct AttrType {
    /// Its numeric OID.
    pub oid: String,
    /// Its names (the first is the usual one).
    pub names: Vec<String>,
    /// The attribute type it derives from.
    pub sup: Option<String>,
    /// The syntax OID as written (without a `{length}`), if not inherited.
    pub syntax: Option<String>,
    /// The equality matching rule, if not inherited.
    pub equality: Option<String>,
    /// At most one value.
    pub single_value: bool,
    /// Maintained by the server; clients cannot write it.
    pub no_user_modification: bool,
    /// An operational attribute (`USAGE` other than `userApplications`):
    /// allowed on any entry, whatever its classes.
    pub operational: bool,
}

impl AttrType {
    /// The usual name (or the OID).
    pub fn name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or(&self.oid)
    }
}

/// What kind of object class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClassKind {
    /// Only for deriving other classes (`top`).
    Abstract,
    /// An entry's main class.
    #[default]
    Structural,
    /// Added to entries of other classes.
    Auxiliary,
}

/// One object class.
#[derive(Clone, Debug, Default)]
pub struct ObjectClass {
    /// Its numeric OID.
    pub oid: String,
    /// Its names.
    pub names: Vec<String>,
    /// Its superclasses.
    pub sup: Vec<String>,
    /// Abstract, structural or auxiliary.
    pub kind: ClassKind,
    /// Required attributes (names or OIDs as written).
    pub must: Vec<String>,
    /// Allowed attributes (names or OIDs as written).
    pub may: Vec<String>,
}

impl ObjectClass {
    /// The usual name (or the OID).
    pub fn name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or(&self.oid)
    }
}

/// A DIT content rule: auxiliary classes and further attributes allowed on
/// entries of one structural class (AD publishes one per class).
#[derive(Clone, Debug, Default)]
struct ContentRule {
    aux: Vec<String>,
    must: Vec<String>,
    may: Vec<String>,
}

/// The attributes an entry of some classes must and may hold, by the
/// index of their attribute type.
#[derive(Clone, Debug, Default)]
pub struct Allowed {
    /// Required attribute types, with the class that requires each.
    pub must: Vec<(usize, String)>,
    /// Every attribute type allowed (required ones included).
    pub may: HashSet<usize>,
    /// True when any attribute is allowed (`extensibleObject`).
    pub any: bool,
}

/// A parsed subschema.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    attrs: Vec<AttrType>,
    attr_ix: HashMap<String, usize>,
    classes: Vec<ObjectClass>,
    class_ix: HashMap<String, usize>,
    rules: HashMap<String, ContentRule>,
}

impl Schema {
    /// Parses the values of `objectClasses`, `attributeTypes` and
    /// `dITContentRules`. Definitions that cannot be read are skipped
    /// (the checks then treat their names as unknown).
    pub fn parse(
        object_classes: &[String],
        attribute_types: &[String],
        rules: &[String],
    ) -> Schema {
        let mut s = Schema::default();
        for d in attribute_types {
            let Some(def) = Def::parse(d) else { continue };
            let a = AttrType {
                sup: def.one("SUP"),
                syntax: def
                    .one("SYNTAX")
                    .map(|x| x.split('{').next().unwrap_or_default().trim().to_string()),
                equality: def.one("EQUALITY"),
                single_value: def.flag("SINGLE-VALUE"),
                no_user_modification: def.flag("NO-USER-MODIFICATION"),
                operational: def
                    .one("USAGE")
                    .is_some_and(|u| !u.eq_ignore_ascii_case("userApplications")),
                names: def.list("NAME"),
                oid: def.oid,
            };
            let i = s.attrs.len();
            for k in a.names.iter().chain(std::iter::once(&a.oid)) {
                s.attr_ix.entry(k.to_ascii_lowercase()).or_insert(i);
            }
            s.attrs.push(a);
        }
        for d in object_classes {
            let Some(def) = Def::parse(d) else { continue };
            let kind = if def.flag("ABSTRACT") {
                ClassKind::Abstract
            } else if def.flag("AUXILIARY") {
                ClassKind::Auxiliary
            } else {
                ClassKind::Structural
            };
            let c = ObjectClass {
                names: def.list("NAME"),
                sup: def.list("SUP"),
                kind,
                must: def.list("MUST"),
                may: def.list("MAY"),
                oid: def.oid,
            };
            let i = s.classes.len();
            for k in c.names.iter().chain(std::iter::once(&c.oid)) {
                s.class_ix.entry(k.to_ascii_lowercase()).or_insert(i);
            }
            s.classes.push(c);
        }
        for d in rules {
            let Some(def) = Def::parse(d) else { continue };
            s.rules.insert(
                def.oid.to_ascii_lowercase(),
                ContentRule {
                    aux: def.list("AUX"),
                    must: def.list("MUST"),
                    may: def.list("MAY"),
                },
            );
        }
        s
    }

    /// True when the schema holds no definitions (an unreadable subschema).
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty() || self.classes.is_empty()
    }

    /// The index of attribute type `name` (a name or an OID, any case).
    pub fn attr_index(&self, name: &str) -> Option<usize> {
        self.attr_ix.get(&name.trim().to_ascii_lowercase()).copied()
    }

    /// The attribute type at `i` (from [`Schema::attr_index`]).
    pub fn attr(&self, i: usize) -> &AttrType {
        &self.attrs[i]
    }

    /// The object class `name` (a name or an OID, any case).
    pub fn class(&self, name: &str) -> Option<&ObjectClass> {
        self.class_ix
            .get(&name.trim().to_ascii_lowercase())
            .map(|&i| &self.classes[i])
    }

    /// The syntax OID of attribute type `i`, inherited through `SUP`.
    pub fn syntax(&self, i: usize) -> Option<&str> {
        self.inherited(i, |a| a.syntax.as_deref())
    }

    /// The equality rule of attribute type `i`, inherited through `SUP`.
    pub fn equality(&self, i: usize) -> Option<&str> {
        self.inherited(i, |a| a.equality.as_deref())
    }

    fn inherited<'s>(
        &'s self,
        i: usize,
        get: impl Fn(&'s AttrType) -> Option<&'s str>,
    ) -> Option<&'s str> {
        let mut cur = i;
        for _ in 0..32 {
            let a = &self.attrs[cur];
            if let Some(v) = get(a) {
                return Some(v);
            }
            cur = self.attr_index(a.sup.as_deref()?)?;
        }
        None
    }

    /// What entries of `classes` must and may hold: each class with its
    /// superclasses, the auxiliary classes and attributes of the DIT content
    /// rules of the structural ones. Unknown class names are returned in `Err`.
    pub fn allowed(&self, classes: &[String]) -> std::result::Result<Allowed, Vec<String>> {
        let mut unknown = Vec::new();
        let mut seen: HashSet<usize> = HashSet::new();
        let mut queue: Vec<usize> = Vec::new();
        for c in classes {
            match self.class_ix.get(&c.trim().to_ascii_lowercase()) {
                Some(&i) => queue.push(i),
                None => unknown.push(c.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let mut out = Allowed::default();
        let add = |out: &mut Allowed, names: &[String], must_of: Option<&str>| {
            for n in names {
                if let Some(a) = self.attr_index(n) {
                    out.may.insert(a);
                    if let Some(c) = must_of
                        && !out.must.iter().any(|(x, _)| *x == a)
                    {
                        out.must.push((a, c.to_string()));
                    }
                }
            }
        };
        while let Some(i) = queue.pop() {
            if !seen.insert(i) {
                continue;
            }
            let c = &self.classes[i];
            if c.oid == EXTENSIBLE_OBJECT {
                out.any = true;
            }
            add(&mut out, &c.must, Some(c.name()));
            add(&mut out, &c.may, None);
            for s in &c.sup {
                if let Some(&j) = self.class_ix.get(&s.to_ascii_lowercase()) {
                    queue.push(j);
                }
            }
            if let Some(r) = self.rules.get(&c.oid.to_ascii_lowercase()) {
                add(&mut out, &r.must, Some(c.name()));
                add(&mut out, &r.may, None);
                for a in &r.aux {
                    if let Some(&j) = self.class_ix.get(&a.to_ascii_lowercase()) {
                        // An auxiliary class of the rule allows, never requires.
                        let mut chain = vec![j];
                        let mut done = HashSet::new();
                        while let Some(k) = chain.pop() {
                            if !done.insert(k) {
                                continue;
                            }
                            let x = &self.classes[k];
                            add(&mut out, &x.must, None);
                            add(&mut out, &x.may, None);
                            chain.extend(
                                x.sup
                                    .iter()
                                    .filter_map(|s| self.class_ix.get(&s.to_ascii_lowercase()))
                                    .copied(),
                            );
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One RFC 4512 definition: its OID and its keywords with their values.
struct Def {
    oid: String,
    fields: Vec<(String, Vec<String>)>,
}

/// Keywords that take no value.
const FLAGS: &[&str] = &[
    "OBSOLETE",
    "SINGLE-VALUE",
    "COLLECTIVE",
    "NO-USER-MODIFICATION",
    "ABSTRACT",
    "STRUCTURAL",
    "AUXILIARY",
];

impl Def {
    fn parse(text: &str) -> Option<Def> {
        let tokens = tokenize(text);
        let mut it = tokens.into_iter().peekable();
        if it.next()? != "(" {
            return None;
        }
        let oid = it.next()?;
        if oid == ")" {
            return None;
        }
        let mut fields = Vec::new();
        while let Some(t) = it.next() {
            if t == ")" {
                break;
            }
            let key = t.to_ascii_uppercase();
            if FLAGS.contains(&key.as_str()) {
                fields.push((key, Vec::new()));
                continue;
            }
            let mut vals = Vec::new();
            match it.next() {
                Some(p) if p == "(" => {
                    for v in it.by_ref() {
                        match v.as_str() {
                            ")" => break,
                            "$" => {}
                            _ => vals.push(v),
                        }
                    }
                }
                Some(v) if v != ")" => vals.push(v),
                _ => break,
            }
            fields.push((key, vals));
        }
        Some(Def { oid, fields })
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.iter().cloned())
            .collect()
    }

    fn one(&self, key: &str) -> Option<String> {
        self.list(key).into_iter().next()
    }

    fn flag(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == key)
    }
}

/// Splits a definition into `(`, `)`, `$`, quoted strings (without their
/// quotes) and bare words.
fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '(' | ')' | '$' => {
                out.push(c.to_string());
                chars.next();
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    s.push(c);
                }
                out.push(s);
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '$' | '\'') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

/// Reads the server's subschema (one base search of the rootDSE's
/// `subschemaSubentry`); `None` when the server names none.
pub async fn read(c: &LdapConnector) -> Result<Option<Schema>> {
    let Some(sub) = c.root_dse().subschema.clone() else {
        return Ok(None);
    };
    let q = SearchQuery {
        base: Some(sub),
        scope: Scope::Base,
        filter: "(objectClass=*)".into(),
        attrs: Some(vec![
            "objectClasses".into(),
            "attributeTypes".into(),
            "dITContentRules".into(),
        ]),
        limit: None,
    };
    let Some(e) = search_all(c, &q).await?.into_iter().next() else {
        return Ok(None);
    };
    let texts = |a: &str| -> Vec<String> {
        e.values(a)
            .iter()
            .map(|v| match v {
                Value::Text(t) => t.clone(),
                Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            })
            .collect()
    };
    let s = Schema::parse(
        &texts("objectClasses"),
        &texts("attributeTypes"),
        &texts("dITContentRules"),
    );
    Ok((!s.is_empty()).then_some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schema {
        Schema::parse(
            &[
                "( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )".into(),
                "( 2.5.6.6 NAME 'person' DESC 'RFC2256: a person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( userPassword $ telephoneNumber $ description ) )".into(),
                "( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' SUP person STRUCTURAL MAY ( mail $ uid $ employeeNumber ) )".into(),
                "( 1.3.6.1.4.1.1466.101.120.111 NAME 'extensibleObject' SUP top AUXILIARY )".into(),
                "( 9.9.1 NAME 'aux1' AUXILIARY MUST ( secretary ) MAY ( roomNumber ) )".into(),
            ],
            &[
                "( 2.5.4.0 NAME 'objectClass' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )".into(),
                "( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )".into(),
                "( 2.5.4.4 NAME ( 'sn' 'surname' ) SUP name )".into(),
                "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )".into(),
                "( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'rfc822Mailbox' ) EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )".into(),
                "( 1.3.6.1.1.16.4 NAME 'entryUUID' EQUALITY UUIDMatch SYNTAX 1.3.6.1.1.16.1 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )".into(),
                "( 9.9.2 NAME 'roomNumber' SUP name )".into(),
                "( 9.9.3 NAME 'secretary' SUP name )".into(),
                "garbage".into(),
            ],
            &["( 2.5.6.6 AUX aux1 MAY description )".into()],
        )
    }

    proptest::proptest! {
        /// Whatever a server sends as definitions, parsing and lookups never panic.
        #[test]
        fn any_definition_text_parses_without_panic(
            defs in proptest::collection::vec(".{0,80}", 0..6),
            name in ".{0,20}",
        ) {
            let mut with_parens: Vec<String> = defs.iter().map(|d| format!("( {d} )")).collect();
            with_parens.extend(defs.iter().cloned());
            let s = Schema::parse(&with_parens, &with_parens, &with_parens);
            if let Some(i) = s.attr_index(&name) {
                let _ = (s.syntax(i), s.equality(i), s.attr(i).name());
            }
            let _ = s.allowed(std::slice::from_ref(&name));
            let _ = s.class(&name);
        }
    }

    #[test]
    fn a_sup_cycle_ends() {
        let s = Schema::parse(
            &[
                "( 1 NAME 'a' SUP b MUST x )".into(),
                "( 2 NAME 'b' SUP a MAY y )".into(),
            ],
            &["( 3 NAME 'x' SUP y )".into(), "( 4 NAME 'y' SUP x )".into()],
            &[],
        );
        let x = s.attr_index("x").unwrap();
        assert_eq!(s.syntax(x), None);
        assert_eq!(s.allowed(&["a".into()]).unwrap().may.len(), 2);
    }

    #[test]
    fn syntax_and_equality_are_inherited_through_sup() {
        let s = sample();
        let sn = s.attr_index("SURNAME").unwrap();
        assert_eq!(s.attr_index("2.5.4.4"), Some(sn));
        assert_eq!(s.syntax(sn), Some("1.3.6.1.4.1.1466.115.121.1.15"));
        assert_eq!(s.equality(sn), Some("caseIgnoreMatch"));
        let uuid = s.attr_index("entryuuid").unwrap();
        assert!(s.attr(uuid).single_value && s.attr(uuid).no_user_modification);
        assert!(s.attr(uuid).operational && !s.attr(sn).operational);
        assert_eq!(
            s.syntax(s.attr_index("mail").unwrap()),
            Some("1.3.6.1.4.1.1466.115.121.1.26")
        );
        assert!(s.attr_index("nosuch").is_none());
    }

    #[test]
    fn classes_inherit_must_and_may_and_content_rules_add_aux() {
        let s = sample();
        let a = s.allowed(&["INETORGPERSON".into()]).unwrap();
        let must: Vec<&str> = a.must.iter().map(|(i, _)| s.attr(*i).name()).collect();
        for m in ["sn", "cn", "objectClass"] {
            assert!(must.contains(&m), "{must:?}");
        }
        assert!(a.may.contains(&s.attr_index("mail").unwrap()));
        // the content rule of person (a superclass) allows aux1's attributes, never requires them
        assert!(a.may.contains(&s.attr_index("roomNumber").unwrap()));
        assert!(a.may.contains(&s.attr_index("secretary").unwrap()));
        assert!(!must.contains(&"secretary"));
        assert!(!a.any);
        let x = s
            .allowed(&["person".into(), "extensibleObject".into()])
            .unwrap();
        assert!(x.any);
        assert_eq!(
            s.allowed(&["person".into(), "nosuchClass".into()])
                .unwrap_err(),
            ["nosuchClass"]
        );
    }
}
