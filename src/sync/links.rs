//! Changing a step's stored links by hand, outside a run. Forgetting a
//! link ([`unlink`]) also resets the step's change cursor: the unlinked
//! source object has not changed, so an incremental read would never bring
//! it back; the next run reads in full and joins or creates it.

use crate::store::{StateStore, StoreError};

use super::plan::cursor_key;

/// Forgets the link of `step` whose source anchor is `anchor`; true when
/// it existed. Then the step's next run reads its source in full (its
/// change cursor is reset), so that source object is treated as new.
pub fn unlink(store: &dyn StateStore, step: &str, anchor: &str) -> Result<bool, StoreError> {
    let n = store.remove_links(step, &[anchor.to_string()])?;
    if n > 0 {
        store.put_setting(&cursor_key(step), "")?;
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Link, SqliteStore};

    fn link(source: &str) -> Link {
        Link {
            source_anchor: source.into(),
            target_anchor: format!("t-{source}"),
            target_dn: format!("uid={source},dc=t"),
            source_hash: Some("h".into()),
            desired_dn: None,
            updated_ms: 1,
        }
    }

    #[test]
    fn unlink_forgets_one_link_and_resets_the_cursor_only_when_it_existed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        store.put_links("st", &[link("a"), link("b")]).unwrap();
        store.put_links("other", &[link("a")]).unwrap();
        for s in ["st", "other"] {
            store.put_setting(&cursor_key(s), "tag|csn-1").unwrap();
        }

        // Unknown anchor: nothing changes, the cursor stays.
        assert!(!unlink(&store, "st", "zzz").unwrap());
        assert_eq!(
            store.get_setting(&cursor_key("st")).unwrap().as_deref(),
            Some("tag|csn-1")
        );

        assert!(unlink(&store, "st", "a").unwrap());
        let left: Vec<String> = store
            .links("st")
            .unwrap()
            .into_iter()
            .map(|l| l.source_anchor)
            .collect();
        assert_eq!(left, ["b"]);
        assert_eq!(
            store.get_setting(&cursor_key("st")).unwrap().as_deref(),
            Some("")
        );
        // Another step's link and cursor are left alone.
        assert_eq!(store.links("other").unwrap().len(), 1);
        assert_eq!(
            store.get_setting(&cursor_key("other")).unwrap().as_deref(),
            Some("tag|csn-1")
        );
        // Twice: already gone.
        assert!(!unlink(&store, "st", "a").unwrap());
    }
}
