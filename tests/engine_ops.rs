//! The engine as a library, driven directly (as the API service will drive it) on a real
//! store, with real containers: what it creates the CLI sees and runs, what the CLI starts
//! it follows and removes; refusals and bad requests come back typed and leave nothing.
mod common;

use std::process::Output;
use std::sync::Mutex;

use common::{TestEnv, fixture, is_root, skip};
use xrun::config::Config;
use xrun::engine::{
    ContainerSpec, CreateOutcome, Created, Engine, EngineError, ErrorKind, ImageSource, Observer,
    Unobserved,
};
use xrun::plan::{Route, RouteChoice};
use xrun::registry::PullPolicy;
use xrun::runtime::log::Stream;
use xrun::runtime::{RunOptions, Status};

fn run(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn engine(env: &TestEnv) -> Engine {
    Engine::open(env.root()).with_config(Config::default())
}

/// Loads fixture `name` through the engine; returns its `name:tag` reference.
fn load(engine: &Engine, name: &str) -> String {
    let records = engine.load_images(&fixture(name), None).unwrap();
    let r = &records[0];
    format!("{}:{}", r.name, r.tag.as_deref().unwrap())
}

fn spec(image: &str, command: &[&str]) -> ContainerSpec {
    let mut spec = ContainerSpec::new(
        ImageSource::Reference(image.to_string()),
        RunOptions {
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
    spec.pull = PullPolicy::Never;
    spec
}

fn created(outcome: CreateOutcome) -> Created {
    match outcome {
        CreateOutcome::Created(c) => c,
        CreateOutcome::DryRun(d) => panic!("a dry run: {d:?}"),
    }
}

/// Remembers the notices it is told.
#[derive(Default)]
struct Notices(Mutex<Vec<String>>);

impl Observer for Notices {
    fn notice(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

#[test]
fn what_one_front_end_creates_the_other_runs_follows_and_removes() {
    if !is_root() {
        return skip("needs root for namespaces, mounts and cgroups");
    }
    let env = TestEnv::new();
    let engine = engine(&env);
    let image = load(&engine, "busybox-amd64");
    let mut s = spec(
        &image,
        &["sh", "-c", "echo engine-made; echo to-err >&2; exit 3"],
    );
    s.options.name = Some("from-engine".into());
    let c = created(engine.create(s, &Unobserved).unwrap());
    assert_eq!(c.name, "from-engine");
    assert_eq!(c.route, Some(Route::Native));
    assert_eq!(c.platform.unwrap().architecture, "amd64");
    assert!(c.notices.is_empty(), "{:?}", c.notices);
    assert!(env.root().join("leases").join(&c.id).is_file());

    // The CLI sees it and starts it under its monitor.
    let o = run(&env, &["ps", "-a"]);
    assert!(text(&o).contains("from-engine"), "{}", text(&o));
    let o = run(&env, &["start", "from-engine"]);
    assert!(o.status.success(), "{}", text(&o));

    // The engine follows its log to the end, stream by stream.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    engine
        .logs(&c.id[..12], true, &mut |records| {
            for r in records {
                match r.stream {
                    Stream::Stdout => out.extend(r.data),
                    Stream::Stderr => err.extend(r.data),
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "engine-made\n");
    assert_eq!(String::from_utf8_lossy(&err), "to-err\n");
    let rec = engine.inspect("from-engine").unwrap();
    assert_eq!(rec.status(), Status::Exited(3));
    assert_eq!(engine.list().unwrap().len(), 1);

    // Removed through the engine: gone for the CLI, its lease with it.
    engine.remove("from-engine", false).unwrap();
    let o = run(&env, &["ps", "-a", "-q"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "", "{}", text(&o));
    assert!(!env.root().join("leases").join(&c.id).exists());
    let e = engine.inspect("from-engine").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn refusals_and_bad_requests_come_back_typed_and_leave_nothing() {
    let env = TestEnv::new();
    let engine = engine(&env);
    let amd64 = load(&engine, "busybox-amd64");
    let arm64 = load(&engine, "busybox-arm64");

    // No native route for an arm64 image here: a refusal with the plan's reason.
    let mut s = spec(&arm64, &["true"]);
    s.route = RouteChoice::Native;
    let e = engine.create(s, &Unobserved).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert_eq!(e.exit_code(), 125);
    assert!(
        e.to_string().starts_with(&format!("cannot run {arm64}:")),
        "{e}"
    );
    assert!(e.to_string().contains("xrun check"), "{e}");

    // Not in the store, and not to be pulled.
    let e = engine
        .create(spec("127.0.0.1:1/absent:1", &["true"]), &Unobserved)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("(--pull never)"), "{e}");

    // Options the runtime refuses: typed as bad input, exit 125.
    let mut s = spec(&amd64, &["true"]);
    s.options.memory = Some(1024);
    let e = engine.create(s, &Unobserved).unwrap_err();
    assert!(matches!(e, EngineError::Runtime(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert_eq!(e.exit_code(), 125);

    // A dry run plans and creates nothing.
    let mut s = spec(&amd64, &["echo", "hi"]);
    s.dry_run = true;
    match engine.create(s, &Unobserved).unwrap() {
        CreateOutcome::DryRun(d) => {
            let plan = d.plan.unwrap();
            assert_eq!(plan.platform.architecture, "amd64");
            assert!(
                plan.lines[0].starts_with("route: native"),
                "{:?}",
                plan.lines
            );
            assert_eq!(d.command, ["echo", "hi"]);
            assert!(!d.unrunnable);
        }
        CreateOutcome::Created(c) => panic!("created {c:?}"),
    }

    let e = Engine::parse_signal("NOPE").unwrap_err();
    assert_eq!(e.exit_code(), 125);

    assert!(engine.list().unwrap().is_empty());
    let leases = std::fs::read_dir(env.root().join("leases"))
        .unwrap()
        .count();
    assert_eq!(leases, 0);
}

#[test]
fn a_route_that_is_not_native_is_told_to_the_observer_and_returned() {
    let env = TestEnv::new();
    let engine = engine(&env);
    let arm64 = load(&engine, "busybox-arm64");
    let told = Notices::default();
    let c = match engine.create(spec(&arm64, &["true"]), &told) {
        Ok(o) => created(o),
        // Neither emulation nor a VM here: then it is a refusal, with its reason.
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
            return skip("no emulated or vm route for arm64 here");
        }
    };
    assert_ne!(c.route, Some(Route::Native));
    assert_eq!(c.platform.unwrap().architecture, "arm64");
    assert!(!c.notices.is_empty());
    assert_eq!(*told.0.lock().unwrap(), c.notices);
    assert!(!c.reasons.is_empty());
    engine.remove(&c.id, false).unwrap();
    assert!(engine.list().unwrap().is_empty());
}
