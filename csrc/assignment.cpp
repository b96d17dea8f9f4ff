#include "assignment.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace yolox {
namespace {

// Minimum-cost perfect assignment of a dense n x n matrix by successive shortest augmenting paths (the
// Hungarian method in Jonker and Volgenant's shortest-path form): rows are added one at a time, each by a
// Dijkstra search over the reduced costs a[i][j] - u[i] - v[j], which the dual updates keep non-negative, then
// the path found is flipped. O(n^3), exact. Returns the column of each row.
std::vector<int> solve_square(const std::vector<double>& a, int n) {
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<double> u(n, 0.0), v(n, 0.0), dist(n);
    std::vector<int> row_of(n, -1), col_of(n, -1), prev(n);
    std::vector<char> scanned(n);
    for (int start = 0; start < n; ++start) {
        std::fill(dist.begin(), dist.end(), inf);
        std::fill(scanned.begin(), scanned.end(), 0);
        int row = start, from = -1;  // from: the column the search reached `row` by (-1: the start row)
        double row_dist = 0.0;
        int free_col = -1;
        while (free_col < 0) {
            int next = -1;
            for (int j = 0; j < n; ++j) {
                if (scanned[j]) continue;
                const double d = row_dist + a[static_cast<size_t>(row) * n + j] - u[row] - v[j];
                if (d < dist[j]) {
                    dist[j] = d;
                    prev[j] = from;
                }
                if (next < 0 || dist[j] < dist[next]) next = j;
            }
            scanned[next] = 1;
            if (row_of[next] < 0) {
                free_col = next;
            } else {  // matched column: continue from its row, at the same distance (matched pairs are tight)
                from = next;
                row = row_of[next];
                row_dist = dist[next];
            }
        }
        // Duals: every row and column the search settled moves by (path length - its distance), which keeps
        // all reduced costs >= 0 and makes the new path's pairs tight.
        const double total = dist[free_col];
        u[start] += total;
        for (int j = 0; j < n; ++j) {
            if (!scanned[j] || j == free_col) continue;
            u[row_of[j]] += total - dist[j];
            v[j] -= total - dist[j];
        }
        // Flip the path: each column on it takes the row that reached it.
        for (int j = free_col;;) {
            const int before = prev[j];
            const int i = before < 0 ? start : row_of[before];
            row_of[j] = i;
            col_of[i] = j;
            if (before < 0) break;
            j = before;
        }
    }
    return col_of;
}

int find(std::vector<int>& parent, int x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
}

}  // namespace

// Why solving each connected component alone is exact: leaving a row and a column unassigned costs cost_limit
// (two halves), so a pair costing cost_limit or more never lowers the total — dropping it from any solution
// costs nothing. An optimum therefore uses only pairs cheaper than cost_limit; its cost is the sum over the
// connected components of the graph those pairs form (rows and columns as nodes), and no pair crosses two
// components, so each component's optimum can be found alone. In a tracking frame almost every component is
// one track and one detection, and the dense solver only sees the few groups of overlapping boxes.
Assignment assign(const std::vector<double>& cost, int rows, int cols, double cost_limit) {
    if (rows < 0 || cols < 0 || cost.size() != static_cast<size_t>(rows) * static_cast<size_t>(cols))
        throw std::invalid_argument("cost must be a rows x cols matrix");
    if (!std::isfinite(cost_limit)) throw std::invalid_argument("cost_limit must be finite");
    for (double c : cost)
        if (std::isnan(c) || c == -std::numeric_limits<double>::infinity())
            throw std::invalid_argument("costs must be numbers or +inf (got " + std::to_string(c) + ")");

    Assignment out{std::vector<int>(rows, -1), std::vector<int>(cols, -1)};
    std::vector<int> parent(rows + cols);  // rows are nodes 0..rows-1, columns rows..rows+cols-1
    std::iota(parent.begin(), parent.end(), 0);
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j)
            if (cost[static_cast<size_t>(i) * cols + j] < cost_limit) parent[find(parent, i)] = find(parent, rows + j);

    // Nodes grouped by component (a counting sort on the root): rows come before columns within each group.
    const int nodes = rows + cols;
    std::vector<int> root(nodes), begin(nodes + 1, 0), order(nodes);
    for (int x = 0; x < nodes; ++x) ++begin[(root[x] = find(parent, x)) + 1];
    std::partial_sum(begin.begin(), begin.end(), begin.begin());
    std::vector<int> fill(begin.begin(), begin.end() - 1);
    for (int x = 0; x < nodes; ++x) order[fill[root[x]]++] = x;
    std::vector<int> rs, cs;
    for (int c = 0; c < nodes; ++c) {
        rs.clear();
        cs.clear();
        for (int k = begin[c]; k < begin[c + 1]; ++k) {
            const int x = order[k];
            if (x < rows)
                rs.push_back(x);
            else
                cs.push_back(x - rows);
        }
        if (rs.empty() || cs.empty()) continue;  // a lone row or column: unassigned
        if (rs.size() == 1 && cs.size() == 1) {  // one pair, cheaper than the limit since it is connected
            out.row_to_col[rs[0]] = cs[0];
            out.col_to_row[cs[0]] = rs[0];
            continue;
        }
        // Square n x n problem: a pair costs (cost - cost_limit) when it beats leaving both unassigned, else 0,
        // which is what the padding rows and columns (unassigned) cost too. An assignment's total is then the
        // component's total minus a constant, so their optima coincide.
        const int n = static_cast<int>(std::max(rs.size(), cs.size()));
        std::vector<double> a(static_cast<size_t>(n) * n, 0.0);
        for (size_t r = 0; r < rs.size(); ++r)
            for (size_t k = 0; k < cs.size(); ++k)
                a[r * n + k] = std::min(cost[static_cast<size_t>(rs[r]) * cols + cs[k]] - cost_limit, 0.0);
        const std::vector<int> col_of = solve_square(a, n);
        for (size_t r = 0; r < rs.size(); ++r) {
            const int k = col_of[r];
            if (k >= static_cast<int>(cs.size()) || a[r * n + k] >= 0.0) continue;  // padding or not worth it
            out.row_to_col[rs[r]] = cs[k];
            out.col_to_row[cs[k]] = rs[r];
        }
    }
    return out;
}

}  // namespace yolox
