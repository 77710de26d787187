//! `GET /system/df[?type=…]`: Docker's disk usage (`docker system df [-v]`), from
//! [`crate::engine::Engine::disk_usage`]: images with their shared bytes and container
//! counts, containers with their writable layers, no volumes (xrun has bind mounts only), and
//! build cache entries.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::router::{HandlerResult, Request, Router};
use super::{ApiError, ApiState, blocking, http};
use crate::engine::unix_time;

/// Registers the endpoint.
pub fn routes(r: &mut Router) {
    r.add(Method::GET, "/system/df", disk_usage);
}

/// The `type` query values Docker accepts (repeatable); none means all.
const TYPES: [&str; 4] = ["container", "image", "volume", "build-cache"];

async fn disk_usage(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let wanted: Vec<String> = r.query.all("type").into_iter().map(String::from).collect();
    if let Some(bad) = wanted.iter().find(|t| !TYPES.contains(&t.as_str())) {
        return Err(ApiError::bad_request(format!(
            "invalid type {bad:?} (use container, image, volume or build-cache)"
        )));
    }
    let want = |t: &str| wanted.is_empty() || wanted.iter().any(|w| w == t);
    let st = s.clone();
    let du = blocking(move || st.engine.disk_usage().map_err(ApiError::from)).await?;
    let mut out = serde_json::Map::new();
    if want("image") {
        out.insert("LayersSize".into(), du.layers_size.into());
        let images: Vec<Value> = du
            .images
            .iter()
            .map(|i| {
                let mut v = super::images::summary(&i.image);
                v["Size"] = i.size.into();
                v["SharedSize"] = i.shared_size.into();
                v["Containers"] = i.containers.into();
                v
            })
            .collect();
        out.insert("Images".into(), images.into());
    }
    if want("container") {
        let containers: Vec<Value> = du
            .containers
            .iter()
            .map(|c| {
                let mut v = super::container_json::summary(
                    &c.record,
                    &s.engine.network_settings(&c.record),
                );
                v["SizeRw"] = c.size_rw.into();
                v
            })
            .collect();
        out.insert("Containers".into(), containers.into());
    }
    if want("volume") {
        out.insert("Volumes".into(), json!([]));
    }
    if want("build-cache") {
        let cache: Vec<Value> = du
            .build_cache
            .iter()
            .map(|b| {
                json!({
                    "ID": b.id,
                    "Parents": Value::Null,
                    "Type": "regular",
                    "Description": "",
                    "InUse": false,
                    "Shared": b.shared,
                    "Size": b.size,
                    "CreatedAt": b.created,
                    "LastUsedAt": b.created,
                    "UsageCount": 0,
                    "Created": unix_time(&b.created),
                })
            })
            .collect();
        out.insert("BuildCache".into(), cache.into());
    }
    Ok(http::json(StatusCode::OK, &Value::Object(out)))
}
