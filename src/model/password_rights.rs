//! Which password rights an account holds on the user objects of one
//! container, judged from that container's DACL, and the ACEs that grant
//! them: Reset Password (User-Force-Change-Password) and Change Password
//! (User-Change-Password), the extended rights password write-back needs.
//!
//! A user object in an OU receives the OU's inheritable ACEs
//! (CONTAINER_INHERIT) whose InheritedObjectType is empty or the `user`
//! class; Active Directory keeps the ACEs an OU inherited from above in its
//! own DACL (flag INHERITED), so one DACL tells both. ACEs are evaluated in
//! order as Windows does — in a canonical DACL explicit ACEs come before
//! inherited ones and denies before allows, so a deny wins over an allow at
//! the same level. Pure data: no I/O.

use std::fmt;

use super::codec;
use super::security_descriptor::{
    ADS_RIGHT_DS_CONTROL_ACCESS, Ace, AceEntry, AceKind, Acl, CONTAINER_INHERIT_ACE, GENERIC_ALL,
    INHERIT_ONLY_ACE, INHERITED_ACE, Sid,
};

/// Reset Password (User-Force-Change-Password) extended right.
pub const RESET_PASSWORD: &str = "00299570-246d-11d0-a768-00aa006e0529";
/// Change Password (User-Change-Password) extended right.
pub const CHANGE_PASSWORD: &str = "ab721a53-1e2f-11d0-9819-00aa0040529b";
/// The `user` class (schemaIDGUID).
pub const USER_CLASS: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";
/// Everyone.
pub const EVERYONE: &str = "S-1-1-0";
/// Authenticated Users.
pub const AUTHENTICATED_USERS: &str = "S-1-5-11";

/// The two rights, by name and GUID.
pub const RIGHTS: [(&str, &str); 2] = [
    ("reset_password", RESET_PASSWORD),
    ("change_password", CHANGE_PASSWORD),
];

fn guid(s: &str) -> [u8; 16] {
    codec::guid_from_string(s).unwrap_or_default()
}

/// Whether an account holds one right on the user objects of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Granted by an ACE set on this container.
    Explicit,
    /// Granted by an ACE inherited from a container above.
    Inherited,
    /// Refused by a deny ACE (set here, or inherited).
    Denied {
        /// The deny ACE came from above.
        inherited: bool,
    },
    /// No ACE grants it.
    Missing,
    /// The container has a NULL DACL: everyone holds every right.
    NullDacl,
}

impl Holding {
    /// True when the account holds the right.
    pub fn held(self) -> bool {
        matches!(
            self,
            Holding::Explicit | Holding::Inherited | Holding::NullDacl
        )
    }
}

impl fmt::Display for Holding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Holding::Explicit => "explicit",
            Holding::Inherited => "inherited",
            Holding::Denied { inherited: false } => "denied (explicit)",
            Holding::Denied { inherited: true } => "denied (inherited)",
            Holding::Missing => "missing",
            Holding::NullDacl => "null DACL (everyone)",
        })
    }
}

/// True when `ace` reaches the user objects below its container.
fn reaches_users(ace: &Ace) -> bool {
    ace.flags & CONTAINER_INHERIT_ACE != 0
        && ace
            .inherited_object_type
            .is_none_or(|g| g == guid(USER_CLASS))
}

/// True when `ace` is about the extended right `right`: an object ACE for
/// it with CONTROL_ACCESS, or CONTROL_ACCESS / GENERIC_ALL for every right
/// (no object type).
fn covers(ace: &Ace, right: &[u8; 16]) -> bool {
    match ace.object_type {
        Some(g) => g == *right && ace.mask & ADS_RIGHT_DS_CONTROL_ACCESS != 0,
        None => ace.mask & (ADS_RIGHT_DS_CONTROL_ACCESS | GENERIC_ALL) != 0,
    }
}

/// Whether the holder of `token` (its SID, its groups' SIDs, Everyone,
/// Authenticated Users) holds the extended right `right` (a GUID string)
/// on user objects in the container whose DACL is `dacl` (`None`: a NULL
/// DACL).
pub fn holding(dacl: Option<&Acl>, token: &[Sid], right: &str) -> Holding {
    let Some(dacl) = dacl else {
        return Holding::NullDacl;
    };
    let right = guid(right);
    for ace in dacl.known() {
        if !reaches_users(ace) || !covers(ace, &right) || !token.contains(&ace.sid) {
            continue;
        }
        return match (ace.kind.is_allow(), ace.is_inherited()) {
            (true, false) => Holding::Explicit,
            (true, true) => Holding::Inherited,
            (false, inherited) => Holding::Denied { inherited },
        };
    }
    Holding::Missing
}

/// The ACE that grants `right` to `sid` on every user object below a
/// container: `(OA;CIIO;CR;<right>;<user>;<sid>)`.
pub fn grant_ace(sid: &Sid, right: &str) -> Ace {
    Ace {
        kind: AceKind::AllowedObject,
        flags: CONTAINER_INHERIT_ACE | INHERIT_ONLY_ACE,
        mask: ADS_RIGHT_DS_CONTROL_ACCESS,
        object_type: Some(guid(right)),
        inherited_object_type: Some(guid(USER_CLASS)),
        sid: sid.clone(),
        extra: Vec::new(),
    }
}

