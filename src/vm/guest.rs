//! A guest: the kernel, the base initramfs and their description (`guest.json`), as written
//! by `ci/guest-image`, either unpacked in a directory or inside an OCI image layout.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::VmError;
use crate::digest::{Digest, Hasher};
use crate::kernelcheck::HostProfile;
use crate::kernelcheck::kconfig::{parse_config, parse_version};
use crate::kernelcheck::profile::{CpuInfo, KernelInfo};
use crate::platform::Platform;

/// How the kernel is booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// amd64 bzImage on `-M microvm` (virtio-mmio), with `tsc_early_khz`.
    Microvm,
    /// amd64 PVH `vmlinux` on `-M pc` (virtio-pci).
    Pvh,
    /// arm64 `Image` on `-M virt -cpu cortex-a72` (virtio-pci).
    Virt,
}

/// `guest.json`, the guest's description.
#[derive(Debug, Clone, Deserialize)]
struct GuestJson {
    schema: u32,
    architecture: String,
    kernel_release: String,
    #[serde(default)]
    kernel_package: String,
    boot: BootKind,
    kernel: String,
    initrd: String,
    config: String,
    base_modules: Vec<String>,
    modules: BTreeMap<String, Vec<String>>,
    /// The kernel's built-in "modules" (xrun's own kernel: everything is built in).
    #[serde(default)]
    builtin_modules: Vec<String>,
}

/// A guest ready to boot.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The directory holding the guest's files.
    pub dir: PathBuf,
    /// OCI architecture (`amd64`, `arm64`).
    pub arch: String,
    /// The kernel's `uname -r`.
    pub kernel_release: String,
    /// The Debian package (name=version) the kernel came from.
    pub kernel_package: String,
    /// How to boot it.
    pub boot: BootKind,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The base initramfs (newc cpio, uncompressed or gzip).
    pub initrd: PathBuf,
    /// The kernel config file.
    pub config: PathBuf,
    /// Whether the kernel has ACPI (`CONFIG_ACPI=y`); without it, `-M microvm` runs with
    /// `acpi=off` and qemu lists the virtio-mmio devices on the kernel command line.
    pub acpi: bool,
    base_modules: Vec<String>,
    modules: BTreeMap<String, Vec<String>>,
    builtin_modules: Vec<String>,
}

/// `ci/guest-image`'s output directory: `$XRUN_CACHE/guest`, default `/var/cache/xrun-ci/guest`.
/// It holds xrun's own guest (the default) and, under `debian/`, the Debian cloud kernel guest.
pub fn ci_guest_dir() -> PathBuf {
    std::env::var_os("XRUN_CACHE")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/xrun-ci"))
        .join("guest")
}

/// Where guests are looked for, first match wins: `$XRUN_GUEST` (a guest directory, a
/// directory of per-arch guest directories, or an OCI layout), then `/var/lib/xrun/guest`,
/// then `ci/guest-image`'s output ([`ci_guest_dir`]): xrun's own guest there, else (the
/// fallback) the Debian guest in its `debian/`.
pub fn search_path() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("XRUN_GUEST") {
        v.push(PathBuf::from(p));
        return v;
    }
    v.push(PathBuf::from("/var/lib/xrun/guest"));
    let ci = ci_guest_dir();
    v.push(ci.join("debian"));
    v.insert(v.len() - 1, ci);
    v
}

/// Whether `dir` holds a guest: `guest.json`, per-arch guest directories, or an OCI layout
/// (itself or in `oci/`).
fn holds_guest(dir: &Path) -> bool {
    dir.join("guest.json").is_file()
        || ["amd64", "arm64"]
            .iter()
            .any(|a| dir.join(a).join("guest.json").is_file())
        || [dir.to_path_buf(), dir.join("oci")]
            .iter()
            .any(|l| l.join("index.json").is_file() && l.join("oci-layout").is_file())
}

