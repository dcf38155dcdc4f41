"""The language-model policy as an Agent: prompts from observations, batched sampling, response texts.

`make_lm_agent(spec)` loads any model spec of spiral.model (smollm2-135m-instruct, tiny, a Hugging Face
folder, a training checkpoint or a run folder, whose latest checkpoint is used) as an Agent for evaluation
or as a fixed / frozen opponent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from spiral.agents.base import Agent
from spiral.generation.base import Generator, Sampling
from spiral.model import PromptFormat, load_model, load_tokenizer, resolve_gen_dtype

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class Response:
    """One sampled response with what the learner needs."""

    prompt_ids: list[int]
    tokens: list[int]
    logprobs: list[float]
    text: str
    truncated: bool
    candidates: list[list[int]] | None = None  # constrained decoding: every legal move's response ids
    choice: int = -1  # constrained decoding: index of the sampled move among `candidates`
    thought_len: int = -1  # think mode: `tokens` = the thought's thought_len tokens, then the move's


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS and the model's generation-config EOS ids."""
    ids = {tokenizer.eos_token_id}
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(cfg_eos if isinstance(cfg_eos, list) else [cfg_eos])
    return sorted(i for i in ids if i is not None)


def draw_move(logp: torch.Tensor, sampling: Sampling, rng: torch.Generator) -> int:
    """A legal move's index from its log-probs: the most likely at temperature 0, else a draw with `rng`."""
    if sampling.temperature == 0:
        return int(logp.argmax())
    return int(torch.multinomial(logp.exp(), 1, generator=rng))


class LMPolicy:
    """Observations in, sampled responses out: prompt format + tokenizer + generator."""

    def __init__(self, tokenizer, generator: Generator, prompt_format: PromptFormat) -> None:
        self.tokenizer, self.generator, self.format = tokenizer, generator, prompt_format

    def respond(
        self, observations: list[str], sampling: Sampling, legal: list[list[str]] | None = None
    ) -> list[Response]:
        """Sample one response per observation in one batched generation (`legal` is not needed here)."""
        if not observations:
            return []
        prompts = self.format.encode(observations)
        gen = self.generator.generate(prompts, sampling)
        texts = self.tokenizer.batch_decode(gen.tokens, skip_special_tokens=True)
        return [
            Response(p, t, lp, text, tr)
            for p, t, lp, text, tr in zip(
                prompts, gen.tokens, gen.logprobs, texts, gen.truncated, strict=True
            )
        ]


class ConstrainedPolicy(LMPolicy):
    """Constrained action decoding: the move is drawn from the model's distribution over its legal moves'
    `\\boxed{move}` responses, renormalised (spiral.generation.actions); nothing else can be said, so no move is invalid.

    Each response's `logprobs` holds one number, log P(move | legal) at the sampling temperature, which is what
    the learner recomputes for these turns. Distinct prompts are scored once per call."""

    def __init__(
        self, tokenizer, model, prompt_format: PromptFormat, dtype: str = "fp32", seed: int = 0,
        max_offer_units: int = 0,
    ) -> None:  # fmt: skip
        from spiral.generation.actions import Candidates, MoveSampler

        super().__init__(tokenizer, MoveSampler(model, dtype, seed), prompt_format)
        self.candidates = Candidates(tokenizer)
        self.max_offer_units = max_offer_units  # > 0: the moves it considers (actions.restrict_moves)

    def respond(
        self, observations: list[str], sampling: Sampling, legal: list[list[str]] | None = None
    ) -> list[Response]:
        """One legal move per observation, sampled from the renormalised move distribution."""
        if not observations:
            return []
        if legal is None:
            raise ValueError("constrained decoding needs the legal moves of each observation")
        if self.max_offer_units > 0:
            from spiral.generation.actions import restrict_moves

            legal = [restrict_moves(list(lg), self.max_offer_units) for lg in legal]
        distinct: dict[
            tuple, int
        ] = {}  # (observation, legal moves) -> index: each is encoded and scored once
        for obs, lg in zip(observations, legal, strict=True):
            distinct.setdefault((obs, tuple(lg)), len(distinct))
        keys = list(distinct)
        encoded = self.format.encode([obs for obs, _ in keys])
        cands = [self.candidates.for_legal(list(lg)) for _, lg in keys]
        scores = self.generator.scores(encoded, cands, sampling.temperature or 1.0)
        logps = [torch.log_softmax(s, dim=-1) for s in scores]
        out = []
        for obs, lg in zip(observations, legal, strict=True):
            k = distinct[(obs, tuple(lg))]
            p = list(encoded[k])
            lp = logps[k]
            i = draw_move(lp, sampling, self.generator.rng)
            text = self.tokenizer.decode(cands[k][i])
            out.append(Response(p, list(cands[k][i]), [float(lp[i])], text, False, cands[k], i))
        return out


