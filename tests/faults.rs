//! Crash and fault injection: xrun killed with SIGKILL at named points (`XRUN_FAULT`, see
//! `src/fault.rs`) of pull, load, rmi, prune, run, stop and rm; a store root on a tiny tmpfs
//! (disk full); and operations racing each other. After each: `xrun system check` finds no
//! corruption (leftovers only, which `--repair` removes), the same operation then succeeds,
//! and no mount, cgroup, process or temp file is left.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TestEnv, TestRegistry, fixture, is_root, skip};

const IMAGE: &str = "localhost/busybox-amd64:latest";

fn out_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn xrun(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

fn ok(env: &TestEnv, args: &[&str]) -> String {
    let o = xrun(env, args);
    assert!(o.status.success(), "xrun {args:?}: {}", out_text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Runs `args` with the fault armed; the xrun process must have been killed by it.
fn crash(env: &TestEnv, point: &str, args: &[&str]) -> Output {
    env.cmd()
        .env("XRUN_FAULT", point)
        .args(args)
        .output()
        .unwrap()
}

fn crash_self(env: &TestEnv, point: &str, args: &[&str]) {
    let o = crash(env, point, args);
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGKILL),
        "xrun {args:?} with XRUN_FAULT={point} was not killed at the point: {}",
        out_text(&o)
    );
}

/// The findings of `system check --format json`: (kind, subject, corruption).
fn check(env: &TestEnv, repair: bool) -> Vec<(String, String, bool, bool)> {
    let _shared = HOST_WIDE.read().unwrap_or_else(|p| p.into_inner());
    check_alone(env, repair)
}

/// Held (shared) by every `system check` here; held alone by a test that plants host-wide
/// leftovers of no root, which any test's `--repair` would remove.
static HOST_WIDE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// [`check`] without taking [`HOST_WIDE`] (its holder's own checks).
fn check_alone(env: &TestEnv, repair: bool) -> Vec<(String, String, bool, bool)> {
    let mut args = vec!["system", "check", "--format", "json"];
    if repair {
        args.push("--repair");
    }
    let o = xrun(env, &args);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("system check output: {e}: {}", out_text(&o)));
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["subject"].as_str().unwrap().to_string(),
                f["corruption"].as_bool().unwrap(),
                f["repaired"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// No corruption; `--repair` fixes every leftover; a second check is clean.
fn assert_consistent(env: &TestEnv, what: &str) {
    let found = check(env, false);
    let corrupt: Vec<_> = found.iter().filter(|f| f.2).collect();
    assert!(corrupt.is_empty(), "{what}: corruption: {corrupt:?}");
    let repaired = check(env, true);
    let left: Vec<_> = repaired.iter().filter(|f| !f.3).collect();
    assert!(left.is_empty(), "{what}: not repaired: {left:?}");
    let again = check(env, false);
    assert!(again.is_empty(), "{what}: after --repair: {again:?}");
}

/// `/run/xrun/roots/<hash>` of this environment (see `runtime::state`).
fn run_dir(env: &TestEnv) -> PathBuf {
    let canon = std::fs::canonicalize(env.root().join("containers")).unwrap();
    let hash = common::sha256_hex(canon.as_os_str().as_encoded_bytes());
    PathBuf::from("/run/xrun/roots").join(&hash[..16])
}

fn ids_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.len() == 64)
        .collect()
}

/// Every container id this environment has on disk now.
fn known_ids(env: &TestEnv) -> BTreeSet<String> {
    let mut s = ids_in(&env.root().join("containers"));
    s.extend(ids_in(&run_dir(env)));
    s
}

fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fs = right.split(' ').next()?;
            let f: Vec<&str> = left.split(' ').collect();
            ((fs == "cgroup" || fs == "cgroup2") && f[3] == "/").then(|| PathBuf::from(f[4]))
        })
        .collect()
}

