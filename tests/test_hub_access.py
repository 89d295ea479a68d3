"""A Hub that cannot be reached (connection refused, silent, down): one quick, quiet, one-line error worded
for the front end at hand, the cache still used, nothing left behind. Simulated on 127.0.0.1, no waiting
for real timeouts."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from rmbg_core import DeviceError, HubAccessError, load_model
from rmbg_core.model.hub_probe import PROBE_SECONDS, probe_seconds
from rmbg_core.model.weights import LOCAL_ADVICE, download_from_hub, locate_checkpoint

from conftest import REPO
from fake_hub import FakeHub, dead_endpoint, point_hub_at, serve

# What the Hub client's retries cost when nothing is cached: 1+2+4+8+8 s of back-off (and up to 60 s per
# try against a silent server). A call still running after this long is retrying.
RETRYING = 15.0
# The probe's bound plus room for a loaded test machine.
QUICK = PROBE_SECONDS + 2.0
UNREACHABLE = r"briaai/RMBG-1.4: the Hugging Face Hub at {url} is unreachable \(.+\) and no copy is cached"


def timed(call) -> tuple[float, BaseException | None]:
    """Run ``call`` in a thread; its duration and exception. Fails if it is still running after RETRYING s."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    start = time.perf_counter()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(RETRYING)
    assert outcome, f"still running after {RETRYING:g} s: the Hub client is retrying"
    return time.perf_counter() - start, outcome[0]


def user_env(tmp_path, endpoint: str) -> dict[str, str]:
    """A child process's environment as a user's: the suite's offline and no-telemetry switches off (with
    telemetry on, huggingface_hub 2.x fetches an agent registry on its first request), the Hub at ``endpoint``."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")}
    return dict(env, PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=endpoint)


def files_under(folder) -> list:
    return sorted(folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("kind", ["refused", "silent", "down"])
def test_unreachable_hub_is_one_quick_quiet_error(kind, monkeypatch, tmp_path, capfd):
    """Refused, never answering or answering 503: the Python API fails within the probe's bound with its
    own advice, the Hub client prints nothing (no retry lines) and the cache folder stays empty."""
    cache = tmp_path / "cache"
    hub = FakeHub()
    hub.down = True
    with (serve(hub) if kind == "down" else dead_endpoint(kind)) as where:
        url = where.url if kind == "down" else where
        point_hub_at(monkeypatch, url)
        seconds, error = timed(lambda: load_model("briaai/RMBG-1.4", device="cpu", cache_dir=cache))
    assert isinstance(error, HubAccessError), error
    assert seconds < QUICK
    message = str(error)
    assert message.endswith(f"(download it once while online); {LOCAL_ADVICE}")
    assert error.problem.startswith("briaai/RMBG-1.4: the Hugging Face Hub at ")
    assert re.match(UNREACHABLE.format(url=re.escape(url)), message)
    assert "\n" not in message and "--model" not in message
    assert capfd.readouterr().err == ""
    assert files_under(cache) == []
    if kind == "down":
        assert hub.requests == [("HEAD", "/", None)]  # the probe only, never the client's retries


def test_an_unreachable_hub_still_serves_the_cached_copy(monkeypatch, checkpoint_file, tmp_path):
    """The Hub cache (revision included) and a ``local_dir`` download (ComfyUI's models/rmbg) are found."""
    cache = tmp_path / "cache"
    hub = FakeHub()
    hub.files[("acme/rmbg", "v1", "model.safetensors")] = checkpoint_file.read_bytes()
    with serve(hub):
        point_hub_at(monkeypatch, hub.url)
        cached = locate_checkpoint("acme/rmbg", revision="v1", cache_dir=cache)
    local = tmp_path / "models" / "RMBG-1.4"
    local.mkdir(parents=True)
    (local / "model.pth").write_bytes(b"an earlier download")
    with dead_endpoint("silent") as url:
        point_hub_at(monkeypatch, url)
        found: list = []
        seconds, error = timed(lambda: found.append(locate_checkpoint("acme/rmbg", revision="v1", cache_dir=cache)))
        assert error is None and found == [cached] and seconds < QUICK
        with pytest.raises(HubAccessError, match="no copy is cached"):
            locate_checkpoint("acme/rmbg", revision="v2", cache_dir=cache)
        assert download_from_hub("briaai/RMBG-1.4", local_dir=local) == local / "model.pth"


def test_a_fresh_process_learns_it_just_as_fast(tmp_path):
    """The first Hub call of a process (the CLI's case): nothing the Hub client fetches once per process
    (huggingface_hub 2.x's agent registry, 3 s against a silent server) may add to the probe's bound."""
    code = ("import time, rmbg_core.model.weights as weights\n"
            "start = time.perf_counter()\n"
            "try:\n    weights.locate_checkpoint('briaai/RMBG-1.4')\n"
            "except weights.HubAccessError:\n    print(time.perf_counter() - start)\n")
    with dead_endpoint("silent") as url:
        result = subprocess.run([sys.executable, "-c", code], env=user_env(tmp_path, url), capture_output=True,
                                text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    assert float(result.stdout) < QUICK


def test_offline_mode_sends_no_probe(monkeypatch, tmp_path):
    import huggingface_hub.utils

    def no_network():
        raise AssertionError("offline mode must not touch the network")

    monkeypatch.setattr(huggingface_hub.utils, "get_session", no_network)
    with pytest.raises(HubAccessError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\)"):
        locate_checkpoint("briaai/RMBG-1.4", cache_dir=tmp_path)
    with pytest.raises(HubAccessError, match=r"offline mode is on \(local_files_only\)"):
        locate_checkpoint("briaai/RMBG-1.4", cache_dir=tmp_path, local_files_only=True)


def test_probe_bound_is_two_seconds_unless_hf_hub_etag_timeout_is_set(monkeypatch):
    from huggingface_hub import constants

    assert probe_seconds() == PROBE_SECONDS == 2.0
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 30)
    assert probe_seconds() == 30.0


def test_errors_with_front_end_advice_survive_pickling():
    """Their message is built from parts: a round trip (multiprocessing, Ray) must not add the advice twice."""
    for error in (HubAccessError("repo: no copy", LOCAL_ADVICE), HubAccessError("plain"),
                  DeviceError("device 'cuda' requested", "device", ("cpu", "auto"))):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and copy.problem == error.problem


@pytest.mark.parametrize("command,kind", [("remove", "refused"), ("remove", "silent"), ("export", "refused")])
def test_cli_says_pass_model_on_one_line_and_leaves_nothing(command, kind, tmp_path):
    """``rmbg remove``/``rmbg export`` without --model and no Hub: exit 2, exactly one stderr line that names
    ``--model PATH`` (not the Python API's words), no output folder, nothing in the Hub cache."""
    photo = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(photo)
    home, out = tmp_path / "hf-home", tmp_path / "out"
    args = [str(photo), "-o", str(out)] if command == "remove" else [str(out)]
    with dead_endpoint(kind) as url:
        result = subprocess.run([sys.executable, "-m", "rmbg_core", command, *args], cwd=tmp_path,
                                env=user_env(tmp_path, url), capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rmbg: error: briaai/RMBG-1.4: the Hugging Face Hub at {url} is unreachable")
    assert lines[0].endswith("no copy is cached (download it once while online); "
                             "or pass --model PATH (a local checkpoint file or folder)")
    assert not out.exists() and files_under(home) == []
