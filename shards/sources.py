"""Small per-data-set descriptions fed to the one converter core (shards.reader).

A data set is data, not a class: where its files lie, whether 3D joints come in world space
(InterHand2.6M: camera.json + joint_3d.json) or inline in camera space (RHD, STB: COCO files
converted by the InterHand2.6M authors), how its 21-joint hands map into our 42-joint layout,
and its hand-type rule. Paths are templates relative to the data set root, filled with
{split}, {fps} (InterHand2.6M RootNet files: "" or "_30fps"), {file_name} and {seq_name}.

Layouts follow the original repository's data/{InterHand2.6M,RHD,STB}/dataset.py:
- InterHand2.6M root: images/{split}/..., annotations/{split}/InterHand2.6M_{split}_*.json,
  rootnet_output/rootnet_interhand2.6m_output_{split}[_30fps].json (docs/conventions.md §1).
- RHD root (the original's data/RHD/data): RHD_training.json / RHD_evaluation.json,
  images in training/color/ and evaluation/color/; RootNet in ../rootnet_output/rootnet_rhd_output.json.
- STB root (the original's data/STB/data): STB_train.json / STB_test.json, images in
  images/<seq_name>/; RootNet in ../rootnet_output/rootnet_stb_output.json.
RHD and STB hands have their wrist first (native index 0), then per finger thumb, index,
middle, ring, pinky from tip to base; ours put the four finger joints first and the wrist at
20 (docs/conventions.md §2), hence PERM_WRIST_FIRST.
"""
from dataclasses import dataclass, field

from .skeleton import HAND_TYPES

# Our within-hand slot k takes native joint PERM_WRIST_FIRST[k] (slots 0-19 fingers, 20 wrist).
PERM_WRIST_FIRST = tuple(range(1, 21)) + (0,)


@dataclass(frozen=True)
class Source:
    name: str
    splits: tuple  # split names this data set has
    data_file: dict  # split -> COCO annotation file template
    image_file: dict  # split -> image path template ({file_name}, {seq_name})
    world: bool  # True: camera.json + joint_3d.json give world joints; False: inline joint_cam/joint_img
    camera_file: str = ""  # world only
    joint_file: str = ""  # world only
    rootnet_file: dict = field(default_factory=dict)  # split -> tuple of candidate templates (auto-detect)
    perm: tuple | None = None  # inline only: native joint index for each of our 21 within-hand slots
    hand_types: tuple = HAND_TYPES  # allowed annotation hand_type values
    fixed_hand_type_valid: int | None = None  # None: the annotation's hand_type_valid


INTERHAND = Source(
    name="interhand",
    splits=("train", "val", "test"),
    data_file={s: f"annotations/{s}/InterHand2.6M_{s}_data.json" for s in ("train", "val", "test")},
    image_file={s: f"images/{s}/{{file_name}}" for s in ("train", "val", "test")},
    world=True,
    camera_file="annotations/{split}/InterHand2.6M_{split}_camera.json",
    joint_file="annotations/{split}/InterHand2.6M_{split}_joint_3d.json",
    rootnet_file={s: (f"rootnet_output/rootnet_interhand2.6m_output_{s}{{fps}}.json",) for s in ("val", "test")},
)

RHD = Source(
    name="rhd",
    splits=("train", "test"),
    data_file={"train": "RHD_training.json", "test": "RHD_evaluation.json"},
    image_file={"train": "training/color/{file_name}", "test": "evaluation/color/{file_name}"},
    world=False,
    rootnet_file={"test": ("rootnet_output/rootnet_rhd_output.json", "../rootnet_output/rootnet_rhd_output.json")},
    perm=PERM_WRIST_FIRST,
    hand_types=("right", "left"),
    fixed_hand_type_valid=1,
)

STB = Source(
    name="stb",
    splits=("train", "test"),
    data_file={"train": "STB_train.json", "test": "STB_test.json"},
    image_file={"train": "images/{seq_name}/{file_name}", "test": "images/{seq_name}/{file_name}"},
    world=False,
    rootnet_file={"test": ("rootnet_output/rootnet_stb_output.json", "../rootnet_output/rootnet_stb_output.json")},
    perm=PERM_WRIST_FIRST,
    hand_types=("right", "left"),
    fixed_hand_type_valid=1,
)

SOURCES = {s.name: s for s in (INTERHAND, RHD, STB)}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[name]
