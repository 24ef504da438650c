//! Reading `ldapsearch -LLL -o ldif-wrap=no` output in tests, independently
//! of idsync's own LDIF code.

use std::collections::BTreeMap;

/// One entry's attributes: lowercased name -> sorted values.
pub type Attrs = BTreeMap<String, Vec<String>>;

/// Parses ldapsearch output (and idsync's LDIF, folded or not): DN
/// (lowercased) -> attribute (lowercased) -> sorted values. Base64 values
/// (`::`) are decoded (lossy UTF-8).
pub fn parse_ldif(text: &str) -> BTreeMap<String, Attrs> {
    use base64::Engine;
    let mut out = BTreeMap::new();
    let mut dn: Option<String> = None;
    let mut attrs = Attrs::new();
    let mut flush = |dn: &mut Option<String>, attrs: &mut Attrs| {
        if let Some(d) = dn.take() {
            for v in attrs.values_mut() {
                v.sort();
            }
            out.insert(d.to_ascii_lowercase(), std::mem::take(attrs));
        }
    };
    for line in unfold(text).lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut dn, &mut attrs);
            continue;
        }
        let (name, rest) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("unexpected LDIF line {line:?} in:\n{text}"));
        let value = match rest.strip_prefix(':') {
            Some(b64) => String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .expect("base64 in LDIF"),
            )
            .into_owned(),
            None => rest.strip_prefix(' ').unwrap_or(rest).to_string(),
        };
        if name.eq_ignore_ascii_case("dn") {
            dn = Some(value);
        } else {
            attrs
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(value);
        }
    }
    flush(&mut dn, &mut attrs);
    out
}

/// Joins RFC 2849 continuation lines (a line starting with one space continues the previous).
pub fn unfold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            out.push_str(rest);
        } else {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(line);
        }
    }
    out.push('\n');
    out
}
