"""``python -m audiocraft``: the command line (see :mod:`audiocraft.cli` and docs/CLI.md)."""
from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``audiocraft`` console script; returns the exit code."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(prog="python -m audiocraft"))
