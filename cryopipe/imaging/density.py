"""A second density model for simulation: atoms as electron form factors blurred by B-factors.

The alignment (and the default simulator) model every atom as one Gaussian of width σ (from
`reference.resolution`) and weight Z. Data made with that same model flatter the fit. Here each atom
is instead its element's electron scattering factor, the 5-Gaussian fit of International Tables
Vol. C 4.3.2.2 as shipped by gemmi (`Element.c4322`): f(s) = Σ_i a_i exp(−b_i s²/4), s = 1/d in Å⁻¹,
multiplied by the Debye–Waller factor exp(−B s²/4). A term a·exp(−(b + B) s²/4) is the Fourier
transform of a 3-D Gaussian of weight a and variance σ² = (b + B)/(8π²) Å², so an atom becomes five
Gaussians at its centre, rendered by the same exact projector. Other weights (hydrogens count
relatively more than with Z), other widths, and per-atom blurring from the B-factors.
"""

from __future__ import annotations

import math

import numpy as np


def form_factor_gaussians(elements: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(a (N, 5) in Å, b (N, 5) in Å²) of each element's electron form factor; unknown elements as carbon."""
    import gemmi

    cache: dict[str, tuple[list, list]] = {}
    a, b = [], []
    for el in elements:
        if el not in cache:
            e = gemmi.Element(el.capitalize())
            coef = e.c4322 if e.atomic_number > 0 and sum(e.c4322.a) > 0 else gemmi.Element("C").c4322
            cache[el] = (list(coef.a), list(coef.b))
        a.append(cache[el][0])
        b.append(cache[el][1])
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)


def scattering_gaussians(elements: list[str], bfactors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five Gaussians per atom: (atom index (5N,), weight (5N,) Å, σ (5N,) Å) for elements and B-factors (N,) Å²."""
    a, b = form_factor_gaussians(elements)
    var = (b + np.asarray(bfactors, dtype=np.float64)[:, None]) / (8 * math.pi**2)
    index = np.repeat(np.arange(len(elements)), a.shape[1])
    return index, a.reshape(-1), np.sqrt(var).reshape(-1)
