//! A small client of qemu's QMP monitor (JSON lines on a unix socket), for what a running VM
//! needs from the host after its start: plugging an exec slot's devices
//! ([`plug_exec_slot`]).
//!
//! The protocol: qemu greets with `{"QMP": …}`, the client enters command mode with
//! `qmp_capabilities`, then each `{"execute": NAME, "arguments": …}` gets one `{"return": …}`
//! or `{"error": {"class", "desc"}}`; `{"event": …}` lines may come in between.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::VmError;
use super::qemu::{SlotDevice, exec_slot_devices};

/// A QMP session in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// The longest message read from the monitor (replies to the commands used here are a few
/// bytes; a longer line is refused, not buffered).
const MAX_MESSAGE: u64 = 1 << 20;

/// How long one QMP reply may take (a TCG guest keeps qemu's main loop busy).
const REPLY_WAIT: Duration = Duration::from_secs(30);

impl Qmp {
    /// Connects to the monitor socket `name` in the directory open as `dir` (through
    /// `/proc/self/fd`: a long path would not fit a socket address) and enters command mode.
    /// The monitor serves one client at a time: a second one waits until the first is done.
    pub fn connect(dir: &std::fs::File, name: &str) -> Result<Qmp, VmError> {
        let path = format!("/proc/self/fd/{}/{name}", dir.as_raw_fd());
        let stream = UnixStream::connect(&path).map_err(VmError::io(
            "connecting to the VM's monitor (is the container running?)",
        ))?;
        stream
            .set_read_timeout(Some(REPLY_WAIT))
            .map_err(VmError::io("the VM's monitor"))?;
        let writer = stream
            .try_clone()
            .map_err(VmError::io("the VM's monitor"))?;
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = q.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(VmError::BadSpec(format!(
                "the VM's monitor did not greet as QMP: {greeting}"
            )));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    /// Runs command `name` with `arguments`; its `return` value, or its error as
    /// [`VmError::Monitor`].
    pub fn execute(&mut self, name: &str, arguments: Value) -> Result<Value, VmError> {
        let mut line = serde_json::to_vec(&json!({"execute": name, "arguments": arguments}))
            .map_err(|e| VmError::BadSpec(e.to_string()))?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(VmError::io("writing to the VM's monitor"))?;
        let end = Instant::now() + REPLY_WAIT;
        loop {
            let m = self.read_message()?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(VmError::Monitor {
                    command: name.to_string(),
                    class: e["class"].as_str().unwrap_or_default().to_string(),
                    desc: e["desc"].as_str().unwrap_or_default().to_string(),
                });
            }
            // An event: not the reply.
            if Instant::now() > end {
                return Err(VmError::BadSpec(format!(
                    "the VM's monitor did not answer {name}"
                )));
            }
        }
    }

    fn read_message(&mut self) -> Result<Value, VmError> {
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(MAX_MESSAGE)
            .read_line(&mut line)
            .map_err(VmError::io("reading from the VM's monitor"))?;
        if n == 0 {
            return Err(VmError::BadSpec(
                "the VM's monitor closed the connection".into(),
            ));
        }
        if !line.ends_with('\n') {
            return Err(VmError::BadSpec(format!(
                "the VM's monitor sent a message over {MAX_MESSAGE} bytes"
            )));
        }
        serde_json::from_str(&line).map_err(|e| {
            VmError::BadSpec(format!("the VM's monitor sent {}: {e}", line.trim_end()))
        })
    }
}

/// The two QMP commands that plug `d`: a chardev listening on its socket, then the port.
pub fn slot_device_commands(d: &SlotDevice) -> [(&'static str, Value); 2] {
    [
        (
            "chardev-add",
            json!({
                "id": d.id,
                "backend": {"type": "socket", "data": {
                    "addr": {"type": "unix", "data": {"path": d.socket}},
                    "server": true,
                    "wait": false,
                }},
            }),
        ),
        (
            "device_add",
            json!({"driver": d.driver, "id": d.id, "chardev": d.id, "name": d.name}),
        ),
    ]
}

/// Plugs exec slot `slot`'s devices ([`exec_slot_devices`], in their order) into the VM.
/// A device already there (a plug that was interrupted after it) counts as plugged.
pub fn plug_exec_slot(q: &mut Qmp, slot: u32) -> Result<(), VmError> {
    for d in exec_slot_devices(slot) {
        for (cmd, args) in slot_device_commands(&d) {
            match q.execute(cmd, args) {
                Ok(_) => {}
                Err(VmError::Monitor { desc, .. })
                    if desc.contains("already exists") || desc.contains("Duplicate") => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_plugs_its_console_first_and_its_control_port_last() {
        let d = exec_slot_devices(2);
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "org.xrun.x2.tty",
                "org.xrun.x2.in",
                "org.xrun.x2.out",
                "org.xrun.x2.err",
                "org.xrun.x2.ctl"
            ]
        );
        assert_eq!(d[0].driver, "virtconsole");
        assert!(d[1..].iter().all(|d| d.driver == "virtserialport"));
        let [(c1, a1), (c2, a2)] = slot_device_commands(&d[4]);
        assert_eq!((c1, c2), ("chardev-add", "device_add"));
        assert_eq!(a1["backend"]["data"]["addr"]["data"]["path"], "x2c.sock");
        assert_eq!(a1["backend"]["data"]["server"], true);
        assert_eq!(a2["chardev"], "x2ctl");
        assert_eq!(a2["name"], "org.xrun.x2.ctl");
    }
}
