//! The vm route as a container like the others, with the real binary, real qemu-system (TCG
//! here) and the guest `ci/guest-image` builds: `exec` (streams, exit codes, `-i`, `-e`,
//! `-w`, `-u`, `-t`, signals, several at once, through `xrun exec` and through `docker exec` against
//! `xrun serve`), `--read-only`, `--tmpfs`, `--pids-limit` inside the guest, `--memory` and
//! `--cpus` in the guest and on qemu's host cgroup, and `-v` over 9p (or its refusal when
//! the guest kernel has no 9p). One boot per test, several checks in each.
mod common;
#[path = "api_support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use common::skip;

static BOOTS: Mutex<()> = Mutex::new(());

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

/// `xrun --root ROOT ARGS` with `input` on stdin.
fn xrun_in(root: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut c = Command::new(support::XRUN)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("XRUN_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut i = c.stdin.take().unwrap();
    i.write_all(input).unwrap();
    drop(i);
    c.wait_with_output().unwrap()
}

/// The qemu process of container `id` (its record's pid is qemu's).
fn qemu_pid(root: &Path, id: &str) -> u32 {
    let o = Command::new(support::XRUN)
        .arg("--root")
        .arg(root)
        .args(["inspect", id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    let pid = v["State"]["Pid"]
        .as_u64()
        .or_else(|| v["pid"]["pid"].as_u64())
        .or_else(|| v["pid"].as_u64())
        .unwrap_or_else(|| panic!("no pid in {v}")) as u32;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("qemu-system"),
        "pid {pid} is not qemu"
    );
    pid
}

/// The v1 cgroup directory of `pid` for `controller` (`None` on pure cgroup v2).
fn v1_cgroup(pid: u32, controller: &str) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(&path[1..])
        })
    })
}

