"""BatchNorm with batch statistics, its derivatives written out for Hessian-vector products.

``F.batch_norm`` runs forward and backward as one kernel each, but PyTorch differentiates its backward
kernel (as forward-over-reverse Hessian-vector products do) by a decomposition into about 75 operations per
layer. This autograd Function computes the same thing from a few plain operations whose derivatives are
short: its backward is BatchNorm's closed-form input gradient, and its ``jvp`` the closed-form tangent; that
backward is itself a Function (``BatchNormBackward``) with its tangent and backward in closed form, since the
product differentiates it. A forward-over-reverse product through a layer takes 39 operations where the native
kernels' take 78 (44 before the backward was a Function; bench/diagnostics/shorter_products.py; tested
against ``F.batch_norm`` in float64, values, gradients and both kinds of product).
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
        if grad_out is not None and grad_xhat is None and grad_invstd is None:
            # the first backward pass, the one a forward-over-reverse product differentiates: as a Function of its
            # own, whose tangent is written out too (``BatchNormBackward``)
            return (*BatchNormBackward.apply(grad_out, xhat, invstd, weight), None)
        axes = _reduced_axes(xhat)
        grad_x = grad_weight = grad_bias = g = None
        if grad_out is not None:
            grad_bias = grad_out.sum(axes)
            grad_weight = (grad_out * xhat).sum(axes)
            g = grad_out * _channels(weight, xhat)
        if grad_xhat is not None:  # g: the whole gradient reaching xhat
            g = grad_xhat if g is None else g + grad_xhat
        if g is not None:  # d xhat / d x applied to g
            grad_x = invstd * _projection(g, xhat)
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
            xhat_t = invstd * torch.addcmul(centred, xhat, projection, value=-1)
            invstd_t = -invstd * invstd * projection
            out_t = xhat_t * _channels(weight, xhat)
        if weight_t is not None:
            out_t = torch.addcmul(out_t, xhat, _channels(weight_t, xhat))
        if bias_t is not None:
            out_t = out_t + _channels(bias_t, xhat)
        return out_t, xhat_t, invstd_t


def _projection(g: Tensor, xhat: Tensor) -> Tensor:
    """P g = g - mean g - xhat mean(g xhat), channel by channel: d xhat / d x applied to g, the gradient reaching
    xhat, is invstd P g. P is symmetric, which is what ``BatchNormBackward.backward`` uses."""
    axes = _reduced_axes(xhat)
    return g - g.mean(axes, keepdim=True) - xhat * (g * xhat).mean(axes, keepdim=True)


class BatchNormBackward(torch.autograd.Function):
    """BatchNorm's backward pass, (grad_out, xhat, invstd, weight) -> (grad_x, grad_weight, grad_bias), with its
    tangent and its own backward written out: a forward-over-reverse product differentiates this pass, and
    autograd's forward-mode rules for its operations take 21 operations a layer for the tangent where the closed
    form takes 17, two of which depend on the point alone (staged, they run once per point;
    bench/diagnostics/shorter_products.py). With g = grad_out weight, m = mean(g xhat) and M values per channel:
    grad_x = invstd (g - mean g - xhat m), grad_weight = sum(grad_out xhat), grad_bias = sum(grad_out)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_out: Tensor, xhat: Tensor, invstd: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        axes = _reduced_axes(xhat)
        grad_x = invstd * _projection(grad_out * _channels(weight, xhat), xhat)
        return grad_x, (grad_out * xhat).sum(axes), grad_out.sum(axes)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        grad_x, grad_weight, grad_bias = output
        ctx.save_for_backward(*inputs, grad_x, grad_weight)
        ctx.save_for_forward(*inputs, grad_x, grad_weight, grad_bias)
        ctx.set_materialize_grads(False)

    @staticmethod
    def jvp(ctx, grad_out_t: Tensor | None, xhat_t: Tensor | None, invstd_t: Tensor | None,
            weight_t: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        grad_out, xhat, invstd, weight, grad_x, grad_weight, grad_bias = ctx.saved_tensors
        axes, count = _reduced_axes(xhat), xhat.numel() // xhat.shape[1]
        w = _channels(weight, xhat)
        # the tangents of grad_bias, grad_weight and g = grad_out w; an absent tangent is a zero one
        grad_bias_t = grad_out_t.sum(axes) if grad_out_t is not None else torch.zeros_like(grad_bias)
        grad_weight_t = _sum_of_products([(grad_out_t, xhat), (grad_out, xhat_t)], like=xhat).sum(axes)
        g_t = _sum_of_products([(grad_out_t, w), (grad_out, None if weight_t is None else _channels(weight_t, xhat))],
                               like=xhat)
        # mean(g xhat) and its tangent, channel by channel: mean(g xhat) = w mean(grad_out xhat) = w grad_weight / M
        m = w * _channels(grad_weight, xhat) / count
        m_t = w * _channels(grad_weight_t, xhat)
        if weight_t is not None:
            m_t = torch.addcmul(m_t, _channels(weight_t, xhat), _channels(grad_weight, xhat))
        inner = g_t - g_t.mean(axes, keepdim=True)
        if xhat_t is not None:
            inner = torch.addcmul(inner, xhat_t, m, value=-1)
        inner = torch.addcmul(inner, xhat, m_t, value=-1 / count)
        grad_x_t = invstd * inner
        if invstd_t is not None:  # grad_x is linear in invstd
            grad_x_t = torch.addcmul(grad_x_t, invstd_t / invstd, grad_x)
        return grad_x_t, grad_weight_t, grad_bias_t

    @staticmethod
    def backward(ctx, grad_x_c: Tensor | None, grad_weight_c: Tensor | None, grad_bias_c: Tensor | None):
        """The cotangents of (grad_out, xhat, invstd, weight) from those of the outputs: grad_x is invstd P(g),
        P the projection v -> v - mean v - xhat mean(v xhat), which is symmetric, so with u = invstd grad_x_c:
        grad_out gets w P(u) (+ grad_weight_c xhat + grad_bias_c), weight sum(grad_out P(u)), invstd
        sum(grad_x_c grad_x) / invstd, and xhat grad_weight_c grad_out - m u - mean(u xhat) g."""
        grad_out, xhat, invstd, weight, grad_x, grad_weight = ctx.saved_tensors
        axes, count = _reduced_axes(xhat), xhat.numel() // xhat.shape[1]
        w = _channels(weight, xhat)
        c_grad_out = c_xhat = c_invstd = c_weight = None
        if grad_x_c is not None:
            u = invstd * grad_x_c
            projected = _projection(u, xhat)
            c_grad_out = w * projected
            c_weight = (grad_out * projected).sum(axes)
            c_invstd = (grad_x_c * grad_x).sum(axes, keepdim=True) / invstd
            m = w * _channels(grad_weight, xhat) / count
            c_xhat = -(u * m + (u * xhat).mean(axes, keepdim=True) * (grad_out * w))
        if grad_weight_c is not None:
            weight_c = _channels(grad_weight_c, xhat)
            c_grad_out = weight_c * xhat if c_grad_out is None else torch.addcmul(c_grad_out, weight_c, xhat)
            c_xhat = weight_c * grad_out if c_xhat is None else torch.addcmul(c_xhat, weight_c, grad_out)
        if grad_bias_c is not None:
            term = _channels(grad_bias_c, xhat).expand_as(xhat)
            c_grad_out = term if c_grad_out is None else c_grad_out + term
        return c_grad_out, c_xhat, c_invstd, c_weight


def _sum_of_products(pairs: list[tuple[Tensor | None, Tensor | None]], like: Tensor) -> Tensor:
    """sum of a b over the pairs in which both are given (in one multiplication and fused multiply-adds); zero
    shaped like ``like`` where none is."""
    total = None
    for a, b in pairs:
        if a is None or b is None:
            continue
        total = a * b if total is None else torch.addcmul(total, a, b)
    return torch.zeros_like(like) if total is None else total


def twice_differentiable_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)`` with short derivatives of derivatives."""
    return TwiceDifferentiableBatchNorm.apply(x, weight, bias, eps)[0]
