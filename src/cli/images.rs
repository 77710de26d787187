//! `xrun images`, `rmi`, `image prune`, `inspect`, `load`, `save`: the engine's image
//! operations, printed.

use std::path::PathBuf;

use std::io::IsTerminal;

use xrun::engine::{ArchiveFormat, Engine, ErrorKind, Reclaimed, SaveRequest};
use xrun::platform::Platform;
use xrun::store::ImageRecord;

use super::Global;

/// `xrun images` arguments.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag, when given).
    pub reference: Option<String>,
    /// Only print image IDs (short manifest digests).
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

/// `xrun rmi` arguments.
#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Images to remove (reference, `name@digest`, or image ID).
    #[arg(required = true)]
    pub references: Vec<String>,
    /// Remove even when containers use the image (their snapshots stay until they go).
    #[arg(short, long)]
    pub force: bool,
    /// Only the image for this platform (default: every platform of the reference).
    #[arg(long)]
    pub platform: Option<Platform>,
}

/// `xrun image …`.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Remove dangling images (every unused one with -a), then the blobs and snapshots no
    /// image references and no container uses.
    Prune {
        /// Remove every image no container uses, not just dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Accepted for Docker compatibility (xrun never asks).
        #[arg(short, long)]
        force: bool,
    },
}

/// `xrun inspect` arguments.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Container (id, prefix or name) or image reference.
    pub reference: String,
    /// Platform to select when the image has several.
    #[arg(long)]
    pub platform: Option<Platform>,
}

/// `xrun load` arguments.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// OCI image layout (directory or tar) or `docker save` archive (default: a tar on stdin).
    #[arg(short = 'i', long = "input")]
    pub input: Option<PathBuf>,
    /// Print only what is needed (accepted for Docker compatibility).
    #[arg(short, long)]
    pub quiet: bool,
    /// Import only the best match for this platform from an index (default: all platforms).
    #[arg(long)]
    pub platform: Option<Platform>,
}

/// `xrun save` arguments.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Images (references or image IDs).
    #[arg(required = true)]
    pub references: Vec<String>,
    /// Output tar (default: stdout, when it is not a terminal).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Only this platform (default: every platform of each image).
    #[arg(long)]
    pub platform: Option<Platform>,
    /// `docker` (an OCI layout with Docker's manifest.json, as `docker save`) or `oci`.
    #[arg(long, default_value = "docker")]
    pub format: ArchiveFormat,
}

/// `xrun tag` arguments.
#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// The image (reference or image ID).
    pub source: String,
    /// The new name (`name[:tag]`).
    pub target: String,
}

/// `name:tag`, or `name@digest` for an untagged record.
fn display_ref(r: &ImageRecord) -> String {
    match &r.tag {
        Some(t) => format!("{}:{t}", r.name),
        None => format!("{}@{}", r.name, r.manifest_digest),
    }
}

/// Sizes as Docker prints them (decimal units).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else if v < 10.0 {
        format!("{v:.2}{}", units[i])
    } else if v < 100.0 {
        format!("{v:.1}{}", units[i])
    } else {
        format!("{v:.0}{}", units[i])
    }
}

