"""DeepHEMNMA network: ResNet feature extractor + MLP regressor of amplitudes, orientation, shifts.

resnet.py   ResNet 18/34/50 for 1-channel images (ours: torchvision does not work with the CPU torch)
heads.py    MLP 1000-512-128 heads and the regressor (separate or combined outputs)
targets.py  targets from the alignment (or the ground truth), standardisation, sign-invariant losses
data.py     memory-mapped particle stacks as a torch Dataset
engine.py   training: checkpoints, resume, early stopping, learning curve, AMP/channels_last, DDP
infer.py    batched prediction back to RELION angles/shifts and amplitudes
"""
