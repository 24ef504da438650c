//! Turning script values into text for the terminal or a pipe.
//!
//! [`render`] is what the REPL and `idsync -c` use to print the value of the
//! last expression, in one of four [`Format`]s:
//!
//! - **table** — an array of entries is a table (`dn`, then every attribute
//!   seen, in first-seen order), one entry is a record (`name: value` lines);
//!   arrays of maps are tables too, a map is a record, scalars print as is.
//!   A sync run's report lists its failed objects, bounded (see [`report`]).
//!   On a terminal the table is fitted to its width; in a pipe nothing is cut.
//! - **json** — pretty-printed; entries become objects whose attribute names
//!   are spelled as the server spells them (see [`entry_to_json`]).
//! - **csv** — arrays of entries or maps, one row each; multi-values joined
//!   with `;`. A run report is its failed objects, one row each.
//! - **ldif** — RFC 2849 records written by [`crate::model::ldif_write`]
//!   (the LDIF connector's writer too): base64 where a value is binary or not
//!   a SAFE-STRING, folded at 76 columns.
//!
//! Binary attributes never come out as mangled text: GUIDs and SIDs appear in
//! their canonical string forms, other binary values as `<binary N bytes>`
//! (table) or base64 (json, csv, ldif). LDIF writes the raw bytes of every
//! binary value, GUIDs included, so the file can be imported again.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use comfy_table::{Cell, ContentArrangement, ContentLineStyle, LineStyle, Table, TableStyle};
use rhai::{Array, Blob, Dynamic, ImmutableString, Map};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::report;
use crate::model::{Entry, Value, ldif_write};

/// How printed results are rendered (`--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Human-readable tables and records (the default on a terminal).
    #[default]
    Table,
    /// Pretty-printed JSON.
    Json,
    /// Comma-separated values with a header row.
    Csv,
    /// LDAP Data Interchange Format (RFC 2849) records.
    Ldif,
}

impl Format {
    /// Every format with its command-line name, in the order help lists them.
    pub const ALL: [(Format, &'static str); 4] = [
        (Format::Table, "table"),
        (Format::Json, "json"),
        (Format::Csv, "csv"),
        (Format::Ldif, "ldif"),
    ];

    /// The command-line name of the format (`"table"`, `"json"`, ...).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .unwrap_or("table")
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = RenderError;

    /// Parses `table`, `json`, `csv` or `ldif` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(wanted))
            .map(|(f, _)| *f)
            .ok_or_else(|| {
                RenderError(format!(
                    "unknown format \"{s}\": valid formats are table, json, csv, ldif"
                ))
            })
    }
}

/// Where the rendered text goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Emit ANSI colour (bold headers and record labels). When `false` the
    /// output contains no escape codes at all.
    pub color: bool,
    /// Terminal width in columns; `None` when stdout is not a terminal, in
    /// which case nothing is truncated or dropped.
    pub width: Option<usize>,
}

impl RenderOptions {
    /// Options for printing to this process's stdout: width and colour only
    /// when stdout is a terminal, and no colour when `NO_COLOR` is set to a
    /// non-empty value (<https://no-color.org>).
    pub fn for_stdout() -> Self {
        use std::io::IsTerminal;
        if !std::io::stdout().is_terminal() {
            return RenderOptions::default();
        }
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let width = terminal_size::terminal_size()
            .map(|(w, _)| w.0 as usize)
            .filter(|w| *w > 0)
            .unwrap_or(80);
        RenderOptions {
            color: !no_color,
            width: Some(width),
        }
    }
}

/// Why a value could not be rendered in the requested format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// Renders the value of a script or one-liner for printing.
///
/// Returns the text without a trailing newline, and `""` for unit `()` in
/// every format. See the module documentation for what each format does;
/// in short:
///
/// - [`Format::Table`]: arrays of entries or maps as tables ending with a
///   count line (`12 entries`), one entry or map as a record, other arrays
///   one element per line, an empty array as `(no entries)`, strings raw.
/// - [`Format::Json`]: pretty-printed JSON, entries via [`entry_to_json`]'s
///   shape with attribute order kept.
/// - [`Format::Csv`]: arrays of entries (header `dn` + all attributes) or
///   of maps (header from the keys); multi-valued attributes are joined with
///   `;` in one cell; opaque binary values are base64. A scalar prints as its
///   text; anything else is an error.
/// - [`Format::Ldif`]: entries (one or an array) as RFC 2849 records; anything
///   else is an error.
pub fn render(
    value: &Dynamic,
    format: Format,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    if value.is_unit() {
        return Ok(String::new());
    }
    match format {
        Format::Table => Ok(render_table_format(value, opts)),
        Format::Json => serde_json::to_string_pretty(&JsonDyn(value, 0))
            .map_err(|e| RenderError(format!("cannot render as json: {e}"))),
        Format::Csv => render_csv(value),
        Format::Ldif => render_ldif(value),
    }
}

