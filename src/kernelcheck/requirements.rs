//! What an image needs from a host: declared platform, labels, and ELF facts.
//!
//! CONTRACT: the plan stage reads this type. The kernelcheck stage fills it in with [`scan`].
//!
//! Policy for the image-wide ELF facts: every regular file of the merged root file system is
//! looked at (first bytes only); only executables and shared objects (`ET_EXEC`/`ET_DYN` with a
//! `PT_LOAD`) count. Files under a `glibc-hwcaps/` directory are left out of the ISA level: the
//! loader picks them only on CPUs that have the level. The ABI tag and ISA level are the
//! maxima over the image, the load alignment the minimum (the weakest file decides), each
//! with the file that set it as evidence.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::elf::{self, Head};
use super::entrypoint::{self, EntrypointFacts, ExecConfig, Override};
use super::labels;
use super::profile::Evidence;
use super::rootfs::{Rootfs, RootfsError};
use crate::platform::Platform;

/// A value and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact<T> {
    /// The value.
    pub value: T,
    /// Where it came from (file inside the image, note, label key).
    pub evidence: Evidence,
}

impl<T> Fact<T> {
    /// A fact with its evidence.
    pub fn new(value: T, evidence: impl Into<Evidence>) -> Self {
        Fact {
            value,
            evidence: evidence.into(),
        }
    }
}

/// What is wrong with the image itself (the plan turns these into reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemCode {
    /// An `org.xrun.*` label could not be parsed.
    BadLabel,
    /// No Entrypoint/Cmd and no command given.
    NoCommand,
    /// argv[0] does not resolve to a file in the image.
    EntrypointMissing,
    /// argv[0] (or an interpreter) is not an executable file the kernel can load.
    EntrypointNotExecutable,
    /// A `#!` interpreter or `PT_INTERP` loader is missing from the image.
    InterpreterMissing,
}

/// One problem with evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable code.
    pub code: ProblemCode,
    /// One line.
    pub message: String,
    /// Paths inside the image, label keys, …
    pub evidence: Vec<Evidence>,
}

/// ELF files of one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchCount {
    /// OCI architecture, or `unknown(machine=N,bits=B,endian=E)`.
    pub arch: String,
    /// Number of executables and shared objects.
    pub files: u64,
    /// The first such file (sorted by path), e.g. `/bin/busybox`.
    pub example: String,
}

/// Image-wide ELF facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfFacts {
    /// Regular files looked at.
    pub files_scanned: u64,
    /// Executables and shared objects found.
    pub elf_files: u64,
    /// Files that could not be opened or read.
    pub unreadable: u64,
    /// Executables and shared objects per architecture.
    pub arches: Vec<ArchCount>,
    /// The newest `NT_GNU_ABI_TAG` kernel asked for.
    pub abi_tag_max: Option<Fact<[u32; 3]>>,
    /// The highest x86-64 ISA level needed (1..=4).
    pub isa_level: Option<Fact<u8>>,
    /// The smallest per-file maximum `PT_LOAD` alignment (bytes): the largest page size every
    /// file can be mapped with.
    pub min_load_align: Option<Fact<u64>>,
}

/// What an image needs, with evidence for each fact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRequirements {
    /// The declared platform (config `architecture`, `os`, `variant`, `os.version`,
    /// `os.features`).
    pub platform: Platform,
    /// `org.xrun.kernel.min`.
    pub kernel_min: Option<Fact<[u32; 3]>>,
    /// `org.xrun.kernel.modules` (normalized `-` → `_`).
    pub modules: Vec<Fact<String>>,
    /// `org.xrun.kernel.config` (with `CONFIG_` prefix).
    pub config: Vec<Fact<String>>,
    /// `org.xrun.page-size`: the largest kernel page size the image works with.
    pub max_page_size: Option<Fact<u64>>,
    /// ELF facts over the whole root file system.
    pub elf: ElfFacts,
    /// The resolved command.
    pub entrypoint: EntrypointFacts,
    /// Problems with the image itself.
    pub problems: Vec<Problem>,
}

/// What to scan: the image's config fields, manifest annotations and layers.
#[derive(Debug, Clone, Default)]
pub struct ScanInput {
    /// Declared platform.
    pub platform: Platform,
    /// Config `Labels`.
    pub labels: HashMap<String, String>,
    /// Manifest annotations.
    pub annotations: HashMap<String, String>,
    /// Execution fields of the config.
    pub exec: ExecConfig,
    /// Unpacked layer directories, lowest first (a plain directory is one layer).
    pub layer_dirs: Vec<PathBuf>,
}

impl ScanInput {
    /// Takes the fields from an OCI image config.
    pub fn from_config(
        config: &oci_spec::image::ImageConfiguration,
        annotations: HashMap<String, String>,
        layer_dirs: Vec<PathBuf>,
    ) -> ScanInput {
        let c = config.config().clone().unwrap_or_default();
        ScanInput {
            platform: Platform {
                os: config.os().to_string(),
                architecture: config.architecture().to_string(),
                variant: config.variant().clone(),
                os_version: config.os_version().clone(),
                os_features: config.os_features().clone().unwrap_or_default(),
            },
            labels: c.labels().clone().unwrap_or_default(),
            annotations,
            exec: ExecConfig {
                entrypoint: c.entrypoint().clone().unwrap_or_default(),
                cmd: c.cmd().clone().unwrap_or_default(),
                env: c.env().clone().unwrap_or_default(),
                working_dir: c.working_dir().clone().unwrap_or_default(),
            },
            layer_dirs,
        }
    }
}

