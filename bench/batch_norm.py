"""BatchNorm with batch statistics, its derivatives written out for Hessian-vector products.

``F.batch_norm`` runs forward and backward as one kernel each, but PyTorch differentiates its backward
kernel (as forward-over-reverse Hessian-vector products do) by a decomposition into about 75 operations per
layer. This autograd Function computes the same thing from a few plain operations whose derivatives are
short: its backward is BatchNorm's closed-form input gradient, and its ``jvp`` the closed-form tangent, so a
forward-over-reverse product through a layer takes about 40 operations instead of about 100 (counted by
``bench.operations``; tested against ``F.batch_norm`` in float64, values, gradients and both kinds of product).
The stacked network uses it for Hessian-vector products only (``ConvNet.stacked_forward``'s
``second_order``): for a plain gradient the native kernels are fewer operations.

Notation, per channel over the M values of the batch and spatial axes: mean, var (biased), invstd =
1/sqrt(var + eps), xhat = (x - mean) invstd, out = weight xhat + bias.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _channels(t: Tensor, like: Tensor) -> Tensor:
    """A [channels] tensor shaped to broadcast against ``like`` [batch, channels, ...]."""
    return t.view(1, -1, *([1] * (like.dim() - 2)))


def _reduced_axes(x: Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


class TwiceDifferentiableBatchNorm(torch.autograd.Function):
    """(x, weight, bias, eps) -> (out, xhat, invstd). xhat and invstd are outputs so that the backward and the
    tangent can use them (an autograd Function under ``torch.func`` saves only inputs and outputs); the
    backward takes their gradients into account, so every derivative of every output is exact."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        var, mean = torch.var_mean(x, dim=_reduced_axes(x), correction=0, keepdim=True)
        invstd = torch.rsqrt(var + eps)
        xhat = (x - mean) * invstd
        return torch.addcmul(_channels(bias, x), xhat, _channels(weight, x)), xhat, invstd

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, weight, _, _ = inputs
        _, xhat, invstd = output
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.save_for_forward(xhat, invstd, weight)
        ctx.set_materialize_grads(False)  # the gradients of xhat and invstd are usually None: skip their terms

    @staticmethod
    def backward(ctx, grad_out: Tensor | None, grad_xhat: Tensor | None, grad_invstd: Tensor | None):
        xhat, invstd, weight = ctx.saved_tensors
        axes = _reduced_axes(xhat)
        grad_x = grad_weight = grad_bias = g = None
        if grad_out is not None:
            grad_bias = grad_out.sum(axes)
            grad_weight = (grad_out * xhat).sum(axes)
            g = grad_out * _channels(weight, xhat)
        if grad_xhat is not None:  # g: the whole gradient reaching xhat
            g = grad_xhat if g is None else g + grad_xhat
        if g is not None:  # d xhat / d x applied to g
            grad_x = invstd * (g - g.mean(axes, keepdim=True) - xhat * (g * xhat).mean(axes, keepdim=True))
        if grad_invstd is not None:  # d invstd / d x = -invstd^2 xhat / M
            m = xhat.numel() // xhat.shape[1]
            term = xhat * (grad_invstd * invstd * invstd / -m)
            grad_x = term if grad_x is None else grad_x + term
        return grad_x, grad_weight, grad_bias, None

    @staticmethod
    def jvp(ctx, x_t: Tensor | None, weight_t: Tensor | None, bias_t: Tensor | None, _eps_t) -> tuple[Tensor, ...]:
        xhat, invstd, weight = ctx.saved_tensors
        axes = _reduced_axes(xhat)
        if x_t is None:
            xhat_t, invstd_t, out_t = torch.zeros_like(xhat), torch.zeros_like(invstd), torch.zeros_like(xhat)
        else:
            centred = x_t - x_t.mean(axes, keepdim=True)
            projection = (xhat * centred).mean(axes, keepdim=True)  # invstd d var / 2
            xhat_t = invstd * (centred - xhat * projection)
            invstd_t = -invstd * invstd * projection
            out_t = xhat_t * _channels(weight, xhat)
        if weight_t is not None:
            out_t = torch.addcmul(out_t, xhat, _channels(weight_t, xhat))
        if bias_t is not None:
            out_t = out_t + _channels(bias_t, xhat)
        return out_t, xhat_t, invstd_t


def twice_differentiable_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)`` with short derivatives of derivatives."""
    return TwiceDifferentiableBatchNorm.apply(x, weight, bias, eps)[0]
