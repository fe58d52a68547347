"""Lets Pillow open .uqd files: after `import uqdm_codec`, Image.open("x.uqd") decodes the whole file
(all complete layers; the exact image when the lossless layer is there). Decoding needs torch and
the model named in the file (or the default one), loaded on first use."""

from __future__ import annotations

from PIL import Image, ImageFile

from . import container, photo_metadata


def _accept(prefix: bytes) -> bool:
    return prefix[: len(container.MAGIC)] == container.MAGIC


class UqdImageFile(ImageFile.ImageFile):
    format = "UQD"
    format_description = "uqdm progressive diffusion image"

    def _open(self) -> None:
        data = self.fp.read()
        header, _ = container.parse_header(data)
        self._uqd_data = data
        self._size = (header.width, header.height)
        self._mode = "RGB" if header.alpha is None else "RGBA"
        self.info.update(photo_metadata.pil_info(header.icc_profile, header.exif, header.xmp))
        self.tile = []

    def load(self):
        if getattr(self, "_uqd_decoded", False):
            return super().load()
        from . import decode

        decoded = decode(self._uqd_data)
        self.im = decoded.im
        self._uqd_decoded = True
        return super().load()


def register() -> None:
    Image.register_open(UqdImageFile.format, UqdImageFile, _accept)
    Image.register_extension(UqdImageFile.format, ".uqd")
    Image.register_mime(UqdImageFile.format, "image/x-uqd")
