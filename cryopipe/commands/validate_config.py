"""Validate a config file against the schema and print it with all defaults filled in."""

from __future__ import annotations

import argparse


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="config.yaml")


def main(args: argparse.Namespace) -> None:
    import yaml

    from cryopipe.config import load_config

    print(yaml.safe_dump(load_config(args.config), sort_keys=False), end="")
