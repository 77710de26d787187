//! The handler table: for each architecture xrun can emulate, its qemu-user target, the ELF
//! header bytes (magic and mask) a binfmt_misc handler matches, and what qemu-user's default CPU
//! model runs.
//!
//! The magic/mask values are the facts qemu's `qemu-binfmt-conf.sh` registers (the first 20 bytes
//! of an ELF header: `e_ident`, `e_type`, `e_machine`); the mask ignores the OS ABI byte and lets
//! `e_type` be `ET_EXEC` or `ET_DYN` (static-pie), so one handler covers every executable.

use crate::platform::Platform;
use crate::platform::normalize::normalize_arch;

/// Length of the magic/mask every table entry uses (`e_ident` + `e_type` + `e_machine`).
pub const MAGIC_LEN: usize = 20;

/// Prefix of the binfmt_misc handler names xrun registers (`xrun-qemu-aarch64`); uninstall only
/// ever removes handlers with this prefix.
pub const HANDLER_PREFIX: &str = "xrun-qemu-";

/// One emulatable architecture.
#[derive(Debug, PartialEq, Eq)]
pub struct ArchSpec {
    /// The OCI architecture (`arm64`, `arm`, `riscv64`, …).
    pub arch: &'static str,
    /// qemu's target name (`aarch64`, `arm`, `riscv64`, `i386`, `x86_64`, `mips64el`, …).
    pub qemu: &'static str,
    /// `EI_CLASS`: 1 = 32-bit, 2 = 64-bit.
    pub class: u8,
    /// `EI_DATA`: 1 = little endian, 2 = big endian.
    pub data: u8,
    /// `e_machine`.
    pub machine: u16,
    /// The bytes a handler for this architecture matches at offset 0.
    pub magic: [u8; MAGIC_LEN],
    /// Which bits of [`ArchSpec::magic`] are compared.
    pub mask: [u8; MAGIC_LEN],
    /// What qemu-user's default CPU model is and which image variants it runs.
    pub cpu: &'static str,
}

const fn elf_magic(class: u8, data: u8, machine: u16) -> [u8; MAGIC_LEN] {
    let m = if data == 1 {
        machine.to_le_bytes()
    } else {
        machine.to_be_bytes()
    };
    let t: [u8; 2] = if data == 1 { [2, 0] } else { [0, 2] };
    [
        0x7f, b'E', b'L', b'F', class, data, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, t[0], t[1], m[0], m[1],
    ]
}

/// Mask for most targets: every byte but the OS ABI, `e_type` low bit ignored (EXEC/DYN).
const MASK_STD: [u8; MAGIC_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xfe, 0xff, 0xff, 0xff,
];
/// x86 mask: class and data bytes partly ignored as well.
const MASK_X86: [u8; MAGIC_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xfe, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xfe, 0xff, 0xff, 0xff,
];
/// ppc64le mask: OS ABI low bits and the high `e_machine` byte ignored.
const MASK_PPC64LE: [u8; MAGIC_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xfe, 0xff, 0xff, 0x00,
];
/// s390x mask (big endian: the `e_type` low bit is in byte 17).
const MASK_S390X: [u8; MAGIC_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xfe, 0xff, 0xff,
];
/// mips64el mask: OS ABI and ABI version ignored.
const MASK_MIPS64EL: [u8; MAGIC_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xfe, 0xff, 0xff, 0xff,
];

