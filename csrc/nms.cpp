#include "nms.h"

#include <algorithm>
#include <unordered_map>

namespace yolox {
namespace {

inline float area(const Detection& d) { return std::max(0.0f, d.x2 - d.x1) * std::max(0.0f, d.y2 - d.y1); }

inline float iou(const Detection& a, const Detection& b) {
    const float iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
    const float ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
    if (iw <= 0.0f || ih <= 0.0f) return 0.0f;
    const float inter = iw * ih;
    const float uni = area(a) + area(b) - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

}  // namespace

std::vector<Detection> nms(std::vector<Detection> dets, float iou_threshold, bool agnostic, int max_det) {
    std::stable_sort(dets.begin(), dets.end(),
                     [](const Detection& a, const Detection& b) { return a.score > b.score; });
    // One pass in global score order: whether a box survives depends only on higher-scoring boxes of
    // its own class, so the first max_det survivors are exactly the top max_det after full NMS.
    std::vector<Detection> kept;
    std::unordered_map<int, std::vector<Detection>> kept_by_class;
    for (const Detection& d : dets) {
        if (static_cast<int>(kept.size()) >= max_det) break;
        std::vector<Detection>& same = kept_by_class[agnostic ? 0 : d.cls];
        const bool suppressed =
            std::any_of(same.begin(), same.end(), [&](const Detection& k) { return iou(k, d) > iou_threshold; });
        if (suppressed) continue;
        same.push_back(d);
        kept.push_back(d);
    }
    return kept;
}

std::vector<Detection> top_k(std::vector<Detection> dets, int max_det) {
    const auto by_score = [](const Detection& a, const Detection& b) { return a.score > b.score; };
    if (static_cast<size_t>(max_det) < dets.size()) {
        // Partition around the max_det-th score, then order the kept part; stable on the input order for ties,
        // like nms(): nth_element alone is not, so the boundary ties are settled by their original position.
        std::vector<size_t> order(dets.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        const auto rank = [&](size_t a, size_t b) {
            return dets[a].score > dets[b].score || (dets[a].score == dets[b].score && a < b);
        };
        std::nth_element(order.begin(), order.begin() + max_det, order.end(), rank);
        order.resize(static_cast<size_t>(max_det));
        std::sort(order.begin(), order.end(), rank);
        std::vector<Detection> kept;
        kept.reserve(order.size());
        for (size_t i : order) kept.push_back(dets[i]);
        return kept;
    }
    std::stable_sort(dets.begin(), dets.end(), by_score);
    return dets;
}

void unletterbox(std::vector<Detection>& dets, float ratio, float pad_x, float pad_y, float frame_w,
                 float frame_h) {
    for (Detection& d : dets) {
        d.x1 = (d.x1 - pad_x) / ratio;
        d.x2 = (d.x2 - pad_x) / ratio;
        d.y1 = (d.y1 - pad_y) / ratio;
        d.y2 = (d.y2 - pad_y) / ratio;
        if (frame_w > 0.0f) {
            d.x1 = std::clamp(d.x1, 0.0f, frame_w);
            d.x2 = std::clamp(d.x2, 0.0f, frame_w);
        }
        if (frame_h > 0.0f) {
            d.y1 = std::clamp(d.y1, 0.0f, frame_h);
            d.y2 = std::clamp(d.y2, 0.0f, frame_h);
        }
    }
}

}  // namespace yolox