/// An entry as JSON: `{"dn": ..., "<attr>": "v" | ["v1", "v2"], ...}`.
///
/// Attribute names are spelled as the server spells them; a single value is
/// a string, several (or none) an array. GUID and SID attributes hold their
/// canonical strings, other binary values base64 (standard alphabet, padded).
/// The entry's anchor is not included (for directories it is one of the
/// attributes already). Note that a `serde_json::Value` sorts object keys;
/// [`render`] with [`Format::Json`] keeps `dn` first and the server's order.
pub fn entry_to_json(e: &Entry) -> serde_json::Value {
    serde_json::to_value(JsonEntry(e)).unwrap_or(serde_json::Value::Null)
}

/// Any script value as JSON: entries as in [`entry_to_json`] (also when
/// nested in arrays or maps), blobs as base64 strings, everything else
/// through rhai's serde support (unit is `null`, custom types their name).
pub fn dynamic_to_json(v: &Dynamic) -> serde_json::Value {
    serde_json::to_value(JsonDyn(v, 0)).unwrap_or(serde_json::Value::Null)
}

// ---------------------------------------------------------------------------
// Values as text

/// A value as a person reads it in a table or record.
fn value_text(attr: &str, v: &Value) -> String {
    match v.display(attr) {
        Some(s) => s,
        None => format!("<binary {} bytes>", v.as_bytes().len()),
    }
}

/// A value as data (json, csv): canonical GUID/SID, other binary base64.
fn value_data(attr: &str, v: &Value) -> String {
    match v.display(attr) {
        Some(s) => s,
        None => B64.encode(v.as_bytes()),
    }
}

/// The attribute names of `entries`, first-seen order, case-insensitively
/// unique (the first spelling wins).
fn attribute_union<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        for a in e.attributes() {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&a.name)) {
                names.push(a.name.clone());
            }
        }
    }
    names
}

/// Keys that idsync's own maps use, in the order a reader wants them
/// (Rhai maps are sorted by key, which puts "created" before "id").
const PREFERRED_KEYS: &[&str] = &[
    "id",
    "name",
    "step",
    "kind",
    "status",
    "op",
    "object",
    "attribute",
    "old",
    "new",
    "rule",
    "run_id",
    "started",
    "finished",
    "created",
    "updated",
    "renamed",
    "moved",
    "joined",
    "deprovisioned",
    "unchanged",
    "failed",
    "containers",
    "duration_ms",
    "source_anchor",
    "target_anchor",
    "target_dn",
    "url",
    "bind_dn",
    "base",
    "password",
    "message",
    "errors",
    "log",
];

/// Map keys across `maps`: known keys in [`PREFERRED_KEYS`] order, then the
/// rest in first-seen order.
pub(super) fn key_union<'a>(maps: impl IntoIterator<Item = &'a Map>) -> Vec<String> {
    let mut keys = seen_keys(maps);
    keys.sort_by_key(|k| {
        PREFERRED_KEYS
            .iter()
            .position(|p| p == k)
            .unwrap_or(usize::MAX)
    });
    keys
}

/// Map keys in first-seen order across `maps`.
fn seen_keys<'a>(maps: impl IntoIterator<Item = &'a Map>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for m in maps {
        for k in m.keys() {
            if !keys.iter().any(|n| n == k.as_str()) {
                keys.push(k.to_string());
            }
        }
    }
    keys
}

/// How deep into nested arrays and maps a value is printed; below this
/// level a value shows as `…`, so printing a 20,000-level nesting is short
/// and cannot overflow the stack.
pub const MAX_PRINT_DEPTH: usize = 32;

/// What stands for a value nested deeper than [`MAX_PRINT_DEPTH`].
const TOO_DEEP: &str = "…";

/// A short description of a value's shape, for error messages.
fn describe(v: &Dynamic) -> String {
    describe_at(v, 0)
}

fn describe_at(v: &Dynamic, depth: usize) -> String {
    if depth > MAX_PRINT_DEPTH {
        return TOO_DEEP.into();
    }
    if v.read_lock::<Entry>().is_some() {
        return "an entry".into();
    }
    if let Some(a) = v.read_lock::<Array>() {
        let mut kinds: Vec<String> = Vec::new();
        for x in a.iter() {
            let k = describe_at(x, depth + 1);
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        return if kinds.is_empty() {
            "an empty array".into()
        } else {
            format!("an array of {} ({})", a.len(), kinds.join(", "))
        };
    }
    if v.is_map() {
        return "a map".into();
    }
    match v.type_name() {
        "string" => "a string".into(),
        "()" => "unit ()".into(),
        t => t.to_string(),
    }
}

/// A nested value, compactly: strings raw, unit empty, entries by DN,
/// arrays joined with `", "`, maps as JSON, blobs as their size.
pub(super) fn compact(v: &Dynamic) -> String {
    compact_at(v, 0)
}

fn compact_at(v: &Dynamic, depth: usize) -> String {
    if depth > MAX_PRINT_DEPTH {
        return TOO_DEEP.into();
    }
    if v.is_unit() {
        return String::new();
    }
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return s.to_string();
    }
    if let Some(e) = v.read_lock::<Entry>() {
        return e.dn.clone();
    }
    if let Some(a) = v.read_lock::<Array>() {
        return a
            .iter()
            .map(|x| compact_at(x, depth + 1))
            .collect::<Vec<_>>()
            .join(", ");
    }
    if v.is_map() {
        return serde_json::to_string(&JsonDyn(v, depth)).unwrap_or_default();
    }
    if let Some(b) = v.read_lock::<Blob>() {
        return format!("<binary {} bytes>", b.len());
    }
    v.to_string()
}

