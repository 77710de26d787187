//! Helpers for `ci/bench-vm` (all `#[ignore]`: never part of the suite, never asserting
//! performance). `ci/bench-vm` times these one by one with hyperfine.
//!
//! Inputs from the environment: `XRUN_BENCH_GUEST` (guest directory), `XRUN_BENCH_ROOTFS`
//! (erofs image), `XRUN_BENCH_LAYERS` (colon-separated layer dirs), `XRUN_BENCH_CACHE`.

use std::path::PathBuf;
use std::time::Instant;

use xrun::digest::Digest;
use xrun::vm::{self, Guest, VmSpec};

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set (run ci/bench-vm)"))
}

/// One `vm::run` of `true`, as the CLI would do it.
#[test]
#[ignore]
fn bench_vm_run_true() {
    let g = Guest::from_dir(&PathBuf::from(env("XRUN_BENCH_GUEST"))).unwrap();
    let spec = VmSpec {
        argv: vec!["true".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let r = vm::run(
        &g,
        &PathBuf::from(env("XRUN_BENCH_ROOTFS")),
        &spec,
        vm::VmIo::inherit(false),
    )
    .unwrap();
    assert_eq!(r.code, 0);
    eprintln!(
        "accel={:?} ({}) boot={:?} total={:?}",
        r.accel.accel, r.accel.reason, r.boot_time, r.total_time
    );
}

/// Builds the rootfs image of the given layers into an empty cache, then hits the cache.
#[test]
#[ignore]
fn bench_rootfs_build() {
    let layers: Vec<PathBuf> = env("XRUN_BENCH_LAYERS")
        .split(':')
        .map(PathBuf::from)
        .collect();
    let cache = PathBuf::from(env("XRUN_BENCH_CACHE"));
    let key = Digest::of(env("XRUN_BENCH_LAYERS").as_bytes());
    let t = Instant::now();
    let (img, built) = vm::rootfs::image_for(&cache, &key, &layers).unwrap();
    let first = t.elapsed();
    let t = Instant::now();
    let (_, again) = vm::rootfs::image_for(&cache, &key, &layers).unwrap();
    let cached = t.elapsed();
    assert!(built && !again);
    println!(
        "rootfs image: {} bytes, first build {:.3} s, cached {:.6} s",
        std::fs::metadata(&img).unwrap().len(),
        first.as_secs_f64(),
        cached.as_secs_f64()
    );
}
