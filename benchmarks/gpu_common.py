"""What the benchmarks share: sizes, the scripted answer, the decode modes, the bandwidth bound and
the models of one size (random bf16 weights built on the device once; quantised copies of those
same weights built the loader's way). gpu_7b.py and profile_decode.py use all of it;
bench_batching.py and bench_engine.py its tokenizer, sizes, scripted answer and model builder.

A mode is written ``[LOAD_IN/]DECODE[+fused]``: LOAD_IN is ``bf16`` (default) or one of the
loader's ``load_in`` names (8bit, 4bit: bitsandbytes; int8_weight, int4_weight: torchao), DECODE
one of the engine's decode modes (dynamic, static, cuda_graph, compiled), ``+fused`` the fused
q/k/v and gate/up projections. ``A|B`` in a plan: B if A fails.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pixellm_ros.engine.engine import DECODE_MODES
from pixellm_ros.model import PixelLMConfig, PixelLMForCausalLM
from pixellm_ros.model.checkpoint import finish_loading
from pixellm_ros.model.config import llama_text_config
from pixellm_ros.model.constants import seg_group_text
from pixellm_ros.model.fused_projections import fuse_projections, has_fused_projections, unfuse_projections
from pixellm_ros.model.load_options import LOAD_IN_CHOICES, resolve_load_options
from pixellm_ros.model.sentencepiece_training import train_llama_style_sentencepiece
from pixellm_ros.model.strict_loading import parameters_on_meta
from pixellm_ros.model.tokenizer import PixelLMTokenizer

# Peak HBM bandwidth by device name (vendor data sheets), bytes/s; else measured with a copy.
BANDWIDTH_TABLE: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H200",), 4.8e12),
    (("H100", "PCIE"), 2.0e12),
    (("H100",), 3.35e12),  # SXM (HBM3)
)
CORPUS = (
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: Segment the red cup on the table. Please respond with segmentation mask. ASSISTANT: Sure, it is the red cup.",
    "You can use the mug on the left, next to the bowl. The robot should pick up the blue block.",
)
# The fixed instructions of the agreement set (the first is the timed one).
INSTRUCTIONS = (
    "Segment every cup and block on the table. Please respond with segmentation mask.",
    "Where can the robot put the bowl? Please respond with segmentation mask.",
)
GROUP = seg_group_text()  # one target: "[SEG0]..[SEG5]"
ANSWER_PIECES = ("the red cup", "the blue block", "the mug on the left", "the bowl")
SIZES = ("7b", "13b", "tiny", "tiny-b")  # tiny-b: a second tiny size, the CPU stand-in for 13b
IMAGE_HW = (480, 640)


def log(message: str) -> None:
    print(message, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forget_compiled() -> None:
    """Drop torch.compile's in-memory caches between rows: each row compiles its own step (the
    on-disk inductor cache still serves identical graphs), no old graph keeps memory, and the
    recompile limit per code object is never reached (past it dynamo would quietly run eagerly)."""
    torch._dynamo.reset()


# ------------------------------------------------------------------------------------ modes
@dataclass(frozen=True)
class Mode:
    """How one benchmark row runs: weights (None = bf16), the engine's decode mode, fused or not."""

    load_in: str | None
    decode: str
    fused: bool

    @classmethod
    def parse(cls, spec: str) -> Mode:
        weights, _, rest = spec.strip().rpartition("/")
        decode, _, extra = rest.partition("+")
        if extra not in ("", "fused"):
            raise ValueError(f"mode {spec!r}: only '+fused' may follow the decode mode")
        if decode not in DECODE_MODES:
            raise ValueError(f"mode {spec!r}: decode mode must be one of {DECODE_MODES}")
        load_in = None if weights in ("", "bf16") else weights
        if load_in is not None and load_in not in LOAD_IN_CHOICES:
            raise ValueError(f"mode {spec!r}: weights must be bf16 or one of {LOAD_IN_CHOICES[1:]}")
        return cls(load_in, decode, extra == "fused")

    @property
    def name(self) -> str:
        return f"{self.load_in or 'bf16'}/{self.decode}{'+fused' if self.fused else ''}"


