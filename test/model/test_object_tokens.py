"""The object tokenizer: peaks -> detections ordered left to right, places, tokens and their mask."""

from __future__ import annotations

import torch

import pytest

from pixellm_ros.model.object_tokens import (
    ObjectTokenizer, duplicates, fourier_features, nearest_other, order_slots, sample_cells,
)


def _tokenizer(max_objects: int = 4, duplicate_radius: float = 0.0) -> ObjectTokenizer:
    torch.manual_seed(0)
    return ObjectTokenizer(in_channels=(8, 16, 32), width=16, num_classes=3, embed_dim=12, attributes=(3, 2),
                           hidden_size=24, max_objects=max_objects, threshold=0.3,
                           duplicate_radius=duplicate_radius).eval()


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


def test_a_duplicate_is_a_later_detection_within_the_radius_of_a_valid_earlier_one() -> None:
    centres = torch.tensor([[[50.0, 50.0], [51.0, 50.0], [80.0, 50.0], [50.0, 56.0]]])
    radii = torch.tensor([[20.0, 10.0, 20.0, 10.0]])
    valid = torch.tensor([[True, True, True, True]])
    # 1 px from the first (0.05 of its 20 px radius): a duplicate; 30 px away: not; 6 px (0.3): not at 0.1
    assert duplicates(centres, radii, valid, 0.1).tolist() == [[False, True, False, False]]
    assert duplicates(centres, radii, valid, 0.5).tolist() == [[False, True, False, True]]
    # an invalid (below-threshold) detection hides nothing
    assert duplicates(centres, radii, torch.tensor([[False, True, True, True]]), 0.1).tolist() == [[False] * 4]


def test_one_object_peaking_in_two_class_maps_is_one_detection_with_a_duplicate_radius() -> None:
    heat = torch.full((1, 3, 10, 10), -9.0)
    heat[0, 0, 4, 6] = 3.0  # an object ...
    heat[0, 2, 4, 6] = 1.0  # ... peaking in a second class's map at the same cell
    heat[0, 1, 4, 2] = 2.0  # another object
    box = torch.zeros(1, 3, 10, 10)
    kept = _tokenizer(duplicate_radius=0.1).detect(heat, box, torch.randn(1, 12, 10, 10))
    assert kept.valid.tolist() == [[True, True, False, False]]
    assert kept.classes[0, :2].tolist() == [1, 0]  # left to right; the stronger peak of the two stays
    both = _tokenizer().detect(heat, box, torch.randn(1, 12, 10, 10))
    assert both.valid.tolist() == [[True, True, True, False]]


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


def _ring_scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One object at cell (5, 5), radius 3 cells, whose centre cell (its hole) reads attribute 0
    weakly and whose body (the cells 1-3 cells away) reads attribute 1 strongly."""
    heat = torch.full((1, 3, 12, 12), -9.0)
    heat[0, 0, 5, 5] = 3.0
    box = torch.zeros(1, 3, 12, 12)
    box[0, 2] = float(torch.tensor(3.0).log())  # radius 3 cells = 24 px
    embedding = torch.zeros(1, 12, 12, 12)
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    ring = ((ys - 5) ** 2 + (xs - 5) ** 2).sqrt()
    embedding[0, 1][(ring >= 1) & (ring <= 3.5)] = 10.0  # the body: attribute 1
    embedding[0, 0, 5, 5] = 2.0  # the hole: attribute 0, weakly
    return heat, box, embedding


def _attribute_reader(circle: float) -> ObjectTokenizer:
    tok = ObjectTokenizer(in_channels=(8, 16, 32), width=16, num_classes=3, embed_dim=12, attributes=(3, 2),
                          hidden_size=24, max_objects=2, threshold=0.3, attribute_circle=circle).eval()
    with torch.no_grad():  # group 0 reads embedding channels 0-2 as its logits; group 1 is flat
        tok.attributes.linear.weight.zero_()
        tok.attributes.linear.bias.zero_()
        tok.attributes.linear.weight[:3, :3] = torch.eye(3)
    return tok


def test_attributes_are_read_at_the_centre_or_also_on_the_body() -> None:
    heat, box, embedding = _ring_scene()
    with torch.no_grad():
        at_centre = _attribute_reader(0.0).detect(heat, box, embedding)
        on_body = _attribute_reader(0.6).detect(heat, box, embedding)
    assert at_centre.valid.tolist() == on_body.valid.tolist() == [[True, False]]
    torch.testing.assert_close(on_body.centres, at_centre.centres)
    torch.testing.assert_close(on_body.embeddings, at_centre.embeddings)  # the token's embedding stays the centre's
    assert int(at_centre.attributes[0, 0, :3].argmax()) == 0  # the hole
    assert int(on_body.attributes[0, 0, :3].argmax()) == 1  # the body outvotes it

    # the reading is the mean of the centre's probabilities and those of 8 points 0.6 radii around it
    reader = _attribute_reader(0.6)
    centre, radius = on_body.centres[0, 0], float(on_body.radii[0, 0])
    angles = torch.arange(8) * (2 * torch.pi / 8)
    points = centre + 0.6 * radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
    with torch.no_grad():
        body = reader.attributes.probabilities(sample_cells(embedding, points[None], 8))[0].mean(0)
        middle = reader.attributes.probabilities(sample_cells(embedding, centre[None, None], 8))[0, 0]
    torch.testing.assert_close(on_body.attributes[0, 0], (body + middle) / 2)


def test_slots_are_ordered_left_to_right_or_nearest_first_with_empty_slots_last() -> None:
    # two images: three objects (slots left to right) and one; y grows towards the camera
    places = torch.tensor([[[0.1, 0.2, 0.1], [0.5, 0.9, 0.1], [0.8, 0.5, 0.1], [0.0, 0.0, 0.0]],
                           [[0.4, 0.3, 0.1], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    assert order_slots("left_to_right", places, valid).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert order_slots("front_to_back", places, valid).tolist() == [[1, 2, 0, 3], [0, 1, 2, 3]]
    with pytest.raises(ValueError, match="unknown object order"):
        order_slots("back_to_front", places, valid)


def test_each_slots_nearest_other_is_a_valid_slot_or_itself_when_alone() -> None:
    centres = torch.tensor([[[10.0, 10.0], [14.0, 10.0], [40.0, 10.0], [11.0, 10.0]],
                            [[10.0, 10.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    # the fourth slot (1 px from the first) is empty: it is nobody's neighbour
    assert nearest_other(centres, valid)[0, :3].tolist() == [1, 0, 1]
    assert nearest_other(centres, valid)[1, 0].item() == 0  # alone: itself
