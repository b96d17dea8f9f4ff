"""INT8 NCNN in Python: calibrate an fp32 NCNN model on real images and write its INT8 param/bin.

The ncnn wheel ships neither ncnn2table nor ncnn2int8, so this does their job on top of the `ncnn`
binding, writing the format ncnn's loaders read (src/layer/convolution.cpp and friends):

- param: a quantized Convolution/InnerProduct gets `8=2` (one weight scale per output channel + one
  input scale), a ConvolutionDepthWise `8=1` (one weight scale per group + one input scale);
- bin, per layer in param order: tagged weights (4-byte tag, data padded to 4 bytes), then untagged fp32
  bias, weight scales and bottom-blob scale. Tags: fp32 0, fp16 0x01306B47, int8 0x000D4B38.

Activation scales come from running the fp32 model on the calibration images and reading every quantized
layer's input blob: `minmax` (127 / absmax) or `kl` (ncnn's 2048-bin histogram of |x| and the threshold
whose 128-level quantization diverges least from it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edge_yolox.backends import ncnn_param
from edge_yolox.errors import ModelError
from edge_yolox.preprocess import to_nchw

TAG_FP32, TAG_FP16, TAG_INT8 = 0, 0x01306B47, 0x000D4B38
QUANTIZABLE = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
# Layer types known to carry nothing in the .bin; anything else with weights would shift every offset.
WEIGHTLESS = frozenset({
    "Input", "Split", "Concat", "Slice", "Crop", "Reshape", "Permute", "Flatten", "Reorg", "PixelShuffle",
    "Swish", "Sigmoid", "ReLU", "Clip", "HardSwish", "HardSigmoid", "TanH", "Softmax", "UnaryOp", "BinaryOp",
    "Eltwise", "Pooling", "Interp", "Padding", "Noop", "Dropout",
})
CALIB_METHODS = ("kl", "minmax")
HISTOGRAM_BINS = 2048
TARGET_BINS = 128  # int8 levels on one side of zero (ncnn uses 128 as the KL target)
FP32_MAX_STRIDE = 8  # keep_fp32="auto": the leading layers reading maps of this stride or finer stay fp32


@dataclass
class Layer(ncnn_param.Layer):
    """A .param layer (edge_yolox.backends.ncnn_param) with the weights it reads from the .bin."""

    weight: Optional[np.ndarray] = None  # float32, flattened
    bias: Optional[np.ndarray] = None
    weight_scales: Optional[np.ndarray] = None  # set once the layer is quantized
    bottom_scale: Optional[float] = None
    fp16: bool = False  # store the (unquantized) weights as fp16

    @property
    def weight_counts(self) -> tuple[int, int]:
        """(weight elements, bias elements) this layer reads from the .bin."""
        if self.type == "InnerProduct":
            return self.get(2, 0), self.get(0, 0) if self.get(1, 0) else 0
        return self.get(6, 0), self.get(0, 0) if self.get(5, 0) else 0


@dataclass
class NcnnModel:
    layers: list[Layer]

    @property
    def input_blob(self) -> str:
        return ncnn_param.input_layer(self.layers, "the model").tops[0]

    def output_blobs(self) -> list[str]:
        return ncnn_param.output_blobs(self.layers)


# ---------------------------------------------------------------------------------------------- reading

def read_ncnn(param_path: Union[str, Path], bin_path: Union[str, Path]) -> NcnnModel:
    """Parse a text .param and its .bin (fp32 or fp16 weights) into layers holding float32 weights."""
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = [Layer(**vars(layer)) for layer in ncnn_param.read_param(param_path)]
    data = bin_path.read_bytes()
    offset = 0
    for layer in layers:
        offset = _read_weights(layer, data, offset, bin_path)
    if offset != len(data):
        raise ModelError(f"{bin_path}: {len(data) - offset} bytes left after the last layer (param/bin mismatch)")
    return NcnnModel(layers)


def _read_weights(layer: Layer, data: bytes, offset: int, source: Path) -> int:
    if layer.type not in QUANTIZABLE:
        if layer.type not in WEIGHTLESS:
            raise ModelError(f"{source}: layer {layer.name} ({layer.type}) is not supported by the INT8 writer")
        return offset
    if layer.get(8, 0):
        raise ModelError(f"{source}: layer {layer.name} is already quantized (8={layer.params['8']})")
    if layer.get(19, 0):
        raise ModelError(f"{source}: layer {layer.name} has dynamic weights, which the INT8 writer does not handle")
    n_weight, n_bias = layer.weight_counts
    try:
        tag = int(np.frombuffer(data, "<u4", 1, offset)[0])
        offset += 4
        if tag == TAG_FP32:
            layer.weight = np.frombuffer(data, "<f4", n_weight, offset).copy()
            offset += 4 * n_weight
        elif tag == TAG_FP16:
            layer.weight = np.frombuffer(data, "<f2", n_weight, offset).astype(np.float32)
            offset += _align4(2 * n_weight)
        else:
            raise ModelError(f"{source}: layer {layer.name} weights have tag {tag:#x}; only fp32/fp16 can be quantized")
        if n_bias:
            layer.bias = np.frombuffer(data, "<f4", n_bias, offset).copy()
            offset += 4 * n_bias
    except ValueError:
        raise ModelError(f"{source}: truncated at layer {layer.name}") from None
    return offset


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


# ---------------------------------------------------------------------------------------------- writing

def write_ncnn(model: NcnnModel, param_path: Union[str, Path], bin_path: Union[str, Path]) -> None:
    """Write the layers; those with scales set are written as INT8 (weights stored int8), those marked fp16
    with fp16 weights, the rest as they are (fp32)."""
    layers = [_quantized_params(layer) for layer in model.layers]
    Path(param_path).write_text(ncnn_param.render_param(layers, ncnn_param.blob_count(layers)))
    Path(bin_path).write_bytes(b"".join(_layer_bytes(layer) for layer in model.layers))


def _quantized_params(layer: Layer) -> ncnn_param.Layer:
    """The layer's .param line: an INT8 one says how its scales are laid out."""
    params = dict(layer.params)
    if layer.weight_scales is not None:
        # depthwise: one scale per group; convolution/innerproduct: one per output channel
        params["8"] = "1" if layer.type == "ConvolutionDepthWise" else "2"
    return ncnn_param.Layer(layer.type, layer.name, layer.bottoms, layer.tops, params)


