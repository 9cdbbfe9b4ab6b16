"""The `rlhf-keras` command line: train a GAN, fine-tune it with RLHF, evaluate and sample."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlhf_keras.gan import MAX_LATENT_DIM
from rlhf_keras.trajectory_oracle import BASELINES, REWARDS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=None,
        help="mnist or digits (embedded), ring8, grid25, a TFDS name, a folder of IDX files or "
        "an .npz file. Default: mnist (from TFDS when prepared locally, else the embedded test "
        "split).",
    )
    parser.add_argument(
        "--arch",
        default="seed",
        choices=["seed", "small", "dcgan"],
        help="seed: the first article's MLP; small: the second article's; dcgan.",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhf-keras", description="Tune Keras GANs with reinforcement learning."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="Train one GAN with fixed hyperparameters.")
    _add_data_args(train)
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--steps", type=int, default=None,
                       help="Train for exactly this many steps (batches) instead of --epochs: "
                       "the baseline to compare with `finetune --budget` at equal compute.")
    train.add_argument("--g-lr", type=float, default=2e-4)
    train.add_argument("--d-lr", type=float, default=2e-4)
    _add_g_ema_arg(train, "the saved GAN samples from", default=0.0)
    train.add_argument(
        "--loss", default="non_saturating", choices=["non_saturating", "minimax", "hinge", "reward"]
    )
    train.add_argument("--out", default="runs/train", help="Output directory.")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])

    finetune = sub.add_parser(
        "finetune", help="Search learning rates and widths with the REINFORCE policy (RLHF)."
    )
    _add_data_args(finetune)
    finetune.add_argument("--budget", type=int, default=None,
                          help="Total training steps of the whole search (all members and "
                          "segments). Default 20000 for the trajectory search.")
    finetune.add_argument("--strategy", default="trajectory", choices=["trajectory", "oneshot"],
                          help="trajectory: a population whose training a policy steers "
                          "segment by segment (default); oneshot: one choice per trial.")
    finetune.add_argument("--population", type=int, default=4,
                          help="Members trained side by side (trajectory).")
    finetune.add_argument("--segments", type=int, default=8,
                          help="Segments per member; the policy acts before each (trajectory).")
    finetune.add_argument("--final-population", type=int, default=None,
                          help="Members kept once half of the budget is spent; the best go on "
                          "and train longer (trajectory). Default: half of a --population "
                          "of 4 or more; equal to --population: no cut.")
    finetune.add_argument("--birth-population", type=int, default=None,
                          help="Members born; after one segment the best --population go on "
                          "(trajectory). Default: three times --population where the budget leaves "
                          "room; --birth-population equal to --population: no screening.")
    finetune.add_argument("--evaluations-per-segment", type=int, default=None, metavar="K",
                          help="Score each segment's GAN at K evenly spaced points and end the "
                          "segment at the best (weights and optimizer state); costs "
                          "evaluation time, not training steps (trajectory; default 1: at "
                          "its end only).")
    # Default None: the default search space's own g_ema (0.999), not a second copy of it.
    _add_g_ema_arg(finetune, "every trial's GAN samples from (g_ema, fixed in the space)",
                   default=None)
    finetune.add_argument("--d-lr-ratio", action="store_true",
                          help="Search the discriminator's learning rate as a multiple of the "
                          "generator's (d_lr_ratio, 0.05..20) instead of d_lr itself.")
    finetune.add_argument("--init-std", type=float, default=None,
                          help="How far the policy's first draws spread around the space's "
                          "defaults: the std of a continuous hyperparameter on its unit scale "
                          "(a learning rate's 1e-5..1e-2 is 3 decades; default 0.25).")
    finetune.add_argument("--schedule-step", type=float, default=None,
                          help="How far one move of the schedule policy shifts a learning "
                          "rate, on its unit scale (default 0.05: x1.41 on 1e-5..1e-2; 0.1: "
                          "x2) (trajectory).")
    finetune.add_argument("--policy-lr", type=float, default=None,
                          help="The policies' REINFORCE step size alpha (default 0.5; smaller "
                          "moves a policy's probabilities less per update).")
    finetune.add_argument("--elitist", action=argparse.BooleanOptionalAction, default=None,
                          help="The first member to be taken over copies the best segment of "
                          "the whole search when every member has fallen below it "
                          "(trajectory; default on).")
    finetune.add_argument("--plateau-decay", type=float, default=None,
                          help="With --elitist: a member that goes back to the best segment "
                          "trains on at its learning rates times this factor, once more per "
                          "return (0.5: halved, then quartered...) (trajectory; default: "
                          "unchanged).")
    finetune.add_argument("--birth-only", nargs="+", default=None, metavar="NAME",
                          help="Hyperparameters fixed when a member is born, never changed by "
                          "the schedule policy (trajectory; default: g_width d_width, which "
                          "change the networks' shapes).")
    finetune.add_argument("--balance", type=float, default=None, metavar="K",
                          help="The schedule policy's learning-rate moves also see g_lr "
                          "against d_lr, starting with weight K towards each other (0: "
                          "none), learned from there (trajectory; default off).")
    finetune.add_argument("--birth-at-defaults", action=argparse.BooleanOptionalAction,
                          default=None,
                          help="The first member is born at the search space's defaults, "
                          "where training without a search starts (trajectory; default on).")
    finetune.add_argument("--baseline", default=None, choices=BASELINES,
                          help="The schedule policy's REINFORCE baseline: this generation's "
                          "mean reward, a running mean of earlier generations', the median "
                          "of the last --population earlier rewards, or this generation's "
                          "mean reward not below zero (trajectory; default running).")
    finetune.add_argument("--reward", default=None, choices=REWARDS,
                          help="A segment's reward: its score minus its parent's, the log "
                          "of their ratio, or the difference with no loss larger than the "
                          "parent's score (trajectory; default capped).")
    finetune.add_argument("--trials", type=int, default=8, help="Trials (oneshot).")
    finetune.add_argument("--epochs-per-trial", type=int, default=10,
                          help="Epochs per trial (oneshot without --budget).")
    finetune.add_argument("--dir", default="rlhf_runs", help="Directory of the runs.")
    finetune.add_argument("--project", default="rlhf", help="Run folder inside --dir.")
    finetune.add_argument("--overwrite", action="store_true", help="Start the run afresh.")
    finetune.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])

    evaluate = sub.add_parser("evaluate", help="Measure a saved GAN's quality.")
    evaluate.add_argument("model", help="A .keras file written by train/finetune.")
    evaluate.add_argument("--data", default="digits", help="Real data to compare with.")
    evaluate.add_argument("--n", type=int, default=None, help="Samples (default 2,000/2,500).")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--unsafe",
        action="store_true",
        help="Load models with Lambda layers (only files you trust).",
    )

    sample = sub.add_parser("sample", help="Generate samples from a saved GAN.")
    sample.add_argument("model", help="A .keras file written by train/finetune.")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument(
        "--out", required=True,
        help="FILE.npz, or a directory: samples.npz and "
        "samples.png, a picture of the first samples.",
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--unsafe",
        action="store_true",
        help="Load models with Lambda layers (only files you trust).",
    )

    report = sub.add_parser(
        "report", help="Write RUN/report.md: samples, reward per trial, policy heatmap, results."
    )
    report.add_argument(
        "run", help="A run folder (finetune's --dir/--project, e.g. rlhf_runs/rlhf), or "
        "a --dir folder holding one run."
    )
    report.add_argument("--samples", type=int, default=64, help="Samples in the grid.")
    report.add_argument("--seed", type=int, default=0)
    return parser


def _add_g_ema_arg(parser: argparse.ArgumentParser, what: str, default: float | None) -> None:
    shown = "the default search space's, 0.999" if default is None else default
    parser.add_argument("--g-ema", type=float, default=default,
                        help=f"Momentum of a moving average of the generator's weights that {what} "
                        f"(0: none, as in the articles; default {shown}).")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise SystemExit(f"rlhf-keras: error: {name} must be > 0, got {value}.")


def _model_data_shape(arch: str, data_shape: Sequence[int]) -> tuple[int, ...]:
    """The MLPs work on flat vectors as in the articles; the DCGAN on images."""
    if arch == "dcgan":
        return tuple(data_shape)
    return (math.prod(data_shape),)


def train(args: argparse.Namespace) -> int:
    for name in ("epochs", "batch_size", "latent_dim", "g_lr", "d_lr"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.steps is not None:
        _positive("--steps", args.steps)
    from rlhf_keras.gan import check_ema_momentum

    _library_check("--g-ema", check_ema_momentum, args.g_ema)
    import keras

    from rlhf_keras import architectures, data
    from rlhf_keras.gan import GAN
    from rlhf_keras.metrics import evaluate

    keras.utils.set_random_seed(args.seed)
    # Load first: a wrong source fails here, before any model is built.
    _, info = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    shape = _model_data_shape(args.arch, info.shape)
    dataset, info = data.load(args.data, batch_size=args.batch_size, seed=args.seed, shape=shape)
    generator, discriminator = architectures.build(args.arch, shape, latent_dim=args.latent_dim)
    gan = GAN(generator, discriminator, latent_dim=args.latent_dim, seed=args.seed,
              ema_momentum=args.g_ema or None)
    gan.compile(
        g_optimizer=keras.optimizers.Adam(args.g_lr, beta_1=0.5),
        d_optimizer=keras.optimizers.Adam(args.d_lr, beta_1=0.5),
        loss=args.loss,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    length = f"{args.epochs} epochs" if args.steps is None else f"{args.steps} steps"
    print(
        f"Training the '{args.arch}' GAN on {info.name} ({info.size} examples of shape "
        f"{info.shape}) for {length}."
    )
    if args.steps is not None:
        # Exactly N batches, cycling through the data: compute comparable with a search budget.
        dataset = dataset.repeat().take(args.steps)
    gan.fit(
        dataset,
        epochs=1 if args.steps is not None else args.epochs,
        verbose=args.verbose,
        shuffle=False,  # the dataset is already shuffled, with the seed
        callbacks=[
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
        ],
    )
    model_path = out / "model.keras"
    gan.save(model_path)
    from rlhf_keras.metrics import MetricError

    try:
        _print_metrics(evaluate(gan, info.name if args.data is None else args.data, seed=0))
    except MetricError as err:  # e.g. 2-D points without known modes: trained, not measured
        print(f"Not measured: {err}")
    samples_path = _save_samples(gan, args.data, info, out / "samples.png", args.seed)
    print(f"Model:        {model_path}")
    print(f"Samples:      {samples_path}")
    print(f"TensorBoard:  tensorboard --logdir {out / 'logs'}")
    return 0


def _save_samples(gan: Any, source: Any, info: Any, path: Path, seed: int) -> Path:
    from rlhf_keras import data
    from rlhf_keras.reports import save_samples

    real = None
    if info.kind == "points":
        real = data.load_arrays(source if source is not None else info.name, seed=seed)[0][:2500]
    return save_samples(gan.generate(2500 if real is not None else 64, seed=seed), path, real=real)


def _print_metrics(values: dict[str, float]) -> None:
    width = max(len(name) for name in values)
    print("-" * (width + 14))
    for name, value in values.items():
        print(f"{name:<{width}}  {value:>12.4f}")
    print("-" * (width + 14))


def _library_check(flag: str, check: Callable[..., None], *values: Any) -> None:
    """Runs one of the library's argument checks, its ValueError as the CLI's error for `flag`."""
    try:
        check(*values)
    except ValueError as error:
        raise SystemExit(f"rlhf-keras: error: {flag}: {error}") from None


def finetune(args: argparse.Namespace) -> int:
    for name in ("trials", "epochs_per_trial", "batch_size", "latent_dim", "population",
                 "segments"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    for flag, value in (("--budget", args.budget),
                        ("--evaluations-per-segment", args.evaluations_per_segment)):
        if value is not None:
            _positive(flag, value)
    from rlhf_keras.policy import check_init_std, check_positive
    from rlhf_keras.schedule_policy import check_balance, check_step
    from rlhf_keras.trajectory_oracle import (
        check_birth_only,
        check_birth_population,
        check_final_population,
        check_plateau_decay,
    )

    _library_check("--final-population", check_final_population, args.final_population,
                   args.population)
    _library_check("--birth-population", check_birth_population, args.birth_population,
                   args.population, args.segments)
    from rlhf_keras.gan import check_ema_momentum

    _library_check("--g-ema", check_ema_momentum, args.g_ema)
    if args.init_std is not None:
        _library_check("--init-std", check_init_std, args.init_std)
    if args.schedule_step is not None:
        _library_check("--schedule-step", check_step, args.schedule_step)
    _library_check("--balance", check_balance, args.balance)
    if args.policy_lr is not None:
        _library_check("--policy-lr", check_positive, "learning_rate", args.policy_lr)
    # --elitist is on unless --no-elitist (TRAJECTORY_DEFAULTS).
    _library_check("--plateau-decay", check_plateau_decay, args.plateau_decay,
                   args.elitist is not False)
    if args.strategy != "trajectory":
        for flag, value in (("--schedule-step", args.schedule_step),
                            ("--elitist", args.elitist), ("--baseline", args.baseline),
                            ("--plateau-decay", args.plateau_decay),
                            ("--reward", args.reward), ("--birth-only", args.birth_only),
                            ("--balance", args.balance),
                            ("--evaluations-per-segment", args.evaluations_per_segment),
                            ("--birth-at-defaults", args.birth_at_defaults)):
            if value is not None:
                raise SystemExit(f"rlhf-keras: error: {flag}: only the trajectory strategy "
                                 "uses it; drop it or use --strategy trajectory.")
    from rlhf_keras import architectures, data
    from rlhf_keras.finetune import RLHF, check_balance_space
    from rlhf_keras.gan import GAN
    from rlhf_keras.hypermodel import default_search_space

    space_options = {} if args.g_ema is None else {"g_ema": args.g_ema or None}
    space = default_search_space(d_lr_ratio=args.d_lr_ratio, **space_options)
    if args.birth_only is not None:
        _library_check("--birth-only", check_birth_only, args.birth_only, space)
    _library_check("--balance", check_balance_space, args.balance, space)

    _, info = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    source = info.name if args.data is None else args.data
    shape = _model_data_shape(args.arch, info.shape)
    # Oracle options given on the command line; the others keep the library's defaults.
    oracle_options = {name: value for name, value in (
        ("init_std", args.init_std), ("step", args.schedule_step),
        ("learning_rate", args.policy_lr),
        ("elitist", args.elitist), ("plateau_decay", args.plateau_decay),
        ("baseline", args.baseline), ("reward", args.reward),
        ("birth_only", args.birth_only), ("balance", args.balance),
        ("birth_at_defaults", args.birth_at_defaults)) if value is not None}
    rlhf = RLHF(
        search_space=space,
        budget_steps=args.budget,
        strategy=args.strategy,
        population_size=args.population,
        segments=args.segments,
        final_population=args.final_population,
        birth_population=args.birth_population,
        evaluations_per_segment=args.evaluations_per_segment or 1,
        max_trials=args.trials,
        epochs_per_trial=args.epochs_per_trial,
        batch_size=args.batch_size,
        data=source,
        directory=args.dir,
        project_name=args.project,
        overwrite=args.overwrite,
        seed=args.seed,
        verbose=args.verbose,
        **oracle_options,
    )
    # After a Ctrl-C: the same command line resumes (never with --overwrite, which deletes).
    rlhf.resume_command = "rlhf-keras " + shlex.join(
        a for a in getattr(args, "argv", ["finetune"]) if a != "--overwrite"
    )
    generator, discriminator = architectures.build(args.arch, shape, latent_dim=args.latent_dim)
    # An untrained GAN: every trial initialises its own weights with its own seed.
    best = rlhf.finetune(GAN(generator, discriminator, latent_dim=args.latent_dim))
    print()
    _print_table(rlhf.results, rlhf.tuner.oracle.objective.name)
    from rlhf_keras.metrics import evaluate

    print(f"Best GAN ({_steps_text(rlhf)}), measured against {source}:")
    _print_metrics(evaluate(best, source, seed=0))
    samples_path = _save_samples(
        best, source, info, rlhf.project_dir / "best_samples.png", args.seed
    )
    print(f"Best hyperparameters: {rlhf.best_hyperparameters.values}")
    print(f"Best model:   {rlhf.best_model_path}")
    print(f"Samples:      {samples_path}")
    print(f"Results:      {rlhf.project_dir / 'results.json'}")
    print(f"TensorBoard:  tensorboard --logdir {rlhf.project_dir / 'logs'}")
    return 0


def _steps_text(rlhf: Any) -> str:
    if rlhf.total_steps is None:
        return f"{rlhf.max_trials} trials"
    return f"{rlhf.total_steps} training steps in all"


def _print_table(rows: list[dict[str, Any]], objective: str) -> None:
    names = list(rows[0]["values"]) if rows else []
    header = ["trial", *names, objective, "status", "seconds"]
    lines = [header]
    for row in rows:
        score = row["metrics"].get(objective)
        lines.append(
            [
                row["trial_id"],
                *(_short(row["values"].get(n)) for n in names),
                "-" if score is None else f"{score:.4g}",
                row["status"],
                "-" if row["seconds"] is None else f"{row['seconds']:.1f}",
            ]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(cell).rjust(w) for cell, w in zip(line, widths, strict=True)))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def evaluate(args: argparse.Namespace) -> int:
    from rlhf_keras.gan import load_gan
    from rlhf_keras.metrics import evaluate as measure_all

    if args.n is not None and not 2 <= args.n <= _MAX_EVALUATE_N:
        # The k-NN metrics grow with n squared: beyond this they take hours, for no precision.
        raise ValueError(f"--n must be between 2 and {_MAX_EVALUATE_N:,}, got {args.n}.")
    gan = load_gan(args.model, safe_mode=not args.unsafe)
    values = measure_all(gan, args.data, n=args.n, seed=args.seed)
    print(f"{args.model} against {args.data}:")
    _print_metrics(values)
    return 0


def report(args: argparse.Namespace) -> int:
    from rlhf_keras.reports import find_run, write_report
    from rlhf_keras.run_dir import check_state_files

    _positive("--samples", args.samples)
    run = find_run(args.run)  # the --dir folder of one run is taken for that run
    # A hand-edited state file is named here, not met as a KeyError halfway through the report.
    check_state_files(run, state_key=None)
    print(f"Report: {write_report(run, n_samples=args.samples, seed=args.seed)}")
    return 0


_MAX_EVALUATE_N = 100_000
_SAMPLE_BATCH_BYTES = 16 * 2**20  # noise and samples of one batch: bounded memory for any --n
_GRID_SAMPLES = 64  # a directory --out gets one grid picture of the first samples
_SCATTER_SAMPLES = 2500  # ... or a scatter of the first points


def sample(args: argparse.Namespace) -> int:
    from rlhf_keras.gan import load_gan
    from rlhf_keras.reports import as_images, save_samples

    _positive("--n", args.n)
    out = Path(args.out)
    if out.suffix and out.suffix != ".npz":
        raise ValueError(f"--out must be a .npz file or a directory, got {out}.")
    target = out if out.suffix == ".npz" else out / "samples.npz"
    gan = load_gan(args.model, safe_mode=not args.unsafe)
    shape = tuple(int(d) for d in gan.sample_shape)
    _check_room(target, args.n, shape)
    target.parent.mkdir(parents=True, exist_ok=True)
    first = _stream_samples(gan, args.n, args.seed, target, shape)
    if out.suffix == ".npz":
        print(f"Wrote {args.n} samples of shape {shape} to {out}")
        return 0
    is_images = as_images(first[:1]) is not None
    picture = save_samples(first[:_GRID_SAMPLES] if is_images else first, out / "samples.png")
    shown = f"the first {min(args.n, _GRID_SAMPLES if is_images else _SCATTER_SAMPLES)}"
    print(f"Wrote {args.n} samples of shape {shape} to {target}, and {shown} to {picture}")
    return 0


def _check_room(target: Path, n: int, shape: tuple[int, ...]) -> None:
    """Refuses, before anything is allocated or written, a file the disk can't hold."""
    import shutil

    need = n * math.prod(shape) * 4  # float32
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        raise ValueError(
            f"--n {n:,} samples of shape {shape} take {_size(need)} as float32, but {folder} "
            f"has {_size(free)} free. Pass a smaller --n, or an --out on a disk with room."
        )


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    return ""  # not reached


