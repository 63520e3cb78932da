"""A reward model scored end to end through the same path, from a tiny model the test saves locally."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from preflens.errors import ConfigError  # noqa: E402
from preflens.reward import reward_labels, score_responses  # noqa: E402


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = "how do i boil an egg nine minutes a while good bad answer question".split()
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=1)
    model = BertForSequenceClassification(config)
    folder = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model.eval(), tokenizer


def test_scores_are_the_models_own_outputs(tiny_reward_model):
    folder, model, tokenizer = tiny_reward_model
    scores = score_responses(str(folder), ["how do i boil an egg"] * 2, ["nine minutes", "a while"], batch_size=1)
    with torch.no_grad():
        expected = [model(**tokenizer(f"how do i boil an egg\n\n{r}", return_tensors="pt")).logits[0, 0].item()
                    for r in ("nine minutes", "a while")]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_labels_follow_the_higher_reward_with_a_tie_margin(tiny_reward_model):
    folder, _, _ = tiny_reward_model
    pairs = pd.DataFrame([{"id": "p1", "prompt": "how do i boil an egg", "response_a": "nine minutes",
                           "response_b": "a while"},
                          {"id": "p2", "prompt": "question", "response_a": "good answer", "response_b": "bad answer"}])
    result = reward_labels(str(folder), pairs).frame
    assert list(result["label"]) == ["a" if d > 0 else "b" for d in result["difference"]]
    np.testing.assert_allclose(result["difference"], result["reward_a"] - result["reward_b"])
    wide = reward_labels(str(folder), pairs, margin=float(result["difference"].abs().max()) + 1).frame
    assert set(wide["label"]) == {"tie"}


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        score_responses(str(tmp_path / "nothing-here"), ["q"], ["r"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="could not load the reward model"):
        score_responses(str(empty), ["q"], ["r"])
