"""The README's first command (`pip install -e .`, no extras) is enough for every README command: every
distribution the package imports, and pygments for `snakemake --report`, are among its runtime requirements
(read from the installed metadata, followed through their own requirements)."""

import ast
import re
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _name(req: str) -> tuple[str, set[str]]:
    """(normalised distribution name, extras) of a requirement string."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(\[([^\]]*)\])?", req)
    assert m, req
    extras = {e.strip() for e in (m.group(3) or "").split(",") if e.strip()}
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), extras


def runtime_closure(dist: str) -> set[str]:
    """Distributions that `pip install DIST` brings in: its requirements without extras (unless asked for
    by name) and without environment markers that exclude this machine, followed recursively."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()  # (name, extras) already expanded: cycles end here
    todo: list[tuple[str, frozenset[str]]] = [(dist, frozenset())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        seen.add(name)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for r in reqs:
            req = Requirement(r)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in env):
                continue
            todo.append((_name(req.name)[0], frozenset(req.extras)))
    return seen


def imported_distributions() -> set[str]:
    """Distributions that provide the top-level modules imported anywhere in cryopipe/."""
    modules: set[str] = set()
    for path in (REPO / "cryopipe").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    provided = metadata.packages_distributions()
    return {_name(d)[0] for m in modules if m in provided for d in provided[m]} - {"cryopipe"}


def test_plain_install_covers_every_import_and_the_report():
    closure = runtime_closure("cryopipe")
    missing = sorted(imported_distributions() - closure)
    assert not missing, f"imported by cryopipe but not installed by `pip install -e .`: {missing}"
    assert "pygments" in closure, "`snakemake --report` needs pygments: depend on snakemake[reports]"
    assert {"torch", "snakemake", "gemmi"} <= closure  # the closure is real, not empty
