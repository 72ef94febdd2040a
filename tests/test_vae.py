"""The cryoDRGN-style VAE (issue 18, started): Hartley transforms and the coordinate decoder."""

import torch

from cryopipe.geometry import random_rotations
from cryopipe.imaging.hartley import hartley, inverse_hartley
from cryopipe.imaging.project import atoms_to_map, project_atoms
from cryopipe.vae.decoder import HartleyDecoder, decode_map, decode_slices
from helpers import corr


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
