//! Attaching on the vm route: the monitor of a detached VM container relays the guest's
//! console (`-t`) or the command's stdin (`-i`) to clients; they type, resize, detach and
//! come back, and get the exit. Real qemu-system (TCG here) and the `ci/guest-image` guest.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestEnv, skip};
use xrun::engine::{AttachEvent, AttachEvents, AttachRequest, Engine, Stream};

const IMAGE: &str = "localhost/busybox-amd64:latest";

fn setup() -> Option<TestEnv> {
    if !common::is_root() {
        skip("needs root");
        return None;
    }
    if xrun::vm::qemu::find_binary("qemu-system-x86_64", None).is_err() {
        skip("qemu-system-x86_64 is not installed");
        return None;
    }
    let st = Command::new(common::repo_root().join("ci/guest-image"))
        .args(["--arch", "amd64"])
        .status()
        .expect("run ci/guest-image");
    assert!(st.success(), "ci/guest-image --arch amd64 failed");
    let env = TestEnv::new();
    let layout = common::fixture("busybox-amd64");
    env.cmd()
        .args(["load", "-i", layout.to_str().unwrap()])
        .assert()
        .success();
    Some(env)
}

fn run_detached(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "-q", "--route", "vm"];
    all.extend_from_slice(args);
    let o = env.cmd().args(&all).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Stdout until it contains `want`.
fn read_until(events: &AttachEvents, want: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(want) {
        match events.recv_timeout(Duration::from_secs(120)) {
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
        match events.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(AttachEvent::Output(..))) => {}
            Ok(e) => return e,
            Err(()) => panic!("no end after 120 s"),
        }
    }
}

#[test]
fn a_vm_console_is_kept_and_reattached() {
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
    a.input.stdin(b"tty; stty size; echo v-$((6*7))\n");
    let seen = read_until(&a.events, "v-42");
    assert!(seen.contains("/dev/hvc0"), "{seen:?}");
    assert!(seen.contains("25 80"), "{seen:?}");
    a.input.stdin(b"\x10\x11");
    assert_eq!(last(&a.events), Some(AttachEvent::Detached));
    assert!(engine.inspect(&id).unwrap().is_running());

    let b = engine.attach(&id, stdin).unwrap();
    b.input.resize(40, 132);
    b.input.stdin(b"stty size; echo w-$((6*7))\n");
    let seen = read_until(&b.events, "w-42");
    assert!(seen.contains("40 132"), "{seen:?}");
    b.input.stdin(b"exit 4\n");
    assert_eq!(last(&b.events), Some(AttachEvent::Exited(Some(4))));
    env.cmd().args(["rm", &id]).assert().success();

    // Without a terminal: stdin is kept until a client closes it.
    let id = run_detached(&env, &["-i", IMAGE, "sh", "-c", "cat; echo done"]);
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
    read_until(&a.events, "done\n");
    assert_eq!(last(&a.events), Some(AttachEvent::Exited(Some(0))));
    env.cmd().args(["rm", &id]).assert().success();
}
