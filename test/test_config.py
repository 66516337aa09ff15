"""Engine configs: the shipped examples parse, paths resolve next to the YAML, bad values are named."""
from pathlib import Path

import pytest
import yaml

from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.models import CAPTIONERS, RETRIEVERS, TEXT_SIMILARITIES

REPO = Path(__file__).resolve().parent.parent


def test_hub_example_parses_and_names_registered_backends():
    config = load_engine_config(REPO / "config" / "engine_hub_models.yaml")
    assert config.retriever["name"] in RETRIEVERS.names()
    assert config.captioner["name"] in CAPTIONERS.names()
    assert config.text_similarity["name"] in TEXT_SIMILARITIES.names()
    assert config.retriever["pretrained"] == "laion2b_s34b_b79k"  # a tag, not turned into a path


def test_relative_paths_resolve_next_to_the_yaml(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "clip.safetensors").write_bytes(b"x")
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump({
        "retriever": {"name": "open_clip", "model": "ViT-B-32", "checkpoint": "weights/clip.safetensors"},
        "captioner": {"name": "image_to_text", "model": "Salesforce/blip-image-captioning-base"},
        "text_similarity": {"name": "sentence_transformers"}}))
    config = load_engine_config(path, device="cpu")
    assert config.retriever["checkpoint"] == str(tmp_path / "weights" / "clip.safetensors")
    assert config.captioner["model"] == "Salesforce/blip-image-captioning-base"
    assert config.model_spec("retriever")["device"] == "cpu"


@pytest.mark.parametrize("change, message", [
    ({"retriever": None}, "'retriever' must be a mapping with a 'name'"),
    ({"colour": 3}, "unknown keys ['colour']"),
    ({"retrieval": {"top_k": -1}}, "top_k must be a positive integer"),
    ({"retrieval": {"normalization": "softmax"}}, "normalization 'softmax'"),
    ({"retrieval": {"fusion": 0.3}}, "unexpected keyword argument 'fusion'"),
])
def test_bad_config_values_are_named(tmp_path, change, message):
    data = yaml.safe_load((REPO / "config" / "engine_hub_models.yaml").read_text())
    data.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CGRSInputError) as info:
        load_engine_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_unknown_backend_and_option_are_named():
    with pytest.raises(CGRSInputError, match="unknown captioner 'magic'; known: chat_vlm, image_to_text"):
        CAPTIONERS.build({"name": "magic"})
    with pytest.raises(CGRSInputError, match="text_similarity 'sentence_transformers': bad options"):
        TEXT_SIMILARITIES.build({"name": "sentence_transformers", "colour": "red"})


def test_missing_config_file():
    with pytest.raises(CGRSInputError, match="cannot read engine config /nope.yaml"):
        load_engine_config("/nope.yaml")


def test_a_models_own_dtype_wins_over_the_global_one():
    """A captioner spec with ``dtype: bfloat16`` must reach the model as bfloat16 (the global
    ``dtype`` used to replace it); models without their own dtype keep the global one."""
    import torch

    from cgrs_ros.config import DEFAULT_ENGINE_CONFIG, engine_config_from_dict
    from cgrs_ros.models import load_models

    data = yaml.safe_load(DEFAULT_ENGINE_CONFIG.read_text())
    data.update(device="cpu", dtype="float32")
    data["captioner"]["dtype"] = "bfloat16"
    config = engine_config_from_dict(data, base_dir=DEFAULT_ENGINE_CONFIG.parent)
    assert config.model_spec("captioner")["dtype"] == "bfloat16"
    assert config.model_spec("retriever")["dtype"] == "float32"
    models = load_models(config, ["captioner"])
    try:
        assert next(models.captioner.model.parameters()).dtype == torch.bfloat16
    finally:
        models.close()
