//! End-to-end tests of the file connectors in sync runs (issue 3 items 8 and 10, API §5):
//! the README's quickstart (HR CSV -> LDIF directory), CSV -> OpenLDAP, OpenLDAP -> CSV and
//! OpenLDAP -> LDIF, atomic file writes (a reader never sees half a file, SIGKILL mid-run
//! leaves a complete file and a rerun converges), clear errors for bad files, and the exit
//! codes 3 (failed objects) and 4 (refused run).
//!
//! Every test runs the real `idsync` binary (IDSYNC_HOME a fresh temporary directory,
//! NO_COLOR=1, the bind password only through `secret()`), and checks each effect
//! independently: `ldapsearch` for slapd, and the CSV / LDIF files parsed here (the `csv`
//! crate, a small LDIF reader), never through idsync.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::Ldap;

/// The environment variable the scripts read the bind password from.
const PW_ENV: &str = support::PW_ENV;
/// The second suffix of the test slapd.
const TARGET: &str = "dc=target,dc=com";

// ---------------------------------------------------------------------------------------------
// helpers: running idsync

fn idsync_cmd(home: &Path) -> Command {
    support::idsync_command(home)
}

fn no_panic(what: &str, stdout: &str, stderr: &str) {
    for s in [stdout, stderr] {
        assert!(
            !s.contains("panicked")
                && !s.contains("internal error")
                && !s.contains("RUST_BACKTRACE"),
            "panic text in idsync output:\n--- {what} ---\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
    }
}

/// Writes `script` to a file in `dir` and runs `idsync [--format F] FILE` (current directory
/// `dir`); returns (exit code, stdout, stderr).
fn run_script(
    home: &Path,
    dir: &Path,
    format: Option<&str>,
    script: &str,
) -> (i32, String, String) {
    let file = dir.join(format!("{}.rhai", support::unique("s")));
    std::fs::write(&file, script).unwrap();
    let mut cmd = idsync_cmd(home);
    cmd.current_dir(dir);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    cmd.arg(&file);
    let out = cmd.output().expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    no_panic(script, &stdout, &stderr);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Runs with `--format json`, requires exit `code`; returns the printed value and stderr.
fn json_exit(home: &Path, dir: &Path, code: i32, script: &str) -> (Json, String) {
    let (c, out, err) = run_script(home, dir, Some("json"), script);
    assert_eq!(
        c, code,
        "expected exit {code}:\n--- script ---\n{script}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    let v = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!("invalid JSON ({e}):\n--- script ---\n{script}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
    });
    (v, err)
}

fn json_ok(home: &Path, dir: &Path, script: &str) -> Json {
    json_exit(home, dir, 0, script).0
}

/// Runs and requires a non-zero exit; returns (code, stderr).
fn fails(home: &Path, dir: &Path, script: &str) -> (i32, String) {
    let (c, out, err) = run_script(home, dir, None, script);
    assert_ne!(c, 0, "expected a failure:\n{script}\n--- stdout ---\n{out}");
    (c, err)
}

use support::report::{counts, errors, n, s};

/// A Rhai string literal.
fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Names in `dir` that look like an atomic write's temp file.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// (bytes, inode, mtime) of a file: equal means the file was not rewritten.
fn stamp(p: &Path) -> (Vec<u8>, u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (std::fs::read(p).unwrap(), m.ino(), m.modified().unwrap())
}

// ---------------------------------------------------------------------------------------------
// helpers: reading CSV and LDIF files (independently of idsync)

/// A CSV file parsed strictly (every record must have the header's field count): the header
/// and the rows.
#[derive(Debug, Clone, PartialEq)]
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn parse(bytes: &[u8]) -> Result<Csv, String> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(bytes);
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| format!("header: {e}"))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for r in rdr.records() {
            let r = r.map_err(|e| format!("record: {e}"))?;
            rows.push(r.iter().map(str::to_string).collect());
        }
        Ok(Csv { header, rows })
    }

    fn read(p: &Path) -> Csv {
        let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Csv::parse(&bytes).unwrap_or_else(|e| {
            panic!(
                "{} is not valid CSV: {e}\n{}",
                p.display(),
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }

    /// key -> (column -> cell).
    fn by_key(&self, key: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        let k = self.col(key);
        let mut out = BTreeMap::new();
        for r in &self.rows {
            let row: BTreeMap<String, String> =
                self.header.iter().cloned().zip(r.iter().cloned()).collect();
            assert!(
                out.insert(r[k].clone(), row).is_none(),
                "duplicate key {} in {self:?}",
                r[k]
            );
        }
        out
    }
}

/// One LDIF record: DN and (attribute, value) pairs in file order, base64 decoded.
type Record = (String, Vec<(String, String)>);

/// Parses content LDIF (unfolds continuation lines, decodes `::` values, skips `version:`).
fn read_ldif(text: &str) -> Vec<Record> {
    use base64::Engine;
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        if let Some(rest) = raw.strip_prefix(' ') {
            lines
                .last_mut()
                .unwrap_or_else(|| panic!("continuation with nothing to continue:\n{text}"))
                .push_str(rest);
        } else {
            lines.push(raw.to_string());
        }
    }
    let mut out: Vec<Record> = Vec::new();
    let mut cur: Option<Record> = None;
    for l in lines {
        if l.is_empty() {
            out.extend(cur.take());
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        let (name, rest) = l
            .split_once(':')
            .unwrap_or_else(|| panic!("bad LDIF line {l:?} in:\n{text}"));
        let value = match rest.strip_prefix(':') {
            Some(b64) => String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .unwrap_or_else(|e| panic!("bad base64 in {l:?}: {e}")),
            )
            .expect("UTF-8 value"),
            None => rest.strip_prefix(' ').unwrap_or(rest).to_string(),
        };
        if name.eq_ignore_ascii_case("dn") {
            out.extend(cur.take());
            cur = Some((value, Vec::new()));
        } else if name.eq_ignore_ascii_case("version") && cur.is_none() {
            assert_eq!(value, "1");
        } else {
            cur.as_mut()
                .unwrap_or_else(|| panic!("attribute before dn: {l:?}"))
                .1
                .push((name.to_string(), value));
        }
    }
    out.extend(cur);
    out
}

fn ldif_vals(rec: &Record, name: &str) -> Vec<String> {
    let mut v: Vec<String> = rec
        .1
        .iter()
        .filter(|(a, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect();
    v.sort();
    v
}

fn set(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

// ---------------------------------------------------------------------------------------------
// helpers: the directory (ldapsearch)

type Attrs = BTreeMap<String, Vec<String>>;

/// `ldapsearch -LLL -o ldif-wrap=no` output: DN (lowercased, `\2C` written `\,`) ->
/// attribute (lowercased) -> sorted values.
fn search(
    l: &Ldap,
    base: &str,
    scope: &str,
    filter: &str,
    attrs: &[&str],
) -> BTreeMap<String, Attrs> {
    let mut out = BTreeMap::new();
    for (dn, pairs) in read_ldif(&l.ldapsearch(base, scope, filter, attrs)) {
        let mut a = Attrs::new();
        for (k, v) in pairs {
            a.entry(k.to_ascii_lowercase()).or_default().push(v);
        }
        for v in a.values_mut() {
            v.sort();
        }
        out.insert(norm_dn(&dn), a);
    }
    out
}

fn norm_dn(dn: &str) -> String {
    dn.replace("\\2C", "\\,")
        .replace("\\2c", "\\,")
        .to_lowercase()
}

/// Everything under `base` with operational attributes: equal snapshots = nothing written.
fn snapshot(l: &Ldap, base: &str) -> BTreeMap<String, Attrs> {
    search(l, base, "sub", "", &["*", "+"])
}

fn persons(l: &Ldap, base: &str) -> BTreeMap<String, Attrs> {
    search(l, base, "sub", "(objectClass=inetOrgPerson)", &["*", "+"])
}

fn vals(a: &Attrs, name: &str) -> Vec<String> {
    a.get(&name.to_ascii_lowercase())
        .cloned()
        .unwrap_or_default()
}

fn add_ou(l: &Ldap, parent: &str, name: &str) -> String {
    let dn = format!("ou={name},{parent}");
    l.ldapadd(&format!(
        "dn: {dn}\nobjectClass: organizationalUnit\nou: {name}\n"
    ));
    dn
}

fn connect_ldap(l: &Ldap, var: &str, base: &str) -> String {
    format!(
        "let {var} = connect_ldap({url}, #{{ bind_dn: {dn}, password: secret(\"{PW_ENV}\"), base: {base} }});\n",
        url = lit(&l.url),
        dn = lit(&l.admin_dn),
        base = lit(base)
    )
}

fn utc_today() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y%m%d"])
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. the quickstart, as the README's first command runs it

/// Cells of the table rows (lines with `│`) in `text`, header row included.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.contains('│'))
        .map(|l| l.split('│').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// `key: value` lines of a printed record.
fn record(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.contains('│'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The part of `out` between the line `from` and the line `to`.
fn section<'a>(out: &'a str, from: &str, to: &str) -> &'a str {
    let a = out
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in the output:\n{out}"));
    let rest = &out[a + from.len()..];
    let b = rest
        .find(to)
        .unwrap_or_else(|| panic!("no {to:?} after {from:?} in the output:\n{out}"));
    &rest[..b]
}

fn run_quickstart(home: &Path) -> String {
    let out = idsync_cmd(home)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("scripts/quickstart.rhai")
        .output()
        .expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    no_panic("quickstart", &stdout, &stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "quickstart failed:\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    stdout
}

fn check_report(text: &str, want: &[(&str, &str)]) {
    let r = record(text);
    for (k, v) in want {
        assert_eq!(
            r.get(*k).map(String::as_str),
            Some(*v),
            "report field {k} in:\n{text}"
        );
    }
}

/// The 10 active people of scripts/quickstart/hr.csv: (DN, cn, employeeNumber).
const QS_PEOPLE: [(&str, &str, &str); 10] = [
    ("cn=Ann Lee,ou=Sales", "Ann Lee", "E1001"),
    ("cn=Bob Martinez,ou=Sales", "Bob Martinez", "E1002"),
    ("cn=Chen Wei,ou=Engineering", "Chen Wei", "E1003"),
    ("cn=Zoë Müller,ou=Engineering", "Zoë Müller", "E1004"),
    (
        "cn=David Smith\\, Jr.,ou=Finance",
        "David Smith, Jr.",
        "E1005",
    ),
    (
        "cn=Emma Johansson,ou=Engineering",
        "Emma Johansson",
        "E1006",
    ),
    ("cn=Grace O'Neil,ou=Sales", "Grace O'Neil", "E1008"),
    ("cn=Hiro Tanaka,ou=Engineering", "Hiro Tanaka", "E1009"),
    ("cn=Isabel Costa,ou=Finance", "Isabel Costa", "E1010"),
    ("cn=Kara Novak,ou=Engineering", "Kara Novak", "E1012"),
];

#[test]
fn quickstart_readme_command_previews_runs_reruns_with_zero_writes_and_writes_the_ldif() {
    let home = support::temp_home();
    let hr = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/quickstart/hr.csv");
    let hr_before = std::fs::read(&hr).unwrap();
    let out = run_quickstart(home.path());

    // 1. the preview: Ann's create rows, attribute by attribute, with the rule
    let preview = section(&out, "1. Preview", "2. Run");
    let rows = table_rows(preview);
    assert_eq!(
        rows[0],
        ["step", "op", "object", "attribute", "old", "new", "rule"],
        "{preview}"
    );
    let ann = "cn=Ann Lee,ou=Sales,ou=people,dc=example,dc=com";
    for (attr, new, rule) in [
        (
            "objectClass",
            "top; person; organizationalPerson; inetOrgPerson",
            "create class",
        ),
        ("givenName", "Ann", "givenName <- first"),
        ("sn", "Lee", "sn <- last"),
        ("cn", "Ann Lee", "cn <- |e| ..."),
        ("title", "Account Executive", "title <- title"),
        ("mail", "ann.lee@example.com", "mail <- mail"),
        ("telephoneNumber", "+1 555 0101", "telephoneNumber <- phone"),
        ("employeeNumber", "E1001", "employeeNumber <- employee_id"),
        ("departmentNumber", "Sales", "departmentNumber <- dept"),
        ("uid", "e1001", "uid <- |e| ..."),
    ] {
        let want = ["quickstart/users", "create", ann, attr, "", new, rule];
        assert!(
            rows.iter().any(|r| r == &want),
            "no preview row {want:?} in:\n{preview}"
        );
    }
    assert_eq!(rows.len(), 11, "header + Ann's 10 rows:\n{preview}");
    // 10 people x (objectClass + 9 flows) + the unchanged row
    assert!(preview.contains("(101 rows in all"), "{preview}");

    // 2. the run, 3. the zero-write rerun
    check_report(
        section(&out, "\n2. Run", "3. Run again"),
        &[
            ("step", "quickstart/users"),
            ("status", "ok"),
            ("created", "10"),
            ("updated", "0"),
            ("deprovisioned", "0"),
            ("unchanged", "0"),
            ("failed", "0"),
        ],
    );
    check_report(
        section(&out, "3. Run again", "4. History"),
        &[
            ("status", "ok"),
            ("created", "0"),
            ("updated", "0"),
            ("renamed", "0"),
            ("moved", "0"),
            ("deprovisioned", "0"),
            ("unchanged", "10"),
            ("failed", "0"),
        ],
    );

    // 4. history: two runs, newest first
    let hist = section(&out, "4. History", "The directory now holds");
    let rows = table_rows(hist);
    let col = |name: &str| {
        rows[0]
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name}:\n{hist}"))
    };
    let (id, status, created, unchanged) =
        (col("id"), col("status"), col("created"), col("unchanged"));
    assert_eq!(rows.len(), 3, "header + 2 runs:\n{hist}");
    assert!(hist.contains("2 rows"), "{hist}");
    assert_eq!(
        [
            &rows[1][id],
            &rows[1][status],
            &rows[1][created],
            &rows[1][unchanged]
        ],
        ["2", "ok", "0", "10"]
    );
    assert_eq!(
        [
            &rows[2][id],
            &rows[2][status],
            &rows[2][created],
            &rows[2][unchanged]
        ],
        ["1", "ok", "10", "0"]
    );
    let listing = &out[out.find("The directory now holds").unwrap()..];
    assert!(listing.contains("10 entries"), "{listing}");

    // the LDIF directory, read here: exactly the 10 active people
    let ldif_path = home.path().join("quickstart-directory.ldif");
    let text = std::fs::read_to_string(&ldif_path).unwrap();
    let recs = read_ldif(&text);
    let dns: BTreeSet<String> = recs.iter().map(|r| r.0.clone()).collect();
    let want: BTreeSet<String> = QS_PEOPLE
        .iter()
        .map(|(dn, _, _)| format!("{dn},ou=people,dc=example,dc=com"))
        .collect();
    assert_eq!(dns, want, "{text}");
    assert_eq!(recs.len(), 10, "{text}");
    let mut uuids = BTreeSet::new();
    for (dn, cn, emp) in QS_PEOPLE {
        let dn = format!("{dn},ou=people,dc=example,dc=com");
        let r = recs.iter().find(|r| r.0 == dn).unwrap();
        assert_eq!(ldif_vals(r, "cn"), [cn], "{dn}");
        assert_eq!(ldif_vals(r, "employeeNumber"), [emp], "{dn}");
        assert_eq!(ldif_vals(r, "uid"), [emp.to_lowercase()], "once flow: {dn}");
        assert_eq!(
            ldif_vals(r, "objectClass"),
            set(&["top", "person", "organizationalPerson", "inetOrgPerson"])
        );
        let u = ldif_vals(r, "entryUUID");
        assert!(u.len() == 1 && is_uuid(&u[0]), "entryUUID of {dn}: {u:?}");
        assert!(uuids.insert(u[0].clone()), "entryUUID used twice: {u:?}");
    }
    assert!(
        text.contains("\ndn: cn=David Smith\\, Jr.,ou=Finance,ou=people,dc=example,dc=com\n"),
        "the comma is escaped in the DN:\n{text}"
    );
    assert!(text.contains("\ncn: David Smith, Jr.\n"), "{text}");
    let zoe = recs.iter().find(|r| r.0.starts_with("cn=Zoë")).unwrap();
    assert_eq!(ldif_vals(zoe, "sn"), ["Müller"]);
    // written either base64-encoded (`dn::`) or as UTF-8, never mangled
    assert!(
        text.contains("dn: cn=Zoë Müller,") || text.contains("dn:: "),
        "{text}"
    );
    for gone in ["Farid", "Jonas", "E1007", "E1011"] {
        assert!(!text.contains(gone), "terminated {gone} in the directory");
    }
    assert_eq!(
        std::fs::read(&hr).unwrap(),
        hr_before,
        "the source was rewritten"
    );
    assert!(temp_files(home.path()).is_empty());

    // the quickstart again in the same home: every run writes nothing
    let before = stamp(&ldif_path);
    let out = run_quickstart(home.path());
    for (from, to) in [("\n2. Run", "3. Run again"), ("3. Run again", "4. History")] {
        check_report(
            section(&out, from, to),
            &[
                ("status", "ok"),
                ("created", "0"),
                ("updated", "0"),
                ("deprovisioned", "0"),
                ("unchanged", "10"),
                ("failed", "0"),
            ],
        );
    }
    let hist = section(&out, "4. History", "The directory now holds");
    assert_eq!(table_rows(hist).len(), 5, "4 runs now:\n{hist}");
    assert!(hist.contains("4 rows"), "{hist}");
    assert_eq!(stamp(&ldif_path), before, "the LDIF file was rewritten");
    assert_eq!(std::fs::read(&hr).unwrap(), hr_before);
    assert!(temp_files(home.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. CSV -> OpenLDAP

/// One row of the HR CSV of the CSV -> OpenLDAP test.
#[derive(Clone)]
struct Hr {
    id: String,
    first: &'static str,
    last: &'static str,
    title: &'static str,
    status: &'static str,
    phones: &'static str,
}

fn hr_csv(rows: &[Hr]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "first", "last", "title", "status", "mail", "phones"])
        .unwrap();
    for r in rows {
        let mail = format!("{}@example.com", r.id.to_lowercase());
        w.write_record([&r.id, r.first, r.last, r.title, r.status, &mail, r.phones])
            .unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

#[test]
fn csv_to_openldap_creates_then_writes_nothing_updates_one_and_deprovisions_leavers() {
    let Some(l) = support::slapd() else { return };
    let id = support::unique("csvol");
    let dst = add_ou(l, TARGET, &id);
    let leavers = add_ou(l, &dst, "leavers");
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("hr.csv");
    let step = format!("{id}/users");
    let e = |i: usize| format!("{id}-{i:02}");
    let names: [(&str, &str); 10] = [
        ("Ann", "Lee"),
        ("David", "Smith, Jr."),
        ("Zoë", "Müller"),
        ("Chen", "Wei"),
        ("Emma", "Johansson"),
        ("Grace", "O'Neil"),
        ("Hiro", "Tanaka"),
        ("Isabel", "Costa"),
        ("Kara", "Novak"),
        ("Omar", "Haddad"),
    ];
    let phones = |i: usize| match i {
        0 => "+1 555 0100;+1 555 0200",
        2 => "+49 30 1;+49 30 2;+49 30 3",
        5 => "",
        _ => "+1 555 0999",
    };
    let mut rows: Vec<Hr> = names
        .iter()
        .enumerate()
        .map(|(i, (f, la))| Hr {
            id: e(i),
            first: f,
            last: la,
            title: "Engineer",
            status: "active",
            phones: phones(i),
        })
        .collect();
    std::fs::write(&csv_path, hr_csv(&rows)).unwrap();
    let raw = std::fs::read_to_string(&csv_path).unwrap();
    assert!(raw.contains("\"Smith, Jr.\""), "a quoted field: {raw}");

    let script = |tail: &str| {
        format!(
            "{conn}let hr = connect_csv(\"hr.csv\", #{{ key: \"id\", multi_value_separator: \";\" }});\n\
             let st = sync_step({step}, hr, ol, #{{\n\
               scope: #{{ where: |e| e.status == \"active\" }},\n\
               join: #{{ employeeNumber: \"id\" }},\n\
               create: #{{ parent: {dst}, rdn: |e| `cn=${{dn_escape(e.first + \" \" + e.last)}}`, class: [\"inetOrgPerson\"] }},\n\
               flows: #{{ cn: |e| `${{e.first}} ${{e.last}}`, sn: \"last\", givenName: \"first\", title: \"title\",\n\
                          mail: \"mail\", telephoneNumber: \"phones\", employeeNumber: \"id\" }},\n\
               deprovision: #{{ action: \"disable_move\", parent: {leavers}, prefix: [\"mail\"] }},\n\
               target_base: {dst},\n\
             }});\n{tail}\n",
            conn = connect_ldap(l, "ol", TARGET),
            step = lit(&step),
            dst = lit(&dst),
            leavers = lit(&leavers),
        )
    };
    let run_ok = |tail: &str| json_ok(home.path(), dir.path(), &script(tail));
    let dn_of = |i: usize| {
        let (f, la) = names[i];
        norm_dn(&format!("cn={f} {},{dst}", la.replace(',', "\\,")))
    };

    // initial run: 10 objects, with the quoted comma, the non-ASCII name and multi-values
    let r = run_ok("st.run()");
    counts(&r, &[("created", 10)]);
    let got = persons(l, &dst);
    let want: BTreeSet<String> = (0..10).map(dn_of).collect();
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), want);
    for (i, (f, la)) in names.iter().enumerate() {
        let a = &got[&dn_of(i)];
        assert_eq!(vals(a, "cn"), [format!("{f} {la}")]);
        assert_eq!(vals(a, "sn"), [la.to_string()]);
        assert_eq!(vals(a, "givenName"), [f.to_string()]);
        assert_eq!(vals(a, "employeeNumber"), [e(i)]);
        assert_eq!(vals(a, "title"), ["Engineer"]);
        assert_eq!(vals(a, "mail"), [format!("{}@example.com", e(i))]);
        let mut ph: Vec<String> = phones(i)
            .split(';')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        ph.sort();
        assert_eq!(
            vals(a, "telephoneNumber"),
            ph,
            "multi-valued cell of row {i}"
        );
    }
    assert_eq!(vals(&got[&dn_of(0)], "telephoneNumber").len(), 2);
    assert_eq!(vals(&got[&dn_of(2)], "telephoneNumber").len(), 3);
    assert_eq!(vals(&got[&dn_of(1)], "cn"), ["David Smith, Jr."]);
    assert_eq!(vals(&got[&dn_of(2)], "cn"), ["Zoë Müller"]);

    // second run: nothing written (operational attributes included)
    let before = snapshot(l, &dst);
    let r = run_ok("st.run()");
    counts(&r, &[("unchanged", 10)]);
    assert_eq!(
        snapshot(l, &dst),
        before,
        "a run with no source change wrote"
    );

    // one title edited: exactly one update, of that attribute only
    rows[3].title = "Principal Engineer";
    std::fs::write(&csv_path, hr_csv(&rows)).unwrap();
    let r = run_ok("st.run()");
    counts(&r, &[("updated", 1), ("unchanged", 9)]);
    let after = snapshot(l, &dst);
    let changed: Vec<&String> = before
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(changed, [&dn_of(3)], "only Chen's entry changes");
    let (b, a) = (&before[&dn_of(3)], &after[&dn_of(3)]);
    let attrs: BTreeSet<&str> = b
        .keys()
        .chain(a.keys())
        .filter(|k| b.get(*k) != a.get(*k))
        .map(String::as_str)
        .collect();
    // title, and the bookkeeping of a modify (modifyTimestamp has whole seconds)
    let operational = ["entrycsn", "modifiersname", "modifytimestamp"];
    let user: BTreeSet<&str> = attrs
        .iter()
        .copied()
        .filter(|k| !operational.contains(k))
        .collect();
    assert_eq!(user, BTreeSet::from(["title"]), "{b:?}\n{a:?}");
    assert!(attrs.contains("entrycsn"), "{b:?}\n{a:?}");
    assert_eq!(vals(a, "title"), ["Principal Engineer"]);

    // a row removed: deprovisioned per the policy (locked, mail prefixed, moved)
    let today = utc_today();
    let removed = rows.remove(9);
    std::fs::write(&csv_path, hr_csv(&rows)).unwrap();
    let r = run_ok("st.run()");
    counts(&r, &[("deprovisioned", 1), ("unchanged", 9)]);
    let left = persons(l, &leavers);
    assert_eq!(left.len(), 1, "{left:?}");
    let (ldn, la) = left.iter().next().unwrap();
    assert_eq!(ldn, &norm_dn(&format!("cn=Omar Haddad,{leavers}")));
    assert_eq!(vals(la, "pwdAccountLockedTime"), ["000001010000Z"]);
    assert_eq!(
        vals(la, "mail"),
        [format!("{today}-{}@example.com", removed.id.to_lowercase())]
    );
    assert_eq!(persons(l, &dst).len(), 10, "moved, not deleted");

    // status -> terminated: leaves the `where` scope. 1 of 9 links is over 10 %: refused
    // (exit 4, nothing written) until allowed
    rows[4].status = "terminated";
    std::fs::write(&csv_path, hr_csv(&rows)).unwrap();
    let before = snapshot(l, &dst);
    let (c, out, err) = run_script(home.path(), dir.path(), None, &script("st.run()"));
    assert_eq!(c, 4, "{out}\n{err}");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(snapshot(l, &dst), before, "a refused run wrote");
    let r = run_ok("st.run(#{ allow_deletes: 1 })");
    counts(&r, &[("deprovisioned", 1), ("unchanged", 8)]);
    let left = persons(l, &leavers);
    let emma = norm_dn(&format!("cn=Emma Johansson,{leavers}"));
    assert!(left.contains_key(&emma), "{left:?}");
    assert_eq!(
        vals(&left[&emma], "pwdAccountLockedTime"),
        ["000001010000Z"]
    );
    assert_eq!(
        vals(&left[&emma], "mail"),
        [format!("{today}-{}@example.com", e(4))]
    );
    // the others untouched, and the next run writes nothing
    let before = snapshot(l, &dst);
    let r = run_ok("st.run()");
    counts(&r, &[("unchanged", 8)]);
    assert_eq!(snapshot(l, &dst), before);
    let links = json_ok(home.path(), dir.path(), &format!("links({})", lit(&step)));
    assert_eq!(links.as_array().map(Vec::len), Some(8), "{links:#}");
}

/// A source read in full on every run (a CSV or an LDIF file: no change tracking) into slapd:
/// after the first run, a run with no source change skips every object by the hash stored in
/// its link. Checked three ways, none of them idsync's report alone: the run log's plan says
/// "0 to write"; an `ldapsearch` snapshot with entryCSN / modifyTimestamp of the target is the
/// same before and after the run; and a hand edit of a flowed attribute made in the target with
/// `ldapmodify` survives the run (comparing the flows against the target instead of skipping
/// would put the source's value back). A changed source object is then written again.
fn unchanged_full_read_source_is_skipped_by_its_stored_hash(kind: &str) {
    let Some(l) = support::slapd() else { return };
    let id = support::unique("hash");
    let dst = add_ou(l, TARGET, &id);
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let step = format!("{id}/users");
    let people: Vec<(String, String, String)> = (0..6)
        .map(|i| (format!("{id}-{i}"), format!("Given{i}"), format!("Sn{i}")))
        .collect();
    let write_source = |people: &[(String, String, String)]| match kind {
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["id", "first", "last", "title"]).unwrap();
            for (emp, first, last) in people {
                w.write_record([emp.as_str(), first, last, "Engineer"])
                    .unwrap();
            }
            std::fs::write(dir.path().join("src.csv"), w.into_inner().unwrap()).unwrap();
        }
        _ => {
            let text: String = people
                .iter()
                .map(|(emp, first, last)| {
                    format!(
                        "dn: uid={emp},ou=hr,dc=src\nobjectClass: inetOrgPerson\nuid: {emp}\n\
                         id: {emp}\nfirst: {first}\nlast: {last}\ntitle: Engineer\n\n"
                    )
                })
                .collect();
            std::fs::write(dir.path().join("src.ldif"), text).unwrap();
        }
    };
    write_source(&people);
    let connect_source = match kind {
        "csv" => "let src = connect_csv(\"src.csv\", #{ key: \"id\" });\n",
        _ => "let src = connect_ldif(\"src.ldif\");\n",
    };
    let script = format!(
        "{conn}{connect_source}let st = sync_step({step}, src, ol, #{{\n\
           join: #{{ employeeNumber: \"id\" }},\n\
           create: #{{ parent: {dst}, rdn: |e| `uid=${{e.id}}`, class: [\"inetOrgPerson\"] }},\n\
           flows: #{{ cn: |e| `${{e.first}} ${{e.last}}`, sn: \"last\", givenName: \"first\",\n\
                      title: \"title\", employeeNumber: \"id\" }},\n\
           deprovision: #{{ action: \"delete\" }},\n\
           target_base: {dst},\n\
         }});\nst.run()\n",
        conn = connect_ldap(l, "ol", TARGET),
        step = lit(&step),
        dst = lit(&dst),
    );
    let run = || json_ok(home.path(), dir.path(), &script);
    let dn_of = |i: usize| norm_dn(&format!("uid={},{dst}", people[i].0));

    let r = run();
    counts(&r, &[("created", 6)]);
    assert_eq!(persons(l, &dst).len(), 6);

    // A hand edit in the target of an attribute a flow writes (title <- title).
    l.ldapmodify(&format!(
        "dn: uid={},{dst}\nchangetype: modify\nreplace: title\ntitle: Edited By Hand\n",
        people[2].0
    ));
    let before = snapshot(l, &dst);
    assert_eq!(vals(&before[&dn_of(2)], "title"), ["Edited By Hand"]);

    // The source is read in full again, and nothing of it is written.
    let r = run();
    counts(&r, &[("unchanged", 6)]);
    let planned = support::planned_line(home.path());
    assert!(
        planned.contains("planned: 6 source objects, 0 to write, 6 unchanged, 0 to deprovision"),
        "every object must be skipped by its stored hash: {planned}"
    );
    let after = snapshot(l, &dst);
    assert_eq!(
        vals(&after[&dn_of(2)], "title"),
        ["Edited By Hand"],
        "a run with no source change overwrote the hand edit"
    );
    for e in after.values().filter(|e| !vals(e, "uid").is_empty()) {
        assert_eq!(vals(e, "entryCSN").len(), 1, "entryCSN requested: {e:?}");
    }
    let rewritten: BTreeSet<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        rewritten.is_empty(),
        "a run with no source change wrote to the target: {rewritten:?}"
    );

    // One source object changes: it alone is planned and written (its flows are compared
    // against the target, so the hand edit of another object stays).
    let mut changed = people.clone();
    changed[4].2 = "Changed".into();
    write_source(&changed);
    let r = run();
    counts(&r, &[("updated", 1), ("unchanged", 5)]);
    let planned = support::planned_line(home.path());
    assert!(
        planned.contains("planned: 6 source objects, 1 to write, 5 unchanged"),
        "{planned}"
    );
    let last = snapshot(l, &dst);
    let written: Vec<&String> = before
        .keys()
        .filter(|k| before.get(*k) != last.get(*k))
        .collect();
    assert_eq!(written, [&dn_of(4)], "only the changed object is written");
    assert_eq!(vals(&last[&dn_of(4)], "sn"), ["Changed"]);
    assert_eq!(vals(&last[&dn_of(2)], "title"), ["Edited By Hand"]);
}

#[test]
fn unchanged_csv_rows_are_skipped_by_their_stored_hash_and_a_hand_edit_in_slapd_is_kept() {
    unchanged_full_read_source_is_skipped_by_its_stored_hash("csv");
}

#[test]
fn unchanged_ldif_records_are_skipped_by_their_stored_hash_and_a_hand_edit_in_slapd_is_kept() {
    unchanged_full_read_source_is_skipped_by_its_stored_hash("ldif");
}

// ---------------------------------------------------------------------------------------------
// 3. OpenLDAP -> CSV and OpenLDAP -> LDIF

#[test]
fn openldap_to_csv_and_ldif_files_written_once_then_untouched_and_one_change_is_one_cell() {
    let Some(l) = support::slapd() else { return };
    let id = support::unique("olf");
    let src = add_ou(l, &format!("ou=people,{}", l.base), &id);
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let people = [
        (
            "ann",
            "Ann Lee",
            "Lee",
            "mail: ann@example.com\nmail: ann.lee@example.com\ntitle: Engineer\n",
        ),
        (
            "bob",
            "Bob Smith, Jr.",
            "Smith",
            "mail: bob@example.com\ntitle: Controller\n",
        ),
        (
            "zoe",
            "Zoë Müller",
            "Müller",
            "mail: zoe@example.com\ntitle: SRE\n",
        ),
        ("dan", "Dan Brown", "Brown", "mail: dan@example.com\n"),
    ];
    let ldif: Vec<String> = people
        .iter()
        .map(|(uid, cn, sn, extra)| {
            format!("dn: uid={uid},{src}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {sn}\n{extra}")
        })
        .collect();
    l.ldapadd(&ldif.join("\n"));
    let script = format!(
        "{conn}let out = connect_csv(\"people.csv\", #{{ key: \"login\", multi_value_separator: \";\" }});\n\
         let dir = connect_ldif(\"people.ldif\");\n\
         let scope = #{{ base: {src}, filter: \"(objectClass=inetOrgPerson)\" }};\n\
         let to_csv = sync_step({s1}, src, out, #{{ scope: scope,\n\
           create: #{{ parent: \"\", rdn: |e| e.uid }},\n\
           flows: #{{ login: \"uid\", name: \"cn\", mail: \"mail\", title: \"title\" }},\n\
           deprovision: #{{ action: \"delete\" }} }});\n\
         let to_ldif = sync_step({s2}, src, dir, #{{ scope: scope,\n\
           create: #{{ parent: \"ou=people,dc=files,dc=example\", rdn: |e| `uid=${{e.uid}}`, class: [\"top\", \"inetOrgPerson\"] }},\n\
           flows: #{{ cn: \"cn\", sn: \"sn\", mail: \"mail\", title: \"title\" }},\n\
           deprovision: #{{ action: \"delete\" }} }});\n\
         [to_csv.run(), to_ldif.run()]\n",
        conn = connect_ldap(l, "src", &l.base),
        src = lit(&src),
        s1 = lit(&format!("{id}/csv")),
        s2 = lit(&format!("{id}/ldif")),
    );
    let run = || {
        let v = json_ok(home.path(), dir.path(), &script);
        let v = v.as_array().expect("two reports").clone();
        assert_eq!(v.len(), 2);
        (v[0].clone(), v[1].clone())
    };
    let csv_path = dir.path().join("people.csv");
    let ldif_path = dir.path().join("people.ldif");

    let (a, b) = run();
    counts(&a, &[("created", 4)]);
    counts(&b, &[("created", 4)]);

    // the CSV: key column set by the flow, one row per entry, multi-values joined with ';'
    let csv = Csv::read(&csv_path);
    let mut header = csv.header.clone();
    header.sort();
    assert_eq!(header, ["login", "mail", "name", "title"], "{csv:?}");
    assert_eq!(csv.header[0], "login", "the key column first");
    let rows = csv.by_key("login");
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ann", "bob", "dan", "zoe"]
    );
    let mut ann_mail: Vec<&str> = rows["ann"]["mail"].split(';').collect();
    ann_mail.sort();
    assert_eq!(ann_mail, ["ann.lee@example.com", "ann@example.com"]);
    assert_eq!(rows["bob"]["name"], "Bob Smith, Jr.");
    assert_eq!(rows["zoe"]["name"], "Zoë Müller");
    assert_eq!(rows["zoe"]["title"], "SRE");
    assert_eq!(rows["dan"]["title"], "", "no value, empty cell");
    let raw = std::fs::read_to_string(&csv_path).unwrap();
    assert!(raw.contains("\"Bob Smith, Jr.\""), "quoted: {raw}");

    // the LDIF: one record per entry, entryUUID anchors, values as in the source
    let text = std::fs::read_to_string(&ldif_path).unwrap();
    let recs = read_ldif(&text);
    let dns: Vec<&str> = recs.iter().map(|r| r.0.as_str()).collect();
    let mut dns_sorted = dns.clone();
    dns_sorted.sort();
    assert_eq!(
        dns_sorted,
        ["ann", "bob", "dan", "zoe"]
            .map(|u| format!("uid={u},ou=people,dc=files,dc=example"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "{text}"
    );
    let rec = |uid: &str| {
        recs.iter()
            .find(|r| r.0.starts_with(&format!("uid={uid},")))
            .unwrap()
    };
    assert_eq!(
        ldif_vals(rec("ann"), "mail"),
        set(&["ann@example.com", "ann.lee@example.com"])
    );
    assert_eq!(ldif_vals(rec("bob"), "cn"), ["Bob Smith, Jr."]);
    assert_eq!(ldif_vals(rec("zoe"), "cn"), ["Zoë Müller"]);
    assert_eq!(ldif_vals(rec("zoe"), "uid"), ["zoe"], "naming value");
    assert_eq!(ldif_vals(rec("dan"), "title"), Vec::<String>::new());
    assert_eq!(
        ldif_vals(rec("ann"), "objectClass"),
        set(&["top", "inetOrgPerson"])
    );
    for r in &recs {
        let u = ldif_vals(r, "entryUUID");
        assert!(u.len() == 1 && is_uuid(&u[0]), "{r:?}");
    }
    assert!(temp_files(dir.path()).is_empty());

    // a second run rewrites neither file
    let (csv_before, ldif_before) = (stamp(&csv_path), stamp(&ldif_path));
    std::thread::sleep(Duration::from_millis(20));
    let (a, b) = run();
    counts(&a, &[("unchanged", 4)]);
    counts(&b, &[("unchanged", 4)]);
    assert_eq!(stamp(&csv_path), csv_before, "the CSV was rewritten");
    assert_eq!(stamp(&ldif_path), ldif_before, "the LDIF was rewritten");

    // one source value changes: exactly that cell, exactly that LDIF line
    l.ldapmodify(&format!(
        "dn: uid=bob,{src}\nchangetype: modify\nreplace: title\ntitle: Chief Controller\n"
    ));
    let (a, b) = run();
    counts(&a, &[("updated", 1), ("unchanged", 3)]);
    counts(&b, &[("updated", 1), ("unchanged", 3)]);
    let after = Csv::read(&csv_path);
    assert_eq!(after.header, csv.header);
    assert_eq!(after.rows.len(), csv.rows.len());
    let mut diffs = Vec::new();
    for (r, (old, new)) in csv.rows.iter().zip(&after.rows).enumerate() {
        for (c, (o, n)) in old.iter().zip(new).enumerate() {
            if o != n {
                diffs.push((r, csv.header[c].clone(), o.clone(), n.clone()));
            }
        }
    }
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].1, "title");
    assert_eq!(after.rows[diffs[0].0][0], "bob");
    assert_eq!(
        (diffs[0].2.as_str(), diffs[0].3.as_str()),
        ("Controller", "Chief Controller")
    );
    let old_lines: Vec<&str> = std::str::from_utf8(&ldif_before.0)
        .unwrap()
        .lines()
        .collect();
    let new_text = std::fs::read_to_string(&ldif_path).unwrap();
    let new_lines: Vec<&str> = new_text.lines().collect();
    assert_eq!(old_lines.len(), new_lines.len(), "{new_text}");
    let changed: Vec<(&str, &str)> = old_lines
        .iter()
        .zip(&new_lines)
        .filter(|(o, n)| o != n)
        .map(|(o, n)| (*o, *n))
        .collect();
    assert_eq!(changed, [("title: Controller", "title: Chief Controller")]);
    assert!(temp_files(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. atomic writes of a large CSV target

const BIG: usize = 5000;

/// The script of the big OpenLDAP -> CSV step; `note` is the source attribute of the
/// `note` column (changing it changes every row).
fn big_script(l: &Ldap, step: &str, note: &str, tail: &str) -> String {
    format!(
        "{conn}let out = connect_csv(\"big.csv\", #{{ key: \"login\" }});\n\
         let st = sync_step({step}, src, out, #{{\n\
           scope: #{{ base: \"ou=people,dc=example,dc=com\", filter: \"(objectClass=inetOrgPerson)\" }},\n\
           create: #{{ parent: \"\", rdn: |e| e.uid }},\n\
           flows: #{{ login: \"uid\", name: \"cn\", mail: \"mail\", note: {note} }},\n\
           deprovision: #{{ action: \"delete\" }} }});\n{tail}\n",
        conn = connect_ldap(l, "src", &l.base),
        step = lit(step),
        note = lit(note),
    )
}

/// Checks one read of the big CSV (None = the file does not exist): a complete file whose
/// row count is allowed and whose every row is whole and right. Returns the row count.
fn check_big(
    bytes: Option<&[u8]>,
    allowed: &dyn Fn(usize) -> bool,
    notes: &[&str],
) -> Result<usize, String> {
    let Some(bytes) = bytes else { return Ok(0) };
    if !bytes.ends_with(b"\n") {
        return Err(format!(
            "does not end with a newline ({} bytes)",
            bytes.len()
        ));
    }
    let csv = Csv::parse(bytes)?;
    if csv.header != ["login", "mail", "name", "note"] {
        return Err(format!("header {:?}", csv.header));
    }
    if !allowed(csv.rows.len()) {
        return Err(format!("{} rows", csv.rows.len()));
    }
    let mut seen = BTreeSet::new();
    for r in &csv.rows {
        let i: usize = r[0]
            .strip_prefix("user")
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("bad key in {r:?}"))?;
        let note_ok = notes.iter().any(|n| match *n {
            "sn" => r[3] == format!("User{i}"),
            "givenName" => r[3] == "Test",
            _ => false,
        });
        if r[1] != format!("{}@example.com", r[0]) || r[2] != format!("User {i}") || !note_ok {
            return Err(format!("wrong row {r:?}"));
        }
        if !seen.insert(i) {
            return Err(format!("duplicate row {r:?}"));
        }
    }
    Ok(csv.rows.len())
}

/// Reads the file in a tight loop while `child` runs; every read must pass `check_big`.
/// Returns (reads while running, distinct row counts seen).
fn watch_big(
    child: &mut Child,
    path: &Path,
    allowed: &dyn Fn(usize) -> bool,
    notes: &[&str],
) -> (usize, BTreeSet<usize>) {
    let mut reads = 0;
    let mut seen = BTreeSet::new();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "idsync did not finish"
        );
        let bytes = match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        match check_big(bytes.as_deref(), allowed, notes) {
            Ok(n) => {
                seen.insert(n);
            }
            Err(m) => {
                let _ = child.kill();
                panic!("a reader saw an incomplete or wrong file during the run: {m}");
            }
        }
        reads += 1;
    }
    (reads, seen)
}

fn finish(child: Child) -> (i32, Json, String) {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    no_panic("big run", &stdout, &stderr);
    let v = serde_json::from_str(&stdout).unwrap_or(Json::Null);
    (out.status.code().unwrap_or(-1), v, stderr)
}

#[test]
fn large_csv_target_is_never_seen_half_written_and_leaves_no_temp_file() {
    let Some(l) = support::private_slapd(Some(&support::gen_users(BIG))) else {
        return;
    };
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let step = "big/users";

    // the initial run: the file appears complete; intermediate commits (every 500 objects)
    // are whole files too
    let mut child = spawn_in(
        home.path(),
        dir.path(),
        &big_script(&l, step, "sn", "st.run()"),
    );
    let any_batch = |n: usize| n == 0 || (n.is_multiple_of(500) && n <= BIG);
    let (reads, seen) = watch_big(&mut child, &path, &any_batch, &["sn"]);
    let (c, r, err) = finish(child);
    assert_eq!(c, 0, "{err}");
    counts(&r, &[("created", BIG as i64)]);
    eprintln!("initial run: {reads} reads while running, row counts seen {seen:?}");
    assert!(reads > 0, "the file was never read while idsync ran");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(check_big(Some(&bytes), &|n| n == BIG, &["sn"]), Ok(BIG));
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );

    // every row changes: each read shows 5000 whole rows, old or new values
    let mut child = spawn_in(
        home.path(),
        dir.path(),
        &big_script(&l, step, "givenName", "st.run()"),
    );
    let (reads, seen) = watch_big(&mut child, &path, &|n| n == BIG, &["sn", "givenName"]);
    let (c, r, err) = finish(child);
    assert_eq!(c, 0, "{err}");
    counts(&r, &[("updated", BIG as i64)]);
    eprintln!("update run: {reads} reads while running, row counts seen {seen:?}");
    assert!(reads > 0);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        check_big(Some(&bytes), &|n| n == BIG, &["givenName"]),
        Ok(BIG)
    );
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
}

