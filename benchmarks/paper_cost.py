"""Analytical cost ESTIMATE of the SPIRAL paper's recipe (preset `spiral-paper-qwen3-4b`): GPU memory per GPU and
seconds per training step, from FLOPs and bytes only (nothing is run on a GPU).

Usage: python benchmarks/paper_cost.py [--response-tokens 1500] [--out docs/results/paper_preset_cost.md]

Recipe (Liu et al. 2025, arXiv 2506.24119): Qwen3-4B-Base fully fine-tuned with AdamW (lr 1e-6), 128 turns per
step, 2 PPO epochs over each batch, temperature 1.0, at most 4,096 new tokens per turn, no KL reference model,
400 steps. Hardware: H100 SXM (989 TFLOP/s dense bf16, 3.35 TB/s, 80 GB) and H200 (same FLOP/s, 4.8 TB/s,
141 GB). Every number is an estimate under the assumptions the page lists, not a measurement.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

GB = 1e9
NOTICE = "Estimate, not measured; replace with the measurement of scripts/gpu_check.sh when a GPU runs it."
COMMAND = "python benchmarks/paper_cost.py --out docs/results/paper_preset_cost.md"


@dataclass(frozen=True)
class Arch:
    """A decoder-only transformer with grouped-query attention and a SwiGLU MLP (Qwen3 layout)."""

    hidden: int = 2560
    intermediate: int = 9728
    layers: int = 36
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    vocab: int = 151_936
    tied_embeddings: bool = True

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


QWEN3_4B = Arch()


@dataclass(frozen=True)
class Gpu:
    name: str
    flops: float  # dense bf16 FLOP/s
    bandwidth: float  # HBM bytes/s
    memory: float  # bytes taken as usable


H100 = Gpu("H100 SXM 80 GB", 989e12, 3.35e12, 80 * GB)
H200 = Gpu("H200 141 GB", 989e12, 4.8e12, 141 * GB)


@dataclass(frozen=True)
class Recipe:
    turns: int = 128
    epochs: int = 2
    steps: int = 400
    prompt_tokens: int = 300
    response_tokens: int = 1500
    max_new_tokens: int = 4096
    micro_batch_tokens: int = 0  # learner micro-batch; 0: one worst-case turn (prompt + max new tokens)

    def __post_init__(self):
        if self.micro_batch_tokens <= 0:
            object.__setattr__(self, "micro_batch_tokens", self.prompt_tokens + self.max_new_tokens)


@dataclass(frozen=True)
class Assumptions:
    mfu: float = 0.40  # fraction of peak FLOP/s reached by compute-bound work
    bw_eff: float = 0.50  # fraction of HBM bandwidth reached by memory-bound work
    vllm_mem_fraction: float = 0.90  # vLLM gpu_memory_utilization
    overhead_gb: float = 2.0  # CUDA context, cuBLAS/NCCL workspaces, allocator slack, per GPU and phase
    pcie_gbs: float = 25.0  # host <-> GPU copies (offloading the learner's states)
    link_gbs: float = 250.0  # effective NVLink bandwidth per GPU for collectives and weight sync
    updates_per_epoch: int = 1  # optimizer steps per PPO epoch (the whole batch as one mini-batch)


def param_count(arch: Arch) -> dict[str, int]:
    """Parameters by part, from the shapes (Qwen3: no biases, RMSNorm weights incl. per-head q/k norms)."""
    h = arch.hidden
    attention = h * arch.q_dim + 2 * h * arch.kv_dim + arch.q_dim * h
    mlp = 3 * h * arch.intermediate
    norms = 2 * h + 2 * arch.head_dim
    embedding = arch.vocab * h
    parts = {"attention": arch.layers * attention, "mlp": arch.layers * mlp, "norms": arch.layers * norms + h,
             "embedding": embedding, "lm_head": 0 if arch.tied_embeddings else embedding}  # fmt: skip
    parts["total"] = sum(parts.values())
    return parts


def matmul_params(arch: Arch) -> int:
    """Weights used in a matmul per token: every layer's projections plus the output layer (tied or not)."""
    p = param_count(arch)
    return p["attention"] + p["mlp"] + arch.vocab * arch.hidden


def kv_bytes_per_token(arch: Arch) -> int:
    """bf16 keys and values of every layer: 2 (K and V) * layers * kv_heads * head_dim * 2 bytes."""
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * 2


