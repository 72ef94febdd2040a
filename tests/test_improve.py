"""Map improvement: EMReady's target formula, resampling, boxes and their exact re-assembly, the classical
sharpening, a network that learns to denoise, one that does not invent deleted density, and the CLI + evaluate."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.io.mrc import read_mrc, write_mrc
from helpers import TINY, corr, run_cli, stage_json


def test_target_map_is_emreadys_formula_sampled_at_voxel_centres():
    from cryopipe.improve.target import emready_k, target_map

    g = torch.Generator().manual_seed(0)
    coords = (torch.rand(6, 3, generator=g, dtype=torch.float64) - 0.5) * 12
    Z = torch.tensor([6.0, 7.0, 8.0, 16.0, 6.0, 1.0], dtype=torch.float64)
    R, voxel, L = 4.0, 0.9, 36
    vol = target_map(coords, Z, resolution=R, voxel_size=voxel, size=L)
    k = (math.pi / (1.2 + 0.6 * R)) ** 2
    assert emready_k(R) == pytest.approx(k)
    theta = (k / math.pi) ** 1.5
    for z, y, x in [(18, 18, 18), (20, 15, 17), (10, 25, 19), (18, 19, 30)]:
        r = torch.tensor([x - L // 2, y - L // 2, z - L // 2], dtype=torch.float64) * voxel
        expected = float((theta * Z * torch.exp(-k * ((coords - r) ** 2).sum(1))).sum())
        assert float(vol[z, y, x]) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    # θ normalises each Gaussian: the map integrates to Σ Z (per Å³ × voxel volume).
    assert float(vol.sum()) * voxel**3 == pytest.approx(float(Z.sum()), rel=1e-3)


def test_fourier_resampling_keeps_a_band_limited_map_and_its_centre():
    from cryopipe.improve.grid import fourier_resample, resampled_size
    from cryopipe.improve.target import target_map

    coords = torch.tensor([[0.0, 0.0, 0.0], [6.0, -4.0, 3.0]], dtype=torch.float64)
    fine = target_map(coords, torch.tensor([6.0, 8.0], dtype=torch.float64), resolution=6.0, voxel_size=0.65, size=64)
    n = resampled_size(64, 0.65, 1.3)
    assert n == 32
    coarse = fourier_resample(fine, n)
    direct = target_map(coords, torch.tensor([6.0, 8.0], dtype=torch.float64), resolution=6.0, voxel_size=1.3, size=32)
    assert corr(coarse, direct) > 0.999  # the same density at the box centre, sampled twice as coarsely
    assert float(coarse.max()) == pytest.approx(float(direct.max()), rel=0.02)  # values keep their scale
    back = fourier_resample(coarse, 64)
    assert corr(back, fine) > 0.999


def test_boxes_reassemble_exactly_for_an_identity_network():
    from cryopipe.improve.apply import improve_boxes
    from cryopipe.improve.grid import box_starts

    assert box_starts(40, 16, 8) == [0, 8, 16, 24]
    assert box_starts(42, 16, 12) == [0, 12, 24, 26]  # the last box flush with the end
    vol = torch.rand(42, 37, 40, generator=torch.Generator().manual_seed(1)) + 0.1
    out = improve_boxes(torch.nn.Identity(), vol, box=16, stride=12, batch_size=5)
    assert torch.equal(out, vol)
    # Boxes without density are not run: their voxels are 0, every other voxel is exact.
    sparse = torch.zeros(40, 40, 40)
    sparse[2:10, 3:9, 5:12] = vol[:8, :6, :7]
    out = improve_boxes(torch.nn.Identity(), sparse, box=16, stride=8, min_density=0.05)
    assert torch.equal(out, sparse)


def test_cube_rotations_are_the_24_proper_ones():
    from cryopipe.improve.boxes import cube_rotation

    box = torch.arange(27.0).reshape(3, 3, 3)
    turned = {tuple(cube_rotation(box, k).flatten().tolist()) for k in range(24)}
    assert len(turned) == 24  # all distinct
    mirrored = tuple(box.flip(-1).flatten().tolist())
    assert mirrored not in turned  # never a mirror image


def test_classical_sharpening_recovers_a_known_bfactor_and_weights_noise_down():
    from cryopipe.analysis.fsc import corrected_fsc, soft_sphere
    from cryopipe.improve.sharpen import classical_maps, guinier_bfactor, radial_filter

    L, apix = 64, 1.0
    g = torch.Generator().manual_seed(2)
    # A map with a flat spectrum (white noise inside a sphere), blurred by a known B-factor.
    flat = torch.randn(L, L, L, generator=g, dtype=torch.float64) * soft_sphere(L, 24, 3)
    s = np.arange(L // 2) / (L * apix)
    blurred = radial_filter(flat, np.exp(-80.0 * s**2 / 4))
    assert guinier_bfactor(blurred, apix, resolution=3.0) == pytest.approx(80.0, abs=8.0)
    # Half maps = that map + independent noise: the sharpened map undoes the blur within the resolution.
    noise = 0.02 * float(blurred.std())
    h1 = blurred + noise * torch.randn(L, L, L, generator=g, dtype=torch.float64)
    h2 = blurred + noise * torch.randn(L, L, L, generator=g, dtype=torch.float64)
    half = corrected_fsc(h1.float(), h2.float(), soft_sphere(L, 28, 3).float())
    out = classical_maps(h1.float(), h2.float(), half, apix)
    assert out["bfactor"] == pytest.approx(80.0, abs=10.0)
    band = radial_filter(flat, (s <= 1 / out["resolution"]).astype(float))
    assert corr(out["sharpened"], band) > corr(out["fsc_weighted"], band) > 0.5


def toy_maps(n: int, L: int, seed: int):
    """Random blob maps (targets) and their blurred, noisy versions (inputs), both normalised as EMReady's."""
    from cryopipe.improve.boxes import normalised_pair
    from cryopipe.improve.sharpen import radial_filter
    from cryopipe.improve.target import target_map

    rng = np.random.default_rng(seed)
    s = np.arange(L // 2) / L
    inputs, targets = [], []
    for _ in range(n):
        coords = torch.as_tensor(rng.uniform(-L / 3, L / 3, (25, 3)))
        t = target_map(coords, torch.ones(25, dtype=torch.float64), resolution=1.5, voxel_size=1.0, size=L)
        x = radial_filter(t, np.exp(-60.0 * s**2)) + 0.25 * float(t.std()) * torch.as_tensor(
            rng.standard_normal(t.shape)
        )
        x, t = normalised_pair(x.float(), t.float())
        inputs.append(x)
        targets.append(t)
    return inputs, targets


def test_the_network_learns_to_denoise_a_toy_set(tmp_path):
    from cryopipe.improve.boxes import CropSource, FixedCrops
    from cryopipe.improve.unet import MapImprover
    from cryopipe.nn.engine import fit
    from helpers import train_settings

    L = 24
    torch.set_flush_denormal(True)  # as improve-train does (denormal Gaussian tails make the backward ~8× slower)
    x, t = toy_maps(16, L, seed=3)
    torch.manual_seed(0)
    model = MapImprover(width=8, levels=2)
    source = CropSource(x[:12], t[:12], crop=L, batch_size=4, batches_per_epoch=8, seed=1)
    settings = train_settings(epochs=5, lr=3e-3, lr_step=100, patience=20, batch_size=4, augment_inplane=False)
    history = fit(model, source, FixedCrops(x[12:], t[12:], L, 1, 0), settings, tmp_path, meta={}, progress=False)
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    model.eval()
    with torch.no_grad():
        before = np.mean([corr(a, b) for a, b in zip(x[12:], t[12:])])
        after = np.mean([corr(model(a[None, None])[0, 0], b) for a, b in zip(x[12:], t[12:])])
    print(f"held-out correlation with the truth: {before:.3f} → {after:.3f}")
    assert after >= before + 0.1, (before, after)


def test_improvement_scores_credit_changes_towards_the_truth_only():
    from cryopipe.analysis.fsc import soft_sphere
    from cryopipe.commands.evaluate import improvement_scores

    L = 32
    g = torch.Generator().manual_seed(4)
    truth = torch.randn(L, L, L, generator=g, dtype=torch.float64)
    raw = truth + 2.0 * torch.randn(L, L, L, generator=g, dtype=torch.float64)
    w = soft_sphere(L, 12, 2)
    better = improvement_scores(raw, 0.5 * raw + 0.5 * truth, truth, w, L, 1.0)
    invented = improvement_scores(
        raw, raw + 2.0 * torch.randn(L, L, L, generator=g, dtype=torch.float64), truth, w, L, 1.0
    )
    assert better["change·truth residual r"] > 0.9
    assert abs(invented["change·truth residual r"]) < 0.5  # a change that is not the truth's: no credit
    assert better["real-space CC vs centroid"] > invented["real-space CC vs centroid"]


IMPROVE_TINY = {
    **TINY,
    "analysis": {
        "improve": {
            "method": "network",
            "voxel_size": 2.0,
            "box": 24,
            "stride": 8,
            "crop": 24,
            "width": 8,
            "levels": 2,
            "pairs": 10,
            "validation_pairs": 2,
            "images": 200,
            "snr": [0.5, 2.0],
            "amplitude_sd": 1.0,
            "spread": 0.3,
            "deletion": 0.5,
            "epochs": 6,
            "batches_per_epoch": 10,
            "lr": 3e-3,
        }
    },
}


def test_improve_train_and_improve_do_not_invent_a_deleted_domain(tiny_dataset, tmp_path):
    """Trained through the CLI on pairs of the whole molecule (half of them with a random ball of atoms deleted),
    the network is shown a reconstruction of AdK without its LID domain (residues 122–159): where the truth has no
    atom it must not put density, while on the whole molecule the same region is dense."""
    from cryopipe.commands.improve_train import pair_maker
    from cryopipe.improve.guard import absent_and_present_density
    from cryopipe.improve.pairs import PairMaker
    from cryopipe.io.structure import Atoms
    from cryopipe.structure.modes import Modes

    d, out = tiny_dataset, tmp_path
    star = d / "sim" / "particles.star"
    run_cli("improve-train", "--params", stage_json("improve_train", IMPROVE_TINY), "--atoms", d / "atoms.npz",
            "--modes", d / "modes.npz", "--stars", star, "--out-model", out / "model.pt", "--out-history",
            out / "history.csv", "--out-curve", out / "curve.png", "--out-pairs", out / "pairs.png")  # fmt: skip
    history = pd.read_csv(out / "history.csv")
    assert history["val_loss"].min() < history["val_loss"].iloc[0]

    atoms, modes = Atoms.load(d / "atoms.npz"), Modes.load(d / "modes.npz")
    params = json.loads(stage_json("improve_train", IMPROVE_TINY))
    maker = pair_maker({**params, "amplitude_sd": 0.0, "spread": 0.0, "deletion": 0.0, "snr": [2.0, 2.0]},
                       atoms, modes, [str(star)])  # fmt: skip
    lid = (atoms.resnums >= 122) & (atoms.resnums <= 159)
    whole = maker.make(0)
    cut = PairMaker(atoms.coords[~lid], atoms.weights[~lid], maker.modes[:, ~lid], maker.optics, maker.defocus,
                    maker.data_size, maker.s).make(0)  # fmt: skip
    voxel = maker.optics.pixel_size
    results = {}
    for name, pair in (("whole", whole), ("cut", cut)):
        paths = {k: out / f"{name}_{k}.mrc" for k in ("map", "half1", "half2")}
        for k, p in paths.items():
            write_mrc(p, pair[k].numpy(), voxel)
        run_cli("improve", "--params", stage_json("improve", IMPROVE_TINY), "--map", paths["map"], "--half1",
                paths["half1"], "--half2", paths["half2"], "--atoms", d / "atoms.npz", "--model", out / "model.pt",
                "--out-network", out / f"{name}_net.mrc", "--out-fsc-weighted", out / f"{name}_fw.mrc",
                "--out-sharpened", out / f"{name}_sh.mrc", "--out-info", out / f"{name}.json")  # fmt: skip
        net, apix = read_mrc(out / f"{name}_net.mrc")
        assert apix == pytest.approx(voxel) and net.shape == pair["map"].shape
        results[name] = absent_and_present_density(net, atoms.coords, ~lid, voxel)
    info = json.loads((out / "cut.json").read_text())
    assert info["network_cpu_s"] > 0 and np.isfinite(info["bfactor"])
    gone_whole, kept_whole = results["whole"]
    gone_cut, kept_cut = results["cut"]
    print(
        f"LID region / kept atoms, network output: whole {gone_whole / kept_whole:.2f}, cut {gone_cut / kept_cut:.2f}"
    )
    assert gone_whole > 0.4 * kept_whole  # the region is dense when the domain is there
    assert gone_cut < 0.15 * kept_cut  # and stays empty when it is not


def test_evaluate_scores_the_improved_maps_beside_the_raw_one(tiny_dataset, tmp_path):
    from cryopipe.commands.evaluate import centroid_map
    from cryopipe.io.structure import Atoms
    from cryopipe.structure.modes import Modes

    truth = pd.read_csv(tiny_dataset / "sim" / "truth.csv").set_index("particle")
    atoms, modes = Atoms.load(tiny_dataset / "atoms.npz"), Modes.load(tiny_dataset / "modes.npz")
    groups = pd.DataFrame({"particle": truth.index, "group": (truth.index >= 12).astype(int)})
    groups.to_csv(tmp_path / "groups.csv", index=False)
    g = np.random.default_rng(5)
    args: dict[str, list] = {"half1": [], "half2": [], "maps": [], "improved": [], "info": []}
    for k in range(2):
        members = groups.loc[groups["group"] == k, "particle"].to_numpy()
        ref, _ = centroid_map(truth, members, atoms, modes.select([7, 8, 9]), ["mode7", "mode8", "mode9"], 40, 2.0, 5.0)

        def noisy(ref=ref):
            return (ref.numpy() + 1.5 * float(ref.std()) * g.standard_normal(ref.shape)).astype(np.float32)

        for key in ("half1", "half2", "maps"):
            args[key].append(tmp_path / f"g{k}_{key}.mrc")
            write_mrc(args[key][-1], noisy(), 2.0)
        raw, _ = read_mrc(args["maps"][-1])
        invented = raw + noisy() - ref.numpy()  # raw + fresh noise: a change the truth does not have
        for kind, vol in (("sharpened", invented.astype(np.float32)), ("network", ref.numpy().astype(np.float32))):
            args["improved"].append(tmp_path / f"g{k}_{kind}.mrc")
            write_mrc(args["improved"][-1], vol, 2.0)
        args["info"].append(tmp_path / f"g{k}.json")
        args["info"][-1].write_text(json.dumps({"bfactor": 50.0, "classical_cpu_s": 0.5, "network_cpu_s": 3.0}))
    run_cli("evaluate", "--params", stage_json("evaluate"), "--groups-table", tmp_path / "groups.csv",
            "--half1", *args["half1"], "--half2", *args["half2"], "--maps", *args["maps"],
            "--atoms", tiny_dataset / "atoms.npz", "--modes", tiny_dataset / "modes.npz",
            "--truth", tiny_dataset / "sim" / "truth.csv", "--improved", *args["improved"],
            "--improved-kinds", "sharpened", "network", "--improved-info", *args["info"],
            "--out-fsc", tmp_path / "fsc.csv", "--out-resolutions", tmp_path / "res.csv",
            "--out-plot", tmp_path / "fsc.png")  # fmt: skip
    res = pd.read_csv(tmp_path / "res.csv")
    assert (
        res["network vs centroid conformation @0.5 (Å)"] < res["resolution vs centroid conformation @0.5 (Å)"]
    ).all()
    assert (res["network real-space CC vs centroid"] > 0.999).all()  # the truth itself
    assert (res["network change·truth residual r"] > 0.99).all()
    assert (res["sharpened change·truth residual r"].abs() < 0.2).all()  # fresh noise: no credit
    assert res["network CPU s"].tolist() == [3.0, 3.0] and res["sharpened CPU s"].tolist() == [0.5, 0.5]
    bad = run_cli("evaluate", "--params", stage_json("evaluate"), "--groups-table", tmp_path / "groups.csv",
                  "--half1", *args["half1"], "--half2", *args["half2"], "--maps", *args["maps"],
                  "--atoms", tiny_dataset / "atoms.npz", "--modes", tiny_dataset / "modes.npz",
                  "--improved", *args["improved"][:3], "--improved-kinds", "sharpened", "network",
                  "--out-fsc", tmp_path / "f2.csv", "--out-resolutions", tmp_path / "r2.csv",
                  "--out-plot", tmp_path / "f2.png", check=False)  # fmt: skip
    assert bad.returncode == 2 and "--improved lists 3 maps" in bad.stderr
    assert not (tmp_path / "r2.csv").exists()
