//! A binfmt handler without `F` cannot serve containers: `xrun binfmt status` says so, and
//! `xrun run` of a foreign image does not end in `exec format error` but falls back (vm route
//! when there is one, else exit 125 with the fix).
//!
//! The test registers a copy of the riscv64 magic WITHOUT `F` under a test-only name (registered
//! last, so the kernel tries it first) for a few seconds, and removes it in `Drop`: nothing else
//! of the machine's binfmt_misc is touched. It lives in its own test binary so no other test of
//! this suite runs riscv64 meanwhile.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestEnv, skip, try_fixture};
use xrun::emulation::{BinfmtState, arch, route};
use xrun::platform::Platform;

const DIR: &str = "/proc/sys/fs/binfmt_misc";
const NAME: &str = "xrun-test-nof-riscv64";
const IMAGE: &str = "localhost/busybox-riscv64:latest";

/// The test-only handler; removed on drop.
struct Shadow;

impl Shadow {
    fn register() -> Shadow {
        let spec = arch::by_arch("riscv64").unwrap();
        let line = spec.register_line(NAME, "/usr/bin/qemu-riscv64-static", "P");
        std::fs::write(Path::new(DIR).join("register"), line).expect("register test handler");
        Shadow
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        let _ = std::fs::write(Path::new(DIR).join(NAME), "-1");
    }
}

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn run(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.cmd()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

#[test]
fn handler_without_f_is_reported_and_the_route_falls_back_with_the_fix() {
    if !common::is_root() {
        return skip("needs root to register a binfmt handler");
    }
    let riscv: Platform = "linux/riscv64".parse().unwrap();
    if let Err(e) = route::prepare(&riscv) {
        return skip(&format!("no usable riscv64 handler to start from: {e}"));
    }
    if !Path::new("/usr/bin/qemu-riscv64-static").exists() {
        return skip("qemu-user-static absent");
    }
    let Some(layout) = try_fixture("busybox-riscv64") else {
        return skip("fixture busybox-riscv64 could not be built here");
    };
    let env = TestEnv::new();
    env.cmd()
        .args(["load", "-i"])
        .arg(&layout)
        .assert()
        .success();
    let vm_possible = Path::new("/usr/bin/qemu-system-riscv64").exists();

    let before = std::fs::read_dir(DIR).unwrap().count();
    {
        let _shadow = Shadow::register();
        // Status: the shadowing handler is the one in use for riscv64, and it is unusable.
        let o = run(&env, &["binfmt", "status", "--format", "json"]);
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let a = j["arches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["arch"] == "riscv64")
            .unwrap();
        assert_eq!(a["handler"], NAME, "{a}");
        assert_eq!(a["usable_in_containers"], false, "{a}");
        let (table, _) = text(&run(&env, &["binfmt", "status"]));
        let line = table.lines().find(|l| l.contains(NAME)).unwrap();
        assert!(
            line.contains(" no ") && line.contains("no F flag"),
            "{line}"
        );
        let state = BinfmtState::read(Path::new(DIR)).unwrap();
        assert!(route::select(&state, &riscv).is_err());

        // Run: never `exec format error`; the vm route if there is one, else 125 and the fix.
        let o = run(&env, &["run", "--rm", IMAGE, "uname", "-m"]);
        let (so, se) = text(&o);
        assert!(!se.contains("exec format error"), "{se}");
        if vm_possible && o.status.success() {
            assert_eq!(so.trim(), "riscv64");
        } else {
            assert_eq!(o.status.code(), Some(125), "{so}{se}");
            assert_eq!(se.lines().count(), 1, "{se}");
            assert!(se.contains("lacks the F flag"), "{se}");
            assert!(se.contains("xrun binfmt install riscv64 --force"), "{se}");
        }
        // Forcing the emulated route: refused the same way.
        let o = run(
            &env,
            &["run", "--rm", "--route", "emulated", IMAGE, "uname", "-m"],
        );
        let (so, se) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{so}{se}");
        assert!(se.contains("lacks the F flag"), "{se}");
    }
    assert_eq!(std::fs::read_dir(DIR).unwrap().count(), before);

    // With the machine's own handler back in charge, the same run works.
    let o = run(&env, &["run", "--rm", "-q", IMAGE, "uname", "-m"]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}");
    assert_eq!(so.trim(), "riscv64");
}
