"""Detection datasets: COCO JSON, YOLO txt (Ultralytics `data.yaml`) and Pascal VOC XML.

Each parses its annotations up front (so a broken record fails at start, naming the file and the record) into
`Record`s: image path, boxes xyxy in source pixels, contiguous class indices. `load(i)` reads the BGR image.
`to_coco()` gives the ground truth as a COCO dict for pycocotools, whatever the source format.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_yolox.errors import ConfigError
from edge_yolox.files import DATA_BYTES, load_json, load_yaml

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


@dataclass
class Record:
    image: Path
    boxes: np.ndarray  # [N, 4] float32 x1 y1 x2 y2, source pixels
    classes: np.ndarray  # [N] int64, 0..num_classes-1
    image_id: int = 0
    size: tuple[int, int] | None = None  # (h, w) when the annotations give it


@dataclass
class DetectionDataset:
    names: list[str]
    records: list[Record]
    source: str  # what was parsed, for messages
    category_ids: list[int] = field(default_factory=list)  # COCO category id per class index (1-based otherwise)

    def __post_init__(self):
        if not self.records:
            raise ConfigError(f"{self.source}: the dataset has no images")
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.names) + 1))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(BGR uint8 image, labels [N, 5] = x1 y1 x2 y2 class as float32)."""
        rec = self.records[index]
        image = cv2.imread(str(rec.image), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"{self.source}: cannot read image {rec.image}")
        return image, self.labels(index)

    def labels(self, index: int) -> np.ndarray:
        """The image's labels [N, 5] = x1 y1 x2 y2 class as float32, without reading the image."""
        rec = self.records[index]
        labels = np.concatenate([rec.boxes, rec.classes[:, None].astype(np.float32)], 1).astype(np.float32)
        return labels.reshape(-1, 5)

    def image_size(self, index: int) -> tuple[int, int]:
        rec = self.records[index]
        if rec.size is None:
            image = cv2.imread(str(rec.image), cv2.IMREAD_COLOR)
            if image is None:
                raise ConfigError(f"{self.source}: cannot read image {rec.image}")
            rec.size = image.shape[:2]
        return rec.size

    def to_coco(self) -> dict:
        """The ground truth as a COCO dict (for pycocotools), with this dataset's category ids."""
        images, annotations = [], []
        for i, rec in enumerate(self.records):
            h, w = self.image_size(i)
            images.append({"id": rec.image_id, "file_name": rec.image.name, "height": h, "width": w})
            for box, cls in zip(rec.boxes.tolist(), rec.classes.tolist()):
                bw, bh = box[2] - box[0], box[3] - box[1]
                annotations.append({"id": len(annotations) + 1, "image_id": rec.image_id, "iscrowd": 0,
                                    "category_id": self.category_ids[cls], "bbox": [box[0], box[1], bw, bh],
                                    "area": bw * bh})
        categories = [{"id": cid, "name": name} for cid, name in zip(self.category_ids, self.names)]
        return {"images": images, "annotations": annotations, "categories": categories}


