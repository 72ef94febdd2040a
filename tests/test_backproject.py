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
        bp.insert(imgs, A[sl], origins[sl] / APIX, None if ctf is None else ctf[..., : L + 1])  # the rfft half
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


# --- gold-standard half maps and the corrected FSC (issue 15) -------------------------------------------------


def _posed_star(d, images: np.ndarray, seed: int, name: str = "particles"):
    """A RELION STAR (+ MRCS) of `images` at random poses, origins and CTFs, halves alternating via rlnRandomSubset."""
    import pandas as pd

    from cryopipe.geometry import matrix_to_euler
    from cryopipe.io.mrc import write_mrc
    from cryopipe.io.star import image_names, make_optics, write_star

    n, size = len(images), images.shape[-1]
    g = np.random.default_rng(seed)
    euler = matrix_to_euler(random_rotations(n, torch.Generator().manual_seed(seed))).numpy()
    df = g.uniform(1e4, 2.5e4, n)
    write_mrc(d / f"{name}.mrcs", images.astype(np.float32), APIX)
    particles = pd.DataFrame(
        {
            "rlnImageName": image_names(d / f"{name}.mrcs", n),
            "rlnAngleRot": euler[:, 0],
            "rlnAngleTilt": euler[:, 1],
            "rlnAnglePsi": euler[:, 2],
            "rlnOriginXAngst": g.uniform(-3, 3, n),
            "rlnOriginYAngst": g.uniform(-3, 3, n),
            "rlnDefocusU": df,
            "rlnDefocusV": df - 300,
            "rlnDefocusAngle": g.uniform(0, 180, n),
            "rlnOpticsGroup": 1,
            "rlnRandomSubset": np.arange(n) % 2 + 1,
        }
    )
    write_star(d / f"{name}.star", particles, make_optics(APIX, size, 300.0, 2.7, 0.1))
    return d / f"{name}.star"


def _backproject(star, out, **params):
    import json

    from cryopipe.io.mrc import read_mrc
    from helpers import run_cli, stage_json

    p = {**json.loads(stage_json("backproject")), **params}
    paths = [out.with_name(f"{out.name}_{k}.mrc") for k in ("h1", "h2", "map")]
    run_cli("backproject", "--params", json.dumps(p), "--star", star,
            "--out-half1", paths[0], "--out-half2", paths[1], "--out-map", paths[2])  # fmt: skip
    return [torch.as_tensor(read_mrc(q)[0].astype(np.float64)) for q in paths]


def test_half_maps_of_pure_noise_are_uncorrelated(tmp_path):
    """Images of independent noise: each half-map FSC shell within 3σ of zero (σ = 1/√(independent voxels)),
    unmasked and masked, and no systematic correlation over the shells (the bias the FSC-derived Wiener
    filter of both halves made: +0.03–0.05 in every shell beyond the resolution)."""
    from cryopipe.analysis.fsc import corrected_fsc, noise_fsc_line, soft_sphere

    noise = np.random.default_rng(21).standard_normal((1200, L, L))
    h1, h2, _ = _backproject(_posed_star(tmp_path, noise, 22), tmp_path / "noise")
    mask = soft_sphere(L, L / 4, 4.0)
    half = corrected_fsc(h1, h2, mask)
    for curve, line in ((half.unmasked, noise_fsc_line(L)), (half.masked, noise_fsc_line(L, mask=mask))):
        beyond = slice(3, None)
        assert (np.abs(curve[beyond]) < line[beyond]).all(), np.round(curve, 3)
        sigma_mean = np.sqrt(np.mean((line[beyond] / 3) ** 2) / len(curve[beyond]))
        assert abs(curve[beyond].mean()) < 3 * sigma_mean


