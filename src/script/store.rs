//! `use_store(url)` (API §7): chooses the shared state store for the
//! processes that start after it, by saving the setting `store` in the
//! local SQLite store under `IDSYNC_HOME`. `IDSYNC_STORE`, when set, wins
//! over the setting.

/// State store bindings.
#[rhai::export_module]
pub mod store_api {
    use crate::script::context::local_store;
    use crate::script::convert::{ScriptResult, rt_err};
    use crate::store::StateStore;
    use crate::store::config_file::STORE_SETTING;
    use crate::store::select::{self, STORE_ENV};

    /// Puts profiles, links, cursors, leases and run history in a shared
    /// store (`postgres://user@host:port/db`, or SQL Server:
    /// `mssql://user@host:port/db` or an ADO.NET string
    /// `Server=tcp:host,1433;Database=...;User Id=...`; no password in it:
    /// it is read from `IDSYNC_STORE_PASSWORD`), or in an SQLite file
    /// (`sqlite:PATH`). The store is opened (its schema created) now, and
    /// the choice saved in the local store under IDSYNC_HOME: idsync
    /// processes started from now on use it; this one keeps the store it
    /// has. `IDSYNC_STORE`, when set, wins over this setting. An empty
    /// string goes back to the local `IDSYNC_HOME/state.db`. Nothing is
    /// copied: `idsync store migrate --to URL` does that. Returns what later
    /// processes will use.
    ///
    /// Example:
    /// ```rhai
    /// use_store("")   // back to the local IDSYNC_HOME/state.db
    /// ```
    #[rhai_fn(return_raw)]
    pub fn use_store(url: &str) -> ScriptResult<String> {
        let local = local_store()?;
        let err = |e: crate::store::StoreError| rt_err(format!("use_store: {e}"));
        let chosen = if url.trim().is_empty() {
            local.remove_setting(STORE_SETTING).map_err(err)?;
            format!("{} (the local store)", local.path().display())
        } else {
            // Refuses a bad location (a password in it, no login, ...) before saving.
            select::open_location(url, false).map_err(err)?;
            local.put_setting(STORE_SETTING, url.trim()).map_err(err)?;
            url.trim().to_string()
        };
        let mut text = format!("state store for the next idsync processes: {chosen}");
        if let Ok(v) = std::env::var(STORE_ENV)
            && !v.trim().is_empty()
        {
            text.push_str(&format!(
                " (but {STORE_ENV} is set in this environment and wins over the setting)"
            ));
        }
        Ok(text)
    }
}
