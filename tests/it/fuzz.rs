//! The loader never panics: shipped runbooks and fixtures mutated thousands of ways (byte
//! flips, truncations, splices, deletions, inserted YAML tokens), plus raw random bytes. Every
//! input must come back as a runbook or as diagnostics. A deterministic generator keeps
//! failures reproducible.

use crate::support::root;

/// xorshift64*: small, deterministic, good enough to shake a parser.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    ":", "- ", "{", "}", "[", "]", "\"", "'", "{{", "}}", "{%", "&a ", "*a", "!tag ", "---\n",
    "\n  ", "\t", "#", "|", ">", "?", ",", "~", "\u{0}", "é", "\u{feff}",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = (rng.next() & 0xff) as u8;
            }
            1 => b.truncate(at),
            2 => {
                let end = (at + rng.below(40)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            _ => {
                // duplicate a slice elsewhere: repeated keys, nesting changes
                let start = rng.below(b.len().max(1));
                let end = (start + rng.below(60)).min(b.len());
                let piece = b[start..end].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, piece);
            }
        }
    }
    b
}

#[test]
fn loader_never_panics_on_mutated_or_random_input() {
    let mut seeds = Vec::new();
    for dir in ["runbooks", "tests/fixtures/invalid", "tests/fixtures/valid"] {
        for e in std::fs::read_dir(root().join(dir)).expect("dir").flatten() {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                seeds.push(std::fs::read(e.path()).expect("read"));
            }
        }
    }
    assert!(seeds.len() > 5);
    // a fixed seed keeps CI reproducible; DRILLBOOK_FUZZ_SEED explores further
    let seed = std::env::var("DRILLBOOK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15_u64);
    let mut rng = Rng(seed | 1);
    let (mut ok, mut rejected) = (0, 0);
    for i in 0..20_000 {
        let input = if i % 10 == 9 {
            (0..rng.below(300))
                .map(|_| (rng.next() & 0xff) as u8)
                .collect()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        let text = String::from_utf8_lossy(&input);
        let result = std::panic::catch_unwind(|| drillbook::runbook::load_str("fuzz.yaml", &text));
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(
                    !e.diagnostics.is_empty(),
                    "rejected without a diagnostic:\n{text}"
                );
                // rendering must not panic either
                let _ = e.to_string();
                rejected += 1;
            }
            Err(_) => panic!("the loader panicked on input #{i}:\n{text}"),
        }
    }
    assert!(
        ok > 0 && rejected > 0,
        "ok {ok} rejected {rejected}: the mutations should produce both"
    );
}
