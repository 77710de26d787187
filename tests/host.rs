//! `xrun host` and the host profile: parsing recorded hosts (tests/data/hosts/*), the committed
//! JSON profiles (tests/data/profiles/*), this machine against peers (ld.so, getconf, findmnt,
//! a real chroot run through binfmt_misc), and agreement with Debian's docker.io
//! `check-config.sh` on every kernel option both report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use xrun::kernelcheck::HostSource;
use xrun::kernelcheck::profile::{CheckState, HostProfile, OptionState, SCHEMA_VERSION};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn recorded(name: &str) -> HostProfile {
    let src = HostSource::recorded(&data(&format!("hosts/{name}"))).expect("recorded host");
    HostProfile::gather_from(&src)
}

fn option_check(p: &HostProfile, option: &str) -> Option<CheckState> {
    p.kernel
        .checks
        .iter()
        .flat_map(|g| g.options.iter())
        .find(|o| o.option == option)
        .map(|o| o.state)
}

/// Every recorded host gives exactly its committed profile (set XRUN_UPDATE_PROFILES=1 to
/// rewrite them after a deliberate schema or parser change), and profiles round-trip.
#[test]
fn recorded_hosts_match_committed_profiles() {
    let mut n = 0;
    for entry in std::fs::read_dir(data("hosts")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let profile = recorded(&name);
        let json = profile.to_json() + "\n";
        let file = data(&format!("profiles/{name}.json"));
        if std::env::var_os("XRUN_UPDATE_PROFILES").is_some() {
            std::fs::write(&file, &json).unwrap();
        }
        let committed = HostProfile::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            committed,
            profile,
            "{name}: the committed profile differs from the recorded host's; regenerate with \
             `xrun host --from tests/data/hosts/{name} --format json > {}`",
            file.display()
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            json,
            "{name}: not byte-stable"
        );
        let back = HostProfile::from_json(&json).unwrap();
        assert_eq!(back, profile, "{name}: JSON does not round-trip");
        assert_eq!(back.schema_version, SCHEMA_VERSION);
        n += 1;
    }
    assert!(n >= 3, "expected the recorded hosts, found {n}");
}

#[test]
fn arm64_64k_pages_kernel_5_10() {
    let p = recorded("arm64-graviton-64k");
    assert_eq!(p.platform.to_string(), "linux/arm64/v8");
    assert_eq!(p.cpu.machine, "aarch64");
    assert_eq!(p.cpu.page_size, 65536);
    assert_eq!(p.cpu.amd64_level, 0);
    assert_eq!(p.cpu.count, 4);
    assert_eq!(p.cpu.model, "Neoverse-N1");
    assert!(p.cpu.flags.contains(&"atomics".to_string()));
    assert_eq!(p.kernel.version, [5, 10, 210]);
    assert_eq!(
        p.kernel.config_source.as_deref(),
        Some("/boot/config-5.10.210-201.852.64k.amzn2.aarch64")
    );
    assert_eq!(
        p.kernel.option("ARM64_64K_PAGES"),
        Some(OptionState::Enabled)
    );
    assert_eq!(
        p.kernel.option("CONFIG_ARM64_4K_PAGES"),
        Some(OptionState::Missing)
    );
    assert_eq!(p.kernel.option("OVERLAY_FS"), Some(OptionState::Module));
    assert_eq!(option_check(&p, "CONFIG_VETH"), Some(CheckState::Module));
    // 5.10 > 5.2: the NF_NAT_NEEDED check no longer applies; MEMCG_SWAP_ENABLED neither (> 5.8).
    assert_eq!(option_check(&p, "CONFIG_NF_NAT_NEEDED"), None);
    assert_eq!(option_check(&p, "CONFIG_MEMCG_SWAP_ENABLED"), None);
    assert!(p.kernel.modules_supported);
    assert!(
        p.kernel
            .modules_loaded
            .contains(&"br_netfilter".to_string())
    );
    assert!(p.kernel.modules_available.contains(&"erofs".to_string()));
    assert!(p.kernel.modules_builtin.contains(&"ext4".to_string()));
    assert_eq!(p.cgroups.mode, "v2");
    assert_eq!(p.cgroups.controllers["memory"], "v2:/sys/fs/cgroup");
    assert!(p.namespaces.contains(&"user".to_string()));
    assert!(p.seccomp);
    let h = p
        .emulation
        .container_handler("amd64")
        .expect("amd64 handler");
    assert_eq!(h.interpreter, "/usr/bin/qemu-x86_64");
    assert_eq!(p.emulation.qemu_user["amd64"], "/usr/bin/qemu-x86_64");
    assert!(!p.emulation.kvm_present && !p.emulation.kvm_usable);
    assert!(p.unknowns.is_empty(), "{:?}", p.unknowns);
}

