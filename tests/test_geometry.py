"""RELION rotation convention, quaternions and angular distance."""

import numpy as np
import torch
from eulerangles import euler2matrix

from cryopipe.geometry import (
    angular_distance,
    distinct_columns,
    euler_to_matrix,
    euler_to_quaternion,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_euler,
    quaternion_to_matrix,
    random_rotations,
    rotation_grid,
)


def random_euler(n, seed=0):
    g = np.random.default_rng(seed)
    return torch.tensor(np.stack([g.uniform(-180, 180, n), g.uniform(0, 180, n), g.uniform(-180, 180, n)], 1))


def test_matrix_equals_eulerangles_transposed():
    ang = random_euler(500)
    ref = euler2matrix(ang.numpy(), axes="zyz", intrinsic=True, right_handed_rotation=True)
    np.testing.assert_allclose(euler_to_matrix(ang).numpy(), np.transpose(ref, (0, 2, 1)), atol=1e-12)


def test_relion_matrix_known_values():
    # A pure rot of 90°: A = Rz(rot) passive, so the volume's x axis maps to image -y.
    A = euler_to_matrix(torch.tensor([90.0, 0.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(A.numpy() @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    # tilt 90°: the volume's z axis (the projection direction) maps to image -x.
    A = euler_to_matrix(torch.tensor([0.0, 90.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(A.numpy() @ [0, 0, 1], [-1, 0, 0], atol=1e-12)


def test_euler_round_trip_and_gimbal_lock():
    ang = random_euler(500, 1)
    np.testing.assert_allclose(matrix_to_euler(euler_to_matrix(ang)).numpy(), ang.numpy(), atol=1e-9)
    locked = torch.tensor([[30.0, 0.0, 40.0], [30.0, 180.0, 40.0]], dtype=torch.float64)
    A = euler_to_matrix(locked)
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(A)).numpy(), A.numpy(), atol=1e-12)


def test_quaternion_round_trip_and_sign():
    ang = random_euler(300, 2)
    A = euler_to_matrix(ang)
    q = matrix_to_quaternion(A)
    np.testing.assert_allclose(q.norm(dim=-1).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(q).numpy(), A.numpy(), atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(-3.0 * q).numpy(), A.numpy(), atol=1e-12)  # sign and scale free
    np.testing.assert_allclose(
        angular_distance(euler_to_matrix(quaternion_to_euler(euler_to_quaternion(ang))), A).numpy(), 0.0, atol=1e-6
    )


def test_angular_distance_is_geodesic():
    A = random_rotations(50, torch.Generator().manual_seed(3))
    for deg in (0.5, 10.0, 90.0, 179.0):
        B = euler_to_matrix(torch.tensor([0.0, 0.0, deg], dtype=torch.float64)) @ A
        np.testing.assert_allclose(angular_distance(B, A).numpy(), deg, atol=1e-9)


def test_random_rotations_are_uniform():
    R = random_rotations(20000, torch.Generator().manual_seed(4))
    # Haar measure: E[R] = 0 and the projection directions cover the sphere evenly.
    assert R.mean(0).abs().max() < 0.02
    z = R[:, 2, 2]  # cos(tilt) is uniform in [-1, 1]
    hist = np.histogram(z.numpy(), bins=10, range=(-1, 1))[0]
    assert hist.min() > 0.9 * hist.mean()


def test_rotation_grid_spacing():
    grid = rotation_grid(15.0)
    probe = random_rotations(200, torch.Generator().manual_seed(5))
    d = angular_distance(probe[:, None], grid[None]).min(1).values
    assert d.max() < 15.0


def test_distinct_columns_skips_near_duplicates_and_falls_back_in_rank_order():
    # Ranked candidates 0..3: 1 is near 0, 3 is near 2. Distinct: 0 and 2; the near ones fill in after them.
    near = torch.eye(4, dtype=torch.bool)
    near[0, 1] = near[1, 0] = near[2, 3] = near[3, 2] = True
    near = near[None].expand(2, -1, -1)
    assert distinct_columns(near, 2).tolist() == [[0, 2], [0, 2]]
    assert distinct_columns(near, 3).tolist() == [[0, 2, 1], [0, 2, 1]]
    assert distinct_columns(torch.eye(4, dtype=torch.bool)[None], 3).tolist() == [[0, 1, 2]]
