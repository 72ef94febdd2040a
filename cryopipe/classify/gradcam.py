"""Grad-CAM (Selvaraju et al. 2017): where in the image a classifier's evidence for a class lies.

The activations A_k (B, C, h, w) of `model.cam_layer` are weighed by the class score's gradient with respect
to them (its spatial mean per channel in Grad-CAM; at each place in HiResCAM, the default), summed over
channels, clipped at 0 and upsampled (bilinear) to the image.
"""

from __future__ import annotations

import torch


def grad_cam(
    model: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None, *, elementwise: bool = True
) -> torch.Tensor:
    """Maps (B, H, W) ≥ 0 for images (B, 1, H, W) and the class of each (B,) (default: the predicted one),
    each scaled to a maximum of 1 (all zero where no activation supports the class).

    `elementwise` (default): gradient × activation at each place, summed over channels (HiResCAM, Draelos &
    Carin 2020). Our heads read the flattened feature map (each place its own weights), where Grad-CAM's
    channel-mean gradient mixes places of opposite sign; elementwise, the map is exactly each place's
    contribution to the class score. False: the original Grad-CAM weighting."""
    store: dict[str, torch.Tensor] = {}

    def keep(_module, _inp, out):
        out.retain_grad()
        store["a"] = out

    was_training = model.training
    model.eval()
    handle = model.cam_layer.register_forward_hook(keep)  # type: ignore[union-attr]
    try:
        with torch.enable_grad():
            x = images.detach().float().requires_grad_(True)  # gradients reach the hooked layer via the input
            logits = model(x)["class"]
            if classes is None:
                classes = logits.argmax(1)
            logits.gather(1, classes.view(-1, 1).to(logits.device)).sum().backward()
        a = store["a"]
        assert a.grad is not None
        weights = a.grad if elementwise else a.grad.mean(dim=(-2, -1), keepdim=True)
        cam = torch.relu((weights * a).sum(1, keepdim=True)).detach()
    finally:
        handle.remove()
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    cam = torch.nn.functional.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return cam / peak
