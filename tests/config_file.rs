//! The password-protected configuration file through the `idsync` binary (API §7):
//! `export_config` in one IDSYNC_HOME, `import_config` into a fresh one, against the real
//! embedded SQLite store and a private slapd for the LDAP profile. A wrong password, a changed
//! byte anywhere, a truncated or foreign file are refused with a clear error and change
//! nothing; a secret's value is in neither the file nor any output; per-machine state (change
//! cursors) stays home.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use idsync::store::{SqliteStore, StateStore};
use idsync::sync::plan::cursor_key;
use serde_json::{Value, json};

/// The config file's password, and the variable it is read from.
const CONFIG_PW_ENV: &str = "CONFIG_PW";
const CONFIG_PW: &str = "correct horse battery staple";
/// The LDAP profile's bind password (a secret by reference), and its variable.
const SOME_PW_ENV: &str = "SOME_PW";
const SOME_PW: &str = "Bq7-sync-bind-pw-4417";
const SYNC_DN: &str = "uid=sync,ou=people,dc=example,dc=com";

fn fixture() -> String {
    format!(
        "dn: {SYNC_DN}\nobjectClass: inetOrgPerson\nuid: sync\ncn: Sync Account\nsn: Account\nuserPassword: {SOME_PW}\n"
    )
}

/// Runs `idsync [--format json] -c code` in `home`, with both passwords in the environment.
fn idsync(home: &Path, json: bool, code: &str) -> Output {
    let mut c = support::idsync_command(home);
    c.env(CONFIG_PW_ENV, CONFIG_PW).env(SOME_PW_ENV, SOME_PW);
    if json {
        c.args(["--format", "json"]);
    }
    c.arg("-c").arg(code).output().expect("run idsync")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    o
}

/// The one line of stderr of a refused run, which must end with status 1.
fn refused(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", show(o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        show(o)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn export(home: &Path, file: &Path) -> Output {
    idsync(
        home,
        true,
        &format!(
            "export_config({:?}, secret({CONFIG_PW_ENV:?}))",
            file.display().to_string()
        ),
    )
}

fn import(home: &Path, file: &Path, pw_env: &str) -> Output {
    idsync(
        home,
        true,
        &format!(
            "import_config({:?}, secret({pw_env:?}))",
            file.display().to_string()
        ),
    )
}

/// The rows `import_config` returned: (item, name, action), in order.
fn rows(o: &Output) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", show(o)));
    v.as_array()
        .unwrap_or_else(|| panic!("not an array:\n{}", show(o)))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("item"), s("name"), s("action"))
        })
        .collect()
}

fn row(item: &str, name: &str, action: &str) -> (String, String, String) {
    (item.into(), name.into(), action.into())
}

fn store(home: &Path) -> SqliteStore {
    SqliteStore::open(home.join("state.db")).expect("open the state store")
}

/// The profiles (name, kind, options, updated_ms) and the settings of a store.
type Snapshot = (Vec<(String, String, Value, i64)>, Vec<(String, String)>);

/// Everything an import may touch, timestamps included.
fn snapshot(home: &Path) -> Snapshot {
    let s = store(home);
    let profiles = s
        .list_profiles()
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.kind, p.data, p.updated_ms))
        .collect();
    (profiles, s.list_settings().unwrap())
}

/// No output of `o` holds the bind password.
fn assert_no_secret(o: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !all.contains(SOME_PW),
        "the secret's value was printed:\n{}",
        show(o)
    );
    assert!(
        !all.contains(CONFIG_PW),
        "the file's password was printed:\n{}",
        show(o)
    );
}

/// A home with an LDAP profile (password by reference), a CSV profile, a plain setting, the
/// store location and a change cursor; and the file exported from it.
struct Exported {
    _dir: tempfile::TempDir,
    file: PathBuf,
    slapd: support::Ldap,
    /// The `store` setting exported: this home's own state.db named as a location (a real,
    /// reachable store, since every process of the home now opens the store it names).
    store_location: String,
}