def _stream_samples(gan: Any, n: int, seed: int, target: Path, shape: tuple[int, ...]) -> Any:
    """Writes `n` samples to the .npz `target` batch by batch; returns the first few.

    The archive holds `x`, float32 `(n, *shape)`, as `np.savez` would (`np.load(path)["x"]`),
    but only one batch is ever in memory. It is written to a temporary file and renamed, so
    an interrupted run leaves no half-written samples file.
    """
    import zipfile

    import numpy as np

    batch = max(1, min(2048, _SAMPLE_BATCH_BYTES // (8 * gan.latent_dim + 4 * math.prod(shape))))
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    n_kept = 0
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("x.npy", "w", force_zip64=True) as member:
                header = {"descr": "<f4", "fortran_order": False, "shape": (n, *shape)}
                np.lib.format.write_array_header_1_0(member, header)
                for start in range(0, n, batch):
                    size = min(batch, n - start)
                    # Batches of one float64 stream, as GAN.generate draws them: the same
                    # seed gives the same samples as gan.generate(n, seed=seed).
                    z = rng.standard_normal((size, gan.latent_dim)).astype(np.float32)
                    x = np.ascontiguousarray(gan.generate(size, z=z), dtype="<f4")
                    member.write(x.tobytes())
                    if n_kept < _SCATTER_SAMPLES:
                        kept.append(x[: _SCATTER_SAMPLES - n_kept])
                        n_kept += len(kept[-1])
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return np.concatenate(kept)


# Sizes beyond these are typos, not experiments: refused before anything is allocated.
_MAX_SEED = 2**32 - 1


def _check_arguments(args: argparse.Namespace) -> None:
    """Validates arguments no command may start with, before anything is loaded or written."""
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"--seed must be between 0 and {_MAX_SEED}, got {seed}.")
    latent_dim = getattr(args, "latent_dim", None)
    if latent_dim is not None and latent_dim > MAX_LATENT_DIM:
        raise ValueError(
            f"--latent-dim {latent_dim:,} is too large: the generator's first layer alone would "
            f"hold {latent_dim:,} x its width weights. GANs use tens to hundreds (the articles "
            f"use 100); pass --latent-dim <= {MAX_LATENT_DIM:,}."
        )
    if args.command == "finetune":
        from rlhf_keras.run_dir import check_project_name

        check_project_name(args.project)


class _Terminated(KeyboardInterrupt):
    """A SIGTERM, raised where a Ctrl-C would be: the run stops the same way."""


def _on_sigterm(signum: int, frame: Any) -> None:
    # Route it through the SIGINT handler in force (RLHF's defers it while a trial is being
    # recorded), so a kill or a scheduler's stop ends a search as Ctrl-C does.
    global _terminated
    _terminated = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
    else:
        raise _Terminated


_terminated = False


def _os_error(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    what = err.strerror or str(err)
    return (
        f"{what}{where}. Check that the paths given exist, that a folder is not a file, "
        "that they can be written, and that the disk has room."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rlhf-keras` console script."""
    global _terminated
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    _terminated = False
    try:
        _check_arguments(args)
        commands = {
            "train": train,
            "finetune": finetune,
            "evaluate": evaluate,
            "sample": sample,
            "report": report,
        }
        return commands[args.command](args)
    except (ValueError, TypeError) as err:  # rlhf_keras.DataError is a ValueError
        print(f"rlhf-keras: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that can't be read or written: one line, no traceback
        print(f"rlhf-keras: error: {_os_error(err)}", file=sys.stderr)
        return 1
    except MemoryError as err:
        print(f"rlhf-keras: error: out of memory ({err}); use smaller sizes.", file=sys.stderr)
        return 1
    except RuntimeError as err:  # e.g. every trial diverged, or the chief can't listen
        print(f"rlhf-keras: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # finetune has already said what was saved and how to resume.
        if _terminated:
            print("rlhf-keras: terminated", file=sys.stderr)
            return 143  # 128 + SIGTERM, as a shell reports a process ended by it
        print("rlhf-keras: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
