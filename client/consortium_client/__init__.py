"""Consortium partner library.

Pure code shared by partners and the server: hash-value parsing, DSSE signing and
verification, log leaves, Merkle proofs and tiles. It never imports Django, so a partner
can install it alone (`pip install ./client`, or `./client[images]` to hash images).

The Python API the `consortium` command wraps:

- `Client`: the HTTP client of the API (`consortium_client.api.ConsortiumApi`), with
  timeouts and retries;
- `hash_image(path)`: an image file's hashes (`consortium_client.imaging`), and
  `files_hash` / `files_walk` for many files in parallel;
- `submit_batches`: signed, chunked, resumable submission;
- `sync(client, path)`: the verified local mirror (`SyncError` when the server's answers do
  not verify), read with `Mirror`; `snapshot_refresh` brings its index snapshots forward;
- `MirrorMatcher`: matching against the mirror offline (`MirrorMatch` per entry found), and
  `MatchClient`: the same asked of a running `consortium serve-match`;
- `verify_checkpoint`, `verify_inclusion`, `verify_consistency`, `verify_entry`,
  `verify_envelope`, `verify_revocation` (`consortium_client.verify`).

Names are imported on first use, so that `import consortium_client` stays cheap and works
without the imaging extras.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consortium_client.api import ApiError
    from consortium_client.api import ConsortiumApi as Client
    from consortium_client.batches import submit_batches
    from consortium_client.config import Config, config_load
    from consortium_client.hashfiles import files_hash, files_walk
    from consortium_client.imaging import image_file_hashes as hash_image
    from consortium_client.match_server import MatchClient
    from consortium_client.mirror_index import MirrorMatch, MirrorMatcher, snapshot_refresh
    from consortium_client.mirror_sync import Mirror, SyncError, sync
    from consortium_client.verify import (
        VerificationError,
        verify_checkpoint,
        verify_consistency,
        verify_entry,
        verify_envelope,
        verify_inclusion,
        verify_revocation,
    )

# Public name -> (module, name in it).
_EXPORTS = {
    "Client": ("api", "ConsortiumApi"),
    "ApiError": ("api", "ApiError"),
    "Config": ("config", "Config"),
    "config_load": ("config", "config_load"),
    "hash_image": ("imaging", "image_file_hashes"),
    "files_hash": ("hashfiles", "files_hash"),
    "files_walk": ("hashfiles", "files_walk"),
    "submit_batches": ("batches", "submit_batches"),
    "Mirror": ("mirror_sync", "Mirror"),
    "sync": ("mirror_sync", "sync"),
    "SyncError": ("mirror_sync", "SyncError"),
    "MirrorMatcher": ("mirror_index", "MirrorMatcher"),
    "MirrorMatch": ("mirror_index", "MirrorMatch"),
    "MatchClient": ("match_server", "MatchClient"),
    "snapshot_refresh": ("mirror_index", "snapshot_refresh"),
    "VerificationError": ("verify", "VerificationError"),
    "verify_checkpoint": ("verify", "verify_checkpoint"),
    "verify_consistency": ("verify", "verify_consistency"),
    "verify_entry": ("verify", "verify_entry"),
    "verify_envelope": ("verify", "verify_envelope"),
    "verify_inclusion": ("verify", "verify_inclusion"),
    "verify_revocation": ("verify", "verify_revocation"),
}

__all__ = [
    "ApiError",
    "Client",
    "Config",
    "MatchClient",
    "Mirror",
    "MirrorMatch",
    "MirrorMatcher",
    "SyncError",
    "VerificationError",
    "config_load",
    "files_hash",
    "files_walk",
    "hash_image",
    "snapshot_refresh",
    "submit_batches",
    "sync",
    "verify_checkpoint",
    "verify_consistency",
    "verify_entry",
    "verify_envelope",
    "verify_inclusion",
    "verify_revocation",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'consortium_client' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"consortium_client.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
