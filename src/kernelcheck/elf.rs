//! ELF header facts, read with goblin from the first bytes of a file: machine, class, byte
//! order, type, the `PT_INTERP` loader, the largest `PT_LOAD` alignment, the
//! `NT_GNU_ABI_TAG` minimum kernel and the x86-64 ISA level `GNU_PROPERTY_X86_ISA_1_NEEDED`.
//!
//! Nothing is executed and whole files are never read: the magic is checked in the first
//! bytes, then only the program headers, the `PT_INTERP` string and the note segments are read
//! (bounded sizes).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};
use serde::{Deserialize, Serialize};

/// Bytes read up front: the ELF header, and usually the program headers and notes too.
const HEAD: usize = 4096;
/// Upper bound on one note segment or program header table read.
const MAX_EXTRA: u64 = 64 * 1024;
/// `NT_GNU_ABI_TAG`.
const NT_GNU_ABI_TAG: u32 = 1;
/// `NT_GNU_PROPERTY_TYPE_0`.
const NT_GNU_PROPERTY_TYPE_0: u32 = 5;
/// `GNU_PROPERTY_X86_ISA_1_NEEDED` (binutils ≥ 2.35 numbering: `GNU_PROPERTY_X86_UINT32_OR_LO + 2`).
const GNU_PROPERTY_X86_ISA_1_NEEDED: u32 = 0xc000_8002;

/// What the first bytes of a file are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// An ELF file.
    Elf(Box<ElfInfo>),
    /// A `#!` script: interpreter and its optional single argument (as the kernel splits it).
    Script {
        /// The interpreter path.
        interpreter: String,
        /// The rest of the line, if any.
        arg: Option<String>,
    },
    /// Anything else (the kernel would refuse to execute it: `ENOEXEC`).
    Other,
}

/// Facts about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfInfo {
    /// `e_machine`.
    pub machine: u16,
    /// 32 or 64.
    pub bits: u8,
    /// `little` or `big`.
    pub endian: String,
    /// `e_type` (`ET_EXEC` = 2, `ET_DYN` = 3, `ET_REL` = 1, …).
    pub e_type: u16,
    /// The OCI architecture this machine/class/byte order runs on, if it is one xrun knows.
    pub arch: Option<String>,
    /// The `PT_INTERP` program interpreter, if any.
    pub interpreter: Option<String>,
    /// The largest `p_align` of the `PT_LOAD` segments (0 when none).
    pub max_load_align: u64,
    /// Whether there is any `PT_LOAD` segment.
    pub has_load: bool,
    /// `NT_GNU_ABI_TAG` for Linux: the minimum kernel `[major, minor, patch]`.
    pub abi_tag: Option<[u32; 3]>,
    /// The x86-64 ISA level needed (1 = baseline … 4 = v4) from `.note.gnu.property`.
    pub isa_level: Option<u8>,
}

impl ElfInfo {
    /// Whether the file is something the kernel loads (an executable or shared object).
    pub fn is_loadable(&self) -> bool {
        matches!(self.e_type, header::ET_EXEC | header::ET_DYN) && self.has_load
    }
}

/// The OCI architecture name for an ELF machine, class and byte order.
pub fn oci_arch(machine: u16, bits: u8, little: bool) -> Option<&'static str> {
    Some(match (machine, bits, little) {
        (header::EM_X86_64, 64, true) => "amd64",
        (header::EM_386, 32, true) => "386",
        (header::EM_AARCH64, 64, true) => "arm64",
        (header::EM_ARM, 32, true) => "arm",
        (header::EM_RISCV, 64, true) => "riscv64",
        (header::EM_PPC64, 64, true) => "ppc64le",
        (header::EM_PPC64, 64, false) => "ppc64",
        (header::EM_S390, 64, false) => "s390x",
        (header::EM_MIPS, 64, true) => "mips64le",
        (header::EM_MIPS, 64, false) => "mips64",
        (header::EM_MIPS, 32, true) => "mipsle",
        (header::EM_MIPS, 32, false) => "mips",
        (header::EM_LOONGARCH, 64, true) => "loong64",
        _ => return None,
    })
}

/// Reads the head of the file at `path` (a host path) and classifies it. `Ok(None)` when the
/// file is too short to be anything; I/O errors are returned.
///
/// Only a regular file is read: a FIFO, a device or a directory is [`Head::Other`] (the
/// kernel does not execute those either), and it is opened with `O_NONBLOCK` so a FIFO
/// planted in an image cannot stall the scan in `open`.
pub fn read_head(path: &Path) -> std::io::Result<Head> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Ok(Head::Other);
    }
    let mut buf = vec![0u8; HEAD];
    let n = read_at_most(&f, &mut buf, 0)?;
    buf.truncate(n);
    Ok(classify(&f, &buf))
}