#[test]
fn sigkill_mid_run_leaves_a_complete_csv_and_a_rerun_converges_without_duplicates() {
    let Some(l) = support::private_slapd(Some(&support::gen_users(BIG))) else {
        return;
    };
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let step = "kill/users";
    let script = big_script(&l, step, "sn", "st.run()");
    let any_batch = |n: usize| n == 0 || (n.is_multiple_of(500) && n <= BIG);

    // kill as soon as the first batch is on disk (the run is then mid-way)
    let mut child = spawn_in(home.path(), dir.path(), &script);
    let t = Instant::now();
    let mut killed = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if path.exists() {
            child.kill().expect("SIGKILL idsync");
            killed = true;
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "idsync did not write"
        );
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "idsync finished ({status}) before its first batch was on disk: nothing was cut"
    );
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "idsync was not ended by the SIGKILL (it finished first): {status}"
        );
    }
    let on_disk = std::fs::read(&path).ok();
    let rows = check_big(on_disk.as_deref(), &any_batch, &["sn"])
        .unwrap_or_else(|m| panic!("after SIGKILL the CSV is not a complete file: {m}"));
    eprintln!(
        "killed ({status}); {rows} rows on disk; temp files left: {:?}",
        temp_files(dir.path())
    );

    // the rerun finishes with the right content, every row once
    let (r, _) = json_exit(home.path(), dir.path(), 0, &script);
    assert_eq!(n(&r, "failed"), 0, "{r:#}");
    assert_eq!(n(&r, "created") + n(&r, "unchanged"), BIG as i64, "{r:#}");
    assert!(n(&r, "created") > 0, "{r:#}");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(check_big(Some(&bytes), &|n| n == BIG, &["sn"]), Ok(BIG));
    let links = json_ok(
        home.path(),
        dir.path(),
        &format!("links({}).len()", lit(step)),
    );
    assert_eq!(links, Json::from(BIG));

    // and the next run writes nothing
    let before = stamp(&path);
    let (r, _) = json_exit(home.path(), dir.path(), 0, &script);
    counts(&r, &[("unchanged", BIG as i64)]);
    assert_eq!(stamp(&path), before, "a no-change run rewrote the CSV");
}

