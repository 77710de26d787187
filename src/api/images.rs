//! The image endpoints: create (pull, with Docker's JSON progress stream), list, inspect,
//! history, tag, remove, prune, get (`docker save`) and load (`docker load`). Every one is an
//! engine call; this file only reads parameters and shapes Docker's JSON.
//!
//! Image IDs are manifest digests (`sha256:…`), as `xrun images` shows them and as Docker's
//! containerd image store does; the API lists one entry per stored manifest, so each platform
//! of a multi-platform image is its own entry (its `RepoTags` shared).

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{
    ArchiveFormat, EngineError, ImageFilters, ListedImage, PullRequest, PushRequest, SaveRequest,
    unix_time,
};
use crate::platform::Platform;
use crate::reference::{ImageRef, familiar_name};
use crate::registry::Credentials;
use crate::store::ImageRecord;

use super::error::ApiError;
use super::progress::{JsonProgress, JsonPushProgress, error_line, line};
use super::router::{BODY_TIMEOUT, HandlerResult, Query, Request, Router};
use super::{ApiState, blocking, http};

/// Registers the image endpoints (and `/xrun/check`).
pub fn routes(r: &mut Router) {
    r.add(Method::POST, "/images/create", create);
    r.add(Method::GET, "/images/json", list);
    r.add(Method::POST, "/images/load", load);
    r.add(Method::GET, "/images/get", get_many);
    r.add(Method::POST, "/images/prune", prune);
    r.add(Method::GET, "/images/search", search);
    r.add(Method::GET, "/images/{name*}/json", inspect);
    r.add(Method::GET, "/images/{name*}/history", history);
    r.add(Method::GET, "/images/{name*}/get", get_one);
    r.add(Method::POST, "/images/{name*}/tag", tag);
    r.add(Method::POST, "/images/{name*}/push", push);
    r.add(Method::DELETE, "/images/{name*}", remove);
    super::check::routes(r);
}

/// `platform` as Docker clients send it: `os/arch[/variant]`, or (API 1.48+) an OCI platform
/// as JSON. Empty is none.
pub fn query_platform(q: &Query) -> Result<Option<Platform>, ApiError> {
    let Some(v) = q.get("platform").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let parsed = if v.starts_with('{') {
        serde_json::from_str::<Platform>(v).map_err(|e| e.to_string())
    } else {
        v.parse::<Platform>().map_err(|e| e.to_string())
    };
    parsed
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid platform {v:?}: {e}")))
}

/// `name:tag` as Docker shows it (`busybox:latest`); `None` for an untagged record.
fn repo_tag(r: &ImageRecord) -> Option<String> {
    r.tag
        .as_ref()
        .map(|t| format!("{}:{t}", familiar_name(&r.name)))
}

/// `name@digest` (the digest the registry served: the index's, else the manifest's).
fn repo_digest(r: &ImageRecord) -> String {
    let d = r.index_digest.as_ref().unwrap_or(&r.manifest_digest);
    format!("{}@{d}", familiar_name(&r.name))
}

/// The sorted, distinct values of `f` over `records`.
fn distinct(records: &[ImageRecord], f: impl Fn(&ImageRecord) -> Option<String>) -> Vec<String> {
    records
        .iter()
        .filter_map(f)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The credentials in `X-Registry-Auth` (base64url JSON `{"username", "password"}`), if any.
fn registry_auth(r: &Request) -> Option<Credentials> {
    let raw = r.headers().get("X-Registry-Auth")?.to_str().ok()?.trim();
    let config = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    let bytes = [base64::alphabet::URL_SAFE, base64::alphabet::STANDARD]
        .iter()
        .find_map(|a| {
            base64::engine::GeneralPurpose::new(a, config)
                .decode(raw)
                .ok()
        })?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let username = v["username"].as_str().filter(|u| !u.is_empty())?;
    Some(Credentials {
        username: username.to_string(),
        password: v["password"].as_str().unwrap_or_default().to_string(),
    })
}

/// Runs `work` on a blocking thread that streams lines to a channel, and answers once the
/// first line arrives (200, streaming the rest, then `end`'s line when the work fails
/// afterwards) or once the work ends without a line (its error as the status).
pub(super) async fn stream_lines<F>(work: F, end: fn(&ApiError) -> Option<Bytes>) -> HandlerResult
where
    F: FnOnce(mpsc::UnboundedSender<Bytes>) -> Result<(), ApiError> + Send + 'static,
{
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<Bytes>();
    let task = tokio::task::spawn_blocking(move || work(line_tx));
    let outcome = |r: Result<Result<(), ApiError>, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("internal error: {e}"))),
    };
    let Some(first) = line_rx.recv().await else {
        outcome(task.await)?;
        return Ok(http::with_type(
            StatusCode::OK,
            http::empty(),
            "application/json",
        ));
    };
    let (tx, body) = http::channel(64);
    tokio::spawn(async move {
        let mut client = true;
        let mut next = Some(first);
        while let Some(l) = next {
            // The client may leave; the work still runs to its end.
            client = client && tx.send(l).await.is_ok();
            next = line_rx.recv().await;
        }
        if let Err(e) = outcome(task.await)
            && let Some(l) = end(&e)
            && client
        {
            let _ = tx.send(l).await;
        }
    });
    Ok(http::with_type(StatusCode::OK, body, "application/json"))
}

