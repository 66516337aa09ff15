"""The cross-encoder text-similarity kind: loads offline through the registry, scores pairs, and can
be swapped in on an index built with a bi-encoder (it stores nothing in the index)."""
import numpy as np
import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine
from cgrs_ros.index import load_index
from cgrs_ros.models import TEXT_SIMILARITIES, load_models
from cgrs_ros.models.local_weights import resolve_model_path


@pytest.fixture(scope="module")
def cross_encoder_folder(tmp_path_factory):
    """A small CrossEncoder built from a config (random weights) with MiniLM's real tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross_encoder")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_cross_encoder_loads_offline_and_scores_pairs(cross_encoder_folder):
    matcher = TEXT_SIMILARITIES.build({"name": "cross_encoder", "model": str(cross_encoder_folder), "device": "cpu"})
    try:
        assert not matcher.embeds_captions and matcher.embedding_dim == 0
        captions = ["a red roof with a lake to the east", "a blue roof", "a red roof with a lake to the east"]
        scores = matcher.score("red roof, lake east", captions, None)
        assert scores.shape == (3,) and scores.dtype == np.float32 and np.all((scores > 0) & (scores < 1))
        assert scores[0] == scores[2]                              # one forward pass per distinct caption
        direct = matcher.model.predict([("red roof, lake east", captions[1])])
        assert scores[1] == pytest.approx(float(np.ravel(direct)[0]), abs=1e-6)
        with pytest.raises(TypeError, match="no text embedding"):
            matcher.encode(["x"])
    finally:
        matcher.close()


def test_cross_encoder_is_swapped_in_on_a_bi_encoder_index(tiny_engine_files, cross_encoder_folder):
    config_path, index_dir = tiny_engine_files
    config = load_engine_config(config_path, text_similarity={"name": "cross_encoder", "model": str(cross_encoder_folder)})
    index = load_index(index_dir, config)                   # no refusal: a pair scorer is not in the index
    engine = CGRSEngine(config, index, load_models(config, ["retriever", "text_similarity"]))
    try:
        result = engine.query("a red roof")
        assert result.reranked and result.places and 0.0 < result.places[0].best.caption_score < 1.0
    finally:
        engine.close()


def test_a_bi_encoder_config_refuses_an_index_without_its_caption_vectors(tiny_engine_config_path, tiny_gallery,
                                                                           cross_encoder_folder, tmp_path):
    from cgrs_ros.errors import CGRSInputError
    from cgrs_ros.gallery import read_manifest
    from cgrs_ros.index import build_index

    cross = load_engine_config(tiny_engine_config_path,
                               text_similarity={"name": "cross_encoder", "model": str(cross_encoder_folder)})
    build_index(read_manifest(tiny_gallery), cross, tmp_path / "index", progress=False)
    assert load_index(tmp_path / "index", cross).caption_embeddings.shape[1] == 0
    with pytest.raises(CGRSInputError, match="text_similarity"):
        load_index(tmp_path / "index", load_engine_config(tiny_engine_config_path))