/// Errors of [`scan`].
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A layer directory could not be read.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
}

/// Reads an image's requirements: labels, ELF facts over every file, and the command `ov`
/// (or the config's) resolved inside the image.
pub fn scan(input: &ScanInput, ov: &Override) -> Result<ImageRequirements, ScanError> {
    let fs = Rootfs::open(&input.layer_dirs)?;
    let l = labels::read(&input.labels, &input.annotations);
    let mut problems = l.problems;
    let entrypoint = entrypoint::resolve(&fs, &input.exec, ov, &mut problems);
    Ok(ImageRequirements {
        platform: input.platform.clone(),
        kernel_min: l.kernel_min,
        modules: l.modules,
        config: l.config,
        max_page_size: l.max_page_size,
        elf: scan_elf(&fs),
        entrypoint,
        problems,
    })
}

/// One file's contribution.
struct FileFacts {
    path: String,
    info: elf::ElfInfo,
}

/// Looks at the head of every regular file, on a few threads.
pub fn scan_elf(fs: &Rootfs) -> ElfFacts {
    let files = fs.files();
    let threads = crate::par::threads_for(files.len(), 1).min(8);
    let heads = crate::par::map(&files, threads, |(_, host)| elf::read_head(host));
    let mut found: Vec<FileFacts> = Vec::new();
    let mut unreadable = 0u64;
    for ((path, _), head) in files.iter().zip(heads) {
        match head {
            Ok(Head::Elf(info)) if info.is_loadable() => found.push(FileFacts {
                path: format!("/{path}"),
                info: *info,
            }),
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));

    let mut facts = ElfFacts {
        files_scanned: files.len() as u64,
        elf_files: found.len() as u64,
        unreadable,
        ..Default::default()
    };
    let mut arches: BTreeMap<String, ArchCount> = BTreeMap::new();
    for f in &found {
        let i = &f.info;
        let arch = i.arch.clone().unwrap_or_else(|| {
            format!(
                "unknown(machine={},bits={},endian={})",
                i.machine, i.bits, i.endian
            )
        });
        arches
            .entry(arch.clone())
            .or_insert_with(|| ArchCount {
                arch,
                files: 0,
                example: f.path.clone(),
            })
            .files += 1;
        if let Some(tag) = i.abi_tag
            && facts.abi_tag_max.as_ref().is_none_or(|m| tag > m.value)
        {
            facts.abi_tag_max = Some(Fact::new(
                tag,
                format!(
                    "{}: NT_GNU_ABI_TAG Linux {}",
                    f.path,
                    labels::show_version(&tag)
                ),
            ));
        }
        if let Some(level) = i.isa_level
            && !f.path.contains("/glibc-hwcaps/")
            && facts.isa_level.as_ref().is_none_or(|m| level > m.value)
        {
            facts.isa_level = Some(Fact::new(
                level,
                format!("{}: GNU_PROPERTY_X86_ISA_1_NEEDED x86-64-v{level}", f.path),
            ));
        }
        if i.max_load_align > 0
            && facts
                .min_load_align
                .as_ref()
                .is_none_or(|m| i.max_load_align < m.value)
        {
            facts.min_load_align = Some(Fact::new(
                i.max_load_align,
                format!("{}: PT_LOAD p_align {:#x}", f.path, i.max_load_align),
            ));
        }
    }
    facts.arches = arches.into_values().collect();
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_plain_directory() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", r.join("bin/busybox")).expect("busybox-static installed");
        std::fs::write(r.join("bin/notes.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("busybox", r.join("bin/sh")).unwrap();
        let input = ScanInput {
            platform: "linux/amd64".parse().unwrap(),
            labels: [(labels::KERNEL_MIN.to_string(), "5.10".to_string())].into(),
            exec: ExecConfig {
                cmd: vec!["sh".into()],
                ..Default::default()
            },
            layer_dirs: vec![r],
            ..Default::default()
        };
        let req = scan(&input, &Override::default()).unwrap();
        assert_eq!(req.kernel_min.as_ref().unwrap().value, [5, 10, 0]);
        assert_eq!(req.elf.files_scanned, 2);
        assert_eq!(req.elf.elf_files, 1);
        assert_eq!(req.elf.arches.len(), 1);
        assert_eq!(req.elf.arches[0].arch, "amd64");
        assert_eq!(req.elf.arches[0].example, "/bin/busybox");
        assert!(
            req.elf
                .abi_tag_max
                .as_ref()
                .unwrap()
                .evidence
                .contains("/bin/busybox")
        );
        assert!(req.problems.is_empty(), "{:?}", req.problems);
        assert_eq!(req.entrypoint.chain[0].path, "bin/busybox");
        // Serializes (the JSON output of `xrun check`).
        serde_json::to_string(&req).unwrap();
    }
}
