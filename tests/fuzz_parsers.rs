//! Property tests (proptest, stable toolchain) for every parser of untrusted input: manifest,
//! index and config parsing, image references, platforms, and the ELF scanner. On any input:
//! no panic, and bounded memory (a counting allocator measures each case's peak allocation on
//! its own thread). Times are measured and printed, not asserted.
//!
//! Cases per property: `PROPTEST_CASES` (defaults keep the whole file well under a minute).
//! Long runs: `PROPTEST_CASES=200000 cargo test --release --test fuzz_parsers`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use xrun::kernelcheck::elf::{Head, read_head};
use xrun::platform::{Matcher, Platform};
use xrun::reference::ImageRef;
use xrun::registry::manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, detect, offered, parse_config,
    parse_image, parse_index, select,
};
use xrun::store::{ConfigSummary, Index, Manifest};

// ------------------------------------------------------------------------------------------
// A per-thread allocation meter.

struct Meter;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = (l.get() as isize + delta).max(0) as usize;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the meter only counts.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note(-(l.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new as isize - l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Runs `f` and returns its result, the most bytes it had allocated at once (beyond what
/// was live before) and how long it took.
fn metered<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let t = Instant::now();
    let out = f();
    let took = t.elapsed();
    (out, PEAK.with(Cell::get) - base, took)
}

/// The slowest case seen per property, printed at the end of each.
static SLOWEST: Mutex<Vec<(&'static str, Duration, u32)>> = Mutex::new(Vec::new());

fn record(name: &'static str, took: Duration, cases: u32) {
    let mut s = SLOWEST.lock().unwrap();
    match s.iter_mut().find(|(n, _, _)| *n == name) {
        Some(e) => {
            e.1 = e.1.max(took);
            e.2 = cases;
        }
        None => s.push((name, took, cases)),
    }
}

fn report(name: &'static str) {
    let s = SLOWEST.lock().unwrap();
    if let Some((_, d, n)) = s.iter().find(|(n, _, _)| *n == name) {
        eprintln!("{name}: {n} cases, slowest {d:?}");
    }
}

/// A runner with `default` cases unless `PROPTEST_CASES` says otherwise.
fn runner(default: u32) -> (TestRunner, u32) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    (TestRunner::new(config), cases)
}

// ------------------------------------------------------------------------------------------
// JSON documents

const R: &str = "127.0.0.1:5000/fuzz:x";

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn base_index() -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest('a'), "size": 100,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": digest('b'), "size": 101,
             "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"mediaType": OCI_MANIFEST, "digest": digest('c'), "size": 102,
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        ]
    })
}

fn base_manifest() -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest('d'), "size": 1234},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": digest('e'), "size": 5678},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
             "digest": digest('f'), "size": 9}
        ]
    })
}

fn base_config() -> Value {
    json!({
        "os": "linux", "architecture": "arm64", "variant": "v8",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [digest('1'), digest('2')]}
    })
}

/// Random JSON values: scalars, strings that look like the real ones, nested containers.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just(OCI_INDEX.to_string()),
            Just(OCI_MANIFEST.to_string()),
            Just(DOCKER_LIST.to_string()),
            Just(DOCKER_MANIFEST.to_string()),
            Just("application/vnd.docker.distribution.manifest.v1+prettyjws".to_string()),
            Just(digest('9')),
            Just("sha512:00".to_string()),
            Just("sha256:".to_string()),
            Just("linux".to_string()),
            Just("amd64".to_string()),
            ".{0,40}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z.]{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a document.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value at a path (indexes chosen modulo the container sizes).
    Replace(Vec<usize>, Value),
    /// Remove the key or element at a path.
    Remove(Vec<usize>),
    /// Repeat an array at a path `n` times over (huge arrays).
    Grow(Vec<usize>, usize),
    /// Wrap the value at a path in `depth` arrays (deep nesting).
    Nest(Vec<usize>, usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let path = prop::collection::vec(any::<usize>(), 0..5);
    prop_oneof![
        4 => (path.clone(), arb_json()).prop_map(|(p, v)| Mutation::Replace(p, v)),
        2 => path.clone().prop_map(Mutation::Remove),
        1 => (path.clone(), 1usize..2000).prop_map(|(p, n)| Mutation::Grow(p, n)),
        1 => (path, 1usize..300).prop_map(|(p, d)| Mutation::Nest(p, d)),
    ]
}

