-- moonbert.umap (mb.umap): UMAP and PCA projections, and the trustworthiness score.
--
--   local Y, info = mb.umap.fit_transform(X, {n_neighbors=15, min_dist=0.1, metric="cosine",
--                                             init="spectral", seed=42})
--       X: float32 tensor [N,D] (or a nested table); Y: float32 tensor [N, n_components].
--       Options (umap-learn's names and defaults): n_neighbors 15 (the point itself counts),
--       n_components 2, min_dist 0.1, spread 1, metric "cosine" | "euclidean",
--       n_epochs (500 when N <= 10000, else 200), learning_rate 1, negative_sample_rate 5,
--       repulsion_strength 1, local_connectivity 1, set_op_mix_ratio 1,
--       init "spectral" | "pca" | "random", seed 42, verbose (default: a few lines on stderr
--       when it is a terminal and N >= 5000).
--       info: seconds_knn, seconds_graph, seconds_init, seconds_layout, seconds_total, a, b,
--       n_epochs, n_edges, graph_components, init (what was used: spectral falls back to pca).
--   local t = mb.umap.trustworthiness(X, Y, {n_neighbors=5, metric="euclidean"})
--       scikit-learn's sklearn.manifold.trustworthiness: 1 when every embedded neighbour is a
--       true neighbour; O(N^2 D) time.
--   local scores, components, explained_variance = mb.umap.pca(X, k)   -- k defaults to 2
--   local X, labels = mb.umap.make_blobs(n, d, centers, {seed=0, cluster_std=1, center_box=1})
--       Gaussian clusters for tests and benchmarks; labels are 0-based ids (int32 tensor).
--   mb.umap.clock()  -- monotonic wall-clock seconds, for timing
--
-- The same seed and thread count give the same embedding (the layout runs on one thread).
-- Neighbours are exact (quadratic in N): fine to a few tens of thousands of rows.
-- The implementation is C (runtime/umap.c, knn.c, pca.c; bindings/umap.c).
local core = require("moonbert.core").umap

local M = {}

M.fit_transform = core.fit_transform
M.trustworthiness = core.trustworthiness
M.pca = core.pca
M.make_blobs = core.make_blobs
M.clock = core.clock -- monotonic wall-clock seconds

return M