#[test]
fn amd64_v2_without_avx() {
    let p = recorded("amd64-v2-noavx");
    assert_eq!(p.platform.to_string(), "linux/amd64/v2");
    assert_eq!(p.cpu.amd64_level, 2);
    assert!(!p.cpu.flags.contains(&"avx".to_string()));
    assert!(p.cpu.flags.contains(&"sse4_2".to_string()));
    assert_eq!(p.cpu.count, 12);
    assert_eq!(p.cpu.page_size, 4096);
    assert_eq!(p.cpu.endianness, "little");
    assert_eq!(p.kernel.version, [5, 15, 0]);
    assert_eq!(p.cgroups.mode, "v2");
    assert!(p.security.apparmor);
    assert_eq!(p.user_namespaces.unprivileged_clone, Some(true));
    // binfmt: arm64 has F (usable), arm lacks F, riscv64 is disabled.
    let by_name = |n: &str| p.emulation.handlers.iter().find(|h| h.name == n).unwrap();
    assert!(by_name("qemu-aarch64").usable_in_containers);
    assert_eq!(by_name("qemu-arm").arch.as_deref(), Some("arm"));
    assert!(!by_name("qemu-arm").usable_in_containers);
    assert!(!by_name("qemu-riscv64").enabled);
    assert!(!by_name("qemu-riscv64").usable_in_containers);
    assert_eq!(by_name("python3.10").arch, None);
    assert!(p.emulation.container_handler("arm").is_none());
    // PATH order: /usr/bin before /usr/libexec/qemu-binfmt; -static preferred.
    assert_eq!(
        p.emulation.qemu_user["arm64"],
        "/usr/bin/qemu-aarch64-static"
    );
    assert_eq!(p.emulation.qemu_user["arm"], "/usr/bin/qemu-arm");
    assert_eq!(
        p.emulation.qemu_system["amd64"],
        "/usr/bin/qemu-system-x86_64"
    );
    assert!(p.emulation.kvm_present && p.emulation.kvm_usable);
    assert_eq!(p.emulation.kvm_module.as_deref(), Some("kvm_intel"));
}

#[test]
fn kernel_without_user_ns() {
    let p = recorded("armv7-no-userns");
    assert_eq!(p.platform.to_string(), "linux/arm/v7");
    assert_eq!(p.kernel.version, [4, 19, 97]);
    assert_eq!(p.kernel.config_source.as_deref(), Some("/proc/config.gz"));
    assert_eq!(p.kernel.option("USER_NS"), Some(OptionState::Missing));
    assert_eq!(
        option_check(&p, "CONFIG_USER_NS"),
        Some(CheckState::Missing)
    );
    assert!(!p.namespaces.contains(&"user".to_string()));
    assert!(!p.namespaces.contains(&"time".to_string()));
    assert!(p.namespaces.contains(&"pid".to_string()));
    assert!(!p.user_namespaces.supported);
    // 4.19: the old-kernel checks apply.
    assert_eq!(
        option_check(&p, "CONFIG_NF_NAT_NEEDED"),
        Some(CheckState::Enabled)
    );
    assert_eq!(
        option_check(&p, "CONFIG_NF_NAT_IPV4"),
        Some(CheckState::Module)
    );
    assert_eq!(
        option_check(&p, "CONFIG_IOSCHED_CFQ"),
        Some(CheckState::Enabled)
    );
    assert_eq!(p.cgroups.mode, "v1");
    assert_eq!(
        p.cgroups.controllers["cpu"],
        "v1:/sys/fs/cgroup/cpu,cpuacct"
    );
    assert!(!p.cgroups.controllers.contains_key("memory"));
    assert_eq!(p.cgroups.disabled_controllers, vec!["memory"]);
    assert_eq!(p.cgroups.process["cpu,cpuacct"], "/user.slice");
    assert!(!p.emulation.binfmt_mounted);
    assert!(p.emulation.handlers.is_empty());
}

