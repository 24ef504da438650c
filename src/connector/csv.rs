//! The CSV connector: a delimited text file with a header row, one entry
//! per row, identified by a key column. Usable as a sync source and target.
//!
//! A row reads as an entry whose `dn` and `anchor` are the key value, with
//! one attribute per non-empty cell (named by the header, case kept). With
//! `multi_value_separator` set, a cell holds several values. Searches take
//! an LDAP filter evaluated in memory; base and scope do not apply. Writes
//! keep the column order (new columns are appended), the byte order mark
//! and the line ending of the file, and are atomic (see `super::file`).
//! Keys are case-sensitive: `E1` and `e1` are two rows, and `get("e1")`
//! falls back to a case-insensitive match only when no key matches exactly.
//! The key column cannot be modified (it is the row's identity: delete the
//! row and create it again). Opaque binary values are written as base64.
//!
//! The file may be UTF-8 (default), Windows-1252/latin1 or UTF-16 (option
//! `encoding`; a byte-order mark decides by itself, see [`encoding`]).
//! Rows whose cells are all empty (Excel's trailing `;;;` lines) are
//! skipped, and a column with neither a name nor a value is ignored (and
//! not written back). Line numbers in errors count CRLF, LF and CR alike.

mod encoding;

pub use encoding::Encoding;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;

use super::file::{self, Data, FileStore, Table};
use crate::connector::{Change, Connector, Error, Result, SearchQuery, Sink, TestReport};
use crate::model::filter::Filter;
use crate::model::{Entry, Value};

/// How to read a CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// The column that identifies a row (required).
    pub key: String,
    /// The field delimiter (default `,`).
    pub delimiter: u8,
    /// Splits a cell into several values (default: a cell is one value).
    pub multi_value_separator: Option<String>,
    /// The file's encoding when it has no byte-order mark (default UTF-8).
    pub encoding: Option<Encoding>,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            key: String::new(),
            delimiter: b',',
            multi_value_separator: None,
            encoding: None,
        }
    }
}

impl CsvOptions {
    /// Options with `key` as the key column and the defaults otherwise.
    pub fn new(key: impl Into<String>) -> CsvOptions {
        CsvOptions {
            key: key.into(),
            ..CsvOptions::default()
        }
    }
}

/// Format state that writes may change, plus what writing needs.
#[derive(Clone, Debug)]
struct Meta {
    header: Vec<String>,
    key: String,
    delimiter: u8,
    separator: Option<String>,
    bom: bool,
    crlf: bool,
    /// Lines end with a lone CR (old Mac exports).
    cr: bool,
    encoding: Encoding,
}

impl Meta {
    /// The header's spelling of a column, if there is one.
    fn column(&self, name: &str) -> Option<&str> {
        self.header
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }
}

/// A CSV file opened as a connection.
pub struct CsvConnector {
    opts: CsvOptions,
    store: FileStore<Meta>,
}

