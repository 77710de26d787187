//! The x86-64 level qemu's TCG emulates: `xrun host` records it (from the qemu version) and
//! the plan relies on it; here a probe that asks the CPU itself (`__builtin_cpu_supports`,
//! built with gcc) runs under qemu-x86_64 and must report the recorded level.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the probe: prints the highest x86-64 level the CPU it runs on supports.
fn build_probe(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("level.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){int l=1;__builtin_cpu_init();\n\
         if(__builtin_cpu_supports(\"x86-64-v2\"))l=2;\n\
         if(__builtin_cpu_supports(\"x86-64-v3\"))l=3;\n\
         if(__builtin_cpu_supports(\"x86-64-v4\"))l=4;\n\
         printf(\"%d\\n\",l);return 0;}\n",
    )
    .unwrap();
    let bin = dir.join("level");
    let ok = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}

fn run_level(cmd: &mut Command) -> u8 {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn recorded_tcg_level_matches_a_probe_under_qemu() {
    if std::env::consts::ARCH != "x86_64" {
        common::skip("the probe is built for x86_64 with the host's gcc");
        return;
    }
    let qemu = ["/usr/bin/qemu-x86_64-static", "/usr/bin/qemu-x86_64"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let Some(qemu) = qemu else {
        common::skip("no qemu-x86_64 installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(probe) = build_probe(dir.path()) else {
        common::skip("gcc cannot build a static probe here");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["host", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tcg = &p["emulation"]["tcg_amd64_level"];
    let recorded = tcg["level"].as_u64().expect("tcg_amd64_level recorded") as u8;
    assert!(
        tcg["evidence"].as_str().unwrap().contains("--version"),
        "{tcg}"
    );
    assert_eq!(p["schema_minor"], 1);
    // qemu-user's default CPU (what a binfmt handler runs) and `-cpu max` (what the VM gets).
    let default = run_level(Command::new(qemu).arg(&probe));
    let max = run_level(Command::new(qemu).args(["-cpu", "max"]).arg(&probe));
    assert_eq!(default, recorded, "qemu-user default CPU vs {tcg}");
    assert_eq!(max, recorded, "-cpu max vs {tcg}");
    // And never AVX-512.
    assert!(recorded <= 3);
}
