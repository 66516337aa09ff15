"""Model loading paths users take: RemoteCLIP/GeoRSCLIP-style .pt state dicts for an open_clip
architecture, extra architecture configs, and clear errors for weights that do not fit."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cgrs_ros.errors import CGRSInputError
from cgrs_ros.models import RETRIEVERS
from tiny_models import TINY_OPEN_CLIP


@pytest.fixture(scope="module")
def arch_and_weights(tmp_path_factory):
    """A custom architecture (JSON) and a .pt state dict of it, as RemoteCLIP ships them."""
    import open_clip

    folder = tmp_path_factory.mktemp("remoteclip_like")
    config = folder / "tiny-rs-clip.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP["model_cfg"]))
    open_clip.add_model_config(config)
    torch.manual_seed(1)
    model = open_clip.create_model("tiny-rs-clip")
    weights = folder / "RemoteCLIP-tiny.pt"
    torch.save(model.state_dict(), weights)
    return config, weights, model


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(3)]


def test_state_dict_file_for_an_open_clip_architecture(arch_and_weights):
    config, weights, original = arch_and_weights
    retriever = RETRIEVERS.build({"name": "open_clip", "model": "tiny-rs-clip", "pretrained": str(weights),
                                  "model_config": str(config), "device": "cpu"})
    vectors = retriever.encode_images(_images())
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    text = retriever.encode_texts(["a red roof", "a lake"])
    with torch.no_grad():
        import open_clip
        expected = torch.nn.functional.normalize(
            original.encode_text(open_clip.get_tokenizer("tiny-rs-clip")(["a red roof", "a lake"])), dim=-1)
    np.testing.assert_allclose(text, expected.numpy(), atol=1e-5)  # the file's weights were loaded
    assert retriever.fingerprint()["pretrained"] == str(weights)


def test_checkpoint_that_does_not_fit_is_refused(arch_and_weights, tmp_path):
    config, weights, original = arch_and_weights
    bad = tmp_path / "bad.pt"
    state = original.state_dict()
    state["visual.extra_head.weight"] = torch.zeros(2)
    torch.save(state, bad)
    with pytest.raises(CGRSInputError, match=r"does not fit the model: .*unexpected \['visual.extra_head.weight'\]"):
        RETRIEVERS.build({"name": "open_clip", "model": "tiny-rs-clip", "checkpoint": str(bad),
                          "model_config": str(config), "device": "cpu"})


@pytest.mark.parametrize("spec, message", [
    ({"model": "ViT-B-32", "pretrained": "/models/RemoteCLIP-ViT-B-32.pt"}, "pretrained file /models/RemoteCLIP-ViT-B-32.pt does not exist"),
    ({"model": "ViT-B-32", "checkpoint": "/nope/w.safetensors"}, "checkpoint file /nope/w.safetensors does not exist"),
    ({"model": "no-such-arch"}, "'no-such-arch' is not an open_clip model config"),
    ({"model": "ViT-B-32", "model_config": "/nope.json"}, "model_config /nope.json does not exist"),
])
def test_bad_retriever_specs_are_named(spec, message):
    with pytest.raises(CGRSInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        RETRIEVERS.build({"name": "open_clip", "device": "cpu", **spec})


def test_cuda_asked_for_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(CGRSInputError, match="CUDA is not available"):
        RETRIEVERS.build({"name": "open_clip", "model": "ViT-B-32", "device": "cuda"})
