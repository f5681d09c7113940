"""The object tokenizer: peaks -> detections ordered left to right, places, tokens and their mask."""

from __future__ import annotations

import torch

from pixellm_ros.model.object_tokens import ObjectTokenizer, fourier_features, sample_cells


def _tokenizer(max_objects: int = 4) -> ObjectTokenizer:
    torch.manual_seed(0)
    return ObjectTokenizer(in_channels=(8, 16, 32), width=16, num_classes=3, embed_dim=12, attributes=(3, 2),
                           hidden_size=24, max_objects=max_objects, threshold=0.3).eval()


def test_sample_cells_reads_a_cell_at_its_centre() -> None:
    fmap = torch.arange(2 * 4 * 5, dtype=torch.float32).view(1, 2, 4, 5)
    centres = torch.tensor([[[(3 + 0.5) * 8, (1 + 0.5) * 8], [(0 + 0.5) * 8, (2 + 0.5) * 8]]])
    out = sample_cells(fmap, centres, 8)
    torch.testing.assert_close(out[0], fmap[0, :, [1, 2], [3, 0]].t())


def test_detections_are_the_peaks_above_threshold_left_to_right() -> None:
    tok = _tokenizer(max_objects=4)
    heat = torch.full((1, 3, 10, 10), -9.0)
    heat[0, 2, 5, 7] = 3.0  # right
    heat[0, 0, 2, 1] = 2.0  # left
    heat[0, 1, 8, 4] = 1.0  # middle
    heat[0, 1, 8, 5] = 0.5  # beside the middle one: not a local maximum
    box = torch.zeros(1, 3, 10, 10)
    box[0, 2] = 0.0  # log radius 0 -> radius one cell
    det = tok.detect(heat, box, torch.randn(1, 12, 10, 10))
    assert det.valid.tolist() == [[True, True, True, False]]
    xs = det.centres[0, :3, 0].tolist()
    assert xs == sorted(xs) == [(1 + 0.5) * 8, (4 + 0.5) * 8, (7 + 0.5) * 8]
    assert det.classes[0, :3].tolist() == [0, 1, 2]
    torch.testing.assert_close(det.radii[0, :3], torch.full((3,), 8.0))
    assert torch.allclose(det.attributes[0, :, :3].sum(-1), torch.ones(4))  # one softmax per group
    assert torch.allclose(det.attributes[0, :, 3:].sum(-1), torch.ones(4))


def test_places_are_relative_to_the_unpadded_image_and_tokens_have_the_llm_width() -> None:
    tok = _tokenizer()
    torch.set_grad_enabled(False)
    maps = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)]
    tokens, mask, decoder_features, det = tok(maps, [(128, 128), (64, 128)])
    assert tokens.shape == (2, 4, 24) and mask.shape == (2, 4) and mask.dtype == torch.bool
    assert [tuple(f.shape) for f in decoder_features] == [(2, 16, 8, 8), (2, 16, 16, 16)]
    places = tok.places(det, [(128, 128), (64, 128)])
    assert float(places.min()) >= 0.0 and float(places.max()) <= 1.0
    x_px = det.centres[1, :, 0] / 128
    torch.testing.assert_close(places[1, :, 0], x_px.clamp(0, 1))
    torch.set_grad_enabled(True)


def test_fourier_features_shape_and_range() -> None:
    out = fourier_features(torch.rand(5, 3), bands=4)
    assert out.shape == (5, 3 * 2 * 4) and float(out.abs().max()) <= 1.0
