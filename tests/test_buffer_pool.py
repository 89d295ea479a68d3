"""The activation buffer pool: reused across forward passes, never while anything still reads a buffer."""

import copy
import pickle
import threading

import pytest
import torch
import torch.nn.functional as F

import rmbg_core.cpu.buffer_pool as buffer_pool
from rmbg_core.cpu.buffer_pool import BufferPool
from rmbg_core.cpu.kernels import downsample, upsample_like


@pytest.fixture
def network(random_model, monkeypatch):
    """The folded random-weight network with every activation pooled (small inputs stay fast)."""
    monkeypatch.setattr(buffer_pool, "MIN_POOLED_BYTES", 0)
    random_model.network.buffer_pool.clear()
    yield random_model.network
    random_model.network.buffer_pool.clear()


def batch(seed=0, size=64, count=1):
    torch.manual_seed(seed)
    return torch.rand(count, 3, size, size) - 0.5


def unpooled(network, x):
    # Under autograd the pool is off; nothing requires grad, so the same fused kernels run.
    with torch.enable_grad():
        return network(x).detach()


def test_repeated_forward_reuses_its_buffers_and_computes_the_same(network):
    x = batch()
    with torch.inference_mode():
        first = network(x)
        held = network.buffer_pool.nbytes
        second = network(batch(1))
        third = network(x)
    assert held > 0
    assert network.buffer_pool.nbytes == held  # the second and third passes allocated nothing new
    assert torch.equal(first, third)
    torch.testing.assert_close(first, unpooled(network, x), atol=1e-6, rtol=1e-5)
    assert not torch.equal(first, second)


def test_default_threshold_pools_large_activations_only(random_model):
    pool = random_model.network.buffer_pool
    pool.clear()
    with torch.inference_mode():
        random_model.network(batch(size=64))
        assert pool.nbytes == 0  # every activation of a 64x64 input is under MIN_POOLED_BYTES
        x = batch(size=256)
        pooled = random_model.network(x)
    assert pool.nbytes > 0
    torch.testing.assert_close(pooled, unpooled(random_model.network, x), atol=1e-6, rtol=1e-5)
    pool.clear()


def test_a_buffer_is_not_handed_out_while_a_tensor_or_view_reads_it():
    pool = BufferPool()
    first = pool.take((1, 4, 8, 8), torch.float32)
    other = pool.take((1, 4, 8, 8), torch.float32)
    assert first.data_ptr() != other.data_ptr()
    view = first[:, :2]
    address = first.data_ptr()
    del first, other
    assert pool.take((1, 4, 8, 8), torch.float32).data_ptr() != address  # the view still reads it
    del view
    again = pool.take((1, 2, 8, 8), torch.float32)  # smaller requests fit in a free buffer too
    assert again.data_ptr() == address
    assert again.shape == (1, 2, 8, 8) and again.is_contiguous(memory_format=torch.channels_last)


def test_activations_captured_by_a_forward_hook_are_never_overwritten(network):
    captured, copies = [], []

    def keep(module, inputs, output):
        captured.append(output)
        copies.append(output.clone())

    # Stages, a block inside one (the last decoder block of a U-block, whose output is the residual sum's
    # operand) and a convolution inside a block.
    hooked = [network.stage1, network.stage2d, network.stage3.rebnconv1d, network.stage4.rebnconvin.conv_s1]
    handles = [module.register_forward_hook(keep) for module in hooked]
    try:
        with torch.inference_mode():
            network(batch())
            network(batch(1))
    finally:
        for handle in handles:
            handle.remove()
    assert len(captured) == 2 * len(hooked), "every hook ran on both forward passes"
    for kept, copied in zip(captured, copies):
        assert torch.equal(kept, copied)


def pooled_buffers(network):
    return [buffer for buffer, _ in network.buffer_pool._buffers]


def test_a_smaller_input_reuses_the_buffers_a_larger_one_drops_them(network):
    with torch.inference_mode():
        network(batch(size=96))
        alone = network.buffer_pool.nbytes
        network.buffer_pool.clear()
        network(batch(size=64))
        network(batch(size=96))
        assert network.buffer_pool.nbytes == alone, "a larger input starts afresh"
        held = pooled_buffers(network)
        small = network(batch(seed=1, size=64))
        network(batch(size=96))
        network(batch(seed=2, size=64))
    again = pooled_buffers(network)
    assert len(again) == len(held) and all(a is b for a, b in zip(again, held)), "smaller passes took no new memory"
    assert torch.equal(small, unpooled(network, batch(seed=1, size=64)))


