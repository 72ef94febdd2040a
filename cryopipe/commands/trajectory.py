"""Trajectory: the reference deformed along principal axes of the conformational space, as multi-model PDBs.

Frame i of axis k has amplitudes mean + t_i·σ_k·axis_k with t from −extent to +extent (σ_k the
standard deviation of the scores); coordinates stay in the frame of the reference map and the
group maps, so the PDB can be overlaid on them and played as a movie (ChimeraX: `coordset #1`).
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_pdbs"]


def params_from_config(cfg: dict) -> dict:
    return dict(cfg["analysis"]["trajectory"])


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--pca", required=True, help="analysis/<dataset>/pca.json from `reduce`")
    p.add_argument("--reference-pdb", required=True, help="reference/reference.pdb (centred, the atoms of the modes)")
    p.add_argument("--modes", required=True, help="modes/modes.npz")
    p.add_argument("--out-pdbs", required=True, nargs="+", help="one PDB per analysis.trajectory.components entry")


def frames_along(pca, component: int, n_frames: int, extent: float):
    """(n_frames, M) amplitudes along principal axis `component` (1-based) and the scores t·σ."""
    import numpy as np

    k = component - 1
    sd = float(np.sqrt(pca.variance[k]))
    t = np.linspace(-extent, extent, n_frames) * sd
    return pca.mean + t[:, None] * pca.axes[k], t


def main(args: argparse.Namespace) -> None:
    import json

    import numpy as np
    import prody

    from cryopipe.analysis.space import PCA
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.structure import parse_structure
    from cryopipe.structure.modes import Modes, deform

    params = resolve_params(args, params_from_config)
    if len(args.out_pdbs) != len(params["components"]):
        raise CryopipeError(f"--out: {len(args.out_pdbs)} files for {len(params['components'])} components")
    d = json.loads(open(args.pca).read())
    pca = PCA.from_dict(d)
    vectors = Modes.load(args.modes).select([int(n[4:]) for n in d["modes"]])
    sel = parse_structure(args.reference_pdb, "all")
    if sel.numAtoms() != vectors.shape[1]:
        raise CryopipeError(f"{args.reference_pdb}: {sel.numAtoms()} atoms, the modes have {vectors.shape[1]}")
    coords = sel.getCoords().astype(np.float64)
    for comp, path in zip(params["components"], args.out_pdbs):
        if comp > len(pca.variance):
            raise CryopipeError(
                f"config key 'analysis.trajectory.components': PC{comp} does not exist ({len(pca.variance)} modes)"
            )
        amps, t = frames_along(pca, comp, params["frames"], params["extent"])
        traj = sel.copy()
        traj.setCoords(deform(coords, vectors, amps))  # (frames, N, 3): one coordinate set per frame
        traj.setTitle(f"cryopipe PC{comp} trajectory, scores {t[0]:.2f} .. {t[-1]:.2f} Å RMSD")
        with atomic_path(path) as tmp:
            prody.writePDB(str(tmp), traj)
        print(f"trajectory: PC{comp}, {params['frames']} frames, scores {t[0]:.2f} .. {t[-1]:.2f} Å RMSD → {path}")
