"""Training the embedded PixelLM on the procedural tabletop world, on 2 CPU cores.

``settings`` is the one table of training settings (and the recipes), ``scenes`` renders and encodes
the scene pool once, ``stage1`` trains the object tokenizer and the pixel decoder, ``stage2`` the
LLM's adapters and the seg codebook, ``run`` drives a resumable run, ``export`` writes the delta
folder (``evaluation.world_eval`` scores a model through the engine), ``cli`` is `pixellm-ros train`.
"""
