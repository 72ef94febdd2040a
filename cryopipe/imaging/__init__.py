"""Image formation: CTF, projection of atoms, noise, simulation and preprocessing."""
