//! Attaching on the vm route: the monitor of a detached VM container relays the guest's
//! console (`-t`) or the command's stdin (`-i`) to clients; they type, resize, detach and
//! come back, and get the exit. Real qemu-system (TCG here) and the `ci/guest-image` guest.

mod attach_route;
mod common;

use std::process::Command;
use std::time::Duration;

use attach_route::Route;
use common::{TestEnv, skip};

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

const ROUTE: Route = Route {
    flags: &["--route", "vm"],
    image: IMAGE,
    patience: Duration::from_secs(120),
};

#[test]
fn a_vm_console_is_kept_and_reattached() {
    let Some(env) = setup() else { return };
    ROUTE.terminal_is_kept_and_reattached(&env, "tty", "/dev/hvc0");
    // Without a terminal: stdin is kept until a client closes it.
    ROUTE.stdin_is_kept_until_a_client_closes_it(&env, "echo done", "done\n");
}
