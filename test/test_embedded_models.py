"""The shipped default models (trained by ``cgrs-train``) load offline and really retrieve.

Everything goes through the packaged default config and the model registries, i.e. the code path
hub models take.  The end-to-end check runs on a small world the models never saw (seed 11).
"""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cgrs_ros.config import DEFAULT_ENGINE_CONFIG, load_engine_config
from cgrs_ros.gallery import read_manifest
from cgrs_ros.queries import read_queries

EMBEDDED = DEFAULT_ENGINE_CONFIG.parent / "embedded"
SIZE_BUDGET_BYTES = 25 * 1024 * 1024
WORLD_PLACES = 20


@pytest.fixture(scope="module")
def config():
    return load_engine_config(device="cpu")


@pytest.fixture(scope="module")
def models(config):
    from cgrs_ros.models import load_models

    models = load_models(config)
    yield models
    models.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from cgrs_ros.world import generate_world

    return generate_world(tmp_path_factory.mktemp("world11") / "w", seed=11, n_places=WORLD_PLACES, progress=False)


def test_shipped_files_fit_the_size_budget():
    files = [EMBEDDED / "cgrs_tiny_clip.safetensors", EMBEDDED / "calibration.json",
             *sorted((EMBEDDED / "captioner").iterdir())]
    assert all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in files) <= SIZE_BUDGET_BYTES
    report = json.loads((EMBEDDED / "training_report.json").read_text())
    assert report["world_seed"] == 1 and "seed" in report


def test_default_config_names_the_embedded_models(config):
    assert config.retriever["model"] == "cgrs-tiny-clip"
    assert Path(config.retriever["checkpoint"]).is_file()
    assert Path(config.captioner["model"]).is_dir()
    assert config.index.rectify == "north_up" and config.retrieval.grouping == "place_id"
    assert Path(config.calibration).is_file()


def test_captions_of_north_up_views_state_the_right_sides(models, world):
    """Caption sides on an unseen world's satellite views (north-up) and turned drone views."""
    from cgrs_ros.rectify import views_for_captioner
    from cgrs_ros.training.evaluate import caption_accuracy

    gallery = read_manifest(world)
    records = [r for r in gallery if r.platform != "ground"][:60]
    images = views_for_captioner([Image.open(gallery.resolve(r)).convert("RGB") for r in records], records,
                                 "north_up", ("ground",))
    accuracy = caption_accuracy(models.captioner.caption(images), [r.extras["descriptions"][0] for r in records])
    assert accuracy["neighbour side"]["accuracy"] >= 70.0, accuracy


@pytest.mark.parametrize("beams", [1, 2])
def test_captions_decoded_from_the_image_states_once_equal_the_models_own_generate(config, models, world, beams):
    """The captioner hands the projected image states to the decoder once (its fast path); the
    tokens must be those of the VisionEncoderDecoder's own ``generate``, which reprojects each step."""
    import torch

    from cgrs_ros.models.captioners import TransformersCaptioner

    captioner = models.captioner
    gallery = read_manifest(world)
    images = [Image.open(gallery.resolve(r)).convert("RGB") for r in gallery.records[:24]]
    inputs = captioner._inputs(images)
    captioner.num_beams = beams
    try:
        with torch.inference_mode():
            fast = captioner._generate(inputs)
            whole = TransformersCaptioner._generate(captioner, inputs)
    finally:
        captioner.num_beams = 1
    decode = captioner.processor.batch_decode
    assert decode(fast, skip_special_tokens=True) == decode(whole, skip_special_tokens=True)
    assert torch.equal(fast, whole)                       # pads after each end too
    assert len({text for text in decode(fast, skip_special_tokens=True)}) > 3     # real, varied captions
    assert hasattr(captioner.model, "enc_to_dec_proj")   # the path that skips the per-step projection


