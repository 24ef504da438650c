//! The LDIF connector: a file of LDIF content records (RFC 2849) used as a
//! small directory, as a sync source or target, with no server involved.
//!
//! It is a flat file, not a server: there is no schema, and a new entry's
//! parent need not exist. Entries are keyed by DN compared the way
//! [`dn_eq`] does (case-insensitive, blanks around `=` ignored). The anchor
//! is `entryUUID`: `create` stores a random (v4) one when the attributes
//! bring none, so sync links survive renames and moves. Entries read
//! without one get a UUID derived from their DN (v5 in the X.500 name
//! space), stable from one read to the next, and kept in the file from the
//! next write on. `entryUUID` cannot be modified.
//!
//! Like a directory: delete refuses entries with children; rename and move
//! carry the whole subtree; a rename replaces the naming value; `member`
//! values naming a renamed, moved or deleted entry follow it (as AD and
//! OpenLDAP's refint overlay do). Adding a value that is present or
//! deleting one that is absent is not an error.
//!
//! Reading accepts `version: 1`, `#` comments, folded lines, `attr: value`
//! and `attr:: base64`; a `changetype: add` record (as AD's `ldifde`
//! writes) reads as the entry it adds; values by URL (`attr:< file://`)
//! and other change records (`changetype: modify`, ...) are refused with
//! the line. Writing keeps the entries in
//! file order (new ones at the end) and writes each record with
//! [`crate::model::ldif_write`] (the shell's `--format ldif` writer too):
//! base64 for binary and unsafe values, folded at 76 columns; comments are
//! not kept. DNs are keyed by [`Dn::key`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::file::{self, Data, FileStore, Table};
use crate::connector::{Change, Connector, Error, Result, Scope, SearchQuery, Sink, TestReport};
use crate::model::dn::{Dn, dn_eq, dn_escape, rdn_values};
use crate::model::filter::Filter;
use crate::model::ldif_write;
use crate::model::value::is_binary;
use crate::model::{Entry, Value};

/// The anchor attribute.
const ANCHOR: &str = "entryUUID";

/// Format state: entryUUID (lower case) to slot.
#[derive(Clone, Debug, Default)]
struct Meta {
    uuids: HashMap<String, usize>,
}

/// An LDIF file opened as a connection.
pub struct LdifConnector {
    store: FileStore<Meta>,
}

impl LdifConnector {
    /// Opens (reads) the file. A missing file is an empty directory, but
    /// reading it (search, get, a sync step's source) is an error naming
    /// the path, unless the connection is a sync step's target; it is
    /// created on the first write. Errors name the file and line.
    pub fn open(path: impl AsRef<Path>) -> Result<LdifConnector> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let label = path.display().to_string();
        let load: file::Load<Meta> = Box::new(|raw, label| match raw {
            Some(bytes) => parse(
                bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes),
                label,
            ),
            None => Ok(Data {
                table: Table::new(),
                meta: Meta::default(),
            }),
        });
        Ok(LdifConnector {
            store: FileStore::open(path, label, load, render)?,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        self.store.read_any(|d| d.table.len())
    }

    /// True when the file holds no entry.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

// ---------------------------------------------------------------- reading

/// One unfolded line and the physical line it starts on.
struct Line {
    no: usize,
    text: String,
}

/// Unfolds lines and groups them into records (comments dropped).
fn records(text: &str, label: &str) -> Result<Vec<Vec<Line>>> {
    let mut out: Vec<Vec<Line>> = Vec::new();
    let mut cur: Vec<Line> = Vec::new();
    let mut in_comment = false;
    for (i, raw) in text.split('\n').enumerate() {
        let no = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = l.strip_prefix(' ') {
            if in_comment {
                continue;
            }
            match cur.last_mut() {
                Some(last) => last.text.push_str(rest),
                None => {
                    return Err(err_at(
                        label,
                        no,
                        "a continuation line (starting with a space) with no line to continue",
                    ));
                }
            }
            continue;
        }
        in_comment = false;
        if l.is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if l.starts_with('#') {
            in_comment = true;
        } else {
            cur.push(Line {
                no,
                text: l.to_string(),
            });
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn err_at(label: &str, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Other(format!("{label} line {line}: {msg}"))
}

/// True for names LDIF allows: letters, digits, `-`, `;` options, OIDs.
fn valid_attr_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.' | '_'))
}

/// Splits `attr: value` / `attr:: base64`; refuses `attr:< url`.
fn attr_value(line: &Line, label: &str) -> Result<(String, Vec<u8>)> {
    let Some((name, rest)) = line.text.split_once(':') else {
        let shown: String = line.text.chars().take(40).collect();
        return Err(err_at(
            label,
            line.no,
            format!("expected 'attribute: value', found '{shown}'"),
        ));
    };
    let name = name.trim_end();
    if !valid_attr_name(name) {
        return Err(err_at(
            label,
            line.no,
            format!("'{name}' is not an attribute name"),
        ));
    }
    if let Some(b64) = rest.strip_prefix(':') {
        let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = B64
            .decode(clean.as_bytes())
            .map_err(|e| err_at(label, line.no, format!("'{name}': bad base64 value ({e})")))?;
        return Ok((name.to_string(), bytes));
    }
    if rest.starts_with('<') {
        return Err(err_at(
            label,
            line.no,
            format!(
                "'{name}:<' (a value read from a URL or file) is not supported; put the value in the file, base64-encoded as '{name}:: ...'"
            ),
        ));
    }
    Ok((
        name.to_string(),
        rest.trim_start_matches(' ').as_bytes().to_vec(),
    ))
}

/// A stable UUID for an entry read without entryUUID.
fn derived_uuid(key: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_X500, key.as_bytes()).to_string()
}

fn to_value(name: &str, bytes: Vec<u8>) -> Value {
    if is_binary(name) {
        return Value::Binary(bytes);
    }
    match String::from_utf8(bytes) {
        Ok(s) => Value::Text(s),
        Err(e) => Value::Binary(e.into_bytes()),
    }
}

/// Reads the whole file.
fn parse(bytes: &[u8], label: &str) -> Result<Data<Meta>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        err_at(
            label,
            line,
            "not valid UTF-8 (values that are not UTF-8 must be base64-encoded with '::')",
        )
    })?;
    let mut table = Table::new();
    let mut meta = Meta::default();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (n, mut rec) in records(text, label)?.into_iter().enumerate() {
        if n == 0
            && let Some(first) = rec.first()
            && first.text.to_ascii_lowercase().starts_with("version:")
        {
            let (_, v) = attr_value(first, label)?;
            if String::from_utf8_lossy(&v).trim() != "1" {
                return Err(err_at(
                    label,
                    first.no,
                    "unsupported LDIF version (only 'version: 1' exists)",
                ));
            }
            rec.remove(0);
            if rec.is_empty() {
                continue;
            }
        }
        let (entry, line) = parse_record(&rec, label)?;
        let parsed = Dn::parse(&entry.dn).map_err(|e| err_at(label, line, e))?;
        let key = parsed.key();
        if let Some(prev) = first_line.get(&key) {
            return Err(err_at(
                label,
                line,
                format!("duplicate entry '{}' (first on line {prev})", entry.dn),
            ));
        }
        first_line.insert(key.clone(), line);
        let mut entry = entry;
        let uuid = match entry.first(ANCHOR) {
            Some(u) => u,
            None => {
                let u = derived_uuid(&key);
                entry.push(ANCHOR, [Value::Text(u.clone())]);
                u
            }
        };
        if meta.uuids.contains_key(&uuid.to_lowercase()) {
            return Err(err_at(
                label,
                line,
                format!("entryUUID {uuid} is used by another entry too"),
            ));
        }
        entry.anchor = Some(uuid.clone());
        let slot = table.insert(key, entry);
        meta.uuids.insert(uuid.to_lowercase(), slot);
    }
    Ok(Data { table, meta })
}

