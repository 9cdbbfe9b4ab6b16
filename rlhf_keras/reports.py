"""Pictures and reports: sample grids, the search's rewards and policy, a run's report.md.

The evidence room of the project. Everything here reads arrays or the files a search leaves in
its run directory (`results.json`, `oracle.json`, `search.json`, `best_model.keras`), so a
report can be made from the directory alone, at any time, also while the search runs:

    python -m rlhf_keras.reports rlhf_runs/rlhf      # writes rlhf_runs/rlhf/report.md

All figures are drawn with matplotlib's Agg backend at fixed pixel sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REWARDS_PNG = "report_rewards.png"
POLICY_PNG = "report_policy.png"
LINEAGE_PNG = "report_lineage.png"
SCHEDULE_PNG = "report_schedule.png"
SAMPLES_PNG = "report_samples.png"
REPORT_MD = "report.md"
REWARDS_SIZE = (640, 400)  # pixels (width, height) of plot_rewards' figure
POLICY_SIZE = (800, 600)  # pixels of plot_policy's figure
_DPI = 80
_MIN_OBJECTIVES = ("fid", "d_loss", "g_loss")  # the tuner minimises these, maximises others


def _pyplot() -> Any:
    """pyplot, on the Agg backend unless the user already chose one (a notebook's inline)."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")  # no display needed: figures are only saved
    import matplotlib.pyplot as plt

    return plt


def as_images(samples: np.ndarray) -> np.ndarray | None:
    """Samples as `(n, h, w, c)` images in [-1, 1], or None when they are not images.

    Flat samples whose size is a perfect square (784 -> 28x28) are treated as grayscale images.
    """
    samples = np.asarray(samples)
    if samples.ndim == 4:
        return samples
    if samples.ndim == 3:
        return samples[..., None]
    if samples.ndim == 2 and samples.shape[1] > 3:
        side = math.isqrt(samples.shape[1])
        if side * side == samples.shape[1]:
            return samples.reshape(-1, side, side, 1)
    return None


def save_samples(
    samples: np.ndarray,
    path: str | os.PathLike,
    real: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Writes a PNG: a grid of generated images, or generated points over the real ones.

    Args:
        samples: Generated samples, `(n, *data_shape)`.
        path: Where to write the PNG.
        real: Real samples to draw beneath 2-D points (ignored for images).
        title: Optional figure title.

    Returns:
        The path written.
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = as_images(samples)
    if images is not None:
        n = min(len(images), 64)
        cols = min(8, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image in zip(axes.flat, images[:n], strict=False):
            image = (np.clip(image, -1.0, 1.0) + 1.0) / 2.0
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
        fig.subplots_adjust(wspace=0.05, hspace=0.05)
    else:
        points = np.asarray(samples).reshape(len(samples), -1)
        fig, ax = plt.subplots(figsize=(5, 5))
        if real is not None:
            real = np.asarray(real).reshape(len(real), -1)
            ax.scatter(real[:, 0], real[:, 1], s=2, c="tab:blue", alpha=0.3, label="real")
        ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
        ax.set_aspect("equal")
        ax.legend(loc="upper right")
    if title:
        fig.suptitle(title)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)  # a reader never sees a half-written PNG
    return path


# ------------------------------------------------------------------------------- figures




def _save_figure(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=_DPI)  # no bbox_inches="tight": the pixel size stays as documented
    _pyplot().close(fig)
    os.replace(tmp, path)
    return path


def best_so_far(rewards: Sequence[float]) -> np.ndarray:
    """Running maximum of rewards (higher is better), in trial order."""
    values = np.asarray(rewards, dtype="float64")
    if values.size == 0:
        return values
    return np.maximum.accumulate(np.where(np.isfinite(values), values, -np.inf))


def plot_rewards(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    objective: str | None = None,
) -> Path:
    """Plots each trial's reward and the best reward so far, against the trial number.

    Args:
        rows: `results.json` rows (`trial_id`, `status`, `reward`, `score`), in the order the
            trials ended. The reward is the score signed so that higher is better (the
            oracle's penalty for failed trials).
        path: Where to write the PNG (`REWARDS_SIZE` pixels).
        objective: The objective's name, for the axis label.

    Returns:
        The path written.

    Raises:
        ValueError: If no row has a reward.
    """
    rewards = [_number(row.get("reward")) for row in rows]
    if not any(math.isfinite(r) for r in rewards):
        raise ValueError(
            "No trial has a reward yet, so there is nothing to plot; wait for the first trial "
            "to end (results.json rows get a 'reward' when the policy learns from them)."
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(REWARDS_SIZE[0] / _DPI, REWARDS_SIZE[1] / _DPI))
    x = np.arange(1, len(rows) + 1)
    failed = np.array([row.get("status") != "COMPLETED" for row in rows])
    values = np.asarray(rewards)
    ax.plot(x, best_so_far(values), drawstyle="steps-post", color="tab:blue", lw=2,
            label="best so far")
    ax.scatter(x[~failed], values[~failed], color="tab:green", zorder=3, label="trial")
    if failed.any():
        ax.scatter(x[failed], values[failed], color="tab:red", marker="x", zorder=3,
                   label="failed (penalty)")
    ax.set_xlabel("trial")
    sign = "-" if objective in _MIN_OBJECTIVES else ""
    ax.set_ylabel(f"reward ({sign}{objective})" if objective else "reward")
    ax.set_title("Reward per trial and best so far")
    ax.set_xticks(x if len(x) <= 20 else np.linspace(1, len(x), 10).round().astype(int))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    return _save_figure(fig, Path(path))


def _is_gaussian(dist: Mapping[str, Any]) -> bool:
    return set(map(str, dist)) == {"mean", "std"}


def policy_matrix(
    policy_history: Sequence[Mapping[str, Any]],
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Turns `oracle.policy_history` into arrays: choice probabilities and Gaussian moments.

    Args:
        policy_history: Snapshots `{"trial_id", "update", "policy": {key: dist}, ...}`, one per
            policy update (as in `oracle.policy_history` or the run's oracle.json).

    Returns:
        `(labels, probs, gaussians)`: `labels[i]` is `"key=value"` for row `i` of `probs`
        (`(choices, updates)`, NaN where a hyperparameter did not exist yet), and
        `gaussians[key]` is a `(updates, 2)` array of mean and std in the value's units.
    """
    labels: list[str] = []
    gaussian_keys: list[str] = []
    for snapshot in policy_history:
        for key, dist in snapshot.get("policy", {}).items():
            if _is_gaussian(dist):
                if key not in gaussian_keys:
                    gaussian_keys.append(key)
                continue
            for value in dist:
                label = f"{key}={value}"
                if label not in labels:
                    labels.append(label)
    probs = np.full((len(labels), len(policy_history)), np.nan)
    gaussians = {key: np.full((len(policy_history), 2), np.nan) for key in gaussian_keys}
    index = {label: i for i, label in enumerate(labels)}
    for t, snapshot in enumerate(policy_history):
        for key, dist in snapshot.get("policy", {}).items():
            if _is_gaussian(dist):
                gaussians[key][t] = [float(dist["mean"]), float(dist["std"])]
            else:
                for value, p in dist.items():
                    probs[index[f"{key}={value}"], t] = float(p)
    return labels, probs, gaussians


def plot_policy(policy_history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Draws the policy over the updates: a heatmap of each choice's probability, and the
    mean +- std of each continuous hyperparameter.

    Args:
        policy_history: `oracle.policy_history` (or `reinforce.policy_history` in oracle.json).
        path: Where to write the PNG (`POLICY_SIZE` pixels).

    Returns:
        The path written.

    Raises:
        ValueError: If the history is empty.
    """
    if not policy_history:
        raise ValueError(
            "The policy history is empty: the policy has not learned from any trial yet. "
            "Make the plot after the first trial ends."
        )
    labels, probs, gaussians = policy_matrix(policy_history)
    if not labels and not gaussians:
        raise ValueError("The policy history holds no hyperparameters to draw.")
    plt = _pyplot()
    fig = plt.figure(figsize=(POLICY_SIZE[0] / _DPI, POLICY_SIZE[1] / _DPI))
    n_cont = len(gaussians)
    rows = (1 if labels else 0) + (1 if n_cont else 0)
    grid = fig.add_gridspec(rows, max(n_cont, 1), height_ratios=[2, 1] if rows == 2 else None)
    steps = len(policy_history)
    trial_ids = [str(s.get("trial_id", i + 1)) for i, s in enumerate(policy_history)]
    ticks = np.arange(steps) if steps <= 20 else np.linspace(0, steps - 1, 10).round().astype(int)
    if labels:
        ax = fig.add_subplot(grid[0, :])
        image = ax.imshow(np.ma.masked_invalid(probs), aspect="auto", cmap="viridis",
                          vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
        ax.set_xticks(ticks, [trial_ids[i] for i in ticks], fontsize=8)
        ax.set_xlabel("after trial")
        ax.set_title("Policy: probability of each choice")
        # Lines between hyperparameters, so each block of choices reads as one distribution.
        keys = [label.split("=", 1)[0] for label in labels]
        for i in range(1, len(keys)):
            if keys[i] != keys[i - 1]:
                ax.axhline(i - 0.5, color="white", lw=1.5)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    for j, (key, moments) in enumerate(gaussians.items()):
        ax = fig.add_subplot(grid[rows - 1, j])
        x = np.arange(steps)
        mean, std = moments[:, 0], moments[:, 1]
        ax.plot(x, mean, color="tab:blue")
        low = np.maximum(mean - std, mean * 0.05) if np.nanmin(mean) > 0 else mean - std
        ax.fill_between(x, low, mean + std, color="tab:blue", alpha=0.25)
        positive = np.nanmin(mean) > 0
        if positive and np.nanmax(mean + std) / np.nanmin(low) > 20:
            ax.set_yscale("log")  # learning rates: log scale, as they are sampled
        ax.set_title(f"{key}: mean +- std", fontsize=9)
        ax.set_xticks(ticks, [trial_ids[i] for i in ticks], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return _save_figure(fig, Path(path))


# ------------------------------------------------------------------------------- the report


def find_run(path: str | os.PathLike) -> Path:
    """The run directory `path` names: itself, or the one run inside a `--dir` folder.

    A folder holding several runs is left as it is (`read_run` then lists them).
    """
    path = Path(path)
    if not (path / "results.json").is_file() and path.is_dir():
        nested = [p.parent for p in path.glob("*/results.json")]
        if len(nested) == 1:
            return nested[0]
    return path


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads what a search left in its run directory.

    Args:
        run_dir: The run's folder (`directory/project_name`, e.g. `rlhf_runs/rlhf`).

    Returns:
        `{"rows", "policy_history", "objective", "direction", "search"}`: the results.json
        rows, the policy snapshots (empty when oracle.json has none), the objective's name,
        `"min"` or `"max"`, and search.json (empty if absent).

    Raises:
        ValueError: If the folder is not a run directory or a file is corrupt.
    """
    run_dir = Path(run_dir)
    results = run_dir / "results.json"
    if not results.is_file():
        hint = ""
        if run_dir.is_dir():
            nested = sorted(p.parent.name for p in run_dir.glob("*/results.json"))
            if nested:
                hint = f" It holds the run(s) {', '.join(nested)}: pass {run_dir / nested[0]}."
        raise ValueError(
            f"{run_dir} is not a run directory (no results.json).{hint} Pass the folder a "
            "search wrote, directory/project_name, e.g. rlhf_runs/rlhf."
        )
    rows = _read_json(results)
    if not isinstance(rows, list):
        raise ValueError(f"{results} should hold a list of trial rows; restore it or rerun.")
    search = _read_json(run_dir / "search.json") if (run_dir / "search.json").is_file() else {}
    oracle = _read_json(run_dir / "oracle.json") if (run_dir / "oracle.json").is_file() else {}
    history = oracle.get("reinforce", {}).get("policy_history", []) if oracle else []
    trajectory = oracle.get("trajectory", {}) if oracle else {}
    objective = search.get("objective") or "score"
    return {
        "rows": rows,
        "policy_history": history,
        "trajectory": trajectory,
        "objective": objective,
        "direction": _direction(rows, objective),
        "search": search,
    }


def best_row(rows: Sequence[Mapping[str, Any]], direction: str = "max") -> dict | None:
    """The completed row with the best score (None if no trial completed with a score)."""
    done = [r for r in rows if r.get("status") == "COMPLETED"
            and math.isfinite(_number(r.get("score")))]
    if not done:
        return None
    pick = max if direction == "max" else min
    return dict(pick(done, key=lambda r: _number(r["score"])))


def best_schedule(trajectory: Mapping[str, Any], best: Mapping[str, Any] | None
                  ) -> list[dict[str, Any]]:
    """The path of segments from a birth to the best trial, from oracle.json's decisions."""
    decisions = trajectory.get("decisions", {})
    trial_id = None if best is None else str(best["trial_id"])
    path = []
    while trial_id is not None and trial_id in decisions:
        decision = decisions[trial_id]
        path.append({"trial_id": trial_id, "generation": decision["generation"],
                     **{k: v for k, v in decision["values"].items() if not k.startswith("tuner/")}})
        trial_id = decision["parent"]
    return path[::-1]


def plot_lineage(trajectory: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """One row per member, one column per segment; a line joins each segment to its parent,
    red where a member took over a better member's model. Colour: the segment's reward."""
    decisions = trajectory.get("decisions", {})
    if not decisions:
        raise ValueError("no segment has started yet")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    rewards = [d.get("reward") for d in decisions.values() if d.get("reward") is not None]
    low, high = (min(rewards), max(rewards)) if rewards else (0.0, 1.0)
    for decision in decisions.values():
        x, y = decision["generation"], decision["member"]
        parent = decision.get("parent")
        if parent is not None and parent in decisions:
            px, py = decisions[parent]["generation"], decisions[parent]["member"]
            copied = decision.get("copied_from") is not None
            ax.plot([px, x], [py, y], color="tab:red" if copied else "0.6",
                    lw=2 if copied else 1, zorder=1)
        reward = decision.get("reward")
        shade = 0.5 if reward is None or high == low else (reward - low) / (high - low)
        ax.scatter([x], [y], c=[[1 - shade, shade, 0.3]], s=40, zorder=2)
    ax.set_xlabel("segment")
    ax.set_ylabel("member")
    ax.set_title("Lineage (red: took over a better member; green dots: larger reward)")
    ax.set_yticks(sorted({d["member"] for d in decisions.values()}))
    return _save_figure(fig, Path(path))


def fixed_values(trajectory: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters with one value in every segment of the run (a `Fixed` one, such as the
    default space's `g_ema`): nothing was chosen for them."""
    rows = [d["values"] for d in trajectory.get("decisions", {}).values()]
    if not rows:
        return {}
    return {name: value for name, value in rows[0].items() if not name.startswith("tuner/")
            and all(row.get(name) == value for row in rows)}


def plot_schedule(schedule: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                  fixed: Mapping[str, Any] | None = None) -> Path:
    """The best lineage's hyperparameters per segment: learning rates as log10, others as is.
    Those in `fixed` (see `fixed_values`) get no panel; the title names them and their values."""
    if not schedule:
        raise ValueError("no completed segment yet")
    fixed = dict(fixed or {})
    names = [k for k in schedule[0] if k not in ("trial_id", "generation", *fixed)
             and isinstance(schedule[0][k], (int, float))]
    if not names:
        raise ValueError("every hyperparameter was fixed: no schedule to draw")
    plt = _pyplot()
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.6 * len(names) + 0.6), sharex=True,
                             squeeze=False)
    steps = [row["generation"] for row in schedule]
    for ax, name in zip(axes[:, 0], names, strict=True):
        values = [float(row[name]) for row in schedule]
        if name.endswith("lr"):
            values, name = [math.log10(v) for v in values], f"log10 {name}"
        ax.step(steps, values, where="post", marker="o")
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel("segment")
    title = "Hyperparameters of the best lineage, segment by segment"
    if fixed:
        same = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                         for k, v in fixed.items())
        title += f"\n(one value throughout the run: {same})"
    fig.suptitle(title)
    return _save_figure(fig, Path(path))


def write_report(run_dir: str | os.PathLike, n_samples: int = 64, seed: int = 0) -> Path:
    """Writes `run_dir/report.md` with the run's pictures, results table and best values.

    Pictures (beside the report): `report_samples.png` (samples of `best_model.keras`, drawn
    with `seed`), `report_rewards.png` (reward per trial, best so far) and `report_policy.png`
    (the policy over the updates). A picture that cannot be made yet (no finished trial, no
    best model) is replaced by a line saying why. Earlier report files are replaced atomically.

    Args:
        run_dir: The run's folder (`directory/project_name`).
        n_samples: Samples in the sample picture.
        seed: Seed of the samples' latent vectors.

    Returns:
        The path of report.md.

    Raises:
        ValueError: If `run_dir` is not a run directory or its files are corrupt.
    """
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    rows, objective, direction = run["rows"], run["objective"], run["direction"]
    lines = [f"# {report_title(run['search'], run_dir)}", ""]
    data_name = run["search"].get("data")
    reward = ("the quality a segment added to its parent's (a birth: the quality it reached), "
              if run["trajectory"] else ("-" if direction == "min" else "") + f"{objective}, ")
    lines.append(
        f"{len(rows)} trial(s)" + (f" on `{data_name}`" if data_name else "")
        + f"; objective `{objective}` ({direction}imise); reward = {reward}"
        "failed trials get a penalty. Trials are numbered by their keras-tuner trial id, "
        "as in results.json and TensorBoard."
    )
    lines.append("")
    if objective == "fid":
        lines += [FID_REFERENCE, ""]

    best = best_row(rows, direction)
    lines += ["## Best trial", ""]
    if best is None:
        lines += ["No trial has completed with a finite score yet.", ""]
    else:
        lines += [f"Trial {best['trial_id']}: {objective} = {_fmt(best.get('score'))}.", "",
                  "| hyperparameter | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in best.get("values", {}).items()]
        lines.append("")

    lines += ["## Pictures", ""]
    for title, make in (
        ("Samples of the best model", lambda: _samples_png(run_dir, run, n_samples, seed)),
        ("Reward per trial", lambda: plot_rewards(rows, run_dir / REWARDS_PNG, objective)),
        ("Policy over the search", lambda: plot_policy(run["policy_history"],
                                                       run_dir / POLICY_PNG)),
    ) if not run["trajectory"] else (
        ("Samples of the best model", lambda: _samples_png(run_dir, run, n_samples, seed)),
        ("Lineage: which member took over from which, and when",
         lambda: plot_lineage(run["trajectory"], run_dir / LINEAGE_PNG)),
        ("The best lineage's hyperparameters over training",
         lambda: plot_schedule(best_schedule(run["trajectory"], best), run_dir / SCHEDULE_PNG,
                               fixed=fixed_values(run["trajectory"]))),
    ):
        try:
            png = make()
            lines += [f"![{title}]({png.name})", ""]
        except ValueError as err:  # not available yet: say why instead of failing the report
            lines += [f"*{title}: not available ({err})*", ""]

    lines += ["## Trials", ""]
    lines += _results_table(rows)
    if (run_dir / "logs").is_dir():
        lines += ["", f"TensorBoard: `tensorboard --logdir {run_dir / 'logs'}`"]
    path = run_dir / REPORT_MD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


FID_REFERENCE = (
    "FID is measured in the feature space of the project's MNIST classifier "
    "(`rlhf_keras/assets/mnist_features.keras`) with 2,000 samples against 2,000 real images; "
    "two disjoint sets of 2,000 real MNIST test images score 1.7 +- 0.2 (the floor), and the "
    "articles' MLP trained with its defaults collapses to about 240 within 4,000 steps."
)


def report_title(search: Mapping[str, Any], run_dir: Path) -> str:
    """What was searched, e.g. "Trajectory search of g_lr, d_lr, beta_1 on mnist"."""
    if not search:
        return f"Search report: {run_dir.name}"
    strategy = str(search.get("strategy", "oneshot"))
    kind = {"trajectory": "Trajectory search", "oneshot": "One-shot search"}.get(strategy,
                                                                                 "Search")
    names = ", ".join(search.get("search_space", [])) or "the default space"
    data = search.get("data", "?")
    budget = search.get("budget_steps")
    steps = f", {budget:,} training steps" if isinstance(budget, int) else ""
    return f"{kind} of {names} on {data}{steps} ({run_dir.name})"


def _samples_png(run_dir: Path, run: dict[str, Any], n: int, seed: int) -> Path:
    model_path = run_dir / "best_model.keras"
    if not model_path.is_file():
        raise ValueError("no best_model.keras yet")
    from rlhf_keras.gan import load_gan

    gan = load_gan(model_path)
    samples = gan.generate(n if as_images(np.zeros((1, *gan.data_shape))) is not None
                           else max(n, 1000), seed=seed)
    real = None
    data_name = run["search"].get("data")
    if as_images(samples) is None and data_name:
        from rlhf_keras import data

        try:
            x, _, _ = data.load_arrays(data_name, seed=seed, shape=gan.data_shape)
            real = x[np.random.default_rng(seed).permutation(len(x))[:2000]]
        except data.DataError:
            real = None  # the picture is still useful without the real points beneath
    best = best_row(run["rows"], run["direction"])
    label = "best model"
    if best is not None:
        label = f"best model: trial {best['trial_id']}, {run['objective']} {_fmt(best['score'])}"
    return save_samples(samples, run_dir / SAMPLES_PNG, real=real,
                        title=f"{label} (latent seed {seed})")


def _results_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [k for k in row.get("values", {}) if k not in names]
    header = ["trial", "status", "score", "reward", "seconds", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        values = row.get("values", {})
        cells = [str(row.get("trial_id")), str(row.get("status")), _fmt(row.get("score")),
                 _fmt(row.get("reward")), _fmt(row.get("seconds")),
                 *(_fmt(values.get(k)) for k in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _direction(rows: Sequence[Mapping[str, Any]], objective: str) -> str:
    """min or max: read off the rows (reward = -score when minimising), else from the name."""
    for row in rows:
        score, reward = _number(row.get("score")), _number(row.get("reward"))
        if row.get("status") == "COMPLETED" and math.isfinite(score) and score != 0:
            if math.isfinite(reward):
                return "min" if math.isclose(reward, -score) else "max"
    return "min" if objective in _MIN_OBJECTIVES else "max"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or rerun the search.") \
            from err


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rlhf_keras.reports RUN_DIR`: write RUN_DIR/report.md and its pictures."""
    parser = argparse.ArgumentParser(
        prog="python -m rlhf_keras.reports",
        description="Write report.md (samples, rewards, policy heatmap, results) for a run.",
    )
    parser.add_argument("run_dir", help="the run's folder, e.g. rlhf_runs/rlhf")
    parser.add_argument("--samples", type=int, default=64, help="samples in the picture")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir, n_samples=args.samples, seed=args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
