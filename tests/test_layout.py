"""The layout issue's rules, checked: the file map lists every module, files stay short, TRL's private API is
touched in one file, nothing edits sys.path, and the package never imports a top-level script."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "grpo_math"
TOP_LEVEL = ("main.py", "train.py", "data_utils.py", "reward.py", "eval.py", "inference.py", "visualize.py",
             "export_gguf.py")  # issue 21 names `python export_gguf.py RUN_DIR|MODEL_DIR`
TRL_PRIVATE = re.compile(r"_generate_single_turn|\b_metrics\b|\b_logs\b|\b_n_gpu\b|\b_dist\b")


def project_files() -> list[Path]:
    """Every Python file of the project but the tests."""
    return sorted([*ROOT.glob("*.py"), *PACKAGE.glob("*.py"), *(ROOT / "bench").glob("*.py")])


def test_the_file_map_lists_every_module_and_nothing_else():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_]+\.(?:py|sh))` \|", text, re.M))
    modules = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py"}
    top = {p.name for p in ROOT.glob("*.py")} | {"eval.sh"}
    assert listed == modules | top


def test_the_top_level_holds_only_what_a_user_runs():
    assert {p.name for p in ROOT.glob("*.py")} == set(TOP_LEVEL)


def test_no_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in project_files() if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_trl_private_names_live_in_trainer_py_alone():
    touching = {str(p.relative_to(ROOT)) for p in project_files() if TRL_PRIVATE.search(p.read_text())}
    assert touching == {"grpo_math/trainer.py"}
    assert "check_trl_version()" in (PACKAGE / "trainer.py").read_text()


def test_nothing_edits_sys_path():
    files = [*project_files(), *(ROOT / "tests").glob("*.py")]
    assert not [p.name for p in files if re.search(r"sys\.path\.(insert|append)", p.read_text())]


def test_the_package_never_imports_a_top_level_script():
    names = "|".join(Path(n).stem for n in TOP_LEVEL)
    pattern = re.compile(rf"^\s*(?:import ({names})\b|from ({names}) import)", re.M)
    assert not [p.name for p in PACKAGE.glob("*.py") if pattern.search(p.read_text())]
