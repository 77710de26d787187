//! The emulated route: binfmt_misc handlers (install, remove) and qemu-user discovery.
