"""What the command lines share, without torch: the help formatter, the one-line-error parser, the parser that
keeps its table of flags, and the `--device`/`--dtype` flags (main.py, eval.py, inference.py, data_utils.py).

    parser = FlagParser(prog="main.py", formatter_class=HelpFormatter)
    add_device_flags(parser.add_argument_group("model"), "train")
    parser.flags["device"].choices           # every flag's argparse action by its dest: no parser._actions

`main.py --help` imports this module, config and the reward registry, never torch (tests/test_main.py).
Left out on purpose: the flags themselves, which each script declares in its own `build_parser`.
"""

from __future__ import annotations

import argparse
from typing import Any

from grpo_math.config import DEVICES, DTYPES


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where the help text does not already say what an unset flag means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a ValueError (the CLI prints one line, exit 2) instead of usage + exit."""

    def error(self, message: str) -> None:
        raise ValueError(message)


class _TablingGroup:
    """An argument group that also enters each flag it adds in its parser's table."""

    def __init__(self, group: Any, table: dict[str, argparse.Action]) -> None:
        self._group, self._table = group, table

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = self._group.add_argument(*args, **kwargs)
        self._table[action.dest] = action
        return action

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_group", "_table"):  # copy and pickle look these up before __init__
            raise AttributeError(name)
        return getattr(self._group, name)


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser that keeps its table of flags, `flags` (dest -> argparse.Action, in declaration order),
    so callers read flag types, choices and option strings from it rather than from argparse's private state."""

    @property
    def flags(self) -> dict[str, argparse.Action]:
        return self.__dict__.setdefault("_flag_table", {})

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.flags[action.dest] = action
        return action

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return _TablingGroup(super().add_argument_group(*args, **kwargs), self.flags)


def add_device_flags(group: Any, what: str) -> None:
    """--device and --dtype, the same in main.py, eval.py and inference.py; `what` is the verb (train, generate)."""
    group.add_argument("--device", default="auto", choices=list(DEVICES), help=f"where to {what}; auto = CUDA, "
                                                                               "then MPS, then CPU")
    group.add_argument("--dtype", default="auto", choices=list(DTYPES),
                       help="compute dtype; auto = bf16 on recent GPUs and on CPUs with native bf16 (mixed precision, "
                            "fp32 master weights), fp16 on older GPUs, fp32 on MPS and other CPUs")
