"""Rotations in RELION's convention, written once.

RELION's matrix A(rot, tilt, psi) = Rz(psi) · Ry(tilt) · Rz(rot) maps a point r of the volume
frame to the image frame: an atom at r projects to image position (A r)[:2] (x, y). It equals
``eulerangles.euler2matrix([rot, tilt, psi], 'zyz', intrinsic=True, right_handed_rotation=True)``
transposed. Quaternions q = (w, x, y, z) represent the same A; q and -q are the same rotation.
All functions are batched over leading dimensions and work on CPU or GPU tensors.
"""

from __future__ import annotations

import math

import torch


def euler_to_matrix(angles_deg: torch.Tensor) -> torch.Tensor:
    """RELION Euler angles (..., 3) [rot, tilt, psi] in degrees -> matrices A (..., 3, 3)."""
    a = torch.deg2rad(torch.as_tensor(angles_deg))
    rot, tilt, psi = a[..., 0], a[..., 1], a[..., 2]
    ca, sa = torch.cos(rot), torch.sin(rot)
    cb, sb = torch.cos(tilt), torch.sin(tilt)
    cg, sg = torch.cos(psi), torch.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        torch.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
        torch.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
        torch.stack([sc, ss, cb], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_euler(A: torch.Tensor) -> torch.Tensor:
    """Matrices A (..., 3, 3) -> RELION Euler angles (..., 3) in degrees (tilt in [0, 180])."""
    A = torch.as_tensor(A)
    abs_sb = torch.sqrt(A[..., 0, 2] ** 2 + A[..., 1, 2] ** 2)
    tilt = torch.atan2(abs_sb, A[..., 2, 2])
    regular = abs_sb > 16 * torch.finfo(A.dtype).eps
    # Regular case: sin(tilt) > 0.
    rot_r = torch.atan2(A[..., 2, 1], A[..., 2, 0])
    psi_r = torch.atan2(A[..., 1, 2], -A[..., 0, 2])
    # Gimbal lock (tilt = 0 or 180): only rot ± psi is defined; put it all in psi.
    sign = torch.sign(A[..., 2, 2])
    psi_g = torch.where(sign > 0, torch.atan2(-A[..., 1, 0], A[..., 0, 0]), torch.atan2(A[..., 1, 0], -A[..., 0, 0]))
    rot = torch.where(regular, rot_r, torch.zeros_like(rot_r))
    psi = torch.where(regular, psi_r, psi_g)
    return torch.rad2deg(torch.stack([rot, tilt, psi], -1))


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) as (w, x, y, z) -> rotation matrices (..., 3, 3); q is normalised first."""
    q = torch.as_tensor(q)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_quaternion(A: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) (w, x, y, z) with w >= 0."""
    A = torch.as_tensor(A)
    m = A
    # Shepperd's method: pick the largest diagonal combination for stability.
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack(
        [
            torch.stack(
                [1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
                ],
                -1,
            ),
        ],
        -2,
    )  # (..., 4 candidates, 4); candidate k has component k equal to 4 q_k^2
    diag = torch.stack(
        [
            1 + trace,
            1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
        ],
        -1,
    )
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def euler_to_quaternion(angles_deg: torch.Tensor) -> torch.Tensor:
    return matrix_to_quaternion(euler_to_matrix(angles_deg))


def quaternion_to_euler(q: torch.Tensor) -> torch.Tensor:
    return matrix_to_euler(quaternion_to_matrix(q))


def angular_distance(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Angle in degrees of the rotation A·Bᵀ (one number per pair): the geodesic distance on SO(3)."""
    R = torch.as_tensor(A) @ torch.as_tensor(B).transpose(-1, -2)
    # atan2 of (sin, cos) stays accurate near 0° and 180°, where arccos loses digits.
    cos = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1) / 2
    axis = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = axis.norm(dim=-1) / 2
    return torch.rad2deg(torch.atan2(sin, cos))


def random_rotations(n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """n rotation matrices uniform on SO(3) (Haar measure): normalised 4-D Gaussian quaternions."""
    q = torch.randn(n, 4, generator=generator, dtype=dtype)
    return quaternion_to_matrix(q)


def perturb_rotations(A: torch.Tensor, angle_deg, generator: torch.Generator) -> torch.Tensor:
    """Each rotation (n, 3, 3) turned by exactly `angle_deg` (one angle, or one per rotation (n,)) about its own
    uniformly random axis: ΔR·A, so angular_distance(result, A) = angle_deg (a consensus refinement's error, of
    known size)."""
    axis = torch.randn(A.shape[0], 3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm(dim=1, keepdim=True)
    half = (torch.deg2rad(torch.as_tensor(angle_deg, dtype=torch.float64)) / 2).expand(A.shape[0])[:, None]
    q = torch.cat([torch.cos(half), torch.sin(half) * axis], 1)
    return quaternion_to_matrix(q).to(A.dtype) @ A


def rotation_grid(spacing_deg: float, dtype=torch.float64) -> torch.Tensor:
    """Near-uniform SO(3) grid of matrices with about `spacing_deg` between neighbours.

    Projection directions from a Fibonacci sphere, in-plane angles on a regular grid. Used by
    the alignment's global search.
    """
    step = math.radians(spacing_deg)
    n_dirs = max(1, int(round(4 * math.pi / step**2)))
    i = torch.arange(n_dirs, dtype=dtype) + 0.5
    tilt = torch.rad2deg(torch.arccos(1 - 2 * i / n_dirs))
    rot = torch.rad2deg(torch.remainder(i * math.pi * (3 - math.sqrt(5)), 2 * math.pi))
    n_psi = max(1, int(round(360.0 / spacing_deg)))
    psi = torch.arange(n_psi, dtype=dtype) * (360.0 / n_psi)
    angles = torch.stack(
        [rot[:, None].expand(-1, n_psi), tilt[:, None].expand(-1, n_psi), psi[None, :].expand(n_dirs, -1)], -1
    ).reshape(-1, 3)
    return euler_to_matrix(angles)


def distinct_columns(near: torch.Tensor, k: int) -> torch.Tensor:
    """Columns (B, k) to keep of B rows of T candidates ranked best first, given `near` (B, T, T) bool
    (candidates i and j too close to both be kept, e.g. rotations within some angle): greedily the best
    candidates not near one already kept; when fewer than k are distinct, the next best fill in, ranked
    after them. Used for pose hypotheses, from a search (`align.run`) or from orientation bins (`nn.bins`)."""
    B, T = near.shape[:2]
    keep = torch.zeros(B, T, dtype=torch.bool, device=near.device)
    for j in range(T):
        taken = (near[:, j, :j] & keep[:, :j]).any(1) if j else torch.zeros(B, dtype=torch.bool, device=near.device)
        keep[:, j] = ~taken & (keep.sum(1) < k)
    order = torch.argsort((~keep).float() * 2 + torch.arange(T, device=near.device) / T, dim=1, stable=True)
    return order[:, :k]
