"""Model registries, one per kind; importing this module registers every built-in backend."""
from __future__ import annotations

from dataclasses import dataclass

from ..compat import check_library_versions
from ..errors import CGRSInputError
from .captioners import CAPTIONERS, Captioner
from .retrievers import RETRIEVERS, Retriever
from .text_similarity import TEXT_SIMILARITIES, TextSimilarity

REGISTRIES = {"retriever": RETRIEVERS, "captioner": CAPTIONERS, "text_similarity": TEXT_SIMILARITIES}


@dataclass
class ModelSet:
    """The models one engine uses; any may be None when the job does not need it."""

    retriever: Retriever | None = None
    captioner: Captioner | None = None
    text_similarity: TextSimilarity | None = None

    def close(self) -> None:
        for kind in REGISTRIES:
            model = getattr(self, kind)
            if model is not None:
                model.close()
                setattr(self, kind, None)


def load_models(config, kinds=tuple(REGISTRIES)) -> ModelSet:
    """Build the requested kinds from an :class:`~cgrs_ros.config.EngineConfig`."""
    check_library_versions()
    models = ModelSet()
    try:
        for kind in kinds:
            spec = config.model_spec(kind)
            try:
                setattr(models, kind, REGISTRIES[kind].build(spec))
            except OSError as exc:  # a missing folder or hub file: the library's message does not say which model
                raise CGRSInputError(f"engine config {config.source}: cannot load {kind} {spec.get('model')!r}: "
                                     + " ".join(str(exc).split())) from exc
    except BaseException:
        models.close()
        raise
    return models


__all__ = ["CAPTIONERS", "RETRIEVERS", "TEXT_SIMILARITIES", "REGISTRIES", "Captioner", "Retriever",
           "TextSimilarity", "ModelSet", "load_models"]
