//! Randomized extraction (issue 10): random sequences of tar entries over 1–3 layers are
//! extracted into a root inside a sandbox full of sentinels, and
//! (a) nothing outside the root changes (type, content, mode, owner, mtime, xattrs, link
//!     targets of everything in the sandbox but the root, and the sandbox itself);
//! (b) the result matches [`Model`], a small in-memory statement of what the layers mean
//!     (Apply: the merged tree; Overlay: each layer's own tree with whiteouts and opaque
//!     markers), or both refuse the layers with the same kind of error (escape or other).
//!
//! Cases: `PROPTEST_CASES` (default [`DEFAULT_CASES`], about 20 s in a debug build here).
//! Long runs: `PROPTEST_CASES=200000 cargo test --lib extract_props -- --nocapture` (prints
//! how many layers were compared and refused; `XRUN_PROPS_DEBUG=1` prints each refusal).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::digest::Digest;
use crate::store::StoreError;
use crate::store::extract::{Mode, extract_with, is_opaque, is_whiteout};
use crate::store::safepath::Resolver;

/// Cases run by `cargo test` when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 1000;

const LONG: &str = "long-name-over-one-hundred-bytes-long-name-over-one-hundred-bytes-long-name-over-one-hundred-bytes-x";
const NAME_MAX: usize = 255;
/// Stands for the sandbox's absolute path in generated link targets.
const SANDBOX: &str = "@SANDBOX@";

// ---------------------------------------------------------------------------------------
// Generation

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Hard(String),
    Fifo,
    /// A character device 1/3 (like `/dev/null`; 0/0 would be a whiteout).
    CharDev,
}

#[derive(Debug, Clone, Copy)]
enum Enc {
    /// Names in the header itself (≤ 100 bytes).
    Plain,
    /// GNU long name / long link entries.
    Gnu,
    /// PAX `path` / `linkpath` records overriding a dummy header name.
    Pax,
}

#[derive(Debug, Clone)]
struct GenEntry {
    path: String,
    kind: Kind,
    mode: u32,
    mtime: u64,
    uid: u64,
    enc: Enc,
    xattr: bool,
}

/// A parent component (never a file name below, so most paths resolve).
fn comp() -> impl Strategy<Value = String> {
    prop_oneof![
        100 => Just("a".to_string()),
        100 => Just("b".to_string()),
        24 => Just(LONG.to_string()),
        12 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just("v".repeat(NAME_MAX + 3)),
    ]
}

/// A plain last component: the parents' names (to replace directories) or leaf names.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("a".to_string()),
        2 => Just("b".to_string()),
        3 => Just("c".to_string()),
        3 => Just("d".to_string()),
        1 => Just(LONG.to_string()),
        1 => Just(".".to_string()),
    ]
}

fn last_comp() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => leaf(),
        3 => Just(".wh.a".to_string()),
        3 => Just(".wh.c".to_string()),
        1 => Just(format!(".wh.{LONG}")),
        3 => Just(".wh..wh..opq".to_string()),
        1 => Just(".wh..wh.plnk".to_string()),
    ]
}

fn entry_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(comp(), 0..3),
        last_comp(),
        prop_oneof![600 => Just(""), 1 => Just("/"), 1 => Just(".wh.."), 1 => Just(".wh.")],
    )
        .prop_map(|(parents, last, odd)| {
            // Rarely: an absolute path, or a whiteout of an invalid name.
            let last = if odd.starts_with(".wh") {
                odd.to_string()
            } else {
                last
            };
            let mut p = odd.strip_prefix(".wh").map_or(odd, |_| "").to_string();
            for c in parents {
                p.push_str(&c);
                p.push('/');
            }
            p.push_str(&last);
            p
        })
}

fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => prop::collection::vec(comp(), 1..4).prop_map(|v| v.join("/")),
        3 => prop::collection::vec(comp(), 1..3).prop_map(|v| format!("../{}", v.join("/"))),
        3 => prop::collection::vec(comp(), 1..4).prop_map(|v| format!("/{}", v.join("/"))),
        1 => Just("../victim".to_string()),
        1 => Just("../../../../../../../..".to_string()),
        1 => Just(format!("{SANDBOX}/outside")),
        1 => Just(format!("{SANDBOX}/victim")),
        1 => Just(SANDBOX.to_string()),
        1 => Just("/".to_string()),
        1 => Just(".".to_string()),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        5 => Just(Kind::Dir),
        5 => prop_oneof![Just(b"".to_vec()), Just(b"one".to_vec()), Just(b"two\n".to_vec())]
            .prop_map(Kind::File),
        5 => link_target().prop_map(Kind::Symlink),
        3 => prop_oneof![
            4 => leaf(),
            2 => (comp(), leaf()).prop_map(|(p, l)| format!("{p}/{l}")),
            1 => entry_path(),
            1 => link_target(),
        ]
        .prop_map(Kind::Hard),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::CharDev),
    ]
}

fn gen_entry() -> impl Strategy<Value = GenEntry> {
    (
        entry_path(),
        kind(),
        prop::sample::select(vec![
            0o644, 0o755, 0o4755, 0o6777, 0o1777, 0o600, 0o700, 0o555,
        ]),
        prop::sample::select(vec![0u64, 1_000_000_000, 1_600_000_000]),
        prop::sample::select(vec![0u64, 1000, 65534, u32::MAX as u64]),
        prop_oneof![Just(Enc::Plain), Just(Enc::Gnu), Just(Enc::Pax)],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(path, kind, mode, mtime, uid, enc, xattr)| GenEntry {
            path,
            kind,
            mode,
            mtime,
            uid,
            enc,
            xattr,
        })
}

fn layers() -> impl Strategy<Value = Vec<Vec<GenEntry>>> {
    prop::collection::vec(prop::collection::vec(gen_entry(), 0..12), 1..=3)
}

// ---------------------------------------------------------------------------------------
// Tar writing

fn header(kind: tar::EntryType, name: &[u8], size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    let n = &mut h.as_old_mut().name;
    let len = name.len().min(100);
    n[..len].copy_from_slice(&name[..len]);
    h
}

