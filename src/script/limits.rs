//! Size limits of the Rhai engine, so a runaway script (`s += s` forty
//! times) ends with a clear error instead of exhausting memory and
//! aborting the process.
//!
//! Defaults are far above what directory work needs (a 100,000-entry search
//! result, a 100,000-row CSV read into maps) and each can be changed with an
//! environment variable, `0` meaning no limit:
//!
//! | variable | limits | default |
//! | --- | --- | --- |
//! | `IDSYNC_MAX_STRING_SIZE` | bytes in one string | 128 MiB |
//! | `IDSYNC_MAX_ARRAY_SIZE` | elements in one array (or bytes in a BLOB) | 10,000,000 |
//! | `IDSYNC_MAX_MAP_SIZE` | keys in one map | 10,000,000 |
//!
//! Rhai's own data-size limits are not used: with any of them set, Rhai
//! re-measures a whole array (and every map in it) after each `push`, so
//! building a 100,000-element array took minutes instead of a fraction of a
//! second. The operations that can grow a value by more than one element in
//! one step — `+` and `+=` of strings and arrays, `append`, `pad`, `blob(n)`,
//! `mixin` / `+=` of maps — and `push` are registered here with an O(1)
//! length check made before anything is allocated (Rhai's fast built-in
//! operators are turned off so these versions are the ones called). Map
//! keys added one at a time (`m[k] = v`) and string interpolation are not
//! checked.

use std::sync::OnceLock;

use rhai::{Array, Blob, Dynamic, Engine, EvalAltResult, INT, ImmutableString, Map};

/// Default longest string, in bytes.
pub const DEFAULT_MAX_STRING_SIZE: usize = 128 << 20;
/// Default largest array, in elements.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 10_000_000;
/// Default largest map, in keys.
pub const DEFAULT_MAX_MAP_SIZE: usize = 10_000_000;

/// The limits in force (`0` = none), read from the environment once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest string, in bytes.
    pub string: usize,
    /// Largest array, in elements.
    pub array: usize,
    /// Largest map, in keys.
    pub map: usize,
}

impl Limits {
    /// The limits from `IDSYNC_MAX_*` (see the module documentation); a
    /// value that is not a whole number is reported on stderr once and the
    /// default is kept.
    pub fn from_env() -> Limits {
        static LIMITS: OnceLock<Limits> = OnceLock::new();
        *LIMITS.get_or_init(|| {
            let (limits, warnings) = Limits::from_lookup(|k| std::env::var(k).ok());
            for w in warnings {
                eprintln!("warning: {w}");
            }
            limits
        })
    }

