"""The embedded default query-caption matcher: a small cross-encoder trained on the training world.

A bi-encoder (MiniLM) embeds "a lake to the east and trees to the south" and "a lake to the south
and trees to the east" almost identically; a cross-encoder reads query and caption together and
can check each stated side against the caption.  Everything is a stock class saved with
``save_pretrained``, so the folder loads through sentence-transformers' ``CrossEncoder`` exactly
like a hub reranker:

- tokenizer: a lower-cased WordPiece (``BertTokenizerFast``) trained on the world's descriptions
  and query texts (its synonyms included; anything else is ``[UNK]``);
- model: ``BertForSequenceClassification`` with one label, a few narrow layers; the
  CrossEncoder applies a sigmoid, so a score is P(the caption's place fits the query).

Training pairs are made on the fly from the training world's *places*: a query is rendered from
a few facts of a place (roof colour, shape, size, neighbours with or without sides; a quarter
name only two neighbours with their sides) through the same synonym tables as the world's
queries, and paired with one true description of a view of either that place or a *hard
negative* place that shares all of the query's facts but one (a swapped side, another colour).
The label is whether every fact of the query holds for the caption's place, so a second place
that also fits the query is a positive, not noise.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .data import Timer, World

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class MatcherConfig:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 384
    vocab_size: int = 1200        # an upper bound: the world's words and synonyms need ~600
    max_length: int = 128         # query + caption tokens
    steps: int = 2500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 200
    positive_share: float = 0.4   # pairs whose caption shows the query's own place
    hard_share: float = 0.45      # pairs with a place that misses exactly one of the query's facts
    relation_share: float = 0.25  # queries made of two neighbour-side facts only


class PairSampler:
    """(query, caption, label) triples drawn from a world's places and their views' descriptions."""

    def __init__(self, world: World, seed_world: int, cfg: MatcherConfig, rng: np.random.Generator):
        from ..world.layout import build_places
        from ..world.geodesy import DEFAULT_DATUM
        from ..world.query_text import place_facts

        places = build_places(seed_world, len(world.place_ids), DEFAULT_DATUM)
        by_id = {p.place_id: p for p in places}
        self.places = [by_id[place_id] for place_id in world.place_ids]
        self.facts = [place_facts(p) for p in self.places]
        self.captions: list[list[str]] = [[] for _ in self.places]
        for place_index, texts in zip(world.image_place, world.descriptions):
            self.captions[place_index].extend(texts)
        self.holders: dict[tuple, set[int]] = {}
        for i, facts in enumerate(self.facts):
            for fact in facts:
                self.holders.setdefault(fact, set()).add(i)
        self.cfg, self.rng = cfg, rng

    def query(self, place: int) -> tuple[str, tuple]:
        from ..world.query_text import _pick_facts, render

        p = self.places[place]
        sided = [("near", f.kind, f.direction) for f in p.features]
        if self.rng.random() < self.cfg.relation_share and len(sided) >= 2:
            picks = self.rng.choice(len(sided), 2, replace=False)
            facts = tuple(sided[i] for i in sorted(picks))
        else:
            facts = _pick_facts(p, int(self.rng.integers(1, 5)), self.rng)
        return render(facts, self.rng), facts

    def hard_negative(self, place: int, facts: tuple) -> int | None:
        """A place holding every fact of ``facts`` but one (and not all of them)."""
        sets = [self.holders.get(f, set()) for f in facts]
        near = set()
        for left_out in range(len(facts)):
            rest = [s for i, s in enumerate(sets) if i != left_out]
            near |= set.intersection(*rest) - sets[left_out] if rest else set()
        near.discard(place)
        if not near:
            return None
        return int(self.rng.choice(sorted(near)))

    def draw(self) -> tuple[str, str, float]:
        place = int(self.rng.integers(len(self.places)))
        text, facts = self.query(place)
        roll = self.rng.random()
        other = place
        if roll >= self.cfg.positive_share:
            hard = self.hard_negative(place, facts) if roll < self.cfg.positive_share + self.cfg.hard_share else None
            other = hard if hard is not None else int(self.rng.integers(len(self.places)))
        captions = self.captions[other]
        caption = captions[int(self.rng.integers(len(captions)))]
        return text, caption, float(set(facts) <= self.facts[other])

    def corpus(self) -> list[str]:
        texts = [c for cs in self.captions for c in cs]
        texts += [self.query(int(self.rng.integers(len(self.places))))[0] for _ in range(20000)]
        return texts


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                                             show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, model_max_length=512)


def build_model(cfg: MatcherConfig, tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate,
                        max_position_embeddings=cfg.max_length, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    return BertForSequenceClassification(config)


def _lr(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def train_matcher(world: World, world_seed: int, out_dir: Path, cfg: MatcherConfig | None = None, seed: int = 0,
                  progress: bool = True, log=print, val_world: World | None = None, val_seed: int = 2) -> dict:
    """Train on ``world`` (generated with ``world_seed``) and save a CrossEncoder folder into ``out_dir``."""
    from tqdm import tqdm

    cfg = cfg or MatcherConfig()
    timer = Timer()
    torch.manual_seed(seed)
    sampler = PairSampler(world, world_seed, cfg, np.random.default_rng([seed, 11]))
    tokenizer = build_tokenizer(sampler.corpus(), cfg.vocab_size)
    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"matcher: {len(sampler.places)} places, vocab {len(tokenizer)}, {n_params} parameters, prep {timer():.0f}s")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: _lr(s, cfg.warmup, cfg.steps))
    losses = []
    model.train()
    bar = tqdm(range(cfg.steps), desc="train matcher", disable=not progress, mininterval=2.0)
    for step in bar:
        queries, captions, labels = zip(*(sampler.draw() for _ in range(cfg.batch_size)))
        batch = tokenizer(list(queries), list(captions), padding=True, truncation=True,
                          max_length=cfg.max_length, return_tensors="pt")
        logits = model(**batch).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(labels))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    model.eval()
    train_time = timer()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    report = {"config": asdict(cfg), "seed": seed, "parameters": n_params, "vocab_size": len(tokenizer),
              "loss_first_100": float(np.mean(losses[:100])), "loss_last_100": float(np.mean(losses[-100:])),
              "loss_curve": [round(float(np.mean(losses[i:i + 250])), 4) for i in range(0, len(losses), 250)],
              "seconds": round(train_time, 1)}
    if val_world is not None:
        report["validation"] = _pair_accuracy(out_dir, PairSampler(val_world, val_seed, cfg,
                                                                   np.random.default_rng([seed, 12])))
        log(f"matcher validation (world seed {val_seed}): {report['validation']}")
    return report


def _pair_accuracy(folder: Path, sampler: PairSampler, pairs: int = 2000) -> dict:
    """Accuracy at 0.5 of the saved folder, loaded the shipped way, on fresh pairs of another world."""
    from ..models import TEXT_SIMILARITIES

    matcher = TEXT_SIMILARITIES.build({"name": "cross_encoder", "model": str(folder), "device": "cpu"})
    drawn = [sampler.draw() for _ in range(pairs)]
    scores = np.asarray(matcher.model.predict([(q, c) for q, c, _ in drawn], batch_size=256,
                                              show_progress_bar=False)).reshape(-1)
    labels = np.array([label for _, _, label in drawn])
    matcher.close()
    return {"pairs": pairs, "positives": int(labels.sum()),
            "accuracy": round(float(np.mean((scores >= 0.5) == (labels == 1.0))) * 100, 2)}
