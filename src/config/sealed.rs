//! The envelope of the password-protected configuration file
//! (`export_config` / `import_config`): turns the exported document into
//! bytes only the password opens, and back. It knows nothing of what the
//! document says (`crate::store::config_file` does).
//!
//! # File format, version 1
//!
//! A 64-byte header, then the ciphertext of the document with its 16-byte
//! Poly1305 tag at the end. Integers are big-endian.
//!
//! | offset | length | content                                                  |
//! |-------:|-------:|----------------------------------------------------------|
//! |      0 |      8 | magic `IDSYNCCF`                                         |
//! |      8 |      2 | format version, `1`                                      |
//! |     10 |      1 | key derivation: `1` = Argon2id (version 0x13)            |
//! |     11 |      1 | cipher: `1` = XChaCha20-Poly1305                         |
//! |     12 |      4 | Argon2 memory cost in KiB (default 65536 = 64 MiB)       |
//! |     16 |      4 | Argon2 iterations (default 3)                            |
//! |     20 |      4 | Argon2 lanes (default 1)                                 |
//! |     24 |     16 | salt (random for each file)                              |
//! |     40 |     24 | nonce (random for each file)                             |
//! |     64 |      n | ciphertext of the document (UTF-8 JSON), then the tag    |
//!
//! The 32-byte key is Argon2id(password, salt) with the header's
//! parameters. The whole header is the AEAD's associated data, so a changed
//! byte anywhere — header, salt, nonce, ciphertext or tag — fails the
//! authentication exactly as a wrong password does: "wrong password or
//! damaged file: PATH". Only what must be read before the key can be made
//! is checked separately: the magic (else "not an idsync configuration
//! file"), the version, the algorithm ids, parameters within sane bounds (so
//! a damaged file cannot ask for 4 TiB of memory), and a length that can
//! hold a header and a tag. The password itself is never in the file.

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

/// The first eight bytes of every configuration file.
pub const MAGIC: &[u8; 8] = b"IDSYNCCF";
/// The newest file format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The header's length; the header is the AEAD's associated data.
pub const HEADER_LEN: usize = 64;
/// The length of the Poly1305 tag at the end of the file.
pub const TAG_LEN: usize = 16;
const KDF_ARGON2ID: u8 = 1;
const AEAD_XCHACHA20_POLY1305: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// Bounds a file's key-derivation parameters must keep to be tried at all.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024; // 4 GiB
const MAX_ITERATIONS: u32 = 100;
const MAX_LANES: u32 = 64;

/// Argon2id cost parameters, stored in the file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations (passes over the memory).
    pub iterations: u32,
    /// Lanes (degree of parallelism).
    pub lanes: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 iterations, 1 lane (RFC 9106's second recommended choice).
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            lanes: 1,
        }
    }
}

/// Why a configuration file could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The file does not start with the magic.
    #[error("not an idsync configuration file: {}", path.display())]
    NotConfigFile {
        /// The file.
        path: PathBuf,
    },
    /// The file's format version is newer than this build knows.
    #[error(
        "{}: configuration file format version {found} is newer than this idsync understands ({FORMAT_VERSION}); use a newer idsync (or the file is damaged)",
        path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The version in the header.
        found: u16,
    },
    /// The authentication failed: the password is wrong or a byte changed.
    #[error("wrong password or damaged file: {}", path.display())]
    WrongPasswordOrDamaged {
        /// The file.
        path: PathBuf,
    },
    /// The header cannot be right (truncated, unknown algorithm, absurd parameters).
    #[error("damaged file: {}: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The password was empty, or the parameters given to [`seal`] were refused.
    #[error("{0}")]
    Refused(String),
}

/// Encrypts `plaintext` under `password` with fresh random salt and nonce.
pub fn seal(plaintext: &[u8], password: &str, kdf: KdfParams) -> Result<Vec<u8>, SealError> {
    if password.is_empty() {
        return Err(SealError::Refused(
            "the password of a configuration file must not be empty".into(),
        ));
    }
    let salt = <[u8; SALT_LEN]>::generate();
    let nonce = <[u8; NONCE_LEN]>::generate();
    let mut header = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    header.push(KDF_ARGON2ID);
    header.push(AEAD_XCHACHA20_POLY1305);
    header.extend_from_slice(&kdf.memory_kib.to_be_bytes());
    header.extend_from_slice(&kdf.iterations.to_be_bytes());
    header.extend_from_slice(&kdf.lanes.to_be_bytes());
    header.extend_from_slice(&salt);
    header.extend_from_slice(&nonce);
    debug_assert_eq!(header.len(), HEADER_LEN);
    let cipher = cipher(password, &salt, kdf).map_err(SealError::Refused)?;
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &header,
            },
        )
        .map_err(|_| SealError::Refused("encryption failed".into()))?;
    header.extend_from_slice(&sealed);
    Ok(header)
}