// ---------------------------------------------------------------------------------------------
// 5. errors in files and options

#[test]
fn bad_files_and_options_fail_with_exit_1_and_a_message_naming_file_line_and_cause() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    w("dup.csv", "employee_id,name\nE1,Ann\nE2,Bob\nE1,Cat\n");
    w("nokey.csv", "id,first,last\n1,Ann,Lee\n");
    w("quote.csv", "employee_id,name\nE1,\"Ann\nE2,Bob\n");
    w(
        "change.ldif",
        "version: 1\n\ndn: cn=a,dc=example,dc=com\ncn: a\n\ndn: cn=b,dc=example,dc=com\nchangetype: modify\nreplace: cn\ncn: b\n",
    );
    w("ok.csv", "employee_id,name\nE1,Ann\n");
    let cases: [(&str, &[&str]); 6] = [
        (
            "let c = connect_csv(\"dup.csv\", #{ key: \"employee_id\" });",
            &["dup.csv line 4", "duplicate key 'E1'", "first on line 2"],
        ),
        (
            "let c = connect_csv(\"nokey.csv\", #{ key: \"employee_id\" });",
            &[
                "nokey.csv",
                "no column 'employee_id'",
                "columns: id, first, last",
            ],
        ),
        (
            "let c = connect_csv(\"quote.csv\", #{ key: \"employee_id\" });",
            &["quote.csv line 2", "quoted field is not closed"],
        ),
        (
            "let c = connect_ldif(\"change.ldif\");",
            &["change.ldif line 7", "change records", "changetype: modify"],
        ),
        (
            "let c = connect_csv(\"ok.csv\", #{ delimiter: \";\" });",
            &["connect_csv", "option 'key'", "required"],
        ),
        (
            "let c = connect_csv(\"ok.csv\", #{ kee: \"employee_id\" });",
            &["unknown option 'kee'"],
        ),
    ];
    for (script, want) in cases {
        let (c, err) = fails(
            home.path(),
            dir.path(),
            &format!("print(\"start\");\n{script}\nprint(\"end\");\n"),
        );
        assert_eq!(c, 1, "{script}: {err}");
        for w in want {
            assert!(err.contains(w), "{script}: {w:?} not in:\n{err}");
        }
        // the script position of the call, file:line:col
        assert!(err.contains(".rhai:2:"), "{script}: no position in:\n{err}");
    }
    // a bad source file stops a sync script before anything is written
    let (c, err) = fails(
        home.path(),
        dir.path(),
        "let hr = connect_csv(\"dup.csv\", #{ key: \"employee_id\" });\n\
         let d = connect_ldif(\"never.ldif\");\n\
         sync_step(\"e/users\", hr, d, #{ create: #{ parent: \"dc=x\", rdn: |e| `cn=${e.name}` }, flows: #{} }).run()\n",
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("dup.csv line 4"), "{err}");
    assert!(!dir.path().join("never.ldif").exists());
    // the source files are left as they were
    assert_eq!(
        std::fs::read_to_string(dir.path().join("quote.csv")).unwrap(),
        "employee_id,name\nE1,\"Ann\nE2,Bob\n"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. exit codes 3 and 4 end to end

#[test]
fn one_failing_object_into_a_csv_target_exits_3_and_the_others_are_written() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("src.csv"),
        "id,name,mail\nA1,Ann,ann@x\nA2,Bob,bob@x;robert@x\nA3,Cat,cat@x\nA4,Dan,dan@x\n",
    )
    .unwrap();
    // the target has no multi_value_separator: a cell cannot hold Bob's two values
    let script = "let s = connect_csv(\"src.csv\", #{ key: \"id\", multi_value_separator: \";\" });\n\
         let t = connect_csv(\"out.csv\", #{ key: \"id\" });\n\
         sync_step(\"x3/users\", s, t, #{ create: #{ parent: \"\", rdn: |e| e.id },\n\
           flows: #{ id: \"id\", name: \"name\", mail: \"mail\" }, deprovision: #{ action: \"delete\" } }).run()\n";
    let (r, _) = json_exit(home.path(), dir.path(), 3, script);
    counts(&r, &[("created", 3), ("failed", 1)]);
    assert_eq!(s(&r, "status"), "failed");
    let errs = errors(&r);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("A2") && errs[0].contains("multi_value_separator"),
        "the object and the cause: {errs:?}"
    );
    let log = std::fs::read_to_string(s(&r, "log")).unwrap();
    assert!(log.contains("FAILED") && log.contains("A2"), "{log}");
    let out = Csv::read(&dir.path().join("out.csv")).by_key("id");
    assert_eq!(
        out.keys().map(String::as_str).collect::<Vec<_>>(),
        ["A1", "A3", "A4"]
    );
    assert_eq!(out["A3"]["mail"], "cat@x");

    // retried next run (and fails again), the others unchanged
    let (r, _) = json_exit(home.path(), dir.path(), 3, script);
    counts(&r, &[("failed", 1), ("unchanged", 3)]);
    // fixed in the source: created, exit 0
    std::fs::write(
        dir.path().join("src.csv"),
        "id,name,mail\nA1,Ann,ann@x\nA2,Bob,bob@x\nA3,Cat,cat@x\nA4,Dan,dan@x\n",
    )
    .unwrap();
    let (r, _) = json_exit(home.path(), dir.path(), 0, script);
    counts(&r, &[("created", 1), ("unchanged", 3)]);
    assert_eq!(Csv::read(&dir.path().join("out.csv")).rows.len(), 4);
}

