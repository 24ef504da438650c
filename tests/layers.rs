//! The layers depend one way (DESIGN "The house", issue 11 item 6): model →
//! connector → sync → script → shell, with the store between the connectors
//! and the engine (the PostgreSQL store reuses the SQL connector's client),
//! `config` at the bottom, `azure` on top of the Graph connector and the
//! service beside the shell. This test reads the sources and fails when a
//! file names a module of a layer above its own (`crate::shell` in
//! `src/script`, `crate::sync` in `src/connector`, ...), and when the sync
//! engine or the script layer compares a connector's `kind()` with one
//! system's name instead of asking a capability of the `Connector` trait.

use std::path::{Path, PathBuf};

/// Each top-level module of `src` and its layer: a file may use modules of
/// a lower layer and its own module, nothing else. A module missing here
/// is reported (add it where it belongs).
const LAYERS: &[(&str, u8)] = &[
    ("model", 0),
    ("config", 0),
    ("connector", 1),
    ("store", 2),
    ("sync", 3),
    ("azure", 3),
    ("script", 4),
    ("shell", 5),
    ("service", 5),
];

/// The layers this test checks (the shell and service are at the top).
const CHECKED: &[&str] = &[
    "model",
    "config",
    "connector",
    "store",
    "sync",
    "azure",
    "script",
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a line: without a `//` comment (doc comments included), so
/// a doc link to a higher layer is not an import.
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a source text names through `crate::`: both
/// `crate::sync::x` and the grouped `use crate::{sync, shell::y}`, also
/// when such a group spans several lines.
fn crate_modules(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut group: Option<(usize, String)> = None;
    for (no, line) in text.lines().enumerate() {
        let line = code(line);
        if let Some((start, buf)) = group.as_mut() {
            buf.push_str(line);
            if let Some(end) = buf.find('}') {
                for part in buf[..end].split(',') {
                    let name = ident_at(part.trim());
                    if !name.is_empty() {
                        found.push((*start, name.to_string()));
                    }
                }
                group = None;
            }
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(inner) = rest.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => {
                        for part in inner[..end].split(',') {
                            let name = ident_at(part.trim());
                            if !name.is_empty() {
                                found.push((no + 1, name.to_string()));
                            }
                        }
                    }
                    None => group = Some((no + 1, inner.to_string())),
                }
            } else {
                let name = ident_at(rest);
                if !name.is_empty() {
                    found.push((no + 1, name.to_string()));
                }
            }
        }
    }
    found
}

/// `(file:line, message)` for every arrow that runs up a layer.
fn upward_arrows(src: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for module in CHECKED {
        let own = layer(module).expect("checked modules have a layer");
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let flat = src.join(format!("{module}.rs"));
        if flat.is_file() {
            files.push(flat);
        }
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read source");
            for (no, used) in crate_modules(&text) {
                if used == *module {
                    continue;
                }
                let shown = format!("{}:{no}", f.strip_prefix(src).unwrap_or(&f).display());
                match layer(&used) {
                    Some(l) if l < own => {}
                    Some(l) => bad.push(format!(
                        "src/{shown}: {module} (layer {own}) uses crate::{used} (layer {l})"
                    )),
                    None => bad.push(format!(
                        "src/{shown}: crate::{used} is in no layer of tests/layers.rs's LAYERS"
                    )),
                }
            }
        }
    }
    bad
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let bad = upward_arrows(&src_dir());
    assert!(bad.is_empty(), "arrows up a layer:\n{}", bad.join("\n"));
}

#[test]
fn the_engine_asks_capabilities_not_kind_names() {
    let mut bad = Vec::new();
    for module in ["sync", "script", "azure"] {
        let mut files = Vec::new();
        rust_files(&src_dir().join(module), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read source");
            for (no, line) in text.lines().enumerate() {
                let line = code(line);
                // A test connector may name its kind; comparing one is the defect.
                for op in ["kind() ==", "kind() !=", "kind()==", "kind()!="] {
                    if line.contains(op) && !line.contains("ErrorKind") {
                        bad.push(format!("{}:{}: {}", f.display(), no + 1, line.trim()));
                    }
                }
                if line.contains(".graph()") {
                    bad.push(format!("{}:{}: {}", f.display(), no + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "compare capabilities of the Connector trait, not kind names:\n{}",
        bad.join("\n")
    );
}

/// The scanner itself: an upward `use`, a grouped one over several lines,
/// and a doc comment that only mentions a higher layer.
#[test]
fn the_scanner_finds_grouped_and_plain_uses_and_skips_comments() {
    let text = "use crate::model::Entry;\n\
                //! see crate::shell for the REPL\n\
                use crate::{\n    sync::run,\n    shell::render,\n};\n\
                let x = crate::script::f(); // crate::service\n\
                use crate::{config, store::StateStore};\n";
    let found: Vec<(usize, String)> = crate_modules(text);
    let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        ["model", "sync", "shell", "script", "config", "store"]
    );
    assert_eq!(found[1].0, 3);
    assert_eq!(found[3].0, 7);
}
