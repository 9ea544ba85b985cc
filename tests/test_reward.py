"""Tests for reward.py, equivalence.py and worker.py: extraction, equivalence, rewards, loading, bounds.

    pytest tests/test_reward.py          # ~5 s; starts one math-verify child

Table-driven where the subject is a table; each row's comment names the edge it covers. The gold self-check
reads ../shared/data (beside the repo) and skips when it is absent. Left out: TRL's own trainer (the reward
contract is tested by calling the functions the way TRL does, keyword columns included).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grpo_math.grading.equivalence import equal
from hostile_inputs import hostile_cases
from grpo_math.grading.worker import SymbolicWorker, shared_worker
from reward import (REWARD_FUNCS, RewardError, answers_match, check_reward_funcs, extract_answer, grade,
                    last_boxed, load_reward_funcs, make_overlong_reward, normalize_gold)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T = "<think>\nreasoning\n</think>\n"  # a closed thinking block
R1 = "A conversation between User and Assistant. User: 70+2?\nAssistant: <think>"  # r1_zero prompt


def ans(x: str) -> str:
    return f"{T}<answer>\n{x}\n</answer>"


def box(x: str) -> str:
    return ans(f"\\boxed{{{x}}}")


@pytest.fixture(scope="module", autouse=True)
def warm_worker():
    """One math-verify child for the module, started up front so symbolic cases are not judged cold."""
    assert shared_worker().warm_up(), "math-verify child did not start"


# ---------------------------------------------------------------------------------------------------------
# last_boxed / normalize_gold
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (r"so \boxed{72}.", "72"),                                  # plain
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),                    # nested braces
    (r"\boxed{1} then \boxed{2}", "2"),                          # the last one
    (r"\fbox{5}", "5"),                                          # \fbox
    (r"$\boxed 5$", "5"),                                        # no braces
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),                            # escaped braces are not grouping
    (r"\boxed{3} and \boxed{unclosed", "3"),                     # an unclosed last box falls back
    ("no box here", None),                                       # none
    (r"\boxedx{3}", None),                                       # a different macro
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("gold, expected", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),  # GSM8K rationale
    ("... so the total is\n#### 1,080", "1080"),                 # thousands separator stripped
    ("#### -5", "-5"),                                           # negative
    (r"Thus the answer is $\boxed{\frac{63}{400}}$.", r"\frac{63}{400}"),  # solution ending in a box
    ("  72 ", "72"),                                             # short answer, stripped
    ("", None),                                                  # nothing usable
    (None, None),                                                # missing
    ("x" * 5000, None),                                          # a long text with no final answer
])
def test_normalize_gold(gold, expected):
    assert normalize_gold(gold) == expected


# ---------------------------------------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, prompt, expected", [
    (box("72"), None, "72"),                                     # the requested format
    (ans("72"), None, "72"),                                     # answer tag without a box
    (ans("The answer is 72."), None, "72"),                      # a sentence inside the answer tag
    (T + r"so \boxed{72}", None, "72"),                          # box after thinking, no answer tag
    (r"Adding gives \boxed{72}.", None, "72"),                   # no tags at all (qwen_math template)
    ("Work...\n#### 72", None, "72"),                            # GSM8K style
    ("So the final answer is: 72", None, "72"),                  # anchored phrase
    ("**Answer:** 72", None, "72"),                              # markdown anchor
    ("所以答案是 72。", None, "72"),                              # Chinese anchor
    ("The answer is 72. Let me check: 70 + 2 = 72", None, "72"),  # phrase ends at the sentence
    ("<think>I get \\boxed{72}</think>", None, None),            # answer only inside think
    ("<think>the answer is 72", None, None),                     # unclosed think
    ("<think>a</think> ok <think>\\boxed{72}", None, None),       # re-opened and unclosed
    ("<THINK>\\boxed{72}</THINK>", None, None),                  # upper-case think still hides
    ("<thinking>\\boxed{72}</thinking>", None, None),            # <thinking> spelling still hides
    (" 2+70=72 </think> <answer>72</answer>", R1, "72"),         # r1_zero prompt pre-fills <think>
    ("2+70 is \\boxed{72}", R1, None),                           # ... so with no </think> it is unclosed
    (T + r"\boxed{3} or \boxed{4}", None, None),                 # two different boxes: a hedge
    (T + r"\boxed{\frac12} so \boxed{\dfrac{1}{2}}", None, r"\dfrac{1}{2}"),  # one value spelt twice
    (ans("") + r"\boxed{72}", None, None),                       # empty answer tag is the answer
    ("no answer here", None, None),                              # nothing
    ("x" * 300_000 + r"\boxed{72}", None, None),                 # over the completion cap
])
def test_extract_answer(text, prompt, expected):
    assert extract_answer(text, prompt=prompt) == expected


def test_extract_answer_lenient_takes_last_number_only_when_asked():
    text = T + "I think it is 72 apples"
    assert extract_answer(text) is None                          # strict: no anchored answer
    assert extract_answer(text, lenient=True) == "72"             # lenient: last number
    assert extract_answer("<think>72", lenient=True) is None      # never out of an open think


def test_extract_answer_accepts_chat_messages():
    msgs = [{"role": "assistant", "content": box("72")}]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": box("72")}]}]
    chat_prompt = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>"}]
    assert extract_answer(msgs) == "72"
    assert extract_answer(parts) == "72"                          # multimodal content parts
    assert extract_answer("x </think> <answer>5</answer>", prompt=chat_prompt) == "5"  # continued turn


# ---------------------------------------------------------------------------------------------------------
# equivalence
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pred, gold", [
    ("72", "72"),                                                # identical
    ("1,080", "1080"),                                           # thousands separator
    ("\\$18.00", "18"),                                          # dollar sign, trailing zeros
    ("$18", "18"),                                               # bare dollar
    ("25\\%", "25"),                                             # percent against a GSM8K-style gold
    ("25%", "0.25"),                                             # percent against its fraction
    ("0.25", "25\\%"),                                           # fraction against a percent gold
    ("\u221272", "-72"),                                         # U+2212 minus
    ("+72", "72"),                                               # explicit plus
    ("x = 5", "5"),                                              # variable assignment
    ("72 apples", "72"),                                         # a unit word
    ("5\\text{ cm}^2", "5"),                                     # a LaTeX unit with a power
    ("90^\\circ", "90"),                                         # degrees
    ("0.75", "\\frac{3}{4}"),                                    # decimal against fraction, exactly
    ("3/4", "\\dfrac{3}{4}"),                                    # slash fraction
    ("\\frac{-3}{4}", "-\\frac{3}{4}"),                          # sign inside the fraction
    ("\\frac43", "\\frac{4}{3}"),                                # brace-less \frac (MATH-500 gold)
    ("11\\sqrt2", "11\\sqrt{2}"),                                # brace-less \sqrt (MATH-500 gold)
    ("1.8", "1\\frac{4}{5}"),                                    # mixed number
    ("2^{10}", "1024"),                                          # a small power, exactly
    ("1.5\\times10^{3}", "1500"),                                # scientific notation in LaTeX
    ("5!", "120"),                                               # a small factorial
    ("７２", "72"),                                              # full-width digits (Chinese output)
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),  # tuple, \left/\right
    ("-2, 1", "1,-2"),                                           # a list of solutions, any order
    ("\\{4, 3\\}", "\\{3, 4\\}"),                                # a set, any order
    ("x=-2, x=1", "-2,1"),                                       # per-element assignments
    ("1+\\sqrt{19}, 1-\\sqrt{19}", "1 \\pm \\sqrt{19}"),         # ± is its two values
    ("[-2,7]", "x \\in [-2,7]"),                                 # `x \in` prefix
    ("C", "\\text{(C)}"),                                        # multiple choice
    ("East", "\\text{east}"),                                    # text answer, case-insensitive
    ("52_{8}", "52_8"),                                          # base subscript
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),           # symbolic: math-verify child
    ("\\sqrt{128}", "8\\sqrt{2}"),                               # symbolic simplification
    ("2(k+1)", "2k+2"),                                          # symbolic polynomial
    ("y = -2x", "y = -2x"),                                      # equation, identical
])
def test_equal_answers(pred, gold):
    assert answers_match(pred, gold)


@pytest.mark.parametrize("pred, gold", [
    ("0.333", "\\frac{1}{3}"),                                   # no approximate credit
    ("72.000000000000001", "72"),                                # exact, not float
    ("\\frac{10^{30}+1}{10^{30}}", "1"),                         # near-equal huge fraction
    ("\\frac{1" + "0" * 400 + "1}{1" + "0" * 400 + "}", "1"),    # near-equal 400-digit fraction
    ("\\frac{1}{2^{98}}", "\\frac{1}{2^{99}}"),                  # Math-Verify issue 14
    ("\\frac{1}{2006!}", "\\frac{1}{2004!}"),                    # huge factorials: text only
    ("3, 4, 5", "4"),                                            # hedged list
    ("3 or 4", "4"),                                             # hedged words
    ("3 \\text{ or } 4", "4"),                                   # hedged LaTeX text
    ("\\{3, 4\\}", "4"),                                         # hedged set
    ("4 \\pm 1", "4"),                                           # hedged ±
    ("[3, 5]", "4"),                                             # interval around the gold
    ("3 4", "34"),                                               # two numbers are not one
    ("72 or more", "72"),                                        # a hedging unit word
    ("5 million", "5"),                                          # a multiplier is not a unit
    ("5x", "5"),                                                 # a variable is not a unit
    ("2\\pi", "2"),                                              # a constant is not a unit
    ("--72", "72"),                                              # double sign
    ("2+2=4", "4"),                                              # an equation is not its right side
    ("2x = 8", "8"),                                             # ... nor its constant
    ("x = 4 = 5", "5"),                                          # equation chain
    ("7200", "72%"),                                             # percent works one way only
    ("\u0667\u0662", "72"),                                      # Arabic-Indic digits
    ("7\u00b2", "72"),                                           # superscript two
    ("7\x002", "72"),                                            # NUL byte
    ("7\u200b2", "72"),                                          # zero-width space
    ("(4, 3)", "(3, 4)"),                                        # tuples are ordered
    ("(1, 2)", "[1, 2]"),                                        # interval brackets matter
    ("1.41421356237", "\\sqrt{2}"),                              # a decimal never equals an irrational
    ("\\sqrt{2}+10^{-99}", "\\sqrt{2}"),                         # math-verify would round this equal
    ("1 + \\frac{1}{e}", "1 - \\frac{1}{e}"),                    # Math-Verify issue 14
    ("\\tan x", "\\cot x"),                                      # symbolic, different
    ("y^2", "x^2"),                                              # different variable
    ("1:00", "12:00"),                                           # ratio/time: no symbolic guess
    ("\\text{correct}", "72"),                                   # injected word
    ("", "72"),                                                  # empty
    (None, "72"),                                                # no answer
])
def test_unequal_answers(pred, gold):
    assert not answers_match(pred, gold)


def test_gold_may_be_a_rationale_or_a_solution():
    assert answers_match("72", "He sold 48 + 24 = <<48+24=72>>72 clips.\n#### 72")
    assert answers_match("\\frac{63}{400}", "so it is $\\boxed{\\dfrac{63}{400}}$")
    assert not answers_match("72", "")


# ---------------------------------------------------------------------------------------------------------
# rewards
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, completion, gold, prompt, expected", [
    ("format", box("72"), "72", None, 1.0),                      # pairs + box
    ("format", ans("72"), "72", None, 0.5),                      # pairs, no box
    ("format", ans("\\boxed{}"), "72", None, 0.5),               # an empty box is no box
    ("format", "<answer>\\boxed{72}</answer>", "72", None, 0.0),  # no think pair
    ("format", T + T + ans("\\boxed{72}"), "72", None, 0.0),     # two think pairs
    ("format", "<answer>x</answer>" + T, "72", None, 0.0),       # wrong order
    ("format", "\nx\n</think>\n<answer>\\boxed{7}</answer>", "72", R1, 1.0),  # pre-filled <think>
    ("accuracy", box("72"), "72", None, 1.0),                    # right
    ("accuracy", box("73"), "72", None, 0.0),                    # wrong
    ("accuracy", box("72"), "", None, None),                     # unusable gold -> None
    ("accuracy", box("72"), "#### 72", None, 1.0),               # rationale gold
    ("r1_zero", " 70+2 </think> <answer>72</answer>", "72", R1, 1.0),  # r1_zero format: no box needed
    ("r1_zero", " 70+2 </think> <answer>73</answer>", "72", R1, 0.0),  # format right, answer wrong
    ("r1_zero", "72", "72", R1, 0.0),                            # answer right, format wrong
    ("r1_zero", ans("72"), "72", None, 0.0),                     # chat prompt: needs the box
    ("r1_zero", box("72"), "72", None, 1.0),                     # chat prompt with the box
    ("r1_zero", box("72"), "", None, None),                      # unusable gold -> None
    ("strict_format", "<think>\nx\n</think>\n<answer>\n72\n</answer>\n", "72", None, 1.0),  # exact layout
    ("strict_format", "<think>x</think><answer>72</answer>", "72", None, 0.0),  # no newlines
    ("strict_format", "<think>\nx\n</think>\n<answer>\n72\n</answer> extra", "72", None, 0.0),  # trailing text
    ("tag_count", "<think>\nx\n</think>\n<answer>\n72\n</answer>", "72", None, 1.0),  # all four placed
    ("tag_count", "<think>\nx\n</think>\n", "72", None, 0.5),    # half
    ("tag_count", "hi <think>x</think><answer>72</answer> bye", "72", None, 0.5),  # text outside
    ("tag_count", "<think><think>x</think>", "72", None, 0.25),  # a doubled tag earns nothing
    ("digit", box("-1,080.5"), "72", None, 1.0),                 # a number in a box
    ("digit", ans("3/4"), "72", None, 1.0),                      # a fraction
    ("digit", ans("x = 5"), "72", None, 0.0),                    # not a plain number
    ("digit", "<think>x</think>72", "72", None, 0.0),            # no answer tag
])
def test_reward_table(name, completion, gold, prompt, expected):
    fn = REWARD_FUNCS[name]
    assert fn.__name__ == name                                    # the key it is logged under
    assert fn([completion], answer=[gold], prompts=[prompt]) == [expected]


def test_rewards_take_trl_keywords_and_chat_messages():
    comps = [[{"role": "assistant", "content": box("72")}], [{"role": "assistant", "content": box("5")}]]
    prompts = [[{"role": "user", "content": "q"}]] * 2
    extra = dict(prompts=prompts, completion_ids=[[1, 2], [3]], trainer_state=None,
                 log_extra=lambda *a: None, log_metric=lambda *a: None)
    for name, fn in REWARD_FUNCS.items():
        out = fn(comps, answer=["72", "72"], **extra)
        assert len(out) == 2 and all(v is None or math.isfinite(v) for v in out), name
    assert REWARD_FUNCS["accuracy"](comps, answer=["72", "72"], **extra) == [1.0, 0.0]
    assert REWARD_FUNCS["accuracy"](comps, solution=["72", "5"]) == [1.0, 1.0]  # TRL's `solution` column


def test_accuracy_logs_predictions_through_log_extra():
    seen = {}
    REWARD_FUNCS["accuracy"]([box("72"), "none"], answer=["72", "72"], log_extra=seen.__setitem__)
    assert seen == {"prediction": ["72", ""]}


def test_overlong_penalty():
    fn = make_overlong_reward(100, buffer=20)
    assert fn.__name__ == "overlong"
    ids = [list(range(n)) for n in (10, 80, 90, 100, 150)]
    assert fn(["x"] * 5, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]  # token ids when given
    assert fn(["w " * 90]) == [-0.5]                             # else whitespace words
    assert make_overlong_reward(100)(["x"], completion_ids=[list(range(85))]) == [-0.4]  # default buffer 25
    with pytest.raises(RewardError, match="max_completion_length"):
        make_overlong_reward(0)


def test_grade_keys_and_rules():
    g = grade(box("72"), "#### 72")
    assert g == {"prediction": "72", "correct": True, "prediction_lenient": "72", "correct_lenient": True,
                 "format_score": 1.0, "format_ok": True}
    g = grade(" 70+2 </think> <answer>72</answer>", "72", prompt=R1)
    assert g["correct"] and g["format_score"] == 0.5 and g["format_ok"]   # r1_zero format rule
    g = grade(ans("72"), "72")
    assert g["correct"] and not g["format_ok"]                    # chat prompt wants the box
    g = grade(T + "it is 72 apples", "72", lenient=True)
    assert g["prediction"] is None and not g["correct"]
    assert g["prediction_lenient"] == "72" and g["correct_lenient"]  # reported apart


# ---------------------------------------------------------------------------------------------------------
# loading and the pre-training check
# ---------------------------------------------------------------------------------------------------------
def test_load_registry_names_and_overlong_length():
    funcs = load_reward_funcs(["accuracy", "format", "overlong"], max_completion_length=10)
    assert [f.__name__ for f in funcs] == ["accuracy", "format", "overlong"]
    assert funcs[2]([""], completion_ids=[list(range(10))]) == [-1.0]  # built for length 10, not 256


def test_load_unknown_name_lists_valid_ones():
    with pytest.raises(RewardError) as e:
        load_reward_funcs(["acuracy"], max_completion_length=256)
    msg = str(e.value)
    assert "acuracy" in msg and all(name in msg for name in REWARD_FUNCS) and "\n" not in msg
    assert isinstance(e.value, ValueError)


def test_load_user_file_and_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text("def short(completions, **kw):\n    return [1.0] * len(completions)\n")
    fn, = load_reward_funcs([f"{tmp_path / 'my_rewards.py'}:short"], max_completion_length=256)
    assert fn(["a", "b"]) == [1.0, 1.0]
    monkeypatch.syspath_prepend(str(tmp_path))
    fn, = load_reward_funcs(["my_rewards:short"], max_completion_length=256)
    assert fn.__name__ == "short"
    with pytest.raises(RewardError, match="not found"):
        load_reward_funcs([f"{tmp_path / 'nope.py'}:short"], max_completion_length=256)
    with pytest.raises(RewardError, match="no function 'missing'"):
        load_reward_funcs([f"{tmp_path / 'my_rewards.py'}:missing"], max_completion_length=256)
    with pytest.raises(RewardError, match="cannot import"):
        load_reward_funcs(["no_such_pkg_xyz.mod:fn"], max_completion_length=256)
    (tmp_path / "broken.py").write_text("def f(:\n")
    with pytest.raises(RewardError, match="broken.py.*SyntaxError"):
        load_reward_funcs([f"{tmp_path / 'broken.py'}:f"], max_completion_length=256)


def test_check_accepts_every_registry_reward():
    check_reward_funcs(list(REWARD_FUNCS.values()))
    check_reward_funcs(list(REWARD_FUNCS.values()), gold="\\frac{3}{4}", prompt=R1, conversational=False)
    check_reward_funcs([REWARD_FUNCS["accuracy"]], gold="Natalia sold 48 clips.\n#### 1,080")


def _raises(completions, **kw):
    raise KeyError("solution")


def _one_value(completions, **kw):
    return [1.0]


def _nan(completions, **kw):
    return [float("nan")] * len(completions)


def _text(completions, **kw):
    return ["1"] * len(completions)


def test_check_accepts_numpy_floats_and_none():
    np = pytest.importorskip("numpy")
    check_reward_funcs([lambda completions, **kw: [np.float32(0.5), None]])


@pytest.mark.parametrize("fn, match", [
    (_raises, "'_raises' raised KeyError"),                      # raises
    (_one_value, "'_one_value' returned 1 values for 2"),        # wrong count
    (_nan, "'_nan' returned nan"),                               # non-finite
    (_text, "'_text' returned '1'"),                             # not a number
])
def test_check_names_the_broken_reward(fn, match):
    with pytest.raises(RewardError, match=match):
        check_reward_funcs([REWARD_FUNCS["format"], fn])


def test_self_test_cli_passes():
    out = subprocess.run([sys.executable, "reward.py"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout and "passed" in out.stdout


# ---------------------------------------------------------------------------------------------------------
# hostile input: bounded, never raises, never credited
# ---------------------------------------------------------------------------------------------------------
HOSTILE = hostile_cases()  # shared with bench/grader.py


@pytest.mark.parametrize("name, completion, gold", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_is_bounded_and_not_credited(name, completion, gold):
    t0 = time.perf_counter()
    assert REWARD_FUNCS["accuracy"]([completion], answer=[gold]) == [0.0]
    assert time.perf_counter() - t0 < 1.0


def test_bound_holds_in_a_worker_thread():
    """TRL may call rewards off the main thread, where signal-based timeouts do nothing."""
    cases = [(c, g) for _, c, g in HOSTILE] + [(box("(x+2)^{98}"), "x^{98}")]  # a fresh slow symbolic case
    def timed(case):
        t0 = time.perf_counter()
        out = REWARD_FUNCS["accuracy"]([case[0]], answer=[case[1]])
        return out, time.perf_counter() - t0, threading.current_thread() is threading.main_thread()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(timed, cases))
    assert all(out == [0.0] for out, _, _ in results)
    assert not any(main for _, _, main in results)
    # two threads share one child; waiting for the other's request counts against the same deadline
    assert max(dt for _, dt, _ in results) < 1.0


SILENT_CHILD = "import sys\nprint('ready', flush=True)\nfor line in sys.stdin:\n    pass\n"  # never answers
ECHO_CHILD = ("import json, sys\nprint('ready', flush=True)\nfor line in sys.stdin:\n"
              "    print(json.dumps([json.loads(line)[0], True]), flush=True)\n")  # answers at once


def test_child_is_killed_on_overrun_and_restarts():
    w = SymbolicWorker([sys.executable, "-c", SILENT_CHILD])
    try:
        assert w.warm_up(10)
        first = w._proc
        t0 = time.perf_counter()
        assert w.equivalent("a", "b", deadline=time.monotonic() + 0.2) is False  # overran: wrong, and killed
        assert 0.2 <= time.perf_counter() - t0 < 0.5
        assert w.kills == 1 and first.poll() is not None             # the old child is gone
        assert w.equivalent("a", "b", deadline=time.monotonic() + 0.2) is False  # cached: no second wait
        assert w.kills == 1
        assert w.warm_up(10) and w._proc is not first                # a fresh child took its place
    finally:
        w.close()


def test_child_round_trip_and_cache():
    w = SymbolicWorker([sys.executable, "-c", ECHO_CHILD])
    try:
        assert w.equivalent("a", "b", deadline=time.monotonic() + 10) is True
        w._proc.kill()                                               # a dead child cannot answer again ...
        assert w.equivalent("a", "b", deadline=time.monotonic() + 0.2) is True  # ... the verdict is cached
    finally:
        w.close()


def test_real_child_judges_symbolic_answers():
    w = shared_worker()
    assert w.equivalent("x^2+2x+1", "(x+1)^2", deadline=time.monotonic() + 5) is True
    assert w.equivalent("x^2+2x+2", "(x+1)^2", deadline=time.monotonic() + 5) is False


def test_the_child_outlives_a_ctrl_c_to_the_process_group():
    # Ctrl-C reaches every process of the group; the trainer finishes its step on it, so the grader must too
    w = shared_worker()
    assert w.warm_up()
    os.kill(w._proc.pid, signal.SIGINT)
    time.sleep(0.3)
    assert w._proc.poll() is None
    assert w.equivalent("2y+2", "2(y+1)", deadline=time.monotonic() + 5) is True and w.kills == 0


def test_cold_child_counts_against_the_bound():
    w = SymbolicWorker()
    try:
        t0 = time.perf_counter()
        assert w.equivalent("2k+2", "2(k+1)", deadline=time.monotonic() + 0.05) is None  # not ready: unknown
        assert time.perf_counter() - t0 < 0.5
    finally:
        w.close()


def test_symbolic_path_is_used_only_when_needed(monkeypatch):
    calls = []
    real = SymbolicWorker.equivalent
    monkeypatch.setattr(SymbolicWorker, "equivalent", lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    assert equal("1,080", "1080") and equal("(3,4]", "(3, 4]") and not equal("5", "p - q")
    assert not equal("x+1", "x+2, x+3")
    assert calls == []                                            # numbers, text, lists, shapes: no child
    assert equal("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}") and equal("(x+1)^2", "x^2+2x+1")
    assert calls == []                                            # radicals, polynomials: exact, in-process
    assert equal("\\tan^2 y + 1", "\\sec^2 y") and calls == []   # sin^2 + cos^2 = 1: in-process too
    assert equal("2\\sin x\\cos x", "\\sin 2x")
    assert len(calls) == 1                                        # a double-angle identity: the child


# ---------------------------------------------------------------------------------------------------------
# the gold self-check on the real data
# ---------------------------------------------------------------------------------------------------------
def _golds() -> list[tuple[str, str]]:
    if not DATA.is_dir():
        pytest.skip(f"no shared data at {DATA}")
    rows = []
    for name in ("gsm8k/train.jsonl", "gsm8k/test.jsonl"):
        rows += [(json.loads(line)["answer"], name) for line in (DATA / name).open()]
    rows += [(json.loads(line)["answer"], "math500") for line in (DATA / "math500/test.jsonl").open()]
    return rows


def test_every_gold_scores_full_marks_on_accuracy_and_format():
    rows = _golds()
    assert len(rows) == 8792 + 500
    completions = [f"<think>\nwork\n</think>\n<answer>\n\\boxed{{{normalize_gold(g)}}}\n</answer>" for g, _ in rows]
    golds = [g for g, _ in rows]
    acc = REWARD_FUNCS["accuracy"](completions, answer=golds)
    fmt = REWARD_FUNCS["format"](completions, answer=golds)
    bad = [(src, g[-40:]) for (g, src), a, f in zip(rows, acc, fmt) if a != 1.0 or f != 1.0]
    assert bad == []


def test_math500_solution_as_gold_agrees_with_its_answer():
    path = DATA / "math500/test.jsonl"
    if not path.exists():
        pytest.skip(f"no shared data at {DATA}")
    rows = [json.loads(line) for line in path.open()]
    assert all(answers_match(r["answer"], r["solution"]) for r in rows)