def attention_flops_forward(arch: Arch, seq_len: int) -> float:
    """Causal attention forward of one sequence: QK^T and AV cost 4 * q_dim FLOPs per (query, key) pair and
    layer; a causal sequence of S tokens has ~S^2 / 2 pairs, so 2 * layers * q_dim * S^2."""
    return 2.0 * arch.layers * arch.q_dim * seq_len**2


def forward_flops(arch: Arch, n_seqs: int, seq_len: int) -> float:
    """One forward pass over n_seqs sequences: 2 * N_matmul per token plus the attention term."""
    return n_seqs * (2.0 * matmul_params(arch) * seq_len + attention_flops_forward(arch, seq_len))


def learner_flops(arch: Arch, n_seqs: int, seq_len: int, epochs: int, checkpointing: bool = False,
                  recompute_old: bool = False) -> float:  # fmt: skip
    """PPO update: per epoch forward + backward = 3 forwards (6 * N per token plus 3x the attention forward), one
    more forward with gradient checkpointing; plus one forward for the old log-probs if they are recomputed."""
    fwd = forward_flops(arch, n_seqs, seq_len)
    per_epoch = (4.0 if checkpointing else 3.0) * fwd
    return epochs * per_epoch + (fwd if recompute_old else 0.0)


def state_bytes(arch: Arch, shards: int = 1) -> dict[str, float]:
    """Mixed-precision AdamW: bf16 weights (2) + bf16 grads (2) + fp32 master (4) + 2 fp32 moments (8) = 16 bytes
    per parameter; ZeRO-3/FSDP divides all of it by the number of shards (1 = replicated, as DDP)."""
    n = param_count(arch)["total"]
    return {"bf16_weights_grads": 4.0 * n / shards, "fp32_master_moments": 12.0 * n / shards}


def zero3_buffer_bytes(arch: Arch, shards: int) -> float:
    """Gathered bf16 weights of the largest unit (embedding or one layer), current plus one prefetched."""
    if shards <= 1:
        return 0.0
    p = param_count(arch)
    return 2 * 2.0 * max((p["attention"] + p["mlp"]) / arch.layers, arch.vocab * arch.hidden)


def activation_values_per_token_layer(arch: Arch) -> int:
    """bf16 values a layer keeps for backward, per token (flash attention: nothing quadratic): the two norm inputs
    and outputs (4h), q before and after norm/RoPE and the attention output (3 q_dim), k twice and v (3 kv_dim), the
    MLP's gate, up, SiLU(gate) and product (4 intermediate)."""
    return 4 * arch.hidden + 3 * arch.q_dim + 3 * arch.kv_dim + 4 * arch.intermediate


def activation_bytes(arch: Arch, tokens: int, checkpointing: bool) -> float:
    """Activations of one micro-batch of `tokens` tokens. With per-layer checkpointing: every layer's bf16 input
    plus one layer's full activations while it is recomputed."""
    layer = 2.0 * tokens * activation_values_per_token_layer(arch)
    if not checkpointing:
        return arch.layers * layer
    return arch.layers * 2.0 * tokens * arch.hidden + layer


def logits_bytes(arch: Arch, tokens: int) -> float:
    """fp32 logits over the vocabulary and their fp32 gradient (8 bytes per token and vocab entry)."""
    return 8.0 * tokens * arch.vocab


def learner_memory(
    arch: Arch, r: Recipe, a: Assumptions, shards: int, checkpointing: bool
) -> dict[str, float]:
    """One learner GPU: optimizer states (sharded), ZeRO-3 buffer, one micro-batch's activations and logits."""
    parts = dict(state_bytes(arch, shards))
    parts["zero3_buffer"] = zero3_buffer_bytes(arch, shards)
    parts["activations"] = activation_bytes(arch, r.micro_batch_tokens, checkpointing)
    parts["logits"] = logits_bytes(arch, r.micro_batch_tokens)
    parts["overhead"] = a.overhead_gb * GB
    parts["total"] = sum(parts.values())
    return parts


def rollout_memory(arch: Arch, a: Assumptions, n_seqs: int, seq_len: int) -> dict[str, float]:
    """vLLM on one GPU: bf16 weights and the KV cache of all its sequences at full length."""
    parts = {"vllm_weights": 2.0 * param_count(arch)["total"], "kv_cache": float(n_seqs * seq_len * kv_bytes_per_token(arch)),
             "overhead": a.overhead_gb * GB}  # fmt: skip
    parts["total"] = sum(parts.values())
    return parts


