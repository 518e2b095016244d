"""Model weights, one import away: the public names of the four weight modules.

* :mod:`medkt.models.resolve` — where weights come from (explicit path >
  ``MEDKT_HOME/weights/<name>`` > Hugging Face cache), offline checks, the one
  "weights missing" error;
* :mod:`medkt.models.download` — pinned downloads, verified before they land, bounded unzip;
* :mod:`medkt.models.verify` — SHA-256 pins and ``medkt weights verify``;
* :mod:`medkt.models.checkpoints` — safe state-dict reading, strict loading, atomic writing
  and :func:`weights_fingerprint`.

Existing callers keep importing from here (``from medkt.models.weights import resolve_file``).
"""
from __future__ import annotations

from medkt.models.checkpoints import (CHECKPOINT_SUFFIXES, load_strict, read_state_dict, weights_fingerprint,
                                      write_state_dict)
from medkt.models.download import download, download_url, safe_extract
from medkt.models.resolve import (hf_cached, hf_local_only, local_weights_folder, missing, resolve_file,
                                  resolve_hf_folder, resolve_open_clip, weights_status)
from medkt.models.verify import entry_pinned, sha256_of, unpinned_entries, verify

__all__ = ["CHECKPOINT_SUFFIXES", "download", "download_url", "entry_pinned", "hf_cached", "hf_local_only",
           "load_strict", "local_weights_folder", "missing", "read_state_dict", "resolve_file",
           "resolve_hf_folder", "resolve_open_clip", "safe_extract", "sha256_of", "unpinned_entries", "verify",
           "weights_fingerprint", "weights_status", "write_state_dict"]
