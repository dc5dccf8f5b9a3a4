"""Datasets a model can be analysed on, and any of whose pictures a request can name.

Two kinds: the built-in `digits` (scikit-learn's 1,797 8x8 digits, drawn at 32x32 px the
way the built-in digits model sees them) and folders named in the models file, laid out as
torchvision's ImageFolder (one subfolder per class). Folder paths come only from the models
file; over HTTP a picture is named by dataset and index (`dataset:NAME/INDEX`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from model_registry.errors import InvalidInput, NotFound

# What torchvision's ImageFolder accepts, plus GIF (the service decodes it too).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
)
DIGITS = "digits"
DIGITS_SIDE = 32
REFERENCE_PREFIX = "dataset:"
_REFERENCE = re.compile(r"^dataset:([^/]{1,64})/(-?[0-9]{1,12})$")


class Dataset(Protocol):
    """What the analysis and image references read."""

    name: str
    classes: tuple[str, ...]

    def __len__(self) -> int: ...

    def label(self, index: int) -> int:
        """The class index (into `classes`) of picture `index`."""
        ...

    def read(self, index: int) -> bytes:
        """The encoded picture `index` (raises OSError when it cannot be read)."""
        ...

    def describe(self, index: int) -> str:
        """A short name of picture `index` for messages and logs (never an absolute path)."""
        ...


@cache
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


@cache
def _digit_png(index: int) -> bytes:
    from model_registry.builtin.digits import render

    images, _ = _sklearn_digits()
    buffer = io.BytesIO()
    render(images[index], DIGITS_SIDE, "bilinear").save(buffer, format="PNG")
    return buffer.getvalue()


class DigitsDataset:
    """scikit-learn's digits, each drawn at 32x32 px with bilinear upscaling: the picture the
    digits model's own preprocessing makes of an 8x8 digit, so it sees exactly its input."""

    name = DIGITS
    classes = tuple(str(d) for d in range(10))

    def __len__(self) -> int:
        return len(_sklearn_digits()[1])

    def label(self, index: int) -> int:
        return int(_sklearn_digits()[1][index])

    def read(self, index: int) -> bytes:
        return _digit_png(index)

    def describe(self, index: int) -> str:
        return f"digits/{index}"

    def read_mask(self, index: int) -> bytes | None:
        """The digit's own strokes: its picture, whose non-zero pixels are the object."""
        return _digit_png(index)


@dataclass(frozen=True)
class FolderDataset:
    """An ImageFolder: classes are the subfolders (sorted), pictures their files (sorted).

    Attributes:
        name: the name in the models file.
        root: the folder.
        classes: subfolder names, sorted.
        files: paths relative to `root`, ordered by class, then name.
        labels: the class index of each file.
        masks: the folder of object masks (the models file's `masks`), or None.
    """

    name: str
    root: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...] = field(repr=False)
    masks: Path | None = None

    def __len__(self) -> int:
        return len(self.files)

    def label(self, index: int) -> int:
        return self.labels[index]

    def read(self, index: int) -> bytes:
        return (self.root / self.files[index]).read_bytes()

    def describe(self, index: int) -> str:
        return f"{self.name}/{index} ({self.files[index]})"

    def read_mask(self, index: int) -> bytes | None:
        """The PNG of the same relative name under `masks` (suffix .png), or None where the
        dataset has no masks or that file is missing or unreadable."""
        if self.masks is None:
            return None
        try:
            return (self.masks / self.files[index]).with_suffix(".png").read_bytes()
        except OSError:
            return None


