"""`spiral warmup`: only the format warm-up (rejection-sampled fine-tuning on the policy's own valid moves).

The result is a run folder whose checkpoint `spiral train --model RUN_DIR` can start self-play from.
"""

from __future__ import annotations

import argparse

from spiral.commands import train as train_cmd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `spiral train`; the run stops after the warm-up and its evaluation."""
    train_cmd.add_arguments(parser)
    parser.set_defaults(out=None)


def run(args: argparse.Namespace) -> int:
    """Warm up, evaluate, save the checkpoint and print the valid rates before and after."""
    from runkit.errors import UserError

    if args.list_presets or args.help_settings:
        return train_cmd.run(args)
    if args.resume:
        raise UserError("spiral warmup cannot resume; run it again or use spiral train --resume")
    extra = ["run.steps=0"]
    if args.out is None:
        extra.append('run.out="runs/warmup"')
    settings, run_dir, _ = train_cmd.resolve(args, extra)
    if settings.warmup.rounds == 0:
        raise UserError("warmup.rounds is 0 in this preset; pass --warmup-rounds N")
    if args.print_config:
        import json

        print(json.dumps(settings.to_dict(), indent=2))
        return 0
    from spiral.training.trainer import Trainer

    trainer = Trainer(settings, run_dir)
    trainer.train()
    print(f"warm-up run: {run_dir.path}; start self-play from it with: spiral train --model {run_dir.path}")
    return 0
