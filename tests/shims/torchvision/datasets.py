"""Names timm imports at start-up; the oracles never build a dataset."""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision datasets are not available in the test shim")


CIFAR10 = CIFAR100 = MNIST = KMNIST = FashionMNIST = ImageFolder = ImageNet = INaturalist = Places365 = QMNIST = _Unavailable
