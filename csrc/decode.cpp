#include "decode.h"

#include <cmath>

namespace yolox {
namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

inline bool finite_box(const Detection& d) {
    return std::isfinite(d.x1) && std::isfinite(d.y1) && std::isfinite(d.x2) && std::isfinite(d.y2) &&
           std::isfinite(d.score);
}

}  // namespace

void decode(const std::vector<Level>& levels, const DecodeOptions& opts, std::vector<Detection>& out) {
    const auto score_of = [&](float v) { return opts.apply_sigmoid ? sigmoid(v) : v; };
    for (const Level& lv : levels) {
        const float s = static_cast<float>(lv.stride);
        for (int gy = 0; gy < lv.h; ++gy) {
            for (int gx = 0; gx < lv.w; ++gx) {
                const std::ptrdiff_t p = static_cast<std::ptrdiff_t>(gy) * lv.w + gx;
                const float obj = score_of(lv.obj.at(0, p));
                // Class scores are at most 1, so obj alone bounds the score: most anchors stop here.
                if (!(obj >= opts.conf)) continue;

                Detection d{};
                const float tx = lv.reg.at(0, p), ty = lv.reg.at(1, p);
                const float tw = lv.reg.at(2, p), th = lv.reg.at(3, p);
                float cx = tx, cy = ty, w = tw, h = th;
                if (opts.decode_boxes) {
                    cx = (tx + gx) * s;
                    cy = (ty + gy) * s;
                    w = std::exp(tw) * s;
                    h = std::exp(th) * s;
                }
                d.x1 = cx - 0.5f * w;
                d.y1 = cy - 0.5f * h;
                d.x2 = cx + 0.5f * w;
                d.y2 = cy + 0.5f * h;

                if (opts.multi_label) {
                    for (int c = 0; c < opts.num_classes; ++c) {
                        d.score = obj * score_of(lv.cls.at(c, p));
                        d.cls = c;
                        if (d.score >= opts.conf && finite_box(d)) out.push_back(d);
                    }
                    continue;
                }
                int best = -1;
                float best_score = -1.0f;
                for (int c = 0; c < opts.num_classes; ++c) {
                    const float v = lv.cls.at(c, p);  // sigmoid is monotonic: compare raw values
                    if (std::isnan(v)) continue;
                    if (best < 0 || v > best_score) {
                        best = c;
                        best_score = v;
                    }
                }
                if (best < 0) continue;
                d.score = obj * score_of(best_score);
                d.cls = best;
                if (d.score >= opts.conf && finite_box(d)) out.push_back(d);
            }
        }
    }
}

}  // namespace yolox
