//! The native route end to end: the real binary, real namespaces, overlay and cgroups, on a
//! busybox root file system made from the cached Debian package.

#[path = "run_support.rs"]
mod support;

use std::process::Command;

use support::*;

#[test]
fn exit_codes_and_no_leftovers() {
    if !capable() {
        return;
    }
    let _g = exclusive();
    let root = Root::new();
    let before_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        // Network namespaces of any container on the machine (other xrun users run
        // meanwhile); this test's own are checked by tests/network_core.rs.
        .filter(|l| !l.contains(" /run/xrun/net/ns/"))
        .count();
    let before_cg = all_xrun_cgroups();

    let o = root.bb(&[], &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");

    let o = root.bb(&[], &["nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);

    let o = root.bb(&[], &["/etc/notexec"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));

    let o = root.bb(&["-v", "/nonexistent-xrun:/x"], &["true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));

    let o = root.bb(&["-v", "relative:/x"], &["true"]);
    assert_eq!(o.status.code(), Some(125));

    let o = root.bb(&["--memory", "1m"], &["true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("minimum"), "{}", stderr(&o));

    let o = root.bb(&["-u", "nosuchuser"], &["true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("nosuchuser"));

    for args in [
        vec!["logs", "nope"],
        vec!["stop", "nope"],
        vec!["rm", "nope"],
        vec!["exec", "nope", "true"],
    ] {
        let o = root.run(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains("no such container"), "{}", stderr(&o));
    }

    // A name in use.
    let rootfs = busybox_rootfs();
    let o = root.run(&[
        "create",
        "--name",
        "taken",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = root.run(&[
        "run",
        "--name",
        "taken",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    assert!(root.run(&["rm", "taken"]).status.success());

    assert!(
        root.container_dirs().is_empty(),
        "{:?}",
        root.container_dirs()
    );
    assert!(root.mounts().is_empty());
    let after_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        // Network namespaces of any container on the machine (other xrun users run
        // meanwhile); this test's own are checked by tests/network_core.rs.
        .filter(|l| !l.contains(" /run/xrun/net/ns/"))
        .count();
    assert_eq!(before_mounts, after_mounts);
    assert_eq!(before_cg, all_xrun_cgroups());
}

#[test]
fn image_config_user_env_workdir_volumes() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let vol = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        vol.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(vol.path().join("in"), "from host\n").unwrap();
    let envf = vol.path().join("env");
    std::fs::write(&envf, "# comment\nFROMFILE=1\nFOO=file\n").unwrap();
    let v_rw = format!("{}:/data", vol.path().display());
    let o = root.bb(
        &[
            "-u",
            "web",
            "-w",
            "/work",
            "-e",
            "FOO=bar",
            "--env-file",
            envf.to_str().unwrap(),
            "-v",
            &v_rw,
            "--hostname",
            "box",
        ],
        &[
            "sh",
            "-c",
            "id; pwd; echo $FOO $FROMFILE $HOME; hostname; cat /data/in; echo out > /data/out",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "uid=1000(web) gid=1000(web) groups=50(staff)\n/work\nbar 1 /home/web\nbox\nfrom host\n"
    );
    assert_eq!(
        std::fs::read_to_string(vol.path().join("out")).unwrap(),
        "out\n"
    );

    let v_ro = format!("{}:/data:ro", vol.path().display());
    let o = root.bb(&["-v", &v_ro], &["sh", "-c", "echo x > /data/y"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("Read-only"), "{}", stderr(&o));

    let o = root.bb(&["--read-only"], &["touch", "/x"]);
    assert_eq!(o.status.code(), Some(1));
    let o = root.bb(&["-u", "4242:7"], &["id", "-u"]);
    assert_eq!(stdout(&o), "4242\n");
    let o = root.bb(&["--entrypoint", "echo"], &["a", "b"]);
    assert_eq!(stdout(&o), "a b\n");
}

#[test]
fn hardening_like_runc_defaults() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let o = root.bb(
        &[],
        &[
            "sh",
            "-c",
            "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
             wc -c < /proc/timer_list; ls /sys/firmware | wc -l; \
             echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo procsys-ro; \
             unshare -n true 2>/dev/null || echo unshare-denied; \
             unshare -U true 2>/dev/null && echo userns-allowed || echo userns-denied; \
             touch /sys/x 2>/dev/null || echo sys-ro; \
             ls /dev | tr '\\n' ' '; echo; echo $(hostname | wc -c)",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Docker's 14 default capabilities: 0xa80425fb.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[4], "0", "/proc/timer_list masked: {out}");
    assert_eq!(lines[5], "0", "/sys/firmware masked: {out}");
    assert!(
        out.contains("procsys-ro") && out.contains("unshare-denied") && out.contains("sys-ro"),
        "{out}"
    );
    // Needs no capability: only Docker's seccomp profile denies a user namespace.
    assert!(out.contains("userns-denied"), "{out}");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
    ] {
        assert!(
            lines[10].split(' ').any(|d| d == dev),
            "/dev/{dev} missing: {out}"
        );
    }
    assert_eq!(lines[11], "13", "hostname is the 12-digit short id: {out}");

    // The host's interfaces: other tests add and remove veths meanwhile, so the container
    // must see every interface there both before and after, and nothing outside either.
    let host_ifaces = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = host_ifaces();
    let o = root.bb(&["--network", "host"], &["ls", "/sys/class/net"]);
    let after = host_ifaces();
    let seen: std::collections::BTreeSet<String> =
        stdout(&o).split_whitespace().map(String::from).collect();
    for i in before.intersection(&after) {
        assert!(
            seen.contains(i),
            "{i} missing with --network host: {seen:?}"
        );
    }
    for i in &seen {
        assert!(
            before.contains(i) || after.contains(i),
            "{i} is not a host interface: {seen:?}"
        );
    }
    let o = root.bb(&["--network", "none"], &["ls", "/sys/class/net"]);
    assert_eq!(stdout(&o), "lo\n");
    // The default is the bridge network (Docker's): eth0 besides lo.
    let o = root.bb(&[], &["ls", "/sys/class/net"]);
    assert_eq!(stdout(&o), "eth0\nlo\n", "{}", stderr(&o));
}

#[test]
fn limits_bite_and_cgroups_go_away() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    // Memory: allocating past the limit is an OOM kill.
    let o = root.bb(
        &["--memory", "32m"],
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(o.status.code(), Some(137), "{} {}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("survived"));
    // Pids: a fork loop stops at the limit.
    let o = root.bb(
        &["--pids-limit", "10"],
        &["sh", "-c", "n=0; for i in $(seq 30); do sleep 5 & n=$((n+1)); done; echo started; kill $(jobs -p) 2>/dev/null; true"],
    );
    assert!(
        stderr(&o).contains("can't fork")
            || stderr(&o).contains("Resource temporarily unavailable"),
        "{}",
        stderr(&o)
    );
    // CPUs: the CFS quota is set.
    let rootfs = busybox_rootfs();
    let id = stdout(&root.run(&[
        "run",
        "-d",
        "--cpus",
        "0.5",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sleep",
        "30",
    ]))
    .trim()
    .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let dirs = cgroup_dirs(&id);
    assert!(!dirs.is_empty());
    let read = |ctrl: &str, file: &str| -> String {
        let v1 = format!("/sys/fs/cgroup/{ctrl}/xrun/{id}/{file}");
        std::fs::read_to_string(v1)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    if !xrun::runtime::cgroups::is_pure_v2() {
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(
            read("memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read("pids", "pids.max"), "20");
    } else {
        let f = |file: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/xrun/{id}/{file}")).unwrap_or_default()
        };
        assert_eq!(f("cpu.max").trim(), "50000 100000");
        assert_eq!(f("pids.max").trim(), "20");
    }
    assert!(root.run(&["rm", "-f", &id]).status.success());
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
}

#[test]
fn detached_lifecycle_ps_logs_exec_stop_rm() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let o = root.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sh",
        "-c",
        "echo started; trap 'echo got term; exit 7' TERM; while true; do sleep 0.05; done",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64);
    let ps = stdout(&root.run(&["ps"]));
    assert!(
        ps.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains("CONTAINER ID IMAGE COMMAND CREATED STATUS ROUTE NAMES"),
        "{ps}"
    );
    let line = ps
        .lines()
        .find(|l| l.contains(&id[..12]))
        .expect("running container listed");
    assert!(
        line.contains("Up ") && line.contains("native") && line.ends_with("web"),
        "{line}"
    );
    assert!(wait_for(5, || stdout(&root.run(&["logs", "web"])) == "started\n"));

    // exec joins the container's namespaces.
    let o = root.run(&[
        "exec",
        "web",
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | head -c 2; echo; echo $$; \
         grep '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null || echo userns-denied",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], &id[..12]);
    assert_eq!(l[1], "sh");
    assert_ne!(l[2], "1");
    // The exec'd process runs under the container's seccomp filter too.
    assert_eq!(l[3], "Seccomp:\t2", "{out}");
    assert_eq!(l[4], "userns-denied", "{out}");
    assert_eq!(
        root.run(&["exec", "web", "sh", "-c", "exit 4"])
            .status
            .code(),
        Some(4)
    );
    assert_eq!(
        root.run(&["exec", "web", "nosuch"]).status.code(),
        Some(127)
    );
    // The writable layer: changes land in upper/ only.
    assert!(
        root.run(&["exec", "web", "sh", "-c", "echo changed > /etc/motd-x"])
            .status
            .success()
    );
    assert!(
        root.path()
            .join("containers")
            .join(&id)
            .join("upper/etc/motd-x")
            .exists()
    );
    assert!(!rootfs.join("etc/motd-x").exists());

    // rm without -f refuses a running container.
    assert_eq!(root.run(&["rm", "web"]).status.code(), Some(125));
    let o = root.run(&["stop", "-t", "5", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ps = stdout(&root.run(&["ps", "-a"]));
    assert!(ps.contains("Exited (7)"), "{ps}");
    assert!(!stdout(&root.run(&["ps"])).contains(&id[..12]));
    assert_eq!(stdout(&root.run(&["logs", "web"])), "started\ngot term\n");
    assert!(root.mounts().is_empty());
    assert!(cgroup_dirs(&id).is_empty());

    // Started again from the same writable layer, then killed.
    let o = root.run(&["start", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        root.run(&["exec", "web", "cat", "/etc/motd-x"])
            .status
            .success()
    );
    let o = root.run(&["kill", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_for(5, || stdout(&root.run(&["ps", "-a"]))
        .contains("Exited (137)")));
    assert!(root.run(&["rm", "web"]).status.success());
    assert!(root.container_dirs().is_empty());
    assert!(root.mounts().is_empty());
}

#[test]
fn create_then_start_attached() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let o = root.run(&[
        "create",
        "--name",
        "c1",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sh",
        "-c",
        "echo hi; exit 9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&root.run(&["ps", "-a"])).contains("Created"));
    let o = root.run(&["start", "-a", "c1"]);
    assert_eq!(o.status.code(), Some(9));
    assert_eq!(stdout(&o), "hi\n");
    assert!(stdout(&root.run(&["ps", "-a"])).contains("Exited (9)"));
    assert!(root.run(&["rm", "c1"]).status.success());
}

#[test]
fn stale_state_is_exited_unknown_and_cleaned() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let o = root.run(&[
        "run",
        "-d",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sleep",
        "60",
    ]);
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64, "{}", stderr(&o));
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            root.path()
                .join("containers")
                .join(&id)
                .join("container.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = rec["owner"]["pid"].as_i64().unwrap() as i32;
    let pid = rec["pid"]["pid"].as_i64().unwrap() as i32;
    // The monitor dies without recording anything, and so does the container.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    assert!(wait_for(5, || stdout(&root.run(&["ps", "-a"]))
        .contains("Exited (unknown)")));
    // The next run cleans up the leftovers (mount, cgroups, runtime state).
    assert!(root.bb(&[], &["true"]).status.success());
    assert!(root.mounts().is_empty());
    assert!(cgroup_dirs(&id).is_empty());
    assert!(stdout(&root.run(&["ps", "-a"])).contains("Exited (unknown)"));
    assert!(root.run(&["rm", &id[..8]]).status.success());
}

#[test]
fn init_reaps_and_forwards_signals() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let o = root.bb(
        &["--init"],
        &["sh", "-c", "(sleep 0 & sleep 0 &); sleep 0.3; cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o stat | grep -c Z"],
    );
    let out = stdout(&o);
    assert!(
        out.contains("/.xrun/xrun internal init -- sh"),
        "{out} {}",
        stderr(&o)
    );
    assert!(out.ends_with("0\n"), "zombies left: {out}");

    // xrun run forwards SIGTERM; the init passes it on to the command.
    let rootfs = busybox_rootfs();
    let mut child = root
        .cmd(&[
            "run",
            "--rm",
            "--init",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    assert!(wait_for(10, || stdout(&root.run(&["ps"])).contains("Up ")));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = std::time::Instant::now();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(143));
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn bundle_runs_with_runc_and_crun() {
    if !capable() {
        return;
    }
    // Mounts the hugetlb v1 hierarchy for crun (global host state that libcontainer reads):
    // no other container may be created meanwhile.
    let _g = exclusive();
    use xrun::runtime::{Bundle, BundleExtras, ImageInput, RunOptions};
    let rootfs = busybox_rootfs();
    // Two layers: the top one overrides a file of the bottom one.
    let top = tempfile::tempdir().unwrap();
    std::fs::create_dir(top.path().join("etc")).unwrap();
    std::fs::write(top.path().join("etc/greeting"), "top\n").unwrap();
    std::fs::create_dir(top.path().join("tmp")).unwrap();
    std::fs::set_permissions(
        top.path().join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let img_cfg: oci_spec::image::ImageConfiguration = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["sh", "-c"], "Cmd": ["cat /etc/greeting; echo $GREETING; id -u; echo new > /tmp/greeting"], "Env": ["PATH=/bin:/usr/bin", "GREETING=hi"], "User": "web", "WorkingDir": "/tmp"},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap();
    let image = ImageInput {
        name: "test".into(),
        config: img_cfg,
        layer_dirs: vec![rootfs.clone(), top.path().to_path_buf()],
    };
    for (i, runtime) in ["/usr/sbin/runc", "/usr/bin/crun", "libcontainer"]
        .iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let id = format!("{:064x}", 0xabc000 + i + std::process::id() as usize * 16);
        let bundle = Bundle::at(dir.path());
        let spec = bundle
            .prepare(
                &id,
                &image,
                &RunOptions::default(),
                &BundleExtras::default(),
            )
            .unwrap();
        assert_eq!(spec.process().as_ref().unwrap().user().uid(), 1000);
        let state = dir.path().join("state");
        let mut mounted_hugetlb = None;
        let out = if *runtime == "libcontainer" {
            let o = Command::new(XRUN)
                .env("XRUN_ROOT", dir.path().join("x"))
                .args(["run", "--rm", "--rootfs"])
                .arg(bundle.rootfs())
                .args(["cat", "/etc/greeting"])
                .output()
                .unwrap();
            assert_eq!(stdout(&o), "top\n", "{}", stderr(&o));
            bundle.unmount_rootfs().unwrap();
            continue;
        } else {
            if !std::path::Path::new(runtime).exists() {
                eprintln!("skipping {runtime}: not installed");
                bundle.unmount_rootfs().unwrap();
                continue;
            }
            if runtime.ends_with("crun")
                && !xrun::runtime::cgroups::is_pure_v2()
                && !std::path::Path::new("/sys/fs/cgroup/hugetlb/tasks").exists()
            {
                // crun refuses hybrid mode unless hugetlb is bound to v1 (machine facts).
                let d = std::path::Path::new("/sys/fs/cgroup/hugetlb");
                let _ = std::fs::create_dir_all(d);
                let ok = Command::new("mount")
                    .args(["-t", "cgroup", "-o", "hugetlb", "none"])
                    .arg(d)
                    .status()
                    .unwrap()
                    .success();
                if !ok {
                    eprintln!(
                        "skipping crun: cannot bind hugetlb to cgroup v1 on this hybrid host"
                    );
                    bundle.unmount_rootfs().unwrap();
                    continue;
                }
                mounted_hugetlb = Some(d.to_path_buf());
            }
            let o = Command::new(runtime)
                .arg("--root")
                .arg(&state)
                .args(["run", "--bundle"])
                .arg(dir.path())
                .arg(&id)
                .output()
                .unwrap();
            xrun::runtime::executor::delete(
                &state,
                &id,
                &xrun::runtime::executor::Engine::External(runtime.into()),
            );
            if let Some(d) = mounted_hugetlb {
                let _ = Command::new("umount").arg(&d).status();
            }
            o
        };
        assert!(out.status.success(), "{runtime}: {}", stderr(&out));
        assert_eq!(stdout(&out), "top\nhi\n1000\n", "{runtime}");
        // The change went to the container layer; the image layers are untouched.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("upper/tmp/greeting")).unwrap(),
            "new\n"
        );
        assert_eq!(
            std::fs::read_to_string(top.path().join("etc/greeting")).unwrap(),
            "top\n"
        );
        assert!(!top.path().join("tmp/greeting").exists());
        bundle.unmount_rootfs().unwrap();
        assert!(mounts_under(dir.path()).is_empty());
        assert!(
            cgroup_dirs(&id).is_empty(),
            "{runtime}: {:?}",
            cgroup_dirs(&id)
        );
    }
}

#[test]
fn external_runtime_flag() {
    if !capable() {
        return;
    }
    if !std::path::Path::new("/usr/sbin/runc").exists() {
        eprintln!("skipping: runc not installed");
        return;
    }
    let _g = shared();
    let root = Root::new();
    let o = root.bb(
        &["--runtime", "/usr/sbin/runc"],
        &["sh", "-c", "echo via runc; exit 5"],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(stdout(&o), "via runc\n");
    assert!(root.container_dirs().is_empty());
}

/// Whether script(1) is there to give a test a real terminal (else says why the test skips).
fn has_script() -> bool {
    let ok = Command::new("script").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipping: script(1) not installed");
    }
    ok
}

/// Runs shell command `inner` (an xrun command giving a shell) in a real terminal made by
/// script(1), types `tty; echo $((6*7)); stty size` into it, then `exit CODE`.
fn type_in_terminal(root: &Root, inner: &str, code: u8) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-qec", inner, "/dev/null"])
        .env("XRUN_ROOT", root.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut i = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let _ = i.write_all(b"tty; echo $((6*7)); stty size\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = i.write_all(format!("exit {code}\n").as_bytes());
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(i);
    child.wait_with_output().unwrap()
}

#[test]
fn interactive_tty_shell() {
    if !capable() {
        return;
    }
    if !has_script() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    // script(1) gives xrun a real terminal and types into it.
    let inner = format!(
        "stty rows 30 cols 100; {XRUN} run --rm -it --rootfs {} sh",
        rootfs.display()
    );
    let o = type_in_terminal(&root, &inner, 3);
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("42"), "{out}");
    assert!(out.contains("30 100"), "window size: {out}");
    assert_eq!(o.status.code(), Some(3), "{out}");
}

#[test]
fn exec_tty_is_a_terminal_of_the_container() {
    if !capable() {
        return;
    }
    if !has_script() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let o = root.run(&[
        "run",
        "-d",
        "--name",
        "ttyexec",
        "--rootfs",
        &rootfs.display().to_string(),
        "sleep",
        "60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Without a terminal on xrun's side, -t still gives the command one, in the container's
    // own devpts (the detached container has none: it is the first).
    let o = root.run(&["exec", "-t", "ttyexec", "tty"]);
    assert_eq!(stdout(&o).trim(), "/dev/pts/0", "{}", stderr(&o));
    // -it from a real terminal: window size, typed input, exit code.
    let inner = format!("stty rows 31 cols 101; {XRUN} exec -it ttyexec sh");
    let o = type_in_terminal(&root, &inner, 5);
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("42"), "{out}");
    assert!(out.contains("31 101"), "window size: {out}");
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(root.run(&["rm", "-f", "ttyexec"]).status.success());
}

#[test]
fn logs_keep_stdout_and_stderr_apart() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let o = root.run(&[
        "run",
        "-d",
        "--name",
        "streams",
        "--rootfs",
        &rootfs.display().to_string(),
        "sh",
        "-c",
        "echo out1; echo err1 >&2; printf 'out2\\0bin'; echo; echo err2 >&2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_for(10, || {
        let ps = stdout(&root.run(&["ps", "-a"]));
        ps.lines()
            .any(|l| l.contains("streams") && l.contains("Exited (0)"))
    }));
    let o = root.run(&["logs", "streams"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"out1\nout2\0bin\n", "binary-safe, stdout only");
    assert_eq!(stderr(&o), "err1\nerr2\n");
    let o = root.run(&["logs", "-t", "streams"]);
    let first = stdout(&o).lines().next().unwrap_or_default().to_string();
    let (ts, rest) = first.split_once(' ').expect("timestamp first");
    assert_eq!(rest, "out1", "{first}");
    assert!(
        ts.len() >= 20 && ts.starts_with("20") && ts.ends_with('Z'),
        "RFC 3339 timestamp: {first}"
    );
    // -f on a stopped container prints what there is and ends.
    let o = root.run(&["logs", "-f", "streams"]);
    assert_eq!(o.stdout, b"out1\nout2\0bin\n");
}
