"""The paper's metrics (docs/conventions.md §7), vectorised over samples and joints; returns a dict.

Definitions follow the original's evaluate() exactly:
- single-hand samples are those whose GT hand type is right or left, interacting ones the rest;
- MPJPE: each hand's joints minus that hand's root (prediction and GT), Euclidean error per joint
  where joint_valid (root rule applied); per joint the mean over the samples of a set; the set's
  figure is the mean over joints of those per-joint means. "all" pools single and interacting
  samples per joint before the per-joint mean;
- MRRPE: interacting samples whose two roots are valid; error of the predicted left-minus-right root
  vector (see eval.convert.root_vector for how form (a) builds it);
- handedness: over samples with hand_type_valid; right = p0 > .5 and p1 < .5, left = p0 < .5 and
  p1 > .5, interacting = both > .5.
Two diagnostics that are not the paper's (docs/conventions.md §7) split handedness into its parts, as
ROC AUCs of the raw outputs over the same samples (0.5 = chance, NaN when a class is absent):
- hand_count_auc: interacting vs single samples, scored by p0 + p1;
- chirality_auc: right vs left among single-hand samples, scored by p0 - p1.
A network that counts hands but cannot tell right from left keeps a thresholded accuracy at the
majority class; these say which part is learnt.
An empty set gives NaN with count 0 (the original would crash). A joint with no valid entry in a set
has a NaN per-joint mean and is left out of that set's mean over joints (the original would crash).
"""
import numpy as np

from shards.skeleton import HAND_TYPES, LEFT, NUM_JOINTS, RIGHT, ROOT

RIGHT_CODE, LEFT_CODE, INTER_CODE = 0, 1, 2


def hand_type_codes(hand_type) -> np.ndarray:
    """Strings ('right'|'left'|'interacting'), codes (0|1|2) or (N, 2) GT vectors -> (N,) int codes."""
    h = np.asarray(hand_type)
    if h.dtype.kind in "USO":
        h = h.astype(str)
        code = np.full(h.shape, -1, dtype=np.int64)
        for i, name in enumerate(HAND_TYPES):
            code[h == name] = i
        if np.any(code < 0):
            raise ValueError(f"unknown hand type(s) {np.unique(h[code < 0])[:5].tolist()}; expected one of {HAND_TYPES}")
        return code
    if h.ndim == 2 and h.shape[1] == 2:
        r, l = h[:, 0] > 0.5, h[:, 1] > 0.5
        if np.any(~r & ~l):
            raise ValueError(f"GT hand type vector with no hand at rows {np.flatnonzero(~r & ~l)[:5].tolist()}")
        return np.where(r & l, INTER_CODE, np.where(r, RIGHT_CODE, LEFT_CODE)).astype(np.int64)
    c = h.astype(np.int64).reshape(-1)
    if np.any((c < 0) | (c > 2)):
        raise ValueError("hand type codes must be 0 (right), 1 (left) or 2 (interacting)")
    return c


def joint_errors(pred_cam, gt_cam, chunk: int = 2048, transposed: bool = False) -> np.ndarray:
    """(N, 42) Euclidean error in mm after root alignment of each hand ((42, N) when `transposed`).
    Computed in chunks of samples, which keeps the temporaries in cache."""
    n = len(gt_cam)
    err = np.empty((NUM_JOINTS, n) if transposed else (n, NUM_JOINTS))
    for s in range(0, n, chunk):
        # (pred - pred_root) - (gt - gt_root) in float64, each hand root-aligned first: subtracting the
        # GT before the roots would lose every digit of the GT under a far-off prediction (1e18 mm).
        p = np.asarray(pred_cam[s:s + chunk], dtype=np.float64).reshape(-1, 2, 21, 3)
        g = np.asarray(gt_cam[s:s + chunk], dtype=np.float64).reshape(-1, 2, 21, 3)
        d = p - p[:, :, 20:21]
        d -= g
        d += g[:, :, 20:21]
        d *= d
        e = np.sqrt(d[..., 0] + d[..., 1] + d[..., 2]).reshape(-1, NUM_JOINTS)
        if transposed:
            err[:, s:s + chunk] = e.T
        else:
            err[s:s + chunk] = e
    return err


