"""`tm sample`: draw samples from a trained run into a .npz (x, optional y) with counts and timing."""

from __future__ import annotations

import argparse

from transition_matching.commands._sampling import add_sampling_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sampling_arguments(parser, n=1000)
    parser.add_argument("--class", dest="label", type=int, help="draw every sample of this class")
    parser.add_argument("--no-cache", action="store_true", help="ARTM/FHTM: recompute instead of a KV cache")
    parser.add_argument("--out", default="samples.npz", help="output .npz [samples.npz]")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    import numpy as np

    from runkit.io import atomic_write_bytes
    from transition_matching.commands._sampling import open_for_sampling
    from transition_matching.runs import default_labels, draw_samples

    loaded, opts = open_for_sampling(args)
    opts = dataclasses.replace(opts, cache=not args.no_cache)
    labels = default_labels(loaded, args.n, args.label)
    s = draw_samples(loaded, args.n, opts, labels, args.seed)
    arrays = {"x": s.raw.astype(np.float32)}
    if labels is not None:
        arrays["y"] = labels.numpy()
    out = Path(args.out)
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {args.n} samples {tuple(s.raw.shape[1:])} to {out}: {opts.steps} steps x {opts.head_steps} head "
          f"steps, {s.backbone_evals} backbone + {s.head_evals} head evaluations per batch, {s.seconds:.2f} s")  # fmt: skip
    return 0
