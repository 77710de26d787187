//! `POST /build`, `POST /commit` and `POST /build/prune` of `xrun serve` driven by real
//! clients: the `docker` CLI's classic builder (`DOCKER_BUILDKIT=0 docker build`, its
//! `--build-arg`, `-f`, a failing `RUN`, the cache), `docker commit`, docker-py's
//! `images.build`, and raw requests with hostile context archives. Needs root (RUN steps are
//! real containers) and the docker CLI; skips otherwise.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// `DOCKER_BUILDKIT=0 docker build ARGS` against the service, run in `dir`.
fn docker_build(s: &Service, dir: &Path, args: &[&str]) -> std::process::Output {
    s.docker_cmd()
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(dir)
        .arg("build")
        .args(args)
        .output()
        .unwrap()
}

/// A context directory `name` under the service's temp dir with these files.
fn context(s: &Service, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = s.dir.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    for (f, text) in files {
        fs::write(dir.join(f), text).unwrap();
    }
    dir
}

fn no_containers(s: &Service) {
    let o = s.xrun(&["ps", "-aq"]);
    assert_eq!(out(&o), "", "containers left behind");
}

const APP: &str = "FROM localhost/busybox-multi:multi
ARG GREETING=hello
COPY greeting.txt /greeting.txt
RUN echo step-output-marker && echo \"$GREETING $(cat /greeting.txt)\" > /out.txt
CMD [\"cat\", \"/out.txt\"]
";

#[test]
fn docker_build_classic_builder_builds_runs_caches_and_fails_like_docker() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let ctx = context(
        &s,
        "app",
        &[
            ("Dockerfile", APP),
            ("greeting.txt", "world"),
            (
                "other.Dockerfile",
                "FROM localhost/busybox-multi:multi\nRUN echo about-to-fail && exit 3\n",
            ),
        ],
    );
    let o = docker_build(
        &s,
        &ctx,
        &["--build-arg", "GREETING=hi", "-t", "apitest:1", "."],
    );
    let text = format!("{}{}", out(&o), err(&o));
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("Step 1/5 : FROM localhost/busybox-multi:multi"),
        "{text}"
    );
    assert!(
        text.contains("Step 4/5 : RUN echo step-output-marker"),
        "{text}"
    );
    // The RUN step's own output is in the stream, as Docker's builder shows it.
    assert!(
        text.lines().any(|l| l.trim() == "step-output-marker"),
        "{text}"
    );
    assert!(text.contains("Successfully tagged apitest:1"), "{text}");
    let run = s.docker(&["run", "--rm", "apitest:1"]);
    assert!(run.status.success(), "{}", err(&run));
    assert_eq!(out(&run), "hi world");
    // The CLI sees the same image.
    let o = s.xrun(&["images"]);
    assert!(out(&o).contains("apitest"), "{}", out(&o));

    // Unchanged: every step that makes something (COPY, RUN, CMD) comes from the cache.
    let o = docker_build(
        &s,
        &ctx,
        &["--build-arg", "GREETING=hi", "-t", "apitest:2", "."],
    );
    let text = format!("{}{}", out(&o), err(&o));
    assert!(o.status.success(), "{text}");
    assert_eq!(text.matches("Using cache").count(), 3, "{text}");

    // -f names another Dockerfile of the context; its failing RUN fails the build with the
    // step's message and output, records nothing and leaves no container.
    let o = docker_build(
        &s,
        &ctx,
        &["-f", "other.Dockerfile", "-t", "apitest:bad", "."],
    );
    let text = format!("{}{}", out(&o), err(&o));
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("about-to-fail"), "{text}");
    assert!(
        text.contains(
            "The command '/bin/sh -c echo about-to-fail && exit 3' returned a non-zero code: 3"
        ),
        "{text}"
    );
    let o = s.docker(&["image", "inspect", "apitest:bad"]);
    assert!(!o.status.success());
    no_containers(&s);

    // A Dockerfile that does not parse: one error, non-zero.
    let bad = context(
        &s,
        "bad",
        &[("Dockerfile", "FROM localhost/busybox-multi:multi\nFROB x\n")],
    );
    let o = docker_build(&s, &bad, &["."]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Dockerfile:2"), "{}", err(&o));

    // The cache goes with /build/prune; the next build runs its steps again.
    let r = s.request("POST", "/v1.43/build/prune", None);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert!(
        v["CachesDeleted"].as_array().is_some_and(|a| a.len() >= 3),
        "{v}"
    );
    assert!(v["SpaceReclaimed"].as_u64().is_some());
    let o = docker_build(
        &s,
        &ctx,
        &["--build-arg", "GREETING=hi", "-t", "apitest:3", "."],
    );
    let text = format!("{}{}", out(&o), err(&o));
    assert!(o.status.success(), "{text}");
    assert!(!text.contains("Using cache"), "{text}");
}

