import pytest

from algorithms import ALGORITHMS, ConfigError, make_algorithm


def test_four_algorithms_are_registered():
    assert set(ALGORITHMS) == {"maml", "fomaml", "reptile", "imaml"}


@pytest.mark.parametrize("name,kwargs,fragment", [
    ("imaml", {"lam": 0.0}, "lam"),
    ("imaml", {"lam": -1.0}, "lam"),
    ("maml", {"lam": -0.5}, "lam"),
    ("maml", {"inner_steps": -1}, "inner_steps"),
    ("fomaml", {"inner_lr": 0.0}, "inner_lr"),
    ("reptile", {"inner_steps": 2.5}, "inner_steps"),
    ("imaml", {"cg_steps": -2}, "cg_steps"),
    ("imaml", {"cg_tolerance": -1e-3}, "cg_tolerance"),
    ("imaml", {"inner_solver": "adam"}, "inner_solver"),
    ("imaml", {"newton_cg_steps": 0}, "newton_cg_steps"),
    ("imaml", {"learning_rate": 0.1}, "no hyperparameter learning_rate"),
    ("protonet", {}, "unknown algorithm 'protonet'"),
])
def test_bad_hyperparameters_raise_a_clear_error(name, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make_algorithm(name, **kwargs)


@pytest.mark.parametrize("variant,cpu_engine", [("maml", "batched"), ("fomaml", "per-task"), ("reptile", "batched"),
                                                ("reptile-shared", "batched"), ("imaml-gd", "batched"),
                                                ("imaml-hf", "batched")])
def test_the_default_engine_is_the_one_measured_faster_on_the_device(variant, cpu_engine):
    """bench/engines.py: batched on CUDA; on the CPU, batched only where it measured faster (README, "Two
    engines"), and a given engine is kept."""
    from bench.train import train_config

    assert train_config(f"omniglot-5w1s-{variant}", device="cpu").engine == cpu_engine
    assert train_config(f"omniglot-5w1s-{variant}", device="cuda").engine == "batched"
    assert train_config(f"omniglot-5w1s-{variant}", device="cpu", engine="per-task").engine == "per-task"


def test_each_subcommand_left_at_its_defaults_runs_its_config_dataclass_defaults():
    """The CLI reads its defaults from the harnesses' frozen dataclasses: a command given only what it
    requires builds exactly the dataclass's default, and a flag reaches its field."""
    from bench import cli
    from bench.complexity import ComplexityConfig
    from bench.exact_solve import ExactSolveConfig
    from bench.profile import ProfileConfig
    from bench.spectrum import SpectrumConfig
    from bench.throughput import ThroughputConfig
    from bench.train import EvalConfig

    parser = cli.build_parser()
    cases = [(cli._exact_solve_config, ["exact-solve", "--out", "x"], ExactSolveConfig()),
             (cli._complexity_config, ["complexity", "--out", "x"], ComplexityConfig()),
             (cli._profile_config, ["profile", "--out", "x"], ProfileConfig()),
             (cli._throughput_config, ["throughput", "--out", "x"], ThroughputConfig()),
             (cli._spectrum_config, ["spectrum", "RUN"], SpectrumConfig()),
             (cli._eval_config, ["eval", "RUN"], EvalConfig())]
    for build, argv, default in cases:
        assert build(parser.parse_args(argv)) == default, argv[0]
    changed = parser.parse_args(["exact-solve", "--out", "x", "--seed", "5", "--seeds", "2", "--kappa", "7"])
    assert cli._exact_solve_config(changed).seeds == (5, 6) and cli._exact_solve_config(changed).task.kappa == 7
    changed = parser.parse_args(["eval", "RUN", "--split", "val", "--tasks", "9", "--engine", "batched"])
    assert cli._eval_config(changed) == EvalConfig(split="val", tasks=9, engine="batched")
    changed = parser.parse_args(["profile", "--out", "x", "--algorithms", "maml,imaml", "--inner-steps", "3,9"])
    assert (cli._profile_config(changed).algorithms, cli._profile_config(changed).inner_steps) == (("maml", "imaml"),
                                                                                                    (3, 9))
