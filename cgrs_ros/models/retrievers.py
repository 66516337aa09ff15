"""Coarse retrievers: CLIP-style dual encoders that put images and text in one embedding space.

Every retriever returns float32, L2-normalised rows, so cosine similarity is a dot product and an
index built once can be searched with a matrix product (or memory-mapped on a Jetson).
"""
from __future__ import annotations

import copy
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import CGRSInputError
from .device import in_fitting_batches, resolve_device, resolve_dtype
from .local_weights import resolve_model_path
from .onnx_text import PositionalInputs, choose_runtime, onnx_or_none, release_weights
from .registry import Registry

RETRIEVERS: Registry["Retriever"] = Registry("retriever")
_log = logging.getLogger(__name__)

# Weight files whose name says they were trained with QuickGELU: OpenAI's CLIPs (the JIT files are
# named like the model, ViT-B-32.pt) and GeoRSCLIP (RS5M_*), fine-tuned from pretrained="openai",
# which open_clip builds with QuickGELU.  Not RemoteCLIP: its authors load it into plain ViT-B-32.
_QUICK_GELU_FILE_NAMES = re.compile(r"openai|georsclip|rs5m|^(vit-[bl]-\d+|rn\d+(x\d+)?)\.pt$",
                                    re.IGNORECASE)

# open_clip model configs shipped with the project (the embedded default CLIP); registered by name.
SHIPPED_OPEN_CLIP_CONFIGS = Path(__file__).resolve().parent.parent / "resources" / "open_clip"


class Retriever(Protocol):
    embedding_dim: int

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...
    def fingerprint(self) -> dict: ...
    def close(self) -> None: ...


