//! runc's `--log FILE` and `--log-format text|json`: what failed, one line per error, so
//! containerd and Podman can show why (containerd's shim reads the last JSON line whose
//! `level` is `error` and reports its `msg`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `time="…" level=error msg="…"`, as runc's text format.
    #[default]
    Text,
    /// `{"level":"error","msg":"…","time":"…"}`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: use text or json")),
        }
    }
}

/// Where log lines go (`--log`; without it, nowhere but stderr).
#[derive(Debug, Clone, Default)]
pub struct RuntimeLog {
    /// The file.
    pub path: Option<PathBuf>,
    /// The format.
    pub format: LogFormat,
}

impl RuntimeLog {
    /// Appends one line at `level` (`error`, `warning`, `info`); a log that cannot be
    /// written is ignored (the message also goes to stderr).
    pub fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.path else {
            return;
        };
        let _ = append(path, &format_line(self.format, level, msg, &now()));
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())
}

/// One log line (with its newline).
pub fn format_line(format: LogFormat, level: &str, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            let v = serde_json::json!({ "level": level, "msg": msg, "time": time });
            format!("{v}\n")
        }
        LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_msg_time() {
        let l = format_line(LogFormat::Json, "error", "a \"b\"", "T");
        let v: serde_json::Value = serde_json::from_str(l.trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "a \"b\"");
        assert_eq!(v["time"], "T");
        assert_eq!(
            format_line(LogFormat::Text, "error", "x", "T"),
            "time=\"T\" level=error msg=\"x\"\n"
        );
    }
}