/// A local guest `--vm-kernel` names instead of an image reference: a path (absolute or
/// starting with `.`) to a guest directory, a directory of per-arch guests or an OCI layout; or
/// the name of such a directory in one of the [`search_path`] places (`debian`: the Debian
/// cloud kernel guest `ci/guest-image` builds). `None`: not a local guest (an image reference).
pub fn local_guest_dir(value: &str) -> Option<PathBuf> {
    if value.starts_with('/') || value.starts_with('.') {
        return Some(PathBuf::from(value));
    }
    if value.is_empty() || value.contains(['/', ':', '@']) {
        return None;
    }
    let mut places = search_path();
    if std::env::var_os("XRUN_GUEST").is_some() {
        places.push(ci_guest_dir());
    }
    places
        .into_iter()
        .map(|p| p.join(value))
        .find(|d| holds_guest(d))
}

impl Guest {
    /// Loads an unpacked guest directory (one holding `guest.json`).
    pub fn from_dir(dir: &Path) -> Result<Guest, VmError> {
        let bad = |message: String| VmError::BadGuest {
            path: dir.to_path_buf(),
            message,
        };
        let text = fs::read_to_string(dir.join("guest.json"))
            .map_err(|e| bad(format!("guest.json: {e}")))?;
        let j: GuestJson =
            serde_json::from_str(&text).map_err(|e| bad(format!("guest.json: {e}")))?;
        if j.schema != 1 {
            return Err(bad(format!("guest.json schema {} (expected 1)", j.schema)));
        }
        let file = |name: &str| -> Result<PathBuf, VmError> {
            if name.contains('/') || name.is_empty() || name == ".." {
                return Err(bad(format!("bad file name {name:?} in guest.json")));
            }
            let p = dir.join(name);
            if !p.is_file() {
                return Err(bad(format!("{name} is missing")));
            }
            Ok(p)
        };
        let config = file(&j.config)?;
        let acpi = fs::read_to_string(&config)
            .map_err(|e| bad(format!("{}: {e}", j.config)))?
            .lines()
            .any(|l| l == "CONFIG_ACPI=y");
        Ok(Guest {
            dir: dir.to_path_buf(),
            kernel: file(&j.kernel)?,
            initrd: file(&j.initrd)?,
            config,
            acpi,
            arch: j.architecture,
            kernel_release: j.kernel_release,
            kernel_package: j.kernel_package,
            boot: j.boot,
            base_modules: j.base_modules,
            modules: j.modules,
            builtin_modules: j.builtin_modules,
        })
    }

    /// Finds the guest for `arch` (OCI terms) along [`search_path`]. OCI layouts are unpacked
    /// under `unpack_cache` (by manifest digest).
    pub fn locate(arch: &str, unpack_cache: &Path) -> Result<Guest, VmError> {
        Guest::locate_in(&search_path(), arch, unpack_cache)
    }

    /// Like [`Guest::locate`], along the given places instead of [`search_path`].
    pub fn locate_in(
        places: &[PathBuf],
        arch: &str,
        unpack_cache: &Path,
    ) -> Result<Guest, VmError> {
        let mut looked = Vec::new();
        for base in places {
            looked.push(base.display().to_string());
            if base.join("guest.json").is_file() {
                let g = Guest::from_dir(base)?;
                if g.arch == arch {
                    return Ok(g);
                }
                continue;
            }
            if base.join(arch).join("guest.json").is_file() {
                return Guest::from_dir(&base.join(arch));
            }
            for layout in [base.clone(), base.join("oci")] {
                if layout.join("index.json").is_file() && layout.join("oci-layout").is_file() {
                    // A layout without this arch: the next place may have it.
                    match Guest::from_oci_layout(&layout, arch, unpack_cache) {
                        Err(VmError::GuestMissing { .. }) => break,
                        other => return other,
                    }
                }
            }
        }
        Err(VmError::GuestMissing {
            arch: arch.to_string(),
            detail: format!("looked in {}", looked.join(", ")),
        })
    }