#[test]
fn exec_into_a_running_vm_container_cli_and_api() {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    // Builds the guest (or finds it cached) and checks qemu is here.
    if common::vm_env("busybox-amd64").is_none() {
        return;
    }
    let s = support::Service::start();
    let root = s.root();
    let o = s.xrun(&[
        "run",
        "-d",
        "--route",
        "vm",
        "--platform",
        "linux/amd64",
        "--name",
        "vmx",
        support::IMAGE,
        "sh",
        "-c",
        "echo main > /main-was-here; exec sleep 600",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // The VM booted without its exec slots' devices (they cost boot time under TCG): the
    // first exec plugs them through qemu's monitor.
    let vm_run = root
        .join("containers")
        .join(stdout(&o).trim())
        .join("vm-run");
    assert!(vm_run.join("qmp.sock").exists(), "{}", vm_run.display());
    let plugged = |i: u32| vm_run.join(format!("exec-{i}.plugged")).exists();
    assert!(!plugged(0));

    // Streams and the exit code come back; the process sees the container's root.
    let o = s.xrun(&[
        "exec",
        "vmx",
        "sh",
        "-c",
        "cat /main-was-here; echo to-err >&2; ls -a /.xrun | wc -l; \
         ls /sys/class/virtio-ports | wc -l; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // The main command's four ports (stdout, stderr, exit, control) and slot 0's five.
    assert_eq!(stdout(&o), "main\n2\n9\n", "{}", text(&o));
    assert!(plugged(0) && !plugged(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("to-err"),
        "{}",
        text(&o)
    );
    // It runs beside the main command (one guest, one process table).
    let o = s.xrun(&["exec", "vmx", "pidof", "sleep"]);
    assert!(o.status.success(), "{}", text(&o));

    // -e, -w, -u (a name, resolved in the image), the container's environment kept.
    let o = s.xrun(&[
        "exec",
        "-e",
        "FOO=bar baz",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "vmx",
        "sh",
        "-c",
        "echo \"$FOO|$(pwd)|$(id -u)|${PATH:+path}\"",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "bar baz|/tmp|65534|path\n", "{}", text(&o));

    // -i: stdin to the end, even when it ends at once.
    let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let o = xrun_in(&root, &["exec", "-i", "vmx", "sh", "-c", "wc -c"], &input);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o).trim(), "200000", "{}", text(&o));
    let o = xrun_in(&root, &["exec", "-i", "vmx", "cat"], b"x\n");
    assert_eq!(stdout(&o), "x\n", "{}", text(&o));

    // Docker's exit codes.
    let o = s.xrun(&["exec", "vmx", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    let o = s.xrun(&["exec", "vmx", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", text(&o));

    // -t: a terminal in the guest (a virtio console) of the caller's size, on a real pty.
    if Command::new("script").arg("--version").output().is_ok() {
        let line = format!(
            "stty rows 33 cols 111; {} --root {} exec -t vmx sh -c 'tty; stty size; echo $TERM; exit 6'",
            support::XRUN,
            root.display()
        );
        let o = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env_remove("XRUN_ROOT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = stdout(&o).replace('\r', "");
        assert_eq!(o.status.code(), Some(6), "{}", text(&o));
        assert!(out.contains("/dev/hvc"), "{out}");
        assert!(out.contains("33 111\nxterm\n"), "{out}");
    } else {
        skip("no script(1): exec -t not exercised");
    }

    // Signals to xrun exec reach the process in the guest.
    let mut k = Command::new(support::XRUN)
        .arg("--root")
        .arg(&root)
        .args([
            "exec",
            "vmx",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 1; done",
        ])
        .env_remove("XRUN_ROOT")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = std::io::BufReader::new(k.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(k.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut r, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(k.wait().unwrap().code(), Some(7));

    // Several at once, more than the VM's slots (the rest wait for a free one).
    let n = xrun::vm::EXEC_SLOTS + 2;
    let kids: Vec<_> = (0..n)
        .map(|i| {
            Command::new(support::XRUN)
                .arg("--root")
                .arg(&root)
                .args(["exec", "vmx", "sh", "-c"])
                .arg(format!("sleep 1; echo exec-{i}"))
                .env_remove("XRUN_ROOT")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "exec {i}: {}", text(&o));
        assert_eq!(stdout(&o), format!("exec-{i}\n"));
    }
    assert!((0..xrun::vm::EXEC_SLOTS).all(plugged));

    // A client that goes away takes its process with it (the slot is free again).
    let mut k = Command::new(support::XRUN)
        .arg("--root")
        .arg(&root)
        .args(["exec", "vmx", "sh", "-c", "echo up; exec sleep 300"])
        .env_remove("XRUN_ROOT")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(k.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "up\n");
    k.kill().unwrap();
    let _ = k.wait();
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let o = s.xrun(&["exec", "vmx", "sh", "-c", "pidof sleep | wc -w"]);
        stdout(&o).trim() == "1"
    });
    assert!(gone, "the exec'd sleep outlived its client");

    // The same through the Docker API: docker exec against xrun serve.
    if support::have_docker() {
        let o = s.docker(&["exec", "vmx", "sh", "-c", "cat /main-was-here; exit 4"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert_eq!(stdout(&o), "main\n", "{}", text(&o));
        let o = s.docker(&[
            "exec",
            "-u",
            "nobody",
            "-w",
            "/etc",
            "vmx",
            "sh",
            "-c",
            "id -u; pwd",
        ]);
        assert_eq!(stdout(&o), "65534\n/etc\n", "{}", text(&o));
    }
    let o = s.xrun(&["rm", "-f", "vmx"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Removes a container when dropped (a failed assertion leaves no VM running).
struct RmOnDrop<'a>(&'a Path, String);

impl Drop for RmOnDrop<'_> {
    fn drop(&mut self) {
        let _ = xrun_in(self.0, &["rm", "-f", &self.1], b"");
    }
}

/// `exec` into a running arm64 VM container (`-M virt`; the exec slots' ports on
/// virtio-serial-pci): streams, the exit code, `-i` to the end, 127, on the default arm64
/// guest (xrun's own kernel where `ci/guest-image` built it).
#[test]
fn exec_into_a_running_arm64_vm_container() {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env_for("arm64", "busybox-arm64") else {
        return;
    };
    let root = env.root();
    let name = format!("vmx-arm64-{}", std::process::id());
    let o = xrun_in(
        &root,
        &[
            "run",
            "-d",
            "--route",
            "vm",
            "--network",
            "none",
            "--platform",
            "linux/arm64",
            "--name",
            &name,
            "localhost/busybox-arm64:latest",
            "sh",
            "-c",
            "echo main > /main-was-here; exec sleep 600",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", text(&o));
    let _rm = RmOnDrop(&root, name.clone());
    let o = xrun_in(
        &root,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "uname -m; cat /main-was-here; echo to-err >&2; pidof sleep >/dev/null && echo beside; exit 3",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(stdout(&o), "aarch64\nmain\nbeside\n", "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("to-err"),
        "{}",
        text(&o)
    );
    let input: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let o = xrun_in(&root, &["exec", "-i", &name, "sh", "-c", "wc -c"], &input);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o).trim(), "100000", "{}", text(&o));
    let o = xrun_in(&root, &["exec", &name, "no-such-command"], b"");
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    let o = xrun_in(&root, &["rm", "-f", &name], b"");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn read_only_tmpfs_and_limits_in_the_guest_and_on_qemu() {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    let root = env.root();
    let o = env
        .cmd()
        .args([
            "run",
            "-d",
            "--route",
            "vm",
            "--read-only",
            "--tmpfs",
            "/run:size=8m",
            "--tmpfs",
            "/scratch",
            "--pids-limit",
            "20",
            "--memory",
            "300m",
            "--cpus",
            "2",
            "localhost/busybox-amd64:latest",
            "sleep",
            "600",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let id = stdout(&o).trim().to_string();
    let exec = |script: &str| {
        let o = xrun_in(&root, &["exec", &id, "sh", "-c", script], b"");
        assert!(o.status.success(), "{script}: {}", text(&o));
        stdout(&o)
    };

    // --read-only: the root refuses writes (EROFS); the tmpfs mounts take them.
    let out = exec("touch /x 2>&1; echo rc=$?");
    assert!(
        out.contains("Read-only file system") && out.contains("rc=1"),
        "{out}"
    );
    let out = exec(
        "echo a > /run/a && cat /run/a; grep -E ' /run | /scratch ' /proc/mounts; \
         cp /bin/busybox /scratch/bb && /scratch/bb true; echo exec-rc=$?",
    );
    assert!(out.starts_with("a\n"), "{out}");
    let run_line = out.lines().find(|l| l.contains(" /run ")).unwrap();
    assert!(
        run_line.contains("size=8192k") && run_line.contains("nosuid"),
        "{out}"
    );
    let scratch = out.lines().find(|l| l.contains(" /scratch ")).unwrap();
    assert!(scratch.contains("noexec"), "{out}");
    assert!(out.contains("exec-rc=126"), "noexec not enforced: {out}");

    // --memory and --cpus inside: the guest's RAM and vCPUs.
    let out = exec("nproc; grep MemTotal /proc/meminfo");
    let mut l = out.lines();
    assert_eq!(l.next(), Some("2"), "{out}");
    let kb: u64 = l
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (200 * 1024..=300 * 1024).contains(&kb),
        "MemTotal {kb} kB for --memory 300m"
    );

    // --pids-limit: the container's cgroup in the guest, seen at /sys/fs/cgroup.
    let out = exec(
        "cat /sys/fs/cgroup/pids.max; \
         for i in $(seq 40); do sleep 5 & done 2>&1 | grep -c \"can't fork\"; true",
    );
    let mut l = out.lines();
    assert_eq!(l.next(), Some("20"), "{out}");
    let refused: u32 = l.next().unwrap_or("0").trim().parse().unwrap_or(0);
    assert!(refused > 0, "40 processes under pids.max 20: {out}");

    // qemu itself: in a host cgroup limited to the guest's RAM + qemu's overhead and 2 CPUs.
    let pid = qemu_pid(&root, &id);
    if let Some(mem) = v1_cgroup(pid, "memory") {
        let limit: u64 = std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let want = (300 + xrun::vm::cgroup::QEMU_OVERHEAD_MIB) << 20;
        assert_eq!(limit, want, "{}", mem.display());
        let cpu = v1_cgroup(pid, "cpu").unwrap();
        let quota = std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "200000");
    } else {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let rel = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let dir = Path::new("/sys/fs/cgroup").join(&rel[1..]);
        let max = std::fs::read_to_string(dir.join("cpu.max")).unwrap();
        assert_eq!(max.trim(), "200000 100000");
    }
    let o = env.cmd().args(["rm", "-f", &id]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn volumes_over_9p_or_a_clear_refusal() {
    volumes_over_9p("amd64");
}

/// `-v` on arm64 (`virtio-9p-pci` on `-M virt`): xrun's own arm64 kernel has 9p; the Debian
/// arm64 guest (the fallback where it is not built) refuses with one line.
#[test]
fn arm64_volumes_over_9p_or_a_clear_refusal() {
    volumes_over_9p("arm64");
}

fn volumes_over_9p(arch: &str) {
    let _b = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env_for(arch, &format!("busybox-{arch}")) else {
        return;
    };
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("given"), "from-host\n").unwrap();
    let vol = |d: &tempfile::TempDir, mode: &str| format!("{}:{mode}", d.path().display());
    let args = [
        "run".to_string(),
        "--rm".into(),
        "--route".into(),
        "vm".into(),
        "-v".into(),
        vol(&rw, "/data"),
        "-v".into(),
        vol(&ro, "/in:ro"),
        "--platform".into(),
        format!("linux/{arch}"),
        format!("localhost/busybox-{arch}:latest"),
        "sh".into(),
        "-c".into(),
        "echo from-guest > /data/made; cat /in/given; echo x > /in/nope 2>&1; echo ro-rc=$?; uname -m".into(),
    ];
    let o = env.cmd().args(&args).output().unwrap();
    let guest = xrun::vm::Guest::locate(arch, &env.root().join("cache"));
    if !guest.as_ref().is_ok_and(|g| g.has_9p()) {
        // The refusal is one clear line, before any boot.
        assert_eq!(o.status.code(), Some(125), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("needs 9p"),
            "{}",
            text(&o)
        );
        skip(&format!(
            "the {arch} guest kernel has no 9p: -v refused as expected, mounts not exercised"
        ));
        return;
    }
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("from-host\n"), "{}", text(&o));
    let machine = if arch == "arm64" {
        "aarch64\n"
    } else {
        "x86_64\n"
    };
    assert!(out.ends_with(machine), "{}", text(&o));
    assert!(out.contains("ro-rc=1"), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("made")).unwrap(),
        "from-guest\n"
    );
    assert!(!ro.path().join("nope").exists());
}
