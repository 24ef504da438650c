//! How the run log (and `-v`) names the attributes of one write: `attr:
//! old → new`, secret values masked (passwords, unicodePwd, anything named
//! like a secret), binary values by size, long value lists shortened.

use crate::model::Value;

use super::item::AttrChange;

/// Values of one attribute shown at most in a log line.
const MAX_VALUES: usize = 5;
/// Characters of one value shown at most.
const MAX_CHARS: usize = 200;

/// True for attributes whose values are never written to a log.
pub fn is_secret(attr: &str) -> bool {
    let a = attr.to_ascii_lowercase();
    a.contains("password")
        || a.contains("pwd")
        || a.contains("secret")
        || a.contains("passphrase")
        || a == "supplementalcredentials"
}

/// One attribute's values as log text: `()` when there is none.
fn values(attr: &str, vals: &[Value]) -> String {
    if vals.is_empty() {
        return "()".into();
    }
    if is_secret(attr) {
        return "<secret>".into();
    }
    let mut shown: Vec<String> = vals
        .iter()
        .take(MAX_VALUES)
        .map(|v| match v.display(attr) {
            Some(t) if t.chars().count() > MAX_CHARS => {
                format!("{}…", t.chars().take(MAX_CHARS).collect::<String>())
            }
            Some(t) => t,
            None => format!("<binary {} bytes>", v.as_bytes().len()),
        })
        .collect();
    if vals.len() > MAX_VALUES {
        shown.push(format!("… {} more", vals.len() - MAX_VALUES));
    }
    if shown.len() == 1 {
        shown.remove(0)
    } else {
        format!("[{}]", shown.join("; "))
    }
}

/// `attr: old → new` for each change, joined by `, `.
pub fn changes(list: &[AttrChange]) -> String {
    list.iter()
        .map(|c| {
            format!(
                "{}: {} → {}",
                c.attr,
                values(&c.attr, &c.old),
                values(&c.attr, &c.new)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
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
}
