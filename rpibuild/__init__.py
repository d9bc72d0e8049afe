"""rpibuild: GPU-accelerated PyTorch images for the Raspberry Pi, built on an x86 host under QEMU."""

__version__ = "0.1.0"
