//! Secrets: a value that never prints. Its `Display` and `Debug` show a
//! mask; the clear text is reachable only through [`Secret::expose`].

use std::fmt;

/// A password or client secret, with where it came from (`env:NAME`,
/// `prompt:label`) so that profiles can store the reference, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    reference: Option<String>,
}

impl Secret {
    /// A secret with a reference that can be stored (`env:NAME`, `prompt:label`).
    pub fn with_reference(value: String, reference: impl Into<String>) -> Self {
        Secret {
            value,
            reference: Some(reference.into()),
        }
    }

    /// A secret typed as plain text in a script: usable, but not storable.
    pub fn literal(value: String) -> Self {
        Secret {
            value,
            reference: None,
        }
    }

    /// The clear text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The stored form (`env:NAME`), if the secret has one.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Some(r) => write!(f, "<secret {r}>"),
            None => f.write_str("<secret>"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::with_reference("hunter2".into(), "env:PW");
        assert_eq!(format!("{s} {s:?}"), "<secret env:PW> <secret env:PW>");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