/// The value a path leads to (stopping early at leaves), mutably.
fn walk<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    let Some((&i, rest)) = path.split_first() else {
        return v;
    };
    let go_on = match v {
        Value::Array(a) if !a.is_empty() => Some(i % a.len()),
        Value::Object(m) if !m.is_empty() => Some(i % m.len()),
        _ => None,
    };
    match (v, go_on) {
        (Value::Array(a), Some(k)) => walk(&mut a[k], rest),
        (Value::Object(m), Some(k)) => {
            let key = m.keys().nth(k).unwrap().clone();
            walk(m.get_mut(&key).unwrap(), rest)
        }
        (v, _) => v,
    }
}

fn apply(doc: &mut Value, m: &Mutation) {
    match m {
        Mutation::Replace(p, v) => *walk(doc, p) = v.clone(),
        Mutation::Remove(p) if !p.is_empty() => {
            let (last, parent) = p.split_last().unwrap();
            match walk(doc, parent) {
                Value::Array(a) if !a.is_empty() => {
                    let k = last % a.len();
                    a.remove(k);
                }
                Value::Object(o) if !o.is_empty() => {
                    let key = o.keys().nth(last % o.len()).unwrap().clone();
                    o.remove(&key);
                }
                _ => {}
            }
        }
        Mutation::Remove(_) => {}
        Mutation::Grow(p, n) => {
            if let Value::Array(a) = walk(doc, p)
                && !a.is_empty()
            {
                let copy = a.clone();
                for _ in 0..*n {
                    a.extend(copy.iter().cloned());
                    if a.len() > 50_000 {
                        break;
                    }
                }
            }
        }
        Mutation::Nest(p, d) => {
            let at = walk(doc, p);
            let mut v = at.take();
            for _ in 0..*d {
                v = Value::Array(vec![v]);
            }
            *at = v;
        }
    }
}

/// Text-level changes the `Value` model cannot express: duplicate keys, truncation, raw bytes.
#[derive(Debug, Clone)]
enum TextEdit {
    None,
    /// Insert `"key":value,` right after the first `{`.
    DuplicateKey(&'static str, &'static str),
    Truncate(usize),
    Splice(usize, Vec<u8>),
}

fn arb_text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        4 => Just(TextEdit::None),
        1 => prop_oneof![
            Just(("schemaVersion", "1")),
            Just(("schemaVersion", "2")),
            Just(("mediaType", "\"application/vnd.example+json\"")),
            Just(("manifests", "[]")),
            Just(("layers", "7")),
            Just(("config", "null")),
        ]
        .prop_map(|(k, v)| TextEdit::DuplicateKey(k, v)),
        1 => any::<usize>().prop_map(TextEdit::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| TextEdit::Splice(at, b)),
    ]
}

fn edit(mut text: Vec<u8>, e: &TextEdit) -> Vec<u8> {
    match e {
        TextEdit::None => {}
        TextEdit::DuplicateKey(k, v) => {
            if let Some(i) = text.iter().position(|&b| b == b'{') {
                let ins = format!("\"{k}\":{v},");
                text.splice(i + 1..i + 1, ins.into_bytes());
            }
        }
        TextEdit::Truncate(n) => text.truncate(n % (text.len() + 1)),
        TextEdit::Splice(at, b) => {
            let at = at % (text.len() + 1);
            text.splice(at..at, b.iter().copied());
        }
    }
    text
}

