"""Text encoders on ONNX Runtime: the same fp32 weights, exported once, for a faster query on a CPU.

Why: a cached query is two small text-encoder forwards (the CLIP text tower for the coarse search,
the similarity model for the query's clauses).  At batch 1 on a CPU, torch's eager forward spends
about as long around the matrix products (dispatch, unfused attention, layer norms and GELUs) as in
them; ONNX Runtime runs the fused graph of the same weights, and its vectors equal torch's to ~1e-6,
so rankings do not change (cached query p50 32.9 ms against 52.0 ms with both encoders on torch, one
run of ``bench/recall_benchmark.py --latency-only``).

At batch 1 a forward of a small encoder reads all its weights for a few tokens (the embedded
MiniLM's matrices are 42 MB in fp32, more than a CPU's cache holds).  Int8 weights are a quarter of
that read, so ``onnx_int8`` encodes faster (the goal's CLIP encoding 14.2 -> 8.9 ms p50, one run of
``bench/text_runtime_benchmark.py``); but the vectors move (cosine ~0.99 with fp32), so rankings are
not identical: it is an option, its recall cost measured by that benchmark on the validation world,
not the default.

ONNX Runtime's dynamic quantisation scales a MatMul's activations by the range of the whole input
tensor: with several texts in one call, a text's int8 vector depended on its batch-mates and on the
padding the longest of them gave it (cosine 0.991 mean, 0.971 worst, a goal alone against in a batch
of 400).  So an int8 encoder is run one text per call (``texts_per_call``): a goal's vector is the
one the node computes for it alone, whatever else is encoded with it.

``text_runtime`` of a retriever or text-similarity spec says where its text encoder runs:

- ``torch``: the model's own forward.
- ``onnx``: exported to ONNX (torch's TorchScript exporter) on first use and kept in
  ``$CGRS_HOME/onnx/<key>.onnx`` (key: the module's class, its weights' shapes and a sample of their
  values, the input names and the torch version), so later starts only load it; it is checked
  against torch on probe inputs of two shapes each time it is opened.  The folder keeps the
  ``KEEP_EXPORTS`` most recently used exports.
- ``onnx_int8``: the same export with its matrix products' weights quantised to int8 (per output
  channel; activations quantised per call: ONNX Runtime's dynamic quantisation, so one text per
  call), cached beside it and checked against torch by cosine (at least ``INT8_MIN_COSINE`` per probe
  text) instead of by value.
- ``auto`` (the default): ``onnx`` on a CPU when onnxruntime is installed, else ``torch`` (on CUDA
  the model's GPU kernels win, and ONNX Runtime's CPU build would move the work off the GPU).

Once a session has passed its check, torch's copy of that text encoder is freed where it is a module
of its own (a sentence-transformers model, open_clip's separate HF text tower): the session holds the
weights.  An export or check that fails (an architecture the exporter cannot trace, a stale or corrupt cached
file that a fresh export does not mend) warns once and leaves the encoder on torch: a query must not
fail for want of a speed-up.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..compat import onnx_export_options
from ..errors import CGRSInputError

_log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx", "onnx_int8")
OPSET = 17
# largest |ONNX Runtime - torch| accepted on the probe outputs (fp32 reassociation gives ~1e-6)
TOLERANCE = 1e-4
# smallest cosine of an int8 encoder's output with torch's accepted on a probe text (the embedded
# MiniLM and CLIP text tower give 0.99-0.999; a broken quantisation, e.g. saturated products, far less)
INT8_MIN_COSINE = 0.97


def onnxruntime_or_none():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def choose_runtime(runtime: str, device: torch.device) -> str:
    """``torch``, ``onnx`` or ``onnx_int8`` for a ``text_runtime`` setting on ``device``."""
    if runtime not in RUNTIMES:
        raise CGRSInputError(f"text_runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "torch" or (runtime == "auto" and device.type != "cpu"):
        return "torch"
    if onnxruntime_or_none() is None:
        if runtime != "auto":
            raise CGRSInputError(f"text_runtime {runtime} needs onnxruntime: pip install onnxruntime")
        return "torch"
    return "onnx" if runtime == "auto" else runtime


class OnnxTextEncoder:
    """``module(*tensors)`` -> one float tensor, run by ONNX Runtime with inputs named as in ``probes``.

    ``probes``: two or more input sets (name -> int64 tensor, batch first, tokens second) of
    different shapes; the first is traced, all are checked against the torch module.  ``int8``:
    quantise the matrix products' weights (``onnx_int8``).
    """

    def __init__(self, module: torch.nn.Module, probes: Sequence[Mapping[str, torch.Tensor]], int8: bool = False):
        suffix = ".int8.onnx" if int8 else ".onnx"
        self.path = path = cache_folder() / f"{_cache_key(module, list(probes[0]))}{suffix}"
        self.int8 = int8
        # how many texts a caller may put in one call (None: any): int8 activations are scaled by
        # the range of the whole call's input, so one text each keeps a vector its own
        self.texts_per_call = 1 if int8 else None
        exported = False
        if path.is_file():
            _touch(path)
        else:
            _store(path, self._exported(module, probes[0]))
            exported = True
        try:
            self.session = _checked_session(path, module, probes, int8)
        except Exception as problem:      # onnxruntime's own errors (InvalidProtobuf, Fail) or our check
            if exported:
                raise
            _log.info("cached ONNX file %s failed its check (%s); exporting again", path, problem)
            _store(path, self._exported(module, probes[0]))
            self.session = _checked_session(path, module, probes, int8)
        self.threads = torch.get_num_threads()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.threads != torch.get_num_threads():      # ``threads`` changed (apply_threads): follow it
            self.threads = torch.get_num_threads()
            try:
                self.session = _session(self.path)
            except Exception as exc:      # the cached file went away meanwhile: keep the open session
                _log.info("ONNX session kept at its thread count (%s)", exc)
        return _run(self.session, inputs)

    def _exported(self, module: torch.nn.Module, probe: Mapping[str, torch.Tensor]) -> bytes:
        model = _export(module, probe)
        return _quantised(model) if self.int8 else model


def _run(session, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    # only the session's own inputs: the exporter drops those the graph never reads (token_type_ids
    # of a model that ignores them)
    feed = {node.name: np.ascontiguousarray(inputs[node.name], dtype=np.int64) for node in session.get_inputs()}
    return session.run(None, feed)[0]


def onnx_or_none(module: torch.nn.Module, probes: Sequence[Mapping[str, torch.Tensor]],
                 what: str, runtime: str = "onnx") -> OnnxTextEncoder | None:
    """The encoder on ONNX Runtime (``runtime`` onnx or onnx_int8), or None (with a warning naming
    ``what`` and why) to keep torch."""
    try:
        return OnnxTextEncoder(module, probes, int8=runtime == "onnx_int8")
    except Exception as exc:       # any exporter or runtime failure: torch still answers, only slower
        _log.warning("%s: text encoder stays on torch, ONNX Runtime not used (%s: %s)",
                     what, type(exc).__name__, " ".join(str(exc).split())[:300])
        return None


def release_weights(module: torch.nn.Module) -> None:
    """Free torch's copy of an encoder that now runs on ONNX Runtime (the session holds the
    weights): without this, each text encoder sits in memory twice (the embedded node, configured:
    1,361 MiB resident without it, 1,162 MiB with it; bench/companion_benchmark.py)."""
    module.to("meta")


class PositionalInputs(torch.nn.Module):
    """A module called as ``call(module, {name: tensor})`` made positional for the exporter."""

    def __init__(self, module: torch.nn.Module, names: Sequence[str],
                 call: Callable[[torch.nn.Module, dict], torch.Tensor]):
        super().__init__()
        self.module, self.names, self.call = module, list(names), call

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.call(self.module, dict(zip(self.names, tensors)))


def cache_folder() -> Path:
    from ..paths import cache_home

    return cache_home() / "onnx"


def _cache_key(module: torch.nn.Module, names: Sequence[str]) -> str:
    """Shapes and a strided sample of every weight: enough to tell models apart for a cache whose
    files are checked against torch when opened (a collision costs a re-export, never a wrong vector)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(repr((type(module).__qualname__, list(names), torch.__version__, OPSET)).encode())
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().reshape(-1)
        sample = flat[::max(1, flat.numel() // 4096)].float().cpu().numpy()
        digest.update(repr((name, tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()


def _export(module: torch.nn.Module, probe: Mapping[str, torch.Tensor]) -> bytes:
    names = list(probe)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in names}
    dynamic["output"] = {0: "batch"}
    options = onnx_export_options(torch.onnx.export)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")      # tracer notes on shape-dependent Python values
        torch.onnx.export(module.eval(), tuple(probe.values()), buffer, input_names=names,
                          output_names=["output"], dynamic_axes=dynamic, opset_version=OPSET, **options)
    return buffer.getvalue()


def _quantised(model: bytes) -> bytes:
    """``model`` with int8 weights in its MatMuls (per output channel, signed: ONNX Runtime's
    dynamic quantisation; the embeddings, layer norms and everything else stay fp32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "int8.onnx"
        quantize_dynamic(onnx.load_from_string(model), target, op_types_to_quantize=["MatMul"],
                         per_channel=True, weight_type=QuantType.QInt8)
        return target.read_bytes()


def _store(path: Path, model: bytes) -> None:
    """Write atomically; an unwritable cache folder only costs the next start an export."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(handle, "wb") as out:
            out.write(model)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
        _prune(path.parent)
    except OSError as exc:
        _log.info("ONNX cache %s not writable (%s); the exported model is kept in memory", path.parent, exc)
        _UNWRITABLE[path] = model


_UNWRITABLE: dict[Path, bytes] = {}      # exported models whose cache folder could not be written
KEEP_EXPORTS = 8    # the cache keeps the most recently used exports (a hub text tower is ~250 MB)


def _touch(path: Path) -> None:
    try:
        os.utime(path)          # the modification time says when an export was last used
    except OSError:
        pass


def _prune(folder: Path) -> None:
    exports = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in exports[KEEP_EXPORTS:]:
        stale.unlink(missing_ok=True)


def _session(path: Path):
    onnxruntime = onnxruntime_or_none()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()      # the engine's ``threads`` setting
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # no busy-wait beside a flight stack
    options.log_severity_level = 3
    source = _UNWRITABLE.get(path) or str(path)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _checked_session(path: Path, module: torch.nn.Module, probes: Sequence[Mapping[str, torch.Tensor]],
                     int8: bool = False):
    """The session, once its outputs on ``probes`` match torch's: to ``TOLERANCE`` in value, or for
    ``int8`` weights (which move every number a little) to ``INT8_MIN_COSINE`` in direction."""
    session = _session(path)
    for probe in probes:
        with torch.inference_mode():
            expected = module(*probe.values()).float().cpu().numpy()
        got = _run(session, {name: value.cpu().numpy() for name, value in probe.items()})
        shape = tuple(next(iter(probe.values())).shape)
        if got.shape != expected.shape:
            raise ValueError(f"ONNX Runtime output has shape {got.shape}, torch's {expected.shape} "
                             f"on a {shape} probe")
        if int8:
            cosine = float(_row_cosines(got, expected).min())
            if not cosine >= INT8_MIN_COSINE:
                raise ValueError(f"int8 ONNX Runtime output points away from torch's on a {shape} probe "
                                 f"(cosine {cosine:.4f} < {INT8_MIN_COSINE})")
            continue
        difference = np.abs(got - expected).max()
        if not difference <= TOLERANCE:
            raise ValueError(f"ONNX Runtime output differs from torch on a {shape} probe "
                             f"(max |difference| {difference:.3g})")
    return session


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
