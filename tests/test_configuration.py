import pytest

from metagrad.algorithms import ALGORITHMS, make_algorithm
from metagrad.errors import ConfigError
from tests.limits import HANG_S


def test_the_built_in_algorithms_are_registered_from_metagrad():
    from metagrad.algorithms import entries

    assert {name for name, entry in entries().items() if entry.origin == "metagrad"} == {
        "maml", "fomaml", "reptile", "imaml", "meta-sgd", "maml-lslr", "imaml-lambda"}
    assert set(ALGORITHMS) == set(entries())


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
                                                ("imaml-hf", "batched"), ("meta-sgd", "per-task"),
                                                ("maml-lslr", "per-task"), ("imaml-lambda-scalar", "batched"),
                                                ("imaml-lambda-parameter", "batched")])
def test_the_default_engine_is_the_one_measured_faster_on_the_device(variant, cpu_engine):
    """bench/training/engines.py: batched on CUDA; on the CPU, batched only where it measured faster (README, "Two
    engines"), and a given engine is kept."""
    from metagrad.bench.training.config import train_config

    assert train_config(f"omniglot-5w1s-{variant}", device="cpu").engine == cpu_engine
    assert train_config(f"omniglot-5w1s-{variant}", device="cuda").engine == "batched"
    assert train_config(f"omniglot-5w1s-{variant}", device="cpu", engine="per-task").engine == "per-task"


@pytest.mark.parametrize("preset_name,images,cpu_engine", [
    ("omniglot-20w5s-maml", 100, "per-task"), ("omniglot-20w5s-imaml-gd", 100, "per-task"),
    ("omniglot-20w1s-maml", 20, "per-task"), ("omniglot-20w1s-imaml-gd", 20, "batched"),
    ("omniglot-5w5s-imaml-gd", 25, "batched"), ("mini-imagenet-5w1s-maml", 5, "batched"),
    ("omniglot-20w5s-reptile", 20, "batched"),  # Nichol et al.'s inner minibatch, not the 200-image support set
    ("omniglot-20w5s-reptile-shared", 100, "per-task"),
    ("omniglot-20w1s-imaml-lambda-layer", 20, "per-task"), ("mini-imagenet-5w1s-imaml-lambda-layer", 5, "batched"),
])
def test_the_cpu_default_engine_follows_the_size_of_an_inner_step(preset_name, images, cpu_engine):
    """On the CPU the batched engine is the default only up to the inner step's size at which it measured faster
    (each algorithm's cpu_batched_max_step_images, bench/training/engines.py); on CUDA always; an option only the batched engine has
    (channels last) asks for it."""
    from metagrad.algorithms import make_algorithm
    from metagrad.bench.training.config import train_config
    from metagrad.bench.training.engines import images_per_inner_step

    config = train_config(preset_name, device="cpu")
    assert images_per_inner_step(make_algorithm(config.algorithm, **config.hyperparameters), config.train_spec) == images
    assert config.engine == cpu_engine
    assert train_config(preset_name, device="cuda").engine == "batched"
    assert train_config(preset_name, device="cpu", channels_last=True).engine == "batched"


def test_the_evaluation_default_engine_follows_the_evaluation_step():
    """Nichol et al.'s Reptile adapts on minibatches of eval_inner_batch at evaluation, of the evaluation
    tasks' support set: 20-way 5-shot trains on minibatches of 20 and evaluates on minibatches of 10."""
    from metagrad.algorithms import make_algorithm
    from metagrad.bench.data.tasks import EpisodeSpec
    from metagrad.bench.training.config import train_config
    from metagrad.bench.training.engines import default_engine, images_per_inner_step

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
    """The CLI is built from the harnesses' frozen dataclasses: a command given only what it requires builds
    exactly the dataclass's default, and a flag reaches its field."""
    from metagrad.bench.cli.arguments import build_config
    from metagrad.bench.cli.command import build_parser
    from metagrad.bench.harnesses.complexity import ComplexityConfig
    from metagrad.bench.harnesses.exact_solve import ExactSolveConfig
    from metagrad.bench.harnesses.profile import ProfileConfig
    from metagrad.bench.harnesses.spectrum import SpectrumConfig
    from metagrad.bench.harnesses.throughput import ThroughputConfig
    from metagrad.bench.training.config import EvalConfig

    def parsed(argv):
        return build_parser(argv[0]).parse_args(argv)

    cases = [(ExactSolveConfig, ["exact-solve", "--out", "x"]), (ComplexityConfig, ["complexity", "--out", "x"]),
             (ProfileConfig, ["profile", "--out", "x"]), (ThroughputConfig, ["throughput", "--out", "x"]),
             (SpectrumConfig, ["spectrum", "RUN"]), (EvalConfig, ["eval", "RUN"])]
    for config, argv in cases:
        assert build_config(config, parsed(argv)) == config(), argv[0]
    changed = build_config(ExactSolveConfig, parsed(["exact-solve", "--out", "x", "--seed", "5", "--seeds", "2",
                                                     "--kappa", "7", "--tasks", "3"]))
    assert (changed.seed, changed.seeds, changed.task.kappa, changed.tasks_per_seed) == (5, 2, 7, 3)
    changed = build_config(EvalConfig, parsed(["eval", "RUN", "--split", "val", "--tasks", "9", "--engine", "batched"]))
    assert changed == EvalConfig(split="val", tasks=9, engine="batched")
    changed = build_config(ProfileConfig, parsed(["profile", "--out", "x", "--algorithms", "maml,imaml", "--inner-steps",
                                                  "3,9", "--no-rss", "--cg-steps", "2"]))
    assert (changed.algorithms, changed.inner_steps, changed.rss, changed.cg_steps) == (("maml", "imaml"), (3, 9),
                                                                                           False, 2)


def test_every_config_option_is_defined_once_on_its_dataclass():
    """Each command's options come from its config's fields (type, default and help kept once, in the field's
    metadata), and --help shows each field's default."""
    from dataclasses import MISSING

    from metagrad.bench.cli.command import build_parser
    from metagrad.bench.harnesses.profile import ProfileConfig
    from metagrad.bench.options import flag_of, options_of

    help_text = " ".join(build_parser("profile")._subparsers._group_actions[0].choices["profile"].format_help().split())
    for field in options_of(ProfileConfig):
        assert flag_of(field) in help_text
        assert field.metadata["help"].split("(")[0].strip()[:30] in help_text, field.name
        default = field.default if field.default is not MISSING else field.default_factory()
        if not isinstance(default, bool) and field.metadata["shown"] is None:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else f"{default:g}" if isinstance(
                default, float) else str(default)
            assert f"(default {shown})" in help_text, field.name


def test_metagrad_help_does_not_import_torch():
    """The top-level --help lists the commands from their modules' HELP lines alone; torch is imported when a
    command is built."""
    import subprocess
    import sys

    code = ("import sys\nfrom metagrad.bench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert "exact-solve" in done.stdout and "report" in done.stdout
