"""This host and its engine's setup: binfmt/QEMU, the build platform, CA bundles, locks, doctor."""
