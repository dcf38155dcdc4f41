"""Model specs, the test vocabulary, LoRA merging, prompt formats."""

from __future__ import annotations

import pytest
import torch

from runkit.errors import UserError
from spiral.model import (
    PromptFormat,
    add_lora,
    char_tokenizer,
    load_model,
    load_tokenizer,
    merged_state_dict,
    plain_copy,
    resolve_gen_dtype,
)


def test_char_tokenizer_round_trips_and_maps_unknowns():
    tok = char_tokenizer("ABCD")
    assert len(tok) == 7 and tok.eos_token == "<eos>" and tok.pad_token == "<pad>"
    ids = tok("CAB")["input_ids"]
    assert tok.decode(ids) == "CAB"
    assert tok("xA")["input_ids"] == [tok.unk_token_id, tok.convert_tokens_to_ids("A")]


def test_tiny_models_are_deterministic_and_leave_the_global_rng_alone(smol_tokenizer):
    state = torch.get_rng_state()
    a = load_model("tiny", smol_tokenizer)
    assert torch.equal(state, torch.get_rng_state())
    b = load_model("tiny", smol_tokenizer)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=False))
    assert a.config.vocab_size == len(smol_tokenizer) and a.config.num_hidden_layers == 2


def test_unknown_model_spec_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        load_tokenizer(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no config.json"):
        load_tokenizer(str(tmp_path))


def test_prompt_formats(smol_tokenizer):
    chat = PromptFormat(smol_tokenizer, "auto")
    text = chat.text("You are Player 0.")
    assert chat.use_chat and text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n")
    assert "You are Player 0." in text and "\\boxed{}" in text
    plain = PromptFormat(smol_tokenizer, "plain")
    assert not plain.use_chat and plain.text("obs").endswith("Answer: ")
    with pytest.raises(UserError):
        PromptFormat(char_tokenizer("AB"), "chat")  # no chat template there


def test_lora_merge_gives_a_plain_model_with_the_same_outputs(smol_tokenizer):
    model = add_lora(load_model("tiny", smol_tokenizer), 4, 8.0, 0.0, ["q_proj", "v_proj", "down_proj"])
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)  # make the adapters matter (B starts at zero)
    plain = plain_copy(model, torch.float32)
    assert not hasattr(plain, "peft_config")
    assert set(merged_state_dict(model)) == set(plain.state_dict())
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)


def test_gen_dtype_auto_is_fp32_without_native_bf16(monkeypatch):
    import spiral.model as m

    monkeypatch.setattr(m, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_gen_dtype("auto") == "fp32"
    assert resolve_gen_dtype("bf16") == "bf16"