#[test]
fn docker_commit_records_the_containers_changes_with_changes_applied() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let o = s.docker(&[
        "run",
        "--name",
        "tocommit",
        IMAGE,
        "sh",
        "-c",
        "echo committed-data > /c.txt",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.docker(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/c.txt\"]",
        "-c",
        "ENV MODE=api",
        "-m",
        "via api",
        "-a",
        "tester",
        "tocommit",
        "committed:1",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o);
    assert!(id.starts_with("sha256:"), "{id}");
    let run = s.docker(&["run", "--rm", "committed:1"]);
    assert_eq!(out(&run), "committed-data", "{}", err(&run));
    let run = s.docker(&["run", "--rm", "committed:1", "sh", "-c", "echo $MODE"]);
    assert_eq!(out(&run), "api");
    let o = s.docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}} {{.Author}} {{.Comment}}",
        "committed:1",
    ]);
    assert_eq!(out(&o), format!("{id} tester via api"));
    // Bad input: an unknown container is a 404, a RUN change a 400; nothing recorded.
    let r = s.request("POST", "/v1.43/commit?container=nosuch&repo=x", None);
    assert_eq!(r.status, 404);
    let r = s.request(
        "POST",
        "/v1.43/commit?container=tocommit&repo=x&changes=RUN%20true",
        None,
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(!s.docker(&["image", "inspect", "x"]).status.success());
    let _ = s.docker(&["rm", "tocommit"]);
}

#[test]
fn docker_py_images_build_returns_an_image_that_inspects() {
    if !have_docker() {
        return;
    }
    if !Command::new("python3")
        .args(["-c", "import docker"])
        .status()
        .is_ok_and(|s| s.success())
    {
        return common::skip("docker-py is missing (python3-docker)");
    }
    let s = Service::start();
    let ctx = context(&s, "py", &[("Dockerfile", APP), ("greeting.txt", "py")]);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url=sys.argv[1])
img, logs = c.images.build(path=sys.argv[2], tag="pybuild:1", buildargs={"GREETING": "from-py"})
logs = list(logs)
assert any("Step 1/5" in l.get("stream", "") for l in logs), logs
assert "pybuild:1" in img.tags, img.tags
assert c.images.get(img.id).id == img.id
print(img.id)
print(c.containers.run("pybuild:1", remove=True).decode().strip())
"#;
    let o = Command::new("python3")
        .args([
            "-c",
            script,
            &format!("unix://{}", s.socket().display()),
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let mut lines = text.lines();
    let id = lines.next().unwrap();
    assert_eq!(lines.next(), Some("from-py py"));
    let o = s.xrun(&["inspect", id]);
    assert!(o.status.success(), "{}", err(&o));
}

/// A tar with raw entry names (the tar crate's builder would refuse the hostile ones).
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_contexts_are_refused_with_400_and_write_nothing_outside() {
    if !have_docker() {
        return;
    }
    let s = Service::start();
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    let escape = format!("../../../../../../../..{}", victim.display());
    let df: &[u8] = b"FROM localhost/busybox-multi:multi\n";
    let cases = [
        raw_tar(&[
            ("Dockerfile", tar::EntryType::Regular, df, None),
            (&escape, tar::EntryType::Regular, b"x", None),
        ]),
        raw_tar(&[
            ("Dockerfile", tar::EntryType::Regular, df, None),
            (
                victim.to_str().unwrap(),
                tar::EntryType::Regular,
                b"x",
                None,
            ),
        ]),
        raw_tar(&[
            ("Dockerfile", tar::EntryType::Regular, df, None),
            (
                "l",
                tar::EntryType::Symlink,
                b"",
                Some(outside.to_str().unwrap()),
            ),
            ("l/victim", tar::EntryType::Regular, b"x", None),
        ]),
    ];
    for (i, body) in cases.iter().enumerate() {
        let r = s.request("POST", &format!("/v1.43/build?t=hostile:{i}"), Some(body));
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 400, "case {i}: {text}");
        assert!(
            !text.contains('\n') || text.trim_end().lines().count() == 1,
            "{text}"
        );
        assert!(!victim.exists(), "case {i} wrote outside the context");
    }
    // Not a tar at all; a Dockerfile named outside the context; the BuildKit protocol.
    let r = s.request(
        "POST",
        "/v1.43/build",
        Some(b"this is not a tar archive, not at all"),
    );
    assert_eq!(r.status, 400);
    let ok_tar = raw_tar(&[("Dockerfile", tar::EntryType::Regular, df, None)]);
    let r = s.request(
        "POST",
        "/v1.43/build?dockerfile=../Dockerfile",
        Some(&ok_tar),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = s.request("POST", "/v1.43/build?version=2", Some(&ok_tar));
    assert_eq!(r.status, 400);
    // Nothing was recorded and the unpacked contexts are gone.
    let o = s.xrun(&["images"]);
    assert!(!out(&o).contains("hostile"), "{}", out(&o));
    let tmp = s.root().join("tmp");
    let left: Vec<_> = fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().contains("build-context")),
        "{left:?}"
    );
    // A gzip context builds (the docker CLI's --compress, docker-py's gzip=True).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &ok_tar).unwrap();
    let r = s.request("POST", "/v1.43/build?t=gz:1", Some(&gz.finish().unwrap()));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{text}");
    assert!(text.contains("\"aux\":{\"ID\":\"sha256:"), "{text}");
    assert!(text.contains("Successfully tagged gz:1"), "{text}");
    assert!(!text.contains("errorDetail"), "{text}");
}
