//! `xrun serve` driven by real clients: the `docker` CLI (28.x) and raw HTTP over the unix
//! socket, on a real store with the busybox-multi fixture: negotiation, errors, the
//! container lifecycle through both front ends, exec, logs, the emulated route, exit codes,
//! concurrency, and what SIGTERM leaves running.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use support::*;

#[test]
fn ping_version_and_errors_speak_dockers_http() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let r = s.request("HEAD", "/_ping", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Api-Version"), Some("1.44"));
    assert_eq!(r.header("OSType"), Some("linux"));
    assert_eq!(r.header("Docker-Experimental"), Some("false"));
    let r = s.request("GET", "/_ping", None);
    assert_eq!(r.body, b"OK");

    let o = s.docker(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(out(&o), "1.44 linux", "{}", err(&o));
    let o = s.docker(&[
        "info",
        "--format",
        "{{.Architecture}} {{.CgroupVersion}} {{.OSType}}",
    ]);
    assert!(out(&o).ends_with("linux"), "{} {}", out(&o), err(&o));
    let info = s.request("GET", "/v1.44/info", None).json();
    assert!(
        info["Xrun"]["Platform"]
            .as_str()
            .unwrap()
            .starts_with("linux/")
    );
    assert!(
        info["KernelVersion"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );

    // Docker's JSON errors, one line each.
    let r = s.request("GET", "/v1.44/nowhere", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "page not found");
    let r = s.request("GET", "/v1.99/info", None);
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("too new"));
    let r = s.request("POST", "/v1.44/containers/create", Some(b"{not json"));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    let big = vec![b' '; 5 << 20];
    let r = s.request("POST", "/v1.44/containers/create", Some(&big));
    assert_eq!(r.status, 413);
    let r = s.request("GET", "/v1.44/containers/nope/json", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such container: nope");
    let r = s.request(
        "POST",
        "/v1.44/containers/create",
        Some(br#"{"Image":"nosuch:1"}"#),
    );
    assert_eq!(r.status, 404);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("No such image")
    );
    let r = s.request(
        "GET",
        "/v1.44/containers/json?filters=%7B%22volume%22%3A%5B%22x%22%5D%7D",
        None,
    );
    assert_eq!(r.status, 400);
    let r = s.request("DELETE", "/v1.44/_ping", None);
    assert_eq!(r.status, 405);
    // Nothing was left half-made by the refusals.
    assert_eq!(out(&s.xrun(&["ps", "-aq"])), "");
}

#[test]
fn detached_lifecycle_is_shared_with_the_cli() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let o = s.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "app=demo",
        IMAGE,
        "sh",
        "-c",
        "echo started; echo to-err >&2; exec sleep 300",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o);
    assert_eq!(id.len(), 64);

    // Both front ends see it.
    let o = s.docker(&["ps", "--format", "{{.Names}} {{.State}} {{.Image}}"]);
    assert_eq!(out(&o), format!("web running {IMAGE}"));
    let o = s.xrun(&["ps"]);
    assert!(out(&o).contains("web"), "{}", out(&o));
    let o = s.docker(&["ps", "--filter", "label=app=demo", "-q"]);
    assert_eq!(out(&o), &id[..12]);
    let o = s.docker(&["ps", "--filter", "label=app=other", "-q"]);
    assert_eq!(out(&o), "");

    let o = s.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.Name}} {{.Config.Labels.app}} {{.Xrun.Route}} {{.Xrun.Platform}}",
        "web",
    ]);
    assert_eq!(
        out(&o),
        "running /web demo native linux/amd64",
        "{}",
        err(&o)
    );

    // Logs: both streams, back to where they came from.
    let o = s.docker(&["logs", "web"]);
    assert_eq!(out(&o), "started");
    assert_eq!(err(&o).trim(), "to-err");
    let o = s.docker(&["logs", "--tail", "1", "-t", "web"]);
    assert!(
        out(&o).ends_with(" started") || err(&o).trim().ends_with(" to-err"),
        "{}",
        out(&o)
    );

    // exec: output, exit code, environment and working directory.
    let o = s.docker(&[
        "exec",
        "-e",
        "X=42",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo $X $(pwd); exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert_eq!(out(&o), "42 /tmp");
    let o = s
        .docker_cmd()
        .args(["exec", "-i", "web", "sh", "-c", "cat; echo done"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"from stdin\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out(&o), "from stdin\ndone");
    let o = s.docker(&["exec", "web", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    let o = s.docker(&["top", "web"]);
    assert!(out(&o).contains("sleep 300"), "{}", out(&o));

    // stop, then the CLI starts it again and the API stops and removes it.
    let o = s.docker(&["stop", "-t", "1", "web"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.docker(&["ps", "-a", "--format", "{{.State}}"]);
    assert_eq!(out(&o), "exited");
    let o = s.xrun(&["start", "web"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.docker(&["inspect", "-f", "{{.State.Running}}", "web"]);
    assert_eq!(out(&o), "true");
    let o = s.docker(&["rm", "web"]);
    assert!(
        !o.status.success(),
        "a running container is not removed without -f"
    );
    assert!(err(&o).contains("running"), "{}", err(&o));
    let o = s.docker(&["rm", "-f", "web"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&s.xrun(&["ps", "-aq"])), "");

    // A container the CLI made is managed through the API.
    let o = s.xrun(&["create", "--name", "made-by-cli", IMAGE, "true"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.docker(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(out(&o), "made-by-cli created");
    let o = s.docker(&["rm", "made-by-cli"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&s.xrun(&["ps", "-aq"])), "");
}

#[test]
fn the_emulated_route_and_exit_codes_through_the_api() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let o = s.docker(&[
        "run",
        "-d",
        "--platform",
        "linux/arm64",
        IMAGE,
        "uname",
        "-m",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o);
    let o = s.docker(&["wait", &id]);
    assert_eq!(out(&o), "0", "{}", err(&o));
    let o = s.docker(&["logs", &id]);
    assert_eq!(out(&o), "aarch64");
    let o = s.docker(&["inspect", "-f", "{{.Xrun.Route}} {{.Xrun.Platform}}", &id]);
    assert_eq!(out(&o), "emulated linux/arm64/v8");
    let reasons = s
        .request("GET", &format!("/containers/{id}/json"), None)
        .json();
    assert!(
        reasons["Xrun"]["Reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["code"] == "arch-mismatch")),
        "{reasons}"
    );

    let o = s.docker(&["run", "-d", IMAGE, "sh", "-c", "exit 3"]);
    let id = out(&o);
    let o = s.docker(&["wait", &id]);
    assert_eq!(out(&o), "3");

    let o = s.docker(&["run", "-d", IMAGE, "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    let o = s.docker(&["run", "-d", IMAGE, "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", err(&o));
    let o = s.docker(&["run", "-d", "--privileged", IMAGE, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("privileged"), "{}", err(&o));
    // Published ports need a network of xrun's (tests/api_network.rs publishes some).
    let o = s.docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "-p",
        "8080:80",
        IMAGE,
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("need a network"), "{}", err(&o));
    let o = s.docker(&["run", "-d", "--network", "nosuchnet", IMAGE, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("nosuchnet"), "{}", err(&o));
    let o = s.docker(&["create", "--name", "dup", IMAGE, "true"]);
    assert!(o.status.success());
    let o = s.docker(&["run", "-d", "--name", "dup", IMAGE, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("already in use"), "{}", err(&o));
}

#[test]
fn concurrent_creates_starts_and_removes_stay_consistent() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let socket = s.socket();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let body = format!(
                    r#"{{"Image":"{IMAGE}","Cmd":["sh","-c","exit {}"],"Labels":{{"n":"{i}"}}}}"#,
                    i % 7
                );
                let r = request(
                    &socket,
                    "POST",
                    &format!("/v1.44/containers/create?name=c{i}"),
                    Some(body.as_bytes()),
                );
                assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
                let id = r.json()["Id"].as_str().unwrap().to_string();
                // As the docker CLI: the wait's headers first, then the start.
                let w = request_headers(
                    &socket,
                    "POST",
                    &format!("/v1.44/containers/{id}/wait?condition=next-exit"),
                );
                let r = request(
                    &socket,
                    "POST",
                    &format!("/v1.44/containers/{id}/start"),
                    None,
                );
                assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
                let w = w.finish();
                assert_eq!(w.json()["StatusCode"], i % 7, "{i}");
                let r = request(&socket, "DELETE", &format!("/v1.44/containers/{id}"), None);
                assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = s.request("GET", "/v1.44/containers/json?all=1", None);
    assert_eq!(r.json(), serde_json::json!([]));
    assert_eq!(out(&s.xrun(&["ps", "-aq"])), "");
    let left = std::fs::read_dir(s.root().join("containers"))
        .map(|d| {
            d.flatten()
                // `.names` is the name index, not a container.
                .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "container directories left behind");
}

#[test]
fn sigterm_leaves_containers_running_and_one_instance_holds_the_socket() {
    if !have_docker() {
        return;
    }
    let mut s = Service::start();
    let meta = std::fs::metadata(s.socket()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o660
    );
    let second = std::process::Command::new(XRUN)
        .args(["serve", "--socket"])
        .arg(s.socket())
        .arg("--root")
        .arg(s.root())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(125));
    assert!(
        err(&second).contains("another xrun serve holds"),
        "{}",
        err(&second)
    );

    let o = s.docker(&["run", "-d", "--name", "keeps", IMAGE, "sleep", "300"]);
    assert!(o.status.success(), "{}", err(&o));
    let status = s.stop().unwrap();
    assert!(status.success(), "{status:?}: {}", s.log());
    assert!(!s.socket().exists(), "the socket is removed on the way out");
    let o = s.xrun(&["ps", "-q"]);
    assert_eq!(
        out(&o).lines().count(),
        1,
        "still running after the service stopped"
    );
    s.spawn();
    let o = s.docker(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(out(&o), "keeps");
    let o = s.docker(&["rm", "-f", "keeps"]);
    assert!(o.status.success(), "{}", err(&o));
}
