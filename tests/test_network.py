"""The IS-Net architecture: checkpoint key layout, output shapes, side outputs."""

import json

import pytest
import torch

from rmbg_core.network import ISNet, ResidualUBlock


def test_keys_and_shapes_match_rmbg_checkpoint(fixture_dir):
    expected = json.loads((fixture_dir / "state_dict_shapes.json").read_text())
    ours = {key: list(value.shape) for key, value in ISNet().state_dict().items()}
    assert ours == expected


def test_parameter_count_is_rmbg_14():
    # RMBG-1.4 is the 44.0 M-parameter IS-Net; a wrong block layout changes this immediately.
    assert sum(p.numel() for p in ISNet().parameters()) == 44_046_790


@pytest.mark.parametrize("height,dilated", [(7, False), (6, False), (5, False), (4, False), (4, True)])
def test_residual_u_block_keeps_size(height, dilated):
    block = ResidualUBlock(height, 8, 4, 6, dilated).eval()
    with torch.no_grad():
        out = block(torch.randn(1, 8, 37, 29))
    assert out.shape == (1, 6, 37, 29)


def test_forward_main_map_and_side_outputs_agree():
    torch.manual_seed(0)
    net = ISNet().eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        main = net(x)
        sides = net(x, side_outputs=True)
    assert main.shape == (2, 1, 96, 64)
    assert len(sides) == 6 and all(s.shape == (2, 1, 96, 64) for s in sides)
    torch.testing.assert_close(main, sides[0])
    assert float(main.min()) >= 0.0 and float(main.max()) <= 1.0
