"""Format warm-up: rejection-sampled fine-tuning on the policy's own valid answers to game observations.

Each round samples self-play turns, keeps the answers whose move is legal (strict: a boxed legal move;
lenient: also an answer that names a legal move, with \\boxed{move} appended), cuts each kept answer right
after its move and ends it with the stop token, then fine-tunes on them (mean token NLL). The moves are the
policy's own, whatever their outcome: no expert moves, so the strategy must still come from self-play.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter

import torch

from spiral.generation.base import Sampling
from spiral.prompting import extract_boxed, normalize_action, parse_action
from spiral.training.learner import collate, response_logprobs
from spiral.training.rollout import RolloutCollector, Turn

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def valid_rates(turns: list[Turn]) -> dict[str, float]:
    """Fractions of turns whose move is legal under strict and lenient parsing."""
    n = max(len(turns), 1)
    return {
        "valid_rate_strict": sum(t.strict_ok for t in turns) / n,
        "valid_rate_lenient": sum(t.lenient_ok for t in turns) / n,
    }


def _end_of_last_box(text: str) -> int:
    """Index just after the closing brace of the last complete box, or -1."""
    for m in reversed(list(_BOX.finditer(text))):
        depth = 0
        for i in range(m.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return i + 1
    return -1


def _end_of_last_mention(text: str, action: str) -> int:
    """Index just after the last mention of `action` (bare or bracketed, any case), or -1."""
    word = re.escape(normalize_action(action))
    hits = list(re.finditer(rf"\[?\s*{word}\s*\]?", text, flags=re.IGNORECASE))
    return hits[-1].end() if hits else -1


def accepted_answer(turn: Turn, accept: str) -> tuple[str, str] | None:
    """(answer text ending with its move, the move) when `turn` is acceptable, else None."""
    move = parse_action(turn.response_text, turn.legal_actions, "strict")
    if move is not None:
        return turn.response_text[: _end_of_last_box(turn.response_text)], move
    if accept != "lenient" or extract_boxed(turn.response_text) is not None:
        return None  # a box naming an illegal move is never repaired
    move = parse_action(turn.response_text, turn.legal_actions, "lenient")
    if move is None:
        return None
    cut = _end_of_last_mention(turn.response_text, move)
    return f"{turn.response_text[:cut].rstrip()}\n\\boxed{{{normalize_action(move)}}}", move


def build_examples(
    turns: list[Turn], tokenizer, accept: str, max_per_action: int, stop_id: int
) -> list[Turn]:
    """Turns re-tokenised as fine-tuning examples (answer + stop token), at most `max_per_action` per move at
    each decision point (game, set of legal moves)."""
    counts: Counter = Counter()
    out = []
    for t in turns:
        got = accepted_answer(t, accept)
        if got is None:
            continue
        text, move = got
        key = (t.env_id, tuple(t.legal_actions), move)
        if max_per_action and counts[key] >= max_per_action:
            continue
        counts[key] += 1
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [stop_id]
        out.append(
            Turn(t.game_id, t.env_id, t.role, t.prompt_ids, ids, [0.0] * len(ids), text, t.legal_actions)
        )
    return out


def short_decisions(turns: list[Turn], examples: list[Turn], need: int) -> list[Turn]:
    """Up to `need` turns of each decision point (game, legal moves) where a legal move has < `need` examples."""
    kept = Counter(
        (e.env_id, tuple(e.legal_actions), normalize_action(extract_boxed(e.response_text) or ""))
        for e in examples
    )
    taken: Counter = Counter()
    out = []
    for t in turns:
        point = (t.env_id, tuple(t.legal_actions))
        if taken[point] < need and any(kept[(*point, normalize_action(a))] < need for a in t.legal_actions):
            taken[point] += 1
            out.append(t)
    return out


def top_up_turns(policy, turns: list[Turn], times: int, sampling: Sampling) -> list[Turn]:
    """`times` fresh answers to each turn's prompt, as turns of the same decision point."""
    src = [t for t in turns for _ in range(times)]
    gen = policy.generator.generate([t.prompt_ids for t in src], sampling)
    texts = policy.tokenizer.batch_decode(gen.tokens, skip_special_tokens=True)
    return [
        Turn(t.game_id, t.env_id, t.role, t.prompt_ids, ids, lps, text, t.legal_actions)
        for t, ids, lps, text in zip(src, gen.tokens, gen.logprobs, texts, strict=True)
    ]


