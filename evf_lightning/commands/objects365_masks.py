"""`evf data objects365-masks`: EVF-SAM's `o365_res_instances.json` built from Objects365 v1 boxes with SAM-2.

The authors' file is not public. Their recipe (EVF-SAM issue #27, reference/datasets.md §6): from the v1
training annotations keep, per image, only the categories that occur exactly once (a bare category name then
picks out one object), prompt SAM-2 with each kept box, and store the mask as RLE. This verb runs that recipe
with our SAM-2 image backbone (models/sam2.py) and writes a json the Objects365 reader takes as it is.

Each image is read at SAM-2's input size as SAM-2's image predictor reads it (stretched to the square), its
kept boxes are scaled into that frame and go through the prompt encoder as box prompts (two corner points and
a padding point), and the single-mask output is brought back to the image's size and thresholded at 0. An
annotation whose box or mask is empty is dropped (a prompt with an empty target would teach "nothing there"
for an object that is there); an image with nothing kept is dropped (the official loader needs one).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

    from evf_lightning.data.coco_json import CocoIndex
    from evf_lightning.models.sam2 import Sam2ImageBackbone

Sam2Size = Literal["hiera_tiny", "hiera_small", "hiera_base_plus", "hiera_large", "tiny"]
# SAM-2's image predictor stretches every image to its square input.
RESIZE = "stretch"


@dataclass
class MaskCounts:
    """What the recipe kept and dropped, for the report and the tests."""

    images: int = 0
    kept_images: int = 0
    annotations: int = 0
    repeated: int = 0
    empty_boxes: int = 0
    empty_masks: int = 0

    @property
    def kept(self) -> int:
        return self.annotations - self.repeated - self.empty_boxes - self.empty_masks


def box_masks(backbone: Sam2ImageBackbone, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Binary masks [N, H, W] uint8 that SAM-2 gives for boxes [N, 4] (x, y, w, h in pixels) on an RGB image."""
    import torch

    from evf_lightning.data.transforms import SamPreprocess, upscale_mask_logits

    size = backbone.config.image_size
    height, width = image.shape[:2]
    pixels, resized_hw = SamPreprocess(size=size, resize=RESIZE)(image)
    device = next(backbone.parameters()).device
    corners = torch.as_tensor(boxes, dtype=torch.float32).clone()
    corners[:, 2:] += corners[:, :2]
    scale = torch.tensor([resized_hw[1] / width, resized_hw[0] / height] * 2)
    with torch.inference_mode():
        features = backbone.encode(pixels[None].to(device))
        prompts: Tensor = backbone.prompt_encoder(
            input_points=None, input_labels=None, input_boxes=(corners * scale)[None].to(device), input_masks=None
        )[0][0]
        image_index = torch.zeros(len(boxes), dtype=torch.long, device=device)
        logits = backbone.decode(features, image_index, prompts, multimask_output=False)
        masks = upscale_mask_logits(logits.float().cpu(), size, resized_hw, (height, width), RESIZE) > 0
    return masks.numpy().astype(np.uint8)


