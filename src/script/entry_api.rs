//! The `Entry` type in scripts: `e.dn`, `e.anchor`, `e.mail` / `e["mail"]`
//! (case-insensitive), `e.values("memberOf")`.

use rhai::plugin::*;

/// Entry bindings.
#[export_module]
pub mod entry_api {
    use crate::model::Entry;
    use crate::script::convert::{attr_to_dynamic, value_to_dynamic};
    use rhai::{Array, Map};

    /// The entry's distinguished name (or the row key for files and tables).
    ///
    /// Example:
    /// ```rhai
    /// c.search("(sn=Lee)").map(|e| e.dn)
    /// ```
    #[rhai_fn(get = "dn", pure)]
    pub fn dn(e: &mut Entry) -> String {
        e.dn.clone()
    }

    /// The system's immutable id: objectGUID on AD, entryUUID on OpenLDAP.
    /// `()` when the system has none.
    ///
    /// Example:
    /// ```rhai
    /// let id = e.anchor;  c.get(id).dn
    /// ```
    #[rhai_fn(get = "anchor", pure)]
    pub fn anchor(e: &mut Entry) -> Dynamic {
        e.anchor.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT)
    }

    /// An attribute by name, any case: `e["mail"]` or `e.mail`.
    /// One value reads as a string, several as an array, none as `()`.
    /// GUIDs and SIDs read as their canonical strings; other binary as a blob.
    #[rhai_fn(index_get, pure)]
    pub fn get_attr(e: &mut Entry, name: &str) -> Dynamic {
        attr_to_dynamic(e, name)
    }

    /// All values of an attribute, always as an array (empty when absent).
    ///
    /// Example:
    /// ```rhai
    /// for g in e.values("memberOf") { print(g) }
    /// ```
    #[rhai_fn(pure)]
    pub fn values(e: &mut Entry, name: &str) -> Array {
        match e.attr(name) {
            Some(a) => a
                .values
                .iter()
                .map(|v| value_to_dynamic(&a.name, v))
                .collect(),
            None => Array::new(),
        }
    }

    /// True when the entry has the attribute.
    ///
    /// Example:
    /// ```rhai
    /// if e.has("mail") { print(e.mail) }
    /// ```
    #[rhai_fn(pure)]
    pub fn has(e: &mut Entry, name: &str) -> bool {
        e.has(name)
    }

    /// The attribute names of the entry, in order.
    ///
    /// Example:
    /// ```rhai
    /// for a in e.attributes() { print(`${a}: ${e.values(a).len()} value(s)`) }
    /// ```
    #[rhai_fn(pure)]
    pub fn attributes(e: &mut Entry) -> Array {
        e.attributes()
            .iter()
            .map(|a| Dynamic::from(a.name.clone()))
            .collect()
    }

    /// The entry as a map (`dn` plus every attribute), for scripts that
    /// want to build or compare values.
    ///
    /// Example:
    /// ```rhai
    /// let m = e.to_map();  m.remove("userPassword");  m
    /// ```
    #[rhai_fn(pure)]
    pub fn to_map(e: &mut Entry) -> Map {
        let mut m = Map::new();
        m.insert("dn".into(), Dynamic::from(e.dn.clone()));
        for a in e.attributes() {
            m.insert(a.name.as_str().into(), attr_to_dynamic(e, &a.name));
        }
        m
    }

    /// The entry as text: `dn:` then `attribute: value` lines.
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(e: &mut Entry) -> String {
        e.to_string()
    }

    /// Same as `to_string`.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(e: &mut Entry) -> String {
        e.to_string()
    }
}
