"""PixelLMForCausalLM: image encoder + LLaMA + seg codebook + pixel decoder, as one nn.Module.

The image encoder is the released CLIP tower (``vision_tower``, with ``mm_projector`` for the LLM and
``out_mm_projector`` + ``image_feature_neck`` for the decoder) or a pretrained CNN (``image_encoder``,
frozen, with the ``object_tokenizer``: one LLM token per object, and the decoder's two scales;
``PixelLMConfig.image_encoder``). Attribute names are chosen so that our state-dict keys map onto
the released ones by prefix:

    ours                                   released
    vision_tower.vision_model.*            (CLIP folder) vision_model.*
    image_encoder.*, object_tokenizer.*    (none: a CNN encoder is only in our own folders)
    language_model.model.{embed_tokens, layers, norm}.*   model.{embed_tokens, layers, norm}.*
    language_model.lm_head.*               lm_head.*
    {mm_projector, out_mm_projector, image_feature_neck, text_hidden_fcs,
     prompt_encoder, mask_decoder}.*       model.{same}.*
    seg_fusion.*                           (only in "learned" fusion mode: new models)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaForCausalLM

from .codebook import SegTokenFusion, group_seg_embeddings, seg_state_mask
from .config import CNN_FEATURE_STRIDES, OBJECT_PLACE_AXES, PixelLMConfig
from .constants import IMAGE_TOKEN_INDEX
from .decoder import MultiScaleMaskDecoder
from .losses import IGNORE_INDEX, LossWeights, mask_losses, token_cross_entropy
from .efficientnet import EFFICIENTNET_LITE, EfficientNetLite
from .mask_resize import low_res_to_original_many
from .object_tokens import ObjectReading, ObjectTokenizer, nearest_other, order_slots
from .outputs import ImageFeatures, ImageSegPrompts, MaskOutput, PixelLMLosses, PixelLMTrainingOutput
from .projector import build_image_feature_neck, build_mm_projector, build_text_hidden_fcs
from .prompt_encoder import PromptEncoder
from .vision import CLIPVisionTower, llm_token_mask, patch_padding_mask


@dataclass
class SplicedPrompt:
    """A prompt with its image placeholder replaced by the g*g image tokens.

    embeds (B, T', H); attention_mask (B, T') long; token_ids (B, T') with IMAGE_TOKEN_INDEX at the
    image positions; labels (B, T') with IGNORE_INDEX at the image positions (None if not given).
    """

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    token_ids: torch.Tensor
    labels: torch.Tensor | None


class PixelLMForCausalLM(nn.Module):
    def __init__(self, config: PixelLMConfig) -> None:
        super().__init__()
        self.config = config
        # Every part sizes itself from the config (its from_config / build_* function).
        if config.uses_clip:
            self.vision_tower = CLIPVisionTower.from_config(config)
            self.mm_projector = build_mm_projector(config)
            self.out_mm_projector = build_mm_projector(config)
            self.image_feature_neck = build_image_feature_neck(config)
        else:
            spec = EFFICIENTNET_LITE[config.image_encoder]
            self.image_encoder = EfficientNetLite(spec).eval().requires_grad_(False)  # frozen, ImageNet weights
            channels = spec.scale_channels()
            self.object_tokenizer = ObjectTokenizer.from_config(config, [channels[s] for s in CNN_FEATURE_STRIDES])
        self.language_model = LlamaForCausalLM(config.text)
        self.text_hidden_fcs = build_text_hidden_fcs(config)
        self.prompt_encoder = PromptEncoder.from_config(config)
        self.mask_decoder = MultiScaleMaskDecoder.from_config(config)
        self.seg_fusion = SegTokenFusion.from_config(config)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.language_model.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.language_model.lm_head.weight.dtype

    # ------------------------------------------------------------------ vision
    def train(self, mode: bool = True) -> PixelLMForCausalLM:
        super().train(mode)
        if not self.config.uses_clip:
            self.image_encoder.eval()  # frozen: its batch norms keep their ImageNet statistics
        return self

    def encoder_maps(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """A CNN encoder's maps at strides 8, 16, 32 of (B, 3, S, S) pixels (frozen: no gradient)."""
        with torch.no_grad():
            return self.image_encoder.feature_maps(pixel_values.to(self.image_encoder._conv_stem.weight.dtype), CNN_FEATURE_STRIDES)

    def features_from_maps(self, maps: Sequence[torch.Tensor], valid_hw: Sequence[tuple[int, int]]) -> ImageFeatures:
        """A CNN encoder's maps (``encoder_maps``) -> ImageFeatures: the K object slots' tokens and
        words (``object_sequence``), and the decoder's scales [(B, D, G, G), (B, D, 2G, 2G)]."""
        read = self.detect_objects(maps, valid_hw)
        embeds, embeds_mask = self.object_sequence(read.tokens, read.detections.attributes, read.places, read.valid,
                                                    read.neighbours)
        return ImageFeatures(llm_tokens=embeds, llm_mask=embeds_mask, decoder_features=read.decoder_features)

    def detect_objects(self, maps: Sequence[torch.Tensor], valid_hw: Sequence[tuple[int, int]]) -> ObjectReading:
        """The object tokenizer on a CNN encoder's maps (``encoder_maps``): the slots' tokens, the
        detections, their places and, when the slots carry them, their neighbours."""
        dtype = self.object_tokenizer.token_projector.net[0].weight.dtype
        tokens, valid, decoder_features, detections = self.object_tokenizer([m.to(dtype) for m in maps], valid_hw)
        places = self.object_tokenizer.places(detections, valid_hw)
        neighbours = nearest_other(detections.centres, valid) if self.config.object_neighbour_words else None
        return ObjectReading(tokens, valid, decoder_features, detections, places, neighbours)

    def object_sequence(
        self, tokens: torch.Tensor, attributes: torch.Tensor, places: torch.Tensor, valid: torch.Tensor,
        neighbours: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the LLM reads of the objects: per slot its token, then the embeddings of the words of
        its most likely attributes (``config.object_tag_groups``, e.g. " small", " red", " ball") and of
        its place (``config.object_place_token_ids``: the bin of its centre's x, then of its y, e.g. "3", "7")
        and, with ``config.object_neighbour_words``, the attribute words of the object nearest to it; the
        slots written once per order of ``config.object_orders`` (``order_slots``).

        tokens (B, K, H), attributes (B, K, A) probabilities, places (B, K, 3) centre x / w, y / h and
        radius in [0, 1] (``ObjectTokenizer.places``), valid (B, K) bool, neighbours (B, K) long
        (``nearest_other``; needed for ``config.object_neighbour_words`` only)
        -> embeddings (B, O * K * W, H) and mask (B, O * K * W) bool, W = ``config.object_words``,
        O = len(``config.object_orders``).
        """
        cfg = self.config
        if cfg.object_words == 1:
            slots, slot_mask = tokens[:, :, None], valid[:, :, None]
        else:
            slots, slot_mask = self._object_slots(tokens, attributes, places, valid, neighbours)
        lists = []
        for order in cfg.object_orders:
            index = order_slots(order, places, valid)[:, :, None]  # (B, K, 1)
            lists.append((slots.gather(1, index[..., None].expand_as(slots)).flatten(1, 2),
                          slot_mask.gather(1, index.expand_as(slot_mask)).flatten(1)))
        return torch.cat([s for s, _ in lists], dim=1), torch.cat([m for _, m in lists], dim=1)

    def _object_slots(
        self, tokens: torch.Tensor, attributes: torch.Tensor, places: torch.Tensor, valid: torch.Tensor,
        neighbours: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per slot its token and words: (B, K, W, H) and the mask (B, K, W)."""
        word_ids = self.slot_word_ids(attributes, places, neighbours)
        words = self.language_model.get_input_embeddings()(word_ids).to(tokens.dtype)  # (B, K, W-1, H)
        return torch.cat([tokens[:, :, None], words], dim=2), valid[:, :, None].expand(-1, -1, self.config.object_words)

    def slot_word_ids(self, attributes: torch.Tensor, places: torch.Tensor, neighbours: torch.Tensor | None) -> torch.Tensor:
        """(B, K, W-1) long: the LLM token ids of the words each object slot carries after its token
        (see ``object_sequence``; attributes, places and neighbours as there)."""
        cfg = self.config
        groups = torch.split(attributes, list(cfg.object_attributes), dim=-1)
        word_ids = [
            torch.tensor(cfg.object_tag_token_ids[g], device=attributes.device)[groups[g].argmax(dim=-1)]
            for g in cfg.object_tag_groups
        ]
        own = list(word_ids)
        if cfg.object_place_token_ids:
            bins = len(cfg.object_place_token_ids)
            place_ids = torch.tensor(cfg.object_place_token_ids, device=attributes.device)
            for axis in OBJECT_PLACE_AXES:
                index = (places[..., axis].float() * bins).floor().long().clamp(0, bins - 1)
                word_ids.append(place_ids[index])
        if cfg.object_neighbour_words:
            if neighbours is None:
                raise ValueError("the neighbour's words need the slots' neighbours (nearest_other)")
            if cfg.object_neighbour_marker_token_id >= 0:
                word_ids.append(torch.full_like(own[0], cfg.object_neighbour_marker_token_id))
            word_ids.extend(ids.gather(1, neighbours.long()) for ids in own)
        return torch.stack(word_ids, dim=-1)

    @torch.no_grad()
    def read_objects(self, pixel_values: torch.Tensor, valid_hw: Sequence[tuple[int, int]]) -> list[list[list[int]]]:
        """What the LLM reads of each image with a CNN encoder: per image, per detected object (left
        to right), the token ids of the words its slot carries (``slot_word_ids``; the config must give
        slots words: ``object_words`` > 1). pixel_values and valid_hw as ``encode_images``."""
        read = self.detect_objects(self.encoder_maps(pixel_values), valid_hw)
        ids = self.slot_word_ids(read.detections.attributes, read.places, read.neighbours)
        return [[ids[b, k].tolist() for k in range(ids.shape[1]) if read.valid[b, k]] for b in range(ids.shape[0])]

    def encode_images(self, pixel_values: torch.Tensor, valid_hw: Sequence[tuple[int, int]]) -> ImageFeatures:
        """pixel_values (B, 3, S, S) normalised and zero-padded bottom/right; valid_hw: B (h, w).

        A CNN encoder: see ``features_from_maps``. CLIP:
        Scale 0 is resized G -> g (``config.llm_image_resize``) and projected by ``mm_projector``
        for the LLM; every scale goes through ``out_mm_projector`` and the neck at G x G for the
        decoder, which sees the padded area too (only the vision attention and the LLM mask it out).
        """
        cfg = self.config
        size = cfg.image_size
        batch = pixel_values.shape[0]
        if pixel_values.shape[1:] != (3, size, size):
            raise ValueError(f"pixel_values must be (B, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        if len(valid_hw) != batch:
            raise ValueError(f"{len(valid_hw)} valid sizes for a batch of {batch}")
        if not cfg.uses_clip:
            return self.features_from_maps(self.encoder_maps(pixel_values), valid_hw)
        grid, llm_grid = cfg.vision_grid, cfg.llm_image_grid
        if cfg.mask_padded_patches:
            patch_mask = patch_padding_mask(valid_hw, size, grid, device=pixel_values.device)
            llm_mask = llm_token_mask(patch_mask, llm_grid)
        else:
            patch_mask = None
            llm_mask = torch.ones(batch, llm_grid * llm_grid, dtype=torch.bool, device=pixel_values.device)

        scales = self.vision_tower(pixel_values.to(self.vision_tower.dtype), patch_mask)
        compute_dtype = self.mm_projector[0].weight.dtype
        scales = [s.to(compute_dtype) for s in scales]

        channels = scales[0].shape[-1]
        grid_map = scales[0].transpose(1, 2).reshape(batch, channels, grid, grid)
        # the research code resizes in float32
        if cfg.llm_image_resize == "area":
            small = F.adaptive_avg_pool2d(grid_map.float(), llm_grid)
        else:
            small = F.interpolate(grid_map.float(), size=(llm_grid, llm_grid), mode="bilinear", align_corners=False)
        llm_tokens = self.mm_projector(small.to(compute_dtype).flatten(2).transpose(1, 2))

        hidden = self.config.hidden_size
        decoder_features = []
        for scale in scales:
            projected = self.out_mm_projector(scale).transpose(1, 2).reshape(batch, hidden, grid, grid)
            decoder_features.append(self.image_feature_neck(projected))
        return ImageFeatures(llm_tokens=llm_tokens, llm_mask=llm_mask, decoder_features=decoder_features)

    # ------------------------------------------------------------------ prompt
    def splice_image(
        self,
        input_ids: torch.Tensor,
        feats: ImageFeatures,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> SplicedPrompt:
        """Replace each row's single IMAGE_TOKEN_INDEX by the g*g image tokens (see SplicedPrompt).

        input_ids (B, T); feats of batch B (or 1, shared by all rows); labels / attention_mask (B, T).
        Image tokens from padding get attention 0 and label IGNORE_INDEX.
        """
        batch, length = input_ids.shape
        if feats.batch_size not in (1, batch):
            raise ValueError(f"features of batch {feats.batch_size} for {batch} prompts")
        is_image = input_ids == IMAGE_TOKEN_INDEX
        counts = is_image.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(f"each prompt needs exactly one image placeholder, got counts {counts.tolist()}")
        positions = is_image.int().argmax(dim=1).tolist()
        text_embeds = self.language_model.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        num_image = feats.llm_tokens.shape[1]

        embeds, masks, ids, new_labels = [], [], [], []
        for row, pos in enumerate(positions):
            image_row = row if feats.batch_size == batch else 0
            image_tokens = feats.llm_tokens[image_row].to(text_embeds.dtype)
            embeds.append(torch.cat([text_embeds[row, :pos], image_tokens, text_embeds[row, pos + 1 :]]))
            image_mask = feats.llm_mask[image_row].to(attention_mask.dtype)
            masks.append(torch.cat([attention_mask[row, :pos], image_mask, attention_mask[row, pos + 1 :]]))
            image_ids = input_ids.new_full((num_image,), IMAGE_TOKEN_INDEX)
            ids.append(torch.cat([input_ids[row, :pos], image_ids, input_ids[row, pos + 1 :]]))
            if labels is not None:
                ignore = labels.new_full((num_image,), IGNORE_INDEX)
                new_labels.append(torch.cat([labels[row, :pos], ignore, labels[row, pos + 1 :]]))
        return SplicedPrompt(
            embeds=torch.stack(embeds),
            attention_mask=torch.stack(masks).long(),
            token_ids=torch.stack(ids),
            labels=torch.stack(new_labels) if labels is not None else None,
        )

    def embed_prompt(self, input_ids: torch.Tensor, feats: ImageFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (B, T) with one IMAGE_TOKEN_INDEX each -> embeds (B, T-1+g*g, H), attention (B, T-1+g*g) long."""
        spliced = self.splice_image(input_ids, feats)
        return spliced.embeds, spliced.attention_mask

    # ------------------------------------------------------------------ seg tokens and masks
    def seg_embeddings(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., H) last-layer hidden states before seg tokens -> (..., out_dim)."""
        return self.text_hidden_fcs[0](hidden)

    def fuse_seg_groups(self, groups: torch.Tensor) -> torch.Tensor:
        """(T, L, N, out_dim) -> (T, L, out_dim)."""
        return self.seg_fusion(groups)

    def decode_masks(
        self, decoder_features: Sequence[torch.Tensor], fused: torch.Tensor, image_index: torch.Tensor | None = None
    ) -> MaskOutput:
        """decoder_features: L tensors (I, out_dim, G, G); fused (T, L, out_dim) -> MaskOutput.

        All T targets are decoded in one batched pass. Without ``image_index`` the features are those
        of ONE image (I = 1); with it, (T,) long, target t is decoded on image ``image_index[t]``
        (the targets of several answers about several images, in one pass).
        """
        if image_index is None and any(f.shape[0] != 1 for f in decoder_features):
            raise ValueError("decode_masks takes the features of one image (batch 1) unless image_index is given")
        if image_index is not None and image_index.shape != (fused.shape[0],):
            raise ValueError(f"image_index must be ({fused.shape[0]},), got {tuple(image_index.shape)}")
        size = self.config.mask_resolution
        features = list(decoder_features)
        dtype = features[0].dtype
        if fused.shape[0] == 0:
            empty = features[0].new_zeros((0, size, size))
            return MaskOutput(low_res_logits=empty, iou_scores=features[0].new_zeros((0,)))
        logits, iou = self.mask_decoder(
            features,
            self.prompt_encoder.dense_positional_encoding().to(dtype),
            self.prompt_encoder.no_mask_dense_embedding().to(dtype),
            fused.to(dtype),
            image_index,
        )
        return MaskOutput(low_res_logits=logits, iou_scores=iou)

    def decode_masks_per_image(
        self,
        decoder_features: Sequence[torch.Tensor],
        prompts: torch.Tensor,
        counts: Sequence[int],
        images: Sequence[int],
        images_per_pass: int | None = None,
    ) -> list[torch.Tensor]:
        """The targets of several images: prompts (T, L, out_dim) holding image ``images[i]``'s
        ``counts[i]`` targets one image after another; decoder_features L tensors (B, out_dim, G, G)
        -> one (counts[i], M, M) low-res logits tensor per entry.

        images_per_pass: how many images' targets one decoder pass takes (``decode_masks`` with
        ``image_index``). None: all of them on a GPU, where a few large launches beat many small
        ones (a stage-1 step of 48 scenes dispatches 2,857 operations instead of 92,077); one on a
        CPU, where the per-image working set stays in cache (stage 1 of the CPU recipe: 1.76 s per
        step against 2.13 s all at once, 1 thread).
        """
        if images_per_pass is None:
            images_per_pass = len(counts) if prompts.is_cuda else 1
        step = max(int(images_per_pass), 1)
        per_image = torch.split(prompts, list(counts))
        out: list[torch.Tensor] = []
        for start in range(0, len(counts), step):
            chunk = list(range(start, min(start + step, len(counts))))
            if len(chunk) == 1:
                image = images[chunk[0]]
                features = [f[image : image + 1] for f in decoder_features]
                out.append(self.decode_masks(features, per_image[chunk[0]]).low_res_logits)
                continue
            sizes = [int(counts[i]) for i in chunk]
            owner = torch.repeat_interleave(
                torch.tensor([images[i] for i in chunk], device=prompts.device), torch.tensor(sizes, device=prompts.device)
            )
            joined = torch.cat([per_image[i] for i in chunk])
            logits = self.decode_masks(decoder_features, joined, image_index=owner).low_res_logits
            out.extend(torch.split(logits, sizes))
        return out

    def seg_prompts(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        """(K, H) hidden states before the K seg tokens -> (T, L, out_dim) fused prompts, T = K / (N*L)."""
        cfg = self.config
        groups = group_seg_embeddings(self.seg_embeddings(seg_hidden), cfg.num_scales, cfg.seg_tokens_per_scale)
        return self.fuse_seg_groups(groups)

    def masks_from_hidden_states(
        self,
        seg_hidden: torch.Tensor,
        decoder_features: Sequence[torch.Tensor],
        image_index: torch.Tensor | None = None,
    ) -> MaskOutput:
        """(K, H) hidden states before the K seg tokens -> one mask per group of N*L.

        One answer about one image, or (``image_index`` (K / (N*L),), see decode_masks) the groups of
        several answers, each on its own image.
        """
        return self.decode_masks(decoder_features, self.seg_prompts(seg_hidden), image_index)

    # ------------------------------------------------------------------ training
    def compute_losses(
        self,
        pixel_values: torch.Tensor,
        valid_hw: Sequence[tuple[int, int]],
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        gt_masks: Sequence[torch.Tensor],
        seg_token_ids: Sequence[int],
        attention_mask: torch.Tensor | None = None,
        original_hw: Sequence[tuple[int, int]] | None = None,
        weights: LossWeights | None = None,
        image_index: torch.Tensor | None = None,
        images_per_pass: int | None = None,
    ) -> PixelLMTrainingOutput:
        """The training forward: B_conv conversations about B_img images -> losses (+ what made them).

        pixel_values (B_img, 3, S, S), valid_hw / original_hw B_img x (h, w) (original defaults to
        valid); image_index (B_conv,) long: the image of each conversation (None: one image per
        conversation, B_img = B_conv). As in LISA/PixelLM training the vision tower runs once per
        image and its features serve all the conversations about it. input_ids / labels /
        attention_mask (B_conv, T): one IMAGE_TOKEN_INDEX per row, labels IGNORE_INDEX outside the
        answer; gt_masks: B_conv tensors (T_b, H_b, W_b) in {0, 1} at the image's original size,
        one per target in answer order; seg_token_ids: the N*L ids [SEG0].. .
        The seg embeddings are the last hidden states at the positions just before seg tokens; the
        decoder decodes the targets of all conversations about an image together, and
        ``images_per_pass`` images at a time (``decode_masks_per_image``: all on a GPU, one on a CPU).
        """
        weights = weights or LossWeights()
        cfg = self.config
        per_target = cfg.seg_tokens_per_target
        conversations = input_ids.shape[0]
        if image_index is None:
            image_index = torch.arange(conversations, device=input_ids.device)
        feats = self.encode_images(pixel_values, valid_hw)
        spliced = self.splice_image(
            input_ids, feats.for_conversations(image_index), labels=labels, attention_mask=attention_mask
        )
        hidden = self.language_model.model(
            inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask, use_cache=False
        ).last_hidden_state  # after the final norm
        logits = self.language_model.lm_head(hidden)
        assert spliced.labels is not None
        token_ce = weights.ce * token_cross_entropy(logits, spliced.labels)

        before_seg = seg_state_mask(spliced.token_ids, seg_token_ids) & spliced.attention_mask.bool()
        per_row = before_seg.sum(dim=1).tolist()  # one host sync for the whole batch
        seg_states = list(torch.split(hidden[before_seg], per_row))  # row after row
        sizes = original_hw if original_hw is not None else valid_hw
        image_of = image_index.tolist()
        images: list[tuple[int, list[int], int]] = []  # (image, its rows, its target count), images with targets
        for image in range(feats.batch_size):
            rows = [row for row, owner in enumerate(image_of) if owner == image]
            for row in rows:
                if per_row[row] != gt_masks[row].shape[0] * per_target:
                    raise ValueError(
                        f"conversation {row}: {per_row[row]} seg tokens in the labels, but "
                        f"{gt_masks[row].shape[0]} ground-truth masks need {gt_masks[row].shape[0] * per_target}"
                    )
            count = sum(gt_masks[row].shape[0] for row in rows)
            if count > 0:
                images.append((image, rows, count))
        predictions: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        seg_prompts: list[ImageSegPrompts] = []
        if images:
            # the batch's targets, image after image, each image's conversations in order
            prompts = self.seg_prompts(torch.cat([seg_states[row] for _, rows, _ in images for row in rows]))
            counts = [count for _, _, count in images]
            low_res = self.decode_masks_per_image(
                feats.decoder_features, prompts, counts, [image for image, _, _ in images], images_per_pass
            )
            full_sizes = low_res_to_original_many(
                low_res, cfg.image_size,
                [tuple(valid_hw[image]) for image, _, _ in images], [tuple(sizes[image]) for image, _, _ in images],
            )
            for (image, rows, _), full, image_prompts in zip(images, full_sizes, torch.split(prompts, counts)):
                seg_prompts.append(ImageSegPrompts(image, rows, image_prompts))
                start = 0
                for row in rows:
                    count = gt_masks[row].shape[0]
                    predictions.append(full[start : start + count])  # one question: refinement works within it
                    targets.append(gt_masks[row].to(full.device))
                    start += count
        if predictions:
            mask_bce, mask_dice, refinement, num_masks = mask_losses(predictions, targets, weights)
        else:  # a batch with no targets at all: keep the decoder in the graph with zero weight
            zero = hidden.sum() * 0.0
            mask_bce, mask_dice, refinement, num_masks = zero, zero, zero, 0
        losses = PixelLMLosses(
            total=token_ce + mask_bce + mask_dice + refinement,
            token_ce=token_ce,
            mask_bce=mask_bce,
            mask_dice=mask_dice,
            target_refinement=refinement,
            num_masks=num_masks,
        )
        return PixelLMTrainingOutput(losses, logits, spliced.labels, predictions, targets, seg_prompts)

    def forward(self, **kwargs) -> PixelLMTrainingOutput:  # type: ignore[override]
        """Training forward: see compute_losses()."""
        return self.compute_losses(**kwargs)
