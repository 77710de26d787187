//! The per-run cpio (newc) appended to the guest's initrd: the command, environment, working
//! directory, user, hostname, extra modules and network interfaces, as files under `/xrun/` with exact bytes (see
//! `guest-init.sh` for the protocol), and the guest init itself. The kernel unpacks
//! concatenated archives in order: a later file replaces an earlier one.

/// What the guest init needs to start one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries, the command's whole environment.
    pub env: Vec<String>,
    /// Working directory (absolute), `None` for `/`.
    pub workdir: Option<String>,
    /// Numeric `uid:gid`, `None` for root.
    pub user: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Extra modules to load, dependencies first.
    pub modules: Vec<String>,
    /// The writable layer disk is attached.
    pub writable: bool,
    /// stdin comes from the stdin port.
    pub stdin: bool,
    /// `-t`: the command runs on `/dev/hvc0` of this size (rows, columns; 0: unknown).
    pub tty: Option<(u16, u16)>,
    /// The guest's network interfaces, in order (`eth0`, `eth1`, …): one `/xrun/net` line
    /// each.
    pub nics: Vec<NicConfig>,
    /// The container's `/etc/resolv.conf`, if given.
    pub resolv_conf: Option<String>,
    /// The container's `/etc/hosts`, if given.
    pub hosts: Option<String>,
    /// `--read-only`: the root is remounted read-only once set up.
    pub read_only: bool,
    /// `--tmpfs`: (options, path); options `None`: the defaults.
    pub tmpfs: Vec<(Option<String>, String)>,
    /// `-v`: (9p mount tag, read-only, path in the container).
    pub volumes: Vec<(String, bool, String)>,
    /// `--pids-limit`: `pids.max` of the container's cgroup in the guest.
    pub pids_limit: Option<i64>,
    /// Exec slots the guest serves (see `super::exec`).
    pub exec_slots: u32,
}

/// One guest network interface as the guest init configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    /// The MAC address (`aa:bb:cc:dd:ee:ff`, lower case) the interface is found by.
    pub mac: String,
    /// The IPv4 address.
    pub address: std::net::Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
    /// The gateway (the first one becomes the default route).
    pub gateway: Option<std::net::Ipv4Addr>,
    /// The MTU.
    pub mtu: u32,
}

impl NicConfig {
    /// The `/xrun/net` line: `MAC ADDR/PREFIX GATEWAY MTU` (`-` for no gateway).
    fn line(&self) -> String {
        let gw = self.gateway.map_or("-".to_string(), |g| g.to_string());
        format!(
            "{} {}/{} {gw} {}\n",
            self.mac, self.address, self.prefix, self.mtu
        )
    }
}

/// The guest init, shipped in every run's cpio as `/init` (replacing the base initrd's copy),
/// so the host and guest sides of the protocol always match.
pub const GUEST_INIT: &str = include_str!("guest-init.sh");

/// A newc cpio archive being written in memory.
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            namesize as u32,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, b"");
    }
    fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(name, 0o100644, data);
    }
}

/// The archive bytes (uncompressed newc, 4-byte aligned, with its trailer).
pub fn build(cfg: &RunConfig) -> Vec<u8> {
    let mut c = Cpio {
        buf: Vec::new(),
        ino: 0x00c0_0000,
    };
    c.dir("xrun");
    c.dir("xrun/argv");
    c.dir("xrun/env");
    for (i, a) in cfg.argv.iter().enumerate() {
        c.file(&format!("xrun/argv/{i:06}"), a.as_bytes());
    }
    for (i, e) in cfg.env.iter().enumerate() {
        c.file(&format!("xrun/env/{i:06}"), e.as_bytes());
    }
    if let Some(w) = &cfg.workdir {
        c.file("xrun/workdir", w.as_bytes());
    }
    if let Some(u) = &cfg.user {
        c.file("xrun/user", u.as_bytes());
    }
    if let Some(h) = &cfg.hostname {
        c.file("xrun/hostname", h.as_bytes());
    }
    if !cfg.modules.is_empty() {
        c.file("xrun/modules", (cfg.modules.join("\n") + "\n").as_bytes());
    }
    if cfg.writable {
        c.file("xrun/writable", b"1\n");
    }
    if cfg.stdin {
        c.file("xrun/stdin", b"1\n");
    }
    if let Some((rows, cols)) = cfg.tty {
        c.file("xrun/tty", format!("{rows} {cols}\n").as_bytes());
    }
    if !cfg.nics.is_empty() {
        let lines: String = cfg.nics.iter().map(NicConfig::line).collect();
        c.file("xrun/net", lines.as_bytes());
    }
    if let Some(r) = &cfg.resolv_conf {
        c.file("xrun/resolv.conf", r.as_bytes());
    }
    if let Some(h) = &cfg.hosts {
        c.file("xrun/hosts", h.as_bytes());
    }
    if cfg.read_only {
        c.file("xrun/readonly", b"1\n");
    }
    if !cfg.tmpfs.is_empty() {
        let lines: String = cfg
            .tmpfs
            .iter()
            .map(|(o, p)| format!("{} {p}\n", o.as_deref().unwrap_or("-")))
            .collect();
        c.file("xrun/tmpfs", lines.as_bytes());
    }
    if !cfg.volumes.is_empty() {
        let lines: String = cfg
            .volumes
            .iter()
            .map(|(t, ro, p)| format!("{t} {} {p}\n", if *ro { "ro" } else { "rw" }))
            .collect();
        c.file("xrun/volumes", lines.as_bytes());
    }
    if let Some(n) = cfg.pids_limit {
        let v = if n <= 0 {
            "max".to_string()
        } else {
            n.to_string()
        };
        c.file("xrun/pids", format!("{v}\n").as_bytes());
    }
    if cfg.exec_slots > 0 {
        c.file("xrun/execslots", format!("{}\n", cfg.exec_slots).as_bytes());
    }
    c.entry("init", 0o100755, GUEST_INIT.as_bytes());
    c.entry("TRAILER!!!", 0, b"");
    c.buf
}

