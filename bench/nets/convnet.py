"""The standard 4-block convolutional network of few-shot learning (Vinyals et al.; Finn et al.).

Each block: 3x3 convolution, BatchNorm, ReLU, then downsampling: the convolution itself has
stride 2 on Omniglot ("strided"), a 2x2 max-pool follows on Mini-ImageNet ("max-pool").
A linear classifier reads the flattened features.

One departure from Finn et al.'s layout: the convolutions have no bias, as in torchvision's ResNets. BatchNorm,
right after, subtracts the batch mean and so removes any bias: in their layout it was a dead parameter, whose
gradient is rounding noise that Adam divides by its own size into steps of the full learning rate, so that two
correct runs (one process and two, say) differed in it for no reason. The function the network computes is the same;
it has 4 x filters fewer parameters (Omniglot 5-way, 64 filters: 112,965 where Finn et al.'s has 113,221).

BatchNorm always uses the statistics of the batch it sees (``track_running_stats=False``), in
training and evaluation alike. This is the transductive setting of MAML and iMAML: the query set is
normalized with its own statistics, and, unlike running averages, it keeps every loss a pure
function of the parameters, which implicit differentiation and finite-difference checks rely on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metagrad.bench.nets.batch_norm import twice_differentiable_batch_norm
from metagrad.bench.nets.relu import twice_differentiable_relu

POOLINGS = ("stride", "max")
# ReLU is the standard; tanh gives a smooth network for tests that need an exact inner minimizer.
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class ConvNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, filters: int = 64, blocks: int = 4,
                 image_size: int = 28, pooling: str = "stride", activation: str = "relu", channels_last: bool = False):
        super().__init__()
        # the stacked network's activations in channels-last memory (NHWC), for cuDNN's tensor-core convolutions,
        # which otherwise transpose every input, weight and output to it and back (the H200 traces: 14% of an
        # iMAML-GD iteration), and which then also take the first layer's depthwise-multiplier convolution from
        # PyTorch's own kernel; the same function, in another memory order (tested)
        self.channels_last = channels_last
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for _ in range(blocks):
            stride = 2 if pooling == "stride" else 1
            # no bias: BatchNorm subtracts its batch mean right after, so no loss depends on it (Finn et al.'s layout
            # had one; its gradient was rounding noise, which Adam turned into steps of the full learning rate)
            layers += [nn.Conv2d(channels, filters, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(filters, track_running_stats=False), ACTIVATIONS[activation]()]
            if pooling == "max":
                layers.append(nn.MaxPool2d(2))
                size = size // 2
            else:
                size = (size + 1) // 2
            channels = filters
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(filters * size * size, num_classes)

    def forward(self, x: Tensor, second_order: bool = False) -> Tensor:
        """The logits; ``second_order`` takes BatchNorm as ``twice_differentiable_batch_norm`` and ReLU as
        ``twice_differentiable_relu`` (the same function, whose derivatives are differentiated again in fewer
        operations: for MAML's differentiation through the inner steps and for Hessian-vector products)."""
        if not second_order:
            return self.classifier(self.features(x).flatten(1))
        h = x
        for layer in self.features:
            if isinstance(layer, nn.BatchNorm2d):
                h = _batch_norm(h, layer.weight, layer.bias, layer.eps, True)
            else:
                h = _activation_or_pooling(layer, h, True)
        return self.classifier(h.flatten(1))

    def stacked_forward(self, parameters: list[Tensor], x: Tensor, second_order: bool = False) -> Tensor:
        """Every task's logits [tasks, images, classes] at once, each task with its own parameters.

        ``parameters`` are the module's, in order, each with a leading task axis; ``x`` is [tasks, images,
        channels, height, width]. The tasks sit side by side in the channels ([images, tasks x channels,
        ...]): a layer is one grouped convolution and one BatchNorm whose channels, and so batch statistics, are
        per task, where ``vmap`` would apply BatchNorm's scale and shift as separate operations. The batched
        engine's first-order inner loops run on it (``algorithms.batched.stacked_gradient_descent``), and MAML's and
        iMAML's Hessian-vector products (``second_order``, as in ``forward``). With ``channels_last`` the
        activations are laid out channels last."""
        tasks, images = x.shape[:2]
        h = x.transpose(0, 1).reshape(images, tasks * x.shape[2], *x.shape[3:])
        if self.channels_last:  # every layer keeps its input's memory order
            h = h.contiguous(memory_format=torch.channels_last)
        given = iter(parameters)
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                weight = next(given)
                h = F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), None, layer.stride, layer.padding, groups=tasks)
            elif isinstance(layer, nn.BatchNorm2d):
                weight, bias = next(given), next(given)
                h = _batch_norm(h, weight.reshape(-1), bias.reshape(-1), layer.eps, second_order)
            else:  # the activation or the max-pool: channel by channel, so task by task
                h = _activation_or_pooling(layer, h, second_order)
        weight, bias = next(given), next(given)
        return torch.baddbmm(bias.unsqueeze(1), h.reshape(images, tasks, -1).transpose(0, 1), weight.transpose(1, 2))


def _batch_norm(h: Tensor, weight: Tensor, bias: Tensor, eps: float, second_order: bool) -> Tensor:
    """BatchNorm with the batch's statistics, in the form asked for. Under torch.compile always the native one:
    dynamo cannot trace a custom jvp, and inductor fuses the operations of the native derivatives anyway."""
    if second_order and not torch.compiler.is_compiling():
        return twice_differentiable_batch_norm(h, weight, bias, eps)
    return F.batch_norm(h, None, None, weight, bias, training=True, eps=eps)


def _activation_or_pooling(layer: nn.Module, h: Tensor, second_order: bool) -> Tensor:
    """``layer(h)``; a ReLU as ``twice_differentiable_relu`` in the ``second_order`` form (not under torch.compile,
    as ``_batch_norm``)."""
    if second_order and isinstance(layer, nn.ReLU) and not torch.compiler.is_compiling():
        return twice_differentiable_relu(h)
    return layer(h)


def omniglot_convnet(num_classes: int, filters: int = 64, channels_last: bool = False) -> ConvNet:
    return ConvNet(num_classes, in_channels=1, filters=filters, image_size=28, pooling="stride",
                   channels_last=channels_last)


DEFAULT_FILTERS = {"omniglot": 64, "mini-imagenet": 32}


def network(dataset: str, ways: int, filters: int | None = None, channels_last: bool = False,
            channels: int = 3, image_size: int = 84) -> nn.Module:
    """The dataset's ConvNet; ``channels_last``: its stacked pass (the batched engine's) in channels-last memory.
    Omniglot's (strided convolutions, 64 filters), else Mini-ImageNet's (max-pooling, 32 filters) for images of
    ``channels`` and ``image_size`` (a folder's or a plug-in's; Mini-ImageNet's are 3 and 84)."""
    if dataset == "omniglot":
        return omniglot_convnet(ways, filters or DEFAULT_FILTERS[dataset], channels_last)
    return ConvNet(ways, in_channels=channels, filters=filters or DEFAULT_FILTERS["mini-imagenet"],
                   image_size=image_size, pooling="max", channels_last=channels_last)  # Mini-ImageNet's, or alike