fn append(b: &mut tar::Builder<Vec<u8>>, mut h: tar::Header, data: &[u8]) {
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn pax_body(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = 1 + k.len() + 1 + v.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        write!(body, "{len} {k}=").unwrap();
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    body
}

fn layer_tar(entries: &[GenEntry], sandbox: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let path = e.path.as_bytes();
        let (kind, data, link): (tar::EntryType, &[u8], Option<String>) = match &e.kind {
            Kind::Dir => (tar::EntryType::Directory, b"", None),
            Kind::File(c) => (tar::EntryType::Regular, c, None),
            Kind::Symlink(t) => (
                tar::EntryType::Symlink,
                b"",
                Some(t.replace(SANDBOX, sandbox)),
            ),
            Kind::Hard(t) => (tar::EntryType::Link, b"", Some(t.replace(SANDBOX, sandbox))),
            Kind::Fifo => (tar::EntryType::Fifo, b"", None),
            Kind::CharDev => (tar::EntryType::Char, b"", None),
        };
        let mut path = path.to_vec();
        if matches!(e.kind, Kind::Dir) && !path.ends_with(b"/") {
            path.push(b'/');
        }
        let link = link.map(String::into_bytes);
        let fits = path.len() <= 100 && link.as_ref().is_none_or(|l| l.len() <= 100);
        let enc = if matches!(e.enc, Enc::Plain) && !fits {
            Enc::Gnu
        } else {
            e.enc
        };
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        if e.xattr {
            pax.push(("SCHILY.xattr.user.prop", b"v".to_vec()));
        }
        let mut name: &[u8] = &path;
        let mut link_field: Option<&[u8]> = link.as_deref();
        match enc {
            Enc::Plain => {}
            Enc::Gnu => {
                if path.len() > 100 {
                    let mut d = path.clone();
                    d.push(0);
                    append(
                        &mut b,
                        header(
                            tar::EntryType::GNULongName,
                            b"././@LongLink",
                            d.len() as u64,
                        ),
                        &d,
                    );
                }
                if let Some(l) = &link
                    && l.len() > 100
                {
                    let mut d = l.clone();
                    d.push(0);
                    append(
                        &mut b,
                        header(
                            tar::EntryType::GNULongLink,
                            b"././@LongLink",
                            d.len() as u64,
                        ),
                        &d,
                    );
                }
            }
            Enc::Pax => {
                pax.push(("path", path.clone()));
                name = b"pax-dummy-name";
                if let Some(l) = &link {
                    pax.push(("linkpath", l.clone()));
                    link_field = Some(b"pax-dummy-link");
                }
            }
        }
        if !pax.is_empty() {
            let recs: Vec<(&str, &[u8])> = pax.iter().map(|(k, v)| (*k, &v[..])).collect();
            let body = pax_body(&recs);
            append(
                &mut b,
                header(tar::EntryType::XHeader, b"PaxHeader", body.len() as u64),
                &body,
            );
        }
        let mut h = header(kind, name, data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(e.mtime);
        h.set_uid(e.uid);
        h.set_gid(e.uid);
        if matches!(e.kind, Kind::CharDev) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        if let Some(l) = link_field {
            let f = &mut h.as_old_mut().linkname;
            let len = l.len().min(100);
            f[..len].copy_from_slice(&l[..len]);
        }
        append(&mut b, h, data);
    }
    b.into_inner().unwrap()
}

// ---------------------------------------------------------------------------------------
// The model

type Name = Vec<u8>;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir {
        children: BTreeMap<Name, Node>,
        /// Set by a directory entry of the layer that made or met it (else 0755, not compared).
        mode: Option<u32>,
        opaque: bool,
    },
    File {
        content: Vec<u8>,
        mode: u32,
    },
    Symlink(Vec<u8>),
    Fifo {
        mode: u32,
    },
    CharDev {
        mode: u32,
    },
    Whiteout,
}

fn empty_dir() -> Node {
    Node::Dir {
        children: BTreeMap::new(),
        mode: None,
        opaque: false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Escape,
    Other,
}

enum Res {
    NotFound,
    NotDir,
    Fail(Fail),
}

struct Model {
    root: Node,
}

/// One layer's state in the model (what the extractor keeps per layer).
struct LayerState {
    mode: Mode,
    written: HashSet<Vec<Name>>,
    dirs: Vec<(Vec<Name>, u32)>,
}

fn split_target(t: &[u8]) -> (bool, Vec<Name>) {
    let abs = t.first() == Some(&b'/');
    let comps = t
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| c.to_vec())
        .collect();
    (abs, comps)
}

