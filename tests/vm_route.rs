//! The VM route against real qemu-system (TCG here) and the real Debian cloud kernels built
//! by `ci/guest-image`. Each boot costs seconds: the boots are few, and serialized.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xrun::digest::Digest;
use xrun::vm::{self, Guest, VmError, VmIo, VmSpec};

static BOOTS: Mutex<()> = Mutex::new(());

/// A sink tests can read back.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The guest for `arch`, built (or found cached) by ci/guest-image; `None` (with the reason
/// printed) when qemu-system or the packages are truly absent.
fn guest(arch: &str) -> Option<Guest> {
    let bin = match arch {
        "amd64" => "qemu-system-x86_64",
        _ => "qemu-system-aarch64",
    };
    if vm::qemu::find_binary(bin, None).is_err() {
        eprintln!("skipping: {bin} is not installed");
        return None;
    }
    let st = Command::new(repo().join("ci/guest-image"))
        .args(["--arch", arch])
        .status()
        .expect("run ci/guest-image");
    assert!(st.success(), "ci/guest-image --arch {arch} failed");
    // xrun's own kernel where it is built (XRUN_GUEST_KERNEL_ARCHES), else the Debian guest.
    let ci = vm::guest::ci_guest_dir();
    let own = ci.join(arch);
    let dir = if own.join("guest.json").is_file() {
        own
    } else {
        ci.join("debian").join(arch)
    };
    Some(Guest::from_dir(&dir).unwrap())
}

/// A one-layer busybox image from the busybox-static .deb of `arch`.
fn busybox_layer(arch: &str, dir: &Path) -> PathBuf {
    let deb = fs::read_dir("/var/cache/xrun-ci/debs")
        .expect("ci/fetch-debs has run")
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("busybox-static_") && n.ends_with(&format!("_{arch}.deb"))
        })
        .expect("busybox-static deb in /var/cache/xrun-ci/debs (ci/fetch-debs)");
    let x = dir.join(format!("deb-{arch}"));
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let layer = dir.join(format!("layer-{arch}"));
    fs::create_dir_all(layer.join("bin")).unwrap();
    fs::create_dir_all(layer.join("etc")).unwrap();
    fs::create_dir_all(layer.join("tmp")).unwrap();
    fs::copy(x.join("bin/busybox"), layer.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "uname", "cat", "ls", "sleep", "true", "false", "kill", "id", "printf",
        "pwd", "hostname", "test", "od",
    ] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(a)).unwrap();
    }
    fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(layer.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    layer
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(guest: &Guest, tmp: &Path, layer: &Path, spec: &VmSpec) -> Result<Out, VmError> {
    run_in(guest, tmp, layer, spec, None)
}

fn run_in(
    guest: &Guest,
    tmp: &Path,
    layer: &Path,
    spec: &VmSpec,
    stdin: Option<&'static [u8]>,
) -> Result<Out, VmError> {
    let (o, e) = (Buf::default(), Buf::default());
    let key = Digest::of(layer.to_string_lossy().as_bytes());
    let r = vm::run_image(
        guest,
        &tmp.join("rootfs-cache"),
        &key,
        &[layer.to_path_buf()],
        spec,
        VmIo {
            stdin: stdin.map(|b| Box::new(b) as Box<dyn std::io::Read + Send>),
            stdout: Box::new(o.clone()),
            stderr: Box::new(e.clone()),
        },
    )?;
    Ok(Out {
        code: r.code,
        stdout: o.text(),
        stderr: e.text(),
    })
}

fn sh(script: &str) -> VmSpec {
    VmSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into()],
        boot_timeout: Duration::from_secs(240),
        ..Default::default()
    }
}

fn qemu_pids_with(needle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&c).contains(needle)
        {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v
}

