//! `/_ping` (GET and HEAD), `/version` and `/info`: version negotiation and what the
//! service runs on, with xrun's host summary.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::kernelcheck::profile::HostProfile;

use super::router::{HandlerResult, Request, Router};
use super::{ApiState, blocking, http, version};

/// The API version this service advertises (see [`version::CURRENT`]).
pub const API_VERSION: &str = "1.44";

/// Registers the system endpoints.
pub fn routes(r: &mut Router) {
    r.add(Method::GET, "/_ping", ping);
    r.add(Method::HEAD, "/_ping", ping_head);
    r.add(Method::GET, "/version", version_info);
    r.add(Method::GET, "/info", info);
}

fn ping_headers(resp: &mut http::Response) {
    let h = resp.headers_mut();
    h.insert("OSType", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
}

async fn ping(_s: Arc<ApiState>, _r: Request) -> HandlerResult {
    let mut resp = http::text(StatusCode::OK, "OK");
    ping_headers(&mut resp);
    Ok(resp)
}

async fn ping_head(_s: Arc<ApiState>, _r: Request) -> HandlerResult {
    let mut resp = http::text(StatusCode::OK, "");
    ping_headers(&mut resp);
    Ok(resp)
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The host's architecture as Docker names it in `/version` (Go's GOARCH) and `/info`
/// (uname's machine).
fn host_arch() -> String {
    crate::platform::Platform::host().architecture
}

async fn version_info(_s: Arc<ApiState>, _r: Request) -> HandlerResult {
    let v = env!("CARGO_PKG_VERSION");
    let kernel = kernel_release();
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "Platform": {"Name": "xrun"},
            "Components": [{
                "Name": "Engine",
                "Version": v,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": version::MINIMUM.to_string(),
                    "Os": "linux",
                    "Arch": host_arch(),
                    "KernelVersion": kernel,
                }
            }],
            "Version": v,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": version::MINIMUM.to_string(),
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": host_arch(),
            "KernelVersion": kernel,
            "BuildTime": "",
        }),
    ))
}

async fn info(s: Arc<ApiState>, _r: Request) -> HandlerResult {
    let st = s.clone();
    let (containers, images) = blocking(move || {
        let containers = st.engine.list().map_err(super::ApiError::from)?;
        let images = st.engine.list_images(None).map(|i| i.len()).unwrap_or(0);
        Ok((containers, images))
    })
    .await?;
    let host = s.host().await;
    let running = containers.iter().filter(|c| c.is_running()).count();
    let cgroup_version = if host.cgroups.mode == "v2" { "2" } else { "1" };
    let mem_total = nix::sys::sysinfo::sysinfo()
        .map(|i| i.ram_total())
        .unwrap_or(0);
    let mut v = json!({
        "ID": host.name,
        "Name": host.name,
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": containers.len() - running,
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [],
        "DockerRootDir": s.engine.root(),
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "PidsLimit": true,
        "OomKillDisable": false,
        "IPv4Forwarding": false,
        "Debug": false,
        "SystemTime": crate::runtime::state::now(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "KernelVersion": host.kernel.release,
        "OperatingSystem": host.os_release.clone().unwrap_or_else(|| "Linux".into()),
        "OSType": "linux",
        "Architecture": host.cpu.machine,
        "NCPU": host.cpu.count,
        "MemTotal": mem_total,
    });
    let more = json!({
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"]},
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"xrun": {"path": "xrun"}},
        "DefaultRuntime": "xrun",
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false},
        "LiveRestoreEnabled": true,
        "InitBinary": "xrun",
        "SecurityOptions": if host.seccomp { vec!["name=seccomp,profile=builtin"] } else { vec![] },
        "Warnings": [],
        "Xrun": xrun_summary(&host),
    });
    if let (Some(m), serde_json::Value::Object(more)) = (v.as_object_mut(), more) {
        m.extend(more);
    }
    Ok(http::json(StatusCode::OK, &v))
}

/// xrun's host summary in `/info`: what decides routes here, and the whole host profile.
fn xrun_summary(host: &HostProfile) -> serde_json::Value {
    json!({
        "Platform": host.platform.to_string(),
        "Amd64Level": host.cpu.amd64_level,
        "CgroupMode": host.cgroups.mode,
        "Emulators": host.emulation.qemu_user.keys().collect::<Vec<_>>(),
        "VmGuests": host.emulation.qemu_system.keys().collect::<Vec<_>>(),
        "KvmUsable": host.emulation.kvm_usable,
        "Host": host,
    })
}

impl ApiState {
    /// This host's profile, gathered once (the first `/info` or route that needs it).
    pub async fn host(&self) -> Arc<HostProfile> {
        if let Some(h) = self.host.get() {
            return h.clone();
        }
        let h = tokio::task::block_in_place(HostProfile::gather);
        self.host.get_or_init(|| Arc::new(h)).clone()
    }
}
