//! Lowercase hexadecimal text of bytes (digests, `bytea` values).

/// `[0xde, 0xad]` → `"dead"`.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
