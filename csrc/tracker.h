// ByteTrack (Zhang et al., ECCV 2022): multi-object tracking by associating every detection box, the low-score
// ones included, with Kalman-predicted tracks. Same algorithm and outputs as the reference implementation
// (github:ifzhang/ByteTrack, yolox/tracker/), with IoU on continuous coordinates (no +1 pixel term, like nms.h)
// and bounded state.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kalman.h"
#include "postprocess.h"

namespace yolox {

struct TrackerOptions {
    double track_thresh = 0.5;  // high-score detections: score > track_thresh; new tracks need track_thresh + 0.1
    double low_thresh = 0.1;    // low-score detections (second association): low_thresh < score < track_thresh
    double match_thresh = 0.8;  // first association: largest fused cost 1 - IoU * score that may match
    int buffer = 30;            // frames a lost track is kept
    int max_tracks = 1000;      // live (tracked + lost) tracks at most
    bool per_class = false;     // a track only takes detections of its own class
};

struct TrackBox {
    int id;
    Vec4 box;  // x1, y1, x2, y2 of the Kalman state
    float score;
    int cls;
};

struct TrackerResult {
    std::vector<int> ids;          // per detection row: its track's id, 0 when not in an activated, tracked track
    std::vector<TrackBox> tracks;  // the activated tracked tracks, in the reference's order
    std::vector<int> ended;        // ids of activated tracks dropped this frame
};

class ByteTracker {
public:
    explicit ByteTracker(const TrackerOptions& opts);  // std::invalid_argument on an out-of-range option

    // dets: [K, 6] rows of x1, y1, x2, y2, score, class_id; every value finite (std::invalid_argument otherwise).
    // Rows whose box has no area are ignored (id 0): a Kalman state needs a height and an aspect ratio.
    TrackerResult update(const Tensor& dets);
    void reset();
    size_t size() const { return tracked_.size() + lost_.size(); }

private:
    enum class State { Tracked, Lost, Removed };
    struct Track {
        KalmanBox kf;
        int id = 0;
        State state = State::Tracked;
        bool activated = false;  // confirmed: matched on a second frame (or created on the first frame)
        int64_t start_frame = 0, frame = 0;  // first frame, latest frame with a detection
        int64_t removed_frame = 0;           // the frame it was first marked removed (0: never)
        float score = 0.0f;
        int cls = 0;
        int det = -1;  // this frame's detection row, -1 when none
    };
    struct Det {
        Vec4 box;  // x1, y1, x2, y2
        Vec4 xyah;
        float score;
        int cls;
        int row;
    };
    struct Matches {
        std::vector<std::pair<int, int>> pairs;  // (track slot, detection index), in track order
        std::vector<int> tracks_left, dets_left;
    };

    Matches associate(const std::vector<int>& tracks, const std::vector<int>& dets, bool fuse_score,
                      double limit) const;
    void take(int slot, const Det& det);
    int create(const Det& det);
    void drop(int slot, std::vector<int>& ended);
    void remove_duplicates(std::vector<int>& tracked, std::vector<int>& lost, std::vector<int>& ended);

    TrackerOptions opts_;
    int64_t frame_ = 0;
    int next_id_ = 1;
    std::vector<Track> slots_;  // live tracks, addressed by slot; freed slots are reused (bounded by max_tracks)
    std::vector<int> free_;
    std::vector<int> tracked_, lost_;  // slots, in the reference's list order
    std::vector<Det> dets_;
};

}  // namespace yolox
