//! `POST /containers/{id}/attach`: the connection is hijacked and joined to the container's
//! streams through [`crate::engine::Engine::attach`] (the monitor's attach socket), so
//! `docker run` (create, attach, wait, start), `docker attach` and the detach keys work.

use std::sync::Arc;

use crate::engine::{AttachEvent, AttachRequest, DetachKeys};

use super::ApiState;
use super::containers::{find, not_found_or};
use super::error::ApiError;
use super::router::{HandlerResult, Request};
use super::stream::{self, FromClient, StreamKind};

/// How many output chunks wait for a slow client before the container's side waits.
const DEPTH: usize = 64;

/// The attach endpoint.
pub async fn attach(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let stdin = r.query.bool("stdin", false)?;
    let stdout = r.query.bool("stdout", false)?;
    let stderr = r.query.bool("stderr", false)?;
    let replay = r.query.bool("logs", false)?;
    let detach_keys = match r.query.get("detachKeys") {
        None => Some(DetachKeys::default_keys()),
        Some(k) => DetachKeys::parse(k).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let rec = find(&s, r.param("id")).await?;
    let upgrade = stream::take_upgrade(&mut r)?;
    let tty = rec.options.tty;
    let req = AttachRequest {
        stdin,
        stdout,
        stderr,
        replay,
        detach_keys,
    };
    // Attach before answering, so an error is an HTTP error and the client's start comes
    // after the attachment exists (nothing of the run is missed).
    let st = s.clone();
    let id = rec.id.clone();
    let attachment =
        http_blocking(move || st.engine.attach(&id, req).map_err(not_found_or)).await?;
    let (events, input) = attachment.split();
    let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
    tokio::task::spawn_blocking(move || {
        for ev in events {
            match ev {
                AttachEvent::Output(s, data) => {
                    let chunk = stream::encode(tty, StreamKind::from(s), &data);
                    if tx.blocking_send(chunk).is_err() {
                        return;
                    }
                }
                AttachEvent::Exited(_) | AttachEvent::Detached => return,
            }
        }
    });
    let to_container = input.clone();
    tokio::spawn(async move {
        let alive = stream::relay(upgrade, rx, move |m| match m {
            FromClient::Data(d) if stdin => to_container.stdin(&d),
            FromClient::Closed if stdin => to_container.close_stdin(),
            _ => {}
        })
        .await;
        if !alive {
            input.detach();
        }
    });
    Ok(stream::switching(tty))
}

async fn http_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    super::blocking(f).await
}