/// Issue 10 item 10: 2,000 failed objects. The table output (a pipe here, and `show()`) lists
/// a bounded number of them, one per line, then "… and N more, see LOG"; no line is longer
/// than a few hundred characters. `--format json` has one `failures` element and `--format
/// csv` one row per failed object (object, operation, cause); the run log names every one;
/// `--format ldif` of a report is a usage error (exit 2) that says why, not garbage.
#[test]
fn two_thousand_failures_print_as_a_bounded_list_and_one_row_each_in_json_and_csv() {
    const N: usize = 2000;
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let mut src = String::from("id,name,mail\n");
    for i in 0..N {
        src.push_str(&format!("P{i:04},Person {i},p{i}@x;person.{i}@x\n"));
    }
    std::fs::write(dir.path().join("src.csv"), src).unwrap();
    // The target has no multi_value_separator: no row's two mail values fit a cell.
    let step = "let s = connect_csv(\"src.csv\", #{ key: \"id\", multi_value_separator: \";\" });\n\
         let t = connect_csv(\"out.csv\", #{ key: \"id\" });\n\
         let st = sync_step(\"many-failures/users\", s, t, #{ create: #{ parent: \"\", rdn: |e| e.id },\n\
           flows: #{ id: \"id\", name: \"name\", mail: \"mail\" } });\n";
    let bounded = |what: &str, out: &str| {
        let longest = out.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(
            longest <= 300,
            "{what}: a line of {longest} characters:\n{}",
            &out[..out.len().min(3000)]
        );
        let listed = out.lines().filter(|l| l.contains("create P")).count();
        assert!(
            (1..=50).contains(&listed),
            "{what}: {listed} failures listed:\n{out}"
        );
        assert!(
            out.contains(&format!("… and {} more, see ", N - listed)),
            "{what}: no pointer to the rest:\n{out}"
        );
        assert!(
            out.contains("multi_value_separator"),
            "{what}: no cause:\n{out}"
        );
    };

    // table (stdout is a pipe: the plain table format)
    let (c, out, err) = run_script(home.path(), dir.path(), None, &format!("{step}st.run()\n"));
    assert_eq!(c, 3, "{out}\n{err}");
    bounded("table", &out);
    let log_path = out
        .lines()
        .find_map(|l| l.strip_prefix("log:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no log line:\n{out}"));
    assert!(out.contains(&format!("see {log_path}")), "{out}");
    let log = std::fs::read_to_string(log_path).unwrap();
    let failed_lines: Vec<&str> = log.lines().filter(|l| l.contains("FAILED P")).collect();
    assert_eq!(failed_lines.len(), N, "the run log lists every failure");
    assert!(
        failed_lines.iter().all(|l| l.contains(": create: ")),
        "{}",
        failed_lines[0]
    );

    // show() prints the same bounded list
    let (c, out, err) = run_script(
        home.path(),
        dir.path(),
        None,
        &format!("{step}let r = st.run();\nshow(r);\nr.failed\n"),
    );
    assert_eq!(c, 3, "{out}\n{err}");
    bounded("show()", &out);
    assert!(out.trim_end().ends_with(&N.to_string()), "{out}");

    // json: one element per failure, each with object, operation and cause
    let (r, _) = json_exit(home.path(), dir.path(), 3, &format!("{step}st.run()\n"));
    counts(&r, &[("failed", N as i64)]);
    let list = r["failures"].as_array().expect("a failures array");
    assert_eq!(list.len(), N);
    assert_eq!(list[0]["operation"], "create", "{:#}", list[0]);
    assert!(
        list[0]["object"].as_str().unwrap().starts_with('P'),
        "{:#}",
        list[0]
    );
    assert!(
        list[0]["cause"]
            .as_str()
            .unwrap()
            .contains("multi_value_separator"),
        "{:#}",
        list[0]
    );
    assert_eq!(errors(&r).len(), N);

    // csv: one row per failure
    let (c, out, err) = run_script(
        home.path(),
        dir.path(),
        Some("csv"),
        &format!("{step}st.run()\n"),
    );
    assert_eq!(c, 3, "{err}");
    let t = Csv::parse(out.as_bytes()).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(t.header, ["step", "run_id", "operation", "object", "cause"]);
    assert_eq!(t.rows.len(), N);
    let objects: BTreeSet<&str> = t.rows.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(objects.len(), N, "every failed object once");
    assert!(
        t.rows
            .iter()
            .all(|r| r[2] == "create" && r[0] == "many-failures/users")
    );

    // ldif: a usage error that says why and what to use
    let (c, out, err) = run_script(
        home.path(),
        dir.path(),
        Some("ldif"),
        &format!("{step}st.run()\n"),
    );
    assert_eq!(c, 2, "{out}\n{err}");
    assert_eq!(out, "", "nothing on stdout");
    assert!(
        err.contains("cannot be printed as ldif") && err.contains("--format table, json or csv"),
        "{err}"
    );
    assert!(err.lines().all(|l| l.chars().count() <= 300), "{err}");
}

