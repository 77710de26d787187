use super::{TarMaker, linux, put_image, store};
use crate::digest::Digest;
use crate::store::StoreError;

fn one_layer() -> Vec<Vec<u8>> {
    vec![TarMaker::new().file("hello", b"hi\n", 0o644).finish()]
}

#[test]
fn record_find_and_replace() {
    let (_t, s) = store();
    let amd = put_image(&s, "docker.io/library/app", "1", "amd64", &one_layer());
    let arm = put_image(
        &s,
        "docker.io/library/app",
        "1",
        "arm64",
        &[TarMaker::new().file("arm", b"", 0o644).finish()],
    );
    assert_eq!(amd.platform, linux("amd64"));
    s.record_image(&amd).unwrap();
    s.record_image(&arm).unwrap();
    assert_eq!(s.list_images().unwrap().len(), 2);

    let by_tag = |p: Option<&crate::platform::Platform>| {
        s.find_image("docker.io/library/app", "1", p)
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        by_tag(Some(&linux("arm64"))).manifest_digest,
        arm.manifest_digest
    );
    assert_eq!(
        by_tag(Some(&linux("amd64"))).manifest_digest,
        amd.manifest_digest
    );
    // No platform, two candidates: the host's (amd64 here) wins.
    if crate::platform::Platform::host().architecture == "amd64" {
        assert_eq!(by_tag(None).manifest_digest, amd.manifest_digest);
    }
    assert!(
        s.find_image("docker.io/library/app", "1", Some(&linux("riscv64")))
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_image("docker.io/library/app", "2", None)
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_image("docker.io/library/other", "1", None)
            .unwrap()
            .is_none()
    );
    let by_digest = s
        .find_image(
            "docker.io/library/app",
            &arm.manifest_digest.to_string(),
            None,
        )
        .unwrap()
        .unwrap();
    assert_eq!(by_digest.platform, linux("arm64"));
    assert_eq!(
        s.find_by_id(&arm.manifest_digest.hex()[..8]).unwrap(),
        vec![arm.clone()]
    );

    // Re-recording the same tag and platform replaces the record.
    let newer = put_image(
        &s,
        "docker.io/library/app",
        "1",
        "amd64",
        &[TarMaker::new().file("v2", b"2", 0o644).finish()],
    );
    s.record_image(&newer).unwrap();
    let all = s.list_images().unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|r| r.manifest_digest == newer.manifest_digest)
    );
    assert!(!all.iter().any(|r| r.manifest_digest == amd.manifest_digest));

    // Untag one platform, then the rest.
    let gone = s
        .remove_image("docker.io/library/app", "1", Some(&linux("arm64")))
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(
        s.remove_image("docker.io/library/app", "1", None)
            .unwrap()
            .len(),
        1
    );
    assert!(s.list_images().unwrap().is_empty());
}

#[test]
fn a_record_needs_its_blobs() {
    let (_t, s) = store();
    let mut r = put_image(&s, "localhost/x", "t", "amd64", &one_layer());
    r.layers[0].digest = Digest::of(b"missing layer");
    assert!(matches!(
        s.record_image(&r),
        Err(StoreError::BlobNotFound(_))
    ));
    assert!(s.list_images().unwrap().is_empty());
}

#[test]
fn concurrent_records_are_all_kept() {
    let (_t, s) = store();
    let base = put_image(&s, "localhost/x", "t", "amd64", &one_layer());
    std::thread::scope(|sc| {
        for i in 0..8 {
            let s = s.clone();
            let mut r = base.clone();
            sc.spawn(move || {
                r.tag = Some(format!("t{i}"));
                // A separate Store value per thread, like separate processes.
                let s = crate::store::Store::open(s.root()).unwrap();
                s.record_image(&r).unwrap();
            });
        }
    });
    assert_eq!(s.list_images().unwrap().len(), 8);
}
