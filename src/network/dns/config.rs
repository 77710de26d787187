//! One network's file in aardvark-dns's config directory (the format of aardvark-dns 1.4,
//! its `config.md`): the file is named after the network; its first line is the
//! comma-separated addresses the server listens on for that network (the gateway); every
//! further line is one container:
//!
//! ```text
//! 10.90.1.1
//! <container id> <IPv4s,> <IPv6s,> <names,>[ <upstream servers,>]
//! ```
//!
//! Fields are separated by one space, lists by commas; an empty IPv6 list is an empty field
//! (two spaces in a row). The optional last field lists where names the server does not know
//! are forwarded for that container's queries; without it the server uses the host's
//! `/etc/resolv.conf`. xrun is IPv4 only: it never writes IPv6 addresses.

use std::net::{IpAddr, Ipv4Addr};

/// One container's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The container's id.
    pub id: String,
    /// Its addresses on the network.
    pub ipv4: Vec<Ipv4Addr>,
    /// The names it answers to (name, aliases, short id).
    pub names: Vec<String>,
    /// Where its queries for names the server does not know go (empty: the host's resolvers).
    pub upstream: Vec<IpAddr>,
}

/// A network's whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct NetworkFile {
    /// The addresses the server listens on for this network (its gateway).
    pub listen: Vec<Ipv4Addr>,
    /// One entry per container.
    pub entries: Vec<Entry>,
}

impl NetworkFile {
    /// Parses a file's text. Lines that do not parse are dropped (with a warning): only xrun
    /// writes these files, and aardvark-dns refuses to serve anything while one of its files
    /// has a bad line, so keeping it would take every network's names down.
    pub fn parse(text: &str) -> NetworkFile {
        let mut lines = text.lines().filter(|l| !l.is_empty());
        let listen = lines
            .next()
            .and_then(|first| first.split(' ').next())
            .map(|ips| ips.split(',').filter_map(|ip| ip.parse().ok()).collect())
            .unwrap_or_default();
        let entries = lines
            .filter_map(|line| {
                let entry = Entry::parse(line);
                if entry.is_none() {
                    tracing::warn!("dropping a malformed aardvark-dns config line: {line:?}");
                }
                entry
            })
            .collect();
        NetworkFile { listen, entries }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = join(&self.listen);
        out.push('\n');
        for e in &self.entries {
            out.push_str(&e.render());
            out.push('\n');
        }
        out
    }

    /// Puts `entry` in place of the container's current one (or at the end).
    pub fn upsert(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.id == entry.id) {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
    }

    /// Drops the container's entry; true when there was one.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.entries.len() != before
    }
}

impl Entry {
    fn parse(line: &str) -> Option<Entry> {
        let fields: Vec<&str> = line.split(' ').collect();
        if !(4..=5).contains(&fields.len()) || fields[0].is_empty() || fields[3].is_empty() {
            return None;
        }
        let ipv4 = parse_list(fields[1])?;
        let upstream = parse_list(fields.get(4).copied().unwrap_or(""))?;
        Some(Entry {
            id: fields[0].to_string(),
            ipv4,
            names: fields[3].split(',').map(str::to_string).collect(),
            upstream,
        })
    }

    fn render(&self) -> String {
        let mut line = format!("{} {}  {}", self.id, join(&self.ipv4), self.names.join(","));
        if !self.upstream.is_empty() {
            line.push(' ');
            line.push_str(&join(&self.upstream));
        }
        line
    }
}

fn parse_list<T: std::str::FromStr>(field: &str) -> Option<Vec<T>> {
    if field.is_empty() {
        return Some(Vec::new());
    }
    field.split(',').map(|s| s.parse().ok()).collect()
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, ip: [u8; 4], names: &[&str], upstream: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            ipv4: vec![Ipv4Addr::from(ip)],
            names: names.iter().map(|s| s.to_string()).collect(),
            upstream: upstream.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn renders_aardvark_format() {
        let file = NetworkFile {
            listen: vec![Ipv4Addr::new(10, 90, 1, 1)],
            entries: vec![
                entry("aaa", [10, 90, 1, 2], &["web", "www", "aaa"], &[]),
                entry(
                    "bbb",
                    [10, 90, 1, 3],
                    &["db"],
                    &["192.0.2.53", "192.0.2.54"],
                ),
            ],
        };
        assert_eq!(
            file.render(),
            "10.90.1.1\naaa 10.90.1.2  web,www,aaa\nbbb 10.90.1.3  db 192.0.2.53,192.0.2.54\n"
        );
        assert_eq!(NetworkFile::parse(&file.render()), file);
    }

    #[test]
    fn upsert_replaces_and_remove_drops() {
        let mut file = NetworkFile::parse("10.90.1.1\naaa 10.90.1.2  web\n");
        file.upsert(entry("aaa", [10, 90, 1, 9], &["web2"], &[]));
        file.upsert(entry("bbb", [10, 90, 1, 3], &["db"], &[]));
        assert_eq!(file.entries.len(), 2);
        assert_eq!(file.entries[0].ipv4, vec![Ipv4Addr::new(10, 90, 1, 9)]);
        assert!(file.remove("aaa"));
        assert!(!file.remove("aaa"));
        assert_eq!(file.render(), "10.90.1.1\nbbb 10.90.1.3  db\n");
    }

    #[test]
    fn malformed_lines_are_dropped() {
        let file = NetworkFile::parse(
            "10.90.1.1 192.0.2.1\nshort line\nccc notanip  x\nddd 10.90.1.4 fd00::4 d\n",
        );
        assert_eq!(file.listen, vec![Ipv4Addr::new(10, 90, 1, 1)]);
        assert_eq!(file.entries.len(), 1);
        assert_eq!(file.entries[0].id, "ddd");
        // The IPv6 column is not kept (xrun is IPv4 only).
        assert_eq!(file.render(), "10.90.1.1\nddd 10.90.1.4  d\n");
    }
}