fn exported() -> Option<Exported> {
    let slapd = support::private_slapd(Some(&fixture()))?;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home-a");
    std::fs::write(dir.path().join("hr.csv"), "employee_id,first\nE1,Ann\n").unwrap();
    let hr_csv = dir.path().join("hr.csv").display().to_string();
    let o = ok(idsync(
        &home,
        false,
        &format!(
            r#"save_connection("lab", connect_ldap({:?}, #{{ bind_dn: {SYNC_DN:?}, password: secret({SOME_PW_ENV:?}) }}));
               save_connection("hr", connect_csv({hr_csv:?}, #{{ key: "employee_id" }}));"#,
            slapd.url
        ),
    ));
    assert_no_secret(&o);
    let store_location = format!("sqlite:{}", home.join("state.db").display());
    {
        let s = store(&home);
        s.put_setting("colour", "blue").unwrap();
        s.put_setting("store", &store_location).unwrap();
        s.put_setting(&cursor_key("hr-to-ldap/users"), "tag|csn-123")
            .unwrap();
    }
    let file = dir.path().join("idsync-config.bin");
    let o = ok(export(&home, &file));
    assert_no_secret(&o);
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            &summary["profiles"],
            &summary["settings"],
            &summary["store"]
        ),
        (&json!(2), &json!(1), &json!(store_location)),
        "{}",
        show(&o)
    );
    Some(Exported {
        _dir: dir,
        file,
        slapd,
        store_location,
    })
}

#[test]
fn change_cursors_are_per_machine_state() {
    // If the sync engine named its cursors differently, they would travel.
    let key = cursor_key("hr-to-ldap/users");
    assert!(!idsync::store::config_file::travels(&key), "{key}");
    assert!(idsync::store::config_file::travels("colour"));
}

#[test]
fn export_then_import_into_a_fresh_home() {
    let Some(x) = exported() else { return };
    // The secret's value is in neither the file nor the document inside it.
    let bytes = std::fs::read(&x.file).unwrap();
    // The header: magic, version 1, Argon2id, XChaCha20-Poly1305, 64 MiB, 3 iterations, 1 lane.
    assert_eq!(&bytes[..12], b"IDSYNCCF\x00\x01\x01\x01");
    assert_eq!(&bytes[12..24], &[0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1]);
    assert!(
        !bytes
            .windows(SOME_PW.len())
            .any(|w| w == SOME_PW.as_bytes())
    );
    assert!(
        !bytes
            .windows(CONFIG_PW.len())
            .any(|w| w == CONFIG_PW.as_bytes())
    );
    let doc = idsync::store::config_file::read(&x.file, CONFIG_PW).expect("decrypt");
    let text = serde_json::to_string(&doc).unwrap();
    assert!(!text.contains(SOME_PW), "{text}");
    assert!(text.contains("env:SOME_PW"), "{text}");

    let fresh = tempfile::tempdir().unwrap();
    let home = fresh.path().join("home-b");
    let o = ok(import(&home, &x.file, CONFIG_PW_ENV));
    assert_no_secret(&o);
    assert_eq!(
        rows(&o),
        [
            row("profile", "hr", "added"),
            row("profile", "lab", "added"),
            row("setting", "colour", "added"),
            row("setting", "store", "added"),
        ],
        "{}",
        show(&o)
    );
    // What landed: the profiles (password as its reference), the settings, the store
    // location; not the cursor.
    let s = store(&home);
    let lab = s.get_profile("lab").unwrap().expect("lab imported");
    assert_eq!(lab.data["password"], json!("env:SOME_PW"));
    assert_eq!(lab.data["url"], json!(x.slapd.url));
    assert_eq!(s.get_setting("colour").unwrap().as_deref(), Some("blue"));
    assert_eq!(
        s.get_setting("store").unwrap().as_deref(),
        Some(x.store_location.as_str())
    );
    assert_eq!(
        s.get_setting(&cursor_key("hr-to-ldap/users")).unwrap(),
        None
    );
    drop(s);
    // The imported profile works on the new machine: it binds with the password its
    // reference names.
    let o = ok(idsync(
        &home,
        true,
        r#"let c = connection("lab"); c.get("uid=sync,ou=people,dc=example,dc=com").cn"#,
    ));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "\"Sync Account\"",
        "{}",
        show(&o)
    );
    assert_no_secret(&o);

    // Again: nothing to do. After a change in the store this home now uses (the imported
    // `store` setting names home A's state.db): that profile is reported changed.
    let o = ok(import(&home, &x.file, CONFIG_PW_ENV));
    assert_eq!(rows(&o), [], "{}", show(&o));
    let used = SqliteStore::open(x.store_location.strip_prefix("sqlite:").unwrap()).unwrap();
    used.put_profile("hr", "csv", &json!({"path": "elsewhere.csv", "key": "id"}))
        .unwrap();
    used.put_setting("colour", "red").unwrap();
    used.put_setting("local-only", "kept").unwrap();
    let o = ok(import(&home, &x.file, CONFIG_PW_ENV));
    assert_eq!(
        rows(&o),
        [
            row("profile", "hr", "changed"),
            row("setting", "colour", "changed")
        ],
        "{}",
        show(&o)
    );
    // Import adds and changes, never removes.
    assert_eq!(
        used.get_setting("local-only").unwrap().as_deref(),
        Some("kept")
    );
}

