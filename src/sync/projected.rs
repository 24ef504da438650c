//! The values a planned create writes, kept compact in the plan: the flows
//! are evaluated once, when the object is planned, and their values are
//! held as one byte string per object (a plan of 100,000 creates stays
//! small), named by the flow's index in the step, not by its text. Preview
//! and apply read them back instead of evaluating the flows again.

use crate::model::Value;

/// The slot of the resolved members (flows are slots `1..`).
const MEMBERS: u64 = 0;

/// Each flow's values by flow index (flows without a value are absent).
pub type FlowValues = Vec<(usize, Vec<Value>)>;

/// Each flow's values (by index) and the resolved members of one create.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projected(Box<[u8]>);

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&x, rest) = b.split_first()?;
        *b = rest;
        n |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn put_slot(out: &mut Vec<u8>, slot: u64, vals: &[Value]) {
    if vals.is_empty() {
        return;
    }
    put_varint(out, slot);
    put_varint(out, vals.len() as u64);
    for v in vals {
        let (bin, bytes) = match v {
            Value::Text(s) => (0, s.as_bytes()),
            Value::Binary(b) => (1, b.as_slice()),
        };
        put_varint(out, ((bytes.len() as u64) << 1) | bin);
        out.extend_from_slice(bytes);
    }
}

impl Projected {
    /// Encodes `flows` (flow index, its values; empty ones are left out)
    /// and `members`.
    pub fn new<'a>(
        flows: impl IntoIterator<Item = (usize, &'a [Value])>,
        members: &[Value],
    ) -> Self {
        let mut out = Vec::new();
        for (i, vals) in flows {
            put_slot(&mut out, i as u64 + 1, vals);
        }
        put_slot(&mut out, MEMBERS, members);
        Projected(out.into_boxed_slice())
    }

    /// The size of the encoding in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no flow gave a value and there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes: each flow's values by flow index (flows without a value are
    /// absent), and the members; `None` on a malformed encoding.
    pub fn decode(&self) -> Option<(FlowValues, Vec<Value>)> {
        let mut b: &[u8] = &self.0;
        let mut flows = Vec::new();
        let mut members = Vec::new();
        while !b.is_empty() {
            let slot = varint(&mut b)?;
            let count = varint(&mut b)?;
            let mut vals = Vec::with_capacity((count as usize).min(1024));
            for _ in 0..count {
                let head = varint(&mut b)?;
                let n = usize::try_from(head >> 1).ok()?;
                if b.len() < n {
                    return None;
                }
                let (v, rest) = b.split_at(n);
                b = rest;
                vals.push(if head & 1 == 0 {
                    Value::Text(String::from_utf8(v.to_vec()).ok()?)
                } else {
                    Value::Binary(v.to_vec())
                });
            }
            match slot {
                MEMBERS => members = vals,
                i => flows.push((usize::try_from(i - 1).ok()?, vals)),
            }
        }
        Some((flows, members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_as_they_went_in() {
        let text = vec![Value::Text("Ann".into()), Value::Text("é".repeat(100))];
        let bin = vec![Value::Binary(vec![0, 255, 128])];
        let members = vec![Value::Text("cn=a,dc=t".into())];
        let p = Projected::new([(0, &text[..]), (1, &[][..]), (300, &bin[..])], &members);
        let (flows, m) = p.decode().unwrap();
        assert_eq!(flows, vec![(0, text), (300, bin)]);
        assert_eq!(m, members);
        assert!(Projected::new([], &[]).is_empty());
        // A cut-off encoding is refused, not misread.
        let cut = Projected(p.0[..p.len() - 1].into());
        assert_eq!(cut.decode(), None);
    }
}
