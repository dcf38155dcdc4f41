"""How a run's settings become its parts: the policy (model + generator) and the rollout collector.

The local trainer and the Ray rollout workers (`spiral.training.ray`) build theirs here, so that neither
imports the other.
"""

from __future__ import annotations

from pathlib import Path

from runkit.errors import UserError
from spiral.agents.lm import LMPolicy, build_policy
from spiral.config import Settings
from spiral.generation.base import Sampling
from spiral.model import SMOLLM2, SMOLLM2_ALIASES, cache_dir, is_tiny, resolve_folder, resolve_gen_dtype
from spiral.training.rollout import RolloutCollector


def kuhn_one_round(s: Settings) -> bool:
    """Whether the run trains on one-round KuhnPoker-v2, alone or among other games (the readout's game: a
    multi-game run's Kuhn policy is read out as a Kuhn run's is)."""
    return (
        "KuhnPoker-v2" in s.rollout.env_ids
        and s.rollout.env_kwargs.get("KuhnPoker-v2", {}).get("rounds") == 1
    )


def check_settings(s: Settings) -> None:
    """Catch bad game ids, game options, opponents and model paths before anything heavy is loaded."""
    from spiral.agents import make_agent
    from spiral.games import make

    for env_id in s.rollout.env_ids:
        make(env_id, parse_mode=s.rollout.parse_mode, **s.rollout.env_kwargs.get(env_id, {}))
    unknown = set(s.rollout.env_kwargs) - set(s.rollout.env_ids)
    if unknown:
        raise UserError(
            f"rollout.env_kwargs names games that are not trained on: {', '.join(sorted(unknown))}"
        )
    if s.rollout.opponent != "self" and not Path(s.rollout.opponent).is_dir():
        for env_id in s.rollout.env_ids:
            make_agent(s.rollout.opponent, env_id, seed=0)
    from spiral.device import resolve_device

    name = s.model.name
    if not name.strip():
        raise UserError("model.name is empty: name the model with --model PATH (a local Hugging Face folder)")
    if not (name in SMOLLM2_ALIASES or is_tiny(name)):
        resolve_folder(name)  # a folder that is not there: one line
    resolve_device(s.model.device)  # a GPU that is not there: one line before the run folder is made
    limit = model_positions(name)
    if limit is not None and s.rollout.max_new_tokens + MIN_PROMPT > limit:
        raise UserError(
            f"rollout.max_new_tokens = {s.rollout.max_new_tokens} leaves fewer than {MIN_PROMPT} of the model's "
            f"{limit} positions for the prompt; lower it"
        )


MIN_PROMPT = 256  # tokens a game prompt needs at least (Kuhn's compact prompt: 256-263)


def model_positions(name: str) -> int | None:
    """The model's position limit read from its config alone (no weights loaded); None when unknown."""
    import json

    if is_tiny(name):
        return 4096  # spiral.model.tiny_model
    folder = cache_dir() / SMOLLM2 if name in SMOLLM2_ALIASES else resolve_folder(name)
    try:
        value = json.loads((folder / "config.json").read_text(encoding="utf-8")).get(
            "max_position_embeddings"
        )
    except (OSError, ValueError, AttributeError):
        return 8192 if name in SMOLLM2_ALIASES else None  # SmolLM2-135M's, before its first conversion
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def make_policy(s: Settings, model, tokenizer, seed: int) -> LMPolicy:
    """The run's LMPolicy over `model` (generator kind, dtype, batch, template from the settings)."""
    m, r = s.model, s.rollout
    return build_policy(model, tokenizer, resolve_gen_dtype(m.gen_dtype), r.gen_batch_size, seed,
                        m.prompt_template, m.share_prefix, m.generator, r.stop_at_box, r.action_mode,
                        learner_dtype(s), m.prompt_style, r.think_tokens, r.think_temperature,
                        r.max_offer_units)  # fmt: skip


def learner_dtype(s: Settings) -> str:
    """The learner's compute dtype: model.dtype, with auto meaning bf16 where bf16 matmuls are native."""
    return resolve_gen_dtype(s.model.dtype)


