"""Which images to label: selection in a pretrained encoder's embedding, without a label.

Each strategy sees the images' features (rows of an (N, D) tensor, L2-normalised here) and
which images are labeled already, never a label:

- ``random``: a uniform draw, the honest baseline.
- ``typical``: TypiClust (Hacohen et al., ICML 2022). K-means into as many clusters as
  labeled plus chosen images (at most ``MAX_CLUSTERS``; the tightest of
  ``KMEANS_RESTARTS`` runs up to ``RESTART_CLUSTERS`` clusters); again and again the largest
  cluster that holds no labeled or chosen image gives its most *typical* image — the
  highest inverse mean distance to its ``TYPICALITY_NEIGHBORS`` nearest neighbours in the
  cluster. Typical images of distinct dense regions: what a few labels need.
- ``coverage``: ProbCover (Yehuda et al., NeurIPS 2022). Each image covers the ball of
  radius δ around it; greedily the image whose ball holds the most uncovered images is
  chosen. δ is chosen without labels, as the paper does: the largest radius at which 95%
  of the balls are *pure* — hold images of one k-means cluster only (k-means into
  ``classes`` clusters, the tightest of ``KMEANS_RESTARTS`` runs). On a pool larger than
  ``COVERAGE_SAMPLE`` the graph is built on a uniform sample of it (and the labeled
  images): its coverage estimates the pool's.

``select`` returns the chosen indices in the order they were chosen: labeling a prefix of
the list is what the strategy would have chosen for that smaller budget (``random`` and
``coverage`` exactly; ``typical`` up to its cluster count).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .catalog import STRATEGIES
from .errors import UsageError, check_choice, check_positive

MAX_CLUSTERS = 500  # TypiClust's cap on k-means clusters for a large budget
TYPICALITY_NEIGHBORS = 20
# k-means runs, the tightest kept: typical's when there are at most RESTART_CLUSTERS
# clusters, and coverage's (its δ). Chosen for typical on MNIST's development split,
# draws 100-104, the probe at 10 labels: 10 runs 0.9673 (every class on every draw)
# against one run's 0.9108 (9 classes on three draws); at 20 labels 0.9717 against
# 0.9715. With more clusters one run: the restarts' cost grows with the clusters (500
# clusters × 10 runs took 175 s on 60,000 images) and at 20 they no longer changed the
# result. For coverage on the same draws: 10 runs 0.9688 at 10 labels against one run's
# 0.8610 (5 and 9 classes on two draws), equal or higher on every draw at 10-100 labels
KMEANS_RESTARTS = 10
RESTART_CLUSTERS = 50
MIN_CLUSTER = 5  # clusters smaller than this are outliers, chosen from last
PURITY = 0.95  # ProbCover: the share of pure balls that fixes δ
COVERAGE_SAMPLE = 20_000  # images the cover is computed on (a uniform sample of a larger pool)


def check_classes(strategy: str, classes: int | None, why: str = "") -> None:
    """``classes`` (the number of classes expected) is a positive integer, or None; and
    ``coverage``, whose radius δ it sets, has one — it refuses to guess (told 10 on a
    5-class pool, its balls shrank and it chose 2 of the 5 classes in 20 labels:
    benchmarks/results/selection-5-classes-development.json). ``why``: what the caller
    knows of the missing count, for the message."""
    if classes is not None:
        check_positive("--classes", classes, integer=True)
    elif strategy == "coverage":
        raise UsageError(f"--strategy coverage needs the number of classes{why}: give "
                         "--classes N, or use --strategy typical, which needs none")


def select(features: torch.Tensor, budget: int, strategy: str = "typical", seed: int = 0,
           labeled: torch.Tensor | None = None, classes: int | None = None,
           restarts: int = KMEANS_RESTARTS) -> torch.Tensor:
    """Indices (int64) of ``budget`` images to label next, in the order chosen, none of them
    in ``labeled`` (indices already labeled, which count as chosen). ``classes``: the
    number of classes expected (``coverage`` only, which needs it: it sets δ). Same inputs
    and seed, same answer. ``restarts``: k-means runs, the tightest kept (``typical``, up
    to ``RESTART_CLUSTERS`` clusters; ``coverage``'s clusters for δ)."""
    check_choice("strategy", strategy, STRATEGIES)
    check_classes(strategy, classes)
    n = len(features)
    labeled = (torch.as_tensor(labeled, dtype=torch.long).unique() if labeled is not None
               else torch.empty(0, dtype=torch.long))
    free = n - len(labeled)
    if not 1 <= budget <= free:
        raise UsageError(f"a budget of {budget} images is out of range: use 1..{free} (the "
                         f"images not labeled yet)")
    g = torch.Generator().manual_seed(int(seed))
    x = F.normalize(features.detach().float().cpu(), dim=1)
    if strategy == "random":
        taken = torch.zeros(n, dtype=torch.bool)
        taken[labeled] = True
        order = torch.randperm(n, generator=g)
        return order[~taken[order]][:budget]
    if strategy == "typical":
        return _typical(x, budget, labeled, g, restarts)
    return _coverage(x, budget, labeled, classes, g, restarts)


def kmeans(x: torch.Tensor, k: int, g: torch.Generator, iterations: int = 50,
           restarts: int = 1) -> torch.Tensor:
    """Cluster of each row of ``x``: k-means++ starts, then Lloyd's iterations; of
    ``restarts`` runs, the one with the least within-cluster sum of squares (no label)."""
    runs = [_lloyd(x, k, g, iterations) for _ in range(restarts)]
    return min(runs, key=lambda r: r[1])[0]


def _lloyd(x: torch.Tensor, k: int, g: torch.Generator, iterations: int):
    """(cluster of each row, within-cluster sum of squares) of one k-means run."""
    n = len(x)
    k = min(k, n)
    centers = x[torch.randint(n, (1,), generator=g)]
    closest = torch.cdist(x, centers).squeeze(1) ** 2
    for _ in range(1, k):  # k-means++: a new center drawn in proportion to squared distance
        pick = torch.multinomial(closest + 1e-12, 1, generator=g)
        centers = torch.cat([centers, x[pick]])
        closest = torch.minimum(closest, torch.cdist(x, x[pick]).squeeze(1) ** 2)
    assign = torch.cdist(x, centers).argmin(1)
    for _ in range(iterations):
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
        new = torch.cdist(x, centers).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    inertia = float(((x - centers[assign]) ** 2).sum())
    return assign, inertia


def typicality(x: torch.Tensor, neighbors: int = TYPICALITY_NEIGHBORS) -> torch.Tensor:
    """Each row's inverse mean distance to its ``neighbors`` nearest other rows."""
    k = min(neighbors, len(x) - 1)
    if k < 1:
        return torch.ones(len(x))
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    return 1 / (d.topk(k, largest=False).values.mean(1) + 1e-8)


def _typical(x, budget, labeled, g, restarts: int = 1) -> torch.Tensor:
    clusters = min(len(labeled) + budget, MAX_CLUSTERS)
    assign = kmeans(x, clusters, g, restarts=restarts if clusters <= RESTART_CLUSTERS else 1)
    k = int(assign.max()) + 1
    sizes = torch.bincount(assign, minlength=k)
    held = torch.bincount(assign[labeled], minlength=k)  # labeled or chosen, per cluster
    taken = torch.zeros(len(x), dtype=torch.bool)
    taken[labeled] = True
    scores: dict[int, torch.Tensor] = {}
    chosen = []
    for _ in range(budget):
        open_ = (sizes > held).nonzero().flatten()
        big = open_[sizes[open_] >= MIN_CLUSTER]
        pool = big if len(big) else open_
        empty = pool[held[pool] == 0]
        # an empty cluster first, the largest; once none is left, the least held for its size
        c = int(empty[sizes[empty].argmax()] if len(empty) else
                pool[(sizes[pool] / (1 + held[pool])).argmax()])
        members = (assign == c).nonzero().flatten()
        if c not in scores:
            scores[c] = typicality(x[members])
        s = scores[c].masked_fill(taken[members], -1.0)
        pick = int(members[s.argmax()])
        chosen.append(pick)
        taken[pick] = True
        held[c] += 1
    return torch.tensor(chosen, dtype=torch.long)


def _nearest_other_cluster(x: torch.Tensor, assign: torch.Tensor, chunk: int = 1024):
    """Each row's distance to the nearest row of another cluster."""
    out = []
    for s in range(0, len(x), chunk):
        d = torch.cdist(x[s:s + chunk], x)
        d.masked_fill_(assign[s:s + chunk, None] == assign[None, :], float("inf"))
        out.append(d.min(1).values)
    return torch.cat(out)


def coverage_radius(x: torch.Tensor, classes: int, g: torch.Generator,
                    restarts: int = 1) -> float:
    """ProbCover's δ, label-free: the largest radius at which ``PURITY`` of the balls hold
    rows of one k-means cluster only (the tightest of ``restarts`` k-means runs). A ball
    around a row is pure while δ is below that row's distance to the nearest row of
    another cluster, so δ is a low quantile of it."""
    assign = kmeans(x, classes, g, restarts=restarts)
    return float(torch.quantile(_nearest_other_cluster(x, assign), 1 - PURITY))


def balls(x: torch.Tensor, radius: float, chunk: int = 2048) -> torch.Tensor:
    """The δ-ball graph as a boolean (N, N) matrix: row i holds the rows within ``radius``
    of row i (itself included)."""
    return torch.cat([torch.cdist(x[s:s + chunk], x) < radius
                      for s in range(0, len(x), chunk)])


def _coverage(x, budget, labeled, classes, g, restarts: int) -> torch.Tensor:
    n = len(x)
    # the graph on a uniform sample of the pool (and every labeled image): an unbiased
    # estimate of the pool's coverage at a bounded cost (S² booleans)
    rest = torch.ones(n, dtype=torch.bool)
    rest[labeled] = False
    rest = rest.nonzero().flatten()
    keep = max(COVERAGE_SAMPLE - len(labeled), budget)
    sample = rest[torch.randperm(len(rest), generator=g)[:keep]].sort().values
    rows = torch.cat([labeled, sample])
    xs = x[rows]
    ball = balls(xs, coverage_radius(xs, classes, g, restarts))
    covered = ball[: len(labeled)].any(0)
    gain = (ball & ~covered).sum(1)
    gain[: len(labeled)] = -1
    chosen = []
    for _ in range(budget):
        if gain.max() <= 0:  # every image covered: the rest uniformly, as a random draw
            open_ = (gain == 0).nonzero().flatten()
            i = int(open_[torch.randint(len(open_), (1,), generator=g)])
        else:
            i = int(gain.argmax())
        chosen.append(int(rows[i]))
        new = ball[i] & ~covered
        covered |= new
        gain -= ball[:, new].sum(1)
        gain[i] = -1
    return torch.tensor(chosen, dtype=torch.long)
