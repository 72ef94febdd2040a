"""The command-line conventions, checked on every command: outputs are `--out-*` and listed in OUTPUTS (so a
failed run removes them), and a command reads no argument it does not declare."""

import argparse
import importlib
import re

import pytest

from cryopipe.cli import COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_outputs_are_out_flags_and_every_argument_read_is_declared(name):
    module = importlib.import_module(COMMANDS[name])
    parser = argparse.ArgumentParser()
    module.add_args(parser)
    dests = {a.dest for a in parser._actions}
    outputs = set(getattr(module, "OUTPUTS", []))
    assert outputs <= dests, f"OUTPUTS names no flag: {sorted(outputs - dests)}"
    assert all(o.startswith("out_") for o in outputs), sorted(outputs)
    undeclared = {a.dest for a in parser._actions if a.dest.startswith("out_")} - outputs
    assert not undeclared, f"output flags missing from OUTPUTS (left behind on failure): {sorted(undeclared)}"
    read = set(re.findall(r"\bargs\.(\w+)", open(module.__file__).read()))
    assert read <= dests, f"reads undeclared arguments: {sorted(read - dests)}"


def test_building_the_parser_imports_no_heavy_package():
    """`--help` stays instant: building every command's parser imports neither torch nor pandas."""
    import subprocess
    import sys

    code = (
        "import sys; from cryopipe.cli import build_parser; build_parser(); "
        "print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
