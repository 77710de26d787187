//! `xrun attach`, and the attached client `run -it` and `start -ai` use for a container
//! with a terminal: the container runs under its monitor (so it keeps running when the
//! client detaches with the detach keys) and this process relays its terminal: stdin in raw
//! mode, output, window sizes, and (without a terminal) signals.

use std::io::{Read, Write};

use nix::sys::signal::Signal;
use xrun::engine::{AttachEvent, AttachRequest, Attachment, DetachKeys, Engine, Stream};
use xrun::runtime::{signals, tty};

use super::Global;
use super::run::engine_failure;

/// `xrun attach` arguments.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The key sequence that detaches (Docker's syntax: ctrl-<key> or single characters,
    /// comma-separated; empty: none).
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = xrun::engine::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    /// Do not attach stdin.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Pass the signals this process receives on to the container (not with a terminal,
    /// where Ctrl+C is a key like any other).
    #[arg(long = "sig-proxy", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Container.
    pub container: String,
}

/// Parses `--detach-keys` (one error line, exit 125, when wrong).
pub(super) fn detach_keys(s: &str) -> Result<Option<DetachKeys>, u8> {
    DetachKeys::parse(s).map_err(|e| {
        eprintln!("xrun: {e}");
        super::EXIT_XRUN_ERROR
    })
}

/// How the client relays.
pub(super) struct Relay {
    /// Send this terminal's stdin.
    pub stdin: bool,
    /// Close the container's stdin at the end of ours (`run -i`, `start -ai`: Docker's
    /// stdin-once).
    pub close_stdin: bool,
    /// Pass signals on (without a terminal).
    pub sig_proxy: bool,
}

/// `xrun attach`.
pub fn attach(g: &Global, a: AttachArgs) -> anyhow::Result<u8> {
    let keys = match detach_keys(&a.detach_keys) {
        Ok(k) => k,
        Err(code) => return Ok(code),
    };
    let engine = Engine::open(&g.root);
    let rec = match engine.inspect(&a.container) {
        Ok(r) => r,
        Err(e) => return engine_failure(e),
    };
    if !rec.is_running() {
        eprintln!(
            "xrun: container {} is not running: start it first (xrun start -ai {})",
            a.container, a.container
        );
        return Ok(super::EXIT_XRUN_ERROR);
    }
    let stdin = !a.no_stdin && rec.options.interactive;
    let req = AttachRequest {
        stdin,
        detach_keys: keys,
        ..AttachRequest::default()
    };
    let att = match engine.attach(&rec.id, req) {
        Ok(a) => a,
        Err(e) => return engine_failure(e),
    };
    let how = Relay {
        stdin,
        close_stdin: false,
        sig_proxy: a.sig_proxy,
    };
    Ok(relay(&engine, att, &how))
}

/// Attaches to created container `id`, starts it under its monitor and relays until it
/// exits (its exit code) or the client detaches (0). `remove_on_error`: drop the container
/// if it cannot be started (`run`).
pub(super) fn start_attached(
    engine: &Engine,
    id: &str,
    stdin: bool,
    keys: Option<DetachKeys>,
    remove_on_error: bool,
) -> anyhow::Result<u8> {
    let req = AttachRequest {
        stdin,
        replay: true,
        detach_keys: keys,
        ..AttachRequest::default()
    };
    // Before the start: the client sees the run from its first byte.
    let att = match engine.attach(id, req) {
        Ok(a) => a,
        Err(e) => return engine_failure(e),
    };
    if let Err(e) = engine.start(id, remove_on_error) {
        return engine_failure(e);
    }
    let how = Relay {
        stdin,
        close_stdin: true,
        sig_proxy: true,
    };
    Ok(relay(engine, att, &how))
}

/// This terminal's size (rows, columns).
fn size() -> Option<(u16, u16)> {
    tty::window_size(libc::STDOUT_FILENO)
        .or_else(|| tty::window_size(libc::STDIN_FILENO))
        .map(|w| (w.ws_row, w.ws_col))
}

/// Relays between this process and attachment `att` until the end; gives the exit code.
pub(super) fn relay(engine: &Engine, att: Attachment, how: &Relay) -> u8 {
    let id = att.id.clone();
    let tty = att.tty;
    let (events, input) = att.split();
    let raw = if tty && how.stdin {
        tty::RawMode::enter()
    } else {
        None
    };
    if tty && let Some((rows, cols)) = size() {
        // A size change the command notices (full-screen programs redraw), then the size.
        input.resize(rows.saturating_add(1), cols.saturating_add(1));
        input.resize(rows, cols);
    }
    let mut relayed = vec![Signal::SIGWINCH];
    if how.sig_proxy && !tty {
        relayed.extend(
            signals::FORWARDED
                .iter()
                .copied()
                .filter(|s| *s != Signal::SIGWINCH),
        );
    }
    let (inp, eng, cid) = (input.clone(), engine.clone(), id.clone());
    let _ = signals::relay(
        &relayed,
        Box::new(move |sig| {
            if sig == libc::SIGWINCH {
                if tty && let Some((rows, cols)) = size() {
                    inp.resize(rows, cols);
                }
            } else if let Ok(s) = Signal::try_from(sig) {
                let _ = eng.kill(&cid, s);
            }
        }),
    );
    if how.stdin {
        let (inp, close) = (input.clone(), how.close_stdin);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        if close && tty {
                            // The end of input, as a terminal says it (as `run -it` always did).
                            inp.stdin(&[4]);
                        } else if close {
                            inp.close_stdin();
                        }
                        return;
                    }
                    Ok(n) => inp.stdin(&buf[..n]),
                }
            }
        });
    }
    drop(input);
    let mut code = None;
    let mut detached = false;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    for e in events {
        match e {
            AttachEvent::Output(Stream::Stdout, d) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            AttachEvent::Output(Stream::Stderr, d) => {
                let _ = err.write_all(&d);
            }
            AttachEvent::Exited(c) => {
                code = Some(c);
                break;
            }
            AttachEvent::Detached => {
                detached = true;
                break;
            }
        }
    }
    drop(raw);
    if detached {
        eprintln!("read escape sequence");
        return 0;
    }
    let code = match code {
        Some(Some(c)) => Some(c),
        // The monitor went without telling: the record knows.
        _ => engine.inspect(&id).ok().and_then(|r| r.exit_code),
    };
    match code {
        Some(c) => c.clamp(0, 255) as u8,
        None => {
            eprintln!("xrun: container {}: its exit status is unknown", &id[..12]);
            super::EXIT_XRUN_ERROR
        }
    }
}