def make_collector(s: Settings, policy, seed: int) -> RolloutCollector:
    """The run's RolloutCollector (games, sampling, penalties, fixed opponent seeded `seed + 1`)."""
    r = s.rollout
    opponent = None
    if r.opponent != "self":
        from spiral.agents import make_agent

        if Path(r.opponent).is_dir():  # a frozen checkpoint plays every game: load it once
            opponent = make_agent(r.opponent, r.env_ids[0], seed=seed + 1)
        else:
            opponent = {e: make_agent(r.opponent, e, seed=seed + 1) for e in r.env_ids}
    return RolloutCollector(
        policy, r.env_ids, r.env_kwargs, r.num_envs, Sampling(r.temperature, r.top_p, r.max_new_tokens),
        r.parse_mode, tuple(r.invalid_penalty), opponent, seed, r.keep_all_turns,
    )  # fmt: skip


def build_learner(s: Settings, run_path: Path, ckpt, world=None):
    """(tokenizer, policy model, Learner) of a run on `model.device`: the model as loaded or as checkpointed
    (LoRA adapters, or the full weights), its KL reference, and the learner (DDP across `world`'s ranks).
    The trainer and the followers of a multi-rank learner (spiral.training.distributed) build theirs here."""
    import torch

    from spiral.device import resolve_device
    from spiral.generation.native.frozen import wanted as frozen_wanted
    from spiral.model import add_lora, load_model, load_tokenizer, plain_copy
    from spiral.training.learner import Learner
    from spiral.training.reference import reference_folder

    m = s.model
    device = resolve_device(m.device)
    tokenizer = load_tokenizer(m.name)
    full_ckpt = ckpt is not None and not m.lora
    model = load_model(str(ckpt.path) if full_ckpt else m.name, tokenizer)
    ref = None
    if s.learner.kl_coef > 0 and s.learner.kl_ref == "base":  # the model as loaded, also on resume
        ref = plain_copy(load_model(m.name, tokenizer) if full_ckpt else model, torch.float32)
    elif s.learner.kl_coef > 0 and (folder := reference_folder(run_path)):  # kl_ref=start, resumed
        ref = load_model(str(folder), tokenizer)
        ref.eval().requires_grad_(False)
    if m.lora:
        model = add_lora(model, m.lora_r, m.lora_alpha, m.lora_dropout, m.lora_targets)
        if ckpt is not None:
            adapters = ckpt.state["adapters"]
            missing = set(adapters) - {n for n, _ in model.named_parameters()}
            if missing:
                raise UserError(
                    f"checkpoint {ckpt.path} does not match model.lora settings ({len(missing)} keys)"
                )
            model.load_state_dict(adapters, strict=False)
    elif m.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.to(device)
    if ref is not None:
        ref.to(device)
    share = m.share_prefix and not m.gradient_checkpointing
    fast = m.lora and frozen_wanted(m.frozen_bf16) and device.type == "cpu"  # bf16 matmuls, frozen weights
    learner = Learner(model, s.learner, s.rollout.temperature, learner_dtype(s), ref, share, fast, world,
                      s.rollout.think_temperature)  # fmt: skip
    return tokenizer, model, learner


def follow(settings, run_path, checkpoint: str | None, world) -> None:
    """A learner rank other than 0 (spiral.training.distributed): build the same model, reference and optimizer state as rank 0 (from the
    checkpoint it resumes, if any), then learn whatever rank 0 sends until it stops."""
    import torch

    from runkit.checkpoint import load_checkpoint
    from runkit.seeding import seed_everything
    from spiral.training.distributed import serve

    if settings.run.threads:
        torch.set_num_threads(settings.run.threads)
    seed_everything(settings.run.seed)
    ckpt = load_checkpoint(checkpoint) if checkpoint else None
    _tokenizer, model, learner = build_learner(settings, run_path, ckpt, world)
    if ckpt is not None:
        learner.load_state_dict(ckpt.state["learner"])
    serve(learner, model)
