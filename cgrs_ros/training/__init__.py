"""Training of the embedded default models (``cgrs-train``) on the procedural world.

- :mod:`.clip`: ``cgrs-tiny-clip``, a timm CNN image tower + frozen MiniLM text tower (trained projection)
- :mod:`.captioner`: a tiny VisionEncoderDecoder captioner (XCiT encoder, GPT-2 decoder, byte-level
  BPE built offline) trained on north-up views
- :mod:`.cli`: the ``cgrs-train`` command.  Rerank settings are chosen on the validation world by
  ``bench/recall_benchmark.py --split val --sweep``

Nothing here is imported by the runtime: the shipped files load through the ordinary model registries.
"""
