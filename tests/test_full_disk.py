"""A full disk anywhere (issue 23, point 1), as each writer reports it: safetensors' SafetensorError, an OSError
with ENOSPC, shutil.copytree's shutil.Error, torch.save's RuntimeError. Each ends in one line naming what was
being written, the last complete checkpoint and the resume command, exit 2, with nothing written lost; the
resume command then finishes the run. eval.py's results write keeps its finished records.
CI does not run as root, so the writers are made to fail by monkeypatching (slow: in-process tiny runs).
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from safetensors import SafetensorError

import main
from grpo_math.runs import diskfull

ROOT = Path(__file__).resolve().parents[1]
ARGV = ["--demo", "--report_to", "none", "--eval_every", "0", "--no-eval_before_train", "--batch_size", "4",
        "--num_generations", "2", "--max_completion_length", "8", "--save_steps", "1", "--seed", "5"]
NO_SPACE = "Error while serializing: I/O error: No space left on device (os error 28)"  # safetensors' own words


def train(out: Path, *extra: str) -> int:
    return main.main([*ARGV, "--output_dir", str(out), "--max_steps", "3", *extra])


def one_line_error(capsys, prog: str = "main.py") -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def fail_saves(monkeypatch, when: str, error: Exception) -> None:
    """Make PEFT's adapter write raise `error` for a file in a directory named `when`."""
    import peft.peft_model

    real = peft.peft_model.safe_save_file

    def save(tensors, filename, *a, **k):
        if Path(filename).parent.name == when:
            raise error
        return real(tensors, filename, *a, **k)

    monkeypatch.setattr(peft.peft_model, "safe_save_file", save)


def test_is_disk_full_tells_each_writer_s_words_from_other_errors(tmp_path):
    full = [OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EDQUOT, "Disk quota exceeded"),
            SafetensorError(NO_SPACE), shutil.Error([("a", "b", "[Errno 28] No space left on device: 'a' -> 'b'")])]
    other = [OSError(errno.EACCES, "Permission denied"), SafetensorError("header too large"), ValueError(NO_SPACE),
             RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")]  # disk has room
    assert all(diskfull.is_disk_full(e, tmp_path) for e in full)
    assert not any(diskfull.is_disk_full(e, tmp_path) for e in other)


def test_torch_s_writer_error_counts_when_the_disk_is_nearly_full(tmp_path, monkeypatch):
    monkeypatch.setattr(diskfull, "free_bytes", lambda path: 4096)
    assert diskfull.is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"), tmp_path)
    with pytest.raises(diskfull.DiskFull, match=rf"^no space left on the device writing x.bin \({tmp_path}\)$"):
        with diskfull.writing("x.bin", tmp_path):
            raise RuntimeError("basic_ios::clear: iostream error")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("when, error, names, last", [
    ("checkpoint-2", SafetensorError(NO_SPACE), "writing checkpoint-2", "checkpoint-1"),  # a checkpoint's adapter
    ("final", OSError(errno.ENOSPC, "No space left on device"), "writing final/", "checkpoint-3"),  # final/
])
def test_a_full_disk_saving_the_model_names_it_the_last_checkpoint_and_the_resume_command(
        when, error, names, last, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    fail_saves(monkeypatch, when, error)
    assert train(out) == 2
    line = one_line_error(capsys)
    assert names in line and f"the last checkpoint, {last}, is complete; resume with: python " in line, line
    resume = line.split("resume with: python ", 1)[1]
    assert resume.endswith("--resume_from_checkpoint latest") and f"--output_dir {out}" in resume
    assert not (out / ".partial").exists() and not (out / "final").exists()  # the space is given back
    assert (out / last / "adapter_model.safetensors").is_file()  # nothing written is lost
    monkeypatch.undo()
    assert train(out, "--resume_from_checkpoint", "latest") == 0  # the command it printed finishes the run
    assert (out / "final" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_full_disk_copying_the_demo_model_is_one_short_line(tmp_path, capsys, monkeypatch):
    from grpo_math.models import warm_start

    def copytree(src, dst, *a, **k):  # what shutil.copytree raises: every file's error in one list
        raise shutil.Error([(f"{src}/{f}", f"{dst}/{f}", f"[Errno 28] No space left on device: '{src}/{f}' -> "
                             f"'{dst}/{f}'") for f in ("model.safetensors", "config.json", "tokenizer.json")])

    monkeypatch.setattr(warm_start.shutil, "copytree", copytree)
    out = tmp_path / "run"
    assert train(out) == 2
    line = one_line_error(capsys)
    assert f"writing the demo's base model ({out / 'base_model'})" in line and len(line) < 300, line
    assert "no checkpoint was saved: rerun the same command" in line


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_eval_s_full_disk_keeps_the_finished_records_and_the_earlier_results(tiny_model_dir, tmp_path, capsys,
                                                                             monkeypatch):
    import eval as ev

    out = tmp_path / "results.json"
    out.write_text("earlier results\n")
    argv = ["--model_dir", str(tiny_model_dir), "--dataset_id", "arithmetic", "--split", "test[:3]",
            "--max_completion_length", "4", "--batch_size", "2", "--output_file", str(out)]
    real = ev.write_atomic

    def write_atomic(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ev, "write_atomic", write_atomic)
    assert ev.main(argv) == 2
    line = one_line_error(capsys, "eval.py")
    partial = tmp_path / "results.json.partial.jsonl"
    assert f"no space left on the device writing the results ({out}); the finished records are kept in {partial}" \
        in line
    assert out.read_text() == "earlier results\n" and len(partial.read_text().splitlines()) == 4  # header + 3
    monkeypatch.setattr(ev, "write_atomic", real)
    assert ev.main(argv) == 0  # the same command resumes: nothing generated again
    assert json.loads(out.read_text())["metrics"]["num_resumed"] == 3