def masks_from_boxes(
    index: CocoIndex, image_dir: Path, backbone: Sam2ImageBackbone, limit: int | None = None
) -> tuple[dict[str, Any], MaskCounts]:
    """The recipe on a v1 training json: the new json's content, and what was kept and dropped."""
    from pycocotools import mask as coco_mask

    from evf_lightning.data.objects365 import once_per_image
    from evf_lightning.data.refer import read_rgb

    counts = MaskCounts()
    images, annotations = [], []
    for image_id in sorted(index.images)[:limit]:
        record = index.images[image_id]
        counts.images += 1
        anns = index.image_annotations.get(image_id, [])
        counts.annotations += len(anns)
        kept = once_per_image(anns)
        counts.repeated += len(anns) - len(kept)
        boxed = [ann for ann in kept if ann["bbox"][2] > 0 and ann["bbox"][3] > 0]
        counts.empty_boxes += len(kept) - len(boxed)
        if not boxed:
            continue
        path = image_dir / record["file_name"]
        image = read_rgb(path, f"objects365 image {record['id']} ({path})")
        if image.shape[:2] != (record["height"], record["width"]):
            raise ValueError(
                f"{path} is {image.shape[0]}x{image.shape[1]} (h x w) but its record says "
                f"{record['height']}x{record['width']}"
            )
        masks = box_masks(backbone, image, np.array([ann["bbox"] for ann in boxed], dtype=np.float32))
        made = []
        for ann, mask in zip(boxed, masks, strict=True):
            if not mask.any():
                counts.empty_masks += 1
                continue
            rle = coco_mask.encode(np.asfortranarray(mask))
            segmentation = [{"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}]
            made.append(ann | {"segmentation": segmentation, "area": int(mask.sum())})
        if made:
            images.append(record)
            annotations += made
            counts.kept_images += 1
    categories = [{"id": category_id, "name": name} for category_id, name in index.categories.items()]
    return {"images": images, "annotations": annotations, "categories": categories}, counts


def load_backbone(size: Sam2Size, weights: Path, device: str | None) -> Sam2ImageBackbone:
    """SAM-2 of `size` with a published SAM-2 checkpoint (`sam2_hiera_large.pt` etc.) loaded strictly."""
    import torch

    from evf_lightning.hub.pretrained import load_image_backbone
    from evf_lightning.models.sam2 import Sam2BackboneConfig, Sam2ImageBackbone

    backbone = Sam2ImageBackbone(getattr(Sam2BackboneConfig, size)())
    load_image_backbone(backbone, "sam2", weights)
    return backbone.eval().to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def objects365_masks(
    annotations: Path,
    sam2: Path,
    size: Sam2Size = "hiera_large",
    images: Path | None = None,
    out: Path | None = None,
    limit: int | None = None,
    device: str | None = None,
) -> None:
    """Build EVF-SAM's o365_res_instances.json from Objects365 v1 boxes with SAM-2 (its authors' recipe).

    Per image of ANNOTATIONS only the categories that occur exactly once are kept; each kept box prompts
    SAM-2, whose mask is stored as a compressed RLE (`segmentation: [rle]`), the form the Objects365 reader
    (and the official loader) reads. Annotations with an empty box or mask and images left with none are
    dropped; what was kept and dropped is printed.

    Args:
        annotations: the Objects365 v1 training json (objects365_train.json: COCO with boxes, no masks).
        sam2: a published SAM-2 checkpoint of SIZE (e.g. sam2_hiera_large.pt; read with weights_only=True) or a
            safetensors file with its keys.
        size: the SAM-2 size of the checkpoint (tiny: the test model).
        images: the folder of the training images (default: train/ beside ANNOTATIONS).
        out: the json to write (default: o365_res_instances.json beside ANNOTATIONS, where the reader looks).
        limit: only the first LIMIT images by id (a trial run).
        device: where SAM-2 runs; default: cuda if available, else cpu.
    """
    from evf_lightning.data.coco_json import CocoIndex
    from evf_lightning.data.objects365 import ANNOTATION_FILE

    annotations = Path(annotations)
    index = CocoIndex(annotations, annotation_fields=("bbox",))  # a malformed file is refused before SAM-2 loads
    image_dir = Path(images) if images is not None else annotations.parent / "train"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist; pass --images")
    out = Path(out) if out is not None else annotations.parent / ANNOTATION_FILE
    backbone = load_backbone(size, Path(sam2), device)
    content, counts = masks_from_boxes(index, image_dir, backbone, limit)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(content))
    os.replace(partial, out)
    print(
        f"{counts.images} images, {counts.annotations} boxes: dropped {counts.repeated} of repeated categories, "
        f"{counts.empty_boxes} empty boxes, {counts.empty_masks} empty masks"
    )
    print(f"kept {counts.kept} masks on {counts.kept_images} images -> {out}")
