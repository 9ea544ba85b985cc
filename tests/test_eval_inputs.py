"""eval.py's own files as untrusted input (issue 23, point 6): a partial-results file whose records lack their
fields is resumed without them (a warning, the examples scored again), never a KeyError after the whole eval;
an --output_file that names a directory, or sits under a file, is refused before anything loads."""

from __future__ import annotations

import json
import logging

import pytest

import eval as ev
from grpo_math.evaluation import scoring

GOOD = {"index": 1, "sample": 0, "completion": "12", "prediction": "12", "correct": True, "correct_lenient": True,
        "format_ok": False, "num_tokens": 3, "truncated": False, "reward": 1.0}


@pytest.mark.parametrize("bad, why", [
    ({"index": 0, "sample": 0}, "no 'completion'"),  # the record: index and sample only
    ({**GOOD, "correct": "yes"}, "'correct' is 'yes'"),  # a string where the metrics sum booleans
    ({**GOOD, "num_tokens": True}, "'num_tokens' is True"),  # a bool is not a count
    ({**GOOD, "index": "1"}, "'index' is '1'"),
    ({**GOOD, "reward": "high"}, "'reward' is 'high'"),
    ({**GOOD, "sample": -1}, "a negative index"),
    ({"sample": 0}, "no 'index'"),
])
def test_a_record_without_its_fields_is_dropped_with_a_warning(bad, why, tmp_path, caplog):
    partial = tmp_path / "r.json.partial.jsonl"
    lines = [{"config": {"seed": 0}}, bad, GOOD]
    partial.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with caplog.at_level(logging.WARNING):
        assert scoring.read_records(partial) == [GOOD]
    assert f"dropping line 2 of 3, not a record eval.py wrote ({why}" in caplog.text
    assert [json.loads(x) for x in partial.read_text().splitlines()] == [lines[0], GOOD]  # appends stay aligned


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_an_eval_resumed_from_bad_records_scores_those_examples_again(tiny_model_dir, tmp_path, capsys, caplog):
    out = tmp_path / "results.json"
    argv = ["--model_dir", str(tiny_model_dir), "--dataset_id", "arithmetic", "--split", "test[:3]",
            "--max_completion_length", "4", "--output_file", str(out)]
    assert ev.main(argv) == 0
    first = json.loads(out.read_text())
    header = json.dumps({"config": {k: v for k, v in first["config"].items() if k not in ("started", "finished")}})
    partial = tmp_path / "results.json.partial.jsonl"
    partial.write_text(header + "\n" + json.dumps({"index": 0, "sample": 0}) + "\n")
    capsys.readouterr()
    assert ev.main(argv) == 0  # today's KeyError: 'correct' after the whole eval, on every rerun
    assert "Traceback" not in capsys.readouterr().err
    assert "dropping line 2 of 2, not a record eval.py wrote (no 'completion')" in caplog.text
    again = json.loads(out.read_text())
    assert again["metrics"]["num_resumed"] == 0 and again["metrics"]["n"] == 3
    assert [r["completion"] for r in again["records"]] == [r["completion"] for r in first["records"]]


@pytest.mark.parametrize("target, message", [
    ("{tmp}", "{tmp} is a directory; name a file, e.g. {tmp}/results.json"),
    ("{tmp}/r.json", "{tmp}/r.json.partial.jsonl is a directory"),  # the partial file's name taken by a directory
    ("{tmp}/afile/r.json", "{tmp}/afile is a file, not a directory"),
])
def test_an_output_file_that_cannot_be_a_file_is_refused_before_anything_loads(target, message, tiny_model_dir,
                                                                              tmp_path, capsys, monkeypatch):
    from grpo_math.data import sources as data
    from grpo_math.models import loading as model_io

    (tmp_path / "r.json.partial.jsonl").mkdir()
    (tmp_path / "afile").write_text("a user's file\n")
    monkeypatch.setattr(model_io, "load_for_inference", lambda *a, **k: pytest.fail("loaded the model"))
    monkeypatch.setattr(data, "load_math_dataset", lambda *a, **k: pytest.fail("loaded the data"))
    rc = ev.main(["--model_dir", str(tiny_model_dir), "--dataset_id", "arithmetic",
                  "--output_file", target.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("eval.py: error: --output_file "), err
    assert message.format(tmp=tmp_path) in err
    assert (tmp_path / "afile").read_text() == "a user's file\n"
