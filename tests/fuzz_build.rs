//! Property tests (proptest) for the build's untrusted input: mutated Dockerfiles (and
//! `.dockerignore` files, and a base image's `ONBUILD` triggers) through the parser and the
//! planner, and hostile build-context archives through the API's unpacker. On any input: no
//! panic, and either a result or an error of one line; an archive never writes outside its
//! directory.
//!
//! The planner runs for real (stages, args, expansion, `COPY`/`ADD` from a real context into
//! a real store, metadata, triggers) with two capabilities left out, so that hundreds of cases
//! take seconds: a base image is an empty image (with the case's `ONBUILD` triggers), and a
//! `RUN` step ends the build with an error (real `RUN` containers are exercised by
//! tests/build_basic.rs and tests/api_build.rs).
//!
//! Cases per property: `PROPTEST_CASES` (defaults keep the file to a few seconds).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use xrun::build::{BuildError, BuildHost, BuildOptions, Context, ImageState, RunStep};
use xrun::engine::build_context::{ContextLimits, unpack_context};
use xrun::platform::Platform;
use xrun::store::Store;

fn runner(default: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

// ------------------------------------------------------------------------------------------
// Dockerfiles

const LINES: &[&str] = &[
    "FROM scratch",
    "FROM base AS b",
    "FROM b",
    "FROM b AS b",
    "FROM --platform=$BUILDPLATFORM scratch AS x",
    "FROM ${IMG:-base}",
    "ARG A=1",
    "ARG B",
    "ARG IMG",
    "ENV X=${A:-d} Y=$B Z=${A:+set}",
    "ENV ${A}=1",
    "ARG X=${Y:?missing}",
    "COPY a.txt /a",
    "COPY --from=b /a /b",
    "COPY --from=0 /a /c",
    "COPY --from=x / /",
    "COPY * /all/",
    "COPY sub/ /sub/",
    "COPY s*/b?.txt /glob/",
    "ADD t.tar /t/",
    "ADD http://example.invalid/x /x",
    "COPY --chmod=755 a.txt /x",
    "COPY --chown=1:1 a.txt /y",
    "COPY --chown=nobody a.txt /z",
    "COPY ../outside /o",
    "COPY a.txt ../../../../../tmp/escape",
    "COPY link /l",
    "COPY <<EOF /h\nhello $A\nEOF",
    "WORKDIR /w",
    "WORKDIR $X/sub",
    "USER 1000:1000",
    "LABEL k=v \"a b\"=c",
    "EXPOSE 80/tcp 53/udp",
    "CMD [\"a\",\"b\"]",
    "CMD x y",
    "ENTRYPOINT [\"e\"]",
    "SHELL [\"/bin/sh\",\"-c\"]",
    "HEALTHCHECK --interval=5s --retries=3 CMD true",
    "HEALTHCHECK NONE",
    "STOPSIGNAL SIGTERM",
    "VOLUME [\"/v\"]",
    "ONBUILD COPY a.txt /o",
    "ONBUILD ONBUILD RUN x",
    "MAINTAINER me",
    "RUN true",
    "RUN [\"true\"]",
    "RUN --mount=type=cache,target=/c true",
    "# escape=`",
    "# syntax=docker/dockerfile:1",
    "FROB x",
];

const SPLICES: &[&str] = &[
    "$",
    "${",
    "}",
    "\\",
    "\\\n",
    "`",
    "\"",
    "'",
    "[",
    "]",
    "\n",
    " ",
    "<<EOF",
    "--from=",
    ":",
    "=",
    "#",
    "*",
    "?",
    "/",
    "..",
    "\0",
    "é",
    "${A:?}",
    "${A:-${B:-x}}",
];

#[derive(Debug, Clone)]
enum Edit {
    Splice(usize, &'static str),
    Delete(usize, usize),
    Byte(usize, u8),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), prop::sample::select(SPLICES)).prop_map(|(a, s)| Edit::Splice(a, s)),
        1 => (any::<usize>(), 1usize..6).prop_map(|(a, n)| Edit::Delete(a, n)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Byte(a, b)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut b = text.as_bytes().to_vec();
    for e in edits {
        match e {
            Edit::Splice(at, s) => {
                let at = at % (b.len() + 1);
                b.splice(at..at, s.bytes());
            }
            Edit::Delete(at, n) => {
                let at = at % (b.len() + 1);
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Edit::Byte(at, v) => {
                if !b.is_empty() {
                    let at = at % b.len();
                    b[at] = *v;
                }
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

const FROMS: &[&str] = &[
    "FROM scratch",
    "FROM base AS b",
    "FROM base",
    "FROM --platform=linux/arm64 base AS x",
    "ARG IMG=base\nFROM $IMG",
];

fn arb_dockerfile() -> impl Strategy<Value = String> {
    (
        prop::sample::select(FROMS),
        prop::collection::vec(prop::sample::select(LINES), 0..8),
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(arb_edit(), 1..4),
        ],
    )
        .prop_map(|(from, lines, edits)| {
            let mut all = vec![from];
            all.extend(lines);
            apply(&all.join("\n"), &edits)
        })
}

const TRIGGERS: &[&str] = &[
    "COPY a.txt /t",
    "ENV T=1",
    "CMD [\"t\"]",
    "RUN x",
    "FROM x",
    "ONBUILD RUN x",
    "MAINTAINER m",
    "",
    "COPY --from=b /a /a",
    "FROB",
];

fn arb_triggers() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        (
            prop::sample::select(TRIGGERS),
            prop::collection::vec(arb_edit(), 0..2),
        )
            .prop_map(|(t, e)| apply(t, &e)),
        0..3,
    )
}

const IGNORES: &[&str] = &[
    "a.txt",
    "!a.txt",
    "**/b*",
    "[",
    "\\",
    "sub",
    "!sub/b1.txt",
    "*",
];

/// The build host of these properties (see the module doc).
struct Host {
    triggers: Vec<String>,
}

impl BuildHost for Host {
    fn base_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<(ImageState, String), BuildError> {
        let mut s = ImageState::scratch(platform);
        if !self.triggers.is_empty() {
            s.set("OnBuild", json!(self.triggers));
        }
        Ok((s, format!("fuzz:{reference}")))
    }

    fn run(
        &self,
        _step: &RunStep<'_>,
        _collect: &mut dyn FnMut(&Path) -> Result<(), BuildError>,
    ) -> Result<i32, BuildError> {
        Err(BuildError::Runner(
            "RUN steps are not run by this property test".into(),
        ))
    }

    fn progress(&self, _line: &str) {}
}

fn context_dir(ignore: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::write(p.join("a.txt"), "a").unwrap();
    fs::create_dir(p.join("sub")).unwrap();
    fs::write(p.join("sub/b1.txt"), "b").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p.join("link")).unwrap();
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "in-tar.txt", &b"hi"[..]).unwrap();
    fs::write(p.join("t.tar"), t.into_inner().unwrap()).unwrap();
    if let Some(i) = ignore {
        fs::write(p.join(".dockerignore"), i).unwrap();
    }
    dir
}

#[test]
fn mutated_dockerfiles_parse_and_plan_or_fail_in_one_line() {
    let platform: Platform = "linux/amd64".parse().unwrap();
    let strategy = (
        arb_dockerfile(),
        arb_triggers(),
        prop::option::of(prop::sample::select(IGNORES)),
        prop::option::of(prop::sample::select(&["b", "x", "0", "nosuch"][..])),
    );
    // How far the cases got: parse errors, planner errors, images planned.
    let tally = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    runner(150)
        .run(&strategy, |(text, triggers, ignore, target)| {
            let df = match xrun::build::parse(&text, "Dockerfile") {
                Ok(df) => df,
                Err(e) => {
                    tally[0].fetch_add(1, Ordering::Relaxed);
                    let m = e.to_string();
                    prop_assert!(!m.contains('\n'), "two lines: {m:?}");
                    return Ok(());
                }
            };
            let ctx_dir = context_dir(ignore);
            let root = tempfile::tempdir().unwrap();
            let store = Store::open(root.path()).unwrap();
            let ctx = match Context::open(ctx_dir.path()) {
                Ok(c) => c,
                Err(e) => {
                    prop_assert!(!e.to_string().contains('\n'));
                    return Ok(());
                }
            };
            let opts = BuildOptions {
                file_name: "Dockerfile".into(),
                target: target.map(str::to_string),
                build_args: BTreeMap::from([("B".to_string(), "arg".to_string())]),
                labels: BTreeMap::new(),
                no_cache: false,
                platform: platform.clone(),
                build_platform: platform.clone(),
                epoch: Some(0),
                show_platform: false,
            };
            let host = Host { triggers };
            let r = xrun::build::build_stage_target(
                &df,
                &ctx,
                &store,
                &host,
                &opts,
                &AtomicUsize::new(0),
            );
            match r {
                Ok(_) => tally[2].fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    let m = e.to_string();
                    prop_assert!(!m.contains('\n'), "two lines: {m:?}");
                    tally[1].fetch_add(1, Ordering::Relaxed)
                }
            };
            prop_assert!(!Path::new("/tmp/escape").exists());
            Ok(())
        })
        .unwrap();
    let [p, e, ok] = tally.map(|t| t.into_inner());
    eprintln!("dockerfiles: {p} refused by the parser, {e} by the planner, {ok} planned");
    assert!(
        ok > 0 && e > 0,
        "the cases never reach the planner's both outcomes"
    );
}

