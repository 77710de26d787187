//! VM guests as images: the guest layout `ci/guest-image` writes is pushed to a real registry
//! with `skopeo copy --all`, and `xrun run/check --vm-kernel REF` (or the config's
//! `vm-kernel`) pulls the guest for the image's architecture into the store and boots it
//! under real qemu (TCG). Also: the default guest with an empty store, refusals (not a guest,
//! unknown tag, no guest for the architecture), and a full disk while the rootfs image is
//! built. VM boots here: two.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use common::{TestEnv, TestRegistry, skip};
use serde_json::Value;

static BOOTS: Mutex<()> = Mutex::new(());

const GUEST_CACHE: &str = "/var/cache/xrun-ci/guest";

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// The Debian guest's layout (after running `ci/guest-image`), made publishable: its layout names one image index
/// (pushed as is); an older layout listing the per-arch images in `index.json` is wrapped
/// into one here (blobs symlinked). `None` (reason printed) without qemu-system-x86_64 or a
/// guest (ci/setup runs ci/guest-image).
fn guest_layout(scratch: &Path) -> Option<PathBuf> {
    if xrun::vm::qemu::find_binary("qemu-system-x86_64", None).is_err() {
        skip("qemu-system-x86_64 is not installed");
        return None;
    }
    // Brings the shared guest cache up to this tree's ci/guest-image and guest init (a
    // no-op when it is), once per test process.
    static BUILT: OnceLock<bool> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        Command::new(common::repo_root().join("ci/guest-image"))
            .status()
            .expect("run ci/guest-image")
            .success()
    });
    assert!(built, "ci/guest-image failed");
    // The Debian guest's layout: it has both architectures (xrun's own kernel is built for
    // amd64 only by default, see ci/guest-image).
    let layout = Path::new(GUEST_CACHE).join("debian/oci");
    let index = read_json(&layout.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    if entries.len() == 1 && entries[0]["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        return Some(layout);
    }
    let out = scratch.join("guest-oci");
    fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    for b in fs::read_dir(layout.join("blobs/sha256")).unwrap().flatten() {
        std::os::unix::fs::symlink(b.path(), out.join("blobs/sha256").join(b.file_name())).unwrap();
    }
    let bytes = fs::read(layout.join("index.json")).unwrap();
    let hex = common::sha256_hex(&bytes);
    fs::write(out.join("blobs/sha256").join(&hex), &bytes).unwrap();
    fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(out.join("index.json"), top.to_string()).unwrap();
    Some(out)
}

/// The kernel release the layout's guest for `arch` announces (its index annotation).
fn release(layout: &Path, arch: &str) -> String {
    let mut index = read_json(&layout.join("index.json"));
    if index["manifests"][0]["platform"].is_null() {
        let d = index["manifests"][0]["digest"].as_str().unwrap();
        index = read_json(&layout.join("blobs/sha256").join(&d[7..]));
    }
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .and_then(|m| m["annotations"]["org.xrun.guest.kernel.release"].as_str())
        .unwrap_or_else(|| panic!("no {arch} guest in {}", layout.display()))
        .to_string()
}

/// Pids of processes whose command line mentions qemu and `needle`.
fn qemu_pids_with(needle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c);
            if c.contains("qemu") && c.contains(needle) {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    v
}

