"""Shapes, parameter counts, conditioning and bad input of the fewstep networks."""

import json

import pytest
import torch

from fewstep import nets
from fewstep.nets.layers import NoiseEmbedding


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (7, 3), (16, 2)])
def test_unet_shapes_any_size_and_channels(size, channels):
    net = nets.UNet(in_channels=channels, channels=16, channel_mult=(1, 2), num_blocks=1, num_classes=4)
    x = torch.randn(3, channels, size, size)
    assert net(x, torch.randn(3)).shape == x.shape
    assert net(x, torch.randn(3), torch.tensor([0, 3, 4])).shape == x.shape


def test_unet_parameter_count_in_range_for_8x8_and_28x28():
    for kw in (dict(channels=32, channel_mult=(1, 2, 2)), dict(channels=48, channel_mult=(1, 2))):
        assert 1_000_000 <= nets.count_params(nets.UNet(num_classes=10, **kw)) <= 3_000_000


def test_unet_modules_identifiable_and_output_zero_at_init():
    net = nets.UNet(channels=16, channel_mult=(1, 2), num_blocks=1)
    names = [n for n, _ in net.named_modules()]
    assert "time_embed" in names and sum(n.endswith("emb_proj") for n in names) >= 4
    # zero-initialised output layer: F = 0 at init, so D = c_skip x (EDM's init_zero)
    assert net(torch.randn(2, 1, 8, 8), torch.randn(2)).abs().max() == 0


def test_null_label_equals_cond_none_and_labels_matter():
    torch.manual_seed(0)
    net = nets.UNet(channels=16, channel_mult=(1, 2), num_blocks=1, num_classes=3)
    for p in net.parameters():  # move off the zero init so the labels can show
        p.data.add_(0.1 * torch.randn_like(p))
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2)
    assert torch.equal(net(x, c, None), net(x, c, torch.tensor([3, 3])))
    assert not torch.allclose(net(x, c, torch.tensor([0, 0])), net(x, c, torch.tensor([1, 1])))


def test_noise_embedding_is_sinusoidal():
    emb = NoiseEmbedding(8)
    c = torch.tensor([0.0, 0.7])
    out = emb(c)
    assert torch.allclose(out[:, :4], torch.cos(c[:, None] * emb.freqs)) and torch.allclose(out[0, 4:], torch.zeros(4))


def test_mlp_shapes_and_conditioning():
    net = nets.MLP(dim=5, hidden=32, depth=2, num_classes=2)
    x = torch.randn(4, 5)
    assert net(x, torch.randn(4), torch.tensor([0, 1, 2, 0])).shape == x.shape
    assert nets.count_params(nets.MLP(dim=2, hidden=64, depth=2)) > 0


def test_nets_registry_builds_from_json_kwargs():
    kw = json.loads(json.dumps({"in_channels": 1, "channels": 16, "channel_mult": [1, 2], "num_classes": 10}))
    assert isinstance(nets.get("unet", **kw), nets.UNet)
    assert nets.NETS["mlp"] is nets.MLP
    with pytest.raises(KeyError, match="known"):
        nets.get("resnet")


def test_bad_input_errors():
    unet = nets.UNet(channels=16, channel_mult=(1, 2), num_blocks=1, num_classes=2)
    with pytest.raises(ValueError, match="in_channels|shape"):
        unet(torch.randn(2, 3, 8, 8), torch.randn(2))
    with pytest.raises(ValueError, match="labels must lie"):
        unet(torch.randn(2, 1, 8, 8), torch.randn(2), torch.tensor([0, 5]))
    with pytest.raises(TypeError, match="LongTensor"):
        unet(torch.randn(2, 1, 8, 8), torch.randn(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_classes=0"):
        nets.MLP(dim=2)(torch.randn(2, 2), torch.randn(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[batch, 3\]"):
        nets.MLP(dim=3)(torch.randn(2, 2), torch.randn(2))
