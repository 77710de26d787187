//! xrun as an OCI runtime (`xrun-runc`): runc's lifecycle with the state JSON checked at each
//! step, exec with a process.json, ps/pause/resume, the same bundle under runc compared, an
//! arm64 bundle under emulation, an unrunnable bundle refused with reasons, and the real
//! engines: containerd (its own daemon, root, state and socket under a temp dir; `ctr run
//! --runc-binary` through the runc v2 shim) and Podman (`--runtime`).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `xrun-runc`: a link to the xrun binary under that name (argv[0] selects the runtime).
fn runc_link(dir: &Path) -> PathBuf {
    let link = dir.join("xrun-runc");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xrun"), &link).unwrap();
    }
    link
}

/// A bundle unpacked from fixture `name` with `args` as its process (no terminal).
fn bundle(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let b = dir.join(format!("bundle-{name}"));
    let image = common::fixture_ref(name);
    let image = image.strip_prefix("oci:").unwrap();
    let out = Command::new("umoci")
        .args(["unpack", "--image", image])
        .arg(&b)
        .output()
        .expect("umoci");
    assert!(out.status.success(), "umoci: {}", text(&out.stderr));
    edit_config(&b, |c| {
        c["process"]["terminal"] = Value::Bool(false);
        c["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
    });
    b
}

fn edit_config(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let path = bundle.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One runtime state root and the link, for one test.
struct Runtime {
    dir: tempfile::TempDir,
    link: PathBuf,
}

impl Runtime {
    fn new() -> Runtime {
        let dir = tempfile::tempdir().unwrap();
        let link = runc_link(dir.path());
        Runtime { dir, link }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.link);
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "xrun-runc {args:?}: {}\n{}",
            o.status,
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    /// `create`, the container's stdout and stderr going to `out`.
    fn create(&self, bundle: &Path, id: &str, out: &Path) -> Output {
        let f = std::fs::File::create(out).unwrap();
        self.cmd(&["create", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(self.dir.path().join(format!("{id}.pid")))
            .arg(id)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .output()
            .unwrap()
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.state(id);
            if s["status"] == want || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn prepared() -> bool {
    if !common::is_root() {
        common::skip("needs root (namespaces, cgroups)");
        return false;
    }
    true
}

/// What containerd's shim does, in a child process of its own: becomes the reaper of
/// orphans, runs `create` (the container's output to `out`) and `start`, and exits with the
/// container's status (reaping everything else). The test process itself never becomes a
/// subreaper: orphans it does not reap would keep a PID namespace from ending.
const SHIM: &str = r#"
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
rt, root, bundle, cid, pidf, out = sys.argv[1:7]
extra = sys.argv[7:]
f = open(out, "w")
r = subprocess.run([rt, "--root", root] + extra + ["create", "--bundle", bundle, "--pid-file", pidf, cid],
                   stdin=subprocess.DEVNULL, stdout=f, stderr=f)
if r.returncode:
    sys.exit(200)
pid = int(open(pidf).read())
subprocess.run([rt, "--root", root, "start", cid], check=True)
while True:
    p, st = os.waitpid(-1, 0)
    if p == pid:
        sys.exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))
"#;

/// Runs bundle `b` as `id` to its end through [`SHIM`]; returns the exit code and output.
fn run_to_exit(rt: &Runtime, b: &Path, id: &str, global: &[&str]) -> (i32, String) {
    let out = rt.dir.path().join(format!("{id}.out"));
    let st = Command::new("python3")
        .arg("-c")
        .arg(SHIM)
        .arg(&rt.link)
        .arg(rt.root())
        .arg(b)
        .arg(id)
        .arg(rt.dir.path().join(format!("{id}.pid")))
        .arg(&out)
        .args(global)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    assert_ne!(st.code(), Some(200), "create failed: {output}");
    (st.code().unwrap_or(-1), output)
}

fn pid_of(rt: &Runtime, id: &str) -> i32 {
    std::fs::read_to_string(rt.dir.path().join(format!("{id}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn lifecycle_with_state_at_each_step() {
    if !prepared() {
        return;
    }
    let rt = Runtime::new();
    let b = bundle(rt.dir.path(), "busybox-amd64", &["sleep", "300"]);
    let out = rt.dir.path().join("out");
    let o = rt.create(&b, "life", &out);
    assert!(o.status.success(), "create: {}", text(&o.stderr));
    let s = rt.state("life");
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], "life");
    assert_eq!(s["ociVersion"], "1.1.0");
    assert_eq!(s["bundle"], b.to_str().unwrap());
    assert_eq!(s["rootfs"], b.join("rootfs").to_str().unwrap());
    assert_eq!(s["owner"], "");
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(pid, pid_of(&rt, "life") as i64, "pid file and state agree");
    assert!(s["created"].as_str().unwrap().starts_with("20"));
    // A second create of the same id is refused; start twice is refused.
    let dup = rt.create(&b, "life", &rt.dir.path().join("out2"));
    assert_eq!(dup.status.code(), Some(1));
    let err = std::fs::read_to_string(rt.dir.path().join("out2")).unwrap();
    assert!(err.contains("already exists"), "{err}");

    rt.ok(&["start", "life"]);
    assert_eq!(rt.state("life")["status"], "running");
    assert_eq!(rt.state("life")["pid"], pid);
    let again = rt.run(&["start", "life"]);
    assert_eq!(again.status.code(), Some(1));

    // ps lists the init; pause and resume go through the freezer.
    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", "life"])).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    rt.ok(&["pause", "life"]);
    assert_eq!(rt.state("life")["status"], "paused");
    rt.ok(&["resume", "life"]);
    assert_eq!(rt.state("life")["status"], "running");

    // A running container is not deleted without --force.
    let del = rt.run(&["delete", "life"]);
    assert_eq!(del.status.code(), Some(1));
    assert!(
        text(&del.stderr).contains("not stopped"),
        "{}",
        text(&del.stderr)
    );

    // SIGHUP is not fatal to a namespace init without a handler: still running.
    rt.ok(&["kill", "life", "HUP"]);
    assert_eq!(rt.state("life")["status"], "running");
    rt.ok(&["kill", "life", "9"]);
    let s = rt.wait_status("life", "stopped");
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["pid"], 0);
    rt.ok(&["delete", "life"]);
    let gone = rt.run(&["state", "life"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone.stderr).contains("does not exist"));
    // delete --force of what is gone is fine, as runc.
    rt.ok(&["delete", "--force", "life"]);
    assert!(!rt.root().join("life").exists());
}

#[test]
fn exec_with_a_process_json_and_positional() {
    if !prepared() {
        return;
    }
    let rt = Runtime::new();
    let b = bundle(rt.dir.path(), "busybox-amd64", &["sleep", "300"]);
    let o = rt.create(&b, "ex", &rt.dir.path().join("out"));
    assert!(o.status.success(), "create: {}", text(&o.stderr));
    rt.ok(&["start", "ex"]);
    let process = serde_json::json!({
        "terminal": false,
        "user": { "uid": 0, "gid": 0 },
        "args": ["sh", "-c", "echo exec $FOO $(cat /proc/1/cmdline | tr '\\0' ' '); exit 7"],
        "env": ["PATH=/bin:/usr/bin", "FOO=bar"],
        "cwd": "/"
    });
    let p = rt.dir.path().join("process.json");
    std::fs::write(&p, process.to_string()).unwrap();
    let o = rt.run(&["exec", "--process", p.to_str().unwrap(), "ex"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "exec bar sleep 300\n");
    // runc's positional form.
    let o = rt.run(&["exec", "--env", "X=1", "ex", "sh", "-c", "echo $X; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "1\n");
    // Detached with a pid file.
    let pidf = rt.dir.path().join("exec.pid");
    // Its output goes elsewhere: the process keeps what it is given open.
    let st = rt
        .cmd(&[
            "exec",
            "--detach",
            "--pid-file",
            pidf.to_str().unwrap(),
            "ex",
            "sleep",
            "200",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let epid: i64 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", "ex"])).unwrap();
    assert!(pids.contains(&epid), "{pids:?} lacks exec'd {epid}");
    rt.ok(&["kill", "--all", "ex", "KILL"]);
    rt.wait_status("ex", "stopped");
    rt.ok(&["delete", "ex"]);
}

/// `/proc/self/status` lines that runc and xrun-runc must agree on.
fn security_lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| {
            ["Cap", "Seccomp", "NoNewPrivs"]
                .iter()
                .any(|p| l.starts_with(p))
                || l.starts_with("mkdir:")
                || l.starts_with("exit")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn same_bundle_as_runc() {
    if !prepared() {
        return;
    }
    if !Path::new("/usr/sbin/runc").exists() {
        return common::skip("runc not installed");
    }
    let rt = Runtime::new();
    let script = "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status; \
                  mkdir /tmp/x 2>&1 | sed 's/.*mkdir/mkdir/'; ulimit -n; exit 4";
    let b = bundle(rt.dir.path(), "busybox-amd64", &["sh", "-c", script]);
    edit_config(&b, |c| {
        c["process"]["noNewPrivileges"] = Value::Bool(true);
        c["process"]["rlimits"] =
            serde_json::json!([{ "type": "RLIMIT_NOFILE", "hard": 512, "soft": 256 }]);
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
        });
    });
    // runc.
    let runc_root = rt.dir.path().join("runc-root");
    let o = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("cmp-runc")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let runc_code = o.status.code();
    let runc_out = text(&o.stdout);
    // xrun-runc.
    let (code, xrun_out) = run_to_exit(&rt, &b, "cmp", &[]);
    rt.ok(&["delete", "cmp"]);
    assert_eq!(runc_code, Some(4), "runc: {runc_out}\n{}", text(&o.stderr));
    assert_eq!(code, 4, "{xrun_out}");
    assert_eq!(security_lines(&xrun_out), security_lines(&runc_out));
    assert!(xrun_out.contains("Seccomp:\t2"), "{xrun_out}");
    assert!(xrun_out.contains("NoNewPrivs:\t1"), "{xrun_out}");
    assert!(xrun_out.contains("Operation not permitted"), "{xrun_out}");
    assert!(xrun_out.lines().any(|l| l == "256"), "{xrun_out}");
}

#[test]
fn arm64_bundle_runs_under_emulation() {
    if !prepared() {
        return;
    }
    if !xrun::emulation::route::available(&xrun::platform::Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        ..Default::default()
    }) {
        return common::skip("no usable binfmt handler for arm64 (xrun binfmt install arm64)");
    }
    let rt = Runtime::new();
    let b = bundle(
        rt.dir.path(),
        "busybox-arm64",
        &["sh", "-c", "uname -m; exit 5"],
    );
    let log = rt.dir.path().join("log.json");
    let (code, out) = run_to_exit(
        &rt,
        &b,
        "arm",
        &["--log", log.to_str().unwrap(), "--log-format", "json"],
    );
    assert_eq!(code, 5, "{out}");
    assert_eq!(out, "aarch64\n");
    // The caller's bundle is untouched; state shows it.
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"][0], "sh");
    assert_eq!(rt.state("arm")["bundle"], b.to_str().unwrap());
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["level"], "info");
    assert!(
        line["msg"].as_str().unwrap().contains("emulation"),
        "{line}"
    );
    rt.ok(&["delete", "arm"]);
    assert!(!rt.root().join(".xrun-bundles/arm").exists());
}

#[test]
fn unrunnable_bundle_fails_create_with_reasons() {
    if !prepared() {
        return;
    }
    let Some(_) = common::try_fixture("busybox-riscv64") else {
        return common::skip("fixture busybox-riscv64 not built here");
    };
    let rt = Runtime::new();
    // This host's profile without any riscv64 handler or qemu-system: nothing runs riscv64.
    let o = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["host", "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut profile: Value = serde_json::from_slice(&o.stdout).unwrap();
    let handlers = profile["emulation"]["handlers"].as_array_mut().unwrap();
    handlers.retain(|h| h["arch"] != "riscv64");
    profile["emulation"]["qemu_system"] = serde_json::json!({});
    let pf = rt.dir.path().join("profile.json");
    std::fs::write(&pf, profile.to_string()).unwrap();

    let b = bundle(rt.dir.path(), "busybox-riscv64", &["uname", "-m"]);
    let log = rt.dir.path().join("log.json");
    let o = rt
        .cmd(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
        ])
        .arg(&b)
        .arg("rv")
        .env("XRUN_RUNC_HOST_PROFILE", &pf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    for code in ["arch-mismatch", "no-emulator", "linux/riscv64"] {
        assert!(err.contains(code), "{code} missing: {err}");
    }
    let line: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("arch-mismatch"));
    // Nothing is left behind.
    assert!(rt.run(&["state", "rv"]).status.code() == Some(1));
    assert!(!rt.root().join("rv").exists());
}

#[test]
fn refusals_are_clear() {
    let rt = Runtime::new();
    let o = rt.run(&["--systemd-cgroup", "state", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--systemd-cgroup is not supported"));
    let o = rt.run(&["kill", "nope", "NOSIG"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("unknown signal"));
    let o = rt.run(&["state", "../etc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("invalid container id"));
    let v = rt.ok(&["--version"]);
    assert!(v.starts_with("xrun-runc version "), "{v}");
    let f: Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    assert!(
        f["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "createContainer")
    );
    // `xrun runtime …` is the same command line.
    let o = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["runtime", "--root"])
        .arg(rt.root())
        .arg("features")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).unwrap(), f);
}

/// A containerd of the test's own: root, state and sockets under a temp dir; stopped (by its
/// pid) when dropped.
struct Containerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Containerd {
    /// Starts containerd with `extra` appended to its config; `None` when it is not installed.
    fn start(extra: &str, cri: bool) -> Option<Containerd> {
        if Command::new("containerd")
            .arg("--version")
            .output()
            .is_err()
        {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let disabled = if cri {
            ""
        } else {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
        };
        let config = format!(
            "version = 2\n{disabled}root = \"{r}\"\nstate = \"{s}\"\n[grpc]\n  address = \"{g}\"\n\
             [ttrpc]\n  address = \"{t}\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n{extra}\n",
            r = d.join("root").display(),
            s = d.join("state").display(),
            g = d.join("ctd.sock").display(),
            t = d.join("ctd-ttrpc.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.ctr(&["version"]).status.code() != Some(0) {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(c)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("120")
            .arg("ctr")
            .arg("-a")
            .arg(self.dir.path().join("ctd.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}\n{}\n{}",
            o.status,
            text(&o.stderr),
            text(&o.stdout)
        );
        text(&o.stdout)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: signalling the containerd this test started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Fixture `name` as a docker-archive tar tagged `tag`, for `ctr images import` and
/// `podman load`.
fn archive(dir: &Path, name: &str, tag: &str) -> PathBuf {
    let tar = dir.join(format!("{name}.tar"));
    let o = Command::new("skopeo")
        .args(["copy", "-q", &common::fixture_ref(name)])
        .arg(format!("docker-archive:{}:{tag}", tar.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    tar
}

fn arm64_emulated() -> bool {
    xrun::emulation::route::available(&xrun::platform::Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        ..Default::default()
    })
}

#[test]
fn containerd_runs_both_architectures_through_xrun_runc() {
    if !prepared() {
        return;
    }
    let Some(ctd) = Containerd::start("", false) else {
        return common::skip("containerd not installed (ci/setup installs it)");
    };
    let work = tempfile::tempdir().unwrap();
    let link = runc_link(work.path());
    let link = link.to_str().unwrap();
    let amd = archive(work.path(), "busybox-amd64", "xrun.test/busybox:amd64");
    ctd.ctr_ok(&["images", "import", amd.to_str().unwrap()]);

    let o = ctd.ctr(&[
        "run",
        "--runc-binary",
        link,
        "--rm",
        "xrun.test/busybox:amd64",
        "c-amd",
        "sh",
        "-c",
        "echo hi $(uname -m); exit 6",
    ]);
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}\n{}",
        text(&o.stderr),
        ctd.log()
    );
    assert_eq!(text(&o.stdout), "hi x86_64\n");

    // A detached task: exec, ps, pause/resume, kill, delete.
    ctd.ctr_ok(&[
        "run",
        "-d",
        "--runc-binary",
        link,
        "xrun.test/busybox:amd64",
        "c-bg",
        "sleep",
        "300",
    ]);
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c-bg",
        "sh",
        "-c",
        "echo exec-ok; exit 9",
    ]);
    assert_eq!(o.status.code(), Some(9), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "exec-ok\n");
    ctd.ctr_ok(&["task", "pause", "c-bg"]);
    assert!(ctd.ctr_ok(&["task", "ls"]).contains("PAUSED"));
    ctd.ctr_ok(&["task", "resume", "c-bg"]);
    assert!(ctd.ctr_ok(&["task", "ls"]).contains("RUNNING"));
    ctd.ctr_ok(&["task", "kill", "-s", "SIGKILL", "c-bg"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctd.ctr_ok(&["task", "ls"]).contains("STOPPED") {
        assert!(Instant::now() < deadline, "task not stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    ctd.ctr_ok(&["task", "delete", "c-bg"]);
    ctd.ctr_ok(&["containers", "delete", "c-bg"]);
    assert!(!ctd.ctr_ok(&["task", "ls"]).contains("c-bg"));

    if !arm64_emulated() {
        return common::skip("arm64 part: no usable binfmt handler for arm64");
    }
    let arm = archive(work.path(), "busybox-arm64", "xrun.test/busybox:arm64");
    ctd.ctr_ok(&[
        "images",
        "import",
        "--platform",
        "linux/arm64",
        arm.to_str().unwrap(),
    ]);
    let o = ctd.ctr(&[
        "run",
        "--platform",
        "linux/arm64",
        "--runc-binary",
        link,
        "--rm",
        "xrun.test/busybox:arm64",
        "c-arm",
        "uname",
        "-m",
    ]);
    assert!(o.status.success(), "{}\n{}", text(&o.stderr), ctd.log());
    assert_eq!(text(&o.stdout), "aarch64\n");
}

/// The `toml` block after `<!-- cri-config -->` in docs/oci-runtime.md.
fn documented_cri_config() -> String {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/oci-runtime.md")).unwrap();
    let after = doc.split("<!-- cri-config -->").nth(1).expect("marker");
    let body = after.split("```toml").nth(1).unwrap();
    body.split("```").next().unwrap().to_string()
}

#[test]
fn documented_cri_config_registers_the_xrun_handler() {
    if !prepared() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let link = runc_link(work.path());
    let documented =
        documented_cri_config().replace("/usr/local/bin/xrun-runc", link.to_str().unwrap());
    assert!(documented.contains("runtimes.xrun"));
    // The default runtime that `containerd config default` writes, beside which the doc's
    // handler goes.
    let cfg = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  \
         runtime_type = \"io.containerd.runc.v2\"\n{documented}"
    );
    let Some(ctd) = Containerd::start(&cfg, true) else {
        return common::skip("containerd not installed (ci/setup installs it)");
    };
    let plugins = ctd.ctr_ok(&["plugins", "ls"]);
    assert!(
        plugins.lines().any(|l| l.contains("io.containerd.grpc.v1")
            && l.contains("cri")
            && l.trim_end().ends_with("ok")),
        "CRI plugin not loaded:\n{plugins}\n{}",
        ctd.log()
    );
    let dump = Command::new("containerd")
        .arg("--config")
        .arg(ctd.dir.path().join("config.toml"))
        .args(["config", "dump"])
        .output()
        .unwrap();
    let dump = text(&dump.stdout);
    assert!(
        dump.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.xrun]"),
        "{dump}"
    );
    assert!(
        dump.contains(&format!("BinaryName = \"{}\"", link.display())),
        "{dump}"
    );
    // The CRI plugin started with the handler.
    let log = ctd.log();
    let start = log
        .lines()
        .find(|l| l.contains("Start cri plugin with config"))
        .unwrap_or_else(|| panic!("no CRI start line:\n{log}"));
    assert!(
        start.contains("xrun:{Type:io.containerd.runc.v2"),
        "{start}"
    );
    assert!(
        start.contains(&format!("BinaryName:{}", link.display())),
        "{start}"
    );
    // The RuntimeClass in the doc names that handler.
    let doc = std::fs::read_to_string(common::repo_root().join("docs/oci-runtime.md")).unwrap();
    assert!(doc.contains("kind: RuntimeClass") && doc.contains("handler: xrun"));
}

#[test]
fn podman_runs_both_architectures_through_xrun_runc() {
    if !prepared() {
        return;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        return common::skip("podman not installed");
    }
    let work = tempfile::tempdir().unwrap();
    let link = runc_link(work.path());
    let d = work.path();
    let podman = |args: &[&str]| -> Output {
        Command::new("timeout")
            .arg("120")
            .arg("podman")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(["--events-backend", "file", "--runtime"])
            .arg(&link)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut arches = vec![("busybox-amd64", "amd64", "x86_64")];
    if arm64_emulated() {
        arches.push(("busybox-arm64", "arm64", "aarch64"));
    } else {
        common::skip("arm64 part: no usable binfmt handler for arm64");
    }
    for (fixture, tag, machine) in arches {
        let image = format!("xrun.test/busybox:{tag}");
        let tar = archive(d, fixture, &image);
        let o = podman(&["load", "-q", "-i", tar.to_str().unwrap()]);
        assert!(o.status.success(), "load: {}", text(&o.stderr));
        let o = podman(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            &image,
            "sh",
            "-c",
            "echo hi $(uname -m); exit 4",
        ]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
        assert_eq!(text(&o.stdout), format!("hi {machine}\n"));
    }
    let _ = podman(&["rm", "-af"]);
    let _ = podman(&["rmi", "-af"]);
    // Podman's storage mounts (overlay's layer mounts) under the temp dir, innermost first.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(d.to_str().unwrap()))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount").arg("-l").arg(m).status();
    }
}