/// `POST /images/create?fromImage=&tag=&platform=`: pulls; Docker's JSON progress stream.
async fn create(s: Arc<ApiState>, r: Request) -> HandlerResult {
    if r.query.get("fromSrc").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::not_implemented(
            "importing a root file system tarball (fromSrc) is not supported: use docker load",
        ));
    }
    let from = r
        .query
        .get("fromImage")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage is required (the image to pull)"))?;
    let mut reference = from.to_string();
    if let Some(tag) = r.query.get("tag").filter(|t| !t.is_empty()) {
        let last = from.rsplit('/').next().unwrap_or(from);
        if !from.contains('@') && !last.contains(':') {
            let sep = if tag.contains(':') { '@' } else { ':' };
            reference = format!("{from}{sep}{tag}");
        }
    }
    ImageRef::parse(&reference).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let req = PullRequest {
        reference,
        platform: query_platform(&r.query)?,
        credentials: registry_auth(&r),
        ..Default::default()
    };
    let engine = s.engine.clone();
    stream_lines(
        move |tx| {
            let progress = JsonProgress::new(tx);
            engine.pull(&req, &progress).map(|_| ()).map_err(Into::into)
        },
        |e| Some(error_line(&e.message)),
    )
    .await
}

/// Docker's summary of one image (one manifest) for `GET /images/json`.
pub(super) fn summary(image: &ListedImage) -> Value {
    let records = &image.records;
    let r = &records[0];
    let config = &image.config;
    json!({
        "Id": r.manifest_digest,
        "ParentId": "",
        "RepoTags": distinct(records, repo_tag),
        "RepoDigests": distinct(records, |r| Some(repo_digest(r))),
        "Created": unix_time(image.created()),
        "Size": r.size,
        "SharedSize": -1,
        "Labels": config["config"]["Labels"].as_object().cloned().unwrap_or_default(),
        "Containers": -1,
        "Descriptor": {"digest": r.manifest_digest, "platform": r.platform},
    })
}

/// The `filters` query (`{"name": ["value", …]}`, or the old `{"name": {"value": true}}`).
fn filters(q: &Query) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = q.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(Vec::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
    let mut out = Vec::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        match vals {
            Value::Array(a) => out.extend(
                a.iter()
                    .filter_map(|x| x.as_str())
                    .map(|x| (k.clone(), x.to_string())),
            ),
            Value::Object(o) => out.extend(o.keys().map(|x| (k.clone(), x.clone()))),
            _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
        }
    }
    Ok(out)
}

/// `GET /images/json?filters=&all=`: one entry per stored manifest.
async fn list(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let mut want = ImageFilters::default();
    for (k, v) in filters(&r.query)? {
        match k.as_str() {
            "reference" => want.references.push(v),
            "label" => want.labels.push(v),
            "dangling" => {
                want.dangling = Some(match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter dangling={v:?} (use true or false)"
                        )));
                    }
                })
            }
            "before" => want.before = Some(v),
            "since" => want.since = Some(v),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter {k:?} (xrun supports reference, dangling, label, before, since)"
                )));
            }
        }
    }
    let engine = s.engine.clone();
    let images = blocking(move || Ok(engine.list_images_filtered(&want)?)).await?;
    let out: Vec<Value> = images.iter().map(summary).collect();
    Ok(http::json(StatusCode::OK, &out))
}

