"""The command line: ``python -m audiocraft <verb> ...`` (also installed as ``audiocraft``).

Verbs: ``generate`` (text to music), ``continue`` (continue an audio file), ``melody``
(text + melody), ``encode`` / ``decode`` (audio <-> codec tokens files), ``info``
(describe a model, checkpoint or tokens file). See docs/CLI.md.

Exit codes: 0 success; 2 usage or input error (one ``<prog>: error: <message>`` line on
stderr, no traceback); 1 unexpected error (traceback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import List, Optional

from .common import CliError, one_line

__all__ = ["CliError", "build_parser", "main"]

DESCRIPTION = """\
Generate music and sound with MusicGen / AudioGen, and encode or decode audio with EnCodec.
Run `%(prog)s VERB --help` for the options of each verb."""

EPILOG = """\
examples:
  %(prog)s generate "lofi hip hop beat with mellow chords" --duration 8
  %(prog)s continue intro.wav --description "jazz trio" --duration 12
  %(prog)s encode song.wav --out song.tokens.pt && %(prog)s decode song.tokens.pt --out song.decoded.wav
  %(prog)s info facebook/musicgen-small

exit codes: 0 success, 2 usage or input error, 1 unexpected error."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``<prog>: error: <message> (see <prog> --help)``."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser(prog: str = "audiocraft") -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb (each sets ``handler``)."""
    from .. import __version__
    from . import codec, generate, info

    parser = _Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="VERB", title="verbs")
    generate.register(subparsers)
    codec.register(subparsers)
    info.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None, prog: str = "audiocraft") -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: choose a verb: generate, continue, melody, encode, decode or info "
              f"(`{prog} --help` explains them)", file=sys.stderr)
        return 2
    where = f"{prog} {args.command}"
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        print(f"{where}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:  # the library's input errors (FileNotFoundError is an OSError)
        print(f"{where}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: keep the traceback for the report
        traceback.print_exc()
        print(f"{where}: unexpected error ({type(exc).__name__}): {one_line(exc)}", file=sys.stderr)
        return 1
