//! Layer decompression. The bytes decide, as in containerd: the first bytes are sniffed
//! (gzip `1f 8b`, zstd `28 b5 2f fd`, anything else is read as plain tar), so a layer whose
//! media type is generic or mislabelled still unpacks. The media type only refuses what the
//! store cannot read at all (encrypted layers, bzip2/xz).

use std::io::{self, BufRead, BufReader, Read};

use crate::digest::{Digest, Hasher};

/// How a layer stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd.
    Zstd,
}

/// The compression the first bytes of a stream show.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Refuses media types the store cannot unpack.
pub fn check_media_type(media_type: &str) -> Result<(), String> {
    let unsupported = ["+encrypted", "bzip2", "+xz", ".xz"];
    match unsupported.iter().find(|u| media_type.contains(*u)) {
        Some(_) => Err(format!("unsupported layer media type {media_type}")),
        None => Ok(()),
    }
}

/// Wraps a (compressed) layer reader into its uncompressed tar stream.
pub fn decompressed<'a, R: Read + 'a>(
    reader: R,
    media_type: &str,
) -> Result<Box<dyn Read + 'a>, String> {
    check_media_type(media_type)?;
    let mut buf = BufReader::with_capacity(1 << 20, reader);
    let head = buf.fill_buf().map_err(|e| e.to_string())?;
    Ok(match sniff(head) {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf).map_err(|e| format!("zstd: {e}"))?,
        ),
    })
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Reads what is left (tar padding after the end marker) and returns the digest of all.
    pub fn finish(mut self) -> io::Result<Digest> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.finish())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
