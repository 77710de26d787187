//! The binfmt_misc kernel interface: mount it, read its handlers (in the kernel's match order),
//! register and remove handlers.
//!
//! Files under the mount (`/proc/sys/fs/binfmt_misc`): `status` (`enabled`/`disabled`),
//! `register` (write `:name:type:offset:magic:mask:interpreter:flags`), and one file per
//! handler (`enabled`, `interpreter …`, `flags: …`, `offset …`, `magic …`, `mask …`; write `-1`
//! to remove it). The kernel tries handlers newest first, and the directory lists them in that
//! order (newest first), so [`BinfmtState::handlers`] keeps the directory order.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::EmulationError;
use super::arch::{self, ArchSpec};

/// Where binfmt_misc is mounted on every Linux system.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// `statfs` magic of binfmt_misc (`BINFMTFS_MAGIC`).
const BINFMTFS_MAGIC: i64 = 0x4249_4e4d;

/// One registered handler, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handler {
    /// The handler's name (its file name).
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The interpreter path, as registered.
    pub interpreter: String,
    /// Flags (`P`, `O`, `C`, `F`), as the kernel prints them.
    pub flags: String,
    /// Byte offset of the magic.
    pub offset: usize,
    /// Magic bytes (`None` for extension handlers).
    #[serde(serialize_with = "ser_hex")]
    pub magic: Option<Vec<u8>>,
    /// Mask bytes (`None`: compare every bit).
    #[serde(serialize_with = "ser_hex")]
    pub mask: Option<Vec<u8>>,
    /// File name extension without the dot (`E` handlers only).
    pub extension: Option<String>,
}

fn ser_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_some(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

impl Handler {
    /// Whether a flag letter is set.
    pub fn has_flag(&self, flag: char) -> bool {
        self.flags.contains(flag)
    }

    /// Whether the handler intercepts executables of `spec`'s architecture (when enabled).
    pub fn matches(&self, spec: &ArchSpec) -> bool {
        match &self.magic {
            Some(m) => spec.matched_by(self.offset, m, self.mask.as_deref()),
            None => false,
        }
    }

    /// The single table architecture this handler's magic intercepts, if any.
    pub fn arch(&self) -> Option<&'static ArchSpec> {
        arch::arch_of_handler(self.offset, self.magic.as_deref()?, self.mask.as_deref())
    }

    /// Whether a container can use it: enabled and `F` (the kernel opened the interpreter at
    /// registration; without `F` the path is looked up inside the container, where it is absent).
    pub fn usable_in_containers(&self) -> bool {
        self.enabled && self.has_flag('F')
    }

    /// Why a container cannot use it (`None` when it can).
    pub fn unusable_reason(&self) -> Option<String> {
        if !self.enabled {
            Some("disabled".to_string())
        } else if !self.has_flag('F') {
            Some(format!(
                "no F flag: {} would be looked up inside the container",
                self.interpreter
            ))
        } else {
            None
        }
    }

    /// Whether xrun registered it (its name has xrun's prefix).
    pub fn is_xrun(&self) -> bool {
        self.name.starts_with(arch::HANDLER_PREFIX)
    }
}

/// Parses one handler file's text (the fields through the host profile's parser,
/// `kernelcheck::binfmt::parse_handler`; the hex magic and mask decoded here).
pub fn parse_handler(name: &str, text: &str) -> Result<Handler, EmulationError> {
    let bad = |message: String| EmulationError::Parse {
        name: name.to_string(),
        message,
    };
    if !matches!(
        text.lines().next().map(str::trim),
        Some("enabled" | "disabled")
    ) {
        return Err(bad("no enabled/disabled line".to_string()));
    }
    let k = crate::kernelcheck::binfmt::parse_handler(name, text);
    let decode = |hex_text: &str, what: &str| -> Result<Option<Vec<u8>>, EmulationError> {
        if hex_text.is_empty() {
            return Ok(None);
        }
        hex::decode(hex_text)
            .map(Some)
            .map_err(|_| bad(format!("bad {what} {hex_text:?}")))
    };
    Ok(Handler {
        name: k.name.clone(),
        enabled: k.enabled,
        interpreter: k.interpreter.clone(),
        flags: k.flags.clone(),
        offset: k.offset as usize,
        magic: decode(&k.magic, "magic")?,
        mask: decode(&k.mask, "mask")?,
        extension: k.extension.clone(),
    })
}

/// binfmt_misc as found on this host.
#[derive(Debug, Clone, Serialize)]
pub struct BinfmtState {
    /// The directory read.
    pub dir: PathBuf,
    /// Whether binfmt_misc is mounted there.
    pub mounted: bool,
    /// Whether binfmt_misc is globally enabled.
    pub enabled: bool,
    /// Handlers in the kernel's match order (newest first).
    pub handlers: Vec<Handler>,
}

impl BinfmtState {
    /// Reads the state under `dir` (not mounting anything). A missing or unmounted directory
    /// gives `mounted: false` and no handlers.
    pub fn read(dir: &Path) -> Result<BinfmtState, EmulationError> {
        let mut state = BinfmtState {
            dir: dir.to_path_buf(),
            mounted: is_mounted(dir),
            enabled: false,
            handlers: Vec::new(),
        };
        if !state.mounted {
            return Ok(state);
        }
        let status = read_text(&dir.join("status"))?;
        state.enabled = status.trim() == "enabled";
        let entries = std::fs::read_dir(dir).map_err(|e| EmulationError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| EmulationError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "status" || name == "register" {
                continue;
            }
            let text = match std::fs::read_to_string(entry.path()) {
                Ok(t) => t,
                // Removed between readdir and open: not there any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(EmulationError::io(&entry.path(), e)),
            };
            state.handlers.push(parse_handler(&name, &text)?);
        }
        Ok(state)
    }