/// Mounts, cgroups, runtime state and store temp files left for `ids` (containers that
/// should be gone) and by the environment.
fn leftovers(env: &TestEnv, ids: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let root = env.root().display().to_string();
    let rd = run_dir(env).display().to_string();
    for l in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
    {
        let mp = l.split(' ').nth(4).unwrap_or_default();
        if (mp.starts_with(&root) && mp != root) || mp.starts_with(&rd) {
            out.push(format!("mount {mp}"));
        }
    }
    for id in ids {
        for h in cgroup_mounts() {
            let d = h.join("xrun").join(id);
            if d.exists() {
                out.push(format!("cgroup {}", d.display()));
            }
        }
        if run_dir(env).join(id).exists() {
            out.push(format!("runtime state {id}"));
        }
    }
    for sub in ["tmp", "ingest"] {
        for e in std::fs::read_dir(env.root().join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(format!("temp file {}", e.path().display()));
        }
    }
    out
}

/// Host-wide network state naming container `id`: its namespace, address leases.
fn network_state_of(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ns = Path::new("/run/xrun/net/ns").join(id);
    if ns.exists() {
        out.push(format!("netns {}", ns.display()));
    }
    let mut dirs = vec![PathBuf::from("/run/xrun/net/ipam")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if std::fs::read_to_string(&p).is_ok_and(|b| b.starts_with(id)) {
                out.push(format!("lease {}", p.display()));
            }
        }
    }
    out
}

fn loaded_env() -> TestEnv {
    let env = TestEnv::new();
    let layout = fixture("busybox-amd64");
    ok(&env, &["load", "-i", layout.to_str().unwrap()]);
    env
}

/// Removes every container of `env` (Drop of a failed test as well).
struct Cleanup<'a>(&'a TestEnv);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ids = known_ids(self.0);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(|s| s.as_str()));
            let _ = xrun(self.0, &args);
        }
        let _shared = HOST_WIDE.read().unwrap_or_else(|p| p.into_inner());
        let _ = xrun(self.0, &["system", "check", "--repair"]);
    }
}

#[test]
fn killed_pulls_leave_a_consistent_store_and_the_next_pull_succeeds() {
    let reg = TestRegistry::start();
    reg.push("busybox-amd64", "busybox:fault");
    let image = reg.image("busybox:fault");
    for point in [
        "pull.after-download",
        "pull.after-verify",
        "pull.mid-unpack",
        "pull.before-record",
    ] {
        let env = TestEnv::new();
        crash_self(&env, point, &["pull", &image]);
        assert_consistent(&env, point);
        ok(&env, &["pull", &image]);
        ok(&env, &["run", "--rm", "--network", "none", &image, "true"]);
        let left = leftovers(&env, &BTreeSet::new());
        assert!(left.is_empty(), "{point}: {left:?}");
        assert!(check(&env, false).is_empty(), "{point}");
    }
}

