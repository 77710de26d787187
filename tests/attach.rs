//! Attaching to detached containers: the monitor keeps their stdin and terminal; clients
//! attach (several at once), see the output live or replayed from the start of the run,
//! send stdin, close it, resize the terminal and detach with the detach keys while the
//! container keeps running. Driven through the engine as a library (the API's way) and
//! through the CLI on a real terminal (tmux).

#[path = "run_support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::*;
use xrun::engine::{AttachEvent, AttachEvents, AttachRequest, Engine, Stream};

/// Collects output until `want` appears on `stream` (or the events end: then it panics).
fn read_until(events: &AttachEvents, stream: Stream, want: &str) -> String {
    let mut seen = String::new();
    loop {
        match events.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(AttachEvent::Output(s, d))) if s == stream => {
                seen.push_str(&String::from_utf8_lossy(&d));
                if seen.contains(want) {
                    return seen;
                }
            }
            Ok(Some(AttachEvent::Output(..))) => {}
            other => panic!("waiting for {want:?} (seen {seen:?}): {other:?}"),
        }
    }
}

/// Output on both streams until stdout ends with `out` and stderr with `err`.
fn read_both(events: &AttachEvents, out: &str, err: &str) -> (String, String) {
    let (mut o, mut e) = (String::new(), String::new());
    while !(o.ends_with(out) && e.ends_with(err)) {
        match events.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(AttachEvent::Output(Stream::Stdout, d))) => {
                o.push_str(&String::from_utf8_lossy(&d))
            }
            Ok(Some(AttachEvent::Output(Stream::Stderr, d))) => {
                e.push_str(&String::from_utf8_lossy(&d))
            }
            other => panic!("waiting for {out:?}/{err:?} (seen {o:?}/{e:?}): {other:?}"),
        }
    }
    (o, e)
}

/// Everything until the end: (stdout, stderr, the last event).
fn drain(events: &AttachEvents) -> (String, String, Option<AttachEvent>) {
    let (mut out, mut err) = (String::new(), String::new());
    loop {
        match events.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(AttachEvent::Output(Stream::Stdout, d))) => {
                out.push_str(&String::from_utf8_lossy(&d))
            }
            Ok(Some(AttachEvent::Output(Stream::Stderr, d))) => {
                err.push_str(&String::from_utf8_lossy(&d))
            }
            Ok(last) => return (out, err, last),
            Err(()) => panic!("no end after 30 s: {out:?} {err:?}"),
        }
    }
}