/// `GET /images/{name}/json[?platform=]`: Docker's image inspect, plus `Xrun` (the platform
/// and digests).
async fn inspect(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let name = r.param("name").to_string();
    let platform = query_platform(&r.query)?;
    let engine = s.engine.clone();
    let v = blocking(move || {
        let (rec, names) = engine.find_image(&name, platform.as_ref())?;
        let config = engine.image_config(&rec)?;
        let p = &rec.platform;
        let mut v = json!({
            "Id": rec.manifest_digest,
            "RepoTags": distinct(&names, repo_tag),
            "RepoDigests": distinct(&names, |r| Some(repo_digest(r))),
            "Parent": "",
            "Comment": config["comment"].as_str().unwrap_or(""),
            "Created": config["created"].as_str().unwrap_or(&rec.created),
            "DockerVersion": "",
            "Author": config["author"].as_str().unwrap_or(""),
            "Config": config["config"].clone(),
            "Architecture": p.architecture,
            "Os": p.os,
            "Size": rec.size,
            "GraphDriver": {"Name": "overlay", "Data": null},
            "RootFS": {
                "Type": "layers",
                "Layers": rec.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
            "Metadata": {"LastTagTime": rec.created},
            "Descriptor": {"digest": rec.manifest_digest, "platform": p},
            "Xrun": {
                "Platform": p.to_string(),
                "Name": rec.name,
                "Tag": rec.tag,
                "ManifestDigest": rec.manifest_digest,
                "IndexDigest": rec.index_digest,
                "ConfigDigest": rec.config_digest,
            },
        });
        if let Some(variant) = &p.variant {
            v["Variant"] = json!(variant);
        }
        Ok(v)
    })
    .await?;
    Ok(http::json(StatusCode::OK, &v))
}

/// `GET /images/{name}/history`: the config's history, newest first.
async fn history(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let name = r.param("name").to_string();
    let platform = query_platform(&r.query)?;
    let engine = s.engine.clone();
    let v = blocking(move || {
        let (rec, names) = engine.find_image(&name, platform.as_ref())?;
        let config = engine.image_config(&rec)?;
        let entries = config["history"].as_array().cloned().unwrap_or_default();
        let mut layers = rec.layers.iter();
        let mut out: Vec<Value> = entries
            .iter()
            .map(|h| {
                let empty = h["empty_layer"].as_bool().unwrap_or(false);
                let size = if empty {
                    0
                } else {
                    layers.next().map(|l| l.size).unwrap_or(0)
                };
                json!({
                    "Id": "<missing>",
                    "Created": unix_time(h["created"].as_str().unwrap_or("")),
                    "CreatedBy": h["created_by"].as_str().unwrap_or(""),
                    "Tags": null,
                    "Size": size,
                    "Comment": h["comment"].as_str().unwrap_or(""),
                })
            })
            .collect();
        out.reverse();
        if let Some(top) = out.first_mut() {
            top["Id"] = json!(rec.manifest_digest);
            top["Tags"] = json!(distinct(&names, repo_tag));
        }
        Ok(out)
    })
    .await?;
    Ok(http::json(StatusCode::OK, &v))
}

/// `POST /images/{name}/tag?repo=&tag=`: 201.
async fn tag(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let name = r.param("name").to_string();
    let repo = r
        .query
        .get("repo")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("repo is required (the new name)"))?;
    let target = match r.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let engine = s.engine.clone();
    blocking(move || Ok(engine.tag_image(&name, &target)?)).await?;
    Ok(http::no_content(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=&noprune=`: untags; deletes what nothing else uses.
async fn remove(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let name = r.param("name").to_string();
    let force = r.query.bool("force", false)?;
    let noprune = r.query.bool("noprune", false)?;
    let platform = query_platform(&r.query)?;
    let engine = s.engine.clone();
    let out = blocking(move || {
        // An ID shared by several names is only removed by force (as Docker).
        if !force && engine.list_images(Some(&name)).map(|v| v.is_empty()).unwrap_or(true) {
            let (rec, names) = engine.find_image(&name, platform.as_ref())?;
            if distinct(&names, |r| Some(format!("{}:{:?}", r.name, r.tag))).len() > 1 {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    rec.manifest_digest.short()
                )));
            }
        }
        let removed = engine.remove_image(&name, force, platform.as_ref())?;
        let mut out: Vec<Value> = distinct(&removed, |r| Some(repo_tag(r).unwrap_or_else(|| repo_digest(r))))
            .into_iter()
            .map(|t| json!({ "Untagged": t }))
            .collect();
        let left = engine.list_images(None)?;
        let gone = distinct(&removed, |r| {
            (!left.iter().any(|l| l.manifest_digest == r.manifest_digest))
                .then(|| r.manifest_digest.to_string())
        });
        out.extend(gone.into_iter().map(|d| json!({ "Deleted": d })));
        if !noprune {
            engine.reclaim(&removed)?;
        }
        Ok(out)
    })
    .await?;
    Ok(http::json(StatusCode::OK, &out))
}

/// `POST /images/prune?filters=`: removes unused images (untagged ones; all unused with
/// `dangling=false`) and the blobs nothing uses any more.
async fn prune(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let mut all = false;
    for (k, v) in filters(&r.query)? {
        match (k.as_str(), v.as_str()) {
            ("dangling", "false" | "0") => all = true,
            ("dangling", "true" | "1") => all = false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter {k}={v} (xrun supports dangling=true|false)"
                )));
            }
        }
    }
    let engine = s.engine.clone();
    let out = blocking(move || {
        let (removed, report) = engine.remove_unused_images(all)?;
        let mut deleted: Vec<Value> = distinct(&removed, repo_tag)
            .into_iter()
            .map(|t| json!({ "Untagged": t }))
            .collect();
        deleted.extend(
            distinct(&removed, |r| Some(r.manifest_digest.to_string()))
                .into_iter()
                .map(|d| json!({ "Deleted": d })),
        );
        Ok(json!({
            "ImagesDeleted": if deleted.is_empty() { Value::Null } else { deleted.into() },
            "SpaceReclaimed": report.bytes,
        }))
    })
    .await?;
    Ok(http::json(StatusCode::OK, &out))
}

/// A writer that sends what it gets to a response body in 256 KiB chunks (blocking sends);
/// fails with `BrokenPipe` once the client is gone.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 256 * 1024;

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Streams the images `names` as a `docker save` tar. Unknown images are a 404 before any
/// byte; a failure after the first byte aborts the response (the client sees a broken tar,
/// never a short one that looks whole).
async fn save(s: Arc<ApiState>, names: Vec<String>, platform: Option<Platform>) -> HandlerResult {
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "names is required (the images to save)",
        ));
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let (done_tx, done_rx) = oneshot::channel::<Result<(), ApiError>>();
    let engine = s.engine.clone();
    let req = SaveRequest {
        references: names,
        platform,
        format: ArchiveFormat::Docker,
    };
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(ChannelWriter::CHUNK),
        };
        let result = engine
            .save_images_to(&req, &mut w)
            .map_err(ApiError::from)
            .and_then(|()| io::Write::flush(&mut w).map_err(|e| ApiError::internal(e.to_string())));
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(io::Error::other(e.message.clone())));
        }
        let _ = done_tx.send(result);
    });
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(_)) | None => {
            return match done_rx.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Ok(http::with_type(
                    StatusCode::OK,
                    http::empty(),
                    "application/x-tar",
                )),
                Err(_) => Err(ApiError::internal("internal error: the save stopped")),
            };
        }
    };
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        let item = match first {
            Some(chunk) => Some(Ok(chunk)),
            None => rx.recv().await,
        };
        item.map(|i| (i.map(Frame::data), (None, rx)))
    });
    Ok(http::with_type(
        StatusCode::OK,
        StreamBody::new(stream).boxed(),
        "application/x-tar",
    ))
}

/// `GET /images/get?names=…[&platform=]`.
async fn get_many(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let names = r
        .query
        .all("names")
        .into_iter()
        .map(str::to_string)
        .collect();
    let platform = query_platform(&r.query)?;
    save(s, names, platform).await
}

/// `GET /images/{name}/get[?platform=]`.
async fn get_one(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let platform = query_platform(&r.query)?;
    save(s, vec![r.param("name").to_string()], platform).await
}

/// A blocking reader over a request body fed by an async pump.
pub(super) struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    cur: Bytes,
}

impl io::Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// The request body as a blocking reader (for work on a blocking thread), fed by an async
/// pump.
pub(super) fn body_reader(r: &mut Request) -> Result<BodyReader, ApiError> {
    let Some(mut body) = r.body.take() else {
        return Err(ApiError::internal("the request body was already read"));
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    // Each piece of the body must arrive within BODY_TIMEOUT (slow clients are cut off).
    tokio::spawn(async move {
        loop {
            let item = match tokio::time::timeout(BODY_TIMEOUT, body.frame()).await {
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body stalled",
                )),
                Ok(None) => break,
                Ok(Some(Err(e))) => Err(io::Error::other(format!("reading the request body: {e}"))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue,
                },
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    Ok(BodyReader {
        rx,
        cur: Bytes::new(),
    })
}

/// `POST /images/load[?quiet=&platform=]`: the body is a `docker save` tar (or an OCI layout
/// tar); the answer lists what was loaded as Docker's JSON stream.
async fn load(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let platform = query_platform(&r.query)?;
    let reader = body_reader(&mut r)?;
    let engine = s.engine.clone();
    let records = blocking(move || {
        let mut reader = reader;
        engine
            .load_images_from(&mut reader, platform.as_ref())
            .map_err(|e| {
                let mut e = ApiError::from(e);
                if e.status == StatusCode::INTERNAL_SERVER_ERROR {
                    // A body that is not an image archive is the client's mistake.
                    e.status = StatusCode::BAD_REQUEST;
                }
                e
            })
    })
    .await?;
    let mut out = Vec::new();
    for t in distinct(&records, |r| {
        Some(repo_tag(r).unwrap_or_else(|| format!("ID: {}", r.manifest_digest)))
    }) {
        out.extend_from_slice(&line(&json!({"stream": format!("Loaded image{}{t}\n", if t.starts_with("ID: ") { " " } else { ": " })})));
    }
    Ok(http::with_type(
        StatusCode::OK,
        http::full(out),
        "application/json",
    ))
}

/// `GET /images/search`: refused.
async fn search(_s: Arc<ApiState>, _r: Request) -> HandlerResult {
    Err(ApiError::not_implemented(
        "searching registries is not supported by xrun",
    ))
}

/// `POST /images/{name}/push?tag=&platform=`: pushes (`X-Registry-Auth` for credentials);
/// Docker's JSON progress stream. Without `tag`, every tag of the repository in the store.
async fn push(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let name = r.param("name").to_string();
    let tag = r
        .query
        .get("tag")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let platform = query_platform(&r.query)?;
    let credentials = registry_auth(&r);
    let reference = match &tag {
        Some(t) => format!("{name}:{t}"),
        None => name.clone(),
    };
    let image = ImageRef::parse(&reference).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let engine = s.engine.clone();
    let tags: Vec<String> = match tag {
        Some(t) => vec![t],
        None => {
            let listed = blocking({
                let engine = engine.clone();
                let repo = image.name();
                move || Ok(engine.list_images(Some(&repo))?)
            })
            .await?;
            let tags: BTreeSet<String> = listed
                .into_iter()
                .filter(|r| r.name == image.name())
                .filter_map(|r| r.tag)
                .collect();
            if tags.is_empty() {
                return Err(ApiError::from(EngineError::NotFound(format!(
                    "an image does not exist locally with the tag {name}"
                ))));
            }
            tags.into_iter().collect()
        }
    };
    let repo = image.name();
    stream_lines(
        move |tx| {
            let progress = JsonPushProgress::new(tx);
            for t in tags {
                let req = PushRequest {
                    reference: format!("{repo}:{t}"),
                    platform: platform.clone(),
                    credentials: credentials.clone(),
                    ..Default::default()
                };
                engine.push(&req, &progress)?;
            }
            Ok(())
        },
        |e| Some(error_line(&e.message)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_come_as_strings_or_json() {
        let q = Query::parse(Some("platform=linux%2Farm64"));
        assert_eq!(query_platform(&q).unwrap().unwrap().architecture, "arm64");
        let q = Query::parse(Some(
            "platform=%7B%22os%22%3A%22linux%22%2C%22architecture%22%3A%22arm%22%2C%22variant%22%3A%22v7%22%7D",
        ));
        let p = query_platform(&q).unwrap().unwrap();
        assert_eq!(
            (p.architecture.as_str(), p.variant.as_deref()),
            ("arm", Some("v7"))
        );
        assert!(query_platform(&Query::parse(Some("platform=%7Bx"))).is_err());
        assert!(
            query_platform(&Query::parse(Some("platform=")))
                .unwrap()
                .is_none()
        );
    }
}
