"""Configuration: JSON-schema validation with defaults filled in, one-line errors naming the key."""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path

from cryopipe.errors import CryopipeError

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")


@lru_cache(maxsize=1)
def schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def _fill_defaults(node: dict, sch: dict) -> None:
    for key, sub in sch.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(node[key], sub)


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def validate_config(config: dict, source: str = "config") -> dict:
    """A validated deep copy of `config` with every default filled in.

    Raises CryopipeError with one line naming the offending key.
    """
    import jsonschema

    cfg = copy.deepcopy(dict(config))
    sch = schema()
    validator = jsonschema.Draft202012Validator(sch)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = errors[0]
        where = _key_path(e.path)
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            key = f"{where}.{extra[0]}" if where else extra[0]
            raise CryopipeError(f"{source}: unknown config key '{key}'")
        raise CryopipeError(f"{source}: config key '{where or '(top level)'}': {e.message}")
    ref = cfg.get("reference") or {}
    if ref.get("map") and ref.get("pdb"):  # checked before the defaults fill in reference.pdb
        raise CryopipeError(
            f"{source}: config key 'reference.map': give an EM map or reference.pdb, not both (the map is "
            "converted into pseudoatoms; the PDB's atoms are the model otherwise)"
        )
    _fill_defaults(cfg, sch)
    if cfg["reference"]["map"]:
        cfg["reference"]["pdb"] = None  # the map is the reference: no atomic model
    _check_consistency(cfg, source)
    return cfg


def _check_consistency(cfg: dict, source: str) -> None:
    """Rules between keys that a JSON schema cannot say simply."""
    cl = cfg["analysis"]["cluster"]
    if cl["method"] == "polygons" and not cl["polygons"]:
        raise CryopipeError(
            f"{source}: config key 'analysis.cluster.polygons': method 'polygons' needs at least one polygon"
        )
    if cl["space"] == "umap" and not cfg["analysis"]["umap"] and cl["method"] in ("kmeans", "gmm", "dense", "polygons"):
        raise CryopipeError(f"{source}: config key 'analysis.cluster.space': 'umap' needs analysis.umap: true")
    al = cfg["align"]
    if al["recentre"]["passes"] and al["second_reference"]["pdb"]:
        raise CryopipeError(
            f"{source}: config key 'align.recentre.passes': re-centring makes a second reference from the data; "
            "it cannot be combined with align.second_reference.pdb"
        )
    if cl["bins"] is not None and sorted(cl["bins"]) != list(cl["bins"]):
        raise CryopipeError(f"{source}: config key 'analysis.cluster.bins': edges must increase")


def default_config() -> dict:
    """The schema's defaults alone (what an empty config.yaml means), validated."""
    return validate_config({}, source="defaults")


def load_config(path: str | os.PathLike) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise CryopipeError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise CryopipeError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    return validate_config(data, source=str(p))
