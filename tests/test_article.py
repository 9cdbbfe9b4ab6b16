"""The first article's code, run as written in a fresh process: the project's front door.

Its own file so that pytest-xdist (`--dist loadfile`) can run it beside the rest of the RLHF
tests: it is the longest single test of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras

from rlhf_keras import GAN

ARTICLE_SNIPPET = """
import tensorflow as tf
from tensorflow.keras import layers
from rlhf import RLHF

generator = tf.keras.Sequential([
    layers.Dense(256, activation='relu'),
    layers.Dense(512, activation='relu'),
    layers.Dense(1024, activation='relu'),
    layers.Dense(784, activation='tanh'),
])

discriminator = tf.keras.Sequential([
    layers.Dense(1024, activation='relu'),
    layers.Dense(512, activation='relu'),
    layers.Dense(256, activation='relu'),
    layers.Dense(1, activation='sigmoid'),
])

gan = tf.keras.Sequential([generator, discriminator])

rlhf = RLHF()

rlhf.finetune(gan)
"""

CHECK = """
import json, math
best = rlhf.best_gan
samples = best.generate(8, seed=0)
print(json.dumps({"type": type(best).__name__, "shape": list(samples.shape),
                  "in_range": bool(abs(samples).max() <= 1.0),
                  "trials": len(rlhf.results), "best": rlhf.best_hyperparameters.values}))
"""



def test_the_first_articles_snippet_runs_as_written(tmp_path):
    """Acceptance: `from rlhf import RLHF; RLHF().finetune(gan)` on a fresh process, offline."""
    # The default search as written (4 members x 8 segments, each trained, scored and saved),
    # on a budget of one step a segment: the test checks the machinery, not the GAN's quality.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", RLHF_KERAS_OFFLINE="1",
               RLHF_KERAS_BUDGET_STEPS="32")
    script = tmp_path / "article.py"
    script.write_text(ARTICLE_SNIPPET + CHECK)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["type"] == "GAN" and report["shape"] == [8, 784] and report["in_range"]
    assert report["trials"] == 32  # 8 born, then 4 members x 6 segments
    assert set(report["best"]) == {"g_lr", "d_lr", "g_width", "d_width", "beta_1", "g_ema"}
    assert "[32/32]" in result.stdout and "objective fid (min)" in result.stdout
    assert "32 training steps" in result.stdout
    run = tmp_path / "rlhf_runs" / "rlhf"
    assert isinstance(keras.models.load_model(run / "best_model.keras"), GAN)
    assert len([d for d in (run / "logs").iterdir() if d.name.isdigit()]) == 32


def test_snippet_constant_matches_the_article():
    text = textwrap.dedent(ARTICLE_SNIPPET)
    assert "rlhf = RLHF()" in text and "rlhf.finetune(gan)" in text
