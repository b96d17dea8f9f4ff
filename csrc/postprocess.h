// From raw head outputs to detections in source-frame pixels: reads the outputs' layout (the official single
// tensor or split per-stride maps, NCHW or NHWC, batched or not), then decode, NMS and the letterbox undo per image.
// Every check of shapes and arguments is here; a bad input throws std::invalid_argument with a message naming it.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "decode.h"

namespace yolox {

// The grid a stride-`stride` head map has for an input of `size` pixels: ceil(size / stride), what YOLOX's
// stride-2, 3x3, pad-1 convolutions produce (each rounds up). The one rule for every layer that needs a grid.
int grid_size(int size, int stride);

// (h, w) of each stride's map for an input of in_h x in_w; strides must be positive.
std::vector<std::pair<int, int>> grid_shapes(int in_h, int in_w, const std::vector<int>& strides);

// A read-only, C-contiguous float array that the caller keeps alive (a numpy array's data and shape).
struct Tensor {
    const float* data = nullptr;
    std::vector<std::ptrdiff_t> shape;
};

// Every field is set by the caller: the defaults users see live in one place (edge_yolox.postprocess).
struct PostprocessOptions {
    int in_h = 0, in_w = 0;  // model input size
    float conf = 0.0f;
    float iou = 0.0f;
    bool nms = true;  // false: an end-to-end model's outputs, threshold + top-k only (iou, class_agnostic unused)
    bool class_agnostic = false;
    int max_det = 0;
    bool multi_label = false;
    bool apply_sigmoid = false;
    bool decode_boxes = true;
    std::vector<int> strides;
    std::string layout = "auto";  // split maps: "auto" (by grid), "nchw" or "nhwc"
    // Letterbox undo, one value for all images or one per image: scale, (x, y) pad, source (h, w) for clipping.
    std::vector<float> ratios;
    std::vector<std::pair<float, float>> pads;
    std::vector<std::pair<float, float>> frame_sizes;
};

// One list of detections per image of the batch, each ordered by score.
std::vector<std::vector<Detection>> postprocess(const std::vector<Tensor>& outputs, const PostprocessOptions& opts);

}  // namespace yolox