/// Every architecture xrun knows how to emulate, in display order.
pub static ARCHES: &[ArchSpec] = &[
    ArchSpec {
        arch: "arm64",
        qemu: "aarch64",
        class: 2,
        data: 1,
        machine: 0xb7,
        magic: elf_magic(2, 1, 0xb7),
        mask: MASK_STD,
        cpu: "qemu-aarch64 default CPU (max: ARMv8-A and later extensions; runs arm64/v8 and v9 code)",
    },
    ArchSpec {
        arch: "arm",
        qemu: "arm",
        class: 1,
        data: 1,
        machine: 0x28,
        magic: elf_magic(1, 1, 0x28),
        mask: MASK_STD,
        cpu: "qemu-arm default CPU (any: ARMv5 to ARMv8 AArch32; runs arm/v5, arm/v6 and arm/v7 code)",
    },
    ArchSpec {
        arch: "riscv64",
        qemu: "riscv64",
        class: 2,
        data: 1,
        machine: 0xf3,
        magic: elf_magic(2, 1, 0xf3),
        mask: MASK_STD,
        cpu: "qemu-riscv64 default CPU (max: RV64GC and ratified extensions)",
    },
    ArchSpec {
        arch: "ppc64le",
        qemu: "ppc64le",
        class: 2,
        data: 1,
        machine: 0x15,
        magic: elf_magic(2, 1, 0x15),
        mask: MASK_PPC64LE,
        cpu: "qemu-ppc64le default CPU (a recent POWER model; runs POWER8 and later code)",
    },
    ArchSpec {
        arch: "s390x",
        qemu: "s390x",
        class: 2,
        data: 2,
        machine: 0x16,
        magic: elf_magic(2, 2, 0x16),
        mask: MASK_S390X,
        cpu: "qemu-s390x default CPU (the qemu model: z/Architecture with the facilities qemu implements)",
    },
    ArchSpec {
        arch: "386",
        qemu: "i386",
        class: 1,
        data: 1,
        machine: 0x03,
        magic: elf_magic(1, 1, 0x03),
        mask: MASK_X86,
        cpu: "qemu-i386 default CPU (i686 class and later extensions)",
    },
    ArchSpec {
        arch: "amd64",
        qemu: "x86_64",
        class: 2,
        data: 1,
        machine: 0x3e,
        magic: elf_magic(2, 1, 0x3e),
        mask: MASK_X86,
        cpu: "qemu-x86_64 default CPU (max: every extension qemu implements)",
    },
    ArchSpec {
        arch: "mips64le",
        qemu: "mips64el",
        class: 2,
        data: 1,
        machine: 0x08,
        magic: elf_magic(2, 1, 0x08),
        mask: MASK_MIPS64EL,
        cpu: "qemu-mips64el default CPU (a MIPS64r2 model; R6 binaries get an R6 model)",
    },
];

/// The table entry for an OCI architecture (any spelling the platform stage normalizes:
/// `aarch64`, `arm64`, `armhf`, `x86_64`, `i686`, `ppc64el`, `mips64el`, …).
pub fn by_arch(arch: &str) -> Option<&'static ArchSpec> {
    let (arch, _) = normalize_arch(arch, None);
    ARCHES.iter().find(|s| s.arch == arch || s.qemu == arch)
}

/// The table entry for a platform's architecture (the variant does not matter: qemu's default
/// CPU runs every variant of its architecture).
pub fn for_platform(platform: &Platform) -> Option<&'static ArchSpec> {
    by_arch(&platform.normalize().architecture)
}

/// Parses what a user names on the command line: an architecture (`arm64`, `aarch64`), a
/// platform (`linux/arm/v7`, `arm/v6`), or a qemu target (`x86_64`, `mips64el`).
pub fn parse_user_arch(input: &str) -> Option<&'static ArchSpec> {
    let input = input.trim();
    if let Some(s) = by_arch(input) {
        return Some(s);
    }
    let platform: Platform = input.parse().ok()?;
    for_platform(&platform)
}

/// Names of every architecture in the table, for messages (`arm64, arm, riscv64, …`).
pub fn known_names() -> String {
    ARCHES.iter().map(|s| s.arch).collect::<Vec<_>>().join(", ")
}

impl ArchSpec {
    /// The handler name xrun registers for this architecture (`xrun-qemu-aarch64`).
    pub fn handler_name(&self) -> String {
        format!("{HANDLER_PREFIX}{}", self.qemu)
    }

    /// The first 20 bytes of an executable of this architecture, for `ET_EXEC` and `ET_DYN`.
    pub fn sample_headers(&self) -> [[u8; MAGIC_LEN]; 2] {
        let exec = elf_magic(self.class, self.data, self.machine);
        let mut dyn_ = exec;
        if self.data == 1 {
            dyn_[16] = 3;
        } else {
            dyn_[17] = 3;
        }
        [exec, dyn_]
    }

    /// Whether a binfmt_misc handler with this magic/mask at `offset` intercepts executables of
    /// this architecture (as the kernel compares: `(header ^ magic) & mask == 0`, no mask = all
    /// ones).
    pub fn matched_by(&self, offset: usize, magic: &[u8], mask: Option<&[u8]>) -> bool {
        if magic.is_empty() || offset + magic.len() > MAGIC_LEN {
            return false;
        }
        self.sample_headers().iter().any(|header| {
            magic.iter().enumerate().all(|(i, m)| {
                let k = mask.and_then(|mk| mk.get(i)).copied().unwrap_or(0xff);
                (header[offset + i] ^ m) & k == 0
            })
        })
    }

    /// Whether this architecture's binaries run natively on a host of `host_arch` (OCI spelling):
    /// the same architecture, or 386 on amd64.
    pub fn is_native_on(&self, host_arch: &str) -> bool {
        let (host, _) = normalize_arch(host_arch, None);
        self.arch == host || (self.arch == "386" && host == "amd64")
    }

    /// The line to write to `register`: `:NAME:M:0:MAGIC:MASK:INTERPRETER:FLAGS` with every
    /// magic and mask byte escaped as `\xHH` (so no byte can be taken for the `:` separator).
    pub fn register_line(&self, name: &str, interpreter: &str, flags: &str) -> String {
        let esc = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
        format!(
            ":{name}:M:0:{}:{}:{interpreter}:{flags}",
            esc(&self.magic),
            esc(&self.mask)
        )
    }
}

