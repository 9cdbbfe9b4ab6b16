"""`rlhf_keras.default_search_space()` in the terms of the other tuners, so every method of a
benchmark searches the very same space (and follows it when it changes)."""

from __future__ import annotations

from typing import Any

import keras_tuner

from rlhf_keras.hypermodel import default_search_space


def _entries(space: keras_tuner.HyperParameters | None) -> list[Any]:
    return list((space or default_search_space()).space)


def optuna_values(trial: Any, space: keras_tuner.HyperParameters | None = None) -> dict:
    """One Optuna trial's suggestions for each hyperparameter of the space."""
    values = {}
    for hp in _entries(space):
        if isinstance(hp, keras_tuner.engine.hyperparameters.Fixed):
            continue  # not searched: the trial function's space supplies it
        if isinstance(hp, keras_tuner.engine.hyperparameters.Choice):
            values[hp.name] = trial.suggest_categorical(hp.name, list(hp.values))
        else:
            values[hp.name] = trial.suggest_float(hp.name, hp.min_value, hp.max_value,
                                                  log=hp.sampling == "log")
    return values


def choices(name: str, space: keras_tuner.HyperParameters | None = None) -> list:
    """The values of a `Choice` of the space, e.g. `choices("beta_1")`."""
    return next(list(hp.values) for hp in _entries(space) if hp.name == name)


def log_range(name: str, space: keras_tuner.HyperParameters | None = None) -> tuple:
    """`(min, max)` of a log-sampled `Float` of the space, e.g. `log_range("g_lr")`."""
    hp = next(hp for hp in _entries(space) if hp.name == name)
    return hp.min_value, hp.max_value
