"""The SFT run: evaluate the model, fine-tune it on expert turns, evaluate again, save, report.

It is a `spiral.training.trainer.Trainer` (the same model loading, LoRA or full fine-tuning, generators,
evaluation against fixed opponents, exact Kuhn readout, checkpoint format, plots and report) whose training is
one supervised phase instead of self-play: `spiral.training.warmup.finetune` (mean token NLL of the responses,
AdamW, grad-norm clip 1) on the expert examples. Before and after, on held-out expert turns from other deals:
the mean token loss of the expert responses (`sft/heldout_loss_*`) and the share of turns where the model's
greedy move is the expert's (`sft/agreement_*`; for a mixed expert such as Kuhn Nash this is capped below 1).
The checkpoint's step is the number of optimizer updates.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from runkit.io import atomic_write_json
from spiral.config import Settings
from spiral.generation.base import Sampling
from spiral.prompting import normalize_action, parse_action
from spiral.sft.expert import ExpertTurn, examples, play_expert
from spiral.sft.settings import SFTSettings
from spiral.training.learner import collate, response_logprobs
from spiral.training.trainer import Trainer
from spiral.training.warmup import finetune, finetune_batched

HELDOUT_SEED = 1_000_003  # held-out deals: another stream than the training games'
PROBE_BATCH = 64


@torch.no_grad()
def heldout_loss(model, data: list, share_prefix: bool) -> float:
    """Mean token NLL of the examples' responses given their prompts."""
    if not data:
        return float("nan")
    model.eval()
    total, tokens = 0.0, 0.0
    ranked = sorted(data, key=lambda e: e.prompt_ids)
    for i in range(0, len(ranked), PROBE_BATCH):
        mb = collate(ranked[i : i + PROBE_BATCH])
        logp = response_logprobs(model, mb, share_prefix=share_prefix)
        total += float(-(logp * mb["response_mask"]).sum())
        tokens += float(mb["response_mask"].sum())
    return total / tokens


def agreement(policy, turns: list[ExpertTurn], max_new_tokens: int) -> dict[str, float]:
    """Greedy moves of the policy on the expert's turns: the share that is the expert's move, and (free-form)
    the share that is a legal move at all."""
    if not turns:
        return {}
    same = valid = 0
    greedy = Sampling(0.0, 1.0, max_new_tokens)
    for i in range(0, len(turns), PROBE_BATCH):
        batch = turns[i : i + PROBE_BATCH]
        responses = policy.respond([t.observation for t in batch], greedy, [t.legal for t in batch])
        for t, r in zip(batch, responses, strict=True):
            move = parse_action(r.text, t.legal, "strict")
            valid += move is not None
            same += move is not None and normalize_action(move) == normalize_action(t.move)
    return {"agreement": same / len(turns), "valid_rate": valid / len(turns)}


class SFTTrainer(Trainer):
    """A Trainer whose training is supervised fine-tuning on expert turns (see the module docstring)."""

    def __init__(self, settings: Settings, sft: SFTSettings, run, log=None) -> None:
        super().__init__(settings, run, log=log)
        self.sft = sft
        self.metrics_before: dict[str, float] = {}

    def _stop_id(self) -> int:
        tok = self.tokenizer
        return tok.eos_token_id if tok.eos_token_id is not None else int(self.policy.generator.eos_ids[0])

    def _data(self, turns: int, seed: int) -> tuple[list[ExpertTurn], list]:
        s, f = self.s, self.sft
        expert = play_expert(s.rollout.env_ids, s.rollout.env_kwargs, f.expert, f.opponents, turns, seed,
                             f.rationale)  # fmt: skip
        constrained = s.rollout.action_mode == "constrained"
        return expert, examples(expert, self.policy.format, self.tokenizer, constrained, self._stop_id())

    def probe(self, turns: list[ExpertTurn], data: list) -> dict[str, float]:
        """Held-out loss and greedy agreement (generation streams left as they were)."""
        gen_state = self.policy.generator.get_state()
        try:
            out = {"heldout_loss": heldout_loss(self.model, data, self.learner.share_prefix)}
            out.update(agreement(self.policy, turns, self.s.rollout.max_new_tokens))
        finally:
            self.policy.generator.set_state(gen_state)
        return out

    def train(self) -> dict[str, float]:
        """Evaluate, fine-tune, evaluate, save, report; return the metrics after fine-tuning."""
        s, f = self.s, self.sft
        t0 = time.perf_counter()
        expert, train_data = self._data(f.expert_turns, s.run.seed)
        held, held_data = self._data(f.eval_turns, s.run.seed + HELDOUT_SEED) if f.eval_turns else ([], [])
        moves: dict[str, int] = {}
        for t in expert:
            moves[normalize_action(t.move)] = moves.get(normalize_action(t.move), 0) + 1
        counts = {"sft/expert_turns": float(len(expert)), "sft/expert_games": float(len({t.game for t in expert})),
                  "sft/distinct_prompts": float(len({tuple(e.prompt_ids) for e in train_data})),
                  "sft/heldout_turns": float(len(held))}  # fmt: skip
        self.log(f"sft: {len(expert)} expert turns from {int(counts['sft/expert_games'])} games "
                 f"({int(counts['sft/distinct_prompts'])} distinct prompts), {len(held)} held out")  # fmt: skip
        first = self.evaluate("base") if s.eval.at_start else {}
        if s.eval.exploitability_every:
            first.update(self.readout())
        before = self.probe(held, held_data)
        self.metrics_before = {f"sft/{k}_before": v for k, v in before.items()}
        self.metrics.log(0, {**first, **counts, **self.metrics_before})
        self.log(f"sft: before: {_fmt(before)}")
        t1 = time.perf_counter()
        if f.batch_size:
            stats = finetune_batched(self.model, train_data, f.lr, f.epochs, f.batch_size, f.micro_batch_size,
                                     s.run.seed)  # fmt: skip
        else:
            stats = finetune(self.model, train_data, f.lr, f.epochs, f.micro_batch_size, s.run.seed,
                             self.learner.share_prefix)  # fmt: skip
        seconds = time.perf_counter() - t1
        self.policy.generator.load_weights(self.model)
        self.step = max(1, int(stats["sft_updates"]))
        after = self.probe(held, held_data)
        self.log(f"sft: {int(stats['sft_updates'])} updates in {seconds:.0f} s; after: {_fmt(after)}")
        last = {**counts, **{f"sft/{k}_after": v for k, v in after.items()}, "sft/train_loss": stats["sft_loss"],
                "sft/updates": stats["sft_updates"], "sft/seconds": seconds}  # fmt: skip
        last.update(self.evaluate("sft"))
        if s.eval.exploitability_every:
            last.update(self.readout())
        self.metrics.log(self.step, last)
        self.save()
        atomic_write_json(self.run.path / "sft.json", {
            "expert": f.expert, "opponents": f.opponents, "games": s.rollout.env_ids, "moves": moves,
            "before": before, "after": after, "train_loss": stats["sft_loss"], "updates": stats["sft_updates"],
            "fine_tune_seconds": seconds, "total_seconds": time.perf_counter() - t0, **counts,
        })  # fmt: skip
        self.metrics.close()
        if s.run.plots:
            self.finish_report()
        return last


def _fmt(m: dict[str, Any]) -> str:
    return json.dumps({k: round(v, 4) for k, v in m.items()})