    /// Loads the guest for `arch` from an OCI image layout (an index of per-arch images, each
    /// with one layer holding the guest directory; `index.json` either is that index or names
    /// it), verifying digests, and unpacking it once under `unpack_cache/<manifest hex>`.
    pub fn from_oci_layout(
        layout: &Path,
        arch: &str,
        unpack_cache: &Path,
    ) -> Result<Guest, VmError> {
        let bad = |message: String| VmError::BadGuest {
            path: layout.to_path_buf(),
            message,
        };
        let mut index: serde_json::Value = read_json(layout, &layout.join("index.json"))?;
        // index.json may name one image index (what ci/guest-image writes, so skopeo copies
        // it whole), or list the per-arch images itself (older layouts).
        if let Some([only]) = index["manifests"].as_array().map(Vec::as_slice)
            && only["mediaType"].as_str() == Some(crate::store::OCI_INDEX)
        {
            let bytes = read_blob(layout, &descriptor_digest(layout, only)?)?;
            index =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("the image index: {e}")))?;
        }
        let manifests = index["manifests"]
            .as_array()
            .ok_or_else(|| bad("index.json has no manifests".into()))?;
        let entry = manifests
            .iter()
            .find(|m| m["platform"]["architecture"].as_str() == Some(arch))
            .ok_or_else(|| VmError::GuestMissing {
                arch: arch.to_string(),
                detail: format!("the layout {} has no {arch} image", layout.display()),
            })?;
        let mdigest = descriptor_digest(layout, entry)?;
        let dest = unpack_cache.join(mdigest.hex());
        if dest.join("guest.json").is_file() {
            return Guest::from_dir(&dest);
        }
        let mbytes = read_blob(layout, &mdigest)?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&mbytes).map_err(|e| bad(format!("manifest: {e}")))?;
        let layers = manifest["layers"]
            .as_array()
            .filter(|l| l.len() == 1)
            .ok_or_else(|| bad("a guest image has exactly one layer".into()))?;
        let ldigest = descriptor_digest(layout, &layers[0])?;
        let lpath = blob_path(layout, &ldigest);
        verify_file(layout, &lpath, &ldigest)?;
        fs::create_dir_all(unpack_cache)
            .map_err(VmError::io(unpack_cache.display().to_string()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(unpack_cache)
            .map_err(VmError::io(unpack_cache.display().to_string()))?;
        let f = fs::File::open(&lpath).map_err(VmError::io(lpath.display().to_string()))?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for entry in ar.entries().map_err(VmError::io("guest layer"))? {
            let mut entry = entry.map_err(VmError::io("guest layer"))?;
            let path = entry
                .path()
                .map_err(VmError::io("guest layer"))?
                .into_owned();
            let name = path.to_string_lossy().trim_start_matches("./").to_string();
            if name.is_empty() || name.contains('/') || !entry.header().entry_type().is_file() {
                return Err(bad(format!("unexpected entry {name:?} in the guest layer")));
            }
            entry
                .unpack(tmp.path().join(&name))
                .map_err(VmError::io(format!("unpack {name}")))?;
        }
        let staged = tmp.keep();
        if let Err(e) = fs::rename(&staged, &dest) {
            let _ = fs::remove_dir_all(&staged);
            if !dest.join("guest.json").is_file() {
                return Err(VmError::io(dest.display().to_string())(e));
            }
        }
        Guest::from_dir(&dest)
    }

    /// The guest kernel described as a [`HostProfile`], so the plan checks an image's
    /// requirements against it with the same rules as a host (`PlanOptions::guest`): the
    /// release and version from `guest.json`, the options from the guest's kernel config,
    /// module support with every module the guest ships as available, the base modules as
    /// loaded; built-in modules are judged from the config (`CONFIG_…=y`), since the
    /// guest's `modules.builtin` is not shipped (`modules_builtin_complete` is false), unless
    /// `guest.json` lists them (xrun's own kernel: no module support, every "module" built in,
    /// the list complete). CPU: 4 KiB pages (the
    /// Debian cloud kernels); on amd64 the CPU level is `accel_level` (KVM: the host's;
    /// TCG `-cpu max` in qemu ≥ 7.2 emulates up to x86-64-v3, no AVX-512).
    pub fn profile(&self, accel_level: u8) -> Result<HostProfile, VmError> {
        let text = fs::read_to_string(&self.config)
            .map_err(VmError::io(self.config.display().to_string()))?;
        let config = parse_config(&text);
        let modules_supported = text.lines().any(|l| l == "CONFIG_MODULES=y");
        let platform = Platform {
            os: "linux".into(),
            architecture: self.arch.clone(),
            ..Default::default()
        };
        let machine = match self.arch.as_str() {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            other => other,
        };
        Ok(HostProfile {
            schema_version: crate::kernelcheck::profile::SCHEMA_VERSION,
            schema_minor: crate::kernelcheck::profile::SCHEMA_MINOR,
            name: format!("guest {} {}", self.arch, self.kernel_release),
            platform,
            os_release: None,
            cpu: CpuInfo {
                machine: machine.into(),
                amd64_level: if self.arch == "amd64" { accel_level } else { 0 },
                count: 1,
                page_size: 4096,
                endianness: "little".into(),
                ..Default::default()
            },
            kernel: KernelInfo {
                release: self.kernel_release.clone(),
                version: parse_version(&self.kernel_release).unwrap_or([0, 0, 0]),
                config_source: Some(format!("guest {}", self.config.display())),
                config,
                modules_supported,
                modules_loaded: self.base_modules.clone(),
                modules_builtin: self.builtin_modules.clone(),
                modules_available: self.modules.keys().cloned().collect(),
                modules_builtin_complete: !self.builtin_modules.is_empty(),
                checks: Vec::new(),
            },
            cgroups: Default::default(),
            namespaces: Vec::new(),
            user_namespaces: Default::default(),
            seccomp: false,
            security: Default::default(),
            filesystems: Vec::new(),
            emulation: Default::default(),
            unknowns: Vec::new(),
        })
    }

    /// Whether the guest can mount 9p shares over virtio (`-v`): its kernel config has
    /// `CONFIG_NET_9P_VIRTIO` and `CONFIG_9P_FS` built in, or as modules the guest ships.
    pub fn has_9p(&self) -> bool {
        let config = std::fs::read_to_string(&self.config).unwrap_or_default();
        let shipped = self.optional_modules();
        [
            ("CONFIG_NET_9P_VIRTIO", "9pnet_virtio"),
            ("CONFIG_9P_FS", "9p"),
        ]
        .iter()
        .all(|(opt, module)| {
            config.lines().any(|l| l == format!("{opt}=y"))
                || (config.lines().any(|l| l == format!("{opt}=m"))
                    && shipped.iter().any(|m| m == module))
        })
    }

    /// The optional modules this guest ships (beyond the ones always loaded).
    pub fn optional_modules(&self) -> Vec<String> {
        self.modules
            .keys()
            .filter(|m| !self.base_modules.contains(m))
            .cloned()
            .collect()
    }

    /// The modules to load for a network interface (virtio-net), beyond the ones the init
    /// always loads: none when the guest loads `virtio_net` already (guests `ci/guest-image`
    /// builds now) or has it built in; its module chain when it only ships it; an error when
    /// it has no virtio-net driver at all (a guest built before networks existed).
    pub fn network_modules(&self) -> Result<Vec<String>, VmError> {
        const DRIVER: &str = "virtio_net";
        if self.base_modules.iter().any(|m| m == DRIVER) {
            return Ok(Vec::new());
        }
        if self.modules.contains_key(DRIVER) {
            return self.module_load_order(&[DRIVER.to_string()]);
        }
        let config = fs::read_to_string(&self.config).unwrap_or_default();
        if config.lines().any(|l| l == "CONFIG_VIRTIO_NET=y") {
            return Ok(Vec::new());
        }
        Err(VmError::Network(format!(
            "the VM guest ({}) has no virtio-net driver: rebuild it with ci/guest-image (or \
             publish a newer guest image), or use --network none",
            self.kernel_release
        )))
    }

    /// The kernel's built-in "modules" as `guest.json` lists them (empty for guests that
    /// do not say).
    pub fn builtin_modules(&self) -> &[String] {
        &self.builtin_modules
    }

    /// The modules to load for `wanted` (e.g. from `org.xrun.kernel.modules`), dependencies
    /// first, without the ones the init always loads or the kernel has built in. Names may
    /// use `-` or `_`.
    pub fn module_load_order(&self, wanted: &[String]) -> Result<Vec<String>, VmError> {
        let mut order = Vec::new();
        for w in wanted {
            let name = w.trim().replace('-', "_");
            if name.is_empty() || self.builtin_modules.contains(&name) {
                continue;
            }
            if !self.modules.contains_key(&name) {
                return Err(VmError::ModuleUnavailable {
                    module: w.clone(),
                    release: self.kernel_release.clone(),
                    available: self.optional_modules().join(", "),
                });
            }
            self.visit(&name, &mut order, 0)?;
        }
        order.retain(|m| !self.base_modules.contains(m));
        Ok(order)
    }

    fn visit(&self, m: &str, order: &mut Vec<String>, depth: usize) -> Result<(), VmError> {
        if order.iter().any(|o| o == m) {
            return Ok(());
        }
        let deps = self.modules.get(m).ok_or_else(|| VmError::BadGuest {
            path: self.dir.clone(),
            message: format!("module dependency {m} is not shipped"),
        })?;
        if depth > 64 {
            return Err(VmError::BadGuest {
                path: self.dir.clone(),
                message: format!("module dependency loop at {m}"),
            });
        }
        for d in deps {
            self.visit(d, order, depth + 1)?;
        }
        if !order.iter().any(|o| o == m) {
            order.push(m.to_string());
        }
        Ok(())
    }
}

