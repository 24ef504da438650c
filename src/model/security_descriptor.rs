//! Windows security descriptors as Active Directory stores them in
//! `nTSecurityDescriptor`: the self-relative binary form (MS-DTYP §2.4.6)
//! parsed into owner, group, SACL and DACL, and encoded back, plus SIDs in
//! binary and `S-1-5-21-…` form and an SDDL-like text of one ACE.
//!
//! Written here rather than taken from a crate: the one Linux-capable
//! parser on crates.io (`windows-sddl` 0.1) cannot encode a descriptor
//! (only build one fixed shape) and is a new single-author crate; the
//! password-rights grant must write a DACL back unchanged except for the
//! ACEs it adds, so ACE types this module does not interpret are kept as
//! raw bytes. Pure data: no I/O. Every malformed input is an [`SdError`]
//! naming what is wrong, never a panic.

use std::fmt;

use super::codec;

/// The descriptor is in self-relative form (offsets, not pointers).
pub const SE_SELF_RELATIVE: u16 = 0x8000;
/// The DACL is protected from inheritance ("blocks inheritance").
pub const SE_DACL_PROTECTED: u16 = 0x1000;
/// A DACL is present (absent offset with this bit = NULL DACL).
pub const SE_DACL_PRESENT: u16 = 0x0004;
/// A SACL is present.
pub const SE_SACL_PRESENT: u16 = 0x0010;

/// ACE flag: inherited by non-container child objects.
pub const OBJECT_INHERIT_ACE: u8 = 0x01;
/// ACE flag: inherited by child objects (every AD object is a container).
pub const CONTAINER_INHERIT_ACE: u8 = 0x02;
/// ACE flag: inherited by direct children only.
pub const NO_PROPAGATE_INHERIT_ACE: u8 = 0x04;
/// ACE flag: applies only to children, not to the object itself.
pub const INHERIT_ONLY_ACE: u8 = 0x08;
/// ACE flag: the ACE was inherited from a parent.
pub const INHERITED_ACE: u8 = 0x10;

/// Access mask bit: control access (extended rights).
pub const ADS_RIGHT_DS_CONTROL_ACCESS: u32 = 0x100;
/// Access mask bit: generic all.
pub const GENERIC_ALL: u32 = 0x1000_0000;

const ACE_OBJECT_TYPE_PRESENT: u32 = 0x1;
const ACE_INHERITED_OBJECT_TYPE_PRESENT: u32 = 0x2;
const HEADER: usize = 20;

/// A descriptor (or part of one) that could not be read or written, with
/// what is wrong in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("security descriptor: {0}")]
pub struct SdError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SdError> {
    Err(SdError(msg.into()))
}

/// A security identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sid {
    /// Revision (1 in every SID Windows writes).
    pub revision: u8,
    /// The 48-bit identifier authority, big-endian.
    pub authority: [u8; 6],
    /// Sub-authorities (at most 15).
    pub sub_authorities: Vec<u32>,
}

impl Sid {
    /// Reads a SID from the start of `b`; returns it and its length in bytes.
    pub fn read(b: &[u8]) -> Result<(Sid, usize), SdError> {
        if b.len() < 8 {
            return err(format!("SID needs at least 8 bytes, {} left", b.len()));
        }
        let count = b[1] as usize;
        if count > 15 {
            return err(format!("SID with {count} sub-authorities (at most 15)"));
        }
        let len = 8 + 4 * count;
        if b.len() < len {
            return err(format!(
                "SID with {count} sub-authorities needs {len} bytes, {} left",
                b.len()
            ));
        }
        let mut authority = [0u8; 6];
        authority.copy_from_slice(&b[2..8]);
        let sub_authorities = (0..count)
            .map(|i| {
                let o = 8 + 4 * i;
                u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
            })
            .collect();
        Ok((
            Sid {
                revision: b[0],
                authority,
                sub_authorities,
            },
            len,
        ))
    }

    /// A SID from exactly the bytes of `b` (objectSid, tokenGroups values).
    pub fn from_bytes(b: &[u8]) -> Result<Sid, SdError> {
        let (sid, len) = Sid::read(b)?;
        if len != b.len() {
            return err(format!(
                "SID of {len} bytes followed by {} more",
                b.len() - len
            ));
        }
        Ok(sid)
    }

