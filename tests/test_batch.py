"""iter_remove_background: order, per-item errors, batching, and I/O threads overlapping the model."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

import rmbg_core.batch as batch_module
from rmbg_core import InputError, OptionError, iter_remove_background, remove_background

WAIT = 30.0  # seconds a test waits for an event that a working pipeline sets at once


def photo(height, width, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def good_files(tmp_path):
    paths = []
    for i, (height, width) in enumerate([(30, 40), (25, 20), (33, 33), (20, 50)]):
        path = tmp_path / f"good{i}.png"
        photo(height, width, seed=i).save(path)
        paths.append(path)
    return paths


def test_results_come_in_input_order_with_errors_in_place(fast_model, good_files, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    pil_input = photo(21, 17, seed=9)
    sources = [good_files[0], empty, pil_input, b"garbage bytes", tmp_path / "missing.png", good_files[1],
               np.zeros((12, 14, 3), np.uint8), text, good_files[2]]
    results = list(iter_remove_background(sources, model=fast_model, return_mask=True, batch_size=2, workers=2))
    assert len(results) == len(sources)
    assert all(result.source is source for result, source in zip(results, sources))
    failed = {i: result.error for i, result in enumerate(results) if not result.ok}
    assert sorted(failed) == [1, 3, 4, 7]
    assert "empty.png: empty file" in failed[1]
    assert "<13 bytes>" in failed[3] and "not an image" in failed[3]
    assert "missing.png: no such file" in failed[4]
    assert "notes.jpg: not an image file" in failed[7]
    for i in (0, 2, 5, 6, 8):
        result = results[i]
        assert result.error is None and result.image.mode == "L"
        expected = remove_background(sources[i], model=fast_model, return_mask=True)
        assert result.image.size == expected.size
        diff = np.abs(np.asarray(result.image, dtype=int) - np.asarray(expected, dtype=int))
        assert diff.max() <= 1, "batched results equal one-at-a-time remove_background"


def test_output_kinds_match_remove_background(fast_model, good_files):
    for kwargs, mode in (({}, "RGBA"), ({"background": "#00ff00"}, "RGB"), ({"return_mask": True}, "L")):
        (result,) = iter_remove_background(good_files[:1], model=fast_model, **kwargs)
        expected = remove_background(good_files[0], model=fast_model, **kwargs)
        assert result.image.mode == mode == expected.mode
        assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_a_batch_of_mixed_sizes_is_one_predict_call(fast_model, good_files, monkeypatch):
    calls = []
    predict = fast_model.predict

    def counting(images, **kwargs):
        calls.append([tuple(image.shape) for image in images])
        return predict(images, **kwargs)

    monkeypatch.setattr(fast_model, "predict", counting)
    results = list(iter_remove_background(good_files, model=fast_model, return_mask=True, batch_size=3))
    assert [len(call) for call in calls] == [3, 1]
    assert calls[0] == [(30, 40, 3), (25, 20, 3), (33, 33, 3)]
    assert [result.image.size for result in results] == [(40, 30), (20, 25), (33, 33), (50, 20)]


def test_a_failing_batch_is_retried_one_by_one(fast_model, good_files, monkeypatch):
    predict = fast_model.predict

    def out_of_memory_on_square(images, **kwargs):
        if any(image.shape[0] == image.shape[1] for image in images):
            raise MemoryError
        return predict(images, **kwargs)

    monkeypatch.setattr(fast_model, "predict", out_of_memory_on_square)
    results = list(iter_remove_background(good_files, model=fast_model, batch_size=4))
    assert [result.ok for result in results] == [True, True, False, True]
    # in words every front end can show (the Python API, the CLI, the pipeline and ComfyUI all say batch size)
    assert results[2].error.endswith("good2.png: not enough memory for this image (try a smaller batch size, or the CPU)")


def test_sequential_mode_gives_the_same_results(fast_model, good_files, monkeypatch):
    threaded = list(iter_remove_background(good_files, model=fast_model, batch_size=2, workers=3))
    decoder_threads = set()
    read_image = batch_module.read_image

    def recording_read(source):
        decoder_threads.add(threading.current_thread().name)
        return read_image(source)

    monkeypatch.setattr(batch_module, "read_image", recording_read)
    inline = list(iter_remove_background(good_files, model=fast_model, batch_size=2, workers=0))
    assert len(threaded) == len(inline) == len(good_files)
    assert decoder_threads == {threading.current_thread().name}, "workers=0 decodes in the calling thread"
    assert all(result.ok for result in threaded + inline)
    for a, b in zip(threaded, inline):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_decoding_runs_ahead_while_the_model_works(fast_model, good_files, monkeypatch):
    """The first forward pass waits until the next image is being decoded: only a prefetching pipeline
    gets past it with the event set (a sequential one would decode nothing while predicting)."""
    decoding_second = threading.Event()
    decoder_threads = set()
    read_image = batch_module.read_image

    def recording_read(source):
        decoder_threads.add(threading.current_thread().name)
        if source == good_files[1]:
            decoding_second.set()
        return read_image(source)

    predict = fast_model.predict
    seen_during_first_predict = []

    def waiting_predict(images, **kwargs):
        if not seen_during_first_predict:
            seen_during_first_predict.append(decoding_second.wait(WAIT))
        return predict(images, **kwargs)

    monkeypatch.setattr(batch_module, "read_image", recording_read)
    monkeypatch.setattr(fast_model, "predict", waiting_predict)
    results = list(iter_remove_background(good_files, model=fast_model, workers=2))
    assert all(result.ok for result in results)
    assert seen_during_first_predict == [True]
    assert threading.current_thread().name not in decoder_threads


def test_rendering_overlaps_the_next_forward_pass(fast_model, good_files, monkeypatch):
    """Rendering image 0 waits until the model has started on image 1: it must run in a worker thread
    while the model goes on, not between forward passes."""
    second_predict_started = threading.Event()
    predict = fast_model.predict
    calls = []

    def recording_predict(images, **kwargs):
        calls.append(len(images))
        if len(calls) == 2:
            second_predict_started.set()
        return predict(images, **kwargs)

    render = batch_module.render
    overlapped = []

    def waiting_render(picture, mask, **kwargs):
        if not overlapped:
            overlapped.append(second_predict_started.wait(WAIT))
        return render(picture, mask, **kwargs)

    monkeypatch.setattr(fast_model, "predict", recording_predict)
    monkeypatch.setattr(batch_module, "render", waiting_render)
    results = list(iter_remove_background(good_files, model=fast_model, workers=2))
    assert all(result.ok for result in results)
    assert overlapped == [True]


def test_inputs_are_consumed_lazily_and_threads_end_on_close(fast_model, good_files):
    taken = []

    def sources():
        for i in range(40):
            taken.append(i)
            yield good_files[i % len(good_files)]

    results = iter_remove_background(sources(), model=fast_model, workers=2)
    first = next(results)
    assert first.ok and len(taken) <= 12, f"{len(taken)} inputs taken for one result"
    results.close()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("rmbg-io")]


def test_call_level_errors_raise_at_once(fast_model):
    with pytest.raises(InputError, match="not a hex colour"):
        iter_remove_background([], model=fast_model, background="greenish")
    assert list(iter_remove_background([], model=fast_model)) == []


@pytest.mark.parametrize("options,reason", [
    ({"batch_size": 0}, "batch_size must be 1 or more, got 0"),
    ({"batch_size": "2"}, "batch_size must be a whole number, got '2'"),
    ({"batch_size": 2.0}, "batch_size must be a whole number, got 2.0"),
    ({"workers": -1}, "workers must be 0 or more, got -1"),
    ({"workers": "1"}, "workers must be a whole number, got '1'"),
    ({"workers": None}, "workers must be a whole number, got None"),
])
def test_bad_batch_size_and_workers_are_option_errors_at_the_call(fast_model, options, reason):
    with pytest.raises(OptionError, match=reason):
        iter_remove_background([], model=fast_model, **options)


def test_one_check_for_counts_everywhere(fast_model, tmp_path, capsys):
    """The CLI, the model and make_executor refuse what iter_remove_background refuses, with its words."""
    from rmbg_core.cli.main import main

    with pytest.raises(OptionError, match="workers must be 0 or more, got -2"):
        batch_module.make_executor(-2)
    with pytest.raises(OptionError, match="batch_size must be 1 or more, got 0"):
        fast_model.predict(np.zeros((1, 8, 8, 3), np.uint8), batch_size=0)
    with pytest.raises(SystemExit):
        main(["remove", str(tmp_path), "-o", str(tmp_path / "out"), "--batch-size", "0"])
    assert "argument --batch-size: must be 1 or more, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "pil", "array", "tensor", "file"])
def test_one_image_is_one_input_not_an_iterable(fast_model, good_files, kind):
    """A path string is not iterated letter by letter, nor an (H, W, C) array row by row."""
    import torch

    path = good_files[0]
    single = {"str": str(path), "path": path, "bytes": path.read_bytes(), "pil": Image.open(path),
              "array": np.asarray(Image.open(path)), "tensor": torch.from_numpy(np.array(Image.open(path))),
              "file": open(path, "rb")}[kind]
    try:
        results = list(iter_remove_background(single, model=fast_model, return_mask=True, workers=0))
    finally:
        if kind == "file":
            single.close()
    assert len(results) == 1 and results[0].ok, results[0].error
    assert results[0].source is single and results[0].image.size == Image.open(path).size


def test_a_batch_array_is_its_frames(fast_model):
    frames = np.random.default_rng(5).integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    results = list(iter_remove_background(frames, model=fast_model, return_mask=True, workers=0))
    assert len(results) == 2 and all(result.ok and result.image.size == (24, 20) for result in results)
    with pytest.raises(InputError, match="images must be an image or an iterable of images, got int"):
        iter_remove_background(5, model=fast_model)


@pytest.mark.parametrize("workers,batch_size", [(0, 1), (0, 4), (2, 3)])
def test_a_failing_input_iterator_yields_what_it_gave_then_raises(fast_model, good_files, workers, batch_size):
    def sources():
        yield good_files[0]
        yield good_files[1]
        raise RuntimeError("the source broke")

    results = []
    with pytest.raises(RuntimeError, match="the source broke"):
        for result in iter_remove_background(sources(), model=fast_model, return_mask=True, workers=workers,
                                             batch_size=batch_size):
            results.append(result)
    assert [result.source for result in results] == good_files[:2]
    assert all(result.ok for result in results)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("rmbg-io")]
