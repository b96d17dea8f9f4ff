// Python bindings of the core (postprocess.h): numpy arrays in as read-only float views, detections out as
// numpy arrays, the GIL released while the core runs. Every check lives in the core; its std::invalid_argument
// reaches Python as ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "postprocess.h"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

namespace {

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

py::list postprocess(const py::sequence& outputs, std::pair<int, int> input_size, float conf, float iou,
                     bool class_agnostic, int max_det, bool multi_label, bool apply_sigmoid, bool decode_boxes,
                     std::vector<int> strides, const std::string& layout, std::vector<float> ratios,
                     std::vector<std::pair<float, float>> pads, std::vector<std::pair<float, float>> frame_sizes) {
    std::vector<FloatArray> arrays;  // keeps converted copies alive while the core reads them
    std::vector<yolox::Tensor> tensors;
    for (size_t i = 0; i < py::len(outputs); ++i) {
        arrays.push_back(as_float(outputs[i], i));
        const FloatArray& a = arrays.back();
        tensors.push_back({a.data(), std::vector<std::ptrdiff_t>(a.shape(), a.shape() + a.ndim())});
    }
    yolox::PostprocessOptions opts;
    std::tie(opts.in_h, opts.in_w) = input_size;
    opts.conf = conf;
    opts.iou = iou;
    opts.class_agnostic = class_agnostic;
    opts.max_det = max_det;
    opts.multi_label = multi_label;
    opts.apply_sigmoid = apply_sigmoid;
    opts.decode_boxes = decode_boxes;
    opts.strides = std::move(strides);
    opts.layout = layout;
    opts.ratios = std::move(ratios);
    opts.pads = std::move(pads);
    opts.frame_sizes = std::move(frame_sizes);

    std::vector<std::vector<yolox::Detection>> results;
    {
        py::gil_scoped_release release;  // the core makes no Python calls
        results = yolox::postprocess(tensors, opts);
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
    m.def("grid_shapes", &yolox::grid_shapes, py::arg("in_h"), py::arg("in_w"), py::arg("strides"),
          "(h, w) of each stride's head map for an input of in_h x in_w: ceil(size / stride), the model's own rule.");
}
