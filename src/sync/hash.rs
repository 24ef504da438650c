//! A stable hash of a source object, so a run can skip objects that have
//! not changed since they were last applied. Attribute order and name case
//! do not matter; values and the step's rules do.

use std::hash::Hasher;

use crate::model::Entry;

/// FNV-1a 64 over the canonical form, twice with different seeds (128 bits)
/// so accidental collisions are out of the question for any directory size.
pub fn entry_hash(e: &Entry, fingerprint: &str) -> String {
    // Attributes in case-insensitive name order, without allocating names.
    let attrs = e.attributes();
    let mut order: Vec<usize> = (0..attrs.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (attrs[a].name.as_bytes(), attrs[b].name.as_bytes());
        x.iter()
            .map(u8::to_ascii_lowercase)
            .cmp(y.iter().map(u8::to_ascii_lowercase))
    });
    let mut h1 = Fnv(0xcbf2_9ce4_8422_2325);
    let mut h2 = Fnv(0x6c62_272e_07bb_0142);
    let mut sorted: Vec<&[u8]> = Vec::new();
    for h in [&mut h1, &mut h2] {
        h.write(fingerprint.as_bytes());
        h.write(&[0xff]);
        for b in e.dn.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
        for &i in &order {
            let a = &attrs[i];
            h.write(&[0xfe]);
            for b in a.name.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
            // Value order does not matter: one value needs no sorting.
            sorted.clear();
            sorted.extend(a.values.iter().map(|v| v.as_bytes()));
            if sorted.len() > 1 {
                sorted.sort_unstable();
            }
            for v in &sorted {
                h.write(&[0xfd]);
                h.write(&(v.len() as u64).to_le_bytes());
                h.write(v);
            }
        }
    }
    format!("{:016x}{:016x}", h1.finish(), h2.finish())
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    #[test]
    fn order_and_case_insensitive_value_sensitive() {
        let mut a = Entry::new("E1");
        a.push("first", [Value::Text("Ann".into())]);
        a.push("mail", [Value::Text("x".into()), Value::Text("y".into())]);
        let mut b = Entry::new("e1");
        b.push("MAIL", [Value::Text("y".into()), Value::Text("x".into())]);
        b.push("First", [Value::Text("Ann".into())]);
        assert_eq!(entry_hash(&a, "r"), entry_hash(&b, "r"));
        assert_ne!(entry_hash(&a, "r"), entry_hash(&a, "r2"));
        b.set("first", vec![Value::Text("Anne".into())]);
        assert_ne!(entry_hash(&a, "r"), entry_hash(&b, "r"));
    }
}
