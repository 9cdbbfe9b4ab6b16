"""The `rlhf-keras` command line: train a GAN, fine-tune it with RLHF, evaluate and sample."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

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
    from rlhf_keras.reports import save_samples

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
        callbacks=[
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
        ],
    )
    model_path = out / "model.keras"
    gan.save(model_path)
    real = None
    if info.kind == "points":
        real, _, _ = data.load_arrays(args.data, seed=args.seed)
        real = real[:2500]
    samples_path = save_samples(
        gan.generate(2500 if real is not None else 64, seed=args.seed),
        out / "samples.png",
        real=real,
    )
    print(f"Model:        {model_path}")
    print(f"Samples:      {samples_path}")
    print(f"TensorBoard:  tensorboard --logdir {out / 'logs'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rlhf-keras` console script."""
    args = build_parser().parse_args(argv)
    from rlhf_keras.data import DataError

    try:
        return {"train": train}[args.command](args)
    except (DataError, ValueError, TypeError) as err:
        print(f"rlhf-keras: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
