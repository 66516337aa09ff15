"""Checks shared by the tests of builds spread over workers (processes, Ray)."""
import numpy as np

from cgrs_ros.index import build_index, load_index


def assert_same_as_a_local_build(config, gallery, built, local):
    """The index at ``built`` has the rows a one-process build of ``gallery`` into ``local`` has, and
    is a normal finished index: no build work left, and a local build into it finds nothing to do."""
    assert not (built / ".build").exists()
    assert build_index(gallery, config, built, progress=False)["up_to_date"]
    build_index(gallery, config, local, progress=False)
    mine, theirs = load_index(built, config), load_index(local, config)
    assert [r.to_json() for r in mine.records] == [r.to_json() for r in theirs.records]
    assert list(mine.captions) == list(theirs.captions)
    np.testing.assert_allclose(mine.image_embeddings, theirs.image_embeddings, atol=2e-3)
    np.testing.assert_allclose(mine.caption_embeddings, theirs.caption_embeddings, atol=2e-3)
