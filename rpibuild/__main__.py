"""Allow ``python -m rpibuild``."""

from rpibuild.cli import main

if __name__ == "__main__":
    main()