@pytest.mark.parametrize("cache_drops_rows", [True, False])
def test_greedy_captions_that_end_leave_the_batch_with_the_same_tokens(models, world, monkeypatch, cache_drops_rows):
    """Plain greedy decoding drops the rows whose caption ended (their cached keys and values too),
    once they are more than ``ENDED_SHARE_TO_DROP`` of the batch; a cache that cannot drop rows keeps
    them, padding.  Either way the tokens are ``generate``'s."""
    import torch
    from transformers import EncoderDecoderCache

    from cgrs_ros.models import captioners

    captioner = models.captioner
    assert captioners._plain_greedy(captioner.generation_config())
    kept_sizes = []
    if cache_drops_rows:
        drop = EncoderDecoderCache.batch_select_indices
        monkeypatch.setattr(EncoderDecoderCache, "batch_select_indices",
                            lambda cache, kept: (kept_sizes.append(len(kept)), drop(cache, kept))[1])
    else:                            # as a legacy tuple cache (older transformers) has no such method
        for kind in EncoderDecoderCache.__mro__:
            if "batch_select_indices" in vars(kind):
                monkeypatch.delattr(kind, "batch_select_indices")
    gallery = read_manifest(world)
    images = [Image.open(gallery.resolve(r)).convert("RGB") for r in gallery.records[24:56]]
    inputs = captioner._inputs(images)
    with torch.inference_mode():
        fast = captioner._generate(inputs)
        whole = captioners.TransformersCaptioner._generate(captioner, inputs)
    assert torch.equal(fast, whole)
    assert (bool(kept_sizes) and kept_sizes[-1] < len(images)) == cache_drops_rows       # rows did leave
    sizes = [len(images)] + kept_sizes
    assert all(size - kept > captioners.ENDED_SHARE_TO_DROP * size for size, kept in zip(sizes, kept_sizes))


def test_only_plain_greedy_settings_take_the_row_dropping_loop():
    from transformers import GenerationConfig

    from cgrs_ros.models.captioners import _plain_greedy

    plain = dict(max_new_tokens=20, eos_token_id=2, pad_token_id=0, decoder_start_token_id=1)
    assert _plain_greedy(GenerationConfig(**plain))
    for other in ({"num_beams": 2}, {"repetition_penalty": 1.3}, {"no_repeat_ngram_size": 3},
                  {"min_new_tokens": 5}, {"do_sample": True}, {"max_new_tokens": None}):
        assert not _plain_greedy(GenerationConfig(**dict(plain, **other))), other


def test_retriever_embeddings_are_normalised_float32(models, world):
    gallery = read_manifest(world)
    images = [Image.open(gallery.resolve(r)) for r in gallery.records[:5]]
    image_vectors = models.retriever.encode_images(images)
    text_vectors = models.retriever.encode_texts(["a red roof", "a round building with a pool to the north"])
    dim = models.retriever.embedding_dim
    assert image_vectors.shape == (5, dim) and text_vectors.shape == (2, dim)
    for vectors in (image_vectors, text_vectors):
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_a_captioner_batch_that_runs_out_of_gpu_memory_is_split_and_the_captions_are_the_same(models, world):
    """An out-of-memory error in a batch (raised here for batches over 8, as a GPU would) halves the
    batch size for good; no image is lost or captioned twice."""
    import torch

    captioner = models.captioner
    gallery = read_manifest(world)
    images = [Image.open(gallery.resolve(r)) for r in gallery.records[:20]]
    expected = captioner.caption(images)
    real_generate, tried = captioner._generate, []

    def generate_on_a_small_gpu(inputs):
        tried.append(len(inputs["pixel_values"]))
        if len(inputs["pixel_values"]) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return real_generate(inputs)

    captioner._generate, size = generate_on_a_small_gpu, captioner.batch_size
    assert size >= 20                                  # the 20 images start as one batch
    try:
        assert captioner.caption(images) == expected
        assert captioner.batch_size == 5 and tried == [20, 10, 5, 5, 5, 5]
    finally:
        del captioner._generate
        captioner.batch_size = size


