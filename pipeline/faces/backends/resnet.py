"""ResNet bodies (stem + four stages, no classifier) with torchvision's parameter names.

torchvision cannot load its compiled ops on this machine, and facexlib imports it, so
the face backends that were trained on a torchvision ResNet (RetinaFace's ResNet-50,
BiSeNet's ResNet-18 context path) use this definition instead. Parameter names follow
torchvision (``conv1``, ``bn1``, ``layer<i>.<j>.conv1`` ..., ``downsample.0/1``): a
checkpoint saved from a torchvision ResNet loads into it key for key. Only the stem and
the stages are defined: the detectors and parsers read the stride-8, 16 and 32 features
and never the ImageNet classifier, whose ``fc.*`` keys their checkpoints do not have.
"""
from __future__ import annotations

from torch import Tensor, nn


def _conv_bn_down(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """The 1x1 projection shortcut torchvision adds where shape changes (``downsample.0/1``)."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _conv_bn_down(cin, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision does), 1x1 expand x4 (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _conv_bn_down(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class ResNetBody(nn.Module):
    """Stem and four stages; ``forward`` returns the stride 8, 16 and 32 features (layer2..4)."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        stages = []
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            stride = 1 if i == 0 else 2
            layers: list[nn.Module] = []
            for j in range(count):
                layers.append(block(cin, planes, stride if j == 0 else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        #: channels of the three returned features
        self.channels = tuple(p * block.expansion for p in (128, 256, 512))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5


def resnet18_body() -> ResNetBody:
    return ResNetBody(BasicBlock, (2, 2, 2, 2))


def resnet50_body() -> ResNetBody:
    return ResNetBody(Bottleneck, (3, 4, 6, 3))
