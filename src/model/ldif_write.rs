//! Writing LDIF content records (RFC 2849): the one writer behind the LDIF
//! connector's file and the shell's `--format ldif`.
//!
//! A value is written as `attr: value` only when it is a SAFE-STRING and
//! not binary; otherwise as `attr:: base64`. The rules, in one place:
//!
//! - **binary**: a value held as bytes ([`Value::Binary`]) or of an
//!   attribute on the binary list ([`is_binary`]) is always base64, so a
//!   GUID is written as its raw 16 bytes, never as its display form;
//! - **SAFE-INIT-CHAR**: a first byte of space, `:` or `<` needs base64;
//! - **SAFE-CHAR**: NUL, CR, LF and any byte above 0x7F (every non-ASCII
//!   character) need base64;
//! - **trailing space**: a value ending in a space is base64 (RFC 2849
//!   note 8: such values SHOULD be, as readers may trim them);
//! - **empty**: an empty value is `attr:` (nothing after the colon).
//!
//! The `dn:` line follows the same rules (a DN is never binary). Lines are
//! folded at 76 characters: a continuation line starts with one space.
//! The reader of these records is the LDIF connector
//! (`crate::connector::ldif`); the DN comparison key is [`super::dn::dn_key`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::value::is_binary;
use super::{Entry, Value};

/// Longest written line before folding, in characters.
pub const FOLD_WIDTH: usize = 76;

/// True when `value` may follow `attr: ` as it is: an RFC 2849
/// SAFE-STRING (ASCII without NUL, CR, LF; not starting with space, `:` or
/// `<`) that does not end with a space. The empty value is safe.
pub fn is_safe_string(value: &[u8]) -> bool {
    let Some((&first, &last)) = value.first().zip(value.last()) else {
        return true;
    };
    !matches!(first, b' ' | b':' | b'<')
        && last != b' '
        && value
            .iter()
            .all(|&c| c.is_ascii() && !matches!(c, 0 | b'\r' | b'\n'))
}

/// True when the value `v` of attribute `attr` is written base64-encoded.
pub fn needs_base64(attr: &str, v: &Value) -> bool {
    let bytes = v.as_bytes();
    !bytes.is_empty()
        && (is_binary(attr) || matches!(v, Value::Binary(_)) || !is_safe_string(bytes))
}

/// Appends one `name: value` or `name:: base64` line (`name:` for an empty
/// value), folded at [`FOLD_WIDTH`], each physical line ending with `\n`.
/// `binary` forces base64 for a non-empty value.
pub fn write_line(out: &mut String, name: &str, value: &[u8], binary: bool) {
    let line = if value.is_empty() {
        format!("{name}:")
    } else if binary || !is_safe_string(value) {
        format!("{name}:: {}", B64.encode(value))
    } else {
        // A safe string is ASCII.
        format!("{name}: {}", String::from_utf8_lossy(value))
    };
    fold(out, &line);
}

/// Appends `line` folded at [`FOLD_WIDTH`] characters: continuation lines
/// start with one space; every physical line ends with `\n`.
fn fold(out: &mut String, line: &str) {
    let chars: Vec<char> = line.chars().collect();
    let mut start = 0;
    let mut room = FOLD_WIDTH;
    loop {
        let end = (start + room).min(chars.len());
        if start > 0 {
            out.push(' ');
        }
        out.extend(&chars[start..end]);
        out.push('\n');
        start = end;
        room = FOLD_WIDTH - 1;
        if start >= chars.len() {
            break;
        }
    }
}

/// Appends one entry as a content record: the `dn:` line, then one line per
/// value in the entry's attribute order, each ending with `\n` (no blank
/// line after the record: the caller separates records).
pub fn write_entry(out: &mut String, e: &Entry) {
    write_line(out, "dn", e.dn.as_bytes(), false);
    for a in e.attributes() {
        for v in &a.values {
            write_line(out, &a.name, v.as_bytes(), needs_base64(&a.name, v));
        }
    }
}

/// One entry as a content record (see [`write_entry`]).
pub fn entry_record(e: &Entry) -> String {
    let mut out = String::new();
    write_entry(&mut out, e);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, v: Value) -> String {
        let mut out = String::new();
        write_line(&mut out, name, v.as_bytes(), needs_base64(name, &v));
        out
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    /// The union of the rules the connector's and the shell's writers had.
    #[test]
    fn which_values_are_base64() {
        let b64 = |name: &str, raw: &[u8]| format!("{name}:: {}\n", B64.encode(raw));
        let cases: Vec<(&str, Value, String)> = vec![
            ("cn", text("Ann Lee"), "cn: Ann Lee\n".into()),
            ("cn", text("a:b<c d"), "cn: a:b<c d\n".into()),
            ("cn", text(""), "cn:\n".into()),
            // SAFE-INIT-CHAR
            ("sn", text(" lead"), b64("sn", b" lead")),
            ("sn", text(":colon"), b64("sn", b":colon")),
            ("sn", text("<lt"), b64("sn", b"<lt")),
            // trailing space
            ("sn", text("trail "), b64("sn", b"trail ")),
            // SAFE-CHAR
            ("sn", text("Müller"), b64("sn", "Müller".as_bytes())),
            ("sn", text("a\nb"), b64("sn", b"a\nb")),
            ("sn", text("a\rb"), b64("sn", b"a\rb")),
            ("sn", text("a\0b"), b64("sn", b"a\0b")),
            ("sn", text("\u{7f}"), "sn: \u{7f}\n".into()),
            // Binary: by value kind, and by attribute name (the known list).
            (
                "photo",
                Value::Binary(b"abc".to_vec()),
                b64("photo", b"abc"),
            ),
            ("objectGUID", text("abc"), b64("objectGUID", b"abc")),
            (
                "objectGUID",
                Value::Binary(Vec::new()),
                "objectGUID:\n".into(),
            ),
        ];
        for (name, v, want) in cases {
            assert_eq!(line(name, v.clone()), want, "{name} {v:?}");
        }
        assert!(is_safe_string(b"plain value"));
        assert!(is_safe_string(b""));
        for bad in [
            &b" x"[..],
            b":x",
            b"<x",
            b"x ",
            b"a\nb",
            b"a\rb",
            b"a\0b",
            b"\xc3\xa9",
        ] {
            assert!(!is_safe_string(bad), "{bad:?}");
        }
    }

    #[test]
    fn folds_at_76_columns() {
        let mut out = String::new();
        write_line(&mut out, "info", "y".repeat(150).as_bytes(), false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines[1].len(), 76);
        assert!(lines[1].starts_with(' ') && lines[2].starts_with(' '));
        let joined = format!("{}{}{}", lines[0], &lines[1][1..], &lines[2][1..]);
        assert_eq!(joined, format!("info: {}", "y".repeat(150)));
        assert!(out.ends_with('\n') && !out.ends_with("\n\n"));
        // A line of exactly 76 characters is not folded.
        let mut out = String::new();
        write_line(&mut out, "info", "z".repeat(70).as_bytes(), false);
        assert_eq!(out, format!("info: {}\n", "z".repeat(70)));
    }

    #[test]
    fn entry_record_writes_dn_then_values_in_order() {
        let mut e = Entry::new("CN=Zoë,DC=corp");
        e.push("cn", [text("Zoë")]);
        e.push("mail", [text("z@corp"), text("zoe@corp")]);
        let out = entry_record(&e);
        assert_eq!(
            out,
            format!(
                "dn:: {}\ncn:: {}\nmail: z@corp\nmail: zoe@corp\n",
                B64.encode("CN=Zoë,DC=corp"),
                B64.encode("Zoë")
            )
        );
    }
}
