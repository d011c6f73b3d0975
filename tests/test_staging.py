"""``Staged``: a function traced once and run in two stages gives the function's results, whatever the point it is
bound at, in fewer operations per call; and the stacked Hessian-vector products of iMAML and MAML run on it."""
from __future__ import annotations

import pytest
import torch

from metagrad.algorithms import Batch, FunctionalModel, cross_entropy_loss, hessian_vector_product
from metagrad.algorithms.hessian_vector_product import forward_over_reverse_hvp
from metagrad.algorithms.staging import Staged
from metagrad.bench.measure.operations import count_operations
from metagrad.bench.nets.convnet import ConvNet

from .finite_differences import relative_error


def stacked_problem(pooling: str, channels_last: bool, tasks: int, seed: int):
    """A tiny ConvNet with BatchNorm, and a point of the stacked network: packed phi, a set, a packed direction."""
    torch.manual_seed(0)
    module = ConvNet(num_classes=3, in_channels=3, filters=2, blocks=2, image_size=8, pooling=pooling,
                     activation="relu", channels_last=channels_last).double()
    model = FunctionalModel(module, cross_entropy_loss)
    generator = torch.Generator().manual_seed(seed)
    phi = model.flat_parameters() + 0.1 * torch.randn(tasks, model.num_parameters, generator=generator,
                                                      dtype=torch.float64)
    support = Batch(torch.randn(tasks, 6, 3, 8, 8, generator=generator, dtype=torch.float64),
                    torch.randint(0, 3, (tasks, 6), generator=generator))
    direction = torch.randn(tasks, model.num_parameters, generator=generator, dtype=torch.float64)
    return model, phi, support, direction


def unstaged(model: FunctionalModel, phi: torch.Tensor, support: Batch, direction: torch.Tensor) -> torch.Tensor:
    """The product as ``FunctionalModel.stacked_gradient_and_hessian_product`` computes it, without the stages."""
    return forward_over_reverse_hvp(lambda p: model.stacked_losses(p, support, second_order=True)[0].sum(), phi,
                                    direction)


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pooling", ["stride", "max"])
def test_the_staged_product_is_the_product_at_every_point_it_is_bound_at(pooling, channels_last):
    """Bit for bit the unstaged product; a second point of the same shapes (other parameters, images and labels)
    reuses the trace and still gets its own products, so no value of the first is baked into the trace; each
    task's product is its own Hessian's, by autograd's double backward."""
    model, _, _, _ = stacked_problem(pooling, channels_last, 3, seed=1)
    staged = model.stacked_gradient_and_hessian_product
    for seed in (1, 2):
        _, phi, support, direction = stacked_problem(pooling, channels_last, 3, seed)
        packed_phi = model.pack(phi)
        product = staged.bind(packed_phi, support.x, support.y)
        for scale in (1.0, -0.5):  # several products at one point: the second stage alone after the first
            got = product(model.pack(scale * direction))[1]
            assert torch.equal(got, unstaged(model, packed_phi, support, model.pack(scale * direction)))
            got = model.unpack(got, 3)
            for t in range(3):
                alone = Batch(support.x[t], support.y[t])
                expected = hessian_vector_product(lambda p, alone=alone: model.loss(p, alone), phi[t], scale * direction[t])
                assert relative_error(got[t], expected) < 1e-10
        assert staged.traces == 1
    _, phi, support, direction = stacked_problem(pooling, channels_last, 2, seed=3)  # another meta-batch size
    got = staged.bind(model.pack(phi), support.x, support.y)(model.pack(direction))[1]
    assert torch.equal(got, unstaged(model, model.pack(phi), support, model.pack(direction)))
    assert staged.traces == 2


