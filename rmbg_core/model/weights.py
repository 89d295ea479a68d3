"""Find an RMBG-1.4 checkpoint (file, folder or Hugging Face repo), read it, and build the network strictly.

Hub downloads go through ``huggingface_hub`` so its cache, revisions, tokens and ``HF_HUB_OFFLINE``
all apply; every failure becomes a :class:`CheckpointError` that says what to do about it.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError, HubAccessError, first_line
from .network import ISNet

DEFAULT_SOURCE = "briaai/RMBG-1.4"
HUB_FILENAMES = ("model.safetensors", "model.pth")
FOLDER_FILENAMES = ("model.safetensors", "model.pth", "pytorch_model.bin")
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
# Wrappers some tools put around a state dict: {"state_dict": {...}} and key prefixes like "module.".
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
KEY_PREFIXES = ("module.", "model.", "net.")
# How a checkpoint's format is told from its first bytes: torch.save writes a zip archive (or, before
# torch 1.6, a protocol-2+ pickle); safetensors starts with the little-endian length of a JSON header.
SNIFF_BYTES = 4096
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"
CONTENT_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                 (b"RIFF", "a RIFF file such as a WebP image"), (b"II*\x00", "a TIFF image"),
                 (b"MM\x00*", "a TIFF image"))
# The Python API's way round a Hub that cannot help (front ends word their own: HubAccessError.problem).
LOCAL_ADVICE = "or pass a local checkpoint file or folder instead"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def locate_checkpoint(source: str | os.PathLike = DEFAULT_SOURCE, *, revision: str | None = None,
                      token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                      local_files_only: bool | None = None) -> Path:
    """Return the local path of the checkpoint named by ``source`` (file, folder, or hub repo id)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return find_in_folder(path)
    text = os.fspath(source)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or not _REPO_ID.match(text):
        raise CheckpointError(f"{text}: no such checkpoint file or folder (nor a Hugging Face repo id "
                              "like 'briaai/RMBG-1.4')")
    return download_from_hub(text, revision=revision, token=token, cache_dir=cache_dir,
                             local_files_only=local_files_only)


def find_in_folder(folder: Path) -> Path:
    """The checkpoint inside ``folder``: a conventional name first, else its only checkpoint file."""
    for name in FOLDER_FILENAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CheckpointError(f"{folder}: folder holds no checkpoint (looked for "
                              f"{', '.join(FOLDER_FILENAMES)} or any {'/'.join(CHECKPOINT_SUFFIXES)} file)")
    raise CheckpointError(f"{folder}: folder holds several checkpoints "
                          f"({', '.join(p.name for p in candidates[:5])}); pass the file itself")


