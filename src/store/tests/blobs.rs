use std::io::Write;

use super::{names_in, store};
use crate::digest::Digest;
use crate::store::StoreError;

#[test]
fn put_read_and_has() {
    let (_t, s) = store();
    let d = Digest::of(b"hello");
    assert!(!s.has_blob(&d));
    s.put_blob(&d, b"hello").unwrap();
    assert!(s.has_blob(&d));
    assert_eq!(s.read_blob(&d).unwrap(), b"hello");
    assert_eq!(s.blob_path(&d), s.root().join("blobs/sha256").join(d.hex()));
    // Putting it again is fine; putting other bytes under its name is not.
    s.put_blob(&d, b"hello").unwrap();
    assert!(matches!(
        s.put_blob(&d, b"other"),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(matches!(
        s.read_blob(&Digest::of(b"absent")),
        Err(StoreError::BlobNotFound(_))
    ));
}

#[test]
fn digest_mismatch_leaves_nothing() {
    let (_t, s) = store();
    let claimed = Digest::of(b"the real content");
    let mut w = s.begin_blob(&claimed, None).unwrap();
    w.write_all(b"tampered content").unwrap();
    match w.commit() {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::of(b"tampered content"));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!s.has_blob(&claimed));
    assert!(names_in(&s.root().join("ingest")).is_empty());
    assert!(names_in(&s.root().join("blobs/sha256")).is_empty());
}

#[test]
fn size_mismatch_both_ways() {
    let (_t, s) = store();
    let d = Digest::of(b"12345");
    let mut w = s.begin_blob(&d, Some(6)).unwrap();
    w.write_all(b"12345").unwrap();
    assert!(matches!(
        w.commit(),
        Err(StoreError::SizeMismatch {
            expected: 6,
            actual: 5,
            ..
        })
    ));
    let mut w = s.begin_blob(&d, Some(4)).unwrap();
    assert!(
        w.write_all(b"12345").is_err(),
        "writing past the size fails"
    );
    drop(w);
    assert!(!s.has_blob(&d));
    assert!(names_in(&s.root().join("ingest")).is_empty());
}

#[test]
fn dropped_writer_leaves_nothing() {
    let (_t, s) = store();
    let d = Digest::of(b"abc");
    let mut w = s.begin_blob(&d, Some(3)).unwrap();
    w.write_all(b"ab").unwrap();
    assert_eq!(names_in(&s.root().join("ingest")).len(), 1);
    drop(w);
    assert!(names_in(&s.root().join("ingest")).is_empty());
    assert!(!s.has_blob(&d));
}

#[test]
fn concurrent_writers_of_one_digest_both_succeed() {
    let (_t, s) = store();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::of(&data);
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let mut w = s.begin_blob(&d, Some(data.len() as u64)).unwrap();
                    for chunk in data.chunks(64 * 1024) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit()
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    assert_eq!(s.read_blob(&d).unwrap(), data);
    assert!(names_in(&s.root().join("ingest")).is_empty());
}

#[test]
fn open_cleans_stale_ingest_but_not_live_writers() {
    let (_t, s) = store();
    let stale = s.root().join("ingest/stale-from-a-killed-pull");
    std::fs::write(&stale, b"partial").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let d = Digest::of(b"live");
    let mut live = s.begin_blob(&d, None).unwrap();
    live.write_all(b"li").unwrap();
    live.flush().unwrap();
    for e in std::fs::read_dir(s.root().join("ingest")).unwrap() {
        let f = std::fs::File::options()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        f.set_modified(old).unwrap();
    }
    let s2 = crate::store::Store::open(s.root()).unwrap();
    assert_eq!(
        names_in(&s2.root().join("ingest")).len(),
        1,
        "only the live one stays"
    );
    live.write_all(b"ve").unwrap();
    live.commit().unwrap();
    assert!(s2.has_blob(&d));
}
