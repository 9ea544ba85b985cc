"""Where a model or dataset comes from: a local path or a Hugging Face Hub id, and whether the Hub answers.

Shared by the data loaders (`sources.py`), model loading (`loading.py`), `main.py` and `eval.py`, so that "is this
a local path" has one rule everywhere. Left out on purpose: any download logic (transformers and datasets do it).
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

HUB_PROBE_TIMEOUT_S = 3.0  # datasets retries an unreachable Hub for ~25 s, transformers ~50 s; fail in seconds
# Suffixes that make a name a file, never a hub id (data files, and GGUF model files).
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt", ".tsv", ".arrow", ".xlsx", ".gz", ".zip", ".gguf")


def is_local_path(name: str) -> bool:
    """True when `name` names something on disk, even a missing one: it exists, starts with `.`, `/` or `~`,
    has more than one `/`, or ends in a file suffix. Hub ids look like `name` or `org/name`.

    >>> is_local_path("Qwen/Qwen2.5-0.5B-Instruct"), is_local_path("./ckpts/run/final"), is_local_path("d.jsonl")
    (False, True, True)
    """
    p = Path(name).expanduser()
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or p.suffix.lower() in LOCAL_SUFFIXES
            or p.exists())


@functools.lru_cache(maxsize=1)  # one probe per process: tokenizer, model and data loads all ask
def hub_reachable() -> bool:
    """A quick TCP connect to the Hub endpoint (HF_ENDPOINT honoured), or to the proxy when one is set."""
    from huggingface_hub import constants
    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)
    target = proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else constants.ENDPOINT
    url = urlparse(target)
    address = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=HUB_PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)  # a thread because DNS lookups ignore socket timeouts
    t.start()
    t.join(HUB_PROBE_TIMEOUT_S)
    return bool(result and result[0])

