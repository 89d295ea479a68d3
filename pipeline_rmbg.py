"""transformers ``image-segmentation`` pipeline for RMBG-1.4: a thin adapter over rmbg_core.

Three ways in:

- remote code: ``pipeline("image-segmentation", model=FOLDER_OR_REPO, trust_remote_code=True)`` on a
  folder written by ``rmbg export`` (this file ships there, flattened);
- direct: ``load_pipeline(source, device=..., dtype=...)`` from anything ``rmbg_core.load_model`` accepts;
- opt-in task: ``register()`` adds ``background-removal`` to transformers' pipeline registry.

Images are read, resized, normalised, turned back into masks and rendered by rmbg_core; this module
only wires those steps into transformers' preprocess / _forward / postprocess and batches them.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import Any, Iterable

import torch
from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from modeling_rmbg import RMBGForSegmentation
from rmbg_core.api import render
from rmbg_core.edges.compose import Color, parse_color
from rmbg_core.edges.refine import Refinement, option_names
from rmbg_core.errors import InputError, OptionError
from rmbg_core.model.images import ImageInput, RGBImage, read_image
from rmbg_core.model.inference import prepare_network, release_buffers
from rmbg_core.model.processing import MODEL_INPUT_SIZE, check_input_size, postprocess, preprocess
from rmbg_core.model.runtime import resolve_device, resolve_dtype
from rmbg_core.model.weights import DEFAULT_SOURCE, build_network, locate_checkpoint, read_state_dict

TASK = "image-segmentation"
CUSTOM_TASK = "background-removal"
# The refinement keywords are rmbg_core's option names: the same words as the ComfyUI node and the CLI.
REFINE_KEYWORDS = option_names()
CALL_KEYWORDS = ("return_mask", "background", "estimate_foreground", *REFINE_KEYWORDS, "model_input_size",
                 "timeout")
# Keywords transformers' pipeline() factory forwards to every pipeline class; they mean nothing here.
FACTORY_KEYWORDS = ("local_files_only",)
URL_PREFIXES = ("http://", "https://")


class RMBGPipeline(Pipeline):
    """Background removal: an image (path, URL, PIL, numpy, tensor) or a list of them in; PIL out.

    Call keywords: ``return_mask=True`` for the mode "L" mask instead of the RGBA cutout;
    ``background="#RRGGBB"`` (or an (r, g, b) tuple) for an RGB composite on that colour;
    ``estimate_foreground=True`` to take the old background's colour out of soft edges (cutout and
    composite); the mask refinements of ``rmbg_core.Refinement`` by name (``levels=(0.05, 0.95)`` for a
    solid subject, ``threshold``, ``fill_holes``, ``keep_largest``, ``min_area``, ``grow``, ``feather``,
    ``invert``), applied before the output is built;
    ``model_input_size=(h, w)`` for the network input (default the config's, 1024x1024);
    ``timeout`` in seconds for URL downloads. ``batch_size=N`` runs N images per forward pass.
    Bad keyword values fail before any image is read. ``accelerate=False`` when the pipeline is made keeps
    the plain PyTorch network (default: the CPU accelerator, unless ``RMBG_ACCELERATE=0``).
    """

    # No tokenizer, image processor or feature extractor exists for this model: never look for one.
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_processor = False
    _load_video_processor = False

    def __init__(self, *args: Any, accelerate: bool | None = None, **kwargs: Any) -> None:
        for key in FACTORY_KEYWORDS:
            kwargs.pop(key, None)
        super().__init__(*args, **kwargs)
        if not self.model.training:
            # Prepared as rmbg_core.load_model prepares its network, so the masks are the core's.
            prepare_network(self.model.net, device=self.device, dtype=self.model.dtype, accelerate=accelerate)

    def __call__(self, inputs: ImageInput | list[ImageInput], **kwargs: Any) -> Any:
        """One image gives one PIL image; a list gives a list, in order (an empty list gives [])."""
        if isinstance(inputs, list) and not inputs:
            return []  # transformers would index inputs[0]
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, return_mask: bool | None = None, background: Color | None = None,
                             estimate_foreground: bool | None = None,
                             model_input_size: int | tuple[int, int] | None = None,
                             timeout: float | None = None, **keywords: Any) -> tuple[dict, dict, dict]:
        refine_keywords = {name: keywords.pop(name) for name in REFINE_KEYWORDS if name in keywords}
        if keywords:
            hint = ("; dtype and device are chosen when the pipeline is made: pipeline(..., dtype=..., device=...)"
                    " (torch_dtype= before transformers 4.56)") if {"dtype", "device"} & set(keywords) else ""
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) "
                            f"{', '.join(sorted(keywords))}; it accepts {', '.join(CALL_KEYWORDS)}, "
                            f"batch_size and num_workers{hint}")
        preprocess_params: dict[str, Any] = {}
        postprocess_params: dict[str, Any] = {}
        if model_input_size is not None:
            preprocess_params["model_input_size"] = check_input_size(model_input_size, "model_input_size")
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if return_mask is not None:
            postprocess_params["return_mask"] = bool(return_mask)
        if background is not None:
            parse_color(background)  # a bad colour fails before any image is read
            postprocess_params["background"] = background
        if estimate_foreground is not None:
            if not isinstance(estimate_foreground, bool):
                raise OptionError(f"estimate_foreground must be True or False, got {estimate_foreground!r}")
            postprocess_params["estimate_foreground"] = estimate_foreground
        # Checked (and converted) here, so a bad value fails before any image is read; passed on one by
        # one, so keywords given when the pipeline is made and when it is called combine.
        given = Refinement.from_options(refine_keywords)
        postprocess_params.update({name: getattr(given, name) for name, value in refine_keywords.items()
                                   if value is not None})
        return preprocess_params, {}, postprocess_params

    def preprocess(self, image: ImageInput, model_input_size: tuple[int, int] | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        picture = read_input(image, timeout)
        size = model_input_size or check_input_size(
            getattr(self.model.config, "model_input_size", MODEL_INPUT_SIZE), "config.model_input_size")
        # The base class moves inputs to the device but never casts them: match the model's dtype here.
        pixel_values = preprocess(picture.pixels[None], size, self.model.dtype)
        return {"pixel_values": pixel_values, "image": picture}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        # The batched map comes first: transformers reads the batch size from the first entry.
        prediction = self.model(model_inputs["pixel_values"]).saliency_maps[0]
        return {"prediction": prediction, "image": model_inputs["image"]}

    def postprocess(self, model_outputs: dict[str, Any], return_mask: bool = False,
                    background: Color | None = None, estimate_foreground: bool = False,
                    **refine_options: Any) -> Any:
        picture: RGBImage = model_outputs["image"]
        release_buffers(self.model.net, 4 * picture.size[0] * picture.size[1])  # the mask takes pool memory
        mask = postprocess(model_outputs["prediction"], picture.size)[0]
        return render(picture, mask, return_mask=return_mask, background=background,
                      refine=Refinement.from_options(refine_options), estimate_foreground=estimate_foreground)

    def get_iterator(self, inputs: Iterable, num_workers: int, batch_size: int, preprocess_params: dict,
                     forward_params: dict, postprocess_params: dict) -> PipelineIterator:
        """The base class batches only through a tokenizer or image processor; batch with our own collate."""
        if batch_size == 1:
            return super().get_iterator(inputs, num_workers, batch_size, preprocess_params, forward_params,
                                        postprocess_params)
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            num_workers = min(num_workers, 1)
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate)
        batches = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(batches, self.postprocess, postprocess_params)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch preprocess outputs: tensors are concatenated on dim 0, everything else is listed."""
    return {key: torch.cat([item[key] for item in items]) if isinstance(items[0][key], torch.Tensor)
            else [item[key] for item in items] for key in items[0]}


def read_input(image: ImageInput, timeout: float | None = None) -> RGBImage:
    """Read one pipeline input; ``http(s)://`` strings are downloaded first, the rest go to ``read_image``."""
    if isinstance(image, str) and image.startswith(URL_PREFIXES):
        return read_image(download(image, timeout), name=image)
    return read_image(image)


def download(url: str, timeout: float | None = None) -> bytes:
    """The body of ``url``, through huggingface_hub's HTTP session (its proxies, certificates, offline mode)."""
    from huggingface_hub.utils import get_session

    try:
        response = get_session().get(url, timeout=timeout)
        response.raise_for_status()
    except Exception as exc:  # requests (hub < 1) and httpx (hub >= 1) raise different families
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{url}: download failed ({reason})") from None
    return response.content


def load_pipeline(source: str | os.PathLike = DEFAULT_SOURCE, *, device: str | torch.device = "auto",
                  dtype: str | torch.dtype = "auto", revision: str | None = None, token: str | bool | None = None,
                  cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
                  accelerate: bool | None = None, **pipeline_kwargs: Any) -> RMBGPipeline:
    """An :class:`RMBGPipeline` from anything ``rmbg_core.load_model`` accepts, without remote code.

    ``device`` / ``dtype`` / ``accelerate`` as in ``load_model`` ("auto": CUDA in float16, else CPU in
    float32; the CPU accelerator unless ``accelerate=False`` or ``RMBG_ACCELERATE=0``). The model is a
    real ``RMBGForSegmentation`` built from the checkpoint (strict keys), so it can ``save_pretrained``;
    ``pipeline_kwargs`` (e.g. ``batch_size``, ``return_mask``) become defaults.
    """
    target = resolve_device(device)
    target_dtype = resolve_dtype(dtype, target)
    path = locate_checkpoint(source, revision=revision, token=token, cache_dir=cache_dir,
                             local_files_only=local_files_only)
    # As rmbg_core.load_model: built in float32 and prepared (BatchNorm folds before the cast), so the
    # weights are the core's; the pipeline's own preparation then finds nothing left to do.
    model = RMBGForSegmentation.from_network(build_network(read_state_dict(path), torch.float32,
                                                           source=os.fspath(path)))
    prepare_network(model.net, device=target, dtype=target_dtype, accelerate=accelerate)
    return RMBGPipeline(model=model, device=target, task=TASK, accelerate=accelerate, **pipeline_kwargs)


def register() -> None:
    """Opt in: ``pipeline("background-removal", model=...)`` builds an :class:`RMBGPipeline`.

    Also registers the config and model classes with transformers' Auto classes, so folders written
    by ``rmbg export`` load in this process without ``trust_remote_code``. Calling it again is harmless.
    """
    from transformers import AutoConfig, AutoModelForImageSegmentation
    from transformers.pipelines import PIPELINE_REGISTRY

    config_class = RMBGForSegmentation.config_class
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModelForImageSegmentation.register(config_class, RMBGForSegmentation, exist_ok=True)
    registered = PIPELINE_REGISTRY.supported_tasks.get(CUSTOM_TASK, {})
    if registered.get("impl") is not RMBGPipeline:
        PIPELINE_REGISTRY.register_pipeline(CUSTOM_TASK, pipeline_class=RMBGPipeline,
                                            pt_model=AutoModelForImageSegmentation, type="image")
