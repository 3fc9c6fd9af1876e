"""Small polygon geometry for DOTA: area, clipping, minimum-area rectangles and polygon NMS."""

from __future__ import annotations

import numpy as np


def polygon_area(poly: np.ndarray) -> float:
    """Area of a simple polygon ``(K, 2)`` (shoelace formula)."""
    p = np.asarray(poly, dtype=np.float64)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0


def clip_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Part of ``subject`` inside the convex polygon ``clip`` (Sutherland–Hodgman); ``(L, 2)``, maybe empty."""
    clip = np.asarray(clip, dtype=np.float64)
    if _signed_area(clip) < 0:
        clip = clip[::-1]
    output = [tuple(p) for p in np.asarray(subject, dtype=np.float64)]
    for i in range(len(clip)):
        if not output:
            break
        a, b = clip[i], clip[(i + 1) % len(clip)]
        edge = b - a

        def side(p: tuple[float, float]) -> float:
            return edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0])

        points, output = output, []
        for j, current in enumerate(points):
            previous = points[j - 1]
            s_cur, s_prev = side(current), side(previous)
            if s_cur >= 0:
                if s_prev < 0:
                    t = s_prev / (s_prev - s_cur)
                    output.append((previous[0] + t * (current[0] - previous[0]), previous[1] + t * (current[1] - previous[1])))
                output.append(current)
            elif s_prev >= 0:
                t = s_prev / (s_prev - s_cur)
                output.append((previous[0] + t * (current[0] - previous[0]), previous[1] + t * (current[1] - previous[1])))
    return np.array(output, dtype=np.float64).reshape(-1, 2)


def rectangle(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (Andrew's monotone chain), counter-clockwise in y-up coordinates."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64))))
    if len(pts) <= 2:
        return np.array(pts, dtype=np.float64).reshape(-1, 2)

    def cross(o: tuple, a: tuple, b: tuple) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def min_area_rect(points: np.ndarray) -> np.ndarray:
    """Corners ``(4, 2)`` of the smallest-area rectangle enclosing ``points`` (rotating one hull edge at a time)."""
    hull = convex_hull(points)
    if len(hull) < 3:
        lo, hi = np.asarray(points).min(0), np.asarray(points).max(0)
        return rectangle(lo[0], lo[1], hi[0], hi[1])
    best_area, best = np.inf, None
    for i in range(len(hull)):
        edge = hull[(i + 1) % len(hull)] - hull[i]
        angle = np.arctan2(edge[1], edge[0])
        rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
        local = hull @ rot.T
        lo, hi = local.min(0), local.max(0)
        area = float(np.prod(hi - lo))
        if area < best_area:
            best_area = area
            best = rectangle(lo[0], lo[1], hi[0], hi[1]) @ rot
    assert best is not None
    return best


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex polygons ``(K, 2)``."""
    inter = polygon_area(clip_polygon(a, b))
    union = polygon_area(a) + polygon_area(b) - inter
    return inter / union if union > 0 else 0.0


def poly_nms(polys: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """Indices of the polygons ``(N, 8)`` kept by greedy NMS on polygon IoU, best score first."""
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 4, 2)
    order = np.argsort(-np.asarray(scores), kind="stable")
    lo, hi = polys.min(1), polys.max(1)
    keep: list[int] = []
    suppressed = np.zeros(len(polys), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        overlaps = np.all((np.minimum(hi[i], hi) > np.maximum(lo[i], lo)), axis=1)
        for j in np.flatnonzero(overlaps & ~suppressed):
            if j != i and polygon_iou(polys[i], polys[j]) > iou_thr:
                suppressed[j] = True
        suppressed[i] = True
    return np.array(keep, dtype=np.int64)
