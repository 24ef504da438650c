//! How the run log (and `-v`) names the attributes of one write: `attr:
//! old → new`, secret values masked (passwords, unicodePwd, anything named
//! like a secret), binary values by size, long value lists shortened.

use crate::model::Value;

use super::item::AttrChange;

/// Values of one attribute shown at most in a log line.
const MAX_VALUES: usize = 5;
/// Characters of one value shown at most.
const MAX_CHARS: usize = 200;

/// True when `hay` contains `needle` (lower case) in any ASCII case.
fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// True for attributes whose values are never written to a log.
pub fn is_secret(attr: &str) -> bool {
    ["password", "pwd", "secret", "passphrase"]
        .iter()
        .any(|n| contains_ci(attr, n))
        || attr.eq_ignore_ascii_case("supplementalcredentials")
}

/// Appends one attribute's values as log text: `()` when there is none,
/// `[a; b]` for several. Written straight into the line (a run logs every
/// create with its values).
fn push_values(out: &mut String, attr: &str, vals: &[Value]) {
    use std::fmt::Write;
    if vals.is_empty() {
        out.push_str("()");
        return;
    }
    if is_secret(attr) {
        out.push_str("<secret>");
        return;
    }
    let many = vals.len() > 1;
    if many {
        out.push('[');
    }
    for (i, v) in vals.iter().take(MAX_VALUES).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let text = match v {
            Value::Text(t) => Some(std::borrow::Cow::Borrowed(t.as_str())),
            Value::Binary(_) => v.display(attr).map(std::borrow::Cow::Owned),
        };
        match text {
            Some(t) => match t.char_indices().nth(MAX_CHARS) {
                Some((cut, _)) => {
                    out.push_str(&t[..cut]);
                    out.push('…');
                }
                None => out.push_str(&t),
            },
            None => {
                let _ = write!(out, "<binary {} bytes>", v.as_bytes().len());
            }
        }
    }
    if vals.len() > MAX_VALUES {
        let _ = write!(out, "; … {} more", vals.len() - MAX_VALUES);
    }
    if many {
        out.push(']');
    }
}

/// `attr: old → new` for each change, joined by `, `.
pub fn changes(list: &[AttrChange]) -> String {
    let mut out = String::with_capacity(64 * list.len());
    for (i, c) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&c.attr);
        out.push_str(": ");
        push_values(&mut out, &c.attr, &c.old);
        out.push_str(" → ");
        push_values(&mut out, &c.attr, &c.new);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(attr: &str, old: &[&str], new: &[&str]) -> AttrChange {
        AttrChange {
            attr: attr.into(),
            old: old.iter().map(|v| Value::Text(v.to_string())).collect(),
            new: new.iter().map(|v| Value::Text(v.to_string())).collect(),
            rule: "test".into(),
        }
    }

    #[test]
    fn old_and_new_values_are_named_and_secrets_never() {
        let line = changes(&[
            change("title", &["Clerk"], &["Engineer"]),
            change("mail", &[], &["a@x.org", "b@x.org"]),
            change("userPassword", &["OldPw1!"], &["S3cret!pw"]),
            change("unicodePwd", &[], &["\"N3w!\""]),
        ]);
        assert_eq!(
            line,
            "title: Clerk → Engineer, mail: () → [a@x.org; b@x.org], userPassword: <secret> → <secret>, unicodePwd: () → <secret>"
        );
        assert!(!line.contains("S3cret") && !line.contains("N3w") && !line.contains("OldPw"));
    }

    #[test]
    fn long_lists_and_long_values_are_shortened() {
        let many: Vec<String> = (1..=7).map(|i| format!("v{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let long = "é".repeat(MAX_CHARS + 3);
        let line = changes(&[
            change("description", &[], &many),
            change("info", &[long.as_str()], &[]),
            change("PwdLastSet", &["1"], &["2"]),
        ]);
        let cut = format!("{}…", "é".repeat(MAX_CHARS));
        assert_eq!(
            line,
            format!(
                "description: () → [v1; v2; v3; v4; v5; … 2 more], info: {cut} → (), PwdLastSet: <secret> → <secret>"
            )
        );
    }
}
