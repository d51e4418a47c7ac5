"""Generic network conditions (nets/conditions.py): labels, zero-init scalars, map channels, CFG dropout."""

import json
import math

import pytest
import torch

from fewstep import io, nets
from fewstep.nets import conditions as C
from fewstep.train.loop import drop_labels

SMALL = dict(channels=16, channel_mult=(1, 2), num_blocks=1)
W = {"kind": "scalar"}
INPAINT = {"kind": "map", "channels": 2}


def _perturb(net, seed=0, only=None):
    """Move parameters off their (zero) init so every path shows in the output."""
    g = torch.Generator().manual_seed(seed)
    for n, p in net.named_parameters():
        if only is None or n.startswith(only):
            p.data.add_(0.1 * torch.randn(p.shape, generator=g))
    return net


def _pair(conds, cls=nets.UNet, **kw):
    """A trained-looking net without `conds` and the same net given them (weights carried by widen_state)."""
    torch.manual_seed(0)
    base = _perturb(cls(**kw))
    torch.manual_seed(0)
    wide = cls(**kw, conds=conds)
    wide.load_state_dict(C.widen_state(base.state_dict(), wide))
    return base.eval(), wide.eval()


def test_num_classes_is_short_for_a_label_condition_and_keys_are_unchanged():
    a = nets.UNet(num_classes=10, **SMALL)
    b = nets.UNet(conds={"y": {"kind": "label", "num_classes": 10}}, **SMALL)
    assert a.conds == b.conds == C.parse(None, 10) and b.num_classes == 10
    assert list(a.state_dict()) == list(b.state_dict()) and "label_embed.embed.weight" in b.state_dict()
    assert list(nets.UNet(**SMALL).state_dict()) == [k for k in a.state_dict() if not k.startswith("label_embed")]


def test_fresh_conditions_draw_no_random_numbers():
    torch.manual_seed(0)
    a = nets.UNet(num_classes=3, **SMALL)
    torch.manual_seed(0)
    b = nets.UNet(num_classes=3, conds={"w": W, "inpaint": INPAINT}, **SMALL)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k != "inp.weight")
    assert torch.equal(sb["inp.weight"][:, :1], sa["inp.weight"]) and not sb["inp.weight"][:, 1:].any()
    assert sorted(set(sb) - set(sa)) == ["cond_embed.w.bias", "cond_embed.w.null", "cond_embed.w.weight"]
    assert all(not v.any() for k, v in sb.items() if k.startswith("cond_embed"))


@pytest.mark.parametrize("cls,kw,shape", [(nets.UNet, dict(num_classes=3, **SMALL), (3, 1, 8, 8)),
                                          (nets.MLP, dict(dim=5, hidden=32, depth=2, num_classes=3), (3, 5))])
def test_a_fresh_scalar_input_leaves_the_output_bitwise_unchanged(cls, kw, shape):
    base, wide = _pair({"w": W}, cls, **kw)
    x, c, y = torch.randn(shape), torch.randn(3), torch.tensor([0, 2, 3])
    ref = base(x, c, y)
    for w in (None, 0.0, 7.5, torch.tensor([1.0, 15.0, -3.0]), torch.tensor([math.nan, 2.0, 1e4])):
        assert torch.equal(wide(x, c, {"y": y, "w": w}), ref)
    assert torch.equal(wide(x, c, y), ref) and torch.equal(wide(x, c), base(x, c))


def test_a_trained_scalar_matters_and_nan_is_the_learned_null():
    _, wide = _pair({"w": W}, num_classes=3, **SMALL)
    _perturb(wide, seed=1, only="cond_embed")
    x, c, y = torch.randn(2, 1, 8, 8), torch.randn(2), torch.tensor([1, 1])
    assert not torch.allclose(wide(x, c, {"y": y, "w": 2.0}), wide(x, c, {"y": y, "w": 8.0}))
    nan = torch.full((2,), math.nan)
    assert torch.equal(wide(x, c, {"y": y, "w": nan}), wide(x, c, {"y": y}))
    assert not torch.allclose(wide(x, c, {"y": y, "w": 0.0}), wide(x, c, {"y": y}))


