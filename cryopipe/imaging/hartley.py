"""Centred discrete Hartley transforms: H = Re F − Im F of the FFT about the box centre (pixel L//2).

Real in, real out, and the projection-slice theorem holds as for the FFT: the 2-D transform of a projection is
the central section of the 3-D transform of the map (cryoDRGN decodes in this domain). The transform is its
own inverse up to 1/N.
"""

from __future__ import annotations

import torch


def hartley(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Centred DHT over the last `dims` axes (2: images (B, L, L); 3: a map (L, L, L)); frequency 0 at L//2."""
    axes = tuple(range(-dims, 0))
    F = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=axes), dim=axes), dim=axes)
    return F.real - F.imag


def inverse_hartley(H: torch.Tensor, dims: int) -> torch.Tensor:
    """Real-space array from its centred DHT (`hartley` applied again, divided by the number of samples)."""
    n = 1
    for s in H.shape[-dims:]:
        n *= s
    return hartley(H, dims) / n