// ------------------------------------------------------------------------------------------
// Context archives

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: u8,
    link: String,
    data: Vec<u8>,
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "d",
    "d/",
    "d/f",
    "l",
    "l/x",
    "l/victim",
    ".",
    "./a",
    "..",
    "../x",
    "/abs",
    "d/../../x",
    "h",
    "a/b/c",
    "",
];

fn arb_entries(outside: String) -> impl Strategy<Value = Vec<Entry>> {
    let links = vec![
        "a".to_string(),
        "d".to_string(),
        "../".to_string(),
        "/etc".to_string(),
        outside.clone(),
        format!("{outside}/victim"),
        "../../../../x".to_string(),
        "l/x".to_string(),
    ];
    prop::collection::vec(
        (
            prop::sample::select(NAMES),
            0u8..6,
            prop::sample::select(links),
            prop::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(n, kind, link, data)| Entry {
                name: n.to_string(),
                kind,
                link,
                data,
            }),
        0..8,
    )
}

fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let kind = match e.kind {
            0 | 1 => tar::EntryType::Regular,
            2 => tar::EntryType::Directory,
            3 => tar::EntryType::Symlink,
            4 => tar::EntryType::Link,
            _ => tar::EntryType::Fifo,
        };
        h.set_entry_type(kind);
        h.set_mode(0o755);
        let data: &[u8] = if kind == tar::EntryType::Regular {
            &e.data
        } else {
            &[]
        };
        h.set_size(data.len() as u64);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            let _ = h.set_link_name(&e.link);
        }
        let bytes = e.name.as_bytes();
        let n = bytes.len().min(99);
        h.as_old_mut().name[..n].copy_from_slice(&bytes[..n]);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_context_archives_never_write_outside() {
    let (outside_dir, outside) = {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().display().to_string();
        (d, p)
    };
    let strategy = (
        arb_entries(outside.clone()),
        prop::collection::vec(arb_edit(), 0..2),
        any::<bool>(),
    );
    runner(300)
        .run(&strategy, |(entries, edits, gzip)| {
            let mut bytes = archive(&entries);
            if !edits.is_empty() {
                // Raw damage too (bad checksums, truncation): refused, never a panic.
                bytes = apply(&String::from_utf8_lossy(&bytes), &edits).into_bytes();
            }
            if gzip {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, &bytes).unwrap();
                bytes = gz.finish().unwrap();
            }
            let parent = tempfile::tempdir().unwrap();
            let dest = parent.path().join("ctx");
            fs::create_dir(&dest).unwrap();
            let limits = ContextLimits {
                bytes: 64 << 10,
                entries: 100,
            };
            if let Err(e) = unpack_context(&bytes[..], &dest, limits) {
                prop_assert!(!e.to_string().contains('\n'), "{e}");
            }
            let siblings: Vec<_> = fs::read_dir(parent.path()).unwrap().flatten().collect();
            prop_assert_eq!(siblings.len(), 1, "written next to the context");
            prop_assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
            prop_assert!(!Path::new("/x").exists() && !Path::new("/abs").exists());
            Ok(())
        })
        .unwrap();
    drop(outside_dir);
}
