//! The container endpoints (`/containers/…`): create, inspect, list, start, wait, resize,
//! kill, stop, restart, remove, prune, top. Attach and logs are in `attach.rs` and
//! `logs.rs`. Every operation is an engine call, off the async threads.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::engine::{AttachEvent, AttachRequest, CreateOutcome, Unobserved};
use crate::runtime::{ContainerRecord, RuntimeError, Status};

use super::container_json::{self, CreateBody, Filters};
use super::error::ApiError;
use super::router::{HandlerResult, Request, Router};
use super::{ApiState, blocking, http};

/// Registers the container endpoints.
pub fn routes(r: &mut Router) {
    r.add(Method::POST, "/containers/create", create);
    r.add(Method::GET, "/containers/json", list);
    r.add(Method::POST, "/containers/prune", prune);
    r.add(Method::GET, "/containers/{id}/json", inspect);
    r.add(Method::POST, "/containers/{id}/start", start);
    r.add(Method::POST, "/containers/{id}/wait", wait);
    r.add(Method::POST, "/containers/{id}/resize", resize);
    r.add(Method::POST, "/containers/{id}/kill", kill);
    r.add(Method::POST, "/containers/{id}/stop", stop);
    r.add(Method::POST, "/containers/{id}/restart", restart);
    r.add(Method::DELETE, "/containers/{id}", remove);
    r.add(Method::GET, "/containers/{id}/top", top);
    r.add(Method::GET, "/containers/{id}/stats", super::stats::stats);
    r.add(
        Method::POST,
        "/containers/{id}/attach",
        super::attach::attach,
    );
    r.add(Method::GET, "/containers/{id}/logs", super::logs::logs);
    for (m, p) in [
        (Method::POST, "/containers/{id}/pause"),
        (Method::POST, "/containers/{id}/unpause"),
        (Method::POST, "/containers/{id}/rename"),
        (Method::POST, "/containers/{id}/update"),
        (Method::GET, "/containers/{id}/export"),
        (Method::GET, "/containers/{id}/changes"),
        (Method::GET, "/containers/{id}/archive"),
        (Method::PUT, "/containers/{id}/archive"),
        (Method::HEAD, "/containers/{id}/archive"),
        (Method::POST, "/containers/{id}/attach/ws"),
        (Method::GET, "/containers/{id}/attach/ws"),
    ] {
        r.add(m, p, refused);
    }
}

async fn refused(_s: Arc<ApiState>, r: Request) -> HandlerResult {
    Err(ApiError::not_implemented(format!(
        "{} {} is not supported by xrun (see docs/api.md)",
        r.parts.method,
        r.parts.uri.path()
    )))
}

/// The record of container `key`, or Docker's 404.
pub(super) async fn find(s: &Arc<ApiState>, key: &str) -> Result<ContainerRecord, ApiError> {
    let s = s.clone();
    let key = key.to_string();
    blocking(move || s.engine.inspect(&key).map_err(not_found_or)).await
}

/// Engine errors, with Docker's wording for a missing container.
pub(super) fn not_found_or(e: crate::engine::EngineError) -> ApiError {
    match e {
        crate::engine::EngineError::Runtime(RuntimeError::NoSuchContainer(k)) => {
            ApiError::not_found(format!("No such container: {k}"))
        }
        e => e.into(),
    }
}

async fn create(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let body: CreateBody = r.json().await?;
    let image = body.image.clone().unwrap_or_default();
    let spec = body.into_spec(
        r.query.get("name").map(String::from),
        r.query.get("platform"),
    )?;
    let platform = spec.platform.clone();
    let st = s.clone();
    let outcome = blocking(move || {
        st.engine
            .create(spec, &Unobserved)
            .map_err(|e| match e.kind() {
                crate::engine::ErrorKind::NotFound
                    if !matches!(e, crate::engine::EngineError::Network(_)) =>
                {
                    ApiError::not_found(match &platform {
                        Some(p) => format!("No such image: {image} (platform {p})"),
                        None => format!("No such image: {image}"),
                    })
                }
                // An unknown network: 400, not 404 (a 404 makes the docker CLI pull the
                // image and try again; create documents 404 for the image only).
                crate::engine::ErrorKind::NotFound => ApiError::bad_request(e.to_string()),
                _ => e.into(),
            })
    })
    .await?;
    match outcome {
        CreateOutcome::Created(c) => Ok(http::json(
            StatusCode::CREATED,
            &json!({ "Id": c.id, "Warnings": c.notices }),
        )),
        CreateOutcome::DryRun(_) => Err(ApiError::internal("a dry run was not asked for")),
    }
}

