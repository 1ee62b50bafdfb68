"""Nothing here: ultralytics only touches ``torchvision.models`` for its TorchVision wrapper block."""