    /// Reads the state at [`BINFMT_DIR`], mounting binfmt_misc there first when it is not
    /// mounted and this process may mount (root); otherwise reports it unmounted.
    pub fn read_host() -> Result<BinfmtState, EmulationError> {
        let dir = Path::new(BINFMT_DIR);
        if !is_mounted(dir) {
            // Best effort: without privilege the state simply says "not mounted".
            let _ = mount(dir);
        }
        BinfmtState::read(dir)
    }

    /// The handler the kernel would use for executables of `spec`'s architecture: the first
    /// enabled handler (kernel order) whose magic matches. `None` when binfmt_misc is disabled.
    pub fn effective(&self, spec: &ArchSpec) -> Option<&Handler> {
        if !self.enabled {
            return None;
        }
        self.handlers.iter().find(|h| h.enabled && h.matches(spec))
    }

    /// Every handler (enabled or not) that matches `spec`'s architecture, in kernel order.
    pub fn matching(&self, spec: &ArchSpec) -> Vec<&Handler> {
        self.handlers.iter().filter(|h| h.matches(spec)).collect()
    }

    /// The handler with this name.
    pub fn get(&self, name: &str) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.name == name)
    }
}

/// Whether binfmt_misc is mounted at `dir` (by its file system magic).
pub fn is_mounted(dir: &Path) -> bool {
    match nix::sys::statfs::statfs(dir) {
        // `f_type`'s width differs between architectures: the cast is needed elsewhere.
        #[allow(clippy::unnecessary_cast)]
        Ok(fs) => fs.filesystem_type().0 as i64 == BINFMTFS_MAGIC,
        Err(_) => false,
    }
}

/// Mounts binfmt_misc at `dir` (needs `CAP_SYS_ADMIN`).
pub fn mount(dir: &Path) -> Result<(), EmulationError> {
    nix::mount::mount(
        Some("binfmt_misc"),
        dir,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| EmulationError::from_errno(dir, "mount binfmt_misc at", e))
}

/// Registers a handler by writing `line` to `dir/register` in one write.
pub fn register(dir: &Path, line: &str) -> Result<(), EmulationError> {
    let path = dir.join("register");
    write_once(&path, line.as_bytes(), "register a binfmt handler through")
}

/// Removes the handler `name` (writes `-1` to its file).
pub fn remove(dir: &Path, name: &str) -> Result<(), EmulationError> {
    if name.is_empty() || name.contains('/') || name == "status" || name == "register" {
        return Err(EmulationError::Parse {
            name: name.to_string(),
            message: "not a handler name".to_string(),
        });
    }
    write_once(&dir.join(name), b"-1", "remove the binfmt handler")
}

/// Enables (`true`) or disables (`false`) the handler `name`.
pub fn set_enabled(dir: &Path, name: &str, enabled: bool) -> Result<(), EmulationError> {
    let v: &[u8] = if enabled { b"1" } else { b"0" };
    write_once(&dir.join(name), v, "change the binfmt handler")
}

fn write_once(path: &Path, bytes: &[u8], action: &str) -> Result<(), EmulationError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| EmulationError::denied_or_io(path, action, e))?;
    let n = f
        .write(bytes)
        .map_err(|e| EmulationError::denied_or_io(path, action, e))?;
    if n != bytes.len() {
        return Err(EmulationError::io(
            path,
            std::io::Error::other(format!("short write ({n} of {} bytes)", bytes.len())),
        ));
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, EmulationError> {
    std::fs::read_to_string(path).map_err(|e| EmulationError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_handler() {
        let text = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let h = parse_handler("qemu-aarch64", text).unwrap();
        assert!(h.enabled);
        assert_eq!(h.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert_eq!(h.flags, "POF");
        assert_eq!(h.arch().unwrap().arch, "arm64");
        assert!(h.usable_in_containers());
        assert!(!h.is_xrun());
    }

    #[test]
    fn parses_flagless_and_disabled() {
        let text = "disabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n";
        let h = parse_handler("python3.11", text).unwrap();
        assert!(!h.enabled);
        assert_eq!(h.flags, "");
        assert!(h.arch().is_none());
        assert!(!h.usable_in_containers());
        assert_eq!(h.unusable_reason().unwrap(), "disabled");
    }

    #[test]
    fn parses_extension_handler() {
        let text = "enabled\ninterpreter /usr/bin/wine\nflags: \nextension .exe\n";
        let h = parse_handler("wine", text).unwrap();
        assert_eq!(h.extension.as_deref(), Some("exe"));
        assert!(h.magic.is_none());
        assert!(h.arch().is_none());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_handler("x", "hello\n").is_err());
        assert!(parse_handler("x", "enabled\nmagic zz\n").is_err());
    }

    #[test]
    fn no_f_is_unusable() {
        let text = "enabled\ninterpreter /usr/bin/qemu-arm-static\nflags: P\noffset 0\nmagic 7f454c4601010100000000000000000002002800\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let h = parse_handler("arm", text).unwrap();
        assert_eq!(h.arch().unwrap().arch, "arm");
        assert!(!h.usable_in_containers());
        assert!(h.unusable_reason().unwrap().contains("no F flag"));
    }
}
