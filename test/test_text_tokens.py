"""The retriever's goal tokens: padded to the longest text by the Hugging Face tokenizer itself
(a faster call than open_clip's, which pads to the context length), they must be exactly the ids
open_clip's own tokenizer gives, less the all-padding columns, for every kind of text."""
import numpy as np
import torch

from cgrs_ros.config import load_engine_config
from cgrs_ros.models import REGISTRIES
from cgrs_ros.models.retrievers import _padding_token

TEXTS = ["a lake", "", "  the red-roofed   hall\tjust north of the round pool  ", "CAFÉ &amp; Bäckerei — “quotes”",
         "I am looking for the house just south of a pond; it also has a grove to its east. " * 6]   # > 64 tokens


def open_clips_ids(retriever, texts):
    tokens = retriever.tokenizer(texts)
    used = (tokens != _padding_token(retriever.model)).any(dim=0).nonzero()
    return tokens[:, :int(used.max()) + 1]


def test_goal_tokens_are_open_clips_ids_less_the_padding_columns():
    retriever = REGISTRIES["retriever"].build(dict(load_engine_config(device="cpu").model_spec("retriever"),
                                                   text_runtime="torch"))
    assert retriever._longest_padding is not None          # the embedded tower takes the faster call
    for texts in ([t] for t in TEXTS):
        assert torch.equal(retriever._tokens(texts), open_clips_ids(retriever, texts)), texts
    assert torch.equal(retriever._tokens(TEXTS), open_clips_ids(retriever, TEXTS))
    assert retriever._tokens(TEXTS).shape[1] == 64          # the long goal is cut at the context length
    vectors = retriever.encode_texts(TEXTS)
    with torch.inference_mode():
        expected = retriever.model.encode_text(open_clips_ids(retriever, TEXTS))
    np.testing.assert_allclose(vectors, torch.nn.functional.normalize(expected, dim=-1).numpy(), atol=1e-6)
