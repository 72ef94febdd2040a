"""One module per CLI command: `add_args(parser)`, `main(args)` and, for pipeline stages,
`params_from_config(config, ...)`, the exact config subset the stage depends on (the Snakemake
rules pass it as `params`, so changing anything else does not re-run the stage)."""

from __future__ import annotations

import argparse
import json


def add_params_arg(parser: argparse.ArgumentParser) -> None:
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("--params", help="JSON of this stage's settings (what the workflow passes)")
    g.add_argument("--config", help="a cryopipe config.yaml to take this stage's settings from")


def resolve_params(args: argparse.Namespace, params_from_config, **kw) -> dict:
    if args.params is not None:
        params = json.loads(args.params)
        planned = params.pop("cryopipe_version", None)
        if planned is not None:
            from cryopipe import __version__
            from cryopipe.errors import CryopipeError

            # The workflow was planned by one cryopipe and the job runs another (e.g. a stale cluster env).
            if planned != __version__:
                raise CryopipeError(
                    f"--params: the workflow was planned with cryopipe {planned}, this job runs {__version__}; "
                    "install the same version in the job's environment"
                )
        return params
    from cryopipe.config import load_config

    return params_from_config(load_config(args.config), **kw)
