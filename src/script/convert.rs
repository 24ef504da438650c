//! Conversions between Rhai values and the model: attribute values in and
//! out, option maps, and errors raised to scripts.

use rhai::{Array, Blob, Dynamic, EvalAltResult, ImmutableString, Map, Position};

use crate::connector::Error;
use crate::model::value::{BinaryKind, binary_kind};
use crate::model::{Entry, Secret, Value};

/// The error type every binding returns.
pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error with `msg`; Rhai fills in the call-site position.
pub fn rt_err(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(msg.into()),
        Position::NONE,
    ))
}

/// Maps a connector error into a script error, prefixed by the operation.
pub fn conn_err(op: &str, e: Error) -> Box<EvalAltResult> {
    rt_err(format!("{op}: {e}"))
}

/// One value as a script reads it: text, GUID/SID canonical, or a blob.
pub fn value_to_dynamic(attr: &str, v: &Value) -> Dynamic {
    match v {
        Value::Text(s) => Dynamic::from(s.clone()),
        Value::Binary(b) => match v.display(attr) {
            Some(s) => Dynamic::from(s),
            None => Dynamic::from_blob(b.clone()),
        },
    }
}

/// An attribute as a script reads it: `()` when absent, a string for one
/// value, an array for several.
pub fn attr_to_dynamic(e: &Entry, name: &str) -> Dynamic {
    let Some(a) = e.attr(name) else {
        return Dynamic::UNIT;
    };
    match a.values.len() {
        0 => Dynamic::UNIT,
        1 => value_to_dynamic(&a.name, &a.values[0]),
        _ => Dynamic::from_array(
            a.values
                .iter()
                .map(|v| value_to_dynamic(&a.name, v))
                .collect(),
        ),
    }
}

/// Script data to attribute values: a string, number or bool is one value,
/// an array is several, a blob is raw bytes, `()` is none.
pub fn dynamic_to_values(attr: &str, d: &Dynamic) -> ScriptResult<Vec<Value>> {
    if d.is_unit() {
        return Ok(Vec::new());
    }
    if d.is_array() {
        let arr = d.clone().cast::<Array>();
        let mut out = Vec::with_capacity(arr.len());
        for item in &arr {
            out.extend(dynamic_to_values(attr, item)?);
        }
        return Ok(out);
    }
    if d.is_blob() {
        return Ok(vec![Value::Binary(d.clone().cast::<Blob>())]);
    }
    if d.is::<Secret>() {
        return Err(rt_err(format!(
            "attribute '{attr}': a secret cannot be written as an attribute value; use set_password()"
        )));
    }
    if d.is_map() || d.is::<Entry>() {
        return Err(rt_err(format!(
            "attribute '{attr}': expected a string, number, array or blob, got {}",
            d.type_name()
        )));
    }
    let text = d.to_string();
    Ok(vec![match binary_kind(attr) {
        Some(BinaryKind::Opaque) => Value::Binary(text.into_bytes()),
        _ => Value::from_text(attr, &text),
    }])
}

/// A map of attribute -> value(s) as (name, values) pairs.
pub fn map_to_attrs(what: &str, m: &Map) -> ScriptResult<Vec<(String, Vec<Value>)>> {
    let mut out = Vec::with_capacity(m.len());
    for (k, v) in m {
        let name = k.to_string();
        if name.trim().is_empty() {
            return Err(rt_err(format!("{what}: empty attribute name")));
        }
        out.push((name.clone(), dynamic_to_values(&name, v)?));
    }
    Ok(out)
}

/// Reads a string option.
pub fn opt_str(opts: &Map, key: &str) -> ScriptResult<Option<String>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) if v.is_string() => Ok(Some(v.clone().cast::<ImmutableString>().to_string())),
        Some(v) => Err(rt_err(format!(
            "option '{key}' must be a string, got {}",
            v.type_name()
        ))),
    }
}

/// Reads a boolean option.
pub fn opt_bool(opts: &Map, key: &str) -> ScriptResult<Option<bool>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .map_err(|t| rt_err(format!("option '{key}' must be true or false, got {t}"))),
    }
}

/// Reads a non-negative number option (integer or float).
pub fn opt_num(opts: &Map, key: &str) -> ScriptResult<Option<f64>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) => {
            let n = if let Ok(i) = v.as_int() {
                i as f64
            } else if let Ok(f) = v.as_float() {
                f
            } else {
                return Err(rt_err(format!(
                    "option '{key}' must be a number, got {}",
                    v.type_name()
                )));
            };
            if n < 0.0 || !n.is_finite() {
                return Err(rt_err(format!("option '{key}' must not be negative")));
            }
            Ok(Some(n))
        }
    }
}

/// Reads a list-of-strings option (a single string counts as one).
pub fn opt_list(opts: &Map, key: &str) -> ScriptResult<Option<Vec<String>>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_string() => Ok(Some(
            v.to_string()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )),
        Some(v) if v.is_array() => Ok(Some(
            v.clone()
                .cast::<Array>()
                .iter()
                .map(|x| x.to_string())
                .collect(),
        )),
        Some(v) => Err(rt_err(format!(
            "option '{key}' must be an array of strings, got {}",
            v.type_name()
        ))),
    }
}

/// Rejects keys not in `known`, naming the valid ones (typos are common).
pub fn check_keys(what: &str, opts: &Map, known: &[&str]) -> ScriptResult<()> {
    for k in opts.keys() {
        if !known.contains(&k.as_str()) {
            return Err(rt_err(format!(
                "{what}: unknown option '{k}' (known options: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// A password argument: a secret, or a plain string (usable, not storable).
pub fn to_secret(what: &str, d: &Dynamic) -> ScriptResult<Secret> {
    if d.is::<Secret>() {
        return Ok(d.clone().cast::<Secret>());
    }
    if d.is_string() {
        return Ok(Secret::literal(d.to_string()));
    }
    Err(rt_err(format!(
        "{what}: the password must be a string or secret(...), got {}",
        d.type_name()
    )))
}
