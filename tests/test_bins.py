"""Orientation as a classifier over SO(3) bins: soft targets, the read-out of hypotheses, the constant baseline."""

import math

import pytest
import torch

from cryopipe.geometry import angular_distance, matrix_to_quaternion, quaternion_to_matrix, random_rotations
from cryopipe.nn.bins import OrientationBins, soft_targets
from cryopipe.nn.heads import KINDS, Regressor
from cryopipe.nn.targets import constant_loss, loss_terms


def angle(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    return angular_distance(quaternion_to_matrix(q1.double()), quaternion_to_matrix(q2.double()))


@pytest.fixture(scope="module")
def bins():
    return OrientationBins(15.0)


def test_soft_targets_are_sign_invariant_and_peak_at_the_nearest_bin(bins):
    g = torch.Generator().manual_seed(0)
    q = matrix_to_quaternion(random_rotations(16, g)).float()
    p = soft_targets(q, bins.quaternions, bins.sigma)
    assert torch.allclose(p, soft_targets(-q, bins.quaternions, bins.sigma))
    assert torch.allclose(p.sum(1), torch.ones(16))
    nearest = angle(q[:, None], bins.quaternions[None]).argmin(1)
    assert torch.equal(p.argmax(1), nearest)
    # the grid is 15°: the nearest bin is within the grid's covering radius, and gets most of the mass nearby
    assert float(angle(q, bins.quaternions[nearest]).max()) < 15.0


def test_read_out_is_finer_than_the_grid_and_finds_both_modes_of_an_ambiguous_image(bins):
    """Logits = log of the soft target: the orientation reads back within 1.5° (median; the bins are 15° apart),
    closer than the best hypothesis, the nearest bin. With two poses far apart (weights 0.6 / 0.4), the first two
    hypotheses are one at each, the orientation at one of them (not between), scores ranked, and all
    hypotheses ≥ 2 spacings apart."""
    g = torch.Generator().manual_seed(1)
    q1, q2 = (matrix_to_quaternion(random_rotations(32, g)).float() for _ in range(2))
    far = angle(q1, q2) > 60
    p1, p2 = (soft_targets(q, bins.quaternions, bins.sigma) for q in (q1, q2))
    orientation, hyp, scores = bins.read_out(torch.log(p1), 4)
    err, nearest = angle(orientation, q1), angle(hyp[:, 0], q1)
    assert float(err.median()) < 1.5 and float(err.max()) < 7.5  # the grid is least regular near its poles
    assert float(nearest.max()) < 15.0 and float(nearest.median()) > 3.0
    assert (err < nearest).float().mean() > 0.9

    orientation, hyp, scores = bins.read_out(torch.log(0.6 * p1 + 0.4 * p2), 4)
    assert far.sum() > 20
    to_q1, to_q2 = angle(hyp[:, :2], q1[:, None]), angle(hyp[:, :2], q2[:, None])  # (32, 2)
    # one of the first two hypotheses at each pose (which comes first depends on how each falls between bins)
    covered = torch.minimum(to_q1[:, 0] + to_q2[:, 1], to_q1[:, 1] + to_q2[:, 0])
    assert float(covered[far].max()) < 2 * 15.0
    assert float(torch.minimum(angle(orientation, q1), angle(orientation, q2))[far].max()) < 7.5
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    # more hypotheses than there are distinct poses near the two: the fillers rank after the distinct ones
    _, many, many_scores = bins.read_out(torch.log(0.6 * p1 + 0.4 * p2), 12, top=40)
    assert (many_scores[:, :-1] >= many_scores[:, 1:]).all()
    assert torch.equal(many[:, :2], hyp[:, :2])
    pairs = angle(hyp[:, :, None], hyp[:, None, :])
    off_diagonal = ~torch.eye(4, dtype=torch.bool).expand(32, 4, 4)
    assert float(pairs[off_diagonal].min()) > 2 * 15.0 - 0.1


def test_the_constant_baseline_is_the_best_constant_under_the_bins_loss(bins):
    """The constant logits are the log of the training targets' mean soft target: by Gibbs' inequality no
    other constant does better on the same targets, and the regressor's quaternion baseline is not used."""
    g = torch.Generator().manual_seed(2)
    n = 200
    q0 = matrix_to_quaternion(random_rotations(1, g)).float()
    q = torch.nn.functional.normalize(q0 + 0.2 * torch.randn(n, 4, generator=g), dim=1)
    targets = {"orientation": q, "shifts": torch.randn(n, 2, generator=g)}
    best = constant_loss(targets, targets, bins)
    prior = soft_targets(q, bins.quaternions, bins.sigma).mean(0).clamp_min(1e-12)
    shifts = targets["shifts"].median(0).values.expand(n, 2)

    def loss_of(logits):
        out = {"orientation_logits": logits.expand(n, -1), "shifts": shifts}
        return float(sum(loss_terms(out, targets, bins).values()))

    assert loss_of(torch.log(prior)) == pytest.approx(best, rel=1e-5)
    assert loss_of(torch.zeros(len(bins))) > best + 1.0  # uniform over 4,392 bins: far worse for poses this close
    for seed in range(3):
        noise = 0.3 * torch.randn(len(bins), generator=torch.Generator().manual_seed(seed))
        assert loss_of(torch.log(prior) + noise) > best
    assert best < math.log(len(bins))


def test_a_bins_regressor_keeps_the_outputs_infer_and_the_refit_read(bins):
    """Same keys as the quaternion regressor's (unit orientation, ranked hypotheses with scores), logits for
    the loss, gradients only through the logits; the bin spacing survives in the architecture config."""
    torch.manual_seed(0)
    model = Regressor(KINDS, 3, depth=18, dropout=0.0, image_size=32, hypotheses=3, width=8, orientation_bins=20.0)
    x = torch.randn(5, 1, 32, 32)
    out = model.eval()(x)
    assert out["orientation_logits"].shape == (5, len(OrientationBins(20.0)))
    assert out["hypotheses"].shape == (5, 3, 4) and out["scores"].shape == (5, 3)
    assert torch.allclose(out["orientation"].norm(dim=1), torch.ones(5))
    assert not out["orientation"].requires_grad and out["orientation_logits"].requires_grad
    assert model.config()["orientation_bins"] == 20.0
    out = model.train()(x)  # training: the logits only (the read-out costs time and teaches nothing)
    assert "orientation_logits" in out and "orientation" not in out
    g = torch.Generator().manual_seed(3)
    targets = {
        "orientation": matrix_to_quaternion(random_rotations(5, g)).float(),
        "amplitudes": torch.randn(5, 3, generator=g),
        "shifts": torch.randn(5, 2, generator=g),
    }
    terms = loss_terms(out, targets, model.orientation_bins)
    assert set(terms) == {"orientation", "amplitudes", "shifts"}
    sum(terms.values()).backward()
    assert model.head[-1].weight.grad is not None
    with pytest.raises(ValueError, match="orientation bins"):
        loss_terms(out, targets)


def test_a_bins_regressor_round_trips_through_a_checkpoint(tmp_path):
    from cryopipe.nn.infer import load_model

    torch.manual_seed(1)
    model = Regressor(KINDS, 2, depth=18, image_size=32, hypotheses=2, width=8, orientation_bins=30.0, bin_weight=0.5)
    meta = {"kinds": list(KINDS), "n_modes": 2, "depth": 18, "image_size": 32, "architecture": model.config(),
            "standardiser": {}}  # fmt: skip
    torch.save({"model": model.eval().state_dict(), "meta": meta}, tmp_path / "m.pt")
    loaded, _, _ = load_model(tmp_path / "m.pt")
    assert loaded.orientation_bins is not None and loaded.orientation_bins.weight == 0.5
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(loaded(x)["orientation_logits"], model(x)["orientation_logits"])
    torch.testing.assert_close(loaded(x)["hypotheses"], model(x)["hypotheses"])
