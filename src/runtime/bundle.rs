//! An OCI bundle directory: the overlay root file system (the image's layers as read-only
//! lower dirs, topmost first, and a per-container upper/work dir) and `config.json`.
//! Any OCI runtime (libcontainer in-process, `runc run`, `crun run`) can run it.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use super::spec::{self, ExtraMount, SpecInput};
use super::{ImageInput, RunOptions, RuntimeError, init, inroot, placement};

/// What a caller adds to a bundle beyond the image and the options (the emulated route uses
/// this to force the init and to bind its emulator in).
#[derive(Debug, Clone, Default)]
pub struct BundleExtras {
    /// Run xrun's own init as PID 1 even without `--init`.
    pub force_init: bool,
    /// More bind mounts.
    pub mounts: Vec<ExtraMount>,
    /// The network namespace to join and the `/etc/hosts` and `/etc/resolv.conf` to give
    /// (a network of xrun's or another container's; see [`super::net`]).
    pub network: Option<super::net::Joined>,
}

/// A bundle directory (see the module doc of [`crate::runtime`] for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The directory (`--bundle` for runc/crun): `config.json`, the `rootfs` mount point,
    /// the `etc` files.
    pub dir: PathBuf,
    /// Where the writable container layer (`upper`, `work`) lives: `dir` itself for a plain
    /// bundle; the container's directory in the store when the bundle is on tmpfs.
    pub layer_dir: PathBuf,
}

impl Bundle {
    /// The bundle at `dir`, with its writable layer in it too (nothing is created).
    pub fn at(dir: &Path) -> Bundle {
        Bundle {
            dir: dir.to_path_buf(),
            layer_dir: dir.to_path_buf(),
        }
    }

    /// The bundle at `dir` with its writable layer in `layer_dir` (nothing is created).
    pub fn with_layer(dir: &Path, layer_dir: &Path) -> Bundle {
        Bundle {
            dir: dir.to_path_buf(),
            layer_dir: layer_dir.to_path_buf(),
        }
    }

    /// The overlay mount point.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The writable container layer.
    pub fn upper(&self) -> PathBuf {
        self.layer_dir.join("upper")
    }

    fn work(&self) -> PathBuf {
        self.layer_dir.join("work")
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Whether the root file system is mounted.
    pub fn is_mounted(&self) -> bool {
        is_mount_point(&self.rootfs())
    }

    /// Mounts the overlay: `layer_dirs` (lowest first) as lower dirs, `upper/` as the writable
    /// layer. Already mounted: nothing to do. `volatile` (for `--rm` containers, whose writable
    /// layer is deleted at exit) skips overlayfs's syncs of the upper layer; a kernel without
    /// the option (before 5.10) gets a normal mount.
    pub fn mount_rootfs(&self, layer_dirs: &[PathBuf], volatile: bool) -> Result<(), RuntimeError> {
        if self.is_mounted() {
            return Ok(());
        }
        for d in [self.rootfs(), self.upper(), self.work()] {
            std::fs::create_dir_all(&d)
                .map_err(|e| RuntimeError::io(format!("creating {}", d.display()), e))?;
        }
        let mut lowers: Vec<PathBuf> = layer_dirs.iter().rev().cloned().collect();
        if has_etc_dir(layer_dirs)
            && let Some(points) = etc_mount_points()
        {
            lowers.insert(0, points);
        }
        if lowers.is_empty() {
            let empty = self.dir.join("empty");
            std::fs::create_dir_all(&empty)
                .map_err(|e| RuntimeError::io("creating empty layer", e))?;
            lowers.push(empty);
        }
        for l in &lowers {
            let s = l.to_string_lossy();
            if s.contains([':', ',']) || !l.is_dir() {
                return Err(RuntimeError::BadInput(format!(
                    "layer directory {s} is missing or its name cannot be used in an overlay mount"
                )));
            }
        }
        let lowerdir = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let data = format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            self.upper().display(),
            self.work().display()
        );
        let mount = |data: &str| {
            nix::mount::mount(
                Some("overlay"),
                &self.rootfs(),
                Some("overlay"),
                MsFlags::empty(),
                Some(data),
            )
        };
        let mounted = if volatile {
            match mount(&format!("{data},volatile")) {
                Err(nix::errno::Errno::EINVAL) => mount(&data),
                r => r,
            }
        } else {
            mount(&data)
        };
        mounted.map_err(|e| {
            RuntimeError::io(
                format!(
                    "mounting the overlay root file system ({} layers)",
                    lowers.len()
                ),
                e.into(),
            )
        })
    }

