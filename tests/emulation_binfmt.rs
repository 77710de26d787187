//! `xrun binfmt status|install|uninstall` against the real binfmt_misc of this host.
//!
//! Tests that change binfmt_misc only touch architectures no other test runs (s390x, ppc64le,
//! mips64le), hold one lock (so before/after snapshots are not disturbed by each other), and undo
//! every change in `Drop`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use xrun::emulation::{BinfmtState, arch, route};

const DIR: &str = "/proc/sys/fs/binfmt_misc";
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn xrun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(args)
        .output()
        .expect("run xrun")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Whether binfmt_misc can be changed here (root, mounted) and qemu-user-static is installed for
/// `qemu` targets; prints why not.
fn capable(qemu: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skip: not root, cannot change binfmt_misc");
        return false;
    }
    // `xrun binfmt status` mounts binfmt_misc when it is not.
    let _ = xrun(&["binfmt", "status"]);
    if !Path::new(DIR).join("register").exists() {
        eprintln!("skip: binfmt_misc not available at {DIR}");
        return false;
    }
    for q in qemu {
        let p = format!("/usr/bin/qemu-{q}-static");
        if !Path::new(&p).exists() {
            eprintln!("skip: {p} absent (qemu-user-static not installed)");
            return false;
        }
    }
    true
}

/// Every handler file's name and content.
fn snapshot() -> BTreeMap<String, String> {
    std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "register")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

/// Removes, on drop, every handler that was not there when it was made.
struct Restore {
    before: BTreeMap<String, String>,
}

impl Restore {
    fn new() -> Restore {
        Restore { before: snapshot() }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for name in snapshot().keys() {
            if !self.before.contains_key(name) {
                let _ = std::fs::write(Path::new(DIR).join(name), "-1");
            }
        }
    }
}

fn status_json() -> serde_json::Value {
    let o = xrun(&["binfmt", "status", "--format", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn arch_entry<'a>(j: &'a serde_json::Value, arch: &str) -> &'a serde_json::Value {
    j["arches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arch"] == arch)
        .unwrap()
}

fn handler_entry<'a>(j: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    j["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["handler"] == name)
}

#[test]
fn status_reports_what_the_kernel_has() {
    let _l = lock();
    if !capable(&[]) {
        return;
    }
    let j = status_json();
    assert_eq!(j["mounted"], true);
    let snap = snapshot();
    assert_eq!(j["enabled"], snap["status"].trim() == "enabled");
    // Every handler file is reported, with its flags and interpreter as the kernel prints them.
    for (name, content) in snap.iter().filter(|(n, _)| *n != "status") {
        let h = handler_entry(&j, name).unwrap_or_else(|| panic!("{name} missing"));
        let flags = content
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .unwrap()
            .trim();
        assert_eq!(h["flags"], flags, "{name}");
        let interp = content
            .lines()
            .find_map(|l| l.strip_prefix("interpreter "))
            .unwrap();
        assert_eq!(h["interpreter"], interp, "{name}");
        let works = flags.contains('F') && content.starts_with("enabled");
        if h["usable_in_containers"] == true {
            assert!(works, "{name}: {h}");
        }
        if h["in_use"] == true {
            assert_eq!(h["usable_in_containers"] == true, works, "{name}: {h}");
        }
    }
    // The table has the documented columns.
    let o = xrun(&["binfmt", "status"]);
    let (out, _) = text(&o);
    assert!(out.contains("ARCH") && out.contains("CONTAINERS"), "{out}");
    // The host's own architecture is native.
    let host = xrun::platform::Platform::host().architecture;
    if arch::by_arch(&host).is_some() {
        assert_eq!(arch_entry(&j, &host)["native"], true);
    }
}