/// One exec request (see `super::exec`): what the guest unpacks into the exec's run directory
/// (`argv/NNNNNN`, `env/NNNNNN`, `workdir`, `user`, `stdin`), the same layout stage 2 reads
/// for the command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// The whole environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory (absolute), `None` for `/`.
    pub workdir: Option<String>,
    /// Numeric `uid:gid`, `None` for root.
    pub user: Option<String>,
    /// stdin comes from the slot's `in` port (or the terminal, with `tty`).
    pub stdin: bool,
    /// `-t`: the process runs on the slot's virtio console of this size (rows, columns).
    pub tty: Option<(u16, u16)>,
}

/// The exec request's archive bytes (uncompressed newc, with its trailer).
pub fn build_exec(cfg: &ExecConfig) -> Vec<u8> {
    let mut c = Cpio {
        buf: Vec::new(),
        ino: 0x00e0_0000,
    };
    c.dir("argv");
    c.dir("env");
    for (i, a) in cfg.argv.iter().enumerate() {
        c.file(&format!("argv/{i:06}"), a.as_bytes());
    }
    for (i, e) in cfg.env.iter().enumerate() {
        c.file(&format!("env/{i:06}"), e.as_bytes());
    }
    if let Some(w) = &cfg.workdir {
        c.file("workdir", w.as_bytes());
    }
    if let Some(u) = &cfg.user {
        c.file("user", u.as_bytes());
    }
    if cfg.stdin {
        c.file("stdin", b"1\n");
    }
    if let Some((rows, cols)) = cfg.tty {
        c.file("tty", format!("{rows} {cols}\n").as_bytes());
    }
    c.entry("TRAILER!!!", 0, b"");
    c.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_aligned_and_keeps_exact_bytes() {
        let cfg = RunConfig {
            argv: vec!["sh".into(), "-c".into(), "echo 'a  b'\n\"q\"\n".into()],
            env: vec!["A=1\n2".into()],
            ..Default::default()
        };
        let b = build(&cfg);
        assert_eq!(b.len() % 4, 0);
        assert!(b.starts_with(b"070701"));
        let needle = b"echo 'a  b'\n\"q\"\n";
        assert!(b.windows(needle.len()).any(|w| w == needle));
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
        let no_net = b"xrun/net\0";
        assert!(!b.windows(no_net.len()).any(|w| w == no_net));
    }

    #[test]
    fn mounts_limits_and_exec_requests() {
        let cfg = RunConfig {
            argv: vec!["true".into()],
            read_only: true,
            tmpfs: vec![
                (None, "/run".into()),
                (Some("size=8m".into()), "/a b".into()),
            ],
            volumes: vec![("xrunv0".into(), true, "/in".into())],
            pids_limit: Some(0),
            exec_slots: 4,
            ..Default::default()
        };
        let b = build(&cfg);
        let has = |b: &[u8], s: &[u8]| b.windows(s.len()).any(|w| w == s);
        assert!(has(&b, b"xrun/readonly\0"));
        assert!(has(&b, b"- /run\nsize=8m /a b\n"));
        assert!(has(&b, b"xrunv0 ro /in\n"));
        assert!(has(&b, b"xrun/pids\0") && has(&b, b"max\n"));
        assert!(has(&b, b"xrun/execslots\0"));
        let e = build_exec(&ExecConfig {
            argv: vec!["sh".into(), "-c".into(), "echo 'x y'\n".into()],
            env: vec!["A=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("65534:65534".into()),
            stdin: true,
            tty: Some((24, 80)),
        });
        assert_eq!(e.len() % 4, 0);
        for s in [
            &b"argv/000002\0"[..],
            b"echo 'x y'\n",
            b"env/000000\0",
            b"workdir\0",
            b"65534:65534",
            b"stdin\0",
            b"24 80\n",
            b"TRAILER!!!",
        ] {
            assert!(has(&e, s), "{}", String::from_utf8_lossy(s));
        }
        assert!(!has(&e, b"init\0"));
    }

    #[test]
    fn network_lines_and_files() {
        let cfg = RunConfig {
            argv: vec!["true".into()],
            nics: vec![
                NicConfig {
                    mac: "02:42:0a:62:01:02".into(),
                    address: "10.98.1.2".parse().unwrap(),
                    prefix: 24,
                    gateway: Some("10.98.1.1".parse().unwrap()),
                    mtu: 1500,
                },
                NicConfig {
                    mac: "02:42:0a:63:01:02".into(),
                    address: "10.99.1.2".parse().unwrap(),
                    prefix: 16,
                    gateway: None,
                    mtu: 1400,
                },
            ],
            resolv_conf: Some("nameserver 10.98.1.1\n".into()),
            hosts: Some("127.0.0.1 localhost\n".into()),
            ..Default::default()
        };
        let b = build(&cfg);
        let has = |s: &[u8]| b.windows(s.len()).any(|w| w == s);
        assert!(has(
            b"02:42:0a:62:01:02 10.98.1.2/24 10.98.1.1 1500\n02:42:0a:63:01:02 10.99.1.2/16 - 1400\n"
        ));
        assert!(has(b"xrun/resolv.conf\0") && has(b"nameserver 10.98.1.1\n"));
        assert!(has(b"xrun/hosts\0") && has(b"127.0.0.1 localhost\n"));
    }
}
