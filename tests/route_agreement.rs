//! `xrun run` takes the route `xrun check` names (both go through `xrun::assess` and the pure
//! `plan`): every fixture image, on this host, gets the same route from `xrun check --format
//! json` and `xrun run --dry-run`; the wireguard image really runs in the VM; an image no
//! kernel here satisfies is refused with its reason; `--pull` pulls from a real registry;
//! container snapshot leases keep layers from `rmi`/`image prune` until `rm`.
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::{TestEnv, TestRegistry, skip};
use serde_json::Value;

fn run(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Loads a layout; returns reference → platforms loaded.
fn load(env: &TestEnv, layout: &Path, into: &mut BTreeMap<String, Vec<String>>) {
    let o = run(env, &["load", "-i", layout.to_str().unwrap()]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "load {}: {so}{se}", layout.display());
    for l in so.lines().chain(se.lines()) {
        if let Some(rest) = l.strip_prefix("Loaded image: ")
            && let Some((r, p)) = rest.rsplit_once(" (")
        {
            into.entry(r.to_string())
                .or_default()
                .push(p.trim_end_matches(')').to_string());
        }
    }
}

/// The route `xrun check --format json` gives this host.
fn check_route(env: &TestEnv, image: &str, platform: Option<&str>) -> (String, Value) {
    let mut args = vec!["check", "--format", "json", "--require", "any"];
    if let Some(p) = platform {
        args.extend(["--platform", p]);
    }
    args.push(image);
    let o = run(env, &args);
    let (so, se) = text(&o);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "check {image}: {so}{se}"
    );
    let j: Value = serde_json::from_str(&so).unwrap();
    let v = j["hosts"][0]["verdict"].clone();
    (v["route"]["kind"].as_str().unwrap().to_string(), v)
}

/// The verdict's route `xrun run --dry-run` prints (the `verdict:` line when only the
/// command's own problems block and the arch-decided route is taken), and that route.
fn dry_run_route(env: &TestEnv, image: &str, platform: Option<&str>) -> (String, String) {
    let mut args = vec!["run", "--dry-run"];
    if let Some(p) = platform {
        args.extend(["--platform", p]);
    }
    args.push(image);
    let o = run(env, &args);
    let (so, se) = text(&o);
    let word = |prefix: &str| {
        so.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|r| r.split_whitespace().next().unwrap().to_string())
    };
    let taken = word("route: ").unwrap_or_else(|| panic!("run --dry-run {image}: {so}{se}"));
    let verdict = word("verdict: ").unwrap_or_else(|| taken.clone());
    let expect_code = if verdict == "unrunnable" && taken == "unrunnable" {
        125
    } else {
        0
    };
    assert_eq!(o.status.code(), Some(expect_code), "{so}{se}");
    (verdict, taken)
}

