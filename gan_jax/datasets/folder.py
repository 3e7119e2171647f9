"""`gan_jax_folder`: a folder of the user's own png/jpg images as a tfds dataset.

`tfds.ImageFolder` wants `split/label/image` subfolders; a user's folder is usually
just images, flat or nested, so this builder takes every image under the folder
into one `train` split. Each folder gets its own builder config, named by a hash of
the folder's path and its file listing (names, sizes, modification times): a
changed folder is prepared again, an unchanged one is read from `data_dir`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from gan_jax.datasets._common import DataError, encode_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_EXIF_ORIENTATION = 0x0112


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
    """A folder and its image files (paths relative to it, sorted)."""

    folder: str = ""
    files: tuple[str, ...] = ()
    # Skip unreadable images (listed in `info.metadata["skipped"]`) instead of failing.
    skip_bad: bool = False


def list_images(folder: str) -> list[str]:
    """The png/jpg/jpeg files under `folder` (any case, any depth), relative and sorted.

    Hidden files and folders (names starting with ".") are left out.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(found)


def folder_config(folder: str, *, skip_bad: bool = False) -> FolderConfig:
    """The builder config of `folder`; raises DataError if it has no images."""
    folder = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(folder):
        raise DataError(
            f"image folder {folder} does not exist or is not a folder: "
            "fix the path in --config.dataset=folder:/path/to/images"
        )
    files = list_images(folder)
    if not files:
        raise DataError(
            f"no .png/.jpg/.jpeg images in {folder}: put images in it (nested folders "
            "are fine) or point --config.dataset=folder:... at the right folder"
        )
    digest = hashlib.sha256(folder.encode())
    for rel in files:
        stat = os.stat(os.path.join(folder, rel))
        digest.update(f"\n{rel}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(folder).lower()).strip("_")[:32]
    return FolderConfig(
        name=f"{slug or 'images'}_{digest.hexdigest()[:16]}",
        description=f"{len(files)} image files under {folder}",
        folder=folder,
        files=tuple(files),
        skip_bad=skip_bad,
    )


def _png_header(data: bytes) -> tuple[int, int]:
    """(bit depth, colour type) of PNG bytes."""
    return data[24], data[25]


def _readable_bytes(data: bytes) -> bytes:
    """Checks that `data` decodes; returns bytes TensorFlow decodes the same way.

    8-bit grayscale/RGB PNGs and JPEGs are kept as they are; anything else (palette,
    alpha, 16-bit, CMYK, other formats, rotated JPEGs) is re-encoded as PNG.
    Raises what PIL raises for broken data.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # Decodes everything: catches truncated files.
        if (
            image.format == "JPEG"
            and image.mode in ("L", "RGB")
            and image.getexif().get(_EXIF_ORIENTATION, 1) == 1
        ) or (image.format == "PNG" and _png_header(data) in ((8, 0), (8, 2))):
            return data
        if image.format == "JPEG":
            from PIL import ImageOps

            image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit grayscale.
            array = np.asarray(image, np.float64)
            if array.max() > 255:
                array = array / 257.0
            array = np.clip(np.round(array), 0, 255).astype(np.uint8)[..., None]
        elif image.mode in ("1", "L", "LA"):
            array = np.asarray(image.convert("L"))[..., None]
        else:
            array = np.asarray(image.convert("RGB"))
    return encode_png(np.ascontiguousarray(array))


class ImageFolder(tfds.core.GeneratorBasedBuilder):
    """Every image under a folder, one `train` split; build it with `folder_config()`."""

    name = "gan_jax_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=config.description if config else "A folder of images.",
            # Grayscale images stay 1-channel PNGs; decoding with 3 channels tiles them.
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(None, None, 3))}
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download.
        config = self.builder_config
        if not isinstance(config, FolderConfig) or not config.files:
            raise DataError(
                "gan_jax_folder needs a folder config: build it with "
                "ImageFolder(config=folder_config(path))"
            )
        return {"train": self._generate_examples(config)}

    def _generate_examples(self, config: FolderConfig):
        skipped = []
        for rel in config.files:
            path = os.path.join(config.folder, rel)
            try:
                with open(path, "rb") as f:
                    data = _readable_bytes(f.read())
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                if not config.skip_bad:
                    raise DataError(
                        f"unreadable image {path} ({type(e).__name__}: {e}): fix or remove "
                        "it, or pass --config.bad_images=skip to leave such files out"
                    ) from e
                skipped.append(rel)
                continue
            yield rel, {"image": data}
        self.info.metadata["skipped"] = skipped
        if len(skipped) == len(config.files):
            raise DataError(
                f"none of the {len(skipped)} images in {config.folder} can be read: "
                "check that they are valid png/jpg files"
            )
