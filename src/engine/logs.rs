//! [`Engine::logs`]: a container's log, decoded into records (stream, time, bytes), to its
//! end or following it until the container stops.

use std::io::Read;
use std::time::Duration;

use crate::runtime::RuntimeError;
use crate::runtime::log::{Record, decode};

use super::{Engine, EngineError};

/// How much undecoded log is held before records are handed on while reading.
const BATCH: usize = 1 << 20;

impl Engine {
    /// Hands the records of container `key`'s log to `sink`, in order, in batches; with
    /// `follow`, keeps reading until the container stops. A sink error ends the read.
    pub fn logs(
        &self,
        key: &str,
        follow: bool,
        sink: &mut dyn FnMut(Vec<Record>) -> std::io::Result<()>,
    ) -> Result<(), EngineError> {
        let c = self.containers()?;
        let rec = c.find(key)?;
        let path = c.log_path(&rec.id);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Not started yet: wait for the file.
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                    if let Ok(f) = std::fs::File::open(&path) {
                        break f;
                    }
                    if !c.container_dir(&rec.id).exists() {
                        return Ok(());
                    }
                }
            }
            Err(e) => return Err(RuntimeError::io("reading the log", e).into()),
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut emit = |pending: &mut Vec<u8>| -> Result<(), EngineError> {
            let (records, used) = decode(pending)?;
            sink(records)?;
            pending.drain(..used);
            Ok(())
        };
        loop {
            let n = f.read(&mut buf).unwrap_or(0);
            if n > 0 {
                pending.extend_from_slice(&buf[..n]);
                if pending.len() > BATCH {
                    emit(&mut pending)?;
                }
                continue;
            }
            emit(&mut pending)?;
            if !follow {
                return Ok(());
            }
            let running = c.load(&rec.id).map(|r| r.is_running()).unwrap_or(false);
            if !running {
                // One last read for what was written just before the exit.
                let mut rest = Vec::new();
                let _ = f.read_to_end(&mut rest);
                pending.extend_from_slice(&rest);
                emit(&mut pending)?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
