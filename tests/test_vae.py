"""The cryoDRGN-style VAE: Hartley transforms, the coordinate decoder, the VAE and its commands."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.geometry import random_rotations
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import shift_images
from cryopipe.imaging.hartley import hartley, inverse_hartley
from cryopipe.imaging.project import atoms_to_map, project_atoms
from cryopipe.vae.decoder import HartleyDecoder, decode_map, decode_slices
from cryopipe.vae.model import build_vae, kl_divergence
from helpers import TINY, corr, run_cli, run_preprocess, train_settings

OPTICS = {"voltage": 300.0, "spherical_aberration": 2.7, "amplitude_contrast": 0.1, "pixel_size": 2.0}


def test_hartley_is_real_its_own_inverse_and_obeys_the_projection_slice_theorem(phantom):
    coords, weights = phantom
    L, apix, sigma = 24, 2.0, 2.0
    vol = atoms_to_map(coords, weights, pixel_size=apix, size=L, sigma=sigma)
    H3 = hartley(vol, 3)
    assert H3.dtype == vol.dtype
    torch.testing.assert_close(inverse_hartley(H3, 3), vol, atol=1e-10, rtol=0)
    # the projection along z (identity pose) is the central section kz = 0 of the map's transform
    image = vol.sum(0)
    torch.testing.assert_close(hartley(image[None], 2)[0], H3[L // 2], atol=1e-8, rtol=1e-8)


def test_decoder_with_fixed_z_learns_a_map_from_its_projections_at_known_poses(phantom):
    """z fixed: V(k) fitted to the Hartley transforms of noiseless projections at known poses is the map."""
    coords, weights = phantom
    L, apix, sigma = 32, 2.0, 2.5
    torch.manual_seed(0)
    decoder = HartleyDecoder(1, L, hidden=128, layers=3, n_freqs=8)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    z, scale = torch.zeros(16, 1), None
    for _ in range(250):
        R = random_rotations(16, g)
        images = project_atoms(coords[None].expand(16, -1, -1), weights, R, None, pixel_size=apix, size=L,
                               sigma=sigma).float()  # fmt: skip
        target = hartley(images, 2)
        scale = scale or float(target.std())
        loss = ((decode_slices(decoder, R, z) - target / scale) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert decode_slices(decoder, R, z).shape == (16, L, L)
    learnt = decode_map(decoder, torch.zeros(1), scale)
    truth = atoms_to_map(coords, weights, pixel_size=apix, size=L, sigma=sigma)
    assert learnt.shape == (L, L, L) and corr(learnt, truth) > 0.9


def two_state_images(coords, weights, n: int, L: int = 32, apix: float = 2.0, noise: float = 0.5, seed: int = 1):
    """Noisy CTF images of a phantom whose heaviest atom sits 8 Å apart in two states, at random poses,
    origins and defoci: (images (n, 1, L, L), VAE targets, states)."""
    g = torch.Generator().manual_seed(seed)
    state = torch.randint(0, 2, (n,), generator=g)
    c = coords[None].repeat(n, 1, 1)
    c[:, 1, 0] += 8.0 * state
    R = random_rotations(n, g)
    origins = 3.0 * (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5)
    clean = project_atoms(c, weights, R, origins, pixel_size=apix, size=L, sigma=2.5)
    du = 10000 + 10000 * torch.rand(n, generator=g, dtype=torch.float64)
    dv, ang = du - 300, 180 * torch.rand(n, generator=g, dtype=torch.float64)
    ctf = ctf_2d(du, dv, ang, **{k: OPTICS[k] for k in OPTICS}, shape=(L, L))
    imgs = torch.fft.irfft2(torch.fft.rfft2(clean) * ctf, s=(L, L))
    imgs = imgs / imgs.std() + noise * torch.randn(imgs.shape, generator=g, dtype=torch.float64)
    targets = {
        "rotation": R.float(),
        "origin": origins.float(),
        "ctf": torch.stack([du, dv, ang, torch.zeros(n, dtype=torch.float64)], 1).float(),
    }
    return imgs.float()[:, None], targets, state.numpy()


class Items(torch.utils.data.Dataset):
    """(image, targets, index) items, as `ParticleDataset` gives them to the engine."""

    def __init__(self, images, targets):
        self.images, self.targets = images, targets

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], {k: v[i] for k, v in self.targets.items()}, i


def toy_vae(beta=1.0, encoder="mlp", L=32, scale=1.0, phase_flipped=False, zdim=1, hidden=64):
    torch.manual_seed(0)
    return build_vae(box=L, zdim=zdim, encoder=encoder, hidden=hidden, layers=2, beta=beta, optics=OPTICS,
                     phase_flipped=phase_flipped, scale=scale, n_freqs=8)  # fmt: skip


def test_vae_model_sees_the_ctf_and_the_origin_as_the_simulator_applies_them(phantom):
    """An image = the centred projection × CTF (the simulator's rfft product), content moved by −origin: its
    transform centred by the origin is the model's CTF × the projection's transform (centred frequency order,
    astigmatism); |CTF| when phase flipped; the shapes of every part, for both encoders."""
    coords, weights = phantom
    n, L, apix = 6, 32, 2.0
    g = torch.Generator().manual_seed(3)
    R = random_rotations(n, g)
    centred = project_atoms(coords[None].expand(n, -1, -1), weights, R, None, pixel_size=apix, size=L, sigma=2.5)
    params = torch.tensor([[12000.0, 11000.0, 30.0, 0.0], [20000.0, 19500.0, 120.0, 0.0]]).repeat(3, 1)
    ctf = ctf_2d(params[:, 0], params[:, 1], params[:, 2], **OPTICS, shape=(L, L))
    origins = torch.tensor([[2.0, -4.0], [0.0, 0.0], [-6.0, 2.0]]).repeat(2, 1)  # Å: whole pixels (periodic shift)
    imgs = shift_images(torch.fft.irfft2(torch.fft.rfft2(centred) * ctf, s=(L, L)), -origins.double() / apix)
    imgs = imgs.float()[:, None]
    targets = {"rotation": R.float(), "origin": origins, "ctf": params}
    for encoder in ("mlp", "cnn"):
        model = toy_vae(encoder=encoder, zdim=3)
        mu, logvar = model.encode(imgs, targets)
        assert mu.shape == logvar.shape == (n, 3)
        P = len(model.frequencies)
        assert model.slices(targets["rotation"], mu).shape == (n, P)
        terms = model(imgs, targets)
        assert set(terms) == {"reconstruction", "kl"} and all(t.ndim == 0 for t in terms.values())
    observed = model.transforms(imgs, origins)
    expected = hartley(centred.float(), 2).flatten(1)[:, model.freq_mask] * model.ctf(params)
    assert observed.shape == expected.shape == (n, P)
    torch.testing.assert_close(observed, expected, atol=1e-3 * float(expected.abs().max()), rtol=0)
    # the CTF's sign matters: the same images against |CTF| do not match
    assert (
        observed - hartley(centred.float(), 2).flatten(1)[:, model.freq_mask] * model.ctf(params).abs()
    ).abs().max() > 0.1 * float(expected.abs().max())
    torch.testing.assert_close(toy_vae(phase_flipped=True).ctf(params), model.ctf(params).abs())
    # the encoder sees each image centred and phase-flipped by its own CTF: the projection × |CTF|
    seen = model.encoder_inputs(model.centred(imgs, origins), model.ctf_grid(params))
    flipped = torch.fft.irfft2(torch.fft.rfft2(centred) * ctf.abs(), s=(L, L)).float()
    torch.testing.assert_close(seen, flipped, atol=1e-3 * float(flipped.abs().max()), rtol=0)


def test_kl_term_is_zero_without_beta_and_the_kl_is_analytic():
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    torch.testing.assert_close(kl_divergence(mu, logvar), torch.zeros(2))
    torch.testing.assert_close(kl_divergence(torch.ones(2, 3), logvar), torch.full((2,), 1.5))
    # KL(N(0, e) ‖ N(0, 1)) = ½(e − 1 − 1) per dimension
    torch.testing.assert_close(
        kl_divergence(torch.zeros(1, 3), torch.ones(1, 3)), torch.tensor([1.5 * (np.e - 2)]).float()
    )
    imgs = torch.randn(4, 1, 32, 32)
    targets = {"rotation": random_rotations(4, torch.Generator().manual_seed(0)).float(), "origin": torch.zeros(4, 2),
               "ctf": torch.tensor([[15000.0, 15000.0, 0.0, 0.0]]).repeat(4, 1)}  # fmt: skip
    with torch.no_grad():
        assert float(toy_vae(beta=0.0)(imgs, targets)["kl"]) == 0.0
        assert float(toy_vae(beta=1.0)(imgs, targets)["kl"]) > 0.0


def test_vae_trained_by_the_engine_lowers_its_loss_separates_two_states_and_is_seeded(phantom, tmp_path):
    """Through `fit` (checkpoints, history): the held-out loss falls, z (encoder means) splits the two states,
    and the same seed gives the same z, another seed another."""
    from cryopipe.commands.vae_train import encode_all
    from cryopipe.nn.engine import fit

    coords, weights = phantom
    imgs, targets, state = two_state_images(coords, weights, 384)
    scale = float(hartley(imgs[:, 0], 2).std())
    train, val = (
        Items(imgs[:320], {k: v[:320] for k, v in targets.items()}),
        Items(imgs[320:], {k: v[320:] for k, v in targets.items()}),
    )

    def run(seed, epochs, out):
        model = toy_vae(scale=scale, hidden=128)
        settings = train_settings(epochs=epochs, batch_size=32, lr=2e-3, lr_step=100, weight_decay=0.0, patience=50,
                                  seed=seed, augment_inplane=False)  # fmt: skip
        history = fit(model, train, val, settings, tmp_path / out, meta={"toy": 1}, progress=False)
        return model.eval(), history

    model, history = run(5, 12, "a")
    assert history["val_loss"].iloc[-1] < 0.8 * history["val_loss"].iloc[0]
    assert history["constant_val_loss"].isna().all()  # no constant baseline for a self-scored model
    z = encode_all(model, Items(imgs, targets), 64, "cpu")[:, 0]
    split = z > np.median(z)
    accuracy = max((split == state).mean(), (split != state).mean())
    assert accuracy > 0.85, accuracy  # 0.93 measured; chance is 0.5
    again = encode_all(run(5, 2, "b")[0], Items(imgs, targets), 64, "cpu")
    same = encode_all(run(5, 2, "c")[0], Items(imgs, targets), 64, "cpu")
    other = encode_all(run(6, 2, "d")[0], Items(imgs, targets), 64, "cpu")
    np.testing.assert_array_equal(again, same)
    assert np.abs(again - other).max() > 1e-4


VAE_CFG = {**TINY, "vae": {"size": 16, "zdim": 2, "hidden": 32, "layers": 2, "epochs": 2, "batch_size": 8}}


def test_vae_commands_write_z_poses_and_decoded_maps(tiny_dataset, tmp_path):
    """vae-train → latent.csv (a z per particle), the STAR with the poses used; reduce takes the latent table
    as it takes amplitudes; vae-volumes decodes maps at group centres and along PC1; bad input is refused."""
    import mrcfile

    from cryopipe.commands import vae_train
    from cryopipe.config import validate_config

    pre = tmp_path / "pre"
    run_preprocess(tiny_dataset / "sim" / "particles.star", pre)
    cfg = validate_config(VAE_CFG)
    params = json.dumps(vae_train.params_from_config(cfg))
    out = tmp_path / "vae"
    outs = ["--out-model", out / "model.pt", "--out-history", out / "history.csv", "--out-curve", out / "curve.png",
            "--out-latent", out / "latent.csv", "--out-star", out / "particles.star"]  # fmt: skip
    # poses from the truth: the truth's angles replace the STAR's
    res = run_cli("vae-train", "--params", params, "--star", pre / "particles.star", "--poses",
                  tiny_dataset / "sim" / "truth.csv", *outs)  # fmt: skip
    assert "16 px" in res.stdout and "|CTF|, phase-flipped" in res.stdout
    latent = pd.read_csv(out / "latent.csv")
    truth = pd.read_csv(tiny_dataset / "sim" / "truth.csv")
    assert list(latent.columns) == ["particle", "subset", "z1", "z2"] and len(latent) == len(truth)
    assert np.isfinite(latent[["z1", "z2"]].to_numpy()).all()
    assert set(latent["subset"]) == {"train", "validation"}
    from cryopipe.io.star import read_star

    used, _ = read_star(out / "particles.star")
    np.testing.assert_allclose(used["rlnAngleTilt"].to_numpy(), truth["rlnAngleTilt"].to_numpy(), atol=1e-5)
    assert len(pd.read_csv(out / "history.csv")) == 2
    # reduce over z, as over amplitudes
    space = tmp_path / "space.csv"
    run_cli("reduce", "--params", json.dumps({"pool_alignment": False, "umap": False, "umap_neighbors": 5,
            "umap_min_dist": 0.1, "seed": 1}), "--infer-star", out / "particles.star", "--infer-amplitudes",
            out / "latent.csv", "--infer-source", "vae", "--out-space", space, "--out-pca", tmp_path / "pca.json",
            "--out-plot", tmp_path / "space.png")  # fmt: skip
    table = pd.read_csv(space)
    assert (table["source"] == "vae").all() and {"z1", "z2", "pc1"} <= set(table.columns)
    groups = table[["particle"]].assign(group=(table["pc1"] > table["pc1"].median()).astype(int))
    groups.to_csv(tmp_path / "groups.csv", index=False)
    vols = [tmp_path / f"g{k}.mrc" for k in range(2)]
    frames = [tmp_path / f"f{k}.mrc" for k in range(3)]
    run_cli("vae-volumes", "--params", json.dumps({"pc1_frames": 3, "device": "cpu"}), "--model", out / "model.pt",
            "--latent", out / "latent.csv", "--groups-table", tmp_path / "groups.csv", "--pca", tmp_path / "pca.json",
            "--out-groups", *vols, "--out-pc1", *frames, "--out-plot", tmp_path / "vols.png")  # fmt: skip
    with mrcfile.open(vols[0]) as m:
        assert m.data.shape == (16, 16, 16) and m.voxel_size.x == pytest.approx(2.0 * 40 / 16)  # 40 px at 2 Å → 16 px
        assert np.isfinite(m.data).all() and m.data.std() > 0
    # a pose file without the angles: one line naming it, nothing written
    bad = tmp_path / "bad.csv"
    truth.drop(columns="rlnAngleTilt").to_csv(bad, index=False)
    out2 = tmp_path / "vae2"
    res = run_cli("vae-train", "--params", params, "--star", pre / "particles.star", "--poses", bad,
                  *[str(a).replace(str(out), str(out2)) for a in outs], check=False)  # fmt: skip
    assert res.returncode != 0 and "bad.csv" in res.stderr and "rlnAngleTilt" in res.stderr
    assert not (out2 / "latent.csv").exists()


def test_vae_pose_source_config_is_checked():
    from cryopipe.commands import vae_train
    from cryopipe.config import validate_config
    from cryopipe.errors import CryopipeError

    with pytest.raises(CryopipeError, match=r"vae\.poses"):
        vae_train.params_from_config(validate_config({"vae": {"poses": "refine"}, "refine": {"mode": "none"}}))
    with pytest.raises(CryopipeError, match=r"vae\.size"):
        vae_train.params_from_config(validate_config({"vae": {"size": 128}}))