/// Entry path → components; `Err(Escape)` for absolute paths and `..`.
fn clean(raw: &[u8]) -> Result<Vec<Name>, Fail> {
    if raw.first() == Some(&b'/') {
        return Err(Fail::Escape);
    }
    let mut out = Vec::new();
    for c in raw.split(|&c| c == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Fail::Escape),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

impl Model {
    fn get(&self, path: &[Name]) -> Option<&Node> {
        let mut n = &self.root;
        for c in path {
            match n {
                Node::Dir { children, .. } => n = children.get(c)?,
                _ => return None,
            }
        }
        Some(n)
    }

    fn dir_mut(&mut self, path: &[Name]) -> &mut BTreeMap<Name, Node> {
        let mut n = &mut self.root;
        for c in path {
            match n {
                Node::Dir { children, .. } => n = children.get_mut(c).expect("model: dir exists"),
                _ => panic!("model: not a dir"),
            }
        }
        match n {
            Node::Dir { children, .. } => children,
            _ => panic!("model: not a dir"),
        }
    }

    fn resolve(&mut self, comps: &[Name], create: bool) -> Result<Vec<Name>, Res> {
        let mut pending: std::collections::VecDeque<Name> = comps.iter().cloned().collect();
        let mut cur: Vec<Name> = Vec::new();
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c == b".." {
                if cur.pop().is_none() {
                    return Err(Res::Fail(Fail::Escape));
                }
                continue;
            }
            if c.len() > NAME_MAX {
                return Err(Res::Fail(Fail::Other));
            }
            let mut p = cur.clone();
            p.push(c.clone());
            match self.get(&p) {
                Some(Node::Dir { .. }) => cur.push(c),
                Some(Node::Symlink(t)) => {
                    links += 1;
                    if links > 40 {
                        return Err(Res::Fail(Fail::Escape));
                    }
                    let (abs, tc) = split_target(&t.clone());
                    if abs {
                        cur.clear();
                    }
                    for n in tc.into_iter().rev() {
                        pending.push_front(n);
                    }
                }
                Some(_) => return Err(Res::NotDir),
                None => {
                    if !create {
                        return Err(Res::NotFound);
                    }
                    self.dir_mut(&cur).insert(c.clone(), empty_dir());
                    cur.push(c);
                }
            }
        }
        Ok(cur)
    }

    fn remove(&mut self, st: &mut LayerState, dir: &[Name], name: &[u8]) -> Result<(), Fail> {
        if name.len() > NAME_MAX {
            return Err(Fail::Other);
        }
        if let Some(Node::Dir { .. }) = self.dir_mut(dir).remove(name) {
            let mut gone = dir.to_vec();
            gone.push(name.to_vec());
            st.dirs.retain(|(p, _)| !p.starts_with(&gone));
        }
        Ok(())
    }

    fn put(&mut self, dir: &[Name], name: &[u8], node: Node) {
        self.dir_mut(dir).insert(name.to_vec(), node);
    }

    fn layer(&mut self, entries: &[GenEntry], mode: Mode, sandbox: &str) -> Result<(), Fail> {
        let mut st = LayerState {
            mode,
            written: HashSet::new(),
            dirs: Vec::new(),
        };
        for e in entries {
            self.entry(&mut st, e, sandbox)?;
        }
        let mut dirs = std::mem::take(&mut st.dirs);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for (p, m) in dirs {
            let mut n = &mut self.root;
            for c in &p {
                match n {
                    Node::Dir { children, .. } => n = children.get_mut(c).unwrap(),
                    _ => unreachable!(),
                }
            }
            match n {
                Node::Dir { mode, .. } => *mode = Some(m & 0o7777),
                _ => panic!("model: recorded dir is not a dir"),
            }
        }
        Ok(())
    }

    fn entry(&mut self, st: &mut LayerState, e: &GenEntry, sandbox: &str) -> Result<(), Fail> {
        let comps = clean(e.path.as_bytes())?;
        let Some((name, parents)) = comps.split_last() else {
            if matches!(e.kind, Kind::Dir) {
                st.dirs.push((Vec::new(), e.mode));
            }
            return Ok(());
        };
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return self.whiteout(st, parents, name, hidden);
        }
        let parent = self.resolve(parents, true).map_err(res_fail)?;
        let mut path = parent.clone();
        path.push(name.clone());
        match &e.kind {
            Kind::Dir => {
                if name.len() > NAME_MAX {
                    return Err(Fail::Other);
                }
                if !matches!(self.get(&path), Some(Node::Dir { .. })) {
                    self.remove(st, &parent, name)?;
                    self.put(&parent, name, empty_dir());
                }
                st.dirs.push((path.clone(), e.mode));
            }
            Kind::File(c) => {
                self.remove(st, &parent, name)?;
                self.put(
                    &parent,
                    name,
                    Node::File {
                        content: c.clone(),
                        mode: e.mode & 0o7777,
                    },
                );
            }
            Kind::Fifo => {
                self.remove(st, &parent, name)?;
                self.put(
                    &parent,
                    name,
                    Node::Fifo {
                        mode: e.mode & 0o7777,
                    },
                );
            }
            Kind::CharDev => {
                self.remove(st, &parent, name)?;
                self.put(
                    &parent,
                    name,
                    Node::CharDev {
                        mode: e.mode & 0o7777,
                    },
                );
            }
            Kind::Symlink(t) => {
                self.remove(st, &parent, name)?;
                let t = t.replace(SANDBOX, sandbox).into_bytes();
                self.put(&parent, name, Node::Symlink(t));
            }
            Kind::Hard(t) => {
                let t = t.replace(SANDBOX, sandbox);
                let tcomps = clean(t.as_bytes())?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(Fail::Escape);
                };
                let tdir = match self.resolve(tparents, false) {
                    Ok(d) => d,
                    Err(r) => return Err(res_fail(r)),
                };
                if tdir == parent && tname == name {
                    return Ok(());
                }
                if tname.len() > NAME_MAX {
                    return Err(Fail::Other);
                }
                let mut tpath = tdir.clone();
                tpath.push(tname.clone());
                if self.get(&tpath).is_none() {
                    return Err(Fail::Other);
                }
                self.remove(st, &parent, name)?;
                match self.get(&tpath) {
                    None | Some(Node::Dir { .. }) => return Err(Fail::Other),
                    Some(n) => {
                        let n = n.clone();
                        self.put(&parent, name, n);
                    }
                }
            }
        }
        if st.mode == Mode::Apply {
            let mut p = path;
            while st.written.insert(p.clone()) && p.pop().is_some() {}
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        st: &mut LayerState,
        parents: &[Name],
        name: &[u8],
        hidden: &[u8],
    ) -> Result<(), Fail> {
        if name == b".wh..wh..opq" {
            let dir = self.resolve(parents, true).map_err(res_fail)?;
            match st.mode {
                Mode::Overlay => {
                    let mut n = &mut self.root;
                    for c in &dir {
                        match n {
                            Node::Dir { children, .. } => n = children.get_mut(c).unwrap(),
                            _ => unreachable!(),
                        }
                    }
                    if let Node::Dir { opaque, .. } = n {
                        *opaque = true;
                    }
                }
                Mode::Apply => {
                    let names: Vec<Name> = self.dir_mut(&dir).keys().cloned().collect();
                    for n in names {
                        let mut p = dir.clone();
                        p.push(n.clone());
                        if !st.written.contains(&p) {
                            self.remove(st, &dir, &n)?;
                        }
                    }
                }
            }
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(Fail::Escape);
        }
        match st.mode {
            Mode::Overlay => {
                let dir = self.resolve(parents, true).map_err(res_fail)?;
                self.remove(st, &dir, hidden)?;
                self.put(&dir, hidden, Node::Whiteout);
                Ok(())
            }
            Mode::Apply => match self.resolve(parents, false) {
                Ok(dir) => self.remove(st, &dir, hidden),
                Err(Res::NotFound) | Err(Res::NotDir) => Ok(()),
                Err(Res::Fail(f)) => Err(f),
            },
        }
    }
}

