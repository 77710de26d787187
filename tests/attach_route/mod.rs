//! The attach checks shared by the emulated and VM routes: a detached container's terminal
//! kept and re-attached, and its stdin kept until a client closes it. Each route's test file
//! supplies how to start the container and what its shell answers.

#![allow(dead_code)]

use std::time::Duration;

use crate::common::TestEnv;
use xrun::engine::{AttachEvent, AttachEvents, AttachRequest, Engine, Stream};

/// How one route's containers are started and what they answer.
pub struct Route<'a> {
    /// Flags after `run -d -q` that select the route (`--platform linux/arm64`, `--route vm`).
    pub flags: &'a [&'a str],
    /// The image to run.
    pub image: &'a str,
    /// How long to wait for an answer from the container.
    pub patience: Duration,
}

impl Route<'_> {
    /// `xrun run -d -q FLAGS ARGS…`; the container's id.
    pub fn run_detached(&self, env: &TestEnv, args: &[&str]) -> String {
        let mut all = vec!["run", "-d", "-q"];
        all.extend_from_slice(self.flags);
        all.extend_from_slice(args);
        let o = env.cmd().args(&all).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Stdout until it contains `want`.
    pub fn read_until(&self, events: &AttachEvents, want: &str) -> String {
        let mut seen = String::new();
        while !seen.contains(want) {
            match events.recv_timeout(self.patience) {
                Ok(Some(AttachEvent::Output(Stream::Stdout, d))) => {
                    seen.push_str(&String::from_utf8_lossy(&d))
                }
                Ok(Some(AttachEvent::Output(..))) => {}
                other => panic!("waiting for {want:?} (seen {seen:?}): {other:?}"),
            }
        }
        seen
    }

    /// The last event, skipping output.
    pub fn last(&self, events: &AttachEvents) -> Option<AttachEvent> {
        loop {
            match events.recv_timeout(self.patience) {
                Ok(Some(AttachEvent::Output(..))) => {}
                Ok(e) => return e,
                Err(()) => panic!("no end after {:?}", self.patience),
            }
        }
    }

    /// `run -dit IMAGE sh`: a client types `probe` and sees `expect` and its terminal size,
    /// detaches with Ctrl+P Ctrl+Q (the container keeps running), a second client with another
    /// size comes back to the same shell and ends it with `exit 5`.
    pub fn terminal_is_kept_and_reattached(&self, env: &TestEnv, probe: &str, expect: &str) {
        let id = self.run_detached(env, &["-it", self.image, "sh"]);
        let engine = Engine::open(env.root());
        let stdin = AttachRequest {
            stdin: true,
            ..AttachRequest::default()
        };
        let a = engine.attach(&id, stdin.clone()).unwrap();
        assert!(a.tty);
        a.input.resize(25, 80);
        a.input
            .stdin(format!("{probe}; stty size; echo a-$((6*7))\n").as_bytes());
        let seen = self.read_until(&a.events, "a-42");
        assert!(seen.contains(expect), "{seen:?}");
        assert!(seen.contains("25 80"), "{seen:?}");
        a.input.stdin(b"\x10\x11");
        assert_eq!(self.last(&a.events), Some(AttachEvent::Detached));
        assert!(engine.inspect(&id).unwrap().is_running());

        let b = engine.attach(&id, stdin).unwrap();
        b.input.resize(40, 132);
        b.input.stdin(b"stty size; echo b-$((6*7))\n");
        let seen = self.read_until(&b.events, "b-42");
        assert!(seen.contains("40 132"), "{seen:?}");
        b.input.stdin(b"exit 5\n");
        assert_eq!(self.last(&b.events), Some(AttachEvent::Exited(Some(5))));
        env.cmd().args(["rm", &id]).assert().success();
    }

    /// `run -di IMAGE sh -c "cat; LAST"`: what a client sends reaches `cat`, and only its
    /// closing stdin lets the command go on to print `last_line` and exit 0.
    pub fn stdin_is_kept_until_a_client_closes_it(
        &self,
        env: &TestEnv,
        last: &str,
        last_line: &str,
    ) {
        let script = format!("cat; {last}");
        let id = self.run_detached(env, &["-i", self.image, "sh", "-c", &script]);
        let engine = Engine::open(env.root());
        let a = engine
            .attach(
                &id,
                AttachRequest {
                    stdin: true,
                    ..AttachRequest::default()
                },
            )
            .unwrap();
        assert!(!a.tty);
        a.input.stdin(b"one\n");
        self.read_until(&a.events, "one\n");
        a.input.close_stdin();
        self.read_until(&a.events, last_line);
        assert_eq!(self.last(&a.events), Some(AttachEvent::Exited(Some(0))));
        env.cmd().args(["rm", &id]).assert().success();
    }
}
