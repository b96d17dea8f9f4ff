#include "postprocess.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "nms.h"

namespace yolox {
namespace {

using Levels = std::vector<std::vector<Level>>;  // per image, per stride

std::string shape_str(const Tensor& t) {
    std::string s = "(";
    for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
    return s + (t.shape.size() == 1 ? ",)" : ")");
}

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

// The official single tensor [N, 5+C] or [B, N, 5+C]: one view per stride level into the rows.
Levels single_levels(const Tensor& a, const PostprocessOptions& opts, int& num_classes) {
    const size_t ndim = a.shape.size();
    if (ndim != 2 && ndim != 3)
        fail("single-tensor output must be [N, 5+C] or [B, N, 5+C], got shape " + shape_str(a));
    const std::ptrdiff_t batch = ndim == 3 ? a.shape[0] : 1;
    const std::ptrdiff_t n = a.shape[ndim - 2], row = a.shape[ndim - 1];
    if (row < 6) fail("single-tensor output needs 5 + num_classes >= 6 columns, got shape " + shape_str(a));
    num_classes = static_cast<int>(row - 5);

    std::vector<std::pair<int, int>> grids = grid_shapes(opts.in_h, opts.in_w, opts.strides);
    long long expected = 0;
    for (const auto& [h, w] : grids) expected += static_cast<long long>(h) * w;
    if (opts.decode_boxes && expected != n)
        fail("output has " + std::to_string(n) + " anchors but input size " + std::to_string(opts.in_h) + "x" +
             std::to_string(opts.in_w) + " with the given strides needs " + std::to_string(expected) +
             "; check input_size and strides");
    // Already-decoded rows need no grid: treat them as one level of n anchors.
    if (!opts.decode_boxes) grids.assign(1, {1, static_cast<int>(n)});

    Levels out(batch);
    for (std::ptrdiff_t b = 0; b < batch; ++b) {
        const float* base = a.data + b * n * row;
        for (size_t i = 0; i < grids.size(); ++i) {
            Level lv;
            lv.h = grids[i].first;
            lv.w = grids[i].second;
            lv.stride = opts.decode_boxes ? opts.strides[i] : 1;
            lv.reg = {base, 1, row};
            lv.obj = {base + 4, 1, row};
            lv.cls = {base + 5, 1, row};
            out[b].push_back(lv);
            base += static_cast<std::ptrdiff_t>(lv.h) * lv.w * row;
        }
    }
    return out;
}

// Split per-stride maps (reg, obj, cls for each stride), each [C, H, W] / [H, W, C] or with a batch dim.
Levels split_levels(const std::vector<Tensor>& arrays, const PostprocessOptions& opts, int& num_classes) {
    const std::vector<int>& strides = opts.strides;
    if (arrays.size() != 3 * strides.size())
        fail("split outputs need 3 arrays (reg, obj, cls) per stride: expected " + std::to_string(3 * strides.size()) +
             ", got " + std::to_string(arrays.size()));
    const size_t batch_ndim = arrays[0].shape.size();
    if (batch_ndim != 3 && batch_ndim != 4) fail("split output 0 must be 3-D or 4-D, got shape " + shape_str(arrays[0]));
    const std::ptrdiff_t batch = batch_ndim == 4 ? arrays[0].shape[0] : 1;
    num_classes = -1;

    Levels out(batch, std::vector<Level>(strides.size()));
    for (size_t i = 0; i < arrays.size(); ++i) {
        const Tensor& a = arrays[i];
        const size_t level = i / 3, kind = i % 3;  // 0 reg, 1 obj, 2 cls
        const int h = grid_size(opts.in_h, strides[level]), w = grid_size(opts.in_w, strides[level]);
        const std::string name = "split output " + std::to_string(i) + " (" +
                                 (kind == 0 ? "reg" : kind == 1 ? "obj" : "cls") + ", stride " +
                                 std::to_string(strides[level]) + ")";
        if (a.shape.size() != batch_ndim || (batch_ndim == 4 && a.shape[0] != batch))
            fail(name + " has shape " + shape_str(a) + ", inconsistent with output 0 " + shape_str(arrays[0]));
        const size_t off = batch_ndim - 3;
        const std::ptrdiff_t d0 = a.shape[off], d1 = a.shape[off + 1], d2 = a.shape[off + 2];
        const bool nchw = d1 == h && d2 == w, nhwc = d0 == h && d1 == w;
        bool channels_last;
        if (opts.layout == "nchw" || (opts.layout == "auto" && nchw)) {
            channels_last = false;
        } else if (opts.layout == "nhwc" || (opts.layout == "auto" && nhwc)) {
            channels_last = true;
        } else {
            fail(name + " has shape " + shape_str(a) + " but the " + std::to_string(h) + "x" + std::to_string(w) +
                 " grid of input " + std::to_string(opts.in_h) + "x" + std::to_string(opts.in_w) +
                 " fits neither NCHW nor NHWC");
        }
        if ((channels_last && !nhwc) || (!channels_last && !nchw))
            fail(name + " has shape " + shape_str(a) + ", which is not " + opts.layout + " for a " +
                 std::to_string(h) + "x" + std::to_string(w) + " grid");
        const std::ptrdiff_t channels = channels_last ? d2 : d0;
        const std::ptrdiff_t want = kind == 0 ? 4 : kind == 1 ? 1 : (num_classes < 0 ? channels : num_classes);
        if (channels != want || channels < 1)
            fail(name + " has " + std::to_string(channels) + " channels, expected " + std::to_string(want));
        if (kind == 2) num_classes = static_cast<int>(channels);

        const std::ptrdiff_t plane = static_cast<std::ptrdiff_t>(h) * w;
        const MapView proto{nullptr, channels_last ? 1 : plane, channels_last ? channels : 1};
        for (std::ptrdiff_t b = 0; b < batch; ++b) {
            Level& lv = out[b][level];
            lv.h = h;
            lv.w = w;
            lv.stride = strides[level];
            MapView view = proto;
            view.data = a.data + b * channels * plane;
            (kind == 0 ? lv.reg : kind == 1 ? lv.obj : lv.cls) = view;
        }
    }
    return out;
}

void check(const std::vector<Tensor>& outputs, const PostprocessOptions& opts) {
    if (opts.in_h <= 0 || opts.in_w <= 0) fail("input_size must be positive (h, w)");
    if (opts.strides.empty()) fail("strides must not be empty");
    for (int s : opts.strides)
        if (s <= 0) fail("strides must be positive, got " + std::to_string(s));
    if (opts.max_det < 0) fail("max_det must be >= 0");
    if (opts.layout != "auto" && opts.layout != "nchw" && opts.layout != "nhwc")
        fail("layout must be 'auto', 'nchw' or 'nhwc', got '" + opts.layout + "'");
    if (opts.ratios.empty() || opts.pads.empty() || opts.frame_sizes.empty())
        fail("ratio, pad and frame_size need at least one value");
    for (float r : opts.ratios)
        if (!(r > 0.0f) || !std::isfinite(r)) fail("ratio must be a positive finite number");
    if (outputs.empty()) fail("no outputs given");
}

template <typename T>
T at_or_last(const std::vector<T>& v, size_t i) {
    return v[std::min(i, v.size() - 1)];
}

}  // namespace

int grid_size(int size, int stride) { return size / stride + (size % stride != 0); }  // ceil, cannot overflow

std::vector<std::pair<int, int>> grid_shapes(int in_h, int in_w, const std::vector<int>& strides) {
    std::vector<std::pair<int, int>> shapes;
    for (int s : strides) {
        if (s <= 0) fail("strides must be positive, got " + std::to_string(s));
        shapes.emplace_back(grid_size(in_h, s), grid_size(in_w, s));
    }
    return shapes;
}

std::vector<std::vector<Detection>> postprocess(const std::vector<Tensor>& outputs, const PostprocessOptions& opts) {
    check(outputs, opts);
    int num_classes = 0;
    const Levels batches =
        outputs.size() == 1 ? single_levels(outputs[0], opts, num_classes) : split_levels(outputs, opts, num_classes);
    const size_t n = batches.size();
    if ((opts.ratios.size() > 1 && opts.ratios.size() != n) || (opts.pads.size() > 1 && opts.pads.size() != n) ||
        (opts.frame_sizes.size() > 1 && opts.frame_sizes.size() != n))
        fail("ratio, pad and frame_size need one value or one per image (batch of " + std::to_string(n) + ")");

    DecodeOptions decode_opts;
    decode_opts.conf = opts.conf;
    decode_opts.num_classes = num_classes;
    decode_opts.apply_sigmoid = opts.apply_sigmoid;
    decode_opts.decode_boxes = opts.decode_boxes;
    decode_opts.multi_label = opts.multi_label;

    std::vector<std::vector<Detection>> results(n);
    std::vector<Detection> candidates;
    for (size_t b = 0; b < n; ++b) {
        candidates.clear();
        decode(batches[b], decode_opts, candidates);
        results[b] = opts.nms ? nms(std::move(candidates), opts.iou, opts.class_agnostic, opts.max_det)
                              : top_k(std::move(candidates), opts.max_det);
        const auto [pad_x, pad_y] = at_or_last(opts.pads, b);
        const auto [frame_h, frame_w] = at_or_last(opts.frame_sizes, b);
        unletterbox(results[b], at_or_last(opts.ratios, b), pad_x, pad_y, frame_w, frame_h);
    }
    return results;
}

}  // namespace yolox
