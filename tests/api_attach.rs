//! `docker run` attached through `xrun serve` (create, attach, wait, start), `run -it` on a
//! terminal, `docker attach` with the detach keys, and docker-py's programmatic paths.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use std::io::Write;
use std::process::Stdio;

use support::*;

#[test]
fn docker_run_attached_gives_output_stdin_and_exit_codes() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let o = s.docker(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert_eq!(out(&o), "out");
    assert_eq!(err(&o).trim(), "err");

    let mut c = s
        .docker_cmd()
        .args(["run", "--rm", "-i", IMAGE, "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    // stdin may arrive (and close) before the container starts: none of it may be lost.
    let o = output_within(
        c,
        std::time::Duration::from_secs(120),
        "docker run -i lost its piped stdin or its end",
    );
    assert_eq!(out(&o), "piped\nend", "{}", err(&o));

    let o = s.docker(&["run", "--rm", IMAGE, "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    let o = s.docker(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        IMAGE,
        "uname",
        "-m",
    ]);
    assert_eq!(out(&o), "aarch64", "{}", err(&o));
    // --rm containers are gone once the CLI returns.
    let o = s.docker(&["ps", "-aq"]);
    assert_eq!(out(&o), "");
    assert_eq!(out(&s.xrun(&["ps", "-aq"])), "");
}

/// Runs `docker ARGS` on a terminal (script(1)), feeding `keys` after the prompt came.
fn on_terminal(s: &Service, args: &str, keys: &[&[u8]]) -> String {
    let cmd = format!(
        "DOCKER_HOST=unix://{} DOCKER_CONFIG={} docker {args}",
        s.socket().display(),
        s.dir.path().join("docker-config").display()
    );
    let mut c = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let mut child_out = c.stdout.take().unwrap();
    // Each piece of input goes once the output shows the shell is ready for it.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut child_out, &mut buf) {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    });
    for k in keys {
        std::thread::sleep(std::time::Duration::from_millis(700));
        let _ = stdin.write_all(k);
        let _ = stdin.flush();
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    drop(stdin);
    let _ = c.wait();
    String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "")
}

#[test]
fn run_it_on_a_terminal_and_attach_with_detach_keys() {
    if !have_docker()
        || std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_err()
    {
        return;
    }
    let s = Service::start();
    let screen = on_terminal(
        &s,
        &format!("run --rm -it {IMAGE} sh"),
        &[b"tty; echo in-$((6*7))\n", b"exit\n"],
    );
    assert!(screen.contains("/dev/pts/"), "{screen}");
    assert!(screen.contains("in-42"), "{screen}");

    let o = s.docker(&["run", "-dit", "--name", "sh1", IMAGE, "sh"]);
    assert!(o.status.success(), "{}", err(&o));
    let screen = on_terminal(&s, "attach sh1", &[b"echo first-$((1+1))\n", b"\x10\x11"]);
    assert!(screen.contains("first-2"), "{screen}");
    assert!(screen.contains("read escape sequence"), "{screen}");
    let o = s.docker(&["inspect", "-f", "{{.State.Running}}", "sh1"]);
    assert_eq!(out(&o), "true", "detaching leaves it running");
    // Attach again: the same shell answers (its variable is still set).
    let screen = on_terminal(&s, "attach sh1", &[b"X=kept; echo $X-again\n", b"\x10\x11"]);
    assert!(screen.contains("kept-again"), "{screen}");
    let screen = on_terminal(
        &s,
        "attach --detach-keys ctrl-x sh1",
        &[b"echo $X\n", b"\x18"],
    );
    assert!(screen.contains("kept"), "{screen}");
    let o = s.docker(&["inspect", "-f", "{{.State.Running}}", "sh1"]);
    assert_eq!(out(&o), "true");
    let o = s.docker(&["exec", "-t", "sh1", "sh", "-c", "tty"]);
    assert!(out(&o).starts_with("/dev/pts/"), "{}", out(&o));
    let o = s.docker(&["rm", "-f", "sh1"]);
    assert!(o.status.success());
}

#[test]
fn docker_py_drives_the_service() {
    if !have_docker() {
        return;
    }
    let have_py = std::process::Command::new("python3")
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_py {
        common::skip("docker-py (python3-docker) is not installed");
        return;
    }
    let s = Service::start();
    let script = format!(
        r#"
import docker, sys
c = docker.DockerClient(base_url="unix://{sock}")
assert c.ping()
assert c.version()["ApiVersion"] == "1.44"
out = c.containers.run("{img}", ["sh", "-c", "echo hello; echo oops >&2"], remove=True, stderr=True)
# stdout and stderr come through separate pipes: their order is not fixed.
assert sorted(out.splitlines()) == [b"hello", b"oops"], out
k = c.containers.run("{img}", ["sleep", "300"], detach=True, name="py1", labels={{"who": "py"}})
k.reload()
assert k.status == "running", k.status
assert k.labels == {{"who": "py"}}, k.labels
assert [x.name for x in c.containers.list(filters={{"label": "who=py"}})] == ["py1"]
r = k.exec_run(["sh", "-c", "echo $((40+2)); exit 7"])
assert r.exit_code == 7 and r.output == b"42\n", r
k.stop(timeout=1)
assert k.wait()["StatusCode"] == 137
k.remove()
try:
    c.containers.get("py1")
    sys.exit("still there")
except docker.errors.NotFound:
    pass
try:
    c.containers.create("{img}", "true", privileged=True)
    sys.exit("privileged accepted")
except docker.errors.APIError as e:
    assert e.status_code == 400, e
print("ok")
"#,
        sock = s.socket().display(),
        img = IMAGE
    );
    let o = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(out(&o), "ok", "{}\n{}", err(&o), s.log());
}