/// Every parser of registry and store JSON on one body; panics propagate.
fn parse_everything(body: &[u8], platforms: &[Platform]) {
    let _ = detect(R, body);
    if let Ok(index) = parse_index(R, body) {
        let _ = offered(&index);
        for p in platforms {
            if let Ok(d) = select(R, &index, p) {
                assert!(d.is_runnable());
            }
        }
    }
    let base: Manifest = serde_json::from_value(base_manifest()).unwrap();
    if let Ok(m) = parse_image(R, body) {
        let _ = parse_config(R, body, &m);
    }
    if let Ok(c) = parse_config(R, body, &base) {
        let _ = c.platform().to_string();
    }
    let _ = serde_json::from_slice::<Index>(body);
    let _ = serde_json::from_slice::<Manifest>(body);
    let _ = serde_json::from_slice::<ConfigSummary>(body);
}

fn check_json_case(body: &[u8], name: &'static str, cases: u32) {
    let platforms: Vec<Platform> = [
        "linux/amd64",
        "linux/arm/v7",
        "linux/arm64",
        "linux/riscv64",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect();
    let ((), peak, took) = metered(|| parse_everything(body, &platforms));
    record(name, took, cases);
    // Memory follows the input (a JSON value per few bytes), never more.
    let bound = 64 * body.len() + (1 << 20);
    assert!(
        peak <= bound,
        "{} bytes of input took {peak} bytes",
        body.len()
    );
}

#[test]
fn json_parsers_on_mutated_documents() {
    let (mut runner, cases) = runner(1000);
    let docs = [base_index(), base_manifest(), base_config()];
    let strategy = (
        0..docs.len(),
        prop::collection::vec(arb_mutation(), 0..4),
        arb_text_edit(),
    );
    runner
        .run(&strategy, |(which, muts, text_edit)| {
            let mut doc = docs[which].clone();
            for m in &muts {
                apply(&mut doc, m);
            }
            let body = edit(serde_json::to_vec(&doc).unwrap(), &text_edit);
            check_json_case(&body, "json_mutated", cases);
            Ok(())
        })
        .unwrap();
    report("json_mutated");
}

#[test]
fn json_parsers_on_random_bytes() {
    let (mut runner, cases) = runner(3000);
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        // Mostly JSON punctuation, to get past the first byte more often.
        prop::collection::vec(
            prop::sample::select(b"{}[]\":,0123456789.eE-+ntrufalsschemaVersion\\".to_vec()),
            0..512
        ),
    ];
    runner
        .run(&strategy, |body| {
            check_json_case(&body, "json_random", cases);
            Ok(())
        })
        .unwrap();
    report("json_random");
}

#[test]
fn deep_nesting_stops_at_serde_json_recursion_limit() {
    // 1 MiB of '[' (and of '{"a":'): an error, no stack overflow, in every parser.
    for open in [&b"["[..], &b"{\"a\":"[..]] {
        let body: Vec<u8> = open.iter().copied().cycle().take(1 << 20).collect();
        let ((), peak, _) = metered(|| parse_everything(&body, &[]));
        assert!(peak < 8 << 20, "{peak}");
        assert!(detect(R, &body).is_err());
        let err = serde_json::from_slice::<Value>(&body).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
    // 127 levels inside a field are still parsed by the generic reader.
    let mut v = json!(1);
    for _ in 0..120 {
        v = json!([v]);
    }
    let mut doc = base_index();
    doc["annotations"] = json!({"x": v});
    let body = serde_json::to_vec(&doc).unwrap();
    assert!(detect(R, &body).is_ok());
}

#[test]
fn a_full_size_index_parses_and_selects_in_bounded_memory() {
    // The largest index the pull accepts (4 MiB) holding ~20 000 entries.
    let entry = &base_index()["manifests"][0];
    let mut manifests = Vec::new();
    let mut len = 0;
    while len < (4 << 20) - 300 {
        let e = entry.clone();
        len += serde_json::to_vec(&e).unwrap().len() + 1;
        manifests.push(e);
    }
    manifests.pop();
    let mut doc = base_index();
    doc["manifests"] = Value::Array(manifests);
    let body = serde_json::to_vec(&doc).unwrap();
    assert!(body.len() as u64 <= 4 << 20);
    let ((), peak, took) = metered(|| parse_everything(&body, &["linux/arm64".parse().unwrap()]));
    eprintln!(
        "4 MiB index ({} bytes): peak {} KiB, {took:?}",
        body.len(),
        peak >> 10
    );
    assert!(peak <= 64 * body.len());
}

// ------------------------------------------------------------------------------------------
// References and platforms

fn arb_reference_text() -> impl Strategy<Value = String> {
    let component = "[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?";
    let registry = prop_oneof![
        Just(String::new()),
        Just("docker.io/".to_string()),
        Just("index.docker.io/".to_string()),
        Just("localhost/".to_string()),
        Just("localhost:5000/".to_string()),
        Just("[::1]:5000/".to_string()),
        "[a-z0-9-]{1,8}\\.[a-z]{2,3}(:[0-9]{1,5})?/",
        "[ -~]{0,12}/",
    ];
    let tag = prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}".prop_map(|t| format!(":{t}")),
        "[ -~]{0,6}".prop_map(|t| format!(":{t}")),
    ];
    let digest = prop_oneof![
        Just(String::new()),
        "[0-9a-f]{64}".prop_map(|h| format!("@sha256:{h}")),
        "[ -~]{0,70}".prop_map(|h| format!("@{h}")),
    ];
    (
        registry,
        prop::collection::vec(component, 1..4),
        tag,
        digest,
    )
        .prop_map(|(r, path, t, d)| format!("{r}{}{t}{d}", path.join("/")))
}

