//! The image endpoints of `xrun serve` driven by real clients: the `docker` CLI (pull with
//! `--platform` from a loopback registry, images, inspect, tag, rmi, image prune, save, load,
//! history), docker-py (pull, list, get, tag, save, load, remove) and curl (`/xrun/check`,
//! error answers). What one front end does the other sees: the service and `xrun` share the
//! store.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use common::{TestEnv, TestRegistry, fixture};

/// `xrun serve` on a socket in a temp dir over the environment's store; stopped (SIGTERM,
/// reaped) on drop.
struct Service {
    socket: PathBuf,
    child: Child,
}

impl Service {
    fn start(env: &TestEnv) -> Service {
        let socket = env.scratch().join("xrun.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_xrun"))
            .arg("--root")
            .arg(env.root())
            .args(["serve", "--socket"])
            .arg(&socket)
            .env("XRUN_CONFIG", env.config_path())
            .env_remove("XRUN_DEFAULT_PLATFORM")
            .env_remove("DOCKER_DEFAULT_PLATFORM")
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xrun serve");
        let mut service = Service { socket, child };
        // Ready when the socket accepts a connection (the service binds before it serves).
        for _ in 0..500 {
            if UnixStream::connect(&service.socket).is_ok() {
                return service;
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("xrun serve exited early: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = service.child.kill();
        panic!("xrun serve did not create {}", service.socket.display());
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `docker ARGS…` against the service.
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.socket.with_file_name("docker-config"))
            .env_remove("DOCKER_DEFAULT_PLATFORM")
            .output()
            .expect("spawn docker")
    }

    /// `curl` on the service: (status, body).
    fn curl(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("--unix-socket")
            .arg(&self.socket)
            .arg(format!("http://xrun{path}"));
        if body.is_some() {
            cmd.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn curl");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(b) = body {
            stdin.write_all(b).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap(), body.to_string())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn xrun(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().expect("spawn xrun")
}

/// None (after saying why) when the docker CLI is missing.
fn docker_ready() -> Option<()> {
    if have("docker", "--version") {
        Some(())
    } else {
        common::skip("the docker CLI is missing (ci/setup installs docker.io)");
        None
    }
}

#[test]
fn docker_pull_with_a_platform_then_images_inspect_history_and_the_xrun_cli_agree() {
    let Some(()) = docker_ready() else { return };
    let registry = TestRegistry::start();
    registry.push("busybox-multi", "multi:1");
    let env = TestEnv::new();
    let service = Service::start(&env);
    let image = registry.image("multi:1");

    let out = ok(&service.docker(&["pull", "--platform", "linux/arm64", &image]));
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    // Again: already there.
    let out = ok(&service.docker(&["pull", "--platform", "linux/arm64", &image]));
    assert!(out.contains("Image is up to date"), "{out}");

    let plat = ok(&service.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}}/{{.Variant}} {{.Id}}",
        &image,
    ]));
    let (plat, id) = plat.trim().split_once(' ').unwrap();
    assert_eq!(plat, "linux/arm64/v8");
    let listed = ok(&service.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]));
    assert_eq!(
        listed.trim(),
        format!("{image} {}", &id["sha256:".len().."sha256:".len() + 12])
    );
    let history = ok(&service.docker(&["history", "-q", &image]));
    assert!(history.lines().count() >= 1, "{history}");

    // The CLI on the same root sees the pulled image, with the same ID.
    let cli = ok(&xrun(&env, &["images", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(v[0]["manifest_digest"], id);
    assert_eq!(v[0]["platform"]["architecture"], "arm64");

    // A missing tag: the docker CLI's error, nothing recorded.
    let out = service.docker(&["pull", &registry.image("multi:nosuch")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
    let (code, body) = service.curl("GET", "/images/json", None);
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn docker_run_pulls_a_missing_image_through_images_create_for_its_platform() {
    let Some(()) = docker_ready() else { return };
    if !common::is_root() {
        return common::skip("running containers needs root");
    }
    let registry = TestRegistry::start();
    registry.push("busybox-multi", "multi:1");
    let env = TestEnv::new();
    let service = Service::start(&env);
    let image = registry.image("multi:1");
    // Not in the store: create answers 404, the CLI pulls (progress on stderr) and retries.
    // Detached (create, start), then wait and logs.
    let run = |platform: &str| {
        let out = service.docker(&["run", "-d", "--platform", platform, &image, "uname", "-m"]);
        let id = ok(&out).trim().to_string();
        assert_eq!(ok(&service.docker(&["wait", &id])).trim(), "0");
        let logs = ok(&service.docker(&["logs", &id])).trim().to_string();
        ok(&service.docker(&["rm", &id]));
        (logs, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (logs, err) = run("linux/arm64");
    assert_eq!(logs, "aarch64");
    assert!(err.contains("Unable to find image"), "{err}");
    assert!(err.contains("Pull complete"), "{err}");
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    // The other platform of the same tag is pulled too, and runs natively.
    let (logs, err) = run("linux/amd64");
    assert_eq!(logs, "x86_64");
    assert!(err.contains("Pull complete"), "{err}");
}

#[test]
fn docker_save_load_tag_rmi_and_prune_share_the_store_with_xrun() {
    let Some(()) = docker_ready() else { return };
    let env = TestEnv::new();
    ok(&xrun(
        &env,
        &["load", "-i", fixture("busybox-amd64").to_str().unwrap()],
    ));
    let service = Service::start(&env);
    let name = ok(&service.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let name = name.trim().to_string();
    let id = ok(&service.docker(&["image", "inspect", "--format", "{{.Id}}", &name]));
    let id = id.trim().to_string();

    // docker save → a docker archive xrun loads elsewhere; docker load of it again.
    let saved = env.scratch().join("saved.tar");
    ok(&service.docker(&["save", &name, "-o", saved.to_str().unwrap()]));
    let env2 = TestEnv::new();
    ok(&xrun(&env2, &["load", "-i", saved.to_str().unwrap()]));
    let v: serde_json::Value =
        serde_json::from_str(&ok(&xrun(&env2, &["images", "--format", "json"]))).unwrap();
    assert_eq!(v[0]["manifest_digest"], id.as_str());

    // tag; an ID with two names is only removed by force.
    ok(&service.docker(&["tag", &name, "demo/two:x"]));
    let short = &id["sha256:".len().."sha256:".len() + 12];
    // The list's filters (computed by the engine): one image with two names.
    for (filter, want) in [
        ("reference=demo/*", short),
        ("reference=demo/two", short),
        ("reference=demo/two:y", ""),
        ("dangling=false", short),
        ("dangling=true", ""),
        ("label=no.such.label", ""),
    ] {
        let listed = ok(&service.docker(&["images", "-q", "--filter", filter]));
        let mut ids: Vec<&str> = listed.lines().collect();
        ids.dedup();
        assert_eq!(ids.join(" "), want, "--filter {filter}");
    }
    for f in ["since", "before"] {
        let listed = ok(&service.docker(&["images", "-q", "--filter", &format!("{f}={name}")]));
        assert_eq!(
            listed.trim(),
            "",
            "nothing is older or newer than the only image"
        );
    }
    let out = service.docker(&["rmi", short]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be forced"));
    let out = ok(&service.docker(&["rmi", "demo/two:x"]));
    assert!(out.contains("Untagged: demo/two:x"), "{out}");
    assert!(
        !out.contains("Deleted"),
        "the image keeps its other name: {out}"
    );

    // rmi the last name: deleted; docker load (from xrun save on stdout) brings it back.
    let out = ok(&service.docker(&["rmi", &name]));
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(ok(&xrun(&env, &["images", "-q"])).trim().is_empty());
    let out = ok(&service.docker(&["load", "-i", saved.to_str().unwrap()]));
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    assert_eq!(ok(&xrun(&env, &["images", "-q"])).trim(), short);

    // xrun save to stdout piped into docker load (and docker save piped into xrun load).
    let mut xsave = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .arg("--root")
        .arg(env.root())
        .args(["save", &name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = Command::new("docker")
        .args(["load"])
        .env("DOCKER_HOST", service.host())
        .stdin(xsave.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(xsave.wait().unwrap().success());
    assert!(ok(&load).contains("Loaded image"));

    // prune -a: nothing uses the image, so it goes with its blobs.
    let out = ok(&service.docker(&["image", "prune", "-a", "-f"]));
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert!(ok(&xrun(&env, &["images", "-q"])).trim().is_empty());
    assert_eq!(
        fs::read_dir(env.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn docker_py_pulls_lists_saves_loads_tags_and_removes() {
    if !Command::new("python3")
        .args(["-c", "import docker"])
        .status()
        .is_ok_and(|s| s.success())
    {
        return common::skip("docker-py is missing (python3-docker)");
    }
    let registry = TestRegistry::start();
    registry.push("busybox-multi", "py:1");
    let env = TestEnv::new();
    let service = Service::start(&env);
    let script = r#"
import docker, sys, json
c = docker.DockerClient(base_url=sys.argv[1])
repo = sys.argv[2]
img = c.images.pull(repo, tag="1", platform="linux/arm/v7")
assert img.attrs["Architecture"] == "arm" and img.attrs["Variant"] == "v7", img.attrs
assert img.attrs["Xrun"]["Platform"] == "linux/arm/v7", img.attrs["Xrun"]
assert repo + ":1" in img.tags, img.tags
assert img.tag("py/copy", "2")
names = sorted(t for i in c.images.list() for t in i.tags)
assert names == sorted([repo + ":1", "py/copy:2"]), names
assert [i.id for i in c.images.list(name="py/copy")] == [img.id]
data = b"".join(img.save(named=True))
c.images.remove("py/copy:2")
c.images.remove(repo + ":1")
assert c.images.list() == []
loaded = c.images.load(data)
assert [i.id for i in loaded] == [img.id], loaded
try:
    c.images.get("nosuch:1")
    raise SystemExit("nosuch found")
except docker.errors.ImageNotFound:
    pass
print("docker-py ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &service.host(), &registry.image("py")])
        .output()
        .unwrap();
    assert!(ok(&out).contains("docker-py ok"));
}

#[test]
fn xrun_check_over_http_is_the_report_of_xrun_check_and_bad_requests_are_docker_errors() {
    let env = TestEnv::new();
    ok(&xrun(
        &env,
        &["load", "-i", fixture("busybox-arm64").to_str().unwrap()],
    ));
    let name = ok(&xrun(&env, &["images", "--format", "json"]));
    let name: serde_json::Value = serde_json::from_str(&name).unwrap();
    let name = format!(
        "{}:{}",
        name[0]["name"].as_str().unwrap(),
        name[0]["tag"].as_str().unwrap()
    );
    let service = Service::start(&env);

    let cli = xrun(
        &env,
        &["check", "--format", "json", "--require", "any", &name],
    );
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    let (code, body) = service.curl(
        "GET",
        &format!("/v1.44/xrun/check?require=any&image={name}"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        cli
    );
    let req = serde_json::json!({"image": name, "require": "any"}).to_string();
    let (code, body) = service.curl("POST", "/xrun/check", Some(req.as_bytes()));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        cli
    );

    // Errors: Docker's status and one JSON message line; nothing half-written.
    let before = fs::read(env.root().join("refs.json")).unwrap();
    let garbage = vec![7u8; 4096];
    for (method, path, body, status, message) in [
        (
            "POST",
            "/xrun/check",
            Some(&b"{not json"[..]),
            400,
            "invalid JSON",
        ),
        (
            "POST",
            "/xrun/check",
            Some(&br#"{"image":"x","bogus":1}"#[..]),
            400,
            "unknown field",
        ),
        (
            "GET",
            "/xrun/check?image=x&bogus=1",
            None,
            400,
            "unknown parameter",
        ),
        ("GET", "/images/nosuch:1/json", None, 404, "no such image"),
        (
            "GET",
            "/images/json?filters=%7Bx",
            None,
            400,
            "invalid filters",
        ),
        (
            "GET",
            "/images/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
            None,
            400,
            "invalid filter",
        ),
        (
            "GET",
            "/images/json?filters=%7B%22since%22%3A%5B%22x%22%5D%7D",
            None,
            404,
            "no such image",
        ),
        (
            "POST",
            "/images/create?fromImage=BAD%20NAME",
            None,
            400,
            "invalid reference",
        ),
        (
            "POST",
            "/images/create?fromImage=x&platform=linux%2Fnope%2Fx%2Fy",
            None,
            400,
            "invalid platform",
        ),
        ("POST", "/images/create?fromSrc=-", None, 501, "fromSrc"),
        (
            "GET",
            "/images/get?names=nosuch",
            None,
            404,
            "no such image",
        ),
        (
            "POST",
            "/images/load",
            Some(&garbage[..]),
            400,
            "the archive",
        ),
        ("POST", "/images/x/tag", None, 400, "repo is required"),
        ("DELETE", "/images/nosuch", None, 404, "no such image"),
        ("GET", "/images/search?term=x", None, 501, "not supported"),
    ] {
        let (code, text) = service.curl(method, path, body);
        assert_eq!(code, status, "{method} {path}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
        let m = v["message"].as_str().unwrap_or_default();
        assert!(m.contains(message), "{method} {path}: {m}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
    }
    assert_eq!(fs::read(env.root().join("refs.json")).unwrap(), before);
    let leftovers: Vec<PathBuf> = fs::read_dir(env.root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn pulls_use_the_credentials_of_x_registry_auth() {
    if !Command::new("python3")
        .args(["-c", "import docker"])
        .status()
        .is_ok_and(|s| s.success())
    {
        return common::skip("docker-py is missing (python3-docker)");
    }
    let registry = TestRegistry::start_with_auth("alice", "s3cret");
    registry.push("busybox-amd64", "private:1");
    let env = TestEnv::new();
    let service = Service::start(&env);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url=sys.argv[1])
repo = sys.argv[2]
try:
    c.images.pull(repo, tag="1")
    raise SystemExit("pulled without credentials")
except docker.errors.APIError as e:
    assert "authentication required" in str(e), str(e)
img = c.images.pull(repo, tag="1", auth_config={"username": "alice", "password": "s3cret"})
assert repo + ":1" in img.tags, img.tags
print("auth ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &service.host(), &registry.image("private")])
        .output()
        .unwrap();
    assert!(ok(&out).contains("auth ok"));
}

#[test]
fn docker_push_goes_through_the_engine_with_x_registry_auth() {
    if docker_ready().is_none() {
        return;
    }
    let registry = TestRegistry::start_with_auth("alice", "s3cret");
    let env = TestEnv::new();
    let image = registry.image("pushed:1");
    ok(&xrun(
        &env,
        &["load", "-i", fixture("busybox-amd64").to_str().unwrap()],
    ));
    let tag = common::fixture_tags("busybox-amd64")[0].clone();
    ok(&xrun(
        &env,
        &["tag", &format!("localhost/busybox-amd64:{tag}"), &image],
    ));
    let service = Service::start(&env);

    // No credentials: refused, nothing pushed.
    let out = service.docker(&["push", &image]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("denied: requested access to the resource is denied"),
        "{err}"
    );

    // The docker CLI sends what its config holds for the registry as X-Registry-Auth.
    let config_dir = service.socket.with_file_name("docker-config");
    fs::create_dir_all(&config_dir).unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:s3cret");
    fs::write(
        config_dir.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let out = ok(&service.docker(&["push", &image]));
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/pushed]",
            registry.addr()
        )),
        "{out}"
    );
    assert!(out.contains("Pushed"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("1: digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line: {out}"));
    let digest = line
        .strip_prefix("1: digest: ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let skopeo = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "alice:s3cret",
        ])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    let stored = fs::read(
        env.root()
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    assert_eq!(ok(&skopeo).into_bytes(), stored);

    let again = ok(&service.docker(&["push", &image]));
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains("Pushed"), "{again}");

    let missing = service.docker(&["push", &registry.image("nosuch:1")]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("does not exist locally"),
        "{missing:?}"
    );
}

/// `docker system df` (and `-v`) against the service: the counts and bytes are xrun's own
/// `system df`, an image used by a container is active, a container's writable layer counts.
#[test]
fn docker_system_df_reports_what_xrun_system_df_reports() {
    let Some(()) = docker_ready() else { return };
    if !nix::unistd::geteuid().is_root() {
        return common::skip("containers need root");
    }
    let env = TestEnv::new();
    ok(&xrun(
        &env,
        &["load", "-i", fixture("busybox-amd64").to_str().unwrap()],
    ));
    let image = "localhost/busybox-amd64:latest";
    // One stopped container with 100 KiB in its writable layer.
    ok(&xrun(
        &env,
        &[
            "run",
            "--name",
            "df-one",
            "--network",
            "none",
            image,
            "sh",
            "-c",
            "head -c 102400 /dev/zero > /blob",
        ],
    ));
    let service = Service::start(&env);
    let rows: Vec<serde_json::Value> = ok(&service.docker(&["system", "df", "--format", "json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mine: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&xrun(&env, &["system", "df", "--format", "json"]))).unwrap();
    let row = |t: &str| {
        rows.iter()
            .find(|r| r["Type"] == t)
            .unwrap_or_else(|| panic!("no {t} row: {rows:?}"))
            .clone()
    };
    let my = |k: &str| mine.iter().find(|r| r["kind"] == k).unwrap().clone();
    for (docker_type, kind) in [("Images", "Images"), ("Containers", "Containers")] {
        let (d, x) = (row(docker_type), my(kind));
        assert_eq!(d["TotalCount"], x["total"].to_string(), "{d} vs {x}");
        assert_eq!(d["Active"], x["active"].to_string(), "{d} vs {x}");
    }
    assert_eq!(
        row("Images")["Active"],
        "1",
        "the image a container uses is active"
    );
    assert_eq!(row("Containers")["TotalCount"], "1");
    assert!(
        my("Containers")["size"].as_u64().unwrap() >= 102400,
        "{mine:?}"
    );
    // The raw endpoint: bytes as xrun counts them, per item.
    let (status, body) = service.curl("GET", "/system/df", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["LayersSize"], my("Images")["size"]);
    assert_eq!(v["Images"][0]["Containers"], 1);
    assert_eq!(v["Containers"][0]["Names"][0], "/df-one");
    assert!(v["Containers"][0]["SizeRw"].as_u64().unwrap() >= 102400);
    assert_eq!(v["Volumes"], serde_json::json!([]));
    let (status, body) = service.curl("GET", "/system/df?type=container", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v.get("Images").is_none() && v["Containers"].is_array(),
        "{v}"
    );
    let (status, _) = service.curl("GET", "/system/df?type=disks", None);
    assert_eq!(status, 400);
    // The verbose form lists the container by name.
    let verbose = ok(&service.docker(&["system", "df", "-v"]));
    assert!(verbose.contains("df-one"), "{verbose}");
    ok(&xrun(&env, &["rm", "df-one"]));
}
