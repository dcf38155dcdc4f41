"""`spiral train`: self-play RL (RAE + PPO) from a preset, with every setting overridable; `--resume RUN_DIR`."""

from __future__ import annotations

import argparse
import os

# Busy-waiting OpenMP threads collapse when the cores are shared (a decode step went from 0.2 s to 5 s with two
# threads on a loaded 2-core box); passive waiting avoids that. It must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FLAGS = {  # flag -> setting it overrides
    "steps": "run.steps",
    "seed": "run.seed",
    "out": "run.out",
    "model": "model.name",
    "env": "rollout.env_ids",
    "opponent": "rollout.opponent",
    "parse_mode": "rollout.parse_mode",
    "warmup_rounds": "warmup.rounds",
    "threads": "run.threads",
    "backend": "run.backend",
    "rollout_workers": "run.rollout_workers",
    "ray_address": "run.ray_address",
    "generator": "model.generator",
    "device": "model.device",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral train` (also used by `spiral warmup`)."""
    parser.add_argument("--preset", default="kuhn-smollm2-cpu",
                        help="built-in preset name or a .toml path (see --list-presets)")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any setting, e.g. --set learner.lr=1e-5 (repeatable)")  # fmt: skip
    parser.add_argument("--steps", type=int, help="self-play steps (run.steps)")
    parser.add_argument("--seed", type=int, help="seed (run.seed)")
    parser.add_argument("--out", help="run folder (run.out)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the run into a non-empty --out folder that is not a spiral run",
    )
    parser.add_argument(
        "--model", help="smollm2-135m-instruct, tiny, tiny:CHARS or a model/run folder (model.name)"
    )
    parser.add_argument("--env", help="comma-separated game ids (rollout.env_ids)")
    parser.add_argument("--opponent", help="self, or a fixed opponent spec such as random or optimal")
    parser.add_argument(
        "--parse-mode", choices=("strict", "lenient"), help="action parsing (rollout.parse_mode)"
    )
    parser.add_argument(
        "--warmup-rounds", type=int, help="format warm-up rounds before self-play (warmup.rounds)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (run.threads)")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (model.lora=true)")
    parser.add_argument("--backend", choices=("local", "ray"), help="where games are played (run.backend)")
    parser.add_argument("--rollout-workers", type=int, help="Ray rollout workers (run.rollout_workers)")
    parser.add_argument(
        "--async-rollout", action="store_true", help="ray: generate one step ahead (run.async_rollout=true)"
    )
    parser.add_argument("--ray-address", help="Ray cluster to join, e.g. auto (run.ray_address)")
    parser.add_argument(
        "--generator",
        choices=("fast", "hf", "vllm"),
        help="sampler: fast, hf or vllm (GPU) (model.generator)",
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (model.device)")
    parser.add_argument(
        "--topology", metavar="ROLLOUT:LEARNER",
        help="Ray rollout workers : data-parallel learner ranks under torchrun, e.g. 4:4 (run.topology)",
    )  # fmt: skip
    parser.add_argument("--nproc", type=int, help="learner ranks on this machine (--topology 0:N)")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    parser.add_argument("--list-presets", action="store_true", help="list the built-in presets and exit")
    parser.add_argument(
        "--help-settings", action="store_true", help="list every setting (section.key), its default and help"
    )


def overrides_from(args: argparse.Namespace) -> list[str]:
    """The --set items plus the explicit flags, as section.key=value strings (flags win)."""
    out = list(args.overrides)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}" if not isinstance(value, str) else f"{key}={_quote(key, value)}")
    if getattr(args, "lora", False):
        out.append("model.lora=true")
    if getattr(args, "async_rollout", False):
        out.append("run.async_rollout=true")
    topology = getattr(args, "topology", None)
    if getattr(args, "nproc", None) is not None:
        topology = f"0:{args.nproc}"
    if topology is not None:
        from spiral.device import parse_topology

        rollout, _ = parse_topology(topology)
        out.append(f'run.topology="{topology}"')
        if rollout:
            out += ["run.backend=ray", f"run.rollout_workers={rollout}"]
    return out


def _quote(key: str, value: str) -> str:
    """Pass text values through TOML safely (a list setting takes comma-separated text as it is)."""
    return value if key == "rollout.env_ids" else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def resolve(args: argparse.Namespace, extra: list[str] | None = None, create: bool = True):
    """(settings, run folder, resuming?) from the command line; without `create` no run folder is made."""
    from runkit.rundir import create_run_dir, open_run_dir
    from spiral.agents import endpoints
    from spiral.config import Settings, load_settings, set_value, validate

    if args.resume:
        run = open_run_dir(args.resume, kind="spiral")
        cfg = {k: v for k, v in run.read_config().items() if k != "kind"}
        s = Settings.from_dict(cfg)
        from spiral.config import parse_value

        for item in [*overrides_from(args), *(extra or [])]:
            key, _, raw = item.partition("=")
            set_value(s, key.strip(), parse_value(raw.strip()))
        s.run.out = str(run.path)
        validate(s)
        endpoints.check(s, [*overrides_from(args), *(extra or [])])  # a saved config names no host of its own
        return s, run, True
    s = load_settings(args.preset, [*overrides_from(args), *(extra or [])])
    endpoints.check(s, [*overrides_from(args), *(extra or [])])  # nor does a preset file
    if args.print_config or not create:
        return s, None, False
    from spiral.training.factories import check_settings

    check_settings(s)
    run = create_run_dir(s.run.out, s.to_dict(), kind="spiral", force=getattr(args, "force", False))
    return s, run, False


def settings_help() -> str:
    """Every setting as `section.key = default  help`."""
    import dataclasses

    from spiral.config import SECTIONS

    lines = []
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            lines.append(f"{name}.{f.name} = {default!r}\n    {f.metadata.get('help', '')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Train; print where the run, its plots and its report are."""
    import json
    import sys

    from runkit.errors import UserError
    from spiral.config import preset_names
    from spiral.device import parse_topology

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    if args.help_settings:
        print(settings_help())
        return 0
    from runkit.distributed import World
    from spiral.training import distributed

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # a learner rank under torchrun
        world = distributed.init_world()
        if not world.main:
            return _follow(world)
        try:
            settings, run_dir, resume = resolve(args)
        except UserError as e:
            distributed.broadcast(("error", str(e)))
            raise
        found = run_dir.latest_checkpoint() if resume else None
        distributed.broadcast(
            ("start", settings.to_dict(), str(run_dir.path), str(found[1]) if found else None)
        )
    else:
        world = World()
        if not args.print_config:
            topology = resolve(args, create=False)[0].run.topology
            ranks = parse_topology(topology)[1]
            if ranks > 1:  # the same command under torchrun, one process per learner rank
                return distributed.relaunch(topology, ranks, sys.argv[1:])
        settings, run_dir, resume = resolve(args)
    if args.print_config:
        print(json.dumps(settings.to_dict(), indent=2))
        return 0
    from spiral.training.trainer import Trainer

    trainer = Trainer(settings, run_dir, resume=resume, world=world)
    last = trainer.train()
    print(f"run: {run_dir.path}  (steps {trainer.step}; checkpoints in {run_dir.checkpoints})")
    if (run_dir.path / "phases.json").is_file():
        from runkit.io import read_json
        from spiral.phases import format_phases

        print("phases (evaluation penalty: an invalid move loses):")
        print(format_phases(read_json(run_dir.path / "phases.json")))
    for k in sorted(last):
        if k.startswith("eval/") and k.endswith("win_rate") and "seat" not in k:
            print(f"  {k} = {last[k]:.3f}")
    if trainer.readouts:
        first, end = trainer.readouts[0], trainer.readouts[-1]
        print(
            f"Kuhn exploitability (readout; uniform random 0.458, Nash 0): {first['exploitability']:.3f} at "
            f"step {first['step']} -> {end['exploitability']:.3f} at step {end['step']} (average policy "
            f"{end['avg_exploitability']:.3f})"
        )
    return 0


def _follow(world) -> int:
    """Learner rank > 0: wait for rank 0's settings, then learn what it sends."""
    from pathlib import Path

    from spiral.config import Settings
    from spiral.training import distributed

    msg = distributed.broadcast()
    if msg[0] == "error":
        return 1  # rank 0 prints the one line
    settings = Settings.from_dict({k: v for k, v in msg[1].items() if k != "kind"})
    from spiral.training.factories import follow

    follow(settings, Path(msg[2]), msg[3], world)
    return 0
