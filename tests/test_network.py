"""DeepHEMNMA network: quaternion targets and loss, capacity, resume, inference output, bad pixels."""

import json

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryopipe.errors import CryopipeError
from cryopipe.geometry import angular_distance, euler_to_matrix, quaternion_to_euler, quaternion_to_matrix
from cryopipe.io.star import read_star
from cryopipe.nn.data import ParticleDataset
from cryopipe.nn.engine import fit
from cryopipe.nn.heads import Regressor
from cryopipe.nn.resnet import ResNet
from cryopipe.nn.targets import (
    Standardiser,
    constant_loss,
    constant_prediction,
    loss_terms,
    quaternion_l1,
    targets_from_tables,
)
from helpers import run_cli, train_settings


def random_particles(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "rlnAngleRot": rng.uniform(-180, 180, n),
            "rlnAngleTilt": rng.uniform(0, 180, n),
            "rlnAnglePsi": rng.uniform(-180, 180, n),
            "rlnOriginXAngst": rng.normal(0, 2, n),
            "rlnOriginYAngst": rng.normal(0, 2, n),
            "mode7": rng.normal(0, 3, n),
        }
    )


def test_quaternion_targets_round_trip_to_relion_angles():
    p = random_particles(200)
    q = targets_from_tables(p, p, ["mode7"])["orientation"]
    back = quaternion_to_euler(torch.tensor(q))
    A = euler_to_matrix(torch.tensor(p[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))
    assert angular_distance(euler_to_matrix(back), A).max() < 1e-6


def test_quaternion_loss_is_sign_invariant():
    q = torch.nn.functional.normalize(torch.randn(50, 4, dtype=torch.float64), dim=1)
    r = torch.nn.functional.normalize(torch.randn(50, 4, dtype=torch.float64), dim=1)
    assert quaternion_l1(q, q).abs().max() < 1e-12 and quaternion_l1(-q, q).abs().max() < 1e-12
    torch.testing.assert_close(quaternion_l1(-q, r), quaternion_l1(q, r))
    torch.testing.assert_close(quaternion_l1(3.0 * q, r), quaternion_l1(q, r))  # outputs are normalised first
    assert (quaternion_l1(q, r) > 0.01).all()


def test_resnet_depths_and_standardiser():
    for depth, feats in ((18, 512), (34, 512), (50, 2048)):
        for size, side in ((32, 1), (64, 2), (40, 2)):
            net = ResNet(depth, image_size=size)
            assert net(torch.randn(2, 1, size, size)).shape == (2, feats * side * side) == (2, net.out_features)
    t = {"amplitudes": np.random.default_rng(0).normal(5, 3, (100, 2)), "orientation": np.eye(4)[[0] * 100]}
    std = Standardiser.fit(t)
    z = std.forward(t)
    np.testing.assert_allclose(z["amplitudes"].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(std.inverse(z)["amplitudes"], t["amplitudes"])
    np.testing.assert_array_equal(z["orientation"], t["orientation"])


def test_tiny_model_overfits_32_images():
    torch.manual_seed(0)
    imgs = torch.randn(32, 1, 32, 32)
    targets = {
        "amplitudes": torch.randn(32, 3),
        "orientation": torch.nn.functional.normalize(torch.randn(32, 4), dim=1),
        "shifts": torch.randn(32, 2),
    }
    model = Regressor(("amplitudes", "orientation", "shifts"), 3, depth=18, dropout=0.0, image_size=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        loss = sum(loss_terms(model(imgs), targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert min(losses[-10:]) < losses[0] / 10


class Tiny(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 24, 24, generator=g)
        self.y = torch.randn(n, 2, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {"amplitudes": self.y[i]}, i


def test_resume_gives_identical_weights(tmp_path):
    settings = train_settings(epochs=3, batch_size=8, lr=1e-3, seed=5, patience=10)
    meta = {"kinds": ["amplitudes"], "n_modes": 2}

    def new_model():
        torch.manual_seed(1)
        return Regressor(("amplitudes",), 2, depth=18, image_size=24)

    fit(new_model(), Tiny(24, 0), Tiny(8, 1), settings, tmp_path / "a", meta=meta, progress=False)
    fit(
        new_model(), Tiny(24, 0), Tiny(8, 1), settings, tmp_path / "b", meta=meta, progress=False, stop_after=2
    )  # "killed"
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["epoch"] == 2
    hist = fit(new_model(), Tiny(24, 0), Tiny(8, 1), settings, tmp_path / "b", meta=meta, progress=False, resume=True)
    assert list(hist["epoch"]) == [1, 2, 3]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "a" / "learning_curve.png").exists() and (tmp_path / "a" / "history.csv").exists()


def trained_checkpoint(path, n_modes=1):
    torch.manual_seed(0)
    model = Regressor(("amplitudes", "orientation", "shifts"), n_modes, depth=18, image_size=40)
    std = Standardiser({"amplitudes": ([0.0] * n_modes, [1.0] * n_modes), "shifts": ([0.0, 0.0], [1.0, 1.0])})
    meta = {
        "kinds": list(model.kinds),
        "n_modes": n_modes,
        "modes": [f"mode{7 + i}" for i in range(n_modes)],
        "depth": 18,
        "dropout": 0.5,
        "standardiser": std.state(),
        "image_size": 40,
    }
    torch.save({"model": model.state_dict(), "meta": meta}, path)


def test_infer_writes_valid_star(tiny_dataset, tmp_path):
    trained_checkpoint(tmp_path / "model.pt")
    star = tiny_dataset / "sim" / "particles.star"
    run_cli(
        "infer",
        "--params",
        json.dumps({"batch_size": 10, "device": "cpu"}),
        "--star",
        star,
        "--models",
        tmp_path / "model.pt",
        "--out-star",
        tmp_path / "pred.star",
        "--out-amplitudes",
        tmp_path / "amps.csv",
    )
    particles, _optics = read_star(tmp_path / "pred.star")
    original, _ = read_star(star)
    assert len(particles) == len(original) and list(particles["rlnImageName"]) == list(original["rlnImageName"])
    assert particles["rlnAngleTilt"].between(0, 180).all()
    amps = pd.read_csv(tmp_path / "amps.csv")
    assert list(amps.columns) == ["particle", "mode7"] and len(amps) == len(original)


def test_nan_in_stack_is_reported_with_particle_index(tiny_dataset, tmp_path):
    import mrcfile

    data = mrcfile.read(tiny_dataset / "sim" / "particles.mrcs").copy()
    data[3, 5, 5] = np.nan
    with mrcfile.new(tmp_path / "bad.mrcs") as m:
        m.set_data(data)
    blocks = starfile.read(tiny_dataset / "sim" / "particles.star", always_dict=True)
    blocks["particles"]["rlnImageName"] = [
        n.split("@")[0] + "@" + str(tmp_path / "bad.mrcs") for n in blocks["particles"]["rlnImageName"]
    ]
    starfile.write(blocks, tmp_path / "bad.star")
    particles, _ = read_star(tmp_path / "bad.star")
    with pytest.raises(CryopipeError, match="particle 3"):
        ParticleDataset(particles, tmp_path / "bad.star")[3]
    trained_checkpoint(tmp_path / "model.pt")
    proc = run_cli(
        "infer",
        "--params",
        json.dumps({"batch_size": 10, "device": "cpu"}),
        "--star",
        tmp_path / "bad.star",
        "--models",
        tmp_path / "model.pt",
        "--out-star",
        tmp_path / "p.star",
        "--out-amplitudes",
        tmp_path / "a.csv",
        check=False,
    )
    errors = [line for line in proc.stderr.splitlines() if "error" in line]  # (progress-bar lines may precede it)
    assert proc.returncode != 0 and len(errors) == 1 and "particle 3" in errors[0]
    assert not (tmp_path / "p.star").exists()


def test_inplane_augmentation_transforms_targets_exactly(phantom):
    """A rotated projection equals the projection at the rotated orientation and origin."""
    from cryopipe.geometry import matrix_to_quaternion, quaternion_to_matrix
    from cryopipe.imaging.project import project_atoms
    from cryopipe.nn.augment import rotate_images, rotate_targets
    from helpers import corr

    coords, weights = phantom
    A = euler_to_matrix(torch.tensor([[20.0, 70.0, 110.0], [200.0, 30.0, -50.0]], dtype=torch.float64))
    o = torch.tensor([[3.0, -2.0], [-1.0, 2.5]], dtype=torch.float64)
    img = project_atoms(coords[None], weights, A, o, pixel_size=1.0, size=48, sigma=2.0)
    theta = torch.tensor([0.7, -2.0], dtype=torch.float64)
    rotated = rotate_images(img[:, None], theta)[:, 0]
    t = rotate_targets({"orientation": matrix_to_quaternion(A), "shifts": o, "amplitudes": torch.ones(2, 1)}, theta)
    expected = project_atoms(
        coords[None], weights, quaternion_to_matrix(t["orientation"]), t["shifts"], pixel_size=1.0, size=48, sigma=2.0
    )
    for a, b in zip(rotated, expected):
        assert corr(a, b) > 0.999
    assert torch.equal(t["amplitudes"], torch.ones(2, 1))


def test_ddp_training_under_torchrun(tmp_path):
    """The DistributedDataParallel path: two CPU processes (gloo) started by torchrun, rank 0 writes."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("ddp_fit.py")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["epoch"] == 2
    hist = pd.read_csv(tmp_path / "history.csv")
    # Each rank sees half of the 32 images per epoch; the throughput counts both.
    assert len(hist) == 2 and (tmp_path / "best.pt").exists()


def test_constant_prediction_is_the_best_constant_under_the_loss():
    g = torch.Generator().manual_seed(0)
    n = 300
    q0 = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.2, 0.8]), dim=0)
    q = torch.nn.functional.normalize(q0 + 0.05 * torch.randn(n, 4, generator=g), dim=1)
    q = q * torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, 1.0)  # either sign: the same rotation
    amps = torch.empty(n, 3).exponential_(1.0, generator=g) * torch.tensor([1.0, 2.0, 3.0])  # skewed: median ≠ mean
    shifts = torch.randn(n, 2, generator=g) + torch.tensor([0.5, -0.2])
    targets = {"amplitudes": amps, "orientation": q, "shifts": shifts}
    c = constant_prediction(targets)
    angle = angular_distance(quaternion_to_matrix(c["orientation"][None]), quaternion_to_matrix(q0[None]))
    assert float(angle) < 6.0  # a naive average of q and −q would be anywhere
    best = constant_loss(targets, targets)

    def loss_of(const):
        return float(sum(loss_terms({k: v.expand_as(targets[k]) for k, v in const.items()}, targets).values()))

    assert loss_of(c) == pytest.approx(best)
    for k, d in (("amplitudes", torch.tensor([0.2, -0.3, 0.4])), ("shifts", torch.tensor([0.1, 0.1]))):
        assert loss_of({**c, k: c[k] + d}) > best and loss_of({**c, k: c[k] - d}) > best
    assert loss_of({**c, "amplitudes": amps.mean(0)}) > best
    other = torch.nn.functional.normalize(q0 + torch.tensor([0.2, 0.0, 0.0, 0.0]), dim=0)
    assert loss_of({**c, "orientation": other}) > best


class Blobs(torch.utils.data.Dataset):
    """A Gaussian blob at a random x position; the target is that position (learnable from the image)."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.pos = torch.rand(n, generator=g) * 12 - 6
        yy, xx = torch.meshgrid(torch.arange(24.0) - 12, torch.arange(24.0) - 12, indexing="ij")
        self.x = torch.exp(-((xx - self.pos[:, None, None]) ** 2 + yy**2) / 8)[:, None]
        self.x = self.x + 0.1 * torch.randn(self.x.shape, generator=g)
        self.targets = {"amplitudes": self.pos[:, None] / 3.5}

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {k: v[i] for k, v in self.targets.items()}, i


def test_learning_is_measured_against_the_constant_prediction(tmp_path):
    settings = train_settings(epochs=4, batch_size=16, lr=1e-3, seed=0, patience=10, augment_inplane=False)
    torch.manual_seed(0)
    model = Regressor(("amplitudes",), 1, depth=18, dropout=0.0, image_size=24)
    hist = fit(model, Blobs(256, 0), Blobs(64, 1), settings, tmp_path, meta={}, progress=False)
    constant = hist["constant_val_loss"].iloc[-1]
    assert constant == pytest.approx(constant_loss(Blobs(256, 0).targets, Blobs(64, 1).targets))
    assert 0.6 < constant < 1.0  # L1 of the median for positions uniform on ±6/3.5
    assert hist["val_loss"].min() < 0.5 * constant  # the position is in the image: the network beats the constant


def test_winner_takes_all_is_sign_invariant_and_trains_the_nearest_hypothesis():
    """Flipping the sign of any hypothesis or of the target changes nothing; only the hypothesis nearest
    the target is pulled (it converges onto it, the others do not move); the scores learn to name it."""
    from cryopipe.geometry import matrix_to_quaternion, random_rotations
    from cryopipe.nn.hypotheses import ranked, winner_takes_all

    g = torch.Generator().manual_seed(0)
    target = matrix_to_quaternion(random_rotations(6, g)).float()
    q = torch.nn.functional.normalize(torch.randn(6, 3, 4, generator=g), dim=-1)
    q[:, 1] = torch.nn.functional.normalize(target + 0.15 * torch.randn(6, 4, generator=g), dim=-1)  # the near one
    scores = torch.zeros(6, 3)
    loss, winner = winner_takes_all(q, scores, target)
    assert (winner == 1).all()
    flips = torch.tensor([1.0, -1.0, 1.0])[None, :, None]
    loss2, winner2 = winner_takes_all(q * flips, scores, -target)
    assert torch.allclose(loss, loss2) and (winner2 == winner).all()

    hyp = q.clone().requires_grad_(True)
    logits = torch.zeros(6, 3, requires_grad=True)
    optimizer = torch.optim.Adam([hyp, logits], lr=0.02)
    for _ in range(300):
        optimizer.zero_grad()
        winner_takes_all(hyp, logits, target)[0].backward()
        optimizer.step()
    best, best_scores = ranked(hyp.detach(), logits.detach())
    assert quaternion_l1(best[:, 0], target).max() < 0.05  # the top-ranked hypothesis is the target
    assert torch.equal(hyp.detach()[:, [0, 2]], q[:, [0, 2]])  # the losers were never pulled
    assert (best_scores[:, 0] > best_scores[:, 1]).all()