def test_captions_that_end_early_raise_no_attention_mask_warning(models, world):
    """Pads after a finished caption made transformers warn about a missing attention mask in every
    build; the warning is filtered (cgrs_ros.models.captioners._PadsAfterTheEnd)."""
    import logging

    class Seen(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    seen, library = Seen(), logging.getLogger("transformers")     # it does not propagate to the root logger
    logging.Logger.warning_once.cache_clear()        # transformers warns once per process
    library.addHandler(seen)
    try:
        gallery = read_manifest(world)
        captions = models.captioner.caption([Image.open(gallery.resolve(r)) for r in gallery.records[:24]])
    finally:
        library.removeHandler(seen)
    assert len({len(c.split()) for c in captions}) > 1          # some ended before others: pads were fed
    assert not [m for m in seen.messages if "input_ids may be padded" in m]


def test_channels_last_images_give_the_vectors_of_contiguous_ones(config, models, world):
    """The retriever feeds its image tower channels-last batches (faster convolutions); the layout
    must not move the vectors."""
    from cgrs_ros.models import RETRIEVERS

    contiguous = RETRIEVERS.build({**config.model_spec("retriever"), "channels_last": False})
    gallery = read_manifest(world)
    images = [Image.open(gallery.resolve(r)) for r in gallery.records[:8]]
    import torch

    conv_weights = [p for p in models.retriever.model.visual.parameters() if p.dim() == 4]
    assert len(conv_weights) > 10 and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    np.testing.assert_allclose(models.retriever.encode_images(images), contiguous.encode_images(images), atol=1e-5)


def test_captions_name_the_roof_colour(models, world):
    truth = {p["place_id"]: p["building"]["colour"] for p in json.loads((world / "world.json").read_text())["places"]}
    gallery = read_manifest(world)
    satellites = [r for r in gallery if r.platform == "satellite"]
    captions = models.captioner.caption([Image.open(gallery.resolve(r)) for r in satellites])
    assert all(c.strip() and "building" in c for c in captions)
    right = sum(f"{truth[r.place_id]} roof" in c for r, c in zip(satellites, captions))
    assert right >= 0.75 * len(satellites), list(zip([truth[r.place_id] for r in satellites], captions))


def test_end_to_end_retrieval_beats_chance(config, models, world, tmp_path):
    """Place-level Recall@5 over all queries of an unseen 20-place world; chance is 5/20 = 0.25."""
    from cgrs_ros.engine import CGRSEngine
    from cgrs_ros.index import build_index, load_index

    gallery = read_manifest(world)
    build_index(gallery, config, tmp_path / "index", models=models, progress=False)
    engine = CGRSEngine(config, load_index(tmp_path / "index", config), models)
    queries = read_queries(world / "queries.jsonl")
    hits = 0
    for query in queries:
        result = engine.query(query.text)
        assert result.reranked and not result.degraded and 0.0 <= result.confidence <= 1.0
        hits += query.place_id in {p.place_id for p in result.places[:5]}
    recall = hits / len(queries)
    assert recall >= 0.6, f"place-level R@5 {recall:.2f} on {len(queries)} queries (chance 0.25)"
    # goals that name no place are not confidently matched (the node forwards from 0.8)
    for goal in ("banana", "xqzv plorb wibble", "🏠🏠🏠", "what is the weather tomorrow"):
        assert engine.query(goal).confidence < 0.5, goal


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_text_encoding_without_the_padding_columns_is_the_same_encoding(config, runtime):
    """encode_texts drops the all-padding token columns for an HF text tower (half of a query's
    CLIP time); the vectors must be those of the full padded input (on either text runtime)."""
    import torch

    from cgrs_ros.models import RETRIEVERS

    spec = config.model_spec("retriever")
    retriever = RETRIEVERS.build(dict(spec, text_runtime=runtime))
    assert retriever.text_runtime == runtime
    full_model = RETRIEVERS.build(dict(spec, text_runtime="torch")).model     # the torch weights, whole
    texts = ["a red roof", "I am looking for the house just south of a pond; it also has a grove to its east."]
    tokens = retriever.tokenizer(texts)
    assert tokens.shape[1] > max(int((row != 0).sum()) for row in tokens)     # padded to the context length
    with torch.inference_mode():
        full = full_model.encode_text(tokens)
    full = (full / full.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(retriever.encode_texts(texts), full, atol=1e-5)