/// Makes a cell one line: control characters shown as escapes.
pub(super) fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to `width` characters, marking the cut with `…`.
pub(super) fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------
// Table format

/// Widest an attribute column gets before the leftover width is shared out.
const COLUMN_CAP: usize = 32;
/// A column that cannot get at least this many characters is dropped.
const MIN_COLUMN: usize = 10;

fn render_table_format(v: &Dynamic, opts: &RenderOptions) -> String {
    if report::is_reports(v) {
        return report::table(v, opts);
    }
    if let Some(e) = v.read_lock::<Entry>() {
        return entry_record(&e, opts);
    }
    if let Some(a) = v.read_lock::<Array>() {
        return array_table(&a, opts);
    }
    if let Some(m) = v.read_lock::<Map>() {
        // A result with `rows` and a `summary` line (`map(step)`): the rows
        // as a table, the summary under it.
        if let (Some(rows), Some(summary)) = (
            m.get("rows").and_then(|r| r.read_lock::<Array>()),
            m.get("summary").filter(|s| s.is_string()),
        ) {
            return format!("{}\n{summary}", array_table(&rows, opts));
        }
        return map_record(&m, opts);
    }
    compact(v)
}

fn array_table(a: &Array, opts: &RenderOptions) -> String {
    if a.is_empty() {
        return "(no entries)".into();
    }
    let entries: Vec<_> = a.iter().map_while(|x| x.read_lock::<Entry>()).collect();
    if entries.len() == a.len() {
        let refs: Vec<&Entry> = entries.iter().map(|e| &**e).collect();
        let (headers, rows) = entry_rows(&refs, ", ", value_text);
        return grid(headers, rows, true, opts, ("entry", "entries"));
    }
    drop(entries);
    let maps: Vec<_> = a.iter().map_while(|x| x.read_lock::<Map>()).collect();
    if maps.len() == a.len() {
        let keys = key_union(maps.iter().map(|m| &**m));
        if !keys.is_empty() {
            let rows = maps
                .iter()
                .map(|m| {
                    keys.iter()
                        .map(|k| m.get(k.as_str()).map(compact).unwrap_or_default())
                        .collect()
                })
                .collect();
            return grid(keys, rows, false, opts, ("row", "rows"));
        }
    }
    drop(maps);
    a.iter().map(compact).collect::<Vec<_>>().join("\n")
}

/// Lays out a table. `key_first`: the first column (the DN) is the one that
/// identifies a row and gets most of a narrow terminal.
fn grid(
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    key_first: bool,
    opts: &RenderOptions,
    noun: (&str, &str),
) -> String {
    let headers: Vec<String> = headers.iter().map(|h| one_line(h)).collect();
    let mut rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| one_line(c)).collect())
        .collect();
    let count = rows.len();
    let mut footer = None;
    let mut headers = headers;

    if let Some(term) = opts.width {
        let natural: Vec<usize> = (0..headers.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
                    .max(1)
            })
            .collect();
        let widths = fit_columns(&natural, key_first, term);
        let shown = widths.len();
        if shown < headers.len() {
            footer = Some(dropped_footer(&headers[shown..], term));
        }
        headers.truncate(shown);
        for (h, w) in headers.iter_mut().zip(&widths) {
            *h = truncate(h, *w);
        }
        for r in rows.iter_mut() {
            r.truncate(shown);
            for (c, w) in r.iter_mut().zip(&widths) {
                *c = truncate(c, *w);
            }
        }
    }

    let mut table = Table::new();
    table
        .load_style(
            TableStyle::new()
                .header_lines(ContentLineStyle::none().junction('│'))
                .header_separator(LineStyle::none().fill('─').junction('┼'))
                .content_lines(ContentLineStyle::none().junction('│')),
        )
        .set_content_arrangement(ContentArrangement::Disabled);
    if opts.color {
        table.enforce_styling();
        table.set_header(
            headers
                .iter()
                .map(|h| Cell::new(h).add_attribute(comfy_table::Attribute::Bold))
                .collect::<Vec<_>>(),
        );
    } else {
        table.force_no_tty();
        table.set_header(headers.iter().map(Cell::new).collect::<Vec<_>>());
    }
    for r in rows {
        table.add_row(r);
    }
    let mut out = table.trim_fmt();
    if let Some(f) = footer {
        out.push('\n');
        out.push_str(&f);
    }
    out.push('\n');
    out.push_str(&plural(count, noun.0, noun.1));
    out
}