#[test]
fn empty_or_truncated_csv_source_is_refused_exit_4_and_the_target_file_is_unchanged() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hr.csv");
    let full = "id,first,last,dept\nE1,Ann,Lee,Sales\nE2,Bob,Ray,Sales\nE3,Cat,Poe,IT\nE4,Dan,Oz,IT\nE5,Eve,Ng,HR\n";
    std::fs::write(&src, full).unwrap();
    let script = "let hr = connect_csv(\"hr.csv\", #{ key: \"id\" });\n\
         let d = connect_ldif(\"dir.ldif\");\n\
         let st = sync_step(\"x4/users\", hr, d, #{ join: #{ employeeNumber: \"id\" },\n\
           create: #{ parent: \"ou=people,dc=example,dc=com\", rdn: |e| `uid=${e.id}`, class: [\"inetOrgPerson\"] },\n\
           flows: #{ cn: |e| `${e.first} ${e.last}`, sn: \"last\", employeeNumber: \"id\", ou: \"dept\" },\n\
           deprovision: #{ action: \"delete\" } });\n";
    let run = format!("{script}st.run()\n");
    let r = json_ok(home.path(), dir.path(), &run);
    counts(&r, &[("created", 5)]);
    let target = dir.path().join("dir.ldif");
    assert_eq!(
        read_ldif(&std::fs::read_to_string(&target).unwrap()).len(),
        5
    );
    let before = stamp(&target);

    for (what, content) in [
        ("header only", "id,first,last,dept\n".to_string()),
        ("empty file", String::new()),
        (
            "truncated after two rows",
            full.lines().take(3).map(|l| format!("{l}\n")).collect(),
        ),
    ] {
        std::fs::write(&src, &content).unwrap();
        let (c, out, err) = run_script(home.path(), dir.path(), None, &run);
        assert_eq!(c, 4, "{what}: exit 4 expected\n{out}\n{err}");
        assert!(
            err.contains("refused") && err.contains("allow_deletes"),
            "{what}: {err}"
        );
        assert_eq!(stamp(&target), before, "{what}: the target file changed");
        let last = json_ok(home.path(), dir.path(), "last_run(\"x4/users\")");
        assert_eq!(s(&last, "status"), "refused", "{what}: {last:#}");
        let links = json_ok(home.path(), dir.path(), "links(\"x4/users\").len()");
        assert_eq!(links, Json::from(5), "{what}");
    }
    // cut in the middle of a row: not a valid file, an error, nothing written
    std::fs::write(&src, &full[..full.find("E3,Cat").unwrap() + 4]).unwrap();
    let (c, err) = fails(home.path(), dir.path(), &run);
    assert!(c == 1 || c == 4, "{c}: {err}");
    assert_eq!(stamp(&target), before, "the target file changed");

    // preview shows the refusal and writes nothing either
    std::fs::write(&src, "id,first,last,dept\n").unwrap();
    let rows = json_ok(home.path(), dir.path(), &format!("{script}st.preview()\n"));
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["op"] == "REFUSED"),
        "{rows:#}"
    );
    assert_eq!(stamp(&target), before);

    // the source restored: nothing to do
    std::fs::write(&src, full).unwrap();
    let r = json_ok(home.path(), dir.path(), &run);
    counts(&r, &[("unchanged", 5)]);
    assert_eq!(stamp(&target), before);
}

