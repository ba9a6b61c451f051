"""Mutation testing of the core modules (issue 12): do the fast tests fail when the behaviour breaks?

Runs `mutmut <https://mutmut.readthedocs.io>`_ 3 (``pip install mutmut``) per *area* (a few engine modules and the
fast tests that cover them) in a throw-away copy of the working tree, so the checkout itself is never mutated and
no ``mutants/`` folder or mutmut config lands in it. Each area's copy gets its own ``setup.cfg`` ``[mutmut]``
section (``only_mutate`` = the area's modules, ``pytest_add_cli_args_test_selection`` = its tests); mutmut then
generates the mutants (operator, comparison, constant, string, argument and return-value changes), runs the tests
that reach each mutated function, and records an exit code per mutant, which this script tallies per module.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/mutation.py              # all areas
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/mutation.py --area scst --show
    ... benchmarks/mutation.py --area decoding --only greedy --max-children 1   # one module, one test process
    ... benchmarks/mutation.py --baseline      # without tests/test_mutants_*.py: the suite before issue 12

Only the functions listed for a module in ``AREAS`` count when a module has such a list (``gradients.py``: the
gradient clipping; the training loop is covered by the slow end-to-end tests, not this fast subset). Surviving
mutants listed in ``EQUIVALENT`` are reported as equivalent (the program's behaviour does not change), with why;
any other survivor is a gap in the tests. Exit status 1 when a non-equivalent mutant survives.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: area → engine modules to mutate (optionally only some functions of them) and the fast tests that cover them
AREAS: dict[str, dict] = {
    "training": {
        "modules": {
            "sparsecap_engine/training/losses.py": None,
            "sparsecap_engine/training/schedules.py": None,
            "sparsecap_engine/training/gradients.py": ["clip_gradients"],
        },
        "tests": ["tests/test_training_core.py", "tests/test_mutants_training.py"],
    },
    "scst": {
        "modules": {
            "sparsecap_engine/training/scst.py": [
                "check", "CaptionReward", "leave_one_out", "reward_loss", "scst_objective", "_greedy_reward",
            ],
        },
        "tests": ["tests/test_scst.py", "tests/test_mutants_scst.py"],
    },
    "pruning": {
        "modules": {
            "sparsecap_engine/pruning/scope.py": None,
            "sparsecap_engine/pruning/ste.py": None,
            "sparsecap_engine/pruning/masks.py": None,
            "sparsecap_engine/pruning/smp_control.py": None,
            "sparsecap_engine/pruning/criteria.py": None,
        },
        "tests": ["tests/test_pruning_masks.py", "tests/test_pruning_methods.py", "tests/test_smp_recipe.py",
                  "tests/test_mutants_pruning.py", "tests/test_mutants_masks.py"],
    },
    "decoding": {
        "modules": {
            "sparsecap_engine/decoding/greedy.py": None,
            "sparsecap_engine/decoding/beam.py": None,
            "sparsecap_engine/decoding/constraints.py": None,
            "sparsecap_engine/decoding/api.py": None,
        },
        "tests": ["tests/test_decoding_beam.py", "tests/test_decoding_sampling.py", "tests/test_mutants_decoding.py"],
    },
}

#: surviving mutants that do not change behaviour (mutmut's names are stable while the module is unchanged)
EQUIVALENT: dict[str, str] = {
    "sparsecap_engine.training.losses.x_caption_xe__mutmut_3":
        "mask.to(None) keeps a bool mask: nll·mask and Σmask (int) give the same value and dtype",
    "sparsecap_engine.training.schedules.x_cosine__mutmut_1":
        "default warm-up 1 instead of 0: step 0 gets lr0·1/1 = lr0, which the cosine gives at step 0 anyway",
    "sparsecap_engine.training.scst.x_reward_loss__mutmut_2":
        "mask.to(None) keeps a bool mask: logp·mask and Σmask (int) give the same value and dtype",
    "sparsecap_engine.training.scst.x_scst_objective__mutmut_142":
        "numpy's reshape(-2) is reshape(-1) (any negative size is the unknown one)",
    "sparsecap_engine.training.scst.xǁCaptionRewardǁ__call____mutmut_15": "count_ngrams' default n is 4",
    "sparsecap_engine.training.scst.xǁCaptionRewardǁ__call____mutmut_30": "batch_bleu's default n is 4",
    "sparsecap_engine.training.scst.xǁCaptionRewardǁ__call____mutmut_21":
        "reward = w·CIDEr instead of reward += w·CIDEr on a reward that is still all zeros",
    "sparsecap_engine.training.scst.xǁCaptionRewardǁ__init____mutmut_12":
        "np.asarray(weights) without dtype: the values are stored into a float64 array anyway",
    "sparsecap_engine.training.scst.xǁCaptionRewardǁ__init____mutmut_14":
        "np.asarray(weights) without dtype: the values are stored into a float64 array anyway",
}

_C = "sparsecap_engine.pruning.criteria."
EQUIVALENT.update({
    _C + "x_dist_scores__mutmut_15": "w[None] when there is no mask: the same values with a leading 1-dim, same μ, σ",
    _C + "x_dist_scores__mutmut_30": "the population σ of one value is 0, the value the else branch gives",
    _C + "x_dist_scores__mutmut_33": "the population σ of one value is 0, the value the else branch gives",
    _C + "x_dist_scores__mutmut_36": "σ := 1 instead of 0 for one survivor: (w − μ)/1 either way (σ = 0 divides by 1)",
    _C + "x_dist_scores__mutmut_44": "σ = 0: every survivor equals μ, so (w − μ)/2 = (w − μ)/1 = 0; pruned get −1",
    _C + "x__top_k_flat__mutmut_9": "k = 0 then takes the partial-sort branch: topk of 0 entries, the same empty mask",
    _C + "x__top_k_flat__mutmut_17": "which exact-top-k branch runs (partial sort vs kth value) at k = n//8: same mask",
    _C + "x__top_k_flat__mutmut_18": "which exact-top-k branch runs (partial sort vs kth value): same mask",
    _C + "x__top_k_flat__mutmut_19": "which exact-top-k branch runs (partial sort vs kth value): same mask",
    _C + "x__top_k_flat__mutmut_33": "topk's sorted flag: the same index set",
    _C + "x__top_k_flat__mutmut_34": "topk's sorted flag: the same index set",
    _C + "x__top_k_flat__mutmut_47": "short = 0 adds the first 0 ties: no change",
    _C + "x_select_global__mutmut_11": "floors of min_density 0 are all 0, which never force a layer",
    _C + "x_select_global__mutmut_34": "the no-free-layer branch is unreachable with layers (a last free layer always "
                                       "gets ≥ its floor); with none, top-k of zeros(1) split over {} is {}",
    _C + "x_select_global__mutmut_37": "_split over no free layers is {} anyway",
    _C + "x_select_global__mutmut_50": "floors.get's default only matters when floors is {} (both defaults falsy)",
    _C + "x_select_global__mutmut_52": "floors.get's default only matters when floors is {} (both defaults falsy)",
    _C + "x_select_global__mutmut_58": "forced's values are never read (floors[n] is)",
})
for _f, _ns in (("magnitude_scores", (12, 14)), ("dist_scores", (6, 8)), ("snip_scores", (13, 15)),
                ("_top_k_flat", (5, 8, 13, 16, 23, 26))):
    for _n in _ns:
        EQUIVALENT[f"{_C}x_{_f}__mutmut_{_n}"] = "device placement: equivalent on CPU, only a CUDA run can tell"

for _n in (27, 30, 31, 63, 66, 67):  # keep_thresholds zips floors with the tensors twice, each strict
    EQUIVALENT[f"sparsecap_engine.pruning.smp_control.x_keep_thresholds__mutmut_{_n}"] = (
        "one of the two zip(..., strict=True) over (tensors, floors) made lax: the other still raises on a length "
        "mismatch")

_M = "sparsecap_engine.pruning.masks."
_INERT_HOOK = ("a load hook left on a baked module is inert (without parametrizations it returns at once) and a later "
               "attach reuses it; bake removes every mask in the same call, so when the hook goes makes no difference")
EQUIVALENT.update({
    _M + "x_attach__mutmut_1": "attach's default kind: any kind but 'supermask' attaches hard masks",
    _M + "x_attach__mutmut_2": "attach's default kind: any kind but 'supermask' attaches hard masks",
    _M + "x_bake__mutmut_24": "leave_parametrized=None is falsy like False",
    _M + "x_baked_state_dict__mutmut_11": "a state-dict key holds '.parametrizations.' once (masks are not nested)",
    _M + "x_baked_state_dict__mutmut_18": "rest is '<pname>.original' or '<pname>.0.mask' (pname has no dot): "
                                          "rpartition finds the same 'original' tails",
    _M + "x_baked_state_dict__mutmut_26": "get_submodule('') is the model itself",
    _M + "xǁMaskBaseǁ__init____mutmut_2": "the generation's start value: only its changes enter the cache key",
    _M + "xǁMaskBaseǁ__init____mutmut_3": "in_step None is falsy like False (only tested for truth)",
    _M + "xǁMaskSetǁend_step__mutmut_1": "in_step None is falsy like False (only tested for truth)",
    _M + "xǁSupermaskǁ__init____mutmut_25": "topk None is falsy like False (only tested for truth)",
    _M + "xǁMaskBaseǁforward__mutmut_16": "a cache stored in grad mode outside a step is never read (a hit needs reuse "
                                          "and the key holds the grad flag); begin_step clears it",
    _M + "xǁSupermaskǁ__init____mutmut_19": "_kept starts '' instead of None: only begin_step enters a step, and it "
                                            "clears _kept first",
    _M + "xǁSupermaskǁ_versions__mutmut_1": "the fixed flag negated: the cache key still changes exactly when fix runs",
    _M + "xǁSupermaskǁ_compute__mutmut_8": "x.to(its own device) is x: always converting gives the same tensor",
    _M + "xǁSupermaskǁ_compute__mutmut_14": "x.to(its own device) is x: always converting gives the same (leaf) tensor",
    _M + "xǁSupermaskǁ_compute__mutmut_40": "rand < σ vs rand <= σ: differ only when a uniform draw equals σ exactly "
                                            "(probability ~2⁻²⁴ per draw)",
    _M + "x__load_plain_weights__mutmut_25": "device placement: equivalent on CPU, only a CUDA run can tell",
    _M + "x_bake__mutmut_50": "device placement (mul_ moves a CPU mask itself): equivalent on CPU",
    _M + "xǁHardMaskǁset__mutmut_2": "copy_ into the buffer moves the mask to the buffer's device itself",
})
for _n in (3, 4, 5):
    EQUIVALENT[f"{_M}xǁHardMaskǁset__mutmut_{_n}"] = "copy_ into the bool buffer casts to bool anyway (≠ 0 → True)"
for _n in (1, 2, 3):
    EQUIVALENT[f"{_M}xǁMaskSetǁbegin_step__mutmut_{_n}"] = (
        "begin_step also clears every cache, so the generation in the key never decides a hit")
for _n in (55, 59, 60):
    EQUIVALENT[f"{_M}x_attach__mutmut_{_n}"] = (
        "unsafe=False only adds torch's registration-time check that the mask keeps the weight's shape and dtype, "
        "which both masks do")
for _n in (61, 66, 67):
    EQUIVALENT[f"{_M}x_attach__mutmut_{_n}"] = (
        "a second load hook on a module with two masked tensors is inert: the first already moved the plain keys")
for _n in (19, 21):
    EQUIVALENT[f"{_M}x_bake__mutmut_{_n}"] = (
        "every owner of a masked tensor was parametrized on it by attach: is_parametrized(mod) = (mod, pn) here")
for _n in (29, 30, 34, 35, 36, 38, 39, 40):
    EQUIVALENT[f"{_M}x_bake__mutmut_{_n}"] = _INERT_HOOK
for _n in (47, 51, 52):
    EQUIVALENT[f"{_M}x_bake__mutmut_{_n}"] = "a tied weight multiplied by its 0/1 mask twice: w⊙m⊙m = w⊙m"

_S = "sparsecap_engine.pruning.ste.xǁ_Supermaskǁ"
EQUIVALENT.update({
    _S + "forward__mutmut_22": "σ((s − 0)·1) is σ(s) exactly: the general formula at the default τ, κ",
    _S + "forward__mutmut_34": "a bool eval mask: the product casts it to w's dtype and g·m promotes it to g's",
    _S + "backward__mutmut_10": "a gradient returned for logits that need none is discarded by autograd",
    _S + "backward__mutmut_29": "g_kept is 0-dim: it never sets addcmul's dtype (only rounding it to w's dtype first "
                                "differs, by at most 1 ulp in bf16)",
})

_P = "sparsecap_engine.pruning.scope."
_GUARD = ("neither a ParametrizationList nor a mask owns a weight weight_names would list (no layer type, no "
          "prunable_weights): skipping them is only a guard")
EQUIVALENT.update({
    _P + "x__raw_param__mutmut_6": "_parameters.get(pname) is None for an absent name anyway",
    _P + "x__scan__mutmut_3": _GUARD,
    _P + "x__scan__mutmut_9": "rsplit('.') and rsplit('.', 1) have the same last component",
    _P + "x__scan__mutmut_12": "rsplit('.', 2) and rsplit('.', 1) have the same last component",
    _P + "x_weight_names__mutmut_43": "'_reverse' names listed for a unidirectional RNN: it has none, absent names are "
                                      "skipped",
    _P + "x_weight_names__mutmut_53": "MultiheadAttention always has in_proj_weight (None with separate q/k/v): "
                                      "getattr's default is never used",
})
for _n in (1, 2, 4, 8, 9):
    EQUIVALENT[f"{_P}x__is_mask_machinery__mutmut_{_n}"] = _GUARD
for _n in (19, 35):
    EQUIVALENT[f"{_P}x_weight_names__mutmut_{_n}"] = (
        "'hr' listed for an LSTM without projections: it has no weight_hr, and absent names are skipped")
for _n in (28, 31, 34):
    EQUIVALENT[f"{_P}x_weight_names__mutmut_{_n}"] = (
        "every RNNBase has proj_size (0 when unused): getattr's default is never used")

_G = "sparsecap_engine.decoding.greedy."
_TWO_D = "filter_logprobs/sample work on (N, V) log-probs (values[:, -1:] and scatter(1, …) need 2-D): dim 1 is dim −1"
EQUIVALENT.update({
    _G + "x__decode__mutmut_13": "the default rules (unit 1, min_words 0, no bad endings, no blocking) never read eos",
    _G + "x__decode__mutmut_45": "t is always set by the loop: max_len >= 1 is checked first",
    _G + "x__decode__mutmut_46": "t is always set by the loop: max_len >= 1 is checked first",
    _G + "x__decode__mutmut_64": "neither greedy's nor sample's pick reads the step index",
    _G + "x_filter_logprobs__mutmut_10": 'float("INF") is float("inf")',
    _G + "x_filter_logprobs__mutmut_45": 'float("-INF") is float("-inf")',
    _G + "x_filter_logprobs__mutmut_83": 'float("-INF") is float("-inf")',
    _G + "x_filter_logprobs__mutmut_25": "top_k = V keeps every token (nothing is below the V-th value): the same x",
    _G + "x_sample__mutmut_16": "the up-front check only validates the options; the dummy's shape is never used",
    _G + "x_sample__mutmut_17": "the up-front check only validates the options; the dummy's shape is never used",
    _G + "x_sample__mutmut_35": "nan_to_num's default nan is 0.0",
    _G + "x_sample__mutmut_37": "nan_to_num's default nan is 0.0",
})
for _key in ("x_filter_logprobs__mutmut_26", "x_filter_logprobs__mutmut_32", "x_filter_logprobs__mutmut_33",
             "x_filter_logprobs__mutmut_51", "x_filter_logprobs__mutmut_53", "x_filter_logprobs__mutmut_61",
             "x_filter_logprobs__mutmut_66", "x_sample__mutmut_31", "x_sample__mutmut_41", "x_sample__mutmut_53",
             "x_sample__mutmut_55"):
    EQUIVALENT[_G + _key] = _TWO_D
for _n in (22, 26, 31, 35):
    EQUIVALENT[f"{_G}x__decode__mutmut_{_n}"] = "torch.full with an int fill value is int64 (torch.long) already"
for _n in (23, 27, 32, 36, 40, 43):
    EQUIVALENT[f"{_G}x__decode__mutmut_{_n}"] = "device placement: equivalent on CPU, only a CUDA run can tell"

_B = "sparsecap_engine.decoding.beam.x_beam_search__mutmut_"
EQUIVALENT.update({
    _B + "20": "the default rules (unit 1, min_words 0, no bad endings, no blocking) never read eos",
    _B + "94": "last_t is always set by the loop: max_len >= 1 is checked first",
    _B + "95": "last_t is always set by the loop: max_len >= 1 is checked first",
    _B + "114": "logp is (N, V): shape[1] is shape[-1]",
    _B + "122": "the top 2K already hold K candidates that do not end (one <eos> per beam); later ranks are unused",
    _B + "128": "topk's default dim is the last one, dim 1 of the 2-D scores",
    _B + "219": "topk's default dim is the last one, dim 1 of the 2-D scores",
    _B + "267": "topk's default dim is the last one, dim 1 of the 2-D ranks",
    _B + "158": "rank (width,) broadcasts to (n, width) wherever it is used",
    _B + "365": "fin_tokens column last_t + 1 is always padding (a hypothesis finished at t has tokens up to t only)",
    "sparsecap_engine.decoding.beam.x_length_penalty_fn__mutmut_5": '"NONE".lower() is "none"',
})
for _n in (39, 43, 49, 53, 69, 73):
    EQUIVALENT[f"{_B}{_n}"] = "torch.full with an int fill value is int64 (torch.long) already"
for _n in (40, 44, 50, 54, 59, 62, 70, 74, 78, 81, 85, 88, 91, 93, 151, 153, 161, 163, 340, 342):
    EQUIVALENT[f"{_B}{_n}"] = "device placement: equivalent on CPU, only a CUDA run can tell"

_K = "sparsecap_engine.decoding.constraints.xǁConstraintsǁ"
_SKIP = ("_block's early return: (t + 1 < size + unit) already holds whenever t < size, and for size <= t < "
         "size + unit − 1 t is not at a word's last token, so A or B or C = A or B = A or C")
EQUIVALENT.update({
    _K + "_block__mutmut_3": _SKIP,
    _K + "_block__mutmut_10": _SKIP + " (t = size + unit − 2: mid-word, or t < size when unit = 1)",
    _K + "_block__mutmut_12": _SKIP,
    _K + "apply__mutmut_14": "device placement: equivalent on CPU, only a CUDA run can tell",
    _K + "apply__mutmut_21": "(N, n_bad).any(1) is .any(-1)",
    _K + "eos_allowed__mutmut_5": "t / unit == t // unit when t % unit == 0 (checked first)",
    _K + "for_vocab__mutmut_9": "getattr(vocab, 'digits', None) or 1 is getattr(vocab, 'digits', 1) or 1",
    _K + "for_vocab__mutmut_45": "int codes make an int64 tensor; no codes make an empty one that apply skips (len 0)",
    _K + "for_vocab__mutmut_47": "int codes make an int64 tensor; no codes make an empty one that apply skips (len 0)",
})

_A = "sparsecap_engine.decoding.api."
EQUIVALENT.update({
    _A + "x__generator__mutmut_2": "device placement: equivalent on CPU, only a CUDA run can tell",
    _A + "x__sequence_logprob__mutmut_4": "torch.full with an int fill value is int64 (torch.long) already",
    _A + "x__sequence_logprob__mutmut_8": "torch.full with an int fill value is int64 (torch.long) already",
    _A + "x__sequence_logprob__mutmut_5": "device placement: equivalent on CPU, only a CUDA run can tell",
    _A + "x__sequence_logprob__mutmut_9": "device placement: equivalent on CPU, only a CUDA run can tell",
    _A + "x_decode_nbest__mutmut_49": "check() refuses greedy with n_best > 1; with n_best = 1, n is 1 either way",
    _A + "x_decode_nbest__mutmut_121": "argsort's default dim is the last one, dim 1 of the (B, n) scores",
    _A + "x_decode_tag__mutmut_41": "an effective beam has beam_size >= 2 (beam 1 is greedy): max(2, K) = max(1, K)",
    _A + "x_fit_vocab__mutmut_13": "at beam_size == words, replace() gives equal options (same beam, same n_best)",
    _A + "xǁDecodeOptionsǁcheck__mutmut_64": "the check only validates the options; the dummy's shape is never used",
    _A + "xǁDecodeOptionsǁcheck__mutmut_65": "the check only validates the options; the dummy's shape is never used",
})

#: survivors that change only which device a tensor is put on: the same program on CPU (a CUDA run would kill them)
for _n in (18, 21, 35, 136, 138):
    EQUIVALENT[f"sparsecap_engine.training.scst.x_scst_objective__mutmut_{_n}"] = (
        "device placement (device=None/omitted is the CPU): equivalent on CPU, only a CUDA run can tell")

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "killed"}


def _tracked_files(baseline: bool) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    keep = [f for f in out if (ROOT / f).is_file() and not f.startswith(("sweeps/", "docs/"))]
    if baseline:
        keep = [f for f in keep if not Path(f).name.startswith("test_mutants_")]
    return keep


def _prepare(area: str, spec: dict, work: Path, baseline: bool) -> list[str]:
    if work.exists():
        shutil.rmtree(work)
    for rel in _tracked_files(baseline):
        dst = work / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst)
    tests = [t for t in spec["tests"] if (work / t).is_file()]
    lines = ["[mutmut]", "source_paths=", "    sparsecap_engine", "only_mutate="]
    lines += [f"    {m}" for m in spec["modules"]]
    lines += ["pytest_add_cli_args=", "    -m", "    not slow", "    -p", "    no:cacheprovider"]
    lines += ["pytest_add_cli_args_test_selection="] + [f"    {t}" for t in tests]
    lines += ["also_copy=", "    tests", "    benchmarks"]  # tests/test_smp_recipe.py imports benchmarks/smp_toy.py
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")
    pyproject = work / "pyproject.toml"  # a [tool.mutmut] table there would override setup.cfg
    text = pyproject.read_text()
    if "[tool.mutmut]" in text:
        pyproject.write_text(text.replace("[tool.mutmut]", "[tool.mutmut-ignored]"))
    return tests


def _counted(key: str, functions: list[str] | None) -> bool:
    if functions is None:
        return True
    name = key.rsplit(".", 1)[1]  # x_func__mutmut_3 or xǁClassǁmethod__mutmut_3
    return any(name.startswith(f"x_{f}__") or f"ǁ{f}ǁ" in name or name.endswith(f"ǁ{f}") or
               name.split("__mutmut_")[0].endswith(f"ǁ{f}") for f in functions)


def _diff(work: Path, key: str) -> str:
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=work, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return "\n".join(f"        {ln.strip()[:150]}" for ln in lines)


def run_area(area: str, spec: dict, root: Path, baseline: bool, show: bool,
             max_children: int | None = None) -> dict[str, Counter]:
    work = root / area
    tests = _prepare(area, spec, work, baseline)
    print(f"\n=== {area}: {', '.join(spec['modules'])}\n    tests: {' '.join(tests)}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "mutmut", "run"] + ([f"--max-children={max_children}"] if max_children else [])
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    print(f"    mutmut run: exit {proc.returncode} in {time.monotonic() - t0:.0f} s", flush=True)
    if proc.returncode not in (0, 1) or "failed to collect stats" in proc.stdout + proc.stderr:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    result: dict[str, Counter] = {}
    for module, functions in spec["modules"].items():
        meta = work / "mutants" / (module + ".meta")
        counts: Counter = Counter()
        survivors = []
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}
        for key, code in sorted(codes.items(), key=lambda kv: (kv[0].split("__mutmut_")[0],
                                                               int(kv[0].rsplit("_", 1)[1]))):
            if not _counted(key, functions):
                continue
            status = STATUS.get(code, "suspicious" if code is not None else "not checked")
            if status == "survived" and key in EQUIVALENT:
                status = "equivalent"
            counts["generated"] += 1
            counts[status] += 1
            if status in ("survived", "equivalent", "suspicious", "not checked", "no tests"):
                survivors.append((key, status))
        result[module] = counts
        scope = "" if functions is None else f" (functions: {', '.join(functions)})"
        print(f"  {module}{scope}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for key, status in survivors:
            why = f" — {EQUIVALENT[key]}" if key in EQUIVALENT else ""
            print(f"    {status}: {key.rsplit('.', 1)[1]}{why}")
            if show and status != "not checked":
                print(_diff(work, key))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--area", action="append", choices=sorted(AREAS), help="area(s) to run (default: all)")
    ap.add_argument("--workdir", type=Path, help="where the copies go (default: a temporary folder, removed)")
    ap.add_argument("--baseline", action="store_true", help="leave out tests/test_mutants_*.py")
    ap.add_argument("--show", action="store_true", help="print the diff of every surviving mutant")
    ap.add_argument("--only", action="append", help="mutate only the area's modules whose path contains this")
    ap.add_argument("--tests", nargs="+", help="run these test files instead of the area's (e.g. only the new ones)")
    ap.add_argument("--max-children", type=int, help="mutmut's parallel test processes (default: one per CPU)")
    args = ap.parse_args(argv)
    areas = args.area or list(AREAS)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="sparsecap-mutation-"))
    total: Counter = Counter()
    try:
        for area in areas:
            spec = dict(AREAS[area])
            if args.only:
                spec["modules"] = {m: f for m, f in spec["modules"].items() if any(o in m for o in args.only)}
            if args.tests:
                spec["tests"] = args.tests
            if not spec["modules"]:
                continue
            for counts in run_area(area, spec, root, args.baseline, args.show, args.max_children).values():
                total.update(counts)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    live = total["survived"] + total["suspicious"] + total["no tests"] + total["not checked"]
    rate = (live + total["equivalent"]) / max(1, total["generated"])
    print(f"\nTOTAL: {', '.join(f'{k} {v}' for k, v in sorted(total.items()))}")
    print(f"survival rate {rate:.1%} (equivalent mutants included); non-equivalent survivors: {live}")
    return 1 if live else 0


if __name__ == "__main__":
    sys.exit(main())
