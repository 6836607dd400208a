"""An interactive 3D view of both hands as one self-contained HTML file (plotly, with plotly.js embedded:
opens offline in any browser; drag to rotate, scroll to zoom, hover a joint for its name and mm)."""
from __future__ import annotations

import numpy as np

from shards.skeleton import JOINT_NAMES, LEFT, NUM_JOINTS, RIGHT, parents

HAND_COLOURS = {"right": "#d62728", "left": "#1f77b4"}  # matplotlib's tab:red / tab:blue, as eval.plots


def hand_traces(xyz: np.ndarray, present, probs) -> list:
    """Plotly trace dicts for the 42 joints (camera mm): per hand its bones (lines) and joints
    (markers, hover: name and coordinates). A hand the hand-type output calls absent is kept, hidden
    until its legend entry is clicked."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.shape != (NUM_JOINTS, 3) or not np.all(np.isfinite(xyz)):
        raise ValueError(f"joints must be a finite ({NUM_JOINTS}, 3) array, got shape {xyz.shape}")
    par = parents()
    traces = []
    for k, (hand, idx) in enumerate((("right", RIGHT), ("left", LEFT))):
        bones = {"x": [], "y": [], "z": []}
        for j in idx:
            if par[j] >= 0:
                for a, axis in enumerate("xyz"):  # one segment per bone, None between segments
                    bones[axis] += [float(xyz[j, a]), float(xyz[par[j], a]), None]
        visible = True if present[k] else "legendonly"
        label = f"{hand} hand (p={float(probs[k]):.2f}{'' if present[k] else ', absent'})"
        traces.append({"type": "scatter3d", "mode": "lines", "name": label, "legendgroup": hand,
                       "visible": visible, "hoverinfo": "skip",
                       "line": {"color": HAND_COLOURS[hand], "width": 6}, **bones})
        traces.append({"type": "scatter3d", "mode": "markers", "name": f"{hand} joints", "legendgroup": hand,
                       "showlegend": False, "visible": visible,
                       "x": [float(v) for v in xyz[idx, 0]], "y": [float(v) for v in xyz[idx, 1]],
                       "z": [float(v) for v in xyz[idx, 2]], "text": [JOINT_NAMES[j] for j in idx],
                       "hovertemplate": "%{text}<br>x %{x:.1f} mm<br>y %{y:.1f} mm<br>z %{z:.1f} mm<extra></extra>",
                       "marker": {"size": 4, "color": HAND_COLOURS[hand]}})
    return traces


def hands_html(xyz, present, probs, title: str) -> str:
    """The whole HTML page (str) of `hand_traces`, seen as the camera sees it (x right, y down, z away)."""
    import plotly.graph_objects as go

    fig = go.Figure(data=hand_traces(xyz, present, probs))
    fig.update_layout(
        title={"text": title, "font": {"size": 13}}, margin={"l": 0, "r": 0, "t": 40, "b": 0},
        scene={"aspectmode": "data", "xaxis": {"title": {"text": "x (mm, right)"}},
               "yaxis": {"title": {"text": "y (mm, down)"}}, "zaxis": {"title": {"text": "z (mm, away)"}},
               "camera": {"up": {"x": 0, "y": -1, "z": 0}, "eye": {"x": 0.3, "y": -0.4, "z": -2.0}}})
    return fig.to_html(include_plotlyjs=True, full_html=True)
