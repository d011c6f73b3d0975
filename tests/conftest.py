"""Shared fixtures: tiny float64 networks with BatchNorm in training mode, and tasks for them."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

from metagrad.algorithms import Batch, FunctionalModel, Task, cross_entropy_loss
from metagrad.bench.nets.convnet import ConvNet
from tests.data_paths import DATA_ROOT

# The tests' data (tests/data_paths.py) is every command's default data root here, and in the processes they start.
os.environ.setdefault("METAGRAD_DATA", str(DATA_ROOT))

# higher 0.2.1 calls APIs that newer torch warns about; the warnings say nothing about our code.
warnings.filterwarnings("ignore", module="higher")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--counter-baseline", metavar="JSON", default=None,
        help="the work gate's counter file: fail a benchmark whose deterministic counters (gradient and "
             "Hessian-vector-product evaluations, FLOPs, saved bytes, device operations, images) differ from it "
             "(default: reports/benchmarks/counters-<device type>.json; none: no gate)")
    parser.addoption(
        "--time-ratio-baseline", metavar="JSON", default=None,
        help="a saved timed run (--benchmark-save): with --benchmark-only, fail a benchmark whose time ratio (its "
             "median over one gradient's) is more than --time-ratio-tolerance percent above that run's")
    parser.addoption("--time-ratio-tolerance", metavar="PCT", type=float, default=25.0,
                     help="the time-ratio gate's tolerance in percent (default 25)")
    parser.addoption(
        "--bench-device", default="cpu",
        help="where the tasks-per-second and sampler benchmarks run: cpu (default) or cuda (tools/gpu_checks.py)")


def pytest_configure(config: pytest.Config) -> None:
    # The plain test command runs each benchmark once, untimed, as a smoke test; `--benchmark-only`
    # (or `--benchmark-enable`) times them. Doing this here rather than with `--benchmark-disable` in
    # addopts keeps `pytest --benchmark-only` legal (pytest-benchmark refuses the two together).
    if not (config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True
    # Under pytest-xdist (the README's test command, `-n 2`) each worker process is given one thread: two
    # workers of two OpenMP threads each on two cores wait on each other's spinning threads.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test skipped for want of the real data must say so by its mark (``real_data``), so that ``-m real_data`` and
    the count below are every such test: one that is not marked fails, naming the mark."""
    from tests.data_paths import MISSING

    outcome = yield
    report = outcome.get_result()
    if report.skipped and MISSING in str(report.longrepr) and item.get_closest_marker("real_data") is None:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} reads the real data but is not marked real_data: mark it, or give it "
                           "the tests' small data (the small_data_root fixture, tests/small_data.py)")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line where tests were skipped for want of the real data: how many, and the commands that get it."""
    from tests.data_paths import MISSING

    skipped = [report for report in terminalreporter.stats.get("skipped", []) if MISSING in str(report.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: they need the real data under {DATA_ROOT}; get it with `metagrad data "
            f"fetch omniglot --data-root {DATA_ROOT}` (then one-shot-runs; Mini-ImageNet: `metagrad data import "
            "mini-imagenet SOURCE`), or point METAGRAD_DATA at a copy", yellow=True)


@pytest.fixture(scope="session")
def small_data_root(tmp_path_factory: pytest.TempPathFactory):
    """A data root of small data in the real layouts (tests/small_data.py), one copy shared by the test workers."""
    from tests.small_data import small_data

    base = tmp_path_factory.getbasetemp()
    return small_data((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "small-data")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """The machine fingerprint saved with every benchmark run (and shown when two runs differ)."""
    from metagrad.bench.measure.machine import fingerprint

    machine_info["metagrad"] = fingerprint()


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 5, bias=False), nn.BatchNorm1d(5, track_running_stats=False), nn.Tanh(),
                         nn.Linear(5, 3))  # no bias ahead of BatchNorm, as in the ConvNet: no loss depends on one


def tiny_convnet(activation: str = "tanh") -> nn.Module:
    """The standard block structure, shrunk. Tanh by default: with ReLU's kinks gradient descent and
    Newton's method on the tiny problem do not settle on one minimizer, which the implicit tests need."""
    return ConvNet(num_classes=3, in_channels=1, filters=2, blocks=2, image_size=6, pooling="stride",
                   activation=activation)


def classification_task(generator: torch.Generator, input_shape: tuple[int, ...], classes: int = 3,
                        shots: int = 4, queries: int = 3) -> Task:
    def batch(n: int) -> Batch:
        y = torch.arange(classes).repeat_interleave(n)
        # class-dependent means so that adaptation has something to learn
        x = torch.randn(len(y), *input_shape, generator=generator, dtype=torch.float64)
        x = x + 0.5 * y.view(-1, *([1] * len(input_shape))).double()
        return Batch(x, y)

    return Task(batch(shots), batch(queries))


@pytest.fixture(params=["mlp-batchnorm", "convnet-batchnorm"])
def tiny_problem(request):
    """(model, theta, task) in float64; BatchNorm uses batch statistics."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    if request.param == "mlp-batchnorm":
        module, shape = tiny_mlp(), (4,)
    else:
        module, shape = tiny_convnet(), (1, 6, 6)
    module = module.double()
    model = FunctionalModel(module, cross_entropy_loss)
    return model, model.flat_parameters(), classification_task(generator, shape)