/// One content record: `dn:` first, then attribute lines.
fn parse_record(rec: &[Line], label: &str) -> Result<(Entry, usize)> {
    let Some(first) = rec.first() else {
        return Err(Error::Other(format!("{label}: empty record")));
    };
    let (name, dn) = attr_value(first, label)?;
    if !name.eq_ignore_ascii_case("dn") {
        return Err(err_at(
            label,
            first.no,
            format!("a record must start with 'dn:', found '{name}:'"),
        ));
    }
    let dn =
        String::from_utf8(dn).map_err(|_| err_at(label, first.no, "the DN is not valid UTF-8"))?;
    if dn.trim().is_empty() {
        return Err(err_at(
            label,
            first.no,
            "empty DN (the root DSE is not an entry)",
        ));
    }
    let mut entry = Entry::new(dn.trim());
    for (i, line) in rec[1..].iter().enumerate() {
        let (name, value) = attr_value(line, label)?;
        let lower = name.to_ascii_lowercase();
        // `changetype: add` right after the DN (what AD's ldifde writes)
        // adds exactly the entry its attribute lines describe.
        if i == 0 && lower == "changetype" && value.trim_ascii().eq_ignore_ascii_case(b"add") {
            continue;
        }
        if lower == "changetype" || lower == "control" {
            return Err(err_at(
                label,
                line.no,
                format!(
                    "change records ('{name}: {}') are not supported: this connector reads content LDIF (plain entries); apply changes with ldapmodify",
                    String::from_utf8_lossy(&value)
                ),
            ));
        }
        if lower == "dn" {
            return Err(err_at(
                label,
                line.no,
                "a second 'dn:' in one record (a blank line must separate entries)",
            ));
        }
        entry.push(&name, [to_value(&name, value)]);
    }
    Ok((entry, first.no))
}

// ---------------------------------------------------------------- writing

/// Writes all entries (the records as [`ldif_write`] writes them).
fn render(d: &Data<Meta>, _label: &str) -> Result<Vec<u8>> {
    let mut out = String::from("version: 1\n");
    for e in d.table.entries() {
        out.push('\n');
        ldif_write::write_entry(&mut out, e);
    }
    Ok(out.into_bytes())
}

// ---------------------------------------------------------------- operations

fn parse_dn(dn: &str) -> Result<Dn> {
    let parsed = Dn::parse(dn).map_err(|e| Error::usage(e.to_string()))?;
    if parsed.is_empty() {
        return Err(Error::usage("an empty DN names no entry"));
    }
    Ok(parsed)
}

/// Adds the RDN's values to the entry when missing.
fn add_naming_values(entry: &mut Entry, rdn: &str) {
    for (attr, value) in rdn_values(rdn) {
        let v = Value::Text(value);
        if !entry.values(&attr).iter().any(|x| file::same_value(x, &v)) {
            entry.push(&attr, [v]);
        }
    }
}

fn check_attr_name(dn: &str, name: &str) -> Result<()> {
    if valid_attr_name(name) && !name.eq_ignore_ascii_case("dn") {
        Ok(())
    } else {
        Err(Error::object(
            dn,
            format!("'{name}' is not an attribute name LDIF can hold"),
            None,
        ))
    }
}