def scan_folder(name: str, root: Path, masks: Path | None = None) -> FolderDataset:
    """List an ImageFolder; files that are not pictures by extension are left out. `masks`:
    a folder with one PNG per picture under the same relative name (non-zero = object).

    Raises:
        ValueError: the folder or the masks folder is missing, the folder has no class
            subfolders, or no pictures.
    """
    if not root.is_dir():
        raise ValueError(f"folder {str(root)!r} does not exist")
    if masks is not None and not masks.is_dir():
        raise ValueError(f"masks folder {str(masks)!r} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"folder {str(root)!r} has no class subfolders (ImageFolder layout)")
    files: list[str] = []
    labels: list[int] = []
    for number, class_name in enumerate(classes):
        for path in sorted((root / class_name).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                files.append(str(path.relative_to(root)))
                labels.append(number)
    if not files:
        raise ValueError(f"folder {str(root)!r} has no pictures in its class subfolders")
    return FolderDataset(name, root, tuple(classes), tuple(files), tuple(labels), masks)


def has_masks(dataset: Dataset) -> bool:
    """Whether the dataset names an object mask per picture (digits: its strokes)."""
    return isinstance(dataset, DigitsDataset) or getattr(dataset, "masks", None) is not None


def read_mask(dataset: Dataset, index: int) -> bytes | None:
    """The encoded mask of picture `index`, or None where there is none."""
    reader = getattr(dataset, "read_mask", None)
    return None if reader is None else reader(index)


class DatasetCatalog:
    """Datasets by name: the built-in digits first, then the folders of the models file."""

    def __init__(self, folders: Iterable[Dataset] = ()) -> None:
        self._datasets: dict[str, Dataset] = {DIGITS: DigitsDataset()}
        for dataset in folders:
            self._datasets[dataset.name] = dataset

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self._datasets.values())

    def names(self) -> list[str]:
        return list(self._datasets)

    def get(self, name: str, *, field: str = "dataset") -> Dataset:
        """The dataset, or a 404 listing the valid names."""
        found = self._datasets.get(name)
        if found is None:
            names = self.names()
            raise NotFound(
                f"Unknown dataset '{name[:80]}'. Available datasets: {', '.join(names)}. "
                "See GET /v1/datasets.",
                field=field,
                choices=names,
            )
        return found

    def resolve(self, reference: str, *, field: str = "image") -> tuple[Dataset, int]:
        """`dataset:NAME/INDEX` -> (dataset, index); 404 for an unknown name, 422 for a
        malformed reference or an index out of range."""
        match = _REFERENCE.match(reference)
        if match is None:
            raise InvalidInput(
                f"{field}: '{reference[:80]}' is not a dataset reference; write "
                "dataset:NAME/INDEX (e.g. dataset:digits/17)",
                field=field,
            )
        dataset = self.get(match.group(1), field=field)
        index = int(match.group(2))
        if not 0 <= index < len(dataset):
            raise InvalidInput(
                f"{field}: index {index} is out of range for dataset '{dataset.name}' "
                f"({len(dataset)} pictures, 0..{len(dataset) - 1})",
                field=field,
                valid_range=[0, len(dataset) - 1],
            )
        return dataset, index

    def read(self, reference: str, *, field: str = "image") -> bytes:
        """The bytes of the picture a reference names (422 when the file cannot be read)."""
        dataset, index = self.resolve(reference, field=field)
        try:
            return dataset.read(index)
        except OSError as exc:
            raise InvalidInput(
                f"{field}: picture {dataset.describe(index)} could not be read",
                field=field,
            ) from exc


def is_reference(value: str) -> bool:
    return value.startswith(REFERENCE_PREFIX)


def class_names(labels: Sequence[str]) -> dict[str, int]:
    """Model labels by their normalised name (see `normalise`); ambiguous names left out."""
    by_name: dict[str, int] = {}
    ambiguous: set[str] = set()
    for index, label in enumerate(labels):
        key = normalise(label)
        if key in by_name:
            ambiguous.add(key)
        by_name[key] = index
    return {k: v for k, v in by_name.items() if k not in ambiguous}


def normalise(name: str) -> str:
    """Lower case; '_', '-' and runs of spaces count as one space."""
    return " ".join(re.sub(r"[_\-\s]+", " ", name).lower().split())


def match_classes(classes: Sequence[str], labels: Sequence[str]) -> tuple[int, ...] | None:
    """The model output index of each dataset class, or None unless every class matches a
    different label: first exactly, then by `normalise`d name."""
    exact = {label: index for index, label in enumerate(labels)}
    loose = class_names(labels)
    mapping = []
    for name in classes:
        index = exact.get(name, loose.get(normalise(name)))
        if index is None:
            return None
        mapping.append(index)
    return tuple(mapping) if len(set(mapping)) == len(mapping) else None


_SIGNATURES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def picture_media_type(data: bytes) -> str | None:
    """The media type of a stored picture, from its first bytes; None for no picture format."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    return None