async fn inspect(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let rec = find(&s, r.param("id")).await?;
    Ok(http::json(
        StatusCode::OK,
        &container_json::inspect(&rec, s.engine.network_settings(&rec)),
    ))
}

async fn list(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let all = r.query.bool("all", false)?;
    let limit = r.query.int("limit")?.filter(|l| *l > 0);
    let filters = Filters::parse(r.query.get("filters"))?;
    let st = s.clone();
    let mut recs = blocking(move || st.engine.list().map_err(ApiError::from)).await?;
    recs.sort_by(|a, b| b.created.cmp(&a.created));
    let mut out = Vec::new();
    for rec in &recs {
        if !all && limit.is_none() && !rec.is_running() {
            continue;
        }
        if !filters.matches(rec) {
            continue;
        }
        out.push(container_json::summary(
            rec,
            &s.engine.network_settings(rec),
        ));
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    Ok(http::json(StatusCode::OK, &out))
}

async fn start(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let rec = find(&s, r.param("id")).await?;
    if rec.is_running() {
        return Ok(http::no_content(StatusCode::NOT_MODIFIED));
    }
    let st = s.clone();
    blocking(move || {
        st.engine
            .start(&rec.id, rec.options.auto_remove)
            .map_err(not_found_or)
    })
    .await?;
    Ok(http::no_content(StatusCode::NO_CONTENT))
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    NotRunning,
    NextExit,
    Removed,
}

async fn wait(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let condition = match r.query.get("condition").unwrap_or("") {
        "" | "not-running" => Condition::NotRunning,
        "next-exit" => Condition::NextExit,
        "removed" => Condition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition {other:?}: use not-running, next-exit or removed"
            )));
        }
    };
    let rec = find(&s, r.param("id")).await?;
    // The headers go out now (clients start the container only once they have them); the
    // body follows when the condition is met.
    let (tx, body) = http::channel(1);
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let gone = || tx.is_closed();
        let answer = match wait_for(&st, &rec, condition, &gone) {
            Ok(code) => json!({"StatusCode": code, "Error": null}),
            Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.message}}),
        };
        let mut line = answer.to_string();
        line.push('\n');
        let _ = tx.blocking_send(line.into());
    });
    Ok(http::with_type(StatusCode::OK, body, "application/json"))
}

/// How often a waiter without an attachment looks at the record.
const POLL: Duration = Duration::from_millis(20);

/// How often a waiter for `removed` looks for the record once the container exited.
const POLL_REMOVED: Duration = Duration::from_millis(2);

/// Waits until `condition` holds for `rec` (or the client is `gone`); returns the exit code.
fn wait_for(
    s: &ApiState,
    rec: &ContainerRecord,
    condition: Condition,
    gone: &dyn Fn() -> bool,
) -> Result<i64, ApiError> {
    let status = rec.status();
    if condition == Condition::NotRunning && status != Status::Running {
        return Ok(exit_code(&status));
    }
    // The exit comes from the monitor through an attachment (no streams), which also covers
    // a `--rm` container whose record goes with its exit.
    let quiet = AttachRequest {
        stdin: false,
        stdout: false,
        stderr: false,
        replay: false,
        detach_keys: None,
    };
    let mut code = None;
    let attached = s.engine.attach(&rec.id, quiet);
    match attached {
        Ok(a) => loop {
            match a.events.recv_timeout(POLL * 10) {
                Ok(Some(AttachEvent::Exited(c))) => {
                    code = Some(c.map(i64::from).unwrap_or(-1));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(()) if gone() => {
                    a.input.detach();
                    return Err(ApiError::internal("the client went away"));
                }
                Err(()) => {}
            }
        },
        Err(e) => {
            tracing::debug!(
                "wait on {}: no attachment ({e}); polling the record",
                rec.id
            );
            code = poll_exit(s, rec, gone);
        }
    }
    if condition == Condition::Removed {
        // The exit comes right before the record goes: look often, it is short.
        while s.engine.inspect(&rec.id).is_ok() && !gone() {
            std::thread::sleep(POLL_REMOVED);
        }
    }
    Ok(code.unwrap_or(-1))
}

/// Watches the record until the run after `rec` ended: its exit code, `None` when the
/// record went before its exit could be read.
fn poll_exit(s: &ApiState, rec: &ContainerRecord, gone: &dyn Fn() -> bool) -> Option<i64> {
    let before = rec.finished.clone();
    loop {
        if gone() {
            return None;
        }
        let now = match s.engine.inspect(&rec.id) {
            Ok(r) => r,
            Err(_) => return None,
        };
        let status = now.status();
        let ended = matches!(status, Status::Exited(_) | Status::Unknown);
        if ended && (now.finished != before || rec.status() == Status::Running) {
            return Some(exit_code(&status));
        }
        std::thread::sleep(POLL);
    }
}

fn exit_code(s: &Status) -> i64 {
    match s {
        Status::Exited(c) => i64::from(*c),
        Status::Unknown => -1,
        _ => 0,
    }
}

/// The `h` and `w` of a resize request.
pub(super) fn size(r: &Request) -> Result<(u16, u16), ApiError> {
    let h = r.query.int("h")?.unwrap_or(0);
    let w = r.query.int("w")?.unwrap_or(0);
    let fit = |v: i64, n: &str| {
        u16::try_from(v).map_err(|_| ApiError::bad_request(format!("invalid {n} {v}")))
    };
    Ok((fit(h, "height")?, fit(w, "width")?))
}

async fn resize(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let (h, w) = size(&r)?;
    let rec = find(&s, r.param("id")).await?;
    if !rec.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.short_id()
        )));
    }
    let st = s.clone();
    blocking(move || st.engine.resize(&rec.id, h, w).map_err(not_found_or)).await?;
    Ok(http::no_content(StatusCode::OK))
}

