//! Accounts: enable/disable, administrative password set, and checking a
//! password by binding as the user.
//!
//! Conventions by flavour:
//! - AD: `userAccountControl` bit 2 (ACCOUNTDISABLE), other bits kept;
//!   password in `unicodePwd` as quoted UTF-16LE, only over LDAPS/StartTLS.
//! - OpenLDAP: the ppolicy overlay's `pwdAccountLockedTime: 000001010000Z`
//!   (locked until an administrator unlocks) to disable; the Password Modify
//!   extended operation (RFC 3062) for passwords.
//! - Generic: Password Modify; enable/disable unsupported.

use std::collections::HashSet;

use ldap3::Mod;
use ldap3::exop::PasswordModify;

use super::options::Flavor;
use super::read::{self, resolve_dn};
use super::write::modify_dn;
use super::{LdapConnector, open, result};
use crate::connector::{Error, Result};
use crate::model::Secret;

const ACCOUNTDISABLE: u32 = 0x2;
const LOCKED_FOREVER: &str = "000001010000Z";

/// Enables (`true`) or disables (`false`) the account.
pub async fn set_enabled(c: &LdapConnector, identity: &str, enabled: bool) -> Result<()> {
    match c.ldap_flavor() {
        Flavor::Ad => {
            let e = read::require(c, identity, &["userAccountControl"]).await?;
            let Some(uac) = e.first("userAccountControl") else {
                return Err(Error::object(
                    &e.dn,
                    "has no userAccountControl (is it a user or computer account?)",
                    None,
                ));
            };
            let uac: i64 = uac.parse().map_err(|_| {
                Error::object(
                    &e.dn,
                    format!("userAccountControl '{uac}' is not a number"),
                    None,
                )
            })?;
            let uac = uac as u32;
            let new = if enabled {
                uac & !ACCOUNTDISABLE
            } else {
                uac | ACCOUNTDISABLE
            };
            if new == uac {
                return Ok(());
            }
            let v = (new as i32).to_string().into_bytes();
            modify_dn(
                c,
                &e.dn,
                vec![Mod::Replace(
                    b"userAccountControl".to_vec(),
                    HashSet::from([v]),
                )],
            )
            .await
        }
        Flavor::OpenLdap => {
            let dn = resolve_dn(c, identity).await?;
            let attr = b"pwdAccountLockedTime".to_vec();
            let mods = if enabled {
                vec![Mod::Delete(attr, HashSet::new())]
            } else {
                vec![Mod::Replace(
                    attr,
                    HashSet::from([LOCKED_FOREVER.as_bytes().to_vec()]),
                )]
            };
            match modify_dn(c, &dn, mods).await {
                Ok(()) => Ok(()),
                Err(e) if enabled && e.code() == Some(16) => Ok(()),
                Err(e) if e.code() == Some(17) || e.code() == Some(21) => Err(Error::object(
                    &dn,
                    format!(
                        "{} uses the ppolicy overlay's pwdAccountLockedTime, which this server does not know: {e}",
                        if enabled { "enable" } else { "disable" }
                    ),
                    e.code(),
                )),
                Err(e) => Err(e),
            }
        }
        Flavor::Generic => Err(Error::Unsupported {
            op: if enabled { "enable" } else { "disable" }.into(),
            kind: "generic LDAP (no known account-disable convention; use modify)".into(),
        }),
    }
}

/// Sets the password as an administrator.
pub async fn set_password(c: &LdapConnector, identity: &str, password: &Secret) -> Result<()> {
    let dn = resolve_dn(c, identity).await?;
    if password.is_empty() {
        return Err(Error::object(
            &dn,
            "refusing to set an empty password",
            None,
        ));
    }
    match c.ldap_flavor() {
        Flavor::Ad => {
            if !c.is_encrypted() {
                return Err(Error::object(
                    &dn,
                    "set_password on Active Directory needs an encrypted connection \
                     (ldaps:// or tls: \"starttls\"); this connection is plain LDAP, so nothing was sent",
                    None,
                ));
            }
            let quoted = format!("\"{}\"", password.expose());
            let utf16: Vec<u8> = quoted
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect();
            let mut ldap = c.handle().await?;
            let res = ldap
                .modify(
                    &dn,
                    vec![Mod::Replace(b"unicodePwd".to_vec(), HashSet::from([utf16]))],
                )
                .await
                .map_err(|e| result::ldap_error(&dn, e))?;
            if res.rc != 0 {
                return Err(result::password_error(&dn, &res));
            }
            Ok(())
        }
        _ => {
            let mut ldap = c.handle().await?;
            let exop = PasswordModify {
                user_id: Some(&dn),
                old_pass: None,
                new_pass: Some(password.expose()),
            };
            let res = ldap
                .extended(exop)
                .await
                .map_err(|e| result::ldap_error(&dn, e))?;
            if res.1.rc != 0 {
                return Err(result::password_error(&dn, &res.1));
            }
            Ok(())
        }
    }
}

/// True when a simple bind as the user with `password` succeeds; false on
/// invalid credentials. An empty password is always false (it would be an
/// unauthenticated bind, which servers accept).
pub async fn authenticate(c: &LdapConnector, identity: &str, password: &Secret) -> Result<bool> {
    let dn = resolve_dn(c, identity).await?;
    if password.is_empty() {
        return Ok(false);
    }
    // The user's password is protected like the connection's own (StartTLS
    // to a host that is not loopback), even on an anonymous connection.
    let mut ldap = open(&c.options().for_password_bind(), false).await?;
    ldap.with_timeout(c.options().timeout);
    let res = ldap
        .simple_bind(&dn, password.expose())
        .await
        .map_err(|e| result::ldap_error(&dn, e))?;
    let _ = ldap.unbind().await;
    match res.rc {
        0 => Ok(true),
        49 => Ok(false),
        _ => Err(result::bind_error(&dn, &res)),
    }
}
