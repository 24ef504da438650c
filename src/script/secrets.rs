//! Secrets in scripts: `secret("ENV")` and `prompt_secret("label")`. The
//! value never prints; only its reference (`env:NAME`) can be stored.

use crate::model::Secret;
use std::io::{BufRead, IsTerminal};

/// Reads a secret without echo from the terminal, or a line from stdin
/// when stdin is not a terminal.
pub fn prompt(label: &str) -> std::io::Result<String> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{label}: "))
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// Resolves a stored reference (`env:NAME`, `prompt:label`) to a secret.
pub fn resolve(reference: &str) -> Result<Secret, String> {
    match reference.split_once(':') {
        Some(("env", name)) => match std::env::var(name) {
            Ok(v) => Ok(Secret::with_reference(v, reference)),
            Err(_) => Err(format!(
                "environment variable {name} is not set (the saved connection reads its password from it)"
            )),
        },
        Some(("prompt", label)) => prompt(label)
            .map(|v| Secret::with_reference(v, reference))
            .map_err(|e| format!("cannot read the secret '{label}': {e}")),
        _ => Err(format!(
            "unknown secret reference '{reference}' (expected env:NAME or prompt:label)"
        )),
    }
}

/// Secret bindings.
#[rhai::export_module]
pub mod secrets_api {
    use super::*;
    use crate::script::convert::{ScriptResult, rt_err};

    /// Reads a secret from an environment variable. It prints as
    /// `<secret env:NAME>`, never as its value, and a saved connection keeps
    /// only the reference.
    ///
    /// Example:
    /// ```rhai
    /// let pw = secret("AD_PW");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn secret(name: &str) -> ScriptResult<Secret> {
        let name = name.trim();
        if name.is_empty() {
            return Err(rt_err("secret: give the name of an environment variable"));
        }
        match std::env::var(name) {
            Ok(v) => Ok(Secret::with_reference(v, format!("env:{name}"))),
            Err(_) => Err(rt_err(format!(
                "secret: environment variable {name} is not set"
            ))),
        }
    }

    /// Asks for a secret without echo (from stdin when it is not a terminal).
    ///
    /// Example:
    /// ```rhai
    /// let pw = prompt_secret("AD password");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn prompt_secret(label: &str) -> ScriptResult<Secret> {
        prompt(label)
            .map(|v| Secret::with_reference(v, format!("prompt:{label}")))
            .map_err(|e| rt_err(format!("prompt_secret: cannot read the secret: {e}")))
    }

    /// A secret prints as `<secret env:NAME>`, never as its value.
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(s: &mut Secret) -> String {
        s.to_string()
    }

    /// Same as `to_string`.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(s: &mut Secret) -> String {
        s.to_string()
    }
}
