"""vLLM generation on a GPU, behind the interface of `spiral.generation.base.Generator` (`model.generator = "vllm"`).

vLLM is imported only inside `VLLMGenerator.__init__`, so CPU code paths never load it (it lives in the
optional extra `gpu`). The engine starts from the policy's weights written to a temporary Hugging Face
folder; after every learner step `load_weights(policy)` hands the merged state dict to the engine's model
(`model.load_weights`) and clears the prefix cache, whose keys and values belong to the old weights.

Behaviour log-probs: the engine runs with `logprobs_mode="processed_logprobs"`, the log-probs of the
temperature-scaled distribution the learner recomputes (with top_p < 1 vLLM reports those of the truncated
distribution; the presets train with top_p = 1, where the two agree). Sampling is seeded per request from
this object's own torch RNG, whose state `get_state` / `set_state` carry through checkpoints.

Not run in this repository's tests (no GPU, no vLLM here): see docs/scaling.md for what was and was not tested.
"""

from __future__ import annotations

import os
import tempfile

import torch
from torch import nn

from runkit.errors import UserError
from spiral.generation.base import Generation, Sampling, SeededSampler
from spiral.model import merged_state_dict, plain_copy

VLLM_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


class VLLMGenerator(SeededSampler):
    """Batched sampling with vLLM (paged attention, continuous batching, prefix caching) on one GPU.

    Same interface as `HFGenerator`: `generate(prompts, sampling)`, `load_weights(policy)`,
    `get_state()` / `set_state()`.
    """

    def __init__(
        self,
        policy: nn.Module,
        eos_ids: list[int],
        pad_id: int,
        dtype: torch.dtype = torch.bfloat16,
        batch_size: int = 32,
        seed: int = 0,
        share_prefix: bool = True,
        gpu_memory_utilization: float = 0.4,  # the learner shares the GPU
    ) -> None:
        if not torch.cuda.is_available():
            raise UserError(
                "model.generator=vllm needs a CUDA GPU; this machine has none (use model.generator=fast or hf)"
            )
        # In-process engine, so that load_weights can reach the model (vLLM V1 runs it in a subprocess by default).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm
        except ImportError:
            raise UserError(
                "model.generator=vllm needs vLLM: pip install '.[gpu]' (or use model.generator=fast or hf)"
            ) from None
        self.vllm = vllm
        self.eos_ids, self.pad_id = sorted(set(eos_ids)), pad_id
        self.rng = torch.Generator().manual_seed(seed)
        self._folder = tempfile.TemporaryDirectory(prefix="spiral-vllm-")
        plain_copy(policy, torch.float32).save_pretrained(self._folder.name)
        try:
            self.llm = vllm.LLM(
                model=self._folder.name,
                skip_tokenizer_init=True,  # prompts arrive as token ids; responses are decoded by the policy
                dtype=VLLM_DTYPES.get(dtype, "auto"),
                seed=seed,
                max_num_seqs=batch_size,
                enable_prefix_caching=share_prefix,
                gpu_memory_utilization=gpu_memory_utilization,
                logprobs_mode="processed_logprobs",
            )
        except TypeError as e:  # an engine argument this vLLM version does not know
            raise UserError(
                f"this vLLM version is not supported (need logprobs_mode, vLLM >= 0.10.2): {e}"
            ) from None

    def _model(self) -> nn.Module:
        """The engine's torch model (in-process engine; the attribute path differs between vLLM versions)."""
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        runner = getattr(getattr(worker, "worker", worker), "model_runner", None)
        if runner is None or not hasattr(runner, "model"):
            raise UserError(
                "cannot reach the vLLM model to load weights; set VLLM_ENABLE_V1_MULTIPROCESSING=0"
            )
        return runner.model

    def load_weights(self, policy: nn.Module) -> None:
        """Hand the policy's current (LoRA-merged) weights to the engine and drop its stale prefix cache."""
        weights = merged_state_dict(policy)
        self._model().load_weights(weights=iter(weights.items()))
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation:
        """Sample one response per prompt; vLLM batches and schedules them itself."""
        from vllm.inputs import TokensPrompt

        seeds = torch.randint(0, 2**31 - 1, (len(prompts),), generator=self.rng).tolist()
        params = [
            self.vllm.SamplingParams(
                n=1, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
                stop_token_ids=self.eos_ids, logprobs=0, seed=s, detokenize=False,
            )
            for s in seeds
        ]  # fmt: skip
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        tokens, logprobs, truncated = [], [], []
        for out in outs:  # in prompt order
            c = out.outputs[0]
            ids = list(c.token_ids)
            tokens.append(ids)
            logprobs.append([float(step[tok].logprob) for tok, step in zip(ids, c.logprobs, strict=True)])
            truncated.append(c.finish_reason == "length")
        return Generation(tokens, logprobs, truncated)
