"""The cryoDRGN-style VAE beside DeepHEMNMA (issue 18): image encoder → z → a coordinate network that decodes
the central slice of each image's pose in the Hartley domain."""
