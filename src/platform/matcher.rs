//! Choosing among an image index's platforms: containerd's ordered fallback vector (plus amd64
//! micro-architecture levels), `os.features` subset matching, and "first entry among equals".

use std::cmp::Reverse;

use super::Platform;

/// Picks, among candidate platforms, the best one for a wanted platform.
///
/// The matcher holds an ordered fallback vector (see [`Matcher::candidates`]): a candidate
/// matches when, after normalization, it equals one entry of the vector in os, architecture and
/// variant, its `os.features` are a subset of the wanted ones, and (Windows only) its
/// `os.version` agrees on major.minor.build when both sides name one. Candidates rank by their
/// position in the vector; among equal ranks, one that matches more of the wanted `os.features`
/// wins, then the one listed first.
///
/// Fallbacks (containerd's rules, plus amd64 levels):
/// - `amd64/vN` → `amd64/vN-1` … `amd64` (v1), then `386` (see [`Matcher::with_386`]);
/// - `arm/vN` → `arm/vN-1` … `arm/v5`;
/// - `arm64/v9.x` → `v9.(x-1)` … `v9` → `v8.(x+5)` … `v8`; `arm64/v8.x` → … `v8`; then
///   `arm/v8` … `arm/v5` (see [`Matcher::with_arm32`]);
/// - anything else: only itself.
#[derive(Debug, Clone)]
pub struct Matcher {
    wanted: Platform,
    strict: bool,
    allow_386: bool,
    allow_arm32: bool,
    vector: Vec<Platform>,
}

impl Matcher {
    /// A matcher with containerd's fallbacks (amd64 v3 also runs v2, v1 and 386; arm64 also
    /// runs arm/v8 … arm/v5).
    pub fn new(wanted: &Platform) -> Matcher {
        let mut m = Matcher {
            wanted: wanted.normalize(),
            strict: false,
            allow_386: true,
            allow_arm32: true,
            vector: Vec::new(),
        };
        m.rebuild();
        m
    }

    /// A matcher that accepts only the wanted platform itself (after normalization).
    pub fn strict(wanted: &Platform) -> Matcher {
        let mut m = Matcher::new(wanted);
        m.strict = true;
        m.rebuild();
        m
    }

    /// Whether an amd64 host may fall back to `386` images (default true, as containerd does;
    /// the kernel check turns it off when the kernel lacks 32-bit x86 support).
    pub fn with_386(mut self, allow: bool) -> Matcher {
        self.allow_386 = allow;
        self.rebuild();
        self
    }

    /// Whether an arm64 host may fall back to 32-bit `arm` images (default true, as containerd
    /// does; turn it off for CPUs or kernels without AArch32 support).
    pub fn with_arm32(mut self, allow: bool) -> Matcher {
        self.allow_arm32 = allow;
        self.rebuild();
        self
    }

    /// The platform asked for, normalized.
    pub fn wanted(&self) -> &Platform {
        &self.wanted
    }

    /// Whether this matcher accepts only the wanted platform.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The ordered fallback vector: what this matcher accepts, best first.
    pub fn candidates(&self) -> Vec<Platform> {
        self.vector.clone()
    }

    /// The position of `candidate` in the fallback vector (0 = the wanted platform itself), or
    /// `None` when it cannot be used.
    pub fn rank(&self, candidate: &Platform) -> Option<usize> {
        let c = candidate.normalize();
        if !features_subset(&c.os_features, &self.wanted.os_features)
            || !os_version_compatible(&self.wanted, &c)
        {
            return None;
        }
        self.vector.iter().position(|v| {
            v.os == c.os && v.architecture == c.architecture && v.variant == c.variant
        })
    }

    /// Whether `candidate` can be used at all.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// The sort key of a matching candidate: rank, then more matched features first.
    fn key(&self, candidate: &Platform) -> Option<(usize, Reverse<usize>)> {
        let rank = self.rank(candidate)?;
        let mut features = candidate.os_features.clone();
        features.sort();
        features.dedup();
        Some((rank, Reverse(features.len())))
    }

