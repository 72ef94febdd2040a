"""Alignment driver: batches of images → global search → multi-candidate refinement → best fit."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from cryopipe.align.model import DeformableReference
from cryopipe.align.refine import ImageBatch, Stage, refine
from cryopipe.align.search import global_search, reference_projections, shift_grid
from cryopipe.align.similarity import band_weights, correlation
from cryopipe.geometry import angular_distance, distinct_columns, matrix_to_euler, rotation_grid


@dataclass
class AlignSettings:
    """The alignment's settings; built from the validated `align` config (`from_params`), whose schema
    holds the defaults and their descriptions."""

    grid_spacing: float  # degrees of the SO(3) search grid
    search_size: int  # px of the global search
    search_lowpass: float  # Å
    search_amplitudes: list[float]
    search_combinations: str  # "axes": 0 and each value along one mode at a time; "grid": all combinations
    max_shift: float  # Å searched around the box centre
    candidates: int  # refined per image before the best is kept
    coarse: list[Stage]
    fine: list[Stage]
    batch_size: int

    @classmethod
    def from_params(cls, params: dict, image_size: int) -> AlignSettings:
        """From the align stage's params (`cryopipe.commands.align.params_from_config`) for images of
        `image_size` px: the coarse stage on the search grid, its learning rates × `coarse_lr_scale` (the re-fit's,
        `cryopipe.commands.refine.params_from_config`; default 1), the fine one on the full image (or on `fine_size`
        px, the local fit's band-limited grid, `cryopipe.commands.align.local_params`)."""
        search = min(params["search_size"], image_size)
        coarse_scale = params.get("coarse_lr_scale", 1.0)
        return cls(
            grid_spacing=params["grid_spacing"],
            search_size=search,
            search_lowpass=params["search_lowpass"],
            search_amplitudes=params["search_amplitudes"],
            search_combinations=params["search_combinations"],
            max_shift=params["max_shift"],
            candidates=params["candidates"],
            batch_size=params["batch_size"],
            coarse=[Stage(search, params["coarse_lowpass"], params["coarse_steps"]).scaled_rates(coarse_scale)]
            if params["coarse_steps"]
            else [],
            fine=[
                Stage(params.get("fine_size") or image_size, params["fine_lowpass"], params["fine_steps"], beads=False)
            ]
            if params["fine_steps"]
            else [],
        )


def band_size(image_size: int, pixel_size: float, lowpass: float) -> int:
    """The smallest even grid (px) whose Nyquist frequency passes `lowpass` Å, plus 2 px of margin, at most the
    image: a stage band-limited to `lowpass` loses nothing on it (the images are Fourier-cropped to it)."""
    return min(image_size, 2 * math.ceil(image_size * pixel_size / lowpass) + 2)


def amplitude_starts(values: list[float], n_modes: int, combinations: str) -> torch.Tensor:
    vals = torch.tensor(values, dtype=torch.float32)
    if combinations == "grid":
        return torch.cartesian_prod(*[vals] * n_modes).reshape(-1, n_modes)
    starts = [torch.zeros(n_modes)]
    for k in range(n_modes):
        for v in vals[vals != 0]:
            s = torch.zeros(n_modes)
            s[k] = v
            starts.append(s)
    return torch.stack(starts)


def pick_distinct(
    rot_idx: torch.Tensor,
    amp_idx: torch.Tensor,
    rotations: torch.Tensor,
    k: int,
    min_angle: float,
) -> torch.Tensor:
    """Columns (B, k) of the search's candidates (ranked best first) kept: best first, skipping near-duplicates
    (same amplitude start, rotation within `min_angle`). Falls back to the next best when too few are distinct."""
    R = rotations[rot_idx]  # (B, T, 3, 3)
    close = angular_distance(R[:, :, None], R[:, None, :]) < min_angle
    return distinct_columns(close & (amp_idx[:, :, None] == amp_idx[:, None, :]), k)


def prior_starts(rotations: np.ndarray, origins: np.ndarray, amplitude_starts: np.ndarray) -> dict[str, np.ndarray]:
    """Re-fit starts (`Aligner.align(start=...)`) from known poses, e.g. a consensus refinement's: each image's
    rotation (n, 3, 3) and origin (n, 2) Å with each of the S conformations `amplitude_starts` (S, M) → rotations
    (n, S, 3, 3), origins (n, S, 2), amplitudes (n, S, M). A consensus pose says nothing about the conformation,
    so its fit starts from the same amplitude starts as the global search."""
    n, S = len(rotations), len(amplitude_starts)
    return {
        "rotations": np.repeat(np.asarray(rotations)[:, None], S, 1),
        "origins": np.repeat(np.asarray(origins)[:, None], S, 1),
        "amplitudes": np.broadcast_to(np.asarray(amplitude_starts)[None], (n, S, amplitude_starts.shape[1])),
    }


class Aligner:
    """Batched HEMNMA-style fit. With a second reference (`fine_ref.offset` set, `second_amplitudes` = the
    amplitudes c of the second structure), the search starts from both conformations: the amplitude
    starts around 0 (reference) and the same starts around c (second reference), and every candidate
    keeps the conformation it came from."""

    def __init__(
        self,
        fine_ref: DeformableReference,
        beads_ref: DeformableReference,
        settings: AlignSettings,
        optics: dict,
        image_size: int,
        device: str = "cpu",
        ctf: bool = True,
        phase_flipped: bool = True,
        second_amplitudes: np.ndarray | None = None,
    ):
        self.settings = settings
        self.device = torch.device(device)
        self.refs = {False: fine_ref.to(self.device), True: beads_ref.to(self.device)}
        self.optics = optics
        self.image_size = image_size
        self.ctf = ctf
        self.phase_flipped = phase_flipped
        n_modes = fine_ref.modes.shape[0]
        self.rotations = rotation_grid(settings.grid_spacing).to(self.device, torch.float32)
        starts = amplitude_starts(settings.search_amplitudes, n_modes, settings.search_combinations)
        second = torch.zeros(len(starts))
        if fine_ref.offset is not None:
            if second_amplitudes is None:
                raise ValueError("a second reference needs its amplitudes (second_amplitudes)")
            starts = torch.cat([starts, starts + torch.as_tensor(second_amplitudes, dtype=torch.float32)])
            second = torch.cat([second, torch.ones(len(second))])
        self.amp_starts, self.start_second = starts.to(self.device), second.to(self.device)
        self.search_px = optics["pixel_size"] * image_size / settings.search_size
        self._proj_ft: torch.Tensor | None = None
        self.shifts = shift_grid(settings.max_shift / self.search_px, device=self.device)

    @property
    def proj_ft(self) -> torch.Tensor:
        """The global search's projections (every amplitude start × grid rotation), made on first use: a fit
        from given poses alone (`align.start: star`, a local re-fit) never needs them."""
        if self._proj_ft is None:
            self._proj_ft = reference_projections(
                self.refs[True],
                self.rotations,
                self.amp_starts,
                size=self.settings.search_size,
                pixel_size=self.search_px,
                second=self.start_second if self.refs[False].offset is not None else None,
            )
        return self._proj_ft

    def score_starts(self, batch: ImageBatch, A: torch.Tensor, o: torch.Tensor, a: torch.Tensor, z: torch.Tensor):
        """cc (B, H) of H given starts per image (rotations (B, H, 3, 3), origins (B, H, 2), amplitudes (B, H, M),
        conformations z (B, H)) on the global search's grid and band, without refinement: one projection each."""
        B, H = A.shape[:2]
        image_ft, model_ctf, px = batch.at(self.settings.search_size)
        w = band_weights(self.settings.search_size, px, self.settings.search_lowpass, device=self.device)
        has_second = self.refs[True].offset is not None
        model = self.refs[True].render(
            a.reshape(B * H, -1),
            A.reshape(B * H, 3, 3),
            o.reshape(B * H, 2),
            size=self.settings.search_size,
            pixel_size=px,
            second=z.reshape(B * H) if has_second else None,
        )
        rep = lambda t: t.repeat_interleave(H, 0)
        return correlation(torch.fft.rfft2(model), rep(image_ft), rep(model_ctf), w).reshape(B, H)

    def _batch(self, images: torch.Tensor, defocus: np.ndarray) -> ImageBatch:
        d = torch.tensor(np.array(defocus, dtype=np.float64), device=self.device)
        return ImageBatch(
            images.to(self.device, torch.float32), d[:, 0], d[:, 1], d[:, 2], self.optics, self.ctf, self.phase_flipped
        )

    def _search(self, batch: ImageBatch, K: int, block: slice = slice(None)):
        """The K best distinct (rotation (B, K, 3, 3), origin Å (B, K, 2), amplitude start (B, K, M), its
        conformation z (B, K)) of the global search against the projections `self.proj_ft[block]` (whole
        blocks of R rotations)."""
        R = len(self.rotations)
        image_ft, model_ctf, px = batch.at(self.settings.search_size)
        w = band_weights(self.settings.search_size, px, self.settings.search_lowpass, device=self.device)
        _, pidx, didx = global_search(image_ft, model_ctf, w, self.proj_ft[block], self.shifts, top=max(4 * K, 16))
        pidx = pidx + (block.start or 0)  # index into the full amplitude-major projection set
        cols = pick_distinct(pidx % R, pidx // R, self.rotations, K, self.settings.grid_spacing)
        pidx, didx = torch.gather(pidx, 1, cols), torch.gather(didx, 1, cols)
        origins = -self.shifts[didx] * px  # content moved by +d px ⇔ origin −d·px Å
        return self.rotations[pidx % R], origins, self.amp_starts[pidx // R], self.start_second[pidx // R]

    def _fit_candidates(
        self,
        batch: ImageBatch,
        A0: torch.Tensor,
        o0: torch.Tensor,
        a0: torch.Tensor,
        z0: torch.Tensor,
        elastic: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Coarse refinement of K candidates per image (B, K, ...), the best by cc refined fine.

        `winner` is the index of the candidate that won, `second` its conformation (`DeformableReference`),
        `margin` its coarse cc minus that of the best candidate that ended > grid_spacing away in
        orientation (NaN when every candidate converged to the winner's pose, or K = 1): a small margin
        means another pose fits almost as well.
        """
        B, K = A0.shape[:2]
        hold = (
            (lambda stage: stage) if elastic else (lambda stage: replace(stage, lr_amplitude=0.0, lr_second=0.0))
        )  # rigid: conformation held
        coarse, fine = [hold(s) for s in self.settings.coarse], [hold(s) for s in self.settings.fine]
        z = z0.reshape(B * K)
        A, o, a, z_fit, cc = refine(
            self.refs,
            batch.repeat(K),
            A0.reshape(B * K, 3, 3),
            o0.reshape(B * K, 2),
            a0.reshape(B * K, -1),
            coarse,
            second=z,
        )
        z = z if z_fit is None else z_fit
        cc = cc.reshape(B, K)
        winner = cc.argmax(1)
        best = winner + torch.arange(B, device=self.device) * K
        far = angular_distance(A.reshape(B, K, 3, 3), A[best][:, None]) > self.settings.grid_spacing
        runner_up = torch.where(far, cc, torch.full_like(cc, -torch.inf)).amax(1)
        margin = torch.where(far.any(1), cc[torch.arange(B), winner] - runner_up, torch.full_like(runner_up, torch.nan))
        A, o, a, z = A[best], o[best], a[best], z[best]
        if fine:
            A, o, a, z_fit, cc = refine(self.refs, batch, A, o, a, fine, second=z)
            z = z if z_fit is None else z_fit
        else:
            cc = cc.reshape(-1)[best]
        return {
            "rotations": A,
            "origins": o,
            "amplitudes": a,
            "cc": cc,
            "winner": winner,
            "second": z,
            "margin": margin,
        }

    def align_batch(self, images: torch.Tensor, defocus: np.ndarray) -> dict[str, torch.Tensor]:
        """images (B, L, L) normalised (phase-flipped or not); defocus (B, 3) U, V, angle → estimates per image."""
        batch = self._batch(images, defocus)
        res = self._fit_candidates(batch, *self._search(batch, self.settings.candidates))
        del res["winner"]
        return res

    def refine_batch(
        self,
        images: torch.Tensor,
        defocus: np.ndarray,
        rotations: torch.Tensor,
        origins: torch.Tensor,
        amplitudes: torch.Tensor,
        *,
        search: bool,
        elastic: bool,
        keep: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Re-fit images whose conformation (and a pose) a network predicted, or whose pose a STAR gave.

        Candidates: the given pose (rotations (B, 3, 3)) or poses (several hypotheses per image, (B, H, 3, 3),
        each with the given origin (B, 2) and amplitudes (B, M), or its own: (B, H, 2), (B, H, M)), plus
        (search=True) the best distinct poses of a global search, against projections of the amplitude start
        nearest each image's predicted conformation (rigid) or of every start (elastic, which then equals the
        alignment with the prediction as one more candidate). All are refined with the amplitudes held at the
        prediction (elastic=False, a rigid fit against the predicted conformation) or refined too, and the best
        correlation wins; `from_start` says whether that was a given estimate, `start` which one (−1: a search
        candidate).
        `keep`: of more given starts than this, only the `keep` best by `score_starts` are refined.
        """
        batch = self._batch(images, defocus)
        B, R = len(images), len(self.rotations)
        A0 = rotations.to(self.device, torch.float32)
        A0 = A0[:, None] if A0.ndim == 3 else A0
        H = A0.shape[1]
        o0, a0 = (t.to(self.device, torch.float32) for t in (origins, amplitudes))
        o0 = o0[:, None].expand(B, H, -1) if o0.ndim == 2 else o0
        a0 = a0[:, None].expand(B, H, -1) if a0.ndim == 2 else a0
        # The search start nearest each given conformation decides which reference (second or not) it is.
        nearest = torch.cdist(a0.reshape(B * H, -1), self.amp_starts).argmin(1).reshape(B, H)
        z0, start = self.start_second[nearest], nearest[:, 0]
        given = torch.arange(H, device=self.device).expand(B, H)  # which given start each candidate is
        if keep is not None and H > keep:
            with torch.no_grad():
                best = self.score_starts(batch, A0, o0, a0, z0).topk(keep, dim=1).indices
            pick = lambda t: torch.gather(t, 1, best.view(B, keep, *[1] * (t.ndim - 2)).expand(-1, -1, *t.shape[2:]))
            A0, o0, a0, z0, given, H = pick(A0), pick(o0), pick(a0), pick(z0), best, keep
        if search and self.settings.candidates > 1:
            K = self.settings.candidates - 1
            if elastic:  # the amplitudes are free: search every start, as the alignment does
                A_s, o_s, a_s, z_s = self._search(batch, K)
            else:  # rigid: the projections of the start nearest each image's predicted conformation
                A_s = torch.empty(B, K, 3, 3, device=self.device)
                o_s = torch.empty(B, K, 2, device=self.device)
                for q in start.unique().tolist():
                    sel = start == q
                    A_s[sel], o_s[sel], _, _ = self._search(
                        self._batch(images[sel.cpu()], np.asarray(defocus)[sel.cpu().numpy()]),
                        K,
                        slice(q * R, (q + 1) * R),
                    )
                a_s, z_s = a0[:, :1].expand(B, K, -1), z0[:, :1].expand(B, K)
            A0, o0, a0, z0 = (
                torch.cat([A0, A_s], 1),
                torch.cat([o0, o_s], 1),
                torch.cat([a0, a_s], 1),
                torch.cat([z0, z_s], 1),
            )
        res = self._fit_candidates(batch, A0, o0, a0, z0, elastic)
        winner = res.pop("winner")
        res["from_start"] = winner < H
        index = torch.gather(given, 1, winner.clamp_max(H - 1)[:, None])[:, 0]
        res["start"] = torch.where(winner < H, index, torch.full_like(winner, -1))
        return res

    def align(
        self,
        images: np.ndarray,
        defocus: np.ndarray,
        progress: bool = True,
        start: dict | None = None,
        search: bool = True,
        elastic: bool = True,
        keep: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Fit every image: a global search from scratch, or (start = {"rotations", "origins", "amplitudes"},
        arrays per image; rotations (n, 3, 3) or (n, H, 3, 3) hypotheses) a re-fit from given estimates, see
        `refine_batch`."""
        from tqdm import tqdm

        out: dict[str, list] = {}
        starts = range(0, len(images), self.settings.batch_size)
        for lo in tqdm(starts, desc="align" if start is None else "refine", disable=not progress, mininterval=2):
            sl = slice(lo, lo + self.settings.batch_size)
            imgs = torch.as_tensor(np.asarray(images[sl]))
            if start is None:
                res = self.align_batch(imgs, defocus[sl])
            else:
                res = self.refine_batch(
                    imgs,
                    defocus[sl],
                    *(
                        torch.tensor(np.asarray(start[k][sl], dtype=np.float64))
                        for k in ("rotations", "origins", "amplitudes")
                    ),
                    search=search,
                    elastic=elastic,
                    keep=keep,
                )
            for k, v in res.items():
                out.setdefault(k, []).append(v.detach().cpu())
        cat = {k: torch.cat(v) for k, v in out.items()}
        result = {
            "euler": matrix_to_euler(cat["rotations"].double()).numpy(),
            "rotations": cat["rotations"].double().numpy(),
            "origins": cat["origins"].double().numpy(),
            "amplitudes": cat["amplitudes"].double().numpy(),
            "cc": cat["cc"].double().numpy(),
            "second": cat["second"].double().numpy(),
            "margin": cat["margin"].double().numpy(),
        }
        if "from_start" in cat:  # re-fits: did a given estimate (not a search candidate) win, and which?
            result["from_start"] = cat["from_start"].numpy()
            result["start"] = cat["start"].numpy()
        return result
