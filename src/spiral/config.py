"""Typed settings for `spiral train` / `spiral warmup`: dataclasses with a help string per field, TOML presets
(src/spiral/presets/NAME.toml, which may name a `base` preset to extend), and `section.key=value` overrides."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from runkit.settings import coerce as _coerce
from runkit.settings import merge_tables as _merge
from runkit.settings import opt, parse_toml, parse_value, read_preset_text
from spiral.device import check_device, parse_topology

ALL_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelSettings:
    """Which policy to load and how to hold it."""

    name: str = opt("smollm2-135m-instruct", "smollm2-135m-instruct, tiny, tiny:CHARS, or a model/run folder")
    lora: bool = opt(False, "train LoRA adapters instead of all weights")
    lora_r: int = opt(16, "LoRA rank")
    lora_alpha: float = opt(32.0, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = opt(0.0, "LoRA dropout (keep 0 so that the PPO ratio starts at 1)")
    lora_targets: list[str] = opt(ALL_LORA_TARGETS, "module names that get LoRA adapters")
    dtype: str = opt(
        "fp32",
        "learner compute: fp32, bf16 (autocast; master weights stay fp32), or auto (bf16 where the CPU "
        "multiplies bf16 natively, AVX512-BF16 / AMX, or on a GPU; else fp32)",
    )
    frozen_bf16: str = opt(
        "auto",
        "LoRA runs: multiply the frozen base weights in bf16 (cast and packed once; fp32 accumulation, LoRA, norms, "
        "losses and optimiser in fp32; spiral.generation.native.frozen): auto (where the CPU multiplies bf16 "
        "natively), true, or false (the fp32 path)",
    )
    gen_dtype: str = opt(
        "auto",
        "generation weights: bf16 (a copy synced after each update), fp32, or auto "
        "(bf16 only where bf16 matmuls are fast: a GPU or a CPU with AMX / AVX512-BF16)",
    )
    generator: str = opt(
        "fast",
        "sampler: fast (spiral.generation.fast: own Llama forward, static KV cache; other architectures fall back to "
        "hf), hf (the transformers forward) or vllm (GPU, optional extra)",
    )
    prompt_template: str = opt("auto", "auto (chat template when the tokenizer has one), chat, or plain")
    prompt_style: str = opt(
        "paper",
        "paper (instruction, observation, answer format in one message) or compact (instructions as the "
        "system message, the observation last: a long shared prefix and a short state tail)",
    )
    device: str = opt(
        "auto",
        "policy, KL reference, learner and hf sampler: auto (CUDA when present, else cpu), cpu, cuda, cuda:N",
    )
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass (less memory)")
    share_prefix: bool = opt(True, "compute prompt prefixes shared by prompts once (generation and learner)")


@dataclass
class RolloutSettings:
    """Vectorised self-play: which games, how many at once, how to sample."""

    env_ids: list[str] = opt(["KuhnPoker-v2"], "games to train on (several: multi-game training)")
    env_kwargs: dict[str, dict] = opt({}, "options per game id, e.g. {KuhnPoker-v2 = {rounds = 1}}")
    num_envs: int = opt(32, "games played concurrently")
    turns_per_step: int = opt(64, "policy turns kept per training step (sampled from finished games)")
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "nucleus sampling mass (log-probs stay those of the temperature distribution)")
    max_new_tokens: int = opt(256, "response length limit in tokens")
    gen_batch_size: int = opt(32, "most sequences in one generation batch (lower it when out of memory)")
    parse_mode: str = opt(
        "strict", "strict: the last \\boxed{} is the move; lenient: else the last legal move named"
    )
    invalid_penalty: list[float] = opt(
        [-1.5, 0.0], "rewards (offender, opponent) when a move is invalid (the paper's: [-1.5, 0.5])"
    )
    action_mode: str = opt(
        "free",
        "free (the model writes its answer; the last \\boxed{} is the move) or constrained (the move is drawn "
        "from the model's renormalised probabilities of the legal moves' \\boxed{move} answers: no invalid "
        "moves, no free-form reasoning; spiral.generation.actions), or think (a free-form thought of at most "
        "think_tokens tokens, then the move drawn as in constrained after prompt + thought; spiral.generation.think)",
    )
    think_tokens: int = opt(
        48, "think mode: thought budget in tokens (it also ends at \\boxed or the stop token)"
    )
    think_temperature: float = opt(0.0, "think mode: the thoughts' temperature (0: rollout.temperature)")
    max_offer_units: int = opt(0, "constrained: only Negotiation offers of <= N units each way (0: all)")
    keep_all_turns: bool = opt(
        False,
        "train on every turn played in the step's games (else exactly turns_per_step sampled from them)",
    )
    pool_size: int = opt(0, "opponent pool: past policies kept (0 = plain self-play)")
    pool_every: int = opt(10, "opponent pool: steps between snapshots of the policy")
    pool_prob: float = opt(0.5, "opponent pool: probability that a game's other seat is a pool member")
    pool_sampling: str = opt("uniform", "opponent pool: uniform, or rating (spiral.training.opponents)")
    pool_agents: list[str] = opt([], "opponent pool: fixed agents as members too, e.g. [random, optimal]")
    pool_league: str = opt("", "opponent pool, rating: a league.json whose ratings give the first estimates")
    opponent: str = opt(
        "self", "self (one policy plays both seats), an agent spec (random, optimal) or a folder"
    )
    format_bonus: float = opt(0.0, "advantage bonus for a well-formed \\boxed{legal move} (shaping; 0 = off)")
    stop_at_box: bool = opt(
        False,
        "end each response at its first closed \\boxed{} (fast / hf generators; saves tokens after the move)",
    )


@dataclass
class AdvantageSettings:
    """Role-conditioned advantage estimation."""

    estimator: str = opt("rae", "rae (baseline per game and role) or none (raw returns: the ablation)")
    decay: float = opt(0.95, "EMA decay of the RAE baselines")
    order: str = opt("code", "code: advantage from the baseline before its update; paper: after it")
    key_by: str = opt(
        "role",
        "role: one baseline per (game, role), the paper's RAE; state: one per (game, role, prompt), started "
        "from the role's (removes the luck of the deal where prompts repeat, e.g. Kuhn's 12 information sets)",
    )
    control: str = opt(
        "none",
        "none, or random_sign: the transfer control; each finished game's return per role gets an independent "
        "random sign (seeded by run.seed, reproducible on resume), so training sees game text but no signal",
    )


@dataclass
class LearnerSettings:
    """PPO-clip with Dr. GRPO normalisation and AdamW."""

    lr: float = opt(1e-6, "learning rate (constant after warm-up)")
    warmup_steps: int = opt(0, "training steps of linear learning-rate warm-up")
    ppo_epochs: int = opt(2, "optimizer steps over each batch")
    clip: float = opt(0.2, "PPO clip range epsilon")
    micro_batch_size: int = opt(8, "samples per forward/backward (lower when out of memory)")
    loss_norm: float = opt(4096.0, "constant that divides each sample's summed token losses")
    kl_coef: float = opt(0.0, "weight of a KL penalty to a frozen reference policy (0 = no reference model)")
    kl_ref: str = opt(
        "start",
        "the KL reference: start (the policy when self-play starts, i.e. after the warm-up: a magnet that "
        "keeps the format) or base (the model as loaded, before any warm-up)",
    )
    kl_ref_every: int = opt(0, "kl_ref=start: steps between moves of the reference to the policy (0: never)")
    entropy_coef: float = opt(0.0, "weight of an entropy bonus (exact over legal moves when constrained)")
    entropy_decay_steps: int = opt(0, "> 0: steps in which the entropy weight goes linearly to entropy_final")
    entropy_final: float = opt(0.0, "the entropy weight after entropy_decay_steps steps")
    micro_batch_tokens: int = opt(0, "tokens per forward/backward, prompt + response (0: micro_batch_size)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    betas: list[float] = opt([0.9, 0.95], "AdamW betas")
    eps: float = opt(1e-8, "AdamW epsilon")
    grad_clip: float = opt(1.0, "gradient-norm clip")
    update: bool = opt(True, "apply optimizer steps (false: a no-learning control run)")
    train_zero_advantage: bool = opt(False, "also train turns of advantage 0 (their entropy, KL terms)")


@dataclass
class WarmupSettings:
    """Format warm-up: rejection-sampled fine-tuning on the policy's own valid answers (no expert moves)."""

    rounds: int = opt(0, "sample-then-fine-tune rounds before self-play (0 = no warm-up)")
    samples: int = opt(256, "policy turns sampled per round (self-play games)")
    accept: str = opt(
        "strict",
        "strict: keep boxed legal answers; lenient: also answers naming a legal move, "
        "with \\boxed{move} appended",
    )
    max_per_action: int = opt(
        0,
        "cap on kept answers per move at each decision point (game, set of legal moves) in a round, "
        "against action bias (0 = none)",
    )
    top_up: int = opt(
        0,
        "extra samples of each prompt seen at a decision point that kept fewer than max_per_action answers "
        "for one of its moves (0 = none): covers rare decisions such as facing a bet",
    )
    epochs: int = opt(2, "passes over the kept answers per round")
    lr: float = opt(1e-5, "fine-tuning learning rate")
    micro_batch_size: int = opt(8, "answers per gradient step")
    temperature: float = opt(1.0, "sampling temperature while collecting answers")
    eval_samples: int = opt(64, "policy turns sampled to measure the valid rate before and after")


