"""``python -m wcs inspect FILE...`` and ``python -m wcs prepare IN OUT`` (also
installed as ``wcsvod-files inspect ...``).

``inspect`` prints, per file, what the server would do with it and why, and
exits 1 if any will not play; ``prepare`` writes a copy that plays without
re-encoding and says what it did (exit 1 if it cannot).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wcs.files.inspect import WILL_NOT_PLAY, inspect
from wcs.files.prepare import CannotPrepare, bar, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wcsvod-files", description="wcsvod's tools for media files"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("inspect", help="what the server would do with each file")
    checking.add_argument("files", nargs="+", type=Path)
    checking.add_argument("--json", action="store_true", help="one JSON object per line")
    preparing = commands.add_parser("prepare", help="write a copy that plays as it is")
    preparing.add_argument("source", type=Path)
    preparing.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    if args.command == "inspect":
        failed = False
        for path in args.files:
            report = inspect(path)
            failed |= report.verdict == WILL_NOT_PLAY
            if args.json:
                print(json.dumps(report.as_dict()))
            else:
                print("\n".join(report.lines()))
        return 1 if failed else 0
    try:
        done = prepare(args.source, args.target, bar)
    except CannotPrepare as error:
        print(f"prepare: {error}", file=sys.stderr)
        return 1
    print(f"{args.target}: " + "; ".join(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
