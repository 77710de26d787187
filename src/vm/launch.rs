//! A VM container's launch description: everything its record needs to boot the VM again
//! later (`xrun start`), saved as `vm.json` in the container's directory, next to its
//! writable layer disk (`disk.ext4`) and the directory of the running VM's files (`vm-run/`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::guest::Guest;
use super::net::VmNetwork;
use super::runner::{VmIo, VmRun, VmSpec, start_image};
use super::{VmError, disk};
use crate::digest::Digest;

/// The file name of the launch description in a container's directory.
pub const LAUNCH_FILE: &str = "vm.json";
/// The file name of the writable layer disk in a container's directory.
pub const DISK_FILE: &str = "disk.ext4";
/// The directory of the running VM's files (initrd, sockets, console log) in a container's
/// directory.
pub const RUN_DIR: &str = "vm-run";
/// The writable layer disk's size (sparse: it takes what the container writes).
pub const DEFAULT_DISK_SIZE: u64 = 4 << 30;

/// How to boot a container's VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmLaunch {
    /// The guest directory (kernel, initrd, `guest.json`).
    pub guest_dir: PathBuf,
    /// Where the rootfs images are cached (by manifest digest).
    pub rootfs_cache: PathBuf,
    /// The image's manifest digest (the rootfs image's key).
    pub manifest: Digest,
    /// The image's layer directories, lowest first (to rebuild the rootfs image if needed).
    pub layer_dirs: Vec<PathBuf>,
    /// Size of the writable layer disk in bytes; 0: none (a tmpfs in the guest, for `--rm`
    /// containers, whose changes go anyway).
    pub disk_size: u64,
    /// The command, environment, user, hostname, modules and resources (their keys sit at
    /// the top level of `vm.json`).
    #[serde(flatten)]
    pub spec: VmSpec,
}

impl VmLaunch {
    /// Writes the description into container directory `dir` (temp name + rename).
    pub fn save(&self, dir: &Path) -> Result<(), VmError> {
        let path = dir.join(LAUNCH_FILE);
        let tmp = dir.join(format!("{LAUNCH_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| VmError::BadSpec(format!("encoding {LAUNCH_FILE}: {e}")))?;
        fs::write(&tmp, json).map_err(VmError::io(tmp.display().to_string()))?;
        fs::rename(&tmp, &path).map_err(VmError::io(path.display().to_string()))
    }

    /// Reads the description of container directory `dir`.
    pub fn load(dir: &Path) -> Result<VmLaunch, VmError> {
        let path = dir.join(LAUNCH_FILE);
        let bytes = fs::read(&path).map_err(VmError::io(path.display().to_string()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| VmError::BadSpec(format!("{}: {e}", path.display())))
    }

    /// The run specification for container directory `dir`, with a terminal of size `tty`.
    pub fn spec(&self, dir: &Path, tty: Option<(u16, u16)>) -> VmSpec {
        VmSpec {
            writable_disk: (self.disk_size > 0).then(|| dir.join(DISK_FILE)),
            tty,
            run_dir: Some(dir.join(RUN_DIR)),
            ..self.spec.clone()
        }
    }

    /// Boots the VM of container directory `dir` (creating its writable layer disk on the
    /// first start) on `network` (`None`: the guest has only `lo`); returns once qemu runs.
    pub fn start(
        &self,
        dir: &Path,
        tty: Option<(u16, u16)>,
        network: Option<VmNetwork>,
        io: VmIo,
    ) -> Result<VmRun, VmError> {
        let guest = Guest::from_dir(&self.guest_dir)?;
        if self.disk_size > 0 {
            disk::create(&dir.join(DISK_FILE), self.disk_size)?;
        }
        start_image(
            &guest,
            &self.rootfs_cache,
            &self.manifest,
            &self.layer_dirs,
            &VmSpec {
                network,
                ..self.spec(dir, tty)
            },
            io,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_spec() {
        let dir = tempfile::tempdir().unwrap();
        let l = VmLaunch {
            guest_dir: "/g".into(),
            rootfs_cache: "/c".into(),
            manifest: Digest::of(b"m"),
            layer_dirs: vec!["/l1".into()],
            disk_size: 1 << 30,
            spec: VmSpec {
                argv: vec!["sh".into(), "-c".into(), "echo 'a b'\n".into()],
                env: vec!["PATH=/bin".into()],
                workdir: Some("/w".into()),
                user: None,
                hostname: Some("h".into()),
                modules: vec!["wireguard".into()],
                memory_mib: 128,
                cpus: 2,
                ..VmSpec::default()
            },
        };
        l.save(dir.path()).unwrap();
        assert_eq!(VmLaunch::load(dir.path()).unwrap(), l);
        let s = l.spec(dir.path(), Some((24, 80)));
        assert_eq!(s.argv, l.spec.argv);
        assert_eq!(s.boot_timeout, VmSpec::default().boot_timeout);
        // The keys of vm.json stay flat (files written before keep loading).
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(LAUNCH_FILE)).unwrap()).unwrap();
        assert_eq!(json["memory_mib"], 128);
        assert!(json.get("tty").is_none() && json.get("spec").is_none());
        assert_eq!(s.writable_disk, Some(dir.path().join(DISK_FILE)));
        assert_eq!(s.run_dir, Some(dir.path().join(RUN_DIR)));
        assert_eq!(s.tty, Some((24, 80)));
        let tmpfs = VmLaunch { disk_size: 0, ..l };
        assert_eq!(tmpfs.spec(dir.path(), None).writable_disk, None);
        assert!(VmLaunch::load(&dir.path().join("nope")).is_err());
    }
}