fn read_at_most(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn classify(f: &File, head: &[u8]) -> Head {
    if head.starts_with(b"#!") {
        return parse_shebang(head);
    }
    if head.len() >= 52
        && head.starts_with(b"\x7fELF")
        && let Some(info) = parse_elf(f, head)
    {
        return Head::Elf(Box::new(info));
    }
    Head::Other
}

/// Splits a `#!` line as Linux does: interpreter up to the first blank, the rest (trimmed) as
/// one argument.
fn parse_shebang(head: &[u8]) -> Head {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[2..line_end]);
    let line = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
    let (interp, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    Head::Script {
        interpreter: interp.to_string(),
        arg: (!rest.is_empty()).then(|| rest.to_string()),
    }
}

/// Bytes `[offset, offset+len)` of the file: from the head when inside it, else read.
fn bytes_at(f: &File, head: &[u8], offset: u64, len: u64) -> Option<Vec<u8>> {
    if len > MAX_EXTRA {
        return None;
    }
    let end = offset.checked_add(len)?;
    if end <= head.len() as u64 {
        return Some(head[offset as usize..end as usize].to_vec());
    }
    let mut buf = vec![0u8; len as usize];
    let n = read_at_most(f, &mut buf, offset).ok()?;
    (n == len as usize).then_some(buf)
}

fn parse_elf(f: &File, head: &[u8]) -> Option<ElfInfo> {
    let h: Header = goblin::elf::Elf::parse_header(head).ok()?;
    let container = h.container().ok()?;
    let endian = h.endianness().ok()?;
    let bits = if container == Container::Big { 64 } else { 32 };
    let little = endian == Endian::Little;
    let ctx = Ctx::new(container, endian);
    let mut info = ElfInfo {
        machine: h.e_machine,
        bits,
        endian: if little { "little" } else { "big" }.into(),
        e_type: h.e_type,
        arch: oci_arch(h.e_machine, bits, little).map(str::to_string),
        interpreter: None,
        max_load_align: 0,
        has_load: false,
        abi_tag: None,
        isa_level: None,
    };
    let phnum = h.e_phnum as usize;
    if phnum == 0 || h.e_phoff == 0 {
        return Some(info);
    }
    let table_len = (phnum as u64) * ProgramHeader::size(ctx) as u64;
    let Some(table) = bytes_at(f, head, h.e_phoff, table_len) else {
        return Some(info);
    };
    let Ok(phdrs) = ProgramHeader::parse(&table, 0, phnum, ctx) else {
        return Some(info);
    };
    for ph in &phdrs {
        match ph.p_type {
            program_header::PT_LOAD => {
                info.has_load = true;
                info.max_load_align = info.max_load_align.max(ph.p_align);
            }
            program_header::PT_INTERP => {
                if let Some(b) = bytes_at(f, head, ph.p_offset, ph.p_filesz.min(4096)) {
                    let s = b.split(|&c| c == 0).next().unwrap_or(&[]);
                    info.interpreter = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
            program_header::PT_NOTE | program_header::PT_GNU_PROPERTY => {
                if let Some(b) = bytes_at(f, head, ph.p_offset, ph.p_filesz) {
                    // Notes are 4-aligned, except 8-aligned in 64-bit property segments.
                    let align = if ph.p_align == 8 { 8 } else { 4 };
                    read_notes(&b, little, align, bits, &mut info);
                }
            }
            _ => {}
        }
    }
    Some(info)
}

fn u32_at(b: &[u8], off: usize, little: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(s)
    } else {
        u32::from_be_bytes(s)
    })
}

fn align_up(v: usize, a: usize) -> usize {
    v.div_ceil(a) * a
}

fn read_notes(b: &[u8], little: bool, align: usize, bits: u8, info: &mut ElfInfo) {
    let mut off = 0usize;
    while off + 12 <= b.len() {
        let (Some(namesz), Some(descsz), Some(ntype)) = (
            u32_at(b, off, little),
            u32_at(b, off + 4, little),
            u32_at(b, off + 8, little),
        ) else {
            return;
        };
        let name_off = off + 12;
        let desc_off = align_up(name_off + namesz as usize, align);
        let next = align_up(desc_off + descsz as usize, align);
        if desc_off > b.len() || desc_off + descsz as usize > b.len() {
            return;
        }
        let name = &b[name_off..name_off + namesz as usize];
        let desc = &b[desc_off..desc_off + descsz as usize];
        if name == b"GNU\0" {
            match ntype {
                NT_GNU_ABI_TAG
                    if desc.len() >= 16
                    // [os, major, minor, patch]; os 0 = Linux.
                    && u32_at(desc, 0, little) == Some(0) =>
                {
                    info.abi_tag = Some([
                        u32_at(desc, 4, little).unwrap_or(0),
                        u32_at(desc, 8, little).unwrap_or(0),
                        u32_at(desc, 12, little).unwrap_or(0),
                    ]);
                }
                NT_GNU_PROPERTY_TYPE_0 => read_properties(desc, little, bits, info),
                _ => {}
            }
        }
        if next <= off {
            return;
        }
        off = next;
    }
}

fn read_properties(desc: &[u8], little: bool, bits: u8, info: &mut ElfInfo) {
    let align = if bits == 64 { 8 } else { 4 };
    let mut off = 0usize;
    while off + 8 <= desc.len() {
        let (Some(pr_type), Some(datasz)) =
            (u32_at(desc, off, little), u32_at(desc, off + 4, little))
        else {
            return;
        };
        let data = off + 8;
        if data + datasz as usize > desc.len() {
            return;
        }
        if pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED && datasz >= 4 {
            let bitsv = u32_at(desc, data, little).unwrap_or(0);
            // bit 0 baseline, 1 v2, 2 v3, 3 v4.
            let level = (0..4u8)
                .rev()
                .find(|i| bitsv & (1 << i) != 0)
                .map(|i| i + 1);
            if let Some(l) = level {
                info.isa_level = Some(info.isa_level.unwrap_or(0).max(l));
            }
        }
        off = align_up(data + datasz as usize, align);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(path: &str) -> Option<ElfInfo> {
        match read_head(Path::new(path)).ok()? {
            Head::Elf(e) => Some(*e),
            _ => None,
        }
    }

    #[test]
    fn host_busybox_static() {
        let Some(e) = elf("/bin/busybox") else {
            eprintln!("skip: /bin/busybox is not installed");
            return;
        };
        assert_eq!(e.arch.as_deref(), Some("amd64"));
        assert_eq!(e.bits, 64);
        assert!(e.is_loadable());
        assert_eq!(e.interpreter, None, "busybox-static has no PT_INTERP");
        assert!(
            e.abi_tag.is_some(),
            "Debian's static busybox carries an ABI tag"
        );
        assert!(e.max_load_align >= 4096);
    }

    #[test]
    fn host_dynamic_binary_has_loader() {
        let e = elf("/usr/bin/ls").expect("ls is ELF");
        assert_eq!(e.arch.as_deref(), Some("amd64"));
        let interp = e.interpreter.expect("dynamic");
        assert!(interp.contains("ld-linux-x86-64"), "{interp}");
        // libc's ABI tag is in libc.so.6; ls itself is tagged by crt1 too.
        let libc = elf("/lib/x86_64-linux-gnu/libc.so.6").expect("libc");
        assert_eq!(libc.e_type, header::ET_DYN);
        assert!(libc.abi_tag.unwrap()[0] >= 3);
    }

    #[test]
    fn gcc_isa_levels() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("t.c");
        std::fs::write(&src, "int main(void){return 0;}\n").unwrap();
        for (march, want) in [("x86-64-v2", 2u8), ("x86-64-v3", 3), ("x86-64-v4", 4)] {
            let out = t.path().join(march);
            let st = std::process::Command::new("gcc")
                .args([
                    "-O2",
                    &format!("-march={march}"),
                    "-mneeded",
                    "-static",
                    "-o",
                ])
                .arg(&out)
                .arg(&src)
                .status();
            match st {
                Ok(s) if s.success() => {}
                _ => {
                    eprintln!("skip: gcc -mneeded -static unavailable");
                    return;
                }
            }
            let e = elf(out.to_str().unwrap()).unwrap();
            assert_eq!(e.isa_level, Some(want), "{march}");
        }
    }

    #[test]
    fn arm64_busybox_from_debs() {
        let deb = std::fs::read_dir("/var/cache/xrun-ci/debs")
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().ends_with("_arm64.deb"))
            });
        let Some(deb) = deb else {
            eprintln!("skip: no arm64 busybox .deb cached (ci/fetch-debs)");
            return;
        };
        let t = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(t.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "dpkg-deb -x");
        let e = elf(t.path().join("bin/busybox").to_str().unwrap()).unwrap();
        assert_eq!(e.arch.as_deref(), Some("arm64"));
        assert_eq!(e.max_load_align, 0x10000);
        assert_eq!(e.isa_level, None);
    }

    #[test]
    fn shebang_and_other() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s");
        std::fs::write(&p, "#! /usr/bin/env  python3 -u \nprint(1)\n").unwrap();
        assert_eq!(
            read_head(&p).unwrap(),
            Head::Script {
                interpreter: "/usr/bin/env".into(),
                arg: Some("python3 -u".into())
            }
        );
        std::fs::write(&p, "\x7fELF garbage").unwrap();
        assert_eq!(read_head(&p).unwrap(), Head::Other);
        std::fs::write(&p, "").unwrap();
        assert_eq!(read_head(&p).unwrap(), Head::Other);
    }

    #[test]
    fn fifos_and_devices_are_not_read() {
        // A FIFO with no writer: a blocking open would never return.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert_eq!(read_head(&p).unwrap(), Head::Other);
        assert_eq!(read_head(Path::new("/dev/zero")).unwrap(), Head::Other);
        assert_eq!(read_head(t.path()).unwrap(), Head::Other);
    }
}
