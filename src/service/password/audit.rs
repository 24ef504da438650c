//! The password audit log: one line per request to a password endpoint
//! (time, caller address, endpoint, identity, HTTP status, a short
//! result), appended to `IDSYNC_HOME/password-audit.log` (mode 0600).
//! Never the password: the caller passes it so that [`redact`] can take it
//! out of any text that might quote it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::sync::clock;

/// The audit file's name under `IDSYNC_HOME`.
pub const FILE: &str = "password-audit.log";

/// Where audit lines go.
pub struct Audit {
    path: PathBuf,
    lock: Mutex<()>,
}

/// `text` with every occurrence of `password` replaced by `<password>`
/// (passwords shorter than 3 characters are not searched for: they would
/// blank out ordinary words; such passwords never reach a directory).
pub fn redact(text: &str, password: &str) -> String {
    if password.chars().count() < 3 {
        return text.to_string();
    }
    text.replace(password, "<password>")
}

impl Audit {
    /// The audit log of this IDSYNC_HOME.
    pub fn open() -> Result<Audit, String> {
        let home = crate::config::home::idsync_home().map_err(|e| e.to_string())?;
        Ok(Audit {
            path: home.join(FILE),
            lock: Mutex::new(()),
        })
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one line. A failure to write is reported on stderr (the
    /// request is answered anyway).
    pub fn line(
        &self,
        caller: SocketAddr,
        endpoint: &str,
        identity: &str,
        status: u16,
        result: &str,
    ) {
        let one_line = |s: &str| s.replace(['\r', '\n'], " ");
        let line = format!(
            "{} caller={} endpoint={} identity={} status={} result={}\n",
            clock::iso(clock::now_ms()),
            caller,
            endpoint,
            serde_json::Value::from(one_line(identity)),
            status,
            serde_json::Value::from(one_line(result)),
        );
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode_private()
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = res {
            crate::service::daemon::log(&format!(
                "password audit: cannot write {}: {e}",
                self.path.display()
            ));
        }
    }
}

/// `mode(0o600)` on Unix.
trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for std::fs::OpenOptions {
    #[cfg(unix)]
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
    #[cfg(not(unix))]
    fn mode_private(&mut self) -> &mut Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn the_password_is_taken_out() {
        assert_eq!(
            redact("CN=x: rejected S3cret! because", "S3cret!"),
            "CN=x: rejected <password> because"
        );
        assert_eq!(redact("a b", "a"), "a b");
    }
}