@dataclass
class EvalSettings:
    """Evaluation against fixed opponents in both seats."""

    every: int = opt(10, "evaluate every K training steps (0 = only before and after training)")
    games: int = opt(16, "games per (game, opponent, seat)")
    opponents: list[str] = opt(["random", "optimal"], "agent specs of the fixed opponents")
    num_envs: int = opt(0, "games played concurrently in evaluation (0 = rollout.num_envs)")
    temperature: float = opt(0.7, "sampling temperature in evaluation")
    top_p: float = opt(0.95, "nucleus sampling mass in evaluation")
    parse_mode: str = opt("", "parse mode in evaluation (empty: the rollout's)")
    at_start: bool = opt(True, "evaluate the starting policy before any training")
    exploitability_every: int = opt(
        0,
        "one-round KuhnPoker-v2 only: exact policy readout and OpenSpiel exploitability every K steps "
        "(eval/exploitability; 0 = off)",
    )
    think_samples: int = opt(
        32, "readout of think / free-form policies: thoughts or answers sampled per information set"
    )


@dataclass
class RunSettings:
    """Length, seed, output and checkpointing."""

    steps: int = opt(100, "self-play training steps")
    max_minutes: float = opt(
        0.0,
        "self-play minutes (evaluation excluded; counted across resumes): stop before a step as long as the last "
        "would pass them (0 = no limit)",
    )
    seed: int = opt(0, "seed of games, sampling, turn selection and model init")
    out: str = opt("runs/spiral", "run folder")
    save_every: int = opt(10, "checkpoint every K steps (and always at the end)")
    keep_checkpoints: int = opt(3, "newest checkpoints kept (0 = all)")
    plots: bool = opt(True, "draw the plots and report at the end")
    threads: int = opt(0, "torch CPU threads (0 = torch's default)")
    backend: str = opt("local", "where games are played: local (this process) or ray (docs/scaling.md)")
    rollout_workers: int = opt(1, "ray: rollout workers, Ray actors that each hold the policy and play games")
    async_rollout: bool = opt(
        False,
        "ray: workers collect step t+1 with the weights of step t while the learner updates (hides generation "
        "time; the turns are one version old, corrected by the PPO ratio and its clip)",
    )
    ray_address: str = opt("", "ray: cluster to join (auto or HOST:PORT); empty starts a local one")
    topology: str = opt(
        "",
        "ROLLOUT:LEARNER, e.g. 4:4 on 8 GPUs: ROLLOUT Ray rollout workers (0: the learner's rank 0 plays) and "
        "LEARNER data-parallel learner ranks (DDP under torchrun); empty = 0:1 (docs/scaling.md)",
    )