/// The slot named by a DN, an entryUUID, or (failing those) a unique
/// uid / cn / sAMAccountName / userPrincipalName / mail value.
fn find(d: &Data<Meta>, identity: &str) -> Result<Option<usize>> {
    let id = identity.trim();
    if id.contains('=')
        && let Ok(dn) = Dn::parse(id)
        && !dn.is_empty()
    {
        return Ok(d.table.find_ci(&dn.key()).first().copied());
    }
    if let Ok(u) = uuid::Uuid::parse_str(id.trim_start_matches('{').trim_end_matches('}'))
        && let Some(&slot) = d.meta.uuids.get(&u.to_string())
    {
        return Ok(Some(slot));
    }
    if let Some(&slot) = d.meta.uuids.get(&id.to_lowercase()) {
        return Ok(Some(slot));
    }
    let want = Value::Text(id.to_string());
    let hits: Vec<(usize, &Entry)> = d
        .table
        .iter()
        .filter(|(_, e)| {
            ["uid", "sAMAccountName", "userPrincipalName", "cn", "mail"]
                .iter()
                .any(|a| e.values(a).iter().any(|v| file::same_value(v, &want)))
        })
        .take(4)
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [(slot, _)] => Ok(Some(*slot)),
        many => Err(Error::Ambiguous {
            identity: identity.to_string(),
            count: many.len(),
            sample: many
                .iter()
                .take(3)
                .map(|(_, e)| e.dn.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

fn require(d: &Data<Meta>, identity: &str) -> Result<(usize, Entry)> {
    find(d, identity)?
        .and_then(|s| d.table.get(s).map(|e| (s, e.clone())))
        .ok_or_else(|| Error::NotFound(identity.to_string()))
}

/// True when `dn` is in scope of a search at `base`.
fn in_scope(dn: &Dn, base: &Dn, scope: Scope) -> bool {
    match scope {
        Scope::Base => dn.rdns().len() == base.rdns().len() && dn.is_under(base),
        Scope::One => dn.rdns().len() == base.rdns().len() + 1 && dn.is_under(base),
        Scope::Sub => dn.is_under(base),
    }
}

/// Moves the subtree at `old` to `new_dn`: checks that no new DN is taken,
/// then rewrites the DNs (order kept) and `member` values naming them.
fn rebase(d: &mut Data<Meta>, old: &Dn, new_dn: &str) -> Result<()> {
    parse_dn(new_dn)?;
    let mut moves: Vec<(usize, String, String)> = Vec::new();
    for (slot, e) in d.table.iter() {
        let Ok(dn) = Dn::parse(&e.dn) else { continue };
        if !dn.is_under(old) {
            continue;
        }
        let depth = dn.rdns().len() - old.rdns().len();
        let mut parts: Vec<String> = dn.rdns()[..depth].to_vec();
        parts.push(new_dn.to_string());
        let text = parts.join(",");
        let key = parse_dn(&text)?.key();
        moves.push((slot, text, key));
    }
    for (_, text, key) in &moves {
        if let Some(&other) = d.table.find_ci(key).first()
            && !moves.iter().any(|(s, _, _)| *s == other)
        {
            return Err(Error::object(text, "already exists", Some(68)));
        }
    }
    for (slot, text, key) in moves {
        if let Some(e) = d.table.get_mut(slot) {
            e.dn = text;
        }
        d.table.rekey(slot, key);
    }
    rewrite_members(d, old, Some(new_dn));
    Ok(())
}

/// Follows a rename/move (`Some(new base)`) or a delete (`None`) in every
/// `member` value that names an entry at or below `old`.
fn rewrite_members(d: &mut Data<Meta>, old: &Dn, new_base: Option<&str>) {
    let slots: Vec<usize> = d
        .table
        .iter()
        .filter(|(_, e)| e.has("member"))
        .map(|(s, _)| s)
        .collect();
    for slot in slots {
        let Some(e) = d.table.get_mut(slot) else {
            continue;
        };
        let Some(attr) = e.attr("member") else {
            continue;
        };
        let name = attr.name.clone();
        let mut changed = false;
        let mut values = Vec::with_capacity(attr.values.len());
        for v in &attr.values {
            let parsed = std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| Dn::parse(s).ok());
            match parsed {
                Some(dn) if !dn.is_empty() && dn.is_under(old) => {
                    changed = true;
                    if let Some(base) = new_base {
                        let depth = dn.rdns().len() - old.rdns().len();
                        let mut parts: Vec<String> = dn.rdns()[..depth].to_vec();
                        parts.push(base.to_string());
                        values.push(Value::Text(parts.join(",")));
                    }
                }
                _ => values.push(v.clone()),
            }
        }
        if changed {
            file::apply_change(e, &Change::Replace(name.clone(), values), &name);
        }
    }
}

/// The DN to store for a member identity: a DN as given, else the DN of
/// the entry the identity names.
fn member_dn(d: &Data<Meta>, member: &str) -> Result<String> {
    let m = member.trim();
    if m.contains('=') && Dn::parse(m).is_ok_and(|x| !x.is_empty()) {
        return Ok(m.to_string());
    }
    Ok(require(d, member)?.1.dn)
}

#[async_trait]
impl Connector for LdifConnector {
    fn kind(&self) -> &'static str {
        "ldif"
    }

    fn describe(&self) -> String {
        self.store.label().to_string()
    }

    fn profile(&self) -> Result<serde_json::Value> {
        Ok(serde_json::json!({ "path": file::shown_path(self.store.path()) }))
    }

    async fn test(&self) -> Result<TestReport> {
        let mut r = self.store.test_report("ldif")?;
        r.naming_contexts = self.store.read_any(|d| {
            let keys: std::collections::HashSet<&str> =
                d.table.iter().filter_map(|(s, _)| d.table.key(s)).collect();
            d.table
                .entries()
                .filter(|e| {
                    Dn::parse(&e.dn)
                        .map(|dn| !keys.contains(dn.parent().key().as_str()))
                        .unwrap_or(false)
                })
                .map(|e| e.dn.clone())
                .take(20)
                .collect()
        })?;
        Ok(r)
    }

    async fn search(&self, q: &SearchQuery, sink: &mut Sink<'_>) -> Result<()> {
        let filter = Filter::parse(&q.filter).map_err(|e| Error::usage(e.to_string()))?;
        let base = match q.base.as_deref().map(str::trim) {
            Some(b) if !b.is_empty() => {
                Some(Dn::parse(b).map_err(|e| Error::usage(e.to_string()))?)
            }
            _ => None,
        };
        let limit = q.limit.unwrap_or(usize::MAX);
        let found: Vec<Entry> = self.store.read(|d| {
            d.table
                .entries()
                .filter(|e| match &base {
                    None => true,
                    Some(b) => Dn::parse(&e.dn).is_ok_and(|dn| in_scope(&dn, b, q.scope)),
                })
                .filter(|e| filter.matches(e))
                .take(limit)
                .map(|e| file::project(e, q.attrs.as_deref()))
                .collect()
        })?;
        for e in found {
            if !sink(e)? {
                break;
            }
        }
        Ok(())
    }

    async fn attribute_names(&self) -> Result<Vec<String>> {
        self.store.read(|d| {
            let mut names: Vec<String> = Vec::new();
            for e in d.table.entries() {
                for a in e.attributes() {
                    if !names.iter().any(|n| n.eq_ignore_ascii_case(&a.name)) {
                        names.push(a.name.clone());
                    }
                }
            }
            names
        })
    }

    async fn get(&self, identity: &str) -> Result<Option<Entry>> {
        self.store
            .read(|d| Ok(find(d, identity)?.and_then(|s| d.table.get(s).cloned())))?
    }

    async fn create(&self, dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
        let parsed = parse_dn(dn)?;
        let key = parsed.key();
        self.store.write(|d| {
            if let Some(&slot) = d.table.find_ci(&key).first() {
                let existing = d.table.get(slot).map(|e| e.dn.clone()).unwrap_or_default();
                return Err(Error::object(existing, "already exists", Some(68)));
            }
            let mut entry = Entry::new(dn.trim());
            for (name, values) in attrs {
                check_attr_name(dn, name)?;
                let fresh: Vec<Value> = values
                    .iter()
                    .filter(|v| !entry.values(name).iter().any(|x| file::same_value(x, v)))
                    .cloned()
                    .collect();
                if !fresh.is_empty() {
                    entry.push(name, fresh);
                }
            }
            add_naming_values(&mut entry, parsed.rdn().unwrap_or_default());
            let uuid = match entry.values(ANCHOR) {
                [] => {
                    let u = uuid::Uuid::new_v4().to_string();
                    entry.push(ANCHOR, [Value::Text(u.clone())]);
                    u
                }
                [one] => {
                    let text = one.display(ANCHOR).unwrap_or_default();
                    uuid::Uuid::parse_str(&text).map_err(|_| {
                        Error::object(dn, format!("entryUUID '{text}' is not a UUID"), None)
                    })?;
                    text
                }
                _ => return Err(Error::object(dn, "entryUUID takes one value", None)),
            };
            if let Some(&other) = d.meta.uuids.get(&uuid.to_lowercase()) {
                let who = d.table.get(other).map(|e| e.dn.clone()).unwrap_or_default();
                return Err(Error::object(
                    dn,
                    format!("entryUUID {uuid} is already used by '{who}'"),
                    Some(68),
                ));
            }
            entry.anchor = Some(uuid.clone());
            let slot = d.table.insert(key.clone(), entry.clone());
            d.meta.uuids.insert(uuid.to_lowercase(), slot);
            Ok(entry)
        })
    }

    async fn modify(&self, identity: &str, changes: &[Change]) -> Result<()> {
        self.store.write(|d| {
            let (slot, mut entry) = require(d, identity)?;
            for ch in changes {
                let name = match ch {
                    Change::Replace(n, _) | Change::Add(n, _) | Change::Delete(n, _) => n,
                };
                check_attr_name(&entry.dn, name)?;
                file::apply_change(&mut entry, ch, name);
            }
            // Writing the same entryUUID is fine; changing it is not.
            let before = d.table.get(slot).map(|e| e.values(ANCHOR).to_vec());
            if before.as_deref() != Some(entry.values(ANCHOR)) {
                return Err(Error::object(
                    &entry.dn,
                    "entryUUID cannot be changed (it is the entry's anchor)",
                    Some(19),
                ));
            }
            let rdn = Dn::parse(&entry.dn)
                .ok()
                .and_then(|p| p.rdn().map(str::to_string))
                .unwrap_or_default();
            for (attr, value) in rdn_values(&rdn) {
                let v = Value::Text(value);
                if !entry.values(&attr).iter().any(|x| file::same_value(x, &v)) {
                    return Err(Error::object(
                        &entry.dn,
                        format!(
                            "the naming value {attr}={} cannot be removed (rename the entry instead)",
                            v.display(&attr).unwrap_or_default()
                        ),
                        Some(67),
                    ));
                }
            }
            if let Some(e) = d.table.get_mut(slot) {
                *e = entry;
            }
            Ok(())
        })
    }

    async fn rename(&self, identity: &str, new_rdn: &str) -> Result<String> {
        self.store.write(|d| {
            let (slot, entry) = require(d, identity)?;
            let old = parse_dn(&entry.dn)?;
            let old_rdn = old.rdn().unwrap_or_default().to_string();
            let new_rdn = if new_rdn.contains('=') {
                let p = Dn::parse(new_rdn).map_err(|e| Error::usage(e.to_string()))?;
                if p.rdns().len() != 1 {
                    return Err(Error::usage(format!(
                        "'{new_rdn}' is not a single RDN; use move() to change the parent"
                    )));
                }
                new_rdn.trim().to_string()
            } else {
                let attr = old_rdn.split_once('=').map(|(a, _)| a).unwrap_or("cn");
                format!("{}={}", attr.trim(), dn_escape(new_rdn))
            };
            let parent = old.parent();
            let new_dn = if parent.is_empty() {
                new_rdn.clone()
            } else {
                format!("{new_rdn},{parent}")
            };
            rebase(d, &old, &new_dn)?;
            if let Some(e) = d.table.get_mut(slot) {
                let new_avas = rdn_values(&new_rdn);
                for (attr, value) in rdn_values(&old_rdn) {
                    let v = Value::Text(value);
                    let kept = new_avas.iter().any(|(a, nv)| {
                        a.eq_ignore_ascii_case(&attr)
                            && file::same_value(&v, &Value::Text(nv.clone()))
                    });
                    if !kept {
                        file::apply_change(e, &Change::Delete(attr.clone(), vec![v]), &attr);
                    }
                }
                add_naming_values(e, &new_rdn);
            }
            Ok(new_dn)
        })
    }

    async fn move_to(&self, identity: &str, new_parent: &str) -> Result<String> {
        let parent = parse_dn(new_parent)?;
        self.store.write(|d| {
            let (_, entry) = require(d, identity)?;
            let old = parse_dn(&entry.dn)?;
            if parent.is_under(&old) {
                return Err(Error::object(
                    &entry.dn,
                    format!("cannot move an entry below itself ('{new_parent}')"),
                    Some(53),
                ));
            }
            let new_dn = format!("{},{}", old.rdn().unwrap_or_default(), new_parent.trim());
            rebase(d, &old, &new_dn)?;
            Ok(new_dn)
        })
    }

    /// Enables an account: removes `pwdAccountLockedTime` (the OpenLDAP
    /// ppolicy convention, which an LDIF file imported into slapd keeps).
    async fn enable(&self, identity: &str) -> Result<()> {
        self.modify(
            identity,
            &[Change::Delete("pwdAccountLockedTime".into(), Vec::new())],
        )
        .await
    }

    /// Disables an account: `pwdAccountLockedTime: 000001010000Z` (locked
    /// until enabled, as OpenLDAP's ppolicy reads it).
    async fn disable(&self, identity: &str) -> Result<()> {
        let locked = vec![crate::model::Value::Text("000001010000Z".into())];
        self.modify(
            identity,
            &[Change::Replace("pwdAccountLockedTime".into(), locked)],
        )
        .await
    }

    async fn delete(&self, identity: &str) -> Result<()> {
        self.store.write(|d| {
            let (slot, entry) = require(d, identity)?;
            let dn = parse_dn(&entry.dn)?;
            let children = d
                .table
                .iter()
                .filter(|(s, e)| *s != slot && Dn::parse(&e.dn).is_ok_and(|x| x.is_under(&dn)))
                .count();
            if children > 0 {
                return Err(Error::object(
                    &entry.dn,
                    format!(
                        "not allowed on non-leaf (the entry has children: {children} below it)"
                    ),
                    Some(66),
                ));
            }
            d.table.remove(slot);
            d.meta.uuids.retain(|_, s| *s != slot);
            rewrite_members(d, &dn, None);
            Ok(())
        })
    }

    async fn members(&self, group: &str) -> Result<Vec<String>> {
        self.store.read(|d| {
            let (_, g) = require(d, group)?;
            Ok(g.values("member")
                .iter()
                .filter_map(|v| v.display("member"))
                .collect())
        })?
    }

    async fn add_member(&self, group: &str, member: &str) -> Result<()> {
        self.store.write(|d| {
            let (slot, _) = require(d, group)?;
            let m = member_dn(d, member)?;
            if let Some(g) = d.table.get_mut(slot) {
                let present = g
                    .values("member")
                    .iter()
                    .any(|v| v.display("member").is_some_and(|x| dn_eq(&x, &m)));
                if !present {
                    g.push("member", [Value::Text(m)]);
                }
            }
            Ok(())
        })
    }

    async fn remove_member(&self, group: &str, member: &str) -> Result<()> {
        self.store.write(|d| {
            let (slot, _) = require(d, group)?;
            let m = member_dn(d, member)?;
            if let Some(g) = d.table.get_mut(slot) {
                let Some(attr) = g.attr("member") else {
                    return Ok(());
                };
                let name = attr.name.clone();
                let kept: Vec<Value> = attr
                    .values
                    .iter()
                    .filter(|v| !v.display("member").is_some_and(|x| dn_eq(&x, &m)))
                    .cloned()
                    .collect();
                file::apply_change(g, &Change::Replace(name.clone(), kept), &name);
            }
            Ok(())
        })
    }

    fn mark_as_target(&self) {
        self.store.set_target();
    }

    fn begin_batch(&self) {
        self.store.begin_batch();
    }

    async fn flush(&self) -> Result<()> {
        self.store.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    const SAMPLE: &str = "version: 1\n\
# a comment that is\n \
 folded\n\
\n\
dn: dc=example,dc=com\n\
objectClass: domain\n\
dc: example\n\
\n\
\n\
dn: ou=people,dc=example,dc=com\n\
objectClass: organizationalUnit\n\
ou: people\n\
\n\
dn: cn=Ann Lee,ou=people,dc=example,dc=com\n\
objectClass: person\n\
cn: Ann Lee\n\
sn: Lee\n\
description: a long value that is folded over\n  two lines\n\
jpegPhoto:: /9j/AA==\n\
entryUUID: 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n\
\n\
dn:: Y249Wm/DqyxvdT1wZW9wbGUsZGM9ZXhhbXBsZSxkYz1jb20=\n\
objectClass: person\n\
cn:: Wm/Dqw==\n\
sn: Zoe\n\
\n\
dn: cn=staff,dc=example,dc=com\n\
objectClass: groupOfNames\n\
cn: staff\n\
member: cn=Ann Lee,ou=people,dc=example,dc=com\n";

    fn open_sample(dir: &Path) -> (PathBuf, LdifConnector) {
        let p = dir.join("dir.ldif");
        std::fs::write(&p, SAMPLE).expect("write");
        let c = LdifConnector::open(&p).expect("open");
        (p, c)
    }

    fn dns(c: &LdifConnector, base: Option<&str>, scope: Scope, filter: &str) -> Vec<String> {
        let q = SearchQuery {
            base: base.map(String::from),
            scope,
            filter: filter.into(),
            ..SearchQuery::default()
        };
        let mut out = Vec::new();
        block(c.search(&q, &mut |e| {
            out.push(e.dn);
            Ok(true)
        }))
        .expect("search");
        out
    }

    fn all(c: &LdifConnector) -> Vec<Entry> {
        let mut out = Vec::new();
        block(c.search(&SearchQuery::default(), &mut |e| {
            out.push(e);
            Ok(true)
        }))
        .expect("search");
        out
    }

    #[test]
    fn reads_content_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, c) = open_sample(dir.path());
        let entries = all(&c);
        assert_eq!(entries.len(), 5);
        let ann = &entries[2];
        assert_eq!(
            ann.first("description").as_deref(),
            Some("a long value that is folded over two lines")
        );
        assert_eq!(
            ann.values("jpegPhoto"),
            &[Value::Binary(vec![0xff, 0xd8, 0xff, 0])]
        );
        assert_eq!(
            ann.anchor.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
        );
        assert_eq!(entries[3].dn, "cn=Zoë,ou=people,dc=example,dc=com");
        assert_eq!(entries[3].first("cn").as_deref(), Some("Zoë"));
        // Entries without entryUUID get one derived from the DN: stable.
        let again = LdifConnector::open(c.path()).expect("reopen");
        assert_eq!(all(&again)[0].anchor, entries[0].anchor);
        assert!(entries[0].has("entryUUID"));
        let t = block(c.test()).expect("test");
        assert!(t.reachable);
        assert_eq!(t.naming_contexts, ["dc=example,dc=com"]);
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad.ldif");
        let cases: &[(&str, &str)] = &[
            (
                "dn: cn=a,dc=x\nchangetype: modify\n",
                "line 2: change records",
            ),
            (
                "dn: cn=a,dc=x\njpegPhoto:< file:///tmp/x\n",
                "line 2: 'jpegPhoto:<'",
            ),
            (
                "version: 1\n\ncn: a\n",
                "line 3: a record must start with 'dn:'",
            ),
            (" x\n", "line 1: a continuation line"),
            ("dn: cn=a,dc=x\ncn:: !!!\n", "line 2: 'cn': bad base64"),
            (
                "dn: cn=a,dc=x\n\ndn: CN=A, dc=X\n",
                "line 3: duplicate entry 'CN=A, dc=X' (first on line 1)",
            ),
            ("dn: cn=a,dc=x\ndn: cn=b,dc=x\n", "line 2: a second 'dn:'"),
            ("version: 2\n", "line 1: unsupported LDIF version"),
            ("dn: cn=a,,dc=x\n", "line 1: bad DN"),
            (
                "dn: cn=a,dc=x\nno colon here\n",
                "line 2: expected 'attribute: value'",
            ),
            (
                "dn: cn=a,dc=x\nc n: a\n",
                "line 2: 'c n' is not an attribute name",
            ),
            ("dn:\n", "line 1: empty DN"),
        ];
        for (content, want) in cases {
            std::fs::write(&p, content).expect("write");
            let e = LdifConnector::open(&p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| panic!("{content:?} should fail"));
            assert!(e.starts_with(&p.display().to_string()), "{e}");
            assert!(e.contains(want), "{e} / {want}");
        }
        std::fs::write(&p, b"dn: cn=a,dc=x\ncn: \xff\n").expect("write");
        let e = LdifConnector::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn round_trip_base64_and_folding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, c) = open_sample(dir.path());
        block(c.create(
            "cn=odd,dc=example,dc=com",
            &[
                ("objectClass".into(), vec![text("person")]),
                (
                    "sn".into(),
                    vec![
                        text(" leading"),
                        text("trailing "),
                        text(":colon"),
                        text("<lt"),
                    ],
                ),
                (
                    "description".into(),
                    vec![text("line1\nline2"), text(&"x".repeat(200))],
                ),
                ("givenName".into(), vec![text("Müller")]),
                ("initials".into(), vec![text("")]),
                (
                    "objectGUID".into(),
                    vec![Value::Binary(b"ABCDEFGHIJKLMNOP".to_vec())],
                ),
            ],
        ))
        .expect("create");
        let written = std::fs::read_to_string(&p).expect("read");
        assert!(
            written.starts_with("version: 1\n\ndn: dc=example,dc=com\n"),
            "{written}"
        );
        assert!(written.lines().all(|l| l.len() <= 76), "{written}");
        assert!(written.contains("sn:: IGxlYWRpbmc=\n"), "{written}");
        assert!(written.contains("givenName:: TcO8bGxlcg==\n"), "{written}");
        assert!(written.contains("initials:\n"), "{written}");
        assert!(written.contains("\ndn:: Y249Wm/Dq"), "{written}");
        assert!(
            written.contains("objectGUID:: QUJDREVGR0hJSktMTU5PUA==\n"),
            "{written}"
        );
        let before = all(&c);
        let again = LdifConnector::open(&p).expect("reopen");
        assert_eq!(before, all(&again));
        let odd = block(again.get("cn=odd,dc=example,dc=com"))
            .expect("get")
            .expect("odd");
        assert_eq!(odd.values("sn").len(), 4);
        assert_eq!(odd.values("description")[1], text(&"x".repeat(200)));
        assert_eq!(odd.first("cn").as_deref(), Some("odd"));
    }

    #[test]
    fn search_by_base_scope_filter_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, c) = open_sample(dir.path());
        let base = Some("OU=People, DC=example,DC=com");
        assert_eq!(
            dns(&c, base, Scope::Base, ""),
            ["ou=people,dc=example,dc=com"]
        );
        assert_eq!(dns(&c, base, Scope::One, "").len(), 2);
        assert_eq!(dns(&c, base, Scope::Sub, "").len(), 3);
        assert_eq!(dns(&c, Some("dc=example,dc=com"), Scope::One, "").len(), 2);
        assert_eq!(dns(&c, None, Scope::Sub, "(objectClass=person)").len(), 2);
        assert_eq!(dns(&c, None, Scope::Sub, "(cn=zo*)").len(), 1);
        assert_eq!(dns(&c, Some("dc=other"), Scope::Sub, "").len(), 0);
        let q = SearchQuery {
            limit: Some(2),
            ..SearchQuery::default()
        };
        let mut n = 0;
        block(c.search(&q, &mut |_| {
            n += 1;
            Ok(true)
        }))
        .expect("search");
        assert_eq!(n, 2);
        let bad = SearchQuery {
            filter: "(cn=a".into(),
            ..SearchQuery::default()
        };
        assert!(matches!(
            block(c.search(&bad, &mut |_| Ok(true))),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn create_get_modify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("new.ldif");
        let c = LdifConnector::open(&p).expect("open");
        assert!(!block(c.test()).expect("test").reachable);
        let e = block(c.create(
            "uid=alee,ou=nowhere,dc=x",
            &[
                ("objectClass".into(), vec![text("inetOrgPerson")]),
                ("cn".into(), vec![text("Ann")]),
            ],
        ))
        .expect("create");
        assert!(p.exists());
        let uuid = e.anchor.clone().expect("anchor");
        assert!(uuid::Uuid::parse_str(&uuid).is_ok());
        assert_eq!(e.first("uid").as_deref(), Some("alee"));
        let dup = block(c.create("UID=alee, ou=nowhere,dc=x", &[])).expect_err("exists");
        assert_eq!(dup.to_string(), "uid=alee,ou=nowhere,dc=x: already exists");
        assert_eq!(dup.code(), Some(68));
        assert_eq!(
            block(c.get(&uuid)).expect("get").map(|e| e.dn),
            Some(e.dn.clone())
        );
        assert_eq!(
            block(c.get(&uuid.to_uppercase()))
                .expect("get")
                .map(|e| e.dn),
            Some(e.dn.clone())
        );
        assert!(block(c.get("alee")).expect("get").is_some());
        assert!(block(c.get("uid=nobody,dc=x")).expect("get").is_none());
        block(c.modify(
            "uid=alee,ou=nowhere,dc=x",
            &[
                Change::Add("mail".into(), vec![text("a@x"), text("b@x")]),
                Change::Delete("mail".into(), vec![text("A@X")]),
                Change::Replace("cn".into(), vec![text("Ann Lee")]),
            ],
        ))
        .expect("modify");
        let got = block(c.get(&e.dn)).expect("get").expect("entry");
        assert_eq!(got.values("mail"), &[text("b@x")]);
        let anchor = block(c.modify(
            &e.dn,
            &[Change::Replace("entryUUID".into(), vec![text("x")])],
        ))
        .expect_err("anchor");
        assert!(anchor.to_string().contains("cannot be changed"), "{anchor}");
        block(c.modify(
            &e.dn,
            &[Change::Replace("entryUUID".into(), vec![text(&uuid)])],
        ))
        .expect("writing the same entryUUID is a no-op");
        let naming = block(c.modify(&e.dn, &[Change::Delete("uid".into(), vec![])]))
            .expect_err("naming value");
        assert!(
            naming.to_string().contains("uid=alee cannot be removed"),
            "{naming}"
        );
        assert!(matches!(
            block(c.modify("uid=ghost,dc=x", &[])),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn rename_move_delete_subtrees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, c) = open_sample(dir.path());
        let ann_uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let new =
            block(c.rename("cn=Ann Lee,ou=people,dc=example,dc=com", "Ann Smith")).expect("rename");
        assert_eq!(new, "cn=Ann Smith,ou=people,dc=example,dc=com");
        let ann = block(c.get(ann_uuid)).expect("get").expect("by uuid");
        assert_eq!(ann.dn, new);
        assert_eq!(ann.values("cn"), &[text("Ann Smith")]);
        assert_eq!(
            block(c.members("cn=staff,dc=example,dc=com")).expect("members"),
            std::slice::from_ref(&new)
        );
        let moved = block(c.move_to(
            "ou=people,dc=example,dc=com",
            "ou=archive,dc=example,dc=com",
        ))
        .expect("move");
        assert_eq!(moved, "ou=people,ou=archive,dc=example,dc=com");
        let under = dns(&c, Some(&moved), Scope::Sub, "");
        assert_eq!(under.len(), 3, "{under:?}");
        assert!(under.contains(&"cn=Ann Smith,ou=people,ou=archive,dc=example,dc=com".to_string()));
        assert_eq!(
            block(c.members("cn=staff,dc=example,dc=com")).expect("members"),
            ["cn=Ann Smith,ou=people,ou=archive,dc=example,dc=com"]
        );
        let below = block(c.move_to(&moved, "cn=x,ou=people,ou=archive,dc=example,dc=com"))
            .expect_err("below itself");
        assert!(below.to_string().contains("below itself"), "{below}");
        let taken = block(c.rename("cn=staff,dc=example,dc=com", "CN=Ann Smith"));
        assert!(taken.is_ok(), "different parent, so free");
        let clash = block(c.move_to(
            "cn=Ann Smith,dc=example,dc=com",
            "ou=people,ou=archive,dc=example,dc=com",
        ))
        .expect_err("clash");
        assert!(clash.to_string().contains("already exists"), "{clash}");
        let nonleaf = block(c.delete(&moved)).expect_err("non-leaf");
        assert!(nonleaf.to_string().contains("has children"), "{nonleaf}");
        assert_eq!(nonleaf.code(), Some(66));
        block(c.delete(ann_uuid)).expect("delete leaf");
        assert!(block(c.get(ann_uuid)).expect("get").is_none());
        assert!(
            block(c.members("cn=Ann Smith,dc=example,dc=com"))
                .expect("members")
                .is_empty()
        );
        // Order kept in the file: the renamed group stays last.
        let reopened = LdifConnector::open(&p).expect("reopen");
        let order: Vec<String> = all(&reopened).into_iter().map(|e| e.dn).collect();
        assert_eq!(
            order.last().map(String::as_str),
            Some("CN=Ann Smith,dc=example,dc=com")
        );
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn membership_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, c) = open_sample(dir.path());
        let g = "cn=staff,dc=example,dc=com";
        let ann = "CN=ann lee,ou=people,dc=example,dc=com";
        block(c.add_member(g, ann)).expect("add existing");
        assert_eq!(block(c.members(g)).expect("members").len(), 1);
        block(c.add_member(g, "Zoë")).expect("add by cn");
        assert_eq!(block(c.members(g)).expect("members").len(), 2);
        block(c.remove_member(g, ann)).expect("remove");
        block(c.remove_member(g, ann)).expect("remove absent");
        assert_eq!(
            block(c.members(g)).expect("members"),
            ["cn=Zoë,ou=people,dc=example,dc=com"]
        );
        assert!(matches!(
            block(c.members("cn=none,dc=x")),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("g.ldif");
        let tokens = [
            "dn: ",
            "dn:: ",
            "cn=a",
            ",",
            "+",
            "=",
            "\\",
            "\n",
            "\r\n",
            " ",
            ":",
            "::",
            ":<",
            "#",
            "version: 1",
            "changetype: add",
            "é",
            "\u{0}",
            "AAA=",
            "-",
            "member: ",
        ];
        let mut seed: u64 = 42;
        for _ in 0..800 {
            let mut text = String::new();
            for _ in 0..(seed % 24) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(tokens[(seed >> 33) as usize % tokens.len()]);
            }
            std::fs::write(&p, &text).expect("write");
            if let Ok(c) = LdifConnector::open(&p) {
                let _ = block(c.test());
                let _ = c.store.save();
            }
            let _ = Filter::parse(&text);
        }
    }

    #[test]
    fn two_connections_to_one_file_never_lose_each_others_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, a) = open_sample(dir.path());
        let b = LdifConnector::open(&p).expect("open");
        let dn = |n: &str| format!("cn={n},dc=example,dc=com");
        block(a.create(&dn("a"), &[])).expect("create a");
        // b read the file before a wrote: it re-reads before writing on top.
        block(b.create(&dn("b"), &[])).expect("create b");
        assert!(block(a.get(&dn("b"))).expect("get").is_some());
        // A batch holds the file lock until it is flushed: b waits for it.
        a.begin_batch();
        block(a.create(&dn("c"), &[])).expect("create c");
        let waiting = std::thread::spawn(move || block(b.create(&dn("d"), &[])).map(|_| ()));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!waiting.is_finished(), "b wrote while a's batch was open");
        block(a.flush()).expect("flush");
        waiting.join().expect("join").expect("create d");
        let all = LdifConnector::open(&p).expect("reopen");
        assert_eq!(all.len().expect("len"), 5 + 4);
        // A program that takes no lock replaces the file during a batch: the batch fails
        // rather than overwrite it, and the connection then reads the file as it is.
        a.begin_batch();
        block(a.create(&dn("e"), &[])).expect("create e");
        std::fs::write(&p, SAMPLE).expect("overwrite");
        let e = block(a.flush()).expect_err("stale batch");
        assert!(e.to_string().contains("changed by another program"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), SAMPLE);
        assert_eq!(a.len().expect("len"), 5);
        assert!(!a.store.in_batch());
    }

    #[test]
    fn batch_writes_nothing_until_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, c) = open_sample(dir.path());
        c.begin_batch();
        for i in 0..3 {
            block(c.create(&format!("cn=u{i},dc=example,dc=com"), &[])).expect("create");
        }
        block(c.delete("cn=u0,dc=example,dc=com")).expect("delete");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), SAMPLE);
        block(c.flush()).expect("flush");
        let again = LdifConnector::open(&p).expect("reopen");
        assert_eq!(again.len().expect("len"), 7);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // The file and its writers' lock file, no temp file.
        assert_eq!(names, ["dir.ldif", "dir.ldif.lock"]);
    }
}
