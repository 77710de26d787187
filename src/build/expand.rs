//! Docker's variable expansion and word splitting for instruction arguments: `$NAME`,
//! `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`,
//! `${NAME:?message}`; single quotes are literal, double quotes expand; the escape character
//! escapes the next character outside quotes (and `"`, `$` and itself inside double quotes).
//! Quotes are removed; text a variable expands to is never split into more words.

use super::BuildError;

/// Looks a variable up (`None`: unset).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands `text` as one word: whitespace is kept, quotes removed.
pub fn word(text: &str, lookup: Lookup<'_>, escape: char) -> Result<String, BuildError> {
    Ok(lex(text, lookup, escape, false)?.join(""))
}

/// Expands `text` and splits it into words at unquoted whitespace.
pub fn words(text: &str, lookup: Lookup<'_>, escape: char) -> Result<Vec<String>, BuildError> {
    lex(text, lookup, escape, true)
}

/// Expands variables only (no quote removal): for heredoc bodies.
pub fn variables_only(text: &str, lookup: Lookup<'_>) -> Result<String, BuildError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let (v, next) = dollar(&chars, i, lookup, '\\')?;
            out.push_str(&v);
            i = next;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn lex(
    text: &str,
    lookup: Lookup<'_>,
    escape: char,
    split: bool,
) -> Result<Vec<String>, BuildError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if split && c.is_whitespace() {
            if in_word {
                out.push(std::mem::take(&mut cur));
                in_word = false;
            }
            i += 1;
            continue;
        }
        in_word = true;
        if c == escape {
            if let Some(&n) = chars.get(i + 1) {
                cur.push(n);
                i += 2;
            } else {
                cur.push(c);
                i += 1;
            }
        } else if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or_else(|| {
                    BuildError::Expand(format!("unterminated single quote in {text:?}"))
                })?;
            cur.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
        } else if c == '"' {
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(BuildError::Expand(format!(
                        "unterminated double quote in {text:?}"
                    )));
                };
                if d == '"' {
                    i += 1;
                    break;
                }
                if d == escape
                    && matches!(chars.get(i + 1), Some(&n) if n == '"' || n == '$' || n == escape)
                {
                    cur.push(chars[i + 1]);
                    i += 2;
                } else if d == '$' {
                    let (v, next) = dollar(&chars, i, lookup, escape)?;
                    cur.push_str(&v);
                    i = next;
                } else {
                    cur.push(d);
                    i += 1;
                }
            }
        } else if c == '$' {
            let (v, next) = dollar(&chars, i, lookup, escape)?;
            cur.push_str(&v);
            i = next;
        } else {
            cur.push(c);
            i += 1;
        }
    }
    if in_word || !split {
        out.push(cur);
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the `$…` at `chars[i]`; returns the value and the index after it.
fn dollar(
    chars: &[char],
    i: usize,
    lookup: Lookup<'_>,
    escape: char,
) -> Result<(String, usize), BuildError> {
    let mut j = i + 1;
    match chars.get(j) {
        Some('{') => {
            j += 1;
            let start = j;
            while j < chars.len() && is_name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            if name.is_empty() {
                return Err(BuildError::Expand(
                    "bad substitution: ${} without a name".into(),
                ));
            }
            // Find the matching close brace (nested ${…} allowed in the word).
            let mut depth = 1;
            let mut k = j;
            while k < chars.len() {
                match chars[k] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            if k >= chars.len() {
                return Err(BuildError::Expand(format!("missing '}}' after ${{{name}")));
            }
            let op: String = chars[j..k].iter().collect();
            let value = lookup(&name);
            let v = if op.is_empty() {
                value.unwrap_or_default()
            } else {
                let (colon, rest) = match op.strip_prefix(':') {
                    Some(r) => (true, r),
                    None => (false, op.as_str()),
                };
                let mut it = rest.chars();
                let kind = it.next().unwrap_or(' ');
                let arg = it.as_str();
                let set = match &value {
                    Some(v) => !colon || !v.is_empty(),
                    None => false,
                };
                match kind {
                    '-' => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            word(arg, lookup, escape)?
                        }
                    }
                    '+' => {
                        if set {
                            word(arg, lookup, escape)?
                        } else {
                            String::new()
                        }
                    }
                    '?' => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            return Err(BuildError::Expand(format!(
                                "{name}: {}",
                                if arg.is_empty() { "is not set" } else { arg }
                            )));
                        }
                    }
                    _ => {
                        return Err(BuildError::Expand(format!(
                            "unsupported modifier ({op}) in substitution of ${{{name}}}"
                        )));
                    }
                }
            };
            Ok((v, k + 1))
        }
        Some(&c) if is_name_char(c) => {
            let start = j;
            while j < chars.len() && is_name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            Ok((lookup(&name).unwrap_or_default(), j))
        }
        _ => Ok(("$".into(), i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "SP" => Some("x y".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_as_docker_documents() {
        let w = |s: &str| word(s, &env, '\\').unwrap();
        assert_eq!(w("$A"), "alpha");
        assert_eq!(w("${A}x"), "alphax");
        assert_eq!(w("${B:-def}"), "def");
        assert_eq!(w("${EMPTY:-def}"), "def");
        assert_eq!(w("${EMPTY-def}"), "");
        assert_eq!(w("${A:+set}"), "set");
        assert_eq!(w("${B:+set}"), "");
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "alpha b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("a$"), "a$");
        assert!(
            word("${B:?needed}", &env, '\\')
                .unwrap_err()
                .to_string()
                .contains("needed")
        );
    }

    #[test]
    fn splits_words_but_not_values() {
        let ws = words("K=$SP L=\"a b\" M=c\\ d", &env, '\\').unwrap();
        assert_eq!(ws, vec!["K=x y", "L=a b", "M=c d"]);
        let ws = words("a `  b", &env, '`').unwrap();
        assert_eq!(ws, vec!["a", " ", "b"]);
    }
}