SECTIONS = {
    "model": ModelSettings,
    "rollout": RolloutSettings,
    "advantage": AdvantageSettings,
    "learner": LearnerSettings,
    "warmup": WarmupSettings,
    "eval": EvalSettings,
    "run": RunSettings,
}


@dataclass
class Settings:
    """Every setting of a training run."""

    preset: str = ""
    model: ModelSettings = field(default_factory=ModelSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    advantage: AdvantageSettings = field(default_factory=AdvantageSettings)
    learner: LearnerSettings = field(default_factory=LearnerSettings)
    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    run: RunSettings = field(default_factory=RunSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for config.json and checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build from a nested dict, rejecting unknown keys."""
        s = cls(preset=str(data.get("preset", "")))
        for section, values in data.items():
            if section in ("preset", "base", "kind", "description"):
                continue
            if section not in SECTIONS:
                raise UserError(f"unknown settings section {section!r}; known: {', '.join(SECTIONS)}")
            if not isinstance(values, dict):
                raise UserError(f"settings section {section!r} must be a table")
            for key, value in values.items():
                set_value(s, f"{section}.{key}", value)
        return s


# ---- presets --------------------------------------------------------------------------------------------


def preset_names(package: str = "spiral.presets") -> list[str]:
    """Names of the built-in presets (of `spiral train`, or another command's preset package)."""
    files = resources.files(package).iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".toml") and not p.name.startswith("_"))


def _read_preset(
    name: str, seen: tuple[str, ...] = (), packages: tuple[str, ...] = ("spiral.presets",)
) -> dict[str, Any]:
    """A preset's table with its `base` chain merged in (a path to a .toml file also works); a name is looked up
    in `packages` in turn (`spiral sft` presets may extend `spiral train` ones)."""
    if name in seen:
        raise UserError(f"preset {name!r} extends itself ({' -> '.join([*seen, name])})")
    if name.endswith(".toml") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"preset file {name} does not exist")
        text = read_preset_text(path)
    else:
        res = next((r for r in (resources.files(p) / f"{name}.toml" for p in packages) if r.is_file()), None)
        if res is None:
            known = ", ".join(preset_names(packages[0]))
            raise UserError(f"unknown preset {name!r}; known: {known} (or a .toml path)")
        text = res.read_text(encoding="utf-8")
    data = parse_toml(text, f"preset {name!r}")
    base = data.pop("base", None)
    merged = _merge(_read_preset(base, (*seen, name), packages), data) if base else data
    return merged


