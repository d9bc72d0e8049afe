"""``python -m torch_qpu {doctor,bench,check,calibrate,offload}``."""

from __future__ import annotations

import sys

COMMANDS = {
    "doctor": "can the qpu backend run here? (checks with fixes)",
    "bench": "timing tables per backend vs torch",
    "check": "accuracy of every op on a backend vs torch",
    "calibrate": "measure the memory model's parameters (qpu; qpusim: under its model)",
    "offload": "where auto runs typical calls (QPU vs the Pi's CPU, from the cost model)",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print("usage: python -m torch_qpu {doctor,bench,check,calibrate,offload} [options]")
        for name, text in COMMANDS.items():
            print(f"  {name:9} {text}")
        return 0 if args and args[0] in ("-h", "--help") else 2
    command, rest = args[0], args[1:]
    if command == "doctor":
        from .doctor import main as run
    elif command == "bench":
        from .bench import main as run
    elif command == "calibrate":
        from .calibrate import main as run
    elif command == "offload":
        from .offload import main as run
    else:
        from .check import main as run
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
