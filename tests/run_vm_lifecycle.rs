//! VM-route containers are first-class containers: `run -d`, `create`/`start`, `ps`, `logs`,
//! `kill`, `stop`, `rm -f`, a killed monitor, and `-it` on a terminal, with the real binary,
//! real qemu-system (TCG here) and the guest `ci/guest-image` builds. Each boot costs
//! seconds: the boots are few (8 in this file) and serialized.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{TestEnv, skip};

static BOOTS: Mutex<()> = Mutex::new(());

const IMAGE: &str = "localhost/busybox-amd64:latest";

/// A test environment with the busybox image loaded, or `None` (reason printed) when the VM
/// route cannot work here.
fn setup() -> Option<TestEnv> {
    common::vm_env("busybox-amd64")
}

fn run(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `xrun run -d --route vm …`: the container id.
fn run_detached(env: &TestEnv, extra: &[&str], cmd: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--route", "vm"];
    args.extend(extra);
    args.push(IMAGE);
    args.extend(cmd);
    let o = run(env, &args);
    assert!(o.status.success(), "{}", text(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64, "{}", text(&o));
    id
}

/// The `ps -a` line of container `key` (id prefix or name).
fn ps_line(env: &TestEnv, key: &str) -> String {
    let o = run(env, &["ps", "-a"]);
    assert!(o.status.success(), "{}", text(&o));
    stdout(&o)
        .lines()
        .find(|l| l.starts_with(&key[..12.min(key.len())]) || l.ends_with(key))
        .unwrap_or_else(|| panic!("{key} not in ps -a:\n{}", stdout(&o)))
        .to_string()
}

fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// qemu processes whose command line mentions `root` (this environment's).
fn qemus_of(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().into_owned();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains("qemu-system") && c.contains(&needle) {
                v.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    v
}

fn assert_no_qemu(env: &TestEnv) {
    assert!(
        wait_for(10, || qemus_of(&env.root()).is_empty()),
        "qemu left running: {:?}",
        qemus_of(&env.root())
    );
}

fn container_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.root().join("containers").join(id)
}

#[test]
fn detached_vm_container_logs_signals_and_stops() {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let t = Instant::now();
    let id = run_detached(
        &env,
        &["--name", "web"],
        &[
            "sh",
            "-c",
            "echo out-line; echo err-line >&2; trap 'echo got-usr1' USR1; while :; do sleep 1; done",
        ],
    );
    eprintln!("run -d returned after {:?} (boot included)", t.elapsed());
    let line = ps_line(&env, "web");
    assert!(line.contains(" vm ") && line.contains("Up "), "{line}");
    let o = run(&env, &["ps"]);
    assert!(stdout(&o).contains(&id[..12]), "{}", text(&o));

    // The log keeps stdout and stderr apart; a signal reaches the command in the guest.
    assert!(
        wait_for(60, || {
            let o = run(&env, &["logs", "web"]);
            stdout(&o) == "out-line\n" && String::from_utf8_lossy(&o.stderr) == "err-line\n"
        }),
        "{}",
        text(&run(&env, &["logs", "web"]))
    );
    let o = run(&env, &["kill", "-s", "USR1", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        wait_for(60, || stdout(&run(&env, &["logs", "web"]))
            .contains("got-usr1")),
        "{}",
        text(&run(&env, &["logs", "web"]))
    );
    assert!(ps_line(&env, "web").contains("Up "));
    // exec reaches into the guest (tests/vm_parity.rs has the details).
    let o = run(&env, &["exec", "web", "sh", "-c", "echo via-exec; exit 2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(stdout(&o), "via-exec\n", "{}", text(&o));

    // `logs -f` follows until the container stops; stop sends SIGTERM into the guest: the
    // command (not PID 1 there) dies of it, well within the timeout.
    let follow = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .env("XRUN_ROOT", env.root())
        .env("XRUN_CONFIG", env.config_path())
        .args(["logs", "-f", "web"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let o = run(&env, &["stop", "-t", "30", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    let line = ps_line(&env, "web");
    assert!(line.contains("Exited (143)"), "{line}");
    let followed = follow.wait_with_output().unwrap();
    assert!(
        stdout(&followed).contains("out-line") && stdout(&followed).contains("got-usr1"),
        "{}",
        text(&followed)
    );
    assert_no_qemu(&env);
    assert!(
        !container_dir(&env, &id).join("vm-run").exists(),
        "the run's files stay after the exit"
    );
    let o = run(&env, &["rm", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!container_dir(&env, &id).exists());
}

#[test]
fn created_vm_container_keeps_its_disk_across_starts_until_rm() {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    // What a VM cannot honour is refused up front, in one line, creating nothing.
    let o = run(
        &env,
        &[
            "create",
            "--route",
            "vm",
            "--network",
            "host",
            IMAGE,
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("--network host is not supported on the vm route"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(stdout(&run(&env, &["ps", "-aq"])), "");
    let o = run(
        &env,
        &[
            "create",
            "--route",
            "vm",
            "--name",
            "keep",
            IMAGE,
            "sh",
            "-c",
            "cat /data/f 2>/dev/null; mkdir -p /data; echo run >> /data/f; wc -l < /data/f; hostname; exit 5",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64, "{}", text(&o));
    assert!(ps_line(&env, "keep").contains("Created"));
    assert!(ps_line(&env, "keep").contains(" vm "));
    let dir = container_dir(&env, &id);
    assert!(dir.join("vm.json").is_file());

    let o = run(&env, &["start", "-a", "keep"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    // Docker's default hostname: the short id.
    assert_eq!(stdout(&o), format!("1\n{}\n", &id[..12]), "{}", text(&o));
    assert!(ps_line(&env, "keep").contains("Exited (5)"));
    assert!(dir.join("disk.ext4").is_file());

    // The second start sees the first one's file (its own layer disk).
    let o = run(&env, &["start", "-a", "keep"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!("run\n2\n{}\n", &id[..12]),
        "{}",
        text(&o)
    );
    assert_no_qemu(&env);

    let o = run(&env, &["rm", "keep"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dir.exists(), "rm leaves {}", dir.display());
    let o = run(&env, &["ps", "-a"]);
    assert!(!stdout(&o).contains("keep"), "{}", text(&o));
}

#[test]
fn kill_rm_force_and_a_killed_monitor_leave_nothing_running() {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    // kill (SIGKILL): the VM goes, 137 like Docker.
    let id = run_detached(
        &env,
        &["--name", "k"],
        &["sh", "-c", "trap '' TERM; echo ready; sleep 1000"],
    );
    let o = run(&env, &["kill", "k"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        wait_for(20, || ps_line(&env, "k").contains("Exited (137)")),
        "{}",
        ps_line(&env, "k")
    );
    assert_no_qemu(&env);

    // start (detached) again; stop of a command that ignores SIGTERM: killed after the
    // timeout, 137.
    let readies = || stdout(&run(&env, &["logs", "k"])).matches("ready").count();
    let before = readies();
    let o = run(&env, &["start", "k"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(ps_line(&env, "k").contains("Up "), "{}", ps_line(&env, "k"));
    // Once the command ignores SIGTERM (it said "ready" once more).
    assert!(
        wait_for(60, || readies() == before + 1),
        "{}",
        text(&run(&env, &["logs", "k"]))
    );
    let t = Instant::now();
    let o = run(&env, &["stop", "-t", "2", "k"]);
    assert!(o.status.success(), "{}", text(&o));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert!(
        ps_line(&env, "k").contains("Exited (137)"),
        "{}",
        ps_line(&env, "k")
    );
    assert_no_qemu(&env);

    // start (detached) again, then rm -f: gone, nothing running.
    let o = run(&env, &["start", "k"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(ps_line(&env, "k").contains("Up "), "{}", ps_line(&env, "k"));
    assert!(!qemus_of(&env.root()).is_empty());
    let o = run(&env, &["rm", "-f", "k"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!container_dir(&env, &id).exists());
    assert_no_qemu(&env);

    // A killed monitor: Exited (unknown), its qemu goes with it.
    let id = run_detached(&env, &["--name", "m"], &["sleep", "1000"]);
    let needle = format!("internal monitor {id}");
    let monitor = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().parse::<i32>().unwrap())
        .expect("the monitor runs");
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    assert_no_qemu(&env);
    assert!(
        wait_for(10, || ps_line(&env, "m").contains("Exited (unknown)")),
        "{}",
        ps_line(&env, "m")
    );
    let o = run(&env, &["rm", "m"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!container_dir(&env, &id).exists());
}

#[test]
fn it_gives_an_interactive_terminal() {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    if Command::new("tmux").arg("-V").output().is_err() {
        return skip("tmux is not installed");
    }
    let scratch = env.scratch();
    let result = scratch.join("result");
    let session = format!("xrun-vm-{}", std::process::id());
    let script = format!(
        "XRUN_ROOT={root} XRUN_CONFIG={cfg} {bin} run -it --rm --route vm -q {IMAGE} sh; \
         echo EXIT=$? > {res}.tmp; stty -a >> {res}.tmp; mv {res}.tmp {res}; sleep 60",
        root = env.root().display(),
        cfg = env.config_path().display(),
        bin = env!("CARGO_BIN_EXE_xrun"),
        res = result.display(),
    );
    let tmux = |args: &[&str]| {
        let o = Command::new("tmux").args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let st = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "30"])
        .arg(&script)
        .status()
        .unwrap();
    assert!(st.success());
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .status();
        }
    }
    let _k = Kill(session.clone());
    let pane = || tmux(&["capture-pane", "-p", "-t", &session]);
    assert!(
        wait_for(120, || pane().lines().any(|l| l.trim_end().ends_with('#'))),
        "no prompt:\n{}",
        pane()
    );
    // A controlling terminal of the pane's size; ^C interrupts the foreground command only.
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "tty; stty size; echo hi-$((6*7))",
        "Enter",
    ]);
    assert!(wait_for(60, || pane().contains("hi-42")), "{}", pane());
    let p = pane();
    assert!(p.contains("/dev/hvc0") && p.contains("30 100"), "{p}");
    assert!(!p.contains("job control turned off"), "{p}");
    let t = Instant::now();
    tmux(&["send-keys", "-t", &session, "sleep 100", "Enter"]);
    std::thread::sleep(Duration::from_secs(2));
    tmux(&["send-keys", "-t", &session, "C-c"]);
    tmux(&["send-keys", "-t", &session, "echo still-$((1+1))", "Enter"]);
    assert!(wait_for(60, || pane().contains("still-2")), "{}", pane());
    assert!(
        t.elapsed() < Duration::from_secs(90),
        "^C did not interrupt"
    );
    tmux(&["send-keys", "-t", &session, "exit 3", "Enter"]);
    assert!(
        wait_for(60, || result.exists()),
        "the VM did not end:\n{}",
        pane()
    );
    let r = std::fs::read_to_string(&result).unwrap();
    assert!(r.starts_with("EXIT=3\n"), "{r}");
    // xrun's terminal is back in its mode (canonical, echo).
    assert!(
        r.split_whitespace().any(|w| w == "icanon") && r.split_whitespace().any(|w| w == "echo"),
        "{r}"
    );
    assert_no_qemu(&env);
    let o = run(&env, &["ps", "-aq"]);
    assert_eq!(stdout(&o), "", "--rm leaves {}", text(&o));
}
