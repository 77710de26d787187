//! The build endpoints: `POST /build` (Docker's classic builder, as the `docker` CLI uses it
//! with `DOCKER_BUILDKIT=0` and docker-py's `images.build`), `POST /build/prune` and
//! `POST /commit`. The context archive, the build and the commit are the engine's
//! ([`crate::engine::Engine::build_archive`], [`crate::engine::Engine::commit`]); this file
//! reads parameters and writes Docker's JSON stream (`{"stream": "Step 1/4 : FROM …"}`, the
//! steps' output, `{"aux": {"ID": …}}`, `Successfully built/tagged`, or `errorDetail`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::engine::{ArchiveBuildRequest, BuildRequest, CommitRequest, Observer};
use crate::reference::familiar_name;
use crate::registry::Progress;

use super::error::ApiError;
use super::images::{body_reader, query_platform, stream_lines};
use super::progress::{JsonProgress, error_line, line};
use super::router::{HandlerResult, Query, Request, Router};
use super::{ApiState, blocking, http};

/// Registers the build endpoints.
pub fn routes(r: &mut Router) {
    r.add(Method::POST, "/build", build);
    r.add(Method::POST, "/build/prune", prune);
    r.add(Method::POST, "/commit", commit);
}

/// A JSON object of strings in a query parameter (`buildargs`, `labels`); `null` values
/// are left out (Docker: "take it from the environment", which a service does not share).
fn string_map(q: &Query, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(raw) = q.get(name).filter(|v| !v.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: BTreeMap<String, Option<String>> = serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid {name} {raw:?}: {e} (a JSON object of strings)"
        ))
    })?;
    Ok(v.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// The engine's build progress as Docker's classic builder stream.
struct StreamObserver {
    tx: mpsc::UnboundedSender<Bytes>,
    quiet: bool,
}

impl StreamObserver {
    fn stream(&self, text: String) {
        let _ = self.tx.send(line(&json!({ "stream": text })));
    }
}

/// `#3 [2/5] RUN x` → `Step 2/5 : RUN x`; `#3 CACHED` → ` ---> Using cache`; `#3 DONE …`
/// → nothing; other lines as they are.
fn docker_step_line(progress: &str) -> Option<String> {
    let rest = match progress.strip_prefix('#') {
        Some(r) => r.split_once(' ').map(|(_, r)| r).unwrap_or(""),
        None => return Some(format!("{progress}\n")),
    };
    if rest == "CACHED" {
        return Some(" ---> Using cache\n".into());
    }
    if rest.starts_with("DONE") {
        return None;
    }
    if let Some(step) = rest.strip_prefix('[')
        && let Some((label, text)) = step.split_once("] ")
    {
        return Some(format!("Step {label} : {text}\n"));
    }
    Some(format!("{rest}\n"))
}

impl Observer for StreamObserver {
    fn pull_progress(&self) -> Box<dyn Progress> {
        if self.quiet {
            Box::new(crate::registry::progress::Silent)
        } else {
            Box::new(JsonProgress::new(self.tx.clone()))
        }
    }
    fn warning(&self, message: &str) {
        if !self.quiet {
            self.stream(format!("[Warning] {message}\n"));
        }
    }
    fn progress(&self, l: &str) {
        if !self.quiet
            && let Some(text) = docker_step_line(l)
        {
            self.stream(text);
        }
    }
    fn build_output(&self, data: &[u8]) {
        if !self.quiet {
            self.stream(String::from_utf8_lossy(data).into_owned());
        }
    }
}

/// `POST /build?t=&dockerfile=&buildargs=&labels=&target=&nocache=&pull=&platform=&q=`:
/// the body is the context as a tar (plain, gzip or zstd).
async fn build(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let q = &r.query;
    if q.get("remote").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "remote build contexts are not supported by xrun (send the context as a tar)",
        ));
    }
    if q.get("version") == Some("2") {
        return Err(ApiError::bad_request(
            "the BuildKit builder (version=2) is not supported by xrun serve: use the classic builder (DOCKER_BUILDKIT=0)",
        ));
    }
    let quiet = q.bool("q", false)?;
    // Accepted: xrun never keeps intermediate containers.
    q.bool("rm", true)?;
    q.bool("forcerm", false)?;
    let cache_from = q.get("cachefrom").filter(|v| !v.is_empty() && *v != "[]");
    let pull = match q.get("pull") {
        // Docker also takes a policy name here.
        Some(v) if !v.is_empty() && !matches!(v.to_ascii_lowercase().as_str(), "0" | "false") => {
            true
        }
        _ => false,
    };
    let request = BuildRequest {
        tags: q.all("t").into_iter().map(str::to_string).collect(),
        platforms: query_platform(q)?
            .map(|p| vec![p.normalize()])
            .unwrap_or_default(),
        build_args: string_map(q, "buildargs")?,
        labels: string_map(q, "labels")?,
        target: q
            .get("target")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        no_cache: q.bool("nocache", false)?,
        pull,
        ..Default::default()
    };
    for t in &request.tags {
        crate::reference::ImageRef::parse(t)
            .map_err(|e| ApiError::bad_request(format!("invalid tag {t:?}: {e}")))?;
    }
    let req = ArchiveBuildRequest {
        request,
        dockerfile: q
            .get("dockerfile")
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        ..Default::default()
    };
    let tags = req.request.tags.clone();
    let cache_note =
        cache_from.map(|c| format!("cachefrom {c} is ignored: xrun uses its own build cache\n"));
    let mut reader = body_reader(&mut r)?;
    let engine = s.engine.clone();
    stream_lines(
        move |tx| {
            let observer = StreamObserver {
                tx: tx.clone(),
                quiet,
            };
            if let Some(note) = cache_note
                && !quiet
            {
                observer.stream(note);
            }
            let out = engine
                .build_archive(&req, &mut reader, &observer)
                .map_err(ApiError::from)?;
            let id = out.digest.to_string();
            let _ = tx.send(line(&json!({"aux": {"ID": id}})));
            if quiet {
                let _ = tx.send(line(&json!({ "stream": format!("{id}\n") })));
            } else {
                observer.stream(format!("Successfully built {}\n", out.digest.short()));
                for t in &tags {
                    observer.stream(format!("Successfully tagged {}\n", tagged(t)));
                }
            }
            Ok(())
        },
        |e| Some(error_line(&e.message)),
    )
    .await
}

