//! What to do, added to an error line whose cause the user can fix on the host (the last
//! system error in the line says which).

/// The advice for an error line, if its system error is one the user can act on.
pub fn for_line(line: &str) -> Option<&'static str> {
    let code: i32 = line
        .rsplit("(os error ")
        .next()
        .filter(|_| line.contains("(os error "))?
        .split(')')
        .next()?
        .parse()
        .ok()?;
    match nix::errno::Errno::from_raw(code) {
        nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT => Some(
            "free space on that file system (`xrun system prune`, `xrun image prune -a`, \
             `xrun builder prune`) or give xrun a store on a larger one (--root)",
        ),
        _ => None,
    }
}

/// `line`, with its advice appended when there is one.
pub fn with_hint(line: String) -> String {
    match for_line(&line) {
        // The runtime's own advice for a full run directory already says what to do.
        Some(h) if !line.contains(h) && !line.contains("; the file system is full") => {
            format!("{line}; {h}")
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_gets_advice_others_do_not() {
        let l = "/r/ingest/x: No space left on device (os error 28)".to_string();
        assert!(with_hint(l).contains("xrun system prune"));
        let l = "quota: Disk quota exceeded (os error 122)".to_string();
        assert!(for_line(&l).is_some());
        assert_eq!(for_line("no such container: x"), None);
        assert_eq!(for_line("x: Permission denied (os error 13)"), None);
        assert_eq!(for_line("x (os error banana)"), None);
    }
}