#[test]
fn check_and_run_name_the_same_route_for_every_fixture() {
    let env = TestEnv::new();
    let mut loaded = BTreeMap::new();
    for name in [
        "busybox-amd64",
        "busybox-arm64",
        "busybox-armv7",
        "busybox-riscv64",
        "busybox-multi",
        "levels",
        "mislabeled",
    ] {
        match common::try_fixture(name) {
            Some(l) => load(&env, &l, &mut loaded),
            None => eprintln!("fixture {name} could not be built here; left out"),
        }
    }
    let fc = common::fixtures_check_dir();
    for name in [
        "isa-v3",
        "isa-v4",
        "kernel-min",
        "module",
        "abi-tag",
        "arm64-4k",
        "noentry",
        "script",
    ] {
        load(&env, &fc.join(name), &mut loaded);
    }
    assert!(loaded.len() >= 10, "{loaded:?}");
    let mut seen = Vec::new();
    for (image, platforms) in &loaded {
        let mut cases: Vec<Option<&str>> = vec![None];
        if platforms.len() > 1 {
            cases.extend(platforms.iter().map(|p| Some(p.as_str())));
        }
        for p in cases {
            let (check, verdict) = check_route(&env, image, p);
            let (run_verdict, taken) = dry_run_route(&env, image, p);
            assert_eq!(
                check, run_verdict,
                "{image} --platform {p:?}: check says {check}, run says {run_verdict}\n{verdict:#}"
            );
            if run_verdict != taken {
                // Only the command's own problems block: run goes on so the runtime answers
                // 126/127 as Docker does.
                let codes: Vec<&str> = verdict["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["severity"] == "blocking")
                    .map(|r| r["code"].as_str().unwrap())
                    .collect();
                assert!(
                    codes.iter().all(|c| [
                        "entrypoint-missing",
                        "entrypoint-not-executable",
                        "interpreter-missing",
                        "no-command"
                    ]
                    .contains(c)),
                    "{image}: {codes:?}"
                );
            }
            seen.push(format!("{image} {p:?}: {check}/{taken}"));
        }
    }
    eprintln!("{}", seen.join("\n"));
    // The entrypoint-less image is unrunnable for check, and run goes native (to report 127).
    let noentry = loaded.keys().find(|k| k.contains("noentry")).unwrap();
    assert_eq!(
        dry_run_route(&env, noentry, None),
        ("unrunnable".to_string(), "native".to_string())
    );
    let o = run(&env, &["run", "--rm", noentry]);
    assert_eq!(o.status.code(), Some(127), "{:?}", text(&o));
}

#[test]
fn wireguard_image_runs_in_the_vm_and_kernel_min_is_refused() {
    if !common::is_root() {
        return skip("needs root");
    }
    let env = TestEnv::new();
    let fc = common::fixtures_check_dir();
    let mut loaded = BTreeMap::new();
    load(&env, &fc.join("module"), &mut loaded);
    load(&env, &fc.join("kernel-min"), &mut loaded);
    let module = loaded
        .keys()
        .find(|k| k.contains("module"))
        .unwrap()
        .clone();
    let kmin = loaded
        .keys()
        .find(|k| k.contains("kernel-min"))
        .unwrap()
        .clone();

    // kernel-min (99.0): unrunnable on the host and in the guest; run refuses in one line.
    let (route, _) = check_route(&env, &kmin, None);
    assert_eq!(route, "unrunnable");
    let o = run(&env, &["run", "--rm", &kmin]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{so}{se}");
    assert_eq!(se.lines().count(), 1, "{se}");
    assert!(se.contains("kernel-too-old") && se.contains("99.0"), "{se}");
    assert!(se.contains(&format!("xrun check {kmin}")), "{se}");

    let (route, verdict) = check_route(&env, &module, None);
    let codes: Vec<&str> = verdict["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    if route != "vm" {
        assert!(
            codes.contains(&"no-vm") || codes.contains(&"fact-unknown"),
            "{verdict:#}"
        );
        return skip(&format!(
            "no vm route here (qemu-system or guest missing; run ci/guest-image): {codes:?}"
        ));
    }
    assert!(codes.contains(&"missing-module"), "{verdict:#}");
    // The guest was profiled (its kernel has the module): no provisional warning.
    assert!(!codes.contains(&"guest-unprofiled"), "{verdict:#}");
    let o = run(
        &env,
        &[
            "run",
            "--rm",
            &module,
            "sh",
            "-c",
            "test -d /sys/module/wireguard && echo wireguard-here; uname -r",
        ],
    );
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}");
    assert!(so.contains("wireguard-here"), "{so}{se}");
    assert!(se.contains("in a VM"), "{se}");
}

#[test]
fn pull_policies() {
    if !common::is_root() {
        return skip("needs root");
    }
    let env = TestEnv::new();
    let reg = TestRegistry::start();
    reg.push("busybox-amd64", "bb:1");
    let image = reg.image("bb:1");
    // never + absent: one line, 125, nothing pulled.
    let o = run(&env, &["run", "--rm", "--pull", "never", &image, "true"]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{so}{se}");
    assert_eq!(se.lines().count(), 1, "{se}");
    assert!(se.contains("--pull never"), "{se}");
    // missing: pulls, then runs.
    let o = run(
        &env,
        &[
            "run",
            "--rm",
            "--pull",
            "missing",
            &image,
            "echo",
            "pulled-and-ran",
        ],
    );
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}");
    assert_eq!(so.trim(), "pulled-and-ran", "{se}");
    assert!(se.contains("Pulling from"), "progress goes to stderr: {se}");
    // always: asks the registry again (nothing new to download).
    let o = run(&env, &["run", "--rm", "--pull", "always", &image, "true"]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}");
    assert!(se.contains("Image is up to date"), "{se}");
    // Present: never runs it with the registry gone.
    drop(reg);
    let o = run(
        &env,
        &["run", "--rm", "-q", "--pull", "never", &image, "true"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn snapshot_leases_keep_layers_until_rm() {
    let env = TestEnv::new();
    let mut loaded = BTreeMap::new();
    load(&env, &common::fixture("busybox-amd64"), &mut loaded);
    let image = loaded.keys().next().unwrap().clone();
    let o = run(&env, &["create", &image, "echo", "hi"]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}");
    let id = so.trim().to_string();
    let snaps = env.root().join("snapshots");
    let count = || std::fs::read_dir(&snaps).unwrap().count();
    assert!(count() > 0);
    assert!(env.root().join("leases").join(&id).is_file());
    // rmi without -f refuses (in use); with -f it untags, and the snapshots stay.
    let o = run(&env, &["rmi", &image]);
    assert!(!o.status.success(), "{:?}", text(&o));
    let o = run(&env, &["rmi", "-f", &image]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(&env, &["image", "prune"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let leased = count();
    assert!(leased > 0, "prune removed a container's snapshots");
    // After rm, prune frees them.
    let o = run(&env, &["rm", &id]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(!env.root().join("leases").join(&id).exists());
    let o = run(&env, &["image", "prune"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(count(), 0);
}
