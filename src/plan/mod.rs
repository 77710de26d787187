//! The routing decision: a pure function from a host profile, an image's requirements and the
//! user's flags to a [`Verdict`] (route + reasons). No I/O; `xrun check` and `xrun run` call the
//! same function.
