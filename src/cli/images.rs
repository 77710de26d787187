//! `xrun images`, `rmi`, `image prune`, `inspect`, `load`, `save`. Owner: the store stage.

use std::path::PathBuf;

use anyhow::{Context, bail};
use xrun::platform::Platform;
use xrun::reference::ImageRef;
use xrun::store::{ImageRecord, Store, StoreError};

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
    /// Remove blobs and snapshots no image references (and no container uses).
    Prune {
        /// Accepted for Docker compatibility (xrun never asks).
        #[arg(short, long)]
        force: bool,
    },
}

/// `xrun inspect` arguments.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Image reference.
    pub reference: String,
    /// Platform to select when the image has several.
    #[arg(long)]
    pub platform: Option<Platform>,
}

/// `xrun load` arguments.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// OCI image layout directory or tar.
    #[arg(short = 'i', long = "input")]
    pub input: PathBuf,
    /// Import only the best match for this platform from an index (default: all platforms).
    #[arg(long)]
    pub platform: Option<Platform>,
}

/// `xrun save` arguments.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Image reference.
    pub reference: String,
    /// Output tar.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Only this platform (default: every platform of the reference).
    #[arg(long)]
    pub platform: Option<Platform>,
}

fn open(g: &Global) -> anyhow::Result<Store> {
    Store::open(&g.root).with_context(|| format!("opening the store at {}", g.root.display()))
}

/// Every record `input` names (reference or image ID), restricted to `platform` when given.
fn matching(
    store: &Store,
    input: &str,
    platform: Option<&Platform>,
) -> anyhow::Result<Vec<ImageRecord>> {
    let mut found = match ImageRef::parse(input) {
        Ok(r) => store.find_images(&r.name(), &r.tag_or_digest())?,
        Err(_) => Vec::new(),
    };
    if found.is_empty() {
        found = store.find_by_id(input)?;
    }
    if let Some(p) = platform {
        let p = p.normalize();
        found.retain(|r| {
            let have = r.platform.normalize();
            have.os == p.os
                && have.architecture == p.architecture
                && (p.variant.is_none() || have.variant == p.variant)
        });
    }
    Ok(found)
}

/// The one record `input` names on `platform` (or the host's when several).
fn resolve(store: &Store, input: &str, platform: Option<&Platform>) -> anyhow::Result<ImageRecord> {
    if let Ok(r) = ImageRef::parse(input)
        && let Some(rec) = store.find_image(&r.name(), &r.tag_or_digest(), platform)?
    {
        return Ok(rec);
    }
    let by_id = matching(store, input, platform)?;
    if by_id.len() == 1 {
        return Ok(by_id.into_iter().next().unwrap_or_else(|| unreachable!()));
    }
    let others = matching(store, input, None)?;
    match (platform, others.is_empty()) {
        (Some(p), false) => {
            let have: Vec<String> = others.iter().map(|r| r.platform.to_string()).collect();
            bail!(
                "no such image: {input} for platform {p} (the store has it for {})",
                have.join(", ")
            )
        }
        (None, false) => {
            let have: Vec<String> = others.iter().map(|r| r.platform.to_string()).collect();
            bail!(
                "no such image: {input} for this host (the store has it for {}; use --platform)",
                have.join(", ")
            )
        }
        _ => bail!("no such image: {input}"),
    }
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
    let store = open(g)?;
    let mut records = store.list_images()?;
    if let Some(filter) = &a.reference {
        let r = ImageRef::parse(filter)?;
        let tag_given = filter
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':') || last.contains('@'));
        records.retain(|rec| {
            rec.name == r.name() && (!tag_given || xrun_names(rec, &r.tag_or_digest()))
        });
    }
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

/// Whether the record is named by a tag or digest.
fn xrun_names(r: &ImageRecord, tag_or_digest: &str) -> bool {
    match tag_or_digest.parse::<xrun::digest::Digest>() {
        Ok(d) => r.manifest_digest == d || r.index_digest.as_ref() == Some(&d),
        Err(_) => r.tag.as_deref() == Some(tag_or_digest),
    }
}

/// `xrun rmi`.
pub fn rmi(g: &Global, a: RmiArgs) -> anyhow::Result<u8> {
    let store = open(g)?;
    let leases = store.snapshot_leases()?;
    let mut failed = false;
    let mut removed = Vec::new();
    for input in &a.references {
        let records = matching(&store, input, a.platform.as_ref())?;
        if records.is_empty() {
            let what = match &a.platform {
                Some(p) => format!("{input} for platform {p}"),
                None => input.clone(),
            };
            eprintln!("xrun: no such image: {what}");
            failed = true;
            continue;
        }
        // An image is in use when a container's lease covers all its layers.
        let users: Vec<&str> = leases
            .iter()
            .filter(|(_, ids)| {
                records
                    .iter()
                    .any(|r| r.layers.iter().all(|l| ids.contains(&l.diff_id)))
            })
            .map(|(h, _)| h.as_str())
            .collect();
        if !users.is_empty() && !a.force {
            eprintln!(
                "xrun: {}",
                StoreError::InUse {
                    image: input.clone(),
                    holders: format!("container {} (use -f to untag anyway)", users.join(", ")),
                }
            );
            failed = true;
            continue;
        }
        store.remove_records(&records)?;
        for r in &records {
            println!("Untagged: {} ({})", display_ref(r), r.platform);
        }
        removed.extend(records);
    }
    if !removed.is_empty() {
        match store.prune_unreferenced(&removed) {
            Ok(report) => {
                for d in &report.blobs {
                    println!("Deleted: {d}");
                }
            }
            Err(StoreError::Busy(why)) => {
                eprintln!("xrun: note: space not reclaimed now ({why}); run `xrun image prune`")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if failed { super::EXIT_XRUN_ERROR } else { 0 })
}

/// `xrun image prune`.
pub fn image(g: &Global, a: ImageCommand) -> anyhow::Result<u8> {
    let ImageCommand::Prune { force: _ } = a;
    let store = open(g)?;
    let report = store.prune()?;
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
    let store = open(g)?;
    let record = resolve(&store, &a.reference, a.platform.as_ref())?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&record.manifest_digest)?)
            .context("parsing the manifest")?;
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&record.config_digest)?)
            .context("parsing the config")?;
    let out = serde_json::json!({
        "record": record,
        "manifest": manifest,
        "config": config,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// `xrun load`.
pub fn load(g: &Global, a: LoadArgs) -> anyhow::Result<u8> {
    let store = open(g)?;
    let records = store
        .load_layout(&a.input, a.platform.as_ref())
        .map_err(|e| match e {
            // Already names the layout: no second copy of the path.
            e @ StoreError::BadLayout { .. } => anyhow::Error::new(e),
            e => anyhow::Error::new(e).context(format!("loading {}", a.input.display())),
        })?;
    for r in &records {
        println!("Loaded image: {} ({})", display_ref(r), r.platform);
    }
    Ok(0)
}

/// `xrun save`.
pub fn save(g: &Global, a: SaveArgs) -> anyhow::Result<u8> {
    let store = open(g)?;
    let records = match &a.platform {
        Some(p) => vec![resolve(&store, &a.reference, Some(p))?],
        None => {
            let all = matching(&store, &a.reference, None)?;
            if all.is_empty() {
                bail!("no such image: {}", a.reference);
            }
            all
        }
    };
    store
        .save_layout(&records, &a.output)
        .with_context(|| format!("saving to {}", a.output.display()))?;
    Ok(0)
}
