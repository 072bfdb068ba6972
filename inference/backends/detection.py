"""Open-vocabulary detector: Grounding DINO through transformers (the paper's ``detect_object``).

Any checkpoint that loads with ``AutoModelForZeroShotObjectDetection`` and whose processor has
``post_process_grounded_object_detection`` works (IDEA-Research/grounding-dino-tiny/-base,
MM Grounding DINO); tests use a tiny random one built offline
(``inference.toy.checkpoints.build_tiny_grounding_dino``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.backends import load_once, resolve_model, torch_device


@dataclass(frozen=True)
class Detection:
    """One detected object: pixel box ``(x0, y0, x1, y1)`` in the coordinates of the image
    that was searched, its score and the matched phrase."""

    box: tuple[int, int, int, int]
    score: float
    label: str


def grounding_prompt(text: str) -> str:
    """Grounding DINO expects lower-case phrases each ending with a period ("a cat. a dog.")."""
    phrases = [p.strip().lower() for p in text.replace(";", ".").split(".") if p.strip()]
    return " ".join(f"{p}." for p in phrases)


class GroundingDinoDetector:
    """Zero-shot detection with Grounding DINO; loads lazily once per (model, device)."""

    name = "grounding-dino"

    def __init__(self, model: str = "IDEA-Research/grounding-dino-tiny", device: str = "cpu",
                 box_threshold: float = 0.35, text_threshold: float = 0.25) -> None:
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = torch_device(device)
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold

    def identity(self) -> str:
        return f"grounding-dino:{self.model_name}"

    def _load(self):
        def build():
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

            local = Path(self.model_path).is_dir()
            processor = AutoProcessor.from_pretrained(self.model_path, local_files_only=local)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(self.model_path, local_files_only=local)
            return processor, model.to(self.device).eval()

        return load_once(("grounding-dino", self.model_path, self.device), build)

    def detect(self, image: np.ndarray, text: str, box_threshold: float | None = None,
               text_threshold: float | None = None) -> list[Detection]:
        """Objects matching ``text`` in an HxWx3 RGB image, best score first, boxes clipped to
        the image and rounded to integer pixels."""
        import torch
        from PIL import Image

        from inference.errors import ModuleArgumentError

        prompt = grounding_prompt(text)
        if not prompt:
            raise ValueError("detect needs a non-empty object description")
        processor, model = self._load()
        # The text encoder takes at most max_text_len tokens (256 for Grounding DINO); longer
        # descriptions make the model fail deep inside: the caller's text, so say so here.
        limit = int(getattr(model.config, "max_text_len", 0) or 0)
        if limit:
            tokens = len(processor.tokenizer(prompt)["input_ids"])
            if tokens > limit:
                raise ModuleArgumentError(f"the object description has {tokens} tokens; the detector takes at most "
                                          f"{limit}: describe the object in a few words (e.g. 'red car')")
        height, width = image.shape[:2]
        inputs = processor(images=Image.fromarray(image), text=prompt, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = model(**inputs)
        result = processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"],
            threshold=self.box_threshold if box_threshold is None else box_threshold,
            text_threshold=self.text_threshold if text_threshold is None else text_threshold,
            target_sizes=[(height, width)])[0]
        # "labels" is deprecated (warns on access); newer processors give "text_labels".
        labels = result["text_labels"] if "text_labels" in result else result["labels"]
        detections = []
        for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), labels):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
            y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
            if x1 <= x0 or y1 <= y0:
                continue  # degenerate after clipping: nothing a crop could show
            detections.append(Detection((x0, y0, x1, y1), float(score), str(label)))
        detections.sort(key=lambda d: -d.score)
        return detections
