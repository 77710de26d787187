//! `GET /containers/{id}/logs`: the container's log as Docker streams it (multiplexed
//! frames without a terminal, raw with one), with `follow`, `timestamps`, `tail`, `since`,
//! `until`, `stdout`, `stderr`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::runtime::log::{Record, Stream};

use super::containers::{find, not_found_or};
use super::error::ApiError;
use super::router::{HandlerResult, Request};
use super::stream::{self, StreamKind};
use super::{ApiState, http};

/// What to send of a log.
#[derive(Debug, Clone)]
struct Selection {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    /// The last N lines only.
    tail: Option<usize>,
    /// Unix seconds (fractions allowed).
    since: Option<f64>,
    until: Option<f64>,
}

fn seconds(v: Option<&str>, name: &str) -> Result<Option<f64>, ApiError> {
    match v {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => {
            if let Ok(s) = v.parse::<f64>() {
                return Ok(Some(s));
            }
            OffsetDateTime::parse(v, &Rfc3339)
                .map(|t| Some(t.unix_timestamp_nanos() as f64 / 1e9))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid {name} {v:?}: give Unix seconds or an RFC 3339 time"
                    ))
                })
        }
    }
}

fn record_time(r: &Record) -> f64 {
    OffsetDateTime::parse(&r.time, &Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or(0.0)
}

impl Selection {
    fn wants(&self, r: &Record) -> bool {
        let stream_ok = match r.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        if !stream_ok {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let t = record_time(r);
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }

    fn encode(&self, tty: bool, r: &Record, line: &[u8]) -> Bytes {
        if self.timestamps {
            let mut data = format!("{} ", r.time).into_bytes();
            data.extend_from_slice(line);
            stream::encode(tty, StreamKind::from(r.stream), &data)
        } else {
            stream::encode(tty, StreamKind::from(r.stream), line)
        }
    }
}

/// `data` cut after each newline (the last piece may lack one).
fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split_inclusive(|b| *b == b'\n').collect()
}

/// The logs endpoint.
pub async fn logs(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let q = &r.query;
    let sel = Selection {
        stdout: q.bool("stdout", false)?,
        stderr: q.bool("stderr", false)?,
        timestamps: q.bool("timestamps", false)?,
        tail: match q.get("tail") {
            None | Some("") | Some("all") => None,
            Some(t) => Some(t.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("invalid tail {t:?}: give a number or all"))
            })?),
        },
        since: seconds(q.get("since"), "since")?,
        until: seconds(q.get("until"), "until")?,
    };
    if !sel.stdout && !sel.stderr {
        return Err(ApiError::bad_request(
            "you must choose at least one stream: stdout or stderr",
        ));
    }
    let follow = q.bool("follow", false)?;
    let rec = find(&s, r.param("id")).await?;
    let tty = rec.options.tty;
    let (tx, body) = http::channel(16);
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        // With a tail, the log so far is read first to find where the last lines start;
        // the records after them follow (records are only ever appended).
        let mut skip = 0usize;
        if let Some(n) = sel.tail {
            let mut kept: Vec<(Record, Vec<u8>)> = Vec::new();
            let mut count = 0usize;
            let r = st.engine.logs(&rec.id, false, &mut |records| {
                for rec in records {
                    count += 1;
                    if !sel.wants(&rec) {
                        continue;
                    }
                    for l in lines(&rec.data) {
                        kept.push((rec.clone(), l.to_vec()));
                    }
                    if kept.len() > n {
                        kept.drain(..kept.len() - n);
                    }
                }
                Ok(())
            });
            if let Err(e) = r {
                tracing::debug!("logs of {}: {}", rec.id, not_found_or(e).message);
                return;
            }
            for (r, line) in &kept {
                if tx.blocking_send(sel.encode(tty, r, line)).is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            skip = count;
        }
        let mut seen = 0usize;
        let r = st.engine.logs(&rec.id, follow, &mut |records| {
            for r in records {
                seen += 1;
                if seen <= skip || !sel.wants(&r) {
                    continue;
                }
                if tx.blocking_send(sel.encode(tty, &r, &r.data)).is_err() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "the client went away",
                    ));
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::debug!("logs of {}: {}", rec.id, not_found_or(e).message);
        }
    });
    Ok(http::with_type(
        StatusCode::OK,
        body,
        stream::content_type(tty),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_newlines() {
        assert_eq!(lines(b"a\nb\nc"), vec![&b"a\n"[..], b"b\n", b"c"]);
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn since_takes_seconds_or_rfc3339() {
        assert_eq!(seconds(Some("12.5"), "since").unwrap(), Some(12.5));
        assert_eq!(
            seconds(Some("1970-01-01T00:00:10Z"), "since").unwrap(),
            Some(10.0)
        );
        assert!(seconds(Some("yesterday"), "since").is_err());
        assert_eq!(seconds(Some("0"), "since").unwrap(), None);
    }
}