/// "5 minutes ago" for an RFC 3339 time.
fn ago(rfc3339: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return rfc3339.to_string();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    let (n, unit) = match secs {
        0..60 => return "Less than a minute ago".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..2_592_000 => (secs / 86400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// `xrun images`.
pub fn images(g: &Global, a: ImagesArgs) -> anyhow::Result<u8> {
    let records = Engine::open(&g.root).list_images(a.reference.as_deref())?;
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &records {
            if seen.insert(r.manifest_digest.short().to_string()) {
                println!("{}", r.manifest_digest.short());
            }
        }
        return Ok(0);
    }
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(0);
    }
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".into(),
        "PLATFORM".into(),
        "DIGEST".into(),
        "SIZE".into(),
        "CREATED".into(),
    ]];
    for r in &records {
        rows.push([
            r.name.clone(),
            r.tag.clone().unwrap_or_else(|| "<none>".into()),
            r.platform.to_string(),
            r.manifest_digest.short().to_string(),
            human_size(r.size),
            ago(&r.created),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(0)
}

/// `xrun rmi`.
pub fn rmi(g: &Global, a: RmiArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let mut failed = false;
    let mut removed = Vec::new();
    for input in &a.references {
        let records = match engine.remove_image(input, a.force, a.platform.as_ref()) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {
                eprintln!("xrun: {}", super::hints::with_hint(e.to_string()));
                failed = true;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for r in &records {
            println!("Untagged: {} ({})", display_ref(r), r.platform);
        }
        removed.extend(records);
    }
    if !removed.is_empty() {
        match engine.reclaim(&removed)? {
            Reclaimed::Deleted(report) => {
                for d in &report.blobs {
                    println!("Deleted: {d}");
                }
            }
            Reclaimed::Deferred(why) => {
                eprintln!("xrun: note: space not reclaimed now ({why}); run `xrun image prune`")
            }
        }
    }
    Ok(if failed { super::EXIT_XRUN_ERROR } else { 0 })
}

/// `xrun image prune`.
pub fn image(g: &Global, a: ImageCommand) -> anyhow::Result<u8> {
    let ImageCommand::Prune { all, force: _ } = a;
    let (removed, report) = Engine::open(&g.root).remove_unused_images(all)?;
    if !removed.is_empty() {
        println!("Deleted Images:");
        for r in &removed {
            match &r.tag {
                Some(t) => println!("untagged: {}:{t}", r.name),
                None => println!("deleted: {}", r.manifest_digest),
            }
        }
    }
    for d in &report.blobs {
        println!("Deleted blob: {d}");
    }
    for d in &report.snapshots {
        println!("Deleted snapshot: {d}");
    }
    println!(
        "Total reclaimed space: {} ({} blobs, {} snapshots)",
        human_size(report.bytes),
        report.blobs.len(),
        report.snapshots.len()
    );
    Ok(0)
}

/// `xrun inspect`.
pub fn inspect(g: &Global, a: InspectArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    // A container first, as `docker inspect` (Docker's ContainerJSON with NetworkSettings).
    if a.platform.is_none()
        && let Ok(rec) = engine.inspect(&a.reference)
    {
        let v = xrun::api::container_json::inspect(&rec, engine.network_settings(&rec));
        println!("{}", serde_json::to_string_pretty(&[v])?);
        return Ok(0);
    }
    let out = engine.inspect_image(&a.reference, a.platform.as_ref())?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// `xrun load`.
pub fn load(g: &Global, a: LoadArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let records = match &a.input {
        Some(path) => engine.load_images(path, a.platform.as_ref())?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                anyhow::bail!(
                    "requested load from stdin, but stdin is a terminal: pipe a tar in or use -i FILE"
                );
            }
            engine.load_images_from(&mut stdin.lock(), a.platform.as_ref())?
        }
    };
    for r in &records {
        println!("Loaded image: {} ({})", display_ref(r), r.platform);
    }
    Ok(0)
}

/// `xrun save`.
pub fn save(g: &Global, a: SaveArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let req = SaveRequest {
        references: a.references,
        platform: a.platform,
        format: a.format,
    };
    match &a.output {
        Some(path) => engine.save_images(&req, path)?,
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!(
                    "cowardly refusing to save to a terminal: use -o FILE or redirect stdout"
                );
            }
            let mut out = std::io::BufWriter::new(stdout.lock());
            engine.save_images_to(&req, &mut out)?;
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(0)
}

/// `xrun tag`.
pub fn tag(g: &Global, a: TagArgs) -> anyhow::Result<u8> {
    Engine::open(&g.root).tag_image(&a.source, &a.target)?;
    Ok(0)
}