def test_a_smaller_pass_keeps_none_of_the_buffers_it_adds():
    pool = BufferPool()
    with pool.active(torch.empty(2, 3, 8, 8)):
        busy = pool.take((1, 64, 64, 64), torch.float32)  # still read: not free for the next pass
    with pool.active(torch.empty(1, 3, 8, 8)):
        extra = pool.take((1, 64, 64, 64), torch.float32)
    assert extra.data_ptr() != busy.data_ptr() and pool.nbytes == busy.numel() * 4
    with pool.active(torch.empty(2, 3, 8, 8)):
        pool.take((1, 64, 64, 64), torch.float32)
    assert pool.nbytes == 2 * busy.numel() * 4, "a pass of the pool's own shape keeps what it adds"
    with pool.active(torch.empty(1, 3, 8, 8, dtype=torch.bfloat16)):
        pass
    assert pool.nbytes == 0, "another dtype starts afresh"


def test_release_gives_back_free_buffers(network, monkeypatch):
    with torch.inference_mode():
        network(batch())
    held = network.buffer_pool.nbytes
    assert network.buffer_pool.release(held) == 0  # under RELEASE_MIN_BYTES: nothing to make room for
    monkeypatch.setattr(buffer_pool, "RELEASE_MIN_BYTES", 0)
    dropped = network.buffer_pool.release(1)
    assert 1 <= dropped <= held and network.buffer_pool.nbytes == held - dropped
    assert network.buffer_pool.release(held) == held - dropped
    assert network.buffer_pool.nbytes == 0


def test_copies_and_pickles_start_with_an_empty_pool_of_their_own(network):
    with torch.inference_mode():
        expected = network(batch())
    twin = copy.deepcopy(network)
    assert twin.buffer_pool is not network.buffer_pool and twin.buffer_pool.nbytes == 0
    restored = pickle.loads(pickle.dumps(network))
    with torch.inference_mode():
        assert torch.equal(twin(batch()), expected)
        assert torch.equal(restored(batch()), expected)


def test_concurrent_forward_passes_on_one_network_do_not_share_buffers(network):
    inputs = [batch(seed) for seed in range(4)]
    with torch.inference_mode():
        expected = [network(x) for x in inputs]
    results = [[] for _ in inputs]
    errors = []

    def run(index):
        try:
            with torch.inference_mode():
                for _ in range(3):
                    results[index].append(network(inputs[index]))
        except BaseException as exc:  # re-raised below: a failing thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for got, want in zip(results, expected):
        assert len(got) == 3 and all(torch.equal(result, want) for result in got)


@pytest.mark.parametrize("size,pooled", [((32, 48), True), ((31, 48), False), ((32, 47), False)])
def test_pooled_max_pooling_and_upsampling_match_pytorch(size, pooled, monkeypatch):
    monkeypatch.setattr(buffer_pool, "MIN_POOLED_BYTES", 0)
    x = torch.randn(2, 5, *size).contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, 0] = float("nan")
    pool = BufferPool()
    with torch.inference_mode(), pool.active(x):
        halved = downsample(x)  # odd sizes (ceil mode) take F.max_pool2d
        upsampled = upsample_like(halved, x)
    expected = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
    torch.testing.assert_close(halved, expected, equal_nan=True)
    torch.testing.assert_close(upsampled, F.interpolate(expected, size=size, mode="bilinear", align_corners=False),
                               equal_nan=True)
    # The upsampled map is pooled in every case, the halved one only for even sizes.
    assert pool.nbytes == upsampled.numel() * 4 + (halved.numel() * 4 if pooled else 0)


def test_predict_can_give_its_buffers_back(network, random_model):
    images = torch.rand(3, 64, 64, 3, generator=torch.Generator().manual_seed(7))
    kept = random_model.predict(images, batch_size=2, input_size=(64, 64))
    assert network.buffer_pool.nbytes > 0  # the default keeps them for the next call
    given_back = random_model.predict(images, batch_size=2, input_size=(64, 64), keep_buffers=False)
    assert network.buffer_pool.nbytes == 0
    assert torch.equal(kept, given_back)


def test_cancelled_predict_gives_its_buffers_back_too(network, random_model):
    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        random_model.predict(torch.rand(4, 64, 64, 3), batch_size=2, input_size=(64, 64), callback=cancel,
                             keep_buffers=False)
    assert network.buffer_pool.nbytes == 0
