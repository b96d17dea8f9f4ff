#include "tracker.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "assignment.h"

namespace yolox {
namespace {

// The reference's fixed limits: low-score detections and unconfirmed tracks match on IoU cost (1 - IoU) below
// 0.5 and 0.7 (fused cost for the latter), and a tracked and a lost track are the same object above IoU 0.85.
constexpr double kLowMatch = 0.5;
constexpr double kUnconfirmedMatch = 0.7;
constexpr double kDuplicate = 0.15;
constexpr double kNewTrackMargin = 0.1;  // new tracks need track_thresh + 0.1: a stricter bar than matching

double iou(const Vec4& a, const Vec4& b) {
    const double iw = std::min(a[2], b[2]) - std::max(a[0], b[0]);
    const double ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
    if (iw <= 0 || ih <= 0) return 0.0;
    const double inter = iw * ih;
    const double uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return uni > 0 ? inter / uni : 0.0;
}

void check(bool ok, const std::string& name, double value, const std::string& allowed) {
    if (!ok) throw std::invalid_argument(name + " must be " + allowed + " (got " + std::to_string(value) + ")");
}

}  // namespace

ByteTracker::ByteTracker(const TrackerOptions& opts) : opts_(opts) {
    check(opts.track_thresh >= 0 && opts.track_thresh <= 1, "track_thresh", opts.track_thresh, "in [0, 1]");
    check(opts.low_thresh >= 0 && opts.low_thresh <= opts.track_thresh, "low_thresh", opts.low_thresh,
          "in [0, track_thresh]");
    check(opts.match_thresh > 0 && opts.match_thresh <= 1, "match_thresh", opts.match_thresh, "in (0, 1]");
    check(opts.buffer >= 0, "buffer", opts.buffer, ">= 0");
    check(opts.max_tracks >= 1, "max_tracks", opts.max_tracks, ">= 1");
}

void ByteTracker::reset() {
    frame_ = 0;
    next_id_ = 1;
    slots_.clear();
    free_.clear();
    tracked_.clear();
    lost_.clear();
}

ByteTracker::Matches ByteTracker::associate(const std::vector<int>& tracks, const std::vector<int>& dets,
                                            bool fuse_score, double limit) const {
    const int rows = static_cast<int>(tracks.size()), cols = static_cast<int>(dets.size());
    std::vector<double> cost(static_cast<size_t>(rows) * cols);
    for (int i = 0; i < rows; ++i) {
        const Track& t = slots_[tracks[i]];
        const Vec4 box = t.kf.box();
        for (int j = 0; j < cols; ++j) {
            const Det& d = dets_[dets[j]];
            double& c = cost[static_cast<size_t>(i) * cols + j];
            if (opts_.per_class && t.cls != d.cls) {
                c = std::numeric_limits<double>::infinity();
                continue;
            }
            // Fused with the score, a confident detection wins an overlap a weak one would also claim.
            const double overlap = iou(box, d.box);
            c = 1.0 - (fuse_score ? overlap * d.score : overlap);
        }
    }
    const Assignment a = assign(cost, rows, cols, limit);
    Matches m;
    for (int i = 0; i < rows; ++i) {
        if (a.row_to_col[i] >= 0)
            m.pairs.emplace_back(tracks[i], dets[a.row_to_col[i]]);
        else
            m.tracks_left.push_back(tracks[i]);
    }
    for (int j = 0; j < cols; ++j)
        if (a.col_to_row[j] < 0) m.dets_left.push_back(dets[j]);
    return m;
}

void ByteTracker::take(int slot, const Det& det) {
    Track& t = slots_[slot];
    t.kf.update(det.xyah);
    t.state = State::Tracked;
    t.activated = true;
    t.frame = frame_;
    t.score = det.score;
    t.cls = det.cls;  // class-agnostic tracks follow their latest detection's class
    t.det = det.row;
}

int ByteTracker::create(const Det& det) {
    Track t;
    t.kf = KalmanBox::initiate(det.xyah);
    t.id = next_id_;
    next_id_ = next_id_ == std::numeric_limits<int>::max() ? 1 : next_id_ + 1;
    // Only the first frame's tracks are confirmed at once; later ones must match again on the next frame.
    t.activated = frame_ == 1;
    t.start_frame = t.frame = frame_;
    t.score = det.score;
    t.cls = det.cls;
    t.det = det.row;
    if (free_.empty()) {
        slots_.push_back(t);
        return static_cast<int>(slots_.size()) - 1;
    }
    const int slot = free_.back();
    free_.pop_back();
    slots_[slot] = t;
    return slot;
}

void ByteTracker::drop(int slot, std::vector<int>& ended) {
    if (slots_[slot].activated) ended.push_back(slots_[slot].id);
    free_.push_back(slot);
}

// A tracked and a lost track over the same box are one object seen twice: keep the one followed longer.
void ByteTracker::remove_duplicates(std::vector<int>& tracked, std::vector<int>& lost, std::vector<int>& ended) {
    std::vector<char> dup_tracked(tracked.size()), dup_lost(lost.size());
    std::vector<Vec4> lost_boxes;
    for (int s : lost) lost_boxes.push_back(slots_[s].kf.box());
    for (size_t p = 0; p < tracked.size(); ++p) {
        const Track& a = slots_[tracked[p]];
        const Vec4 box = a.kf.box();
        for (size_t q = 0; q < lost.size(); ++q) {
            const Track& b = slots_[lost[q]];
            if (opts_.per_class && a.cls != b.cls) continue;
            if (1.0 - iou(box, lost_boxes[q]) >= kDuplicate) continue;
            if (a.frame - a.start_frame > b.frame - b.start_frame)
                dup_lost[q] = 1;
            else
                dup_tracked[p] = 1;
        }
    }
    auto keep = [&](std::vector<int>& list, const std::vector<char>& dup) {
        size_t n = 0;
        for (size_t i = 0; i < list.size(); ++i) {
            if (dup[i])
                drop(list[i], ended);
            else
                list[n++] = list[i];
        }
        list.resize(n);
    };
    keep(tracked, dup_tracked);
    keep(lost, dup_lost);
}

TrackerResult ByteTracker::update(const Tensor& in) {
    if (in.shape.size() != 2 || in.shape[1] != 6) {
        std::string s;
        for (auto d : in.shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
        throw std::invalid_argument("detections must be a [K, 6] array (x1, y1, x2, y2, score, class_id), got shape (" +
                                    s + ")");
    }
    const int rows = static_cast<int>(in.shape[0]);
    for (std::ptrdiff_t i = 0; i < in.shape[0] * 6; ++i)
        if (!std::isfinite(in.data[i]))
            throw std::invalid_argument("detections row " + std::to_string(i / 6) + " has a non-finite value");
    for (int r = 0; r < rows; ++r)
        if (std::fabs(in.data[r * 6 + 5]) >= 2147483648.0f)
            throw std::invalid_argument("detections row " + std::to_string(r) + " has a class_id out of range");

    ++frame_;
    // Scores are float32; thresholds are compared in float32, as the reference's numpy does.
    const float high = static_cast<float>(opts_.track_thresh), low = static_cast<float>(opts_.low_thresh);
    const float new_track = static_cast<float>(opts_.track_thresh + kNewTrackMargin);
    dets_.clear();
    std::vector<int> high_dets, low_dets;
    for (int r = 0; r < rows; ++r) {
        const float* p = in.data + r * 6;
        // Widths in the detector's float32 and the rest in double, as the reference computes them.
        const double x1 = p[0], y1 = p[1], w = p[2] - p[0], h = p[3] - p[1];
        if (!(w > 0 && h > 0)) continue;
        const float score = p[4];
        if (!(score > high) && !(score > low && score < high)) continue;
        (score > high ? high_dets : low_dets).push_back(static_cast<int>(dets_.size()));
        dets_.push_back({{x1, y1, x1 + w, y1 + h}, {x1 + w / 2, y1 + h / 2, w / h, h}, score,
                         static_cast<int>(p[5]), r});
    }

    // Confirmed tracks and lost ones are predicted and matched first; unconfirmed ones (one frame old) are
    // neither predicted nor offered the low-score detections.
    std::vector<int> unconfirmed, pool;
    for (int s : tracked_) (slots_[s].activated ? pool : unconfirmed).push_back(s);
    pool.insert(pool.end(), lost_.begin(), lost_.end());
    for (int s : unconfirmed) slots_[s].det = -1;
    for (int s : pool) {
        Track& t = slots_[s];
        t.det = -1;
        if (t.state != State::Tracked) t.kf.vel[3] = 0;  // an unseen box does not keep growing or shrinking
        t.kf.predict();
    }

    // 1. High-score detections against confirmed and lost tracks, IoU fused with the score.
    std::vector<int> refound;
    const Matches first = associate(pool, high_dets, true, opts_.match_thresh);
    for (const auto& [s, d] : first.pairs) {
        if (slots_[s].state != State::Tracked) refound.push_back(s);
        take(s, dets_[d]);
    }
    // 2. Low-score detections (occluded, blurred objects) against the tracked tracks still unmatched, plain IoU:
    // ByteTrack's idea — such boxes keep a track alive instead of being discarded as background.
    std::vector<int> remaining;
    for (int s : first.tracks_left)
        if (slots_[s].state == State::Tracked) remaining.push_back(s);
    const Matches second = associate(remaining, low_dets, false, kLowMatch);
    for (const auto& [s, d] : second.pairs) take(s, dets_[d]);
    std::vector<int> newly_lost = second.tracks_left;
    for (int s : newly_lost) slots_[s].state = State::Lost;
    // 3. Unconfirmed tracks against the high-score detections left; those unmatched were noise.
    std::vector<int> ended, gone;
    const Matches third = associate(unconfirmed, first.dets_left, true, kUnconfirmedMatch);
    for (const auto& [s, d] : third.pairs) take(s, dets_[d]);
    for (int s : third.tracks_left) {
        slots_[s].state = State::Removed;
        gone.push_back(s);
    }
    // 4. Lost tracks unseen for more than `buffer` frames are marked removed. As in the reference, a track
    // marked now leaves the lost list only at the end of the next frame (it can still be re-found then), and a
    // track once marked that is lost again leaves it at once.
    for (int s : lost_) {
        Track& t = slots_[s];
        if (frame_ - t.frame > opts_.buffer) {
            t.state = State::Removed;
            if (t.removed_frame == 0) t.removed_frame = frame_;
        }
    }
    std::vector<int> tracked, lost;
    for (int s : tracked_)
        if (slots_[s].state == State::Tracked) tracked.push_back(s);
    auto keep_lost = [&](int s) {
        const Track& t = slots_[s];
        if (t.removed_frame != 0 && t.removed_frame < frame_)
            gone.push_back(s);
        else
            lost.push_back(s);
    };
    for (int s : lost_)
        if (slots_[s].state != State::Tracked) keep_lost(s);
    for (int s : newly_lost) keep_lost(s);

    // 5. New tracks from the confident detections left. At max_tracks the longest-unseen lost track makes room
    // (a new object in view matters more than one gone for a while); with no lost track the detection waits.
    size_t live = tracked.size() + refound.size() + lost.size();
    for (int d : third.dets_left) {
        if (dets_[d].score < new_track) continue;
        if (live >= static_cast<size_t>(opts_.max_tracks)) {
            if (lost.empty()) continue;
            auto oldest = std::min_element(lost.begin(), lost.end(),
                                           [&](int a, int b) { return slots_[a].frame < slots_[b].frame; });
            gone.push_back(*oldest);
            lost.erase(oldest);
            --live;
        }
        tracked.push_back(create(dets_[d]));
        ++live;
    }
    tracked.insert(tracked.end(), refound.begin(), refound.end());
    for (int s : gone) drop(s, ended);
    remove_duplicates(tracked, lost, ended);
    tracked_ = std::move(tracked);
    lost_ = std::move(lost);

    TrackerResult out;
    out.ids.assign(rows, 0);
    out.ended = std::move(ended);
    for (int s : tracked_) {
        const Track& t = slots_[s];
        if (!t.activated) continue;
        out.tracks.push_back({t.id, t.kf.box(), t.score, t.cls});
        if (t.det >= 0) out.ids[t.det] = t.id;
    }
    return out;
}

}  // namespace yolox
