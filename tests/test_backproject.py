"""Reconstruction and FSC: a known map back from its projections, FSC against direct numpy."""

import numpy as np
import pytest
import torch

from cryopipe.analysis.backproject import Backprojector
from cryopipe.analysis.fsc import fsc, resolution_at
from cryopipe.geometry import random_rotations
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import crop_centered, pad_centered
from cryopipe.imaging.project import atoms_to_map, project_atoms
from helpers import corr

L, APIX, SIGMA = 64, 1.5, 2.0


@pytest.fixture(scope="module")
def blob_map():
    g = np.random.default_rng(0)
    coords, w = torch.tensor(g.normal(0, 10, (300, 3))), torch.tensor(g.uniform(0.5, 2, 300))
    return coords, w, atoms_to_map(coords, w, pixel_size=APIX, size=L, sigma=SIGMA)


@pytest.mark.parametrize("with_ctf", [False, True])
def test_backprojection_recovers_known_map(blob_map, with_ctf):
    coords, w, vol = blob_map
    n = 2000
    A = random_rotations(n, torch.Generator().manual_seed(1))
    origins = torch.tensor(np.random.default_rng(2).uniform(-3, 3, (n, 2)))  # Å
    df = torch.tensor(np.random.default_rng(3).uniform(1e4, 2.5e4, n))
    bp = Backprojector(L)
    for i in range(0, n, 200):
        sl = slice(i, i + 200)
        imgs = project_atoms(coords[None], w, A[sl], origins[sl], pixel_size=APIX, size=L, sigma=SIGMA)
        ctf = None
        if with_ctf:
            ctf = ctf_2d(
                df[sl],
                df[sl],
                torch.zeros(len(imgs)),
                voltage=300.0,
                spherical_aberration=2.7,
                amplitude_contrast=0.1,
                pixel_size=APIX,
                shape=(2 * L, 2 * L),
                rfft=False,
            ).double()
            padded = pad_centered(imgs, 2 * L)
            F = torch.fft.fft2(torch.fft.ifftshift(padded, dim=(-2, -1))) * ctf
            imgs = crop_centered(torch.fft.fftshift(torch.fft.ifft2(F).real, dim=(-2, -1)), L)
        bp.insert(imgs, A[sl], origins[sl] / APIX, ctf)
    rec = bp.reconstruct(wiener=1e-3 if not with_ctf else 0.05)
    assert corr(rec, vol) > (0.98 if with_ctf else 0.99)


def test_fsc_properties_and_numpy_reference(blob_map):
    _, _, vol = blob_map
    _shells, curve = fsc(vol, vol)
    np.testing.assert_allclose(curve, 1.0, atol=1e-10)
    g = np.random.default_rng(5)
    n1, n2 = torch.tensor(g.normal(size=(L, L, L))), torch.tensor(g.normal(size=(L, L, L)))
    _, noise = fsc(n1, n2)
    # Independent noise: FSC_s ~ N(0, 1/sqrt(n_s/2)) with n_s Fourier voxels (Friedel pairs) in shell s; 4 σ bound.
    k = np.fft.fftfreq(L) * L
    r = np.rint(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)).astype(int)
    counts = np.bincount(r.ravel())[: L // 2]
    assert (np.abs(noise[1:]) < 4 / np.sqrt(counts[1:] / 2)).all()
    assert np.abs(noise[8:]).mean() < 0.02
    # Direct numpy computation on shells of rounded |k|.
    a, b = vol.numpy() + 0.1 * n1.numpy(), vol.numpy() + 0.1 * n2.numpy()
    Fa, Fb = np.fft.fftn(a), np.fft.fftn(b)
    ref = [
        np.real((Fa[r == s] * np.conj(Fb[r == s])).sum())
        / np.sqrt((np.abs(Fa[r == s]) ** 2).sum() * (np.abs(Fb[r == s]) ** 2).sum())
        for s in range(L // 2)
    ]
    np.testing.assert_allclose(fsc(torch.tensor(a), torch.tensor(b))[1], ref, rtol=1e-9, atol=1e-12)
    assert resolution_at(np.array([1, 1, 0.9, 0.6, 0.4, 0.1]), 64, 1.5, 0.5) == pytest.approx(64 * 1.5 / 4)
