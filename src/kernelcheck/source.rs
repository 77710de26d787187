//! Where host facts are read from: this machine (`/`), or a recorded copy of another machine's
//! files under a root prefix, with the few facts that are not files (uname, page size, `PATH`)
//! injected. Reading never changes anything.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `uname(2)` fields the profile uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uname {
    /// `uname -s` (`Linux`).
    pub sysname: String,
    /// `uname -n` (the host name).
    pub nodename: String,
    /// `uname -r` (`6.1.0-13-amd64`).
    pub release: String,
    /// `uname -v`.
    #[serde(default)]
    pub version: String,
    /// `uname -m` (`x86_64`, `aarch64`, `armv7l`).
    pub machine: String,
}

/// Where to read host facts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    /// Every absolute path (`/proc/cpuinfo`) is read under this root (`/` for this machine).
    pub root: PathBuf,
    /// The kernel's identity.
    pub uname: Uname,
    /// Page size in bytes (`sysconf(_SC_PAGESIZE)` on this machine).
    pub page_size: u64,
    /// `little` or `big` when known; `None` derives it from `uname.machine`.
    pub endianness: Option<String>,
    /// Directories searched for programs (qemu), in order, as absolute paths on the host.
    pub path_dirs: Vec<PathBuf>,
    /// arm64 only: whether the kernel accepted `personality(PER_LINUX32)`, which arm64 Linux
    /// allows only when the CPU runs AArch32 at EL0 and the kernel has `CONFIG_COMPAT`
    /// ([`probe_aarch32_el0`]); `None` when not arm64 or not recorded.
    pub aarch32_el0: Option<bool>,
}

/// The file `HostSource::recorded` reads: the non-file facts of a recorded host.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recorded {
    uname: Uname,
    page_size: u64,
    #[serde(default)]
    endianness: Option<String>,
    #[serde(default)]
    path: Vec<PathBuf>,
    #[serde(default)]
    aarch32_el0: Option<bool>,
}

/// Why a recorded host cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `source.json` cannot be read.
    #[error("cannot read {path}: {source} (a recorded host directory needs a source.json)")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `source.json` is malformed.
    #[error("{path} is not a recorded host description: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// The name of the description file in a recorded host directory.
pub const RECORDED_FILE: &str = "source.json";

/// Whether this arm64 machine runs AArch32 user code: arm64 Linux accepts
/// `personality(PER_LINUX32)` only when every CPU has AArch32 at EL0 and the kernel has
/// `CONFIG_COMPAT` (`arch/arm64/kernel/sys.c`; the EL0 field of `ID_AA64PFR0_EL1` is hidden
/// from userspace's MRS emulation). The calling thread's personality is restored at once.
/// `None` when the current personality cannot be read.
pub fn probe_aarch32_el0() -> Option<bool> {
    const PER_LINUX32: libc::c_ulong = 0x0008;
    const PER_MASK: libc::c_ulong = 0x00ff;
    // SAFETY: personality(2) only reads (0xffffffff) or sets this thread's execution domain;
    // the previous value is put back before returning.
    unsafe {
        let current = libc::personality(0xffff_ffff);
        if current < 0 {
            return None;
        }
        let current = current as libc::c_ulong;
        let accepted = libc::personality((current & !PER_MASK) | PER_LINUX32) >= 0;
        libc::personality(current);
        Some(accepted)
    }
}

impl HostSource {
    /// This machine: root `/`, `uname(2)`, `sysconf(_SC_PAGESIZE)`, `$PATH`.
    pub fn live() -> HostSource {
        let uname = match nix::sys::utsname::uname() {
            Ok(u) => Uname {
                sysname: u.sysname().to_string_lossy().into_owned(),
                nodename: u.nodename().to_string_lossy().into_owned(),
                release: u.release().to_string_lossy().into_owned(),
                version: u.version().to_string_lossy().into_owned(),
                machine: u.machine().to_string_lossy().into_owned(),
            },
            Err(_) => Uname::default(),
        };
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map(|v| v as u64)
            .unwrap_or(0);
        let path_dirs = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .filter(|d| d.is_absolute())
                    .collect()
            })
            .unwrap_or_default();
        let endianness = Some(
            if cfg!(target_endian = "big") {
                "big"
            } else {
                "little"
            }
            .into(),
        );
        let aarch32_el0 = (uname.machine == "aarch64")
            .then(probe_aarch32_el0)
            .flatten();
        HostSource {
            root: PathBuf::from("/"),
            uname,
            page_size,
            endianness,
            path_dirs,
            aarch32_el0,
        }
    }

    /// A recorded host: `dir` holds the raw files at their absolute paths (`dir/proc/cpuinfo`)
    /// and `dir/source.json` with `uname`, `page_size`, optional `endianness` and `path`.
    pub fn recorded(dir: &Path) -> Result<HostSource, SourceError> {
        let file = dir.join(RECORDED_FILE);
        let shown = file.display().to_string();
        let text = fs::read_to_string(&file).map_err(|source| SourceError::Read {
            path: shown.clone(),
            source,
        })?;
        let r: Recorded = serde_json::from_str(&text).map_err(|source| SourceError::Parse {
            path: shown,
            source,
        })?;
        Ok(HostSource {
            root: dir.to_path_buf(),
            uname: r.uname,
            page_size: r.page_size,
            endianness: r.endianness,
            path_dirs: r.path,
            aarch32_el0: r.aarch32_el0,
        })
    }

    /// Whether this source is the running machine (root `/`).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The real path of a host path under the root.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Reads a host file as text; the error is a one-line reason naming the host path.
    pub fn read(&self, host_path: &str) -> Result<String, String> {
        fs::read_to_string(self.path(host_path)).map_err(|e| reason(host_path, &e))
    }

    /// Reads a host file as bytes; the error is a one-line reason naming the host path.
    pub fn read_bytes(&self, host_path: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        fs::File::open(self.path(host_path))
            .and_then(|mut f| f.read_to_end(&mut out))
            .map_err(|e| reason(host_path, &e))?;
        Ok(out)
    }

    /// Whether a host path exists (any file type).
    pub fn exists(&self, host_path: &str) -> bool {
        fs::symlink_metadata(self.path(host_path)).is_ok()
    }

    /// The entry names of a host directory, sorted.
    pub fn list(&self, host_path: &str) -> Result<Vec<String>, String> {
        let rd = fs::read_dir(self.path(host_path)).map_err(|e| reason(host_path, &e))?;
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// A one-line reason for a failed read of a host path.
fn reason(host_path: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("{host_path}: not found"),
        std::io::ErrorKind::PermissionDenied => format!("{host_path}: permission denied"),
        _ => format!("{host_path}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_reads_under_root() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(RECORDED_FILE),
            r#"{"uname":{"sysname":"Linux","nodename":"h","release":"5.10.0","machine":"aarch64"},"page_size":65536}"#,
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        fs::write(dir.path().join("proc/filesystems"), "nodev\tproc\n").unwrap();
        let s = HostSource::recorded(dir.path()).unwrap();
        assert_eq!(s.page_size, 65536);
        assert_eq!(s.read("/proc/filesystems").unwrap(), "nodev\tproc\n");
        assert_eq!(
            s.read("/proc/nothing").unwrap_err(),
            "/proc/nothing: not found"
        );
        assert!(!s.is_live());
    }

    #[test]
    fn live_has_uname_and_page_size() {
        let s = HostSource::live();
        assert!(s.is_live());
        assert!(!s.uname.release.is_empty());
        assert!(s.page_size >= 4096);
    }
}
