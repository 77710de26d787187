//! Attaching on the emulated route: a foreign-architecture (arm64) busybox under qemu-user,
//! detached with a terminal or with stdin; clients attach through the engine, type, resize,
//! detach and come back; the exit reaches them.

mod attach_route;
mod common;

use std::time::Duration;

use attach_route::Route;
use common::{TestEnv, skip, try_fixture};
use xrun::emulation::route;
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

const ROUTE: Route = Route {
    flags: &["--platform", "linux/arm64"],
    image: IMAGE,
    patience: Duration::from_secs(60),
};

#[test]
fn an_emulated_terminal_is_kept_and_reattached() {
    let Some(env) = setup() else { return };
    ROUTE.terminal_is_kept_and_reattached(&env, "uname -m", "aarch64");
}

#[test]
fn emulated_stdin_is_kept_until_a_client_closes_it() {
    let Some(env) = setup() else { return };
    ROUTE.stdin_is_kept_until_a_client_closes_it(&env, "uname -m", "aarch64\n");
}