# ------------------------------------------------------------------------------------ sizes
def bench_tokenizer() -> PixelLMTokenizer:
    """A small sentencepiece tokenizer trained on the spot (the scripted answer uses only its ids)."""
    with tempfile.TemporaryDirectory() as folder:
        model_file = Path(folder) / "tokenizer.model"
        train_llama_style_sentencepiece(list(CORPUS) * 16, model_file, vocab_size=400)
        return PixelLMTokenizer.build(model_file, num_seg_tokens=6)


def bench_config(size: str, tokenizer: PixelLMTokenizer) -> PixelLMConfig:
    """The released shapes (the released vocabulary keeps lm_head and embed_tokens at their real
    size) or a tiny CPU stand-in; positions raised to 1024 so that long answers fit."""
    if size == "7b":
        config = PixelLMConfig.released_7b()
    elif size == "13b":
        config = PixelLMConfig.released_13b()
    elif size == "tiny":
        config = PixelLMConfig.tiny(vocab_size=len(tokenizer))
    elif size == "tiny-b":
        config = PixelLMConfig.tiny(vocab_size=len(tokenizer))
        config.text = llama_text_config(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,
                                        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=512,
                                        rms_norm_eps=1e-6)
    else:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    config.text.max_position_embeddings = max(config.text.max_position_embeddings, 1024)
    return config