    /// The limits given a way to read variables; also returns the
    /// warnings for values that could not be read.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (Limits, Vec<String>) {
        let mut warnings = Vec::new();
        let mut read = |var: &str, default: usize| match get(var) {
            None => default,
            Some(v) if v.trim().is_empty() => default,
            Some(v) => match v.trim().replace('_', "").parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    warnings.push(format!(
                        "{var}={v:?} is not a whole number (0 = no limit); using {default}"
                    ));
                    default
                }
            },
        };
        let limits = Limits {
            string: read("IDSYNC_MAX_STRING_SIZE", DEFAULT_MAX_STRING_SIZE),
            array: read("IDSYNC_MAX_ARRAY_SIZE", DEFAULT_MAX_ARRAY_SIZE),
            map: read("IDSYNC_MAX_MAP_SIZE", DEFAULT_MAX_MAP_SIZE),
        };
        (limits, warnings)
    }

    /// Registers the checked growth operations on `engine`.
    pub fn apply(&self, engine: &mut Engine) {
        engine.set_fast_operators(false);
        let l = *self;
        let str_ok = move |n: usize| check(n, l.string, "Length of string");
        let arr_ok = move |n: usize| check(n, l.array, "Size of array");
        let map_ok = move |n: usize| check(n, l.map, "Size of object map");
        // strings
        engine.register_fn(
            "+",
            move |a: ImmutableString,
                  b: ImmutableString|
                  -> Result<ImmutableString, Box<EvalAltResult>> {
                str_ok(a.len() + b.len())?;
                Ok(a + b)
            },
        );
        // The exact (string, string) types: `s += x` of other values keeps
        // Rhai's own conversion (a secret's `to_string`, for one).
        for name in ["+=", "append"] {
            engine.register_fn(
                name,
                move |a: &mut ImmutableString,
                      b: ImmutableString|
                      -> Result<(), Box<EvalAltResult>> {
                    str_ok(a.len() + b.len())?;
                    *a += b;
                    Ok(())
                },
            );
        }
        engine.register_fn(
            "pad",
            move |a: &mut ImmutableString, len: INT, c: char| -> Result<(), Box<EvalAltResult>> {
                let want = usize::try_from(len).unwrap_or(0);
                let have = a.chars().count();
                if want > have {
                    str_ok(a.len() + (want - have) * c.len_utf8())?;
                    let pad: String = std::iter::repeat_n(c, want - have).collect();
                    *a += pad;
                }
                Ok(())
            },
        );
        engine.register_fn(
            "pad",
            move |a: &mut ImmutableString,
                  len: INT,
                  p: ImmutableString|
                  -> Result<(), Box<EvalAltResult>> {
                let want = usize::try_from(len).unwrap_or(0);
                let mut have = a.chars().count();
                if want > have && !p.is_empty() {
                    str_ok(a.len() + (want - have) * p.len())?;
                    let mut buf = a.to_string();
                    while have < want {
                        for c in p.chars().take(want - have) {
                            buf.push(c);
                            have += 1;
                        }
                    }
                    *a = buf.into();
                }
                Ok(())
            },
        );
        // arrays
        engine.register_fn(
            "+",
            move |mut a: Array, b: Array| -> Result<Array, Box<EvalAltResult>> {
                arr_ok(a.len() + b.len())?;
                a.extend(b);
                Ok(a)
            },
        );
        for name in ["+=", "append"] {
            engine.register_fn(
                name,
                move |a: &mut Array, b: Array| -> Result<(), Box<EvalAltResult>> {
                    arr_ok(a.len() + b.len())?;
                    a.extend(b);
                    Ok(())
                },
            );
        }
        // One element at a time: still O(1), so a loop that never stops
        // pushing ends at the limit too.
        for name in ["push", "+="] {
            engine.register_fn(
                name,
                move |a: &mut Array, item: Dynamic| -> Result<(), Box<EvalAltResult>> {
                    arr_ok(a.len() + 1)?;
                    a.push(item);
                    Ok(())
                },
            );
        }
        engine.register_fn(
            "pad",
            move |a: &mut Array, len: INT, item: Dynamic| -> Result<(), Box<EvalAltResult>> {
                let want = usize::try_from(len).unwrap_or(0);
                if want > a.len() {
                    arr_ok(want)?;
                    a.resize(want, item);
                }
                Ok(())
            },
        );
        // BLOBs
        engine.register_fn(
            "blob",
            move |len: INT| -> Result<Blob, Box<EvalAltResult>> {
                let len = usize::try_from(len).unwrap_or(0);
                arr_ok(len)?;
                Ok(vec![0; len])
            },
        );
        engine.register_fn(
            "blob",
            move |len: INT, v: INT| -> Result<Blob, Box<EvalAltResult>> {
                let len = usize::try_from(len).unwrap_or(0);
                arr_ok(len)?;
                Ok(vec![(v & 0xff) as u8; len])
            },
        );
        engine.register_fn(
            "pad",
            move |b: &mut Blob, len: INT, v: INT| -> Result<(), Box<EvalAltResult>> {
                let want = usize::try_from(len).unwrap_or(0);
                if want > b.len() {
                    arr_ok(want)?;
                    b.resize(want, (v & 0xff) as u8);
                }
                Ok(())
            },
        );
        // maps
        for name in ["+=", "mixin"] {
            engine.register_fn(
                name,
                move |a: &mut Map, b: Map| -> Result<(), Box<EvalAltResult>> {
                    map_ok(a.len() + b.len())?;
                    a.extend(b);
                    Ok(())
                },
            );
        }
        engine.register_fn(
            "+",
            move |mut a: Map, b: Map| -> Result<Map, Box<EvalAltResult>> {
                map_ok(a.len() + b.len())?;
                a.extend(b);
                Ok(a)
            },
        );
    }

    /// The administrator's reading of Rhai's "… too large" error, whose
    /// subject (`what`) is "Length of string", "Size of array/BLOB" or
    /// "Size of object map": which limit, its value, and how to raise it.
    pub fn explain(&self, what: &str) -> String {
        let lower = what.to_ascii_lowercase();
        let (thing, unit, n, var) = if lower.contains("string") {
            ("a string", "bytes", self.string, "IDSYNC_MAX_STRING_SIZE")
        } else if lower.contains("array") || lower.contains("blob") {
            ("an array", "elements", self.array, "IDSYNC_MAX_ARRAY_SIZE")
        } else if lower.contains("map") {
            ("a map", "keys", self.map, "IDSYNC_MAX_MAP_SIZE")
        } else {
            return format!("{what} too large");
        };
        format!(
            "{thing} grew past the limit of {} {unit} (set {var} to raise it, 0 for no limit)",
            group(n)
        )
    }
}

/// Rhai's "too large" error when `n` passes `max` (`0` = no limit); the
/// script error printer words it with [`Limits::explain`].
fn check(n: usize, max: usize, what: &str) -> Result<(), Box<EvalAltResult>> {
    if max > 0 && n > max {
        return Err(EvalAltResult::ErrorDataTooLarge(what.into(), rhai::Position::NONE).into());
    }
    Ok(())
}

/// `268435456` → `268,435,456`.
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_bad_values() {
        let (l, w) = Limits::from_lookup(|_| None);
        assert_eq!(
            l,
            Limits {
                string: DEFAULT_MAX_STRING_SIZE,
                array: DEFAULT_MAX_ARRAY_SIZE,
                map: DEFAULT_MAX_MAP_SIZE
            }
        );
        assert!(w.is_empty());
        let (l, w) = Limits::from_lookup(|k| match k {
            "IDSYNC_MAX_STRING_SIZE" => Some("1_000".into()),
            "IDSYNC_MAX_ARRAY_SIZE" => Some("0".into()),
            _ => Some("lots".into()),
        });
        assert_eq!((l.string, l.array, l.map), (1000, 0, DEFAULT_MAX_MAP_SIZE));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("IDSYNC_MAX_MAP_SIZE"), "{w:?}");
    }

    #[test]
    fn explanations_name_the_limit_and_the_variable() {
        let (l, _) = Limits::from_lookup(|_| None);
        let s = l.explain("Length of string");
        assert!(
            s.contains("134,217,728 bytes") && s.contains("IDSYNC_MAX_STRING_SIZE"),
            "{s}"
        );
        assert!(
            l.explain("Size of array/BLOB")
                .contains("IDSYNC_MAX_ARRAY_SIZE")
        );
        assert!(
            l.explain("Size of object map")
                .contains("IDSYNC_MAX_MAP_SIZE")
        );
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(12), "12");
    }
}
