"""The `rlhf-keras` command line: train a GAN, fine-tune it with RLHF, evaluate and sample."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=None,
        help="digits (embedded), ring8, grid25, a TFDS name (mnist, ...), a folder of IDX files "
        "or an .npz file. Default: MNIST from TFDS if available, else digits.",
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
    train.add_argument("--g-lr", type=float, default=2e-4)
    train.add_argument("--d-lr", type=float, default=2e-4)
    train.add_argument(
        "--loss", default="non_saturating", choices=["non_saturating", "minimax", "hinge", "reward"]
    )
    train.add_argument("--out", default="runs/train", help="Output directory.")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])

    finetune = sub.add_parser(
        "finetune", help="Search learning rates and widths with the REINFORCE policy (RLHF)."
    )
    _add_data_args(finetune)
    finetune.add_argument("--trials", type=int, default=8, help="Number of GANs to train.")
    finetune.add_argument("--epochs-per-trial", type=int, default=10)
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
    sample.add_argument("--out", required=True, help="FILE.npz, or a directory for PNG grids.")
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
        "run", help="A run folder (finetune's --dir/--project), e.g. rlhf_runs/rlhf."
    )
    report.add_argument("--samples", type=int, default=64, help="Samples in the grid.")
    report.add_argument("--seed", type=int, default=0)
    return parser


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
    import keras

    from rlhf_keras import architectures, data
    from rlhf_keras.gan import GAN
    from rlhf_keras.metrics import quality

    keras.utils.set_random_seed(args.seed)
    # Load first: a wrong source fails here, before any model is built.
    _, info = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    shape = _model_data_shape(args.arch, info.shape)
    dataset, info = data.load(args.data, batch_size=args.batch_size, seed=args.seed, shape=shape)
    generator, discriminator = architectures.build(args.arch, shape, latent_dim=args.latent_dim)
    gan = GAN(generator, discriminator, latent_dim=args.latent_dim, seed=args.seed)
    gan.compile(
        g_optimizer=keras.optimizers.Adam(args.g_lr, beta_1=0.5),
        d_optimizer=keras.optimizers.Adam(args.d_lr, beta_1=0.5),
        loss=args.loss,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"Training the '{args.arch}' GAN on {info.name} ({info.size} examples of shape "
        f"{info.shape}) for {args.epochs} epochs."
    )
    gan.fit(
        dataset,
        epochs=args.epochs,
        verbose=args.verbose,
        shuffle=False,  # the dataset is already shuffled, with the seed
        callbacks=[
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
        ],
    )
    model_path = out / "model.keras"
    gan.save(model_path)
    _print_metrics(quality(gan, info.name if args.data is None else args.data, seed=0))
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


def finetune(args: argparse.Namespace) -> int:
    for name in ("trials", "epochs_per_trial", "batch_size", "latent_dim"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    from rlhf_keras import architectures, data
    from rlhf_keras.finetune import RLHF
    from rlhf_keras.gan import GAN

    _, info = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    source = info.name if args.data is None else args.data
    shape = _model_data_shape(args.arch, info.shape)
    rlhf = RLHF(
        max_trials=args.trials,
        epochs_per_trial=args.epochs_per_trial,
        batch_size=args.batch_size,
        data=source,
        directory=args.dir,
        project_name=args.project,
        overwrite=args.overwrite,
        seed=args.seed,
        verbose=args.verbose,
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
    samples_path = _save_samples(
        best, source, info, rlhf.project_dir / "best_samples.png", args.seed
    )
    print(f"Best hyperparameters: {rlhf.best_hyperparameters.values}")
    print(f"Best model:   {rlhf.best_model_path}")
    print(f"Samples:      {samples_path}")
    print(f"Results:      {rlhf.project_dir / 'results.json'}")
    print(f"TensorBoard:  tensorboard --logdir {rlhf.project_dir / 'logs'}")
    return 0


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

    gan = load_gan(args.model, safe_mode=not args.unsafe)
    values = measure_all(gan, args.data, n=args.n, seed=args.seed)
    print(f"{args.model} against {args.data}:")
    _print_metrics(values)
    return 0


def report(args: argparse.Namespace) -> int:
    from rlhf_keras.reports import write_report

    _positive("--samples", args.samples)
    print(f"Report: {write_report(args.run, n_samples=args.samples, seed=args.seed)}")
    return 0


def sample(args: argparse.Namespace) -> int:
    import numpy as np

    from rlhf_keras.gan import load_gan
    from rlhf_keras.reports import as_images, save_samples

    _positive("--n", args.n)
    out = Path(args.out)
    if out.suffix and out.suffix != ".npz":
        raise ValueError(f"--out must be a .npz file or a directory, got {out}.")
    gan = load_gan(args.model, safe_mode=not args.unsafe)
    samples = gan.generate(args.n, seed=args.seed)
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, x=samples)
        print(f"Wrote {len(samples)} samples of shape {samples.shape[1:]} to {out}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "samples.npz", x=samples)
    if as_images(samples) is None:
        save_samples(samples, out / "samples.png")
    else:
        for start in range(0, len(samples), 64):
            save_samples(samples[start : start + 64], out / f"samples_{start // 64:03d}.png")
    print(f"Wrote {len(samples)} samples to {out} (samples.npz and PNG grids)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rlhf-keras` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
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
    except RuntimeError as err:  # e.g. every trial diverged, or the chief can't listen
        print(f"rlhf-keras: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # finetune has already said what was saved and how to resume.
        print("rlhf-keras: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
