"""Still images: ``dtype: image`` features stored in the data parquet, and image files (JSONL input)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from hub_pgen.errors import FrameError

# Larger images than any camera makes (8K is 33 MP): a tiny file that claims more is a decompression
# bomb, refused before its pixels are decoded; it fails its own sample only.
MAX_IMAGE_PIXELS = 64_000_000


def _decode(img: Any, what: str, path: Path) -> Any:
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise FrameError(f"{what} claims {img.width}x{img.height} pixels, more than any camera makes "
                         f"(limit {MAX_IMAGE_PIXELS:,}); not decoded", path=path,
                         hint="a corrupt or hostile image (a decompression bomb): replace it")
    return img.convert("RGB")


def fit_pixels(image: Any, max_pixels: int | None) -> Any:
    """``image`` (PIL) scaled down, aspect kept, so width x height <= ``max_pixels``."""
    if not max_pixels or image.width * image.height <= max_pixels:
        return image
    from PIL import Image

    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def open_image_file(path: str, base_dir: Path | None) -> Any:
    """An RGB PIL image from ``path`` (relative paths from ``base_dir``); FrameError if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    try:
        with Image.open(p) as img:
            return _decode(img, f"image {p}", p)
    except FrameError:
        raise
    except Image.DecompressionBombError as e:
        raise FrameError(f"image {p} is a decompression bomb: {e}", path=p, hint="replace the image") from e
    except FileNotFoundError as e:
        raise FrameError(f"image {p} does not exist", path=p,
                         hint="image paths in the JSONL are relative to the JSONL file's folder") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise FrameError(f"image {p} cannot be read: {e}", path=p, hint="the file is not an image or is damaged") from e


class ParquetImages:
    """Images stored in data parquet files (``{"bytes", "path"}`` structs), by global row index.

    Reads only the asked image columns plus ``index`` of one file at a time, and keeps the last file
    read: samples arrive in file order.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._key: tuple[str, tuple[str, ...]] | None = None
        self._rows: dict[int, int] = {}
        self._columns: dict[str, Any] = {}

    def _load(self, data_path: str, cameras: tuple[str, ...]) -> None:
        if self._key == (data_path, cameras):
            return
        path = self.root / data_path
        try:
            table = pq.read_table(path, columns=["index", *cameras])
        except FileNotFoundError as e:
            raise FrameError(f"data file {path} does not exist", path=path) from e
        except (OSError, ValueError, KeyError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on bad files
            raise FrameError(f"cannot read image columns {list(cameras)} from {path}: {e}", path=path) from e
        index = table.column("index").to_numpy()
        self._rows = {int(v): i for i, v in enumerate(np.asarray(index))}
        self._columns = {c: table.column(c) for c in cameras}
        self._key = (data_path, cameras)

    def image(self, data_path: str, cameras: tuple[str, ...], camera: str, row: int) -> Any:
        from PIL import Image, UnidentifiedImageError

        self._load(data_path, cameras)
        i = self._rows.get(row)
        if i is None:
            raise FrameError(f"{self.root / data_path} has no row with index {row}", path=self.root / data_path)
        cell = self._columns[camera][i].as_py()
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data:
            raise FrameError(f"{camera} at row {row} of {data_path} holds no image bytes",
                             path=self.root / data_path)
        try:
            with Image.open(io.BytesIO(data)) as img:
                return _decode(img, f"{camera} at row {row} of {data_path}", self.root / data_path)
        except FrameError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise FrameError(f"{camera} at row {row} of {data_path} is not a readable image: {e}",
                             path=self.root / data_path) from e
