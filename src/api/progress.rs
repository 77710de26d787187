//! Docker's JSON progress stream (`POST /images/create`, `POST /images/load`): one JSON
//! object per line, `{"status": …, "id": …, "progressDetail": {"current", "total"}}`, and
//! `{"errorDetail": {"message"}, "error"}` when the operation fails after the stream started.
//!
//! [`JsonProgress`] turns the registry's pull callbacks into those lines and hands them to a
//! channel; the response body reads the other end.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::registry::Progress;

/// One line of the stream.
pub fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// The line that ends a stream with an error.
pub fn error_line(message: &str) -> Bytes {
    line(&json!({"errorDetail": {"message": message}, "error": message}))
}

/// The short layer ID Docker shows (12 hex digits).
fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// A layer's size and the byte count last reported.
#[derive(Default, Clone, Copy)]
struct Layer {
    total: u64,
    reported: u64,
}

/// Pull progress as Docker's JSON lines, sent to a channel. The channel is unbounded because
/// the pull calls back from inside its own runtime, where nothing may block; the lines are
/// few (at most about a hundred per layer). When the client is gone they are dropped and the
/// pull goes on.
pub struct JsonProgress {
    tx: mpsc::UnboundedSender<Bytes>,
    layers: Mutex<HashMap<Digest, Layer>>,
}

impl JsonProgress {
    /// Progress sent to `tx`.
    pub fn new(tx: mpsc::UnboundedSender<Bytes>) -> JsonProgress {
        JsonProgress {
            tx,
            layers: Mutex::new(HashMap::new()),
        }
    }

    fn send(&self, v: Value) {
        let _ = self.tx.send(line(&v));
    }

    fn layers(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Layer>> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Progress for JsonProgress {
    fn start(&self, tag: &str, repository: &str) {
        self.send(json!({"status": format!("Pulling from {repository}"), "id": tag}));
    }

    fn layer_queued(&self, layer: &Digest, size: u64) {
        self.layers().insert(
            layer.clone(),
            Layer {
                total: size,
                reported: 0,
            },
        );
        self.send(json!({"status": "Pulling fs layer", "progressDetail": {}, "id": short(layer)}));
    }

    fn layer_exists(&self, layer: &Digest) {
        self.send(json!({"status": "Already exists", "progressDetail": {}, "id": short(layer)}));
    }

    fn layer_bytes(&self, layer: &Digest, done: u64) {
        // At most about a hundred lines per layer.
        let total = {
            let mut layers = self.layers();
            let l = layers.entry(layer.clone()).or_default();
            let step = (l.total / 100).max(256 * 1024);
            if done < l.reported + step && done < l.total {
                return;
            }
            l.reported = done;
            l.total
        };
        self.send(json!({
            "status": "Downloading",
            "progressDetail": {"current": done, "total": total},
            "id": short(layer),
        }));
    }

    fn layer_done(&self, layer: &Digest) {
        self.send(json!({"status": "Download complete", "progressDetail": {}, "id": short(layer)}));
        self.send(json!({"status": "Pull complete", "progressDetail": {}, "id": short(layer)}));
    }

    fn finish(&self, reference: &str, digest: &Digest, new: bool) {
        self.send(json!({"status": format!("Digest: {digest}")}));
        let status = if new {
            format!("Status: Downloaded newer image for {reference}")
        } else {
            format!("Status: Image is up to date for {reference}")
        };
        self.send(json!({ "status": status }));
    }
}

/// Push progress as Docker's JSON lines (`Preparing`, `Pushing`, `Pushed`, `Layer already
/// exists`, `Mounted from …`, the final `TAG: digest: … size: N` and its `aux` object), sent
/// to a channel as [`JsonProgress`] does.
pub struct JsonPushProgress {
    tx: mpsc::UnboundedSender<Bytes>,
    reported: Mutex<HashMap<Digest, u64>>,
}

impl JsonPushProgress {
    /// Progress sent to `tx`.
    pub fn new(tx: mpsc::UnboundedSender<Bytes>) -> JsonPushProgress {
        JsonPushProgress {
            tx,
            reported: Mutex::new(HashMap::new()),
        }
    }

    fn send(&self, v: Value) {
        let _ = self.tx.send(line(&v));
    }

    fn layer(&self, status: &str, layer: &Digest) {
        self.send(json!({"status": status, "progressDetail": {}, "id": short(layer)}));
    }
}

impl crate::registry::PushProgress for JsonPushProgress {
    fn start(&self, repository: &str) {
        self.send(json!({
            "status": format!("The push refers to repository [{repository}]")
        }));
    }

    fn preparing(&self, layer: &Digest) {
        self.layer("Preparing", layer);
    }

    fn bytes(&self, layer: &Digest, done: u64, total: u64) {
        {
            let mut r = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            let last = r.entry(layer.clone()).or_default();
            let step = (total / 100).max(256 * 1024);
            if done < *last + step && done < total {
                return;
            }
            *last = done;
        }
        self.send(json!({
            "status": "Pushing",
            "progressDetail": {"current": done, "total": total},
            "id": short(layer),
        }));
    }

    fn exists(&self, layer: &Digest) {
        self.layer("Layer already exists", layer);
    }

    fn mounted(&self, layer: &Digest, from: &str) {
        self.layer(&format!("Mounted from {from}"), layer);
    }

    fn pushed(&self, layer: &Digest) {
        self.layer("Pushed", layer);
    }

    fn finish(&self, tag: &str, digest: &Digest, size: u64) {
        self.send(json!({"status": format!("{tag}: digest: {digest} size: {size}")}));
        self.send(json!({
            "progressDetail": {},
            "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size},
        }));
    }
}
