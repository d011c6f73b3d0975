# ruff: noqa  (kept as it ran on the H200)
"""Where the captured iteration leaves the eager one: per iteration, each CUDA variant against the CPU (float64).

Run from the repository root: python3 reports/gpu-h200-batched/graph_diagnostic.py DATA_ROOT. Its output on an
H200 is graph-diagnostic.txt beside it; tests/test_cuda.py holds what it showed as a test.
"""
import sys, time
import torch
from algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from bench.datasets import network, task_source
from bench.device_tasks import DeviceTasks
from bench.presets import preset
from bench.steps import BatchedStep, Window
from bench.tasks import EpisodeSpec
from tests.conftest import bias_ahead_of_batchnorm

torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
root = sys.argv[1] if len(sys.argv) > 1 else ".device-data"
tasks = task_source("omniglot", "train", EpisodeSpec(5, 1, 5), root).tasks
noise = bias_ahead_of_batchnorm(8)
N = 6

def run(variant, device, graph=False, capturable=False, side=False):
    s = preset(f"omniglot-5w1s-{variant}")
    alg = make_algorithm(s["algorithm"], **s["hyperparameters"])
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", 5, 8).to(device=device, dtype=torch.float64), cross_entropy_loss)
    theta = model.flat_parameters().clone()
    opt = torch.optim.Adam([theta], lr=0.01, capturable=capturable)
    window = Window(torch.device(device))
    src = DeviceTasks(tasks, device, torch.float64, 0, 4)
    step = BatchedStep(alg, model, theta, opt, window, graph=graph, source=src)
    thetas, grads, draws = [], [], []
    for i in range(N):
        if side:
            st = torch.cuda.Stream(); st.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(st):
                step()
            torch.cuda.current_stream().wait_stream(st)
        else:
            step()
        thetas.append(theta.detach().cpu().clone())
        grads.append(theta.grad.detach().cpu().clone())
        draws.append(int(src.iteration.item()))
    return thetas, grads, draws

def rel(a, b):
    return ((a - b).norm() / a.norm().clamp_min(1e-300)).item()

for variant in ["fomaml", "maml", "imaml-gd"]:
    t0 = time.time()
    ref = run(variant, "cpu")
    variants = {"cuda eager": run(variant, "cuda"), "cuda eager capturable": run(variant, "cuda", capturable=True),
                "cuda eager side stream": run(variant, "cuda", side=True),
                "cuda graph": run(variant, "cuda", graph=True, capturable=True)}
    print(f"== {variant} ({time.time() - t0:.1f}s); counters {ref[2]}")
    print("   cpu grad norms", [f"{g[~noise].norm():.3e}" for g in ref[1]], "bias grad max", f"{max(g[noise].abs().max().item() for g in ref[1]):.2e}")
    for name, (thetas, grads, draws) in variants.items():
        print(f"   {name:24s} counters {draws}")
        print("      theta rel diff (rest)", [f"{rel(r[~noise], t[~noise]):.1e}" for r, t in zip(ref[0], thetas)])
        print("      grad  rel diff (rest)", [f"{rel(r[~noise], g[~noise]):.1e}" for r, g in zip(ref[1], grads)])
        print("      bias grad max", [f"{g[noise].abs().max().item():.1e}" for g in grads])
# the draws, pixel for pixel
cpu, gpu = (DeviceTasks(tasks, d, torch.float32, 3, 32) for d in ("cpu", "cuda"))
for it in (0, 1, 777):
    a, b = (s.draw(torch.tensor(it, device=s.images.device)) for s in (cpu, gpu))
    print("draw", it, torch.equal((a.support.x * 255).round(), (b.support.x.cpu() * 255).round()),
          (a.support.x - b.support.x.cpu()).abs().max().item(), torch.equal(a.query.y, b.query.y.cpu()))
