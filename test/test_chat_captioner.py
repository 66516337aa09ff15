"""The ``chat_vlm`` captioner on real transformers chat VLMs (tiny, random-initialised, saved to disk).

LLaVA (CLIP tower + Llama) and Qwen2-VL (its own ViT + M-RoPE Qwen2) load through
AutoProcessor / AutoModelForImageTextToText exactly as hub checkpoints do. Qwen2-VL's processor keeps
each image's aspect ratio, so images of different sizes give prompts of different lengths and a batch
of them is genuinely left-padded.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cgrs_ros.models.captioners import CAPTIONERS, DEFAULT_CHAT_PROMPT
from tiny_vlms import save_tiny_llava, save_tiny_qwen2_vl

BUILDERS = {"llava": save_tiny_llava, "qwen2_vl": save_tiny_qwen2_vl}
MAX_NEW_TOKENS = 6
PROMPT = "Name the roof colour of the main building."


@pytest.fixture(scope="module")
def vlm_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_vlms")
    return {kind: build(root / kind) for kind, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def captioners(vlm_folders):
    built = {kind: CAPTIONERS.build({"name": "chat_vlm", "model": str(folder), "prompt": PROMPT,
                                     "max_new_tokens": MAX_NEW_TOKENS, "device": "cpu"})
             for kind, folder in vlm_folders.items()}
    yield built
    for captioner in built.values():
        captioner.close()


@pytest.fixture(scope="module")
def images():
    """Three different scenes in three different sizes (so Qwen2-VL gives 1, 2 and 4 image tokens)."""
    rng = np.random.default_rng(0)
    roof = np.full((56, 56, 3), 90, np.uint8)
    roof[14:42, 14:42] = (220, 40, 40)
    stripes = np.zeros((84, 112, 3), np.uint8)
    stripes[::8] = (40, 60, 220)
    noise = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    return [Image.fromarray(array) for array in (roof, stripes, noise)]


def _token_ids(captioner, images):
    return captioner._inputs([image.convert("RGB") for image in images])


@pytest.mark.parametrize("kind", BUILDERS)
def test_batch_gives_one_new_text_per_image(kind, captioners, images):
    captions = captioners[kind].caption(images)
    assert len(captions) == 3 and all(isinstance(c, str) and c for c in captions)
    # Only the generated tokens are decoded: no template role words, no prompt, at most max_new_tokens words.
    for caption in captions:
        assert len(caption.split()) <= MAX_NEW_TOKENS
        assert PROMPT.lower() not in caption.lower()
        assert "assistant" not in caption and "user" not in caption
    # The pixels reach the language model: different scenes do not all get the same random caption.
    assert len(set(captions)) > 1


@pytest.mark.parametrize("kind", BUILDERS)
def test_batch_equals_one_at_a_time(kind, captioners, images, vlm_folders):
    captioner = captioners[kind]
    one_by_one = [captioner.caption([image])[0] for image in images]
    assert captioner.caption(images) == one_by_one
    in_pairs = CAPTIONERS.build({"name": "chat_vlm", "model": str(vlm_folders[kind]), "prompt": PROMPT,
                                 "max_new_tokens": MAX_NEW_TOKENS, "device": "cpu", "batch_size": 2})
    assert in_pairs.caption(images) == one_by_one


def test_variable_length_prompts_are_left_padded(captioners, images):
    inputs = _token_ids(captioners["qwen2_vl"], images)
    mask = inputs["attention_mask"]
    assert mask[:, -1].all(), "every prompt must end at the last column, where generation continues"
    assert not mask[:, 0].all(), "images of different sizes should need padding"
    assert mask.sum(1).tolist() == sorted(mask.sum(1).tolist())  # 1, 2, 4 image tokens


@pytest.mark.parametrize("kind", BUILDERS)
def test_prompt_reaches_the_model_input(kind, captioners, images):
    captioner = captioners[kind]
    rendered = captioner.processor.batch_decode(_token_ids(captioner, images[:2])["input_ids"],
                                                skip_special_tokens=True)
    for text in rendered:
        # the tiny tokenizers lower-case (MiniLM's uncased WordPiece)
        assert PROMPT.lower() in text
    tokenizer = captioner.processor.tokenizer
    image_token_id = captioner.processor.image_token_id
    assert (_token_ids(captioner, images[:1])["input_ids"] == image_token_id).any()
    assert tokenizer.padding_side == "left"


def test_template_bos_is_not_doubled(captioners, images):
    """The LLaVA template writes BOS itself and its tokenizer adds one too: the prompt must hold only one."""
    captioner = captioners["llava"]
    bos_id = captioner.processor.tokenizer.bos_token_id
    ids = _token_ids(captioner, images)["input_ids"]
    assert (ids[:, 0] == bos_id).all()
    assert ((ids == bos_id).sum(1) == 1).all()


def test_default_prompt_and_fingerprint(vlm_folders, captioners):
    folder = str(vlm_folders["llava"])
    fingerprint = captioners["llava"].fingerprint()
    assert fingerprint["name"] == "chat_vlm"
    assert fingerprint["model"] == folder
    assert fingerprint["prompt"] == PROMPT
    assert fingerprint["max_new_tokens"] == MAX_NEW_TOKENS
    default = CAPTIONERS.build({"name": "chat_vlm", "model": folder, "device": "cpu"})
    assert default.fingerprint()["prompt"] == DEFAULT_CHAT_PROMPT
    rendered = default.processor.batch_decode(_token_ids(default, [Image.new("RGB", (32, 32))])["input_ids"],
                                              skip_special_tokens=True)[0]
    assert "drone pilot" in rendered
    # fingerprints differ when the prompt does, so captions cached under one prompt are not reused for another
    assert default.fingerprint() != fingerprint