#[test]
fn killed_load_rmi_and_prune_leave_a_consistent_store() {
    let env = TestEnv::new();
    let layout = fixture("busybox-amd64");
    let layout = layout.to_str().unwrap();
    crash_self(&env, "load", &["load", "-i", layout]);
    assert_consistent(&env, "load");
    ok(&env, &["load", "-i", layout]);

    crash_self(&env, "rmi", &["rmi", IMAGE]);
    assert_consistent(&env, "rmi");
    ok(&env, &["load", "-i", layout]);
    ok(&env, &["rmi", IMAGE]);

    ok(&env, &["load", "-i", layout]);
    crash_self(&env, "prune", &["system", "prune", "-a", "-f"]);
    assert_consistent(&env, "prune");
    ok(&env, &["system", "prune", "-a", "-f"]);
    ok(&env, &["load", "-i", layout]);
    ok(&env, &["run", "--rm", "--network", "none", IMAGE, "true"]);
    let left = leftovers(&env, &BTreeSet::new());
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn killed_runs_stops_and_removals_leave_nothing_behind() {
    if !is_root() {
        return skip("containers need root");
    }
    let env = loaded_env();
    let _c = Cleanup(&env);
    let mut ids = BTreeSet::new();
    for point in [
        "run.after-mounts",
        "run.after-cgroups",
        "run.after-exec",
        "run.monitor",
    ] {
        let name = format!("f-{}", point.replace('.', "-"));
        // The monitor (which inherits the variable) dies at the point; `run -d` reports the
        // failure or, for `run.monitor`, returns with the container running unwatched.
        let o = crash(
            &env,
            point,
            &[
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                &name,
                IMAGE,
                "sleep",
                "600",
            ],
        );
        ids.extend(known_ids(&env));
        if point != "run.monitor" {
            assert!(!o.status.success(), "{point}: {}", out_text(&o));
        }
        let found = check(&env, false);
        assert!(found.iter().all(|f| !f.2), "{point}: {found:?}");
        let _ = xrun(&env, &["rm", "-f", &name]);
        assert_consistent(&env, point);
        // The same name works again, and goes without a trace.
        let id = ok(
            &env,
            &[
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                &name,
                IMAGE,
                "sleep",
                "600",
            ],
        );
        ids.insert(id.clone());
        ok(&env, &["rm", "-f", &name]);
        let left = leftovers(&env, &ids);
        assert!(left.is_empty(), "{point}: {left:?}");
    }

    // stop killed after its SIGTERM (busybox sleep as PID 1 ignores it): still running.
    let id = ok(
        &env,
        &["run", "-d", "--network", "none", IMAGE, "sleep", "600"],
    );
    ids.insert(id.clone());
    crash_self(&env, "stop", &["stop", &id]);
    assert_consistent(&env, "stop");
    ok(&env, &["stop", "-t", "1", &id]);
    // rm killed after the runtime state went, before the record did.
    crash_self(&env, "rm", &["rm", &id]);
    assert_consistent(&env, "rm");
    ok(&env, &["rm", "-f", &id]);
    assert!(ok(&env, &["ps", "-aq"]).is_empty());
    let left = leftovers(&env, &ids);
    assert!(left.is_empty(), "{left:?}");
}

/// A networked `run` killed after the network was set up leaves its namespace and address
/// lease; `rm` killed between the container's directory and its
/// snapshot lease leaves the lease. `system check` finds both and `--repair` removes them.
#[test]
fn killed_networked_run_and_rm_leave_state_that_check_repairs() {
    if !is_root() {
        return skip("containers need root");
    }
    let env = loaded_env();
    let _c = Cleanup(&env);
    crash_self(
        &env,
        "run.after-mounts",
        &["run", "--name", "f-net", IMAGE, "sleep", "600"],
    );
    let id = known_ids(&env)
        .into_iter()
        .next()
        .expect("the killed run's container");
    assert!(
        !network_state_of(&id).is_empty(),
        "the killed run left no network state to find"
    );
    let found = check(&env, false);
    assert!(
        found
            .iter()
            .any(|f| f.0 == "orphan-network" && f.1.starts_with(&id)),
        "{found:?}"
    );
    assert_consistent(&env, "networked run");
    assert!(
        network_state_of(&id).is_empty(),
        "{:?}",
        network_state_of(&id)
    );
    ok(&env, &["rm", "-f", "f-net"]);
    // The name runs again on the network, and goes without a trace.
    let id = ok(
        &env,
        &["run", "-d", "--name", "f-net", IMAGE, "sleep", "600"],
    );
    assert!(!network_state_of(&id).is_empty());
    ok(&env, &["rm", "-f", "f-net"]);
    assert!(
        network_state_of(&id).is_empty(),
        "{:?}",
        network_state_of(&id)
    );

    let id = ok(
        &env,
        &["run", "-d", "--network", "none", IMAGE, "sleep", "600"],
    );
    crash_self(&env, "rm.before-release", &["rm", "-f", &id]);
    let lease = env.root().join("leases").join(&id);
    assert!(lease.exists(), "the killed rm left no snapshot lease");
    let found = check(&env, false);
    assert!(
        found.iter().any(|f| f.0 == "orphan-lease" && f.1 == id),
        "{found:?}"
    );
    assert_consistent(&env, "rm before the lease's release");
    assert!(!lease.exists());
    // With the lease gone, prune frees the image's snapshots once the image goes.
    ok(&env, &["rmi", IMAGE]);
    ok(&env, &["image", "prune", "-a", "-f"]);
    assert!(
        std::fs::read_dir(env.root().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "snapshots left after the image and its lease went"
    );
}

/// Host-wide state (cgroups here) of another root's container is that root's to judge: a
/// check in this root leaves it alone while the other root has the container (its run may
/// be starting, or that root's next command cleans up), and finds it once no root has it.
#[test]
fn another_roots_leftovers_are_left_to_it() {
    if !is_root() {
        return skip("containers need root");
    }
    let other = loaded_env();
    let _c = Cleanup(&other);
    let here = TestEnv::new();
    ok(&here, &["ps", "-a"]);
    // A foreground run killed after its cgroups were made: the container's init, made by
    // the runtime and waiting for a start that never comes, keeps the output pipes open, so
    // this waits for the xrun process only.
    let status = other
        .std_cmd()
        .env("XRUN_FAULT", "run.after-cgroups")
        .args(["run", "--network", "none", IMAGE, "sleep", "600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "not killed at the point"
    );
    let id = ids_in(&other.root().join("containers"))
        .into_iter()
        .next()
        .expect("the killed run's container");
    let cgroup_of = |id: &str| -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|h| h.join("xrun").join(id))
            .filter(|d| d.is_dir())
            .collect()
    };
    assert!(!cgroup_of(&id).is_empty(), "the killed run left no cgroup");
    // Past the grace an unknown empty cgroup gets.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mentions = |found: &[(String, String, bool, bool)], id: &str| {
        found
            .iter()
            .any(|f| f.0 == "orphan-cgroup" && f.1.contains(id))
    };
    let there = check(&other, false);
    assert!(mentions(&there, &id), "its own root finds it: {there:?}");
    let found = check(&here, true);
    assert!(!mentions(&found, &id), "{found:?}");
    assert!(!cgroup_of(&id).is_empty(), "a repair here removed it");
    assert_consistent(&other, "the other root's own repair");
    assert!(cgroup_of(&id).is_empty(), "{:?}", cgroup_of(&id));

    // An empty cgroup of a container no root has is found and removed.
    let _alone = HOST_WIDE.write().unwrap_or_else(|p| p.into_inner());
    let ghost = "cd".repeat(32);
    let h = cgroup_mounts()
        .into_iter()
        .find(|h| h.join("xrun").is_dir())
        .expect("a hierarchy with xrun's cgroups");
    std::fs::create_dir(h.join("xrun").join(&ghost)).unwrap();
    // (The cgroup file system stamps a directory's times when its inode is first looked
    // up, not at mkdir: look, then let the 2 s pass.)
    assert!(h.join("xrun").join(&ghost).metadata().is_ok());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let found = check_alone(&here, true);
    assert!(
        found
            .iter()
            .any(|f| f.0 == "orphan-cgroup" && f.1.contains(&ghost) && f.3),
        "{found:?}"
    );
    assert!(cgroup_of(&ghost).is_empty());
}

