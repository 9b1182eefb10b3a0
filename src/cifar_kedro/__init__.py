"""cifar-kedro: MobileNetV2 transfer learning against a custom CNN on CIFAR-10, as a Kedro project."""

__version__ = "0.1.0"
