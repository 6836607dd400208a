"""One converter core for InterHand2.6M, RHD and STB: stream a split's annotation files into
compact numpy arrays (no per-annotation Python objects), then build records on demand.

    from shards.reader import load_split, iter_records
    data = load_split("interhand", "/data/InterHand2.6M", "val", rootnet="auto", fps=5)
    data.problems            # {row: reason} annotations that cannot be used (nothing is dropped silently)
    data.records(rows)       # list of record dicts (see the common record definition); raises AnnotationError
    for rec in iter_records("rhd", "/data/RHD/data", "test"): ...   # every record, strict by default

Records follow docs/conventions.md §2-§3: joint_cam = R (X_world - campos) (or the inline joint_cam),
joint_img = its projection (or the inline joint_img), joint_valid with the root rule, bbox =
process_bbox(bbox_raw), abs_depth = joint_cam[[20, 41], 2], hand_type_vec from the hand type,
mano / mano_cam the hands' MANO parameters (shards/mano/records.py). The root may be a local path or
any fsspec URL (s3://bucket/InterHand2.6M): files are read through shards.fsio.
"""
import math
import os
from array import array

import numpy as np

from . import fsio, geometry, labels, skeleton, worldtables
from .checked import floats, narrow
from .jsonstream import stream_items
from .mano.records import ManoRecords
from .rootnet import find_rootnet, load_rootnet
from .sources import Source, get_source

HT_CODE = {h: i for i, h in enumerate(skeleton.HAND_TYPES)}
_BINARY = {0, 1}  # joint_valid values the fast path takes (0.0, 1.0 and True compare equal)


class AnnotationError(ValueError):
    """An annotation that cannot be used; names the file, the annotation and the field."""

    def __init__(self, file: str, annot_id, field: str, reason: str):
        self.file, self.annot_id, self.field, self.reason = file, annot_id, field, reason
        super().__init__(f"{file}: annotation {annot_id}: field {field!r}: {reason}")


def _fast_interhand_ann(ann, hand_types):
    """(image_id, bbox, hand type code, hand_type_valid, joint_valid bytes) of a well-formed
    InterHand2.6M annotation, or None to take the checking path that names what is wrong."""
    try:
        b, v, h, valid = ann["bbox"], ann["joint_valid"], ann["hand_type"], ann["hand_type_valid"]
        if len(b) != 4 or len(v) != 42 or h not in hand_types or valid not in (0, 1):
            return None
        b = [float(x) for x in b]
        flat = [x[0] if type(x) is list and len(x) == 1 else x for x in v]
        if not set(flat) <= _BINARY or not all(map(math.isfinite, b)) or max(b[2], b[3]) <= 0:
            return None  # (a set: C speed; an unhashable entry raises TypeError -> the checking path)
        return int(ann["image_id"]), b, HT_CODE[h], int(valid), bytes(map(int, flat))
    except (KeyError, TypeError, ValueError):
        return None