/// A `-t` value as Docker reports it (`x:latest`).
fn tagged(t: &str) -> String {
    match crate::reference::ImageRef::parse(t) {
        Ok(r) => format!(
            "{}:{}",
            familiar_name(&r.name()),
            r.tag.as_deref().unwrap_or("latest")
        ),
        Err(_) => t.to_string(),
    }
}

/// `POST /build/prune`: removes the build cache.
async fn prune(s: Arc<ApiState>, _r: Request) -> HandlerResult {
    let engine = s.engine.clone();
    let out = blocking(move || Ok(engine.prune_build_cache()?)).await?;
    let v = json!({
        "CachesDeleted": if out.entries.is_empty() { Value::Null } else { json!(out.entries) },
        "SpaceReclaimed": out.bytes,
    });
    Ok(http::json(StatusCode::OK, &v))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: 201 with the new
/// image's `Id`. The body (a container config) is not used: `changes` set the config.
async fn commit(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let q = &r.query;
    let container = q
        .get("container")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("container is required"))?
        .to_string();
    let repo = q.get("repo").filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::bad_request("repo is required (xrun records committed images under a name)")
    })?;
    let reference = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    crate::reference::ImageRef::parse(&reference)
        .map_err(|e| ApiError::bad_request(format!("invalid reference {reference:?}: {e}")))?;
    // Accepted: the writable layer is read as it is (xrun does not pause for a commit).
    q.bool("pause", true)?;
    let changes: Vec<String> = q
        .all("changes")
        .iter()
        .flat_map(|c| c.lines())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let req = CommitRequest {
        container,
        reference,
        changes,
        message: q
            .get("comment")
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        author: q
            .get("author")
            .filter(|v| !v.is_empty())
            .map(str::to_string),
    };
    let engine = s.engine.clone();
    let rec = blocking(move || Ok(engine.commit(&req)?)).await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": rec.manifest_digest}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_become_dockers_steps() {
        assert_eq!(
            docker_step_line("#2 [2/4] COPY a /a").as_deref(),
            Some("Step 2/4 : COPY a /a\n")
        );
        assert_eq!(
            docker_step_line("#3 CACHED").as_deref(),
            Some(" ---> Using cache\n")
        );
        assert_eq!(docker_step_line("#3 DONE 0.1s"), None);
        let q = Query::parse(Some("buildargs=%7B%22A%22%3A%22x%22%2C%22B%22%3Anull%7D"));
        let m = string_map(&q, "buildargs").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m["A"], "x");
        assert!(string_map(&Query::parse(Some("labels=%5B1%5D")), "labels").is_err());
    }
}
