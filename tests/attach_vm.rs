//! Attaching on the vm route: the monitor of a detached VM container relays the guest's
//! console (`-t`) or the command's stdin (`-i`) to clients; they type, resize, detach and
//! come back, and get the exit. Real qemu-system (TCG here) and the `ci/guest-image` guest.

mod attach_route;
mod common;

use std::time::Duration;

use attach_route::Route;
use common::TestEnv;

const IMAGE: &str = "localhost/busybox-amd64:latest";

fn setup() -> Option<TestEnv> {
    common::vm_env("busybox-amd64")
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