def _boxes(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def coco_dataset(annotation_file: str | Path, image_dir: str | Path | None = None) -> DetectionDataset:
    """COCO JSON; images in `image_dir` (default: `images/` beside the `annotations/` folder, else beside the file)."""
    ann_path = Path(annotation_file)
    data = load_json(ann_path, "COCO annotation file", DATA_BYTES)
    categories = sorted(_coco_items(data, "categories", ann_path, {"id": int, "name": str}), key=lambda c: c["id"])
    images = _coco_items(data, "images", ann_path, {"id": int, "file_name": str})
    if not categories:
        raise ConfigError(f"{ann_path}: categories: empty (no classes to train or evaluate)")
    if image_dir is None:
        beside = ann_path.parent.parent / "images"
        image_dir = beside if ann_path.parent.name == "annotations" and beside.is_dir() else ann_path.parent
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    per_image: dict[int, tuple[list, list]] = {img["id"]: ([], []) for img in images}
    for n, ann in enumerate(_coco_items(data, "annotations", ann_path, {"image_id": int, "category_id": int},
                                        required=False)):
        try:
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if not all(map(math.isfinite, (x, y, w, h))):
                raise ValueError("bbox values must be finite")
            if w <= 0 or h <= 0:
                continue
            boxes, classes = per_image[ann["image_id"]]
            classes.append(index_of[ann["category_id"]])
            boxes.append([x, y, x + w, y + h])
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"{ann_path}: annotations[{n}] (id {ann.get('id')}) is invalid: {exc!r}") from None
    records = []
    for n, img in enumerate(images):
        name = Path(img["file_name"])
        if name.is_absolute() or ".." in name.parts:
            raise ConfigError(f"{ann_path}: images[{n}].file_name: {str(name)!r} must stay inside the image folder")
        size = _coco_size(img, f"{ann_path}: images[{n}]")
        boxes, classes = per_image[img["id"]]
        records.append(Record(Path(image_dir) / name, _boxes(boxes), np.asarray(classes, np.int64), img["id"], size))
    return DetectionDataset([c["name"] for c in categories], records, str(ann_path), [c["id"] for c in categories])


