"""Lets Pillow open and save .uqd files: after `import uqdm_codec`, Image.open("x.uqd") decodes the
whole file (all complete layers; the exact image when the lossless layer is there), and
image.save("x.uqd", psnr=38) encodes (lossless without options). Both need torch and the model
(the one named in the file, or the default one), loaded on first use."""

from __future__ import annotations

from PIL import Image, ImageFile

from . import container, photo_metadata
from .errors import UqdmError


def _accept(prefix: bytes) -> bool:
    return prefix[: len(container.MAGIC)] == container.MAGIC


class UqdImageFile(ImageFile.ImageFile):
    format = "UQD"
    format_description = "uqdm progressive diffusion image"

    def _open(self) -> None:
        data = self.fp.read()
        try:
            header, _ = container.parse_header(data)
        except UqdmError as exc:  # Pillow's callers catch OSError for a file they cannot read
            raise OSError(str(exc)) from exc
        self._uqd_data = data
        self._size = (header.width, header.height)
        self._mode = header.mode  # RGB or L (a grayscale image's file), with alpha RGBA or LA
        self.info.update(photo_metadata.pil_info(header.icc_profile, header.exif, header.xmp))
        self.tile = []

    def load(self):
        if getattr(self, "_uqd_decoded", False):
            return super().load()
        from . import decode

        try:
            decoded = decode(self._uqd_data)
        except UqdmError as exc:  # a damaged file or missing weights: OSError, as Pillow's own plugins
            raise OSError(str(exc)) from exc
        self.im = decoded.im
        self._uqd_decoded = True
        self._release_file()
        return super().load()

    def verify(self) -> None:
        """Image.verify(): every checksum of the file (files.info), without decoding; OSError where
        one fails or the file is cut inside a layer header. Like Pillow's own, call it right after
        open: the file is closed after."""
        from . import files

        try:
            files.info(self._uqd_data)
        except UqdmError as exc:
            raise OSError(str(exc)) from exc
        finally:
            self._release_file()

    def _release_file(self) -> None:
        """Close the file Image.open opened (not one the caller passed), as Pillow's own plugins do
        once the pixels are read: _open read its bytes whole. It stayed open, and locked on Windows,
        for as long as the image lived (a ResourceWarning)."""
        if getattr(self, "_exclusive_fp", False) and self._close_exclusive_fp_after_loading and self.fp:
            self.fp.close()
        self.fp = None


NOT_FOR_SAVE = ("image", "progress", "emit")  # uqdm_codec.encode's parameters that save does not take


def _save(im: Image.Image, fp, filename) -> None:
    """Pillow's save handler: the whole file is encoded before its first byte is written (Pillow
    has opened, and so emptied, the target already; it removes a file it created if this fails)."""
    import inspect

    from . import encode

    # encode's keywords; others that Pillow users pass to every format (quality=...) are ignored
    keywords = set(inspect.signature(encode).parameters) - set(NOT_FOR_SAVE)
    options = {key: value for key, value in im.encoderinfo.items() if key in keywords}
    fp.write(encode(im, **options))  # its notes point at the caller's save() line (errors.warn)


def _save_all(im: Image.Image, fp, filename) -> None:
    """save(..., save_all=True), which code that saves animations and multi-page files passes to
    every format (it was Pillow's KeyError 'UQD'): a single image is saved as save() does; a .uqd
    file holds one image, so more frames are refused rather than all but one dropped."""
    frames = getattr(im, "n_frames", 1) + len(im.encoderinfo.get("append_images", ()))
    if frames > 1:
        raise UqdmError(f"a .uqd file holds one image, not {frames} frames: save them one at a time")
    _save(im, fp, filename)


def register() -> None:
    Image.register_open(UqdImageFile.format, UqdImageFile, _accept)
    Image.register_save(UqdImageFile.format, _save)
    Image.register_save_all(UqdImageFile.format, _save_all)
    Image.register_extension(UqdImageFile.format, ".uqd")
    Image.register_mime(UqdImageFile.format, "image/x-uqd")