def finetune(
    model,
    examples: list[Turn],
    lr: float,
    epochs: int,
    micro_batch_size: int,
    seed: int,
    share_prefix: bool = False,
) -> dict[str, float]:
    """Plain SFT: mean token NLL of the answers given their prompts, AdamW, grad-norm clip 1."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    # micro-batches of similar prompts (shared prefixes are computed once), visited in a random order
    ranked = sorted(examples, key=lambda e: e.prompt_ids)
    micro = [collate(ranked[i : i + micro_batch_size]) for i in range(0, len(ranked), micro_batch_size)]
    losses = []
    model.train()
    for _ in range(epochs):
        for j in torch.randperm(len(micro), generator=gen).tolist():
            mb = micro[j]
            logp = response_logprobs(model, mb, share_prefix=share_prefix)
            loss = -(logp * mb["response_mask"]).sum() / mb["response_mask"].sum()
            if not torch.isfinite(loss):
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item())
    opt.zero_grad(set_to_none=True)
    return {"sft_loss": sum(losses) / max(len(losses), 1), "sft_updates": float(len(losses))}


def weighted_backward(model, batch: list[Turn], micro_batch_size: int) -> tuple[float, int]:
    """Backward of the batch's mean token NLL with each distinct (prompt, response) pair computed once and
    weighted by its count; returns the loss (nan if not finite, gradients then partial) and the distinct pairs.

    The pairs are scored as constrained decoding scores moves (`spiral.generation.actions.score_candidates`):
    each distinct prompt once, prefixes shared between prompts once, its responses side by side after it.
    `micro_batch_size` distinct prompts per forward/backward."""
    from spiral.generation.actions import score_candidates

    counts = Counter((tuple(t.prompt_ids), tuple(t.response_ids)) for t in batch)
    responses: dict[tuple, list[tuple]] = {}
    for prompt, response in sorted(counts):  # similar prompts side by side
        responses.setdefault(prompt, []).append(response)
    prompts = list(responses)
    tokens = sum(c * len(r) for (_, r), c in counts.items())
    total = 0.0
    for j in range(0, len(prompts), micro_batch_size):
        part = prompts[j : j + micro_batch_size]
        scores = score_candidates(
            model, [list(p) for p in part], [[list(r) for r in responses[p]] for p in part]
        )
        weight = torch.tensor([float(counts[(p, r)]) for p in part for r in responses[p]])
        loss = -(torch.cat(scores).float() * weight).sum() / tokens
        if not torch.isfinite(loss):
            return float("nan"), len(counts)
        loss.backward()
        total += loss.item()
    return total, len(counts)


def finetune_batched(
    model,
    examples: list[Turn],
    lr: float,
    epochs: int,
    batch_size: int,
    micro_batch_size: int,
    seed: int,
) -> dict[str, float]:
    """SFT with `batch_size` examples per optimizer step, each identical (prompt, response) pair of a batch
    computed once and weighted by its count: the same loss and gradient as the batch with its repeats (mean token
    NLL over all its answers), at the cost of its distinct pairs only. Kuhn has 12 information sets, so a batch
    of thousands of expert turns holds at most 24 distinct pairs. `micro_batch_size` distinct prompts per
    forward/backward (gradient accumulation within the step); shared prompt prefixes are always computed once."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses, distinct = [], 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(examples), generator=gen).tolist()
        for start in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[start : start + batch_size]]
            opt.zero_grad(set_to_none=True)
            total, keys = weighted_backward(model, batch, micro_batch_size)
            distinct += keys
            if not math.isfinite(total):
                opt.zero_grad(set_to_none=True)
                continue
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(total)
    opt.zero_grad(set_to_none=True)
    return {"sft_loss": sum(losses) / max(len(losses), 1), "sft_updates": float(len(losses)),
            "sft_distinct_per_update": distinct / max(len(losses), 1)}  # fmt: skip


def run_warmup(model, policy, collector: RolloutCollector, settings, log=print) -> dict[str, float]:
    """Measure valid rates, run `settings.warmup.rounds` sample-filter-fine-tune rounds, measure again."""
    w = settings.warmup
    t0 = time.perf_counter()
    train_sampling = collector.sampling
    before = valid_rates(collector.collect(w.eval_samples).turns)
    out = {f"warmup/{k}_before": v for k, v in before.items()}
    log(
        f"warm-up: valid rate before: strict {before['valid_rate_strict']:.3f}, lenient {before['valid_rate_lenient']:.3f}"
    )
    stop_id = (
        policy.generator.eos_ids[0].item()
        if policy.tokenizer.eos_token_id is None
        else policy.tokenizer.eos_token_id
    )
    kept_total, share = 0, settings.model.share_prefix and not settings.model.gradient_checkpointing
    train_parse = collector.parse_mode
    try:
        # lenient games go on past a move that lacks a box, so later decisions get sampled too
        collector.sampling = Sampling(w.temperature, 1.0, train_sampling.max_new_tokens)
        collector.parse_mode = "lenient"
        for r in range(w.rounds):
            t1 = time.perf_counter()
            turns = collector.collect(w.samples).turns
            examples = build_examples(turns, policy.tokenizer, w.accept, w.max_per_action, stop_id)
            if w.top_up and w.max_per_action:  # resample the prompts of decision points short of examples
                short = short_decisions(turns, examples, w.max_per_action)
                if short:
                    extra = top_up_turns(policy, short, w.top_up, collector.sampling)
                    examples = build_examples(
                        turns + extra, policy.tokenizer, w.accept, w.max_per_action, stop_id
                    )
                    log(
                        f"warm-up round {r + 1}: top-up sampled {len(extra)} answers at {len(short)} short turns"
                    )
            kept_total += len(examples)
            t2 = time.perf_counter()
            seed = settings.run.seed + r
            stats = (
                finetune(model, examples, w.lr, w.epochs, w.micro_batch_size, seed, share) if examples else {}
            )
            policy.generator.load_weights(model)
            moves = Counter(normalize_action(extract_boxed(e.response_text) or "") for e in examples)
            log(f"warm-up round {r + 1}/{w.rounds}: kept {len(examples)}/{len(turns)} answers {dict(moves)}; "
                f"sft loss {stats.get('sft_loss', float('nan')):.3f}; sampling {t2 - t1:.0f} s, "
                f"fine-tuning {time.perf_counter() - t2:.0f} s")  # fmt: skip
    finally:
        collector.sampling, collector.parse_mode = train_sampling, train_parse
    after = valid_rates(collector.collect(w.eval_samples).turns)
    log(
        f"warm-up: valid rate after: strict {after['valid_rate_strict']:.3f}, lenient {after['valid_rate_lenient']:.3f}"
    )
    out.update({f"warmup/{k}_after": v for k, v in after.items()})
    out.update({"warmup/examples": float(kept_total), "warmup/seconds": time.perf_counter() - t0})
    return out
