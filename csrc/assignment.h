// Linear assignment with "leave it unassigned" as an option: ByteTrack's matching step.
#pragma once

#include <vector>

namespace yolox {

struct Assignment {
    std::vector<int> row_to_col;  // per row: its column, or -1
    std::vector<int> col_to_row;  // per column: its row, or -1
};

// The optimum of ByteTrack's problem (lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit)): every row and
// every column may stay unassigned at cost_limit / 2 each, so a pair is worth taking only when it costs less
// than cost_limit, and the result minimises matched costs + cost_limit / 2 per unassigned row and column.
// cost is rows x cols, row-major; +inf marks a pair that may never match. cost_limit must be finite, no cost NaN
// or -inf (std::invalid_argument otherwise). Where several assignments are optimal, which one is returned is
// unspecified (with real-valued IoU costs ties have probability zero).
Assignment assign(const std::vector<double>& cost, int rows, int cols, double cost_limit);

}  // namespace yolox