fn run_detached(root: &Root, flags: &[&str], cmd: &[&str]) -> String {
    let rootfs = busybox_rootfs();
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(flags);
    args.extend(["--rootfs", rootfs.to_str().unwrap()]);
    args.extend_from_slice(cmd);
    let o = root.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn clients_share_stdin_and_output_and_see_the_exit() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let id = run_detached(
        &root,
        &["-i", "--name", "echo"],
        &[
            "sh",
            "-c",
            "echo started; while read l; do echo \"got $l\"; echo \"err $l\" >&2; done; exit 4",
        ],
    );
    let engine = Engine::open(root.path());
    // A first client without stdin, a second one with: both see what the second sends.
    let a = engine
        .attach("echo", AttachRequest::default())
        .expect("attach");
    assert!(!a.tty);
    assert_eq!(a.id, id);
    let b = engine
        .attach(
            &id[..12],
            AttachRequest {
                stdin: true,
                replay: true,
                ..AttachRequest::default()
            },
        )
        .unwrap();
    // The replay: what the run wrote before this client came, once.
    let seen = read_until(&b.events, Stream::Stdout, "started\n");
    assert_eq!(seen, "started\n");
    b.input.stdin(b"one\n");
    // (The first client may have come before the shell said "started".)
    let (out, err) = read_both(&a.events, "got one\n", "err one\n");
    assert!(out == "got one\n" || out == "started\ngot one\n", "{out:?}");
    assert_eq!(err, "err one\n");
    let (out, err) = read_both(&b.events, "got one\n", "err one\n");
    assert_eq!((out.as_str(), err.as_str()), ("got one\n", "err one\n"));
    // A third, late client with the replay: the whole run in order, nothing twice.
    let c = engine
        .attach(
            &id,
            AttachRequest {
                stderr: false,
                replay: true,
                ..AttachRequest::default()
            },
        )
        .unwrap();
    assert_eq!(
        read_until(&c.events, Stream::Stdout, "got one\n"),
        "started\ngot one\n"
    );
    // Closing stdin ends the loop: every client gets the exit code.
    b.input.stdin(b"two\n");
    b.input.close_stdin();
    let (out, err, last) = drain(&a.events);
    assert_eq!((out.as_str(), err.as_str()), ("got two\n", "err two\n"));
    assert_eq!(last, Some(AttachEvent::Exited(Some(4))));
    let (out, _, last) = drain(&b.events);
    assert_eq!(out, "got two\n");
    assert_eq!(last, Some(AttachEvent::Exited(Some(4))));
    let (out, err, last) = drain(&c.events);
    assert_eq!((out.as_str(), err.as_str()), ("got two\n", ""));
    assert_eq!(last, Some(AttachEvent::Exited(Some(4))));
    assert!(wait_for(10, || engine.inspect(&id).unwrap().exit_code == Some(4)));
    // The log has all of it.
    let o = root.run(&["logs", &id]);
    assert_eq!(stdout(&o), "started\ngot one\ngot two\n");
    let o = root.run(&["rm", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn attaching_before_the_start_sees_the_whole_run() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let engine = Engine::open(root.path());
    // `docker run` through the API: create, attach, start; a --rm container that is gone at
    // once must still be seen whole, every time.
    for i in 0..10 {
        let o = root.run(&[
            "create",
            "--rm",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "sh",
            "-c",
            &format!("echo out-{i}; echo err-{i} >&2; exit {i}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let id = stdout(&o).trim().to_string();
        let a = engine
            .attach(
                &id,
                AttachRequest {
                    replay: true,
                    ..AttachRequest::default()
                },
            )
            .unwrap();
        let o = root.run(&["start", &id]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (out, err, last) = drain(&a.events);
        assert_eq!(out, format!("out-{i}\n"));
        assert_eq!(err, format!("err-{i}\n"));
        assert_eq!(last, Some(AttachEvent::Exited(Some(i))));
        assert!(
            wait_for(10, || engine.inspect(&id).is_err()),
            "--rm left {id}"
        );
    }
    // `docker run -i` through the API: stdin attached before the start, closed at its end.
    let o = root.run(&[
        "create",
        "-i",
        "--rm",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sh",
        "-c",
        "cat; echo done; exit 4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let a = engine
        .attach(
            &id,
            AttachRequest {
                stdin: true,
                ..AttachRequest::default()
            },
        )
        .unwrap();
    a.input.stdin(b"a\nb\n");
    a.input.close_stdin();
    assert!(root.run(&["start", &id]).status.success());
    let (out, _, last) = drain(&a.events);
    assert_eq!(out, "a\nb\ndone\n");
    assert_eq!(last, Some(AttachEvent::Exited(Some(4))));
    // A stopped container restarted: the attachment sees the new run only.
    let id = run_detached(&root, &[], &["sh", "-c", "echo run; exit 2"]);
    assert!(wait_for(10, || engine.inspect(&id).unwrap().exit_code == Some(2)));
    let a = engine
        .attach(
            &id,
            AttachRequest {
                replay: true,
                ..AttachRequest::default()
            },
        )
        .unwrap();
    let o = root.run(&["start", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (out, _, last) = drain(&a.events);
    assert_eq!(out, "run\n");
    assert_eq!(last, Some(AttachEvent::Exited(Some(2))));
    assert_eq!(stdout(&root.run(&["logs", &id])), "run\nrun\n");
    // Not attachable: no such container.
    let e = engine
        .attach("nope", AttachRequest::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("no such container"), "{e}");
}

#[test]
fn detach_keys_leave_the_container_running() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let id = run_detached(&root, &["-it"], &["sh"]);
    let engine = Engine::open(root.path());
    let a = engine
        .attach(
            &id,
            AttachRequest {
                stdin: true,
                ..AttachRequest::default()
            },
        )
        .unwrap();
    assert!(a.tty);
    a.input.resize(33, 101);
    a.input.stdin(b"stty size; echo x-$((6*7))\n");
    let seen = read_until(&a.events, Stream::Stdout, "x-42");
    assert!(seen.contains("33 101"), "{seen:?}");
    // Closing stdin does not close a terminal (a client that ends leaves the shell).
    a.input.close_stdin();
    a.input.stdin(b"echo still-$((1+1))\n");
    read_until(&a.events, Stream::Stdout, "still-2");
    // Ctrl+P then Ctrl+Q, split across writes: detached, still running.
    a.input.stdin(b"\x10");
    a.input.stdin(b"\x11echo never\n");
    let (_, _, last) = drain(&a.events);
    assert_eq!(last, Some(AttachEvent::Detached));
    assert!(engine.inspect(&id).unwrap().is_running());
    // A later client gets the terminal, sized its way; what the first typed after the keys
    // never reached the shell.
    let b = engine
        .attach(
            &id,
            AttachRequest {
                stdin: true,
                detach_keys: xrun::engine::DetachKeys::parse("ctrl-x").unwrap(),
                ..AttachRequest::default()
            },
        )
        .unwrap();
    // Resizes through the engine (the API's endpoint), each on a connection of its own
    // that the monitor lets go: its threads do not pile up.
    let threads = || {
        let pid = engine.inspect(&id).unwrap().owner.unwrap().pid;
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    engine.resize(&id, 21, 71).unwrap();
    let before = threads();
    for _ in 0..30 {
        engine.resize(&id, 20, 70).unwrap();
    }
    // (A connection's thread may still be on its way out right after the last resize: the
    // count must come back, not pile up.)
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while threads() > before + 1 && std::time::Instant::now() < settled {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        threads() <= before + 1,
        "{} threads, {before} before",
        threads()
    );
    b.input.stdin(b"stty size; echo y-$((6*7))\n");
    let seen = read_until(&b.events, Stream::Stdout, "y-42");
    assert!(seen.contains("20 70"), "{seen:?}");
    assert!(!seen.contains("never"), "{seen:?}");
    // Ctrl+P Ctrl+Q is input for this client: the shell gets them and goes on.
    b.input.stdin(b"\x10\x11\x15echo z-$((6*7))\n");
    read_until(&b.events, Stream::Stdout, "z-42");
    b.input.stdin(b"exit 6\n");
    let (_, _, last) = drain(&b.events);
    assert_eq!(last, Some(AttachEvent::Exited(Some(6))));
    let o = root.run(&["rm", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A tmux session running a shell command; killed on drop.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, size: (u16, u16), command: &str) -> Tmux {
        let s = Tmux(format!("xrun-att-{name}-{}", std::process::id()));
        // A server that is exiting (its last session just went) refuses: try again.
        let started = (0..20).any(|_| {
            let ok = Command::new("tmux")
                .args(["new-session", "-d", "-s", &s.0])
                .args(["-x", &size.1.to_string(), "-y", &size.0.to_string()])
                .arg(command)
                .status()
                .unwrap()
                .success();
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        });
        assert!(started, "tmux new-session {}", s.0);
        s
    }
    fn keys(&self, keys: &[&str]) {
        let st = Command::new("tmux")
            .args(["send-keys", "-t", &self.0])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }
    fn pane(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn run_it_detaches_and_attach_gets_the_terminal_back() {
    if !capable() {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping: tmux is not installed");
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    let xrun = |args: &str| format!("XRUN_ROOT={} {XRUN} {args}", root.path().display());
    let script = |args: &str| {
        format!(
            "{}; echo EXIT=$? > {r}.tmp; mv {r}.tmp {r}; sleep 60",
            xrun(args),
            r = result.display()
        )
    };
    let t = Tmux::start(
        "run",
        (30, 100),
        &script(&format!(
            "run -it --name term --rootfs {} sh",
            rootfs.display()
        )),
    );
    assert!(
        wait_for(30, || t.pane().lines().any(|l| l.trim_end().ends_with('#'))),
        "no prompt:\n{}",
        t.pane()
    );
    t.keys(&["tty; stty size; echo a-$((6*7))", "Enter"]);
    assert!(wait_for(30, || t.pane().contains("a-42")), "{}", t.pane());
    assert!(t.pane().contains("30 100"), "{}", t.pane());
    // Ctrl+P Ctrl+Q: `run` ends with 0, the shell keeps running.
    t.keys(&["C-p", "C-q"]);
    assert!(wait_for(30, || result.exists()), "{}", t.pane());
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "EXIT=0\n");
    std::fs::remove_file(&result).unwrap();
    let o = root.run(&["ps"]);
    assert!(stdout(&o).contains("term"), "{}", stdout(&o));
    drop(t);

    // Attach from a terminal of another size: the shell gets that size.
    let t = Tmux::start("attach", (24, 90), &script("attach term"));
    t.keys(&["stty size; echo b-$((6*7))", "Enter"]);
    assert!(wait_for(30, || t.pane().contains("b-42")), "{}", t.pane());
    assert!(t.pane().contains("24 90"), "{}", t.pane());
    t.keys(&["exit 3", "Enter"]);
    assert!(wait_for(30, || result.exists()), "{}", t.pane());
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "EXIT=3\n");
    std::fs::remove_file(&result).unwrap();
    drop(t);

    // start -ai with other detach keys; then attach to a stopped container is refused.
    let t = Tmux::start(
        "start",
        (30, 100),
        &script("start -ai --detach-keys ctrl-x,d term"),
    );
    assert!(
        wait_for(30, || t.pane().lines().any(|l| l.trim_end().ends_with('#'))),
        "{}",
        t.pane()
    );
    t.keys(&["C-p", "C-q", "echo c-$((6*7))", "Enter"]);
    assert!(wait_for(30, || t.pane().contains("c-42")), "{}", t.pane());
    t.keys(&["C-x", "d"]);
    assert!(wait_for(30, || result.exists()), "{}", t.pane());
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "EXIT=0\n");
    drop(t);
    let o = root.run(&["stop", "-t", "1", "term"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = root.run(&["attach", "term"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);
}

#[test]
fn bad_detach_keys_are_refused_before_anything_is_made() {
    if !capable() {
        return;
    }
    let _g = shared();
    let root = Root::new();
    let rootfs = busybox_rootfs();
    for args in [
        vec!["run", "-it", "--detach-keys", "ctrl-1"],
        vec!["run", "-it", "--detach-keys", "ab,c"],
    ] {
        let mut args = args;
        args.extend(["--rootfs", rootfs.to_str().unwrap(), "true"]);
        let o = root.run(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains("invalid detach keys"), "{}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1);
    }
    assert!(root.container_dirs().is_empty());
    let o = root.run(&["attach", "--detach-keys", "ctrl-", "x"]);
    assert_eq!(o.status.code(), Some(125));
    let o = root.run(&["attach", "nope"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("no such container"), "{}", stderr(&o));
}