fn read_json(layout: &Path, path: &Path) -> Result<serde_json::Value, VmError> {
    let bytes = fs::read(path).map_err(VmError::io(path.display().to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| VmError::BadGuest {
        path: layout.to_path_buf(),
        message: format!("{}: {e}", path.display()),
    })
}

fn descriptor_digest(layout: &Path, d: &serde_json::Value) -> Result<Digest, VmError> {
    d["digest"]
        .as_str()
        .and_then(|s| s.parse::<Digest>().ok())
        .ok_or_else(|| VmError::BadGuest {
            path: layout.to_path_buf(),
            message: format!("bad descriptor digest in {d}"),
        })
}

fn blob_path(layout: &Path, d: &Digest) -> PathBuf {
    layout.join("blobs").join("sha256").join(d.hex())
}

fn read_blob(layout: &Path, d: &Digest) -> Result<Vec<u8>, VmError> {
    let p = blob_path(layout, d);
    let bytes = fs::read(&p).map_err(VmError::io(p.display().to_string()))?;
    if &Digest::of(&bytes) != d {
        return Err(VmError::BadGuest {
            path: layout.to_path_buf(),
            message: format!("blob {d} does not match its digest"),
        });
    }
    Ok(bytes)
}

fn verify_file(layout: &Path, p: &Path, d: &Digest) -> Result<(), VmError> {
    let mut f = fs::File::open(p).map_err(VmError::io(p.display().to_string()))?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(VmError::io(p.display().to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    if &h.finish() != d {
        return Err(VmError::BadGuest {
            path: layout.to_path_buf(),
            message: format!("blob {d} does not match its digest"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path) -> Guest {
        for f in ["kernel", "initrd.img", "config"] {
            fs::write(dir.join(f), b"x").unwrap();
        }
        fs::write(
            dir.join("guest.json"),
            r#"{"schema":1,"architecture":"amd64","kernel_release":"6.1.0-x","boot":"microvm",
               "kernel":"kernel","initrd":"initrd.img","config":"config",
               "base_modules":["virtio","erofs"],
               "modules":{"virtio":[],"erofs":[],"udp_tunnel":[],"libchacha":[],
                          "wireguard":["udp_tunnel","libchacha","virtio"]}}"#,
        )
        .unwrap();
        Guest::from_dir(dir).unwrap()
    }

    #[test]
    fn module_order_puts_dependencies_first_and_skips_base() {
        let d = tempfile::tempdir().unwrap();
        let g = fake(d.path());
        assert_eq!(
            g.module_load_order(&["wireguard".into()]).unwrap(),
            vec!["udp_tunnel", "libchacha", "wireguard"]
        );
        assert!(matches!(
            g.module_load_order(&["nope".into()]),
            Err(VmError::ModuleUnavailable { .. })
        ));
    }

    #[test]
    fn network_modules_by_what_the_guest_has() {
        let d = tempfile::tempdir().unwrap();
        let mut g = fake(d.path());
        // A guest from before networks: no driver at all.
        let e = g.network_modules().unwrap_err().to_string();
        assert!(
            e.contains("no virtio-net driver") && e.contains("ci/guest-image"),
            "{e}"
        );
        // Built in.
        fs::write(
            d.path().join("config"),
            "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_NET=y\n",
        )
        .unwrap();
        assert_eq!(g.network_modules().unwrap(), Vec::<String>::new());
        // Shipped as an optional module: loaded with its dependencies.
        g.modules.insert("failover".into(), vec![]);
        g.modules
            .insert("net_failover".into(), vec!["failover".into()]);
        g.modules.insert(
            "virtio_net".into(),
            vec!["net_failover".into(), "virtio".into()],
        );
        assert_eq!(
            g.network_modules().unwrap(),
            vec!["failover", "net_failover", "virtio_net"]
        );
        // Loaded by the init always (today's guests).
        g.base_modules.push("virtio_net".into());
        assert_eq!(g.network_modules().unwrap(), Vec::<String>::new());
    }

    /// Writes an OCI layout holding the guest in `g` (amd64), either with `index.json` naming
    /// one nested index (`nested`) or listing the image itself.
    fn layout(g: &Path, out: &Path, nested: bool) {
        let blobs = out.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let d = Digest::of(bytes);
            fs::write(blobs.join(d.hex()), bytes).unwrap();
            (d.to_string(), bytes.len())
        };
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for f in ["guest.json", "kernel", "initrd.img", "config"] {
            tar.append_path_with_name(g.join(f), f).unwrap();
        }
        let (layer, lsize) = put(&tar.into_inner().unwrap().finish().unwrap());
        let (cfg, csize) = put(br#"{"architecture":"amd64","os":"linux"}"#);
        let manifest = serde_json::json!({"schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": lsize}]});
        let (m, msize) = put(manifest.to_string().as_bytes());
        let mut index = serde_json::json!({"schemaVersion": 2, "mediaType": crate::store::OCI_INDEX,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m,
                           "size": msize, "platform": {"architecture": "amd64", "os": "linux"}}]});
        if nested {
            let (i, isize) = put(index.to_string().as_bytes());
            index = serde_json::json!({"schemaVersion": 2, "mediaType": crate::store::OCI_INDEX,
                "manifests": [{"mediaType": crate::store::OCI_INDEX, "digest": i, "size": isize}]});
        }
        fs::write(out.join("index.json"), index.to_string()).unwrap();
        fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    #[test]
    fn oci_layouts_with_or_without_a_nested_index_load() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("g");
        fs::create_dir(&g).unwrap();
        fake(&g);
        for nested in [true, false] {
            let l = d.path().join(format!("layout-{nested}"));
            layout(&g, &l, nested);
            let cache = d.path().join(format!("cache-{nested}"));
            let got = Guest::from_oci_layout(&l, "amd64", &cache).unwrap();
            assert_eq!(got.kernel_release, "6.1.0-x");
            assert!(matches!(
                Guest::from_oci_layout(&l, "arm64", &cache),
                Err(VmError::GuestMissing { .. })
            ));
            // A tampered nested index is refused.
            if nested {
                let index: serde_json::Value =
                    serde_json::from_slice(&fs::read(l.join("index.json")).unwrap()).unwrap();
                let hex = &index["manifests"][0]["digest"].as_str().unwrap()[7..];
                fs::write(l.join("blobs/sha256").join(hex), b"{}").unwrap();
                let e = Guest::from_oci_layout(&l, "amd64", &d.path().join("c2")).unwrap_err();
                assert!(e.to_string().contains("does not match"), "{e}");
            }
        }
    }

    #[test]
    fn missing_files_are_reported() {
        let d = tempfile::tempdir().unwrap();
        fake(d.path());
        fs::remove_file(d.path().join("kernel")).unwrap();
        let e = Guest::from_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("kernel is missing"), "{e}");
    }
}
