"""RMBGPipeline built with load_pipeline (no remote code): outputs, inputs, batching, dtype, device, errors.

Random weights and a 64x64 network input: these check the plumbing; masks of real weights are
checked in test_export.py through remote code and in test_fixture.py through the core.
"""

import http.server
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_INPUT
from modeling_rmbg import RMBGForSegmentation
from pipeline_rmbg import RMBGPipeline, load_pipeline
from rmbg_core import InputError, OptionError, Refinement
from rmbg_core.api import render
from rmbg_core.model.images import read_image
from rmbg_core.edges.refine import option_names
from rmbg_core.model.weights import build_network


@pytest.fixture(scope="module")
def pipe(checkpoint_dir):
    return load_pipeline(checkpoint_dir, device="cpu", dtype="float32", model_input_size=SMALL_INPUT)


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((37, 53, 3), (64, 20, 3), (45, 45, 3))]


def as_int(image):
    return np.asarray(image).astype(int)


def assert_masks_equal_the_core(pipe, model, photos):
    """The pipeline's masks are exactly those rmbg_core renders from ``model``'s predictions."""
    for photo in photos:
        core_mask = model.predict(torch.from_numpy(photo)[None], input_size=SMALL_INPUT)[0]
        expected = render(read_image(photo), core_mask, return_mask=True)
        assert np.array_equal(as_int(pipe(photo, return_mask=True)), as_int(expected))


def test_load_pipeline_builds_a_transformers_model_from_the_checkpoint(pipe, checkpoint_file):
    from safetensors.torch import load_file

    assert isinstance(pipe, RMBGPipeline) and isinstance(pipe.model, RMBGForSegmentation)
    assert pipe.task == "image-segmentation" and pipe.device == torch.device("cpu")
    assert pipe.model.dtype == torch.float32 and not pipe.model.training
    state = pipe.model.state_dict()
    reference = load_file(checkpoint_file)
    assert sorted(state) == sorted(f"net.{key}" for key in reference)
    # The pipeline folds BatchNorm into the convolutions (as load_model does): other tensors, same function.
    pixels = torch.rand(1, 3, 64, 64) - 0.5
    with torch.inference_mode():
        assert torch.allclose(pipe.model(pixels).saliency_maps[0], build_network(reference)(pixels), atol=1e-5)


def test_masks_equal_the_core_for_the_same_weights(pipe, random_model, photos):
    """The pipeline is an adapter: same preprocess, network, postprocess and render as rmbg_core."""
    assert_masks_equal_the_core(pipe, random_model, photos)


def test_half_precision_masks_equal_the_core(checkpoint_dir, photos):
    """Under bfloat16 the pipeline runs its model as the core does (folded, float32 side heads)."""
    from rmbg_core import load_model

    half = load_pipeline(checkpoint_dir, device="cpu", dtype="bfloat16", model_input_size=SMALL_INPUT)
    assert half.model.dtype == torch.bfloat16 and half.model.net.side1.weight.dtype == torch.float32
    assert_masks_equal_the_core(half, load_model(checkpoint_dir, device="cpu", dtype="bfloat16"), photos)


def test_cutout_mask_and_composite(pipe, photos):
    photo = photos[0]
    mask = pipe(photo, return_mask=True)
    assert mask.mode == "L" and mask.size == (53, 37)
    cutout = pipe(photo)
    assert cutout.mode == "RGBA" and cutout.size == (53, 37)
    assert np.array_equal(np.asarray(cutout)[..., 3], np.asarray(mask)), "cutout alpha is the mask"
    assert np.array_equal(np.asarray(cutout)[..., :3], photo), "cutout keeps the input colours"
    composite = pipe(photo, background="#ff0000")
    assert composite.mode == "RGB" and composite.size == (53, 37)
    weight = as_int(mask)[..., None] / 255
    assert np.abs(as_int(composite) - (photo * weight + np.array([255, 0, 0]) * (1 - weight))).max() <= 1


def test_every_input_kind_gives_the_same_mask(pipe, photos, tmp_path):
    photo = photos[1]
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    expected = as_int(pipe(photo, return_mask=True))
    for source in (str(path), path, Image.fromarray(photo), path.read_bytes(), torch.from_numpy(photo)):
        assert np.array_equal(as_int(pipe(source, return_mask=True)), expected), type(source)


def test_list_input_gives_a_list_and_batching_equals_one_at_a_time(pipe, photos):
    single = [as_int(pipe(photo, return_mask=True)) for photo in photos]
    listed = pipe(photos, return_mask=True)
    assert isinstance(listed, list) and len(listed) == 3
    assert all(np.array_equal(as_int(a), b) for a, b in zip(listed, single))
    for batch_size in (2, 3):
        batched = pipe(photos, return_mask=True, batch_size=batch_size)
        assert [m.size for m in batched] == [m.size for m in listed]
        assert all(np.abs(as_int(a) - b).max() <= 1 for a, b in zip(batched, single)), "batching changes masks"
    assert pipe([]) == []