#[test]
fn a_wrong_password_or_a_changed_byte_is_refused_and_changes_nothing() {
    let Some(x) = exported() else { return };
    let fresh = tempfile::tempdir().unwrap();
    let home = fresh.path().join("home-b");
    // The target already has state of its own, which a refusal must leave exactly as it is.
    ok(idsync(&home, false, "connections()"));
    {
        let s = store(&home);
        s.put_profile("hr", "csv", &json!({"path": "mine.csv", "key": "id"}))
            .unwrap();
        s.put_setting("colour", "green").unwrap();
    }
    let before = snapshot(&home);
    let path = x.file.display().to_string();

    let mut c = support::idsync_command(&home);
    c.env("WRONG_PW", "correct horse battery stapler").args([
        "-c",
        &format!("import_config({path:?}, secret(\"WRONG_PW\"))"),
    ]);
    let o = c.output().unwrap();
    let e = refused(&o);
    assert!(
        e.contains(&format!("wrong password or damaged file: {path}")),
        "{e}"
    );
    assert_eq!(
        snapshot(&home),
        before,
        "a wrong password changed the store"
    );

    // One flipped byte: in the magic, the version, the key-derivation parameters, the salt,
    // the nonce, the ciphertext and the tag.
    let good = std::fs::read(&x.file).unwrap();
    let n = good.len();
    let flipped = fresh.path().join("flipped.bin");
    let flipped_s = flipped.display().to_string();
    for (at, what) in [
        (0, "magic"),
        (9, "version"),
        (10, "key derivation id"),
        (15, "memory cost"),
        (19, "iterations"),
        (23, "lanes"),
        (30, "salt"),
        (50, "nonce"),
        (64, "ciphertext start"),
        ((64 + n - 16) / 2, "ciphertext middle"),
        (n - 1, "tag"),
    ] {
        let mut b = good.clone();
        b[at] ^= 0x01;
        std::fs::write(&flipped, &b).unwrap();
        let o = import(&home, &flipped, CONFIG_PW_ENV);
        let e = refused(&o);
        assert!(
            e.contains(&flipped_s),
            "{what} (byte {at}): the error does not name the file: {e}"
        );
        let expected = match what {
            "magic" => "not an idsync configuration file",
            "version" => "format version 0 does not exist",
            "lanes" => "implausible key derivation parameters",
            "key derivation id" => "unknown key derivation id",
            _ => "wrong password or damaged file",
        };
        assert!(e.contains(expected), "{what} (byte {at}): {e}");
        assert_no_secret(&o);
        assert_eq!(
            snapshot(&home),
            before,
            "{what} (byte {at}) flipped changed the store"
        );
    }
    // The good file still imports.
    ok(import(&home, &x.file, CONFIG_PW_ENV));
    assert_ne!(snapshot(&home), before);
}

#[test]
fn a_truncated_foreign_or_missing_file_is_a_clear_error() {
    let Some(x) = exported() else { return };
    let fresh = tempfile::tempdir().unwrap();
    let home = fresh.path().join("home-b");
    ok(idsync(&home, false, "connections()"));
    let before = snapshot(&home);
    let good = std::fs::read(&x.file).unwrap();
    let f = fresh.path().join("cut.bin");
    let fs = f.display().to_string();
    for (len, expected) in [
        (0, format!("not an idsync configuration file: {fs}")),
        (5, format!("not an idsync configuration file: {fs}")),
        (40, format!("damaged file: {fs}: truncated")),
        (64 + 15, format!("damaged file: {fs}: truncated")),
        (
            good.len() - 1,
            format!("wrong password or damaged file: {fs}"),
        ),
    ] {
        std::fs::write(&f, &good[..len]).unwrap();
        let e = refused(&import(&home, &f, CONFIG_PW_ENV));
        assert!(e.contains(&expected), "cut at {len}: {e}");
        assert_eq!(snapshot(&home), before);
    }
    let csv = fresh.path().join("hr.csv");
    std::fs::write(&csv, "employee_id,first\nE1,Ann\n").unwrap();
    let e = refused(&import(&home, &csv, CONFIG_PW_ENV));
    assert!(
        e.contains(&format!(
            "not an idsync configuration file: {}",
            csv.display()
        )),
        "{e}"
    );
    let missing = fresh.path().join("nope.bin");
    let e = refused(&import(&home, &missing, CONFIG_PW_ENV));
    assert!(
        e.contains(&format!(
            "{}: cannot read the configuration file",
            missing.display()
        )),
        "{e}"
    );
    assert_eq!(snapshot(&home), before);
}

