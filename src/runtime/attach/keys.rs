//! Detach keys in Docker's syntax (`ctrl-p,ctrl-q`): a comma-separated sequence of
//! `ctrl-<c>` (c one of `a`–`z`, `@`, `[`, `\`, `]`, `^`, `_`) or single characters. Typed on
//! an attached stdin, the sequence detaches the client and leaves the container running.

use super::super::RuntimeError;

/// Docker's default sequence.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// A parsed detach sequence (the bytes a terminal sends for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl DetachKeys {
    /// Parses Docker's syntax; an empty string is no sequence at all (`None`).
    pub fn parse(s: &str) -> Result<Option<DetachKeys>, RuntimeError> {
        if s.is_empty() {
            return Ok(None);
        }
        let bad = |part: &str| {
            RuntimeError::BadInput(format!(
                "invalid detach keys {s:?} (at {part:?}): use a comma-separated list of \
                 ctrl-<a-z @ [ \\ ] ^ _> or single characters, e.g. ctrl-p,ctrl-q"
            ))
        };
        let mut bytes = Vec::new();
        for part in s.split(',') {
            let b = match part.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let c = c.as_bytes()[0].to_ascii_lowercase();
                    match c {
                        b'a'..=b'z' => c - b'a' + 1,
                        b'@' => 0,
                        b'[' => 27,
                        b'\\' => 28,
                        b']' => 29,
                        b'^' => 30,
                        b'_' => 31,
                        _ => return Err(bad(part)),
                    }
                }
                Some(_) => return Err(bad(part)),
                None if part.len() == 1 => part.as_bytes()[0],
                None => return Err(bad(part)),
            };
            bytes.push(b);
        }
        Ok(Some(DetachKeys(bytes)))
    }

    /// The default sequence, Ctrl+P Ctrl+Q.
    pub fn default_keys() -> DetachKeys {
        DetachKeys(vec![16, 17])
    }

    /// The bytes of the sequence.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Watches a stdin byte stream for a detach sequence: bytes that may start the sequence are
/// held back until it is complete (detach: they are dropped) or broken (they are passed on).
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    held: usize,
}

/// What [`DetachScanner::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The bytes to pass on to the container.
    pub pass: Vec<u8>,
    /// The sequence was typed: detach (bytes after it are dropped).
    pub detach: bool,
}

impl DetachScanner {
    /// A scanner for `keys`.
    pub fn new(keys: &DetachKeys) -> DetachScanner {
        DetachScanner {
            keys: keys.0.clone(),
            held: 0,
        }
    }

    /// Scans the next input bytes.
    pub fn feed(&mut self, input: &[u8]) -> Scanned {
        let mut pass = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    self.held = 0;
                    return Scanned { pass, detach: true };
                }
                continue;
            }
            // Broken: of the held bytes and this one, the longest end that may still begin
            // the sequence stays held; the rest was input after all.
            let mut candidate = self.keys[..self.held].to_vec();
            candidate.push(b);
            let keep = (0..=self.held)
                .rev()
                .find(|&n| candidate.ends_with(&self.keys[..n]))
                .unwrap_or(0);
            pass.extend_from_slice(&candidate[..candidate.len() - keep]);
            self.held = keep;
        }
        Scanned {
            pass,
            detach: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax_parses() {
        assert_eq!(
            DetachKeys::parse(DEFAULT_DETACH_KEYS).unwrap(),
            Some(DetachKeys::default_keys())
        );
        assert_eq!(
            DetachKeys::parse("ctrl-a,x,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,ctrl-Z")
                .unwrap()
                .unwrap()
                .bytes(),
            &[1, b'x', 0, 27, 28, 29, 30, 31, 26]
        );
        assert_eq!(DetachKeys::parse("").unwrap(), None);
        for bad in ["ctrl-", "ctrl-1", "ab", "ctrl-p,", "ctrl-pp", ","] {
            let e = DetachKeys::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid detach keys"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_broken_prefixes_pass_through() {
        let keys = DetachKeys::default_keys();
        let mut s = DetachScanner::new(&keys);
        assert_eq!(
            s.feed(b"ls\n"),
            Scanned {
                pass: b"ls\n".to_vec(),
                detach: false
            }
        );
        // Ctrl+P alone is held, then passed on when the next byte is not Ctrl+Q.
        assert_eq!(s.feed(&[16]).pass, b"");
        assert_eq!(s.feed(b"x").pass, vec![16, b'x']);
        // Ctrl+P Ctrl+P Ctrl+Q: the first Ctrl+P is input, the rest detaches.
        let r = s.feed(&[b'a', 16, 16, 17, b'z']);
        assert_eq!(r.pass, vec![b'a', 16]);
        assert!(r.detach);
        // Split across reads.
        let mut s = DetachScanner::new(&keys);
        assert!(!s.feed(b"echo\x10").detach);
        let r = s.feed(b"\x11");
        assert!(r.detach && r.pass.is_empty());
    }

    #[test]
    fn a_one_key_sequence_detaches_at_once() {
        let keys = DetachKeys::parse("ctrl-x").unwrap().unwrap();
        let mut s = DetachScanner::new(&keys);
        let r = s.feed(b"ab\x18cd");
        assert_eq!(r.pass, b"ab");
        assert!(r.detach);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The scanner's result, worked out directly: the input up to the first whole sequence
    /// (detach), or without a trailing part that may still become one.
    fn model(keys: &[u8], input: &[u8]) -> (Vec<u8>, bool) {
        if let Some(i) = input.windows(keys.len()).position(|w| w == keys) {
            return (input[..i].to_vec(), true);
        }
        let held = (1..keys.len())
            .rev()
            .find(|&n| input.len() >= n && input.ends_with(&keys[..n]))
            .unwrap_or(0);
        (input[..input.len() - held].to_vec(), false)
    }

    fn keys() -> impl Strategy<Value = Vec<u8>> {
        // Small alphabets make the sequence and its near misses frequent.
        prop::collection::vec(0u8..4, 1..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_split_gives_the_model_result(
            keys in keys(),
            input in prop::collection::vec(0u8..5, 0..64),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut s = DetachScanner::new(&DetachKeys(keys.clone()));
            let (mut pass, mut detach, mut from) = (Vec::new(), false, 0);
            for to in cuts.into_iter().chain([input.len()]) {
                let r = s.feed(&input[from..to]);
                pass.extend(r.pass);
                from = to;
                if r.detach {
                    detach = true;
                    break;
                }
            }
            let (want_pass, want_detach) = model(&keys, &input);
            // Held bytes are not passed until they are known not to be the sequence.
            prop_assert_eq!(detach, want_detach);
            prop_assert_eq!(pass, want_pass);
        }
    }
}
