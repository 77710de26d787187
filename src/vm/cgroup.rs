//! The host cgroup qemu runs in when a VM container has `--memory` or `--cpus`: the same
//! place a native container's cgroup goes (`xrun/<name>` in each v1 hierarchy, or on pure v2
//! `/sys/fs/cgroup/xrun/<name>`), with the memory limit raised by [`QEMU_OVERHEAD_MIB`] over
//! the guest's RAM (qemu's own code, device buffers and TCG's translation cache) and the CPU
//! quota of `--cpus`. qemu moves itself there before it starts (writing `0` to
//! `cgroup.procs` between fork and exec), so everything it allocates is counted.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use super::VmError;
use crate::runtime::cgroups::{CGROUP_ROOT, is_pure_v2};

/// What qemu needs beyond the guest's RAM (measured here: a 256 MiB TCG guest's qemu has
/// ≈ 200–250 MB resident in all; its own part stays well under this).
pub const QEMU_OVERHEAD_MIB: u64 = 256;

/// The limits for qemu's cgroup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLimits {
    /// Guest RAM in MiB (the limit is this plus [`QEMU_OVERHEAD_MIB`]); `None`: no limit.
    pub guest_mib: Option<u64>,
    /// CPUs (`--cpus`, may be fractional); `None`: no quota.
    pub cpus: Option<f64>,
}

/// qemu's cgroup directories, removed when dropped (once qemu is gone).
#[derive(Debug)]
pub struct QemuCgroup {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of every directory, for the child to join.
    procs: Vec<CString>,
}

impl QemuCgroup {
    /// Creates the cgroup `xrun/<name>` with `limits`.
    pub fn create(name: &str, limits: HostLimits) -> Result<QemuCgroup, VmError> {
        let root = Path::new(CGROUP_ROOT);
        let rel = format!("xrun/{name}");
        let mut cg = QemuCgroup {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        let mem = limits
            .guest_mib
            .map(|m| (m + QEMU_OVERHEAD_MIB) * 1024 * 1024);
        let quota = limits
            .cpus
            .map(|c| (c * 100_000.0).round().max(1000.0) as u64);
        let mut files: Vec<(PathBuf, &str, String)> = Vec::new();
        if is_pure_v2() {
            let d = root.join(&rel);
            if let Some(m) = mem {
                files.push((d.clone(), "memory.max", m.to_string()));
            }
            if let Some(q) = quota {
                files.push((d.clone(), "cpu.max", format!("{q} 100000")));
            }
            if !files.is_empty() {
                cg.add_dir(&d)?;
            }
        } else {
            if let Some(m) = mem {
                let d = root.join("memory").join(&rel);
                cg.add_dir(&d)?;
                files.push((d, "memory.limit_in_bytes", m.to_string()));
            }
            if let Some(q) = quota {
                let d = root.join("cpu").join(&rel);
                cg.add_dir(&d)?;
                files.push((d.clone(), "cpu.cfs_period_us", "100000".into()));
                files.push((d, "cpu.cfs_quota_us", q.to_string()));
            }
        }
        for (d, f, v) in files {
            let p = d.join(f);
            fs::write(&p, &v).map_err(VmError::io(format!("writing {v} to {}", p.display())))?;
        }
        Ok(cg)
    }

    fn add_dir(&mut self, d: &Path) -> Result<(), VmError> {
        fs::create_dir_all(d).map_err(VmError::io(d.display().to_string()))?;
        self.dirs.push(d.to_path_buf());
        let procs = d.join("cgroup.procs");
        self.procs.push(
            CString::new(procs.as_os_str().as_encoded_bytes())
                .map_err(|_| VmError::BadSpec("cgroup path with a NUL byte".into()))?,
        );
        Ok(())
    }

    /// The directories (for tests and `--debug`).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Moves the calling process into the cgroup. Only async-signal-safe calls: for
    /// `pre_exec`.
    pub fn join_self(&self) -> std::io::Result<()> {
        for p in &self.procs {
            // SAFETY: open/write/close on a valid C string; no allocation.
            unsafe {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if r != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

impl Drop for QemuCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Empty once qemu is reaped; a short retry covers the kernel's lag.
            for _ in 0..50 {
                if fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
