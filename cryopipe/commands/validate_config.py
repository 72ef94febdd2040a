"""Validate a config file against the schema and print it with all defaults filled in.

After the resolved config comes one YAML comment line, `# estimate: ...`: the disk the run's outputs
need and the peak memory of its heaviest stage. A run that would not fit on the results folder's disk
or in this machine's memory is refused (one line naming the config keys, exit status 2).
"""

from __future__ import annotations

import argparse


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="config.yaml")


def main(args: argparse.Namespace) -> None:
    import yaml

    from cryopipe.config import load_config
    from cryopipe.config.resources import check_resources, describe

    cfg = load_config(args.config)
    est = check_resources(cfg, source=str(args.config))
    print(yaml.safe_dump(cfg, sort_keys=False), end="")
    print(f"# estimate: {describe(est)}")
