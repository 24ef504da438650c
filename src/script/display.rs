//! Bounded text of nested arrays and maps for `print`, `debug`, `to_string`
//! and string interpolation: Rhai's own formatting recurses once per level,
//! so printing a value nested 20,000 deep overflowed the stack and aborted
//! the process. Below [`MAX_DEPTH`] levels a value shows as `…`.

use std::fmt::Write;

use rhai::{Array, Dynamic, Engine, Map};

/// Levels of nesting shown before `…`.
pub const MAX_DEPTH: usize = 32;

/// Registers the bounded `to_string` / `to_debug` of arrays and maps.
pub fn register(engine: &mut Engine) {
    for name in ["to_string", "to_debug"] {
        engine.register_fn(name, |a: &mut Array| text_of_array(a, 0));
        engine.register_fn(name, |m: &mut Map| text_of_map(m, 0));
    }
}

/// One element, as Rhai shows it inside a collection (strings quoted).
fn item(v: &Dynamic, depth: usize) -> String {
    if depth > MAX_DEPTH {
        return "…".into();
    }
    if let Some(a) = v.read_lock::<Array>() {
        return text_of_array(&a, depth);
    }
    if let Some(m) = v.read_lock::<Map>() {
        return text_of_map(&m, depth);
    }
    format!("{v:?}")
}

fn text_of_array(a: &Array, depth: usize) -> String {
    if depth > MAX_DEPTH {
        return "…".into();
    }
    let mut out = String::from("[");
    for (i, x) in a.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&item(x, depth + 1));
    }
    out.push(']');
    out
}

fn text_of_map(m: &Map, depth: usize) -> String {
    if depth > MAX_DEPTH {
        return "…".into();
    }
    let mut out = String::from("#{");
    for (i, (k, x)) in m.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{:?}: {}", k.as_str(), item(x, depth + 1));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn shallow_values_print_as_rhai_prints_them_and_deep_ones_are_cut() {
        // The idsync engine, not a bare one: it fixes Rhai's hashing seed, which other tests
        // in this process set too; a bare engine built before that could not find its own
        // registrations afterwards.
        let e = crate::script::engine();
        let s: String = e
            .eval(r#"let m = #{ a: [1, "x", ()], b: #{} }; `${[1, "two"]} ${m}`"#)
            .unwrap();
        assert_eq!(s, r#"[1, "two"] #{"a": [1, "x", ()], "b": #{}}"#);
        let s: String = e
            .eval("let a = []; for i in 0..2000 { a = [a]; } a.to_string()")
            .unwrap();
        assert!(s.len() < 200 && s.contains('…'), "{s}");
    }
}