/// A first run with more than 200 source objects reads the target once and joins in memory
/// (plan.rs BULK_READ_ABOVE); the result must be what per-object join searches would give: one
/// match joins, a value held by two target objects is an ambiguity for that object only, a value
/// one target object holds twice (in other case) is one match, an unmatched row is created.
#[test]
fn bulk_join_of_300_rows_matches_like_per_object_joins() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,name\n");
    let mut ldif = String::new();
    for i in 0..300 {
        csv.push_str(&format!("E{i:04},Person {i}\n"));
        let number = match i {
            7 => "e0007\nemployeeNumber: E0007".to_string(), // one entry, the value twice
            299 => continue,                                 // no target: created
            _ => format!("E{i:04}"),
        };
        ldif.push_str(&format!(
            "dn: uid=p{i},ou=people,dc=files\nobjectClass: inetOrgPerson\nuid: p{i}\ncn: old {i}\n\
             sn: P{i}\nemployeeNumber: {number}\n\n"
        ));
    }
    // A second target entry with E0042: that row is ambiguous.
    ldif.push_str(
        "dn: uid=twin42,ou=people,dc=files\nobjectClass: inetOrgPerson\nuid: twin42\ncn: twin\n\
         sn: Twin\nemployeeNumber: e0042\n\n",
    );
    std::fs::write(dir.path().join("hr.csv"), csv).unwrap();
    std::fs::write(dir.path().join("dir.ldif"), ldif).unwrap();
    let script = "let hr = connect_csv(\"hr.csv\", #{ key: \"id\" });\n\
         let d = connect_ldif(\"dir.ldif\");\n\
         let st = sync_step(\"bulkjoin\", hr, d, #{\n\
             join: #{ employeeNumber: \"id\" },\n\
             create: #{ parent: \"ou=people,dc=files\", rdn: |e| `uid=new${e.id}`, class: [\"inetOrgPerson\"] },\n\
             flows: #{ cn: \"name\", sn: \"id\", employeeNumber: \"id\" },\n\
             target_base: \"ou=people,dc=files\" });\n\
         st.run()";
    let (report, _) = json_exit(home.path(), dir.path(), 3, script);
    counts(
        &report,
        &[
            ("joined", 298),
            ("updated", 298),
            ("created", 1),
            ("failed", 1),
        ],
    );
    let errs = errors(&report);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("ambiguous join: 2 target objects match"),
        "{errs:?}"
    );
    let written = read_ldif(&std::fs::read_to_string(dir.path().join("dir.ldif")).unwrap());
    let by_dn = |dn: &str| {
        written
            .iter()
            .find(|r| norm_dn(&r.0) == norm_dn(dn))
            .unwrap_or_else(|| panic!("{dn} missing"))
    };
    assert_eq!(
        ldif_vals(by_dn("uid=p7,ou=people,dc=files"), "cn"),
        set(&["Person 7"])
    );
    assert_eq!(
        ldif_vals(by_dn("uid=p42,ou=people,dc=files"), "cn"),
        set(&["old 42"])
    );
    assert_eq!(
        ldif_vals(by_dn("uid=newE0299,ou=people,dc=files"), "cn"),
        set(&["Person 299"])
    );
    assert_eq!(written.len(), 301);
}

// ---------------------------------------------------------------------------------------------
// 5. concurrency on files (issue 10): one run of a step at a time (item 6), no lost writes on a
// shared target file (item 7), a missing source file is an error (item 9)

const MANY: usize = 5000;

/// `src.csv` in `dir` with MANY rows `id,first,last` (ids u0000..).
fn many_source(dir: &Path) {
    let mut text = String::from("id,first,last\n");
    for i in 0..MANY {
        text.push_str(&format!("u{i:04},Given{i},Family{i}\n"));
    }
    std::fs::write(dir.join("src.csv"), text).unwrap();
}

/// The step `step` from `src.csv` into `out.ldif` (`kind` "ldif") or `out.csv` ("csv"), then
/// `tail`.
fn file_step(step: &str, kind: &str, tail: &str) -> String {
    let (target, create, flows) = match kind {
        "ldif" => (
            "connect_ldif(\"out.ldif\")",
            "parent: \"ou=people,dc=example,dc=com\", rdn: |e| `uid=${e.id}`, class: [\"inetOrgPerson\"]",
            "uid: \"id\", cn: |e| `${e.first} ${e.last}`, sn: \"last\"",
        ),
        _ => (
            "connect_csv(\"out.csv\", #{ key: \"id\" })",
            "parent: \"\", rdn: |e| e.id",
            "id: \"id\", name: |e| `${e.first} ${e.last}`",
        ),
    };
    format!(
        "let hr = connect_csv(\"src.csv\", #{{ key: \"id\" }});\n\
         let out = {target};\n\
         let st = sync_step({step}, hr, out, #{{ create: #{{ {create} }}, flows: #{{ {flows} }},\n\
           deprovision: #{{ action: \"delete\" }} }});\n{tail}\n",
        step = lit(step)
    )
}

