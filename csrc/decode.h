// Decoding YOLOX head outputs into scored boxes (input-image pixels, before NMS).
#pragma once

#include <cstddef>
#include <vector>

namespace yolox {

struct Detection {
    float x1, y1, x2, y2;
    float score;
    int cls;
};

// A read-only view of one head map over an h×w grid. The two steps cover every layout we meet:
// NCHW (channel_step = h·w, pixel_step = 1), NHWC (1, C) and rows of the official [N, 5+C] tensor (1, 5+C).
struct MapView {
    const float* data = nullptr;
    std::ptrdiff_t channel_step = 0;
    std::ptrdiff_t pixel_step = 0;

    float at(int channel, std::ptrdiff_t pixel) const {
        return data[channel * channel_step + pixel * pixel_step];
    }
};

// One stride level: box regression (4 channels), objectness (1) and class scores (num_classes).
struct Level {
    MapView reg, obj, cls;
    int h = 0, w = 0;
    int stride = 0;
};

struct DecodeOptions {
    float conf = 0.0f;  // set by the caller, like PostprocessOptions
    int num_classes = 0;
    bool apply_sigmoid = false;  // scores are logits
    bool decode_boxes = true;    // boxes are raw grid offsets / log sizes, not cx, cy, w, h
    bool multi_label = false;    // every class above conf, not only the best one
};

// Appends every candidate whose score (obj · cls) reaches opts.conf. Rows with a non-finite box or score
// are dropped, so NaN/inf from a broken model never reach NMS.
void decode(const std::vector<Level>& levels, const DecodeOptions& opts, std::vector<Detection>& out);

}  // namespace yolox
