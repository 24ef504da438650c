//! GUID and SID codecs: AD stores both as raw bytes; administrators read them
//! as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (.NET byte order) and `S-1-5-...`.

/// Formats 16 raw objectGUID bytes in .NET order: the first three groups are
/// little-endian, the last two are taken as they are.
///
/// ```
/// use idsync::model::codec::{guid_from_string, guid_to_string};
/// let raw: Vec<u8> = (0u8..16).collect();
/// let s = guid_to_string(&raw).unwrap();
/// assert_eq!(s, "03020100-0504-0706-0809-0a0b0c0d0e0f");
/// assert_eq!(guid_from_string(&s).unwrap().to_vec(), raw);
/// ```
pub fn guid_to_string(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// Parses a GUID string (with or without braces) into the 16 raw bytes AD
/// stores, inverting [`guid_to_string`].
pub fn guid_from_string(s: &str) -> Option<[u8; 16]> {
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != 5 || groups.iter().zip(lens).any(|(g, l)| g.len() != l) {
        return None;
    }
    let hex: String = groups.concat();
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    let mut out = raw;
    out[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    out[4..6].copy_from_slice(&[raw[5], raw[4]]);
    out[6..8].copy_from_slice(&[raw[7], raw[6]]);
    Some(out)
}

/// True when `s` has the shape of a GUID string.
pub fn looks_like_guid(s: &str) -> bool {
    guid_from_string(s).is_some()
}

/// Formats a binary SID (revision, sub-authority count, 48-bit big-endian
/// authority, little-endian 32-bit sub-authorities) as `S-1-5-21-...`.
pub fn sid_to_string(b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let count = b[1] as usize;
    if b.len() != 8 + 4 * count {
        return None;
    }
    let mut authority: u64 = 0;
    for &x in &b[2..8] {
        authority = (authority << 8) | x as u64;
    }
    let mut s = format!("S-{}-{}", b[0], authority);
    for i in 0..count {
        let o = 8 + 4 * i;
        let sub = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        s.push_str(&format!("-{sub}"));
    }
    Some(s)
}

/// Parses `S-1-5-21-...` into the binary form AD stores.
pub fn sid_from_string(s: &str) -> Option<Vec<u8>> {
    let mut parts = s.trim().split('-');
    if !parts.next()?.eq_ignore_ascii_case("S") {
        return None;
    }
    let revision: u8 = parts.next()?.parse().ok()?;
    let authority: u64 = parts.next()?.parse().ok()?;
    if authority >= 1 << 48 {
        return None;
    }
    let subs: Vec<u32> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if subs.len() > 15 {
        return None;
    }
    let mut out = vec![revision, subs.len() as u8];
    out.extend_from_slice(&authority.to_be_bytes()[2..8]);
    for sub in subs {
        out.extend_from_slice(&sub.to_le_bytes());
    }
    Some(out)
}

/// True when `s` has the shape of a SID string. Any text is safe here:
/// the prefix is compared with `str::get`, never by slicing bytes, so a
/// name such as `Søren` or `山田` is simply not a SID.
pub fn looks_like_sid(s: &str) -> bool {
    s.len() > 4
        && s.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("S-"))
        && sid_from_string(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_round_trip_uses_dotnet_order() {
        let raw: Vec<u8> = (0u8..16).collect();
        let s = guid_to_string(&raw).unwrap();
        assert_eq!(s, "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(guid_from_string(&s).unwrap().to_vec(), raw);
        assert_eq!(guid_from_string(&format!("{{{s}}}")).unwrap().to_vec(), raw);
        assert!(guid_from_string("not-a-guid").is_none());
        assert!(guid_to_string(&raw[..15]).is_none());
    }

    #[test]
    fn sid_round_trip() {
        let s = "S-1-5-21-3623811015-3361044348-30300820-1013";
        let b = sid_from_string(s).unwrap();
        assert_eq!(b.len(), 8 + 4 * 5);
        assert_eq!(sid_to_string(&b).unwrap(), s);
        assert!(sid_to_string(&b[..b.len() - 1]).is_none());
        assert!(sid_from_string("S-1-x").is_none());
        assert!(looks_like_sid("S-1-5-32-544"));
        assert!(!looks_like_sid("Sales"));
        for name in ["Søren", "山田", "Sø-1-5", "ß-1-5-32", "\u{1F600}abc"] {
            assert!(!looks_like_sid(name), "{name}");
            assert!(!looks_like_guid(name), "{name}");
        }
    }
}
