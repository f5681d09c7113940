"""Training the small PixelLM that ships as the default model, on the procedural tabletop world.

``dataset`` renders scenes and conversations on the fly, ``forward`` computes the losses with
image features shared across each image's questions, ``trainer`` runs AdamW with checkpoints,
``cli`` is `pixellm-ros train`. ``demo_config`` is the shipped model's size.
"""

from pixellm_ros.training.demo_config import demo_config

__all__ = ["demo_config"]
