"""CTF against RELION's own formula (ctf.h) and against torch-ctf."""

import math

import numpy as np
import torch

from cryopipe.imaging.ctf import ctf_2d, electron_wavelength


def relion_ctf(x, y, du, dv, azimuth_deg, kv, cs_mm, q, phase_shift=0.0, bfac=0.0):
    """Transcription of RELION's CTF::initialise / getCTF (negative defocus convention)."""
    V = kv * 1e3
    lam = 12.2643247 / math.sqrt(V * (1.0 + V * 0.978466e-6))
    Cs = cs_mm * 1e7
    K1 = math.pi * lam
    K2 = math.pi / 2 * Cs * lam**3
    K3 = math.atan(q / math.sqrt(1 - q * q))
    K4 = -bfac / 4.0
    K5 = math.radians(phase_shift)
    defocus_average = -(du + dv) * 0.5
    defocus_deviation = -(du - dv) * 0.5
    u2 = x * x + y * y
    u4 = u2 * u2
    ellipsoid_ang = np.arctan2(y, x) - math.radians(azimuth_deg)
    deltaf = defocus_average + defocus_deviation * np.cos(2 * ellipsoid_ang)
    argument = K1 * deltaf * u2 + K2 * u4 - K5 - K3
    return -np.sin(argument) * np.exp(K4 * u2)


def test_ctf_matches_relion_formula():
    L, apix = 64, 1.3
    for du, dv, ang, ps, b in [
        (15000.0, 15000.0, 0.0, 0.0, 0.0),
        (12000.0, 11000.0, 37.0, 0.0, 50.0),
        (25000.0, 24200.0, 140.0, 30.0, 0.0),
    ]:
        ctf = (
            ctf_2d(
                torch.tensor([du]),
                torch.tensor([dv]),
                torch.tensor([ang]),
                voltage=300.0,
                spherical_aberration=2.7,
                amplitude_contrast=0.07,
                pixel_size=apix,
                shape=(L, L),
                b_factor=b,
                phase_shift=ps,
            )[0]
            .double()
            .numpy()
        )
        fy = np.fft.fftfreq(L, d=apix)[:, None]
        fx = np.fft.rfftfreq(L, d=apix)[None, :]
        ref = relion_ctf(fx + 0 * fy, fy + 0 * fx, du, dv, ang, 300.0, 2.7, 0.07, ps, b)
        big = np.abs(ref) > 0.05  # relative error where the CTF is not at a zero crossing
        assert np.max(np.abs(ctf[big] - ref[big]) / np.abs(ref[big])) < 1e-3
        assert np.max(np.abs(ctf - ref)) < 1e-4


def test_ctf_sign_and_first_zero():
    apix, L, df = 1.0, 256, 20000.0
    ctf = ctf_2d(
        torch.tensor([df]),
        torch.tensor([df]),
        torch.tensor([0.0]),
        voltage=300.0,
        spherical_aberration=0.0,
        amplitude_contrast=0.1,
        pixel_size=apix,
        shape=(L, L),
    )[0]
    assert abs(ctf[0, 0].item() - 0.1) < 1e-6  # +Q at the origin
    assert ctf[0, 5].item() > 0.4  # positive at low frequency for underfocus (RELION, white protein)
    # First zero with Cs = 0: π λ Δf s² = atan(Q/sqrt(1-Q²)) + π... first zero where χ - K3 = -π.
    lam = electron_wavelength(300.0)
    s0 = math.sqrt((math.pi - math.atan(0.1 / math.sqrt(0.99))) / (math.pi * lam * df))
    row = ctf[0].numpy()
    s = np.fft.rfftfreq(L, d=apix)
    k = np.nonzero(np.diff(np.sign(row)) != 0)[0][0]
    assert s[k] <= s0 <= s[k + 1]


def test_ctf_matches_torch_ctf_isotropic():
    import torch_ctf

    L, apix, df = 64, 1.0, 1.5
    theirs = torch_ctf.calculate_ctf_2d(
        defocus=df,
        astigmatism=0.0,
        astigmatism_angle=0.0,
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        phase_shift=0.0,
        pixel_size=apix,
        image_shape=(L, L),
        rfft=True,
        fftshift=False,
    )
    ours = ctf_2d(
        torch.tensor([df * 1e4]),
        torch.tensor([df * 1e4]),
        torch.tensor([0.0]),
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        pixel_size=apix,
        shape=(L, L),
    )[0]
    # Independent implementation (its own wavelength constants): agreement to a few 1e-3.
    np.testing.assert_allclose(ours.numpy(), theirs.squeeze().numpy(), atol=3e-3)


def test_a_phase_shift_per_particle_equals_each_one_alone():
    kw = dict(voltage=300.0, spherical_aberration=2.7, amplitude_contrast=0.07, pixel_size=1.0, shape=(32, 32))
    shifts = np.array([0.0, 45.0, 90.0])
    both = ctf_2d(np.full(3, 1.5e4), np.full(3, 1.4e4), np.full(3, 20.0), phase_shift=shifts, **kw)
    for i, ps in enumerate(shifts):
        one = ctf_2d([1.5e4], [1.4e4], [20.0], phase_shift=float(ps), **kw)[0]
        torch.testing.assert_close(both[i], one)
    assert not torch.allclose(both[0], both[2])  # 90°: a sine becomes a cosine
