"""What else could bring MAML's and iMAML's device operations down: a diagnostic for the next GPU session.

The batched engine runs MAML per task under ``vmap`` (835 operations for a meta-batch of 32, whatever its
size) and iMAML's conjugate gradients with forward-over-reverse Hessian-vector products per task under
``vmap``; the H200's traces put the captured iteration's time into many small kernels, cuDNN's layout
transposes around the grouped convolutions and the depthwise first layer among them
(reports/notes/engines.md). This counts the operations (``bench.operations``) of three rewrites, each checked equal to the
engine in float64 on the Omniglot 5-way 1-shot presets' network (64 filters, random images), for a
meta-batch of 2 and of 32:

- BatchNorm written out (``var_mean``, subtract, scale, shift) instead of ``F.batch_norm``, whose
  derivatives PyTorch builds from many small elementwise operations;
- the stacked network (the tasks side by side in the channels) with every convolution as im2col and a
  batched matrix product (``F.unfold`` and ``matmul``) instead of a grouped convolution: no cuDNN
  transposes, no depthwise kernel, and a double backward that does not loop over the groups, so
  second-order MAML can run on it;
- iMAML's Hessian-vector products on the stacked network instead of under ``vmap``, forward over
  reverse (``jvp`` of ``grad``) and reverse over reverse (``vjp`` of ``grad``, which refuses BatchNorm
  under ``vmap`` but runs without it).

Operation counts only, no timing: on two CPU cores time says nothing about a GPU's. Run from the
repository root:

    python reports/cpu-operations/alternatives.py > reports/cpu-operations/alternatives.txt
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from random_tasks import meta_batch  # beside this script
from torch import Tensor, nn

from algorithms import Batch, FunctionalModel, cross_entropy_loss, make_algorithm
from algorithms.batched import support_loss
from algorithms.hessian_vector_product import forward_over_reverse_hvp
from bench.datasets import network
from bench.operations import count_operations
from bench.presets import preset


class WrittenOutBatchNorm(nn.BatchNorm2d):
    """BatchNorm with batch statistics as its formula: the same values as ``F.batch_norm`` in training mode."""

    def forward(self, h: Tensor) -> Tensor:
        return written_out_batch_norm(h, self.weight, self.bias, self.eps)


def written_out_batch_norm(h: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    var, mean = torch.var_mean(h, dim=(0, 2, 3), keepdim=True, correction=0)
    return (h - mean) * (torch.rsqrt(var + eps) * weight[:, None, None]) + bias[:, None, None]


def with_written_out_batch_norm(module: nn.Module) -> nn.Module:
    module = copy.deepcopy(module)
    for name, child in module.features.named_children():
        if isinstance(child, nn.BatchNorm2d):
            replacement = WrittenOutBatchNorm(child.num_features, eps=child.eps, track_running_stats=False)
            replacement.load_state_dict(child.state_dict())
            module.features._modules[name] = replacement
    return module.double()


class MappedOnly(FunctionalModel):
    stacks = False


def stacked_logits(module: nn.Module, parameters: list[Tensor], x: Tensor, convolution: str,
                   batch_norm: str) -> Tensor:
    """``ConvNet.stacked_forward`` with a choice of convolution ("grouped", as the project's, or "im2col")
    and BatchNorm ("native", as the project's, or "written-out")."""
    tasks, images = x.shape[:2]
    h = x.transpose(0, 1).reshape(images, tasks * x.shape[2], *x.shape[3:])
    given = iter(parameters)
    for layer in module.features:
        if isinstance(layer, nn.Conv2d):
            weight, bias = next(given), next(given)
            if convolution == "grouped":
                h = F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1), layer.stride, layer.padding,
                             groups=tasks)
                continue
            channels, height, width = weight.shape[2], h.shape[-2], h.shape[-1]
            columns = F.unfold(h.reshape(images * tasks, channels, height, width), layer.kernel_size,
                               padding=layer.padding, stride=layer.stride)  # [images x tasks, channels x 9, places]
            out_height = (height + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
            out_width = (width + 2 * layer.padding[1] - layer.kernel_size[1]) // layer.stride[1] + 1
            out = torch.matmul(weight.reshape(1, tasks, weight.shape[1], -1),
                               columns.reshape(images, tasks, columns.shape[1], -1))  # [images, tasks, out, places]
            h = out.reshape(images, -1, out_height, out_width) + bias.reshape(-1, 1, 1)
        elif isinstance(layer, nn.BatchNorm2d):
            weight, bias = next(given), next(given)
            if batch_norm == "native":
                h = F.batch_norm(h, None, None, weight.reshape(-1), bias.reshape(-1), training=True, eps=layer.eps)
            else:
                h = written_out_batch_norm(h, weight.reshape(-1), bias.reshape(-1), layer.eps)
        else:
            h = layer(h)
    weight, bias = next(given), next(given)
    return torch.baddbmm(bias.unsqueeze(1), h.reshape(images, tasks, -1).transpose(0, 1), weight.transpose(1, 2))


def every_task(theta: Tensor, tasks: int) -> Tensor:
    """theta for each task, [tasks, parameters]."""
    return theta.expand(tasks, -1).contiguous()


def stacked_total(model: FunctionalModel, convolution: str, batch_norm: str):
    """phi [tasks, parameters], a set -> the sum of the tasks' losses on the stacked network."""

    def total(phi: Tensor, part: Batch) -> Tensor:
        tasks = phi.shape[0]
        parameters = [chunk.reshape(tasks, *shape)
                      for chunk, shape in zip(torch.split(phi, model.numels, dim=1), model.shapes)]
        logits = stacked_logits(model.module, parameters, part.x, convolution, batch_norm)
        return torch.func.vmap(model.loss_fn)(logits, part.y).sum()

    return total


torch.manual_seed(0)
model = FunctionalModel(network("omniglot", 5).double(), cross_entropy_loss)
mapped = MappedOnly(model.module, cross_entropy_loss)
mapped_written_out = MappedOnly(with_written_out_batch_norm(model.module), cross_entropy_loss)
theta = model.flat_parameters()


def relative(a: Tensor, b: Tensor) -> float:
    return ((a - b).norm(dim=-1) / b.norm(dim=-1)).max().item()


def report(label: str, tasks: int, run, reference: Tensor | None) -> Tensor:
    out = run()
    counter = count_operations(run)
    convolutions = counter.counts["convolution"] + counter.counts["convolution_backward"]
    difference = "reference" if reference is None else f"{relative(out, reference):.1e}"
    print(f"{label:<62} {tasks:>5} {counter.total:>10} {convolutions:>13}  {difference}")
    return out


def maml_rows(tasks: int) -> None:
    settings = preset("omniglot-5w1s-maml")
    maml = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    inner_lr = settings["hyperparameters"]["inner_lr"]
    batch = meta_batch(tasks)
    reference = report("engine: vmap", tasks, lambda: maml.batched_meta_gradient(mapped, theta, batch).gradients,
                       None)
    report("vmap, BatchNorm written out", tasks,
           lambda: maml.batched_meta_gradient(mapped_written_out, theta, batch).gradients, reference)
    for convolution, batch_norm in (("grouped", "native"), ("im2col", "native"), ("im2col", "written-out")):
        total = stacked_total(model, convolution, batch_norm)

        def stacked_maml(total=total) -> Tensor:
            def query_loss_of(th: Tensor) -> Tensor:
                return total(th - inner_lr * torch.func.grad(total)(th, batch.support), batch.query)

            return torch.func.grad(query_loss_of)(every_task(theta, batch.size))

        report(f"stacked, {convolution} convolutions, BatchNorm {batch_norm}", tasks, stacked_maml, reference)


def product_rows(tasks: int) -> None:
    batch = meta_batch(tasks)
    generator = torch.Generator().manual_seed(100 + tasks)
    phi = every_task(theta, tasks) + 0.01 * torch.randn(tasks, theta.numel(), generator=generator,
                                                           dtype=torch.float64)
    direction = torch.randn(tasks, theta.numel(), generator=generator, dtype=torch.float64)

    def mapped_product(p: Tensor, x: Tensor, y: Tensor, u: Tensor) -> Tensor:
        return forward_over_reverse_hvp(support_loss(model, x, y), p, u)

    reference = report("engine: vmap, forward over reverse", tasks,
                       lambda: torch.func.vmap(mapped_product)(phi, batch.support.x, batch.support.y, direction),
                       None)
    for convolution, batch_norm in (("grouped", "native"), ("grouped", "written-out"), ("im2col", "native")):
        total = stacked_total(model, convolution, batch_norm)
        gradient = torch.func.grad(lambda p, total=total: total(p, batch.support))
        report(f"stacked, forward over reverse, {convolution}, BatchNorm {batch_norm}", tasks,
               lambda gradient=gradient: torch.func.jvp(gradient, (phi,), (direction,))[1], reference)
        report(f"stacked, reverse over reverse, {convolution}, BatchNorm {batch_norm}", tasks,
               lambda gradient=gradient: torch.func.vjp(gradient, phi)[1](direction)[0], reference)


HEADER = f"{'way':<62} {'tasks':>5} {'operations':>10} {'convolutions':>13}  max relative difference"
print("MAML (preset: 1 step of 0.4), each task's meta-gradient")
print(HEADER)
for tasks in (2, 32):
    maml_rows(tasks)
print()
print("iMAML: one Hessian-vector product of every task's support loss (its conjugate gradients take 5)")
print(HEADER)
for tasks in (2, 32):
    product_rows(tasks)
