"""Search spaces: grid order, random reproducibility, no repeats, bad spaces refused."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import podsweep.hpo as hpo
from podsweep.hpo._space import Space, _feistel_permute

GRID = dict(batch_size=[32, 64, 128], lr=[1, 0.1, 0.01, 0.001])


def test_grid_numbers_trials_in_product_order():
    space = Space.build(GRID, hpo.Strategy.GridSearch)
    assert space.size == 12
    expected = [dict(zip(GRID, combo)) for combo in itertools.product(*GRID.values())]
    assert [space.config(n) for n in range(1, 13)] == expected


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=3000), key=st.text(max_size=8))
def test_feistel_is_a_permutation(size, key):
    assert sorted(_feistel_permute(key, i, size) for i in range(size)) == list(range(size))


def test_random_finite_space_repeats_nothing_until_exhausted_and_depends_on_seed():
    space = Space.build(GRID, hpo.Strategy.RandomSearch, seed=7)
    configs = [space.config(n) for n in range(1, 13)]
    assert sorted(map(str, configs)) == sorted(
        str(dict(zip(GRID, c))) for c in itertools.product(*GRID.values()))
    assert configs != [Space.build(GRID, hpo.Strategy.GridSearch).config(n)
                       for n in range(1, 13)], "random order should not be the grid order"
    other = Space.build(GRID, hpo.Strategy.RandomSearch, seed=8)
    assert [other.config(n) for n in range(1, 13)] != configs


def test_random_trial_config_is_a_pure_function_of_seed_and_number():
    grid = dict(lr=hpo.loguniform(1e-4, 1), momentum=hpo.uniform(0, 0.99),
                layers=hpo.randint(1, 4), opt=["sgd", "adam"])
    a = Space.build(grid, hpo.Strategy.RandomSearch, seed=3)
    b = Space.build(dict(grid), hpo.Strategy.RandomSearch, seed=3)
    order = [5, 1, 9, 2]
    assert [a.config(n) for n in order] == [b.config(n) for n in order]
    assert a.size is None
    for n in range(1, 200):
        c = a.config(n)
        assert 1e-4 <= c["lr"] < 1 and 0 <= c["momentum"] < 0.99 and 1 <= c["layers"] <= 4
    # the finite part (layers x opt = 8 combinations) is covered evenly, pass by pass
    first = {(a.config(n)["layers"], a.config(n)["opt"]) for n in range(1, 9)}
    assert len(first) == 8


def test_spaces_compare_by_content_not_key_order():
    a = Space.build(dict(x=[1, 2], y=["a"]), hpo.Strategy.GridSearch)
    b = Space.build(dict(y=["a"], x=[1, 2]), hpo.Strategy.GridSearch)
    c = Space.build(dict(x=[1, 3], y=["a"]), hpo.Strategy.GridSearch)
    assert a.same_as(b) and not a.same_as(c)
    assert not a.same_as(Space.build(dict(x=[1, 2], y=["a"]), hpo.Strategy.RandomSearch))


@pytest.mark.parametrize("grid, strategy, message", [
    ({}, hpo.Strategy.GridSearch, "non-empty"),
    (dict(lr=[]), hpo.Strategy.GridSearch, "no values"),
    (dict(lr=hpo.uniform(0, 1)), hpo.Strategy.GridSearch, "grid search needs a list"),
    (dict(lr=0.1), hpo.Strategy.GridSearch, "expected a list"),
    (dict(lr=[object()]), hpo.Strategy.GridSearch, "JSON values"),
    (dict(lr=[1]), "grid", "strategy must be"),
])
def test_bad_spaces_are_refused_clearly(grid, strategy, message):
    with pytest.raises(hpo.InvalidSpace, match=message):
        Space.build(grid, strategy)


@pytest.mark.parametrize("make, message", [
    (lambda: hpo.uniform(1, 1), "low must be below high"),
    (lambda: hpo.loguniform(0, 1), "0 < low < high"),
    (lambda: hpo.randint(3, 2), "must not exceed"),
    (lambda: hpo.randint(0.5, 2), "must be an int"),
    (lambda: hpo.uniform(float("nan"), 1), "finite number"),
])
def test_bad_distributions_are_refused(make, message):
    with pytest.raises(hpo.InvalidSpace, match=message):
        make()
