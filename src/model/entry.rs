//! An entry: one object of a connected system (directory entry, file row,
//! Graph object), with case-insensitive attribute names kept in the order
//! the system gave them.

use super::value::Value;

/// One attribute: its name as the system spells it and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name, in the case the server returned.
    pub name: String,
    /// The values, in server order.
    pub values: Vec<Value>,
}

/// One object of a connected system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Distinguished name (or the row's key for systems without DNs).
    pub dn: String,
    /// The system's immutable id in canonical text form (objectGUID,
    /// entryUUID, key column, Graph id), when known.
    pub anchor: Option<String>,
    attrs: Vec<Attribute>,
}

impl Entry {
    /// A new entry with no attributes.
    pub fn new(dn: impl Into<String>) -> Self {
        Entry {
            dn: dn.into(),
            anchor: None,
            attrs: Vec::new(),
        }
    }

    /// The attribute named `name` (any case).
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The values of `name`, empty when absent.
    pub fn values(&self, name: &str) -> &[Value] {
        self.attr(name).map(|a| a.values.as_slice()).unwrap_or(&[])
    }

    /// The first value of `name` as display text (GUID/SID canonical).
    pub fn first(&self, name: &str) -> Option<String> {
        let a = self.attr(name)?;
        a.values.first().and_then(|v| v.display(&a.name))
    }

    /// All attributes in order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attrs
    }

    /// Appends values to `name`, creating the attribute if needed.
    pub fn push(&mut self, name: &str, values: impl IntoIterator<Item = Value>) {
        match self
            .attrs
            .iter_mut()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        {
            Some(a) => a.values.extend(values),
            None => self.attrs.push(Attribute {
                name: name.to_string(),
                values: values.into_iter().collect(),
            }),
        }
    }

    /// Replaces the values of `name` (removes it when `values` is empty).
    pub fn set(&mut self, name: &str, values: Vec<Value>) {
        self.attrs.retain(|a| !a.name.eq_ignore_ascii_case(name));
        if !values.is_empty() {
            self.attrs.push(Attribute {
                name: name.to_string(),
                values,
            });
        }
    }

    /// True when the entry has the attribute.
    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
}

impl std::fmt::Display for Entry {
    /// A plain record: `dn: ...` then one `name: value` line per value
    /// (opaque binary shown as its size).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dn: {}", self.dn)?;
        for a in &self.attrs {
            for v in &a.values {
                match v.display(&a.name) {
                    Some(s) => write!(f, "\n{}: {}", a.name, s)?,
                    None => write!(f, "\n{}: <binary {} bytes>", a.name, v.as_bytes().len())?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_order_kept() {
        let mut e = Entry::new("cn=a,dc=x");
        e.push("mail", [Value::Text("a@x".into())]);
        e.push("memberOf", [Value::Text("cn=g1".into())]);
        e.push("MEMBEROF", [Value::Text("cn=g2".into())]);
        assert_eq!(e.values("memberof").len(), 2);
        assert_eq!(e.first("MAIL").as_deref(), Some("a@x"));
        assert_eq!(e.attributes()[0].name, "mail");
        e.set("Mail", vec![]);
        assert!(!e.has("mail"));
    }
}
