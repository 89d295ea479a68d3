"""ComfyUI's ``models/rmbg`` folder: registering it, listing its checkpoints, and putting
``briaai/RMBG-1.4`` there on first use."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..rmbg_core.errors import CheckpointError, HubAccessError
from ..rmbg_core.model.weights import DEFAULT_SOURCE, HUB_FILENAMES, download_from_hub

try:
    import folder_paths
except ImportError:  # not running inside ComfyUI
    folder_paths = None

FOLDER = "rmbg"
EXTENSIONS = (".safetensors", ".pth", ".pt")
HUB_CHOICE = DEFAULT_SOURCE
# Where the hub choice is downloaded, inside the first models/rmbg folder.
HUB_SUBFOLDER = "RMBG-1.4"

log = logging.getLogger(__name__)


def register() -> None:
    """Declare ``models/rmbg`` to ComfyUI, keeping folders a user mapped in extra_model_paths.yaml
    first, and accept only checkpoint files there (a yaml-made entry accepts every file)."""
    if folder_paths is None:
        return
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))
    paths = folder_paths.folder_names_and_paths[FOLDER][0]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(EXTENSIONS))


def folders() -> list[str]:
    """The rmbg model folders, the default (download target) first."""
    return folder_paths.get_folder_paths(FOLDER) if folder_paths is not None else []


def choices() -> list[str]:
    """The Load RMBG dropdown: the hub model, then every checkpoint under the rmbg folders."""
    files = folder_paths.get_filename_list(FOLDER) if folder_paths is not None else []
    return [HUB_CHOICE] + [name for name in files if name != HUB_CHOICE]


def locate(choice: str) -> Path:
    """The checkpoint file for a dropdown entry; the hub model is downloaded on first use."""
    if choice == HUB_CHOICE:
        return hub_checkpoint()
    path = folder_paths.get_full_path(FOLDER, choice) if folder_paths is not None else None
    if path is None:
        raise CheckpointError(f"RMBG checkpoint {choice!r} not found in {where()}; put .safetensors/.pth "
                              "files there, or pick briaai/RMBG-1.4")
    return Path(path)


class HubModelUnavailable(HubAccessError):
    """``briaai/RMBG-1.4`` is neither in ``models/rmbg`` nor downloadable; the message says what to do
    in ComfyUI. ComfyUI names an error by its class's module, and this pack's modules by their path on
    disk, so the short module keeps its error report readable ("rmbg-kit.HubModelUnavailable")."""

    __module__ = "rmbg-kit"


def hub_checkpoint() -> Path:
    """``briaai/RMBG-1.4``: the copy in ``models/rmbg/RMBG-1.4/`` if there is one, else a download
    into it (the Hub's cache, token and HF_HUB_OFFLINE apply). A failed download leaves nothing behind."""
    for folder in folders():
        for name in HUB_FILENAMES:
            candidate = Path(folder) / HUB_SUBFOLDER / name
            if candidate.is_file():
                return candidate
    if not folders():
        raise CheckpointError("no models/rmbg folder is registered (this needs ComfyUI's folder_paths)")
    target = Path(folders()[0]) / HUB_SUBFOLDER
    # The Hub client keeps lock files in <target>/.cache/huggingface even when it downloads nothing.
    created = outermost_missing(target / ".cache")
    log.info("Load RMBG: downloading %s into %s (first use)", HUB_CHOICE, target)
    try:
        target.mkdir(parents=True, exist_ok=True)
        return download_from_hub(HUB_CHOICE, local_dir=target)
    except (ImportError, OSError, HubAccessError) as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        log.debug("Load RMBG: download failed (%s)", exc)
        raise HubModelUnavailable(unavailable_message(exc, target)) from None


def unavailable_message(exc: Exception, target: Path) -> str:
    """Why the hub model could not be had, and the two ways to get it in ComfyUI, in one line."""
    page = f"https://huggingface.co/{HUB_CHOICE}"
    if isinstance(exc, ImportError):
        why = "cannot be downloaded: huggingface_hub is not installed in ComfyUI's Python"
    elif isinstance(exc, OSError):
        why = f"cannot be downloaded there ({exc.strerror or exc})"
    elif hub_offline():
        why = "cannot be downloaded: ComfyUI runs offline (HF_HUB_OFFLINE=1)"
    else:
        why = "cannot be downloaded: the Hugging Face Hub did not answer or refused access"
    return (f"{HUB_CHOICE} is not in {target} and {why}. Put model.safetensors from {page} into that folder, "
            "or accept the model's licence on that page and log in (`hf auth login`), then run the workflow again.")


def hub_offline() -> bool:
    """Whether the Hub client is set to work offline (HF_HUB_OFFLINE)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def outermost_missing(path: Path) -> Path | None:
    """The outermost folder on the way to ``path`` that does not exist yet: what creating ``path`` adds."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def where() -> str:
    """The rmbg folders, for messages."""
    found = folders()
    return ", ".join(found) if found else "models/rmbg"
