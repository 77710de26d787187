//! `/proc/self/mountinfo` lines, parsed (mount point, file system type, options).

/// One mount as seen by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The directory of the file system mounted there (`/` for its root; octal escapes decoded).
    pub root: String,
    /// Where it is mounted (octal escapes decoded).
    pub mount_point: String,
    /// File system type (`cgroup`, `cgroup2`, `binfmt_misc`, …).
    pub fs_type: String,
    /// Per-mount options (`rw,relatime`).
    pub mount_options: Vec<String>,
    /// Super-block options (for cgroup v1: the controllers and `name=…`).
    pub super_options: Vec<String>,
}

/// Decodes the `\040`-style octal escapes of mountinfo fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    if fields.len() < 6 {
        return None;
    }
    let mut r = right.split(' ');
    let fs_type = r.next()?.to_string();
    let _source = r.next()?;
    let super_options = r.next().unwrap_or("");
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(Mount {
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        fs_type,
        mount_options: split(fields[5]),
        super_options: split(super_options),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let m = parse(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:5 - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
             99 1 0:1 / /mnt/a\\040b rw - tmpfs none rw\n\
             garbage\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(m[0].super_options, vec!["rw", "cpu", "cpuacct"]);
        assert_eq!(m[1].fs_type, "cgroup2");
        assert_eq!(m[2].mount_point, "/mnt/a b");
    }
}