def _layer_bytes(layer: Layer) -> bytes:
    if layer.weight is None:
        return b""
    if layer.weight_scales is None and layer.fp16:
        half = layer.weight.astype("<f2").tobytes()
        parts = [np.uint32(TAG_FP16).tobytes(), half, b"\0" * (_align4(len(half)) - len(half))]
    elif layer.weight_scales is None:
        parts = [np.uint32(TAG_FP32).tobytes(), layer.weight.astype("<f4").tobytes()]
    else:
        q = quantize_weights(layer).tobytes()
        parts = [np.uint32(TAG_INT8).tobytes(), q, b"\0" * (_align4(len(q)) - len(q))]
    if layer.bias is not None:
        parts.append(layer.bias.astype("<f4").tobytes())
    if layer.weight_scales is not None:
        parts += [layer.weight_scales.astype("<f4").tobytes(), np.float32(layer.bottom_scale).tobytes()]
    return b"".join(parts)


# --------------------------------------------------------------------------------------- quantization

def weight_rows(layer: Layer) -> np.ndarray:
    """Weights as one row per scale: output channels (conv, fc) or groups (depthwise)."""
    rows = layer.get(7, 1) if layer.type == "ConvolutionDepthWise" else layer.get(0, 0)
    return layer.weight.reshape(rows, -1)


def uses_6bit_weights(layer: Layer) -> bool:
    """ncnn's int8 Winograd F(4,3) for dense 3×3 stride-1 convs needs 6-bit weights to not overflow."""
    kw = layer.get(1, 0)
    dw, sw = layer.get(2, 1), layer.get(3, 1)
    return (layer.type == "Convolution" and kw == 3 and layer.get(11, kw) == 3 and dw == 1
            and layer.get(12, dw) == 1 and sw == 1 and layer.get(13, sw) == 1)