    /// Parses `S-1-5-21-…`.
    pub fn parse(s: &str) -> Result<Sid, SdError> {
        match codec::sid_from_string(s) {
            Some(b) => Sid::from_bytes(&b),
            None => err(format!("'{s}' is not a SID (S-1-5-21-...)")),
        }
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 4 * self.sub_authorities.len());
        out.push(self.revision);
        out.push(self.sub_authorities.len() as u8);
        out.extend_from_slice(&self.authority);
        for s in &self.sub_authorities {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authority = self
            .authority
            .iter()
            .fold(0u64, |a, &x| (a << 8) | u64::from(x));
        write!(f, "S-{}-{}", self.revision, authority)?;
        for s in &self.sub_authorities {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

/// The ACE types this module interprets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AceKind {
    /// ACCESS_ALLOWED_ACE (0).
    Allowed,
    /// ACCESS_DENIED_ACE (1).
    Denied,
    /// ACCESS_ALLOWED_OBJECT_ACE (5).
    AllowedObject,
    /// ACCESS_DENIED_OBJECT_ACE (6).
    DeniedObject,
}

impl AceKind {
    fn code(self) -> u8 {
        match self {
            AceKind::Allowed => 0,
            AceKind::Denied => 1,
            AceKind::AllowedObject => 5,
            AceKind::DeniedObject => 6,
        }
    }

    fn from_code(c: u8) -> Option<AceKind> {
        Some(match c {
            0 => AceKind::Allowed,
            1 => AceKind::Denied,
            5 => AceKind::AllowedObject,
            6 => AceKind::DeniedObject,
            _ => return None,
        })
    }

    /// True for the object ACE types (which carry GUIDs).
    pub fn is_object(self) -> bool {
        matches!(self, AceKind::AllowedObject | AceKind::DeniedObject)
    }

    /// True for the allow types.
    pub fn is_allow(self) -> bool {
        matches!(self, AceKind::Allowed | AceKind::AllowedObject)
    }
}

/// One interpreted ACE. The GUIDs are the raw 16 bytes as stored (the
/// mixed-endian order of objectGUID); only object kinds carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    /// Which type.
    pub kind: AceKind,
    /// Inheritance flags (`CONTAINER_INHERIT_ACE`, ...).
    pub flags: u8,
    /// The access mask.
    pub mask: u32,
    /// The right, property or child class the ACE is about (object kinds).
    pub object_type: Option<[u8; 16]>,
    /// The class of object that inherits the ACE (object kinds).
    pub inherited_object_type: Option<[u8; 16]>,
    /// The trustee.
    pub sid: Sid,
    /// Bytes after the SID inside the ACE's size (kept for a faithful write-back).
    pub extra: Vec<u8>,
}

impl Ace {
    /// True when inherited from a parent.
    pub fn is_inherited(&self) -> bool {
        self.flags & INHERITED_ACE != 0
    }