async fn kill(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let sig = crate::engine::Engine::parse_signal(r.query.get("signal").unwrap_or("KILL"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let rec = find(&s, r.param("id")).await?;
    if !rec.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    let st = s.clone();
    blocking(move || st.engine.kill(&rec.id, sig).map_err(not_found_or)).await?;
    Ok(http::no_content(StatusCode::NO_CONTENT))
}

fn stop_timeout(r: &Request) -> Result<Duration, ApiError> {
    let t = match r.query.int("t")? {
        Some(t) => Some(t),
        None => r.query.int("timeout")?,
    };
    Ok(Duration::from_secs(t.unwrap_or(10).clamp(0, 3600) as u64))
}

async fn stop(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let timeout = stop_timeout(&r)?;
    let rec = find(&s, r.param("id")).await?;
    if !rec.is_running() {
        return Ok(http::no_content(StatusCode::NOT_MODIFIED));
    }
    let st = s.clone();
    blocking(move || st.engine.stop(&rec.id, timeout).map_err(not_found_or)).await?;
    Ok(http::no_content(StatusCode::NO_CONTENT))
}

async fn restart(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let timeout = stop_timeout(&r)?;
    let rec = find(&s, r.param("id")).await?;
    let st = s.clone();
    blocking(move || {
        if rec.is_running() {
            st.engine.stop(&rec.id, timeout).map_err(not_found_or)?;
        }
        st.engine.start(&rec.id, false).map_err(not_found_or)
    })
    .await?;
    Ok(http::no_content(StatusCode::NO_CONTENT))
}

async fn remove(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let force = r.query.bool("force", false)?;
    let rec = find(&s, r.param("id")).await?;
    if rec.is_running() && !force {
        return Err(ApiError::conflict(format!(
            "cannot remove container {}: the container is running: stop the container before removing or force remove",
            rec.short_id()
        )));
    }
    let st = s.clone();
    blocking(move || st.engine.remove(&rec.id, force).map_err(not_found_or)).await?;
    Ok(http::no_content(StatusCode::NO_CONTENT))
}

async fn prune(s: Arc<ApiState>, _r: Request) -> HandlerResult {
    let st = s.clone();
    let deleted = blocking(move || {
        let mut deleted = Vec::new();
        for rec in st.engine.list().map_err(ApiError::from)? {
            if matches!(rec.status(), Status::Exited(_) | Status::Unknown)
                && st.engine.remove(&rec.id, false).is_ok()
            {
                deleted.push(rec.id);
            }
        }
        Ok(deleted)
    })
    .await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0}),
    ))
}

async fn top(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let rec = find(&s, r.param("id")).await?;
    let pid = match rec.pid {
        Some(p) if rec.is_running() => p.pid,
        _ => {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
    };
    let rows = blocking(move || Ok(super::procs::in_pid_namespace_of(pid))).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"Titles": ["UID", "PID", "PPID", "CMD"], "Processes": rows}),
    ))
}
