"""evf-lightning: train, evaluate and publish EVF-SAM text-prompted segmentation models."""

__version__ = "0.1.0"
