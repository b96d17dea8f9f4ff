// Python bindings of the core (postprocess.h, tracker.h, assignment.h): numpy arrays in as read-only views,
// results out as numpy arrays, the GIL released while the core runs. Every check of values lives in the core; its
// std::invalid_argument reaches Python as ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "assignment.h"
#include "postprocess.h"
#include "tracker.h"

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
                     std::vector<std::pair<float, float>> pads, std::vector<std::pair<float, float>> frame_sizes,
                     bool nms) {
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
    opts.nms = nms;
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

// The tracker and a lock: with the GIL released, two Python threads could otherwise update one tracker at once.
struct LockedTracker {
    yolox::ByteTracker tracker;
    std::mutex mutex;
};

template <typename T>
py::array_t<T> array_of(const std::vector<T>& values) {
    py::array_t<T> arr(static_cast<py::ssize_t>(values.size()));
    std::copy(values.begin(), values.end(), arr.mutable_data());
    return arr;
}

py::tuple track_update(LockedTracker& self, const FloatArray& dets) {
    const yolox::Tensor t{dets.data(), std::vector<std::ptrdiff_t>(dets.shape(), dets.shape() + dets.ndim())};
    yolox::TrackerResult r;
    {
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(self.mutex);
        r = self.tracker.update(t);
    }
    py::array_t<double> tracks({static_cast<py::ssize_t>(r.tracks.size()), static_cast<py::ssize_t>(7)});
    double* p = tracks.mutable_data();
    for (const auto& tb : r.tracks) {
        *p++ = tb.id;
        for (double v : tb.box) *p++ = v;
        *p++ = tb.score;
        *p++ = tb.cls;
    }
    return py::make_tuple(array_of(r.ids), tracks, array_of(r.ended));
}

py::tuple linear_assignment(const py::array_t<double, py::array::c_style | py::array::forcecast>& cost,
                            double cost_limit) {
    if (cost.ndim() != 2) throw std::invalid_argument("cost must be a 2-D array");
    const int rows = static_cast<int>(cost.shape(0)), cols = static_cast<int>(cost.shape(1));
    const std::vector<double> c(cost.data(), cost.data() + cost.size());
    yolox::Assignment a;
    {
        py::gil_scoped_release release;
        a = yolox::assign(c, rows, cols, cost_limit);
    }
    return py::make_tuple(array_of(a.row_to_col), array_of(a.col_to_row));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "edge-yolox C++ core: YOLOX decode and NMS, ByteTrack";
    m.def("postprocess", &postprocess, py::arg("outputs"), py::arg("input_size"), py::arg("conf"), py::arg("iou"),
          py::arg("class_agnostic"), py::arg("max_det"), py::arg("multi_label"), py::arg("apply_sigmoid"),
          py::arg("decode_boxes"), py::arg("strides"), py::arg("layout"), py::arg("ratios"), py::arg("pads"),
          py::arg("frame_sizes"), py::arg("nms") = true,
          "Decode + NMS (nms=False: threshold + top-k, for end-to-end models) for a batch: returns one float32 "
          "[K, 6] array (x1, y1, x2, y2, score, class_id) per image.");
    m.def("grid_shapes", &yolox::grid_shapes, py::arg("in_h"), py::arg("in_w"), py::arg("strides"),
          "(h, w) of each stride's head map for an input of in_h x in_w: ceil(size / stride), the model's own rule.");
    py::class_<LockedTracker>(m, "ByteTracker", "ByteTrack multi-object tracker (csrc/tracker.h).")
        .def(py::init([](double track_thresh, double low_thresh, double match_thresh, int buffer, int max_tracks,
                         bool per_class) {
                 return new LockedTracker{yolox::ByteTracker(
                     {track_thresh, low_thresh, match_thresh, buffer, max_tracks, per_class})};
             }),
             py::arg("track_thresh") = 0.5, py::arg("low_thresh") = 0.1, py::arg("match_thresh") = 0.8,
             py::arg("buffer") = 30, py::arg("max_tracks") = 1000, py::arg("per_class") = false)
        .def("update", &track_update, py::arg("dets"),
             "dets float32 [K, 6] (x1, y1, x2, y2, score, class_id) -> (ids int32 [K], tracks float64 [M, 7] "
             "(id, x1, y1, x2, y2, score, class_id), ended int32 [E])")
        .def("reset", [](LockedTracker& self) {
            std::lock_guard<std::mutex> lock(self.mutex);
            self.tracker.reset();
        })
        .def("__len__", [](LockedTracker& self) {
            std::lock_guard<std::mutex> lock(self.mutex);
            return self.tracker.size();
        });
    m.def("linear_assignment", &linear_assignment, py::arg("cost"), py::arg("cost_limit"),
          "ByteTrack's assignment, lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit): (row_to_col, "
          "col_to_row), -1 where unassigned.");
}
