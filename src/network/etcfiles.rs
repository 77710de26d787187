//! The container's `/etc/hosts` and `/etc/resolv.conf` on a network, as Docker writes them.

use std::net::Ipv4Addr;

/// `/etc/hosts`: the localhost lines, `--add-host` entries, then the container's address
/// with its hostname and aliases.
pub fn hosts(
    hostname: &str,
    ip: Option<Ipv4Addr>,
    aliases: &[String],
    extra: &[(String, Ipv4Addr)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (h, a) in extra {
        s.push_str(&format!("{a}\t{h}\n"));
    }
    match ip {
        Some(ip) => {
            let mut names = vec![hostname.to_string()];
            names.extend(aliases.iter().filter(|a| *a != hostname).cloned());
            s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        None => s.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    s
}

/// The host's resolver settings without loopback nameservers (as Docker's default bridge:
/// a 127.x server of the host is unreachable from the container).
pub fn host_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut ns, mut search, mut opts) = (vec![], vec![], vec![]);
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                if let Some(a) = w.next()
                    && a.parse::<Ipv4Addr>().is_ok_and(|a| !a.is_loopback())
                {
                    ns.push(a.to_string());
                }
            }
            Some("search") => search = w.map(String::from).collect(),
            Some("options") => opts.extend(w.map(String::from)),
            _ => {}
        }
    }
    (ns, search, opts)
}

/// `/etc/resolv.conf` from servers, search domains and options.
pub fn resolv(servers: &[String], search: &[String], options: &[String]) -> String {
    let mut s = String::new();
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    for n in servers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files() {
        let h = hosts(
            "web",
            Some("10.87.0.2".parse().unwrap()),
            &["www".into()],
            &[("db".into(), "10.0.0.9".parse().unwrap())],
        );
        assert!(
            h.contains("10.0.0.9\tdb\n") && h.ends_with("10.87.0.2\tweb www\n"),
            "{h}"
        );
        let (ns, search, _) =
            host_resolv("nameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch a b\n");
        assert_eq!(ns, vec!["10.1.1.1"]);
        assert_eq!(
            resolv(&ns, &search, &["ndots:2".into()]),
            "search a b\nnameserver 10.1.1.1\noptions ndots:2\n"
        );
    }
}
