//! `GET /containers/{id}/stats` through `xrun serve`, read from the container's real cgroups:
//! `docker stats --no-stream`, the raw endpoint (one-shot, a stream of samples, a stopped and
//! an unknown container) and docker-py's `container.stats(stream=False)`; `xrun stats`.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use support::*;

/// A container busy on one CPU, with a memory and a pids limit.
fn busy(s: &Service, name: &str) -> String {
    let o = s.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "-m",
        "64m",
        "--pids-limit",
        "50",
        IMAGE,
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    out(&o)
}

#[test]
fn docker_stats_reads_the_containers_cgroups() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let id = busy(&s, "spin");
    let o = s.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "spin",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let line = out(&o);
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), 4, "{line}");
    assert_eq!(f[0], "spin");
    // A busy loop: CPU time went up between the two samples.
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 5.0, "{line}");
    // The cgroup's own limit, and a usage above nothing.
    assert!(f[2].ends_with("/ 64MiB"), "{line}");
    assert!(!f[2].starts_with("0B"), "{line}");
    assert_eq!(f[3], "1", "{line}");
    // The CLI reads the same engine samples.
    let o = s.xrun(&["stats", "--no-stream", "spin"]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row.get(1), Some(&"spin"), "{text}");
    let cpu: f64 = row[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 5.0, "{text}");
    assert_eq!(row[5], "64.00MiB", "{text}");

    // The raw answer: Docker's shape, one-shot without a previous sample.
    let r = s.request(
        "GET",
        &format!("/v1.44/containers/{id}/stats?stream=false&one-shot=true"),
        None,
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["id"], id.as_str());
    assert_eq!(j["name"], "/spin");
    assert_eq!(j["preread"], "0001-01-01T00:00:00Z");
    assert!(j["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0);
    assert!(j["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert!(j["cpu_stats"]["online_cpus"].as_u64().unwrap() >= 1);
    assert_eq!(j["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    assert_eq!(j["memory_stats"]["limit"], 64 << 20);
    assert!(j["memory_stats"]["usage"].as_u64().unwrap() > 0);
    assert!(j["memory_stats"]["stats"].is_object());
    assert_eq!(j["pids_stats"]["current"], 1);
    assert_eq!(j["pids_stats"]["limit"], 50);
    // The default bridge: eth0's counters from the container's namespace (lo left out).
    let nets = j["networks"].as_object().unwrap();
    assert_eq!(nets.keys().collect::<Vec<_>>(), ["eth0"], "{j}");
    assert!(nets["eth0"]["rx_bytes"].is_u64());
    let r = s.request(
        "GET",
        &format!("/v1.44/containers/{id}/stats?stream=true&one-shot=true"),
        None,
    );
    assert_eq!(r.status, 400);

    // A stream: a sample a second, each with the one before it.
    let mut conn = UnixStream::connect(s.socket()).unwrap();
    write!(
        conn,
        "GET /v1.44/containers/{id}/stats HTTP/1.0\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(conn).lines();
    let mut samples = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        if l.starts_with('{') {
            samples.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
            if samples.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[1]["preread"], samples[0]["read"]);
    let used = |v: &serde_json::Value| v["cpu_stats"]["cpu_usage"]["total_usage"].as_u64();
    assert!(used(&samples[1]) > used(&samples[0]));
    assert_eq!(
        samples[1]["precpu_stats"]["cpu_usage"]["total_usage"],
        samples[0]["cpu_stats"]["cpu_usage"]["total_usage"]
    );

    // Stopped: zeros, no error; unknown: 404.
    let o = s.docker(&["stop", "-t", "0", "spin"]);
    assert!(o.status.success(), "{}", err(&o));
    let r = s.request("GET", "/v1.44/containers/spin/stats?stream=false", None);
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["read"], "0001-01-01T00:00:00Z");
    assert_eq!(j["cpu_stats"]["cpu_usage"]["total_usage"], 0);
    let r = s.request("GET", "/v1.44/containers/nope/stats?stream=false", None);
    assert_eq!(r.status, 404);
    let o = s.docker(&["rm", "spin"]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn docker_py_reads_stats() {
    if !have_docker() {
        return;
    }
    if !std::process::Command::new("python3")
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return common::skip("docker-py (python3-docker) is not installed");
    }
    let s = Service::start();
    busy(&s, "pyspin");
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="unix://{sock}")
k = c.containers.get("pyspin")
st = k.stats(stream=False)
cpu = st["cpu_stats"]["cpu_usage"]["total_usage"] - st["precpu_stats"]["cpu_usage"]["total_usage"]
sys_ = st["cpu_stats"]["system_cpu_usage"] - st["precpu_stats"]["system_cpu_usage"]
assert cpu > 0 and sys_ > 0, st
assert st["memory_stats"]["limit"] == 64 << 20, st["memory_stats"]
assert st["pids_stats"] == {{"current": 1, "limit": 50}}, st["pids_stats"]
k.remove(force=True)
print("ok")
"#,
        sock = s.socket().display()
    );
    let o = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(out(&o), "ok", "{}\n{}", err(&o), s.log());
}
