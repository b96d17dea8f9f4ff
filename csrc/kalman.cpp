#include "kalman.h"

namespace yolox {
namespace {

// Standard deviations relative to the box height (ByteTrack's weights): a tall, close box moves more pixels
// per frame than a small, far one. The aspect ratio has fixed, small deviations: boxes rarely change shape.
constexpr double kPosWeight = 1.0 / 20;
constexpr double kVelWeight = 1.0 / 160;
constexpr int kAspect = 2;

inline double sq(double x) { return x * x; }

// Deviation of coordinate k: the height-relative one, or the aspect ratio's fixed one.
inline double deviation(int k, double height_relative, double aspect) {
    return k == kAspect ? aspect : height_relative;
}

}  // namespace

KalmanBox KalmanBox::initiate(const Vec4& z) {
    KalmanBox kf;
    kf.pos = z;
    const double h = z[3];
    for (int k = 0; k < 4; ++k) {
        // Initial uncertainty: twice the per-frame position noise; the unknown velocity ten times its own.
        kf.p_pp[k] = sq(deviation(k, 2 * kPosWeight * h, 1e-2));
        kf.p_vv[k] = sq(deviation(k, 10 * kVelWeight * h, 1e-5));
    }
    return kf;
}

void KalmanBox::predict() {
    const double h = pos[3];  // noise scaled by the height before the step
    for (int k = 0; k < 4; ++k) {
        pos[k] += vel[k];
        // F P F^T with F = [[1, 1], [0, 1]], plus the process noise Q.
        p_pp[k] = (p_pp[k] + p_pv[k]) + (p_pv[k] + p_vv[k]) + sq(deviation(k, kPosWeight * h, 1e-2));
        p_pv[k] = p_pv[k] + p_vv[k];
        p_vv[k] = p_vv[k] + sq(deviation(k, kVelWeight * h, 1e-5));
    }
}

void KalmanBox::update(const Vec4& z) {
    const double h = pos[3];  // measurement noise scaled by the predicted height
    for (int k = 0; k < 4; ++k) {
        const double s = p_pp[k] + sq(deviation(k, kPosWeight * h, 1e-1));  // innovation variance
        const double gain_p = p_pp[k] / s, gain_v = p_pv[k] / s;            // Kalman gain
        const double innovation = z[k] - pos[k];
        pos[k] += gain_p * innovation;
        vel[k] += gain_v * innovation;
        // P - K S K^T
        const double pp = p_pp[k] - gain_p * s * gain_p;
        const double pv = p_pv[k] - gain_p * s * gain_v;
        p_vv[k] = p_vv[k] - gain_v * s * gain_v;
        p_pp[k] = pp;
        p_pv[k] = pv;
    }
}

Vec4 KalmanBox::box() const {
    const double w = pos[2] * pos[3];
    const double x1 = pos[0] - w / 2, y1 = pos[1] - pos[3] / 2;
    return {x1, y1, x1 + w, y1 + pos[3]};
}

}  // namespace yolox