impl CsvConnector {
    /// Opens (reads) the file. An empty file is an empty table whose header
    /// is the key column; so is a missing file, but reading it (search,
    /// get, a sync step's source) is an error naming the path, unless the
    /// connection is a sync step's target; it is created on the first
    /// write. Errors name the file and the line.
    pub fn open(path: impl AsRef<Path>, opts: CsvOptions) -> Result<CsvConnector> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let label = path.display().to_string();
        check_options(&opts)?;
        let load_opts = opts.clone();
        let load: file::Load<Meta> = Box::new(move |raw, label| load(raw, &load_opts, label));
        Ok(CsvConnector {
            opts,
            store: FileStore::open(path, label, load, render)?,
        })
    }

    /// The options this file was opened with.
    pub fn options(&self) -> &CsvOptions {
        &self.opts
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// The columns, in file order.
    pub fn columns(&self) -> Result<Vec<String>> {
        self.store.read_any(|d| d.meta.header.clone())
    }

    /// The slot of a row by key: exact first, then ignoring case.
    fn find(&self, table: &Table, identity: &str) -> Result<Option<usize>> {
        if let Some(s) = table.find_exact(identity) {
            return Ok(Some(s));
        }
        match table.find_ci(identity) {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(Error::Ambiguous {
                identity: identity.to_string(),
                count: many.len(),
                sample: many
                    .iter()
                    .filter_map(|&s| table.key(s))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    fn require(&self, table: &Table, identity: &str) -> Result<usize> {
        self.find(table, identity)?
            .ok_or_else(|| Error::NotFound(format!("{}: row '{identity}'", self.store.label())))
    }
}

/// The file's bytes as on disk (`None`: no file) as a table.
fn load(raw: Option<&[u8]>, opts: &CsvOptions, label: &str) -> Result<Data<Meta>> {
    if let Some(raw) = raw {
        let d = encoding::decode(raw, opts.encoding)
            .map_err(|e| Error::Other(format!("{label}: {e}")))?;
        if !d.bytes.iter().all(|c| c.is_ascii_whitespace()) {
            return parse(&d.bytes, opts, label, d.bom, d.encoding);
        }
    }
    Ok(Data {
        table: Table::new(),
        meta: Meta {
            header: vec![opts.key.clone()],
            key: opts.key.clone(),
            delimiter: opts.delimiter,
            separator: opts.multi_value_separator.clone(),
            bom: false,
            crlf: false,
            cr: false,
            encoding: opts.encoding.unwrap_or_default(),
        },
    })
}

fn check_options(opts: &CsvOptions) -> Result<()> {
    if opts.key.trim().is_empty() {
        return Err(Error::usage(
            "CSV option 'key' is required: the column that identifies a row",
        ));
    }
    if !opts.delimiter.is_ascii() || matches!(opts.delimiter, b'"' | b'\r' | b'\n') {
        return Err(Error::usage(format!(
            "CSV delimiter {:?} cannot be used (use one ASCII character such as ',', ';' or tab)",
            opts.delimiter as char
        )));
    }
    if opts.multi_value_separator.as_deref() == Some("") {
        return Err(Error::usage(
            "CSV option 'multi_value_separator' must not be empty",
        ));
    }
    Ok(())
}

/// The hint added to "not valid UTF-8" errors.
const NOT_UTF8_HINT: &str = "the file is in another encoding: open it with encoding: \"windows-1252\" (Excel on Western Windows), \"latin1\" or \"utf-16\", or save it as UTF-8";

/// Reads the header and rows from the file's text (`bytes`, UTF-8 unless
/// the file is UTF-8 and not valid; cells are checked one by one).
fn parse(
    bytes: &[u8],
    opts: &CsvOptions,
    label: &str,
    bom: bool,
    encoding: Encoding,
) -> Result<Data<Meta>> {
    let first_break = bytes.iter().position(|&b| b == b'\n' || b == b'\r');
    let crlf = first_break.is_some_and(|i| bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n'));
    let cr = first_break.is_some_and(|i| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
    let mut rdr = ::csv::ReaderBuilder::new()
        .delimiter(opts.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = rdr.byte_records();
    let line_at = |p: Option<&::csv::Position>| {
        p.map(|p| encoding::line_of(bytes, p.byte() as usize))
            .unwrap_or(0)
    };
    let line_err = |line: u64, msg: String| Error::Other(format!("{label} line {line}: {msg}"));
    let csv_err = |e: ::csv::Error| {
        let line = line_at(e.position());
        line_err(line, format!("malformed CSV: {e}"))
    };
    let Some(first) = records.next() else {
        return Err(Error::Other(format!("{label}: no header row")));
    };
    let first = first.map_err(csv_err)?;
    // The header's cells; `None` for an unnamed column (kept only while
    // no row has a value in it).
    let mut columns: Vec<Option<String>> = Vec::with_capacity(first.len());
    for cell in first.iter() {
        let name = std::str::from_utf8(cell)
            .map_err(|_| {
                line_err(
                    1,
                    format!("the header is not valid UTF-8 ({NOT_UTF8_HINT})"),
                )
            })?
            .trim()
            .to_string();
        if name.contains('\0') {
            return Err(line_err(
                1,
                "the header holds NUL characters: the file looks like UTF-16 without a byte-order mark (open it with encoding: \"utf-16\")".into(),
            ));
        }
        if name.is_empty() {
            columns.push(None);
            continue;
        }
        if columns
            .iter()
            .flatten()
            .any(|h| h.eq_ignore_ascii_case(&name))
        {
            return Err(line_err(1, format!("column '{name}' appears twice")));
        }
        columns.push(Some(name));
    }
    let header: Vec<String> = columns.iter().flatten().cloned().collect();
    let Some(key_idx) = columns.iter().position(|h| {
        h.as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&opts.key))
    }) else {
        return Err(Error::Other(format!(
            "{label}: no column '{}' (columns: {})",
            opts.key,
            header.join(", ")
        )));
    };
    let meta = Meta {
        key: columns[key_idx].clone().unwrap_or_default(),
        header,
        delimiter: opts.delimiter,
        separator: opts.multi_value_separator.clone(),
        bom,
        crlf,
        cr,
        encoding,
    };
    let mut table = Table::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    // The csv crate reads an unclosed quote as a field running to the end
    // of the file; an odd number of quotes plus a multi-line last field
    // gives that away.
    let odd_quotes = bytes.iter().filter(|&&b| b == b'"').count() % 2 == 1;
    let mut records = records.peekable();
    while let Some(rec) = records.next() {
        let rec = rec.map_err(csv_err)?;
        let line = line_at(rec.position());
        if odd_quotes
            && records.peek().is_none()
            && rec.iter().any(|c| c.contains(&b'\n') || c.contains(&b'\r'))
        {
            return Err(line_err(line, "a quoted field is not closed".into()));
        }
        // A blank line, or a row of empty cells (Excel's trailing `;;;`).
        if rec.iter().all(|c| c.is_empty()) {
            continue;
        }
        // A short row is fine when only unnamed columns are missing.
        let short_ok =
            rec.len() < columns.len() && columns[rec.len()..].iter().all(Option::is_none);
        if rec.len() != columns.len() && !short_ok {
            return Err(line_err(
                line,
                format!(
                    "{} fields, but the header has {} (a quote not closed?)",
                    rec.len(),
                    columns.len()
                ),
            ));
        }
        if let Some(i) = columns
            .iter()
            .zip(rec.iter())
            .position(|(c, cell)| c.is_none() && !cell.is_empty())
        {
            return Err(line_err(
                1,
                format!(
                    "column {} has no name, but line {line} has a value in it",
                    i + 1
                ),
            ));
        }
        let mut entry = Entry::new("");
        for (col, cell) in columns.iter().zip(rec.iter()) {
            let Some(col) = col else { continue };
            let text = std::str::from_utf8(cell).map_err(|_| {
                line_err(
                    line,
                    format!("column '{col}' is not valid UTF-8 ({NOT_UTF8_HINT})"),
                )
            })?;
            if text.is_empty() {
                continue;
            }
            let values: Vec<Value> = match &meta.separator {
                Some(sep) => text
                    .split(sep.as_str())
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::from_text(col, p))
                    .collect(),
                None => vec![Value::from_text(col, text)],
            };
            if !values.is_empty() {
                entry.push(col, values);
            }
        }
        let key = std::str::from_utf8(rec.get(key_idx).unwrap_or_default())
            .unwrap_or_default()
            .to_string();
        if key.is_empty() {
            return Err(line_err(
                line,
                format!("empty key in column '{}'", meta.key),
            ));
        }
        if let Some(prev) = first_line.get(&key) {
            return Err(line_err(
                line,
                format!("duplicate key '{key}' (first on line {prev})"),
            ));
        }
        first_line.insert(key.clone(), line);
        entry.dn = key.clone();
        entry.anchor = Some(key.clone());
        if meta.separator.is_some() {
            // The key is one value even when it contains the separator.
            entry.set(&meta.key, vec![Value::Text(key.clone())]);
            entry = ordered(&entry, &meta.header);
        }
        table.insert(key, entry);
    }
    Ok(Data { table, meta })
}

/// The entry with its attributes in column order.
fn ordered(entry: &Entry, header: &[String]) -> Entry {
    let mut out = Entry::new(entry.dn.clone());
    out.anchor = entry.anchor.clone();
    for col in header {
        if let Some(a) = entry.attr(col) {
            out.push(col, a.values.iter().cloned());
        }
    }
    out
}

/// A value as cell text: GUIDs and SIDs canonical, other binary base64.
fn cell_text(attr: &str, v: &Value) -> String {
    v.display(attr)
        .unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode(v.as_bytes()))
}

/// The cell for one attribute, or why it cannot be written.
fn cell(entry: &Entry, col: &str, meta: &Meta) -> std::result::Result<String, String> {
    let values = entry.values(col);
    let texts: Vec<String> = values.iter().map(|v| cell_text(col, v)).collect();
    match &meta.separator {
        None if texts.len() > 1 => Err(format!(
            "'{col}' has {} values, but a CSV cell holds one unless the connection sets multi_value_separator",
            texts.len()
        )),
        None => Ok(texts.into_iter().next().unwrap_or_default()),
        Some(sep) => {
            if let Some(t) = texts.iter().find(|t| t.contains(sep.as_str())) {
                return Err(format!(
                    "'{col}' value '{t}' contains the multi-value separator '{sep}'"
                ));
            }
            Ok(texts.join(sep))
        }
    }
}

/// Checks that every cell of a row can be written.
fn check_row(entry: &Entry, meta: &Meta, label: &str) -> Result<()> {
    for col in &meta.header {
        if col.eq_ignore_ascii_case(&meta.key) {
            continue;
        }
        cell(entry, col, meta)
            .map_err(|cause| Error::object(format!("{label}: row '{}'", entry.dn), cause, None))?;
    }
    Ok(())
}

/// Writes the header and the rows.
fn render(d: &Data<Meta>, label: &str) -> Result<Vec<u8>> {
    let meta = &d.meta;
    let out = Vec::new();
    let terminator = if meta.crlf {
        ::csv::Terminator::CRLF
    } else if meta.cr {
        ::csv::Terminator::Any(b'\r')
    } else {
        ::csv::Terminator::Any(b'\n')
    };
    let mut w = ::csv::WriterBuilder::new()
        .delimiter(meta.delimiter)
        .terminator(terminator)
        .from_writer(out);
    let io = |e: ::csv::Error| Error::Other(format!("{label}: cannot write CSV: {e}"));
    w.write_record(&meta.header).map_err(io)?;
    for (slot, e) in d.table.iter() {
        let key = d.table.key(slot).unwrap_or(&e.dn);
        let mut row = Vec::with_capacity(meta.header.len());
        for col in &meta.header {
            if col.eq_ignore_ascii_case(&meta.key) {
                row.push(key.to_string());
            } else {
                row.push(cell(e, col, meta).map_err(|cause| {
                    Error::object(format!("{label}: row '{key}'"), cause, None)
                })?);
            }
        }
        w.write_record(&row).map_err(io)?;
    }
    let text = w
        .into_inner()
        .map_err(|e| Error::Other(format!("{label}: cannot write CSV: {e}")))?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::Other(format!("{label}: cannot write CSV: a cell is not text")))?;
    encoding::encode(&text, meta.encoding, meta.bom)
        .map_err(|e| Error::Other(format!("{label}: cannot write CSV: {e}")))
}

/// Values without empty strings (an empty cell is no value).
fn non_empty(values: &[Value]) -> Vec<Value> {
    values
        .iter()
        .filter(|v| !matches!(v, Value::Text(t) if t.is_empty()))
        .cloned()
        .collect()
}

/// The header with `name` appended when it is a new column; returns the
/// spelling to use.
fn column_for(header: &mut Vec<String>, name: &str) -> String {
    match header.iter().find(|h| h.eq_ignore_ascii_case(name)) {
        Some(h) => h.clone(),
        None => {
            header.push(name.to_string());
            name.to_string()
        }
    }
}

#[async_trait]
impl Connector for CsvConnector {
    fn kind(&self) -> &'static str {
        "csv"
    }

    fn describe(&self) -> String {
        self.store.label().to_string()
    }

    fn profile(&self) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "path": file::shown_path(self.store.path()),
            "key": self.opts.key,
            "delimiter": (self.opts.delimiter as char).to_string(),
            "multi_value_separator": self.opts.multi_value_separator,
            "encoding": self.opts.encoding.map(Encoding::name),
        }))
    }

    async fn test(&self) -> Result<TestReport> {
        let mut r = self.store.test_report("csv")?;
        let (rows, cols) = self
            .store
            .read_any(|d| (d.table.len(), d.meta.header.join(", ")))?;
        r.details.retain(|(k, _)| k != "entries");
        r.details.push(("rows".into(), rows.to_string()));
        r.details.push(("columns".into(), cols));
        r.details.push(("key".into(), self.opts.key.clone()));
        Ok(r)
    }

    async fn search(&self, q: &SearchQuery, sink: &mut Sink<'_>) -> Result<()> {
        let filter = Filter::parse(&q.filter).map_err(|e| Error::usage(e.to_string()))?;
        let limit = q.limit.unwrap_or(usize::MAX);
        let found: Vec<Entry> = self.store.read(|d| {
            d.table
                .entries()
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
        self.columns()
    }

    async fn get(&self, identity: &str) -> Result<Option<Entry>> {
        self.store.read(|d| {
            self.find(&d.table, identity)
                .map(|s| s.and_then(|s| d.table.get(s).cloned()))
        })?
    }

    async fn create(&self, dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
        let label = self.store.label().to_string();
        self.store.write(|d| {
            let key_col = d.meta.key.clone();
            let given: Vec<Value> = attrs
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(&key_col))
                .flat_map(|(_, v)| non_empty(v))
                .collect();
            let key = match given.as_slice() {
                [] => dn.to_string(),
                [one] => cell_text(&key_col, one),
                _ => {
                    return Err(Error::object(
                        format!("{label}: row '{dn}'"),
                        format!("the key column '{key_col}' takes one value"),
                        None,
                    ));
                }
            };
            if key.is_empty() {
                return Err(Error::usage(format!(
                    "{label}: create needs a key ('{key_col}' or the dn argument)"
                )));
            }
            if d.table.find_exact(&key).is_some() {
                return Err(Error::object(
                    format!("{label}: row '{key}'"),
                    format!("already exists (duplicate key in column '{key_col}')"),
                    Some(68),
                ));
            }
            let mut header = d.meta.header.clone();
            let mut entry = Entry::new(key.clone());
            entry.anchor = Some(key.clone());
            for (name, values) in attrs {
                if name.eq_ignore_ascii_case(&key_col) {
                    continue;
                }
                let values = non_empty(values);
                if values.is_empty() {
                    continue;
                }
                let col = column_for(&mut header, name);
                entry.push(&col, values);
            }
            entry.set(&key_col, vec![Value::Text(key.clone())]);
            let entry = ordered(&entry, &header);
            let meta = Meta {
                header,
                ..d.meta.clone()
            };
            check_row(&entry, &meta, &label)?;
            d.meta = meta;
            d.table.insert(key, entry.clone());
            Ok(entry)
        })
    }

    async fn modify(&self, identity: &str, changes: &[Change]) -> Result<()> {
        let label = self.store.label().to_string();
        self.store.write(|d| {
            let slot = self.require(&d.table, identity)?;
            let Some(current) = d.table.get(slot) else {
                return Err(Error::NotFound(identity.to_string()));
            };
            let mut entry = current.clone();
            let mut header = d.meta.header.clone();
            for ch in changes {
                let (name, values) = match ch {
                    Change::Replace(n, v) => (n, Change::Replace(n.clone(), non_empty(v))),
                    Change::Add(n, v) => (n, Change::Add(n.clone(), non_empty(v))),
                    Change::Delete(n, v) => {
                        let kept = non_empty(v);
                        if kept.is_empty() && !v.is_empty() {
                            continue; // deleting only "" deletes nothing
                        }
                        (n, Change::Delete(n.clone(), kept))
                    }
                };
                let col = match &values {
                    Change::Add(_, v) | Change::Replace(_, v) if !v.is_empty() => {
                        column_for(&mut header, name)
                    }
                    _ => d.meta.column(name).unwrap_or(name).to_string(),
                };
                file::apply_change(&mut entry, &values, &col);
            }
            // Setting the key to the value it has is fine (a sync flow may
            // do that); changing it is not.
            if entry.values(&d.meta.key) != [Value::Text(current.dn.clone())] {
                return Err(Error::object(
                    format!("{label}: row '{}'", current.dn),
                    format!(
                        "the key column '{}' cannot be changed (it identifies the row; delete the row and create it again)",
                        d.meta.key
                    ),
                    None,
                ));
            }
            let entry = ordered(&entry, &header);
            let meta = Meta {
                header,
                ..d.meta.clone()
            };
            check_row(&entry, &meta, &label)?;
            d.meta = meta;
            if let Some(e) = d.table.get_mut(slot) {
                *e = entry;
            }
            Ok(())
        })
    }

    async fn delete(&self, identity: &str) -> Result<()> {
        self.store.write(|d| {
            let slot = self.require(&d.table, identity)?;
            d.table.remove(slot);
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

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).expect("write");
        p
    }

    fn all(c: &CsvConnector, filter: &str) -> Vec<Entry> {
        let mut out = Vec::new();
        let q = SearchQuery {
            filter: filter.into(),
            ..SearchQuery::default()
        };
        block(c.search(&q, &mut |e| {
            out.push(e);
            Ok(true)
        }))
        .expect("search");
        out
    }

    const HR: &str = "\u{feff}employee_id,first,last,dept,groups\n\
        E1,Ann,Lee,Sales,a;b\n\
        E2,\"Smith, Jr.\",Zoë,Engineering,\n\
        e1,Bob,Low,Finance,c\n";

    #[test]
    fn reads_rows_as_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "hr.csv", HR);
        let mut o = CsvOptions::new("employee_id");
        o.multi_value_separator = Some(";".into());
        let c = CsvConnector::open(&p, o).expect("open");
        let rows = all(&c, "");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].dn, "E1");
        assert_eq!(rows[0].anchor.as_deref(), Some("E1"));
        assert_eq!(rows[0].values("groups"), &[text("a"), text("b")]);
        assert_eq!(rows[1].first("FIRST").as_deref(), Some("Smith, Jr."));
        assert!(!rows[1].has("groups"));
        assert_eq!(rows[0].attributes()[0].name, "employee_id");
        assert_eq!(all(&c, "(dept=sales)").len(), 1);
        assert_eq!(all(&c, "(last=ZOË)").len(), 1);
        assert_eq!(all(&c, "(objectClass=*)").len(), 3);
        let e1 = block(c.get("E1")).expect("get").expect("E1");
        assert_eq!(e1.first("first").as_deref(), Some("Ann"));
        let e1b = block(c.get("e1")).expect("get").expect("e1");
        assert_eq!(e1b.first("first").as_deref(), Some("Bob"));
        assert!(block(c.get("e2")).expect("get").is_some());
        assert!(block(c.get("E9")).expect("get").is_none());
        let mut n = 0;
        let q = SearchQuery {
            limit: Some(2),
            attrs: Some(vec!["FIRST".into()]),
            ..SearchQuery::default()
        };
        block(c.search(&q, &mut |e| {
            assert_eq!(e.attributes().len(), 1);
            n += 1;
            Ok(true)
        }))
        .expect("search");
        assert_eq!(n, 2);
    }

    #[test]
    fn garbage_never_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("g.csv");
        let tokens = [
            "id", ",", "\"", "\n", "\r\n", "a", "é", "\u{feff}", ";", " ", "\u{0}",
        ];
        let mut seed: u64 = 7;
        for _ in 0..800 {
            let mut text = String::new();
            for _ in 0..(seed % 20) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(tokens[(seed >> 33) as usize % tokens.len()]);
            }
            std::fs::write(&p, &text).expect("write");
            let o = CsvOptions {
                multi_value_separator: Some(";".into()),
                ..CsvOptions::new("id")
            };
            if let Ok(c) = CsvConnector::open(&p, o) {
                let _ = all(&c, "");
                let _ = c.store.save();
            }
        }
    }

    #[test]
    fn quickstart_hr_file_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/quickstart/hr.csv");
        let c = CsvConnector::open(&p, CsvOptions::new("employee_id")).expect("open");
        assert_eq!(all(&c, "").len(), 12);
        assert_eq!(all(&c, "(status=terminated)").len(), 2);
        assert_eq!(
            all(&c, "(|(dept=Sales)(dept=Engineering)(dept=Finance))").len(),
            12
        );
        assert_eq!(all(&c, "(last=Smith, Jr.)").len(), 1);
        assert_eq!(all(&c, "(first=zoë)").len(), 1);
    }

    #[test]
    fn case_only_duplicates_are_ambiguous_for_get() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "k.csv", "id\nAb\naB\n");
        let c = CsvConnector::open(&p, CsvOptions::new("id")).expect("open");
        assert!(matches!(block(c.get("ab")), Err(Error::Ambiguous { .. })));
        assert!(block(c.get("aB")).expect("get").is_some());
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                "a,b,c\n1,2,3\n",
                "hr.csv: no column 'employee_id' (columns: a, b, c)",
            ),
            (
                "employee_id,x\nE1,1\nE2,2\nE1,3\n",
                "hr.csv line 4: duplicate key 'E1' (first on line 2)",
            ),
            ("employee_id,x\nE1,1\n,2\n", "hr.csv line 3: empty key"),
            (
                "employee_id,x\nE1,1,3\n",
                "hr.csv line 2: 3 fields, but the header has 2",
            ),
            (
                "employee_id,x\nE1,\"open\nE2,2\n",
                "hr.csv line 2: a quoted field is not closed",
            ),
            (
                "employee_id,,x\nE1,v,1\n",
                "hr.csv line 1: column 2 has no name, but line 2 has a value",
            ),
            (
                "employee_id,X,x\n",
                "hr.csv line 1: column 'x' appears twice",
            ),
        ];
        for (content, want) in cases {
            let p = write(dir.path(), "hr.csv", content);
            let label = dir.path().join("hr.csv").display().to_string();
            let e = CsvConnector::open(&p, CsvOptions::new("employee_id"))
                .err()
                .unwrap_or_else(|| panic!("{content:?} should fail"));
            let msg = e.to_string().replace(&label, "hr.csv");
            assert!(msg.starts_with(want), "{msg} vs {want}");
        }
        std::fs::write(dir.path().join("bad.csv"), b"employee_id,x\nE1,\xff\n").expect("w");
        let e = CsvConnector::open(dir.path().join("bad.csv"), CsvOptions::new("employee_id"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 2: column 'x' is not valid UTF-8"), "{e}");
        assert!(CsvConnector::open(dir.path().join("x.csv"), CsvOptions::default()).is_err());
    }

    #[test]
    fn round_trip_keeps_order_bom_and_quotes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "hr.csv", HR);
        let mut o = CsvOptions::new("employee_id");
        o.multi_value_separator = Some(";".into());
        let c = CsvConnector::open(&p, o.clone()).expect("open");
        c.store.save().expect("save");
        let written = std::fs::read_to_string(&p).expect("read");
        assert_eq!(written, HR);
        let again = CsvConnector::open(&p, o).expect("reopen");
        assert_eq!(all(&c, ""), all(&again, ""));
    }

    #[test]
    fn writes_create_modify_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("new.csv");
        let c = CsvConnector::open(&p, CsvOptions::new("id")).expect("open");
        assert!(!block(c.test()).expect("test").reachable);
        // Read as a source, a missing file is an error naming it; writing creates it.
        let q = SearchQuery::default();
        let e = block(c.search(&q, &mut |_| Ok(true))).expect_err("missing file");
        assert!(e.to_string().contains("new.csv: no such file"), "{e}");
        let e = block(c.get("X1")).expect_err("missing file");
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(!p.exists());
        let e = block(c.create(
            "ignored",
            &[
                ("id".into(), vec![text("X1")]),
                ("name".into(), vec![text("Lee, \"Ann\"")]),
                ("empty".into(), vec![text("")]),
            ],
        ))
        .expect("create");
        assert_eq!(e.dn, "X1");
        assert!(block(c.test()).expect("test").reachable);
        block(c.create("X2", &[("Mail".into(), vec![text("x2@x")])])).expect("create");
        let dup = block(c.create("X2", &[])).expect_err("duplicate");
        assert!(dup.to_string().contains("already exists"), "{dup}");
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "id,name,Mail\nX1,\"Lee, \"\"Ann\"\"\",\nX2,,x2@x\n"
        );
        let two = block(c.modify(
            "X1",
            &[Change::Add("mail".into(), vec![text("a"), text("b")])],
        ))
        .expect_err("two values without separator");
        assert!(two.to_string().contains("multi_value_separator"), "{two}");
        block(c.modify(
            "x1",
            &[
                Change::Replace("MAIL".into(), vec![text("x1@x")]),
                Change::Replace("dept".into(), vec![text("Sales")]),
                Change::Delete("name".into(), vec![]),
            ],
        ))
        .expect("modify");
        let key = block(c.modify("X1", &[Change::Replace("id".into(), vec![text("Z")])]))
            .expect_err("key change");
        assert!(key.to_string().contains("cannot be changed"), "{key}");
        block(c.modify("X1", &[Change::Replace("ID".into(), vec![text("X1")])]))
            .expect("setting the key to its value is a no-op");
        block(c.delete("X2")).expect("delete");
        assert!(matches!(block(c.delete("X2")), Err(Error::NotFound(_))));
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "id,name,Mail,dept\nX1,,x1@x,Sales\n"
        );
        assert!(block(c.rename("X1", "Y")).is_err());
        let prof = c.profile().expect("profile");
        assert_eq!(prof["key"], "id");
        assert_eq!(prof["delimiter"], ",");
    }

    #[test]
    fn multi_values_and_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "g.csv", "name;members\r\ng1;a|b\r\n");
        let o = CsvOptions {
            key: "name".into(),
            delimiter: b';',
            multi_value_separator: Some("|".into()),
            encoding: None,
        };
        let c = CsvConnector::open(&p, o).expect("open");
        c.begin_batch();
        block(c.modify("g1", &[Change::Add("members".into(), vec![text("c")])])).expect("add");
        block(c.create("g2", &[("members".into(), vec![text("x"), text("y")])])).expect("c");
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "name;members\r\ng1;a|b\r\n"
        );
        block(c.flush()).expect("flush");
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "name;members\r\ng1;a|b|c\r\ng2;x|y\r\n"
        );
        let bad = block(c.modify("g1", &[Change::Add("members".into(), vec![text("p|q")])]))
            .expect_err("separator inside a value");
        assert!(bad.to_string().contains("separator"), "{bad}");
        let t = block(c.test()).expect("test");
        assert!(t.reachable);
        assert!(t.details.iter().any(|(k, v)| k == "rows" && v == "2"));
    }
}
