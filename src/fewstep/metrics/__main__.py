"""`python -m fewstep.metrics classifier NAME...` retrains and ships classifiers from their recorded recipes;
`python -m fewstep.metrics floor DATASET [--n 256 512 all]` prints the real-data FD noise floors as JSON."""

from __future__ import annotations

import sys

from . import classifier, frechet

COMMANDS = {"classifier": classifier.main, "floor": frechet.main}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m fewstep.metrics {{{','.join(COMMANDS)}}} ...\n{__doc__}")
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