def test_scalar_features_are_lcm_sinusoids():
    emb = C.ScalarEmbed(8, dim=4, scale=1000.0)
    w = torch.tensor([0.003, 5.0])
    ref = torch.cat([torch.cos(1000 * w[:, None] * torch.tensor([1.0, 1e-4])),
                     torch.sin(1000 * w[:, None] * torch.tensor([1.0, 1e-4]))], 1)
    assert torch.allclose(emb.features(w), ref, atol=1e-4)


@pytest.mark.parametrize("cls,kw,x_shape,m_shape", [
    (nets.UNet, dict(num_classes=3, **SMALL), (3, 1, 8, 8), (3, 2, 8, 8)),
    (nets.MLP, dict(dim=5, hidden=32, depth=2), (3, 5), (3, 2)),
])
def test_widened_map_input_keeps_a_trained_nets_output(cls, kw, x_shape, m_shape):
    base, wide = _pair({"inpaint": INPAINT}, cls, **kw)
    assert wide.inp.weight.shape[1] == base.inp.weight.shape[1] + 2
    x, c = torch.randn(x_shape), torch.randn(3)
    ref = base(x, c)
    out = wide(x, c, {"inpaint": torch.randn(m_shape)})
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6) and not torch.equal(ref, torch.zeros_like(ref))
    assert torch.equal(wide(x, c, {}), wide(x, c, {"inpaint": torch.zeros(m_shape)}))  # missing map = zeros
    _perturb(wide, seed=2, only="inp")
    one = torch.ones(m_shape)
    assert not torch.allclose(wide(x, c, {"inpaint": one}), wide(x, c, {"inpaint": -one}))


def test_widen_in_takes_a_layer_and_widen_state_takes_a_denoiser_prefix():
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    wide = C.widen_in(conv, 3)
    assert wide.in_channels == 4 and torch.equal(wide.weight[:, :1], conv.weight) and not wide.weight[:, 1:].any()
    assert C.widen_in(conv, 0) is conv
    state = {f"net.{k}": v for k, v in nets.UNet(**SMALL).state_dict().items()}
    wide_net = nets.UNet(conds={"w": W, "m": INPAINT}, **SMALL)
    target = {f"net.{k}": v for k, v in wide_net.state_dict().items()}
    out = C.widen_state(state, torch.nn.ModuleDict({"net": wide_net}))
    assert out.keys() == target.keys() and all(out[k].shape == target[k].shape for k in out)


def test_low_res_map_needs_a_declared_resize():
    net = _perturb(nets.UNet(conds={"lowres": {"kind": "map", "channels": 1, "resize": "nearest"}}, **SMALL))
    x, c, lo = torch.randn(2, 1, 8, 8), torch.randn(2), torch.randn(2, 1, 4, 4)
    up = lo.repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.equal(net(x, c, {"lowres": lo}), net(x, c, {"lowres": up}))
    strict = nets.UNet(conds={"lowres": {"kind": "map", "channels": 1}}, **SMALL)
    with pytest.raises(ValueError, match="resize"):
        strict(x, c, {"lowres": lo})


def test_drop_cond_on_labels_is_drop_labels_bit_for_bit():
    y = torch.randint(0, 10, (257,), generator=torch.Generator().manual_seed(3))
    spec = {"y": {"kind": "label", "num_classes": 10}}
    for p in (0.0, 0.1, 0.5, 1.0):
        g1, g2, g3 = (torch.Generator().manual_seed(7) for _ in range(3))
        ref = drop_labels(y, p, 10, g1)
        assert torch.equal(C.drop_cond(y, p, spec, g2), ref)
        assert torch.equal(C.drop_cond({"y": y}, p, spec, g3)["y"], ref)
        after = torch.rand(5, generator=g1)  # the same draws were consumed
        assert torch.equal(torch.rand(5, generator=g2), after) and torch.equal(torch.rand(5, generator=g3), after)


