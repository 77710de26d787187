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
            // Broken: the held prefix was input after all; this byte may start a new one.
            pass.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if b == self.keys[0] {
                self.held = 1;
                if self.keys.len() == 1 {
                    self.held = 0;
                    return Scanned { pass, detach: true };
                }
            } else {
                pass.push(b);
            }
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