#[test]
fn missing_files_become_unknowns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("source.json"),
        r#"{"uname":{"sysname":"Linux","nodename":"bare","release":"6.1.0","machine":"x86_64"},"page_size":4096}"#,
    )
    .unwrap();
    let p = recorded_at(dir.path());
    assert_eq!(p.kernel.config_source, None);
    assert_eq!(p.kernel.option("USER_NS"), None);
    assert_eq!(
        option_check(&p, "CONFIG_USER_NS"),
        Some(CheckState::Unknown)
    );
    let facts: Vec<&str> = p.unknowns.iter().map(|u| u.fact.as_str()).collect();
    assert!(facts.contains(&"kernel.config"), "{facts:?}");
    let config = p
        .unknowns
        .iter()
        .find(|u| u.fact == "kernel.config")
        .unwrap();
    assert!(
        config.reason.contains("/proc/config.gz: not found"),
        "{}",
        config.reason
    );
    assert!(
        config.reason.contains("/boot/config-6.1.0"),
        "{}",
        config.reason
    );
    // The CLI prints it too, and exits 0.
    let out = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["host", "--from"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Unknown:") && text.contains("kernel.config"),
        "{text}"
    );
}

fn recorded_at(dir: &Path) -> HostProfile {
    HostProfile::gather_from(&HostSource::recorded(dir).unwrap())
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["host", "--from"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("xrun: ") && err.contains("source.json"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let newer = dir.path().join("p.json");
    std::fs::write(&newer, r#"{"schema_version": 99}"#).unwrap();
    let e = HostProfile::load(&newer).unwrap_err().to_string();
    assert!(e.contains("schema_version 99"), "{e}");
    std::fs::write(&newer, "not json").unwrap();
    assert!(HostProfile::load(&newer).is_err());
}

// ---------------------------------------------------------------- this machine

fn live_json() -> (HostProfile, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["host", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    (HostProfile::from_json(&text).unwrap(), value)
}

fn sh(cmd: &str) -> Option<String> {
    let out = Command::new("sh").args(["-c", cmd]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn this_machine_agrees_with_peers() {
    let (p, v) = live_json();
    assert_eq!(v["schema_version"], SCHEMA_VERSION);
    for key in [
        "platform",
        "cpu",
        "kernel",
        "cgroups",
        "namespaces",
        "emulation",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }

    // Page size: getconf.
    let getconf: u64 = sh("getconf PAGESIZE").unwrap().trim().parse().unwrap();
    assert_eq!(p.cpu.page_size, getconf);
    eprintln!("page size {}", p.cpu.page_size);

    // amd64 level: glibc's loader lists the levels it supports.
    if p.cpu.machine == "x86_64" {
        let help = sh("/lib64/ld-linux-x86-64.so.2 --help").unwrap_or_default();
        let ld_level = (2..=4)
            .rev()
            .find(|l| help.contains(&format!("x86-64-v{l} (supported")))
            .unwrap_or(1);
        assert_eq!(p.cpu.amd64_level, ld_level as u8, "ld.so says v{ld_level}");
        assert_eq!(
            p.platform.variant.as_deref(),
            Some(format!("v{ld_level}").as_str())
        );
        eprintln!("amd64 level v{ld_level} (ld.so agrees)");
    }

    // cgroups: findmnt.
    if let Some(mounts) = sh("findmnt -rn -t cgroup,cgroup2 -o FSTYPE,FS-OPTIONS") {
        let v1 = mounts.lines().any(|l| {
            l.starts_with("cgroup ")
                && l.split_once(' ')
                    .unwrap()
                    .1
                    .split(',')
                    .any(|o| o != "rw" && o != "ro" && o != "xattr" && !o.starts_with("name="))
        });
        let v2 = mounts.lines().any(|l| l.starts_with("cgroup2 "));
        let expect = match (v1, v2) {
            (true, true) => "hybrid",
            (true, false) => "v1",
            (false, true) => "v2",
            _ => "none",
        };
        assert_eq!(p.cgroups.mode, expect);
        eprintln!("cgroups {expect} (findmnt agrees)");
    }

    // Modules: supported iff /proc/modules exists.
    assert_eq!(
        p.kernel.modules_supported,
        Path::new("/proc/modules").exists()
    );
    if !p.kernel.modules_supported {
        assert!(p.kernel.modules_loaded.is_empty());
        assert!(!p.kernel.modules_builtin.is_empty());
    }

    // KVM: kvm_pvm (or no vmx/svm) means present but not usable.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let hw_virt = cpuinfo.split_whitespace().any(|w| w == "vmx" || w == "svm");
    assert_eq!(p.emulation.kvm_present, Path::new("/dev/kvm").exists());
    if Path::new("/sys/module/kvm_pvm").exists() || !hw_virt {
        assert!(!p.emulation.kvm_usable, "{}", p.emulation.kvm_note);
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        assert!(
            p.emulation.kvm_note.contains("kvm_pvm"),
            "{}",
            p.emulation.kvm_note
        );
    }
    eprintln!(
        "kvm present={} usable={}: {}",
        p.emulation.kvm_present, p.emulation.kvm_usable, p.emulation.kvm_note
    );

    // Kernel release and config source as uname and the files say.
    assert_eq!(p.kernel.release, sh("uname -r").unwrap().trim());
    if Path::new("/proc/config.gz").exists() {
        assert_eq!(p.kernel.config_source.as_deref(), Some("/proc/config.gz"));
    }
}

/// Foreign binaries xrun says containers can run (binfmt `F` handlers) really run inside a
/// chroot that has no interpreter in it.
#[test]
fn binfmt_f_handlers_really_run_in_a_chroot() {
    let (p, _) = live_json();
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let debs = Path::new("/var/cache/xrun-ci/debs");
    let cases = [("arm64", "arm64"), ("arm", "armhf"), ("riscv64", "riscv64")];
    let mut ran = 0;
    for (arch, deb_arch) in cases {
        let Some(h) = p.emulation.container_handler(arch) else {
            eprintln!("{arch}: no usable handler on this host");
            continue;
        };
        assert!(h.flags.contains('F'));
        let Some(deb) = std::fs::read_dir(debs).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).find(|f| {
                let n = f.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("busybox-static_") && n.ends_with(&format!("_{deb_arch}.deb"))
            })
        }) else {
            eprintln!(
                "{arch}: no busybox-static .deb in {}: not checked",
                debs.display()
            );
            continue;
        };
        let root = tempfile::tempdir().unwrap();
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root.path())
            .status()
            .unwrap();
        assert!(st.success());
        let bb = ["bin/busybox", "usr/bin/busybox"]
            .iter()
            .find(|b| root.path().join(b).exists())
            .expect("busybox in the .deb");
        let out = Command::new("chroot")
            .arg(root.path())
            .arg(format!("/{bb}"))
            .args(["echo", "hello"])
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout == b"hello\n",
            "{arch}: xrun says usable in containers, but it did not run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    if ran == 0 {
        eprintln!("skipped: no foreign arch to check here");
    }
    // On the CI machines (qemu-user-static installed) all three are expected.
    let known = &p.emulation.handlers;
    if known.iter().any(|h| h.name == "qemu-aarch64") {
        for arch in ["arm64", "arm", "riscv64"] {
            assert!(
                p.emulation.container_handler(arch).is_some(),
                "{arch} handler not usable"
            );
        }
    }
}

/// Strips ANSI color sequences (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Extracts one member of a .deb's data tar (`dpkg-deb --fsys-tarfile`) into `to`.
fn extract_one(deb: &Path, member: &str, to: &Path) {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut archive = tar::Archive::new(child.stdout.take().unwrap());
    let mut found = false;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.trim_start_matches("./") == member {
            let mut f = std::fs::File::create(to).unwrap();
            std::io::copy(&mut entry, &mut f).unwrap();
            found = true;
            break;
        }
    }
    drop(archive);
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "{member} not in {}", deb.display());
}

