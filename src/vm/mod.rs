//! The VM route: run an image's command in a small VM with its own kernel.
//!
//! A **guest** ([`Guest`]) is a kernel, a base initramfs (busybox, the modules the guest init
//! needs, optional extra modules, and the init itself, `guest-init.sh`) and the kernel's
//! config, built from Debian packages by `ci/guest-image` and shipped as an OCI image (one per
//! architecture under an index). The image's layers become one read-only erofs **rootfs
//! image** ([`rootfs`]), cached by manifest digest; the guest mounts it under a tmpfs (or a
//! writable ext4 **layer disk**, [`disk`]) through overlayfs. The command, environment, working
//! directory, user and hostname travel in a small cpio appended to the initrd ([`runcpio`]),
//! never on the kernel command line. stdout, stderr and the exit status come back over three
//! named virtio serial ports ([`serial`]). [`qemu`] builds the command line and decides the
//! accelerator (TCG unless KVM is truly usable).
//!
//! A fourth port, `org.xrun.ctl`, carries signals and terminal sizes to the guest init
//! ([`VmControl`]); with `-t` the command runs on a virtio console (`/dev/hvc0`) as its
//! controlling terminal. The guest init also travels in every run's cpio, so the protocol
//! always matches this xrun, whatever base initrd the guest has.
//!
//! With a [`VmNetwork`] (a network namespace attached like any container's), qemu runs inside
//! that namespace and the guest takes over its interfaces ([`net`]: a tap per interface,
//! tc mirred filters both ways, the same MAC and address in the guest).
//!
//! A guest may also come from a registry: [`GuestImage`] pulls the guest image `--vm-kernel
//! REF` names for the architecture needed.
//!
//! `exec` into a running VM goes through exec slots, more serial ports whose sockets qemu
//! listens on ([`exec`]). `-v` directories are 9p shares, `--read-only`, `--tmpfs` and
//! `--pids-limit` are set up by the guest init; with `--memory`/`--cpus` qemu itself runs in
//! a host cgroup ([`cgroup`]).
//!
//! The entry point is [`run`] (or [`run_image`], which builds the rootfs image first); [`start`]
//! / [`start_image`] return a [`VmRun`] to wait for and signal (the container lifecycle).

pub mod cgroup;
pub mod disk;
mod error;
pub mod exec;
pub mod guest;
pub mod guest_image;
pub mod launch;
pub mod net;
pub mod qemu;
pub mod qmp;
pub mod rootfs;
pub mod runcpio;
mod runner;
pub mod serial;

pub use error::VmError;
pub use guest::Guest;
pub use guest_image::GuestImage;
pub use launch::VmLaunch;
pub use net::{GuestNic, VmNetwork};
pub use qemu::{Accel, AccelChoice, choose_accel};
pub use runner::{
    EXEC_SLOTS, HostLimitsSpec, VmControl, VmExit, VmIo, VmRun, VmSpec, VmTmpfs, VmVolume, run,
    run_image, start, start_image,
};
