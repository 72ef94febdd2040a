"""File formats: RELION STAR, MRC/MRCS, PDB/mmCIF, and atomic writes."""