/// Debian's docker.io check-config.sh and `xrun host` agree on every option both report.
#[test]
fn agrees_with_moby_check_config() {
    let Some(deb) = std::fs::read_dir("/var/cache/xrun-ci/debs")
        .ok()
        .and_then(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).find(|f| {
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("docker.io_")
            })
        })
    else {
        eprintln!("skipped: no docker.io .deb in /var/cache/xrun-ci/debs (ci/fetch-debs)");
        return;
    };
    let (p, _) = live_json();
    let Some(config) = p.kernel.config_source.clone() else {
        eprintln!("skipped: this kernel has no readable config");
        return;
    };
    // Stream the package's tar and stop at the script: nothing else of the package (≈150 MB
    // unpacked) is written.
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("check-config.sh");
    extract_one(&deb, "usr/share/docker.io/contrib/check-config.sh", &script);
    // It exits 1 when something is missing: only its output matters.
    let out = Command::new("bash")
        .arg(&script)
        .env("CONFIG", &config)
        .output()
        .unwrap();
    let text = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    let mut theirs: BTreeMap<String, CheckState> = BTreeMap::new();
    for line in text.lines() {
        let l = line.trim_start().trim_start_matches("- ");
        let Some((name, state)) = l.split_once(": ") else {
            continue;
        };
        if !name.starts_with("CONFIG_") {
            continue;
        }
        let state = match state.trim() {
            "enabled" => CheckState::Enabled,
            "enabled (as module)" => CheckState::Module,
            "missing" => CheckState::Missing,
            other => panic!("unexpected check-config state {other:?} in {line:?}"),
        };
        theirs.insert(name.to_string(), state);
    }
    assert!(
        theirs.len() >= 40,
        "check-config.sh reported only {} options:\n{text}",
        theirs.len()
    );
    let mut compared = 0;
    for (name, state) in &theirs {
        // From the raw config map…
        let ours: CheckState = p.kernel.option(name).into();
        // check-config says "enabled" for LEGACY_VSYSCALL_* when set either way.
        let ours = if name.starts_with("CONFIG_LEGACY_VSYSCALL_") && ours == CheckState::Module {
            CheckState::Enabled
        } else {
            ours
        };
        assert_eq!(ours, *state, "{name}: xrun {ours}, check-config.sh {state}");
        // …and from the grouped checks, which must cover every option it reports.
        let grouped = option_check(&p, name);
        assert_eq!(
            grouped,
            Some(*state),
            "{name}: missing from or different in xrun's checks"
        );
        compared += 1;
    }
    eprintln!("xrun and check-config.sh agree on {compared} options");
}