/// Starts `idsync --format json` on `script` in `dir` without waiting.
fn spawn_in(home: &Path, dir: &Path, script: &str) -> Child {
    let file = dir.join(format!("{}.rhai", support::unique("c")));
    std::fs::write(&file, script).unwrap();
    idsync_cmd(home)
        .current_dir(dir)
        .args(["--format", "json"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idsync")
}

/// (pid, exit code, stdout, stderr) of a finished child.
fn outcome(c: Child) -> (u32, i32, String, String) {
    let pid = c.id();
    let out = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    no_panic("concurrent run", &stdout, &stderr);
    (pid, out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The DNs (LDIF) or keys (CSV) the target file holds; panics on a duplicate.
fn held(dir: &Path, kind: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let keys: Vec<String> = if kind == "ldif" {
        let text = std::fs::read_to_string(dir.join("out.ldif")).unwrap();
        read_ldif(&text)
            .into_iter()
            .map(|r| r.0.to_ascii_lowercase())
            .collect()
    } else {
        let csv = Csv::read(&dir.join("out.csv"));
        let k = csv.col("id");
        csv.rows.iter().map(|r| r[k].clone()).collect()
    };
    for k in keys {
        assert!(out.insert(k.clone()), "{k} twice in the target file");
    }
    out
}

/// The target key of source row `i`.
fn step_key(kind: &str, i: usize) -> String {
    if kind == "ldif" {
        format!("uid=u{i:04},ou=people,dc=example,dc=com")
    } else {
        format!("u{i:04}")
    }
}

/// A step writes MANY objects into a file while 40 other processes each create one object in
/// the same file: every create that reported success and every object of the step is in the
/// file afterwards, the step's links name only what the file holds, and the next run has
/// nothing to write.
fn no_lost_writes(kind: &str) {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    many_source(dir.path());
    let step = format!("lost-{kind}/users");
    let run = spawn_in(home.path(), dir.path(), &file_step(&step, kind, "st.run()"));
    let t = Instant::now();
    let creators: Vec<(String, Child)> = (0..40)
        .map(|i| {
            let (key, script) = if kind == "ldif" {
                let dn = format!("uid=extra{i},ou=others,dc=example,dc=com");
                let s = format!(
                    "connect_ldif(\"out.ldif\").create({}, #{{ objectClass: \"inetOrgPerson\", uid: \"extra{i}\", cn: \"Extra {i}\", sn: \"Extra\" }}); \"ok\"",
                    lit(&dn)
                );
                (dn, s)
            } else {
                let k = format!("extra{i}");
                let s = format!(
                    "connect_csv(\"out.csv\", #{{ key: \"id\" }}).create(\"{k}\", #{{ id: \"{k}\", name: \"Extra {i}\" }}); \"ok\""
                );
                (k, s)
            };
            std::thread::sleep(Duration::from_millis(15));
            (key, spawn_in(home.path(), dir.path(), &script))
        })
        .collect();
    let mut reported = Vec::new();
    for (key, c) in creators {
        let (_, code, out, err) = outcome(c);
        if code == 0 {
            assert_eq!(out.trim(), "\"ok\"", "{err}");
            reported.push(key);
        } else {
            eprintln!("a create failed (allowed, it said so): {err}");
        }
    }
    let (_, code, out, err) = outcome(run);
    eprintln!(
        "{kind}: step and 40 creates took {:?}; {} creates reported success",
        t.elapsed(),
        reported.len()
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let r: Json = serde_json::from_str(&out).unwrap();
    counts(&r, &[("created", MANY as i64)]);
    assert!(
        reported.len() >= 30,
        "most creates should succeed: {reported:?}"
    );

    let got = held(dir.path(), kind);
    let lost: Vec<&String> = reported
        .iter()
        .filter(|k| !got.contains(&k.to_ascii_lowercase()) && !got.contains(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "creates that reported success are gone: {lost:?}"
    );
    let missing: Vec<String> = (0..MANY)
        .map(|i| step_key(kind, i))
        .filter(|k| !got.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of the step's objects are not in the file, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    assert_eq!(got.len(), MANY + reported.len());

    // Links only for what the file holds.
    let links = json_ok(home.path(), dir.path(), &format!("links({})", lit(&step)));
    let links = links.as_array().unwrap();
    assert_eq!(links.len(), MANY);
    for l in links {
        let dn = s(l, "target_dn");
        assert!(
            got.contains(&dn.to_ascii_lowercase()) || got.contains(dn),
            "a link to {dn}, which the file does not hold"
        );
    }
    // The next run: nothing to write.
    let r = json_ok(home.path(), dir.path(), &file_step(&step, kind, "st.run()"));
    counts(&r, &[("unchanged", MANY as i64)]);
    assert!(
        support::planned_line(home.path()).contains("0 to write"),
        "{}",
        support::planned_line(home.path())
    );
}

#[test]
fn forty_creates_into_an_ldif_file_during_a_5000_entry_run_are_all_kept() {
    no_lost_writes("ldif");
}

#[test]
fn forty_creates_into_a_csv_file_during_a_5000_row_run_are_all_kept() {
    no_lost_writes("csv");
}

/// Exactly one of `results` exited 0 (its pid and report); the others exited 5 naming it.
fn one_file_winner(results: &[(u32, i32, String, String)], what: &str) -> (u32, Json) {
    let winners: Vec<_> = results.iter().filter(|r| r.1 == 0).collect();
    let codes: Vec<i32> = results.iter().map(|r| r.1).collect();
    assert_eq!(
        winners.len(),
        1,
        "{what}: exit codes {codes:?}, expected one 0 and the rest 5:\n{results:#?}"
    );
    let (pid, _, out, _) = winners[0];
    for (_, code, _, err) in results.iter().filter(|r| r.1 != 0) {
        assert_eq!(*code, 5, "{what}: {err}");
        assert!(
            err.contains(&format!("pid {pid} on "))
                && err.contains("since 20")
                && err.contains("nothing was written"),
            "{what}: the refusal must name the holder: {err}"
        );
    }
    (*pid, serde_json::from_str(out).unwrap())
}

fn file_history(home: &Path, dir: &Path, name: &str) -> Vec<Json> {
    json_ok(home, dir, &format!("history({})", lit(name)))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn two_and_four_simultaneous_runs_into_a_file_one_writes_the_others_exit_5() {
    for runs in [2usize, 4] {
        let home = support::temp_home();
        let dir = tempfile::tempdir().unwrap();
        many_source(dir.path());
        let step = format!("race{runs}/users");
        let script = file_step(&step, "ldif", "st.run()");
        let children: Vec<Child> = (0..runs)
            .map(|_| spawn_in(home.path(), dir.path(), &script))
            .collect();
        let results: Vec<_> = children.into_iter().map(outcome).collect();
        let (_, r) = one_file_winner(&results, &format!("{runs} runs"));
        counts(&r, &[("created", MANY as i64)]);
        assert_eq!(held(dir.path(), "ldif").len(), MANY);
        let h = file_history(home.path(), dir.path(), &step);
        assert_eq!(h.len(), 1, "one run per writer: {h:#?}");
        assert_eq!(s(&h[0], "status"), "ok");
    }
}

#[test]
fn a_sigkilled_run_into_a_file_is_taken_over_and_marked_interrupted_by_the_next() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    many_source(dir.path());
    let step = "killed/users";
    let script = file_step(step, "ldif", "st.run()");
    let mut child = spawn_in(home.path(), dir.path(), &script);
    let out = dir.path().join("out.ldif");
    let t = Instant::now();
    while !out.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(t.elapsed() < Duration::from_secs(60), "nothing written");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let h = file_history(home.path(), dir.path(), step);
    assert_eq!(
        h.iter().map(|r| s(r, "status")).collect::<Vec<_>>(),
        ["running"],
        "{h:#?}"
    );
    let r = json_ok(home.path(), dir.path(), &script);
    assert_eq!(n(&r, "failed"), 0, "{r:#}");
    assert_eq!(held(dir.path(), "ldif").len(), MANY);
    let h = file_history(home.path(), dir.path(), step);
    assert_eq!(
        h.iter().map(|r| s(r, "status")).collect::<Vec<_>>(),
        ["ok", "interrupted"],
        "{h:#?}"
    );
    let log = support::newest_run_log(home.path());
    assert!(log.contains("took over the lease of killed/users"), "{log}");
}

#[test]
fn a_workflow_and_a_run_of_its_step_into_a_file_exclude_each_other() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    many_source(dir.path());
    let step = "wf-race/users";
    let wf = file_step(step, "ldif", "workflow(\"wf-race\", [st]).run()[0]");
    let one = file_step(step, "ldif", "st.run()");
    let children = vec![
        spawn_in(home.path(), dir.path(), &wf),
        spawn_in(home.path(), dir.path(), &one),
    ];
    let results: Vec<_> = children.into_iter().map(outcome).collect();
    let (pid, r) = one_file_winner(&results, "workflow and step");
    counts(&r, &[("created", MANY as i64)]);
    assert_eq!(held(dir.path(), "ldif").len(), MANY);
    let loser = &results.iter().find(|r| r.0 != pid).unwrap().3;
    if results[0].0 == pid {
        assert!(
            loser.contains("already being run by workflow \"wf-race\""),
            "{loser}"
        );
    } else {
        assert!(
            loser.contains("wf-race: refused: step \"wf-race/users\" is already running"),
            "{loser}"
        );
    }
    assert_eq!(file_history(home.path(), dir.path(), step).len(), 1);
}

#[test]
fn a_missing_source_file_fails_the_run_naming_the_path_and_creates_nothing() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    for (source, file) in [
        ("connect_csv(\"gone.csv\", #{ key: \"id\" })", "gone.csv"),
        ("connect_ldif(\"gone.ldif\")", "gone.ldif"),
    ] {
        let script = format!(
            "let hr = {source};\nlet out = connect_csv(\"out.csv\", #{{ key: \"id\" }});\n\
             sync_step(\"gone/users\", hr, out, #{{ create: #{{ parent: \"\", rdn: |e| e.anchor }},\n\
               flows: #{{ id: |e| e.anchor }} }}).run()\n"
        );
        let (c, err) = fails(home.path(), dir.path(), &script);
        assert_eq!(c, 1, "{err}");
        assert!(
            err.contains(&format!("{file}: no such file")) && err.contains("gone/users"),
            "the error names the step and the path: {err}"
        );
        assert!(!dir.path().join(file).exists());
        assert!(
            !dir.path().join("out.csv").exists(),
            "the target was created"
        );
        // preview too
        let (c, err) = fails(
            home.path(),
            dir.path(),
            &script.replace(".run()", ".preview()"),
        );
        assert_eq!(c, 1, "{err}");
        assert!(err.contains(&format!("{file}: no such file")), "{err}");
    }
}

/// A lease held from another machine sharing the store: refused while its heartbeat is fresh
/// (the pid cannot be checked there), taken over once the heartbeat is older than the lease
/// period (60 s), and only then is that machine's run marked interrupted.
#[test]
fn a_lease_from_another_host_is_honoured_until_its_heartbeat_expires() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("src.csv"),
        "id,first,last\nu1,Ann,Lee\nu2,Bob,Ray\n",
    )
    .unwrap();
    let step = "remote/users";
    let script = file_step(step, "csv", "st.run()");
    json_ok(home.path(), dir.path(), "history()"); // creates the store
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let db = rusqlite::Connection::open(home.path().join("state.db")).unwrap();
    db.execute(
        "INSERT INTO lease (name, owner, host, pid, token, since_ms, heartbeat_ms)
         VALUES (?1, ?1, 'dc2.other.example', 4242, 'remote-token', ?2, ?3)",
        rusqlite::params![step, now - 5_000, now],
    )
    .unwrap();
    db.execute(
        "INSERT INTO run (name, kind, started_ms, status, counts) VALUES (?1, 'step', ?2, 'running', '{}')",
        rusqlite::params![step, now - 5_000],
    )
    .unwrap();

    let (c, out, err) = run_script(home.path(), dir.path(), Some("json"), &script);
    assert_eq!(c, 5, "{out}\n{err}");
    assert!(err.contains("pid 4242 on dc2.other.example"), "{err}");
    assert!(
        !dir.path().join("out.csv").exists(),
        "the refused run wrote"
    );
    let h = file_history(home.path(), dir.path(), step);
    assert_eq!(h.len(), 1);
    assert_eq!(
        s(&h[0], "status"),
        "running",
        "a live remote run was touched"
    );

    db.execute(
        "UPDATE lease SET heartbeat_ms = ?1 WHERE name = ?2",
        rusqlite::params![now - 61_000, step],
    )
    .unwrap();
    let r = json_ok(home.path(), dir.path(), &script);
    counts(&r, &[("created", 2)]);
    let h = file_history(home.path(), dir.path(), step);
    assert_eq!(
        h.iter().map(|r| s(r, "status")).collect::<Vec<_>>(),
        ["ok", "interrupted"],
        "{h:#?}"
    );
    let left: i64 = db
        .query_row("SELECT count(*) FROM lease", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the run released its lease");
}

// ---------------------------------------------------------------------------------------------
// exit(n) inside a step's closure (issue 10, item 8)

/// `exit(7)` in a flow closure (CSV -> CSV, 300 rows, first run) ends the script with 7 at
/// that object, not as a per-object failure reading "NOT AN ERROR - exit value": the run is
/// recorded `interrupted`, the rows written so far are linked (and only they), nothing after
/// the run executes. A preview stops the same way and writes nothing; a rerun without the
/// exit finishes the job.
#[test]
fn exit_in_a_flow_closure_stops_the_run_as_interrupted_and_ends_the_script_with_its_status() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let mut hr = String::from("id,first\n");
    for i in 0..300 {
        hr.push_str(&format!("E{i:04},First{i}\n"));
    }
    std::fs::write(dir.path().join("hr.csv"), hr).unwrap();
    let script = |stop: &str, tail: &str| {
        format!(
            "let hr = connect_csv(\"hr.csv\", #{{ key: \"id\" }});\n\
             let out = connect_csv(\"out.csv\", #{{ key: \"login\" }});\n\
             let st = sync_step(\"exit/users\", hr, out, #{{\n\
               create: #{{ parent: \"\", rdn: |e| e.id }},\n\
               flows: #{{ login: \"id\", name: |e| {{ if e.id == {stop} {{ exit(7) }} e.first }} }} }});\n\
             {tail}\n",
            stop = lit(stop)
        )
    };
    let out_csv = dir.path().join("out.csv");

    let (c, out, err) = run_script(
        home.path(),
        dir.path(),
        None,
        &script("E0150", "st.preview();\nprint(\"after\");"),
    );
    assert_eq!(c, 7, "preview: {out}\n{err}");
    assert!(
        !out.contains("after") && !err.contains("NOT AN ERROR"),
        "{out}\n{err}"
    );
    assert!(!out_csv.exists(), "the preview wrote");

    let (c, out, err) = run_script(
        home.path(),
        dir.path(),
        None,
        &script("E0150", "st.run();\nprint(\"after\");"),
    );
    assert_eq!(c, 7, "run: {out}\n{err}");
    assert!(!out.contains("after"), "{out}");
    assert!(
        !format!("{out}{err}").contains("NOT AN ERROR"),
        "{out}\n{err}"
    );
    assert!(err.contains("exit/users: interrupted"), "{err}");
    let rows: Vec<String> = std::fs::read_to_string(&out_csv)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert!(!rows.contains(&"E0150".to_string()), "{rows:?}");
    assert!(
        rows.len() < 300,
        "the run went on after exit: {} rows",
        rows.len()
    );
    let h = json_ok(home.path(), dir.path(), "history(\"exit/users\")");
    let h = &h.as_array().unwrap()[0];
    assert_eq!(s(h, "status"), "interrupted", "{h}");
    assert_eq!(n(h, "created"), rows.len() as i64, "{h}");
    assert_eq!(n(h, "failed"), 0, "{h}");
    let links = json_ok(home.path(), dir.path(), "links(\"exit/users\")");
    let mut linked: Vec<String> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|k| s(k, "target_anchor").to_string())
        .collect();
    let mut held = rows.clone();
    linked.sort();
    held.sort();
    assert_eq!(linked, held);

    // Without the exit, the next run writes the rest.
    let (v, _) = json_exit(home.path(), dir.path(), 0, &script("none", "st.run()"));
    counts(
        &v,
        &[
            ("created", 300 - rows.len() as i64),
            ("unchanged", rows.len() as i64),
        ],
    );

    // In a workflow: the step and the workflow are both recorded interrupted.
    let wf = script("E0010", "")
        .replace("\"exit/users\"", "\"exit/wf-users\"")
        .replace("out.csv", "out2.csv")
        + "workflow(\"exit-wf\", [st]).run();\nprint(\"after\");\n";
    let (c, out, err) = run_script(home.path(), dir.path(), None, &wf);
    assert_eq!(c, 7, "workflow: {out}\n{err}");
    let h = json_ok(
        home.path(),
        dir.path(),
        "[history(\"exit-wf\")[0].status, history(\"exit/wf-users\")[0].status]",
    );
    assert_eq!(h, serde_json::json!(["interrupted", "interrupted"]));
}

// ---------------------------------------------------------------------------------------------
// 7. the files HR really sends (issue 15): Windows-1252 and UTF-16 exports, Excel's empty rows
// and columns, CRLF / CR-only line numbers, ldifde's `changetype: add`

/// `text` in Windows-1252 (every character used here is in Latin-1's printable range, where
/// Windows-1252 and Latin-1 agree), encoded here, not by idsync.
fn cp1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
        .collect()
}

/// `text` as UTF-16LE with a byte-order mark (Excel's "Unicode text", PowerShell 5).
fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

/// The `first`/`last`/`dept` of each row of a JSON search result, by key.
fn hr_names(v: &Json, key: &str) -> BTreeMap<String, (String, String, String)> {
    let rows = v.as_array().unwrap_or_else(|| panic!("not a list: {v}"));
    rows.iter()
        .map(|r| {
            let f = |n: &str| r[n].as_str().unwrap_or_default().to_string();
            (f(key), (f("first"), f("last"), f("dept")))
        })
        .collect()
}

#[test]
fn hr_exports_in_windows_1252_and_utf_16_read_with_umlauts_and_excels_empty_rows_skipped() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let want: BTreeMap<String, (String, String, String)> = [
        ("E1", "Jürgen", "Weiß", "Café"),
        ("E2", "Zoë", "Müller-Núñez", "Straße"),
    ]
    .iter()
    .map(|(k, f, l, d)| (k.to_string(), (f.to_string(), l.to_string(), d.to_string())))
    .collect();
    // Excel "CSV (semicolon)" on Western Windows: cp1252, CRLF, a trailing unnamed empty
    // column and trailing rows of empty cells
    let excel = "employee_id;first;last;dept;\r\nE1;Jürgen;Weiß;Café;\r\nE2;Zoë;Müller-Núñez;Straße;\r\n;;;;\r\n;;;;\r\n";
    std::fs::write(dir.path().join("excel.csv"), cp1252(excel)).unwrap();
    // Excel "Unicode text": UTF-16LE with BOM, tab-delimited, no encoding option needed
    let unicode = "employee_id\tfirst\tlast\tdept\r\nE1\tJürgen\tWeiß\tCafé\r\nE2\tZoë\tMüller-Núñez\tStraße\r\n";
    std::fs::write(dir.path().join("unicode.csv"), utf16le_bom(unicode)).unwrap();
    // the same as UTF-16 without a BOM: the option says which
    let mut no_bom = utf16le_bom(unicode);
    no_bom.drain(..2);
    std::fs::write(dir.path().join("nobom.csv"), no_bom).unwrap();

    let v = json_ok(
        home.path(),
        dir.path(),
        "connect_csv(\"excel.csv\", #{ key: \"employee_id\", delimiter: \";\", encoding: \"windows-1252\" }).search(\"\")",
    );
    assert_eq!(hr_names(&v, "employee_id"), want, "{v}");
    let v = json_ok(
        home.path(),
        dir.path(),
        "connect_csv(\"excel.csv\", #{ key: \"employee_id\", delimiter: \";\", encoding: \"latin1\" }).search(\"(last=weiß)\")",
    );
    assert_eq!(hr_names(&v, "employee_id").len(), 1, "{v}");
    for (file, opts) in [("unicode.csv", ""), ("nobom.csv", ", encoding: \"utf-16\"")] {
        let v = json_ok(
            home.path(),
            dir.path(),
            &format!(
                "connect_csv({}, #{{ key: \"employee_id\", delimiter: \"\\t\"{opts} }}).search(\"\")",
                lit(file)
            ),
        );
        assert_eq!(hr_names(&v, "employee_id"), want, "{file}: {v}");
    }

    // without the option the cp1252 file is refused, naming the line and the option
    let (c, err) = fails(
        home.path(),
        dir.path(),
        "connect_csv(\"excel.csv\", #{ key: \"employee_id\", delimiter: \";\" })",
    );
    assert_eq!(c, 1, "{err}");
    for w in [
        "excel.csv line 2",
        "not valid UTF-8",
        "encoding: \"windows-1252\"",
    ] {
        assert!(err.contains(w), "{w:?} not in:\n{err}");
    }
    let (_, err) = fails(
        home.path(),
        dir.path(),
        "connect_csv(\"excel.csv\", #{ key: \"employee_id\", encoding: \"ebcdic\" })",
    );
    assert!(err.contains("unknown encoding 'ebcdic'"), "{err}");

    // a write keeps the file's encoding, BOM and line ending
    json_ok(
        home.path(),
        dir.path(),
        "let c = connect_csv(\"excel.csv\", #{ key: \"employee_id\", delimiter: \";\", encoding: \"windows-1252\" });\n\
         c.modify(\"E1\", #{ replace: #{ dept: \"Büro\" } });\n\
         let u = connect_csv(\"unicode.csv\", #{ key: \"employee_id\", delimiter: \"\\t\" });\n\
         u.modify(\"E1\", #{ replace: #{ dept: \"Büro\" } });\n\
         0",
    );
    let excel_now = std::fs::read(dir.path().join("excel.csv")).unwrap();
    assert_eq!(
        excel_now,
        cp1252(
            "employee_id;first;last;dept\r\nE1;Jürgen;Weiß;Büro\r\nE2;Zoë;Müller-Núñez;Straße\r\n"
        )
    );
    let unicode_now = std::fs::read(dir.path().join("unicode.csv")).unwrap();
    assert_eq!(
        unicode_now,
        utf16le_bom(&unicode.replace("Café", "Büro")),
        "{}",
        String::from_utf8_lossy(&unicode_now)
    );
}

