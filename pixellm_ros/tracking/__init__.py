"""Targets that persist: every target of the model's answers followed at camera rate, with a
track id that stays across answers (ROS-free; numpy, OpenCV, SciPy and ``spatial`` only).

    from pixellm_ros.tracking import Detection, Tracker, TrackerOptions

    tracker = Tracker(TrackerOptions(unnamed_timeout_s=3.0))
    frame = tracker.step(rgb, stamp_s, depth=aligned_depth)         # every camera frame
    update = tracker.update([Detection(t.name, t.mask, t.score) for t in result.targets],
                            stamp_s_of_the_frame_the_model_was_asked_on)
    update.track_ids                                                 # the track of each target
    for track in frame.tracks:                                       # TrackView
        track.track_id, track.name, track.status, track.box, track.mask, track.offset, track.score,
        track.target_3d, track.since_named_s
    frame.events                                                     # started / paused / resumed / ended + reasons

How and why so: ``tracker`` (the steps), ``track`` (template and visibility), ``flow`` (DIS on a
region, RANSAC similarity), ``matching`` (IoU, 3D distance, Hungarian).
"""

from pixellm_ros.tracking.tracker import NO_DEPTH, Tracker, TrackerOptions, option_fields
from pixellm_ros.tracking.types import AnswerUpdate, Detection, TrackedFrame, TrackEvent, TrackView

__all__ = ["NO_DEPTH", "AnswerUpdate", "Detection", "TrackEvent", "TrackView", "TrackedFrame", "Tracker",
           "TrackerOptions", "option_fields"]
