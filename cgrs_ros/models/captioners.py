"""Captioners: vision-language models that describe a candidate image in words.

Two families cover the on-board captioners people use:
- ``image_to_text``: encoder-decoder captioners (BLIP, GIT, VisionEncoderDecoder such as the
  embedded default): pixels in, caption out, optional text prefix.
- ``chat_vlm``: chat-style VLMs (Qwen2-VL, Qwen2.5-VL, SmolVLM, ...) driven through their processor's
  chat template with a configurable instruction prompt.
Both load a hub id or a local folder through transformers' Auto classes and generate in batches.
"""
from __future__ import annotations

import copy
import logging
from typing import Protocol, Sequence

import torch
from PIL import Image

from ..compat import cache_drops_rows
from ..errors import CGRSInputError
from .device import in_fitting_batches, resolve_device, resolve_dtype
from .local_weights import resolve_model_path
from .registry import Registry

CAPTIONERS: Registry["Captioner"] = Registry("captioner")

DEFAULT_CHAT_PROMPT = ("Describe this aerial image of a place for a drone pilot: the main building, its roof "
                       "colour and shape, and what lies around it (roads, water, pools, parking, fields) "
                       "with directions. One or two sentences.")


class _PadsAfterTheEnd(logging.Filter):
    """Drops transformers' "passing in an `attention_mask` ... input_ids may be padded" warning.

    transformers drops an all-ones attention mask before generating (it is implied), and then warns,
    once per process, as soon as a caption that has ended is extended with pad tokens: those tokens
    come after the end of their caption and are never read.  The prompts of a batch are always passed
    with the processor's own mask, so the warning can only be about those pads.  It used to print
    in every build and node start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "input_ids may be padded" not in record.getMessage()


logging.getLogger("transformers.modeling_utils").addFilter(_PadsAfterTheEnd())


class Captioner(Protocol):
    def caption(self, images: Sequence[Image.Image]) -> list[str]: ...
    def fingerprint(self) -> dict: ...
    def close(self) -> None: ...


def _image_text_model_class():
    import transformers
    # transformers >= 4.50 folds Vision2Seq into ImageTextToText; older stacks (Humble-era) only have the former.
    return getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq


class _SplitProcessor:
    """Image processor + tokenizer for checkpoints saved without a joint processor (VisionEncoderDecoder)."""

    def __init__(self, image_processor, tokenizer):
        self.image_processor, self.tokenizer = image_processor, tokenizer

    def __call__(self, images, text=None, return_tensors="pt", **kwargs):
        inputs = dict(self.image_processor(images=images, return_tensors=return_tensors))
        if text is not None:
            inputs.update(self.tokenizer(text, return_tensors=return_tensors, padding=True))
        return inputs

    def batch_decode(self, ids, **kwargs):
        return self.tokenizer.batch_decode(ids, **kwargs)


def _load_processor(path: str, trust_remote_code: bool):
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, ProcessorMixin

    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    if isinstance(processor, ProcessorMixin):
        return processor
    return _SplitProcessor(AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code),
                           AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code))


class TransformersCaptioner:
    """Shared loading, batching and decoding; subclasses only say how a batch is prompted."""

    kind = ""

    def __init__(self, model: str, max_new_tokens: int = 30, num_beams: int = 1, prompt: str | None = None,
                 batch_size: int = 16, trust_remote_code: bool = False,
                 device: str | None = None, dtype: str | None = None):
        if not isinstance(model, str) or not model:
            raise CGRSInputError(f"captioner {self.kind}: 'model' must be a hub id or a folder")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_new_tokens, self.num_beams = int(max_new_tokens), int(num_beams)
        self.batch_size = int(batch_size)
        self.prompt = prompt
        self._spec = {"name": self.kind, "model": model, "prompt": prompt,
                      "max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
        path = resolve_model_path(model)
        self.processor = _load_processor(path, trust_remote_code)
        self.model = _image_text_model_class().from_pretrained(
            path, dtype=self.dtype, trust_remote_code=trust_remote_code).to(self.device).eval()

    def _inputs(self, images: list[Image.Image]) -> dict:
        raise NotImplementedError

    def _strip_prompt(self, ids: torch.Tensor, inputs: dict) -> torch.Tensor:
        return ids

    def _generate(self, inputs: dict) -> torch.Tensor:
        return self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                   do_sample=False)

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per image, in batches of ``batch_size`` (halved for good if one runs the GPU
        out of memory)."""
        captions, self.batch_size = in_fitting_batches(list(images), self.batch_size, self._caption_batch,
                                                       f"captioner {self._spec['model']}")
        return captions

    def _caption_batch(self, images: Sequence[Image.Image]) -> list[str]:
        inputs = {k: v.to(self.device) for k, v in self._inputs([image.convert("RGB") for image in images]).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            ids = self._generate(inputs)
        texts = self.processor.batch_decode(self._strip_prompt(ids, inputs), skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def fingerprint(self) -> dict:
        return dict(self._spec)

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@CAPTIONERS.register("image_to_text")
class ImageToTextCaptioner(TransformersCaptioner):
    """Encoder-decoder captioners; ``prompt`` is an optional text prefix (BLIP conditional captioning)."""

    kind = "image_to_text"

    def _inputs(self, images):
        text = [self.prompt] * len(images) if self.prompt else None
        return self.processor(images=images, text=text, return_tensors="pt")

    def generation_config(self):
        """The model's generation config with this captioner's length and beams, greedy."""
        generation = copy.deepcopy(self.model.generation_config)
        generation.update(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False)
        return generation

    def _generate(self, inputs):
        """A VisionEncoderDecoder model generates from its decoder, given the image states once.

        Its ``generate`` runs the whole model's forward at every step, which projects all the
        encoder's states to the decoder's width again each time (``enc_to_dec_proj``), though the
        cross-attention reads them only at the first step: builds with the embedded captioner run
        1.2-1.3x as fast without it (bench/build_benchmark.py).  Projecting once and letting the decoder
        generate (with plain greedy settings, the loop below that drops ended captions) gives the same
        tokens (test/test_embedded_models.py) under the same generation config."""
        from transformers import VisionEncoderDecoderModel

        generation = self.generation_config()
        # the first decoder token, as transformers picks it (its own generate raises where there is none)
        first = next((t for t in (generation.decoder_start_token_id, generation.bos_token_id) if t is not None), None)
        if not isinstance(self.model, VisionEncoderDecoderModel) or "input_ids" in inputs or not isinstance(first, int):
            return super()._generate(inputs)
        states = self.model.encoder(pixel_values=inputs["pixel_values"]).last_hidden_state
        projection = getattr(self.model, "enc_to_dec_proj", None)   # made only where the widths differ
        if projection is not None:
            states = projection(states)
        if _plain_greedy(generation):
            return _greedy_dropping_finished(self.model.decoder, states, first, generation)
        start = torch.full((len(states), 1), first, device=states.device)
        return self.model.decoder.generate(input_ids=start, attention_mask=torch.ones_like(start),
                                           encoder_hidden_states=states, generation_config=generation)


# generation settings that leave greedy decoding plain: the tokens and the length, any value; these
# at the value given (transformers >= 5 leaves unset settings None, earlier versions at these values)
_ANY_VALUE = {"transformers_version", "_from_model_config", "max_new_tokens", "max_length",
              "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"}
_GREEDY_VALUES = {"do_sample": False, "num_beams": 1, "num_return_sequences": 1, "use_cache": True,
                  "output_attentions": False, "output_hidden_states": False, "output_scores": False,
                  "output_logits": False, "return_dict_in_generate": False}


def _plain_greedy(generation) -> bool:
    """Whether ``generation`` asks for nothing but the most likely token at each step until an end
    token or ``max_new_tokens`` (a repetition penalty, beams, sampling, a minimum length, any other
    setting go through ``generate``)."""
    return generation.max_new_tokens is not None and all(
        key in _ANY_VALUE or value is None or (key in _GREEDY_VALUES and value == _GREEDY_VALUES[key])
        for key, value in generation.to_diff_dict().items())


# Ended captions ride along (as pads) until they are more than this share of the batch.  Dropping
# rows copies every cached key and value of the rows kept, and done at every step where a caption
# ended (most steps, as lengths spread) those copies cost more than decoding a few ended rows along:
# builds ran 1.01-1.03x as fast this way in four runs of bench/build_benchmark.py.
ENDED_SHARE_TO_DROP = 0.125


def _greedy_dropping_finished(decoder, states: torch.Tensor, first: int, generation) -> torch.Tensor:
    """Greedy decoding of a batch that stops computing captions once they have ended.

    ``generate`` decodes every row of a batch until the longest caption ends; the embedded
    captioner's captions differ in length by more than twofold, so a batch's short captions took
    many steps of pads (builds 1.13x as fast without them, bench/build_benchmark.py).  Here the rows
    that ended leave the batch, once they are more than ``ENDED_SHARE_TO_DROP`` of it, and with them
    their states and cached keys and values (``Cache.batch_select_indices``).  Each row's tokens are
    those of ``generate`` (test/test_embedded_models.py); the output is padded as it pads.
    """
    ends = torch.tensor(generation.eos_token_id if generation.eos_token_id is not None else [],
                        dtype=torch.long, device=states.device).reshape(-1)
    pad = generation.pad_token_id if generation.pad_token_id is not None else int(ends[0]) if len(ends) else 0
    out = torch.full((len(states), generation.max_new_tokens + 1), pad, dtype=torch.long, device=states.device)
    out[:, 0] = first
    rows = torch.arange(len(states), device=states.device)        # the output row of each batch row
    going = torch.ones(len(states), dtype=torch.bool, device=states.device)
    last, cache, steps = out[:, :1], None, 0
    while steps < generation.max_new_tokens:
        step = decoder(input_ids=last, encoder_hidden_states=states, past_key_values=cache, use_cache=True)
        cache, steps = step.past_key_values, steps + 1
        token = torch.where(going, step.logits[:, -1].argmax(-1), pad)    # pads after the end, as generate
        out[rows, steps] = token
        going &= ~torch.isin(token, ends)
        ended = len(going) - int(going.sum())
        if ended == len(going):
            break
        # a cache that cannot drop rows (older transformers' tuples) lets the ended rows pad along
        if ended > ENDED_SHARE_TO_DROP * len(going) and cache_drops_rows(cache):
            kept = going.nonzero().squeeze(1)
            cache.batch_select_indices(kept)
            states, rows, token, going = states[kept], rows[kept], token[kept], going[kept]
        last = token[:, None]
    return out[:, :steps + 1]


@CAPTIONERS.register("chat_vlm")
class ChatVLMCaptioner(TransformersCaptioner):
    """Chat VLMs: one user turn holding the image and the instruction, through the chat template."""

    kind = "chat_vlm"

    def __init__(self, model: str, prompt: str | None = None, **options):
        super().__init__(model, prompt=prompt or DEFAULT_CHAT_PROMPT, **options)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # decoder-only batches must be left-padded to generate

    def _inputs(self, images):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        chat = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        text_options = {}
        bos = getattr(getattr(self.processor, "tokenizer", None), "bos_token", None)
        if bos and chat.startswith(bos):
            # The template already wrote BOS (Llama-3/Idefics3 style); letting the tokenizer add another
            # would shift every prompt off what the model was trained on. transformers' own tokenizing
            # apply_chat_template applies the same rule.
            text_options["add_special_tokens"] = False
        return self.processor(images=[[image] for image in images], text=[chat] * len(images),
                              return_tensors="pt", padding=True, **text_options)

    def _strip_prompt(self, ids, inputs):
        return ids[:, inputs["input_ids"].shape[1]:]