def _coco_items(data, key: str, path: Path, fields: dict[str, type], required: bool = True) -> list[dict]:
    """data[key] as a list of objects whose `fields` have the given types; a ConfigError names the first bad one."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a COCO annotation file (top level is a {type(data).__name__}, not an object)")
    items = data.get(key, None if required else [])
    if not isinstance(items, list):
        raise ConfigError(f"{path}: {key}: must be a list, got {type(items).__name__}")
    for n, item in enumerate(items):
        bad = [f for f, t in fields.items() if not isinstance(item, dict) or not isinstance(item.get(f), t)
               or isinstance(item.get(f), bool)]
        if bad:
            raise ConfigError(f"{path}: {key}[{n}].{bad[0]}: missing or not a {fields[bad[0]].__name__}")
    return items


def _coco_size(img: dict, where: str) -> tuple[int, int] | None:
    if "height" not in img or "width" not in img:
        return None
    h, w = img["height"], img["width"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 16 for v in (h, w)):
        raise ConfigError(f"{where}: height/width must be integers 1..65536, got {h!r} x {w!r}")
    return h, w


def _yolo_names(raw, source: str) -> list[str]:
    if isinstance(raw, dict):
        return [str(raw[k]) for k in sorted(raw, key=int)]
    if isinstance(raw, list):
        return [str(n) for n in raw]
    raise ConfigError(f"{source}: 'names' must be a list or a mapping of class index to name")


def yolo_dataset(data_yaml: str | Path, split: str = "train") -> DetectionDataset:
    """Ultralytics layout: `data.yaml` with `path`, `train`/`val` (an image folder or a .txt list) and `names`;
    labels in the parallel `labels/` folder, one `class cx cy w h` (normalised) line per object."""
    yaml_path = Path(data_yaml)
    cfg = load_yaml(yaml_path, "dataset YAML")
    try:
        names = _yolo_names(cfg["names"], str(yaml_path))
        split_value = cfg[split]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{yaml_path}: cannot read the {split!r} split ({type(exc).__name__}: {exc})") from None
    root = (yaml_path.parent / str(cfg.get("path", "."))).resolve()
    split_path = root / str(split_value)
    if split_path.is_dir():
        images = sorted(p for p in split_path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif split_path.is_file():
        images = [(root / line.strip()).resolve() for line in split_path.read_text().splitlines() if line.strip()]
    else:
        raise ConfigError(f"{yaml_path}: {split}: {split_path} does not exist")
    records = []
    for image_id, image in enumerate(images):
        parts = image.parts
        cut = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
        label = (Path(*parts[:cut], "labels", *parts[cut + 1:]) if cut is not None else image).with_suffix(".txt")
        rows = _read_yolo_labels(label, len(names))
        size = None
        if rows:
            size = _imread(image, str(yaml_path)).shape[:2]
        h, w = size or (1, 1)
        boxes = [[(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
                 for _, cx, cy, bw, bh in rows]
        records.append(Record(image, _boxes(boxes), np.asarray([int(r[0]) for r in rows], np.int64),
                              image_id + 1, size))
    return DetectionDataset(names, records, str(yaml_path))


def _read_yolo_labels(path: Path, num_classes: int) -> list[tuple[float, ...]]:
    if not path.exists():
        return []  # an image without a label file has no objects (Ultralytics convention)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = tuple(float(v) for v in line.split()[:5])
            if len(values) != 5 or not 0 <= values[0] < num_classes or values[0] != int(values[0]):
                raise ValueError("expected 'class cx cy w h' with a class index below the number of names")
        except ValueError as exc:
            raise ConfigError(f"{path}:{n}: bad label line {line.strip()!r}: {exc}") from None
        rows.append(values)
    return rows


def _imread(path: Path, source: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"{source}: cannot read image {path}")
    return image


def voc_dataset(root: str | Path, split: str = "trainval", names: list[str] | None = None) -> DetectionDataset:
    """Pascal VOC: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/<split>.txt` (all XMLs when absent).
    Class names default to the 20 VOC classes unless every name found is outside them."""
    root = Path(root)
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if list_file.exists():
        xmls = [root / "Annotations" / f"{s.split()[0]}.xml" for s in list_file.read_text().split("\n") if s.strip()]
    else:
        xmls = sorted((root / "Annotations").glob("*.xml"))
    parsed = [_parse_voc(x) for x in xmls]
    found = sorted({name for _, objs, _ in parsed for name, _ in objs})
    names = list(names or (VOC_CLASSES if set(found) <= set(VOC_CLASSES) else found))
    records = []
    for image_id, (xml, (filename, objs, size)) in enumerate(zip(xmls, parsed), 1):
        unknown = [n for n, _ in objs if n not in names]
        if unknown:
            raise ConfigError(f"{xml}: class {unknown[0]!r} is not one of the dataset's names")
        records.append(Record(root / "JPEGImages" / filename, _boxes([b for _, b in objs]),
                              np.asarray([names.index(n) for n, _ in objs], np.int64), image_id, size))
    return DetectionDataset(names, records, str(root))


def _parse_voc(xml: Path):
    try:
        tree = ET.parse(xml).getroot()
        filename = tree.findtext("filename") or f"{xml.stem}.jpg"
        size_node = tree.find("size")
        size = (int(size_node.findtext("height")), int(size_node.findtext("width"))) if size_node is not None else None
        objs = []
        for obj in tree.iter("object"):
            if int(obj.findtext("difficult") or 0):
                continue
            bb = obj.find("bndbox")
            # VOC coordinates are 1-based inclusive pixels.
            box = [float(bb.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
            objs.append((obj.findtext("name").strip(), box))
    except (OSError, ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{xml}: not a valid VOC annotation ({type(exc).__name__}: {exc})") from None
    return filename, objs, size


def open_dataset(path: str | Path, split: str = "train") -> DetectionDataset:
    """Detect the format: a COCO .json or a folder with annotations/*.json (preferred when both exist), a YOLO
    data.yaml or a folder with one, or a VOC folder (Annotations/)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"dataset {path} does not exist")
    if path.suffix == ".json":
        return coco_dataset(path)
    if path.suffix in (".yaml", ".yml"):
        return yolo_dataset(path, split)
    jsons = sorted((path / "annotations").glob("*.json"))
    if jsons:
        preferred = [j for j in jsons if split in j.stem]
        return coco_dataset((preferred or jsons)[0])
    if (path / "data.yaml").exists():
        return yolo_dataset(path / "data.yaml", split)
    if (path / "Annotations").is_dir():
        return voc_dataset(path, "trainval" if split == "train" else split)
    raise ConfigError(f"{path}: not a dataset (expected a COCO .json, a folder with annotations/*.json, "
                      "a YOLO data.yaml or a VOC folder with Annotations/)")
