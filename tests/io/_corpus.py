"""Writers of awkward and broken image files for the loader tests (Pillow + pydicom only).

Each method writes one file under `root` and returns its path, so a test states
the input and the exact outcome side by side.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SECRET_PATIENT_ID = "SECRET-PATIENT-4711"


class Corpus:
    SECRET_PATIENT_ID = SECRET_PATIENT_ID

    def __init__(self, root):
        self.root = Path(root)

    def _path(self, name):
        return self.root / name

    # ---- plain images (Pillow) ----------------------------------------------

    def image(self, name, image, **save_kwargs):
        path = self._path(name)
        image.save(path, **save_kwargs)
        return path

    def gray_png(self, name="gray.png", shape=(8, 8), value=128):
        return self.image(name, Image.new("L", shape[::-1], value))

    def png16(self, name="gray16.png"):
        """2x2 16-bit PNG holding 0, 32768, 65535 and 1000."""
        values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
        return self.image(name, Image.fromarray(values))

    def rgba_png(self, name="rgba.png"):
        """(0, 0) is fully transparent red; (0, 1) opaque white."""
        image = Image.new("RGBA", (2, 1))
        image.putpixel((0, 0), (255, 0, 0, 0))
        image.putpixel((1, 0), (255, 255, 255, 255))
        return self.image(name, image)

    def palette_png(self, name="palette.png"):
        """Palette entries: 0 black, 1 pure green (transparent), 2 gray 200."""
        image = Image.new("P", (3, 1))
        image.putpalette([0, 0, 0, 0, 255, 0, 200, 200, 200])
        image.putdata([0, 1, 2])
        return self.image(name, image, transparency=1)

    def la_png(self, name="la.png"):
        image = Image.new("LA", (2, 1))
        image.putdata([(10, 0), (250, 255)])
        return self.image(name, image)

    def cmyk_jpeg(self, name="cmyk.jpg"):
        """White (no ink) on the left half, black (K=255) on the right half."""
        image = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
        image.paste((0, 0, 0, 255), (8, 0, 16, 8))
        return self.image(name, image, quality=95)

    def exif_rotated_jpeg(self, name="rotated.jpg"):
        """A 40 wide x 16 high black JPEG, white 8x8 marker at the top-left, EXIF orientation 6.

        Orientation 6 means "rotate 90 degrees clockwise to display": the marker ends
        up at the top-right of a 40 high x 16 wide image.
        """
        image = Image.new("L", (40, 16), 0)
        image.paste(255, (0, 0, 8, 8))
        exif = Image.Exif()
        exif[0x0112] = 6
        return self.image(name, image, exif=exif.tobytes(), quality=95)

    def bmp(self, name="gray.bmp"):
        return self.image(name, Image.new("RGB", (5, 4), (60, 60, 60)))

    def tiff16(self, name="gray16.tif"):
        values = np.array([[0, 65535, 32768]], dtype=np.uint16)
        return self.image(name, Image.fromarray(values))

    def int32_tiff(self, name="int32.tif", values=((0, 4095), (65535, 100))):
        return self.image(name, Image.fromarray(np.array(values, dtype=np.int32), mode="I"))

    def multipage_tiff(self, name="pages.tif", pages=3):
        frames = [Image.new("L", (4, 4), 40 * i) for i in range(pages)]
        return self.image(name, frames[0], save_all=True, append_images=frames[1:])

    def animated_gif(self, name="anim.gif"):
        frames = [Image.new("L", (4, 4), v) for v in (0, 255)]
        return self.image(name, frames[0], save_all=True, append_images=frames[1:])

    def truncated(self, source, name, keep=0.5, size=None):
        """A copy of `source` cut to `keep` of its length, or to `size` bytes."""
        data = Path(source).read_bytes()
        return self.raw(name, data[: size if size is not None else int(len(data) * keep)])

    def truncated_png(self, name="truncated.png"):
        noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
        return self.truncated(self.image("full.png", Image.fromarray(noise)), name)

    def truncated_jpeg(self, name="truncated.jpg"):
        noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
        return self.truncated(self.image("full.jpg", Image.fromarray(noise), quality=90), name)

    def huge_header_png(self, name="huge.png", width=100_000, height=100_000):
        """A valid 1x1 PNG whose IHDR (with a fixed-up CRC) claims `width` x `height`."""
        data = bytearray((self.gray_png("tiny_src.png", (1, 1))).read_bytes())
        # Signature (8) + length (4) + b"IHDR" (4), then width, height, 5 bytes, CRC.
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        return self.raw(name, bytes(data))

    def raw(self, name, data):
        path = self._path(name)
        path.write_bytes(data)
        return path

    # ---- DICOM (pydicom) ----------------------------------------------------

    def dicom(
        self,
        name="image.dcm",
        pixels=None,
        *,
        photometric="MONOCHROME2",
        bits_stored=12,
        signed=False,
        pixel_data=True,
        preamble=True,
        transfer_syntax=None,
        compress=None,
        **elements,
    ):
        """A single-frame DICOM (ExplicitVRLittleEndian) with `elements` set by keyword.

        `pixels` defaults to a 2x3 ramp; pass elements such as RescaleSlope,
        WindowCenter, ViewPosition, PatientID, NumberOfFrames as keywords.
        `compress` encodes with pydicom's own encoder (e.g. RLE Lossless);
        `transfer_syntax` only relabels, leaving pixel data no decoder can read.
        """
        from pydicom.dataset import FileDataset, FileMetaDataset
        from pydicom.uid import (
            DigitalXRayImageStorageForPresentation,
            ExplicitVRLittleEndian,
            generate_uid,
        )

        if pixels is None:
            pixels = np.array([[0, 1000, 2000], [3000, 4000, 4095]])
        pixels = np.asarray(pixels)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = self._path(name)
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "DX"
        ds.PhotometricInterpretation = photometric
        ds.SamplesPerPixel = 3 if pixels.ndim == 3 and photometric == "RGB" else 1
        ds.Rows, ds.Columns = pixels.shape[-3:-1] if ds.SamplesPerPixel == 3 else pixels.shape[-2:]
        allocated = 8 if bits_stored <= 8 else 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits_stored, bits_stored - 1
        ds.PixelRepresentation = int(signed)
        if ds.SamplesPerPixel == 3:
            ds.PlanarConfiguration = 0
        if pixel_data:
            dtype = f"<{'i' if signed else 'u'}{allocated // 8}"
            ds.PixelData = pixels.astype(dtype).tobytes()
        for keyword, value in elements.items():
            setattr(ds, keyword, value)
        if compress is not None:
            ds.compress(compress)
        ds.save_as(path, enforce_file_format=True)
        if transfer_syntax is not None:  # relabel without re-encoding: decoding must fail
            _relabel_transfer_syntax(path, transfer_syntax)
        if not preamble:
            data = path.read_bytes()
            path.write_bytes(_strip_file_meta(data))
        return path

    def jpeg_dicom(self, name="jpeg.dcm", pixels=None):
        """An 8-bit JPEG Baseline DICOM (encoded by Pillow, encapsulated by pydicom)."""
        import io

        from pydicom.encaps import encapsulate
        from pydicom.uid import JPEGBaseline8Bit

        if pixels is None:
            pixels = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
        stream = io.BytesIO()
        Image.fromarray(pixels).save(stream, format="JPEG", quality=95)
        path = self.dicom(name, pixels, bits_stored=8)
        ds = _read(path)
        ds.PixelData = encapsulate([stream.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.save_as(path, enforce_file_format=True)
        return path

    def voi_lut_sequence(self, entries, first_mapped=0, bits=16):
        """A VOI LUT Sequence holding one LUT with `entries` (US values)."""
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        item = Dataset()
        item.LUTDescriptor = [len(entries), first_mapped, bits]
        item["LUTDescriptor"].VR = "US"
        item.LUTData = list(entries)
        item["LUTData"].VR = "US"
        return Sequence([item])


def _read(path):
    import pydicom

    return pydicom.dcmread(path)


def _relabel_transfer_syntax(path, uid):
    from pydicom.encaps import encapsulate

    ds = _read(path)

    ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + b"\0" * 64])  # not a decodable stream
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(path, enforce_file_format=True)


def _strip_file_meta(data):
    """The dataset of a Part 10 file without its preamble, 'DICM' and group 2 (implicit VR)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.file_meta
    ds.preamble = None
    out = io.BytesIO()
    # A bare dataset, as old ACR-NEMA style files hold.
    pydicom.dcmwrite(out, ds, implicit_vr=True, little_endian=True)
    return out.getvalue()