def _per_joint_means(errT, validT, single, inter):
    """(42, N) errors, (42, N) validity, (N,) set masks -> per-joint means (NaN where empty) and counts
    for single, interacting and all. One joint at a time, each over contiguous arrays, so the sums run
    in the order of np.mean over the original's lists (all = single entries, then interacting ones)."""
    out = {k: (np.full(NUM_JOINTS, np.nan), np.zeros(NUM_JOINTS, np.int64)) for k in ("single", "interacting", "all")}
    for j in range(NUM_JOINTS):
        e, v = errT[j], validT[j]
        sh, ih = e[v & single], e[v & inter]
        for k, a in (("single", sh), ("interacting", ih), ("all", np.concatenate([sh, ih]))):
            out[k][1][j] = a.size
            if a.size:
                out[k][0][j] = np.mean(a)
    return out


def _mean_over_joints(per_joint):
    return float(np.nanmean(per_joint)) if np.any(np.isfinite(per_joint)) else float("nan")


def handedness_correct(gt_code, pred_hand_type) -> np.ndarray:
    """(N,) bool: the original's three rules."""
    p = np.asarray(pred_hand_type, dtype=np.float64)
    r_hi, r_lo, l_hi, l_lo = p[:, 0] > 0.5, p[:, 0] < 0.5, p[:, 1] > 0.5, p[:, 1] < 0.5
    return np.select([gt_code == RIGHT_CODE, gt_code == LEFT_CODE, gt_code == INTER_CODE],
                     [r_hi & l_lo, r_lo & l_hi, r_hi & l_hi], default=False)


def roc_auc(score, positive) -> float:
    """Mann-Whitney ROC AUC of `score` for the boolean labels `positive` (tied scores count one half,
    through average ranks); NaN when either class is empty."""
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    n1 = int(positive.sum())
    n0 = positive.size - n1
    if not n1 or not n0:
        return float("nan")
    order = np.argsort(score, kind="stable")
    s = score[order]
    # average 1-based rank of each run of equal scores
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    ranks = np.empty(s.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def handedness_parts(gt_code, pred_hand_type) -> dict:
    """{"hand_count_auc", "chirality_auc"} (module doc) of (N, 2) probabilities for GT codes (N,)."""
    p = np.asarray(pred_hand_type, dtype=np.float64)
    code = np.asarray(gt_code)
    single = code != INTER_CODE
    return {"hand_count_auc": roc_auc(p[:, 0] + p[:, 1], code == INTER_CODE),
            "chirality_auc": roc_auc(p[single, 0] - p[single, 1], code[single] == RIGHT_CODE)}


def compute_metrics(pred_cam, gt_cam, joint_valid, gt_hand_type, hand_type_valid, pred_hand_type,
                    pred_root_vec=None, return_errors: bool = False):
    """All of docs/conventions.md §7 at once.

    pred_cam, gt_cam (N, 42, 3) camera mm; joint_valid (N, 42); gt_hand_type (N,) strings/codes or
    (N, 2) vectors; hand_type_valid (N,); pred_hand_type (N, 2) probabilities; pred_root_vec (N, 3)
    the predicted left-minus-right root vector in camera mm (eval.convert.root_vector for InterNet's
    output space); None uses pred_cam's roots. Returns floats (NaN when a set is empty), per-joint
    (42,) arrays and counts; with return_errors also the (42, N) joint errors: (metrics, errors).
    """
    pred_cam, gt_cam = np.asarray(pred_cam), np.asarray(gt_cam)
    n = gt_cam.shape[0]
    for name, a, shape in (("pred_cam", pred_cam, (n, NUM_JOINTS, 3)), ("gt_cam", gt_cam, (n, NUM_JOINTS, 3)),
                           ("joint_valid", np.asarray(joint_valid), (n, NUM_JOINTS)),
                           ("pred_hand_type", np.asarray(pred_hand_type), (n, 2)),
                           ("hand_type_valid", np.asarray(hand_type_valid).reshape(-1), (n,))):
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    code = hand_type_codes(gt_hand_type)
    if code.shape != (n,):
        raise ValueError(f"gt_hand_type gives {code.shape[0]} samples, expected {n}")
    valid = np.asarray(joint_valid) > 0
    single = (code == RIGHT_CODE) | (code == LEFT_CODE)
    inter = code == INTER_CODE

    errT = joint_errors(pred_cam, gt_cam, transposed=True)  # (42, N)
    pj = _per_joint_means(errT, np.ascontiguousarray(valid.T), single, inter)
    (pj_sh, cnt_sh), (pj_ih, cnt_ih), (pj_all, cnt_all) = pj["single"], pj["interacting"], pj["all"]

    # MRRPE
    if pred_root_vec is None:
        pred_root_vec = pred_cam[:, ROOT["left"]].astype(np.float64) - pred_cam[:, ROOT["right"]]
    prv = np.asarray(pred_root_vec, dtype=np.float64)
    if prv.shape != (n, 3):
        raise ValueError(f"pred_root_vec has shape {prv.shape}, expected {(n, 3)}")
    rr = inter & valid[:, ROOT["left"]] & valid[:, ROOT["right"]]
    gt_vec = gt_cam[:, ROOT["left"]].astype(np.float64) - gt_cam[:, ROOT["right"]]
    rr_err = np.sqrt(np.sum((prv[rr] - gt_vec[rr]) ** 2, axis=-1))
    mrrpe = float(np.mean(rr_err)) if rr_err.size else float("nan")

    # handedness
    htv = np.asarray(hand_type_valid).reshape(-1) > 0
    correct = handedness_correct(code, pred_hand_type) & htv
    n_ht = int(htv.sum())

    m = {
        "mpjpe_single": _mean_over_joints(pj_sh),
        "mpjpe_interacting": _mean_over_joints(pj_ih),
        "mpjpe_all": _mean_over_joints(pj_all),
        "mpjpe_per_joint_single": pj_sh,
        "mpjpe_per_joint_interacting": pj_ih,
        "mpjpe_per_joint_all": pj_all,
        "joint_count_single": cnt_sh,
        "joint_count_interacting": cnt_ih,
        "joint_count_all": cnt_all,
        "mrrpe": mrrpe,
        "mrrpe_count": int(rr.sum()),
        "handedness_accuracy": float(correct.sum() / n_ht) if n_ht else float("nan"),
        "handedness_count": n_ht,
        **handedness_parts(code[htv], np.asarray(pred_hand_type)[htv]),
        "num_samples": int(n),
        "num_single": int(single.sum()),
        "num_interacting": int(inter.sum()),
    }
    return (m, errT) if return_errors else m


def sample_mpjpe(errors_t, joint_valid) -> np.ndarray:
    """(42, N) joint errors (compute_metrics(..., return_errors=True)) -> (N,) mean over each sample's
    valid joints (NaN when none): for picking the best and worst samples to draw."""
    v = np.asarray(joint_valid).T > 0
    cnt = v.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(v, errors_t, 0.0).sum(axis=0) / cnt, np.nan)


