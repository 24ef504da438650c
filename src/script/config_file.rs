//! `export_config` and `import_config` (API §7): the password-protected
//! configuration file, from scripts and the shell. The format, the crypto
//! and what travels are in `crate::config::sealed` and
//! `crate::store::config_file`; this file
//! only binds them. The password must be a `Secret` (`secret("ENV")` or
//! `prompt_secret("label")`), so it never prints and never reaches the
//! history; a password typed as text is refused (and masked in the history
//! by `redact`).

use std::path::Path;

use rhai::{Array, Dynamic, Map};

use crate::config::sealed::KdfParams;
use crate::model::Secret;
use crate::script::context::store;
use crate::script::convert::{ScriptResult, rt_err};
use crate::store::config_file as transfer;

/// The password argument as a secret; text (or anything else) is refused.
fn password(func: &str, v: Dynamic) -> ScriptResult<Secret> {
    if v.is::<Secret>() {
        return Ok(v.cast::<Secret>());
    }
    Err(rt_err(format!(
        "{func}: give the password as secret(\"ENV_NAME\") or prompt_secret(\"label\"), not as {}",
        if v.is_string() { "text" } else { v.type_name() }
    )))
}

/// `export_config` for the bindings.
fn export(path: &str, password: &Secret) -> ScriptResult<Map> {
    let s = store()?;
    let sum = transfer::export(
        s.as_ref(),
        Path::new(path),
        password.expose(),
        KdfParams::default(),
    )
    .map_err(|e| rt_err(format!("export_config: {e}")))?;
    let opt = |v: Option<String>| v.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert("path".into(), sum.path.display().to_string().into());
    m.insert("profiles".into(), (sum.profiles as i64).into());
    m.insert("settings".into(), (sum.settings as i64).into());
    m.insert("store".into(), opt(sum.store));
    m.insert("sync_store".into(), opt(sum.sync_store));
    Ok(m)
}

/// `import_config` for the bindings.
fn import(path: &str, password: &Secret) -> ScriptResult<Array> {
    let s = store()?;
    let applied = transfer::import(s.as_ref(), Path::new(path), password.expose())
        .map_err(|e| rt_err(format!("import_config: {e}")))?;
    Ok(applied
        .into_iter()
        .map(|a| {
            let mut m = Map::new();
            m.insert("item".into(), a.item.into());
            m.insert("name".into(), a.name.into());
            m.insert("action".into(), a.action.into());
            Dynamic::from_map(m)
        })
        .collect())
}

/// Configuration file bindings.
#[rhai::export_module]
pub mod config_file_api {
    use super::*;

    /// Writes the saved connection profiles (secrets as references only),
    /// the settings (not per-machine state such as change cursors) and the
    /// state store's location to one file encrypted with a key derived from
    /// the password (Argon2id, XChaCha20-Poly1305). Refuses to write when a
    /// secret's value would be in the file. Returns what it wrote.
    ///
    /// Example:
    /// ```rhai
    /// export_config("idsync-config.bin", secret("CONFIG_PW"))
    /// ```
    #[rhai_fn(return_raw)]
    pub fn export_config(path: &str, password: Dynamic) -> ScriptResult<Map> {
        export(path, &super::password("export_config", password)?)
    }

    /// Applies a file written by `export_config` (on this machine or
    /// another): adds and changes profiles and settings to match it, never
    /// removes any. Returns one row per profile or setting added or
    /// changed. A wrong password or a changed byte is an error ("wrong
    /// password or damaged file") and changes nothing.
    ///
    /// Example:
    /// ```rhai
    /// import_config("idsync-config.bin", secret("CONFIG_PW"))
    /// ```
    #[rhai_fn(return_raw)]
    pub fn import_config(path: &str, password: Dynamic) -> ScriptResult<Array> {
        import(path, &super::password("import_config", password)?)
    }
}
