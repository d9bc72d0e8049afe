"""rpibuild: GPU-accelerated PyTorch images for the Raspberry Pi, built on an x86 host (C++
cross-compiled natively; QEMU runs only what must execute Pi code)."""

__version__ = "0.1.0"
