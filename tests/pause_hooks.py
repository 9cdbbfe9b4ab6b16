"""Test-only pause points, so a test can kill or interrupt a real run at a known moment.

With RLHF_KERAS_TEST_PAUSE=<stage>[@<trial_id>] and RLHF_KERAS_TEST_MARKER=<file> in the
environment, a run with the hooks installed writes the marker and sleeps at that stage:

* `trial`: after the first training batch of a trial;
* `scoring`: the trial has trained, its score is not computed yet;
* `trial_end`: the oracle has recorded the trial, results.json not yet.

Nothing happens when the variables are unset, or once the marker exists. `install()` wraps
three library methods; subprocesses get them by running `tests/run_cli.py` instead of
`python -m rlhf_keras.cli`, tests in this process with the `pause_hooks` fixture.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from rlhf_keras import hypermodel, metrics, tuner

PAUSE_ENV = "RLHF_KERAS_TEST_PAUSE"
MARKER_ENV = "RLHF_KERAS_TEST_MARKER"


def pause(stage: str, trial_id: str | None) -> None:
    """Writes the marker and sleeps if the environment asks for `stage` (of `trial_id`)."""
    wanted = os.environ.get(PAUSE_ENV, "")
    marker = os.environ.get(MARKER_ENV)
    if not wanted or not marker:
        return
    name, _, only_trial = wanted.partition("@")
    if name != stage or (only_trial and only_trial != str(trial_id)) or os.path.exists(marker):
        return
    Path(marker).write_text(f"{stage} {trial_id}")
    time.sleep(600)  # the test kills or interrupts the process long before this ends


class _PauseAfterFirstBatch(keras.callbacks.Callback):
    def __init__(self, trial_id: str | None) -> None:
        super().__init__()
        self.trial_id = trial_id

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if batch == 0:
            pause("trial", self.trial_id)


def install(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Wraps the library's trial training, scoring and recording with the pause points."""
    fit = hypermodel.GANHyperModel.fit
    quality = metrics.quality
    record = tuner.GANTuner._record  # noqa: SLF001
    current: dict[str, str | None] = {"trial_id": None}

    def fit_with_pauses(self, hp, model, *args, **kwargs):
        current["trial_id"] = self.trial_id
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), _PauseAfterFirstBatch(self.trial_id)]
        return fit(self, hp, model, *args, **kwargs)

    def quality_after_pause(*args, **kwargs):
        pause("scoring", current["trial_id"])
        return quality(*args, **kwargs)

    def record_after_pause(self, trial_id, seconds):
        if seconds is not None:  # not a row recovered at the start of a resumed search
            pause("trial_end", trial_id)
        return record(self, trial_id, seconds)

    patch(hypermodel.GANHyperModel, "fit", fit_with_pauses)
    patch(metrics, "quality", quality_after_pause)
    patch(tuner.GANTuner, "_record", record_after_pause)