def l2_normalise(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


@RETRIEVERS.register("open_clip")
class OpenClipRetriever:
    """Any open_clip model.

    Options:
      model        open_clip name (``ViT-B-32``), ``local-dir:/folder`` or ``hf-hub:org/repo``.
      pretrained   an open_clip pretrained tag (``laion2b_s34b_b79k``) or a full checkpoint file
                   (RemoteCLIP ``RemoteCLIP-ViT-B-32.pt``, GeoRSCLIP ``RS5M_ViT-B-32.pt``).
      checkpoint   a state-dict file (safetensors or weights-only torch) loaded after creation whose
                   missing keys may only belong to a tower initialised from pretrained weights (a
                   frozen Hugging Face text tower is not re-shipped in every checkpoint).
      model_config an extra open_clip model-config JSON file or folder to register before creating.
      force_quick_gelu  build the model with QuickGELU (what ``<model>-quickgelu`` names do): weights
                   trained with it (OpenAI, GeoRSCLIP) give worse vectors under GELU without any
                   error, so a weight file whose name or metadata suggests it gets a warning.
      text_runtime auto | torch | onnx | onnx_int8: where query texts are encoded
                   (:mod:`cgrs_ros.models.onnx_text`;
                   images always run on torch).
    """

    def __init__(self, model: str, pretrained: str | None = None, checkpoint: str | None = None,
                 model_config: str | None = None, batch_size: int = 64, force_quick_gelu: bool = False,
                 text_runtime: str = "auto", channels_last: bool = True, device: str | None = None,
                 dtype: str | None = None):
        import open_clip

        if SHIPPED_OPEN_CLIP_CONFIGS.is_dir():
            open_clip.add_model_config(SHIPPED_OPEN_CLIP_CONFIGS)
        if model_config:
            if not Path(model_config).exists():
                raise CGRSInputError(f"retriever model_config {model_config} does not exist")
            open_clip.add_model_config(Path(model_config))
        for name, path in (("pretrained", pretrained), ("checkpoint", checkpoint)):
            if path and _looks_like_file(path) and not Path(path).is_file():
                raise CGRSInputError(f"retriever {name} file {path} does not exist")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        runtime = choose_runtime(text_runtime, self.device)
        self.batch_size = int(batch_size)
        self._spec = {"name": "open_clip", "model": model, "pretrained": pretrained,
                      "checkpoint": Path(checkpoint).name if checkpoint else None}
        if force_quick_gelu:
            self._spec["force_quick_gelu"] = True
        model_kwargs, tokenizer_name = _resolve_hf_text_tower(open_clip, model)
        if not force_quick_gelu and not _builds_quick_gelu(open_clip, model):
            hint = quick_gelu_hint([p for p in (pretrained, checkpoint) if p and _looks_like_file(p)])
            if hint:
                _log.warning("retriever model %r builds GELU, but %s; if so, use %r or set "
                             "force_quick_gelu: true", model, hint, f"{model}-quickgelu")
        with _weights_refused_clearly(model, pretrained):
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained, device=self.device, force_quick_gelu=bool(force_quick_gelu),
                **model_kwargs)
        if checkpoint:
            with _weights_refused_clearly(model, checkpoint):
                _load_partial_checkpoint(open_clip, self.model, checkpoint, model_kwargs)
        self.model = self.model.to(self.device, dtype=self.dtype).eval()
        # Channels-last images: oneDNN's CPU convolutions (and cuDNN's fp16 ones) run fastest on them; with
        # the embedded ResNet tower, builds without captions ran 1.06-1.35x as fast in three runs of
        # bench/build_benchmark.py; a ViT only changes the layout of its patch embedding.  Same vectors.
        self._image_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.visual.to(memory_format=self._image_format)
        if tokenizer_name:
            context = model_kwargs["text_cfg"].get("context_length", 77)
            self.tokenizer = open_clip.tokenizer.HFTokenizer(tokenizer_name, context_length=context)
        else:
            self.tokenizer = open_clip.get_tokenizer(model)
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["probe"]).to(self.device))
        self.embedding_dim = int(probe.shape[-1])
        self._text_onnx = None
        if runtime != "torch":
            probes = [{"tokens": self._tokens(texts)} for texts in (["probe"], _LONGER_PROBES)]
            self._text_onnx = onnx_or_none(PositionalInputs(self.model, ["tokens"], _encode_tokens), probes,
                                           f"retriever {model!r}", runtime)
        self.text_runtime = "torch" if self._text_onnx is None else runtime     # what encodes texts
        if self._text_onnx is not None and isinstance(getattr(self.model, "text", None), torch.nn.Module):
            release_weights(self.model.text)      # a separate text tower (CustomTextCLIP): only ONNX reads it

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit vectors, one row per image, in batches of ``batch_size`` (halved for good if one runs
        the GPU out of memory)."""
        rows, self.batch_size = in_fitting_batches(list(images), self.batch_size, self._encode_image_batch,
                                                   f"retriever {self._spec['model']}")
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.embedding_dim)

    def _encode_image_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        batch = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        with torch.inference_mode():
            features = self.model.encode_image(batch.to(self.device, dtype=self.dtype,
                                                        memory_format=self._image_format))
        return l2_normalise(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self._text_onnx is not None:
            step = self._text_onnx.texts_per_call or max(1, len(texts))     # int8: one text per call
            rows = [self._text_onnx({"tokens": self._tokens(texts[start:start + step]).numpy()})
                    for start in range(0, len(texts), step)]
            if not rows:
                return np.zeros((0, self.embedding_dim), dtype=np.float32)
            return l2_normalise(torch.from_numpy(np.concatenate(rows)))
        with torch.inference_mode():
            features = self.model.encode_text(self._tokens(texts).to(self.device))
        return l2_normalise(features)

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts))
        pad = _padding_token(self.model)
        if pad is not None and tokens.shape[1]:
            # The tokenizer pads every text to the context length (64-77 tokens); a query is ~20.
            # An HF text tower masks padding out of attention and pooling, so the all-padding
            # columns change nothing but cost half of the encoding.
            used = (tokens != pad).any(dim=0).nonzero()
            tokens = tokens[:, :int(used.max()) + 1 if len(used) else 1]
        return tokens

    def fingerprint(self) -> dict:
        return dict(self._spec, embedding_dim=self.embedding_dim)

    def close(self) -> None:
        self.model = self._text_onnx = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# texts of another length and batch than "probe": an exported text tower is checked on both shapes
_LONGER_PROBES = ["the red-roofed hall just north of the round pool", "a lake"]


def _encode_tokens(model, inputs: dict) -> torch.Tensor:
    return model.encode_text(inputs["tokens"])


def _padding_token(model) -> int | None:
    """The pad id of an HF text tower whose attention and pooling ignore padding (open_clip
    ``HFTextEncoder`` with mean or CLS pooling), or None where the output may depend on the padded
    length (open_clip's own towers, max pooling)."""
    from open_clip.hf_model import ClsLastHiddenStatePooler, ClsPooler, HFTextEncoder, MeanPooler

    text = getattr(model, "text", None)
    if isinstance(text, HFTextEncoder) and isinstance(text.pooler, (MeanPooler, ClsPooler, ClsLastHiddenStatePooler)):
        return int(text.config.pad_token_id)
    return None


def _builds_quick_gelu(open_clip, model: str) -> bool:
    config = None if model.startswith(("local-dir:", "hf-hub:")) else open_clip.get_model_config(model)
    return bool((config or {}).get("quick_gelu")) or "quickgelu" in model.lower()


def quick_gelu_hint(files: Sequence[str]) -> str | None:
    """Why these weight files look trained with QuickGELU (their name, or a safetensors metadata
    entry naming it), or None."""
    for file in files:
        name = Path(file).name
        if _QUICK_GELU_FILE_NAMES.search(name):
            return f"weight file {name!r} is named like QuickGELU-trained weights (OpenAI, GeoRSCLIP)"
        if name.endswith(".safetensors") and Path(file).is_file():
            from safetensors import safe_open
            with safe_open(file, framework="pt") as handle:
                metadata = handle.metadata() or {}
            said = [f"{k}={v}" for k, v in metadata.items()
                    if ("quickgelu" in _squeeze(k) and v.strip().lower() in ("true", "1", "yes"))
                    or "quickgelu" in _squeeze(v)]
            if said:
                return f"weight file {name!r} has metadata {', '.join(said)}"
    return None


@contextmanager
def _weights_refused_clearly(model: str, file: str | None):
    """A weight file that is not a safetensors or weights-only torch file (garbage, truncated, or a
    pickle of arbitrary objects, which torch's weights-only loader refuses) is named in one line."""
    import pickle

    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not (file or model.startswith("local-dir:")):
            raise       # not a weight file of the user's
        what = (f"weight file {file}" if file else f"weights in {model[len('local-dir:'):]}"
                if model.startswith("local-dir:") else f"the weights of {model!r}")
        raise CGRSInputError(f"retriever {what} is not a readable safetensors or weights-only torch file: "
                             f"{' '.join(str(exc).split())[:200]}") from None


def _squeeze(text: str) -> str:
    return text.lower().replace("_", "").replace("-", "")


def _looks_like_file(value: str) -> bool:
    return "/" in value or Path(value).suffix in (".pt", ".pth", ".bin", ".safetensors", ".npz")


def _resolve_hf_text_tower(open_clip, model: str) -> tuple[dict, str | None]:
    """Point a Hugging Face text tower at a locally packaged copy of its weights when there is one."""
    config = open_clip.get_model_config(model) if not model.startswith(("local-dir:", "hf-hub:")) else None
    if config is None:
        if model.startswith("local-dir:"):
            path = Path(model[len("local-dir:"):]) / "open_clip_config.json"
            if not path.is_file():
                raise CGRSInputError(f"retriever model {model}: {path} does not exist")
            config = json.loads(path.read_text()).get("model_cfg")
        if config is None and not model.startswith("hf-hub:"):
            raise CGRSInputError(f"retriever model {model!r} is not an open_clip model config")
    text_cfg = (config or {}).get("text_cfg", {})
    if "hf_model_name" not in text_cfg:
        return {}, None
    text_cfg = copy.deepcopy(text_cfg)
    text_cfg["hf_model_name"] = resolve_model_path(text_cfg["hf_model_name"])
    tokenizer = resolve_model_path(text_cfg.get("hf_tokenizer_name", text_cfg["hf_model_name"]))
    text_cfg["hf_tokenizer_name"] = tokenizer
    return {"text_cfg": text_cfg}, tokenizer


def _load_partial_checkpoint(open_clip, model, checkpoint: str, model_kwargs: dict) -> None:
    result = open_clip.load_checkpoint(model, checkpoint, strict=False)
    if result is None:
        return
    frozen_prefixes = ("text.transformer.",) if model_kwargs.get("text_cfg", {}).get("hf_model_name") else ()
    missing = [k for k in result.missing_keys if not k.startswith(frozen_prefixes)]
    if missing or result.unexpected_keys:
        raise CGRSInputError(
            f"checkpoint {checkpoint} does not fit the model: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}")