def download_from_hub(repo_id: str, *, revision: str | None = None, token: str | bool | None = None,
                      cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
                      local_dir: str | os.PathLike | None = None) -> Path:
    """Fetch (or find in the cache) ``model.safetensors``, falling back to ``model.pth``, of a hub repo.

    The Hub is probed first (:mod:`.hub_probe`, about 2 s at most): when it does not answer, an earlier
    download is looked up without a request, instead of the Hub client's retries.
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub import utils as hub_errors  # where 0.23 has them too (its .errors lacks them)

    from .hub_probe import hub_unreachable

    remote_missing = getattr(hub_errors, "RemoteEntryNotFoundError", hub_errors.EntryNotFoundError)
    offline = bool(local_files_only) or bool(constants.HF_HUB_OFFLINE)
    unreachable = None if offline else hub_unreachable(constants.ENDPOINT)
    if unreachable is not None:
        found = cached_copy(repo_id, revision=revision, cache_dir=cache_dir, local_dir=local_dir)
        if found is not None:
            return found
        raise no_copy(repo_id, f"the Hugging Face Hub at {constants.ENDPOINT} is unreachable ({unreachable})")
    page = f"https://huggingface.co/{repo_id}"
    lost = False  # the Hub stopped answering after the probe: only the cache is worth trying now
    for filename in HUB_FILENAMES:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, token=token, cache_dir=cache_dir,
                                        local_dir=local_dir, local_files_only=offline or lost))
        except hub_errors.GatedRepoError:
            raise HubAccessError(f"{repo_id} is a gated model: accept its licence at {page} while logged in, "
                                 "then run `hf auth login` (or set HF_TOKEN)", LOCAL_ADVICE) from None
        except hub_errors.RepositoryNotFoundError:
            raise HubAccessError(f"{repo_id}: no such model on the Hugging Face Hub, or it is private "
                                 "(check the name; log in if it is yours)", LOCAL_ADVICE) from None
        except hub_errors.RevisionNotFoundError:
            raise HubAccessError(f"{repo_id}: revision {revision!r} does not exist") from None
        except hub_errors.LocalEntryNotFoundError:
            lost = True
        except remote_missing:
            continue
        except (hub_errors.HfHubHTTPError, OSError) as exc:
            raise HubAccessError(f"{repo_id}: download of {filename} failed ({first_line(exc)})",
                                 LOCAL_ADVICE) from None
    if offline:
        raise no_copy(repo_id, f"offline mode is on ({'local_files_only' if local_files_only else 'HF_HUB_OFFLINE=1'})")
    if lost:
        raise no_copy(repo_id, f"the Hugging Face Hub at {constants.ENDPOINT} stopped answering")
    raise HubAccessError(f"{repo_id}: the repository has neither {' nor '.join(HUB_FILENAMES)}")


def cached_copy(repo_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                local_dir: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint of an earlier download (in ``local_dir``, else the Hub cache), found without a request.

    The Hub client's own offline lookup (``local_files_only``) builds request headers first, for which
    huggingface_hub 2.x fetches an agent registry from the Hub (3 s against a silent server); a Hub known
    to be away need not cost that.
    """
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILENAMES:
        if local_dir is not None:
            candidate = Path(local_dir) / filename
            if candidate.is_file():
                return candidate
            continue
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
        if isinstance(found, str):
            return Path(found)
    return None


def no_copy(repo_id: str, why: str) -> HubAccessError:
    """The error for a Hub that cannot be asked (``why``) when no earlier download is there either."""
    return HubAccessError(f"{repo_id}: {why} and no copy is cached (download it once while online)", LOCAL_ADVICE)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors or torch-pickled (``weights_only``) checkpoint into a flat state dict.

    The format is told by the file's first bytes, not its name; anything that cannot be read (not a
    checkpoint at all, truncated, damaged, pickled objects other than tensors) is a :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    kind = checkpoint_format(path, head, size)
    if kind == "safetensors":
        try:
            state = read_safetensors(path)
        except Exception as exc:  # safetensors raises its own SafetensorError and others for bad headers
            raise CheckpointError(f"{path}: not a valid safetensors file ({first_line(exc)})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged pickle or zip can trip anything inside torch.load
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({torch_load_reason(exc)})") from None
    return unwrap_state_dict(state, path)


def checkpoint_format(path: Path, head: bytes, size: int) -> str:
    """``"torch"`` (zip archive or pickle) or ``"safetensors"`` from the first bytes of a file; else refuse it.

    A ``.safetensors`` name counts as a safetensors file whatever its start, so a truncated one gets
    safetensors' own diagnosis.
    """
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        return "torch"
    header_length = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if path.suffix.lower() == ".safetensors" or (0 < header_length <= size - 8 and head[8:9] == b"{"):
        return "safetensors"
    raise CheckpointError(f"{path}: not a checkpoint ({describe_content(head)}); expected a .safetensors "
                          "file or a PyTorch state dict saved with torch.save")


def describe_content(head: bytes) -> str:
    """What the first bytes of a file that is not a checkpoint look like, for the error message."""
    for magic, kind in CONTENT_MAGIC:
        if head.startswith(magic):
            return kind
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "looks like JSON"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)  # a character cut at the end is not an error
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "looks like a text file" if b"\0" not in head else "unrecognised binary data"