def test_a_staged_product_after_the_first_runs_fewer_operations_than_the_unstaged_one():
    model, phi, support, direction = stacked_problem("stride", False, 3, seed=1)
    packed_phi, packed_direction = model.pack(phi), model.pack(direction)
    bound = model.stacked_gradient_and_hessian_product.bind(packed_phi, support.x, support.y)

    def product(direction: torch.Tensor) -> torch.Tensor:
        return bound(direction)[1]

    first = count_operations(lambda: product(packed_direction)).total  # both stages
    later = count_operations(lambda: product(packed_direction)).total  # the second stage alone
    whole = count_operations(lambda: unstaged(model, packed_phi, support, packed_direction)).total
    assert later < 0.7 * whole and first <= whole, (first, later, whole)


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_gradient_and_losses_from_the_first_stage_are_the_stacked_networks(channels_last):
    """The products' first stage holds every task's support-loss gradient and loss at phi (MAML's inner steps and
    iMAML's Newton iterations take them from there): available before any product, the same tensors a call
    returns, equal to the first-order form's to rounding and to each task's own alone (float64); and the products
    after it are the unstaged ones."""
    model, phi, support, direction = stacked_problem("stride", channels_last, 3, seed=1)
    packed_phi = model.pack(phi)
    bound = model.stacked_gradient_and_hessian_product.bind(packed_phi, support.x, support.y)
    gradient, losses = bound.fixed_output(0, like=packed_phi), bound.fixed_output(2, like=packed_phi)
    called, product, called_losses = bound(model.pack(direction))
    assert called is gradient and called_losses is losses
    assert torch.equal(product, unstaged(model, packed_phi, support, model.pack(direction)))
    first_order_losses = model.stacked_losses(packed_phi, support)[0]
    first_order = torch.func.grad(lambda p: model.stacked_losses(p, support)[0].sum())(packed_phi)
    assert relative_error(gradient, first_order) < 1e-13 and relative_error(losses, first_order_losses) < 1e-14
    gradient = model.unpack(gradient, 3)
    for t in range(3):
        alone = Batch(support.x[t], support.y[t])
        assert relative_error(gradient[t], torch.func.grad(lambda p, alone=alone: model.loss(p, alone))(phi[t])) < 1e-12
        assert relative_error(losses[t], model.loss(phi[t], alone)) < 1e-13
    with pytest.raises(ValueError, match="depends on its varying input"):
        bound.fixed_output(1, like=packed_phi)
    assert model.stacked_gradient_and_hessian_product.traces == 1


def test_an_operation_writing_into_the_varying_part_is_staged_one_writing_into_the_fixed_part_is_refused():
    a, u = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)

    def writes_varying(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        c = u * a.exp()
        c.add_(a)
        return c

    bound = Staged(writes_varying).bind(a)
    assert torch.equal(bound(u), writes_varying(a, u)) and torch.equal(bound(2 * u), writes_varying(a, 2 * u))

    def writes_fixed(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        c = a.exp()
        b = c * u  # reads c before the write below: a first stage run ahead of it would give b the written c
        c.add_(1)
        return b + c * u

    with pytest.raises(ValueError, match="writes into a value of the first stage"):
        Staged(writes_fixed).bind(a)(u)


def test_what_only_dead_operations_read_is_neither_computed_nor_held_by_the_first_stage():
    """make_fx keeps operations whose results nothing uses (a forward-mode formula's unused tangents are such): the
    first stage computes, and a bound point holds, only the fixed values the live operations read."""
    def with_dead_work(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        unused = a.cos() * u  # dead: read by nothing the output depends on
        del unused
        return a.exp() * u

    a, u = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    staged = Staged(with_dead_work)
    bound = staged.bind(a)
    assert torch.equal(bound(u), with_dead_work(a, u))
    (stages,) = staged._stages.values()
    assert [n.target for n in stages.first.graph.nodes if n.op == "call_function"] == [torch.ops.aten.exp.default]
    (held,) = bound._saved.values()
    assert len(held) == 1 and torch.equal(held[0], a.exp())
    assert count_operations(lambda: bound(u)).total == 1


def test_a_direction_laid_out_otherwise_is_traced_on_its_own_at_the_same_point():
    """The traces are keyed by every input's strides too, and a bound point keeps each trace's first stage apart."""
    def by_layout(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        # a first stage that depends on the direction's layout (a trace sees strides as constants)
        fixed = a.exp() if u.is_contiguous() else a.exp().sin()
        return (fixed * u).sum(dim=0)

    a = torch.randn(3, 4, dtype=torch.float64)
    staged = Staged(by_layout)
    bound = staged.bind(a)
    u = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(bound(u.t().contiguous()), by_layout(a, u.t().contiguous()))
    assert torch.equal(bound(u.t()), by_layout(a, u.t()))  # the same values, transposed strides
    assert staged.traces == 2


def test_a_value_read_from_a_fixed_input_is_read_again_at_every_bind():
    """The trace runs on fake tensors: a number read from the data is an operation of the first stage, not a
    constant of the trace that a second point would inherit."""
    staged = Staged(lambda a, u: u * a.sum().item())
    u = torch.randn(4, dtype=torch.float64)
    for seed in (1, 2):
        a = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert torch.equal(staged.bind(a)(u), u * a.sum().item())
    assert staged.traces == 1


@pytest.mark.parametrize("tasks", [1, 3])
def test_pack_is_the_block_by_block_layout(tasks):
    """``FunctionalModel.pack``'s gather equals copying block by block, from a contiguous stack or theta expanded."""
    model, phi, _, _ = stacked_problem("stride", False, tasks, seed=1)
    for flat in (phi, model.flat_parameters().expand(tasks, -1)):
        assert torch.equal(model.pack(flat), model.pack_by_blocks(flat))
        assert torch.equal(model.unpack(model.pack(flat), tasks), flat)
