"""Model registries, one per kind; importing this module registers every built-in backend."""
from __future__ import annotations

from dataclasses import dataclass

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
    models = ModelSet()
    try:
        for kind in kinds:
            setattr(models, kind, REGISTRIES[kind].build(config.model_spec(kind)))
    except BaseException:
        models.close()
        raise
    return models


__all__ = ["CAPTIONERS", "RETRIEVERS", "TEXT_SIMILARITIES", "REGISTRIES", "Captioner", "Retriever",
           "TextSimilarity", "ModelSet", "load_models"]