/// Decrypts the file `bytes` (read from `path`, named in errors) with `password`.
pub fn open(bytes: &[u8], password: &str, path: &Path) -> Result<Vec<u8>, SealError> {
    let damaged = |reason: &str| SealError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SealError::NotConfigFile {
            path: path.to_path_buf(),
        });
    }
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(damaged("truncated (shorter than a header and a tag)"));
    }
    let header = &bytes[..HEADER_LEN];
    let u32_at =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let version = u16::from_be_bytes([header[8], header[9]]);
    if version > FORMAT_VERSION {
        return Err(SealError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if version == 0 {
        return Err(damaged("format version 0 does not exist"));
    }
    if header[10] != KDF_ARGON2ID {
        return Err(damaged(&format!(
            "unknown key derivation id {}",
            header[10]
        )));
    }
    if header[11] != AEAD_XCHACHA20_POLY1305 {
        return Err(damaged(&format!("unknown cipher id {}", header[11])));
    }
    let kdf = KdfParams {
        memory_kib: u32_at(12),
        iterations: u32_at(16),
        lanes: u32_at(20),
    };
    if kdf.memory_kib > MAX_MEMORY_KIB
        || kdf.iterations == 0
        || kdf.iterations > MAX_ITERATIONS
        || kdf.lanes == 0
        || kdf.lanes > MAX_LANES
    {
        return Err(damaged(&format!(
            "implausible key derivation parameters (memory {} KiB, {} iterations, {} lanes)",
            kdf.memory_kib, kdf.iterations, kdf.lanes
        )));
    }
    let salt = &header[24..24 + SALT_LEN];
    let nonce: [u8; NONCE_LEN] = header[40..40 + NONCE_LEN]
        .try_into()
        .map_err(|_| damaged("truncated"))?;
    let cipher = cipher(password, salt, kdf).map_err(|e| damaged(&e))?;
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &bytes[HEADER_LEN..],
                aad: header,
            },
        )
        .map_err(|_| SealError::WrongPasswordOrDamaged {
            path: path.to_path_buf(),
        })
}

/// The cipher keyed with Argon2id(password, salt).
fn cipher(password: &str, salt: &[u8], kdf: KdfParams) -> Result<XChaCha20Poly1305, String> {
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.lanes, Some(32))
        .map_err(|e| format!("key derivation parameters refused: {e}"))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut key)
        .map_err(|e| format!("key derivation failed: {e}"))?;
    let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| "bad key length".to_string());
    key.zeroize();
    cipher
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests are about the format, not the cost.
    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    };

    #[test]
    fn round_trip_and_header_layout() {
        let sealed = seal(b"{\"a\":1}", "pw-1", CHEAP).unwrap();
        assert_eq!(&sealed[..8], MAGIC);
        assert_eq!(&sealed[8..12], &[0, 1, 1, 1]);
        assert_eq!(&sealed[12..24], &[0, 0, 0, 64, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(sealed.len(), HEADER_LEN + 7 + TAG_LEN);
        let p = Path::new("/x/cfg");
        assert_eq!(open(&sealed, "pw-1", p).unwrap(), b"{\"a\":1}");
        // A fresh salt and nonce each time.
        let again = seal(b"{\"a\":1}", "pw-1", CHEAP).unwrap();
        assert_ne!(sealed[24..64], again[24..64]);
        assert_ne!(sealed[64..], again[64..]);
    }

    #[test]
    fn every_changed_byte_and_a_wrong_password_are_refused() {
        let p = Path::new("/x/cfg");
        let sealed = seal(b"some configuration", "right", CHEAP).unwrap();
        let e = open(&sealed, "wrong", p).unwrap_err();
        assert_eq!(e.to_string(), "wrong password or damaged file: /x/cfg");
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 0x01;
            assert!(
                open(&b, "right", p).is_err(),
                "byte {i} flipped was accepted"
            );
        }
        for n in [0, 7, 8, HEADER_LEN, HEADER_LEN + TAG_LEN, sealed.len() - 1] {
            assert!(
                open(&sealed[..n], "right", p).is_err(),
                "cut at {n} was accepted"
            );
        }
    }

    #[test]
    fn header_problems_are_named() {
        let p = Path::new("/x/cfg");
        let sealed = seal(b"x", "pw", CHEAP).unwrap();
        let msg = |b: &[u8]| open(b, "pw", p).unwrap_err().to_string();
        assert_eq!(msg(b"hello"), "not an idsync configuration file: /x/cfg");
        assert_eq!(
            msg(&sealed[..30]),
            "damaged file: /x/cfg: truncated (shorter than a header and a tag)"
        );
        let mut b = sealed.clone();
        b[9] = 2;
        assert!(msg(&b).contains("format version 2 is newer"), "{}", msg(&b));
        let mut b = sealed.clone();
        b[12] = 0xff; // memory ~4 TiB
        assert!(
            msg(&b).contains("implausible key derivation"),
            "{}",
            msg(&b)
        );
        let mut b = sealed.clone();
        b[11] = 9;
        assert!(msg(&b).contains("unknown cipher id 9"), "{}", msg(&b));
    }

    #[test]
    fn an_empty_password_is_refused() {
        assert!(seal(b"x", "", CHEAP).is_err());
    }
}
