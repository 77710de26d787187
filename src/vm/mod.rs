//! The VM route: guest kernels as OCI images, the rootfs disk image, qemu, and serial I/O.
