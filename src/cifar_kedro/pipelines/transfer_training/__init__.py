"""transfer_training: MobileNetV2 from ImageNet, head first, then fine-tuned."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