def test_drop_cond_nulls_every_condition_of_the_same_samples():
    spec = C.parse({"w": W, "inpaint": INPAINT}, num_classes=3)
    B = 64
    cond = {"y": torch.randint(0, 3, (B,)), "w": torch.rand(B) + 1, "inpaint": torch.randn(B, 2, 8, 8) + 5}
    out = C.drop_cond(cond, 0.5, spec, torch.Generator().manual_seed(0))
    d = out["y"] == 3
    assert 0 < d.sum() < B and torch.equal(d, out["w"].isnan())
    assert torch.equal(d, (out["inpaint"] == 0).flatten(1).all(1))
    assert torch.equal(out["y"][~d], cond["y"][~d]) and torch.equal(out["w"][~d], cond["w"][~d])
    assert torch.equal(out["inpaint"][~d], cond["inpaint"][~d])
    only = C.drop_cond(cond, 1.0, spec, torch.Generator().manual_seed(0), keys=["y"])
    assert (only["y"] == 3).all() and torch.equal(only["w"], cond["w"])
    # a dropped sample is exactly the unconditional one
    net = _perturb(nets.UNet(conds=spec, **SMALL)).eval()
    x, c = torch.randn(B, 1, 8, 8), torch.randn(B)
    assert torch.allclose(net(x, c, out)[d], net(x, c, None)[d], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no label condition"):
        C.drop_cond(cond["y"], 0.5, {"w": W}, torch.Generator())
    with pytest.raises(ValueError, match="cannot drop"):
        C.drop_cond(cond, 0.5, spec, torch.Generator(), keys=["z"])


def test_conds_round_trip_through_json_and_a_checkpoint(tmp_path):
    kw = json.loads(json.dumps({"in_channels": 1, **SMALL, "num_classes": 3, "conds": {"w": W, "m": INPAINT}}))
    net = _perturb(nets.get("unet", **kw))
    cfg = {"net": {"class": "unet", "kwargs": kw}, "precond": {"name": "edm", "kwargs": {}},
           "sigma_min": 0.002, "sigma_max": 80.0, "shape": [1, 8, 8]}
    den = io.build_denoiser(cfg)
    den.net.load_state_dict(net.state_dict())
    io.save_model(tmp_path / "m.safetensors", den, cfg)
    back = io.load_model(tmp_path / "m.safetensors")
    x, cond = torch.randn(2, 1, 8, 8), {"y": torch.tensor([0, 3]), "w": 4.0, "m": torch.randn(2, 2, 8, 8)}
    assert torch.equal(back(x, 1.0, cond), den(x, 1.0, cond))


def test_bad_conditions_get_clear_errors():
    with pytest.raises(ValueError, match="kind"):
        C.parse({"w": {"kind": "vector"}})
    with pytest.raises(ValueError, match="channels"):
        C.parse({"m": {"kind": "map"}})
    with pytest.raises(ValueError, match="unknown keys"):
        C.parse({"w": {"kind": "scalar", "dims": 3}})
    with pytest.raises(ValueError, match="disagrees"):
        C.parse({"y": {"kind": "label", "num_classes": 4}}, num_classes=3)
    net = nets.UNet(num_classes=2, conds={"w": W, "m": INPAINT}, **SMALL)
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2)
    with pytest.raises(ValueError, match="no conditions"):
        net(x, c, {"z": 1.0})
    with pytest.raises(ValueError, match="map condition 'm'"):
        net(x, c, {"m": torch.randn(2, 3, 8, 8)})
    with pytest.raises(ValueError, match="scalar condition"):
        net(x, c, {"w": torch.ones(3)})
    with pytest.raises(ValueError, match="num_classes=0"):
        nets.UNet(conds={"w": W}, **SMALL)(x, c, torch.tensor([0, 1]))
