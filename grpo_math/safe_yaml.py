"""YAML for `--config` files: PyYAML's safe loader, with aliases and repeated keys refused.

    data = safe_yaml.load_config("configs/qwen2.5-0.5b-gsm8k.yaml")   # a dict, or ConfigFileError (one line)

Why not `yaml.safe_load` alone: an alias (`*name`) lets 500 bytes of YAML stand for billions of list items (the
"billion laughs" bomb), which any later use or error message expands into gigabytes; a flag file never needs
one, so the loader refuses every alias before building anything. A key given twice (`max_steps: 6` then
`max_steps: 9999`) silently keeps the last value in PyYAML; here it is an error naming the key and both lines.
Left out on purpose: YAML merge keys (`<<: *base`), which need aliases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from grpo_math.config import UsageError


class ConfigFileError(UsageError):
    """A --config file that cannot be used; the message is one line naming the file and the fix."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (and so anchors' reuse) and keys given twice in one mapping."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} found: aliases are not allowed in a config file; write the "
                            "value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if first is not key_node.start_mark:
                raise _DuplicateKey(key, first.line + 1, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first_line: int, second_line: int):
        super().__init__(key, first_line, second_line)
        self.key, self.first_line, self.second_line = key, first_line, second_line


def load(text: str, where: str = "--config") -> Any:
    """The YAML document in `text`; raises ConfigFileError (one line, starting with `where`)."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except _DuplicateKey as e:
        shown = str(e.key)[:80]
        raise ConfigFileError(f"{where}: key {shown!r} is given twice (lines {e.first_line} and {e.second_line}); "
                              "keep one") from None
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())[:300]
        raise ConfigFileError(f"{where}: not valid YAML ({detail})") from None
    except RecursionError:  # thousands of nested brackets
        raise ConfigFileError(f"{where}: nested too deeply to be a config file") from None


def load_config(path: str) -> dict:
    """The mapping of flag names to values in the YAML file `path` (an empty file is {})."""
    where = f"--config {path}"
    file = Path(path)
    if not file.is_file():
        raise ConfigFileError(f"{where}: no such file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(f"{where}: not valid YAML (not UTF-8 text)") from None
    except OSError as e:
        raise ConfigFileError(f"{where}: cannot read it ({e.strerror})") from None
    data = load(text, where) or {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{where}: expected a mapping of flag names to values")
    return data
