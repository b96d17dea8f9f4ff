// The Kalman filter ByteTrack (after SORT/DeepSORT) runs on every track: a box as (cx, cy, aspect = w / h, h)
// moving at constant velocity, with noise proportional to the box height.
#pragma once

#include <array>

namespace yolox {

using Vec4 = std::array<double, 4>;

// The motion model (position += velocity), the observation (the position only) and every noise matrix act on
// each coordinate and its own velocity alone, and a new track's covariance is diagonal: so the 8x8 covariance
// stays four independent 2x2 blocks, exactly. The filter is stored and run as four 1-D constant-velocity
// filters; tests/test_tracker.py checks it against the full 8x8 equations.
struct KalmanBox {
    Vec4 pos{};  // cx, cy, aspect, h
    Vec4 vel{};
    Vec4 p_pp{}, p_pv{}, p_vv{};  // per coordinate: var(position), cov(position, velocity), var(velocity)

    // A new track at measurement z (cx, cy, aspect, h), velocity 0.
    static KalmanBox initiate(const Vec4& z);
    // One frame ahead.
    void predict();
    // Corrects the state with measurement z.
    void update(const Vec4& z);
    // The state's box as x1, y1, x2, y2.
    Vec4 box() const;
};

}  // namespace yolox
