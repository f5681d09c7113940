"""PixelLMEngine: ``segment(image, instruction) -> SegmentationResult`` as a plain Python API.

One query runs: pre-process -> vision tower (skipped when the same image's features are cached)
-> KV-cached greedy generation collecting seg states -> one batched mask-decoder pass for all
complete seg groups -> post-process to the original size -> answer parsing. The engine owns no ROS
and no threads; it serialises its own calls with a lock, so a ROS node may call it from callbacks.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from pixellm_ros.model import ImageFeatures, PixelLMForCausalLM
from pixellm_ros.model.released_config import RELEASED_CONFIG_FILE
from pixellm_ros.model.saving import OUR_CONFIG_FILE
from pixellm_ros.model.tokenizer import PixelLMTokenizer

from .answer import ParsedAnswer, parse_answer
from .batching import BatchOutcome, BatchRequest, BatchSession
from .features import EncodedImage, image_key
from .callbacks import CallbackFailed as _CallbackFailed
from .callbacks import guard as _guard
from .errors import EngineError, InvalidInstructionError, InvalidOptionError
from .generation import GenerationOutput, LogitsProcessor, generate_greedy, generate_research_style
from .static_decoding import StaticKVDecoder
from .postprocess import postprocess_masks
from .preprocess import PreprocessedImage, check_resizable, preprocess_image, validate_image
from .prompt import build_prompt_ids
from .result import SegmentationResult, Target

# How the KV-cached loop runs (see static_decoding.py):
#   "dynamic"     transformers DynamicCache, eager (any device; the default)
#   "static"      StaticCache with explicit masks, eager
#   "cuda_graph"  StaticCache, the one-token step captured in a CUDA graph (CUDA only)
#   "compiled"    as "cuda_graph" with the step torch.compile'd first (on the CPU: compiled, no graph)
DECODE_MODES = ("dynamic", "static", "cuda_graph", "compiled")
# Static caches are sized in steps of this many positions, so one captured graph serves many
# prompt lengths while the attention reads little beyond the live positions.
STATIC_CACHE_BUCKET = 256
STATIC_DECODERS_KEPT = 2

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_model"
# Our own folders hold pixellm_config.json, released ones config.json.
MODEL_CONFIG_FILES = (OUR_CONFIG_FILE, RELEASED_CONFIG_FILE)

class PixelLMEngine:
    """Segment the targets an instruction asks for, and answer it in text.

    model / tokenizer: a PixelLMForCausalLM (already on its device and dtype) and its tokenizer.
    max_new_tokens: default answer length limit (the config's, 512 for released models).
    mask_threshold: logit threshold of the masks (0 = probability 0.5, as released).
    feature_cache_size: how many recent images keep their vision features.
    logits_processor: default logits hook for every query (see generation.py).
    decode_mode: "dynamic" (default), "static", "cuda_graph" or "compiled" (see DECODE_MODES).
    """

    def __init__(
        self,
        model: PixelLMForCausalLM,
        tokenizer: PixelLMTokenizer,
        max_new_tokens: int | None = None,
        mask_threshold: float = 0.0,
        feature_cache_size: int = 4,
        logits_processor: LogitsProcessor | None = None,
        decode_mode: str = "dynamic",
    ) -> None:
        config = model.config
        if decode_mode not in DECODE_MODES:
            raise EngineError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        if decode_mode == "cuda_graph" and model.device.type != "cuda":
            raise EngineError(f"decode_mode 'cuda_graph' needs a CUDA model, this one is on {model.device}")
        if len(tokenizer.seg_token_ids) != config.seg_tokens_per_target:
            raise EngineError(
                f"the tokenizer has {len(tokenizer.seg_token_ids)} seg tokens, the model expects "
                f"{config.seg_tokens_per_target} (N={config.seg_tokens_per_scale} x L={config.num_scales})"
            )
        if len(tokenizer) > config.text.vocab_size:
            raise EngineError(f"tokenizer has {len(tokenizer)} ids, the model's vocabulary only {config.text.vocab_size}")
        self._model: PixelLMForCausalLM | None = model.eval()
        self._tokenizer = tokenizer
        self.max_new_tokens = int(max_new_tokens if max_new_tokens is not None else config.max_new_tokens)
        self.mask_threshold = float(mask_threshold)
        self.feature_cache_size = int(feature_cache_size)
        self.logits_processor = logits_processor
        self.decode_mode = decode_mode
        self._features: OrderedDict[str, EncodedImage] = OrderedDict()
        self._static_decoders: OrderedDict[tuple[int, int], StaticKVDecoder] = OrderedDict()
        self.static_decoders_kept = STATIC_DECODERS_KEPT  # each holds a static cache (and graph)
        # Rows of every static batch of 2 or more (None: the next power of two of its size). The
        # node sets its max_batch: idle rows cost little on a GPU, and one row count means one
        # graph per cache size instead of one per batch size seen.
        self.static_batch_rows: int | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | None = None,
        clip_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        load_in: str = "none",
        max_new_tokens: int | None = None,
        mask_threshold: float = 0.0,
        feature_cache_size: int = 4,
        decode_mode: str = "dynamic",
        fuse_projections: bool | None = None,
    ) -> PixelLMEngine:
        """Load a model folder (ours or a released one; ``clip_dir`` for a released one's CLIP).

        ``model_dir=None`` loads the small model shipped inside the package.
        device: "cpu" | "cuda" | "cuda:N" | "auto"; dtype: "float32" | "bfloat16" | "float16";
        load_in: "none" | "8bit" | "4bit" (bitsandbytes, CUDA only) | "int8_weight" | "int4_weight"
        (torchao; int4 CUDA only, bfloat16).
        fuse_projections: one q/k/v and one gate/up Linear per LLaMA layer, built from the loaded
        weights (values unchanged; fewer kernels per token); None: on CUDA, not on the CPU.
        Raises EngineError when the folder, its files or the options are unusable.
        """
        folder = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        if model_dir is None and not any((folder / name).is_file() for name in MODEL_CONFIG_FILES):
            raise EngineError(
                f"the embedded default model is not shipped in this build (expected it at {folder}); "
                "pass model_dir= (and clip_dir= for a released checkpoint)"
            )
        if not folder.is_dir():
            raise EngineError(f"model folder {folder} does not exist")
        from pixellm_ros.model.checkpoint import load_pixellm  # heavy: import on use

        try:
            # load_pixellm validates device ("auto" included), dtype and load_in itself.
            model, tokenizer = load_pixellm(
                folder, clip_dir=clip_dir, device=device, dtype=dtype, load_in=None if load_in == "none" else load_in,
                fuse_projections=fuse_projections,
            )
        except Exception as exc:
            raise EngineError(f"could not load the model from {folder}: {exc}") from exc
        return cls(
            model,
            tokenizer,
            max_new_tokens=max_new_tokens,
            mask_threshold=mask_threshold,
            feature_cache_size=feature_cache_size,
            decode_mode=decode_mode,
        )

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> PixelLMForCausalLM:
        if self._model is None:
            raise EngineError("the engine was released")
        return self._model

    @property
    def tokenizer(self) -> PixelLMTokenizer:
        return self._tokenizer

    @property
    def device(self) -> torch.device:
        return self.model.device

    def prompt_ids(self, instruction: str) -> list[int]:
        """The prompt token ids the model sees for ``instruction`` (InvalidInstructionError if unusable)."""
        config = self.model.config
        return build_prompt_ids(self._tokenizer, instruction, config.use_im_start_end, config.prompt_template)

    # ------------------------------------------------------------------ the API
    def segment(
        self,
        image: np.ndarray,
        instruction: str,
        max_new_tokens: int | None = None,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        logits_processor: LogitsProcessor | None = None,
    ) -> SegmentationResult:
        """Answer ``instruction`` about ``image`` ((H, W, 3) uint8 RGB) with text and masks.

        on_text: called with each new piece of answer text (the pieces concatenate to result.text).
        should_stop: polled before each generated token; True ends generation (result.stopped).
        logits_processor: overrides the engine's default logits hook for this query.
        Raises InvalidImageError / InvalidInstructionError / InvalidOptionError (all InvalidInputError)
        for a bad image / instruction / option, EngineError when the model fails;
        exceptions raised by on_text / should_stop reach the caller unchanged.
        """
        return self._run(image, instruction, max_new_tokens, on_text, should_stop, logits_processor, research=False)

    def segment_many(
        self, image: np.ndarray, instructions: Sequence[str], **kwargs: object
    ) -> list[SegmentationResult]:
        """Several instructions about one image: the image is encoded once (feature cache)."""
        return [self.segment(image, instruction, **kwargs) for instruction in instructions]  # type: ignore[arg-type]

    def segment_batch(self, requests: Sequence[BatchRequest]) -> list[BatchOutcome]:
        """Answer several requests (different images, instructions, limits) in one KV-cached batch.

        Returns one outcome per request, in order: its SegmentationResult, or its exception:
        InvalidInputError for its own bad input (refused alone, before the batch runs), the exception
        its own on_text / should_stop raised, or an EngineError for every request of the batch when
        the model fails. Never raises for a request's sake. Each request stops on its own (end of
        sequence, its max_new_tokens, its should_stop); all targets of the batch are decoded in one
        decoder pass at the end. In a static / CUDA-graph decode_mode a batch of one runs segment()'s
        own path and a larger one a static batch on a StaticKVDecoder of as many rows as the next
        power of two (one captured graph per row count and cache size; see engine/batching.py).
        """
        outcomes: list[BatchOutcome | None] = [None] * len(requests)
        if self.decode_mode != "dynamic" and len(requests) == 1:
            request = requests[0]
            try:
                outcomes[0] = self.segment(request.image, request.instruction, request.max_new_tokens,
                                           request.on_text, request.should_stop, request.logits_processor)
            except Exception as exc:  # noqa: BLE001 - an outcome, not raised
                outcomes[0] = exc
            return outcomes  # type: ignore[return-value]
        position: dict[int, int] = {}
        try:
            session = BatchSession(self, max_batch=max(len(requests), 1), defer_masks=True, static=True)
        except EngineError as exc:  # released engine
            return [exc for _ in requests]
        for index, request in enumerate(requests):
            try:
                position[session.add(request)] = index
            except EngineError as exc:
                outcomes[index] = exc
        while not session.idle:
            results = session.step()
            if not len(session):
                results += session.flush()
            for ticket, outcome in results:
                outcomes[position[ticket]] = outcome
        return outcomes  # type: ignore[return-value]

    def batch_session(self, max_batch: int = 8, static: bool = False) -> BatchSession:
        """A session: ``add(BatchRequest) -> ticket`` (up to max_batch at once), ``step() ->
        [(ticket, outcome)]`` per decoded token (engine/batching.py). Requests may join at any
        time (continuous batching), unless ``static``: then only while the session is idle, and a
        static / CUDA-graph decode_mode decodes each batch on its static batch decoder."""
        return BatchSession(self, max_batch=max_batch, static=static)

    def segment_research_style(
        self,
        image: np.ndarray,
        instruction: str,
        max_new_tokens: int | None = None,
        logits_processor: LogitsProcessor | None = None,
    ) -> SegmentationResult:
        """Reference path for tests and benchmarks: the released code's decoding, with no KV cache
        and the vision tower and whole sequence recomputed every step. Same result, much slower."""
        return self._run(image, instruction, max_new_tokens, None, None, logits_processor, research=True)

    def encode_image(self, image: np.ndarray) -> tuple[EncodedImage, bool]:
        """The image's features from the cache, or from the vision tower (then cached).

        Returns (features, came_from_cache).
        """
        image = validate_image(image)
        key = image_key(image)
        with self._lock:
            cached = self._features.get(key)
            if cached is not None:
                self._features.move_to_end(key)
                return cached, True
            prepared = self._preprocess(image)
            with torch.inference_mode():
                features = self.model.encode_images(prepared.pixel_values, [prepared.valid_hw])
            encoded = EncodedImage(features=features, valid_hw=prepared.valid_hw, original_hw=prepared.original_hw)
            if self.feature_cache_size > 0:
                self._features[key] = encoded
                while len(self._features) > self.feature_cache_size:
                    self._features.popitem(last=False)
            return encoded, False

    def encode_images(self, images: Sequence[np.ndarray]) -> list[tuple[EncodedImage, bool]]:
        """Features of several images: cached ones from the cache, the distinct others through the
        vision tower in ONE batched pass (then cached). Returns (features, came_from_cache) per image.
        """
        images = [validate_image(image) for image in images]
        keys = [image_key(image) for image in images]
        with self._lock:
            found: dict[str, tuple[EncodedImage, bool]] = {}
            for key in keys:
                if key in self._features and key not in found:
                    self._features.move_to_end(key)
                    found[key] = (self._features[key], True)
            missing = list(dict.fromkeys(key for key in keys if key not in found))
            if missing:
                image_of = dict(zip(keys, images))
                prepared = [self._preprocess(image_of[key]) for key in missing]
                with torch.inference_mode():
                    features = self.model.encode_images(
                        torch.cat([p.pixel_values for p in prepared]), [p.valid_hw for p in prepared]
                    )
                for index, (key, item) in enumerate(zip(missing, prepared)):
                    one = features.sample(index)
                    # own storage, so that a cached image does not keep the whole batch alive
                    one = ImageFeatures(one.llm_tokens.clone(), one.llm_mask.clone(), [f.clone() for f in one.decoder_features])
                    encoded = EncodedImage(features=one, valid_hw=item.valid_hw, original_hw=item.original_hw)
                    found[key] = (encoded, False)
                    if self.feature_cache_size > 0:
                        self._features[key] = encoded
                while len(self._features) > max(self.feature_cache_size, 0):
                    self._features.popitem(last=False)
            return [found[key] for key in keys]

    def clear_cache(self) -> None:
        """Forget all cached image features."""
        with self._lock:
            self._features.clear()

    def release(self) -> None:
        """Free the model and the cached features; the engine is unusable after.

        On CUDA the allocator's cache is emptied too, after a garbage collection (so that tensors held
        only by reference cycles are gone first), and the memory shows as free to other processes
        (nvidia-smi), not only to this one: measured on an H200, 14.7 GB (7B) back to 0.14 GB.
        """
        with self._lock:
            self._features.clear()
            self._static_decoders.clear()
            model, self._model = self._model, None
            on_cuda = model is not None and model.device.type == "cuda"
            del model
            gc.collect()
            if on_cuda:
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ internals
    def _preprocess(self, image: np.ndarray) -> PreprocessedImage:
        # float32 pixels: encode_images casts them to the vision tower's own dtype.
        config = self.model.config
        return preprocess_image(image, config.image_size, config.pixel_mean, config.pixel_std, device=self.device)

    def _validated(
        self, image: np.ndarray, instruction: str, max_new_tokens: int | None
    ) -> tuple[np.ndarray, list[int], int, list[str]]:
        """Check one request before any model work: (image, prompt ids, token limit, warnings).

        Raises InvalidInputError for a bad image, instruction or limit.
        """
        image = validate_image(image)
        check_resizable(int(image.shape[0]), int(image.shape[1]), self.model.config.image_size)
        prompt_ids = self.prompt_ids(instruction)
        warnings: list[str] = []
        limit = self._limit(max_new_tokens, len(prompt_ids), warnings)
        return image, prompt_ids, limit, warnings

    def _limit(self, max_new_tokens: int | None, prompt_length: int, warnings: list[str]) -> int:
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise InvalidOptionError(f"max_new_tokens must be a positive int, got {limit!r}")
        config = self.model.config
        room = int(config.text.max_position_embeddings) - (prompt_length - 1 + config.image_token_len)
        if room < 1:
            raise InvalidInstructionError(f"the instruction is too long for the model's {config.text.max_position_embeddings} positions")
        if limit > room:
            warnings.append(f"max_new_tokens {limit} cut to {room}: the model has {config.text.max_position_embeddings} positions")
            limit = room
        return int(limit)

    def _sync(self) -> None:
        # CUDA work is asynchronous: wait for it so stage timings are true.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _run(
        self,
        image: np.ndarray,
        instruction: str,
        max_new_tokens: int | None,
        on_text: Callable[[str], None] | None,
        should_stop: Callable[[], bool] | None,
        logits_processor: LogitsProcessor | None,
        research: bool,
    ) -> SegmentationResult:
        start = time.perf_counter()
        image, prompt_ids, limit, warnings = self._validated(image, instruction, max_new_tokens)
        processor = logits_processor if logits_processor is not None else self.logits_processor
        with self._lock:
            try:
                with torch.inference_mode():
                    return self._answer(
                        image, prompt_ids, limit, _guard(on_text), _guard(should_stop), processor, research, warnings, start
                    )
            except _CallbackFailed as failed:
                raise failed.original from None
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError(f"the model failed: {type(exc).__name__}: {exc}") from exc

    def _answer(
        self,
        image: np.ndarray,
        prompt_ids: list[int],
        limit: int,
        on_text: Callable[[str], None] | None,
        should_stop: Callable[[], bool] | None,
        processor: LogitsProcessor | None,
        research: bool,
        warnings: list[str],
        start: float,
    ) -> SegmentationResult:
        model, tokenizer = self.model, self._tokenizer
        timings: dict[str, float] = {}
        if research:
            prepared = self._preprocess(image)
            generation, features = generate_research_style(
                model, tokenizer, prompt_ids, prepared.pixel_values, prepared.valid_hw, limit, processor
            )
            encoded = EncodedImage(features=features, valid_hw=prepared.valid_hw, original_hw=prepared.original_hw)
            cached = False
            timings["vision_ms"] = 0.0  # inside every generation step
        else:
            vision_start = time.perf_counter()
            encoded, cached = self.encode_image(image)
            self._sync()
            timings["vision_ms"] = 0.0 if cached else (time.perf_counter() - vision_start) * 1e3
            decoder = self._static_decoder(len(prompt_ids) - 1 + model.config.image_token_len + limit)
            generation = generate_greedy(
                model, tokenizer, prompt_ids, encoded.features, limit, processor, on_text, should_stop, decoder
            )
        timings["prefill_ms"] = generation.first_token_s * 1e3
        timings["generation_ms"] = generation.total_s * 1e3
        timings["first_token_ms"] = timings["vision_ms"] + timings["prefill_ms"]
        decode_steps = generation.num_generated - 1
        decode_s = generation.total_s - generation.first_token_s
        timings["decode_tokens_per_s"] = decode_steps / decode_s if decode_steps > 0 and decode_s > 0 else 0.0

        parsed = parse_answer(generation.token_ids, tokenizer)
        warnings.extend(parsed.warnings)
        decode_start = time.perf_counter()
        logits = self._decode_masks(generation, parsed, encoded)
        self._sync()
        timings["decoding_ms"] = (time.perf_counter() - decode_start) * 1e3
        post_start = time.perf_counter()
        masks = postprocess_masks(
            logits, model.config.image_size, encoded.valid_hw, encoded.original_hw, self.mask_threshold
        )
        timings["postprocess_ms"] = (time.perf_counter() - post_start) * 1e3
        timings["total_ms"] = (time.perf_counter() - start) * 1e3
        targets = [
            Target(name=name, mask=m.mask, box=m.box, score=m.score) for name, m in zip(parsed.names, masks)
        ]
        return SegmentationResult(
            text=parsed.text,
            targets=targets,
            timings=timings,
            generated_tokens=generation.num_generated,
            warnings=warnings,
            stopped=generation.finish_reason == "stopped",
            finish_reason=generation.finish_reason,
            image_hw=encoded.original_hw,
            vision_cached=cached,
        )

    def _static_decoder(self, positions: int, rows: int = 1) -> StaticKVDecoder | None:
        """The static-cache decoder for ``rows`` answers needing ``positions`` cache columns (None
        in "dynamic" mode); built once per (size bucket, row bucket), the most recent few kept.
        Rows come in powers of two, so a batch of 3 runs on a decoder (and graph) of 4."""
        if self.decode_mode == "dynamic":
            return None
        limit = int(self.model.config.text.max_position_embeddings)
        size = min(-(-positions // STATIC_CACHE_BUCKET) * STATIC_CACHE_BUCKET, limit)
        key = (size, 1 << (max(int(rows), 1) - 1).bit_length())
        decoder = self._static_decoders.get(key)
        if decoder is None:
            on_cuda = self.device.type == "cuda"
            decoder = StaticKVDecoder(
                self.model.language_model,
                size,
                use_cuda_graph=on_cuda and self.decode_mode in ("cuda_graph", "compiled"),
                compile=self.decode_mode == "compiled",
                rows=key[1],
            )
            self._static_decoders[key] = decoder
            while len(self._static_decoders) > self.static_decoders_kept:
                self._static_decoders.popitem(last=False)
        self._static_decoders.move_to_end(key)
        return decoder

    def _decode_masks(self, generation: GenerationOutput, parsed: ParsedAnswer, encoded: EncodedImage) -> torch.Tensor:
        """(T, M, M) low-res logits for the T complete groups, all in one decoder pass."""
        model = self.model
        size = model.config.mask_resolution
        if not parsed.groups:
            return torch.zeros((0, size, size), device=self.device)
        row_of = {position: row for row, position in enumerate(generation.seg_positions)}
        rows = [row_of[p] for group in parsed.groups for p in group.positions]
        seg_hidden = generation.seg_hidden[torch.tensor(rows, device=generation.seg_hidden.device)]
        return model.masks_from_hidden_states(seg_hidden, encoded.features.decoder_features).low_res_logits