fn res_fail(r: Res) -> Fail {
    match r {
        Res::Fail(f) => f,
        Res::NotFound | Res::NotDir => Fail::Other,
    }
}

// ---------------------------------------------------------------------------------------
// Reading the result back, and the sandbox

fn read_tree(p: &Path) -> Node {
    let m = fs::symlink_metadata(p).unwrap();
    let ft = m.file_type();
    if ft.is_dir() {
        let mut children = BTreeMap::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            children.insert(e.file_name().as_bytes().to_vec(), read_tree(&e.path()));
        }
        Node::Dir {
            children,
            mode: Some(m.mode() & 0o7777),
            opaque: is_opaque(p),
        }
    } else if ft.is_symlink() {
        Node::Symlink(fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec())
    } else if ft.is_fifo() {
        Node::Fifo {
            mode: m.mode() & 0o7777,
        }
    } else if ft.is_char_device() && m.rdev() != 0 {
        Node::CharDev {
            mode: m.mode() & 0o7777,
        }
    } else if is_whiteout(p) {
        Node::Whiteout
    } else if ft.is_file() {
        Node::File {
            content: fs::read(p).unwrap(),
            mode: m.mode() & 0o7777,
        }
    } else {
        panic!("{}: unexpected file type", p.display())
    }
}