def test_batched_forward_really_batches(pipe, photos, monkeypatch):
    seen = []
    forward = pipe.model.forward
    monkeypatch.setattr(pipe.model, "forward", lambda pixel_values, **kw: seen.append(len(pixel_values))
                        or forward(pixel_values, **kw))
    pipe(photos, return_mask=True, batch_size=2)
    assert seen == [2, 1]


def test_batch_size_at_construction_and_generators(checkpoint_dir, photos):
    pipe = load_pipeline(checkpoint_dir, device="cpu", dtype="float32", batch_size=2,
                         model_input_size=SMALL_INPUT, return_mask=True)
    masks = list(pipe(photo for photo in photos))
    assert [m.mode for m in masks] == ["L"] * 3 and masks[1].size == (20, 64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_is_honored(checkpoint_dir, pipe, photos, dtype):
    half = load_pipeline(checkpoint_dir, device="cpu", dtype=dtype, model_input_size=SMALL_INPUT)
    heads = {id(p) for head in half.model.net.side_heads() for p in head.parameters()}
    assert half.model.dtype == dtype  # the body; side heads stay float32 (see rmbg_core.model.inference.HALF_DTYPES)
    assert all(p.dtype == (torch.float32 if id(p) in heads else dtype) for p in half.model.parameters())
    seen = []
    half.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    mask = half(photos[0], return_mask=True)
    assert seen == [dtype], "inputs are cast to the model's dtype"
    assert mask.mode == "L" and mask.size == (53, 37)
    reference = as_int(pipe(photos[0], return_mask=True))
    assert np.corrcoef(as_int(mask).ravel(), reference.ravel())[0, 1] > 0.9, "same masks up to rounding"


def test_device_is_honored(checkpoint_dir):
    pipe = load_pipeline(checkpoint_dir, device="cpu", dtype="auto")
    assert pipe.device == torch.device("cpu") and pipe.model.device == torch.device("cpu")
    assert pipe.model.dtype == torch.float32


def test_model_input_size_is_the_network_input(pipe, photos):
    seen = []
    handle = pipe.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    try:
        pipe(photos[0], return_mask=True, model_input_size=(32, 48))
        pipe(photos[0], return_mask=True, model_input_size=40)
        pipe(photos[0], return_mask=True)
    finally:
        handle.remove()
    assert seen == [(1, 3, 32, 48), (1, 3, 40, 40), (1, 3, 64, 64)]


def test_default_input_size_comes_from_the_config(checkpoint_dir):
    pipe = load_pipeline(checkpoint_dir, device="cpu", dtype="float32")
    pipe.model.config.model_input_size = [24, 16]
    seen = []
    pipe.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    pipe(np.zeros((10, 10, 3), np.uint8))
    assert seen == [(1, 3, 24, 16)]


# Refinements and foreground estimation: the same keywords as rmbg_core.Refinement, through api.render.

REFINEMENTS = [
    {"threshold": 0.5, "keep_largest": True},
    {"fill_holes": True, "min_area": 0.01, "grow": 2},
    {"grow": -1, "feather": 1.5, "invert": True},
    {"levels": (0.3, 0.7)},
    {"levels": "0.2,0.8", "fill_holes": True},
]


def core_output(random_model, photo, **keywords):
    core_mask = random_model.predict(torch.from_numpy(photo)[None], input_size=SMALL_INPUT)[0]
    refine = Refinement.from_options({k: v for k, v in keywords.items() if k in option_names()})
    rest = {k: v for k, v in keywords.items() if k not in option_names()}
    return render(read_image(photo), core_mask, refine=refine, **rest)


@pytest.mark.parametrize("options", REFINEMENTS, ids=lambda o: ",".join(o))
def test_refinement_keywords_equal_the_core(pipe, random_model, photos, options):
    for photo in photos:
        expected = core_output(random_model, photo, return_mask=True, **options)
        assert np.array_equal(as_int(pipe(photo, return_mask=True, **options)), as_int(expected))
    plain = as_int(pipe(photos[0], return_mask=True))
    assert not np.array_equal(as_int(pipe(photos[0], return_mask=True, **options)), plain), "it did something"


def test_threshold_binarises_and_cutout_alpha_follows(pipe, photos):
    mask = as_int(pipe(photos[0], return_mask=True, threshold=0.5))
    assert set(np.unique(mask)) == {0, 255}
    cutout = np.asarray(pipe(photos[0], threshold=0.5))
    assert np.array_equal(cutout[..., 3], mask) and np.array_equal(cutout[..., :3], photos[0])


def test_estimate_foreground_equals_the_core(pipe, random_model, photos):
    photo = photos[0]
    for keywords in ({}, {"background": "#00ff00"}, {"feather": 1.0}):
        expected = as_int(core_output(random_model, photo, estimate_foreground=True, **keywords))
        got = as_int(pipe(photo, estimate_foreground=True, **keywords))
        assert np.array_equal(got, expected), keywords
    assert not np.array_equal(as_int(pipe(photo, estimate_foreground=True))[..., :3], photo), "colours changed"


def test_refinement_in_batches_equals_one_at_a_time(pipe, photos):
    options = {"threshold": 0.4, "keep_largest": True, "estimate_foreground": True}
    single = [as_int(pipe(photo, **options)) for photo in photos]
    batched = pipe(photos, batch_size=2, **options)
    assert len(batched) == len(single) == len(photos)
    for got, expected in zip(batched, single):
        # Batching changes masks by float rounding only; a pixel at the threshold may flip.
        assert (np.abs(as_int(got)[..., 3] - expected[..., 3]) > 1).mean() < 0.01


def test_keywords_given_when_made_and_when_called_combine(checkpoint_dir, random_model, photos):
    made = load_pipeline(checkpoint_dir, device="cpu", dtype="float32", model_input_size=SMALL_INPUT,
                         threshold=0.5, return_mask=True)
    expected = core_output(random_model, photos[1], return_mask=True, threshold=0.5, invert=True)
    assert np.array_equal(as_int(made(photos[1], invert=True)), as_int(expected))
    assert np.array_equal(as_int(made(photos[1], threshold="0.5", invert="true")), as_int(expected)), \
        "strings are converted as by Refinement.from_options"


@pytest.mark.parametrize("keywords,message", [
    ({"feather": -1}, "feather must be"), ({"threshold": 1.0}, "threshold must be in"),
    ({"grow": 1.5}, "grow must be a whole number"), ({"fill_holes": "maybe"}, "fill_holes must be true or false"),
    ({"min_area": 2}, "min_area must be"), ({"estimate_foreground": "yes"}, "estimate_foreground must be"),
    ({"levels": (0.9, 0.1)}, "levels must be two numbers"), ({"levels": "0.5"}, "levels must be two numbers"),
])
def test_bad_refinement_values_fail_before_any_image_is_read(pipe, monkeypatch, keywords, message):
    monkeypatch.setattr(pipe, "preprocess", lambda *a, **k: pytest.fail("preprocess ran"))
    with pytest.raises(OptionError, match=message):
        pipe("whatever.png", **keywords)


def test_unknown_keyword_is_a_clear_error(pipe, photos):
    with pytest.raises(TypeError, match="unexpected keyword argument.*return_masks.*accepts return_mask"):
        pipe(photos[0], return_masks=True)
    with pytest.raises(TypeError, match="keep_biggest.*accepts .*estimate_foreground, levels, threshold, fill_holes, "
                                        "keep_largest, min_area, grow, feather, invert"):
        pipe(photos[0], keep_biggest=True)
    with pytest.raises(TypeError, match="dtype and device are chosen when the pipeline is made"):
        pipe(photos[0], dtype=torch.float16)


@pytest.mark.parametrize("size", [(0, 64), (64,), "big", (64.5, 64), (-1, 3), True])
def test_bad_model_input_size_is_a_clear_error(pipe, photos, size):
    with pytest.raises(InputError, match="model_input_size must"):
        pipe(photos[0], model_input_size=size)


def test_bad_background_fails_before_any_work(pipe, monkeypatch):
    monkeypatch.setattr(pipe, "preprocess", lambda *a, **k: pytest.fail("preprocess ran"))
    with pytest.raises(InputError, match="not a hex colour"):
        pipe("whatever.png", background="#12345")


def test_unreadable_images_are_clear_errors(pipe, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"missing\.png: no such file"):
        pipe(str(tmp_path / "missing.png"))
    with pytest.raises(InputError, match=r"broken\.png: not an image file"):
        pipe(str(broken))
    with pytest.raises(InputError, match="expected shape"):
        pipe(np.zeros((3, 10, 10), np.float32))
    with pytest.raises(InputError, match="unsupported input type"):
        pipe({"not": "an image"})


class _ImageServer(http.server.BaseHTTPRequestHandler):
    png = b""

    def do_GET(self):
        status, body = (200, self.png) if self.path == "/photo.png" else (404, b"nope")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_server(monkeypatch, photos):
    """A loopback HTTP server with /photo.png; the suite's offline guard is lifted for it."""
    from huggingface_hub import constants

    buffer = io.BytesIO()
    Image.fromarray(photos[2]).save(buffer, format="PNG")
    handler = type("Handler", (_ImageServer,), {"png": buffer.getvalue()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_urls_are_downloaded_and_http_errors_are_clear(pipe, photos, image_server):
    mask = pipe(f"{image_server}/photo.png", return_mask=True, timeout=10)
    assert np.array_equal(as_int(mask), as_int(pipe(photos[2], return_mask=True)))
    with pytest.raises(InputError, match=r"/missing\.png: download failed .*404"):
        pipe(f"{image_server}/missing.png")
