//! `xrun build` on one platform: Dockerfile → image in the store → `xrun run`; the step
//! cache; bit-identical rebuilds; bad input (one line, the right exit code, nothing left).
//! Needs root (RUN steps are real containers); skips otherwise.

mod common;

use std::fs;

use common::{TestEnv, fixture, is_root, skip};

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.cmd()
        .args(["load", "-i", fixture("busybox-amd64").to_str().unwrap()])
        .assert()
        .success();
    env
}

/// Runs `xrun build ARGS` in `env`; (exit code, stdout, stderr).
fn build(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let out = env.cmd().arg("build").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn context(env: &TestEnv, dockerfile: &str) -> std::path::PathBuf {
    let dir = env.scratch().join("ctx");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// The progress lines' step numbers (`#N`) that ended CACHED, and the texts of all steps.
fn steps(stderr: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, String, bool)> = Vec::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let (n, what) = rest.split_once(' ').unwrap_or((rest, ""));
        if what.starts_with('[') {
            let text = what.split_once("] ").map(|(_, t)| t).unwrap_or("");
            out.push((n.to_string(), text.to_string(), false));
        } else if what == "CACHED"
            && let Some(s) = out.iter_mut().find(|s| s.0 == n)
        {
            s.2 = true;
        }
    }
    out.into_iter().map(|(_, t, c)| (t, c)).collect()
}

