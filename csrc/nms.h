// Greedy non-maximum suppression and the letterbox undo.
#pragma once

#include <vector>

#include "decode.h"

namespace yolox {

// Keeps the highest-scoring boxes, suppressing any box whose IoU with a kept box of the same class
// (any class when agnostic) exceeds iou_threshold. IoU has no +1 pixel term. Returns at most max_det
// boxes ordered by score (ties keep their input order).
std::vector<Detection> nms(std::vector<Detection> dets, float iou_threshold, bool agnostic, int max_det);

// The end-to-end (NMS-free) selection: the max_det highest-scoring boxes, ordered by score (ties keep their input
// order), nothing suppressed.
std::vector<Detection> top_k(std::vector<Detection> dets, int max_det);

// Maps boxes from letterboxed input pixels back to the source frame: subtract the pad, divide by the
// scale, and clip to [0, frame_w] × [0, frame_h] when those are positive.
void unletterbox(std::vector<Detection>& dets, float ratio, float pad_x, float pad_y, float frame_w,
                 float frame_h);

}  // namespace yolox