/// Column widths that fit `term` columns; fewer widths than columns means
/// the trailing ones were dropped. Layout overhead: one space each side of
/// a column and one `│` between columns.
fn fit_columns(natural: &[usize], key_first: bool, term: usize) -> Vec<usize> {
    let term = term.max(20);
    let mut widths: Vec<usize> = Vec::new();
    let mut used = 0usize;
    for (i, &nat) in natural.iter().enumerate() {
        let overhead = if i == 0 { 2 } else { 3 };
        let cap = if i == 0 && key_first {
            // The DN identifies the row: keep it readable, up to 3/5 of the
            // screen when other columns compete, all of it otherwise.
            if natural.len() == 1 {
                term - overhead
            } else {
                (term * 3 / 5).max(24)
            }
        } else {
            COLUMN_CAP
        };
        let want = nat.min(cap);
        let room = term.saturating_sub(used + overhead);
        if i == 0 {
            let w = want.min(room).max(1);
            widths.push(w);
            used += overhead + w;
        } else if want <= room {
            widths.push(want);
            used += overhead + want;
        } else if room >= MIN_COLUMN.min(want) && room > 0 {
            widths.push(room);
            used += overhead + room;
            break;
        } else {
            break;
        }
    }
    // Share what is left with the columns that were cut, left to right.
    let mut left = term.saturating_sub(used);
    for (w, &nat) in widths.iter_mut().zip(natural) {
        if left == 0 {
            break;
        }
        if *w < nat {
            let more = (nat - *w).min(left);
            *w += more;
            left -= more;
        }
    }
    widths
}

/// `(3 more columns: a, b, c; use --format json for all)`, the name list
/// shortened with `…` so the line fits the terminal.
fn dropped_footer(names: &[String], term: usize) -> String {
    let what = if names.len() == 1 {
        "column"
    } else {
        "columns"
    };
    let head = format!("({} more {what}: ", names.len());
    let tail = "; use --format json for all)";
    let budget = term.saturating_sub(head.chars().count() + tail.len());
    if budget < 8 {
        // A very narrow terminal: no room for names.
        return format!("({} more {what}; --format json shows all)", names.len());
    }
    let mut list = String::new();
    for (i, n) in names.iter().enumerate() {
        let piece = if i == 0 { n.clone() } else { format!(", {n}") };
        // Keep room for ", …" unless this is the last name.
        let reserve = if i + 1 == names.len() { 0 } else { 3 };
        if list.chars().count() + piece.chars().count() + reserve > budget {
            if i == 0 {
                list = truncate(n, budget.max(1));
            } else {
                list.push_str(", …");
            }
            break;
        }
        list.push_str(&piece);
    }
    format!("{head}{list}{tail}")
}

/// `label:` padded to `width`, bold when colour is on.
fn label(name: &str, width: usize, opts: &RenderOptions) -> String {
    let text = format!("{name}:");
    let pad = " ".repeat(width.saturating_sub(text.chars().count()) + 1);
    if opts.color {
        format!("{}{pad}", nu_ansi_term::Style::new().bold().paint(text))
    } else {
        format!("{text}{pad}")
    }
}

/// Lines of `name: value` records; several values (or multi-line values)
/// continue on following lines indented under the first value.
pub(super) fn record(lines: &[(String, Vec<String>)], opts: &RenderOptions) -> String {
    let width = lines
        .iter()
        .map(|(n, _)| n.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let indent = " ".repeat(width + 1);
    let mut out: Vec<String> = Vec::new();
    for (name, values) in lines {
        let mut first = true;
        for v in values {
            for part in v.split('\n') {
                let part = part.strip_suffix('\r').unwrap_or(part);
                if first {
                    out.push(format!("{}{part}", label(name, width, opts)));
                    first = false;
                } else {
                    out.push(format!("{indent}{part}"));
                }
            }
        }
        if first {
            out.push(label(name, width, opts).trim_end().to_string());
        }
    }
    out.iter()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

fn entry_record(e: &Entry, opts: &RenderOptions) -> String {
    let mut lines = vec![("dn".to_string(), vec![e.dn.clone()])];
    for a in e.attributes() {
        let vals = a.values.iter().map(|v| value_text(&a.name, v)).collect();
        lines.push((a.name.clone(), vals));
    }
    record(&lines, opts)
}

fn map_record(m: &Map, opts: &RenderOptions) -> String {
    if m.is_empty() {
        return "#{}".into();
    }
    let lines: Vec<_> = key_union([m])
        .into_iter()
        .map(|k| {
            let v = m.get(k.as_str()).map(compact).unwrap_or_default();
            (k, vec![v])
        })
        .collect();
    record(&lines, opts)
}

// ---------------------------------------------------------------------------
// JSON

/// Serializes an entry with `dn` first and attributes in server order.
struct JsonEntry<'a>(&'a Entry);

impl Serialize for JsonEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(Some(e.attributes().len() + 1))?;
        m.serialize_entry("dn", &e.dn)?;
        for a in e.attributes() {
            let vals: Vec<String> = a.values.iter().map(|v| value_data(&a.name, v)).collect();
            if vals.len() == 1 {
                m.serialize_entry(&a.name, &vals[0])?;
            } else {
                m.serialize_entry(&a.name, &vals)?;
            }
        }
        m.end()
    }
}

