//! Networks through `xrun serve` with real clients: `docker network create/ls/inspect/rm/
//! prune/connect/disconnect`, a published busybox httpd that answers on 127.0.0.1 (`docker
//! run -p`, `docker port`, `ps`), the raw endpoints' Docker errors, and Debian's
//! `docker-compose` 1.29 bringing a two-service project up and down.
//!
//! Traffic only to 127.0.0.1 and to addresses on the bridges xrun made here.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use std::process::Command;

use support::*;

/// A name no other run uses (bridges and their devices are host-wide).
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id())
}

/// Whether the network plugins this needs are here (`ci/setup` installs them).
fn have_cni() -> bool {
    if std::path::Path::new("/usr/lib/cni/bridge").exists() && common::is_root() {
        return true;
    }
    common::skip("the CNI plugins (/usr/lib/cni) or root are missing");
    false
}

/// GET `url` from the host (127.0.0.1 or an address on an xrun bridge only).
fn fetch(url: &str) -> String {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "2", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Fetches `url` until it answers (the server needs a moment after the start).
fn fetch_when_up(url: &str) -> String {
    for _ in 0..40 {
        let body = fetch(url);
        if !body.is_empty() {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    String::new()
}

#[test]
fn docker_network_commands_and_a_published_httpd() {
    if !have_docker() || !have_cni() {
        return;
    }
    let s = Service::start();
    let net = unique("apn");
    // A subnet of its own: bridges are host-wide, other roots may use the next free one.
    let pid = std::process::id();
    let subnet = format!("10.{}.{}.0/24", 91 + pid % 8, pid % 250);
    let o = s.docker(&[
        "network", "create", "--label", "team=a", "--subnet", &subnet, &net,
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o);
    assert_eq!(id.len(), 64);
    // Both front ends see it; filters; a second create of the name is a conflict.
    let o = s.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    let listed = out(&o);
    assert!(
        listed.lines().any(|l| l == format!("{net} bridge")),
        "{listed}"
    );
    assert!(listed.lines().any(|l| l == "bridge bridge"), "{listed}");
    assert!(out(&s.xrun(&["network", "ls"])).contains(&net));
    let o = s.docker(&["network", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(out(&o), &id[..12]);
    let o = s.docker(&["network", "ls", "-q", "--filter", "label=team=b"]);
    assert_eq!(out(&o), "");
    let o = s.docker(&["network", "create", &net]);
    assert!(!o.status.success());
    assert!(err(&o).contains("already exists"), "{}", err(&o));
    let r = s.request(
        "POST",
        "/v1.44/networks/create",
        Some(format!(r#"{{"Name":"{net}"}}"#).as_bytes()),
    );
    assert_eq!(r.status, 409);
    let r = s.request("GET", "/v1.44/networks/nosuchnet", None);
    assert_eq!(r.status, 404);
    let r = s.request(
        "POST",
        "/v1.44/networks/create",
        Some(br#"{"Name":"x6","EnableIPv6":true}"#),
    );
    assert_eq!(r.status, 400);
    let o = s.docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Labels.team}}",
        &net,
    ]);
    let inspected = out(&o);
    assert!(
        inspected.starts_with(&format!("{net} {subnet}")),
        "{inspected}"
    );
    assert!(inspected.ends_with(" a"), "{inspected}");

    // A published web server on the user network answers on 127.0.0.1.
    let www = s.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from xrun\n").unwrap();
    let port = common::free_port();
    let o = s.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        &net,
        "--network-alias",
        "site",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-v",
        &format!("{}:/www:ro", www.display()),
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(o.status.success(), "{} {}", err(&o), s.log());
    assert_eq!(
        fetch_when_up(&format!("http://127.0.0.1:{port}/")),
        "hello from xrun\n"
    );
    let o = s.docker(&["port", "web"]);
    assert_eq!(
        out(&o),
        format!("80/tcp -> 127.0.0.1:{port}"),
        "{}",
        err(&o)
    );
    let o = s.docker(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert_eq!(out(&o), format!("web 127.0.0.1:{port}->80/tcp"));
    let o = s.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.NetworkMode}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}} {{join $v.Aliases \",\"}}{{end}}",
        "web",
    ]);
    let line = out(&o);
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 4, "{line}");
    assert_eq!((f[0], f[1]), (net.as_str(), net.as_str()));
    assert!(f[3].split(',').any(|a| a == "site"), "{line}");
    // Through the container's own address on the bridge, too.
    assert_eq!(
        fetch_when_up(&format!("http://{}/", f[2])),
        "hello from xrun\n"
    );

    // In use: not removed (Docker's 403), the CLI says why.
    let o = s.docker(&["network", "rm", &net]);
    assert!(!o.status.success());
    assert!(err(&o).contains("active endpoints"), "{}", err(&o));
    let r = s.request("DELETE", &format!("/v1.44/networks/{net}"), None);
    assert_eq!(r.status, 403);

    // connect/disconnect a second container on the default bridge.
    let o = s.docker(&["run", "-d", "--name", "cli", IMAGE, "sleep", "300"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.docker(&["network", "connect", &net, "cli"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.docker(&["exec", "cli", "wget", "-qO-", &format!("http://{}/", f[2])]);
    assert_eq!(out(&o), "hello from xrun", "{}", err(&o));
    let o = s.docker(&["inspect", "-f", "{{len .NetworkSettings.Networks}}", "cli"]);
    assert_eq!(out(&o), "2");
    let o = s.docker(&["network", "disconnect", &net, "cli"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.docker(&["inspect", "-f", "{{len .NetworkSettings.Networks}}", "cli"]);
    assert_eq!(out(&o), "1");

    // Gone with its containers: rm, then prune removes the unused network.
    let o = s.docker(&["rm", "-f", "web", "cli"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")), "");
    let o = s.docker(&["network", "prune", "-f"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains(&net), "{}", out(&o));
    let o = s.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(out(&o), "bridge");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(&format!("xrbr-{}", &id[..8])), "{links}");
}

#[test]
fn compose_brings_two_services_up_and_down() {
    if !have_docker() || !have_cni() {
        return;
    }
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return common::skip("docker-compose (Debian's 1.29) is not installed");
    }
    let s = Service::start();
    let project = unique("apc");
    let dir = s.dir.path().join("compose");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"version: "3"
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo compose-web > /www/index.html && exec httpd -f -p 80 -h /www"]
  client:
    image: {IMAGE}
    command: ["sleep", "300"]
"#
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&project)
            .args(args)
            .current_dir(&dir)
            .env("DOCKER_HOST", format!("unix://{}", s.socket().display()))
            .output()
            .unwrap()
    };
    let o = compose(&["up", "-d"]);
    assert!(o.status.success(), "{}\n{}", err(&o), s.log());
    let o = s.docker(&["ps", "--format", "{{.Names}} {{.State}}"]);
    let mut running: Vec<String> = out(&o).lines().map(String::from).collect();
    running.sort();
    assert_eq!(
        running,
        [
            format!("{project}_client_1 running"),
            format!("{project}_web_1 running")
        ]
    );
    let o = compose(&["ps", "-q"]);
    assert_eq!(out(&o).lines().count(), 2, "{}", out(&o));
    // The client reaches the web service on the project's network by its service name
    // (Compose's alias, served by aardvark-dns) and by its address.
    let o = s.docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &format!("{project}_web_1"),
    ]);
    let ip = out(&o);
    assert!(ip.starts_with("10."), "{ip}");
    let fetch = |host: &str| {
        let mut body = String::new();
        for _ in 0..100 {
            let o = s.docker(&[
                "exec",
                &format!("{project}_client_1"),
                "wget",
                "-qO-",
                &format!("http://{host}/"),
            ]);
            body = out(&o);
            if !body.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        body
    };
    assert_eq!(fetch("web"), "compose-web", "{}", s.log());
    let body = fetch(&ip);
    assert_eq!(body, "compose-web");
    let o = s.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        out(&o).lines().any(|l| l == format!("{project}_default")),
        "{}",
        out(&o)
    );

    let o = compose(&["down"]);
    assert!(o.status.success(), "{}\n{}", err(&o), s.log());
    assert_eq!(out(&s.docker(&["ps", "-aq"])), "");
    let o = s.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(out(&o), "bridge");
    assert_eq!(out(&s.xrun(&["ps", "-aq"])), "");
}
