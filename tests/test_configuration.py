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
    """bench/training/engines.py: batched on CUDA; on the CPU, batched only where it measured faster (README, "Two
    engines"), and a given engine is kept."""
    from bench.training.trainer import train_config

    assert train_config(f"omniglot-5w1s-{variant}", device="cpu").engine == cpu_engine
    assert train_config(f"omniglot-5w1s-{variant}", device="cuda").engine == "batched"
    assert train_config(f"omniglot-5w1s-{variant}", device="cpu", engine="per-task").engine == "per-task"


@pytest.mark.parametrize("preset_name,images,cpu_engine", [
    ("omniglot-20w5s-maml", 100, "per-task"), ("omniglot-20w5s-imaml-gd", 100, "per-task"),
    ("omniglot-20w1s-maml", 20, "per-task"), ("omniglot-20w1s-imaml-gd", 20, "batched"),
    ("omniglot-5w5s-imaml-gd", 25, "batched"), ("mini-imagenet-5w1s-maml", 5, "batched"),
    ("omniglot-20w5s-reptile", 20, "batched"),  # Nichol et al.'s inner minibatch, not the 200-image support set
    ("omniglot-20w5s-reptile-shared", 100, "per-task"),
])
def test_the_cpu_default_engine_follows_the_size_of_an_inner_step(preset_name, images, cpu_engine):
    """On the CPU the batched engine is the default only up to the inner step's size at which it measured faster
    (bench/training/engines.py, CPU_BATCHED_MAX_STEP_IMAGES); on CUDA always; an option only the batched engine has
    (channels last) asks for it."""
    from algorithms import make_algorithm
    from bench.training.engines import images_per_inner_step
    from bench.training.trainer import train_config

    config = train_config(preset_name, device="cpu")
    assert images_per_inner_step(make_algorithm(config.algorithm, **config.hyperparameters), config.train_spec) == images
    assert config.engine == cpu_engine
    assert train_config(preset_name, device="cuda").engine == "batched"
    assert train_config(preset_name, device="cpu", channels_last=True).engine == "batched"


def test_the_evaluation_default_engine_follows_the_evaluation_step():
    """Nichol et al.'s Reptile adapts on minibatches of eval_inner_batch at evaluation, of the evaluation
    tasks' support set: 20-way 5-shot trains on minibatches of 20 and evaluates on minibatches of 10."""
    from algorithms import make_algorithm
    from bench.data.tasks import EpisodeSpec
    from bench.training.engines import default_engine, images_per_inner_step
    from bench.training.trainer import train_config

    config = train_config("omniglot-20w5s-reptile", device="cpu")
    reptile = make_algorithm(config.algorithm, **config.hyperparameters)
    assert images_per_inner_step(reptile, config.spec, evaluation=True) == 10
    assert images_per_inner_step(reptile, config.train_spec) == 20
    maml = make_algorithm("maml")
    assert default_engine("cpu", maml, EpisodeSpec(5, 1, 15), evaluation=True) == "batched"
    assert default_engine("cpu", maml, EpisodeSpec(20, 5, 15), evaluation=True) == "per-task"
    assert default_engine("cuda", maml, EpisodeSpec(20, 5, 15), evaluation=True) == "batched"
    assert default_engine("cpu", make_algorithm("fomaml"), EpisodeSpec(5, 1, 15)) == "per-task"


def test_each_subcommand_left_at_its_defaults_runs_its_config_dataclass_defaults():
    """The CLI reads its defaults from the harnesses' frozen dataclasses: a command given only what it
    requires builds exactly the dataclass's default, and a flag reaches its field."""
    from bench import cli
    from bench.harnesses.complexity import ComplexityConfig
    from bench.harnesses.exact_solve import ExactSolveConfig
    from bench.harnesses.profile import ProfileConfig
    from bench.harnesses.spectrum import SpectrumConfig
    from bench.harnesses.throughput import ThroughputConfig
    from bench.training.trainer import EvalConfig

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
