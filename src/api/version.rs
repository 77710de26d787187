//! API versions: what this service advertises, and the `/v1.NN/` prefix of a path.

use std::fmt;

use super::error::ApiError;

/// A Docker Engine API version (`1.44`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    /// Always 1.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
}

/// The highest version whose semantics this service implements (Docker 29 clients refuse
/// anything below 1.44).
pub const CURRENT: ApiVersion = ApiVersion {
    major: 1,
    minor: 44,
};

/// The lowest version accepted (as Docker's daemon).
pub const MINIMUM: ApiVersion = ApiVersion {
    major: 1,
    minor: 24,
};

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = ();
    fn from_str(s: &str) -> Result<ApiVersion, ()> {
        let (a, b) = s.split_once('.').ok_or(())?;
        Ok(ApiVersion {
            major: a.parse().map_err(|_| ())?,
            minor: b.parse().map_err(|_| ())?,
        })
    }
}

/// Splits `/v1.44/containers/json` into the version and `/containers/json`; a path without
/// the prefix is unversioned. A version outside [`MINIMUM`]..=[`CURRENT`] is a 400, as
/// Docker answers it.
pub fn split(path: &str) -> Result<(Option<ApiVersion>, &str), ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let (v, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Ok(version) = v.parse::<ApiVersion>() else {
        return Ok((None, path));
    };
    if version > CURRENT {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {CURRENT}"
        )));
    }
    if version < MINIMUM {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {MINIMUM}, please upgrade your client to a newer version"
        )));
    }
    Ok((Some(version), tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths_split() {
        let (v, p) = split("/v1.44/containers/json").unwrap();
        assert_eq!(v, Some(CURRENT));
        assert_eq!(p, "/containers/json");
        let (v, p) = split("/_ping").unwrap();
        assert_eq!((v, p), (None, "/_ping"));
        let (v, p) = split("/version").unwrap();
        assert_eq!((v, p), (None, "/version"));
        assert!(
            split("/v1.99/info")
                .unwrap_err()
                .message
                .contains("too new")
        );
        assert!(
            split("/v1.12/info")
                .unwrap_err()
                .message
                .contains("too old")
        );
    }
}