#[test]
fn references_parse_without_panic_and_round_trip() {
    let (mut runner, cases) = runner(10_000);
    let strategy = prop_oneof![arb_reference_text(), ".{0,80}", "[ -~]{0,80}",];
    runner
        .run(&strategy, |s| {
            let (r, _, took) = metered(|| ImageRef::parse(&s));
            record("references", took, cases);
            if let Ok(r) = r {
                // The grammar: printing and parsing again gives the same reference.
                let again = ImageRef::parse(&r.to_string());
                prop_assert_eq!(again.as_ref(), Ok(&r), "{:?} printed as {}", s, r);
                // What ends up in a URL is only a host[:port] and a lowercase path.
                prop_assert!(
                    !r.registry.contains(['/', '?', '#', '@', '%', '\\']),
                    "registry {:?} from {:?}",
                    r.registry,
                    s
                );
                let _ = (r.name(), r.tag_or_digest(), r.is_loopback());
            }
            Ok(())
        })
        .unwrap();
    report("references");
}

fn arb_platform_text() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("linux".to_string()),
        Just("windows(10.0.17763+win32k)".to_string()),
        Just("darwin".to_string()),
        Just("macos".to_string()),
        Just("amd64".to_string()),
        Just("x86_64".to_string()),
        Just("aarch64".to_string()),
        Just("arm64".to_string()),
        Just("arm".to_string()),
        Just("armhf".to_string()),
        Just("armel".to_string()),
        Just("i686".to_string()),
        Just("riscv64".to_string()),
        Just("ppc64le".to_string()),
        Just("s390x".to_string()),
        Just("v1".to_string()),
        Just("v2".to_string()),
        Just("v3".to_string()),
        Just("v4".to_string()),
        Just("v5".to_string()),
        Just("v6".to_string()),
        Just("v7".to_string()),
        Just("v8".to_string()),
        Just("V8".to_string()),
        Just("Linux".to_string()),
        Just("AMD64".to_string()),
        "[a-zA-Z0-9_.()%+-]{0,10}",
    ];
    prop::collection::vec(word, 1..5).prop_map(|w| w.join("/"))
}

