"""The cheaper CPU dropout: right drop rate and scale, seeded, differentiable, and a T5 that uses it computes
exactly what transformers' eager T5 computes when not training."""

from __future__ import annotations

import copy

import pytest
import torch

from mmgr.models.dropout import ATTENTION, FastDropout, fast_dropout, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_rate_scale_and_identity_when_not_training(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = fast_dropout(x, p)
    assert abs((y == 0).float().mean().item() - p) < 0.002
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))
    assert fast_dropout(x, p, training=False) is x and fast_dropout(x, 0.0) is x


def test_seeded_masks_repeat_and_gradients_follow_the_mask():
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(3)
    first = fast_dropout(x, 0.2)
    torch.manual_seed(3)
    again = fast_dropout(x, 0.2)
    assert torch.equal(first, again)
    first.sum().backward()
    torch.testing.assert_close(x.grad, (first != 0).float() / 0.8)


def test_t5_with_fast_dropout_matches_eager_t5_in_eval_and_drops_in_training():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                      dropout_rate=0.3, feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0)
    eager = T5ForConditionalGeneration(config)
    eager.set_attn_implementation("eager")
    fast = use_fast_dropout(copy.deepcopy(eager))
    assert fast.config._attn_implementation == ATTENTION
    assert not any(type(m) is torch.nn.Dropout for m in fast.modules())
    assert any(isinstance(m, FastDropout) for m in fast.modules())
    ids = torch.randint(3, 50, (4, 9))
    ids[:2, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": ids.ne(0).long(), "labels": torch.randint(3, 50, (4, 3))}
    with torch.no_grad():
        assert torch.equal(eager.eval()(**batch).logits, fast.eval()(**batch).logits)
        fast.train()
        assert not torch.equal(fast(**batch).logits, fast(**batch).logits)


def test_causal_hidden_dropout_drops_in_training_and_is_inert_in_eval():
    from mmgr.config import ModelConfig
    from mmgr.models.causal import build_causal
    from mmgr.tokenizers.codes import Vocabulary

    vocab = Vocabulary({"text": [8, 8]}, ())
    sizes = {"kind": "causal", "d_model": 16, "num_layers": 2, "num_heads": 2, "d_kv": 8, "d_ff": 32, "dropout": 0.0}
    plain = build_causal(ModelConfig(**sizes), vocab, seed=0)
    dropped = build_causal(ModelConfig(**sizes, hidden_dropout=0.3), vocab, seed=0)
    ids = torch.randint(0, vocab.size, (3, 7))
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(ids).logits, dropped.eval()(ids).logits, rtol=0, atol=0)
        plain.train()
        assert torch.equal(plain(ids).logits, plain(ids).logits)          # no hooks at hidden_dropout 0
        dropped.train()
        assert not torch.equal(dropped(ids).logits, dropped(ids).logits)
    dropped(ids).logits.sum().backward()
    assert all(p.grad is not None for p in dropped.parameters())
