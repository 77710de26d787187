//! The distribution protocol: references, auth, manifests and verified blob streams, and the
//! pull that writes them into the store.
//!
//! Owner: the registry stage.
