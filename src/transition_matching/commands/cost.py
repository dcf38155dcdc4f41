"""`tm cost`: what one backbone pass costs against one head step per token (FLOPs, parameters, wall time)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transition_matching.config import add_config_arguments

    parser.add_argument(
        "--preset", help="a preset name under configs/tm/ (e.g. dtm-digits-paper) or a .toml path"
    )
    parser.add_argument("--rows", type=int, default=1024, help="tokens per timed pass [1024]")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repeats, fastest counts (0: FLOPs only) [5]"
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from runkit.errors import UserError
    from transition_matching.commands.train import config_overrides
    from transition_matching.config import make_config, resolve
    from transition_matching.cost import config_pass_cost
    from transition_matching.trainer import load_training_data

    if args.rows < 1 or args.repeats < 0:
        raise UserError(f"--rows must be >= 1 and --repeats >= 0, got {args.rows} and {args.repeats}")
    cfg = make_config(args.preset, **config_overrides(args))
    data = load_training_data(cfg)
    cfg = resolve(cfg, data.n_tokens)
    torch.set_num_threads(max(1, cfg.threads))
    cost = config_pass_cost(cfg, data, args.rows, args.repeats)
    if args.json:
        print(json.dumps({"method": cfg.method, "data": cfg.data, **cost.as_dict()}, indent=2))
    else:
        print(f"{cfg.method} on {cfg.data} ({cfg.backbone} {cfg.width} x {cfg.depth}, head {cfg.head_width} x "
              f"{cfg.head_depth}, {data.n_tokens} token{'s' if data.n_tokens > 1 else ''} of {data.token_dim}): "
              f"{cost.describe()}")  # fmt: skip
    return 0
