"""PPO-clip learner with Dr. GRPO normalisation: token losses summed per sample and divided by a constant.

Per token t of a response with advantage A and ratio r_t = exp(logp_t - logp_old_t):
  loss_t = -min(r_t * A, clip(r_t, 1 - eps, 1 + eps) * A)
A sample's loss is sum_t loss_t / loss_norm (no length normalisation); the batch loss is the mean over
samples. No critic, no advantage normalisation, and no KL term unless kl_coef > 0.

Turns played with constrained action decoding (spiral.generation.actions) carry their legal moves' candidate responses:
their "token" is the move, log P(move | legal) is recomputed over the candidates (loss_norm 1), and the
entropy bonus and the KL term are exact over the legal moves. Free-form turns use a k3 KL estimate on the
sampled tokens and the full-vocabulary entropy at each response token.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

from runkit.errors import UserError
from spiral.generation.prefix import forward_shared_prefixes
from spiral.training.losses import kl_penalty, ppo_clip_loss
from spiral.training.schedule import linear_decay


def collate(turns: list) -> dict[str, torch.Tensor]:
    """Pad turns into one batch: prompts left-padded, responses right-padded, all responses start at column P."""
    P = max(len(t.prompt_ids) for t in turns)
    R = max(len(t.response_ids) for t in turns)
    B = len(turns)
    ids = torch.zeros((B, P + R), dtype=torch.long)
    attn = torch.zeros((B, P + R), dtype=torch.long)
    resp_mask = torch.zeros((B, R), dtype=torch.float32)
    old = torch.zeros((B, R), dtype=torch.float32)
    for b, t in enumerate(turns):
        p, r = len(t.prompt_ids), len(t.response_ids)
        ids[b, P - p : P] = torch.tensor(t.prompt_ids)
        ids[b, P : P + r] = torch.tensor(t.response_ids, dtype=torch.long)
        attn[b, P - p : P + r] = 1
        resp_mask[b, :r] = 1
        old[b, :r] = torch.tensor(t.old_logprobs, dtype=torch.float32)
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),  # (B, P+R) positions as if unpadded
        "response_ids": ids[:, P:],
        "response_mask": resp_mask,
        "old_logprobs": old,
        "advantages": torch.tensor([t.advantage for t in turns], dtype=torch.float32),
        "prompts": [list(t.prompt_ids) for t in turns],
        "responses": [list(t.response_ids) for t in turns],
    }


def response_logprobs(
    model: nn.Module, batch: dict, temperature: float = 1.0, share_prefix: bool = False, entropy: bool = False
):
    """Log-probs (B, R) of the response tokens under softmax(logits / temperature); with `entropy`, also the
    entropy (B, R) of that distribution at each response position.

    With `share_prefix`, prompt prefixes shared by several samples are computed once (same values, less work).
    """
    R = batch["response_ids"].shape[1]
    if share_prefix:
        out = forward_shared_prefixes(model, batch["prompts"], batch["responses"], logits_to_keep=R + 1)[0]
    else:
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"], use_cache=False, logits_to_keep=R + 1,
        )  # fmt: skip
    logits = out.logits[:, :-1, :].float()  # (B, R, V): position P-1+j predicts response token j
    if temperature > 0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, batch["response_ids"][..., None]).squeeze(-1)
    if entropy:
        return logp, -(logp_all.exp() * logp_all).sum(-1)
    return logp


def _is_oom(e: BaseException) -> bool:
    msg = str(e).lower()
    return (
        isinstance(e, (MemoryError, torch.OutOfMemoryError))
        or "out of memory" in msg
        or "can't allocate" in msg
    )


class Learner:
    """AdamW (no weight decay by default), grad-norm clipping, constant LR with optional linear warm-up."""

    def __init__(
        self, model: nn.Module, settings, temperature: float = 1.0, dtype: str = "fp32", ref_model=None,
        share_prefix: bool = False, frozen_bf16: bool = False, world=None, thought_temperature: float = 0.0,
    ):  # fmt: skip
        from spiral.device import autocast_for, device_of

        self.model, self.s, self.temperature, self.ref_model = model, settings, temperature, ref_model
        self.thought_temperature = thought_temperature or temperature  # think mode: the thoughts' tokens
        self.device = device_of(model)
        self.share_prefix = share_prefix
        # LoRA: the frozen base weights multiply in bf16 (spiral.generation.native.frozen); a full fine-tune's
        # trainable weights keep the fp32 path whatever this says
        self.frozen_bf16 = frozen_bf16
        for m in (model, ref_model):
            self._freeze(m)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps,
            weight_decay=settings.weight_decay,
        )  # fmt: skip
        self.autocast = autocast_for(dtype, self.device)
        self.dtype = dtype
        self.dp = None  # learner ranks under torchrun: this rank's pieces, DDP's all-reduce
        if world is not None and world.size > 1:
            from spiral.training.distributed import DataParallel

            self.dp = DataParallel(model, world, self.device)
        self.skipped_total = 0
        self._ref_scores: dict[tuple, torch.Tensor] = {}  # constrained turns, until set_reference

    def lr_at(self, step: int) -> float:
        """Learning rate of training step `step` (0-based)."""
        if self.s.warmup_steps > 0:
            return self.s.lr * min(1.0, (step + 1) / self.s.warmup_steps)
        return self.s.lr

    def entropy_at(self, step: int) -> float:
        """Entropy-bonus weight of training step `step`: learner.entropy_coef, moving linearly to
        learner.entropy_final over learner.entropy_decay_steps steps when that is > 0."""
        return linear_decay(step, self.s.entropy_coef, self.s.entropy_final, self.s.entropy_decay_steps)

    def update(self, turns: list, step: int) -> dict[str, float]:
        """`ppo_epochs` optimizer steps over `turns` (micro-batched); returns train/ metrics."""
        if not turns:
            return {"train/samples": 0.0, "train/skipped_updates": 0.0}
        try:
            if getattr(turns[0], "thought_len", -1) >= 0:  # think, then move (spiral.training.think_update)
                from spiral.training.think_update import update_think

                out = update_think(self, turns, step)
            elif turns[0].candidates is not None:
                if any(t.candidates is None for t in turns):
                    raise ValueError("a batch mixes constrained and free-form turns")
                out = self._update_constrained(turns, step)
            else:
                out = self._update(turns, step)
        except (RuntimeError, MemoryError) as e:
            if not _is_oom(e):
                raise
            raise UserError(
                f"out of memory in the learner; lower learner.micro_batch_size (now {self.s.micro_batch_size}) "
                "or rollout.max_new_tokens"
            ) from None
        if self.s.entropy_decay_steps > 0:
            out["train/entropy_coef"] = self.entropy_at(step)
        return out

    def _update(self, turns: list, step: int) -> dict[str, float]:
        lr, entropy = self._set_lr(step), self.entropy_at(step)
        # similar prompts together: less padding, and shared prefixes when share_prefix is on
        key = (
            (lambda t: t.prompt_ids)
            if self.share_prefix
            else (lambda t: len(t.prompt_ids) + len(t.response_ids))
        )
        order = sorted(turns, key=key)
        micro = [collate(chunk) for chunk in self._micro_batches(order)]
        ref = self.s.kl_coef > 0 and self.ref_model is not None
        ref_cache: dict[int, torch.Tensor] = {}  # micro-batch -> reference log-probs (fp32, once per update)
        n = len(turns)

        def terms(i: int):
            mb = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in micro[i].items()}
            mask = mb["response_mask"]
            logp, ent = response_logprobs(self.model, mb, self.temperature, self.share_prefix, True)
            per_sample, stats = ppo_clip_loss(logp, mb["old_logprobs"], mb["advantages"], mask, self.s.clip,
                                              self.s.loss_norm)  # fmt: skip
            pg = per_sample.sum() / n
            parts = {"pg_loss": pg.item(), "entropy": (ent * mask).sum().item()}
            loss = pg
            if ref:
                if i not in ref_cache:
                    with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
                        ref_cache[i] = response_logprobs(
                            self.ref_model, mb, self.temperature, self.share_prefix
                        )
                kl = kl_penalty(logp, ref_cache[i], mask, self.s.loss_norm).sum() / n
                loss = loss + self.s.kl_coef * kl
                parts["kl"] = kl.item()
            if entropy:
                loss = loss - entropy * ((ent * mask).sum(-1) / self.s.loss_norm).sum() / n
            return loss, parts, stats, mask.sum().item()

        return self._epochs(len(micro), terms, n, lr)

    def _set_lr(self, step: int) -> float:
        lr = self.lr_at(step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def _epochs(self, pieces: int, terms, n: int, lr: float) -> dict[str, float]:
        """`ppo_epochs` optimizer steps, each accumulating the gradients of `pieces` micro-batches.

        `terms(i)` returns micro-batch i's (loss, summed metric parts, ppo stats, weight in tokens); a
        non-finite loss or gradient norm skips that optimizer step. Under DDP each rank runs its own pieces
        (spiral.training.distributed) and the last one's backward all-reduces the gradients."""
        sums: dict[str, float] = {}
        skipped = 0
        dp = self.dp
        plan = dp.pieces(pieces) if dp is not None else list(range(pieces))
        scale = dp.world.size if dp is not None else 1  # DDP averages over ranks; the batch loss is their sum
        self.model.train()
        for _epoch in range(self.s.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            epoch_loss, finite = 0.0, True
            for j, i in enumerate(plan):
                with (
                    dp.context(sync=j == len(plan) - 1) if dp is not None else nullcontext(),
                    torch.enable_grad() if self.s.update else torch.no_grad(),
                ):
                    with self.autocast:
                        loss, parts, stats, w = dp.forward(terms, i) if dp is not None else terms(i)
                    if not torch.isfinite(loss):
                        finite = False
                        if dp is None:
                            break
                    if self.s.update:
                        (loss * scale).backward()  # under DDP every rank joins every all-reduce
                epoch_loss += loss.item()
                for k, v in parts.items():
                    _add(sums, k, v)
                for k, v in stats.items():
                    if k == "ratio_max":
                        _max(sums, k, v.item())
                    else:
                        _add(sums, k, v.item() * w)
                _add(sums, "tokens", w)
            if dp is not None:
                finite = dp.all_finite(finite)
                epoch_loss = dp.reduce({"loss": epoch_loss}, (), ())["loss"]
            grad_norm = self._grad_norm() if finite and self.s.update else 0.0
            if not finite or not math.isfinite(grad_norm):
                self.optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            if self.s.update:
                self.optimizer.step()
            _add(sums, "loss", epoch_loss)
            _add(sums, "grad_norm", grad_norm)
            _add(sums, "epochs_done", 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_total += skipped
        if dp is not None:
            sums = dp.reduce(sums, ("loss", "grad_norm", "epochs_done"), ("ratio_max",))
        return self._metrics(sums, n, lr, skipped)

    def _micro_batches(self, order: list) -> list[list]:
        """Consecutive turns in micro-batches of `micro_batch_tokens` tokens (prompt + response), or of
        `micro_batch_size` turns when the token budget is 0."""
        if self.s.micro_batch_tokens <= 0:
            k = self.s.micro_batch_size
            return [order[i : i + k] for i in range(0, len(order), k)]
        out: list[list] = [[]]
        used = 0
        for t in order:
            size = len(t.prompt_ids) + len(t.response_ids)
            if out[-1] and used + size > self.s.micro_batch_tokens:
                out.append([])
                used = 0
            out[-1].append(t)
            used += size
        return out

    def _update_constrained(self, turns: list, step: int) -> dict[str, float]:
        """PPO-clip on log P(move | legal) of constrained turns: each distinct prompt is scored once per epoch
        (its candidates share its cache), the turns that played it take their move's log-prob from it."""
        from spiral.generation.actions import score_candidates, token_chunks

        lr, entropy = self._set_lr(step), self.entropy_at(step)
        keys: dict[tuple, int] = {}
        members: list[list] = []
        for t in turns:
            key = (tuple(t.prompt_ids), tuple(tuple(c) for c in t.candidates))
            if key not in keys:
                keys[key] = len(keys)
                members.append([])
            members[keys[key]].append(t)
        distinct = list(keys)
        prompts = [list(p) for p, _ in distinct]
        cands = [[list(c) for c in cs] for _, cs in distinct]
        chunks = token_chunks(prompts, self.s.micro_batch_tokens if self.s.micro_batch_tokens > 0 else 4096)
        use_ref = self.s.kl_coef > 0 and self.ref_model is not None
        n, dev = len(turns), self.device

        def terms(i: int):
            chunk = chunks[i]
            ref = self._constrained_ref([distinct[k] for k in chunk], [prompts[k] for k in chunk],
                                        [cands[k] for k in chunk]) if use_ref else None  # fmt: skip
            scores = score_candidates(self.model, [prompts[k] for k in chunk], [cands[k] for k in chunk],
                                      self.temperature)  # fmt: skip
            # every legal move of the chunk's prompts in one vector: segment j holds prompt chunk[j]'s moves
            lp = torch.cat([torch.log_softmax(sc.float(), dim=-1) for sc in scores])
            sizes = torch.tensor([len(sc) for sc in scores], device=dev)
            seg = torch.repeat_interleave(torch.arange(len(chunk), device=dev), sizes)
            weight = torch.tensor([len(members[k]) / n for k in chunk], device=dev)  # by the prompt's turns
            w = weight[seg]
            p = lp.exp()
            ent = (w * -(p * lp)).sum()  # exact entropy over the legal moves
            kl = (w * p * (lp - torch.cat(ref))).sum() if ref is not None else None
            start = torch.cumsum(sizes, 0) - sizes
            played = [(j, t) for j, k in enumerate(chunk) for t in members[k]]
            logp = lp[torch.tensor([int(start[j]) + t.choice for j, t in played], device=dev)][:, None]
            old = torch.tensor([t.old_logprobs[0] for _, t in played], device=dev)[:, None]
            adv = torch.tensor([t.advantage for _, t in played], device=dev)
            per_sample, stats = ppo_clip_loss(logp, old, adv,
                                              torch.ones_like(logp), self.s.clip, 1.0)  # fmt: skip
            pg = per_sample.sum() / n
            loss = pg - entropy * ent
            parts = {"pg_loss": pg.item(), "entropy": ent.item() * n}
            if ref is not None:
                loss = loss + self.s.kl_coef * kl
                parts["kl"] = kl.item()
            return loss, parts, stats, float(len(played))

        out = self._epochs(len(chunks), terms, n, lr)
        out["train/distinct_prompts"] = float(len(distinct))
        return out

    def set_reference(self, ref_model, adapters: dict | None = None) -> None:
        """A new KL reference (the scores cached for the old one are dropped); `adapters` (the magnet's LoRA
        weights, when they are not the current ones) matter only to the other learner ranks."""
        self.ref_model = ref_model
        self._freeze(ref_model)
        self._ref_scores.clear()

    def _freeze(self, model) -> None:
        if self.frozen_bf16 and model is not None:
            from spiral.generation.native import frozen

            frozen.enable(model)

    @torch.no_grad()
    def _constrained_ref(self, distinct: list[tuple], prompts, cands) -> list[torch.Tensor]:
        """log P_ref(move | legal) of each distinct prompt (cached until set_reference)."""
        from spiral.device import autocast_for
        from spiral.generation.actions import score_candidates

        todo = [i for i, key in enumerate(distinct) if key not in self._ref_scores]
        if todo:
            with autocast_for(self.dtype, self.device):
                scores = score_candidates(self.ref_model, [prompts[i] for i in todo], [cands[i] for i in todo],
                                          self.temperature)  # fmt: skip
            for i, sc in zip(todo, scores, strict=True):
                self._ref_scores[distinct[i]] = torch.log_softmax(sc.float(), dim=-1)
        return [self._ref_scores[key] for key in distinct]

    def _grad_norm(self) -> float:
        clip = self.s.grad_clip if self.s.grad_clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(self.params, clip))

    def _metrics(self, sums: dict[str, float], n: int, lr: float, skipped: int) -> dict[str, float]:
        epochs = max(sums.get("epochs_done", 0), 1)
        tokens = max(sums.get("tokens", 0), 1)
        out = {
            "train/samples": float(n),
            "train/lr": lr,
            "train/skipped_updates": float(skipped),
            "train/skipped_total": float(self.skipped_total),
            "train/tokens": sums.get("tokens", 0) / max(self.s.ppo_epochs, 1),
        }
        if sums.get("epochs_done"):
            out["train/loss"] = sums["loss"] / epochs
            out["train/pg_loss"] = sums["pg_loss"] / self.s.ppo_epochs
            out["train/grad_norm"] = sums["grad_norm"] / epochs
        for k in ("clip_frac", "ratio_mean", "approx_kl"):
            if k in sums:
                out[f"train/{k}"] = sums[k] / tokens
        if "ratio_max" in sums:
            out["train/ratio_max"] = sums["ratio_max"]
        if "kl" in sums:
            out["train/kl"] = sums["kl"] / self.s.ppo_epochs
        if "entropy" in sums:  # mean per scored token (free-form) or per turn (constrained)
            out["train/entropy"] = sums["entropy"] / tokens
        return out

    def state_dict(self) -> dict:
        """Optimizer state for a checkpoint."""
        return {"optimizer": self.optimizer.state_dict(), "skipped_total": self.skipped_total}

    def load_state_dict(self, state: dict) -> None:
        """Restore the optimizer state of a checkpoint; a state that does not fit the parameters is one line
        (it would otherwise fail in the middle of the first update)."""
        opt = state["optimizer"]
        saved = opt.get("state", {}) if isinstance(opt, dict) else {}
        for i, p in enumerate(self.params):
            for name, t in (saved.get(i) or saved.get(str(i)) or {}).items():
                if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape != p.shape:
                    raise UserError(
                        f"the checkpoint's optimizer state {name} of parameter {i} has shape {tuple(t.shape)}, "
                        f"the parameter {tuple(p.shape)}; the checkpoint does not belong to this model"
                    )
        self.optimizer.load_state_dict(opt)
        self.skipped_total = int(state.get("skipped_total", 0))


def _add(d: dict[str, float], k: str, v: float) -> None:
    d[k] = d.get(k, 0.0) + v


def _max(d: dict[str, float], k: str, v: float) -> None:
    d[k] = max(d.get(k, -math.inf), v)
