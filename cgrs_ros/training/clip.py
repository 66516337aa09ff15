"""The embedded default coarse retriever: ``cgrs-tiny-clip``, an open_clip CustomTextCLIP.

Image tower: a small timm CNN trained from scratch.  Text tower: the frozen all-MiniLM-L6-v2 (mean
pooled) with a trained MLP projection.  The model is created exactly as the retriever registry
creates it (the shipped JSON config, the packaged MiniLM folder), and the checkpoint holds only
what training changes (``visual.*``, ``text.proj.*``, ``logit_scale``): the frozen MiniLM weights
come from their own package at load time.

Because the MiniLM is frozen, its pooled output for every training description is computed once;
training then only runs the CNN and the projection MLP, which is what makes minutes on a CPU
enough.  Batches hold one (image, description) pair per place, each place at most once, so every
in-batch negative really is another place (views of one place never repel each other).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .data import Timer, World, augment, preprocess_images
from .schedule import warmup_cosine

MODEL_NAME = "cgrs-tiny-clip"
TRAINED_PREFIXES = ("visual.", "text.proj.", "logit_scale")


@dataclass
class ClipConfig:
    steps: int = 1000
    batch_size: int = 192
    lr: float = 3e-3
    text_lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    texts_per_place: int = 6      # distinct descriptions of a place whose MiniLM features are computed
    query_share: float = 0.5      # share of pairs whose text is one of the place's training-world queries
    augment: bool = True
    bf16: bool = True             # CPU autocast for the CNN (AMX / AVX512-bf16: ~2x); weights stay fp32
    vision_cfg: dict | None = None  # experiments only: override the shipped config's vision tower


def create_model(vision_cfg: dict | None = None):
    """(model, inference preprocess, tokenizer) built the way ``OpenClipRetriever`` builds them."""
    import open_clip

    from ..models.retrievers import SHIPPED_OPEN_CLIP_CONFIGS, _resolve_hf_text_tower

    open_clip.add_model_config(SHIPPED_OPEN_CLIP_CONFIGS)
    model_kwargs, tokenizer_name = _resolve_hf_text_tower(open_clip, MODEL_NAME)
    if vision_cfg:
        base = dict(open_clip.get_model_config(MODEL_NAME)["vision_cfg"])
        base.update(vision_cfg)
        model_kwargs["vision_cfg"] = base
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=None, **model_kwargs)
    context = model_kwargs["text_cfg"].get("context_length", 77)
    tokenizer = open_clip.tokenizer.HFTokenizer(tokenizer_name, context_length=context)
    return model, preprocess, tokenizer


@torch.inference_mode()
def pooled_text_features(model, tokenizer, texts: list[str], batch_size: int = 128, bf16: bool = True,
                         progress: bool = True) -> torch.Tensor:
    """The frozen MiniLM's pooled output (the text projection's input) for ``texts``.

    Same tokenizer, mask and pooler as ``model.text``; batches are sorted by length and trimmed of
    all-padding columns, which the mask makes invisible, and run under bf16 autocast (the result
    differs from fp32 by ~0.5% relative, far below what the projection can tell apart).
    """
    from tqdm import tqdm

    text = model.text
    ids = tokenizer(texts)
    pad = text.config.pad_token_id
    lengths = (ids != pad).sum(1)
    order = torch.argsort(lengths, descending=True)
    out = torch.empty((len(texts), text.config.hidden_size), dtype=torch.float32)
    text.transformer.eval()
    for start in tqdm(range(0, len(texts), batch_size), desc="MiniLM features", disable=not progress,
                      mininterval=2.0):
        rows = order[start:start + batch_size]
        batch = ids[rows][:, :int(lengths[rows].max())]
        mask = (batch != pad).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = text.transformer(input_ids=batch, attention_mask=mask)
        out[rows] = text.pooler(hidden, mask).float()
    return out


def select_texts(world: World, texts_per_place: int, rng: np.random.Generator) -> tuple[list[list[int]], list[str]]:
    """Per image, indices into a list of unique texts (returned second) chosen within a budget.

    Every image keeps its first description (the one naming every visible object in a fixed order);
    the remaining budget of each place is filled with other descriptions of its images at random.
    """
    unique: dict[str, int] = {}
    chosen: list[set[str]] = [set() for _ in range(world.n_images)]
    by_place: dict[int, list[int]] = {}
    for i, place in enumerate(world.image_place):
        by_place.setdefault(int(place), []).append(i)
    for images in by_place.values():
        picked: set[str] = set()
        for i in images:
            if world.descriptions[i]:
                chosen[i].add(world.descriptions[i][0])
                picked.add(world.descriptions[i][0])
        extra = sorted({t for i in images for t in world.descriptions[i][1:]} - picked)
        budget = max(0, texts_per_place - len(picked))
        for k in rng.permutation(len(extra))[:budget]:
            picked.add(extra[k])
        for i in images:
            chosen[i].update(t for t in world.descriptions[i][1:] if t in picked)
    per_image = []
    for texts in chosen:
        per_image.append([unique.setdefault(t, len(unique)) for t in sorted(texts)])
    return per_image, list(unique)


def trained_state_dict(model) -> dict[str, torch.Tensor]:
    """What the shipped checkpoint holds: everything except the frozen MiniLM, as fp16 (BN counters stay int)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("text.transformer."):
            continue
        if not key.startswith(TRAINED_PREFIXES):
            raise RuntimeError(f"unexpected parameter {key} outside the trained parts")
        value = value.detach().cpu().contiguous()
        out[key] = value.half() if value.is_floating_point() and key != "logit_scale" else value
    return out