/// Serializes a script value at a nesting depth, converting entries and
/// blobs on the way down; below [`MAX_PRINT_DEPTH`] a value is `"…"`.
struct JsonDyn<'a>(&'a Dynamic, usize);

impl Serialize for JsonDyn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (v, depth) = (self.0, self.1);
        if depth > MAX_PRINT_DEPTH {
            return s.serialize_str(TOO_DEEP);
        }
        if let Some(e) = v.read_lock::<Entry>() {
            return JsonEntry(&e).serialize(s);
        }
        if let Some(a) = v.read_lock::<Array>() {
            let mut seq = s.serialize_seq(Some(a.len()))?;
            for x in a.iter() {
                seq.serialize_element(&JsonDyn(x, depth + 1))?;
            }
            return seq.end();
        }
        if let Some(m) = v.read_lock::<Map>() {
            let mut map = s.serialize_map(Some(m.len()))?;
            for (k, x) in m.iter() {
                map.serialize_entry(k.as_str(), &JsonDyn(x, depth + 1))?;
            }
            return map.end();
        }
        if let Some(b) = v.read_lock::<Blob>() {
            return s.serialize_str(&B64.encode(&*b));
        }
        v.serialize(s)
    }
}

// ---------------------------------------------------------------------------
// CSV

fn render_csv(v: &Dynamic) -> Result<String, RenderError> {
    let shape_error = || {
        RenderError(format!(
            "csv needs an array of entries or maps; got {}",
            describe(v)
        ))
    };
    let (headers, rows): (Vec<String>, Vec<Vec<String>>) = if report::is_reports(v) {
        report::csv_rows(v)
    } else if let Some(e) = v.read_lock::<Entry>() {
        entries_csv(&[&*e])
    } else if let Some(m) = v.read_lock::<Map>() {
        maps_csv(&[&*m])
    } else if let Some(a) = v.read_lock::<Array>() {
        if a.is_empty() {
            return Ok(String::new());
        }
        let entries: Vec<_> = a.iter().map_while(|x| x.read_lock::<Entry>()).collect();
        if entries.len() == a.len() {
            entries_csv(&entries.iter().map(|e| &**e).collect::<Vec<_>>())
        } else {
            drop(entries);
            let maps: Vec<_> = a.iter().map_while(|x| x.read_lock::<Map>()).collect();
            if maps.len() != a.len() {
                return Err(shape_error());
            }
            maps_csv(&maps.iter().map(|m| &**m).collect::<Vec<_>>())
        }
    } else if v.is_map() {
        return Err(shape_error());
    } else {
        // A scalar: its text.
        return Ok(compact(v));
    };

    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let io = |e: csv::Error| RenderError(format!("cannot write csv: {e}"));
    w.write_record(&headers).map_err(io)?;
    for r in &rows {
        w.write_record(r).map_err(io)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| RenderError(format!("cannot write csv: {e}")))?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    while text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

fn entries_csv(entries: &[&Entry]) -> (Vec<String>, Vec<Vec<String>>) {
    entry_rows(entries, ";", value_data)
}

/// Header (`dn` + the union of attributes) and one row per entry, each
/// cell the attribute's values rendered by `cell` and joined with `sep`.
fn entry_rows(
    entries: &[&Entry],
    sep: &str,
    cell: fn(&str, &Value) -> String,
) -> (Vec<String>, Vec<Vec<String>>) {
    let attrs = attribute_union(entries.iter().copied());
    let mut headers = vec!["dn".to_string()];
    headers.extend(attrs.iter().cloned());
    let rows = entries
        .iter()
        .map(|e| {
            let mut row = vec![e.dn.clone()];
            row.extend(attrs.iter().map(|name| {
                e.attr(name)
                    .map(|a| {
                        a.values
                            .iter()
                            .map(|v| cell(&a.name, v))
                            .collect::<Vec<_>>()
                            .join(sep)
                    })
                    .unwrap_or_default()
            }));
            row
        })
        .collect();
    (headers, rows)
}

fn maps_csv(maps: &[&Map]) -> (Vec<String>, Vec<Vec<String>>) {
    let keys = key_union(maps.iter().copied());
    let rows = maps
        .iter()
        .map(|m| {
            keys.iter()
                .map(|k| match m.get(k.as_str()) {
                    Some(x) => match x.read_lock::<Array>() {
                        Some(a) => a.iter().map(compact).collect::<Vec<_>>().join(";"),
                        None => compact(x),
                    },
                    None => String::new(),
                })
                .collect()
        })
        .collect();
    (keys, rows)
}

// ---------------------------------------------------------------------------
// LDIF

fn render_ldif(v: &Dynamic) -> Result<String, RenderError> {
    if report::is_reports(v) {
        return Err(RenderError(report::ldif_refusal()));
    }
    if let Some(e) = v.read_lock::<Entry>() {
        return Ok(ldif_entry(&e));
    }
    if let Some(a) = v.read_lock::<Array>() {
        let entries: Vec<_> = a.iter().map_while(|x| x.read_lock::<Entry>()).collect();
        if entries.len() == a.len() {
            return Ok(entries
                .iter()
                .map(|e| ldif_entry(e))
                .collect::<Vec<_>>()
                .join("\n\n"));
        }
    }
    Err(RenderError(format!(
        "ldif needs entries; got {}",
        describe(v)
    )))
}

/// One entry as an LDIF record (the shared writer, [`ldif_write`]), without
/// the final newline.
fn ldif_entry(e: &Entry) -> String {
    let mut out = ldif_write::entry_record(e);
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ldif_write::is_safe_string;

    const GUID_BYTES: [u8; 16] = [
        0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56,
        0x78,
    ];
    const GUID_TEXT: &str = "12345678-1234-5678-9abc-def012345678";

    fn t(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn ann() -> Entry {
        let mut e = Entry::new("CN=Ann Lee,OU=Staff,DC=corp,DC=example");
        e.push("cn", [t("Ann Lee")]);
        e.push("memberOf", [t("CN=g1,DC=corp"), t("CN=g2,DC=corp")]);
        e.push("objectGUID", [Value::Binary(GUID_BYTES.to_vec())]);
        e.push(
            "jpegPhoto",
            [Value::Binary(vec![0xff, 0xd8, 0xff, 0xe0, 0, 1])],
        );
        e.push("sn", [t("Müller")]);
        e.push("description", [t(" leading space")]);
        e
    }

    fn bob() -> Entry {
        let mut e = Entry::new("CN=Bob,OU=Staff,DC=corp,DC=example");
        e.push("cn", [t("Bob")]);
        e.push("mail", [t("bob@corp.example")]);
        e
    }

    fn arr(es: Vec<Entry>) -> Dynamic {
        Dynamic::from_array(es.into_iter().map(Dynamic::from).collect())
    }

    fn plain() -> RenderOptions {
        RenderOptions::default()
    }

    #[test]
    fn format_parses_and_lists_valid_names() {
        assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
        assert_eq!("LDIF".parse::<Format>().unwrap(), Format::Ldif);
        let err = "xml".parse::<Format>().unwrap_err().to_string();
        assert!(
            err.contains("xml") && err.contains("table, json, csv, ldif"),
            "{err}"
        );
        assert_eq!(Format::Csv.to_string(), "csv");
    }

    #[test]
    fn unit_renders_empty_in_every_format() {
        for (f, _) in Format::ALL {
            assert_eq!(render(&Dynamic::UNIT, f, &plain()).unwrap(), "");
        }
    }

    #[test]
    fn table_of_entries_has_union_columns_and_count() {
        let out = render(&arr(vec![ann(), bob()]), Format::Table, &plain()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let header = lines[0];
        let order = [
            "dn",
            "cn",
            "memberOf",
            "objectGUID",
            "jpegPhoto",
            "sn",
            "description",
            "mail",
        ];
        let pos: Vec<usize> = order.iter().map(|h| header.find(h).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{header}");
        assert!(out.contains("CN=g1,DC=corp, CN=g2,DC=corp"), "{out}");
        assert!(out.contains(GUID_TEXT), "{out}");
        assert!(out.contains("<binary 6 bytes>"), "{out}");
        assert!(out.contains("Müller"));
        assert!(out.contains("bob@corp.example"));
        assert_eq!(*lines.last().unwrap(), "2 entries");
        assert!(!out.contains('\x1b'));
        assert!(!out.ends_with('\n'));
    }

    #[test]
    fn color_false_has_no_escapes_and_color_true_bolds_header() {
        let v = arr(vec![ann(), bob()]);
        for width in [None, Some(60), Some(200)] {
            let opts = RenderOptions {
                color: false,
                width,
            };
            for d in [v.clone(), Dynamic::from(ann())] {
                let out = render(&d, Format::Table, &opts).unwrap();
                assert!(!out.contains('\x1b'), "{out}");
            }
        }
        let opts = RenderOptions {
            color: true,
            width: Some(200),
        };
        let out = render(&v, Format::Table, &opts).unwrap();
        assert!(out.lines().next().unwrap().contains("\x1b[1m"), "{out:?}");
        // Only the header is coloured.
        assert!(out.lines().skip(1).all(|l| !l.contains('\x1b')), "{out:?}");
    }

    #[test]
    fn table_fits_terminal_width_and_names_dropped_columns() {
        let mut e = bob();
        e.push("description", [t(&"x".repeat(200))]);
        for i in 0..12 {
            e.push(&format!("extensionAttribute{i}"), [t("some value")]);
        }
        let v = arr(vec![e, ann()]);
        let opts = RenderOptions {
            color: false,
            width: Some(80),
        };
        let out = render(&v, Format::Table, &opts).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        for l in &lines {
            assert!(
                l.chars().count() <= 80,
                "too wide ({}): {l}",
                l.chars().count()
            );
        }
        assert!(out.contains('…'), "{out}");
        // The DN stays readable.
        assert!(out.contains("CN=Bob,OU=Staff,DC=corp,DC=example"), "{out}");
        let footer = lines[lines.len() - 2];
        assert!(
            footer.starts_with('(') && footer.contains("more columns:"),
            "{footer}"
        );
        assert!(footer.contains("extensionAttribute11") || footer.contains('…'));
        assert!(footer.ends_with("use --format json for all)"), "{footer}");
        assert_eq!(lines[lines.len() - 1], "2 entries");

        // Not a terminal: nothing cut, nothing dropped.
        let out = render(&v, Format::Table, &plain()).unwrap();
        assert!(out.contains(&"x".repeat(200)));
        assert!(!out.contains('…') && !out.contains("more column"));
        assert!(out.contains("extensionAttribute11"));
    }

    #[test]
    fn dropped_column_footer_fits_the_width() {
        let names: Vec<String> = (0..30).map(|i| format!("extensionAttribute{i}")).collect();
        for term in [60, 80, 120] {
            let f = dropped_footer(&names, term);
            assert!(f.chars().count() <= term, "{term}: {f}");
            assert!(
                f.starts_with("(30 more columns: ") && f.contains('…'),
                "{f}"
            );
        }
        assert_eq!(
            dropped_footer(&names, 40),
            "(30 more columns; --format json shows all)"
        );
        let one = dropped_footer(&["mail".to_string()], 80);
        assert_eq!(one, "(1 more column: mail; use --format json for all)");
    }

    #[test]
    fn one_entry_is_an_aligned_record() {
        let out = render(&Dynamic::from(ann()), Format::Table, &plain()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "dn:          CN=Ann Lee,OU=Staff,DC=corp,DC=example"
        );
        assert_eq!(lines[1], "cn:          Ann Lee");
        assert_eq!(lines[2], "memberOf:    CN=g1,DC=corp");
        assert_eq!(lines[3], "             CN=g2,DC=corp");
        assert_eq!(lines[4], format!("objectGUID:  {GUID_TEXT}"));
        assert_eq!(lines[5], "jpegPhoto:   <binary 6 bytes>");
        assert_eq!(lines[7], "description:  leading space");
    }

    #[test]
    fn other_values_in_table_format() {
        let o = plain();
        assert_eq!(
            render(&Dynamic::from_array(vec![]), Format::Table, &o).unwrap(),
            "(no entries)"
        );
        assert_eq!(
            render(&Dynamic::from("héllo"), Format::Table, &o).unwrap(),
            "héllo"
        );
        assert_eq!(
            render(&Dynamic::from(42_i64), Format::Table, &o).unwrap(),
            "42"
        );
        assert_eq!(
            render(&Dynamic::from(true), Format::Table, &o).unwrap(),
            "true"
        );
        let list = Dynamic::from_array(vec!["a".into(), 2_i64.into()]);
        assert_eq!(render(&list, Format::Table, &o).unwrap(), "a\n2");

        let mut m = Map::new();
        m.insert("name".into(), "x".into());
        m.insert(
            "tags".into(),
            Dynamic::from_array(vec!["a".into(), "b".into()]),
        );
        let mut inner = Map::new();
        inner.insert("k".into(), 1_i64.into());
        m.insert("z".into(), Dynamic::from_map(inner));
        let out = render(&Dynamic::from_map(m.clone()), Format::Table, &o).unwrap();
        assert_eq!(out, "name: x\ntags: a, b\nz:    {\"k\":1}");

        let mut m2 = Map::new();
        m2.insert("name".into(), "y".into());
        m2.insert("count".into(), 3_i64.into());
        let rows = Dynamic::from_array(vec![Dynamic::from_map(m), Dynamic::from_map(m2)]);
        let out = render(&rows, Format::Table, &o).unwrap();
        let header = out.lines().next().unwrap();
        assert!(header.contains("name") && header.contains("tags") && header.contains("count"));
        assert!(out.ends_with("2 rows"), "{out}");
    }

    #[test]
    fn json_of_entries() {
        let v = arr(vec![ann(), bob()]);
        let out = render(&v, Format::Json, &plain()).unwrap();
        assert!(out.contains('\n'), "pretty-printed");
        assert!(
            out.find("\"dn\"").unwrap() < out.find("\"cn\"").unwrap(),
            "dn first"
        );
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        let a = &j[0];
        assert_eq!(a["dn"], "CN=Ann Lee,OU=Staff,DC=corp,DC=example");
        assert_eq!(a["cn"], "Ann Lee");
        assert_eq!(
            a["memberOf"],
            serde_json::json!(["CN=g1,DC=corp", "CN=g2,DC=corp"])
        );
        assert_eq!(a["objectGUID"], GUID_TEXT);
        assert_eq!(a["jpegPhoto"], "/9j/4AAB");
        assert_eq!(a["sn"], "Müller");
        assert_eq!(j[1]["mail"], "bob@corp.example");
        assert_eq!(entry_to_json(&ann()), j[0]);

        // Entries nested in maps are converted too; other values via serde.
        let mut m = Map::new();
        m.insert("who".into(), Dynamic::from(bob()));
        m.insert("n".into(), 2_i64.into());
        m.insert("none".into(), Dynamic::UNIT);
        let j = dynamic_to_json(&Dynamic::from_map(m));
        assert_eq!(j["who"]["cn"], "Bob");
        assert_eq!(j["n"], 2);
        assert!(j["none"].is_null());
        assert_eq!(
            render(&Dynamic::from("s"), Format::Json, &plain()).unwrap(),
            "\"s\""
        );
    }

    #[test]
    fn csv_of_entries_and_maps() {
        let out = render(&arr(vec![ann(), bob()]), Format::Csv, &plain()).unwrap();
        let mut r = csv::Reader::from_reader(out.as_bytes());
        let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            h,
            [
                "dn",
                "cn",
                "memberOf",
                "objectGUID",
                "jpegPhoto",
                "sn",
                "description",
                "mail"
            ]
        );
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(&rows[0][2], "CN=g1,DC=corp;CN=g2,DC=corp");
        assert_eq!(&rows[0][3], GUID_TEXT);
        assert_eq!(&rows[0][4], "/9j/4AAB");
        assert_eq!(&rows[0][5], "Müller");
        assert_eq!(&rows[0][6], " leading space");
        assert_eq!(&rows[1][7], "bob@corp.example");
        assert_eq!(&rows[1][2], "");
        assert!(!out.ends_with('\n'));

        let mut m = Map::new();
        m.insert("a".into(), 1_i64.into());
        m.insert("b".into(), "x,y".into());
        let out = render(
            &Dynamic::from_array(vec![Dynamic::from_map(m)]),
            Format::Csv,
            &plain(),
        )
        .unwrap();
        assert_eq!(out, "a,b\n1,\"x,y\"");

        assert_eq!(
            render(&Dynamic::from(7_i64), Format::Csv, &plain()).unwrap(),
            "7"
        );
        let err = render(
            &Dynamic::from_array(vec![1_i64.into()]),
            Format::Csv,
            &plain(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("csv needs an array of entries or maps; got"),
            "{err}"
        );
    }

    #[test]
    fn ldif_encodes_unsafe_and_binary_values_and_folds() {
        let mut a = ann();
        a.push("info", [t(&"y".repeat(150))]);
        let mut odd = Entry::new("CN=Zoë,DC=corp");
        odd.push("cn", [t("Zoë")]);
        let out = render(&arr(vec![a, odd]), Format::Ldif, &plain()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "dn: CN=Ann Lee,OU=Staff,DC=corp,DC=example");
        assert!(lines.contains(&"memberOf: CN=g1,DC=corp"));
        assert!(lines.contains(&"memberOf: CN=g2,DC=corp"));
        let guid_line = format!("objectGUID:: {}", B64.encode(GUID_BYTES));
        assert!(lines.contains(&guid_line.as_str()), "{out}");
        assert!(!out.contains(GUID_TEXT));
        assert!(lines.contains(&"jpegPhoto:: /9j/4AAB"));
        let sn = format!("sn:: {}", B64.encode("Müller"));
        assert!(lines.contains(&sn.as_str()), "{out}");
        let desc = format!("description:: {}", B64.encode(" leading space"));
        assert!(lines.contains(&desc.as_str()), "{out}");
        // Folding: no line over 76, continuation starts with one space.
        assert!(lines.iter().all(|l| l.len() <= 76), "{out}");
        let i = lines.iter().position(|l| l.starts_with("info: ")).unwrap();
        assert_eq!(lines[i].len(), 76);
        assert!(lines[i + 1].starts_with(' '));
        let joined = format!("{}{}{}", lines[i], &lines[i + 1][1..], &lines[i + 2][1..]);
        assert_eq!(joined, format!("info: {}", "y".repeat(150)));
        // Blank line between entries, unsafe DN base64.
        let dn2 = format!("dn:: {}", B64.encode("CN=Zoë,DC=corp"));
        let j = lines.iter().position(|l| *l == dn2).unwrap();
        assert_eq!(lines[j - 1], "");
        assert!(!out.ends_with('\n'));

        assert!(is_safe_string(b"plain value"));
        for bad in [&b" x"[..], b":x", b"<x", b"x ", b"a\nb", b"a\rb", b"a\0b"] {
            assert!(!is_safe_string(bad), "{bad:?}");
        }

        let err = render(&Dynamic::from("x"), Format::Ldif, &plain()).unwrap_err();
        assert_eq!(err.to_string(), "ldif needs entries; got a string");
    }
}