def build_random_model(config: PixelLMConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> PixelLMForCausalLM:
    """Random weights, created on ``device`` in ``dtype`` (init runs there; no host copy)."""
    previous = torch.get_default_dtype()
    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = PixelLMForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def scripted_answer(tokenizer: PixelLMTokenizer, tokens: int) -> list[int]:
    """At least ``tokens`` ids of a plausible answer: phrases, each followed by a seg group."""
    ids: list[int] = []
    index = 0
    while len(ids) < tokens:
        piece = ANSWER_PIECES[index % len(ANSWER_PIECES)]
        ids += tokenizer.encode(f"{'Sure, ' if index == 0 else ' and '}{piece} {GROUP}", add_bos=False)
        index += 1
    return ids[:tokens]


# ------------------------------------------------------------------------------------ bandwidth
def table_bandwidth(name: str) -> float | None:
    upper = name.upper()
    for keys, bandwidth in BANDWIDTH_TABLE:
        if all(key in upper for key in keys):
            return bandwidth
    return None


def measured_copy_bandwidth(device: torch.device, megabytes: int = 512) -> float:
    """Bytes/s of a large device-to-device copy (each byte read once and written once)."""
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    for _ in range(2):
        target.copy_(source)
    sync(device)
    repeats = 10
    start = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    sync(device)
    seconds = (time.perf_counter() - start) / repeats
    del source, target
    return 2 * megabytes * 2**20 / seconds


def bandwidth(device: torch.device) -> tuple[float, str, float]:
    """(bytes/s used for the bound, its source, the measured copy bandwidth)."""
    on_cuda = device.type == "cuda"
    measured = measured_copy_bandwidth(device, 512 if on_cuda else 64)
    sheet = table_bandwidth(torch.cuda.get_device_name(device)) if on_cuda else None
    if on_cuda:
        torch.cuda.empty_cache()
    return (sheet, "data sheet", measured) if sheet else (measured, "measured copy", measured)


def stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really holds: a quantised tensor subclass (torchao) counts its inner tensors,
    a bitsandbytes 4-bit parameter its packed bytes plus its quantisation state."""
    if hasattr(tensor, "__tensor_flatten__") and type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        inner = [getattr(tensor, name, None) for name in names]
        return sum(stored_bytes(t) for t in inner if isinstance(t, torch.Tensor))
    total = tensor.numel() * tensor.element_size()
    state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit
    for name in ("absmax", "code"):
        part = getattr(state, name, None)
        if isinstance(part, torch.Tensor):
            total += part.numel() * part.element_size()
    scb = getattr(tensor, "SCB", None)  # bitsandbytes Int8Params' row scales
    if isinstance(scb, torch.Tensor):
        total += scb.numel() * scb.element_size()
    return total


def decode_bytes_per_token(model: PixelLMForCausalLM, kv_positions: float, kv_element_size: int = 2) -> float:
    """Bytes one decode step must read: every LLaMA weight as stored (lm_head included; of
    embed_tokens only the one row looked up) plus the K and V of ``kv_positions`` positions."""
    lm = model.language_model
    embed = lm.get_input_embeddings().weight
    weights = sum(stored_bytes(p) for p in lm.parameters())
    weights -= stored_bytes(embed) - embed.shape[1] * embed.element_size()
    cfg = lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    kv = 2 * cfg.num_hidden_layers * kv_heads * head_dim * kv_element_size * kv_positions
    return float(weights + kv)


def bf16_decode_bytes_per_token(config: PixelLMConfig, kv_positions: float) -> float:
    """The same count for the bf16 weights of ``config`` (the bound every mode is held to)."""
    text = config.text
    hidden, inter, layers, vocab = text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.vocab_size
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    attention = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    per_layer = attention + 3 * hidden * inter + 2 * hidden  # + the two RMSNorm weights
    weights = layers * per_layer + hidden + vocab * hidden + hidden  # final norm, lm_head, one embedding row
    return float(2 * weights + 2 * 2 * layers * kv_heads * head_dim * kv_positions)


# ------------------------------------------------------------------------------------ models
class ModelSource:
    """The models of one size, all from one set of random bf16 weights.

    The bf16 model is built on the device once (random init there: no host copy); a mode with
    other weights takes those weights from a host copy (made once) through the loader's own last
    step (``finish_loading``: fuse, quantise on the device layer by layer, move), after the bf16
    model left the device, so its peak memory is its own. Fused / unfused bf16 modes share one
    model, fused and unfused in place. Each ``model_for`` resets the device's peak-memory count.
    """

    def __init__(self, size: str, config: PixelLMConfig, device: torch.device, dtype: torch.dtype) -> None:
        self.size, self.config, self.device, self.dtype = size, config, device, dtype
        self.host_state: dict[str, torch.Tensor] | None = None
        self.model: PixelLMForCausalLM | None = None
        self.load_in: str | None = None  # the weights of self.model
        self.built_s = 0.0

    def model_for(self, mode: Mode) -> PixelLMForCausalLM:
        """The model a mode runs on (raises LoadOptionError where its weights cannot run here)."""
        options = resolve_load_options(self.device, self.dtype, mode.load_in)
        if self.model is not None and mode.load_in is None and self.load_in is None:
            self._reset_peak()
            (fuse_projections if mode.fused else unfuse_projections)(self.model)
            return self.model
        if mode.load_in is not None:
            self._keep_host_copy()
        self.drop()
        start = time.perf_counter()
        if mode.load_in is None and self.host_state is None:
            self.model = build_random_model(self.config, self.device, self.dtype)
        else:  # quantised modes fuse before quantising, as the loader does
            fuse = mode.fused and mode.load_in is not None
            self.model = finish_loading(self._from_host(), options, fuse_projections=fuse)
        if mode.load_in is None:
            (fuse_projections if mode.fused else unfuse_projections)(self.model)
        sync(self.device)
        self.built_s = time.perf_counter() - start
        self.load_in = mode.load_in
        return self.model

    def detached_bf16(self) -> PixelLMForCausalLM:
        """A new bf16 model of this size that this source keeps no reference to (the release check)."""
        self.drop()
        if self.host_state is None:
            return build_random_model(self.config, self.device, self.dtype)
        return finish_loading(self._from_host(), resolve_load_options(self.device, self.dtype), fuse_projections=False)

    def park(self) -> None:
        """Leave the device to another size, keeping these weights on the host for later rows."""
        if self.model is not None and self.load_in is None:
            self._keep_host_copy()
        self.drop()

    def drop(self) -> None:
        """Let the live model go (and the device memory it held)."""
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._reset_peak()

    def _keep_host_copy(self) -> None:
        if self.host_state is not None:
            return
        if self.model is None:
            self.model = build_random_model(self.config, self.device, self.dtype)
        if has_fused_projections(self.model):
            unfuse_projections(self.model)
        self.host_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _from_host(self) -> PixelLMForCausalLM:
        """A model of this size on the meta device filled with the host copy (no copy made on
        the host: the parameters are the host tensors until they move)."""
        assert self.host_state is not None
        with parameters_on_meta():
            model = PixelLMForCausalLM(self.config)
        model.load_state_dict(self.host_state, strict=True, assign=True)
        return model

    def _reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
