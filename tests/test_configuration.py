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