/// Every file under `dir` (relative paths), sorted; empty when `dir` is absent.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `(repository, tag, platform)` rows of `xrun images`.
fn images(env: &TestEnv) -> Vec<String> {
    let o = env.cmd().arg("images").output().unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    text(&o)
        .0
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

/// A registry with the guest index as `xrun-guest:6.1` and busybox images; `None` when the
/// VM route cannot be tested here.
struct World {
    reg: TestRegistry,
    guest: String,
    release_amd64: String,
    release_arm64: String,
}

fn world(env: &TestEnv) -> Option<World> {
    if !common::is_root() {
        skip("needs root");
        return None;
    }
    let layout = guest_layout(&env.scratch())?;
    let reg = TestRegistry::start();
    let t = Instant::now();
    reg.push_layout(&layout, "xrun-guest:6.1");
    eprintln!("skopeo copy --all of the guest index: {:?}", t.elapsed());
    reg.push("busybox-amd64", "bb:1");
    Some(World {
        guest: reg.image("xrun-guest:6.1"),
        release_amd64: release(&layout, "amd64"),
        release_arm64: release(&layout, "arm64"),
        reg,
    })
}

#[test]
fn a_pulled_guest_boots_and_profiles_the_vm_route() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let Some(w) = world(&env) else { return };
    let bb = w.reg.image("bb:1");

    // Empty store; the local guest is out of reach (XRUN_GUEST points nowhere): the guest
    // image is pulled for amd64 and booted.
    let t = Instant::now();
    let o = env
        .cmd()
        .env("XRUN_GUEST", env.scratch().join("no-local-guest"))
        .args(["run", "--rm", "--route", "vm", "--vm-kernel", &w.guest, &bb])
        .args(["sh", "-c", "uname -r; uname -m; exit 7"])
        .output()
        .unwrap();
    let (so, se) = text(&o);
    eprintln!(
        "run --vm-kernel (pull of image and guest, boot, exit): {:?}",
        t.elapsed()
    );
    assert_eq!(o.status.code(), Some(7), "{so}{se}");
    assert_eq!(so, format!("{}\nx86_64\n", w.release_amd64), "{se}");
    assert!(se.contains("6.1: Pulling from xrun-guest"), "{se}");
    assert!(
        se.contains(&format!("amd64 kernel {}", w.release_amd64)),
        "{se}"
    );
    // Only the amd64 guest entered the store.
    let rows = images(&env);
    let guest_repo = w.guest.rsplit_once(':').unwrap().0.to_string();
    assert!(
        rows.contains(&format!("{guest_repo} 6.1 linux/amd64")),
        "{rows:?}"
    );
    assert!(!rows.iter().any(|r| r.contains("arm64")), "{rows:?}");

    // An arm64 image gets the arm64 guest (this host is amd64): the plan's line names it,
    // unpacked in the store (no boot: --dry-run).
    w.reg.push("busybox-arm64", "bb:arm64");
    let o = env
        .cmd()
        .env("XRUN_GUEST", env.scratch().join("no-local-guest"))
        .args([
            "run",
            "--dry-run",
            "-q",
            "--route",
            "vm",
            "--vm-kernel",
            &w.guest,
        ])
        .arg(w.reg.image("bb:arm64"))
        .output()
        .unwrap();
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}{se}");
    let line = so
        .lines()
        .find(|l| l.starts_with("guest: "))
        .unwrap_or_else(|| panic!("{so}{se}"));
    assert!(
        line.starts_with(&format!("guest: arm64 kernel {} (", w.release_arm64)),
        "{line}"
    );
    assert!(
        line.contains(&env.root().join("snapshots").display().to_string()),
        "{line}"
    );
    let rows = images(&env);
    let arm64_guest = format!("{guest_repo} 6.1 linux/arm64");
    assert!(rows.iter().any(|r| r.starts_with(&arm64_guest)), "{rows:?}");

    // check --vm-kernel: the wireguard image needs a module this host lacks; the pulled
    // guest ships it, so vm, profiled (no guest-unprofiled). kernel-min (99.0) is beyond
    // the guest too: unrunnable.
    let fc = common::fixtures_check_dir();
    for (name, tag) in [("module", "module:1"), ("kernel-min", "kmin:1")] {
        w.reg.push_layout(&fc.join(name), tag);
        let o = env
            .cmd()
            .args(["pull", "-q", &w.reg.image(tag)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let check = |image: &str| {
        let o = env
            .cmd()
            .env("XRUN_GUEST", env.scratch().join("no-local-guest"))
            .args(["check", "--format", "json", "--require", "any"])
            .args(["--vm-kernel", &w.guest, image])
            .output()
            .unwrap();
        let (so, se) = text(&o);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{so}{se}");
        let j: Value = serde_json::from_str(&so).unwrap();
        let v = j["hosts"][0]["verdict"].clone();
        let codes: Vec<String> = v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap().to_string())
            .collect();
        (v["route"]["kind"].as_str().unwrap().to_string(), codes, v)
    };
    let (route, codes, v) = check(&w.reg.image("module:1"));
    assert_eq!(route, "vm", "{v:#}");
    assert!(codes.contains(&"missing-module".to_string()), "{v:#}");
    assert!(!codes.contains(&"guest-unprofiled".to_string()), "{v:#}");
    let (route, codes, v) = check(&w.reg.image("kmin:1"));
    assert_eq!(route, "unrunnable", "{v:#}");
    assert!(!codes.contains(&"guest-unprofiled".to_string()), "{v:#}");
    let guest_too_old = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "kernel-too-old" && r["route"] == "vm");
    assert!(guest_too_old, "{v:#}");
}

