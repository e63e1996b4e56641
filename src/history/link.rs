//! One stored line's place in the chain: its `seq`, `prev`, `hash` and whether its content
//! matches that hash. A line as drillbook writes it is canonical JSON whose keys sort as
//! `anchored`, `hash`, `prev`, `record`, `seq`; without its `"hash":"…",` member it is byte
//! for byte what the hash covers. So an intact line is checked by hashing its own bytes,
//! without building the record's JSON tree and writing it out again, which is most of the
//! cost of reading a long history. Any line that does not match that way (edited, written
//! by hand, or merely not canonical) is parsed and rehashed as before, so the verdict is
//! the same as the slow path's: a line passes the fast path only if its bytes are the
//! exact bytes the hash was computed over.

use sha2::{Digest, Sha256};

use super::{entry_hash, Entry};

/// What the chain needs from one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    pub anchored: bool,
    /// The content matches `hash`.
    pub intact: bool,
}

impl Link {
    /// The line's link; an error when the line is not an entry at all.
    pub fn read(line: &str) -> Result<Link, String> {
        if let Some(link) = canonical(line) {
            return Ok(link);
        }
        Link::parsed(line)
    }

    /// The link as a canonical line states it, its content taken as matching its hash
    /// without hashing it: for the lines a full verification already checked (before the
    /// checkpoint). Any other line is read as by [`Link::read`].
    pub fn stated(line: &str) -> Result<Link, String> {
        match layout(line) {
            Some((link, _, _)) => Ok(link),
            None => Link::parsed(line),
        }
    }

    fn parsed(line: &str) -> Result<Link, String> {
        let e: Entry = serde_json::from_str(line).map_err(|e| e.to_string())?;
        Ok(Link {
            intact: entry_hash(e.seq, &e.prev, e.anchored, &e.record) == e.hash,
            seq: e.seq,
            prev: e.prev,
            hash: e.hash,
            anchored: e.anchored,
        })
    }
}

fn hex64(s: &str) -> Option<&str> {
    let h = s.get(..64)?;
    h.bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some(h)
}

/// The link a canonical line states, and the two parts of it the hash covers (what comes
/// before and after the hash member); None for a line not laid out as drillbook writes it.
fn layout(line: &str) -> Option<(Link, &str, &str)> {
    const ANCHORED: &str = r#"{"anchored":true,"hash":""#;
    const PLAIN: &str = r#"{"hash":""#;
    let (anchored, rest) = match line.strip_prefix(ANCHORED) {
        Some(rest) => (true, rest),
        None => (false, line.strip_prefix(PLAIN)?),
    };
    let hash = hex64(rest)?;
    // `"prev":"…","record":…,"seq":N}`: what follows the hash member
    let covered = rest[64..].strip_prefix("\",")?;
    let prev = hex64(covered.strip_prefix(r#""prev":""#)?)?;
    let (_, seq) = line.rsplit_once(r#","seq":"#)?;
    let seq = seq.strip_suffix('}')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `{` or `{"anchored":true,`, then the rest without the hash member
    let opening = &line[..line.len() - rest.len() - r#""hash":""#.len()];
    let link = Link {
        seq: seq.parse().ok()?,
        prev: prev.to_owned(),
        hash: hash.to_owned(),
        anchored,
        intact: true,
    };
    Some((link, opening, covered))
}

/// The link of a canonical line whose bytes match its hash; None for any other line.
fn canonical(line: &str) -> Option<Link> {
    let (link, opening, covered) = layout(line)?;
    let mut digest = Sha256::new();
    digest.update(opening.as_bytes());
    digest.update(covered.as_bytes());
    (hex_eq(&digest.finalize(), &link.hash)).then_some(link)
}

/// The digest equals the 64 lowercase hex digits (compared without writing it out: this
/// runs once per entry).
fn hex_eq(digest: &[u8], hex: &str) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    hex.len() == digest.len() * 2
        && digest
            .iter()
            .zip(hex.as_bytes().chunks(2))
            .all(|(b, pair)| {
                pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 15)]
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slow(line: &str) -> Link {
        let e: Entry = serde_json::from_str(line).expect("entry");
        Link {
            intact: entry_hash(e.seq, &e.prev, e.anchored, &e.record) == e.hash,
            seq: e.seq,
            prev: e.prev,
            hash: e.hash,
            anchored: e.anchored,
        }
    }

    #[test]
    fn a_written_line_takes_the_fast_path_and_agrees_with_the_slow_one() {
        let first = Entry::after(
            None,
            json!({"id": "a", "z": {"seq": 1}, "note": "\"seq\":2}"}),
        );
        let old = Entry {
            anchored: false,
            hash: entry_hash(2, &first.hash, false, &json!({"id": "b"})),
            seq: 2,
            prev: first.hash.clone(),
            record: json!({"id": "b"}),
        };
        for e in [&first, &old] {
            let line = e.line();
            let fast = canonical(&line).expect("the fast path");
            assert_eq!(fast, slow(&line));
            assert_eq!(Link::read(&line), Ok(fast));
        }
    }

    #[test]
    fn any_line_off_the_fast_path_gets_the_slow_verdict() {
        let line = Entry::after(None, json!({"id": "a", "rto": 1000})).line();
        let edited = line.replace("1000", "900");
        let spaced = line.replace(r#""id":"a""#, r#""id": "a""#);
        let reordered = {
            let v: serde_json::Value = serde_json::from_str(&line).expect("json");
            format!(
                r#"{{"seq":1,"prev":{},"hash":{},"anchored":true,"record":{}}}"#,
                v["prev"], v["hash"], v["record"]
            )
        };
        for (l, intact) in [(&edited, false), (&spaced, true), (&reordered, true)] {
            assert!(canonical(l).is_none(), "{l}");
            let got = Link::read(l).expect("an entry");
            assert_eq!((got.intact, &got), (intact, &slow(l)));
        }
        assert!(Link::read("{\"seq\":1}").is_err());
        // before a checkpoint the content is taken as checked; its links still count
        let stated = Link::stated(&edited).expect("an entry");
        assert!(stated.intact);
        assert_eq!(stated.hash, slow(&edited).hash);
    }
}