#[test]
fn a_secret_value_never_gets_into_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(idsync(&home, false, "connections()"));
    let file = dir.path().join("cfg.bin");
    // A profile holding a password in clear (as a buggy or older writer might have stored
    // it): export refuses, names the place, not the value, and writes no file.
    store(&home)
        .put_profile(
            "plain",
            "ldap",
            &json!({"url": "ldap://127.0.0.1:1", "bind_dn": "cn=x", "password": SOME_PW}),
        )
        .unwrap();
    let o = export(&home, &file);
    let e = refused(&o);
    assert!(e.contains(r#"profile "plain", option "password""#), "{e}");
    assert_no_secret(&o);
    assert!(!file.exists(), "a file was written");
    // The value of a referenced variable anywhere else (here: in the base) is refused too.
    store(&home)
        .put_profile(
            "plain",
            "ldap",
            &json!({"url": "ldap://127.0.0.1:1", "password": "env:SOME_PW", "base": format!("ou={SOME_PW}")}),
        )
        .unwrap();
    let o = export(&home, &file);
    let e = refused(&o);
    assert!(e.contains("environment variable SOME_PW"), "{e}");
    assert_no_secret(&o);
    assert!(!file.exists(), "a file was written");
    // A store location with a password in its URL.
    store(&home).remove_profile("plain").unwrap();
    store(&home)
        .put_setting("store", &format!("postgres://idsync:{SOME_PW}@db/idsync"))
        .unwrap();
    let o = export(&home, &file);
    let e = refused(&o);
    // Refused before export_config runs: this home's processes cannot open such a store.
    assert!(e.contains("holds a password"), "{e}");
    assert_no_secret(&o);
    assert!(!file.exists(), "a file was written");

    // The file's password is a secret too: typed as text it is refused.
    let o = idsync(
        &home,
        false,
        &format!(
            "export_config({:?}, \"typed-password\")",
            file.display().to_string()
        ),
    );
    let e = refused(&o);
    assert!(e.contains("give the password as secret"), "{e}");
    assert!(!e.contains("typed-password"), "{e}");
    assert!(!file.exists());
}

#[test]
fn an_import_refused_part_way_leaves_the_store_exactly_as_it_was() {
    let Some(x) = exported() else { return };
    let fresh = tempfile::tempdir().unwrap();
    let home = fresh.path().join("home-b");
    ok(idsync(&home, false, "connections()"));
    {
        let s = store(&home);
        s.put_profile("hr", "csv", &json!({"path": "mine.csv", "key": "id"}))
            .unwrap();
        s.put_setting("colour", "green").unwrap();
    }
    let before = snapshot(&home);
    // Four writes are due (profile hr changed, lab added, settings colour and store); the
    // test-only knob makes the store refuse the fourth, after three were written in the
    // same transaction.
    let mut c = support::idsync_command(&home);
    c.env(CONFIG_PW_ENV, CONFIG_PW)
        .env(SOME_PW_ENV, SOME_PW)
        .env(idsync::store::snapshot::FAIL_AFTER_ENV, "3")
        .args([
            "-c",
            &format!(
                "import_config({:?}, secret({CONFIG_PW_ENV:?}))",
                x.file.display().to_string()
            ),
        ]);
    let o = c.output().unwrap();
    let e = refused(&o);
    assert!(
        e.contains("applying the 4 change(s) failed")
            && e.contains("number 4")
            && e.contains("nothing was changed"),
        "{e}"
    );
    assert_no_secret(&o);
    assert_eq!(
        snapshot(&home),
        before,
        "an import refused part-way changed the store"
    );
    // Without the knob the same import lands.
    let o = ok(import(&home, &x.file, CONFIG_PW_ENV));
    assert_eq!(rows(&o).len(), 4, "{}", show(&o));
}
