"""Supervised classification of homologues that differ only locally (the PNNL benchmark, issue 17):
rendering of the classes, the classifiers, Grad-CAM and the scores."""
