// Python bindings of the decode/NMS core: validates every array before the C++ side sees it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "decode.h"
#include "nms.h"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

namespace {

struct Shape {
    py::ssize_t batch, n0, n1, n2;  // batch and the three per-image dims (n2 unused for 2-D rows)
};

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

FloatArray as_float(const py::handle& obj, size_t index) {
    FloatArray arr;
    try {
        arr = FloatArray::ensure(obj);
    } catch (const py::error_already_set&) {
    }
    if (!arr) {
        PyErr_Clear();
        throw py::type_error("output " + std::to_string(index) + " is not a numeric array (got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))) + ")");
    }
    return arr;
}

// ceil(size / stride), as every stride-2 conv with padding rounds up; written so it cannot overflow.
int grid_size(int size, int stride) { return size / stride + (size % stride != 0); }

// The official single tensor [N, 5+C] or [B, N, 5+C]: one view per stride level into the rows.
std::vector<std::vector<yolox::Level>> single_levels(const FloatArray& a, int in_h, int in_w,
                                                     const std::vector<int>& strides, bool decode_boxes,
                                                     int& num_classes) {
    if (a.ndim() != 2 && a.ndim() != 3)
        throw py::value_error("single-tensor output must be [N, 5+C] or [B, N, 5+C], got shape " + shape_str(a));
    const py::ssize_t batch = a.ndim() == 3 ? a.shape(0) : 1;
    const py::ssize_t n = a.shape(a.ndim() - 2), row = a.shape(a.ndim() - 1);
    if (row < 6) throw py::value_error("single-tensor output needs 5 + num_classes >= 6 columns, got shape " + shape_str(a));
    num_classes = static_cast<int>(row - 5);

    std::vector<std::pair<int, int>> grids;
    long long expected = 0;
    for (int s : strides) {
        grids.emplace_back(grid_size(in_h, s), grid_size(in_w, s));
        expected += static_cast<long long>(grids.back().first) * grids.back().second;
    }
    if (decode_boxes && expected != n)
        throw py::value_error("output has " + std::to_string(n) + " anchors but input size " + std::to_string(in_h) +
                              "x" + std::to_string(in_w) + " with the given strides needs " +
                              std::to_string(expected) + "; check input_size and strides");
    // Already-decoded rows need no grid: treat them as one level of n anchors.
    if (!decode_boxes) grids.assign(1, {1, static_cast<int>(n)});

    std::vector<std::vector<yolox::Level>> out(batch);
    for (py::ssize_t b = 0; b < batch; ++b) {
        const float* base = a.data() + b * n * row;
        for (size_t i = 0; i < grids.size(); ++i) {
            yolox::Level lv;
            lv.h = grids[i].first;
            lv.w = grids[i].second;
            lv.stride = decode_boxes ? strides[i] : 1;
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
std::vector<std::vector<yolox::Level>> split_levels(const std::vector<FloatArray>& arrays, int in_h, int in_w,
                                                    const std::vector<int>& strides, const std::string& layout,
                                                    int& num_classes) {
    if (arrays.size() != 3 * strides.size())
        throw py::value_error("split outputs need 3 arrays (reg, obj, cls) per stride: expected " +
                              std::to_string(3 * strides.size()) + ", got " + std::to_string(arrays.size()));
    const int batch_ndim = arrays[0].ndim();
    if (batch_ndim != 3 && batch_ndim != 4)
        throw py::value_error("split output 0 must be 3-D or 4-D, got shape " + shape_str(arrays[0]));
    const py::ssize_t batch = batch_ndim == 4 ? arrays[0].shape(0) : 1;
    num_classes = -1;

    std::vector<std::vector<yolox::Level>> out(batch, std::vector<yolox::Level>(strides.size()));
    for (size_t i = 0; i < arrays.size(); ++i) {
        const FloatArray& a = arrays[i];
        const size_t level = i / 3, kind = i % 3;  // 0 reg, 1 obj, 2 cls
        const int h = grid_size(in_h, strides[level]), w = grid_size(in_w, strides[level]);
        const std::string name = "split output " + std::to_string(i) + " (" +
                                 (kind == 0 ? "reg" : kind == 1 ? "obj" : "cls") + ", stride " +
                                 std::to_string(strides[level]) + ")";
        if (a.ndim() != batch_ndim || (batch_ndim == 4 && a.shape(0) != batch))
            throw py::value_error(name + " has shape " + shape_str(a) + ", inconsistent with output 0 " +
                                  shape_str(arrays[0]));
        const int off = batch_ndim - 3;
        const py::ssize_t d0 = a.shape(off), d1 = a.shape(off + 1), d2 = a.shape(off + 2);
        const bool nchw = d1 == h && d2 == w, nhwc = d0 == h && d1 == w;
        bool channels_last;
        if (layout == "nchw" || (layout == "auto" && nchw)) {
            channels_last = false;
        } else if (layout == "nhwc" || (layout == "auto" && nhwc)) {
            channels_last = true;
        } else {
            throw py::value_error(name + " has shape " + shape_str(a) + " but the " + std::to_string(h) + "x" +
                                  std::to_string(w) + " grid of input " + std::to_string(in_h) + "x" +
                                  std::to_string(in_w) + " fits neither NCHW nor NHWC");
        }
        if ((channels_last && !nhwc) || (!channels_last && !nchw))
            throw py::value_error(name + " has shape " + shape_str(a) + ", which is not " + layout + " for a " +
                                  std::to_string(h) + "x" + std::to_string(w) + " grid");
        const py::ssize_t channels = channels_last ? d2 : d0;
        const py::ssize_t want = kind == 0 ? 4 : kind == 1 ? 1 : (num_classes < 0 ? channels : num_classes);
        if (channels != want || channels < 1)
            throw py::value_error(name + " has " + std::to_string(channels) + " channels, expected " +
                                  std::to_string(want));
        if (kind == 2) num_classes = static_cast<int>(channels);

        const std::ptrdiff_t plane = static_cast<std::ptrdiff_t>(h) * w;
        const yolox::MapView proto{nullptr, channels_last ? 1 : plane, channels_last ? channels : 1};
        for (py::ssize_t b = 0; b < batch; ++b) {
            yolox::Level& lv = out[b][level];
            lv.h = h;
            lv.w = w;
            lv.stride = strides[level];
            yolox::MapView view = proto;
            view.data = a.data() + b * channels * plane;
            (kind == 0 ? lv.reg : kind == 1 ? lv.obj : lv.cls) = view;
        }
    }
    return out;
}

template <typename T>
T at_or_last(const std::vector<T>& v, size_t i) {
    return v[std::min(i, v.size() - 1)];
}

py::list postprocess(const py::sequence& outputs, std::pair<int, int> input_size, float conf, float iou,
                     bool class_agnostic, int max_det, bool multi_label, bool apply_sigmoid, bool decode_boxes,
                     std::vector<int> strides, const std::string& layout, std::vector<float> ratios,
                     std::vector<std::pair<float, float>> pads, std::vector<std::pair<float, float>> frame_sizes) {
    const auto [in_h, in_w] = input_size;
    if (in_h <= 0 || in_w <= 0) throw py::value_error("input_size must be positive (h, w)");
    if (strides.empty()) throw py::value_error("strides must not be empty");
    for (int s : strides)
        if (s <= 0) throw py::value_error("strides must be positive, got " + std::to_string(s));
    if (max_det < 0) throw py::value_error("max_det must be >= 0");
    if (layout != "auto" && layout != "nchw" && layout != "nhwc")
        throw py::value_error("layout must be 'auto', 'nchw' or 'nhwc', got '" + layout + "'");
    if (ratios.empty() || pads.empty() || frame_sizes.empty())
        throw py::value_error("ratio, pad and frame_size need at least one value");
    for (float r : ratios)
        if (!(r > 0.0f) || !std::isfinite(r)) throw py::value_error("ratio must be a positive finite number");
    if (py::len(outputs) == 0) throw py::value_error("no outputs given");

    std::vector<FloatArray> arrays;
    for (size_t i = 0; i < py::len(outputs); ++i) arrays.push_back(as_float(outputs[i], i));

    int num_classes = 0;
    const auto batches = arrays.size() == 1
                             ? single_levels(arrays[0], in_h, in_w, strides, decode_boxes, num_classes)
                             : split_levels(arrays, in_h, in_w, strides, layout, num_classes);
    if ((ratios.size() > 1 && ratios.size() != batches.size()) || (pads.size() > 1 && pads.size() != batches.size()) ||
        (frame_sizes.size() > 1 && frame_sizes.size() != batches.size()))
        throw py::value_error("ratio, pad and frame_size need one value or one per image (batch of " +
                              std::to_string(batches.size()) + ")");

    yolox::DecodeOptions opts;
    opts.conf = conf;
    opts.num_classes = num_classes;
    opts.apply_sigmoid = apply_sigmoid;
    opts.decode_boxes = decode_boxes;
    opts.multi_label = multi_label;

    std::vector<std::vector<yolox::Detection>> results(batches.size());
    {
        py::gil_scoped_release release;  // the arrays above stay alive; no Python calls below
        std::vector<yolox::Detection> candidates;
        for (size_t b = 0; b < batches.size(); ++b) {
            candidates.clear();
            yolox::decode(batches[b], opts, candidates);
            results[b] = yolox::nms(std::move(candidates), iou, class_agnostic, max_det);
            const auto [pad_x, pad_y] = at_or_last(pads, b);
            const auto [frame_h, frame_w] = at_or_last(frame_sizes, b);
            yolox::unletterbox(results[b], at_or_last(ratios, b), pad_x, pad_y, frame_w, frame_h);
        }
    }

    py::list out;
    for (const auto& dets : results) {
        py::array_t<float> arr({static_cast<py::ssize_t>(dets.size()), static_cast<py::ssize_t>(6)});
        float* p = arr.mutable_data();
        for (const auto& d : dets) {
            *p++ = d.x1;
            *p++ = d.y1;
            *p++ = d.x2;
            *p++ = d.y2;
            *p++ = d.score;
            *p++ = static_cast<float>(d.cls);
        }
        out.append(arr);
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "edge-yolox C++ core: YOLOX decode and NMS";
    m.def("postprocess", &postprocess, py::arg("outputs"), py::arg("input_size"), py::arg("conf"), py::arg("iou"),
          py::arg("class_agnostic"), py::arg("max_det"), py::arg("multi_label"), py::arg("apply_sigmoid"),
          py::arg("decode_boxes"), py::arg("strides"), py::arg("layout"), py::arg("ratios"), py::arg("pads"),
          py::arg("frame_sizes"),
          "Decode + NMS for a batch: returns one float32 [K, 6] array (x1, y1, x2, y2, score, class_id) per image.");
}
