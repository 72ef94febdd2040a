"""The torch device named by the config's `device` key."""

from __future__ import annotations


def pick_device(name: str) -> str:
    """'auto' → cuda when a GPU is visible, else cpu; asking for cuda without a GPU is an error."""
    import torch

    from cryopipe.errors import CryopipeError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CryopipeError("config key 'device': cuda requested but no GPU is visible")
    return name
