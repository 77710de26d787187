//! The emulated route end to end: foreign-architecture busybox images (arm64, arm/v7, riscv64)
//! run through the real binfmt_misc handlers and qemu-user, with xrun's native init as PID 1.
//!
//! Skips (with the reason) only when binfmt_misc or a usable handler for the architecture is
//! truly absent here.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestEnv, skip, try_fixture};
use xrun::emulation::route;
use xrun::platform::Platform;

/// (fixture, image reference after `xrun load`, platform, `uname -m` inside).
const IMAGES: &[(&str, &str, &str, &str)] = &[
    (
        "busybox-arm64",
        "localhost/busybox-arm64:latest",
        "linux/arm64",
        "aarch64",
    ),
    (
        "busybox-armv7",
        "localhost/busybox-armv7:latest",
        "linux/arm/v7",
        "armv7l",
    ),
    (
        "busybox-riscv64",
        "localhost/busybox-riscv64:latest",
        "linux/riscv64",
        "riscv64",
    ),
];

/// A test environment with `fixture` loaded, when the host can emulate `platform`.
fn setup(fixture: &str, platform: &str) -> Option<TestEnv> {
    if !common::is_root() {
        skip("the emulated route needs root (namespaces, cgroups, overlay)");
        return None;
    }
    if let Err(e) = route::prepare(&platform.parse::<Platform>().unwrap()) {
        skip(&format!("no usable binfmt handler for {platform}: {e}"));
        return None;
    }
    let Some(layout) = try_fixture(fixture) else {
        skip(&format!(
            "fixture {fixture} could not be built on this machine"
        ));
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

/// `xrun` as a std `Command` (for piped stdio), with the environment of [`TestEnv::cmd`].
fn std_cmd(env: &TestEnv) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xrun"));
    c.env("XRUN_ROOT", env.root())
        .env("XRUN_CONFIG", env.config_path())
        .env_remove("XRUN_DEFAULT_PLATFORM")
        .env_remove("DOCKER_DEFAULT_PLATFORM");
    c
}

fn out(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `xrun ARGS` with a hard deadline, so a hang fails the test instead of blocking CI.
fn run_with_deadline(env: &TestEnv, args: &[&str], deadline: Duration) -> std::process::Output {
    let mut cmd = std_cmd(env);
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "xrun {args:?} still running after {deadline:?}: {:?}",
                out(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn uname_shell_and_exit_codes_on_every_foreign_arch() {
    for &(fixture, image, platform, machine) in IMAGES {
        let Some(env) = setup(fixture, platform) else {
            continue;
        };
        // uname -m: the foreign machine; the notice names platform and emulator, one line.
        let o = run_with_deadline(
            &env,
            &["run", "--rm", image, "uname", "-m"],
            Duration::from_secs(60),
        );
        let (so, se) = out(&o);
        assert!(o.status.success(), "{image}: {so}{se}");
        assert_eq!(so.trim(), machine, "{image}");
        assert_eq!(se.lines().count(), 1, "{image}: {se}");
        assert!(se.contains("emulat") && se.contains("slower"), "{se}");
        // -q: no notice.
        let o = run_with_deadline(
            &env,
            &["run", "--rm", "-q", image, "uname", "-m"],
            Duration::from_secs(60),
        );
        let (so, se) = out(&o);
        assert_eq!(so.trim(), machine);
        assert!(se.is_empty(), "{se}");
        // A pipeline in the shell, files of the image, and the exit code back.
        let o = run_with_deadline(
            &env,
            &[
                "run",
                "--rm",
                "-q",
                image,
                "sh",
                "-c",
                "ls / | wc -l; head -1 /etc/passwd; exit 7",
            ],
            Duration::from_secs(60),
        );
        let (so, se) = out(&o);
        assert_eq!(o.status.code(), Some(7), "{image}: {so}{se}");
        let lines: Vec<&str> = so.lines().collect();
        assert!(lines[0].trim().parse::<u32>().unwrap() >= 5, "{so}");
        assert!(lines[1].starts_with("root:x:0:0:"), "{so}");
    }
}

#[test]
fn stdin_and_tty() {
    let Some(env) = setup("busybox-arm64", "linux/arm64") else {
        return;
    };
    let image = "localhost/busybox-arm64:latest";
    // echo hi | xrun run -i … cat
    let mut cmd = std_cmd(&env);
    let mut child = cmd
        .args(["run", "--rm", "-q", "-i", image, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}", out(&o));
    assert_eq!(out(&o).0, "hi\n");

    // -t: the command sees a terminal (run under `script` so xrun has one too).
    let xrun = env!("CARGO_BIN_EXE_xrun");
    let root = env.root();
    let o = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "XRUN_ROOT={} {xrun} run --rm -q -t {image} sh -c 'tty; uname -m; exit 3'",
            root.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output();
    let Ok(o) = o else {
        return skip("script(1) not available for the -t check");
    };
    let (so, se) = out(&o);
    assert_eq!(o.status.code(), Some(3), "{so}{se}");
    assert!(
        so.contains("/dev/pts/") || so.contains("/dev/console"),
        "{so}"
    );
    assert!(!so.contains("not a tty"), "{so}");
    assert!(so.contains("aarch64"), "{so}");
}

#[test]
fn memory_and_pids_limits_still_apply() {
    let Some(env) = setup("busybox-arm64", "linux/arm64") else {
        return;
    };
    let image = "localhost/busybox-arm64:latest";
    // 64 MiB buffer under a 32 MiB limit: OOM-killed, 137.
    let o = run_with_deadline(
        &env,
        &[
            "run",
            "--rm",
            "-q",
            "--memory",
            "32m",
            image,
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(137), "{:?}", out(&o));
    // The same without the limit works.
    let o = run_with_deadline(
        &env,
        &[
            "run",
            "--rm",
            "-q",
            image,
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
        ],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{:?}", out(&o));
    // A pids limit stops a fork loop (each emulated process is a qemu with its threads).
    let o = run_with_deadline(
        &env,
        &[
            "run",
            "--rm",
            "-q",
            "--pids-limit",
            "12",
            image,
            "sh",
            "-c",
            "for i in $(seq 30); do sleep 3 & done 2>&1; wait; echo done",
        ],
        Duration::from_secs(60),
    );
    let (so, se) = out(&o);
    let all = format!("{so}{se}");
    assert!(
        all.contains("can't fork") || all.contains("Resource temporarily unavailable"),
        "{all}"
    );
}

#[test]
fn stop_ends_an_emulated_sleep_within_the_timeout() {
    let Some(env) = setup("busybox-arm64", "linux/arm64") else {
        return;
    };
    let o = run_with_deadline(
        &env,
        &[
            "run",
            "-d",
            "-q",
            "--name",
            "emu-sleep",
            "localhost/busybox-arm64:latest",
            "sleep",
            "1000",
        ],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{:?}", out(&o));
    // ps shows the route.
    let o = run_with_deadline(&env, &["ps"], Duration::from_secs(20));
    let (so, _) = out(&o);
    let line = so
        .lines()
        .find(|l| l.contains("emu-sleep"))
        .unwrap_or_else(|| panic!("{so}"));
    assert!(line.contains("emulated"), "{so}");
    // SIGTERM reaches the emulated sleep through the native init: well before the 10 s kill.
    let start = Instant::now();
    let o = run_with_deadline(
        &env,
        &["stop", "-t", "10", "emu-sleep"],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{:?}", out(&o));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "stop took {took:?}: SIGTERM did not end it"
    );
    let o = run_with_deadline(&env, &["ps", "-a"], Duration::from_secs(20));
    let (so, _) = out(&o);
    let line = so.lines().find(|l| l.contains("emu-sleep")).unwrap();
    assert!(line.contains("Exited"), "{line}");
    let _ = run_with_deadline(&env, &["rm", "-f", "emu-sleep"], Duration::from_secs(30));
}

#[test]
fn sigpipe_inside_and_outside_ends_promptly() {
    let Some(env) = setup("busybox-arm64", "linux/arm64") else {
        return;
    };
    let image = "localhost/busybox-arm64:latest";
    // Inside: `yes` gets SIGPIPE when head exits.
    let o = run_with_deadline(
        &env,
        &[
            "run",
            "--rm",
            "-q",
            image,
            "sh",
            "-c",
            "yes | head -1; echo end",
        ],
        Duration::from_secs(60),
    );
    let (so, se) = out(&o);
    assert!(o.status.success(), "{so}{se}");
    assert_eq!(so, "y\nend\n");
    // The emulated command as the init's only child, killed by SIGPIPE itself.
    let o = run_with_deadline(
        &env,
        &[
            "run",
            "--rm",
            "-q",
            image,
            "sh",
            "-c",
            "yes | true; kill -PIPE $$",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(141), "{:?}", out(&o));
}

/// `xrun run … yes | head -1` on the host: the container's output pipe closes; xrun and the
/// container end promptly.
#[test]
fn container_output_piped_to_head_ends_promptly() {
    let Some(env) = setup("busybox-arm64", "linux/arm64") else {
        return;
    };
    let mut cmd = std_cmd(&env);
    let mut child = cmd
        .args(["run", "--rm", "-q", "localhost/busybox-arm64:latest", "yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "y\n");
    // The reader is gone now (dropped above): like `head -1` exiting.
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // Killed by SIGPIPE in the container: 141, as a shell pipeline reports it.
            assert!(!status.success() || status.code() == Some(0), "{status:?}");
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("xrun run … yes did not end after its output pipe closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing left running under this store.
    let o = run_with_deadline(&env, &["ps", "-q"], Duration::from_secs(20));
    assert!(out(&o).0.trim().is_empty(), "{:?}", out(&o));
}

#[test]
fn dry_run_shows_the_emulated_plan() {
    let Some(env) = setup("busybox-arm64", "linux/arm64") else {
        return;
    };
    let o = run_with_deadline(
        &env,
        &["run", "--dry-run", "localhost/busybox-arm64:latest", "true"],
        Duration::from_secs(30),
    );
    let (so, se) = out(&o);
    assert!(o.status.success(), "{so}{se}");
    assert!(so.contains("emulated"), "{so}");
    assert!(so.contains("emulated CPU"), "{so}");
    assert!(
        so.contains("qemu-aarch64") || so.contains("aarch64"),
        "{so}"
    );
    // Nothing was created.
    let o = run_with_deadline(&env, &["ps", "-a", "-q"], Duration::from_secs(20));
    assert!(out(&o).0.trim().is_empty());
}
