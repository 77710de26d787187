//! `GET /containers/{id}/stats`: the engine's usage samples ([`crate::engine::ContainerStats`])
//! in Docker's JSON shape. `stream=true` (the default) sends one object per
//! [`STATS_INTERVAL`]; `stream=false` one object, after a second sample unless `one-shot`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::engine::{ContainerStats, STATS_INTERVAL};
use crate::runtime::usage::{CgroupVersion, Usage};

use super::containers::not_found_or;
use super::error::ApiError;
use super::router::{HandlerResult, Request};
use super::{ApiState, blocking, http};

/// The stats endpoint.
pub async fn stats(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let stream = r.query.bool("stream", true)?;
    let one_shot = r.query.bool("one-shot", false)?;
    if one_shot && stream {
        return Err(ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let key = r.param("id").to_string();
    let st = s.clone();
    let k = key.clone();
    let first = blocking(move || st.engine.stats(&k, None).map_err(not_found_or)).await?;
    if !stream {
        let sample = if one_shot || !first.running {
            first
        } else {
            let st = s.clone();
            blocking(move || {
                std::thread::sleep(STATS_INTERVAL);
                st.engine.stats(&key, Some(first)).map_err(not_found_or)
            })
            .await?
        };
        return Ok(http::json(hyper::StatusCode::OK, &to_json(&sample)));
    }
    let (tx, body) = http::channel(1);
    tokio::task::spawn_blocking(move || {
        let mut sample = first;
        loop {
            let mut line = to_json(&sample).to_string();
            line.push('\n');
            if tx.blocking_send(line.into()).is_err() || !sample.running {
                return;
            }
            std::thread::sleep(STATS_INTERVAL);
            let id = sample.id.clone();
            match s.engine.stats(&id, Some(sample)) {
                Ok(next) => sample = next,
                Err(_) => return,
            }
        }
    });
    Ok(http::with_type(
        hyper::StatusCode::OK,
        body,
        "application/json",
    ))
}

/// Docker's zero time, for a missing `preread`.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One sample as Docker's `StatsResponse`.
pub fn to_json(s: &ContainerStats) -> Value {
    let pre = s.previous.as_deref();
    let mut v = json!({
        "id": s.id,
        "name": format!("/{}", s.name),
        "read": if s.running { s.read.as_str() } else { ZERO_TIME },
        "preread": pre.filter(|p| p.running).map_or(ZERO_TIME, |p| p.read.as_str()),
        "num_procs": 0,
        "pids_stats": pids_json(&s.usage),
        "blkio_stats": {
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null
        },
        "storage_stats": {},
        "cpu_stats": cpu_json(Some(s)),
        "precpu_stats": cpu_json(pre),
        "memory_stats": memory_json(s),
    });
    if !s.usage.networks.is_empty() {
        let nets: serde_json::Map<String, Value> = s
            .usage
            .networks
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    json!({
                        "rx_bytes": c.rx_bytes, "rx_packets": c.rx_packets,
                        "rx_errors": c.rx_errors, "rx_dropped": c.rx_dropped,
                        "tx_bytes": c.tx_bytes, "tx_packets": c.tx_packets,
                        "tx_errors": c.tx_errors, "tx_dropped": c.tx_dropped,
                    }),
                )
            })
            .collect();
        v["networks"] = Value::Object(nets);
    }
    v
}

fn pids_json(u: &Usage) -> Value {
    let mut v = json!({});
    if let Some(c) = u.pids_current {
        v["current"] = json!(c);
    }
    if let Some(l) = u.pids_limit {
        v["limit"] = json!(l);
    }
    v
}

fn cpu_json(s: Option<&ContainerStats>) -> Value {
    let Some(s) = s.filter(|s| s.running) else {
        return json!({
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
        });
    };
    let c = &s.usage.cpu;
    let mut usage = json!({
        "total_usage": c.total_ns,
        "usage_in_kernelmode": c.system_ns,
        "usage_in_usermode": c.user_ns,
    });
    if s.usage.version == CgroupVersion::V1 && !c.percpu_ns.is_empty() {
        usage["percpu_usage"] = json!(c.percpu_ns);
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": s.system_cpu_ns,
        "online_cpus": s.online_cpus,
        "throttling_data": {
            "periods": c.periods,
            "throttled_periods": c.throttled_periods,
            "throttled_time": c.throttled_ns,
        }
    })
}

fn memory_json(s: &ContainerStats) -> Value {
    if !s.running {
        return json!({});
    }
    let m = &s.usage.memory;
    let mut v = json!({
        "usage": m.usage.unwrap_or(0),
        "stats": m.stat,
        "limit": s.memory_limit,
    });
    if s.usage.version == CgroupVersion::V1 {
        v["max_usage"] = json!(m.max_usage.unwrap_or(0));
        v["failcnt"] = json!(m.failcnt.unwrap_or(0));
    }
    v
}