/// Compares the extracted tree with the model; directory modes only where the model sets one.
fn compare(model: &Node, actual: &Node, at: &str) -> Result<(), String> {
    match (model, actual) {
        (
            Node::Dir {
                children: mc,
                mode: mm,
                opaque: mo,
            },
            Node::Dir {
                children: ac,
                mode: am,
                opaque: ao,
            },
        ) => {
            if mm.is_some() && mm != am {
                let o = |m: &Option<u32>| m.map(|m| format!("{m:o}"));
                return Err(format!(
                    "{at}: dir mode {:?} expected, got {:?}",
                    o(mm),
                    o(am)
                ));
            }
            if mo != ao {
                return Err(format!("{at}: opaque {mo} expected, got {ao}"));
            }
            let mk: Vec<_> = mc.keys().collect();
            let ak: Vec<_> = ac.keys().collect();
            if mk != ak {
                let show = |v: &[&Name]| {
                    v.iter()
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .collect::<Vec<_>>()
                };
                return Err(format!(
                    "{at}: entries {:?} expected, got {:?}",
                    show(&mk),
                    show(&ak)
                ));
            }
            for (k, m) in mc {
                compare(m, &ac[k], &format!("{at}/{}", String::from_utf8_lossy(k)))?;
            }
            Ok(())
        }
        (m, a) if m == a => Ok(()),
        (m, a) => Err(format!("{at}: {m:?} expected, got {a:?}")),
    }
}

/// Everything about one path outside the root.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn seen(p: &Path) -> Seen {
    let m = fs::symlink_metadata(p).unwrap();
    let mut xattrs: Vec<(Vec<u8>, Option<Vec<u8>>)> = xattr::list(p)
        .unwrap()
        .map(|n| {
            let v = xattr::get(p, &n).unwrap();
            (n.as_bytes().to_vec(), v)
        })
        .collect();
    xattrs.sort();
    Seen {
        kind: m.mode() & libc::S_IFMT,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        content: m.is_file().then(|| fs::read(p).unwrap()),
        link: m
            .file_type()
            .is_symlink()
            .then(|| fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec()),
        xattrs,
    }
}

