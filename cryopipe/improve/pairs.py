"""Training pairs for the map-improvement network, made by the pipeline and never from the groups it improves.

A pair is (a reconstruction, its target). For pair i, every draw from (seed, i):
- a centre conformation from the modes' prior (each amplitude ~ N(0, amplitude_sd²), Å RMSD), and with probability
  `deletion` a ball of atoms (radius `deletion_radius` Å around a random atom) removed from the structure, images
  and target alike, so the network meets density that is truly absent and learns not to invent it;
- `images` particles around it (amplitudes centre + N(0, spread²): a group is a spread of conformations), uniform
  poses, origins in ±max_shift, the data's defoci, rendered with the alignment's Gaussians and the data's CTF at
  the network's grid, with noise at an SNR drawn log-uniformly in `snr` (the SNR as `simulate` defines it, at the
  data's own pixel size: a Fourier crop to the coarser grid keeps (L'/L)² of white noise's variance);
- each image backprojected at a pose turned by a half-normal angle of median `pose_error`° and an origin moved by
  N(0, shift_error²) Å per axis (the alignment's errors), into two half maps and the FSC-Wiener-filtered full
  map with the pipeline's own reconstruction (`analysis.reconstruct.finish_halves`): what `backproject` writes;
- the target: EMReady's map of the centre conformation at `target_resolution` (`improve.target`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cryopipe.analysis.backproject import Backprojector
from cryopipe.analysis.reconstruct import finish_halves
from cryopipe.geometry import euler_to_matrix, matrix_to_euler, perturb_rotations, random_rotations
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.project import sigma_for_resolution
from cryopipe.imaging.simulate import Optics, Simulator, noise_variance_for_snr
from cryopipe.improve.target import target_map
from cryopipe.io.star import DEFOCUS, EULER, ORIGIN

HALF_NORMAL_MEDIAN = 0.6745  # median of |N(0, 1)|


@dataclass
class PairSettings:
    images: int  # particles per reconstruction
    snr: tuple[float, float]  # drawn log-uniformly in this range
    amplitude_sd: float  # Å RMSD: the centre conformation's prior, per mode
    spread: float  # Å RMSD: the members around the centre, per mode
    pose_error: float  # degrees, median
    shift_error: float  # Å, per axis
    deletion: float  # probability that a pair has a ball of atoms removed
    deletion_radius: float  # Å
    max_shift: float  # Å: origins uniform in ± this
    noise_before_ctf: float
    resolution: float  # Å: the alignment's Gaussians (σ = 0.225 × this) that render the images
    target_resolution: float  # Å: EMReady's R of the target
    pad: int  # the backprojector's oversampling
    seed: int


class PairMaker:
    """Renders and reconstructs pairs on the network's grid (`size` px of `voxel_size` Å, the data's field of view)."""

    def __init__(
        self,
        coords: np.ndarray,
        weights: np.ndarray,
        modes: np.ndarray,
        optics: Optics,
        defocus: np.ndarray,
        data_size: int,
        settings: PairSettings,
        device: str = "cpu",
        density: str = "gaussian",
        elements=None,
        bfactors=None,
    ):
        """`density`: the images' density model, "gaussian" (the alignment's, as for training) or "scattering"
        (electron form factors × B-factors, `elements` and `bfactors` per atom: data made another way, for
        benchmarks); the target is always EMReady's."""
        self.coords, self.weights, self.modes = np.asarray(coords), np.asarray(weights), np.asarray(modes)
        self.density = density
        self.elements = None if elements is None else np.asarray(elements)
        self.bfactors = None if bfactors is None else np.asarray(bfactors)
        self.optics, self.defocus, self.s = optics, np.asarray(defocus, dtype=np.float64), settings
        self.data_size = data_size
        self.device = device

    def draw(self, i: int) -> tuple[np.random.Generator, torch.Generator]:
        ss = np.random.SeedSequence([self.s.seed, 7, i])
        return np.random.default_rng(ss), torch.Generator().manual_seed(int(ss.generate_state(1)[0]))

    def make(self, i: int) -> dict:
        """{'map': the reconstruction, 'half1', 'half2': its half maps, 'target': EMReady's map of the centre (all
        (L, L, L), the target in Å⁻³), 'kept': the atoms kept (N,) bool, 'snr': the pair's SNR}."""
        s, o = self.s, self.optics
        rng, gen = self.draw(i)
        M, n = len(self.modes), s.images
        centre = rng.normal(0.0, s.amplitude_sd, M)
        kept = np.ones(len(self.coords), bool)
        if rng.uniform() < s.deletion:
            hub = self.coords[rng.integers(len(self.coords))]
            kept = np.linalg.norm(self.coords - hub, axis=1) > s.deletion_radius
        coords, modes, weights = self.coords[kept], self.modes[:, kept], self.weights[kept]
        snr = float(np.exp(rng.uniform(np.log(s.snr[0]), np.log(s.snr[1]))))
        cols = [f"a{k}" for k in range(M)]
        batch = pd.DataFrame(centre + rng.normal(0.0, s.spread, (n, M)), columns=cols)
        batch[EULER] = matrix_to_euler(random_rotations(n, gen)).numpy()
        batch[ORIGIN] = rng.uniform(-s.max_shift, s.max_shift, (n, 2))
        batch[DEFOCUS] = self.defocus[rng.integers(0, len(self.defocus), n)]
        batch["particle"] = np.arange(n)
        sim = Simulator(
            coords, weights, modes, o, sigma=sigma_for_resolution(s.resolution), device=self.device,
            density=self.density,
            elements=self.elements[kept] if self.elements is not None else None,
            bfactors=self.bfactors[kept] if self.bfactors is not None else None,
        )  # fmt: skip
        signal = sim.signal(batch, cols)
        # The SNR is defined at the data's pixel size; on this coarser grid white noise keeps (L'/L)² of it.
        noise_var = noise_variance_for_snr(sim.signal_variance(signal, batch), snr) * (o.size / self.data_size) ** 2
        images = signal + sim.noise(batch, noise_var, s.noise_before_ctf, s.seed, f"improve-pair{i}")
        A = euler_to_matrix(torch.as_tensor(batch[EULER].to_numpy()))
        angles = np.abs(rng.normal(0.0, s.pose_error / HALF_NORMAL_MEDIAN, n))
        A = perturb_rotations(A, torch.as_tensor(angles), gen)
        origins = torch.as_tensor(batch[ORIGIN].to_numpy() + rng.normal(0.0, s.shift_error, (n, 2))) / o.pixel_size
        bps = {h: Backprojector(o.size, s.pad, self.device) for h in (1, 2)}
        ctf = ctf_2d(
            batch["rlnDefocusU"].to_numpy(),
            batch["rlnDefocusV"].to_numpy(),
            batch["rlnDefocusAngle"].to_numpy(),
            voltage=o.voltage,
            spherical_aberration=o.spherical_aberration,
            amplitude_contrast=o.amplitude_contrast,
            pixel_size=o.pixel_size,
            shape=(o.size * s.pad, o.size * s.pad),
        )
        half = np.arange(n) % 2 + 1
        for h, bp in bps.items():
            sel = torch.as_tensor(half == h)
            bp.insert(images[sel].float(), A[sel], origins[sel], ctf[sel])
        recon = finish_halves(bps, o.size)
        centre_coords = coords + np.einsum("k,knd->nd", centre, modes)
        target = target_map(
            torch.as_tensor(centre_coords),
            torch.as_tensor(weights, dtype=torch.float64),
            resolution=s.target_resolution,
            voxel_size=o.pixel_size,
            size=o.size,
        ).float()
        return {
            "map": recon["full"].float(),
            "half1": recon["half1"].float(),
            "half2": recon["half2"].float(),
            "target": target,
            "kept": kept,
            "snr": snr,
        }