#[test]
fn platforms_parse_normalize_and_match_without_panic() {
    let (mut runner, cases) = runner(5_000);
    let strategy = (
        prop_oneof![arb_platform_text(), ".{0,40}"],
        prop::collection::vec(arb_platform_text(), 0..6),
        (
            "[ -~]{0,10}",
            "[ -~]{0,10}",
            proptest::option::of("[ -~]{0,6}"),
        ),
    );
    runner
        .run(&strategy, |(s, others, (os, arch, variant))| {
            let (p, _, took) = metered(|| s.parse::<Platform>());
            record("platforms", took, cases);
            // Any struct, even one no parser made, normalizes idempotently.
            let raw = Platform {
                os,
                architecture: arch,
                variant,
                ..Default::default()
            };
            let n = raw.normalize();
            prop_assert_eq!(n.normalize(), n.clone());
            let _ = (raw.to_string(), raw.amd64_level(), raw.is_equivalent(&n));
            if let Ok(p) = p {
                prop_assert_eq!(p.normalize(), p.clone(), "{:?} is not normal", s);
                // Printing and parsing again names the same os/arch/variant.
                let again = p.to_string().parse::<Platform>();
                prop_assert!(again.is_ok(), "{:?} → {} → {:?}", s, p, again);
                let again = again.unwrap();
                prop_assert_eq!(
                    (&again.os, &again.architecture, &again.variant),
                    (&p.os, &p.architecture, &p.variant),
                    "{:?} printed as {}",
                    s,
                    p
                );
                let list: Vec<Platform> = others.iter().filter_map(|o| o.parse().ok()).collect();
                let m = Matcher::new(&p);
                if let Some(i) = m.best(&list) {
                    prop_assert!(m.matches(&list[i]));
                }
                prop_assert!(m.matches(&p), "{} does not match itself", p);
                let _ = m.ordered(&list);
            }
            Ok(())
        })
        .unwrap();
    report("platforms");
}

// ------------------------------------------------------------------------------------------
// The ELF scanner

/// A synthetic ELF: header, four program headers (LOAD, INTERP, NOTE with the GNU ABI tag,
/// GNU_PROPERTY with the x86 ISA level), then their contents.
fn synth_elf(bits64: bool, little: bool) -> Vec<u8> {
    let mut b = Vec::new();
    let put16 = |b: &mut Vec<u8>, v: u16| {
        b.extend(if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        })
    };
    let put32 = |b: &mut Vec<u8>, v: u32| {
        b.extend(if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        })
    };
    let put64 = |b: &mut Vec<u8>, v: u64| {
        b.extend(if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        })
    };
    let word = |b: &mut Vec<u8>, v: u64| {
        if bits64 {
            put64(b, v)
        } else {
            put32(b, v as u32)
        }
    };
    let (ehsize, phentsize) = if bits64 { (64u16, 56u16) } else { (52, 32) };
    let phnum = 4u16;
    let data = ehsize as u64 + phnum as u64 * phentsize as u64;
    // Contents.
    let interp = b"/lib/ld-fuzz.so.1\0".to_vec();
    let mut abi = Vec::new();
    put32(&mut abi, 4);
    put32(&mut abi, 16);
    put32(&mut abi, 1);
    abi.extend(b"GNU\0");
    for v in [0u32, 3, 2, 0] {
        put32(&mut abi, v);
    }
    let mut prop = Vec::new();
    put32(&mut prop, 4);
    put32(&mut prop, if bits64 { 16 } else { 12 });
    put32(&mut prop, 5);
    prop.extend(b"GNU\0");
    put32(&mut prop, 0xc000_8002);
    put32(&mut prop, 4);
    put32(&mut prop, 0b0111);
    if bits64 {
        put32(&mut prop, 0);
    }
    let interp_off = data;
    let abi_off = interp_off + interp.len() as u64;
    let abi_off = abi_off.div_ceil(8) * 8;
    let prop_off = abi_off + abi.len() as u64;
    // Header.
    b.extend(b"\x7fELF");
    b.push(if bits64 { 2 } else { 1 });
    b.push(if little { 1 } else { 2 });
    b.push(1);
    b.extend([0u8; 9]);
    put16(&mut b, 3); // ET_DYN
    put16(&mut b, if bits64 { 62 } else { 40 }); // x86-64 / ARM
    put32(&mut b, 1);
    word(&mut b, 0x1000); // entry
    word(&mut b, ehsize as u64); // phoff
    word(&mut b, 0); // shoff
    put32(&mut b, 0);
    put16(&mut b, ehsize);
    put16(&mut b, phentsize);
    put16(&mut b, phnum);
    put16(&mut b, 0);
    put16(&mut b, 0);
    put16(&mut b, 0);
    assert_eq!(b.len(), ehsize as usize);
    let segs = [
        (1u32, 0u64, 0x2000u64, 0x10000u64),
        (3, interp_off, interp.len() as u64, 1),
        (4, abi_off, abi.len() as u64, 4),
        (
            0x6474e553,
            prop_off,
            prop.len() as u64,
            if bits64 { 8 } else { 4 },
        ),
    ];
    for (ptype, off, size, align) in segs {
        if bits64 {
            put32(&mut b, ptype);
            put32(&mut b, 5); // flags
            put64(&mut b, off);
            put64(&mut b, off); // vaddr
            put64(&mut b, off); // paddr
            put64(&mut b, size);
            put64(&mut b, size);
            put64(&mut b, align);
        } else {
            put32(&mut b, ptype);
            put32(&mut b, off as u32);
            put32(&mut b, off as u32);
            put32(&mut b, off as u32);
            put32(&mut b, size as u32);
            put32(&mut b, size as u32);
            put32(&mut b, 5);
            put32(&mut b, align as u32);
        }
    }
    b.extend(&interp);
    b.resize(abi_off as usize, 0);
    b.extend(&abi);
    b.extend(&prop);
    b.resize(0x2000, 0);
    b
}