/// True when `dacl` already has an explicit ACE doing what `want` (from
/// [`grant_ace`]) does: same trustee, right and class, inheritable,
/// CONTROL_ACCESS. (`(OA;CI;CR;…)` as `samba-tool dsacl set` writes it
/// counts: inherit-only changes nothing for the users below.)
pub fn has_explicit(dacl: &Acl, want: &Ace) -> bool {
    dacl.known().any(|a| {
        a.kind == want.kind
            && !a.is_inherited()
            && a.flags & CONTAINER_INHERIT_ACE != 0
            && a.sid == want.sid
            && a.object_type == want.object_type
            && a.inherited_object_type == want.inherited_object_type
            && a.mask & want.mask == want.mask
    })
}

/// Adds `ace` to `dacl` where a canonical DACL keeps explicit allows:
/// after the explicit ACEs, before the first inherited one.
pub fn insert_explicit(dacl: &mut Acl, ace: Ace) {
    let at = dacl
        .aces
        .iter()
        .position(|a| match a {
            AceEntry::Known(k) => k.is_inherited(),
            AceEntry::Other { flags, .. } => flags & INHERITED_ACE != 0,
        })
        .unwrap_or(dacl.aces.len());
    dacl.aces.insert(at, AceEntry::Known(ace));
    // Object ACEs need ACL revision 4 (ACL_REVISION_DS).
    dacl.revision = dacl.revision.max(4);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> Sid {
        Sid::parse(s).unwrap()
    }

    fn acl(aces: Vec<Ace>) -> Acl {
        Acl {
            revision: 4,
            aces: aces.into_iter().map(AceEntry::Known).collect(),
        }
    }

    const SVC: &str = "S-1-5-21-1-2-3-1105";
    const GROUP: &str = "S-1-5-21-1-2-3-1200";

    #[test]
    fn explicit_inherited_denied_and_missing() {
        let token = [sid(SVC), sid(GROUP), sid(EVERYONE)];
        let grant = grant_ace(&sid(GROUP), RESET_PASSWORD);
        assert_eq!(
            holding(Some(&acl(vec![grant.clone()])), &token, RESET_PASSWORD),
            Holding::Explicit
        );
        assert_eq!(
            holding(Some(&acl(vec![grant.clone()])), &token, CHANGE_PASSWORD),
            Holding::Missing
        );
        let mut inherited = grant.clone();
        inherited.flags |= INHERITED_ACE;
        assert_eq!(
            holding(Some(&acl(vec![inherited.clone()])), &token, RESET_PASSWORD),
            Holding::Inherited
        );
        // someone else's grant does nothing
        let other = grant_ace(&sid("S-1-5-21-1-2-3-999"), RESET_PASSWORD);
        assert_eq!(
            holding(Some(&acl(vec![other])), &token, RESET_PASSWORD),
            Holding::Missing
        );
        // a deny before the inherited allow wins
        let mut deny = grant_ace(&sid(SVC), RESET_PASSWORD);
        deny.kind = AceKind::DeniedObject;
        assert_eq!(
            holding(
                Some(&acl(vec![deny, inherited.clone()])),
                &token,
                RESET_PASSWORD
            ),
            Holding::Denied { inherited: false }
        );
        // an ACE that does not inherit to children, or only to computers, does not reach users
        let mut here_only = grant.clone();
        here_only.flags = 0;
        let mut computers = grant.clone();
        computers.inherited_object_type =
            codec::guid_from_string("bf967a86-0de6-11d0-a285-00aa003049e2");
        assert_eq!(
            holding(
                Some(&acl(vec![here_only, computers])),
                &token,
                RESET_PASSWORD
            ),
            Holding::Missing
        );
        // all extended rights / generic all without an object type
        let all = Ace {
            kind: AceKind::Allowed,
            flags: CONTAINER_INHERIT_ACE,
            mask: GENERIC_ALL,
            object_type: None,
            inherited_object_type: None,
            sid: sid(GROUP),
            extra: vec![],
        };
        assert_eq!(
            holding(Some(&acl(vec![all])), &token, CHANGE_PASSWORD),
            Holding::Explicit
        );
        assert_eq!(holding(None, &token, CHANGE_PASSWORD), Holding::NullDacl);
    }

    #[test]
    fn grant_goes_after_explicit_aces_and_is_recognised() {
        let s = sid(SVC);
        let mut inherited = grant_ace(&sid(GROUP), CHANGE_PASSWORD);
        inherited.flags |= INHERITED_ACE;
        let explicit = grant_ace(&sid(GROUP), RESET_PASSWORD);
        let mut dacl = acl(vec![explicit, inherited]);
        dacl.revision = 2;
        let want = grant_ace(&s, RESET_PASSWORD);
        assert!(!has_explicit(&dacl, &want));
        insert_explicit(&mut dacl, want.clone());
        assert_eq!(dacl.aces[1], AceEntry::Known(want.clone()));
        assert_eq!(dacl.revision, 4);
        assert!(has_explicit(&dacl, &want));
        assert!(!has_explicit(&dacl, &grant_ace(&s, CHANGE_PASSWORD)));
        assert_eq!(
            want.to_sddl(),
            format!("(OA;CIIO;CR;{RESET_PASSWORD};{USER_CLASS};{SVC})")
        );
    }
}