    /// Unmounts the overlay (lazily, so a stray process cannot keep it busy). Not mounted:
    /// nothing to do.
    pub fn unmount_rootfs(&self) -> Result<(), RuntimeError> {
        let rootfs = self.rootfs();
        while is_mount_point(&rootfs) {
            match nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH) {
                Ok(()) => {}
                // Unmounted meanwhile by another process (the monitor finishing while `rm -f`
                // cleans up): the loop's check sees it gone.
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT)
                    if !is_mount_point(&rootfs) => {}
                Err(e) => {
                    return Err(RuntimeError::io(
                        format!("unmounting {}", rootfs.display()),
                        e.into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Mounts the root file system and writes `config.json` for `image` + `opts`. On error
    /// nothing stays mounted.
    pub fn prepare(
        &self,
        id: &str,
        image: &ImageInput,
        opts: &RunOptions,
        extras: &BundleExtras,
    ) -> Result<Spec, RuntimeError> {
        self.mount_rootfs(&image.layer_dirs, opts.auto_remove)?;
        let r = self.write_config(id, image, opts, extras);
        if r.is_err() {
            let _ = self.unmount_rootfs();
        }
        r
    }

    fn write_config(
        &self,
        id: &str,
        image: &ImageInput,
        opts: &RunOptions,
        extras: &BundleExtras,
    ) -> Result<Spec, RuntimeError> {
        let rootfs = self.rootfs();
        let root = inroot::Root::open(&rootfs)
            .map_err(|e| RuntimeError::Runtime(format!("opening the root file system: {e}")))?;
        let mut mounts = self.etc_files(id, opts, &root, extras.network.as_ref())?;
        mounts.extend(extras.mounts.iter().cloned());
        let mut prefix = Vec::new();
        if opts.init || extras.force_init || opts.route == super::options::ExecRoute::Emulated {
            let (m, p) = init::init_mounts()?;
            mounts.extend(m);
            prefix = p;
        }
        // Every destination and the working directory resolved in the root (see
        // `placement`): config.json names the resolved paths.
        let mut opts = opts.clone();
        let mut placed = Vec::new();
        placement::binds(&root, &mut mounts, &mut placed)?;
        for v in &mut opts.volumes {
            let label = format!(
                "-v {}:{}{}",
                v.host.display(),
                v.container,
                if v.read_only { ":ro" } else { "" }
            );
            v.container = placement::bind(
                &root,
                &placement::Bind {
                    source: &v.host,
                    destination: &v.container,
                    label,
                },
                &mut placed,
            )?;
        }
        let wd = match &opts.workdir {
            Some(w) => Some((w.clone(), format!("-w {w}"))),
            None => image
                .config
                .config()
                .as_ref()
                .and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let label = format!("the image's WorkingDir {w:?}");
                    (w, label)
                }),
        };
        if let Some((wd, label)) = wd {
            let binds: Vec<(String, &Path)> = mounts
                .iter()
                .map(|m| (m.destination.clone(), m.source.as_path()))
                .chain(
                    opts.volumes
                        .iter()
                        .map(|v| (v.container.clone(), v.host.as_path())),
                )
                .collect();
            let placed = placement::workdir(&root, &wd, &label, &binds)?;
            opts.workdir = Some(placed);
        }
        let opts = &opts;
        let spec = spec::build(
            image,
            opts,
            &SpecInput {
                id,
                rootfs: &rootfs,
                mounts: &mounts,
                args_prefix: &prefix,
                netns: extras.network.as_ref().map(|n| n.netns.as_path()),
            },
        )?;
        let tmp = self.dir.join("config.json.tmp");
        let json =
            serde_json::to_vec_pretty(&spec).map_err(|e| RuntimeError::Runtime(e.to_string()))?;
        std::fs::write(&tmp, json).map_err(|e| RuntimeError::io("writing config.json", e))?;
        std::fs::rename(&tmp, self.config_path())
            .map_err(|e| RuntimeError::io("writing config.json", e))?;
        Ok(spec)
    }

    /// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` as Docker provides them (when the
    /// image has an `/etc`).
    fn etc_files(
        &self,
        id: &str,
        opts: &RunOptions,
        root: &inroot::Root,
        joined: Option<&super::net::Joined>,
    ) -> Result<Vec<ExtraMount>, RuntimeError> {
        let find = inroot::Policy {
            create: inroot::Create::Nothing,
            refuse_kernel_mounts: false,
        };
        let has_etc = root
            .resolve("/etc", find)
            .is_ok_and(|r| r.kind == inroot::Kind::Dir);
        if !has_etc {
            return Ok(vec![]);
        }
        let etc = self.dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| RuntimeError::io("creating etc files", e))?;
        let host = spec::hostname(id, opts);
        let (hosts, resolv) = match (&opts.network, joined) {
            (_, Some(j)) => (j.hosts.clone(), j.resolv.clone()),
            (super::Network::Host, _) => (
                std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
                std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
            _ => (
                format!(
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{host}\n"
                ),
                String::new(),
            ),
        };
        let files = [
            ("hostname", format!("{host}\n")),
            ("hosts", hosts),
            ("resolv.conf", resolv),
        ];
        let mut out = Vec::new();
        for (name, content) in files {
            let p = etc.join(name);
            std::fs::write(&p, content)
                .map_err(|e| RuntimeError::io(format!("writing {}", p.display()), e))?;
            out.push(ExtraMount {
                source: p,
                destination: format!("/etc/{name}"),
                read_only: false,
            });
        }
        Ok(out)
    }
}

/// Whether the merged layers (lowest first) have `/etc` as a directory: the topmost layer
/// with an entry for it decides (a whiteout or anything else than a directory: no).
fn has_etc_dir(layer_dirs: &[PathBuf]) -> bool {
    for l in layer_dirs.iter().rev() {
        match std::fs::symlink_metadata(l.join("etc")) {
            Ok(m) => return m.is_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return false,
        }
    }
    false
}

/// A layer holding the empty mount points xrun binds its `etc` files onto (`/etc/hostname`,
/// `/etc/hosts`, `/etc/resolv.conf`), shared by every container and put on top of the
/// image's layers when the image has an `/etc` directory (Docker adds such an init layer per
/// container): the runtime then finds its mount points instead of creating them in each
/// container's writable layer on disk. On tmpfs in [`super::rundir`], made once; `None`
/// without it.
fn etc_mount_points() -> Option<PathBuf> {
    const NAMES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];
    let run = super::rundir::ensure()?;
    let dir = run.join("mountpoints").join("v1");
    if NAMES.iter().all(|n| dir.join("etc").join(n).is_file()) {
        return Some(dir);
    }
    let parent = run.join("mountpoints");
    std::fs::create_dir_all(&parent).ok()?;
    let tmp = tempfile::Builder::new()
        .prefix(".make-")
        .tempdir_in(&parent)
        .ok()?;
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).ok()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).ok()?;
    for n in NAMES {
        std::fs::write(etc.join(n), b"").ok()?;
        std::fs::set_permissions(etc.join(n), std::fs::Permissions::from_mode(0o644)).ok()?;
    }
    let made = tmp.keep();
    if std::fs::rename(&made, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&made);
    }
    NAMES
        .iter()
        .all(|n| dir.join("etc").join(n).is_file())
        .then_some(dir)
}

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == want))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}
