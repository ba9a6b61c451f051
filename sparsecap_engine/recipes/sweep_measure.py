"""What a sweep measures of a finished cell, in one process (one torch import): test-split scores (greedy decoding,
pycocoevalcap BLEU/METEOR/ROUGE-L/CIDEr, SPICE off), the exported fp16 sparse checkpoint's size and the CPU latency of
greedily captioning one image (batch 1, 1 thread, median of ``repeat``). Run by ``sparsecap sweep-measure RUN``."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sparsecap_engine.atomic import atomic_write_text
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.recipes.sweep import METRICS
from sparsecap_engine.recipes.sweep_results import MEASURE_FILE

EXPORT_FILE = Path("export") / "model-fp16.safetensors"


def measure_run(run_path: Path, repeat: int = 20, device: str = "auto", metrics: list[str] | None = None,
                progress: Progress = no_progress) -> dict[str, Any]:
    """Evaluate, export and time the run's final checkpoint (pruned, else best, else last); writes
    ``<run>/export/measure.json`` and ``<run>/export/model-fp16.safetensors`` and returns the measurements."""
    from sparsecap_engine.checkpoint.inspect_report import bench_report
    from sparsecap_engine.checkpoint.model_io import load_model
    from sparsecap_engine.checkpoint.source import checkpoint_file
    from sparsecap_engine.checkpoint.sparse import export_sparse
    from sparsecap_engine.pruning.report import output_vocabulary, sparsity_report
    from sparsecap_engine.recipes.evaluate import evaluate_run

    run_path = Path(run_path)
    t0 = time.perf_counter()
    ckpt = checkpoint_file(run_path)
    report = evaluate_run(run_path, "test", None, ckpt.stem, list(metrics or METRICS), device=device, progress=progress)
    t_eval = time.perf_counter() - t0
    out = run_path / EXPORT_FILE
    export_sparse(ckpt, out, "fp16")
    bench = bench_report(ckpt, threads=1, repeat=repeat)
    model, _, _ = load_model(ckpt)
    tensors = sparsity_report(model, masks={})["tensors"]
    numel = sum(t["numel"] for t in tensors.values())
    nnz = sum(t["nnz"] for t in tensors.values())
    sparse = float(bench["sparse_ms"]) if bench.get("converted_layers") else float(bench["dense_ms"])
    result = {
        "checkpoint": str(ckpt),
        "split": "test",
        "images": report.n_images,
        "scores": report.scores,
        "unavailable": report.unavailable,
        "eval_dir": str(report.out_dir),
        "export": str(out),
        "size_bytes": out.stat().st_size,
        #: the deployed path: CSR kernels for the layers sparse enough, dense ones otherwise
        "latency_ms": sparse,
        "bench": bench,
        "prunable": {"numel": numel, "nnz": nnz},
        "diversity": caption_diversity(report.out_dir / "captions.json"),
        #: words whose output row kept a weight (a pruned output layer can lose words; SNIP at a large vocabulary does)
        "output_words": output_vocabulary(model, {}),
        "eval_s": round(t_eval, 2),
        "total_s": round(time.perf_counter() - t0, 2),
    }
    atomic_write_text(run_path / MEASURE_FILE, json.dumps(result, indent=1, default=float))
    return result


def caption_diversity(captions_json: Path) -> dict[str, float] | None:
    """How image-grounded a run's test captions are: ``distinct`` captions and the ``top_share`` of images given the
    most common one (a model that ignores its input writes one caption for everything, yet can score CIDEr 0.3–0.4
    on the embedded data)."""
    try:
        items = json.loads(Path(captions_json).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    caps = [str(i.get("caption", "")) for i in items if isinstance(i, dict)]
    if not caps:
        return None
    counts = Counter(caps)
    return {"distinct": len(counts), "top_share": round(counts.most_common(1)[0][1] / len(caps), 4)}
