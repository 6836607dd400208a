"""MANO parameters in the shard records (shards.writer): each sample's hands as given in the world
frame and, with a MANO model, converted to the sample's camera frame (convert.convert_params,
method (b): root orientation R R_root, translation pivoting on MANO's root joint).

Record fields (in each sample's json; the same for every data set, null where there is nothing):
    "mano":     {"right": {"pose": 48, "shape": 10, "trans": 3 (m)} or null, "left": ...}, world
                frame, as in MANO_NeuralAnnot.json; null when the data set has no MANO file
    "mano_cam": the same in the sample's camera frame (X_cam = R (X - campos); trans still in m);
                null unless the converter was given a MANO model (python -m shards --mano DIR)
"""
import os

import numpy as np

from .. import fsio
from .convert import convert_params
from .data import annotation_file, frame_key, load_cameras, load_mano_params
from .model import SIDES, ManoError, load_models, mano_dir


class ManoRecords:
    def __init__(self, root, split, world_source: bool, mano=None):
        path = annotation_file(root, split, "MANO_NeuralAnnot") if world_source else None
        self.path = path if path and fsio.isfile(path) else None
        self.model_dir = mano_dir(mano) if mano else None
        if mano and self.path is None:
            raise ManoError(f"{path or root}: no MANO parameters file for split {split!r} (--mano needs one)")
        self.models = self.cameras = None
        if self.path:
            keys, self.params, self.present = load_mano_params(self.path)
            order = np.argsort(keys, kind="stable")
            self.keys, self.params, self.present = keys[order], self.params[order], self.present[order]
        if self.model_dir:
            self.models = load_models(self.model_dir)
            self.camera_file = annotation_file(root, split, "camera")
            self.cameras = load_cameras(self.camera_file)

    def fingerprint(self) -> dict:
        """{file name: [size, mtime_ns]} of the inputs (the manifest's "inputs")."""
        files = [self.path] + ([os.path.join(self.model_dir, f"MANO_{s.upper()}.pkl") for s in SIDES]
                               if self.model_dir else [])
        return {fsio.basename(p): list(fsio.stat(p)) for p in files if p}

    def annotate(self, recs):
        """Add "mano" and "mano_cam" to records (dicts with capture, frame_idx, camera) in place."""
        if self.path is None or not recs:
            for r in recs:
                r["mano"] = r["mano_cam"] = None
            return
        want = frame_key([r["capture"] for r in recs], [r["frame_idx"] for r in recs])
        pos = np.minimum(np.searchsorted(self.keys, want), max(len(self.keys) - 1, 0))
        found = (self.keys[pos] == want) if len(self.keys) else np.zeros(len(recs), bool)
        params = np.where(found[:, None, None], self.params[pos], 0.0)  # (n, 2, 61)
        present = self.present[pos] & found[:, None]
        cam = params.copy()
        if self.models is not None:
            ext = [self.cameras.get((str(r["capture"]), str(r["camera"]))) for r in recs]
            if any(e is None for e in ext):
                r = recs[[e is None for e in ext].index(True)]
                raise ManoError(f"{self.camera_file}: capture {r['capture']}: field 'campos': no camera {r['camera']!r}")
            camrot = np.array([e["camrot"] for e in ext])
            campos = np.array([e["campos"] for e in ext])
            for h, side in enumerate(SIDES):
                p = params[:, h]
                pose, trans = convert_params(self.models[side], p[:, :48], p[:, 48:58], p[:, 58:], camrot, campos)
                cam[:, h, :48], cam[:, h, 58:] = pose, trans
        for i, r in enumerate(recs):
            r["mano"] = _hands(params[i], present[i])
            r["mano_cam"] = _hands(cam[i], present[i]) if self.models is not None else None


def _hands(p, present):
    return {side: ({"pose": p[h, :48].tolist(), "shape": p[h, 48:58].tolist(), "trans": p[h, 58:].tolist()}
                   if present[h] else None) for h, side in enumerate(SIDES)}
