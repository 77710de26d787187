//! Attaching on the emulated route: a foreign-architecture (arm64) busybox under qemu-user,
//! detached with a terminal or with stdin; clients attach through the engine, type, resize,
//! detach and come back; the exit reaches them.

mod common;

use std::time::Duration;

use common::{TestEnv, skip, try_fixture};
use xrun::emulation::route;
use xrun::engine::{AttachEvent, AttachEvents, AttachRequest, Engine, Stream};
use xrun::platform::Platform;

const IMAGE: &str = "localhost/busybox-arm64:latest";

fn setup() -> Option<TestEnv> {
    if !common::is_root() {
        skip("the emulated route needs root (namespaces, cgroups, overlay)");
        return None;
    }
    if let Err(e) = route::prepare(&"linux/arm64".parse::<Platform>().unwrap()) {
        skip(&format!("no usable binfmt handler for linux/arm64: {e}"));
        return None;
    }
    let Some(layout) = try_fixture("busybox-arm64") else {
        skip("fixture busybox-arm64 could not be built on this machine");
        return None;
    };
    let env = TestEnv::new();
    env.cmd()
        .args(["load", "-i"])
        .arg(&layout)
        .assert()
        .success();
    Some(env)
}

fn run_detached(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "-q", "--platform", "linux/arm64"];
    all.extend_from_slice(args);
    let o = env.cmd().args(&all).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Stdout until it contains `want`.
fn read_until(events: &AttachEvents, want: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(want) {
        match events.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(AttachEvent::Output(Stream::Stdout, d))) => {
                seen.push_str(&String::from_utf8_lossy(&d))
            }
            Ok(Some(AttachEvent::Output(..))) => {}
            other => panic!("waiting for {want:?} (seen {seen:?}): {other:?}"),
        }
    }
    seen
}

/// The last event, skipping output.
fn last(events: &AttachEvents) -> Option<AttachEvent> {
    loop {
        match events.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(AttachEvent::Output(..))) => {}
            Ok(e) => return e,
            Err(()) => panic!("no end after 60 s"),
        }
    }
}

#[test]
fn an_emulated_terminal_is_kept_and_reattached() {
    let Some(env) = setup() else { return };
    let id = run_detached(&env, &["-it", IMAGE, "sh"]);
    let engine = Engine::open(env.root());
    let stdin = AttachRequest {
        stdin: true,
        ..AttachRequest::default()
    };
    let a = engine.attach(&id, stdin.clone()).unwrap();
    assert!(a.tty);
    a.input.resize(25, 80);
    a.input.stdin(b"uname -m; stty size; echo e-$((6*7))\n");
    let seen = read_until(&a.events, "e-42");
    assert!(seen.contains("aarch64"), "{seen:?}");
    assert!(seen.contains("25 80"), "{seen:?}");
    a.input.stdin(b"\x10\x11");
    assert_eq!(last(&a.events), Some(AttachEvent::Detached));
    assert!(engine.inspect(&id).unwrap().is_running());

    let b = engine.attach(&id, stdin).unwrap();
    b.input.resize(40, 132);
    b.input.stdin(b"stty size; echo f-$((6*7))\n");
    let seen = read_until(&b.events, "f-42");
    assert!(seen.contains("40 132"), "{seen:?}");
    b.input.stdin(b"exit 5\n");
    assert_eq!(last(&b.events), Some(AttachEvent::Exited(Some(5))));
    env.cmd().args(["rm", &id]).assert().success();
}

#[test]
fn emulated_stdin_is_kept_until_a_client_closes_it() {
    let Some(env) = setup() else { return };
    let id = run_detached(&env, &["-i", IMAGE, "sh", "-c", "cat; uname -m"]);
    let engine = Engine::open(env.root());
    let a = engine
        .attach(
            &id,
            AttachRequest {
                stdin: true,
                ..AttachRequest::default()
            },
        )
        .unwrap();
    assert!(!a.tty);
    a.input.stdin(b"one\n");
    read_until(&a.events, "one\n");
    a.input.close_stdin();
    read_until(&a.events, "aarch64\n");
    assert_eq!(last(&a.events), Some(AttachEvent::Exited(Some(0))));
    env.cmd().args(["rm", &id]).assert().success();
}
