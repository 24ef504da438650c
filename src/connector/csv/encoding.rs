//! The character encodings a CSV file may be in, as HR systems and Excel
//! write them: UTF-8 (the default), Windows-1252 (Excel's "CSV" on Western
//! Windows; `latin1` is read the same way, as browsers and encoding_rs do)
//! and UTF-16 (Excel's "Unicode text", PowerShell 5's default). A byte-order
//! mark decides the encoding whatever the option says; the file is written
//! back in the encoding it was read in.

use std::borrow::Cow;

/// A CSV file's character encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 (the default).
    #[default]
    Utf8,
    /// Windows-1252, a superset of ISO-8859-1 (latin1) for printable text.
    Windows1252,
    /// UTF-16 little-endian (what Windows writes).
    Utf16Le,
    /// UTF-16 big-endian.
    Utf16Be,
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Encoding, String> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "windows-1252" | "cp1252" | "latin1" | "latin-1" | "iso-8859-1" => {
                Ok(Encoding::Windows1252)
            }
            "utf-16" | "utf16" | "utf-16le" | "unicode" => Ok(Encoding::Utf16Le),
            "utf-16be" => Ok(Encoding::Utf16Be),
            other => Err(format!(
                "unknown encoding '{other}' (use \"utf-8\", \"windows-1252\", \"latin1\" or \"utf-16\")"
            )),
        }
    }
}

impl Encoding {
    /// The name shown in messages and saved profiles.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Utf16Le => "utf-16",
            Encoding::Utf16Be => "utf-16be",
        }
    }
}

/// A file's text as UTF-8 bytes, with the encoding and BOM it was found in.
pub struct Decoded<'a> {
    /// The text as UTF-8 (not validated when the file is UTF-8: cells are
    /// checked one by one, so errors can name the line and column).
    pub bytes: Cow<'a, [u8]>,
    /// The encoding the file is in.
    pub encoding: Encoding,
    /// Whether the file starts with a byte-order mark.
    pub bom: bool,
}

const UTF8_BOM: &[u8] = &[0xef, 0xbb, 0xbf];

/// Decodes `raw`: a BOM wins, then `option`, then UTF-8. Errors say why
/// the bytes are not text in that encoding.
pub fn decode(raw: &[u8], option: Option<Encoding>) -> Result<Decoded<'_>, String> {
    let (encoding, bom, body) = if let Some(b) = raw.strip_prefix(UTF8_BOM) {
        (Encoding::Utf8, true, b)
    } else if let Some(b) = raw.strip_prefix(&[0xff, 0xfe]) {
        (Encoding::Utf16Le, true, b)
    } else if let Some(b) = raw.strip_prefix(&[0xfe, 0xff]) {
        (Encoding::Utf16Be, true, b)
    } else {
        (option.unwrap_or_default(), false, raw)
    };
    let bytes = match encoding {
        Encoding::Utf8 => Cow::Borrowed(body),
        Encoding::Windows1252 => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(body);
            Cow::Owned(text.into_owned().into_bytes())
        }
        Encoding::Utf16Le | Encoding::Utf16Be => {
            let enc = if encoding == Encoding::Utf16Le {
                encoding_rs::UTF_16LE
            } else {
                encoding_rs::UTF_16BE
            };
            let text = enc
                .decode_without_bom_handling_and_without_replacement(body)
                .ok_or_else(|| {
                    format!(
                        "not valid {} text (an odd number of bytes or a broken surrogate pair)",
                        encoding.name()
                    )
                })?;
            Cow::Owned(text.into_owned().into_bytes())
        }
    };
    Ok(Decoded {
        bytes,
        encoding,
        bom,
    })
}

/// Encodes UTF-8 `text` (without BOM) in `encoding`, with a BOM when `bom`.
/// Errors name the first character the encoding cannot hold.
pub fn encode(text: &str, encoding: Encoding, bom: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() + 3);
    match encoding {
        Encoding::Utf8 => {
            if bom {
                out.extend_from_slice(UTF8_BOM);
            }
            out.extend_from_slice(text.as_bytes());
        }
        Encoding::Windows1252 => {
            if let Some(c) = text.chars().find(|&c| {
                let mut buf = [0u8; 4];
                let (_, _, bad) = encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut buf));
                bad
            }) {
                return Err(format!(
                    "'{c}' (U+{:04X}) cannot be written in windows-1252 (open the file with another encoding)",
                    c as u32
                ));
            }
            let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
            out.extend_from_slice(&bytes);
        }
        Encoding::Utf16Le | Encoding::Utf16Be => {
            let le = encoding == Encoding::Utf16Le;
            let push = |out: &mut Vec<u8>, u: u16| {
                out.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() })
            };
            if bom {
                push(&mut out, 0xfeff);
            }
            for u in text.encode_utf16() {
                push(&mut out, u);
            }
        }
    }
    Ok(out)
}

/// The 1-based line of byte `offset`, counting CRLF, LF and a lone CR each
/// as one line break (the csv crate counts LF only).
pub fn line_of(bytes: &[u8], offset: usize) -> u64 {
    let end = offset.min(bytes.len());
    let mut line = 1;
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'\n' => line += 1,
            b'\r' => {
                line += 1;
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_each_encoding() {
        let text = "id;name\r\nE1;Jürgen Weiß-Café\r\n";
        for enc in [
            Encoding::Utf8,
            Encoding::Windows1252,
            Encoding::Utf16Le,
            Encoding::Utf16Be,
        ] {
            for bom in [false, true] {
                if bom && enc == Encoding::Windows1252 {
                    continue;
                }
                let raw = encode(text, enc, bom).expect("encode");
                let opt = if bom { None } else { Some(enc) };
                let d = decode(&raw, opt).expect("decode");
                assert_eq!(d.encoding, enc);
                assert_eq!(d.bom, bom);
                assert_eq!(std::str::from_utf8(&d.bytes).expect("utf8"), text);
            }
        }
        assert_eq!(encode("ü", Encoding::Windows1252, false).unwrap(), [0xfc]);
        assert!(
            encode("Ł", Encoding::Windows1252, false)
                .unwrap_err()
                .contains("U+0141")
        );
    }

    #[test]
    fn lines_count_crlf_and_cr() {
        assert_eq!(line_of(b"a\r\nb\r\nc", 6), 3);
        assert_eq!(line_of(b"a\rb\rc", 4), 3);
        assert_eq!(line_of(b"a\nb\nc", 4), 3);
        assert_eq!(line_of(b"a\r\nb", 1), 1);
        assert_eq!(line_of(b"a\r\n\r\nb", 5), 3);
    }
}