#[test]
fn amd64_guest_runs_commands_with_exact_args_exit_codes_and_modules() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest("amd64") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layer = busybox_layer("amd64", tmp.path());

    // The guest kernel, the guest arch, stdout and stderr apart, the exit code.
    let o = run(
        &g,
        tmp.path(),
        &layer,
        &sh("uname -r; uname -m; echo to-err >&2; exit 42"),
    )
    .unwrap();
    assert_eq!(o.code, 42, "stderr: {}", o.stderr);
    assert_eq!(o.stdout, format!("{}\nx86_64\n", g.kernel_release));
    assert_eq!(o.stderr, "to-err\n");

    // Exact argument bytes, env with a newline, workdir, hostname, user by name.
    let mut spec = VmSpec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "for a in \"$@\"; do printf '[%s]' \"$a\"; done; echo; pwd; hostname; id -u; id -g; printf '<%s>' \"$FOO\"".into(),
            "argv0".into(),
            "a b".into(),
            "it's \"quoted\" $HOME `x`".into(),
            "line1\nline2\n".into(),
            "".into(),
            "  lead".into(),
        ],
        env: vec!["PATH=/bin".into(), "FOO=x\ny z".into()],
        workdir: Some("/tmp/work dir".into()),
        hostname: Some("vmhost".into()),
        user: Some("nobody".into()),
        ..sh("")
    };
    let o = run(&g, tmp.path(), &layer, &spec).unwrap();
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
    assert_eq!(
        o.stdout,
        "[a b][it's \"quoted\" $HOME `x`][line1\nline2\n][][  lead]\n/tmp/work dir\nvmhost\n65534\n65534\n<x\ny z>"
    );

    // stdin forwarded (-i) up to EOF, and exit 1; a SIGKILLed command (137), a missing
    // program (127).
    let o = run_in(
        &g,
        tmp.path(),
        &layer,
        &sh("cat; exit 1"),
        Some(b"in 1\nin 2\n"),
    )
    .unwrap();
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (1, "in 1\nin 2\n"),
        "{}",
        o.stderr
    );
    assert_eq!(
        run(&g, tmp.path(), &layer, &sh("kill -9 $$")).unwrap().code,
        137
    );
    spec = VmSpec {
        argv: vec!["no-such-program".into()],
        ..sh("")
    };
    let o = run(&g, tmp.path(), &layer, &spec).unwrap();
    assert_eq!(o.code, 127);
    assert!(o.stderr.contains("no-such-program"), "{}", o.stderr);

    // org.xrun.kernel.modules=wireguard: loaded in the guest (the host kernel has no modules).
    let spec = VmSpec {
        modules: vec!["wireguard".into()],
        ..sh("test -d /sys/module/wireguard && echo wireguard-loaded")
    };
    let o = run(&g, tmp.path(), &layer, &spec).unwrap();
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "wireguard-loaded\n"),
        "{}",
        o.stderr
    );
    // A module the guest does not ship is refused before booting.
    let spec = VmSpec {
        modules: vec!["no_such_module".into()],
        ..sh("true")
    };
    assert!(matches!(
        run(&g, tmp.path(), &layer, &spec),
        Err(VmError::ModuleUnavailable { .. })
    ));
}

#[test]
fn writable_disk_keeps_changes_between_runs() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest("amd64") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layer = busybox_layer("amd64", tmp.path());
    let disk = tmp.path().join("rw.img");
    vm::disk::create(&disk, 64 << 20).unwrap();
    let with_disk = |s: &str| VmSpec {
        writable_disk: Some(disk.clone()),
        ..sh(s)
    };
    let o = run(&g, tmp.path(), &layer, &with_disk("echo kept > /etc/note")).unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = run(&g, tmp.path(), &layer, &with_disk("cat /etc/note")).unwrap();
    assert_eq!((o.code, o.stdout.as_str()), (0, "kept\n"), "{}", o.stderr);
    // Without the disk, the image is pristine.
    let o = run(&g, tmp.path(), &layer, &sh("test -e /etc/note; echo $?")).unwrap();
    assert_eq!(o.stdout, "1\n");
}

#[test]
fn arm64_guest_runs_arm64_busybox() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest("arm64") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layer = busybox_layer("arm64", tmp.path());
    let o = run(&g, tmp.path(), &layer, &sh("uname -m; uname -r; exit 3")).unwrap();
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert_eq!(o.stdout, format!("aarch64\n{}\n", g.kernel_release));
}

#[test]
fn a_command_that_hangs_ends_at_the_timeout_with_nothing_left_running() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest("amd64") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layer = busybox_layer("amd64", tmp.path());
    let spec = VmSpec {
        timeout: Some(Duration::from_secs(8)),
        ..sh("echo started; sleep 600")
    };
    let e = run(&g, tmp.path(), &layer, &spec).err().expect("a timeout");
    assert!(matches!(e, VmError::Timeout { .. }), "{e}");
    let needle = tmp.path().to_string_lossy().into_owned();
    assert!(qemu_pids_with(&needle).is_empty(), "qemu left running");
}

#[test]
fn missing_guest_or_qemu_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Guest::locate_in(&[tmp.path().join("nowhere")], "amd64", tmp.path()).unwrap_err();
    assert!(matches!(e, VmError::GuestMissing { .. }), "{e}");
    assert!(e.to_string().contains("ci/guest-image"), "{e}");
    let Some(g) = guest("amd64") else { return };
    // An OCI layout without the architecture.
    let e = Guest::from_oci_layout(
        &vm::guest::ci_guest_dir().join("oci"),
        "riscv64",
        tmp.path(),
    )
    .unwrap_err();
    assert!(matches!(e, VmError::GuestMissing { .. }), "{e}");
    // The layout's amd64 image unpacks (digests verified) to a usable guest.
    let from_layout =
        Guest::from_oci_layout(&vm::guest::ci_guest_dir().join("oci"), "amd64", tmp.path())
            .unwrap();
    assert_eq!(from_layout.kernel_release, g.kernel_release);
    // qemu missing from the search path.
    let img = tmp.path().join("x.erofs");
    fs::write(&img, b"").unwrap();
    let spec = VmSpec {
        qemu_path: Some(tmp.path().as_os_str().to_owned()),
        ..sh("true")
    };
    let io = VmIo::new(Box::new(Buf::default()), Box::new(Buf::default()));
    let e = vm::run(&g, &img, &spec, io).unwrap_err();
    assert!(matches!(e, VmError::QemuMissing { .. }), "{e}");
    assert!(e.to_string().contains("qemu-system-x86_64"), "{e}");
}