/// A container directory `rm` renamed aside (`.removing-<id>`) and did not delete (killed
/// in between) is found once it is a few seconds old and removed by `--repair`.
#[test]
fn a_removal_left_halfway_is_found_and_finished() {
    let env = TestEnv::new();
    ok(&env, &["ps", "-a"]);
    let aside = env
        .root()
        .join("containers")
        .join(format!(".removing-{}", "ab".repeat(32)));
    std::fs::create_dir_all(aside.join("upper/etc")).unwrap();
    std::fs::write(aside.join("container.json"), "{}").unwrap();
    // Only this root's findings count: tests beside this one leave their own (in roots
    // of their own, which this root leaves to them).
    let young = check(&env, false);
    assert!(
        !young.iter().any(|f| f.0 == "orphan-removal"),
        "a young one may be an rm at work: {young:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let found = check(&env, false);
    assert!(
        found.iter().any(|f| f.0 == "orphan-removal" && !f.2),
        "{found:?}"
    );
    assert_consistent(&env, "removal left halfway");
    assert!(!aside.exists());
}

/// A snapshot changed after it was made (a file added, a file's bytes changed) is found by
/// re-extracting its layer; `--repair` deletes it and the next run unpacks it again.
#[test]
fn a_changed_snapshot_is_found_and_repaired() {
    if !is_root() {
        return skip("containers need root");
    }
    let env = loaded_env();
    let _c = Cleanup(&env);
    ok(&env, &["run", "--rm", "--network", "none", IMAGE, "true"]);
    let snaps: Vec<PathBuf> = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!snaps.is_empty());
    assert!(check(&env, false).is_empty(), "{:?}", check(&env, false));
    for (i, change) in ["add", "rewrite"].into_iter().enumerate() {
        let snap = &snaps[0];
        match change {
            "add" => std::fs::write(snap.join("planted"), "x").unwrap(),
            _ => {
                let f = std::fs::read_dir(snap.join("bin"))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.symlink_metadata().unwrap().is_file())
                    .expect("a regular file in bin/");
                let mut bytes = std::fs::read(&f).unwrap();
                let n = bytes.len() / 2;
                bytes[n] ^= 0xff;
                std::fs::write(&f, bytes).unwrap();
            }
        }
        let found = check(&env, false);
        let bad: Vec<_> = found
            .iter()
            .filter(|f| f.0 == "corrupt-snapshot" && f.2)
            .collect();
        assert_eq!(bad.len(), 1, "{change}: {found:?}");
        let repaired = check(&env, true);
        assert!(repaired.iter().all(|f| f.3), "{change}: {repaired:?}");
        assert!(
            !snap.exists(),
            "{change}: the changed snapshot is still there"
        );
        assert!(check(&env, false).is_empty());
        let out = ok(
            &env,
            &["run", "--rm", "--network", "none", IMAGE, "echo", "again"],
        );
        assert_eq!(out, "again", "run {i} after the repair");
        assert!(
            snap.is_dir(),
            "{change}: the snapshot was not unpacked again"
        );
    }
}

