//! Randomized requests against a real `xrun serve`: mutated container-create bodies (wrong
//! types, random keys and values, arbitrary bytes), random names, paths, versions and query
//! strings. Every answer must be well-formed HTTP with a status below 500 (or 501 for what
//! is refused), errors must be Docker's JSON `{"message": …}`, the service must keep
//! answering, and nothing may be left behind once the created containers are removed.
//! Cases: `PROPTEST_CASES` (default 400; each is a few requests to the service).

mod common;
#[path = "api_support/mod.rs"]
mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use support::*;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "Image",
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "AttachStdin",
    "Labels",
    "Hostname",
    "StopSignal",
    "StopTimeout",
    "ExposedPorts",
    "Volumes",
    "NetworkDisabled",
];
const HOST_FIELDS: &[&str] = &[
    "Binds",
    "Memory",
    "NanoCpus",
    "PidsLimit",
    "AutoRemove",
    "ReadonlyRootfs",
    "Init",
    "NetworkMode",
    "Privileged",
    "Mounts",
    "RestartPolicy",
    "PortBindings",
    "CpuShares",
];

/// A create body: the valid base with up to four fields replaced, removed or added.
fn arb_create_body() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<bool>(),
        0..FIELDS.len(),
        0..HOST_FIELDS.len(),
        arb_json(),
        0..3u8,
    );
    prop_oneof![
        8 => prop::collection::vec(edit, 0..4).prop_map(|edits| {
            let mut body = json!({
                "Image": IMAGE,
                "Cmd": ["true"],
                "HostConfig": {"Memory": 67108864, "PidsLimit": 50},
            });
            for (host, f, h, value, how) in edits {
                let (obj, key) = if host {
                    (body["HostConfig"].as_object_mut().unwrap(), HOST_FIELDS[h])
                } else {
                    (body.as_object_mut().unwrap(), FIELDS[f])
                };
                match how {
                    0 => {
                        obj.remove(key);
                    }
                    _ => {
                        obj.insert(key.to_string(), value);
                    }
                }
            }
            serde_json::to_vec(&body).unwrap()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

/// Percent-encodes every byte that is not unreserved.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET path: a known endpoint with a random version, id and query values.
fn arb_get_path() -> impl Strategy<Value = String> {
    let templates = prop::sample::select(vec![
        "/containers/json?all=1&filters={q}",
        "/containers/{id}/json",
        "/containers/{id}/logs?stdout=1&tail={q}&since={q}",
        "/containers/{id}/top?ps_args={q}",
        "/images/json?filters={q}",
        "/images/{id}/json?platform={q}",
        "/images/{id}/history",
        "/xrun/check?image={q}&platform={q}",
        "/exec/{id}/json",
        "/{q}",
    ]);
    let version = prop_oneof![
        Just(String::new()),
        "[0-9]{1,3}\\.[0-9]{1,3}".prop_map(|v| format!("/v{v}")),
        "\\PC{0,6}".prop_map(|v| format!("/v{}", enc(&v))),
    ];
    (templates, version, "\\PC{0,24}", "\\PC{0,40}").prop_map(|(t, v, id, q)| {
        let path = t.replace("{id}", &enc(&id)).replace("{q}", &enc(&q));
        format!("{v}{path}")
    })
}

fn check_reply(what: &str, r: &Reply) {
    assert!(
        r.status < 500 || r.status == 501,
        "{what}: status {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    if r.status >= 400 && !r.body.is_empty() {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
            panic!(
                "{what}: error body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&r.body)
            )
        });
        assert!(v["message"].is_string(), "{what}: {v}");
    }
}

#[test]
fn random_requests_get_docker_answers_and_leave_nothing() {
    if !common::is_root() {
        common::skip("the service's store and containers need root");
        return;
    }
    let s = Service::start();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (arb_create_body(), "\\PC{0,20}", arb_get_path());
    let created = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(body, name, get)| {
            let path = format!("/containers/create?name={}", enc(&name));
            let r = s.request("POST", &path, Some(&body));
            check_reply(
                &format!("POST {path} {}", String::from_utf8_lossy(&body)),
                &r,
            );
            if r.status == 201 {
                created.set(created.get() + 1);
                let id = r.json()["Id"].as_str().unwrap().to_string();
                let d = s.request("DELETE", &format!("/containers/{id}?force=1"), None);
                prop_assert_eq!(d.status, 204, "removing {}", id);
            }
            let r = s.request("GET", &get, None);
            check_reply(&format!("GET {get}"), &r);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "api_fuzz: {cases} cases, {} containers created and removed",
        created.get()
    );
    assert_eq!(s.request("GET", "/_ping", None).status, 200);
    let left = s.xrun(&["ps", "-aq"]);
    assert_eq!(out(&left).trim(), "", "containers left behind");
}