#[test]
fn csv_error_lines_are_right_for_crlf_and_cr_only_files_and_ldifde_adds_read_as_entries() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    for (name, nl) in [("lf.csv", "\n"), ("crlf.csv", "\r\n"), ("cr.csv", "\r")] {
        let text = [
            "employee_id,name",
            "E1,Ann",
            "E2,Bob",
            "E3,Cat",
            "E2,Dan",
            "",
        ]
        .join(nl);
        std::fs::write(dir.path().join(name), text).unwrap();
        let (c, err) = fails(
            home.path(),
            dir.path(),
            &format!("connect_csv({}, #{{ key: \"employee_id\" }})", lit(name)),
        );
        assert_eq!(c, 1, "{err}");
        assert!(
            err.contains(&format!(
                "{name} line 5: duplicate key 'E2' (first on line 3)"
            )),
            "{name}: {err}"
        );
    }
    // a CR-only file reads its rows as rows
    std::fs::write(
        dir.path().join("cr_ok.csv"),
        "employee_id,name\rE1,Ann\rE2,Bob\rE3,Cat\r",
    )
    .unwrap();
    let v = json_ok(
        home.path(),
        dir.path(),
        "let c = connect_csv(\"cr_ok.csv\", #{ key: \"employee_id\" }); [c.search(\"\").len(), c.get(\"E3\").name]",
    );
    assert_eq!(v, serde_json::json!([3, "Cat"]), "{v}");

    // ldifde's export: every record a `changetype: add`
    std::fs::write(
        dir.path().join("ldifde.ldif"),
        "dn: CN=Jürgen Weiß,OU=Staff,DC=corp,DC=example\r\nchangetype: add\r\nobjectClass: user\r\ncn: Jürgen Weiß\r\nsAMAccountName: jweiss\r\n\r\n\
         dn: CN=Ann Lee,OU=Staff,DC=corp,DC=example\r\nchangetype: add\r\nobjectClass: user\r\ncn: Ann Lee\r\nsAMAccountName: alee\r\n\r\n",
    )
    .unwrap();
    let v = json_ok(
        home.path(),
        dir.path(),
        "connect_ldif(\"ldifde.ldif\").search(\"(sAMAccountName=jweiss)\")",
    );
    let rows = v.as_array().expect("list");
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["cn"], "Jürgen Weiß", "{v}");
    assert!(rows[0].get("changetype").is_none(), "{v}");
    // other change records stay refused, naming the line
    std::fs::write(
        dir.path().join("mixed.ldif"),
        "dn: cn=a,dc=x\nchangetype: add\ncn: a\n\ndn: cn=b,dc=x\nchangetype: delete\n",
    )
    .unwrap();
    let (_, err) = fails(home.path(), dir.path(), "connect_ldif(\"mixed.ldif\")");
    assert!(
        err.contains("mixed.ldif line 6") && err.contains("changetype: delete"),
        "{err}"
    );
}
