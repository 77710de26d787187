//! qemu-user discovery: where the statically linked qemu-user interpreter for an architecture is.
//!
//! Only static interpreters are used: with the `F` flag the kernel opens the interpreter at
//! registration, but a dynamically linked one would still need its loader and libraries, looked up
//! inside the container at every exec.

use std::path::{Path, PathBuf};

use super::EmulationError;
use super::arch::ArchSpec;

/// Where xrun looks for qemu-user interpreters, in order (`{}` is qemu's target name):
/// `qemu-user-static`'s `/usr/bin/qemu-<target>-static`, then Debian's binfmt wrapper name.
pub const CANDIDATES: &[&str] = &[
    "/usr/bin/qemu-{}-static",
    "/usr/libexec/qemu-binfmt/{}-binfmt-P",
];

/// The candidate paths for `spec`, in search order.
pub fn candidates(spec: &ArchSpec) -> Vec<PathBuf> {
    CANDIDATES
        .iter()
        .map(|t| PathBuf::from(t.replace("{}", spec.qemu)))
        .collect()
}

/// The first candidate that exists, is an executable regular file and is statically linked.
pub fn find(spec: &ArchSpec) -> Result<PathBuf, EmulationError> {
    let tried = candidates(spec);
    let mut last_err = None;
    for path in &tried {
        if !path.exists() {
            continue;
        }
        match check(path) {
            Ok(()) => return Ok(path.clone()),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| EmulationError::NoQemu {
        arch: spec.arch.to_string(),
        tried,
    }))
}

/// Whether `path` can serve as a binfmt interpreter in containers: a regular executable file,
/// statically linked (no `PT_INTERP`).
pub fn check(path: &Path) -> Result<(), EmulationError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| EmulationError::io(path, e))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(EmulationError::io(
            path,
            std::io::Error::other("not an executable file"),
        ));
    }
    if !is_static(path)? {
        return Err(EmulationError::QemuNotStatic {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Whether the ELF file at `path` is statically linked (has no program interpreter).
pub fn is_static(path: &Path) -> Result<bool, EmulationError> {
    let bytes = std::fs::read(path).map_err(|e| EmulationError::io(path, e))?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| {
        EmulationError::io(path, std::io::Error::other(format!("not an ELF file: {e}")))
    })?;
    Ok(elf.interpreter.is_none())
}

/// The first line of `qemu-… --version` (`qemu-aarch64 version 10.0.2 (…)`), if it runs.
pub fn version(path: &Path) -> Option<String> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulation::arch::by_arch;

    #[test]
    fn candidate_names() {
        let c = candidates(by_arch("arm64").unwrap());
        assert_eq!(c[0], PathBuf::from("/usr/bin/qemu-aarch64-static"));
        assert_eq!(
            c[1],
            PathBuf::from("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
    }

    #[test]
    fn dynamic_binary_is_not_static() {
        // /bin/sh on Debian is dynamically linked.
        if Path::new("/bin/sh").exists() {
            assert!(!is_static(Path::new("/bin/sh")).unwrap());
        }
    }
}
