//! `IDSYNC_HOME`: the private directory that holds the state store, run logs
//! and the shell history. `IDSYNC_HOME` when set, else `<data dir>/idsync`
//! (`~/.local/share/idsync` on Linux). Created on first use, owner-only (0700).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Why the idsync home directory (or a directory under it) is not usable.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither `IDSYNC_HOME` nor a platform data directory is available.
    #[error("cannot find a data directory for idsync: set IDSYNC_HOME to a directory")]
    NoDataDir,
    /// The directory could not be created or inspected.
    #[error("idsync home {}: cannot create directory: {source}", path.display())]
    Create {
        /// The directory we tried to create.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The path exists but is a file (or something else), not a directory.
    #[error("idsync home {}: exists but is not a directory", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
}

/// The idsync home directory, created (mode 0700) if missing.
///
/// `IDSYNC_HOME` wins when set and non-empty (a relative value is taken from
/// the current directory); otherwise `dirs::data_dir()/idsync`. An existing
/// directory is used as it is: its permissions are left alone.
pub fn idsync_home() -> Result<PathBuf, HomeError> {
    let path = resolve(std::env::var_os("IDSYNC_HOME"), dirs::data_dir())?;
    ensure_private_dir(&path)?;
    Ok(path)
}

/// `IDSYNC_HOME/logs`, where each run writes its log file; created (0700) if missing.
pub fn logs_dir() -> Result<PathBuf, HomeError> {
    let path = idsync_home()?.join("logs");
    ensure_private_dir(&path)?;
    Ok(path)
}

/// `IDSYNC_HOME/history.txt`, the shell's command history. The home
/// directory is created; the file itself is left to the line editor.
pub fn history_file() -> Result<PathBuf, HomeError> {
    Ok(idsync_home()?.join("history.txt"))
}

/// Choose the home path from the `IDSYNC_HOME` value and the platform data dir.
fn resolve(env: Option<OsString>, data_dir: Option<PathBuf>) -> Result<PathBuf, HomeError> {
    let path = match env.filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => data_dir.ok_or(HomeError::NoDataDir)?.join("idsync"),
    };
    // Absolute, so that error messages and logs name an unambiguous place.
    std::path::absolute(&path).map_err(|source| HomeError::Create { path, source })
}

/// Create `path` as an owner-only directory if it does not exist. Missing
/// parents are created with default permissions; only `path` itself is 0700.
pub(crate) fn ensure_private_dir(path: &Path) -> Result<(), HomeError> {
    let err = |source| HomeError::Create {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(HomeError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(path) {
        Ok(()) => {}
        // Another process created it between our check and now: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    // The umask can only remove bits, but say exactly what we mean.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_wins_over_data_dir() {
        let p = resolve(
            Some("/srv/idsync".into()),
            Some("/home/u/.local/share".into()),
        )
        .unwrap();
        assert_eq!(p, PathBuf::from("/srv/idsync"));
    }

    #[test]
    fn empty_env_var_falls_back_to_data_dir() {
        let p = resolve(Some("".into()), Some("/home/u/.local/share".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/u/.local/share/idsync"));
    }

    #[test]
    fn relative_env_var_is_made_absolute() {
        let p = resolve(Some("rel/home".into()), None).unwrap();
        assert!(p.is_absolute(), "{}", p.display());
        assert!(p.ends_with("rel/home"));
    }

    #[test]
    fn no_env_and_no_data_dir_is_a_clear_error() {
        let e = resolve(None, None).unwrap_err();
        assert!(e.to_string().contains("IDSYNC_HOME"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn creates_missing_home_and_parents_with_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("a/b/idsync");
        ensure_private_dir(&home).unwrap();
        let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "home mode {mode:o}");
        // Idempotent.
        ensure_private_dir(&home).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("idsync");
        std::fs::write(&file, b"x").unwrap();
        let e = ensure_private_dir(&file).unwrap_err();
        assert!(matches!(e, HomeError::NotADirectory { .. }));
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    }

    #[test]
    fn uncreatable_home_names_path_and_cause() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plainfile");
        std::fs::write(&file, b"x").unwrap();
        let home = file.join("idsync");
        let e = ensure_private_dir(&home).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&home.display().to_string()), "{msg}");
        assert!(msg.contains("cannot create directory"), "{msg}");
    }
}
