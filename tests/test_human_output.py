"""What people read (issue 15): ``eval --limit`` keeps its own folder, human output has no raw dicts or scientific
notation, sparsity is a percentage in every command's human output (fractions in ``--json``), and ``caption --json``
has one shape whatever ``--n-best``. Through the real ``sparsecap`` executable on runs made by the tiny training."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparsecap_engine.data.synthetic import generate_synthetic

EXE = str(Path(sys.executable).parent / "sparsecap")
#: a float in scientific notation as Python prints it (``1.2e-05``, ``1e+20``)
SCIENTIFIC = re.compile(r"\d[eE][-+]\d")
#: a sparsity as the CLI shows it to people
PERCENT = r"\d{1,3}\.\d{2,6}%"


def sparsecap(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **(env or {})}  # wide: one table row per line
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def make_tiny_runs(root: Path) -> dict:
    """Under ``root``: a dense run trained 4 steps and a magnitude run pruned from it to 90 % in 2 more (its
    ``prune`` output kept), both by the real executable."""
    dataset = generate_synthetic(root / "data", images=40, size=32, seed=5)
    tiny = ["--set", "data.image_size=32", "--set", "model.rnn_size=32", "--set", "model.input_encoding_size=16",
            "--set", "model.att_hid_size=16", "--set", "train.val_images=4",
            "--set", 'model.encoder_args={"channels": [8, 16]}']
    res = sparsecap("train", "--dataset", str(dataset), "--runs-root", str(root / "runs"), "--name", "dense",
                    "--steps", "4", "--batch-size", "4", "--val-every", "4", "--device", "cpu", "--quiet", *tiny)
    assert res.returncode == 0, res.stderr
    pruned = sparsecap("prune", "--from", str(root / "runs" / "dense"), "--method", "magnitude", "--sparsity", "0.9",
                       "--runs-root", str(root / "runs"), "--name", "mag", "--steps", "2", "--val-every", "2",
                       "--device", "cpu", "--quiet")
    assert pruned.returncode == 0, pruned.stderr
    return {"root": root, "dense": root / "runs" / "dense", "mag": root / "runs" / "mag", "prune": pruned}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_tiny_runs(tmp_path_factory.mktemp("human"))


def _no_raw_dicts_or_scientific(text: str) -> None:
    assert "{'" not in text and '{"' not in text, text
    assert not SCIENTIFIC.search(text), SCIENTIFIC.search(text).group(0) + "\n" + text  # type: ignore[union-attr]


# --- A: eval --limit --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_limit_gets_its_own_folder_and_never_replaces_the_full_one(runs: dict):
    run = runs["mag"]
    full = sparsecap("eval", str(run), "--metrics", "bleu", "--quiet", "--json")
    assert full.returncode == 0, full.stderr
    full_out = json.loads(full.stdout)
    full_dir = run / "eval" / "test-beam1"
    assert Path(full_out["out_dir"]) == full_dir and full_out["limit"] is None
    n_test = full_out["images"]
    assert n_test > 2
    before = (full_dir / "scores.json").read_text()

    limited = sparsecap("eval", str(run), "--metrics", "bleu", "--quiet", "--limit", "2")
    assert limited.returncode == 0, limited.stderr
    limited_dir = run / "eval" / "test-beam1-limit2"
    scores = json.loads((limited_dir / "scores.json").read_text())
    assert scores["images"] == 2 and scores["limit"] == 2 and scores["split_images"] == n_test
    assert len(json.loads((limited_dir / "captions.json").read_text())) == 2
    assert (full_dir / "scores.json").read_text() == before  # the full evaluation is untouched
    # the final lines say what the outputs are, where they went, and the likely next commands
    last = limited.stdout.strip().split("\ncaptions and scores in ")
    assert f"first 2 of {n_test} test images only (--limit 2)" in last[0].splitlines()[-1]
    assert str(full_dir) in last[0].splitlines()[-1]
    assert last[1].splitlines()[0] == str(limited_dir) and last[1].splitlines()[1].startswith("next: ")

    beam = sparsecap("eval", str(run), "--metrics", "bleu", "--quiet", "--limit", "2", "--beam", "2", "--json")
    assert beam.returncode == 0, beam.stderr
    out = json.loads(beam.stdout)
    assert Path(out["out_dir"]).name == "test-beam2-limit2" and out["limit"] == 2 and out["images"] == 2

    # a limit that keeps every image of the split is the full evaluation: its folder, no "limit" in the name
    whole = sparsecap("eval", str(run), "--metrics", "bleu", "--quiet", "--limit", str(n_test + 5), "--json")
    assert whole.returncode == 0, whole.stderr
    out = json.loads(whole.stdout)
    assert Path(out["out_dir"]) == full_dir and out["limit"] is None and out["images"] == n_test
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["test-beam1", "test-beam1-limit2",
                                                                "test-beam2-limit2"]


# --- B: no raw dicts, no scientific notation ---------------------------------------------------------------------


@pytest.mark.slow
def test_inspect_export_eval_print_no_raw_dicts_or_scientific_notation(runs: dict, tmp_path: Path):
    run = runs["mag"]
    ckpt = run / "checkpoints" / "pruned.safetensors"
    meta = json.loads(sparsecap("inspect", str(ckpt), "--json").stdout)
    # the tiny run's checkpoint does carry what used to print badly: a metrics dict with a BLEU-4 near 1e-13
    assert isinstance(meta["metrics"], dict) and min(meta["metrics"].values()) < 1e-4
    assert isinstance(meta["model"], dict)

    res = sparsecap("inspect", str(run), "--params")
    assert res.returncode == 0, res.stderr
    _no_raw_dicts_or_scientific(res.stdout)
    for key in meta["metrics"]:
        assert re.search(rf"│ +{re.escape(key)}: \d+\.\d{{4}} +│", res.stdout), key  # one "key: value" line each
    assert re.search(r"│ name: updown +│", res.stdout) and re.search(r"encoder_args: \(channels: \[8, 16\]\)",
                                                                       res.stdout)
    assert re.search(r"file size +│ \d+\.\d\d KB \([\d,]+ bytes\)", res.stdout)

    out = tmp_path / "sparse.safetensors"
    res = sparsecap("export", str(run), "--out", str(out), "--values", "fp16")
    assert res.returncode == 0, res.stderr
    _no_raw_dicts_or_scientific(res.stdout)
    assert re.search(r"\(\d+\.\d\d KB, from \d+\.\d\d KB; pruned sparsity 90\.00%; storage [a-z]+: \d+ tensors",
                     res.stdout), res.stdout
    res = sparsecap("inspect", str(out))
    assert res.returncode == 0, res.stderr
    _no_raw_dicts_or_scientific(res.stdout)

    res = sparsecap("eval", str(run), "--metrics", "bleu,cider", "--baseline", "--quiet", "--limit", "3")
    assert res.returncode == 0, res.stderr
    _no_raw_dicts_or_scientific(res.stdout)
    scores = json.loads((run / "eval" / "test-beam1-limit3" / "scores.json").read_text())["scores"]
    assert min(scores.values()) < 1e-4  # Bleu_4 of a 6-step model: what used to print as 1.207e-13
    from sparsecap_engine.humanize import metric_label

    for metric in scores:  # shown by the names training uses (Bleu_4 → BLEU-4, CIDEr → CIDEr-D)
        assert re.search(rf"│ {metric_label(metric)} +│ +\d+\.\d{{4}} │", res.stdout), metric


# --- C: sparsity as a percentage in human output, a fraction in --json -----------------------------------------


def _row_sparsity(text: str, name: str) -> str:
    row = next(line for line in text.splitlines() if f" {name} " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    return next(c for c in cells if c.endswith("%"))


@pytest.mark.slow
def test_sparsity_is_one_percentage_format_across_commands(runs: dict, tmp_path: Path):
    text = runs["prune"].stdout
    assert "target sparsity: 90.00%" in text and "per-layer sparsity (target 90.00%)" in text
    table = [line for line in text.splitlines() if line.startswith("│ ")]
    layer_rows = [line for line in table if "decoder." in line or "pruned tensors" in line or "all parameters" in line]
    assert len(layer_rows) >= 5
    for line in layer_rows:  # the sparsity column: a percentage, never the fraction 0.9000
        assert re.search(rf"│ +{PERCENT} │$", line), line
    assert re.search(r"pruned tensors .*│ +90\.00% │$", text, re.M)

    inspect = sparsecap("inspect", str(runs["mag"]))
    assert inspect.returncode == 0, inspect.stderr
    assert _row_sparsity(inspect.stdout, "pruned total") == "90.00%"
    assert re.fullmatch(PERCENT, _row_sparsity(inspect.stdout, "decoder.logit.weight"))
    as_json = json.loads(sparsecap("inspect", str(runs["mag"]), "--json").stdout)
    assert as_json["totals"]["pruned"]["sparsity"] == pytest.approx(0.9)  # --json: the fraction

    export = sparsecap("export", str(runs["mag"]), "--out", str(tmp_path / "s.safetensors"), "--json")
    assert json.loads(export.stdout)["sparsity"] == pytest.approx(0.9)


def test_sweep_results_table_shows_sparsity_as_percentages():
    from rich.console import Console

    from sparsecap_cli.commands.sweep import results_table

    row = {"cell": "gradual-0.99", "status": "completed", "sparsity": 0.99999, "nnz": 3, "CIDEr": 0.5,
           "Bleu_4": 0.1, "size_bytes": 12_345, "latency_ms": 1.0, "latency_vs_dense": 0.5, "wall_s": 10.0}
    dense = {**row, "cell": "dense", "sparsity": 0.0}
    console = Console(record=True, width=200)
    console.print(results_table([dense, row, {**row, "cell": "gradual-0.95", "sparsity": 0.95}], "x"))
    text = console.export_text()
    assert _row_sparsity(text, "gradual-0.95") == "95.00%"
    assert _row_sparsity(text, "gradual-0.99") == "99.999%"  # not a false 100.00%: the precision needed
    assert _row_sparsity(text, "dense") == "0.00%"


# --- D: caption --json has one shape -----------------------------------------------------------------------------


@pytest.mark.slow
def test_caption_json_has_one_shape_whatever_n_best(runs: dict):
    image = next((runs["root"] / "data" / "images").glob("*.png"))
    shapes = []
    for extra in ([], ["--beam", "3"], ["--beam", "3", "--n-best", "3"], ["--sample", "--n-best", "2"]):
        res = sparsecap("caption", str(image), str(image), "--run", str(runs["mag"]), "--json", *extra)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert [o["image"] for o in out] == [str(image)] * 2
        n = int(extra[extra.index("--n-best") + 1]) if "--n-best" in extra else 1
        for o in out:
            shapes.append(set(o))
            assert len(o["captions"]) == n and all(set(c) == {"caption", "score"} for c in o["captions"])
            assert o["caption"] == o["captions"][0]["caption"]  # the best first
            assert all(isinstance(c["score"], float) for c in o["captions"])
        plain = sparsecap("caption", str(image), "--run", str(runs["mag"]), *extra)
        if n == 1:  # the JSON's caption is the one the plain command prints
            assert plain.stdout.strip() == out[0]["caption"]
    assert all(s == {"image", "caption", "captions"} for s in shapes)


# --- E: one name for one thing ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_from_and_checkpoint_mean_the_same_in_every_command_and_old_spellings_still_work(runs: dict):
    """``--from RUN|FILE`` is where a model comes from, ``--checkpoint best|last`` which of a run's checkpoints;
    caption's old ``--run RUN`` and ``--checkpoint FILE`` and train/prune's ``--from-checkpoint`` keep working."""
    image = next((runs["root"] / "data" / "images").glob("*.png"))
    run = runs["mag"]
    last = run / "checkpoints" / "last.safetensors"

    def caption(*args: str) -> str:
        res = sparsecap("caption", str(image), *args)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    best = caption("--from", str(run))
    assert caption("--run", str(run)) == best  # the hidden old name
    assert caption("--from", str(run), "--checkpoint", "best") == best
    from_last = caption("--from", str(run), "--checkpoint", "last")
    assert caption("--from", str(last)) == from_last == caption("--checkpoint", str(last))  # file, old spelling
    for bad, why in ((["--from", str(run), "--run", str(runs["dense"])], "--run is the old name of --from"),
                     (["--from", str(last), "--checkpoint", "last"], "is a file"),
                     (["--checkpoint", "last"], "give --from RUN")):
        res = sparsecap("caption", str(image), *bad)
        assert res.returncode != 0 and why in res.stderr and "Traceback" not in res.stderr, res.stderr
    help_text = sparsecap("caption", "--help").stdout
    assert "--from" in help_text and "--run " not in help_text  # the old name is hidden
    prune_help = sparsecap("prune", "--help").stdout
    assert "--checkpoint" in prune_help and "--from-checkpoint" not in prune_help
    for old in ("--from-checkpoint", "--checkpoint"):  # both spellings reach the option: a bad value is refused
        res = sparsecap("prune", "--from", str(runs["dense"]), old, "worst", "--method", "magnitude",
                        "--runs-root", str(runs["root"] / "runs"), "--name", "x", "--steps", "1", "--device", "cpu")
        assert res.returncode != 0 and "worst" in res.stderr, res.stderr
    res = sparsecap("prune", "--from", str(runs["dense"]), "--checkpoint", "last", "--from-checkpoint", "best")
    assert res.returncode == 2 and "--from-checkpoint is the old name of --checkpoint" in res.stderr, res.stderr


@pytest.mark.slow
def test_eval_prints_the_metric_names_training_uses(runs: dict):
    res = sparsecap("eval", str(runs["mag"]), "--limit", "4", "--metrics", "bleu,meteor,rouge,cider",
                    env={"SPARSECAP_PROGRESS_EVERY": "0"})
    assert res.returncode == 0, res.stderr
    # scoring shows progress too, naming the metric while it runs (METEOR's Java takes seconds)
    assert "score 2/5 (40%)" in res.stderr and "metric=METEOR" in res.stderr, res.stderr
    assert f"next: sparsecap caption IMAGE --from {runs['mag']}" in res.stdout.replace("\n", " ")
    names = re.findall(r"│ (\S+)\s+│", res.stdout)
    assert {"BLEU-4", "ROUGE-L", "CIDEr-D"} <= set(names) and not {"Bleu_4", "ROUGE_L", "CIDEr"} & set(names), names


def test_out_has_its_short_form_wherever_a_command_writes_a_path(tmp_path: Path):
    res = sparsecap("data", "scene", "-o", str(tmp_path / "s.png"), "--size", "64")
    assert res.returncode == 0 and (tmp_path / "s.png").is_file(), res.stderr
    assert res.stdout.splitlines()[-1] == f"next: sparsecap caption {tmp_path / 's.png'}"  # the likely next command
    for cmd in (["export"], ["data", "synth"], ["data", "pack-features"], ["data", "scene"]):
        assert re.search(r"--out\s+-o", sparsecap(*cmd, "--help").stdout), cmd


@pytest.mark.slow
def test_train_and_prune_end_by_naming_the_next_commands(runs: dict):
    out = " ".join(runs["prune"].stdout.split())  # un-wrapped
    mag = runs["mag"]
    want = f"next: sparsecap eval {mag} · sparsecap export {mag} -o mag.safetensors · sparsecap caption IMAGE --from"
    assert want in out, out
    res = sparsecap("export", str(mag), "-o", str(runs["root"] / "m.safetensors"))
    assert res.returncode == 0 and "next: sparsecap caption IMAGE --from" in res.stdout, res.stderr
