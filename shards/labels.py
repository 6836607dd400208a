"""The fixed-size binary label component of a shard sample (`lbl`: little-endian float32, no header)
and the integer id component (`ids`: little-endian int64 [annot_id, image_id]).

DALI reads both with `fn.readers.webdataset(ext=[..., "lbl", "ids"], dtypes=[..., FLOAT, INT64])`;
`FIELDS` says where each field sits in the flat float vector so the pipeline can slice it.
"""
import numpy as np

from .skeleton import NUM_JOINTS

# name -> shape, in order. All float32.
FIELDS = (
    ("joint_img", (NUM_JOINTS, 3)),  # u, v in image pixels; Z camera depth in mm
    ("joint_cam", (NUM_JOINTS, 3)),  # camera space mm
    ("joint_valid", (NUM_JOINTS,)),  # 0/1, root rule applied
    ("bbox", (4,)),  # processed GT bbox [x, y, w, h] (docs/conventions.md §3.1)
    ("rootnet_bbox", (4,)),  # RootNet bbox (already processed); = bbox when has_rootnet is 0
    ("hand_type", (2,)),  # [right, left] (docs/conventions.md §3.7)
    ("hand_type_valid", (1,)),
    ("abs_depth", (2,)),  # GT root depth [right, left] mm
    ("rootnet_abs_depth", (2,)),  # RootNet root depth [right, left]; = abs_depth when has_rootnet is 0
    ("has_rootnet", (1,)),
    ("focal", (2,)),
    ("princpt", (2,)),
    ("img_size", (2,)),  # [width, height]
)

OFFSETS = {}
_o = 0
for _name, _shape in FIELDS:
    _n = int(np.prod(_shape))
    OFFSETS[_name] = (_o, _o + _n, _shape)
    _o += _n
LABEL_SIZE = _o  # floats per sample
IDS_SIZE = 2


def encode(record: dict) -> tuple[bytes, bytes]:
    """Record (see shards.reader) -> (lbl bytes, ids bytes): one sample through encode_batch."""
    has_rn = record.get("rootnet_bbox") is not None
    values = {
        "joint_img": np.concatenate(
            [np.asarray(record["joint_img"])[:, :2], np.asarray(record["joint_cam"])[:, 2:3]], axis=1
        ),
        "joint_cam": record["joint_cam"],
        "joint_valid": record["joint_valid"],
        "bbox": record["bbox"],
        "rootnet_bbox": record["rootnet_bbox"] if has_rn else record["bbox"],
        "hand_type": record["hand_type_vec"],
        "hand_type_valid": [record["hand_type_valid"]],
        "abs_depth": record["abs_depth"],
        "rootnet_abs_depth": record["rootnet_abs_depth"] if has_rn else record["abs_depth"],
        "has_rootnet": [float(has_rn)],
        "focal": record["focal"],
        "princpt": record["princpt"],
        "img_size": [record["width"], record["height"]],
    }
    try:
        lbl, ids = encode_batch({k: np.asarray(v, dtype=np.float32)[None] for k, v in values.items()},
                                [record["annot_id"]], [record["image_id"]])
    except ValueError as e:
        raise ValueError(f"annot {record.get('annot_id')}: {e}") from None
    return lbl[0].tobytes(), ids[0].tobytes()


def encode_batch(fields: dict, annot_id, image_id) -> tuple[np.ndarray, np.ndarray]:
    """n samples at once: fields maps each FIELDS name to an array of shape (n, *shape) -> (lbl (n,
    LABEL_SIZE) little-endian float32, ids (n, 2) little-endian int64); row i's bytes are sample i's
    `lbl` and `ids` members. The shard writer encodes a whole batch of records this way (one numpy
    call per field instead of per sample)."""
    ids = np.stack([np.asarray(annot_id, dtype="<i8"), np.asarray(image_id, dtype="<i8")], axis=1)
    n = len(ids)
    out = np.empty((n, LABEL_SIZE), dtype="<f4")
    for name, (a, b, shape) in OFFSETS.items():
        v = np.asarray(fields[name], dtype=np.float32)
        if v.shape != (n, *shape):
            raise ValueError(f"field {name!r} has shape {v.shape[1:]}, expected {shape}")
        out[:, a:b] = v.reshape(n, b - a)
    return out, ids


def decode(lbl, ids=None) -> dict:
    """Inverse of encode for one sample or a batch: lbl (..., LABEL_SIZE) float32 or bytes."""
    a = np.frombuffer(lbl, dtype="<f4") if isinstance(lbl, (bytes, bytearray, memoryview)) else np.asarray(lbl)
    if a.shape[-1] != LABEL_SIZE:
        raise ValueError(f"label vector has {a.shape[-1]} floats, expected {LABEL_SIZE}")
    lead = a.shape[:-1]
    out = {name: a[..., s:e].reshape(*lead, *shape) for name, (s, e, shape) in OFFSETS.items()}
    if ids is not None:
        i = np.frombuffer(ids, dtype="<i8") if isinstance(ids, (bytes, bytearray, memoryview)) else np.asarray(ids)
        out["annot_id"], out["image_id"] = i[..., 0], i[..., 1]
    return out
