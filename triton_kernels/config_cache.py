"""The on-disk cache of tuned block configs: one JSON file per (GPU name, Triton version, rnnfused version).

    $TRITON_CACHE_DIR/rnnfused/configs-<gpu>-triton<version>-rnnfused<version>.json   (Triton's cache dir:
                                                                                   ~/.triton/cache by default)
    {"format": 1, "configs": {"forward|persistent|lstm|torch.bfloat16|8|256|256|NVIDIA H100 80GB HBM3":
                              [block_b, block_h, block_k, num_warps, num_stages], ...}}

Another GPU model, Triton or rnnfused version reads another file, so a config is never reused where it was not
measured. Writes are atomic (a temporary file in the same directory, then os.replace): a reader sees the old file
or the new one, never half of one; two processes tuning at once may each drop the other's new entry (it is tuned
again later, nothing breaks). Reading never raises: a missing, unreadable or malformed file, or an entry that is not
one of the candidate configs of its shape family, counts as a miss. A failed write warns once and is otherwise
ignored (a read-only home directory must not break training).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from typing import Dict, Optional, Sequence, Tuple

FORMAT = 1
_write_warned = False


def cache_dir() -> str:
    """Triton's own cache directory (TRITON_CACHE_DIR, default ~/.triton/cache) / rnnfused."""
    try:
        from triton import knobs

        base = knobs.cache.dir
    except Exception:  # pragma: no cover - Triton without knobs
        base = os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".triton", "cache")
    return os.path.join(base, "rnnfused")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_") or "unknown"


def cache_file(device_name: str) -> str:
    import triton

    from rnnfused.version import __version__

    name = f"configs-{_slug(device_name)}-triton{_slug(triton.__version__)}-rnnfused{_slug(__version__)}.json"
    return os.path.join(cache_dir(), name)


def _read(path: str) -> Dict[str, list]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except Exception:  # missing, unreadable, not JSON, too deeply nested...: a miss
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("configs"), dict):
        return {}
    return data["configs"]


def load(entry: str, device_name: str) -> Optional[Tuple[int, ...]]:
    """The stored integers of this entry, or None (the caller checks that they form a legal config)."""
    raw = _read(cache_file(device_name)).get(entry)
    if not isinstance(raw, list) or not all(type(v) is int for v in raw):
        return None
    return tuple(raw)


def store(entry: str, device_name: str, values: Sequence[int]) -> None:
    """Adds (or replaces) one entry; atomic; never raises."""
    global _write_warned
    path = cache_file(device_name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        configs = _read(path)
        configs[entry] = [int(v) for v in values]
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "configs": configs}, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        if not _write_warned:
            _write_warned = True
            warnings.warn(f"rnnfused: could not write the Triton config cache {path} ({exc}); tuned configs are kept "
                          "for this process only", RuntimeWarning, stacklevel=2)
