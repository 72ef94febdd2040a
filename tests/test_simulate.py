"""Simulation: SNR definition, determinism, the truth travels with the stack."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.errors import CryopipeError
from cryopipe.geometry import matrix_to_euler, random_rotations
from cryopipe.imaging.simulate import Optics, Simulator, draw_defocus, noise_variance_for_snr


def tiny_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    euler = matrix_to_euler(random_rotations(n, torch.Generator().manual_seed(seed))).numpy()
    du, dv, ang = draw_defocus(n, (1.0, 2.5), 150.0, seed, "snr1_df1-2.5")
    return pd.DataFrame(
        {
            "particle": np.arange(n),
            "mode7": rng.uniform(-3, 3, n),
            "rlnAngleRot": euler[:, 0],
            "rlnAngleTilt": euler[:, 1],
            "rlnAnglePsi": euler[:, 2],
            "rlnOriginXAngst": rng.uniform(-3, 3, n),
            "rlnOriginYAngst": rng.uniform(-3, 3, n),
            "rlnDefocusU": du,
            "rlnDefocusV": dv,
            "rlnDefocusAngle": ang,
        }
    )


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(1)
    coords = rng.normal(0, 8.0, (300, 3))
    mode = rng.normal(0, 1, (1, 300, 3))
    mode *= np.sqrt(300) / np.linalg.norm(mode)
    return Simulator(coords, np.ones(300), mode, Optics(pixel_size=1.5, size=40, voltage=300.0), sigma=1.5, ctf=True)


@pytest.mark.parametrize("snr,before", [(0.5, 0.5), (0.05, 0.5), (0.05, 1.0), (0.5, 0.0)])
def test_measured_snr_matches_target(sim, snr, before):
    """SNR = mean over particles of var(signal in the particle disc) / var(all added noise)."""
    batch = tiny_batch(300)
    signal = sim.signal(batch, ["mode7"])
    mask = sim.particle_mask(batch)
    var_signal = np.array([s[m].double().var().item() for s, m in zip(signal, mask)])
    np.testing.assert_allclose(sim.signal_variance(signal, batch), var_signal, rtol=1e-4)
    noise_var = noise_variance_for_snr(var_signal, snr)
    noise = sim.noise(batch, noise_var, before, seed=7, name="x").double().numpy()
    measured = var_signal.mean() / noise.var()
    assert measured == pytest.approx(snr, rel=0.05)


def test_noise_is_deterministic_per_particle(sim):
    batch = tiny_batch(8)
    a = sim.noise(batch, 1.0, 0.5, seed=3, name="d")
    b = torch.cat(
        [sim.noise(batch.iloc[:3], 1.0, 0.5, seed=3, name="d"), sim.noise(batch.iloc[3:], 1.0, 0.5, seed=3, name="d")]
    )
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # batching does not change a particle's noise
    c = sim.noise(batch, 1.0, 0.5, seed=4, name="d")
    assert not torch.allclose(a, c)


def test_deformation_changes_images(sim):
    batch = tiny_batch(4)
    other = batch.copy()
    other["mode7"] += 3.0
    a, b = sim.clean(batch, ["mode7"]), sim.clean(other, ["mode7"])
    assert (a - b).abs().max() > 0.01 * a.abs().max()


def test_non_positive_snr_is_rejected():
    with pytest.raises(CryopipeError, match="SNR"):
        noise_variance_for_snr(np.ones(3), 0.0)


def test_defocus_drawn_in_range_with_astigmatism():
    du, dv, ang = draw_defocus(1000, (0.5, 2.0), 200.0, 1, "a")
    mean = (du + dv) / 2
    assert mean.min() >= 5000 and mean.max() <= 20000
    np.testing.assert_allclose(du - dv, 200.0)
    assert 0 <= ang.min() and ang.max() <= 180
    assert not np.allclose(draw_defocus(10, (0.5, 2.0), 0, 1, "a")[0], draw_defocus(10, (0.5, 2.0), 0, 1, "b")[0])


@pytest.mark.parametrize("snr", [0.1, 1.0])
def test_noise_estimate_from_a_fit_recovers_the_snr(sim, snr):
    """Signal = the fitted projection (here the true one, at another scale and offset, as after
    normalisation), noise = the residual: the stack's SNR within 10 % of the simulated one (half of the
    noise before the CTF); a fit at the wrong poses puts signal into the residual and reads lower."""
    from cryopipe.imaging.noise import estimate_snr

    batch = tiny_batch(64, seed=3)
    signal = sim.signal(batch, ["mode7"])
    noise_var = noise_variance_for_snr(sim.signal_variance(signal, batch), snr)
    images = 3.0 * (signal + sim.noise(batch, noise_var, 0.5, seed=5, name="e")) - 0.7
    stack, per_image = estimate_snr(images, signal, sim.particle_mask(batch))
    assert stack == pytest.approx(snr, rel=0.1)
    assert np.median(per_image) == pytest.approx(snr, rel=0.15) and per_image.shape == (64,)
    wrong = sim.signal(tiny_batch(64, seed=4), ["mode7"])  # other poses, shifts and defocus
    assert (
        estimate_snr(images, wrong, sim.particle_mask(batch))[0] < 0.8 * snr
    )  # (a blob of the right size still fits a little)