class SplitData:
    """A split's annotations as compact arrays. Rows are annotations in file order."""

    def __init__(self, source: Source, root: str, split: str, rootnet: str | None = None, fps: int = 5,
                 progress: bool = False, mano: str | None = None):
        if split not in source.splits:
            raise ValueError(f"source {source.name!r} has no split {split!r} (has {source.splits})")
        if fps not in (5, 30):
            raise ValueError(f"fps must be 5 or 30, got {fps}")
        self.source, self.root, self.split, self.fps = source, fsio.root_path(root), split, fps
        self.data_file = fsio.join(self.root, source.data_file[split])
        self.problems: dict[int, str] = {}
        self._load_images(progress)
        self._load_annotations(progress)
        self._join_images()
        self._refuse_escaping_paths()
        if source.world:
            self._load_cameras()
            self._load_frames()
        self.rootnet_file = find_rootnet(rootnet, self.root, source.rootnet_file.get(split, ()), fps)
        if self.rootnet_file:
            self.rootnet_bbox, self.rootnet_depth, missing = load_rootnet(self.rootnet_file, self.annot_id)
            for r, reason in missing.items():
                self.problems.setdefault(r, reason)
        self.mano = ManoRecords(self.root, split, source.world, mano)  # records' mano / mano_cam

    # ---- parsing -------------------------------------------------------------------------
    def _load_images(self, progress):
        inline = not self.source.world
        ints = {k: array("q") for k in ("id", "width", "height", "capture", "subject", "frame_idx", "seq", "cam")}
        cam_param = array("f")
        names, offsets = bytearray(), array("q", [0])
        self.seq_names, self.cam_names, self.image_problems = [], [], {}
        seq_ix, cam_ix = {}, {}
        for i, img in enumerate(stream_items(self.data_file, "images.item", progress and "images")):
            try:
                iid = int(img["id"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{self.data_file}: images[{i}]: missing or bad field 'id'") from None
            row = {"id": iid, "width": 0, "height": 0, "capture": -1, "subject": -1, "frame_idx": -1}
            seq, cam, fname, cp = "", "", "", np.zeros(4)
            try:
                required = ("width", "height") + (() if inline else ("capture", "frame_idx"))
                for k in required:
                    if k not in img:
                        raise ValueError(f"missing field {k!r}")
                    row[k] = int(img[k])
                for k in ("capture", "frame_idx", "subject"):
                    if k not in required and img.get(k) is not None:
                        row[k] = int(img[k])
                seq, cam = str(img.get("seq_name", "")), str(img.get("camera", ""))
                if "file_name" not in img:
                    raise ValueError("missing field 'file_name'")
                fname = str(img["file_name"])
                if inline:
                    p = img.get("cam_param")
                    if not isinstance(p, dict):
                        raise ValueError("missing field 'cam_param'")
                    cp = np.concatenate([floats(p.get("focal"), (2,), "cam_param.focal"),
                                         floats(p.get("princpt"), (2,), "cam_param.princpt")])
            except (TypeError, ValueError) as e:
                self.image_problems[i] = f"{os.path.basename(self.data_file)}: image {iid}: {e}"
            for k, v in row.items():
                ints[k].append(v)
            ints["seq"].append(seq_ix.setdefault(seq, len(seq_ix)))
            ints["cam"].append(cam_ix.setdefault(cam, len(cam_ix)))
            names += fname.encode()
            offsets.append(len(names))
            cam_param.extend(cp)
        self.seq_names, self.cam_names = list(seq_ix), list(cam_ix)
        self.img = {}
        for k in list(ints):  # one field at a time: the int64 buffer goes as its narrowed copy comes
            v = ints.pop(k)
            a = np.frombuffer(v, dtype=np.int64) if len(v) else np.zeros(0, np.int64)
            self.img[k] = a if k == "id" else narrow(a)
        self.img_cam_param = np.frombuffer(cam_param, dtype=np.float32).reshape(-1, 4) if inline else None
        # file names as one uint8 array (not bytes): it travels to Ray's object store without a copy per worker
        self.img_names, self.img_name_off = np.frombuffer(names, np.uint8), np.frombuffer(offsets, dtype=np.int64)
        ids = self.img["id"]
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{self.data_file}: images[] has duplicate ids")

    def _load_annotations(self, progress):
        inline, src = not self.source.world, self.source
        ids, img_ids, ht, htv = array("q"), array("q"), array("b"), array("b")
        bbox, jv = array("f"), bytearray()
        jc, ji = array("f"), array("f")
        base = os.path.basename(self.data_file)
        for i, ann in enumerate(stream_items(self.data_file, "annotations.item", progress and "annotations")):
            try:
                aid = int(ann["id"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{self.data_file}: annotations[{i}]: missing or bad field 'id'") from None
            fast = None if inline else _fast_interhand_ann(ann, src.hand_types)
            if fast is not None:  # the common, well-formed case without numpy per annotation
                ids.append(aid)
                img_ids.append(fast[0])
                bbox.extend(fast[1])
                ht.append(fast[2])
                htv.append(fast[3])
                jv += fast[4]
                continue
            row_bbox, row_jv, code, valid = np.zeros(4), np.zeros(42), -1, 0
            row_jc, row_ji, image_id = np.zeros((42, 3)), np.zeros((42, 2)), -1
            field = "image_id"
            try:
                image_id = int(ann["image_id"])
                field = "bbox"
                row_bbox = floats(ann["bbox"], (4,), "bbox")
                if max(row_bbox[2], row_bbox[3]) <= 0:  # one side > 0 is fine: docs/conventions.md §3.1 grows the other
                    raise ValueError(f"bbox {row_bbox.tolist()} has no extent")
                field = "hand_type"
                h = ann["hand_type"]
                if h not in src.hand_types:
                    raise ValueError(f"{h!r} is not one of {src.hand_types}")
                code = HT_CODE[h]
                field = "hand_type_valid"
                valid = src.fixed_hand_type_valid if src.fixed_hand_type_valid is not None else int(ann[field])
                if valid not in (0, 1):
                    raise ValueError(f"{valid} is not 0 or 1")
                field = "joint_valid"
                n = 42 if not inline else 21
                v = floats(ann["joint_valid"], (n,), "joint_valid")
                if not np.isin(v, (0.0, 1.0)).all():
                    raise ValueError("values must be 0 or 1")
                if inline:
                    half = skeleton.RIGHT if h == "right" else skeleton.LEFT
                    perm = list(src.perm)
                    row_jv[half] = v[perm]
                    field = "joint_cam"
                    row_jc[half] = floats(ann["joint_cam"], (21, 3), "joint_cam")[perm]
                    field = "joint_img"
                    row_ji[half] = floats(ann["joint_img"], (21, 2), "joint_img")[perm]
                else:
                    row_jv = v
            except KeyError as e:
                self.problems[i] = f"{base}: annotation {aid}: field {field!r}: missing {e}"
            except (TypeError, ValueError) as e:
                self.problems[i] = f"{base}: annotation {aid}: field {field!r}: {e}"
            ids.append(aid)
            img_ids.append(image_id)
            ht.append(code)
            htv.append(valid)
            bbox.extend(row_bbox.astype(np.float32))
            jv += row_jv.astype(np.uint8).tobytes()
            if inline:
                jc.extend(row_jc.astype(np.float32).ravel())
                ji.extend(row_ji.astype(np.float32).ravel())
        self.annot_id = np.frombuffer(ids, np.int64) if len(ids) else np.zeros(0, np.int64)
        self.ann_image_id = np.frombuffer(img_ids, np.int64) if len(ids) else np.zeros(0, np.int64)
        self.hand_type = np.frombuffer(ht, np.int8) if len(ids) else np.zeros(0, np.int8)
        self.hand_type_valid = np.frombuffer(htv, np.int8) if len(ids) else np.zeros(0, np.int8)
        self.bbox_raw = np.frombuffer(bbox, np.float32).reshape(-1, 4)
        self.joint_valid = np.frombuffer(bytes(jv), np.uint8).reshape(-1, 42)
        self.inline_cam = np.frombuffer(jc, np.float32).reshape(-1, 42, 3) if inline else None
        self.inline_img = np.frombuffer(ji, np.float32).reshape(-1, 42, 2) if inline else None
        if len(np.unique(self.annot_id)) != len(self.annot_id):
            raise ValueError(f"{self.data_file}: annotations[] has duplicate ids")

    def _join_images(self):
        ids = self.img["id"]
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids[order], self.ann_image_id)
        pos = np.minimum(pos, max(len(ids) - 1, 0))
        found = (ids[order][pos] == self.ann_image_id) if len(ids) else np.zeros(len(self.annot_id), bool)
        self.ann_img = np.where(found, order[pos] if len(ids) else 0, -1)
        base = os.path.basename(self.data_file)
        for r in np.flatnonzero(~found):
            self.problems.setdefault(int(r), f"{base}: annotation {self.annot_id[r]}: field 'image_id': "
                                             f"no image with id {self.ann_image_id[r]}")
        for r in np.flatnonzero(found):
            reason = self.image_problems.get(int(self.ann_img[r]))
            if reason:
                self.problems.setdefault(int(r), reason)
        self.ann_img = narrow(self.ann_img)
        del self.ann_image_id  # joined: ann_img says it (one array less per annotation)

    def _load_cameras(self):
        path = fsio.join(self.root, self.source.camera_file.format(split=self.split))
        self.cam_params, self.img_camrow, reason = worldtables.load_cameras(
            path, self.img["capture"], self.img["cam"], self.cam_names)
        self._mark(self.img_camrow < 0, reason, "camera")

    def _load_frames(self):
        path = fsio.join(self.root, self.source.joint_file.format(split=self.split))
        self.world, self.img_framerow, bad, reason = worldtables.load_frames(
            path, self.img["capture"], self.img["frame_idx"])
        self._mark(bad, reason, "world_coord")

    def _refuse_escaping_paths(self):
        """An image file_name that leads out of the images folder ('../../etc/passwd') is never read:
        its annotations are unusable, with the reason."""
        a = self.img_names
        dots = np.flatnonzero((a[:-1] == ord(".")) & (a[1:] == ord(".")))  # where a '..' starts
        if not len(dots):
            return
        prefix = self.source.image_file[self.split].split("{", 1)[0]
        base = fsio.normpath(fsio.join(self.root, prefix))
        bad = np.zeros(len(self.img_name_off) - 1, bool)
        for m in np.unique(np.searchsorted(self.img_name_off, dots, side="right") - 1):
            bad[m] = not fsio.normpath(self.image_path(m)).startswith(base + fsio.sep(self.root))
        self._mark(bad, lambda m: f"file_name {self.file_name(m)!r} leads outside {base}", "image")

    def _mark(self, bad_img, reason, what):
        """Record a problem for every annotation whose image row is flagged in bad_img."""
        if not bad_img.any():
            return
        ok = self.ann_img >= 0
        rows = np.flatnonzero(ok & bad_img[np.where(ok, self.ann_img, 0)])
        for r in rows:
            if int(r) not in self.problems:
                self.problems[int(r)] = f"annotation {self.annot_id[r]}: {what}: {reason(int(self.ann_img[r]))}"

    # ---- records -------------------------------------------------------------------------
    def __len__(self):
        return len(self.annot_id)

    def file_name(self, img_row: int) -> str:
        return self.img_names[self.img_name_off[img_row]:self.img_name_off[img_row + 1]].tobytes().decode()

    def image_path(self, img_row: int) -> str:
        t = self.source.image_file[self.split]
        return fsio.join(self.root, t.format(file_name=self.file_name(img_row),
                                             seq_name=self.seq_names[self.img["seq"][img_row]]))

    def records(self, rows) -> list:
        """Records for annotation rows (any order); AnnotationError for a row with a problem."""
        return self.batch(rows)[0]

    def batch(self, rows) -> tuple[list, np.ndarray, np.ndarray]:
        """(records, lbl, ids) for annotation rows: the records as `records` gives them and their
        label members, row i of lbl (n, LABEL_SIZE) float32 and ids (n, 2) int64 being record i's
        `labels.encode` (built for the whole batch at once from the same arrays)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        for r in rows:
            if int(r) in self.problems:
                raise AnnotationError(self.data_file, int(self.annot_id[r]), "annotation", self.problems[int(r)])
        img = self.ann_img[rows]
        if self.source.world:
            p = self.cam_params[self.img_camrow[img]]
            campos, camrot, focal, princpt = p[:, :3], p[:, 3:12].reshape(-1, 3, 3), p[:, 12:14], p[:, 14:16]
            X = self.world[self.img_framerow[img]].astype(np.float64) - campos[:, None, :]
            jc = np.einsum("nij,nkj->nki", camrot, X)  # (n, 42, 3): R (X - campos), per annotation's camera
            ji = geometry.cam2pixel(jc, focal[:, None, :], princpt[:, None, :])[..., :2]
        else:
            jc, ji = self.inline_cam[rows], self.inline_img[rows]
            focal, princpt = self.img_cam_param[img, :2], self.img_cam_param[img, 2:]
        jc, ji = jc.astype(np.float32), ji.astype(np.float32)
        focal, princpt = focal.astype(np.float32), princpt.astype(np.float32)
        jv = self.joint_valid[rows].astype(np.float32)
        jv[:, skeleton.RIGHT] *= jv[:, skeleton.ROOT["right"], None]  # root rule (docs/conventions.md §2)
        jv[:, skeleton.LEFT] *= jv[:, skeleton.ROOT["left"], None]
        bbox_raw = self.bbox_raw[rows]
        bbox = geometry.process_bbox(bbox_raw)
        abs_depth = jc[:, [skeleton.ROOT["right"], skeleton.ROOT["left"]], 2]
        has_rn = self.rootnet_file is not None
        ht_code = self.hand_type[rows]
        ht_vec = np.asarray([skeleton.HAND_TYPE_VEC[h] for h in skeleton.HAND_TYPES], dtype=np.float32)[ht_code]
        ht_valid = self.hand_type_valid[rows]
        rn_bbox = self.rootnet_bbox[rows] if has_rn else None
        rn_depth = self.rootnet_depth[rows] if has_rn else None
        meta = {k: v[img] for k, v in self.img.items()}
        width, height = meta["width"], meta["height"]
        lbl, ids = labels.encode_batch({
            "joint_img": np.concatenate([ji[..., :2], jc[..., 2:3]], axis=2), "joint_cam": jc, "joint_valid": jv,
            "bbox": bbox, "rootnet_bbox": rn_bbox if has_rn else bbox, "hand_type": ht_vec,
            "hand_type_valid": ht_valid[:, None], "abs_depth": abs_depth,
            "rootnet_abs_depth": rn_depth if has_rn else abs_depth,
            "has_rootnet": np.full((len(rows), 1), float(has_rn)), "focal": focal, "princpt": princpt,
            "img_size": np.stack([width, height], axis=1)}, self.annot_id[rows], meta["id"])
        out = []
        cols = zip(img.tolist(), self.annot_id[rows].tolist(), meta["id"].tolist(),
                   meta["capture"].tolist(), meta["subject"].tolist(), meta["seq"].tolist(), meta["cam"].tolist(),
                   meta["frame_idx"].tolist(), width.tolist(), height.tolist(), ht_code.tolist(), ht_valid.tolist())
        for i, (m, annot_id, image_id, capture, subject, seq, cam, frame_idx, w, h, code, valid) in enumerate(cols):
            ht = skeleton.HAND_TYPES[code]
            out.append({
                "annot_id": annot_id, "image_id": image_id,
                "file_name": self.file_name(m), "image_path": self.image_path(m),
                "capture": capture, "subject": None if subject < 0 else subject,
                "seq_name": self.seq_names[seq], "camera": self.cam_names[cam],
                "frame_idx": frame_idx, "width": w, "height": h,
                "focal": focal[i], "princpt": princpt[i],
                "bbox_raw": bbox_raw[i], "bbox": bbox[i],
                "joint_cam": jc[i], "joint_img": ji[i], "joint_valid": jv[i],
                "hand_type": ht, "hand_type_vec": ht_vec[i],
                "hand_type_valid": valid, "abs_depth": abs_depth[i],
                "rootnet_bbox": rn_bbox[i] if has_rn else None,
                "rootnet_abs_depth": rn_depth[i] if has_rn else None,
            })
        self.mano.annotate(out)
        return out, lbl, ids


def load_split(source, root: str, split: str, rootnet: str | None = "auto", fps: int = 5,
               progress: bool = False, mano: str | None = None) -> SplitData:
    """Parse one split (streaming). source: a Source or its name. rootnet: a file, "auto" (look for
    the data set's RootNet file beside the annotations) or None. mano: a MANO model folder, to give
    the records their MANO parameters in the camera frame too (shards/mano/records.py)."""
    src = get_source(source) if isinstance(source, str) else source
    return SplitData(src, root, split, rootnet=rootnet, fps=fps, progress=progress, mano=mano)


def iter_records(source, root: str, split: str, rootnet: str | None = "auto", fps: int = 5,
                 strict: bool = True, batch: int = 1024):
    """Yield every record of a split in file order. strict: raise AnnotationError on the first
    unusable annotation; otherwise skip it (SplitData.problems lists them: use load_split)."""
    data = load_split(source, root, split, rootnet=rootnet, fps=fps)
    if strict and data.problems:
        r = min(data.problems)
        raise AnnotationError(data.data_file, int(data.annot_id[r]), "annotation", data.problems[r])
    good = np.array([r for r in range(len(data)) if r not in data.problems], dtype=np.int64)
    for s in range(0, len(good), batch):
        yield from data.records(good[s:s + batch])
