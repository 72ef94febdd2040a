"""Map improvement of the per-group reconstructions: classical sharpening (`sharpen`) and an EMReady-style 3-D
network trained on pairs the pipeline simulates (`target`: EMReady's target maps; `grid`: resampling, boxes and
their re-assembly; `unet`: the network and its loss; `pairs`: training pairs; `apply`: a map box by box)."""