/// The table entry a handler's magic/mask intercepts, when exactly one does (`None` for
/// non-ELF handlers and for masks so loose they catch several architectures).
pub fn arch_of_handler(
    offset: usize,
    magic: &[u8],
    mask: Option<&[u8]>,
) -> Option<&'static ArchSpec> {
    let mut hits = ARCHES.iter().filter(|s| s.matched_by(offset, magic, mask));
    let first = hits.next()?;
    hits.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn table_matches_debian_registrations() {
        // Values as Debian's qemu-user-static registers them (read from /proc on a bookworm host).
        let cases = [
            (
                "arm64",
                "7f454c460201010000000000000000000200b700",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "arm",
                "7f454c4601010100000000000000000002002800",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "riscv64",
                "7f454c460201010000000000000000000200f300",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "ppc64le",
                "7f454c4602010100000000000000000002001500",
                "fffffffffffffffcfffffffffffffffffeffff00",
            ),
            (
                "s390x",
                "7f454c4602020100000000000000000000020016",
                "fffffffffffffffcfffffffffffffffffffeffff",
            ),
            (
                "mips64le",
                "7f454c4602010100000000000000000002000800",
                "ffffffffffffff0000fffffffffffffffeffffff",
            ),
        ];
        for (arch, magic, mask) in cases {
            let spec = by_arch(arch).unwrap();
            assert_eq!(spec.magic.to_vec(), hex(magic), "{arch} magic");
            assert_eq!(spec.mask.to_vec(), hex(mask), "{arch} mask");
            let found = arch_of_handler(0, &hex(magic), Some(&hex(mask))).unwrap();
            assert_eq!(found.arch, arch);
        }
    }

    #[test]
    fn every_entry_matches_only_itself() {
        for spec in ARCHES {
            let got = arch_of_handler(0, &spec.magic, Some(&spec.mask)).map(|s| s.arch);
            assert_eq!(got, Some(spec.arch));
        }
    }

    #[test]
    fn exec_and_dyn_both_match() {
        let spec = by_arch("arm64").unwrap();
        for h in spec.sample_headers() {
            assert!(spec.matched_by(0, &h, Some(&spec.mask)));
        }
        // Without a mask the exact EXEC header only matches EXEC (still arm64).
        assert!(spec.matched_by(0, &spec.magic, None));
    }

    #[test]
    fn non_elf_and_loose_handlers_have_no_arch() {
        assert!(arch_of_handler(0, &hex("a70d0d0a"), None).is_none());
        assert!(arch_of_handler(0, &hex("4243"), None).is_none());
        // Only "\x7fELF": catches every architecture, so no single one.
        assert!(arch_of_handler(0, &hex("7f454c46"), None).is_none());
        // Offset past the header.
        assert!(arch_of_handler(30, &hex("00"), None).is_none());
    }

    #[test]
    fn spellings() {
        assert_eq!(parse_user_arch("aarch64").unwrap().arch, "arm64");
        assert_eq!(parse_user_arch("linux/arm64/v8").unwrap().arch, "arm64");
        assert_eq!(parse_user_arch("arm/v6").unwrap().arch, "arm");
        assert_eq!(parse_user_arch("armhf").unwrap().arch, "arm");
        assert_eq!(parse_user_arch("x86_64").unwrap().arch, "amd64");
        assert_eq!(parse_user_arch("i686").unwrap().arch, "386");
        assert_eq!(parse_user_arch("ppc64el").unwrap().arch, "ppc64le");
        assert_eq!(parse_user_arch("mips64el").unwrap().arch, "mips64le");
        assert!(parse_user_arch("sparc64").is_none());
        assert_eq!(
            by_arch("arm64").unwrap().handler_name(),
            "xrun-qemu-aarch64"
        );
    }

    #[test]
    fn register_line_escapes_everything() {
        let spec = by_arch("riscv64").unwrap();
        let line = spec.register_line("xrun-qemu-riscv64", "/usr/bin/qemu-riscv64-static", "PF");
        assert!(line.starts_with(":xrun-qemu-riscv64:M:0:\\x7f\\x45\\x4c\\x46\\x02"));
        assert!(line.ends_with(":/usr/bin/qemu-riscv64-static:PF"));
        assert_eq!(line.matches(':').count(), 7);
    }

    #[test]
    fn native() {
        assert!(by_arch("386").unwrap().is_native_on("x86_64"));
        assert!(by_arch("amd64").unwrap().is_native_on("amd64"));
        assert!(!by_arch("arm64").unwrap().is_native_on("amd64"));
    }
}
