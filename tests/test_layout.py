"""The layout issue's rules, checked: the file map lists every module, files stay short, TRL's private API is
touched in one file, nothing edits sys.path, and the package never imports a top-level script."""

from __future__ import annotations

import ast
import subprocess
import sys
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "grpo_math"
TOP_LEVEL = ("main.py", "train.py", "data_utils.py", "reward.py", "eval.py", "inference.py", "visualize.py",
             "export_gguf.py")
TRL_PRIVATE = re.compile(r"_generate_single_turn|\b_metrics\b|\b_logs\b|\b_n_gpu\b|\b_dist\b")


def project_files() -> list[Path]:
    """Every Python file of the project but the tests."""
    return sorted([*ROOT.glob("*.py"), *PACKAGE.rglob("*.py"), *(ROOT / "bench").glob("*.py")])


def test_the_file_map_lists_every_module_and_nothing_else():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_/]+\.(?:py|sh))` \|", text, re.M))
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    top = {p.name for p in ROOT.glob("*.py")} | {"eval.sh"}
    assert listed == modules | top


def test_the_top_level_holds_only_what_a_user_runs():
    assert {p.name for p in ROOT.glob("*.py")} == set(TOP_LEVEL)


def test_no_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in project_files() if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_trl_private_names_live_in_trainer_py_alone():
    touching = {str(p.relative_to(ROOT)) for p in project_files() if TRL_PRIVATE.search(p.read_text())}
    assert touching == {"grpo_math/training/trainer.py"}
    assert "check_trl_version()" in (PACKAGE / "training" / "trainer.py").read_text()


def test_nothing_edits_sys_path():
    files = [*project_files(), *(ROOT / "tests").glob("*.py")]
    assert not [p.name for p in files if re.search(r"sys\.path\.(insert|append)", p.read_text())]


def test_the_package_never_imports_a_top_level_script():
    names = "|".join(Path(n).stem for n in TOP_LEVEL)
    pattern = re.compile(rf"^\s*(?:import ({names})\b|from ({names}) import)", re.M)
    assert not [p.name for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())]


# --- the package's import graph, read from the source with ast (no module list kept by hand) ---------------------

# Which way packages import: a package may import its own layer or any layer below it, never one above. A unit is
# a sub-package of grpo_math or one of its top modules; a new one fails below until it is given a layer here.
LAYERS = (("training",), ("evaluation",), ("rewards",), ("models",), ("data",),
          ("grading", "runs", "runtime", "cli", "safe_yaml"), ("config",))


def package_modules() -> dict[str, Path]:
    """Every module of grpo_math by dotted name (a package by its __init__.py)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The grpo_math modules a file imports, at module level or inside a function (a lazy import is still an
    edge): `from grpo_math.x import y` is an edge to the module grpo_math.x.y when there is one, else to grpo_math.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
    return {name for name in found if name in modules}


def unit(module: str) -> str:
    """The package (or top module) of grpo_math a module belongs to: grpo_math.grading._exact -> grading."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of a directed graph as a path, or [] (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def module_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_no_import_cycle_between_modules():
    assert find_cycle(module_graph()) == []


def test_no_import_cycle_between_packages_and_imports_run_down_the_layers():
    graph = module_graph()
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    units = {unit(m) for m in graph} - {""}
    assert units <= set(layer), f"give {sorted(units - set(layer))} a layer in LAYERS"
    edges = {(unit(a), unit(b)) for a, bs in graph.items() for b in bs if "" not in (unit(a), unit(b))}
    upward = sorted((a, b) for a, b in edges if a != b and layer[a] > layer[b])
    assert not upward, f"imports that run upward (importer, imported): {upward}"
    assert find_cycle({a: {b for x, b in edges if x == a and b != a} for a, _ in edges}) == []


def test_config_imports_nothing_from_the_package():
    assert module_graph()["grpo_math.config"] == set()


def is_private(module: str) -> bool:
    """A module whose name, below grpo_math, starts with an underscore (grpo_math.grading._exact)."""
    return any(part.startswith("_") for part in module.split(".")[1:])


def test_nothing_outside_a_package_imports_its_private_modules():
    modules = package_modules()
    files = {**{name: path for name, path in modules.items()},
             **{str(p.relative_to(ROOT)): p for p in [*project_files(), *(ROOT / "tests").glob("*.py")]
                if not p.is_relative_to(PACKAGE)}}
    bad = []
    for importer, path in files.items():
        for imported in imports_of(path, modules):
            owner = imported.rsplit(".", 1)[0]  # the package holding the private module
            if is_private(imported) and not (importer == owner or importer.startswith(owner + ".")):
                bad.append((importer, imported))
    assert not bad


def test_the_import_check_sees_lazy_imports_and_cycles(tmp_path):
    # the check itself: a function-level import is an edge, and a two-module loop is found
    tree = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(tree) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []
    modules = package_modules()
    src = tmp_path / "probe.py"
    src.write_text("def f():\n    from grpo_math.grading import _exact\n")
    assert imports_of(src, modules) == {"grpo_math.grading._exact"}


def test_each_package_exports_its_public_modules():
    # a package's __all__ names exactly its modules without a leading underscore: its public surface
    for init in PACKAGE.glob("*/__init__.py"):
        public = {p.stem for p in init.parent.glob("*.py") if not p.stem.startswith("_")}
        exported = next(ast.literal_eval(node.value) for node in ast.parse(init.read_text()).body
                        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__all__")
        assert set(exported) == public, init.parent.name


def test_the_command_line_helpers_and_main_help_import_no_torch():
    code = ("import sys, main; main.build_parser().format_help(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "ok", res.stderr[-2000:]