def concurrency(arch: Arch, gpu: Gpu, a: Assumptions, n_seqs: int, seq_len: int) -> int:
    """Sequences vLLM can hold at full length in its KV budget (fraction of the card minus weights and overhead)."""
    budget = a.vllm_mem_fraction * gpu.memory - 2.0 * param_count(arch)["total"] - a.overhead_gb * GB
    return max(0, min(n_seqs, int(budget // (seq_len * kv_bytes_per_token(arch)))))


def generation_seconds(arch: Arch, gpu: Gpu, a: Assumptions, n_seqs: int, prompt: int,
                       response: int) -> tuple[float, int]:  # fmt: skip
    """One rollout GPU generating n_seqs turns of `response` tokens each, in waves of as many as fit the KV budget.
    Prefill is compute-bound; each decode step costs max(bytes / (bandwidth * bw_eff), FLOPs / (peak * mfu)) with
    bytes = all bf16 weights once + the KV cache of the batch, FLOPs = 2 * N_matmul + 4 * layers * q_dim * context
    per sequence."""
    conc = concurrency(arch, gpu, a, n_seqs, prompt + response)
    if conc == 0:
        return math.inf, 0
    weights, kv, nm = 2.0 * param_count(arch)["total"], kv_bytes_per_token(arch), matmul_params(arch)
    compute, memory = gpu.flops * a.mfu, gpu.bandwidth * a.bw_eff
    seconds, left, waves = 0.0, n_seqs, 0
    while left > 0:
        c = min(conc, left)
        seconds += forward_flops(arch, c, prompt) / compute
        for t in range(1, response + 1):
            ctx = prompt + t
            flops = c * (2.0 * nm + 4.0 * arch.layers * arch.q_dim * ctx)
            seconds += max((weights + c * ctx * kv) / memory, flops / compute)
        left, waves = left - c, waves + 1
    return seconds, waves


def learner_seconds(arch: Arch, gpu: Gpu, r: Recipe, a: Assumptions, ranks: int, seq_len: int,
                    checkpointing: bool) -> dict[str, float]:  # fmt: skip
    """One learner rank (ZeRO-3 over `ranks`): compute at mfu, overlapped with the per-micro-batch all-gathers
    (forward, backward) and reduce-scatter of the bf16 weights/grads; AdamW memory-bound at 28 bytes per parameter
    (read master, moments, grad; write master, moments, bf16 weights)."""
    n_seqs = math.ceil(r.turns / ranks)
    micro = math.ceil(n_seqs * seq_len / r.micro_batch_tokens)
    compute = gpu.flops * a.mfu
    ring = (ranks - 1) / ranks * 2.0 * param_count(arch)["total"] / (a.link_gbs * GB)
    train = max(learner_flops(arch, n_seqs, seq_len, 1, checkpointing) / compute, micro * 3 * ring)
    old = max(forward_flops(arch, n_seqs, seq_len) / compute, micro * ring)
    updates = r.epochs * a.updates_per_epoch
    optimizer = updates * 28.0 * param_count(arch)["total"] / ranks / (gpu.bandwidth * a.bw_eff)
    return {"train": r.epochs * train + optimizer, "old_logprobs": old}


@dataclass(frozen=True)
class Topology:
    name: str
    rollout_gpus: int
    learner_ranks: int
    colocated: bool  # rollout and learner share the GPUs, one after the other


TOPOLOGIES = (
    Topology("1 GPU, rollout and learner in turn", 1, 1, True),
    Topology("8 GPUs, 4 rollout + 4 learner (4:4)", 4, 4, False),
    Topology("8 GPUs, all 8 rollout then learner", 8, 8, True),
)


def step_estimate(arch: Arch, gpu: Gpu, r: Recipe, a: Assumptions, topo: Topology, response: int) -> dict:
    """Seconds of one step of `topo` on `gpu` (learner sharded ZeRO-3 over its ranks when there are several)."""
    seq_len = r.prompt_tokens + response
    shards = topo.learner_ranks
    ckpt = learner_memory(arch, r, a, shards, False)["total"] > gpu.memory
    learn_mem = learner_memory(arch, r, a, shards, ckpt)
    n_roll = math.ceil(r.turns / topo.rollout_gpus)
    roll_mem = rollout_memory(arch, a, n_roll, seq_len)
    weights = 2.0 * param_count(arch)["total"]
    offload, sync = False, 0.0
    if topo.colocated:
        states = learn_mem["bf16_weights_grads"] + learn_mem["fp32_master_moments"]
        peak_phase = max(learn_mem["total"] - states - learn_mem["overhead"], roll_mem["kv_cache"])
        offload = states + weights + a.overhead_gb * GB + peak_phase > a.vllm_mem_fraction * gpu.memory
        sync = 2.0 * weights / (gpu.bandwidth * a.bw_eff)  # on-device copy into vLLM
        sync += (shards - 1) / shards * weights / (a.link_gbs * GB)  # gather the ZeRO-3 shards
        sync += 2.0 * states / (a.pcie_gbs * GB) if offload else 0.0
    else:
        sync = weights / (a.link_gbs * GB)  # learner ranks -> rollout GPUs
    gen, waves = generation_seconds(arch, gpu, a, n_roll, r.prompt_tokens, response)
    kv_in_use = concurrency(arch, gpu, a, n_roll, seq_len) * seq_len * kv_bytes_per_token(arch)
    in_use = roll_mem["total"] - roll_mem["kv_cache"] + kv_in_use
    if not topo.colocated:
        peak = f"{_gb(learn_mem['total'])} / {_gb(in_use)}"
    elif offload:
        peak = _gb(max(learn_mem["total"], in_use))
    else:
        peak = _gb(states + weights + a.overhead_gb * GB + peak_phase)
    learn = learner_seconds(arch, gpu, r, a, topo.learner_ranks, seq_len, ckpt)
    fits = learn_mem["total"] <= gpu.memory
    step = gen + learn["train"] + sync
    return {"topology": topo.name, "response": response, "checkpointing": ckpt, "fits": fits, "waves": waves,
            "generation": gen, "learner": learn["train"], "old_logprobs": learn["old_logprobs"], "sync": sync,
            "offload": offload, "peak": peak, "step": step, "step_recompute": step + learn["old_logprobs"],
            "overlapped": max(gen, learn["train"] + sync)}  # fmt: skip


def _gb(x: float) -> str:
    return f"{x / GB:.1f}"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def responses(r: Recipe) -> list[int]:
    return sorted({r.response_tokens, r.max_new_tokens})


def memory_tables(arch: Arch, r: Recipe, a: Assumptions) -> list[str]:
    rows = []
    for name, shards in (("1 GPU (learner phase)", 1), ("4 learner ranks, DDP", 1), ("4 learner ranks, ZeRO-3", 4),
                         ("8 learner ranks, DDP", 1), ("8 learner ranks, ZeRO-3", 8)):  # fmt: skip
        on, off = (learner_memory(arch, r, a, shards, c) for c in (True, False))
        fit = [("ckpt and none" if off["total"] <= g.memory else "ckpt only" if on["total"] <= g.memory else "no")
               for g in (H100, H200)]  # fmt: skip
        rows.append([name, _gb(on["bf16_weights_grads"]), _gb(on["fp32_master_moments"]), _gb(on["zero3_buffer"]),
                     f"{_gb(on['activations'])} / {_gb(off['activations'])}", _gb(on["logits"]), _gb(on["overhead"]),
                     f"**{_gb(on['total'])}** / {_gb(off['total'])}", *fit])  # fmt: skip
    learner = _table(["learner layout (per GPU)", "bf16 weights + grads", "fp32 master + 2 moments", "ZeRO-3 gather buffer",
                      "activations (ckpt / none)", "fp32 logits + grad", "overhead", "total (ckpt / none)",
                      "fits 80 GB", "fits 141 GB"], rows)  # fmt: skip
    rows = []
    for gpus in (1, 4, 8):
        n = math.ceil(r.turns / gpus)
        for resp in responses(r):
            m = rollout_memory(arch, a, n, r.prompt_tokens + resp)
            waves = []
            for g in (H100, H200):
                c = concurrency(arch, g, a, n, r.prompt_tokens + resp)
                waves.append("does not fit" if c == 0 else f"{c} ({math.ceil(n / c)} wave{'s' * (n > c)})")
            rows.append([gpus, resp, n, _gb(m["vllm_weights"]), _gb(m["kv_cache"]), _gb(m["overhead"]),
                         f"**{_gb(m['total'])}**", *waves])  # fmt: skip
    rollout = _table(["rollout GPUs", "response tokens", "sequences per GPU", "vLLM bf16 weights", "KV cache, all at full length",
                      "overhead", "total", "80 GB: concurrent (waves)", "141 GB: concurrent (waves)"], rows)  # fmt: skip
    return [
        "### Learner memory per GPU (GB)",
        "",
        *learner,
        "",
        "### Rollout (vLLM) memory per GPU (GB)",
        "",
        *rollout,
    ]


def time_table(arch: Arch, gpu: Gpu, r: Recipe, a: Assumptions) -> list[str]:
    rows = []
    for topo in TOPOLOGIES:
        for resp in responses(r):
            e = step_estimate(arch, gpu, r, a, topo, resp)
            hours = f"{e['step'] * r.steps / 3600:.1f} / {e['step_recompute'] * r.steps / 3600:.1f}"
            rows.append([topo.name, resp, e["peak"], "yes" if e["checkpointing"] else "no", e["waves"], f"{e['generation']:.1f}",
                         f"{e['learner']:.1f}", f"{e['old_logprobs']:.1f}",
                         f"{e['sync']:.2f}" + (" (offload)" if e["offload"] else ""),
                         f"**{e['step']:.1f}**", f"{e['step_recompute']:.1f}", hours,
                         f"{e['overlapped']:.1f}" if not topo.colocated else "-"] if e["fits"] else
                        [topo.name, resp, e["peak"], "-", "-", "-", "-", "-", "-", "learner does not fit", "-", "-", "-"])  # fmt: skip
    header = ["configuration", "response tokens", "peak GB per GPU (4:4: learner / rollout)", "grad. ckpt", "rollout waves", "generation s", f"learner s ({r.epochs} epochs + AdamW)",
              "old log-prob forward s", "weight sync (+ offload) s", "s/step", "s/step with old log-prob recompute",
              f"hours for {r.steps} steps (without / with recompute)", "s/step if rollout overlaps the learner"]  # fmt: skip
    return _table(header, rows)


def assumptions_text(arch: Arch, r: Recipe, a: Assumptions) -> list[str]:
    p = param_count(arch)
    return [
        f"- Model: Qwen3-4B-Base, hidden {arch.hidden}, intermediate {arch.intermediate}, {arch.layers} layers, "
        f"{arch.heads} query / {arch.kv_heads} KV heads of {arch.head_dim}, vocab {arch.vocab:,}, tied embeddings. "
        f"Parameters computed from these shapes: **{p['total']:,}** ({p['total'] / 1e9:.3f} B; attention "
        f"{p['attention'] / 1e9:.3f} B, MLP {p['mlp'] / 1e9:.3f} B, embedding {p['embedding'] / 1e9:.3f} B); "
        f"matmul parameters per token (output layer included) N = {matmul_params(arch) / 1e9:.3f} B.",
        f"- Recipe (SPIRAL, arXiv 2506.24119): {r.turns} turns per step, {r.epochs} PPO epochs, {r.steps} steps, full "
        "fine-tune with AdamW (lr 1e-6 and temperature 1.0 do not change the cost), no KL reference model. Prompt "
        f"~{r.prompt_tokens} tokens (assumed, `--prompt-tokens`); every response {r.response_tokens} tokens "
        f"(`--response-tokens`), and the worst case of {r.max_new_tokens} tokens. All responses of a row have the "
        "same length (a real batch waits for its longest turn).",
        f"- Efficiency: compute-bound work at {a.mfu:.0%} of 989 TFLOP/s (`--mfu`); memory-bound work at "
        f"{a.bw_eff:.0%} of HBM bandwidth (`--bw-eff`); collectives and weight sync at {a.link_gbs:g} GB/s "
        f"(`--link-gbs`); host copies at {a.pcie_gbs:g} GB/s (`--pcie-gbs`). 1 GB = 1e9 bytes; the cards are taken "
        "as 80 and 141 GB.",
        f"- Generation (vLLM, one replica per rollout GPU, {r.turns} turns split evenly): prefill 2 * N FLOPs per "
        "token + causal attention at the MFU; each decode step reads all bf16 weights once for the whole batch plus "
        f"the batch's KV cache ({kv_bytes_per_token(arch):,} bytes per token = 2 * layers * kv_heads * head_dim * 2), "
        "or is compute-bound if that is slower. The KV budget is "
        f"{a.vllm_mem_fraction:.0%} of the card minus the weights and overhead; sequences that do not fit run in "
        "later waves.",
        "- Learner: forward + backward = 6 * N FLOPs per token + attention (forward 2 * layers * q_dim * S^2 per "
        "causal sequence of S tokens, backward twice that), times the epochs; gradient checkpointing adds one "
        "forward (8 * N) and is used only where the learner does not fit without it. Old log-probs: with PPO the "
        "behaviour log-probs can come from vLLM (s/step) or be recomputed by one more forward, 2 * N per token "
        "(s/step with recompute). AdamW: 16 bytes per parameter (bf16 weights 2 + bf16 grads 2 + fp32 master 4 + "
        f"two fp32 moments 8), {a.updates_per_epoch} optimizer step per epoch, 28 bytes of traffic per parameter.",
        f"- Activations per micro-batch of {r.micro_batch_tokens:,} tokens (`--micro-batch-tokens`, one worst-case "
        f"turn), bf16, flash attention: {activation_values_per_token_layer(arch):,} values per token and layer "
        "without checkpointing; with per-layer checkpointing each layer's input plus one layer's activations. Logits "
        "in fp32 with their fp32 gradient, unchunked (a fused/chunked cross-entropy would remove most of it). "
        f"Overhead {a.overhead_gb:g} GB per GPU (`--overhead-gb`).",
        "- Multi-GPU learners shard with ZeRO-3/FSDP (states divided by the ranks; all-gathers and reduce-scatter of "
        "the bf16 weights per micro-batch, overlapped with compute). Colocated topologies offload the learner states "
        "to the host during generation (2 PCIe copies per step) only where states, vLLM and the larger phase do not "
        f"fit in {a.vllm_mem_fraction:.0%} of the card. In 4:4 the learner's bf16 weights go to the rollout GPUs "
        "over NVLink each step; s/step runs rollout and learner one after the other (on-policy), the last column "
        "overlaps them (one step stale).",
        "- Not modelled: vLLM's per-step scheduling and sampling time, turns of unequal length (the longest turn of "
        "a batch sets the generation time; see the worst-case rows), the games and rewards, evaluation, checkpoints.",
    ]


def build_page(arch: Arch, r: Recipe, a: Assumptions, command: str = COMMAND) -> str:
    lines = ["# Cost estimate of the SPIRAL paper recipe (`spiral-paper-qwen3-4b`)", "", f"Command: `{command}`", "",
             f"**{NOTICE}** Analytical: FLOPs and bytes only.", "", "## Assumptions", "",
             *assumptions_text(arch, r, a), "", "## Memory per GPU", "", *memory_tables(arch, r, a)]  # fmt: skip
    for gpu in (H100, H200):
        table = time_table(arch, gpu, r, a)
        bw = f"{gpu.bandwidth / 1e12:.2f} TB/s"
        lines += [
            "",
            f"## Seconds per step, {gpu.name} ({gpu.flops / 1e12:.0f} TFLOP/s bf16, {bw})",
            "",
            *table,
        ]
    return "\n".join(lines) + "\n"


RECIPE_FLAGS = {"prompt_tokens": "assumed prompt length", "response_tokens": "mean response length",
                "max_new_tokens": "worst-case response length", "turns": "turns (samples) per step",
                "epochs": "PPO epochs per batch", "steps": "training steps",
                "micro_batch_tokens": "learner micro-batch tokens (0: prompt + max new tokens)"}  # fmt: skip
ASSUMPTION_FLAGS = {"mfu": "fraction of peak FLOP/s", "bw_eff": "fraction of HBM bandwidth",
                    "vllm_mem_fraction": "vLLM gpu_memory_utilization", "overhead_gb": "GB per GPU and phase",
                    "pcie_gbs": "host <-> GPU GB/s", "link_gbs": "effective NVLink GB/s per GPU",
                    "updates_per_epoch": "optimizer steps per PPO epoch"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for cls, flags in ((Recipe, RECIPE_FLAGS), (Assumptions, ASSUMPTION_FLAGS)):
        for dest, text in flags.items():
            default = getattr(cls, dest)
            ap.add_argument("--" + dest.replace("_", "-"), type=type(default), default=default, help=text)
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown page here")
    args = ap.parse_args(argv)
    r = Recipe(**{k: getattr(args, k) for k in RECIPE_FLAGS})
    a = Assumptions(**{k: getattr(args, k) for k in ASSUMPTION_FLAGS})
    command = shlex.join(["python", "benchmarks/paper_cost.py", *(sys.argv[1:] if argv is None else argv)])
    page = build_page(QWEN3_4B, r, a, command)
    print(page, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