/// The ELF bases mutated: the synthetic ones and small binaries of this machine.
fn elf_bases() -> Vec<Vec<u8>> {
    let mut v = vec![
        synth_elf(true, true),
        synth_elf(true, false),
        synth_elf(false, true),
        synth_elf(false, false),
    ];
    for p in ["/bin/true", "/lib64/ld-linux-x86-64.so.2"] {
        if let Ok(b) = std::fs::read(p) {
            v.push(b);
        }
    }
    v
}

#[derive(Debug, Clone)]
enum ElfEdit {
    Flip(usize, u8),
    Set16(usize, u16),
    Set32(usize, u32),
    Set64(usize, u64),
    Truncate(usize),
}

fn interesting64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(0xffff),
        Just(u32::MAX as u64),
        Just(u32::MAX as u64 + 1),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(1 << 40),
        any::<u64>(),
        0u64..0x4000,
    ]
}

fn arb_elf_edit() -> impl Strategy<Value = ElfEdit> {
    // Offsets mostly in the header and program headers.
    let off = prop_oneof![3 => 0usize..0x200, 1 => 0usize..0x3000, 1 => any::<usize>()];
    prop_oneof![
        3 => (off.clone(), any::<u8>()).prop_map(|(o, b)| ElfEdit::Flip(o, b)),
        2 => (off.clone(), interesting64()).prop_map(|(o, v)| ElfEdit::Set16(o, v as u16)),
        2 => (off.clone(), interesting64()).prop_map(|(o, v)| ElfEdit::Set32(o, v as u32)),
        2 => (off, interesting64()).prop_map(|(o, v)| ElfEdit::Set64(o, v)),
        1 => any::<usize>().prop_map(ElfEdit::Truncate),
    ]
}

fn apply_elf(b: &mut Vec<u8>, e: &ElfEdit) {
    let mut set = |o: usize, bytes: &[u8]| {
        if b.is_empty() {
            return;
        }
        let o = o % b.len();
        for (i, x) in bytes.iter().enumerate() {
            if let Some(slot) = b.get_mut(o + i) {
                *slot = *x;
            }
        }
    };
    match e {
        ElfEdit::Flip(o, x) => set(*o, &[*x]),
        ElfEdit::Set16(o, v) => set(*o, &v.to_le_bytes()),
        ElfEdit::Set32(o, v) => set(*o, &v.to_le_bytes()),
        ElfEdit::Set64(o, v) => set(*o, &v.to_le_bytes()),
        ElfEdit::Truncate(n) => b.truncate(n % (b.len() + 1)),
    }
}

thread_local! {
    static ELF_FILE: tempfile::NamedTempFile = tempfile::NamedTempFile::new().unwrap();
}

