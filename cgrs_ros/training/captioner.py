"""The embedded default captioner: a tiny VisionEncoderDecoder (timm XCiT encoder + GPT-2 decoder).

Everything is a stock transformers class saved with ``save_pretrained``, so the shipped folder loads
through the same ``AutoProcessor`` / ``AutoModelForImageTextToText`` path as hub captioners:

- tokenizer: a byte-level BPE trained offline on the training world's descriptions (the world speaks
  a small canonical vocabulary, so frequent words become single tokens), wrapped in
  ``PreTrainedTokenizerFast`` with ``<s>`` / ``</s>`` / ``<pad>`` / ``<unk>``;
- image processor: ``ViTImageProcessor`` (resize to the encoder's input size, normalise to [-1, 1]);
- both joined in a ``VisionTextDualEncoderProcessor`` (a plain image+tokenizer ProcessorMixin);
- model: ``VisionEncoderDecoderModel`` whose encoder is timm's XCiT through transformers'
  ``TimmWrapper`` (conv stem + attention with an absolute position encoding, so a caption can say on
  which side a landmark lies; the earlier LeViT's relative attention biases put it on a random side,
  and plain ViT/Swin encoders stayed at chance on roof shape within this CPU budget), trained with teacher forcing (focal cross-entropy on the next token),
  decoded greedily.

The training target is one description per image: by default the first of the world's three, whose
neighbour order is fixed (north, east, south, west), so the decoder learns one canonical way to say
each scene instead of averaging over random orders.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import IndexSettings
from ..rectify import views_for_captioner
from .data import Timer, World, augment, preprocess_images
from .schedule import warmup_cosine

SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


@dataclass
class CaptionerConfig:
    encoder: str = "xcit"         # xcit | levit | vit | swin
    rectify: str = "north_up"     # the index setting the captioner is trained for (cgrs_ros.rectify)
    image_size: int = 128         # the world's native size: no detail lost to resizing
    patch_size: int = 8           # vit / swin only
    enc_hidden: int = 128
    enc_layers: int = 3
    enc_heads: int = 4
    dec_hidden: int = 160
    dec_layers: int = 2
    dec_heads: int = 4
    vocab_size: int = 640         # an upper bound: the world's vocabulary needs ~440 byte-level BPE tokens
    max_length: int = 56          # decoder positions (target tokens + start)
    target: str = "first"         # first | all: which descriptions of an image are training targets
    steps: int = 3600              # shape keeps rising to ~3,000 steps (validation monitor in training_report.json)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.02
    warmup: int = 100
    focal_gamma: float = 2.0      # >0: focal loss, (1-p)^gamma down-weights the predictable template words
    augment: bool = True
    bf16: bool = False            # CPU bf16 autocast: a loss for these narrow transformer layers (measured)
    monitor_every: int = 300      # steps between validation checks (when a monitor is given)


def build_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (exact round trip) trained on ``texts``; words split on spaces as GPT-2 does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, padding_side="right", **SPECIALS)


def build_model(cfg: CaptionerConfig, tokenizer):
    from transformers import (GPT2Config, SwinConfig, TimmWrapperConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel,
                              ViTConfig)

    if cfg.encoder == "xcit":
        # timm's XCiT through TimmWrapper: a conv stem (stride 16, learns roof shapes as LeViT's
        # does) plus an absolute Fourier position encoding on every token.  LeViT's tokens carry
        # no absolute position (only relative attention biases), so the decoder's cross-attention
        # could see *that* a lake is in view but not *where*: sides stayed at chance (24.5%).
        encoder = TimmWrapperConfig(architecture="xcit_nano_12_p16_224", num_classes=0, do_pooling=False, model_args={
            "img_size": cfg.image_size, "embed_dim": cfg.enc_hidden, "depth": cfg.enc_layers,
            "num_heads": cfg.enc_heads, "cls_attn_layers": 1})
        encoder.hidden_size = cfg.enc_hidden
        if cfg.enc_hidden == cfg.dec_hidden:
            raise ValueError("xcit encoder: enc_hidden must differ from dec_hidden (enc->dec projection)")
    elif cfg.encoder == "levit":
        # timm's LeViT through transformers' TimmWrapper: a 4-conv stride-16 stem (BatchNorm, learns
        # shapes in hundreds of steps where a plain ViT/Swin stays at chance) followed by attention
        # blocks, returning a token sequence (B, (S/16)^2, C) for the decoder's cross-attention.
        encoder = TimmWrapperConfig(architecture="levit_128s", num_classes=0, do_pooling=False, model_args={
            "img_size": cfg.image_size, "stem_type": "s16", "embed_dim": [cfg.enc_hidden],
            "depth": [cfg.enc_layers], "num_heads": [cfg.enc_heads], "key_dim": 16,
            "attn_ratio": [2.0], "mlp_ratio": [2.0]})
        # Read by VisionEncoderDecoderModel; differing from the decoder width adds the enc->dec
        # projection, which also makes LeViT's (transposed, non-contiguous) tokens contiguous.
        encoder.hidden_size = cfg.enc_hidden
        if cfg.enc_hidden == cfg.dec_hidden:
            raise ValueError("levit encoder: enc_hidden must differ from dec_hidden (enc->dec projection)")
    elif cfg.encoder == "swin":
        encoder = SwinConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.enc_hidden // 4,
                             depths=[max(1, cfg.enc_layers // 3)] * 3, num_heads=[2, 4, 8],
                             window_size=cfg.image_size // cfg.patch_size // 4, drop_path_rate=0.0)
    else:
        encoder = ViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, num_channels=3,
                            hidden_size=cfg.enc_hidden, num_hidden_layers=cfg.enc_layers,
                            num_attention_heads=cfg.enc_heads, intermediate_size=4 * cfg.enc_hidden,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    decoder = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.max_length, n_embd=cfg.dec_hidden,
                         n_layer=cfg.dec_layers, n_head=cfg.dec_heads, add_cross_attention=True,
                         is_decoder=True, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    model = VisionEncoderDecoderModel(config=config)
    gen = model.generation_config
    gen.decoder_start_token_id = tokenizer.bos_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    # callers cap generation with max_new_tokens (<= max_length - 1: the start token takes a position)
    gen.do_sample = False
    gen.num_beams = 1
    return model


def build_processor(cfg: CaptionerConfig, tokenizer):
    from transformers import ViTImageProcessor, VisionTextDualEncoderProcessor

    image_processor = ViTImageProcessor(do_resize=True, size={"height": cfg.image_size, "width": cfg.image_size},
                                        resample=2, do_rescale=True, do_normalize=True,
                                        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _targets(world: World, target: str) -> list[list[str]]:
    out = []
    for texts in world.descriptions:
        if not texts:
            out.append([])
        elif target == "first":
            out.append(texts[:1])
        elif target == "all":
            out.append(list(texts))
        else:
            raise ValueError(f"captioner target {target!r}: use first or all")
    return out


def caption_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 0.0) -> torch.Tensor:
    """Token cross-entropy (labels -100 ignored); with ``gamma`` > 0 the focal variant.

    Most caption tokens are template words the decoder predicts almost surely after a few hundred
    steps; the focal weight (1 - p)^gamma moves the gradient to the tokens that carry the content
    (roof shape, neighbour kinds and sides), which a plain mean lets a few template words drown.
    """
    flat, target = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    ce = torch.nn.functional.cross_entropy(flat, target, ignore_index=-100, reduction="none")
    mask = target != -100
    if gamma > 0:
        ce = ce * (1.0 - torch.exp(-ce)).pow(gamma)
    return ce[mask].sum() / mask.sum().clamp(min=1)


def train_captioner(world: World, out_dir: Path, cfg: CaptionerConfig | None = None, seed: int = 0,
                    progress: bool = True, log=print, monitor=None) -> dict:
    """Train on ``world`` and save_pretrained into ``out_dir`` (created); returns a report dict.

    ``monitor(model, processor) -> dict``, when given, is called every ``cfg.monitor_every`` steps
    and at the end (e.g. caption accuracy on a validation world); its results go into the report.
    """
    from tqdm import tqdm

    from ..models.captioners import _load_processor

    cfg = cfg or CaptionerConfig()
    timer = Timer()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 7])
    targets = _targets(world, cfg.target)
    corpus = [t for texts in targets for t in texts]
    tokenizer = build_tokenizer(corpus, cfg.vocab_size)
    # Save the processor first and read it back the way the captioner registry will, so training
    # pixels come from exactly the inference-time image processor.
    with tempfile.TemporaryDirectory() as tmp:
        build_processor(cfg, tokenizer).save_pretrained(tmp)
        processor = _load_processor(tmp, trust_remote_code=False)
        image_processor = processor.image_processor
        tokenizer = processor.tokenizer

    def transform(image):
        return image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    records = world.gallery.records
    horizontal = IndexSettings().horizontal_platforms

    def view(i, image):
        return views_for_captioner([image], [records[i]], cfg.rectify, horizontal)[0]

    pixels = preprocess_images(world.images(), transform, desc="captioner", progress=progress, view=view)
    # Token ids of every target text (+ eos), padded with -100 for the loss.
    unique = sorted(set(corpus))
    index = {t: i for i, t in enumerate(unique)}
    encoded = tokenizer(unique, add_special_tokens=False)["input_ids"]
    max_len = cfg.max_length - 1
    too_long = sum(len(ids) + 1 > max_len for ids in encoded)
    labels = torch.full((len(unique), max_len), -100, dtype=torch.long)
    for i, ids in enumerate(encoded):
        ids = (ids + [tokenizer.eos_token_id])[:max_len]
        labels[i, :len(ids)] = torch.tensor(ids)
    image_targets = [[index[t] for t in texts] for texts in targets]
    usable = np.array([i for i, t in enumerate(image_targets) if t])
    lengths = [len(ids) + 1 for ids in encoded]
    log(f"captioner: {len(usable)} images, {len(unique)} target texts, vocab {len(tokenizer)}, "
        f"tokens/target mean {np.mean(lengths):.1f} max {max(lengths)} ({too_long} truncated), "
        f"prep {timer():.0f}s")

    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: warmup_cosine(s, cfg.warmup, cfg.steps))
    generator = torch.Generator().manual_seed(seed)
    pad, start = tokenizer.pad_token_id, tokenizer.bos_token_id
    losses, checks = [], []
    model.train()
    bar = tqdm(range(cfg.steps), desc="train captioner", disable=not progress, mininterval=2.0)
    for step in bar:
        rows = rng.choice(usable, size=cfg.batch_size, replace=len(usable) < cfg.batch_size)
        text_rows = [image_targets[r][rng.integers(len(image_targets[r]))] for r in rows]
        batch_labels = labels[text_rows]
        width = int((batch_labels != -100).sum(1).max())
        batch_labels = batch_labels[:, :width]
        decoder_input = torch.cat([torch.full((len(rows), 1), start), batch_labels[:, :-1]], dim=1)
        decoder_input = decoder_input.masked_fill(decoder_input == -100, pad)
        images = pixels[torch.from_numpy(rows)]
        images = augment(images, generator) if cfg.augment else images.float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = model(pixel_values=images, decoder_input_ids=decoder_input).logits
        loss = caption_loss(logits.float(), batch_labels, cfg.focal_gamma)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if monitor is not None and (step + 1) % cfg.monitor_every == 0 and step + 1 < cfg.steps:
            model.eval()
            checks.append({"step": step + 1, **monitor(model, processor)})
            log(f"captioner step {step + 1}: {checks[-1]}")
            model.train()
    model.eval()
    train_time = timer()
    if monitor is not None:
        checks.append({"step": cfg.steps, **monitor(model, processor)})
        log(f"captioner final: {checks[-1]}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.half().save_pretrained(out_dir, safe_serialization=True)   # fp16 storage; loading casts
    processor.save_pretrained(out_dir)
    model.float()
    return {
        "config": asdict(cfg), "seed": seed, "parameters": n_params, "target_texts": len(unique),
        "vocab_size": len(tokenizer), "steps": cfg.steps,
        "loss_first_100": float(np.mean(losses[:100])), "loss_last_100": float(np.mean(losses[-100:])),
        "loss_curve": [round(float(np.mean(losses[i:i + 100])), 4) for i in range(0, len(losses), 100)],
        "seconds": round(train_time, 1), "validation": checks,
    }


def accuracy_monitor(val_world: World, rectify: str, max_new_tokens: int, limit: int = 300):
    """A ``monitor`` for :func:`train_captioner`: greedy captions of ``limit`` validation views
    (shown as the index will show them) scored attribute by attribute against their descriptions."""
    from PIL import Image

    from .evaluate import caption_accuracy

    rows = [i for i, texts in enumerate(val_world.descriptions) if texts][:limit]
    records, paths = val_world.gallery.records, val_world.images()
    horizontal = IndexSettings().horizontal_platforms
    images = views_for_captioner([Image.open(paths[i]).convert("RGB") for i in rows], [records[i] for i in rows],
                                 rectify, horizontal)
    truths = [val_world.descriptions[i][0] for i in rows]

    def monitor(model, processor) -> dict:
        with torch.inference_mode():
            pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
            ids = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens)
        captions = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return {name: v["accuracy"] for name, v in caption_accuracy(captions, truths).items()}

    return monitor
