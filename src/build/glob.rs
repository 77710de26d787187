//! Path patterns as `COPY` sources and `.dockerignore` use them (Go's `filepath.Match` per
//! path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\` escapes; plus `**` for any number
//! of components in `.dockerignore`).

/// Whether `name` (one path component) matches `pattern` (one component).
pub fn component_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let Some(&c) = p.first() else {
        return n.is_empty();
    };
    match c {
        '*' => (0..=n.len()).any(|k| match_from(&p[1..], &n[k..])),
        '?' => !n.is_empty() && match_from(&p[1..], &n[1..]),
        '[' => {
            let Some(&x) = n.first() else { return false };
            match class(&p[1..], x) {
                Some((ok, used)) => ok && match_from(&p[1 + used..], &n[1..]),
                None => x == '[' && match_from(&p[1..], &n[1..]),
            }
        }
        '\\' if p.len() > 1 => n.first() == Some(&p[1]) && match_from(&p[2..], &n[1..]),
        _ => n.first() == Some(&c) && match_from(&p[1..], &n[1..]),
    }
}

/// Matches `x` against the class body at `p` (after `[`); returns (matched, chars used
/// including the closing `]`), or `None` for an unterminated class.
fn class(p: &[char], x: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = if p[i] == '\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            p[i]
        };
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            let hi = p[i + 2];
            if lo <= x && x <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == x {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Whether a pattern has glob characters.
pub fn has_magic(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether the relative `path` (components split by `/`) matches `pattern`, where a `**`
/// component matches any number of components.
pub fn path_matches(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(&"**") => (0..=path.len()).any(|k| path_matches(&pattern[1..], &path[k..])),
        Some(p) => {
            !path.is_empty()
                && component_matches(p, path[0])
                && path_matches(&pattern[1..], &path[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert!(component_matches("*.txt", "a.txt"));
        assert!(!component_matches("*.txt", "a.txz"));
        assert!(component_matches("a?c", "abc"));
        assert!(component_matches("[a-c]x", "bx"));
        assert!(!component_matches("[!a-c]x", "bx"));
        assert!(component_matches("\\*", "*"));
    }

    #[test]
    fn paths() {
        assert!(path_matches(&["**", "*.go"], &["a", "b", "c.go"]));
        assert!(path_matches(&["**", "*.go"], &["c.go"]));
        assert!(!path_matches(&["src", "*.go"], &["a", "c.go"]));
    }
}
