"""HEMNMA-style elastic + rigid 3D→2D alignment, batched and differentiable on torch.

model.py       the deformable reference (all atoms, or residue beads for the coarse stages)
similarity.py  CTF-aware Fourier correlation of model and phase-flipped image
search.py      global search over an SO(3) grid × shifts × amplitude starts (one matmul)
refine.py      coarse-to-fine gradient refinement of pose + shifts + amplitudes
outliers.py    Mahalanobis filter of the estimated amplitudes
"""