def weight_scales(layer: Layer) -> np.ndarray:
    levels = 31.0 if uses_6bit_weights(layer) else 127.0
    absmax = np.abs(weight_rows(layer)).max(axis=1)
    return np.where(absmax > 0, levels / np.maximum(absmax, 1e-30), 1.0).astype(np.float32)


def quantize_weights(layer: Layer) -> np.ndarray:
    """int8 weights as ncnn rounds them: round half away from zero of w·scale, clamped to ±127."""
    scaled = weight_rows(layer) * layer.weight_scales[:, None].astype(np.float32)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    return np.clip(rounded, -127, 127).astype(np.int8).reshape(-1)


def kl_threshold_bin(histogram: np.ndarray) -> int:
    """The histogram bin (of HISTOGRAM_BINS over |x|) where clipping loses the least information.

    For each candidate threshold t: P is the histogram up to t with the tail folded into its last bin;
    Q spreads the histogram up to t evenly over TARGET_BINS levels and back (what int8 can represent).
    Computed with piecewise-linear cumulative sums, so fractional level boundaries split bins as in ncnn.
    """
    eps = 1e-4
    h = histogram / max(histogram.sum(), 1)
    cum = np.concatenate([[0.0], np.cumsum(h)])
    best, best_kl = TARGET_BINS, np.inf
    for t in range(TARGET_BINS, len(h)):
        p = h[:t] + eps
        p[t - 1] += cum[-1] - cum[t]
        knots = np.linspace(0, t, TARGET_BINS + 1)
        mass = np.diff(np.interp(knots, np.arange(t + 1), cum[:t + 1]))  # histogram mass per int8 level
        expanded = np.diff(np.interp(np.arange(t + 1), knots, np.concatenate([[0.0], np.cumsum(mass)])))
        q = expanded + eps
        kl = float(np.sum(p * np.log(p / q)))
        if kl < best_kl:
            best, best_kl = t, kl
    return best


@dataclass
class BlobStats:
    absmax: float = 0.0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HISTOGRAM_BINS, np.int64))

    def add_histogram(self, x: np.ndarray) -> None:
        a = np.abs(x[x != 0])  # ncnn skips exact zeros (post-ReLU padding would swamp the first bin)
        if self.absmax > 0 and a.size:
            index = np.minimum((a * (HISTOGRAM_BINS / self.absmax)).astype(np.int64), HISTOGRAM_BINS - 1)
            self.histogram += np.bincount(index, minlength=HISTOGRAM_BINS)

    def threshold(self, method: str) -> float:
        if method == "minmax" or self.absmax == 0:
            return self.absmax
        return (kl_threshold_bin(self.histogram) + 0.5) * self.absmax / HISTOGRAM_BINS


def _open_net(param: Path, bin_: Path, threads: int, int8: bool):
    # fp16 storage/arithmetic would distort calibration on ARM
    return ncnn_param.open_net(ncnn_param.read_param(param), bin_, param, threads, fp16=False, int8=int8)


