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

    /// [`Entry::push`] taking the name and values as they are (no copy of
    /// the name when the attribute is new).
    pub fn push_owned(&mut self, name: String, values: Vec<Value>) {
        match self
            .attrs
            .iter_mut()
            .find(|a| a.name.eq_ignore_ascii_case(&name))
        {
            Some(a) => a.values.extend(values),
            None => self.attrs.push(Attribute { name, values }),
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

/// A compact byte form of an entry, for holding many entries in memory at
/// once (a sync plan of 100,000 creates): one allocation instead of one per
/// name and value.
impl Entry {
    /// Encodes the entry (length-prefixed DN, anchor, names and values).
    pub fn to_compact(&self) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        let mut out = Vec::with_capacity(64 + self.dn.len());
        put(&mut out, self.dn.as_bytes());
        match &self.anchor {
            Some(a) => {
                out.push(1);
                put(&mut out, a.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.attrs.len() as u32).to_le_bytes());
        for a in &self.attrs {
            put(&mut out, a.name.as_bytes());
            out.extend_from_slice(&(a.values.len() as u32).to_le_bytes());
            for v in &a.values {
                match v {
                    Value::Text(s) => {
                        out.push(0);
                        put(&mut out, s.as_bytes());
                    }
                    Value::Binary(b) => {
                        out.push(1);
                        put(&mut out, b);
                    }
                }
            }
        }
        out.shrink_to_fit();
        out
    }

    /// Decodes [`Entry::to_compact`]; `None` on malformed input.
    pub fn from_compact(mut b: &[u8]) -> Option<Entry> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Some(h)
        }
        fn u32_of(b: &mut &[u8]) -> Option<usize> {
            let h = take(b, 4)?;
            Some(u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)
        }
        fn bytes<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
            let n = u32_of(b)?;
            take(b, n)
        }
        fn text(b: &mut &[u8]) -> Option<String> {
            String::from_utf8(bytes(b)?.to_vec()).ok()
        }
        let mut e = Entry::new(text(&mut b)?);
        if take(&mut b, 1)?[0] == 1 {
            e.anchor = Some(text(&mut b)?);
        }
        let n = u32_of(&mut b)?;
        e.attrs.reserve(n.min(1024));
        for _ in 0..n {
            let name = text(&mut b)?;
            let count = u32_of(&mut b)?;
            let mut values = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                let tag = take(&mut b, 1)?[0];
                let v = bytes(&mut b)?;
                values.push(match tag {
                    0 => Value::Text(String::from_utf8(v.to_vec()).ok()?),
                    _ => Value::Binary(v.to_vec()),
                });
            }
            e.attrs.push(Attribute { name, values });
        }
        b.is_empty().then_some(e)
    }
}

#[cfg(test)]
mod compact_tests {
    use super::*;

    #[test]
    fn compact_round_trip_and_malformed_input() {
        let mut e = Entry::new("cn=Zoë,dc=x");
        e.anchor = Some("f29c1ad8-7a76-1041-9d81-67132facd19d".into());
        e.push(
            "mail",
            [Value::Text("a@x".into()), Value::Text("b@x".into())],
        );
        e.push("objectGUID", [Value::Binary(vec![0, 159, 255, 1])]);
        let c = e.to_compact();
        assert_eq!(Entry::from_compact(&c), Some(e.clone()));
        assert_eq!(Entry::from_compact(&c[..c.len() - 1]), None);
        assert_eq!(Entry::from_compact(&[]), None);
        let mut no_anchor = Entry::new("k1");
        no_anchor.push("x", [Value::Text(String::new())]);
        assert_eq!(
            Entry::from_compact(&no_anchor.to_compact()),
            Some(no_anchor)
        );
    }
}
