"""`spiral sft`: supervised fine-tuning on expert trajectories generated here (the paper's SFT baseline).

The game's optimal agent plays games; each of its turns becomes (the observation's prompt in the self-play
template, `\\boxed{move}`). The result is a run folder like `spiral train`'s (config.json, metrics.jsonl,
checkpoints/, eval/0_base and eval/1_after_sft, sft.json, report.html) whose checkpoint any agent spec,
`spiral eval league` or `spiral train --model RUN` takes.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as spiral train: steadier on a shared machine

FLAGS = {"seed": "run.seed", "out": "run.out", "model": "model.name", "threads": "run.threads",
         "expert_turns": "sft.expert_turns"}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral sft`."""
    parser.add_argument("--preset", default="sft-kuhn-smollm2", help="SFT preset name or a .toml path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting, e.g. --set sft.lr=3e-5 or --set model.lora=false (repeatable)")  # fmt: skip
    parser.add_argument("--expert-turns", type=int, help="expert turns to fine-tune on (sft.expert_turns)")
    parser.add_argument("--model", help="smollm2-135m-instruct, tiny, or a model/run folder (model.name)")
    parser.add_argument("--seed", type=int, help="seed of the expert games and the fine-tuning (run.seed)")
    parser.add_argument("--out", help="run folder (run.out)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (run.threads)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out that is not a run")
    parser.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    parser.add_argument("--list-presets", action="store_true", help="list the SFT presets and exit")


def overrides_from(args: argparse.Namespace) -> list[str]:
    """--set items plus the explicit flags as section.key=value (flags win)."""
    from spiral.commands.train import _quote

    out = list(args.overrides)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={_quote(key, value)}" if isinstance(value, str) else f"{key}={value}")
    return out


def run(args: argparse.Namespace) -> int:
    """Fine-tune, evaluate, save; print the before / after numbers and where the run is."""
    import json
    from dataclasses import asdict

    from spiral.sft import settings as sft_settings

    if args.list_presets:
        print("\n".join(sft_settings.preset_names()))
        return 0
    s, sft = sft_settings.load(args.preset, overrides_from(args))
    config = {**s.to_dict(), "sft": asdict(sft)}
    if args.print_config:
        print(json.dumps(config, indent=2))
        return 0
    from runkit.rundir import create_run_dir
    from spiral.sft.trainer import SFTTrainer
    from spiral.training.factories import check_settings

    check_settings(s)
    run_dir = create_run_dir(s.run.out, config, kind=sft_settings.KIND, force=args.force)
    trainer = SFTTrainer(s, sft, run_dir)
    last = trainer.train()
    print(f"run: {run_dir.path}  ({int(last['sft/expert_turns'])} expert turns, {int(last['sft/updates'])} updates; "
          f"checkpoint in {run_dir.checkpoints})")  # fmt: skip
    for key in ("heldout_loss", "agreement", "valid_rate"):
        if f"sft/{key}_after" in last:
            before = trainer.metrics_before.get(f"sft/{key}_before", float("nan"))
            print(f"  {key}: {before:.3f} -> {last[f'sft/{key}_after']:.3f}")
    for k in sorted(last):
        if k.startswith("eval/") and (
            k.endswith("win_rate") and "seat" not in k or k == "eval/exploitability"
        ):
            print(f"  {k} = {last[k]:.3f}")
    return 0