/// `xrun host --format nfd`: a node-feature-discovery feature file whose labels agree with
/// the JSON profile of the same host.
#[test]
fn nfd_feature_file_agrees_with_the_profile() {
    let run = |fmt: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xrun"))
            .args(["host", "--format", fmt])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let profile = HostProfile::from_json(&run("json")).unwrap();
    let nfd = run("nfd");
    let label = |name: &str| {
        nfd.lines()
            .find_map(|l| l.strip_prefix(&format!("feature.node.kubernetes.io/xrun.{name}=")))
            .map(str::to_string)
    };
    for l in nfd.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = l.split_once('=').unwrap_or_else(|| panic!("{l}"));
        assert!(key.starts_with("feature.node.kubernetes.io/xrun."), "{l}");
        assert!(xrun::kernelcheck::nfd::valid_label_value(value), "{l}");
    }
    let [major, minor, patch] = profile.kernel.version;
    assert_eq!(
        label("kernel-version"),
        Some(format!("{major}.{minor}.{patch}"))
    );
    assert_eq!(label("page-size"), Some(profile.cpu.page_size.to_string()));
    assert_eq!(label("kvm"), Some(profile.emulation.kvm_usable.to_string()));
    if profile.platform.architecture == "amd64" {
        assert_eq!(
            label("amd64-level"),
            Some(profile.cpu.amd64_level.to_string())
        );
    }
    for h in &profile.emulation.handlers {
        if let Some(a) = &h.arch {
            let usable = profile
                .emulation
                .handlers
                .iter()
                .any(|x| x.arch.as_ref() == Some(a) && x.usable_in_containers);
            assert_eq!(label(&format!("binfmt.{a}")).is_some(), usable, "{a}");
        }
    }
}
