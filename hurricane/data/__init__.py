"""Training data: where it may come from, packed shards, streamed splits and batches.

sources   the directories and buckets an operator allows a search to read
datasets  bundled digits, ImageFolder, CIFAR-10 and packed sets as step-indexed batch streams
packed    packed datasets: tar shards of encoded images plus an index (torch-free)
stream    a packed split streamed from its shards, decoded per batch
batching  what every dataset does to a batch: scale, resize, augment

_PUBLIC names, by home module, what other packages use: the library imports them from
their modules (what the import contracts read); ``from hurricane.data import NAME`` loads
a name's module on first use, so the package itself stays light.
"""

from __future__ import annotations

from hurricane import surface

_PUBLIC = {
    "datasets": ("AnySplit", "check_readable", "Data", "load_data"),
    "packed": ("check_packed", "ClassCountMismatch", "DatasetError", "inspect", "pack", "parse_size",
               "peek"),
    "sources": ("SourceNotAllowed", "SourcePolicy"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)