/// Writes `bytes` to this thread's scratch file and scans it.
fn scan(bytes: &[u8], name: &'static str, cases: u32) -> Head {
    ELF_FILE.with(|f| {
        let mut file = f.as_file();
        file.set_len(0).unwrap();
        file.write_all(bytes).unwrap();
        let (head, peak, took) = metered(|| read_head(f.path()).unwrap());
        let _ = std::io::Seek::rewind(&mut file);
        record(name, took, cases);
        // The scanner reads 4 KiB, then at most 64 KiB per table or note: never more.
        assert!(
            peak < 1 << 20,
            "scanning {} bytes took {peak} bytes",
            bytes.len()
        );
        head
    })
}

#[test]
fn synthetic_elves_scan_as_built() {
    for (bits64, little) in [(true, true), (true, false), (false, true), (false, false)] {
        let Head::Elf(info) = scan(&synth_elf(bits64, little), "synthetic", 4) else {
            panic!("not an ELF: {bits64} {little}");
        };
        assert_eq!(info.interpreter.as_deref(), Some("/lib/ld-fuzz.so.1"));
        assert_eq!(info.abi_tag, Some([3, 2, 0]));
        assert_eq!(info.isa_level, Some(3));
        assert_eq!(info.max_load_align, 0x10000);
        assert_eq!(info.bits, if bits64 { 64 } else { 32 });
        assert!(info.is_loadable());
    }
}

#[test]
fn elf_scanner_on_mutated_binaries() {
    let (mut runner, cases) = runner(3000);
    let bases = elf_bases();
    let strategy = (0..bases.len(), prop::collection::vec(arb_elf_edit(), 1..6));
    runner
        .run(&strategy, |(which, edits)| {
            let mut b = bases[which].clone();
            for e in &edits {
                apply_elf(&mut b, e);
            }
            let _ = scan(&b, "elf_mutated", cases);
            Ok(())
        })
        .unwrap();
    report("elf_mutated");
}

#[test]
fn elf_scanner_on_random_bytes() {
    let (mut runner, cases) = runner(3000);
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        // ELF magic and a random rest.
        prop::collection::vec(any::<u8>(), 0..512).prop_map(|mut v| {
            let magic = b"\x7fELF";
            for (i, m) in magic.iter().enumerate() {
                if i < v.len() {
                    v[i] = *m;
                }
            }
            v
        }),
        "#![ -~\t]{0,100}\n?".prop_map(String::into_bytes),
    ];
    runner
        .run(&strategy, |b| {
            let _ = scan(&b, "elf_random", cases);
            Ok(())
        })
        .unwrap();
    report("elf_random");
}

// ------------------------------------------------------------------------------------------
// What a registry says besides documents: auth challenges and error bodies

#[test]
fn auth_challenges_and_error_bodies_without_panic() {
    use xrun::registry::client::{Context, status_error};
    use xrun::registry::login::{Challenge, parse_challenge};
    let (mut runner, cases) = runner(5_000);
    let challenge = prop_oneof![
        ".{0,120}",
        "(Basic|Bearer|bearer|Negotiate)( [a-z]{1,8}=(\"[ -~]{0,20}\"?|[ -~]{0,12}),?){0,4}",
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        arb_json().prop_map(|v| serde_json::to_vec(&json!({ "errors": [v] })).unwrap()),
    ];
    runner
        .run(&(challenge, any::<u16>(), body), |(h, code, body)| {
            let (c, _, took) = metered(|| parse_challenge(&h));
            record("challenges", took, cases);
            if let Challenge::Bearer { realm, .. } = &c {
                prop_assert!(!realm.contains('"'), "{:?} → {:?}", h, c);
            }
            let cx = Context {
                registry: "r:1",
                repository: "x",
                reference: "r:1/x:y",
                had_credentials: code % 2 == 0,
            };
            let err = status_error(code, &body, cx, None).into_error().to_string();
            // One line, printable (no escape sequences from the registry), and bounded
            // whatever the body holds.
            prop_assert!(!err.chars().any(char::is_control), "{:?}", err);
            prop_assert!(err.len() < 1024, "{} bytes", err.len());
            Ok(())
        })
        .unwrap();
    report("challenges");
}