class ThinkPolicy(LMPolicy):
    """Think, then move (spiral.generation.think): a free-form thought of at most `budget` tokens, then a legal
    move drawn from the renormalised `\\boxed{move}` probabilities after prompt + thought.

    A response's `tokens` are the thought's then the move's; its `logprobs` the thought tokens' then
    log P(move | legal, prompt + thought); `thought_len` says where the thought ends."""

    def __init__(self, tokenizer, sampler, prompt_format: PromptFormat, budget: int = 48,
                 thought_temperature: float = 0.0) -> None:  # fmt: skip
        from spiral.generation.actions import Candidates

        super().__init__(tokenizer, sampler, prompt_format)
        self.candidates, self.budget = Candidates(tokenizer), budget
        self.thought_temperature = thought_temperature  # 0: the sampling's temperature, as the move's

    def thought_sampling(self, sampling: Sampling) -> Sampling:
        """How the thoughts are sampled: `sampling` at the thought temperature, when one is set."""
        t = self.thought_temperature or sampling.temperature
        return Sampling(t, sampling.top_p, sampling.max_new_tokens)

    def respond(
        self, observations: list[str], sampling: Sampling, legal: list[list[str]] | None = None
    ) -> list[Response]:
        """One thought and one legal move per observation."""
        if not observations:
            return []
        if legal is None:
            raise ValueError("think mode needs the legal moves of each observation")
        prompts = self.format.encode(observations)
        thoughts = self.generator.sample(prompts, self.thought_sampling(sampling), self.budget)
        cands = [self.candidates.for_legal(list(lg)) for lg in legal]
        scores = self.generator.move_scores(
            prompts, [th for th, _, _ in thoughts], cands, sampling.temperature or 1.0
        )
        out = []
        for p, (th, lps, trunc), cs, sc in zip(prompts, thoughts, cands, scores, strict=True):
            lp = torch.log_softmax(sc, dim=-1)
            i = draw_move(lp, sampling, self.generator.rng)
            text = (
                self.tokenizer.decode(th, skip_special_tokens=True).rstrip()
                + " "
                + self.tokenizer.decode(cs[i])
            )
            out.append(Response(list(p), th + list(cs[i]), [*lps, float(lp[i])], text, trunc, cs, i, len(th)))
        return out


def build_policy(
    model,
    tokenizer,
    gen_dtype: str = "fp32",
    batch_size: int = 32,
    seed: int = 0,
    prompt_template: str = "auto",
    share_prefix: bool = True,
    generator: str = "fast",
    stop_at_box: bool = False,
    action_mode: str = "free",
    score_dtype: str = "fp32",
    prompt_style: str = "paper",
    think_tokens: int = 48,
    think_temperature: float = 0.0,
    max_offer_units: int = 0,
) -> LMPolicy:
    """An LMPolicy sampling from `model` with generator `generator` (spiral.generation.make_generator), or with
    `action_mode = "constrained"` a ConstrainedPolicy scoring the legal moves with `model` itself."""
    fmt = PromptFormat(tokenizer, prompt_template, prompt_style)
    if action_mode == "constrained":
        return ConstrainedPolicy(tokenizer, model, fmt, score_dtype, seed, max_offer_units)
    from spiral.generation import make_generator

    sampler = make_generator(generator, model, stop_ids(model, tokenizer), tokenizer.pad_token_id,
                             DTYPES[resolve_gen_dtype(gen_dtype)], batch_size, seed, share_prefix)  # fmt: skip
    if action_mode == "think":
        from spiral.generation.think import ThinkSampler

        think = ThinkSampler(sampler, model, tokenizer, stop_ids(model, tokenizer), score_dtype)
        return ThinkPolicy(tokenizer, think, fmt, think_tokens, think_temperature)
    if stop_at_box:
        from spiral.prompting import BoxStop

        sampler.stop_rule = BoxStop(tokenizer)
    return LMPolicy(tokenizer, sampler, fmt)


class LMAgent(Agent):
    """An Agent that answers with a sampled response of a language-model policy."""

    def __init__(self, policy: LMPolicy, sampling: Sampling, name: str = "lm") -> None:
        self.policy, self.sampling, self.name = policy, sampling, name
        self.last_responses: list[Response] = []

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """The response text for one observation."""
        return self.act_batch([observation], [legal_actions])[0]

    def act_batch(
        self, observations: list[str], legal: list[list[str]], envs: list | None = None
    ) -> list[str]:
        """Response texts for several observations, sampled in one batch."""
        self.last_responses = self.policy.respond(observations, self.sampling, legal)
        return [r.text for r in self.last_responses]


def _run_config(spec: str) -> dict:
    """The config.json of the run a checkpoint or run folder belongs to, if any."""
    path = Path(spec)
    for folder in (path, path.parent.parent):
        if (folder / "config.json").is_file() and (folder / "checkpoints").is_dir():
            try:
                return json.loads((folder / "config.json").read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return {}
    return {}


def make_lm_agent(
    spec: str,
    seed: int | None = None,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_new_tokens: int | None = None,
    dtype: str = "auto",
    prompt_template: str | None = None,
    batch_size: int = 32,
    generator: str | None = None,
    action_mode: str | None = None,
    prompt_style: str | None = None,
    **_ignored,
) -> LMAgent:
    """Load model `spec` as an Agent; a run's own prompt template and length limit are the defaults."""
    run = _run_config(spec)
    template = prompt_template or run.get("model", {}).get("prompt_template", "auto")
    max_new = max_new_tokens or run.get("rollout", {}).get("max_new_tokens", 256)
    tokenizer = load_tokenizer(spec)
    model = load_model(spec, tokenizer)
    kind = generator or run.get("model", {}).get("generator", "fast")
    stop_at_box = bool(run.get("rollout", {}).get("stop_at_box", False))
    mode = action_mode or run.get("rollout", {}).get("action_mode", "free")
    style = prompt_style or run.get("model", {}).get("prompt_style", "paper")
    policy = build_policy(model, tokenizer, dtype, batch_size, seed or 0, template, generator=kind,
                          stop_at_box=stop_at_box, action_mode=mode, score_dtype=resolve_gen_dtype(dtype),
                          prompt_style=style, think_tokens=run.get("rollout", {}).get("think_tokens", 48),
                          think_temperature=run.get("rollout", {}).get("think_temperature", 0.0),
                          max_offer_units=run.get("rollout", {}).get("max_offer_units", 0))  # fmt: skip
    return LMAgent(policy, Sampling(temperature, top_p, max_new), name=f"lm:{Path(spec).name or spec}")
