"""Training of the embedded default models (``cgrs-train``) on the procedural world.

- :mod:`.clip`: ``cgrs-tiny-clip``, a timm CNN image tower + frozen MiniLM text tower (trained projection)
- :mod:`.captioner`: a tiny VisionEncoderDecoder captioner with a BPE tokenizer built offline
- :mod:`.cli`: the ``cgrs-train`` command; :mod:`.tune`: rerank settings chosen on the validation world

Nothing here is imported by the runtime: the shipped files load through the ordinary model registries.
"""
