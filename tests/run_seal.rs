//! CVE-2019-5736: a container that can see an xrun process's `/proc/<pid>/exe` cannot write
//! the xrun binary through it (the runtime runs from a detached read-only overlay, or a
//! sealed memfd copy as the fallback), and the binary on disk stays unchanged.

#[path = "run_support.rs"]
mod support;

use support::*;

/// The pid of the monitor of container `id`.
fn monitor_pid(id: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args
            .windows(3)
            .any(|w| w[0] == b"internal" && w[1] == b"monitor" && w[2] == id.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

fn check(method: Option<&str>, expect_errno: i32, expect_text: &str) {
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let before = std::fs::read(XRUN).unwrap();
    let mut detached = root.cmd(&[
        "run",
        "-d",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sh",
        "-c",
        "echo before; sleep 1; echo after >&2; exec sleep 30",
    ]);
    if let Some(m) = method {
        detached.env("_XRUN_SEAL", m);
    }
    let o = detached
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    // A monitor may be re-executing itself (the memfd fallback does so right after reporting
    // ready); its cmdline reads empty meanwhile: look again for a few seconds.
    let mut found = None;
    wait_for(5, || {
        found = monitor_pid(&id);
        found.is_some()
    });
    let pid = found.expect("the monitor runs");

    // From the host, as root: the link opens the protected file, not the binary.
    let exe = format!("/proc/{pid}/exe");
    if method == Some("memfd") {
        // The fallback: once the container runs, the monitor re-executes the on-disk binary
        // (the container stays its child) instead of keeping the whole copy in memory.
        let disk = std::fs::metadata(XRUN).unwrap();
        let on_disk = || {
            std::fs::metadata(&exe).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino() == disk.ino() && m.dev() == disk.dev()
            })
        };
        assert!(
            wait_for(10, on_disk),
            "the monitor still runs from its copy"
        );
        // The output pipes went along: what was written before and after is in the log,
        // each on its stream.
        assert!(
            wait_for(10, || {
                let o = root.run(&["logs", &id]);
                stdout(&o) == "before\n" && stderr(&o) == "after\n"
            }),
            "logs across the re-execution: {:?}",
            root.run(&["logs", &id])
        );
        let o = root.run(&["stop", "-t", "1", &id]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = root.run(&["ps", "-a"]);
        assert!(stdout(&o).contains("Exited ("), "{}", stdout(&o));
        let o = root.run(&["rm", &id]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(root.mounts().is_empty());
        return;
    }
    let e = std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"pwned"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(expect_errno), "{e}");

    // From inside a container that sees the host's processes.
    let o = root.bb(
        &["-v", "/proc:/hostproc"],
        &[
            "sh",
            "-c",
            &format!("echo pwned >> /hostproc/{pid}/exe && echo WROTE; echo done"),
        ],
    );
    let out = stdout(&o);
    let err = stderr(&o);
    assert!(out.contains("done") && !out.contains("WROTE"), "{out}{err}");
    // Without CAP_SYS_PTRACE the link is already out of reach (EACCES); otherwise the
    // protection answers.
    assert!(
        err.contains(expect_text) || err.contains("Permission denied"),
        "{err}"
    );

    assert!(std::fs::read(XRUN).unwrap() == before, "the binary changed");
    let o = root.run(&["rm", "-f", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn runtime_binary_cannot_be_overwritten() {
    if !capable() {
        return;
    }
    let _g = shared();
    // Default: the persistent read-only overlay view under /run/xrun/exe.
    check(None, libc::EROFS, "Read-only file system");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.lines().any(|l| l
            .split(' ')
            .nth(4)
            .is_some_and(|m| m.starts_with("/run/xrun/exe/"))
            && l.contains(" - overlay ")
            && l.split(' ').nth(5).is_some_and(|o| o.starts_with("ro"))),
        "the persistent view is a read-only overlay: {mounts}"
    );
    // Where that view cannot be made: a detached read-only overlay per run.
    check(Some("detached"), libc::EROFS, "Read-only file system");
    // The fallback, a sealed memfd copy (its seal is checked in the unit tests of
    // runtime::seal): the monitor drops the copy once the container runs.
    check(Some("memfd"), libc::EPERM, "Operation not permitted");
}