def train_clip(world: World, cfg: ClipConfig | None = None, seed: int = 0, progress: bool = True,
               log=print, callback=None) -> tuple[object, dict]:
    """Train on ``world``; returns (model in eval mode, report)."""
    from tqdm import tqdm

    cfg = cfg or ClipConfig()
    timer = Timer()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 3])
    model, preprocess, tokenizer = create_model(cfg.vision_cfg)
    for p in model.text.transformer.parameters():
        p.requires_grad_(False)

    per_image, texts = select_texts(world, cfg.texts_per_place, rng)
    place_queries: dict[int, list[int]] = {}
    if cfg.query_share > 0:
        index = {p: i for i, p in enumerate(world.place_ids)}
        for query in world.queries:
            if query.place_id in index:
                place_queries.setdefault(index[query.place_id], []).append(len(texts))
                texts.append(query.text)
    features = pooled_text_features(model, tokenizer, texts, progress=progress)
    text_time = timer()
    pixels = preprocess_images(world.images(), preprocess, desc="CLIP", progress=progress)
    log(f"clip: {world.n_images} images of {len(world.place_ids)} places, {len(texts)} texts "
        f"(MiniLM {text_time:.0f}s), images {timer() - text_time:.0f}s")

    places: dict[int, list[int]] = {}
    for i, place in enumerate(world.image_place):
        if per_image[i]:
            places.setdefault(int(place), []).append(i)
    place_list = np.array(sorted(places))
    batch = min(cfg.batch_size, len(place_list))

    visual = list(model.visual.parameters())
    decay = [p for p in visual if p.ndim >= 2]
    no_decay = [p for p in visual if p.ndim < 2]
    optimiser = torch.optim.AdamW([
        {"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
        {"params": list(model.text.proj.parameters()), "weight_decay": cfg.weight_decay, "lr": cfg.text_lr},
        {"params": [model.logit_scale], "weight_decay": 0.0, "lr": cfg.text_lr},
    ], betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: warmup_cosine(s, cfg.warmup, cfg.steps))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch)
    losses = []
    model.visual.train()
    model.text.proj.train()
    train_start = timer()
    bar = tqdm(range(cfg.steps), desc="train CLIP", disable=not progress, mininterval=2.0)
    for step in bar:
        chosen = rng.choice(place_list, size=batch, replace=False)
        images = np.array([places[p][rng.integers(len(places[p]))] for p in chosen])
        use_query = rng.random(batch) < cfg.query_share
        text_rows = [place_queries[p][rng.integers(len(place_queries[p]))] if q and p in place_queries
                     else per_image[i][rng.integers(len(per_image[i]))]
                     for p, i, q in zip(chosen, images, use_query)]
        x = pixels[torch.from_numpy(images)]
        x = augment(x, generator) if cfg.augment else x.float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            image_features = model.visual(x)
        image_features = torch.nn.functional.normalize(image_features.float(), dim=-1)
        text_features = torch.nn.functional.normalize(model.text.proj(features[text_rows]), dim=-1)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        loss = 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                      + torch.nn.functional.cross_entropy(logits.T, labels))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-25:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if callback is not None:
            callback(step, model)
    model.eval()
    report = {
        "config": asdict(cfg), "seed": seed, "images": world.n_images, "places": len(world.place_ids),
        "texts": len(texts), "queries": sum(map(len, place_queries.values())), "steps": cfg.steps, "batch_size": batch,
        "trained_parameters": sum(p.numel() for p in model.visual.parameters())
        + sum(p.numel() for p in model.text.proj.parameters()) + 1,
        "loss_first_100": float(np.mean(losses[:100])), "loss_last_100": float(np.mean(losses[-100:])),
        "loss_curve": [round(float(np.mean(losses[i:i + 100])), 4) for i in range(0, len(losses), 100)],
        "logit_scale": float(model.logit_scale.detach().exp()),
        "seconds_text_features": round(text_time, 1),
        "seconds_train": round(timer() - train_start, 1), "seconds": round(timer(), 1),
    }
    return model, report


def save_checkpoint(model, path: Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(trained_state_dict(model), str(path), metadata={"model": MODEL_NAME, "format": "pt"})
    return path