#[test]
fn install_uninstall_round_trip_leaves_foreign_handlers_untouched() {
    let _l = lock();
    if !capable(&["ppc64le", "mips64el"]) {
        return;
    }
    let _restore = Restore::new();
    let before = snapshot();

    // Forced: xrun's handlers go ahead of whatever is there.
    let o = xrun(&["binfmt", "install", "--force", "ppc64le", "mips64le"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("ppc64le: registered xrun-qemu-ppc64le"),
        "{out}"
    );
    let h = std::fs::read_to_string(format!("{DIR}/xrun-qemu-ppc64le")).unwrap();
    assert!(h.starts_with("enabled"), "{h}");
    assert!(h.contains("flags: PF"), "{h}");
    assert!(
        h.contains("interpreter /usr/bin/qemu-ppc64le-static"),
        "{h}"
    );
    let j = status_json();
    assert_eq!(arch_entry(&j, "ppc64le")["handler"], "xrun-qemu-ppc64le");
    assert_eq!(arch_entry(&j, "ppc64le")["usable_in_containers"], true);
    assert_eq!(arch_entry(&j, "mips64le")["handler"], "xrun-qemu-mips64el");

    // Idempotent.
    let o = xrun(&["binfmt", "install", "--force", "ppc64le"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("already registered"), "{out}");

    // Foreign handlers are byte-for-byte what they were.
    let during = snapshot();
    for (name, content) in before.iter().filter(|(n, _)| *n != "status") {
        assert_eq!(during.get(name), Some(content), "{name} changed");
    }

    // Uninstall removes only ours.
    let o = xrun(&["binfmt", "uninstall", "ppc64le", "mips64le"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("ppc64le: removed xrun-qemu-ppc64le"), "{out}");
    assert_eq!(snapshot(), before);
    let o = xrun(&["binfmt", "uninstall", "ppc64le"]);
    assert!(o.status.success());
    assert!(text(&o).0.contains("nothing to do"));

    // `install all` without --force never shadows a usable foreign handler; uninstall (all of
    // xrun's) brings the directory back to where it was.
    let o = xrun(&["binfmt", "install", "all"]);
    let (out, err) = text(&o);
    for (name, content) in before.iter().filter(|(n, _)| *n != "status") {
        assert_eq!(
            snapshot().get(name),
            Some(content),
            "{name} changed: {out}{err}"
        );
    }
    let j = status_json();
    for a in j["arches"].as_array().unwrap() {
        if a["native"] == false && a["qemu"].is_string() {
            // Every emulatable arch is covered by someone after `install all`, unless a foreign
            // unusable handler holds it (reported as an error).
            assert!(
                a["usable_in_containers"] == true || err.contains(a["arch"].as_str().unwrap()),
                "{a}: {out}{err}"
            );
        }
    }
    let o = xrun(&["binfmt", "uninstall"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(snapshot(), before);
}

#[test]
fn handler_without_f_is_unusable_and_not_shadowed() {
    let _l = lock();
    if !capable(&["s390x"]) {
        return;
    }
    let _restore = Restore::new();
    let before = snapshot();
    let spec = arch::by_arch("s390x").unwrap();
    // A handler for s390x without F (registered last, so the kernel uses it first), and one for
    // a made-up ELF machine (0x7777) that no architecture of the table has.
    let nof = "xrun-test-nof-s390x";
    std::fs::write(
        format!("{DIR}/register"),
        spec.register_line(nof, "/usr/bin/qemu-s390x-static", ""),
    )
    .unwrap();
    let fake = ":xrun-test-fake-machine:M:0:\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x77\\x77::/bin/false:F";
    std::fs::write(format!("{DIR}/register"), fake).unwrap();

    let j = status_json();
    let h = handler_entry(&j, nof).unwrap();
    assert_eq!(h["arch"], "s390x");
    assert_eq!(h["usable_in_containers"], false);
    assert!(h["note"].as_str().unwrap().contains("no F flag"), "{h}");
    let s = arch_entry(&j, "s390x");
    assert_eq!(s["handler"], nof);
    assert_eq!(s["usable_in_containers"], false);
    let f = handler_entry(&j, "xrun-test-fake-machine").unwrap();
    assert!(f["arch"].is_null(), "{f}");
    let (table, _) = text(&xrun(&["binfmt", "status"]));
    let line = table.lines().find(|l| l.contains(nof)).unwrap();
    assert!(line.contains(" no "), "{line}");

    // The route says why and what to do.
    let state = BinfmtState::read(Path::new(DIR)).unwrap();
    let err = route::select(&state, &"linux/s390x".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lacks the F flag"), "{err}");
    assert!(err.contains("xrun binfmt install s390x --force"), "{err}");

    // Install refuses to shadow it without --force, and touches nothing.
    let snap = snapshot();
    let o = xrun(&["binfmt", "install", "s390x"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{out}{err}");
    assert!(err.contains(nof) && err.contains("--force"), "{err}");
    assert_eq!(snapshot(), snap);

    // Forced: ours goes ahead and the route works; uninstall leaves both test handlers alone.
    let o = xrun(&["binfmt", "install", "--force", "s390x"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let state = BinfmtState::read(Path::new(DIR)).unwrap();
    let r = route::select(&state, &"linux/s390x".parse().unwrap()).unwrap();
    assert_eq!(r.handler, "xrun-qemu-s390x");
    assert!(r.notice().contains("slower"));
    let o = xrun(&["binfmt", "uninstall"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(Path::new(DIR).join(nof).exists());
    assert!(Path::new(DIR).join("xrun-test-fake-machine").exists());
    assert!(!Path::new(DIR).join("xrun-qemu-s390x").exists());

    drop(_restore);
    assert_eq!(snapshot(), before);
}

#[test]
fn without_privilege_one_clear_line() {
    let _l = lock();
    if !capable(&["s390x"]) {
        return;
    }
    let _restore = Restore::new();
    let before = snapshot();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_xrun"))
        .args(["binfmt", "install", "--force", "s390x"])
        .output();
    let Ok(o) = o else {
        eprintln!("skip: setpriv not available");
        return;
    };
    let (out, err) = text(&o);
    if err.contains("Permission denied") && err.contains("setpriv") {
        eprintln!("skip: the test binary is not executable as nobody: {err}");
        return;
    }
    assert_eq!(o.status.code(), Some(125), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("xrun: permission denied"), "{err}");
    assert_eq!(snapshot(), before);
}

#[test]
fn mounts_binfmt_misc_when_missing() {
    let _l = lock();
    if !capable(&[]) {
        return;
    }
    // In a private mount namespace, unmount binfmt_misc, then let xrun find it missing.
    let script = format!(
        "umount {DIR} && ! grep -q ' {DIR} ' /proc/self/mounts && \"$0\" binfmt status --format json && grep -q ' {DIR} ' /proc/self/mounts"
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_xrun"))
        .output();
    let Ok(o) = o else {
        eprintln!("skip: unshare not available");
        return;
    };
    let (out, err) = text(&o);
    if err.contains("unshare failed") {
        eprintln!("skip: cannot make a mount namespace: {err}");
        return;
    }
    assert!(o.status.success(), "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["mounted"], true);
    assert!(!j["handlers"].as_array().unwrap().is_empty());
}

#[test]
fn unknown_architecture_is_one_line() {
    let o = xrun(&["binfmt", "install", "sparc128"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(err.lines().count(), 1);
    assert!(
        err.contains("unknown architecture") && err.contains("arm64"),
        "{err}"
    );
}

#[test]
fn every_arm_variant_goes_to_the_arm_handler() {
    let _l = lock();
    let state = BinfmtState::read(Path::new(DIR)).unwrap();
    let spec = arch::by_arch("arm").unwrap();
    let Some(h) = state.effective(spec).filter(|h| h.usable_in_containers()) else {
        eprintln!("skip: no usable arm handler here");
        return;
    };
    // qemu-arm's default CPU runs v5, v6 and v7 code: one handler serves every variant.
    for v in ["linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm"] {
        let r = route::select(&state, &v.parse().unwrap()).unwrap();
        assert_eq!(r.handler, h.name, "{v}");
        assert!(r.cpu.contains("arm/v6"), "{}", r.cpu);
    }
    let r = route::select(&state, &"linux/arm64/v8.2".parse().unwrap());
    if let Some(a) = state
        .effective(arch::by_arch("arm64").unwrap())
        .filter(|a| a.usable_in_containers())
    {
        assert_eq!(r.unwrap().handler, a.name);
    }
}
