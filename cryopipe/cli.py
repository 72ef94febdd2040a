"""`python -m cryopipe <command>`: one module per command with add_args/main.

Command modules import only the standard library at module level, so `--help` is instant;
heavy packages (torch, prody, pandas) are imported inside `main`. A CryopipeError becomes one
line on stderr and exit status 2, and the outputs the command declared are removed so nothing
half-written is left behind.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

COMMANDS = {
    "reference": "cryopipe.commands.reference",
    "homologues": "cryopipe.commands.homologues",
    "homologue-signal": "cryopipe.commands.homologue_signal",
    "homologue-images": "cryopipe.commands.homologue_images",
    "classify-train": "cryopipe.commands.classify_train",
    "classify-evaluate": "cryopipe.commands.classify_evaluate",
    "classify-summary": "cryopipe.commands.classify_summary",
    "vae-train": "cryopipe.commands.vae_train",
    "vae-volumes": "cryopipe.commands.vae_volumes",
    "vae-summary": "cryopipe.commands.vae_summary",
    "modes": "cryopipe.commands.modes",
    "conformations": "cryopipe.commands.conformations",
    "simulate": "cryopipe.commands.simulate",
    "import": "cryopipe.commands.import_star",
    "preprocess": "cryopipe.commands.preprocess",
    "align": "cryopipe.commands.align",
    "train": "cryopipe.commands.train",
    "infer": "cryopipe.commands.infer",
    "refine": "cryopipe.commands.refine",
    "reduce": "cryopipe.commands.reduce",
    "cluster": "cryopipe.commands.cluster",
    "backproject": "cryopipe.commands.backproject",
    "evaluate": "cryopipe.commands.evaluate",
    "improve-train": "cryopipe.commands.improve_train",
    "improve": "cryopipe.commands.improve",
    "trajectory": "cryopipe.commands.trajectory",
    "tables": "cryopipe.commands.tables",
    "overlap": "cryopipe.commands.overlap",
    "validate-config": "cryopipe.commands.validate_config",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="cryopipe", description="cryo-EM continuous heterogeneity pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, path in COMMANDS.items():
        mod = importlib.import_module(path)
        p = sub.add_parser(name, help=(mod.__doc__ or name).strip().splitlines()[0], description=mod.__doc__)
        mod.add_args(p)
        modules[name] = mod
    return parser, modules


def _remove_outputs(args: argparse.Namespace, names) -> None:
    for name in names:
        value = getattr(args, name, None)
        for v in value if isinstance(value, list) else [value]:
            if v and Path(v).is_file():
                Path(v).unlink()


class _ConsoleHandler(logging.Handler):
    """Library messages (`logging.getLogger("cryopipe....")`) on the standard output of the moment, as a
    command's own prints: a Snakemake log, or a test that captures the output, gets both in order."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stdout, flush=True)
        except Exception:
            self.handleError(record)


def configure_logging() -> None:
    """INFO and above from cryopipe's library modules, once per process."""
    logger = logging.getLogger("cryopipe")
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    from cryopipe.errors import CryopipeError

    configure_logging()
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    mod = modules[args.command]
    try:
        mod.main(args)
    except CryopipeError as e:
        _remove_outputs(args, getattr(mod, "OUTPUTS", ()))
        print(f"cryopipe {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BaseException:
        _remove_outputs(args, getattr(mod, "OUTPUTS", ()))
        raise
    return 0