def torch_load_reason(exc: Exception) -> str:
    """A one-line reason for a failed ``torch.load``, without torch's advice to turn ``weights_only`` off.

    That advice would execute arbitrary code from the file; rmbg reads only state dicts of tensors.
    """
    text = str(exc)
    unsupported = re.search(r"GLOBAL ([\w.]+)", text)
    if unsupported:
        return (f"it holds pickled Python objects ({unsupported.group(1)}), not only tensors; save the "
                "model's state_dict() instead")
    if "weights_only" in text or "Weights only load failed" in text:
        return "its pickle data holds more than tensors"
    return first_line(exc)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, each in memory of its own.

    safetensors' default tensors are views of a memory map of the whole file, which then stays
    mapped (and counted in the resident set) while any one tensor is alive, e.g. an int64 counter
    kept as-is. Newer versions read into owned memory (``backend="pread"``); older ones get a copy.
    """
    from safetensors import safe_open

    try:
        handle = safe_open(os.fspath(path), framework="pt", backend="pread")
        owned = True
    except TypeError:
        handle = safe_open(os.fspath(path), framework="pt")
        owned = False
    with handle:
        return {key: handle.get_tensor(key) if owned else handle.get_tensor(key).clone() for key in handle.keys()}


def unwrap_state_dict(state: object, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Peel common wrappers (``{"state_dict": ...}``, ``module.`` prefixes) off a loaded checkpoint."""
    if isinstance(state, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: checkpoint does not hold a state dict of tensors")
    non_tensors = [key for key, value in state.items()
                   if not (isinstance(key, str) and isinstance(value, torch.Tensor))]
    if non_tensors:
        raise CheckpointError(f"{path}: checkpoint entries are not tensors: {', '.join(map(str, non_tensors[:5]))}")
    state = dict(state)
    for prefix in KEY_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def build_network(state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                  source: str = "checkpoint") -> ISNet:
    """An :class:`ISNet` in eval mode holding ``state`` (strict keys and shapes), cast to ``dtype``.

    The network is built on the meta device and takes the checkpoint's tensors as its own, so the
    weights exist once in memory. Missing ``num_batches_tracked`` counters (unused at inference)
    are the only tolerated difference.
    """
    with torch.device("meta"):
        network = ISNet()
    expected = network.state_dict()
    check_keys(state, expected, source)
    check_dtypes(state, expected, source)
    for key in list(state):
        value = state[key]
        state[key] = value.to(dtype) if value.is_floating_point() else value
    for key in expected:
        if key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    network.load_state_dict(state, strict=True, assign=True)
    return network.eval().requires_grad_(False)


def check_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a :class:`CheckpointError` naming the first differing keys if ``state`` is not an RMBG-1.4."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:5])}{more}")
    raise CheckpointError(f"{source}: not an RMBG-1.4 (IS-Net) checkpoint; " + "; ".join(parts))


def check_dtypes(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a :class:`CheckpointError` unless every weight the network computes with is a dense float tensor.

    A quantized (int8), complex, sparse or meta (data-less) checkpoint has the right keys and shapes but
    cannot run.
    """
    wrong = {key: _tensor_kind(value) for key, value in state.items()
             if value.layout != torch.strided or value.is_meta
             or (expected[key].is_floating_point() and not value.is_floating_point())}
    if wrong:
        first = next(iter(wrong))
        raise CheckpointError(f"{source}: {len(wrong)} weights are {', '.join(sorted(set(wrong.values())))} "
                              f"(e.g. {first}); RMBG-1.4 needs dense floating-point weights (float32, float16 "
                              "or bfloat16)")


def _tensor_kind(value: torch.Tensor) -> str:
    if value.is_meta:
        return "meta tensors (no data)"
    if value.layout != torch.strided:
        return f"{value.layout} tensors"
    return str(value.dtype)
