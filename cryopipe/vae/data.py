"""The VAE's particles: each preprocessed image with its pose (from the chosen source) and its CTF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryopipe.errors import CryopipeError
from cryopipe.geometry import euler_to_matrix
from cryopipe.io.star import EULER, ORIGIN, read_star, split_image_name

CTF_COLUMNS = ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift"]


def particle_ids(particles: pd.DataFrame) -> np.ndarray:
    """The 0-based index of each image in its stack: the particle id every stage joins on."""
    return np.array([split_image_name(n)[0] for n in particles["rlnImageName"]], dtype=np.int64)


def pose_table(paths: list[str]) -> pd.DataFrame:
    """particle, Euler angles, origins (Å) from STAR files (image names index the preprocessed stack) or a
    simulation's truth.csv (`particle` column); a particle in two files is an error."""
    parts = []
    for path in paths:
        if Path(path).suffix == ".csv":
            table = pd.read_csv(path)
            missing = [c for c in ["particle"] + EULER + ORIGIN if c not in table.columns]
            if missing:
                raise CryopipeError(f"{path}: no column {missing[0]} (poses need particle, Euler angles, origins)")
        else:
            table, _ = read_star(path)
            missing = [c for c in EULER + ORIGIN if c not in table.columns]
            if missing:
                raise CryopipeError(f"{path}: no column {missing[0]} (the VAE needs every image's pose)")
            table = table.assign(particle=particle_ids(table))
        parts.append(table[["particle"] + EULER + ORIGIN].assign(source=str(path)))
    poses = pd.concat(parts, ignore_index=True)
    dup = poses["particle"].duplicated(keep=False)
    if dup.any():
        first = poses[dup].iloc[0]
        raise CryopipeError(f"{first['source']}: particle {first['particle']} has a pose in more than one file")
    return poses.drop(columns="source")


def posed_particles(star: str, pose_paths: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the STAR's particles that have a pose, with the source's pose columns; its optics table). Without
    pose files the STAR's own poses are used."""
    particles, optics = read_star(star)
    particles = particles.assign(particle=particle_ids(particles))
    if pose_paths:
        poses = pose_table(pose_paths)
        particles = particles.drop(columns=[c for c in EULER + ORIGIN if c in particles.columns])
        particles = particles.merge(poses, on="particle", how="inner", validate="one_to_one")
        if particles.empty:
            raise CryopipeError(f"{pose_paths[0]}: no particle of {star} has a pose there")
    else:
        missing = [c for c in EULER + ORIGIN if c not in particles.columns]
        if missing:
            raise CryopipeError(f"{star}: no column {missing[0]}; set vae.poses to a pose source the data has")
    for c in EULER + ORIGIN + CTF_COLUMNS[:3]:
        if c not in particles.columns:
            raise CryopipeError(f"{star}: no column {c}")
        bad = np.flatnonzero(~np.isfinite(pd.to_numeric(particles[c], errors="coerce").to_numpy(dtype=np.float64)))
        if len(bad):
            raise CryopipeError(
                f"{star}: column {c} is not a finite number at particle {particles['particle'][bad[0]]}"
            )
    if "rlnPhaseShift" not in particles.columns and "rlnPhaseShift" in optics.columns:  # one per optics group
        particles["rlnPhaseShift"] = float(optics["rlnPhaseShift"].iloc[0])
    return particles.sort_values("particle", kind="stable").reset_index(drop=True), optics


def vae_targets(particles: pd.DataFrame) -> dict[str, np.ndarray]:
    """rotation (n, 3, 3) RELION matrices, origin (n, 2) Å, ctf (n, 4): defocus U, V (Å), angle, phase shift (°)."""
    ctf = np.stack(
        [
            particles[c].to_numpy(dtype=np.float64) if c in particles.columns else np.zeros(len(particles))
            for c in CTF_COLUMNS
        ],
        1,
    )
    return {
        "rotation": euler_to_matrix(torch.tensor(particles[EULER].to_numpy(dtype=np.float64))).numpy(),
        "origin": particles[ORIGIN].to_numpy(dtype=np.float64),
        "ctf": ctf,
    }


def vae_optics(optics: pd.DataFrame, box: int, star: str) -> tuple[dict, bool]:
    """(the CTF's optics at the VAE's box: voltage, Cs, amplitude contrast, pixel size; phase flipped?)."""
    if len(optics) > 1:
        raise CryopipeError(f"{star}: {len(optics)} optics groups; the VAE takes one")
    row = optics.iloc[0]
    size = int(row["rlnImageSize"])
    return (
        {
            "voltage": float(row["rlnVoltage"]),
            "spherical_aberration": float(row["rlnSphericalAberration"]),
            "amplitude_contrast": float(row["rlnAmplitudeContrast"]),
            "pixel_size": float(row["rlnImagePixelSize"]) * size / box,
        },
        bool(int(row.get("rlnCtfDataArePhaseFlipped", 0))),
    )
