"""Open a model folder by location: a local path or gs://BUCKET/PREFIX."""

from __future__ import annotations

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.domain.folder import Folder


def open_folder(location: str) -> Folder:
    """The Folder adapter for `location` (google-cloud-storage is imported only for gs://)."""
    if location.startswith("gs://"):
        from modeldrop.adapters.gcs_folder import GcsFolder

        return GcsFolder(location)
    return LocalFolder(location)