/// A store root on a 1 MiB tmpfs: a load (the layer does not fit unpacked) fails with one
/// line and leaves nothing partial.
#[test]
fn disk_full_load_is_one_line_and_leaves_nothing() {
    if !is_root() {
        return skip("mounting a tmpfs needs root");
    }
    let env = TestEnv::new();
    let root = env.root();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "xrun-faults-full"])
        .arg(&root)
        .status()
        .unwrap();
    if !mounted.success() {
        return skip("cannot mount a tmpfs");
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _u = Umount(root.clone());
    let layout = fixture("busybox-amd64");
    let o = xrun(&env, &["load", "-i", layout.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{}", out_text(&o));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.to_lowercase().contains("space"), "{stderr}");
    assert!(ok(&env, &["images", "-q"]).is_empty());
    assert_consistent(&env, "disk full");
    let left = leftovers(&env, &BTreeSet::new());
    assert!(left.is_empty(), "{left:?}");
}

/// A tmpfs of `size` mounted on the environment's store root; unmounted on drop.
struct SmallRoot(PathBuf);

impl SmallRoot {
    fn mount(env: &TestEnv, size: &str) -> Option<SmallRoot> {
        let root = env.root();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "xrun-faults-full",
            ])
            .arg(&root)
            .status()
            .unwrap();
        mounted.success().then_some(SmallRoot(root))
    }
}

