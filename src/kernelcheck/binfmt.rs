//! binfmt_misc: is it mounted and enabled, which handlers are registered, and which ELF
//! machine (in OCI arch terms) each handler's magic/mask selects.
//!
//! Handler files are parsed here (`enabled`, `interpreter …`, `flags: …`, `offset …`,
//! `magic …`, `mask …` or `extension …`); nothing is written.

use super::mountinfo::Mount;
use super::profile::{BinfmtHandler, ElfTarget, UnknownFact};
use super::source::HostSource;

/// Where binfmt_misc lives when mountinfo says nothing.
pub const DEFAULT_PATH: &str = "/proc/sys/fs/binfmt_misc";

/// ELF `e_machine` values used below.
mod em {
    pub const I386: u16 = 3;
    pub const MIPS: u16 = 8;
    pub const PPC64: u16 = 21;
    pub const S390: u16 = 22;
    pub const ARM: u16 = 40;
    pub const X86_64: u16 = 62;
    pub const AARCH64: u16 = 183;
    pub const RISCV: u16 = 243;
    pub const LOONGARCH: u16 = 258;
}

/// The OCI architecture for an ELF target (`e_machine`, class 32/64, big-endian?), for the
/// architectures OCI images use (Go's `GOARCH` names); `None` for the others (x32, armeb,
/// aarch64_be, mips n32, …).
pub fn oci_arch(machine: u16, class: u8, big_endian: bool) -> Option<&'static str> {
    Some(match (machine, class, big_endian) {
        (em::I386, 32, false) => "386",
        (em::X86_64, 64, false) => "amd64",
        (em::ARM, 32, false) => "arm",
        (em::AARCH64, 64, false) => "arm64",
        (em::RISCV, 64, false) => "riscv64",
        (em::PPC64, 64, false) => "ppc64le",
        (em::PPC64, 64, true) => "ppc64",
        (em::S390, 64, true) => "s390x",
        (em::MIPS, 32, true) => "mips",
        (em::MIPS, 32, false) => "mipsle",
        (em::MIPS, 64, true) => "mips64",
        (em::MIPS, 64, false) => "mips64le",
        (em::LOONGARCH, 64, false) => "loong64",
        _ => return None,
    })
}

/// The ELF target a magic/mask selects: the bytes 0–3 must require `\x7fELF`, and `EI_CLASS`
/// (byte 4), `EI_DATA` (byte 5) and `e_machine` (bytes 18–19, in `EI_DATA` order) must be fully
/// masked in (see below for `e_machine`'s high byte). Also returns whether the MIPS n32 ABI flag is required (`e_flags` bit 0x20).
pub fn elf_target(offset: u32, magic: &[u8], mask: &[u8]) -> Option<(ElfTarget, bool)> {
    const ELF: [u8; 4] = [0x7f, b'E', b'L', b'F'];
    if offset != 0 || magic.len() < 20 {
        return None;
    }
    let m = |i: usize| -> u8 {
        if mask.is_empty() {
            0xff
        } else {
            mask.get(i).copied().unwrap_or(0)
        }
    };
    let fixed = |i: usize| m(i) == 0xff;
    if !(0..4).all(|i| fixed(i) && magic[i] == ELF[i]) || !fixed(4) || !fixed(5) {
        return None;
    }
    let class = match magic[4] {
        1 => 32,
        2 => 64,
        _ => return None,
    };
    let big = match magic[5] {
        1 => false,
        2 => true,
        _ => return None,
    };
    // e_machine: its low-order byte must be fully masked in; its high byte either too, or
    // masked out entirely (qemu's ppc64le handler does that: every EM value < 256 matches).
    let (lo, hi) = if big { (19, 18) } else { (18, 19) };
    if !fixed(lo) || !(fixed(hi) || m(hi) == 0) {
        return None;
    }
    let machine = u16::from_le_bytes([magic[lo], magic[hi] & m(hi)]);
    // e_flags of a 32-bit ELF: bytes 36..40; its lowest byte holds EF_MIPS_ABI2 (0x20).
    let low_flags = if big { 39 } else { 36 };
    let n32 = machine == em::MIPS
        && class == 32
        && magic.len() > low_flags
        && m(low_flags) & 0x20 != 0
        && magic[low_flags] & 0x20 != 0;
    Some((
        ElfTarget {
            machine,
            class,
            endianness: if big { "big" } else { "little" }.into(),
        },
        n32,
    ))
}