fn no_leftovers(env: &TestEnv) {
    let ps = env.cmd().args(["ps", "-a", "-q"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "containers left: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = env.root().display().to_string();
    assert!(
        !mounts.contains(&root),
        "mounts left under {root}: {mounts}"
    );
}

fn images(env: &TestEnv) -> String {
    let out = env.cmd().args(["images"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const APP: &str = "FROM localhost/busybox-amd64
ARG GREETING=hello
ENV APP=/app \\
    MODE=test
COPY data.txt *.conf $APP/
RUN echo \"$GREETING $MODE $(cat /app/data.txt)\" > /app/out.txt && rm /etc/group
WORKDIR /app
RUN ls /app > list.txt
LABEL org.example.kind=\"demo app\"
EXPOSE 8080
CMD [\"cat\", \"/app/out.txt\"]
";

#[test]
fn builds_runs_and_reuses_the_cache() {
    if !is_root() {
        return skip("RUN steps need root");
    }
    let env = env_with_busybox();
    let ctx = context(&env, APP);
    fs::write(ctx.join("data.txt"), "one").unwrap();
    fs::write(ctx.join("a.conf"), "a").unwrap();
    fs::write(ctx.join("b.conf"), "b").unwrap();
    fs::write(ctx.join(".dockerignore"), "b.conf\n").unwrap();
    let c = ctx.to_str().unwrap();
    let (code, _, err) = build(
        &env,
        &[
            "--progress",
            "plain",
            "-t",
            "localhost/app:1",
            "--build-arg",
            "GREETING=hi",
            c,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let first = steps(&err);
    assert_eq!(first.len(), 10, "{err}");
    assert!(first.iter().all(|(_, cached)| !cached), "{err}");
    assert!(first[4].0.starts_with("RUN echo"), "{first:?}");

    // The image runs with its CMD, sees the RUN's result, the COPY's globbed files (not the
    // ignored one) and the deleted file is gone.
    let run = env
        .cmd()
        .args(["run", "--rm", "localhost/app:1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "hi test one");
    let run = env
        .cmd()
        .args([
            "run",
            "--rm",
            "localhost/app:1",
            "sh",
            "-c",
            "cat list.txt; pwd; test -e /etc/group || echo nogroup",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "a.conf\ndata.txt\nlist.txt\nout.txt\n/app\nnogroup\n"
    );
    let inspect = env
        .cmd()
        .args(["inspect", "localhost/app:1"])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.contains("demo app"), "{inspect}");
    assert!(inspect.contains("8080/tcp"), "{inspect}");
    no_leftovers(&env);

    // Unchanged: every RUN and COPY comes from the cache, same image.
    let (code, _, err2) = build(
        &env,
        &[
            "--progress",
            "plain",
            "-t",
            "localhost/app:1",
            "--build-arg",
            "GREETING=hi",
            c,
        ],
    );
    assert_eq!(code, 0, "{err2}");
    let again = steps(&err2);
    for (text, cached) in &again[1..] {
        if !text.starts_with("ARG") {
            assert!(cached, "{text} was not cached:\n{err2}");
        }
    }
    let digest = |e: &str| {
        e.lines()
            .find_map(|l| l.strip_prefix("writing image "))
            .map(str::to_string)
    };
    assert_eq!(digest(&err), digest(&err2));

    // One COPY source changes: the steps before it are cached, it and the later RUNs run.
    fs::write(ctx.join("data.txt"), "two").unwrap();
    let (code, _, err3) = build(
        &env,
        &[
            "--progress",
            "plain",
            "-t",
            "localhost/app:1",
            "--build-arg",
            "GREETING=hi",
            c,
        ],
    );
    assert_eq!(code, 0, "{err3}");
    let third = steps(&err3);
    let cached: Vec<bool> = third.iter().map(|s| s.1).collect();
    assert!(third[2].1, "ENV before the COPY is cached: {err3}");
    assert!(
        !third[3].1 && !third[4].1 && !third[6].1,
        "COPY and later RUNs run again: {cached:?}\n{err3}"
    );
    // Changing an ignored file changes nothing.
    fs::write(ctx.join("b.conf"), "changed").unwrap();
    let (_, _, err4) = build(
        &env,
        &[
            "--progress",
            "plain",
            "-t",
            "localhost/app:1",
            "--build-arg",
            "GREETING=hi",
            c,
        ],
    );
    assert!(steps(&err4)[3].1, "{err4}");
    let run = env
        .cmd()
        .args(["run", "--rm", "localhost/app:1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "hi test two");
    no_leftovers(&env);
}

#[test]
fn an_unchanged_build_is_bit_identical_without_the_cache() {
    if !is_root() {
        return skip("RUN steps need root");
    }
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "FROM localhost/busybox-amd64\nCOPY f /f\nRUN mkdir /d && echo x > /d/y\nCMD [\"cat\", \"/d/y\"]\n",
    );
    fs::write(ctx.join("f"), "f").unwrap();
    let c = ctx.to_str().unwrap();
    let mut digests = Vec::new();
    for _ in 0..2 {
        let out = env
            .cmd()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-q", "--no-cache", "-t", "localhost/same", c])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        digests.push(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(digests[0], digests[1]);
    assert!(digests[0].starts_with("sha256:"));
}

#[test]
fn multi_stage_target_args_add_and_output() {
    if !is_root() {
        return skip("RUN steps need root");
    }
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ARG BASE=localhost/busybox-amd64
FROM $BASE AS builder
ARG TARGETARCH
RUN mkdir -p /out && echo \"built for $TARGETARCH\" > /out/result
FROM scratch AS bare
COPY --from=builder /out/result /result
FROM ${BASE}
ADD archive.tar.gz /unpacked/
COPY --from=builder --chown=1000:1000 --chmod=640 /out/result /copied/
COPY --chown=1000:1000 <<EOF /inline.txt
inline text
EOF
USER 1000:1000
ENTRYPOINT [\"sh\", \"-c\"]
CMD [\"id -u; cat /copied/result /unpacked/inner.txt /inline.txt; stat -c %a /copied/result\"]
",
    );
    // A gzip tar for ADD to extract.
    let src = env.scratch().join("tarsrc");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("inner.txt"), "from the tar\n").unwrap();
    let st = std::process::Command::new("tar")
        .args([
            "-czf",
            ctx.join("archive.tar.gz").to_str().unwrap(),
            "-C",
            src.to_str().unwrap(),
            "inner.txt",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let c = ctx.to_str().unwrap();
    let layout = env.scratch().join("out.tar");
    let out_flag = format!("type=oci,dest={}", layout.display());
    let (code, _, err) = build(&env, &["-t", "localhost/ms", "--output", &out_flag, c]);
    assert_eq!(code, 0, "{err}");
    let run = env
        .cmd()
        .args(["run", "--rm", "localhost/ms"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "1000\nbuilt for amd64\nfrom the tar\ninline text\n640\n",
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // --target builds only up to that stage (the scratch one: one file, no shell).
    let (code, _, err) = build(
        &env,
        &[
            "--progress",
            "plain",
            "-t",
            "localhost/bare",
            "--target",
            "bare",
            c,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("ADD"), "a later stage ran: {err}");
    // The OCI layout tar is one skopeo reads.
    match std::process::Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", layout.display())])
        .output()
    {
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(String::from_utf8_lossy(&o.stdout).contains("\"Architecture\": \"amd64\""));
        }
        Err(_) => skip("no skopeo to read the --output layout"),
    }
    no_leftovers(&env);
}

fn refused(env: &TestEnv, dockerfile: &str, expect_code: i32, expect: &str) {
    let ctx = context(env, dockerfile);
    fs::write(ctx.join("present.txt"), "p").unwrap();
    let before = images(env);
    let (code, _, err) = build(env, &["-t", "localhost/bad", ctx.to_str().unwrap()]);
    assert_eq!(code, expect_code, "{dockerfile}\n{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("xrun: "), "{err}");
    assert!(last.contains(expect), "expected {expect:?} in {last:?}");
    assert_eq!(images(env), before, "an image was recorded");
    no_leftovers(env);
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    if !is_root() {
        return skip("RUN steps need root");
    }
    let env = env_with_busybox();
    refused(
        &env,
        "FROM localhost/busybox-amd64\nRUN true\nFROB x\n",
        125,
        "Dockerfile:3:",
    );
    refused(
        &env,
        "FROM localhost/busybox-amd64\nCOPY [\"a\"\n",
        125,
        "Dockerfile:2:",
    );
    refused(
        &env,
        "FROM localhost/busybox-amd64\nCOPY missing.txt /\n",
        125,
        "not found in the build context",
    );
    refused(
        &env,
        "FROM localhost/busybox-amd64\nCOPY ../../etc/passwd /\n",
        125,
        "outside the build context",
    );
    refused(
        &env,
        "FROM localhost/busybox-amd64\nADD http://example.invalid/x /\n",
        125,
        "no internet",
    );
    refused(
        &env,
        "FROM localhost/busybox-amd64\nCOPY present.txt /\nRUN echo partial > /p && exit 3\n",
        1,
        "The command '/bin/sh -c echo partial > /p && exit 3' returned a non-zero code: 3",
    );
    refused(
        &env,
        "FROM localhost/busybox-amd64 AS a\nCOPY --from=b /x /x\nFROM localhost/busybox-amd64 AS b\nCOPY --from=a /y /y\n",
        125,
        "circular dependency",
    );
    refused(
        &env,
        "FROM localhost/busybox-amd64\nRUN --mount=type=cache,target=/c true\n",
        125,
        "not supported",
    );
    let (code, _, err) = build(&env, &["-t", "localhost/x", "/nonexistent-context"]);
    assert_eq!(code, 125, "{err}");
}

#[test]
fn commit_makes_the_writable_layer_an_image() {
    if !is_root() {
        return skip("containers need root");
    }
    let env = env_with_busybox();
    let run = env
        .cmd()
        .args([
            "run",
            "--name",
            "work",
            "localhost/busybox-amd64",
            "sh",
            "-c",
            "echo saved > /saved; rm /etc/group",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = env
        .cmd()
        .args([
            "commit",
            "-c",
            "CMD [\"cat\", \"/saved\"]",
            "-c",
            "ENV MODE=committed",
            "-m",
            "by test",
            "work",
            "localhost/committed:1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
    let o = env
        .cmd()
        .args(["run", "--rm", "localhost/committed:1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "saved\n");
    let o = env
        .cmd()
        .args([
            "run",
            "--rm",
            "localhost/committed:1",
            "sh",
            "-c",
            "echo $MODE; test -e /etc/group || echo gone",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "committed\ngone\n");
    let inspect = env
        .cmd()
        .args(["inspect", "localhost/committed:1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("by test"));
    // Bad input: one line, 125.
    for args in [
        vec!["commit", "nosuch", "localhost/x"],
        vec!["commit", "-c", "RUN true", "work", "localhost/x"],
    ] {
        let o = env.cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(125));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!images(&env).contains("localhost/x"));
}

#[test]
fn onbuild_triggers_run_in_the_child_build_and_are_not_inherited() {
    if !is_root() {
        return skip("RUN steps need root");
    }
    let env = env_with_busybox();
    let base = env.scratch().join("base");
    fs::create_dir_all(&base).unwrap();
    fs::write(
        base.join("Dockerfile"),
        "FROM localhost/busybox-amd64\nONBUILD COPY app.txt /app.txt\nONBUILD RUN echo trigger-output && cat /app.txt > /seen\n",
    )
    .unwrap();
    let (code, _, err) = build(&env, &["-t", "localhost/onbase:1", base.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // The base's own build does not run its triggers: it has no app.txt.
    let inspect = env
        .cmd()
        .args(["inspect", "localhost/onbase:1"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        v["config"]["config"]["OnBuild"],
        serde_json::json!([
            "COPY app.txt /app.txt",
            "RUN echo trigger-output && cat /app.txt > /seen"
        ])
    );

    let child = env.scratch().join("child");
    fs::create_dir_all(&child).unwrap();
    fs::write(child.join("app.txt"), "child-app").unwrap();
    fs::write(
        child.join("Dockerfile"),
        "FROM localhost/onbase:1\nCMD [\"cat\", \"/seen\"]\n",
    )
    .unwrap();
    let (code, _, err) = build(
        &env,
        &[
            "--progress",
            "plain",
            "-t",
            "localhost/onchild:1",
            child.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Executing 2 build triggers"), "{err}");
    // The trigger's RUN output is in the progress, as Docker shows a step's output.
    assert!(err.lines().any(|l| l.trim() == "trigger-output"), "{err}");
    let run = env
        .cmd()
        .args(["run", "--rm", "localhost/onchild:1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "child-app");
    // A grandchild does not run them again (the child's config has no OnBuild).
    let inspect = env
        .cmd()
        .args(["inspect", "localhost/onchild:1"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert!(v["config"]["config"]["OnBuild"].is_null(), "{v}");

    // Triggers ONBUILD refuses, and a Dockerfile over the size cap: one line, 125.
    for (df, expect) in [
        (
            "FROM localhost/busybox-amd64\nONBUILD ONBUILD RUN true\n",
            "Dockerfile:2:",
        ),
        (
            "FROM localhost/busybox-amd64\nONBUILD FROM busybox\n",
            "Dockerfile:2:",
        ),
        (
            "FROM localhost/busybox-amd64\nONBUILD MAINTAINER me\n",
            "Dockerfile:2:",
        ),
    ] {
        refused(&env, df, 125, expect);
    }
    let mut big = String::from("FROM localhost/busybox-amd64\n");
    while big.len() <= 4 << 20 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    refused(&env, &big, 125, "larger than 4 MiB");
    let ctx = context(&env, "FROM localhost/busybox-amd64\n");
    fs::write(ctx.join(".dockerignore"), "x".repeat((4 << 20) + 1)).unwrap();
    refused(
        &env,
        "FROM localhost/busybox-amd64\n",
        125,
        ".dockerignore is larger",
    );
    fs::remove_file(ctx.join(".dockerignore")).unwrap();
}

#[test]
fn builder_prune_removes_the_cache() {
    if !is_root() {
        return skip("RUN steps need root");
    }
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "FROM localhost/busybox-amd64\nRUN echo one > /one\nCMD [\"cat\", \"/one\"]\n",
    );
    let c = ctx.to_str().unwrap();
    let (code, _, err) = build(&env, &["--progress", "plain", "-t", "localhost/pr:1", c]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = build(&env, &["--progress", "plain", "-t", "localhost/pr:1", c]);
    assert_eq!(code, 0, "{err}");
    assert!(
        steps(&err).iter().skip(1).all(|(_, cached)| *cached),
        "{err}"
    );
    let o = env.cmd().args(["builder", "prune", "-f"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Deleted build cache objects: 2"), "{text}");
    let (code, _, err) = build(&env, &["--progress", "plain", "-t", "localhost/pr:1", c]);
    assert_eq!(code, 0, "{err}");
    assert!(steps(&err).iter().all(|(_, cached)| !cached), "{err}");
    // The image itself is untouched.
    let run = env
        .cmd()
        .args(["run", "--rm", "localhost/pr:1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "one\n");
}