def load_settings(preset: str | None, overrides: list[str] | None = None) -> Settings:
    """Settings from a preset (or the defaults) with `section.key=value` overrides applied, validated."""
    data = _read_preset(preset) if preset else {}
    s = Settings.from_dict(data)
    s.preset = preset or ""
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: write section.key=value, e.g. --set learner.lr=1e-5")
        set_value(s, key.strip(), parse_value(raw.strip()))
    validate(s)
    return s


def set_value(s: Settings, dotted: str, value: Any) -> None:
    """Set `section.key` (or `section.dict_key.sub.key` inside a dict setting) with type coercion."""
    parts = dotted.split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise UserError(
            f"unknown setting {dotted!r}; settings look like section.key with sections {', '.join(SECTIONS)}"
        )
    section = getattr(s, parts[0])
    names = {f.name: f for f in dataclasses.fields(section)}
    if parts[1] not in names:
        raise UserError(f"unknown setting {dotted!r}; {parts[0]} has: {', '.join(names)}")
    f = names[parts[1]]
    if len(parts) > 2:
        if not f.type.startswith("dict"):
            raise UserError(f"setting {parts[0]}.{parts[1]} is not a table; drop the part after it")
        target = getattr(section, f.name)
        for p in parts[2:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = value
        return
    setattr(section, f.name, _coerce(dotted, f.type, value))


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(s: Settings) -> None:
    """Reject impossible settings with one line that names the setting."""
    m, r, a, lr, w, e, run = s.model, s.rollout, s.advantage, s.learner, s.warmup, s.eval, s.run
    _choice("model.dtype", m.dtype, ("auto", "fp32", "bf16"))
    _choice("model.frozen_bf16", m.frozen_bf16.lower(), ("auto", "true", "false"))
    _choice("model.prompt_style", m.prompt_style, ("paper", "compact"))
    _choice("rollout.action_mode", r.action_mode, ("free", "constrained", "think"))
    if r.max_offer_units < 0 or (r.max_offer_units and r.action_mode != "constrained"):
        raise UserError("rollout.max_offer_units must be >= 0, and > 0 only with action_mode=constrained")
    _choice("learner.kl_ref", lr.kl_ref, ("start", "base"))
    if lr.kl_ref_every and lr.kl_ref != "start":  # a moving magnet (docs/spiral_training.md)
        raise UserError("learner.kl_ref_every needs learner.kl_ref=start")
    if r.action_mode != "free" and w.rounds:
        raise UserError(f"rollout.action_mode={r.action_mode} needs no format warm-up: set warmup.rounds=0")
    if r.action_mode != "free" and run.backend == "ray":
        raise UserError(f"rollout.action_mode={r.action_mode} runs with run.backend=local only")
    if not 0 <= r.pool_prob <= 1:
        raise UserError(f"rollout.pool_prob must lie in [0, 1], got {r.pool_prob}")
    _choice("rollout.pool_sampling", r.pool_sampling, ("uniform", "rating"))
    if (r.pool_sampling != "uniform" or r.pool_agents) and run.backend == "ray":
        raise UserError("rollout.pool_sampling=rating and rollout.pool_agents need run.backend=local")
    if r.pool_league and not Path(r.pool_league).is_file():
        raise UserError(f"rollout.pool_league: no league file at {r.pool_league}")
    _choice("model.gen_dtype", m.gen_dtype, ("auto", "fp32", "bf16"))
    _choice("model.prompt_template", m.prompt_template, ("auto", "chat", "plain"))
    _choice("model.generator", m.generator, ("fast", "hf", "vllm"))
    _choice("rollout.parse_mode", r.parse_mode, ("strict", "lenient"))
    _choice("advantage.estimator", a.estimator, ("rae", "none"))
    _choice("advantage.order", a.order, ("code", "paper"))
    _choice("advantage.key_by", a.key_by, ("role", "state"))
    _choice("advantage.control", a.control, ("none", "random_sign"))
    _choice("warmup.accept", w.accept, ("strict", "lenient"))
    if e.parse_mode:
        _choice("eval.parse_mode", e.parse_mode, ("strict", "lenient"))
    if not r.env_ids:
        raise UserError("rollout.env_ids is empty; name at least one game, e.g. --env KuhnPoker-v2")
    for key, v in [("rollout.num_envs", r.num_envs), ("rollout.turns_per_step", r.turns_per_step),
                   ("rollout.max_new_tokens", r.max_new_tokens), ("rollout.gen_batch_size", r.gen_batch_size),
                   ("learner.ppo_epochs", lr.ppo_epochs), ("learner.micro_batch_size", lr.micro_batch_size),
                   ("learner.loss_norm", lr.loss_norm), ("learner.clip", lr.clip), ("learner.lr", lr.lr),
                   ("warmup.samples", w.samples), ("warmup.micro_batch_size", w.micro_batch_size),
                   ("warmup.eval_samples", w.eval_samples), ("model.lora_r", m.lora_r),
                   ("run.save_every", run.save_every), ("rollout.pool_every", r.pool_every)]:  # fmt: skip
        _positive(key, v)
    for key, v in [("run.steps", run.steps), ("warmup.rounds", w.rounds), ("eval.every", e.every),
                   ("eval.games", e.games), ("eval.num_envs", e.num_envs), ("learner.kl_coef", lr.kl_coef),
                   ("learner.warmup_steps", lr.warmup_steps), ("run.keep_checkpoints", run.keep_checkpoints),
                   ("warmup.max_per_action", w.max_per_action), ("warmup.top_up", w.top_up), ("run.threads", run.threads), ("run.max_minutes", run.max_minutes),
                   ("learner.grad_clip", lr.grad_clip), ("learner.weight_decay", lr.weight_decay),
                   ("learner.entropy_coef", lr.entropy_coef), ("learner.micro_batch_tokens", lr.micro_batch_tokens), ("learner.entropy_decay_steps", lr.entropy_decay_steps), ("learner.entropy_final", lr.entropy_final),
                   ("rollout.pool_size", r.pool_size), ("eval.exploitability_every", e.exploitability_every), ("learner.kl_ref_every", lr.kl_ref_every), ("rollout.think_tokens", r.think_tokens), ("eval.think_samples", e.think_samples)]:  # fmt: skip
        _positive(key, v, allow_zero=True)
    if (
        not all(0 <= t <= 10 for t in (r.temperature, e.temperature, r.think_temperature))
        or not 0 < w.temperature <= 10
    ):
        raise UserError("temperatures must lie in [0, 10] (warm-up: > 0)")
    if r.temperature == 0:
        raise UserError("rollout.temperature must be > 0: training needs sampled moves and their log-probs")
    if not 0 < r.top_p <= 1 or not 0 < e.top_p <= 1:
        raise UserError("top_p must lie in (0, 1]")
    if not 0 <= a.decay < 1:
        raise UserError(f"advantage.decay must lie in [0, 1), got {a.decay}")
    if len(r.invalid_penalty) != 2:
        raise UserError("rollout.invalid_penalty must be two numbers: [offender, opponent]")
    if len(lr.betas) != 2 or not all(0 <= b < 1 for b in lr.betas):
        raise UserError("learner.betas must be two numbers in [0, 1)")
    _choice("run.backend", run.backend, ("local", "ray"))
    _positive("run.rollout_workers", run.rollout_workers)
    if run.backend != "ray" and (run.async_rollout or run.rollout_workers != 1):
        raise UserError("run.async_rollout and run.rollout_workers need run.backend=ray (--backend ray)")
    if run.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError("run.backend=ray needs Ray: pip install 'ray==2.60.0' (the project's `ray` extra)")
    check_device(m.device)
    rollout_workers, ranks = parse_topology(run.topology)
    if rollout_workers and (run.backend != "ray" or run.rollout_workers != rollout_workers):
        raise UserError(f"run.topology={run.topology} needs run.backend=ray and run.rollout_workers={rollout_workers}"
                        " (spiral train --topology sets both)")  # fmt: skip
    if m.lora and m.gradient_checkpointing:
        raise UserError("model.gradient_checkpointing is not supported together with model.lora")