/// Parses one handler file's text (as the kernel prints it).
pub fn parse_handler(name: &str, text: &str) -> BinfmtHandler {
    let mut h = BinfmtHandler {
        name: name.to_string(),
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
        arch: None,
        usable_in_containers: false,
        offset: 0,
        magic: String::new(),
        mask: String::new(),
        extension: None,
        elf: None,
    };
    for line in text.lines() {
        let line = line.trim_end();
        if line == "enabled" {
            h.enabled = true;
        } else if line == "disabled" {
            h.enabled = false;
        } else if let Some(v) = line.strip_prefix("interpreter ") {
            h.interpreter = v.to_string();
        } else if let Some(v) = line.strip_prefix("flags:") {
            h.flags = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("offset ") {
            h.offset = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("magic ") {
            h.magic = v.trim().to_ascii_lowercase();
        } else if let Some(v) = line.strip_prefix("mask ") {
            h.mask = v.trim().to_ascii_lowercase();
        } else if let Some(v) = line.strip_prefix("extension ") {
            h.extension = Some(v.trim().trim_start_matches('.').to_string());
        }
    }
    if let (Ok(magic), Ok(mask)) = (hex::decode(&h.magic), hex::decode(&h.mask))
        && let Some((target, n32)) = elf_target(h.offset, &magic, &mask)
    {
        if !n32 {
            h.arch = oci_arch(target.machine, target.class, target.endianness == "big")
                .map(str::to_string);
        }
        h.elf = Some(target);
    }
    h
}

/// binfmt_misc as this host has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binfmt {
    /// Mount point, when mounted.
    pub path: Option<String>,
    /// `status` says `enabled`.
    pub enabled: bool,
    /// Handlers, sorted by name.
    pub handlers: Vec<BinfmtHandler>,
}

/// Reads the handlers in a binfmt_misc directory (every entry but `register` and `status`).
pub fn read_handlers(src: &HostSource, dir: &str) -> Result<Vec<BinfmtHandler>, String> {
    let mut out = Vec::new();
    for name in src.list(dir)? {
        if name == "register" || name == "status" {
            continue;
        }
        match src.read(&format!("{dir}/{name}")) {
            Ok(text) => out.push(parse_handler(&name, &text)),
            // A handler removed between listing and reading is simply gone.
            Err(_) => continue,
        }
    }
    Ok(out)
}

/// Finds binfmt_misc (mountinfo, else the default path when its `status` is readable) and
/// reads it.
pub fn gather(
    src: &HostSource,
    mounts: Option<&[Mount]>,
    unknowns: &mut Vec<UnknownFact>,
) -> Binfmt {
    let path = match mounts {
        Some(m) => m
            .iter()
            .find(|m| m.fs_type == "binfmt_misc")
            .map(|m| m.mount_point.clone()),
        None => src
            .exists(&format!("{DEFAULT_PATH}/status"))
            .then(|| DEFAULT_PATH.to_string()),
    };
    let Some(path) = path else {
        return Binfmt::default();
    };
    let mut b = Binfmt {
        path: Some(path.clone()),
        ..Default::default()
    };
    match src.read(&format!("{path}/status")) {
        Ok(t) => b.enabled = t.trim() == "enabled",
        Err(reason) => unknowns.push(UnknownFact {
            fact: "emulation.binfmt_enabled".into(),
            reason,
        }),
    }
    match read_handlers(src, &path) {
        Ok(mut handlers) => {
            for h in &mut handlers {
                h.usable_in_containers = b.enabled && h.enabled && h.flags.contains('F');
            }
            b.handlers = handlers;
        }
        Err(reason) => unknowns.push(UnknownFact {
            fact: "emulation.handlers".into(),
            reason,
        }),
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELF_MASK: &str = "ffffffffffffff00fffffffffffffffffeffffff";

    fn arch_of(magic: &str, mask: &str) -> Option<String> {
        let text = format!(
            "enabled\ninterpreter /usr/bin/q\nflags: PF\noffset 0\nmagic {magic}\nmask {mask}\n"
        );
        parse_handler("x", &text).arch
    }

    #[test]
    fn qemu_magics() {
        assert_eq!(
            arch_of("7f454c460201010000000000000000000200b700", ELF_MASK).as_deref(),
            Some("arm64")
        );
        assert_eq!(
            arch_of("7f454c4601010100000000000000000002002800", ELF_MASK).as_deref(),
            Some("arm")
        );
        assert_eq!(
            arch_of("7f454c460201010000000000000000000200f300", ELF_MASK).as_deref(),
            Some("riscv64")
        );
        assert_eq!(
            arch_of(
                "7f454c4602010100000000000000000002001500",
                "fffffffffffffffcfffffffffffffffffeffff00"
            )
            .as_deref(),
            Some("ppc64le")
        );
        assert_eq!(
            arch_of(
                "7f454c4602020100000000000000000000020016",
                "fffffffffffffffcfffffffffffffffffffeffff"
            )
            .as_deref(),
            Some("s390x")
        );
        // aarch64_be: big-endian class 64, e_machine 0x00b7 → no OCI arch, but an ELF target.
        let be = parse_handler(
            "qemu-aarch64_be",
            "enabled\ninterpreter /q\nflags: F\noffset 0\nmagic 7f454c46020201000000000000000000000200b7\nmask ffffffffffffff00fffffffffffffffffffeffff\n",
        );
        assert_eq!(be.arch, None);
        assert_eq!(be.elf.as_ref().unwrap().machine, 183);
        assert_eq!(be.elf.as_ref().unwrap().endianness, "big");
    }

    #[test]
    fn mips_o32_vs_n32() {
        let mask =
            "ffffffffffffff0000fffffffffffffffffeffffffffffff00000000000000000000000000000020";
        let o32 =
            "7f454c46010201000000000000000000000200080000000100000000000000000000000000000000";
        let n32 =
            "7f454c46010201000000000000000000000200080000000100000000000000000000000000000020";
        assert_eq!(arch_of(o32, mask).as_deref(), Some("mips"));
        assert_eq!(arch_of(n32, mask), None);
    }

    #[test]
    fn non_elf_and_extension_handlers() {
        let py = parse_handler(
            "python3.11",
            "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n",
        );
        assert_eq!(py.arch, None);
        assert_eq!(py.elf, None);
        assert_eq!(py.flags, "");
        let jar = parse_handler(
            "jar",
            "disabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n",
        );
        assert!(!jar.enabled);
        assert_eq!(jar.extension.as_deref(), Some("jar"));
        // An ELF magic whose machine bytes are masked out selects no single machine.
        assert_eq!(
            arch_of(
                "7f454c460201010000000000000000000200b700",
                "ffffffffffffff00fffffffffffffffffeff0000"
            ),
            None
        );
    }
}
