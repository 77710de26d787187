//! `xrun check` end to end on real images built by `ci/fixtures-check` (gcc, objcopy, umoci),
//! unpacked with umoci and checked through `--rootfs --config` against host profiles (built
//! here, plus the host helper's recorded ones under tests/data/profiles when present).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

fn fixtures_check() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = common::repo_root().join("ci/fixtures-check");
        let out = Command::new(&script)
            .output()
            .expect("run ci/fixtures-check");
        assert!(
            out.status.success(),
            "ci/fixtures-check failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(s.lines().last().expect("output dir").trim())
    })
}

/// An unpacked image: its root file system and its config file.
struct Unpacked {
    _dir: tempfile::TempDir,
    rootfs: PathBuf,
    config: PathBuf,
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn unpack(layout: &Path, tag: &str) -> Unpacked {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let st = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci");
    assert!(
        st.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let index = read_json(&layout.join("index.json"));
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag in index")
        .clone();
    let mut manifest = read_json(&blob(layout, desc["digest"].as_str().unwrap()));
    if manifest.get("manifests").is_some() {
        let d = manifest["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        manifest = read_json(&blob(layout, &d));
    }
    let config = dir.path().join("config.json");
    std::fs::copy(
        blob(layout, manifest["config"]["digest"].as_str().unwrap()),
        &config,
    )
    .unwrap();
    Unpacked {
        rootfs: bundle.join("rootfs"),
        config,
        _dir: dir,
    }
}

fn fixture(name: &str) -> Unpacked {
    unpack(&fixtures_check().join(name), "latest")
}

/// A profile: amd64 at `level`, kernel `version`, 4K pages, config with a few options,
/// no modules, an arm64 F handler when `emu`, qemu-system only when `vm`.
fn amd64(name: &str, level: u8, version: [u32; 3], emu: bool, vm: bool) -> Value {
    json!({
        "schema_version": 1, "name": name,
        "platform": {"os": "linux", "architecture": "amd64", "variant": format!("v{level}")},
        "cpu": {"machine": "x86_64", "amd64_level": level, "count": 2, "page_size": 4096,
                "endianness": "little"},
        "kernel": {"release": format!("{}.{}.{}", version[0], version[1], version[2]),
                   "version": version, "config_source": "/proc/config.gz",
                   "config": {"CONFIG_USER_NS": "enabled", "CONFIG_OVERLAY_FS": "enabled"},
                   "modules_supported": false},
        "emulation": {
            "binfmt_mounted": true, "binfmt_enabled": true,
            "handlers": if emu { json!([{"name": "qemu-aarch64", "enabled": true,
                "interpreter": "/usr/bin/qemu-aarch64-static", "flags": "PF", "arch": "arm64",
                "usable_in_containers": true}]) } else { json!([]) },
            "qemu_system": if vm { json!({"amd64": "/usr/bin/qemu-system-x86_64"}) } else { json!({}) },
            "kvm_present": false, "kvm_usable": false}
    })
}

fn arm64_64k() -> Value {
    json!({
        "schema_version": 1, "name": "arm64-64k",
        "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        "cpu": {"machine": "aarch64", "count": 4, "page_size": 65536, "endianness": "little"},
        "kernel": {"release": "6.1.0", "version": [6, 1, 0], "config_source": "/proc/config.gz",
                   "modules_supported": true},
        "emulation": {"binfmt_mounted": true, "binfmt_enabled": true,
                      "kvm_present": false, "kvm_usable": false}
    })
}

/// Runs `xrun check --format json --no-local --rootfs --config … ROOTFS` for these profiles,
/// with no default VM guest anywhere (`XRUN_GUEST` an empty directory): profile hosts' vm
/// routes are provisional.
fn check(img: &Unpacked, profiles: &[Value], extra: &[&str]) -> (i32, Value) {
    let none = tempfile::tempdir().unwrap();
    check_with_guest(img, profiles, extra, none.path())
}

/// [`check`] with the default VM guest(s) at `guest` (`XRUN_GUEST`).
fn check_with_guest(
    img: &Unpacked,
    profiles: &[Value],
    extra: &[&str],
    guest: &Path,
) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xrun"));
    cmd.env("XRUN_GUEST", guest);
    cmd.args([
        "check",
        "--format",
        "json",
        "--no-local",
        "--rootfs",
        "--config",
    ])
    .arg(&img.config);
    for (i, p) in profiles.iter().enumerate() {
        let f = dir.path().join(format!("p{i}.json"));
        std::fs::write(&f, p.to_string()).unwrap();
        cmd.arg("--host-profile").arg(f);
    }
    cmd.args(extra.iter().take_while(|a| **a != "--"));
    cmd.arg(&img.rootfs);
    cmd.args(extra.iter().skip_while(|a| **a != "--").skip(1));
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}), exit {code}: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

fn host_route(v: &Value, i: usize) -> &str {
    v["hosts"][i]["verdict"]["route"]["kind"].as_str().unwrap()
}

fn host_codes(v: &Value, i: usize) -> Vec<String> {
    v["hosts"][i]["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn isa_levels_v3_v4() {
    let v3 = fixture("isa-v3");
    let hosts = [
        amd64("v4box", 4, [6, 18, 0], false, false),
        amd64("v3box", 3, [6, 18, 0], false, false),
        amd64("v2box", 2, [6, 18, 0], false, false),
    ];
    let (code, v) = check(&v3, &hosts, &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        v["images"][0]["requirements"]["elf"]["isa_level"]["value"],
        3
    );
    assert_eq!(
        [host_route(&v, 0), host_route(&v, 1), host_route(&v, 2)],
        ["native", "native", "unrunnable"]
    );
    assert!(host_codes(&v, 2).contains(&"isa-level".to_string()));
    let ev = &v["hosts"][2]["verdict"]["reasons"][0]["evidence"];
    assert!(ev.to_string().contains("/app"), "{ev}");
    // Only the v4 and v3 hosts: the gate passes.
    let (code, _) = check(&v3, &hosts[..2], &[]);
    assert_eq!(code, 0);

    let v4 = fixture("isa-v4");
    let (code, v) = check(&v4, &hosts, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        [host_route(&v, 0), host_route(&v, 1), host_route(&v, 2)],
        ["native", "unrunnable", "unrunnable"]
    );
}

/// Issue 15: an x86-64-v4 binary is never promised to qemu (TCG has no AVX-512) nor to a
/// KVM guest on a v2 CPU, on the vm route or behind a qemu-user handler.
#[test]
fn v4_never_promised_to_an_emulator() {
    let v4 = fixture("isa-v4");
    let tcg = |level: u8| {
        json!({"level": level, "qemu_version": "10.0.2",
                                 "evidence": "/usr/bin/qemu-system-x86_64 --version: 10.0.2"})
    };
    let recorded = amd64("v2-tcg-10", 2, [6, 18, 0], false, true);
    let mut v2_tcg = recorded.clone();
    v2_tcg["emulation"]["tcg_amd64_level"] = tcg(3);
    let unrecorded = amd64("v2-tcg-unrecorded", 2, [6, 18, 0], false, true);
    let mut v2_kvm = amd64("v2-kvm", 2, [6, 18, 0], false, true);
    v2_kvm["emulation"]["kvm_usable"] = json!(true);
    let mut arm = arm64_64k();
    arm["cpu"]["page_size"] = json!(4096);
    arm["emulation"]["handlers"] = json!([{"name": "qemu-x86_64", "enabled": true,
        "interpreter": "/usr/bin/qemu-x86_64-static", "flags": "POCF", "arch": "amd64",
        "usable_in_containers": true}]);
    arm["emulation"]["tcg_amd64_level"] = tcg(3);
    let hosts = [v2_tcg, unrecorded, v2_kvm, arm];
    let (code, v) = check(&v4, &hosts, &["--require", "any"]);
    assert_eq!(code, 1, "{v:#}");
    for i in 0..hosts.len() {
        assert_eq!(host_route(&v, i), "unrunnable", "{v:#}");
        assert!(
            host_codes(&v, i).contains(&"emulator-isa-level".to_string()),
            "{:?}",
            host_codes(&v, i)
        );
    }
    let msg = v["hosts"][0]["verdict"]["reasons"][1]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("x86-64-v4") && msg.contains("x86-64-v3"),
        "{msg}"
    );
    // Forcing the route does not help either.
    for route in ["vm", "emulated"] {
        let (code, v) = check(&v4, &hosts[..], &["--route", route, "--require", "any"]);
        assert_eq!(code, 1);
        for i in 0..hosts.len() {
            assert_eq!(host_route(&v, i), "unrunnable", "{route}: {v:#}");
        }
    }
    // The v3 binary fits TCG 10.0 (recorded): vm on the v2 TCG host, not on the v2 KVM one.
    let (_, v) = check(&fixture("isa-v3"), &hosts, &["--require", "any"]);
    assert_eq!(host_route(&v, 0), "vm", "{v:#}");
    assert_eq!(host_route(&v, 2), "unrunnable", "{v:#}");
    assert_eq!(host_route(&v, 3), "emulated", "{v:#}");
}

#[test]
fn kernel_min_label_and_abi_tag() {
    let host = amd64("here", 4, [6, 18, 0], false, false);
    let old = amd64("old", 4, [5, 15, 0], false, true);
    let (code, v) = check(&fixture("kernel-min"), std::slice::from_ref(&host), &[]);
    assert_eq!(code, 1);
    assert_eq!(host_codes(&v, 0), ["kernel-too-old", "no-vm"]);
    let ev = v["hosts"][0]["verdict"]["reasons"][0]["evidence"].to_string();
    assert!(ev.contains("org.xrun.kernel.min=99.0"), "{ev}");

    // ABI tag 6.10: fine on 6.18, too new for 5.15 (which has qemu-system: vm, unprofiled).
    let (code, v) = check(&fixture("abi-tag"), &[host, old], &["--require", "any"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(host_route(&v, 0), "native");
    assert_eq!(host_route(&v, 1), "vm");
    assert_eq!(host_codes(&v, 1), ["kernel-too-old", "guest-unprofiled"]);
    assert_eq!(
        v["images"][0]["requirements"]["elf"]["abi_tag_max"]["value"],
        json!([6, 10, 0])
    );
}

/// A default guest directory as `ci/guest-image` writes it (kernel and initrd are
/// placeholders: only `guest.json` and the config are read to profile it).
fn fake_guest(dir: &Path, release: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("guest.json"),
        json!({"schema": 1, "architecture": "amd64", "kernel_release": release,
               "boot": "microvm", "kernel": "kernel", "initrd": "initrd.img",
               "config": "config", "base_modules": [], "modules": {}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("kernel"), "").unwrap();
    std::fs::write(dir.join("initrd.img"), "").unwrap();
    std::fs::write(
        dir.join("config"),
        "CONFIG_USER_NS=y\nCONFIG_OVERLAY_FS=y\nCONFIG_MODULES=y\n",
    )
    .unwrap();
}

/// Issue 15: a profile host's vm route is checked against the default guest xrun would boot
/// there, not left provisional: an ABI tag newer than the guest's kernel is unrunnable.
#[test]
fn profile_hosts_checked_against_the_default_guest() {
    let old = amd64("old", 4, [5, 15, 0], false, true);
    let abi = fixture("abi-tag"); // ELF ABI tag 6.10
    let guests = tempfile::tempdir().unwrap();
    fake_guest(guests.path(), "6.1.0-99-cloud-amd64");
    let (code, v) = check_with_guest(
        &abi,
        std::slice::from_ref(&old),
        &["--require", "any"],
        guests.path(),
    );
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(host_route(&v, 0), "unrunnable", "{v:#}");
    assert_eq!(host_codes(&v, 0), ["kernel-too-old", "kernel-too-old"]);
    let vm = &v["hosts"][0]["verdict"]["reasons"][1];
    assert_eq!(vm["route"], "vm");
    assert!(
        vm["evidence"].to_string().contains("6.1.0-99-cloud-amd64"),
        "{vm}"
    );
    // A guest new enough: vm, checked (no guest-unprofiled warning).
    let newer = tempfile::tempdir().unwrap();
    fake_guest(newer.path(), "6.12.0-1-cloud-amd64");
    let (code, v) = check_with_guest(
        &abi,
        std::slice::from_ref(&old),
        &["--require", "any"],
        newer.path(),
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(host_route(&v, 0), "vm");
    assert_eq!(host_codes(&v, 0), ["kernel-too-old"]);
    // The guest's CPU level for a TCG profile host is TCG's: a v4 binary is refused there.
    let (_, v) = check_with_guest(
        &fixture("isa-v4"),
        &[amd64("v2", 2, [6, 18, 0], false, true)],
        &[],
        newer.path(),
    );
    assert_eq!(host_route(&v, 0), "unrunnable", "{v:#}");
    assert_eq!(host_codes(&v, 0), ["isa-level", "emulator-isa-level"]);
}

#[test]
fn missing_module() {
    let (code, v) = check(
        &fixture("module"),
        &[amd64("here", 4, [6, 18, 0], false, false)],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(host_codes(&v, 0), ["missing-module", "no-vm"]);
    assert!(
        v["hosts"][0]["verdict"]["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("CONFIG_WIREGUARD")
    );
}

#[test]
fn arm64_4k_alignment_on_64k_pages() {
    let img = fixture("arm64-4k");
    let emu = amd64("emu", 4, [6, 18, 0], true, false);
    let (code, v) = check(&img, &[arm64_64k(), emu], &["--require", "emulated"]);
    assert_eq!(code, 1);
    assert_eq!(
        v["images"][0]["requirements"]["elf"]["min_load_align"]["value"],
        4096
    );
    assert_eq!(host_route(&v, 0), "unrunnable");
    assert_eq!(host_codes(&v, 0)[0], "page-size");
    assert_eq!(host_route(&v, 1), "emulated");
    assert_eq!(v["hosts"][1]["verdict"]["route"]["handler"], "qemu-aarch64");
    assert_eq!(v["hosts"][1]["meets_require"], true);
}

#[test]
fn missing_entrypoint_and_interpreter() {
    let host = amd64("here", 4, [6, 18, 0], false, false);
    let (code, v) = check(&fixture("noentry"), std::slice::from_ref(&host), &[]);
    assert_eq!(code, 1);
    assert_eq!(host_codes(&v, 0), ["entrypoint-missing"]);
    let (_, v) = check(&fixture("script"), std::slice::from_ref(&host), &[]);
    assert_eq!(host_codes(&v, 0), ["interpreter-missing"]);
    // A command override that exists fixes it (`xrun run IMAGE sh` semantics).
    let (code, v) = check(
        &fixture("noentry"),
        std::slice::from_ref(&host),
        &["--entrypoint", "/bin/sh"],
    );
    assert_eq!(code, 0, "{v:#}");
    let (code, _) = check(
        &fixture("script"),
        &[host],
        &["--entrypoint", "", "--", "sh"],
    );
    assert_eq!(code, 1, "an empty entrypoint is no command");
}

#[test]
fn mislabeled_from_ci_fixtures() {
    let Some(layout) = common::try_fixture("mislabeled") else {
        common::skip("ci/fixtures could not build `mislabeled` (arm64 .deb missing)");
        return;
    };
    let img = unpack(&layout, "latest");
    let host = amd64("emu", 4, [6, 18, 0], true, true);
    let (code, v) = check(&img, &[host], &["--require", "any"]);
    assert_eq!(code, 1);
    assert_eq!(host_route(&v, 0), "unrunnable");
    assert_eq!(host_codes(&v, 0), ["mislabeled-platform"]);
    let msg = v["hosts"][0]["verdict"]["reasons"][0]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("arm64"), "{msg}");
}

#[test]
fn recorded_profiles_from_the_host_helper() {
    let dir = common::repo_root().join("tests/data/profiles");
    let v2 = dir.join("amd64-v2-noavx.json");
    let g64 = dir.join("arm64-graviton-64k.json");
    if !v2.is_file() || !g64.is_file() {
        common::skip("tests/data/profiles not present yet (host profile stage)");
        return;
    }
    let img = fixture("isa-v3");
    let out = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["check", "--no-local", "--rootfs", "--config"])
        .arg(&img.config)
        .arg("--host-profile")
        .arg(&v2)
        .arg(&img.rootfs)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(table.contains("isa-level"), "{table}");
    let img = fixture("arm64-4k");
    let out = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args([
            "check",
            "--no-local",
            "--format",
            "json",
            "--rootfs",
            "--config",
        ])
        .arg(&img.config)
        .arg("--host-profile")
        .arg(&g64)
        .arg(&img.rootfs)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(host_codes(&v, 0)[0], "page-size", "{v:#}");
}

#[test]
fn errors_exit_125() {
    let img = fixture("isa-v3");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    for args in [
        vec!["--host-profile", bad.to_str().unwrap()],
        vec!["--format", "yaml", "--host-profile", bad.to_str().unwrap()],
        vec!["--require", "sometimes"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xrun"))
            .args(["check", "--no-local", "--rootfs", "--config"])
            .arg(&img.config)
            .args(&args)
            .arg(&img.rootfs)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // clap's own usage errors exit 2; xrun's errors 125 with one `xrun:` line.
        assert!(
            matches!(out.status.code(), Some(125) | Some(2)),
            "{args:?}: {err}"
        );
        assert!(!err.trim().is_empty());
    }
}
