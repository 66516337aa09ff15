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


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cgrs_ros.models.retrievers"]


def test_quick_gelu_weights_under_a_gelu_model_name_warn(arch_and_weights, tmp_path, caplog):
    """GeoRSCLIP (RS5M_*) and OpenAI weights were trained with QuickGELU; open_clip builds GELU for
    a plain model name without a word.  Keep loading (the user may know better), but warn; with
    force_quick_gelu the model is built with QuickGELU, silently, and its vectors change."""
    config, weights, _ = arch_and_weights
    georsclip = tmp_path / "RS5M_tiny-rs-clip.pt"
    georsclip.write_bytes(weights.read_bytes())
    spec = {"name": "open_clip", "model": "tiny-rs-clip", "pretrained": str(georsclip),
            "model_config": str(config), "device": "cpu"}
    with caplog.at_level("WARNING", logger="cgrs_ros.models.retrievers"):
        gelu = RETRIEVERS.build(spec)
    [said] = _warnings(caplog)
    assert "'RS5M_tiny-rs-clip.pt' is named like QuickGELU-trained weights" in said
    assert "use 'tiny-rs-clip-quickgelu' or set force_quick_gelu: true" in said

    caplog.clear()
    with caplog.at_level("WARNING", logger="cgrs_ros.models.retrievers"):
        quick = RETRIEVERS.build(dict(spec, force_quick_gelu=True))
    assert _warnings(caplog) == []
    assert any(type(m).__name__ == "QuickGELU" for m in quick.model.modules())
    assert not any(type(m).__name__ == "QuickGELU" for m in gelu.model.modules())
    assert not np.allclose(quick.encode_texts(["a red roof"]), gelu.encode_texts(["a red roof"]), atol=1e-4)
    assert quick.fingerprint()["force_quick_gelu"] is True and "force_quick_gelu" not in gelu.fingerprint()

    caplog.clear()
    with caplog.at_level("WARNING", logger="cgrs_ros.models.retrievers"):
        RETRIEVERS.build(dict(spec, pretrained=str(weights)))      # RemoteCLIP-tiny.pt: loaded as GELU
    assert _warnings(caplog) == []


def test_quick_gelu_hint_from_names_and_safetensors_metadata(arch_and_weights, tmp_path):
    from safetensors.torch import save_file

    from cgrs_ros.models.retrievers import quick_gelu_hint

    assert "named like QuickGELU" in quick_gelu_hint(["/m/ViT-B-32.pt"])           # OpenAI's JIT file
    assert "named like QuickGELU" in quick_gelu_hint(["/m/GeoRSCLIP-ViT-B-32.safetensors"])
    assert "named like QuickGELU" in quick_gelu_hint(["/m/openai_clip_b32.bin"])
    assert quick_gelu_hint(["/m/RemoteCLIP-ViT-B-32.pt", "/m/laion_b32.pt", "/m/ViT-B-32-ft.pt"]) is None
    state = {k: v.contiguous() for k, v in arch_and_weights[2].state_dict().items()}
    for metadata, expected in (({"model_name": "ViT-B-32-quickgelu"}, "model_name=ViT-B-32-quickgelu"),
                               ({"quick_gelu": "true"}, "quick_gelu=true"),
                               ({"quick_gelu": "false", "format": "pt"}, None)):
        path = tmp_path / "weights.safetensors"
        save_file(state, str(path), metadata=metadata)
        hint = quick_gelu_hint([str(path)])
        assert (hint is None) if expected is None else (expected in hint)


def test_batches_are_halved_until_they_fit_the_accelerator_memory_and_stay_there(caplog):
    from cgrs_ros.models.device import in_fitting_batches

    sizes = []

    def step(batch):
        sizes.append(len(batch))
        if len(batch) > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [item * 10 for item in batch]

    outputs, size = in_fitting_batches(list(range(23)), 16, step, "captioner x")
    assert outputs == [item * 10 for item in range(23)] and size == 4
    assert sizes == [16, 8, 4, 4, 4, 4, 4, 3]                 # the failed batch is run again, smaller
    assert "captioner x: out of accelerator memory with a batch of 16; batches of 8" in caplog.text
    assert in_fitting_batches([1, 2], size, step, "x") == ([10, 20], 4)     # the caller keeps the size
    with pytest.raises(torch.cuda.OutOfMemoryError):                      # nothing smaller to try
        in_fitting_batches([1], 1, lambda batch: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")), "x")
    with pytest.raises(RuntimeError, match="shape mismatch"):             # other errors are not retried
        in_fitting_batches([1, 2], 2, lambda batch: (_ for _ in ()).throw(RuntimeError("shape mismatch")), "x")
