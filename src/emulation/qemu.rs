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

/// Whether the ELF file at `path` is statically linked (has no `PT_INTERP` program header).
/// Reads only the ELF header and the program header table.
pub fn is_static(path: &Path) -> Result<bool, EmulationError> {
    use std::io::{Read, Seek, SeekFrom};
    const PT_INTERP: u32 = 3;
    let not_elf = |why: &str| {
        EmulationError::io(
            path,
            std::io::Error::other(format!("not an ELF file: {why}")),
        )
    };
    let mut f = std::fs::File::open(path).map_err(|e| EmulationError::io(path, e))?;
    let mut h = [0u8; 64];
    let n = f.read(&mut h).map_err(|e| EmulationError::io(path, e))?;
    if n < 52 || &h[..4] != b"\x7fELF" {
        return Err(not_elf("bad magic"));
    }
    let le = match h[5] {
        1 => true,
        2 => false,
        _ => return Err(not_elf("bad data encoding")),
    };
    let u16_at = |o: usize| {
        let b = [h[o], h[o + 1]];
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_of = |b: [u8; 4]| {
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let (phoff, phentsize, phnum) = match h[4] {
        1 => (
            u32_of([h[28], h[29], h[30], h[31]]) as u64,
            u16_at(42),
            u16_at(44),
        ),
        2 if n >= 64 => {
            let b: [u8; 8] = h[32..40].try_into().expect("8 bytes");
            let off = if le {
                u64::from_le_bytes(b)
            } else {
                u64::from_be_bytes(b)
            };
            (off, u16_at(54), u16_at(56))
        }
        _ => return Err(not_elf("bad class")),
    };
    if phentsize < 8 {
        return Err(not_elf("bad program header size"));
    }
    let mut table = vec![0u8; phentsize as usize * phnum as usize];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut table))
        .map_err(|e| EmulationError::io(path, e))?;
    Ok(!table
        .chunks_exact(phentsize as usize)
        .any(|ph| u32_of([ph[0], ph[1], ph[2], ph[3]]) == PT_INTERP))
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
    fn static_qemu_is_static() {
        let p = Path::new("/usr/bin/qemu-aarch64-static");
        if p.exists() {
            assert!(is_static(p).unwrap());
        }
        assert!(is_static(Path::new("/etc/hostname")).is_err());
    }

    #[test]
    fn dynamic_binary_is_not_static() {
        // /bin/sh on Debian is dynamically linked.
        if Path::new("/bin/sh").exists() {
            assert!(!is_static(Path::new("/bin/sh")).unwrap());
        }
    }
}