/// One `xrun: …` line and exit 125.
fn assert_refused(o: &Output, needle: &str) {
    let (so, se) = text(o);
    assert_eq!(o.status.code(), Some(125), "{so}{se}");
    assert_eq!(se.lines().count(), 1, "{se}");
    assert!(se.starts_with("xrun: ") && se.contains(needle), "{se}");
}

#[test]
fn refused_guest_references_leave_nothing_behind() {
    let env = TestEnv::new();
    let Some(w) = world(&env) else { return };
    let bb = w.reg.image("bb:1");
    // riscv64: an architecture the guest index (amd64, arm64) has no guest for.
    let riscv = common::try_fixture("busybox-riscv64").map(|_| {
        w.reg.push("busybox-riscv64", "bb:riscv64");
        w.reg.image("bb:riscv64")
    });
    for image in std::iter::once(&bb).chain(riscv.as_ref()) {
        let o = env.cmd().args(["pull", "-q", image]).output().unwrap();
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let before_images = images(&env);
    let before_blobs = files_under(&env.root().join("blobs"));
    let before_snaps = files_under(&env.root().join("snapshots"));
    let run = |vm_kernel: &str, image: &str| {
        env.cmd()
            .args(["run", "--rm", "-q", "--route", "vm", "--vm-kernel"])
            .args([vm_kernel, image, "uname", "-r"])
            .output()
            .unwrap()
    };

    // An ordinary image is no guest: refused before any layer is downloaded.
    w.reg.push("busybox-arm64", "other:1");
    assert_refused(
        &run(&w.reg.image("other:1"), &bb),
        "is not a VM guest image for amd64",
    );
    // Unknown tag.
    assert_refused(&run(&w.reg.image("xrun-guest:nope"), &bb), "not found");
    // Not a reference at all.
    assert_refused(&run("UPPER/Case:x", &bb), "--vm-kernel");
    // No guest for the image's architecture.
    match &riscv {
        Some(image) => assert_refused(&run(&w.guest, image), "has no linux/riscv64 guest"),
        None => eprintln!("busybox-riscv64 could not be built here: that case is left out"),
    }
    assert_eq!(images(&env), before_images, "a refused guest was recorded");
    assert_eq!(files_under(&env.root().join("blobs")), before_blobs);
    assert_eq!(files_under(&env.root().join("snapshots")), before_snaps);
    assert!(files_under(&env.root().join("vm/rootfs")).is_empty());
    let o = env.cmd().args(["ps", "-a", "-q"]).output().unwrap();
    assert_eq!(text(&o).0.trim(), "", "a container was left");
    assert!(files_under(&env.root().join("tmp")).is_empty());
    assert!(files_under(&env.root().join("ingest")).is_empty());
    assert!(qemu_pids_with(&env.root().display().to_string()).is_empty());
}

#[test]
fn the_config_names_the_guest_and_the_flag_overrides_it() {
    let env = TestEnv::new();
    let Some(w) = world(&env) else { return };
    let bb = w.reg.image("bb:1");
    let dry = |extra: &[&str]| {
        env.cmd()
            .env("XRUN_GUEST", env.scratch().join("no-local-guest"))
            .args(["run", "--dry-run", "-q", "--route", "vm"])
            .args(extra)
            .arg(&bb)
            .output()
            .unwrap()
    };
    // Without a guest anywhere: the vm route is shown without one.
    let o = dry(&[]);
    let (so, se) = text(&o);
    assert!(so.contains("guest: none found"), "{so}{se}");
    // The config's vm-kernel is pulled and used.
    env.write_config(&format!(r#"{{"vm-kernel": "{}"}}"#, w.guest));
    let o = dry(&[]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}{se}");
    assert!(
        so.contains(&format!("guest: amd64 kernel {} (", w.release_amd64))
            && so.contains(&env.root().join("snapshots").display().to_string()),
        "{so}{se}"
    );
    // check honours it too.
    let o = env
        .cmd()
        .env("XRUN_GUEST", env.scratch().join("no-local-guest"))
        .args([
            "check",
            "--route",
            "vm",
            "--require",
            "vm",
            "--format",
            "json",
            &bb,
        ])
        .output()
        .unwrap();
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}{se}");
    assert!(!so.contains("guest-unprofiled"), "{so}");
    // A bad config value is reported in one line; the flag wins over it.
    env.write_config(&format!(
        r#"{{"vm-kernel": "{}"}}"#,
        w.reg.image("xrun-guest:gone")
    ));
    assert_refused(&dry(&[]), "xrun-guest:gone");
    let o = dry(&["--vm-kernel", &w.guest]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // --pull never with the guest in the store works with the registry gone.
    drop(w.reg);
    let o = dry(&["--pull", "never", "--vm-kernel", &w.guest]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn the_default_guest_boots_with_an_empty_store() {
    if !common::is_root() {
        return skip("needs root");
    }
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    if guest_layout(&env.scratch()).is_none() {
        return;
    }
    let reg = TestRegistry::start();
    reg.push("busybox-amd64", "bb:1");
    let o = env
        .cmd()
        .env_remove("XRUN_GUEST")
        .args(["run", "--rm", "-q", "--route", "vm", &reg.image("bb:1")])
        .args(["sh", "-c", "uname -m; exit 3"])
        .output()
        .unwrap();
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{so}{se}");
    assert_eq!(so, "x86_64\n", "{se}");
    assert!(
        !images(&env).iter().any(|r| r.contains("guest")),
        "the default guest is not pulled"
    );
}

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_while_building_the_rootfs_image_is_one_clear_error() {
    if !common::is_root() {
        return skip("needs root (mount)");
    }
    let env = TestEnv::new();
    if guest_layout(&env.scratch()).is_none() {
        return;
    }
    let reg = TestRegistry::start();
    reg.push("busybox-amd64", "bb:1");
    let bb = reg.image("bb:1");
    let o = env.cmd().args(["pull", "-q", &bb]).output().unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    let cache = env.root().join("vm/rootfs");
    // 1 MiB: copying the layers fails; 3 MiB: they fit, the erofs image does not.
    for size in ["1m", "3m"] {
        let _fs = Tmpfs::mount(&cache, size);
        let o = env
            .cmd()
            .args(["run", "--rm", "-q", "--route", "vm", &bb, "true"])
            .output()
            .unwrap();
        assert_refused(&o, "no space left on device");
        let (_, se) = text(&o);
        assert!(
            se.contains(&cache.display().to_string()) && se.contains("free space"),
            "{se}"
        );
        assert_eq!(files_under(&cache), Vec::<String>::new(), "tmpfs {size}");
        assert!(qemu_pids_with(&env.root().display().to_string()).is_empty());
    }
    assert!(files_under(&cache).is_empty());
}