def run_blobs(net, input_blob: str, image: np.ndarray, blobs: Iterable[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Feed one letterboxed H×W×3 uint8 image and yield (name, array) for each requested blob."""
    import ncnn

    chw = to_nchw(image)[0]
    ex = net.create_extractor()
    ex.set_light_mode(False)  # keep intermediate blobs so each is computed once for all extractions
    ex.input(input_blob, ncnn.Mat(chw))  # ncnn.Mat borrows chw: it stays alive until the extractions end
    for name in blobs:
        ret, mat = ex.extract(name)
        if ret != 0:
            raise ModelError(f"ncnn could not compute blob {name} (error {ret})")
        yield name, np.array(mat)


def collect_thresholds(net, input_blob: str, blobs: list[str], images: list[np.ndarray], method: str,
                       progress: bool = True) -> dict[str, float]:
    """Activation threshold of each blob over the calibration images (two passes for KL: range, histogram)."""
    from tqdm import tqdm

    stats = {b: BlobStats() for b in blobs}
    passes = ["range", "histogram"] if method == "kl" else ["range"]
    for pass_name in passes:
        for image in tqdm(images, desc=f"calibration ({method}: {pass_name})", unit="img", disable=not progress):
            for name, x in run_blobs(net, input_blob, image, blobs):
                if pass_name == "range":
                    stats[name].absmax = max(stats[name].absmax, float(np.abs(x).max()))
                else:
                    stats[name].add_histogram(x)
    return {b: s.threshold(method) for b, s in stats.items()}


def blob_strides(net, input_blob: str, image: np.ndarray, blobs: list[str]) -> dict[str, int]:
    """Each blob's stride (input height / blob height) on one image."""
    return {name: image.shape[0] // max(x.shape[-2], 1) for name, x in run_blobs(net, input_blob, image, blobs)}


def auto_fp32_layers(model: NcnnModel, strides: dict[str, int]) -> list[str]:
    """Layers that quantize badly at little saving, measured on YOLOX-Nano/coco128 (KL): the backbone's layers up
    to the first one reading a map coarser than stride 8 (the stem and the first two CSP stages: quantizing them
    alone costs ~18 AP points, since one per-tensor activation scale cannot serve their BN-folded channels of
    very different ranges; every later layer costs nothing), and the prediction convs (the detections)."""
    outputs, keep, prefix = set(model.output_blobs()), [], True
    for layer in model.layers:
        if layer.type not in QUANTIZABLE:
            continue
        prefix = prefix and strides[layer.bottoms[0]] <= FP32_MAX_STRIDE
        if prefix or layer.tops[0] in outputs:
            keep.append(layer.name)
    return keep


@dataclass
class Int8Result:
    quantized: list[str]
    fp32_layers: list[str]
    method: str
    images: int
    thresholds: dict[str, float]

    def summary(self) -> dict:
        return {"method": self.method, "images": self.images, "int8_layers": len(self.quantized),
                "fp32_layers": self.fp32_layers}


def quantize_ncnn(
    src_param: Union[str, Path], src_bin: Union[str, Path], dst_param: Union[str, Path], dst_bin: Union[str, Path],
    images: list[np.ndarray], method: str = "kl", keep_fp32: Union[str, Iterable[str]] = "auto",
    threads: int = 2, progress: bool = True,
) -> Int8Result:
    """Calibrate the fp32 model on `images` (letterboxed H×W×3 uint8) and write its INT8 version.

    `keep_fp32`: layer names to leave in fp32, "auto" for auto_fp32_layers, or () to quantize all.
    """
    if method not in CALIB_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    if not images:
        raise ValueError("INT8 calibration needs at least one image")
    model = read_ncnn(src_param, src_bin)
    net = _open_net(Path(src_param), Path(src_bin), threads, int8=False)
    if keep_fp32 == "auto":
        all_bottoms = sorted({layer.bottoms[0] for layer in model.layers if layer.type in QUANTIZABLE})
        keep = auto_fp32_layers(model, blob_strides(net, model.input_blob, images[0], all_bottoms))
    else:
        keep = list(keep_fp32)
    unknown = set(keep) - {layer.name for layer in model.layers}
    if unknown:
        raise ValueError(f"keep_fp32 names layers that are not in the model: {sorted(unknown)}")
    targets = [layer for layer in model.layers if layer.type in QUANTIZABLE and layer.name not in keep]
    blobs = sorted({layer.bottoms[0] for layer in targets})
    thresholds = collect_thresholds(net, model.input_blob, blobs, images, method, progress)
    for layer in targets:
        t = thresholds[layer.bottoms[0]]
        layer.bottom_scale = 127.0 / t if t > 0 else 1.0
        layer.weight_scales = weight_scales(layer)
    write_ncnn(model, dst_param, dst_bin)
    return Int8Result([layer.name for layer in targets], keep, method, len(images), thresholds)


def run_outputs(param: Union[str, Path], bin_: Union[str, Path], image: np.ndarray, outputs: list[str],
                threads: int = 1, int8: bool = True) -> list[np.ndarray]:
    """Outputs of a (possibly INT8) model on one letterboxed image; a load/run check for exports and tests."""
    layers = ncnn_param.read_param(Path(param))
    net = ncnn_param.open_net(layers, Path(bin_), Path(param), threads, fp16=False, int8=int8)
    return [x for _, x in run_blobs(net, ncnn_param.input_layer(layers, param).tops[0], image, outputs)]
