#!/usr/bin/env python3
"""Compare torch_qpu's ops with torch on a Pi (or anywhere): max error per op.

Same as ``python -m torch_qpu.check``; kept as a script to copy onto a Pi.
Exit status 1 on a mismatch, 2 when the backend cannot run.
"""

import sys

from torch_qpu.check import main

if __name__ == "__main__":
    sys.exit(main())