impl Drop for SmallRoot {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// One line on stderr, exit 125, about space.
fn assert_disk_full_line(o: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{what}: {}", out_text(o));
    assert_eq!(stderr.trim().lines().count(), 1, "{what}: {stderr}");
    assert!(stderr.contains("No space left"), "{what}: {stderr}");
    eprintln!("{what}: {}", stderr.trim());
}

/// Disk full while pulling (the blob download), and while committing a container (the new
/// layer): one line each, no image recorded, a clean check, no temp file.
#[test]
fn disk_full_pull_and_commit_are_one_line_and_leave_nothing() {
    if !is_root() {
        return skip("mounting a tmpfs needs root");
    }
    let reg = TestRegistry::start();
    reg.push("busybox-amd64", "busybox:full");
    let env = TestEnv::new();
    let Some(_small) = SmallRoot::mount(&env, "1m") else {
        return skip("cannot mount a tmpfs");
    };
    let o = xrun(&env, &["pull", &reg.image("busybox:full")]);
    assert_disk_full_line(&o, "pull");
    assert!(ok(&env, &["images", "-q"]).is_empty());
    assert_consistent(&env, "disk full pull");
    let left = leftovers(&env, &BTreeSet::new());
    assert!(left.is_empty(), "{left:?}");

    // Room for the image and a container, not for a commit of what the container wrote.
    let env = TestEnv::new();
    let Some(_small) = SmallRoot::mount(&env, "8m") else {
        return skip("cannot mount a tmpfs");
    };
    let _c = Cleanup(&env);
    ok(&env, &["pull", &reg.image("busybox:full")]);
    let free = || nix::sys::statvfs::statvfs(&env.root()).unwrap();
    let avail = free().blocks_available() * free().fragment_size();
    // Incompressible bytes: most of what is free, so the layer cannot be written too.
    let kib = (avail / 1024) * 6 / 10;
    ok(
        &env,
        &[
            "run",
            "--name",
            "full",
            "--network",
            "none",
            &reg.image("busybox:full"),
            "sh",
            "-c",
            &format!("head -c {}k /dev/urandom > /big", kib),
        ],
    );
    let o = xrun(&env, &["commit", "full", "committed:big"]);
    assert_disk_full_line(&o, "commit");
    assert_eq!(ok(&env, &["images", "-q"]).lines().count(), 1);
    ok(&env, &["rm", "full"]);
    assert_consistent(&env, "disk full commit");
    let left = leftovers(&env, &BTreeSet::new());
    assert!(left.is_empty(), "{left:?}");
}

/// The run directory (`XRUN_RUNTIME_DIR`, here a 64 KiB tmpfs) full: `run -d` fails with one
/// line that says what to do (exit 125), leaves no container, and runs once there is room.
#[test]
fn full_run_directory_is_one_line_with_what_to_do() {
    if !is_root() {
        return skip("mounting a tmpfs needs root");
    }
    let env = loaded_env();
    let _c = Cleanup(&env);
    let dir = tempfile::Builder::new()
        .prefix("xrun-faults-rundir-")
        .tempdir()
        .unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "xrun-faults-rundir"])
        .arg(dir.path())
        .status()
        .unwrap();
    if !mounted.success() {
        return skip("cannot mount a tmpfs");
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _u = Umount(dir.path().to_path_buf());
    // Fill it up.
    let fill = dir.path().join("fill");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&fill).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let run = |args: &[&str]| {
        env.cmd()
            .env("XRUN_RUNTIME_DIR", dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["run", "-d", "--network", "none", IMAGE, "sleep", "60"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{}", out_text(&o));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("the file system is full"), "{stderr}");
    assert!(ok(&env, &["ps", "-aq"]).is_empty(), "a container was left");
    std::fs::remove_file(&fill).unwrap();
    let o = run(&["run", "--rm", "--network", "none", IMAGE, "echo", "room"]);
    assert!(o.status.success(), "{}", out_text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "room");
    assert_consistent(&env, "full run directory");
}

#[test]
fn parallel_runs_pulls_and_races_stay_consistent() {
    if !is_root() {
        return skip("containers need root");
    }
    let env = loaded_env();
    let _c = Cleanup(&env);
    // 20 parallel `run --rm`.
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    xrun(
                        env,
                        &[
                            "run",
                            "--rm",
                            "--network",
                            "none",
                            IMAGE,
                            "sh",
                            "-c",
                            &format!("exit {}", i % 3),
                        ],
                    )
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            let o = h.join().unwrap();
            assert_eq!(o.status.code(), Some(i as i32 % 3), "{}", out_text(&o));
        }
    });
    assert!(ok(&env, &["ps", "-aq"]).is_empty());
    assert!(check(&env, false).is_empty());

    // rm -f racing start: either order, nothing left.
    for _ in 0..3 {
        let id = ok(
            &env,
            &["create", "--network", "none", IMAGE, "sleep", "600"],
        );
        std::thread::scope(|s| {
            let a = s.spawn(|| xrun(&env, &["start", &id]));
            let b = s.spawn(|| xrun(&env, &["rm", "-f", &id]));
            let _ = a.join().unwrap();
            let _ = b.join().unwrap();
        });
        let _ = xrun(&env, &["rm", "-f", &id]);
        let mut ids = BTreeSet::new();
        ids.insert(id.clone());
        assert_consistent(&env, "rm -f racing start");
        let left = leftovers(&env, &ids);
        assert!(left.is_empty(), "{left:?}");
    }

    // rmi racing run: the run works or the rmi is refused / happens first; consistent.
    std::thread::scope(|s| {
        let a = s.spawn(|| xrun(&env, &["run", "--rm", "--network", "none", IMAGE, "true"]));
        let b = s.spawn(|| xrun(&env, &["rmi", IMAGE]));
        let ra = a.join().unwrap();
        let rb = b.join().unwrap();
        assert!(
            ra.status.success() || rb.status.success(),
            "{}\n{}",
            out_text(&ra),
            out_text(&rb)
        );
    });
    assert_consistent(&env, "rmi racing run");

    // image prune -a racing starting runs: each run works or fails with one line; the store
    // stays consistent and a run that worked had its layers to the end.
    for _ in 0..3 {
        if ok(&env, &["images", "-q"]).is_empty() {
            let layout = fixture("busybox-amd64");
            ok(&env, &["load", "-i", layout.to_str().unwrap()]);
        }
        std::thread::scope(|s| {
            let a = s.spawn(|| {
                xrun(
                    &env,
                    &["run", "--rm", "--network", "none", IMAGE, "echo", "ran"],
                )
            });
            let b = s.spawn(|| xrun(&env, &["image", "prune", "-a", "-f"]));
            let ra = a.join().unwrap();
            let rb = b.join().unwrap();
            assert!(rb.status.success(), "{}", out_text(&rb));
            if ra.status.success() {
                assert_eq!(String::from_utf8_lossy(&ra.stdout).trim(), "ran");
            } else {
                let e = String::from_utf8_lossy(&ra.stderr);
                assert_eq!(e.trim().lines().count(), 1, "{}", out_text(&ra));
            }
        });
        assert_consistent(&env, "image prune racing run");
    }
    if ok(&env, &["images", "-q"]).is_empty() {
        let layout = fixture("busybox-amd64");
        ok(&env, &["load", "-i", layout.to_str().unwrap()]);
    }

    // 5 parallel pulls of images sharing their layers.
    let reg = TestRegistry::start();
    let images: Vec<String> = (0..5)
        .map(|i| {
            reg.push("busybox-amd64", &format!("busybox:p{i}"));
            reg.image(&format!("busybox:p{i}"))
        })
        .collect();
    let penv = TestEnv::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = images
            .iter()
            .map(|img| {
                let penv = &penv;
                s.spawn(move || xrun(penv, &["pull", img]))
            })
            .collect();
        for h in hs {
            let o = h.join().unwrap();
            assert!(o.status.success(), "{}", out_text(&o));
        }
    });
    assert_eq!(ok(&penv, &["images"]).lines().count(), 6);
    assert!(check(&penv, false).is_empty());
}