def to_jsonable(metrics: dict) -> dict:
    """Arrays -> lists, NaN -> None (valid JSON)."""
    def conv(v):
        if isinstance(v, np.ndarray):
            return [conv(x) for x in v.tolist()]
        if isinstance(v, (float, np.floating)):
            return None if not np.isfinite(v) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v
    return {k: conv(v) for k, v in metrics.items()}


def mean_pose_predictions(train_gt: dict, test_gt: dict) -> dict:
    """A baseline that sees no image: the training set's mean root-relative pose (the left hand placed
    at the mean left-minus-right root offset) and mean hand presence, predicted for every test sample,
    as form (b) predictions (camera space). train_gt / test_gt: eval.gt.load_gt arrays."""
    cam, valid = train_gt["joint_cam"].astype(np.float64), train_gt["joint_valid"] > 0
    rel = cam.copy()
    rel[:, RIGHT] -= cam[:, [ROOT["right"]]]
    rel[:, LEFT] -= cam[:, [ROOT["left"]]]
    mean_rel = np.where(valid[..., None], rel, 0).sum(0) / np.maximum(valid.sum(0), 1)[:, None]  # (42, 3)
    both = valid[:, ROOT["right"]] & valid[:, ROOT["left"]]
    root_vec = (cam[both, ROOT["left"]] - cam[both, ROOT["right"]]).mean(0) if both.any() else np.zeros(3)
    mean_rel[LEFT] += root_vec
    presence = train_gt["hand_type"].mean(0)
    n = test_gt["annot_id"].shape[0]
    return {"annot_id": test_gt["annot_id"], "joint_cam": np.broadcast_to(mean_rel, (n, NUM_JOINTS, 3)).copy(),
            "hand_type": np.broadcast_to(presence, (n, 2)).copy()}
