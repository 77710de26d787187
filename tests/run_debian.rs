//! The native route on a real distribution image: a Debian bookworm minbase root file system
//! (debootstrap), packed into three layers by umoci (`ci/bench-image`), loaded into the store
//! with `xrun load`, and run through overlay, namespaces and cgroups.

#[path = "run_support.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use support::*;

const IMAGE: &str = "localhost/bench-minbase:latest";

/// The minbase OCI layout, built once (debootstrap takes about a minute cold).
fn minbase_layout() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(repo.join("ci/bench-image"))
            .output()
            .expect("run ci/bench-image");
        assert!(
            out.status.success(),
            "ci/bench-image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

fn loaded() -> Root {
    let root = Root::new();
    let layout = minbase_layout();
    let o = root.run(&["load", "-i", layout.to_str().unwrap()]);
    assert!(o.status.success(), "load: {}", stderr(&o));
    root
}

fn run(root: &Root, flags: &[&str], cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    root.run(&args)
}

#[test]
fn debian_minbase_runs_natively_with_its_own_users_env_and_limits() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = loaded();

    let o = run(&root, &[], &["cat", "/etc/debian_version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("12."), "{}", stdout(&o));

    // A dynamically linked program from the image (its own loader and libc), found through
    // the image's PATH.
    let o = run(&root, &[], &["apt-get", "--version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("apt "), "{}", stdout(&o));

    // Users and groups come from the image's /etc/passwd and /etc/group.
    let o = run(&root, &["-u", "nobody"], &["id"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{}",
        stdout(&o)
    );
    let o = run(&root, &["-u", "www-data:www-data"], &["id", "-un"]);
    assert_eq!(stdout(&o).trim(), "www-data", "{}", stderr(&o));

    let o = run(
        &root,
        &[
            "-e",
            "GREETING=hello world",
            "-w",
            "/var/tmp",
            "--hostname",
            "deb",
        ],
        &["sh", "-c", "echo \"$GREETING\"; pwd; hostname"],
    );
    assert_eq!(stdout(&o), "hello world\n/var/tmp\ndeb\n", "{}", stderr(&o));

    // Limits bite on this image too.
    let o = run(
        &root,
        &["--pids-limit", "20"],
        &["bash", "-c", "for i in $(seq 60); do sleep 5 & done; wait"],
    );
    assert_ne!(
        o.status.code(),
        Some(0),
        "a fork loop past --pids-limit must fail"
    );
    assert!(
        stderr(&o).contains("Resource temporarily unavailable") || stderr(&o).contains("retry"),
        "{}",
        stderr(&o)
    );

    // The writable layer is the container's own: the image is unchanged for the next one.
    let o = run(
        &root,
        &[],
        &[
            "sh",
            "-c",
            "rm -rf /usr/bin/apt-get /etc/debian_version && echo gone",
        ],
    );
    assert_eq!(stdout(&o), "gone\n", "{}", stderr(&o));
    let o = run(
        &root,
        &[],
        &[
            "sh",
            "-c",
            "test -x /usr/bin/apt-get && cat /etc/debian_version",
        ],
    );
    assert!(stdout(&o).starts_with("12."), "{}", stderr(&o));

    // A missing command in this image: Docker's 127, one line.
    let o = run(&root, &[], &["no-such-program"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
