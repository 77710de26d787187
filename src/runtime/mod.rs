//! The native route: OCI runtime bundles (overlay rootfs + `config.json`), the executor,
//! container state, the per-container monitor, logs and the init.
