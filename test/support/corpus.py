"""The one corpus tiny tokenizers are trained on: prompt and answer sentences in PixelLM's style
(the llava_v1 system prompt, MUSE / referring-segmentation questions and answers), enough words
for a few hundred BPE merges."""

from __future__ import annotations

TINY_CORPUS: tuple[str, ...] = (
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: Segment the red cup on the table. Please respond with segmentation mask. ASSISTANT: Sure, it is the red cup.",
    "USER: What can I use to drink hot coffee? Please respond with segmentation mask.",
    "ASSISTANT: You can use the mug on the left, next to the bowl.",
    "Where is the apple? Sure, the apple is near 3 bananas and 12 oranges.",
    "Find every bottle on the shelf. There are 2 bottles and 1 glass.",
    "The dog is playing with the frisbee, and the cat is sleeping on the sofa.",
    "Which object could hold the flowers? The vase behind the book.",
    "Please segment the person riding the bicycle (the one wearing a helmet).",
    "It is the small green box; the large box is empty!",
    "Show me the tools: a hammer, a screwdriver and a wrench.",
    "The robot should pick up the blue block and place it in the tray.",
)
# How often the corpus is repeated for training (sentencepiece wants counts, not one of each).
CORPUS_REPEATS = 8
