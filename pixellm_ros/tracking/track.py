"""One track's state: an appearance template and where it is now.

The template is what the last answer showed of the object: its mask and the image's colours
under it, cropped (``mask`` (h, w) bool, ``colours`` (h, w, 3) uint8). ``transform`` (2, 3) maps
template pixels to the current frame; each frame the flow's similarity motion of the track's
visible pixels is composed onto it. The predicted shape on a frame is the template warped by it;
its VISIBLE mask is the part of that shape whose colours still match the template (what an
occluder covers does not), so a hidden object's track keeps its predicted place and comes back
by itself when the occluder moves on. All state is of fixed size: nothing grows with the frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pixellm_ros.spatial import Target3D
from pixellm_ros.tracking.types import TrackStatus

Box = tuple[int, int, int, int]
TEMPLATE_MARGIN = 4
_SUM_CHANNELS = np.ones((1, 3), np.float32)


@dataclass
class Prediction:
    """A track's template warped onto one frame: ``box`` (x0, y0, x1, y1) of the prediction
    (clipped to the image), ``shape`` (h, w) bool the predicted object, ``error`` (h, w) float32 the
    summed absolute RGB difference between the frame and the template's colours, ``expected``
    those colours."""

    box: Box
    shape: np.ndarray
    error: np.ndarray
    expected: np.ndarray  # (h, w, 3) uint8 the template's colours warped onto the frame


@dataclass
class Track:
    """A live track (internal; ``Tracker`` hands out ``TrackView`` snapshots)."""

    track_id: int
    name: str
    answer_score: float
    mask_template: np.ndarray  # (h, w) bool
    colours: np.ndarray  # (h, w, 3) uint8
    transform: np.ndarray  # (2, 3) template pixels -> current frame
    started_s: float
    named_s: float
    status: TrackStatus = "tracking"
    reason: str = ""
    lost_since_s: float = 0.0
    # This frame's visible mask (a crop at ``offset``), its box and 3D; None while coasting.
    mask: np.ndarray | None = None
    offset: tuple[int, int] = (0, 0)
    box: Box | None = None
    predicted_area: int = 0
    target_3d: Target3D | None = None
    no_3d_reason: str = ""
    last_centroid: np.ndarray | None = field(default=None)  # (3,) the last 3D centroid seen

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask)) if self.mask is not None else 0

    def predicted_box(self, width: int, height: int, transform: np.ndarray | None = None) -> Box | None:
        """Where the template lands on the current frame (clipped), None when out of the image."""
        h, w = self.mask_template.shape
        transform = self.transform if transform is None else transform
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ transform.T
        x0 = max(0, int(np.floor(corners[:, 0].min())))
        y0 = max(0, int(np.floor(corners[:, 1].min())))
        x1 = min(width, int(np.ceil(corners[:, 0].max())) + 1)
        y1 = min(height, int(np.ceil(corners[:, 1].max())) + 1)
        return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None

    def predict(self, image: np.ndarray, transform: np.ndarray | None = None) -> Prediction | None:
        """The template warped onto ``image`` (H, W, 3) uint8 RGB by ``transform`` (default: the
        track's); None when it falls outside."""
        height, width = image.shape[:2]
        transform = self.transform if transform is None else transform
        box = self.predicted_box(width, height, transform)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        local = transform.copy()
        local[:, 2] -= (x0, y0)
        size = (x1 - x0, y1 - y0)
        shape = cv2.warpAffine(self.mask_template.astype(np.uint8) * 255, local, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
        expected = cv2.warpAffine(self.colours, local, size, flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        error = cv2.transform(cv2.absdiff(image[y0:y1, x0:x1], expected), _SUM_CHANNELS)  # float32 (h, w)
        return Prediction(box=box, shape=shape, error=error, expected=expected)

    def seen_pixels(self, image: np.ndarray, transform: np.ndarray, tolerance: float) -> int:
        """How many pixels of the template warped by ``transform`` match ``image``'s colours."""
        prediction = self.predict(image, transform)
        if prediction is None:
            return 0
        return int(np.count_nonzero(prediction.shape & (prediction.error <= tolerance)))

    def align(self, small: np.ndarray, scale: float, prediction: Prediction, search_px: int = 6) -> float:
        """Correct the transform's translation so that the predicted appearance lines up with the
        frame (ECC, ``cv2.findTransformECCWithMask``, translation only, over the predicted shape
        and a 3 px ring around it: the object's edges), on the grey frame at the flow's ``scale``
        (``small``). The flow's motion drifts by a fraction of a pixel a frame on objects without
        texture; this pulls it back. Returns how far it moved the track (full-resolution px)."""
        x0, y0, x1, y1 = prediction.box
        sx0, sy0 = int(x0 * scale), int(y0 * scale)
        sw, sh = max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale))
        template = cv2.resize(cv2.cvtColor(prediction.expected, cv2.COLOR_RGB2GRAY), (sw, sh),
                              interpolation=cv2.INTER_AREA)
        ring = cv2.dilate(cv2.resize(prediction.shape.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST),
                          np.ones((5, 5), np.uint8))
        if int(np.count_nonzero(ring)) < 9:
            return 0.0
        pad = max(2, int(search_px * scale))
        height, width = small.shape
        gx0, gy0 = max(0, sx0 - pad), max(0, sy0 - pad)
        gx1, gy1 = min(width, sx0 + sw + pad), min(height, sy0 + sh + pad)
        # Where the template's pixel (0, 0) lies in the search window (sub-pixel: the box's origin
        # at this scale is x0 * scale, the template is resized from the full-resolution box).
        origin = (x0 * scale - gx0, y0 * scale - gy0)
        warp = np.array([[1.0, 0.0, origin[0]], [0.0, 1.0, origin[1]]], dtype=np.float32)
        try:
            _, warp = cv2.findTransformECCWithMask(template, small[gy0:gy1, gx0:gx1], ring, None, warp,
                                                   cv2.MOTION_TRANSLATION,
                                                   (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.02), 3)
        except cv2.error:  # no correlation to climb (flat patch): keep the flow's motion
            return 0.0
        shift = ((float(warp[0, 2]) - origin[0]) / scale, (float(warp[1, 2]) - origin[1]) / scale)
        if not (abs(shift[0]) < search_px and abs(shift[1]) < search_px):
            return 0.0
        self.transform[:, 2] += shift
        return max(abs(shift[0]), abs(shift[1]))

    def set_visible(self, mask: np.ndarray, offset: tuple[int, int]) -> None:
        """This frame's visible mask (a crop at ``offset``), trimmed to its tight box."""
        c0, r0, w, h = cv2.boundingRect(mask.view(np.uint8))
        if w == 0 or h == 0:
            self.mask, self.box = None, None
            return
        self.mask = np.ascontiguousarray(mask[r0 : r0 + h, c0 : c0 + w])
        self.offset = (offset[0] + c0, offset[1] + r0)
        self.box = (self.offset[0], self.offset[1], self.offset[0] + w, self.offset[1] + h)

    def reseed(self, mask: np.ndarray, offset: tuple[int, int], image: np.ndarray, name: str, score: float,
               now_s: float) -> None:
        """A new template from an answer: ``mask`` (h, w) bool crop at ``offset`` on the current
        ``image``; the track is seen and named now."""
        self.set_visible(mask, offset)
        assert self.mask is not None and self.box is not None
        height, width = image.shape[:2]
        bx0, by0, bx1, by1 = self.box
        # The template holds a ring of TEMPLATE_MARGIN px of what was around the object: its edges.
        x0, y0 = max(0, bx0 - TEMPLATE_MARGIN), max(0, by0 - TEMPLATE_MARGIN)
        x1, y1 = min(width, bx1 + TEMPLATE_MARGIN), min(height, by1 + TEMPLATE_MARGIN)
        self.mask_template = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        self.mask_template[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] = self.mask
        self.colours = np.ascontiguousarray(image[y0:y1, x0:x1])
        self.transform = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])
        self.predicted_area = int(np.count_nonzero(self.mask_template))
        self.name, self.answer_score, self.named_s = name, float(score), now_s
        self.status, self.reason = "tracking", ""

    def state_bytes(self) -> int:
        """Bytes held by this track's arrays (its template and this frame's mask)."""
        held = [self.mask_template, self.colours, self.transform, self.mask, self.last_centroid]
        return sum(a.nbytes for a in held if a is not None)


def new_track(track_id: int, mask: np.ndarray, offset: tuple[int, int], image: np.ndarray, name: str,
              score: float, now_s: float) -> Track:
    """A track started by an answer's target (mask crop at offset on the current image)."""
    track = Track(track_id=track_id, name=name, answer_score=float(score), mask_template=mask,
                  colours=np.zeros((1, 1, 3), np.uint8), transform=np.eye(2, 3), started_s=now_s, named_s=now_s)
    track.reseed(mask, offset, image, name, score, now_s)
    return track