/// The sandbox minus the root: path → what it looks like.
fn outside(sandbox: &Path, root: &Path) -> BTreeMap<Vec<u8>, Seen> {
    fn walk(p: &Path, root: &Path, out: &mut BTreeMap<Vec<u8>, Seen>) {
        if p == root {
            return;
        }
        let s = seen(p);
        let is_dir = s.kind == libc::S_IFDIR;
        out.insert(p.as_os_str().as_bytes().to_vec(), s);
        if is_dir {
            for e in fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), root, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(sandbox, root, &mut out);
    // The sandbox's parent: its mode and owner (its mtime belongs to other tests).
    let parent = sandbox.parent().unwrap();
    let m = fs::symlink_metadata(parent).unwrap();
    out.insert(
        b"<parent>".to_vec(),
        Seen {
            kind: 0,
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            mtime: (0, 0),
            content: None,
            link: None,
            xattrs: Vec::new(),
        },
    );
    out
}

fn make_sandbox() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let t = tempfile::tempdir().unwrap();
    let s = t.path();
    let root = s.join("root");
    fs::create_dir(&root).unwrap();
    fs::write(s.join("victim"), b"secret").unwrap();
    fs::set_permissions(s.join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(s.join("outside/d")).unwrap();
    fs::set_permissions(s.join("outside"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(s.join("outside/f"), b"sentinel").unwrap();
    symlink("../victim", s.join("outside/l")).unwrap();
    symlink("root", s.join("sibling-link")).unwrap();
    fs::write(s.join("a"), b"a sibling named like an entry").unwrap();
    (t, root)
}

// ---------------------------------------------------------------------------------------
// The property

/// Outcome counts over a run (so a run that only ever compares empty trees shows).
static OUTCOMES: [std::sync::atomic::AtomicU64; 4] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

fn count(i: usize, n: u64) {
    OUTCOMES[i].fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

fn nodes(n: &Node) -> u64 {
    match n {
        Node::Dir { children, .. } => 1 + children.values().map(nodes).sum::<u64>(),
        _ => 1,
    }
}

fn fail_kind(e: &StoreError) -> Fail {
    match e {
        StoreError::PathEscape { .. } => Fail::Escape,
        _ => Fail::Other,
    }
}

fn check(layers: &[Vec<GenEntry>], apply: bool, walk: bool) -> Result<(), TestCaseError> {
    let (guard, root) = make_sandbox();
    let sandbox = guard.path();
    let sandbox_str = sandbox.to_str().unwrap();
    let mode = if apply { Mode::Apply } else { Mode::Overlay };
    let resolver = if walk { Resolver::Walk } else { Resolver::Auto };
    let before = outside(sandbox, &root);
    let mut model = Model { root: empty_dir() };
    for (i, entries) in layers.iter().enumerate() {
        let tar = layer_tar(entries, sandbox_str);
        let dest = match mode {
            Mode::Apply => root.clone(),
            Mode::Overlay => {
                let d = root.join(format!("layer{i}"));
                fs::create_dir(&d).unwrap();
                model = Model { root: empty_dir() };
                d
            }
        };
        // The digest only names the layer in messages: not hashed (debug-build sha256 is slow).
        let got = extract_with(&tar[..], &dest, &layer_name(), mode, resolver);
        let want = model.layer(entries, mode, sandbox_str);
        let after = outside(sandbox, &root);
        if after != before {
            let mut diff = Vec::new();
            for k in before.keys().chain(after.keys()) {
                if before.get(k) != after.get(k) && !diff.iter().any(|(d, _, _)| d == k) {
                    diff.push((k.clone(), before.get(k), after.get(k)));
                }
            }
            let msg: Vec<String> = diff
                .iter()
                .map(|(k, b, a)| format!("{}: {b:?} -> {a:?}", String::from_utf8_lossy(k)))
                .collect();
            return Err(TestCaseError::fail(format!(
                "layer {i}: something outside the root changed: {}",
                msg.join("; ")
            )));
        }
        match (got, want) {
            (Ok(_), Ok(())) => {
                count(0, 1);
                count(3, nodes(&model.root));
                if let Err(msg) = compare(&model.root, &read_tree(&dest), &format!("layer{i}")) {
                    return Err(TestCaseError::fail(msg));
                }
            }
            (Err(e), Err(f)) => {
                prop_assert_eq!(fail_kind(&e), f, "layer {}: {}", i, e);
                count(if f == Fail::Escape { 1 } else { 2 }, 1);
                if std::env::var_os("XRUN_PROPS_DEBUG").is_some() {
                    eprintln!("REFUSED {e}");
                }
                return Ok(());
            }
            (Ok(_), Err(f)) => {
                return Err(TestCaseError::fail(format!(
                    "layer {i}: extracted, but the model says {f:?}"
                )));
            }
            (Err(e), Ok(())) => {
                return Err(TestCaseError::fail(format!(
                    "layer {i}: refused ({e}), but the model accepts it"
                )));
            }
        }
    }
    Ok(())
}

#[test]
fn random_layers_stay_inside_and_match_the_model() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let start = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    let strategy = (layers(), any::<bool>(), any::<bool>());
    let result = runner.run(&strategy, |(layers, apply, walk)| {
        check(&layers, apply, walk)
    });
    let n = |i: usize| OUTCOMES[i].load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "extract_props: {cases} cases in {:.1} s; layers extracted and compared: {} ({} nodes), \
         refused as escapes: {}, refused otherwise: {}",
        start.elapsed().as_secs_f64(),
        n(0),
        n(3),
        n(1),
        n(2)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The name every generated layer goes by (see `check`).
fn layer_name() -> Digest {
    static NAME: std::sync::OnceLock<Digest> = std::sync::OnceLock::new();
    NAME.get_or_init(|| Digest::of(b"extract_props")).clone()
}