    /// The ACE in SDDL notation, `(OA;CIIO;CR;<guid>;<guid>;S-1-…)`, with
    /// the SID numeric (no aliases such as `DA`).
    pub fn to_sddl(&self) -> String {
        let t = match self.kind {
            AceKind::Allowed => "A",
            AceKind::Denied => "D",
            AceKind::AllowedObject => "OA",
            AceKind::DeniedObject => "OD",
        };
        let mut flags = String::new();
        for (bit, name) in [
            (OBJECT_INHERIT_ACE, "OI"),
            (CONTAINER_INHERIT_ACE, "CI"),
            (NO_PROPAGATE_INHERIT_ACE, "NP"),
            (INHERIT_ONLY_ACE, "IO"),
            (INHERITED_ACE, "ID"),
        ] {
            if self.flags & bit != 0 {
                flags.push_str(name);
            }
        }
        let guid = |g: &Option<[u8; 16]>| {
            g.and_then(|g| codec::guid_to_string(&g))
                .unwrap_or_default()
        };
        format!(
            "({t};{flags};{};{};{};{})",
            rights_sddl(self.mask),
            guid(&self.object_type),
            guid(&self.inherited_object_type),
            self.sid
        )
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SdError> {
        let mut body = self.mask.to_le_bytes().to_vec();
        if self.kind.is_object() {
            let mut present = 0u32;
            if self.object_type.is_some() {
                present |= ACE_OBJECT_TYPE_PRESENT;
            }
            if self.inherited_object_type.is_some() {
                present |= ACE_INHERITED_OBJECT_TYPE_PRESENT;
            }
            body.extend_from_slice(&present.to_le_bytes());
            for g in [self.object_type, self.inherited_object_type]
                .into_iter()
                .flatten()
            {
                body.extend_from_slice(&g);
            }
        }
        body.extend_from_slice(&self.sid.to_bytes());
        body.extend_from_slice(&self.extra);
        push_ace(out, self.kind.code(), self.flags, &body, || self.to_sddl())
    }
}

fn push_ace(
    out: &mut Vec<u8>,
    ace_type: u8,
    flags: u8,
    body: &[u8],
    what: impl Fn() -> String,
) -> Result<(), SdError> {
    let size = body.len() + 4;
    if size > u16::MAX as usize {
        return err(format!(
            "ACE {} is {size} bytes, more than an ACE can hold (65535)",
            what()
        ));
    }
    out.push(ace_type);
    out.push(flags);
    out.extend_from_slice(&(size as u16).to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// The SDDL letters of an access mask; bits without a name as `0x…`.
pub fn rights_sddl(mask: u32) -> String {
    const NAMES: &[(u32, &str)] = &[
        (0x8000_0000, "GR"),
        (0x4000_0000, "GW"),
        (0x2000_0000, "GX"),
        (0x1000_0000, "GA"),
        (0x0008_0000, "WO"),
        (0x0004_0000, "WD"),
        (0x0002_0000, "RC"),
        (0x0001_0000, "SD"),
        (0x0000_0001, "CC"),
        (0x0000_0002, "DC"),
        (0x0000_0004, "LC"),
        (0x0000_0008, "SW"),
        (0x0000_0010, "RP"),
        (0x0000_0020, "WP"),
        (0x0000_0040, "DT"),
        (0x0000_0080, "LO"),
        (0x0000_0100, "CR"),
    ];
    let mut out = String::new();
    let mut rest = mask;
    for (bit, name) in NAMES {
        if mask & bit != 0 {
            out.push_str(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        out.push_str(&format!("0x{rest:x}"));
    }
    out
}

/// One entry of an ACL: interpreted, or kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AceEntry {
    /// An allowed/denied (object) ACE.
    Known(Ace),
    /// Any other ACE type (audit, callback, ...), kept byte for byte.
    Other {
        /// AceType.
        ace_type: u8,
        /// AceFlags.
        flags: u8,
        /// Everything after the 4-byte header.
        body: Vec<u8>,
    },
}

/// An access control list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// AclRevision (2, or 4 when object ACEs are present).
    pub revision: u8,
    /// The ACEs in order.
    pub aces: Vec<AceEntry>,
}

impl Acl {
    fn read(b: &[u8], what: &str) -> Result<Acl, SdError> {
        if b.len() < 8 {
            return err(format!(
                "{what} needs an 8-byte header, {} bytes left",
                b.len()
            ));
        }
        let size = u16::from_le_bytes([b[2], b[3]]) as usize;
        let count = u16::from_le_bytes([b[4], b[5]]) as usize;
        if size < 8 {
            return err(format!(
                "{what} size {size} is smaller than its 8-byte header"
            ));
        }
        if size > b.len() {
            return err(format!(
                "{what} size {size} runs past the end of the descriptor ({} bytes left)",
                b.len()
            ));
        }
        let mut aces = Vec::with_capacity(count.min(size / 4));
        let mut at = 8;
        for i in 0..count {
            if at + 4 > size {
                return err(format!(
                    "{what} says {count} ACEs but ACE {i} starts at byte {at} of {size}"
                ));
            }
            let ace_type = b[at];
            let flags = b[at + 1];
            let ace_size = u16::from_le_bytes([b[at + 2], b[at + 3]]) as usize;
            if ace_size < 4 {
                return err(format!(
                    "{what} ACE {i}: size {ace_size} is smaller than its 4-byte header"
                ));
            }
            if at + ace_size > size {
                return err(format!(
                    "{what} ACE {i}: size {ace_size} at byte {at} runs past the ACL's {size} bytes"
                ));
            }
            let body = &b[at + 4..at + ace_size];
            let entry = match AceKind::from_code(ace_type) {
                Some(kind) => AceEntry::Known(
                    read_ace(kind, flags, body)
                        .map_err(|e| SdError(format!("{what} ACE {i}: {}", e.0)))?,
                ),
                None => AceEntry::Other {
                    ace_type,
                    flags,
                    body: body.to_vec(),
                },
            };
            aces.push(entry);
            at += ace_size;
        }
        Ok(Acl {
            revision: b[0],
            aces,
        })
    }

    fn encode(&self, what: &str) -> Result<Vec<u8>, SdError> {
        let mut body = Vec::new();
        for a in &self.aces {
            match a {
                AceEntry::Known(ace) => ace.encode(&mut body)?,
                AceEntry::Other {
                    ace_type,
                    flags,
                    body: b,
                } => push_ace(&mut body, *ace_type, *flags, b, || {
                    format!("of type {ace_type}")
                })?,
            }
        }
        let size = body.len() + 8;
        if size > u16::MAX as usize {
            return err(format!(
                "{what} would be {size} bytes, more than an ACL can hold (65535)"
            ));
        }
        if self.aces.len() > u16::MAX as usize {
            return err(format!(
                "{what} has {} ACEs (at most 65535)",
                self.aces.len()
            ));
        }
        let mut out = vec![self.revision, 0];
        out.extend_from_slice(&(size as u16).to_le_bytes());
        out.extend_from_slice(&(self.aces.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The interpreted ACEs.
    pub fn known(&self) -> impl Iterator<Item = &Ace> {
        self.aces.iter().filter_map(|a| match a {
            AceEntry::Known(x) => Some(x),
            AceEntry::Other { .. } => None,
        })
    }
}

fn read_ace(kind: AceKind, flags: u8, body: &[u8]) -> Result<Ace, SdError> {
    if body.len() < 4 {
        return err("too short for its access mask");
    }
    let mask = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let mut at = 4;
    let (mut object_type, mut inherited_object_type) = (None, None);
    if kind.is_object() {
        if body.len() < at + 4 {
            return err("too short for its object flags");
        }
        let present = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
        at += 4;
        if present & !(ACE_OBJECT_TYPE_PRESENT | ACE_INHERITED_OBJECT_TYPE_PRESENT) != 0 {
            return err(format!("unknown object flags 0x{present:x}"));
        }
        for (bit, slot, name) in [
            (ACE_OBJECT_TYPE_PRESENT, &mut object_type, "ObjectType"),
            (
                ACE_INHERITED_OBJECT_TYPE_PRESENT,
                &mut inherited_object_type,
                "InheritedObjectType",
            ),
        ] {
            if present & bit != 0 {
                let Some(g) = body.get(at..at + 16) else {
                    return err(format!("too short for its {name} GUID"));
                };
                let mut raw = [0u8; 16];
                raw.copy_from_slice(g);
                *slot = Some(raw);
                at += 16;
            }
        }
    }
    let (sid, len) = Sid::read(&body[at..]).map_err(|e| SdError(format!("trustee {}", e.0)))?;
    Ok(Ace {
        kind,
        flags,
        mask,
        object_type,
        inherited_object_type,
        sid,
        extra: body[at + len..].to_vec(),
    })
}

/// A security descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDescriptor {
    /// The control bits (`SE_DACL_PROTECTED`, ...); encoding always sets
    /// `SE_SELF_RELATIVE` and the present bits of the lists it writes.
    pub control: u16,
    /// Owner, when asked for (SD flags OWNER).
    pub owner: Option<Sid>,
    /// Primary group, when asked for.
    pub group: Option<Sid>,
    /// The audit list, when asked for.
    pub sacl: Option<Acl>,
    /// The access list (`None` with `SE_DACL_PRESENT`: a NULL DACL, everyone
    /// has every right; without it: not read).
    pub dacl: Option<Acl>,
}

impl SecurityDescriptor {
    /// Parses the self-relative binary form.
    pub fn parse(b: &[u8]) -> Result<SecurityDescriptor, SdError> {
        if b.len() < HEADER {
            return err(format!(
                "{} bytes, shorter than the 20-byte header",
                b.len()
            ));
        }
        if b[0] != 1 {
            return err(format!("revision {}, expected 1", b[0]));
        }
        let control = u16::from_le_bytes([b[2], b[3]]);
        if control & SE_SELF_RELATIVE == 0 {
            return err("not in self-relative form (control bit SE_SELF_RELATIVE is not set)");
        }
        let off = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let part = |o: usize, what: &str| -> Result<Option<&[u8]>, SdError> {
            if o == 0 {
                return Ok(None);
            }
            if o < HEADER || o >= b.len() {
                return err(format!(
                    "{what} at offset {o} lies outside the {} bytes after the header",
                    b.len()
                ));
            }
            Ok(Some(&b[o..]))
        };
        let sid = |o: usize, what: &str| -> Result<Option<Sid>, SdError> {
            part(o, what)?
                .map(|p| {
                    Sid::read(p)
                        .map(|(s, _)| s)
                        .map_err(|e| SdError(format!("{what}: {}", e.0)))
                })
                .transpose()
        };
        let owner = sid(off(4), "owner SID")?;
        let group = sid(off(8), "group SID")?;
        let sacl = part(off(12), "SACL")?
            .map(|p| Acl::read(p, "SACL"))
            .transpose()?;
        let dacl = part(off(16), "DACL")?
            .map(|p| Acl::read(p, "DACL"))
            .transpose()?;
        Ok(SecurityDescriptor {
            control,
            owner,
            group,
            sacl,
            dacl,
        })
    }

    /// Encodes the self-relative binary form (SACL, DACL, owner, group, in
    /// the order Windows writes them).
    pub fn encode(&self) -> Result<Vec<u8>, SdError> {
        let mut control = self.control | SE_SELF_RELATIVE;
        if self.dacl.is_some() {
            control |= SE_DACL_PRESENT;
        }
        if self.sacl.is_some() {
            control |= SE_SACL_PRESENT;
        }
        let mut out = vec![0u8; HEADER];
        out[0] = 1;
        out[2..4].copy_from_slice(&control.to_le_bytes());
        let place = |out: &mut Vec<u8>, slot: usize, bytes: Option<Vec<u8>>| {
            if let Some(bytes) = bytes {
                let o = out.len() as u32;
                out[slot..slot + 4].copy_from_slice(&o.to_le_bytes());
                out.extend_from_slice(&bytes);
            }
        };
        let sacl = self.sacl.as_ref().map(|a| a.encode("SACL")).transpose()?;
        let dacl = self.dacl.as_ref().map(|a| a.encode("DACL")).transpose()?;
        place(&mut out, 12, sacl);
        place(&mut out, 16, dacl);
        place(&mut out, 4, self.owner.as_ref().map(Sid::to_bytes));
        place(&mut out, 8, self.group.as_ref().map(Sid::to_bytes));
        Ok(out)
    }

    /// True when the DACL blocks inheritance (`SE_DACL_PROTECTED`).
    pub fn blocks_inheritance(&self) -> bool {
        self.control & SE_DACL_PROTECTED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(s: &str) -> [u8; 16] {
        codec::guid_from_string(s).unwrap()
    }

    /// A descriptor as Samba returns it for `O:DAG:DAD:P(OA;CIIO;CR;…;…;S-1-5-21-1-2-3-1105)`,
    /// built byte by byte from MS-DTYP, independent of the encoder.
    fn handmade() -> Vec<u8> {
        let sid = [
            1u8, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0x51, 4, 0,
            0,
        ];
        let mut ace = vec![5u8, 0x0a, 0, 0];
        ace.extend_from_slice(&0x100u32.to_le_bytes());
        ace.extend_from_slice(&3u32.to_le_bytes());
        // 00299570-246d-11d0-a768-00aa006e0529 in stored order
        ace.extend_from_slice(&[
            0x70, 0x95, 0x29, 0x00, 0x6d, 0x24, 0xd0, 0x11, 0xa7, 0x68, 0x00, 0xaa, 0x00, 0x6e,
            0x05, 0x29,
        ]);
        ace.extend_from_slice(&guid("bf967aba-0de6-11d0-a285-00aa003049e2"));
        ace.extend_from_slice(&sid);
        let n = ace.len() as u16;
        ace[2..4].copy_from_slice(&n.to_le_bytes());
        let mut acl = vec![4u8, 0, 0, 0, 1, 0, 0, 0];
        acl.extend_from_slice(&ace);
        let n = acl.len() as u16;
        acl[2..4].copy_from_slice(&n.to_le_bytes());
        let mut sd = vec![1u8, 0];
        sd.extend_from_slice(&(0x8000u16 | 0x1000 | 0x0004).to_le_bytes());
        sd.extend_from_slice(&[0; 12]);
        sd.extend_from_slice(&20u32.to_le_bytes());
        sd.extend_from_slice(&acl);
        sd
    }

    #[test]
    fn parses_a_handmade_protected_dacl_with_an_object_ace() {
        let sd = SecurityDescriptor::parse(&handmade()).unwrap();
        assert!(sd.blocks_inheritance());
        assert!(sd.owner.is_none() && sd.group.is_none() && sd.sacl.is_none());
        let dacl = sd.dacl.as_ref().unwrap();
        let aces: Vec<&Ace> = dacl.known().collect();
        assert_eq!(aces.len(), 1);
        assert_eq!(
            aces[0].to_sddl(),
            "(OA;CIIO;CR;00299570-246d-11d0-a768-00aa006e0529;bf967aba-0de6-11d0-a285-00aa003049e2;S-1-5-21-1-2-3-1105)"
        );
        assert_eq!(sd.encode().unwrap(), handmade());
    }

    #[test]
    fn malformed_descriptors_are_named_errors() {
        let good = handmade();
        let e = SecurityDescriptor::parse(&good[..10]).unwrap_err();
        assert!(
            e.to_string().contains("shorter than the 20-byte header"),
            "{e}"
        );
        let mut bad = good.clone();
        bad[16] = 200;
        let e = SecurityDescriptor::parse(&bad).unwrap_err();
        assert!(e.to_string().contains("DACL at offset 200"), "{e}");
        let mut bad = good.clone();
        bad[3] &= 0x7f;
        let e = SecurityDescriptor::parse(&bad).unwrap_err();
        assert!(e.to_string().contains("self-relative"), "{e}");
        let e = SecurityDescriptor::parse(&good[..good.len() - 4]).unwrap_err();
        assert!(e.to_string().contains("DACL size"), "{e}");
        let mut bad = good.clone();
        bad[20 + 8 + 2] = 3; // the ACE's size
        bad[20 + 8 + 3] = 0;
        let e = SecurityDescriptor::parse(&bad).unwrap_err();
        assert!(e.to_string().contains("ACE 0: size 3"), "{e}");
    }

    #[test]
    fn sid_text_and_bytes() {
        let s = Sid::parse("S-1-5-21-3623811015-3361044348-30300820-1013").unwrap();
        assert_eq!(
            s.to_string(),
            "S-1-5-21-3623811015-3361044348-30300820-1013"
        );
        assert_eq!(Sid::from_bytes(&s.to_bytes()).unwrap(), s);
        assert!(Sid::parse("S-1-x").is_err());
        let e = Sid::from_bytes(&[1, 2, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0]).unwrap_err();
        assert!(e.to_string().contains("needs 16 bytes"), "{e}");
    }

    #[test]
    fn rights_letters() {
        assert_eq!(rights_sddl(0x100), "CR");
        assert_eq!(rights_sddl(0x1000_0000 | 0x100), "GACR");
        assert_eq!(rights_sddl(0x0200_0000), "0x2000000");
    }

    use proptest::prelude::*;

    fn arb_sid() -> impl Strategy<Value = Sid> {
        (
            any::<u8>(),
            any::<[u8; 6]>(),
            proptest::collection::vec(any::<u32>(), 0..=15),
        )
            .prop_map(|(revision, authority, sub_authorities)| Sid {
                revision,
                authority,
                sub_authorities,
            })
    }

    fn arb_ace() -> impl Strategy<Value = AceEntry> {
        let known = (
            0usize..4,
            any::<u8>(),
            any::<u32>(),
            proptest::option::of(any::<[u8; 16]>()),
            proptest::option::of(any::<[u8; 16]>()),
            arb_sid(),
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(k, flags, mask, ot, iot, sid, extra)| {
                let kind = [
                    AceKind::Allowed,
                    AceKind::Denied,
                    AceKind::AllowedObject,
                    AceKind::DeniedObject,
                ][k];
                let (ot, iot) = if kind.is_object() {
                    (ot, iot)
                } else {
                    (None, None)
                };
                AceEntry::Known(Ace {
                    kind,
                    flags,
                    mask,
                    object_type: ot,
                    inherited_object_type: iot,
                    sid,
                    extra,
                })
            });
        let other = (
            any::<u8>().prop_filter("not a known type", |t| AceKind::from_code(*t).is_none()),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(ace_type, flags, body)| AceEntry::Other {
                ace_type,
                flags,
                body,
            });
        prop_oneof![3 => known, 1 => other]
    }

    fn arb_acl() -> impl Strategy<Value = Acl> {
        (any::<u8>(), proptest::collection::vec(arb_ace(), 0..8))
            .prop_map(|(revision, aces)| Acl { revision, aces })
    }

    fn arb_sd() -> impl Strategy<Value = SecurityDescriptor> {
        (
            any::<u16>(),
            proptest::option::of(arb_sid()),
            proptest::option::of(arb_sid()),
            proptest::option::of(arb_acl()),
            proptest::option::of(arb_acl()),
        )
            .prop_map(|(control, owner, group, sacl, dacl)| {
                let mut control = control | SE_SELF_RELATIVE;
                if dacl.is_some() {
                    control |= SE_DACL_PRESENT;
                }
                if sacl.is_some() {
                    control |= SE_SACL_PRESENT;
                }
                SecurityDescriptor {
                    control,
                    owner,
                    group,
                    sacl,
                    dacl,
                }
            })
    }

    proptest! {
        /// parse(encode(x)) == x for every descriptor.
        #[test]
        fn encode_then_parse_gives_the_same_descriptor(sd in arb_sd()) {
            let bytes = sd.encode().unwrap();
            prop_assert_eq!(SecurityDescriptor::parse(&bytes).unwrap(), sd);
        }

        /// A SID's text and binary forms go both ways.
        #[test]
        fn sid_text_round_trip(sid in arb_sid()) {
            prop_assert_eq!(Sid::parse(&sid.to_string()).unwrap(), sid.clone());
            prop_assert_eq!(Sid::from_bytes(&sid.to_bytes()).unwrap(), sid);
        }

        /// Any byte string parses or is an error that says what is wrong; never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Err(e) = SecurityDescriptor::parse(&b) {
                prop_assert!(e.to_string().len() > "security descriptor: ".len() + 5, "{}", e);
            }
        }

        /// A valid descriptor cut short, or with one byte changed, parses or is a named
        /// error; never a panic.
        #[test]
        fn damaged_descriptors_never_panic(
            sd in arb_sd(),
            cut in any::<proptest::sample::Index>(),
            at in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let bytes = sd.encode().unwrap();
            let short = &bytes[..cut.index(bytes.len())];
            if let Err(e) = SecurityDescriptor::parse(short) {
                prop_assert!(!e.0.is_empty());
            }
            let mut changed = bytes.clone();
            let i = at.index(changed.len());
            changed[i] = byte;
            if let Err(e) = SecurityDescriptor::parse(&changed) {
                prop_assert!(!e.0.is_empty());
            }
        }
    }
}
