"""Supervised classification of homologues that differ only locally (the PNNL benchmark, issue 17):
rendering of the classes, the classifiers, Grad-CAM and the scores."""

# the trained classifiers (`cryopipe.classify.models`); here so the CLI names them without importing torch.
# "<architecture>_pose": given the pose as a second input channel (the consensus map's image at the pose)
ARCHITECTURES = ("cnn2", "resnet18", "resnet50", "resnet18_pose")