def test_phase_randomisation_removes_a_tight_masks_own_correlation():
    """Signal up to shell 10 only, independent noise in each half: a tight mask makes the masked FSC positive
    beyond shell 10 (leakage of the shared signal); the corrected FSC is back at the unmasked value (≈ 0)."""
    from cryopipe.analysis.fsc import corrected_fsc, molecule_mask, noise_fsc_line, shell_index

    g = np.random.default_rng(23)
    coords = g.normal(0, 8, (150, 3))
    vol = atoms_to_map(torch.tensor(coords), torch.ones(150, dtype=torch.float64), pixel_size=APIX, size=L, sigma=1.0)
    F = torch.fft.rfftn(vol)
    signal = torch.fft.irfftn(F * (shell_index(L, rfft=True) <= 10), s=vol.shape)
    sd = 0.3 * float(signal.std())
    h1 = signal + sd * torch.as_tensor(g.standard_normal(vol.shape))
    h2 = signal + sd * torch.as_tensor(g.standard_normal(vol.shape))
    tight = molecule_mask(coords, L, APIX, margin=1.0, edge=APIX)
    half = corrected_fsc(h1, h2, tight)
    out = np.arange(L // 2) >= half.randomise_from + 2
    assert 9 <= half.randomise_from <= 12
    assert half.masked[out].mean() > 0.1  # the mask alone correlates the halves out there
    assert np.abs(half.corrected[out] - half.unmasked[out]).max() < noise_fsc_line(L, mask=tight)[out].max()
    sigma = noise_fsc_line(L, 1.0, mask=tight)[out]
    assert abs(half.corrected[out].mean()) < 3 * np.sqrt(np.mean(sigma**2) / out.sum())
    assert half.masked[out].mean() > 5 * np.sqrt(np.mean(sigma**2) / out.sum())
    assert half.corrected[3:9].min() > 0.9  # where the signal is, the mask keeps it


def test_half_maps_never_share_an_image(tmp_path):
    """Through the CLI: changing every image of half set 2 leaves half map 1 exactly as it was (nothing in it is
    derived from the other half), and changes half map 2 and the full map."""
    g = np.random.default_rng(24)
    coords, w = torch.tensor(g.normal(0, 8, (200, 3))), torch.tensor(g.uniform(0.5, 2, 200))
    from cryopipe.io.star import read_star

    star = _posed_star(tmp_path, np.zeros((300, L, L)), 25)
    particles, _ = read_star(star)
    from cryopipe.geometry import euler_to_matrix

    A = euler_to_matrix(torch.tensor(particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))
    imgs = project_atoms(coords[None], w, A, None, pixel_size=APIX, size=L, sigma=SIGMA).numpy()
    imgs = imgs + imgs.std() * g.standard_normal(imgs.shape)
    first = _backproject(_posed_star(tmp_path, imgs, 25, "a"), tmp_path / "a")
    other = imgs.copy()
    other[1::2] = imgs.std() * g.standard_normal(other[1::2].shape)  # rlnRandomSubset 2: every second row
    second = _backproject(_posed_star(tmp_path, other, 25, "b"), tmp_path / "b")
    assert torch.equal(first[0], second[0])
    assert corr(first[1], second[1]) < 0.5 and corr(first[2], second[2]) < 0.99


def test_a_star_we_write_has_the_phase_shift_cryodrgn_needs_and_bad_half_sets_are_refused(tmp_path):
    """cryoDRGN 4.3.1's parse_ctf_star reads a missing rlnPhaseShift as NaN (its maps become NaN); half sets
    other than 1 and 2 would silently drop images."""
    from cryopipe.analysis.reconstruct import half_sets
    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import read_star

    star = _posed_star(tmp_path, np.zeros((6, 8, 8)), 1)
    particles, _ = read_star(star)
    assert (particles["rlnPhaseShift"] == 0.0).all()
    particles.loc[4, "rlnRandomSubset"] = 3
    with pytest.raises(CryopipeError, match=r"rlnRandomSubset is 3 in particle row 5"):
        half_sets(particles, star)


def test_molecule_mask_covers_the_molecules_map_in_zyx_order():
    from cryopipe.analysis.fsc import molecule_mask

    g = np.random.default_rng(26)
    coords = g.normal(0, 1, (300, 3)) * [14.0, 5.0, 3.0] + [6.0, -4.0, 2.0]  # elongated along x, off-centre
    vol = atoms_to_map(torch.tensor(coords), torch.ones(300, dtype=torch.float64), pixel_size=APIX, size=L, sigma=1.5)
    m = molecule_mask(coords, L, APIX, margin=3.0, edge=3.0)
    assert float((vol * m).sum() / vol.sum()) > 0.99
    assert float((vol * m.transpose(0, 2)).sum() / vol.sum()) < 0.8  # x and z swapped: misses the molecule
    assert 0.02 < float(m.mean()) < 0.3