    /// The index of the best candidate (the first among equals), or `None`.
    pub fn best(&self, candidates: &[Platform]) -> Option<usize> {
        candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| self.key(c).map(|k| (k, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// The indices of all usable candidates, best first (stable: listing order among equals).
    pub fn ordered(&self, candidates: &[Platform]) -> Vec<usize> {
        let mut keyed: Vec<_> = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| self.key(c).map(|k| (k, i)))
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(_, i)| i).collect()
    }

    /// Recomputes the fallback vector from the settings.
    fn rebuild(&mut self) {
        self.vector = if self.strict {
            vec![self.wanted.clone()]
        } else {
            fallback_vector(&self.wanted, self.allow_386, self.allow_arm32)
        };
    }
}

/// Whether every feature of `have` is in `wanted` (both normalized: sorted, deduplicated).
fn features_subset(have: &[String], wanted: &[String]) -> bool {
    have.iter().all(|f| wanted.binary_search(f).is_ok())
}

/// Windows images pin a build: when both sides name an `os.version`, major.minor.build must
/// agree. Other systems ignore `os.version`.
fn os_version_compatible(wanted: &Platform, candidate: &Platform) -> bool {
    if wanted.os != "windows" {
        return true;
    }
    match (&wanted.os_version, &candidate.os_version) {
        (Some(w), Some(c)) => {
            let build = |v: &str| v.split('.').take(3).collect::<Vec<_>>().join(".");
            build(w) == build(c)
        }
        _ => true,
    }
}

/// `vN` or `vN.M` → (N, M); anything else → `None`.
fn parse_level(variant: &str) -> Option<(u32, u32)> {
    let rest = variant.strip_prefix('v')?;
    let (major, minor) = match rest.split_once('.') {
        Some((a, b)) => (a, b.parse().ok()?),
        None => (rest, 0),
    };
    Some((major.parse().ok()?, minor))
}

/// The ordered fallback vector for a normalized `wanted` platform.
fn fallback_vector(wanted: &Platform, allow_386: bool, allow_arm32: bool) -> Vec<Platform> {
    let with = |arch: &str, variant: Option<String>| Platform {
        architecture: arch.to_string(),
        variant,
        ..wanted.clone()
    };
    let mut out = vec![wanted.clone()];
    match wanted.architecture.as_str() {
        "amd64" => {
            if let Some((level, 0)) = wanted.variant.as_deref().and_then(parse_level) {
                for l in (2..level).rev() {
                    out.push(with("amd64", Some(format!("v{l}"))));
                }
                if level > 1 {
                    out.push(with("amd64", None));
                }
            }
            if allow_386 {
                out.push(with("386", None));
            }
        }
        "arm" => {
            if let Some((n, 0)) = wanted.variant.as_deref().and_then(parse_level) {
                for v in (5..n).rev() {
                    out.push(with("arm", Some(format!("v{v}"))));
                }
            }
        }
        "arm64" => {
            let variant = wanted.variant.as_deref().unwrap_or("v8");
            if let Some((mut major, mut minor)) = parse_level(variant) {
                let name = |major: u32, minor: u32| {
                    if minor == 0 {
                        format!("v{major}")
                    } else {
                        format!("v{major}.{minor}")
                    }
                };
                if major == 9 {
                    for m in (0..minor).rev() {
                        out.push(with("arm64", Some(name(9, m))));
                    }
                    // v9.0 branched from v8.5: v9.x runs what v8.(x+5) runs.
                    minor += 5;
                    major = 8;
                    out.push(with("arm64", Some(name(8, minor))));
                }
                if major >= 8 {
                    for m in (0..minor).rev() {
                        out.push(with("arm64", Some(name(major, m))));
                    }
                }
            }
            if allow_arm32 {
                for v in (5..=8).rev() {
                    out.push(with("arm", Some(format!("v{v}"))));
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(v: &[Platform]) -> Vec<String> {
        v.iter().map(|p| p.to_string()).collect()
    }

    /// containerd's compare_test, in xrun's terms: per wanted platform, what must and must not
    /// match.
    #[test]
    fn only_table() {
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "linux/amd64",
                &["linux/amd64", "linux/amd64/v1", "linux/386", "linux/x86_64"],
                &[
                    "linux/amd64/v2",
                    "linux/arm/v7",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/amd64/v2",
                &[
                    "linux/amd64",
                    "linux/amd64/v1",
                    "linux/amd64/v2",
                    "linux/386",
                ],
                &[
                    "linux/amd64/v3",
                    "linux/amd64/v4",
                    "linux/arm64",
                    "windows/amd64",
                ],
            ),
            (
                "linux/amd64/v4",
                &[
                    "linux/amd64/v4",
                    "linux/amd64/v3",
                    "linux/amd64/v2",
                    "linux/amd64",
                    "linux/386",
                ],
                &["linux/arm64", "linux/arm/v7", "darwin/amd64"],
            ),
            (
                "linux/386",
                &["linux/386", "linux/i686"],
                &["linux/amd64", "linux/arm/v7", "windows/amd64"],
            ),
            (
                "windows/amd64",
                &["windows/amd64", "windows(10.0.17763)/amd64"],
                &["linux/amd64", "windows/arm"],
            ),
            (
                "linux/arm/v8",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                ],
                &["linux/amd64", "linux/arm/v4", "linux/arm64", "windows/arm"],
            ),
            (
                "linux/arm/v7",
                &["linux/arm", "linux/armhf", "linux/arm/v5", "linux/arm/v6"],
                &["linux/arm/v4", "linux/arm/v8", "linux/arm64", "windows/arm"],
            ),
            (
                "linux/arm/v6",
                &["linux/arm/v5", "linux/arm/v6", "linux/armel"],
                &["linux/arm", "linux/arm/v7", "linux/armhf", "linux/arm/v8"],
            ),
            (
                "linux/arm/v5",
                &["linux/arm/v5"],
                &["linux/arm", "linux/arm/v4", "linux/arm/v6"],
            ),
            (
                "linux/arm/v4",
                &["linux/arm/v4"],
                &["linux/arm", "linux/arm/v5"],
            ),
            (
                "linux/arm64/v9",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v8",
                    "linux/arm64",
                    "linux/arm64/v8",
                    "linux/arm64/v8.1",
                    "linux/arm64/v8.5",
                    "linux/arm64/v9",
                    "linux/arm64/v9.0",
                ],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm64/v8.6",
                    "linux/arm64/v9.1",
                ],
            ),
            (
                "linux/arm64/v9.2",
                &["linux/arm64/v9.1", "linux/arm64/v8.7", "linux/arm64/v8.6"],
                &["linux/arm64/v9.3", "linux/arm64/v8.8"],
            ),
            (
                "linux/arm64/v8.1",
                &[
                    "linux/arm",
                    "linux/arm/v8",
                    "linux/arm64",
                    "linux/arm64/v8.1",
                ],
                &["linux/arm/v9", "linux/arm64/v9", "linux/arm64/v8.2"],
            ),
            (
                "linux/arm64",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "linux/arm64/v8",
                    "linux/aarch64",
                ],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v9",
                    "linux/arm64/v9",
                ],
            ),
            (
                "linux/riscv64",
                &["linux/riscv64"],
                &["linux/amd64", "linux/arm64", "linux/386"],
            ),
        ];
        for (wanted, yes, no) in table {
            let m = Matcher::new(&p(wanted));
            for c in *yes {
                assert!(m.matches(&p(c)), "{wanted} should match {c}");
            }
            for c in *no {
                assert!(!m.matches(&p(c)), "{wanted} should not match {c}");
            }
        }
    }

    #[test]
    fn strict_table() {
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "linux/amd64",
                &["linux/amd64", "linux/amd64/v1"],
                &["linux/386"],
            ),
            (
                "linux/amd64/v3",
                &["linux/amd64/v3"],
                &["linux/amd64/v2", "linux/amd64", "linux/386"],
            ),
            (
                "linux/arm/v7",
                &["linux/arm", "linux/arm/v7"],
                &["linux/arm/v6"],
            ),
            ("linux/arm/v8", &["linux/arm/v8"], &["linux/arm/v7"]),
            (
                "linux/arm64",
                &["linux/arm64", "linux/arm64/v8"],
                &["linux/arm/v8"],
            ),
            (
                "linux/arm64/v9",
                &["linux/arm64/v9", "linux/arm64/v9.0"],
                &["linux/arm64/v8"],
            ),
            (
                "linux/arm64/v8.1",
                &["linux/arm64/v8.1"],
                &["linux/arm64/v8", "linux/arm64/v9"],
            ),
            (
                "windows(10.0.17763)/amd64",
                &["windows/amd64", "windows(10.0.17763)/amd64"],
                &["windows(10.0.20348)/amd64", "linux/amd64"],
            ),
        ];
        for (wanted, yes, no) in table {
            let m = Matcher::strict(&p(wanted));
            assert!(m.is_strict());
            assert_eq!(m.candidates().len(), 1, "{wanted}");
            for c in *yes {
                assert!(m.matches(&p(c)), "strict {wanted} should match {c}");
            }
            for c in *no {
                assert!(!m.matches(&p(c)), "strict {wanted} should not match {c}");
            }
        }
    }

    #[test]
    fn vectors() {
        let table: &[(&str, &str)] = &[
            (
                "linux/amd64/v4",
                "linux/amd64/v4 linux/amd64/v3 linux/amd64/v2 linux/amd64 linux/386",
            ),
            ("linux/amd64", "linux/amd64 linux/386"),
            ("linux/amd64/v1", "linux/amd64 linux/386"),
            ("linux/386", "linux/386"),
            ("linux/arm/v7", "linux/arm/v7 linux/arm/v6 linux/arm/v5"),
            (
                "linux/arm64",
                "linux/arm64/v8 linux/arm/v8 linux/arm/v7 linux/arm/v6 linux/arm/v5",
            ),
            (
                "linux/arm64/v8.2",
                "linux/arm64/v8.2 linux/arm64/v8.1 linux/arm64/v8 linux/arm/v8 linux/arm/v7 \
                 linux/arm/v6 linux/arm/v5",
            ),
            (
                "linux/arm64/v9.1",
                "linux/arm64/v9.1 linux/arm64/v9 linux/arm64/v8.6 linux/arm64/v8.5 \
                 linux/arm64/v8.4 linux/arm64/v8.3 linux/arm64/v8.2 linux/arm64/v8.1 \
                 linux/arm64/v8 linux/arm/v8 linux/arm/v7 linux/arm/v6 linux/arm/v5",
            ),
            ("linux/s390x", "linux/s390x"),
        ];
        for (wanted, want) in table {
            let got = names(&Matcher::new(&p(wanted)).candidates()).join(" ");
            let want = want.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(got, want, "vector of {wanted}");
        }
    }

    #[test]
    fn builder_options() {
        let host = p("linux/amd64/v3");
        let m = Matcher::new(&host).with_386(false);
        assert!(!m.matches(&p("linux/386")));
        assert!(m.matches(&p("linux/amd64")));
        assert_eq!(
            names(&m.candidates()),
            ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64"]
        );
        // The option can be turned back on.
        assert!(m.with_386(true).matches(&p("linux/386")));

        let m = Matcher::new(&p("linux/arm64")).with_arm32(false);
        assert!(!m.matches(&p("linux/arm/v7")));
        assert_eq!(names(&m.candidates()), ["linux/arm64/v8"]);
    }

    #[test]
    fn pick_order() {
        // (wanted, listed candidates, expected pick order as indices into the list)
        let table: &[(&str, &[&str], &[usize])] = &[
            (
                "linux/amd64/v4",
                &[
                    "linux/386",
                    "linux/amd64",
                    "linux/arm64",
                    "linux/amd64/v2",
                    "linux/amd64/v3",
                ],
                &[4, 3, 1, 0],
            ),
            (
                "linux/amd64/v2",
                &[
                    "linux/amd64/v3",
                    "linux/amd64/v4",
                    "linux/amd64",
                    "linux/386",
                ],
                &[2, 3],
            ),
            (
                "linux/arm64",
                &[
                    "linux/arm/v7",
                    "linux/amd64",
                    "linux/arm64/v8",
                    "linux/arm/v6",
                ],
                &[2, 0, 3],
            ),
            (
                "linux/arm/v6",
                &["linux/arm/v7", "linux/arm/v5", "linux/arm64"],
                &[1],
            ),
            ("linux/arm/v6", &["linux/arm/v7", "linux/arm64"], &[]),
            // The first entry wins among equally ranked (and equivalent) candidates.
            (
                "linux/amd64/v3",
                &[
                    "linux/arm64",
                    "linux/amd64",
                    "linux/x86_64",
                    "linux/amd64/v1",
                ],
                &[1, 2, 3],
            ),
            (
                "linux/arm64",
                &["linux/arm64", "linux/aarch64/v8", "linux/arm64/v8"],
                &[0, 1, 2],
            ),
        ];
        for (wanted, list, order) in table {
            let list: Vec<Platform> = list.iter().map(|s| p(s)).collect();
            let m = Matcher::new(&p(wanted));
            assert_eq!(m.ordered(&list), *order, "order for {wanted}");
            assert_eq!(m.best(&list), order.first().copied(), "best for {wanted}");
        }
    }

    #[test]
    fn rank_positions() {
        let m = Matcher::new(&p("linux/amd64/v4"));
        assert_eq!(m.rank(&p("linux/amd64/v4")), Some(0));
        assert_eq!(m.rank(&p("linux/amd64/v3")), Some(1));
        assert_eq!(m.rank(&p("linux/amd64/v2")), Some(2));
        assert_eq!(m.rank(&p("linux/amd64")), Some(3));
        assert_eq!(m.rank(&p("linux/amd64/v1")), Some(3));
        assert_eq!(m.rank(&p("linux/386")), Some(4));
        assert_eq!(m.rank(&p("linux/arm64")), None);
        // A raw, unnormalized index entry is normalized before ranking.
        let raw = Platform {
            os: "Linux".into(),
            architecture: "x86_64".into(),
            variant: Some("V2".into()),
            ..Default::default()
        };
        assert_eq!(m.rank(&raw), Some(2));
        assert_eq!(m.wanted(), &p("linux/amd64/v4"));
    }

    #[test]
    fn os_features() {
        let with = |s: &str, f: &[&str]| Platform {
            os_features: f.iter().map(|x| x.to_string()).collect(),
            ..p(s)
        };
        let wanted = with("linux/amd64", &["b", "a"]);
        let m = Matcher::new(&wanted);
        assert!(m.matches(&with("linux/amd64", &[])));
        assert!(m.matches(&with("linux/amd64", &["a"])));
        assert!(m.matches(&with("linux/amd64", &["a", "b"])));
        assert!(m.matches(&with("linux/amd64", &["b", "a", "a"])));
        assert!(!m.matches(&with("linux/amd64", &["c"])));
        assert!(!m.matches(&with("linux/amd64", &["a", "c"])));
        // Fallback entries carry the wanted features too.
        assert!(m.matches(&with("linux/386", &["a"])));

        // A plain want does not accept candidates that require features.
        let plain = Matcher::new(&p("linux/amd64"));
        assert!(!plain.matches(&with("linux/amd64", &["a"])));
        assert!(plain.matches(&with("linux/amd64", &[])));

        // Among equal ranks, matching features win over none; the rank still comes first.
        let list = [
            with("linux/amd64", &[]),
            with("linux/amd64", &["c"]),
            with("linux/amd64", &["a"]),
            with("linux/amd64", &["a", "b"]),
            with("linux/386", &["a", "b"]),
        ];
        assert_eq!(m.best(&list), Some(3));
        assert_eq!(m.ordered(&list), [3, 2, 0, 4]);
        assert_eq!(m.best(&list[..3]), Some(2));
        assert_eq!(m.best(&[list[4].clone(), list[0].clone()]), Some(1));
    }

    #[test]
    fn windows_os_version() {
        let m = Matcher::new(&p("windows(10.0.17763.1234)/amd64"));
        assert!(m.matches(&p("windows(10.0.17763)/amd64")));
        assert!(m.matches(&p("windows(10.0.17763.99)/amd64")));
        assert!(m.matches(&p("windows/amd64")));
        assert!(!m.matches(&p("windows(10.0.20348)/amd64")));
        // Linux ignores os.version.
        let m = Matcher::new(&p("linux(5.10)/amd64"));
        assert!(m.matches(&p("linux(6.1)/amd64")));
    }

    #[test]
    fn empty_list() {
        assert_eq!(Matcher::new(&p("linux/amd64")).best(&[]), None);
        assert!(Matcher::new(&p("linux/amd64")).ordered(&[]).is_empty());
    }
}
